//! Booking codes and the shape of a booking as citizens and operators see it.

use rand::Rng;
use serde::Serialize;

/// Crockford's base32 alphabet: no I, L, O, U, so codes read aloud over the phone.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 12 characters of 5 bits: 60 random bits, far beyond guessing under the lookup limit.
pub const CODE_LEN: usize = 12;

pub fn new_code() -> String {
    let mut rng = rand::thread_rng();
    (0..CODE_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..32)] as char)
        .collect()
}

/// Normalises a code typed by a person (case, dashes, spaces); `None` if it cannot be one.
pub fn parse_code(input: &str) -> Option<String> {
    let code: String = input
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let ok = code.len() == CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b));
    ok.then_some(code)
}

pub const STATE_CONFIRMED: &str = "confirmed";
pub const STATE_CANCELLED: &str = "cancelled";
/// A supply change found no place for it (API 1.1): no places held, not live.
pub const STATE_NEEDS_REBOOKING: &str = "needs_rebooking";

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Dose {
    pub center_id: i32,
    pub slot_id: i32,
    #[schema(format = Date)]
    pub date: String,
    pub start_time: String,
}

/// A booking as answered over HTTP.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct BookingView {
    pub code: String,
    /// `needs_rebooking`: a supply change left no place for it (its places are freed; the
    /// citizen books again).
    #[schema(pattern = "^(confirmed|cancelled|needs_rebooking)$")]
    pub state: String,
    pub cohort_id: i32,
    pub vaccine: String,
    /// The citizen's name masked, e.g. `김*영`.
    pub name: String,
    pub first_dose: Dose,
    pub second_dose: Dose,
    /// The doses a supply change moved, oldest first (absent when none was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved: Option<Vec<crate::domain::rebooking::Move>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_twelve_characters_that_parse_back() {
        let c = new_code();
        assert_eq!(c.len(), CODE_LEN);
        assert_eq!(parse_code(&c.to_lowercase()), Some(c));
        assert_eq!(parse_code("short"), None);
        assert_eq!(parse_code("IIIIIIIIIIII"), None);
    }
}
