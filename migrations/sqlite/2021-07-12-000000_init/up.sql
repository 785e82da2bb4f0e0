-- Everything that must survive a crash. Times are unix seconds (UTC) unless named *_ms.

CREATE TABLE cohorts (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    birth_year_from INTEGER NOT NULL,
    birth_year_to INTEGER NOT NULL,
    opens_at BIGINT NOT NULL,
    closes_at BIGINT NOT NULL,
    vaccine TEXT NOT NULL,
    dose_interval_days INTEGER NOT NULL,
    admission_rate_per_s DOUBLE NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT 0,
    -- Seed of the one pre-queue shuffle, fixed at creation so a restart redoes the same one.
    shuffle_seed BIGINT NOT NULL,
    -- Ticket numbers below this are reserved (handed out or skipped); never reused.
    tickets_reserved BIGINT NOT NULL DEFAULT 0,
    -- Tickets taken before opening, frozen when the cohort opened (NULL until then).
    pre_queue_count BIGINT,
    -- Queue indices below this are admitted.
    admitted_upto BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- One row per admission step: queue indices below `upto` were admitted at `admitted_at_ms`.
CREATE TABLE admissions (
    cohort_id INTEGER NOT NULL REFERENCES cohorts(id),
    upto BIGINT NOT NULL,
    admitted_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cohort_id, upto)
);

-- A pass, once it verified an identity, verifies no other.
CREATE TABLE pass_claims (
    cohort_id INTEGER NOT NULL REFERENCES cohorts(id),
    ticket_seq BIGINT NOT NULL,
    citizen_key TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (cohort_id, ticket_seq)
);

CREATE TABLE centers (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    address TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE slots (
    id INTEGER PRIMARY KEY NOT NULL,
    center_id INTEGER NOT NULL REFERENCES centers(id),
    date TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    vaccine TEXT NOT NULL
);
CREATE INDEX slots_center ON slots(center_id);

-- A citizen is the keyed hash of the identity the provider vouched for; no phone, no full name.
CREATE TABLE citizens (
    key TEXT PRIMARY KEY NOT NULL,
    masked_name TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE bookings (
    id INTEGER PRIMARY KEY NOT NULL,
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
-- One live booking per citizen, enforced by the database as well as by the writer.
CREATE UNIQUE INDEX bookings_one_live ON bookings(citizen_key) WHERE state = 'confirmed';
CREATE INDEX bookings_citizen_idem ON bookings(citizen_key, idempotency_key);
CREATE INDEX bookings_first_slot ON bookings(first_slot_id);
CREATE INDEX bookings_second_slot ON bookings(second_slot_id);
