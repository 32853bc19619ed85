//! Files on incidents.

use keel_tests::*;
use reqwest::StatusCode;
use serde_json::json;

const HELLO_SHA256: &str = "2c941ebe722db09cfdf10c80122edd3b818176a6640f6dd782220063aa7e2a0b";

both!(attachments_upload_list_and_download);
async fn attachments_upload_list_and_download(app: TestApp) {
    let desk = app.desk().await;
    let requester = &desk.requester.token;
    let agent = &desk.agent.token;
    let inc = app.simple_incident(requester, "Error dialog").await;
    let id = s(&inc, "id").to_owned();

    let resp = app
        .upload(
            requester,
            &id,
            "notes.txt",
            "text/plain",
            b"hello keel".to_vec(),
        )
        .await;
    let att = expect_json(resp, StatusCode::CREATED).await;
    assert_eq!(att["filename"], "notes.txt");
    assert!(s(&att, "content_type").starts_with("text/plain"), "{att}");
    assert_eq!(att["size_bytes"], 10);
    assert_eq!(att["sha256"], HELLO_SHA256);
    assert!(att["created_at"].is_string());
    let uploader = &att["uploaded_by"];
    assert!(
        uploader == desk.requester.id.as_str() || uploader["id"] == desk.requester.id.as_str(),
        "{att}"
    );
    let att_id = s(&att, "id").to_owned();

    // A binary file uploaded by an agent.
    let png: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let resp = app
        .upload(agent, &id, "screenshot.png", "image/png", png.clone())
        .await;
    let bin = expect_json(resp, StatusCode::CREATED).await;
    assert_eq!(bin["size_bytes"], 3000);

    let list = app
        .get_json(&format!("/api/v1/incidents/{id}/attachments"), requester)
        .await;
    assert_eq!(list["next"], serde_json::Value::Null);
    let mut names: Vec<&str> = items(&list)
        .iter()
        .map(|a| a["filename"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["notes.txt", "screenshot.png"]);

    let resp = app
        .get(
            &format!("/api/v1/incidents/{id}/attachments/{att_id}"),
            agent,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(&bytes[..], b"hello keel");
    let disposition = headers
        .get("content-disposition")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(disposition.contains("notes.txt"), "{disposition}");
    assert_eq!(
        headers
            .get("x-content-type-options")
            .and_then(|v| v.to_str().ok()),
        Some("nosniff")
    );

    let resp = app
        .get(
            &format!("/api/v1/incidents/{id}/attachments/{}", s(&bin, "id")),
            requester,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), png);

    // An attachment is only reachable through its own incident.
    let other = app.simple_incident(requester, "Other").await;
    let resp = app
        .get(
            &format!("/api/v1/incidents/{}/attachments/{att_id}", s(&other, "id")),
            agent,
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;
    let resp = app
        .get(
            &format!(
                "/api/v1/incidents/{id}/attachments/{}",
                uuid::Uuid::new_v4()
            ),
            agent,
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;

    let history = app
        .get_json(&format!("/api/v1/incidents/{id}/history"), agent)
        .await;
    assert!(
        items(&history)
            .iter()
            .any(|h| h["action"] == "attachment_added"),
        "{history}"
    );
    app.finish().await;
}

both!(another_requester_cannot_touch_attachments);
async fn another_requester_cannot_touch_attachments(app: TestApp) {
    let desk = app.desk().await;
    let a = &desk.requester.token;
    let b = &desk.requester2.token;
    let inc = app.simple_incident(a, "Private screenshot").await;
    let id = s(&inc, "id").to_owned();
    let att = expect_json(
        app.upload(
            a,
            &id,
            "payslip.pdf",
            "application/pdf",
            b"%PDF-1.4 secret".to_vec(),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let att_id = s(&att, "id");

    assert_problem(
        app.get(&format!("/api/v1/incidents/{id}/attachments"), b)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.get(&format!("/api/v1/incidents/{id}/attachments/{att_id}"), b)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.upload(
            b,
            &id,
            "virus.exe",
            "application/octet-stream",
            b"MZ".to_vec(),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    // Not through B's own incident either.
    let own = app.simple_incident(b, "Mine").await;
    let resp = app
        .get(
            &format!("/api/v1/incidents/{}/attachments/{att_id}", s(&own, "id")),
            b,
        )
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not_found").await;
    let list = app
        .get_json(&format!("/api/v1/incidents/{id}/attachments"), a)
        .await;
    assert_eq!(items(&list).len(), 1);
    app.finish().await;
}

both!(attachments_over_the_limit_are_refused, |cfg| {
    cfg.attachments.max_bytes = 1024;
});
async fn attachments_over_the_limit_are_refused(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let inc = app.simple_incident(agent, "Big files").await;
    let id = s(&inc, "id").to_owned();
    let ok = expect_json(
        app.upload(
            agent,
            &id,
            "small.bin",
            "application/octet-stream",
            vec![7u8; 1024],
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(ok["size_bytes"], 1024);
    for size in [1025usize, 64 * 1024] {
        let resp = app
            .upload(
                agent,
                &id,
                "big.bin",
                "application/octet-stream",
                vec![7u8; size],
            )
            .await;
        assert_problem(resp, 413, "attachment.too_large").await;
    }
    let list = app
        .get_json(&format!("/api/v1/incidents/{id}/attachments"), agent)
        .await;
    assert_eq!(
        items(&list).len(),
        1,
        "nothing of the refused uploads is kept: {list}"
    );
    app.finish().await;
}

both!(awkward_uploads_are_handled);
async fn awkward_uploads_are_handled(app: TestApp) {
    let desk = app.desk().await;
    let agent = &desk.agent.token;
    let inc = app.simple_incident(agent, "Odd files").await;
    let id = s(&inc, "id").to_owned();

    // A path in the file name never comes back as a path.
    let resp = app
        .upload(
            agent,
            &id,
            "../../etc/passwd",
            "text/plain",
            b"root:x:0:0".to_vec(),
        )
        .await;
    let status = resp.status().as_u16();
    if status == 201 {
        let att = expect_json(resp, StatusCode::CREATED).await;
        let name = s(&att, "filename");
        assert!(!name.contains('/') && !name.contains('\\'), "{att}");
        let resp = app
            .get(
                &format!("/api/v1/incidents/{id}/attachments/{}", s(&att, "id")),
                agent,
            )
            .send()
            .await
            .unwrap();
        let disposition = resp
            .headers()
            .get("content-disposition")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        assert!(!disposition.contains('/'), "{disposition}");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), b"root:x:0:0");
    } else {
        assert_problem_any(resp, &[400, 422], &["attachment.", "validation."]).await;
    }

    // A file name with quotes and unicode.
    let resp = app
        .upload(
            agent,
            &id,
            "report \"final\" – übersicht.txt",
            "text/plain",
            b"ok".to_vec(),
        )
        .await;
    assert!(
        resp.status().as_u16() == 201 || resp.status().is_client_error(),
        "{}",
        resp.status()
    );
    if resp.status() == 201 {
        let att = expect_json(resp, StatusCode::CREATED).await;
        let resp = app
            .get(
                &format!("/api/v1/incidents/{id}/attachments/{}", s(&att, "id")),
                agent,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    } else {
        assert_problem_any(resp, &[400, 422], &["attachment.", "validation."]).await;
    }

    // No part named "file".
    let form = reqwest::multipart::Form::new().text("note", "no file here");
    let resp = app
        .post(&format!("/api/v1/incidents/{id}/attachments"), agent)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_problem_any(resp, &[400, 422], &["attachment.", "validation."]).await;
    // Not multipart at all.
    let resp = app
        .post(&format!("/api/v1/incidents/{id}/attachments"), agent)
        .json(&json!({ "file": "aGVsbG8=" }))
        .send()
        .await
        .unwrap();
    assert_problem_any(
        resp,
        &[400, 415, 422],
        &["attachment.", "validation.", "request."],
    )
    .await;
    // An empty file is fine or refused, but never a crash.
    let resp = app
        .upload(agent, &id, "empty.txt", "text/plain", Vec::new())
        .await;
    let status = resp.status().as_u16();
    assert!(status == 201 || status == 400 || status == 422, "{status}");
    if status != 201 {
        assert_problem_any(resp, &[400, 422], &["attachment.", "validation."]).await;
    }
    app.finish().await;
}
