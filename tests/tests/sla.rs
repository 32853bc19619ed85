//! SLA calendars, policies, timers on incidents, and the breach worker.

use keel_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn policy(app: &TestApp, admin: &str, body: Value) -> Value {
    expect_json(
        app.post("/api/v1/sla/policies", admin)
            .json(&body)
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await
}

/// A business calendar made from `calendar`, and a policy named `name`
/// with a one-hour resolution target in it; the calendar as created.
async fn calendar_with_hour_target(
    app: &TestApp,
    admin: &str,
    calendar: Value,
    name: &str,
) -> Value {
    let cal = expect_json(
        app.post("/api/v1/sla/calendars", admin)
            .json(&calendar)
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    policy(
        app,
        admin,
        json!({"name": name, "definition": {
        "targets": [{"kind": "resolution", "secs": 3600, "calendar": cal["id"]}]}}),
    )
    .await;
    cal
}

fn target<'a>(incident: &'a Value, kind: &str) -> &'a Value {
    incident["sla"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} target in {incident}"))
}

/// An incident's timers without what moves with the clock (elapsed and
/// remaining seconds, percent), so that two reads a second apart compare
/// equal.
fn timers(incident: &Value) -> Value {
    let mut sla = incident["sla"].clone();
    for t in sla.as_array_mut().into_iter().flatten() {
        if let Some(t) = t.as_object_mut() {
            for moving in ["elapsed_secs", "remaining_secs", "percent"] {
                assert!(t.remove(moving).is_some(), "no {moving} in {incident}");
            }
        }
    }
    sla
}

fn actions_of(history: &Value, action: &str) -> usize {
    items(history)
        .iter()
        .filter(|h| h["action"] == action)
        .count()
}

both!(an_incident_gets_the_targets_of_the_first_matching_policy);
async fn an_incident_gets_the_targets_of_the_first_matching_policy(app: TestApp) {
    let desk = app.desk().await;
    let admin = &desk.admin;
    policy(&app, admin, json!({"name": "Critical", "position": 1, "definition": {
        "conditions": {"priorities": [1]},
        "targets": [{"kind": "first_response", "secs": 900}, {"kind": "resolution", "secs": 14400}]}})).await;
    policy(
        &app,
        admin,
        json!({"name": "Everything else", "position": 9, "definition": {
        "targets": [{"kind": "resolution", "secs": 432000}]}}),
    )
    .await;
    // Inactive policies are never chosen, whatever their position.
    policy(
        &app,
        admin,
        json!({"name": "Retired", "position": 0, "active": false, "definition": {
        "targets": [{"kind": "resolution", "secs": 60}]}}),
    )
    .await;

    let p1 = app
        .create_incident(
            &desk.agent.token,
            json!({"title": "Core switch down", "impact": 1, "urgency": 1}),
        )
        .await;
    assert_eq!(p1["priority"], 1);
    assert_eq!(p1["sla"].as_array().unwrap().len(), 2, "{p1}");
    assert_eq!(target(&p1, "first_response")["target_secs"], 900);
    assert_eq!(target(&p1, "resolution")["target_secs"], 14400);
    assert_eq!(target(&p1, "resolution")["state"], "in_progress");
    assert!(target(&p1, "resolution")["due_at"].is_string());

    let p5 = app
        .simple_incident(&desk.requester.token, "Mouse squeaks")
        .await;
    assert_eq!(p5["sla"].as_array().unwrap().len(), 1, "{p5}");
    assert_eq!(target(&p5, "resolution")["target_secs"], 432000);
    // The requester sees the promise made to them.
    let seen = app.incident(&desk.requester.token, s(&p5, "id")).await;
    assert_eq!(target(&seen, "resolution")["target_secs"], 432000);
    // A list page shows each incident with its own timers (two and one),
    // as a get does, in every order the list can take.
    let p3 = app
        .create_incident(
            &desk.agent.token,
            json!({"title": "Printer offline", "impact": 2, "urgency": 2}),
        )
        .await;
    for sort in ["-created_at", "number", "-priority"] {
        let list = app
            .list_incidents(&desk.agent.token, &[("sort", sort)])
            .await;
        assert_eq!(items(&list).len(), 3, "{sort}");
        for item in items(&list) {
            let one = app.incident(&desk.agent.token, s(item, "id")).await;
            assert_eq!(timers(item), timers(&one), "{sort}: {item}");
        }
    }
    let open = app
        .list_incidents(&desk.agent.token, &[("state", "new,in_progress")])
        .await;
    assert_eq!(items(&open).len(), 3);
    assert!(items(&open).iter().any(|i| i["id"] == p3["id"]));
    for item in items(&open) {
        let n = item["sla"].as_array().map(Vec::len);
        let want = if item["priority"] == 1 { 2 } else { 1 };
        assert_eq!(n, Some(want), "{item}");
    }
    app.finish().await;
}

both!(a_deleted_policys_timers_keep_their_targets_and_name_no_policy);
async fn a_deleted_policys_timers_keep_their_targets_and_name_no_policy(app: TestApp) {
    let desk = app.desk().await;
    let admin = &desk.admin;
    let critical = policy(&app, admin, json!({"name": "Critical", "position": 1, "definition": {
        "conditions": {"priorities": [1]},
        "targets": [{"kind": "first_response", "secs": 900}, {"kind": "resolution", "secs": 14400}]}})).await;
    let rest = policy(
        &app,
        admin,
        json!({"name": "Everything else", "position": 9, "definition": {
        "targets": [{"kind": "resolution", "secs": 432000}]}}),
    )
    .await;
    let p1 = app
        .create_incident(
            &desk.agent.token,
            json!({"title": "Core switch down", "impact": 1, "urgency": 1,
                "assignment_group": desk.group}),
        )
        .await;
    let p3 = app
        .create_incident(
            &desk.agent.token,
            json!({"title": "Printer offline", "impact": 2, "urgency": 2}),
        )
        .await;
    assert_eq!(target(&p1, "resolution")["policy_id"], critical["id"]);
    let resp = app
        .delete(
            &format!("/api/v1/sla/policies/{}", s(&critical, "id")),
            admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    // Its incident keeps both targets, as they were, measured by no policy.
    let after = app.incident(&desk.agent.token, s(&p1, "id")).await;
    assert_eq!(after["sla"].as_array().map(Vec::len), Some(2), "{after}");
    for kind in ["first_response", "resolution"] {
        let (was, is) = (target(&p1, kind), target(&after, kind));
        assert!(is["policy_id"].is_null(), "{after}");
        assert_eq!(is["target_secs"], was["target_secs"]);
        assert_eq!(is["due_at"], was["due_at"]);
    }
    // Another policy's timers still name it, and a page shows what a get does.
    let other = app.incident(&desk.agent.token, s(&p3, "id")).await;
    assert_eq!(target(&other, "resolution")["policy_id"], rest["id"]);
    let list = app.list_incidents(&desk.agent.token, &[]).await;
    for item in items(&list) {
        let one = app.incident(&desk.agent.token, s(item, "id")).await;
        assert_eq!(timers(item), timers(&one), "{item}");
    }
    // The incident goes on without it: P1 now falls to the other policy.
    let started = app
        .transition(&desk.agent.token, s(&p1, "id"), json!({"action": "start"}))
        .await;
    assert_eq!(
        target(&started, "first_response")["state"],
        "met",
        "{started}"
    );
    assert_eq!(target(&started, "resolution")["policy_id"], rest["id"]);
    app.finish().await;
}

both!(on_hold_pauses_the_clock_and_the_targets_stop_when_met);
async fn on_hold_pauses_the_clock_and_the_targets_stop_when_met(app: TestApp) {
    let desk = app.desk().await;
    policy(&app, &desk.admin, json!({"name": "Default", "definition": {
        "targets": [{"kind": "first_response", "secs": 3600}, {"kind": "resolution", "secs": 86400}]}})).await;
    let inc = app
        .create_incident(
            &desk.agent.token,
            json!({"title": "Printer offline", "impact": 2, "urgency": 2,
            "requester": desk.requester.username, "assignment_group": desk.group}),
        )
        .await;
    let id = s(&inc, "id").to_owned();
    let started = app
        .transition(&desk.agent.token, &id, json!({"action": "start"}))
        .await;
    assert_eq!(
        target(&started, "first_response")["state"],
        "met",
        "an agent's transition is the first response"
    );

    let held = app
        .transition(
            &desk.agent.token,
            &id,
            json!({"action": "hold", "hold_reason": "awaiting_supplier"}),
        )
        .await;
    let r = target(&held, "resolution");
    assert_eq!(r["state"], "paused", "{held}");
    assert!(r["due_at"].is_null(), "no due time while paused");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let still = app.incident(&desk.agent.token, &id).await;
    assert_eq!(
        target(&still, "resolution")["elapsed_secs"],
        r["elapsed_secs"],
        "paused time does not count"
    );

    let resumed = app
        .transition(&desk.agent.token, &id, json!({"action": "resume"}))
        .await;
    assert_eq!(target(&resumed, "resolution")["state"], "in_progress");
    let resolved = app.resolve(&desk.agent.token, &id).await;
    let r = target(&resolved, "resolution");
    assert_eq!(r["state"], "met", "{resolved}");

    // Reopening restarts the resolution clock without counting the resolved time.
    let reopened = app
        .transition(&desk.requester.token, &id, json!({"action": "reopen"}))
        .await;
    assert_eq!(target(&reopened, "resolution")["state"], "in_progress");
    app.finish().await;
}

both!(a_new_priority_keeps_the_elapsed_time_and_the_pause_history);
async fn a_new_priority_keeps_the_elapsed_time_and_the_pause_history(app: TestApp) {
    // The GLPI bug #15605 this guards against: changing the priority (and so
    // the policy) restarted the clock and forgot the pauses.
    let desk = app.desk().await;
    policy(
        &app,
        &desk.admin,
        json!({"name": "Urgent", "position": 1, "definition": {
        "conditions": {"priorities": [1]}, "targets": [{"kind": "resolution", "secs": 600}]}}),
    )
    .await;
    policy(
        &app,
        &desk.admin,
        json!({"name": "Normal", "position": 2, "definition": {
        "targets": [{"kind": "resolution", "secs": 86400}]}}),
    )
    .await;
    let inc = app
        .create_incident(
            &desk.agent.token,
            json!({"title": "Payroll export fails", "impact": 3, "urgency": 3,
            "assignment_group": desk.group}),
        )
        .await;
    let id = s(&inc, "id").to_owned();
    assert_eq!(target(&inc, "resolution")["target_secs"], 86400);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    app.transition(&desk.agent.token, &id, json!({"action": "start"}))
        .await;
    app.transition(
        &desk.agent.token,
        &id,
        json!({"action": "hold", "hold_reason": "awaiting_change"}),
    )
    .await;
    let before = app.incident(&desk.agent.token, &id).await;
    let elapsed_before = target(&before, "resolution")["elapsed_secs"]
        .as_i64()
        .unwrap();
    assert!(elapsed_before >= 2, "{before}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let version = before["version"].as_i64().unwrap();
    let resp = app
        .patch_incident(
            &desk.agent.token,
            &id,
            version,
            &json!({"impact": 1, "urgency": 1}),
        )
        .await;
    let after = expect_json(resp, StatusCode::OK).await;
    let r = target(&after, "resolution");
    assert_eq!(after["priority"], 1);
    assert_eq!(
        r["target_secs"], 600,
        "the urgent policy now applies: {after}"
    );
    assert_eq!(r["state"], "paused", "still on hold, still paused");
    assert_eq!(
        r["elapsed_secs"].as_i64().unwrap(),
        elapsed_before,
        "neither restarted nor counting the pause"
    );
    app.finish().await;
}

both!(
    warnings_and_breaches_are_recorded_once_and_escalate,
    |cfg: &mut keel_server::Config| {
        // The test drives the worker itself.
        cfg.sla.scan_interval_secs = 3600;
    }
);
async fn warnings_and_breaches_are_recorded_once_and_escalate(app: TestApp) {
    let desk = app.desk().await;
    let escalation = app.create_group(&desk.admin, "major-incident-team").await;
    policy(&app, &desk.admin, json!({"name": "Tight", "definition": {
        "targets": [{"kind": "first_response", "secs": 1}, {"kind": "resolution", "secs": 86400}],
        "warn_percents": [50],
        "escalations": [
            {"target": "first_response", "on": "breach", "action": {"reassign": {"group": escalation}}},
            {"target": "first_response", "on": {"warning": 50}, "action": "raise_priority"}
        ]}})).await;
    let inc = app
        .create_incident(&desk.agent.token, json!({"title": "VPN down for everyone", "impact": 2, "urgency": 2,
            "requester": desk.requester.username, "assignment_group": desk.group, "assignee": desk.agent.username}))
        .await;
    let id = s(&inc, "id").to_owned();
    assert_eq!(inc["priority"], 3);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    // Two workers (as two Keel nodes would) race over the same due timers.
    let (a, b) = (app.store().await, app.store().await);
    let (ra, rb) = tokio::join!(a.sla_step(100), b.sla_step(100));
    let handled = ra.unwrap() + rb.unwrap();
    assert!(handled >= 1, "the breached timer was handled");
    a.sla_step(100).await.unwrap();
    b.sla_step(100).await.unwrap();
    a.close().await;
    b.close().await;

    let history = app
        .get_json(
            &format!("/api/v1/incidents/{id}/history"),
            &desk.agent.token,
        )
        .await;
    assert_eq!(actions_of(&history, "sla_warning"), 1, "{history}");
    assert_eq!(actions_of(&history, "sla_breached"), 1, "{history}");
    assert_eq!(actions_of(&history, "sla_escalated"), 2, "{history}");
    let after = app.incident(&desk.agent.token, &id).await;
    assert_eq!(after["priority"], 2, "raised one step on the warning");
    assert_eq!(
        after["assignment_group"]["id"],
        escalation.as_str(),
        "reassigned on the breach"
    );
    assert!(after["assignee"].is_null());
    let fr = target(&after, "first_response");
    assert_eq!(fr["state"], "breached");
    assert!(fr["breached_at"].is_string());

    let breached = app
        .list_incidents(&desk.agent.token, &[("sla_state", "breached")])
        .await;
    assert_eq!(items(&breached).len(), 1);
    // A list page shows the same timers as the incident itself.
    assert_eq!(timers(&items(&breached)[0]), timers(&after));
    assert_eq!(after["sla"].as_array().map(Vec::len), Some(2), "{after}");
    let due_soon = app
        .list_incidents(
            &desk.agent.token,
            &[("sla_due_before", "2999-01-01T00:00:00Z")],
        )
        .await;
    assert_eq!(
        items(&due_soon).len(),
        1,
        "the resolution target is still running"
    );
    // Filters never widen what a requester sees.
    let other = app
        .list_incidents(&desk.requester2.token, &[("sla_state", "breached")])
        .await;
    assert!(items(&other).is_empty());
    app.finish().await;
}

both!(a_target_in_a_business_calendar_falls_due_in_working_hours);
async fn a_target_in_a_business_calendar_falls_due_in_working_hours(app: TestApp) {
    let desk = app.desk().await;
    let cal = calendar_with_hour_target(
        &app,
        &desk.admin,
        json!({"name": "Office", "tz": "UTC",
            "week": {"monday": ["09:00-17:00"], "tuesday": ["09:00-17:00"], "wednesday": ["09:00-17:00"],
                     "thursday": ["09:00-17:00"], "friday": ["09:00-17:00"]}}),
        "Office hours",
    )
    .await;
    let inc = app
        .simple_incident(&desk.requester.token, "Scanner jams")
        .await;
    let due: chrono::DateTime<chrono::Utc> = target(&inc, "resolution")["due_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    use chrono::{Datelike, Timelike};
    assert!(
        due.weekday().number_from_monday() <= 5,
        "due on a weekday: {due}"
    );
    let secs = due.num_seconds_from_midnight();
    assert!(
        (9 * 3600..=17 * 3600).contains(&secs),
        "due in working hours: {due}"
    );

    // The calendar cannot go while a policy measures in it.
    let resp = app
        .delete(
            &format!("/api/v1/sla/calendars/{}", s(&cal, "id")),
            &desk.admin,
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "sla.calendar_in_use").await;
    app.finish().await;
}

both!(calendars_and_policies_are_validated_and_managed_by_admins_only);
async fn calendars_and_policies_are_validated_and_managed_by_admins_only(app: TestApp) {
    let desk = app.desk().await;
    let admin = &desk.admin;
    let bad_calendars = [
        (
            json!({"name": "Mars", "tz": "Mars/Olympus_Mons", "week": {}}),
            "sla.unknown_time_zone",
        ),
        (
            json!({"name": "Backwards", "tz": "UTC", "week": {"monday": ["17:00-09:00"]}}),
            "sla.invalid_hours",
        ),
        (
            json!({"name": "Nonsense", "tz": "UTC", "week": {"monday": ["nine to five"]}}),
            "sla.invalid_hours",
        ),
        (
            json!({"name": "", "tz": "UTC", "week": {}}),
            "validation.invalid_text",
        ),
    ];
    for (body, code) in bad_calendars {
        let resp = app
            .post("/api/v1/sla/calendars", admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 422, code).await;
    }
    let bad_policies = [
        json!({"name": "Empty", "definition": {"targets": []}}),
        json!({"name": "Zero", "definition": {"targets": [{"kind": "resolution", "secs": 0}]}}),
        json!({"name": "Ghost calendar", "definition": {"targets": [{"kind": "resolution", "secs": 60,
            "calendar": "01936f1e-8c2a-7cc0-9a56-0f5b7e0c1d2e"}]}}),
    ];
    for body in bad_policies {
        let resp = app
            .post("/api/v1/sla/policies", admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let good =
        json!({"name": "Ok", "definition": {"targets": [{"kind": "resolution", "secs": 60}]}});
    for who in [&desk.agent.token, &desk.requester.token] {
        let resp = app
            .post("/api/v1/sla/policies", who)
            .json(&good)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 403, "auth.forbidden").await;
    }
    policy(&app, admin, good.clone()).await;
    let resp = app
        .post("/api/v1/sla/policies", admin)
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "sla.policy_name_taken").await;
    let listed = app
        .get_json("/api/v1/sla/policies", &desk.agent.token)
        .await;
    assert_eq!(items(&listed).len(), 1, "agents read policies");
    let resp = app
        .get("/api/v1/sla/policies", &desk.requester.token)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 403, "auth.forbidden").await;

    // Holidays from an iCalendar file.
    let cal = expect_json(
        app.post("/api/v1/sla/calendars", admin)
            .json(&json!({"name": "Berlin", "tz": "Europe/Berlin", "week": {"monday": ["09:00-17:00"]}}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20261225\r\nRRULE:FREQ=YEARLY\r\nSUMMARY:Christmas\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20270101\r\nSUMMARY:New year\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let imported = expect_json(
        app.post(
            &format!("/api/v1/sla/calendars/{}/holidays", s(&cal, "id")),
            admin,
        )
        .header("content-type", "text/calendar")
        .body(ics)
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    let holidays = imported["holidays"].as_array().unwrap();
    assert!(
        holidays.contains(&json!({"yearly": {"month": 12, "day": 25}})),
        "{imported}"
    );
    assert!(
        holidays.contains(&json!({"date": "2027-01-01"})),
        "{imported}"
    );
    let resp = app
        .post(
            &format!("/api/v1/sla/calendars/{}/holidays", s(&cal, "id")),
            admin,
        )
        .header("content-type", "text/calendar")
        .body("not a calendar")
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "sla.invalid_ics").await;
    app.finish().await;
}

both!(
    the_compliance_report_counts_met_and_breached_targets,
    |cfg: &mut keel_server::Config| {
        cfg.sla.scan_interval_secs = 3600;
    }
);
async fn the_compliance_report_counts_met_and_breached_targets(app: TestApp) {
    let desk = app.desk().await;
    let p = policy(
        &app,
        &desk.admin,
        json!({"name": "Quick response", "definition": {
        "targets": [{"kind": "first_response", "secs": 2}]}}),
    )
    .await;
    let from = chrono::Utc::now() - chrono::Duration::minutes(1);
    // One answered in time, one left waiting past its target.
    let met = app
        .create_incident(
            &desk.agent.token,
            json!({"title": "Answered", "impact": 1, "urgency": 1, "assignment_group": desk.group}),
        )
        .await;
    app.comment(&desk.agent.token, s(&met, "id"), "On it", "public")
        .await;
    app.create_incident(
        &desk.agent.token,
        json!({"title": "Forgotten", "impact": 3, "urgency": 3}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let store = app.store().await;
    store.sla_step(100).await.unwrap();
    store.close().await;

    let to = chrono::Utc::now() + chrono::Duration::minutes(1);
    let path = with_query(
        "/api/v1/reports/sla",
        &[
            ("from", &from.to_rfc3339()),
            ("to", &to.to_rfc3339()),
            ("kind", "first_response"),
        ],
    );
    let report = app.get_json(&path, &desk.agent.token).await;
    let overall = &report["overall"];
    assert_eq!(overall["total"], 2, "{report}");
    assert_eq!(overall["met"], 1);
    assert_eq!(overall["breached"], 1);
    assert_eq!(overall["compliance_percent"], 50.0);
    let by_policy = report["by_policy"].as_array().unwrap();
    assert_eq!(by_policy.len(), 1);
    assert_eq!(by_policy[0]["policy"]["id"], p["id"]);
    let by_priority = report["by_priority"].as_array().unwrap();
    assert_eq!(
        by_priority
            .iter()
            .map(|x| x["priority"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 5]
    );
    assert_eq!(by_priority[0]["compliance"]["compliance_percent"], 100.0);
    assert_eq!(by_priority[1]["compliance"]["compliance_percent"], 0.0);
    let by_group = report["by_group"].as_array().unwrap();
    assert_eq!(by_group.len(), 2, "the desk group and unassigned: {report}");

    // Requesters get no reports; a backwards period is refused.
    let resp = app.get(&path, &desk.requester.token).send().await.unwrap();
    assert_problem(resp, 403, "auth.forbidden").await;
    let backwards = with_query(
        "/api/v1/reports/sla",
        &[("from", &to.to_rfc3339()), ("to", &from.to_rfc3339())],
    );
    let resp = app.get(&backwards, &desk.agent.token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    app.finish().await;
}

both!(calendar_exceptions_give_a_date_its_own_hours);
async fn calendar_exceptions_give_a_date_its_own_hours(app: TestApp) {
    let desk = app.desk().await;
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today.succ_opt().unwrap();
    // No weekly hours at all: only the two exceptional days are worked.
    let cal = calendar_with_hour_target(
        &app,
        &desk.admin,
        json!({"name": "Event weekend", "tz": "UTC", "week": {},
            "exceptions": [{"date": today, "hours": ["00:00-24:00"]}, {"date": tomorrow, "hours": ["00:00-24:00"]}]}),
        "Event",
    )
    .await;
    assert_eq!(
        cal["exceptions"][0]["hours"],
        json!(["00:00-24:00"]),
        "{cal}"
    );
    let inc = app
        .simple_incident(&desk.requester.token, "Stage lights")
        .await;
    let due: chrono::DateTime<chrono::Utc> = target(&inc, "resolution")["due_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = chrono::Utc::now();
    assert!(
        due > now && due < now + chrono::Duration::days(2),
        "due within the exceptional days: {due}"
    );

    let resp = app
        .post("/api/v1/sla/calendars", &desk.admin)
        .json(&json!({"name": "Bad", "tz": "UTC", "week": {}, "exceptions": [{"date": today, "hours": ["17:00-09:00"]}]}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 422, "sla.invalid_hours").await;
    app.finish().await;
}

both!(a_calendars_new_hours_move_the_due_time_shown_on_the_next_get_and_page);
async fn a_calendars_new_hours_move_the_due_time_shown_on_the_next_get_and_page(app: TestApp) {
    use chrono::{DateTime, Duration, Timelike, Utc};
    let desk = app.desk().await;
    let days = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let every_day = |hours: &str| -> Value {
        days.iter()
            .map(|d| ((*d).to_owned(), json!([hours])))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let cal = calendar_with_hour_target(
        &app,
        &desk.admin,
        json!({"name": "Round the clock", "tz": "UTC", "week": every_day("00:00-24:00")}),
        "One hour",
    )
    .await;
    let inc = app
        .simple_incident(&desk.requester.token, "Badge reader dead")
        .await;
    let path = format!("/api/v1/incidents/{}", s(&inc, "id"));
    let page = format!("/api/v1/incidents?requester={}", desk.requester.id);
    let due_of = |incident: &Value| -> DateTime<Utc> {
        target(incident, "resolution")["due_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let created: DateTime<Utc> = s(&inc, "created_at").parse().unwrap();
    let started = created.with_nanosecond(0).unwrap();
    // Read several times, on whichever of the server's threads, before the
    // change: every view after it must count again.
    for _ in 0..6 {
        let got = expect_json(
            app.get(&path, &desk.agent.token).send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(due_of(&got), started + Duration::hours(1), "{got}");
        let listed = expect_json(
            app.get(&page, &desk.agent.token).send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(due_of(&items(&listed)[0]), started + Duration::hours(1));
    }

    // From now on one hour a day, starting two hours after the incident's
    // hour: its target falls due at that hour's end.
    let start = (started.hour() + 2) % 24;
    let window = format!("{start:02}:00-{:02}:00", start + 1);
    expect_json(
        app.patch(
            &format!("/api/v1/sla/calendars/{}", s(&cal, "id")),
            &desk.admin,
        )
        .json(&json!({"week": every_day(&window)}))
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    let mut opens = started.with_minute(0).unwrap().with_second(0).unwrap()
        + Duration::hours(i64::from(start) - i64::from(started.hour()));
    if opens <= started {
        opens += Duration::days(1);
    }
    let due = opens + Duration::hours(1);
    assert_ne!(due, started + Duration::hours(1));
    for _ in 0..6 {
        let got = expect_json(
            app.get(&path, &desk.agent.token).send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(due_of(&got), due, "{got}");
        let listed = expect_json(
            app.get(&page, &desk.agent.token).send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(due_of(&items(&listed)[0]), due);
    }
    app.finish().await;
}
