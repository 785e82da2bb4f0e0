//! Fault injection over HTTP: a commit that fails answers 503 with `Retry-After` and leaves
//! the inventory exactly as it was; the next attempt books normally.

mod common;

use common::{assert_error, spawn_app};
use reqwest::StatusCode;
use reservation::actors::booking_store::FailNextCommits;

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
