//! Pure types and rules: no I/O, no actors, no HTTP. Everything a request carries is parsed
//! into one of these types at the boundary, so the layers behind never see unchecked input.

pub mod booking;
pub mod challenge;
pub mod client;
pub mod cohort;
pub mod identity;
pub mod leftover;
pub mod notification;
pub mod phone;
pub mod queue;
pub mod rebooking;
pub mod slot;
pub mod tokens;

/// A rule that input broke: becomes a 400/422 `validation` answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(msg.into()))
}

/// Text of at most `max` characters as sent, not blank, with no control characters; kept
/// trimmed. (The length is counted before trimming so that the rule is the one the OpenAPI
/// document can state: `maxLength` and a pattern.)
pub fn text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    if value.chars().count() > max {
        return invalid(format!("{field} must be at most {max} characters"));
    }
    let v = value.trim();
    if v.is_empty() {
        return invalid(format!("{field} must not be empty"));
    }
    if value.chars().any(char::is_control) {
        return invalid(format!("{field} must not contain control characters"));
    }
    Ok(v.to_string())
}

/// A vaccine name: ASCII letters, digits, space, '-' and '.', at most 40 characters.
pub fn vaccine(value: &str) -> Result<String, Invalid> {
    let v = text("vaccine", value, 40)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-' || c == '.')
    {
        return invalid("vaccine may hold ASCII letters, digits, spaces, '-' and '.' only");
    }
    Ok(v)
}

/// The rules above as JSON Schema patterns, for the OpenAPI document. Each must accept exactly
/// what its function accepts: schemathesis checks both directions in CI (valid data accepted,
/// invalid data refused).
/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    // By table, not `format!` per byte: the keyed citizen hash is made at every verification.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Hex back to bytes; `None` if it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

pub mod patterns {
    /// Not blank, no control character (`text`).
    pub const TEXT: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
    /// `text` without '|' (a citizen's name).
    pub const NAME: &str =
        r"^[^|\x00-\x1f\x7f-\x9f]*[^|\s\x00-\x1f\x7f-\x9f][^|\x00-\x1f\x7f-\x9f]*$";
    /// `vaccine`.
    pub const VACCINE: &str = r"^[A-Za-z0-9 .-]*[A-Za-z0-9.-][A-Za-z0-9 .-]*$";
    /// `identity::parse_phone`: 01, then 8 or 9 digits; spaces and dashes anywhere.
    pub const PHONE: &str = r"^[ -]*0[ -]*1([ -]*[0-9]){8,9}[ -]*$";
    /// `slot::parse_time`: HH:MM, 00:00 to 23:59.
    pub const TIME: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";
}

#[cfg(test)]
mod pattern_tests {
    use super::{identity, patterns, slot, text, vaccine};

    /// Each pattern accepts exactly the strings its parser accepts, on samples chosen at the
    /// edges (blank, padding, control characters, separators, lengths, ranges).
    #[test]
    fn the_documented_patterns_are_the_parsers() {
        let check = |pattern: &str, max: usize, ok: &dyn Fn(&str) -> bool, samples: &[&str]| {
            let re = regex::Regex::new(pattern).unwrap();
            for s in samples {
                let documented = re.is_match(s) && s.chars().count() <= max;
                assert_eq!(documented, ok(s), "pattern {pattern} on {s:?}");
            }
        };
        let texts = [
            "김민영",
            " 김민영 ",
            "",
            " ",
            "\t",
            "a\u{7}b",
            "a\u{85}",
            "\u{a0}x\u{a0}",
            "a|b",
            "\u{3000}",
            "\u{feff}",
            "x\n",
            "0",
            "Pfizer 2.0",
            "mRNA-1273",
            "_x",
            "Ⅻ",
            "é",
            &"가".repeat(50),
            &"가".repeat(51),
            &format!(" {}", "가".repeat(49)),
        ];
        check(patterns::TEXT, 50, &|s| text("t", s, 50).is_ok(), &texts);
        check(
            patterns::NAME,
            50,
            &|s| identity::IdentityClaim::parse(s, "1965-03-01", "010-1234-5678").is_ok(),
            &texts,
        );
        check(patterns::VACCINE, 40, &|s| vaccine(s).is_ok(), &texts);
        let phones = [
            "010-1234-5678",
            "01012345678",
            "0101234567",
            "010123456789",
            "011 123 4567",
            " 010-1234-5678 ",
            "02-123-4567",
            "010-12a4-5678",
            "",
            "--",
            "0-1-0-1-2-3-4-5-6-7",
            "010 1234 567",
            "+82 10 1234 5678",
        ];
        check(
            patterns::PHONE,
            usize::MAX,
            &|s| identity::parse_phone(s).is_ok(),
            &phones,
        );
        let times = [
            "00:00", "23:59", "24:00", "9:30", "09:60", "09:5", "0930", " 09:30",
        ];
        check(
            patterns::TIME,
            usize::MAX,
            &|s| slot::parse_time("t", s).is_ok(),
            &times,
        );
    }
}

/// Schemas of the strings the rules above accept, for `#[schema(schema_with = ...)]`.
pub mod schemas {
    use super::patterns;
    use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};

    fn string(pattern: &str, max: usize) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .max_length(Some(max))
            .build()
    }

    pub fn name() -> Object {
        string(patterns::NAME, 50)
    }
    pub fn text_50() -> Object {
        string(patterns::TEXT, 50)
    }
    pub fn text_100() -> Object {
        string(patterns::TEXT, 100)
    }
    pub fn text_200() -> Object {
        string(patterns::TEXT, 200)
    }
    pub fn vaccine() -> Object {
        string(patterns::VACCINE, 40)
    }
    pub fn phone() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(patterns::PHONE))
            .examples(["010-1234-5678"])
            .build()
    }
    pub fn time() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(patterns::TIME))
            .examples(["09:30"])
            .build()
    }
    pub fn date() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
            .build()
    }
    /// The digits of a birth-day rule: 0 to 9, at least one.
    pub fn digits() -> utoipa::openapi::schema::Array {
        let digit = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(9));
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(digit)
            .min_items(Some(1))
            .build()
    }
    pub fn instant() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .build()
    }
}

/// Reading whole numbers from JSON as JSON Schema counts them: `2769.0` is the integer 2769
/// (the OpenAPI document says `integer`, and a client may write any integral number).
pub mod whole {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    struct Whole<T>(PhantomData<T>);

    impl<T: TryFrom<i64>> Visitor<'_> for Whole<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a whole number")
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
            let v = i64::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))?;
            self.visit_i64(v)
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
            // Every integral f64 inside ±2^53 is exact; beyond that no id or count is meant.
            if v.fract() != 0.0 || v.abs() > 9_007_199_254_740_992.0 {
                return Err(E::custom(format!("{v} is not a whole number")));
            }
            self.visit_i64(v as i64)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
        d.deserialize_any(Whole(PhantomData))
    }

    /// An optional whole number (absent or null: `None`; use with `#[serde(default)]`).
    pub mod option {
        use serde::{Deserialize, Deserializer};

        #[derive(Deserialize)]
        #[serde(bound = "T: TryFrom<i64>")]
        struct Wrapped<T>(#[serde(deserialize_with = "super::deserialize")] T);

        pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<i64>>(
            d: D,
        ) -> Result<Option<T>, D::Error> {
            Ok(Option::<Wrapped<T>>::deserialize(d)?.map(|w| w.0))
        }
    }

    /// A list of whole numbers.
    pub mod list {
        use super::*;

        struct List<T>(PhantomData<T>);

        impl<'de, T: TryFrom<i64>> Visitor<'de> for List<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of whole numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Item<T>>()? {
                    out.push(v.0);
                }
                Ok(out)
            }
        }

        struct Item<T>(T);

        impl<'de, T: TryFrom<i64>> serde::Deserialize<'de> for Item<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                super::deserialize(d).map(Item)
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<i64>>(
            d: D,
        ) -> Result<Vec<T>, D::Error> {
            d.deserialize_seq(List(PhantomData))
        }
    }

    #[cfg(test)]
    mod tests {
        #[derive(serde::Deserialize, Debug)]
        struct S {
            #[serde(with = "super")]
            n: i32,
            #[serde(with = "super::list")]
            l: Vec<u8>,
        }

        #[test]
        fn integral_numbers_are_whole_and_nothing_else_is() {
            let s: S = serde_json::from_str(r#"{"n": 2769.0, "l": [1, 2.0]}"#).unwrap();
            assert_eq!((s.n, s.l), (2769, vec![1, 2]));
            for bad in [
                r#"{"n": 2769.5, "l": []}"#,
                r#"{"n": "1", "l": []}"#,
                r#"{"n": 3000000000, "l": []}"#,
                r#"{"n": 1, "l": [256]}"#,
                r#"{"n": 1, "l": [1.5]}"#,
                r#"{"n": 1e300, "l": []}"#,
            ] {
                assert!(serde_json::from_str::<S>(bad).is_err(), "{bad}");
            }
        }
    }
}
