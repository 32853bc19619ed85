//! Users, groups and membership.

use keel_tests::*;
use reqwest::StatusCode;
use serde_json::json;

both!(an_admin_creates_users_and_groups);
async fn an_admin_creates_users_and_groups(app: TestApp) {
    let admin = app.admin_token().await;
    let resp = app
        .post("/api/v1/groups", &admin)
        .json(&json!({ "name": "network", "description": "Routers and switches" }))
        .send()
        .await
        .unwrap();
    let group = expect_json(resp, StatusCode::CREATED).await;
    assert_eq!(group["name"], "network");
    assert_eq!(group["description"], "Routers and switches");
    assert_eq!(group["member_count"], 0);
    assert!(group["created_at"].is_string() && group["updated_at"].is_string());
    let group_id = s(&group, "id").to_owned();

    let resp = app
        .post("/api/v1/users", &admin)
        .json(&json!({
            "username": "Bob.Smith",
            "email": "Bob@Example.com",
            "display_name": "Bob Smith",
            "password": "correct-horse-battery",
            "roles": ["agent"],
            "groups": ["network"],
        }))
        .send()
        .await
        .unwrap();
    let user = expect_json(resp, StatusCode::CREATED).await;
    let user_id = s(&user, "id").to_owned();
    assert_eq!(
        user["username"], "bob.smith",
        "usernames are stored lowercase"
    );
    assert_eq!(user["email"], "bob@example.com");
    assert_eq!(user["display_name"], "Bob Smith");
    assert_eq!(user["roles"], json!(["agent"]));
    assert_eq!(
        user["groups"],
        json!([{ "id": group_id, "name": "network" }])
    );
    assert_eq!(user["active"], true);
    for secret in ["password", "password_hash"] {
        assert!(user.get(secret).is_none(), "{user}");
    }

    // Groups may also be given by id.
    let resp = app
        .post("/api/v1/users", &admin)
        .json(&json!({
            "username": "carol", "email": "carol@example.com", "password": "correct-horse-battery",
            "roles": ["requester"], "groups": [group_id],
        }))
        .send()
        .await
        .unwrap();
    let carol = expect_json(resp, StatusCode::CREATED).await;
    assert_eq!(carol["groups"][0]["id"], group_id.as_str());

    let fetched = app
        .get_json(&format!("/api/v1/users/{user_id}"), &admin)
        .await;
    assert_eq!(fetched["username"], "bob.smith");
    let list = app.get_json("/api/v1/users", &admin).await;
    let names: Vec<&str> = items(&list)
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    for name in ["admin", "bob.smith", "carol"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(list.get("next").is_some());

    let g = app
        .get_json(&format!("/api/v1/groups/{group_id}"), &admin)
        .await;
    assert_eq!(g["member_count"], 2);
    let groups = app.get_json("/api/v1/groups", &admin).await;
    assert!(items(&groups).iter().any(|g| g["id"] == group_id.as_str()));

    // The new user can log in with the given password, by username or email.
    app.login("bob.smith", "correct-horse-battery").await;
    app.login("bob@example.com", "correct-horse-battery").await;

    // Edits.
    let resp = app
        .patch(&format!("/api/v1/users/{user_id}"), &admin)
        .json(&json!({ "display_name": "Robert Smith", "roles": ["agent", "admin"] }))
        .send()
        .await
        .unwrap();
    let patched = expect_json(resp, StatusCode::OK).await;
    assert_eq!(patched["display_name"], "Robert Smith");
    let mut roles: Vec<String> = patched["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    roles.sort();
    assert_eq!(roles, ["admin", "agent"]);
    let resp = app
        .patch(&format!("/api/v1/groups/{group_id}"), &admin)
        .json(&json!({ "description": "Everything with a cable" }))
        .send()
        .await
        .unwrap();
    let g = expect_json(resp, StatusCode::OK).await;
    assert_eq!(g["description"], "Everything with a cable");
    assert_eq!(g["name"], "network");

    // An admin may set a new password for someone.
    let resp = app
        .patch(&format!("/api/v1/users/{user_id}"), &admin)
        .json(&json!({ "password": "another-long-password" }))
        .send()
        .await
        .unwrap();
    expect_json(resp, StatusCode::OK).await;
    assert_problem(
        app.try_login("bob.smith", "correct-horse-battery").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    app.login("bob.smith", "another-long-password").await;
    app.finish().await;
}

both!(non_admins_cannot_manage_people);
async fn non_admins_cannot_manage_people(app: TestApp) {
    let admin = app.admin_token().await;
    let group = app.create_group(&admin, "network").await;
    let (agent_id, agent) = app.create_user(&admin, "agent1", "agent").await;
    let (_, requester) = app.create_user(&admin, "req1", "requester").await;
    let new_user = json!({
        "username": "mallory", "email": "mallory@example.com", "password": "correct-horse-battery", "roles": ["admin"],
    });
    for token in [&agent, &requester] {
        let resp = app
            .post("/api/v1/users", token)
            .json(&new_user)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 403, "auth.forbidden").await;
        let resp = app
            .post("/api/v1/groups", token)
            .json(&json!({ "name": "cabal" }))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 403, "auth.forbidden").await;
        let resp = app
            .put(&format!("/api/v1/groups/{group}/members/{agent_id}"), token)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 403, "auth.forbidden").await;
        let resp = app
            .patch(&format!("/api/v1/users/{agent_id}"), token)
            .json(&json!({ "roles": ["admin"] }))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 403, "auth.forbidden").await;
        let resp = app
            .patch(&format!("/api/v1/groups/{group}"), token)
            .json(&json!({ "name": "mine" }))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 403, "auth.forbidden").await;
        let resp = app
            .delete(&format!("/api/v1/groups/{group}"), token)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 403, "auth.forbidden").await;
    }
    // Nothing changed.
    assert_problem(
        app.try_login("mallory", "correct-horse-battery").await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    let me = app.get_json("/api/v1/me", &agent).await;
    assert_eq!(me["roles"], json!(["agent"]));
    assert_eq!(me["groups"], json!([]));

    // Agents may read the directory; requesters may not list users.
    app.get_json("/api/v1/users", &agent).await;
    app.get_json("/api/v1/groups", &agent).await;
    let resp = app.get("/api/v1/users", &requester).send().await.unwrap();
    assert_problem_any(resp, &[403], &["auth."]).await;
    app.finish().await;
}

both!(a_duplicate_username_is_a_conflict);
async fn a_duplicate_username_is_a_conflict(app: TestApp) {
    let admin = app.admin_token().await;
    app.create_user(&admin, "alice", "agent").await;
    for (username, email) in [
        ("alice", "other@example.com"),
        ("ALICE", "other2@example.com"),
        ("admin", "x@example.com"),
    ] {
        let resp = app
            .post("/api/v1/users", &admin)
            .json(&json!({ "username": username, "email": email, "password": "correct-horse-battery", "roles": ["agent"] }))
            .send()
            .await
            .unwrap();
        assert_problem(resp, 409, "user.username_taken").await;
    }
    let resp = app
        .post("/api/v1/users", &admin)
        .json(&json!({ "username": "alice2", "email": "ALICE@example.com", "password": "correct-horse-battery", "roles": ["agent"] }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "user.email_taken").await;
    app.create_group(&admin, "network").await;
    let resp = app
        .post("/api/v1/groups", &admin)
        .json(&json!({ "name": "network" }))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 409, "group.name_taken").await;
    app.finish().await;
}

both!(invalid_user_fields_are_refused);
async fn invalid_user_fields_are_refused(app: TestApp) {
    let admin = app.admin_token().await;
    let base = json!({ "username": "valid.name", "email": "valid@example.com", "password": "correct-horse-battery", "roles": ["agent"] });
    let cases = [
        (
            "username",
            json!("-starts-with-dash"),
            "user.invalid_username",
        ),
        ("username", json!("has space"), "user.invalid_username"),
        ("username", json!("x"), "user.invalid_username"),
        ("email", json!("not-an-email"), "user.invalid_email"),
        ("password", json!("short"), "user.weak_password"),
    ];
    for (field, value, code) in cases {
        let mut body = base.clone();
        body[field] = value;
        let resp = app
            .post("/api/v1/users", &admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (_, problem) = assert_problem_any(resp, &[400, 422], &[code]).await;
        assert_eq!(problem["code"], code, "{field}");
    }
    let mut body = base.clone();
    body["roles"] = json!(["overlord"]);
    let resp = app
        .post("/api/v1/users", &admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem_any(resp, &[400, 422], &["validation.", "user."]).await;
    let mut body = base.clone();
    body["groups"] = json!(["no-such-group"]);
    let resp = app
        .post("/api/v1/users", &admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem_any(
        resp,
        &[404, 422],
        &["not_found", "user.", "group.", "validation."],
    )
    .await;
    // None of them was created.
    let list = app.get_json("/api/v1/users", &admin).await;
    assert!(
        items(&list).iter().all(|u| u["username"] != "valid.name"),
        "{list}"
    );
    app.finish().await;
}

both!(group_membership_can_be_granted_and_revoked);
async fn group_membership_can_be_granted_and_revoked(app: TestApp) {
    let admin = app.admin_token().await;
    let group = app.create_group(&admin, "network").await;
    let (a_id, a) = app.create_user(&admin, "agent1", "agent").await;
    let (b_id, _) = app.create_user(&admin, "agent2", "agent").await;
    app.add_member(&admin, &group, &a_id).await;
    app.add_member(&admin, &group, &b_id).await;

    let members = app
        .get_json(&format!("/api/v1/groups/{group}/members"), &admin)
        .await;
    assert_eq!(members["next"], serde_json::Value::Null);
    let mut names: Vec<&str> = items(&members)
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["agent1", "agent2"]);
    let m = items(&members)
        .iter()
        .find(|m| m["id"] == a_id.as_str())
        .unwrap();
    assert_eq!(m["display_name"], "User agent1");
    assert_eq!(
        app.get_json(&format!("/api/v1/groups/{group}"), &admin)
            .await["member_count"],
        2
    );
    assert_eq!(
        app.get_json("/api/v1/me", &a).await["groups"][0]["name"],
        "network"
    );

    let resp = app
        .delete(&format!("/api/v1/groups/{group}/members/{a_id}"), &admin)
        .send()
        .await
        .unwrap();
    expect_status(resp, StatusCode::NO_CONTENT).await;
    let members = app
        .get_json(&format!("/api/v1/groups/{group}/members"), &admin)
        .await;
    assert_eq!(ids(&members), vec![b_id.clone()]);
    assert_eq!(
        app.get_json(&format!("/api/v1/groups/{group}"), &admin)
            .await["member_count"],
        1
    );
    assert_eq!(app.get_json("/api/v1/me", &a).await["groups"], json!([]));

    // Unknown users and groups.
    let nobody = uuid::Uuid::new_v4();
    let resp = app
        .put(&format!("/api/v1/groups/{group}/members/{nobody}"), &admin)
        .send()
        .await
        .unwrap();
    assert_problem_any(resp, &[404, 422], &["not_found", "group.", "user."]).await;
    let resp = app
        .put(&format!("/api/v1/groups/{nobody}/members/{b_id}"), &admin)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;

    // An unused group can be deleted.
    let empty = app.create_group(&admin, "empty").await;
    let resp = app
        .delete(&format!("/api/v1/groups/{empty}"), &admin)
        .send()
        .await
        .unwrap();
    expect_status(resp, StatusCode::NO_CONTENT).await;
    assert_problem(
        app.get(&format!("/api/v1/groups/{empty}"), &admin)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    app.finish().await;
}
