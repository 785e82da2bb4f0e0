//! `LeftoverLine`: one actor per vaccination center, the owner of the center's leftover doses
//! of the day and of its offer line, as `CenterInventory` owns its slots. It drives the line:
//! after a posting, a sign-up, a decline, an acceptance, when a held offer's hold ends, and on
//! a slow tick while it has leftovers (for what other nodes changed; on a shared database the
//! tick also reads whether another node posted some), it asks the store to
//! dispatch: lapse the offers held past their expiry and offer each dose neither booked nor
//! offered to the next waiting sign-up. What is offered is decided in that transaction, by
//! conditional updates (`db::leftovers`), so several nodes driving the same line never offer
//! one dose twice; an offer is on disk before anyone is told of it, and so survives a crash
//! with its expiry.
//!
//! What listings read (the day's leftovers and their doses left) is published in
//! `LeftoverShared`. None of it goes through the cohorts' waiting rooms.

use super::booking_store::{BookingStore, Persist, StoreError, Write, Written};
use super::center_inventory::{
    CenterInventory, ReleaseSecondDose, ReserveSecondDose, SecondDoseSettled,
};
use crate::db::leftovers::{
    AcceptOutcome, Dispatched, LeftoverRow, LeftoverWrite, LeftoverWritten, NewEntry, NewLeftover,
    SignUpOutcome,
};
use crate::db::models::{BookingRow, NewBookingRow, NewCitizenRow};
use crate::domain::booking::STATE_CONFIRMED;
use crate::domain::slot::{format_time, Refusal};
use actix::prelude::*;
use chrono::{FixedOffset, NaiveDate};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// While a center has leftovers, its line is dispatched at least this often: another node may
/// have signed someone up, or a cancelled booking given a dose back.
pub const TICK: Duration = Duration::from_secs(1);

/// How long the line leaves the database alone after a read of it failed.
const READ_BACKOFF: Duration = Duration::from_secs(10);

/// A center's leftovers as listings read them.
#[derive(Debug, Default)]
pub struct LeftoverShared {
    pub center_id: i32,
    leftovers: Mutex<Vec<LeftoverRow>>,
}

impl LeftoverShared {
    pub fn new(center_id: i32) -> Self {
        Self {
            center_id,
            leftovers: Mutex::default(),
        }
    }

    /// The leftovers of `day` still usable at `now` with doses left.
    pub fn open(&self, day: &str, now: i64) -> Vec<LeftoverRow> {
        self.leftovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.date == day && l.until() > now && l.remaining() > 0)
            .cloned()
            .collect()
    }

    /// Whether any leftovers of `day` are still usable at `now` (doses left or not: a held
    /// offer still has to lapse).
    fn live(&self, day: &str, now: i64) -> bool {
        self.leftovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|l| l.date == day && l.until() > now)
    }

    fn set(&self, rows: Vec<LeftoverRow>) {
        *self.leftovers.lock().unwrap_or_else(|e| e.into_inner()) = rows;
    }

    fn add(&self, row: LeftoverRow) {
        let mut list = self.leftovers.lock().unwrap_or_else(|e| e.into_inner());
        if !list.iter().any(|l| l.id == row.id) {
            list.push(row);
        }
    }
}

/// How the line runs.
#[derive(Clone)]
pub struct LineSettings {
    /// How long an offer is held (`OFFER_HOLD_SECONDS`).
    pub hold_s: u64,
    pub zone: FixedOffset,
    /// Dispatch on a timer (`TICK`, when a hold ends, and once at start); off in tests that
    /// drive the line (`Dispatch`, `DispatchAt`).
    pub tick: bool,
    /// Several nodes on one database: while this node knows of no leftovers at the center,
    /// the tick reads whether another node posted some (then the line runs here too, so that
    /// they are listed here within a second, and a hold lapses even if its node died).
    pub shared_db: Option<crate::db::DbPool>,
}

/// Doses usable today at this center until `until`.
#[derive(Message)]
#[rtype(result = "Result<LeftoverRow, StoreError>")]
pub struct PostLeftovers {
    pub vaccine: String,
    pub doses: i32,
    pub until: i64,
    pub now: i64,
}

/// A citizen signs up for this center and `centers` (this one among them, first).
#[derive(Message)]
#[rtype(result = "Result<SignUpOutcome, StoreError>")]
pub struct SignUp {
    pub entry: NewEntry,
    pub centers: Vec<i32>,
}

/// Run the line now: lapse what is due, offer what is free.
#[derive(Message)]
#[rtype(result = "Result<Dispatched, StoreError>")]
pub struct Dispatch;

/// Run the line as at `now_ms` (unix milliseconds), and keep that instant as the line's clock
/// (its day, its runs after postings, sign-ups and the like) until told another: for
/// schedules that drive time themselves, as `Tick` drives a queue's admission clock. A line
/// never told keeps the wall clock.
#[derive(Message)]
#[rtype(result = "Result<Dispatched, StoreError>")]
pub struct DispatchAt {
    pub now_ms: i64,
}

/// The sign-up ends; an offer it held at this center passes on at once.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct Leave {
    pub entry_id: i32,
}

/// The citizen takes the offer held at this center.
#[derive(Message)]
#[rtype(result = "Result<Accepted, AcceptError>")]
pub struct Accept {
    pub entry_id: i32,
    pub offer_slot_id: i32,
    pub vaccine: String,
    /// `HH:MM`: when the leftover dose is given from (the second dose's time is matched to it).
    pub start_time: String,
    pub interval_days: u32,
    pub citizen: NewCitizenRow,
    pub cohort_id: i32,
    pub ticket_seq: u64,
    pub now: i64,
}

#[derive(Debug, Clone)]
pub struct Accepted {
    pub booking: BookingRow,
    /// The booking the citizen held before, cancelled with this one's commit: its places
    /// are to be given back to its center.
    pub cancelled: Option<BookingRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptError {
    NoOffer,
    NoSecondDoseSlot,
    Store(StoreError),
}

pub struct LeftoverLine {
    shared: Arc<LeftoverShared>,
    store: Addr<BookingStore>,
    inventory: Addr<CenterInventory>,
    settings: LineSettings,
    /// The timer for the earliest hold's end.
    wake: Option<SpawnHandle>,
    /// A read of other nodes' leftovers is on its way (`LineSettings::shared_db`).
    reading: bool,
    /// After a failed read (the database unreachable) the next waits until then, so that
    /// these reads never crowd the pool the writer needs to reconnect.
    read_again_at: std::time::Instant,
    /// A dispatch is on its way to the writer. One at a time: asks that arrive meanwhile
    /// wait in `waiting` and are all answered by the next run, which starts after this one,
    /// so a slow writer or a database outage never piles up dispatches in its queue.
    running: bool,
    waiting: Vec<oneshot::Sender<Result<Dispatched, StoreError>>>,
    /// The instant a schedule last set (`DispatchAt`); `None`: the wall clock.
    driven_ms: Option<i64>,
}

impl LeftoverLine {
    pub fn new(
        shared: Arc<LeftoverShared>,
        store: Addr<BookingStore>,
        inventory: Addr<CenterInventory>,
        settings: LineSettings,
    ) -> Self {
        Self {
            shared,
            store,
            inventory,
            settings,
            wake: None,
            reading: false,
            read_again_at: std::time::Instant::now(),
            running: false,
            waiting: Vec::new(),
            driven_ms: None,
        }
    }

    /// Runs the line for everyone waiting for a run, unless one is on its way (its end starts
    /// the next).
    fn start_run(&mut self, ctx: &mut Context<Self>) {
        if self.running || self.waiting.is_empty() {
            return;
        }
        self.running = true;
        let waiting = std::mem::take(&mut self.waiting);
        ctx.spawn(self.run_line().map(move |res, act, ctx| {
            act.running = false;
            match &res {
                Err(e) => log::warn!("center {}: leftover line: {e}", act.shared.center_id),
                Ok(d) if d.more => ctx.notify(Dispatch),
                Ok(_) => {}
            }
            for tx in waiting {
                let _ = tx.send(res.clone());
            }
            act.start_run(ctx);
        }));
    }

    fn now_ms(&self) -> i64 {
        self.driven_ms.unwrap_or_else(crate::now_ms)
    }

    fn today(&self) -> NaiveDate {
        crate::domain::leftover::day_of(self.now_ms().div_euclid(1000), self.settings.zone)
    }

    fn dispatch_write(&self) -> Write {
        let now_ms = self.now_ms();
        Write::Leftover(LeftoverWrite::Dispatch {
            center_id: self.shared.center_id,
            day: self.today().to_string(),
            now: now_ms.div_euclid(1000),
            // Rounded up: an offer is held for the whole hold, never a fraction of a second less.
            expires_at: (now_ms + 999).div_euclid(1000) + self.settings.hold_s as i64,
        })
    }

    /// Publishes what a dispatch found and wakes up when the earliest hold ends.
    fn dispatched(&mut self, d: &Dispatched, ctx: &mut Context<Self>) {
        self.shared.set(d.leftovers.clone());
        for (entry, _, expires_at) in &d.offered {
            log::info!(
                "center {}: leftover dose offered to sign-up {entry} until {expires_at}",
                self.shared.center_id
            );
        }
        if let Some(old) = self.wake.take() {
            ctx.cancel_future(old);
        }
        if let (true, Some(at)) = (self.settings.tick, d.next_expiry) {
            let ms = (at * 1000 - crate::now_ms()).max(0) as u64;
            self.wake = Some(ctx.run_later(Duration::from_millis(ms), |act, ctx| {
                act.wake = None;
                ctx.notify(Dispatch);
            }));
        }
    }

    fn run_line(&self) -> impl ActorFuture<Self, Output = Result<Dispatched, StoreError>> {
        self.store
            .send(Persist(self.dispatch_write()))
            .into_actor(self)
            .map(|res, act, ctx| {
                let d = match res.map_err(|_| StoreError::Busy)?? {
                    Written::Leftover(LeftoverWritten::Dispatched(d)) => d,
                    other => {
                        return Err(StoreError::Commit(format!("unexpected answer {other:?}")))
                    }
                };
                act.dispatched(&d, ctx);
                Ok(d)
            })
    }
}

impl Actor for LeftoverLine {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        if self.settings.tick {
            // Offers held before a restart keep their expiry: the first dispatch reads them.
            // (A line without its timers runs only when told, on the clock it is told.)
            ctx.notify(Dispatch);
            ctx.run_interval(TICK, |act, ctx| {
                let today = act.today().to_string();
                let now = act.now_ms().div_euclid(1000);
                if act.shared.live(&today, now) {
                    ctx.notify(Dispatch);
                    return;
                }
                let Some(pool) = act.settings.shared_db.clone() else {
                    return;
                };
                if act.reading || std::time::Instant::now() < act.read_again_at {
                    return;
                }
                act.reading = true;
                let center = act.shared.center_id;
                let read = tokio::task::spawn_blocking(move || {
                    let mut conn = pool.get().ok()?;
                    crate::db::leftovers::center_leftovers(&mut conn.conn(), center, &today).ok()
                });
                ctx.spawn(read.into_actor(act).map(move |rows, act, ctx| {
                    act.reading = false;
                    let Some(rows) = rows.ok().flatten() else {
                        act.read_again_at = std::time::Instant::now() + READ_BACKOFF;
                        return;
                    };
                    if rows.iter().any(|l| l.until() > now) {
                        ctx.notify(Dispatch);
                    }
                }));
            });
        }
    }
}

impl Handler<Dispatch> for LeftoverLine {
    type Result = ResponseFuture<Result<Dispatched, StoreError>>;

    fn handle(&mut self, _: Dispatch, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.waiting.push(tx);
        self.start_run(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(StoreError::Busy)) })
    }
}

impl Handler<DispatchAt> for LeftoverLine {
    type Result = ResponseFuture<Result<Dispatched, StoreError>>;

    fn handle(&mut self, msg: DispatchAt, ctx: &mut Context<Self>) -> Self::Result {
        self.driven_ms = Some(msg.now_ms);
        <Self as Handler<Dispatch>>::handle(self, Dispatch, ctx)
    }
}

impl Handler<PostLeftovers> for LeftoverLine {
    type Result = ResponseActFuture<Self, Result<LeftoverRow, StoreError>>;

    fn handle(&mut self, msg: PostLeftovers, _: &mut Context<Self>) -> Self::Result {
        let zone = self.settings.zone;
        let at = |secs: i64| {
            chrono::DateTime::from_timestamp(secs, 0)
                .unwrap_or_default()
                .with_timezone(&zone)
        };
        let (now, until) = (at(msg.now), at(msg.until));
        let minutes = |t: chrono::DateTime<FixedOffset>| {
            use chrono::Timelike;
            (t.hour() * 60 + t.minute()) as u16
        };
        let new = NewLeftover {
            center_id: self.shared.center_id,
            vaccine: msg.vaccine,
            doses: msg.doses,
            until: msg.until,
            date: now.date_naive().to_string(),
            start_time: format_time(minutes(now)),
            end_time: format_time(minutes(until)),
        };
        Box::pin(
            self.store
                .send(Persist(Write::Leftover(LeftoverWrite::Post(new))))
                .into_actor(self)
                .map(|res, act, ctx| {
                    let row = match res.map_err(|_| StoreError::Busy)?? {
                        Written::Leftover(LeftoverWritten::Posted(row)) => row,
                        other => {
                            return Err(StoreError::Commit(format!("unexpected answer {other:?}")))
                        }
                    };
                    // Listed as soon as it is answered; the dispatch then offers it.
                    act.shared.add(row.clone());
                    ctx.notify(Dispatch);
                    Ok(row)
                }),
        )
    }
}

impl Handler<SignUp> for LeftoverLine {
    type Result = ResponseActFuture<Self, Result<SignUpOutcome, StoreError>>;

    fn handle(&mut self, msg: SignUp, _: &mut Context<Self>) -> Self::Result {
        let write = Write::Leftover(LeftoverWrite::SignUp {
            entry: msg.entry,
            centers: msg.centers,
        });
        Box::pin(
            self.store
                .send(Persist(write))
                .into_actor(self)
                .map(|res, _, ctx| match res.map_err(|_| StoreError::Busy)?? {
                    Written::Leftover(LeftoverWritten::SignedUp(outcome)) => {
                        ctx.notify(Dispatch);
                        Ok(outcome)
                    }
                    other => Err(StoreError::Commit(format!("unexpected answer {other:?}"))),
                }),
        )
    }
}

impl Handler<Leave> for LeftoverLine {
    type Result = ResponseActFuture<Self, Result<bool, StoreError>>;

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) -> Self::Result {
        let write = Write::Leftover(LeftoverWrite::Leave {
            entry_id: msg.entry_id,
        });
        Box::pin(
            self.store
                .send(Persist(write))
                .into_actor(self)
                .map(|res, _, ctx| {
                    match res.map_err(|_| StoreError::Busy)?? {
                        Written::Leftover(LeftoverWritten::Left(left, _)) => {
                            // The dose given back goes to the next in line at once.
                            ctx.notify(Dispatch);
                            Ok(left)
                        }
                        other => Err(StoreError::Commit(format!("unexpected answer {other:?}"))),
                    }
                }),
        )
    }
}

impl Handler<Accept> for LeftoverLine {
    type Result = ResponseActFuture<Self, Result<Accepted, AcceptError>>;

    fn handle(&mut self, msg: Accept, _: &mut Context<Self>) -> Self::Result {
        // The day of the instant the acceptance was checked at, as the hold was.
        let today = crate::domain::leftover::day_of(msg.now, self.settings.zone);
        let center_id = self.shared.center_id;
        let start = crate::domain::slot::parse_time("start_time", &msg.start_time).unwrap_or(0);
        let first_start = format_time(start);
        let inventory = self.inventory.clone();
        let reserve = ReserveSecondDose {
            vaccine: msg.vaccine.clone(),
            date: today,
            start,
            interval_days: msg.interval_days,
        };
        Box::pin(
            async move {
                let second = inventory
                    .send(reserve)
                    .await
                    .map_err(|_| AcceptError::Store(StoreError::Busy))?;
                second.map_err(|r| match r {
                    Refusal::NoSecondDoseSlot => AcceptError::NoSecondDoseSlot,
                    _ => AcceptError::NoSecondDoseSlot,
                })
            }
            .into_actor(self)
            .then(move |second, act, _| {
                let store = act.store.clone();
                let inventory = act.inventory.clone();
                async move {
                    let second = second?;
                    let booking = NewBookingRow {
                        code: crate::domain::booking::new_code(),
                        citizen_key: msg.citizen.key.clone(),
                        cohort_id: msg.cohort_id,
                        ticket_seq: msg.ticket_seq as i64,
                        vaccine: msg.vaccine,
                        center_id,
                        first_slot_id: msg.offer_slot_id,
                        first_date: today.to_string(),
                        first_start,
                        second_slot_id: second.id,
                        second_date: second.date.to_string(),
                        second_start: format_time(second.start),
                        state: STATE_CONFIRMED.to_string(),
                        idempotency_key: None,
                        created_at: msg.now,
                    };
                    let write = Write::Leftover(LeftoverWrite::Accept {
                        entry_id: msg.entry_id,
                        offer_slot_id: msg.offer_slot_id,
                        citizen: Box::new(msg.citizen),
                        booking: Box::new(booking),
                        now: msg.now,
                    });
                    let res = store.send(Persist(write)).await;
                    let outcome = match res {
                        Ok(Ok(Written::Leftover(LeftoverWritten::Accepted(o)))) => Ok(o),
                        Ok(Ok(other)) => {
                            Err(StoreError::Commit(format!("unexpected answer {other:?}")))
                        }
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(StoreError::Busy),
                    };
                    match outcome {
                        Ok(AcceptOutcome::Booked { booking, cancelled }) => {
                            inventory.do_send(SecondDoseSettled(second.id));
                            Ok(Accepted {
                                booking: *booking,
                                cancelled: cancelled.map(|b| *b),
                            })
                        }
                        Ok(AcceptOutcome::NoOffer) => {
                            inventory.do_send(ReleaseSecondDose(second.id));
                            Err(AcceptError::NoOffer)
                        }
                        Ok(AcceptOutcome::NoSecondDose) => {
                            inventory.do_send(ReleaseSecondDose(second.id));
                            Err(AcceptError::NoSecondDoseSlot)
                        }
                        Err(e) => {
                            inventory.do_send(ReleaseSecondDose(second.id));
                            Err(AcceptError::Store(e))
                        }
                    }
                }
                .into_actor(act)
            })
            .map(|res, _, ctx| {
                ctx.notify(Dispatch);
                res
            }),
        )
    }
}
