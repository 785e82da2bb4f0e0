//! Rows as diesel reads and writes them (`Thing` read, `NewThing` inserted).

use super::schema::{admissions, bookings, centers, citizens, cohorts, nodes, pass_claims, slots};
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
    /// The instant up to which the admission rate has been spent (see the migration).
    pub admission_clock_ms: i64,
    /// Leading zero bits a join's solved challenge must show (0: none asked).
    pub join_difficulty: i32,
    /// The instant up to which the extra rate for returning tickets has been spent.
    pub return_clock_ms: i64,
}

impl CohortRow {
    /// The cohort as the domain knows it.
    pub fn cohort(&self) -> crate::domain::cohort::Cohort {
        crate::domain::cohort::Cohort {
            id: self.id,
            name: self.name.clone(),
            birth_year_from: self.birth_year_from,
            birth_year_to: self.birth_year_to,
            opens_at: self.opens_at,
            closes_at: self.closes_at,
            vaccine: self.vaccine.clone(),
            dose_interval_days: self.dose_interval_days,
            admission_rate_per_s: self.admission_rate_per_s,
            paused: self.paused,
            birth_day_schedule: self
                .birth_day_schedule
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default(),
            join_difficulty: self.join_difficulty,
        }
    }
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
    pub join_difficulty: i32,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = admissions)]
pub struct AdmissionRow {
    pub cohort_id: i32,
    pub upto: i64,
    pub admitted_at_ms: i64,
    /// Bookings made by this step's tickets, as counted so far.
    pub booked: i64,
    /// The queue-index ranges this step passed over, nobody having polled them (JSON).
    pub passed: String,
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

impl SlotRow {
    /// The slot as a center's inventory holds it.
    pub fn slot(&self) -> Result<crate::domain::slot::Slot, String> {
        use crate::domain::slot::parse_time;
        Ok(crate::domain::slot::Slot {
            id: self.id,
            date: chrono::NaiveDate::parse_from_str(&self.date, "%Y-%m-%d")
                .map_err(|e| format!("slot {}: {e}", self.id))?,
            start: parse_time("start_time", &self.start_time).map_err(|e| e.0)?,
            end: parse_time("end_time", &self.end_time).map_err(|e| e.0)?,
            vaccine: self.vaccine.clone(),
            capacity: i64::from(self.capacity),
            booked: i64::from(self.booked),
        })
    }
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
    /// The phone given at verification, sealed (`domain::phone`); never plain text.
    pub phone_sealed: Option<String>,
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

/// One node's heartbeat.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = nodes)]
pub struct NodeRow {
    pub name: String,
    pub last_seen_ms: i64,
    pub ready: bool,
    /// JSON: what the node reports of its load.
    pub stats: String,
}
