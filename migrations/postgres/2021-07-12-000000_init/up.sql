-- The whole schema on PostgreSQL, the same tables and columns (in the same order) as the
-- SQLite migrations leave, so both print the same diesel schema. Several nodes may share this
-- database: every rule that must hold across them is a constraint here (capacity, one live
-- booking per citizen, one identity per pass), never only an actor's check.
-- Times are unix seconds (UTC) unless named *_ms.

CREATE TABLE cohorts (
    id SERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    birth_year_from INTEGER NOT NULL,
    birth_year_to INTEGER NOT NULL,
    opens_at BIGINT NOT NULL,
    closes_at BIGINT NOT NULL,
    vaccine TEXT NOT NULL,
    dose_interval_days INTEGER NOT NULL,
    admission_rate_per_s DOUBLE PRECISION NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT false,
    -- Seed of the one pre-queue shuffle, fixed at creation so a restart redoes the same one.
    shuffle_seed BIGINT NOT NULL,
    -- Ticket numbers below this are reserved (handed out or skipped); never reused.
    tickets_reserved BIGINT NOT NULL DEFAULT 0,
    -- Tickets taken before opening, frozen when the cohort opened (NULL until then).
    pre_queue_count BIGINT,
    -- Queue indices below this are admitted.
    admitted_upto BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    -- [{"date": "YYYY-MM-DD", "digits": [0-9, ...]}, ...]; NULL for none.
    birth_day_schedule TEXT,
    -- Ticket numbers handed out, and the ranges reserved but never handed out ([[from, to]]).
    tickets_issued BIGINT NOT NULL DEFAULT 0,
    ticket_gaps TEXT NOT NULL DEFAULT '[]',
    -- The ranges the opening's shuffle took as one place each.
    pre_queue_gaps TEXT NOT NULL DEFAULT '[]',
    -- People admitted (queue places passed, less the numbers that were nobody).
    admitted_count BIGINT NOT NULL DEFAULT 0
);

-- One row per admission step: queue indices below `upto` were admitted at `admitted_at_ms`.
CREATE TABLE admissions (
    cohort_id INTEGER NOT NULL REFERENCES cohorts(id),
    upto BIGINT NOT NULL,
    admitted_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cohort_id, upto)
);

-- A pass, once it verified an identity, verifies no other: the primary key decides.
CREATE TABLE pass_claims (
    cohort_id INTEGER NOT NULL REFERENCES cohorts(id),
    ticket_seq BIGINT NOT NULL,
    citizen_key TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (cohort_id, ticket_seq)
);

CREATE TABLE centers (
    id SERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    address TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- `booked`: places held by live bookings, taken with
-- `UPDATE … SET booked = booked + 1 WHERE id = $1 AND booked < capacity`.
CREATE TABLE slots (
    id SERIAL PRIMARY KEY,
    center_id INTEGER NOT NULL REFERENCES centers(id),
    date TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    vaccine TEXT NOT NULL,
    booked INTEGER NOT NULL DEFAULT 0 CHECK (booked >= 0 AND booked <= capacity)
);
CREATE INDEX slots_center ON slots(center_id);

-- A citizen is the keyed hash of the identity the provider vouched for; no phone, no full name.
CREATE TABLE citizens (
    key TEXT PRIMARY KEY,
    masked_name TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE bookings (
    id SERIAL PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    citizen_key TEXT NOT NULL REFERENCES citizens(key),
    cohort_id INTEGER NOT NULL REFERENCES cohorts(id),
    ticket_seq BIGINT NOT NULL,
    vaccine TEXT NOT NULL,
    center_id INTEGER NOT NULL REFERENCES centers(id),
    first_slot_id INTEGER NOT NULL REFERENCES slots(id),
    first_date TEXT NOT NULL,
    first_start TEXT NOT NULL,
    second_slot_id INTEGER NOT NULL REFERENCES slots(id),
    second_date TEXT NOT NULL,
    second_start TEXT NOT NULL,
    state TEXT NOT NULL,
    idempotency_key TEXT,
    created_at BIGINT NOT NULL,
    cancelled_at BIGINT
);
-- One live booking per citizen, whichever node writes it.
CREATE UNIQUE INDEX bookings_one_live ON bookings(citizen_key) WHERE state = 'confirmed';
CREATE INDEX bookings_citizen_idem ON bookings(citizen_key, idempotency_key);
CREATE INDEX bookings_first_slot ON bookings(first_slot_id);
CREATE INDEX bookings_second_slot ON bookings(second_slot_id);
