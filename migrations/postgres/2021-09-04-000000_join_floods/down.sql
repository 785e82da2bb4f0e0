DROP TABLE presence;
DROP TABLE passed_over;
DROP TABLE used_challenges;
ALTER TABLE cohorts DROP COLUMN return_clock_ms;
ALTER TABLE cohorts DROP COLUMN join_difficulty;
