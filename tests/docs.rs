//! The documentation stays true: `docs/api.md` names every operation the server's OpenAPI
//! document serves, and nothing under the API that it does not; the README's curl session is
//! `scripts/session.sh` word for word, and that script runs against the built server; what
//! `docs/api.md` says of query strings (percent-encoded, or refused before any handler) holds.

mod common;

use common::spawn_app;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const API_DOC: &str = include_str!("../docs/api.md");
const README: &str = include_str!("../README.md");
const SESSION: &str = include_str!("../scripts/session.sh");

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

/// The first ```sh block after the heading `heading`.
fn block_after<'a>(text: &'a str, heading: &str) -> &'a str {
    let at = text.find(heading).expect("the heading is in the README");
    let rest = &text[at..];
    let open = rest.find("```sh\n").expect("a sh block after the heading") + "```sh\n".len();
    let len = rest[open..].find("\n```\n").expect("the block ends") + 1;
    &rest[open..open + len]
}

#[test]
fn the_readme_curl_session_is_scripts_session_sh_verbatim() {
    let block = block_after(README, "## A session with curl\n");
    if block != SESSION {
        let first_difference = block
            .lines()
            .zip(SESSION.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(block.lines().count().min(SESSION.lines().count()));
        panic!(
            "README.md's session differs from scripts/session.sh from line {} of the script on: \
             copy the script into the README",
            first_difference + 1
        );
    }
}

#[test]
fn scripts_session_sh_runs_from_start_to_end_against_the_built_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = std::process::Command::new("bash")
        .arg("scripts/session.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SERVER_BIN", env!("CARGO_BIN_EXE_reservation"))
        .env("PORT", port.to_string())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash runs");
    // The script bounds each step; this bounds the whole, should one hang regardless.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("scripts/session.sh still running after 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success() && out.contains("session: every answer as expected"),
        "scripts/session.sh failed ({status}):\n{out}\n{err}"
    );
    // It stopped its server: nothing answers on its port any more.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the session's server is still listening on {port}"
    );
}

#[tokio::test]
async fn a_percent_encoded_region_finds_its_centers_and_a_raw_one_is_refused_before_any_handler() {
    let app = spawn_app().await;
    let seoul = app.center("서울").await;
    app.center("부산").await;

    // As `curl -G --data-urlencode region=서울` sends it.
    let res = app
        .client
        .get(app.url("/api/v1/centers"))
        .query(&[("region", "서울")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let ids: Vec<Value> = res.json::<Vec<Value>>().await.unwrap();
    let ids: Vec<_> = ids.iter().map(|c| c["id"].clone()).collect();
    assert_eq!(ids, vec![json!(seoul)], "only the center of 서울");

    // As `curl "$B/api/v1/centers?region=서울"` sends it: raw UTF-8 in the request line.
    // actix-http refuses it while parsing the head (`http::Uri` takes ASCII only), with a
    // bodiless 400 and no hook to give it one (see `http::routes`). This pins what
    // docs/api.md says of it; should actix ever pass it on, the JSON answer belongs here.
    let port = app.base.rsplit(':').next().unwrap();
    let raw = tokio::task::spawn_blocking({
        let addr = format!("127.0.0.1:{port}");
        move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all("GET /api/v1/centers?region=서울 HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes())
                .unwrap();
            let mut answer = String::new();
            // The server closes the connection after answering: read to the end.
            s.read_to_string(&mut answer).unwrap();
            answer
        }
    })
    .await
    .unwrap();
    let lower = raw.to_ascii_lowercase();
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(lower.contains("content-length: 0\r\n"), "{raw}");
    assert!(lower.contains("connection: close\r\n"), "{raw}");

    // A query string actix parses but the handler's query cannot take is the JSON 400 of
    // every other bad input.
    let res = app
        .client
        .get(app.url("/api/v1/centers?region=a&region=b"))
        .send()
        .await
        .unwrap();
    common::assert_error(res, 400, "validation").await;
}
