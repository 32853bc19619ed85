//! Incident full-text search: SQLite FTS5 or PostgreSQL tsvector, kept in
//! step with the incident and its comments inside the writing transaction.

use keel_incident::Visibility;
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder, Statement,
    Value,
};

use crate::StoreError;
use crate::entities::{comment, incident};
use crate::multi::Insert;

/// Rewrites `?` placeholders as `$1, $2, ...` for PostgreSQL.
pub(crate) fn sql(backend: DatabaseBackend, text: &str) -> String {
    if backend != DatabaseBackend::Postgres {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn stmt(backend: DatabaseBackend, text: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, sql(backend, text), values)
}

/// One incident's search row.
#[derive(Debug)]
pub(crate) struct SearchRow {
    pub number: i64,
    pub title: String,
    pub description: String,
    /// Public comments, one per line.
    pub public_comments: String,
    /// Internal work notes, one per line (searched by agents only).
    pub internal_comments: String,
}

impl SearchRow {
    /// The row of an incident with `comments` as (body, is internal), in
    /// the order they were written.
    pub fn new<'a>(
        number: i64,
        title: &str,
        description: &str,
        comments: impl IntoIterator<Item = (&'a str, bool)>,
    ) -> Self {
        let mut public_comments = String::new();
        let mut internal_comments = String::new();
        for (body, internal) in comments {
            let target = if internal {
                &mut internal_comments
            } else {
                &mut public_comments
            };
            target.push_str(body);
            target.push('\n');
        }
        SearchRow {
            number,
            title: title.to_owned(),
            description: description.to_owned(),
            public_comments,
            internal_comments,
        }
    }
}

/// The search table's key column, which holds the incident number.
fn key_column(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => "number",
        _ => "rowid",
    }
}

/// Inserts search rows (numbers not yet indexed) in one statement.
pub(crate) async fn insert_rows<C: ConnectionTrait>(
    db: &C,
    rows: Vec<SearchRow>,
) -> Result<(), StoreError> {
    if let Some(s) = insert_statement(db.get_database_backend(), rows) {
        db.execute_raw(s).await?;
    }
    Ok(())
}

/// Search rows as rows to insert on PostgreSQL (SQLite's search table is
/// keyed by `rowid`, which takes [`insert_statement`]).
pub(crate) fn pg_rows(rows: Vec<SearchRow>) -> Option<Insert> {
    if rows.is_empty() {
        return None;
    }
    Some(Insert {
        table: "incident_search",
        columns: vec![
            "number",
            "title",
            "description",
            "public_comments",
            "internal_comments",
        ],
        rows: rows
            .into_iter()
            .map(|r| {
                vec![
                    r.number.into(),
                    r.title.into(),
                    r.description.into(),
                    r.public_comments.into(),
                    r.internal_comments.into(),
                ]
            })
            .collect(),
    })
}

/// The insert [`insert_rows`] makes, to send with others.
pub(crate) fn insert_statement(
    backend: DatabaseBackend,
    rows: Vec<SearchRow>,
) -> Option<Statement> {
    if rows.is_empty() {
        return None;
    }
    let mut text = format!(
        "INSERT INTO incident_search ({}, title, description, public_comments, internal_comments) VALUES ",
        key_column(backend)
    );
    let mut values: Vec<Value> = Vec::with_capacity(rows.len() * 5);
    for (n, r) in rows.into_iter().enumerate() {
        if n > 0 {
            text.push_str(", ");
        }
        text.push_str("(?, ?, ?, ?, ?)");
        values.extend([
            r.number.into(),
            r.title.into(),
            r.description.into(),
            r.public_comments.into(),
            r.internal_comments.into(),
        ]);
    }
    Some(stmt(backend, &text, values))
}

/// Rebuilds the search row of one incident from its fields and comments.
pub(crate) async fn reindex<C: ConnectionTrait>(
    db: &C,
    m: &incident::Model,
) -> Result<(), StoreError> {
    let backend = db.get_database_backend();
    let comments = comment::Entity::find()
        .filter(comment::Column::RecordType.eq("incident"))
        .filter(comment::Column::RecordId.eq(m.id))
        .order_by_asc(comment::Column::CreatedAt)
        .all(db)
        .await?;
    let row = SearchRow::new(
        m.number,
        &m.title,
        &m.description,
        comments.iter().map(|c| {
            (
                c.body.as_str(),
                c.visibility == Visibility::Internal.as_str(),
            )
        }),
    );
    let del = format!(
        "DELETE FROM incident_search WHERE {} = ?",
        key_column(backend)
    );
    db.execute_raw(stmt(backend, &del, vec![m.number.into()]))
        .await?;
    insert_rows(db, vec![row]).await
}

/// Adds one comment to an incident's search row, as [`reindex`] would have
/// placed it (comments in the order written, one per line), without
/// reading the incident's other comments back.
pub(crate) async fn append_comment<C: ConnectionTrait>(
    db: &C,
    number: i64,
    body: &str,
    internal: bool,
) -> Result<(), StoreError> {
    let backend = db.get_database_backend();
    let column = if internal {
        "internal_comments"
    } else {
        "public_comments"
    };
    let text = format!(
        "UPDATE incident_search SET {column} = {column} || ? WHERE {} = ?",
        key_column(backend)
    );
    db.execute_raw(stmt(
        backend,
        &text,
        vec![format!("{body}\n").into(), number.into()],
    ))
    .await?;
    Ok(())
}

/// The FTS5 query for `terms`: each quoted, so none acts as an operator,
/// and limited to the public columns unless `include_internal`.
fn fts_query(terms: &[String], include_internal: bool) -> String {
    let phrases: Vec<String> = terms
        .iter()
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    let body = phrases.join(" AND ");
    if include_internal {
        body
    } else {
        format!("{{title description public_comments}} : ({body})")
    }
}

/// From how many matches on SQLite a search is "dense": enough that walking
/// the list's sort index and testing each incident against the matches
/// fills a page sooner than sorting every match.
pub(crate) const DENSE: u64 = 2_000;

/// Whether at least [`DENSE`] incidents match (SQLite; counts no further).
pub(crate) async fn is_dense<C: ConnectionTrait>(
    db: &C,
    terms: &[String],
    include_internal: bool,
) -> Result<bool, StoreError> {
    let backend = db.get_database_backend();
    if backend == DatabaseBackend::Postgres {
        return Ok(false);
    }
    let row = db
        .query_one_raw(stmt(
            backend,
            "SELECT count(*) AS n FROM (SELECT rowid FROM incident_search WHERE incident_search MATCH ? LIMIT ?)",
            vec![fts_query(terms, include_internal).into(), DENSE.into()],
        ))
        .await?;
    let n = match row {
        Some(r) => r.try_get::<i64>("", "n")?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0) >= DENSE)
}

/// SQLite, for searches ordered by number: join the FTS5 table to
/// `incidents` on the number and let it drive. FTS5 hands out matches by
/// rowid (the number) in either direction without sorting, so a page stops
/// after its last row instead of collecting every match first.
pub(crate) const FTS_JOIN: &str = "\"incident_search\".\"rowid\" = \"incidents\".\"number\"";

/// The FTS5 key, to order and bound a driven search ([`FTS_JOIN`]).
pub(crate) const FTS_KEY: &str = "\"incident_search\".\"rowid\"";

/// The MATCH condition of a driven search ([`FTS_JOIN`]).
pub(crate) fn fts_match(terms: &[String], include_internal: bool) -> SimpleExpr {
    Expr::cust_with_values(
        "\"incident_search\" MATCH ?",
        [fts_query(terms, include_internal)],
    )
}

/// A condition on `incidents.number` matching every term in `terms`.
/// `include_internal` widens the search to internal work notes (agents).
/// Terms are plain words (see `keel_core::query::search_terms`) and travel as
/// bound parameters; each is quoted for FTS5 so none acts as an operator.
///
/// `dense` (SQLite, see [`is_dense`]) writes the column as `+number`, which
/// keeps SQLite from looking every match up by number and sorting them all;
/// it walks the sort order's index instead and stops after one page.
pub(crate) fn matches(
    backend: DatabaseBackend,
    terms: &[String],
    include_internal: bool,
    dense: bool,
) -> SimpleExpr {
    match backend {
        DatabaseBackend::Postgres => {
            let doc = if include_internal {
                "all_doc"
            } else {
                "public_doc"
            };
            Expr::cust_with_values(
                format!(
                    "\"incidents\".\"number\" IN (SELECT number FROM incident_search WHERE {doc} @@ plainto_tsquery('english', $1))"
                ),
                [terms.join(" ")],
            )
        }
        _ => {
            let column = if dense {
                "+\"incidents\".\"number\""
            } else {
                "\"incidents\".\"number\""
            };
            Expr::cust_with_values(
                format!(
                    "{column} IN (SELECT rowid FROM incident_search WHERE incident_search MATCH ?)"
                ),
                [fts_query(terms, include_internal)],
            )
        }
    }
}
