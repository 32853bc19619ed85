//! PostgreSQL going away under Keel: 503 problems and an unready /readyz
//! while it is gone, recovery by itself when it is back, and no
//! acknowledged write lost. Uses a private cluster on its own port, so the
//! shared one is never touched.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use keel_tests::*;
use reqwest::StatusCode;

/// A throwaway PostgreSQL cluster (initdb into a temp dir, run as `postgres`).
struct PrivateCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PrivateCluster {
    fn pg_bin() -> Option<PathBuf> {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        versions.sort();
        versions.pop().map(|v| v.join("bin"))
    }

    fn as_postgres(&self, program: &str, args: &[&str]) -> bool {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn create() -> PrivateCluster {
        let bin = Self::pg_bin().expect("PostgreSQL server binaries under /usr/lib/postgresql");
        let dir = std::env::temp_dir().join(format!("keel-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(
            Command::new("chown")
                .arg("postgres")
                .arg(&dir)
                .status()
                .unwrap()
                .success()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = PrivateCluster { bin, dir, port };
        let data = c.dir.join("data");
        assert!(
            c.as_postgres(
                "initdb",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8"
                ]
            ),
            "initdb"
        );
        c.start();
        c
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        assert!(
            self.as_postgres(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-o",
                    &opts,
                    "-l",
                    log.to_str().unwrap(),
                    "-w",
                    "start"
                ]
            ),
            "pg_ctl start"
        );
    }

    /// Stops like a crash: no checkpoint, clients cut off.
    fn stop_immediately(&self) {
        let data = self.dir.join("data");
        assert!(
            self.as_postgres(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop"
                ]
            ),
            "pg_ctl stop"
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or(""),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keel_answers_503_while_postgres_is_away_and_recovers_by_itself() {
    if std::env::var("KEEL_TEST_SKIP_POSTGRES")
        .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    {
        println!("postgres tests skipped");
        return;
    }
    let cluster = PrivateCluster::create();
    let node = KeelProcess::start(&cluster.url(), "").await;
    let app = TestApp::attach(Db::Postgres, node.port, &cluster.url());
    let admin = app.admin_token().await;
    let requester = app.person(&admin, "req1", "requester").await;
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(
            s(
                &app.simple_incident(&requester.token, &format!("before the outage {i}"))
                    .await,
                "id",
            )
            .to_owned(),
        );
    }

    cluster.stop_immediately();
    for path in ["/api/v1/incidents", "/api/v1/me"] {
        let resp = app.get(path, &requester.token).send().await.unwrap();
        let (_, body) = assert_problem_any(resp, &[503], &["service."]).await;
        assert_eq!(
            body["code"], "service.database_unavailable",
            "{path}: {body}"
        );
    }
    let resp = app
        .request(reqwest::Method::GET, "/readyz")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let resp = app
        .request(reqwest::Method::GET, "/healthz")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the process itself is fine");

    cluster.start();
    // Keel reconnects by itself: no restart, no operator.
    let mut recovered = false;
    for _ in 0..60 {
        let resp = app
            .request(reqwest::Method::GET, "/readyz")
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(recovered, "/readyz never came back");
    acked.push(
        s(
            &app.simple_incident(&requester.token, "after the outage")
                .await,
            "id",
        )
        .to_owned(),
    );
    for id in &acked {
        let inc = app.incident(&admin, id).await;
        assert_eq!(&inc["id"], id.as_str());
    }
    drop(node);
}
