ALTER TABLE cohorts DROP COLUMN birth_day_schedule;
