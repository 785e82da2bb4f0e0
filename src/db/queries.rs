//! Synchronous queries. Reads take any pooled connection; writes are called only by the
//! `BookingStore` actor, inside the transaction of one group commit.

use super::models::*;
use super::schema::{admissions, bookings, centers, citizens, cohorts, pass_claims, slots};
use crate::domain::booking::{STATE_CANCELLED, STATE_CONFIRMED};
use crate::domain::cohort::CohortPatch;
use diesel::dsl::{count_star, max};
use diesel::prelude::*;
use diesel::result::Error;
use std::collections::HashMap;

type Conn = SqliteConnection;

// ---- reads ----

pub fn load_cohorts(conn: &mut Conn) -> Result<Vec<CohortRow>, Error> {
    cohorts::table
        .order(cohorts::id)
        .select(CohortRow::as_select())
        .load(conn)
}

/// Admission steps at or after `since_ms`, oldest first, and the index where the first of
/// them started.
pub fn load_admissions(
    conn: &mut Conn,
    cohort_id: i32,
    since_ms: i64,
) -> Result<(i64, Vec<AdmissionRow>), Error> {
    let before: Option<i64> = admissions::table
        .filter(admissions::cohort_id.eq(cohort_id))
        .filter(admissions::admitted_at_ms.lt(since_ms))
        .select(max(admissions::upto))
        .first(conn)?;
    let rows = admissions::table
        .filter(admissions::cohort_id.eq(cohort_id))
        .filter(admissions::admitted_at_ms.ge(since_ms))
        .order(admissions::upto)
        .select(AdmissionRow::as_select())
        .load(conn)?;
    Ok((before.unwrap_or(0), rows))
}

/// Claims of passes that may still be valid: ticket number -> citizen key.
pub fn load_pass_claims(
    conn: &mut Conn,
    cohort_id: i32,
    since: i64,
) -> Result<HashMap<u64, String>, Error> {
    let rows: Vec<(i64, String)> = pass_claims::table
        .filter(pass_claims::cohort_id.eq(cohort_id))
        .filter(pass_claims::claimed_at.ge(since))
        .select((pass_claims::ticket_seq, pass_claims::citizen_key))
        .load(conn)?;
    Ok(rows.into_iter().map(|(s, k)| (s as u64, k)).collect())
}

/// The tickets of a cohort that booked (live or since cancelled) at or after `since`.
pub fn tickets_that_booked(conn: &mut Conn, cohort_id: i32, since: i64) -> Result<Vec<u64>, Error> {
    let seqs: Vec<i64> = bookings::table
        .filter(bookings::cohort_id.eq(cohort_id))
        .filter(bookings::created_at.ge(since))
        .select(bookings::ticket_seq)
        .distinct()
        .load(conn)?;
    Ok(seqs.into_iter().map(|s| s as u64).collect())
}

pub fn count_pass_claims(conn: &mut Conn, cohort_id: i32) -> Result<i64, Error> {
    pass_claims::table
        .filter(pass_claims::cohort_id.eq(cohort_id))
        .select(count_star())
        .first(conn)
}

pub fn load_centers(conn: &mut Conn) -> Result<Vec<CenterRow>, Error> {
    centers::table
        .order(centers::id)
        .select(CenterRow::as_select())
        .load(conn)
}

/// Every slot with the number of its places that live bookings hold (either dose).
pub fn load_slots(conn: &mut Conn) -> Result<Vec<(SlotRow, i64)>, Error> {
    let rows = slots::table
        .order(slots::id)
        .select(SlotRow::as_select())
        .load(conn)?;
    let mut taken: HashMap<i32, i64> = HashMap::new();
    let live = bookings::state.eq(STATE_CONFIRMED);
    let first: Vec<(i32, i64)> = bookings::table
        .filter(live)
        .group_by(bookings::first_slot_id)
        .select((bookings::first_slot_id, count_star()))
        .load(conn)?;
    let second: Vec<(i32, i64)> = bookings::table
        .filter(bookings::state.eq(STATE_CONFIRMED))
        .group_by(bookings::second_slot_id)
        .select((bookings::second_slot_id, count_star()))
        .load(conn)?;
    for (id, n) in first.into_iter().chain(second) {
        *taken.entry(id).or_default() += n;
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let n = taken.get(&r.id).copied().unwrap_or(0);
            (r, n)
        })
        .collect())
}

/// A booking and the birth date of its citizen.
pub fn find_booking(
    conn: &mut Conn,
    code: &str,
) -> Result<Option<(BookingRow, String, String)>, Error> {
    bookings::table
        .inner_join(citizens::table)
        .filter(bookings::code.eq(code))
        .select((
            BookingRow::as_select(),
            citizens::masked_name,
            citizens::birth_date,
        ))
        .first(conn)
        .optional()
}

/// What a new booking by this citizen would collide with: the booking made earlier with the
/// same idempotency key (a repeat), else the citizen's live booking. One indexed query: the
/// citizen's bookings that are live or carry the key (a citizen has a handful at most).
pub fn find_for_citizen(
    conn: &mut Conn,
    citizen_key: &str,
    idempotency_key: Option<&str>,
) -> Result<Option<BookingRow>, Error> {
    let mut query = bookings::table
        .filter(bookings::citizen_key.eq(citizen_key))
        .select(BookingRow::as_select())
        .into_boxed();
    query = match idempotency_key {
        Some(key) => query.filter(
            bookings::state
                .eq(STATE_CONFIRMED)
                .or(bookings::idempotency_key.eq(key)),
        ),
        None => query.filter(bookings::state.eq(STATE_CONFIRMED)),
    };
    let rows = query.load(conn)?;
    let repeat = rows
        .iter()
        .position(|b| idempotency_key.is_some() && b.idempotency_key.as_deref() == idempotency_key);
    Ok(match repeat {
        Some(i) => rows.into_iter().nth(i),
        None => rows.into_iter().next(),
    })
}

pub fn masked_name(conn: &mut Conn, citizen_key: &str) -> Result<Option<String>, Error> {
    citizens::table
        .find(citizen_key)
        .select(citizens::masked_name)
        .first(conn)
        .optional()
}

/// Live bookings per cohort, and the counts of live and cancelled bookings overall.
pub fn booking_counts(conn: &mut Conn) -> Result<(HashMap<i32, i64>, i64, i64), Error> {
    let per_cohort: Vec<(i32, i64)> = bookings::table
        .filter(bookings::state.eq(STATE_CONFIRMED))
        .group_by(bookings::cohort_id)
        .select((bookings::cohort_id, count_star()))
        .load(conn)?;
    let cancelled: i64 = bookings::table
        .filter(bookings::state.eq(STATE_CANCELLED))
        .select(count_star())
        .first(conn)?;
    let live = per_cohort.iter().map(|(_, n)| n).sum();
    Ok((per_cohort.into_iter().collect(), live, cancelled))
}

// ---- writes (BookingStore only) ----

pub fn insert_cohort(conn: &mut Conn, row: &NewCohortRow) -> Result<i32, Error> {
    diesel::insert_into(cohorts::table)
        .values(row)
        .returning(cohorts::id)
        .get_result(conn)
}

pub fn update_cohort(conn: &mut Conn, id: i32, patch: &CohortPatch) -> Result<(), Error> {
    let target = cohorts::table.find(id);
    if let Some(rate) = patch.admission_rate_per_s {
        diesel::update(target)
            .set(cohorts::admission_rate_per_s.eq(rate))
            .execute(conn)?;
    }
    if let Some(closes_at) = patch.closes_at {
        diesel::update(target)
            .set(cohorts::closes_at.eq(closes_at))
            .execute(conn)?;
    }
    if let Some(paused) = patch.paused {
        diesel::update(target)
            .set(cohorts::paused.eq(paused))
            .execute(conn)?;
    }
    Ok(())
}

pub fn reserve_tickets(conn: &mut Conn, cohort_id: i32, upto: i64) -> Result<(), Error> {
    diesel::update(cohorts::table.find(cohort_id))
        .filter(cohorts::tickets_reserved.lt(upto))
        .set(cohorts::tickets_reserved.eq(upto))
        .execute(conn)
        .map(drop)
}

pub fn record_issued(conn: &mut Conn, cohort_id: i32, issued: i64) -> Result<(), Error> {
    diesel::update(cohorts::table.find(cohort_id))
        .filter(cohorts::tickets_issued.lt(issued))
        .set(cohorts::tickets_issued.eq(issued))
        .execute(conn)
        .map(drop)
}

/// At start, before anything is served: the ranges to skip, and the numbers counted issued.
pub fn record_gaps(conn: &mut Conn, cohort_id: i32, gaps: &str, issued: i64) -> Result<(), Error> {
    diesel::update(cohorts::table.find(cohort_id))
        .set((
            cohorts::ticket_gaps.eq(gaps),
            cohorts::tickets_issued.eq(issued),
        ))
        .execute(conn)
        .map(drop)
}

/// Freezes the pre-queue at `count` tickets, once. The ranges a restart skipped before opening
/// (`ticket_gaps`, all below `count`) become the opening's (`pre_queue_gaps`), which its shuffle
/// takes as one place each; every number below `count` now counts as recorded.
pub fn record_opening(conn: &mut Conn, cohort_id: i32, count: i64) -> Result<(), Error> {
    let opened = diesel::update(cohorts::table.find(cohort_id))
        .filter(cohorts::pre_queue_count.is_null())
        .set((
            cohorts::pre_queue_count.eq(count),
            cohorts::pre_queue_gaps.eq(cohorts::ticket_gaps),
            cohorts::ticket_gaps.eq("[]"),
        ))
        .execute(conn)?;
    if opened > 0 {
        record_issued(conn, cohort_id, count)?;
    }
    Ok(())
}

pub fn record_admission(
    conn: &mut Conn,
    cohort_id: i32,
    upto: i64,
    at_ms: i64,
) -> Result<(), Error> {
    diesel::insert_or_ignore_into(admissions::table)
        .values((
            admissions::cohort_id.eq(cohort_id),
            admissions::upto.eq(upto),
            admissions::admitted_at_ms.eq(at_ms),
        ))
        .execute(conn)?;
    diesel::update(cohorts::table.find(cohort_id))
        .filter(cohorts::admitted_upto.lt(upto))
        .set(cohorts::admitted_upto.eq(upto))
        .execute(conn)
        .map(drop)
}

pub fn claim_pass(conn: &mut Conn, claim: &NewPassClaim) -> Result<(), Error> {
    diesel::insert_or_ignore_into(pass_claims::table)
        .values(claim)
        .execute(conn)
        .map(drop)
}

pub fn insert_center(conn: &mut Conn, row: &NewCenterRow) -> Result<i32, Error> {
    diesel::insert_into(centers::table)
        .values(row)
        .returning(centers::id)
        .get_result(conn)
}

pub fn insert_slots(conn: &mut Conn, rows: &[NewSlotRow]) -> Result<Vec<i32>, Error> {
    rows.iter()
        .map(|row| {
            diesel::insert_into(slots::table)
                .values(row)
                .returning(slots::id)
                .get_result(conn)
        })
        .collect()
}

/// What became of a booking the writer was asked to keep.
#[derive(Debug, Clone)]
pub enum BookOutcome {
    Booked(BookingRow),
    /// The same citizen and idempotency key booked before: that booking, nothing new.
    Repeat(BookingRow),
    /// The citizen already holds a live booking.
    AlreadyBooked,
}

pub fn insert_booking(
    conn: &mut Conn,
    citizen: &NewCitizenRow,
    row: &NewBookingRow,
) -> Result<BookOutcome, Error> {
    match find_for_citizen(conn, &row.citizen_key, row.idempotency_key.as_deref())? {
        Some(b) if b.idempotency_key.is_some() && b.idempotency_key == row.idempotency_key => {
            return Ok(BookOutcome::Repeat(b))
        }
        Some(_) => return Ok(BookOutcome::AlreadyBooked),
        None => {}
    }
    diesel::insert_into(citizens::table)
        .values(citizen)
        .on_conflict(citizens::key)
        .do_update()
        .set(citizens::masked_name.eq(&citizen.masked_name))
        .execute(conn)?;
    let booked = diesel::insert_into(bookings::table)
        .values(row)
        .returning(BookingRow::as_returning())
        .get_result(conn)?;
    Ok(BookOutcome::Booked(booked))
}

/// Cancels a live booking; `None` if there is none with that code.
pub fn cancel_booking(conn: &mut Conn, code: &str, now: i64) -> Result<Option<BookingRow>, Error> {
    diesel::update(bookings::table)
        .filter(bookings::code.eq(code))
        .filter(bookings::state.eq(STATE_CONFIRMED))
        .set((
            bookings::state.eq(STATE_CANCELLED),
            bookings::cancelled_at.eq(now),
        ))
        .returning(BookingRow::as_returning())
        .get_result(conn)
        .optional()
}

/// Citizens holding more than one live booking (must always be 0).
pub fn citizens_with_several_live_bookings(conn: &mut Conn) -> Result<i64, Error> {
    let per_citizen: Vec<(String, i64)> = bookings::table
        .filter(bookings::state.eq(STATE_CONFIRMED))
        .group_by(bookings::citizen_key)
        .select((bookings::citizen_key, count_star()))
        .load(conn)?;
    Ok(per_citizen.iter().filter(|(_, n)| *n > 1).count() as i64)
}
