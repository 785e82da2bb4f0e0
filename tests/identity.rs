//! Identity pool tests: the pool started under `#[actix::test]` and sent messages directly, with
//! short latencies and timeouts. They prove the cap and the deadline under overload, the circuit
//! breaker (open, probe, close), the retry under a flaky provider, the abuse limits per identity
//! and per pass, and the HTTP provider against a stub service on loopback.

use actix::{Actor, Addr};
use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::future::{join_all, BoxFuture};
use reservation::actors::identity_pool::{
    BreakerState, HttpProvider, IdentityPool, IdentityProvider, Jitter, PoolLoad, ProviderError,
    SimulatedService, Verify, VerifyError, VerifyForPass, Vouched,
};
use reservation::config::IdentitySettings;
use reservation::domain::identity::IdentityClaim;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Slack allowed past a deadline for scheduling: a correctness bound, not a performance one.
const MARGIN: Duration = Duration::from_millis(500);

fn claim(n: usize) -> IdentityClaim {
    IdentityClaim::parse("김민영", "1965-03-01", &format!("010-1234-{n:04}")).unwrap()
}

fn verify(n: usize) -> Verify {
    Verify {
        claim: claim(n),
        limit_key: format!("identity-{n}"),
    }
}

fn for_pass(n: usize, pass: &str) -> VerifyForPass {
    VerifyForPass {
        claim: claim(n),
        limit_key: format!("identity-{n}"),
        pass_key: pass.into(),
    }
}

/// A provider whose behaviour the test sets, and which counts its calls and how many it had at
/// once.
#[derive(Default)]
struct Script {
    calls: AtomicUsize,
    now: AtomicUsize,
    max: AtomicUsize,
    failing: AtomicBool,
    latency_ms: AtomicU64,
}

struct Scripted(Arc<Script>);

/// Counts a call out of `now` however it ends, answered or abandoned at a timeout.
struct Running(Arc<Script>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl IdentityProvider for Scripted {
    fn verify(&self, _: IdentityClaim) -> BoxFuture<'static, Result<Vouched, ProviderError>> {
        let s = self.0.clone();
        s.calls.fetch_add(1, Ordering::SeqCst);
        let n = s.now.fetch_add(1, Ordering::SeqCst) + 1;
        s.max.fetch_max(n, Ordering::SeqCst);
        let running = Running(s.clone());
        let fail = s.failing.load(Ordering::SeqCst);
        let latency = Duration::from_millis(s.latency_ms.load(Ordering::SeqCst));
        Box::pin(async move {
            tokio::time::sleep(latency).await;
            drop(running);
            if fail {
                return Err(ProviderError::Failed("scripted failure".into()));
            }
            Ok(Vouched {
                person_id: "p".into(),
            })
        })
    }
}

fn scripted(
    latency_ms: u64,
    settings: IdentitySettings,
) -> (Arc<Script>, Addr<IdentityPool>, Arc<PoolLoad>) {
    let script = Arc::new(Script::default());
    script.latency_ms.store(latency_ms, Ordering::SeqCst);
    let pool = IdentityPool::new(Arc::new(Scripted(script.clone())), settings);
    let load = pool.load();
    (script, pool.start(), load)
}

/// Polls `cond` until it holds or `limit` passes; says whether it held.
async fn wait_until(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

fn breaker_settings() -> IdentitySettings {
    IdentitySettings {
        timeout_ms: 200,
        deadline_ms: 500,
        retries: 0,
        breaker_failures: 3,
        breaker_failure_ratio: 1.0,
        breaker_open_ms: 1_500,
        ..IdentitySettings::default()
    }
}

/// Sends `n` failing requests one after another; each must be answered busy after a call.
async fn fail_n_times(pool: &Addr<IdentityPool>, n: usize) {
    for i in 0..n {
        let a = pool.send(verify(9_000 + i)).await.unwrap();
        assert_eq!(a, Err(VerifyError::Busy { retry_after: 2 }));
    }
}

#[actix::test]
async fn under_tenfold_overload_the_pool_keeps_its_cap_and_answers_every_request_within_its_deadline(
) {
    let settings = IdentitySettings {
        max_in_flight: 8,
        queue_ms: 50,
        max_waiting: 16,
        timeout_ms: 200,
        deadline_ms: 300,
        ..IdentitySettings::default()
    };
    let deadline = Duration::from_millis(settings.deadline_ms);
    let queue = Duration::from_millis(settings.queue_ms);
    // 8 places, 20 ms a call: 400 checks a second. Offered: 20 every 5 ms, 4,000 a second.
    let (script, pool, load) = scripted(20, settings);

    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (load, sampling) = (load.clone(), sampling.clone());
        actix::spawn(async move {
            let (mut in_flight, mut waiting) = (0, 0);
            while sampling.load(Ordering::SeqCst) {
                in_flight = in_flight.max(load.in_flight.load(Ordering::SeqCst));
                waiting = waiting.max(load.waiting.load(Ordering::SeqCst));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (in_flight, waiting)
        })
    };
    let mut requests = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(5));
    for round in 0..100 {
        every.tick().await;
        for i in 0..20 {
            let pool = pool.clone();
            requests.push(actix::spawn(async move {
                let start = Instant::now();
                let answer = pool.send(verify(round * 20 + i)).await.unwrap();
                (answer, start.elapsed())
            }));
        }
    }
    let answers: Vec<_> = join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    sampling.store(false, Ordering::SeqCst);
    let (max_in_flight, max_waiting) = sampler.await.unwrap();

    let ok = answers.iter().filter(|(a, _)| a.is_ok()).count();
    let busy: Vec<Duration> = answers
        .iter()
        .filter(|(a, _)| matches!(a, Err(VerifyError::Busy { .. })))
        .map(|(_, t)| *t)
        .collect();
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap();
    println!(
        "overload: {ok} vouched, {} busy ({} after waiting), slowest answer {slowest:?}, \
         provider at most {} at once, at most {max_waiting} waiting",
        busy.len(),
        load.queue_timeouts.load(Ordering::SeqCst),
        script.max.load(Ordering::SeqCst)
    );
    assert_eq!(ok + busy.len(), 2_000, "every answer is vouched or busy");
    assert!(
        script.max.load(Ordering::SeqCst) <= 8,
        "the provider saw more than the cap"
    );
    assert_eq!(script.max.load(Ordering::SeqCst), 8, "the cap is used");
    assert!(max_in_flight <= 8, "in_flight published {max_in_flight}");
    assert!(max_waiting <= 16, "waiting published {max_waiting}");
    assert!(
        max_waiting > 0,
        "no request ever waited: the bounded wait was not exercised"
    );
    assert!(slowest <= deadline + MARGIN, "an answer took {slowest:?}");
    let slowest_busy = busy.iter().max().copied().unwrap_or_default();
    assert!(
        slowest_busy <= queue + MARGIN,
        "a busy answer took {slowest_busy:?}, past the bounded wait"
    );
    assert!(
        ok >= 100,
        "only {ok} served: the pool did not work at its capacity"
    );
    assert!(busy.len() >= 1_000, "only {} turned away", busy.len());
    assert_eq!(
        script.calls.load(Ordering::SeqCst),
        ok,
        "one call per vouched"
    );
    assert_eq!(load.busy.load(Ordering::SeqCst), busy.len() as u64);
    assert_eq!(
        (
            load.in_flight.load(Ordering::SeqCst),
            load.waiting.load(Ordering::SeqCst)
        ),
        (0, 0)
    );
}

#[actix::test]
async fn after_consecutive_failures_the_breaker_answers_busy_at_once_without_calling_the_provider()
{
    let (script, pool, load) = scripted(5, breaker_settings());
    script.failing.store(true, Ordering::SeqCst);
    fail_n_times(&pool, 3).await;
    assert_eq!(script.calls.load(Ordering::SeqCst), 3);
    assert_eq!(load.breaker(), BreakerState::Open);

    let start = Instant::now();
    let answers = join_all((0..20).map(|n| pool.send(verify(n)))).await;
    let took = start.elapsed();
    for a in answers {
        let retry_after = match a.unwrap() {
            Err(VerifyError::Busy { retry_after }) => retry_after,
            other => panic!("expected busy, got {other:?}"),
        };
        assert!(
            (1..=2).contains(&retry_after),
            "retry_after {retry_after} is not the open time left (1.5 s)"
        );
    }
    assert!(took < MARGIN, "fast failure took {took:?}");
    assert_eq!(
        script.calls.load(Ordering::SeqCst),
        3,
        "the provider was called while open"
    );
    assert_eq!(load.breaker_opened.load(Ordering::SeqCst), 1);
    assert_eq!(load.breaker_rejected.load(Ordering::SeqCst), 20);
}

#[actix::test]
async fn after_its_open_period_the_breaker_lets_one_probe_through_and_closes_when_it_succeeds() {
    let (script, pool, load) = scripted(5, breaker_settings());
    script.failing.store(true, Ordering::SeqCst);
    fail_n_times(&pool, 3).await;
    let opened = Instant::now();
    script.failing.store(false, Ordering::SeqCst);
    script.latency_ms.store(100, Ordering::SeqCst);

    assert!(
        wait_until(Duration::from_secs(5), || load.breaker()
            == BreakerState::HalfOpen)
        .await,
        "the breaker never became half-open"
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(1_400),
        "half-open after {:?}, before the open period ended",
        opened.elapsed()
    );
    let answers: Vec<_> = join_all((0..5).map(|n| pool.send(verify(n))))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ok = answers.iter().filter(|a| a.is_ok()).count();
    let busy = answers
        .iter()
        .filter(|a| **a == Err(VerifyError::Busy { retry_after: 1 }))
        .count();
    assert_eq!(
        (ok, busy),
        (1, 4),
        "one probe, the rest turned away: {answers:?}"
    );
    assert_eq!(
        script.calls.load(Ordering::SeqCst),
        4,
        "exactly one probe call"
    );
    assert_eq!(load.breaker(), BreakerState::Closed);

    let answers = join_all((10..15).map(|n| pool.send(verify(n)))).await;
    assert!(
        answers.iter().all(|a| matches!(a, Ok(Ok(_)))),
        "{answers:?}"
    );
    assert_eq!(script.calls.load(Ordering::SeqCst), 9);
}

#[actix::test]
async fn a_failed_probe_opens_the_breaker_again() {
    let (script, pool, load) = scripted(5, breaker_settings());
    script.failing.store(true, Ordering::SeqCst);
    fail_n_times(&pool, 3).await;
    assert!(
        wait_until(Duration::from_secs(5), || load.breaker()
            == BreakerState::HalfOpen)
        .await
    );

    let probe = pool.send(verify(1)).await.unwrap();
    assert_eq!(probe, Err(VerifyError::Busy { retry_after: 2 }));
    assert_eq!(script.calls.load(Ordering::SeqCst), 4);
    assert_eq!(load.breaker(), BreakerState::Open);
    let next = pool.send(verify(2)).await.unwrap();
    assert!(matches!(next, Err(VerifyError::Busy { retry_after }) if retry_after >= 1));
    assert_eq!(
        script.calls.load(Ordering::SeqCst),
        4,
        "no call while open again"
    );
    assert_eq!(load.breaker_opened.load(Ordering::SeqCst), 2);
}

#[actix::test]
async fn with_30_percent_failures_and_10_percent_hangs_requests_end_within_their_deadline_and_most_succeed(
) {
    let settings = IdentitySettings {
        timeout_ms: 100,
        deadline_ms: 400,
        retry_backoff_ms: 20,
        ..IdentitySettings::default()
    };
    let deadline = Duration::from_millis(settings.deadline_ms);
    let provider = SimulatedService {
        latency_ms: 5,
        jitter_ms: 5,
        jitter: Jitter::Exponential,
        failure_rate: 0.3,
        hang_rate: 0.1,
    };
    let pool = IdentityPool::new(Arc::new(provider), settings);
    let load = pool.load();
    let pool = pool.start();

    // 20 citizens, 20 checks each, one after another: steady load well under the cap.
    let clients = (0..20).map(|c| {
        let pool = pool.clone();
        async move {
            let mut seen = Vec::new();
            for i in 0..20 {
                let start = Instant::now();
                let answer = pool.send(verify(c * 20 + i)).await.unwrap();
                seen.push((answer, start.elapsed()));
            }
            seen
        }
    });
    let answers: Vec<_> = join_all(clients).await.into_iter().flatten().collect();
    let total = answers.len();
    let ok = answers.iter().filter(|(a, _)| a.is_ok()).count();
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap();
    let ratio = ok as f64 / total as f64;
    println!(
        "flaky provider: {ok}/{total} vouched (success ratio {ratio:.3}), {} retries, {} timeouts, \
         slowest answer {slowest:?}",
        load.retries.load(Ordering::SeqCst),
        load.timeouts.load(Ordering::SeqCst),
    );
    for (a, t) in &answers {
        assert!(
            matches!(a, Ok(_) | Err(VerifyError::Busy { .. })),
            "unexpected answer {a:?}"
        );
        assert!(*t <= deadline + MARGIN, "an answer took {t:?}");
    }
    assert!(
        ratio >= 0.7,
        "success ratio {ratio:.3}: the retry did not help"
    );
    assert!(load.retries.load(Ordering::SeqCst) > 0, "no retry was made");
    assert!(
        load.timeouts.load(Ordering::SeqCst) > 0,
        "no hang was abandoned"
    );
    assert_eq!(
        load.breaker_opened.load(Ordering::SeqCst),
        0,
        "a degraded provider that still answers most calls must not trip the breaker"
    );
}

#[actix::test]
async fn one_pass_may_check_at_most_five_identities_in_ten_minutes() {
    let (script, pool, load) = scripted(1, IdentitySettings::default());
    for n in 0..5 {
        let a = pool.send(for_pass(n, "1:42")).await.unwrap();
        assert!(a.is_ok(), "check {n}: {a:?}");
    }
    let sixth = pool.send(for_pass(5, "1:42")).await.unwrap();
    assert!(
        matches!(sixth, Err(VerifyError::RateLimited { retry_after }) if retry_after > 500),
        "{sixth:?}"
    );
    assert_eq!(
        script.calls.load(Ordering::SeqCst),
        5,
        "a refused check calls no one"
    );
    let other_pass = pool.send(for_pass(5, "1:43")).await.unwrap();
    assert!(
        other_pass.is_ok(),
        "another pass is not limited: {other_pass:?}"
    );
    assert_eq!(load.rate_limited.load(Ordering::SeqCst), 1);
}

#[actix::test]
async fn one_identity_may_be_checked_at_most_five_times_whatever_the_pass() {
    let (script, pool, _) = scripted(1, IdentitySettings::default());
    for p in 0..5 {
        let a = pool.send(for_pass(7, &format!("1:{p}"))).await.unwrap();
        assert!(a.is_ok());
    }
    let sixth = pool.send(for_pass(7, "1:99")).await.unwrap();
    assert!(matches!(sixth, Err(VerifyError::RateLimited { retry_after }) if retry_after > 500));
    // The message without a pass counts by the same identity.
    let plain = pool.send(verify(7)).await.unwrap();
    assert!(matches!(plain, Err(VerifyError::RateLimited { .. })));
    assert_eq!(script.calls.load(Ordering::SeqCst), 5);
}

#[actix::test]
async fn busy_answers_do_not_use_up_a_citizens_checks() {
    let settings = IdentitySettings {
        max_in_flight: 1,
        queue_ms: 0,
        ..IdentitySettings::default()
    };
    let (script, pool, load) = scripted(300, settings);
    let occupying = pool.send(verify(1));
    let occupying = actix::spawn(occupying);
    assert!(
        wait_until(Duration::from_secs(2), || load
            .in_flight
            .load(Ordering::SeqCst)
            == 1)
        .await
    );
    for _ in 0..10 {
        let a = pool.send(for_pass(2, "1:1")).await.unwrap();
        assert_eq!(a, Err(VerifyError::Busy { retry_after: 1 }));
    }
    assert!(occupying.await.unwrap().unwrap().is_ok());
    script.latency_ms.store(1, Ordering::SeqCst);
    for _ in 0..5 {
        let a = pool.send(for_pass(2, "1:1")).await.unwrap();
        assert!(a.is_ok(), "{a:?}");
    }
    let sixth = pool.send(for_pass(2, "1:1")).await.unwrap();
    assert!(matches!(sixth, Err(VerifyError::RateLimited { .. })));
}

/// What the stub service saw: request bodies by phone, in order.
type Seen = Arc<Mutex<HashMap<String, Vec<Value>>>>;

/// A stand-in for the identity service: answers by the phone number's last four digits.
async fn stub(seen: web::Data<Seen>, body: web::Json<Value>) -> HttpResponse {
    let phone = body["phone"].as_str().unwrap_or_default().to_string();
    seen.lock()
        .unwrap()
        .entry(phone.clone())
        .or_default()
        .push(body.into_inner());
    match &phone[phone.len().saturating_sub(4)..] {
        "0404" => HttpResponse::NotFound().finish(),
        "0422" => HttpResponse::UnprocessableEntity().finish(),
        "0500" => HttpResponse::InternalServerError().finish(),
        "0200" => HttpResponse::Ok().body("not json"),
        "0999" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            HttpResponse::Ok().json(json!({"person_id": "late"}))
        }
        _ => HttpResponse::Ok().json(json!({"person_id": format!("P-{phone}")})),
    }
}

#[actix::test]
async fn the_http_provider_vouches_rejects_and_fails_as_the_service_answers() {
    let seen: Seen = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let data = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/verify", web::post().to(stub))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let stop = server.handle();
    actix::spawn(server);

    let settings = IdentitySettings {
        timeout_ms: 300,
        deadline_ms: 1_000,
        retry_backoff_ms: 20,
        ..IdentitySettings::default()
    };
    let deadline = Duration::from_millis(settings.deadline_ms);
    let url = format!("http://127.0.0.1:{port}/verify");
    // As `provider_from_settings` sets it, the client's own limit is a backstop later than the
    // pool's timeout: the pool decides when a call is abandoned.
    let provider: Arc<dyn IdentityProvider> =
        Arc::new(HttpProvider::new(&url, Duration::from_secs(2), 8).unwrap());
    let pool = IdentityPool::new(provider.clone(), settings);
    let load = pool.load();
    let pool = pool.start();

    let vouched = pool.send(verify(1)).await.unwrap().unwrap();
    assert_eq!(vouched.person_id, "P-01012340001");
    assert_eq!(
        seen.lock().unwrap()["01012340001"],
        vec![json!({"name": "김민영", "birth_date": "1965-03-01", "phone": "01012340001"})],
        "the request carries exactly name, birth_date and phone"
    );
    assert_eq!(
        pool.send(verify(404)).await.unwrap(),
        Err(VerifyError::Rejected)
    );
    assert_eq!(
        pool.send(verify(422)).await.unwrap(),
        Err(VerifyError::Rejected)
    );

    let server_error = pool.send(verify(500)).await.unwrap();
    assert_eq!(server_error, Err(VerifyError::Busy { retry_after: 2 }));
    assert_eq!(
        seen.lock().unwrap()["01012340500"].len(),
        2,
        "one retry of a 500"
    );
    assert!(matches!(
        provider.verify(claim(500)).await,
        Err(ProviderError::Failed(_))
    ));
    assert!(
        matches!(
            provider.verify(claim(200)).await,
            Err(ProviderError::Failed(_))
        ),
        "a 200 without a person_id is a failure, not a vouch"
    );

    let start = Instant::now();
    let hung = pool.send(verify(999)).await.unwrap();
    assert_eq!(hung, Err(VerifyError::Busy { retry_after: 2 }));
    assert!(
        start.elapsed() <= deadline + MARGIN,
        "took {:?}",
        start.elapsed()
    );
    assert!(load.timeouts.load(Ordering::SeqCst) >= 1);
    assert_eq!(load.vouched.load(Ordering::SeqCst), 1);
    assert_eq!(load.rejected.load(Ordering::SeqCst), 2);
    assert_eq!(load.failed.load(Ordering::SeqCst), 2);
    stop.stop(false).await;
}

#[actix::test]
async fn the_http_provider_fails_when_the_service_is_unreachable_and_refuses_urls_it_cannot_call() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let provider = HttpProvider::new(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_millis(300),
        2,
    )
    .unwrap();
    assert!(matches!(
        provider.verify(claim(1)).await,
        Err(ProviderError::Failed(_))
    ));
    assert!(HttpProvider::new("https://idp.example/verify", Duration::from_secs(1), 2).is_err());
    assert!(HttpProvider::new("not a url", Duration::from_secs(1), 2).is_err());
}
