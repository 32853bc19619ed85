//! The list-query grammar shared by every record type.
//!
//! `?limit=50&sort=-updated_at&cursor=...` plus per-type filters. Sorting is
//! by one field with a unique tie-breaker (the record's sequence number), and
//! pagination is keyset-based: the opaque cursor carries the last row's sort
//! value and tie-breaker, so pages stay stable while records are added.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::{DomainError, ErrorClass};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;
/// Longest accepted full-text query, in characters.
pub const MAX_SEARCH_LEN: usize = 200;
/// Most terms a full-text query may have.
pub const MAX_SEARCH_TERMS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    #[error("limit must be between 1 and {MAX_LIMIT}")]
    InvalidLimit,
    #[error("cannot sort by `{0}`; sortable fields: {1}")]
    InvalidSort(String, String),
    #[error("the cursor is malformed or belongs to another sort order")]
    InvalidCursor,
    #[error("invalid filter `{0}`: {1}")]
    InvalidFilter(&'static str, String),
    #[error("the search query is too long or has too many terms")]
    SearchTooComplex,
}

impl DomainError for QueryError {
    fn code(&self) -> &'static str {
        match self {
            QueryError::InvalidLimit => "query.invalid_limit",
            QueryError::InvalidSort(..) => "query.invalid_sort",
            QueryError::InvalidCursor => "query.invalid_cursor",
            QueryError::InvalidFilter(..) => "query.invalid_filter",
            QueryError::SearchTooComplex => "query.search_too_complex",
        }
    }
    fn class(&self) -> ErrorClass {
        ErrorClass::Malformed
    }
    fn field(&self) -> Option<&str> {
        Some(match self {
            QueryError::InvalidLimit => "limit",
            QueryError::InvalidSort(..) => "sort",
            QueryError::InvalidCursor => "cursor",
            QueryError::InvalidFilter(f, _) => f,
            QueryError::SearchTooComplex => "q",
        })
    }
}

/// A page size between 1 and [`MAX_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u32);

impl Limit {
    pub fn parse(raw: Option<u32>) -> Result<Self, QueryError> {
        match raw {
            None => Ok(Limit(DEFAULT_LIMIT)),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(Limit(n)),
            Some(_) => Err(QueryError::InvalidLimit),
        }
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SortDir {
    Asc,
    Desc,
}

/// The fields a record type can be sorted by.
pub trait SortField: Copy + Eq + Sized + 'static {
    /// Every sortable field, for error messages.
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
    fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|f| f.name() == s)
    }
}

/// `sort=field` (ascending) or `sort=-field` (descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort<F> {
    pub field: F,
    pub dir: SortDir,
}

impl<F: SortField> Sort<F> {
    pub fn parse(raw: Option<&str>, default: Sort<F>) -> Result<Self, QueryError> {
        let Some(raw) = raw else { return Ok(default) };
        let (dir, name) = match raw.strip_prefix('-') {
            Some(rest) => (SortDir::Desc, rest),
            None => (SortDir::Asc, raw.strip_prefix('+').unwrap_or(raw)),
        };
        let field = F::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = F::ALL.iter().map(|f| f.name()).collect();
            QueryError::InvalidSort(truncate(raw, 40), names.join(", "))
        })?;
        Ok(Sort { field, dir })
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Where the previous page ended: the last row's sort value and tie-breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Sort field name the cursor was made for.
    #[serde(rename = "s")]
    pub sort: String,
    #[serde(rename = "d")]
    pub dir: SortDir,
    /// The last row's value of the sort field.
    #[serde(rename = "v")]
    pub value: serde_json::Value,
    /// The last row's unique tie-breaker (a record number, a name).
    #[serde(rename = "t")]
    pub tiebreak: serde_json::Value,
}

impl Cursor {
    pub fn encode(&self) -> String {
        // Serialising a struct of plain values cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a cursor and checks it was made for `sort`.
    pub fn decode<F: SortField>(raw: &str, sort: Sort<F>) -> Result<Self, QueryError> {
        if raw.len() > 1024 {
            return Err(QueryError::InvalidCursor);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| QueryError::InvalidCursor)?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| QueryError::InvalidCursor)?;
        if c.sort != sort.field.name() || c.dir != sort.dir {
            return Err(QueryError::InvalidCursor);
        }
        Ok(c)
    }
}

/// Splits a free-text search into at most [`MAX_SEARCH_TERMS`] plain word
/// terms (letters, digits, `_`; everything else separates words). The store
/// quotes each term for the database's own full-text syntax, so no client
/// text is ever interpreted as query operators.
pub fn search_terms(q: &str) -> Result<Vec<String>, QueryError> {
    if q.chars().count() > MAX_SEARCH_LEN {
        return Err(QueryError::SearchTooComplex);
    }
    let word = |c: char| c.is_alphanumeric() || c == '_';
    // Lower-casing can add characters that are not word characters ("İ"
    // becomes "i" and a combining dot); those are dropped from the word.
    let terms: Vec<String> = q
        .split(|c: char| !word(c))
        .map(|t| t.to_lowercase().chars().filter(|&c| word(c)).collect())
        .filter(|t: &String| !t.is_empty())
        .collect();
    if terms.len() > MAX_SEARCH_TERMS {
        return Err(QueryError::SearchTooComplex);
    }
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum F {
        Created,
        Priority,
    }
    impl SortField for F {
        const ALL: &'static [Self] = &[F::Created, F::Priority];
        fn name(self) -> &'static str {
            match self {
                F::Created => "created_at",
                F::Priority => "priority",
            }
        }
    }
    const DEFAULT: Sort<F> = Sort {
        field: F::Created,
        dir: SortDir::Desc,
    };

    #[test]
    fn limits_default_to_fifty_and_stop_at_two_hundred() {
        assert_eq!(Limit::parse(None).map(Limit::get), Ok(50));
        assert_eq!(Limit::parse(Some(200)).map(Limit::get), Ok(200));
        assert_eq!(Limit::parse(Some(201)), Err(QueryError::InvalidLimit));
        assert_eq!(Limit::parse(Some(0)), Err(QueryError::InvalidLimit));
    }

    #[test]
    fn sort_reads_a_leading_minus_as_descending() {
        assert_eq!(
            Sort::parse(Some("-priority"), DEFAULT),
            Ok(Sort {
                field: F::Priority,
                dir: SortDir::Desc
            })
        );
        assert_eq!(
            Sort::parse(Some("priority"), DEFAULT),
            Ok(Sort {
                field: F::Priority,
                dir: SortDir::Asc
            })
        );
        assert_eq!(Sort::parse(None, DEFAULT), Ok(DEFAULT));
        assert!(Sort::parse(Some("title; DROP TABLE"), DEFAULT).is_err());
    }

    #[test]
    fn a_cursor_round_trips_and_refuses_another_sort_order() {
        let c = Cursor {
            sort: "priority".into(),
            dir: SortDir::Asc,
            value: 3.into(),
            tiebreak: 17.into(),
        };
        let s = Sort {
            field: F::Priority,
            dir: SortDir::Asc,
        };
        assert_eq!(Cursor::decode(&c.encode(), s), Ok(c.clone()));
        assert!(Cursor::decode(&c.encode(), DEFAULT).is_err());
        assert!(Cursor::decode("not base64!", s).is_err());
        assert!(Cursor::decode("e30", s).is_err());
    }

    #[test]
    fn search_terms_drop_operators_and_are_bounded() {
        assert_eq!(
            search_terms("printer \"OR\" NEAR(x*)").ok(),
            Some(vec![
                "printer".into(),
                "or".into(),
                "near".into(),
                "x".into()
            ])
        );
        assert_eq!(
            search_terms("'; DROP TABLE incidents; --")
                .ok()
                .map(|v| v.len()),
            Some(3)
        );
        assert_eq!(search_terms("İSTANBUL").ok(), Some(vec!["istanbul".into()]));
        assert!(search_terms(&"a ".repeat(40)).is_err());
        assert!(search_terms(&"x".repeat(500)).is_err());
    }
}
