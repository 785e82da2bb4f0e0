//! Signed opaque tokens: tickets (a place in a queue), passes (admission out of it),
//! sessions (a verified citizen) and join challenges. Each is `base64url(payload).base64url(mac)`, where the MAC
//! is HMAC-SHA256 under the server's secret, truncated to 128 bits. Verifying one needs the
//! key only, never the database, so any handler on any node can check it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use super::challenge::Challenge;

type HmacSha256 = Hmac<Sha256>;

const MAC_LEN: usize = 16;

/// Why a token was refused. The HTTP layer maps every variant to the same 401 for its kind:
/// a client learns nothing from the difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    WrongKind,
    Expired,
}

/// A place in a cohort's queue. Carries its own number, so the queue keeps counters only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub cohort_id: i32,
    pub seq: u64,
}

/// Admission out of the queue, bound to one ticket of one cohort, valid until `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub cohort_id: i32,
    pub seq: u64,
    pub expires_at: i64,
}

/// A citizen vouched for by the identity provider, allowed to book in one cohort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub cohort_id: i32,
    pub seq: u64,
    /// Keyed hash of the vouched identity (hex).
    pub citizen_key: String,
    /// `YYYY-MM-DD`
    pub birth_date: String,
    pub expires_at: i64,
    pub masked_name: String,
    /// The phone given at verification, sealed with the phone key (`domain::phone`): the
    /// token's payload is readable by its holder, the number in it is not. `None` in sessions
    /// issued before notifications (kind `s`).
    pub phone: Option<String>,
}

/// A sign-up for leftover doses (`POST /api/v1/leftovers/waitlist`), valid until the end of
/// its day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: i32,
    pub expires_at: i64,
}

/// Signs and checks tokens with one secret key.
#[derive(Clone)]
pub struct Signer {
    mac: HmacSha256,
}

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        // HMAC takes keys of any length; this cannot fail.
        let mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
        Self { mac }
    }

    fn tag(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Keyed hash of a string for a given purpose, hex encoded (`bytes` long before encoding).
    pub fn keyed_hash(&self, purpose: &str, data: &str, bytes: usize) -> String {
        let mut mac = self.mac.clone();
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data.as_bytes());
        let full = mac.finalize().into_bytes();
        super::hex(&full[..bytes.min(full.len())])
    }

    fn seal(&self, payload: &str) -> String {
        let tag = self.tag(payload.as_bytes());
        let mut out = URL_SAFE_NO_PAD.encode(payload.as_bytes());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(tag));
        out
    }

    fn open(&self, token: &str) -> Result<String, TokenError> {
        if token.len() > 1024 {
            return Err(TokenError::Malformed);
        }
        let (body, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(&payload);
        mac.verify_truncated_left(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        if tag.len() != MAC_LEN {
            return Err(TokenError::BadSignature);
        }
        String::from_utf8(payload).map_err(|_| TokenError::Malformed)
    }

    pub fn ticket(&self, t: &Ticket) -> String {
        self.seal(&format!("t|{}|{}", t.cohort_id, t.seq))
    }

    pub fn pass(&self, p: &Pass) -> String {
        self.seal(&format!("p|{}|{}|{}", p.cohort_id, p.seq, p.expires_at))
    }

    pub fn session(&self, s: &Session) -> String {
        match &s.phone {
            Some(phone) => self.seal(&format!(
                "S|{}|{}|{}|{}|{}|{}|{}",
                s.cohort_id, s.seq, s.citizen_key, s.birth_date, s.expires_at, phone, s.masked_name
            )),
            None => self.seal(&format!(
                "s|{}|{}|{}|{}|{}|{}",
                s.cohort_id, s.seq, s.citizen_key, s.birth_date, s.expires_at, s.masked_name
            )),
        }
    }

    pub fn entry(&self, e: &Entry) -> String {
        self.seal(&format!("l|{}|{}", e.id, e.expires_at))
    }

    pub fn check_entry(&self, token: &str, now: i64) -> Result<Entry, TokenError> {
        let payload = self.open(token)?;
        let mut it = payload.split('|');
        if it.next() != Some("l") {
            return Err(TokenError::WrongKind);
        }
        let entry = Entry {
            id: num(it.next())?,
            expires_at: num(it.next())?,
        };
        end(it.next())?;
        if now >= entry.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(entry)
    }

    /// A join's challenge (`domain::challenge`): its text is what a solution hashes.
    pub fn challenge(&self, c: &Challenge) -> String {
        self.seal(&format!(
            "c|{}|{}|{}|{}",
            c.cohort_id, c.id, c.difficulty, c.expires_at
        ))
    }

    pub fn check_challenge(&self, token: &str, now: i64) -> Result<Challenge, TokenError> {
        let payload = self.open(token)?;
        let mut it = payload.split('|');
        if it.next() != Some("c") {
            return Err(TokenError::WrongKind);
        }
        let challenge = Challenge {
            cohort_id: num(it.next())?,
            id: it.next().ok_or(TokenError::Malformed)?.to_string(),
            difficulty: num(it.next())?,
            expires_at: num(it.next())?,
        };
        end(it.next())?;
        if now >= challenge.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(challenge)
    }

    pub fn check_ticket(&self, token: &str) -> Result<Ticket, TokenError> {
        let payload = self.open(token)?;
        let mut it = payload.split('|');
        if it.next() != Some("t") {
            return Err(TokenError::WrongKind);
        }
        let cohort_id = num(it.next())?;
        let seq = num(it.next())?;
        end(it.next())?;
        Ok(Ticket { cohort_id, seq })
    }

    pub fn check_pass(&self, token: &str, now: i64) -> Result<Pass, TokenError> {
        let payload = self.open(token)?;
        let mut it = payload.split('|');
        if it.next() != Some("p") {
            return Err(TokenError::WrongKind);
        }
        let pass = Pass {
            cohort_id: num(it.next())?,
            seq: num(it.next())?,
            expires_at: num(it.next())?,
        };
        end(it.next())?;
        if now >= pass.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(pass)
    }

    pub fn check_session(&self, token: &str, now: i64) -> Result<Session, TokenError> {
        let payload = self.open(token)?;
        // The masked name comes last and may hold anything but control characters. `S`
        // carries the sealed phone before it; `s` (sessions from before) carries none.
        let with_phone = match payload.split('|').next() {
            Some("S") => true,
            Some("s") => false,
            _ => return Err(TokenError::WrongKind),
        };
        let mut it = payload.splitn(if with_phone { 8 } else { 7 }, '|').skip(1);
        let cohort_id = num(it.next())?;
        let seq = num(it.next())?;
        let citizen_key = it.next().ok_or(TokenError::Malformed)?.to_string();
        let birth_date = it.next().ok_or(TokenError::Malformed)?.to_string();
        let expires_at = num(it.next())?;
        let phone = if with_phone {
            Some(it.next().ok_or(TokenError::Malformed)?.to_string())
        } else {
            None
        };
        let session = Session {
            cohort_id,
            seq,
            citizen_key,
            birth_date,
            expires_at,
            masked_name: it.next().ok_or(TokenError::Malformed)?.to_string(),
            phone,
        };
        if now >= session.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(session)
    }
}

fn num<T: std::str::FromStr>(part: Option<&str>) -> Result<T, TokenError> {
    part.and_then(|p| p.parse().ok())
        .ok_or(TokenError::Malformed)
}

fn end(part: Option<&str>) -> Result<(), TokenError> {
    match part {
        None => Ok(()),
        Some(_) => Err(TokenError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(b"test key")
    }

    #[test]
    fn a_ticket_round_trips_and_a_flipped_character_is_refused() {
        let s = signer();
        let t = Ticket {
            cohort_id: 3,
            seq: 41,
        };
        let token = s.ticket(&t);
        assert_eq!(s.check_ticket(&token), Ok(t));
        let mut bytes = token.into_bytes();
        bytes[2] ^= 0x01;
        let forged = String::from_utf8(bytes).unwrap();
        assert!(s.check_ticket(&forged).is_err());
    }

    #[test]
    fn a_token_of_one_kind_is_not_accepted_as_another() {
        let s = signer();
        let ticket = s.ticket(&Ticket {
            cohort_id: 1,
            seq: 1,
        });
        assert_eq!(s.check_pass(&ticket, 0), Err(TokenError::WrongKind));
        assert_eq!(s.check_session(&ticket, 0), Err(TokenError::WrongKind));
    }

    #[test]
    fn an_expired_pass_is_refused() {
        let s = signer();
        let token = s.pass(&Pass {
            cohort_id: 1,
            seq: 1,
            expires_at: 100,
        });
        assert!(s.check_pass(&token, 99).is_ok());
        assert_eq!(s.check_pass(&token, 100), Err(TokenError::Expired));
    }

    #[test]
    fn a_challenge_round_trips_and_expires() {
        let s = signer();
        let c = Challenge {
            cohort_id: 4,
            id: "00ff".into(),
            difficulty: 9,
            expires_at: 100,
        };
        let token = s.challenge(&c);
        assert_eq!(s.check_challenge(&token, 99), Ok(c));
        assert_eq!(s.check_challenge(&token, 100), Err(TokenError::Expired));
        assert_eq!(s.check_ticket(&token), Err(TokenError::WrongKind));
    }

    #[test]
    fn a_leftover_entry_round_trips_expires_and_is_no_ticket() {
        let s = signer();
        let e = Entry {
            id: 7,
            expires_at: 100,
        };
        let token = s.entry(&e);
        assert_eq!(s.check_entry(&token, 99), Ok(e));
        assert_eq!(s.check_entry(&token, 100), Err(TokenError::Expired));
        assert_eq!(s.check_ticket(&token), Err(TokenError::WrongKind));
        let ticket = s.ticket(&Ticket {
            cohort_id: 7,
            seq: 100,
        });
        assert_eq!(s.check_entry(&ticket, 0), Err(TokenError::WrongKind));
    }

    #[test]
    fn another_key_does_not_verify() {
        let token = signer().ticket(&Ticket {
            cohort_id: 1,
            seq: 1,
        });
        assert_eq!(
            Signer::new(b"other").check_ticket(&token),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_session_keeps_a_masked_name_with_separators() {
        let s = signer();
        let session = Session {
            cohort_id: 2,
            seq: 9,
            citizen_key: "ab".into(),
            birth_date: "1965-03-01".into(),
            expires_at: 500,
            masked_name: "김|*영".into(),
            phone: None,
        };
        assert_eq!(
            s.check_session(&s.session(&session), 10),
            Ok(session.clone())
        );
        let with_phone = Session {
            phone: Some("c2VhbGVkLXBob25lLW51bWJlci1ub3QtcmVhZGFibGU".into()),
            ..session
        };
        assert_eq!(s.check_session(&s.session(&with_phone), 10), Ok(with_phone));
    }
}
