DROP INDEX bookings_vaccine_state;
DROP TABLE rebooking_items;
DROP TABLE rebooking_jobs;
ALTER TABLE bookings DROP COLUMN second_center_id;
ALTER TABLE slots DROP COLUMN cancelled;
