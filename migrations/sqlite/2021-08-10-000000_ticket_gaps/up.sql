-- Ticket numbers handed out, recorded every admission tick, and the ranges of numbers that
-- were reserved before a restart but never handed out ([[from, to], ...] as JSON). The queue
-- skips those ranges instead of counting them as people in line.
ALTER TABLE cohorts ADD COLUMN tickets_issued BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cohorts ADD COLUMN ticket_gaps TEXT NOT NULL DEFAULT '[]';
