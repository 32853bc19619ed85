//! Why an SLA rule refused something, in the service desk's language.

use keel_core::{DomainError, ErrorClass};

/// Every way building a calendar or importing holidays can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlaError {
    /// The time zone is not an IANA zone name that Keel knows.
    #[error("unknown time zone `{0}`")]
    UnknownTimeZone(String),
    /// Weekly working hours that break a rule; the text says which.
    #[error("invalid working hours: {0}")]
    InvalidHours(String),
    /// A holiday that is not a date (for example 31 April every year).
    #[error("invalid holiday: {0}")]
    InvalidHoliday(String),
    /// An iCalendar text that cannot be read as holidays; the text says why.
    #[error("invalid iCalendar holidays: {0}")]
    InvalidIcs(String),
    /// A policy that breaks a rule; the text says which.
    #[error("invalid SLA policy: {0}")]
    InvalidPolicy(String),
}

impl DomainError for SlaError {
    fn code(&self) -> &'static str {
        match self {
            SlaError::UnknownTimeZone(_) => "sla.unknown_time_zone",
            SlaError::InvalidHours(_) => "sla.invalid_hours",
            SlaError::InvalidHoliday(_) => "sla.invalid_holiday",
            SlaError::InvalidIcs(_) => "sla.invalid_ics",
            SlaError::InvalidPolicy(_) => "sla.invalid_policy",
        }
    }

    fn class(&self) -> ErrorClass {
        match self {
            SlaError::UnknownTimeZone(_)
            | SlaError::InvalidHours(_)
            | SlaError::InvalidHoliday(_)
            | SlaError::InvalidIcs(_)
            | SlaError::InvalidPolicy(_) => ErrorClass::Invalid,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            SlaError::UnknownTimeZone(_) => Some("tz"),
            SlaError::InvalidHours(_) => Some("week"),
            SlaError::InvalidHoliday(_) | SlaError::InvalidIcs(_) => Some("holidays"),
            SlaError::InvalidPolicy(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_code_class_and_field() {
        let cases = [
            (
                SlaError::UnknownTimeZone("Mars/Olympus".into()),
                "sla.unknown_time_zone",
                Some("tz"),
            ),
            (
                SlaError::InvalidHours("x".into()),
                "sla.invalid_hours",
                Some("week"),
            ),
            (
                SlaError::InvalidHoliday("x".into()),
                "sla.invalid_holiday",
                Some("holidays"),
            ),
            (
                SlaError::InvalidIcs("x".into()),
                "sla.invalid_ics",
                Some("holidays"),
            ),
        ];
        for (e, code, field) in cases {
            assert_eq!(e.code(), code, "{e:?}");
            assert_eq!(e.class(), ErrorClass::Invalid, "{e:?}");
            assert_eq!(e.field(), field, "{e:?}");
        }
    }

    #[test]
    fn messages_name_what_was_wrong() {
        assert_eq!(
            SlaError::UnknownTimeZone("Mars/Olympus".into()).to_string(),
            "unknown time zone `Mars/Olympus`"
        );
    }
}
