//! Listing incidents: filters, sorting, cursor pagination and search.

use std::collections::HashSet;

use keel_tests::*;
use serde_json::{Value, json};

fn numbers(list: &Value) -> Vec<String> {
    items(list)
        .iter()
        .map(|i| i["number"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

both!(list_filters_narrow_the_results);
async fn list_filters_narrow_the_results(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let major = app
        .create_incident(agent, json!({ "title": "Data centre flooded", "impact": 1, "urgency": 1, "major": true, "assignment_group": desk.group }))
        .await;
    let plain = app
        .create_incident(
            agent,
            json!({ "title": "Mouse broken", "impact": 2, "urgency": 2 }),
        )
        .await;
    let worked = app
        .create_incident(agent, json!({ "title": "Wifi flaky", "impact": 3, "urgency": 3, "assignment_group": desk.group_name }))
        .await;
    app.transition(agent, s(&worked, "id"), json!({ "action": "start" }))
        .await;
    let theirs = app
        .simple_incident(&desk.requester.token, "Keyboard sticky")
        .await;
    let after = chrono::Utc::now() + chrono::Duration::seconds(5);
    let id = |v: &Value| s(v, "id").to_owned();
    let (m, p, w, t) = (id(&major), id(&plain), id(&worked), id(&theirs));

    let q = |pairs: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            sorted(ids(&app.list_incidents(agent, &pairs).await))
        }
    };
    let set = |v: Vec<&String>| sorted(v.into_iter().cloned().collect());

    assert_eq!(q(vec![]).await, set(vec![&m, &p, &w, &t]));
    assert_eq!(
        q(vec![("state", "new".into())]).await,
        set(vec![&m, &p, &t])
    );
    assert_eq!(
        q(vec![("state", "in_progress".into())]).await,
        set(vec![&w])
    );
    assert_eq!(
        q(vec![("state", "new,in_progress".into())]).await,
        set(vec![&m, &p, &w, &t])
    );
    assert_eq!(
        q(vec![("state", "resolved".into())]).await,
        Vec::<String>::new()
    );
    assert_eq!(q(vec![("priority", "1".into())]).await, set(vec![&m]));
    assert_eq!(q(vec![("priority", "1,3".into())]).await, set(vec![&m, &p]));
    assert_eq!(q(vec![("priority", "5".into())]).await, set(vec![&w, &t]));
    assert_eq!(
        q(vec![("assignee", desk.agent.id.clone())]).await,
        set(vec![&w])
    );
    assert_eq!(
        q(vec![("assignee", "none".into())]).await,
        set(vec![&m, &p, &t])
    );
    assert_eq!(
        q(vec![("group", desk.group.clone())]).await,
        set(vec![&m, &w])
    );
    assert_eq!(q(vec![("group", "none".into())]).await, set(vec![&p, &t]));
    assert_eq!(
        q(vec![("requester", desk.requester.id.clone())]).await,
        set(vec![&t])
    );
    assert_eq!(
        q(vec![("requester", desk.agent.id.clone())]).await,
        set(vec![&m, &p, &w])
    );
    assert_eq!(q(vec![("major", "true".into())]).await, set(vec![&m]));
    assert_eq!(
        q(vec![("major", "false".into())]).await,
        set(vec![&p, &w, &t])
    );
    assert_eq!(
        q(vec![("state", "new".into()), ("priority", "1,2,3".into())]).await,
        set(vec![&m, &p])
    );
    assert_eq!(
        q(vec![("created_after", before.to_rfc3339())]).await,
        set(vec![&m, &p, &w, &t])
    );
    assert_eq!(
        q(vec![("created_after", after.to_rfc3339())]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        q(vec![("created_before", "2000-01-01T00:00:00Z".into())]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        q(vec![("created_before", after.to_rfc3339())]).await,
        set(vec![&m, &p, &w, &t])
    );
    assert_eq!(
        q(vec![("updated_after", after.to_rfc3339())]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        q(vec![("updated_before", before.to_rfc3339())]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        q(vec![
            ("updated_after", before.to_rfc3339()),
            ("state", "in_progress".into())
        ])
        .await,
        set(vec![&w])
    );
    // Offsets other than Z are fine too.
    let offset = before
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339();
    assert_eq!(
        q(vec![("created_after", offset)]).await,
        set(vec![&m, &p, &w, &t])
    );

    // Requesters only ever see their own.
    let mine = app.list_incidents(&desk.requester.token, &[]).await;
    assert_eq!(ids(&mine), vec![t.clone()]);
    let mut soft = Soft::default();
    for (k, v) in [
        ("requester", desk.agent.id.as_str()),
        ("major", "true"),
        ("state", "in_progress"),
        ("priority", "1"),
        ("group", desk.group.as_str()),
        ("assignee", desk.agent.id.as_str()),
        ("q", "flooded"),
    ] {
        let mine = app.list_incidents(&desk.requester.token, &[(k, v)]).await;
        soft.check(
            items(&mine).is_empty(),
            format!("a requester's list with {k}={v} shows {:?}", numbers(&mine)),
        );
    }
    soft.verify();
    assert!(items(&app.list_incidents(&desk.requester2.token, &[]).await).is_empty());
    app.finish().await;
}

both!(list_sorts_by_the_requested_key);
async fn list_sorts_by_the_requested_key(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    for (title, impact, urgency) in [
        ("b", 3, 3),
        ("a", 1, 1),
        ("d", 2, 2),
        ("c", 1, 2),
        ("e", 3, 2),
    ] {
        app.create_incident(
            agent,
            json!({ "title": title, "impact": impact, "urgency": urgency }),
        )
        .await;
    }
    let list = |sort: &'static str| {
        let app = &app;
        async move { app.list_incidents(agent, &[("sort", sort)]).await }
    };
    let by_number = list("number").await;
    assert_eq!(
        numbers(&by_number),
        [
            "INC0000001",
            "INC0000002",
            "INC0000003",
            "INC0000004",
            "INC0000005"
        ]
    );
    let by_number_desc = list("-number").await;
    assert_eq!(
        numbers(&by_number_desc),
        [
            "INC0000005",
            "INC0000004",
            "INC0000003",
            "INC0000002",
            "INC0000001"
        ]
    );
    let newest_first = list("-created_at").await;
    assert_eq!(
        numbers(&newest_first),
        numbers(&by_number_desc),
        "numbers are handed out in creation order"
    );
    let oldest_first = list("created_at").await;
    assert_eq!(numbers(&oldest_first), numbers(&by_number));
    let default = app.list_incidents(agent, &[]).await;
    assert_eq!(items(&default).len(), 5);

    let by_priority = list("priority").await;
    let ps: Vec<i64> = items(&by_priority)
        .iter()
        .map(|i| i["priority"].as_i64().unwrap())
        .collect();
    assert_eq!(ps, [1, 2, 3, 4, 5], "{by_priority}");
    let by_priority_desc = list("-priority").await;
    let ps: Vec<i64> = items(&by_priority_desc)
        .iter()
        .map(|i| i["priority"].as_i64().unwrap())
        .collect();
    assert_eq!(ps, [5, 4, 3, 2, 1]);

    // Touch the oldest: it becomes the most recently updated.
    let first = app.incident(agent, "INC0000001").await;
    let resp = app
        .patch_incident(
            agent,
            s(&first, "id"),
            1,
            &json!({ "description": "touched" }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let by_updated = list("-updated_at").await;
    assert_eq!(numbers(&by_updated)[0], "INC0000001");
    let by_updated_asc = list("updated_at").await;
    assert_eq!(
        numbers(&by_updated_asc).last().map(String::as_str),
        Some("INC0000001")
    );
    app.finish().await;
}

both!(cursor_pagination_walks_every_page_once);
async fn cursor_pagination_walks_every_page_once(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let mut all = Vec::new();
    for i in 0..7 {
        // Same priority for all, so that the tie-breaker decides the order.
        let inc = app
            .create_incident(
                agent,
                json!({ "title": format!("Page item {i}"), "impact": 2, "urgency": 2 }),
            )
            .await;
        all.push(s(&inc, "id").to_owned());
    }
    for sort in ["-created_at", "number", "priority", "-updated_at"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = Vec::new();
        loop {
            let mut query = vec![("limit", "3".to_owned()), ("sort", sort.to_owned())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let page = app.list_incidents(agent, &pairs).await;
            pages.push(items(&page).len());
            seen.extend(ids(&page));
            match &page["next"] {
                Value::Null => break,
                Value::String(next) => cursor = Some(next.clone()),
                other => panic!("next must be a string or null: {other}"),
            }
            assert!(
                pages.len() <= 5,
                "pagination does not end ({sort}): {pages:?}"
            );
        }
        assert_eq!(pages, [3, 3, 1], "{sort}");
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "no duplicates ({sort}): {seen:?}");
        assert_eq!(
            sorted(seen.clone()),
            sorted(all.clone()),
            "no gaps ({sort})"
        );
    }

    // An exact multiple of the page size ends with next = null, not an empty page.
    let first = app.list_incidents(agent, &[("limit", "7")]).await;
    assert_eq!(items(&first).len(), 7);
    assert_eq!(first["next"], Value::Null);

    // A cursor carries on with the same filter; it survives new records arriving.
    let page1 = app
        .list_incidents(agent, &[("limit", "3"), ("sort", "number")])
        .await;
    app.create_incident(
        agent,
        json!({ "title": "Late arrival", "impact": 2, "urgency": 2 }),
    )
    .await;
    let page2 = app
        .list_incidents(
            agent,
            &[
                ("limit", "3"),
                ("sort", "number"),
                ("cursor", s(&page1, "next")),
            ],
        )
        .await;
    assert_eq!(numbers(&page2), ["INC0000004", "INC0000005", "INC0000006"]);

    // A cursor from one sort is not valid for another.
    let resp = app
        .get(
            &incidents_query(&[("sort", "priority"), ("cursor", s(&page1, "next"))]),
            agent,
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status != 200 {
        assert_problem(resp, 400, "query.invalid_cursor").await;
    }
    app.finish().await;
}

both!(list_limits_are_bounded);
async fn list_limits_are_bounded(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    for i in 0..3 {
        app.simple_incident(agent, &format!("Limit item {i}")).await;
    }
    assert_eq!(
        items(&app.list_incidents(agent, &[("limit", "1")]).await).len(),
        1
    );
    assert_eq!(
        items(&app.list_incidents(agent, &[("limit", "200")]).await).len(),
        3
    );
    let page = app.list_incidents(agent, &[("limit", "2")]).await;
    assert_eq!(items(&page).len(), 2);
    assert!(page["next"].is_string());
    for bad in ["0", "201", "100000"] {
        let resp = app
            .get(&incidents_query(&[("limit", bad)]), agent)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400, "query.invalid_limit").await;
    }
    app.finish().await;
}

both!(list_defaults_to_fifty_items);
async fn list_defaults_to_fifty_items(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    for i in 0..52 {
        app.create_incident(
            agent,
            json!({ "title": format!("Bulk {i}"), "impact": 3, "urgency": 3 }),
        )
        .await;
    }
    let page = app.list_incidents(agent, &[]).await;
    assert_eq!(items(&page).len(), 50);
    let rest = app
        .list_incidents(agent, &[("cursor", s(&page, "next"))])
        .await;
    assert_eq!(items(&rest).len(), 2);
    assert_eq!(rest["next"], Value::Null);
    app.finish().await;
}

both!(search_matches_all_words_across_title_description_and_comments);
async fn search_matches_all_words_across_title_description_and_comments(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let printer = app
        .create_incident(agent, json!({ "title": "Printer jammed on floor three", "description": "Paper stuck in tray two", "impact": 3, "urgency": 2 }))
        .await;
    let laptop = app
        .create_incident(
            agent,
            json!({ "title": "Laptop battery swollen", "impact": 2, "urgency": 2 }),
        )
        .await;
    app.comment(
        agent,
        s(&laptop, "id"),
        "Replaced the toner cartridge by mistake",
        "public",
    )
    .await;
    let other = app.create_incident(agent, json!({ "title": "Monitor flickering", "description": "Cable loose", "impact": 3, "urgency": 3 })).await;
    let (pid, lid) = (s(&printer, "id").to_owned(), s(&laptop, "id").to_owned());

    let search = |q: &'static str| {
        let app = &app;
        async move { sorted(ids(&app.list_incidents(agent, &[("q", q)]).await)) }
    };
    assert_eq!(search("printer").await, vec![pid.clone()], "title");
    assert_eq!(
        search("PRINTER").await,
        vec![pid.clone()],
        "case-insensitive"
    );
    assert_eq!(search("tray").await, vec![pid.clone()], "description");
    assert_eq!(search("toner").await, vec![lid.clone()], "comment");
    assert_eq!(
        search("printer paper").await,
        vec![pid.clone()],
        "all words, across fields"
    );
    assert_eq!(
        search("laptop cartridge").await,
        vec![lid.clone()],
        "title and comment"
    );
    assert_eq!(
        search("printer toner").await,
        Vec::<String>::new(),
        "all words must match"
    );
    assert_eq!(search("nonexistentword").await, Vec::<String>::new());
    // Query syntax characters are just text.
    for q in [
        "\"printer",
        "printer*",
        "printer OR laptop",
        "printer) OR (1=1",
        "'; DROP TABLE incidents; --",
        "NEAR(printer)",
        "%",
        "_",
        "\\",
    ] {
        let resp = app
            .get(&incidents_query(&[("q", q)]), agent)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!(status == 200 || status == 400, "q={q}: {status}");
        let text = resp.text().await.unwrap();
        if status == 200 {
            let v: Value = serde_json::from_str(&text).unwrap();
            if q.chars().any(|c| c.is_alphanumeric()) {
                assert!(items(&v).len() <= 1, "q={q} must not widen the search: {v}");
                assert!(!ids(&v).contains(&s(&other, "id").to_owned()), "q={q}: {v}");
            } else {
                // No words at all: either nothing matches or there is no
                // search (every incident), but not a wildcard's pick.
                let n = items(&v).len();
                assert!(n == 0 || n == 3, "q={q}: {v}");
            }
        } else {
            assert!(text.contains("query."), "q={q}: {text}");
        }
    }
    // Combined with a filter.
    let r = app
        .list_incidents(agent, &[("q", "printer"), ("state", "resolved")])
        .await;
    assert!(items(&r).is_empty());
    // Later edits are searchable.
    let resp = app
        .patch_incident(
            agent,
            s(&other, "id"),
            1,
            &json!({ "description": "Cable loose, replaced with HDMI" }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(search("hdmi").await, vec![s(&other, "id").to_owned()]);
    // Comments add up: words of two comments match together, also after
    // the title is edited (which rebuilds the search row).
    app.comment(agent, &lid, "Ordered a spare from Dell", "public")
        .await;
    assert_eq!(search("toner dell").await, vec![lid.clone()]);
    let version = app.incident(agent, &lid).await["version"].as_i64().unwrap();
    let resp = app
        .patch_incident(
            agent,
            &lid,
            version,
            &json!({ "title": "Laptop battery bulging" }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(search("toner dell bulging").await, vec![lid.clone()]);
    assert_eq!(
        search("swollen").await,
        Vec::<String>::new(),
        "the old title"
    );
    app.finish().await;
}

/// Walks every page of `query` (limit 2) and returns the numbers seen.
async fn search_pages(app: &TestApp, token: &str, query: &[(&str, &str)]) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", "2"));
        if let Some(c) = &cursor {
            q.push(("cursor", c.as_str()));
        }
        let page = app.list_incidents(token, &q).await;
        seen.extend(
            items(&page)
                .iter()
                .map(|i| i["number"].as_str().unwrap_or_default().to_owned()),
        );
        match &page["next"] {
            Value::String(next) => cursor = Some(next.clone()),
            _ => return seen,
        }
    }
    panic!("search pagination does not end: {seen:?}");
}

both!(a_search_pages_newest_number_first_and_shows_each_match_once);
async fn a_search_pages_newest_number_first_and_shows_each_match_once(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let requester = &desk.requester.token;
    let mut numbers = Vec::new();
    for i in 0..5 {
        let inc = app
            .create_incident(
                agent,
                json!({ "title": format!("Router {i} rebooting"), "impact": 3, "urgency": 3 }),
            )
            .await;
        numbers.push(s(&inc, "number").to_owned());
        app.create_incident(
            agent,
            json!({ "title": format!("Unrelated {i}"), "impact": 3, "urgency": 3 }),
        )
        .await;
    }
    // A match through a comment, and one only through a work note.
    let own = app
        .create_incident(
            requester,
            json!({ "title": "Wifi drops", "impact": 3, "urgency": 3 }),
        )
        .await;
    app.comment(agent, s(&own, "id"), "The router was replaced", "public")
        .await;
    let noted = app
        .create_incident(
            agent,
            json!({ "title": "Slow network", "impact": 3, "urgency": 3 }),
        )
        .await;
    app.comment(
        agent,
        s(&noted, "id"),
        "router firmware suspected",
        "internal",
    )
    .await;
    let mut all = numbers.clone();
    all.push(s(&own, "number").to_owned());
    all.push(s(&noted, "number").to_owned());

    // No sort: newest number first, every match once across pages.
    let newest_first: Vec<String> = all.iter().rev().cloned().collect();
    assert_eq!(
        search_pages(&app, agent, &[("q", "router")]).await,
        newest_first
    );
    // Ascending, and with a filter beside the search.
    assert_eq!(
        search_pages(&app, agent, &[("q", "router"), ("sort", "number")]).await,
        all
    );
    assert_eq!(
        search_pages(
            &app,
            agent,
            &[
                ("q", "router"),
                ("state", "new,in_progress,on_hold"),
                ("sort", "-created_at")
            ]
        )
        .await,
        newest_first
    );
    // A requester finds only their own incident, and not through work notes.
    assert_eq!(
        search_pages(&app, requester, &[("q", "router")]).await,
        vec![s(&own, "number").to_owned()]
    );
    app.finish().await;
}

/// An SLA policy for every incident: a first response in 15 minutes and a
/// resolution in 4 hours.
async fn everything_has_two_targets(app: &TestApp, admin: &str) {
    let policy = app
        .post("/api/v1/sla/policies", admin)
        .json(&json!({"name": "Everything", "definition": {"targets": [
            {"kind": "first_response", "secs": 900},
            {"kind": "resolution", "secs": 14400}]}}))
        .send()
        .await
        .unwrap();
    assert!(policy.status().is_success(), "{}", policy.status());
}

both!(a_listed_incident_is_shown_as_a_get_shows_it);
async fn a_listed_incident_is_shown_as_a_get_shows_it(app: TestApp) {
    // A page reads its incidents' names (requester, assignee, group) in a
    // statement of their own; the items must still be what a get shows.
    let desk = app.desk().await;
    everything_has_two_targets(&app, &desk.admin).await;
    let agent = &desk.agent.token;
    app.create_incident(
        agent,
        json!({"title": "VPN drops every hour", "impact": 2, "urgency": 2,
            "requester": desk.requester.username, "assignment_group": desk.group_name,
            "assignee": desk.agent2.username}),
    )
    .await;
    app.create_incident(
        agent,
        json!({"title": "Disk full", "impact": 3, "urgency": 3, "assignment_group": desk.group}),
    )
    .await;
    app.create_incident(
        &desk.requester.token,
        json!({"title": "Printer offline", "impact": 3, "urgency": 3}),
    )
    .await;
    // Elapsed and remaining time move on between the two answers.
    let steady = |mut v: Value| {
        for t in v["sla"].as_array_mut().unwrap() {
            for k in ["elapsed_secs", "remaining_secs", "percent"] {
                t.as_object_mut().unwrap().remove(k);
            }
        }
        v
    };
    for (token, expected) in [(agent, 3), (&desk.requester.token, 2)] {
        let page = app.list_incidents(token, &[]).await;
        assert_eq!(items(&page).len(), expected, "{page}");
        for item in items(&page) {
            let read = app.incident(token, s(item, "id")).await;
            assert_eq!(steady(item.clone()), steady(read));
        }
    }
    // Every shape of page statement (the default list, the queues read
    // state by state with and without a group, another order, a search),
    // one incident per page: each item is what a get shows, with its two
    // targets, and each incident comes once.
    let group = desk.group.as_str();
    for (query, expected) in [
        (vec![], 3),
        (vec![("state", "new,in_progress,on_hold")], 3),
        (
            vec![("state", "new,in_progress,on_hold"), ("group", group)],
            2,
        ),
        (vec![("state", "new,in_progress"), ("sort", "priority")], 3),
        (vec![("q", "vpn")], 1),
    ] {
        let mut seen = 0;
        let mut cursor: Option<String> = None;
        loop {
            let mut q = query.clone();
            q.push(("limit", "1"));
            if let Some(c) = &cursor {
                q.push(("cursor", c.as_str()));
            }
            let page = app.list_incidents(agent, &q).await;
            for item in items(&page) {
                assert_eq!(
                    item["sla"].as_array().map(Vec::len),
                    Some(2),
                    "{query:?}: {item}"
                );
                let read = app.incident(agent, s(item, "id")).await;
                assert_eq!(steady(item.clone()), steady(read), "{query:?}");
                seen += 1;
            }
            match &page["next"] {
                Value::String(next) => cursor = Some(next.clone()),
                _ => break,
            }
            assert!(seen < 10, "{query:?}: pages do not end");
        }
        assert_eq!(seen, expected, "{query:?}");
    }
    let page = app.list_incidents(agent, &[]).await;
    let names: HashSet<(&str, &str, &str)> = items(&page)
        .iter()
        .map(|i| {
            (
                i["requester"]["username"].as_str().unwrap_or(""),
                i["assignee"]["username"].as_str().unwrap_or("-"),
                i["assignment_group"]["name"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    let want: HashSet<(&str, &str, &str)> = [
        (
            desk.requester.username.as_str(),
            desk.agent2.username.as_str(),
            desk.group_name.as_str(),
        ),
        (desk.agent.username.as_str(), "-", desk.group_name.as_str()),
        (desk.requester.username.as_str(), "-", "-"),
    ]
    .into();
    assert_eq!(names, want);
    app.finish().await;
}

both!(a_groups_open_queue_pages_in_date_order_with_a_priority_filter);
/// A queue: several open states, one group, some priorities, newest first.
/// In date order each state's share is read on its own and the shares
/// merged (on PostgreSQL a group's page's numbers first and their rows
/// after; otherwise the rows themselves); every match must still come
/// once, in order, across pages, both ways, with or without the group.
async fn a_groups_open_queue_pages_in_date_order_with_a_priority_filter(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let mut queue = Vec::new();
    let mut everyone = Vec::new();
    for n in 0..12 {
        let priority = [4, 5, 2][n % 3];
        let group = (n % 4 != 3).then(|| desk.group.clone());
        let inc = app
            .create_incident(
                agent,
                json!({ "title": format!("Queue item {n}"), "impact": 3, "urgency": 3,
                    "priority": priority, "assignment_group": group }),
            )
            .await;
        assert_eq!(inc["priority"], priority);
        if n % 2 == 1 && group.is_some() {
            app.transition(agent, s(&inc, "id"), json!({ "action": "start" }))
                .await;
        }
        if priority != 2 {
            everyone.push(s(&inc, "number").to_owned());
            if group.is_some() {
                queue.push(s(&inc, "number").to_owned());
            }
        }
    }
    assert_eq!(queue.len(), 6, "{queue:?}");
    assert_eq!(everyone.len(), 8, "{everyone:?}");
    let filter = |sort: &'static str| {
        [
            ("state", "new,in_progress"),
            ("group", desk.group.as_str()),
            ("priority", "4,5"),
            ("sort", sort),
        ]
    };
    assert_eq!(
        search_pages(&app, agent, &filter("created_at")).await,
        queue
    );
    let newest_first: Vec<String> = queue.iter().rev().cloned().collect();
    assert_eq!(
        search_pages(&app, agent, &filter("-created_at")).await,
        newest_first
    );
    let every_state = [
        ("state", "new,in_progress,on_hold"),
        ("priority", "4,5"),
        ("sort", "-created_at"),
    ];
    let everyone_newest_first: Vec<String> = everyone.iter().rev().cloned().collect();
    assert_eq!(
        search_pages(&app, agent, &every_state).await,
        everyone_newest_first
    );
    let oldest_first = [
        ("state", "new,in_progress,on_hold"),
        ("priority", "4,5"),
        ("sort", "created_at"),
    ];
    assert_eq!(search_pages(&app, agent, &oldest_first).await, everyone);
    // A state named twice changes nothing.
    let twice = [
        ("state", "on_hold,new,in_progress,new"),
        ("priority", "4,5"),
        ("sort", "-created_at"),
    ];
    assert_eq!(
        search_pages(&app, agent, &twice).await,
        everyone_newest_first
    );
    // A requester sees none of it: the queue holds none of their incidents.
    assert_eq!(
        search_pages(&app, &desk.requester.token, &filter("-created_at")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        search_pages(&app, &desk.requester.token, &every_state).await,
        Vec::<String>::new()
    );
    app.finish().await;
}

both!(a_renamed_group_and_user_show_on_the_next_list_page_and_get);
async fn a_renamed_group_and_user_show_on_the_next_list_page_and_get(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let inc = app
        .create_incident(
            agent,
            json!({ "title": "Badge reader dead", "impact": 3, "urgency": 3,
                "assignment_group": desk.group, "assignee": desk.agent.id }),
        )
        .await;
    let id = s(&inc, "id").to_owned();
    let names_in = |i: &Value| {
        (
            i["assignment_group"]["name"].as_str().unwrap().to_owned(),
            i["assignee"]["display_name"].as_str().unwrap().to_owned(),
        )
    };
    let names = |list: &Value| names_in(&items(list)[0]);
    // Listed and read once, so that this node keeps the names.
    let list = app.list_incidents(agent, &[("group", &desk.group)]).await;
    assert_eq!(names(&list), ("service-desk".into(), "User agent1".into()));
    let got = app.incident(agent, &id).await;
    assert_eq!(
        names_in(&got),
        ("service-desk".into(), "User agent1".into())
    );
    let resp = app
        .patch(&format!("/api/v1/groups/{}", desk.group), &desk.admin)
        .json(&json!({ "name": "first-line" }))
        .send()
        .await
        .unwrap();
    expect_json(resp, reqwest::StatusCode::OK).await;
    let resp = app
        .patch(&format!("/api/v1/users/{}", desk.agent.id), &desk.admin)
        .json(&json!({ "display_name": "Agnes Agent" }))
        .send()
        .await
        .unwrap();
    expect_json(resp, reqwest::StatusCode::OK).await;
    let list = app.list_incidents(agent, &[("group", &desk.group)]).await;
    assert_eq!(names(&list), ("first-line".into(), "Agnes Agent".into()));
    let got = app.incident(agent, &id).await;
    assert_eq!(names_in(&got), ("first-line".into(), "Agnes Agent".into()));
    app.finish().await;
}

both!(pages_and_gets_read_on_the_http_worker_s_thread_are_those_read_through_sqlx);
async fn pages_and_gets_read_on_the_http_worker_s_thread_are_those_read_through_sqlx(app: TestApp) {
    // On SQLite a page or a get runs on the HTTP worker's thread
    // (`database_sqlite_inline_read_ms`, on by default) and decodes its rows
    // where SQLite holds them. A second node on the same database with it
    // off reads every one through sqlx: both must answer alike, field for
    // field, for incidents that fill every column. (On PostgreSQL the
    // setting does nothing; the two nodes must agree all the same.)
    let desk = app.desk().await;
    everything_has_two_targets(&app, &desk.admin).await;
    let agent = &desk.agent.token;
    let full = app
        .create_incident(
            agent,
            json!({"title": "Mail queue stuck", "description": "Since 9:00, nothing leaves — «urgent»",
                "impact": 1, "urgency": 2, "category": "email", "major": true,
                "requester": desk.requester.username, "assignment_group": desk.group_name,
                "assignee": desk.agent2.username}),
        )
        .await;
    let full_id = s(&full, "id").to_owned();
    app.transition(agent, &full_id, json!({ "action": "start" }))
        .await;
    app.transition(
        agent,
        &full_id,
        json!({ "action": "hold", "hold_reason": "awaiting_supplier" }),
    )
    .await;
    let resolved = app
        .create_incident(
            agent,
            json!({"title": "Disk full", "impact": 3, "urgency": 3, "priority": 1,
                "assignment_group": desk.group}),
        )
        .await;
    app.resolve(agent, s(&resolved, "id")).await;
    app.create_incident(
        &desk.requester.token,
        json!({"title": "Printer offline", "impact": 3, "urgency": 3}),
    )
    .await;

    let node = KeelProcess::start(&app.database_url, "database_sqlite_inline_read_ms = 0").await;
    let other = TestApp::attach(app.db, node.port, &app.database_url);
    // Elapsed and remaining time move on between two answers.
    let steady = |mut v: Value| {
        let items = match v.get_mut("items") {
            Some(items) => items.as_array_mut().unwrap().iter_mut().collect(),
            None => vec![&mut v],
        };
        for item in items {
            for t in item["sla"].as_array_mut().unwrap() {
                for k in ["elapsed_secs", "remaining_secs", "percent"] {
                    t.as_object_mut().unwrap().remove(k);
                }
            }
        }
        v
    };
    let group = desk.group.as_str();
    let mut seen = 0;
    for query in [
        vec![],
        vec![("limit", "1")],
        vec![("state", "new,in_progress,on_hold")],
        vec![("state", "new,in_progress,on_hold"), ("group", group)],
        vec![("state", "on_hold"), ("priority", "1,2,3")],
        vec![("state", "resolved"), ("sort", "priority")],
        vec![("major", "true")],
        vec![("sort", "-number"), ("limit", "2")],
    ] {
        for token in [agent, &desk.requester.token] {
            let here = app.list_incidents(token, &query).await;
            let there = other.list_incidents(token, &query).await;
            assert_eq!(steady(here.clone()), steady(there), "{query:?}");
            for item in items(&here) {
                for key in [s(item, "id"), s(item, "number")] {
                    let read = app.incident(token, key).await;
                    assert_eq!(steady(read), steady(other.incident(token, key).await));
                    seen += 1;
                }
            }
        }
    }
    assert!(seen > 20, "only {seen} gets compared");
    drop(node);
    app.finish().await;
}
