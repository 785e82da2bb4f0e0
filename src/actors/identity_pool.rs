//! `IdentityPool`: the gate in front of the slow external identity provider. It caps the
//! calls in flight (a full pool answers busy at once, it never queues without bound), limits
//! how often one identity may be checked, and abandons a call that outlives its timeout.
//! Its load is published in `PoolLoad` for the waiting rooms' backpressure and `/metrics`.

use crate::config::IdentitySettings;
use crate::domain::identity::IdentityClaim;
use actix::prelude::*;
use futures_util::future::BoxFuture;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// The call failed; a later one may succeed.
    Failed(String),
}

/// An identity-verification service.
pub trait IdentityProvider: Send + Sync + 'static {
    fn verify(&self, claim: IdentityClaim) -> BoxFuture<'static, Result<Vouched, ProviderError>>;
}

/// The default provider: waits `latency_ms`, fails a share of calls, and refuses every phone
/// number beginning `010-0000-`.
pub struct SimulatedProvider {
    pub latency_ms: u64,
    pub failure_rate: f64,
}

impl IdentityProvider for SimulatedProvider {
    fn verify(&self, claim: IdentityClaim) -> BoxFuture<'static, Result<Vouched, ProviderError>> {
        let latency = Duration::from_millis(self.latency_ms);
        let fail =
            self.failure_rate > 0.0 && rand::thread_rng().gen_bool(self.failure_rate.min(1.0));
        Box::pin(async move {
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

/// The pool's load and outcomes, read without the mailbox.
#[derive(Debug, Default)]
pub struct PoolLoad {
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub calls: AtomicU64,
    pub vouched: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub busy: AtomicU64,
    pub rate_limited: AtomicU64,
}

impl PoolLoad {
    pub fn is_saturated(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) >= self.max_in_flight.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// Pool full or provider failing: try again after this many seconds.
    Busy {
        retry_after: u64,
    },
    /// This identity was checked too often: try again after this many seconds.
    RateLimited {
        retry_after: u64,
    },
    Rejected,
}

/// Check a claimed identity with the provider.
#[derive(Message)]
#[rtype(result = "Result<Vouched, VerifyError>")]
pub struct Verify {
    pub claim: IdentityClaim,
    /// Keyed hash of the claim: what the per-identity limit counts by.
    pub limit_key: String,
}

pub struct IdentityPool {
    provider: Arc<dyn IdentityProvider>,
    settings: IdentitySettings,
    load: Arc<PoolLoad>,
    /// Recent checks per identity, oldest first.
    attempts: HashMap<String, VecDeque<Instant>>,
}

/// Identities tracked at most by the abuse limit; past this the pool answers busy rather than
/// grow without bound.
const MAX_TRACKED: usize = 2_000_000;

impl IdentityPool {
    pub fn new(provider: Arc<dyn IdentityProvider>, settings: IdentitySettings) -> Self {
        let load = Arc::new(PoolLoad::default());
        load.max_in_flight
            .store(settings.max_in_flight as u64, Ordering::Relaxed);
        Self {
            provider,
            settings,
            load,
            attempts: HashMap::new(),
        }
    }

    pub fn load(&self) -> Arc<PoolLoad> {
        self.load.clone()
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.settings.attempt_window_s)
    }

    /// Counts an attempt for `key`, or says how long until one is allowed.
    fn admit_attempt(&mut self, key: &str, now: Instant) -> Result<(), u64> {
        let window = self.window();
        let limit = self.settings.attempts_per_window;
        let seen = self.attempts.entry(key.to_string()).or_default();
        while seen
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            seen.pop_front();
        }
        if seen.len() >= limit {
            let oldest = seen.front().copied().unwrap_or(now);
            let wait = window.saturating_sub(now.duration_since(oldest));
            return Err(wait.as_secs().max(1));
        }
        seen.push_back(now);
        Ok(())
    }

    fn forget_old_attempts(&mut self) {
        let window = self.window();
        let now = Instant::now();
        self.attempts
            .retain(|_, seen| seen.back().is_some_and(|t| now.duration_since(*t) < window));
    }
}

impl Actor for IdentityPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(8192);
        ctx.run_interval(Duration::from_secs(30), |act, _| act.forget_old_attempts());
    }
}

/// Decrements the in-flight count however the call ends (answered, timed out, dropped).
struct InFlight(Arc<PoolLoad>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Handler<Verify> for IdentityPool {
    type Result = ResponseFuture<Result<Vouched, VerifyError>>;

    fn handle(&mut self, msg: Verify, _: &mut Context<Self>) -> Self::Result {
        let load = self.load.clone();
        if self.load.is_saturated() {
            load.busy.fetch_add(1, Ordering::Relaxed);
            return Box::pin(async { Err(VerifyError::Busy { retry_after: 1 }) });
        }
        if self.attempts.len() >= MAX_TRACKED {
            self.forget_old_attempts();
            if self.attempts.len() >= MAX_TRACKED {
                load.busy.fetch_add(1, Ordering::Relaxed);
                return Box::pin(async { Err(VerifyError::Busy { retry_after: 5 }) });
            }
        }
        if let Err(retry_after) = self.admit_attempt(&msg.limit_key, Instant::now()) {
            load.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Box::pin(async move { Err(VerifyError::RateLimited { retry_after }) });
        }
        load.in_flight.fetch_add(1, Ordering::Relaxed);
        load.calls.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(load.clone());
        let call = self.provider.verify(msg.claim);
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        Box::pin(async move {
            let result = tokio::time::timeout(timeout, call).await;
            drop(guard);
            match result {
                Ok(Ok(v)) => {
                    load.vouched.fetch_add(1, Ordering::Relaxed);
                    Ok(v)
                }
                Ok(Err(ProviderError::Rejected)) => {
                    load.rejected.fetch_add(1, Ordering::Relaxed);
                    Err(VerifyError::Rejected)
                }
                Ok(Err(ProviderError::Failed(e))) => {
                    load.failed.fetch_add(1, Ordering::Relaxed);
                    log::warn!("identity provider failed: {e}");
                    Err(VerifyError::Busy { retry_after: 2 })
                }
                Err(_) => {
                    load.failed.fetch_add(1, Ordering::Relaxed);
                    log::warn!("identity provider timed out after {timeout:?}");
                    Err(VerifyError::Busy { retry_after: 2 })
                }
            }
        })
    }
}
