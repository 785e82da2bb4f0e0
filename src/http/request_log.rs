//! A line in the log per request, for tracing one citizen's complaint through the logs: its
//! request id (the caller's `X-Request-Id` when it is a safe one, else a new one; returned in
//! the answer either way), the method, the route's path template (`/api/v1/bookings/{code}`),
//! the status and the latency. Never the raw path nor the query, nor any other header: tokens,
//! booking codes and birth dates travel there.
//!
//! Under a rush the log must never become the bottleneck: ordinary lines are limited to
//! `LOG_REQUESTS_PER_SECOND` (a GCRA limiter, one atomic compare-and-swap per request); 5xx
//! answers and requests slower than `LOG_SLOW_REQUEST_MS` have a budget of their own, ten
//! times larger (at least 1,000 a second), so that a storm of them cannot stall the server
//! either. What is left out is counted (`log_requests_dropped_total`) and said on the next
//! line written (`dropped=`).

use crate::config::LogSettings;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A caller's id is kept if it is 1 to this many characters of `[A-Za-z0-9._:-]`.
pub const MAX_ID_LEN: usize = 64;

/// What the request lines need, shared by the workers.
pub struct RequestLog {
    /// Ordinary lines; `None` when `LOG_REQUESTS_PER_SECOND` is 0.
    ordinary: Option<DefaultDirectRateLimiter>,
    /// 5xx answers and slow requests.
    notable: DefaultDirectRateLimiter,
    slow: Duration,
    /// Lines written and left out since start (`/metrics`).
    pub logged: AtomicU64,
    pub dropped: AtomicU64,
    /// Left out since the last line written.
    dropped_since: AtomicU64,
}

impl std::fmt::Debug for RequestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLog")
            .field("logged", &self.logged)
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl RequestLog {
    pub fn new(settings: &LogSettings) -> Self {
        let per_second = settings.requests_per_second;
        let notable =
            NonZeroU32::new(per_second.saturating_mul(10).max(1_000)).unwrap_or(NonZeroU32::MIN);
        Self {
            ordinary: NonZeroU32::new(per_second)
                .map(|n| RateLimiter::direct(Quota::per_second(n))),
            notable: RateLimiter::direct(Quota::per_second(notable)),
            slow: Duration::from_millis(settings.slow_request_ms),
            logged: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dropped_since: AtomicU64::new(0),
        }
    }

    /// Writes the line of a finished request, unless over its budget. `route` is asked for
    /// only when the line is written (it walks the routes).
    pub fn finish(
        &self,
        id: &str,
        method: &Method,
        route: impl FnOnce() -> Option<String>,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let slow = elapsed >= self.slow;
        let notable = slow || status.is_server_error();
        let level = match status.as_u16() {
            500..=502 | 504..=599 => log::Level::Error,
            _ if notable => log::Level::Warn,
            _ => log::Level::Info,
        };
        if !log::log_enabled!(level) {
            return;
        }
        let allowed = if notable {
            self.notable.check().is_ok()
        } else {
            self.ordinary.as_ref().is_some_and(|l| l.check().is_ok())
        };
        if !allowed {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_since.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.logged.fetch_add(1, Ordering::Relaxed);
        let dropped = self.dropped_since.swap(0, Ordering::Relaxed);
        let route = route().unwrap_or_else(|| "<unmatched>".into());
        let latency_ms = (elapsed.as_secs_f64() * 10_000.0).round() / 10.0;
        log::log!(
            level,
            request_id = id,
            method = method.as_str(),
            route = route.as_str(),
            status = status.as_u16(),
            latency_ms = latency_ms,
            dropped = dropped;
            "request"
        );
    }
}

/// The caller's `X-Request-Id` if it is safe to log and to send back, else a new one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_safe_id(v))
        .map_or_else(new_id, str::to_string)
}

/// 1 to `MAX_ID_LEN` characters of `[A-Za-z0-9._:-]`: nothing a log parser or a header would
/// read otherwise, and too short to carry a token (ours are longer).
pub fn is_safe_id(v: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// 16 random hex digits.
fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The header value of an id made by `request_id` (always a valid value).
pub fn header_value(id: &str) -> HeaderValue {
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_safe_caller_id_is_kept_and_anything_else_replaced() {
        let mut h = HeaderMap::new();
        assert_eq!(request_id(&h).len(), 16, "generated when absent");
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123.x_y:z"));
        assert_eq!(request_id(&h), "abc-123.x_y:z");
        for bad in ["a b", "a\"b", "a{b}", "é", ""] {
            assert!(!is_safe_id(bad), "{bad:?}");
        }
        assert!(!is_safe_id(&"a".repeat(MAX_ID_LEN + 1)));
        assert!(is_safe_id(&"a".repeat(MAX_ID_LEN)));
        h.insert(REQUEST_ID, HeaderValue::from_static("bad id"));
        let id = request_id(&h);
        assert_ne!(id, "bad id");
        assert!(is_safe_id(&id));
    }

    #[test]
    fn ordinary_lines_past_the_budget_are_counted_not_written() {
        let log = RequestLog::new(&LogSettings {
            requests_per_second: 5,
            ..LogSettings::default()
        });
        // No logger is installed in unit tests, so `finish` returns before its budget; the
        // budget itself is the limiter's.
        let allowed = (0..100)
            .filter(|_| log.ordinary.as_ref().unwrap().check().is_ok())
            .count();
        assert_eq!(allowed, 5);
        assert!(log.notable.check().is_ok(), "a budget of its own");
        let none = RequestLog::new(&LogSettings {
            requests_per_second: 0,
            ..LogSettings::default()
        });
        assert!(none.ordinary.is_none());
    }
}
