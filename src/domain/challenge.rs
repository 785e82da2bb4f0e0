//! Proof of work on join: the challenge a cohort asks of a join while its `join_difficulty`
//! is above 0, the check of a solution, and the rule by which a flood of joins raises the
//! difficulty by itself. A challenge is signed like the other tokens (`tokens::Signer`), so
//! any node checks it with one HMAC and a solution with one SHA-256; only its use is recorded.

use sha2::{Digest, Sha256};

/// How long a challenge may be solved and used.
pub const CHALLENGE_TTL_S: i64 = 120;

/// What a challenge says: which cohort, a random id (what the database records as used), the
/// leading zero bits it demands and until when it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub cohort_id: i32,
    /// 32 hex digits.
    pub id: String,
    pub difficulty: u32,
    pub expires_at: i64,
}

/// Whether SHA-256 of `challenge + ":" + nonce` starts with at least `bits` zero bits.
pub fn solves(challenge: &str, nonce: &str, bits: u32) -> bool {
    let mut h = Sha256::new();
    h.update(challenge.as_bytes());
    h.update(b":");
    h.update(nonce.as_bytes());
    leading_zero_bits(&h.finalize()) >= bits
}

/// Leading zero bits of a digest.
pub fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in digest {
        if *byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// A nonce as the contract has it: a decimal string (digits only, at most 20).
pub fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.len() <= 20 && nonce.bytes().all(|b| b.is_ascii_digit())
}

/// The first nonce (0, 1, 2, …) that solves `challenge` at `bits`, and the hashes tried.
pub fn solve(challenge: &str, bits: u32) -> (u64, u64) {
    let mut prefix = Sha256::new();
    prefix.update(challenge.as_bytes());
    prefix.update(b":");
    let mut nonce = 0u64;
    loop {
        let mut h = prefix.clone();
        h.update(nonce.to_string().as_bytes());
        if leading_zero_bits(&h.finalize()) >= bits {
            return (nonce, nonce + 1);
        }
        nonce += 1;
    }
}

/// Joins above this per second (at one node) may raise the difficulty; below it never.
pub const FLOOD_FLOOR_PER_S: f64 = 200.0;
/// Joins per second this many times the recent normal count as a flood.
pub const FLOOD_FACTOR: f64 = 8.0;
/// The recent normal: joins per second averaged over about a minute.
const NORMAL_TAU_S: f64 = 60.0;
/// The moment: joins per second averaged over about 3 seconds.
const NOW_TAU_S: f64 = 3.0;

/// One cohort's joins per second at this node, now and as usual (two exponentially weighted
/// moving averages of the count of joins, over about 3 s and about 60 s, sampled whenever a
/// challenge is asked for; a sample counts toward the normal at most `FLOOD_FACTOR` × the
/// normal, so that a flood does not become the normal within seconds), and the
/// bits they add to the cohort's `join_difficulty`: none below `FLOOD_FLOOR_PER_S` or below
/// `FLOOD_FACTOR` × the normal, then 1 plus 1 per doubling beyond it, up to 24 in all.
#[derive(Debug, Clone, Default)]
pub struct JoinPressure {
    last: Option<(i64, u64)>,
    now_per_s: f64,
    normal_per_s: f64,
}

impl JoinPressure {
    /// Takes in the count of joins so far (`joins`) at `now_ms`; samples less than 250 ms
    /// apart are folded into the next.
    pub fn sample(&mut self, now_ms: i64, joins: u64) {
        let Some((at, count)) = self.last else {
            self.last = Some((now_ms, joins));
            return;
        };
        let dt = (now_ms - at) as f64 / 1000.0;
        if dt < 0.25 {
            return;
        }
        let rate = joins.saturating_sub(count) as f64 / dt;
        let blend = |avg: f64, rate: f64, tau: f64| {
            let w = (-dt / tau).exp();
            avg * w + rate * (1.0 - w)
        };
        self.now_per_s = blend(self.now_per_s, rate, NOW_TAU_S);
        // A flood counts toward the normal at most as `FLOOD_FACTOR` × the normal, so that it
        // becomes the normal only slowly (it can grow about ×2.2 in 10 s): a minute or so.
        let counted = rate.min(FLOOD_FACTOR * self.normal_per_s.max(1.0));
        self.normal_per_s = blend(self.normal_per_s, counted, NORMAL_TAU_S);
        self.last = Some((now_ms, joins));
    }

    /// The bits a flood adds now (0 when there is none).
    pub fn extra_bits(&self) -> u32 {
        if self.now_per_s < FLOOD_FLOOR_PER_S {
            return 0;
        }
        let ratio = self.now_per_s / (FLOOD_FACTOR * self.normal_per_s.max(1.0));
        if ratio < 1.0 {
            return 0;
        }
        (1 + ratio.log2().floor() as u32).min(24)
    }

    /// The difficulty a new challenge demands of a cohort set at `base` bits: 0 stays 0
    /// (off); else `base` raised by a flood, at most 24.
    pub fn difficulty(&self, base: i32) -> u32 {
        if base <= 0 {
            return 0;
        }
        (base as u32 + self.extra_bits()).min(24)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_bits_count_whole_bytes_then_the_first_set_bit() {
        assert_eq!(leading_zero_bits(&[0xff]), 0);
        assert_eq!(leading_zero_bits(&[0x01, 0xff]), 7);
        assert_eq!(leading_zero_bits(&[0x00, 0x80]), 8);
        assert_eq!(leading_zero_bits(&[0x00, 0x00, 0x10]), 19);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn a_solution_found_passes_at_its_difficulty_and_a_neighbour_mostly_does_not() {
        let (nonce, tried) = solve("abc.def", 12);
        assert!(tried >= 1);
        assert!(solves("abc.def", &nonce.to_string(), 12));
        assert!(solves("abc.def", &nonce.to_string(), 0));
        // At 12 bits, one nonce in 4096 passes: of the 64 before the solution none does
        // (it is the first), and the solution does not solve another challenge at 20 bits
        // unless by a 1-in-a-million chance (checked against the digest itself).
        for n in nonce.saturating_sub(64)..nonce {
            assert!(!solves("abc.def", &n.to_string(), 12));
        }
        let mut h = Sha256::new();
        h.update(b"abc.deg:");
        h.update(nonce.to_string().as_bytes());
        let bits = leading_zero_bits(&h.finalize());
        assert_eq!(solves("abc.deg", &nonce.to_string(), 12), bits >= 12);
    }

    #[test]
    fn nonces_are_decimal_strings() {
        assert!(valid_nonce("0"));
        assert!(valid_nonce("18446744073709551615"));
        assert!(!valid_nonce(""));
        assert!(!valid_nonce("-1"));
        assert!(!valid_nonce("1e3"));
        assert!(!valid_nonce("123456789012345678901"));
    }

    #[test]
    fn a_flood_raises_the_difficulty_a_bit_per_doubling_and_off_stays_off() {
        let mut p = JoinPressure::default();
        let mut joins = 0;
        // Two minutes at 50 joins/s: the normal.
        for s in 0..120 {
            joins += 50;
            p.sample(s * 1000, joins);
        }
        assert_eq!(p.extra_bits(), 0);
        assert_eq!(p.difficulty(4), 4);
        // Then 6400 joins/s (128× the normal) for ten seconds.
        for s in 120..130 {
            joins += 6400;
            p.sample(s * 1000, joins);
        }
        let extra = p.extra_bits();
        assert!((2..=5).contains(&extra), "{extra}");
        assert_eq!(p.difficulty(4), 4 + extra);
        assert_eq!(p.difficulty(0), 0, "0 is off: never raised");
        assert_eq!(p.difficulty(23), 24, "capped");
    }

    #[test]
    fn a_rush_below_the_floor_raises_nothing() {
        let mut p = JoinPressure::default();
        let mut joins = 0;
        for s in 0..120 {
            joins += if s < 100 { 1 } else { 150 };
            p.sample(s * 1000, joins);
        }
        assert_eq!(p.extra_bits(), 0);
    }
}
