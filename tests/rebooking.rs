//! Supply changes and rebooking over HTTP (API 1.1): a second-dose shift moves every live
//! booking's second dose by the rule (same center nearest day, then another center of the
//! region, else `needs_rebooking`), a slot shrunk or cancelled moves the bookings that no
//! longer fit (the latest booked first), the job's progress, every new endpoint's errors, a
//! job racing citizens' bookings never overbooks, and a job resumed after a restart moves no
//! booking twice. On SQLite, or on PostgreSQL with `TEST_BACKEND=postgres` (see `common`).

mod common;

use common::{assert_error, spawn_app, TestApp, ADMIN};
use reqwest::StatusCode;
use reservation::actors::booking_store::{Persist, Write, Written};
use reservation::db::rebooking::{self, RebookWrite, RebookWritten};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn day(offset: u64) -> String {
    ((chrono::Utc::now() + chrono::Duration::hours(9)).date_naive() + chrono::Days::new(1 + offset))
        .to_string()
}

/// Books `n` citizens (numbered from `from`) at `slot`; their codes, in booking order.
async fn book_n(app: &TestApp, cohort: i64, slot: i64, from: u32, n: u32) -> Vec<String> {
    let mut codes = Vec::new();
    for i in from..from + n {
        let session = app.session(cohort, i).await;
        let res = app.book(&session, slot, None).await;
        assert_eq!(res.status(), StatusCode::CREATED, "booking {i}");
        let v: Value = res.json().await.unwrap();
        codes.push(v["code"].as_str().unwrap().to_string());
    }
    codes
}

async fn booking(app: &TestApp, code: &str) -> Value {
    let res = app
        .admin_get(&format!("/api/v1/admin/bookings/{code}"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// The kinds of a booking's notifications, oldest first, reminders left out: the housekeeping
/// writes one for a first dose tomorrow from 09:00 in Seoul, whenever its minute comes.
async fn kinds(app: &TestApp, code: &str) -> Vec<String> {
    let res = app
        .admin_get(&format!("/api/v1/admin/notifications?booking={code}"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let list: Vec<Value> = res.json().await.unwrap();
    let mut out: Vec<(String, String)> = list
        .iter()
        .filter(|m| m["kind"] != "reminder")
        .map(|m| {
            (
                m["created_at"].as_str().unwrap_or("").to_string(),
                m["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, k)| k).collect()
}

async fn patch_slot(app: &TestApp, slot: i64, body: Value) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/api/v1/admin/slots/{slot}")))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn shift(app: &TestApp, vaccine: &str, days: i64) -> i64 {
    let res = app
        .admin_post(
            "/api/v1/admin/rebookings",
            json!({"vaccine": vaccine, "second_dose_shift_days": days}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

/// Polls the job until it is done (30 s at most); its last answer.
async fn wait_done(app: &TestApp, job: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = app
            .admin_get(&format!("/api/v1/admin/rebookings/{job}"))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["id"], job);
        if v["state"] == "done" {
            return v;
        }
        assert_eq!(v["state"], "running", "{v}");
        assert!(Instant::now() < deadline, "job never done: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// No slot over capacity, and every slot row's places equal to its live bookings'.
fn assert_places_exact(app: &TestApp) {
    let mut pooled = app.state.pool.get().unwrap();
    let bad = rebooking::slots_out_of_step(&mut pooled.conn()).unwrap();
    assert!(
        bad.is_empty(),
        "slots over capacity or out of step: {bad:?}"
    );
}

/// Polls a slot's listed places until they are `want` (2 s at most).
async fn wait_remaining(app: &TestApp, center: i64, slot: i64, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let got = app.slot_remaining(center, slot).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "slot {slot}: {got} left, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_second_dose_shift_moves_each_second_dose_by_the_rule() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(500.0).await;
    let a = app.center("서울").await;
    let b = app.center("서울").await;
    let elsewhere = app.center("부산").await;
    // Dose 1 on day 0, dose 2 on day 28 (the cohort's interval), 10:00.
    let s = app.slots(a, &[(0, "10:00", 10), (28, "10:00", 10)]).await;
    // The shift's target is day 42 at 10:00: 2 places there, 1 at 09:00 the same day, 1 on
    // day 44, none within 7 days after at A beyond those; 1 at B (same region) on day 42;
    // Busan has room but is another region.
    let t = app
        .slots(
            a,
            &[
                (42, "10:00", 2),
                (42, "09:00", 1),
                (44, "10:00", 1),
                (50, "10:00", 9),
            ],
        )
        .await;
    let at_b = app.slots(b, &[(43, "10:00", 1)]).await[0];
    app.slots(elsewhere, &[(42, "10:00", 9)]).await;
    let codes = book_n(&app, cohort, s[0], 1, 6).await;

    let job = shift(&app, "Moderna", 14).await;
    let done = wait_done(&app, job).await;
    // The list has it too, first, as its own endpoint shows it.
    let res = app.admin_get("/api/v1/admin/rebookings").await;
    assert_eq!(res.status(), StatusCode::OK);
    let listed: Vec<Value> = res.json().await.unwrap();
    assert_eq!(listed.first(), Some(&done), "{listed:?}");
    assert_eq!(done["total"], 6, "{done}");
    assert_eq!(done["moved"], 5, "{done}");
    assert_eq!(done["unmovable"], 1, "{done}");

    // Bookings in id order: the first two get the same start time on the target day, the
    // third the other time that day, the fourth the nearest later day, the fifth the other
    // center of the region, the sixth nothing.
    let want = [(t[0], a), (t[0], a), (t[1], a), (t[2], a), (at_b, b)];
    for (code, (slot, center)) in codes.iter().zip(want) {
        let v = booking(&app, code).await;
        assert_eq!(v["state"], "confirmed", "{v}");
        assert_eq!(v["second_dose"]["slot_id"], slot, "{v}");
        assert_eq!(v["second_dose"]["center_id"], center, "{v}");
        assert_eq!(v["first_dose"]["slot_id"], s[0], "dose 1 stays: {v}");
        let moved = v["moved"].as_array().expect("moved");
        assert_eq!(moved.len(), 1, "{v}");
        assert_eq!(moved[0]["dose"], 2);
        assert_eq!(moved[0]["from"]["slot_id"], s[1]);
        assert_eq!(moved[0]["from"]["date"], day(28));
        assert_eq!(moved[0]["to"]["slot_id"], slot);
        assert!(moved[0]["at"].as_str().is_some());
    }
    let last = booking(&app, &codes[5]).await;
    assert_eq!(last["state"], "needs_rebooking", "{last}");
    assert!(last.get("moved").is_none(), "{last}");
    // Each change put its message in the outbox, in the move's transaction.
    assert_eq!(kinds(&app, &codes[0]).await, ["booked", "moved"]);
    assert_eq!(kinds(&app, &codes[5]).await, ["booked", "needs_rebooking"]);
    // Its places are freed, and it no longer counts as the citizen's live booking: the
    // citizen books again (the same identity: citizen 6).
    wait_remaining(&app, a, s[0], 10 - 5).await;
    wait_remaining(&app, a, s[1], 10).await;
    wait_remaining(&app, a, t[0], 0).await;
    let again = app.session(cohort, 6).await;
    let res = app.book(&again, s[0], None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_places_exact(&app);
    // The old code, cancelled by its citizen, is cancelled for real, told, and gives nothing
    // back (it held nothing): the places stay those of the live bookings.
    let res = app
        .client
        .post(app.url(&format!("/api/v1/bookings/{}/cancel", codes[5])))
        .json(&json!({"birth_date": "1965-03-01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(booking(&app, &codes[5]).await["state"], "cancelled");
    let mut told = kinds(&app, &codes[5]).await;
    told.sort(); // within one second, `kinds`' order is the names'
    assert_eq!(told, ["booked", "cancelled", "needs_rebooking"]);
    wait_remaining(&app, a, s[0], 10 - 6).await;
    assert_places_exact(&app);
}

#[tokio::test]
async fn lowering_a_capacity_moves_the_latest_booked_first() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(500.0).await;
    let a = app.center("서울").await;
    let s = app
        .slots(
            a,
            &[
                (0, "10:00", 4),
                (28, "10:00", 10),
                (1, "10:00", 5),
                (29, "10:00", 5),
            ],
        )
        .await;
    let codes = book_n(&app, cohort, s[0], 1, 4).await;

    let res = patch_slot(&app, s[0], json!({"capacity": 2})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["id"], s[0]);
    assert_eq!(v["capacity"], 2);
    assert_eq!(v["cancelled"], false);
    let job = v["rebooking"]["id"].as_i64().expect("a job");
    let done = wait_done(&app, job).await;
    assert_eq!(
        (done["total"].as_i64(), done["moved"].as_i64()),
        (Some(2), Some(2))
    );
    // The two booked last moved to day 1; their second dose (day 28) no longer keeps the
    // interval from day 1 (day 29 to 36), so it moved to day 29.
    for code in &codes[..2] {
        let v = booking(&app, code).await;
        assert_eq!(v["first_dose"]["slot_id"], s[0], "kept: {v}");
        assert!(v.get("moved").is_none());
    }
    for code in &codes[2..] {
        let v = booking(&app, code).await;
        assert_eq!(v["first_dose"]["slot_id"], s[2], "{v}");
        let moved = v["moved"].as_array().unwrap();
        assert_eq!(moved.len(), 2, "{v}");
        assert_eq!(moved[0]["dose"], 1);
        assert_eq!(moved[1]["dose"], 2);
        assert_eq!(v["second_dose"]["slot_id"], s[3], "{v}");
        assert_eq!(moved[1]["from"]["slot_id"], s[1]);
    }
    wait_remaining(&app, a, s[0], 0).await;
    wait_remaining(&app, a, s[2], 3).await;
    // Raising it again gives the places back, with no job.
    let res = patch_slot(&app, s[0], json!({"capacity": 3})).await;
    let v: Value = res.json().await.unwrap();
    assert!(v.get("rebooking").is_none(), "{v}");
    assert_eq!(v["remaining"], 1);
    wait_remaining(&app, a, s[0], 1).await;
    assert_places_exact(&app);
}

#[tokio::test]
async fn a_cancelled_slot_is_never_offered_again_and_its_bookings_move_within_the_region() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(500.0).await;
    let a = app.center("서울").await;
    let b = app.center("서울").await;
    let s = app.slots(a, &[(0, "10:00", 3), (28, "10:00", 3)]).await;
    // B holds a place on day 0 and its second dose on day 28: only B can take the bookings.
    let sb = app.slots(b, &[(0, "10:00", 1), (28, "10:00", 1)]).await;
    let codes = book_n(&app, cohort, s[0], 1, 2).await;
    let late = app.session(cohort, 9).await;

    let res = patch_slot(&app, s[0], json!({"cancelled": true})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["cancelled"], true);
    assert_eq!(v["remaining"], 0);
    let job = v["rebooking"]["id"].as_i64().unwrap();
    // Not listed, not bookable, at once.
    let listed: Value = app
        .client
        .get(app.url(&format!("/api/v1/centers/{a}/slots")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed.as_array().unwrap().iter().all(|x| x["id"] != s[0]),
        "{listed}"
    );
    assert_ne!(
        app.book(&late, s[0], None).await.status(),
        StatusCode::CREATED
    );

    let done = wait_done(&app, job).await;
    assert_eq!(
        (done["moved"].as_i64(), done["unmovable"].as_i64()),
        (Some(1), Some(1))
    );
    // The latest booked moved first: to B, both doses (dose 2 at A on day 28 is still
    // within the window, so it stays at A).
    let moved = booking(&app, &codes[1]).await;
    assert_eq!(moved["first_dose"]["slot_id"], sb[0], "{moved}");
    assert_eq!(moved["first_dose"]["center_id"], b);
    assert_eq!(moved["second_dose"]["slot_id"], s[1]);
    assert_eq!(moved["second_dose"]["center_id"], a);
    let stuck = booking(&app, &codes[0]).await;
    assert_eq!(stuck["state"], "needs_rebooking", "{stuck}");
    // A cancelled slot stays cancelled.
    let again = patch_slot(&app, s[0], json!({"capacity": 5})).await;
    assert_error(again, 409, "slot_cancelled").await;
    assert_places_exact(&app);
}

#[tokio::test]
async fn bad_changes_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let a = app.center("서울").await;
    let s = app.slots(a, &[(0, "10:00", 4)]).await[0];
    // An empty patch changes nothing and answers the slot, as a cohort's does.
    let res = patch_slot(&app, s, json!({})).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        (v["capacity"].as_i64(), v["remaining"].as_i64()),
        (Some(4), Some(4)),
        "{v}"
    );
    assert!(v.get("rebooking").is_none(), "{v}");
    for body in [
        json!({"capacity": -1}),
        json!({"capacity": "3"}),
        json!({"capacity": 1.5}),
        json!({"cancelled": "yes"}),
        json!({"capacity": 2, "extra": 1}),
    ] {
        let res = patch_slot(&app, s, body.clone()).await;
        assert!(
            [400, 422].contains(&res.status().as_u16()),
            "{body}: {}",
            res.status()
        );
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"], "validation", "{body}: {v}");
    }
    assert_error(
        patch_slot(&app, 999_999, json!({"capacity": 1})).await,
        404,
        "not_found",
    )
    .await;
    let res = app
        .client
        .patch(app.url(&format!("/api/v1/admin/slots/{s}")))
        .json(&json!({"capacity": 1}))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "unauthorized").await;
    assert_eq!(app.slot_remaining(a, s).await, 4, "nothing changed");

    for body in [
        json!({"vaccine": "Moderna", "second_dose_shift_days": 0}),
        json!({"vaccine": "Moderna", "second_dose_shift_days": -7}),
        json!({"vaccine": "Moderna", "second_dose_shift_days": 91}),
        json!({"vaccine": "", "second_dose_shift_days": 7}),
        json!({"vaccine": "Moderna"}),
    ] {
        let res = app
            .admin_post("/api/v1/admin/rebookings", body.clone())
            .await;
        assert!([400, 422].contains(&res.status().as_u16()), "{body}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"], "validation", "{body}: {v}");
    }
    let res = app
        .client
        .post(app.url("/api/v1/admin/rebookings"))
        .json(&json!({"vaccine": "Moderna", "second_dose_shift_days": 7}))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "unauthorized").await;
    assert_error(
        app.admin_get("/api/v1/admin/rebookings/424242").await,
        404,
        "not_found",
    )
    .await;
    let res = app
        .client
        .get(app.url("/api/v1/admin/rebookings"))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "unauthorized").await;
    let res = app.admin_get("/api/v1/admin/rebookings").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!([]),
        "no job was made"
    );
    let mut pooled = app.state.pool.get().unwrap();
    let (running, moved, unmovable) = rebooking::totals(&mut pooled.conn()).unwrap();
    assert_eq!((running, moved, unmovable), (0, 0, 0), "no job was made");
}

#[tokio::test]
async fn a_job_racing_citizens_bookings_never_overbooks() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let a = app.center("서울").await;
    // 30 bookings whose second dose (day 28) the job moves to day 42 or 43; 10 citizens who
    // book a first dose on day 14 at the same time, whose second dose is on day 42 or 43 too:
    // 40 wanting 30 places.
    let s = app
        .slots(
            a,
            &[
                (0, "10:00", 30),
                (28, "10:00", 30),
                (42, "10:00", 25),
                (43, "10:00", 5),
                (14, "10:00", 10),
            ],
        )
        .await;
    book_n(&app, cohort, s[0], 1, 30).await;
    // Sessions ready before the job starts, so that their bookings race its steps.
    let mut sessions = Vec::new();
    for i in 100..110 {
        sessions.push(app.session(cohort, i).await);
    }
    let job = shift(&app, "Moderna", 14).await;
    let answers = futures_util::future::join_all(
        sessions.iter().map(|session| app.book(session, s[4], None)),
    )
    .await;
    let mut booked = 0;
    for r in answers {
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        match status {
            201 => booked += 1,
            409 => assert!(
                ["slot_full", "no_second_dose_slot"].contains(&v["error"].as_str().unwrap()),
                "{v}"
            ),
            other => panic!("a citizen got {other}: {v}"),
        }
    }
    let done = wait_done(&app, job).await;
    let (moved, unmovable) = (
        done["moved"].as_i64().unwrap(),
        done["unmovable"].as_i64().unwrap(),
    );
    assert_eq!(moved + unmovable, 30, "{done}");
    // Every place of days 42 and 43 went to someone, never more.
    assert_eq!(moved + booked, 30, "{done}, {booked} citizens booked");
    assert_places_exact(&app);
}

#[tokio::test]
async fn a_job_resumed_after_a_restart_moves_no_booking_twice() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(500.0).await;
    let a = app.center("서울").await;
    let s = app
        .slots(a, &[(0, "10:00", 30), (28, "10:00", 30), (35, "10:00", 30)])
        .await;
    let codes = book_n(&app, cohort, s[0], 1, 12).await;
    // A job made straight through the writer, as if the node crashed before driving it past
    // its first step: nobody drives it on this node.
    let persist = |w| app.state.store.send(Persist(Write::Rebook(w)));
    let Ok(Ok(Written::Rebook(RebookWritten::Created(job)))) = persist(RebookWrite::CreateShift {
        vaccine: "Moderna".into(),
        days: 7,
        today: (chrono::Utc::now() + chrono::Duration::hours(9))
            .date_naive()
            .to_string(),
        now: 0,
    })
    .await
    else {
        panic!("the job was not created");
    };
    let Ok(Ok(Written::Rebook(RebookWritten::Stepped(first)))) = persist(RebookWrite::Step {
        job_id: job.id,
        n: 5,
        now: 1,
    })
    .await
    else {
        panic!("the step failed");
    };
    assert_eq!(first.job.moved, 5);
    assert_eq!(first.job.state, "running");

    let app = app.restart();
    let done = wait_done(&app, i64::from(job.id)).await;
    assert_eq!(done["total"], 12, "{done}");
    assert_eq!(done["moved"], 12, "{done}");
    for code in &codes {
        let v = booking(&app, code).await;
        assert_eq!(
            v["second_dose"]["slot_id"], s[2],
            "moved exactly 7 days: {v}"
        );
        assert_eq!(v["moved"].as_array().unwrap().len(), 1, "moved once: {v}");
    }
    let mut pooled = app.state.pool.get().unwrap();
    let items = rebooking::items_per_booking(&mut pooled.conn(), job.id).unwrap();
    assert_eq!(items.len(), 12);
    drop(pooled);
    assert_places_exact(&app);
    // The counts are in /metrics.
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("rebooking_moved_total"), "{text}");
}

/// The bulk data of `scripts/rebook-seed.sql` in a fresh, migrated database: on SQLite that
/// script, on PostgreSQL `scripts/rebook-seed-pg.sql` (the same rows, by `generate_series`).
fn seed(backend: &reservation::db::Backend, bookings: u32, centers: u32) -> String {
    use diesel::connection::SimpleConnection;
    use reservation::db::{Backend, DbPool};
    let pool = reservation::db::connect(backend, &Default::default()).unwrap();
    let base = day(0);
    let places = bookings / (centers * 14) + 2;
    let script = match backend {
        Backend::Sqlite(_) => include_str!("../scripts/rebook-seed.sql"),
        Backend::Postgres(_) => include_str!("../scripts/rebook-seed-pg.sql"),
    };
    let sql = script
        .replace("@BOOKINGS@", &bookings.to_string())
        .replace("@CENTERS@", &centers.to_string())
        .replace("@PLACES@", &places.to_string())
        .replace("@BASE@", &base);
    match pool {
        DbPool::Sqlite(p) => p.get().unwrap().batch_execute(&sql).unwrap(),
        DbPool::Postgres(p) => p.get().unwrap().batch_execute(&sql).unwrap(),
    }
    base
}

fn start_binary(db: &str, port: u16) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_reservation"))
        .env("DATABASE_URL", db)
        .env("SECRET_KEY", "rebook-kill-secret")
        .env("ADMIN_TOKEN", ADMIN)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the server binary starts")
}

async fn job_of(c: &reqwest::Client, base: &str, id: i64) -> Option<Value> {
    let res = c
        .get(format!("{base}/api/v1/admin/rebookings/{id}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .ok()?;
    res.json().await.ok()
}

#[tokio::test]
async fn a_job_killed_with_minus_nine_finishes_after_the_restart_moving_each_booking_once() {
    let dir = tempfile::tempdir().unwrap();
    // On PostgreSQL a database of its own on the test binary's server (fsync on, as in
    // production), seeded by bulk SQL as on SQLite.
    let backend = if common::on_postgres() {
        reservation::db::Backend::Postgres(common::pg::shared().create_database())
    } else {
        reservation::db::Backend::Sqlite(dir.path().join("r.db"))
    };
    let db = match &backend {
        reservation::db::Backend::Sqlite(path) => path.display().to_string(),
        reservation::db::Backend::Postgres(url) => url.clone(),
    };
    const N: u32 = 20_000;
    let seeded = Instant::now();
    seed(&backend, N, 20);
    println!("{N} bookings seeded in {:?}", seeded.elapsed());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    let mut child = start_binary(&db, port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = c
        .post(format!("{base}/api/v1/admin/rebookings"))
        .bearer_auth(ADMIN)
        .json(&json!({"vaccine": "Moderna", "second_dose_shift_days": 14}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    // Killed once some moves are committed and before the job is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = job_of(&c, &base, id).await.expect("job");
        assert_eq!(v["state"], "running", "the job ended before the kill: {v}");
        if v["moved"].as_i64().unwrap() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {v}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut child = start_binary(&db, port);
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        if let Some(v) = job_of(&c, &base, id).await {
            if v["state"] == "done" {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "the job never finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(done["total"], N, "{done}");
    assert_eq!(done["moved"], N, "{done}");
    // From the database: every booking moved exactly once, by exactly 14 days, and no slot
    // over capacity or out of step with its bookings.
    let pool = reservation::db::connect(&backend, &Default::default()).unwrap();
    let mut pooled = pool.get().unwrap();
    let items = rebooking::items_per_booking(&mut pooled.conn(), id as i32).unwrap();
    assert_eq!(items.len(), N as usize);
    assert!(items.iter().all(|(_, o)| o == "moved"));
    let bad = rebooking::slots_out_of_step(&mut pooled.conn()).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    let base_day = chrono::NaiveDate::parse_from_str(&day(0), "%Y-%m-%d").unwrap();
    for code in ["B00000000000", "B00000009999", "B00000019999"] {
        let (row, ..) = reservation::db::queries::find_booking(&mut pooled.conn(), code)
            .unwrap()
            .unwrap();
        let second = chrono::NaiveDate::parse_from_str(&row.second_date, "%Y-%m-%d").unwrap();
        let first = chrono::NaiveDate::parse_from_str(&row.first_date, "%Y-%m-%d").unwrap();
        assert_eq!((second - first).num_days(), 42, "{code}: 28 + 14 days");
        assert!(first >= base_day);
    }
}

/// On PostgreSQL another node may cancel a booking while a step deals with it. Made
/// deterministic: a second connection cancels the booking in a transaction it holds open, the
/// job's step then waits on the cancellation's locks, and the cancellation commits. The step
/// must leave the booking alone (the cancellation gave its places back): not give them back a
/// second time, nor keep a place taken for it. Two things see to it, each enough alone (both
/// removed, this test fails with 3 moved): the writer locks the slots of the step's bookings
/// before the step reads them, and a booking whose row is no longer confirmed when written
/// has its savepoint rolled back.
#[tokio::test]
async fn a_booking_cancelled_by_another_node_during_a_step_is_left_to_that_node() {
    if !common::on_postgres() {
        return; // One writer on SQLite: a cancellation and a step never interleave.
    }
    use diesel::RunQueryDsl;
    let app = spawn_app().await;
    let cohort = app.open_cohort(500.0).await;
    let a = app.center("서울").await;
    let s = app
        .slots(a, &[(0, "10:00", 5), (28, "10:00", 5), (42, "10:00", 5)])
        .await;
    let codes = book_n(&app, cohort, s[0], 1, 3).await;

    let (cancelled_tx, cancelled_rx) = std::sync::mpsc::channel::<()>();
    let (commit_tx, commit_rx) = std::sync::mpsc::channel::<()>();
    let mut other = app.state.pool.get().unwrap();
    let code = codes[1].clone();
    let other_node = std::thread::spawn(move || {
        other
            .conn()
            .savepoint(|c| {
                let row = reservation::db::queries::cancel_booking(c, &code, 1)?;
                assert!(row.is_some(), "the booking was confirmed");
                cancelled_tx.send(()).unwrap();
                commit_rx.recv().unwrap();
                Ok(())
            })
            .unwrap();
    });
    cancelled_rx.recv().unwrap();
    let job = shift(&app, "Moderna", 14).await;

    // The step is waiting on the cancellation's row locks.
    let mut watch = app.state.pool.get().unwrap();
    let reservation::db::DbConn::Postgres(pg) = &mut watch else {
        unreachable!("on PostgreSQL");
    };
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let w: Waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .get_result(&mut **pg)
        .unwrap();
        if w.n > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the step never waited on the cancellation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(watch);
    commit_tx.send(()).unwrap();
    other_node.join().unwrap();

    let done = wait_done(&app, job).await;
    assert_eq!(
        (done["moved"].as_i64(), done["unmovable"].as_i64()),
        (Some(2), Some(0)),
        "the two others moved, the cancelled one left: {done}"
    );
    assert_eq!(booking(&app, &codes[1]).await["state"], "cancelled");
    for code in [&codes[0], &codes[2]] {
        assert_eq!(booking(&app, code).await["second_dose"]["slot_id"], s[2]);
    }
    assert_places_exact(&app);
}
