//! Validated identity fields: usernames, email addresses, display names and
//! passwords.

use crate::text::{TextError, clean};

/// Why an identity field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeopleError {
    #[error(
        "a username is 2 to 64 characters: lowercase letters, digits, `.`, `_` or `-`, starting with a letter or digit"
    )]
    InvalidUsername,
    #[error("`{0}` is not a valid email address")]
    InvalidEmail(String),
    #[error("a password must be between {MIN_PASSWORD} and {MAX_PASSWORD} characters")]
    InvalidPassword,
    #[error(transparent)]
    Text(#[from] TextError),
}

impl crate::DomainError for PeopleError {
    fn code(&self) -> &'static str {
        match self {
            PeopleError::InvalidUsername => "user.invalid_username",
            PeopleError::InvalidEmail(_) => "user.invalid_email",
            PeopleError::InvalidPassword => "user.weak_password",
            PeopleError::Text(_) => "validation.invalid_text",
        }
    }
    fn class(&self) -> crate::ErrorClass {
        crate::ErrorClass::Invalid
    }
    fn field(&self) -> Option<&str> {
        Some(match self {
            PeopleError::InvalidUsername => "username",
            PeopleError::InvalidEmail(_) => "email",
            PeopleError::InvalidPassword => "password",
            PeopleError::Text(t) => t.field(),
        })
    }
}

pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 1024;

/// A login name, stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, PeopleError> {
        let s = raw.trim().to_lowercase();
        let ok_len = (2..=64).contains(&s.len());
        let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let chars_ok = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if ok_len && first_ok && chars_ok {
            Ok(Username(s))
        } else {
            Err(PeopleError::InvalidUsername)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, stored lowercase. Checked for shape only: the mail
/// server is the judge of whether it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, PeopleError> {
        let s = raw.trim().to_lowercase();
        let bad = || PeopleError::InvalidEmail(raw.chars().take(80).collect());
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && !domain.contains('@');
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(bad());
        }
        Ok(EmailAddress(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person's display name.
pub fn display_name(raw: &str) -> Result<String, PeopleError> {
    Ok(clean("display_name", raw, 200, true, false)?)
}

/// Checks a new password's length (in characters).
pub fn check_password(raw: &str) -> Result<(), PeopleError> {
    let n = raw.chars().count();
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        Ok(())
    } else {
        Err(PeopleError::InvalidPassword)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lowercased_and_restricted() {
        assert_eq!(
            Username::parse(" Alice.B ").map(|u| u.0),
            Ok("alice.b".into())
        );
        for bad in ["a", "-abc", "al ice", "al'ice", "ålice", &"x".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(EmailAddress::parse("Alice@Example.COM").is_ok());
        for bad in [
            "alice",
            "@example.com",
            "alice@localhost",
            "a@b@c.d",
            "a b@c.d",
            "a@.com",
            "a@c..d",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_have_a_minimum_length() {
        assert!(check_password("short").is_err());
        assert!(check_password("long enough pass").is_ok());
    }
}
