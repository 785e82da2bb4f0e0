//! Phone numbers at rest (API 1.1 "Notifications": `to` is the phone given at verification,
//! never in plain text in the database or a log). A number is sealed with XChaCha20-Poly1305
//! under a 256-bit key that HKDF-SHA256 derives from `SECRET_KEY` with the label
//! `reservation/phone/v1` (a key of its own, so the token MAC key is never used to encrypt),
//! unless `PHONE_KEY` gives one. Each seal has a random 192-bit nonce, so one number sealed
//! twice looks different each time (nothing links two citizens by their ciphertext). The
//! sealed form is `base64url(nonce || ciphertext || tag)`: it travels inside the session token
//! and is stored beside the citizen, the sign-up and each pending message; it is opened only
//! by the sender, just before delivery.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const LABEL: &[u8] = b"reservation/phone/v1";
/// Bound into every seal: a sealed value of another kind never opens as a phone.
const AAD: &[u8] = b"phone";
const NONCE_LEN: usize = 24;

/// The phone key: seals and opens phone numbers.
#[derive(Clone)]
pub struct PhoneKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for PhoneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhoneKey(<redacted>)")
    }
}

impl PhoneKey {
    /// The key derived from the server's secret (HKDF-SHA256, label above, no salt: the
    /// secret is already a uniformly random key or a long passphrase the operators chose).
    pub fn derive(secret: &[u8]) -> Self {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, secret);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 × 32: this cannot fail.
        hk.expand(LABEL, &mut key)
            .expect("HKDF expands to 32 bytes");
        Self::from_bytes(&key)
    }

    /// A dedicated key (`PHONE_KEY`): 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, String> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("PHONE_KEY must be 64 hex digits (32 bytes)".into());
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| "PHONE_KEY must be 64 hex digits (32 bytes)".to_string())?;
        }
        Ok(Self::from_bytes(&key))
    }

    fn from_bytes(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// The number sealed, fresh nonce each time.
    pub fn seal(&self, phone: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: phone.as_bytes(),
                    aad: AAD,
                },
            )
            // Encryption fails only for messages beyond 256 GiB.
            .expect("a phone number encrypts");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The number, if `sealed` was sealed by this key and not altered.
    pub fn open(&self, sealed: &str) -> Option<String> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: AAD,
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }

    /// Whether `sealed` has the form of a sealed number (what a token may carry).
    pub fn looks_sealed(sealed: &str) -> bool {
        (40..=200).contains(&sealed.len())
            && sealed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_round_trips_and_never_shows_in_the_sealed_form() {
        let key = PhoneKey::derive(b"secret");
        let a = key.seal("01012345678");
        let b = key.seal("01012345678");
        assert_ne!(a, b, "a fresh nonce each time");
        assert!(!a.contains("01012345678"));
        assert!(PhoneKey::looks_sealed(&a));
        assert_eq!(key.open(&a).as_deref(), Some("01012345678"));
    }

    #[test]
    fn another_key_or_an_altered_seal_opens_nothing() {
        let key = PhoneKey::derive(b"secret");
        let sealed = key.seal("01012345678");
        assert_eq!(PhoneKey::derive(b"other").open(&sealed), None);
        let mut altered = sealed.into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(key.open(&String::from_utf8(altered).unwrap()), None);
        let dedicated = PhoneKey::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(dedicated.open(&key.seal("01012345678")), None);
        assert!(PhoneKey::from_hex("abc").is_err());
    }
}
