//! Webhooks: subscriptions, signed deliveries, retries, the delivery log.

use hmac::{Hmac, Mac};
use keel_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

fn allow_loopback(cfg: &mut keel_server::Config) {
    // The receiver runs on loopback, which production refuses by default.
    cfg.webhooks.allow_internal_targets = true;
    cfg.webhooks.poll_interval_secs = 1;
    cfg.webhooks.retry_base_secs = 1;
}

/// What a receiver does to trust a delivery.
fn signature_is_valid(secret: &str, r: &Received) -> bool {
    let Some(sig) = r
        .headers
        .get("x-keel-signature")
        .and_then(|s| s.strip_prefix("sha256="))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&r.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == sig
}

async fn subscribe(app: &TestApp, admin: &str, url: &str, events: Value) -> Value {
    expect_json(
        app.post("/api/v1/webhooks", admin)
            .json(&json!({"url": url, "events": events}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await
}

fn event(r: &Received) -> &str {
    r.headers
        .get("x-keel-event")
        .map(String::as_str)
        .unwrap_or("")
}

both!(
    subscribed_events_arrive_signed_and_are_logged,
    super::allow_loopback
);
async fn subscribed_events_arrive_signed_and_are_logged(app: TestApp) {
    let desk = app.desk().await;
    let receiver = HookReceiver::start(0).await;
    let hook = subscribe(
        &app,
        &desk.admin,
        &receiver.url(),
        json!([
            "incident.created",
            "incident.commented",
            "incident.transitioned"
        ]),
    )
    .await;
    let secret = s(&hook, "secret").to_owned();
    assert!(secret.len() >= 16);
    let listed = app.get_json("/api/v1/webhooks", &desk.admin).await;
    assert!(
        items(&listed)[0].get("secret").is_none(),
        "secrets are shown once only"
    );

    let inc = app
        .simple_incident(&desk.requester.token, "Badge reader broken")
        .await;
    let id = s(&inc, "id").to_owned();
    app.comment(&desk.agent.token, &id, "On my way", "public")
        .await;
    app.comment(&desk.agent.token, &id, "internal detail", "internal")
        .await;
    app.resolve(&desk.agent.token, &id).await;
    let got = receiver
        .wait_for("three events", |r| {
            r.iter().map(event).collect::<Vec<_>>()
                == [
                    "incident.created",
                    "incident.commented",
                    "incident.transitioned",
                ]
        })
        .await;
    for r in &got {
        assert!(
            signature_is_valid(&secret, r),
            "bad signature on {}",
            event(r)
        );
        let body = r.json();
        assert_eq!(body["type"], event(r));
        assert_eq!(
            body["id"].as_str(),
            r.headers.get("x-keel-delivery").map(String::as_str)
        );
        assert_eq!(body["data"]["number"], inc["number"]);
    }
    assert_eq!(got[1].json()["data"]["comment"]["body"], "On my way");
    assert!(
        got.iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("internal detail")),
        "work notes never leave Keel"
    );
    assert_eq!(got[2].json()["data"]["state"], "resolved");

    let log = app
        .get_json(
            &format!("/api/v1/webhooks/{}/deliveries", s(&hook, "id")),
            &desk.admin,
        )
        .await;
    let log = items(&log);
    assert_eq!(log.len(), 3);
    assert!(
        log.iter().all(|d| d["status"] == "delivered"
            && d["response_status"] == 200
            && d["attempts"] == 1
            && d["latency_ms"].is_i64()),
        "{log:?}"
    );

    // Admins only.
    let resp = app
        .get("/api/v1/webhooks", &desk.agent.token)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "auth.forbidden").await;
    app.finish().await;
}

both!(
    a_failing_receiver_is_retried_until_it_accepts,
    super::allow_loopback
);
async fn a_failing_receiver_is_retried_until_it_accepts(app: TestApp) {
    let desk = app.desk().await;
    let receiver = HookReceiver::start(2).await;
    let hook = subscribe(&app, &desk.admin, &receiver.url(), json!(["*"])).await;
    let hook_id = s(&hook, "id").to_owned();
    app.simple_incident(&desk.requester.token, "Fax machine jammed")
        .await;
    let got = receiver.wait_for("three attempts", |r| r.len() >= 3).await;
    let ids: Vec<&String> = got
        .iter()
        .filter_map(|r| r.headers.get("x-keel-delivery"))
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "retries carry the same delivery id"
    );
    // Wait for the log to show the success, then check nothing more is sent.
    let mut delivered = Value::Null;
    for _ in 0..50 {
        let log = app
            .get_json(
                &format!("/api/v1/webhooks/{hook_id}/deliveries"),
                &desk.admin,
            )
            .await;
        delivered = items(&log)[0].clone();
        if delivered["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(delivered["status"], "delivered", "{delivered}");
    assert_eq!(delivered["attempts"], 3);
    assert_eq!(delivered["response_status"], 200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        receiver.received().len(),
        3,
        "a delivered event is not sent again"
    );

    // A manual redelivery sends it once more, with the same id.
    let resp = app
        .post(
            &format!(
                "/api/v1/webhooks/{hook_id}/deliveries/{}/redeliver",
                s(&delivered, "id")
            ),
            &desk.admin,
        )
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    let got = receiver.wait_for("the redelivery", |r| r.len() == 4).await;
    assert_eq!(
        got[3].headers.get("x-keel-delivery"),
        got[0].headers.get("x-keel-delivery")
    );
    app.finish().await;
}

both!(internal_targets_and_bad_subscriptions_are_refused);
async fn internal_targets_and_bad_subscriptions_are_refused(app: TestApp) {
    let admin = app.admin_token().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost/x",
        "http://10.0.0.5/x",
    ] {
        let resp = app
            .post("/api/v1/webhooks", &admin)
            .json(&json!({"url": url, "events": ["*"]}))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 422, "webhook.forbidden_target").await;
    }
    let cases = [
        (
            json!({"url": "ftp://files.example.com/", "events": ["*"]}),
            "webhook.forbidden_target",
        ),
        (
            json!({"url": "https://hooks.example.com/", "events": []}),
            "webhook.events_required",
        ),
        (
            json!({"url": "https://hooks.example.com/", "events": ["incident.exploded"]}),
            "webhook.unknown_event",
        ),
        (
            json!({"url": "https://hooks.example.com/", "events": ["*"], "secret": "short"}),
            "webhook.weak_secret",
        ),
    ];
    for (body, code) in cases {
        let resp = app
            .post("/api/v1/webhooks", &admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 422, code).await;
    }
    app.finish().await;
}
