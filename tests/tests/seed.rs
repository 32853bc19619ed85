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
        sla: true,
        password_hash: keel_auth::password::hash(PASSWORD).unwrap(),
        progress: false,
    };
    let report = run(&store, &plan).await.unwrap();
    assert_eq!(report.incidents, 450);
    assert_eq!(report.comments, 900);
    assert_eq!(report.groups, 3);
    assert_eq!(report.first_number, 1);
    assert_eq!(report.sla_policies, 3);

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
    // The search index the seed leaves (merged on SQLite) takes new
    // writes: a comment's words are found at once.
    let open = all_pages(&app, &admin, &[("state", "new")]).await;
    let target = s(&open[0], "number").to_owned();
    app.comment(
        &admin,
        &target,
        "Quarantined the zeppelinfloppy driver.",
        "public",
    )
    .await;
    let found = all_pages(&app, &admin, &[("q", "zeppelinfloppy")]).await;
    let found: Vec<&str> = found.iter().map(|i| s(i, "number")).collect();
    assert_eq!(found, vec![target.as_str()]);
    let closed = all_pages(&app, &admin, &[("state", "closed")]).await;
    assert!(!closed.is_empty());
    assert!(closed.iter().all(|i| s(i, "state") == "closed"));

    // Every incident has the SLA of its priority, as the worker would
    // have left it: finished work's timers are stopped, a breach already
    // reached is recorded at the moment it was due, and nothing is left
    // for the worker to catch up on.
    let mut timers = 0;
    for i in &everything {
        let sla = i["sla"].as_array().unwrap();
        timers += sla.len() as u64;
        let kinds: Vec<&str> = sla.iter().map(|t| s(t, "kind")).collect();
        let expected = if i["priority"].as_i64().unwrap() <= 2 {
            vec!["first_response", "resolution", "next_update"]
        } else {
            vec!["first_response", "resolution"]
        };
        assert_eq!(kinds, expected, "{i}");
        for t in sla {
            let state = s(t, "state");
            match s(i, "state") {
                "closed" | "cancelled" | "resolved" if s(t, "kind") != "first_response" => {
                    assert!(["met", "breached"].contains(&state), "{i}");
                }
                "on_hold" if state != "breached" && s(t, "kind") != "first_response" => {
                    assert_eq!(state, "paused", "{i}");
                }
                _ => {}
            }
            assert_eq!(state == "breached", !t["breached_at"].is_null(), "{i}");
            if state == "breached" && t["due_at"].is_string() {
                assert_eq!(t["breached_at"], t["due_at"], "{i}");
            }
        }
    }
    assert_eq!(report.sla_timers, timers);
    let states: HashSet<&str> = everything
        .iter()
        .flat_map(|i| i["sla"].as_array().unwrap())
        .map(|t| s(t, "state"))
        .collect();
    for state in ["met", "breached", "in_progress", "paused"] {
        assert!(states.contains(state), "no {state} timer: {states:?}");
    }
    // Only a threshold crossed since the seed's last batch is due: a
    // handful at most, against the hundreds a replay from creation
    // would find.
    let due = store.sla_step(1_000).await.unwrap();
    assert!(due <= 3, "{due} timers were due a check");

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

both!(a_desk_seeded_without_sla_has_no_timers);
async fn a_desk_seeded_without_sla_has_no_timers(app: TestApp) {
    let store = app.store().await;
    let plan = SeedPlan {
        incidents: 40,
        users: 20,
        groups: 2,
        comments_per_incident: 0,
        seed: 3,
        sla: false,
        password_hash: keel_auth::password::hash(PASSWORD).unwrap(),
        progress: false,
    };
    let report = run(&store, &plan).await.unwrap();
    assert_eq!((report.sla_policies, report.sla_timers), (0, 0));
    let admin = app.admin_token().await;
    let everything = all_pages(&app, &admin, &[]).await;
    assert_eq!(everything.len(), 40);
    assert!(everything.iter().all(|i| i["sla"] == json!([])));
    let policies = app.get_json("/api/v1/sla/policies", &admin).await;
    assert_eq!(items(&policies).len(), 0, "{policies}");
    app.finish().await;
}
