//! Notifications (API 1.1): the kinds of message, their texts, and the sender's rules — the
//! jittered exponential backoff between attempts, when a message is given up as `failed`, and
//! the cap on messages per second toward the provider. No I/O.

use std::time::Duration;

/// What a message is about; its name is the `kind` of the webhook's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Booked,
    Cancelled,
    Moved,
    NeedsRebooking,
    LeftoverOffer,
    Reminder,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Booked => "booked",
            Kind::Cancelled => "cancelled",
            Kind::Moved => "moved",
            Kind::NeedsRebooking => "needs_rebooking",
            Kind::LeftoverOffer => "leftover_offer",
            Kind::Reminder => "reminder",
        }
    }
}

/// A message's state, as the admin endpoint shows it.
pub const STATE_PENDING: &str = "pending";
pub const STATE_SENT: &str = "sent";
pub const STATE_FAILED: &str = "failed";

/// The texts, short enough for one SMS segment in Korean and English. They hold no name,
/// no birth date and no token: a booking code and where and when.
pub fn booked_text(code: &str, first: (&str, &str), second: (&str, &str)) -> String {
    format!(
        "[예약 확정 Booked] {code}: 1차 dose 1 {} {}, 2차 dose 2 {} {}",
        first.0, first.1, second.0, second.1
    )
}

pub fn cancelled_text(code: &str) -> String {
    format!("[예약 취소 Cancelled] {code}")
}

pub fn reminder_text(code: &str, dose: i32, date: &str, start: &str) -> String {
    format!("[내일 접종 Tomorrow] {code}: {dose}차 dose {dose} {date} {start}")
}

/// A dose moved by a supply change: where it is now.
pub fn moved_text(code: &str, dose: u8, date: &str, start: &str, center_id: i32) -> String {
    format!("[예약 변경 Moved] {code}: {dose}차 dose {dose} → {date} {start}, center {center_id}")
}

pub fn needs_rebooking_text(code: &str) -> String {
    format!("[재예약 필요 Rebook] {code}: supply changed and no place was found; please book again")
}

pub fn leftover_offer_text(center_id: i32, minutes: i64) -> String {
    format!(
        "[잔여백신 Leftover dose] center {center_id}: held for you for {minutes} min; accept it on the site"
    )
}

/// The local hour from which the reminders of tomorrow's doses are written (and so sent):
/// nobody wants a text at midnight about the day after.
pub const REMINDER_FROM_HOUR: u32 = 9;

/// How the sender retries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryRules {
    /// The first backoff; each further attempt doubles it, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts at most; the message is `failed` after the last one fails.
    pub max_attempts: u32,
    /// A message older than this is `failed` at its next failure, whatever its attempts.
    pub max_age: Duration,
}

impl Default for RetryRules {
    fn default() -> Self {
        Self {
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_attempts: 10,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryRules {
    /// The wait after the `attempts`-th failed attempt (1 = the first): `base × 2^(attempts-1)`
    /// capped, then jittered to between half and all of it (`unit` in [0, 1)), so that many
    /// messages failing together do not come back together.
    pub fn backoff(&self, attempts: u32, unit: f64) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let full = self
            .base_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        full.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// Whether a message that has now failed `attempts` times, created `age` ago, is given up.
    pub fn gives_up(&self, attempts: u32, age: Duration) -> bool {
        attempts >= self.max_attempts || age >= self.max_age
    }
}

/// A cap on messages per second: a bucket of at most one second's worth of tokens, refilled
/// continuously. What the sender may start now is what `take` grants.
#[derive(Debug, Clone)]
pub struct RateCap {
    per_s: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl RateCap {
    pub fn new(per_s: u32, now: std::time::Instant) -> Self {
        let per_s = f64::from(per_s.max(1));
        Self {
            per_s,
            // Starts with one token, not a full bucket: a restart never bursts.
            tokens: 1.0,
            last: now,
        }
    }

    /// Returns sends granted but not used.
    pub fn give_back(&mut self, n: usize) {
        self.tokens = (self.tokens + n as f64).min(self.per_s.max(1.0));
    }

    /// Up to `want` sends allowed now.
    pub fn take(&mut self, want: usize, now: std::time::Instant) -> usize {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.per_s).min(self.per_s.max(1.0));
        let n = (self.tokens.floor() as usize).min(want);
        self.tokens -= n as f64;
        n
    }
}

/// A new message id: 128 random bits, hex. Stable for the message's life, so a receiver can
/// drop a repeat delivery.
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    super::hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_is_jittered_within_half() {
        let r = RetryRules {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetryRules::default()
        };
        assert_eq!(r.backoff(1, 1.0), Duration::from_millis(100));
        assert_eq!(r.backoff(2, 1.0), Duration::from_millis(200));
        assert_eq!(r.backoff(3, 0.0), Duration::from_millis(200));
        assert_eq!(r.backoff(10, 1.0), Duration::from_millis(1000));
        assert_eq!(r.backoff(40, 0.0), Duration::from_millis(500));
    }

    #[test]
    fn a_message_is_given_up_after_its_attempts_or_its_age() {
        let r = RetryRules {
            max_attempts: 3,
            max_age: Duration::from_secs(60),
            ..RetryRules::default()
        };
        assert!(!r.gives_up(2, Duration::from_secs(1)));
        assert!(r.gives_up(3, Duration::from_secs(1)));
        assert!(r.gives_up(1, Duration::from_secs(60)));
    }

    #[test]
    fn the_rate_cap_grants_no_more_than_its_rate_over_time() {
        let t0 = Instant::now();
        let mut cap = RateCap::new(10, t0);
        let mut granted = cap.take(100, t0);
        for ms in (10..=2000).step_by(10) {
            granted += cap.take(100, t0 + Duration::from_millis(ms));
        }
        // One to start with, then ten a second for two seconds.
        assert!((20..=21).contains(&granted), "{granted}");
    }
}
