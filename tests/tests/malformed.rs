//! Bad input of every kind gets a 4xx problem document with a code, never a
//! 5xx.

use keel_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

enum Body {
    None,
    Json(serde_json::Value),
    Raw(&'static str, Vec<u8>),
}

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    body: Body,
    statuses: &'static [u16],
    codes: &'static [&'static str],
}

fn case(
    what: &'static str,
    method: Method,
    path: impl Into<String>,
    body: Body,
    statuses: &'static [u16],
    codes: &'static [&'static str],
) -> Case {
    Case {
        what,
        method,
        path: path.into(),
        body,
        statuses,
        codes,
    }
}

const INVALID: &[u16] = &[400, 422];
const VALIDATION: &[&str] = &["validation.", "incident."];

both!(malformed_requests_get_problem_documents);
async fn malformed_requests_get_problem_documents(app: TestApp) {
    let desk = app.desk().await;
    let agent = desk.agent.token.clone();
    let inc = app.simple_incident(&agent, "A target").await;
    let id = s(&inc, "id").to_owned();
    let long_title = "x".repeat(10_000);
    let huge = "y".repeat(1_100_000);
    let incidents = "/api/v1/incidents".to_owned();
    let json_ct = "application/json";
    use Method as M;

    let cases = vec![
        case(
            "broken JSON",
            M::POST,
            &incidents,
            Body::Raw(json_ct, "{\"title\": ".into()),
            &[400],
            &["validation.invalid_json"],
        ),
        case(
            "not an object",
            M::POST,
            &incidents,
            Body::Raw(json_ct, "[1, 2, 3]".into()),
            &[400],
            &["validation.invalid_json"],
        ),
        case(
            "empty body",
            M::POST,
            &incidents,
            Body::Raw(json_ct, Vec::new()),
            &[400],
            &["validation.invalid_json"],
        ),
        case(
            "trailing garbage",
            M::POST,
            &incidents,
            Body::Raw(
                json_ct,
                r#"{"title":"t","impact":1,"urgency":1} xyz"#.into(),
            ),
            &[400],
            &["validation.invalid_json"],
        ),
        case(
            "invalid UTF-8",
            M::POST,
            &incidents,
            Body::Raw(
                json_ct,
                b"{\"title\": \"\xff\xfe\", \"impact\": 1, \"urgency\": 1}".to_vec(),
            ),
            &[400],
            &["validation.invalid_json"],
        ),
        case(
            "title is a number",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": 5, "impact": 1, "urgency": 1 })),
            INVALID,
            VALIDATION,
        ),
        case(
            "impact is a word",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": "t", "impact": "high", "urgency": 1 })),
            INVALID,
            VALIDATION,
        ),
        case(
            "impact is a fraction",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": "t", "impact": 1.5, "urgency": 1 })),
            INVALID,
            VALIDATION,
        ),
        case(
            "impact is enormous",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": "t", "impact": 1e300, "urgency": 1 })),
            INVALID,
            VALIDATION,
        ),
        case(
            "impact overflows i64",
            M::POST,
            &incidents,
            Body::Raw(
                json_ct,
                r#"{"title":"t","impact":99999999999999999999999,"urgency":1}"#.into(),
            ),
            INVALID,
            VALIDATION,
        ),
        case(
            "missing impact",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": "t", "urgency": 1 })),
            INVALID,
            VALIDATION,
        ),
        case(
            "missing title",
            M::POST,
            &incidents,
            Body::Json(json!({ "impact": 1, "urgency": 1 })),
            INVALID,
            VALIDATION,
        ),
        case(
            "null title",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": null, "impact": 1, "urgency": 1 })),
            INVALID,
            VALIDATION,
        ),
        case(
            "blank title",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": "   ", "impact": 1, "urgency": 1 })),
            &[422],
            &["validation.invalid_text"],
        ),
        case(
            "10 000-character title",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": long_title, "impact": 1, "urgency": 1 })),
            &[422],
            &["validation.invalid_text"],
        ),
        case(
            "control character in title",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": "bell\u{7}", "impact": 1, "urgency": 1 })),
            &[422],
            &["validation.invalid_text"],
        ),
        case(
            "NUL in title",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": "nul\u{0}byte", "impact": 1, "urgency": 1 })),
            &[422],
            &["validation.invalid_text"],
        ),
        case(
            "newline in title",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": "two\nlines", "impact": 1, "urgency": 1 })),
            &[422],
            &["validation.invalid_text"],
        ),
        case(
            "major is a string",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": "t", "impact": 1, "urgency": 1, "major": "yes" })),
            INVALID,
            VALIDATION,
        ),
        case(
            "requester is not a user",
            M::POST,
            &incidents,
            Body::Json(
                json!({ "title": "t", "impact": 1, "urgency": 1, "requester": "' OR 1=1 --" }),
            ),
            &[400, 404, 422],
            &["validation.", "incident.", "not_found"],
        ),
        case(
            "body over the JSON limit",
            M::POST,
            &incidents,
            Body::Json(json!({ "title": "t", "impact": 1, "urgency": 1, "description": huge })),
            &[413],
            &["request.too_large"],
        ),
        case(
            "JSON as text/plain",
            M::POST,
            &incidents,
            Body::Raw(
                "text/plain",
                r#"{"title":"t","impact":1,"urgency":1}"#.into(),
            ),
            &[400, 415],
            &["validation.", "request."],
        ),
        case(
            "form-encoded body",
            M::POST,
            &incidents,
            Body::Raw(
                "application/x-www-form-urlencoded",
                "title=t&impact=1&urgency=1".into(),
            ),
            &[400, 415],
            &["validation.", "request."],
        ),
        case(
            "unknown action",
            M::POST,
            format!("/api/v1/incidents/{id}/transitions"),
            Body::Json(json!({ "action": "teleport" })),
            INVALID,
            &["validation."],
        ),
        case(
            "unknown hold reason",
            M::POST,
            format!("/api/v1/incidents/{id}/transitions"),
            Body::Json(json!({ "action": "hold", "hold_reason": "bored" })),
            INVALID,
            &["validation."],
        ),
        case(
            "unknown visibility",
            M::POST,
            format!("/api/v1/incidents/{id}/comments"),
            Body::Json(json!({ "body": "hi", "visibility": "secret" })),
            INVALID,
            &["validation."],
        ),
        case(
            "comment without body",
            M::POST,
            format!("/api/v1/incidents/{id}/comments"),
            Body::Json(json!({ "visibility": "public" })),
            INVALID,
            &["validation."],
        ),
        case(
            "unknown link kind",
            M::POST,
            format!("/api/v1/incidents/{id}/links"),
            Body::Json(json!({ "kind": "cousin", "target": id })),
            INVALID,
            &["validation."],
        ),
        case(
            "link to nothing",
            M::POST,
            format!("/api/v1/incidents/{id}/links"),
            Body::Json(json!({ "kind": "parent", "target": "INC9999999" })),
            &[404, 422],
            &["incident.", "not_found"],
        ),
        case(
            "PATCH with a wrong type",
            M::PATCH,
            format!("/api/v1/incidents/{id}"),
            Body::Json(json!({ "impact": "high" })),
            &[400, 412, 422, 428],
            &["validation.", "precondition."],
        ),
        case(
            "login with broken JSON",
            M::POST,
            "/api/v1/auth/login",
            Body::Raw(json_ct, "{\"username\":".into()),
            &[400],
            &["validation.invalid_json"],
        ),
        case(
            "login without password",
            M::POST,
            "/api/v1/auth/login",
            Body::Json(json!({ "username": "admin" })),
            &[400, 401, 422],
            &["validation.", "auth."],
        ),
        case(
            "refresh with a number",
            M::POST,
            "/api/v1/auth/refresh",
            Body::Json(json!({ "refresh_token": 42 })),
            &[400, 401, 422],
            &["validation.", "auth."],
        ),
        case(
            "not a UUID",
            M::GET,
            "/api/v1/incidents/not-a-uuid",
            Body::None,
            &[400, 404],
            &["not_found", "validation.", "query.", "request.", "route."],
        ),
        case(
            "SQL in an id",
            M::GET,
            format!("/api/v1/incidents/{}", encode("1' OR '1'='1")),
            Body::None,
            &[400, 404],
            &["not_found", "validation.", "query.", "request.", "route."],
        ),
        case(
            "SQL in a number",
            M::GET,
            format!("/api/v1/incidents/{}", encode("INC1; DROP TABLE incidents")),
            Body::None,
            &[400, 404],
            &["not_found", "validation.", "query.", "request.", "route."],
        ),
        case(
            "unknown number",
            M::GET,
            "/api/v1/incidents/INC9999999",
            Body::None,
            &[404],
            &["not_found"],
        ),
        case(
            "unknown UUID",
            M::GET,
            format!("/api/v1/incidents/{}", uuid::Uuid::new_v4()),
            Body::None,
            &[404],
            &["not_found"],
        ),
        case(
            "user id not a UUID",
            M::GET,
            format!("/api/v1/users/{}", encode("x' OR 'x'='x")),
            Body::None,
            &[400, 404],
            &["not_found", "validation.", "request.", "route."],
        ),
        case(
            "group id not a UUID",
            M::GET,
            "/api/v1/groups/nope",
            Body::None,
            &[400, 404],
            &["not_found", "validation.", "request.", "route."],
        ),
        case(
            "attachment id not a UUID",
            M::GET,
            format!("/api/v1/incidents/{id}/attachments/..%2F..%2Fetc%2Fpasswd"),
            Body::None,
            &[400, 404],
            &["not_found", "validation.", "request.", "route."],
        ),
        case(
            "unknown route",
            M::GET,
            "/api/v1/teapots",
            Body::None,
            &[404],
            &["not_found", "route."],
        ),
        case(
            "unknown route outside the API",
            M::GET,
            "/definitely/not/here",
            Body::None,
            &[404],
            &["not_found", "route."],
        ),
        case(
            "wrong method on a collection",
            M::DELETE,
            &incidents,
            Body::None,
            &[405],
            &[""],
        ),
        case(
            "wrong method on login",
            M::PUT,
            "/api/v1/auth/login",
            Body::Json(json!({})),
            &[405],
            &[""],
        ),
        case(
            "limit 0",
            M::GET,
            "/api/v1/incidents?limit=0",
            Body::None,
            &[400],
            &["query.invalid_limit"],
        ),
        case(
            "limit 201",
            M::GET,
            "/api/v1/incidents?limit=201",
            Body::None,
            &[400],
            &["query.invalid_limit"],
        ),
        case(
            "limit not a number",
            M::GET,
            "/api/v1/incidents?limit=ten",
            Body::None,
            &[400],
            &["query."],
        ),
        case(
            "negative limit",
            M::GET,
            "/api/v1/incidents?limit=-1",
            Body::None,
            &[400],
            &["query."],
        ),
        case(
            "unknown sort",
            M::GET,
            "/api/v1/incidents?sort=password_hash",
            Body::None,
            &[400],
            &["query.invalid_sort"],
        ),
        case(
            "SQL in sort",
            M::GET,
            format!(
                "/api/v1/incidents?sort={}",
                encode("created_at; DROP TABLE users")
            ),
            Body::None,
            &[400],
            &["query.invalid_sort"],
        ),
        case(
            "garbage cursor",
            M::GET,
            "/api/v1/incidents?cursor=not-a-cursor",
            Body::None,
            &[400],
            &["query.invalid_cursor"],
        ),
        case(
            "forged cursor",
            M::GET,
            format!(
                "/api/v1/incidents?cursor={}",
                encode("eyJpZCI6IjEnIE9SICcxJz0nMSJ9")
            ),
            Body::None,
            &[400],
            &["query.invalid_cursor"],
        ),
        case(
            "unknown state",
            M::GET,
            "/api/v1/incidents?state=exploded",
            Body::None,
            &[400],
            &["query."],
        ),
        case(
            "priority out of range",
            M::GET,
            "/api/v1/incidents?priority=9",
            Body::None,
            &[400],
            &["query."],
        ),
        case(
            "assignee not a UUID",
            M::GET,
            format!("/api/v1/incidents?assignee={}", encode("' OR 1=1 --")),
            Body::None,
            &[400],
            &["query."],
        ),
        case(
            "bad date",
            M::GET,
            "/api/v1/incidents?created_after=yesterday",
            Body::None,
            &[400],
            &["query."],
        ),
        case(
            "major not a boolean",
            M::GET,
            "/api/v1/incidents?major=perhaps",
            Body::None,
            &[400],
            &["query."],
        ),
    ];

    // Every case is tried; all failures are reported together.
    let mut failures = Vec::new();
    for c in cases {
        let mut req = app.authed(c.method.clone(), &c.path, &agent);
        req = match c.body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(ct, text) => req.header("content-type", ct).body(text),
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: request failed: {e}", c.what));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let short: String = text.chars().take(300).collect();
        if status >= 500 {
            failures.push(format!(
                "{} ({} {}): server error {status}: {short}",
                c.what, c.method, c.path
            ));
            continue;
        }
        if !c.statuses.contains(&status) {
            failures.push(format!(
                "{} ({} {}): expected one of {:?}, got {status}: {short}",
                c.what, c.method, c.path, c.statuses
            ));
            continue;
        }
        let problem = match std::panic::catch_unwind(|| problem_body(&headers, &text)) {
            Ok(p) => p,
            Err(_) => {
                failures.push(format!(
                    "{}: not a problem document: {:?} {short}",
                    c.what,
                    headers.get("content-type")
                ));
                continue;
            }
        };
        let code = problem["code"].as_str().unwrap_or_default();
        if code.is_empty() || !c.codes.iter().any(|p| code.starts_with(p)) {
            failures.push(format!(
                "{}: code {code:?} is not one of {:?}",
                c.what, c.codes
            ));
        }
        if problem["status"] != status {
            failures.push(format!(
                "{}: body status {} differs from {status}",
                c.what, problem["status"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} malformed-input case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The target survived everything.
    let after = app.incident(&agent, &id).await;
    assert_eq!(after["title"], "A target");
    assert_eq!(after["version"], 1);
    assert_eq!(items(&app.list_incidents(&agent, &[]).await).len(), 1);
    app.finish().await;
}

both!(a_requester_cannot_smuggle_fields_past_validation);
async fn a_requester_cannot_smuggle_fields_past_validation(app: TestApp) {
    let desk = app.desk().await;
    let r = &desk.requester.token;
    // Fields the server owns are not settable, whatever the body says.
    let resp = app
        .try_create_incident(
            r,
            &json!({ "title": "Innocent", "impact": 3, "urgency": 3, "state": "closed", "version": 99, "number": "INC0000042", "reassignment_count": 7 }),
        )
        .await;
    let status = resp.status().as_u16();
    if status == 201 {
        let inc = expect_json(resp, StatusCode::CREATED).await;
        assert_eq!(inc["state"], "new");
        assert_eq!(inc["version"], 1);
        assert_ne!(inc["number"], "INC0000042");
        assert_eq!(inc["reassignment_count"], 0);
    } else {
        assert_problem_any(resp, INVALID, &["validation."]).await;
    }
    app.finish().await;
}

both!(a_method_a_path_does_not_take_gets_405_naming_the_ones_it_does);
async fn a_method_a_path_does_not_take_gets_405_naming_the_ones_it_does(app: TestApp) {
    let token = app.admin_token().await;
    let id = "01936f1e-8c2a-7cc0-9a56-0f5b7e0c1d2e";
    let cases = [
        (Method::TRACE, "/api/v1/incidents".to_owned(), "GET, POST"),
        (Method::PUT, format!("/api/v1/incidents/{id}"), "GET, PATCH"),
        (
            Method::POST,
            format!("/api/v1/groups/{id}"),
            "GET, PATCH, DELETE",
        ),
        (
            Method::GET,
            format!("/api/v1/groups/{id}/members/{id}"),
            "PUT, DELETE",
        ),
        (Method::DELETE, "/api/v1/auth/login".to_owned(), "POST"),
        (Method::POST, "/healthz".to_owned(), "GET"),
        (Method::DELETE, "/api/v1/openapi.json".to_owned(), "GET"),
    ];
    for (method, path, allow) in cases {
        let resp = app
            .authed(method.clone(), &path, &token)
            .send()
            .await
            .unwrap();
        let header = resp
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(header, allow, "Allow for {method} {path}");
        assert_problem(resp, 405, "route.method_not_allowed").await;
    }
    app.finish().await;
}
