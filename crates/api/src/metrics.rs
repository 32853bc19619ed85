//! Prometheus metrics and the request log, recorded by one middleware.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::state::AppState;

/// The metric families Keel exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
    inline: IntCounterVec,
    /// Held while `inline` catches up with the store's counts, so that two
    /// scrapes at once cannot both add the same difference.
    inline_sync: std::sync::Mutex<()>,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "keel_http_requests_total",
                "HTTP requests by method, route and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "keel_http_request_duration_seconds",
                "HTTP request latency by method and route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new(
                "keel_db_pool_connections",
                "Database pool connections by state",
            ),
            &["state"],
        )?;
        let inline = IntCounterVec::new(
            Opts::new(
                "keel_db_sqlite_inline_reads_total",
                "SQLite gets and list pages run on the HTTP worker's thread (here) or tried there and handed over to a connection's thread (handed_over)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(inline.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            pool,
            inline,
            inline_sync: std::sync::Mutex::new(()),
        })
    }

    fn observe(&self, method: &str, route: &str, status: &str, secs: f64) {
        self.requests
            .with_label_values(&[method, route, status])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(secs);
    }

    /// The text exposition, with pool gauges and the counts of SQLite's
    /// reads on the worker's thread (none on PostgreSQL) read now.
    pub fn render(
        &self,
        pool: keel_store::PoolStats,
        inline: Option<keel_store::InlineReads>,
    ) -> String {
        if let Some(inline) = inline {
            // Nothing panics while holding it; a poisoned lock still serialises.
            let _sync = self.inline_sync.lock().unwrap_or_else(|p| p.into_inner());
            for (outcome, total) in [("here", inline.here), ("handed_over", inline.handed_over)] {
                let c = self.inline.with_label_values(&[outcome]);
                // The store's counts only grow: the counter follows them.
                c.inc_by(total.saturating_sub(c.get()));
            }
        }
        let size = i64::from(pool.size);
        let idle = i64::from(pool.idle);
        self.pool.with_label_values(&["open"]).set(size);
        self.pool.with_label_values(&["idle"]).set(idle);
        self.pool.with_label_values(&["in_use"]).set(size - idle);
        self.pool
            .with_label_values(&["max"])
            .set(i64::from(pool.max));
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Records every request's metrics and logs it. Routes are labelled by their
/// pattern (`/api/v1/incidents/{id}`), never the raw path, to bound cardinality.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    // Kept as it came: the handler may consume the request.
    let method = req.method().clone();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    let res = next.call(req).await?;
    let route = res.request().match_pattern();
    let route = route.as_deref().unwrap_or("unmatched");
    let status = res.status();
    let secs = start.elapsed().as_secs_f64();
    if let Some(m) = metrics {
        m.observe(method.as_str(), route, status.as_str(), secs);
    }
    let (method, status) = (method.as_str(), status.as_u16());
    tracing::info!(target: "keel::http", %method, %route, status, latency_ms = secs * 1000.0, "request");
    Ok(res)
}
