DROP TABLE limit_hits;
DROP TABLE nodes;
ALTER TABLE admissions DROP COLUMN booked;
ALTER TABLE cohorts DROP COLUMN admission_clock_ms;
