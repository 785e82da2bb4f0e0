-- The ranges of ticket numbers a restart before opening skipped (reserved, never recorded as
-- handed out), frozen by the opening ([[from, to], ...] as JSON): its shuffle takes each range
-- as one place, so a restart adds no phantom places to the pre-queue. '[]' for cohorts opened
-- before this column existed, whose shuffle had none.
ALTER TABLE cohorts ADD COLUMN pre_queue_gaps TEXT NOT NULL DEFAULT '[]';
