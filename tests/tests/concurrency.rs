//! Idempotent retries and optimistic concurrency.

use futures_util::future::join_all;
use keel_tests::*;
use serde_json::{Value, json};

async fn create_with_key(app: &TestApp, token: &str, key: &str, body: &Value) -> (u16, Value) {
    let resp = app
        .post("/api/v1/incidents", token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}")),
    )
}

async fn count_incidents(app: &TestApp, token: &str) -> usize {
    items(&app.list_incidents(token, &[("limit", "200")]).await).len()
}

both!(a_retried_create_with_the_same_idempotency_key_creates_once);
async fn a_retried_create_with_the_same_idempotency_key_creates_once(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let body = json!({ "title": "Backup job failed", "impact": 2, "urgency": 2 });
    let (s1, first) = create_with_key(&app, agent, "retry-key-1", &body).await;
    assert_eq!(s1, 201, "{first}");
    let (s2, second) = create_with_key(&app, agent, "retry-key-1", &body).await;
    assert_eq!(s2, 201, "the replay has the original status: {second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["number"], first["number"]);
    assert_eq!(second, first, "the replay has the original body");
    assert_eq!(count_incidents(&app, agent).await, 1);

    // Same key, different body.
    let other = json!({ "title": "Backup job failed again", "impact": 2, "urgency": 2 });
    let resp = app
        .post("/api/v1/incidents", agent)
        .header("Idempotency-Key", "retry-key-1")
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "idempotency.key_reused").await;
    assert_eq!(count_incidents(&app, agent).await, 1);

    // A new key is a new incident; no key at all is never deduplicated.
    let (s3, third) = create_with_key(&app, agent, "retry-key-2", &body).await;
    assert_eq!(s3, 201);
    assert_ne!(third["id"], first["id"]);
    app.create_incident(agent, body.clone()).await;
    app.create_incident(agent, body.clone()).await;
    assert_eq!(count_incidents(&app, agent).await, 4);

    // Keys belong to their caller: another user with the same key gets their own incident.
    let (s4, theirs) = create_with_key(&app, &desk.agent2.token, "retry-key-1", &body).await;
    assert!(s4 == 201 || s4 == 422, "{s4} {theirs}");
    if s4 == 201 {
        assert_ne!(
            theirs["id"], first["id"],
            "a replay must not hand another user's incident out"
        );
    }
    app.finish().await;
}

both!(concurrent_requests_with_one_idempotency_key_create_one_incident);
async fn concurrent_requests_with_one_idempotency_key_create_one_incident(app: TestApp) {
    let desk = app.desk().await;
    let agent = desk.agent.token.clone();
    let body = json!({ "title": "Thundering herd", "impact": 1, "urgency": 1 });
    let results = join_all((0..8).map(|_| create_with_key(&app, &agent, "herd-key", &body))).await;
    let mut created_ids = Vec::new();
    for (status, value) in &results {
        match status {
            201 => created_ids.push(value["id"].as_str().unwrap().to_owned()),
            409 => assert_eq!(value["code"], "idempotency.in_flight", "{value}"),
            other => panic!("unexpected {other}: {value}"),
        }
    }
    assert!(
        !created_ids.is_empty(),
        "at least one request succeeds: {results:?}"
    );
    created_ids.dedup();
    assert_eq!(
        created_ids.len(),
        1,
        "every 201 names the same incident: {results:?}"
    );
    assert_eq!(count_incidents(&app, &agent).await, 1);
    // Afterwards the key replays.
    let (status, replay) = create_with_key(&app, &agent, "herd-key", &body).await;
    assert_eq!(status, 201);
    assert_eq!(replay["id"], created_ids[0].as_str());
    app.finish().await;
}

both!(concurrent_edits_with_the_same_version_lose_no_update);
async fn concurrent_edits_with_the_same_version_lose_no_update(app: TestApp) {
    let desk = app.desk().await;
    let inc = app.simple_incident(&desk.agent.token, "Contended").await;
    let id = s(&inc, "id").to_owned();
    for round in 0..3i64 {
        let version = 1 + round;
        let one = json!({ "title": format!("Agent one, round {round}") });
        let two = json!({ "description": format!("Agent two, round {round}") });
        let (r1, r2) = tokio::join!(
            app.patch_incident(&desk.agent.token, &id, version, &one),
            app.patch_incident(&desk.agent2.token, &id, version, &two),
        );
        let mut statuses = [r1.status().as_u16(), r2.status().as_u16()];
        let bodies = [r1.text().await.unwrap(), r2.text().await.unwrap()];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "exactly one edit wins: {bodies:?}");
        let loser = bodies
            .iter()
            .map(|b| serde_json::from_str::<Value>(b).unwrap())
            .find(|b| b.get("code").is_some())
            .unwrap();
        assert_eq!(loser["code"], "precondition.version_mismatch");
        let now = app.incident(&desk.agent.token, &id).await;
        assert_eq!(now["version"], version + 1);
    }
    app.finish().await;
}

both!(concurrent_transitions_apply_once);
async fn concurrent_transitions_apply_once(app: TestApp) {
    let desk = app.desk().await;
    let inc = app
        .create_incident(&desk.agent.token, json!({ "title": "Race to start", "impact": 2, "urgency": 2, "assignment_group": desk.group }))
        .await;
    let id = s(&inc, "id").to_owned();
    let results = join_all(
        [&desk.agent.token, &desk.agent2.token]
            .into_iter()
            .map(|t| {
                let app = &app;
                let id = &id;
                async move {
                    let r = app
                        .try_transition(t, id, json!({ "action": "start" }))
                        .await;
                    (r.status().as_u16(), r.text().await.unwrap())
                }
            }),
    )
    .await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "one start wins: {results:?}");
    for (status, body) in &results {
        assert!([200, 409, 412].contains(status), "{status} {body}");
    }
    let now = app.incident(&desk.agent.token, &id).await;
    assert_eq!(now["state"], "in_progress");
    assert_eq!(now["version"], 2);
    let history = app
        .get_json(
            &format!("/api/v1/incidents/{id}/history"),
            &desk.agent.token,
        )
        .await;
    assert_eq!(
        items(&history)
            .iter()
            .filter(|h| h["action"] == "transition")
            .count(),
        1,
        "{history}"
    );
    app.finish().await;
}

both!(concurrent_creates_take_consecutive_numbers_with_no_gap_or_duplicate);
/// Creates that arrive together are written together (one group commit on
/// SQLite, one shared number reservation on PostgreSQL); refused creates
/// among them take no number.
async fn concurrent_creates_take_consecutive_numbers_with_no_gap_or_duplicate(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let results = join_all((0..60).map(|n| {
        let app = &app;
        // Every fifth names a group that does not exist.
        let group = if n % 5 == 4 {
            "no-such-group".to_owned()
        } else {
            desk.group.clone()
        };
        let body = json!({ "title": format!("Burst {n}"), "impact": 2, "urgency": 2, "assignment_group": group });
        async move {
            let r = app
                .post("/api/v1/incidents", agent)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (n, status, body)
        }
    }))
    .await;
    let mut numbers = Vec::new();
    for (n, status, body) in &results {
        if n % 5 == 4 {
            assert_eq!(*status, 422, "{body}");
            assert_eq!(body["code"], "incident.unknown_group", "{body}");
        } else {
            assert_eq!(*status, 201, "{body}");
            assert_eq!(body["title"], format!("Burst {n}"));
            numbers.push(s(body, "number").to_owned());
            // What the create answered is what is stored.
            let stored = app.incident(agent, s(body, "id")).await;
            assert_eq!(stored["number"], body["number"]);
            assert_eq!(stored["title"], body["title"]);
        }
    }
    numbers.sort();
    let want: Vec<String> = (1..=48).map(|n| format!("INC{n:07}")).collect();
    assert_eq!(numbers, want, "48 creates, numbers 1 to 48, each once");
    // The sequence moved on by exactly those: the next create takes 49.
    let next = app.simple_incident(agent, "After the burst").await;
    assert_eq!(next["number"], "INC0000049");
    app.finish().await;
}
