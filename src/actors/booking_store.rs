//! `BookingStore`: the only writer to the database. Every change that must survive a crash
//! (a booking, a cancellation, reserved ticket numbers, an admission step, a claimed pass, what
//! the operators create) arrives here as a `Persist` message and is answered only after the
//! transaction holding it has committed durably (SQLite `synchronous=FULL`, PostgreSQL
//! `synchronous_commit=on`).
//!
//! Group commit: while one transaction is on disk, new writes wait in `pending`; when it
//! returns, all of them go into the next transaction together. Under load one commit carries
//! hundreds of writes; when idle a write commits at once. Bookings and pass claims, the bulk of
//! a rush, are written a handful of statements for the whole batch (`queries::insert_bookings`,
//! `queries::claim_passes`); a rule refusal among them (a citizen who already booked, a slot
//! the database finds full) answers that write alone. Every other write runs alone in its own
//! savepoint, so one the database refuses is answered alone too. A failed commit fails the
//! whole batch: every write of it is answered `Commit`, and nothing of it is on disk.

use crate::db::models::{
    BookingRow, NewBookingRow, NewCenterRow, NewCitizenRow, NewCohortRow, NewPassClaim, NewSlotRow,
};
use crate::db::queries::{self, AdmissionState, BookOutcome, TakenTickets};
use crate::db::{Conn, DbPool};
use crate::domain::cohort::CohortPatch;
use actix::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Writes in one transaction at most; more wait for the next.
const MAX_BATCH: usize = 4096;
/// Writes waiting at most; beyond this the store answers `Busy` at once.
const MAX_PENDING: usize = 50_000;

/// One change to make durable.
#[derive(Debug, Clone)]
pub enum Write {
    CreateCohort(NewCohortRow),
    UpdateCohort(i32, CohortPatch),
    CreateCenter(NewCenterRow),
    CreateSlots(Vec<NewSlotRow>),
    /// The next `count` ticket numbers for a batch of joins; `gaps`: numbers whose joins gave
    /// up waiting (nobody holds them).
    TakeTickets {
        cohort_id: i32,
        count: u64,
        gaps: Vec<(u64, u64)>,
        /// The batch's solved challenges, recorded as used in the same write.
        challenges: Vec<queries::ChallengeUse>,
    },
    /// The pre-queue is frozen at the numbers taken so far, once (by whichever node).
    RecordOpening {
        cohort_id: i32,
    },
    /// Queue indices `from..upto` are admitted (`people` of them), if `from` is still the
    /// front on disk; the admission clock moves to `clock_ms`.
    RecordAdmission {
        cohort_id: i32,
        from: u64,
        upto: u64,
        people: u64,
        at_ms: i64,
        clock_ms: i64,
        /// The ranges of queue indices the step passed over (nobody held them), JSON.
        passed: String,
    },
    /// Passed-over tickets that came back are admitted beside the line, if the returns'
    /// clock on disk is still `known_clock` (else nobody is, and the clock is answered);
    /// the clock moves to `clock_ms`.
    RecordReturns {
        cohort_id: i32,
        indices: Vec<u64>,
        at_ms: i64,
        known_clock: i64,
        clock_ms: i64,
    },
    ClaimPass(NewPassClaim),
    Book {
        citizen: Box<NewCitizenRow>,
        booking: Box<NewBookingRow>,
        /// The ticket's place in the line: the booking counts toward the admission step that
        /// admitted it, in the same transaction.
        queue_index: Option<u64>,
    },
    Cancel {
        code: String,
        now: i64,
    },
    /// Leftover doses: posting, sign-ups, the offer line (`db::leftovers`).
    Leftover(crate::db::leftovers::LeftoverWrite),
    /// Supply changes and rebooking jobs' steps (`db::rebooking`).
    Rebook(crate::db::rebooking::RebookWrite),
}

/// What a committed write produced.
#[derive(Debug, Clone)]
pub enum Written {
    Id(i32),
    Ids(Vec<i32>),
    Done,
    Book(BookOutcome),
    Cancelled(Option<BookingRow>),
    /// The citizen key a pass is bound to (the claimant's, or an earlier claimant's).
    Claimed(String),
    Tickets(TakenTickets),
    /// The pre-queue's count and the ranges its shuffle takes as one place each (JSON).
    Opened(u64, String),
    /// `None`: admitted; else the front had moved (another node), and this is how it stands.
    Admission(Option<AdmissionState>),
    /// The returns' clock on disk, and which of the tickets asked for are admitted (at when).
    Returns(i64, Vec<(u64, i64)>),
    Leftover(crate::db::leftovers::LeftoverWritten),
    Rebook(crate::db::rebooking::RebookWritten),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("too many writes waiting")]
    Busy,
    #[error("the commit failed: {0}")]
    Commit(String),
}

/// Make one write durable; answered after its transaction commits.
#[derive(Message)]
#[rtype(result = "Result<Written, StoreError>")]
pub struct Persist(pub Write);

/// Fault injection for tests: the next `n` transactions roll back instead of committing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FailNextCommits(pub u32);

/// Counters the store publishes for `/metrics` and for tests.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    pub commits: AtomicU64,
    pub failed_commits: AtomicU64,
    pub writes: AtomicU64,
    pub largest_batch: AtomicU64,
    pub pending: AtomicU64,
    /// How long a transaction took, from the start to the commit on disk.
    pub commit_latency: crate::telemetry::Histogram,
}

type Reply = oneshot::Sender<Result<Written, StoreError>>;

/// A batch for the writer thread, and where to answer how it went.
type Job = (
    Vec<Write>,
    bool,
    oneshot::Sender<Result<Vec<Result<Written, String>>, String>>,
);

pub struct BookingStore {
    /// The writer thread's inbox: it runs one transaction at a time, on a thread of its own
    /// (on the last core, alone, when the machine has more than two: `crate::cores`). It
    /// stops when the store is dropped.
    writer: std::sync::mpsc::Sender<Job>,
    pending: Vec<(Write, Reply)>,
    flushing: bool,
    fail_next: u32,
    metrics: Arc<StoreMetrics>,
}

impl BookingStore {
    pub fn new(pool: DbPool) -> Self {
        let (writer, jobs) = std::sync::mpsc::channel::<Job>();
        let metrics: Arc<StoreMetrics> = Arc::default();
        let m = metrics.clone();
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                if let Some(core) = crate::cores::writer_core() {
                    if !crate::cores::pin_current_thread(core..core + 1) {
                        log::warn!("the writer could not be kept on core {core}");
                    }
                }
                for (writes, fail, answer) in jobs {
                    let started = std::time::Instant::now();
                    // A panic fails its batch only, as it did on tokio's blocking pool: the
                    // thread goes on with the next one.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        commit(&pool, &writes, fail)
                    }))
                    .unwrap_or_else(|_| Err("the writer panicked".into()));
                    m.commit_latency.observe(started.elapsed());
                    let _ = answer.send(outcome);
                }
            })
            .expect("the writer thread starts");
        Self {
            writer,
            pending: Vec::new(),
            flushing: false,
            fail_next: 0,
            metrics,
        }
    }

    pub fn metrics(&self) -> Arc<StoreMetrics> {
        self.metrics.clone()
    }

    /// Starts the next transaction with what is waiting, unless one is on its way already.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.pending.is_empty() {
            self.flushing = false;
            return;
        }
        self.flushing = true;
        let take = self.pending.len().min(MAX_BATCH);
        let batch: Vec<(Write, Reply)> = self.pending.drain(..take).collect();
        self.metrics
            .pending
            .store(self.pending.len() as u64, Ordering::Relaxed);
        let (writes, replies): (Vec<Write>, Vec<Reply>) = batch.into_iter().unzip();
        let fail = self.fail_next > 0;
        self.fail_next = self.fail_next.saturating_sub(1);
        let (tx, rx) = oneshot::channel();
        // If the writer thread is gone, `tx` is dropped with the job and the batch fails.
        let _ = self.writer.send((writes, fail, tx));
        ctx.spawn(rx.into_actor(self).map(move |joined, act, ctx| {
            let outcome = joined.unwrap_or_else(|_| Err("the writer thread stopped".into()));
            let m = &act.metrics;
            match outcome {
                Ok(results) => {
                    m.commits.fetch_add(1, Ordering::Relaxed);
                    m.writes.fetch_add(results.len() as u64, Ordering::Relaxed);
                    m.largest_batch
                        .fetch_max(results.len() as u64, Ordering::Relaxed);
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result.map_err(|e| {
                            log::error!("a write was refused by the database: {e}");
                            StoreError::Commit(e)
                        }));
                    }
                }
                Err(e) => {
                    m.failed_commits.fetch_add(1, Ordering::Relaxed);
                    log::error!("commit of {} writes failed: {e}", replies.len());
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Commit(e.clone())));
                    }
                }
            }
            act.flush(ctx);
        }));
    }
}

impl Actor for BookingStore {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Persist> for BookingStore {
    type Result = ResponseFuture<Result<Written, StoreError>>;

    fn handle(&mut self, msg: Persist, ctx: &mut Context<Self>) -> Self::Result {
        if self.pending.len() >= MAX_PENDING {
            return Box::pin(async { Err(StoreError::Busy) });
        }
        let (tx, rx) = oneshot::channel();
        self.pending.push((msg.0, tx));
        self.metrics
            .pending
            .store(self.pending.len() as u64, Ordering::Relaxed);
        if !self.flushing {
            self.flush(ctx);
        }
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Commit("the writer stopped".into())))
        })
    }
}

impl Handler<FailNextCommits> for BookingStore {
    type Result = ();

    fn handle(&mut self, msg: FailNextCommits, _: &mut Context<Self>) {
        self.fail_next = msg.0;
    }
}

/// One transaction for the whole batch: all of it is on disk, or none of it.
/// Each write but a booking runs in its own savepoint, so one that breaks a constraint is
/// answered alone and rolled back alone; the others still commit. On PostgreSQL the slot rows
/// the batch touches are locked first, in ascending id order (`queries::lock_slots`).
fn commit(
    pool: &DbPool,
    writes: &[Write],
    fail: bool,
) -> Result<Vec<Result<Written, String>>, String> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    conn.write_transaction(|conn| {
        if conn.is_postgres() {
            let mut ids = Vec::new();
            for w in writes {
                match w {
                    Write::Book { booking, .. } => {
                        ids.extend([booking.first_slot_id, booking.second_slot_id])
                    }
                    Write::Cancel { code, .. } => {
                        if let Some((a, b)) = queries::slots_of_booking(conn, code)? {
                            ids.extend([a, b]);
                        }
                    }
                    Write::Leftover(l) => ids.extend(crate::db::leftovers::slots_to_lock(conn, l)?),
                    Write::Rebook(r) => ids.extend(crate::db::rebooking::slots_to_lock(conn, r)?),
                    _ => {}
                }
            }
            ids.sort_unstable();
            ids.dedup();
            if !ids.is_empty() {
                queries::lock_slots(conn, &ids)?;
            }
        }
        // Bookings and pass claims go in many at a statement (`queries::insert_bookings`,
        // `claim_passes`): a run of bookings is written at once, ended only by a cancellation
        // (which may free a place, or the citizen, for a booking after it); pass claims touch
        // nothing else and are written together at the end. Every other write runs alone, in
        // order, in its own savepoint, so one that breaks a constraint is answered alone.
        let mut results: Vec<Option<Result<Written, String>>> = vec![None; writes.len()];
        // Rows are locked in one order by every node's writer, so that two transactions never
        // wait for each other: slots (above), then cohorts by id, then admission steps; the
        // writes on a cohort's row (and its steps) do not depend on the others in the batch.
        let mut on_cohorts: Vec<(u8, i32, usize)> = writes
            .iter()
            .enumerate()
            .filter_map(|(i, w)| cohort_lock(w).map(|(rank, id)| (rank, id, i)))
            .collect();
        on_cohorts.sort_unstable();
        for (_, _, i) in &on_cohorts {
            results[*i] = Some(
                conn.savepoint(|sp| apply(sp, &writes[*i]))
                    .map_err(|e: diesel::result::Error| e.to_string()),
            );
        }
        let mut run: Vec<usize> = Vec::new();
        let mut claims: Vec<usize> = Vec::new();
        // The places in line of the tickets that booked, over every run of the batch; counted
        // per admission step once at the end, in (cohort, step) order, so two nodes' batches
        // lock the same steps in the same order.
        let mut places: Vec<(i32, u64)> = Vec::new();
        for (i, w) in writes.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            match w {
                Write::Book { .. } => run.push(i),
                Write::ClaimPass(_) => claims.push(i),
                _ => {
                    if matches!(
                        w,
                        Write::Cancel { .. } | Write::Leftover(_) | Write::Rebook(_)
                    ) {
                        book_run(conn, writes, &mut run, &mut results, &mut places)?;
                    }
                    results[i] = Some(
                        conn.savepoint(|sp| apply(sp, w))
                            .map_err(|e: diesel::result::Error| e.to_string()),
                    );
                }
            }
        }
        book_run(conn, writes, &mut run, &mut results, &mut places)?;
        if !places.is_empty() {
            queries::count_booked(conn, &places)?;
        }
        if !claims.is_empty() {
            let rows: Vec<&NewPassClaim> = claims
                .iter()
                .filter_map(|i| match &writes[*i] {
                    Write::ClaimPass(c) => Some(c),
                    _ => None,
                })
                .collect();
            for (i, key) in claims.iter().zip(queries::claim_passes(conn, &rows)?) {
                results[*i] = Some(Ok(Written::Claimed(key)));
            }
        }
        let results: Vec<Result<Written, String>> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("the write was not applied".into())))
            .collect();
        if fail {
            return Err(diesel::result::Error::RollbackTransaction);
        }
        Ok(results)
    })
    .map_err(|e: diesel::result::Error| e.to_string())
}

/// Where a write takes its row locks among the cohorts' rows (the rank leaves room for more
/// kinds of rows); `None` for the writes that lock no cohort row.
fn cohort_lock(w: &Write) -> Option<(u8, i32)> {
    match w {
        Write::UpdateCohort(id, _)
        | Write::TakeTickets { cohort_id: id, .. }
        | Write::RecordOpening { cohort_id: id }
        | Write::RecordAdmission { cohort_id: id, .. }
        | Write::RecordReturns { cohort_id: id, .. } => Some((0, *id)),
        _ => None,
    }
}

/// Writes the bookings at `run` (indices into `writes`) in one go and empties it.
fn book_run(
    conn: &mut Conn,
    writes: &[Write],
    run: &mut Vec<usize>,
    results: &mut [Option<Result<Written, String>>],
    places: &mut Vec<(i32, u64)>,
) -> Result<(), diesel::result::Error> {
    if run.is_empty() {
        return Ok(());
    }
    let items: Vec<(&NewCitizenRow, &NewBookingRow)> = run
        .iter()
        .filter_map(|i| match &writes[*i] {
            Write::Book {
                citizen, booking, ..
            } => Some((&**citizen, &**booking)),
            _ => None,
        })
        .collect();
    let outcomes = queries::insert_bookings(conn, &items)?;
    // Bookings per admission step, counted in the same transaction as the bookings (by the
    // caller, after every run): what a step's tickets hold in reserve is right on disk
    // whichever node dies.
    for (i, outcome) in run.iter().zip(&outcomes) {
        if let (
            Write::Book {
                booking,
                queue_index: Some(qidx),
                ..
            },
            BookOutcome::Booked(_),
        ) = (&writes[*i], outcome)
        {
            places.push((booking.cohort_id, *qidx));
        }
    }
    for (i, outcome) in run.drain(..).zip(outcomes) {
        results[i] = Some(Ok(Written::Book(outcome)));
    }
    Ok(())
}

fn apply(conn: &mut Conn, w: &Write) -> Result<Written, diesel::result::Error> {
    Ok(match w {
        Write::CreateCohort(row) => Written::Id(queries::insert_cohort(conn, row)?),
        Write::UpdateCohort(id, patch) => {
            queries::update_cohort(conn, *id, patch)?;
            Written::Done
        }
        Write::CreateCenter(row) => Written::Id(queries::insert_center(conn, row)?),
        Write::CreateSlots(rows) => Written::Ids(queries::insert_slots(conn, rows)?),
        Write::TakeTickets {
            cohort_id,
            count,
            gaps,
            challenges,
        } => Written::Tickets(queries::take_tickets(
            conn, *cohort_id, *count, gaps, challenges,
        )?),
        Write::RecordOpening { cohort_id } => {
            let (count, gaps) = queries::record_opening(conn, *cohort_id)?;
            Written::Opened(count, gaps)
        }
        Write::RecordAdmission {
            cohort_id,
            from,
            upto,
            people,
            at_ms,
            clock_ms,
            passed,
        } => Written::Admission(queries::record_admission(
            conn,
            *cohort_id,
            (*from as i64, *upto as i64),
            *people as i64,
            (*at_ms, *clock_ms),
            passed,
        )?),
        Write::RecordReturns {
            cohort_id,
            indices,
            at_ms,
            known_clock,
            clock_ms,
        } => {
            let (clock, admitted) = queries::record_returns(
                conn,
                *cohort_id,
                indices,
                *at_ms,
                (*known_clock, *clock_ms),
            )?;
            Written::Returns(clock, admitted)
        }
        // Written in runs by `commit`; alone here for completeness.
        Write::ClaimPass(claim) => Written::Claimed(
            queries::claim_passes(conn, &[claim])?
                .pop()
                .unwrap_or_default(),
        ),
        Write::Book {
            citizen, booking, ..
        } => Written::Book(
            queries::insert_bookings(conn, &[(&**citizen, &**booking)])?
                .pop()
                .unwrap_or(BookOutcome::AlreadyBooked),
        ),

        Write::Cancel { code, now } => {
            Written::Cancelled(queries::cancel_booking(conn, code, *now)?)
        }
        Write::Leftover(l) => Written::Leftover(crate::db::leftovers::apply(conn, l)?),
        Write::Rebook(r) => Written::Rebook(crate::db::rebooking::apply(conn, r)?),
    })
}
