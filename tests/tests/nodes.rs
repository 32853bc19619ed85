//! Two Keel processes on one PostgreSQL database: background work (email,
//! webhooks, SLA breaches) happens exactly once. SQLite deployments run a
//! single node, so this runs on PostgreSQL only.

use std::collections::{HashMap, HashSet};

use keel_tests::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_database_send_each_email_webhook_and_breach_once() {
    let Some(db) = SharedDatabase::postgres().await else {
        return;
    };
    let sink = SmtpSink::start().await;
    let receiver = HookReceiver::start(0).await;
    // The policy and the subscription are made on one node and used at once
    // on the other, so this test turns the configuration cache off (its
    // cross-node delay has a test of its own in `webhooks`).
    let workers = format!(
        "database_config_cache_secs = 0\n[smtp]\nurl = \"{}\"\nfrom = \"Keel <desk@keel.test>\"\npoll_interval_secs = 1\nretry_base_secs = 1\n\
         [webhooks]\nallow_internal_targets = true\npoll_interval_secs = 1\nretry_base_secs = 1\n\
         [sla]\nscan_interval_secs = 1\n",
        sink.url()
    );
    // One after the other: the first migrates the empty database.
    let node_a = KeelProcess::start(&db.url, &workers).await;
    let node_b = KeelProcess::start(&db.url, &workers).await;
    let a = TestApp::attach(Db::Postgres, node_a.port, &db.url);
    let b = TestApp::attach(Db::Postgres, node_b.port, &db.url);

    let admin = a.admin_token().await;
    let requester = a.person(&admin, "req1", "requester").await;
    expect_json(
        b.post("/api/v1/sla/policies", &admin)
            .json(&json!({"name": "Fast", "definition": {"targets": [{"kind": "first_response", "secs": 1}], "warn_percents": [50]}}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    expect_json(
        a.post("/api/v1/webhooks", &admin)
            .json(&json!({"url": receiver.url(), "events": ["*"]}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;

    // Incidents raised through both nodes.
    const N: usize = 8;
    let mut numbers = Vec::new();
    for i in 0..N {
        let node = if i % 2 == 0 { &a } else { &b };
        let inc = node
            .simple_incident(&requester.token, &format!("Shared incident {i}"))
            .await;
        numbers.push(s(&inc, "number").to_owned());
    }

    // Each incident: one acknowledgement email; webhooks for created, the SLA warning and the breach.
    sink.wait_for("every acknowledgement", |m| m.len() >= N)
        .await;
    receiver
        .wait_for("every webhook", |r| r.len() >= 3 * N)
        .await;
    // Two more passes of every worker on both nodes: nothing may be repeated.
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;

    let mails = sink.messages();
    assert_eq!(mails.len(), N, "each acknowledgement once");
    let subjects: HashSet<String> = mails.iter().map(|m| m.subject().to_owned()).collect();
    assert_eq!(subjects.len(), N);

    let hooks = receiver.received();
    let mut per_event: HashMap<(String, String), usize> = HashMap::new();
    let mut delivery_ids = HashSet::new();
    for h in &hooks {
        let body = h.json();
        *per_event
            .entry((
                body["type"].as_str().unwrap().to_owned(),
                body["data"]["number"].as_str().unwrap().to_owned(),
            ))
            .or_default() += 1;
        assert!(
            delivery_ids.insert(body["id"].as_str().unwrap().to_owned()),
            "a delivery was posted twice"
        );
    }
    for n in &numbers {
        for event in ["incident.created", "sla.warning", "sla.breached"] {
            assert_eq!(
                per_event.get(&(event.to_owned(), n.clone())),
                Some(&1),
                "{event} for {n}: {per_event:?}"
            );
        }
    }
    assert_eq!(hooks.len(), 3 * N);

    for n in &numbers {
        let history = a
            .get_json(&format!("/api/v1/incidents/{n}/history"), &admin)
            .await;
        let count = |action: &str| {
            items(&history)
                .iter()
                .filter(|h| h["action"] == action)
                .count()
        };
        assert_eq!(count("sla_breached"), 1, "{n}");
        assert_eq!(count("sla_warning"), 1, "{n}");
    }
    drop((node_a, node_b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_sees_a_webhook_change_within_the_config_cache_time() {
    let Some(db) = SharedDatabase::postgres().await else {
        return;
    };
    let receiver = HookReceiver::start(0).await;
    let config = "database_config_cache_secs = 1\n\
                  [webhooks]\nallow_internal_targets = true\npoll_interval_secs = 1\nretry_base_secs = 1\n";
    let node_a = KeelProcess::start(&db.url, config).await;
    let node_b = KeelProcess::start(&db.url, config).await;
    let a = TestApp::attach(Db::Postgres, node_a.port, &db.url);
    let b = TestApp::attach(Db::Postgres, node_b.port, &db.url);
    let admin = a.admin_token().await;
    let requester = a.person(&admin, "req1", "requester").await;
    // Node b reads the (empty) subscriptions and keeps them.
    b.simple_incident(&requester.token, "Before anyone subscribed")
        .await;

    let hook = expect_json(
        a.post("/api/v1/webhooks", &admin)
            .json(&json!({"url": receiver.url(), "events": ["incident.created"]}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    // The node that made the change applies it at once.
    let on_a = a.simple_incident(&requester.token, "Raised on a").await;
    // The other node within its cache time.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let on_b = b.simple_incident(&requester.token, "Raised on b").await;
    let got = receiver.wait_for("both incidents", |r| r.len() >= 2).await;
    let numbers: HashSet<String> = got
        .iter()
        .map(|r| r.json()["data"]["number"].as_str().unwrap().to_owned())
        .collect();
    assert!(numbers.contains(s(&on_a, "number")), "{numbers:?}");
    assert!(numbers.contains(s(&on_b, "number")), "{numbers:?}");

    // A subscription deleted on a, while b may still hold it: b's writes go on
    // and deliver nothing to it.
    let gone = a
        .delete(&format!("/api/v1/webhooks/{}", s(&hook, "id")), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    let before = receiver.received().len();
    for i in 0..3 {
        b.simple_incident(&requester.token, &format!("After the delete {i}"))
            .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        receiver.received().len(),
        before,
        "nothing for a deleted subscription"
    );
    drop((node_a, node_b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_deleted_on_another_node_is_an_unknown_group_on_a_node_that_still_keeps_it() {
    let Some(db) = SharedDatabase::postgres().await else {
        return;
    };
    // Long enough that node a still keeps the group when it is deleted on b.
    let config = "database_config_cache_secs = 60\n";
    let node_a = KeelProcess::start(&db.url, config).await;
    let node_b = KeelProcess::start(&db.url, config).await;
    let a = TestApp::attach(Db::Postgres, node_a.port, &db.url);
    let b = TestApp::attach(Db::Postgres, node_b.port, &db.url);
    let admin = a.admin_token().await;
    let agent = a.person(&admin, "agent1", "agent").await;
    let old = a.create_group(&admin, "old-desk").await;
    let new = a.create_group(&admin, "new-desk").await;
    let into_old = json!({"title": "Scanner offline", "impact": 3, "urgency": 3,
                          "assignment_group": old});

    // Node a raises an incident into the old group (and keeps the group
    // and its members), then moves it to the new one.
    let inc = a.create_incident(&agent.token, into_old.clone()).await;
    let version = inc["version"].as_i64().unwrap();
    let moved = a
        .patch_incident(
            &agent.token,
            s(&inc, "id"),
            version,
            &json!({"assignment_group": new}),
        )
        .await;
    expect_json(moved, StatusCode::OK).await;
    // Node b deletes the old group, which nothing refers to any more.
    let gone = b
        .delete(&format!("/api/v1/groups/{old}"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);

    // Node a still keeps it: its write is refused by the database, and the
    // caller is told the group is unknown, as when a read finds no group.
    for _ in 0..2 {
        let resp = a.try_create_incident(&agent.token, &into_old).await;
        assert_problem(resp, 422, "incident.unknown_group").await;
    }
    let into_new = json!({"title": "Scanner offline", "impact": 3, "urgency": 3,
                          "assignment_group": new});
    a.create_incident(&agent.token, into_new).await;
    drop((node_a, node_b));
}
