//! `keel seed`: synthetic data loaded in bulk reads through the API exactly
//! like data the use cases wrote.

use std::collections::HashSet;

use keel_server::seed::{SeedPlan, run};
use keel_tests::*;
use serde_json::{Value, json};

const PASSWORD: &str = "seeded-password-1";

async fn all_pages(app: &TestApp, token: &str, query: &[(&str, &str)]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", "200"));
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let page = app.list_incidents(token, &q).await;
        out.extend(items(&page).iter().cloned());
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

both!(seeded_incidents_read_like_real_ones);
async fn seeded_incidents_read_like_real_ones(app: TestApp) {
    let store = app.store().await;
    let plan = SeedPlan {
        incidents: 450,
        users: 40,
        groups: 3,
        comments_per_incident: 2,
        seed: 7,
        password_hash: keel_auth::password::hash(PASSWORD).unwrap(),
        progress: false,
    };
    let report = run(&store, &plan).await.unwrap();
    assert_eq!(report.incidents, 450);
    assert_eq!(report.comments, 900);
    assert_eq!(report.groups, 3);
    assert_eq!(report.first_number, 1);

    let admin = app.admin_token().await;
    let everything = all_pages(&app, &admin, &[]).await;
    assert_eq!(everything.len(), 450);
    let numbers: HashSet<&str> = everything.iter().map(|i| s(i, "number")).collect();
    assert_eq!(numbers.len(), 450, "numbers are unique");
    // Timestamps at the precision Keel itself keeps: microseconds, so a
    // fraction has at most six digits. And none is in the future.
    let now = chrono::Utc::now();
    for i in &everything {
        for field in ["created_at", "updated_at"] {
            let t = s(i, field);
            let fraction = t
                .split_once('.')
                .map_or(0, |(_, f)| f.trim_end_matches('Z').len());
            assert!(fraction <= 6, "{field} {t}");
        }
        for field in [
            "created_at",
            "updated_at",
            "first_response_at",
            "resolved_at",
            "closed_at",
            "cancelled_at",
        ] {
            if let Some(t) = i[field].as_str() {
                let at: chrono::DateTime<chrono::Utc> = t.parse().unwrap();
                assert!(at <= now, "{} {field} {t} is after {now}", s(i, "number"));
            }
        }
    }
    let states: HashSet<&str> = everything.iter().map(|i| s(i, "state")).collect();
    assert!(
        states.contains("closed") && states.contains("new"),
        "{states:?}"
    );

    // A seeded incident has its history, comments and search row.
    let first = app.incident(&admin, "INC0000001").await;
    assert_eq!(s(&first, "number"), "INC0000001");
    let history = app
        .get_json("/api/v1/incidents/INC0000001/history", &admin)
        .await;
    assert_eq!(items(&history)[0]["action"], "created");
    let comments = app
        .get_json("/api/v1/incidents/INC0000001/comments", &admin)
        .await;
    assert_eq!(items(&comments).len(), 2);
    let printers = all_pages(&app, &admin, &[("q", "printer")]).await;
    assert!(!printers.is_empty());
    assert!(printers.len() < 450);
    for i in &printers {
        let text = format!(
            "{} {}",
            s(i, "title"),
            i["description"].as_str().unwrap_or("")
        )
        .to_lowercase();
        assert!(text.contains("printer") || text.contains("print"), "{text}");
    }
    let closed = all_pages(&app, &admin, &[("state", "closed")]).await;
    assert!(!closed.is_empty());
    assert!(closed.iter().all(|i| s(i, "state") == "closed"));

    // Seeded people log in; a requester sees only their own incidents.
    let users = app.get_json("/api/v1/users?limit=200", &admin).await;
    let requester = items(&users)
        .iter()
        .find(|u| u["roles"] == json!(["requester"]) && s(u, "username").starts_with("user"))
        .unwrap();
    let token = app
        .login(s(requester, "username"), PASSWORD)
        .await
        .access_token;
    let theirs = all_pages(&app, &token, &[]).await;
    assert!(
        theirs
            .iter()
            .all(|i| i["requester"]["id"] == requester["id"])
    );

    // The number sequence moved past the seeded incidents.
    let created = app.simple_incident(&admin, "After the seed").await;
    assert_eq!(s(&created, "number"), "INC0000451");
    app.finish().await;
}
