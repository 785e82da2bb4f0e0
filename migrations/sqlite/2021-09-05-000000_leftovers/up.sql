-- Leftover doses (API 1.1): same-day doses from opened vials, offered one citizen at a time.
-- A center's leftovers of a day are a slot row of their own, marked by the instant they are
-- usable until (NULL for every ordinary slot): an offer takes a place in it by the same
-- conditional update a booking does (`booked < capacity`, and the CHECK), so the database
-- itself refuses a second offer or booking of one dose, at any node. Accepting turns the held
-- place into the booking's first dose; a lapse or decline gives it back. Such slots are never
-- loaded into a center's inventory: they are outside the cohorts' supply.
ALTER TABLE slots ADD COLUMN leftover_until BIGINT;
-- A citizen's sign-up for leftovers of one day, in sign-up order (`id`). `state`: waiting,
-- offered, booked, lapsed, cancelled, expired. Who the citizen is (as a booking needs it) is
-- kept as the session said it.
CREATE TABLE leftover_entries (
    id INTEGER PRIMARY KEY NOT NULL,
    citizen_key TEXT NOT NULL,
    cohort_id INTEGER NOT NULL,
    ticket_seq BIGINT NOT NULL,
    masked_name TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    day TEXT NOT NULL,
    state TEXT NOT NULL,
    booking_code TEXT,
    created_at BIGINT NOT NULL
);
-- One live sign-up per citizen, at any node.
CREATE UNIQUE INDEX leftover_entries_one_live ON leftover_entries (citizen_key)
    WHERE state IN ('waiting', 'offered');
CREATE INDEX leftover_entries_by_state ON leftover_entries (state, id);
-- The centers (1 to 5) a sign-up waits for.
CREATE TABLE leftover_entry_centers (
    entry_id INTEGER NOT NULL REFERENCES leftover_entries (id),
    center_id INTEGER NOT NULL REFERENCES centers (id),
    PRIMARY KEY (entry_id, center_id)
);
CREATE INDEX leftover_entry_centers_by_center ON leftover_entry_centers (center_id, entry_id);
-- Offers: one dose (a place of a leftover slot) held for one sign-up until `expires_at`
-- (seconds). `state`: held, accepted, lapsed, declined. Written before it is reported, so an
-- offer survives a crash with its expiry.
CREATE TABLE leftover_offers (
    id INTEGER PRIMARY KEY NOT NULL,
    entry_id INTEGER NOT NULL REFERENCES leftover_entries (id),
    slot_id INTEGER NOT NULL REFERENCES slots (id),
    center_id INTEGER NOT NULL,
    offered_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    state TEXT NOT NULL
);
-- A citizen holds at most one offer.
CREATE UNIQUE INDEX leftover_offers_one_held ON leftover_offers (entry_id) WHERE state = 'held';
CREATE INDEX leftover_offers_by_center ON leftover_offers (center_id, state);
