//! A seeded simulation of absent tickets (`ABSENT_AFTER_SECONDS`): one open cohort, and for
//! some seeds a pre-queue cohort that opens later, driven by a random schedule drawn from one
//! seed — joins of a few tickets, admission ticks of 100 ms to 2 s of simulated time, jumps
//! longer than `absent_after_s` (the server ticks before anyone polls), and restarts on the same
//! database — while each ticket follows a behaviour of its own: it polls as told, polls late,
//! stops polling for good, or stops and comes back. The harness records every poll and every
//! move of the front, and checks after every step:
//!
//! - **C1 no FIFO inversion**: a ticket present (heard from within `absent_after_s`, at the
//!   node now serving) when the front reaches it is admitted, never passed over; a node that has
//!   not listened that long passes nobody over.
//! - **C2 no place lost by a returning ticket**: a passed-over ticket that polls again is told
//!   position 1 (or admitted), and is admitted once the return clock had room for it and for
//!   every return competing with it; an answered ticket always has a place.
//! - **C3 positions never grow** between two polls of a waiting ticket; a ticket with a place
//!   never falls back to the pre-queue.
//! - **C4 the rate is spent on present tickets only**: the people admitted never exceed what the
//!   admission clock allows (ticks clipped to its window), whatever the number passed over; a
//!   ticket absent when the front reaches it (at a node that can tell) is passed, not admitted.
//! - **C5 nobody admitted twice, nobody from nowhere**: the people admitted are exactly the
//!   tickets the front admitted, never more than joined; a ticket seen admitted never waits
//!   again (only `Expired` after its pass).
//!
//! `every_check_catches_a_fault_planted_in_the_harness` plants a harness-side mistake for each
//! check and requires that check to report it. Environment: `ABSENCE_SEEDS` (default 250, about 50 s in debug),
//! `ABSENCE_SEED` (replay one seed).

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reservation::actors::cohort_queue::{CohortHandle, Tick, RETURN_SHARE};
use reservation::actors::identity_pool::SimulatedProvider;
use reservation::domain::cohort::NewCohort;
use reservation::domain::queue::TicketState;
use reservation::domain::slot::{NewCenter, NewSlot};
use reservation::startup::{AppState, Application};
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The harness believes a ticket that stopped polling still polls.
    PhantomPoll,
    /// The harness loses every poll of some tickets.
    ForgottenPoll,
    /// The harness misreads a returning ticket's position.
    ShiftedReturnPosition,
    /// The harness's return clock runs twenty times too fast.
    FastReturnClock,
    /// The harness records half of a waiting ticket's position.
    UnderRecordedPosition,
    /// The harness allows half the admission rate.
    HalfRate,
    /// The harness takes a waiting ticket for admitted.
    PhantomAdmission,
}

impl Fault {
    const ALL: [Fault; 7] = [
        Fault::PhantomPoll,
        Fault::ForgottenPoll,
        Fault::ShiftedReturnPosition,
        Fault::FastReturnClock,
        Fault::UnderRecordedPosition,
        Fault::HalfRate,
        Fault::PhantomAdmission,
    ];

    fn caught_by(self) -> &'static str {
        match self {
            Fault::PhantomPoll => "C1",
            Fault::ShiftedReturnPosition | Fault::FastReturnClock => "C2",
            Fault::UnderRecordedPosition => "C3",
            Fault::ForgottenPoll | Fault::HalfRate => "C4",
            Fault::PhantomAdmission => "C5",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Prompt,
    /// Waits this many times what it is told.
    Late(f64),
    /// Stops polling for good at this time.
    Quits(i64),
    /// Polls nothing between these two times.
    Away(i64, i64),
}

/// A passed-over ticket that polled again.
struct Back {
    /// Return capacity (admissions' worth of the return clock) since it asked at this node.
    cap: f64,
    /// Returns it may have to let go first (itself included).
    competitors: f64,
    /// It polled at the node now serving since it came back (a restart forgets the ask).
    asked_here: bool,
}

struct Ticket {
    seq: u64,
    qidx: Option<u64>,
    behaviour: Behaviour,
    /// Its last poll at the node now serving.
    last_poll_ms: Option<i64>,
    next_poll_ms: i64,
    position: Option<u64>,
    admitted_seen: bool,
    crossed: bool,
    passed: bool,
    back: Option<Back>,
}

struct CohortSim {
    name: &'static str,
    id: i32,
    handle: CohortHandle,
    rate: f64,
    tickets: Vec<Ticket>,
    /// The node's first tick (its `born_ms`) and last one.
    born_ms: Option<i64>,
    last_tick_ms: Option<i64>,
    /// People the admission clock allowed so far, over every node.
    allowance: f64,
    returns_seen: u64,
}

struct Run {
    seed: u64,
    fault: Option<Fault>,
    rng: ChaCha8Rng,
    absent_ms: i64,
    now: i64,
    log: VecDeque<String>,
    violations: Vec<String>,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

async fn build(
    dir: &Arc<tempfile::TempDir>,
    db: &reservation::db::Backend,
    absent_s: u64,
) -> Application {
    let mut config = common::test_config(db.clone());
    config.workers = 1;
    config.absent_after_s = absent_s;
    let provider = Arc::new(SimulatedProvider {
        latency_ms: 1,
        failure_rate: 0.0,
    });
    let _ = dir;
    Application::build_with(config, provider, false)
        .await
        .unwrap()
}

async fn new_cohort(state: &AppState, opens_at: i64, rate: f64) -> CohortHandle {
    let c = NewCohort {
        name: "c".into(),
        birth_year_from: 1960,
        birth_year_to: 1970,
        opens_at,
        closes_at: opens_at + 86_400 * 10,
        vaccine: "Moderna".into(),
        dose_interval_days: 28,
        admission_rate_per_s: rate,
        birth_day_schedule: Vec::new(),
        join_difficulty: 0,
    };
    state.create_cohort(c).await.unwrap()
}

async fn supply(state: &AppState) {
    let center = state
        .create_center(NewCenter {
            name: "c".into(),
            region: "서울".into(),
            address: "a".into(),
        })
        .await
        .unwrap();
    let today = chrono::Utc::now()
        .with_timezone(&reservation::config::seoul())
        .date_naive();
    let slots = [1u64, 29]
        .iter()
        .map(|d| NewSlot {
            date: today + chrono::Days::new(*d),
            start: 600,
            end: 660,
            capacity: 100_000,
            vaccine: "Moderna".into(),
        })
        .collect();
    state.add_slots(&center, slots).await.unwrap();
}

impl Run {
    fn note(&mut self, s: String) {
        if self.log.len() == 400 {
            self.log.pop_front();
        }
        self.log.push_back(format!("t+{:>7} {s}", self.now));
    }

    fn present(&self, t: &Ticket) -> bool {
        t.last_poll_ms
            .is_some_and(|p| p.div_euclid(1000) >= (self.now - self.absent_ms).div_euclid(1000))
    }

    fn tells_absent(&self, c: &CohortSim) -> bool {
        c.born_ms.is_some_and(|b| self.now - b >= self.absent_ms)
    }

    fn next_poll(&mut self, b: Behaviour, after_s: u64) -> i64 {
        let base = after_s as i64 * 1000;
        match b {
            Behaviour::Prompt => self.now + base,
            Behaviour::Late(f) => self.now + (base as f64 * f) as i64,
            Behaviour::Quits(at) if self.now + base >= at => i64::MAX,
            Behaviour::Quits(_) => self.now + base,
            Behaviour::Away(from, until) => {
                let n = self.now + base;
                if n >= from && n < until {
                    until
                } else {
                    n
                }
            }
        }
    }

    /// Ticket `i` polls now; its answer is checked against what it was told before.
    fn poll(&mut self, c: &mut CohortSim, i: usize, planned: bool) {
        let now = self.now;
        let seq = c.tickets[i].seq;
        let s = c.handle.shared.status(seq, now);
        let forgotten = self.fault == Some(Fault::ForgottenPoll) && seq % 3 == 1;
        let outstanding = c
            .tickets
            .iter()
            .filter(|t| t.back.is_some() && !t.admitted_seen)
            .count() as f64;
        let t = &mut c.tickets[i];
        if !forgotten {
            t.last_poll_ms = Some(now);
        }
        let mut v = Vec::new();
        match s.state {
            TicketState::Admitted | TicketState::Expired => {
                if !t.admitted_seen && t.back.is_some() {
                    c.returns_seen += 1;
                }
                t.admitted_seen = true;
            }
            TicketState::Waiting => {
                let mut p = s.position.unwrap_or(0);
                if t.admitted_seen {
                    v.push(format!(
                        "C5 {} ticket {seq} admitted, then waiting again: {s:?}",
                        c.name
                    ));
                }
                if t.passed {
                    if self.fault == Some(Fault::ShiftedReturnPosition) {
                        p += 1;
                    }
                    if p != 1 {
                        v.push(format!(
                            "C2 {} ticket {seq} passed over and back is told position {p}",
                            c.name
                        ));
                    }
                    match &mut t.back {
                        Some(b) => b.asked_here = true,
                        None => {
                            t.back = Some(Back {
                                cap: 0.0,
                                competitors: outstanding + 1.0,
                                asked_here: true,
                            });
                            for o in c
                                .tickets
                                .iter_mut()
                                .filter(|o| o.back.is_some() && !o.admitted_seen)
                            {
                                if o.seq != seq {
                                    o.back.as_mut().unwrap().competitors += 1.0;
                                }
                            }
                        }
                    }
                } else {
                    if let Some(prev) = t.position {
                        if p > prev {
                            v.push(format!(
                                "C3 {} ticket {seq} position grew {prev} -> {p}",
                                c.name
                            ));
                        }
                    }
                    t.position = Some(p);
                    if self.fault == Some(Fault::UnderRecordedPosition) && p >= 4 {
                        t.position = Some(p / 2);
                    }
                    if self.fault == Some(Fault::PhantomAdmission) && seq % 7 == 3 && p > 2 {
                        t.admitted_seen = true;
                    }
                }
            }
            TicketState::PreQueue => {
                if t.qidx.is_some() || t.admitted_seen {
                    v.push(format!(
                        "C3 {} ticket {seq} with a place is back in the pre-queue",
                        c.name
                    ));
                }
            }
            _ => v.push(format!(
                "C5 {} ticket {seq} unexpected answer {s:?}",
                c.name
            )),
        }
        let t = &c.tickets[i];
        let b = t.behaviour;
        if planned {
            let n = self.next_poll(b, s.poll_after_seconds.max(1));
            c.tickets[i].next_poll_ms = n;
        }
        self.note(format!(
            "poll {} #{seq} {:?} pos {:?} after {}s{}",
            c.name,
            s.state,
            s.position,
            s.poll_after_seconds,
            if s.returning { " returning" } else { "" }
        ));
        self.violations.extend(v);
    }

    fn polls(&mut self, c: &mut CohortSim) {
        for i in 0..c.tickets.len() {
            let t = &c.tickets[i];
            if t.next_poll_ms <= self.now {
                self.poll(c, i, true);
            } else if self.fault == Some(Fault::PhantomPoll)
                && matches!(t.behaviour, Behaviour::Quits(_))
                && t.next_poll_ms == i64::MAX
            {
                c.tickets[i].last_poll_ms = Some(self.now);
            }
        }
    }

    async fn join(&mut self, c: &mut CohortSim) {
        let seq = c.handle.take_ticket().await.unwrap();
        let behaviour = match self.rng.gen_range(0..4) {
            0 => Behaviour::Prompt,
            1 => Behaviour::Late(self.rng.gen_range(1.2..3.0)),
            2 => Behaviour::Quits(self.now + self.rng.gen_range(0..20_000)),
            _ => {
                let from = self.now + self.rng.gen_range(0..10_000);
                let away = (self.absent_ms as f64 * self.rng.gen_range(1.2..4.0)) as i64;
                Behaviour::Away(from, from + away)
            }
        };
        c.tickets.push(Ticket {
            seq,
            qidx: None,
            behaviour,
            last_poll_ms: None,
            next_poll_ms: self.now,
            position: None,
            admitted_seen: false,
            crossed: false,
            passed: false,
            back: None,
        });
        self.note(format!("join {} #{seq} {behaviour:?}", c.name));
        self.places(c);
        let i = c.tickets.len() - 1;
        self.poll(c, i, true);
    }

    /// Every answered ticket has a place once the queue is open (read without a poll).
    fn places(&mut self, c: &mut CohortSim) {
        if !c.handle.shared.is_open_shuffled() {
            return;
        }
        for t in c.tickets.iter_mut().filter(|t| t.qidx.is_none()) {
            t.qidx = c.handle.shared.booking_place(t.seq);
            t.position = None;
            if t.qidx.is_none() {
                self.violations.push(format!(
                    "C2 {} answered ticket {} has no place",
                    c.name, t.seq
                ));
            }
        }
    }

    async fn tick(&mut self, c: &mut CohortSim) {
        let now = self.now;
        let was_open = c.handle.shared.is_open_shuffled();
        c.born_ms.get_or_insert(now);
        c.handle.addr.send(Tick { now_ms: now }).await.unwrap();
        let dt = c.last_tick_ms.map(|l| now - l);
        c.last_tick_ms = Some(now);
        if let (true, Some(dt)) = (was_open, dt) {
            let rate = if self.fault == Some(Fault::HalfRate) {
                c.rate / 2.0
            } else {
                c.rate
            };
            let window = 250f64.max(1000.0 / c.rate);
            c.allowance += (dt as f64).min(window) * rate / 1000.0;
            let r_rate = (c.rate * RETURN_SHARE).max(1.0);
            let r_window = 250f64.max(1000.0 / r_rate);
            let speed = if self.fault == Some(Fault::FastReturnClock) {
                20.0
            } else {
                1.0
            };
            for b in c.tickets.iter_mut().filter_map(|t| t.back.as_mut()) {
                if b.asked_here {
                    b.cap += (dt as f64).min(r_window) * r_rate / 1000.0 * speed;
                }
            }
        }
        self.places(c);
        let front = c.handle.shared.admitted();
        let tells = self.tells_absent(c);
        let mut crossed = Vec::new();
        for i in 0..c.tickets.len() {
            let t = &c.tickets[i];
            let Some(q) = t.qidx else { continue };
            if t.crossed || q >= front {
                continue;
            }
            let passed = c.handle.shared.booking_place(t.seq).is_none();
            let present = self.present(t);
            let seq = t.seq;
            if passed && (present || !tells) {
                self.violations.push(format!(
                    "C1 {} ticket {seq} passed over though {}",
                    c.name,
                    if present {
                        "present"
                    } else {
                        "the node cannot tell the absent yet"
                    }
                ));
            }
            if !passed && !present && tells {
                self.violations.push(format!(
                    "C4 {} ticket {seq} absent but admitted, spending the rate",
                    c.name
                ));
            }
            let t = &mut c.tickets[i];
            t.crossed = true;
            t.passed = passed;
            crossed.push(format!("{seq}{}", if passed { "p" } else { "" }));
        }
        let people = c.handle.shared.admitted_people();
        self.note(format!(
            "tick {} front {front} people {people} allowance {:.1} crossed {crossed:?}",
            c.name, c.allowance
        ));
        // Returns that had room on the return clock are admitted by now.
        for i in 0..c.tickets.len() {
            let t = &c.tickets[i];
            let late = t
                .back
                .as_ref()
                .is_some_and(|b| !t.admitted_seen && b.cap >= b.competitors + 3.0);
            if late {
                self.poll(c, i, false);
                let t = &c.tickets[i];
                if !t.admitted_seen {
                    let b = t.back.as_ref().unwrap();
                    self.violations.push(format!(
                        "C2 {} returning ticket {} not admitted after room for {:.1} returns ({:.0} competing)",
                        c.name, t.seq, b.cap, b.competitors
                    ));
                }
            }
        }
    }

    fn check_counts(&mut self, c: &CohortSim) {
        let people = c.handle.shared.admitted_people();
        let joined = c.tickets.len() as u64;
        if people as f64 > c.allowance + 2.0 {
            self.violations.push(format!(
                "C4 {} {people} admitted where the clock allowed {:.1}",
                c.name, c.allowance
            ));
        }
        let front_admitted = c.tickets.iter().filter(|t| t.crossed && !t.passed).count() as u64;
        if people != front_admitted {
            self.violations.push(format!(
                "C5 {} {people} people admitted, the front admitted {front_admitted} tickets",
                c.name
            ));
        }
        if people + c.returns_seen > joined {
            self.violations.push(format!(
                "C5 {} {people} admitted and {} returned of {joined} joined",
                c.name, c.returns_seen
            ));
        }
    }
}

struct Failure {
    seed: u64,
    step: usize,
    violations: Vec<String>,
    log: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} step {} (replay: ABSENCE_SEED={}):",
            self.seed, self.step, self.seed
        )?;
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        writeln!(f, "last steps:")?;
        for l in &self.log {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

async fn run_seed(seed: u64, fault: Option<Fault>) -> Result<(), Failure> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let absent_s = [4u64, 6, 8][rng.gen_range(0..3)];
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let db = common::fresh_database(dir.path());
    let mut apps = vec![build(&dir, &db, absent_s).await];
    let state = apps[0].state();
    supply(&state).await;
    let start = reservation::now_ms();
    let mut run = Run {
        seed,
        fault,
        rng,
        absent_ms: absent_s as i64 * 1000,
        now: start,
        log: VecDeque::new(),
        violations: Vec::new(),
    };
    let mut cohorts = Vec::new();
    let rate = [1.0, 2.0, 4.0, 10.0][run.rng.gen_range(0..4)];
    let handle = new_cohort(&state, start / 1000 - 60, rate).await;
    cohorts.push(CohortSim {
        name: "open",
        id: handle.shared.id,
        handle,
        rate,
        tickets: Vec::new(),
        born_ms: None,
        last_tick_ms: None,
        allowance: 0.0,
        returns_seen: 0,
    });
    if run.rng.gen_bool(0.3) {
        let rate = [1.0, 4.0][run.rng.gen_range(0..2)];
        let opens = start / 1000 + run.rng.gen_range(3..12);
        let handle = new_cohort(&state, opens, rate).await;
        cohorts.push(CohortSim {
            name: "pre",
            id: handle.shared.id,
            handle,
            rate,
            tickets: Vec::new(),
            born_ms: None,
            last_tick_ms: None,
            allowance: 0.0,
            returns_seen: 0,
        });
    }
    let steps = run.rng.gen_range(60..110);
    for step in 0..steps + 20 {
        let draining = step >= steps;
        let kind = if draining {
            30
        } else {
            run.rng.gen_range(0..100)
        };
        if kind < 25 {
            let c = run.rng.gen_range(0..cohorts.len());
            for _ in 0..run.rng.gen_range(1..=4) {
                run.join(&mut cohorts[c]).await;
            }
        } else if kind < 92 {
            run.now += if draining {
                500
            } else {
                run.rng.gen_range(100..=2000)
            };
            for c in cohorts.iter_mut() {
                run.polls(c);
                run.tick(c).await;
            }
        } else if kind < 96 {
            // Everyone away for longer than the absence: the server ticks before any poll.
            run.now += run.absent_ms + run.rng.gen_range(1000..6000);
            run.note("jump".into());
            for c in cohorts.iter_mut() {
                run.tick(c).await;
                run.polls(c);
            }
        } else {
            run.note("restart".into());
            apps.push(build(&dir, &db, absent_s).await);
            let state = apps.last().unwrap().state();
            for c in cohorts.iter_mut() {
                c.handle = state.registry.cohort(c.id).unwrap();
                c.born_ms = None;
                c.last_tick_ms = None;
                for t in c.tickets.iter_mut() {
                    t.last_poll_ms = None;
                    if let Some(b) = t.back.as_mut() {
                        b.cap = 0.0;
                        b.asked_here = false;
                    }
                }
            }
        }
        for c in cohorts.iter() {
            run.check_counts(c);
        }
        if !run.violations.is_empty() {
            return Err(Failure {
                seed: run.seed,
                step,
                violations: run.violations,
                log: run.log.into_iter().collect(),
            });
        }
    }
    Ok(())
}

#[actix::test]
async fn absent_tickets_never_cost_a_present_one_its_turn_nor_a_returning_one_its_place() {
    let seeds: Vec<u64> = match env_u64("ABSENCE_SEED") {
        Some(s) => vec![s],
        None => (0..env_u64("ABSENCE_SEEDS").unwrap_or(250)).collect(),
    };
    let t0 = std::time::Instant::now();
    let mut failures = Vec::new();
    for seed in &seeds {
        if let Err(f) = run_seed(*seed, None).await {
            eprintln!("{f}");
            failures.push(f.seed);
        }
    }
    println!("{} seeds in {:?}", seeds.len(), t0.elapsed());
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}

#[actix::test]
async fn every_check_catches_a_fault_planted_in_the_harness() {
    if std::env::var("ABSENCE_SEED").is_ok() {
        return;
    }
    for fault in Fault::ALL {
        let mut caught = None;
        for seed in 0..40 {
            if let Err(f) = run_seed(seed, Some(fault)).await {
                caught = Some(f);
                break;
            }
        }
        let f = caught.unwrap_or_else(|| panic!("{fault:?} never caught in 40 seeds"));
        let v = f
            .violations
            .iter()
            .find(|v| v.starts_with(fault.caught_by()))
            .unwrap_or_else(|| {
                panic!(
                    "{fault:?} should be caught by {}, got:\n{f}",
                    fault.caught_by()
                )
            });
        println!(
            "planted {fault:?} caught at seed {} step {}: {v}",
            f.seed, f.step
        );
    }
}
