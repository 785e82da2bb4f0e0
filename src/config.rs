//! Settings, read once at start from the environment (see the README's table).

use crate::db::{Backend, PoolSettings};
use chrono::FixedOffset;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Debug, Clone)]
pub struct Config {
    pub bind_addr: String,
    /// Where the data lives: a SQLite file or a PostgreSQL URL.
    pub database: Backend,
    /// The database pool's size and timeouts.
    pub pool: PoolSettings,
    /// This node's name in `/metrics`, stats and logs (default: the bind address).
    pub node_name: Option<String>,
    /// Load balancers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: crate::domain::client::TrustedProxies,
    pub admin_token: Option<String>,
    pub secret_key: Option<String>,
    pub identity: IdentitySettings,
    /// The server's local zone: instants are answered in it, slot days are read in it.
    pub zone: FixedOffset,
    /// How long a pass lasts after admission.
    pub pass_ttl_s: i64,
    /// How long a session lasts after verification.
    pub session_ttl_s: i64,
    /// Admission may run this far ahead of the places left, since not everyone admitted books.
    pub over_admission: f64,
    /// Booking lookups and cancellations a client may make per minute.
    pub lookups_per_minute: u32,
    /// A ticket not heard from (join or poll) for this long when its turn comes is passed
    /// over; 0: never.
    pub absent_after_s: u64,
    /// Joins a client may make per minute; 0: no limit.
    pub joins_per_minute: u32,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Citizens' requests in flight at most; past it a request is answered 503 at once
    /// (`http::shed`). 0: no limit.
    pub max_in_flight: usize,
    /// How long a request's head, and then its body, may take to arrive.
    pub request_timeout_ms: u64,
    /// Open connections at most, over all workers; past it new connections wait in the
    /// kernel's accept queue. Bounds the memory a crowd of clients can take.
    pub max_connections: usize,
    /// Seed the July 2021 scenario at start.
    pub demo: bool,
}

#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// The external provider's URL; when set, identity checks go there over HTTP instead of to
    /// the simulated provider.
    pub provider_url: Option<String>,
    /// Simulated provider: base latency, jitter on top of it, its distribution, and the shares
    /// of calls that fail and that hang (never answer).
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub jitter: Jitter,
    pub failure_rate: f64,
    pub hang_rate: f64,
    pub max_in_flight: usize,
    /// How long a request may wait for a place when all are taken, and how many may wait.
    pub queue_ms: u64,
    pub max_waiting: usize,
    /// A provider call that takes longer is abandoned and answered as a failure.
    pub timeout_ms: u64,
    /// From arrival to answer: bounds the wait, the calls and the retry together.
    pub deadline_ms: u64,
    /// Further calls after a transient failure, each after a jittered `retry_backoff_ms`.
    pub retries: u32,
    pub retry_backoff_ms: u64,
    /// The breaker opens after this many consecutive failed calls, or when at least
    /// `breaker_min_calls` calls in the last `breaker_window_s` failed in this share; it stays
    /// open `breaker_open_ms`, then lets one probe through.
    pub breaker_failures: u32,
    pub breaker_failure_ratio: f64,
    pub breaker_window_s: u64,
    pub breaker_min_calls: usize,
    pub breaker_open_ms: u64,
    /// Checks of one identity allowed per window.
    pub attempts_per_window: usize,
    pub attempt_window_s: u64,
    /// Checks made with one pass allowed per window.
    pub pass_attempts_per_window: usize,
    pub pass_attempt_window_s: u64,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            provider_url: None,
            latency_ms: 50,
            jitter_ms: 0,
            jitter: Jitter::Exponential,
            failure_rate: 0.0,
            hang_rate: 0.0,
            max_in_flight: 64,
            queue_ms: 100,
            max_waiting: 128,
            timeout_ms: 5_000,
            deadline_ms: 8_000,
            retries: 1,
            retry_backoff_ms: 100,
            breaker_failures: 20,
            breaker_failure_ratio: 0.75,
            breaker_window_s: 10,
            breaker_min_calls: 40,
            breaker_open_ms: 5_000,
            attempts_per_window: 5,
            attempt_window_s: 600,
            pass_attempts_per_window: 5,
            pass_attempt_window_s: 600,
        }
    }
}

/// How the simulated latency varies around its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Exponential with mean `jitter_ms`: most calls near the base, a long tail of slow ones,
    /// as a loaded service behaves.
    #[default]
    Exponential,
    /// Uniform between 0 and `jitter_ms`.
    Uniform,
}

impl FromStr for Jitter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exponential" | "exp" => Ok(Self::Exponential),
            "uniform" => Ok(Self::Uniform),
            _ => Err("IDENTITY_JITTER must be exponential or uniform".into()),
        }
    }
}

impl From<PathBuf> for Backend {
    fn from(path: PathBuf) -> Self {
        Backend::Sqlite(path)
    }
}

impl From<&PathBuf> for Backend {
    fn from(path: &PathBuf) -> Self {
        Backend::Sqlite(path.clone())
    }
}

impl From<&Path> for Backend {
    fn from(path: &Path) -> Self {
        Backend::Sqlite(path.to_path_buf())
    }
}

impl From<&str> for Backend {
    fn from(url: &str) -> Self {
        Backend::from_url(url)
    }
}

impl From<String> for Backend {
    fn from(url: String) -> Self {
        Backend::from_url(&url)
    }
}

impl Config {
    /// Defaults for a database (a SQLite path, or a URL): what the contract lists, and a
    /// random port.
    pub fn new(database: impl Into<Backend>) -> Self {
        Self {
            bind_addr: "127.0.0.1:0".into(),
            database: database.into(),
            pool: PoolSettings::default(),
            node_name: None,
            trusted_proxies: Default::default(),
            admin_token: None,
            secret_key: None,
            identity: IdentitySettings::default(),
            zone: seoul(),
            pass_ttl_s: 600,
            session_ttl_s: 900,
            over_admission: 1.1,
            lookups_per_minute: 30,
            absent_after_s: 120,
            joins_per_minute: 0,
            workers: 0,
            max_in_flight: 1024,
            request_timeout_ms: 10_000,
            max_connections: 8192,
            demo: false,
        }
    }

    pub fn from_env() -> Result<Self, String> {
        let url = var("DATABASE_URL").unwrap_or_else(|| "./data/reservations.db".into());
        let mut c = Self::new(Backend::from_url(&url));
        c.bind_addr = var("BIND_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into());
        c.admin_token = var("ADMIN_TOKEN");
        c.secret_key = var("SECRET_KEY");
        c.node_name = var("NODE_NAME");
        if let Some(list) = var("TRUSTED_PROXIES") {
            c.trusted_proxies = list.parse()?;
        }
        if c.database.is_postgres() {
            // Every node must sign and check tokens alike, and nothing beside a database that
            // many nodes share can keep a generated secret for all of them.
            for (name, value) in [
                ("SECRET_KEY", &c.secret_key),
                ("ADMIN_TOKEN", &c.admin_token),
            ] {
                if value.is_none() {
                    return Err(format!(
                        "{name} is required with a PostgreSQL DATABASE_URL (the same on every \
                         node): it cannot be generated and kept beside a shared database"
                    ));
                }
            }
        }
        let p = &mut c.pool;
        p.max_size = parsed("DB_POOL_SIZE", p.max_size)?.clamp(2, 256);
        p.connect_timeout = std::time::Duration::from_millis(
            parsed(
                "DB_CONNECT_TIMEOUT_MS",
                p.connect_timeout.as_millis() as u64,
            )?
            .clamp(100, 9_000),
        );
        p.statement_timeout = std::time::Duration::from_millis(
            parsed(
                "DB_STATEMENT_TIMEOUT_MS",
                p.statement_timeout.as_millis() as u64,
            )?
            .max(100),
        );
        p.allow_unsafe_durability = match var("ALLOW_UNSAFE_DURABILITY").as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(_) => return Err("ALLOW_UNSAFE_DURABILITY must be 0 or 1".into()),
        };
        let id = &mut c.identity;
        id.provider_url = var("IDENTITY_PROVIDER_URL");
        id.latency_ms = parsed("IDENTITY_LATENCY_MS", id.latency_ms)?;
        id.jitter_ms = parsed("IDENTITY_JITTER_MS", id.jitter_ms)?;
        if let Some(j) = var("IDENTITY_JITTER") {
            id.jitter = j.parse()?;
        }
        id.failure_rate = parsed("IDENTITY_FAILURE_RATE", id.failure_rate)?;
        id.hang_rate = parsed("IDENTITY_HANG_RATE", id.hang_rate)?;
        for (name, share) in [
            ("IDENTITY_FAILURE_RATE", id.failure_rate),
            ("IDENTITY_HANG_RATE", id.hang_rate),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name} must be between 0.0 and 1.0"));
            }
        }
        if id.failure_rate + id.hang_rate > 1.0 {
            return Err("IDENTITY_FAILURE_RATE + IDENTITY_HANG_RATE must not exceed 1.0".into());
        }
        id.max_in_flight = parsed("IDENTITY_MAX_IN_FLIGHT", id.max_in_flight)?.max(1);
        id.timeout_ms = parsed("IDENTITY_TIMEOUT_MS", id.timeout_ms)?.max(1);
        id.deadline_ms = parsed("IDENTITY_DEADLINE_MS", id.deadline_ms)?.max(1);
        // A wait as long as the deadline would leave no time for the call itself.
        id.queue_ms = parsed("IDENTITY_QUEUE_MS", id.queue_ms)?.min(id.deadline_ms / 2);
        id.max_waiting = parsed("IDENTITY_MAX_WAITING", id.max_waiting)?;
        id.retries = parsed("IDENTITY_RETRIES", id.retries)?;
        if id.retries > 3 {
            return Err("IDENTITY_RETRIES must be between 0 and 3".into());
        }
        id.retry_backoff_ms = parsed("IDENTITY_RETRY_BACKOFF_MS", id.retry_backoff_ms)?;
        id.breaker_failures = parsed("IDENTITY_BREAKER_FAILURES", id.breaker_failures)?.max(1);
        id.breaker_failure_ratio =
            parsed("IDENTITY_BREAKER_FAILURE_RATIO", id.breaker_failure_ratio)?;
        if !(id.breaker_failure_ratio > 0.0 && id.breaker_failure_ratio <= 1.0) {
            return Err("IDENTITY_BREAKER_FAILURE_RATIO must be above 0.0, at most 1.0".into());
        }
        id.breaker_window_s =
            parsed("IDENTITY_BREAKER_WINDOW_SECONDS", id.breaker_window_s)?.max(1);
        id.breaker_min_calls = parsed("IDENTITY_BREAKER_MIN_CALLS", id.breaker_min_calls)?.max(1);
        id.breaker_open_ms = parsed("IDENTITY_BREAKER_OPEN_MS", id.breaker_open_ms)?.max(1);
        id.attempts_per_window = parsed("IDENTITY_ATTEMPTS_PER_WINDOW", id.attempts_per_window)?;
        id.attempt_window_s = parsed("IDENTITY_ATTEMPT_WINDOW_SECONDS", id.attempt_window_s)?;
        id.pass_attempts_per_window = parsed(
            "IDENTITY_PASS_ATTEMPTS_PER_WINDOW",
            id.pass_attempts_per_window,
        )?;
        id.pass_attempt_window_s = parsed(
            "IDENTITY_PASS_ATTEMPT_WINDOW_SECONDS",
            id.pass_attempt_window_s,
        )?;
        if let Some(tz) = var("TIMEZONE") {
            c.zone = FixedOffset::from_str(&tz)
                .map_err(|_| format!("TIMEZONE must be an offset such as +09:00, not {tz}"))?;
        }
        c.pass_ttl_s = parsed("PASS_TTL_SECONDS", c.pass_ttl_s)?.max(600);
        c.session_ttl_s = parsed("SESSION_TTL_SECONDS", c.session_ttl_s)?.max(60);
        c.over_admission = parsed("OVER_ADMISSION_FACTOR", c.over_admission)?;
        if !(1.0..=10.0).contains(&c.over_admission) {
            return Err("OVER_ADMISSION_FACTOR must be between 1.0 and 10.0".into());
        }
        c.lookups_per_minute = parsed("LOOKUPS_PER_MINUTE", c.lookups_per_minute)?.max(1);
        c.absent_after_s = parsed("ABSENT_AFTER_SECONDS", c.absent_after_s)?;
        c.joins_per_minute = parsed("JOINS_PER_MINUTE", c.joins_per_minute)?;
        c.workers = parsed("WORKERS", c.workers)?;
        c.max_in_flight = parsed("MAX_IN_FLIGHT", c.max_in_flight)?;
        c.request_timeout_ms = parsed("REQUEST_TIMEOUT_MS", c.request_timeout_ms)?.max(1);
        c.max_connections = parsed("MAX_CONNECTIONS", c.max_connections)?.max(1);
        Ok(c)
    }
}

impl Config {
    /// This node's name: `NODE_NAME`, else the bind address.
    pub fn node(&self) -> String {
        self.node_name
            .clone()
            .unwrap_or_else(|| self.bind_addr.clone())
    }
}

/// Asia/Seoul: +09:00 all year, no daylight saving since 1988.
pub fn seoul() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).expect("+09:00 is a valid offset")
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: FromStr>(name: &str, default: T) -> Result<T, String> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name} has an unreadable value")),
    }
}
