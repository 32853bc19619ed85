//! The notification outbox. A change that should tell someone writes one
//! row per notice in its own transaction: a snapshot of what to say
//! (`context`) and everyone who is to hear it (`recipients`, each with their
//! own delivery state). The delivery worker claims due notices, renders each
//! once, sends it to every recipient still pending, and records each
//! recipient as sent only after the mail server accepted their message.

use std::collections::HashSet;

use chrono::Duration;
use keel_core::time::{Timestamp, now};
use keel_core::{GroupId, UserId};
use sea_orm::sea_query::{Expr, OnConflict, SimpleExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Statement,
};
use serde_json::Value;
use uuid::Uuid;

use crate::directory::GroupRef;
use crate::entities::{group, group_member, incident, notification_pref, outbox, user, watcher};
use crate::{Store, StoreError};

/// What happened, as recipients opt in or out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// An incident was raised (to its requester).
    IncidentCreated,
    /// An incident was assigned (to the assignee, or the group's members).
    IncidentAssigned,
    /// A public comment (to the other side of the conversation and watchers).
    IncidentCommented,
    /// A state change (to the requester and watchers).
    IncidentTransitioned,
    /// An SLA warning (to the assignee, or the group's members).
    SlaWarning,
    /// An SLA breach (to the assignee, or the group's members).
    SlaBreached,
}

impl Event {
    pub const ALL: [Event; 6] = [
        Event::IncidentCreated,
        Event::IncidentAssigned,
        Event::IncidentCommented,
        Event::IncidentTransitioned,
        Event::SlaWarning,
        Event::SlaBreached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::IncidentCreated => "incident.created",
            Event::IncidentAssigned => "incident.assigned",
            Event::IncidentCommented => "incident.commented",
            Event::IncidentTransitioned => "incident.transitioned",
            Event::SlaWarning => "sla.warning",
            Event::SlaBreached => "sla.breached",
        }
    }

    pub fn parse(s: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// A claimed outbox row (one notice), ready to render and send.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub id: Uuid,
    pub event: String,
    pub record_type: String,
    pub record_id: Uuid,
    /// Who is to hear of it, in the order they were written, each with
    /// where their delivery stands. The worker updates the states and hands
    /// the message back to [`Store::outbox_record`].
    pub recipients: Vec<Addressee>,
    pub context: Value,
    /// Delivery attempts so far, this one included.
    pub attempts: i32,
    pub created_at: Timestamp,
}

/// One recipient of a notice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Addressee {
    /// The user, when the address is a user's (not a manager's escalation
    /// address, say).
    pub id: Option<Uuid>,
    pub email: String,
    #[serde(default, skip_serializing_if = "DeliveryState::is_pending")]
    pub state: DeliveryState,
    /// Why the mail server refused it for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Addressee {
    /// Refused for good: not tried again.
    pub fn fail(&mut self, error: &str) {
        self.state = DeliveryState::Failed;
        self.error = Some(crate::clipped_error(error));
    }
}

/// Where delivery to one recipient of a notice stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not sent yet (written as no `state` at all).
    #[default]
    Pending,
    /// The mail server accepted it.
    Sent,
    /// The mail server refused it for good.
    Failed,
}

impl DeliveryState {
    fn is_pending(&self) -> bool {
        *self == DeliveryState::Pending
    }
}

/// A notice's status from its recipients': `pending` while anyone is,
/// then `sent` if anyone was reached and `failed` if nobody was.
fn notice_status(recipients: &[Addressee]) -> &'static str {
    if recipients.iter().any(|r| r.state == DeliveryState::Pending) {
        "pending"
    } else if recipients.iter().any(|r| r.state == DeliveryState::Sent) {
        "sent"
    } else {
        "failed"
    }
}

/// Who hears about an incident, by role in it.
pub(crate) struct Audience {
    pub assignee: Option<Uuid>,
    pub group: Option<Uuid>,
}

impl Audience {
    pub fn of(m: &incident::Model) -> Self {
        Audience {
            assignee: m.assignee_id,
            group: m.assignment_group_id,
        }
    }

    /// Who hears of `event`: the assignee, or every member of the group
    /// when nobody is assigned, never `actor`.
    pub fn ask(&self, event: Event, actor: Option<UserId>) -> Ask {
        let (people, group) = match (self.assignee, self.group) {
            (Some(a), _) => (vec![a], None),
            (None, g) => (vec![], g.map(GroupKey::Id)),
        };
        Ask {
            event,
            actor,
            people,
            group,
        }
    }

    /// The assignee, or every member of the group when nobody is assigned.
    pub async fn workers<C: ConnectionTrait>(&self, db: &C) -> Result<Vec<Uuid>, StoreError> {
        if let Some(a) = self.assignee {
            return Ok(vec![a]);
        }
        let Some(g) = self.group else {
            return Ok(vec![]);
        };
        Ok(group_member::Entity::find()
            .filter(group_member::Column::GroupId.eq(g))
            .all(db)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect())
    }
}

pub(crate) async fn watchers_of<C: ConnectionTrait>(
    db: &C,
    record_type: &str,
    id: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(watcher::Entity::find()
        .filter(watcher::Column::RecordType.eq(record_type))
        .filter(watcher::Column::RecordId.eq(id))
        .all(db)
        .await?
        .into_iter()
        .map(|w| w.user_id)
        .collect())
}

/// The facts of an incident every template may use.
pub(crate) fn incident_context(
    m: &incident::Model,
    actor: Option<&str>,
) -> serde_json::Map<String, Value> {
    let mut c = serde_json::Map::new();
    c.insert(
        "number".into(),
        keel_core::RecordNumber::new(keel_core::RecordKind::Incident, m.number)
            .to_string()
            .into(),
    );
    c.insert("title".into(), m.title.clone().into());
    c.insert("state".into(), m.state.clone().into());
    c.insert("priority".into(), m.priority.into());
    c.insert("actor".into(), actor.unwrap_or("Keel").into());
    c
}

/// What to tell, about which record, on whose behalf.
pub(crate) struct Notice<'a> {
    pub event: Event,
    pub record_type: &'a str,
    pub record_id: Uuid,
    /// Who caused it; never notified of their own action.
    pub actor: Option<UserId>,
    pub context: serde_json::Map<String, Value>,
    pub at: Timestamp,
}

/// A pending outbox row: `notice` to `recipients`, none reached yet.
fn pending_row(notice: Notice<'_>, recipients: &[Addressee]) -> outbox::ActiveModel {
    let Notice {
        event,
        record_type,
        record_id,
        context,
        at: t,
        ..
    } = notice;
    outbox::ActiveModel {
        id: Set(Uuid::now_v7()),
        channel: Set("email".into()),
        event: Set(event.as_str().into()),
        record_type: Set(record_type.to_owned()),
        record_id: Set(record_id),
        // A list of plain structs of strings and ids: it always serializes.
        recipients: Set(serde_json::to_string(recipients).unwrap_or_default()),
        context: Set(Value::Object(context).to_string()),
        status: Set("pending".into()),
        attempts: Set(0),
        next_attempt_at: Set(t),
        last_error: Set(None),
        created_at: Set(t),
        sent_at: Set(None),
    }
}

/// Writes the outbox row telling `notice` to `recipients`: deduplicated,
/// without the actor, inactive users, or anyone who opted out of the event
/// (no row if that leaves nobody).
pub(crate) async fn enqueue<C: crate::rows::Read>(
    db: &C,
    notice: Notice<'_>,
    recipients: impl IntoIterator<Item = Uuid>,
) -> Result<(), StoreError> {
    let people: Vec<Uuid> = recipients.into_iter().collect();
    let to = resolve(db, notice.event, notice.actor, &people, None).await?;
    insert(db, row(notice, &to)).await
}

/// A user who is to receive a notice, with the address to send it to.
#[derive(Debug, Clone)]
pub(crate) struct Recipient {
    pub id: Uuid,
    pub email: String,
}

/// Who of `people`, and of the members of `group` when given, receives
/// `event`: active users other than `actor` who have not opted out of it,
/// each once. One query, which may run before the transaction that writes
/// the rows (a create resolves its audiences on a read connection, so the
/// writer is held only for the writes).
pub(crate) async fn resolve<C: crate::rows::Read>(
    db: &C,
    event: Event,
    actor: Option<UserId>,
    people: &[Uuid],
    group: Option<Uuid>,
) -> Result<Vec<Recipient>, StoreError> {
    let ask = Ask {
        event,
        actor,
        people: people.to_vec(),
        group: group.map(GroupKey::Id),
    };
    Ok(resolve_all(db, &[ask]).await?.pop().unwrap_or_default())
}

/// One audience to [`resolve`]: `people` and the members of `group` who
/// are to hear of `event`, never `actor`.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub event: Event,
    pub actor: Option<UserId>,
    pub people: Vec<Uuid>,
    pub group: Option<GroupKey>,
}

/// A group as a request names it: by id, or by its exact name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum GroupKey {
    Id(Uuid),
    Name(String),
}

impl GroupKey {
    /// A UUID is an id; anything else is a name, without surrounding blanks.
    pub fn parse(key: &str) -> GroupKey {
        match Uuid::parse_str(key) {
            Ok(id) => GroupKey::Id(id),
            Err(_) => GroupKey::Name(key.trim().to_owned()),
        }
    }

    /// The condition on `assignment_groups` that finds this group.
    pub fn condition(&self) -> SimpleExpr {
        match self {
            GroupKey::Id(id) => group::Column::Id.eq(*id),
            GroupKey::Name(name) => group::Column::Name.eq(name.as_str()),
        }
    }
}

/// [`resolve`]s several audiences in one query; answers in `asks` order.
pub(crate) async fn resolve_all<C: crate::rows::Read>(
    db: &C,
    asks: &[Ask],
) -> Result<Vec<Vec<Recipient>>, StoreError> {
    Ok(resolve_with(db, None, asks).await?.1)
}

/// Finds the group `key` names, when given, and [`resolve`]s `asks`
/// (which may reach that group's members by the same key) in one query: a
/// create that names its group and nobody yet makes one read before its
/// writes, not two. The group is `None` if there is no such group.
/// Incident creates, comments, transitions and assignments ask through
/// [`crate::audiences`], which keeps the answers' parts.
pub(crate) async fn resolve_with<C: crate::rows::Read>(
    db: &C,
    key: Option<&GroupKey>,
    asks: &[Ask],
) -> Result<(Option<GroupRef>, Vec<Vec<Recipient>>), StoreError> {
    let mut out = vec![Vec::new(); asks.len()];
    let mut group = None;
    // The group's row comes as one more answer, numbered after the asks,
    // its name where the recipients' email is.
    let group_answer = i64::try_from(asks.len()).unwrap_or(i64::MAX);
    let Some(all) = audience_statement(db.get_database_backend(), key, asks) else {
        return Ok((group, out));
    };
    for row in db.read(all).await? {
        let i: i64 = row.try_get("", "ask")?;
        let id: Uuid = row.try_get("", "id")?;
        let email: String = row.try_get("", "email")?;
        if i == group_answer && key.is_some() {
            group = Some(GroupRef {
                id: GroupId(id),
                name: email,
            });
        } else if let Some(to) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            to.push(Recipient { id, email });
        }
    }
    Ok((group, out))
}

/// The statement [`resolve_with`] runs: the group's row when `key` is
/// given (answer number `asks.len()`, its name as `email`), then one
/// `SELECT` per audience that has anyone in it (answer number: its place
/// in `asks`), joined by `UNION ALL`. `None` if there is nothing to ask.
///
/// Written by hand, in one pass that places each value where its
/// placeholder is: sea-query took 98 000 instructions to build and render
/// it, an eighth of a PostgreSQL create (bench/RESULTS.md, fourteenth
/// session). A unit test holds what it finds to what the sea-query
/// statement it replaced finds, on the same data.
fn audience_statement(
    backend: DatabaseBackend,
    key: Option<&GroupKey>,
    asks: &[Ask],
) -> Option<Statement> {
    let mut q = Sql::new(backend);
    if let Some(k) = key {
        q.push(r#"SELECT "id", "name" AS "email", "#);
        q.bind(i64::try_from(asks.len()).unwrap_or(i64::MAX));
        q.push(r#" AS "ask" FROM "assignment_groups" WHERE "#);
        q.group_condition(k);
    }
    for (i, ask) in asks.iter().enumerate() {
        if ask.people.is_empty() && ask.group.is_none() {
            continue;
        }
        if !q.sql.is_empty() {
            q.push(" UNION ALL ");
        }
        q.push(r#"SELECT "users"."id", "users"."email", "#);
        q.bind(i64::try_from(i).unwrap_or(0));
        q.push(r#" AS "ask" FROM "users" WHERE "users"."active" = "#);
        q.bind(true);
        q.push(" AND (");
        for (j, p) in ask.people.iter().enumerate() {
            q.push(if j == 0 { r#""users"."id" IN ("# } else { ", " });
            q.bind(*p);
        }
        if !ask.people.is_empty() {
            q.push(")");
        }
        if let Some(g) = &ask.group {
            if !ask.people.is_empty() {
                q.push(" OR ");
            }
            q.push(r#""users"."id" IN (SELECT "user_id" FROM "group_members" WHERE "#);
            match g {
                GroupKey::Id(id) => {
                    q.push(r#""group_id" = "#);
                    q.bind(*id);
                }
                GroupKey::Name(_) => {
                    q.push(r#""group_id" IN (SELECT "id" FROM "assignment_groups" WHERE "#);
                    q.group_condition(g);
                    q.push(")");
                }
            }
            q.push(")");
        }
        q.push(r#") AND "users"."id" NOT IN (SELECT "user_id" FROM "notification_prefs" WHERE "event" = "#);
        q.bind(ask.event.as_str());
        q.push(r#" AND "enabled" = "#);
        q.bind(false);
        q.push(")");
        if let Some(a) = ask.actor {
            q.push(r#" AND "users"."id" <> "#);
            q.bind(a.0);
        }
    }
    (!q.sql.is_empty()).then(|| Statement::from_sql_and_values(backend, q.sql, q.values))
}

/// A statement's text and values, written together: each value goes where
/// its placeholder is (`$1, $2, ...` on PostgreSQL, `?` on SQLite).
struct Sql {
    backend: DatabaseBackend,
    sql: String,
    values: Vec<sea_orm::Value>,
}

impl Sql {
    fn new(backend: DatabaseBackend) -> Sql {
        Sql {
            backend,
            sql: String::with_capacity(512),
            values: Vec::new(),
        }
    }

    fn push(&mut self, text: &str) {
        self.sql.push_str(text);
    }

    fn bind(&mut self, v: impl Into<sea_orm::Value>) {
        self.values.push(v.into());
        crate::multi::push_placeholder(&mut self.sql, self.backend, self.values.len());
    }

    /// The condition on `assignment_groups` that finds the group `key`
    /// names (as [`GroupKey::condition`]).
    fn group_condition(&mut self, key: &GroupKey) {
        match key {
            GroupKey::Id(id) => {
                self.push(r#""assignment_groups"."id" = "#);
                self.bind(*id);
            }
            GroupKey::Name(name) => {
                self.push(r#""assignment_groups"."name" = "#);
                self.bind(name.as_str());
            }
        }
    }
}

/// The outbox row telling `notice` to `to`, if `to` names anyone.
pub(crate) fn row(notice: Notice<'_>, to: &[Recipient]) -> Option<outbox::ActiveModel> {
    if to.is_empty() {
        return None;
    }
    let to: Vec<Addressee> = to
        .iter()
        .map(|r| Addressee {
            id: Some(r.id),
            email: r.email.clone(),
            state: DeliveryState::Pending,
            error: None,
        })
        .collect();
    Some(pending_row(notice, &to))
}

/// Writes an outbox row, if there is one.
pub(crate) async fn insert<C: ConnectionTrait>(
    db: &C,
    row: Option<outbox::ActiveModel>,
) -> Result<(), StoreError> {
    if let Some(row) = row {
        let s = outbox::Entity::insert(row).build(db.get_database_backend());
        db.execute_raw(s).await?;
    }
    Ok(())
}

/// Writes one outbox row to an address that is not a user's (a manager's
/// escalation address, say).
pub(crate) async fn enqueue_address<C: ConnectionTrait>(
    db: &C,
    notice: Notice<'_>,
    email: &str,
) -> Result<(), StoreError> {
    let to = Addressee {
        id: None,
        email: email.to_owned(),
        state: DeliveryState::Pending,
        error: None,
    };
    insert(db, Some(pending_row(notice, &[to]))).await
}

/// A user's display name, for "who did it" in messages.
pub(crate) async fn display_name<C: ConnectionTrait>(
    db: &C,
    id: Option<UserId>,
) -> Result<Option<String>, StoreError> {
    let Some(id) = id else { return Ok(None) };
    Ok(user::Entity::find_by_id(id.0)
        .one(db)
        .await?
        .map(|u| u.display_name))
}

impl Store {
    /// Claims up to `batch` due messages for `lease`: each is taken with a
    /// conditional update, so two nodes never send the same one, and one
    /// whose node died is taken again once the lease runs out.
    pub async fn outbox_claim(
        &self,
        batch: u64,
        lease: Duration,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let t = now();
        let due = outbox::Entity::find()
            .filter(outbox::Column::Status.eq("pending"))
            .filter(outbox::Column::NextAttemptAt.lte(t))
            .order_by_asc(outbox::Column::NextAttemptAt)
            .limit(batch)
            .all(self.conn())
            .await?;
        let mut claimed = Vec::new();
        for row in due {
            let res = outbox::Entity::update_many()
                .col_expr(outbox::Column::NextAttemptAt, Expr::value(t + lease))
                .col_expr(outbox::Column::Attempts, Expr::value(row.attempts + 1))
                .filter(outbox::Column::Id.eq(row.id))
                .filter(outbox::Column::Status.eq("pending"))
                .filter(outbox::Column::NextAttemptAt.eq(row.next_attempt_at))
                .exec(self.writer())
                .await?;
            if res.rows_affected == 1 {
                claimed.push(OutboxMessage {
                    id: row.id,
                    context: serde_json::from_str(&row.context).unwrap_or(Value::Null),
                    // Unreadable, it is an empty list: nobody pending, and
                    // the notice is recorded as failed.
                    recipients: serde_json::from_str(&row.recipients).unwrap_or_default(),
                    event: row.event,
                    record_type: row.record_type,
                    record_id: row.record_id,
                    attempts: row.attempts + 1,
                    created_at: row.created_at,
                });
            }
        }
        Ok(claimed)
    }

    /// Records where delivery of a claimed notice stands, from its
    /// recipients' states.
    ///
    /// - Nobody pending: the notice is done, `sent` if anyone was reached
    ///   (`failed` if nobody was), and the last refusal is kept.
    /// - Someone pending: they are next tried at `until`. During a pass
    ///   that is the end of a renewed claim (so a notice to many people is
    ///   not taken by another node while it is being sent), with no
    ///   `error`; after a failure that may pass it is the retry's time,
    ///   with the failure. Either way who was reached is recorded, so a
    ///   node that dies now does not send to them again.
    pub async fn outbox_record(
        &self,
        msg: &OutboxMessage,
        until: Timestamp,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let status = notice_status(&msg.recipients);
        let recipients = serde_json::to_string(&msg.recipients).unwrap_or_default();
        let mut update = outbox::Entity::update_many()
            .col_expr(outbox::Column::Recipients, Expr::value(recipients))
            .filter(outbox::Column::Id.eq(msg.id));
        if status != "pending" {
            let refused = msg.recipients.iter().rev().find_map(|r| r.error.clone());
            update = update
                .col_expr(outbox::Column::Status, Expr::value(status))
                .col_expr(outbox::Column::SentAt, Expr::value(Some(now())))
                .col_expr(outbox::Column::LastError, Expr::value(refused));
        } else {
            update = update.col_expr(outbox::Column::NextAttemptAt, Expr::value(until));
            if let Some(error) = error {
                update = update.col_expr(
                    outbox::Column::LastError,
                    Expr::value(Some(crate::clipped_error(error))),
                );
            }
        }
        update.exec(self.writer()).await?;
        Ok(())
    }

    /// Every event with whether `user` is notified of it (default yes).
    pub async fn notification_prefs(&self, user: UserId) -> Result<Vec<(Event, bool)>, StoreError> {
        let off: HashSet<String> = notification_pref::Entity::find()
            .filter(notification_pref::Column::UserId.eq(user.0))
            .filter(notification_pref::Column::Enabled.eq(false))
            .all(self.conn())
            .await?
            .into_iter()
            .map(|p| p.event)
            .collect();
        Ok(Event::ALL
            .into_iter()
            .map(|e| (e, !off.contains(e.as_str())))
            .collect())
    }

    pub async fn set_notification_pref(
        &self,
        user: UserId,
        event: Event,
        enabled: bool,
    ) -> Result<(), StoreError> {
        notification_pref::Entity::insert(notification_pref::ActiveModel {
            user_id: Set(user.0),
            event: Set(event.as_str().into()),
            enabled: Set(enabled),
        })
        .on_conflict(
            OnConflict::columns([
                notification_pref::Column::UserId,
                notification_pref::Column::Event,
            ])
            .update_column(notification_pref::Column::Enabled)
            .to_owned(),
        )
        .exec_without_returning(self.writer())
        .await?;
        self.cache.audiences.clear();
        Ok(())
    }

    /// Outbox notices by status, for metrics and tests.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = outbox::Entity::find()
            .select_only()
            .column(outbox::Column::Status)
            .column_as(outbox::Column::Id.count(), "n")
            .group_by(outbox::Column::Status)
            .into_tuple()
            .all(self.conn())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::sea_query::{Condition, Query, SelectStatement};

    #[test]
    fn a_group_key_is_an_id_when_it_parses_as_one_and_a_trimmed_name_otherwise() {
        let id = Uuid::now_v7();
        assert_eq!(GroupKey::parse(&id.to_string()), GroupKey::Id(id));
        assert_eq!(
            GroupKey::parse("  network "),
            GroupKey::Name("network".into())
        );
        assert_eq!(
            GroupKey::parse(&format!("{id}x")),
            GroupKey::Name(format!("{id}x"))
        );
    }

    #[test]
    fn members_named_by_a_group_name_are_found_through_the_group_in_the_same_query() {
        let ask = Ask {
            event: Event::IncidentAssigned,
            actor: None,
            people: vec![],
            group: Some(GroupKey::Name("network".into())),
        };
        for backend in [DatabaseBackend::Sqlite, DatabaseBackend::Postgres] {
            let Some(q) = audience_statement(backend, None, std::slice::from_ref(&ask)) else {
                panic!("a group is an audience");
            };
            assert!(
                q.sql.contains(concat!(
                    r#""group_id" IN (SELECT "id" FROM "assignment_groups" "#,
                    r#"WHERE "assignment_groups"."name" = "#
                )),
                "{}",
                q.sql
            );
            let values = q.values.map(|v| v.0).unwrap_or_default();
            assert!(values.contains(&"network".into()), "{values:?}");
        }
        let by_id = Ask {
            group: Some(GroupKey::Id(Uuid::nil())),
            ..ask
        };
        let Some(q) = audience_statement(DatabaseBackend::Postgres, None, &[by_id]) else {
            panic!("a group is an audience");
        };
        assert!(!q.sql.contains("assignment_groups"), "{}", q.sql);
        assert!(q.sql.contains("$1") && !q.sql.contains('?'), "{}", q.sql);
    }

    #[test]
    fn nobody_to_ask_is_no_statement() {
        let empty = Ask {
            event: Event::IncidentCreated,
            actor: None,
            people: vec![],
            group: None,
        };
        assert!(audience_statement(DatabaseBackend::Sqlite, None, &[]).is_none());
        assert!(audience_statement(DatabaseBackend::Sqlite, None, &[empty]).is_none());
    }

    /// What sea-query built for [`audience_statement`] before it was
    /// written by hand: the reference it must agree with.
    fn reference_statement(
        backend: DatabaseBackend,
        key: Option<&GroupKey>,
        asks: &[Ask],
    ) -> Option<Statement> {
        use sea_orm::sea_query::{Alias, UnionType};
        let group_answer = i64::try_from(asks.len()).unwrap_or(i64::MAX);
        let mut all: Option<SelectStatement> = key.map(|k| {
            Query::select()
                .column(group::Column::Id)
                .expr_as(Expr::col(group::Column::Name), Alias::new("email"))
                .expr_as(Expr::val(group_answer), Alias::new("ask"))
                .from(group::Entity)
                .and_where(k.condition())
                .take()
        });
        for (i, ask) in asks.iter().enumerate() {
            let Some(mut q) = recipients_query(ask) else {
                continue;
            };
            q.expr_as(Expr::val(i64::try_from(i).unwrap_or(0)), Alias::new("ask"));
            match &mut all {
                None => all = Some(q),
                Some(u) => {
                    u.union(UnionType::All, q);
                }
            }
        }
        all.map(|q| backend.build(&q))
    }

    fn members(key: &GroupKey) -> SimpleExpr {
        match key {
            GroupKey::Id(id) => group_member::Column::GroupId.eq(*id),
            GroupKey::Name(_) => group_member::Column::GroupId.in_subquery(
                Query::select()
                    .column(group::Column::Id)
                    .from(group::Entity)
                    .and_where(key.condition())
                    .take(),
            ),
        }
    }

    fn recipients_query(ask: &Ask) -> Option<SelectStatement> {
        let Ask {
            event,
            actor,
            ref people,
            ref group,
        } = *ask;
        if people.is_empty() && group.is_none() {
            return None;
        }
        let mut who = Condition::any();
        if !people.is_empty() {
            who = who.add(user::Column::Id.is_in(people.iter().copied()));
        }
        if let Some(g) = group {
            who = who.add(
                user::Column::Id.in_subquery(
                    Query::select()
                        .column(group_member::Column::UserId)
                        .from(group_member::Entity)
                        .and_where(members(g))
                        .take(),
                ),
            );
        }
        let mut q = user::Entity::find()
            .select_only()
            .column(user::Column::Id)
            .column(user::Column::Email)
            .filter(user::Column::Active.eq(true))
            .filter(who)
            .filter(
                user::Column::Id.not_in_subquery(
                    Query::select()
                        .column(notification_pref::Column::UserId)
                        .from(notification_pref::Entity)
                        .and_where(notification_pref::Column::Event.eq(event.as_str()))
                        .and_where(notification_pref::Column::Enabled.eq(false))
                        .to_owned(),
                ),
            );
        if let Some(a) = actor {
            q = q.filter(user::Column::Id.ne(a.0));
        }
        Some(q.into_query())
    }

    /// Every row `stmt` answers, as (answer number, id, email), sorted.
    async fn answers(
        db: &sea_orm::DatabaseConnection,
        stmt: Option<Statement>,
    ) -> Vec<(i64, Uuid, String)> {
        let Some(stmt) = stmt else {
            return Vec::new();
        };
        let mut got: Vec<(i64, Uuid, String)> = db
            .query_all_raw(stmt)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|r| {
                (
                    r.try_get::<i64>("", "ask")
                        .unwrap_or_else(|e| panic!("{e}")),
                    r.try_get::<Uuid>("", "id")
                        .unwrap_or_else(|e| panic!("{e}")),
                    r.try_get::<String>("", "email")
                        .unwrap_or_else(|e| panic!("{e}")),
                )
            })
            .collect();
        got.sort();
        got
    }

    #[tokio::test]
    async fn the_audience_statement_finds_what_sea_query_built_for_it() {
        let db = sea_orm::Database::connect("sqlite::memory:")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        db.execute_unprepared(
            "CREATE TABLE users (id BLOB PRIMARY KEY, email TEXT NOT NULL, active BOOLEAN NOT NULL);
             CREATE TABLE assignment_groups (id BLOB PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE group_members (group_id BLOB NOT NULL, user_id BLOB NOT NULL);
             CREATE TABLE notification_prefs (user_id BLOB NOT NULL, event TEXT NOT NULL, enabled BOOLEAN NOT NULL);",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let u: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
        let (network, desk) = (Uuid::now_v7(), Uuid::now_v7());
        let run = |sql: &str, values: Vec<sea_orm::Value>| {
            db.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Sqlite,
                sql,
                values,
            ))
        };
        for (i, id) in u.iter().enumerate() {
            // u[4] is inactive.
            run(
                "INSERT INTO users VALUES (?, ?, ?)",
                vec![
                    (*id).into(),
                    format!("u{i}@example.com").into(),
                    (i != 4).into(),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        for (g, name) in [(network, "network"), (desk, "desk")] {
            run(
                "INSERT INTO assignment_groups VALUES (?, ?)",
                vec![g.into(), name.into()],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        for (g, m) in [
            (network, 0),
            (network, 1),
            (network, 4),
            (desk, 2),
            (desk, 3),
        ] {
            run(
                "INSERT INTO group_members VALUES (?, ?)",
                vec![g.into(), u[m].into()],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        // u[1] opted out of assignments, u[3] out of creates; u[2] opted in.
        for (m, event, enabled) in [
            (1, Event::IncidentAssigned, false),
            (3, Event::IncidentCreated, false),
            (2, Event::IncidentAssigned, true),
        ] {
            run(
                "INSERT INTO notification_prefs VALUES (?, ?, ?)",
                vec![u[m].into(), event.as_str().into(), enabled.into()],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let ack = Ask {
            event: Event::IncidentCreated,
            actor: None,
            people: vec![u[3]],
            group: None,
        };
        let by_id = Ask {
            event: Event::IncidentAssigned,
            actor: Some(UserId(u[0])),
            people: vec![],
            group: Some(GroupKey::Id(network)),
        };
        let by_name = Ask {
            event: Event::IncidentAssigned,
            actor: Some(UserId(u[2])),
            people: vec![u[5], u[2], u[4], u[5]],
            group: Some(GroupKey::Name("network".into())),
        };
        let desk_by_name = Ask {
            event: Event::IncidentCreated,
            actor: None,
            people: vec![u[0]],
            group: Some(GroupKey::Name("desk".into())),
        };
        let empty = Ask {
            event: Event::IncidentCommented,
            actor: None,
            people: vec![],
            group: None,
        };
        let asks: Vec<Vec<Ask>> = vec![
            vec![],
            vec![ack.clone()],
            vec![ack.clone(), by_id.clone()],
            vec![by_name.clone()],
            vec![empty.clone(), desk_by_name.clone(), ack],
            vec![by_id, empty, by_name, desk_by_name],
        ];
        let keys = [
            None,
            Some(GroupKey::Id(network)),
            Some(GroupKey::Name("desk".into())),
            Some(GroupKey::Name("nobody's".into())),
            Some(GroupKey::Id(Uuid::nil())),
        ];
        let mut found = 0;
        for asks in &asks {
            for key in &keys {
                let want = answers(
                    &db,
                    reference_statement(DatabaseBackend::Sqlite, key.as_ref(), asks),
                )
                .await;
                let got = answers(
                    &db,
                    audience_statement(DatabaseBackend::Sqlite, key.as_ref(), asks),
                )
                .await;
                assert_eq!(got, want, "{key:?} {asks:?}");
                found += got.len();
            }
        }
        assert!(found > 40, "the cases find people ({found})");
    }

    fn addressee(state: DeliveryState) -> Addressee {
        Addressee {
            id: Some(Uuid::now_v7()),
            email: "rita@example.com".into(),
            state,
            error: None,
        }
    }

    #[test]
    fn a_notice_is_pending_while_anyone_is_then_sent_if_anyone_was_reached() {
        use DeliveryState::{Failed, Pending, Sent};
        let status = |states: &[DeliveryState]| {
            notice_status(&states.iter().map(|s| addressee(*s)).collect::<Vec<_>>())
        };
        assert_eq!(status(&[Sent, Pending, Failed]), "pending");
        assert_eq!(status(&[Sent, Failed]), "sent");
        assert_eq!(status(&[Failed, Failed]), "failed");
        assert_eq!(status(&[]), "failed", "an unreadable list reaches nobody");
    }

    #[test]
    fn a_pending_recipient_is_written_without_a_state_and_read_back_pending() {
        let pending = addressee(DeliveryState::Pending);
        let text = serde_json::to_string(&pending).unwrap_or_default();
        assert!(!text.contains("state") && !text.contains("error"), "{text}");
        let back: Addressee = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, pending);
        let mut refused = addressee(DeliveryState::Pending);
        refused.fail(&"x".repeat(800));
        let text = serde_json::to_string(&refused).unwrap_or_default();
        assert!(text.contains(r#""state":"failed""#), "{text}");
        let back: Addressee = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.error.map(|e| e.len()), Some(500));
    }

    /// The outbox of a database from before notices (m0006): one row per
    /// recipient, in each state there is.
    #[tokio::test]
    async fn outbox_rows_from_before_notices_become_one_recipient_notices_in_their_state() {
        use keel_migrations::{Migrator, MigratorTrait};
        let db = sea_orm::Database::connect("sqlite::memory:")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Migrator::up(&db, Some(6))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (user, record) = (Uuid::now_v7(), Uuid::now_v7());
        let t = now();
        let run = |sql: &str, values: Vec<sea_orm::Value>| {
            db.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Sqlite,
                sql,
                values,
            ))
        };
        run(
            "INSERT INTO users VALUES (?, 'rita', 'rita@example.com', 'Rita', 'x', 1, ?, ?)",
            vec![user.into(), t.into(), t.into()],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let old = [
            (Some(user), "rita@example.com", "pending", None),
            (None, "boss@example.com", "failed", Some("550 no such user")),
            (Some(user), "rita@example.com", "sent", None),
        ];
        let mut ids = Vec::new();
        for (to_id, to, status, error) in old {
            let id = Uuid::now_v7();
            ids.push(id);
            run(
                "INSERT INTO outbox VALUES (?, 'email', 'incident.created', 'incident', ?, ?, ?, '{}', ?, 1, ?, ?, ?, NULL)",
                vec![
                    id.into(),
                    record.into(),
                    to_id.into(),
                    to.into(),
                    status.into(),
                    t.into(),
                    error.into(),
                    t.into(),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        Migrator::up(&db, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let rows = outbox::Entity::find()
            .order_by_asc(outbox::Column::Id)
            .all(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
        let recipients: Vec<Vec<Addressee>> = rows
            .iter()
            .map(|r| serde_json::from_str(&r.recipients).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(
            recipients,
            vec![
                vec![Addressee {
                    id: Some(user),
                    email: "rita@example.com".into(),
                    state: DeliveryState::Pending,
                    error: None,
                }],
                vec![Addressee {
                    id: None,
                    email: "boss@example.com".into(),
                    state: DeliveryState::Failed,
                    error: Some("550 no such user".into()),
                }],
                vec![Addressee {
                    id: Some(user),
                    email: "rita@example.com".into(),
                    state: DeliveryState::Sent,
                    error: None,
                }],
            ]
        );
        assert_eq!(
            rows.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(),
            ["pending", "failed", "sent"]
        );
        // And back to m0006: one row per recipient again, the user still
        // linked.
        let after_m0006 = u32::try_from(Migrator::migrations().len() - 6).unwrap_or(1);
        Migrator::down(&db, Some(after_m0006))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let back = db
            .query_all_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                "SELECT recipient_id, recipient, status FROM outbox ORDER BY id",
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let back: Vec<(Option<Uuid>, String, String)> = back
            .iter()
            .map(|r| {
                (
                    r.try_get("", "recipient_id")
                        .unwrap_or_else(|e| panic!("{e}")),
                    r.try_get("", "recipient").unwrap_or_else(|e| panic!("{e}")),
                    r.try_get("", "status").unwrap_or_else(|e| panic!("{e}")),
                )
            })
            .collect();
        assert_eq!(
            back,
            vec![
                (Some(user), "rita@example.com".into(), "pending".into()),
                (None, "boss@example.com".into(), "failed".into()),
                (Some(user), "rita@example.com".into(), "sent".into()),
            ]
        );
    }

    /// A notice to three people, claimed and sent in two passes: the
    /// first reaches one and renews the claim, one address is refused for
    /// good and the third fails for now; the retry reaches the third.
    #[tokio::test]
    async fn a_notice_records_each_recipient_and_is_not_claimed_again_while_it_is_sent() {
        let path = std::env::temp_dir().join(format!("keel-outbox-{}.db", Uuid::now_v7()));
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display()), 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        let to: Vec<Addressee> = ["a", "b", "c"]
            .iter()
            .map(|n| Addressee {
                id: None,
                email: format!("{n}@example.com"),
                state: DeliveryState::Pending,
                error: None,
            })
            .collect();
        let notice = Notice {
            event: Event::IncidentCreated,
            record_type: "incident",
            record_id: Uuid::now_v7(),
            actor: None,
            context: serde_json::Map::new(),
            at: now(),
        };
        insert(store.writer(), Some(pending_row(notice, &to)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let lease = Duration::minutes(2);
        let claim = || async {
            store
                .outbox_claim(10, lease)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let Some(mut msg) = claim().await.pop() else {
            panic!("the notice is due")
        };
        assert_eq!(msg.recipients, to);
        assert_eq!(msg.attempts, 1);

        msg.recipients[0].state = DeliveryState::Sent;
        // Progress renews the claim: the notice is next due when it says.
        let renewed = now() + lease * 2;
        store
            .outbox_record(&msg, renewed, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let row = outbox::Entity::find()
            .one(store.conn())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            row.map(|r| (r.status, r.next_attempt_at)),
            Some(("pending".to_owned(), renewed))
        );
        assert!(claim().await.is_empty(), "claimed while it was being sent");

        msg.recipients[1].fail("550 no such user");
        // The retry's time is already past, so it is due at once.
        store
            .outbox_record(&msg, now() - Duration::seconds(1), Some("421 try later"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let Some(mut again) = claim().await.pop() else {
            panic!("the retry is due")
        };
        assert_eq!(again.attempts, 2);
        let states: Vec<DeliveryState> = again.recipients.iter().map(|r| r.state).collect();
        assert_eq!(
            states,
            [
                DeliveryState::Sent,
                DeliveryState::Failed,
                DeliveryState::Pending
            ]
        );

        again.recipients[2].state = DeliveryState::Sent;
        store
            .outbox_record(&again, now(), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store
                .outbox_counts()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            vec![("sent".to_owned(), 1)]
        );
        let row = outbox::Entity::find()
            .one(store.conn())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            row.and_then(|r| r.last_error).as_deref(),
            Some("550 no such user"),
            "the refusal is kept"
        );
        assert!(
            claim().await.is_empty(),
            "a finished notice is claimed again"
        );
        store.close().await;
        for suffix in ["", "-wal", "-shm"] {
            std::fs::remove_file(format!("{}{suffix}", path.display())).ok();
        }
    }
}
