//! Email into Keel: new incidents, replies as comments, and refusals.

use keel_tests::*;
use reqwest::StatusCode;
use serde_json::json;

/// An API token with the `inbound_email` scope, owned by the admin.
async fn gateway_token(app: &TestApp) -> String {
    let admin = app.admin_token().await;
    let t = expect_json(
        app.post("/api/v1/api-tokens", &admin)
            .json(&json!({"name": "postfix", "scopes": ["inbound_email"]}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    s(&t, "token").to_owned()
}

async fn deliver(app: &TestApp, token: &str, raw: &str) -> reqwest::Response {
    app.post("/api/v1/inbound/email", token)
        .header("content-type", "message/rfc822")
        .body(raw.to_owned())
        .send()
        .await
        .unwrap()
}

fn message(from: &str, subject: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: desk@keel.test\r\nSubject: {subject}\r\nMessage-ID: <{}@mail.example.com>\r\n{extra_headers}\r\n{body}\r\n",
        uuid::Uuid::new_v4()
    )
}

both!(an_email_becomes_an_incident_and_replies_become_comments);
async fn an_email_becomes_an_incident_and_replies_become_comments(app: TestApp) {
    let desk = app.desk().await;
    let gw = gateway_token(&app).await;
    let raw = "From: Req One <req1@example.com>\r\nTo: desk@keel.test\r\nSubject: Projector in room 4 is dead\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nNo picture since this morning.\r\n--XX\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=\"photo.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--XX--\r\n";
    let out = expect_json(deliver(&app, &gw, raw).await, StatusCode::OK).await;
    assert_eq!(out["outcome"], "created", "{out}");
    let number = s(&out, "number").to_owned();
    let inc = app.incident(&desk.requester.token, &number).await;
    assert_eq!(inc["title"], "Projector in room 4 is dead");
    assert_eq!(inc["description"], "No picture since this morning.");
    assert_eq!(inc["requester"]["username"], "req1");
    let files = app
        .get_json(
            &format!("/api/v1/incidents/{number}/attachments"),
            &desk.requester.token,
        )
        .await;
    assert_eq!(items(&files).len(), 1);
    assert_eq!(items(&files)[0]["filename"], "photo.png");

    // A reply naming the number in the subject.
    let reply = message(
        "req1@example.com",
        &format!("Re: [{number}] Projector in room 4 is dead"),
        "",
        "It smells of smoke now.",
    );
    let out = expect_json(deliver(&app, &gw, &reply).await, StatusCode::OK).await;
    assert_eq!(out["outcome"], "commented");
    assert_eq!(out["number"], number.as_str());
    // A reply found only through the threading headers Keel sent.
    let reply = message(
        "req1@example.com",
        "Re: your message",
        &format!("In-Reply-To: <0193abcd.{number}@keel.test>\r\n"),
        "Any news?",
    );
    let out = expect_json(deliver(&app, &gw, &reply).await, StatusCode::OK).await;
    assert_eq!(out["outcome"], "commented");
    let comments = app
        .get_json(
            &format!("/api/v1/incidents/{number}/comments"),
            &desk.requester.token,
        )
        .await;
    let bodies: Vec<&str> = items(&comments)
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["It smells of smoke now.", "Any news?"]);
    assert!(
        items(&comments)
            .iter()
            .all(|c| c["visibility"] == "public" && c["author"]["username"] == "req1")
    );

    // Someone who cannot see the incident gets a new one, not a comment on it.
    let stranger = message(
        "req2@example.com",
        &format!("Re: [{number}] hijack"),
        "",
        "Let me in",
    );
    let out = expect_json(deliver(&app, &gw, &stranger).await, StatusCode::OK).await;
    assert_eq!(out["outcome"], "created");
    assert_ne!(out["number"], number.as_str());
    app.finish().await;
}

both!(auto_replies_and_bounces_never_create_records);
async fn auto_replies_and_bounces_never_create_records(app: TestApp) {
    let desk = app.desk().await;
    let gw = gateway_token(&app).await;
    for extra in [
        "Auto-Submitted: auto-replied\r\n",
        "Precedence: bulk\r\n",
        "Return-Path: <>\r\n",
    ] {
        let raw = message(
            "req1@example.com",
            "Out of office",
            extra,
            "I am away until Monday.",
        );
        let out = expect_json(deliver(&app, &gw, &raw).await, StatusCode::OK).await;
        assert_eq!(out["outcome"], "ignored", "{extra}: {out}");
    }
    let list = app.list_incidents(&desk.agent.token, &[]).await;
    assert!(items(&list).is_empty());
    app.finish().await;
}

both!(
    hostile_or_unwelcome_mail_gets_a_clear_refusal,
    |cfg: &mut keel_server::Config| {
        cfg.inbound.max_bytes = 64 * 1024;
    }
);
async fn hostile_or_unwelcome_mail_gets_a_clear_refusal(app: TestApp) {
    let desk = app.desk().await;
    let gw = gateway_token(&app).await;
    let unknown = message("nobody@elsewhere.example", "Hello", "", "Who are you?");
    assert_problem(
        deliver(&app, &gw, &unknown).await,
        422,
        "inbound.unknown_sender",
    )
    .await;
    assert_problem(
        deliver(&app, &gw, "\u{0}\u{1}garbage without headers").await,
        422,
        "inbound.no_sender",
    )
    .await;
    let long_header = message("req1@example.com", &"x".repeat(10_000), "", "x");
    assert_problem(
        deliver(&app, &gw, &long_header).await,
        422,
        "inbound.too_complex",
    )
    .await;
    let mut many = String::from(
        "From: req1@example.com\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n",
    );
    for _ in 0..200 {
        many.push_str("--B\r\nContent-Type: text/plain\r\n\r\nx\r\n");
    }
    many.push_str("--B--\r\n");
    assert_problem(deliver(&app, &gw, &many).await, 422, "inbound.too_complex").await;
    let huge = message("req1@example.com", "big", "", &"y".repeat(70 * 1024));
    let resp = deliver(&app, &gw, &huge).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Only a token with the inbound_email scope, owned by an admin, may post mail.
    let ok = message("req1@example.com", "Hi", "", "x");
    assert_problem(
        deliver(&app, &desk.agent.token, &ok).await,
        403,
        "auth.forbidden",
    )
    .await;
    let admin = app.admin_token().await;
    let other = expect_json(
        app.post("/api/v1/api-tokens", &admin)
            .json(&json!({"name": "ro", "scopes": ["incidents:read"]}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    assert_problem(
        deliver(&app, s(&other, "token"), &ok).await,
        403,
        "auth.insufficient_scope",
    )
    .await;
    let list = app.list_incidents(&desk.agent.token, &[]).await;
    assert!(items(&list).is_empty(), "no refused message left a record");
    app.finish().await;
}

both!(
    unknown_senders_become_requesters_when_configured,
    |cfg: &mut keel_server::Config| {
        cfg.inbound.unknown_senders = keel_server::config::UnknownSenders::Create;
    }
);
async fn unknown_senders_become_requesters_when_configured(app: TestApp) {
    let gw = gateway_token(&app).await;
    let raw = message(
        "Nora New <Nora.New@Elsewhere.example>",
        "First contact",
        "",
        "Hello desk",
    );
    let out = expect_json(deliver(&app, &gw, &raw).await, StatusCode::OK).await;
    assert_eq!(out["outcome"], "created");
    let admin = app.admin_token().await;
    let users = app.get_json("/api/v1/users?role=requester", &admin).await;
    let nora = items(&users)
        .iter()
        .find(|u| u["email"] == "nora.new@elsewhere.example")
        .cloned()
        .unwrap();
    assert_eq!(nora["username"], "nora.new");
    assert_eq!(nora["display_name"], "Nora New");
    assert_eq!(nora["roles"], json!(["requester"]));
    // The account has no password until an admin sets one.
    let resp = app.try_login("nora.new", "any password at all").await;
    assert_problem(resp, 401, "auth.invalid_credentials").await;
    app.finish().await;
}
