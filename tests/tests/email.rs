//! Email notifications through the outbox, received by a real SMTP server.

use keel_server::config::Secret;
use keel_tests::*;
use reqwest::StatusCode;
use serde_json::json;

async fn app_mailing_to(db: Db, sink: &SmtpSink) -> Option<TestApp> {
    let url = sink.url();
    TestApp::spawn_with(db, move |cfg| {
        cfg.smtp.url = Some(Secret::new(url));
        cfg.smtp.from = "Keel Desk <desk@keel.test>".into();
        cfg.smtp.poll_interval_secs = 1;
        cfg.smtp.retry_base_secs = 1;
    })
    .await
}

fn to(mail: &Mail, who: &str) -> bool {
    mail.to.iter().any(|t| t == &format!("{who}@example.com"))
}

/// Whether no two of `mails` share a Message-ID (none was sent twice).
fn distinct_message_ids(mails: &[Mail]) -> bool {
    let mut ids: Vec<&str> = mails
        .iter()
        .filter_map(|x| x.header("message-id"))
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    ids.len() == n
}

both_db!(notifications_reach_the_right_people_threaded_by_incident);
async fn notifications_reach_the_right_people_threaded_by_incident(db: Db) {
    let sink = SmtpSink::start().await;
    let Some(app) = app_mailing_to(db, &sink).await else {
        return;
    };
    let desk = app.desk().await;
    let inc = app
        .simple_incident(&desk.requester.token, "Laptop battery swells")
        .await;
    let id = s(&inc, "id").to_owned();
    let number = s(&inc, "number").to_owned();

    // The acknowledgement starts the thread.
    let mails = sink
        .wait_for("the acknowledgement", |m| m.iter().any(|x| to(x, "req1")))
        .await;
    let ack = mails.iter().find(|x| to(x, "req1")).unwrap();
    assert_eq!(ack.subject(), format!("[{number}] Laptop battery swells"));
    assert_eq!(
        ack.header("message-id"),
        Some(format!("<{number}@keel.test>").as_str())
    );

    // Assignment tells the new assignee.
    let version = inc["version"].as_i64().unwrap();
    let resp = app
        .patch_incident(
            &desk.agent.token,
            &id,
            version,
            &json!({"assignment_group": desk.group, "assignee": desk.agent2.username}),
        )
        .await;
    expect_json(resp, StatusCode::OK).await;
    let mails = sink
        .wait_for("the assignment", |m| m.iter().any(|x| to(x, "agent2")))
        .await;
    let assigned = mails.iter().find(|x| to(x, "agent2")).unwrap();
    assert!(
        assigned
            .subject()
            .starts_with(&format!("[{number}] Assigned")),
        "{}",
        assigned.subject()
    );

    // A work note tells nobody; a public comment tells the requester, threaded.
    app.comment(&desk.agent2.token, &id, "Checked the warranty", "internal")
        .await;
    app.comment(
        &desk.agent2.token,
        &id,
        "Please stop using it; a replacement is on its way",
        "public",
    )
    .await;
    let mails = sink
        .wait_for("the comment", |m| {
            m.iter()
                .any(|x| to(x, "req1") && x.raw.contains("replacement is on its way"))
        })
        .await;
    let reply = mails
        .iter()
        .find(|x| to(x, "req1") && x.raw.contains("replacement"))
        .unwrap();
    assert_eq!(
        reply.header("in-reply-to"),
        Some(format!("<{number}@keel.test>").as_str())
    );
    assert_eq!(
        reply.header("references"),
        Some(format!("<{number}@keel.test>").as_str())
    );
    assert!(
        mails
            .iter()
            .all(|x| !x.raw.contains("Checked the warranty")),
        "work notes are never mailed"
    );

    // Resolution tells the requester.
    app.resolve(&desk.agent2.token, &id).await;
    let mails = sink
        .wait_for("the resolution", |m| {
            m.iter()
                .any(|x| to(x, "req1") && x.subject().contains("Now resolved"))
        })
        .await;
    // No duplicates: every message id is unique.
    assert!(distinct_message_ids(&mails), "a message was sent twice");
    // The actor is never told about their own action.
    assert!(
        mails
            .iter()
            .all(|x| !(to(x, "agent2") && x.raw.contains("replacement is on its way")))
    );
    app.finish().await;
}

both_db!(raising_an_incident_for_a_group_by_name_or_by_id_tells_its_members);
async fn raising_an_incident_for_a_group_by_name_or_by_id_tells_its_members(db: Db) {
    let sink = SmtpSink::start().await;
    let Some(app) = app_mailing_to(db, &sink).await else {
        return;
    };
    let desk = app.desk().await;
    // A third member who does not want to hear of assignments.
    let agent3 = app.person(&desk.admin, "agent3", "agent").await;
    app.add_member(&desk.admin, &desk.group, &agent3.id).await;
    let resp = app
        .put("/api/v1/me/notifications/incident.assigned", &agent3.token)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;

    // By name (blanks around it do not matter): the group's members hear
    // of it, but not the agent who raised it.
    let by_name = app
        .create_incident(
            &desk.agent.token,
            json!({"title": "Core switch fan failing", "impact": 2, "urgency": 2,
                   "assignment_group": format!(" {} ", desk.group_name)}),
        )
        .await;
    assert_eq!(by_name["assignment_group"]["id"], desk.group.as_str());
    assert_eq!(
        by_name["assignment_group"]["name"],
        desk.group_name.as_str()
    );
    let first = s(&by_name, "number").to_owned();
    sink.wait_for("the first assignment", |m| {
        m.iter()
            .any(|x| to(x, "agent2") && x.subject().starts_with(&format!("[{first}] Assigned")))
    })
    .await;

    // By id: the same, told to the other agent.
    let by_id = app
        .create_incident(
            &desk.agent2.token,
            json!({"title": "UPS on battery", "impact": 2, "urgency": 2,
                   "assignment_group": desk.group}),
        )
        .await;
    assert_eq!(by_id["assignment_group"]["name"], desk.group_name.as_str());
    let second = s(&by_id, "number").to_owned();
    let mails = sink
        .wait_for("the second assignment", |m| {
            m.iter().any(|x| {
                to(x, "agent1") && x.subject().starts_with(&format!("[{second}] Assigned"))
            })
        })
        .await;
    let assigned = |n: &str, who: &str| {
        mails
            .iter()
            .filter(|x| to(x, who) && x.subject().starts_with(&format!("[{n}] Assigned")))
            .count()
    };
    assert_eq!(assigned(&first, "agent2"), 1);
    assert_eq!(assigned(&first, "agent1"), 0, "the actor was told");
    assert_eq!(assigned(&second, "agent2"), 0, "the actor was told");
    assert!(
        mails.iter().all(|x| !to(x, "agent3")),
        "a member who opted out was told"
    );
    app.finish().await;
}

both_db!(a_change_to_a_group_or_to_anyone_s_settings_applies_to_the_very_next_incident);
async fn a_change_to_a_group_or_to_anyone_s_settings_applies_to_the_very_next_incident(db: Db) {
    // Keel keeps who hears of a create (a group's members, a requester's
    // address and settings) between creates; a change made through it must
    // apply to the next create at once, not when the kept copy expires.
    let sink = SmtpSink::start().await;
    let Some(app) = app_mailing_to(db, &sink).await else {
        return;
    };
    let desk = app.desk().await;
    let agent3 = app.person(&desk.admin, "agent3", "agent").await;
    let agent4 = app.person(&desk.admin, "agent4", "agent").await;
    app.add_member(&desk.admin, &desk.group, &agent4.id).await;
    let raise = |title: &str| {
        json!({"title": title, "impact": 2, "urgency": 2,
               "requester": "req1", "assignment_group": desk.group})
    };

    // The first incident, raised by agent1 for req1 into the group: req1 is
    // acknowledged, agent2 and agent4 are told of the assignment.
    let first = app
        .create_incident(&desk.agent.token, raise("Badge reader dead"))
        .await;
    let first = s(&first, "number").to_owned();
    let told = |m: &[Mail], n: &str, who: &str| {
        m.iter()
            .any(|x| to(x, who) && x.subject().starts_with(&format!("[{n}]")))
    };
    sink.wait_for("the first incident's notices", |m| {
        told(m, &first, "req1") && told(m, &first, "agent2") && told(m, &first, "agent4")
    })
    .await;

    // Right away: agent3 joins, agent2 leaves, agent4 is deactivated and
    // req1 opts out of acknowledgements.
    app.add_member(&desk.admin, &desk.group, &agent3.id).await;
    let resp = app
        .delete(
            &format!("/api/v1/groups/{}/members/{}", desk.group, desk.agent2.id),
            &desk.admin,
        )
        .send()
        .await
        .unwrap();
    expect_status(resp, StatusCode::NO_CONTENT).await;
    let resp = app
        .patch(&format!("/api/v1/users/{}", agent4.id), &desk.admin)
        .json(&json!({ "active": false }))
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    let resp = app
        .put(
            "/api/v1/me/notifications/incident.created",
            &desk.requester.token,
        )
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    let second = app
        .create_incident(&desk.agent.token, raise("Badge reader dead again"))
        .await;
    let second = s(&second, "number").to_owned();

    let mails = sink
        .wait_for("the second incident's assignment", |m| {
            told(m, &second, "agent3")
        })
        .await;
    // The second incident's notices are written together, so anything
    // else about it would have been sent in the same round as agent3's.
    for (who, what) in [
        ("agent2", "a member who left was told"),
        ("agent4", "a deactivated member was told"),
        ("req1", "an opted-out requester was acknowledged"),
    ] {
        assert!(!told(&mails, &second, who), "{what}");
    }
    assert!(
        !told(&mails, &first, "agent3"),
        "a later member heard of the first"
    );
    app.finish().await;
}

both_db!(a_group_is_told_once_each_though_one_address_is_refused_and_one_greylisted);
async fn a_group_is_told_once_each_though_one_address_is_refused_and_one_greylisted(db: Db) {
    let sink = SmtpSink::start().await;
    let Some(app) = app_mailing_to(db, &sink).await else {
        return;
    };
    let desk = app.desk().await;
    // The sink refuses `refused…` for good and `greylisted…` the first time.
    for name in ["refused-ann", "greylisted-bob"] {
        let member = app.person(&desk.admin, name, "agent").await;
        app.add_member(&desk.admin, &desk.group, &member.id).await;
    }
    // Raised by the admin, who is not in the group, so every member hears.
    let inc = app
        .create_incident(
            &desk.admin,
            json!({"title": "Badge reader dead", "impact": 2, "urgency": 2,
                   "assignment_group": desk.group}),
        )
        .await;
    let number = s(&inc, "number").to_owned();
    let assigned = |m: &Mail, who: &str| {
        to(m, who) && m.subject().starts_with(&format!("[{number}] Assigned"))
    };
    sink.wait_for(
        "the assignment, the greylisted member's after a retry",
        |m| {
            ["agent1", "agent2", "greylisted-bob"]
                .iter()
                .all(|who| m.iter().any(|x| assigned(x, who)))
        },
    )
    .await;
    // Give any duplicate a chance to show up, then check there is none.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mails = sink.messages();
    for who in ["agent1", "agent2", "greylisted-bob"] {
        let n = mails.iter().filter(|x| assigned(x, who)).count();
        assert_eq!(n, 1, "{who} got the assignment {n} times");
    }
    assert!(mails.iter().all(|x| !to(x, "refused-ann")));
    assert!(
        distinct_message_ids(&mails),
        "each message has its own Message-ID"
    );
    // Both notices (the acknowledgement and the assignment) are done:
    // nobody is left pending, and the assignment counts as sent because it
    // reached someone.
    let counts = app.store().await.outbox_counts().await.unwrap();
    assert_eq!(counts, vec![("sent".to_owned(), 2)], "{counts:?}");
    app.finish().await;
}

both_db!(a_user_can_opt_out_of_one_kind_of_email);
async fn a_user_can_opt_out_of_one_kind_of_email(db: Db) {
    let sink = SmtpSink::start().await;
    let Some(app) = app_mailing_to(db, &sink).await else {
        return;
    };
    let desk = app.desk().await;
    let prefs = app
        .get_json("/api/v1/me/notifications", &desk.requester.token)
        .await;
    assert!(
        items(&prefs).iter().all(|p| p["enabled"] == true),
        "{prefs}"
    );
    let resp = app
        .put(
            "/api/v1/me/notifications/incident.commented",
            &desk.requester.token,
        )
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    let prefs = expect_json(resp, StatusCode::OK).await;
    assert!(
        items(&prefs)
            .iter()
            .any(|p| p["event"] == "incident.commented" && p["enabled"] == false)
    );
    let resp = app
        .put(
            "/api/v1/me/notifications/no.such.event",
            &desk.requester.token,
        )
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;

    let inc = app
        .simple_incident(&desk.requester.token, "Wifi drops")
        .await;
    let id = s(&inc, "id").to_owned();
    app.comment(&desk.agent.token, &id, "Which building?", "public")
        .await;
    app.resolve(&desk.agent.token, &id).await;
    let mails = sink
        .wait_for("the resolution", |m| {
            m.iter().any(|x| x.subject().contains("Now resolved"))
        })
        .await;
    assert!(
        mails.iter().all(|x| !x.raw.contains("Which building?")),
        "the opted-out comment mail was sent"
    );
    app.finish().await;
}

both_db!(mail_waits_out_an_smtp_outage_and_arrives_once);
async fn mail_waits_out_an_smtp_outage_and_arrives_once(db: Db) {
    let mut sink = SmtpSink::start().await;
    let Some(app) = app_mailing_to(db, &sink).await else {
        return;
    };
    let desk = app.desk().await;
    sink.kill();
    let inc = app
        .simple_incident(&desk.requester.token, "Outage-time incident")
        .await;
    let id = s(&inc, "id").to_owned();
    app.comment(
        &desk.agent.token,
        &id,
        "Written while the mail server was down",
        "public",
    )
    .await;
    // Several delivery attempts fail meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(sink.messages().is_empty());
    sink.restart().await;
    let mails = sink
        .wait_for("both messages after the outage", |m| {
            // Two different messages: the comment's mail also names the
            // incident, so the creation mail is the one without the comment.
            m.iter().any(|x| {
                x.raw.contains("Outage-time incident")
                    && !x.raw.contains("Written while the mail server was down")
            }) && m
                .iter()
                .any(|x| x.raw.contains("Written while the mail server was down"))
        })
        .await;
    // Give any duplicate a chance to show up, then check there is none.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let mails_after = sink.messages();
    assert_eq!(mails_after.len(), mails.len(), "nothing was sent twice");
    assert!(distinct_message_ids(&mails_after));
    app.finish().await;
}

both_db!(a_breach_can_notify_a_manager_by_email);
async fn a_breach_can_notify_a_manager_by_email(db: Db) {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let Some(app) = TestApp::spawn_with(db, move |cfg| {
        cfg.smtp.url = Some(Secret::new(url));
        cfg.smtp.from = "Keel Desk <desk@keel.test>".into();
        cfg.smtp.poll_interval_secs = 1;
        cfg.sla.scan_interval_secs = 3600;
    })
    .await
    else {
        return;
    };
    let desk = app.desk().await;
    expect_json(
        app.post("/api/v1/sla/policies", &desk.admin)
            .json(&json!({"name": "Watched", "definition": {
                "targets": [{"kind": "resolution", "secs": 1}],
                "escalations": [{"target": "resolution", "on": "breach", "action": {"notify": {"email": "duty.manager@example.com"}}}]}}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let bad = app
        .post("/api/v1/sla/policies", &desk.admin)
        .json(&json!({"name": "Bad", "definition": {"targets": [{"kind": "resolution", "secs": 1}],
            "escalations": [{"target": "resolution", "on": "breach", "action": {"notify": {"email": "not-an-address"}}}]}}))
        .send()
        .await
        .unwrap();
    assert_problem(bad, 422, "sla.invalid_policy").await;
    let inc = app
        .simple_incident(&desk.requester.token, "Core router flapping")
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let store = app.store().await;
    store.sla_step(100).await.unwrap();
    store.close().await;
    let mails = sink
        .wait_for("the manager's breach mail", |m| {
            m.iter()
                .any(|x| x.to.iter().any(|t| t == "duty.manager@example.com"))
        })
        .await;
    let mail = mails
        .iter()
        .find(|x| x.to.iter().any(|t| t == "duty.manager@example.com"))
        .unwrap();
    assert!(
        mail.subject().contains("SLA BREACHED"),
        "{}",
        mail.subject()
    );
    assert!(mail.subject().contains(s(&inc, "number")));
    app.finish().await;
}
