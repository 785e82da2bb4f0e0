//! `Notifier`: the sender of the outbox (API 1.1 "Notifications"). It owns nothing but its
//! in-flight deliveries: what is to be sent is in the database (`db::outbox`). Every 100 ms it
//! claims due messages under a lease (as many as the rate cap and the in-flight bound allow),
//! opens each phone number just before delivery, delivers through the provider, and records
//! the attempt: `sent` (each 100 ms's deliveries in one statement); or tried again after a
//! jittered exponential backoff; or `failed` once past the attempts or the age allowed. Delivery is at least once: a message whose outcome
//! was not recorded (a crash, a lost answer) is claimed again when its lease runs out, with
//! the same `id`, so the receiver can drop the repeat. Every minute it writes the reminders of
//! tomorrow's doses and forgets the phone numbers nobody needs any more. Its database work
//! runs on blocking threads through the pool, never through the booking writer.

use super::notify_provider::{NotifyProvider, Outgoing, ProviderFactory};
use crate::config::NotifySettings;
use crate::db::{outbox, DbPool};
use crate::domain::notification::{RateCap, REMINDER_FROM_HOUR};
use crate::domain::phone::PhoneKey;
use actix::prelude::*;
use chrono::{FixedOffset, Timelike};
use rand::Rng;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

const PUMP_EVERY: Duration = Duration::from_millis(100);
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);
const STATS_EVERY: Duration = Duration::from_secs(2);

/// What `/metrics` shows of the sender.
#[derive(Debug, Default)]
pub struct NotifierMetrics {
    /// Pending in the outbox (every node's), as last counted.
    pub queued: AtomicU64,
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
    /// Age of the oldest pending message, seconds, as last counted.
    pub oldest_pending_s: AtomicU64,
    pub in_flight: AtomicU64,
}

pub struct Notifier {
    pool: DbPool,
    node: String,
    key: PhoneKey,
    settings: NotifySettings,
    zone: FixedOffset,
    factory: Option<ProviderFactory>,
    provider: Option<Rc<dyn NotifyProvider>>,
    rate: RateCap,
    in_flight: usize,
    claiming: bool,
    /// Delivered since the last pump, to be recorded `sent` together.
    delivered: Vec<String>,
    metrics: Arc<NotifierMetrics>,
    /// Held by the `Application` (see `orphaned`).
    alive: Weak<()>,
}

impl Notifier {
    pub fn new(
        pool: DbPool,
        node: String,
        key: PhoneKey,
        settings: NotifySettings,
        zone: FixedOffset,
        factory: ProviderFactory,
        alive: Weak<()>,
    ) -> Self {
        let rate = RateCap::new(settings.rate_per_s, Instant::now());
        Self {
            pool,
            // Unique per process, so two processes given one NODE_NAME never share a lease.
            node: format!("{node}#{:08x}", rand::random::<u32>()),
            key,
            settings,
            zone,
            factory: Some(factory),
            provider: None,
            rate,
            in_flight: 0,
            claiming: false,
            delivered: Vec::new(),
            metrics: Arc::default(),
            alive,
        }
    }

    pub fn metrics(&self) -> Arc<NotifierMetrics> {
        self.metrics.clone()
    }

    /// The lease of a claim: longer than a delivery may take, so a live node's delivery never
    /// overlaps another node's of the same message.
    fn lease_ms(&self) -> i64 {
        self.settings.timeout_ms as i64 + 30_000
    }

    /// Records the deliveries of the last pump's interval in one statement, off the actor. A
    /// record lost to a crash means one more delivery after the lease, which at-least-once
    /// allows (the same `id`).
    fn record_delivered(&mut self) {
        if self.delivered.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.delivered);
        let pool = self.pool.clone();
        actix_web::rt::task::spawn_blocking(move || record_sent(&pool, &ids));
    }

    /// Whether the application that started it is still there: a test that builds a second
    /// application (a restart) keeps the first one's actors running on the same system, and a
    /// sender left behind would keep claiming from the same outbox every 100 ms for nothing.
    fn orphaned(&self, ctx: &mut Context<Self>) -> bool {
        if self.alive.upgrade().is_some() {
            return false;
        }
        ctx.stop();
        true
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.record_delivered();
        if self.claiming || self.orphaned(ctx) {
            return;
        }
        let room = self.settings.max_in_flight.saturating_sub(self.in_flight);
        if room == 0 {
            return;
        }
        let granted = self.rate.take(room, Instant::now());
        if granted == 0 {
            return;
        }
        self.claiming = true;
        let (pool, owner, lease) = (self.pool.clone(), self.node.clone(), self.lease_ms());
        let claim = actix_web::rt::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            outbox::claim(&mut conn.conn(), &owner, now_ms(), lease, granted as i64)
                .map_err(|e| e.to_string())
        });
        ctx.spawn(claim.into_actor(self).map(move |res, act, ctx| {
            act.claiming = false;
            let claimed = match res {
                Ok(Ok(claimed)) => claimed,
                Ok(Err(e)) => {
                    log::warn!("notifier: cannot claim messages: {e}");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
            act.rate.give_back(granted.saturating_sub(claimed.len()));
            for msg in claimed {
                act.start_delivery(msg, ctx);
            }
        }));
    }

    fn start_delivery(&mut self, msg: outbox::Claimed, ctx: &mut Context<Self>) {
        let Some(provider) = self.provider.clone() else {
            return;
        };
        self.in_flight += 1;
        self.metrics
            .in_flight
            .store(self.in_flight as u64, Ordering::Relaxed);
        let to = msg.to_sealed.as_deref().and_then(|s| self.key.open(s));
        let timeout = Duration::from_millis(self.settings.timeout_ms.max(1));
        let outcome: futures_util::future::LocalBoxFuture<'static, Result<(), Option<String>>> =
            match to {
                // Nobody to send to (a session from before phones were kept, or a key changed):
                // retrying cannot help.
                None => Box::pin(async { Err(None) }),
                Some(to) => {
                    let out = Outgoing {
                        id: msg.id.clone(),
                        kind: msg.kind.clone(),
                        booking_code: msg.booking_code.clone(),
                        to,
                        text: msg.body.clone(),
                        created_at: crate::domain::cohort::format_instant(
                            msg.created_at,
                            self.zone,
                        ),
                    };
                    let delivery = provider.deliver(out);
                    Box::pin(async move {
                        match tokio::time::timeout(timeout, delivery).await {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(e)) => Err(Some(e)),
                            Err(_) => Err(Some("timed out".to_string())),
                        }
                    })
                }
            };
        ctx.spawn(outcome.into_actor(self).map(move |result, act, _| {
            let attempts = msg.attempts as u32 + 1;
            let age = Duration::from_secs((crate::now_s() - msg.created_at).max(0) as u64);
            let rules = act.settings.retry;
            let (pool, owner, id) = (act.pool.clone(), act.node.clone(), msg.id.clone());
            let m = act.metrics.clone();
            let record: Record = match result {
                Ok(()) => {
                    m.sent.fetch_add(1, Ordering::Relaxed);
                    act.delivered.push(id);
                    act.in_flight -= 1;
                    act.metrics
                        .in_flight
                        .store(act.in_flight as u64, Ordering::Relaxed);
                    return;
                }
                Err(reason) if reason.is_none() || rules.gives_up(attempts, age) => {
                    log::warn!(
                        "notification {id} failed for good after {attempts} attempts: {}",
                        reason.as_deref().unwrap_or("no phone number to send to")
                    );
                    m.failed.fetch_add(1, Ordering::Relaxed);
                    Box::new(move |c| outbox::give_up(c, &id, &owner, now_ms()))
                }
                Err(reason) => {
                    let wait = rules.backoff(attempts, rand::thread_rng().gen());
                    log::info!(
                        "notification {id}: attempt {attempts} failed ({}), next in {} ms",
                        reason.unwrap_or_default(),
                        wait.as_millis()
                    );
                    m.retries.fetch_add(1, Ordering::Relaxed);
                    let next = now_ms() + wait.as_millis() as i64;
                    Box::new(move |c| outbox::retry_later(c, &id, &owner, next))
                }
            };
            // Recorded off the actor; the in-flight place is freed at once (a lost record
            // means one more delivery after the lease, which at-least-once allows).
            actix_web::rt::task::spawn_blocking(move || {
                if let Err(e) = pool
                    .get()
                    .map_err(|e| e.to_string())
                    .and_then(|mut c| record(&mut c.conn()).map_err(|e| e.to_string()))
                {
                    log::warn!("notifier: cannot record an attempt: {e}");
                }
            });
            act.in_flight -= 1;
            act.metrics
                .in_flight
                .store(act.in_flight as u64, Ordering::Relaxed);
        }));
    }

    fn housekeeping(&mut self) {
        let (pool, zone) = (self.pool.clone(), self.zone);
        actix_web::rt::task::spawn_blocking(move || {
            let now = chrono::Utc::now().with_timezone(&zone);
            let today = now.date_naive();
            let Ok(mut conn) = pool.get() else { return };
            let conn = &mut conn.conn();
            if now.hour() >= REMINDER_FROM_HOUR {
                let tomorrow = (today + chrono::Days::new(1)).to_string();
                if let Err(e) = outbox::scan_reminders(conn, &tomorrow, crate::now_s()) {
                    log::warn!("notifier: reminders not written: {e}");
                }
            }
            if let Err(e) = outbox::forget_phones(conn, &today.to_string()) {
                log::warn!("notifier: phone numbers not forgotten: {e}");
            }
        });
    }

    fn count(&mut self) {
        let (pool, m) = (self.pool.clone(), self.metrics.clone());
        actix_web::rt::task::spawn_blocking(move || {
            let Ok(mut conn) = pool.get() else { return };
            if let Ok((n, oldest)) = outbox::pending_stats(&mut conn.conn()) {
                m.queued.store(n.max(0) as u64, Ordering::Relaxed);
                let age = oldest.map_or(0, |t| (crate::now_s() - t).max(0) as u64);
                m.oldest_pending_s.store(age, Ordering::Relaxed);
            }
        });
    }
}

fn record_sent(pool: &DbPool, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = pool.get().map_err(|e| e.to_string()).and_then(|mut c| {
        outbox::sent_many(&mut c.conn(), ids, now_ms()).map_err(|e| e.to_string())
    }) {
        log::warn!("notifier: cannot record {} deliveries: {e}", ids.len());
    }
}

/// How one attempt's outcome is written, on a blocking thread.
type Record = Box<dyn FnOnce(&mut crate::db::Conn) -> Result<bool, diesel::result::Error> + Send>;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Actor for Notifier {
    type Context = Context<Self>;

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        // On this thread: the system may be stopping, its runtime (and blocking pool) gone.
        record_sent(&self.pool, &std::mem::take(&mut self.delivered));
        Running::Stop
    }

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(factory) = self.factory.take() {
            self.provider = Some(factory());
        }
        ctx.run_interval(PUMP_EVERY, |act, ctx| act.pump(ctx));
        ctx.run_interval(STATS_EVERY, |act, ctx| {
            if !act.orphaned(ctx) {
                act.count();
            }
        });
        act_now_and_every(ctx, HOUSEKEEPING_EVERY);
    }
}

fn act_now_and_every(ctx: &mut Context<Notifier>, every: Duration) {
    ctx.run_later(Duration::from_millis(500), |act, _| act.housekeeping());
    ctx.run_interval(every, |act, _| act.housekeeping());
}

/// Runs the housekeeping now (tests).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Housekeep;

impl Handler<Housekeep> for Notifier {
    type Result = ();

    fn handle(&mut self, _: Housekeep, _: &mut Context<Self>) {
        self.housekeeping();
    }
}
