ALTER TABLE cohorts DROP COLUMN admitted_count;
ALTER TABLE slots DROP COLUMN booked;
