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
    let mut public = String::new();
    let mut internal = String::new();
    for c in comments {
        let target = if c.visibility == Visibility::Internal.as_str() {
            &mut internal
        } else {
            &mut public
        };
        target.push_str(&c.body);
        target.push('\n');
    }
    let (del, ins) = match backend {
        DatabaseBackend::Postgres => (
            "DELETE FROM incident_search WHERE number = ?",
            "INSERT INTO incident_search (number, title, description, public_comments, internal_comments) VALUES (?, ?, ?, ?, ?)",
        ),
        _ => (
            "DELETE FROM incident_search WHERE rowid = ?",
            "INSERT INTO incident_search (rowid, title, description, public_comments, internal_comments) VALUES (?, ?, ?, ?, ?)",
        ),
    };
    db.execute_raw(stmt(backend, del, vec![m.number.into()]))
        .await?;
    db.execute_raw(stmt(
        backend,
        ins,
        vec![
            m.number.into(),
            m.title.clone().into(),
            m.description.clone().into(),
            public.into(),
            internal.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// A condition on `incidents.number` matching every term in `terms`.
/// `include_internal` widens the search to internal work notes (agents).
/// Terms are plain words (see `keel_core::query::search_terms`) and travel as
/// bound parameters; each is quoted for FTS5 so none acts as an operator.
pub(crate) fn matches(
    backend: DatabaseBackend,
    terms: &[String],
    include_internal: bool,
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
            let phrases: Vec<String> = terms
                .iter()
                .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
                .collect();
            let body = phrases.join(" AND ");
            let q = if include_internal {
                body
            } else {
                format!("{{title description public_comments}} : ({body})")
            };
            Expr::cust_with_values(
                "\"incidents\".\"number\" IN (SELECT rowid FROM incident_search WHERE incident_search MATCH ?)",
                [q],
            )
        }
    }
}
