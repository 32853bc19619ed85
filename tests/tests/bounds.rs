//! Request bounds: oversized bodies, headers, deep JSON and slow clients are
//! refused without exhausting memory or a worker, and the server stays up.

use std::io::{Read, Write};
use std::time::Duration;

use keel_tests::*;
use reqwest::StatusCode;

/// Sends raw bytes and returns the status line of the answer (empty if the
/// connection was closed without one).
fn raw_exchange(port: u16, request: &[u8], wait: Duration) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(request);
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

both!(
    oversized_and_slow_requests_are_refused_and_the_server_stays_up,
    |cfg: &mut keel_server::Config| {
        cfg.http.client_request_timeout_secs = 1;
        cfg.http.max_json_bytes = 64 * 1024;
    }
);
async fn oversized_and_slow_requests_are_refused_and_the_server_stays_up(app: TestApp) {
    let desk = app.desk().await;
    let port = app.port;
    // A body over the JSON limit.
    let big = format!(
        "{{\"title\": \"{}\", \"impact\": 3, \"urgency\": 3}}",
        "x".repeat(100 * 1024)
    );
    let resp = app
        .post("/api/v1/incidents", &desk.agent.token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 413, "request.too_large").await;
    // JSON nested thousands deep.
    let deep = format!("{{\"title\": {}{}}}", "[".repeat(5000), "]".repeat(5000));
    let resp = app
        .post("/api/v1/incidents", &desk.agent.token)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, "validation.invalid_json").await;
    // A string far past a field's length.
    let resp = app
        .post("/api/v1/incidents", &desk.agent.token)
        .json(&serde_json::json!({"title": "t".repeat(20_000), "impact": 3, "urgency": 3}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "validation.invalid_text").await;
    // A page too large.
    let resp = app
        .get("/api/v1/incidents?limit=100000", &desk.agent.token)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 400, "query.invalid_limit").await;

    let (big_header, many_headers, slow) = tokio::task::spawn_blocking(move || {
        let mut req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 300_000));
        req.extend(b"\r\n\r\n");
        let big_header = raw_exchange(port, &req, Duration::from_secs(10));
        let mut req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..500 {
            req.extend(format!("X-H{i}: v\r\n").as_bytes());
        }
        req.extend(b"\r\n");
        let many_headers = raw_exchange(port, &req, Duration::from_secs(10));
        // A client that sends half a request head and goes quiet.
        let slow = raw_exchange(
            port,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
            Duration::from_secs(10),
        );
        (big_header, many_headers, slow)
    })
    .await
    .unwrap();
    assert!(
        big_header.contains("431") || big_header.is_empty(),
        "a 300 kB header: {big_header:?}"
    );
    assert!(
        many_headers.contains("431") || many_headers.is_empty(),
        "500 headers: {many_headers:?}"
    );
    assert!(
        slow.contains("408") || slow.is_empty(),
        "a slow client is cut off: {slow:?}"
    );

    // Still serving, normally.
    let resp = app
        .request(reqwest::Method::GET, "/readyz")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    app.simple_incident(&desk.requester.token, "After the abuse")
        .await;
    app.finish().await;
}
