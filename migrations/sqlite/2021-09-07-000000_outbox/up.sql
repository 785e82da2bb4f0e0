-- Notifications (API 1.1): a durable outbox, written in the transaction of the change it
-- tells of, and the phone numbers it is sent to, sealed (AEAD, `domain::phone`): never in
-- plain text here.
-- The citizen's sealed phone, kept while a live booking needs it (reminders, cancellation)
-- and set to NULL by the sender's housekeeping once none does (`db::outbox::forget_phones`).
ALTER TABLE citizens ADD COLUMN phone_sealed TEXT;
-- A sign-up's sealed phone, for its leftover offers; NULL once the sign-up is no longer live.
ALTER TABLE leftover_entries ADD COLUMN phone_sealed TEXT;
-- One message. `id`: stable for its life (the receiver drops repeats). `to_sealed`: its own
-- copy of the sealed phone, set to NULL once the message is sent or failed. `dose` is set for
-- reminders only: the unique index below lets a periodic scan insert each reminder once.
-- `lease_owner` / `lease_until` (ms): the node sending it now; a lease that has run out (its
-- node died) lets another node take it. Times: `created_at` s, the others ms.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    booking_code TEXT,
    dose INTEGER,
    to_sealed TEXT,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL,
    done_at BIGINT
);
CREATE UNIQUE INDEX outbox_once ON outbox (kind, booking_code, dose) WHERE dose IS NOT NULL;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_by_booking ON outbox (booking_code);
