//! Kill -9 under write load: every write that was acknowledged with a 2xx
//! survives, with its audit entry and its outbox row.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_tests::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[derive(Default)]
struct Acked {
    /// (incident id, title)
    created: Vec<(String, String)>,
    /// (incident id, comment body)
    comments: Vec<(String, String)>,
    /// (incident id, version acknowledged by an update)
    updates: Vec<(String, i64)>,
}

async fn writer(base: String, token: String, worker: usize, acked: Arc<Mutex<Acked>>) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut mine: Vec<(String, i64)> = Vec::new();
    for i in 0.. {
        let op = i % 3;
        if op == 0 || mine.is_empty() {
            let title = format!("crash w{worker} #{i}");
            let Ok(r) = client
                .post(format!("{base}/api/v1/incidents"))
                .bearer_auth(&token)
                .json(&json!({"title": title, "impact": 2, "urgency": 2}))
                .send()
                .await
            else {
                return;
            };
            if r.status() == StatusCode::CREATED {
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                acked.lock().unwrap().created.push((id.clone(), title));
                mine.push((id, v["version"].as_i64().unwrap_or(1)));
            }
        } else if op == 1 {
            let (id, _) = mine[i % mine.len()].clone();
            let body = format!("note w{worker} #{i}");
            let Ok(r) = client
                .post(format!("{base}/api/v1/incidents/{id}/comments"))
                .bearer_auth(&token)
                .json(&json!({"body": body, "visibility": "public"}))
                .send()
                .await
            else {
                return;
            };
            if r.status() == StatusCode::CREATED {
                acked.lock().unwrap().comments.push((id, body));
            }
        } else {
            let k = i % mine.len();
            let (id, _) = mine[k].clone();
            // Read the current version, then update with If-Match.
            let Ok(r) = client
                .get(format!("{base}/api/v1/incidents/{id}"))
                .bearer_auth(&token)
                .send()
                .await
            else {
                return;
            };
            let Ok(v) = r.json::<Value>().await else {
                return;
            };
            let version = v["version"].as_i64().unwrap_or(1);
            let Ok(r) = client
                .patch(format!("{base}/api/v1/incidents/{id}"))
                .bearer_auth(&token)
                .header("If-Match", format!("\"{version}\""))
                .json(&json!({"description": format!("edited w{worker} #{i}")}))
                .send()
                .await
            else {
                return;
            };
            if r.status() == StatusCode::OK {
                let Ok(v) = r.json::<Value>().await else {
                    return;
                };
                let nv = v["version"].as_i64().unwrap_or(0);
                acked.lock().unwrap().updates.push((id.clone(), nv));
                mine[k].1 = nv;
            }
        }
    }
}

async fn kill_nine_under_load(db_url: &str, db: Db) {
    let mut node = KeelProcess::start(db_url, "").await;
    let app = TestApp::attach(db, node.port, db_url);
    let admin = app.admin_token().await;
    let requester = app.person(&admin, "req1", "requester").await;
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    const KILLS: usize = 3;
    for _round in 0..KILLS {
        let base = format!("http://127.0.0.1:{}", node.port);
        let login = app_login(&base, &requester.username).await;
        let tasks: Vec<_> = (0..8)
            .map(|w| tokio::spawn(writer(base.clone(), login.clone(), w, acked.clone())))
            .collect();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(400 + seed % 800)).await;
        node.kill_and_restart().await;
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }
    let check = TestApp::attach(db, node.port, db_url);
    let admin = check.admin_token().await;
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.created.len() >= 10,
        "the load produced too few writes to prove anything: {}",
        acked.created.len()
    );
    for (id, title) in &acked.created {
        let inc = check.incident(&admin, id).await;
        assert_eq!(&inc["title"], title.as_str());
        let history = check
            .get_json(&format!("/api/v1/incidents/{id}/history"), &admin)
            .await;
        assert_eq!(
            items(&history)[0]["action"],
            "created",
            "the audit entry of {id}"
        );
    }
    for (id, body) in &acked.comments {
        let comments = check
            .get_json(
                &format!("/api/v1/incidents/{id}/comments?limit=200"),
                &admin,
            )
            .await;
        assert!(
            items(&comments).iter().any(|c| c["body"] == body.as_str()),
            "lost comment {body} on {id}"
        );
    }
    for (id, version) in &acked.updates {
        let inc = check.incident(&admin, id).await;
        assert!(
            inc["version"].as_i64().unwrap() >= *version,
            "lost update on {id}"
        );
    }
    // Every incident acknowledged its requester through the outbox (no SMTP here, so they wait).
    let store = check.store().await;
    let pending: u64 = store
        .outbox_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .sum();
    store.close().await;
    assert!(
        pending as usize >= acked.created.len(),
        "outbox rows: {pending} for {} incidents",
        acked.created.len()
    );
    println!(
        "kill -9 x{KILLS}: verified {} creates, {} comments, {} updates",
        acked.created.len(),
        acked.comments.len(),
        acked.updates.len()
    );
}

async fn app_login(base: &str, username: &str) -> String {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": TestApp::password_for(username)}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_nine_on_sqlite() {
    let dir = std::env::temp_dir()
        .join("keel-tests")
        .join(format!("crash-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}/keel.db?mode=rwc", dir.display());
    kill_nine_under_load(&url, Db::Sqlite).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_nine_on_postgres() {
    let Some(db) = SharedDatabase::postgres().await else {
        return;
    };
    kill_nine_under_load(&db.url, Db::Postgres).await;
}
