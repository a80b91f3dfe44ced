//! Checks for the free-text and identifier fields of requests.
use super::error::FieldViolation;

/// A human-readable name: 1 to `max` characters, trimmed, no control characters.
pub fn display_name(field: &str, value: &str, max: usize) -> Result<String, FieldViolation> {
    let trimmed = value.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(FieldViolation::new(
            field,
            "is required and must not be blank",
        ));
    }
    if chars > max {
        return Err(FieldViolation::new(
            field,
            format!("is {chars} characters long; at most {max} are allowed"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldViolation::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_string())
}

/// A machine identifier chosen by a client (request ids, external references): 1 to `max`
/// printable ASCII characters without spaces.
pub fn identifier(field: &str, value: &str, max: usize) -> Result<String, FieldViolation> {
    if value.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    if value.len() > max {
        return Err(FieldViolation::new(
            field,
            format!(
                "is {} characters long; at most {max} are allowed",
                value.len()
            ),
        ));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FieldViolation::new(
            field,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(value.to_string())
}

/// An IANA time zone name such as "Africa/Johannesburg".
pub fn time_zone(field: &str, value: &str) -> Result<String, FieldViolation> {
    value
        .parse::<chrono_tz::Tz>()
        .map(|tz| tz.name().to_string())
        .map_err(|_| {
            FieldViolation::new(
                field,
                format!("{value:?} is not an IANA time zone (e.g. \"Africa/Johannesburg\")"),
            )
        })
}

pub const REQUEST_ID_MAX: usize = 128;
pub const NAME_MAX: usize = 200;

/// The request id of a mutating call: required on creates, optional on updates.
pub fn request_id(value: &str, required: bool) -> Result<Option<String>, FieldViolation> {
    if value.is_empty() && !required {
        return Ok(None);
    }
    identifier("request_id", value, REQUEST_ID_MAX).map(Some)
}
