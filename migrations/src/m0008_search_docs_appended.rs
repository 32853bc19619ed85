//! PostgreSQL: a comment adds its own words to an incident's search
//! documents instead of recomputing them over the whole text.
//!
//! `public_doc` and `all_doc` were generated columns, so appending a comment
//! ran `to_tsvector` twice over the title, the description and every
//! comment so far. That was about a fifth of PostgreSQL's time in the
//! comment benchmark (bench/RESULTS.md, fifteenth session). They are now
//! plain columns kept by a trigger:
//!
//! - an insert, or an update that changes the title or the description or
//!   does not only append to the comments, computes both in full, as the
//!   generated columns did;
//! - an update that only appends comments adds `to_tsvector` of the
//!   appended text to the documents it belongs to (`tsvector || tsvector`).
//!
//! A search is `plainto_tsquery`, an AND of lexemes, so it matches the same
//! rows either way; only the lexemes' positions differ, and Keel neither
//! ranks nor searches phrases. `DROP EXPRESSION` keeps every row's values
//! and the GIN indexes. SQLite's FTS5 table is untouched.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0008_search_docs_appended"
    }
}

const UP: [&str; 4] = [
    "ALTER TABLE incident_search ALTER COLUMN public_doc DROP EXPRESSION",
    "ALTER TABLE incident_search ALTER COLUMN all_doc DROP EXPRESSION",
    r#"CREATE FUNCTION incident_search_docs() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    added tsvector;
BEGIN
    IF TG_OP = 'UPDATE'
        AND NEW.title = OLD.title
        AND NEW.description = OLD.description
        AND starts_with(NEW.public_comments, OLD.public_comments)
        AND starts_with(NEW.internal_comments, OLD.internal_comments)
        AND OLD.public_doc IS NOT NULL
        AND OLD.all_doc IS NOT NULL
    THEN
        NEW.public_doc := OLD.public_doc;
        NEW.all_doc := OLD.all_doc;
        IF length(NEW.public_comments) > length(OLD.public_comments) THEN
            added := to_tsvector('english', substr(NEW.public_comments, length(OLD.public_comments) + 1));
            NEW.public_doc := NEW.public_doc || added;
            NEW.all_doc := NEW.all_doc || added;
        END IF;
        IF length(NEW.internal_comments) > length(OLD.internal_comments) THEN
            added := to_tsvector('english', substr(NEW.internal_comments, length(OLD.internal_comments) + 1));
            NEW.all_doc := NEW.all_doc || added;
        END IF;
    ELSE
        NEW.public_doc := to_tsvector('english',
            NEW.title || ' ' || NEW.description || ' ' || NEW.public_comments);
        NEW.all_doc := to_tsvector('english',
            NEW.title || ' ' || NEW.description || ' ' || NEW.public_comments || ' ' || NEW.internal_comments);
    END IF;
    RETURN NEW;
END
$body$"#,
    "CREATE TRIGGER incident_search_docs BEFORE INSERT OR UPDATE ON incident_search \
     FOR EACH ROW EXECUTE FUNCTION incident_search_docs()",
];

const DOWN: [&str; 7] = [
    "DROP TRIGGER incident_search_docs ON incident_search",
    "DROP FUNCTION incident_search_docs()",
    "ALTER TABLE incident_search DROP COLUMN public_doc, DROP COLUMN all_doc",
    "ALTER TABLE incident_search ADD COLUMN public_doc tsvector GENERATED ALWAYS AS (
        to_tsvector('english', title || ' ' || description || ' ' || public_comments)
    ) STORED",
    "ALTER TABLE incident_search ADD COLUMN all_doc tsvector GENERATED ALWAYS AS (
        to_tsvector('english', title || ' ' || description || ' ' || public_comments || ' ' || internal_comments)
    ) STORED",
    "CREATE INDEX incident_search_public_idx ON incident_search USING GIN (public_doc)",
    "CREATE INDEX incident_search_all_idx ON incident_search USING GIN (all_doc)",
];

/// Runs `statements` one by one on PostgreSQL (a function body holds `;`,
/// which `run_script` splits on); nothing on SQLite.
async fn run_on_postgres(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    for s in statements {
        db.execute_unprepared(s).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_on_postgres(manager, &UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_on_postgres(manager, &DOWN).await
    }
}
