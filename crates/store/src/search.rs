//! Incident full-text search: SQLite FTS5 or PostgreSQL tsvector, kept in
//! step with the incident and its comments inside the writing transaction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keel_incident::Visibility;
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder, Statement,
    Value, Values,
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

/// From how many matches a search is "dense" on SQLite: enough that
/// walking the list's sort index and testing each incident against the
/// matches fills a page sooner than sorting every match. PostgreSQL
/// measures density otherwise ([`WALK`]).
pub(crate) const DENSE: u64 = 2_000;

/// On PostgreSQL, how many of the newest search rows a dense search's walk
/// for one page may read ([`Density::is_dense`]): a page of 21 at a
/// density of 0.5 %, 3-5 ms. Finding that a search is not dense reads
/// them all, once a minute per words and page size: 4.6 ms warm at 1 M
/// incidents (10 500 rows took 11.5 ms).
pub(crate) const WALK: u64 = 4_200;

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

    /// Whether the search is dense, as last found if that was less than
    /// [`DENSITY_TTL`] ago:
    /// - SQLite: at least [`DENSE`] incidents match (counting no further);
    /// - PostgreSQL: the newest [`WALK`] search rows hold a page (`page`
    ///   rows) of matches, so that the walk ([`matches`]) stops within
    ///   them. Counting every match up to [`DENSE`] there went through the
    ///   GIN index's whole list for the words: 97 ms for "vpn" at 1 M.
    pub async fn is_dense<C: ConnectionTrait>(
        &self,
        db: &C,
        terms: &[String],
        include_internal: bool,
        page: u64,
    ) -> Result<bool, StoreError> {
        let postgres = db.get_database_backend() == DatabaseBackend::Postgres;
        let mut key = fts_query(terms, include_internal);
        if postgres {
            key.push_str(&format!("\u{0}{page}"));
        }
        let kept = self
            .lock()
            .get(&key)
            .filter(|(_, at)| at.elapsed() < DENSITY_TTL)
            .map(|(dense, _)| *dense);
        if let Some(dense) = kept {
            return Ok(dense);
        }
        let dense = if postgres {
            let doc = pg_doc(include_internal);
            count_reaches(
                db,
                &format!(
                    "SELECT count(*) AS n FROM (SELECT 1 FROM \
                     (SELECT {doc} AS doc FROM incident_search ORDER BY number DESC LIMIT {WALK}) AS w \
                     WHERE doc @@ (SELECT plainto_tsquery('english', ?)) LIMIT ?) AS m"
                ),
                terms.join(" "),
                page,
            )
            .await?
        } else {
            count_reaches(
                db,
                "SELECT count(*) AS n FROM (SELECT rowid FROM incident_search WHERE incident_search MATCH ? LIMIT ?)",
                fts_query(terms, include_internal),
                DENSE,
            )
            .await?
        };
        let mut kept = self.lock();
        if kept.len() >= DENSITY_KEPT {
            kept.clear();
        }
        kept.insert(key, (dense, Instant::now()));
        Ok(dense)
    }
}

/// Whether `count` (a count of the matches of `query`, up to its bound
/// parameter, `bound`) reaches `bound`.
async fn count_reaches<C: ConnectionTrait>(
    db: &C,
    count: &str,
    query: String,
    bound: u64,
) -> Result<bool, StoreError> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            count,
            vec![query.into(), bound.into()],
        ))
        .await?;
    let n = match row {
        Some(r) => r.try_get::<i64>("", "n")?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0) >= bound)
}

/// PostgreSQL's document column for a search of work notes too, or not.
fn pg_doc(include_internal: bool) -> &'static str {
    if include_internal {
        "all_doc"
    } else {
        "public_doc"
    }
}

/// `stmt` with its last parameter, a `LIMIT` of `page` at the end of its
/// text, written into the text instead; `stmt` as it is if it does not end
/// so. A limit PostgreSQL does not know makes it cost a kept plan for a
/// tenth of the rows, and plan each run again ([`matches`]).
pub(crate) fn limit_in_text(mut stmt: Statement, page: u64) -> Statement {
    let Some(Values(values)) = &mut stmt.values else {
        return stmt;
    };
    let tail = format!(" LIMIT ${}", values.len());
    if values.last() != Some(&Value::BigUnsigned(Some(page))) || !stmt.sql.ends_with(&tail) {
        return stmt;
    }
    values.pop();
    let keep = stmt.sql.len() - tail.len();
    stmt.sql.truncate(keep);
    stmt.sql.push_str(&format!(" LIMIT {page}"));
    stmt
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
/// `dense` ([`Density::is_dense`]) asks for the walk of the sort order's
/// index that stops after one page, rather than every match looked up by
/// number and sorted. On SQLite it writes the column as `+number`; on
/// PostgreSQL it writes the test so that the walk is the only plan, which
/// PostgreSQL then keeps (the caller asks for it only for a search of the
/// whole desk, newest number first, with nothing else to filter on, and
/// writes the limit into the text, [`limit_in_text`]).
pub(crate) fn matches(
    backend: DatabaseBackend,
    terms: &[String],
    include_internal: bool,
    dense: bool,
) -> SimpleExpr {
    match backend {
        DatabaseBackend::Postgres => {
            let doc = pg_doc(include_internal);
            // Dense: the query is worked out once a run, in an InitPlan
            // (`(SELECT plainto_tsquery(..))`), and the test is not one the
            // GIN index can take (`IS TRUE`). So every plan is the same
            // walk of the number index that stops after a page, and
            // PostgreSQL keeps one plan per connection (with the limit in
            // the text, [`limit_in_text`]) where it planned each search
            // again, 0.4 ms of its 1 ms (bench/RESULTS.md, twenty-ninth
            // session). A rare search keeps the query a parameter of the
            // test: planned for the words at hand, it takes the GIN index,
            // and the walk a kept plan would make can cross the whole table.
            let test = if dense {
                format!("({doc} @@ (SELECT plainto_tsquery('english', $1))) IS TRUE")
            } else {
                format!("{doc} @@ plainto_tsquery('english', $1)")
            };
            Expr::cust_with_values(
                format!(
                    "\"incidents\".\"number\" IN (SELECT number FROM incident_search WHERE {test})"
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

    /// A fresh database of each kind, migrated, its incidents' foreign keys
    /// off (tests make incidents up without their people).
    async fn migrated() -> Vec<(sea_orm::DatabaseConnection, Option<String>)> {
        use keel_migrations::{Migrator, MigratorTrait};
        let dbs = crate::testdb::fresh_databases().await;
        for (db, _) in &dbs {
            Migrator::up(db, None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            crate::testdb::without_foreign_keys(db, &["incidents"]).await;
        }
        dbs
    }

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
        use sea_orm::{
            ActiveModelTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
        };

        use crate::entities::incident;
        for (db, name) in migrated().await {
            let backend = db.get_database_backend();
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
    async fn a_search_is_dense_on_sqlite_from_its_two_thousandth_match_and_on_postgres_from_a_page_among_the_newest_rows()
     {
        use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel};
        async fn dense(db: &sea_orm::DatabaseConnection, internal: bool) -> bool {
            Density::default()
                .is_dense(db, &["printer".to_owned()], internal, 21)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
        // Incidents made up, for the search rows' foreign key; PostgreSQL's
        // search documents are written by the search table's triggers,
        // which stay on.
        for (db, name) in migrated().await {
            let backend = db.get_database_backend();
            // Incidents numbered as given, with a search row each: about
            // printers where it says so, else about scanners.
            let add = |rows: Vec<(i64, bool)>| {
                let db = &db;
                async move {
                    for chunk in rows.chunks(500) {
                        incident::Entity::insert_many(chunk.iter().map(|(n, _)| {
                            crate::testdb::incident(*n).into_active_model().reset_all()
                        }))
                        .exec_without_returning(db)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                        let rows = chunk.iter().map(|&(n, printer)| {
                            let title = if printer {
                                "Printer jams"
                            } else {
                                "Scanner jams"
                            };
                            SearchRow::new(n, title, "", std::iter::empty())
                        });
                        insert_rows(db, rows.collect())
                            .await
                            .unwrap_or_else(|e| panic!("{e}"));
                    }
                }
            };
            let dense_from = i64::try_from(DENSE).unwrap_or(i64::MAX);
            if backend == DatabaseBackend::Sqlite {
                add((1..dense_from).map(|n| (n, true)).collect()).await;
                assert!(!dense(&db, true).await);
                add(vec![(dense_from, true)]).await;
                assert!(dense(&db, true).await);
                assert!(dense(&db, false).await, "the title is public");
            } else {
                // 50 old matches, then the newest WALK rows with 20 matches
                // among them (one in twenty of their last 400): a page of 21
                // is not there.
                let walk = i64::try_from(WALK).unwrap_or(i64::MAX);
                let last = walk + 50;
                add((1..=last)
                    .map(|n| (n, n <= 50 || n > last - 400 && n % 20 == 0))
                    .collect())
                .await;
                assert!(!dense(&db, true).await, "70 matches, 20 among the newest");
                add(vec![(last + 1, true)]).await;
                assert!(dense(&db, true).await, "21 among the newest");
                assert!(dense(&db, false).await, "the title is public");
            }
            crate::testdb::drop_database(db, name).await;
        }
    }

    #[test]
    fn a_postgres_page_s_bound_limit_is_written_into_its_text_and_nothing_else_is() {
        use sea_orm::sea_query::{Alias, PostgresQueryBuilder, Query};
        let page = |limit: u64, values: &[i64]| {
            let mut q = Query::select();
            q.column(Alias::new("number")).from(Alias::new("incidents"));
            for v in values {
                q.and_where(incident::Column::Number.ne(*v));
            }
            q.limit(limit);
            let (sql, values) = q.build(PostgresQueryBuilder);
            Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)
        };
        let s = limit_in_text(page(21, &[4, 5]), 21);
        assert!(s.sql.ends_with("\"number\" <> $2 LIMIT 21"), "{}", s.sql);
        assert_eq!(
            s.values,
            Some(Values(vec![Value::BigInt(Some(4)), Value::BigInt(Some(5))]))
        );
        let s = limit_in_text(page(21, &[]), 21);
        assert!(s.sql.ends_with(" LIMIT 21"), "{}", s.sql);
        assert_eq!(s.values, Some(Values(vec![])));
        // Another limit than the page's, or none at the end: left alone.
        let other = page(51, &[4]);
        assert_eq!(limit_in_text(other.clone(), 21), other);
        let unlimited = stmt(
            DatabaseBackend::Postgres,
            "SELECT number FROM incidents WHERE number <> ?",
            vec![21_u64.into()],
        );
        assert_eq!(limit_in_text(unlimited.clone(), 21), unlimited);
    }

    #[tokio::test]
    async fn a_search_is_dense_from_its_two_thousandth_match_and_that_answer_is_kept() {
        let words = ["printer".to_owned()];
        let db = printers(DENSE - 1).await;
        let density = Density::default();
        assert!(
            !density
                .is_dense(&db, &words, true, 21)
                .await
                .unwrap_or(true)
        );
        add_printers(&db, 1).await;
        assert!(
            !density
                .is_dense(&db, &words, true, 21)
                .await
                .unwrap_or(true),
            "counted a moment ago: not counted again"
        );
        assert!(
            Density::default()
                .is_dense(&db, &words, true, 21)
                .await
                .unwrap_or(false),
            "counted afresh"
        );
        assert!(
            density
                .is_dense(&db, &words, false, 21)
                .await
                .unwrap_or(false),
            "a requester's search (other columns) is counted on its own"
        );
    }
}
