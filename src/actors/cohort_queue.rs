//! `CohortQueue`: one actor per cohort, the owner of its waiting room. It keeps counters, not
//! lists: ticket numbers handed out, the admission front, the admission steps whose passes may
//! still be valid. A ticket carries its own number, so a million waiting citizens cost the
//! server a few bytes each (four, for the pre-queue shuffle) and nothing for those who join
//! after opening.
//!
//! Polls never wait in this mailbox: a poll computes its answer from what the actor publishes
//! in `CohortShared`. A join takes a number from an atomic counter and is answered once that
//! number is on disk: the actor group-commits the counter (one write for every join that
//! arrived while the last one was on its way), so no ticket is ever handed out twice or counted
//! as a person it is not, after any crash. The actor itself runs the admission clock: at
//! each tick it opens the cohort (shuffling the pre-queue once), checks the supply left, and
//! admits the next tickets in queue order at the measured, backpressure-adjusted rate, each
//! step made durable before anyone is told of it.

use super::booking_store::{BookingStore, Persist, StoreError, Write, Written};
use super::identity_pool::PoolLoad;
use super::Registry;
use crate::db::models::{CohortRow, NewPassClaim};
use crate::db::queries::{self, AdmissionState, ChallengeUse};
use crate::db::DbPool;
use crate::domain::cohort::{Cohort, CohortPatch, CohortState};
use crate::domain::queue::{
    gap_overlap, in_ranges, merge_gaps, Batch, PreQueue, QueueSnapshot, TicketStatus,
};
use crate::domain::slot::bookable_pairs;
use actix::prelude::*;
use chrono::{DateTime, FixedOffset, NaiveDate};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

/// How often the admission clock ticks.
pub const TICK: Duration = Duration::from_millis(100);
/// The past over which the admission rate is measured for ETAs.
const RATE_WINDOW_MS: i64 = 30_000;
/// A join whose number is not on disk by then is answered 503 (the database is gone).
const JOIN_DEADLINE: Duration = Duration::from_secs(9);
/// Batches of joins whose numbers are kept for the joins to read theirs (far more than can be
/// settled and not yet read).
const TAKEN_KEPT: usize = 4096;
/// Absent tickets one admission step passes over at most (a flood of a million is passed in
/// a couple of seconds of ticks).
const MAX_PASSED_PER_STEP: u64 = 65_536;
/// With several nodes, each shares who polled it among this many places from the front (a
/// bit each), and admission looks no further in one step.
pub const PRESENCE_SPAN: u64 = 65_536;
/// Another node's view of presence older than this is not trusted (it may have died).
const PRESENCE_FRESH_MS: i64 = 2_000;
/// Returning tickets are admitted beside the line at this share of the cohort's admission
/// rate on top of it (at least one a second): a flood of returns cannot burst the identity
/// pool.
pub const RETURN_SHARE: f64 = 0.25;
/// Challenges remembered as used at this node, at most (the database holds them all).
const CHALLENGES_SEEN_KEPT: usize = 200_000;

/// What a cohort's queue publishes for handlers to read without the mailbox.
#[derive(Debug)]
pub struct CohortShared {
    pub id: i32,
    info: RwLock<Cohort>,
    /// Joins that arrived at this node, counted: a join's place in this count says which
    /// batch of joins takes its number.
    arrived: AtomicU64,
    /// Joins below this count are settled: their batch took its numbers, or failed.
    settled_upto: AtomicU64,
    /// Woken each time `settled_upto` moves.
    settled: tokio::sync::Notify,
    /// The numbers each recent batch of joins took: (arrivals from, to, first number), `None`
    /// for a batch whose write failed (its joins were refused; it took no number).
    taken: RwLock<VecDeque<(u64, u64, Option<u64>)>>,
    /// Ticket numbers taken so far, by every node, as far as this node knows.
    issued: AtomicU64,
    /// A join asked the actor to record the joins waiting, and it has not started yet.
    record_asked: AtomicBool,
    /// Joins (their arrival count) that stopped waiting for their number (answered 503).
    abandoned: std::sync::Mutex<Vec<u64>>,
    /// The solved challenges of joins not yet in a batch: (arrival, challenge id, expiry).
    /// A join with one takes its arrival under this lock, so a batch takes exactly its own.
    challenges: std::sync::Mutex<Vec<(u64, String, i64)>>,
    /// Joins (arrival) whose challenge the database found used before: refused.
    challenge_refused: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// Challenges used at this node lately (id, expiry): a replay here is refused before the
    /// write (the write is the guard across nodes).
    challenges_seen: std::sync::Mutex<HashMap<String, i64>>,
    admitted_upto: AtomicU64,
    /// People admitted since the cohort began (queue places passed less the gaps).
    admitted_people: AtomicU64,
    pre_queue: OnceLock<PreQueue>,
    sold_out: AtomicBool,
    /// Until when (unix ms) the admission clock waits: a sync is being applied, its places
    /// at the centers and its counts of bookings not yet here (`hold_for_sync`).
    sync_hold_until_ms: AtomicI64,
    rate_milli: AtomicU64,
    batches: RwLock<Vec<Batch>>,
    verified: AtomicU64,
    pass_ttl_s: i64,
    /// Queue-index ranges that are nobody (see `QueueSnapshot::gaps`), once open: the blocks
    /// of the pre-queue shuffle and the restarts' ranges after opening; emptied as the front
    /// passes them.
    gaps: RwLock<Vec<(u64, u64)>>,
    /// Before opening, the ticket-number ranges the shuffle will take as one place each.
    pending_gaps: RwLock<Vec<(u64, u64)>>,
    /// When each ticket (by number) last joined or polled at this node, unix seconds; 0 for
    /// never. Four bytes a ticket.
    seen: std::sync::Mutex<Vec<u32>>,
    /// Queue-index ranges passed over as absent (sorted, disjoint), every node's.
    passed: RwLock<Vec<(u64, u64)>>,
    /// Passed-over tickets admitted beside the line once back: queue index, at (ms).
    returns: RwLock<HashMap<u64, i64>>,
    /// Passed-over tickets that polled again here, for the actor to admit beside the line.
    returning: std::sync::Mutex<Vec<u64>>,
    /// `ABSENT_AFTER_SECONDS`; 0: nobody is passed over.
    absent_after_s: u64,
}

/// How a queue starts: fresh from the admin API, or rebuilt from the database.
#[derive(Debug, Clone, Default)]
pub struct QueueState {
    pub tickets_reserved: u64,
    pub pre_queue_count: Option<u64>,
    pub admitted_upto: u64,
    /// People admitted so far.
    pub admitted_count: u64,
    pub batches: Vec<Batch>,
    pub claims: HashMap<u64, (String, i64)>,
    pub verified: u64,
    /// Ranges of ticket numbers reserved before a restart but not recorded as handed out, the
    /// front has not passed (or that admission steps still on record passed). Before opening,
    /// the shuffle takes each as one place; after, a number is its queue index.
    pub gaps: Vec<(u64, u64)>,
    /// The ranges the opening's shuffle took as one place each (frozen at opening).
    pub pre_queue_gaps: Vec<(u64, u64)>,
    /// Tickets that booked since the oldest of `batches` (their places are no longer held).
    pub booked_tickets: Vec<u64>,
    /// `cohorts.admission_clock_ms`.
    pub clock_ms: i64,
    /// Queue-index ranges passed over as absent, and those of them admitted since.
    pub passed: Vec<(u64, u64)>,
    pub returns: Vec<(u64, i64)>,
    /// `cohorts.return_clock_ms`.
    pub return_clock_ms: i64,
}

impl QueueState {
    /// Rebuilds a queue's counters from the database.
    pub fn load(pool: &DbPool, row: &CohortRow, pass_ttl_s: i64) -> Result<Self, String> {
        let mut pooled = pool.get().map_err(|e| e.to_string())?;
        let conn = &mut pooled.conn();
        let now = crate::now_s();
        let since_ms = (now - pass_ttl_s) * 1000;
        let (mut from, rows) =
            queries::load_admissions(conn, row.id, since_ms).map_err(|e| e.to_string())?;
        let batches: Vec<Batch> = rows
            .into_iter()
            .map(|r| {
                let b = Batch {
                    from: from as u64,
                    upto: r.upto as u64,
                    at_ms: r.admitted_at_ms,
                };
                from = r.upto;
                b
            })
            .collect();
        let claims = queries::load_pass_claims(conn, row.id, now - pass_ttl_s - 60)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(seq, key)| (seq, (key, now)))
            .collect();
        // Numbers reserved but never recorded as handed out are nobody. (Joins are answered only
        // once recorded, so today both counts are written together and this range is empty; a
        // database from before kept reserving ahead in blocks.) Before opening, keep
        // every such range for the opening's shuffle; after, those the front has not passed or
        // that the admission steps reloaded passed (they hold no place in reserve). This restart's
        // range included, on disk before anything is served, so that a later restart still skips
        // them and no position ever grows.
        let parse = |text: &str| serde_json::from_str::<Vec<(u64, u64)>>(text).unwrap_or_default();
        let mut gaps = parse(&row.ticket_gaps);
        let (issued, reserved) = (row.tickets_issued as u64, row.tickets_reserved as u64);
        let admitted = row.admitted_upto as u64;
        let from = match row.pre_queue_count {
            None => issued,
            Some(count) => {
                let kept_from = batches.first().map_or(admitted, |b: &Batch| b.from);
                gaps.retain(|(_, to)| *to > kept_from);
                // Every number below the count was handed out before the opening.
                issued.max(count as u64).max(admitted)
            }
        };
        gaps.push((from, reserved.max(from)));
        let gaps = merge_gaps(gaps);
        let text = serde_json::to_string(&gaps).map_err(|e| e.to_string())?;
        // Never hand out a number at or below one the line already knows (a record that failed
        // and was never repaired leaves `tickets_reserved` behind the opening or the front).
        let count = row
            .tickets_reserved
            .max(row.tickets_issued)
            .max(row.pre_queue_count.unwrap_or(0))
            .max(row.admitted_upto);
        if text != row.ticket_gaps || count != row.tickets_reserved || count != row.tickets_issued {
            queries::record_gaps(
                conn,
                row.id,
                &text,
                count,
                (row.tickets_reserved, &row.ticket_gaps),
            )
            .map_err(|e| e.to_string())?;
        }
        let verified = queries::count_pass_claims(conn, row.id).map_err(|e| e.to_string())?;
        // Tickets that booked since the oldest admission step reloaded: no place in reserve.
        let booked_tickets = match batches.first() {
            Some(b) => queries::tickets_that_booked(conn, row.id, b.at_ms.div_euclid(1000))
                .map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let (passed, returns) = queries::load_passed(conn, row.id).map_err(|e| e.to_string())?;
        let passed = merge_gaps(passed.iter().flat_map(|text| parse(text)));
        Ok(Self {
            passed,
            returns,
            return_clock_ms: row.return_clock_ms,
            tickets_reserved: count as u64,
            pre_queue_count: row.pre_queue_count.map(|c| c as u64),
            admitted_upto: row.admitted_upto as u64,
            admitted_count: row.admitted_count as u64,
            gaps,
            pre_queue_gaps: parse(&row.pre_queue_gaps),
            batches,
            booked_tickets,
            clock_ms: row.admission_clock_ms,
            claims,
            verified: verified as u64,
        })
    }
}

impl CohortShared {
    pub fn new(
        cohort: Cohort,
        seed: u64,
        state: &QueueState,
        (pass_ttl_s, absent_after_s): (i64, u64),
    ) -> Self {
        let configured_rate = cohort.admission_rate_per_s;
        let shared = Self {
            id: cohort.id,
            info: RwLock::new(cohort),
            arrived: AtomicU64::new(0),
            settled_upto: AtomicU64::new(0),
            settled: tokio::sync::Notify::new(),
            taken: RwLock::new(VecDeque::new()),
            issued: AtomicU64::new(state.tickets_reserved),
            record_asked: AtomicBool::new(false),
            abandoned: std::sync::Mutex::new(Vec::new()),
            challenges: std::sync::Mutex::new(Vec::new()),
            challenge_refused: std::sync::Mutex::new(Default::default()),
            challenges_seen: std::sync::Mutex::new(HashMap::new()),
            admitted_upto: AtomicU64::new(state.admitted_upto),
            admitted_people: AtomicU64::new(state.admitted_count),
            pre_queue: OnceLock::new(),
            sold_out: AtomicBool::new(false),
            sync_hold_until_ms: AtomicI64::new(0),
            // Until admissions are measured, the configured rate is the best estimate: a
            // citizen who joins an idle queue is told an ETA at once.
            rate_milli: AtomicU64::new((configured_rate * 1000.0) as u64),
            batches: RwLock::new(state.batches.clone()),
            verified: AtomicU64::new(state.verified),
            pass_ttl_s,
            gaps: RwLock::new(Vec::new()),
            pending_gaps: RwLock::new(if state.pre_queue_count.is_none() {
                merge_gaps(state.gaps.iter().copied())
            } else {
                Vec::new()
            }),
            seen: std::sync::Mutex::new(Vec::new()),
            passed: RwLock::new(state.passed.clone()),
            returns: RwLock::new(state.returns.iter().copied().collect()),
            returning: std::sync::Mutex::new(Vec::new()),
            absent_after_s,
        };
        if let Some(count) = state.pre_queue_count {
            let pre = PreQueue::with_gaps(count, seed, &state.pre_queue_gaps);
            *shared.gaps.write().unwrap_or_else(|e| e.into_inner()) =
                merge_gaps(pre.gaps().iter().chain(&state.gaps).copied());
            let _ = shared.pre_queue.set(pre);
        }
        shared
    }

    /// Joins that arrived at this node so far (what `JoinPressure` samples).
    pub fn joins_arrived(&self) -> u64 {
        self.arrived.load(Ordering::Relaxed)
    }

    /// Marks a challenge used at this node; false if it was already.
    fn first_use_here(&self, id: &str, expires_at: i64) -> bool {
        let mut seen = self
            .challenges_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if seen.len() >= CHALLENGES_SEEN_KEPT {
            let now = crate::now_s();
            seen.retain(|_, exp| *exp > now);
        }
        if seen.contains_key(id) {
            return false;
        }
        // Past the bound (a flood of live challenges) only the database checks.
        if seen.len() < CHALLENGES_SEEN_KEPT {
            seen.insert(id.to_string(), expires_at);
        }
        true
    }

    fn forget_use_here(&self, id: &str) {
        self.challenges_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    pub fn cohort(&self) -> Cohort {
        self.info.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// When joining stops; read on every join, so without cloning the cohort.
    /// Leading zero bits a join's challenge must show at least (0: none asked).
    pub fn join_difficulty(&self) -> i32 {
        self.info
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .join_difficulty
    }

    pub fn closes_at(&self) -> i64 {
        self.info
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .closes_at
    }

    pub fn state(&self, now: i64) -> CohortState {
        self.cohort().state(now, self.is_sold_out())
    }

    /// A sync is on its way in: its places go to the centers first, then its counts of
    /// bookings per step here (`Synced`). Until they have, a tick would count a place that
    /// went as still free but no longer held (a place ahead), or the other way round: the
    /// clock waits, for at most `for_ms` in case the counts never come.
    pub fn hold_for_sync(&self, now_ms: i64, for_ms: i64) {
        self.sync_hold_until_ms
            .store(now_ms + for_ms, Ordering::Release);
    }

    pub fn is_sold_out(&self) -> bool {
        self.sold_out.load(Ordering::Relaxed)
    }

    /// Ticket numbers taken (on disk), by every node as far as this one knows.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Acquire)
    }

    /// The number the join that arrived `arrival`-th took, once its batch is settled.
    fn number_of(&self, arrival: u64) -> Option<u64> {
        let taken = self.taken.read().unwrap_or_else(|e| e.into_inner());
        let (from, _, base) = taken
            .iter()
            .rev()
            .find(|(from, upto, _)| (*from..*upto).contains(&arrival))?;
        base.map(|b| b + arrival - from)
    }

    /// The admission front: queue places below it were admitted (gaps included).
    pub fn admitted(&self) -> u64 {
        self.admitted_upto.load(Ordering::Acquire)
    }

    /// People admitted so far: the places the front passed, less the gaps it jumped.
    pub fn admitted_people(&self) -> u64 {
        self.admitted_people.load(Ordering::Acquire)
    }

    /// Tickets passed over as absent, by any node.
    pub fn passed_over(&self) -> u64 {
        let passed = self.passed.read().unwrap_or_else(|e| e.into_inner());
        passed.iter().map(|(from, to)| to - from).sum()
    }

    /// Passed-over tickets admitted beside the line once back, as this node knows them.
    pub fn returned(&self) -> u64 {
        self.returns.read().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    pub fn verified(&self) -> u64 {
        self.verified.load(Ordering::Relaxed)
    }

    pub fn is_open_shuffled(&self) -> bool {
        self.pre_queue.get().is_some()
    }

    /// Admissions per second, measured over the recent past.
    pub fn measured_rate(&self) -> f64 {
        self.rate_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// People waiting: the numbers handed out the front has not passed, less the gaps (numbers
    /// a restart reserved and nobody was given, and the few handed out in the last tick before
    /// it). `issued() - admitted()` counts the gaps too.
    pub fn waiting(&self) -> u64 {
        let (issued, admitted) = (self.issued(), self.admitted());
        let skipped = if self.is_open_shuffled() {
            let gaps = self.gaps.read().unwrap_or_else(|e| e.into_inner());
            gap_overlap(&gaps, admitted, issued)
        } else {
            let pending = self.pending_gaps.read().unwrap_or_else(|e| e.into_inner());
            gap_overlap(&pending, admitted, issued)
        };
        issued.saturating_sub(admitted) - skipped
    }

    /// Forgets the gaps the front passed; returns those left.
    fn gaps_ahead(&self) -> Vec<(u64, u64)> {
        let admitted = self.admitted();
        let mut gaps = self.gaps.write().unwrap_or_else(|e| e.into_inner());
        gaps.retain(|(_, to)| *to > admitted);
        gaps.clone()
    }

    /// Who was heard from here within `ABSENT_AFTER_SECONDS`, among the `PRESENCE_SPAN`
    /// places from the front: (the front, one bit a place, as hex); `None` if nobody can be
    /// passed over.
    pub fn presence_near_front(&self, now_ms: i64) -> Option<(u64, String)> {
        let pre = self.pre_queue.get()?;
        if self.absent_after_s == 0 {
            return None;
        }
        let (from, issued) = (self.admitted(), self.issued());
        let upto = issued.min(from + PRESENCE_SPAN);
        if upto <= from {
            return None;
        }
        let since = now_ms.div_euclid(1000) - self.absent_after_s as i64;
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut bits = vec![0u8; (upto - from).div_ceil(8) as usize];
        for qidx in from..upto {
            let heard = seen
                .get(pre.seq_at(qidx) as usize)
                .is_some_and(|at| i64::from(*at) >= since);
            if heard {
                let i = (qidx - from) as usize;
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        drop(seen);
        Some((from, crate::domain::hex(&bits)))
    }

    /// The holder of ticket `seq` was heard from at `now_s` (joined or polled here).
    fn saw(&self, seq: u64, now_s: i64) {
        if self.absent_after_s == 0 {
            return;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let i = seq as usize;
        if i >= seen.len() {
            // Grown in steps, not a ticket at a time.
            let len = (i + 1).max(seen.len() * 2).max(1024);
            seen.resize(len, 0);
        }
        seen[i] = seen[i].max(now_s.clamp(0, i64::from(u32::MAX)) as u32);
    }

    /// Ticket `seq`'s place in the line, for its booking to be counted toward the admission
    /// step that admitted it (found on disk by the writer: this node may not know the step
    /// yet, if the ticket was admitted at another); `None` in a gap, whose places are not held.
    pub fn booking_place(&self, seq: u64) -> Option<u64> {
        let qidx = self.pre_queue.get()?.queue_index(seq);
        // A returned ticket's admission was no step's: its place was not held by one.
        let passed = in_ranges(&self.passed.read().unwrap_or_else(|e| e.into_inner()), qidx);
        (!passed && !in_gap(&self.gaps.read().unwrap_or_else(|e| e.into_inner()), qidx))
            .then_some(qidx)
    }

    /// What the holder of ticket `seq` is told at `now_ms`; hearing from them, they are
    /// present (and a passed-over ticket, back, is asked to be admitted).
    pub fn status(&self, seq: u64, now_ms: i64) -> TicketStatus {
        self.saw(seq, now_ms.div_euclid(1000));
        let status = self.snapshot_status(seq, now_ms);
        if status.returning {
            if let Some(pre) = self.pre_queue.get() {
                self.returning
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(pre.queue_index(seq));
            }
        }
        status
    }

    fn snapshot_status(&self, seq: u64, now_ms: i64) -> TicketStatus {
        let (opens_at, closes_at, paused) = {
            let c = self.info.read().unwrap_or_else(|e| e.into_inner());
            (c.opens_at, c.closes_at, c.paused)
        };
        let batches = self.batches.read().unwrap_or_else(|e| e.into_inner());
        let gaps = self.gaps.read().unwrap_or_else(|e| e.into_inner());
        let passed = self.passed.read().unwrap_or_else(|e| e.into_inner());
        let returns = self.returns.read().unwrap_or_else(|e| e.into_inner());
        QueueSnapshot {
            now_ms,
            opens_at,
            closes_at,
            paused,
            sold_out: self.is_sold_out(),
            issued: self.issued(),
            admitted_upto: self.admitted(),
            pre_queue: self.pre_queue.get(),
            batches: &batches,
            pass_ttl_s: self.pass_ttl_s,
            rate: self.measured_rate(),
            gaps: &gaps,
            passed: &passed,
            returns: &returns,
            absent_after_s: self.absent_after_s,
        }
        .status(seq)
    }
}

/// A cohort's queue: its actor and what it publishes.
#[derive(Clone)]
pub struct CohortHandle {
    pub addr: Addr<CohortQueue>,
    pub shared: Arc<CohortShared>,
}

impl CohortHandle {
    /// Takes the next ticket number, once it is on disk: the joins of the moment at this node
    /// take theirs together, in one write of the cohort's counter (`queries::take_tickets`),
    /// so a ticket handed out is never handed out again after any crash, and a join answered
    /// before another arrived (at any node) holds the smaller number. If the write fails, the
    /// join fails and took no number.
    pub async fn take_ticket(&self) -> Result<u64, StoreError> {
        self.take_ticket_with(None).await.map_err(|e| match e {
            JoinError::Store(e) => e,
            JoinError::ChallengeUsed => StoreError::Commit("challenge used".into()),
        })
    }

    /// `take_ticket` for a join that brings a solved challenge (`Some((id, expires_at))`):
    /// recorded as used in the write that numbers the batch, refused if it was used before
    /// (here, or at any node: the database decides) and then holding no number.
    pub async fn take_ticket_with(
        &self,
        challenge: Option<(String, i64)>,
    ) -> Result<u64, JoinError> {
        let shared = &self.shared;
        let arrival = match &challenge {
            None => shared.arrived.fetch_add(1, Ordering::AcqRel),
            Some((id, expires_at)) => {
                if !shared.first_use_here(id, *expires_at) {
                    return Err(JoinError::ChallengeUsed);
                }
                let mut pending = shared.challenges.lock().unwrap_or_else(|e| e.into_inner());
                let arrival = shared.arrived.fetch_add(1, Ordering::AcqRel);
                pending.push((arrival, id.clone(), *expires_at));
                arrival
            }
        };
        let taken = self.settle(arrival).await;
        if let Some((id, _)) = &challenge {
            if shared
                .challenge_refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&arrival)
            {
                return Err(JoinError::ChallengeUsed);
            }
            if taken.is_err() {
                // Not recorded: the same solution may try again.
                shared.forget_use_here(id);
            }
        }
        taken.map_err(JoinError::Store)
    }

    async fn settle(&self, arrival: u64) -> Result<u64, StoreError> {
        let shared = &self.shared;
        if !shared.record_asked.swap(true, Ordering::AcqRel) {
            self.addr.do_send(RecordTickets);
        }
        let settled = async {
            loop {
                let woken = shared.settled.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                if shared.settled_upto.load(Ordering::Acquire) > arrival {
                    return;
                }
                woken.await;
            }
        };
        if tokio::time::timeout(JOIN_DEADLINE, settled).await.is_err() {
            shared
                .abandoned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(arrival);
            return Err(StoreError::Busy);
        }
        let seq = shared
            .number_of(arrival)
            .ok_or_else(|| StoreError::Commit("the join could not be recorded".into()))?;
        shared.saw(seq, crate::now_s());
        Ok(seq)
    }
}

/// Why a join took no ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    Store(StoreError),
    /// Its challenge was used before.
    ChallengeUsed,
}

/// Record the ticket numbers joins have taken (sent by the first join since the last record).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordTickets;

/// Binds a pass to the identity it verified.
#[derive(Message)]
#[rtype(result = "Result<Claim, StoreError>")]
pub struct ClaimPass {
    pub seq: u64,
    pub citizen_key: String,
    pub now: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First verification with this pass.
    New,
    /// The pass verified this identity before.
    Same,
    /// The pass verified someone else.
    Other,
}

/// The holder of ticket `seq` is booking (`booking: true`, sent as the booking goes to its
/// center): their admission no longer holds a place in reserve; or the booking was refused
/// (`false`): it holds one again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TicketBooked {
    pub seq: u64,
    pub booking: bool,
}

/// Operators' changes: rate, closing time, pause.
#[derive(Message)]
#[rtype(result = "Result<Cohort, StoreError>")]
pub struct PatchCohort(pub CohortPatch);

/// Runs one step of the admission clock at `now_ms`, answered once its write is durable (the
/// actor's own timer sends none when started with `tick: None`, so tests and simulations
/// drive the clock).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Tick {
    pub now_ms: i64,
}

#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub pass_ttl_s: i64,
    pub over_admission: f64,
    pub zone: FixedOffset,
    /// The admission clock's period; `None` to drive it with `Tick` messages.
    pub tick: Option<Duration>,
    /// `ABSENT_AFTER_SECONDS`: a ticket not heard from for this long when its turn comes is
    /// passed over; 0: never.
    pub absent_after_s: u64,
}

/// What a node read of its cohort from the database (sent by `ClusterSync`): what operators
/// and the other nodes changed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Synced {
    pub row: CohortRow,
    pub admissions: AdmissionState,
    /// Returns admitted by any node while their passes may last (queue index, at ms).
    pub returns: Vec<(u64, i64)>,
    /// What the other nodes heard near the front: first queue index, bits (hex), at (ms).
    pub heard_elsewhere: Vec<(u64, String, i64)>,
    /// Before the read began.
    pub asked_at: std::time::Instant,
}

/// A cohort's admission front and the steps past this node's, read from the database more
/// often than the rest (`ClusterSync`): a ticket polled at two nodes must never see its
/// position grow.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FrontSynced(pub AdmissionState);

pub struct CohortQueue {
    shared: Arc<CohortShared>,
    store: Addr<BookingStore>,
    registry: Weak<Registry>,
    identity: Arc<PoolLoad>,
    settings: QueueSettings,
    seed: u64,
    /// An opening or admission step is being made durable.
    step_in_flight: bool,
    /// The instant up to which the admission rate has been spent (`cohorts.admission_clock_ms`
    /// as this node last wrote or read it): a step of k people moves it k / rate seconds on.
    clock_ms: i64,
    /// This actor's first tick after the opening: a restart never admits for the time before
    /// it (the first tick only starts the clock).
    first_tick_ms: Option<i64>,
    /// The current admission rate after backpressure, at most the configured one.
    rate: f64,
    last_tick_ms: Option<i64>,
    last_decrease_ms: i64,
    last_busy: u64,
    /// (at, admitted, tick length) of recent ticks that had someone waiting, and of the steps
    /// other nodes made (length 0): the cohort's measured rate.
    history: VecDeque<(i64, u64, i64)>,
    /// Per admission step (keyed by its `upto`): the gaps it jumped, which hold no place.
    skipped: HashMap<u64, u64>,
    /// Per admission step: bookings its tickets made through this node.
    mine: HashMap<u64, u64>,
    /// Per admission step: bookings its tickets made through any node, as counted on disk
    /// with each booking (read by the last sync).
    on_disk: HashMap<u64, u64>,
    /// Every gap of this queue (queue indices), passed or not: a ticket inside one (handed
    /// out in the last tick before a restart) is already counted by its gap, so its booking
    /// must not be counted again.
    gap_ranges: Vec<(u64, u64)>,
    claims: HashMap<u64, (String, i64)>,
    /// A batch of joins is taking its numbers.
    recording_tickets: bool,
    /// This actor's first tick: until `ABSENT_AFTER_SECONDS` later it cannot tell who is
    /// absent (it was not there to hear them), so it passes nobody over.
    born_ms: Option<i64>,
    /// `cohorts.return_clock_ms` as this node last wrote or read it.
    return_clock_ms: i64,
    /// Returned tickets are being admitted.
    returns_in_flight: bool,
    /// Passed-over tickets back at this node, waiting to be admitted beside the line.
    returning: BTreeSet<u64>,
    /// Returned tickets that booked through this node (their places are no longer held).
    returns_booked: HashSet<u64>,
    /// What the other nodes heard near the front (several nodes): first queue index, one bit
    /// a place, written at (ms).
    heard_elsewhere: Vec<(u64, Vec<u8>, i64)>,
    /// Numbers whose joins gave up waiting, for the next batch to record as nobody.
    gaps_out: Vec<(u64, u64)>,
    /// When an operator's change through this node was applied: a sync read that began
    /// before may predate it, and leaves the settings alone.
    patched_at: Option<std::time::Instant>,
}

impl CohortQueue {
    pub fn new(
        shared: Arc<CohortShared>,
        seed: u64,
        // Its claims and booked tickets (the rest is in `shared`).
        state: QueueState,
        store: Addr<BookingStore>,
        registry: Weak<Registry>,
        identity: Arc<PoolLoad>,
        settings: QueueSettings,
    ) -> Self {
        let rate = shared.cohort().admission_rate_per_s;
        // In the admission steps reloaded from disk, the gaps and the tickets that booked hold
        // no place in reserve.
        let mut skipped: HashMap<u64, u64> = HashMap::new();
        let mut mine: HashMap<u64, u64> = HashMap::new();
        let gap_ranges = shared
            .gaps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        {
            let gaps = &gap_ranges;
            let batches = shared.batches.read().unwrap_or_else(|e| e.into_inner());
            let passed = shared.passed.read().unwrap_or_else(|e| e.into_inner());
            for b in batches.iter() {
                let n = gap_overlap(gaps, b.from, b.upto) + gap_overlap(&passed, b.from, b.upto);
                if n > 0 {
                    skipped.insert(b.upto, n);
                }
            }
            if let Some(pre) = shared.pre_queue.get() {
                for seq in &state.booked_tickets {
                    let qidx = pre.queue_index(*seq);
                    if in_gap(gaps, qidx) || in_ranges(&passed, qidx) {
                        continue;
                    }
                    let i = batches.partition_point(|b| b.upto <= qidx);
                    if let Some(b) = batches.get(i).filter(|b| b.from <= qidx) {
                        *mine.entry(b.upto).or_default() += 1;
                    }
                }
            }
        }
        Self {
            shared,
            store,
            registry,
            identity,
            settings,
            seed,
            step_in_flight: false,
            clock_ms: state.clock_ms,
            first_tick_ms: None,
            rate,
            last_tick_ms: None,
            last_decrease_ms: 0,
            last_busy: 0,
            history: VecDeque::new(),
            skipped,
            mine,
            on_disk: HashMap::new(),
            gap_ranges,
            claims: state.claims,
            recording_tickets: false,
            born_ms: None,
            return_clock_ms: state.return_clock_ms,
            returns_in_flight: false,
            returning: BTreeSet::new(),
            returns_booked: HashSet::new(),
            heard_elsewhere: Vec::new(),
            gaps_out: Vec::new(),
            patched_at: None,
        }
    }

    fn today(&self, now_ms: i64) -> NaiveDate {
        DateTime::from_timestamp_millis(now_ms)
            .unwrap_or_default()
            .with_timezone(&self.settings.zone)
            .date_naive()
    }

    /// Pairs of doses still bookable for this cohort's vaccine and interval, all centers.
    fn supply(&self, cohort: &Cohort, now_ms: i64) -> i64 {
        let Some(registry) = self.registry.upgrade() else {
            return 0;
        };
        let today = self.today(now_ms);
        let interval = cohort.dose_interval_days as u32;
        registry
            .centers()
            .iter()
            .map(|c| {
                c.shared.with_supply(&cohort.vaccine, |by_day| {
                    by_day.map_or(0, |d| bookable_pairs(d, interval, today))
                })
            })
            .sum()
    }

    /// Admitted citizens whose passes may still be used and who have not booked (through any
    /// node: the larger of this node's count and the one on disk, which lags a little).
    fn held(&self, now_ms: i64) -> i64 {
        let batches = self
            .shared
            .batches
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let of = |m: &HashMap<u64, u64>, upto: u64| m.get(&upto).copied().unwrap_or(0);
        // Returned tickets admitted beside the line hold a place too, while their pass lasts
        // (those that booked at another node are counted until it lapses: on the safe side).
        let ttl_ms = self.settings.pass_ttl_s * 1000;
        let returned = self
            .shared
            .returns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(q, at)| **at + ttl_ms > now_ms && !self.returns_booked.contains(q))
            .count() as i64;
        returned
            + batches
                .iter()
                .map(|b| {
                    let booked = of(&self.mine, b.upto).max(of(&self.on_disk, b.upto));
                    (b.upto - b.from).saturating_sub(of(&self.skipped, b.upto) + booked) as i64
                })
                .sum::<i64>()
    }

    /// Forgets admission steps whose passes have all lapsed.
    fn prune(&mut self, now_ms: i64) {
        let ttl_ms = self.settings.pass_ttl_s * 1000;
        let mut batches = self
            .shared
            .batches
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let lapsed =
            batches.partition_point(|b| b.at_ms.div_euclid(1000) * 1000 + ttl_ms <= now_ms);
        for b in batches.drain(..lapsed) {
            self.skipped.remove(&b.upto);
            self.mine.remove(&b.upto);
            self.on_disk.remove(&b.upto);
        }
        drop(batches);
        let oldest = now_ms / 1000 - self.settings.pass_ttl_s - 60;
        self.claims.retain(|_, (_, at)| *at >= oldest);
        while self
            .history
            .front()
            .is_some_and(|(at, _, _)| now_ms - at > RATE_WINDOW_MS)
        {
            self.history.pop_front();
        }
    }

    /// Backpressure: while the identity pool is full or turning people away, admit fewer
    /// (multiplicative decrease, at most once a second); while it has room, climb back to the
    /// configured rate (additive increase, the whole way in about five seconds).
    fn adapt_rate(&mut self, now_ms: i64, max_rate: f64) {
        let busy = self.identity.busy.load(Ordering::Relaxed);
        let pressured = self.identity.is_saturated() || busy > self.last_busy;
        self.last_busy = busy;
        if pressured {
            if now_ms - self.last_decrease_ms >= 1000 {
                self.rate = (self.rate * 0.7).max(max_rate.min(1.0));
                self.last_decrease_ms = now_ms;
            }
        } else {
            self.rate = (self.rate + max_rate * 0.02).min(max_rate);
        }
        self.rate = self.rate.min(max_rate);
    }

    fn publish_rate(&self) {
        let (admitted, span) = self
            .history
            .iter()
            .fold((0u64, 0i64), |(n, t), (_, k, dt)| (n + k, t + dt));
        // Until a few seconds of backlog were seen, the best estimate is the current rate.
        let measured = if span >= 3_000 {
            admitted as f64 * 1000.0 / span as f64
        } else {
            self.rate
        };
        self.shared
            .rate_milli
            .store((measured * 1000.0) as u64, Ordering::Relaxed);
    }

    /// One tick of the admission clock. Returns the write it started, if any: the timer
    /// spawns it, a `Tick` message answers when it is done.
    fn step(&mut self, now_ms: i64) -> Option<ResponseActFuture<Self, ()>> {
        self.prune(now_ms);
        let born = *self.born_ms.get_or_insert(now_ms);
        if self.step_in_flight || now_ms < self.shared.sync_hold_until_ms.load(Ordering::Acquire) {
            return None;
        }
        let cohort = self.shared.cohort();
        let now = now_ms.div_euclid(1000);
        if !self.shared.is_open_shuffled() {
            return (now >= cohort.opens_at).then(|| self.open());
        }
        let dt = self.last_tick_ms.map_or(0, |t| (now_ms - t).clamp(0, 1000));
        self.last_tick_ms = Some(now_ms);
        self.adapt_rate(now_ms, cohort.admission_rate_per_s);

        let cap =
            (self.supply(&cohort, now_ms) as f64 * self.settings.over_admission).floor() as i64;
        let headroom = cap - self.held(now_ms);
        self.shared.sold_out.store(headroom <= 0, Ordering::Relaxed);

        let admitted = self.shared.admitted();
        let open = now < cohort.closes_at && !cohort.paused;
        let issued = self.shared.issued();
        let gaps = self.shared.gaps_ahead();
        // People waiting: the gaps are nobody (see `QueueSnapshot::gaps`).
        let backlog = issued.saturating_sub(admitted) - gap_overlap(&gaps, admitted, issued);
        if !open || headroom <= 0 || backlog == 0 || self.rate <= 0.0 {
            self.publish_rate();
            return None;
        }
        // The rate is spent from the clock on disk (shared by every node), never for more
        // than a quarter of a second back (or one admission's worth, at a slow rate), nor for
        // the time before this actor started.
        let window_ms = (250.0f64).max(1000.0 / self.rate);
        let first = *self.first_tick_ms.get_or_insert(now_ms);
        let clock = (self.clock_ms as f64)
            .max(now_ms as f64 - window_ms)
            .max(first as f64);
        let due = ((now_ms as f64 - clock) * self.rate / 1000.0)
            .floor()
            .max(0.0) as u64;
        let k = due.min(backlog).min(headroom as u64);
        // The tick's length now; its admissions once on disk (made here or adopted from the
        // node that won the step), so none is counted twice.
        self.history.push_back((now_ms, 0, dt));
        self.publish_rate();
        let absent_ms = self.settings.absent_after_s as i64 * 1000;
        // Who is absent can be told only by a node that has been listening that long.
        let tells_absent = absent_ms > 0 && now_ms - born >= absent_ms;
        if k == 0 && !tells_absent {
            return None;
        }
        let (upto, skipped, passed) = self.next_in_line(admitted, issued, k, &gaps, now_ms);
        let people = upto - admitted - skipped - gap_overlap(&passed, admitted, upto);
        if people == 0 && passed.is_empty() {
            return None;
        }
        let clock_ms = (clock + people as f64 * 1000.0 / self.rate).round() as i64;
        Some(self.admit(admitted, upto, (skipped, passed), now_ms, clock_ms))
    }

    /// From the front `admitted`, the next `k` people in queue order present (heard from
    /// within `ABSENT_AFTER_SECONDS`), the absent among them passed over without spending the
    /// rate, and every gap reached on the way (or right after them) jumped. Answers where the
    /// step ends, the places in gaps, and the ranges passed over.
    fn next_in_line(
        &self,
        admitted: u64,
        issued: u64,
        k: u64,
        gaps: &[(u64, u64)],
        now_ms: i64,
    ) -> (u64, u64, Vec<(u64, u64)>) {
        let absent_ms = self.settings.absent_after_s as i64 * 1000;
        let tells_absent =
            absent_ms > 0 && self.born_ms.is_some_and(|born| now_ms - born >= absent_ms);
        let pre = self.shared.pre_queue.get();
        let seen = self.shared.seen.lock().unwrap_or_else(|e| e.into_inner());
        let heard_since = (now_ms - absent_ms).div_euclid(1000);
        let elsewhere: Vec<&(u64, Vec<u8>, i64)> = self
            .heard_elsewhere
            .iter()
            .filter(|(_, _, at)| now_ms - at <= PRESENCE_FRESH_MS)
            .collect();
        let present = |qidx: u64| {
            let seq = pre.map_or(qidx, |p| p.seq_at(qidx));
            let here = seen
                .get(seq as usize)
                .is_some_and(|at| i64::from(*at) >= heard_since);
            here || elsewhere.iter().any(|(from, bits, _)| {
                let i = qidx.wrapping_sub(*from) as usize;
                qidx >= *from && bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
            })
        };
        // Beyond what every node shares, nobody is taken for absent in this step.
        let issued = if elsewhere.is_empty() {
            issued
        } else {
            issued.min(admitted + PRESENCE_SPAN)
        };
        let (mut upto, mut skipped, mut left) = (admitted, 0, k);
        let mut passed: Vec<(u64, u64)> = Vec::new();
        let mut passed_n = 0;
        let mut gaps = gaps.iter().peekable();
        while upto < issued {
            if let Some((from, to)) = gaps.peek().filter(|(from, _)| *from <= upto) {
                skipped += to.saturating_sub(upto.max(*from));
                upto = upto.max(*to);
                gaps.next();
                continue;
            }
            let stop = gaps.peek().map_or(issued, |(from, _)| *from);
            if !tells_absent {
                if left == 0 {
                    break;
                }
                let n = left.min(stop - upto);
                upto += n;
                left -= n;
                continue;
            }
            if present(upto) {
                if left == 0 {
                    break;
                }
                left -= 1;
            } else {
                match passed.last_mut() {
                    Some(last) if last.1 == upto => last.1 += 1,
                    _ => passed.push((upto, upto + 1)),
                }
                passed_n += 1;
                if passed_n >= MAX_PASSED_PER_STEP {
                    upto += 1;
                    break;
                }
            }
            upto += 1;
        }
        (upto, skipped, passed)
    }

    /// Makes one step of the clock durable, then lets `done` apply what the store answered.
    /// Nothing of a step is published before its write committed.
    fn persist_step(
        &mut self,
        write: Write,
        done: impl FnOnce(&mut Self, Option<Written>) + 'static,
    ) -> ResponseActFuture<Self, ()> {
        self.step_in_flight = true;
        Box::pin(
            self.store
                .send(Persist(write))
                .into_actor(self)
                .map(move |res, act, _| {
                    act.step_in_flight = false;
                    done(act, res.ok().and_then(Result::ok));
                }),
        )
    }

    /// Freezes the pre-queue and shuffles it, once: the database takes the count of numbers
    /// handed out and the ranges that are nobody under the cohort's row lock (whichever node
    /// gets there first; the others read what it froze), and the shuffle, a function of the
    /// count, the ranges and the seed, is the same at every node. Made durable before anyone
    /// sees a place.
    fn open(&mut self) -> ResponseActFuture<Self, ()> {
        let write = Write::RecordOpening {
            cohort_id: self.shared.id,
        };
        self.persist_step(write, move |act, written| match written {
            Some(Written::Opened(count, gaps)) => act.adopt_opening(count, &gaps),
            _ => log::error!(
                "cohort {}: could not record the opening; retrying",
                act.shared.id
            ),
        })
    }

    /// The pre-queue as it was frozen on disk: `count` numbers, `gaps` (JSON) the ranges its
    /// shuffle takes as one place each.
    fn adopt_opening(&mut self, count: u64, gaps: &str) {
        if self.shared.is_open_shuffled() {
            return;
        }
        let ranges: Vec<(u64, u64)> = serde_json::from_str(gaps).unwrap_or_default();
        let pre = PreQueue::with_gaps(count, self.seed, &ranges);
        let skipped = gap_overlap(pre.gaps(), 0, count);
        // The gaps before the order: a poll that sees the order sees them.
        *self.shared.gaps.write().unwrap_or_else(|e| e.into_inner()) = pre.gaps().to_vec();
        self.gap_ranges = pre.gaps().to_vec();
        self.shared.issued.fetch_max(count, Ordering::AcqRel);
        log::info!(
            "cohort {} opened: {count} pre-queue tickets shuffled with seed {} ({skipped} \
             numbers that are nobody taken as {} places)",
            self.shared.id,
            self.seed,
            ranges.len()
        );
        let _ = self.shared.pre_queue.set(pre);
        self.shared
            .pending_gaps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The ranges of numbers that are nobody, as on disk (`cohorts.ticket_gaps`, JSON): before
    /// the opening, those its shuffle will take as one place each; after, queue indices.
    fn adopt_ticket_gaps(&mut self, text: &str) {
        let ranges: Vec<(u64, u64)> = serde_json::from_str(text).unwrap_or_default();
        if ranges.is_empty() {
            return;
        }
        match self.shared.pre_queue.get() {
            Some(pre) => {
                let after: Vec<(u64, u64)> = ranges
                    .into_iter()
                    .map(|(f, t)| (f.max(pre.count), t))
                    .filter(|(f, t)| f < t)
                    .collect();
                let mut gaps = self.shared.gaps.write().unwrap_or_else(|e| e.into_inner());
                *gaps = merge_gaps(gaps.iter().copied().chain(after.iter().copied()));
                self.gap_ranges = merge_gaps(self.gap_ranges.iter().copied().chain(after));
            }
            None => {
                let mut pending = self
                    .shared
                    .pending_gaps
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                *pending = merge_gaps(pending.iter().copied().chain(ranges));
            }
        }
    }

    /// Takes numbers for the joins that arrived since the last batch, in one counter write,
    /// and settles them when it is done: numbered, or (if it failed) refused. Joins that arrive
    /// meanwhile go into the next batch, started as soon as this one returns.
    fn record_tickets(&mut self, ctx: &mut Context<Self>) {
        if self.recording_tickets {
            // Asked again when the write on its way returns.
            return;
        }
        self.shared.record_asked.store(false, Ordering::Release);
        let from = self.shared.settled_upto.load(Ordering::Acquire);
        // Joins that gave up waiting (`JOIN_DEADLINE`) were answered 503: nobody holds their
        // numbers (those still waiting for their batch are looked at after it).
        let abandoned: Vec<u64> = std::mem::take(
            &mut *self
                .shared
                .abandoned
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let mut later = Vec::new();
        for arrival in abandoned {
            if arrival >= from {
                later.push(arrival);
            } else if let Some(seq) = self.shared.number_of(arrival) {
                self.gaps_out.push((seq, seq + 1));
            }
        }
        self.shared
            .abandoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(later);
        // Under the lock a join with a challenge takes its arrival by: every challenge
        // pending belongs below `upto`, and none below it is left out.
        let (upto, challenges) = {
            let mut pending = self
                .shared
                .challenges
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let upto = self.shared.arrived.load(Ordering::Acquire);
            let batch: Vec<ChallengeUse> = pending
                .drain(..)
                .map(|(arrival, id, expires_at)| ChallengeUse {
                    offset: arrival - from,
                    id,
                    expires_at,
                })
                .collect();
            (upto, batch)
        };
        if upto <= from && self.gaps_out.is_empty() {
            return;
        }
        self.recording_tickets = true;
        let gaps = merge_gaps(self.gaps_out.iter().copied());
        let sent = self.gaps_out.len();
        let write = Write::TakeTickets {
            cohort_id: self.shared.id,
            count: upto - from,
            gaps,
            challenges,
        };
        ctx.spawn(
            self.store
                .send(Persist(write))
                .into_actor(self)
                .map(move |res, act, ctx| {
                    act.recording_tickets = false;
                    let base = match res {
                        Ok(Ok(Written::Tickets(taken))) => {
                            act.gaps_out.drain(..sent);
                            act.shared
                                .issued
                                .fetch_max(taken.reserved, Ordering::AcqRel);
                            act.adopt_ticket_gaps(&taken.gaps);
                            if !taken.refused.is_empty() {
                                act.shared
                                    .challenge_refused
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .extend(taken.refused.iter().map(|o| from + o));
                            }
                            Some(taken.base)
                        }
                        _ => {
                            if upto > from {
                                log::error!(
                                    "cohort {}: could not record {} joins; they were refused",
                                    act.shared.id,
                                    upto - from
                                );
                            }
                            None
                        }
                    };
                    {
                        let mut taken = act.shared.taken.write().unwrap_or_else(|e| e.into_inner());
                        if upto > from {
                            taken.push_back((from, upto, base));
                        }
                        while taken.len() > TAKEN_KEPT {
                            taken.pop_front();
                        }
                    }
                    act.shared.settled_upto.store(upto, Ordering::Release);
                    act.shared.settled.notify_waiters();
                    act.record_tickets(ctx);
                }),
        );
    }

    /// Admits queue indices `from..upto`, of which `skipped` are in gaps: nobody, so they hold
    /// no place in reserve (nor, for simplicity, do the few holders of numbers handed out in the
    /// last tick before a crash, admitted with their gap). Written only if `from` is still the
    /// front on disk: if another node moved it, this node adopts what it finds instead.
    fn admit(
        &mut self,
        from: u64,
        upto: u64,
        (gapped, passed): (u64, Vec<(u64, u64)>),
        at_ms: i64,
        clock_ms: i64,
    ) -> ResponseActFuture<Self, ()> {
        let passed_n = gap_overlap(&passed, from, upto);
        let skipped = gapped + passed_n;
        let people = upto - from - skipped;
        let write = Write::RecordAdmission {
            cohort_id: self.shared.id,
            from,
            upto,
            people,
            at_ms,
            clock_ms,
            passed: serde_json::to_string(&passed).unwrap_or_else(|_| "[]".into()),
        };
        self.persist_step(write, move |act, written| match written {
            Some(Written::Admission(None)) => {
                act.clock_ms = act.clock_ms.max(clock_ms);
                if act.shared.admitted() >= upto {
                    // A read of the front brought this very step in before its own answer
                    // (the mailbox goes before spawned futures): it is applied already.
                    return;
                }
                act.add_passed(&passed);
                act.shared
                    .batches
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Batch { from, upto, at_ms });
                if skipped > 0 {
                    act.skipped.insert(upto, skipped);
                }
                // The front's speed in places: positions count the absent not yet reached.
                act.history.push_back((at_ms, people + passed_n, 0));
                act.shared
                    .admitted_people
                    .fetch_add(people, Ordering::AcqRel);
                act.shared.admitted_upto.fetch_max(upto, Ordering::AcqRel);
            }
            // Another node admitted first: nobody was told of this step.
            Some(Written::Admission(Some(state))) => act.adopt_admissions(state, at_ms),
            // Nobody was told; the same tickets are admitted at a later tick.
            _ => log::error!("cohort {}: could not record an admission", act.shared.id),
        })
    }

    /// Ranges passed over by a step, before the front moves past them: a poll that sees the
    /// front sees them.
    fn add_passed(&self, ranges: &[(u64, u64)]) {
        if ranges.is_empty() {
            return;
        }
        let mut passed = self
            .shared
            .passed
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *passed = merge_gaps(passed.iter().chain(ranges).copied());
    }

    /// Admits the passed-over tickets that came back to this node, beside the line, lowest
    /// place first, at `RETURN_SHARE` of the admission rate (a clock on the cohort's row,
    /// shared by every node like the admission clock). Returns the write it started, if any.
    fn admit_returns(&mut self, now_ms: i64) -> Option<ResponseActFuture<Self, ()>> {
        let asked: Vec<u64> = std::mem::take(
            &mut *self
                .shared
                .returning
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        {
            let back = self
                .shared
                .returns
                .read()
                .unwrap_or_else(|e| e.into_inner());
            self.returning.extend(asked);
            self.returning.retain(|q| !back.contains_key(q));
        }
        let cohort = self.shared.cohort();
        let open = now_ms.div_euclid(1000) < cohort.closes_at && !cohort.paused;
        if self.returns_in_flight || self.returning.is_empty() || !open || self.shared.is_sold_out()
        {
            return None;
        }
        let rate = (cohort.admission_rate_per_s * RETURN_SHARE).max(1.0);
        let window_ms = (250.0f64).max(1000.0 / rate);
        let born = self.born_ms.unwrap_or(now_ms);
        let clock = (self.return_clock_ms as f64)
            .max(now_ms as f64 - window_ms)
            .max(born as f64);
        let due = ((now_ms as f64 - clock) * rate / 1000.0).floor().max(0.0) as usize;
        let indices: Vec<u64> = self.returning.iter().take(due).copied().collect();
        if indices.is_empty() {
            return None;
        }
        let clock_ms = (clock + indices.len() as f64 * 1000.0 / rate).round() as i64;
        let write = Write::RecordReturns {
            cohort_id: self.shared.id,
            indices,
            at_ms: now_ms,
            known_clock: self.return_clock_ms,
            clock_ms,
        };
        self.returns_in_flight = true;
        Some(Box::pin(
            self.store
                .send(Persist(write))
                .into_actor(self)
                .map(move |res, act, _| {
                    act.returns_in_flight = false;
                    match res {
                        Ok(Ok(Written::Returns(clock, admitted))) => {
                            act.return_clock_ms = act.return_clock_ms.max(clock);
                            act.adopt_returns(admitted);
                        }
                        _ => log::error!("cohort {}: could not record returns", act.shared.id),
                    }
                }),
        ))
    }

    /// Returned tickets admitted (by any node): published, no longer waiting here.
    fn adopt_returns(&mut self, admitted: Vec<(u64, i64)>) {
        let mut back = self
            .shared
            .returns
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for (q, at) in admitted {
            self.returning.remove(&q);
            back.entry(q).or_insert(at);
        }
    }

    /// The admission front and steps as on disk, made by any node: the steps past this node's
    /// front are added (before the front moves, so a poll that sees the front sees its step),
    /// and the bookings counted on disk per step replace the old counts.
    fn adopt_admissions(&mut self, state: AdmissionState, now_ms: i64) {
        let known = self.shared.admitted();
        for row in &state.steps {
            // Counts only grow on disk; reads may arrive out of order (two loops read).
            let n = self.on_disk.entry(row.upto as u64).or_default();
            *n = (*n).max(row.booked as u64);
        }
        self.clock_ms = self.clock_ms.max(state.clock_ms);
        if state.admitted_upto <= known {
            return;
        }
        {
            let mut batches = self
                .shared
                .batches
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let mut from = known;
            for row in state.steps.iter().filter(|r| r.upto as u64 > known) {
                let upto = row.upto as u64;
                let passed: Vec<(u64, u64)> = serde_json::from_str(&row.passed).unwrap_or_default();
                let passed_n = gap_overlap(&passed, from, upto);
                self.add_passed(&passed);
                let skipped = gap_overlap(&self.gap_ranges, from, upto) + passed_n;
                if skipped > 0 {
                    self.skipped.insert(upto, skipped);
                }
                self.history
                    .push_back((now_ms, upto - from - skipped + passed_n, 0));
                batches.push(Batch {
                    from,
                    upto,
                    at_ms: row.admitted_at_ms,
                });
                from = upto;
            }
        }
        self.shared
            .admitted_people
            .store(state.admitted_count, Ordering::Release);
        self.shared
            .admitted_upto
            .store(state.admitted_upto, Ordering::Release);
    }
}

impl Actor for CohortQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        if let Some(period) = self.settings.tick {
            ctx.run_interval(period, |act, ctx| {
                let now_ms = crate::now_ms();
                let write = act.step(now_ms);
                act.record_tickets(ctx);
                if let Some(write) = write {
                    ctx.spawn(write);
                }
                if let Some(write) = act.admit_returns(now_ms) {
                    ctx.spawn(write);
                }
            });
        }
    }
}

impl Handler<Tick> for CohortQueue {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Tick, ctx: &mut Context<Self>) -> Self::Result {
        let step = self.step(msg.now_ms);
        self.record_tickets(ctx);
        let returns = self.admit_returns(msg.now_ms);
        let step = step.unwrap_or_else(|| Box::pin(fut::ready(())));
        match returns {
            Some(returns) => Box::pin(step.then(move |_, _, _| returns)),
            None => step,
        }
    }
}

impl Handler<RecordTickets> for CohortQueue {
    type Result = ();

    fn handle(&mut self, _: RecordTickets, ctx: &mut Context<Self>) {
        self.record_tickets(ctx);
    }
}

impl Handler<ClaimPass> for CohortQueue {
    type Result = ResponseActFuture<Self, Result<Claim, StoreError>>;

    fn handle(&mut self, msg: ClaimPass, _: &mut Context<Self>) -> Self::Result {
        match self.claims.get(&msg.seq) {
            Some((key, _)) if *key == msg.citizen_key => {
                return Box::pin(fut::ready(Ok(Claim::Same)))
            }
            Some(_) => return Box::pin(fut::ready(Ok(Claim::Other))),
            None => {}
        }
        // Held before the write, so a concurrent claim by someone else sees it.
        self.claims
            .insert(msg.seq, (msg.citizen_key.clone(), msg.now));
        let claim = NewPassClaim {
            cohort_id: self.shared.id,
            ticket_seq: msg.seq as i64,
            citizen_key: msg.citizen_key,
            claimed_at: msg.now,
        };
        let (seq, now) = (msg.seq, msg.now);
        let citizen_key = claim.citizen_key.clone();
        Box::pin(
            self.store
                .send(Persist(Write::ClaimPass(claim)))
                .into_actor(self)
                .map(
                    move |res, act, _| match res.map_err(|_| StoreError::Busy).and_then(|r| r) {
                        Ok(Written::Claimed(key)) if key != citizen_key => {
                            // Bound to someone else already, by another node: the database
                            // decided.
                            act.claims.insert(seq, (key, now));
                            Ok(Claim::Other)
                        }
                        Ok(_) => {
                            act.shared.verified.fetch_add(1, Ordering::Relaxed);
                            Ok(Claim::New)
                        }
                        Err(e) => {
                            act.claims.remove(&seq);
                            Err(e)
                        }
                    },
                ),
        )
    }
}

impl Handler<TicketBooked> for CohortQueue {
    type Result = ();

    fn handle(&mut self, msg: TicketBooked, _: &mut Context<Self>) {
        let Some(pre) = self.shared.pre_queue.get() else {
            return;
        };
        let qidx = pre.queue_index(msg.seq);
        if in_gap(&self.gap_ranges, qidx) {
            return;
        }
        if in_ranges(
            &self.shared.passed.read().unwrap_or_else(|e| e.into_inner()),
            qidx,
        ) {
            if msg.booking {
                self.returns_booked.insert(qidx);
            } else {
                self.returns_booked.remove(&qidx);
            }
            return;
        }
        let batches = self
            .shared
            .batches
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let i = batches.partition_point(|b| b.upto <= qidx);
        if let Some(b) = batches.get(i).filter(|b| b.from <= qidx) {
            let n = self.mine.entry(b.upto).or_default();
            *n = if msg.booking {
                *n + 1
            } else {
                n.saturating_sub(1)
            };
        }
    }
}

impl Handler<FrontSynced> for CohortQueue {
    type Result = ();

    fn handle(&mut self, msg: FrontSynced, _: &mut Context<Self>) {
        // The gaps first: positions never count a number another node found to be nobody
        // later than this node does by more than this read.
        self.adopt_ticket_gaps(&msg.0.gaps);
        self.adopt_admissions(msg.0, crate::now_ms());
    }
}

impl Handler<Synced> for CohortQueue {
    type Result = ();

    fn handle(&mut self, msg: Synced, _: &mut Context<Self>) {
        let row = msg.row;
        if self.patched_at.is_none_or(|at| at < msg.asked_at) {
            let mut info = self.shared.info.write().unwrap_or_else(|e| e.into_inner());
            *info = row.cohort();
            self.rate = self.rate.min(info.admission_rate_per_s);
        }
        self.shared
            .issued
            .fetch_max(row.tickets_reserved as u64, Ordering::AcqRel);
        if let Some(count) = row.pre_queue_count {
            self.adopt_opening(count as u64, &row.pre_queue_gaps);
        }
        self.adopt_ticket_gaps(&row.ticket_gaps);
        self.adopt_admissions(msg.admissions, crate::now_ms());
        self.return_clock_ms = self.return_clock_ms.max(row.return_clock_ms);
        self.adopt_returns(msg.returns);
        self.heard_elsewhere = msg
            .heard_elsewhere
            .into_iter()
            .filter_map(|(from, hex, at)| Some((from, crate::domain::unhex(&hex)?, at)))
            .collect();
        self.shared.sync_hold_until_ms.store(0, Ordering::Release);
    }
}

impl Handler<PatchCohort> for CohortQueue {
    type Result = ResponseActFuture<Self, Result<Cohort, StoreError>>;

    fn handle(&mut self, msg: PatchCohort, _: &mut Context<Self>) -> Self::Result {
        let patch = msg.0;
        let write = Write::UpdateCohort(self.shared.id, patch.clone());
        Box::pin(
            self.store
                .send(Persist(write))
                .into_actor(self)
                .map(move |res, act, _| {
                    res.map_err(|_| StoreError::Busy)??;
                    act.patched_at = Some(std::time::Instant::now());
                    let mut info = act.shared.info.write().unwrap_or_else(|e| e.into_inner());
                    info.apply(&patch);
                    act.rate = act.rate.min(info.admission_rate_per_s);
                    Ok(info.clone())
                }),
        )
    }
}

/// Whether queue index `qidx` lies in one of `gaps`.
fn in_gap(gaps: &[(u64, u64)], qidx: u64) -> bool {
    gaps.iter().any(|(from, to)| (*from..*to).contains(&qidx))
}
