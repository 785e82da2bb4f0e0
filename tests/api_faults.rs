//! Fault injection over HTTP: a commit that fails answers 503 with `Retry-After` and leaves
//! the inventory exactly as it was; the next attempt books normally. And a mistaken second
//! start on a port already taken fails without touching its data folder.

mod common;

use common::{assert_error, spawn_app};
use reqwest::StatusCode;
use reservation::actors::booking_store::FailNextCommits;
use reservation::config::Config;
use reservation::startup::Application;

#[tokio::test]
async fn a_failed_commit_answers_503_and_loses_or_double_counts_no_place() {
    let app = spawn_app().await;
    let cohort = app.open_cohort(1000.0).await;
    let center = app.center("서울").await;
    let (first, second) = app.pair(center, 3).await;
    let session = app.session(cohort, 1).await;

    app.state.store.send(FailNextCommits(1)).await.unwrap();
    let res = app.book(&session, first, Some("try-1")).await;
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry.is_some_and(|s| s >= 1),
        "Retry-After in whole seconds"
    );
    assert_error(res, 503, "unavailable").await;
    assert_eq!(
        app.slot_remaining(center, first).await,
        3,
        "no first-dose place lost"
    );
    assert_eq!(
        app.slot_remaining(center, second).await,
        3,
        "no second-dose place lost"
    );

    // The same key is tried afresh, since its first attempt failed.
    let res = app.book(&session, first, Some("try-1")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(app.slot_remaining(center, first).await, 2, "counted once");
    assert_eq!(app.slot_remaining(center, second).await, 2);
}

#[actix_web::test]
async fn a_second_server_on_a_busy_port_fails_naming_it_and_writes_nothing_to_its_data_folder() {
    let running = spawn_app().await;
    let port = running.base.rsplit(':').next().unwrap().to_string();
    let fresh = tempfile::tempdir().expect("temp dir");
    let mut config = Config::new(fresh.path().join("data").join("reservations.db"));
    config.bind_addr = format!("127.0.0.1:{port}");
    // Neither given: a start that went on would generate both beside the data.
    config.admin_token = None;
    config.secret_key = None;

    let Err(error) = Application::build(config).await else {
        panic!("a second server started on the busy port {port}");
    };
    assert!(
        error.contains(&format!("127.0.0.1:{port}")),
        "the error names the address: {error}"
    );
    let left: Vec<_> = std::fs::read_dir(fresh.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        left.is_empty(),
        "the data folder was touched (no database, admin.token or secret.key expected): {left:?}"
    );
    // The first server still serves.
    let res = running.client.get(running.url("/healthz")).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::OK);
}
