//! Incident full-text search: SQLite FTS5 or PostgreSQL tsvector, kept in
//! step with the incident and its comments inside the writing transaction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// How long a search's density ([`Density`]) is trusted.
const DENSITY_TTL: Duration = Duration::from_secs(60);

/// Most searches whose density [`Density`] keeps; one more starts afresh.
const DENSITY_KEPT: usize = 4_096;

/// Whether recent searches were dense, by their FTS5 query (terms and
/// columns), so that a search does not count its matches again: the count
/// reads up to [`DENSE`] matches, in a statement of its own (on SQLite, a
/// hand-off to a read connection's thread and back), for every search.
///
/// Density only chooses between two plans that give the same rows
/// ([`matches`]), so an answer up to [`DENSITY_TTL`] old is safe: at worst
/// the searches for words that just became common take the slower plan for
/// that long.
#[derive(Debug, Default)]
pub(crate) struct Density {
    kept: Mutex<HashMap<String, (bool, Instant)>>,
}

impl Density {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (bool, Instant)>> {
        // Nothing panics while holding it; a poisoned map is still whole.
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether at least [`DENSE`] incidents match (SQLite; counts no
    /// further): as last counted, if that was less than [`DENSITY_TTL`]
    /// ago.
    pub async fn is_dense<C: ConnectionTrait>(
        &self,
        db: &C,
        terms: &[String],
        include_internal: bool,
    ) -> Result<bool, StoreError> {
        if db.get_database_backend() == DatabaseBackend::Postgres {
            return Ok(false);
        }
        let query = fts_query(terms, include_internal);
        let kept = self
            .lock()
            .get(&query)
            .filter(|(_, at)| at.elapsed() < DENSITY_TTL)
            .map(|(dense, _)| *dense);
        if let Some(dense) = kept {
            return Ok(dense);
        }
        let dense = count_dense(db, query.clone()).await?;
        let mut kept = self.lock();
        if kept.len() >= DENSITY_KEPT {
            kept.clear();
        }
        kept.insert(query, (dense, Instant::now()));
        Ok(dense)
    }
}

/// Whether at least [`DENSE`] incidents match the FTS5 `query` (SQLite;
/// counts no further).
async fn count_dense<C: ConnectionTrait>(db: &C, query: String) -> Result<bool, StoreError> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM (SELECT rowid FROM incident_search WHERE incident_search MATCH ? LIMIT ?)",
            vec![query.into(), DENSE.into()],
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
/// `dense` (SQLite, see [`Density::is_dense`]) writes the column as `+number`, which
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

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::Database;

    /// An in-memory search table whose first `n` rows are about printers.
    async fn printers(n: u64) -> sea_orm::DatabaseConnection {
        let db = Database::connect("sqlite::memory:")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        db.execute_unprepared(
            "CREATE VIRTUAL TABLE incident_search USING fts5(
                title, description, public_comments, internal_comments,
                tokenize = 'porter unicode61')",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        add_printers(&db, n).await;
        db
    }

    async fn add_printers(db: &sea_orm::DatabaseConnection, n: u64) {
        db.execute_raw(stmt(
            DatabaseBackend::Sqlite,
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?)
             INSERT INTO incident_search (title, description, public_comments, internal_comments)
             SELECT 'Printer jams', 'Paper everywhere', '', '' FROM k",
            vec![n.into()],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn a_search_finds_the_same_incidents_in_either_plan_on_either_database() {
        use keel_migrations::{Migrator, MigratorTrait};
        use sea_orm::{
            ActiveModelTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
        };

        use crate::entities::incident;
        for (db, name) in crate::testdb::fresh_databases().await {
            let backend = db.get_database_backend();
            Migrator::up(&db, None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            crate::testdb::without_foreign_keys(&db, &["incidents"]).await;
            // Incident n: a printer when n is even, a VPN when n is a
            // multiple of 3, a note about the toner when n is a multiple
            // of 5 (internal), and number 7 has no search row at all.
            let mut rows = Vec::new();
            for n in 1..=40_i64 {
                let mut m = crate::testdb::incident(n).into_active_model().reset_all();
                m.title = sea_orm::Set(format!("Ticket {n}"));
                incident::Entity::insert(m)
                    .exec_without_returning(&db)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut title = Vec::new();
                if n % 2 == 0 {
                    title.push("printer jams");
                }
                if n % 3 == 0 {
                    title.push("vpn disconnecting");
                }
                let note = [("toner replaced", true)];
                let notes = if n % 5 == 0 { &note[..] } else { &[] };
                if n != 7 {
                    rows.push(SearchRow::new(
                        n,
                        &title.join(", "),
                        "",
                        notes.iter().copied(),
                    ));
                }
            }
            insert_rows(&db, rows)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let found = |words: &[&str], internal: bool, dense: bool| {
                let db = &db;
                let terms: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
                async move {
                    incident::Entity::find()
                        .select_only()
                        .column(incident::Column::Number)
                        .filter(matches(backend, &terms, internal, dense))
                        .order_by_desc(incident::Column::Number)
                        .into_tuple::<i64>()
                        .all(db)
                        .await
                        .unwrap_or_else(|e| panic!("{backend:?}: {e}"))
                }
            };
            let want =
                |f: fn(i64) -> bool| (1..=40_i64).rev().filter(|n| f(*n)).collect::<Vec<_>>();
            for dense in [false, true] {
                let case = format!("{backend:?}, dense {dense}");
                assert_eq!(
                    found(&["printer"], false, dense).await,
                    want(|n| n % 2 == 0),
                    "{case}"
                );
                assert_eq!(
                    found(&["printer", "vpn"], false, dense).await,
                    want(|n| n % 6 == 0),
                    "{case}"
                );
                assert_eq!(
                    found(&["toner"], true, dense).await,
                    want(|n| n % 5 == 0),
                    "{case}"
                );
                // Work notes are searched only when asked.
                assert_eq!(
                    found(&["toner"], false, dense).await,
                    Vec::<i64>::new(),
                    "{case}"
                );
                assert_eq!(
                    found(&["scanner"], true, dense).await,
                    Vec::<i64>::new(),
                    "{case}"
                );
            }
            crate::testdb::drop_database(db, name).await;
        }
    }

    #[tokio::test]
    async fn a_search_is_dense_from_its_two_thousandth_match_and_that_answer_is_kept() {
        let words = ["printer".to_owned()];
        let db = printers(DENSE - 1).await;
        let density = Density::default();
        assert!(!density.is_dense(&db, &words, true).await.unwrap_or(true));
        add_printers(&db, 1).await;
        assert!(
            !density.is_dense(&db, &words, true).await.unwrap_or(true),
            "counted a moment ago: not counted again"
        );
        assert!(
            Density::default()
                .is_dense(&db, &words, true)
                .await
                .unwrap_or(false),
            "counted afresh"
        );
        assert!(
            density.is_dense(&db, &words, false).await.unwrap_or(false),
            "a requester's search (other columns) is counted on its own"
        );
    }
}
