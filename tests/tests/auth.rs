//! Login, tokens, sessions, API tokens and account state.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keel_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.request(Method::POST, "/api/v1/auth/refresh")
        .json(&json!({ "refresh_token": refresh_token }))
        .send()
        .await
        .unwrap()
}

async fn me(app: &TestApp, token: &str) -> reqwest::Response {
    app.get("/api/v1/me", token).send().await.unwrap()
}

both!(login_with_the_right_password_returns_bearer_tokens);
async fn login_with_the_right_password_returns_bearer_tokens(app: TestApp) {
    let resp = app.try_login("admin", ADMIN_PASSWORD).await;
    let body = expect_json(resp, StatusCode::OK).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        s(&body, "access_token").split('.').count(),
        3,
        "a JWT: {body}"
    );
    assert!(!s(&body, "refresh_token").is_empty());
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    let me_body = expect_json(me(&app, s(&body, "access_token")).await, StatusCode::OK).await;
    assert_eq!(me_body["username"], "admin");

    // The email address works as the login name too, in any case.
    let admin = app.admin_token().await;
    app.create_user(&admin, "alice", "agent").await;
    let by_email = app
        .try_login("alice@example.com", &TestApp::password_for("alice"))
        .await;
    expect_json(by_email, StatusCode::OK).await;
    let upper = app
        .try_login("ALICE", &TestApp::password_for("alice"))
        .await;
    expect_json(upper, StatusCode::OK).await;
    app.finish().await;
}

both!(login_with_a_wrong_password_or_an_unknown_user_is_refused_alike);
async fn login_with_a_wrong_password_or_an_unknown_user_is_refused_alike(app: TestApp) {
    let wrong = assert_problem(
        app.try_login("admin", "not-the-password").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    let unknown = assert_problem(
        app.try_login("nobody", "whatever-password").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    // No user enumeration: both answers read the same.
    assert_eq!(wrong["title"], unknown["title"]);
    assert_eq!(wrong["detail"], unknown["detail"]);
    assert_problem(
        app.try_login("admin", "").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    app.finish().await;
}

both!(
    repeated_login_failures_are_throttled_with_retry_after,
    |cfg| {
        cfg.auth.login_max_failures_per_account = 3;
    }
);
async fn repeated_login_failures_are_throttled_with_retry_after(app: TestApp) {
    for _ in 0..3 {
        assert_problem(
            app.try_login("admin", "wrong-password-1").await,
            401,
            "auth.invalid_credentials",
        )
        .await;
    }
    // Even the right password is refused while the account is throttled.
    let resp = app.try_login("admin", ADMIN_PASSWORD).await;
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned())
        .expect("a Retry-After header on 429");
    let secs: u64 = retry_after.trim().parse().expect("Retry-After in seconds");
    assert!((1..=900).contains(&secs), "Retry-After {secs}");
    assert_problem(resp, 429, "auth.throttled").await;
    // Another account is not affected.
    assert_problem(
        app.try_login("someone-else", "wrong-password-1").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    app.finish().await;
}

both!(refresh_rotates_the_refresh_token);
async fn refresh_rotates_the_refresh_token(app: TestApp) {
    let first = app.login("admin", ADMIN_PASSWORD).await;
    let second = Tokens::from_json(
        &expect_json(refresh(&app, &first.refresh_token).await, StatusCode::OK).await,
    );
    assert_eq!(second.token_type, "Bearer");
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    expect_json(me(&app, &second.access_token).await, StatusCode::OK).await;
    let third = Tokens::from_json(
        &expect_json(refresh(&app, &second.refresh_token).await, StatusCode::OK).await,
    );
    assert_ne!(third.refresh_token, second.refresh_token);
    expect_json(me(&app, &third.access_token).await, StatusCode::OK).await;
    assert_problem(
        refresh(&app, "not-a-refresh-token").await,
        401,
        "auth.invalid_refresh_token",
    )
    .await;
    app.finish().await;
}

both!(reusing_a_refresh_token_revokes_the_whole_session);
async fn reusing_a_refresh_token_revokes_the_whole_session(app: TestApp) {
    let first = app.login("admin", ADMIN_PASSWORD).await;
    let other_session = app.login("admin", ADMIN_PASSWORD).await;
    let second = Tokens::from_json(
        &expect_json(refresh(&app, &first.refresh_token).await, StatusCode::OK).await,
    );
    expect_json(me(&app, &second.access_token).await, StatusCode::OK).await;

    // A thief replays the old refresh token.
    assert_problem(
        refresh(&app, &first.refresh_token).await,
        401,
        "auth.invalid_refresh_token",
    )
    .await;

    // The whole family is gone: the newer refresh token and the access tokens.
    assert_problem(
        refresh(&app, &second.refresh_token).await,
        401,
        "auth.invalid_refresh_token",
    )
    .await;
    assert_problem(
        me(&app, &second.access_token).await,
        401,
        "auth.invalid_token",
    )
    .await;
    assert_problem(
        me(&app, &first.access_token).await,
        401,
        "auth.invalid_token",
    )
    .await;

    // Other sessions of the same user are not.
    expect_json(me(&app, &other_session.access_token).await, StatusCode::OK).await;
    expect_json(
        refresh(&app, &other_session.refresh_token).await,
        StatusCode::OK,
    )
    .await;
    app.finish().await;
}

both!(logout_ends_the_session);
async fn logout_ends_the_session(app: TestApp) {
    let t = app.login("admin", ADMIN_PASSWORD).await;
    let other = app.login("admin", ADMIN_PASSWORD).await;
    // Known (and so cached) before the logout.
    expect_json(me(&app, &t.access_token).await, StatusCode::OK).await;
    let resp = app
        .post("/api/v1/auth/logout", &t.access_token)
        .json(&json!({ "refresh_token": t.refresh_token }))
        .send()
        .await
        .unwrap();
    expect_status(resp, StatusCode::NO_CONTENT).await;
    assert_problem(me(&app, &t.access_token).await, 401, "auth.invalid_token").await;
    assert_problem(
        refresh(&app, &t.refresh_token).await,
        401,
        "auth.invalid_refresh_token",
    )
    .await;
    expect_json(me(&app, &other.access_token).await, StatusCode::OK).await;
    app.finish().await;
}

both!(an_over_long_refresh_token_is_refused_not_ignored);
async fn an_over_long_refresh_token_is_refused_not_ignored(app: TestApp) {
    let t = app.login("admin", ADMIN_PASSWORD).await;
    let long = "x".repeat(513);
    for path in ["/api/v1/auth/logout", "/api/v1/auth/refresh"] {
        let resp = app
            .request(Method::POST, path)
            .json(&json!({ "refresh_token": long }))
            .send()
            .await
            .unwrap();
        let body = assert_problem(resp, 422, "validation.invalid_text").await;
        assert_eq!(body["field"], "refresh_token", "{path}");
    }
    // The longest token the contract allows is still just unknown.
    let resp = app
        .request(Method::POST, "/api/v1/auth/logout")
        .json(&json!({ "refresh_token": "x".repeat(512) }))
        .send()
        .await
        .unwrap();
    expect_status(resp, StatusCode::NO_CONTENT).await;
    expect_json(me(&app, &t.access_token).await, StatusCode::OK).await;
    app.finish().await;
}

both!(requests_without_credentials_are_refused);
async fn requests_without_credentials_are_refused(app: TestApp) {
    for (method, path) in [
        (Method::GET, "/api/v1/me"),
        (Method::GET, "/api/v1/incidents"),
        (Method::POST, "/api/v1/incidents"),
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/groups"),
        (Method::GET, "/api/v1/api-tokens"),
    ] {
        let resp = app
            .request(method.clone(), path)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 401, "auth.required").await;
    }
    // A scheme other than Bearer is not a credential either.
    let resp = app
        .request(Method::GET, "/api/v1/me")
        .header("Authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    app.finish().await;
}

fn forge(claims: &Value, key: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key),
    )
    .unwrap()
}

both!(forged_and_tampered_access_tokens_are_refused);
async fn forged_and_tampered_access_tokens_are_refused(app: TestApp) {
    let real = app.admin_token().await;
    let me_body = expect_json(me(&app, &real).await, StatusCode::OK).await;
    let admin_id = s(&me_body, "id").to_owned();
    let t = now();
    let claims = |aud: &str, iat: i64, exp: i64| {
        json!({
            "sub": admin_id, "sid": uuid::Uuid::new_v4(), "iss": "keel", "aud": aud,
            "iat": iat, "nbf": iat, "exp": exp, "jti": uuid::Uuid::new_v4(),
        })
    };
    let made_up_key = b"made-up-key-made-up-key-made-up-key!";

    // alg: none, with a well-formed payload.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("keel-api", t, t + 600)).unwrap());
    let alg_none = format!("{header}.{payload}.");

    // The real token's signature over a changed payload.
    let parts: Vec<&str> = real.split('.').collect();
    let mut real_claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(real_claims["iss"], "keel");
    assert_eq!(real_claims["aud"], "keel-api");
    assert_eq!(real_claims["sub"], admin_id.as_str());
    real_claims["exp"] = json!(t + 365 * 24 * 3600);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&real_claims).unwrap()),
        parts[2]
    );

    let cases: Vec<(&str, String)> = vec![
        ("alg none", alg_none),
        ("alg none without dot", format!("{header}.{payload}")),
        (
            "wrong key",
            forge(&claims("keel-api", t, t + 600), made_up_key),
        ),
        (
            "wrong audience",
            forge(&claims("someone-else", t, t + 600), made_up_key),
        ),
        (
            "expired",
            forge(&claims("keel-api", t - 7200, t - 3600), made_up_key),
        ),
        ("tampered payload", tampered),
        ("garbage", "not.a.jwt".to_owned()),
        ("empty", String::new()),
        (
            "fake api token",
            "keel_thisisnotarealtokenatall0000000000000000".to_owned(),
        ),
    ];
    for (what, token) in cases {
        let resp = app
            .request(Method::GET, "/api/v1/me")
            .header("Authorization", format!("Bearer {token}").trim_end())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let (_, body) = assert_problem_any(resp, &[401], &["auth."]).await;
        assert!(
            ["auth.invalid_token", "auth.token_expired", "auth.required"]
                .contains(&body["code"].as_str().unwrap()),
            "{what}: {status} {body}"
        );
        if what != "expired" && what != "empty" {
            assert_eq!(body["code"], "auth.invalid_token", "{what}");
        }
    }
    // The real token still works.
    expect_json(me(&app, &real).await, StatusCode::OK).await;
    app.finish().await;
}

both!(an_expired_access_token_is_refused_as_expired, |cfg| {
    cfg.auth.access_token_ttl_secs = 1;
});
async fn an_expired_access_token_is_refused_as_expired(app: TestApp) {
    let t = app.login("admin", ADMIN_PASSWORD).await;
    assert!(
        t.expires_in <= 1,
        "expires_in follows the configured lifetime: {}",
        t.expires_in
    );
    // One second of lifetime plus the verifier's five seconds of leeway.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_problem(me(&app, &t.access_token).await, 401, "auth.token_expired").await;
    // The session lives on: refreshing gives a working token.
    let fresh = Tokens::from_json(
        &expect_json(refresh(&app, &t.refresh_token).await, StatusCode::OK).await,
    );
    expect_json(me(&app, &fresh.access_token).await, StatusCode::OK).await;
    app.finish().await;
}

both!(api_tokens_are_scoped_and_revocable);
async fn api_tokens_are_scoped_and_revocable(app: TestApp) {
    let admin = app.admin_token().await;
    let (_, agent) = app.create_user(&admin, "agent1", "agent").await;
    let expires = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let resp = app
        .post("/api/v1/api-tokens", &agent)
        .json(&json!({ "name": "reporting", "scopes": ["incidents:read"], "expires_at": expires }))
        .send()
        .await
        .unwrap();
    let created = expect_json(resp, StatusCode::CREATED).await;
    let read_token = s(&created, "token").to_owned();
    assert!(read_token.starts_with("keel_"), "{created}");
    assert!(read_token.starts_with(s(&created, "prefix")), "{created}");
    assert_eq!(created["name"], "reporting");
    assert_eq!(created["scopes"], json!(["incidents:read"]));
    assert!(created["expires_at"].is_string());
    assert!(created["revoked_at"].is_null());
    let read_id = s(&created, "id").to_owned();

    let list = app.get_json("/api/v1/api-tokens", &agent).await;
    assert_eq!(list["next"], Value::Null);
    let listed = items(&list)
        .iter()
        .find(|t| t["id"] == read_id.as_str())
        .expect("the token is listed");
    assert!(
        listed.get("token").is_none(),
        "the secret is shown only once: {listed}"
    );
    assert_eq!(listed["prefix"], created["prefix"]);

    // Reading works; writing does not.
    expect_json(
        app.get("/api/v1/incidents", &read_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let resp = app
        .try_create_incident(
            &read_token,
            &json!({ "title": "From a script", "impact": 3, "urgency": 3 }),
        )
        .await;
    assert_problem(resp, 403, "auth.insufficient_scope").await;

    // A write token can raise an incident.
    let resp = app
        .post("/api/v1/api-tokens", &agent)
        .json(&json!({ "name": "monitoring", "scopes": ["incidents:read", "incidents:write"] }))
        .send()
        .await
        .unwrap();
    let write = expect_json(resp, StatusCode::CREATED).await;
    let write_token = s(&write, "token").to_owned();
    let inc = app
        .create_incident(
            &write_token,
            json!({ "title": "Disk full on db1", "impact": 2, "urgency": 2 }),
        )
        .await;
    assert_eq!(inc["requester"]["username"], "agent1");
    // The read token does not reach the directory.
    let resp = app.get("/api/v1/users", &read_token).send().await.unwrap();
    assert_problem(resp, 403, "auth.insufficient_scope").await;

    // API tokens cannot manage API tokens.
    let resp = app
        .get("/api/v1/api-tokens", &write_token)
        .send()
        .await
        .unwrap();
    assert_problem_any(resp, &[403], &["auth."]).await;
    let resp = app
        .post("/api/v1/api-tokens", &write_token)
        .json(&json!({ "name": "escalation", "scopes": ["incidents:write"] }))
        .send()
        .await
        .unwrap();
    assert_problem_any(resp, &[403], &["auth."]).await;

    // Revocation.
    let resp = app
        .delete(&format!("/api/v1/api-tokens/{read_id}"), &agent)
        .send()
        .await
        .unwrap();
    expect_status(resp, StatusCode::NO_CONTENT).await;
    let resp = app
        .get("/api/v1/incidents", &read_token)
        .send()
        .await
        .unwrap();
    assert_problem_any(resp, &[401], &["auth."]).await;
    let list = app.get_json("/api/v1/api-tokens", &agent).await;
    if let Some(t) = items(&list).iter().find(|t| t["id"] == read_id.as_str()) {
        assert!(
            t["revoked_at"].is_string(),
            "a listed revoked token says so: {t}"
        );
    }
    // The other token still works.
    expect_json(
        app.get("/api/v1/incidents", &write_token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;

    // Unknown scopes are refused.
    let resp = app
        .post("/api/v1/api-tokens", &agent)
        .json(&json!({ "name": "bad", "scopes": ["everything:all"] }))
        .send()
        .await
        .unwrap();
    assert_problem_any(resp, &[400, 422], &["validation.", "auth."]).await;
    app.finish().await;
}

both!(someone_elses_api_token_cannot_be_revoked);
async fn someone_elses_api_token_cannot_be_revoked(app: TestApp) {
    let admin = app.admin_token().await;
    let (_, a) = app.create_user(&admin, "agent1", "agent").await;
    let (_, b) = app.create_user(&admin, "agent2", "agent").await;
    let resp = app
        .post("/api/v1/api-tokens", &a)
        .json(&json!({ "name": "mine", "scopes": ["incidents:read"] }))
        .send()
        .await
        .unwrap();
    let created = expect_json(resp, StatusCode::CREATED).await;
    let resp = app
        .delete(&format!("/api/v1/api-tokens/{}", s(&created, "id")), &b)
        .send()
        .await
        .unwrap();
    assert_problem_any(resp, &[403, 404], &["not_found", "auth."]).await;
    let list = app.get_json("/api/v1/api-tokens", &b).await;
    assert!(
        items(&list).is_empty(),
        "agent2 sees only their own tokens: {list}"
    );
    expect_json(
        app.get("/api/v1/incidents", s(&created, "token"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    app.finish().await;
}

both!(a_deactivated_user_is_locked_out);
async fn a_deactivated_user_is_locked_out(app: TestApp) {
    let admin = app.admin_token().await;
    let (id, token) = app.create_user(&admin, "leaver", "agent").await;
    let resp = app
        .post("/api/v1/api-tokens", &token)
        .json(&json!({ "name": "cron", "scopes": ["incidents:read"] }))
        .send()
        .await
        .unwrap();
    let api_token = s(&expect_json(resp, StatusCode::CREATED).await, "token").to_owned();
    let refresh_token = app
        .login("leaver", &TestApp::password_for("leaver"))
        .await
        .refresh_token;

    let resp = app
        .patch(&format!("/api/v1/users/{id}"), &admin)
        .json(&json!({ "active": false }))
        .send()
        .await
        .unwrap();
    let user = expect_json(resp, StatusCode::OK).await;
    assert_eq!(user["active"], false);

    assert_problem_any(me(&app, &token).await, &[401], &["auth."]).await;
    assert_problem_any(
        app.get("/api/v1/incidents", &api_token)
            .send()
            .await
            .unwrap(),
        &[401],
        &["auth."],
    )
    .await;
    assert_problem_any(refresh(&app, &refresh_token).await, &[401], &["auth."]).await;
    assert_problem_any(
        app.try_login("leaver", &TestApp::password_for("leaver"))
            .await,
        &[401],
        &["auth."],
    )
    .await;

    // Reactivated, they can log in again.
    let resp = app
        .patch(&format!("/api/v1/users/{id}"), &admin)
        .json(&json!({ "active": true }))
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    app.login("leaver", &TestApp::password_for("leaver")).await;
    app.finish().await;
}

both!(me_describes_the_caller);
async fn me_describes_the_caller(app: TestApp) {
    let admin = app.admin_token().await;
    let group = app.create_group(&admin, "network").await;
    let (id, token) = app.create_user(&admin, "agent1", "agent").await;
    app.add_member(&admin, &group, &id).await;
    let me_body = expect_json(me(&app, &token).await, StatusCode::OK).await;
    assert_eq!(me_body["id"], id.as_str());
    assert_eq!(me_body["username"], "agent1");
    assert_eq!(me_body["email"], "agent1@example.com");
    assert_eq!(me_body["display_name"], "User agent1");
    assert_eq!(me_body["roles"], json!(["agent"]));
    assert_eq!(
        me_body["groups"],
        json!([{ "id": group, "name": "network" }])
    );
    assert_eq!(me_body["active"], true);
    assert!(me_body["created_at"].is_string() && me_body["updated_at"].is_string());
    assert!(
        me_body.get("password").is_none() && me_body.get("password_hash").is_none(),
        "{me_body}"
    );
    let admin_me = expect_json(me(&app, &admin).await, StatusCode::OK).await;
    assert!(
        admin_me["roles"]
            .as_array()
            .unwrap()
            .contains(&json!("admin")),
        "{admin_me}"
    );
    app.finish().await;
}

both!(changing_the_password_replaces_the_old_one);
async fn changing_the_password_replaces_the_old_one(app: TestApp) {
    let admin = app.admin_token().await;
    let (_, token) = app.create_user(&admin, "agent1", "agent").await;
    let old = TestApp::password_for("agent1");
    let resp = app
        .post("/api/v1/me/password", &token)
        .json(&json!({ "current_password": "not-my-password", "new_password": "a-brand-new-password" }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert!(
        (400..500).contains(&status),
        "wrong current password: {status}"
    );
    assert_problem_any(
        resp,
        &[400, 401, 403, 422],
        &["auth.", "user.", "validation."],
    )
    .await;

    let resp = app
        .post("/api/v1/me/password", &token)
        .json(&json!({ "current_password": old, "new_password": "short" }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "user.weak_password").await;

    let resp = app
        .post("/api/v1/me/password", &token)
        .json(&json!({ "current_password": old, "new_password": "a-brand-new-password" }))
        .send()
        .await
        .unwrap();
    expect_status(resp, StatusCode::NO_CONTENT).await;
    assert_problem(
        app.try_login("agent1", &old).await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    app.login("agent1", "a-brand-new-password").await;
    app.finish().await;
}

both!(an_anonymous_request_is_refused_before_its_body_is_read);
async fn an_anonymous_request_is_refused_before_its_body_is_read(app: TestApp) {
    // Whatever is wrong with the body, an unauthenticated caller learns only
    // that they must authenticate.
    let cases: [(&str, &str); 3] = [
        ("application/json", "{not json"),
        ("text/plain", "garbage"),
        ("application/json", r#"{"title": 5, "impact": "high"}"#),
    ];
    for (content_type, body) in cases {
        let resp = app
            .request(reqwest::Method::POST, "/api/v1/incidents")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 401, "auth.required").await;
    }
    app.finish().await;
}

both!(
    an_unknown_user_costs_as_much_as_a_wrong_password,
    |cfg: &mut keel_server::Config| {
        cfg.auth.login_max_failures_per_account = 10_000;
        cfg.auth.login_max_failures_per_address = 10_000;
    }
);
async fn an_unknown_user_costs_as_much_as_a_wrong_password(app: TestApp) {
    let admin = app.admin_token().await;
    app.create_user(&admin, "timed", "requester").await;
    // Interleaved, so that machine noise hits both alike; medians resist outliers.
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..24 {
        for (name, out) in [("timed", &mut known), ("nobody-by-that-name", &mut unknown)] {
            let start = std::time::Instant::now();
            let resp = app.try_login(name, &format!("wrong password {i}")).await;
            out.push(start.elapsed().as_secs_f64());
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (k, u) = (median(&mut known), median(&mut unknown));
    let ratio = k.max(u) / k.min(u);
    println!(
        "login medians: known {:.1} ms, unknown {:.1} ms, ratio {ratio:.2}",
        k * 1e3,
        u * 1e3
    );
    // Generous: an unmitigated leak is a 10x-100x gap (a hash versus none).
    assert!(ratio < 2.0, "known {k:.4}s vs unknown {u:.4}s");
    app.finish().await;
}

const KNOWN_KEY: &str = "a-test-signing-key-that-is-long-enough-0123456789";

both!(
    tokens_signed_with_the_real_key_still_need_every_claim_right,
    |cfg: &mut keel_server::Config| {
        cfg.auth.jwt_secret = Some(keel_server::config::Secret::new(super::KNOWN_KEY));
    }
);
async fn tokens_signed_with_the_real_key_still_need_every_claim_right(app: TestApp) {
    let real = app.admin_token().await;
    let payload = real.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let t = chrono::Utc::now().timestamp();
    let with = |changes: Value| {
        let mut c = claims.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let sign = |alg: Algorithm, c: &Value| {
        jsonwebtoken::encode(
            &Header::new(alg),
            c,
            &EncodingKey::from_secret(KNOWN_KEY.as_bytes()),
        )
        .unwrap()
    };
    // The control: re-signing the real claims with the real key works, so
    // every refusal below is the claim check, not the signature.
    expect_json(
        me(&app, &sign(Algorithm::HS256, &claims)).await,
        StatusCode::OK,
    )
    .await;

    let hs256 = |c: Value| sign(Algorithm::HS256, &with(c));
    // An RS256 header over an HMAC signature: the algorithm is pinned.
    let rs_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let hs_part = sign(Algorithm::HS256, &claims);
    let rs_confusion = format!("{rs_header}.{body}.{}", hs_part.split('.').nth(2).unwrap());
    let cases = vec![
        ("wrong audience", hs256(json!({"aud": "someone-else"}))),
        ("wrong issuer", hs256(json!({"iss": "not-keel"}))),
        (
            "not yet valid",
            hs256(json!({"nbf": t + 3600, "iat": t + 3600})),
        ),
        ("no expiry", hs256(json!({"exp": null}))),
        ("no audience", hs256(json!({"aud": null}))),
        (
            "unknown session",
            hs256(json!({"sid": uuid::Uuid::new_v4()})),
        ),
        (
            "someone who does not exist",
            hs256(json!({"sub": uuid::Uuid::new_v4()})),
        ),
        ("HS512 instead of HS256", sign(Algorithm::HS512, &claims)),
        ("RS256 header", rs_confusion),
    ];
    for (what, token) in cases {
        let resp = me(&app, &token).await;
        let status = resp.status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "auth.invalid_token", "{what}: {body}");
    }
    app.finish().await;
}

both!(
    another_node_sees_a_revocation_within_the_actor_cache_time,
    |cfg| {
        cfg.auth.actor_cache_secs = 1;
    }
);
async fn another_node_sees_a_revocation_within_the_actor_cache_time(app: TestApp) {
    use base64::Engine;
    let t = app.login("admin", ADMIN_PASSWORD).await;
    expect_json(me(&app, &t.access_token).await, StatusCode::OK).await;
    let payload = t.access_token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let sid: uuid::Uuid = claims["sid"].as_str().unwrap().parse().unwrap();
    // Another node (here: a second connection) ends the session.
    app.store()
        .await
        .revoke_session(keel_core::SessionId(sid))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    assert_problem(me(&app, &t.access_token).await, 401, "auth.invalid_token").await;
    app.finish().await;
}
