//! The citizen's whole journey over HTTP, the idempotent repeat, concurrent bookings, and a
//! restart that keeps bookings and tickets.

mod common;

use common::{assert_error, spawn_app};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn a_citizen_joins_polls_verifies_books_looks_up_and_cancels() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, second) = app.pair(center, 5).await;

    let joined = app.join(cohort).await;
    assert!(joined["ticket"].is_string());
    assert!(joined["poll_after_seconds"].as_u64().unwrap() >= 1);
    let ticket = joined["ticket"].as_str().unwrap();
    let pass = app.pass_for(ticket).await;
    let polled = app.poll(ticket).await;
    assert_eq!(polled["position"], 0);
    assert_eq!(polled["pass"], pass.as_str(), "the same pass on every poll");
    assert!(polled["pass_expires_at"].is_string());

    let res = app
        .verify(&pass, "김민영", "1965-03-01", "010-1234-5678")
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["cohort_id"], cohort);
    let session = v["session"].as_str().unwrap();

    let res = app.book(session, first, None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let booking: Value = res.json().await.unwrap();
    assert_eq!(booking["state"], "confirmed");
    assert_eq!(booking["first_dose"]["slot_id"], first);
    assert_eq!(booking["second_dose"]["slot_id"], second);
    assert_eq!(booking["name"], "김*영");
    assert_eq!(app.slot_remaining(center, first).await, 4);
    assert_eq!(app.slot_remaining(center, second).await, 4);
    let code = booking["code"].as_str().unwrap();

    let res = app
        .client
        .post(app.url("/api/v1/bookings/lookup"))
        .json(&json!({"code": code, "birth_date": "1965-03-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "confirmed");
    let res = app
        .client
        .post(app.url("/api/v1/bookings/lookup"))
        .json(&json!({"code": code, "birth_date": "1965-03-02"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "not_found").await;

    let res = app
        .client
        .post(app.url(&format!("/api/v1/bookings/{code}/cancel")))
        .json(&json!({"birth_date": "1965-03-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "cancelled");
    assert_eq!(
        app.slot_remaining(center, first).await,
        5,
        "first place back"
    );
    assert_eq!(
        app.slot_remaining(center, second).await,
        5,
        "second place back"
    );
    // A second cancel changes nothing more.
    let res = app
        .client
        .post(app.url(&format!("/api/v1/bookings/{code}/cancel")))
        .json(&json!({"birth_date": "1965-03-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.slot_remaining(center, first).await, 5);

    let res = app
        .admin_get(&format!("/api/v1/admin/bookings/{code}"))
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["state"], "cancelled");
    let stats: Value = app
        .admin_get("/api/v1/admin/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["bookings_confirmed"], 0);
    assert_eq!(stats["bookings_cancelled"], 1);
    assert_eq!(stats["cohorts"][0]["admitted"], 1);
    assert_eq!(stats["cohorts"][0]["verified"], 1);

    // After cancelling, the citizen may book again.
    let res = app.book(session, first, None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_repeat_with_the_same_idempotency_key_returns_the_first_booking_and_books_nothing() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, _) = app.pair(center, 5).await;
    let session = app.session(cohort, 1).await;

    let a: Value = app
        .book(&session, first, Some("key-1"))
        .await
        .json()
        .await
        .unwrap();
    let res = app.book(&session, first, Some("key-1")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let b: Value = res.json().await.unwrap();
    assert_eq!(a, b);
    assert_eq!(
        app.slot_remaining(center, first).await,
        4,
        "one place taken, not two"
    );
    // Another key is a second booking: refused.
    assert_error(
        app.book(&session, first, Some("key-2")).await,
        409,
        "already_booked",
    )
    .await;
}

#[tokio::test]
async fn a_key_whose_first_attempt_failed_is_tried_afresh() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, _) = app.pair(center, 1).await;
    let other = app
        .slots(center, &[(1, "10:00", 1), (29, "10:00", 1)])
        .await[0];
    let (s1, s2) = (app.session(cohort, 1).await, app.session(cohort, 2).await);
    assert_eq!(
        app.book(&s1, first, None).await.status(),
        StatusCode::CREATED
    );
    assert_error(app.book(&s2, first, Some("k")).await, 409, "slot_full").await;
    assert_eq!(
        app.book(&s2, other, Some("k")).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn concurrent_bookings_never_take_more_places_than_a_slot_has() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(5000.0).await;
    let center = app.center("서울").await;
    let (first, second) = app.pair(center, 7).await;
    // Places elsewhere, so the waiting room keeps admitting everyone who races.
    app.slots(center, &[(3, "10:00", 100), (31, "10:00", 100)])
        .await;
    let mut sessions = Vec::new();
    for n in 0..30 {
        sessions.push(app.session(cohort, n).await);
    }
    let answers =
        futures_util::future::join_all(sessions.iter().map(|s| app.book(s, first, None))).await;
    let created = answers
        .iter()
        .filter(|r| r.status() == StatusCode::CREATED)
        .count();
    let full = answers
        .iter()
        .filter(|r| r.status() == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, full), (7, 23));
    assert_eq!(app.slot_remaining(center, first).await, 0);
    assert_eq!(app.slot_remaining(center, second).await, 0);
    let stats: Value = app
        .admin_get("/api/v1/admin/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["bookings_confirmed"], 7);
}

#[tokio::test]
async fn a_restart_keeps_bookings_tickets_and_slot_counts() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("부산").await;
    let (first, _) = app.pair(center, 5).await;
    let session = app.session(cohort, 1).await;
    let booking: Value = app.book(&session, first, None).await.json().await.unwrap();
    let code = booking["code"].as_str().unwrap().to_string();
    let admitted = app.join(cohort).await["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let pass = app.pass_for(&admitted).await;
    // A paused cohort keeps later tickets waiting with a known position.
    let res = app
        .client
        .patch(app.url(&format!("/api/v1/admin/cohorts/{cohort}")))
        .bearer_auth(common::ADMIN)
        .json(&json!({"paused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let waiting: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                app.join(cohort).await["ticket"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        v
    };
    let before: Vec<Value> =
        futures_util::future::join_all(waiting.iter().map(|t| app.poll(t))).await;

    // Every ticket handed out is on record before its join is answered: nothing to wait for.
    let app = app.restart();

    let res = app
        .client
        .post(app.url("/api/v1/bookings/lookup"))
        .json(&json!({"code": code, "birth_date": "1965-03-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the booking survived");
    assert_eq!(
        app.slot_remaining(center, first).await,
        4,
        "the count agrees with the bookings"
    );
    let again = app.poll(&admitted).await;
    assert_eq!(again["state"], "admitted", "admitted stays admitted");
    assert_eq!(again["pass"], pass.as_str(), "and keeps its pass");
    for (t, b) in waiting.iter().zip(&before) {
        let a = app.poll(t).await;
        assert_eq!(a["state"], "waiting");
        assert!(
            a["position"].as_u64().unwrap() <= b["position"].as_u64().unwrap(),
            "{a} vs {b}"
        );
    }
    // A session from before the restart still works, and still holds its one booking.
    assert_error(app.book(&session, first, None).await, 409, "already_booked").await;
    // New tickets never reuse a number, and the numbers the old server reserved but never
    // handed out are nobody: the next joiner is right behind the last one before the restart.
    let fresh = app.join(cohort).await;
    assert_eq!(
        fresh["position"].as_u64().unwrap(),
        before.last().unwrap()["position"].as_u64().unwrap() + 1
    );
}

#[tokio::test]
async fn on_a_split_day_only_birth_days_ending_in_its_digits_verify_and_others_learn_their_day() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    let today = (now + chrono::Duration::hours(9)).date_naive();
    let tomorrow = today + chrono::Days::new(1);
    let body = json!({
        "name": "split", "birth_year_from": 1960, "birth_year_to": 1970,
        "opens_at": (now - chrono::Duration::minutes(1)).to_rfc3339(),
        "closes_at": (now + chrono::Duration::days(3)).to_rfc3339(),
        "vaccine": "Moderna", "dose_interval_days": 28, "admission_rate_per_s": 1000.0,
        "birth_day_schedule": [{"date": today.to_string(), "digits": [9]}, {"date": tomorrow.to_string(), "digits": [5]}],
    });
    let res = app.admin_post("/api/v1/admin/cohorts", body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let cohort = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let center = app.center("서울").await;
    app.pair(center, 10).await;

    let ticket = app.join(cohort).await["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let pass = app.pass_for(&ticket).await;
    let refused = assert_error(
        app.verify(&pass, "김민영", "1965-03-15", "010-1234-5678")
            .await,
        403,
        "not_eligible",
    )
    .await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains(&tomorrow.to_string()),
        "{refused}"
    );
    let res = app
        .verify(&pass, "이수진", "1965-03-19", "010-1234-5679")
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "a birth day ending in 9 is today's"
    );
}

#[tokio::test]
async fn metrics_show_queue_pool_and_store_figures_with_latency_histograms() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, _) = app.pair(center, 5).await;
    let session = app.session(cohort, 1).await;
    assert_eq!(
        app.book(&session, first, None).await.status(),
        StatusCode::CREATED
    );

    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    // Every sample carries the node's name (NODE_NAME, by default the bind address) first.
    let node = regex::Regex::new(r#"node="[^"]*",?"#).unwrap();
    assert!(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .all(|l| node.is_match(l)),
        "a sample without its node:\n{text}"
    );
    let value = |line: &str| -> f64 {
        text.lines()
            .map(|l| node.replace(l, "").replace("{}", ""))
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
    };
    assert_eq!(
        value(&format!("queue_admitted_total{{cohort=\"{cohort}\"}}")),
        1.0
    );
    assert_eq!(value("identity_outcomes_total{outcome=\"vouched\"}"), 1.0);
    assert_eq!(value("identity_call_seconds_count"), 1.0);
    assert_eq!(value("identity_call_seconds_bucket{le=\"+Inf\"}"), 1.0);
    assert_eq!(value("bookings_created_total"), 1.0);
    assert!(
        value("store_commit_seconds_count") >= 3.0,
        "cohort, center, slots, claim, booking"
    );
    assert_eq!(value("identity_breaker_state"), 0.0);
    // Every name `/metrics` had before it went through the metrics facade, each with its
    // HELP and TYPE, and the process's own figures.
    for name in [
        "bookings_created_total",
        "http_in_flight",
        "http_responses_total",
        "http_shed_total",
        "identity_breaker_state",
        "identity_call_seconds",
        "identity_events_total",
        "identity_in_flight",
        "identity_max_in_flight",
        "identity_max_waiting",
        "identity_outcomes_total",
        "identity_waiting",
        "queue_admission_rate",
        "queue_admitted_total",
        "queue_joins_total",
        "queue_passed_over_total",
        "queue_polls_total",
        "queue_returned_total",
        "queue_sold_out",
        "queue_verified_total",
        "queue_waiting",
        "store_commit_seconds",
        "store_commits_total",
        "store_failed_commits_total",
        "store_largest_batch",
        "store_pending",
        "store_writes_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
    ] {
        for line in ["HELP", "TYPE"].map(|k| format!("# {k} {name} ")) {
            assert!(
                text.lines().any(|l| l.starts_with(&line)),
                "{line} in\n{text}"
            );
        }
    }
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(text.contains("# TYPE store_commit_seconds histogram"));
    assert!(text.contains("# TYPE http_responses_total counter"));
}

#[tokio::test]
async fn the_openapi_document_is_served_and_names_every_path_of_the_contract() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api-docs/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/api-docs/openapi.json", "get"),
        ("/api/v1/admin/cohorts", "post"),
        ("/api/v1/admin/cohorts", "get"),
        ("/api/v1/admin/cohorts/{id}", "patch"),
        ("/api/v1/admin/centers", "post"),
        ("/api/v1/admin/centers", "get"),
        ("/api/v1/admin/centers/{id}/slots", "post"),
        ("/api/v1/admin/bookings/{code}", "get"),
        ("/api/v1/admin/stats", "get"),
        ("/api/v1/cohorts", "get"),
        ("/api/v1/cohorts/{id}/queue", "post"),
        ("/api/v1/queue", "get"),
        ("/api/v1/verifications", "post"),
        ("/api/v1/centers", "get"),
        ("/api/v1/centers/{id}/slots", "get"),
        ("/api/v1/bookings", "post"),
        ("/api/v1/bookings/lookup", "post"),
        ("/api/v1/bookings/{code}/cancel", "post"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
    // The chain a citizen follows is linked: join -> poll -> verify -> book.
    let link = |path: &str, method: &str, status: &str, name: &str| {
        paths[path][method]["responses"][status]["links"][name]["operationId"].clone()
    };
    assert_eq!(
        link("/api/v1/cohorts/{id}/queue", "post", "201", "poll"),
        "poll"
    );
    assert_eq!(link("/api/v1/queue", "get", "200", "verify"), "verify");
    assert_eq!(link("/api/v1/verifications", "post", "201", "book"), "book");
    let book_errors = &paths["/api/v1/bookings"]["post"]["responses"]["409"]["content"]
        ["application/json"]["schema"]["properties"]["error"]["enum"];
    assert_eq!(
        book_errors,
        &json!([
            "slot_full",
            "already_booked",
            "no_second_dose_slot",
            "wrong_vaccine"
        ])
    );
}

#[tokio::test]
async fn a_citizen_joining_an_idle_open_queue_is_told_an_eta_and_a_short_poll_at_once() {
    let app = spawn_app().await;
    let center = app.center("서울").await;
    app.pair(center, 10).await;
    // Nobody was ever admitted: no admission was measured yet.
    let cohort = app.open_cohort(2.0).await;
    let v = app.join(cohort).await;
    assert_eq!(v["state"], "waiting", "{v}");
    assert!(
        v["eta_seconds"].is_u64(),
        "no ETA for the front of the line: {v}"
    );
    assert_eq!(v["poll_after_seconds"], 1, "{v}");
}

#[tokio::test]
async fn stats_count_people_admitted_not_ticket_numbers_across_a_restart() {
    let app = spawn_app().await;
    let center = app.center("서울").await;
    app.pair(center, 10).await;
    let cohort = app.open_cohort(100.0).await;
    for _ in 0..2 {
        let t = app.join(cohort).await["ticket"]
            .as_str()
            .unwrap()
            .to_string();
        app.pass_for(&t).await;
    }
    let admitted = |v: &Value| v["cohorts"][0]["admitted"].as_u64();
    let stats: Value = app
        .admin_get("/api/v1/admin/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admitted(&stats), Some(2), "{stats}");
    assert_eq!(stats["nodes"].as_array().map(Vec::len), Some(1), "{stats}");
    let app = app.restart();
    let stats: Value = app
        .admin_get("/api/v1/admin/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admitted(&stats), Some(2), "after a restart: {stats}");
    let t = app.join(cohort).await["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    app.pass_for(&t).await;
    let stats: Value = app
        .admin_get("/api/v1/admin/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admitted(&stats), Some(3), "{stats}");
    assert_eq!(stats["cohorts"][0]["waiting"], 0, "{stats}");
}

/// Issue 17, over HTTP: a ticket that stopped polling is passed over when its turn comes (the
/// one behind it admitted first, the rate spent on the present only), and when it polls again
/// it is told it is next and is admitted beside the line.
#[tokio::test]
async fn a_ticket_that_stopped_polling_is_passed_over_and_admitted_when_it_polls_again() {
    let app = common::spawn_app_with(|c| c.absent_after_s = 2).await;
    let center = app.center("서울").await;
    app.pair(center, 10).await;
    let cohort = app.open_cohort(2.0).await;
    let pause = |paused: bool| {
        app.client
            .patch(app.url(&format!("/api/v1/admin/cohorts/{cohort}")))
            .bearer_auth(common::ADMIN)
            .json(&serde_json::json!({ "paused": paused }))
            .send()
    };
    assert_eq!(pause(true).await.unwrap().status(), 200);
    let tickets: Vec<String> = {
        let mut t = Vec::new();
        for _ in 0..3 {
            t.push(
                app.join(cohort).await["ticket"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        t
    };
    // Tickets 0 and 2 poll for three seconds; ticket 1 is silent.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < until {
        app.poll(&tickets[0]).await;
        app.poll(&tickets[2]).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert_eq!(pause(false).await.unwrap().status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut states = (String::new(), String::new());
    while std::time::Instant::now() < deadline {
        let a = app.poll(&tickets[0]).await;
        let c = app.poll(&tickets[2]).await;
        states = (
            a["state"].as_str().unwrap().to_string(),
            c["state"].as_str().unwrap().to_string(),
        );
        if states == ("admitted".into(), "admitted".into()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(states, ("admitted".into(), "admitted".into()));
    let stats: serde_json::Value = app
        .admin_get("/api/v1/admin/stats")
        .await
        .json()
        .await
        .unwrap();
    let row = stats["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == cohort)
        .unwrap()
        .clone();
    assert_eq!(
        row["admitted"], 2,
        "the rate went to the present only: {row}"
    );
    // Back: next at once, then admitted beside the line.
    let back = app.poll(&tickets[1]).await;
    assert_eq!(
        (&back["state"], &back["position"]),
        (&"waiting".into(), &1.into()),
        "{back}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut last = back;
    while last["state"] != "admitted" && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        last = app.poll(&tickets[1]).await;
    }
    assert_eq!(last["state"], "admitted", "{last}");
    assert!(last["pass"].is_string(), "{last}");
}

#[tokio::test]
async fn a_request_id_sent_comes_back_and_one_is_made_when_absent_or_unsafe() {
    let app = spawn_app().await;
    let id_of = |res: &reqwest::Response| {
        res.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .expect("every answer names its request")
    };
    let res = app
        .client
        .get(app.url("/api/v1/cohorts"))
        .header("X-Request-Id", "complaint-4711.a_b:c")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(id_of(&res), "complaint-4711.a_b:c", "the caller's id, kept");
    // An error answer carries it too.
    let res = app
        .client
        .get(app.url("/api/v1/no-such-thing"))
        .header("X-Request-Id", "lost-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(id_of(&res), "lost-1");
    let safe = regex::Regex::new(r"^[0-9a-f]{16}$").unwrap();
    for unsafe_id in ["two words", "a\"b", &"x".repeat(65)] {
        let res = app
            .client
            .get(app.url("/healthz"))
            .header("X-Request-Id", unsafe_id)
            .send()
            .await
            .unwrap();
        let id = id_of(&res);
        assert!(
            safe.is_match(&id),
            "{unsafe_id:?} replaced by a new id, not {id:?}"
        );
    }
    let (a, b) = (
        id_of(&app.client.get(app.url("/healthz")).send().await.unwrap()),
        id_of(&app.client.get(app.url("/healthz")).send().await.unwrap()),
    );
    assert!(safe.is_match(&a) && safe.is_match(&b) && a != b, "{a} {b}");
}
