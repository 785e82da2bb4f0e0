//! `rush`: the midnight-rush load generator. N simulated citizens do the whole journey over
//! real HTTP against a running server — join, poll as `poll_after_seconds` says (scaled by
//! `--time-scale`), verify, list slots, book both doses — and it reports what they saw.
//!
//! ```text
//! cargo run --release --example rush -- --base http://127.0.0.1:8080 --admin TOKEN \
//!     --citizens 20000 --concurrency 256 [--db ./data/reservations.db] [--server-pid PID]
//!     [--difficulty BITS] [--arrival-rate R] [--callgrind]
//!
//! With `--difficulty` the cohort asks that `join_difficulty`, every join first solves its
//! challenge natively, and the table adds the CPU time solving cost (total and per ticket).
//!
//! With `--arrival-rate R` it runs an open loop instead: citizens arrive at R a second whatever
//! the answers, each its own task, and every latency counts from when the request was due
//! (wrk2's way: a slow server shows in the figures rather than slowing the arrivals).
//! `--callgrind` zeroes and dumps a server that runs under callgrind around the journey phase
//! (scripts/profile.sh).
//! ```
//! It creates its own cohort and supply (sized for the citizens) through the admin API, measures
//! the bare `/healthz` rate in the same run, and ends with a consistency check against the
//! database when `--db` is given: no slot over capacity, live bookings equal the 201s seen.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Args {
    base: String,
    admin: String,
    citizens: usize,
    concurrency: usize,
    time_scale: f64,
    centers: usize,
    rate: f64,
    db: Option<String>,
    server_pid: Option<u32>,
    joins_only: bool,
    /// The cohort's `join_difficulty`: each join then solves a challenge first.
    difficulty: u32,
    /// The server runs under callgrind (scripts/profile.sh): its counters are zeroed as the
    /// journey phase starts and dumped as it ends, so the profile holds that phase only.
    callgrind: bool,
    /// Open loop: citizens arrive at this rate (per second) whatever the answers, each on its
    /// own, and every latency counts from when its request was due (as wrk2 does).
    arrival_rate: Option<f64>,
}

fn args() -> Args {
    let mut a = Args {
        base: "http://127.0.0.1:8080".into(),
        admin: std::env::var("ADMIN_TOKEN").unwrap_or_default(),
        citizens: 10_000,
        concurrency: 256,
        time_scale: 0.02,
        centers: 20,
        rate: 20_000.0,
        db: None,
        server_pid: None,
        joins_only: false,
        difficulty: 0,
        callgrind: false,
        arrival_rate: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--base" => a.base = val(),
            "--admin" => a.admin = val(),
            "--citizens" => a.citizens = val().parse().expect("--citizens N"),
            "--concurrency" => a.concurrency = val().parse().expect("--concurrency N"),
            "--time-scale" => a.time_scale = val().parse().expect("--time-scale F"),
            "--centers" => a.centers = val().parse().expect("--centers N"),
            "--rate" => a.rate = val().parse().expect("--rate F"),
            "--db" => a.db = Some(val()),
            "--server-pid" => a.server_pid = Some(val().parse().expect("--server-pid PID")),
            "--joins-only" => a.joins_only = true,
            "--difficulty" => a.difficulty = val().parse().expect("--difficulty 0-24"),
            "--callgrind" => a.callgrind = true,
            "--arrival-rate" => a.arrival_rate = Some(val().parse().expect("--arrival-rate R")),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Latencies per endpoint, in microseconds.
#[derive(Default)]
struct Recorder {
    lat: Mutex<HashMap<&'static str, Vec<u32>>>,
}

impl Recorder {
    /// The answer to `endpoint` arrived now; the request was due at `since`.
    fn record(&self, endpoint: &'static str, since: Instant) {
        let us = since.elapsed().as_micros().min(u32::MAX as u128) as u32;
        self.lat
            .lock()
            .unwrap()
            .entry(endpoint)
            .or_default()
            .push(us);
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// `callgrind_control ARG PID` on the server, when it runs under callgrind.
fn callgrind(a: &Args, arg: &str) {
    if let (true, Some(pid)) = (a.callgrind, a.server_pid) {
        let ok = std::process::Command::new("callgrind_control")
            .args([arg, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "callgrind_control {arg} {pid} failed");
    }
}

/// CPU seconds (user and system) the process has used, from /proc: a figure of the server's
/// cost that other work on the machine changes little, unlike its rate.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) closed by ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Requests per second of `f` from `concurrency` loops for `secs` seconds.
async fn rate_of<F, Fut>(concurrency: usize, secs: f64, f: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let f = Arc::new(f);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let (f, done) = (f.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = w;
                while Instant::now() < end {
                    if f(i).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    i += concurrency;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// What solving join challenges cost this client.
#[derive(Default)]
struct Solving {
    cpu_ns: AtomicU64,
    hashes: AtomicU64,
    solved: AtomicU64,
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A solved challenge for joining `cohort`: asked for, then solved natively (SHA-256 through
/// `sha2`) on a blocking thread whose CPU time is counted.
async fn solved(c: &Client, base: &str, cohort: i64, solving: &Arc<Solving>) -> Option<Value> {
    let ch: Value = c
        .get(format!("{base}/api/v1/cohorts/{cohort}/challenge"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let text = ch["challenge"].as_str()?.to_string();
    let bits = ch["difficulty"].as_u64()? as u32;
    let solving = solving.clone();
    tokio::task::spawn_blocking(move || {
        let started = thread_cpu_ns();
        let (nonce, tried) = reservation::domain::challenge::solve(&text, bits);
        solving
            .cpu_ns
            .fetch_add(thread_cpu_ns() - started, Ordering::Relaxed);
        solving.hashes.fetch_add(tried, Ordering::Relaxed);
        solving.solved.fetch_add(1, Ordering::Relaxed);
        json!({ "challenge": text, "nonce": nonce.to_string() })
    })
    .await
    .ok()
}

async fn setup(c: &Client, a: &Args) -> (i64, Vec<i64>) {
    let auth = format!("Bearer {}", a.admin);
    let now = chrono::Utc::now();
    let cohort: Value = c
        .post(format!("{}/api/v1/admin/cohorts", a.base))
        .header("Authorization", &auth)
        .json(&json!({
            "name": "rush", "birth_year_from": 1962, "birth_year_to": 1971,
            "opens_at": (now - chrono::Duration::seconds(1)).to_rfc3339(),
            "closes_at": (now + chrono::Duration::days(1)).to_rfc3339(),
            "vaccine": "Moderna", "dose_interval_days": 28, "admission_rate_per_s": a.rate,
            "join_difficulty": a.difficulty,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cohort_id = cohort["id"]
        .as_i64()
        .expect("cohort created (is --admin right?)");
    let today = (now + chrono::Duration::hours(9)).date_naive();
    // Enough pairs for everyone: first doses on days 1..=28, seconds 28 days later, 9 hours a day.
    let per_slot = (a.citizens as f64 / (a.centers * 28 * 9) as f64).ceil() as i64 + 1;
    let mut centers = Vec::new();
    for n in 0..a.centers {
        let center: Value = c
            .post(format!("{}/api/v1/admin/centers", a.base))
            .header("Authorization", &auth)
            .json(&json!({"name": format!("rush center {n}"), "region": format!("region {}", n % 5), "address": "-"}))
            .send().await.unwrap().json().await.unwrap();
        let id = center["id"].as_i64().unwrap();
        let slots: Vec<Value> = (1..=56u64)
            .flat_map(|d| (9..18).map(move |h| (d, h)))
            .map(|(d, h)| {
                json!({"date": (today + chrono::Days::new(d)).to_string(),
                "start_time": format!("{h:02}:00"), "end_time": format!("{:02}:00", h + 1),
                "capacity": per_slot, "vaccine": "Moderna"})
            })
            .collect();
        let res = c
            .post(format!("{}/api/v1/admin/centers/{id}/slots", a.base))
            .header("Authorization", &auth)
            .json(&json!({"slots": slots}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        centers.push(id);
    }
    (cohort_id, centers)
}

#[derive(Default)]
struct Outcome {
    booked: AtomicUsize,
    /// Citizens who could not book, by the step and reason that stopped them.
    failed: Mutex<std::collections::BTreeMap<String, usize>>,
    busy: AtomicUsize,
    position_growth: AtomicUsize,
    eta_errors: Mutex<Vec<f64>>,
}

impl Outcome {
    /// A citizen gave up at `step`, for `why`.
    fn fail(&self, step: &str, why: impl std::fmt::Display) {
        *self
            .failed
            .lock()
            .unwrap()
            .entry(format!("{step}: {why}"))
            .or_default() += 1;
    }

    /// The table's line of citizens who could not book, with why when any did.
    fn print_failures(&self) {
        let failed = self.failed.lock().unwrap();
        let why: Vec<String> = failed.iter().map(|(k, n)| format!("{n} × {k}")).collect();
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join("; "))
        };
        println!(
            "| citizens who could not book | {}{why} |",
            failed.values().sum::<usize>()
        );
    }
}

/// What every simulated citizen shares.
#[derive(Clone)]
struct Ctx {
    c: Client,
    a: Arc<Args>,
    rec: Arc<Recorder>,
    out: Arc<Outcome>,
    centers: Arc<Vec<i64>>,
    /// Slot listings per center, refreshed when a booking finds a slot full.
    cache: Arc<Mutex<HashMap<i64, Vec<i64>>>>,
    /// Requests in flight at most (`--concurrency`): in the open loop, arrivals beyond it wait
    /// here (their latency counting from when they were due) rather than each opening a
    /// connection of its own. In the closed loop it never blocks: there are no more workers.
    inflight: Arc<tokio::sync::Semaphore>,
}

/// Sends a request once one of the `--concurrency` places in flight is free.
async fn send(
    inflight: &tokio::sync::Semaphore,
    request: reqwest::RequestBuilder,
) -> reqwest::Result<reqwest::Response> {
    let _place = inflight
        .acquire()
        .await
        .expect("the semaphore is never closed");
    request.send().await
}

/// Sleeps `d` and answers when the sleep was due to end (the next request's due time).
async fn pause(d: Duration) -> Instant {
    let until = Instant::now() + d;
    tokio::time::sleep_until(until.into()).await;
    until
}

async fn journey(ctx: &Ctx, ticket: String, n: usize) {
    let Ctx {
        c,
        a,
        rec,
        out,
        centers,
        cache,
        inflight,
    } = ctx;
    let base = &a.base;
    // Poll until admitted.
    let mut last_pos = u64::MAX;
    let mut first: Option<(Instant, f64)> = None;
    // When the next request is due: latencies count from there, not from when it was sent,
    // so that a late client (the open loop's many tasks) does not hide the server's delay.
    let mut due = Instant::now();
    let pass = loop {
        let t = due;
        let res = send(
            inflight,
            c.get(format!("{base}/api/v1/queue")).bearer_auth(&ticket),
        )
        .await;
        let res = match res {
            Ok(res) => res,
            Err(e) => return out.fail("poll", e),
        };
        rec.record("poll", t);
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            // Shed (MAX_IN_FLIGHT): the ticket keeps its place; ask again shortly.
            out.busy.fetch_add(1, Ordering::Relaxed);
            due = pause(Duration::from_millis(50)).await;
            continue;
        }
        let v: Value = res.json().await.unwrap_or_default();
        if let Some(p) = v["position"].as_u64() {
            if p > last_pos && v["state"] == "waiting" {
                out.position_growth.fetch_add(1, Ordering::Relaxed);
            }
            last_pos = p;
        }
        if first.is_none() {
            if let Some(eta) = v["eta_seconds"].as_f64() {
                first = Some((Instant::now(), eta));
            }
        }
        match v["state"].as_str() {
            Some("admitted") => break v["pass"].as_str().unwrap_or_default().to_string(),
            Some("waiting") | Some("pre_queue") => {
                let wait = v["poll_after_seconds"].as_f64().unwrap_or(1.0) * a.time_scale;
                due = pause(Duration::from_secs_f64(wait.max(0.01))).await;
            }
            other => return out.fail("poll", format!("state {other:?}")),
        }
    };
    if let Some((at, eta)) = first {
        let actual = at.elapsed().as_secs_f64();
        if actual >= 2.0 {
            // The ETA is in server seconds; the clock here is not scaled.
            out.eta_errors
                .lock()
                .unwrap()
                .push((eta - actual).abs() / actual);
        }
    }
    // Verify, retrying while the pool is busy.
    due = Instant::now();
    let session = loop {
        let t = due;
        let res = send(inflight, c.post(format!("{base}/api/v1/verifications")).bearer_auth(&pass)
            .json(&json!({"name": format!("시민{n}"), "birth_date": "1965-03-01", "phone": format!("010-{:04}-{:04}", 1000 + n / 10_000, n % 10_000)})))
            .await;
        let res = match res {
            Ok(res) => res,
            Err(e) => return out.fail("verify", e),
        };
        rec.record("verify", t);
        match res.status() {
            StatusCode::CREATED => {
                break res.json::<Value>().await.unwrap()["session"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                out.busy.fetch_add(1, Ordering::Relaxed);
                due = pause(Duration::from_millis(50)).await;
            }
            status => return out.fail("verify", status),
        }
    };
    due = Instant::now();
    let center = centers[n % centers.len()];
    // Why the last attempt did not book, if none does.
    let mut last = String::new();
    for attempt in 0..20 {
        let known = cache.lock().unwrap().get(&center).cloned();
        let slots = match known {
            Some(s) if attempt == 0 => s,
            _ => {
                let t = Instant::now();
                let res = send(
                    inflight,
                    c.get(format!("{base}/api/v1/centers/{center}/slots")),
                )
                .await;
                rec.record("slots", t);
                let v: Value = match res {
                    Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                        // Shed: nothing learnt about the slots; ask again shortly.
                        out.busy.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    Ok(r) if r.status().is_success() => match r.json().await {
                        Ok(v) => v,
                        Err(e) => {
                            last = format!("listing: {e}");
                            continue;
                        }
                    },
                    // Nothing learnt: not cached as "no slot open"; the next attempt lists
                    // again.
                    Ok(r) => {
                        last = format!("listing: {}", r.status());
                        continue;
                    }
                    Err(e) => {
                        last = format!("listing: {e}");
                        continue;
                    }
                };
                // First doses only on the first 28 days: later days have no second-dose day.
                let last_first = (chrono::Utc::now() + chrono::Duration::hours(9)).date_naive()
                    + chrono::Days::new(28);
                let first_dose_day = |s: &Value| {
                    s["date"]
                        .as_str()
                        .and_then(|d| d.parse::<chrono::NaiveDate>().ok())
                        .is_some_and(|d| d <= last_first)
                };
                let open: Vec<i64> = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|s| s["remaining"].as_i64().unwrap_or(0) > 0)
                            .filter(|s| first_dose_day(s))
                            .map(|s| s["id"].as_i64().unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                cache.lock().unwrap().insert(center, open.clone());
                open
            }
        };
        let Some(&slot) = slots.get(n % slots.len().max(1)).or(slots.first()) else {
            return out.fail("book", "no open slot in the listing");
        };
        let t = due.min(Instant::now());
        let res = send(
            inflight,
            c.post(format!("{base}/api/v1/bookings"))
                .bearer_auth(&session)
                .header("Idempotency-Key", format!("rush-{n}"))
                .json(&json!({"slot_id": slot})),
        )
        .await;
        let res = match res {
            Ok(res) => res,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        rec.record("book", t);
        match res.status() {
            StatusCode::CREATED => {
                out.booked.fetch_add(1, Ordering::Relaxed);
                return;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                out.busy.fetch_add(1, Ordering::Relaxed);
                due = pause(Duration::from_millis(20)).await;
            }
            // slot_full or no second dose: refresh the listing and pick again
            status => {
                let v: Value = res.json().await.unwrap_or_default();
                last = format!("{status} {}", v["error"].as_str().unwrap_or("?"));
                due = Instant::now();
            }
        }
    }
    out.fail("book", format!("20 attempts, the last {last}"));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = Arc::new(args());
    let c = Client::builder()
        .pool_max_idle_per_host(a.concurrency * 2)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let rec = Arc::new(Recorder::default());
    println!(
        "rush: {} citizens, concurrency {}, against {}",
        a.citizens, a.concurrency, a.base
    );

    let (cohort, centers) = setup(&c, &a).await;
    let centers = Arc::new(centers);
    if let Some(rate) = a.arrival_rate {
        let ctx = Ctx {
            c: c.clone(),
            a: a.clone(),
            rec: rec.clone(),
            out: Arc::default(),
            centers: centers.clone(),
            cache: Arc::default(),
            inflight: Arc::new(tokio::sync::Semaphore::new(a.concurrency)),
        };
        open_loop(ctx, cohort, rate).await;
        return;
    }

    // Joins, as fast as they go.
    let tickets: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let solving = Arc::new(Solving::default());
    let start = Instant::now();
    let workers: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let (c, a, rec, tickets, next, solving) = (
                c.clone(),
                a.clone(),
                rec.clone(),
                tickets.clone(),
                next.clone(),
                solving.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= a.citizens {
                        break;
                    }
                    let t = Instant::now();
                    let body = if a.difficulty > 0 {
                        solved(&c, &a.base, cohort, &solving).await
                    } else {
                        None
                    };
                    let join = || {
                        let req = c.post(format!("{}/api/v1/cohorts/{cohort}/queue", a.base));
                        match &body {
                            Some(b) => req.json(b),
                            None => req,
                        }
                    };
                    let mut sent = join().send().await;
                    // Shed (MAX_IN_FLIGHT): nothing was done; join again shortly.
                    while sent
                        .as_ref()
                        .is_ok_and(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE)
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        sent = join().send().await;
                    }
                    let Ok(res) = sent else {
                        continue;
                    };
                    rec.record("join", t);
                    if let Ok(v) = res.json::<Value>().await {
                        if let Some(tk) = v["ticket"].as_str() {
                            tickets.lock().unwrap().push((n, tk.to_string()));
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let join_secs = start.elapsed().as_secs_f64();
    let join_rate = a.citizens as f64 / join_secs;
    let tickets: Vec<(usize, String)> = std::mem::take(&mut *tickets.lock().unwrap());

    // The bare rate, measured here so that it and the polls see the same warm server, the
    // same connections and the same queue.
    let (cc, base) = (c.clone(), a.base.clone());
    let healthz = rate_of(a.concurrency, 3.0, move |_| {
        let (c, url) = (cc.clone(), format!("{base}/healthz"));
        async move {
            c.get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;

    // Polls of random tickets, as fast as they go.
    let shared = Arc::new(tickets.clone());
    let (cc, base, t2) = (c.clone(), a.base.clone(), shared.clone());
    let poll_rate = rate_of(a.concurrency, 3.0, move |i| {
        let (c, url, t) = (
            cc.clone(),
            format!("{base}/api/v1/queue"),
            t2[(i * 7919) % t2.len()].1.clone(),
        );
        async move {
            c.get(url)
                .bearer_auth(t)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    let rss_joined = a.server_pid.and_then(peak_rss_mb);

    let out = Arc::new(Outcome::default());
    let mut booking_rate = 0.0;
    let mut journey_secs = 0.0;
    let (mut cpu_journey, mut own_journey) = (None, None);
    if !a.joins_only {
        let cache: Arc<Mutex<HashMap<i64, Vec<i64>>>> = Arc::default();
        let inflight = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
        let queue = Arc::new(Mutex::new(tickets.into_iter()));
        callgrind(&a, "--zero");
        let cpu_before = a.server_pid.and_then(cpu_seconds);
        let own_before = cpu_seconds(std::process::id());
        let start = Instant::now();
        let workers: Vec<_> = (0..a.concurrency)
            .map(|_| {
                let queue = queue.clone();
                let ctx = Ctx {
                    c: c.clone(),
                    a: a.clone(),
                    rec: rec.clone(),
                    out: out.clone(),
                    centers: centers.clone(),
                    cache: cache.clone(),
                    inflight: inflight.clone(),
                };
                tokio::spawn(async move {
                    loop {
                        let Some((n, t)) = queue.lock().unwrap().next() else {
                            break;
                        };
                        journey(&ctx, t, n).await;
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        journey_secs = start.elapsed().as_secs_f64();
        callgrind(&a, "--dump");
        cpu_journey = a
            .server_pid
            .and_then(cpu_seconds)
            .zip(cpu_before)
            .map(|(after, before)| after - before);
        own_journey = cpu_seconds(std::process::id())
            .zip(own_before)
            .map(|(after, before)| after - before);
        booking_rate = out.booked.load(Ordering::Relaxed) as f64 / journey_secs;
    }

    // Requests per second over the phase each endpoint ran in (joins in the join phase; the
    // rest in the journey phase, where they share the server with each other).
    println!("\n| endpoint | requests | req/s | % of /healthz | p50 ms | p99 ms | p99.9 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut lat = rec.lat.lock().unwrap();
    for name in ["join", "poll", "verify", "slots", "book"] {
        if let Some(v) = lat.get_mut(name) {
            v.sort_unstable();
            let secs = if name == "join" {
                join_secs
            } else {
                journey_secs
            };
            let rps = if secs > 0.0 {
                v.len() as f64 / secs
            } else {
                0.0
            };
            println!(
                "| {name} | {} | {rps:.0} | {:.0}% | {:.2} | {:.2} | {:.2} |",
                v.len(),
                100.0 * rps / healthz,
                pct(v, 0.5),
                pct(v, 0.99),
                pct(v, 0.999)
            );
        }
    }
    println!("\n| figure | value |\n|---|---:|");
    println!("| bare /healthz rate (req/s) | {healthz:.0} |");
    println!("| joins/s | {join_rate:.0} |");
    if a.difficulty > 0 {
        let secs = solving.cpu_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let solved = solving.solved.load(Ordering::Relaxed).max(1);
        println!("| join difficulty (bits) | {} |", a.difficulty);
        println!("| CPU solving challenges, total (s) | {secs:.2} |");
        println!(
            "| CPU solving per ticket (ms) / hashes per ticket | {:.2} / {:.0} |",
            1000.0 * secs / solved as f64,
            solving.hashes.load(Ordering::Relaxed) as f64 / solved as f64
        );
    }
    println!(
        "| polls/s (ratio to /healthz) | {poll_rate:.0} ({:.0}%) |",
        100.0 * poll_rate / healthz
    );
    if !a.joins_only {
        println!(
            "| confirmed bookings | {} |",
            out.booked.load(Ordering::Relaxed)
        );
        println!("| journey phase (s) | {journey_secs:.1} |");
        println!("| confirmed bookings/s | {booking_rate:.0} |");
        if let Some(cpu) = cpu_journey {
            let booked = out.booked.load(Ordering::Relaxed).max(1) as f64;
            println!(
                "| server CPU in the journey phase (s) / per booking (µs) | {cpu:.1} / {:.0} |",
                1e6 * cpu / booked
            );
        }
        if let Some(cpu) = own_journey {
            let booked = out.booked.load(Ordering::Relaxed).max(1) as f64;
            println!(
                "| this generator's CPU in the journey phase (s) / per booking (µs) | {cpu:.1} / {:.0} |",
                1e6 * cpu / booked
            );
        }
        out.print_failures();
        println!(
            "| 503 answers (retried) | {} |",
            out.busy.load(Ordering::Relaxed)
        );
        println!(
            "| positions that grew (FIFO inversions seen) | {} |",
            out.position_growth.load(Ordering::Relaxed)
        );
        let mut e = out.eta_errors.lock().unwrap().clone();
        e.sort_by(|x, y| x.partial_cmp(y).unwrap());
        if !e.is_empty() {
            println!(
                "| ETA error, median (waits ≥ 2 s, n={}) | {:.0}% |",
                e.len(),
                100.0 * e[e.len() / 2]
            );
        }
    }
    if let Some(mb) = rss_joined {
        println!("| server peak RSS after joins (MB) | {mb:.0} |");
    }
    if let Some(mb) = a.server_pid.and_then(peak_rss_mb) {
        println!("| server peak RSS at the end (MB) | {mb:.0} |");
    }

    check_consistency(&a, cohort, &out);
}

/// Against the database when `--db` is given: no slot over capacity, live bookings equal the
/// 201s seen. Exits 1 when violated.
fn check_consistency(a: &Args, cohort: i64, out: &Outcome) {
    let Some(db) = &a.db else {
        return;
    };
    let pool =
        reservation::db::connect(&reservation::db::Backend::from_url(db), &Default::default())
            .expect("database");
    let mut conn = pool.get().unwrap();
    // Counted from the bookings themselves, and against the slot rows' own counts.
    let over = reservation::db::queries::slots_out_of_step(&mut conn.conn())
        .unwrap()
        .len();
    let (per_cohort, _, _) = reservation::db::queries::booking_counts(&mut conn.conn()).unwrap();
    let on_disk = per_cohort.get(&(cohort as i32)).copied().unwrap_or(0);
    let seen = out.booked.load(Ordering::Relaxed) as i64;
    println!("| slots over capacity (or out of step) | {over} |");
    println!("| bookings on disk / 201s seen | {on_disk} / {seen} |");
    let ok = over == 0 && (a.joins_only || on_disk == seen);
    println!("\nconsistency: {}", if ok { "OK" } else { "VIOLATED" });
    if !ok {
        std::process::exit(1);
    }
}

/// The open loop: citizen `i` arrives `i / rate` seconds after the start, whatever the server
/// answered before, and does the whole journey as its own task (join, poll as told, verify,
/// book). Each latency counts from when its request was due, so a server that falls behind
/// shows in the figures instead of slowing the arrivals (no coordinated omission).
async fn open_loop(ctx: Ctx, cohort: i64, rate: f64) {
    let a = ctx.a.clone();
    println!("open loop: {} citizens arriving at {rate}/s", a.citizens);
    let cpu_before = a.server_pid.and_then(cpu_seconds);
    let own_before = cpu_seconds(std::process::id());
    let start = Instant::now();
    let late = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..a.citizens)
        .map(|n| {
            let (ctx, late) = (ctx.clone(), late.clone());
            let arrival = start + Duration::from_secs_f64(n as f64 / rate);
            tokio::spawn(async move {
                tokio::time::sleep_until(arrival.into()).await;
                // How late this task started against its arrival: the generator's own lag,
                // counted in the latencies too.
                let lag = arrival.elapsed().as_micros() as u64;
                late.fetch_max(lag, Ordering::Relaxed);
                let join = format!("{}/api/v1/cohorts/{cohort}/queue", ctx.a.base);
                let mut due = arrival;
                let ticket = loop {
                    let res = send(&ctx.inflight, ctx.c.post(&join)).await;
                    let res = match res {
                        Ok(res) => res,
                        Err(e) => return ctx.out.fail("join", e),
                    };
                    ctx.rec.record("join", due);
                    if res.status() == StatusCode::SERVICE_UNAVAILABLE {
                        ctx.out.busy.fetch_add(1, Ordering::Relaxed);
                        due = pause(Duration::from_millis(20)).await;
                        continue;
                    }
                    let v: Value = res.json().await.unwrap_or_default();
                    match v["ticket"].as_str() {
                        Some(t) => break t.to_string(),
                        None => return ctx.out.fail("join", "no ticket in the answer"),
                    }
                };
                journey(&ctx, ticket, n).await;
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let out = &ctx.out;
    println!("\n| endpoint | requests | p50 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut lat = ctx.rec.lat.lock().unwrap();
    for name in ["join", "poll", "verify", "slots", "book"] {
        if let Some(v) = lat.get_mut(name) {
            v.sort_unstable();
            println!(
                "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                v.len(),
                pct(v, 0.5),
                pct(v, 0.99),
                pct(v, 0.999),
                pct(v, 1.0)
            );
        }
    }
    let booked = out.booked.load(Ordering::Relaxed);
    println!("\n| figure | value |\n|---|---:|");
    println!("| arrivals asked (citizens/s) | {rate:.0} |");
    println!("| arrival phase (s) | {:.1} |", a.citizens as f64 / rate);
    println!("| confirmed bookings | {booked} |");
    println!("| from first arrival to last answer (s) | {secs:.1} |");
    println!("| confirmed bookings/s | {:.0} |", booked as f64 / secs);
    println!(
        "| generator's largest start lag (ms) | {:.1} |",
        late.load(Ordering::Relaxed) as f64 / 1000.0
    );
    out.print_failures();
    println!(
        "| 503 answers (retried) | {} |",
        out.busy.load(Ordering::Relaxed)
    );
    if let Some(cpu) = a.server_pid.and_then(cpu_seconds).zip(cpu_before) {
        let cpu = cpu.0 - cpu.1;
        println!(
            "| server CPU (s) / per booking (µs) | {cpu:.1} / {:.0} |",
            1e6 * cpu / booked.max(1) as f64
        );
    }
    if let Some(cpu) = cpu_seconds(std::process::id()).zip(own_before) {
        let cpu = cpu.0 - cpu.1;
        println!(
            "| this generator's CPU (s) / per booking (µs) | {cpu:.1} / {:.0} |",
            1e6 * cpu / booked.max(1) as f64
        );
    }
    drop(lat);
    check_consistency(&a, cohort, out);
}
