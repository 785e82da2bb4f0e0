//! The documentation stays true: `docs/api.md` names every operation the server's OpenAPI
//! document serves, and nothing under the API that it does not.

mod common;

use common::spawn_app;
use serde_json::Value;

const API_DOC: &str = include_str!("../docs/api.md");

/// Whether `line` holds `needle` as a whole, not as part of a longer path (so that
/// `GET /api/v1/centers` is not found in `GET /api/v1/centers/{id}/slots`).
fn holds(line: &str, needle: &str) -> bool {
    let path_char = |c: char| c.is_alphanumeric() || "/{}_.-".contains(c);
    line.match_indices(needle).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + needle.len()..].chars().next();
        !before.is_some_and(path_char) && !after.is_some_and(path_char)
    })
}

/// Every (METHOD, path) of the document the server serves.
async fn served_operations() -> Vec<(String, String)> {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api-docs/openapi.json"))
        .send()
        .await
        .expect("document");
    assert_eq!(res.status().as_u16(), 200);
    let doc: Value = res.json().await.expect("json");
    let mut ops = vec![];
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.push((method.to_uppercase(), path.clone()));
        }
    }
    assert!(
        ops.len() >= 20,
        "the document lists too few operations: {ops:?}"
    );
    ops
}

#[tokio::test]
async fn docs_api_md_names_every_path_and_operation_the_served_openapi_document_lists() {
    let ops = served_operations().await;
    let missing_paths: Vec<_> = ops
        .iter()
        .map(|(_, p)| p)
        .filter(|p| !API_DOC.lines().any(|l| holds(l, p)))
        .collect();
    assert!(
        missing_paths.is_empty(),
        "docs/api.md never names these paths: {missing_paths:?}"
    );
    let missing: Vec<_> = ops
        .iter()
        .map(|(m, p)| format!("{m} {p}"))
        .filter(|op| !API_DOC.lines().any(|l| holds(l, op)))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/api.md has no line for these operations (write e.g. a heading `METHOD /path`): \
         {missing:?}"
    );
}

#[tokio::test]
async fn every_operation_docs_api_md_heads_a_section_with_is_served() {
    let ops = served_operations().await;
    let pages = ["/", "/admin", "/assets/{version}/{name}"];
    for line in API_DOC.lines().filter(|l| l.starts_with('#')) {
        let Some(op) = line.split('`').nth(1) else {
            continue;
        };
        let Some((method, path)) = op.split_once(' ') else {
            continue;
        };
        if !["GET", "POST", "PATCH", "PUT", "DELETE"].contains(&method) || pages.contains(&path) {
            continue;
        }
        assert!(
            ops.iter().any(|(m, p)| m == method && p == path),
            "docs/api.md documents {method} {path}, which the server does not serve"
        );
    }
}
