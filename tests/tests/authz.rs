//! The authorization matrix: every operation of the OpenAPI document × every
//! kind of caller, against records the owner holds, with the outcome each
//! must get. An operation missing from the matrix fails the test, so a new
//! endpoint is covered the day it lands.

use std::collections::BTreeSet;

use keel_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// The requester who raised the incident under test.
    Owner,
    /// Another requester.
    Other,
    Agent,
    Admin,
}

const EVERYONE: [Who; 5] = [
    Who::Anonymous,
    Who::Owner,
    Who::Other,
    Who::Agent,
    Who::Admin,
];

/// What a caller must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    Unauthenticated,
    Forbidden,
    /// Someone else's record: not even its existence is revealed.
    NotFound,
    /// Anyone may call it (login, health): not an authorization question.
    Public,
}

use Expect::*;

/// The matrix: for each operation, the outcome per caller in the order of
/// [`EVERYONE`] (anonymous, owner, other requester, agent, admin).
fn matrix(op: &str) -> Option<[Expect; 5]> {
    let signed_in = [Unauthenticated, Ok, Ok, Ok, Ok];
    let staff = [Unauthenticated, Forbidden, Forbidden, Ok, Ok];
    let admin = [Unauthenticated, Forbidden, Forbidden, Forbidden, Ok];
    let record = [Unauthenticated, Ok, NotFound, Ok, Ok];
    let agents_on_record = [Unauthenticated, Forbidden, Forbidden, Ok, Ok];
    Some(match op {
        "POST /api/v1/auth/login" | "POST /api/v1/auth/refresh" | "POST /api/v1/auth/logout" => {
            [Public; 5]
        }
        "GET /healthz" | "GET /readyz" | "GET /metrics" => [Public; 5],
        "GET /api/v1/me" | "POST /api/v1/me/password" => signed_in,
        "GET /api/v1/me/notifications" | "PUT /api/v1/me/notifications/{event}" => signed_in,
        "POST /api/v1/api-tokens" | "GET /api/v1/api-tokens" => signed_in,
        // The owner's token: nobody else can even see it.
        "DELETE /api/v1/api-tokens/{id}" => [Unauthenticated, Ok, NotFound, NotFound, NotFound],
        "POST /api/v1/users" | "PATCH /api/v1/users/{id}" => admin,
        "GET /api/v1/users" => staff,
        // The owner's own account: they may read themselves.
        "GET /api/v1/users/{id}" => [Unauthenticated, Ok, Forbidden, Ok, Ok],
        "GET /api/v1/groups" | "GET /api/v1/groups/{id}" | "GET /api/v1/groups/{id}/members" => {
            staff
        }
        "POST /api/v1/groups" | "PATCH /api/v1/groups/{id}" | "DELETE /api/v1/groups/{id}" => admin,
        "PUT /api/v1/groups/{id}/members/{user_id}"
        | "DELETE /api/v1/groups/{id}/members/{user_id}" => admin,
        "POST /api/v1/incidents" | "GET /api/v1/incidents" => signed_in,
        "GET /api/v1/incidents/{id}" | "PATCH /api/v1/incidents/{id}" => record,
        "POST /api/v1/incidents/{id}/transitions" => record,
        "GET /api/v1/incidents/{id}/comments" | "POST /api/v1/incidents/{id}/comments" => record,
        "GET /api/v1/incidents/{id}/attachments" | "POST /api/v1/incidents/{id}/attachments" => {
            record
        }
        "GET /api/v1/incidents/{id}/attachments/{attachment_id}" => record,
        "GET /api/v1/incidents/{id}/links" | "GET /api/v1/incidents/{id}/history" => record,
        "GET /api/v1/incidents/{id}/watchers" | "POST /api/v1/incidents/{id}/watchers" => record,
        // Linking is agents' work; requesters are refused before any lookup.
        "POST /api/v1/incidents/{id}/links" | "DELETE /api/v1/incidents/{id}/links/{link_id}" => {
            agents_on_record
        }
        // Agents remove anyone; the owner may remove only themselves.
        "DELETE /api/v1/incidents/{id}/watchers/{user_id}" => {
            [Unauthenticated, Forbidden, NotFound, Ok, Ok]
        }
        "POST /api/v1/inbound/email" => admin,
        "GET /api/v1/sla/calendars" | "GET /api/v1/sla/calendars/{id}" => staff,
        "GET /api/v1/sla/policies"
        | "GET /api/v1/sla/policies/{id}"
        | "GET /api/v1/reports/sla" => staff,
        "POST /api/v1/sla/calendars"
        | "PATCH /api/v1/sla/calendars/{id}"
        | "DELETE /api/v1/sla/calendars/{id}" => admin,
        "POST /api/v1/sla/calendars/{id}/holidays" => admin,
        "POST /api/v1/sla/policies"
        | "PATCH /api/v1/sla/policies/{id}"
        | "DELETE /api/v1/sla/policies/{id}" => admin,
        "POST /api/v1/webhooks" | "GET /api/v1/webhooks" | "GET /api/v1/webhooks/{id}" => admin,
        "PATCH /api/v1/webhooks/{id}" | "DELETE /api/v1/webhooks/{id}" => admin,
        "GET /api/v1/webhooks/{id}/deliveries"
        | "POST /api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver" => admin,
        _ => return None,
    })
}

fn operations() -> Vec<String> {
    let doc: Value = serde_json::from_str(&keel_server::openapi_json()).unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                ops.push(format!("{} {path}", m.to_uppercase()));
            }
        }
    }
    ops
}

#[test]
fn every_operation_has_a_row_in_the_authorization_matrix() {
    let missing: Vec<String> = operations()
        .into_iter()
        .filter(|op| matrix(op).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "add these operations to the authorization matrix: {missing:#?}"
    );
}

struct Fixture {
    desk: Desk,
    incident: String,
    attachment: String,
    calendar: String,
    policy: String,
    webhook: String,
}

impl Fixture {
    fn token(&self, who: Who) -> Option<&str> {
        match who {
            Who::Anonymous => None,
            Who::Owner => Some(&self.desk.requester.token),
            Who::Other => Some(&self.desk.requester2.token),
            Who::Agent => Some(&self.desk.agent.token),
            Who::Admin => Some(&self.desk.admin),
        }
    }
}

async fn json_ok(resp: reqwest::Response) -> Value {
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "fixture set-up failed: {status} {v}");
    v
}

/// A request for `op` as `who`. Destructive operations get a fresh target
/// (made by the admin) for every call, so each caller tries the same thing.
async fn request(
    app: &TestApp,
    fx: &Fixture,
    op: &str,
    who: Who,
    n: usize,
) -> reqwest::RequestBuilder {
    let admin = &fx.desk.admin;
    let (method, path) = op.split_once(' ').unwrap();
    let inc = &fx.incident;
    let unique = format!("{}-{n}", uuid::Uuid::new_v4().simple());
    let mut path = path
        .replace("{id}", inc)
        .replace("{attachment_id}", &fx.attachment)
        .replace("{event}", "incident.commented");
    let mut body: Option<Value> = None;
    let mut if_match = None;
    let mut raw: Option<(String, String)> = None;
    let mut multipart = false;
    match op {
        "POST /api/v1/me/password" => {
            let (user, pw) = match who {
                Who::Admin => ("admin".to_owned(), ADMIN_PASSWORD.to_owned()),
                Who::Agent => (fx.desk.agent.username.clone(), String::new()),
                Who::Owner => (fx.desk.requester.username.clone(), String::new()),
                _ => (fx.desk.requester2.username.clone(), String::new()),
            };
            let pw = if pw.is_empty() {
                TestApp::password_for(&user)
            } else {
                pw
            };
            body = Some(json!({"current_password": pw, "new_password": pw}));
        }
        "PUT /api/v1/me/notifications/{event}" => body = Some(json!({"enabled": true})),
        "POST /api/v1/api-tokens" => {
            body = Some(json!({"name": "t", "scopes": ["incidents:read"]}))
        }
        "DELETE /api/v1/api-tokens/{id}" => {
            let t = json_ok(
                app.post("/api/v1/api-tokens", &fx.desk.requester.token)
                    .json(&json!({"name": "x", "scopes": ["incidents:read"]}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            path = format!("/api/v1/api-tokens/{}", s(&t, "id"));
        }
        "POST /api/v1/users" => {
            body = Some(
                json!({"username": format!("u{}", &unique[..12]), "email": format!("{unique}@example.com"), "password": "long enough password", "roles": ["requester"]}),
            )
        }
        "GET /api/v1/users/{id}" => path = format!("/api/v1/users/{}", fx.desk.requester.id),
        "PATCH /api/v1/users/{id}" => {
            let u = json_ok(app.post("/api/v1/users", admin).json(&json!({"username": format!("p{}", &unique[..12]), "email": format!("p{unique}@example.com"), "password": "long enough password", "roles": ["requester"]})).send().await.unwrap()).await;
            path = format!("/api/v1/users/{}", s(&u, "id"));
            body = Some(json!({"display_name": "Renamed"}));
        }
        "GET /api/v1/groups/{id}" | "GET /api/v1/groups/{id}/members" => {
            path = path.replace(inc.as_str(), &fx.desk.group)
        }
        "POST /api/v1/groups" => body = Some(json!({"name": format!("g-{unique}")})),
        "PATCH /api/v1/groups/{id}"
        | "DELETE /api/v1/groups/{id}"
        | "PUT /api/v1/groups/{id}/members/{user_id}"
        | "DELETE /api/v1/groups/{id}/members/{user_id}" => {
            let g = json_ok(
                app.post("/api/v1/groups", admin)
                    .json(&json!({"name": format!("t-{unique}")}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            if op.starts_with("DELETE /api/v1/groups/{id}/members") {
                app.add_member(admin, s(&g, "id"), &fx.desk.agent2.id).await;
            }
            path = path
                .replace(inc.as_str(), s(&g, "id"))
                .replace("{user_id}", &fx.desk.agent2.id);
            if op.starts_with("PATCH") {
                body = Some(json!({"description": "changed"}));
            }
        }
        "POST /api/v1/incidents" => {
            body = Some(json!({"title": "authz", "impact": 3, "urgency": 3}))
        }
        "PATCH /api/v1/incidents/{id}" => {
            let v = app.incident(admin, inc).await;
            if_match = Some(v["version"].as_i64().unwrap());
            body = Some(json!({"title": format!("Retitled {n}")}));
        }
        "POST /api/v1/incidents/{id}/transitions" => {
            // A fresh incident of the owner's, which the owner may cancel while new.
            let fresh = app
                .simple_incident(&fx.desk.requester.token, "to cancel")
                .await;
            path = path.replace(inc.as_str(), s(&fresh, "id"));
            body = Some(json!({"action": "cancel"}));
        }
        "POST /api/v1/incidents/{id}/comments" => {
            body = Some(json!({"body": "hello", "visibility": "public"}))
        }
        "POST /api/v1/incidents/{id}/attachments" => multipart = true,
        "POST /api/v1/incidents/{id}/links" => {
            let other = app
                .simple_incident(&fx.desk.requester.token, "link target")
                .await;
            body = Some(json!({"kind": "duplicate_of", "target": s(&other, "id")}));
        }
        "DELETE /api/v1/incidents/{id}/links/{link_id}" => {
            let other = app
                .simple_incident(&fx.desk.requester.token, "linked")
                .await;
            let l = json_ok(
                app.post(&format!("/api/v1/incidents/{inc}/links"), admin)
                    .json(&json!({"kind": "child", "target": s(&other, "id")}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            path = path.replace("{link_id}", s(&l, "id"));
        }
        "POST /api/v1/incidents/{id}/watchers" => {
            let me = match who {
                Who::Owner => fx.desk.requester.username.clone(),
                Who::Other => fx.desk.requester2.username.clone(),
                Who::Agent => fx.desk.agent.username.clone(),
                _ => "admin".into(),
            };
            body = Some(json!({"user": me}));
        }
        "DELETE /api/v1/incidents/{id}/watchers/{user_id}" => {
            json_ok(
                app.post(&format!("/api/v1/incidents/{inc}/watchers"), admin)
                    .json(&json!({"user": fx.desk.agent2.username}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            path = path.replace("{user_id}", &fx.desk.agent2.id);
        }
        "POST /api/v1/inbound/email" => {
            raw = Some((
                "message/rfc822".into(),
                "From: req1@example.com\r\nSubject: authz\r\n\r\nhello\r\n".into(),
            ))
        }
        "GET /api/v1/sla/calendars/{id}"
        | "PATCH /api/v1/sla/calendars/{id}"
        | "POST /api/v1/sla/calendars/{id}/holidays" => {
            path = path.replace(inc.as_str(), &fx.calendar);
            if op.starts_with("PATCH") {
                body = Some(json!({"tz": "UTC"}));
            }
            if op.ends_with("holidays") {
                raw = Some(("text/calendar".into(), "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20261225\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n".into()));
            }
        }
        "POST /api/v1/sla/calendars" => {
            body = Some(json!({"name": format!("c-{unique}"), "tz": "UTC", "week": {}}))
        }
        "DELETE /api/v1/sla/calendars/{id}" => {
            let c = json_ok(
                app.post("/api/v1/sla/calendars", admin)
                    .json(&json!({"name": format!("d-{unique}"), "tz": "UTC", "week": {}}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            path = path.replace(inc.as_str(), s(&c, "id"));
        }
        "GET /api/v1/sla/policies/{id}" | "PATCH /api/v1/sla/policies/{id}" => {
            path = path.replace(inc.as_str(), &fx.policy);
            if op.starts_with("PATCH") {
                body = Some(json!({"position": 5}));
            }
        }
        "POST /api/v1/sla/policies" => {
            body = Some(
                json!({"name": format!("p-{unique}"), "definition": {"targets": [{"kind": "resolution", "secs": 60}]}}),
            )
        }
        "DELETE /api/v1/sla/policies/{id}" => {
            let p = json_ok(app.post("/api/v1/sla/policies", admin).json(&json!({"name": format!("d-{unique}"), "definition": {"targets": [{"kind": "resolution", "secs": 60}]}})).send().await.unwrap()).await;
            path = path.replace(inc.as_str(), s(&p, "id"));
        }
        "GET /api/v1/reports/sla" => {
            path = with_query(
                &path,
                &[
                    ("from", "2020-01-01T00:00:00Z"),
                    ("to", "2100-01-01T00:00:00Z"),
                ],
            )
        }
        "POST /api/v1/webhooks" => {
            body = Some(json!({"url": "https://hooks.example.com/keel", "events": ["*"]}))
        }
        "GET /api/v1/webhooks/{id}"
        | "PATCH /api/v1/webhooks/{id}"
        | "GET /api/v1/webhooks/{id}/deliveries" => {
            path = path.replace(inc.as_str(), &fx.webhook);
            if op.starts_with("PATCH") {
                body = Some(json!({"active": true}));
            }
        }
        "DELETE /api/v1/webhooks/{id}" => {
            let w = json_ok(
                app.post("/api/v1/webhooks", admin)
                    .json(&json!({"url": "https://hooks.example.com/x", "events": ["*"]}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            path = path.replace(inc.as_str(), s(&w, "id"));
        }
        "POST /api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver" => {
            let log = app
                .get_json(
                    &format!("/api/v1/webhooks/{}/deliveries", fx.webhook),
                    admin,
                )
                .await;
            let d = items(&log)
                .first()
                .map(|d| s(d, "id").to_owned())
                .expect("a delivery to redeliver");
            path = path
                .replace(inc.as_str(), &fx.webhook)
                .replace("{delivery_id}", &d);
        }
        _ => {}
    }
    let mut req = app.request(method.parse::<Method>().unwrap(), &path);
    if let Some(t) = fx.token(who) {
        req = req.bearer_auth(t);
    }
    if let Some(v) = if_match {
        req = req.header("If-Match", format!("\"{v}\""));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some((ct, text)) = raw {
        req = req.header("content-type", ct).body(text);
    }
    if multipart {
        let part = reqwest::multipart::Part::bytes(b"authz".to_vec())
            .file_name("a.txt")
            .mime_str("text/plain")
            .unwrap();
        req = req.multipart(reqwest::multipart::Form::new().part("file", part));
    }
    req
}

both!(every_caller_gets_exactly_what_the_matrix_says);
async fn every_caller_gets_exactly_what_the_matrix_says(app: TestApp) {
    let desk = app.desk().await;
    let admin = desk.admin.clone();
    let inc = app
        .create_incident(
            &desk.requester.token,
            json!({"title": "Owned by req1", "impact": 3, "urgency": 3}),
        )
        .await;
    let incident = s(&inc, "id").to_owned();
    app.comment(&desk.requester.token, &incident, "A public word", "public")
        .await;
    let att = expect_json(
        app.upload(
            &desk.requester.token,
            &incident,
            "owned.txt",
            "text/plain",
            b"mine".to_vec(),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let cal = json_ok(
        app.post("/api/v1/sla/calendars", &admin)
            .json(&json!({"name": "Fixture", "tz": "UTC", "week": {}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let pol = json_ok(app.post("/api/v1/sla/policies", &admin).json(&json!({"name": "Fixture", "definition": {"targets": [{"kind": "resolution", "secs": 86400}]}})).send().await.unwrap()).await;
    let hook = json_ok(
        app.post("/api/v1/webhooks", &admin)
            .json(&json!({"url": "https://hooks.example.com/fixture", "events": ["*"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // One delivery in the log (its target is unreachable here; it stays pending).
    app.simple_incident(&desk.requester.token, "makes a delivery")
        .await;
    let fx = Fixture {
        desk,
        incident,
        attachment: s(&att, "id").to_owned(),
        calendar: s(&cal, "id").to_owned(),
        policy: s(&pol, "id").to_owned(),
        webhook: s(&hook, "id").to_owned(),
    };

    let mut cells = 0;
    let mut failures = Vec::new();
    for op in operations() {
        let row = matrix(&op).unwrap_or_else(|| panic!("{op} is not in the matrix"));
        for (i, who) in EVERYONE.into_iter().enumerate() {
            let expect = row[i];
            if expect == Public {
                continue;
            }
            let resp = request(&app, &fx, &op, who, cells)
                .await
                .send()
                .await
                .unwrap();
            cells += 1;
            let status = resp.status().as_u16();
            let ok = match expect {
                Ok => (200..300).contains(&status),
                Unauthenticated => status == 401,
                Forbidden => status == 403,
                NotFound => status == 404,
                Public => true,
            };
            if !ok {
                let body = resp.text().await.unwrap_or_default();
                failures.push(format!(
                    "{op} as {who:?}: expected {expect:?}, got {status} {}",
                    body.chars().take(160).collect::<String>()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("authorization matrix: {cells} cells checked");

    // Lists, counts and search never show a foreign record.
    let other = &fx.desk.requester2.token;
    for query in [
        vec![],
        vec![("q", "Owned")],
        vec![("state", "new")],
        vec![("requester", fx.desk.requester.id.as_str())],
    ] {
        let list = app.list_incidents(other, &query).await;
        let ids: BTreeSet<&str> = items(&list).iter().map(|i| s(i, "id")).collect();
        assert!(
            !ids.contains(fx.incident.as_str()),
            "{query:?} leaked the owner's incident"
        );
    }
    // Nested references to someone else's record are refused like the record itself.
    let resp = app
        .post(
            &format!("/api/v1/incidents/{}/attachments", fx.incident),
            other,
        )
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x"),
        ))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;
    let resp = app
        .get(
            &format!(
                "/api/v1/incidents/{}/attachments/{}",
                fx.incident, fx.attachment
            ),
            other,
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;
    app.finish().await;
}
