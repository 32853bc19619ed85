//! Health, readiness, metrics, the API description and its drift check.

use keel_tests::*;
use reqwest::{Method, StatusCode};

both!(health_and_readiness_answer);
async fn health_and_readiness_answer(app: TestApp) {
    let resp = app.request(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app.request(Method::GET, "/readyz").send().await.unwrap();
    let body = expect_json(resp, StatusCode::OK).await;
    assert_eq!(body["status"], "ready");
    app.finish().await;
}

both!(metrics_count_http_requests);
async fn metrics_count_http_requests(app: TestApp) {
    app.admin_token().await;
    let _ = app
        .request(Method::GET, "/api/v1/incidents")
        .send()
        .await
        .unwrap();
    let resp = app.request(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = resp.text().await.unwrap();
    assert!(text.contains("keel_http_requests_total"), "{text}");
    assert!(!text.contains(ADMIN_PASSWORD));
    app.finish().await;
}

both!(sqlite_gets_and_pages_run_on_the_worker_thread_are_counted_in_the_metrics);
async fn sqlite_gets_and_pages_run_on_the_worker_thread_are_counted_in_the_metrics(app: TestApp) {
    let token = app.admin_token().await;
    let inc = app.simple_incident(&token, "Badge reader dead").await;
    app.list_incidents(&token, &[]).await;
    app.incident(&token, s(&inc, "id")).await;
    // A search is never tried there.
    app.list_incidents(&token, &[("q", "badge")]).await;
    let text = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |outcome: &str| -> Option<u64> {
        let name = format!("keel_db_sqlite_inline_reads_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(name.as_str()))
            .and_then(|v| v.trim().parse().ok())
    };
    match app.db {
        // The page and the get at least (a write reads its incident on
        // the read pool, not here).
        Db::Sqlite => {
            assert!(count("here").is_some_and(|n| n >= 2), "{text}");
            assert_eq!(count("handed_over"), Some(0), "{text}");
        }
        Db::Postgres => assert!(
            !text.contains("keel_db_sqlite_inline_reads_total"),
            "{text}"
        ),
    }
    app.finish().await;
}

both!(the_openapi_document_is_served);
async fn the_openapi_document_is_served(app: TestApp) {
    let token = app.admin_token().await;
    let doc = app.get_json("/api/v1/openapi.json", &token).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/api/v1/auth/login",
        "/api/v1/incidents",
        "/api/v1/incidents/{id}/transitions",
    ] {
        assert!(
            paths.keys().any(|k| k == p),
            "{p} is documented; have {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    let generated: serde_json::Value = serde_json::from_str(&keel_server::openapi_json()).unwrap();
    assert_eq!(doc, generated, "the served document is the generated one");
    app.finish().await;
}

both!(the_api_reference_page_is_served);
async fn the_api_reference_page_is_served(app: TestApp) {
    let resp = app.request(Method::GET, "/docs/").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ct.starts_with("text/html"), "{ct}");
    app.finish().await;
}

/// The committed `openapi/openapi.json` matches what the code generates.
#[test]
fn the_committed_openapi_document_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let generated = keel_server::openapi_json();
    let regenerate = "cargo run -p keel-server -- openapi > openapi/openapi.json";
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; generate it with `{regenerate}`",
            path.display()
        )
    });
    if committed.trim_end() != generated.trim_end() {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}:\n  committed: {a}\n  generated: {b}", i + 1))
            .unwrap_or_else(|| {
                format!(
                    "{} lines committed, {} generated",
                    committed.lines().count(),
                    generated.lines().count()
                )
            });
        panic!(
            "openapi/openapi.json is out of date ({first_difference}).\nRegenerate it with `{regenerate}` and commit the result."
        );
    }
}
