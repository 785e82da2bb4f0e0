ALTER TABLE cohorts DROP COLUMN pre_queue_gaps;
