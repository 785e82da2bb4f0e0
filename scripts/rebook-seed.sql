-- Bulk data for the rebooking benchmark and the kill -9 test: @BOOKINGS@ live Moderna bookings
-- over @CENTERS@ centers in 10 regions, written straight into an empty, migrated SQLite file
-- (one transaction, recursive CTEs, no HTTP). @BASE@ is the first dose's first day.
-- Per center: 14 first-dose slots (days 0-6, 10:00 and 14:00), 14 second-dose slots (days
-- 28-34) and 14 more on days 42-48, where a 14-day second-dose shift lands at the same time.
-- Booking i is at center i % C, in slot (i / C) % 14 of each block; @PLACES@ per slot.
BEGIN;
INSERT INTO cohorts (id, name, birth_year_from, birth_year_to, opens_at, closes_at, vaccine,
                     dose_interval_days, admission_rate_per_s, shuffle_seed, created_at)
VALUES (1, 'bench cohort', 1960, 1970, 0, 0, 'Moderna', 28, 1000.0, 7, 0);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @CENTERS@)
INSERT INTO centers (id, name, region, address, created_at)
SELECT i, 'center ' || i, 'region ' || (i % 10), 'street ' || i, 0 FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < @CENTERS@ * 42 - 1)
INSERT INTO slots (id, center_id, date, start_time, end_time, capacity, vaccine, booked)
SELECT i + 1, i / 42 + 1,
       date('@BASE@', '+' || ((i % 42) / 14 * (CASE (i % 42) / 14 WHEN 1 THEN 28 ELSE 21 END)
                              + (i % 14) / 2) || ' days'),
       CASE i % 2 WHEN 0 THEN '10:00' ELSE '14:00' END,
       CASE i % 2 WHEN 0 THEN '11:00' ELSE '15:00' END,
       @PLACES@, 'Moderna', 0
FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < @BOOKINGS@ - 1)
INSERT INTO citizens (key, masked_name, birth_date, created_at)
SELECT 'k' || i, '김*영', '1965-03-01', 0 FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < @BOOKINGS@ - 1)
INSERT INTO bookings (id, code, citizen_key, cohort_id, ticket_seq, vaccine, center_id,
                      first_slot_id, first_date, first_start, second_slot_id, second_date,
                      second_start, state, idempotency_key, created_at)
SELECT i + 1, printf('B%011d', i), 'k' || i, 1, i, 'Moderna', c + 1,
       c * 42 + j + 1, date('@BASE@', '+' || (j / 2) || ' days'),
       CASE j % 2 WHEN 0 THEN '10:00' ELSE '14:00' END,
       c * 42 + 14 + j + 1, date('@BASE@', '+' || (28 + j / 2) || ' days'),
       CASE j % 2 WHEN 0 THEN '10:00' ELSE '14:00' END,
       'confirmed', NULL, i
FROM (SELECT i, i % @CENTERS@ AS c, (i / @CENTERS@) % 14 AS j FROM n);
UPDATE slots SET booked =
    (SELECT count(*) FROM bookings b WHERE b.first_slot_id = slots.id)
  + (SELECT count(*) FROM bookings b WHERE b.second_slot_id = slots.id);
COMMIT;
