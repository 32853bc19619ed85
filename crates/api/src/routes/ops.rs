//! Liveness, readiness and metrics for operators.

use actix_web::{HttpResponse, get, web};

use crate::dto::Readiness;
use crate::state::AppState;

/// Liveness
///
/// 200 while the process serves requests.
#[utoipa::path(tag = "ops", responses((status = 200, description = "Up", body = Readiness)), security(()))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Readiness {
        status: "up".into(),
    })
}

/// Readiness
///
/// 200 when the database answers, 503 otherwise.
#[utoipa::path(
    tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "The database is unreachable", body = Readiness),
    ),
    security(())
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.store.ping().await {
        HttpResponse::Ok().json(Readiness {
            status: "ready".into(),
        })
    } else {
        HttpResponse::ServiceUnavailable().json(Readiness {
            status: "unavailable".into(),
        })
    }
}

/// Prometheus metrics
///
/// Request counts and latencies by route and status, database pool use, and
/// on SQLite how many gets and list pages ran on the HTTP worker's thread,
/// in the Prometheus text format.
#[utoipa::path(tag = "ops", responses((status = 200, description = "Metrics", content_type = "text/plain", body = String)), security(()))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.store.pool_stats();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(pool, state.store.inline_reads()))
}
