//! Users, groups, sessions and tokens, incidents with their timeline
//! (comments, attachments, links, watchers), the audit history, idempotency
//! keys, and incident full-text search.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

use crate::run_script;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0001_foundation"
    }
}

const SCHEMA: &str = r#"
CREATE TABLE users (
    id {uuid} PRIMARY KEY,
    username TEXT NOT NULL,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    active {bool} NOT NULL,
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_email_key UNIQUE (email)
);
CREATE TABLE user_roles (
    user_id {uuid} NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);
CREATE TABLE assignment_groups (
    id {uuid} PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL,
    CONSTRAINT assignment_groups_name_key UNIQUE (name)
);
CREATE TABLE group_members (
    group_id {uuid} NOT NULL REFERENCES assignment_groups (id) ON DELETE CASCADE,
    user_id {uuid} NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user_idx ON group_members (user_id);
CREATE TABLE sessions (
    id {uuid} PRIMARY KEY,
    user_id {uuid} NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at {ts} NOT NULL,
    expires_at {ts} NOT NULL,
    revoked_at {ts}
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id {uuid} NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at {ts} NOT NULL,
    expires_at {ts} NOT NULL,
    used_at {ts}
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
CREATE TABLE api_tokens (
    id {uuid} PRIMARY KEY,
    user_id {uuid} NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at {ts} NOT NULL,
    expires_at {ts},
    revoked_at {ts},
    last_used_at {ts},
    CONSTRAINT api_tokens_hash_key UNIQUE (token_hash)
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at {ts} NOT NULL
);
CREATE TABLE sequences (
    name TEXT PRIMARY KEY,
    next_value {bigint} NOT NULL
);
INSERT INTO sequences (name, next_value) VALUES ('incident', 1);
CREATE TABLE incidents (
    id {uuid} PRIMARY KEY,
    number {bigint} NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    impact INTEGER NOT NULL,
    urgency INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    priority_overridden {bool} NOT NULL,
    category TEXT,
    major {bool} NOT NULL,
    state TEXT NOT NULL,
    hold_reason TEXT,
    resolution_code TEXT,
    resolution_notes TEXT,
    requester_id {uuid} NOT NULL REFERENCES users (id),
    assignment_group_id {uuid} REFERENCES assignment_groups (id),
    assignee_id {uuid} REFERENCES users (id),
    reassignment_count INTEGER NOT NULL,
    created_by {uuid} NOT NULL REFERENCES users (id),
    version {bigint} NOT NULL,
    created_at {ts} NOT NULL,
    updated_at {ts} NOT NULL,
    first_response_at {ts},
    resolved_at {ts},
    closed_at {ts},
    cancelled_at {ts},
    CONSTRAINT incidents_number_key UNIQUE (number)
);
CREATE INDEX incidents_state_idx ON incidents (state, number);
CREATE INDEX incidents_priority_idx ON incidents (priority, number);
CREATE INDEX incidents_requester_idx ON incidents (requester_id, number);
CREATE INDEX incidents_assignee_idx ON incidents (assignee_id, number);
CREATE INDEX incidents_group_idx ON incidents (assignment_group_id, number);
CREATE INDEX incidents_created_idx ON incidents (created_at, number);
CREATE INDEX incidents_updated_idx ON incidents (updated_at, number);
CREATE TABLE watchers (
    record_type TEXT NOT NULL,
    record_id {uuid} NOT NULL,
    user_id {uuid} NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at {ts} NOT NULL,
    PRIMARY KEY (record_type, record_id, user_id)
);
CREATE INDEX watchers_user_idx ON watchers (user_id, record_type);
CREATE TABLE comments (
    id {uuid} PRIMARY KEY,
    record_type TEXT NOT NULL,
    record_id {uuid} NOT NULL,
    author_id {uuid} NOT NULL REFERENCES users (id),
    body TEXT NOT NULL,
    visibility TEXT NOT NULL,
    created_at {ts} NOT NULL
);
CREATE INDEX comments_record_idx ON comments (record_type, record_id, created_at);
CREATE TABLE attachments (
    id {uuid} PRIMARY KEY,
    record_type TEXT NOT NULL,
    record_id {uuid} NOT NULL,
    uploader_id {uuid} NOT NULL REFERENCES users (id),
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes {bigint} NOT NULL,
    sha256 TEXT NOT NULL,
    created_at {ts} NOT NULL
);
CREATE INDEX attachments_record_idx ON attachments (record_type, record_id, created_at);
CREATE TABLE links (
    id {uuid} PRIMARY KEY,
    source_type TEXT NOT NULL,
    source_id {uuid} NOT NULL,
    kind TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id {uuid} NOT NULL,
    created_by {uuid} NOT NULL REFERENCES users (id),
    created_at {ts} NOT NULL,
    CONSTRAINT links_unique_key UNIQUE (source_type, source_id, kind, target_type, target_id)
);
CREATE INDEX links_target_idx ON links (target_type, target_id, kind);
CREATE TABLE audit_events (
    id {serial},
    record_type TEXT NOT NULL,
    record_id {uuid} NOT NULL,
    actor_id {uuid} REFERENCES users (id),
    action TEXT NOT NULL,
    field TEXT,
    old_value TEXT,
    new_value TEXT,
    visibility TEXT NOT NULL,
    created_at {ts} NOT NULL
);
CREATE INDEX audit_events_record_idx ON audit_events (record_type, record_id, id);
CREATE TABLE idempotency_keys (
    user_id {uuid} NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER,
    response_headers TEXT,
    response_body {bytes},
    created_at {ts} NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at)
"#;

/// SQLite FTS5: the row id is the incident number; requesters search only
/// the first three columns, agents all four.
const SEARCH_SQLITE: &str = r#"
CREATE VIRTUAL TABLE incident_search USING fts5(
    title, description, public_comments, internal_comments,
    tokenize = 'porter unicode61'
)
"#;

/// PostgreSQL: stored tsvector columns with GIN indexes, one for what a
/// requester may search and one over everything, for agents.
const SEARCH_POSTGRES: &str = r#"
CREATE TABLE incident_search (
    number BIGINT PRIMARY KEY,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    public_comments TEXT NOT NULL,
    internal_comments TEXT NOT NULL,
    public_doc tsvector GENERATED ALWAYS AS (
        to_tsvector('english', title || ' ' || description || ' ' || public_comments)
    ) STORED,
    all_doc tsvector GENERATED ALWAYS AS (
        to_tsvector('english', title || ' ' || description || ' ' || public_comments || ' ' || internal_comments)
    ) STORED
);
CREATE INDEX incident_search_public_idx ON incident_search USING GIN (public_doc);
CREATE INDEX incident_search_all_idx ON incident_search USING GIN (all_doc)
"#;

const DROP: &str = r#"
DROP TABLE incident_search;
DROP TABLE idempotency_keys;
DROP TABLE audit_events;
DROP TABLE links;
DROP TABLE attachments;
DROP TABLE comments;
DROP TABLE watchers;
DROP TABLE incidents;
DROP TABLE sequences;
DROP TABLE settings;
DROP TABLE api_tokens;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE group_members;
DROP TABLE assignment_groups;
DROP TABLE user_roles;
DROP TABLE users
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, SCHEMA).await?;
        let search = match manager.get_connection().get_database_backend() {
            DatabaseBackend::Postgres => SEARCH_POSTGRES,
            _ => SEARCH_SQLITE,
        };
        run_script(manager, search).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_script(manager, DROP).await
    }
}
