//! Every error code of the contract over real HTTP: the status, the `{"error", "message"}`
//! body, `Retry-After` on 503 and 429, and that refused input changes nothing.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{assert_error, spawn_app, spawn_app_with, TestApp, ADMIN};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A birth date inside the 1960–1970 cohort of `open_cohort`.
const BORN: &str = "1965-03-01";
/// A booking code of the right shape that no booking has.
const NO_SUCH_CODE: &str = "0123456789AB";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// One request; `body` is sent verbatim as JSON when given.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Response {
    let mut req = app.client.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header(CONTENT_TYPE, "application/json").body(b);
    }
    req.send().await.expect("request")
}

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> Response {
    call(app, Method::GET, path, token, None).await
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> Response {
    call(app, Method::POST, path, token, Some(body.to_string())).await
}

async fn post_raw(app: &TestApp, path: &str, token: Option<&str>, body: &str) -> Response {
    call(app, Method::POST, path, token, Some(body.to_string())).await
}

async fn patch(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> Response {
    call(app, Method::PATCH, path, token, Some(body.to_string())).await
}

async fn json_of(res: Response) -> Value {
    assert_eq!(res.status(), StatusCode::OK, "expected 200");
    res.json().await.expect("json")
}

/// The `Retry-After` header, checked to be whole seconds (at least 1).
fn retry_after(res: &Response) -> u64 {
    let value = res
        .headers()
        .get(RETRY_AFTER)
        .unwrap_or_else(|| panic!("a {} carries no Retry-After", res.status()))
        .to_str()
        .expect("ASCII Retry-After");
    assert!(
        !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
        "Retry-After is not whole seconds: {value:?}"
    );
    let secs: u64 = value.parse().expect("seconds");
    assert!(secs >= 1, "Retry-After of {secs} s");
    secs
}

/// 400 or 422 with code `validation` (never a 5xx).
async fn assert_validation(res: Response, what: &str) -> Value {
    let status = res.status().as_u16();
    assert!(
        status == 400 || status == 422,
        "{what}: answered {status}, not 400/422"
    );
    assert_error(res, status, "validation").await
}

/// A day `offset` days after tomorrow (Seoul), as `YYYY-MM-DD`; the same days as `app.slots`.
fn day(offset: u64) -> String {
    let tomorrow =
        (chrono::Utc::now() + chrono::Duration::hours(9)).date_naive() + chrono::Days::new(1);
    (tomorrow + chrono::Days::new(offset)).to_string()
}

/// Adds slots of any vaccine: (day offset from tomorrow, "HH:MM", capacity).
async fn add_slots(
    app: &TestApp,
    center: i64,
    vaccine: &str,
    slots: &[(u64, &str, i64)],
) -> Vec<i64> {
    app.slots_of(center, vaccine, slots).await
}

async fn slot_listing(app: &TestApp, center: i64) -> Vec<Value> {
    json_of(get(app, &format!("/api/v1/centers/{center}/slots"), None).await)
        .await
        .as_array()
        .expect("list")
        .clone()
}

async fn admin_cohorts(app: &TestApp) -> Vec<Value> {
    json_of(app.admin_get("/api/v1/admin/cohorts").await)
        .await
        .as_array()
        .expect("list")
        .clone()
}

async fn citizen_cohort_state(app: &TestApp, cohort: i64) -> String {
    let list = json_of(get(app, "/api/v1/cohorts", None).await).await;
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == cohort)
        .expect("cohort listed")["state"]
        .as_str()
        .expect("state")
        .to_string()
}

/// Polls the citizens' cohort listing until the cohort shows `state` (or 10 s pass).
async fn wait_for_cohort_state(app: &TestApp, cohort: i64, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = citizen_cohort_state(app, cohort).await;
        if now == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cohort stays {now}, never {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls a ticket until it reads `state` (or 10 s pass), and returns that poll.
async fn wait_for_ticket_state(app: &TestApp, ticket: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = app.poll(ticket).await;
        if v["state"] == state {
            return v;
        }
        assert!(Instant::now() < deadline, "ticket never {state}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An open cohort (`open_cohort`, admitting fast) with places to book, so that it admits.
async fn supplied_cohort(app: &TestApp) -> i64 {
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("공급").await;
    app.pair(center, 100).await;
    cohort
}

async fn ticket(app: &TestApp, cohort: i64) -> String {
    app.join(cohort).await["ticket"]
        .as_str()
        .expect("ticket")
        .to_string()
}

/// A fresh ticket, admitted, and its pass.
async fn admitted_pass(app: &TestApp, cohort: i64) -> String {
    let t = ticket(app, cohort).await;
    app.pass_for(&t).await
}

/// The phone of citizen `n`, as `app.session` makes it.
fn phone(n: u32) -> String {
    format!("010-{:04}-{:04}", 1000 + n / 10000, n % 10000)
}

/// The same token with one character of its first part changed: altered, so unsigned.
fn flipped(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    chars[1] = if chars[1] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// The token with field `index` of its signed payload replaced and the original signature
/// kept: what a citizen would try to move a place, stretch a pass or borrow a cohort.
fn forged(token: &str, index: usize, value: &str) -> String {
    let (body, tag) = token.split_once('.').expect("payload.signature");
    let payload =
        String::from_utf8(URL_SAFE_NO_PAD.decode(body).expect("base64url")).expect("utf-8");
    let mut fields: Vec<&str> = payload.split('|').collect();
    assert_ne!(fields[index], value, "the forgery must change something");
    fields[index] = value;
    format!("{}.{tag}", URL_SAFE_NO_PAD.encode(fields.join("|")))
}

/// A signed numeric field of a token's payload.
fn field(token: &str, index: usize) -> i64 {
    let body = token.split_once('.').expect("payload.signature").0;
    let payload =
        String::from_utf8(URL_SAFE_NO_PAD.decode(body).expect("base64url")).expect("utf-8");
    payload
        .split('|')
        .nth(index)
        .expect("field")
        .parse()
        .expect("number")
}

async fn cohort_at(
    app: &TestApp,
    opens: chrono::DateTime<chrono::Utc>,
    closes: chrono::DateTime<chrono::Utc>,
) -> Response {
    app.admin_post(
        "/api/v1/admin/cohorts",
        json!({
            "name": "시한 코호트",
            "birth_year_from": 1960,
            "birth_year_to": 1970,
            "opens_at": opens.to_rfc3339(),
            "closes_at": closes.to_rfc3339(),
            "vaccine": "Moderna",
            "dose_interval_days": 28,
            "admission_rate_per_s": 1000.0,
        }),
    )
    .await
}

async fn lookup(app: &TestApp, code: &str, birth: &str) -> Response {
    post(
        app,
        "/api/v1/bookings/lookup",
        None,
        json!({"code": code, "birth_date": birth}),
    )
    .await
}

async fn cancel(app: &TestApp, code: &str, birth: &str) -> Response {
    post(
        app,
        &format!("/api/v1/bookings/{code}/cancel"),
        None,
        json!({"birth_date": birth}),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// unauthorized
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn admin_endpoints_without_or_with_a_wrong_token_answer_401_unauthorized() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let ticket = ticket(&app, cohort).await;
    let gets = [
        "/api/v1/admin/cohorts".to_string(),
        "/api/v1/admin/centers".to_string(),
        "/api/v1/admin/stats".to_string(),
        format!("/api/v1/admin/bookings/{NO_SUCH_CODE}"),
    ];
    for path in &gets {
        assert_error(get(&app, path, None).await, 401, "unauthorized").await;
        assert_error(
            get(&app, path, Some("wrong-token")).await,
            401,
            "unauthorized",
        )
        .await;
        assert_error(get(&app, path, Some(&ticket)).await, 401, "unauthorized").await;
        // The right token under another scheme is not a bearer token.
        let res = app
            .client
            .get(app.url(path))
            .header(AUTHORIZATION, format!("Basic {ADMIN}"))
            .send()
            .await
            .unwrap();
        assert_error(res, 401, "unauthorized").await;
        // A prefix of the right token is wrong too.
        assert_error(
            get(&app, path, Some(&ADMIN[..ADMIN.len() - 1])).await,
            401,
            "unauthorized",
        )
        .await;
    }
}

#[tokio::test]
async fn admin_writes_without_or_with_a_wrong_token_answer_401_unauthorized_and_change_nothing() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let now = chrono::Utc::now();
    let new_cohort = json!({
        "name": "몰래", "birth_year_from": 1950, "birth_year_to": 1955,
        "opens_at": now.to_rfc3339(), "closes_at": (now + chrono::Duration::days(1)).to_rfc3339(),
        "vaccine": "Moderna", "dose_interval_days": 28,
    });
    let new_slots = json!({"slots": [{"date": day(0), "start_time": "10:00", "end_time": "11:00", "capacity": 5, "vaccine": "Moderna"}]});
    for token in [None, Some("wrong-token")] {
        let res = post(&app, "/api/v1/admin/cohorts", token, new_cohort.clone()).await;
        assert_error(res, 401, "unauthorized").await;
        let res = post(
            &app,
            "/api/v1/admin/centers",
            token,
            json!({"name": "몰래", "region": "서울", "address": "어딘가"}),
        )
        .await;
        assert_error(res, 401, "unauthorized").await;
        let path = format!("/api/v1/admin/centers/{center}/slots");
        assert_error(
            post(&app, &path, token, new_slots.clone()).await,
            401,
            "unauthorized",
        )
        .await;
        let path = format!("/api/v1/admin/cohorts/{cohort}");
        let res = patch(
            &app,
            &path,
            token,
            json!({"paused": true, "admission_rate_per_s": 1.0}),
        )
        .await;
        assert_error(res, 401, "unauthorized").await;
        // Without the token, not even the body is looked at.
        let res = call(
            &app,
            Method::POST,
            "/api/v1/admin/cohorts",
            token,
            Some("{not json".into()),
        )
        .await;
        assert_error(res, 401, "unauthorized").await;
    }

    let cohorts = admin_cohorts(&app).await;
    assert_eq!(cohorts.len(), 1, "no cohort created: {cohorts:?}");
    assert_eq!(cohorts[0]["paused"], false, "not paused");
    assert_eq!(cohorts[0]["admission_rate_per_s"], 1000.0, "rate unchanged");
    let centers = json_of(get(&app, "/api/v1/centers", None).await).await;
    assert_eq!(centers.as_array().unwrap().len(), 1, "no center created");
    assert!(slot_listing(&app, center).await.is_empty(), "no slot added");
}

// ---------------------------------------------------------------------------------------------
// invalid_ticket, invalid_pass, invalid_session
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn polling_without_a_valid_ticket_answers_401_invalid_ticket() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    app.pair(center, 5).await;
    let good = ticket(&app, cohort).await;
    let pass = app.pass_for(&good).await;
    let session = app.session(cohort, 1).await;
    let seq = field(&good, 2);

    let bad: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("garbage", Some("garbage".into())),
        ("dotted garbage", Some("abc.def".into())),
        ("overlong", Some(format!("{good}{}", "A".repeat(4096)))),
        ("altered", Some(flipped(&good))),
        ("forged seq", Some(forged(&good, 2, &(seq + 1).to_string()))),
        ("a pass", Some(pass.clone())),
        ("a session", Some(session.clone())),
    ];
    for (what, token) in bad {
        let res = get(&app, "/api/v1/queue", token.as_deref()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_error(res, 401, "invalid_ticket").await;
    }
    let res = app
        .client
        .get(app.url("/api/v1/queue"))
        .header(AUTHORIZATION, format!("Basic {good}"))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "invalid_ticket").await;
    // The genuine ticket still polls.
    assert_eq!(app.poll(&good).await["state"], "admitted");
}

#[tokio::test]
async fn verifying_without_a_valid_pass_answers_401_invalid_pass_and_the_real_pass_stays_usable() {
    let app = spawn_app().await;
    let cohort = supplied_cohort(&app).await;
    let good_ticket = ticket(&app, cohort).await;
    let pass = app.pass_for(&good_ticket).await;
    let other = admitted_pass(&app, cohort).await;
    let session = {
        let res = app.verify(&other, "다른이", BORN, &phone(9)).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["session"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let expires = field(&pass, 3);
    let seq = field(&pass, 2);

    let bad: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("garbage", Some("garbage".into())),
        ("altered", Some(flipped(&pass))),
        (
            "stretched",
            Some(forged(&pass, 3, &(expires + 86_400).to_string())),
        ),
        (
            "another seq",
            Some(forged(&pass, 2, &(seq + 7).to_string())),
        ),
        ("a ticket", Some(good_ticket.clone())),
        ("a session", Some(session)),
    ];
    for (what, token) in bad {
        let body = json!({"name": "김민영", "birth_date": BORN, "phone": phone(1)});
        let res = post(&app, "/api/v1/verifications", token.as_deref(), body).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_error(res, 401, "invalid_pass").await;
    }
    // None of that used the pass up.
    let res = app.verify(&pass, "김민영", BORN, &phone(1)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_pass_that_verified_one_identity_refuses_another_with_401_invalid_pass() {
    let app = spawn_app().await;
    let cohort = supplied_cohort(&app).await;
    let pass = admitted_pass(&app, cohort).await;
    let res = app.verify(&pass, "김민영", BORN, &phone(1)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app.verify(&pass, "이수진", "1966-04-02", &phone(2)).await;
    assert_error(res, 401, "invalid_pass").await;
    let res = app.verify(&pass, "김민영", BORN, &phone(3)).await;
    assert_error(res, 401, "invalid_pass").await;
    let stats = json_of(app.admin_get("/api/v1/admin/stats").await).await;
    assert_eq!(stats["cohorts"][0]["verified"], 1, "one session issued");
}

#[tokio::test]
async fn an_expired_pass_answers_401_invalid_pass() {
    let app = spawn_app_with(|c| c.pass_ttl_s = 3).await;
    let cohort = supplied_cohort(&app).await;
    let pass = admitted_pass(&app, cohort).await;
    // While the pass lasts, an ineligible birth year is refused with 403 (nothing changes);
    // once it lapses the pass itself is refused.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = app.verify(&pass, "김민영", "1990-01-01", &phone(1)).await;
        if res.status() != StatusCode::FORBIDDEN {
            assert_error(res, 401, "invalid_pass").await;
            break;
        }
        assert!(Instant::now() < deadline, "the pass never lapsed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn booking_without_a_valid_session_answers_401_invalid_session_and_books_nothing() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, second) = app.pair(center, 5).await;
    let good_ticket = ticket(&app, cohort).await;
    let pass = app.pass_for(&good_ticket).await;
    let session = app.session(cohort, 1).await;

    let bad: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("garbage", Some("garbage".into())),
        ("altered", Some(flipped(&session))),
        (
            "another birth date",
            Some(forged(&session, 4, "1966-04-02")),
        ),
        (
            "another cohort",
            Some(forged(&session, 1, &(cohort + 1).to_string())),
        ),
        ("a pass", Some(pass)),
        ("a ticket", Some(good_ticket)),
    ];
    for (what, token) in bad {
        let body = json!({"slot_id": first});
        let res = post(&app, "/api/v1/bookings", token.as_deref(), body).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_error(res, 401, "invalid_session").await;
    }
    assert_eq!(
        app.slot_remaining(center, first).await,
        5,
        "no first dose taken"
    );
    assert_eq!(
        app.slot_remaining(center, second).await,
        5,
        "no second dose taken"
    );
    let stats = json_of(app.admin_get("/api/v1/admin/stats").await).await;
    assert_eq!(stats["bookings_confirmed"], 0);
    // The genuine session books.
    assert_eq!(
        app.book(&session, first, None).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn an_expired_session_answers_401_invalid_session() {
    let app = spawn_app_with(|c| c.session_ttl_s = 1).await;
    let cohort = supplied_cohort(&app).await;
    let session = app.session(cohort, 1).await;
    // While the session lasts an unknown slot is 404 (nothing booked); once it lapses the
    // session itself is refused.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = app.book(&session, 999_999, None).await;
        if res.status() != StatusCode::NOT_FOUND {
            assert_error(res, 401, "invalid_session").await;
            break;
        }
        assert!(Instant::now() < deadline, "the session never lapsed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// not_found
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_cohorts_centers_and_routes_answer_404_not_found() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    for id in [
        "999999",
        "abc",
        "99999999999",
        "-1",
        &(cohort + 1).to_string(),
    ] {
        let res = call(
            &app,
            Method::POST,
            &format!("/api/v1/cohorts/{id}/queue"),
            None,
            None,
        )
        .await;
        assert_error(res, 404, "not_found").await;
        let res = get(&app, &format!("/api/v1/centers/{id}/slots"), None).await;
        assert_error(res, 404, "not_found").await;
    }
    for path in [
        "/api/v1/nope",
        "/nope",
        "/api/v2/cohorts",
        "/api/v1/centers/1/nope",
    ] {
        assert_error(get(&app, path, None).await, 404, "not_found").await;
        assert_error(post(&app, path, None, json!({})).await, 404, "not_found").await;
    }
    let stats = json_of(app.admin_get("/api/v1/admin/stats").await).await;
    assert_eq!(stats["cohorts"][0]["waiting"], 0, "no ticket issued");
    assert_eq!(stats["cohorts"][0]["admitted"], 0);
    assert_eq!(
        json_of(get(&app, &format!("/api/v1/centers/{center}/slots"), None).await).await,
        json!([])
    );
}

#[tokio::test]
async fn booking_an_unknown_slot_answers_404_not_found_and_books_nothing() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, second) = app.pair(center, 5).await;
    let session = app.session(cohort, 1).await;
    for slot in [999_999, -1, 0, 1 << 40, i64::MAX] {
        assert_error(app.book(&session, slot, None).await, 404, "not_found").await;
    }
    assert_eq!(app.slot_remaining(center, first).await, 5);
    assert_eq!(app.slot_remaining(center, second).await, 5);
    // The refusals left no booking behind: the citizen may still book.
    assert_eq!(
        app.book(&session, first, None).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn unknown_or_mismatched_booking_codes_answer_404_and_cancel_nothing() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, second) = app.pair(center, 5).await;
    let session = app.session(cohort, 1).await;
    let res = app.book(&session, first, None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let code = res.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();

    for unknown in [NO_SUCH_CODE, "nope", "IIIIIIIIIIII"] {
        assert_error(lookup(&app, unknown, BORN).await, 404, "not_found").await;
        assert_error(cancel(&app, unknown, BORN).await, 404, "not_found").await;
        let res = app
            .admin_get(&format!("/api/v1/admin/bookings/{unknown}"))
            .await;
        assert_error(res, 404, "not_found").await;
    }
    // The right code with another birth date is no match either.
    assert_error(lookup(&app, &code, "1965-03-02").await, 404, "not_found").await;
    assert_error(cancel(&app, &code, "1965-03-02").await, 404, "not_found").await;

    let booking = json_of(
        app.admin_get(&format!("/api/v1/admin/bookings/{code}"))
            .await,
    )
    .await;
    assert_eq!(booking["state"], "confirmed", "still booked");
    assert_eq!(
        app.slot_remaining(center, first).await,
        4,
        "first place still taken"
    );
    assert_eq!(
        app.slot_remaining(center, second).await,
        4,
        "second place still taken"
    );
}

#[tokio::test]
async fn admin_endpoints_answer_404_for_unknown_cohorts_and_centers() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    for id in ["999999", "abc", &(cohort + 1).to_string()] {
        let res = app
            .client
            .patch(app.url(&format!("/api/v1/admin/cohorts/{id}")))
            .bearer_auth(ADMIN)
            .json(&json!({"paused": true}))
            .send()
            .await
            .unwrap();
        assert_error(res, 404, "not_found").await;
        let res = app
            .admin_post(
                &format!("/api/v1/admin/centers/{id}/slots"),
                json!({"slots": [{"date": day(0), "start_time": "10:00", "end_time": "11:00", "capacity": 5, "vaccine": "Moderna"}]}),
            )
            .await;
        assert_error(res, 404, "not_found").await;
    }
    let cohorts = admin_cohorts(&app).await;
    assert_eq!(cohorts.len(), 1);
    assert_eq!(
        cohorts[0]["paused"], false,
        "the real cohort was not touched"
    );
}

// ---------------------------------------------------------------------------------------------
// validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_or_mistyped_booking_bodies_answer_validation_and_book_nothing() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, second) = app.pair(center, 5).await;
    let session = app.session(cohort, 1).await;
    let s = Some(session.as_str());

    for (what, body) in [
        ("not JSON", "not json".to_string()),
        ("truncated", format!("{{\"slot_id\": {first}")),
        ("empty", String::new()),
        ("a string id", format!("{{\"slot_id\": \"{first}\"}}")),
        ("a fractional id", "{\"slot_id\": 1.5}".to_string()),
        ("a null id", "{\"slot_id\": null}".to_string()),
        ("no id", "{}".to_string()),
        (
            "an unknown field",
            format!("{{\"slot_id\": {first}, \"second_slot_id\": {second}}}"),
        ),
    ] {
        assert_validation(post_raw(&app, "/api/v1/bookings", s, &body).await, what).await;
    }
    // Malformed JSON is a 400.
    let res = post_raw(&app, "/api/v1/bookings", s, "{\"slot_id\": ").await;
    assert_error(res, 400, "validation").await;

    assert_eq!(app.slot_remaining(center, first).await, 5);
    assert_eq!(app.slot_remaining(center, second).await, 5);
    assert_eq!(
        app.book(&session, first, None).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn an_overlong_or_empty_idempotency_key_answers_validation_and_books_nothing() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, _) = app.pair(center, 5).await;
    let session = app.session(cohort, 1).await;
    let long = "k".repeat(129);
    for key in [long.as_str(), " "] {
        assert_validation(
            app.book(&session, first, Some(key)).await,
            "idempotency key",
        )
        .await;
    }
    assert_eq!(app.slot_remaining(center, first).await, 5);
}

#[tokio::test]
async fn bad_verification_bodies_answer_validation_and_leave_the_pass_usable() {
    let app = spawn_app().await;
    let cohort = supplied_cohort(&app).await;
    let pass = admitted_pass(&app, cohort).await;
    let p = Some(pass.as_str());
    let ok = |name: &str, birth: &str, phone: &str| {
        json!({"name": name, "birth_date": birth, "phone": phone}).to_string()
    };
    for (what, body) in [
        ("not JSON", "{name".to_string()),
        ("empty", String::new()),
        (
            "a numeric name",
            json!({"name": 1, "birth_date": BORN, "phone": phone(1)}).to_string(),
        ),
        (
            "a numeric phone",
            json!({"name": "김민영", "birth_date": BORN, "phone": 1012345678}).to_string(),
        ),
        (
            "no phone",
            json!({"name": "김민영", "birth_date": BORN}).to_string(),
        ),
        (
            "an unknown field",
            json!({"name": "김민영", "birth_date": BORN, "phone": phone(1), "rrn": "650301"})
                .to_string(),
        ),
        ("no such day", ok("김민영", "1965-02-30", &phone(1))),
        ("a short date", ok("김민영", "65-03-01", &phone(1))),
        ("another date format", ok("김민영", "1965/03/01", &phone(1))),
        ("a landline", ok("김민영", BORN, "02-123-4567")),
        ("letters in the phone", ok("김민영", BORN, "010-12a4-5678")),
        ("a short phone", ok("김민영", BORN, "010-123")),
        ("an empty name", ok("  ", BORN, &phone(1))),
        ("a name with a separator", ok("김|민영", BORN, &phone(1))),
        ("an overlong name", ok(&"가".repeat(51), BORN, &phone(1))),
    ] {
        assert_validation(
            post_raw(&app, "/api/v1/verifications", p, &body).await,
            what,
        )
        .await;
    }
    let stats = json_of(app.admin_get("/api/v1/admin/stats").await).await;
    assert_eq!(stats["cohorts"][0]["verified"], 0, "no session issued");
    // The pass was not used up, and none of that counted against the identity's checks.
    let res = app.verify(&pass, "김민영", BORN, &phone(1)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn bad_lookup_and_cancel_bodies_answer_validation_and_cancel_nothing() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, _) = app.pair(center, 5).await;
    let session = app.session(cohort, 1).await;
    let res = app.book(&session, first, None).await;
    let code = res.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();
    let cancel_path = format!("/api/v1/bookings/{code}/cancel");
    for (what, body) in [
        ("not JSON", "{".to_string()),
        ("no birth date", json!({"code": code}).to_string()),
        (
            "a numeric code",
            json!({"code": 1, "birth_date": BORN}).to_string(),
        ),
        (
            "an unknown field",
            json!({"code": code, "birth_date": BORN, "name": "김민영"}).to_string(),
        ),
        (
            "no such day",
            json!({"code": code, "birth_date": "1965-02-30"}).to_string(),
        ),
    ] {
        assert_validation(
            post_raw(&app, "/api/v1/bookings/lookup", None, &body).await,
            what,
        )
        .await;
    }
    for (what, body) in [
        ("not JSON", "{".to_string()),
        ("empty object", "{}".to_string()),
        (
            "a numeric birth date",
            json!({"birth_date": 19650301}).to_string(),
        ),
        (
            "an unknown field",
            json!({"birth_date": BORN, "code": code}).to_string(),
        ),
        (
            "no such day",
            json!({"birth_date": "1965-13-01"}).to_string(),
        ),
    ] {
        assert_validation(post_raw(&app, &cancel_path, None, &body).await, what).await;
    }
    let booking = json_of(
        app.admin_get(&format!("/api/v1/admin/bookings/{code}"))
            .await,
    )
    .await;
    assert_eq!(booking["state"], "confirmed");
    assert_eq!(app.slot_remaining(center, first).await, 4);
}

#[tokio::test]
async fn invalid_cohorts_answer_validation_and_none_is_created() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    let good = json!({
        "name": "55-59세",
        "birth_year_from": 1962,
        "birth_year_to": 1966,
        "opens_at": now.to_rfc3339(),
        "closes_at": (now + chrono::Duration::days(5)).to_rfc3339(),
        "vaccine": "Moderna",
        "dose_interval_days": 28,
        "admission_rate_per_s": 100.0,
    });
    let with = |key: &str, value: Value| {
        let mut v = good.clone();
        v[key] = value;
        v
    };
    let without = |key: &str| {
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let cases = [
        ("years inverted", with("birth_year_from", json!(1970))),
        ("a year out of range", with("birth_year_from", json!(1800))),
        (
            "closes before it opens",
            with(
                "closes_at",
                json!((now - chrono::Duration::days(1)).to_rfc3339()),
            ),
        ),
        (
            "closes as it opens",
            with("closes_at", json!(now.to_rfc3339())),
        ),
        ("no offset", with("opens_at", json!("2021-07-12T00:00:00"))),
        (
            "not an instant",
            with("opens_at", json!("2021-07-12 00:00")),
        ),
        ("zero interval", with("dose_interval_days", json!(0))),
        ("negative rate", with("admission_rate_per_s", json!(-1.0))),
        ("zero rate", with("admission_rate_per_s", json!(0.0))),
        ("empty name", with("name", json!(""))),
        ("bad vaccine", with("vaccine", json!("Moderna<script>"))),
        ("a year as a string", with("birth_year_from", json!("1962"))),
        (
            "a fractional interval",
            with("dose_interval_days", json!(28.5)),
        ),
        ("no vaccine", without("vaccine")),
        ("an unknown field", with("priority", json!(1))),
    ];
    for (what, body) in cases {
        assert_validation(app.admin_post("/api/v1/admin/cohorts", body).await, what).await;
    }
    let res = post_raw(&app, "/api/v1/admin/cohorts", Some(ADMIN), "{\"name\": ").await;
    assert_error(res, 400, "validation").await;

    assert!(admin_cohorts(&app).await.is_empty(), "no cohort created");
    assert_eq!(
        json_of(get(&app, "/api/v1/cohorts", None).await).await,
        json!([])
    );
    // The good body itself is accepted, so each refusal was for the one change.
    let res = app.admin_post("/api/v1/admin/cohorts", good).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn invalid_centers_and_slots_answer_validation_and_nothing_is_added() {
    let app = spawn_app().await;
    let center = app.center("서울").await;
    for (what, body) in [
        (
            "empty name",
            json!({"name": "", "region": "서울", "address": "어딘가"}),
        ),
        ("no address", json!({"name": "센터", "region": "서울"})),
        (
            "numeric region",
            json!({"name": "센터", "region": 1, "address": "어딘가"}),
        ),
        (
            "an unknown field",
            json!({"name": "센터", "region": "서울", "address": "어딘가", "phone": "02"}),
        ),
    ] {
        assert_validation(app.admin_post("/api/v1/admin/centers", body).await, what).await;
    }
    let centers = json_of(app.admin_get("/api/v1/admin/centers").await).await;
    assert_eq!(centers.as_array().unwrap().len(), 1, "no center created");

    let good = json!({"date": day(0), "start_time": "10:00", "end_time": "11:00", "capacity": 5, "vaccine": "Moderna"});
    let with = |key: &str, value: Value| {
        let mut v = good.clone();
        v[key] = value;
        v
    };
    let cases = [
        ("no such day", with("date", json!("2021-02-30"))),
        ("not a date", with("date", json!("tomorrow"))),
        ("hour 25", with("start_time", json!("25:00"))),
        ("minute 60", with("end_time", json!("10:60"))),
        ("unpadded time", with("start_time", json!("9:00"))),
        ("ends before it starts", with("end_time", json!("09:00"))),
        ("ends as it starts", with("end_time", json!("10:00"))),
        ("capacity 0", with("capacity", json!(0))),
        ("negative capacity", with("capacity", json!(-3))),
        ("huge capacity", with("capacity", json!(100_000_000))),
        ("capacity as a string", with("capacity", json!("5"))),
        ("empty vaccine", with("vaccine", json!(""))),
        ("an unknown field", with("center_id", json!(center))),
    ];
    let path = format!("/api/v1/admin/centers/{center}/slots");
    for (what, slot) in cases {
        // Alone, and after a good slot: one bad slot refuses the whole request.
        let res = app
            .admin_post(&path, json!({"slots": [slot.clone()]}))
            .await;
        assert_validation(res, what).await;
        let res = app
            .admin_post(&path, json!({"slots": [good.clone(), slot]}))
            .await;
        assert_validation(res, what).await;
    }
    assert_validation(
        app.admin_post(&path, json!({"slots": []})).await,
        "no slots",
    )
    .await;
    assert_validation(app.admin_post(&path, json!({})).await, "no slots field").await;
    assert_validation(
        app.admin_post(&path, json!([good.clone()])).await,
        "a bare list",
    )
    .await;

    assert!(slot_listing(&app, center).await.is_empty(), "no slot added");
    let centers = json_of(get(&app, "/api/v1/centers", None).await).await;
    assert_eq!(centers[0]["remaining"], 0, "no place added");
    // The good slot itself is accepted.
    let res = app.admin_post(&path, json!({"slots": [good]})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn invalid_cohort_patches_answer_validation_and_change_nothing() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let before = admin_cohorts(&app).await;
    let opens =
        chrono::DateTime::parse_from_rfc3339(before[0]["opens_at"].as_str().unwrap()).unwrap();
    let path = format!("/api/v1/admin/cohorts/{cohort}");
    for (what, body) in [
        (
            "closes before it opens",
            json!({"closes_at": (opens - chrono::Duration::hours(1)).to_rfc3339()}),
        ),
        (
            "closes as it opens",
            json!({"closes_at": opens.to_rfc3339()}),
        ),
        ("not an instant", json!({"closes_at": "soon"})),
        ("zero rate", json!({"admission_rate_per_s": 0.0})),
        ("a rate too high", json!({"admission_rate_per_s": 1e12})),
        ("paused as a string", json!({"paused": "yes"})),
        (
            "an unknown field",
            json!({"paused": true, "vaccine": "Pfizer"}),
        ),
    ] {
        assert_validation(patch(&app, &path, Some(ADMIN), body).await, what).await;
    }
    let res = call(
        &app,
        Method::PATCH,
        &path,
        Some(ADMIN),
        Some("{\"paused\": tru".into()),
    )
    .await;
    assert_error(res, 400, "validation").await;
    assert_eq!(admin_cohorts(&app).await, before, "the cohort is unchanged");
}

#[tokio::test]
async fn a_citizen_body_over_16_kib_answers_413_validation() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, _) = app.pair(center, 5).await;
    let session = app.session(cohort, 1).await;
    let padding = "A".repeat(17 * 1024);
    let res = lookup(&app, &padding, BORN).await;
    assert_error(res, 413, "validation").await;
    let res = post(
        &app,
        "/api/v1/bookings",
        Some(&session),
        json!({"slot_id": first, "pad": padding}),
    )
    .await;
    assert_error(res, 413, "validation").await;
    assert_eq!(app.slot_remaining(center, first).await, 5, "nothing booked");
}

// ---------------------------------------------------------------------------------------------
// cohort_closed, pre_queue
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn joining_after_closes_at_answers_409_cohort_closed_and_issues_no_ticket() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    let res = cohort_at(
        &app,
        now - chrono::Duration::days(2),
        now - chrono::Duration::days(1),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let cohort = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    for _ in 0..2 {
        let res = call(
            &app,
            Method::POST,
            &format!("/api/v1/cohorts/{cohort}/queue"),
            None,
            None,
        )
        .await;
        assert_error(res, 409, "cohort_closed").await;
    }
    assert_eq!(citizen_cohort_state(&app, cohort).await, "closed");
    let stats = json_of(app.admin_get("/api/v1/admin/stats").await).await;
    assert_eq!(stats["cohorts"][0]["waiting"], 0, "no ticket issued");
}

#[tokio::test]
async fn joining_before_opening_gives_a_pre_queue_ticket_without_a_position_and_the_cohort_is_scheduled(
) {
    let app = spawn_app().await;
    let cohort = app
        .cohort_opening_at(chrono::Utc::now() + chrono::Duration::hours(1), 1000.0)
        .await;
    let joined = app.join(cohort).await;
    assert_eq!(joined["state"], "pre_queue", "{joined}");
    assert_eq!(joined.get("position"), Some(&Value::Null), "{joined}");
    let polled = app.poll(joined["ticket"].as_str().unwrap()).await;
    assert_eq!(polled["state"], "pre_queue", "{polled}");
    assert_eq!(polled.get("position"), Some(&Value::Null), "{polled}");
    assert!(
        polled.get("pass").is_none_or(Value::is_null),
        "no pass before opening"
    );
    assert_eq!(citizen_cohort_state(&app, cohort).await, "scheduled");
}

// ---------------------------------------------------------------------------------------------
// not_eligible, identity_rejected, identity_busy, rate_limited
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_birth_year_outside_the_cohort_answers_403_not_eligible_and_leaves_the_pass_usable() {
    let app = spawn_app().await;
    let cohort = supplied_cohort(&app).await;
    let pass = admitted_pass(&app, cohort).await;
    // A day that exists but cannot be this citizen's (in the future, or centuries ago) is a
    // matter of eligibility, not of syntax: the OpenAPI document allows any real day.
    let future = (chrono::Utc::now() + chrono::Duration::days(400))
        .date_naive()
        .to_string();
    for birth in [
        "1959-12-31",
        "1971-01-01",
        "2000-06-15",
        &future,
        "0005-01-01",
    ] {
        let res = app.verify(&pass, "김민영", birth, &phone(1)).await;
        assert_error(res, 403, "not_eligible").await;
    }
    // Both ends of the range are inside it, and the pass is still unused.
    let res = app.verify(&pass, "김민영", "1960-01-01", &phone(1)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_phone_the_provider_refuses_answers_401_identity_rejected_and_leaves_the_pass_usable() {
    let app = spawn_app().await;
    let cohort = supplied_cohort(&app).await;
    let pass = admitted_pass(&app, cohort).await;
    for refused in ["010-0000-1234", "01000005678"] {
        let res = app.verify(&pass, "김민영", BORN, refused).await;
        assert_error(res, 401, "identity_rejected").await;
    }
    let stats = json_of(app.admin_get("/api/v1/admin/stats").await).await;
    assert_eq!(stats["cohorts"][0]["verified"], 0, "no session issued");
    let res = app.verify(&pass, "김민영", BORN, &phone(1)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_failing_provider_answers_503_identity_busy_with_retry_after() {
    let app = spawn_app_with(|c| c.identity.failure_rate = 1.0).await;
    let cohort = supplied_cohort(&app).await;
    let pass = admitted_pass(&app, cohort).await;
    for n in 1..=2 {
        let res = app.verify(&pass, "김민영", BORN, &phone(n)).await;
        retry_after(&res);
        assert_error(res, 503, "identity_busy").await;
    }
    let stats = json_of(app.admin_get("/api/v1/admin/stats").await).await;
    assert_eq!(stats["cohorts"][0]["verified"], 0, "no session issued");
}

#[tokio::test]
async fn a_full_identity_pool_answers_503_identity_busy_with_retry_after_and_the_pass_stays_usable()
{
    let app = spawn_app_with(|c| {
        c.identity.max_in_flight = 1;
        c.identity.latency_ms = 2000;
    })
    .await;
    let cohort = supplied_cohort(&app).await;
    let passes = [
        admitted_pass(&app, cohort).await,
        admitted_pass(&app, cohort).await,
    ];
    let phones = [phone(1), phone(2)];
    let (a, b) = tokio::join!(
        app.verify(&passes[0], "김민영", BORN, &phones[0]),
        app.verify(&passes[1], "이수진", "1966-04-02", &phones[1]),
    );
    let (busy, refused) = match (a.status().as_u16(), b.status().as_u16()) {
        (201, 503) => (b, 1),
        (503, 201) => (a, 0),
        other => panic!("expected one 201 and one 503, got {other:?}"),
    };
    retry_after(&busy);
    assert_error(busy, 503, "identity_busy").await;
    // The refused citizen's pass was not used up: once the pool has room, it verifies.
    let (name, birth, n) = [("김민영", BORN, 1), ("이수진", "1966-04-02", 2)][refused];
    let res = app.verify(&passes[refused], name, birth, &phone(n)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_sixth_check_of_one_identity_in_ten_minutes_answers_429_with_retry_after() {
    let app = spawn_app().await;
    let cohort = supplied_cohort(&app).await;
    let pass = admitted_pass(&app, cohort).await;
    let refused = "010-0000-4321";
    for _ in 0..5 {
        let res = app.verify(&pass, "김민영", BORN, refused).await;
        assert_error(res, 401, "identity_rejected").await;
    }
    let res = app.verify(&pass, "김민영", BORN, refused).await;
    let wait = retry_after(&res);
    assert!(
        wait <= 600,
        "Retry-After {wait} s beyond the ten-minute window"
    );
    assert_error(res, 429, "rate_limited").await;
    // Dashes do not make it another identity.
    let res = app.verify(&pass, "김민영", BORN, "01000004321").await;
    retry_after(&res);
    assert_error(res, 429, "rate_limited").await;
    // This pass has used its own five checks too (a per-pass limit), so even another
    // identity is refused on it...
    let res = app.verify(&pass, "김민영", BORN, &phone(1)).await;
    assert_error(res, 429, "rate_limited").await;
    // ...while the limit on the identity does not touch other identities on other passes.
    let fresh = admitted_pass(&app, cohort).await;
    let res = app.verify(&fresh, "김민영", BORN, &phone(1)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_sixth_check_of_one_identity_over_several_passes_answers_429() {
    let app = spawn_app().await;
    let cohort = supplied_cohort(&app).await;
    for _ in 0..5 {
        let pass = admitted_pass(&app, cohort).await;
        let res = app.verify(&pass, "김민영", BORN, &phone(1)).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let pass = admitted_pass(&app, cohort).await;
    let res = app.verify(&pass, "김민영", BORN, &phone(1)).await;
    retry_after(&res);
    assert_error(res, 429, "rate_limited").await;
}

#[tokio::test]
async fn a_fourth_lookup_in_a_minute_answers_429_with_retry_after_but_the_help_desk_is_not_limited()
{
    let app = spawn_app_with(|c| c.lookups_per_minute = 3).await;
    for _ in 0..3 {
        assert_error(lookup(&app, NO_SUCH_CODE, BORN).await, 404, "not_found").await;
    }
    let res = lookup(&app, NO_SUCH_CODE, BORN).await;
    let wait = retry_after(&res);
    assert!(wait <= 60, "Retry-After {wait} s for a per-minute limit");
    assert_error(res, 429, "rate_limited").await;
    for _ in 0..5 {
        let res = app
            .admin_get(&format!("/api/v1/admin/bookings/{NO_SUCH_CODE}"))
            .await;
        assert_error(res, 404, "not_found").await;
    }
}

/// A lookup sent as if through a balancer at this test's peer address (127.0.0.1).
async fn lookup_via(app: &TestApp, forwarded_for: &str) -> u16 {
    app.client
        .post(app.url("/api/v1/bookings/lookup"))
        .header("X-Forwarded-For", forwarded_for)
        .json(&json!({"code": NO_SUCH_CODE, "birth_date": BORN}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn behind_a_trusted_proxy_lookups_are_limited_per_forwarded_client_and_otherwise_per_peer() {
    // The balancer (this test, at 127.0.0.1) is trusted: each citizen it forwards has a limit.
    let app = spawn_app_with(|c| {
        c.lookups_per_minute = 2;
        c.trusted_proxies = "127.0.0.1".parse().unwrap();
    })
    .await;
    let a = "198.51.100.1, 203.0.113.10"; // the left part is the client's own claim
    assert_eq!(
        [lookup_via(&app, a).await, lookup_via(&app, a).await],
        [404, 404]
    );
    assert_eq!(lookup_via(&app, a).await, 429, "the third of one client");
    assert_eq!(
        lookup_via(&app, "203.0.113.11").await,
        404,
        "another client behind it"
    );
    assert_eq!(
        lookup_via(&app, "198.51.100.2, 203.0.113.10").await,
        429,
        "a forged left part changes nothing"
    );
    // Nobody trusted: the header is ignored and the peer is the client.
    let app = spawn_app_with(|c| c.lookups_per_minute = 2).await;
    assert_eq!(lookup_via(&app, "203.0.113.20").await, 404);
    assert_eq!(lookup_via(&app, "203.0.113.21").await, 404);
    assert_eq!(lookup_via(&app, "203.0.113.22").await, 429);
}

// ---------------------------------------------------------------------------------------------
// slot_full, already_booked, no_second_dose_slot, wrong_vaccine
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn booking_a_full_slot_answers_409_slot_full_and_takes_no_place() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, second) = app.pair(center, 1).await;
    let other = app
        .slots(center, &[(1, "10:00", 5), (29, "10:00", 5)])
        .await;
    let (s1, s2) = (app.session(cohort, 1).await, app.session(cohort, 2).await);
    assert_eq!(
        app.book(&s1, first, None).await.status(),
        StatusCode::CREATED
    );
    for _ in 0..2 {
        assert_error(app.book(&s2, first, None).await, 409, "slot_full").await;
    }
    assert_eq!(app.slot_remaining(center, first).await, 0);
    assert_eq!(app.slot_remaining(center, second).await, 0);
    assert_eq!(app.slot_remaining(center, other[0]).await, 5);
    assert_eq!(app.slot_remaining(center, other[1]).await, 5);
    let stats = json_of(app.admin_get("/api/v1/admin/stats").await).await;
    assert_eq!(stats["bookings_confirmed"], 1);
}

#[tokio::test]
async fn a_second_booking_answers_409_already_booked_and_takes_no_place() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, _) = app.pair(center, 5).await;
    let other = app
        .slots(center, &[(1, "10:00", 5), (29, "10:00", 5)])
        .await;
    let session = app.session(cohort, 1).await;
    assert_eq!(
        app.book(&session, first, None).await.status(),
        StatusCode::CREATED
    );
    assert_error(
        app.book(&session, other[0], None).await,
        409,
        "already_booked",
    )
    .await;
    assert_error(
        app.book(&session, first, Some("another")).await,
        409,
        "already_booked",
    )
    .await;
    // The same identity through another ticket is the same citizen.
    let again = app.session(cohort, 1).await;
    assert_error(
        app.book(&again, other[0], None).await,
        409,
        "already_booked",
    )
    .await;
    assert_eq!(app.slot_remaining(center, first).await, 4);
    assert_eq!(app.slot_remaining(center, other[0]).await, 5);
    assert_eq!(app.slot_remaining(center, other[1]).await, 5);
    let stats = json_of(app.admin_get("/api/v1/admin/stats").await).await;
    assert_eq!(stats["bookings_confirmed"], 1);
}

#[tokio::test]
async fn a_first_dose_without_a_second_dose_slot_answers_409_no_second_dose_slot_and_takes_no_place(
) {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    // Places elsewhere, so the cohort admits.
    let elsewhere = app.center("부산").await;
    app.pair(elsewhere, 5).await;
    let center = app.center("서울").await;
    // Day 0, and days 27 and 36: just outside the 28..=35 window of the second dose.
    let ids = app
        .slots(
            center,
            &[(0, "10:00", 5), (27, "10:00", 5), (36, "10:00", 5)],
        )
        .await;
    let session = app.session(cohort, 1).await;
    assert_error(
        app.book(&session, ids[0], None).await,
        409,
        "no_second_dose_slot",
    )
    .await;
    for id in &ids {
        assert_eq!(
            app.slot_remaining(center, *id).await,
            5,
            "slot {id} untouched"
        );
    }
    // A full second-dose day is no second dose either.
    let full = app.center("대구").await;
    let (f1, f2) = app.pair(full, 1).await;
    let other = app.session(cohort, 2).await;
    assert_eq!(
        app.book(&other, f1, None).await.status(),
        StatusCode::CREATED
    );
    let extra = app.slots(full, &[(0, "11:00", 5)]).await[0];
    assert_error(
        app.book(&session, extra, None).await,
        409,
        "no_second_dose_slot",
    )
    .await;
    assert_eq!(app.slot_remaining(full, extra).await, 5);
    assert_eq!(app.slot_remaining(full, f2).await, 0);
}

#[tokio::test]
async fn a_slot_of_another_vaccine_answers_409_wrong_vaccine_and_takes_no_place() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (moderna, _) = app.pair(center, 5).await;
    let pfizer = add_slots(
        &app,
        center,
        "Pfizer",
        &[(0, "10:00", 5), (21, "10:00", 5), (28, "10:00", 5)],
    )
    .await;
    let session = app.session(cohort, 1).await;
    assert_error(
        app.book(&session, pfizer[0], None).await,
        409,
        "wrong_vaccine",
    )
    .await;
    for id in &pfizer {
        assert_eq!(
            app.slot_remaining(center, *id).await,
            5,
            "slot {id} untouched"
        );
    }
    assert_eq!(
        app.book(&session, moderna, None).await.status(),
        StatusCode::CREATED
    );
}

// ---------------------------------------------------------------------------------------------
// sold_out
// ---------------------------------------------------------------------------------------------

/// A cohort whose one place is booked; answers its id, the center and the booking code.
async fn sold_out_cohort(app: &TestApp) -> (i64, i64, String) {
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, _) = app.pair(center, 1).await;
    let session = app.session(cohort, 1).await;
    let res = app.book(&session, first, None).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let code = res.json::<Value>().await.unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_cohort_state(app, cohort, "sold_out").await;
    (cohort, center, code)
}

#[tokio::test]
async fn a_cohort_whose_places_are_all_booked_is_sold_out_and_a_new_ticket_says_so_at_once() {
    let app = spawn_app().await;
    let (cohort, _, _) = sold_out_cohort(&app).await;
    let joined = app.join(cohort).await;
    assert_eq!(joined["state"], "sold_out", "{joined}");
    assert!(joined["ticket"].is_string());
    let polled = app.poll(joined["ticket"].as_str().unwrap()).await;
    assert_eq!(polled["state"], "sold_out", "{polled}");
    assert!(
        polled.get("pass").is_none_or(Value::is_null),
        "no pass: {polled}"
    );
    assert_eq!(citizen_cohort_state(&app, cohort).await, "sold_out");
}

#[tokio::test]
async fn a_sold_out_ticket_keeps_its_place_and_is_admitted_when_a_cancellation_returns_one() {
    let app = spawn_app().await;
    let (cohort, _, code) = sold_out_cohort(&app).await;
    let waiting = ticket(&app, cohort).await;
    assert_eq!(app.poll(&waiting).await["state"], "sold_out");
    let res = cancel(&app, &code, BORN).await;
    assert_eq!(res.status(), StatusCode::OK);
    wait_for_ticket_state(&app, &waiting, "admitted").await;
}

// ---------------------------------------------------------------------------------------------
// The error shape everywhere
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_wrong_method_on_a_known_path_answers_405_with_allow_and_the_error_shape() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (Method::DELETE, "/api/v1/cohorts", "GET"),
        (Method::GET, "/api/v1/bookings", "POST"),
        (Method::PUT, "/api/v1/queue", "GET"),
        (Method::DELETE, "/api/v1/admin/cohorts", "GET, POST"),
        (Method::POST, "/api/v1/admin/cohorts/1", "PATCH"),
    ] {
        let res = call(&app, method.clone(), path, None, None).await;
        assert_eq!(res.status().as_u16(), 405, "{method} {path}");
        assert_eq!(res.headers()["allow"], allow, "{method} {path}");
        let v: Value = res
            .json()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: no JSON body ({e})"));
        assert_eq!(v["error"], "method_not_allowed", "{method} {path}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
}

#[tokio::test]
async fn a_json_array_in_place_of_the_object_body_answers_validation_and_changes_nothing() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, second) = app.pair(center, 5).await;
    let pass = admitted_pass(&app, cohort).await;
    let session = app.session(cohort, 2).await;
    let mut wrong = Vec::new();
    for (path, token, body) in [
        (
            "/api/v1/verifications",
            Some(pass.as_str()),
            json!(["김민영", BORN, phone(1)]),
        ),
        ("/api/v1/bookings", Some(session.as_str()), json!([first])),
        ("/api/v1/bookings/lookup", None, json!([NO_SUCH_CODE, BORN])),
    ] {
        let res = post(&app, path, token, body.clone()).await;
        let status = res.status().as_u16();
        if status != 400 && status != 422 {
            wrong.push(format!(
                "POST {path} {body} -> {status} {}",
                res.text().await.unwrap()
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let stats = json_of(app.admin_get("/api/v1/admin/stats").await).await;
    assert_eq!(
        stats["cohorts"][0]["verified"], 1,
        "only the helper's session issued"
    );
    assert_eq!(app.slot_remaining(center, first).await, 5, "nothing booked");
    assert_eq!(
        app.slot_remaining(center, second).await,
        5,
        "nothing booked"
    );
}
