-- Supply changes and rebooking (API 1.1).
-- A cancelled slot is never offered or booked again. Its places are also closed in the row
-- itself: cancelling sets capacity to the places booked (the CHECK keeps booked <= capacity),
-- and each move out of it lowers both, so the database refuses any booking of it at any node.
ALTER TABLE slots ADD COLUMN cancelled BOOLEAN NOT NULL DEFAULT FALSE;
-- A dose moved to another center of the region: the second dose's center when it is not the
-- booking's (center_id, which is the first dose's). NULL: the same center as the first.
ALTER TABLE bookings ADD COLUMN second_center_id INTEGER;
-- A rebooking job. kind: 'shift' (every live booking of vaccine whose second dose is ahead,
-- moved shift_days; the bookings with id <= last_booking_id, in id order, done_upto = the last
-- id done) or 'slot' (the bookings that no longer fit slot_id, latest booked first, until its
-- capacity is down to target_capacity). state: running, done. Counts of bookings.
CREATE TABLE rebooking_jobs (
    id INTEGER PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    vaccine TEXT NOT NULL,
    shift_days INTEGER NOT NULL DEFAULT 0,
    slot_id INTEGER,
    target_capacity INTEGER,
    last_booking_id INTEGER NOT NULL DEFAULT 0,
    today TEXT NOT NULL,
    state TEXT NOT NULL,
    total BIGINT NOT NULL,
    moved BIGINT NOT NULL DEFAULT 0,
    unmovable BIGINT NOT NULL DEFAULT 0,
    done_upto BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);
-- What a job did to each booking, written in the same transaction as the move: the primary
-- key makes a second move of one booking by one job impossible, at any node, after any crash.
-- outcome: moved, needs_rebooking. moves: JSON, the doses moved ([{dose, from, to, at}]).
CREATE TABLE rebooking_items (
    job_id INTEGER NOT NULL REFERENCES rebooking_jobs (id),
    booking_id INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    moves TEXT NOT NULL,
    moved_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, booking_id)
);
CREATE INDEX rebooking_items_by_booking ON rebooking_items (booking_id);
CREATE INDEX rebooking_jobs_running ON rebooking_jobs (state);
-- The shift job walks a vaccine's live bookings in id order.
CREATE INDEX bookings_vaccine_state ON bookings (vaccine, state, id);
