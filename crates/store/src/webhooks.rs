//! Webhook subscriptions and deliveries. An event writes one delivery row
//! per matching subscription in the transaction of the change; the worker
//! claims due rows, posts them, and records each attempt (status code,
//! latency, error), which is the delivery log.

use chrono::Duration;
use keel_core::time::{Timestamp, now};
use std::sync::Arc;

use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cache::Subscription;
use crate::entities::{incident, webhook, webhook_delivery};
use crate::{Store, StoreError};

/// Events a subscription can ask for.
pub const EVENTS: [&str; 6] = [
    "incident.created",
    "incident.updated",
    "incident.transitioned",
    "incident.commented",
    "sla.warning",
    "sla.breached",
];

/// After this many failed attempts a delivery is marked failed (it can be redelivered by hand).
pub const MAX_ATTEMPTS: i32 = 12;

/// A subscription (its secret is shown only when it is created).
#[derive(Debug, Clone)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One delivery and its latest attempt.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub id: Uuid,
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub response_status: Option<i32>,
    pub latency_ms: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub next_attempt_at: Option<Timestamp>,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Attempts so far, this one included.
    pub attempts: i32,
    pub delivered: bool,
    pub status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// When to try again if not delivered.
    pub retry_at: Timestamp,
}

/// A claimed delivery, ready to post.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: Uuid,
    pub url: String,
    pub secret: String,
    pub event: String,
    pub payload: String,
    pub attempts: i32,
}

fn view(m: webhook::Model) -> WebhookView {
    WebhookView {
        id: m.id,
        url: m.url,
        events: serde_json::from_str(&m.events).unwrap_or_default(),
        active: m.active,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn delivery_view(d: webhook_delivery::Model) -> DeliveryView {
    DeliveryView {
        next_attempt_at: (d.status == "pending").then_some(d.next_attempt_at),
        id: d.id,
        event: d.event,
        status: d.status,
        attempts: d.attempts,
        response_status: d.response_status,
        latency_ms: d.latency_ms,
        last_error: d.last_error,
        created_at: d.created_at,
        delivered_at: d.delivered_at,
    }
}

/// The incident as webhooks carry it.
fn incident_snapshot(m: &incident::Model) -> Value {
    json!({
        "id": m.id,
        "number": keel_core::RecordNumber::new(keel_core::RecordKind::Incident, m.number).to_string(),
        "title": m.title,
        "description": m.description,
        "state": m.state,
        "hold_reason": m.hold_reason,
        "resolution_code": m.resolution_code,
        "impact": m.impact,
        "urgency": m.urgency,
        "priority": m.priority,
        "major": m.major,
        "category": m.category,
        "requester_id": m.requester_id,
        "assignment_group_id": m.assignment_group_id,
        "assignee_id": m.assignee_id,
        "version": m.version,
        "created_at": m.created_at,
        "updated_at": m.updated_at,
        "resolved_at": m.resolved_at,
        "closed_at": m.closed_at,
    })
}

/// Queues `event` about an incident (read fresh in this transaction) for
/// every active subscription in `subs` that wants it; `extra` is merged into
/// `data`.
pub(crate) async fn emit_incident<C: ConnectionTrait>(
    db: &C,
    subs: &[Subscription],
    event: &str,
    id: Uuid,
    extra: Option<(&str, Value)>,
    t: Timestamp,
) -> Result<(), StoreError> {
    if !subs.iter().any(|s| s.wants(event)) {
        return Ok(());
    }
    let Some(m) = crate::incidents::incident_by_id(db, id).await? else {
        return Ok(());
    };
    emit_loaded(db, subs, event, &m, extra, t).await
}

/// [`emit_incident`] for an incident already read (or just written) in this
/// transaction.
///
/// `subs` may come from the node's cache and be a moment old, so each
/// delivery is written only if its subscription still exists and is active:
/// a subscription deleted through another node is skipped, not an error.
pub(crate) async fn emit_loaded<C: ConnectionTrait>(
    db: &C,
    subs: &[Subscription],
    event: &str,
    m: &incident::Model,
    extra: Option<(&str, Value)>,
    t: Timestamp,
) -> Result<(), StoreError> {
    for s in statements(db.get_database_backend(), subs, event, m, extra, t)? {
        db.execute_raw(s).await?;
    }
    Ok(())
}

/// The inserts [`emit_loaded`] makes, one per subscription that wants
/// `event`, to send with others.
pub(crate) fn statements(
    backend: DatabaseBackend,
    subs: &[Subscription],
    event: &str,
    m: &incident::Model,
    extra: Option<(&str, Value)>,
    t: Timestamp,
) -> Result<Vec<Statement>, StoreError> {
    let wanted: Vec<&Subscription> = subs.iter().filter(|s| s.wants(event)).collect();
    let mut out = Vec::with_capacity(wanted.len());
    if wanted.is_empty() {
        return Ok(out);
    }
    let mut data = incident_snapshot(m);
    if let (Some((k, v)), Some(obj)) = (extra, data.as_object_mut()) {
        obj.insert(k.to_owned(), v);
    }
    for h in wanted {
        let delivery = Uuid::now_v7();
        let payload = json!({"type": event, "id": delivery, "time": t, "data": data});
        let insert = Query::insert()
            .into_table(webhook_delivery::Entity)
            .columns([
                webhook_delivery::Column::Id,
                webhook_delivery::Column::WebhookId,
                webhook_delivery::Column::Event,
                webhook_delivery::Column::Payload,
                webhook_delivery::Column::Status,
                webhook_delivery::Column::Attempts,
                webhook_delivery::Column::NextAttemptAt,
                webhook_delivery::Column::CreatedAt,
            ])
            .select_from(
                Query::select()
                    .expr(Expr::val(delivery))
                    .column(webhook::Column::Id)
                    .expr(Expr::val(event))
                    .expr(Expr::val(payload.to_string()))
                    .expr(Expr::val("pending"))
                    .expr(Expr::val(0))
                    .expr(Expr::val(t))
                    .expr(Expr::val(t))
                    .from(webhook::Entity)
                    .and_where(webhook::Column::Id.eq(h.id))
                    .and_where(webhook::Column::Active.eq(true))
                    .to_owned(),
            )
            .map_err(|e| StoreError::Db(sea_orm::DbErr::Custom(e.to_string())))?
            .to_owned();
        out.push(backend.build(&insert));
    }
    Ok(out)
}

impl Store {
    /// The active subscriptions, from the node's cache (see [`crate::cache`]).
    pub(crate) async fn subscriptions(&self) -> Result<Arc<Vec<Subscription>>, StoreError> {
        self.cache
            .webhooks
            .get_or_load(|| async {
                Ok(webhook::Entity::find()
                    .filter(webhook::Column::Active.eq(true))
                    .all(self.conn())
                    .await?
                    .into_iter()
                    .map(|h| Subscription {
                        id: h.id,
                        events: serde_json::from_str(&h.events).unwrap_or_default(),
                    })
                    .collect())
            })
            .await
    }
}

impl Store {
    pub async fn create_webhook(
        &self,
        url: &str,
        events: &[String],
        secret: &str,
    ) -> Result<WebhookView, StoreError> {
        let t = now();
        let id = Uuid::now_v7();
        webhook::Entity::insert(webhook::ActiveModel {
            id: Set(id),
            url: Set(url.to_owned()),
            events: Set(serde_json::to_string(events).unwrap_or_else(|_| "[]".into())),
            secret: Set(secret.to_owned()),
            active: Set(true),
            created_at: Set(t),
            updated_at: Set(t),
        })
        .exec_without_returning(self.writer())
        .await?;
        self.cache.webhooks.clear();
        self.get_webhook(id).await
    }

    pub async fn get_webhook(&self, id: Uuid) -> Result<WebhookView, StoreError> {
        webhook::Entity::find_by_id(id)
            .one(self.conn())
            .await?
            .map(view)
            .ok_or(StoreError::NotFound("webhook"))
    }

    pub async fn list_webhooks(&self) -> Result<Vec<WebhookView>, StoreError> {
        Ok(webhook::Entity::find()
            .order_by_asc(webhook::Column::CreatedAt)
            .all(self.conn())
            .await?
            .into_iter()
            .map(view)
            .collect())
    }

    pub async fn update_webhook(
        &self,
        id: Uuid,
        url: Option<&str>,
        events: Option<&[String]>,
        active: Option<bool>,
        secret: Option<&str>,
    ) -> Result<WebhookView, StoreError> {
        let m = webhook::Entity::find_by_id(id)
            .one(self.conn())
            .await?
            .ok_or(StoreError::NotFound("webhook"))?;
        let mut am: webhook::ActiveModel = m.into();
        if let Some(u) = url {
            am.url = Set(u.to_owned());
        }
        if let Some(e) = events {
            am.events = Set(serde_json::to_string(e).unwrap_or_else(|_| "[]".into()));
        }
        if let Some(a) = active {
            am.active = Set(a);
        }
        if let Some(s) = secret {
            am.secret = Set(s.to_owned());
        }
        am.updated_at = Set(now());
        webhook::Entity::update(am).exec(self.writer()).await?;
        self.cache.webhooks.clear();
        self.get_webhook(id).await
    }

    pub async fn delete_webhook(&self, id: Uuid) -> Result<(), StoreError> {
        let res = webhook::Entity::delete_by_id(id)
            .exec(self.writer())
            .await?;
        self.cache.webhooks.clear();
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("webhook"));
        }
        Ok(())
    }

    /// A subscription's deliveries, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: Uuid,
        limit: u64,
    ) -> Result<Vec<DeliveryView>, StoreError> {
        self.get_webhook(id).await?;
        Ok(webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::WebhookId.eq(id))
            .order_by_desc(webhook_delivery::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?
            .into_iter()
            .map(delivery_view)
            .collect())
    }

    /// Queues a delivery again, now (a new attempt series).
    pub async fn redeliver(
        &self,
        webhook_id: Uuid,
        delivery_id: Uuid,
    ) -> Result<DeliveryView, StoreError> {
        let res = webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::Status, Expr::value("pending"))
            .col_expr(webhook_delivery::Column::Attempts, Expr::value(0))
            .col_expr(webhook_delivery::Column::NextAttemptAt, Expr::value(now()))
            .filter(webhook_delivery::Column::Id.eq(delivery_id))
            .filter(webhook_delivery::Column::WebhookId.eq(webhook_id))
            .exec(self.writer())
            .await?;
        if res.rows_affected == 0 {
            return Err(StoreError::NotFound("delivery"));
        }
        webhook_delivery::Entity::find_by_id(delivery_id)
            .one(self.conn())
            .await?
            .map(delivery_view)
            .ok_or(StoreError::NotFound("delivery"))
    }

    /// Claims due deliveries for `lease`, each with a conditional update, so
    /// two nodes never post the same one.
    pub async fn webhook_claim(
        &self,
        batch: u64,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let t = now();
        let due = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::Status.eq("pending"))
            .filter(webhook_delivery::Column::NextAttemptAt.lte(t))
            .order_by_asc(webhook_delivery::Column::NextAttemptAt)
            .limit(batch)
            .all(self.conn())
            .await?;
        let mut out = Vec::new();
        for d in due {
            let res = webhook_delivery::Entity::update_many()
                .col_expr(
                    webhook_delivery::Column::NextAttemptAt,
                    Expr::value(t + lease),
                )
                .col_expr(
                    webhook_delivery::Column::Attempts,
                    Expr::value(d.attempts + 1),
                )
                .filter(webhook_delivery::Column::Id.eq(d.id))
                .filter(webhook_delivery::Column::Status.eq("pending"))
                .filter(webhook_delivery::Column::NextAttemptAt.eq(d.next_attempt_at))
                .exec(self.writer())
                .await?;
            if res.rows_affected != 1 {
                continue;
            }
            let Some(h) = webhook::Entity::find_by_id(d.webhook_id)
                .one(self.conn())
                .await?
            else {
                continue;
            };
            out.push(ClaimedDelivery {
                id: d.id,
                url: h.url,
                secret: h.secret,
                event: d.event,
                payload: d.payload,
                attempts: d.attempts + 1,
            });
        }
        Ok(out)
    }

    /// Records an attempt: delivered, retried at `retry_at`, or failed for good
    /// once its attempts reach [`MAX_ATTEMPTS`].
    pub async fn webhook_attempted(&self, id: Uuid, a: &AttemptRecord) -> Result<(), StoreError> {
        let AttemptRecord {
            attempts,
            delivered,
            status,
            latency_ms,
            error,
            retry_at,
        } = a;
        let (attempts, delivered, latency_ms, retry_at) =
            (*attempts, *delivered, *latency_ms, *retry_at);
        let state = if delivered {
            "delivered"
        } else if attempts >= MAX_ATTEMPTS {
            "failed"
        } else {
            "pending"
        };
        let mut q = webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::Status, Expr::value(state))
            .col_expr(
                webhook_delivery::Column::ResponseStatus,
                Expr::value(status.map(i32::from)),
            )
            .col_expr(
                webhook_delivery::Column::LatencyMs,
                Expr::value(Some(latency_ms)),
            )
            .col_expr(
                webhook_delivery::Column::LastError,
                Expr::value(error.as_deref().map(crate::clipped_error)),
            );
        if delivered {
            q = q.col_expr(
                webhook_delivery::Column::DeliveredAt,
                Expr::value(Some(now())),
            );
        } else {
            q = q.col_expr(
                webhook_delivery::Column::NextAttemptAt,
                Expr::value(retry_at),
            );
        }
        q.filter(webhook_delivery::Column::Id.eq(id))
            .exec(self.writer())
            .await?;
        Ok(())
    }
}
