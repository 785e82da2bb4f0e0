//! Synchronous queries, each written once for both backends (`run!`). Reads take any pooled
//! connection; writes are called only by the `BookingStore` actor, inside the transaction of
//! one group commit, except what no booking depends on: a node's heartbeat and the counts of
//! the limits shared across nodes.

use super::models::*;
use super::schema::{
    admissions, bookings, centers, citizens, cohorts, limit_hits, nodes, pass_claims, presence,
    returns, slots,
};
use super::Conn;
use crate::domain::booking::{STATE_CANCELLED, STATE_CONFIRMED};
use crate::domain::cohort::CohortPatch;
use crate::run;
use diesel::dsl::{count_star, max};
use diesel::prelude::*;
use diesel::result::Error;
use std::collections::HashMap;

// ---- reads ----

pub fn load_cohorts(conn: &mut Conn) -> Result<Vec<CohortRow>, Error> {
    run!(conn, c => cohorts::table
        .order(cohorts::id)
        .select(CohortRow::as_select())
        .load(c))
}

/// Admission steps at or after `since_ms`, oldest first, and the index where the first of
/// them started.
pub fn load_admissions(
    conn: &mut Conn,
    cohort_id: i32,
    since_ms: i64,
) -> Result<(i64, Vec<AdmissionRow>), Error> {
    run!(conn, c => {
        let before: Option<i64> = admissions::table
            .filter(admissions::cohort_id.eq(cohort_id))
            .filter(admissions::admitted_at_ms.lt(since_ms))
            .select(max(admissions::upto))
            .first(c)?;
        let rows = admissions::table
            .filter(admissions::cohort_id.eq(cohort_id))
            .filter(admissions::admitted_at_ms.ge(since_ms))
            .order(admissions::upto)
            .select(AdmissionRow::as_select())
            .load(c)?;
        Ok((before.unwrap_or(0), rows))
    })
}

/// Claims of passes that may still be valid: ticket number -> citizen key.
pub fn load_pass_claims(
    conn: &mut Conn,
    cohort_id: i32,
    since: i64,
) -> Result<HashMap<u64, String>, Error> {
    let rows: Vec<(i64, String)> = run!(conn, c => pass_claims::table
        .filter(pass_claims::cohort_id.eq(cohort_id))
        .filter(pass_claims::claimed_at.ge(since))
        .select((pass_claims::ticket_seq, pass_claims::citizen_key))
        .load(c))?;
    Ok(rows.into_iter().map(|(s, k)| (s as u64, k)).collect())
}

/// The tickets of a cohort that booked (live or since cancelled) at or after `since`.
pub fn tickets_that_booked(conn: &mut Conn, cohort_id: i32, since: i64) -> Result<Vec<u64>, Error> {
    let seqs: Vec<i64> = run!(conn, c => bookings::table
        .filter(bookings::cohort_id.eq(cohort_id))
        .filter(bookings::created_at.ge(since))
        .select(bookings::ticket_seq)
        .distinct()
        .load(c))?;
    Ok(seqs.into_iter().map(|s| s as u64).collect())
}

pub fn count_pass_claims(conn: &mut Conn, cohort_id: i32) -> Result<i64, Error> {
    run!(conn, c => pass_claims::table
        .filter(pass_claims::cohort_id.eq(cohort_id))
        .select(count_star())
        .first(c))
}

/// Passes claimed per cohort, by every node.
pub fn pass_claims_per_cohort(conn: &mut Conn) -> Result<HashMap<i32, i64>, Error> {
    let rows: Vec<(i32, i64)> = run!(conn, c => pass_claims::table
        .group_by(pass_claims::cohort_id)
        .select((pass_claims::cohort_id, count_star()))
        .load(c))?;
    Ok(rows.into_iter().collect())
}

pub fn load_centers(conn: &mut Conn) -> Result<Vec<CenterRow>, Error> {
    run!(conn, c => centers::table
        .order(centers::id)
        .select(CenterRow::as_select())
        .load(c))
}

/// Every slot, with the places its live bookings hold (kept in the row). Leftover doses'
/// slots are not among them: they belong to the leftovers (`db::leftovers`).
pub fn load_slots(conn: &mut Conn) -> Result<Vec<SlotRow>, Error> {
    run!(conn, c => slots::table
        .filter(slots::leftover_until.is_null())
        .filter(slots::cancelled.eq(false))
        .order(slots::id)
        .select(SlotRow::as_select())
        .load(c))
}

/// A booking and the masked name and birth date of its citizen.
pub fn find_booking(
    conn: &mut Conn,
    code: &str,
) -> Result<Option<(BookingRow, String, String)>, Error> {
    run!(conn, c => bookings::table
        .inner_join(citizens::table)
        .filter(bookings::code.eq(code))
        .select((
            BookingRow::as_select(),
            citizens::masked_name,
            citizens::birth_date,
        ))
        .first(c)
        .optional())
}

/// What a new booking by this citizen would collide with: the booking made earlier with the
/// same idempotency key (a repeat), else the citizen's live booking. One indexed query: the
/// citizen's bookings that are live or carry the key (a citizen has a handful at most).
pub fn find_for_citizen(
    conn: &mut Conn,
    citizen_key: &str,
    idempotency_key: Option<&str>,
) -> Result<Option<BookingRow>, Error> {
    let rows: Vec<BookingRow> = run!(conn, c => {
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
        query.load(c)
    })?;
    let repeat = rows
        .iter()
        .position(|b| idempotency_key.is_some() && b.idempotency_key.as_deref() == idempotency_key);
    Ok(match repeat {
        Some(i) => rows.into_iter().nth(i),
        None => rows.into_iter().next(),
    })
}

pub fn masked_name(conn: &mut Conn, citizen_key: &str) -> Result<Option<String>, Error> {
    run!(conn, c => citizens::table
        .find(citizen_key)
        .select(citizens::masked_name)
        .first(c)
        .optional())
}

/// Live bookings per cohort, and the counts of live and cancelled bookings overall.
pub fn booking_counts(conn: &mut Conn) -> Result<(HashMap<i32, i64>, i64, i64), Error> {
    let (per_cohort, cancelled): (Vec<(i32, i64)>, i64) = run!(conn, c => {
        let per_cohort = bookings::table
            .filter(bookings::state.eq(STATE_CONFIRMED))
            .group_by(bookings::cohort_id)
            .select((bookings::cohort_id, count_star()))
            .load(c)?;
        let cancelled = bookings::table
            .filter(bookings::state.eq(STATE_CANCELLED))
            .select(count_star())
            .first(c)?;
        Ok::<_, Error>((per_cohort, cancelled))
    })?;
    let live = per_cohort.iter().map(|(_, n)| n).sum();
    Ok((per_cohort.into_iter().collect(), live, cancelled))
}

/// Whether writes would be taken now: on PostgreSQL, a primary (a standby in recovery
/// answers reads only); on SQLite, an answering file.
pub fn check_writable(conn: &mut Conn) -> Result<(), Error> {
    match conn {
        Conn::Sqlite(c) => diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
            .execute(*c)
            .map(drop),
        Conn::Postgres(c) => {
            let recovering: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
                "pg_is_in_recovery()",
            ))
            .get_result(*c)?;
            if recovering {
                Err(Error::QueryBuilderError(
                    "the database is a standby in recovery (read only)".into(),
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// A PostgreSQL server setting, as `SHOW` gives it.
pub fn pg_setting(conn: &mut diesel::PgConnection, name: &str) -> Result<String, Error> {
    // `name` is one of this module's constants, never input.
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(&format!(
        "current_setting('{name}')"
    )))
    .get_result(conn)
}

// ---- writes (BookingStore only) ----

pub fn insert_cohort(conn: &mut Conn, row: &NewCohortRow) -> Result<i32, Error> {
    run!(conn, c => diesel::insert_into(cohorts::table)
        .values(row)
        .returning(cohorts::id)
        .get_result(c))
}

pub fn update_cohort(conn: &mut Conn, id: i32, patch: &CohortPatch) -> Result<(), Error> {
    run!(conn, c => {
        let target = cohorts::table.find(id);
        if let Some(rate) = patch.admission_rate_per_s {
            diesel::update(target)
                .set(cohorts::admission_rate_per_s.eq(rate))
                .execute(c)?;
        }
        if let Some(closes_at) = patch.closes_at {
            diesel::update(target)
                .set(cohorts::closes_at.eq(closes_at))
                .execute(c)?;
        }
        if let Some(paused) = patch.paused {
            diesel::update(target)
                .set(cohorts::paused.eq(paused))
                .execute(c)?;
        }
        if let Some(bits) = patch.join_difficulty {
            diesel::update(target)
                .set(cohorts::join_difficulty.eq(bits))
                .execute(c)?;
        }
        Ok(())
    })
}

/// What a batch of joins got: numbers `base..base + count`, and the cohort as it then stood.
#[derive(Debug, Clone)]
pub struct TakenTickets {
    pub base: u64,
    /// The count after this batch: every number below it is reserved, by some node.
    pub reserved: u64,
    /// The ranges that are nobody (JSON, `cohorts.ticket_gaps`), this write's included.
    pub gaps: String,
    /// Places in the batch (from 0) whose challenge was used before: refused, their numbers
    /// recorded as nobody in this same write.
    pub refused: Vec<u64>,
}

/// A join's solved challenge, recorded as used in the write that numbers its batch.
#[derive(Debug, Clone)]
pub struct ChallengeUse {
    /// The join's place in its batch (from 0).
    pub offset: u64,
    pub id: String,
    pub expires_at: i64,
}

/// Used challenges are forgotten this long after they expire (a node's clock may lag).
const USED_CHALLENGES_KEPT_S: i64 = 60;
/// When expired used challenges were last forgotten (unix seconds, this process).
static USED_CHALLENGES_PRUNED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Records the batch's challenges as used (a challenge already recorded, by any node at any
/// time before it expired, is not recorded again): the places whose challenge was used before.
/// Expired ones are forgotten every 10 seconds or so, by the batches that bring challenges.
fn use_challenges(conn: &mut Conn, challenges: &[ChallengeUse]) -> Result<Vec<u64>, Error> {
    use crate::db::schema::used_challenges;
    if challenges.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<_> = challenges
        .iter()
        .map(|c| {
            (
                used_challenges::id.eq(c.id.as_str()),
                used_challenges::expires_at.eq(c.expires_at),
            )
        })
        .collect();
    let mut fresh: std::collections::HashSet<String> =
        run!(conn, c => diesel::insert_into(used_challenges::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .returning(used_challenges::id)
        .get_results::<String>(c))?
        .into_iter()
        .collect();
    let refused = challenges
        .iter()
        .filter(|c| !fresh.remove(&c.id))
        .map(|c| c.offset)
        .collect();
    let now = crate::now_s();
    let last = USED_CHALLENGES_PRUNED.load(std::sync::atomic::Ordering::Relaxed);
    if now - last >= 10
        && USED_CHALLENGES_PRUNED
            .compare_exchange(
                last,
                now,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
    {
        run!(conn, c => diesel::delete(used_challenges::table
            .filter(used_challenges::expires_at.lt(now - USED_CHALLENGES_KEPT_S)))
            .execute(c))?;
    }
    Ok(refused)
}

/// Takes the next `count` ticket numbers of the cohort for a batch of joins, from the counter
/// in its row: the row lock orders the batches of every node, so a join answered before
/// another one arrived (at any node) holds the smaller number. `gaps` (numbers whose joins
/// gave up waiting) are merged into the row's ranges in the same write; after the opening,
/// those below the pre-queue are dropped (the shuffle already counted them as people).
/// `challenges`: the batch's solved challenges, recorded as used; a join whose challenge was
/// used before is refused and its number is recorded as nobody, in the same write, so one
/// solution takes one ticket across nodes and restarts.
pub fn take_tickets(
    conn: &mut Conn,
    cohort_id: i32,
    count: u64,
    gaps: &[(u64, u64)],
    challenges: &[ChallengeUse],
) -> Result<TakenTickets, Error> {
    let count = count as i64;
    let (reserved, pre_queue, text): (i64, Option<i64>, String) = run!(conn, c => diesel::update(cohorts::table.find(cohort_id))
        .set((
            cohorts::tickets_reserved.eq(cohorts::tickets_reserved + count),
            cohorts::tickets_issued.eq(cohorts::tickets_reserved + count),
        ))
        .returning((cohorts::tickets_reserved, cohorts::pre_queue_count, cohorts::ticket_gaps))
        .get_result(c))?;
    let floor = pre_queue.unwrap_or(0) as u64;
    let base = (reserved - count) as u64;
    let refused = use_challenges(conn, challenges)?;
    let fresh: Vec<(u64, u64)> = gaps
        .iter()
        .copied()
        .chain(refused.iter().map(|o| (base + o, base + o + 1)))
        .collect::<Vec<_>>()
        .iter()
        .map(|(f, t)| ((*f).max(floor), *t))
        .filter(|(f, t)| f < t)
        .collect();
    let text = if fresh.is_empty() {
        text
    } else {
        let known: Vec<(u64, u64)> = serde_json::from_str(&text).unwrap_or_default();
        let merged = crate::domain::queue::merge_gaps(known.into_iter().chain(fresh));
        let merged = serde_json::to_string(&merged).unwrap_or_else(|_| "[]".into());
        run!(conn, c => diesel::update(cohorts::table.find(cohort_id))
            .set(cohorts::ticket_gaps.eq(&merged))
            .execute(c))?;
        merged
    };
    Ok(TakenTickets {
        base,
        reserved: reserved as u64,
        gaps: text,
        refused,
    })
}

/// At start, before anything is served: the ranges to skip, and the numbers counted issued
/// and reserved (`count`), if no other node took numbers since the row was read (`seen`):
/// another node running means nothing of a crash is left to repair.
pub fn record_gaps(
    conn: &mut Conn,
    cohort_id: i32,
    gaps: &str,
    count: i64,
    seen: (i64, &str),
) -> Result<(), Error> {
    run!(conn, c => diesel::update(cohorts::table.find(cohort_id))
        .filter(cohorts::tickets_reserved.eq(seen.0))
        .filter(cohorts::ticket_gaps.eq(seen.1))
        .set((
            cohorts::ticket_gaps.eq(gaps),
            cohorts::tickets_issued.eq(count),
            cohorts::tickets_reserved.eq(count),
        ))
        .execute(c)
        .map(drop))
}

/// Freezes the pre-queue, once, whichever node gets there first: at the count of numbers
/// taken so far (read under the row lock, so a batch of joins at any node is wholly before
/// or wholly after it), with the ranges that are nobody as the ranges its shuffle takes as
/// one place each. Answers the count and those ranges as they are on disk, also when another
/// node opened the cohort before.
pub fn record_opening(conn: &mut Conn, cohort_id: i32) -> Result<(u64, String), Error> {
    let (count, gaps): (Option<i64>, String) = run!(conn, c => {
        diesel::update(cohorts::table.find(cohort_id))
            .filter(cohorts::pre_queue_count.is_null())
            .set((
                cohorts::pre_queue_count.eq(cohorts::tickets_reserved.nullable()),
                cohorts::pre_queue_gaps.eq(cohorts::ticket_gaps),
                cohorts::ticket_gaps.eq("[]"),
                cohorts::tickets_issued.eq(cohorts::tickets_reserved),
            ))
            .execute(c)?;
        cohorts::table
            .find(cohort_id)
            .select((cohorts::pre_queue_count, cohorts::pre_queue_gaps))
            .first(c)
    })?;
    Ok((count.unwrap_or(0) as u64, gaps))
}

/// A cohort's admission front as it is on disk, and the steps after `after` (or still live
/// since `live_since_ms` with bookings counted): what a node that fell behind adopts.
#[derive(Debug, Clone, Default)]
pub struct AdmissionState {
    pub admitted_upto: u64,
    pub admitted_count: u64,
    pub clock_ms: i64,
    pub steps: Vec<AdmissionRow>,
    /// `cohorts.ticket_gaps` (JSON), read with the front.
    pub gaps: String,
}

/// Admits queue indices `from..upto` (`people` of them), if `from` is still the front on
/// disk, and moves the admission clock to `clock_ms`: a compare-and-set that any node may
/// make. Only one of several nodes stepping from the same front succeeds; a node that lost
/// (or fell behind) admits nobody and gets the state on disk to adopt. `None`: admitted.
pub fn record_admission(
    conn: &mut Conn,
    cohort_id: i32,
    (from, upto): (i64, i64),
    people: i64,
    (at_ms, clock_ms): (i64, i64),
    passed: &str,
) -> Result<Option<AdmissionState>, Error> {
    let moved = run!(conn, c => diesel::update(cohorts::table.find(cohort_id))
        .filter(cohorts::admitted_upto.eq(from))
        .set((
            cohorts::admitted_upto.eq(upto),
            cohorts::admitted_count.eq(cohorts::admitted_count + people),
            cohorts::admission_clock_ms.eq(clock_ms),
        ))
        .execute(c))?;
    if moved == 1 {
        run!(conn, c => diesel::insert_into(admissions::table)
            .values((
                admissions::cohort_id.eq(cohort_id),
                admissions::upto.eq(upto),
                admissions::admitted_at_ms.eq(at_ms),
                admissions::passed.eq(passed),
            ))
            .on_conflict_do_nothing()
            .execute(c))?;
        return Ok(None);
    }
    admission_state(conn, cohort_id, from, i64::MAX).map(Some)
}

/// The front on disk and the steps past `after`, plus those since `live_since_ms` whose
/// tickets booked (their `booked` counts), oldest first.
/// Admits the passed-over tickets at `indices` beside the line at `at_ms`, if the returns'
/// clock is still `known` on disk (moving it to `clock_ms`); each ticket once, whichever node
/// asks. Answers the clock on disk and the tickets of `indices` admitted so far (by this write
/// or an earlier one), with when.
pub fn record_returns(
    conn: &mut Conn,
    cohort_id: i32,
    indices: &[u64],
    at_ms: i64,
    (known, clock_ms): (i64, i64),
) -> Result<(i64, Vec<(u64, i64)>), Error> {
    let indices: Vec<i64> = indices.iter().map(|q| *q as i64).collect();
    run!(conn, c => {
        let moved = diesel::update(cohorts::table.find(cohort_id))
            .filter(cohorts::return_clock_ms.eq(known))
            .set(cohorts::return_clock_ms.eq(clock_ms))
            .execute(c)?;
        if moved == 1 {
            let rows: Vec<_> = indices
                .iter()
                .map(|q| {
                    (
                        returns::cohort_id.eq(cohort_id),
                        returns::queue_index.eq(*q),
                        returns::admitted_at_ms.eq(at_ms),
                    )
                })
                .collect();
            diesel::insert_into(returns::table)
                .values(&rows)
                .on_conflict_do_nothing()
                .execute(c)?;
        }
        let clock: i64 = cohorts::table
            .find(cohort_id)
            .select(cohorts::return_clock_ms)
            .first(c)?;
        let admitted: Vec<(i64, i64)> = returns::table
            .filter(returns::cohort_id.eq(cohort_id))
            .filter(returns::queue_index.eq_any(&indices))
            .select((returns::queue_index, returns::admitted_at_ms))
            .load(c)?;
        Ok((clock, admitted.into_iter().map(|(q, at)| (q as u64, at)).collect()))
    })
}

/// The passed-over ranges (JSON, a text a step) and the returns (queue index, at ms).
pub type PassedAndBack = (Vec<String>, Vec<(u64, i64)>);

/// A cohort's passed-over ranges (JSON, one text a step that passed someone over) and its
/// returns: what a queue rebuilds at start.
pub fn load_passed(conn: &mut Conn, cohort_id: i32) -> Result<PassedAndBack, Error> {
    run!(conn, c => {
        let passed = admissions::table
            .filter(admissions::cohort_id.eq(cohort_id))
            .filter(admissions::passed.ne("[]"))
            .select(admissions::passed)
            .load(c)?;
        let back: Vec<(i64, i64)> = returns::table
            .filter(returns::cohort_id.eq(cohort_id))
            .select((returns::queue_index, returns::admitted_at_ms))
            .load(c)?;
        Ok((passed, back.into_iter().map(|(q, at)| (q as u64, at)).collect()))
    })
}

/// Returns admitted at or after `since_ms`, every cohort's (for the other nodes).
pub fn returns_since(conn: &mut Conn, since_ms: i64) -> Result<Vec<(i32, u64, i64)>, Error> {
    run!(conn, c => {
        let rows: Vec<(i32, i64, i64)> = returns::table
            .filter(returns::admitted_at_ms.ge(since_ms))
            .select((returns::cohort_id, returns::queue_index, returns::admitted_at_ms))
            .load(c)?;
        Ok(rows.into_iter().map(|(id, q, at)| (id, q as u64, at)).collect())
    })
}

/// One node's view of who polled near a cohort's front: (cohort, first queue index, bits as
/// hex, written at ms).
pub type PresenceRow = (i32, i64, String, i64);

/// Shares what this node heard near the fronts (several nodes only; no booking depends on
/// it, so it may be lost with a crash: the others then pass over a little more).
pub fn share_presence(conn: &mut Conn, node: &str, rows: &[PresenceRow]) -> Result<(), Error> {
    run!(conn, c => {
        for (cohort_id, from, bits, at) in rows {
            diesel::insert_into(presence::table)
                .values((
                    presence::cohort_id.eq(cohort_id),
                    presence::node.eq(node),
                    presence::from_index.eq(from),
                    presence::bits.eq(bits),
                    presence::written_ms.eq(at),
                ))
                .on_conflict((presence::cohort_id, presence::node))
                .do_update()
                .set((
                    presence::from_index.eq(from),
                    presence::bits.eq(bits),
                    presence::written_ms.eq(at),
                ))
                .execute(c)?;
        }
        Ok(())
    })
}

/// What the other nodes heard near the fronts, written since `since_ms`.
pub fn presence_of_others(
    conn: &mut Conn,
    node: &str,
    since_ms: i64,
) -> Result<Vec<PresenceRow>, Error> {
    run!(conn, c => presence::table
        .filter(presence::node.ne(node))
        .filter(presence::written_ms.ge(since_ms))
        .select((
            presence::cohort_id,
            presence::from_index,
            presence::bits,
            presence::written_ms,
        ))
        .load(c))
}

pub fn admission_state(
    conn: &mut Conn,
    cohort_id: i32,
    after: i64,
    live_since_ms: i64,
) -> Result<AdmissionState, Error> {
    run!(conn, c => {
        let (upto, count, clock, gaps): (i64, i64, i64, String) = cohorts::table
            .find(cohort_id)
            .select((
                cohorts::admitted_upto,
                cohorts::admitted_count,
                cohorts::admission_clock_ms,
                cohorts::ticket_gaps,
            ))
            .first(c)?;
        // Read after the row: a step is its row and its front in one transaction, so every
        // step up to the front read is here (later ones are left for the next read).
        let steps = admissions::table
            .filter(admissions::cohort_id.eq(cohort_id))
            .filter(admissions::upto.le(upto))
            .filter(
                admissions::upto.gt(after).or(admissions::admitted_at_ms
                    .ge(live_since_ms)
                    .and(admissions::booked.gt(0))),
            )
            .order(admissions::upto)
            .select(AdmissionRow::as_select())
            .load(c)?;
        Ok(AdmissionState {
            admitted_upto: upto as u64,
            admitted_count: count as u64,
            clock_ms: clock,
            steps,
            gaps,
        })
    })
}

/// Bookings made by tickets at these places in line `(cohort, queue index)`: each counts
/// toward the admission step that admitted it (the first whose `upto` is past it), read from
/// disk, one read per cohort; then one update per step, in (cohort, step) order.
pub fn count_booked(conn: &mut Conn, places: &[(i32, u64)]) -> Result<(), Error> {
    let mut by_cohort: std::collections::BTreeMap<i32, Vec<i64>> = Default::default();
    for (cohort, qidx) in places {
        by_cohort.entry(*cohort).or_default().push(*qidx as i64);
    }
    let mut steps: std::collections::BTreeMap<(i32, i64), i64> = Default::default();
    for (cohort_id, mut qidx) in by_cohort {
        qidx.sort_unstable();
        let (lo, hi) = (qidx[0], qidx[qidx.len() - 1]);
        let uptos: Vec<i64> = run!(conn, c => {
            let last: Option<i64> = admissions::table
                .filter(admissions::cohort_id.eq(cohort_id))
                .filter(admissions::upto.gt(hi))
                .select(diesel::dsl::min(admissions::upto))
                .first(c)?;
            admissions::table
                .filter(admissions::cohort_id.eq(cohort_id))
                .filter(admissions::upto.gt(lo))
                .filter(admissions::upto.le(last.unwrap_or(i64::MAX)))
                .order(admissions::upto)
                .select(admissions::upto)
                .load(c)
        })?;
        for q in qidx {
            let i = uptos.partition_point(|u| *u <= q);
            if let Some(upto) = uptos.get(i) {
                *steps.entry((cohort_id, *upto)).or_default() += 1;
            }
        }
    }
    run!(conn, c => {
        for ((cohort_id, upto), n) in &steps {
            AddBooked { cohort_id: *cohort_id, upto: *upto, n: *n }.execute(c)?;
        }
        Ok(())
    })
}

/// Adds attempts to the shared limits' counts: rows `(key, window start, window length, n)`,
/// one per (key, start). Answers, in the same order, each count after the addition and the
/// count of the window before. One statement; rows taken in (key, start) order, so two nodes'
/// statements lock them in the same order. PostgreSQL only (the counts are shared by nodes);
/// nothing on SQLite.
pub fn count_attempts(
    conn: &mut Conn,
    rows: &[(String, i64, i64, i64)],
) -> Result<Vec<(i64, i64)>, Error> {
    use diesel::sql_types::{Array, BigInt};
    #[derive(QueryableByName)]
    struct Counted {
        #[diesel(sql_type = BigInt)]
        hits: i64,
        #[diesel(sql_type = BigInt)]
        before: i64,
    }
    let Conn::Postgres(c) = conn else {
        return Ok(rows.iter().map(|r| (r.3, 0)).collect());
    };
    let c: &mut diesel::PgConnection = c;
    let keys: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let counted: Vec<Counted> = diesel::sql_query(
        "WITH w AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
                    WITH ORDINALITY AS w(key, window_start, len, n, i)), \
              hit AS (INSERT INTO limit_hits AS l (key, window_start, hits) \
                      SELECT key, window_start, n FROM w ORDER BY key, window_start \
                      ON CONFLICT (key, window_start) DO UPDATE SET hits = l.hits + EXCLUDED.hits \
                      RETURNING l.key, l.window_start, l.hits) \
         SELECT hit.hits AS hits, COALESCE(prev.hits, 0) AS before FROM w \
         JOIN hit ON hit.key = w.key AND hit.window_start = w.window_start \
         LEFT JOIN limit_hits prev \
           ON prev.key = w.key AND prev.window_start = w.window_start - w.len \
         ORDER BY w.i",
    )
    .bind::<Array<diesel::sql_types::Text>, _>(&keys)
    .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.2).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.3).collect::<Vec<_>>())
    .load(c)?;
    Ok(counted.into_iter().map(|c| (c.hits, c.before)).collect())
}

/// Takes attempts back from the shared limits' counts: rows `(key, window start, n)`.
pub fn take_back_attempts(conn: &mut Conn, rows: &[(String, i64, i64)]) -> Result<(), Error> {
    use diesel::sql_types::{Array, BigInt, Text};
    let Conn::Postgres(c) = conn else {
        return Ok(());
    };
    let c: &mut diesel::PgConnection = c;
    let mut merged: std::collections::BTreeMap<(&str, i64), i64> = Default::default();
    for (key, start, n) in rows {
        *merged.entry((key.as_str(), *start)).or_default() += n;
    }
    let keys: Vec<&str> = merged.keys().map(|k| k.0).collect();
    let starts: Vec<i64> = merged.keys().map(|k| k.1).collect();
    let ns: Vec<i64> = merged.values().copied().collect();
    diesel::sql_query(
        "UPDATE limit_hits AS l SET hits = GREATEST(l.hits - t.n, 0) \
         FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(key, window_start, n) \
         WHERE l.key = t.key AND l.window_start = t.window_start",
    )
    .bind::<Array<Text>, _>(&keys)
    .bind::<Array<BigInt>, _>(&starts)
    .bind::<Array<BigInt>, _>(&ns)
    .execute(c)
    .map(drop)
}

/// Forgets the attempt counts of windows that ended before `before_s`.
pub fn forget_attempts(conn: &mut Conn, before_s: i64) -> Result<usize, Error> {
    run!(conn, c => diesel::delete(limit_hits::table.filter(limit_hits::window_start.lt(before_s)))
        .execute(c))
}

/// This node's heartbeat (committed without waiting for the disk or a standby: a stalled
/// standby must not hold up what a node reads of the others).
pub fn heartbeat(conn: &mut Conn, row: &NodeRow) -> Result<(), Error> {
    if let Conn::Postgres(c) = conn {
        let c: &mut diesel::PgConnection = c;
        // SET LOCAL: the setting ends with this transaction, whatever happens to it, so a
        // pooled connection never carries it to a booking.
        return c.transaction(|c| {
            diesel::sql_query("SET LOCAL synchronous_commit TO OFF").execute(c)?;
            heartbeat_row(&mut Conn::Postgres(c), row)
        });
    }
    heartbeat_row(conn, row)
}

fn heartbeat_row(conn: &mut Conn, row: &NodeRow) -> Result<(), Error> {
    run!(conn, c => diesel::insert_into(nodes::table)
        .values(row)
        .on_conflict(nodes::name)
        .do_update()
        .set((
            nodes::last_seen_ms.eq(row.last_seen_ms),
            nodes::ready.eq(row.ready),
            nodes::stats.eq(&row.stats),
        ))
        .execute(c)
        .map(drop))
}

/// Nodes seen since `since_ms`, by name.
pub fn nodes_seen(conn: &mut Conn, since_ms: i64) -> Result<Vec<NodeRow>, Error> {
    run!(conn, c => nodes::table
        .filter(nodes::last_seen_ms.ge(since_ms))
        .order(nodes::name)
        .select(NodeRow::as_select())
        .load(c))
}

/// Every slot's places: (id, center, capacity, booked), leftover doses' slots left out.
pub fn slot_places(conn: &mut Conn) -> Result<Vec<(i32, i32, i32, i32)>, Error> {
    run!(conn, c => slots::table
        .filter(slots::leftover_until.is_null())
        .filter(slots::cancelled.eq(false))
        .order(slots::id)
        .select((slots::id, slots::center_id, slots::capacity, slots::booked))
        .load(c))
}

/// The slots with these ids.
pub fn slots_by_ids(conn: &mut Conn, ids: &[i32]) -> Result<Vec<SlotRow>, Error> {
    run!(conn, c => slots::table
        .filter(slots::id.eq_any(ids))
        .filter(slots::leftover_until.is_null())
        .filter(slots::cancelled.eq(false))
        .order(slots::id)
        .select(SlotRow::as_select())
        .load(c))
}

pub fn insert_center(conn: &mut Conn, row: &NewCenterRow) -> Result<i32, Error> {
    run!(conn, c => diesel::insert_into(centers::table)
        .values(row)
        .returning(centers::id)
        .get_result(c))
}

pub fn insert_slots(conn: &mut Conn, rows: &[NewSlotRow]) -> Result<Vec<i32>, Error> {
    run!(conn, c => rows
        .iter()
        .map(|row| {
            diesel::insert_into(slots::table)
                .values(row)
                .returning(slots::id)
                .get_result(c)
        })
        .collect())
}

/// PostgreSQL: locks the slot rows a batch will touch, in ascending id order, before it
/// touches any, so that two nodes' batches never wait for each other in a cycle. (SQLite has
/// one writer: nothing to order.)
pub fn lock_slots(conn: &mut Conn, ids: &[i32]) -> Result<(), Error> {
    match conn {
        Conn::Sqlite(_) => Ok(()),
        Conn::Postgres(c) => slots::table
            .filter(slots::id.eq_any(ids))
            .order(slots::id)
            .select(slots::id)
            .for_update()
            .load::<i32>(*c)
            .map(drop),
    }
}

/// What became of a booking the writer was asked to keep.
#[derive(Debug, Clone)]
pub enum BookOutcome {
    Booked(BookingRow),
    /// The same citizen and idempotency key booked before: that booking, nothing new.
    Repeat(BookingRow),
    /// The citizen already holds a live booking.
    AlreadyBooked,
    /// The database found no place left in this slot (another node took it).
    SlotFull(i32),
}

/// Gives one place back to a slot.
fn give_place(conn: &mut Conn, slot_id: i32) -> Result<(), Error> {
    run!(conn, c => diesel::update(slots::table.find(slot_id))
        .filter(slots::booked.gt(0))
        .set(slots::booked.eq(slots::booked - 1))
        .execute(c)
        .map(drop))
}

/// The bookings of these citizens that a new booking must be checked against: the live ones,
/// and those made with an idempotency key (a repeat answers the booking it repeats). On
/// PostgreSQL a statement per thousand citizens (each is a round trip); on SQLite one cached
/// statement per citizen, since diesel prepares an `IN` list anew every time, and preparing
/// costs far more than a lookup in-process.
fn live_or_keyed_bookings(conn: &mut Conn, keys: &[&str]) -> Result<Vec<BookingRow>, Error> {
    let mut out = Vec::new();
    match conn {
        Conn::Postgres(c) => {
            for chunk in keys.chunks(ROWS_PER_STATEMENT) {
                out.extend(
                    bookings::table
                        .filter(bookings::citizen_key.eq_any(chunk))
                        .filter(
                            bookings::state
                                .eq(STATE_CONFIRMED)
                                .or(bookings::idempotency_key.is_not_null()),
                        )
                        .select(BookingRow::as_select())
                        .load(*c)?,
                );
            }
        }
        Conn::Sqlite(c) => {
            // Every booking of the citizen (a handful at most), sorted here: a bound `state`
            // beside the partial index `bookings_one_live` would make SQLite plan the
            // statement anew at every bind, cached or not.
            for key in keys {
                out.extend(
                    fixed::<BookingsOfCitizen, _>(
                        bookings::table
                            .filter(bookings::citizen_key.eq(*key))
                            .select(BookingRow::as_select()),
                    )
                    .load::<BookingRow>(*c)?
                    .into_iter()
                    .filter(|b: &BookingRow| {
                        b.state == STATE_CONFIRMED || b.idempotency_key.is_some()
                    }),
                );
            }
        }
    }
    Ok(out)
}

/// Places left in each of these slots, read from disk (on PostgreSQL the caller locked the
/// rows). As above: one statement on PostgreSQL, a cached one per slot on SQLite.
fn room_in_slots(conn: &mut Conn, ids: &[i32]) -> Result<HashMap<i32, i64>, Error> {
    let rows: Vec<(i32, i32, i32)> = match conn {
        Conn::Postgres(c) => slots::table
            .filter(slots::id.eq_any(ids))
            .select((slots::id, slots::capacity, slots::booked))
            .load(*c)?,
        Conn::Sqlite(c) => {
            let mut rows = Vec::with_capacity(ids.len());
            for id in ids {
                rows.extend(
                    fixed::<RoomInSlot, _>(slots::table.find(*id).select((
                        slots::id,
                        slots::capacity,
                        slots::booked,
                    )))
                    .load::<(i32, i32, i32)>(*c)?,
                );
            }
            rows
        }
    };
    Ok(rows
        .into_iter()
        .map(|(id, cap, booked)| (id, i64::from(cap - booked)))
        .collect())
}

/// Rows per statement when many go in one: far below SQLite's 32,766 bound parameters and
/// PostgreSQL's 65,535 (a booking row has 15).
const ROWS_PER_STATEMENT: usize = 1000;

/// Books many at once, in order, each both doses or nothing, with a handful of statements for
/// the whole batch instead of five per booking (on PostgreSQL each is a round trip): the
/// citizens' bookings read at once, the slot rows read at once (the caller locked them), every
/// decision taken in memory over those rows, one update per slot touched, the citizens and the
/// bookings inserted many rows a statement. The database keeps the last word: the slot updates
/// run under `CHECK (booked <= capacity)`, and a booking row that meets another live booking
/// of its citizen (another node's, committed meanwhile) is not inserted
/// (`ON CONFLICT DO NOTHING`); its places are given back and it is answered `AlreadyBooked`.
/// Within the batch, a citizen's second booking is `AlreadyBooked`, or `Repeat` of the first
/// with the same idempotency key.
pub fn insert_bookings(
    conn: &mut Conn,
    items: &[(&NewCitizenRow, &NewBookingRow)],
) -> Result<Vec<BookOutcome>, Error> {
    use std::collections::HashSet;
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = {
        let mut k: Vec<&str> = items.iter().map(|(_, b)| b.citizen_key.as_str()).collect();
        k.sort_unstable();
        k.dedup();
        k
    };
    let earlier = live_or_keyed_bookings(conn, &keys)?;
    let slot_ids: Vec<i32> = {
        let mut ids: Vec<i32> = items
            .iter()
            .flat_map(|(_, b)| [b.first_slot_id, b.second_slot_id])
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let mut room = room_in_slots(conn, &slot_ids)?;

    enum Plan {
        Done(Box<BookOutcome>),
        /// A repeat of the booking item `i` of this batch makes.
        RepeatOf(usize),
        Insert,
    }
    let mut live: HashSet<&str> = earlier
        .iter()
        .filter(|b| b.state == STATE_CONFIRMED)
        .map(|b| b.citizen_key.as_str())
        .collect();
    // (citizen, idempotency key) -> the booking on disk, and -> the first item of this batch:
    // looked up, not scanned, for each of up to thousands of items.
    let mut on_disk: HashMap<(&str, &str), &BookingRow> = HashMap::new();
    for e in &earlier {
        if let Some(k) = e.idempotency_key.as_deref() {
            on_disk.entry((e.citizen_key.as_str(), k)).or_insert(e);
        }
    }
    let mut first_here: HashMap<(&str, &str), usize> = HashMap::new();
    let mut taken: HashMap<i32, i64> = HashMap::new();
    let mut plans = Vec::with_capacity(items.len());
    for (i, (_, b)) in items.iter().enumerate() {
        let key = b
            .idempotency_key
            .as_deref()
            .map(|k| (b.citizen_key.as_str(), k));
        let repeat_on_disk = key.and_then(|k| on_disk.get(&k).copied());
        let repeat_here = key.and_then(|k| first_here.get(&k).copied());
        if let Some(k) = key {
            first_here.entry(k).or_insert(i);
        }
        let plan = if let Some(row) = repeat_on_disk {
            Plan::Done(Box::new(BookOutcome::Repeat(row.clone())))
        } else if let Some(j) = repeat_here.filter(|j| matches!(plans[*j], Plan::Insert)) {
            Plan::RepeatOf(j)
        } else if live.contains(b.citizen_key.as_str()) {
            Plan::Done(Box::new(BookOutcome::AlreadyBooked))
        } else {
            let mut full = None;
            for id in [b.first_slot_id, b.second_slot_id] {
                let left = room.get(&id).copied().unwrap_or(0);
                if left <= 0 {
                    full = Some(id);
                    break;
                }
                room.insert(id, left - 1);
            }
            match full {
                Some(id) => {
                    // Give back the first dose's place if the second had none.
                    if id == b.second_slot_id {
                        *room.entry(b.first_slot_id).or_default() += 1;
                    }
                    Plan::Done(Box::new(BookOutcome::SlotFull(id)))
                }
                None => {
                    for id in [b.first_slot_id, b.second_slot_id] {
                        *taken.entry(id).or_default() += 1;
                    }
                    live.insert(b.citizen_key.as_str());
                    Plan::Insert
                }
            }
        };
        plans.push(plan);
    }

    let to_insert: Vec<usize> = (0..items.len())
        .filter(|i| matches!(plans[*i], Plan::Insert))
        .collect();
    let mut inserted: HashMap<String, BookingRow> = HashMap::new();
    if !to_insert.is_empty() {
        let mut ids: Vec<(&i32, &i64)> = taken.iter().collect();
        ids.sort_unstable();
        for (id, n) in ids {
            add_places(conn, *id, *n)?;
        }
        let mut citizens_rows: Vec<&NewCitizenRow> =
            to_insert.iter().map(|i| items[*i].0).collect();
        citizens_rows.sort_by(|a, b| a.key.cmp(&b.key));
        citizens_rows.dedup_by(|a, b| a.key == b.key);
        for chunk in citizens_rows.chunks(ROWS_PER_STATEMENT) {
            upsert_citizens(conn, chunk)?;
        }
        for chunk in to_insert.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<&NewBookingRow> = chunk.iter().map(|i| items[*i].1).collect();
            let by_code: HashMap<&str, &NewBookingRow> =
                rows.iter().map(|r| (r.code.as_str(), *r)).collect();
            for (id, code) in insert_booking_rows(conn, &rows)? {
                if let Some(row) = by_code.get(code.as_str()) {
                    inserted.insert(code, booking_row(id, row));
                }
            }
        }
        // Each booking's "booked" message, in this transaction and in the batch's style: it
        // is in the outbox if and only if the booking committed.
        let messages: Vec<super::outbox::NewMessage> = to_insert
            .iter()
            .filter_map(|i| {
                let (citizen, b) = items[*i];
                inserted
                    .get(&b.code)
                    .map(|row| super::outbox::NewMessage::booked(row, citizen.phone_sealed.clone()))
            })
            .collect();
        super::outbox::enqueue_many(conn, &messages)?;
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, plan) in plans.into_iter().enumerate() {
        let b = items[i].1;
        out.push(match plan {
            Plan::Done(outcome) => *outcome,
            Plan::Insert => match inserted.get(&b.code) {
                Some(row) => BookOutcome::Booked(row.clone()),
                None => {
                    // Another node's live booking for this citizen committed in between.
                    give_place(conn, b.first_slot_id)?;
                    give_place(conn, b.second_slot_id)?;
                    BookOutcome::AlreadyBooked
                }
            },
            Plan::RepeatOf(j) => match inserted.get(&items[j].1.code) {
                Some(row) => BookOutcome::Repeat(row.clone()),
                None => BookOutcome::AlreadyBooked,
            },
        });
    }
    Ok(out)
}

/// The row a booking insert made, without reading it back.
fn booking_row(id: i32, b: &NewBookingRow) -> BookingRow {
    BookingRow {
        id,
        code: b.code.clone(),
        citizen_key: b.citizen_key.clone(),
        cohort_id: b.cohort_id,
        ticket_seq: b.ticket_seq,
        vaccine: b.vaccine.clone(),
        center_id: b.center_id,
        first_slot_id: b.first_slot_id,
        first_date: b.first_date.clone(),
        first_start: b.first_start.clone(),
        second_slot_id: b.second_slot_id,
        second_date: b.second_date.clone(),
        second_start: b.second_start.clone(),
        state: b.state.clone(),
        idempotency_key: b.idempotency_key.clone(),
        created_at: b.created_at,
        cancelled_at: None,
    }
}

#[derive(QueryableByName)]
struct IdCode {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    id: i32,
    #[diesel(sql_type = diesel::sql_types::Text)]
    code: String,
}

#[derive(QueryableByName)]
struct Bound {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    cohort_id: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    ticket_seq: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    citizen_key: String,
}

/// Inserts booking rows, skipping any that meets a unique index (`ON CONFLICT DO NOTHING`);
/// the (id, code) of those inserted. On PostgreSQL one prepared statement over arrays
/// (`unnest`), whatever the count: a multi-row `VALUES` would be a new statement to parse and
/// plan for every batch size.
fn insert_booking_rows(
    conn: &mut Conn,
    rows: &[&NewBookingRow],
) -> Result<Vec<(i32, String)>, Error> {
    use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
    match conn {
        Conn::Postgres(c) => {
            let col =
                |f: fn(&NewBookingRow) -> String| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
            let int = |f: fn(&NewBookingRow) -> i32| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
            let got: Vec<IdCode> = diesel::sql_query(
                "INSERT INTO bookings (code, citizen_key, cohort_id, ticket_seq, vaccine, \
                 center_id, first_slot_id, first_date, first_start, second_slot_id, second_date, \
                 second_start, state, idempotency_key, created_at) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::text[], \
                 $6::int4[], $7::int4[], $8::text[], $9::text[], $10::int4[], $11::text[], \
                 $12::text[], $13::text[], $14::text[], $15::int8[]) \
                 ON CONFLICT DO NOTHING RETURNING id, code",
            )
            .bind::<Array<Text>, _>(col(|r| r.code.clone()))
            .bind::<Array<Text>, _>(col(|r| r.citizen_key.clone()))
            .bind::<Array<Integer>, _>(int(|r| r.cohort_id))
            .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.ticket_seq).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(col(|r| r.vaccine.clone()))
            .bind::<Array<Integer>, _>(int(|r| r.center_id))
            .bind::<Array<Integer>, _>(int(|r| r.first_slot_id))
            .bind::<Array<Text>, _>(col(|r| r.first_date.clone()))
            .bind::<Array<Text>, _>(col(|r| r.first_start.clone()))
            .bind::<Array<Integer>, _>(int(|r| r.second_slot_id))
            .bind::<Array<Text>, _>(col(|r| r.second_date.clone()))
            .bind::<Array<Text>, _>(col(|r| r.second_start.clone()))
            .bind::<Array<Text>, _>(col(|r| r.state.clone()))
            .bind::<Array<Nullable<Text>>, _>(
                rows.iter()
                    .map(|r| r.idempotency_key.clone())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .load(*c)?;
            Ok(got.into_iter().map(|r| (r.id, r.code)).collect())
        }
        Conn::Sqlite(c) => {
            // One cached statement a row, without RETURNING: the writer knows every field but
            // the id, which SQLite hands back for nothing.
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let n = fixed::<InsertBooking, _>(
                    diesel::insert_into(bookings::table)
                        .values(*row)
                        .on_conflict_do_nothing(),
                )
                .execute(*c)?;
                if n == 1 {
                    let id: i64 = diesel::select(last_insert_rowid()).get_result(*c)?;
                    out.push((id as i32, row.code.clone()));
                }
            }
            Ok(out)
        }
    }
}

/// Inserts citizens, or renews the masked name of those known.
fn upsert_citizens(conn: &mut Conn, rows: &[&NewCitizenRow]) -> Result<(), Error> {
    use diesel::sql_types::{Array, BigInt, Nullable, Text};
    match conn {
        Conn::Postgres(c) => diesel::sql_query(
            "INSERT INTO citizens (key, masked_name, birth_date, created_at, phone_sealed) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[]) \
             ON CONFLICT (key) DO UPDATE SET masked_name = excluded.masked_name, \
             phone_sealed = COALESCE(excluded.phone_sealed, citizens.phone_sealed)",
        )
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|r| r.masked_name.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|r| r.birth_date.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            rows.iter()
                .map(|r| r.phone_sealed.clone())
                .collect::<Vec<_>>(),
        )
        .execute(*c)
        .map(drop),
        Conn::Sqlite(c) => {
            // A cached insert a row; a citizen known already (a booking after a cancellation)
            // has the masked name renewed by an update of its own, which is rare.
            for row in rows {
                let n = fixed::<InsertCitizen, _>(
                    diesel::insert_into(citizens::table)
                        .values(*row)
                        .on_conflict_do_nothing(),
                )
                .execute(*c)?;
                if n == 0 {
                    diesel::update(citizens::table.find(&row.key))
                        .set(citizens::masked_name.eq(&row.masked_name))
                        .execute(*c)?;
                    if row.phone_sealed.is_some() {
                        diesel::update(citizens::table.find(&row.key))
                            .set(citizens::phone_sealed.eq(&row.phone_sealed))
                            .execute(*c)?;
                    }
                }
            }
            Ok(())
        }
    }
}

/// Inserts pass claims, skipping those of passes bound already; the ones inserted.
fn insert_claim_rows(
    conn: &mut Conn,
    rows: &[&NewPassClaim],
) -> Result<Vec<(i32, i64, String)>, Error> {
    use diesel::sql_types::{Array, BigInt, Integer, Text};
    match conn {
        Conn::Postgres(c) => {
            let got: Vec<Bound> = diesel::sql_query(
                "INSERT INTO pass_claims (cohort_id, ticket_seq, citizen_key, claimed_at) \
                 SELECT * FROM unnest($1::int4[], $2::int8[], $3::text[], $4::int8[]) \
                 ON CONFLICT DO NOTHING RETURNING cohort_id, ticket_seq, citizen_key",
            )
            .bind::<Array<Integer>, _>(rows.iter().map(|r| r.cohort_id).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.ticket_seq).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(
                rows.iter()
                    .map(|r| r.citizen_key.clone())
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.claimed_at).collect::<Vec<_>>())
            .load(*c)?;
            Ok(got
                .into_iter()
                .map(|b| (b.cohort_id, b.ticket_seq, b.citizen_key))
                .collect())
        }
        Conn::Sqlite(c) => {
            let mut out = Vec::new();
            for row in rows {
                let n = fixed::<InsertClaim, _>(
                    diesel::insert_into(pass_claims::table)
                        .values(*row)
                        .on_conflict_do_nothing(),
                )
                .execute(*c)?;
                if n == 1 {
                    out.push((row.cohort_id, row.ticket_seq, row.citizen_key.clone()));
                }
            }
            Ok(out)
        }
    }
}

/// Takes `n` places of a slot at once, never past its capacity (the CHECK refuses).
fn add_places(conn: &mut Conn, slot_id: i32, n: i64) -> Result<(), Error> {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    run!(conn, c => AddPlaces { slot_id, n }.execute(c).map(drop))
}

/// A query whose SQL text is the same at every call, cached by diesel under the type `K`.
/// Diesel keys its cache of prepared statements by a query's static type when it has one, and
/// otherwise renders the SQL text anew at every call to look it up (a quarter of what the
/// writer's hot statements cost it). Only for queries whose text cannot vary with their
/// values: rows with no optional column left to a default, filters of fixed shape.
pub(super) struct Fixed<K, Q> {
    query: Q,
    key: std::marker::PhantomData<K>,
}

pub(super) fn fixed<K, Q>(query: Q) -> Fixed<K, Q> {
    Fixed {
        query,
        key: std::marker::PhantomData,
    }
}

impl<K: 'static, Q> diesel::query_builder::QueryId for Fixed<K, Q> {
    type QueryId = K;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<K, Q, DB> diesel::query_builder::QueryFragment<DB> for Fixed<K, Q>
where
    DB: diesel::backend::Backend,
    Q: diesel::query_builder::QueryFragment<DB>,
{
    fn walk_ast<'b>(
        &'b self,
        pass: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        self.query.walk_ast(pass)
    }
}

impl<K, Q: diesel::query_builder::Query> diesel::query_builder::Query for Fixed<K, Q> {
    type SqlType = Q::SqlType;
}

impl<K, Q, C> RunQueryDsl<C> for Fixed<K, Q> {}

/// The keys of the writer's hot statements in diesel's cache (see `Fixed`).
enum BookingsOfCitizen {}
enum RoomInSlot {}
enum InsertBooking {}
enum InsertCitizen {}
enum InsertClaim {}

define_sql_function! {
    /// SQLite's id of the row the connection inserted last.
    fn last_insert_rowid() -> diesel::sql_types::BigInt;
}

/// `UPDATE slots SET booked = booked + n WHERE id = slot_id`, as a statement of its own type:
/// diesel prepares every UPDATE of its query builder anew each time it runs (its cache skips
/// them), which cost the writer more than the update itself. A fixed text with a static query
/// id is prepared once per connection and kept.
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
struct AddPlaces {
    slot_id: i32,
    n: i32,
}

impl<DB> diesel::query_builder::QueryFragment<DB> for AddPlaces
where
    DB: diesel::backend::Backend,
    i32: diesel::serialize::ToSql<diesel::sql_types::Integer, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        use diesel::sql_types::Integer;
        out.push_sql("UPDATE slots SET booked = booked + ");
        out.push_bind_param::<Integer, _>(&self.n)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Integer, _>(&self.slot_id)
    }
}

impl<C> RunQueryDsl<C> for AddPlaces {}

/// `UPDATE admissions SET booked = booked + n WHERE (cohort_id, upto) = (..)`, kept prepared
/// like `AddPlaces`.
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
struct AddBooked {
    cohort_id: i32,
    upto: i64,
    n: i64,
}

impl<DB> diesel::query_builder::QueryFragment<DB> for AddBooked
where
    DB: diesel::backend::Backend,
    i32: diesel::serialize::ToSql<diesel::sql_types::Integer, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        use diesel::sql_types::{BigInt, Integer};
        out.push_sql("UPDATE admissions SET booked = booked + ");
        out.push_bind_param::<BigInt, _>(&self.n)?;
        out.push_sql(" WHERE cohort_id = ");
        out.push_bind_param::<Integer, _>(&self.cohort_id)?;
        out.push_sql(" AND upto = ");
        out.push_bind_param::<BigInt, _>(&self.upto)
    }
}

impl<C> RunQueryDsl<C> for AddBooked {}

/// Binds many passes at once (`claim_pass` for each, in one statement): the citizen each pass
/// is bound to afterwards, in order.
pub fn claim_passes(conn: &mut Conn, claims: &[&NewPassClaim]) -> Result<Vec<String>, Error> {
    let mut bound: HashMap<(i32, i64), String> = HashMap::new();
    for chunk in claims.chunks(ROWS_PER_STATEMENT) {
        let got = insert_claim_rows(conn, chunk)?;
        bound.extend(got.into_iter().map(|(c, s, k)| ((c, s), k)));
    }
    claims
        .iter()
        .map(
            |claim| match bound.get(&(claim.cohort_id, claim.ticket_seq)) {
                Some(key) => Ok(key.clone()),
                // Bound before (by another node, or earlier): whoever holds it.
                None => run!(conn, c => pass_claims::table
                .find((claim.cohort_id, claim.ticket_seq))
                .select(pass_claims::citizen_key)
                .first(c)),
            },
        )
        .collect()
}

/// Cancels a live booking and gives both its places back; `None` if there is none with that
/// code. A booking that needs rebooking holds no places: it is cancelled too (the citizen
/// was told it could not be moved, and says they will not rebook), with its message, and
/// `None` as well, for there is nothing to give back.
pub fn cancel_booking(conn: &mut Conn, code: &str, now: i64) -> Result<Option<BookingRow>, Error> {
    let cancelled: Option<BookingRow> = run!(conn, c => diesel::update(bookings::table)
        .filter(bookings::code.eq(code))
        .filter(bookings::state.eq(STATE_CONFIRMED))
        .set((
            bookings::state.eq(STATE_CANCELLED),
            bookings::cancelled_at.eq(now),
        ))
        .returning(BookingRow::as_returning())
        .get_result(c)
        .optional())?;
    if let Some(b) = &cancelled {
        give_place(conn, b.first_slot_id)?;
        give_place(conn, b.second_slot_id)?;
        let phone = super::outbox::phone_of(conn, &b.citizen_key)?;
        super::outbox::enqueue(conn, &super::outbox::NewMessage::cancelled(b, phone, now))?;
        super::outbox::drop_pending_reminders(conn, &b.code, None)?;
        return Ok(cancelled);
    }
    let unplaced: Option<BookingRow> = run!(conn, c => diesel::update(bookings::table)
        .filter(bookings::code.eq(code))
        .filter(bookings::state.eq(super::rebooking::STATE_NEEDS_REBOOKING))
        .set((
            bookings::state.eq(STATE_CANCELLED),
            bookings::cancelled_at.eq(now),
        ))
        .returning(BookingRow::as_returning())
        .get_result(c)
        .optional())?;
    if let Some(b) = &unplaced {
        let phone = super::outbox::phone_of(conn, &b.citizen_key)?;
        super::outbox::enqueue(conn, &super::outbox::NewMessage::cancelled(b, phone, now))?;
    }
    Ok(None)
}

/// The slot ids a booking or cancellation of this code will touch (for `lock_slots`).
pub fn slots_of_booking(conn: &mut Conn, code: &str) -> Result<Option<(i32, i32)>, Error> {
    run!(conn, c => bookings::table
        .filter(bookings::code.eq(code))
        .select((bookings::first_slot_id, bookings::second_slot_id))
        .first(c)
        .optional())
}

/// Citizens holding more than one live booking (must always be 0).
pub fn citizens_with_several_live_bookings(conn: &mut Conn) -> Result<i64, Error> {
    let per_citizen: Vec<(String, i64)> = run!(conn, c => bookings::table
        .filter(bookings::state.eq(STATE_CONFIRMED))
        .group_by(bookings::citizen_key)
        .select((bookings::citizen_key, count_star()))
        .load(c))?;
    Ok(per_citizen.iter().filter(|(_, n)| *n > 1).count() as i64)
}

/// The places live bookings hold in each slot, counted from the bookings themselves (either
/// dose): what the slot rows' `booked` must equal.
pub fn live_places(conn: &mut Conn) -> Result<HashMap<i32, i64>, Error> {
    type PerSlot = Vec<(i32, i64)>;
    let (first, second): (PerSlot, PerSlot) = run!(conn, c => {
        let first = bookings::table
            .filter(bookings::state.eq(STATE_CONFIRMED))
            .group_by(bookings::first_slot_id)
            .select((bookings::first_slot_id, count_star()))
            .load(c)?;
        let second = bookings::table
            .filter(bookings::state.eq(STATE_CONFIRMED))
            .group_by(bookings::second_slot_id)
            .select((bookings::second_slot_id, count_star()))
            .load(c)?;
        Ok::<_, Error>((first, second))
    })?;
    let mut taken: HashMap<i32, i64> = HashMap::new();
    for (id, n) in first.into_iter().chain(second) {
        *taken.entry(id).or_default() += n;
    }
    Ok(taken)
}

/// Slots whose live bookings exceed their capacity, or differ from the places the slot row
/// holds (must always be none).
pub fn slots_out_of_step(conn: &mut Conn) -> Result<Vec<i32>, Error> {
    let taken = live_places(conn)?;
    Ok(load_slots(conn)?
        .iter()
        .filter(|s| {
            let n = taken.get(&s.id).copied().unwrap_or(0);
            n != i64::from(s.booked) || n > i64::from(s.capacity)
        })
        .map(|s| s.id)
        .collect())
}
