-- The bulk data of scripts/rebook-seed.sql, for PostgreSQL: @BOOKINGS@ live Moderna bookings
-- over @CENTERS@ centers in 10 regions, written straight into an empty, migrated database (one
-- transaction, generate_series, no HTTP). @BASE@ is the first dose's first day. The same rows
-- as the SQLite script, id for id; the sequences are then moved past them.
BEGIN;
INSERT INTO cohorts (id, name, birth_year_from, birth_year_to, opens_at, closes_at, vaccine,
                     dose_interval_days, admission_rate_per_s, shuffle_seed, created_at)
VALUES (1, 'bench cohort', 1960, 1970, 0, 0, 'Moderna', 28, 1000.0, 7, 0);
INSERT INTO centers (id, name, region, address, created_at)
SELECT i, 'center ' || i, 'region ' || (i % 10), 'street ' || i, 0
FROM generate_series(1, @CENTERS@) AS i;
INSERT INTO slots (id, center_id, date, start_time, end_time, capacity, vaccine, booked)
SELECT i + 1, i / 42 + 1,
       to_char(DATE '@BASE@' + ((i % 42) / 14 * (CASE (i % 42) / 14 WHEN 1 THEN 28 ELSE 21 END)
                                + (i % 14) / 2), 'YYYY-MM-DD'),
       CASE i % 2 WHEN 0 THEN '10:00' ELSE '14:00' END,
       CASE i % 2 WHEN 0 THEN '11:00' ELSE '15:00' END,
       @PLACES@, 'Moderna', 0
FROM generate_series(0, @CENTERS@ * 42 - 1) AS i;
INSERT INTO citizens (key, masked_name, birth_date, created_at)
SELECT 'k' || i, '김*영', '1965-03-01', 0 FROM generate_series(0, @BOOKINGS@ - 1) AS i;
INSERT INTO bookings (id, code, citizen_key, cohort_id, ticket_seq, vaccine, center_id,
                      first_slot_id, first_date, first_start, second_slot_id, second_date,
                      second_start, state, idempotency_key, created_at)
SELECT i + 1, 'B' || lpad(i::text, 11, '0'), 'k' || i, 1, i, 'Moderna', c + 1,
       c * 42 + j + 1, to_char(DATE '@BASE@' + j / 2, 'YYYY-MM-DD'),
       CASE j % 2 WHEN 0 THEN '10:00' ELSE '14:00' END,
       c * 42 + 14 + j + 1, to_char(DATE '@BASE@' + 28 + j / 2, 'YYYY-MM-DD'),
       CASE j % 2 WHEN 0 THEN '10:00' ELSE '14:00' END,
       'confirmed', NULL, i
FROM (SELECT i, i % @CENTERS@ AS c, (i / @CENTERS@) % 14 AS j
      FROM generate_series(0, @BOOKINGS@ - 1) AS i) AS n;
UPDATE slots SET booked = p.n
FROM (SELECT slot, count(*) AS n FROM
        (SELECT first_slot_id AS slot FROM bookings UNION ALL
         SELECT second_slot_id FROM bookings) AS d
      GROUP BY slot) AS p
WHERE p.slot = slots.id;
SELECT setval(pg_get_serial_sequence('cohorts', 'id'), (SELECT max(id) FROM cohorts));
SELECT setval(pg_get_serial_sequence('centers', 'id'), (SELECT max(id) FROM centers));
SELECT setval(pg_get_serial_sequence('slots', 'id'), (SELECT max(id) FROM slots));
SELECT setval(pg_get_serial_sequence('bookings', 'id'), (SELECT max(id) FROM bookings));
COMMIT;
ANALYZE;
