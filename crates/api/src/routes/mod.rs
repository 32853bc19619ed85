//! HTTP handlers, one module per area. Each handler carries its OpenAPI
//! description; `crate::api_routes` registers them all.

pub mod auth;
pub mod incidents;
pub mod ops;
pub mod people;
pub mod sla;
pub mod webhooks;

use actix_web::HttpRequest;
use actix_web::http::StatusCode;

use crate::error::ApiError;

/// The `ETag` of a record version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// The version named by `If-Match` (`"3"`, `W/"3"` or `3`), if present.
pub fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(v) = req.headers().get(actix_web::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad_request(
            "precondition.invalid_if_match",
            "If-Match must be the ETag of a version, like \"3\"",
        )
    })
}

/// `If-Match`, required.
pub fn require_if_match(req: &HttpRequest) -> Result<i64, ApiError> {
    if_match(req)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition.required",
            "send If-Match with the ETag you last read, so concurrent edits are not lost",
        )
    })
}

/// The client address, for login throttling.
pub fn client_addr(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// A UUID from a path segment; anything else is "not found".
pub fn parse_id(raw: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::not_found(what))
}
