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

/// Trimmed text of 1..=max characters with no control characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    let v = value.trim();
    if v.is_empty() {
        return invalid(format!("{field} must not be empty"));
    }
    if v.chars().count() > max {
        return invalid(format!("{field} must be at most {max} characters"));
    }
    if v.chars().any(char::is_control) {
        return invalid(format!("{field} must not contain control characters"));
    }
    Ok(v.to_string())
}

/// A vaccine name: letters, digits, space, '-' and '.', at most 40 characters.
pub fn vaccine(value: &str) -> Result<String, Invalid> {
    let v = text("vaccine", value, 40)?;
    if !v
        .chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || c == '-' || c == '.')
    {
        return invalid("vaccine may hold letters, digits, spaces, '-' and '.' only");
    }
    Ok(v)
}
