//! SLA persistence: calendars, ordered policies, and the timers of each
//! record. Timers are brought up to date inside the transaction of every
//! change to their record ([`sync_incident`]); the worker step
//! ([`Store::sla_step`]) records warnings and breaches and escalates.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::Duration;
use keel_core::time::{Timestamp, now};
use keel_core::{ErrorClass, RecordKind};
use keel_sla::{
    Calendar, CalendarSpec, Clock, DEFAULT_WARN_PERCENTS, EscalationAction, Facts, Pause,
    PolicySpec, TargetKind, Timer, TimerMemo, TimerState, TimerStatus, Trigger, crossed,
    next_check,
};
use sea_orm::sea_query::{Condition, Expr, Func, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement, TransactionTrait,
};
use uuid::Uuid;

use crate::audit::{self, Entry};
use crate::cache::{IdMap, SlaConfig};
use crate::entities::{incident, sla_calendar, sla_policy, sla_timer};
use crate::error::on_unique;
use crate::{Store, StoreError};

const KIND: RecordKind = RecordKind::Incident;

/// How long a worker owns a claimed timer before another may take it.
const LEASE_SECS: i64 = 60;

/// A stored business calendar.
#[derive(Debug, Clone)]
pub struct CalendarView {
    pub id: Uuid,
    pub name: String,
    pub spec: CalendarSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A stored policy.
#[derive(Debug, Clone)]
pub struct PolicyView {
    pub id: Uuid,
    pub name: String,
    /// Lower positions are tried first; the first matching policy applies.
    pub position: i32,
    pub active: bool,
    pub spec: PolicySpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One SLA target of a record, as of now.
#[derive(Debug, Clone)]
pub struct SlaTimerView {
    pub kind: TargetKind,
    pub policy_id: Option<Uuid>,
    pub target_secs: i64,
    pub status: TimerStatus,
    pub breached_at: Option<Timestamp>,
}

/// What changed in the record, for the timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncEvent {
    /// The record was just created: it has no timers yet.
    Created,
    /// Any change (fields, state).
    Changed,
    /// An agent's public update: restarts the next-update target.
    AgentUpdate,
}

fn invalid(e: &keel_sla::SlaError) -> StoreError {
    use keel_core::DomainError;
    StoreError::rule(e.code(), ErrorClass::Invalid, None, e.to_string())
}

fn parse_spec<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::Db(sea_orm::DbErr::Custom(format!(
            "stored SLA definition unreadable: {e}"
        )))
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn calendar_view(m: sla_calendar::Model) -> Result<CalendarView, StoreError> {
    Ok(CalendarView {
        id: m.id,
        spec: parse_spec(&m.definition)?,
        name: m.name,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn policy_view(m: sla_policy::Model) -> Result<PolicyView, StoreError> {
    Ok(PolicyView {
        id: m.id,
        spec: parse_spec(&m.definition)?,
        name: m.name,
        position: m.position,
        active: m.active,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

const CALENDAR_UNIQUE: &[(&str, &str, &str)] = &[(
    "sla_calendars_name_key|sla_calendars.name",
    "sla.calendar_name_taken",
    "a calendar with that name exists",
)];
const POLICY_UNIQUE: &[(&str, &str, &str)] = &[(
    "sla_policies_name_key|sla_policies.name",
    "sla.policy_name_taken",
    "a policy with that name exists",
)];

impl Store {
    pub async fn create_calendar(
        &self,
        name: &str,
        spec: CalendarSpec,
    ) -> Result<CalendarView, StoreError> {
        Calendar::try_from(spec.clone()).map_err(|e| invalid(&e))?;
        let t = now();
        let id = Uuid::now_v7();
        sla_calendar::Entity::insert(sla_calendar::ActiveModel {
            id: Set(id),
            name: Set(name.to_owned()),
            definition: Set(to_json(&spec)),
            created_at: Set(t),
            updated_at: Set(t),
        })
        .exec_without_returning(self.writer())
        .await
        .map_err(|e| on_unique(e, CALENDAR_UNIQUE))?;
        self.cache.sla.clear();
        self.get_calendar(id).await
    }

    pub async fn get_calendar(&self, id: Uuid) -> Result<CalendarView, StoreError> {
        let m = sla_calendar::Entity::find_by_id(id)
            .one(self.conn())
            .await?
            .ok_or(StoreError::NotFound("calendar"))?;
        calendar_view(m)
    }

    pub async fn list_calendars(&self) -> Result<Vec<CalendarView>, StoreError> {
        sla_calendar::Entity::find()
            .order_by_asc(sla_calendar::Column::Name)
            .all(self.conn())
            .await?
            .into_iter()
            .map(calendar_view)
            .collect()
    }

    pub async fn update_calendar(
        &self,
        id: Uuid,
        name: Option<&str>,
        spec: Option<CalendarSpec>,
    ) -> Result<CalendarView, StoreError> {
        let m = sla_calendar::Entity::find_by_id(id)
            .one(self.conn())
            .await?
            .ok_or(StoreError::NotFound("calendar"))?;
        let mut am: sla_calendar::ActiveModel = m.into();
        if let Some(n) = name {
            am.name = Set(n.to_owned());
        }
        if let Some(s) = spec {
            Calendar::try_from(s.clone()).map_err(|e| invalid(&e))?;
            am.definition = Set(to_json(&s));
        }
        am.updated_at = Set(now());
        sla_calendar::Entity::update(am)
            .exec(self.writer())
            .await
            .map_err(|e| on_unique(e, CALENDAR_UNIQUE))?;
        self.cache.sla.clear();
        self.get_calendar(id).await
    }

    /// Deletes a calendar no policy or timer uses.
    pub async fn delete_calendar(&self, id: Uuid) -> Result<(), StoreError> {
        let in_policy = self
            .list_policies()
            .await?
            .into_iter()
            .any(|p| p.spec.targets.iter().any(|t| t.calendar == Some(id)));
        if in_policy {
            return Err(StoreError::conflict(
                "sla.calendar_in_use",
                "a policy measures a target in this calendar",
            ));
        }
        let res = sla_calendar::Entity::delete_by_id(id)
            .exec(self.writer())
            .await
            .map_err(|e| {
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
                ) {
                    StoreError::conflict(
                        "sla.calendar_in_use",
                        "timers are measured in this calendar",
                    )
                } else {
                    StoreError::from(e)
                }
            })?;
        self.cache.sla.clear();
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("calendar"));
        }
        Ok(())
    }

    /// Checks a policy's references: calendars and groups exist.
    async fn check_policy_refs(&self, spec: &PolicySpec) -> Result<(), StoreError> {
        spec.validate().map_err(|e| invalid(&e))?;
        for t in &spec.targets {
            if let Some(c) = t.calendar
                && sla_calendar::Entity::find_by_id(c)
                    .one(self.conn())
                    .await?
                    .is_none()
            {
                return Err(StoreError::invalid(
                    "sla.unknown_calendar",
                    "targets",
                    format!("no calendar {c}"),
                ));
            }
        }
        let groups: Vec<Uuid> = spec
            .conditions
            .groups
            .iter()
            .copied()
            .chain(spec.escalations.iter().filter_map(|e| match e.action {
                EscalationAction::Reassign { group } => Some(group),
                EscalationAction::RaisePriority | EscalationAction::Notify { .. } => None,
            }))
            .collect();
        for g in groups {
            if self.resolve_group(&g.to_string()).await?.is_none() {
                return Err(StoreError::invalid(
                    "sla.unknown_group",
                    "conditions",
                    format!("no group {g}"),
                ));
            }
        }
        Ok(())
    }

    pub async fn create_policy(
        &self,
        name: &str,
        position: i32,
        active: bool,
        spec: PolicySpec,
    ) -> Result<PolicyView, StoreError> {
        self.check_policy_refs(&spec).await?;
        let t = now();
        let id = Uuid::now_v7();
        sla_policy::Entity::insert(sla_policy::ActiveModel {
            id: Set(id),
            name: Set(name.to_owned()),
            position: Set(position),
            active: Set(active),
            definition: Set(to_json(&spec)),
            created_at: Set(t),
            updated_at: Set(t),
        })
        .exec_without_returning(self.writer())
        .await
        .map_err(|e| on_unique(e, POLICY_UNIQUE))?;
        self.cache.sla.clear();
        self.get_policy(id).await
    }

    pub async fn get_policy(&self, id: Uuid) -> Result<PolicyView, StoreError> {
        let m = sla_policy::Entity::find_by_id(id)
            .one(self.conn())
            .await?
            .ok_or(StoreError::NotFound("policy"))?;
        policy_view(m)
    }

    /// The active policies and every calendar, from the node's cache (see
    /// [`crate::cache`]).
    pub(crate) async fn sla_config(&self) -> Result<Arc<SlaConfig>, StoreError> {
        self.cache
            .sla
            .get_or_load(|| async {
                let policies = load_policies(self.conn(), true).await?;
                let clocks = sla_calendar::Entity::find()
                    .all(self.conn())
                    .await?
                    .iter()
                    .map(|m| Ok((m.id, clock_of(m)?)))
                    .collect::<Result<_, StoreError>>()?;
                Ok(SlaConfig { policies, clocks })
            })
            .await
    }

    /// Every policy in the order they are tried.
    pub async fn list_policies(&self) -> Result<Vec<PolicyView>, StoreError> {
        load_policies(self.conn(), false).await
    }

    pub async fn update_policy(
        &self,
        id: Uuid,
        name: Option<&str>,
        position: Option<i32>,
        active: Option<bool>,
        spec: Option<PolicySpec>,
    ) -> Result<PolicyView, StoreError> {
        let m = sla_policy::Entity::find_by_id(id)
            .one(self.conn())
            .await?
            .ok_or(StoreError::NotFound("policy"))?;
        let mut am: sla_policy::ActiveModel = m.into();
        if let Some(n) = name {
            am.name = Set(n.to_owned());
        }
        if let Some(p) = position {
            am.position = Set(p);
        }
        if let Some(a) = active {
            am.active = Set(a);
        }
        if let Some(s) = spec {
            self.check_policy_refs(&s).await?;
            am.definition = Set(to_json(&s));
        }
        am.updated_at = Set(now());
        sla_policy::Entity::update(am)
            .exec(self.writer())
            .await
            .map_err(|e| on_unique(e, POLICY_UNIQUE))?;
        self.cache.sla.clear();
        self.get_policy(id).await
    }

    /// Deletes a policy; its timers keep running with the targets they have,
    /// and no policy.
    pub async fn delete_policy(&self, id: Uuid) -> Result<(), StoreError> {
        let txn = self.writer().begin().await?;
        // The timers lose the policy by the foreign key; the incidents'
        // copies of them ([`crate::rows::timers_json`]) in one statement,
        // the id's quoted hex being found nowhere else in them.
        let quoted = format!("\"{}\"", crate::rows::timers_json_id(id));
        let mut holders = Query::select();
        holders
            .column(sla_timer::Column::RecordId)
            .from(sla_timer::Entity)
            .and_where(sla_timer::Column::RecordType.eq(KIND.as_str()))
            .and_where(sla_timer::Column::PolicyId.eq(id));
        incident::Entity::update_many()
            .col_expr(
                incident::Column::TimersJson,
                Func::cust("replace")
                    .arg(Expr::col(incident::Column::TimersJson))
                    .arg(quoted)
                    .arg("\"\"")
                    .into(),
            )
            .filter(incident::Column::Id.in_subquery(holders))
            .exec(&txn)
            .await?;
        let res = sla_policy::Entity::delete_by_id(id).exec(&txn).await?;
        txn.commit().await?;
        self.cache.sla.clear();
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("policy"));
        }
        Ok(())
    }

    /// The views of timers already read, one list per record, in the order
    /// given. Once kept by record id in a map, which cost a list page 1.5 %
    /// of its instructions in hashing (bench/RESULTS.md, thirty-first
    /// session).
    pub(crate) async fn timer_views_of<T: TimerFacts, R: AsRef<[T]>>(
        &self,
        rows: &[R],
    ) -> Result<Vec<Vec<SlaTimerView>>, StoreError> {
        if rows.iter().all(|r| r.as_ref().is_empty()) {
            return Ok(rows.iter().map(|_| Vec::new()).collect());
        }
        // Calendars come from the node's SLA configuration; one made on
        // another node a moment ago is read here.
        let cfg = self.sla_config().await?;
        let missing: Vec<Uuid> = rows
            .iter()
            .flat_map(AsRef::as_ref)
            .filter_map(TimerFacts::calendar_id)
            .filter(|c| !cfg.clocks.contains_key(c))
            .collect();
        let mut more = IdMap::default();
        if !missing.is_empty() {
            more = cfg.clocks.clone();
            more.extend(clocks(self.conn(), missing).await?);
        }
        let clocks = if more.is_empty() { &cfg.clocks } else { &more };
        let t = now();
        rows.iter()
            .map(|rows| timer_views(clocks, rows.as_ref(), t))
            .collect()
    }

    /// One pass of the SLA worker: claims up to `batch` timers whose next
    /// check is due, records warnings and breaches in the history, and runs
    /// the policy's escalations. A timer is claimed with a conditional update,
    /// so with several nodes each warning and breach is handled once; a claim
    /// whose node died is retried when its lease expires. Returns how many
    /// timers were handled.
    pub async fn sla_step(&self, batch: u64) -> Result<usize, StoreError> {
        let t = now();
        let due = sla_timer::Entity::find()
            .filter(sla_timer::Column::NextCheckAt.lte(t))
            .order_by_asc(sla_timer::Column::NextCheckAt)
            .limit(batch)
            .all(self.conn())
            .await?;
        let mut handled = 0;
        for row in due {
            let claimed = sla_timer::Entity::update_many()
                .col_expr(
                    sla_timer::Column::NextCheckAt,
                    Expr::value(t + Duration::seconds(LEASE_SECS)),
                )
                .filter(sla_timer::Column::Id.eq(row.id))
                .filter(sla_timer::Column::NextCheckAt.eq(row.next_check_at))
                .exec(self.writer())
                .await?;
            if claimed.rows_affected == 1 {
                self.check_timer(row.id).await?;
                handled += 1;
            }
        }
        Ok(handled)
    }

    async fn check_timer(&self, id: Uuid) -> Result<(), StoreError> {
        let t = now();
        let hooks = self.subscriptions().await?;
        let txn = self.writer().begin().await?;
        // PostgreSQL: the incident's row first. Every change to an
        // incident locks its row before its timers (the record is saved,
        // then `sync_loaded` writes the timers it changed), and this
        // transaction writes both too (a breach's copy in the incident,
        // an escalation): in the same order, neither waits on the other
        // in a cycle, and the timers read below are those of every change
        // committed before it. SQLite has one writer at a time.
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT 1 FROM incidents WHERE id = \
                 (SELECT record_id FROM sla_timers WHERE id = $1) FOR UPDATE",
                [id.into()],
            ))
            .await?;
        }
        // Write first (SQLite lock order), then read what was claimed.
        sla_timer::Entity::update_many()
            .col_expr(sla_timer::Column::UpdatedAt, Expr::value(t))
            .filter(sla_timer::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        let Some(row) = sla_timer::Entity::find_by_id(id).one(&txn).await? else {
            return Ok(());
        };
        let Some(kind) = TargetKind::parse(&row.kind) else {
            return Ok(());
        };
        let policy = match row.policy_id {
            Some(p) => sla_policy::Entity::find_by_id(p)
                .one(&txn)
                .await?
                .map(policy_view)
                .transpose()?,
            None => None,
        };
        let warn = warn_percents(policy.as_ref());
        let clocks = clocks(&txn, row.calendar_id).await?;
        let clock = clock_for(&clocks, row.calendar_id);
        let timer = row.timer()?;
        let status = timer.status(clock, t);
        let warned_before = u32::try_from(row.warned_percent).unwrap_or(0);
        let mut fired: Vec<Trigger> = Vec::new();
        let new_warnings = crossed(&warn, warned_before, status.percent);
        for p in &new_warnings {
            audit::write(
                &txn,
                Entry::new(KIND, row.record_id, None, "sla_warning", t)
                    .field(kind.as_str())
                    .change(None, Some(format!("{p}%"))),
            )
            .await?;
            fired.push(Trigger::Warning(*p));
        }
        let warned = new_warnings
            .last()
            .copied()
            .unwrap_or(warned_before)
            .max(warned_before);
        let mut breached_at = row.breached_at;
        if status.state == TimerState::Breached && breached_at.is_none() {
            audit::write(
                &txn,
                Entry::new(KIND, row.record_id, None, "sla_breached", t)
                    .field(kind.as_str())
                    .change(None, status.due_at.map(|d| d.to_rfc3339())),
            )
            .await?;
            breached_at = Some(t);
            fired.push(Trigger::Breach);
        }
        if !fired.is_empty()
            && let Some(m) = crate::incidents::incident_by_id(&txn, row.record_id).await?
        {
            let mut context = crate::notify::incident_context(&m, None);
            context.insert("target".into(), kind.as_str().into());
            context.insert("percent".into(), status.percent.into());
            context.insert(
                "due_at".into(),
                status.due_at.map(|d| d.to_rfc3339()).into(),
            );
            let workers = crate::notify::Audience::of(&m).workers(&txn).await?;
            let event = if fired.contains(&Trigger::Breach) {
                crate::notify::Event::SlaBreached
            } else {
                crate::notify::Event::SlaWarning
            };
            // Subscribers get every threshold crossed; people get one email.
            for trigger in &fired {
                let (hook, percent) = match trigger {
                    Trigger::Warning(p) => ("sla.warning", *p),
                    Trigger::Breach => ("sla.breached", status.percent),
                };
                let detail = serde_json::json!({"target": kind.as_str(), "percent": percent, "due_at": status.due_at});
                crate::webhooks::emit_incident(&txn, &hooks, hook, m.id, Some(("sla", detail)), t)
                    .await?;
            }
            let notice = crate::notify::Notice {
                event,
                record_type: KIND.as_str(),
                record_id: m.id,
                actor: None,
                context,
                at: t,
            };
            crate::notify::enqueue(&txn, notice, workers).await?;
        }
        if let Some(p) = &policy {
            for rule in p
                .spec
                .escalations
                .iter()
                .filter(|r| r.target == kind && fired.contains(&r.on))
            {
                escalate(&txn, row.record_id, kind, &rule.action, rule.on, t).await?;
            }
        }
        let next = next_check(&timer, clock, &warn, warned, breached_at.is_some(), t);
        let state = if breached_at.is_some() && status.state != TimerState::Met {
            TimerState::Breached
        } else {
            status.state
        };
        sla_timer::Entity::update_many()
            .col_expr(
                sla_timer::Column::WarnedPercent,
                Expr::value(i32::try_from(warned).unwrap_or(i32::MAX)),
            )
            .col_expr(sla_timer::Column::BreachedAt, Expr::value(breached_at))
            .col_expr(sla_timer::Column::State, Expr::value(state_str(state)))
            .col_expr(sla_timer::Column::NextCheckAt, Expr::value(next))
            .filter(sla_timer::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        // A breach is shown with the timer: the incident's copy changes too.
        if breached_at != row.breached_at && row.record_type == KIND.as_str() {
            let timers = incident_timers(&txn, row.record_id).await?;
            keep_timers_json(&txn, row.record_id, crate::rows::timers_json(&timers)).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

/// Runs one escalation on an incident, with its history entry.
async fn escalate<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    kind: TargetKind,
    action: &EscalationAction,
    on: Trigger,
    t: Timestamp,
) -> Result<(), StoreError> {
    let Some(m) = crate::incidents::incident_by_id(db, id).await? else {
        return Ok(());
    };
    let state = m
        .state
        .parse::<keel_incident::State>()
        .unwrap_or(keel_incident::State::New);
    if state.is_final() {
        return Ok(());
    }
    let mut am = incident::ActiveModel {
        version: Set(m.version + 1),
        updated_at: Set(t),
        ..Default::default()
    };
    let entry = match action {
        EscalationAction::Notify { email } => {
            let mut context = crate::notify::incident_context(&m, None);
            context.insert("target".into(), kind.as_str().into());
            let event = match on {
                Trigger::Breach => crate::notify::Event::SlaBreached,
                Trigger::Warning(p) => {
                    context.insert("percent".into(), p.into());
                    crate::notify::Event::SlaWarning
                }
            };
            let notice = crate::notify::Notice {
                event,
                record_type: KIND.as_str(),
                record_id: id,
                actor: None,
                context,
                at: t,
            };
            crate::notify::enqueue_address(db, notice, email).await?;
            let entry = Entry::new(KIND, id, None, "sla_escalated", t)
                .field("notify")
                .change(None, Some(email.clone()));
            return audit::write(db, entry).await;
        }
        EscalationAction::RaisePriority => {
            let raised = keel_incident::Priority::new(i64::from(m.priority))
                .ok()
                .and_then(keel_incident::Priority::raised);
            let Some(raised) = raised else { return Ok(()) };
            am.priority = Set(i32::from(raised.get()));
            am.priority_overridden = Set(true);
            Entry::new(KIND, id, None, "sla_escalated", t)
                .field("priority")
                .change(Some(m.priority.to_string()), Some(raised.get().to_string()))
        }
        EscalationAction::Reassign { group } => {
            let group = *group;
            if m.assignment_group_id == Some(group) {
                return Ok(());
            }
            am.assignment_group_id = Set(Some(group));
            am.assignee_id = Set(None);
            if m.assignment_group_id.is_some() {
                am.reassignment_count = Set(m.reassignment_count + 1);
            }
            Entry::new(KIND, id, None, "sla_escalated", t)
                .field("assignment_group")
                .change(
                    m.assignment_group_id.map(|g| g.to_string()),
                    Some(group.to_string()),
                )
        }
    };
    incident::Entity::update_many()
        .set(am)
        .filter(incident::Column::Id.eq(id))
        .filter(incident::Column::Version.eq(m.version))
        .exec(db)
        .await?;
    audit::write(db, entry).await
}

/// The percentages a timer of `policy` warns at; the defaults when its
/// policy is gone.
fn warn_percents(policy: Option<&PolicyView>) -> Vec<u32> {
    policy.map_or_else(
        || DEFAULT_WARN_PERCENTS.to_vec(),
        |p| p.spec.warn_percents.clone(),
    )
}

fn state_str(s: TimerState) -> &'static str {
    match s {
        TimerState::InProgress => "in_progress",
        TimerState::Paused => "paused",
        TimerState::Met => "met",
        TimerState::Breached => "breached",
    }
}

/// What a view needs of a timer: the copy of it an incident's row keeps
/// ([`crate::rows::timers_json`]), which pages and gets read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TimerSight {
    pub kind: String,
    pub policy_id: Option<Uuid>,
    pub calendar_id: Option<Uuid>,
    /// Its target, start, stop and pauses (read from their JSON, as in
    /// `sla_timers.pauses`, once per text: a sight is kept per text and
    /// thread, [`crate::rows::kept_timers`]; reading them on every view
    /// was 5 % of a queue page's instructions, bench/RESULTS.md, thirtieth
    /// session).
    pub timer: Timer,
    pub breached_at: Option<Timestamp>,
    /// What its views counted ([`Timer::status_remembering`]): views of a
    /// kept sight after the first need not count its due instant again,
    /// nor the seconds it ran up to the last view. Not part of the
    /// sight's facts.
    pub memo: TimerMemo,
}

/// What a timer's view is made of: a whole stored timer, or its copy in
/// its incident's row ([`TimerSight`]).
pub(crate) trait TimerFacts {
    fn kind(&self) -> &str;
    fn policy_id(&self) -> Option<Uuid>;
    fn calendar_id(&self) -> Option<Uuid>;
    fn breached_at(&self) -> Option<Timestamp>;
    /// The timer, its pauses parsed.
    fn timer(&self) -> Result<Cow<'_, Timer>, StoreError>;
    /// Where what the timer's views count is kept, if anywhere.
    fn memo(&self) -> Option<&TimerMemo>;
}

macro_rules! timer_facts {
    ($($model:path => $timer:path, $memo:path),*) => {$(
        impl TimerFacts for $model {
            fn memo(&self) -> Option<&TimerMemo> {
                $memo(self)
            }
            fn kind(&self) -> &str {
                &self.kind
            }
            fn policy_id(&self) -> Option<Uuid> {
                self.policy_id
            }
            fn calendar_id(&self) -> Option<Uuid> {
                self.calendar_id
            }
            fn breached_at(&self) -> Option<Timestamp> {
                self.breached_at
            }
            fn timer(&self) -> Result<Cow<'_, Timer>, StoreError> {
                $timer(self)
            }
        }
    )*};
}

/// A stored timer, its pauses parsed for one view.
fn stored_timer(m: &sla_timer::Model) -> Result<Cow<'_, Timer>, StoreError> {
    Ok(Cow::Owned(Timer {
        target_secs: m.target_secs,
        started_at: m.started_at,
        pauses: pauses_of(&m.pauses)?,
        stopped_at: m.stopped_at,
    }))
}

/// A timer's pauses from their JSON (`sla_timers.pauses`).
pub(crate) fn pauses_of(json: &str) -> Result<Vec<Pause>, StoreError> {
    // Most timers were never paused: no parser for those.
    if json == "[]" {
        Ok(Vec::new())
    } else {
        parse_spec(json)
    }
}

/// A stored timer is read for one view: nothing to keep.
fn no_memo(_: &sla_timer::Model) -> Option<&TimerMemo> {
    None
}

fn sight_timer(s: &TimerSight) -> Result<Cow<'_, Timer>, StoreError> {
    Ok(Cow::Borrowed(&s.timer))
}

fn sight_memo(s: &TimerSight) -> Option<&TimerMemo> {
    Some(&s.memo)
}

timer_facts!(
    sla_timer::Model => stored_timer, no_memo,
    TimerSight => sight_timer, sight_memo
);

/// The views of one record's timers as of `t`, in [`TargetKind::ALL`] order.
pub(crate) fn timer_views<T: TimerFacts>(
    clocks: &IdMap<Clock>,
    rows: &[T],
    t: Timestamp,
) -> Result<Vec<SlaTimerView>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(kind) = TargetKind::parse(r.kind()) else {
            continue;
        };
        let timer = r.timer()?;
        let clock = clock_for(clocks, r.calendar_id());
        let mut status = match r.memo() {
            Some(memo) => timer.status_remembering(clock, t, memo),
            None => timer.status(clock, t),
        };
        // A breach the worker recorded stays a breach, whatever the clock says now.
        let breached_at = r.breached_at();
        if breached_at.is_some() && status.state != TimerState::Met {
            status.state = TimerState::Breached;
        }
        out.push(SlaTimerView {
            kind,
            policy_id: r.policy_id(),
            target_secs: timer.target_secs,
            status,
            breached_at,
        });
    }
    out.sort_by_key(|s| TargetKind::ALL.iter().position(|k| *k == s.kind));
    Ok(out)
}

async fn load_policies<C: ConnectionTrait>(
    db: &C,
    active_only: bool,
) -> Result<Vec<PolicyView>, StoreError> {
    let mut q = sla_policy::Entity::find()
        .order_by_asc(sla_policy::Column::Position)
        .order_by_asc(sla_policy::Column::Name);
    if active_only {
        q = q.filter(sla_policy::Column::Active.eq(true));
    }
    q.all(db).await?.into_iter().map(policy_view).collect()
}

async fn clocks<C: ConnectionTrait>(
    db: &C,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<IdMap<Clock>, StoreError> {
    let ids: Vec<Uuid> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(IdMap::default());
    }
    sla_calendar::Entity::find()
        .filter(sla_calendar::Column::Id.is_in(ids))
        .all(db)
        .await?
        .iter()
        .map(|m| Ok((m.id, clock_of(m)?)))
        .collect()
}

/// The clock a stored calendar defines.
fn clock_of(m: &sla_calendar::Model) -> Result<Clock, StoreError> {
    let spec: CalendarSpec = parse_spec(&m.definition)?;
    let cal = Calendar::try_from(spec).map_err(|e| invalid(&e))?;
    Ok(Clock::Business(cal))
}

fn clock_for(clocks: &IdMap<Clock>, id: Option<Uuid>) -> &Clock {
    static ALWAYS: Clock = Clock::Always;
    id.and_then(|i| clocks.get(&i)).unwrap_or(&ALWAYS)
}

/// Brings the SLA timers of one incident up to date with the incident as it
/// now is in this transaction: picks the first matching active policy,
/// starts or retargets timers (a retarget keeps elapsed time and pauses),
/// pauses and resumes with the state, stops first response and resolution
/// when they happen, and restarts next-update on an agent's public update.
/// `cfg` is the SLA configuration ([`Store::sla_config`]).
pub(crate) async fn sync_incident<C: ConnectionTrait>(
    db: &C,
    cfg: &SlaConfig,
    id: Uuid,
    event: SyncEvent,
    t: Timestamp,
) -> Result<(), StoreError> {
    let Some(m) = crate::incidents::incident_by_id(db, id).await? else {
        return Ok(());
    };
    sync_loaded(db, cfg, &m, event, t).await
}

/// [`sync_incident`] for an incident already read (or just written) in this
/// transaction.
pub(crate) async fn sync_loaded<C: ConnectionTrait>(
    db: &C,
    cfg: &SlaConfig,
    m: &incident::Model,
    event: SyncEvent,
    t: Timestamp,
) -> Result<(), StoreError> {
    // A record being created has no timers yet.
    let existing: Vec<sla_timer::Model> = if event == SyncEvent::Created {
        Vec::new()
    } else {
        incident_timers(db, m.id).await?
    };
    let planned = plan(cfg, m, &existing, event, t)?;
    // Every timer the incident has is updated or inserted.
    let json = crate::rows::timers_json(planned.updated.iter().chain(&planned.inserted));
    // A timer the change left as it was (its `updated_at` aside) is not
    // written again: a comment restarts next-update and leaves the rest.
    let unchanged = |r: &sla_timer::Model| {
        existing.iter().find(|e| e.id == r.id).is_some_and(|e| {
            *e == sla_timer::Model {
                updated_at: e.updated_at,
                ..r.clone()
            }
        })
    };
    for r in planned.updated {
        if unchanged(&r) {
            continue;
        }
        // Without reading the row back: sea-orm's update of one model
        // decodes the row it wrote, by name (40 k instructions of an
        // update that retargets two timers).
        let id = r.id;
        let mut am = sla_timer::ActiveModel::from(r).reset_all();
        am.id = sea_orm::ActiveValue::NotSet;
        let res = sla_timer::Entity::update_many()
            .set(am)
            .filter(sla_timer::Column::Id.eq(id))
            .exec(db)
            .await?;
        if res.rows_affected != 1 {
            return Err(sea_orm::DbErr::RecordNotUpdated.into());
        }
    }
    if let Some(s) = insert_statement(db.get_database_backend(), &planned.inserted) {
        db.execute_raw(s).await?;
    }
    if json != m.timers_json {
        keep_timers_json(db, m.id, json).await?;
    }
    Ok(())
}

/// An incident's timer rows, as a change reads them in its transaction:
/// the statement's text kept ([`crate::rows::Kept`]) and its rows decoded
/// by position ([`crate::rows::timer_of`]). Built by sea-query and decoded
/// by name through sea-orm, this read took 40 k more instructions an
/// update (bench/RESULTS.md, twenty-third session).
async fn incident_timers<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Vec<sla_timer::Model>, StoreError> {
    static TEXT: crate::rows::Kept<()> = crate::rows::Kept::new();
    let backend = db.get_database_backend();
    let values = [KIND.as_str().into(), id.into()];
    let stmt = TEXT.statement(backend, (), values, || {
        sla_timer::Entity::find()
            .filter(sla_timer::Column::RecordType.eq(KIND.as_str()))
            .filter(sla_timer::Column::RecordId.eq(id))
            .build(backend)
    });
    let mut positions = crate::rows::Positions::default();
    let rows = db.query_all_raw(stmt).await?;
    let timers = rows
        .iter()
        .map(|r| crate::rows::timer_of(r, "", &mut positions))
        .collect::<Result<_, _>>()?;
    Ok(timers)
}

/// Writes the copy of an incident's timers its row keeps
/// ([`crate::rows::timers_json`]); its version does not change, as a
/// timer is not an edit of the incident.
async fn keep_timers_json<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    json: String,
) -> Result<(), StoreError> {
    incident::Entity::update_many()
        .col_expr(incident::Column::TimersJson, Expr::value(json))
        .filter(incident::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// The timer rows [`sync_loaded`] writes.
#[derive(Debug, Default)]
pub(crate) struct TimerRows {
    /// Existing timers, changed.
    pub updated: Vec<sla_timer::Model>,
    /// New timers (all of them, for a new record).
    pub inserted: Vec<sla_timer::Model>,
}

/// New timers in one insert, to send with other writes.
pub(crate) fn insert_statement(
    backend: DatabaseBackend,
    rows: &[sla_timer::Model],
) -> Option<Statement> {
    if rows.is_empty() {
        return None;
    }
    Some(
        sla_timer::Entity::insert_many(
            rows.iter()
                .map(|r| sla_timer::ActiveModel::from(r.clone()).reset_all()),
        )
        .build(backend),
    )
}

/// What the timers of `m` become, given its `existing` timers; no I/O.
pub(crate) fn plan(
    cfg: &SlaConfig,
    m: &incident::Model,
    existing: &[sla_timer::Model],
    event: SyncEvent,
    t: Timestamp,
) -> Result<TimerRows, StoreError> {
    let id = m.id;
    let mut out = TimerRows::default();
    let facts = Facts {
        priority: u8::try_from(m.priority).unwrap_or(5),
        group: m.assignment_group_id,
        category: m.category.as_deref(),
    };
    let policy = cfg.policies.iter().find(|p| p.spec.matches(&facts));
    if policy.is_none() && existing.is_empty() {
        return Ok(out);
    }
    let state = m
        .state
        .parse::<keel_incident::State>()
        .unwrap_or(keel_incident::State::New);
    let clocks = &cfg.clocks;
    for kind in TargetKind::ALL {
        let target = policy.and_then(|p| p.spec.target(kind));
        let row = existing.iter().find(|r| r.kind == kind.as_str());
        let (mut timer, mut warned, mut breached_at, calendar_id, policy_id) = match (row, target) {
            (None, None) => continue,
            (None, Some(tg)) => (
                Timer::start(tg.secs, m.created_at),
                0,
                None,
                tg.calendar,
                policy.map(|p| p.id),
            ),
            (Some(r), Some(tg)) => {
                let mut timer = r.timer()?.into_owned();
                if timer.target_secs != tg.secs {
                    timer.retarget(tg.secs);
                }
                (
                    timer,
                    r.warned_percent,
                    r.breached_at,
                    tg.calendar,
                    policy.map(|p| p.id),
                )
            }
            (Some(r), None) => (
                r.timer()?.into_owned(),
                r.warned_percent,
                r.breached_at,
                r.calendar_id,
                r.policy_id,
            ),
        };
        let pauses_here = policy.is_some_and(|p| p.spec.pauses_in(state.as_str()));
        match kind {
            TargetKind::FirstResponse => {
                if let Some(at) = m.first_response_at {
                    timer.stop(at);
                }
            }
            TargetKind::Resolution => {
                if let Some(at) = m
                    .resolved_at
                    .or(m.closed_at)
                    .or(m.cancelled_at)
                    .filter(|_| !state.is_open())
                {
                    timer.stop(at);
                } else if state.is_open()
                    && let Some(stopped) = timer.stopped_at.take()
                {
                    // Reopened: the time it spent resolved does not count.
                    timer.pauses.push(Pause {
                        from: stopped,
                        until: Some(t),
                    });
                }
            }
            TargetKind::NextUpdate => {
                if event == SyncEvent::AgentUpdate && state.is_open() {
                    timer = Timer::start(timer.target_secs, t);
                    warned = 0;
                    breached_at = None;
                } else if !state.is_open() {
                    timer.stop(t);
                }
            }
        }
        if state.is_final() {
            timer.stop(m.closed_at.or(m.cancelled_at).unwrap_or(t));
        } else if pauses_here {
            timer.pause(t);
        } else {
            timer.resume(t);
        }
        let clock = clock_for(clocks, calendar_id);
        let status = timer.status(clock, t);
        let warn = warn_percents(policy);
        let next = next_check(
            &timer,
            clock,
            &warn,
            u32::try_from(warned).unwrap_or(0),
            breached_at.is_some(),
            t,
        );
        let state_s = if breached_at.is_some() && status.state != TimerState::Met {
            "breached"
        } else {
            state_str(status.state)
        };
        let r = sla_timer::Model {
            id: row.map_or_else(Uuid::now_v7, |r| r.id),
            record_type: KIND.as_str().to_owned(),
            record_id: id,
            kind: kind.as_str().to_owned(),
            policy_id,
            calendar_id,
            target_secs: timer.target_secs,
            started_at: timer.started_at,
            pauses: to_json(&timer.pauses),
            stopped_at: timer.stopped_at,
            state: state_s.to_owned(),
            due_at: status.due_at,
            warned_percent: warned,
            breached_at,
            next_check_at: next,
            updated_at: t,
        };
        if row.is_some() {
            out.updated.push(r);
        } else {
            out.inserted.push(r);
        }
    }
    Ok(out)
}

/// The timers an incident loaded in bulk (`keel seed`) has, as if Keel had
/// watched it from its creation to `t`: planned as its last change left
/// them ([`plan`] at `updated_at`), then brought to `t` as the worker would
/// have: the warnings and the breach already reached are recorded (a breach
/// at the moment the target was due; for a timer paused now, whose due time
/// is unknown, at its last change), and the next check is a threshold
/// still ahead, so a server started on seeded data has no backlog of
/// checks to work through.
pub(crate) fn seeded_timers(
    cfg: &SlaConfig,
    m: &incident::Model,
    t: Timestamp,
) -> Result<Vec<sla_timer::Model>, StoreError> {
    let mut rows = plan(cfg, m, &[], SyncEvent::Created, m.updated_at)?.inserted;
    for r in &mut rows {
        let timer = r.timer()?.into_owned();
        let clock = clock_for(&cfg.clocks, r.calendar_id);
        let status = timer.status(clock, t);
        let warn = warn_percents(cfg.policies.iter().find(|p| Some(p.id) == r.policy_id));
        let warned = crossed(&warn, 0, status.percent)
            .into_iter()
            .max()
            .unwrap_or(0);
        let breached = status.state == TimerState::Breached;
        r.warned_percent = i32::try_from(warned).unwrap_or(0);
        r.breached_at = breached.then(|| status.due_at.unwrap_or(m.updated_at));
        r.state = state_str(status.state).to_owned();
        r.due_at = status.due_at;
        r.next_check_at = next_check(&timer, clock, &warn, warned, breached, t);
    }
    Ok(rows)
}

/// SLA list filters for incidents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaFilter {
    /// Some target is in this state (breached includes overdue running ones).
    State(TimerState),
    /// Some running target is due before this instant.
    DueBefore(Timestamp),
}

/// A condition on `incidents.id` for an SLA filter.
pub(crate) fn sla_condition(f: SlaFilter, t: Timestamp) -> Condition {
    let mut sub = Query::select();
    sub.column(sla_timer::Column::RecordId)
        .from(sla_timer::Entity)
        .and_where(sla_timer::Column::RecordType.eq(KIND.as_str()));
    let overdue = Condition::all()
        .add(sla_timer::Column::StoppedAt.is_null())
        .add(sla_timer::Column::DueAt.lt(t));
    match f {
        SlaFilter::State(TimerState::Breached) => {
            sub.cond_where(
                Condition::any()
                    .add(sla_timer::Column::State.eq("breached"))
                    .add(overdue),
            );
        }
        SlaFilter::State(TimerState::InProgress) => {
            sub.and_where(sla_timer::Column::State.eq("in_progress"));
            sub.cond_where(
                Condition::any()
                    .add(sla_timer::Column::DueAt.is_null())
                    .add(sla_timer::Column::DueAt.gte(t)),
            );
        }
        SlaFilter::State(s) => {
            sub.and_where(sla_timer::Column::State.eq(state_str(s)));
        }
        SlaFilter::DueBefore(before) => {
            sub.and_where(sla_timer::Column::StoppedAt.is_null());
            sub.and_where(sla_timer::Column::DueAt.lt(before));
        }
    }
    Condition::all().add(incident::Column::Id.in_subquery(sub.to_owned()))
}

/// Outcome counts of SLA targets and their compliance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Compliance {
    /// Targets counted.
    pub total: u64,
    pub met: u64,
    /// Breached, including running targets already past due.
    pub breached: u64,
    /// Still running and not yet due.
    pub in_progress: u64,
}

impl Compliance {
    fn add(&mut self, outcome: TimerState) {
        self.total += 1;
        match outcome {
            TimerState::Met => self.met += 1,
            TimerState::Breached => self.breached += 1,
            TimerState::InProgress | TimerState::Paused => self.in_progress += 1,
        }
    }

    /// Met as a percentage of decided targets (met + breached); `None` when
    /// nothing is decided yet.
    pub fn percent(&self) -> Option<f64> {
        let decided = self.met + self.breached;
        (decided > 0).then(|| (self.met as f64) * 100.0 / (decided as f64))
    }
}

/// SLA compliance over a period, overall and by policy, group and priority.
#[derive(Debug, Clone, Default)]
pub struct SlaReport {
    pub overall: Compliance,
    /// `(policy id, policy name)`; `None` for timers whose policy was deleted.
    pub by_policy: Vec<(Option<(Uuid, String)>, Compliance)>,
    pub by_group: Vec<(Option<crate::directory::GroupRef>, Compliance)>,
    pub by_priority: Vec<(u8, Compliance)>,
}

impl Store {
    /// Compliance of the SLA targets of incidents created in `[from, to)`,
    /// optionally of one kind of target.
    pub async fn sla_report(
        &self,
        from: Timestamp,
        to: Timestamp,
        kind: Option<TargetKind>,
    ) -> Result<SlaReport, StoreError> {
        let t = now();
        let incidents: HashMap<Uuid, (i32, Option<Uuid>)> = incident::Entity::find()
            .select_only()
            .column(incident::Column::Id)
            .column(incident::Column::Priority)
            .column(incident::Column::AssignmentGroupId)
            .filter(incident::Column::CreatedAt.gte(from))
            .filter(incident::Column::CreatedAt.lt(to))
            .into_tuple::<(Uuid, i32, Option<Uuid>)>()
            .all(self.conn())
            .await?
            .into_iter()
            .map(|(id, p, g)| (id, (p, g)))
            .collect();
        let ids: Vec<Uuid> = incidents.keys().copied().collect();
        let mut report = SlaReport::default();
        let mut by_policy: HashMap<Option<Uuid>, Compliance> = HashMap::new();
        let mut by_group: HashMap<Option<Uuid>, Compliance> = HashMap::new();
        let mut by_priority: HashMap<u8, Compliance> = HashMap::new();
        for chunk in ids.chunks(500) {
            let mut q = sla_timer::Entity::find()
                .filter(sla_timer::Column::RecordType.eq(KIND.as_str()))
                .filter(sla_timer::Column::RecordId.is_in(chunk.iter().copied()));
            if let Some(k) = kind {
                q = q.filter(sla_timer::Column::Kind.eq(k.as_str()));
            }
            for r in q.all(self.conn()).await? {
                let outcome = if r.breached_at.is_some() || r.state == "breached" {
                    TimerState::Breached
                } else if r.state == "met" {
                    TimerState::Met
                } else if r.stopped_at.is_none() && r.due_at.is_some_and(|d| d < t) {
                    TimerState::Breached
                } else {
                    TimerState::InProgress
                };
                let (priority, group) = incidents.get(&r.record_id).copied().unwrap_or((5, None));
                report.overall.add(outcome);
                by_policy.entry(r.policy_id).or_default().add(outcome);
                by_group.entry(group).or_default().add(outcome);
                by_priority
                    .entry(u8::try_from(priority).unwrap_or(5))
                    .or_default()
                    .add(outcome);
            }
        }
        let names: HashMap<Uuid, String> = self
            .list_policies()
            .await?
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect();
        let gids: Vec<Uuid> = by_group.keys().filter_map(|g| *g).collect();
        let groups = crate::directory::group_refs(self.conn(), &gids).await?;
        report.by_policy = by_policy
            .into_iter()
            .map(|(p, c)| {
                (
                    p.map(|id| (id, names.get(&id).cloned().unwrap_or_default())),
                    c,
                )
            })
            .collect();
        report
            .by_policy
            .sort_by(|a, b| a.0.as_ref().map(|x| &x.1).cmp(&b.0.as_ref().map(|x| &x.1)));
        report.by_group = by_group
            .into_iter()
            .map(|(g, c)| (g.and_then(|g| groups.get(&g).cloned()), c))
            .collect();
        report.by_group.sort_by(|a, b| {
            a.0.as_ref()
                .map(|g| &g.name)
                .cmp(&b.0.as_ref().map(|g| &g.name))
        });
        report.by_priority = by_priority.into_iter().collect();
        report.by_priority.sort_by_key(|(p, _)| *p);
        Ok(report)
    }
}
