-- A booking's references are checked by the writer, not by foreign keys, on PostgreSQL: each
-- key is a trigger that reads the referenced row once per booking row, and with five of them
-- a batch of bookings spent about half its commit time there (a 40,000-citizen rush: 2,432
-- bookings/s without them, 1,248/s with; BENCHMARKS.md). What they guarded holds by
-- construction: the slot rows a batch books are read and locked in the same transaction, the
-- citizen row is upserted in the same transaction before the booking, and cohorts, centers
-- and slots are never deleted. SQLite, where a check is a cheap in-process lookup, keeps them.
ALTER TABLE bookings
    DROP CONSTRAINT bookings_citizen_key_fkey,
    DROP CONSTRAINT bookings_cohort_id_fkey,
    DROP CONSTRAINT bookings_center_id_fkey,
    DROP CONSTRAINT bookings_first_slot_id_fkey,
    DROP CONSTRAINT bookings_second_slot_id_fkey;
