use keel_core::{DomainError, ErrorClass};
use sea_orm::{DbErr, SqlErr};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist or the caller may not see it.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A rule of the record's practice refused the change.
    #[error(transparent)]
    Incident(#[from] keel_incident::IncidentError),
    /// A rule checked here refused the change (a reference, a permission).
    #[error("{message}")]
    Rule {
        code: &'static str,
        class: ErrorClass,
        field: Option<&'static str>,
        message: String,
    },
    /// The list query was malformed.
    #[error(transparent)]
    Query(#[from] keel_core::query::QueryError),
    /// `If-Match` named an older version than the record's.
    #[error("the record was changed by someone else (now version {current})")]
    VersionMismatch { current: i64 },
    /// The database cannot be reached.
    #[error("the database is unavailable")]
    Unavailable(#[source] DbErr),
    /// The database stayed locked by another writer past the wait (SQLite's
    /// busy timeout), or PostgreSQL broke a deadlock: the request may be
    /// retried as it was.
    #[error("the database is busy; retry shortly")]
    Busy(#[source] DbErr),
    /// Anything else the database said.
    #[error("database error")]
    Db(#[source] DbErr),
}

impl StoreError {
    pub fn rule(
        code: &'static str,
        class: ErrorClass,
        field: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        StoreError::Rule {
            code,
            class,
            field,
            message: message.into(),
        }
    }

    pub fn invalid(code: &'static str, field: &'static str, message: impl Into<String>) -> Self {
        Self::rule(code, ErrorClass::Invalid, Some(field), message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::rule(code, ErrorClass::Forbidden, None, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::rule(code, ErrorClass::Conflict, None, message)
    }
}

impl From<DbErr> for StoreError {
    fn from(e: DbErr) -> Self {
        match &e {
            DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => StoreError::Unavailable(e),
            _ if says_any(&e, CONNECTION_LOSS) => StoreError::Unavailable(e),
            _ if says_any(&e, BUSY) => StoreError::Busy(e),
            _ => StoreError::Db(e),
        }
    }
}

/// Errors raised mid-query when the server went away.
const CONNECTION_LOSS: &[&str] = &[
    "Connection refused",
    "connection closed",
    "broken pipe",
    "PoolTimedOut",
    "Io(",
];

/// Lock waits that ran out: SQLite's `SQLITE_BUSY` / `SQLITE_LOCKED`, and
/// PostgreSQL's deadlock, serialization and lock-not-available errors.
const BUSY: &[&str] = &[
    "database is locked",
    "database table is locked",
    "deadlock detected",
    "could not serialize access",
    "could not obtain lock",
];

/// Whether the error's message contains one of `needles` (the drivers give
/// these conditions no structured kind that both backends share).
fn says_any(e: &DbErr, needles: &[&str]) -> bool {
    let s = e.to_string();
    needles.iter().any(|m| s.contains(m))
}

/// Maps a unique violation on one of `constraints` (matched by PostgreSQL
/// constraint name or SQLite `table.column`) to a conflict with that code.
pub(crate) fn on_unique(
    e: DbErr,
    constraints: &[(&str, &'static str, &'static str)],
) -> StoreError {
    if let Some(SqlErr::UniqueConstraintViolation(msg)) = e.sql_err() {
        for (needle, code, message) in constraints {
            if needle.split('|').any(|n| msg.contains(n)) {
                return StoreError::conflict(code, *message);
            }
        }
    }
    StoreError::from(e)
}

impl DomainError for StoreError {
    fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not_found",
            StoreError::Incident(e) => e.code(),
            StoreError::Rule { code, .. } => code,
            StoreError::Query(e) => e.code(),
            StoreError::VersionMismatch { .. } => "precondition.version_mismatch",
            StoreError::Unavailable(_) => "service.database_unavailable",
            StoreError::Busy(_) => "service.busy",
            StoreError::Db(_) => "internal",
        }
    }

    fn class(&self) -> ErrorClass {
        match self {
            StoreError::NotFound(_) => ErrorClass::NotFound,
            StoreError::Incident(e) => e.class(),
            StoreError::Rule { class, .. } => *class,
            StoreError::Query(e) => e.class(),
            StoreError::VersionMismatch { .. } => ErrorClass::PreconditionFailed,
            StoreError::Unavailable(_) | StoreError::Busy(_) => ErrorClass::Unavailable,
            StoreError::Db(_) => ErrorClass::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            StoreError::Incident(e) => e.field(),
            StoreError::Rule { field, .. } => *field,
            StoreError::Query(e) => e.field(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(msg: &str) -> DbErr {
        DbErr::Custom(msg.to_owned())
    }

    #[test]
    fn a_lock_wait_that_ran_out_is_busy_and_says_retry() {
        for msg in [
            "error returned from database: (code: 5) database is locked",
            "error returned from database: deadlock detected",
            "error returned from database: could not serialize access due to concurrent update",
        ] {
            let e = StoreError::from(exec(msg));
            assert!(matches!(e, StoreError::Busy(_)), "{msg}");
            assert_eq!(e.code(), "service.busy");
            assert_eq!(e.class(), ErrorClass::Unavailable);
        }
    }

    #[test]
    fn other_database_errors_stay_internal() {
        let e = StoreError::from(exec("no such table: nowhere"));
        assert_eq!(e.code(), "internal");
    }
}
