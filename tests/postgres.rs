//! PostgreSQL only: what a shared database server adds. The database killed mid-rush (an
//! immediate stop and a `kill -9` of the postmaster), two processes racing on one database, and
//! the refusals at start. Each test starts its own throwaway server (`common::pg`); these tests
//! fail, not skip, where the PostgreSQL server is not installed.

mod common;

use common::pg::PgServer;
use common::{spawn_app_on, test_config, TestApp};
use futures_util::future::join_all;
use reservation::db::{Backend, PoolSettings};
use reservation::startup::Application;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One answer the rush got: what was asked, the status, the code, whether `Retry-After` came.
#[derive(Debug, Clone)]
struct Answer {
    what: &'static str,
    status: u16,
    code: Option<String>,
    retry_after: bool,
    took: Duration,
}

async fn record(
    history: &Mutex<Vec<Answer>>,
    what: &'static str,
    started: Instant,
    res: reqwest::Response,
) -> (u16, Value) {
    let status = res.status().as_u16();
    let retry_after = res.headers().contains_key("retry-after");
    let body: Value = res.json().await.unwrap_or(Value::Null);
    history.lock().unwrap().push(Answer {
        what,
        status,
        code: body["error"].as_str().map(str::to_string),
        retry_after,
        took: started.elapsed(),
    });
    (status, body)
}

/// Waits until `/readyz` answers 200 and says how long that took (bounded).
async fn ready_within(app: &TestApp, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let res = app.client.get(app.url("/readyz")).send().await;
        if res.is_ok_and(|r| r.status() == 200) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "not ready {limit:?} after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A citizen's loop until `until`: book (with an idempotency key, retried while the answer is
/// 503), then cancel the booking (retried likewise), then book again. Returns the codes whose
/// booking was acknowledged, and whether their cancellation was.
async fn citizen(
    app: &TestApp,
    session: String,
    slot: i64,
    n: u32,
    until: Instant,
    history: Arc<Mutex<Vec<Answer>>>,
) -> Vec<(String, bool)> {
    let mut acked = Vec::new();
    let mut round = 0;
    while Instant::now() < until {
        round += 1;
        let key = format!("c{n}-r{round}");
        let code = loop {
            if Instant::now() >= until {
                return acked;
            }
            let started = Instant::now();
            let Ok(res) = app
                .client
                .post(app.url("/api/v1/bookings"))
                .bearer_auth(&session)
                .header("Idempotency-Key", &key)
                .json(&json!({ "slot_id": slot }))
                .send()
                .await
            else {
                panic!("the server dropped a booking request");
            };
            match record(&history, "book", started, res).await {
                (201, body) => break body["code"].as_str().unwrap().to_string(),
                (409, _) => return acked,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        acked.push((code.clone(), false));
        loop {
            if Instant::now() >= until {
                return acked;
            }
            let started = Instant::now();
            let res = app
                .client
                .post(app.url(&format!("/api/v1/bookings/{code}/cancel")))
                .json(&json!({ "birth_date": "1965-03-01" }))
                .send()
                .await
                .expect("the server dropped a cancellation");
            match record(&history, "cancel", started, res).await {
                (200, _) => {
                    acked.last_mut().unwrap().1 = true;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_stopped_and_killed_mid_rush_loses_no_acknowledged_booking_and_answers_503() {
    let pg = Arc::new(PgServer::start());
    let url = pg.create_database();
    let app = spawn_app_on(Backend::Postgres(url.clone()), |c| {
        c.pool.connect_timeout = Duration::from_secs(2);
        c.lookups_per_minute = 100_000;
    })
    .await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, _) = app.pair(center, 40).await;
    let sessions = join_all((0..40).map(|n| app.session(cohort, n))).await;

    let history = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(9);
    let rush = join_all(
        sessions
            .into_iter()
            .enumerate()
            .map(|(n, s)| citizen(&app, s, first, n as u32, until, history.clone())),
    );
    let killer = async {
        let mut readiness = Vec::new();
        for kill in [false, true] {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let p = pg.clone();
            tokio::task::spawn_blocking(move || if kill { p.kill9() } else { p.stop_immediate() })
                .await
                .unwrap();
            // While it is down: not ready, and a write is refused 503 with Retry-After.
            let res = app.client.get(app.url("/readyz")).send().await.unwrap();
            assert_eq!(res.status(), 503, "ready while the database is down");
            assert!(res.headers().contains_key("retry-after"));
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let p = pg.clone();
            tokio::task::spawn_blocking(move || p.start_again())
                .await
                .unwrap();
            readiness.push(ready_within(&app, Duration::from_secs(5)).await);
        }
        readiness
    };
    let (acked, readiness) = tokio::join!(rush, killer);
    let acked: Vec<(String, bool)> = acked.into_iter().flatten().collect();
    let history = history.lock().unwrap().clone();

    // Only the answers the contract allows: 201/200, 409 for a full slot, 503 with
    // Retry-After; each within 10 s.
    let mut by_status: HashMap<(&str, u16), usize> = HashMap::new();
    for a in &history {
        *by_status.entry((a.what, a.status)).or_default() += 1;
        let allowed = match (a.what, a.status) {
            ("book", 201) | ("cancel", 200) => true,
            ("book", 409) => matches!(a.code.as_deref(), Some("slot_full" | "already_booked")),
            (_, 503) => a.retry_after && a.code.as_deref() == Some("unavailable"),
            _ => false,
        };
        assert!(allowed, "an answer outside the contract: {a:?}");
        assert!(a.took < Duration::from_secs(10), "answered too late: {a:?}");
    }
    println!("answers: {by_status:?}; ready again after {readiness:?}");
    assert!(
        history.iter().any(|a| a.status == 503),
        "the database was down twice and nobody was told 503"
    );
    assert!(acked.len() >= 40, "the rush booked little: {}", acked.len());

    // Every acknowledged booking is in the database, in the state its last answer said.
    let states: HashMap<String, String> = pg
        .psql(&url, "SELECT code || '=' || state FROM bookings")
        .lines()
        .filter_map(|l| l.split_once('=').map(|(c, s)| (c.into(), s.into())))
        .collect();
    for (code, cancelled) in &acked {
        let expected = if *cancelled { "cancelled" } else { "confirmed" };
        assert_eq!(
            states.get(code).map(String::as_str),
            Some(expected),
            "acknowledged booking {code}"
        );
    }
    // No slot over capacity, and every slot row's count equals its live bookings.
    let pool = reservation::db::connect(&Backend::Postgres(url), &PoolSettings::default()).unwrap();
    let mut conn = pool.get().unwrap();
    let out = reservation::db::queries::slots_out_of_step(&mut conn.conn()).unwrap();
    assert!(out.is_empty(), "slots out of step: {out:?}");
    assert_eq!(
        reservation::db::queries::citizens_with_several_live_bookings(&mut conn.conn()).unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_database_racing_for_ten_places_get_exactly_ten_between_them() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let a = spawn_app_on(Backend::Postgres(url.clone()), |_| {}).await;
    let cohort = a.open_cohort(1000.0).await;
    let center = a.center("서울").await;
    let (first, second) = a.pair(center, 10).await;
    // More places elsewhere, so that admission lets all thirty in (it stops at the supply).
    a.slots(center, &[(1, "11:00", 100), (29, "11:00", 100)])
        .await;
    // The second process loads what the first created; each holds its own view of the ten
    // places, so only the database can keep them to ten.
    let b = spawn_app_on(Backend::Postgres(url.clone()), |_| {}).await;
    assert_eq!(b.slot_remaining(center, first).await, 10);
    let sessions = join_all((0..30).map(|n| a.session(cohort, n))).await;
    let answers = join_all(sessions.iter().enumerate().map(|(n, s)| {
        let app = if n % 2 == 0 { &a } else { &b };
        async move { app.book(s, first, None).await.status().as_u16() }
    }))
    .await;
    let booked = answers.iter().filter(|s| **s == 201).count();
    let full = answers.iter().filter(|s| **s == 409).count();
    assert_eq!((booked, full), (10, 20), "answers: {answers:?}");
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM bookings WHERE state = 'confirmed'"
        ),
        "10"
    );
    assert_eq!(
        pg.psql(
            &url,
            &format!("SELECT booked FROM slots WHERE id IN ({first}, {second}) ORDER BY id")
        ),
        "10\n10"
    );
}

#[actix::test]
async fn a_server_whose_fsync_is_off_is_refused_unless_unsafe_durability_is_allowed() {
    let pg = PgServer::start_with(&["fsync=off"]);
    let mut config = test_config(Backend::Postgres(pg.create_database()));
    let Err(e) = Application::build(config.clone()).await else {
        panic!("started on a server with fsync off");
    };
    assert!(e.contains("fsync"), "{e}");
    config.pool.allow_unsafe_durability = true;
    assert!(Application::build(config).await.is_ok());
}

#[test]
fn on_postgresql_the_server_refuses_to_start_without_its_secrets_and_makes_no_sqlite_file() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let cwd = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_reservation"));
        cmd.current_dir(cwd.path())
            .env_remove("SECRET_KEY")
            .env_remove("ADMIN_TOKEN")
            .env("DATABASE_URL", &url)
            .env("BIND_ADDR", "127.0.0.1:0");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd
    };
    for (missing, envs) in [
        ("SECRET_KEY", vec![("ADMIN_TOKEN", "t")]),
        ("ADMIN_TOKEN", vec![("SECRET_KEY", "s")]),
    ] {
        let out = run(&envs).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{missing}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(missing), "{err}");
    }
    // With both it starts, migrates and serves; nothing lands in its folder.
    let mut child = run(&[("SECRET_KEY", "s"), ("ADMIN_TOKEN", "t")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.psql(
        &url,
        "SELECT count(*) FROM pg_tables WHERE tablename = 'bookings'",
    ) != "1"
    {
        assert!(Instant::now() < deadline, "never migrated");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "files made beside a PostgreSQL server: {left:?}"
    );
}

/// The limits shared across nodes, counted in batches: twelve attempts at once on one key that
/// allows five get exactly five through, as if counted one at a time; the refused ones are
/// not counted (a second key in the same attempts shows it); and a refund gives one back.
#[actix::test]
async fn shared_limits_counted_together_decide_each_attempt_in_turn() {
    use reservation::actors::shared_limits::{Attempt, Refund, SharedLimits};
    use reservation::db::queries;
    let url = common::pg::shared().create_database();
    let backend = Backend::Postgres(url);
    // The migrations make the table.
    let pool = reservation::db::connect(&backend, &PoolSettings::default()).unwrap();
    let counters = reservation::db::connect_counters(&backend, &PoolSettings::default()).unwrap();
    let limits = actix::Actor::start(SharedLimits::new(counters));
    let now_s = 1_000_000;
    let attempt = |n: i64| Attempt {
        limits: vec![
            ("identity:a".into(), 600, 5),
            (format!("pass:{n}"), 600, 100),
        ],
        now_s,
    };
    let answers = join_all((0..12).map(|n| limits.send(attempt(n)))).await;
    let waits: Vec<Option<u64>> = answers.into_iter().map(|a| a.unwrap().unwrap()).collect();
    assert_eq!(waits.iter().filter(|w| w.is_none()).count(), 5, "{waits:?}");
    assert!(waits.iter().flatten().all(|w| *w >= 1 && *w <= 600));
    let hits = |key: &str| {
        let mut conn = pool.get().unwrap();
        queries::count_attempts(
            &mut conn.conn(),
            &[(key.to_string(), now_s - now_s % 600, 600, 0)],
        )
        .unwrap()[0]
            .0
    };
    assert_eq!(hits("identity:a"), 5, "refused attempts are not counted");
    let passes: i64 = (0..12).map(|n| hits(&format!("pass:{n}"))).sum();
    assert_eq!(passes, 5, "nor counted against their other limits");
    limits
        .send(Refund {
            limits: vec![("identity:a".into(), 600, 5)],
            now_s,
        })
        .await
        .unwrap();
    // The refund runs off the actor's thread: wait for it, at most 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    while hits("identity:a") != 4 {
        assert!(Instant::now() < deadline, "the refund never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(limits.send(attempt(99)).await.unwrap().unwrap().is_none());
    assert!(limits.send(attempt(98)).await.unwrap().unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solved_challenge_sent_to_two_processes_at_once_takes_one_ticket_between_them() {
    use reservation::domain::challenge::solve;
    let pg = PgServer::start();
    let url = pg.create_database();
    let a = spawn_app_on(Backend::Postgres(url.clone()), |_| {}).await;
    let cohort = a.open_cohort(100.0).await;
    let res = a
        .client
        .patch(a.url(&format!("/api/v1/admin/cohorts/{cohort}")))
        .bearer_auth(common::ADMIN)
        .json(&json!({ "join_difficulty": 4 }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let b = spawn_app_on(Backend::Postgres(url.clone()), |_| {}).await;
    let join = |app: &TestApp, body: Value| {
        let req = app
            .client
            .post(app.url(&format!("/api/v1/cohorts/{cohort}/queue")))
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            (status, body["error"].as_str().map(str::to_string))
        }
    };
    // Each solution goes to both processes at once (neither has seen it): the database decides.
    let mut outcomes = vec![];
    for n in 0..10 {
        let c: Value = a
            .client
            .get(a.url(&format!("/api/v1/cohorts/{cohort}/challenge")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = c["challenge"].as_str().unwrap().to_string();
        let (nonce, _) = solve(&text, c["difficulty"].as_u64().unwrap() as u32);
        let body = json!({ "challenge": text, "nonce": nonce.to_string() });
        let (first, second) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (x, y) = tokio::join!(join(first, body.clone()), join(second, body.clone()));
        let mut pair = [x, y];
        pair.sort();
        outcomes.push(pair);
    }
    for pair in &outcomes {
        assert_eq!(
            pair,
            &[(201, None), (409, Some("challenge_used".to_string()))],
            "{outcomes:?}"
        );
    }
    assert_eq!(pg.psql(&url, "SELECT count(*) FROM used_challenges"), "10");
    // The refused ones took no place: the next join at either process is 11th in line.
    let body = {
        let c: Value = b
            .client
            .get(b.url(&format!("/api/v1/cohorts/{cohort}/challenge")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = c["challenge"].as_str().unwrap().to_string();
        let (nonce, _) = solve(&text, 4);
        json!({ "challenge": text, "nonce": nonce.to_string() })
    };
    let res = b
        .client
        .post(b.url(&format!("/api/v1/cohorts/{cohort}/queue")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let ticket: Value = res.json().await.unwrap();
    assert_eq!(ticket["position"], 11, "{ticket}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_per_minute_counts_a_clients_joins_at_every_process_together() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let a = spawn_app_on(Backend::Postgres(url.clone()), |c| c.joins_per_minute = 2).await;
    let cohort = a.open_cohort(100.0).await;
    let b = spawn_app_on(Backend::Postgres(url.clone()), |c| c.joins_per_minute = 2).await;
    let join = |app: &TestApp| {
        let req = app
            .client
            .post(app.url(&format!("/api/v1/cohorts/{cohort}/queue")));
        async move {
            let res = req.send().await.unwrap();
            (
                res.status().as_u16(),
                res.headers().contains_key("retry-after"),
            )
        }
    };
    assert_eq!(join(&a).await.0, 201);
    assert_eq!(join(&b).await.0, 201);
    assert_eq!(join(&a).await, (429, true), "the third, at either process");
    assert_eq!(join(&b).await, (429, true));
}

/// Leftover doses on one database served by two processes: citizens signing up at both at
/// once for a center's two doses get exactly two offers between them, one each, in sign-up
/// order; an accepted offer books the dose once; a declined one passes to the next in line at
/// the other process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_offer_each_leftover_dose_once_and_book_it_once() {
    let pg = PgServer::start();
    let url = pg.create_database();
    let a = spawn_app_on(Backend::Postgres(url.clone()), |_| {}).await;
    let cohort = a.open_cohort(1000.0).await;
    let supply = a.center("대구").await;
    a.pair(supply, 100).await;
    let center = a.center("서울").await;
    a.slots(center, &[(27, "10:00", 20)]).await;
    let b = spawn_app_on(Backend::Postgres(url.clone()), |_| {}).await;
    let sessions = join_all((0..8).map(|n| a.session(cohort, n))).await;
    let until = {
        let now = chrono::Utc::now().with_timezone(&reservation::config::seoul());
        let midnight = now
            .date_naive()
            .succ_opt()
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let left = (midnight - now.naive_local()).num_seconds();
        (now + chrono::Duration::seconds((left - 2).clamp(1, 3600))).to_rfc3339()
    };
    let res = a
        .admin_post(
            &format!("/api/v1/admin/centers/{center}/leftovers"),
            json!({"vaccine": "Moderna", "doses": 2, "until": until}),
        )
        .await;
    assert_eq!(res.status(), 201);
    // Sign up in turn (the order is the line), alternating between the processes.
    let mut entries = Vec::new();
    for (n, s) in sessions.iter().enumerate() {
        let app = if n % 2 == 0 { &a } else { &b };
        let res = app
            .client
            .post(app.url("/api/v1/leftovers/waitlist"))
            .bearer_auth(s)
            .json(&json!({"center_ids": [center]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        entries.push(v["entry"].as_str().unwrap().to_string());
    }
    let status = |app: &TestApp, e: &str| {
        let req = app
            .client
            .get(app.url("/api/v1/leftovers/waitlist"))
            .bearer_auth(e);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let offered_within = |entry: usize| {
        let (a, b, e) = (&a, &b, entries[entry].clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let app = if entry % 2 == 0 { b } else { a };
                let v = status(app, &e).await;
                if v["state"] == "offered" {
                    return v;
                }
                assert!(
                    Instant::now() < deadline,
                    "sign-up {entry} never offered: {v}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    offered_within(0).await;
    offered_within(1).await;
    let held = |pg: &PgServer| {
        pg.psql(
            &url,
            "SELECT count(*), count(DISTINCT entry_id) FROM leftover_offers WHERE state = 'held'",
        )
    };
    assert_eq!(held(&pg), "2|2");
    for e in &entries[2..] {
        assert_eq!(status(&a, e).await["state"], "waiting");
    }
    // One takes it at the other process; the other declines and the next is offered.
    let res = b
        .client
        .post(b.url("/api/v1/leftovers/waitlist/accept"))
        .bearer_auth(&entries[0])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = a
        .client
        .post(a.url("/api/v1/leftovers/waitlist/decline"))
        .bearer_auth(&entries[1])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    offered_within(2).await;
    assert_eq!(held(&pg), "1|1");
    assert_eq!(status(&b, &entries[3]).await["state"], "waiting");
    assert_eq!(
        pg.psql(
            &url,
            "SELECT capacity, booked FROM slots WHERE leftover_until IS NOT NULL"
        ),
        "2|2",
        "one dose booked, one under an offer"
    );
    assert_eq!(
        pg.psql(
            &url,
            "SELECT count(*) FROM bookings WHERE state = 'confirmed'"
        ),
        "1"
    );
}

/// Leftovers posted at one process are listed by the other within seconds, and an offer made
/// by a process that then stops still lapses after its hold, the other process passing the
/// dose on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_posted_at_one_process_are_served_by_the_other_which_lapses_its_offers_once_it_stops(
) {
    let pg = PgServer::start();
    let url = pg.create_database();
    let a = spawn_app_on(Backend::Postgres(url.clone()), |c| c.offer_hold_s = 1).await;
    let cohort = a.open_cohort(1000.0).await;
    let supply = a.center("대구").await;
    a.pair(supply, 100).await;
    let center = a.center("서울").await;
    a.slots(center, &[(27, "10:00", 20)]).await;
    let b = spawn_app_on(Backend::Postgres(url.clone()), |c| c.offer_hold_s = 1).await;
    let sessions = join_all((0..2).map(|n| a.session(cohort, n))).await;
    let until = {
        let now = chrono::Utc::now().with_timezone(&reservation::config::seoul());
        let midnight = now
            .date_naive()
            .succ_opt()
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let left = (midnight - now.naive_local()).num_seconds();
        (now + chrono::Duration::seconds((left - 2).clamp(1, 3600))).to_rfc3339()
    };
    let res = a
        .admin_post(
            &format!("/api/v1/admin/centers/{center}/leftovers"),
            json!({"vaccine": "Moderna", "doses": 1, "until": until}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list: Vec<Value> = b
            .client
            .get(b.url("/api/v1/leftovers"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if list.len() == 1 {
            assert_eq!(list[0]["center_id"], center);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never listed at the other process"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sign_up = |app: &TestApp, session: &str| {
        let req = app
            .client
            .post(app.url("/api/v1/leftovers/waitlist"))
            .bearer_auth(session)
            .json(&json!({"center_ids": [center]}));
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 201);
            res.json::<Value>().await.unwrap()["entry"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let state = |app: &TestApp, e: &str| {
        let req = app
            .client
            .get(app.url("/api/v1/leftovers/waitlist"))
            .bearer_auth(e);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap()["state"].clone() }
    };
    let first = sign_up(&a, &sessions[0]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&a, &first).await != "offered" {
        assert!(Instant::now() < deadline, "never offered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = sign_up(&b, &sessions[1]).await;
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&b, &second).await != "offered" {
        assert!(Instant::now() < deadline, "the dose never passed on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state(&b, &first).await, "lapsed");
    assert_eq!(
        pg.psql(
            &url,
            "SELECT state, count(*) FROM leftover_offers GROUP BY state ORDER BY state"
        ),
        "held|1\nlapsed|1"
    );
}
