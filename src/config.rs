//! Settings, read once at start from the environment (see the README's table).

use crate::db::{Backend, PoolSettings};
use crate::domain::client::TrustedProxies;
use chrono::FixedOffset;
use clap::{CommandFactory, FromArgMatches, Parser};
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
    pub trusted_proxies: TrustedProxies,
    pub admin_token: Option<String>,
    pub secret_key: Option<String>,
    pub identity: IdentitySettings,
    /// A dedicated key for phone numbers at rest (64 hex digits); unset: derived from the secret.
    pub phone_key: Option<String>,
    /// The notifications' sender.
    pub notify: NotifySettings,
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
    /// How long a leftover dose's offer is held for its citizen alone before it passes on.
    pub offer_hold_s: u64,
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
    /// Request lines and the log's format.
    pub log: LogSettings,
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

/// The notifications' sender (`actors::notifier`).
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySettings {
    /// Where messages are POSTed; unset: the simulated SMS provider.
    pub webhook_url: Option<String>,
    /// The simulated provider's latency and share of failed deliveries.
    pub sim_latency_ms: u64,
    pub sim_failure_rate: f64,
    /// Deliveries started per second at most, toward the provider.
    pub rate_per_s: u32,
    /// Deliveries in flight at most.
    pub max_in_flight: usize,
    /// A delivery slower than this is a failure.
    pub timeout_ms: u64,
    pub retry: crate::domain::notification::RetryRules,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            webhook_url: None,
            sim_latency_ms: 20,
            sim_failure_rate: 0.0,
            rate_per_s: 50,
            max_in_flight: 16,
            timeout_ms: 5_000,
            retry: Default::default(),
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

impl Jitter {
    pub fn name(self) -> &'static str {
        match self {
            Self::Exponential => "exponential",
            Self::Uniform => "uniform",
        }
    }
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
            phone_key: None,
            notify: NotifySettings::default(),
            zone: seoul(),
            pass_ttl_s: 600,
            session_ttl_s: 900,
            over_admission: 1.1,
            lookups_per_minute: 30,
            absent_after_s: 120,
            joins_per_minute: 0,
            offer_hold_s: 300,
            workers: 0,
            max_in_flight: 1024,
            request_timeout_ms: 10_000,
            max_connections: 8192,
            log: LogSettings::default(),
            demo: false,
        }
    }

    /// The settings from the environment alone (the binary reads its flags too: `Settings`).
    pub fn from_env() -> Result<Self, String> {
        let matches = Settings::command_with_env()
            .no_binary_name(true)
            .try_get_matches_from(std::iter::empty::<String>())
            .map_err(|e| e.to_string())?;
        Settings::from_arg_matches(&matches)
            .map_err(|e| e.to_string())?
            .into_config()
    }
}

/// Every setting, as a flag and an environment variable (the flag wins). `--help` is generated
/// from this; the README's table is checked against it (`tests/cli.rs`). Values are read here;
/// the clamps and the checks across settings are in `Settings::into_config`, so that what
/// `--print-config` shows is what runs.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "reservation",
    version,
    about = "Vaccine pre-reservation server: cohort waiting rooms, identity checks, durable bookings.",
    long_about = None,
    after_help = "Every setting may also be given as the environment variable shown; a flag wins \
                  over its variable. Durations are in the unit their name ends with (_MS: \
                  milliseconds, _SECONDS: seconds). See README.md, Configuration."
)]
pub struct Settings {
    /// Seed two demo cohorts and 12 centers with two months of slots, into an empty database.
    #[arg(long)]
    pub demo: bool,
    /// Print the effective settings (after clamps, secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Address and port to listen on.
    #[arg(
        long,
        env = "BIND_ADDR",
        default_value = "127.0.0.1:8080",
        help_heading = "Server"
    )]
    pub bind_addr: String,
    /// HTTP worker threads; 0: one per core.
    #[arg(long, env = "WORKERS", default_value_t = 0, value_parser = trimmed::<usize>, help_heading = "Server")]
    pub workers: usize,
    /// Citizens' requests in flight at once; past it 503 at once with Retry-After. 0: no limit.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 1024, value_parser = trimmed::<usize>, help_heading = "Server")]
    pub max_in_flight: usize,
    /// Open connections at most, over all workers (each uses two file descriptors).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 8192, value_parser = trimmed::<usize>, help_heading = "Server")]
    pub max_connections: usize,
    /// How long a request's head, and then its body, may take to arrive, in ms; then 408.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000, value_parser = trimmed::<u64>, help_heading = "Server")]
    pub request_timeout_ms: u64,
    /// This node's name in /metrics (label `node`), stats and logs [default: BIND_ADDR].
    #[arg(long, env = "NODE_NAME", help_heading = "Server")]
    pub node_name: Option<String>,
    /// Comma-separated addresses or CIDRs of load balancers whose X-Forwarded-For names the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_parser = trimmed::<TrustedProxies>, help_heading = "Server")]
    pub trusted_proxies: Option<TrustedProxies>,
    /// The server's zone, as a fixed offset.
    #[arg(long, env = "TIMEZONE", default_value = "+09:00", value_parser = zone, help_heading = "Server")]
    pub timezone: FixedOffset,

    /// A SQLite file (plain path or sqlite://), or a postgres:// URL (libpq form).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "./data/reservations.db",
        hide_env_values = true,
        help_heading = "Database"
    )]
    pub database_url: String,
    /// Database connections at most (clamped to 2-256).
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 8, value_parser = trimmed::<u32>, help_heading = "Database")]
    pub db_pool_size: u32,
    /// How long a request waits for a connection before a 503, in ms (clamped to 100-9000).
    #[arg(long, env = "DB_CONNECT_TIMEOUT_MS", default_value_t = 5_000, value_parser = trimmed::<u64>, help_heading = "Database")]
    pub db_connect_timeout_ms: u64,
    /// PostgreSQL: a statement running longer is cancelled, in ms (at least 100).
    #[arg(long, env = "DB_STATEMENT_TIMEOUT_MS", default_value_t = 5_000, value_parser = trimmed::<u64>, help_heading = "Database")]
    pub db_statement_timeout_ms: u64,
    /// 1: run on a PostgreSQL whose fsync is off (throwaway test databases only).
    #[arg(long, env = "ALLOW_UNSAFE_DURABILITY", default_value = "0", value_parser = ["0", "1"], help_heading = "Database")]
    pub allow_unsafe_durability: String,

    /// Bearer token for /api/v1/admin/* (required on PostgreSQL) [default: SQLite: generated, kept beside the data].
    #[arg(
        long,
        env = "ADMIN_TOKEN",
        hide_env_values = true,
        help_heading = "Secrets"
    )]
    pub admin_token: Option<String>,
    /// Signs tickets, passes, sessions; keys the citizen hash (required on PostgreSQL, the same on every node) [default: SQLite: generated, kept beside the data].
    #[arg(
        long,
        env = "SECRET_KEY",
        hide_env_values = true,
        help_heading = "Secrets"
    )]
    pub secret_key: Option<String>,

    /// An external identity service (plain http://) instead of the simulated one.
    #[arg(
        long,
        env = "IDENTITY_PROVIDER_URL",
        hide_env_values = true,
        help_heading = "Identity"
    )]
    pub identity_provider_url: Option<String>,
    /// Simulated provider: base latency, in ms.
    #[arg(long, env = "IDENTITY_LATENCY_MS", default_value_t = 50, value_parser = trimmed::<u64>, help_heading = "Identity")]
    pub identity_latency_ms: u64,
    /// Simulated provider: jitter on top of the base, in ms (its mean, or its maximum).
    #[arg(long, env = "IDENTITY_JITTER_MS", default_value_t = 0, value_parser = trimmed::<u64>, help_heading = "Identity")]
    pub identity_jitter_ms: u64,
    /// Simulated provider: the jitter's distribution.
    #[arg(long, env = "IDENTITY_JITTER", default_value = "exponential", value_parser = trimmed::<Jitter>, help_heading = "Identity")]
    pub identity_jitter: Jitter,
    /// Simulated provider: share of calls that fail, 0.0-1.0.
    #[arg(long, env = "IDENTITY_FAILURE_RATE", default_value = "0.0", value_parser = trimmed::<f64>, help_heading = "Identity")]
    pub identity_failure_rate: f64,
    /// Simulated provider: share of calls that never answer, 0.0-1.0 (with the failure rate at most 1.0).
    #[arg(long, env = "IDENTITY_HANG_RATE", default_value = "0.0", value_parser = trimmed::<f64>, help_heading = "Identity")]
    pub identity_hang_rate: f64,
    /// Requests holding a place in the pool (calling the provider, or backing off) at once (at least 1).
    #[arg(long, env = "IDENTITY_MAX_IN_FLIGHT", default_value_t = 64, value_parser = trimmed::<usize>, help_heading = "Identity")]
    pub identity_max_in_flight: usize,
    /// How long a request may wait for a place, in ms (at most half the deadline); 0: answer busy at once.
    #[arg(long, env = "IDENTITY_QUEUE_MS", default_value_t = 100, value_parser = trimmed::<u64>, help_heading = "Identity")]
    pub identity_queue_ms: u64,
    /// How many requests may wait for a place; past it 503 identity_busy.
    #[arg(long, env = "IDENTITY_MAX_WAITING", default_value_t = 128, value_parser = trimmed::<usize>, help_heading = "Identity")]
    pub identity_max_waiting: usize,
    /// A provider call slower than this is abandoned (a failure), in ms.
    #[arg(long, env = "IDENTITY_TIMEOUT_MS", default_value_t = 5_000, value_parser = trimmed::<u64>, help_heading = "Identity")]
    pub identity_timeout_ms: u64,
    /// From arrival to answer, in ms: the wait, the calls and the retry all fit in it.
    #[arg(long, env = "IDENTITY_DEADLINE_MS", default_value_t = 8_000, value_parser = trimmed::<u64>, help_heading = "Identity")]
    pub identity_deadline_ms: u64,
    /// Further calls after a failure or a timeout, 0-3.
    #[arg(long, env = "IDENTITY_RETRIES", default_value_t = 1, value_parser = trimmed::<u32>, help_heading = "Identity")]
    pub identity_retries: u32,
    /// Backoff before a retry, in ms, jittered between half and one and a half times this.
    #[arg(long, env = "IDENTITY_RETRY_BACKOFF_MS", default_value_t = 100, value_parser = trimmed::<u64>, help_heading = "Identity")]
    pub identity_retry_backoff_ms: u64,
    /// The breaker opens after this many consecutive failed calls.
    #[arg(long, env = "IDENTITY_BREAKER_FAILURES", default_value_t = 20, value_parser = trimmed::<u32>, help_heading = "Identity")]
    pub identity_breaker_failures: u32,
    /// ... or when at least this share of the calls in the window failed (above 0.0, at most 1.0).
    #[arg(long, env = "IDENTITY_BREAKER_FAILURE_RATIO", default_value = "0.75", value_parser = trimmed::<f64>, help_heading = "Identity")]
    pub identity_breaker_failure_ratio: f64,
    /// The breaker's window, in seconds.
    #[arg(long, env = "IDENTITY_BREAKER_WINDOW_SECONDS", default_value_t = 10, value_parser = trimmed::<u64>, help_heading = "Identity")]
    pub identity_breaker_window_seconds: u64,
    /// Calls the window must have seen before the ratio counts.
    #[arg(long, env = "IDENTITY_BREAKER_MIN_CALLS", default_value_t = 40, value_parser = trimmed::<usize>, help_heading = "Identity")]
    pub identity_breaker_min_calls: usize,
    /// How long the breaker stays open, in ms; then one probe call goes through.
    #[arg(long, env = "IDENTITY_BREAKER_OPEN_MS", default_value_t = 5_000, value_parser = trimmed::<u64>, help_heading = "Identity")]
    pub identity_breaker_open_ms: u64,
    /// Checks of one identity allowed per window (429 past it).
    #[arg(long, env = "IDENTITY_ATTEMPTS_PER_WINDOW", default_value_t = 5, value_parser = trimmed::<usize>, help_heading = "Identity")]
    pub identity_attempts_per_window: usize,
    /// The per-identity window, in seconds.
    #[arg(long, env = "IDENTITY_ATTEMPT_WINDOW_SECONDS", default_value_t = 600, value_parser = trimmed::<u64>, help_heading = "Identity")]
    pub identity_attempt_window_seconds: u64,
    /// Checks made with one pass allowed per window (429 past it).
    #[arg(long, env = "IDENTITY_PASS_ATTEMPTS_PER_WINDOW", default_value_t = 5, value_parser = trimmed::<usize>, help_heading = "Identity")]
    pub identity_pass_attempts_per_window: usize,
    /// The per-pass window, in seconds.
    #[arg(long, env = "IDENTITY_PASS_ATTEMPT_WINDOW_SECONDS", default_value_t = 600, value_parser = trimmed::<u64>, help_heading = "Identity")]
    pub identity_pass_attempt_window_seconds: u64,

    /// A dedicated 256-bit key (64 hex digits) for phone numbers at rest; unset: derived from SECRET_KEY (HKDF).
    #[arg(long, env = "PHONE_KEY", help_heading = "Notifications")]
    pub phone_key: Option<String>,
    /// Notifications are POSTed as JSON to this plain http:// URL; unset: a simulated SMS provider.
    #[arg(long, env = "NOTIFY_WEBHOOK_URL", help_heading = "Notifications")]
    pub notify_webhook_url: Option<String>,
    /// Latency of the simulated SMS provider, in ms.
    #[arg(long, env = "NOTIFY_SIM_LATENCY_MS", default_value_t = 20, value_parser = trimmed::<u64>, help_heading = "Notifications")]
    pub notify_sim_latency_ms: u64,
    /// Share of the simulated provider's deliveries that fail, 0.0-1.0.
    #[arg(long, env = "NOTIFY_SIM_FAILURE_RATE", default_value = "0.0", value_parser = trimmed::<f64>, help_heading = "Notifications")]
    pub notify_sim_failure_rate: f64,
    /// Deliveries started per second at most, per node (at least 1).
    #[arg(long, env = "NOTIFY_RATE_PER_SECOND", default_value_t = 50, value_parser = trimmed::<u32>, help_heading = "Notifications")]
    pub notify_rate_per_second: u32,
    /// Deliveries in flight at most, per node (at least 1).
    #[arg(long, env = "NOTIFY_MAX_IN_FLIGHT", default_value_t = 16, value_parser = trimmed::<usize>, help_heading = "Notifications")]
    pub notify_max_in_flight: usize,
    /// A delivery slower than this, in ms, is a failed attempt.
    #[arg(long, env = "NOTIFY_TIMEOUT_MS", default_value_t = 5_000, value_parser = trimmed::<u64>, help_heading = "Notifications")]
    pub notify_timeout_ms: u64,
    /// Attempts at most before a message is failed (at least 1).
    #[arg(long, env = "NOTIFY_MAX_ATTEMPTS", default_value_t = 10, value_parser = trimmed::<u32>, help_heading = "Notifications")]
    pub notify_max_attempts: u32,
    /// The first backoff after a failed attempt, in ms; it doubles each time, jittered.
    #[arg(long, env = "NOTIFY_BACKOFF_MS", default_value_t = 1_000, value_parser = trimmed::<u64>, help_heading = "Notifications")]
    pub notify_backoff_ms: u64,
    /// The cap on the backoff, in ms.
    #[arg(long, env = "NOTIFY_MAX_BACKOFF_MS", default_value_t = 300_000, value_parser = trimmed::<u64>, help_heading = "Notifications")]
    pub notify_max_backoff_ms: u64,

    /// How long a pass lasts after admission, in seconds (at least 600).
    #[arg(long, env = "PASS_TTL_SECONDS", default_value_t = 600, value_parser = trimmed::<i64>, help_heading = "Queue and limits")]
    pub pass_ttl_seconds: i64,
    /// How long a verified session lasts, in seconds (at least 60).
    #[arg(long, env = "SESSION_TTL_SECONDS", default_value_t = 900, value_parser = trimmed::<i64>, help_heading = "Queue and limits")]
    pub session_ttl_seconds: i64,
    /// Admission may run this far ahead of the places left, 1.0-10.0.
    #[arg(long, env = "OVER_ADMISSION_FACTOR", default_value = "1.1", value_parser = trimmed::<f64>, help_heading = "Queue and limits")]
    pub over_admission_factor: f64,
    /// Booking lookups + cancellations per client IP per minute (at least 1).
    #[arg(long, env = "LOOKUPS_PER_MINUTE", default_value_t = 30, value_parser = trimmed::<u32>, help_heading = "Queue and limits")]
    pub lookups_per_minute: u32,
    /// A ticket not heard from for this long, in seconds, is passed over when its turn comes; 0: never.
    #[arg(long, env = "ABSENT_AFTER_SECONDS", default_value_t = 120, value_parser = trimmed::<u64>, help_heading = "Queue and limits")]
    pub absent_after_seconds: u64,
    /// Joins per client IP per minute, past it 429; 0: no limit.
    #[arg(long, env = "JOINS_PER_MINUTE", default_value_t = 0, value_parser = trimmed::<u32>, help_heading = "Queue and limits")]
    pub joins_per_minute: u32,
    /// Seconds a leftover dose's offer is held for its citizen alone before it lapses (1 to 86400).
    #[arg(long, env = "OFFER_HOLD_SECONDS", default_value_t = 300, value_parser = trimmed::<u64>, help_heading = "Queue and limits")]
    pub offer_hold_seconds: u64,

    /// env_logger filter (error, warn, info, debug, or per module: reservation=debug).
    #[arg(
        long,
        env = "RUST_LOG",
        default_value = "info",
        help_heading = "Logging"
    )]
    pub rust_log: String,
    /// Log lines as text, or one JSON object per line for log shippers.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], help_heading = "Logging")]
    pub log_format: String,
    /// Ordinary request lines logged per second at most (errors, 5xx and slow requests always are); 0: none.
    #[arg(long, env = "LOG_REQUESTS_PER_SECOND", default_value_t = 100, value_parser = trimmed::<u32>, help_heading = "Logging")]
    pub log_requests_per_second: u32,
    /// A request slower than this, in ms, is always logged.
    #[arg(long, env = "LOG_SLOW_REQUEST_MS", default_value_t = 1_000, value_parser = trimmed::<u64>, help_heading = "Logging")]
    pub log_slow_request_ms: u64,
}

impl Settings {
    /// The command, reading the environment as it is now. A variable set to nothing (or only
    /// blanks) counts as unset, as it always has here.
    pub fn command_with_env() -> clap::Command {
        Self::command().mut_args(|a| {
            let blank = a
                .get_env()
                .and_then(std::env::var_os)
                .is_some_and(|v| v.to_string_lossy().trim().is_empty());
            if blank {
                a.env(None::<&str>)
            } else {
                a
            }
        })
    }

    /// Flags and environment, as the binary reads them; on a bad value, clap's error (exit 2).
    pub fn parse_args() -> Self {
        let matches = Self::command_with_env().get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The configuration these settings make: clamps applied, settings checked against each
    /// other. The error names the variable.
    pub fn into_config(self) -> Result<Config, String> {
        let s = self;
        let mut c = Config::new(Backend::from_url(&s.database_url));
        c.bind_addr = s.bind_addr;
        c.admin_token = s.admin_token;
        c.secret_key = s.secret_key;
        c.node_name = s.node_name;
        c.trusted_proxies = s.trusted_proxies.unwrap_or_default();
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
        p.max_size = s.db_pool_size.clamp(2, 256);
        p.connect_timeout =
            std::time::Duration::from_millis(s.db_connect_timeout_ms.clamp(100, 9_000));
        p.statement_timeout = std::time::Duration::from_millis(s.db_statement_timeout_ms.max(100));
        p.allow_unsafe_durability = s.allow_unsafe_durability == "1";
        let id = &mut c.identity;
        id.provider_url = s.identity_provider_url;
        id.latency_ms = s.identity_latency_ms;
        id.jitter_ms = s.identity_jitter_ms;
        id.jitter = s.identity_jitter;
        id.failure_rate = s.identity_failure_rate;
        id.hang_rate = s.identity_hang_rate;
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
        id.max_in_flight = s.identity_max_in_flight.max(1);
        id.timeout_ms = s.identity_timeout_ms.max(1);
        id.deadline_ms = s.identity_deadline_ms.max(1);
        // A wait as long as the deadline would leave no time for the call itself.
        id.queue_ms = s.identity_queue_ms.min(id.deadline_ms / 2);
        id.max_waiting = s.identity_max_waiting;
        id.retries = s.identity_retries;
        if id.retries > 3 {
            return Err("IDENTITY_RETRIES must be between 0 and 3".into());
        }
        id.retry_backoff_ms = s.identity_retry_backoff_ms;
        id.breaker_failures = s.identity_breaker_failures.max(1);
        id.breaker_failure_ratio = s.identity_breaker_failure_ratio;
        if !(id.breaker_failure_ratio > 0.0 && id.breaker_failure_ratio <= 1.0) {
            return Err("IDENTITY_BREAKER_FAILURE_RATIO must be above 0.0, at most 1.0".into());
        }
        id.breaker_window_s = s.identity_breaker_window_seconds.max(1);
        id.breaker_min_calls = s.identity_breaker_min_calls.max(1);
        id.breaker_open_ms = s.identity_breaker_open_ms.max(1);
        id.attempts_per_window = s.identity_attempts_per_window;
        id.attempt_window_s = s.identity_attempt_window_seconds;
        id.pass_attempts_per_window = s.identity_pass_attempts_per_window;
        id.pass_attempt_window_s = s.identity_pass_attempt_window_seconds;
        if let Some(key) = &s.phone_key {
            crate::domain::phone::PhoneKey::from_hex(key)?;
        }
        c.phone_key = s.phone_key;
        let n = &mut c.notify;
        if let Some(url) = &s.notify_webhook_url {
            if !url.starts_with("http://") {
                return Err("NOTIFY_WEBHOOK_URL must be a plain http:// URL".into());
            }
        }
        n.webhook_url = s.notify_webhook_url;
        n.sim_latency_ms = s.notify_sim_latency_ms;
        n.sim_failure_rate = s.notify_sim_failure_rate;
        if !(0.0..=1.0).contains(&n.sim_failure_rate) {
            return Err("NOTIFY_SIM_FAILURE_RATE must be between 0.0 and 1.0".into());
        }
        n.rate_per_s = s.notify_rate_per_second.max(1);
        n.max_in_flight = s.notify_max_in_flight.max(1);
        n.timeout_ms = s.notify_timeout_ms.max(1);
        n.retry.max_attempts = s.notify_max_attempts.max(1);
        n.retry.base_backoff = std::time::Duration::from_millis(s.notify_backoff_ms);
        n.retry.max_backoff =
            std::time::Duration::from_millis(s.notify_max_backoff_ms.max(s.notify_backoff_ms));
        c.zone = s.timezone;
        c.pass_ttl_s = s.pass_ttl_seconds.max(600);
        c.session_ttl_s = s.session_ttl_seconds.max(60);
        c.over_admission = s.over_admission_factor;
        if !(1.0..=10.0).contains(&c.over_admission) {
            return Err("OVER_ADMISSION_FACTOR must be between 1.0 and 10.0".into());
        }
        c.lookups_per_minute = s.lookups_per_minute.max(1);
        c.absent_after_s = s.absent_after_seconds;
        c.joins_per_minute = s.joins_per_minute;
        // At most a day: an offer never outlives its day, and a larger figure would overflow the
        // expiry.
        c.offer_hold_s = s.offer_hold_seconds.clamp(1, 86_400);
        c.workers = s.workers;
        c.max_in_flight = s.max_in_flight;
        c.request_timeout_ms = s.request_timeout_ms.max(1);
        c.max_connections = s.max_connections.max(1);
        c.log = LogSettings {
            filter: s.rust_log,
            json: s.log_format == "json",
            requests_per_second: s.log_requests_per_second,
            slow_request_ms: s.log_slow_request_ms,
        };
        c.demo = s.demo;
        Ok(c)
    }
}

/// A URL without the password of its user part nor a `password=` parameter.
fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme) = out.find("://") {
        let rest = scheme + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let user = &out[rest..rest + at];
            if let Some(colon) = user.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "<redacted>");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=<redacted>"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// Reads a value as `parsed` always has: blanks around it do not count.
fn trimmed<T: FromStr>(v: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    v.trim().parse::<T>().map_err(|e| e.to_string())
}

fn zone(tz: &str) -> Result<FixedOffset, String> {
    FixedOffset::from_str(tz.trim())
        .map_err(|_| format!("must be an offset such as +09:00, not {tz}"))
}

/// The request lines and the log's format (`http::request_log`).
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// The env_logger filter (`RUST_LOG`).
    pub filter: String,
    /// One JSON object per line rather than text.
    pub json: bool,
    /// Ordinary request lines per second at most; errors and slow requests are always logged.
    pub requests_per_second: u32,
    /// A request slower than this is always logged.
    pub slow_request_ms: u64,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            filter: "info".into(),
            json: false,
            requests_per_second: 100,
            slow_request_ms: 1_000,
        }
    }
}

impl Config {
    /// The effective settings, as `VARIABLE=value` lines in the order of `--help`: what
    /// `--print-config` prints. Secrets are never shown: the tokens only as set or not, the
    /// URLs without their passwords.
    pub fn printed(&self) -> String {
        let secret = |v: &Option<String>| match v {
            Some(_) => "<redacted>".to_string(),
            None => "<unset>".to_string(),
        };
        let database = match &self.database {
            Backend::Sqlite(path) => path.display().to_string(),
            Backend::Postgres(url) => redact_url(url),
        };
        let id = &self.identity;
        let lines: Vec<(&str, String)> = vec![
            ("BIND_ADDR", self.bind_addr.clone()),
            ("WORKERS", self.workers.to_string()),
            ("MAX_IN_FLIGHT", self.max_in_flight.to_string()),
            ("MAX_CONNECTIONS", self.max_connections.to_string()),
            ("REQUEST_TIMEOUT_MS", self.request_timeout_ms.to_string()),
            ("NODE_NAME", self.node()),
            ("TRUSTED_PROXIES", self.trusted_proxies.to_string()),
            ("TIMEZONE", self.zone.to_string()),
            ("DATABASE_URL", database),
            ("DB_POOL_SIZE", self.pool.max_size.to_string()),
            (
                "DB_CONNECT_TIMEOUT_MS",
                self.pool.connect_timeout.as_millis().to_string(),
            ),
            (
                "DB_STATEMENT_TIMEOUT_MS",
                self.pool.statement_timeout.as_millis().to_string(),
            ),
            (
                "ALLOW_UNSAFE_DURABILITY",
                u8::from(self.pool.allow_unsafe_durability).to_string(),
            ),
            ("ADMIN_TOKEN", secret(&self.admin_token)),
            ("SECRET_KEY", secret(&self.secret_key)),
            (
                "IDENTITY_PROVIDER_URL",
                id.provider_url
                    .as_deref()
                    .map_or("<unset: simulated>".into(), redact_url),
            ),
            ("IDENTITY_LATENCY_MS", id.latency_ms.to_string()),
            ("IDENTITY_JITTER_MS", id.jitter_ms.to_string()),
            ("IDENTITY_JITTER", id.jitter.name().to_string()),
            ("IDENTITY_FAILURE_RATE", id.failure_rate.to_string()),
            ("IDENTITY_HANG_RATE", id.hang_rate.to_string()),
            ("IDENTITY_MAX_IN_FLIGHT", id.max_in_flight.to_string()),
            ("IDENTITY_QUEUE_MS", id.queue_ms.to_string()),
            ("IDENTITY_MAX_WAITING", id.max_waiting.to_string()),
            ("IDENTITY_TIMEOUT_MS", id.timeout_ms.to_string()),
            ("IDENTITY_DEADLINE_MS", id.deadline_ms.to_string()),
            ("IDENTITY_RETRIES", id.retries.to_string()),
            ("IDENTITY_RETRY_BACKOFF_MS", id.retry_backoff_ms.to_string()),
            ("IDENTITY_BREAKER_FAILURES", id.breaker_failures.to_string()),
            (
                "IDENTITY_BREAKER_FAILURE_RATIO",
                id.breaker_failure_ratio.to_string(),
            ),
            (
                "IDENTITY_BREAKER_WINDOW_SECONDS",
                id.breaker_window_s.to_string(),
            ),
            (
                "IDENTITY_BREAKER_MIN_CALLS",
                id.breaker_min_calls.to_string(),
            ),
            ("IDENTITY_BREAKER_OPEN_MS", id.breaker_open_ms.to_string()),
            (
                "IDENTITY_ATTEMPTS_PER_WINDOW",
                id.attempts_per_window.to_string(),
            ),
            (
                "IDENTITY_ATTEMPT_WINDOW_SECONDS",
                id.attempt_window_s.to_string(),
            ),
            (
                "IDENTITY_PASS_ATTEMPTS_PER_WINDOW",
                id.pass_attempts_per_window.to_string(),
            ),
            (
                "IDENTITY_PASS_ATTEMPT_WINDOW_SECONDS",
                id.pass_attempt_window_s.to_string(),
            ),
            ("PHONE_KEY", secret(&self.phone_key)),
            (
                "NOTIFY_WEBHOOK_URL",
                self.notify
                    .webhook_url
                    .as_deref()
                    .map_or("<unset: simulated>".into(), redact_url),
            ),
            (
                "NOTIFY_SIM_LATENCY_MS",
                self.notify.sim_latency_ms.to_string(),
            ),
            (
                "NOTIFY_SIM_FAILURE_RATE",
                self.notify.sim_failure_rate.to_string(),
            ),
            ("NOTIFY_RATE_PER_SECOND", self.notify.rate_per_s.to_string()),
            (
                "NOTIFY_MAX_IN_FLIGHT",
                self.notify.max_in_flight.to_string(),
            ),
            ("NOTIFY_TIMEOUT_MS", self.notify.timeout_ms.to_string()),
            (
                "NOTIFY_MAX_ATTEMPTS",
                self.notify.retry.max_attempts.to_string(),
            ),
            (
                "NOTIFY_BACKOFF_MS",
                self.notify.retry.base_backoff.as_millis().to_string(),
            ),
            (
                "NOTIFY_MAX_BACKOFF_MS",
                self.notify.retry.max_backoff.as_millis().to_string(),
            ),
            ("PASS_TTL_SECONDS", self.pass_ttl_s.to_string()),
            ("SESSION_TTL_SECONDS", self.session_ttl_s.to_string()),
            ("OVER_ADMISSION_FACTOR", self.over_admission.to_string()),
            ("LOOKUPS_PER_MINUTE", self.lookups_per_minute.to_string()),
            ("ABSENT_AFTER_SECONDS", self.absent_after_s.to_string()),
            ("JOINS_PER_MINUTE", self.joins_per_minute.to_string()),
            ("OFFER_HOLD_SECONDS", self.offer_hold_s.to_string()),
            ("RUST_LOG", self.log.filter.clone()),
            (
                "LOG_FORMAT",
                if self.log.json { "json" } else { "text" }.into(),
            ),
            (
                "LOG_REQUESTS_PER_SECOND",
                self.log.requests_per_second.to_string(),
            ),
            ("LOG_SLOW_REQUEST_MS", self.log.slow_request_ms.to_string()),
        ];
        lines
            .into_iter()
            .map(|(name, value)| format!("{name}={value}\n"))
            .collect()
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults `--help` states are those the tests' `Config::new` builds with.
    #[test]
    fn the_flags_defaults_make_the_same_config_as_config_new() {
        let cmd = Settings::command().mut_args(|a| a.env(None::<&str>));
        let matches = cmd.try_get_matches_from(["reservation"]).unwrap();
        let mut parsed = Settings::from_arg_matches(&matches)
            .unwrap()
            .into_config()
            .unwrap();
        parsed.bind_addr = "127.0.0.1:0".into();
        let built = Config::new(Backend::from_url("./data/reservations.db"));
        assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
    }

    #[test]
    fn passwords_are_taken_out_of_urls() {
        assert_eq!(
            redact_url("postgres://app:pw@db1:5432,db2/r?password=x&sslmode=off"),
            "postgres://app:<redacted>@db1:5432,db2/r?password=<redacted>&sslmode=off"
        );
        assert_eq!(redact_url("postgres://app@db/r"), "postgres://app@db/r");
        assert_eq!(redact_url("./data/x.db"), "./data/x.db");
    }
}
