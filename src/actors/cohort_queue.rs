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
use crate::db::models::NewPassClaim;
use crate::domain::cohort::{Cohort, CohortPatch, CohortState};
use crate::domain::queue::{gap_overlap, merge_gaps, Batch, PreQueue, QueueSnapshot, TicketStatus};
use crate::domain::slot::bookable_pairs;
use actix::prelude::*;
use chrono::{DateTime, FixedOffset, NaiveDate};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

/// How often the admission clock ticks.
pub const TICK: Duration = Duration::from_millis(100);
/// The past over which the admission rate is measured for ETAs.
const RATE_WINDOW_MS: i64 = 30_000;
/// A join whose number is not on disk by then is answered 503 (the database is gone).
const JOIN_DEADLINE: Duration = Duration::from_secs(9);

/// What a cohort's queue publishes for handlers to read without the mailbox.
#[derive(Debug)]
pub struct CohortShared {
    pub id: i32,
    info: RwLock<Cohort>,
    /// Ticket numbers taken by joins.
    next_seq: AtomicU64,
    /// Numbers below this are settled: on disk (handed out), or in `failed` (nobody).
    durable: AtomicU64,
    /// Woken each time `durable` moves.
    settled: tokio::sync::Notify,
    /// A join asked the actor to record the numbers taken, and it has not started yet.
    record_asked: AtomicBool,
    /// Ranges of numbers whose record failed: their joins were answered 503, nobody holds them.
    failed: RwLock<Vec<(u64, u64)>>,
    /// Numbers whose joins stopped waiting for their record (answered 503).
    abandoned: std::sync::Mutex<Vec<u64>>,
    admitted_upto: AtomicU64,
    /// People admitted since the cohort began (queue places passed less the gaps).
    admitted_people: AtomicU64,
    pre_queue: OnceLock<PreQueue>,
    sold_out: AtomicBool,
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
}

impl CohortShared {
    pub fn new(cohort: Cohort, seed: u64, state: &QueueState, pass_ttl_s: i64) -> Self {
        let configured_rate = cohort.admission_rate_per_s;
        let shared = Self {
            id: cohort.id,
            info: RwLock::new(cohort),
            // Numbers below what was recorded before a restart were handed out: never hand
            // them out again.
            next_seq: AtomicU64::new(state.tickets_reserved),
            durable: AtomicU64::new(state.tickets_reserved),
            settled: tokio::sync::Notify::new(),
            record_asked: AtomicBool::new(false),
            failed: RwLock::new(Vec::new()),
            abandoned: std::sync::Mutex::new(Vec::new()),
            admitted_upto: AtomicU64::new(state.admitted_upto),
            admitted_people: AtomicU64::new(state.admitted_count),
            pre_queue: OnceLock::new(),
            sold_out: AtomicBool::new(false),
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
        };
        if let Some(count) = state.pre_queue_count {
            let pre = PreQueue::with_gaps(count, seed, &state.pre_queue_gaps);
            *shared.gaps.write().unwrap_or_else(|e| e.into_inner()) =
                merge_gaps(pre.gaps().iter().chain(&state.gaps).copied());
            let _ = shared.pre_queue.set(pre);
        }
        shared
    }

    pub fn cohort(&self) -> Cohort {
        self.info.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// When joining stops; read on every join, so without cloning the cohort.
    pub fn closes_at(&self) -> i64 {
        self.info
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .closes_at
    }

    pub fn state(&self, now: i64) -> CohortState {
        self.cohort().state(now, self.is_sold_out())
    }

    pub fn is_sold_out(&self) -> bool {
        self.sold_out.load(Ordering::Relaxed)
    }

    /// Ticket numbers settled: handed out (on disk), or skipped as nobody. A number taken by
    /// a join whose record is still on its way counts once it is settled.
    pub fn issued(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The admission front: queue places below it were admitted (gaps included).
    pub fn admitted(&self) -> u64 {
        self.admitted_upto.load(Ordering::Acquire)
    }

    /// People admitted so far: the places the front passed, less the gaps it jumped.
    pub fn admitted_people(&self) -> u64 {
        self.admitted_people.load(Ordering::Acquire)
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

    /// What the holder of ticket `seq` is told at `now_ms`.
    pub fn status(&self, seq: u64, now_ms: i64) -> TicketStatus {
        let (opens_at, closes_at, paused) = {
            let c = self.info.read().unwrap_or_else(|e| e.into_inner());
            (c.opens_at, c.closes_at, c.paused)
        };
        let batches = self.batches.read().unwrap_or_else(|e| e.into_inner());
        let gaps = self.gaps.read().unwrap_or_else(|e| e.into_inner());
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
    /// Takes the next ticket number and waits until it is on disk (group-committed with the
    /// other joins of the moment), so that a ticket handed out is never handed out again, and
    /// counts as a person, after any crash. If the record fails, the join fails and its number
    /// is nobody: a gap that positions skip and admission jumps.
    pub async fn take_ticket(&self) -> Result<u64, StoreError> {
        let shared = &self.shared;
        let seq = shared.next_seq.fetch_add(1, Ordering::AcqRel);
        if !shared.record_asked.swap(true, Ordering::AcqRel) {
            self.addr.do_send(RecordTickets);
        }
        let settled = async {
            loop {
                let woken = shared.settled.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                if shared.durable.load(Ordering::Acquire) > seq {
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
                .push(seq);
            return Err(StoreError::Busy);
        }
        let failed = shared.failed.read().unwrap_or_else(|e| e.into_inner());
        if in_gap(&failed, seq) {
            return Err(StoreError::Commit("the join could not be recorded".into()));
        }
        Ok(seq)
    }
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

/// The holder of ticket `seq` booked: their admission no longer holds a place in reserve.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TicketBooked {
    pub seq: u64,
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
}

pub struct CohortQueue {
    shared: Arc<CohortShared>,
    store: Addr<BookingStore>,
    registry: Weak<Registry>,
    identity: Arc<PoolLoad>,
    settings: QueueSettings,
    seed: u64,
    /// An opening or admission step is being made durable.
    step_in_flight: bool,
    tokens: f64,
    /// The current admission rate after backpressure, at most the configured one.
    rate: f64,
    last_tick_ms: Option<i64>,
    last_decrease_ms: i64,
    last_busy: u64,
    /// (at, admitted, tick length) of recent ticks that had someone waiting.
    history: VecDeque<(i64, u64, i64)>,
    /// Bookings made by admitted tickets, per admission step (keyed by its `upto`), gaps
    /// counted in as booked from the start.
    booked: HashMap<u64, u64>,
    /// Every gap of this queue (queue indices), passed or not: a ticket inside one (handed
    /// out in the last tick before a restart) is already counted in `booked` by its gap, so its
    /// booking must not be counted again.
    gap_ranges: Vec<(u64, u64)>,
    claims: HashMap<u64, (String, i64)>,
    /// A record of ticket numbers is on its way.
    recording_tickets: bool,
    /// The opening is due: no new record of tickets starts until it is done.
    open_due: bool,
    /// The ticket-number ranges that are nobody and not yet shuffled into the pre-queue
    /// (restarts of old, failed records), as `cohorts.ticket_gaps` keeps them, and whether
    /// the disk is behind.
    ticket_gaps: Vec<(u64, u64)>,
    ticket_gaps_changed: bool,
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
        let mut booked: HashMap<u64, u64> = HashMap::new();
        let gap_ranges = shared
            .gaps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        {
            let gaps = &gap_ranges;
            let batches = shared.batches.read().unwrap_or_else(|e| e.into_inner());
            for b in batches.iter() {
                let n = gap_overlap(gaps, b.from, b.upto);
                if n > 0 {
                    booked.insert(b.upto, n);
                }
            }
            if let Some(pre) = shared.pre_queue.get() {
                for seq in &state.booked_tickets {
                    let qidx = pre.queue_index(*seq);
                    if in_gap(gaps, qidx) {
                        continue;
                    }
                    let i = batches.partition_point(|b| b.upto <= qidx);
                    if let Some(b) = batches.get(i).filter(|b| b.from <= qidx) {
                        *booked.entry(b.upto).or_default() += 1;
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
            tokens: 0.0,
            rate,
            last_tick_ms: None,
            last_decrease_ms: 0,
            last_busy: 0,
            history: VecDeque::new(),
            booked,
            gap_ranges,
            claims: state.claims,
            recording_tickets: false,
            open_due: false,
            ticket_gaps: merge_gaps(state.gaps.iter().copied()),
            ticket_gaps_changed: false,
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

    /// Admitted citizens whose passes may still be used and who have not booked.
    fn held(&self) -> i64 {
        let batches = self
            .shared
            .batches
            .read()
            .unwrap_or_else(|e| e.into_inner());
        batches
            .iter()
            .map(|b| {
                (b.upto - b.from).saturating_sub(self.booked.get(&b.upto).copied().unwrap_or(0))
                    as i64
            })
            .sum()
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
            self.booked.remove(&b.upto);
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
        if self.step_in_flight {
            return None;
        }
        let cohort = self.shared.cohort();
        let now = now_ms.div_euclid(1000);
        if !self.shared.is_open_shuffled() {
            if now < cohort.opens_at {
                return None;
            }
            // Not while numbers are on their way to disk: the opening freezes what is settled.
            // From now on no new record starts before the opening (`record_tickets`), so a
            // stream of joins cannot put it off.
            self.open_due = true;
            return (!self.recording_tickets).then(|| self.open());
        }
        let dt = self.last_tick_ms.map_or(0, |t| (now_ms - t).clamp(0, 1000));
        self.last_tick_ms = Some(now_ms);
        self.adapt_rate(now_ms, cohort.admission_rate_per_s);

        let cap =
            (self.supply(&cohort, now_ms) as f64 * self.settings.over_admission).floor() as i64;
        let headroom = cap - self.held();
        self.shared.sold_out.store(headroom <= 0, Ordering::Relaxed);

        let admitted = self.shared.admitted();
        let open = now < cohort.closes_at && !cohort.paused;
        let issued = self.shared.issued();
        let gaps = self.shared.gaps_ahead();
        // People waiting: the gaps are nobody (see `QueueSnapshot::gaps`).
        let backlog = issued.saturating_sub(admitted) - gap_overlap(&gaps, admitted, issued);
        if !open || headroom <= 0 {
            self.tokens = 0.0;
            self.publish_rate();
            return None;
        }
        let mut k = 0;
        if backlog == 0 {
            self.tokens = 0.0;
        } else {
            self.tokens =
                (self.tokens + self.rate * dt as f64 / 1000.0).min((self.rate * 0.25).max(1.0));
            k = (self.tokens.floor() as u64)
                .min(backlog)
                .min(headroom as u64);
            self.history.push_back((now_ms, k, dt));
        }
        self.publish_rate();
        // The next `k` people in queue order, and every gap reached on the way (or right after
        // them), jumped without spending the rate on it.
        let (mut upto, mut skipped, mut left) = (admitted, 0, k);
        for (from, to) in gaps {
            let before = from.saturating_sub(upto);
            if before > left {
                break;
            }
            left -= before;
            skipped += to - from.max(upto);
            upto = to;
        }
        upto += left;
        if upto == admitted {
            return None;
        }
        self.tokens -= k as f64;
        Some(self.admit(admitted, upto, skipped, now_ms))
    }

    /// Makes one step of the clock durable, then lets `done` apply it (`true`) or learn that
    /// it failed (`false`). Nothing of a step is published before its write committed.
    fn persist_step(
        &mut self,
        write: Write,
        done: impl FnOnce(&mut Self, bool) + 'static,
    ) -> ResponseActFuture<Self, ()> {
        self.step_in_flight = true;
        Box::pin(
            self.store
                .send(Persist(write))
                .into_actor(self)
                .map(move |res, act, _| {
                    act.step_in_flight = false;
                    done(act, matches!(res, Ok(Ok(_))));
                }),
        )
    }

    /// Freezes the pre-queue and shuffles it, once; made durable before anyone sees a place.
    /// Every number below the count was handed out (a number is taken only once reserved, and
    /// then always handed out), except the ranges a restart skipped: the write moves those,
    /// as they are on disk, to the opening's record (`queries::record_opening`), and the
    /// shuffle takes each as one place.
    fn open(&mut self) -> ResponseActFuture<Self, ()> {
        // Numbers taken but not yet settled come after the pre-queue: they are joins of the
        // moment of opening.
        let count = self.shared.issued();
        // The ranges that are nobody as this actor knows them, whether or not a record has
        // taken them to disk yet.
        let gaps = {
            let pending = self
                .shared
                .pending_gaps
                .read()
                .unwrap_or_else(|e| e.into_inner());
            serde_json::to_string(&*pending).unwrap_or_else(|_| "[]".into())
        };
        let write = Write::RecordOpening {
            cohort_id: self.shared.id,
            count,
            gaps,
        };
        self.persist_step(write, move |act, ok| {
            let id = act.shared.id;
            if ok {
                let pending = act
                    .shared
                    .pending_gaps
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let pre = PreQueue::with_gaps(count, act.seed, &pending);
                let skipped = gap_overlap(pre.gaps(), 0, count);
                // The gaps before the order: a poll that sees the order sees them.
                *act.shared.gaps.write().unwrap_or_else(|e| e.into_inner()) = pre.gaps().to_vec();
                act.gap_ranges = pre.gaps().to_vec();
                let _ = act.shared.pre_queue.set(pre);
                // On disk the opening made them its `pre_queue_gaps`.
                act.ticket_gaps.clear();
                act.ticket_gaps_changed = false;
                act.open_due = false;
                log::info!(
                    "cohort {id} opened: {count} pre-queue tickets shuffled with seed {} \
                     ({skipped} numbers that are nobody taken as {} places)",
                    act.seed,
                    pending.len()
                );
            } else {
                log::error!("cohort {id}: could not record the opening; retrying");
            }
        })
    }

    /// Writes the numbers joins have taken since the last record, in one counter write, and
    /// settles them when it is done: on disk, or (if it failed) nobody. Joins that arrive
    /// meanwhile go into the next record, started as soon as this one returns.
    fn record_tickets(&mut self, ctx: &mut Context<Self>) {
        let before_opening = !self.shared.is_open_shuffled();
        if self.recording_tickets || before_opening && (self.step_in_flight || self.open_due) {
            // Asked again when the write on its way returns, or at the next tick.
            return;
        }
        self.shared.record_asked.store(false, Ordering::Release);
        // Joins that gave up waiting (`JOIN_DEADLINE`) were answered 503: nobody holds them.
        let abandoned: Vec<u64> = std::mem::take(
            &mut *self
                .shared
                .abandoned
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for seq in abandoned {
            self.nobody(seq, seq + 1);
        }
        let from = self.shared.durable.load(Ordering::Acquire);
        let upto = self.shared.next_seq.load(Ordering::Acquire);
        // Also with no new join: ranges found to be nobody must reach the disk (a failed
        // record's, until a record succeeds; this retries at every tick).
        if upto <= from && !self.ticket_gaps_changed {
            return;
        }
        self.recording_tickets = true;
        let gaps = self
            .ticket_gaps_changed
            .then(|| serde_json::to_string(&self.ticket_gaps).unwrap_or_else(|_| "[]".into()));
        let wrote_gaps = gaps.is_some();
        let write = Write::RecordTickets {
            cohort_id: self.shared.id,
            upto,
            gaps,
        };
        ctx.spawn(
            self.store
                .send(Persist(write))
                .into_actor(self)
                .map(move |res, act, ctx| {
                    act.recording_tickets = false;
                    if matches!(res, Ok(Ok(_))) {
                        if wrote_gaps {
                            act.ticket_gaps_changed = false;
                        }
                    } else {
                        log::error!(
                            "cohort {}: could not record {} joins; they were refused",
                            act.shared.id,
                            upto - from
                        );
                        act.nobody(from, upto);
                    }
                    act.shared.durable.store(upto, Ordering::Release);
                    act.shared.settled.notify_waiters();
                    act.record_tickets(ctx);
                }),
        );
    }

    /// Ticket numbers `from..upto` are nobody: positions skip them, admission jumps them, and
    /// the next record of tickets keeps them on disk.
    fn nobody(&mut self, from: u64, upto: u64) {
        self.shared
            .failed
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((from, upto));
        if self.shared.is_open_shuffled() {
            // After opening a number is its queue index.
            let mut gaps = self.shared.gaps.write().unwrap_or_else(|e| e.into_inner());
            *gaps = merge_gaps(gaps.iter().copied().chain([(from, upto)]));
            self.gap_ranges = merge_gaps(self.gap_ranges.iter().copied().chain([(from, upto)]));
        } else {
            let mut pending = self
                .shared
                .pending_gaps
                .write()
                .unwrap_or_else(|e| e.into_inner());
            *pending = merge_gaps(pending.iter().copied().chain([(from, upto)]));
        }
        self.ticket_gaps = merge_gaps(self.ticket_gaps.iter().copied().chain([(from, upto)]));
        self.ticket_gaps_changed = true;
    }

    /// Admits queue indices `from..upto`, of which `skipped` are in gaps: nobody, so they hold
    /// no place in reserve (nor, for simplicity, do the few holders of numbers handed out in the
    /// last tick before a crash, admitted with their gap).
    fn admit(
        &mut self,
        from: u64,
        upto: u64,
        skipped: u64,
        at_ms: i64,
    ) -> ResponseActFuture<Self, ()> {
        let people = self.shared.admitted_people() + (upto - from - skipped);
        let write = Write::RecordAdmission {
            cohort_id: self.shared.id,
            upto,
            people,
            at_ms,
        };
        self.persist_step(write, move |act, ok| {
            if ok {
                act.shared
                    .batches
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Batch { from, upto, at_ms });
                if skipped > 0 {
                    act.booked.insert(upto, skipped);
                }
                act.shared.admitted_people.store(people, Ordering::Release);
                act.shared.admitted_upto.store(upto, Ordering::Release);
            } else {
                // Nobody was told; the same tickets are admitted at a later tick.
                log::error!("cohort {}: could not record an admission", act.shared.id);
                act.tokens += (upto - from - skipped) as f64;
            }
        })
    }
}

impl Actor for CohortQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        if let Some(period) = self.settings.tick {
            ctx.run_interval(period, |act, ctx| {
                // The step first: an opening that is due goes before the next record.
                let write = act.step(crate::now_ms());
                act.record_tickets(ctx);
                if let Some(write) = write {
                    ctx.spawn(write);
                }
            });
        }
    }
}

impl Handler<Tick> for CohortQueue {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Tick, ctx: &mut Context<Self>) -> Self::Result {
        // The step first: an opening that is due goes before the next record. Then joins that
        // arrived while the opening was on its way, and gaps not yet on disk.
        let step = self.step(msg.now_ms);
        self.record_tickets(ctx);
        step.unwrap_or_else(|| Box::pin(fut::ready(())))
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
        let batches = self
            .shared
            .batches
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let i = batches.partition_point(|b| b.upto <= qidx);
        if let Some(b) = batches.get(i).filter(|b| b.from <= qidx) {
            *self.booked.entry(b.upto).or_default() += 1;
        }
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
