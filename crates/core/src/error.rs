//! Error classes. Each crate has its own error enum in its own language; every
//! variant names a stable machine code (`incident.invalid_transition`) and a
//! class. The API maps classes to HTTP statuses in one place.

/// What kind of failure an error is, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request itself is malformed: bad query parameters, unparsable body (400).
    Malformed,
    /// The input is well-formed but breaks a rule (422).
    Invalid,
    /// Not authenticated (401).
    Unauthenticated,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// Does not exist, or the caller may not know it exists (404).
    NotFound,
    /// Conflicts with the current state (409).
    Conflict,
    /// A precondition such as `If-Match` failed (412).
    PreconditionFailed,
    /// A precondition header is required but missing (428).
    PreconditionRequired,
    /// Too many attempts (429).
    TooManyRequests,
    /// A dependency (the database) is unavailable (503).
    Unavailable,
    /// A bug or an unexpected failure (500).
    Internal,
}

/// Implemented by every crate's error enum.
pub trait DomainError: std::error::Error {
    /// Stable machine code, `area.what`.
    fn code(&self) -> &'static str;
    fn class(&self) -> ErrorClass;
    /// The field the error is about, when there is one.
    fn field(&self) -> Option<&str> {
        None
    }
}
