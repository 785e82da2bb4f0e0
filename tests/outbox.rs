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
async fn booked(app: &TestApp, n: u32) -> String {
    let cohort = app.open_cohort(100.0).await;
    let center = app.center("서울").await;
    let (first, _) = app.pair(center, 10).await;
    let session = app.session(cohort, n).await;
    let res = app.book(&session, first, None).await;
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
    let hook = Receiver::start(None);
    let app = spawn_app_with(|c| {
        c.notify.webhook_url = Some(hook.url.clone());
        c.notify.retry.base_backoff = Duration::from_secs(600);
    })
    .await;
    let cohort = app.open_cohort(100.0).await;
    let center = app.center("서울").await;
    let (first, _) = app.pair(center, 10).await;
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

/// Tomorrow in Seoul, as the reminders' scan takes it.
fn tomorrow() -> String {
    ((chrono::Utc::now() + chrono::Duration::hours(9)).date_naive() + chrono::Days::new(1))
        .to_string()
}

#[actix_web::test]
async fn a_reminder_is_written_once_the_day_before_and_a_cancellation_takes_it_back() {
    // A receiver that never takes anything: what is written stays pending, to be looked at.
    let hook = Receiver::start(None);
    let app = spawn_app_with(|c| {
        c.notify.webhook_url = Some(hook.url.clone());
        c.notify.retry.base_backoff = Duration::from_secs(600);
    })
    .await;
    // `booked` books a first dose tomorrow and a second in four weeks.
    let code = booked(&app, 12).await;
    let scan = |app: &TestApp| {
        let mut conn = app.state.pool.get().unwrap();
        let now = chrono::Utc::now().timestamp();
        reservation::db::outbox::scan_reminders(&mut conn.conn(), &tomorrow(), now).unwrap()
    };
    // The notifier may have scanned already (after 18:00 in Seoul); either way one is there,
    // for the first dose only, and a second scan writes none.
    let first = scan(&app);
    assert!(first <= 1, "{first} reminders written for one booking");
    assert_eq!(scan(&app), 0, "a second scan wrote the reminder again");
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
    assert_eq!(scan(&app), 0, "a cancelled booking was reminded");
    assert_eq!(
        kinds(&notifications(&app, &code).await),
        ["booked", "cancelled"]
    );
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
