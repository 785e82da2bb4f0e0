//! `flood`: what a join flood does to the citizens who arrive after it (issue 17). One client
//! joins one cohort as fast as it can for `--flood-seconds` (solving the cohort's challenges
//! when it asks for them; its tickets never poll), then `--citizens` real citizens arrive
//! together: each joins (solving too), polls as `poll_after_seconds` says, and stops once
//! admitted. It reports how far behind the flood the citizens were placed, how long they waited
//! to be admitted, and what the flood cost the attacker.
//!
//! ```text
//! cargo run --release --example flood -- --base http://127.0.0.1:8080 --admin TOKEN \
//!     [--flood-seconds 10] [--citizens 1000] [--rate 100] [--difficulty 0] [--concurrency 64]
//! ```
//! `--flood-seconds 0` is the baseline: the same citizens with no flood ahead of them. The
//! citizens' challenges are solved before the flood starts (on real phones they are solved in
//! parallel, one each; two cores solving a thousand would spread the arrivals instead).
//! `scripts/flood.sh` starts a server on a fresh database and runs it.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    base: String,
    admin: String,
    flood_seconds: f64,
    citizens: usize,
    rate: f64,
    difficulty: u32,
    concurrency: usize,
    /// The citizens give up after this long (the run always ends).
    max_wait_s: f64,
}

fn args() -> Args {
    let mut a = Args {
        base: "http://127.0.0.1:8080".into(),
        admin: std::env::var("ADMIN_TOKEN").unwrap_or_default(),
        flood_seconds: 10.0,
        citizens: 1000,
        rate: 100.0,
        difficulty: 0,
        concurrency: 64,
        max_wait_s: 600.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--base" => a.base = val(),
            "--admin" => a.admin = val(),
            "--flood-seconds" => a.flood_seconds = val().parse().expect("--flood-seconds F"),
            "--citizens" => a.citizens = val().parse().expect("--citizens N"),
            "--rate" => a.rate = val().parse().expect("--rate F"),
            "--difficulty" => a.difficulty = val().parse().expect("--difficulty N"),
            "--concurrency" => a.concurrency = val().parse().expect("--concurrency N"),
            "--max-wait" => a.max_wait_s = val().parse().expect("--max-wait S"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Whether SHA-256 of `challenge:nonce` starts with `bits` zero bits.
fn solved(challenge: &str, nonce: u64, bits: u32) -> bool {
    let digest = Sha256::digest(format!("{challenge}:{nonce}").as_bytes());
    let mut left = bits;
    for byte in digest {
        if left == 0 {
            return true;
        }
        let zeros = byte.leading_zeros().min(8);
        if left <= 8 {
            return zeros >= left;
        }
        if zeros < 8 {
            return false;
        }
        left -= 8;
    }
    left == 0
}

/// A join's body: none at difficulty 0, else a solved challenge (solving on a blocking thread,
/// its CPU time added to `cpu_ns`).
async fn join_body(c: &Client, a: &Args, cohort: i64, cpu_ns: &AtomicU64) -> Option<Value> {
    if a.difficulty == 0 {
        // The cohort asks for no challenge (and then the server never raises it): the
        // cheapest flood sends no more than the joins.
        return None;
    }
    let res = c
        .get(format!("{}/api/v1/cohorts/{cohort}/challenge", a.base))
        .send()
        .await
        .ok()?;
    if res.status() == StatusCode::NOT_FOUND {
        return None; // a server without challenges
    }
    let v: Value = res.json().await.ok()?;
    let bits = v["difficulty"].as_u64().unwrap_or(0) as u32;
    if bits == 0 {
        return None;
    }
    let challenge = v["challenge"].as_str()?.to_string();
    let (nonce, spent) = tokio::task::spawn_blocking(move || {
        let t = cpu_seconds_of("/proc/thread-self/stat");
        let nonce = (0u64..).find(|n| solved(&challenge, *n, bits)).unwrap_or(0);
        let spent = cpu_seconds_of("/proc/thread-self/stat") - t;
        (
            json!({"challenge": challenge, "nonce": nonce.to_string()}),
            Duration::from_secs_f64(spent.max(0.0)),
        )
    })
    .await
    .ok()?;
    cpu_ns.fetch_add(spent.as_nanos() as u64, Ordering::Relaxed);
    Some(nonce)
}

/// Joins once (with `ready`, a solution found beforehand, for the first try); the answer's
/// JSON on 201.
async fn join(
    c: &Client,
    a: &Args,
    cohort: i64,
    cpu_ns: &AtomicU64,
    mut ready: Option<Value>,
) -> Option<Value> {
    for _ in 0..20 {
        let body = match ready.take() {
            Some(body) => Some(body),
            None => join_body(c, a, cohort, cpu_ns).await,
        };
        let mut req = c.post(format!("{}/api/v1/cohorts/{cohort}/queue", a.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let Ok(res) = req.send().await else { continue };
        match res.status() {
            StatusCode::CREATED => return res.json().await.ok(),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            _ => {}
        }
    }
    None
}

/// This process's CPU seconds (user + system) so far, from /proc (Linux; 100 ticks a second).
fn cpu_seconds() -> f64 {
    cpu_seconds_of("/proc/self/stat")
}

/// The CPU seconds a /proc `stat` file reports (a process's, or a thread's: the solving
/// thread's own, not the time it waited for a core).
fn cpu_seconds_of(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the command's ')'.
    (ticks(11) + ticks(12)) / 100.0
}

async fn setup(c: &Client, a: &Args) -> i64 {
    let auth = format!("Bearer {}", a.admin);
    let now = chrono::Utc::now();
    let cohort: Value = c
        .post(format!("{}/api/v1/admin/cohorts", a.base))
        .header("Authorization", &auth)
        .json(&json!({
            "name": "flood", "birth_year_from": 1962, "birth_year_to": 1971,
            "opens_at": (now - chrono::Duration::seconds(1)).to_rfc3339(),
            "closes_at": (now + chrono::Duration::days(1)).to_rfc3339(),
            "vaccine": "Moderna", "dose_interval_days": 28, "admission_rate_per_s": a.rate,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = cohort["id"]
        .as_i64()
        .expect("cohort created (is --admin right?)");
    if a.difficulty > 0 {
        let res = c
            .patch(format!("{}/api/v1/admin/cohorts/{id}", a.base))
            .header("Authorization", &auth)
            .json(&json!({"join_difficulty": a.difficulty}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "join_difficulty refused");
    }
    // Supply for far more than will be admitted: admission must never stop for want of it.
    let center: Value = c
        .post(format!("{}/api/v1/admin/centers", a.base))
        .header("Authorization", &auth)
        .json(&json!({"name": "flood center", "region": "서울", "address": "-"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let center = center["id"].as_i64().unwrap();
    let today = (now + chrono::Duration::hours(9)).date_naive();
    // 100 pairs of 10,000 places (days 1–10, the second doses 28 days later).
    let slots: Vec<Value> = (1u64..=10)
        .flat_map(|d| [d, d + 28])
        .flat_map(|d| (8..18).map(move |h| (d, h)))
        .map(|(d, h)| {
            json!({"date": (today + chrono::Days::new(d)).to_string(),
            "start_time": format!("{h:02}:00"), "end_time": format!("{:02}:00", h + 1),
            "capacity": 10_000, "vaccine": "Moderna"})
        })
        .collect();
    let res = c
        .post(format!("{}/api/v1/admin/centers/{center}/slots", a.base))
        .header("Authorization", &auth)
        .json(&json!({ "slots": slots }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    id
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = Arc::new(args());
    let c = Client::builder()
        .pool_max_idle_per_host(a.concurrency.max(a.citizens))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let cohort = setup(&c, &a).await;
    println!(
        "flood: {} s of joins at concurrency {}, then {} citizens; rate {}/s, difficulty {}, against {}",
        a.flood_seconds, a.concurrency, a.citizens, a.rate, a.difficulty, a.base
    );

    // The citizens' phones solve their challenges while the flood goes on (each on its own
    // phone, in parallel; here, before the flood, so that this machine's two cores solving a
    // thousand challenges do not spread the citizens' arrival): solved beforehand, their
    // solving cost counted apart.
    let citizen_cpu_ns = Arc::new(AtomicU64::new(0));
    let solving: Vec<_> = (0..a.citizens)
        .map(|_| {
            let (c, a, cpu) = (c.clone(), a.clone(), citizen_cpu_ns.clone());
            tokio::spawn(async move { join_body(&c, &a, cohort, &cpu).await })
        })
        .collect();
    let mut solutions = Vec::with_capacity(a.citizens);
    for s in solving {
        solutions.push(s.await.unwrap());
    }

    // The flood: tickets that never poll.
    let flood_cpu_ns = Arc::new(AtomicU64::new(0));
    let flood_tickets = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(a.flood_seconds);
    let bots: Vec<_> = (0..if a.flood_seconds > 0.0 {
        a.concurrency
    } else {
        0
    })
        .map(|_| {
            let (c, a, cpu, n) = (
                c.clone(),
                a.clone(),
                flood_cpu_ns.clone(),
                flood_tickets.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < until {
                    if join(&c, &a, cohort, &cpu, None).await.is_some() {
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for b in bots {
        b.await.unwrap();
    }
    let flood_s = started.elapsed().as_secs_f64();
    let flood_cpu = cpu_seconds() - cpu_before;
    let flooded = flood_tickets.load(Ordering::Relaxed);

    // The citizens: join together, poll as told, stop once admitted.
    let arrived = Instant::now();
    let results: Arc<Mutex<Vec<(f64, f64)>>> = Arc::default(); // (position at join, wait s)
    let lost = Arc::new(AtomicU64::new(0));
    let citizens: Vec<_> = solutions
        .into_iter()
        .map(|solution| {
            let (c, a, cpu, results, lost) = (
                c.clone(),
                a.clone(),
                citizen_cpu_ns.clone(),
                results.clone(),
                lost.clone(),
            );
            tokio::spawn(async move {
                let t0 = Instant::now();
                let Some(v) = join(&c, &a, cohort, &cpu, solution).await else {
                    lost.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let position = v["position"].as_f64().unwrap_or(f64::NAN);
                let ticket = v["ticket"].as_str().unwrap_or_default().to_string();
                let mut state = v;
                let deadline = t0 + Duration::from_secs_f64(a.max_wait_s);
                while state["state"] != "admitted" {
                    if Instant::now() >= deadline {
                        lost.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    let wait = state["poll_after_seconds"].as_u64().unwrap_or(1).max(1);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    if let Ok(res) = c
                        .get(format!("{}/api/v1/queue", a.base))
                        .bearer_auth(&ticket)
                        .send()
                        .await
                    {
                        if let Ok(v) = res.json::<Value>().await {
                            state = v;
                        }
                    }
                }
                results
                    .lock()
                    .unwrap()
                    .push((position, t0.elapsed().as_secs_f64()));
            })
        })
        .collect();
    for t in citizens {
        t.await.unwrap();
    }
    let span = arrived.elapsed().as_secs_f64();
    let results = std::mem::take(&mut *results.lock().unwrap());
    let mut positions: Vec<f64> = results.iter().map(|r| r.0).collect();
    let mut waits: Vec<f64> = results.iter().map(|r| r.1).collect();
    positions.sort_by(f64::total_cmp);
    waits.sort_by(f64::total_cmp);
    let solve_s = flood_cpu_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let per = |x: f64| {
        if flooded > 0 {
            x / flooded as f64
        } else {
            f64::NAN
        }
    };
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| flood tickets | {flooded} in {flood_s:.1} s ({:.0}/s) |",
        flooded as f64 / flood_s.max(1e-9)
    );
    println!(
        "| flood CPU (the whole client process) | {flood_cpu:.2} s, {:.6} s a ticket |",
        per(flood_cpu)
    );
    println!(
        "| of it solving challenges (the solving threads' CPU) | {solve_s:.2} s, {:.6} s a ticket |",
        per(solve_s)
    );
    println!(
        "| citizens admitted | {} of {} ({} gave up or failed) in {span:.1} s |",
        results.len(),
        a.citizens,
        lost.load(Ordering::Relaxed)
    );
    println!(
        "| citizens' position at join: p50 / p90 / max | {:.0} / {:.0} / {:.0} |",
        quantile(&positions, 0.5),
        quantile(&positions, 0.9),
        quantile(&positions, 1.0)
    );
    println!(
        "| citizens' wait to admission (s): p50 / p90 / max | {:.1} / {:.1} / {:.1} |",
        quantile(&waits, 0.5),
        quantile(&waits, 0.9),
        quantile(&waits, 1.0)
    );
    println!(
        "| citizens' solving CPU, a join | {:.3} s |",
        citizen_cpu_ns.load(Ordering::Relaxed) as f64 / 1e9 / a.citizens.max(1) as f64
    );
}
