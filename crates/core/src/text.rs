//! Validated text. Strings from clients become these through one checking
//! constructor, so a length or control-character rule is enforced once.

use thiserror::Error;

/// Why a text value was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TextError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} contains control characters")]
    ControlChars { field: &'static str },
}

impl TextError {
    pub fn field(&self) -> &'static str {
        match self {
            TextError::Empty { field }
            | TextError::TooLong { field, .. }
            | TextError::ControlChars { field } => field,
        }
    }
}

/// Trims `raw` and checks it is non-empty (when `required`), at most `max`
/// characters as sent (before trimming, so the limit is one a client or a
/// JSON Schema `maxLength` can check), and free of control characters
/// (newlines and tabs allowed only when `multiline`).
pub fn clean(
    field: &'static str,
    raw: &str,
    max: usize,
    required: bool,
    multiline: bool,
) -> Result<String, TextError> {
    let s = raw.trim();
    if required && s.is_empty() {
        return Err(TextError::Empty { field });
    }
    if raw.chars().count() > max {
        return Err(TextError::TooLong { field, max });
    }
    let bad = |c: char| c.is_control() && !(multiline && (c == '\n' || c == '\r' || c == '\t'));
    if s.chars().any(bad) {
        return Err(TextError::ControlChars { field });
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(clean("title", "  hi ", 10, true, false), Ok("hi".into()));
        assert_eq!(
            clean("title", "   ", 10, true, false),
            Err(TextError::Empty { field: "title" })
        );
        assert!(matches!(
            clean("title", "abcdef", 5, true, false),
            Err(TextError::TooLong { .. })
        ));
        assert!(
            matches!(
                clean("title", " abcd ", 5, true, false),
                Err(TextError::TooLong { .. })
            ),
            "the limit counts what was sent"
        );
        assert!(clean("title", "a\u{0}b", 5, true, false).is_err());
        assert!(clean("body", "a\nb", 5, true, false).is_err());
        assert!(clean("body", "a\nb", 5, true, true).is_ok());
        assert_eq!(clean("x", "", 5, false, false), Ok(String::new()));
    }
}
