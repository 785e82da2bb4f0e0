//! `Rebooker`: drives the rebooking jobs (`db::rebooking`) to the end, one step at a time.
//! Each step is one write to the `BookingStore`, so it is group-committed with whatever the
//! citizens wrote meanwhile and never overbooks (the writer's conditional updates decide
//! every place). One step is in flight at a time: while it is on disk the citizens' writes
//! gather for the next transaction, which holds them and the next step together, so a job
//! never starves them and they never stop a job. A step is sized to take about `STEP_BUDGET`
//! (at most `STEP` bookings), which bounds what it adds to a citizen's commit on either
//! backend: a booking's move costs about 0.35 ms on SQLite and 1.5 ms on PostgreSQL (a round
//! trip a statement), and at 500 a step PostgreSQL's steps held every citizen's commit for
//! most of a second.
//!
//! The state of a job is on disk only (its row and its items): at start every `running` job
//! is resumed where its last committed step left it. After each step the centers holding the
//! slots it touched are told their places as on disk (`SyncPlaces`), so listings follow.

use super::booking_store::{BookingStore, Persist, StoreError, Write, Written};
use super::center_inventory::SyncPlaces;
use super::Registry;
use crate::db::rebooking::{self, JobRow, RebookWrite, RebookWritten, JOB_RUNNING};
use crate::db::DbPool;
use actix::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bookings per step at most.
pub const STEP: usize = 500;
/// Bookings per step at least.
const STEP_MIN: usize = 10;
/// How long a step should take in the writer: the next step's size is this over the last
/// step's time a booking.
const STEP_BUDGET: Duration = Duration::from_millis(150);
/// After a failed step (database down, writer busy), the wait before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often the jobs left running are looked for (at start, then this often).
const RESUME_EVERY: Duration = Duration::from_secs(5);

/// What `/metrics` shows of the jobs this node drives.
#[derive(Debug, Default)]
pub struct RebookMetrics {
    pub running: AtomicI64,
    pub moved: AtomicU64,
    pub unmovable: AtomicU64,
    pub steps: AtomicU64,
    pub failed_steps: AtomicU64,
}

pub struct Rebooker {
    pool: DbPool,
    store: Addr<BookingStore>,
    registry: Arc<Registry>,
    metrics: Arc<RebookMetrics>,
    /// Jobs to drive, in order; the first is stepped.
    jobs: VecDeque<i32>,
    stepping: bool,
    /// Per job: the counts last seen (to add the difference to the metrics).
    seen: HashMap<i32, (i64, i64)>,
    /// Bookings the next step asks for (see `STEP_BUDGET`).
    step_size: usize,
}

impl Rebooker {
    pub fn new(
        pool: DbPool,
        store: Addr<BookingStore>,
        registry: Arc<Registry>,
        metrics: Arc<RebookMetrics>,
    ) -> Self {
        Self {
            pool,
            store,
            registry,
            metrics,
            jobs: VecDeque::new(),
            stepping: false,
            seen: HashMap::new(),
            step_size: STEP_MIN * 5,
        }
    }

    fn add(&mut self, job: &JobRow, ctx: &mut Context<Self>) {
        if job.state != JOB_RUNNING || self.jobs.contains(&job.id) {
            return;
        }
        self.seen
            .entry(job.id)
            .or_insert((job.moved, job.unmovable));
        self.jobs.push_back(job.id);
        self.metrics
            .running
            .store(self.jobs.len() as i64, Ordering::Relaxed);
        if !self.stepping {
            self.step(ctx);
        }
    }

    fn step(&mut self, ctx: &mut Context<Self>) {
        let Some(&job_id) = self.jobs.front() else {
            self.stepping = false;
            return;
        };
        self.stepping = true;
        let write = Write::Rebook(RebookWrite::Step {
            job_id,
            n: self.step_size,
            now: crate::now_s(),
        });
        let answer = self
            .store
            .send(Persist(write))
            .into_actor(self)
            .map(move |res, act, ctx| {
                let outcome = match res {
                    Ok(Ok(Written::Rebook(RebookWritten::Stepped(s)))) => Ok(s),
                    Ok(Ok(other)) => Err(format!("unexpected answer {other:?}")),
                    Ok(Err(StoreError::Busy)) | Err(_) => Err("the writer is busy".into()),
                    Ok(Err(e)) => Err(e.to_string()),
                };
                match outcome {
                    Ok(stepped) => {
                        act.metrics.steps.fetch_add(1, Ordering::Relaxed);
                        act.step_size =
                            next_step_size(act.step_size, stepped.bookings, stepped.took);
                        let job = &stepped.job;
                        let (m, u) = act
                            .seen
                            .insert(job.id, (job.moved, job.unmovable))
                            .unwrap_or_default();
                        act.metrics
                            .moved
                            .fetch_add((job.moved - m).max(0) as u64, Ordering::Relaxed);
                        act.metrics
                            .unmovable
                            .fetch_add((job.unmovable - u).max(0) as u64, Ordering::Relaxed);
                        act.sync_places(stepped.slots);
                        if job.state != JOB_RUNNING {
                            log::info!(
                                "rebooking job {} done: {} moved, {} need rebooking",
                                job.id,
                                job.moved,
                                job.unmovable
                            );
                            act.jobs.retain(|id| *id != job.id);
                            act.seen.remove(&job.id);
                            act.metrics
                                .running
                                .store(act.jobs.len() as i64, Ordering::Relaxed);
                        }
                        // Let the mailbox (new jobs, and the store's answers) run between steps.
                        ctx.run_later(Duration::ZERO, |act, ctx| act.step(ctx));
                    }
                    Err(e) => {
                        act.metrics.failed_steps.fetch_add(1, Ordering::Relaxed);
                        log::warn!("rebooking job {job_id}: a step failed ({e}); trying again");
                        ctx.run_later(RETRY_AFTER, |act, ctx| act.step(ctx));
                    }
                }
            });
        ctx.spawn(answer);
    }

    /// Tells the centers the places of these slots as on disk now.
    fn sync_places(&self, slots: Vec<i32>) {
        if slots.is_empty() {
            return;
        }
        let pool = self.pool.clone();
        let registry = self.registry.clone();
        let asked_at = Instant::now();
        actix::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                let mut pooled = pool.get().map_err(|e| e.to_string())?;
                rebooking::places_of(&mut pooled.conn(), &slots).map_err(|e| e.to_string())
            })
            .await;
            let Ok(Ok(rows)) = read else {
                return;
            };
            let mut per_center: HashMap<i32, Vec<(i32, i64, i64)>> = HashMap::new();
            for (id, center, capacity, booked) in rows {
                per_center.entry(center).or_default().push((
                    id,
                    i64::from(capacity),
                    i64::from(booked),
                ));
            }
            for (center, places) in per_center {
                if let Some(c) = registry.center(center) {
                    c.addr.do_send(SyncPlaces(asked_at, places));
                }
            }
        });
    }
}

/// The size that makes a step like the last one take about `STEP_BUDGET`, growing at most
/// twofold a step (a first step's time is not the job's).
fn next_step_size(current: usize, bookings: usize, took: Duration) -> usize {
    if bookings == 0 {
        return current;
    }
    let per = took.as_secs_f64() / bookings as f64;
    let fits = if per > 0.0 {
        (STEP_BUDGET.as_secs_f64() / per) as usize
    } else {
        STEP
    };
    fits.min(current * 2).clamp(STEP_MIN, STEP)
}

impl Actor for Rebooker {
    type Context = Context<Self>;

    /// Resumes every job left running (by a crash, or by another node that stopped).
    fn started(&mut self, ctx: &mut Self::Context) {
        self.resume(ctx);
        // A job another node started and could not finish (it stopped) is taken up here too;
        // two nodes stepping one job take turns on its row (`db::rebooking::step`).
        ctx.run_interval(RESUME_EVERY, |act, ctx| act.resume(ctx));
    }
}

impl Rebooker {
    fn resume(&mut self, ctx: &mut Context<Self>) {
        let pool = self.pool.clone();
        let load = tokio::task::spawn_blocking(move || {
            let mut pooled = pool.get().map_err(|e| e.to_string())?;
            rebooking::running_jobs(&mut pooled.conn()).map_err(|e| e.to_string())
        });
        ctx.spawn(load.into_actor(self).map(|res, act, ctx| match res {
            Ok(Ok(jobs)) => {
                for job in &jobs {
                    if act.jobs.contains(&job.id) {
                        continue;
                    }
                    log::info!(
                        "resuming rebooking job {} ({} of {} done)",
                        job.id,
                        job.moved + job.unmovable,
                        job.total
                    );
                    act.add(job, ctx);
                }
            }
            Ok(Err(e)) => log::error!("cannot read the rebooking jobs to resume: {e}"),
            Err(e) => log::error!("cannot read the rebooking jobs to resume: {e}"),
        }));
    }
}

/// Drive this job (just created) to the end.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drive(pub JobRow);

impl Handler<Drive> for Rebooker {
    type Result = ();

    fn handle(&mut self, msg: Drive, ctx: &mut Context<Self>) {
        self.add(&msg.0, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_sized_to_its_budget_within_bounds() {
        let ms = Duration::from_millis;
        // 1.5 ms a booking (PostgreSQL): 100 fit in 150 ms.
        assert_eq!(next_step_size(100, 100, ms(150)), 100);
        assert_eq!(next_step_size(500, 500, ms(750)), 100);
        // Fast steps grow, but at most twofold, and never past STEP.
        assert_eq!(next_step_size(50, 50, ms(5)), 100);
        assert_eq!(next_step_size(400, 400, ms(40)), STEP);
        // A very slow step (a lock waited for) shrinks to STEP_MIN, not to nothing.
        assert_eq!(next_step_size(100, 100, Duration::from_secs(30)), STEP_MIN);
        // A step with nothing to do says nothing about the next.
        assert_eq!(next_step_size(80, 0, ms(1)), 80);
        assert_eq!(next_step_size(80, 10, Duration::ZERO), 160);
    }
}
