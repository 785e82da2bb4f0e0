//! Actor tests of `LeftoverLine`, the owner of a center's leftover doses and its offer line:
//! messages sent directly, no timers (the line runs when told, `Dispatch`), the outcome read
//! from the database. On SQLite, or on PostgreSQL with `TEST_BACKEND=postgres` (see `common`).

mod common;

use futures_util::future::join_all;
use reservation::actors::identity_pool::SimulatedProvider;
use reservation::actors::leftovers::{Dispatch, Leave, PostLeftovers, SignUp};
use reservation::actors::CenterHandle;
use reservation::db::leftovers::{self as q, EntryStatus, NewEntry, SignUpOutcome};
use reservation::domain::slot::NewCenter;
use reservation::startup::{AppState, Application};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct World {
    state: actix_web::web::Data<AppState>,
    _app: Application,
    dir: Arc<tempfile::TempDir>,
    database: reservation::db::Backend,
    hold_s: u64,
}

async fn world(hold_s: u64) -> World {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let database = common::fresh_database(dir.path());
    on(dir, database, hold_s).await
}

async fn on(dir: Arc<tempfile::TempDir>, database: reservation::db::Backend, hold_s: u64) -> World {
    let mut config = common::test_config(database.clone());
    config.workers = 1;
    config.offer_hold_s = hold_s;
    let provider = Arc::new(SimulatedProvider {
        latency_ms: 1,
        failure_rate: 0.0,
    });
    let app = Application::build_with(config, provider, false)
        .await
        .unwrap();
    World {
        state: app.state(),
        _app: app,
        dir,
        database,
        hold_s,
    }
}

fn today() -> String {
    chrono::Utc::now()
        .with_timezone(&reservation::config::seoul())
        .date_naive()
        .to_string()
}

fn later_today() -> i64 {
    let now = chrono::Utc::now().with_timezone(&reservation::config::seoul());
    let midnight = now
        .date_naive()
        .succ_opt()
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let left = (midnight - now.naive_local()).num_seconds();
    now.timestamp() + (left - 2).clamp(1, 3600)
}

impl World {
    /// Another server on the same database: after a crash, or a second node.
    async fn again(&self) -> World {
        on(self.dir.clone(), self.database.clone(), self.hold_s).await
    }

    async fn center(&self) -> CenterHandle {
        self.state
            .create_center(NewCenter {
                name: "c".into(),
                region: "서울".into(),
                address: "a".into(),
            })
            .await
            .unwrap()
    }

    async fn post(&self, center: &CenterHandle, doses: i32) -> i32 {
        center
            .leftovers
            .send(PostLeftovers {
                vaccine: "Moderna".into(),
                doses,
                until: later_today(),
                now: reservation::now_s(),
            })
            .await
            .unwrap()
            .unwrap()
            .id
    }

    /// Signs up citizen `n` for `center`; the sign-up's id.
    async fn sign_up(&self, center: &CenterHandle, n: u32) -> i32 {
        let entry = NewEntry {
            citizen_key: format!("citizen-{n}"),
            cohort_id: 1,
            ticket_seq: i64::from(n),
            masked_name: "김*영".into(),
            birth_date: "1965-03-01".into(),
            day: today(),
            created_at: reservation::now_s(),
            phone_sealed: None,
        };
        let outcome = center
            .leftovers
            .send(SignUp {
                entry,
                centers: vec![center.shared.id],
            })
            .await
            .unwrap()
            .unwrap();
        match outcome {
            SignUpOutcome::Entry { id, .. } => id,
            other => panic!("not signed up: {other:?}"),
        }
    }

    async fn dispatch(&self, center: &CenterHandle) -> q::Dispatched {
        center.leftovers.send(Dispatch).await.unwrap().unwrap()
    }

    fn status(&self, entry: i32) -> EntryStatus {
        let mut conn = self.state.pool.get().unwrap();
        q::entry_status(&mut conn.conn(), entry).unwrap().unwrap()
    }

    fn leftovers(&self, center: &CenterHandle) -> Vec<q::LeftoverRow> {
        let mut conn = self.state.pool.get().unwrap();
        q::center_leftovers(&mut conn.conn(), center.shared.id, &today()).unwrap()
    }

    fn states(&self, entries: &[i32]) -> Vec<String> {
        entries.iter().map(|e| self.status(*e).state).collect()
    }
}

fn create_cohort_row() -> reservation::domain::cohort::NewCohort {
    reservation::domain::cohort::NewCohort {
        name: "c".into(),
        birth_year_from: 1960,
        birth_year_to: 1970,
        opens_at: reservation::now_s() - 60,
        closes_at: reservation::now_s() + 86_400,
        vaccine: "Moderna".into(),
        dose_interval_days: 28,
        admission_rate_per_s: 10.0,
        birth_day_schedule: Vec::new(),
        join_difficulty: 0,
    }
}

#[actix::test]
async fn k_doses_go_to_the_next_k_sign_ups_in_order_one_each_and_no_more() {
    let w = world(300).await;
    w.state.create_cohort(create_cohort_row()).await.unwrap();
    let center = w.center().await;
    let mut entries = Vec::new();
    for n in 0..5 {
        entries.push(w.sign_up(&center, n).await);
    }
    // Nothing to offer yet.
    let d = w.dispatch(&center).await;
    assert!(d.offered.is_empty());
    assert_eq!(w.states(&entries), ["waiting"; 5]);
    w.post(&center, 3).await;
    w.dispatch(&center).await;
    assert_eq!(
        w.states(&entries),
        ["offered", "offered", "offered", "waiting", "waiting"]
    );
    assert_eq!(w.status(entries[3]).position, 1);
    assert_eq!(w.status(entries[4]).position, 2);
    // However often the line runs, at once, no dose is offered twice.
    join_all((0..10).map(|_| w.dispatch(&center))).await;
    assert_eq!(w.states(&entries)[3..], ["waiting", "waiting"]);
    let l = &w.leftovers(&center)[0];
    assert_eq!((l.doses, l.taken, l.remaining()), (3, 3, 0));
    // Each offer is held by its own sign-up, for the hold.
    let offers: Vec<_> = entries[..3]
        .iter()
        .map(|e| w.status(*e).offer.unwrap().0)
        .collect();
    for o in &offers {
        assert!(o.expires_at > reservation::now_s() + 200, "{o:?}");
        assert_eq!(o.slot_id, l.id);
    }
}

#[actix::test]
async fn a_held_offer_lapses_only_once_its_hold_has_passed_and_then_goes_to_the_next() {
    let w = world(1).await;
    let center = w.center().await;
    let first = w.sign_up(&center, 1).await;
    let second = w.sign_up(&center, 2).await;
    w.post(&center, 1).await;
    w.dispatch(&center).await;
    let expires_at = w.status(first).offer.expect("offered").0.expires_at;
    // While the hold lasts, running the line changes nothing.
    let d = w.dispatch(&center).await;
    if reservation::now_s() < expires_at {
        assert!(d.lapsed.is_empty(), "lapsed early: {d:?}");
        assert_eq!(w.states(&[first, second]), ["offered", "waiting"]);
    }
    // The line runs until the offer lapses (a timer does that in the server).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = w.dispatch(&center).await;
        if d.lapsed.contains(&first) {
            assert!(reservation::now_s() >= expires_at);
            break;
        }
        assert!(Instant::now() < deadline, "never lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.states(&[first, second]), ["lapsed", "offered"]);
    assert_eq!(w.leftovers(&center)[0].taken, 1, "one dose, one offer");
}

#[actix::test]
async fn leaving_passes_the_held_dose_to_the_next_at_once() {
    let w = world(300).await;
    let center = w.center().await;
    let entries = [
        w.sign_up(&center, 1).await,
        w.sign_up(&center, 2).await,
        w.sign_up(&center, 3).await,
    ];
    w.post(&center, 1).await;
    w.dispatch(&center).await;
    assert_eq!(w.states(&entries), ["offered", "waiting", "waiting"]);
    let left = center
        .leftovers
        .send(Leave {
            entry_id: entries[0],
        })
        .await
        .unwrap()
        .unwrap();
    assert!(left);
    w.dispatch(&center).await;
    assert_eq!(w.states(&entries), ["cancelled", "offered", "waiting"]);
    assert_eq!(w.status(entries[2]).position, 1);
    // A waiting sign-up leaves without touching the offer.
    center
        .leftovers
        .send(Leave {
            entry_id: entries[2],
        })
        .await
        .unwrap()
        .unwrap();
    w.dispatch(&center).await;
    assert_eq!(w.states(&entries), ["cancelled", "offered", "cancelled"]);
}

#[actix::test]
async fn a_restarted_line_keeps_each_offer_and_its_expiry_and_offers_no_dose_again() {
    let w = world(300).await;
    let center = w.center().await;
    let first = w.sign_up(&center, 1).await;
    let second = w.sign_up(&center, 2).await;
    w.post(&center, 1).await;
    w.dispatch(&center).await;
    let before = w.status(first).offer.unwrap().0;

    let after = w.again().await;
    let again = after.state.registry.center(center.shared.id).unwrap();
    after.dispatch(&again).await;
    assert_eq!(after.status(first).offer.unwrap().0, before);
    assert_eq!(after.states(&[first, second]), ["offered", "waiting"]);
}

#[actix::test]
async fn two_lines_on_one_database_running_at_once_offer_each_dose_once_in_order() {
    let a = world(300).await;
    let center = a.center().await;
    let mut entries = Vec::new();
    for n in 0..10 {
        entries.push(a.sign_up(&center, n).await);
    }
    // A second server on the same database, as a second node: its own actor for the center.
    let b = a.again().await;
    let other = b.state.registry.center(center.shared.id).unwrap();
    a.post(&center, 3).await;
    let runs = (0..12).map(|i| {
        let line = if i % 2 == 0 { &center } else { &other };
        line.leftovers.send(Dispatch)
    });
    for r in join_all(runs).await {
        r.unwrap().unwrap();
    }
    let states = a.states(&entries);
    assert_eq!(states[..3], ["offered", "offered", "offered"], "{states:?}");
    assert!(states[3..].iter().all(|s| s == "waiting"), "{states:?}");
    assert_eq!(a.leftovers(&center)[0].taken, 3);
}

#[actix::test]
async fn an_offer_is_never_held_past_the_instant_its_doses_are_usable_until() {
    let w = world(300).await;
    let center = w.center().await;
    let entry = w.sign_up(&center, 1).await;
    let until = reservation::now_s() + 30;
    center
        .leftovers
        .send(PostLeftovers {
            vaccine: "Moderna".into(),
            doses: 1,
            until,
            now: reservation::now_s(),
        })
        .await
        .unwrap()
        .unwrap();
    w.dispatch(&center).await;
    assert_eq!(w.status(entry).offer.expect("offered").0.expires_at, until);
}

#[actix::test]
async fn more_doses_than_one_dispatch_offers_are_all_offered_in_runs_that_follow_at_once() {
    let w = world(300).await;
    w.state.create_cohort(create_cohort_row()).await.unwrap();
    let center = w.center().await;
    let n = q::MAX_OFFERS_PER_DISPATCH as u32 + 6;
    let mut entries = Vec::new();
    for i in 0..n + 2 {
        entries.push(w.sign_up(&center, i).await);
    }
    w.post(&center, n as i32).await;
    let first = w.dispatch(&center).await;
    assert!(
        first.offered.len() <= q::MAX_OFFERS_PER_DISPATCH,
        "{}",
        first.offered.len()
    );
    // The rest follow without anyone asking again (no timer runs in this test).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let offered = w
            .states(&entries)
            .iter()
            .filter(|s| *s == "offered")
            .count();
        if offered == n as usize {
            break;
        }
        assert!(Instant::now() < deadline, "{offered} of {n} offered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // In sign-up order, and the two after the last dose still wait.
    let states = w.states(&entries);
    assert!(states[..n as usize].iter().all(|s| s == "offered"));
    assert_eq!(states[n as usize..], ["waiting", "waiting"]);
    let l = &w.leftovers(&center)[0];
    assert_eq!((l.doses, l.taken, l.remaining()), (n as i32, n as i32, 0));
}
