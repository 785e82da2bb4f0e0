//! `SharedLimits`: on a database several nodes share, the owner of the counts of the limits
//! that hold across nodes (checks per identity and per pass, lookups per client). It counts
//! like the `BookingStore` commits: every attempt that arrived while the last statement was
//! on its way goes into the next one, so a rush of verifications costs the database a few
//! statements a second, not one each (one each halved the bookings a node made on two cores:
//! BENCHMARKS.md, "A cluster"). Attempts within one statement are decided in arrival order,
//! as if counted one at a time; those past a limit are taken back in the same round.

use crate::db::{queries, DbPool};
use actix::prelude::*;
use std::collections::HashMap;
use tokio::sync::oneshot;

/// Attempts counted in one statement at most.
const MAX_BATCH: usize = 1024;

/// One attempt against each limit `(key, window_s, allowed)` at `now_s`: the seconds to wait
/// if past one (then nothing of it is counted).
#[derive(Message)]
#[rtype(result = "Result<Option<u64>, String>")]
pub struct Attempt {
    pub limits: Vec<(String, i64, i64)>,
    pub now_s: i64,
}

/// Takes back an attempt that never reached the provider.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Refund {
    pub limits: Vec<(String, i64, i64)>,
    pub now_s: i64,
}

type Reply = oneshot::Sender<Result<Option<u64>, String>>;

pub struct SharedLimits {
    pool: DbPool,
    pending: Vec<(Attempt, Reply)>,
    flushing: bool,
}

impl SharedLimits {
    pub fn new(pool: DbPool) -> Self {
        Self {
            pool,
            pending: Vec::new(),
            flushing: false,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.pending.is_empty() {
            self.flushing = false;
            return;
        }
        self.flushing = true;
        let take = self.pending.len().min(MAX_BATCH);
        let (attempts, replies): (Vec<Attempt>, Vec<Reply>) = self.pending.drain(..take).unzip();
        let pool = self.pool.clone();
        let job = tokio::task::spawn_blocking(move || count(&pool, &attempts));
        ctx.spawn(job.into_actor(self).map(move |joined, act, ctx| {
            match joined.unwrap_or_else(|e| Err(e.to_string())) {
                Ok(waits) => {
                    for (reply, wait) in replies.into_iter().zip(waits) {
                        let _ = reply.send(Ok(wait));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            act.flush(ctx);
        }));
    }
}

/// A limit's window: where the current one starts, and its length.
fn window(now_s: i64, len: i64) -> (i64, i64) {
    let len = len.max(1);
    (now_s - now_s.rem_euclid(len), len)
}

/// Counts a batch of attempts in one statement and decides each in order: an attempt sees
/// the count as it was after the attempts before it in the batch, and one past a limit is
/// taken back (with one more statement, only then).
fn count(pool: &DbPool, attempts: &[Attempt]) -> Result<Vec<Option<u64>>, String> {
    // Per (key, window start): the window's length and how many attempts of the batch.
    let mut rows: HashMap<(String, i64), (i64, i64)> = HashMap::new();
    for a in attempts {
        for (key, len, _) in &a.limits {
            let (start, len) = window(a.now_s, *len);
            rows.entry((key.clone(), start)).or_insert((len, 0)).1 += 1;
        }
    }
    let rows: Vec<(String, i64, i64, i64)> = rows
        .into_iter()
        .map(|((key, start), (len, n))| (key, start, len, n))
        .collect();
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    let counted = queries::count_attempts(&mut conn.conn(), &rows).map_err(|e| e.to_string())?;
    // The count before this batch, per (key, start), and the window before's.
    let mut seen: HashMap<(String, i64), (i64, i64)> = HashMap::new();
    for ((key, start, _, n), (after, before)) in rows.iter().zip(&counted) {
        seen.insert((key.clone(), *start), (after - n, *before));
    }
    let mut waits = Vec::with_capacity(attempts.len());
    let mut refunds: Vec<(String, i64, i64)> = Vec::new();
    for a in attempts {
        let mut wait: Option<u64> = None;
        let mut mine = Vec::new();
        for (key, len, allowed) in &a.limits {
            let (start, len) = window(a.now_s, *len);
            let Some((so_far, before)) = seen.get_mut(&(key.clone(), start)) else {
                continue;
            };
            *so_far += 1;
            mine.push((key.clone(), start));
            let overlap = 1.0 - (a.now_s - start) as f64 / len as f64;
            if *before as f64 * overlap + *so_far as f64 > *allowed as f64 {
                let left = (len - (a.now_s - start)).max(1) as u64;
                wait = Some(wait.map_or(left, |w| w.max(left)));
            }
        }
        if wait.is_some() {
            // Past a limit: this attempt is not counted, and the ones after it see that.
            for k in mine {
                if let Some(entry) = seen.get_mut(&k) {
                    entry.0 -= 1;
                }
                refunds.push((k.0, k.1, 1));
            }
        }
        waits.push(wait);
    }
    if !refunds.is_empty() {
        queries::take_back_attempts(&mut conn.conn(), &refunds).map_err(|e| e.to_string())?;
    }
    Ok(waits)
}

impl Actor for SharedLimits {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(8192);
    }
}

impl Handler<Attempt> for SharedLimits {
    type Result = ResponseFuture<Result<Option<u64>, String>>;

    fn handle(&mut self, msg: Attempt, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.pending.push((msg, tx));
        if !self.flushing {
            self.flush(ctx);
        }
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err("the shared limits stopped".into()))
        })
    }
}

impl Handler<Refund> for SharedLimits {
    type Result = ();

    fn handle(&mut self, msg: Refund, _: &mut Context<Self>) {
        let rows: Vec<(String, i64, i64)> = msg
            .limits
            .iter()
            .map(|(key, len, _)| (key.clone(), window(msg.now_s, *len).0, 1))
            .collect();
        let pool = self.pool.clone();
        // Off the actor's thread; a lost refund only leaves one attempt counted.
        tokio::task::spawn_blocking(move || {
            if let Ok(mut conn) = pool.get() {
                let _ = queries::take_back_attempts(&mut conn.conn(), &rows);
            }
        });
    }
}
