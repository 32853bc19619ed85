//! The incident record: creation, priority, assignment, the lifecycle.

use keel_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn history_actions(history: &Value) -> Vec<String> {
    items(history)
        .iter()
        .map(|h| h["action"].as_str().unwrap().to_owned())
        .collect()
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or_default()
}

fn actions(incident: &Value) -> Vec<String> {
    incident["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

both!(an_incident_walks_from_new_to_closed);
async fn an_incident_walks_from_new_to_closed(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let resp = app
        .try_create_incident(
            agent,
            &json!({
                "title": "  Email is down  ", "description": "Nobody can send mail.", "impact": 2, "urgency": 2,
                "category": "email", "requester": desk.requester.username, "assignment_group": desk.group_name,
            }),
        )
        .await;
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let (headers, text) = expect_status(resp, StatusCode::CREATED).await;
    let inc: Value = serde_json::from_str(&text).unwrap();
    let id = s(&inc, "id").to_owned();
    assert_eq!(etag(&headers), "\"1\"");
    let location = location.expect("a Location header");
    assert!(
        location.ends_with(&format!("/api/v1/incidents/{id}")),
        "{location}"
    );

    let number = s(&inc, "number");
    assert!(
        number.len() == 10
            && number.starts_with("INC")
            && number[3..].chars().all(|c| c.is_ascii_digit()),
        "{number}"
    );
    assert_eq!(number, "INC0000001");
    assert_eq!(inc["title"], "Email is down", "titles are trimmed");
    assert_eq!(inc["description"], "Nobody can send mail.");
    assert_eq!(
        (
            inc["impact"].as_i64(),
            inc["urgency"].as_i64(),
            inc["priority"].as_i64()
        ),
        (Some(2), Some(2), Some(3))
    );
    assert_eq!(inc["priority_overridden"], false);
    assert_eq!(inc["category"], "email");
    assert_eq!(inc["major"], false);
    assert_eq!(inc["state"], "new");
    assert_eq!(inc["version"], 1);
    assert_eq!(inc["requester"]["id"], desk.requester.id.as_str());
    assert_eq!(inc["requester"]["username"], "req1");
    assert_eq!(
        inc["assignment_group"],
        json!({ "id": desk.group, "name": "service-desk" })
    );
    assert!(inc["assignee"].is_null());
    assert_eq!(inc["reassignment_count"], 0);
    for t in [
        "first_response_at",
        "resolved_at",
        "closed_at",
        "cancelled_at",
        "hold_reason",
        "resolution_code",
        "resolution_notes",
    ] {
        assert!(inc[t].is_null(), "{t} is null at first: {inc}");
    }
    assert!(actions(&inc).contains(&"start".to_owned()), "{inc}");

    // By number too, with an ETag.
    let resp = app
        .get(&format!("/api/v1/incidents/{number}"), agent)
        .send()
        .await
        .unwrap();
    let (headers, text) = expect_status(resp, StatusCode::OK).await;
    assert_eq!(etag(&headers), "\"1\"");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["id"],
        id.as_str()
    );

    let started = app
        .transition(agent, &id, json!({ "action": "start" }))
        .await;
    assert_eq!(started["state"], "in_progress");
    assert_eq!(
        started["assignee"]["id"],
        desk.agent.id.as_str(),
        "start assigns the acting agent"
    );
    assert!(started["first_response_at"].is_string());
    assert_eq!(started["version"], 2);
    let first_response = started["first_response_at"].clone();

    let held = app
        .transition(
            agent,
            &id,
            json!({ "action": "hold", "hold_reason": "awaiting_supplier" }),
        )
        .await;
    assert_eq!(held["state"], "on_hold");
    assert_eq!(held["hold_reason"], "awaiting_supplier");
    assert!(actions(&held).contains(&"resume".to_owned()));

    let resumed = app
        .transition(agent, &id, json!({ "action": "resume" }))
        .await;
    assert_eq!(resumed["state"], "in_progress");
    assert!(resumed["hold_reason"].is_null());

    let resolved = app
        .transition(agent, &id, json!({ "action": "resolve", "resolution_code": "solved_workaround", "resolution_notes": "Restarted the MTA." }))
        .await;
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["resolution_code"], "solved_workaround");
    assert_eq!(resolved["resolution_notes"], "Restarted the MTA.");
    assert!(resolved["resolved_at"].is_string());
    assert_eq!(
        resolved["first_response_at"], first_response,
        "the first response is stamped once"
    );

    let closed = app
        .transition(&desk.requester.token, &id, json!({ "action": "close" }))
        .await;
    assert_eq!(closed["state"], "closed");
    assert!(closed["closed_at"].is_string());
    assert_eq!(closed["resolved_at"], resolved["resolved_at"]);
    assert!(
        actions(&closed).is_empty(),
        "no way out of closed: {closed}"
    );
    assert_eq!(closed["version"], 6);
    let created_at = s(&inc, "created_at");
    let resolved_at = s(&resolved, "resolved_at");
    let closed_at = s(&closed, "closed_at");
    let parse =
        |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    assert!(parse(created_at) <= parse(resolved_at) && parse(resolved_at) <= parse(closed_at));

    let history = app
        .get_json(&format!("/api/v1/incidents/{id}/history"), agent)
        .await;
    let acts = history_actions(&history);
    assert_eq!(
        acts.first().map(String::as_str),
        Some("created"),
        "{acts:?}"
    );
    let transitions: Vec<(&str, &str)> = items(&history)
        .iter()
        .filter(|h| h["action"] == "transition")
        .map(|h| {
            (
                // The state comes first; details may follow ("on_hold (awaiting_supplier)").
                first_word(h["old_value"].as_str().unwrap_or_default()),
                first_word(h["new_value"].as_str().unwrap_or_default()),
            )
        })
        .collect();
    assert_eq!(
        transitions,
        [
            ("new", "in_progress"),
            ("in_progress", "on_hold"),
            ("on_hold", "in_progress"),
            ("in_progress", "resolved"),
            ("resolved", "closed")
        ]
    );
    assert!(
        items(&history)
            .iter()
            .filter(|h| h["action"] == "transition")
            .all(|h| h["field"] == "state")
    );
    assert!(
        items(&history)
            .iter()
            .all(|h| h["actor"].is_null() || h["actor"]["id"].is_string())
    );
    app.finish().await;
}

both!(priority_follows_the_impact_urgency_matrix);
async fn priority_follows_the_impact_urgency_matrix(app: TestApp) {
    let desk = app.desk().await;
    let expected = [[1, 2, 3], [2, 3, 4], [3, 4, 5]];
    for impact in 1..=3i64 {
        for urgency in 1..=3i64 {
            let inc = app
                .create_incident(
                    &desk.requester.token,
                    json!({ "title": format!("impact {impact} urgency {urgency}"), "impact": impact, "urgency": urgency }),
                )
                .await;
            assert_eq!(
                inc["priority"].as_i64(),
                Some(expected[(impact - 1) as usize][(urgency - 1) as usize]),
                "impact {impact} × urgency {urgency}: {inc}"
            );
            assert_eq!(inc["priority_overridden"], false);
        }
    }
    for (impact, urgency, code) in [
        (0, 2, "incident.invalid_impact"),
        (4, 2, "incident.invalid_impact"),
        (-1, 2, "incident.invalid_impact"),
        (2, 0, "incident.invalid_urgency"),
        (2, 4, "incident.invalid_urgency"),
    ] {
        let resp = app
            .try_create_incident(
                &desk.agent.token,
                &json!({ "title": "bad", "impact": impact, "urgency": urgency }),
            )
            .await;
        assert_problem(resp, 422, code).await;
    }
    let resp = app
        .try_create_incident(
            &desk.agent.token,
            &json!({ "title": "bad", "impact": 2, "urgency": 2, "priority": 6 }),
        )
        .await;
    assert_problem(resp, 422, "incident.invalid_priority").await;

    // Changing impact recomputes the priority.
    let inc = app.simple_incident(&desk.agent.token, "Recompute me").await;
    assert_eq!(inc["priority"], 5);
    let resp = app
        .patch_incident(&desk.agent.token, s(&inc, "id"), 1, &json!({ "impact": 1 }))
        .await;
    let patched = expect_json(resp, StatusCode::OK).await;
    assert_eq!(patched["priority"], 3);
    assert_eq!(patched["version"], 2);
    app.finish().await;
}

both!(an_agent_priority_override_is_audited);
async fn an_agent_priority_override_is_audited(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let inc = app
        .create_incident(
            agent,
            json!({ "title": "CEO laptop", "impact": 3, "urgency": 3, "priority": 1 }),
        )
        .await;
    assert_eq!(inc["priority"], 1);
    assert_eq!(inc["priority_overridden"], true);
    let id = s(&inc, "id").to_owned();
    let history = app
        .get_json(&format!("/api/v1/incidents/{id}/history"), agent)
        .await;
    assert!(
        history_actions(&history).contains(&"priority_overridden".to_owned()),
        "{history}"
    );

    // Back to the matrix with null.
    let resp = app
        .patch_incident(agent, &id, 1, &json!({ "priority": null }))
        .await;
    let patched = expect_json(resp, StatusCode::OK).await;
    assert_eq!(patched["priority"], 5);
    assert_eq!(patched["priority_overridden"], false);

    // Override through PATCH is audited as well.
    let resp = app
        .patch_incident(agent, &id, 2, &json!({ "priority": 2 }))
        .await;
    let patched = expect_json(resp, StatusCode::OK).await;
    assert_eq!(patched["priority"], 2);
    assert_eq!(patched["priority_overridden"], true);
    let history = app
        .get_json(&format!("/api/v1/incidents/{id}/history"), agent)
        .await;
    let overrides = history_actions(&history)
        .iter()
        .filter(|a| *a == "priority_overridden")
        .count();
    assert!(overrides >= 2, "{history}");

    // Requesters cannot override.
    let resp = app
        .try_create_incident(
            &desk.requester.token,
            &json!({ "title": "Mine is urgent", "impact": 3, "urgency": 3, "priority": 1 }),
        )
        .await;
    assert_problem(resp, 403, "incident.field_forbidden").await;
    let resp = app
        .try_create_incident(
            &desk.requester.token,
            &json!({ "title": "Mine is major", "impact": 3, "urgency": 3, "major": true }),
        )
        .await;
    assert_problem(resp, 403, "incident.field_forbidden").await;
    app.finish().await;
}

both!(transitions_are_guarded);
async fn transitions_are_guarded(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let requester = &desk.requester.token;
    let admin = &desk.admin;
    let outsider = app.person(admin, "agent3", "agent").await;

    // No group yet: nothing to start.
    let inc = app
        .create_incident(
            requester,
            json!({ "title": "Printer on fire", "impact": 1, "urgency": 1 }),
        )
        .await;
    let id = s(&inc, "id").to_owned();
    assert_eq!(
        actions(&inc),
        ["cancel"],
        "all a requester may do with a new incident is cancel it: {inc}"
    );
    let resp = app
        .try_transition(agent, &id, json!({ "action": "start" }))
        .await;
    assert_problem(resp, 422, "incident.assignment_group_required").await;

    // Wrong state.
    for action in ["hold", "resume", "reopen", "close"] {
        let resp = app
            .try_transition(
                agent,
                &id,
                json!({ "action": action, "hold_reason": "awaiting_requester" }),
            )
            .await;
        assert_problem(resp, 409, "incident.invalid_transition").await;
    }

    let resp = app
        .patch_incident(agent, &id, 1, &json!({ "assignment_group": desk.group }))
        .await;
    expect_json(resp, StatusCode::OK).await;

    // The requester may not start; an agent outside the group may not either.
    let resp = app
        .try_transition(requester, &id, json!({ "action": "start" }))
        .await;
    assert_problem(resp, 403, "incident.transition_not_permitted").await;
    let resp = app
        .try_transition(&outsider.token, &id, json!({ "action": "start" }))
        .await;
    assert_problem_any(resp, &[403, 422], &["incident."]).await;

    // A stale If-Match is honoured on transitions.
    let resp = app
        .post(&format!("/api/v1/incidents/{id}/transitions"), agent)
        .header("If-Match", "\"1\"")
        .json(&json!({ "action": "start" }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 412, "precondition.version_mismatch").await;

    let started = app
        .transition(agent, &id, json!({ "action": "start" }))
        .await;
    assert_eq!(started["state"], "in_progress");
    let resp = app
        .try_transition(agent, &id, json!({ "action": "start" }))
        .await;
    assert_problem(resp, 409, "incident.invalid_transition").await;

    // Hold needs a known reason.
    let resp = app
        .try_transition(agent, &id, json!({ "action": "hold" }))
        .await;
    assert_problem(resp, 422, "incident.hold_reason_required").await;
    let resp = app
        .try_transition(
            agent,
            &id,
            json!({ "action": "hold", "hold_reason": "awaiting_godot" }),
        )
        .await;
    assert_problem_any(resp, &[400, 422], &["validation."]).await;
    let resp = app
        .try_transition(
            requester,
            &id,
            json!({ "action": "hold", "hold_reason": "awaiting_requester" }),
        )
        .await;
    assert_problem(resp, 403, "incident.transition_not_permitted").await;

    // Resolve needs a code and notes.
    for body in [
        json!({ "action": "resolve" }),
        json!({ "action": "resolve", "resolution_code": "solved_permanently" }),
        json!({ "action": "resolve", "resolution_notes": "Done." }),
        json!({ "action": "resolve", "resolution_code": "solved_permanently", "resolution_notes": "   " }),
    ] {
        let resp = app.try_transition(agent, &id, body.clone()).await;
        assert_problem(resp, 422, "incident.resolution_required").await;
    }
    let resp = app
        .try_transition(
            agent,
            &id,
            json!({ "action": "resolve", "resolution_code": "magic", "resolution_notes": "Done." }),
        )
        .await;
    assert_problem_any(resp, &[400, 422], &["validation."]).await;
    let resp = app
        .try_transition(requester, &id, json!({ "action": "resolve", "resolution_code": "resolved_by_caller", "resolution_notes": "It works now." }))
        .await;
    assert_problem(resp, 403, "incident.transition_not_permitted").await;

    // An unknown action.
    let resp = app
        .try_transition(agent, &id, json!({ "action": "explode" }))
        .await;
    assert_problem_any(resp, &[400, 422], &["validation."]).await;
    let resp = app.try_transition(agent, &id, json!({})).await;
    assert_problem_any(resp, &[400, 422], &["validation."]).await;

    // None of the refusals changed anything.
    let now = app.incident(agent, &id).await;
    assert_eq!(now["state"], "in_progress");
    assert_eq!(now["version"], started["version"]);
    app.finish().await;
}

both!(a_resolved_incident_can_be_reopened);
async fn a_resolved_incident_can_be_reopened(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let requester = &desk.requester.token;
    let inc = app
        .create_incident(
            requester,
            json!({ "title": "VPN drops", "impact": 2, "urgency": 1 }),
        )
        .await;
    let id = s(&inc, "id").to_owned();
    let resolved = app.resolve(agent, &id).await;
    assert_eq!(resolved["state"], "resolved", "resolve straight from new");
    let requester_view = app.incident(requester, &id).await;
    let acts = actions(&requester_view);
    assert!(
        acts.contains(&"reopen".to_owned()) && acts.contains(&"close".to_owned()),
        "{requester_view}"
    );

    let reopened = app
        .transition(requester, &id, json!({ "action": "reopen" }))
        .await;
    assert_eq!(reopened["state"], "in_progress");
    assert!(reopened["resolution_code"].is_null());
    assert!(reopened["resolution_notes"].is_null());
    assert!(reopened["resolved_at"].is_null());

    let again = app.resolve(agent, &id).await;
    assert_eq!(again["state"], "resolved");
    let reopened = app
        .transition(agent, &id, json!({ "action": "reopen" }))
        .await;
    assert_eq!(reopened["state"], "in_progress");
    app.resolve(agent, &id).await;
    let closed = app
        .transition(agent, &id, json!({ "action": "close" }))
        .await;
    assert_eq!(closed["state"], "closed");
    let resp = app
        .try_transition(requester, &id, json!({ "action": "reopen" }))
        .await;
    assert_problem(resp, 409, "incident.invalid_transition").await;
    app.finish().await;
}

both!(a_requester_may_cancel_only_while_new);
async fn a_requester_may_cancel_only_while_new(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let requester = &desk.requester.token;

    let mistake = app.simple_incident(requester, "Oops, wrong form").await;
    assert!(
        actions(&mistake).contains(&"cancel".to_owned()),
        "{mistake}"
    );
    let cancelled = app
        .transition(requester, s(&mistake, "id"), json!({ "action": "cancel" }))
        .await;
    assert_eq!(cancelled["state"], "cancelled");
    assert!(cancelled["cancelled_at"].is_string());
    for action in ["start", "resolve", "reopen", "close", "cancel"] {
        let resp = app
            .try_transition(
                agent,
                s(&mistake, "id"),
                json!({ "action": action, "resolution_code": "duplicate", "resolution_notes": "dup" }),
            )
            .await;
        assert_problem(resp, 409, "incident.invalid_transition").await;
    }

    // Once an agent works it, only an agent can cancel it.
    let worked = app
        .create_incident(agent, json!({ "title": "Worked", "impact": 3, "urgency": 3, "requester": desk.requester.id, "assignment_group": desk.group }))
        .await;
    let id = s(&worked, "id").to_owned();
    app.transition(agent, &id, json!({ "action": "start" }))
        .await;
    assert!(!actions(&app.incident(requester, &id).await).contains(&"cancel".to_owned()));
    let resp = app
        .try_transition(requester, &id, json!({ "action": "cancel" }))
        .await;
    assert_problem(resp, 403, "incident.transition_not_permitted").await;
    app.transition(
        agent,
        &id,
        json!({ "action": "hold", "hold_reason": "awaiting_requester" }),
    )
    .await;
    let resp = app
        .try_transition(requester, &id, json!({ "action": "cancel" }))
        .await;
    assert_problem(resp, 403, "incident.transition_not_permitted").await;
    let cancelled = app
        .transition(agent, &id, json!({ "action": "cancel" }))
        .await;
    assert_eq!(cancelled["state"], "cancelled");

    // Nobody else's requester may cancel it.
    let other = app.simple_incident(requester, "Still new").await;
    let resp = app
        .try_transition(
            &desk.requester2.token,
            s(&other, "id"),
            json!({ "action": "cancel" }),
        )
        .await;
    assert_problem(resp, 404, "not_found").await;
    assert_eq!(
        app.incident(requester, s(&other, "id")).await["state"],
        "new"
    );
    app.finish().await;
}

both!(resolving_a_parent_resolves_its_open_children);
async fn resolving_a_parent_resolves_its_open_children(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let make = |title: &'static str| {
        let app = &app;
        let desk = &desk;
        async move {
            app.create_incident(&desk.agent.token, json!({ "title": title, "impact": 2, "urgency": 2, "assignment_group": desk.group }))
                .await
        }
    };
    let parent = make("Site outage").await;
    let child1 = make("Cannot reach intranet").await;
    let child2 = make("Cannot reach wiki").await;
    let grandchild = make("Wiki search broken").await;
    let stranger = make("Unrelated").await;
    let closed_child = make("Already done").await;
    let (p, c1, c2, gc) = (
        s(&parent, "id"),
        s(&child1, "id"),
        s(&child2, "id"),
        s(&grandchild, "id"),
    );

    // child1 says its parent is the outage (by number); the outage adopts child2 (by id).
    let resp = app
        .post(&format!("/api/v1/incidents/{c1}/links"), agent)
        .json(&json!({ "kind": "parent", "target": parent["number"] }))
        .send()
        .await
        .unwrap();
    let link = expect_json(resp, StatusCode::CREATED).await;
    assert_eq!(link["kind"], "parent");
    assert_eq!(link["incident"]["id"], p);
    assert_eq!(link["incident"]["number"], parent["number"]);
    assert_eq!(link["incident"]["state"], "new");
    assert!(link["incident"]["title"].is_string());
    let resp = app
        .post(&format!("/api/v1/incidents/{p}/links"), agent)
        .json(&json!({ "kind": "child", "target": c2 }))
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::CREATED).await;
    let resp = app
        .post(&format!("/api/v1/incidents/{c2}/links"), agent)
        .json(&json!({ "kind": "child", "target": gc }))
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::CREATED).await;
    let resp = app
        .post(&format!("/api/v1/incidents/{p}/links"), agent)
        .json(&json!({ "kind": "child", "target": closed_child["id"] }))
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::CREATED).await;
    app.resolve(agent, s(&closed_child, "id")).await;
    app.transition(agent, s(&closed_child, "id"), json!({ "action": "close" }))
        .await;
    app.transition(agent, c2, json!({ "action": "start" }))
        .await;

    let links = app
        .get_json(&format!("/api/v1/incidents/{p}/links"), agent)
        .await;
    assert_eq!(items(&links).len(), 3, "{links}");
    assert!(
        items(&links).iter().all(|l| l["kind"] == "child"),
        "seen from the parent they are children: {links}"
    );
    assert_eq!(links["next"], Value::Null);

    // A cycle is refused, so is a link to itself.
    let resp = app
        .post(&format!("/api/v1/incidents/{p}/links"), agent)
        .json(&json!({ "kind": "parent", "target": gc }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "incident.link_cycle").await;
    let resp = app
        .post(&format!("/api/v1/incidents/{p}/links"), agent)
        .json(&json!({ "kind": "parent", "target": p }))
        .send()
        .await
        .unwrap();
    assert_problem_any(resp, &[409, 422], &["incident."]).await;
    // Requesters do not link.
    let mine = app.simple_incident(&desk.requester.token, "Mine").await;
    let resp = app
        .post(
            &format!("/api/v1/incidents/{}/links", s(&mine, "id")),
            &desk.requester.token,
        )
        .json(&json!({ "kind": "duplicate_of", "target": mine["id"] }))
        .send()
        .await
        .unwrap();
    assert_problem_any(resp, &[403], &["incident.", "auth."]).await;
    // A duplicate link, then removed.
    let resp = app
        .post(
            &format!("/api/v1/incidents/{}/links", s(&stranger, "id")),
            agent,
        )
        .json(&json!({ "kind": "duplicate_of", "target": c1 }))
        .send()
        .await
        .unwrap();
    let dup = expect_json(resp, StatusCode::CREATED).await;
    assert_eq!(dup["kind"], "duplicate_of");
    let back = app
        .get_json(&format!("/api/v1/incidents/{c1}/links"), agent)
        .await;
    assert!(
        items(&back)
            .iter()
            .any(|l| l["kind"] == "duplicated_by" && l["incident"]["id"] == stranger["id"]),
        "{back}"
    );
    let resp = app
        .delete(
            &format!(
                "/api/v1/incidents/{}/links/{}",
                s(&stranger, "id"),
                s(&dup, "id")
            ),
            agent,
        )
        .send()
        .await
        .unwrap();
    expect_status(resp, StatusCode::NO_CONTENT).await;
    let after = app
        .get_json(
            &format!("/api/v1/incidents/{}/links", s(&stranger, "id")),
            agent,
        )
        .await;
    assert!(items(&after).is_empty(), "{after}");

    let resolved = app
        .transition(agent, p, json!({ "action": "resolve", "resolution_code": "solved_permanently", "resolution_notes": "Power restored." }))
        .await;
    assert_eq!(resolved["state"], "resolved");
    for id in [c1, c2, gc] {
        let child = app.incident(agent, id).await;
        assert_eq!(child["state"], "resolved", "{child}");
        assert_eq!(child["resolution_code"], "solved_permanently");
        assert!(child["resolved_at"].is_string());
    }
    assert_eq!(
        app.incident(agent, s(&closed_child, "id")).await["state"],
        "closed",
        "closed children stay closed"
    );
    assert_eq!(
        app.incident(agent, s(&stranger, "id")).await["state"],
        "new"
    );
    let history = app
        .get_json(&format!("/api/v1/incidents/{c1}/history"), agent)
        .await;
    assert!(
        history_actions(&history).contains(&"link_added".to_owned()),
        "{history}"
    );
    app.finish().await;
}

both!(assignment_rules_hold_and_reassignments_are_counted);
async fn assignment_rules_hold_and_reassignments_are_counted(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let admin = &desk.admin;
    let network = app.create_group(admin, "network").await;
    app.add_member(admin, &network, &desk.agent2.id).await;

    let base = json!({ "title": "Switch port dead", "impact": 2, "urgency": 3 });
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let resp = app
        .try_create_incident(agent, &with(json!({ "assignment_group": "no-such-group" })))
        .await;
    assert_problem(resp, 422, "incident.unknown_group").await;
    let resp = app
        .try_create_incident(
            agent,
            &with(json!({ "assignment_group": uuid::Uuid::new_v4() })),
        )
        .await;
    assert_problem(resp, 422, "incident.unknown_group").await;
    let resp = app
        .try_create_incident(agent, &with(json!({ "assignee": "agent1" })))
        .await;
    assert_problem(resp, 422, "incident.assignee_requires_group").await;
    let resp = app
        .try_create_incident(
            agent,
            &with(json!({ "assignment_group": "network", "assignee": "agent1" })),
        )
        .await;
    assert_problem(resp, 422, "incident.assignee_not_in_group").await;

    // Requesters cannot assign and cannot raise for someone else.
    let resp = app
        .try_create_incident(
            &desk.requester.token,
            &with(json!({ "assignment_group": "network" })),
        )
        .await;
    assert_problem(resp, 403, "incident.field_forbidden").await;
    let resp = app
        .try_create_incident(&desk.requester.token, &with(json!({ "requester": "req2" })))
        .await;
    assert_problem(resp, 403, "incident.requester_forbidden").await;
    let own = app
        .create_incident(&desk.requester.token, with(json!({ "requester": "req1" })))
        .await;
    assert_eq!(own["requester"]["id"], desk.requester.id.as_str());

    // Group by id, no assignee yet.
    let inc = app
        .create_incident(agent, with(json!({ "assignment_group": desk.group })))
        .await;
    let id = s(&inc, "id").to_owned();
    assert_eq!(inc["reassignment_count"], 0);
    assert_eq!(
        inc["requester"]["username"], "agent1",
        "the caller is the default requester"
    );

    // First assignment: not a reassignment.
    let v1 = expect_json(
        app.patch_incident(agent, &id, 1, &json!({ "assignee": "agent1" }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(v1["assignee"]["username"], "agent1");
    assert_eq!(v1["reassignment_count"], 0);
    // Agent to agent in the same group.
    let v2 = expect_json(
        app.patch_incident(agent, &id, 2, &json!({ "assignee": desk.agent2.id }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(v2["assignee"]["id"], desk.agent2.id.as_str());
    assert_eq!(v2["reassignment_count"], 1);
    // Group to group, keeping an assignee who is in both.
    let v3 = expect_json(
        app.patch_incident(agent, &id, 3, &json!({ "assignment_group": network }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(v3["assignment_group"]["name"], "network");
    assert_eq!(v3["assignee"]["username"], "agent2");
    assert_eq!(v3["reassignment_count"], 2);
    // An assignee outside the group is refused on PATCH too.
    let resp = app
        .patch_incident(agent, &id, 4, &json!({ "assignee": "agent1" }))
        .await;
    assert_problem(resp, 422, "incident.assignee_not_in_group").await;
    // Clearing the assignee.
    let v5 = expect_json(
        app.patch_incident(agent, &id, 4, &json!({ "assignee": null }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(v5["assignee"].is_null());
    assert_eq!(v5["assignment_group"]["name"], "network");
    let history = app
        .get_json(&format!("/api/v1/incidents/{id}/history"), agent)
        .await;
    let changed: Vec<&str> = items(&history)
        .iter()
        .filter(|h| h["action"] == "updated")
        .filter_map(|h| h["field"].as_str())
        .collect();
    assert!(
        changed.contains(&"assignee") && changed.contains(&"assignment_group"),
        "{history}"
    );

    // Requesters edit only the title and description of their own incident.
    let oid = s(&own, "id");
    let ok = expect_json(
        app.patch_incident(
            &desk.requester.token,
            oid,
            1,
            &json!({ "title": "Switch port 7 dead", "description": "Since Monday." }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(ok["title"], "Switch port 7 dead");
    for body in [
        json!({ "impact": 1 }),
        json!({ "assignment_group": "network" }),
        json!({ "priority": 1 }),
        json!({ "major": true }),
    ] {
        let resp = app
            .patch_incident(&desk.requester.token, oid, 2, &body)
            .await;
        assert_problem(resp, 403, "incident.field_forbidden").await;
    }
    app.finish().await;
}

both!(edits_need_the_current_version);
async fn edits_need_the_current_version(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let inc = app.simple_incident(agent, "Versioned").await;
    let id = s(&inc, "id").to_owned();
    let resp = app
        .patch(&format!("/api/v1/incidents/{id}"), agent)
        .json(&json!({ "title": "No If-Match" }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 428, "precondition.required").await;
    let resp = app
        .patch_incident(agent, &id, 7, &json!({ "title": "Stale" }))
        .await;
    assert_problem(resp, 412, "precondition.version_mismatch").await;
    // The bare number is accepted too.
    let resp = app
        .patch(&format!("/api/v1/incidents/{id}"), agent)
        .header("If-Match", "1")
        .json(&json!({ "title": "Bare version" }))
        .send()
        .await
        .unwrap();
    let (headers, text) = expect_status(resp, StatusCode::OK).await;
    assert_eq!(etag(&headers), "\"2\"");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["title"], "Bare version");
    assert_eq!(body["version"], 2);
    let resp = app
        .patch_incident(agent, &id, 1, &json!({ "title": "Lost update" }))
        .await;
    assert_problem(resp, 412, "precondition.version_mismatch").await;
    assert_eq!(app.incident(agent, &id).await["title"], "Bare version");

    let history = app
        .get_json(&format!("/api/v1/incidents/{id}/history"), agent)
        .await;
    let title_change = items(&history)
        .iter()
        .find(|h| h["action"] == "updated" && h["field"] == "title")
        .expect("title change in history");
    assert_eq!(title_change["old_value"], "Versioned");
    assert_eq!(title_change["new_value"], "Bare version");
    assert_eq!(title_change["actor"]["username"], "agent1");
    app.finish().await;
}

both!(closed_and_cancelled_incidents_refuse_edits);
async fn closed_and_cancelled_incidents_refuse_edits(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let closed = app.simple_incident(agent, "Will close").await;
    let cid = s(&closed, "id").to_owned();
    app.resolve(agent, &cid).await;
    let closed = app
        .transition(agent, &cid, json!({ "action": "close" }))
        .await;
    let resp = app
        .patch_incident(
            agent,
            &cid,
            closed["version"].as_i64().unwrap(),
            &json!({ "title": "Too late" }),
        )
        .await;
    assert_problem(resp, 409, "incident.final_state").await;

    let cancelled = app.simple_incident(agent, "Will cancel").await;
    let xid = s(&cancelled, "id").to_owned();
    let cancelled = app
        .transition(agent, &xid, json!({ "action": "cancel" }))
        .await;
    let resp = app
        .patch_incident(
            agent,
            &xid,
            cancelled["version"].as_i64().unwrap(),
            &json!({ "impact": 1 }),
        )
        .await;
    assert_problem(resp, 409, "incident.final_state").await;
    assert_eq!(app.incident(agent, &xid).await["impact"], 3);
    assert_eq!(app.incident(agent, &cid).await["title"], "Will close");
    app.finish().await;
}

both!(comments_are_public_or_internal);
async fn comments_are_public_or_internal(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let requester = &desk.requester.token;
    let inc = app.simple_incident(requester, "Screen flickers").await;
    let id = s(&inc, "id").to_owned();
    assert!(inc["first_response_at"].is_null());
    let c = app
        .comment(requester, &id, "It flickers more in the morning.", "public")
        .await;
    assert_eq!(c["visibility"], "public");
    assert_eq!(c["author"]["username"], "req1");
    assert!(c["id"].is_string() && c["created_at"].is_string());
    assert!(
        app.incident(agent, &id).await["first_response_at"].is_null(),
        "a requester's comment is no response"
    );
    app.comment(agent, &id, "Suspect the cable.", "internal")
        .await;
    assert!(
        app.incident(agent, &id).await["first_response_at"].is_null(),
        "an internal note is no response"
    );
    app.comment(agent, &id, "Could you try another cable?", "public")
        .await;
    assert!(app.incident(agent, &id).await["first_response_at"].is_string());

    let resp = app.try_comment(requester, &id, "Sneaky", "internal").await;
    assert_problem(resp, 403, "incident.internal_note_forbidden").await;
    let resp = app.try_comment(agent, &id, "   ", "public").await;
    assert_problem_any(resp, &[400, 422], &["validation."]).await;

    let all = app
        .get_json(&format!("/api/v1/incidents/{id}/comments"), agent)
        .await;
    assert_eq!(items(&all).len(), 3);
    let theirs = app
        .get_json(&format!("/api/v1/incidents/{id}/comments"), requester)
        .await;
    assert_eq!(items(&theirs).len(), 2);
    assert!(items(&theirs).iter().all(|c| c["visibility"] == "public"));
    let history = app
        .get_json(&format!("/api/v1/incidents/{id}/history"), agent)
        .await;
    let acts = history_actions(&history);
    assert!(
        acts.contains(&"comment_added".to_owned()) && acts.contains(&"work_note_added".to_owned()),
        "{acts:?}"
    );
    app.finish().await;
}

both!(resolved_incidents_close_by_themselves_after_the_waiting_period);
async fn resolved_incidents_close_by_themselves_after_the_waiting_period(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let requester = &desk.requester.token;
    let waiting = app.simple_incident(requester, "Monitor flickers").await;
    let open = app.simple_incident(requester, "Keyboard sticky").await;
    let waiting_id = s(&waiting, "id").to_owned();
    let open_id = s(&open, "id").to_owned();
    app.resolve(agent, &waiting_id).await;

    // What the housekeeping worker does every few minutes, with a zero waiting period.
    let store = app.store().await;
    let closed = store
        .auto_close_resolved(chrono::Duration::zero(), 100)
        .await
        .expect("auto-close runs");
    assert_eq!(closed, 1, "only the resolved incident is due");
    let again = store
        .auto_close_resolved(chrono::Duration::zero(), 100)
        .await
        .expect("auto-close runs again");
    assert_eq!(again, 0, "a second run finds nothing to do");
    store.close().await;

    let after = app.incident(requester, &waiting_id).await;
    assert_eq!(after["state"], "closed");
    assert!(after["closed_at"].is_string(), "{after}");
    assert_eq!(app.incident(requester, &open_id).await["state"], "new");
    let history = app
        .get_json(
            &format!("/api/v1/incidents/{waiting_id}/history"),
            requester,
        )
        .await;
    let last = items(&history).last().cloned().unwrap_or_default();
    assert_eq!(last["action"], "transition");
    assert_eq!(last["new_value"], "closed");
    assert!(last["actor"].is_null(), "the system closed it: {last}");
    app.finish().await;
}

both!(a_requester_reply_resumes_an_incident_awaiting_them);
async fn a_requester_reply_resumes_an_incident_awaiting_them(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let requester = &desk.requester.token;
    let inc = app
        .create_incident(
            agent,
            json!({ "title": "Laptop will not boot", "impact": 2, "urgency": 2,
                    "requester": desk.requester.username, "assignment_group": desk.group }),
        )
        .await;
    let id = s(&inc, "id").to_owned();
    app.transition(agent, &id, json!({ "action": "start" }))
        .await;
    let held = app
        .transition(
            agent,
            &id,
            json!({ "action": "hold", "hold_reason": "awaiting_supplier" }),
        )
        .await;
    assert_eq!(held["state"], "on_hold");

    // Waiting on a supplier: the requester's comment changes nothing.
    app.comment(requester, &id, "Any news?", "public").await;
    assert_eq!(app.incident(agent, &id).await["state"], "on_hold");

    app.transition(agent, &id, json!({ "action": "resume" }))
        .await;
    app.transition(
        agent,
        &id,
        json!({ "action": "hold", "hold_reason": "awaiting_requester" }),
    )
    .await;
    // An agent's internal note does not resume it either.
    app.comment(agent, &id, "Asked for the serial number", "internal")
        .await;
    assert_eq!(app.incident(agent, &id).await["state"], "on_hold");

    app.comment(requester, &id, "The serial is 5CG1234", "public")
        .await;
    let after = app.incident(agent, &id).await;
    assert_eq!(after["state"], "in_progress", "{after}");
    assert!(after["hold_reason"].is_null());
    let history = app
        .get_json(&format!("/api/v1/incidents/{id}/history"), agent)
        .await;
    let resumed = items(&history)
        .iter()
        .rev()
        .find(|h| h["action"] == "transition")
        .cloned()
        .unwrap_or_default();
    assert_eq!(resumed["new_value"], "in_progress");
    assert_eq!(
        resumed["actor"]["username"],
        desk.requester.username.as_str()
    );
    app.finish().await;
}

both!(a_created_incident_is_answered_as_a_read_shows_it);
async fn a_created_incident_is_answered_as_a_read_shows_it(app: TestApp) {
    // The create's answer is built from what it wrote, not read back: it
    // must be what a read shows, references and SLA targets included.
    let desk = app.desk().await;
    expect_json(
        app.post("/api/v1/sla/policies", &desk.admin)
            .json(&json!({"name": "Everything", "definition": {"targets": [
                {"kind": "first_response", "secs": 900},
                {"kind": "resolution", "secs": 14400}]}}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let by_agent = json!({"title": "VPN drops every hour", "description": "Since Monday",
        "impact": 2, "urgency": 3, "priority": 1, "category": "network",
        "requester": desk.requester.username, "assignment_group": desk.group_name,
        "assignee": desk.agent2.username});
    let by_requester = json!({"title": "Printer offline", "impact": 3, "urgency": 3});
    for (token, body) in [
        (&desk.agent.token, by_agent),
        (&desk.requester.token, by_requester),
    ] {
        let mut created = app.create_incident(token, body).await;
        let mut read = app.incident(token, s(&created, "id")).await;
        // Elapsed and remaining time move on between the two answers.
        for v in [&mut created, &mut read] {
            for t in v["sla"].as_array_mut().unwrap() {
                t.as_object_mut().unwrap().remove("elapsed_secs");
                t.as_object_mut().unwrap().remove("remaining_secs");
                t.as_object_mut().unwrap().remove("percent");
            }
        }
        assert_eq!(created, read);
        assert_eq!(created["sla"].as_array().unwrap().len(), 2, "{created}");
    }
    let created = app
        .create_incident(
            &desk.agent.token,
            json!({"title": "Disk full", "impact": 3, "urgency": 3,
                "assignment_group": desk.group, "assignee": desk.agent2.id}),
        )
        .await;
    assert_eq!(
        created["assignment_group"]["name"],
        desk.group_name.as_str()
    );
    assert_eq!(
        created["assignee"]["username"],
        desk.agent2.username.as_str()
    );
    assert_eq!(
        created["requester"]["username"],
        desk.agent.username.as_str()
    );
    app.finish().await;
}
