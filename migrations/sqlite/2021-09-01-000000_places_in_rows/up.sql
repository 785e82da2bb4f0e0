-- The places a slot's live bookings hold, kept in the slot row and taken by a conditional
-- update, so that the database itself refuses an overbooking (as on PostgreSQL, where several
-- nodes write). Filled from the live bookings of old.
ALTER TABLE slots ADD COLUMN booked INTEGER NOT NULL DEFAULT 0
    CHECK (booked >= 0 AND booked <= capacity);
UPDATE slots SET booked =
    (SELECT count(*) FROM bookings b WHERE b.state = 'confirmed' AND b.first_slot_id = slots.id)
  + (SELECT count(*) FROM bookings b WHERE b.state = 'confirmed' AND b.second_slot_id = slots.id);
-- People admitted (queue places passed by admission, less the numbers that were nobody).
-- Old rows cannot tell their gaps apart any more: they start from the places passed.
ALTER TABLE cohorts ADD COLUMN admitted_count BIGINT NOT NULL DEFAULT 0;
UPDATE cohorts SET admitted_count = admitted_upto;
