ALTER TABLE cohorts DROP COLUMN ticket_gaps;
ALTER TABLE cohorts DROP COLUMN tickets_issued;
