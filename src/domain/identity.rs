//! A citizen's identity as typed into the verification form, and what of it may be kept.

use super::{invalid, text, Invalid};
use chrono::{Datelike, NaiveDate};

/// What a citizen submits to be verified. Never logged, never stored as is.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityClaim {
    pub name: String,
    pub birth_date: NaiveDate,
    /// Digits only, e.g. `01012345678`.
    pub phone: String,
}

impl std::fmt::Debug for IdentityClaim {
    // Keeps personal data out of any log line that formats a claim by mistake.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityClaim { .. }")
    }
}

impl IdentityClaim {
    pub fn parse(name: &str, birth_date: &str, phone: &str) -> Result<Self, Invalid> {
        let name = text("name", name, 50)?;
        if name.contains('|') {
            return invalid("name must not contain '|'");
        }
        let birth_date = parse_birth_date(birth_date)?;
        let phone = parse_phone(phone)?;
        Ok(Self {
            name,
            birth_date,
            phone,
        })
    }

    /// The stable string the keyed hashes are taken over.
    pub fn canonical(&self) -> String {
        format!("{}|{}|{}", self.name, self.birth_date, self.phone)
    }

    pub fn birth_year(&self) -> i32 {
        self.birth_date.year()
    }
}

/// `YYYY-MM-DD`, a real day. Whether the day makes sense for the person (not in the future,
/// inside a cohort's years) is eligibility, not syntax: the verification answers it with 403
/// `not_eligible`, and a lookup simply finds no booking with it.
pub fn parse_birth_date(value: &str) -> Result<NaiveDate, Invalid> {
    parse_date("birth_date", value)
}

/// Strict `YYYY-MM-DD`: four, two and two ASCII digits (chrono alone would also take signs,
/// spaces and longer years), and a real day.
pub fn parse_date(field: &str, value: &str) -> Result<NaiveDate, Invalid> {
    let b = value.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shape {
        return invalid(format!("{field} must be YYYY-MM-DD"));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .or_else(|_| invalid(format!("{field} must be a real day as YYYY-MM-DD")))
}

/// A Korean mobile number: 010, then 7 or 8 digits; dashes and spaces are ignored.
pub fn parse_phone(value: &str) -> Result<String, Invalid> {
    let digits: String = value.chars().filter(|c| *c != '-' && *c != ' ').collect();
    let ok = digits.chars().all(|c| c.is_ascii_digit())
        && digits.starts_with("01")
        && (10..=11).contains(&digits.len());
    if !ok {
        return invalid("phone must be a mobile number such as 010-1234-5678");
    }
    Ok(digits)
}

/// The name as a booking may show it: first and last character kept, the rest masked
/// (`김민영` -> `김*영`, `이수` -> `이*`).
pub fn mask_name(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    match chars.len() {
        0 => String::new(),
        1 => "*".to_string(),
        2 => format!("{}*", chars[0]),
        n => {
            let mut s = String::new();
            s.push(chars[0]);
            s.extend(std::iter::repeat_n('*', n - 2));
            s.push(chars[n - 1]);
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_masked_as_the_help_desk_shows_them() {
        assert_eq!(mask_name("김민영"), "김*영");
        assert_eq!(mask_name("이수"), "이*");
        assert_eq!(mask_name("남궁민수"), "남**수");
        assert_eq!(mask_name("X"), "*");
    }

    #[test]
    fn phones_are_normalised_and_checked() {
        assert_eq!(parse_phone("010-1234-5678").unwrap(), "01012345678");
        assert!(parse_phone("02-123-4567").is_err());
        assert!(parse_phone("010-12a4-5678").is_err());
    }

    #[test]
    fn birth_dates_must_be_real_past_days() {
        assert!(parse_birth_date("1965-02-28").is_ok());
        assert!(parse_birth_date("1965-02-30").is_err());
        assert!(parse_birth_date("65-02-28").is_err());
        for odd in [
            " 965-03-01",
            "+965-03-01",
            "-001-01-01",
            "1965- 3-01",
            "01965-3-01",
        ] {
            assert!(parse_birth_date(odd).is_err(), "{odd}");
        }
        assert!(
            parse_birth_date("0005-01-01").is_ok(),
            "eligibility is not syntax"
        );
    }

    #[test]
    fn a_claim_never_prints_its_content() {
        let c = IdentityClaim::parse("김민영", "1965-03-01", "010-1234-5678").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("1965") && !shown.contains("민") && !shown.contains("1234"));
    }
}
