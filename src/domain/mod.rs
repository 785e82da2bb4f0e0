//! Pure types and rules: no I/O, no actors, no HTTP. Everything a request carries is parsed
//! into one of these types at the boundary, so the layers behind never see unchecked input.

pub mod booking;
pub mod cohort;
pub mod identity;
pub mod queue;
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
    if v.chars().any(char::is_control) {
        return invalid(format!("{field} must not contain control characters"));
    }
    Ok(v.to_string())
}

/// A vaccine name: ASCII letters, digits, space, '-' and '.', at most 40 characters.
pub fn vaccine(value: &str) -> Result<String, Invalid> {
    let v = text("vaccine", value, 40)?;
    if !v
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
