//! Notifications (API 1.1) end to end: a booking's and a cancellation's messages reach a real
//! webhook (a receiver on 127.0.0.1:0 in the test) with the phone given at verification and a
//! stable id, a failing receiver is retried with backoff and the repeat carries the same id, a
//! message failing past its attempts ends `failed`, a failed commit leaves no message, the
//! admin endpoint and its errors, and the phone number in no database file. On SQLite, or on
//! PostgreSQL with `TEST_BACKEND=postgres` (see `common`).

mod common;

use common::{assert_error, on_postgres, spawn_app_with, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A webhook receiver: keeps every JSON body it is sent, answers the first `fail_first`
/// requests 500 (all of them if `None`), the rest 200.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start(fail_first: Option<usize>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Value>>> = Arc::default();
        let kept = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let n = {
                    let mut got = kept.lock().unwrap();
                    got.push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    got.len()
                };
                let fail = fail_first.is_none_or(|k| n <= k);
                let status = if fail {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Self { url, got }
    }

    fn bodies(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
}

/// Polls `check` every 50 ms until it gives a value, for at most `within`.
async fn until<T>(within: Duration, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn notifications(app: &TestApp, code: &str) -> Vec<Value> {
    let res = app
        .admin_get(&format!("/api/v1/admin/notifications?booking={code}"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A cohort, a center with a pair of slots, a session for citizen `n`, and a booking: its code.
/// Its first dose is the day after tomorrow, so that no reminder (written from 09:00 in Seoul
/// for tomorrow's doses) joins its messages whatever the hour the test runs at.
async fn booked(app: &TestApp, n: u32) -> String {
    booked_from(app, n, 1).await
}

/// As `booked`, the first dose `offset` days after tomorrow and the second four weeks later.
async fn booked_from(app: &TestApp, n: u32, offset: u64) -> String {
    let cohort = app.open_cohort(100.0).await;
    let center = app.center("서울").await;
    let slots = app
        .slots(center, &[(offset, "10:00", 10), (offset + 28, "10:00", 10)])
        .await;
    let session = app.session(cohort, n).await;
    let res = app.book(&session, slots[0], None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Citizen `n`'s phone as `common::TestApp::session` gives it, in digits.
fn phone(n: u32) -> String {
    format!("010{:04}{:04}", 1000 + n / 10000, n % 10000)
}

fn fast_retries(c: &mut reservation::config::Config, url: &str) {
    c.notify.webhook_url = Some(url.to_string());
    c.notify.retry.base_backoff = Duration::from_millis(50);
    c.notify.retry.max_backoff = Duration::from_millis(200);
}

#[actix_web::test]
async fn a_booking_and_its_cancellation_reach_the_webhook_with_the_phone_and_are_listed_sent() {
    let hook = Receiver::start(Some(0));
    let app = spawn_app_with(|c| fast_retries(c, &hook.url)).await;
    let code = booked(&app, 7).await;
    let sent = until(Duration::from_secs(10), "the booked message", async || {
        hook.bodies().into_iter().find(|b| b["kind"] == "booked")
    })
    .await;
    assert_eq!(sent["booking_code"], code.as_str());
    assert_eq!(sent["to"], phone(7));
    assert!(sent["text"].as_str().unwrap().contains(&code));
    assert!(sent["created_at"].as_str().is_some());
    let id = sent["id"].as_str().unwrap().to_string();
    let listed = until(Duration::from_secs(10), "the message sent", async || {
        let all = notifications(&app, &code).await;
        (all.len() == 1 && all[0]["state"] == "sent").then_some(all)
    })
    .await;
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["kind"], "booked");
    assert_eq!(listed[0]["attempts"], 1);

    let res = app
        .client
        .post(app.url(&format!("/api/v1/bookings/{code}/cancel")))
        .json(&json!({"birth_date": "1965-03-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cancelled = until(
        Duration::from_secs(10),
        "the cancelled message",
        async || hook.bodies().into_iter().find(|b| b["kind"] == "cancelled"),
    )
    .await;
    assert_eq!(cancelled["to"], phone(7));
    assert_eq!(cancelled["booking_code"], code.as_str());
    assert_ne!(cancelled["id"], id.as_str());
}

#[actix_web::test]
async fn a_failing_receiver_is_retried_with_backoff_and_every_repeat_has_the_same_id() {
    let hook = Receiver::start(Some(2));
    let app = spawn_app_with(|c| fast_retries(c, &hook.url)).await;
    let code = booked(&app, 8).await;
    let listed = until(
        Duration::from_secs(15),
        "delivery after two failures",
        async || {
            let all = notifications(&app, &code).await;
            (all.len() == 1 && all[0]["state"] == "sent").then_some(all)
        },
    )
    .await;
    assert_eq!(listed[0]["attempts"], 3);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 3, "two failures and a delivery: {bodies:?}");
    assert!(bodies.iter().all(|b| b["id"] == listed[0]["id"]));
    let m = &app.state.notifier_metrics;
    assert_eq!(m.retries.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[actix_web::test]
async fn a_message_failing_past_its_attempts_ends_failed() {
    let hook = Receiver::start(None);
    let app = spawn_app_with(|c| {
        fast_retries(c, &hook.url);
        c.notify.retry.max_attempts = 3;
    })
    .await;
    let code = booked(&app, 9).await;
    let listed = until(Duration::from_secs(15), "the message failed", async || {
        let all = notifications(&app, &code).await;
        (all.len() == 1 && all[0]["state"] == "failed").then_some(all)
    })
    .await;
    assert_eq!(listed[0]["attempts"], 3);
    assert_eq!(hook.bodies().len(), 3);
}

#[actix_web::test]
async fn a_booking_whose_commit_failed_leaves_no_message_and_one_that_committed_leaves_one() {
    // A receiver that never takes anything: every message stays pending, to be counted.
    let (_hook, app) = holding_app().await;
    let cohort = app.open_cohort(100.0).await;
    let center = app.center("서울").await;
    // The day after tomorrow: no reminder joins the pending count.
    let first = app
        .slots(center, &[(1, "10:00", 10), (29, "10:00", 10)])
        .await[0];
    let session = app.session(cohort, 10).await;
    let pending = |app: &TestApp| {
        let mut conn = app.state.pool.get().unwrap();
        reservation::db::outbox::pending_stats(&mut conn.conn())
            .unwrap()
            .0
    };
    app.state
        .store
        .send(reservation::actors::booking_store::FailNextCommits(1))
        .await
        .unwrap();
    let res = app.book(&session, first, Some("k1")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(pending(&app), 0, "a failed commit left a message");
    let res = app.book(&session, first, Some("k1")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(pending(&app), 1);
}

/// An application whose webhook receiver never takes anything, retrying only after 10
/// minutes: what is written stays pending, to be looked at. Keep the receiver alive.
async fn holding_app() -> (Receiver, TestApp) {
    let hook = Receiver::start(None);
    let app = spawn_app_with(|c| {
        c.notify.webhook_url = Some(hook.url.clone());
        c.notify.retry.base_backoff = Duration::from_secs(600);
    })
    .await;
    (hook, app)
}

/// Runs the reminders' scan for tomorrow now; how many it wrote.
fn scan_tomorrow(app: &TestApp) -> usize {
    let mut conn = app.state.pool.get().unwrap();
    let now = chrono::Utc::now().timestamp();
    reservation::db::outbox::scan_reminders(&mut conn.conn(), &tomorrow(), now).unwrap()
}

/// Tomorrow in Seoul, as the reminders' scan takes it.
fn tomorrow() -> String {
    ((chrono::Utc::now() + chrono::Duration::hours(9)).date_naive() + chrono::Days::new(1))
        .to_string()
}

#[actix_web::test]
async fn a_reminder_is_written_once_the_day_before_and_a_cancellation_takes_it_back() {
    // A receiver that never takes anything: what is written stays pending, to be looked at.
    let (_hook, app) = holding_app().await;
    // A first dose tomorrow and a second in four weeks.
    let code = booked_from(&app, 12, 0).await;
    // The notifier may have scanned already (after 18:00 in Seoul); either way one is there,
    // for the first dose only, and a second scan writes none.
    let first = scan_tomorrow(&app);
    assert!(first <= 1, "{first} reminders written for one booking");
    assert_eq!(
        scan_tomorrow(&app),
        0,
        "a second scan wrote the reminder again"
    );
    let kinds = |all: &[Value]| -> Vec<String> {
        let mut k: Vec<String> = all
            .iter()
            .map(|m| m["kind"].as_str().unwrap().into())
            .collect();
        k.sort();
        k
    };
    let all = notifications(&app, &code).await;
    assert_eq!(kinds(&all), ["booked", "reminder"]);
    assert!(all.iter().all(|m| m["state"] == "pending"), "{all:?}");

    let res = app
        .client
        .post(app.url(&format!("/api/v1/bookings/{code}/cancel")))
        .json(&json!({"birth_date": "1965-03-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The cancellation took the pending reminder back in its transaction: nothing is due.
    let all = notifications(&app, &code).await;
    assert_eq!(kinds(&all), ["booked", "cancelled"], "{all:?}");
    assert_eq!(scan_tomorrow(&app), 0, "a cancelled booking was reminded");
    assert_eq!(
        kinds(&notifications(&app, &code).await),
        ["booked", "cancelled"]
    );
}

#[actix_web::test]
async fn a_booking_left_needing_rebooking_keeps_the_phone_its_cancellation_is_sent_to() {
    use diesel::RunQueryDsl;
    let hook = Receiver::start(Some(0));
    let app = spawn_app_with(|c| fast_retries(c, &hook.url)).await;
    let code = booked(&app, 13).await;
    {
        // As a supply change that found no place leaves it; then the housekeeping runs.
        let mut conn = app.state.pool.get().unwrap();
        reservation::run!(&mut conn.conn(), c =>
            diesel::sql_query("UPDATE bookings SET state = 'needs_rebooking' WHERE code = $1")
                .bind::<diesel::sql_types::Text, _>(&code)
                .execute(c))
        .unwrap();
        let today = (chrono::Utc::now() + chrono::Duration::hours(9))
            .date_naive()
            .to_string();
        reservation::db::outbox::forget_phones(&mut conn.conn(), &today).unwrap();
    }
    let res = app
        .client
        .post(app.url(&format!("/api/v1/bookings/{code}/cancel")))
        .json(&json!({"birth_date": "1965-03-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cancelled = until(
        Duration::from_secs(10),
        "the cancelled message",
        async || hook.bodies().into_iter().find(|b| b["kind"] == "cancelled"),
    )
    .await;
    assert_eq!(cancelled["to"], phone(13));
    let listed = until(
        Duration::from_secs(10),
        "the cancellation sent",
        async || {
            let all = notifications(&app, &code).await;
            all.iter()
                .find(|m| m["kind"] == "cancelled" && m["state"] != "pending")
                .cloned()
        },
    )
    .await;
    assert_eq!(listed["state"], "sent", "{listed:?}");
}

/// A move takes back the moved dose's pending reminder in its transaction (the step writes
/// a chunk's reminders away together): a citizen is not reminded of a day that is no longer
/// theirs.
#[actix_web::test]
async fn a_moved_dose_takes_its_pending_reminder_back() {
    let (_hook, app) = holding_app().await;
    let cohort = app.open_cohort(100.0).await;
    let center = app.center("서울").await;
    // Tomorrow and four weeks on; the day after each, where the moves go.
    let s = app
        .slots(
            center,
            &[
                (0, "10:00", 5),
                (28, "10:00", 5),
                (1, "10:00", 5),
                (29, "10:00", 5),
            ],
        )
        .await;
    let session = app.session(cohort, 14).await;
    let res = app.book(&session, s[0], None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let code = res.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();
    scan_tomorrow(&app);
    let reminders = |all: &[Value]| all.iter().filter(|m| m["kind"] == "reminder").count();
    assert_eq!(reminders(&notifications(&app, &code).await), 1);

    // Tomorrow's slot cancelled: the first dose goes to the day after, the second with it.
    let res = app
        .client
        .patch(app.url(&format!("/api/v1/admin/slots/{}", s[0])))
        .bearer_auth(common::ADMIN)
        .json(&json!({"cancelled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let all = until(Duration::from_secs(10), "the moved messages", async || {
        let all = notifications(&app, &code).await;
        all.iter().any(|m| m["kind"] == "moved").then_some(all)
    })
    .await;
    assert_eq!(
        reminders(&all),
        0,
        "the old day's reminder is still due: {all:?}"
    );
    assert_eq!(
        all.iter().filter(|m| m["kind"] == "moved").count(),
        2,
        "one message a dose moved: {all:?}"
    );
    assert_eq!(scan_tomorrow(&app), 0, "nothing is tomorrow any more");
}

#[actix_web::test]
async fn the_notifications_endpoint_wants_the_admin_token_a_code_and_a_known_booking() {
    let app = spawn_app_with(|_| {}).await;
    let res = app
        .client
        .get(app.url("/api/v1/admin/notifications?booking=ABCD-1234"))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "unauthorized").await;
    let res = app.admin_get("/api/v1/admin/notifications").await;
    assert_error(res, 400, "validation").await;
    let res = app.admin_get("/api/v1/admin/notifications?booking=").await;
    assert_error(res, 400, "validation").await;
    // A code is taken as written: blanks are not trimmed away to an empty code.
    let res = app
        .admin_get("/api/v1/admin/notifications?booking=%20")
        .await;
    assert_error(res, 404, "not_found").await;
    let res = app
        .admin_get("/api/v1/admin/notifications?booking=NOPE-0000")
        .await;
    assert_error(res, 404, "not_found").await;
}

#[actix_web::test]
async fn the_phone_number_is_in_no_database_file() {
    if on_postgres() {
        return; // The files are SQLite's; PostgreSQL's own run checks the rows below.
    }
    let hook = Receiver::start(Some(0));
    let app = spawn_app_with(|c| fast_retries(c, &hook.url)).await;
    let code = booked(&app, 4321).await;
    until(Duration::from_secs(10), "the booked message", async || {
        hook.bodies().into_iter().find(|b| b["to"] == phone(4321))
    })
    .await;
    let _ = code;
    let mut scanned = 0;
    for entry in std::fs::read_dir(app.dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        for needle in [phone(4321), "010-1000-4321".to_string()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in {}",
                path.display()
            );
        }
    }
    assert!(scanned > 0);
}

/// Each delivery's id, phone, start and end.
type Deliveries = Arc<Mutex<Vec<(String, String, Instant, Instant)>>>;

/// A provider that takes 30 ms a delivery and records it.
struct Recording(Deliveries);

impl reservation::actors::notify_provider::NotifyProvider for Recording {
    fn deliver(
        &self,
        msg: reservation::actors::notify_provider::Outgoing,
    ) -> futures_util::future::LocalBoxFuture<'static, Result<(), String>> {
        let log = self.0.clone();
        Box::pin(async move {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(30)).await;
            log.lock()
                .unwrap()
                .push((msg.id, msg.to, start, Instant::now()));
            Ok(())
        })
    }
}

#[actix_web::test]
async fn two_senders_on_one_database_deliver_every_message_never_twice_at_once_within_the_rate() {
    use actix::Actor;
    use reservation::actors::notifier::Notifier;
    use reservation::db::outbox::{enqueue_many, NewMessage};
    use reservation::domain::notification::Kind;
    use reservation::domain::phone::PhoneKey;
    let dir = tempfile::tempdir().unwrap();
    let backend = common::fresh_database(dir.path());
    let pool = reservation::db::connect(&backend, &Default::default()).unwrap();
    let key = PhoneKey::derive(b"two senders");
    let now = reservation::now_s();
    let msgs: Vec<NewMessage> = (0..60)
        .map(|i| {
            NewMessage::new(
                Kind::Booked,
                Some(&format!("CODE-{i:04}")),
                Some(key.seal(&phone(i))),
                format!("message {i}"),
                now,
            )
        })
        .collect();
    let ids = {
        let mut conn = pool.get().unwrap();
        enqueue_many(&mut conn.conn(), &msgs).unwrap()
    };
    let log: Deliveries = Arc::default();
    let settings = reservation::config::NotifySettings {
        rate_per_s: 20,
        max_in_flight: 4,
        ..Default::default()
    };
    let started = Instant::now();
    let alive = Arc::new(());
    let _senders: Vec<_> = ["a", "b"]
        .iter()
        .map(|node| {
            let log = log.clone();
            Notifier::new(
                pool.clone(),
                node.to_string(),
                key.clone(),
                settings.clone(),
                reservation::config::seoul(),
                Box::new(move || Rc::new(Recording(log)) as Rc<_>),
                Arc::downgrade(&alive),
            )
            .start()
        })
        .collect();
    until(Duration::from_secs(30), "every message sent", async || {
        let mut conn = pool.get().unwrap();
        (reservation::db::outbox::pending_stats(&mut conn.conn())
            .unwrap()
            .0
            == 0)
            .then_some(())
    })
    .await;
    let took = started.elapsed();
    let log = log.lock().unwrap().clone();
    for (i, id) in ids.iter().enumerate() {
        let mine: Vec<_> = log.iter().filter(|(d, ..)| d == id).collect();
        assert!(!mine.is_empty(), "message {id} never delivered");
        assert!(mine.iter().all(|(_, to, ..)| *to == phone(i as u32)));
        for (j, a) in mine.iter().enumerate() {
            for b in &mine[j + 1..] {
                assert!(a.3 <= b.2 || b.3 <= a.2, "{id} delivered twice at once");
            }
        }
    }
    // Two senders at 20/s each, one to start with each: 60 messages take at least 1.4 s.
    assert!(
        took >= Duration::from_millis(1400),
        "the rate cap let {took:?} through"
    );
}

/// The real binary, its standard error and output both written to `log`.
struct Binary {
    child: std::process::Child,
    base: String,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_binary(database: &str, hook: &str, log: &std::path::Path) -> Binary {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = std::fs::File::create(log).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_reservation"))
        .env("DATABASE_URL", database)
        .env("SECRET_KEY", "outbox-log-secret")
        .env("ADMIN_TOKEN", common::ADMIN)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("IDENTITY_LATENCY_MS", "1")
        .env("WORKERS", "2")
        .env("RUST_LOG", "debug")
        // The request lines on, with room for every request of the journey.
        .env("LOG_REQUESTS_PER_SECOND", "1000")
        .env("NOTIFY_WEBHOOK_URL", hook)
        .env("NOTIFY_BACKOFF_MS", "50")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("the server binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Binary { child, base }
}

/// The whole log of the real binary at `RUST_LOG=debug`, request lines on, after a citizen
/// journey whose every message was delivered to a webhook (booked, moved by a second-dose
/// shift, cancelled; the first delivery failed and was retried): no phone number in any form the citizen could give, no name, no birth
/// date, no token, no booking code. Both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_number_name_birth_date_and_tokens_are_in_no_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let database = if on_postgres() {
        common::pg::shared().create_database()
    } else {
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        data.join("log.db").display().to_string()
    };
    let log = dir.path().join("server.log");
    // The first delivery fails: the sender's retry is logged too.
    let hook = Receiver::start(Some(1));
    let server = start_binary(&database, &hook.url, &log).await;
    let base = server.base.clone();
    let c = reqwest::Client::new();
    let admin = async |path: &str, body: Value| -> Value {
        let res = c
            .post(format!("{base}{path}"))
            .bearer_auth(common::ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap()
    };
    let now = chrono::Utc::now();
    let cohort = admin(
        "/api/v1/admin/cohorts",
        json!({
            "name": "c", "birth_year_from": 1950, "birth_year_to": 1975,
            "opens_at": (now - chrono::Duration::minutes(1)).to_rfc3339(),
            "closes_at": (now + chrono::Duration::days(1)).to_rfc3339(),
            "vaccine": "Moderna", "dose_interval_days": 28, "admission_rate_per_s": 100.0,
        }),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let center = admin(
        "/api/v1/admin/centers",
        json!({"name": "c", "region": "r", "address": "a"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let today = (now + chrono::Duration::hours(9)).date_naive();
    // Dose 1 on day 2, dose 2 on day 30, and room on day 37 for a 7-day shift of dose 2 (not
    // tomorrow: a reminder would join the messages after 09:00 in Seoul).
    let list: Vec<Value> = [2u64, 30, 37]
        .iter()
        .map(|d| json!({"date": (today + chrono::Days::new(*d)).to_string(), "start_time": "10:00", "end_time": "11:00", "capacity": 5, "vaccine": "Moderna"}))
        .collect();
    let slots = admin(
        &format!("/api/v1/admin/centers/{center}/slots"),
        json!({ "slots": list }),
    )
    .await;
    let slot = slots["slots"][0]["id"].as_i64().unwrap();

    let v: Value = c
        .post(format!("{base}/api/v1/cohorts/{cohort}/queue"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = v["ticket"].as_str().unwrap().to_string();
    let pass = until(Duration::from_secs(20), "admission", async || {
        let v: Value = c
            .get(format!("{base}/api/v1/queue"))
            .bearer_auth(&ticket)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["pass"].as_str().map(str::to_string)
    })
    .await;
    let (name, birth) = ("홍길동", "1963-05-17");
    // The forms a citizen could give the number in: the international one is refused (a
    // validation error must not echo it either), the dashed one is taken.
    let (digits, dashed, international) = ("01073512846", "010-7351-2846", "+82 10-7351-2846");
    let verify = async |phone: &str| {
        c.post(format!("{base}/api/v1/verifications"))
            .bearer_auth(&pass)
            .json(&json!({"name": name, "birth_date": birth, "phone": phone}))
            .send()
            .await
            .unwrap()
    };
    let refused = verify(international).await;
    assert!(refused.status().is_client_error(), "{}", refused.status());
    let res = verify(dashed).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let session = res.json::<Value>().await.unwrap()["session"]
        .as_str()
        .unwrap()
        .to_string();
    let res = c
        .post(format!("{base}/api/v1/bookings"))
        .bearer_auth(&session)
        .json(&json!({"slot_id": slot}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let code = res.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();
    let res = c
        .post(format!("{base}/api/v1/bookings/lookup"))
        .json(&json!({"code": code, "birth_date": birth}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // An operator's shift moves dose 2 (a "moved" message), then the citizen cancels.
    let job = admin(
        "/api/v1/admin/rebookings",
        json!({"vaccine": "Moderna", "second_dose_shift_days": 7}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    until(Duration::from_secs(30), "the shift done", async || {
        let v: Value = c
            .get(format!("{base}/api/v1/admin/rebookings/{job}"))
            .bearer_auth(common::ADMIN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["state"] == "done").then_some(())
    })
    .await;
    let res = c
        .post(format!("{base}/api/v1/bookings/{code}/cancel"))
        .json(&json!({"birth_date": birth}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Every message delivered, to the number given.
    let listed = until(Duration::from_secs(30), "every message sent", async || {
        let all: Vec<Value> = c
            .get(format!("{base}/api/v1/admin/notifications?booking={code}"))
            .bearer_auth(common::ADMIN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (all.len() == 3 && all.iter().all(|m| m["state"] == "sent")).then_some(all)
    })
    .await;
    let mut kinds: Vec<&str> = listed.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["booked", "cancelled", "moved"]);
    let bodies = hook.bodies();
    assert!(
        bodies.len() >= 4,
        "a failure and three deliveries: {bodies:?}"
    );
    assert!(bodies.iter().all(|b| b["to"] == digits), "{bodies:?}");
    // Stopped as an operator stops it, so that everything it logged is written.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "SIGTERM did not stop the server");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.is_empty(), "nothing was logged");
    println!(
        "{} lines of log scanned ({} bytes)",
        text.lines().count(),
        text.len()
    );
    if let Ok(keep) = std::env::var("KEEP_LOG") {
        std::fs::copy(&log, keep).unwrap();
    }
    // The scan reads what it should: the request lines of the journey and the debug lines.
    for route in [
        "route=/api/v1/cohorts/{id}/queue",
        "route=/api/v1/queue",
        "route=/api/v1/verifications",
        "route=/api/v1/bookings status=201",
        "route=/api/v1/bookings/lookup",
        "route=/api/v1/bookings/{code}/cancel",
        "route=/api/v1/admin/rebookings",
        "route=/api/v1/admin/notifications",
    ] {
        assert!(
            text.contains(route),
            "no request line of {route} in\n{text}"
        );
    }
    assert!(text.contains("status=422") || text.contains("status=400"));
    assert!(
        text.contains(" DEBUG "),
        "RUST_LOG=debug took no effect:\n{text}"
    );
    assert!(
        text.contains("attempt 1 failed"),
        "the retry's line:\n{text}"
    );
    let secrets = [
        digits.to_string(),
        dashed.to_string(),
        international.to_string(),
        "+821073512846".to_string(),
        "+82-10-7351-2846".to_string(),
        "1073512846".to_string(),
        "7351-2846".to_string(),
        "73512846".to_string(),
        name.to_string(),
        birth.to_string(),
        birth.replace('-', ""),
        ticket,
        pass.clone(),
        session,
        code,
        common::ADMIN.to_string(),
    ];
    for s in &secrets {
        let at = text.find(s.as_str());
        assert!(
            at.is_none(),
            "the log holds {s:?}: {}",
            at.map(|i| &text[text.floor_char_boundary(i.saturating_sub(200))..])
                .unwrap_or_default()
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// PostgreSQL: forgetting the phones (no live booking left) while a citizen books again, the
/// booking's transaction holding the citizen's row. A single `UPDATE … WHERE NOT EXISTS (live
/// booking)` waits for the row, then rechecks it against the bookings as they were when it
/// began, so it erased the phone the new booking's messages need (they ended `failed`: the
/// seeded simulation on PostgreSQL met one). The phone must stay.
#[actix_web::test]
async fn forgetting_phones_never_erases_the_phone_of_a_citizen_booking_at_that_moment() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, RunQueryDsl};
    if !on_postgres() {
        return; // SQLite has one writer at a time: the two never overlap.
    }
    let app = spawn_app_with(|_| {}).await;
    let code = booked(&app, 11).await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/bookings/{code}/cancel")))
        .json(&json!({"birth_date": "1965-03-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let reservation::db::Backend::Postgres(url) = app.database.clone() else {
        unreachable!()
    };
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count = |c: &mut diesel::PgConnection, sql: &str| -> i64 {
        diesel::sql_query(sql).get_result::<Count>(c).unwrap().n
    };
    // The citizen has a phone and, cancelled, no live booking: a candidate to forget.
    let mut writer = diesel::PgConnection::establish(&url).unwrap();
    let with_phone = "SELECT count(*) AS n FROM citizens WHERE phone_sealed IS NOT NULL";
    assert_eq!(count(&mut writer, with_phone), 1);
    // A booking again, as the writer's transaction does it: the citizen's row first (its
    // phone renewed), then the booking; not committed yet.
    writer
        .batch_execute(&format!(
            "BEGIN; \
             UPDATE citizens SET phone_sealed = phone_sealed; \
             INSERT INTO bookings (code, citizen_key, cohort_id, ticket_seq, vaccine, center_id, \
             first_slot_id, first_date, first_start, second_slot_id, second_date, second_start, \
             state, created_at) SELECT code || 'R', citizen_key, cohort_id, ticket_seq + 1, \
             vaccine, center_id, first_slot_id, first_date, first_start, second_slot_id, \
             second_date, second_start, 'confirmed', created_at FROM bookings \
             WHERE code = '{code}';"
        ))
        .unwrap();
    let today = (chrono::Utc::now() + chrono::Duration::hours(9))
        .date_naive()
        .to_string();
    let pool = app.state.pool.clone();
    let forgetting = std::thread::spawn(move || {
        let mut conn = pool.get().unwrap();
        reservation::db::outbox::forget_phones(&mut conn.conn(), &today).unwrap()
    });
    // Committed only once the housekeeping waits for the citizen's row.
    let mut watcher = diesel::PgConnection::establish(&url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(
        &mut watcher,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
         AND datname = current_database()",
    ) == 0
    {
        assert!(
            Instant::now() < deadline,
            "the housekeeping never waited for the row"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    writer.batch_execute("COMMIT").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !forgetting.is_finished() {
        assert!(Instant::now() < deadline, "the housekeeping never finished");
        std::thread::sleep(Duration::from_millis(10));
    }
    forgetting.join().unwrap();
    assert_eq!(
        count(&mut watcher, with_phone),
        1,
        "the phone of a citizen with a live booking was forgotten"
    );
}
