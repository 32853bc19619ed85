//! Authentication primitives: argon2id password hashes, short-lived access
//! JWTs (HS256 only, every registered claim checked), opaque refresh and API
//! tokens stored as SHA-256 hashes, and the failed-login throttle. No I/O.

pub mod jwt;
pub mod password;
pub mod throttle;
pub mod tokens;

use keel_core::{DomainError, ErrorClass};

/// Why a caller could not be authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("authentication is required")]
    Missing,
    #[error("the access token is invalid")]
    InvalidToken,
    #[error("the access token has expired")]
    Expired,
    #[error("the refresh token is invalid, expired or revoked")]
    InvalidRefresh,
    #[error("too many failed logins; try again in {retry_after} seconds")]
    Throttled { retry_after: u64 },
    #[error("the account is disabled")]
    Disabled,
    #[error("could not hash the password")]
    Hash,
}

impl DomainError for AuthError {
    fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidCredentials => "auth.invalid_credentials",
            AuthError::Missing => "auth.required",
            AuthError::InvalidToken => "auth.invalid_token",
            AuthError::Expired => "auth.token_expired",
            AuthError::InvalidRefresh => "auth.invalid_refresh_token",
            AuthError::Throttled { .. } => "auth.throttled",
            AuthError::Disabled => "auth.account_disabled",
            AuthError::Hash => "internal",
        }
    }
    fn class(&self) -> ErrorClass {
        match self {
            AuthError::Throttled { .. } => ErrorClass::TooManyRequests,
            AuthError::Hash => ErrorClass::Internal,
            _ => ErrorClass::Unauthenticated,
        }
    }
}
