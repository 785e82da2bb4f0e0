//! `spawn_app()`: a whole server on port 0 over a fresh database, in its own actix system on
//! its own thread, so a test can stop it and start another on the same database (a restart).
//! Helpers drive the citizen journey over real HTTP.
//!
//! The backend is SQLite (a temporary file), or PostgreSQL when `TEST_BACKEND=postgres`: then
//! every test gets a database of its own on one throwaway server per test binary (`pg`).
#![allow(dead_code)]

pub mod pg;

use reqwest::{Client, Response, StatusCode};
use reservation::config::Config;
use reservation::db::Backend;
use reservation::startup::Application;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub const ADMIN: &str = "test-admin-token";

/// Whether this run tests the PostgreSQL backend (`TEST_BACKEND=postgres`).
pub fn on_postgres() -> bool {
    match std::env::var("TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("TEST_BACKEND must be sqlite or postgres, not {other}"),
    }
}

/// A fresh database for one test: a file in `dir`, or on PostgreSQL a new database on this
/// test binary's throwaway server.
pub fn fresh_database(dir: &std::path::Path) -> Backend {
    if on_postgres() {
        Backend::Postgres(pg::shared().create_database())
    } else {
        Backend::Sqlite(dir.join("data").join("test.db"))
    }
}

/// The settings every test server shares: the admin token, and (required on PostgreSQL) a
/// fixed secret.
pub fn test_config(database: Backend) -> Config {
    let mut config = Config::new(database);
    config.admin_token = Some(ADMIN.into());
    config.secret_key = Some("test-secret-key".into());
    config
}

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub database: Backend,
    /// The running server's state, for fault injection and direct inspection.
    pub state: actix_web::web::Data<reservation::startup::AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    // Kept last so the folder outlives the server.
    pub dir: std::sync::Arc<tempfile::TempDir>,
}

/// A server on a fresh database with default settings (fast simulated identity provider).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
    let database = fresh_database(dir.path());
    start(dir, database, tweak)
}

/// A server on a database of the caller's choosing (a PostgreSQL server a test kills, say).
pub async fn spawn_app_on(database: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
    start(dir, database, tweak)
}

fn start(
    dir: std::sync::Arc<tempfile::TempDir>,
    database: Backend,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = test_config(database.clone());
    config.identity.latency_ms = 1;
    config.workers = 2;
    tweak(&mut config);
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            match Application::build(config).await {
                Ok(app) => {
                    let handle = app.handle();
                    tx.send(Ok((app.port(), app.state()))).ok();
                    actix_web::rt::spawn(app.run_until_stopped());
                    let _ = stop_rx.await;
                    // Not graceful: like a crash, nothing in flight is waited for.
                    handle.stop(false).await;
                }
                Err(e) => {
                    tx.send(Err(e)).ok();
                }
            }
        });
    });
    let (port, state) = rx.recv().expect("server thread").expect("server starts");
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        client: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        database,
        state,
        stop: Some(stop_tx),
        thread: Some(thread),
        dir,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TestApp {
    /// Stops this server (its actors and HTTP workers) and starts a new one on the same
    /// database and data folder.
    pub fn restart(mut self) -> TestApp {
        let dir = self.dir.clone();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread ends");
        }
        let database = self.database.clone();
        drop(self);
        start(dir, database, |_| {})
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn admin_get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("request")
    }

    /// A cohort born 1960–1970 on Moderna, 28 days between doses, open since a minute ago.
    pub async fn open_cohort(&self, rate: f64) -> i64 {
        let now = chrono::Utc::now();
        self.cohort_opening_at(now - chrono::Duration::minutes(1), rate)
            .await
    }

    pub async fn cohort_opening_at(&self, opens: chrono::DateTime<chrono::Utc>, rate: f64) -> i64 {
        let body = json!({
            "name": "test cohort",
            "birth_year_from": 1960,
            "birth_year_to": 1970,
            "opens_at": opens.to_rfc3339(),
            "closes_at": (opens + chrono::Duration::days(10)).to_rfc3339(),
            "vaccine": "Moderna",
            "dose_interval_days": 28,
            "admission_rate_per_s": rate,
        });
        let res = self.admin_post("/api/v1/admin/cohorts", body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.expect("json")["id"]
            .as_i64()
            .expect("id")
    }

    pub async fn center(&self, region: &str) -> i64 {
        let body = json!({"name": "센터", "region": region, "address": "어딘가 1"});
        let res = self.admin_post("/api/v1/admin/centers", body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.expect("json")["id"]
            .as_i64()
            .expect("id")
    }

    /// Adds Moderna slots (day offset from tomorrow, "HH:MM", capacity); returns their ids.
    pub async fn slots(&self, center: i64, slots: &[(u64, &str, i64)]) -> Vec<i64> {
        self.slots_of(center, "Moderna", slots).await
    }

    /// Adds slots of any vaccine (day offset from tomorrow, "HH:MM", capacity).
    pub async fn slots_of(
        &self,
        center: i64,
        vaccine: &str,
        slots: &[(u64, &str, i64)],
    ) -> Vec<i64> {
        let tomorrow =
            (chrono::Utc::now() + chrono::Duration::hours(9)).date_naive() + chrono::Days::new(1);
        let body: Vec<Value> = slots
            .iter()
            .map(|(d, t, cap)| {
                let (h, m) = t.split_once(':').unwrap();
                let end = format!("{:02}:{m}", h.parse::<u32>().unwrap() + 1);
                json!({"date": (tomorrow + chrono::Days::new(*d)).to_string(), "start_time": t, "end_time": end, "capacity": cap, "vaccine": vaccine})
            })
            .collect();
        let res = self
            .admin_post(
                &format!("/api/v1/admin/centers/{center}/slots"),
                json!({"slots": body}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let v: Value = res.json().await.expect("json");
        v["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_i64().unwrap())
            .collect()
    }

    /// A first-dose slot on day 0 and its second on day 28, `cap` places each.
    pub async fn pair(&self, center: i64, cap: i64) -> (i64, i64) {
        let ids = self
            .slots(center, &[(0, "10:00", cap), (28, "10:00", cap)])
            .await;
        (ids[0], ids[1])
    }

    pub async fn join(&self, cohort: i64) -> Value {
        let res = self
            .client
            .post(self.url(&format!("/api/v1/cohorts/{cohort}/queue")))
            .send()
            .await
            .expect("join");
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.expect("json")
    }

    pub async fn poll(&self, ticket: &str) -> Value {
        let res = self
            .client
            .get(self.url("/api/v1/queue"))
            .bearer_auth(ticket)
            .send()
            .await
            .expect("poll");
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.expect("json")
    }

    /// Polls until the ticket is admitted (or 20 s pass) and returns its pass.
    pub async fn pass_for(&self, ticket: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.poll(ticket).await;
            if v["state"] == "admitted" {
                return v["pass"].as_str().expect("pass").to_string();
            }
            assert!(Instant::now() < deadline, "never admitted: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn verify(&self, pass: &str, name: &str, birth: &str, phone: &str) -> Response {
        self.client
            .post(self.url("/api/v1/verifications"))
            .bearer_auth(pass)
            .json(&json!({"name": name, "birth_date": birth, "phone": phone}))
            .send()
            .await
            .expect("verify")
    }

    /// Joins, waits for admission, verifies citizen number `n`, returns the session.
    pub async fn session(&self, cohort: i64, n: u32) -> String {
        let ticket = self.join(cohort).await["ticket"]
            .as_str()
            .unwrap()
            .to_string();
        let pass = self.pass_for(&ticket).await;
        let res = self
            .verify(
                &pass,
                &format!("시민{n}"),
                "1965-03-01",
                &format!("010-{:04}-{:04}", 1000 + n / 10000, n % 10000),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "verify");
        res.json::<Value>().await.unwrap()["session"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn book(&self, session: &str, slot: i64, idem: Option<&str>) -> Response {
        let mut req = self
            .client
            .post(self.url("/api/v1/bookings"))
            .bearer_auth(session)
            .json(&json!({"slot_id": slot}));
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        req.send().await.expect("book")
    }

    pub async fn slot_remaining(&self, center: i64, slot: i64) -> i64 {
        let v: Value = self
            .client
            .get(self.url(&format!("/api/v1/centers/{center}/slots")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == slot)
            .expect("slot listed")["remaining"]
            .as_i64()
            .unwrap()
    }
}

/// Asserts the contract's error shape and code.
pub async fn assert_error(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status for {code}");
    let v: Value = res.json().await.expect("json error body");
    assert_eq!(v["error"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}
