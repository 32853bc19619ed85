//! `Idempotency-Key` for creating POSTs: the first response to a key (per
//! caller) is stored and replayed to retries with the same body; a different
//! body under the same key is refused; a retry racing the first request waits
//! for it. Only 2xx responses are kept, so a failed attempt may be retried.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody, to_bytes};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};
use futures_util::StreamExt;
use keel_store::idempotency::{Claim, StoredResponse};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

pub const HEADER: &str = "Idempotency-Key";

/// The `Idempotency-Key` header as the OpenAPI document describes it on
/// every creating POST. Only read by [`idempotency`], never extracted.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// Makes a retry return the first response instead of doing the work
    /// again: 1-255 visible ASCII characters (spaces and tabs allowed
    /// inside), unique per intended request.
    #[param(rename = "Idempotency-Key", value_type = String, required = false, max_length = 255, pattern = r"^[!-~]([\t -~]*[!-~])?$")]
    pub key: Option<String>,
}

fn respond(req: ServiceRequest, e: ApiError) -> ServiceResponse<BoxBody> {
    let res = actix_web::ResponseError::error_response(&e);
    req.into_response(res)
}

fn replay(stored: StoredResponse) -> HttpResponse {
    let mut res =
        HttpResponse::build(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK));
    for (k, v) in stored.headers {
        res.insert_header((k, v));
    }
    res.insert_header(("Idempotent-Replayed", "true"));
    res.body(stored.body)
}

pub async fn idempotency(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let applies = req.method() == Method::POST && !req.path().starts_with("/api/v1/auth/");
    let key = applies
        .then(|| req.headers().get(HEADER))
        .flatten()
        .map(|v| v.to_str().map(str::to_owned));
    let Some(key) = key else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let key = match key {
        Ok(k) if (1..=255).contains(&k.len()) => k,
        _ => {
            let e = ApiError::bad_request(
                "idempotency.invalid_key",
                "Idempotency-Key must be 1-255 visible ASCII characters",
            );
            return Ok(respond(req, e));
        }
    };
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    // `require_auth` ran first; without an actor the request is public or
    // refused already, and keys are per caller.
    let Some(actor) = req
        .extensions()
        .get::<std::sync::Arc<keel_core::Actor>>()
        .cloned()
    else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let limit = state
        .settings
        .attachment_max_bytes
        .max(state.settings.max_json_bytes as u64)
        .max(state.settings.inbound_max_bytes as u64)
        + 64 * 1024;
    let mut body = web::BytesMut::new();
    let mut payload = req.take_payload();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if (body.len() + chunk.len()) as u64 > limit {
            return Ok(respond(
                req,
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request.too_large",
                    "the request body is too large",
                ),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let body = body.freeze();
    let mut h = Sha256::new();
    h.update(req.method().as_str());
    h.update(b" ");
    h.update(req.uri().to_string());
    h.update(b"\n");
    h.update(&body);
    let hash: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    req.set_payload(Payload::from(body));

    let user = actor.user_id;
    let mut waited = Duration::ZERO;
    loop {
        match state.store.idempotency_claim(user, &key, &hash).await {
            Err(e) => return Ok(respond(req, e.into())),
            Ok(Claim::Mismatch) => {
                let e = ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency.key_reused",
                    "this Idempotency-Key was used with a different request",
                );
                return Ok(respond(req, e));
            }
            Ok(Claim::Replay(stored)) => return Ok(req.into_response(replay(stored))),
            Ok(Claim::InFlight) if waited < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                waited += Duration::from_millis(50);
            }
            Ok(Claim::InFlight) => {
                let e = ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency.in_flight",
                    "a request with this Idempotency-Key is still being processed",
                );
                return Ok(respond(req, e));
            }
            Ok(Claim::Acquired) => break,
        }
    }
    let res = match next.call(req).await {
        Ok(res) => res,
        Err(e) => {
            let _ = state.store.idempotency_release(user, &key).await;
            return Err(e);
        }
    };
    let status = res.status();
    if !status.is_success() {
        let _ = state.store.idempotency_release(user, &key).await;
        return Ok(res.map_into_boxed_body());
    }
    let (http_req, res) = res.into_parts();
    let (head, body) = res.into_parts();
    let bytes = match to_bytes(body).await {
        Ok(b) => b,
        Err(_) => {
            let _ = state.store.idempotency_release(user, &key).await;
            return Ok(ServiceResponse::new(
                http_req,
                ApiError::internal("response body unreadable").into_response(),
            ));
        }
    };
    let headers: Vec<(String, String)> = [header::CONTENT_TYPE, header::LOCATION, header::ETAG]
        .iter()
        .filter_map(|n| {
            head.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(|v| (n.to_string(), v.to_owned()))
        })
        .collect();
    let stored = StoredResponse {
        status: status.as_u16(),
        headers,
        body: bytes.to_vec(),
    };
    if let Err(e) = state.store.idempotency_complete(user, &key, &stored).await {
        tracing::warn!(error = %e, "could not store idempotent response");
    }
    let res = head.set_body(BoxBody::new(bytes));
    Ok(ServiceResponse::new(http_req, res))
}

trait IntoResponse {
    fn into_response(self) -> HttpResponse;
}
impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}
