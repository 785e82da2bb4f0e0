ALTER TABLE bookings
    ADD CONSTRAINT bookings_citizen_key_fkey FOREIGN KEY (citizen_key) REFERENCES citizens(key),
    ADD CONSTRAINT bookings_cohort_id_fkey FOREIGN KEY (cohort_id) REFERENCES cohorts(id),
    ADD CONSTRAINT bookings_center_id_fkey FOREIGN KEY (center_id) REFERENCES centers(id),
    ADD CONSTRAINT bookings_first_slot_id_fkey FOREIGN KEY (first_slot_id) REFERENCES slots(id),
    ADD CONSTRAINT bookings_second_slot_id_fkey FOREIGN KEY (second_slot_id) REFERENCES slots(id);
