//! Time as Keel stores it: UTC, truncated to microseconds so that a value
//! reads back from SQLite and PostgreSQL exactly as it was written.

use chrono::{DateTime, SubsecRound, Utc};

pub type Timestamp = DateTime<Utc>;

/// Now, at the precision the databases keep.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}
