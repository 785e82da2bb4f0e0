//! Settings, read once at start from the environment (see the README's table).

use chrono::FixedOffset;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Debug, Clone)]
pub struct Config {
    pub bind_addr: String,
    /// Path of the SQLite file.
    pub database_path: PathBuf,
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
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Seed the July 2021 scenario at start.
    pub demo: bool,
}

#[derive(Debug, Clone)]
pub struct IdentitySettings {
    pub latency_ms: u64,
    pub failure_rate: f64,
    pub max_in_flight: usize,
    /// A provider call that takes longer is abandoned and answered as a failure.
    pub timeout_ms: u64,
    /// Checks of one identity allowed per window.
    pub attempts_per_window: usize,
    pub attempt_window_s: u64,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            latency_ms: 50,
            failure_rate: 0.0,
            max_in_flight: 64,
            timeout_ms: 5_000,
            attempts_per_window: 5,
            attempt_window_s: 600,
        }
    }
}

impl Config {
    /// Defaults for a database at `path`: what the contract lists, and a random port.
    pub fn new(database_path: impl Into<PathBuf>) -> Self {
        Self {
            bind_addr: "127.0.0.1:0".into(),
            database_path: database_path.into(),
            admin_token: None,
            secret_key: None,
            identity: IdentitySettings::default(),
            zone: seoul(),
            pass_ttl_s: 600,
            session_ttl_s: 900,
            over_admission: 1.1,
            lookups_per_minute: 30,
            workers: 0,
            demo: false,
        }
    }

    pub fn from_env() -> Result<Self, String> {
        let url = var("DATABASE_URL").unwrap_or_else(|| "./data/reservations.db".into());
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(&url);
        let mut c = Self::new(path);
        c.bind_addr = var("BIND_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into());
        c.admin_token = var("ADMIN_TOKEN");
        c.secret_key = var("SECRET_KEY");
        let id = &mut c.identity;
        id.latency_ms = parsed("IDENTITY_LATENCY_MS", id.latency_ms)?;
        id.failure_rate = parsed("IDENTITY_FAILURE_RATE", id.failure_rate)?;
        if !(0.0..=1.0).contains(&id.failure_rate) {
            return Err("IDENTITY_FAILURE_RATE must be between 0.0 and 1.0".into());
        }
        id.max_in_flight = parsed("IDENTITY_MAX_IN_FLIGHT", id.max_in_flight)?.max(1);
        id.timeout_ms = parsed("IDENTITY_TIMEOUT_MS", id.timeout_ms)?.max(1);
        id.attempts_per_window = parsed("IDENTITY_ATTEMPTS_PER_WINDOW", id.attempts_per_window)?;
        id.attempt_window_s = parsed("IDENTITY_ATTEMPT_WINDOW_SECONDS", id.attempt_window_s)?;
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
        c.workers = parsed("WORKERS", c.workers)?;
        Ok(c)
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
