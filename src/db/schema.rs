// @generated automatically by Diesel CLI.

diesel::table! {
    admissions (cohort_id, upto) {
        cohort_id -> Integer,
        upto -> BigInt,
        admitted_at_ms -> BigInt,
        booked -> BigInt,
        passed -> Text,
    }
}

diesel::table! {
    bookings (id) {
        id -> Integer,
        code -> Text,
        citizen_key -> Text,
        cohort_id -> Integer,
        ticket_seq -> BigInt,
        vaccine -> Text,
        center_id -> Integer,
        first_slot_id -> Integer,
        first_date -> Text,
        first_start -> Text,
        second_slot_id -> Integer,
        second_date -> Text,
        second_start -> Text,
        state -> Text,
        idempotency_key -> Nullable<Text>,
        created_at -> BigInt,
        cancelled_at -> Nullable<BigInt>,
        second_center_id -> Nullable<Integer>,
    }
}

diesel::table! {
    centers (id) {
        id -> Integer,
        name -> Text,
        region -> Text,
        address -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    citizens (key) {
        key -> Text,
        masked_name -> Text,
        birth_date -> Text,
        created_at -> BigInt,
        phone_sealed -> Nullable<Text>,
    }
}

diesel::table! {
    cohorts (id) {
        id -> Integer,
        name -> Text,
        birth_year_from -> Integer,
        birth_year_to -> Integer,
        opens_at -> BigInt,
        closes_at -> BigInt,
        vaccine -> Text,
        dose_interval_days -> Integer,
        admission_rate_per_s -> Double,
        paused -> Bool,
        shuffle_seed -> BigInt,
        tickets_reserved -> BigInt,
        pre_queue_count -> Nullable<BigInt>,
        admitted_upto -> BigInt,
        created_at -> BigInt,
        birth_day_schedule -> Nullable<Text>,
        tickets_issued -> BigInt,
        ticket_gaps -> Text,
        pre_queue_gaps -> Text,
        admitted_count -> BigInt,
        admission_clock_ms -> BigInt,
        join_difficulty -> Integer,
        return_clock_ms -> BigInt,
    }
}

diesel::table! {
    leftover_entries (id) {
        id -> Integer,
        citizen_key -> Text,
        cohort_id -> Integer,
        ticket_seq -> BigInt,
        masked_name -> Text,
        birth_date -> Text,
        day -> Text,
        state -> Text,
        booking_code -> Nullable<Text>,
        created_at -> BigInt,
        phone_sealed -> Nullable<Text>,
    }
}

diesel::table! {
    leftover_entry_centers (entry_id, center_id) {
        entry_id -> Integer,
        center_id -> Integer,
    }
}

diesel::table! {
    leftover_offers (id) {
        id -> Integer,
        entry_id -> Integer,
        slot_id -> Integer,
        center_id -> Integer,
        offered_at -> BigInt,
        expires_at -> BigInt,
        state -> Text,
    }
}

diesel::table! {
    limit_hits (key, window_start) {
        key -> Text,
        window_start -> BigInt,
        hits -> BigInt,
    }
}

diesel::table! {
    nodes (name) {
        name -> Text,
        last_seen_ms -> BigInt,
        ready -> Bool,
        stats -> Text,
    }
}

diesel::table! {
    outbox (id) {
        id -> Text,
        kind -> Text,
        booking_code -> Nullable<Text>,
        dose -> Nullable<Integer>,
        to_sealed -> Nullable<Text>,
        body -> Text,
        state -> Text,
        attempts -> Integer,
        created_at -> BigInt,
        next_attempt_at -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_until -> BigInt,
        done_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    pass_claims (cohort_id, ticket_seq) {
        cohort_id -> Integer,
        ticket_seq -> BigInt,
        citizen_key -> Text,
        claimed_at -> BigInt,
    }
}

diesel::table! {
    presence (cohort_id, node) {
        cohort_id -> Integer,
        node -> Text,
        from_index -> BigInt,
        bits -> Text,
        written_ms -> BigInt,
    }
}

diesel::table! {
    rebooking_items (job_id, booking_id) {
        job_id -> Integer,
        booking_id -> Integer,
        outcome -> Text,
        moves -> Text,
        moved_at -> BigInt,
    }
}

diesel::table! {
    rebooking_jobs (id) {
        id -> Integer,
        kind -> Text,
        vaccine -> Text,
        shift_days -> Integer,
        slot_id -> Nullable<Integer>,
        target_capacity -> Nullable<Integer>,
        last_booking_id -> Integer,
        today -> Text,
        state -> Text,
        total -> BigInt,
        moved -> BigInt,
        unmovable -> BigInt,
        done_upto -> BigInt,
        created_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    returns (cohort_id, queue_index) {
        cohort_id -> Integer,
        queue_index -> BigInt,
        admitted_at_ms -> BigInt,
    }
}

diesel::table! {
    slots (id) {
        id -> Integer,
        center_id -> Integer,
        date -> Text,
        start_time -> Text,
        end_time -> Text,
        capacity -> Integer,
        vaccine -> Text,
        booked -> Integer,
        leftover_until -> Nullable<BigInt>,
        cancelled -> Bool,
    }
}

diesel::table! {
    used_challenges (id) {
        id -> Text,
        expires_at -> BigInt,
    }
}

diesel::joinable!(admissions -> cohorts (cohort_id));
diesel::joinable!(bookings -> centers (center_id));
diesel::joinable!(bookings -> citizens (citizen_key));
diesel::joinable!(bookings -> cohorts (cohort_id));
diesel::joinable!(leftover_entry_centers -> centers (center_id));
diesel::joinable!(leftover_entry_centers -> leftover_entries (entry_id));
diesel::joinable!(leftover_offers -> leftover_entries (entry_id));
diesel::joinable!(leftover_offers -> slots (slot_id));
diesel::joinable!(pass_claims -> cohorts (cohort_id));
diesel::joinable!(presence -> cohorts (cohort_id));
diesel::joinable!(rebooking_items -> rebooking_jobs (job_id));
diesel::joinable!(returns -> cohorts (cohort_id));
diesel::joinable!(slots -> centers (center_id));

diesel::allow_tables_to_appear_in_same_query!(
    admissions,
    bookings,
    centers,
    citizens,
    cohorts,
    leftover_entries,
    leftover_entry_centers,
    leftover_offers,
    limit_hits,
    nodes,
    outbox,
    pass_claims,
    presence,
    rebooking_items,
    rebooking_jobs,
    returns,
    slots,
    used_challenges,
);
