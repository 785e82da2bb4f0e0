//! `IdentityPool`: the gate in front of the slow external identity provider, and the providers
//! it can call. The pool owns everything that keeps a national rush from breaking the checks:
//!
//! - a cap on the calls in flight, with a short bounded wait for a free place (at most
//!   `queue_ms`, at most `max_waiting` waiting): a request that cannot start in time is answered
//!   busy, never parked without bound;
//! - a deadline per request (`deadline_ms` from arrival) that bounds the wait, the calls and the
//!   retry together, and a timeout per call (`timeout_ms`);
//! - one retry of a transient failure (a failed or timed-out call) after a jittered backoff, only
//!   while the deadline leaves room for it;
//! - a circuit breaker: after `breaker_failures` consecutive failures, or a failure ratio of
//!   `breaker_failure_ratio` over the last `breaker_window_s` (once `breaker_min_calls` were
//!   seen), it opens for `breaker_open_ms`, during which requests are answered busy at once with
//!   `retry_after` = the open time left; then one probe call goes through (half-open), and its
//!   success closes the breaker, its failure opens it again;
//! - abuse limits: checks of one identity, and checks made with one pass, per window.
//!
//! Its load is published in `PoolLoad` for the waiting rooms' backpressure and `/metrics`.
//!
//! Providers: `SimulatedService` (latency = a base plus exponential or uniform jitter, a share of
//! failures, a share of calls that hang) and `HttpProvider`, a client for a real service:
//!
//! ```text
//! POST {IDENTITY_PROVIDER_URL}
//! Content-Type: application/json
//! {"name": "김민영", "birth_date": "1965-03-01", "phone": "01012345678"}
//!
//! 200 {"person_id": "<stable identifier of the person>"}   vouched
//! 404 or 422                                              rejected (no such person, no match)
//! anything else, an unreadable 200, no answer in time     failure (retried once, then busy)
//! ```

// The jitter's shape is a setting; re-exported for the pool's users.
use crate::config::IdentitySettings;
pub use crate::config::Jitter;
use crate::domain::identity::IdentityClaim;
use actix::prelude::*;
use futures_util::future::BoxFuture;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// What the provider vouches for: a stable identifier of the person (Korea's "CI").
#[derive(Clone, PartialEq, Eq)]
pub struct Vouched {
    pub person_id: String,
}

impl std::fmt::Debug for Vouched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vouched { .. }")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// The provider says no such subscriber, or the details do not match.
    Rejected,
    /// The call failed; a later one may succeed. The text is logged: no personal data in it.
    Failed(String),
}

/// An identity-verification service.
pub trait IdentityProvider: Send + Sync + 'static {
    fn verify(&self, claim: IdentityClaim) -> BoxFuture<'static, Result<Vouched, ProviderError>>;
}

/// The provider the settings describe: the HTTP client when `provider_url` is set, else the
/// simulated service.
pub fn provider_from_settings(
    settings: &IdentitySettings,
) -> Result<Arc<dyn IdentityProvider>, String> {
    match &settings.provider_url {
        Some(url) => {
            // The pool abandons a call at its timeout, and the client then stops it; the
            // client's own limit is a backstop, so it is set a little later.
            let backstop = Duration::from_millis(settings.timeout_ms) + Duration::from_secs(1);
            let provider = HttpProvider::new(url, backstop, settings.max_in_flight)?;
            log::info!("identity checks go to the external HTTP provider");
            Ok(Arc::new(provider))
        }
        None => Ok(Arc::new(SimulatedService::from_settings(settings))),
    }
}

/// The simulated provider: waits a latency drawn from `latency_ms` plus jitter, hangs on a share
/// `hang_rate` of calls (never answers), fails a share `failure_rate`, and refuses every phone
/// number beginning `010-0000-`.
#[derive(Debug, Clone)]
pub struct SimulatedService {
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub jitter: Jitter,
    pub failure_rate: f64,
    pub hang_rate: f64,
}

impl SimulatedService {
    pub fn from_settings(s: &IdentitySettings) -> Self {
        Self {
            latency_ms: s.latency_ms,
            jitter_ms: s.jitter_ms,
            jitter: s.jitter,
            failure_rate: s.failure_rate,
            hang_rate: s.hang_rate,
        }
    }

    /// One latency drawn from the configured distribution.
    pub fn sample_latency(&self, rng: &mut impl Rng) -> Duration {
        let base = Duration::from_millis(self.latency_ms);
        if self.jitter_ms == 0 {
            return base;
        }
        let mean = self.jitter_ms as f64;
        let extra_ms = match self.jitter {
            // Inverse transform; 1 - u is in (0, 1], so the logarithm is finite. The tail is cut
            // at 50 means so that one draw cannot stall a test or overflow a Duration.
            Jitter::Exponential => (-(1.0 - rng.gen::<f64>()).ln() * mean).min(mean * 50.0),
            Jitter::Uniform => rng.gen_range(0.0..=mean),
        };
        base + Duration::from_secs_f64(extra_ms.max(0.0) / 1000.0)
    }
}

impl IdentityProvider for SimulatedService {
    fn verify(&self, claim: IdentityClaim) -> BoxFuture<'static, Result<Vouched, ProviderError>> {
        let mut rng = rand::thread_rng();
        let latency = self.sample_latency(&mut rng);
        let draw: f64 = rng.gen();
        let hang = draw < self.hang_rate;
        let fail = !hang && draw < self.hang_rate + self.failure_rate;
        Box::pin(async move {
            if hang {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(latency).await;
            if fail {
                return Err(ProviderError::Failed("simulated provider failure".into()));
            }
            if claim.phone.starts_with("0100000") {
                return Err(ProviderError::Rejected);
            }
            let digest = Sha256::digest(format!("person|{}", claim.canonical()).as_bytes());
            let person_id = digest.iter().map(|b| format!("{b:02x}")).collect();
            Ok(Vouched { person_id })
        })
    }
}

/// The simulated provider with a fixed latency, no jitter and no hangs: the shape callers
/// written before `SimulatedService` construct.
pub struct SimulatedProvider {
    pub latency_ms: u64,
    pub failure_rate: f64,
}

impl IdentityProvider for SimulatedProvider {
    fn verify(&self, claim: IdentityClaim) -> BoxFuture<'static, Result<Vouched, ProviderError>> {
        SimulatedService {
            latency_ms: self.latency_ms,
            jitter_ms: 0,
            jitter: Jitter::Exponential,
            failure_rate: self.failure_rate,
            hang_rate: 0.0,
        }
        .verify(claim)
    }
}

/// The request body of the HTTP provider.
#[derive(Serialize)]
struct HttpClaim {
    name: String,
    /// `YYYY-MM-DD`
    birth_date: String,
    /// Digits only, e.g. `01012345678`.
    phone: String,
}

/// The body of a `200` from the HTTP provider.
#[derive(Deserialize)]
struct HttpVouched {
    person_id: String,
}

struct HttpJob {
    claim: HttpClaim,
    reply: oneshot::Sender<Result<Vouched, ProviderError>>,
}

/// Client of a real identity service over HTTP (see the module doc for the exchange).
///
/// `awc` is single-threaded (its futures are not `Send`), while the pool needs `Send` futures;
/// so the client lives on a thread of its own with its own actix system, and calls travel to it
/// over a bounded channel. Dropping the provider ends the thread.
pub struct HttpProvider {
    jobs: mpsc::Sender<HttpJob>,
}

/// Largest answer body read from the provider.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

impl HttpProvider {
    /// A client for `url` (plain `http://`), abandoning a call after `timeout`, with at most
    /// `max_connections` connections open.
    pub fn new(url: &str, timeout: Duration, max_connections: usize) -> Result<Self, String> {
        let uri: awc::http::Uri = url
            .parse()
            .map_err(|_| "IDENTITY_PROVIDER_URL is not a URL".to_string())?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(
                "IDENTITY_PROVIDER_URL must be an http:// URL with a host (this build has no TLS)"
                    .into(),
            );
        }
        let max_connections = max_connections.max(1);
        let (jobs, rx) = mpsc::channel(max_connections * 2);
        let url = url.to_string();
        std::thread::Builder::new()
            .name("identity-http".into())
            .spawn(move || {
                System::new().block_on(serve_http_jobs(rx, url, timeout, max_connections));
            })
            .map_err(|e| format!("cannot start the identity HTTP client: {e}"))?;
        Ok(Self { jobs })
    }
}

impl IdentityProvider for HttpProvider {
    fn verify(&self, claim: IdentityClaim) -> BoxFuture<'static, Result<Vouched, ProviderError>> {
        let (reply, answer) = oneshot::channel();
        let claim = HttpClaim {
            name: claim.name,
            birth_date: claim.birth_date.to_string(),
            phone: claim.phone,
        };
        let sent = self.jobs.try_send(HttpJob { claim, reply });
        Box::pin(async move {
            sent.map_err(|_| ProviderError::Failed("identity HTTP client saturated".into()))?;
            answer
                .await
                .map_err(|_| ProviderError::Failed("identity HTTP client stopped".into()))?
        })
    }
}

async fn serve_http_jobs(
    mut jobs: mpsc::Receiver<HttpJob>,
    url: String,
    timeout: Duration,
    max_connections: usize,
) {
    let client = awc::Client::builder()
        .connector(
            awc::Connector::new()
                .limit(max_connections)
                .timeout(timeout),
        )
        .timeout(timeout)
        // A redirect would carry personal data to a host nobody configured.
        .disable_redirects()
        .finish();
    let url: Arc<str> = url.into();
    while let Some(job) = jobs.recv().await {
        let client = client.clone();
        let url = url.clone();
        actix::spawn(async move {
            let HttpJob { claim, mut reply } = job;
            let outcome = tokio::select! {
                outcome = tokio::time::timeout(timeout, http_call(&client, &url, &claim)) => outcome,
                // The pool gave up on this call (its timeout or deadline): stop it too.
                _ = reply.closed() => return,
            };
            let outcome = outcome.unwrap_or_else(|_| {
                Err(ProviderError::Failed(
                    "identity provider did not answer in time".into(),
                ))
            });
            let _ = reply.send(outcome);
        });
    }
}

async fn http_call(
    client: &awc::Client,
    url: &str,
    claim: &HttpClaim,
) -> Result<Vouched, ProviderError> {
    let mut res = client
        .post(url)
        .send_json(claim)
        .await
        .map_err(|e| ProviderError::Failed(format!("identity provider unreachable: {e}")))?;
    match res.status().as_u16() {
        200 => {
            let body: HttpVouched = res.json().limit(MAX_ANSWER_BYTES).await.map_err(|_| {
                ProviderError::Failed("identity provider answered 200 without a person_id".into())
            })?;
            if body.person_id.trim().is_empty() {
                return Err(ProviderError::Failed(
                    "identity provider answered an empty person_id".into(),
                ));
            }
            Ok(Vouched {
                person_id: body.person_id,
            })
        }
        404 | 422 => Err(ProviderError::Rejected),
        status => Err(ProviderError::Failed(format!(
            "identity provider answered {status}"
        ))),
    }
}

/// The pool's load and outcomes, read without the mailbox.
#[derive(Debug, Default)]
pub struct PoolLoad {
    /// Requests holding a place in the pool (calling the provider or backing off to retry).
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    /// Provider calls made, retries included.
    pub calls: AtomicU64,
    pub vouched: AtomicU64,
    pub rejected: AtomicU64,
    /// Requests answered busy because the provider failed or timed out (after any retry).
    pub failed: AtomicU64,
    /// Requests answered busy without a provider answer: pool full, wait too long, breaker open.
    pub busy: AtomicU64,
    /// Requests refused by the per-identity or the per-pass limit.
    pub rate_limited: AtomicU64,
    /// Requests waiting for a place in the pool now.
    pub waiting: AtomicU64,
    pub max_waiting: AtomicU64,
    /// Requests that waited for a place and did not get one in time (counted in `busy` too).
    pub queue_timeouts: AtomicU64,
    /// Provider calls abandoned at their timeout or the request's deadline.
    pub timeouts: AtomicU64,
    /// Second calls made after a transient failure.
    pub retries: AtomicU64,
    /// The breaker: 0 closed, 1 open, 2 half-open (see `BreakerState`).
    pub breaker_state: AtomicU64,
    /// Times the breaker opened.
    pub breaker_opened: AtomicU64,
    /// Requests answered busy at once because the breaker was open or probing (counted in
    /// `busy` too).
    pub breaker_rejected: AtomicU64,
    /// How long provider calls took (abandoned ones at their timeout).
    pub call_latency: crate::telemetry::Histogram,
}

impl PoolLoad {
    pub fn is_saturated(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) >= self.max_in_flight.load(Ordering::Relaxed)
    }

    pub fn breaker(&self) -> BreakerState {
        match self.breaker_state.load(Ordering::Relaxed) {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// Pool full or provider failing: try again after this many seconds.
    Busy {
        retry_after: u64,
    },
    /// This identity, or this pass, was checked too often: try again after this many seconds.
    RateLimited {
        retry_after: u64,
    },
    Rejected,
}

/// Check a claimed identity with the provider (limited per identity only).
#[derive(Message)]
#[rtype(result = "Result<Vouched, VerifyError>")]
pub struct Verify {
    pub claim: IdentityClaim,
    /// Keyed hash of the claim: what the per-identity limit counts by.
    pub limit_key: String,
}

/// Check a claimed identity with the provider for the holder of a pass: limited per identity
/// and per pass.
#[derive(Message)]
#[rtype(result = "Result<Vouched, VerifyError>")]
pub struct VerifyForPass {
    pub claim: IdentityClaim,
    /// Keyed hash of the claim: what the per-identity limit counts by.
    pub limit_key: String,
    /// Names the pass (e.g. `"{cohort_id}:{seq}"`, never the token): what the per-pass limit
    /// counts by.
    pub pass_key: String,
}

/// A waiting request got a place: may it call now? Counts its attempt if so, and says whether
/// the call is the breaker's probe.
#[derive(Message)]
#[rtype(result = "Result<bool, VerifyError>")]
struct Begin {
    limit_key: String,
    pass_key: Option<String>,
}

/// A provider call ended; `failed` if it failed or timed out (a refusal is an answer).
#[derive(Message)]
#[rtype(result = "()")]
struct CallEnded {
    failed: bool,
    probe: bool,
}

/// Recent attempts per key, oldest first, at most `limit` per `window`.
struct AttemptLimit {
    limit: usize,
    window: Duration,
    seen: HashMap<String, VecDeque<Instant>>,
}

impl AttemptLimit {
    fn new(limit: usize, window_s: u64) -> Self {
        Self {
            limit,
            window: Duration::from_secs(window_s),
            seen: HashMap::new(),
        }
    }

    /// How long until `key` may be tried again, if it may not now.
    fn wait(&self, key: &str, now: Instant) -> Option<u64> {
        if self.limit == 0 {
            return Some(self.window.as_secs().max(1));
        }
        let seen = self.seen.get(key)?;
        // Oldest first, so the attempts still inside the window are a suffix.
        let live = seen
            .iter()
            .filter(|t| now.duration_since(**t) < self.window)
            .count();
        if live < self.limit {
            return None;
        }
        // The attempt whose expiry frees a place is the oldest among the last `limit`.
        let freeing = seen.get(seen.len() - self.limit)?;
        let wait = self.window.saturating_sub(now.duration_since(*freeing));
        Some(wait.as_secs().max(1))
    }

    fn record(&mut self, key: &str, now: Instant) {
        let window = self.window;
        let seen = self.seen.entry(key.to_string()).or_default();
        while seen
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            seen.pop_front();
        }
        seen.push_back(now);
    }

    fn forget_old(&mut self, now: Instant) {
        let window = self.window;
        self.seen
            .retain(|_, seen| seen.back().is_some_and(|t| now.duration_since(*t) < window));
    }

    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[derive(Debug, Clone, Copy)]
enum Breaking {
    Closed,
    Open {
        until: Instant,
    },
    /// `probe_since`: when the one probe call started, if one is out.
    HalfOpen {
        probe_since: Option<Instant>,
    },
}

/// What the breaker lets a request do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Call,
    Probe,
    Refuse { retry_after: u64 },
}

/// Outcomes kept at most for the failure ratio, whatever the window.
const MAX_RECENT: usize = 10_000;

struct Breaker {
    failures_to_open: u32,
    failure_ratio: f64,
    window: Duration,
    min_calls: usize,
    open_for: Duration,
    /// A probe that has not reported after this long is presumed lost and another may go.
    probe_patience: Duration,
    state: Breaking,
    consecutive: u32,
    /// Outcomes of recent calls (`true` = failed), oldest first.
    recent: VecDeque<(Instant, bool)>,
    recent_failures: usize,
}

impl Breaker {
    fn new(s: &IdentitySettings) -> Self {
        Self {
            failures_to_open: s.breaker_failures.max(1),
            failure_ratio: s.breaker_failure_ratio,
            window: Duration::from_secs(s.breaker_window_s.max(1)),
            min_calls: s.breaker_min_calls.max(1),
            open_for: Duration::from_millis(s.breaker_open_ms.max(1)),
            probe_patience: Duration::from_millis(s.deadline_ms.max(1)),
            state: Breaking::Closed,
            consecutive: 0,
            recent: VecDeque::new(),
            recent_failures: 0,
        }
    }

    fn state(&mut self, now: Instant) -> BreakerState {
        if let Breaking::Open { until } = self.state {
            if now >= until {
                self.state = Breaking::HalfOpen { probe_since: None };
            }
        }
        match self.state {
            Breaking::Closed => BreakerState::Closed,
            Breaking::Open { .. } => BreakerState::Open,
            Breaking::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whole seconds the breaker stays open, if it is open.
    fn open_left(&mut self, now: Instant) -> Option<u64> {
        match (self.state(now), self.state) {
            (BreakerState::Open, Breaking::Open { until }) => Some(whole_seconds(until - now)),
            _ => None,
        }
    }

    /// Lets a call go, as a plain call or as the half-open probe, or refuses it.
    fn admit(&mut self, now: Instant) -> Admission {
        self.state(now);
        match self.state {
            Breaking::Closed => Admission::Call,
            Breaking::Open { until } => Admission::Refuse {
                retry_after: whole_seconds(until - now),
            },
            Breaking::HalfOpen {
                probe_since: Some(since),
            } if now.duration_since(since) < self.probe_patience => {
                Admission::Refuse { retry_after: 1 }
            }
            Breaking::HalfOpen { .. } => {
                self.state = Breaking::HalfOpen {
                    probe_since: Some(now),
                };
                Admission::Probe
            }
        }
    }

    /// Takes the outcome of a call; says whether the breaker opened because of it.
    fn record(&mut self, failed: bool, probe: bool, now: Instant) -> bool {
        match self.state {
            Breaking::HalfOpen { .. } if probe => {
                if failed {
                    self.open(now);
                    return true;
                }
                self.close();
                false
            }
            Breaking::Closed if !probe => {
                self.consecutive = if failed { self.consecutive + 1 } else { 0 };
                self.recent.push_back((now, failed));
                self.recent_failures += usize::from(failed);
                while self.recent.len() > MAX_RECENT
                    || self
                        .recent
                        .front()
                        .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
                {
                    if let Some((_, f)) = self.recent.pop_front() {
                        self.recent_failures -= usize::from(f);
                    }
                }
                let n = self.recent.len();
                let ratio_tripped = n >= self.min_calls
                    && self.recent_failures as f64 >= self.failure_ratio * n as f64;
                if self.consecutive >= self.failures_to_open || ratio_tripped {
                    self.open(now);
                    return true;
                }
                false
            }
            // Calls that began before the breaker changed state say nothing about it now.
            _ => false,
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = Breaking::Open {
            until: now + self.open_for,
        };
        self.consecutive = 0;
        self.recent.clear();
        self.recent_failures = 0;
    }

    fn close(&mut self) {
        self.state = Breaking::Closed;
        self.consecutive = 0;
        self.recent.clear();
        self.recent_failures = 0;
    }
}

/// A duration rounded up to whole seconds, at least 1: what `Retry-After` can say.
fn whole_seconds(d: Duration) -> u64 {
    let ms = d.as_millis();
    u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX).max(1)
}

pub struct IdentityPool {
    provider: Arc<dyn IdentityProvider>,
    settings: IdentitySettings,
    load: Arc<PoolLoad>,
    /// Places for calls in flight; its waiters are served first come, first served.
    places: Arc<Semaphore>,
    breaker: Breaker,
    per_identity: AttemptLimit,
    per_pass: AttemptLimit,
}

/// Keys tracked at most by each abuse limit; past this the pool answers busy rather than grow
/// without bound.
const MAX_TRACKED: usize = 2_000_000;

impl IdentityPool {
    pub fn new(provider: Arc<dyn IdentityProvider>, settings: IdentitySettings) -> Self {
        let max_in_flight = settings.max_in_flight.max(1);
        let load = Arc::new(PoolLoad::default());
        load.max_in_flight
            .store(max_in_flight as u64, Ordering::Relaxed);
        load.max_waiting
            .store(settings.max_waiting as u64, Ordering::Relaxed);
        Self {
            provider,
            places: Arc::new(Semaphore::new(max_in_flight)),
            breaker: Breaker::new(&settings),
            per_identity: AttemptLimit::new(
                settings.attempts_per_window,
                settings.attempt_window_s,
            ),
            per_pass: AttemptLimit::new(
                settings.pass_attempts_per_window,
                settings.pass_attempt_window_s,
            ),
            settings,
            load,
        }
    }

    pub fn load(&self) -> Arc<PoolLoad> {
        self.load.clone()
    }

    fn forget_old_attempts(&mut self) {
        let now = Instant::now();
        self.per_identity.forget_old(now);
        self.per_pass.forget_old(now);
    }

    fn publish_breaker(&mut self, now: Instant) {
        let state = self.breaker.state(now);
        self.load
            .breaker_state
            .store(state as u64, Ordering::Relaxed);
    }

    fn busy(&self, retry_after: u64) -> VerifyError {
        self.load.busy.fetch_add(1, Ordering::Relaxed);
        VerifyError::Busy { retry_after }
    }

    /// The wait before another attempt of this identity or with this pass is allowed, if any.
    fn limited(&self, limit_key: &str, pass_key: Option<&str>, now: Instant) -> Option<u64> {
        let by_identity = self.per_identity.wait(limit_key, now);
        let by_pass = pass_key.and_then(|k| self.per_pass.wait(k, now));
        by_identity.into_iter().chain(by_pass).max()
    }

    /// A request with a place may call: checks the limits and the breaker, and counts the
    /// attempt. `Ok(true)` if the call is the breaker's probe.
    fn begin(
        &mut self,
        limit_key: &str,
        pass_key: Option<&str>,
        now: Instant,
    ) -> Result<bool, VerifyError> {
        if let Some(retry_after) = self.limited(limit_key, pass_key, now) {
            self.load.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Err(VerifyError::RateLimited { retry_after });
        }
        let probe = match self.breaker.admit(now) {
            Admission::Call => false,
            Admission::Probe => true,
            Admission::Refuse { retry_after } => {
                self.load.breaker_rejected.fetch_add(1, Ordering::Relaxed);
                return Err(self.busy(retry_after));
            }
        };
        self.publish_breaker(now);
        // Only a check that reaches the provider counts: a citizen told "busy" has not used one.
        self.per_identity.record(limit_key, now);
        if let Some(k) = pass_key {
            self.per_pass.record(k, now);
        }
        Ok(probe)
    }

    fn submit(
        &mut self,
        claim: IdentityClaim,
        limit_key: String,
        pass_key: Option<String>,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<Vouched, VerifyError>> {
        let now = Instant::now();
        let deadline = now + Duration::from_millis(self.settings.deadline_ms);
        if self.per_identity.len() >= MAX_TRACKED || self.per_pass.len() >= MAX_TRACKED {
            self.forget_old_attempts();
            if self.per_identity.len() >= MAX_TRACKED || self.per_pass.len() >= MAX_TRACKED {
                let e = self.busy(5);
                return Box::pin(async move { Err(e) });
            }
        }
        if let Some(retry_after) = self.limited(&limit_key, pass_key.as_deref(), now) {
            self.load.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Box::pin(async move { Err(VerifyError::RateLimited { retry_after }) });
        }
        if let Some(retry_after) = self.breaker.open_left(now) {
            self.publish_breaker(now);
            self.load.breaker_rejected.fetch_add(1, Ordering::Relaxed);
            let e = self.busy(retry_after);
            return Box::pin(async move { Err(e) });
        }
        let call = Call {
            provider: self.provider.clone(),
            load: self.load.clone(),
            pool: ctx.address(),
            claim,
            deadline,
            timeout: Duration::from_millis(self.settings.timeout_ms),
            retries: self.settings.retries,
            backoff_ms: self.settings.retry_backoff_ms,
        };
        match self.places.clone().try_acquire_owned() {
            Ok(permit) => {
                let place = Place::new(self.load.clone(), permit);
                match self.begin(&limit_key, pass_key.as_deref(), now) {
                    Ok(probe) => Box::pin(call.run(place, probe)),
                    Err(e) => Box::pin(async move { Err(e) }),
                }
            }
            Err(_) => {
                let waiting = self.load.waiting.load(Ordering::Relaxed);
                let may_wait = self.settings.queue_ms > 0
                    && waiting < self.settings.max_waiting as u64
                    && self.breaker.state(now) == BreakerState::Closed;
                if !may_wait {
                    let e = self.busy(1);
                    return Box::pin(async move { Err(e) });
                }
                let wait = Duration::from_millis(self.settings.queue_ms);
                let waiter = Waiting::new(self.load.clone());
                let places = self.places.clone();
                Box::pin(async move {
                    let wait = wait.min(deadline.saturating_duration_since(Instant::now()));
                    let permit = tokio::time::timeout(wait, places.acquire_owned()).await;
                    drop(waiter);
                    let Ok(Ok(permit)) = permit else {
                        call.load.queue_timeouts.fetch_add(1, Ordering::Relaxed);
                        call.load.busy.fetch_add(1, Ordering::Relaxed);
                        return Err(VerifyError::Busy { retry_after: 1 });
                    };
                    let place = Place::new(call.load.clone(), permit);
                    let left = deadline.saturating_duration_since(Instant::now());
                    let begun = tokio::time::timeout(
                        left,
                        call.pool.send(Begin {
                            limit_key,
                            pass_key,
                        }),
                    )
                    .await;
                    match begun {
                        Ok(Ok(Ok(probe))) => call.run(place, probe).await,
                        Ok(Ok(Err(e))) => Err(e),
                        _ => {
                            call.load.busy.fetch_add(1, Ordering::Relaxed);
                            Err(VerifyError::Busy { retry_after: 1 })
                        }
                    }
                })
            }
        }
    }
}

impl Actor for IdentityPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(8192);
        ctx.run_interval(Duration::from_secs(30), |act, _| act.forget_old_attempts());
    }
}

/// A place in the pool, held from the first call to the answer (backoff included), so that a
/// retry never waits for a place. Publishes `in_flight` and gives the place back however the
/// request ends.
struct Place {
    load: Arc<PoolLoad>,
    _permit: OwnedSemaphorePermit,
}

impl Place {
    fn new(load: Arc<PoolLoad>, permit: OwnedSemaphorePermit) -> Self {
        load.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            load,
            _permit: permit,
        }
    }
}

impl Drop for Place {
    // Runs before the permit is released, so `in_flight` never reads above the cap.
    fn drop(&mut self) {
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Publishes `waiting` while a request waits for a place.
struct Waiting(Arc<PoolLoad>);

impl Waiting {
    fn new(load: Arc<PoolLoad>) -> Self {
        load.waiting.fetch_add(1, Ordering::Relaxed);
        Self(load)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request's calls to the provider, run outside the actor so the mailbox never waits on
/// the provider.
struct Call {
    provider: Arc<dyn IdentityProvider>,
    load: Arc<PoolLoad>,
    pool: Addr<IdentityPool>,
    claim: IdentityClaim,
    deadline: Instant,
    timeout: Duration,
    retries: u32,
    backoff_ms: u64,
}

enum Ended {
    Answered(Result<Vouched, ProviderError>),
    TimedOut,
}

impl Call {
    async fn run(self, place: Place, probe: bool) -> Result<Vouched, VerifyError> {
        let load = &self.load;
        let mut retries_left = self.retries;
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            let ended = if left.is_zero() {
                Ended::TimedOut
            } else {
                load.calls.fetch_add(1, Ordering::Relaxed);
                let call = self.provider.verify(self.claim.clone());
                let started = Instant::now();
                let answer = tokio::time::timeout(self.timeout.min(left), call).await;
                load.call_latency.observe(started.elapsed());
                match answer {
                    Ok(answer) => Ended::Answered(answer),
                    Err(_) => Ended::TimedOut,
                }
            };
            let failed = !matches!(ended, Ended::Answered(Ok(_) | Err(ProviderError::Rejected)));
            // Sent before the answer goes out, so whatever the caller sends next finds the
            // breaker already up to date (the mailbox is in order).
            self.pool.do_send(CallEnded { failed, probe });
            match ended {
                Ended::Answered(Ok(v)) => {
                    load.vouched.fetch_add(1, Ordering::Relaxed);
                    return Ok(v);
                }
                Ended::Answered(Err(ProviderError::Rejected)) => {
                    load.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(VerifyError::Rejected);
                }
                Ended::Answered(Err(ProviderError::Failed(e))) => {
                    log::warn!("identity provider failed: {e}");
                }
                Ended::TimedOut => {
                    load.timeouts.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "identity provider call abandoned after {:?}",
                        self.timeout.min(left)
                    );
                }
            }
            if retries_left == 0 || probe || load.breaker() != BreakerState::Closed {
                break;
            }
            let backoff = jittered(self.backoff_ms);
            let left_after = self
                .deadline
                .saturating_duration_since(Instant::now() + backoff);
            // A retry with less than half a timeout left would mostly time out too, adding
            // load to a provider that is already struggling.
            if left_after < self.timeout / 2 {
                break;
            }
            retries_left -= 1;
            load.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
        }
        drop(place);
        load.failed.fetch_add(1, Ordering::Relaxed);
        Err(VerifyError::Busy { retry_after: 2 })
    }
}

/// A backoff between half and one and a half times `base_ms`, so that retries of requests that
/// failed together do not arrive together.
fn jittered(base_ms: u64) -> Duration {
    if base_ms == 0 {
        return Duration::ZERO;
    }
    let ms = rand::thread_rng().gen_range(base_ms / 2..=base_ms + base_ms / 2);
    Duration::from_millis(ms)
}

impl Handler<Verify> for IdentityPool {
    type Result = ResponseFuture<Result<Vouched, VerifyError>>;

    fn handle(&mut self, msg: Verify, ctx: &mut Context<Self>) -> Self::Result {
        self.submit(msg.claim, msg.limit_key, None, ctx)
    }
}

impl Handler<VerifyForPass> for IdentityPool {
    type Result = ResponseFuture<Result<Vouched, VerifyError>>;

    fn handle(&mut self, msg: VerifyForPass, ctx: &mut Context<Self>) -> Self::Result {
        self.submit(msg.claim, msg.limit_key, Some(msg.pass_key), ctx)
    }
}

impl Handler<Begin> for IdentityPool {
    type Result = Result<bool, VerifyError>;

    fn handle(&mut self, msg: Begin, _: &mut Context<Self>) -> Self::Result {
        self.begin(&msg.limit_key, msg.pass_key.as_deref(), Instant::now())
    }
}

impl Handler<CallEnded> for IdentityPool {
    type Result = ();

    fn handle(&mut self, msg: CallEnded, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if self.breaker.record(msg.failed, msg.probe, now) {
            self.load.breaker_opened.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "identity provider failing: breaker open for {:?}",
                self.breaker.open_for
            );
            // Publishes half-open when it is due, even if no request comes to notice.
            ctx.run_later(self.breaker.open_for, |act, _| {
                act.publish_breaker(Instant::now())
            });
        } else if msg.probe && !msg.failed {
            log::info!("identity provider answering again: breaker closed");
        }
        self.publish_breaker(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> IdentitySettings {
        IdentitySettings {
            breaker_failures: 3,
            breaker_failure_ratio: 0.5,
            breaker_window_s: 10,
            breaker_min_calls: 10,
            breaker_open_ms: 1_500,
            deadline_ms: 1_000,
            ..IdentitySettings::default()
        }
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_says_how_long() {
        let mut b = Breaker::new(&settings());
        let t = Instant::now();
        assert!(!b.record(true, false, t));
        assert!(!b.record(true, false, t));
        assert!(b.record(true, false, t));
        assert_eq!(
            b.admit(t + Duration::from_millis(100)),
            Admission::Refuse { retry_after: 2 }
        );
        assert_eq!(
            b.admit(t + Duration::from_millis(1_000)),
            Admission::Refuse { retry_after: 1 }
        );
        assert_eq!(b.open_left(t + Duration::from_millis(1_499)), Some(1));
    }

    #[test]
    fn a_success_between_failures_keeps_the_breaker_closed() {
        let mut b = Breaker::new(&IdentitySettings {
            breaker_failure_ratio: 1.0,
            ..settings()
        });
        let t = Instant::now();
        for _ in 0..4 {
            assert!(!b.record(true, false, t));
            assert!(!b.record(true, false, t));
            assert!(!b.record(false, false, t));
        }
        assert_eq!(b.admit(t), Admission::Call);
    }

    #[test]
    fn the_breaker_opens_on_a_failure_ratio_over_its_window() {
        let mut b = Breaker::new(&IdentitySettings {
            breaker_failures: 100,
            ..settings()
        });
        let t = Instant::now();
        let mut opened = false;
        for i in 0..10 {
            opened |= b.record(i % 2 == 0, false, t);
        }
        assert!(opened, "5 failures out of 10 reach a ratio of 0.5");
        let mut b = Breaker::new(&IdentitySettings {
            breaker_failures: 100,
            ..settings()
        });
        // Failures older than the window no longer count: 3 in the last 10 calls is 0.3,
        // where 9 in 16 would have opened it.
        for _ in 0..6 {
            b.record(true, false, t);
        }
        let later = t + Duration::from_secs(11);
        for failed in [
            false, true, false, false, true, false, false, true, false, false,
        ] {
            assert!(!b.record(failed, false, later));
        }
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_outcome_decides() {
        let mut b = Breaker::new(&settings());
        let t = Instant::now();
        for _ in 0..3 {
            b.record(true, false, t);
        }
        let after = t + Duration::from_millis(1_600);
        assert_eq!(b.admit(after), Admission::Probe);
        assert_eq!(b.admit(after), Admission::Refuse { retry_after: 1 });
        // A late outcome of a call from before the opening changes nothing.
        assert!(!b.record(false, false, after));
        assert_eq!(b.state(after), BreakerState::HalfOpen);
        assert!(b.record(true, true, after), "a failed probe opens it again");
        assert!(matches!(b.admit(after), Admission::Refuse { .. }));
        let later = after + Duration::from_millis(1_600);
        assert_eq!(b.admit(later), Admission::Probe);
        assert!(!b.record(false, true, later));
        assert_eq!(b.admit(later), Admission::Call);
    }

    #[test]
    fn a_lost_probe_is_replaced_after_a_deadline() {
        let mut b = Breaker::new(&settings());
        let t = Instant::now();
        for _ in 0..3 {
            b.record(true, false, t);
        }
        let after = t + Duration::from_millis(1_600);
        assert_eq!(b.admit(after), Admission::Probe);
        assert_eq!(
            b.admit(after + Duration::from_millis(1_001)),
            Admission::Probe
        );
    }

    #[test]
    fn the_attempt_limit_counts_within_its_window() {
        let mut l = AttemptLimit::new(2, 600);
        let t = Instant::now();
        assert_eq!(l.wait("k", t), None);
        l.record("k", t);
        l.record("k", t + Duration::from_secs(100));
        assert_eq!(l.wait("k", t + Duration::from_secs(200)), Some(400));
        assert_eq!(l.wait("other", t), None);
        assert_eq!(l.wait("k", t + Duration::from_secs(600)), None);
    }

    #[test]
    fn simulated_latency_follows_its_distribution() {
        let mut rng = rand::thread_rng();
        let uniform = SimulatedService {
            latency_ms: 10,
            jitter_ms: 20,
            jitter: Jitter::Uniform,
            failure_rate: 0.0,
            hang_rate: 0.0,
        };
        for _ in 0..1_000 {
            let l = uniform.sample_latency(&mut rng);
            assert!(l >= Duration::from_millis(10) && l <= Duration::from_millis(30));
        }
        let exp = SimulatedService {
            jitter: Jitter::Exponential,
            ..uniform
        };
        let n = 20_000;
        let total: Duration = (0..n).map(|_| exp.sample_latency(&mut rng)).sum();
        let mean_ms = total.as_secs_f64() * 1000.0 / n as f64;
        assert!(
            (27.0..33.0).contains(&mean_ms),
            "mean latency {mean_ms} ms, expected about 10 + 20"
        );
    }

    #[test]
    fn retry_after_is_rounded_up_to_a_whole_second() {
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1_000)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
    }
}
