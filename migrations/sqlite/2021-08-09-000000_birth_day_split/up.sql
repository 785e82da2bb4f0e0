-- Korea's August 2021 fix: on given days only citizens whose birth day ends in given digits
-- may verify. JSON: [{"date": "YYYY-MM-DD", "digits": [0-9, ...]}, ...]; NULL for none.
ALTER TABLE cohorts ADD COLUMN birth_day_schedule TEXT;
