//! Issue 13, from the outside: three real nodes on one real PostgreSQL behind a real HAProxy
//! (`deploy/haproxy.cfg`), one test per numbered item that can be checked over HTTP and in the
//! database. Every answer goes into a history (`common/cluster.rs`: who was asked, who answered,
//! endpoint, status, body, when) and the invariants are checked from it after the run, by the
//! small `check_*` functions at the end. Every wait polls for its condition under a deadline.
//!
//! Run alone: `cargo test --test cluster -- --nocapture` (the measured delays and rates are
//! printed). The clusters run one at a time (the harness serialises them).

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use cluster::{Answer, At, Cluster, Event, Recorder};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Set-up helpers (operator side).

fn tomorrow() -> chrono::NaiveDate {
    (chrono::Utc::now() + chrono::Duration::hours(9)).date_naive() + chrono::Days::new(1)
}

fn expect(a: &Answer, status: u16, what: &str) -> Value {
    assert_eq!(a.status, status, "{what}: {}", a.body);
    a.body.clone()
}

async fn create_cohort(rec: &Recorder, at: At, rate: f64, paused: bool) -> i64 {
    let now = chrono::Utc::now();
    let a = rec
        .admin(at, Method::POST, "/api/v1/admin/cohorts")
        .json(json!({
            "name": "cluster cohort", "birth_year_from": 1960, "birth_year_to": 1970,
            "opens_at": (now - chrono::Duration::minutes(1)).to_rfc3339(),
            "closes_at": (now + chrono::Duration::days(10)).to_rfc3339(),
            "vaccine": "Moderna", "dose_interval_days": 28, "admission_rate_per_s": rate,
        }))
        .send()
        .await;
    let id = expect(&a, 201, "create a cohort")["id"].as_i64().unwrap();
    if paused {
        patch_cohort(rec, at, id, json!({"paused": true})).await;
    }
    id
}

async fn patch_cohort(rec: &Recorder, at: At, id: i64, body: Value) {
    let a = rec
        .admin(at, Method::PATCH, &format!("/api/v1/admin/cohorts/{id}"))
        .json(body)
        .send()
        .await;
    expect(&a, 200, "patch a cohort");
}

/// A change made at a node other than the one that created the cohort; a refusal is noted.
async fn patch_at(rec: &Recorder, at: At, id: i64, body: Value, problems: &mut Vec<String>) {
    let a = rec
        .admin(at, Method::PATCH, &format!("/api/v1/admin/cohorts/{id}"))
        .json(body.clone())
        .send()
        .await;
    if a.status != 200 {
        problems.push(format!("PATCH {body} at {at:?}: {} {}", a.status, a.body));
    }
}

async fn create_center(rec: &Recorder, at: At) -> i64 {
    let a = rec
        .admin(at, Method::POST, "/api/v1/admin/centers")
        .json(json!({"name": "센터", "region": "서울", "address": "어딘가 1"}))
        .send()
        .await;
    expect(&a, 201, "create a center")["id"].as_i64().unwrap()
}

/// A first-dose slot tomorrow and its second 28 days later, `cap` places each: `cap` bookable.
async fn add_pair(rec: &Recorder, at: At, center: i64, hour: u32, cap: i64) -> (i64, i64) {
    let slot = |d: u64| {
        json!({"date": (tomorrow() + chrono::Days::new(d)).to_string(),
               "start_time": format!("{hour:02}:00"), "end_time": format!("{:02}:00", hour + 1),
               "capacity": cap, "vaccine": "Moderna"})
    };
    let a = rec
        .admin(
            at,
            Method::POST,
            &format!("/api/v1/admin/centers/{center}/slots"),
        )
        .json(json!({"slots": [slot(0), slot(28)]}))
        .send()
        .await;
    let v = expect(&a, 201, "add slots");
    let ids: Vec<i64> = v["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    (ids[0], ids[1])
}

/// Something an operator made, as a citizen or an operator sees it at one node.
#[derive(Debug, Clone)]
enum Probe {
    Cohort(i64),
    CohortField(i64, &'static str, Value),
    Center(i64),
    Slot(i64, i64),
}

async fn probe(rec: &Recorder, at: At, p: &Probe) -> bool {
    let list = |a: Answer| a.body.as_array().cloned().unwrap_or_default();
    match p {
        Probe::Cohort(id) => list(rec.get(at, "/api/v1/cohorts").send().await)
            .iter()
            .any(|c| c["id"] == *id),
        Probe::CohortField(id, field, value) => list(
            rec.admin(at, Method::GET, "/api/v1/admin/cohorts")
                .send()
                .await,
        )
        .iter()
        .any(|c| c["id"] == *id && c[*field] == *value),
        Probe::Center(id) => list(rec.get(at, "/api/v1/centers").send().await)
            .iter()
            .any(|c| c["id"] == *id),
        Probe::Slot(center, slot) => list(
            rec.get(at, &format!("/api/v1/centers/{center}/slots"))
                .send()
                .await,
        )
        .iter()
        .any(|s| s["id"] == *slot),
    }
}

/// For each node: how long (seconds, from `since`) until it served `p`, or None past `limit`.
async fn delays(rec: &Recorder, p: &Probe, since: Instant, limit: Duration) -> Vec<Option<f64>> {
    join_all((0..rec.nodes()).map(|i| async move {
        loop {
            if probe(rec, At::Node(i), p).await {
                return Some(since.elapsed().as_secs_f64());
            }
            if since.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }))
    .await
}

/// Set-up for the tests of the other items: waits up to 1 s for every node to serve what the
/// operator made (item 1); a node that does not is restarted (it loads the database at start)
/// and said so, so that item 1 failing does not hide whether the item under test holds.
async fn ensure_everywhere(cluster: &Cluster, rec: &Recorder, probes: &[Probe]) {
    let since = Instant::now();
    let mut stale = HashSet::new();
    for p in probes {
        for (i, d) in delays(rec, p, since, Duration::from_secs(1))
            .await
            .iter()
            .enumerate()
        {
            if d.is_none() {
                stale.insert(i);
            }
        }
    }
    let mut stale: Vec<usize> = stale.into_iter().collect();
    stale.sort();
    for &i in &stale {
        eprintln!(
            "NOTE (item 1): {} did not serve the operator's set-up within 1 s; restarting it \
             so this test checks its own item",
            cluster.node_name(i)
        );
        cluster.restart(i).await;
    }
    if !stale.is_empty() {
        wait_lb_serves_all(cluster, rec).await;
        for p in probes {
            for i in 0..rec.nodes() {
                assert!(
                    probe(rec, At::Node(i), p).await,
                    "{} does not serve {p:?} even after a restart",
                    cluster.node_name(i)
                );
            }
        }
    }
}

/// Waits until the balancer has sent a request to every node (all back in rotation), ≤ 10 s.
async fn wait_lb_serves_all(cluster: &Cluster, rec: &Recorder) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = HashSet::new();
    while seen.len() < cluster.len() {
        let a = rec.get(At::Lb, "/readyz").send().await;
        if let Some(s) = a.served_by {
            seen.insert(s);
        }
        assert!(
            Instant::now() < deadline,
            "the balancer sent to only {seen:?} in 10 s\n{}",
            cluster.haproxy_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The citizen's side.

/// Sends `call` again while the answer is 503 (honouring `Retry-After`, at most 1 s at a time
/// here) or no answer at all, until `deadline`; returns the last answer.
async fn retrying<F, Fut>(deadline: Instant, mut call: F) -> Answer
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    loop {
        let a = call().await;
        if !(a.status == 503 || a.status == 0) || Instant::now() >= deadline {
            return a;
        }
        let wait = Duration::from_secs(a.retry_after.unwrap_or(1).clamp(1, 2));
        tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

async fn join(rec: &Recorder, at: At, cohort: i64, key: &str, deadline: Instant) -> Answer {
    retrying(deadline, || {
        rec.post(at, &format!("/api/v1/cohorts/{cohort}/queue"))
            .key(key)
            .send()
    })
    .await
}

async fn poll(rec: &Recorder, at: At, ticket: &str, key: &str) -> Answer {
    rec.get(at, "/api/v1/queue")
        .bearer(ticket)
        .key(key)
        .send()
        .await
}

/// How a citizen's journey ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Booked(String),
    /// The last answer that ended it (e.g. `409 slot_full`, `sold_out`, `503 unavailable`).
    Refused(String),
}

fn phone(n: u32) -> String {
    format!("010-{:04}-{:04}", 1000 + n / 10_000, n % 10_000)
}

/// How long a ticket reads `sold_out` before its citizen gives up.
const SOLD_OUT_FINAL: Duration = Duration::from_secs(2);

/// Join, poll until admitted, verify: the session (or why not). Each step at `at(step)`.
async fn session(
    rec: &Recorder,
    at: impl Fn(u32) -> At,
    cohort: i64,
    n: u32,
    deadline: Instant,
) -> Result<String, String> {
    let key = format!("c{n}");
    let a = join(rec, at(0), cohort, &key, deadline).await;
    let ticket = a
        .str("ticket")
        .ok_or_else(|| format!("join {} {}", a.status, a.body))?;
    let mut k = 1;
    // A citizen told `sold_out` keeps polling: the contract has it resume when places come
    // back (a place held by an admitted citizen who then books elsewhere or gives up, slots
    // added a moment after the cohort). Only `sold_out` for `SOLD_OUT_FINAL` ends the journey.
    let mut sold_out_since: Option<Instant> = None;
    let pass = loop {
        let a = poll(rec, at(k), &ticket, &key).await;
        k += 1;
        if a.status == 200 {
            match a.body["state"].as_str() {
                Some("admitted") => break a.str("pass").unwrap(),
                Some("waiting" | "pre_queue") => sold_out_since = None,
                Some("sold_out") => {
                    let since = *sold_out_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= SOLD_OUT_FINAL {
                        return Err("ticket Some(\"sold_out\")".into());
                    }
                }
                other => return Err(format!("ticket {other:?}")),
            }
        } else if a.status != 503 && a.status != 0 {
            return Err(format!("poll {} {}", a.status, a.body));
        }
        if Instant::now() > deadline {
            return Err(format!("not admitted by the deadline: {}", a.body));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let a = retrying(deadline, || {
        rec.post(at(k), "/api/v1/verifications")
            .bearer(&pass)
            .key(&key)
            .json(
                json!({"name": format!("시민{n}"), "birth_date": "1965-03-01", "phone": phone(n)}),
            )
            .send()
    })
    .await;
    a.str("session")
        .ok_or_else(|| format!("verify {} {}", a.status, a.body))
}

/// Books the first of `slots` (in turn) with room, with an idempotency key, retrying 503s.
async fn book(
    rec: &Recorder,
    at: At,
    session: &str,
    slots: &[i64],
    n: u32,
    deadline: Instant,
) -> Outcome {
    let mut last = String::new();
    for (attempt, slot) in slots.iter().enumerate() {
        let idem = format!("c{n}-{attempt}");
        let a = retrying(deadline, || {
            rec.post(at, "/api/v1/bookings")
                .bearer(session)
                .header("Idempotency-Key", &idem)
                .key(format!("c{n}"))
                .json(json!({"slot_id": slot}))
                .send()
        })
        .await;
        match (a.status, a.code()) {
            (201, _) => return Outcome::Booked(a.str("code").unwrap()),
            (409, Some("slot_full" | "no_second_dose_slot")) => {
                last = format!("409 {}", a.code().unwrap())
            }
            _ => return Outcome::Refused(format!("{} {}", a.status, a.body)),
        }
    }
    Outcome::Refused(last)
}

fn codes_booked(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Booked(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// Waits until the balancer's log says `node` is DOWN; the delay from `since`, ≤ `limit`.
async fn lb_marks_down(cluster: &Cluster, node: &str, since: Instant, limit: Duration) -> f64 {
    let needle = format!("Server nodes/{node} is DOWN");
    loop {
        if cluster.haproxy_log().contains(&needle) {
            return since.elapsed().as_secs_f64();
        }
        assert!(
            since.elapsed() < limit,
            "HAProxy did not mark {node} down within {limit:?}\n{}",
            cluster.haproxy_log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fail_if(violations: Vec<String>, what: &str, cluster: &Cluster) {
    if !violations.is_empty() {
        let shown: Vec<&String> = violations.iter().take(15).collect();
        panic!(
            "{what}: {} violation(s), first ones:\n  {}\n--- answers ---\n{}",
            violations.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
            cluster.history.summary()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Any node answers any request.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item1_tokens_work_at_every_node_and_operator_changes_reach_every_node_within_a_second() {
    let cluster = Cluster::start(3).await;
    let rec = cluster.recorder();
    let n1 = At::Node(0);
    let n2 = At::Node(1);
    let mut problems = Vec::new();
    let mut table = Vec::new();
    let limit = Duration::from_secs(1);
    fn measure(
        table: &mut Vec<String>,
        problems: &mut Vec<String>,
        what: &str,
        d: Vec<Option<f64>>,
    ) {
        table.push(format!("{what:<34} {d:?}"));
        for (i, d) in d.iter().enumerate() {
            if d.is_none() {
                problems.push(format!("node{} did not serve {what} within 1 s", i + 1));
            }
        }
    }

    let t = Instant::now();
    let cohort = create_cohort(&rec, n1, 1000.0, false).await;
    measure(
        &mut table,
        &mut problems,
        "a cohort created at node1",
        delays(&rec, &Probe::Cohort(cohort), t, limit).await,
    );
    let t = Instant::now();
    let center = create_center(&rec, n1).await;
    measure(
        &mut table,
        &mut problems,
        "a center created at node1",
        delays(&rec, &Probe::Center(center), t, limit).await,
    );
    let t = Instant::now();
    let (first, _) = add_pair(&rec, n1, center, 10, 50).await;
    measure(
        &mut table,
        &mut problems,
        "slots added at node1",
        delays(&rec, &Probe::Slot(center, first), t, limit).await,
    );

    // Tokens: a ticket from node1 polled at node2 and node3; its pass verified at node2; the
    // session booking at node3.
    let deadline = Instant::now() + Duration::from_secs(15);
    let a = join(&rec, n1, cohort, "t", deadline).await;
    let ticket = expect(&a, 201, "join at node1")["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 1..3 {
        let a = poll(&rec, At::Node(i), &ticket, "t").await;
        if a.status != 200 {
            problems.push(format!(
                "a ticket from node1 polled at node{}: {} {}",
                i + 1,
                a.status,
                a.body
            ));
        }
    }
    match session(&rec, |k| At::Node(k as usize % 3), cohort, 1, deadline).await {
        Ok(s) => match book(&rec, At::Node(2), &s, &[first], 1, deadline).await {
            Outcome::Booked(_) => {}
            other => problems.push(format!("a session used at node3: {other:?}")),
        },
        Err(e) => problems.push(format!("join at node1, poll/verify across nodes: {e}")),
    }

    // Changes at node2: pause, then the rate.
    let t = Instant::now();
    patch_at(&rec, n2, cohort, json!({"paused": true}), &mut problems).await;
    measure(
        &mut table,
        &mut problems,
        "a pause made at node2",
        delays(
            &rec,
            &Probe::CohortField(cohort, "paused", json!(true)),
            t,
            limit,
        )
        .await,
    );
    let t = Instant::now();
    patch_at(
        &rec,
        n2,
        cohort,
        json!({"admission_rate_per_s": 7.0}),
        &mut problems,
    )
    .await;
    measure(
        &mut table,
        &mut problems,
        "a rate change made at node2",
        delays(
            &rec,
            &Probe::CohortField(cohort, "admission_rate_per_s", json!(7.0)),
            t,
            limit,
        )
        .await,
    );
    eprintln!(
        "item 1, seconds until each node served it:\n  {}",
        table.join("\n  ")
    );
    fail_if(
        check_only_contract_answers(&cluster.history.events()),
        "answers",
        &cluster,
    );
    fail_if(problems, "item 1 (any node answers any request)", &cluster);
}

// ---------------------------------------------------------------------------------------------
// 2. No overbooking across nodes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_ninety_citizens_racing_through_the_balancer_for_thirty_places_get_exactly_thirty() {
    let cluster = Cluster::start(3).await;
    let rec = cluster.recorder();
    let n1 = At::Node(0);
    let cohort = create_cohort(&rec, n1, 2000.0, false).await;
    let center = create_center(&rec, n1).await;
    let (race, race2) = add_pair(&rec, n1, center, 10, 30).await;
    // Enough supply elsewhere that all 90 are admitted (admission holds places): they race
    // for `race` only.
    let other = create_center(&rec, n1).await;
    let (spare, _) = add_pair(&rec, n1, other, 11, 70).await;
    ensure_everywhere(
        &cluster,
        &rec,
        &[
            Probe::Cohort(cohort),
            Probe::Slot(center, race),
            Probe::Slot(other, spare),
        ],
    )
    .await;

    // Sessions: the queue steps all at node1 (this test is about the booking race; the line
    // across nodes is items 3 and 4).
    let deadline = Instant::now() + Duration::from_secs(40);
    let sem = Arc::new(tokio::sync::Semaphore::new(24));
    let sessions: Vec<Result<String, String>> = join_all((0..90u32).map(|n| {
        let rec = rec.clone();
        let sem = sem.clone();
        async move {
            let _p = sem.acquire().await.unwrap();
            session(&rec, |_| At::Node(0), cohort, n, deadline).await
        }
    }))
    .await;
    let sessions: Vec<String> = sessions
        .into_iter()
        .enumerate()
        .map(|(n, s)| s.unwrap_or_else(|e| panic!("citizen {n} got no session: {e}")))
        .collect();

    // The race: all 90 at once through the balancer, for the one slot.
    let deadline = Instant::now() + Duration::from_secs(30);
    let race_start = cluster.now();
    let outcomes: Vec<Outcome> = join_all(sessions.iter().enumerate().map(|(n, s)| {
        let rec = &rec;
        async move { book(rec, At::Lb, s, &[race], n as u32, deadline).await }
    }))
    .await;
    let booked = codes_booked(&outcomes);
    let full = outcomes
        .iter()
        .filter(|o| **o == Outcome::Refused("409 slot_full".into()))
        .count();
    let served: BTreeMap<String, usize> = cluster
        .history
        .events()
        .iter()
        .filter(|e| e.start >= race_start && e.path == "/api/v1/bookings")
        .fold(BTreeMap::new(), |mut m, e| {
            *m.entry(e.served_by.clone().unwrap_or_default())
                .or_default() += 1;
            m
        });
    eprintln!(
        "item 2: {} booked, {full} slot_full; bookings answered by {served:?}",
        booked.len()
    );
    let events = cluster.history.events();
    fail_if(check_only_contract_answers(&events), "answers", &cluster);
    fail_if(
        check_acknowledged_in_db(&cluster, &booked),
        "durable",
        &cluster,
    );
    fail_if(check_slots_in_db(&cluster), "slots", &cluster);
    assert_eq!(
        booked.len(),
        30,
        "exactly 30 places, 30 bookings: {outcomes:?}"
    );
    assert_eq!(full, 60, "the other 60 are told slot_full: {outcomes:?}");
    assert_eq!(
        cluster.psql(&format!(
            "select booked from slots where id in ({race}, {race2}) order by id"
        )),
        "30\n30"
    );

    // Every node shows the same places left (0) within 1 s.
    let since = Instant::now();
    let left: Vec<Result<f64, Value>> = join_all((0..3).map(|i| {
        let rec = &rec;
        async move {
            loop {
                let a = rec
                    .get(At::Node(i), &format!("/api/v1/centers/{center}/slots"))
                    .send()
                    .await;
                let r = a
                    .body
                    .as_array()
                    .and_then(|l| l.iter().find(|s| s["id"] == race).cloned());
                let remaining = r.map_or(Value::Null, |s| s["remaining"].clone());
                if remaining == 0 {
                    return Ok(since.elapsed().as_secs_f64());
                }
                if since.elapsed() > Duration::from_secs(1) {
                    return Err(remaining);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }))
    .await;
    eprintln!("item 2: seconds until each node showed 0 places left: {left:?}");
    assert!(
        left.iter().all(Result::is_ok),
        "every node shows the same places left (0) within 1 s; seconds, or Err(places it \
         still showed): {left:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. One line per cohort, FIFO across nodes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_sequential_joins_alternating_over_the_nodes_get_strictly_increasing_positions() {
    let cluster = Cluster::start(3).await;
    let rec = cluster.recorder();
    let cohort = create_cohort(&rec, At::Node(0), 10.0, true).await;
    let center = create_center(&rec, At::Node(0)).await;
    let (first, _) = add_pair(&rec, At::Node(0), center, 10, 500).await;
    ensure_everywhere(
        &cluster,
        &rec,
        &[
            Probe::CohortField(cohort, "paused", json!(true)),
            Probe::Slot(center, first),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rows = Vec::new();
    for k in 0..30usize {
        let key = format!("t{k}");
        let a = join(&rec, At::Node(k % 3), cohort, &key, deadline).await;
        let ticket = expect(&a, 201, "join")["ticket"]
            .as_str()
            .unwrap()
            .to_string();
        // The first poll at the next node.
        let p = poll(&rec, At::Node((k + 1) % 3), &ticket, &key).await;
        rows.push((
            key,
            a.body["position"].clone(),
            p.status,
            p.body["state"].clone(),
            p.body["position"].clone(),
        ));
    }
    let violations = check_strictly_increasing_positions(&rows);
    eprintln!("item 3: (ticket, join position, poll status, state, poll position) {rows:?}");
    fail_if(violations, "item 3 (FIFO across nodes)", &cluster);
}

// ---------------------------------------------------------------------------------------------
// 4. One admission rate per cohort, continuing when a node dies.

/// Polls every ticket (through the balancer, every `every`) until it is admitted or `until`.
async fn poll_all(rec: &Recorder, tickets: &[(String, String)], every: Duration, until: Instant) {
    join_all(
        tickets
            .iter()
            .enumerate()
            .map(|(k, (key, ticket))| async move {
                // Spread the polls over the interval.
                tokio::time::sleep(every.mul_f64(k as f64 / tickets.len() as f64)).await;
                while Instant::now() < until {
                    let a = poll(rec, At::Lb, ticket, key).await;
                    if a.body["state"] == "admitted" {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            }),
    )
    .await;
}

/// Joins `n` tickets in turn, alternating over the nodes; `(key, ticket)` in join order.
async fn join_many(rec: &Recorder, cohort: i64, n: usize, nodes: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tickets = Vec::new();
    for k in 0..n {
        let key = format!("t{k:03}");
        let a = join(rec, At::Node(k % nodes), cohort, &key, deadline).await;
        let t = expect(&a, 201, "join")["ticket"]
            .as_str()
            .unwrap()
            .to_string();
        tickets.push((key, t));
    }
    tickets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item4_a_cohort_at_ten_per_second_admits_ten_per_second_cluster_wide_even_after_a_kill() {
    let cluster = Cluster::start(3).await;
    let rec = cluster.recorder();
    let cohort = create_cohort(&rec, At::Node(0), 10.0, true).await;
    let center = create_center(&rec, At::Node(0)).await;
    let (first, _) = add_pair(&rec, At::Node(0), center, 10, 1000).await;
    ensure_everywhere(
        &cluster,
        &rec,
        &[
            Probe::CohortField(cohort, "paused", json!(true)),
            Probe::Slot(center, first),
        ],
    )
    .await;
    let tickets = join_many(&rec, cohort, 150, 3).await;
    let order: HashMap<String, usize> = tickets
        .iter()
        .enumerate()
        .map(|(k, (key, _))| (key.clone(), k))
        .collect();

    patch_cohort(&rec, At::Node(0), cohort, json!({"paused": false})).await;
    let t_open = cluster.now();
    let started = Instant::now();
    let kill_after = Duration::from_secs(5);
    let stop = started + kill_after + Duration::from_millis(6500);
    let pollers = poll_all(&rec, &tickets, Duration::from_millis(400), stop);
    // The operators' view, through the balancer, every 250 ms.
    let stats = async {
        let mut series = Vec::new();
        while Instant::now() < stop {
            let a = rec
                .admin(At::Lb, Method::GET, "/api/v1/admin/stats")
                .send()
                .await;
            let admitted = a.body["cohorts"].as_array().and_then(|l| {
                l.iter()
                    .find(|c| c["id"] == cohort)
                    .and_then(|c| c["admitted"].as_i64())
            });
            if let Some(n) = admitted {
                series.push((a.end, n, a.served_by.clone()));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        series
    };
    let killer = async {
        tokio::time::sleep(kill_after).await;
        cluster.kill9(0);
        cluster.now()
    };
    let ((), series, t_kill) = tokio::join!(pollers, stats, killer);

    let events = cluster.history.events();
    let admitted_at = first_admitted(&events);
    let rate = |from: f64, to: f64| {
        admitted_at
            .values()
            .filter(|&&t| t > from && t <= to)
            .count() as f64
            / (to - from)
    };
    let before = rate(t_open + 1.0, t_open + 4.5);
    let after = rate(t_kill + 3.0, t_kill + 6.0);
    let stats_rate = |from: f64, to: f64| {
        let at = |t: f64| series.iter().rfind(|(e, _, _)| *e <= t).map(|s| s.1);
        match (at(from), at(to)) {
            (Some(a), Some(b)) => Some((b - a) as f64 / (to - from)),
            _ => None,
        }
    };
    eprintln!(
        "item 4: admitted per second seen by the tickets: {before:.1} before the kill, \
         {after:.1} from 3 s after it; by stats: {:?} before, {:?} after; {} admitted in all",
        stats_rate(t_open + 1.0, t_open + 4.5),
        stats_rate(t_kill + 3.0, t_kill + 6.0),
        admitted_at.len()
    );
    let lb_events: Vec<Event> = events.iter().filter(|e| e.to == "lb").cloned().collect();
    fail_if(check_only_contract_answers(&lb_events), "answers", &cluster);
    fail_if(
        check_positions_never_grow(&events),
        "positions never grow",
        &cluster,
    );
    fail_if(
        check_no_fifo_inversion(&events, &order),
        "admission in queue order",
        &cluster,
    );
    fail_if(
        check_admitted_count_monotone(&series),
        "stats admitted only moves forward",
        &cluster,
    );
    assert!(
        (7.0..=13.0).contains(&before),
        "a cohort at 10/s admitted {before:.1}/s across three nodes (tickets' view)"
    );
    assert!(
        (7.0..=13.0).contains(&after),
        "from 3 s after node1's death the cohort admitted {after:.1}/s (10/s expected)"
    );
    if let Some(s) = stats_rate(t_open + 1.0, t_open + 4.5) {
        assert!(
            (7.0..=13.0).contains(&s),
            "stats say {s:.1}/s admitted (10/s expected, cluster-wide)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Positions never grow, at any node, across a node's death.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item5_positions_never_grow_between_polls_at_any_nodes_even_across_a_node_death() {
    let cluster = Cluster::start(3).await;
    let rec = cluster.recorder();
    let cohort = create_cohort(&rec, At::Node(0), 4.0, true).await;
    let center = create_center(&rec, At::Node(0)).await;
    let (first, _) = add_pair(&rec, At::Node(0), center, 10, 1000).await;
    ensure_everywhere(
        &cluster,
        &rec,
        &[
            Probe::CohortField(cohort, "paused", json!(true)),
            Probe::Slot(center, first),
        ],
    )
    .await;
    let tickets = join_many(&rec, cohort, 45, 3).await;
    patch_cohort(&rec, At::Node(0), cohort, json!({"paused": false})).await;
    let started = Instant::now();
    let stop = started + Duration::from_secs(7);
    let pollers = poll_all(&rec, &tickets, Duration::from_millis(250), stop);
    let killer = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.kill9(1);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        cluster.restart(1).await;
    };
    tokio::join!(pollers, killer);
    let events = cluster.history.events();
    let polls = events
        .iter()
        .filter(|e| e.path == "/api/v1/queue" && e.status == 200)
        .count();
    eprintln!(
        "item 5: {polls} polls answered, {} tickets admitted",
        first_admitted(&events).len()
    );
    let lb_events: Vec<Event> = events.iter().filter(|e| e.to == "lb").cloned().collect();
    fail_if(check_only_contract_answers(&lb_events), "answers", &cluster);
    assert!(
        polls > 200,
        "too few polls answered to say anything: {polls}"
    );
    fail_if(
        check_positions_never_grow(&events),
        "positions never grow",
        &cluster,
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Sold out across nodes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_every_nodes_waiting_tickets_read_sold_out_when_the_last_place_goes_and_resume() {
    let cluster = Cluster::start(3).await;
    let rec = cluster.recorder();
    let cohort = create_cohort(&rec, At::Node(0), 50.0, true).await;
    let center = create_center(&rec, At::Node(0)).await;
    let (first, _) = add_pair(&rec, At::Node(0), center, 10, 5).await;
    ensure_everywhere(
        &cluster,
        &rec,
        &[
            Probe::CohortField(cohort, "paused", json!(true)),
            Probe::Slot(center, first),
        ],
    )
    .await;
    let tickets = join_many(&rec, cohort, 15, 3).await;
    patch_cohort(&rec, At::Node(0), cohort, json!({"paused": false})).await;

    // The five places go: whoever is admitted (at any node) verifies and books.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut booked = 0;
    let mut passes: HashMap<usize, String> = HashMap::new();
    // The longest wait before the next poll any answer told.
    let mut told_max = 1u64;
    while booked < 5 {
        assert!(
            Instant::now() < deadline,
            "only {booked} of 5 places booked in 20 s; passes {}",
            passes.len()
        );
        for (k, (key, t)) in tickets.iter().enumerate() {
            if passes.contains_key(&k) {
                continue;
            }
            let a = poll(&rec, At::Node(k % 3), t, key).await;
            told_max = told_max.max(a.body["poll_after_seconds"].as_u64().unwrap_or(1));
            if a.body["state"] == "admitted" {
                passes.insert(k, a.str("pass").unwrap());
                let n = k as u32;
                let v = retrying(deadline, || {
                    rec.post(At::Lb, "/api/v1/verifications")
                        .bearer(&passes[&k])
                        .json(json!({"name": format!("시민{n}"), "birth_date": "1965-03-01", "phone": phone(n)}))
                        .send()
                })
                .await;
                let s = expect(&v, 201, "verify")["session"]
                    .as_str()
                    .unwrap()
                    .to_string();
                if let Outcome::Booked(_) = book(&rec, At::Lb, &s, &[first], n, deadline).await {
                    booked += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The last place went: every waiting ticket, at every node, reads sold_out at its next
    // poll, made when its last answer told it to (`poll_after_seconds`, at least 1 s).
    let last_place_at = Instant::now();
    let waiting: Vec<usize> = (0..tickets.len())
        .filter(|k| !passes.contains_key(k))
        .collect();
    tokio::time::sleep_until((last_place_at + Duration::from_secs(told_max.max(1))).into()).await;
    let mut problems = Vec::new();
    for &k in &waiting {
        for i in 0..3 {
            let a = poll(&rec, At::Node(i), &tickets[k].1, &tickets[k].0).await;
            if a.body["state"] != "sold_out" {
                problems.push(format!(
                    "after the last place, {} at node{}: {} {}",
                    tickets[k].0,
                    i + 1,
                    a.status,
                    a.body
                ));
            }
        }
    }
    // Places come back (added at node2): within 3 s every waiting ticket reads waiting or
    // admitted again at every node, and all of them are admitted within 10 s.
    add_pair(&rec, At::Node(1), center, 12, 50).await;
    let since = Instant::now();
    let mut resumed_at = None;
    let mut admitted: HashSet<usize> = HashSet::new();
    // Until every ticket was seen admitted and one round found every node resumed: a round
    // may see a ticket admitted at one node while another, a sync behind, still reads sold_out.
    while since.elapsed() < Duration::from_secs(10)
        && (admitted.len() < waiting.len() || resumed_at.is_none())
    {
        let mut all_resumed = true;
        for &k in &waiting {
            for i in 0..3 {
                let a = poll(&rec, At::Node(i), &tickets[k].1, &tickets[k].0).await;
                match a.body["state"].as_str() {
                    Some("admitted") => {
                        admitted.insert(k);
                    }
                    Some("waiting") => {}
                    _ => all_resumed = false,
                }
            }
        }
        if all_resumed && resumed_at.is_none() {
            resumed_at = Some(since.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "item 6: {} waiting tickets; resumed at every node after {resumed_at:?} s; {} admitted",
        waiting.len(),
        admitted.len()
    );
    if !resumed_at.is_some_and(|t| t <= 3.0) {
        problems.push(format!(
            "after places were added, every node's tickets left sold_out after {resumed_at:?} s (≤ 3 s expected)"
        ));
    }
    if admitted.len() < waiting.len() {
        problems.push(format!(
            "only {} of {} waiting tickets admitted within 10 s of new places",
            admitted.len(),
            waiting.len()
        ));
    }
    fail_if(
        check_only_contract_answers(&cluster.history.events()),
        "answers",
        &cluster,
    );
    fail_if(problems, "item 6 (sold out across nodes)", &cluster);
}

// ---------------------------------------------------------------------------------------------
// 7. Limits that must be global are global; the client is taken from X-Forwarded-For.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item7_the_lookup_limit_counts_each_client_behind_the_balancer_across_all_nodes() {
    let cluster = Cluster::start(3).await;
    let rec = cluster.recorder();
    // Two clients behind the balancer (HAProxy appends its peer, 127.0.0.1, which the nodes
    // trust): 31 lookups of client A spread over the three nodes; the limit is 30 a minute per
    // client, cluster-wide. Client B is not limited by A's lookups.
    let lookup = |client: &'static str, k: usize| {
        let rec = &rec;
        async move {
            rec.post(At::Lb, "/api/v1/bookings/lookup")
                .header("X-Forwarded-For", client)
                .key(format!("{client}-{k}"))
                .json(json!({"code": "ABCDEFGHJKMN", "birth_date": "1965-03-01"}))
                .send()
                .await
        }
    };
    let mut a_answers = Vec::new();
    for k in 0..31 {
        a_answers.push(lookup("203.0.113.7", k).await);
    }
    let b = lookup("198.51.100.9", 0).await;
    let statuses: Vec<u16> = a_answers.iter().map(|a| a.status).collect();
    let served: BTreeMap<String, usize> = a_answers.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a.served_by.clone().unwrap_or_default())
            .or_default() += 1;
        m
    });
    eprintln!(
        "item 7: client A's 31 lookups answered {statuses:?} by {served:?}; client B {}",
        b.status
    );
    fail_if(
        check_only_contract_answers(&cluster.history.events()),
        "answers",
        &cluster,
    );
    assert!(
        statuses[..30].iter().all(|&s| s == 404),
        "the first 30 lookups of one client are answered (404 for an unknown code): {statuses:?}"
    );
    assert_eq!(
        statuses[30], 429,
        "the 31st lookup of one client within a minute, at whichever node, is 429 \
         rate_limited: {statuses:?} (served by {served:?})"
    );
    assert_eq!(
        b.status, 404,
        "another client behind the same balancer is not limited: {}",
        b.body
    );
}

// ---------------------------------------------------------------------------------------------
// 8. A node killed mid-rush.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item8_a_node_killed_mid_rush_loses_no_booking_answers_only_the_contract_and_rejoins() {
    let cluster = Cluster::start(3).await;
    let rec = cluster.recorder();
    let cohort = create_cohort(&rec, At::Node(0), 2000.0, false).await;
    let mut slots = Vec::new();
    let mut probes = vec![Probe::Cohort(cohort)];
    for k in 0..3 {
        let center = create_center(&rec, At::Node(0)).await;
        let (first, _) = add_pair(&rec, At::Node(0), center, 9 + k, 100).await;
        slots.push(first);
        probes.push(Probe::Slot(center, first));
    }
    ensure_everywhere(&cluster, &rec, &probes).await;

    let citizens = 400u32;
    let done = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let deadline = Instant::now() + Duration::from_secs(60);
    let rush = join_all((0..citizens).map(|n| {
        let (rec, sem, done, slots) = (rec.clone(), sem.clone(), done.clone(), slots.clone());
        async move {
            let _p = sem.acquire().await.unwrap();
            let s = session(&rec, |_| At::Lb, cohort, n, deadline).await;
            let mut order = slots.clone();
            order.rotate_left(n as usize % 3);
            let o = match s {
                Ok(s) => book(&rec, At::Lb, &s, &order, n, deadline).await,
                Err(e) => Outcome::Refused(e),
            };
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            o
        }
    }));
    let killer = async {
        while done.load(std::sync::atomic::Ordering::Relaxed) < citizens / 4 {
            assert!(Instant::now() < deadline, "the rush made no progress");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let at = Instant::now();
        cluster.kill9(1);
        let t_kill = cluster.now();
        let down = lb_marks_down(&cluster, "node2", at, Duration::from_secs(5)).await;
        (t_kill, down)
    };
    let (outcomes, (t_kill, down)) = tokio::join!(rush, killer);
    let booked = codes_booked(&outcomes);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        if let Outcome::Refused(r) = o {
            *reasons.entry(r.chars().take(60).collect()).or_default() += 1;
        }
    }
    eprintln!(
        "item 8: {} booked of {citizens}; node2 killed at {t_kill:.2} s, marked down by HAProxy \
         {down:.2} s later; other outcomes {reasons:?}",
        booked.len()
    );
    let events = cluster.history.events();
    let lb_events: Vec<Event> = events.iter().filter(|e| e.to == "lb").cloned().collect();
    fail_if(check_only_contract_answers(&lb_events), "answers", &cluster);
    fail_if(
        check_acknowledged_in_db(&cluster, &booked),
        "durable",
        &cluster,
    );
    fail_if(check_slots_in_db(&cluster), "slots", &cluster);
    fail_if(
        lb_events
            .iter()
            .filter(|e| e.start > t_kill + 1.0 && e.served_by.as_deref() == Some("node2"))
            .map(|e| format!("{e:?}"))
            .collect(),
        "the balancer sent to the dead node more than 1 s after its death",
        &cluster,
    );
    assert!(
        down <= 1.0,
        "HAProxy took {down:.2} s to stop sending to node2"
    );
    // Every place is booked, but for those held by tickets nobody holds: a join the dead node
    // committed but never answered (the balancer sent it again elsewhere) is a ticket that is
    // admitted in its turn and holds a place until its pass lapses.
    let delivered = events
        .iter()
        .filter(|e| e.endpoint() == "POST /api/v1/cohorts/{id}/queue" && e.status == 201)
        .count();
    let numbers: usize = cluster
        .psql("SELECT sum(tickets_reserved) FROM cohorts")
        .trim()
        .parse()
        .unwrap();
    let phantoms = numbers.saturating_sub(delivered);
    eprintln!("item 8: {numbers} ticket numbers taken, {delivered} joins answered 201");
    assert!(
        booked.len() + phantoms >= 300 && booked.len() <= 300,
        "300 places, 400 citizens: {} booked, {phantoms} ticket(s) nobody holds",
        booked.len()
    );

    // Restarted, node2 answers /readyz 200 (the harness waits), serves a join, and the balancer
    // sends to it again.
    cluster.restart(1).await;
    let a = join(
        &rec,
        At::Node(1),
        cohort,
        "after",
        Instant::now() + Duration::from_secs(10),
    )
    .await;
    expect(&a, 201, "a join at the restarted node");
    wait_lb_serves_all(&cluster, &rec).await;

    // The dead node's tickets kept their places at the others: no position grew, and every
    // citizen's journey went through.
    fail_if(
        check_positions_never_grow(&events),
        "positions never grow",
        &cluster,
    );
    // Every citizen reached an end the contract names: booked, or no place left.
    let stuck: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| match o {
            Outcome::Booked(_) => false,
            Outcome::Refused(r) => !(r.starts_with("409") || r.contains("sold_out")),
        })
        .collect();
    assert!(
        stuck.is_empty(),
        "{} citizens ended otherwise than booked or no place: {:?}",
        stuck.len(),
        &stuck[..stuck.len().min(10)]
    );
}

// ---------------------------------------------------------------------------------------------
// 9. The database killed mid-rush.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item9_the_database_killed_mid_rush_gets_503s_then_every_node_is_ready_within_ten_seconds()
{
    let cluster = Cluster::start_own_pg(3).await;
    let rec = cluster.recorder();
    let cohort = create_cohort(&rec, At::Node(0), 2000.0, false).await;
    let center = create_center(&rec, At::Node(0)).await;
    let (first, _) = add_pair(&rec, At::Node(0), center, 10, 1000).await;
    ensure_everywhere(
        &cluster,
        &rec,
        &[Probe::Cohort(cohort), Probe::Slot(center, first)],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let sem = Arc::new(tokio::sync::Semaphore::new(24));
    let sessions: Vec<String> = join_all((0..120u32).map(|n| {
        let (rec, sem) = (rec.clone(), sem.clone());
        async move {
            let _p = sem.acquire().await.unwrap();
            // The queue steps at node1 (the line across nodes is items 3 and 4).
            session(&rec, |_| At::Node(0), cohort, n, deadline)
                .await
                .unwrap_or_else(|e| panic!("citizen {n}: {e}"))
        }
    }))
    .await;

    // Bookings through the balancer, one citizen every 40 ms (about 5 s), each retrying 503s
    // with the same Idempotency-Key; the database is killed 1.2 s in and started 2.5 s later.
    let rush_start = Instant::now();
    let deadline = rush_start + Duration::from_secs(30);
    let rush = join_all(sessions.iter().enumerate().map(|(n, s)| {
        let rec = &rec;
        async move {
            tokio::time::sleep(Duration::from_millis(40 * n as u64)).await;
            book(rec, At::Lb, s, &[first], n as u32, deadline).await
        }
    }));
    let fault = async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        cluster.pg().kill9();
        let down_from = cluster.now();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let down_to = cluster.now();
        cluster.pg().start_again();
        let back = Instant::now();
        let ready: Vec<f64> = join_all((0..3).map(|i| {
            let rec = &rec;
            async move {
                loop {
                    let a = rec.get(At::Node(i), "/readyz").send().await;
                    if a.status == 200 {
                        return back.elapsed().as_secs_f64();
                    }
                    if back.elapsed() > Duration::from_secs(15) {
                        return f64::INFINITY;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }))
        .await;
        (down_from, down_to, ready)
    };
    let (outcomes, (down_from, down_to, ready)) = tokio::join!(rush, fault);
    let booked = codes_booked(&outcomes);
    let events = cluster.history.events();
    let lb_events: Vec<Event> = events.iter().filter(|e| e.to == "lb").cloned().collect();
    let during: Vec<&Event> = lb_events
        .iter()
        .filter(|e| e.start >= down_from && e.end <= down_to)
        .collect();
    let slowest = lb_events
        .iter()
        .map(|e| e.end - e.start)
        .fold(0.0, f64::max);
    eprintln!(
        "item 9: {} booked of {}; database down {down_from:.2}–{down_to:.2} s, {} answers wholly \
         inside ({} of them 503); slowest answer {slowest:.2} s; nodes ready {ready:?} s after it \
         was back",
        booked.len(),
        sessions.len(),
        during.len(),
        during.iter().filter(|e| e.status == 503).count()
    );
    fail_if(check_only_contract_answers(&lb_events), "answers", &cluster);
    fail_if(
        check_answered_within(&lb_events, 10.0),
        "answered within 10 s",
        &cluster,
    );
    fail_if(
        during
            .iter()
            .filter(|e| e.path == "/api/v1/bookings" && e.status != 503)
            .map(|e| format!("{e:?}"))
            .collect(),
        "a booking answered otherwise than 503 while the database was down",
        &cluster,
    );
    assert!(
        !during.is_empty(),
        "no booking was tried while the database was down"
    );
    assert!(
        ready.iter().all(|&t| t <= 10.0),
        "every node ready within 10 s of the database: {ready:?}"
    );
    fail_if(
        check_acknowledged_in_db(&cluster, &booked),
        "durable",
        &cluster,
    );
    fail_if(check_slots_in_db(&cluster), "slots", &cluster);
    assert_eq!(
        booked.len(),
        sessions.len(),
        "every citizen booked in the end (1000 places): {outcomes:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Failover to a standby.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item10_the_primary_killed_mid_rush_fails_over_to_its_synchronous_standby_losing_nothing() {
    let test_start = Instant::now();
    // A primary whose commits wait for a synchronous standby; the nodes' DATABASE_URL names
    // both, with target_session_attrs=read-write.
    let cluster = Cluster::start_with_standby(3).await;
    assert!(
        cluster
            .db_url()
            .contains(&format!(",127.0.0.1:{}/", cluster.standby().port()))
            && cluster.db_url().contains("target_session_attrs=read-write"),
        "{}",
        cluster.db_url()
    );
    let rec = cluster.recorder();
    let cohort = create_cohort(&rec, At::Node(0), 2000.0, false).await;
    let mut slots = Vec::new();
    let mut probes = vec![Probe::Cohort(cohort)];
    for k in 0..3 {
        let center = create_center(&rec, At::Node(0)).await;
        let (first, _) = add_pair(&rec, At::Node(0), center, 9 + k, 60).await;
        slots.push(first);
        probes.push(Probe::Slot(center, first));
    }
    ensure_everywhere(&cluster, &rec, &probes).await;

    // The rush of item 8 (fewer citizens: 180 places, 240 citizens), each citizen a task of its
    // own so that the kill and the promotion below (blocking calls) never hold it up.
    let citizens = 240u32;
    let done = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let deadline = Instant::now() + Duration::from_secs(40);
    let tasks: Vec<_> = (0..citizens)
        .map(|n| {
            let (rec, sem, done, slots) = (rec.clone(), sem.clone(), done.clone(), slots.clone());
            tokio::spawn(async move {
                let _p = sem.acquire().await.unwrap();
                let s = session(&rec, |_| At::Lb, cohort, n, deadline).await;
                let mut order = slots.clone();
                order.rotate_left(n as usize % 3);
                let o = match s {
                    Ok(s) => book(&rec, At::Lb, &s, &order, n, deadline).await,
                    Err(e) => Outcome::Refused(e),
                };
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                o
            })
        })
        .collect();

    // A quarter of the way in: kill -9 the primary, promote the standby right away, then time
    // each node's way back to /readyz 200.
    while done.load(std::sync::atomic::Ordering::Relaxed) < citizens / 4 {
        assert!(Instant::now() < deadline, "the rush made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.pg().kill9();
    let t_kill = cluster.now();
    cluster.promote_standby();
    let t_promoted = cluster.now();
    let promoted = Instant::now();
    let ready: Vec<f64> = join_all((0..3).map(|i| {
        let rec = &rec;
        async move {
            loop {
                let a = rec.get(At::Node(i), "/readyz").send().await;
                if a.status == 200 {
                    return promoted.elapsed().as_secs_f64();
                }
                if promoted.elapsed() > Duration::from_secs(15) {
                    return f64::INFINITY;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }))
    .await;
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("a citizen's task"));
    }
    let rush_end = cluster.now();

    let booked = codes_booked(&outcomes);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        if let Outcome::Refused(r) = o {
            *reasons.entry(r.chars().take(60).collect()).or_default() += 1;
        }
    }
    let events = cluster.history.events();
    let bookings_201 = |from: f64, to: f64| {
        events
            .iter()
            .filter(|e| e.path == "/api/v1/bookings" && e.status == 201)
            .filter(|e| e.end > from && e.end <= to)
            .count()
    };
    let (before, after) = (
        bookings_201(0.0, t_kill),
        bookings_201(t_promoted, f64::MAX),
    );
    let slowest = events
        .iter()
        .filter(|e| e.to == "lb")
        .map(|e| e.end - e.start)
        .fold(0.0, f64::max);
    let unavailable = events
        .iter()
        .filter(|e| e.to == "lb" && e.status == 503)
        .count();
    eprintln!(
        "item 10: {} booked of {citizens} ({before} acknowledged before the kill, {after} after \
         the promotion); primary killed at {t_kill:.2} s, standby promoted {:.2} s later; nodes \
         ready {:?} s after the promotion; {unavailable} answers 503 through the balancer, \
         slowest answer {slowest:.2} s; rush over at {rush_end:.2} s",
        booked.len(),
        t_promoted - t_kill,
        ready
            .iter()
            .map(|t| (t * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    fail_if(check_only_contract_answers(&events), "answers", &cluster);
    assert!(
        ready.iter().all(|&t| t <= 10.0),
        "every node ready within 10 s of the promotion: {ready:?}\n{}",
        cluster.logs()
    );
    // Every 201 is in the promoted database (psql goes to the standby now), and its counts.
    fail_if(
        check_acknowledged_in_db(&cluster, &booked),
        "durable across the failover",
        &cluster,
    );
    fail_if(check_slots_in_db(&cluster), "slots", &cluster);
    assert!(
        before > 0 && after > 0,
        "the kill was not mid-rush: {before} bookings before it, {after} after the promotion"
    );
    // The rush completes: every citizen booked or told there is no place (409, sold_out),
    // retrying 503s through the failover, before the deadline.
    let stuck: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| match o {
            Outcome::Booked(_) => false,
            Outcome::Refused(r) => !(r.starts_with("409") || r.contains("sold_out")),
        })
        .collect();
    assert!(
        stuck.is_empty(),
        "{} citizens ended otherwise than booked or no place: {:?}\n{}",
        stuck.len(),
        &stuck[..stuck.len().min(10)],
        cluster.history.summary()
    );
    // Not part of item 10, said rather than asserted. A join batch whose commit reached the
    // standby but whose answer died with the primary is refused by its node (the citizens
    // retry and get new numbers) yet stands in the promoted database: those ticket numbers
    // are nobody, are admitted all the same, and hold places for the pass lifetime. And a node
    // cut off from the database during the failover serves positions from before it, which
    // can be larger than another node's (item 5 covers a node's death, not the database's).
    // (Places left unbooked happen here without any kill too: these citizens stop at their
    // first `sold_out`, which the over-admission factor makes come and go near the end.)
    let reserved: usize = cluster
        .psql("select tickets_reserved from cohorts")
        .parse()
        .unwrap();
    let joined = events
        .iter()
        .filter(|e| e.method == "POST" && e.path.ends_with("/queue") && e.status == 201)
        .count();
    let grown = check_positions_never_grow(&events).len();
    eprintln!(
        "item 10: {} of 180 places left, {} citizens told sold_out; {reserved} ticket numbers \
         taken on disk for {joined} joins answered 201{}; {grown} polls saw a position grow; \
         test time {:.1} s",
        180 - booked.len(),
        reasons
            .get("ticket Some(\"sold_out\")")
            .copied()
            .unwrap_or(0),
        if reserved > joined {
            " (NOTE: numbers of joins refused whose commit survived on the standby)"
        } else {
            ""
        },
        test_start.elapsed().as_secs_f64()
    );
    assert!(
        test_start.elapsed() < Duration::from_secs(60),
        "the test took {:?}",
        test_start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// The invariants, checked from the history (and the database).

/// Every answer is 2xx, a 4xx of the contract with its code, or 503 with `Retry-After`;
/// nothing else (no 500, 502, 504, no answer at all).
fn check_only_contract_answers(events: &[Event]) -> Vec<String> {
    const CODES: &[(u16, &[&str])] = &[
        (400, &["validation"]),
        (
            401,
            &[
                "unauthorized",
                "invalid_ticket",
                "invalid_pass",
                "invalid_session",
                "identity_rejected",
            ],
        ),
        (403, &["not_eligible"]),
        (404, &["not_found"]),
        (
            409,
            &[
                "cohort_closed",
                "slot_full",
                "already_booked",
                "no_second_dose_slot",
                "wrong_vaccine",
            ],
        ),
        (422, &["validation"]),
        (429, &["rate_limited"]),
        (503, &["identity_busy", "unavailable"]),
    ];
    events
        .iter()
        .filter(|e| {
            if (200..300).contains(&e.status) {
                return false;
            }
            let known = CODES.iter().any(|(s, codes)| {
                *s == e.status && codes.contains(&e.code.as_deref().unwrap_or(""))
            });
            let needs_retry_after = e.status == 429 || e.status == 503;
            !known || (needs_retry_after && e.retry_after.is_none())
        })
        .map(|e| {
            format!(
                "{:.2}s {} {} -> {} {:?} retry-after {:?} (via {} served by {:?})",
                e.start, e.method, e.path, e.status, e.body, e.retry_after, e.to, e.served_by
            )
        })
        .collect()
}

fn check_answered_within(events: &[Event], limit: f64) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.end - e.start > limit)
        .map(|e| {
            format!(
                "{} {} took {:.2} s -> {}",
                e.method,
                e.path,
                e.end - e.start,
                e.status
            )
        })
        .collect()
}

/// Every acknowledged (201) booking code is a confirmed booking in the database.
fn check_acknowledged_in_db(cluster: &Cluster, codes: &[String]) -> Vec<String> {
    let confirmed: HashSet<String> = cluster
        .psql("select code from bookings where state = 'confirmed'")
        .lines()
        .map(str::to_string)
        .collect();
    codes
        .iter()
        .filter(|c| !confirmed.contains(*c))
        .map(|c| format!("booking {c} was answered 201 but is not confirmed in the database"))
        .collect()
}

/// No slot over capacity, and each slot's count is its live bookings (either dose).
fn check_slots_in_db(cluster: &Cluster) -> Vec<String> {
    let rows = cluster.psql(
        "select s.id, s.booked, s.capacity, \
           (select count(*) from bookings b where b.state = 'confirmed' \
              and (b.first_slot_id = s.id or b.second_slot_id = s.id)) \
         from slots s order by s.id",
    );
    rows.lines()
        .filter_map(|l| {
            let v: Vec<i64> = l.split('|').map(|x| x.parse().unwrap()).collect();
            (v[1] > v[2] || v[1] != v[3]).then(|| {
                format!(
                    "slot {}: booked {} capacity {} live bookings {}",
                    v[0], v[1], v[2], v[3]
                )
            })
        })
        .collect()
}

/// The polls (answered 200) of each ticket, by key, in the order they were sent.
fn polls_by_ticket(events: &[Event]) -> BTreeMap<String, Vec<&Event>> {
    let mut m: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.path == "/api/v1/queue" && e.status == 200 && !e.key.is_empty())
    {
        m.entry(e.key.clone()).or_default().push(e);
    }
    for v in m.values_mut() {
        v.sort_by(|a, b| a.start.total_cmp(&b.start));
    }
    m
}

/// Item 5: for two polls of one ticket, the later sent at least 200 ms after the earlier was
/// answered, the later position is not larger; and a ticket seen admitted is never seen waiting
/// again (admissions only move forward).
fn check_positions_never_grow(events: &[Event]) -> Vec<String> {
    let mut out = Vec::new();
    for (key, polls) in polls_by_ticket(events) {
        for (j, later) in polls.iter().enumerate() {
            for earlier in &polls[..j] {
                if later.start - earlier.end < 0.2 {
                    continue;
                }
                let (s1, s2) = (&earlier.body["state"], &later.body["state"]);
                if s1 == "admitted" && s2 == "waiting" {
                    out.push(format!(
                        "{key}: admitted at {:.2}s (served by {:?}), waiting again at {:.2}s (served by {:?})",
                        earlier.end, earlier.served_by, later.start, later.served_by
                    ));
                }
                if let (Some(p1), Some(p2)) = (
                    earlier.body["position"].as_i64(),
                    later.body["position"].as_i64(),
                ) {
                    if s2 == "waiting" && p2 > p1 {
                        out.push(format!(
                            "{key}: position {p1} at {:.2}s ({:?}) then {p2} at {:.2}s ({:?})",
                            earlier.end,
                            earlier.to.clone() + "/" + earlier.served_by.as_deref().unwrap_or(""),
                            later.start,
                            later.to.clone() + "/" + later.served_by.as_deref().unwrap_or("")
                        ));
                    }
                }
            }
        }
    }
    out
}

/// When each ticket (by key) was first seen admitted: the end of that poll, in seconds.
fn first_admitted(events: &[Event]) -> HashMap<String, f64> {
    let mut m = HashMap::new();
    for (key, polls) in polls_by_ticket(events) {
        if let Some(p) = polls.iter().find(|p| p.body["state"] == "admitted") {
            m.insert(key, p.end);
        }
    }
    m
}

/// No FIFO inversion: a ticket that joined earlier (`order`) is never seen waiting by a poll
/// sent after a later ticket's poll saw that one admitted.
fn check_no_fifo_inversion(events: &[Event], order: &HashMap<String, usize>) -> Vec<String> {
    let admitted = first_admitted(events);
    let n = order.len();
    // earliest_later[r]: the earliest admission seen among tickets of rank > r.
    let mut by_rank = vec![(f64::INFINITY, String::new()); n + 1];
    for (key, &r) in order {
        if let Some(&t) = admitted.get(key) {
            by_rank[r] = (t, key.clone());
        }
    }
    let mut earliest_later = vec![(f64::INFINITY, String::new()); n + 1];
    for r in (0..n).rev() {
        let next = &earliest_later[r + 1];
        let own = &by_rank[r + 1];
        earliest_later[r] = if own.0 < next.0 {
            own.clone()
        } else {
            next.clone()
        };
    }
    let mut out = Vec::new();
    for (key, polls) in polls_by_ticket(events) {
        let Some(&r) = order.get(&key) else { continue };
        for p in polls {
            let (t, later) = &earliest_later[r];
            if p.body["state"] == "waiting" && p.start > *t {
                out.push(format!(
                    "{key} still waiting at {:.2}s (position {}) though the later {later} was admitted at {t:.2}s",
                    p.start, p.body["position"]
                ));
                break;
            }
        }
    }
    out
}

/// Item 3: join positions and first-poll positions strictly increase in join order.
fn check_strictly_increasing_positions(rows: &[(String, Value, u16, Value, Value)]) -> Vec<String> {
    let mut out = Vec::new();
    for w in rows.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if !(a.1.as_i64() < b.1.as_i64() && a.1.as_i64().is_some()) {
            out.push(format!(
                "join positions: {} got {} then {} got {}",
                a.0, a.1, b.0, b.1
            ));
        }
    }
    for r in rows {
        if r.2 != 200 || r.3 != "waiting" {
            out.push(format!(
                "{}: first poll (at the next node) answered {} state {}",
                r.0, r.2, r.3
            ));
        }
    }
    for w in rows.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if let (Some(p), Some(q)) = (a.4.as_i64(), b.4.as_i64()) {
            if p >= q {
                out.push(format!(
                    "first-poll positions: {} at {p}, then {} at {q}",
                    a.0, b.0
                ));
            }
        }
    }
    out
}

/// The operators' `admitted` count never goes back.
fn check_admitted_count_monotone(series: &[(f64, i64, Option<String>)]) -> Vec<String> {
    series
        .windows(2)
        .filter(|w| w[1].1 < w[0].1)
        .map(|w| {
            format!(
                "stats admitted {} at {:.2}s ({:?}) then {} at {:.2}s ({:?})",
                w[0].1, w[0].0, w[0].2, w[1].1, w[1].0, w[1].2
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 11. Absent tickets passed over cluster-wide (issue 17): who polled one node is present at
// every node, the absent are passed over without spending the rate, and one back is admitted
// beside the line through any node.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item11_absent_tickets_are_passed_over_by_whichever_node_admits_and_admitted_when_back() {
    let cluster = Cluster::start_with(3, &[("ABSENT_AFTER_SECONDS", "3")]).await;
    let rec = cluster.recorder();
    let cohort = create_cohort(&rec, At::Node(0), 5.0, true).await;
    let center = create_center(&rec, At::Node(0)).await;
    let (first, _) = add_pair(&rec, At::Node(0), center, 10, 1000).await;
    ensure_everywhere(
        &cluster,
        &rec,
        &[
            Probe::CohortField(cohort, "paused", json!(true)),
            Probe::Slot(center, first),
        ],
    )
    .await;
    // 40 tickets; the even ones poll every 500 ms, each only at the node it joined at; the
    // odd ones never poll again.
    let tickets = join_many(&rec, cohort, 40, 3).await;
    let present: Vec<(usize, &(String, String))> = tickets.iter().enumerate().step_by(2).collect();
    let order: HashMap<String, usize> = present
        .iter()
        .enumerate()
        .map(|(r, (_, (key, _)))| (key.clone(), r))
        .collect();
    let opened = Instant::now() + Duration::from_secs(4);
    let stop = opened + Duration::from_secs(12);
    let pollers = join_all(present.iter().map(|(k, (key, ticket))| {
        let rec = &rec;
        async move {
            while Instant::now() < stop {
                let a = poll(rec, At::Node(k % 3), ticket, key).await;
                if a.body["state"] == "admitted" {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }));
    let opener = async {
        // Every node has listened longer than ABSENT_AFTER_SECONDS by then, and the odd
        // tickets have been silent that long.
        tokio::time::sleep_until(opened.into()).await;
        patch_cohort(&rec, At::Node(1), cohort, json!({"paused": false})).await;
    };
    tokio::join!(pollers, opener);
    let events = cluster.history.events();
    let admitted = first_admitted(&events);
    let mut violations = check_no_fifo_inversion(&events, &order);
    violations.extend(check_positions_never_grow(&events));
    for (_, (key, _)) in &present {
        if !admitted.contains_key(key) {
            violations.push(format!("present ticket {key} was never admitted"));
        }
    }
    // On disk: the passed-over places are the odd tickets' (queue index = number here), and
    // the admitted people are the present ones (the rate was not spent on the absent).
    let passed = cluster.psql(&format!(
        "SELECT string_agg(passed, ' ') FROM admissions WHERE cohort_id = {cohort} AND passed <> '[]'"
    ));
    let ranges: Vec<(u64, u64)> = passed
        .split_whitespace()
        .flat_map(|t| serde_json::from_str::<Vec<(u64, u64)>>(t).unwrap_or_default())
        .collect();
    let passed_indices: Vec<u64> = ranges.iter().flat_map(|(f, t)| *f..*t).collect();
    if passed_indices.iter().any(|q| q % 2 == 0) {
        violations.push(format!("a present ticket was passed over: {ranges:?}"));
    }
    if passed_indices.len() < 15 {
        violations.push(format!("the absent were not passed over: {ranges:?}"));
    }
    let people = cluster.psql(&format!(
        "SELECT admitted_count FROM cohorts WHERE id = {cohort}"
    ));
    if people.trim() != "20" {
        violations.push(format!(
            "{} people admitted, not the 20 present",
            people.trim()
        ));
    }
    // Ticket 1 comes back, through the balancer: next at once, admitted within seconds.
    let (key, ticket) = &tickets[1];
    let back = poll(&rec, At::Lb, ticket, key).await;
    if back.body["position"] != json!(1) {
        violations.push(format!("ticket 1 back is told {}", back.body));
    }
    let until = Instant::now() + Duration::from_secs(5);
    let mut state = back.body["state"].clone();
    while state != "admitted" && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(300)).await;
        state = poll(&rec, At::Lb, ticket, key).await.body["state"].clone();
    }
    if state != "admitted" {
        violations.push(format!(
            "ticket 1, back, was not admitted within 5 s: {state}"
        ));
    }
    eprintln!(
        "item 11: passed over {ranges:?}, {} admitted",
        admitted.len()
    );
    fail_if(
        violations,
        "item 11 (absent tickets across nodes)",
        &cluster,
    );
}
