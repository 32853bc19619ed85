//! Several writes sent to the database as one call.
//!
//! Each statement sent to the database costs a round trip: on PostgreSQL a
//! network exchange and a parse, on SQLite two hand-offs between the async
//! task and sqlx's SQLite thread. A write that inserts a record, its audit
//! entry, its search row and its outbox rows need not pay that four times:
//!
//! - on SQLite the statements are joined with `;` and run by one call (sqlx
//!   binds the `?` parameters across them in order);
//! - on PostgreSQL every statement but the last becomes a data-modifying
//!   common table expression of the last, which makes them one statement,
//!   atomic on its own (constraints are checked at its end).
//!
//! The parts must not depend on each other's effects: PostgreSQL runs the
//! parts of one statement against the same snapshot. Inserting a record and
//! rows that refer to it is fine; updating a row another part inserts is not.
//! A part must not start with `WITH` of its own.

use sea_orm::{
    ActiveModelTrait, ActiveValue, ConnectionTrait, DatabaseBackend, EntityName, EntityTrait,
    Iterable, Statement, Value, Values,
};

use crate::StoreError;

/// Rows for one table, as values in column order: an insert not yet built,
/// so that PostgreSQL can send the rows of several writes as arrays
/// ([`crate::combine`]), and anything else as one multi-row `INSERT`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Insert {
    pub table: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Value>>,
}

impl Insert {
    /// The rows of `models`, with the columns each sets (an auto-increment
    /// key left unset is left out); `None` if there are none, or if they
    /// do not all set the same columns.
    pub fn of<A>(models: impl IntoIterator<Item = A>) -> Option<Insert>
    where
        A: ActiveModelTrait,
    {
        let table = <A::Entity as Default>::default().table_name();
        let mut columns: Option<Vec<&'static str>> = None;
        let mut rows = Vec::new();
        for m in models {
            let mut names = Vec::new();
            let mut row = Vec::new();
            for c in <A::Entity as EntityTrait>::Column::iter() {
                match m.get(c) {
                    ActiveValue::Set(v) | ActiveValue::Unchanged(v) => {
                        names.push(sea_orm::IdenStatic::as_str(&c));
                        row.push(v);
                    }
                    ActiveValue::NotSet => {}
                }
            }
            match &columns {
                None => columns = Some(names),
                Some(first) if *first != names => return None,
                Some(_) => {}
            }
            rows.push(row);
        }
        Some(Insert {
            table,
            columns: columns?,
            rows,
        })
    }

    /// The multi-row `INSERT` of these rows.
    pub fn statement(self, backend: DatabaseBackend) -> Statement {
        let mut sql = String::new();
        self.write_sql(backend, 1, &mut sql);
        Statement::from_sql_and_values(backend, sql, self.rows.into_iter().flatten())
    }

    /// Appends the text of [`Insert::statement`] to `sql`, its PostgreSQL
    /// placeholders numbered from `$first` on.
    ///
    /// It is the text sea-query builds for these rows (a unit test holds
    /// them equal), written directly: sea-query's builder cost 12 000
    /// instructions per row set, a fifth of a create's work on SQLite's
    /// writer task, and on PostgreSQL [`Writes::statement`] then had to
    /// renumber the placeholders of every part after the first.
    fn write_sql(&self, backend: DatabaseBackend, first: usize, sql: &mut String) {
        let quoted = |sql: &mut String, name: &str| {
            sql.push('"');
            sql.push_str(&name.replace('"', "\"\""));
            sql.push('"');
        };
        sql.push_str("INSERT INTO ");
        quoted(sql, self.table);
        sql.push_str(" (");
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            quoted(sql, c);
        }
        sql.push_str(") VALUES ");
        let mut n = first;
        for (r, row) in self.rows.iter().enumerate() {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for i in 0..row.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                push_placeholder(sql, backend, n);
                n += 1;
            }
            sql.push(')');
        }
    }
}

/// Appends the placeholder of the `n`th value (from 1) of a statement
/// written by hand: `$n` on PostgreSQL, `?` on SQLite.
pub(crate) fn push_placeholder(sql: &mut String, backend: DatabaseBackend, n: usize) {
    use std::fmt::Write as _;
    match backend {
        DatabaseBackend::Postgres => {
            let _ = write!(sql, "${n}");
        }
        _ => sql.push('?'),
    }
}

/// One write of [`Writes`].
enum Part {
    Sql(Statement),
    Rows(Insert),
}

/// Writes to send together.
pub(crate) struct Writes {
    backend: DatabaseBackend,
    parts: Vec<Part>,
}

impl Writes {
    pub fn new(backend: DatabaseBackend) -> Self {
        Writes {
            backend,
            parts: Vec::new(),
        }
    }

    /// Adds a statement built for this backend.
    pub fn push(&mut self, s: Statement) {
        self.parts.push(Part::Sql(s));
    }

    /// Adds rows to insert, if there are any.
    pub fn push_rows(&mut self, rows: Option<Insert>) {
        if let Some(r) = rows.filter(|r| !r.rows.is_empty()) {
            self.parts.push(Part::Rows(r));
        }
    }

    /// Puts a statement before those already added.
    pub fn prepend(&mut self, s: Statement) {
        self.parts.insert(0, Part::Sql(s));
    }

    /// The writes as rows only, if none of them is a statement of its own
    /// and every value passes `fits`.
    pub fn into_rows(self, fits: impl Fn(&Value) -> bool) -> Result<Vec<Insert>, Writes> {
        let rows_only = self.parts.iter().all(|p| match p {
            Part::Sql(_) => false,
            Part::Rows(r) => r.rows.iter().flatten().all(&fits),
        });
        if !rows_only {
            return Err(self);
        }
        Ok(self
            .parts
            .into_iter()
            .filter_map(|p| match p {
                Part::Rows(r) => Some(r),
                Part::Sql(_) => None,
            })
            .collect())
    }

    /// The one statement that makes all the writes, if there are any.
    pub fn statement(self) -> Option<Statement> {
        let backend = self.backend;
        if self.parts.len() <= 1 {
            return self.parts.into_iter().next().map(|p| match p {
                Part::Sql(s) => s,
                Part::Rows(r) => r.statement(backend),
            });
        }
        let mut values: Vec<Value> = Vec::new();
        let mut text = String::new();
        let last = self.parts.len() - 1;
        for (i, part) in self.parts.into_iter().enumerate() {
            let offset = values.len();
            match backend {
                DatabaseBackend::Postgres => {
                    if i == last {
                        // The main statement follows the last CTE.
                        text.push(' ');
                    } else {
                        text.push_str(if i == 0 { "WITH " } else { ", " });
                        text.push_str(&format!("w{i} AS ("));
                    }
                    match &part {
                        Part::Sql(s) => text.push_str(&shift_placeholders(&s.sql, offset)),
                        Part::Rows(r) => r.write_sql(backend, offset + 1, &mut text),
                    }
                    if i != last {
                        text.push(')');
                    }
                }
                _ => {
                    if i > 0 {
                        text.push_str(";\n");
                    }
                    match &part {
                        Part::Sql(s) => text.push_str(&s.sql),
                        Part::Rows(r) => r.write_sql(backend, 1, &mut text),
                    }
                }
            }
            match part {
                Part::Sql(s) => {
                    if let Some(Values(v)) = s.values {
                        values.extend(v);
                    }
                }
                Part::Rows(r) => values.extend(r.rows.into_iter().flatten()),
            }
        }
        Some(Statement::from_sql_and_values(backend, text, values))
    }

    /// Runs the writes; nothing to do is fine.
    pub async fn run<C: ConnectionTrait>(self, db: &C) -> Result<(), StoreError> {
        if let Some(s) = self.statement() {
            db.execute_raw(s).await?;
        }
        Ok(())
    }
}

/// `$n` placeholders renumbered as `$(n + offset)`, outside quoted strings
/// and identifiers.
pub(crate) fn shift_placeholders(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut quote: Option<char> = None;
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' => {
                let mut digits = String::new();
                while let Some(&(_, d)) = chars.peek() {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    digits.push(d);
                    chars.next();
                }
                match digits.parse::<usize>() {
                    Ok(n) => {
                        out.push('$');
                        out.push_str(&(n + offset).to_string());
                    }
                    Err(_) => {
                        out.push('$');
                        out.push_str(&digits);
                    }
                }
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{Database, DbBackend};

    fn st(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(backend, sql, values)
    }

    /// The one statement `w` makes; there must be one.
    fn one(w: Writes) -> Statement {
        w.statement().unwrap_or_else(|| panic!("no statement"))
    }

    /// An in-memory SQLite database with one table made by `ddl`.
    async fn memory_db(ddl: &str) -> sea_orm::DatabaseConnection {
        let db = Database::connect("sqlite::memory:")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        db.execute_unprepared(ddl)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        db
    }

    /// What sea-query builds for `rows`: the reference for
    /// [`Insert::statement`].
    fn built_by_sea_query(backend: DbBackend, rows: &Insert) -> Statement {
        use sea_orm::sea_query::{Alias, Query};
        let mut q = Query::insert();
        q.into_table(Alias::new(rows.table))
            .columns(rows.columns.iter().map(|c| Alias::new(*c)));
        for row in &rows.rows {
            q.values(row.iter().cloned().map(Into::into))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        backend.build(&q)
    }

    /// An incident's rows as a create writes them: every kind of value
    /// (uuid, text, integers, booleans, NULLs, timestamps).
    fn incident_rows(n: usize) -> Insert {
        use crate::entities::incident;
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 123_000).unwrap_or_default();
        let models = (0..n).map(|i| {
            let number = i64::try_from(i).unwrap_or(0) + 1;
            incident::ActiveModel::from(incident::Model {
                title: format!("Printer {i} is on fire"),
                description: "It says \"PC LOAD LETTER\"; then smoke.".into(),
                urgency: 3,
                priority: 4,
                priority_overridden: i % 2 == 0,
                category: (i % 2 == 1).then(|| "hardware".into()),
                assignee_id: Some(uuid::Uuid::now_v7()),
                created_at: t,
                updated_at: t,
                resolved_at: Some(t),
                ..crate::testdb::incident(number)
            })
            .reset_all()
        });
        Insert::of(models).unwrap_or_else(|| panic!("no rows"))
    }

    #[test]
    fn an_insert_is_the_text_and_values_sea_query_builds() {
        for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
            for n in [1, 3] {
                let rows = incident_rows(n);
                let want = built_by_sea_query(backend, &rows);
                let got = rows.statement(backend);
                assert_eq!(got.sql, want.sql, "{backend:?}, {n} rows");
                assert_eq!(got.values, want.values, "{backend:?}, {n} rows");
            }
        }
    }

    #[test]
    fn postgres_rows_after_other_parts_are_numbered_on_from_them() {
        let mut w = Writes::new(DbBackend::Postgres);
        w.push(st(
            DbBackend::Postgres,
            r#"UPDATE "a" SET "x" = $1 WHERE "y" = $2"#,
            vec![1.into(), 2.into()],
        ));
        let rows = incident_rows(2);
        let alone = built_by_sea_query(DbBackend::Postgres, &rows);
        w.push_rows(Some(rows));
        let s = one(w);
        assert_eq!(
            s.sql,
            format!(
                r#"WITH w0 AS (UPDATE "a" SET "x" = $1 WHERE "y" = $2) {}"#,
                shift_placeholders(&alone.sql, 2)
            )
        );
        let values = s.values.map(|v| v.0).unwrap_or_default();
        assert_eq!(values.len(), 2 + alone.values.map_or(0, |v| v.0.len()));
    }

    #[test]
    fn postgres_parts_become_one_statement_with_renumbered_parameters() {
        let mut w = Writes::new(DbBackend::Postgres);
        w.push(st(
            DbBackend::Postgres,
            r#"INSERT INTO "a" ("x", "y") VALUES ($1, $2)"#,
            vec![1.into(), "$1".into()],
        ));
        w.push(st(
            DbBackend::Postgres,
            r#"INSERT INTO "b" ("x") VALUES ($1), ($2)"#,
            vec![3.into(), 4.into()],
        ));
        w.push(st(
            DbBackend::Postgres,
            r#"INSERT INTO "c" ("x", "$1") VALUES ($1) ON CONFLICT DO NOTHING"#,
            vec![5.into()],
        ));
        let s = one(w);
        assert_eq!(
            s.sql,
            r#"WITH w0 AS (INSERT INTO "a" ("x", "y") VALUES ($1, $2)), w1 AS (INSERT INTO "b" ("x") VALUES ($3), ($4)) INSERT INTO "c" ("x", "$1") VALUES ($5) ON CONFLICT DO NOTHING"#
        );
        assert_eq!(s.values.map(|v| v.0.len()), Some(5));
    }

    #[test]
    fn one_part_is_sent_as_it_is_and_none_is_nothing() {
        assert!(Writes::new(DbBackend::Postgres).statement().is_none());
        let mut w = Writes::new(DbBackend::Postgres);
        w.push(st(
            DbBackend::Postgres,
            "DELETE FROM t WHERE n = $1",
            vec![1.into()],
        ));
        let s = one(w);
        assert_eq!(s.sql, "DELETE FROM t WHERE n = $1");
    }

    #[test]
    fn a_dollar_that_is_not_a_placeholder_is_left_alone() {
        assert_eq!(shift_placeholders("SELECT $x, $12", 3), "SELECT $x, $15");
        assert_eq!(shift_placeholders("SELECT '$1'", 3), "SELECT '$1'");
    }

    #[tokio::test]
    async fn sqlite_runs_every_part_in_one_call_with_parameters_in_order() {
        let db = memory_db("CREATE TABLE t (n INTEGER, s TEXT)").await;
        let mut w = Writes::new(DbBackend::Sqlite);
        w.push(st(
            DbBackend::Sqlite,
            "INSERT INTO t (n, s) VALUES (?, ?)",
            vec![1.into(), "a;b".into()],
        ));
        w.push(st(
            DbBackend::Sqlite,
            "INSERT INTO t (n, s) VALUES (?, ?), (?, ?)",
            vec![2.into(), "c".into(), 3.into(), "d".into()],
        ));
        w.run(&db).await.unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(i64, String)> = db
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT n, s FROM t ORDER BY n",
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .filter_map(|r| Some((r.try_get("", "n").ok()?, r.try_get("", "s").ok()?)))
            .collect();
        assert_eq!(
            got,
            vec![(1, "a;b".into()), (2, "c".into()), (3, "d".into())]
        );
    }

    #[tokio::test]
    async fn a_failing_part_on_sqlite_is_an_error() {
        let db = memory_db("CREATE TABLE t (n INTEGER PRIMARY KEY)").await;
        let mut w = Writes::new(DbBackend::Sqlite);
        w.push(st(
            DbBackend::Sqlite,
            "INSERT INTO t (n) VALUES (?)",
            vec![1.into()],
        ));
        w.push(st(
            DbBackend::Sqlite,
            "INSERT INTO t (n) VALUES (?)",
            vec![1.into()],
        ));
        assert!(w.run(&db).await.is_err());
    }
}
