DROP TABLE presence;
DROP TABLE returns;
ALTER TABLE admissions DROP COLUMN passed;
DROP TABLE used_challenges;
ALTER TABLE cohorts DROP COLUMN return_clock_ms;
ALTER TABLE cohorts DROP COLUMN join_difficulty;
