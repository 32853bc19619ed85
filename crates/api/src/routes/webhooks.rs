//! `/webhooks`: subscriptions, their delivery log, and redelivery. Admins only.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use keel_core::Permission;
use keel_store::webhooks::EVENTS;

use super::parse_id;
use crate::auth::Auth;
use crate::body::Json;
use crate::dto::{NewWebhook, Page, Webhook, WebhookDelivery, WebhookUpdate};
use crate::error::{ApiError, Problem};
use crate::idempotency::IdempotencyKey;
use crate::state::AppState;

fn check_url(state: &AppState, url: &str) -> Result<String, ApiError> {
    if url.len() > 2000 {
        return Err(ApiError::unprocessable(
            "webhook.invalid_url",
            "url",
            "the URL is longer than 2000 characters",
        ));
    }
    keel_notify::webhook::check_url(url, state.settings.webhooks_allow_internal)
        .map(|u| u.to_string())
        .map_err(|e| ApiError::unprocessable("webhook.forbidden_target", "url", e))
}

fn check_events(events: &[String]) -> Result<(), ApiError> {
    if events.is_empty() {
        return Err(ApiError::unprocessable(
            "webhook.events_required",
            "events",
            "subscribe to at least one event",
        ));
    }
    match events
        .iter()
        .find(|e| *e != "*" && !EVENTS.contains(&e.as_str()))
    {
        Some(e) => Err(ApiError::unprocessable(
            "webhook.unknown_event",
            "events",
            format!(
                "unknown event `{}`; known: {}",
                e.chars().take(60).collect::<String>(),
                EVENTS.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn check_secret(s: &str) -> Result<(), ApiError> {
    if !(16..=200).contains(&s.chars().count()) {
        return Err(ApiError::unprocessable(
            "webhook.weak_secret",
            "secret",
            "the secret must be 16 to 200 characters",
        ));
    }
    Ok(())
}

/// Subscribe a URL to events
///
/// Admins only. Each event is POSTed as JSON (`type`, `id`, `time`, `data`:
/// the record) with `X-Keel-Signature: sha256=<HMAC-SHA256 of the body
/// under the secret>`, `X-Keel-Event` and `X-Keel-Delivery`, and retried
/// with backoff until the receiver answers 2xx. Targets on loopback,
/// private, link-local or metadata addresses are refused (after DNS
/// resolution, and on every redirect) unless configuration allows them.
#[utoipa::path(
    tag = "webhooks",
    request_body = NewWebhook,
    params(IdempotencyKey),
    responses((status = 201, description = "Subscribed; `secret` is shown this once", body = Webhook))
)]
#[post("/webhooks")]
pub async fn create_webhook(
    state: web::Data<AppState>,
    auth: Auth,
    body: Json<NewWebhook>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::WebhooksAdmin)?;
    let b = body.into_inner();
    let url = check_url(&state, b.url.as_deref().unwrap_or(""))?;
    let events = b.events.unwrap_or_default();
    check_events(&events)?;
    let secret = match b.secret {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => keel_auth::tokens::random_secret(32),
    };
    let mut w = Webhook::from(state.store.create_webhook(&url, &events, &secret).await?);
    if b.active == Some(false) {
        w = Webhook::from(
            state
                .store
                .update_webhook(w.id, None, None, Some(false), None)
                .await?,
        );
    }
    w.secret = Some(secret);
    Ok(HttpResponse::Created().json(w))
}

/// List webhook subscriptions
///
/// Admins only. Secrets are never listed.
#[utoipa::path(tag = "webhooks", responses((status = 200, description = "Subscriptions", body = Page<Webhook>)))]
#[get("/webhooks")]
pub async fn list_webhooks(
    state: web::Data<AppState>,
    auth: Auth,
) -> Result<web::Json<Page<Webhook>>, ApiError> {
    auth.require(Permission::WebhooksAdmin)?;
    Ok(web::Json(Page::all(
        state
            .store
            .list_webhooks()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    )))
}

/// Get a webhook subscription
///
/// Admins only.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The subscription", body = Webhook),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/webhooks/{id}")]
pub async fn get_webhook(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<web::Json<Webhook>, ApiError> {
    auth.require(Permission::WebhooksAdmin)?;
    Ok(web::Json(
        state
            .store
            .get_webhook(parse_id(&id, "webhook")?)
            .await?
            .into(),
    ))
}

/// Update a webhook subscription
///
/// Admins only: URL, events, active flag, or a new secret.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    request_body = WebhookUpdate,
    responses(
        (status = 200, description = "Updated", body = Webhook),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/webhooks/{id}")]
pub async fn update_webhook(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
    body: Json<WebhookUpdate>,
) -> Result<web::Json<Webhook>, ApiError> {
    auth.require(Permission::WebhooksAdmin)?;
    let id = parse_id(&id, "webhook")?;
    let b = body.into_inner();
    let url = b.url.as_deref().map(|u| check_url(&state, u)).transpose()?;
    if let Some(e) = &b.events {
        check_events(e)?;
    }
    if let Some(s) = &b.secret {
        check_secret(s)?;
    }
    let w = state
        .store
        .update_webhook(
            id,
            url.as_deref(),
            b.events.as_deref(),
            b.active,
            b.secret.as_deref(),
        )
        .await?;
    let mut out = Webhook::from(w);
    out.secret = b.secret;
    Ok(web::Json(out))
}

/// Delete a webhook subscription
///
/// Admins only. Its delivery log goes with it.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/webhooks/{id}")]
pub async fn delete_webhook(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require(Permission::WebhooksAdmin)?;
    state
        .store
        .delete_webhook(parse_id(&id, "webhook")?)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delivery log
///
/// Admins only. The latest 200 deliveries, newest first: status, attempts,
/// the receiver's response code, latency and last error.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "Deliveries", body = Page<WebhookDelivery>),
        (status = 404, description = "No such subscription", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/webhooks/{id}/deliveries")]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    auth: Auth,
    id: web::Path<String>,
) -> Result<web::Json<Page<WebhookDelivery>>, ApiError> {
    auth.require(Permission::WebhooksAdmin)?;
    let items = state
        .store
        .webhook_deliveries(parse_id(&id, "webhook")?, 200)
        .await?;
    Ok(web::Json(Page::all(
        items.into_iter().map(Into::into).collect(),
    )))
}

/// Redeliver
///
/// Admins only. Queues a delivery again (with the same payload and id) to
/// be sent at once.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "Subscription id"), ("delivery_id" = Uuid, Path, description = "Delivery id")),
    responses(
        (status = 200, description = "Queued", body = WebhookDelivery),
        (status = 404, description = "No such delivery", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/webhooks/{id}/deliveries/{delivery_id}/redeliver")]
pub async fn redeliver(
    state: web::Data<AppState>,
    auth: Auth,
    path: web::Path<(String, String)>,
) -> Result<web::Json<WebhookDelivery>, ApiError> {
    auth.require(Permission::WebhooksAdmin)?;
    let (id, d) = path.into_inner();
    let out = state
        .store
        .redeliver(parse_id(&id, "webhook")?, parse_id(&d, "delivery")?)
        .await?;
    Ok(web::Json(out.into()))
}
