//! Actor tests: the actors started under `#[actix::test]` and sent messages directly, with the
//! admission clock driven by `Tick` messages so that rates are exact, not timed. On SQLite, or
//! on PostgreSQL with `TEST_BACKEND=postgres` (see `common`).

mod common;

use actix::Addr;
use chrono::{Days, NaiveDate};
use futures_util::future::{join_all, BoxFuture};
use reservation::actors::booking_store::{FailNextCommits, Persist, StoreError, Write, Written};
use reservation::actors::center_inventory::{Book, BookError, BookingRequest, ListSlots, Release};
use reservation::actors::cohort_queue::{Claim, ClaimPass, CohortHandle, Tick};
use reservation::actors::identity_pool::{
    IdentityPool, IdentityProvider, ProviderError, SimulatedProvider, Verify, VerifyError, Vouched,
};
use reservation::actors::CenterHandle;
use reservation::config::IdentitySettings;
use reservation::db::models::{NewCenterRow, NewCitizenRow};
use reservation::db::queries;
use reservation::domain::cohort::{CohortState, NewCohort};
use reservation::domain::identity::IdentityClaim;
use reservation::domain::queue::TicketState;
use reservation::domain::slot::{NewCenter, NewSlot, Refusal};
use reservation::startup::{AppState, Application};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct World {
    state: actix_web::web::Data<AppState>,
    _app: Application,
    dir: Arc<tempfile::TempDir>,
    database: reservation::db::Backend,
}

async fn world() -> World {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let database = common::fresh_database(dir.path());
    on(dir, database).await
}

async fn on(dir: Arc<tempfile::TempDir>, database: reservation::db::Backend) -> World {
    let mut config = common::test_config(database.clone());
    config.workers = 1;
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
    }
}

fn today() -> NaiveDate {
    chrono::Utc::now()
        .with_timezone(&reservation::config::seoul())
        .date_naive()
}

impl World {
    /// A crash: a new server rebuilt from the same database, as the old one left it (the old
    /// one is left idle: its clock is driven by hand, so it writes nothing more).
    async fn restart(&self) -> World {
        on(self.dir.clone(), self.database.clone()).await
    }

    async fn cohort(&self, opens_at: i64, rate: f64) -> CohortHandle {
        let c = NewCohort {
            name: "c".into(),
            birth_year_from: 1960,
            birth_year_to: 1970,
            opens_at,
            closes_at: opens_at + 86_400 * 10,
            vaccine: "Moderna".into(),
            dose_interval_days: 28,
            admission_rate_per_s: rate,
            birth_day_schedule: Vec::new(),
            join_difficulty: 0,
        };
        self.state.create_cohort(c).await.unwrap()
    }

    async fn center(&self) -> CenterHandle {
        let c = NewCenter {
            name: "c".into(),
            region: "서울".into(),
            address: "a".into(),
        };
        self.state.create_center(c).await.unwrap()
    }

    /// Adds (day offset from tomorrow, start minute, capacity) slots; returns their ids.
    async fn slots(&self, center: &CenterHandle, slots: &[(u64, u16, i64)]) -> Vec<i32> {
        let new = slots
            .iter()
            .map(|(d, start, cap)| NewSlot {
                date: today() + Days::new(1 + d),
                start: *start,
                end: start + 60,
                capacity: *cap,
                vaccine: "Moderna".into(),
            })
            .collect();
        self.state
            .add_slots(center, new)
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect()
    }

    async fn tickets(&self, cohort: &CohortHandle, n: u64) -> Vec<u64> {
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push(cohort.take_ticket().await.unwrap());
        }
        out
    }
}

async fn tick(cohort: &CohortHandle, now_ms: i64) {
    cohort.addr.send(Tick { now_ms }).await.unwrap();
}

/// Ticks every 100 ms of simulated time from `from_ms` for `n` ticks; returns the last time.
async fn run_clock(cohort: &CohortHandle, from_ms: i64, n: i64) -> i64 {
    for i in 0..n {
        tick(cohort, from_ms + i * 100).await;
    }
    from_ms + (n - 1) * 100
}

fn booking(slot_id: i32, n: usize) -> BookingRequest {
    BookingRequest {
        slot_id,
        vaccine: "Moderna".into(),
        dose_interval_days: 28,
        today: today(),
        citizen: NewCitizenRow {
            key: format!("citizen-{n}"),
            masked_name: "김*영".into(),
            birth_date: "1965-03-01".into(),
            created_at: 0,
            phone_sealed: None,
        },
        code: reservation::domain::booking::new_code(),
        cohort_id: 1,
        ticket_seq: n as u64,
        queue_index: None,
        idempotency_key: None,
        now: 0,
    }
}

#[actix::test]
async fn the_queue_admits_in_ticket_order_at_its_rate() {
    let w = world().await;
    let center = w.center().await;
    w.slots(&center, &[(0, 600, 10_000), (28, 600, 10_000)])
        .await;
    let now = reservation::now_ms();
    // Created already open: no pre-queue, so tickets are in join order at once.
    let cohort = w.cohort(now / 1000 - 60, 50.0).await;
    let seqs = w.tickets(&cohort, 1000).await;
    // 21 ticks: the first starts the clock, then 20 × 100 ms at 50/s = 100 admissions.
    let end = run_clock(&cohort, now + 100, 21).await;
    let admitted = cohort.shared.admitted();
    assert_eq!(admitted, 100);
    for seq in seqs {
        let s = cohort.shared.status(seq, end);
        if seq < admitted {
            assert_eq!(s.state, TicketState::Admitted, "ticket {seq}");
        } else {
            assert_eq!(s.state, TicketState::Waiting);
            assert_eq!(s.position, Some(seq - admitted + 1));
        }
    }
}

#[actix::test]
async fn the_queue_is_first_in_first_out_over_100_000_tickets() {
    let w = world().await;
    let center = w.center().await;
    w.slots(&center, &[(0, 600, 100_000), (28, 600, 100_000)])
        .await;
    let now = reservation::now_ms();
    let cohort = w.cohort(now / 1000 - 60, 20_000.0).await;
    tick(&cohort, now).await;
    // A hundred rounds of a thousand joins at once (each round group-committed together):
    // every round's numbers come after the last round's, none reused or skipped.
    let mut seqs = Vec::with_capacity(100_000);
    for _ in 0..100 {
        let mut round: Vec<u64> = join_all((0..1000).map(|_| cohort.take_ticket()))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        round.sort_unstable();
        seqs.extend(round);
    }
    assert_eq!(
        seqs,
        (0..100_000).collect::<Vec<_>>(),
        "numbers in join order, none reused"
    );
    let mut t = now + 100;
    let mut last = 0;
    while cohort.shared.admitted() < 100_000 {
        tick(&cohort, t).await;
        t += 100;
        let admitted = cohort.shared.admitted();
        assert!(admitted >= last, "the front never moves back");
        last = admitted;
        if admitted > 0 && admitted < 100_000 {
            assert_eq!(
                cohort.shared.status(admitted - 1, t).state,
                TicketState::Admitted
            );
            let next = cohort.shared.status(admitted, t);
            assert_eq!((next.state, next.position), (TicketState::Waiting, Some(1)));
            let far = cohort.shared.status(99_999, t);
            assert_eq!(far.position, Some(100_000 - admitted));
        }
        assert!(t < now + 600_000, "the queue stalled at {admitted}");
    }
}

#[actix::test]
async fn tickets_taken_before_opening_are_shuffled_once_and_placed_ahead_of_later_ones() {
    let w = world().await;
    let center = w.center().await;
    w.slots(&center, &[(0, 600, 5_000), (28, 600, 5_000)]).await;
    let now = reservation::now_ms();
    let opens = now / 1000 + 3600;
    let cohort = w.cohort(opens, 100.0).await;
    let early = w.tickets(&cohort, 1000).await;
    tick(&cohort, now).await;
    let s = cohort.shared.status(early[0], now);
    assert_eq!((s.state, s.position), (TicketState::PreQueue, None));

    tick(&cohort, opens * 1000).await; // opening: the shuffle
    let at = opens * 1000;
    let mut positions: Vec<u64> = early
        .iter()
        .map(|s| cohort.shared.status(*s, at).position.unwrap())
        .collect();
    assert_ne!(
        positions,
        (1..=1000).collect::<Vec<_>>(),
        "not the join order"
    );
    positions.sort_unstable();
    assert_eq!(
        positions,
        (1..=1000).collect::<Vec<_>>(),
        "a permutation of the places"
    );
    let late = cohort.take_ticket().await.unwrap();
    assert_eq!(
        cohort.shared.status(late, at).position,
        Some(1001),
        "behind the whole pre-queue"
    );
}

#[actix::test]
async fn a_cohort_sells_out_when_admitted_citizens_hold_every_place_and_resumes_when_places_come_back(
) {
    let w = world().await;
    let center = w.center().await;
    w.slots(&center, &[(0, 600, 5), (28, 600, 5)]).await; // 5 bookable pairs
    let now = reservation::now_ms();
    let cohort = w.cohort(now / 1000 - 60, 1000.0).await;
    tick(&cohort, now).await;
    let seqs = w.tickets(&cohort, 20).await;
    let end = run_clock(&cohort, now + 100, 10).await;
    // 5 pairs × over-admission 1.1 = 5.5: five admitted, then sold out.
    assert_eq!(cohort.shared.admitted(), 5);
    assert_eq!(cohort.shared.state(end / 1000), CohortState::SoldOut);
    assert_eq!(
        cohort.shared.status(seqs[10], end).state,
        TicketState::SoldOut
    );

    w.slots(&center, &[(1, 600, 3), (29, 600, 3)]).await; // 3 more pairs
    let end = run_clock(&cohort, end + 100, 10).await;
    assert_eq!(
        cohort.shared.admitted(),
        8,
        "admission resumed in order, up to the new supply"
    );
    let s = cohort.shared.status(seqs[8], end);
    assert_eq!((s.state, s.position), (TicketState::SoldOut, Some(1)));
}

#[actix::test]
async fn admission_slows_while_the_identity_pool_is_full_and_climbs_back_when_it_has_room() {
    let w = world().await;
    let center = w.center().await;
    w.slots(&center, &[(0, 600, 50_000), (28, 600, 50_000)])
        .await;
    let now = reservation::now_ms();
    let cohort = w.cohort(now / 1000 - 60, 100.0).await;
    tick(&cohort, now).await;
    w.tickets(&cohort, 5_000).await;
    let load = w.state.identity_load.clone();
    let max = load.max_in_flight.load(Ordering::Relaxed);

    load.in_flight.store(max, Ordering::Relaxed); // the pool is full
    let t = run_clock(&cohort, now + 100, 40).await;
    let before = cohort.shared.admitted();
    let t = run_clock(&cohort, t + 100, 10).await;
    let pressed = cohort.shared.admitted() - before;
    assert!(
        pressed <= 40,
        "{pressed} admitted in the fifth second under pressure"
    );

    load.in_flight.store(0, Ordering::Relaxed); // room again
    let t = run_clock(&cohort, t + 100, 50).await;
    let before = cohort.shared.admitted();
    run_clock(&cohort, t + 100, 10).await;
    let relieved = cohort.shared.admitted() - before;
    assert!(
        relieved >= 90,
        "{relieved} admitted in a second after recovery"
    );
}

#[actix::test]
async fn a_thousand_bookings_racing_for_ten_places_give_exactly_ten() {
    let w = world().await;
    w.cohort(0, 1.0).await;
    let center = w.center().await;
    let ids = w.slots(&center, &[(0, 600, 10), (28, 600, 2_000)]).await;
    let answers = join_all((0..1000).map(|n| center.addr.send(Book(booking(ids[0], n))))).await;
    let ok = answers.iter().filter(|a| matches!(a, Ok(Ok(_)))).count();
    let full = answers
        .iter()
        .filter(|a| matches!(a, Ok(Err(BookError::Refused(Refusal::SlotFull)))))
        .count();
    assert_eq!((ok, full), (10, 990));
    let mut conn = w.state.pool.get().unwrap();
    let (_, live, _) = queries::booking_counts(&mut conn.conn()).unwrap();
    assert_eq!(live, 10, "ten on disk");
    let slots = center
        .addr
        .send(ListSlots { today: today() })
        .await
        .unwrap();
    assert_eq!((slots[0].remaining, slots[1].remaining), (0, 1_990));
}

#[actix::test]
async fn the_second_dose_takes_the_target_day_or_the_nearest_within_seven_days_or_nothing() {
    let w = world().await;
    w.cohort(0, 1.0).await;
    let center = w.center().await;
    // first on day 0 at 10:00; day 28 has only 09:00; day 30 has 14:00.
    let ids = w
        .slots(
            &center,
            &[(0, 600, 5), (28, 540, 1), (30, 840, 4), (2, 600, 5)],
        )
        .await;
    let a = center
        .addr
        .send(Book(booking(ids[0], 1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        a.row.second_slot_id, ids[1],
        "same day, other time: the earliest with room"
    );
    let b = center
        .addr
        .send(Book(booking(ids[0], 2)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b.row.second_slot_id, ids[2],
        "target day full: the nearest later day"
    );
    // Day 2's window (30..=37) holds day 30 only; fill it and day 2 has no second dose.
    for n in 3..7 {
        center
            .addr
            .send(Book(booking(ids[0], n)))
            .await
            .unwrap()
            .ok();
    }
    let refused = center.addr.send(Book(booking(ids[3], 9))).await.unwrap();
    assert_eq!(
        refused.unwrap_err(),
        BookError::Refused(Refusal::NoSecondDoseSlot)
    );
    let slots = center
        .addr
        .send(ListSlots { today: today() })
        .await
        .unwrap();
    let day2 = slots.iter().find(|s| s.id == ids[3]).unwrap();
    assert_eq!(day2.remaining, 5, "no place taken by a refused booking");
}

#[actix::test]
async fn cancelling_gives_back_both_places() {
    let w = world().await;
    w.cohort(0, 1.0).await;
    let center = w.center().await;
    let ids = w.slots(&center, &[(0, 600, 1), (28, 600, 1)]).await;
    let booked = center
        .addr
        .send(Book(booking(ids[0], 1)))
        .await
        .unwrap()
        .unwrap();
    let write = Write::Cancel {
        code: booked.row.code.clone(),
        now: 1,
    };
    let Ok(Written::Cancelled(Some(row))) = w.state.store.send(Persist(write)).await.unwrap()
    else {
        panic!("not cancelled")
    };
    center
        .addr
        .send(Release {
            first_slot_id: row.first_slot_id,
            second_slot_id: row.second_slot_id,
        })
        .await
        .unwrap();
    let slots = center
        .addr
        .send(ListSlots { today: today() })
        .await
        .unwrap();
    assert_eq!((slots[0].remaining, slots[1].remaining), (1, 1));
    // The places are really free: someone else can take them.
    assert!(center
        .addr
        .send(Book(booking(ids[0], 2)))
        .await
        .unwrap()
        .is_ok());
}

/// A provider that records how many calls it had in flight at once.
struct Counting {
    now: AtomicUsize,
    max: AtomicUsize,
}

struct CountingProvider(Arc<Counting>);

impl IdentityProvider for CountingProvider {
    fn verify(&self, _: IdentityClaim) -> BoxFuture<'static, Result<Vouched, ProviderError>> {
        let me = self.0.clone();
        let n = me.now.fetch_add(1, Ordering::SeqCst) + 1;
        me.max.fetch_max(n, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            me.now.fetch_sub(1, Ordering::SeqCst);
            Ok(Vouched {
                person_id: "p".into(),
            })
        })
    }
}

#[actix::test]
async fn the_identity_pool_never_exceeds_its_cap_and_answers_busy_when_full() {
    use actix::Actor;
    let provider = Arc::new(Counting {
        now: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
    });
    let settings = IdentitySettings {
        max_in_flight: 8,
        ..IdentitySettings::default()
    };
    let pool: Addr<IdentityPool> =
        IdentityPool::new(Arc::new(CountingProvider(provider.clone())), settings).start();
    let answers = join_all((0..200).map(|n| {
        let claim =
            IdentityClaim::parse("김민영", "1965-03-01", &format!("010-1234-{n:04}")).unwrap();
        pool.send(Verify {
            claim,
            limit_key: format!("k{n}"),
        })
    }))
    .await;
    let ok = answers.iter().filter(|a| matches!(a, Ok(Ok(_)))).count();
    let busy = answers
        .iter()
        .filter(|a| matches!(a, Ok(Err(VerifyError::Busy { .. }))))
        .count();
    assert!(provider.max.load(Ordering::SeqCst) <= 8, "cap exceeded");
    assert_eq!(provider.max.load(Ordering::SeqCst), 8, "the cap is used");
    assert_eq!(ok + busy, 200);
    assert!(busy >= 150, "only {busy} answered busy");
}

#[actix::test]
async fn one_identity_is_checked_at_most_five_times_in_ten_minutes() {
    use actix::Actor;
    let provider = Arc::new(SimulatedProvider {
        latency_ms: 0,
        failure_rate: 0.0,
    });
    let pool = IdentityPool::new(provider, IdentitySettings::default()).start();
    let claim = IdentityClaim::parse("김민영", "1965-03-01", "010-0000-1111").unwrap();
    for _ in 0..5 {
        let a = pool
            .send(Verify {
                claim: claim.clone(),
                limit_key: "same".into(),
            })
            .await
            .unwrap();
        assert_eq!(a, Err(VerifyError::Rejected));
    }
    let sixth = pool
        .send(Verify {
            claim,
            limit_key: "same".into(),
        })
        .await
        .unwrap();
    assert!(matches!(sixth, Err(VerifyError::RateLimited { retry_after }) if retry_after > 500));
}

#[actix::test]
async fn the_store_commits_concurrent_writes_together_and_reports_a_failed_commit() {
    let w = world().await;
    let store = w.state.store.clone();
    let center = |n: usize| {
        Write::CreateCenter(NewCenterRow {
            name: format!("c{n}"),
            region: "r".into(),
            address: "a".into(),
            created_at: 0,
        })
    };
    let answers = join_all((0..500).map(|n| store.send(Persist(center(n))))).await;
    // A write the database refuses is answered alone; the rest of its batch commits.
    let orphan = Write::ClaimPass(reservation::db::models::NewPassClaim {
        cohort_id: 999,
        ticket_seq: 1,
        citizen_key: "k".into(),
        claimed_at: 0,
    });
    let mixed = join_all([
        store.send(Persist(orphan)),
        store.send(Persist(center(2000))),
    ])
    .await;
    assert!(
        matches!(mixed[0], Ok(Err(StoreError::Commit(_)))),
        "foreign key refused"
    );
    assert!(matches!(mixed[1], Ok(Ok(Written::Id(_)))));
    assert!(answers.iter().all(|a| matches!(a, Ok(Ok(Written::Id(_))))));
    let m = &w.state.store_metrics;
    assert!(
        m.commits.load(Ordering::Relaxed) < 500,
        "group commit: fewer commits than writes"
    );
    assert!(m.largest_batch.load(Ordering::Relaxed) > 1);

    store.send(FailNextCommits(1)).await.unwrap();
    let failed = store.send(Persist(center(1000))).await.unwrap();
    assert!(matches!(failed, Err(StoreError::Commit(_))));
    let mut conn = w.state.pool.get().unwrap();
    assert_eq!(
        queries::load_centers(&mut conn.conn()).unwrap().len(),
        501,
        "nothing of the failed batch on disk"
    );
    assert!(matches!(
        store.send(Persist(center(1001))).await.unwrap(),
        Ok(Written::Id(_))
    ));
}

#[actix::test]
async fn a_pass_verifies_one_identity_only() {
    let w = world().await;
    let cohort = w.cohort(reservation::now_s() - 60, 10.0).await;
    let claim = |key: &str| ClaimPass {
        seq: 5,
        citizen_key: key.into(),
        now: reservation::now_s(),
    };
    assert_eq!(cohort.addr.send(claim("a")).await.unwrap(), Ok(Claim::New));
    assert_eq!(cohort.addr.send(claim("a")).await.unwrap(), Ok(Claim::Same));
    assert_eq!(
        cohort.addr.send(claim("b")).await.unwrap(),
        Ok(Claim::Other)
    );
    assert_eq!(cohort.shared.verified(), 1);
}

#[actix::test]
async fn a_join_whose_record_fails_is_refused_and_takes_no_number_even_after_a_restart() {
    let w = world().await;
    let center = w.center().await;
    w.slots(&center, &[(0, 600, 100), (28, 600, 100)]).await;
    let now = reservation::now_ms();
    let id = w.cohort(now / 1000 - 60, 10.0).await.shared.id;
    let cohort = w.state.registry.cohort(id).unwrap();
    // The first join takes its number in a commit that fails: the counter on disk did not
    // move, so the number is nobody's and the next join takes it.
    w.state.store.send(FailNextCommits(1)).await.unwrap();
    assert!(
        cohort.take_ticket().await.is_err(),
        "the join fails with it"
    );
    let seqs = w.tickets(&cohort, 3).await;
    assert_eq!(seqs, vec![0, 1, 2], "the failed join took no number");
    for (i, seq) in seqs.iter().enumerate() {
        let s = cohort.shared.status(*seq, now);
        assert_eq!(s.position, Some(i as u64 + 1), "ticket {seq}");
    }
    assert_eq!(cohort.shared.waiting(), 3);

    // A restart still counts three people, in the same places.
    let w = w.restart().await;
    let cohort = w.state.registry.cohort(id).unwrap();
    for (i, seq) in seqs.iter().enumerate() {
        let s = cohort.shared.status(*seq, now);
        assert_eq!(
            s.position,
            Some(i as u64 + 1),
            "ticket {seq} after a restart"
        );
    }
    // 10/s: the first step admits one, the first citizen.
    let end = run_clock(&cohort, now + 100, 2).await;
    assert_eq!(cohort.shared.admitted_people(), 1);
    assert_eq!(cohort.shared.status(0, end).state, TicketState::Admitted);
    assert_eq!(cohort.shared.status(1, end).position, Some(1));
}

#[actix::test]
async fn a_restart_before_opening_keeps_every_answered_ticket_and_adds_no_phantom() {
    let w = world().await;
    let center = w.center().await;
    w.slots(&center, &[(0, 600, 100), (28, 600, 100)]).await;
    let now = reservation::now_ms();
    let opens = now / 1000 + 3600;
    let id = w.cohort(opens, 10.0).await.shared.id;
    let cohort = w.state.registry.cohort(id).unwrap();
    // Every join is answered once its number is on disk: no tick is needed to record them.
    let before = w.tickets(&cohort, 7).await;
    assert_eq!(before, (0..7).collect::<Vec<_>>());

    let w = w.restart().await;
    let cohort = w.state.registry.cohort(id).unwrap();
    let after = w.tickets(&cohort, 3).await;
    assert_eq!(after, vec![7, 8, 9], "no number reused, none skipped");
    assert_eq!(cohort.shared.waiting(), 10);
    tick(&cohort, opens * 1000).await; // the opening: the shuffle
    let at = opens * 1000;
    assert!(cohort.shared.is_open_shuffled());
    let pos = |seq: u64| cohort.shared.status(seq, at).position.unwrap();
    // Ten people, ten places, each its own.
    let mut places: Vec<u64> = before.iter().chain(&after).map(|s| pos(*s)).collect();
    places.sort_unstable();
    assert_eq!(places, (1..=10).collect::<Vec<_>>());
    let late = cohort.take_ticket().await.unwrap();
    assert_eq!(pos(late), 11, "behind the pre-queue's people");

    let end = run_clock(&cohort, at + 100, 14).await;
    for seq in before.iter().chain(&after).chain([&late]) {
        let s = cohort.shared.status(*seq, end);
        assert_eq!(s.state, TicketState::Admitted, "ticket {seq}: {s:?}");
    }
    assert_eq!(cohort.shared.admitted_people(), 11, "people, not numbers");
}

#[actix::test]
async fn after_a_crash_every_answered_ticket_keeps_its_exact_place_and_admission_keeps_its_rate() {
    let w = world().await;
    let center = w.center().await;
    w.slots(&center, &[(0, 600, 100), (28, 600, 100)]).await;
    let now = reservation::now_ms();
    let id = w.cohort(now / 1000 - 60, 10.0).await.shared.id;
    let cohort = w.state.registry.cohort(id).unwrap();
    let first = w.tickets(&cohort, 2).await;
    let end = run_clock(&cohort, now + 100, 4).await; // admits both, at 10/s
    assert_eq!(cohort.shared.admitted_people(), 2);
    let waiting = w.tickets(&cohort, 30).await;

    let w = w.restart().await;
    let cohort = w.state.registry.cohort(id).unwrap();
    assert_eq!(
        cohort.shared.admitted_people(),
        2,
        "people admitted, not numbers"
    );
    assert_eq!(cohort.shared.waiting(), 30);
    let after = w.tickets(&cohort, 2).await;
    assert_eq!(after, vec![32, 33]);
    let pos = |seq: u64, at: i64| cohort.shared.status(seq, at).position;
    for (i, seq) in waiting.iter().chain(&after).enumerate() {
        assert_eq!(pos(*seq, end), Some(i as u64 + 1), "ticket {seq}");
    }
    assert!(first
        .iter()
        .all(|s| cohort.shared.status(*s, end).state == TicketState::Admitted));
    // The rate holds across the restart: one second of the clock admits about ten, not all.
    let t = run_clock(&cohort, end + 100, 10).await;
    let admitted = cohort.shared.admitted_people() - 2;
    assert!(
        (8..=12).contains(&admitted),
        "{admitted} admitted in the first second after the restart"
    );
    // Nobody behind was passed: positions still count from the front, one each.
    for (i, seq) in waiting
        .iter()
        .chain(&after)
        .enumerate()
        .skip(admitted as usize)
    {
        assert_eq!(pos(*seq, t), Some(i as u64 + 1 - admitted), "ticket {seq}");
    }
}

/// The writer's batch of bookings, decided together: a repeat within the batch, a second
/// booking of one citizen, a slot that fills in the middle of the batch, a second dose with no
/// place left (its first place given back); and afterwards every slot row's count equals the
/// live bookings that hold it.
#[actix::test]
async fn a_batch_of_bookings_is_decided_in_order_as_if_one_at_a_time() {
    use reservation::db::models::NewBookingRow;
    use reservation::db::queries::BookOutcome;
    let w = world().await;
    let center = w.center().await;
    // a: 10 places with its second dose b (10); c: 2 places, second d (2); e: 5 places whose
    // second f has 1.
    let ids = w
        .slots(
            &center,
            &[
                (0, 600, 10),
                (28, 600, 10),
                (1, 600, 2),
                (29, 600, 2),
                (2, 600, 5),
                (30, 600, 1),
            ],
        )
        .await;
    let (a, b, c, d, e, f) = (ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]);
    let cohort = w.cohort(reservation::now_s() - 60, 10.0).await.shared.id;
    let citizen = |k: &str| NewCitizenRow {
        key: k.into(),
        masked_name: "김*영".into(),
        birth_date: "1965-03-01".into(),
        created_at: 0,
        phone_sealed: None,
    };
    let booking = |k: &str, first: i32, second: i32, idem: Option<&str>| NewBookingRow {
        code: reservation::domain::booking::new_code(),
        citizen_key: k.into(),
        cohort_id: cohort,
        ticket_seq: 0,
        vaccine: "Moderna".into(),
        center_id: center.shared.id,
        first_slot_id: first,
        first_date: "2030-01-01".into(),
        first_start: "10:00".into(),
        second_slot_id: second,
        second_date: "2030-01-29".into(),
        second_start: "10:00".into(),
        state: "confirmed".into(),
        idempotency_key: idem.map(str::to_string),
        created_at: 0,
    };
    let rows = [
        (citizen("A"), booking("A", a, b, Some("k1"))),
        (citizen("A"), booking("A", a, b, Some("k1"))), // a repeat: the first booking again
        (citizen("A"), booking("A", a, b, Some("k2"))), // a second live booking: refused
        (citizen("B"), booking("B", c, d, None)),
        (citizen("C"), booking("C", c, d, None)),
        (citizen("D"), booking("D", c, d, None)), // c is full by now
        (citizen("E"), booking("E", e, f, None)),
        (citizen("F"), booking("F", e, f, None)), // f is full: e's place goes back
    ];
    let items: Vec<_> = rows.iter().map(|(c, b)| (c, b)).collect();
    let mut pooled = w.state.pool.get().unwrap();
    let out = pooled
        .write_transaction(|conn| queries::insert_bookings(conn, &items))
        .unwrap();
    let first_code = match &out[0] {
        BookOutcome::Booked(row) => row.code.clone(),
        other => panic!("A's booking: {other:?}"),
    };
    assert!(
        matches!(&out[1], BookOutcome::Repeat(r) if r.code == first_code),
        "{:?}",
        out[1]
    );
    assert!(matches!(out[2], BookOutcome::AlreadyBooked), "{:?}", out[2]);
    assert!(matches!(out[3], BookOutcome::Booked(_)), "{:?}", out[3]);
    assert!(matches!(out[4], BookOutcome::Booked(_)), "{:?}", out[4]);
    assert!(
        matches!(out[5], BookOutcome::SlotFull(id) if id == c),
        "{:?}",
        out[5]
    );
    assert!(matches!(out[6], BookOutcome::Booked(_)), "{:?}", out[6]);
    assert!(
        matches!(out[7], BookOutcome::SlotFull(id) if id == f),
        "{:?}",
        out[7]
    );
    let conn = &mut pooled.conn();
    let booked: std::collections::HashMap<i32, i32> = queries::load_slots(conn)
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.booked))
        .collect();
    assert_eq!(
        [a, b, c, d, e, f].map(|id| booked[&id]),
        [1, 1, 2, 2, 1, 1],
        "places taken per slot"
    );
    assert!(queries::slots_out_of_step(conn).unwrap().is_empty());
    // The next batch sees what this one did: A's key k1 repeats from disk.
    let again = [(citizen("A"), booking("A", a, b, Some("k1")))];
    let items: Vec<_> = again.iter().map(|(c, b)| (c, b)).collect();
    let out = pooled
        .write_transaction(|conn| queries::insert_bookings(conn, &items))
        .unwrap();
    assert!(
        matches!(&out[0], BookOutcome::Repeat(r) if r.code == first_code),
        "{out:?}"
    );
}

/// Joins arriving between every tick keep a record of ticket numbers on its way almost all
/// the time; the opening must not wait for a quiet moment.
#[actix::test]
async fn a_stream_of_joins_does_not_put_off_the_opening() {
    let w = world().await;
    let center = w.center().await;
    w.slots(&center, &[(0, 600, 100), (28, 600, 100)]).await;
    let opens = reservation::now_s() + 3600;
    let cohort = w.cohort(opens, 10.0).await;
    let mut ticks = 0;
    while !cohort.shared.is_open_shuffled() {
        let c = cohort.clone();
        actix::spawn(async move {
            let _ = c.take_ticket().await;
        });
        tokio::task::yield_now().await;
        tick(&cohort, opens * 1000 + ticks * 100).await;
        ticks += 1;
        // The clock's period: the next tick comes that much later, as in production.
        tokio::time::sleep(reservation::actors::cohort_queue::TICK).await;
        assert!(
            ticks <= 3,
            "still not open after {ticks} ticks past opens_at"
        );
    }
}

/// A record of joins that failed before opening, and no join after it: the failed join took
/// no number, so the opening counts nobody for it, and after a restart no new join is handed
/// a number the pre-queue holds (it would be shuffled in ahead of the line).
#[actix::test]
async fn a_failed_record_before_opening_takes_no_number_and_none_is_reused() {
    let w = world().await;
    let center = w.center().await;
    w.slots(&center, &[(0, 600, 100), (28, 600, 100)]).await;
    let opens = reservation::now_s() + 3600;
    let id = w.cohort(opens, 10.0).await.shared.id;
    let cohort = w.state.registry.cohort(id).unwrap();
    w.state.store.send(FailNextCommits(1)).await.unwrap();
    assert!(cohort.take_ticket().await.is_err());
    // The opening: no number was taken.
    for t in 0..3 {
        if cohort.shared.is_open_shuffled() {
            break;
        }
        tick(&cohort, opens * 1000 + t * 100).await;
        tokio::time::sleep(reservation::actors::cohort_queue::TICK).await;
    }
    assert!(cohort.shared.is_open_shuffled());
    assert_eq!(cohort.shared.waiting(), 0);

    let w = w.restart().await;
    let cohort = w.state.registry.cohort(id).unwrap();
    assert_eq!(
        cohort.shared.waiting(),
        0,
        "the failed number is nobody after a restart"
    );
    let seq = cohort.take_ticket().await.unwrap();
    assert_eq!(
        seq, 0,
        "the failed join took no number, and the pre-queue is empty"
    );
    let s = cohort.shared.status(seq, opens * 1000 + 100);
    assert_eq!((s.state, s.position), (TicketState::Waiting, Some(1)));
}

/// Absent tickets (not heard from for `ABSENT_AFTER_SECONDS` when their turn comes) are passed
/// over without spending the rate; present ones keep their order; one that comes back is
/// admitted beside the line, at once, without anyone's position growing; and all of it holds
/// across a restart, where a node that has not listened that long passes nobody over.
#[actix::test]
async fn absent_tickets_are_passed_over_and_admitted_beside_the_line_when_back() {
    let w = world().await;
    let center = w.center().await;
    w.slots(&center, &[(0, 600, 10_000), (28, 600, 10_000)])
        .await;
    let now = reservation::now_ms();
    let id = w.cohort(now / 1000 - 60, 10.0).await.shared.id;
    let cohort = w.state.registry.cohort(id).unwrap();
    let seqs = w.tickets(&cohort, 200).await;
    tick(&cohort, now).await; // the actor starts listening
    let absent_ms = w.state.config.absent_after_s as i64 * 1000;
    assert!(absent_ms > 0);
    // Long after the joins: the even tickets polled a second ago, the odd ones never again.
    let t0 = now + absent_ms + 5_000;
    for seq in seqs.iter().filter(|s| *s % 2 == 0) {
        cohort.shared.status(*seq, t0 - 1_000);
    }
    let waiting_at = |at| cohort.shared.status(150, at).position.unwrap();
    let before = waiting_at(t0 - 1_000);
    let end = run_clock(&cohort, t0, 31).await; // three seconds at 10/s
    let people = cohort.shared.admitted_people();
    assert!(
        (28..=33).contains(&people),
        "about 30 present admitted at 10/s, the absent not counted: {people}"
    );
    let front = cohort.shared.admitted();
    assert!(
        front >= 2 * people - 1,
        "the front passed the absent: {front}"
    );
    let mut last_admitted_even = None;
    for seq in &seqs {
        if seq % 2 == 1 && *seq < front {
            continue; // a poll would bring it back
        }
        let s = cohort.shared.status(*seq, end);
        if seq % 2 == 0 && *seq < front {
            assert_eq!(s.state, TicketState::Admitted, "present ticket {seq}");
            assert!(last_admitted_even < Some(*seq));
            last_admitted_even = Some(*seq);
        } else if *seq >= front {
            assert_eq!(s.state, TicketState::Waiting);
            assert!(s.position.unwrap() <= seq - front + 1);
        }
    }
    // Ticket 150 (even, polling) moved up by the places passed, not by one a person only.
    assert!(waiting_at(end) < before);

    // Ticket 1 comes back: next in line at once, then admitted beside it, ahead of everyone
    // still waiting; nobody waiting is pushed back by it.
    let back = cohort.shared.status(1, end + 50);
    assert_eq!((back.state, back.position), (TicketState::Waiting, Some(1)));
    let behind_before = waiting_at(end + 50);
    let later = run_clock(&cohort, end + 100, 5).await;
    let s = cohort.shared.status(1, later);
    assert_eq!(s.state, TicketState::Admitted, "{s:?}");
    assert!(s.pass_expires_at.is_some());
    assert!(
        waiting_at(later) <= behind_before,
        "a return pushed nobody back"
    );
    let people_after = cohort.shared.admitted_people();

    // After a restart: the passed-over tickets are still passed over (3 still comes back
    // beside the line), 1 still admitted, and the new node passes nobody over yet.
    let w = w.restart().await;
    let cohort = w.state.registry.cohort(id).unwrap();
    assert_eq!(cohort.shared.status(1, later).state, TicketState::Admitted);
    let three = cohort.shared.status(3, later);
    assert_eq!(
        (three.state, three.position),
        (TicketState::Waiting, Some(1))
    );
    let front = cohort.shared.admitted();
    let t1 = run_clock(&cohort, later + 100, 11).await;
    let newly = cohort.shared.admitted_people() - people_after;
    assert!((8..=12).contains(&newly), "{newly}");
    assert_eq!(
        cohort.shared.admitted() - front,
        newly,
        "a node that just started admits the absent too: it cannot tell them"
    );
    assert_eq!(cohort.shared.status(3, t1).state, TicketState::Admitted);
}
