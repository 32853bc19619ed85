use keel_core::{DomainError, ErrorClass};
use sea_orm::{DbErr, RuntimeErr, SqlErr};

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
            _ if driver_says_gone(&e) => StoreError::Unavailable(e),
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

/// Whether the driver's own error says the server is out of reach: the
/// connection's socket or TLS session failed (a stopped server leaves
/// pooled connections that fail so on their next statement), or the server
/// answered with a SQLSTATE of [`is_connection_loss`].
fn driver_says_gone(e: &DbErr) -> bool {
    use sea_orm::SqlxError;
    let (DbErr::Exec(RuntimeErr::SqlxError(x)) | DbErr::Query(RuntimeErr::SqlxError(x))) = e else {
        return false;
    };
    match x.as_ref() {
        SqlxError::Io(_) | SqlxError::Tls(_) | SqlxError::PoolTimedOut | SqlxError::PoolClosed => {
            true
        }
        SqlxError::Database(d) => d.code().is_some_and(|c| is_connection_loss(&c)),
        _ => false,
    }
}

/// PostgreSQL's SQLSTATE classes for a server that went away: 08
/// (connection exception) and 57P (operator intervention: the server is
/// shutting down, crashed or is not yet accepting connections), which it
/// sends when it ends a session that is running a statement. (A pooled
/// connection whose server was stopped while it sat idle fails with an I/O
/// error instead; the restart test sees that one. SQLite's codes are plain
/// numbers, never of these classes.)
fn is_connection_loss(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || sqlstate.starts_with("57P")
}

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
    fn a_statement_on_a_connection_whose_server_went_away_is_unavailable() {
        // What a pooled PostgreSQL connection gives once its server was
        // stopped: sqlx's I/O error, whose message names no cause we match.
        let io = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify",
        );
        let e = DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(
            sea_orm::SqlxError::Io(io),
        )));
        let e = StoreError::from(e);
        assert!(matches!(e, StoreError::Unavailable(_)));
        assert_eq!(e.code(), "service.database_unavailable");
    }

    #[test]
    fn a_server_going_away_is_told_by_its_sqlstate_class() {
        for code in ["57P01", "57P02", "57P03", "08006", "08003"] {
            assert!(is_connection_loss(code), "{code}");
        }
        // Unique violation, deadlock, SQLite's SQLITE_BUSY and constraint.
        for code in ["23505", "40P01", "5", "2067"] {
            assert!(!is_connection_loss(code), "{code}");
        }
    }

    #[test]
    fn other_database_errors_stay_internal() {
        let e = StoreError::from(exec("no such table: nowhere"));
        assert_eq!(e.code(), "internal");
    }
}
