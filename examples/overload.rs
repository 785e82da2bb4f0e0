//! `overload`: what the server does at a multiple of what it can serve. It measures the
//! server's capacity on a mix of citizen requests (closed loop), then offers a multiple of it
//! open loop (requests sent on a fixed schedule, whether or not earlier ones were answered, as
//! a crowd does), then stops and times how long the server takes to answer normally again.
//!
//! ```text
//! cargo run --release --example overload -- --base http://127.0.0.1:8080 --admin TOKEN \
//!     --secret SECRET_KEY [--factor 2] [--seconds 30] [--server-pid PID]
//! ```
//! (`scripts/overload.sh` starts a release server on a fresh database and runs this.)
//!
//! The mix, by request number: 3 in 10 poll a ticket (`GET /queue`, answered from what the
//! queue publishes), 2 in 10 join (`POST /cohorts/{id}/queue`, one atomic increment and a
//! durable reservation every 1,024), 5 in 10 book (`POST /bookings`, through a center's
//! inventory to the single database writer, answered after its commit). Half the mix is
//! bookings so that capacity is set by the work behind the HTTP layer (the writer), not by
//! the HTTP round trip itself: a mix of polls alone runs at the bare `/healthz` rate, and
//! twice that is more than a refusal-only server on the same two cores can even read. The booking sessions
//! are signed here with the server's `SECRET_KEY`, one new citizen each, so the load is not
//! bounded by the identity provider (which has its own limits and its own tests).
//!
//! This file is also compiled into `tests/overload.rs` (`#[path]`), which drives the same
//! load at CI scale and asserts on the tally.

use reqwest::Client;
use reservation::domain::tokens::{Session, Signer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the load runs against: a cohort with tickets to poll, slots with room for every
/// booking, and the key to sign sessions with.
pub struct Fixture {
    pub base: String,
    pub cohort: i64,
    pub tickets: Vec<String>,
    /// First-dose slots (each with its second dose 28 days later, same center and hour).
    pub slots: Vec<i64>,
    signer: Signer,
    /// Distinct citizens per run, so every booking is a new one (one live booking each).
    citizens: AtomicU64,
    run: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Poll,
    Join,
    Book,
}

impl Kind {
    pub fn of(i: u64) -> Self {
        match i % 10 {
            0..=2 => Kind::Poll,
            3..=4 => Kind::Join,
            _ => Kind::Book,
        }
    }
}

/// Creates the cohort, four centers with room for 1.6 million bookings, and `tickets`
/// tickets to poll.
pub async fn setup(c: &Client, base: &str, admin: &str, secret: &str, tickets: usize) -> Fixture {
    let now = chrono::Utc::now();
    let post = |path: &str, body: Value| {
        c.post(format!("{base}{path}"))
            .bearer_auth(admin)
            .json(&body)
            .send()
    };
    let v: Value = post(
        "/api/v1/admin/cohorts",
        json!({
            "name": "overload", "birth_year_from": 1950, "birth_year_to": 1980,
            "opens_at": (now - chrono::Duration::minutes(1)).to_rfc3339(),
            "closes_at": (now + chrono::Duration::days(1)).to_rfc3339(),
            "vaccine": "Moderna", "dose_interval_days": 28, "admission_rate_per_s": 1.0,
        }),
    )
    .await
    .expect("create cohort")
    .json()
    .await
    .expect("cohort json");
    let cohort = v["id"]
        .as_i64()
        .expect("cohort created (are --admin right?)");
    let today = (now + chrono::Duration::hours(9)).date_naive();
    let mut slots = Vec::new();
    for n in 0..4 {
        let v: Value = post(
            "/api/v1/admin/centers",
            json!({"name": format!("overload {n}"), "region": "r", "address": "-"}),
        )
        .await
        .expect("create center")
        .json()
        .await
        .expect("center json");
        let center = v["id"].as_i64().expect("center id");
        let list: Vec<Value> = [1u64, 29]
            .into_iter()
            .flat_map(|d| (9..13).map(move |h| (d, h)))
            .map(|(d, h)| {
                json!({"date": (today + chrono::Days::new(d)).to_string(),
                "start_time": format!("{h:02}:00"), "end_time": format!("{:02}:00", h + 1),
                "capacity": 100_000, "vaccine": "Moderna"})
            })
            .collect();
        let v: Value = post(
            &format!("/api/v1/admin/centers/{center}/slots"),
            json!({ "slots": list }),
        )
        .await
        .expect("add slots")
        .json()
        .await
        .expect("slots json");
        let ids: Vec<i64> = v["slots"]
            .as_array()
            .expect("slots created")
            .iter()
            .map(|s| s["id"].as_i64().expect("slot id"))
            .collect();
        slots.extend_from_slice(&ids[..4]);
    }
    let mut list = Vec::with_capacity(tickets);
    while list.len() < tickets {
        let res = c
            .post(format!("{base}/api/v1/cohorts/{cohort}/queue"))
            .send()
            .await
            .expect("join");
        if res.status().is_success() {
            let v: Value = res.json().await.expect("ticket json");
            list.push(v["ticket"].as_str().expect("ticket").to_string());
        }
    }
    Fixture {
        base: base.to_string(),
        cohort,
        tickets: list,
        slots,
        signer: Signer::new(secret.as_bytes()),
        citizens: AtomicU64::new(0),
        run: rand::random::<u32>() as u64,
    }
}

impl Fixture {
    fn session(&self) -> String {
        let n = self.citizens.fetch_add(1, Ordering::Relaxed);
        self.signer.session(&Session {
            cohort_id: self.cohort as i32,
            seq: n,
            citizen_key: format!("{:032x}{n:032x}", self.run),
            birth_date: "1965-03-01".into(),
            expires_at: chrono::Utc::now().timestamp() + 3600,
            masked_name: "김*영".into(),
            phone: None,
        })
    }

    /// Request number `i` of the mix, as bytes on the wire.
    pub fn request(&self, i: u64) -> (Kind, Vec<u8>) {
        let kind = Kind::of(i);
        let text = match kind {
            Kind::Poll => format!(
                "GET /api/v1/queue HTTP/1.1\r\nHost: overload\r\nAuthorization: Bearer {}\r\n\r\n",
                self.tickets[(i as usize * 7919) % self.tickets.len()]
            ),
            Kind::Join => format!(
                "POST /api/v1/cohorts/{}/queue HTTP/1.1\r\nHost: overload\r\nContent-Length: 0\r\n\r\n",
                self.cohort
            ),
            Kind::Book => {
                let body = format!(
                    "{{\"slot_id\":{}}}",
                    self.slots[(i as usize / 10 + i as usize) % self.slots.len()]
                );
                format!(
                    "POST /api/v1/bookings HTTP/1.1\r\nHost: overload\r\nAuthorization: Bearer {}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    self.session(),
                    body.len()
                )
            }
        };
        (kind, text.into_bytes())
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// An HTTP answer, with whether it carried a `Retry-After` of whole seconds.
    Status(u16, bool),
    /// No answer within the client's timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The connection was reset or closed without an answer, or the answer broke off.
    Broken,
}

/// A small HTTP/1.1 client: a pool of kept-alive connections, a new one whenever none is idle
/// (as a crowd of browsers does), each exchange given up after `timeout`. Hand-written because
/// the load generator shares the machine with the server: a request costs it a write and a
/// read or two, a fraction of what a general client costs, so the server, not the generator,
/// runs out first — in a debug build too.
pub struct Raw {
    addr: std::net::SocketAddr,
    idle: Mutex<Vec<tokio::net::TcpStream>>,
    timeout: Duration,
}

impl Raw {
    pub fn new(base: &str, timeout: Duration) -> Self {
        let host = base.trim_start_matches("http://").trim_end_matches('/');
        Self {
            addr: host.parse().expect("--base must be http://IP:PORT"),
            idle: Mutex::default(),
            timeout,
        }
    }

    pub async fn send(&self, req: &[u8]) -> (Ending, Option<String>) {
        match tokio::time::timeout(self.timeout, self.exchange(req)).await {
            Ok(Ok((status, retry_after))) => (Ending::Status(status, retry_after), None),
            Ok(Err((ending, e))) => (ending, Some(e)),
            Err(_) => (Ending::Timeout, None),
        }
    }

    async fn exchange(&self, req: &[u8]) -> Result<(u16, bool), (Ending, String)> {
        let reused = self.idle.lock().unwrap().pop();
        if let Some(mut conn) = reused {
            // A kept-alive connection the server has since closed fails before any answer;
            // that is not a failure of this request, so it goes again on a new one.
            if let Ok((status, retry_after, keep)) = once(&mut conn, req).await {
                if keep {
                    self.idle.lock().unwrap().push(conn);
                }
                return Ok((status, retry_after));
            }
        }
        let mut conn = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| (Ending::Connect, e.to_string()))?;
        let _ = conn.set_nodelay(true);
        let (status, retry_after, keep) = once(&mut conn, req)
            .await
            .map_err(|e| (Ending::Broken, e.to_string()))?;
        if keep {
            self.idle.lock().unwrap().push(conn);
        }
        Ok((status, retry_after))
    }
}

/// One request and its answer on `conn`: the status, whether a 429/503 carried a whole
/// number of seconds in `Retry-After`, and whether the connection may be kept.
async fn once(conn: &mut tokio::net::TcpStream, req: &[u8]) -> std::io::Result<(u16, bool, bool)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broken =
        |what: &str| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what.to_string());
    conn.write_all(req).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(broken("closed before the answer"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| broken("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| broken("no status"))?;
    let (mut length, mut retry_after, mut keep) = (0usize, false, true);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().map_err(|_| broken("bad length"))?,
            "retry-after" => retry_after = value.parse::<u64>().is_ok(),
            "connection" => keep = !value.eq_ignore_ascii_case("close"),
            "transfer-encoding" => return Err(broken("chunked answers are not expected")),
            _ => {}
        }
    }
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(broken("closed in the body"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, retry_after, keep))
}

/// Sends request number `i` of the mix; says how it ended, how long it took, and for a
/// failure what went wrong.
pub async fn send(fix: &Fixture, c: &Raw, i: u64) -> (Kind, Ending, Duration, Option<String>) {
    let (kind, req) = fix.request(i);
    let t = Instant::now();
    let (ending, error) = c.send(&req).await;
    (kind, ending, t.elapsed(), error)
}

/// Everything a run saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: u64,
    pub seconds: f64,
    pub by_status: BTreeMap<u16, u64>,
    /// 429 and 503 answers without a `Retry-After` in whole seconds.
    pub without_retry_after: u64,
    pub timeouts: u64,
    pub connect_errors: u64,
    pub broken: u64,
    /// Latencies of 2xx answers, in microseconds, and per kind how many were 2xx.
    pub served_us: Vec<u32>,
    pub served_by_kind: BTreeMap<String, u64>,
    pub refused_us: Vec<u32>,
    pub most_outstanding: u64,
    /// The first failure of each kind, as the client described it.
    pub first_failures: BTreeMap<String, String>,
}

impl Tally {
    fn add(&mut self, kind: Kind, ending: Ending, took: Duration, error: Option<String>) {
        if let Some(e) = error {
            self.first_failures
                .entry(format!("{ending:?}"))
                .or_insert(e);
        }
        let us = took.as_micros().min(u32::MAX as u128) as u32;
        match ending {
            Ending::Status(s, ra) => {
                *self.by_status.entry(s).or_default() += 1;
                if (s == 429 || s == 503) && !ra {
                    self.without_retry_after += 1;
                }
                if (200..300).contains(&s) {
                    self.served_us.push(us);
                    *self
                        .served_by_kind
                        .entry(format!("{kind:?}").to_lowercase())
                        .or_default() += 1;
                } else {
                    self.refused_us.push(us);
                }
            }
            Ending::Timeout => self.timeouts += 1,
            Ending::Connect => self.connect_errors += 1,
            Ending::Broken => self.broken += 1,
        }
    }

    pub fn count(&self, f: impl Fn(u16) -> bool) -> u64 {
        self.by_status
            .iter()
            .filter(|(s, _)| f(**s))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn served(&self) -> u64 {
        self.count(|s| (200..300).contains(&s))
    }

    /// Answers other than 2xx, 429 and 503.
    pub fn unexpected(&self) -> u64 {
        self.count(|s| !(200..300).contains(&s) && s != 429 && s != 503)
    }

    pub fn failures(&self) -> u64 {
        self.timeouts + self.connect_errors + self.broken
    }

    /// p-th percentile of served latency, in milliseconds.
    pub fn served_ms(&mut self, p: f64) -> f64 {
        pct(&mut self.served_us, p)
    }

    pub fn summary(&mut self) -> String {
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        format!(
            "sent {} in {:.1} s ({:.0}/s); answers {{{}}}; 2xx by kind {:?}; without Retry-After {}; \
             timeouts {}, connect errors {}, broken {}; served p50 {:.1} ms, p99 {:.1} ms; \
             refused p50 {:.1} ms; most outstanding {}; first failures {:?}",
            self.sent,
            self.seconds,
            self.sent as f64 / self.seconds.max(1e-9),
            statuses.join(", "),
            self.served_by_kind,
            self.without_retry_after,
            self.timeouts,
            self.connect_errors,
            self.broken,
            pct(&mut self.served_us, 0.5),
            pct(&mut self.served_us, 0.99),
            pct(&mut self.refused_us, 0.5),
            self.most_outstanding,
            self.first_failures,
        )
    }
}

pub fn pct(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

/// Closed loop: `concurrency` loops, each sending its next request when the last is answered,
/// for `secs`. Returns the tally; capacity is its 2xx answers per second.
pub async fn closed_loop(fix: Arc<Fixture>, c: &Arc<Raw>, concurrency: u64, secs: f64) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (fix, c, tally, next) = (fix.clone(), c.clone(), tally.clone(), next.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (kind, ending, took, error) = send(&fix, &c, i).await;
                    tally.lock().unwrap().add(kind, ending, took, error);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("closed-loop task");
    }
    let mut t = tally.lock().unwrap().clone();
    t.sent = next.load(Ordering::Relaxed);
    t.seconds = start.elapsed().as_secs_f64();
    t
}

/// Open loop: request `n` is due at `n / rate` seconds after the start, answered or not, for
/// `secs`, over at most `connections` connections at once (as wrk2 does: the crowd reaches the
/// server through a bounded number of connections, as it would through a load balancer; a
/// request due while every connection is busy waits for one, and that wait counts in its
/// latency, so a slow server cannot hide behind the client). Returns once the last is due,
/// with that instant and a task that ends with the tally when every request has ended
/// (answered, or given up at the client's timeout).
pub async fn open_loop(
    fix: Arc<Fixture>,
    c: &Arc<Raw>,
    rate: f64,
    secs: f64,
    connections: usize,
) -> (tokio::task::JoinHandle<Tally>, Instant) {
    let slots = Arc::new(tokio::sync::Semaphore::new(connections));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let outstanding = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tick.tick().await;
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= secs {
            break;
        }
        // Late ticks catch up: the offered rate holds even when this process is starved.
        let due = (elapsed * rate) as u64;
        while sent < due {
            let (fix, c, tally) = (fix.clone(), c.clone(), tally.clone());
            let (outstanding, most, slots) = (outstanding.clone(), most.clone(), slots.clone());
            let i = sent;
            tasks.spawn(async move {
                let due = Instant::now();
                let now = outstanding.fetch_add(1, Ordering::Relaxed) + 1;
                most.fetch_max(now, Ordering::Relaxed);
                let _slot = slots.acquire().await.expect("the semaphore stays open");
                let (kind, ending, _, error) = send(&fix, &c, i).await;
                let took = due.elapsed();
                outstanding.fetch_sub(1, Ordering::Relaxed);
                tally.lock().unwrap().add(kind, ending, took, error);
            });
            sent += 1;
        }
        // Reap what has ended, so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
    }
    let stopped = Instant::now();
    let seconds = start.elapsed().as_secs_f64();
    let drained = tokio::spawn(async move {
        while tasks.join_next().await.is_some() {}
        let mut t = tally.lock().unwrap().clone();
        t.sent = sent;
        t.seconds = seconds;
        t.most_outstanding = most.load(Ordering::Relaxed);
        t
    });
    (drained, stopped)
}

/// Latencies of `n` requests of the mix sent one after another (an idle server's latency).
pub async fn sequential(fix: &Fixture, c: &Raw, from: u64, n: u64) -> Tally {
    let mut t = Tally::default();
    let start = Instant::now();
    for i in from..from + n {
        let (kind, ending, took, error) = send(fix, c, i).await;
        t.add(kind, ending, took, error);
    }
    t.sent = n;
    t.seconds = start.elapsed().as_secs_f64();
    t
}

/// Sends the mix one request at a time from `since` until `streak` in a row were 2xx, each
/// within `normal`; returns how long after `since` that streak began, or None by `deadline`.
pub async fn recovery(
    fix: &Fixture,
    c: &Raw,
    since: Instant,
    streak: u32,
    normal: Duration,
    deadline: Duration,
) -> Option<Duration> {
    let mut i = 1u64 << 40;
    let mut run = 0;
    let mut began = Instant::now();
    while since.elapsed() < deadline {
        let at = Instant::now();
        let (_, ending, took, _) = send(fix, c, i).await;
        i += 1;
        if matches!(ending, Ending::Status(s, _) if (200..300).contains(&s)) && took <= normal {
            if run == 0 {
                began = at;
            }
            run += 1;
            if run >= streak {
                return Some(began.saturating_duration_since(since));
            }
        } else {
            run = 0;
        }
    }
    None
}

/// What counts as a normal answer time again after an overload: a few times the idle
/// server's, and at least 5 ms.
pub fn normal_latency(idle_p50_ms: f64, idle_p99_ms: f64) -> Duration {
    Duration::from_secs_f64((idle_p99_ms * 3.0).max(idle_p50_ms * 5.0).max(5.0) / 1000.0)
}

/// Peak resident memory of a process (VmHWM), in MB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[derive(Debug)]
struct Args {
    base: String,
    admin: String,
    secret: String,
    factor: f64,
    seconds: f64,
    rate: Option<f64>,
    concurrency: u64,
    capacity_seconds: f64,
    timeout_s: f64,
    server_pid: Option<u32>,
    connections: usize,
}

fn args() -> Args {
    let mut a = Args {
        base: "http://127.0.0.1:8080".into(),
        admin: std::env::var("ADMIN_TOKEN").unwrap_or_default(),
        secret: std::env::var("SECRET_KEY").unwrap_or_default(),
        factor: 2.0,
        seconds: 30.0,
        rate: None,
        concurrency: 64,
        capacity_seconds: 10.0,
        timeout_s: 10.0,
        server_pid: None,
        connections: 4096,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--base" => a.base = val(),
            "--admin" => a.admin = val(),
            "--secret" => a.secret = val(),
            "--factor" => a.factor = val().parse().expect("--factor F"),
            "--seconds" => a.seconds = val().parse().expect("--seconds S"),
            "--rate" => a.rate = Some(val().parse().expect("--rate R")),
            "--concurrency" => a.concurrency = val().parse().expect("--concurrency N"),
            "--capacity-seconds" => {
                a.capacity_seconds = val().parse().expect("--capacity-seconds S")
            }
            "--connections" => a.connections = val().parse().expect("--connections N"),
            "--timeout" => a.timeout_s = val().parse().expect("--timeout S"),
            "--server-pid" => a.server_pid = Some(val().parse().expect("--server-pid PID")),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        !a.secret.is_empty(),
        "--secret (the server's SECRET_KEY) is needed to sign sessions"
    );
    a
}

#[allow(dead_code)]
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let admin = Client::new();
    let fix = Arc::new(setup(&admin, &a.base, &a.admin, &a.secret, 2_000).await);
    let c = Arc::new(Raw::new(&a.base, Duration::from_secs_f64(a.timeout_s)));
    let idle = sequential(&fix, &c, 0, 200).await;
    let mut idle_us = idle.served_us.clone();
    let (idle_p50, idle_p99) = (pct(&mut idle_us, 0.5), pct(&mut idle_us, 0.99));
    println!("idle, one at a time: p50 {idle_p50:.2} ms, p99 {idle_p99:.2} ms");

    let mut cap = closed_loop(fix.clone(), &c, a.concurrency, a.capacity_seconds).await;
    let capacity = cap.served() as f64 / cap.seconds;
    println!(
        "capacity (closed loop, {} at once, {:.0} s): {capacity:.0} req/s\n  {}",
        a.concurrency,
        a.capacity_seconds,
        cap.summary()
    );
    let rss_before = a.server_pid.and_then(peak_rss_mb);

    let rate = a.rate.unwrap_or(capacity * a.factor);
    println!(
        "offering {rate:.0} req/s open loop for {:.0} s over at most {} connections",
        a.seconds, a.connections
    );
    let (drained, stopped) = open_loop(fix.clone(), &c, rate, a.seconds, a.connections).await;
    let normal = normal_latency(idle_p50, idle_p99);
    let back = recovery(&fix, &c, stopped, 50, normal, Duration::from_secs(120)).await;
    let mut over = drained.await.expect("open loop");
    println!("  {}", over.summary());

    println!("\n| figure | value |\n|---|---:|");
    println!("| capacity, closed loop (2xx/s) | {capacity:.0} |");
    println!(
        "| offered, open loop (req/s) | {:.0} ({:.1}× capacity) for {:.0} s |",
        over.sent as f64 / over.seconds,
        over.sent as f64 / over.seconds / capacity,
        over.seconds
    );
    println!(
        "| served 2xx (/s) | {} ({:.0}/s) |",
        over.served(),
        over.served() as f64 / over.seconds
    );
    for (s, n) in &over.by_status {
        println!("| answered {s} | {n} |");
    }
    println!(
        "| 429/503 without Retry-After | {} |",
        over.without_retry_after
    );
    println!(
        "| timeouts / connect errors / broken connections | {} / {} / {} |",
        over.timeouts, over.connect_errors, over.broken
    );
    println!(
        "| served latency p50 / p99 (ms) | {:.1} / {:.1} |",
        over.served_ms(0.5),
        over.served_ms(0.99)
    );
    println!(
        "| refused (503/429) latency p50 / p99 (ms) | {:.1} / {:.1} |",
        pct(&mut over.refused_us, 0.5),
        pct(&mut over.refused_us, 0.99)
    );
    println!("| most requests outstanding | {} |", over.most_outstanding);
    println!("| idle latency p50 / p99 (ms) | {idle_p50:.2} / {idle_p99:.2} |");
    match back {
        Some(d) => println!(
            "| time to recover (50 answers in a row 2xx within {:.0} ms) | {:.2} s |",
            normal.as_secs_f64() * 1000.0,
            d.as_secs_f64()
        ),
        None => println!("| time to recover | not within 120 s |"),
    }
    if let Some(mb) = rss_before {
        println!("| server peak RSS before the overload (MB) | {mb:.0} |");
    }
    if let Some(mb) = a.server_pid.and_then(peak_rss_mb) {
        println!("| server peak RSS at the end (MB) | {mb:.0} |");
    }
}
