//! Bulk loading of synthetic data for benchmarks (`keel seed`): multi-row
//! inserts, one transaction per batch, written exactly as the use cases
//! write them (the record, its `created` audit entry, its comments, its
//! search row and, under the database's SLA policies, its SLA timers), so a
//! seeded database answers like a lived-in one.

use chrono::{DateTime, Utc};
use keel_core::time::now;
use keel_core::{RecordKind, RecordNumber, Role};
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ConnectionTrait, DatabaseBackend, EntityTrait,
    IntoActiveModel, TransactionTrait,
};
use uuid::Uuid;

use crate::entities::{audit_event, comment, group, group_member, incident, user, user_role};
use crate::search::{self, SearchRow, stmt};
use crate::sla;
use crate::{Store, StoreError};

/// Rows per multi-row insert; well under both databases' bound-parameter
/// limits (SQLite 32 766, PostgreSQL 65 535) at 26 columns.
const ROWS_PER_INSERT: usize = 500;

/// A user to load; `password_hash` is a PHC string (hash once, reuse).
#[derive(Debug, Clone)]
pub struct SeedUser {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub roles: Vec<Role>,
    pub created_at: DateTime<Utc>,
}

/// An assignment group and its members.
#[derive(Debug, Clone)]
pub struct SeedGroup {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub members: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// A comment on a seeded incident.
#[derive(Debug, Clone)]
pub struct SeedComment {
    pub id: Uuid,
    pub author_id: Uuid,
    pub body: String,
    pub internal: bool,
    pub created_at: DateTime<Utc>,
}

/// An incident with everything the use cases would have stored for it. The
/// caller keeps the fields consistent (a closed incident has `closed_at`).
#[derive(Debug, Clone)]
pub struct SeedIncident {
    pub id: Uuid,
    pub number: i64,
    pub title: String,
    pub description: String,
    pub impact: u8,
    pub urgency: u8,
    pub priority: u8,
    pub category: Option<String>,
    pub major: bool,
    pub state: &'static str,
    pub hold_reason: Option<&'static str>,
    pub resolution_code: Option<&'static str>,
    pub resolution_notes: Option<String>,
    pub requester_id: Uuid,
    pub assignment_group_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub reassignment_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub first_response_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub comments: Vec<SeedComment>,
}

impl Store {
    /// The number the next incident gets.
    pub async fn next_incident_number(&self) -> Result<i64, StoreError> {
        let row = self
            .conn()
            .query_one_raw(stmt(
                self.backend(),
                "SELECT next_value FROM sequences WHERE name = ?",
                vec!["incident".into()],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64>("", "next_value")?,
            None => 1,
        })
    }

    /// Loads users and groups (with memberships) in one transaction.
    pub async fn seed_people(
        &self,
        users: &[SeedUser],
        groups: &[SeedGroup],
    ) -> Result<(), StoreError> {
        let txn = self.writer().begin().await?;
        for chunk in users.chunks(ROWS_PER_INSERT) {
            user::Entity::insert_many(chunk.iter().map(|u| user::ActiveModel {
                id: Set(u.id),
                username: Set(u.username.clone()),
                email: Set(u.email.clone()),
                display_name: Set(u.display_name.clone()),
                password_hash: Set(u.password_hash.clone()),
                active: Set(true),
                created_at: Set(u.created_at),
                updated_at: Set(u.created_at),
            }))
            .exec_without_returning(&txn)
            .await?;
            let roles: Vec<user_role::ActiveModel> = chunk
                .iter()
                .flat_map(|u| {
                    u.roles.iter().map(|r| user_role::ActiveModel {
                        user_id: Set(u.id),
                        role: Set(r.as_str().to_owned()),
                    })
                })
                .collect();
            if !roles.is_empty() {
                user_role::Entity::insert_many(roles)
                    .exec_without_returning(&txn)
                    .await?;
            }
        }
        for g in groups {
            group::Entity::insert(group::ActiveModel {
                id: Set(g.id),
                name: Set(g.name.clone()),
                description: Set(g.description.clone()),
                created_at: Set(g.created_at),
                updated_at: Set(g.created_at),
            })
            .exec_without_returning(&txn)
            .await?;
            for chunk in g.members.chunks(ROWS_PER_INSERT) {
                group_member::Entity::insert_many(chunk.iter().map(|&m| {
                    group_member::ActiveModel {
                        group_id: Set(g.id),
                        user_id: Set(m),
                    }
                }))
                .exec_without_returning(&txn)
                .await?;
            }
        }
        txn.commit().await?;
        Ok(())
    }

    /// Loads a batch of incidents (numbers must be unused) with their audit
    /// entries, comments, search rows and SLA timers (as the active policies
    /// give them), in one transaction, and moves the incident number
    /// sequence past them. Returns how many SLA timers it wrote.
    pub async fn seed_incidents(&self, batch: &[SeedIncident]) -> Result<u64, StoreError> {
        let cfg = self.sla_config().await?;
        let t = now();
        let mut timers_total = 0;
        let txn = self.writer().begin().await?;
        let backend = txn.get_database_backend();
        for chunk in batch.chunks(ROWS_PER_INSERT) {
            let mut models: Vec<incident::Model> = chunk.iter().map(incident_model).collect();
            let mut timers = Vec::new();
            for m in &mut models {
                let mine = sla::seeded_timers(&cfg, m, t)?;
                m.timers_json = crate::rows::timers_json(&mine);
                timers.extend(mine);
            }
            incident::Entity::insert_many(
                models.into_iter().map(IntoActiveModel::into_active_model),
            )
            .exec_without_returning(&txn)
            .await?;
            timers_total += timers.len() as u64;
            for part in timers.chunks(ROWS_PER_INSERT) {
                if let Some(s) = sla::insert_statement(backend, part) {
                    txn.execute_raw(s).await?;
                }
            }
            audit_event::Entity::insert_many(chunk.iter().map(|i| audit_event::ActiveModel {
                id: NotSet,
                record_type: Set("incident".to_owned()),
                record_id: Set(i.id),
                actor_id: Set(Some(i.requester_id)),
                action: Set("created".to_owned()),
                field: Set(None),
                old_value: Set(None),
                new_value: Set(Some(
                    RecordNumber::new(RecordKind::Incident, i.number).to_string(),
                )),
                visibility: Set("public".to_owned()),
                created_at: Set(i.created_at),
            }))
            .exec_without_returning(&txn)
            .await?;
            let comments: Vec<comment::ActiveModel> = chunk
                .iter()
                .flat_map(|i| {
                    i.comments.iter().map(|c| comment::ActiveModel {
                        id: Set(c.id),
                        record_type: Set("incident".to_owned()),
                        record_id: Set(i.id),
                        author_id: Set(c.author_id),
                        body: Set(c.body.clone()),
                        visibility: Set(if c.internal { "internal" } else { "public" }.to_owned()),
                        created_at: Set(c.created_at),
                    })
                })
                .collect();
            for part in comments.chunks(ROWS_PER_INSERT) {
                comment::Entity::insert_many(part.to_vec())
                    .exec_without_returning(&txn)
                    .await?;
            }
            search::insert_rows(
                &txn,
                chunk
                    .iter()
                    .map(|i| {
                        SearchRow::new(
                            i.number,
                            &i.title,
                            &i.description,
                            i.comments.iter().map(|c| (c.body.as_str(), c.internal)),
                        )
                    })
                    .collect(),
            )
            .await?;
        }
        if let Some(last) = batch.iter().map(|i| i.number).max() {
            txn.execute_raw(stmt(
                backend,
                "UPDATE sequences SET next_value = ? WHERE name = ? AND next_value <= ?",
                vec![(last + 1).into(), "incident".into(), last.into()],
            ))
            .await?;
        }
        txn.commit().await?;
        Ok(timers_total)
    }

    /// Refreshes the planner's statistics after a bulk load. On
    /// PostgreSQL it also vacuums, as autovacuum would soon after: until a
    /// table is vacuumed its visibility map is empty, so an index-only scan
    /// (a queue's page of numbers, m0006) still reads every row it finds
    /// from the table (45 heap fetches for a group's queue at 1 M
    /// incidents, none after). Left to autovacuum, that vacuum of a million
    /// rows would instead start a minute later, in the middle of whatever
    /// the seeded database is being used for (bench/RESULTS.md, twelfth
    /// session).
    ///
    /// On SQLite it also merges the search index's segments into one
    /// (FTS5's `optimize`). A bulk load leaves them as its batches wrote
    /// them, and FTS5 merges a little of them on every later write: the
    /// first thousands of comments after a seed of 100 k incidents cost
    /// their search update twice what it costs once that debt is paid
    /// (bench/RESULTS.md, twenty-third session). On PostgreSQL the vacuum
    /// already empties the GIN index's pending list.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        let sql = match self.backend() {
            DatabaseBackend::Postgres => "VACUUM (ANALYZE)",
            _ => "ANALYZE",
        };
        self.writer().execute_unprepared(sql).await?;
        if self.backend() == DatabaseBackend::Sqlite {
            self.writer()
                .execute_unprepared(
                    "INSERT INTO incident_search (incident_search) VALUES ('optimize')",
                )
                .await?;
        }
        Ok(())
    }
}

fn incident_model(i: &SeedIncident) -> incident::Model {
    incident::Model {
        id: i.id,
        number: i.number,
        title: i.title.clone(),
        description: i.description.clone(),
        impact: i32::from(i.impact),
        urgency: i32::from(i.urgency),
        priority: i32::from(i.priority),
        priority_overridden: false,
        category: i.category.clone(),
        major: i.major,
        state: i.state.to_owned(),
        hold_reason: i.hold_reason.map(str::to_owned),
        resolution_code: i.resolution_code.map(str::to_owned),
        resolution_notes: i.resolution_notes.clone(),
        requester_id: i.requester_id,
        assignment_group_id: i.assignment_group_id,
        assignee_id: i.assignee_id,
        reassignment_count: i.reassignment_count,
        created_by: i.requester_id,
        version: 1 + i64::from(i.reassignment_count) + i.comments.len() as i64,
        created_at: i.created_at,
        updated_at: i.updated_at,
        first_response_at: i.first_response_at,
        resolved_at: i.resolved_at,
        closed_at: i.closed_at,
        cancelled_at: i.cancelled_at,
        timers_json: String::new(),
    }
}
