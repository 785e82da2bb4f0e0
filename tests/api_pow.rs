//! Proof of work on join and the per-client join limit (issue 17) over real HTTP: the
//! challenge a cohort asks, every way a solution is refused, one solution one ticket, and
//! `JOINS_PER_MINUTE`.

mod common;

use common::{assert_error, spawn_app, spawn_app_with, TestApp};
use reqwest::header::RETRY_AFTER;
use reqwest::{Response, StatusCode};
use reservation::domain::challenge::{leading_zero_bits, solve, Challenge};
use reservation::domain::tokens::Signer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The key `common::test_config` gives the server: the test signs challenges of its own.
const SECRET: &[u8] = b"test-secret-key";

async fn cohort_with_difficulty(app: &TestApp, bits: i64) -> i64 {
    let id = app.open_cohort(100.0).await;
    let res = patch(app, id, json!({ "join_difficulty": bits })).await;
    assert_eq!(res.status(), StatusCode::OK);
    id
}

async fn patch(app: &TestApp, id: i64, body: Value) -> Response {
    app.client
        .patch(app.url(&format!("/api/v1/admin/cohorts/{id}")))
        .bearer_auth(common::ADMIN)
        .json(&body)
        .send()
        .await
        .expect("patch")
}

async fn challenge(app: &TestApp, id: i64) -> Value {
    let res = app
        .client
        .get(app.url(&format!("/api/v1/cohorts/{id}/challenge")))
        .send()
        .await
        .expect("challenge");
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("json")
}

async fn join_with(app: &TestApp, id: i64, body: Option<Value>) -> Response {
    let req = app
        .client
        .post(app.url(&format!("/api/v1/cohorts/{id}/queue")));
    match body {
        Some(b) => req.json(&b),
        None => req,
    }
    .send()
    .await
    .expect("join")
}

fn solved(c: &Value) -> Value {
    let text = c["challenge"].as_str().unwrap();
    let bits = c["difficulty"].as_u64().unwrap() as u32;
    let (nonce, _) = solve(text, bits);
    json!({ "challenge": text, "nonce": nonce.to_string() })
}

/// A nonce that does not solve `text` at `bits` (the digest checked here, not assumed).
fn wrong_nonce(text: &str, bits: u32) -> String {
    (0u64..)
        .find(|n| {
            let d = Sha256::digest(format!("{text}:{n}").as_bytes());
            leading_zero_bits(&d) < bits
        })
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_challenge_asks_the_cohorts_difficulty_and_expires_in_two_minutes() {
    let app = spawn_app().await;
    let id = cohort_with_difficulty(&app, 6).await;
    let c = challenge(&app, id).await;
    assert_eq!(c["difficulty"], 6);
    let expires = chrono::DateTime::parse_from_rfc3339(c["expires_at"].as_str().unwrap())
        .expect("an RFC 3339 instant");
    let left = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((100..=121).contains(&left), "{left}");
    let listed: Value = app
        .client
        .get(app.url("/api/v1/cohorts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["join_difficulty"], 6);
    let res = app
        .client
        .get(app.url("/api/v1/cohorts/9999/challenge"))
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "not_found").await;
}

#[tokio::test]
async fn a_correct_solution_joins_once_and_the_same_again_is_challenge_used() {
    let app = spawn_app().await;
    let id = cohort_with_difficulty(&app, 8).await;
    let body = solved(&challenge(&app, id).await);
    let res = join_with(&app, id, Some(body.clone())).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["position"], 1);
    let again = join_with(&app, id, Some(body.clone())).await;
    assert_error(again, 409, "challenge_used").await;
    // After a restart (the memory of this node gone) the database still refuses it.
    let app = app.restart();
    let again = join_with(&app, id, Some(body)).await;
    assert_error(again, 409, "challenge_used").await;
    // A fresh solution takes the next place: the refused ones took none.
    let res = join_with(&app, id, Some(solved(&challenge(&app, id).await))).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let second: Value = res.json().await.unwrap();
    assert_eq!(second["position"], 2, "{second}");
}

#[tokio::test]
async fn without_a_solution_or_with_a_wrong_one_a_join_is_refused_and_takes_no_place() {
    let app = spawn_app().await;
    let id = cohort_with_difficulty(&app, 8).await;
    assert_error(join_with(&app, id, None).await, 400, "validation").await;
    let c = challenge(&app, id).await;
    let text = c["challenge"].as_str().unwrap();
    let wrong = json!({ "challenge": text, "nonce": wrong_nonce(text, 8) });
    assert_error(join_with(&app, id, Some(wrong)).await, 400, "validation").await;
    for nonce in ["", "-1", "1.5", "0x10"] {
        let bad = json!({ "challenge": text, "nonce": nonce });
        assert_error(join_with(&app, id, Some(bad)).await, 400, "validation").await;
    }
    let forged = json!({ "challenge": format!("{text}x"), "nonce": "1" });
    assert_error(join_with(&app, id, Some(forged)).await, 400, "validation").await;
    let not_json = app
        .client
        .post(app.url(&format!("/api/v1/cohorts/{id}/queue")))
        .body("{nonce")
        .send()
        .await
        .unwrap();
    assert_error(not_json, 400, "validation").await;
    // The wrong answer did not spend the challenge: solved, it joins first in line.
    let res = join_with(&app, id, Some(solved(&c))).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.json::<Value>().await.unwrap()["position"], 1);
}

#[tokio::test]
async fn an_expired_challenge_or_another_cohorts_is_refused() {
    let app = spawn_app().await;
    let id = cohort_with_difficulty(&app, 4).await;
    let other = cohort_with_difficulty(&app, 4).await;
    let signer = Signer::new(SECRET);
    let expired = signer.challenge(&Challenge {
        cohort_id: id as i32,
        id: "00000000000000000000000000000001".into(),
        difficulty: 4,
        expires_at: chrono::Utc::now().timestamp() - 1,
    });
    let (nonce, _) = solve(&expired, 4);
    let body = json!({ "challenge": expired, "nonce": nonce.to_string() });
    let res = assert_error(join_with(&app, id, Some(body)).await, 400, "validation").await;
    assert!(
        res["message"].as_str().unwrap().contains("expired"),
        "{res}"
    );
    // Solved for one cohort, it is no good at another.
    let body = solved(&challenge(&app, other).await);
    assert_error(
        join_with(&app, id, Some(body.clone())).await,
        400,
        "validation",
    )
    .await;
    assert_eq!(
        join_with(&app, other, Some(body)).await.status(),
        StatusCode::CREATED
    );
    // A challenge signed under another key (another deployment) is refused too.
    let foreign = Signer::new(b"another key").challenge(&Challenge {
        cohort_id: id as i32,
        id: "00000000000000000000000000000002".into(),
        difficulty: 0,
        expires_at: chrono::Utc::now().timestamp() + 60,
    });
    let body = json!({ "challenge": foreign, "nonce": "0" });
    assert_error(join_with(&app, id, Some(body)).await, 400, "validation").await;
}

#[tokio::test]
async fn with_difficulty_0_joins_need_no_body_as_before_and_the_challenge_asks_none() {
    let app = spawn_app().await;
    let id = app.open_cohort(100.0).await;
    assert_eq!(app.join(id).await["position"], 1);
    let empty = app
        .client
        .post(app.url(&format!("/api/v1/cohorts/{id}/queue")))
        .header("content-type", "application/json")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::CREATED);
    let c = challenge(&app, id).await;
    assert_eq!(c["difficulty"], 0);
    // A solution sent anyway is checked and counted like any other.
    let body = solved(&c);
    assert_eq!(
        join_with(&app, id, Some(body.clone())).await.status(),
        StatusCode::CREATED
    );
    assert_error(join_with(&app, id, Some(body)).await, 409, "challenge_used").await;
}

#[tokio::test]
async fn join_difficulty_is_set_at_creation_patched_and_checked_for_range() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    let mut body = json!({
        "name": "pow",
        "birth_year_from": 1960,
        "birth_year_to": 1970,
        "opens_at": now.to_rfc3339(),
        "closes_at": (now + chrono::Duration::days(1)).to_rfc3339(),
        "vaccine": "Moderna",
        "dose_interval_days": 28,
        "join_difficulty": 3,
    });
    let res = app.admin_post("/api/v1/admin/cohorts", body.clone()).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["join_difficulty"], 3);
    let id = created["id"].as_i64().unwrap();
    for bad in [json!(25), json!(-1), json!(2.5), json!("8")] {
        body["join_difficulty"] = bad.clone();
        let res = app.admin_post("/api/v1/admin/cohorts", body.clone()).await;
        assert_error(res, 422, "validation").await;
        let res = patch(&app, id, json!({ "join_difficulty": bad })).await;
        assert_error(res, 422, "validation").await;
    }
    let res = patch(&app, id, json!({ "join_difficulty": 0 })).await;
    assert_eq!(res.json::<Value>().await.unwrap()["join_difficulty"], 0);
    assert_eq!(
        app.join(id).await["position"],
        1,
        "off again: no body needed"
    );
    let res = patch(&app, id, json!({ "join_difficulty": 24 })).await;
    assert_eq!(res.json::<Value>().await.unwrap()["join_difficulty"], 24);
    // Stored: a restart reads it back.
    let app = app.restart();
    assert_eq!(challenge(&app, id).await["difficulty"], 24);
    assert_error(join_with(&app, id, None).await, 400, "validation").await;
}

#[tokio::test]
async fn past_joins_per_minute_a_client_gets_429_with_retry_after() {
    let app = spawn_app_with(|c| c.joins_per_minute = 2).await;
    let id = app.open_cohort(100.0).await;
    app.join(id).await;
    app.join(id).await;
    let third = join_with(&app, id, None).await;
    let wait: u64 = third.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_error(third, 429, "rate_limited").await;
    // Without the setting nobody is limited.
    let app = spawn_app().await;
    let id = app.open_cohort(100.0).await;
    for _ in 0..5 {
        app.join(id).await;
    }
}
