//! Shared vocabulary of every Keel practice: typed ids, human record numbers,
//! the acting user and what they may do, error classes, validated text, and
//! the list-query grammar (filters, sort, cursor pagination) that every
//! record type uses. No I/O, no HTTP, no SQL.

pub mod actor;
pub mod error;
pub mod ids;
pub mod number;
pub mod people;
pub mod query;
pub mod text;
pub mod time;

pub use actor::{Actor, Permission, Role, Scope};
pub use error::{DomainError, ErrorClass};
pub use ids::*;
pub use number::{RecordKind, RecordNumber};
