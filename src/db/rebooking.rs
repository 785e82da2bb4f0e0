//! Supply changes and rebooking, in SQL: a slot's change (`PATCH admin/slots/{id}`), the jobs
//! that move bookings (`rebooking_jobs`) and what each did to each booking
//! (`rebooking_items`). Every function here runs inside the writer's transaction
//! (`BookingStore`, `Write::Rebook`), so a job's steps are group-committed with the citizens'
//! writes.
//!
//! A step moves up to `n` bookings, each in a savepoint of its own: the new place is taken by
//! the conditional update every booking uses (`booked < capacity`, under the CHECK), the old
//! one given back and the booking row changed, all or nothing. Its `rebooking_items` row, its
//! messages and the reminders it drops are gathered (`Later`) and written for the whole chunk
//! at the step's end, in the same transaction; the job's counts and cursor too. So a crash loses
//! a step whole or keeps it whole, and the items' primary key (job, booking) refuses a second
//! move of one booking by one job whatever happens. A slot being emptied has its capacity
//! lowered with every place given back, so it never takes a new booking meanwhile.

use super::models::SlotRow;
use super::outbox::NewMessage;
use super::schema::{bookings, centers, cohorts, rebooking_items, rebooking_jobs, slots};
use super::Conn;
use crate::domain::booking::STATE_CONFIRMED;
use crate::domain::rebooking::{
    choose, second_dose_fits, Candidate, Move, Place, Target, MOVE_WINDOW_DAYS,
};
use crate::domain::slot::{format_time, parse_time};
use crate::run;
use chrono::{Days, NaiveDate};
use diesel::prelude::*;
use diesel::result::Error;
use std::collections::{BTreeSet, HashMap, HashSet};

pub use crate::domain::booking::STATE_NEEDS_REBOOKING;
pub const JOB_RUNNING: &str = "running";
pub const JOB_DONE: &str = "done";
const KIND_SHIFT: &str = "shift";
const KIND_SLOT: &str = "slot";
const OUTCOME_MOVED: &str = "moved";

/// A change the writer makes for rebooking.
#[derive(Debug, Clone)]
pub enum RebookWrite {
    /// Starts a second-dose shift job over the live bookings of `vaccine` as they are now.
    CreateShift {
        vaccine: String,
        days: i32,
        today: String,
        now: i64,
    },
    /// Changes a slot's capacity or cancels it; starts (or widens) a job when bookings no
    /// longer fit.
    PatchSlot {
        slot_id: i32,
        capacity: Option<i32>,
        cancel: bool,
        today: String,
        now: i64,
    },
    /// Moves the next bookings of a running job, `n` at most.
    Step { job_id: i32, n: usize, now: i64 },
}

/// What a rebooking write did.
#[derive(Debug, Clone)]
pub enum RebookWritten {
    Created(JobRow),
    Patched(Result<PatchedSlot, PatchRefusal>),
    Stepped(Stepped),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchRefusal {
    NotFound,
    /// A cancelled slot stays cancelled.
    Cancelled,
}

/// A slot as changed, with the job that moves its bookings, if one had to.
#[derive(Debug, Clone)]
pub struct PatchedSlot {
    pub slot: SlotRow,
    /// The capacity asked for (the row's own comes down to it as the job moves bookings).
    pub capacity: i32,
    pub cancelled: bool,
    pub job: Option<i32>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rebooking_jobs)]
pub struct JobRow {
    pub id: i32,
    pub kind: String,
    pub vaccine: String,
    pub shift_days: i32,
    pub slot_id: Option<i32>,
    pub target_capacity: Option<i32>,
    pub last_booking_id: i32,
    pub today: String,
    pub state: String,
    pub total: i64,
    pub moved: i64,
    pub unmovable: i64,
    pub done_upto: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct Stepped {
    pub job: JobRow,
    /// Slots whose places changed (for the centers' inventories).
    pub slots: Vec<i32>,
    /// Bookings the step dealt with, and the time it took (so the next step can be sized).
    pub bookings: usize,
    pub took: std::time::Duration,
}

/// The writes of the rebooking, in the writer's transaction.
pub fn apply(conn: &mut Conn, w: &RebookWrite) -> Result<RebookWritten, Error> {
    Ok(match w {
        RebookWrite::CreateShift {
            vaccine,
            days,
            today,
            now,
        } => RebookWritten::Created(create_shift(conn, vaccine, *days, today, *now)?),
        RebookWrite::PatchSlot {
            slot_id,
            capacity,
            cancel,
            today,
            now,
        } => RebookWritten::Patched(patch_slot(conn, *slot_id, *capacity, *cancel, today, *now)?),
        RebookWrite::Step { job_id, n, now } => {
            RebookWritten::Stepped(step(conn, *job_id, *n, *now)?)
        }
    })
}

/// PostgreSQL: the slot rows a write may touch, for the writer to lock in ascending id order
/// before it touches any (as every batch does): the slot patched, or for a step the places its
/// bookings hold and every place of the vaccine in their regions and move windows.
pub fn slots_to_lock(conn: &mut Conn, w: &RebookWrite) -> Result<Vec<i32>, Error> {
    match w {
        RebookWrite::CreateShift { .. } => Ok(Vec::new()),
        RebookWrite::PatchSlot { slot_id, .. } => Ok(vec![*slot_id]),
        RebookWrite::Step { job_id, n, .. } => {
            let Some(job) = load_job(conn, *job_id)? else {
                return Ok(Vec::new());
            };
            if job.state != JOB_RUNNING {
                return Ok(Vec::new());
            }
            let chunk = next_chunk(conn, &job, *n)?;
            let mut ids: Vec<i32> = chunk
                .iter()
                .flat_map(|b| [b.first_slot_id, b.second_slot_id])
                .collect();
            let mut regions: BTreeSet<String> = BTreeSet::new();
            let mut seen: BTreeSet<i32> = BTreeSet::new();
            let (mut from, mut to): (Option<String>, Option<String>) = (None, None);
            for b in &chunk {
                // A region read once a center (a chunk's bookings share a few centers).
                if seen.insert(b.center_id) {
                    regions.extend(region_of(conn, b.center_id)?);
                }
                let (lo, hi) = lock_window(&job, b);
                from = Some(from.map_or(lo.clone(), |f: String| f.min(lo)));
                to = Some(to.map_or(hi.clone(), |t: String| t.max(hi)));
            }
            if let (Some(from), Some(to)) = (from, to) {
                let regions: Vec<String> = regions.into_iter().collect();
                ids.extend(run!(conn, c => slots::table
                    .inner_join(centers::table)
                    .filter(centers::region.eq_any(&regions))
                    .filter(slots::vaccine.eq(&job.vaccine))
                    .filter(slots::date.ge(from))
                    .filter(slots::date.le(to))
                    .select(slots::id)
                    .load::<i32>(c))?);
            }
            if let Some(s) = job.slot_id {
                ids.push(s);
            }
            Ok(ids)
        }
    }
}

/// The days a booking's moves may land on, widely: from its earlier dose's day to 7 days
/// after the latest target any of its doses may get.
fn lock_window(job: &JobRow, b: &LiveBooking) -> (String, String) {
    let lo = b.first_date.clone();
    let base = parse_day(&b.second_date).unwrap_or(NaiveDate::MIN);
    let extra = i64::from(job.shift_days.max(0)) + 2 * MOVE_WINDOW_DAYS as i64 + 120;
    let hi = base
        .checked_add_days(Days::new(extra as u64))
        .unwrap_or(NaiveDate::MAX)
        .to_string();
    (lo, hi)
}

pub fn load_job(conn: &mut Conn, id: i32) -> Result<Option<JobRow>, Error> {
    run!(conn, c => rebooking_jobs::table
        .find(id)
        .select(JobRow::as_select())
        .first(c)
        .optional())
}

/// The latest `limit` jobs, newest first (the operators' list).
pub fn latest_jobs(conn: &mut Conn, limit: i64) -> Result<Vec<JobRow>, Error> {
    run!(conn, c => rebooking_jobs::table
        .order(rebooking_jobs::id.desc())
        .limit(limit)
        .select(JobRow::as_select())
        .load(c))
}

/// Jobs still running (resumed at start).
pub fn running_jobs(conn: &mut Conn) -> Result<Vec<JobRow>, Error> {
    run!(conn, c => rebooking_jobs::table
        .filter(rebooking_jobs::state.eq(JOB_RUNNING))
        .order(rebooking_jobs::id)
        .select(JobRow::as_select())
        .load(c))
}

/// Counts over every job, for `/metrics`: (running jobs, bookings moved, unmovable).
pub fn totals(conn: &mut Conn) -> Result<(i64, i64, i64), Error> {
    let rows: Vec<(String, i64, i64)> = run!(conn, c => rebooking_jobs::table
        .select((rebooking_jobs::state, rebooking_jobs::moved, rebooking_jobs::unmovable))
        .load(c))?;
    Ok(rows.iter().fold((0, 0, 0), |(r, m, u), (s, mv, un)| {
        (r + i64::from(s == JOB_RUNNING), m + mv, u + un)
    }))
}

/// A booking's second center (when not the first's) and every move made of it, oldest first.
pub fn booking_extra(conn: &mut Conn, booking_id: i32) -> Result<(Option<i32>, Vec<Move>), Error> {
    let (second, items): (Option<Option<i32>>, Vec<String>) = run!(conn, c => {
        let second = bookings::table
            .find(booking_id)
            .select(bookings::second_center_id)
            .first::<Option<i32>>(c)
            .optional()?;
        let items = rebooking_items::table
            .filter(rebooking_items::booking_id.eq(booking_id))
            .order((rebooking_items::moved_at, rebooking_items::job_id))
            .select(rebooking_items::moves)
            .load::<String>(c)?;
        Ok::<_, Error>((second, items))
    })?;
    let moves = items
        .iter()
        .flat_map(|m| serde_json::from_str::<Vec<Move>>(m).unwrap_or_default())
        .collect();
    Ok((second.flatten(), moves))
}

/// The slots cancelled (id, center), for other nodes to drop them from their listings.
pub fn cancelled_slots(conn: &mut Conn) -> Result<Vec<(i32, i32)>, Error> {
    run!(conn, c => slots::table
        .filter(slots::cancelled.eq(true))
        .select((slots::id, slots::center_id))
        .load(c))
}

/// Places of these slots as on disk: (slot, center, capacity, booked).
pub fn places_of(conn: &mut Conn, ids: &[i32]) -> Result<Vec<(i32, i32, i32, i32)>, Error> {
    run!(conn, c => slots::table
        .filter(slots::id.eq_any(ids))
        .select((slots::id, slots::center_id, slots::capacity, slots::booked))
        .load(c))
}

fn create_shift(
    conn: &mut Conn,
    vaccine: &str,
    days: i32,
    today: &str,
    now: i64,
) -> Result<JobRow, Error> {
    // The bookings as they are now: those made later got their days by the rule in force.
    let (last, total): (Option<i32>, i64) = run!(conn, c => {
        let last = bookings::table
            .select(diesel::dsl::max(bookings::id))
            .first::<Option<i32>>(c)?;
        let total = bookings::table
            .filter(bookings::vaccine.eq(vaccine))
            .filter(bookings::state.eq(STATE_CONFIRMED))
            .filter(bookings::second_date.gt(today))
            .count()
            .get_result::<i64>(c)?;
        Ok::<_, Error>((last, total))
    })?;
    insert_job(
        conn,
        NewJob {
            kind: KIND_SHIFT.into(),
            vaccine: vaccine.into(),
            shift_days: days,
            slot_id: None,
            target_capacity: None,
            last_booking_id: last.unwrap_or(0),
            today: today.into(),
            state: JOB_RUNNING.into(),
            total,
            created_at: now,
        },
    )
}

#[derive(Insertable)]
#[diesel(table_name = rebooking_jobs)]
struct NewJob {
    kind: String,
    vaccine: String,
    shift_days: i32,
    slot_id: Option<i32>,
    target_capacity: Option<i32>,
    last_booking_id: i32,
    today: String,
    state: String,
    total: i64,
    created_at: i64,
}

fn insert_job(conn: &mut Conn, job: NewJob) -> Result<JobRow, Error> {
    run!(conn, c => diesel::insert_into(rebooking_jobs::table)
        .values(&job)
        .returning(JobRow::as_returning())
        .get_result(c))
}

fn patch_slot(
    conn: &mut Conn,
    slot_id: i32,
    capacity: Option<i32>,
    cancel: bool,
    today: &str,
    now: i64,
) -> Result<Result<PatchedSlot, PatchRefusal>, Error> {
    let row: Option<(SlotRow, bool)> = run!(conn, c => slots::table
        .find(slot_id)
        .filter(slots::leftover_until.is_null())
        .select((SlotRow::as_select(), slots::cancelled))
        .first(c)
        .optional())?;
    let Some((slot, was_cancelled)) = row else {
        return Ok(Err(PatchRefusal::NotFound));
    };
    if was_cancelled {
        return Ok(Err(PatchRefusal::Cancelled));
    }
    // A job already moving this slot's bookings: the new target is its.
    let running: Option<JobRow> = run!(conn, c => rebooking_jobs::table
        .filter(rebooking_jobs::slot_id.eq(slot_id))
        .filter(rebooking_jobs::state.eq(JOB_RUNNING))
        .select(JobRow::as_select())
        .first(c)
        .optional())?;
    let current = running
        .as_ref()
        .and_then(|j| j.target_capacity)
        .unwrap_or(slot.capacity);
    let target = if cancel {
        0
    } else {
        capacity.unwrap_or(current)
    };
    let excess = i64::from(slot.booked - target).max(0);
    // No booking may take a place beyond the target while the job empties the slot: the row's
    // capacity comes down to the places booked at once, and to the target with every move.
    let row_capacity = target.max(slot.booked);
    run!(conn, c => diesel::update(slots::table.find(slot_id))
        .set((slots::capacity.eq(row_capacity), slots::cancelled.eq(cancel)))
        .execute(c))?;
    let job = match (running, excess > 0) {
        (Some(j), _) => {
            let total = j.moved + j.unmovable + excess;
            run!(conn, c => diesel::update(rebooking_jobs::table.find(j.id))
                .set((
                    rebooking_jobs::target_capacity.eq(target),
                    rebooking_jobs::total.eq(total),
                ))
                .execute(c))?;
            Some(j.id)
        }
        (None, true) => Some(
            insert_job(
                conn,
                NewJob {
                    kind: KIND_SLOT.into(),
                    vaccine: slot.vaccine.clone(),
                    shift_days: 0,
                    slot_id: Some(slot_id),
                    target_capacity: Some(target),
                    last_booking_id: 0,
                    today: today.into(),
                    state: JOB_RUNNING.into(),
                    total: excess,
                    created_at: now,
                },
            )?
            .id,
        ),
        (None, false) => None,
    };
    Ok(Ok(PatchedSlot {
        slot: SlotRow {
            capacity: row_capacity,
            ..slot
        },
        capacity: target,
        cancelled: cancel,
        job,
    }))
}

/// A live booking as a move needs it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = bookings)]
struct LiveBooking {
    id: i32,
    cohort_id: i32,
    center_id: i32,
    second_center_id: Option<i32>,
    first_slot_id: i32,
    first_date: String,
    first_start: String,
    second_slot_id: i32,
    second_date: String,
    second_start: String,
    code: String,
    citizen_key: String,
}

/// The next bookings a job has to deal with.
fn next_chunk(conn: &mut Conn, job: &JobRow, n: usize) -> Result<Vec<LiveBooking>, Error> {
    let n = n as i64;
    if job.kind == KIND_SHIFT {
        let after = i32::try_from(job.done_upto).unwrap_or(i32::MAX);
        return run!(conn, c => bookings::table
            .filter(bookings::vaccine.eq(&job.vaccine))
            .filter(bookings::state.eq(STATE_CONFIRMED))
            .filter(bookings::id.gt(after))
            .filter(bookings::id.le(job.last_booking_id))
            .filter(bookings::second_date.gt(&job.today))
            .order(bookings::id)
            .limit(n)
            .select(LiveBooking::as_select())
            .load(c));
    }
    let Some(slot_id) = job.slot_id else {
        return Ok(Vec::new());
    };
    let (booked, target) = slot_places(conn, slot_id, job)?;
    let excess = i64::from(booked - target).max(0);
    if excess == 0 {
        return Ok(Vec::new());
    }
    // The latest booked first.
    run!(conn, c => bookings::table
        .filter(bookings::state.eq(STATE_CONFIRMED))
        .filter(
            bookings::first_slot_id
                .eq(slot_id)
                .or(bookings::second_slot_id.eq(slot_id)),
        )
        .order((bookings::created_at.desc(), bookings::id.desc()))
        .limit(n.min(excess))
        .select(LiveBooking::as_select())
        .load(c))
}

fn slot_places(conn: &mut Conn, slot_id: i32, job: &JobRow) -> Result<(i32, i32), Error> {
    let (booked,): (i32,) = run!(conn, c => slots::table
        .find(slot_id)
        .select((slots::booked,))
        .first(c))?;
    Ok((booked, job.target_capacity.unwrap_or(0)))
}

fn parse_day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

fn region_of(conn: &mut Conn, center_id: i32) -> Result<Option<String>, Error> {
    run!(conn, c => centers::table
        .find(center_id)
        .select(centers::region)
        .first(c)
        .optional())
}

/// Candidate places read for a step, kept up to date in memory as its moves take them (on
/// PostgreSQL the writer locked the rows; on SQLite it is the only writer).
struct Places {
    vaccine: String,
    region_of: HashMap<i32, String>,
    /// (region, first day) -> the slots with room from that day to 7 days after.
    cache: HashMap<(String, NaiveDate), Vec<Candidate>>,
    interval: HashMap<i32, u32>,
    exclude: Option<i32>,
    /// The chunk's bookings this job dealt with before (a step redone after a crash).
    done: HashSet<i32>,
    /// The chunk's citizens' sealed phones, for the messages.
    phones: HashMap<String, Option<String>>,
    /// What the step's moves record, written once for the chunk.
    later: Later,
}

/// The rows a step's moves add that decide nothing: each booking's item, its messages, and
/// the reminders it drops. Gathered as the moves are made and written in one statement each
/// (a few for reminders) at the end of the step, in the same transaction: on PostgreSQL a
/// statement is a round trip, and these were three of a move's eight.
#[derive(Default)]
struct Later {
    /// (booking, outcome, moves as JSON).
    items: Vec<(i32, &'static str, String)>,
    messages: Vec<NewMessage>,
    /// Booking codes whose pending reminders go: of every dose, of dose 1, of dose 2.
    reminders: [Vec<String>; 3],
}

impl Later {
    fn write(&self, conn: &mut Conn, job_id: i32, now: i64) -> Result<(), Error> {
        if !self.items.is_empty() {
            let rows: Vec<_> = self
                .items
                .iter()
                .map(|(booking, outcome, moves)| {
                    (
                        rebooking_items::job_id.eq(job_id),
                        rebooking_items::booking_id.eq(*booking),
                        rebooking_items::outcome.eq(*outcome),
                        rebooking_items::moves.eq(moves.as_str()),
                        rebooking_items::moved_at.eq(now),
                    )
                })
                .collect();
            run!(conn, c => diesel::insert_into(rebooking_items::table)
                .values(&rows)
                .execute(c))?;
        }
        for (codes, dose) in self.reminders.iter().zip([None, Some(1), Some(2)]) {
            if !codes.is_empty() {
                super::outbox::drop_pending_reminders_of(conn, codes, dose)?;
            }
        }
        super::outbox::enqueue_many(conn, &self.messages).map(drop)
    }
}

impl Places {
    fn phone(&self, b: &LiveBooking) -> Option<String> {
        self.phones.get(&b.citizen_key).cloned().flatten()
    }

    fn region(&mut self, conn: &mut Conn, center_id: i32) -> Result<String, Error> {
        if let Some(r) = self.region_of.get(&center_id) {
            return Ok(r.clone());
        }
        let r = region_of(conn, center_id)?.unwrap_or_default();
        self.region_of.insert(center_id, r.clone());
        Ok(r)
    }

    fn interval(&mut self, conn: &mut Conn, cohort_id: i32) -> Result<u32, Error> {
        if let Some(i) = self.interval.get(&cohort_id) {
            return Ok(*i);
        }
        let days: Option<i32> = run!(conn, c => cohorts::table
            .find(cohort_id)
            .select(cohorts::dose_interval_days)
            .first(c)
            .optional())?;
        let i = days.unwrap_or(0).max(0) as u32;
        self.interval.insert(cohort_id, i);
        Ok(i)
    }

    /// The place the rule picks for `target` (not taken yet).
    fn pick(&mut self, conn: &mut Conn, target: &Target) -> Result<Option<Candidate>, Error> {
        let region = self.region(conn, target.center_id)?;
        let key = (region.clone(), target.date);
        if !self.cache.contains_key(&key) {
            let last = target.last_day().unwrap_or(target.date).to_string();
            let rows: Vec<(i32, i32, String, String, i32, i32)> = run!(conn, c => slots::table
                .inner_join(centers::table)
                .filter(centers::region.eq(&region))
                .filter(slots::vaccine.eq(&self.vaccine))
                .filter(slots::cancelled.eq(false))
                .filter(slots::leftover_until.is_null())
                .filter(slots::date.ge(target.date.to_string()))
                .filter(slots::date.le(last))
                .select((
                    slots::id,
                    slots::center_id,
                    slots::date,
                    slots::start_time,
                    slots::capacity,
                    slots::booked,
                ))
                .load(c))?;
            let list = rows
                .into_iter()
                .filter_map(|(id, center, date, start, cap, booked)| {
                    Some(Candidate {
                        slot_id: id,
                        center_id: center,
                        date: parse_day(&date)?,
                        start: parse_time("start_time", &start).ok()?,
                        room: i64::from(cap - booked),
                    })
                })
                .collect();
            self.cache.insert(key.clone(), list);
        }
        let list = &self.cache[&key];
        Ok(choose(target, list, self.exclude).cloned())
    }

    /// Counts a place taken (or given back, `delta` 1) in every cached list holding the slot.
    fn adjust(&mut self, slot_id: i32, delta: i64) {
        for list in self.cache.values_mut() {
            for c in list.iter_mut().filter(|c| c.slot_id == slot_id) {
                c.room += delta;
            }
        }
    }
}

/// Takes one place of a slot if it has room (the database decides: another node may have
/// taken it). `UPDATE slots SET booked = booked + 1 WHERE id = ? AND booked < capacity`.
fn take_place(conn: &mut Conn, slot_id: i32) -> Result<bool, Error> {
    let n = run!(conn, c => diesel::update(slots::table.find(slot_id))
        .filter(slots::booked.lt(slots::capacity))
        .filter(slots::cancelled.eq(false))
        .set(slots::booked.eq(slots::booked + 1))
        .execute(c))?;
    Ok(n == 1)
}

/// Gives one place back; `close` also removes it from the slot (a slot being emptied).
fn give_back(conn: &mut Conn, slot_id: i32, close: bool) -> Result<(), Error> {
    run!(conn, c => if close {
        diesel::update(slots::table.find(slot_id))
            .filter(slots::booked.gt(0))
            .set((
                slots::booked.eq(slots::booked - 1),
                slots::capacity.eq(slots::capacity - 1),
            ))
            .execute(c)
    } else {
        diesel::update(slots::table.find(slot_id))
            .filter(slots::booked.gt(0))
            .set(slots::booked.eq(slots::booked - 1))
            .execute(c)
    })
    .map(drop)
}

fn place(center_id: i32, slot_id: i32, date: &str, start: &str) -> Place {
    Place {
        center_id,
        slot_id,
        date: date.to_string(),
        start_time: start.to_string(),
    }
}

fn rfc3339(now: i64) -> String {
    chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .to_rfc3339()
}

/// Where a dose is, as a move target.
fn target_of(center_id: i32, date: &str, start: &str) -> Option<Target> {
    Some(Target {
        center_id,
        date: parse_day(date)?,
        start: parse_time("start_time", start).ok()?,
    })
}

/// Takes the place the rule picks for `t`; a place the cache thought free may be gone
/// (another node took it): then the next.
fn take(
    conn: &mut Conn,
    places: &mut Places,
    t: Target,
    taken: &mut Vec<i32>,
) -> Result<Option<Place>, Error> {
    loop {
        let Some(c) = places.pick(conn, &t)? else {
            return Ok(None);
        };
        if take_place(conn, c.slot_id)? {
            places.adjust(c.slot_id, -1);
            taken.push(c.slot_id);
            let (date, start) = (c.date.to_string(), format_time(c.start));
            return Ok(Some(place(c.center_id, c.slot_id, &date, &start)));
        }
        places.adjust(c.slot_id, -c.room);
    }
}

/// What became of one booking.
enum Fate {
    Moved(Vec<Move>),
    Unmovable,
}

fn step(conn: &mut Conn, job_id: i32, n: usize, now: i64) -> Result<Stepped, Error> {
    let began = std::time::Instant::now();
    // On PostgreSQL two nodes may step one job: they take turns on its row, and the second
    // reads what the first committed.
    let locked: Option<JobRow> = match conn {
        Conn::Postgres(c) => rebooking_jobs::table
            .find(job_id)
            .select(JobRow::as_select())
            .for_update()
            .first(*c)
            .optional()?,
        Conn::Sqlite(_) => load_job(conn, job_id)?,
    };
    let Some(mut job) = locked else {
        return Err(Error::NotFound);
    };
    let mut touched: Vec<i32> = Vec::new();
    if job.state != JOB_RUNNING {
        return Ok(Stepped {
            job,
            slots: touched,
            bookings: 0,
            took: began.elapsed(),
        });
    }
    let emptying = (job.kind == KIND_SLOT).then_some(job.slot_id).flatten();
    if let Some(s) = emptying {
        // Places a cancellation gave back meanwhile are closed too: the row's capacity is
        // never above the target or the places still booked.
        let (booked, target) = slot_places(conn, s, &job)?;
        run!(conn, c => diesel::update(slots::table.find(s))
            .set(slots::capacity.eq(booked.max(target)))
            .execute(c))?;
        touched.push(s);
    }
    let chunk = next_chunk(conn, &job, n)?;
    // Read for the whole chunk in two statements rather than two a booking: on PostgreSQL a
    // statement is a round trip, and round trips are most of a step's time.
    let ids: Vec<i32> = chunk.iter().map(|b| b.id).collect();
    let done: HashSet<i32> = run!(conn, c => rebooking_items::table
        .filter(rebooking_items::job_id.eq(job.id))
        .filter(rebooking_items::booking_id.eq_any(&ids))
        .select(rebooking_items::booking_id)
        .load::<i32>(c))?
    .into_iter()
    .collect();
    let keys: Vec<String> = chunk.iter().map(|b| b.citizen_key.clone()).collect();
    let phones = super::outbox::phones_of(conn, &keys)?;
    let mut places = Places {
        vaccine: job.vaccine.clone(),
        region_of: HashMap::new(),
        cache: HashMap::new(),
        interval: HashMap::new(),
        exclude: emptying,
        done,
        phones,
        later: Later::default(),
    };
    for b in &chunk {
        // One savepoint per booking: its places, its row and its item, all or nothing.
        let fate = match conn.savepoint(|sp| move_one(sp, &job, b, emptying, &mut places, now)) {
            Ok(fate) => fate,
            // No longer confirmed when its row was written: on PostgreSQL another node
            // cancelled it after the chunk was read, and gave back its places itself. What
            // this step did for it is undone; the places counted in memory are read again.
            // (Its rows for `Later` are added only after that check, so none are there.)
            Err(Error::RollbackTransaction) => {
                places.cache.clear();
                None
            }
            Err(e) => return Err(e),
        };
        touched.extend([b.first_slot_id, b.second_slot_id]);
        match fate {
            Some(Fate::Moved(moves)) => {
                touched.extend(moves.iter().map(|m| m.to.slot_id));
                job.moved += 1;
            }
            Some(Fate::Unmovable) => job.unmovable += 1,
            None => {}
        }
        job.done_upto = job.done_upto.max(i64::from(b.id));
    }
    places.later.write(conn, job.id, now)?;
    if chunk.is_empty() {
        job.state = JOB_DONE.into();
        job.finished_at = Some(now);
        // Done: the count is what the job found to move (cancellations meanwhile drop out).
        job.total = job.moved + job.unmovable;
        if let Some(s) = emptying {
            let (booked, target) = slot_places(conn, s, &job)?;
            run!(conn, c => diesel::update(slots::table.find(s))
                .set(slots::capacity.eq(booked.max(target)))
                .execute(c))?;
        }
    } else if job.moved + job.unmovable > job.total {
        job.total = job.moved + job.unmovable;
    }
    run!(conn, c => diesel::update(rebooking_jobs::table.find(job.id))
        .set((
            rebooking_jobs::state.eq(&job.state),
            rebooking_jobs::moved.eq(job.moved),
            rebooking_jobs::unmovable.eq(job.unmovable),
            rebooking_jobs::done_upto.eq(job.done_upto),
            rebooking_jobs::total.eq(job.total),
            rebooking_jobs::finished_at.eq(job.finished_at),
        ))
        .execute(c))?;
    touched.sort_unstable();
    touched.dedup();
    Ok(Stepped {
        job,
        slots: touched,
        bookings: chunk.len(),
        took: began.elapsed(),
    })
}

/// Moves one booking (or marks it for rebooking); `None` if this job dealt with it before.
fn move_one(
    conn: &mut Conn,
    job: &JobRow,
    b: &LiveBooking,
    emptying: Option<i32>,
    places: &mut Places,
    now: i64,
) -> Result<Option<Fate>, Error> {
    if places.done.contains(&b.id) {
        return Ok(None);
    }
    let second_center = b.second_center_id.unwrap_or(b.center_id);
    let first = place(b.center_id, b.first_slot_id, &b.first_date, &b.first_start);
    let second = place(
        second_center,
        b.second_slot_id,
        &b.second_date,
        &b.second_start,
    );
    let at = rfc3339(now);
    // The new places, decided before any is taken.
    let mut new_first = first.clone();
    let mut new_second = second.clone();
    let mut ok = true;
    let shift = job.kind == KIND_SHIFT;
    let first_moves = !shift && emptying == Some(b.first_slot_id);
    let second_moves = shift || emptying == Some(b.second_slot_id);
    let mut taken: Vec<i32> = Vec::new();
    if first_moves {
        match target_of(first.center_id, &first.date, &first.start_time) {
            Some(t) => match take(conn, places, t, &mut taken)? {
                Some(p) => new_first = p,
                None => ok = false,
            },
            None => ok = false,
        }
        if ok {
            let interval = places.interval(conn, b.cohort_id)?;
            let (f, s) = (parse_day(&new_first.date), parse_day(&second.date));
            let fits = matches!((f, s), (Some(f), Some(s)) if second_dose_fits(f, interval, s));
            if !fits || emptying == Some(second.slot_id) {
                let t = f
                    .and_then(|f| f.checked_add_days(Days::new(interval.into())))
                    .and_then(|d| {
                        Some(Target {
                            center_id: second.center_id,
                            date: d,
                            start: parse_time("start_time", &second.start_time).ok()?,
                        })
                    });
                match t {
                    Some(t) => match take(conn, places, t, &mut taken)? {
                        Some(p) => new_second = p,
                        None => ok = false,
                    },
                    None => ok = false,
                }
            }
        }
    } else if second_moves {
        let t = target_of(second.center_id, &second.date, &second.start_time).and_then(|t| {
            let shift_days = u64::try_from(job.shift_days.max(0)).ok()?;
            Some(Target {
                date: t.date.checked_add_days(Days::new(shift_days))?,
                ..t
            })
        });
        match t {
            Some(t) => match take(conn, places, t, &mut taken)? {
                Some(p) => new_second = p,
                None => ok = false,
            },
            None => ok = false,
        }
    }
    if !ok {
        // No place for one of its doses: whatever this booking took goes back, and it needs
        // rebooking (a dose is never kept alone).
        unmovable(conn, b, emptying, places, &taken)?;
        return Ok(Some(Fate::Unmovable));
    }
    let mut moves = Vec::new();
    if new_first != first {
        give_back(conn, first.slot_id, emptying == Some(first.slot_id))?;
        places.adjust(first.slot_id, 1);
        moves.push(Move {
            dose: 1,
            from: first.clone(),
            to: new_first.clone(),
            at: at.clone(),
        });
    }
    if new_second != second {
        give_back(conn, second.slot_id, emptying == Some(second.slot_id))?;
        places.adjust(second.slot_id, 1);
        moves.push(Move {
            dose: 2,
            from: second.clone(),
            to: new_second.clone(),
            at: at.clone(),
        });
    }
    let second_center_id =
        (new_second.center_id != new_first.center_id).then_some(new_second.center_id);
    let written = run!(conn, c => diesel::update(bookings::table.find(b.id))
        .filter(bookings::state.eq(STATE_CONFIRMED))
        .set((
            bookings::center_id.eq(new_first.center_id),
            bookings::first_slot_id.eq(new_first.slot_id),
            bookings::first_date.eq(&new_first.date),
            bookings::first_start.eq(&new_first.start_time),
            bookings::second_slot_id.eq(new_second.slot_id),
            bookings::second_date.eq(&new_second.date),
            bookings::second_start.eq(&new_second.start_time),
            bookings::second_center_id.eq(second_center_id),
        ))
        .execute(c))?;
    still_confirmed(written)?;
    let phone = places.phone(b);
    on_moved(&mut places.later, b, phone, &moves);
    Ok(Some(Fate::Moved(moves)))
}

/// The booking keeps its code, needs rebooking, and gives both places back.
fn unmovable(
    conn: &mut Conn,
    b: &LiveBooking,
    emptying: Option<i32>,
    places: &mut Places,
    taken: &[i32],
) -> Result<(), Error> {
    // Places taken for this booking before it proved unmovable go back first.
    for id in taken {
        give_back(conn, *id, false)?;
        places.adjust(*id, 1);
    }
    for id in [b.first_slot_id, b.second_slot_id] {
        give_back(conn, id, emptying == Some(id))?;
        places.adjust(id, 1);
    }
    let written = run!(conn, c => diesel::update(bookings::table.find(b.id))
        .filter(bookings::state.eq(STATE_CONFIRMED))
        .set(bookings::state.eq(STATE_NEEDS_REBOOKING))
        .execute(c))?;
    still_confirmed(written)?;
    let phone = places.phone(b);
    on_needs_rebooking(&mut places.later, b, phone);
    Ok(())
}

/// A booking's row written (1) or not (0: no longer confirmed, cancelled by another node
/// since the chunk was read); not written rolls the booking's savepoint back, so the places
/// this step gave back for it are not given back twice. The writer's locking the chunk's
/// slots before the step reads it already keeps a cancellation out of a step (it holds one
/// of those slots); this is the second line, should a write ever reach a booking another way.
fn still_confirmed(rows: usize) -> Result<(), Error> {
    if rows == 1 {
        Ok(())
    } else {
        Err(Error::RollbackTransaction)
    }
}

/// A booking was moved, in the move's transaction.
fn on_moved(later: &mut Later, b: &LiveBooking, to: Option<String>, moves: &[Move]) {
    use crate::domain::notification::{moved_text, Kind};
    let code = &b.code;
    let now = crate::now_s();
    let json = serde_json::to_string(moves).unwrap_or_else(|_| "[]".into());
    later.items.push((b.id, OUTCOME_MOVED, json));
    for m in moves {
        let t = &m.to;
        let text = moved_text(code, m.dose, &t.date, &t.start_time, t.center_id);
        later.messages.push(NewMessage::new(
            Kind::Moved,
            Some(code),
            to.clone(),
            text,
            now,
        ));
        later.reminders[usize::from(m.dose.clamp(1, 2))].push(code.clone());
    }
}

/// A booking could not be moved and needs rebooking, in the same transaction.
fn on_needs_rebooking(later: &mut Later, b: &LiveBooking, to: Option<String>) {
    use crate::domain::notification::{needs_rebooking_text, Kind};
    let code = &b.code;
    let text = needs_rebooking_text(code);
    later.items.push((b.id, STATE_NEEDS_REBOOKING, "[]".into()));
    later.messages.push(NewMessage::new(
        Kind::NeedsRebooking,
        Some(code),
        to,
        text,
        crate::now_s(),
    ));
    later.reminders[0].push(code.clone());
}

/// Slots (cancelled ones too) whose row is over capacity or differs from the places their
/// live bookings hold: must always be none (tests and operators' checks).
pub fn slots_out_of_step(conn: &mut Conn) -> Result<Vec<i32>, Error> {
    let taken = super::queries::live_places(conn)?;
    let rows: Vec<(i32, i32, i32)> = run!(conn, c => slots::table
        .filter(slots::leftover_until.is_null())
        .select((slots::id, slots::capacity, slots::booked))
        .load(c))?;
    Ok(rows
        .into_iter()
        .filter(|(id, cap, booked)| {
            let n = taken.get(id).copied().unwrap_or(0);
            n != i64::from(*booked) || booked > cap
        })
        .map(|(id, ..)| id)
        .collect())
}

/// How many times each booking was dealt with by each job: (job, booking, count) where the
/// count is above one (must always be none; the primary key forbids it).
pub fn items_per_booking(conn: &mut Conn, job_id: i32) -> Result<Vec<(i32, String)>, Error> {
    run!(conn, c => rebooking_items::table
        .filter(rebooking_items::job_id.eq(job_id))
        .select((rebooking_items::booking_id, rebooking_items::outcome))
        .load(c))
}
