//! Requesters see their own incidents (and those they watch), never
//! anyone else's, and never internal work notes.

use keel_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn numbers(list: &Value) -> Vec<&str> {
    items(list)
        .iter()
        .map(|i| i["number"].as_str().unwrap_or_default())
        .collect()
}

fn actions_of(history: &Value) -> Vec<&str> {
    items(history)
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect()
}

both!(a_requester_cannot_reach_another_requesters_incident);
async fn a_requester_cannot_reach_another_requesters_incident(app: TestApp) {
    let desk = app.desk().await;
    let a = &desk.requester.token;
    let b = &desk.requester2.token;
    let inc = app
        .create_incident(a, json!({ "title": "Zebrafish tank leaking", "description": "Salty water everywhere", "impact": 2, "urgency": 2 }))
        .await;
    let id = s(&inc, "id").to_owned();
    let number = s(&inc, "number").to_owned();
    app.comment(a, &id, "Please hurry", "public").await;
    let before = app.incident(a, &id).await;
    let b_own = app.simple_incident(b, "My own problem").await;

    for key in [&id, &number] {
        assert_problem(
            app.get(&format!("/api/v1/incidents/{key}"), b)
                .send()
                .await
                .unwrap(),
            404,
            "not_found",
        )
        .await;
    }
    let checks: Vec<(&str, reqwest::Response)> = vec![
        (
            "comments",
            app.get(&format!("/api/v1/incidents/{id}/comments"), b)
                .send()
                .await
                .unwrap(),
        ),
        (
            "comment",
            app.try_comment(b, &id, "Me too!", "public").await,
        ),
        (
            "history",
            app.get(&format!("/api/v1/incidents/{id}/history"), b)
                .send()
                .await
                .unwrap(),
        ),
        (
            "attachments",
            app.get(&format!("/api/v1/incidents/{id}/attachments"), b)
                .send()
                .await
                .unwrap(),
        ),
        (
            "attach",
            app.upload(b, &id, "x.txt", "text/plain", b"hello".to_vec())
                .await,
        ),
        (
            "links",
            app.get(&format!("/api/v1/incidents/{id}/links"), b)
                .send()
                .await
                .unwrap(),
        ),
        (
            "transition",
            app.try_transition(b, &id, json!({ "action": "cancel" }))
                .await,
        ),
        (
            "patch",
            app.patch_incident(b, &id, 1, &json!({ "title": "Mine now" }))
                .await,
        ),
        (
            "watch",
            app.post(&format!("/api/v1/incidents/{id}/watchers"), b)
                .json(&json!({ "user": desk.requester2.id }))
                .send()
                .await
                .unwrap(),
        ),
    ];
    for (what, resp) in checks {
        let status = resp.status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
        assert_problem(resp, 404, "not_found").await;
    }

    // Lists and search do not leak it.
    let list = app.list_incidents(b, &[]).await;
    assert_eq!(ids(&list), vec![s(&b_own, "id").to_owned()]);
    let mut soft = Soft::default();
    for q in ["zebrafish", "salty", "hurry"] {
        let found = app.list_incidents(b, &[("q", q)]).await;
        soft.check(
            !ids(&found).contains(&id),
            format!("B's search q={q} lists A's incident: {:?}", numbers(&found)),
        );
        soft.check(
            items(&found).is_empty(),
            format!(
                "B's search q={q} matches nothing of B's, yet lists {:?}",
                numbers(&found)
            ),
        );
    }
    for (k, v) in [
        ("requester", desk.requester.id.as_str()),
        ("state", "new"),
        ("priority", "3"),
        ("major", "false"),
    ] {
        let found = app.list_incidents(b, &[(k, v)]).await;
        soft.check(
            !ids(&found).contains(&id),
            format!(
                "B's list with {k}={v} lists A's incident: {:?}",
                numbers(&found)
            ),
        );
    }
    soft.verify();
    // The owner and the agents do see it.
    assert_eq!(
        ids(&app.list_incidents(a, &[("q", "zebrafish")]).await),
        vec![id.clone()]
    );
    assert_eq!(
        ids(&app
            .list_incidents(&desk.agent.token, &[("q", "hurry")])
            .await),
        vec![id.clone()]
    );
    assert_eq!(
        app.incident(a, &id).await["title"],
        "Zebrafish tank leaking"
    );
    assert_eq!(
        app.incident(a, &id).await["version"],
        before["version"],
        "nothing B did changed it"
    );
    app.finish().await;
}

both!(requesters_never_see_internal_work_notes);
async fn requesters_never_see_internal_work_notes(app: TestApp) {
    let desk = app.desk().await;
    let a = &desk.requester.token;
    let agent = &desk.agent.token;
    let inc = app.simple_incident(a, "Laptop slow").await;
    let id = s(&inc, "id").to_owned();
    app.comment(
        agent,
        &id,
        "Have you tried turning it off and on again?",
        "public",
    )
    .await;
    app.comment(
        agent,
        &id,
        "User has installed a cryptominer, escalate to security",
        "internal",
    )
    .await;

    let comments = app
        .get_json(&format!("/api/v1/incidents/{id}/comments"), a)
        .await;
    assert_eq!(items(&comments).len(), 1, "{comments}");
    assert!(!comments.to_string().contains("cryptominer"), "{comments}");

    let history = app
        .get_json(&format!("/api/v1/incidents/{id}/history"), a)
        .await;
    assert!(
        !actions_of(&history).contains(&"work_note_added"),
        "{history}"
    );
    assert!(actions_of(&history).contains(&"comment_added"), "{history}");
    assert!(!history.to_string().contains("cryptominer"), "{history}");
    let agent_history = app
        .get_json(&format!("/api/v1/incidents/{id}/history"), agent)
        .await;
    assert!(
        actions_of(&agent_history).contains(&"work_note_added"),
        "{agent_history}"
    );

    let mut soft = Soft::default();
    for q in ["cryptominer", "escalate security", "Laptop cryptominer"] {
        let found = app.list_incidents(a, &[("q", q)]).await;
        soft.check(
            items(&found).is_empty(),
            format!(
                "the requester's q={q} matched words only in an internal note: {:?}",
                numbers(&found)
            ),
        );
    }
    soft.verify();
    assert_eq!(
        ids(&app.list_incidents(agent, &[("q", "cryptominer")]).await),
        vec![id.clone()]
    );
    assert_eq!(
        ids(&app.list_incidents(a, &[("q", "turning")]).await),
        vec![id.clone()]
    );
    let list = app.list_incidents(a, &[]).await;
    assert!(!list.to_string().contains("cryptominer"), "{list}");
    let single = app.incident(a, &id).await;
    assert!(!single.to_string().contains("cryptominer"), "{single}");
    app.finish().await;
}

both!(a_watcher_sees_the_incident_until_removed);
async fn a_watcher_sees_the_incident_until_removed(app: TestApp) {
    let desk = app.desk().await;
    let a = &desk.requester.token;
    let b = &desk.requester2.token;
    let agent = &desk.agent.token;
    let inc = app.simple_incident(a, "Shared printer jam").await;
    let id = s(&inc, "id").to_owned();
    app.comment(agent, &id, "Technician booked", "public").await;
    app.comment(
        agent,
        &id,
        "Printer vendor is slow, internal only",
        "internal",
    )
    .await;

    let resp = app
        .post(&format!("/api/v1/incidents/{id}/watchers"), agent)
        .json(&json!({ "user": "req2" }))
        .send()
        .await
        .unwrap();
    let watchers = expect_json(resp, StatusCode::OK).await;
    assert!(
        items(&watchers)
            .iter()
            .any(|w| w["id"] == desk.requester2.id.as_str() && w["username"] == "req2"),
        "{watchers}"
    );
    assert_eq!(watchers["next"], Value::Null);

    assert_eq!(app.incident(b, &id).await["id"], id.as_str());
    assert_eq!(ids(&app.list_incidents(b, &[]).await), vec![id.clone()]);
    assert_eq!(
        ids(&app.list_incidents(b, &[("q", "jam")]).await),
        vec![id.clone()]
    );
    let comments = app
        .get_json(&format!("/api/v1/incidents/{id}/comments"), b)
        .await;
    assert_eq!(
        items(&comments).len(),
        1,
        "watchers do not see internal notes: {comments}"
    );
    let history = app
        .get_json(&format!("/api/v1/incidents/{id}/history"), b)
        .await;
    assert!(
        !actions_of(&history).contains(&"work_note_added"),
        "{history}"
    );
    let agent_history = app
        .get_json(&format!("/api/v1/incidents/{id}/history"), agent)
        .await;
    assert!(
        actions_of(&agent_history).contains(&"watcher_added"),
        "{agent_history}"
    );
    let found = app.list_incidents(b, &[("q", "vendor")]).await;
    assert!(
        items(&found).is_empty(),
        "a watcher's q=vendor matched an internal note: {:?}",
        numbers(&found)
    );

    let resp = app
        .delete(
            &format!("/api/v1/incidents/{id}/watchers/{}", desk.requester2.id),
            agent,
        )
        .send()
        .await
        .unwrap();
    expect_status(resp, StatusCode::NO_CONTENT).await;
    assert_problem(
        app.get(&format!("/api/v1/incidents/{id}"), b)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    assert!(items(&app.list_incidents(b, &[]).await).is_empty());
    app.finish().await;
}
