//! Rows as diesel reads and writes them (`Thing` read, `NewThing` inserted).

use super::schema::{admissions, bookings, centers, citizens, cohorts, pass_claims, slots};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cohorts)]
pub struct CohortRow {
    pub id: i32,
    pub name: String,
    pub birth_year_from: i32,
    pub birth_year_to: i32,
    pub opens_at: i64,
    pub closes_at: i64,
    pub vaccine: String,
    pub dose_interval_days: i32,
    pub admission_rate_per_s: f64,
    pub paused: bool,
    pub shuffle_seed: i64,
    pub tickets_reserved: i64,
    pub pre_queue_count: Option<i64>,
    pub admitted_upto: i64,
    pub created_at: i64,
    pub birth_day_schedule: Option<String>,
    pub tickets_issued: i64,
    pub ticket_gaps: String,
    pub pre_queue_gaps: String,
    pub admitted_count: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = cohorts)]
pub struct NewCohortRow {
    pub name: String,
    pub birth_year_from: i32,
    pub birth_year_to: i32,
    pub opens_at: i64,
    pub closes_at: i64,
    pub vaccine: String,
    pub dose_interval_days: i32,
    pub admission_rate_per_s: f64,
    pub paused: bool,
    pub shuffle_seed: i64,
    pub pre_queue_count: Option<i64>,
    pub created_at: i64,
    pub birth_day_schedule: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = admissions)]
pub struct AdmissionRow {
    pub cohort_id: i32,
    pub upto: i64,
    pub admitted_at_ms: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = pass_claims, treat_none_as_default_value = false)]
pub struct NewPassClaim {
    pub cohort_id: i32,
    pub ticket_seq: i64,
    pub citizen_key: String,
    pub claimed_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = centers)]
pub struct CenterRow {
    pub id: i32,
    pub name: String,
    pub region: String,
    pub address: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = centers)]
pub struct NewCenterRow {
    pub name: String,
    pub region: String,
    pub address: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = slots)]
pub struct SlotRow {
    pub id: i32,
    pub center_id: i32,
    pub date: String,
    pub start_time: String,
    pub end_time: String,
    pub capacity: i32,
    pub vaccine: String,
    /// Places held by live bookings (either dose).
    pub booked: i32,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = slots)]
pub struct NewSlotRow {
    pub center_id: i32,
    pub date: String,
    pub start_time: String,
    pub end_time: String,
    pub capacity: i32,
    pub vaccine: String,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = citizens, treat_none_as_default_value = false)]
pub struct NewCitizenRow {
    pub key: String,
    pub masked_name: String,
    pub birth_date: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = bookings)]
pub struct BookingRow {
    pub id: i32,
    pub code: String,
    pub citizen_key: String,
    pub cohort_id: i32,
    pub ticket_seq: i64,
    pub vaccine: String,
    pub center_id: i32,
    pub first_slot_id: i32,
    pub first_date: String,
    pub first_start: String,
    pub second_slot_id: i32,
    pub second_date: String,
    pub second_start: String,
    pub state: String,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub cancelled_at: Option<i64>,
}

/// `None` is written as NULL (not DEFAULT), so that many rows go in one statement on SQLite.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = bookings, treat_none_as_default_value = false)]
pub struct NewBookingRow {
    pub code: String,
    pub citizen_key: String,
    pub cohort_id: i32,
    pub ticket_seq: i64,
    pub vaccine: String,
    pub center_id: i32,
    pub first_slot_id: i32,
    pub first_date: String,
    pub first_start: String,
    pub second_slot_id: i32,
    pub second_date: String,
    pub second_start: String,
    pub state: String,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
}
