//! Tests of the real binary as an operator runs it: kill -9 in the middle of a booking rush,
//! again and again (G3 no lost position, G4 an acknowledged booking survives a crash, G1 no
//! overbooking, G5 one live booking per citizen); SIGTERM; and what the logs and the database
//! file hold after a full journey. The kill loop runs on PostgreSQL with `TEST_BACKEND=postgres`.

mod common;

use rand::{Rng, SeedableRng};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN: &str = "process-test-admin";

struct Server {
    child: Child,
    base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(db: impl AsRef<std::ffi::OsStr>, port: u16, log: Option<&Path>) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reservation"));
    cmd.env("DATABASE_URL", db)
        .env("SECRET_KEY", "process-test-secret")
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("ADMIN_TOKEN", ADMIN)
        .env("IDENTITY_LATENCY_MS", "1")
        .env("WORKERS", "2")
        .env("RUST_LOG", if log.is_some() { "debug" } else { "warn" })
        .stdout(Stdio::null());
    match log {
        Some(path) => cmd.stderr(std::fs::File::create(path).unwrap()),
        None => cmd.stderr(Stdio::null()),
    };
    let child = cmd.spawn().expect("the server binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the server never answered /healthz"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Server { child, base }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn admin_post(c: &Client, base: &str, path: &str, body: Value) -> Value {
    let res = c
        .post(format!("{base}{path}"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap()
}

async fn cohort(c: &Client, base: &str, paused: bool) -> i64 {
    let now = chrono::Utc::now();
    let v = admin_post(
        c,
        base,
        "/api/v1/admin/cohorts",
        json!({
            "name": "c", "birth_year_from": 1950, "birth_year_to": 1975,
            "opens_at": (now - chrono::Duration::minutes(1)).to_rfc3339(),
            "closes_at": (now + chrono::Duration::days(1)).to_rfc3339(),
            "vaccine": "Moderna", "dose_interval_days": 28, "admission_rate_per_s": 5000.0,
        }),
    )
    .await;
    let id = v["id"].as_i64().unwrap();
    if paused {
        let res = c
            .patch(format!("{base}/api/v1/admin/cohorts/{id}"))
            .bearer_auth(ADMIN)
            .json(&json!({"paused": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    id
}

/// Join, wait for the pass, verify, book the first of `slots` with room. The booking code
/// is returned only for a 201.
async fn journey(c: &Client, base: &str, cohort: i64, n: u32, slots: &[i64]) -> Option<String> {
    let v: Value = c
        .post(format!("{base}/api/v1/cohorts/{cohort}/queue"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let ticket = v["ticket"].as_str()?.to_string();
    let pass = loop {
        let v: Value = c
            .get(format!("{base}/api/v1/queue"))
            .bearer_auth(&ticket)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        if v["state"] == "admitted" {
            break v["pass"].as_str()?.to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let body = json!({"name": format!("시민{n}"), "birth_date": "1965-03-01", "phone": format!("010-{:04}-{:04}", 2000 + n / 10_000, n % 10_000)});
    let v: Value = c
        .post(format!("{base}/api/v1/verifications"))
        .bearer_auth(&pass)
        .json(&body)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let session = v["session"].as_str()?.to_string();
    for slot in slots
        .iter()
        .cycle()
        .skip(n as usize % slots.len())
        .take(slots.len())
    {
        let res = c
            .post(format!("{base}/api/v1/bookings"))
            .bearer_auth(&session)
            .json(&json!({"slot_id": slot}))
            .send()
            .await
            .ok()?;
        if res.status() == StatusCode::CREATED {
            return res.json::<Value>().await.ok()?["code"]
                .as_str()
                .map(String::from);
        }
        if res.status() != StatusCode::CONFLICT {
            return None;
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_bookings_and_positions_survive_repeated_kill_minus_nine() {
    let kills: u32 = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let database = common::fresh_database(dir.path());
    let db: String = match &database {
        reservation::db::Backend::Sqlite(path) => path.to_string_lossy().into(),
        reservation::db::Backend::Postgres(url) => url.clone(),
    };
    let port = free_port();
    let c = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);

    let mut server = start(&db, port, None).await;
    let open = cohort(&c, &server.base, false).await;
    let paused = cohort(&c, &server.base, true).await;
    let center = admin_post(
        &c,
        &server.base,
        "/api/v1/admin/centers",
        json!({"name": "c", "region": "r", "address": "a"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let today = (chrono::Utc::now() + chrono::Duration::hours(9)).date_naive();
    let slot_list: Vec<Value> = (1..=4u64)
        .flat_map(|d| [d, d + 28])
        .map(|d| json!({"date": (today + chrono::Days::new(d)).to_string(), "start_time": "10:00", "end_time": "11:00", "capacity": 60, "vaccine": "Moderna"}))
        .collect();
    let v = admin_post(
        &c,
        &server.base,
        &format!("/api/v1/admin/centers/{center}/slots"),
        json!({"slots": slot_list}),
    )
    .await;
    let ids: Vec<i64> = v["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    let first_doses: Vec<i64> = ids.iter().step_by(2).copied().collect();

    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut waiting: Vec<(String, u64)> = Vec::new();
    let mut citizen = 0u32;
    let mut violations = 0u32;
    for round in 0..kills {
        // Tickets in the paused cohort: they must keep their places through every crash.
        for _ in 0..3 {
            let v: Value = c
                .post(format!("{}/api/v1/cohorts/{paused}/queue", server.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            waiting.push((
                v["ticket"].as_str().unwrap().to_string(),
                v["position"].as_u64().unwrap(),
            ));
        }
        let load: Vec<_> = (0..12)
            .map(|_| {
                citizen += 1;
                let (c, base, acked, slots, n) = (
                    c.clone(),
                    server.base.clone(),
                    acknowledged.clone(),
                    first_doses.clone(),
                    citizen,
                );
                tokio::spawn(async move {
                    if let Some(code) = journey(&c, &base, open, n, &slots).await {
                        acked.lock().unwrap().push(code);
                    }
                })
            })
            .collect();
        // The crash lands at a random moment of the rush.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(20..400))).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for task in load {
            task.abort();
            let _ = task.await;
        }
        drop(server);
        server = start(&db, port, None).await;

        let codes = acknowledged.lock().unwrap().clone();
        for code in codes {
            let res = c
                .get(format!("{}/api/v1/admin/bookings/{code}", server.base))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            let ok = res.status() == StatusCode::OK
                && res.json::<Value>().await.unwrap()["state"] == "confirmed";
            if !ok {
                eprintln!("round {round}: acknowledged booking {code} lost");
                violations += 1;
            }
        }
        for (ticket, position) in &mut waiting {
            let res = c
                .get(format!("{}/api/v1/queue", server.base))
                .bearer_auth(&*ticket)
                .send()
                .await
                .unwrap();
            let v: Value = res.json().await.unwrap();
            match v["position"].as_u64() {
                Some(p) if p <= *position => *position = p,
                _ => {
                    eprintln!("round {round}: a ticket moved back or was lost: {v}");
                    violations += 1;
                }
            }
        }
        let pool = reservation::db::connect(&database, &Default::default()).unwrap();
        let mut conn = pool.get().unwrap();
        // Live bookings counted from the bookings: within capacity, and equal to the slot
        // rows' own counts.
        violations += reservation::db::queries::slots_out_of_step(&mut conn.conn())
            .unwrap()
            .len() as u32;
        violations += reservation::db::queries::citizens_with_several_live_bookings(
            &mut conn.conn(),
        )
        .unwrap() as u32;
    }
    let acked = acknowledged.lock().unwrap().len();
    println!("crash loop: {kills} kills, {acked} acknowledged bookings, {} waiting tickets checked, {violations} violations", waiting.len());
    assert_eq!(violations, 0);
    assert!(acked > 0, "the load booked something between the crashes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_cleanly_within_ten_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&dir.path().join("t.db"), free_port(), None).await;
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            assert!(exit.success(), "exit status {exit}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_the_log_nor_the_database_holds_a_name_phone_or_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data").join("p.db");
    let log = dir.path().join("server.log");
    let server = start(&db, free_port(), Some(&log)).await;
    let c = Client::new();
    let base = server.base.clone();
    let open = cohort(&c, &base, false).await;
    let center = admin_post(
        &c,
        &base,
        "/api/v1/admin/centers",
        json!({"name": "c", "region": "r", "address": "a"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let today = (chrono::Utc::now() + chrono::Duration::hours(9)).date_naive();
    let list: Vec<Value> = [1u64, 29]
        .iter()
        .map(|d| json!({"date": (today + chrono::Days::new(*d)).to_string(), "start_time": "10:00", "end_time": "11:00", "capacity": 5, "vaccine": "Moderna"}))
        .collect();
    let slots = json!({ "slots": list });
    let v = admin_post(
        &c,
        &base,
        &format!("/api/v1/admin/centers/{center}/slots"),
        slots,
    )
    .await;
    let slot = v["slots"][0]["id"].as_i64().unwrap();

    let v: Value = c
        .post(format!("{base}/api/v1/cohorts/{open}/queue"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = v["ticket"].as_str().unwrap().to_string();
    let pass = loop {
        let v: Value = c
            .get(format!("{base}/api/v1/queue"))
            .bearer_auth(&ticket)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] == "admitted" {
            break v["pass"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (name, birth, phone) = ("홍길동", "1963-05-17", "010-9876-5432");
    // A refused check and a wrong lookup are part of the journey too.
    c.post(format!("{base}/api/v1/verifications"))
        .bearer_auth(&pass)
        .json(&json!({"name": name, "birth_date": birth, "phone": "010-0000-5432"}))
        .send()
        .await
        .unwrap();
    let v: Value = c
        .post(format!("{base}/api/v1/verifications"))
        .bearer_auth(&pass)
        .json(&json!({"name": name, "birth_date": birth, "phone": phone}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = v["session"].as_str().unwrap().to_string();
    let v: Value = c
        .post(format!("{base}/api/v1/bookings"))
        .bearer_auth(&session)
        .json(&json!({"slot_id": slot}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = v["code"].as_str().unwrap().to_string();
    assert_eq!(v["name"], "홍*동");
    c.post(format!("{base}/api/v1/bookings/lookup"))
        .json(&json!({"code": code, "birth_date": birth}))
        .send()
        .await
        .unwrap();
    c.post(format!("{base}/api/v1/bookings/lookup"))
        .json(&json!({"code": code, "birth_date": "1963-05-18"}))
        .send()
        .await
        .unwrap();
    // The code in a path, and a request id: the request lines name the route, not the path.
    let res = c
        .get(format!("{base}/api/v1/admin/bookings/{code}"))
        .bearer_auth(ADMIN)
        .header("X-Request-Id", "complaint-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    c.post(format!(
        "{base}/api/v1/bookings/{code}/cancel?birth_date={birth}"
    ))
    .json(&json!({"birth_date": birth}))
    .send()
    .await
    .unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    drop(server);

    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("listening"), "the log was captured");
    let mut secrets = vec![
        name.to_string(),
        phone.to_string(),
        phone.replace('-', ""),
        birth.to_string(),
        "9876-5432".to_string(),
        ticket.clone(),
        pass.clone(),
        session.clone(),
    ];
    for s in secrets.iter().chain([&code, &ADMIN.to_string()]) {
        assert!(!log_text.contains(s.as_str()), "the log holds {s:?}");
    }
    // A line per request, with its id, method, route template, status and latency.
    let line = log_text
        .lines()
        .find(|l| l.contains("request_id=complaint-42"))
        .unwrap_or_else(|| panic!("no line of the request in\n{log_text}"));
    for part in [
        "method=GET",
        "route=/api/v1/admin/bookings/{code}",
        "status=200",
        "latency_ms=",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
    for route in [
        "route=/api/v1/cohorts/{id}/queue",
        "route=/api/v1/queue",
        "route=/api/v1/verifications",
        "route=/api/v1/bookings/lookup",
        "route=/api/v1/bookings/{code}/cancel",
    ] {
        assert!(log_text.contains(route), "{route} in\n{log_text}");
    }
    // The database keeps the birth date (a booking must show and check it), nothing else.
    secrets.retain(|s| s != birth);
    let mut bytes = std::fs::read(&db).unwrap();
    bytes.extend(std::fs::read(db.with_extension("db-wal")).unwrap_or_default());
    let haystack = String::from_utf8_lossy(&bytes);
    for s in &secrets {
        assert!(!haystack.contains(s.as_str()), "the database holds {s:?}");
    }
    assert!(haystack.contains("홍*동"), "the masked name is kept");
}

/// With `LOG_FORMAT=json` every line is one JSON object (a log shipper's input), a request
/// line's fields are members, and past `LOG_REQUESTS_PER_SECOND` ordinary lines are counted
/// rather than written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_and_request_lines_limited_under_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reservation"))
        .env("DATABASE_URL", dir.path().join("j.db"))
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .env("LOG_REQUESTS_PER_SECOND", "20")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let c = Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = c
        .get(format!("{base}/api/v1/cohorts"))
        .header("X-Request-Id", "trace-7")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-7");
    for _ in 0..300 {
        c.get(format!("{base}/healthz")).send().await.unwrap();
    }
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let figure = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
    };
    let (logged, dropped) = (
        figure("log_requests_logged_total"),
        figure("log_requests_dropped_total"),
    );
    assert!(dropped >= 200.0, "{dropped} dropped of 302");
    assert!((1.0..=80.0).contains(&logged), "{logged} written");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l["ts"].is_string() && l["level"].is_string() && l["msg"].is_string()));
    assert!(
        lines
            .iter()
            .any(|l| l["msg"].as_str().unwrap().contains("listening")),
        "every line, not only requests"
    );
    let req = lines
        .iter()
        .find(|l| l["request_id"] == "trace-7")
        .unwrap_or_else(|| panic!("the request's line in\n{text}"));
    assert_eq!(req["method"], "GET");
    assert_eq!(req["route"], "/api/v1/cohorts");
    assert_eq!(req["status"], 200);
    assert!(req["latency_ms"].is_number());
    let written = lines.iter().filter(|l| l["msg"] == "request").count();
    assert!(
        written as f64 <= logged + 1.0,
        "{written} lines, {logged} counted"
    );
}

/// Join, wait for the pass and verify citizen `n`: the session.
async fn session_of(c: &Client, base: &str, cohort: i64, n: u32) -> String {
    let v: Value = c
        .post(format!("{base}/api/v1/cohorts/{cohort}/queue"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = v["ticket"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let pass = loop {
        let v: Value = c
            .get(format!("{base}/api/v1/queue"))
            .bearer_auth(&ticket)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] == "admitted" {
            break v["pass"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "never admitted: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let body = json!({"name": format!("시민{n}"), "birth_date": "1965-03-01", "phone": format!("010-3000-{:04}", n)});
    let v: Value = c
        .post(format!("{base}/api/v1/verifications"))
        .bearer_auth(&pass)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["session"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_offer_survives_kill_minus_nine_with_the_same_expires_at() {
    let dir = tempfile::tempdir().unwrap();
    let db = if common::on_postgres() {
        common::pg::shared().create_database()
    } else {
        dir.path()
            .join("leftovers.db")
            .to_string_lossy()
            .to_string()
    };
    let c = Client::new();
    let mut server = start(&db, free_port(), None).await;
    let base = server.base.clone();
    let cohort = cohort(&c, &base, false).await;
    let tomorrow =
        (chrono::Utc::now() + chrono::Duration::hours(9)).date_naive() + chrono::Days::new(1);
    let slot = |days: u64| {
        json!({"date": (tomorrow + chrono::Days::new(days)).to_string(), "start_time": "10:00",
            "end_time": "11:00", "capacity": 10, "vaccine": "Moderna"})
    };
    let supply = admin_post(
        &c,
        &base,
        "/api/v1/admin/centers",
        json!({"name": "s", "region": "대구", "address": "a"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    admin_post(
        &c,
        &base,
        &format!("/api/v1/admin/centers/{supply}/slots"),
        json!({"slots": [slot(0), slot(28)]}),
    )
    .await;
    let center = admin_post(
        &c,
        &base,
        "/api/v1/admin/centers",
        json!({"name": "l", "region": "서울", "address": "a"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    admin_post(
        &c,
        &base,
        &format!("/api/v1/admin/centers/{center}/slots"),
        json!({"slots": [slot(27)]}),
    )
    .await;
    let mut entries = Vec::new();
    for n in 0..2 {
        let session = session_of(&c, &base, cohort, n).await;
        let res = c
            .post(format!("{base}/api/v1/leftovers/waitlist"))
            .bearer_auth(&session)
            .json(&json!({"center_ids": [center]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        entries.push(
            res.json::<Value>().await.unwrap()["entry"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let now = chrono::Utc::now().with_timezone(&reservation::config::seoul());
    let midnight = now
        .date_naive()
        .succ_opt()
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let left = (midnight - now.naive_local()).num_seconds();
    let until = (now + chrono::Duration::seconds((left - 2).clamp(1, 3600))).to_rfc3339();
    admin_post(
        &c,
        &base,
        &format!("/api/v1/admin/centers/{center}/leftovers"),
        json!({"vaccine": "Moderna", "doses": 1, "until": until}),
    )
    .await;
    let status = |base: String, entry: String| {
        let c = c.clone();
        async move {
            c.get(format!("{base}/api/v1/leftovers/waitlist"))
                .bearer_auth(entry)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let v = status(base.clone(), entries[0].clone()).await;
        if v["state"] == "offered" {
            break v;
        }
        assert!(Instant::now() < deadline, "never offered: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = start(&db, free_port(), None).await;
    let base = server.base.clone();

    let after = status(base.clone(), entries[0].clone()).await;
    assert_eq!(after["state"], "offered", "{after}");
    assert_eq!(
        after["offer"], before["offer"],
        "the same offer, the same expires_at"
    );
    assert_eq!(
        status(base.clone(), entries[1].clone()).await["state"],
        "waiting"
    );
    let res = c
        .post(format!("{base}/api/v1/leftovers/waitlist/accept"))
        .bearer_auth(&entries[0])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
}
