#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Black-box test harness for Keel.
//!
//! [`TestApp`] starts a real server (the same `Application` the binary runs)
//! on an ephemeral port, against a fresh SQLite file or a fresh PostgreSQL
//! database, and talks to it over HTTP only. [`both!`] turns one
//! `async fn name(app: TestApp)` into two tests, `name::sqlite` and
//! `name::postgres`.
//!
//! PostgreSQL: the server at `KEEL_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) must be reachable; each test
//! gets its own database `keel_test_<pid>_<uuid>`, dropped by
//! [`TestApp::finish`] (or on drop, when a test panics). Set
//! `KEEL_TEST_SKIP_POSTGRES=1` to skip the PostgreSQL variants when no server
//! is available.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::{Value, json};

pub use keel_server::config::{Config, Secret};

/// The bootstrap administrator's password in every test app.
pub const ADMIN_PASSWORD: &str = "admin-password-123";

/// The default PostgreSQL server for tests.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which database a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs one `async fn name(app: TestApp)` on both databases, as the tests
/// `name::sqlite` and `name::postgres`. A second argument is a closure
/// `|cfg: &mut Config| ...` applied to the configuration before start.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        $crate::both!($name, |_cfg| {});
    };
    ($name:ident, $configure:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(app) = $crate::TestApp::spawn_with($crate::Db::Sqlite, $configure).await
                {
                    super::$name(app).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) =
                    $crate::TestApp::spawn_with($crate::Db::Postgres, $configure).await
                {
                    super::$name(app).await;
                }
            }
        }
    };
}

/// The tokens a login or refresh returns.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    pub expires_in: i64,
}

impl Tokens {
    pub fn from_json(v: &Value) -> Tokens {
        Tokens {
            access_token: v["access_token"].as_str().expect("access_token").to_owned(),
            refresh_token: v["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
            token_type: v["token_type"].as_str().expect("token_type").to_owned(),
            expires_in: v["expires_in"].as_i64().expect("expires_in"),
        }
    }
}

/// A user created for a test, logged in.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: String,
    pub username: String,
    pub token: String,
}

/// A small service desk: one group with two agents, two requesters.
#[derive(Debug, Clone)]
pub struct Desk {
    pub admin: String,
    pub group: String,
    pub group_name: String,
    pub agent: Person,
    pub agent2: Person,
    pub requester: Person,
    pub requester2: Person,
}

struct PgDatabase {
    base_url: String,
    name: String,
}

/// A running server plus an HTTP client.
pub struct TestApp {
    pub db: Db,
    pub port: u16,
    /// The application's database, for driving background jobs directly.
    pub database_url: String,
    pub client: Client,
    data_dir: PathBuf,
    pg: Option<PgDatabase>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    admin: tokio::sync::OnceCell<String>,
}

static PG_SWEEP: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
/// Set once PostgreSQL was found unreachable with skipping allowed, so that
/// the other `::postgres` tests skip at once instead of timing out again.
static PG_UNREACHABLE: AtomicBool = AtomicBool::new(false);

fn postgres_base_url() -> String {
    std::env::var("KEEL_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned())
}

/// `base` with its database (path) replaced by `name`, keeping any query.
pub fn postgres_url_with_database(base: &str, name: &str) -> String {
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    let mut url = format!("{scheme}://{authority}/{name}");
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

fn pid_is_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    proc.is_dir() && proc.join(pid.to_string()).exists()
}

/// Drops `keel_test_<pid>_*` databases left behind by earlier test
/// processes (a panicking test cannot always clean up after itself).
async fn sweep_leftover_databases(conn: &sea_orm::DatabaseConnection) {
    let me = std::process::id();
    let rows = match conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT datname FROM pg_database WHERE datname LIKE 'keel\\_test\\_%'".to_owned(),
        ))
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("could not list leftover test databases: {e}");
            return;
        }
    };
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else {
            continue;
        };
        let pid = name
            .strip_prefix("keel_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse::<u32>().ok());
        let stale = match pid {
            Some(pid) => pid != me && !pid_is_alive(pid),
            None => false,
        };
        if stale {
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            if let Err(e) = conn.execute_unprepared(&sql).await {
                eprintln!("could not drop leftover test database {name}: {e}");
            }
        }
    }
}

/// Creates a fresh database; `None` when PostgreSQL is unreachable and
/// `KEEL_TEST_SKIP_POSTGRES=1`.
async fn create_postgres_database() -> Option<(String, PgDatabase)> {
    let base = postgres_base_url();
    let skip = std::env::var("KEEL_TEST_SKIP_POSTGRES")
        .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip && PG_UNREACHABLE.load(Ordering::Relaxed) {
        println!("postgres tests skipped (KEEL_TEST_SKIP_POSTGRES=1): {base} is unreachable");
        return None;
    }
    let conn = match tokio::time::timeout(Duration::from_secs(15), Database::connect(base.as_str()))
        .await
    {
        Ok(Ok(conn)) => conn,
        failure => {
            let why = match failure {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out after 15 s".to_owned(),
            };
            if skip {
                PG_UNREACHABLE.store(true, Ordering::Relaxed);
                println!(
                    "postgres tests skipped (KEEL_TEST_SKIP_POSTGRES=1): cannot reach {base}: {why}"
                );
                return None;
            }
            panic!(
                "cannot reach PostgreSQL at {base} ({why}). Start one, point KEEL_TEST_POSTGRES_URL at it, \
                 or set KEEL_TEST_SKIP_POSTGRES=1 to skip the ::postgres tests"
            );
        }
    };
    PG_SWEEP
        .get_or_init(|| sweep_leftover_databases(&conn))
        .await;
    let name = format!(
        "keel_test_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name} at {base}: {e}"));
    let _ = conn.close().await;
    let url = postgres_url_with_database(&base, &name);
    Some((
        url,
        PgDatabase {
            base_url: base,
            name,
        },
    ))
}

fn drop_postgres_database(pg: &PgDatabase) {
    let base = pg.base_url.clone();
    let name = pg.name.clone();
    // Runs on its own thread and runtime: this is called from Drop, possibly
    // while a test panics, possibly inside the test's runtime.
    let outcome = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let conn = Database::connect(base.as_str())
                .await
                .map_err(|e| e.to_string())?;
            conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .map_err(|e| e.to_string())?;
            let _ = conn.close().await;
            Ok::<(), String>(())
        })
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", pg.name),
        Err(_) => eprintln!(
            "could not drop test database {}: cleanup thread panicked",
            pg.name
        ),
    }
}

impl TestApp {
    /// Starts a server with the default test configuration.
    pub async fn spawn(db: Db) -> Option<TestApp> {
        Self::spawn_with(db, |_| {}).await
    }

    /// Starts a server after `configure` has adjusted the test configuration.
    /// `None` only for PostgreSQL when it is unreachable and skipping is
    /// allowed.
    pub async fn spawn_with(db: Db, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let data_dir = std::env::temp_dir()
            .join("keel-tests")
            .join(uuid::Uuid::new_v4().to_string());

        let (database_url, pg) = match db {
            Db::Sqlite => (
                format!("sqlite://{}/keel.db?mode=rwc", data_dir.display()),
                None,
            ),
            Db::Postgres => match create_postgres_database().await {
                Some((url, pg)) => (url, Some(pg)),
                None => return None,
            },
        };
        // Created only now, so that an unreachable PostgreSQL leaves nothing behind.
        std::fs::create_dir_all(&data_dir).expect("create the test data directory");

        let mut config = Config {
            listen: "127.0.0.1:0".to_owned(),
            database_url,
            data_dir: data_dir.clone(),
            ..Config::default()
        };
        config.auth.bootstrap_admin_password = Some(Secret::new(ADMIN_PASSWORD.to_owned()));
        configure(&mut config);

        keel_notify::webhook::install_crypto_provider();
        // From here on, Drop cleans up if anything panics.
        let mut app = TestApp {
            db,
            port: 0,
            database_url: config.database_url.clone(),
            client: Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("build the HTTP client"),
            data_dir,
            pg,
            server: None,
            admin: tokio::sync::OnceCell::new(),
        };

        let application = keel_server::Application::build(config)
            .await
            .expect("build the application");
        app.port = application.port();
        app.server = Some(tokio::spawn(application.run()));
        app.wait_until_ready().await;
        Some(app)
    }

    /// A second connection to the application's database, as another Keel
    /// node (or its background worker) would have.
    pub async fn store(&self) -> keel_store::Store {
        keel_store::Store::connect(&self.database_url, 2)
            .await
            .expect("connect to the test database")
    }

    async fn wait_until_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self.client.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server on port {} did not answer /healthz", self.port);
    }

    /// Stops the server and removes its database and data directory.
    pub async fn finish(mut self) {
        self.cleanup();
    }

    fn cleanup(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let Some(pg) = self.pg.take() {
            drop_postgres_database(&pg);
        }
        if self.data_dir.exists() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// A request without credentials.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request with `Authorization: Bearer <token>`.
    pub fn authed(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(token)
    }

    pub fn get(&self, path: &str, token: &str) -> RequestBuilder {
        self.authed(Method::GET, path, token)
    }

    pub fn post(&self, path: &str, token: &str) -> RequestBuilder {
        self.authed(Method::POST, path, token)
    }

    pub fn patch(&self, path: &str, token: &str) -> RequestBuilder {
        self.authed(Method::PATCH, path, token)
    }

    pub fn put(&self, path: &str, token: &str) -> RequestBuilder {
        self.authed(Method::PUT, path, token)
    }

    pub fn delete(&self, path: &str, token: &str) -> RequestBuilder {
        self.authed(Method::DELETE, path, token)
    }

    /// GET `path` with `token` and expect 200 with a JSON body.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        expect_json(self.get(path, token).send().await.unwrap(), StatusCode::OK).await
    }

    // ---- auth ---------------------------------------------------------

    /// POST /auth/login, whatever the outcome.
    pub async fn try_login(&self, username: &str, password: &str) -> Response {
        self.request(Method::POST, "/api/v1/auth/login")
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap()
    }

    /// Logs in and expects success.
    pub async fn login(&self, username: &str, password: &str) -> Tokens {
        let resp = self.try_login(username, password).await;
        Tokens::from_json(&expect_json(resp, StatusCode::OK).await)
    }

    /// An access token of the bootstrap administrator (one session per app).
    pub async fn admin_token(&self) -> String {
        self.admin
            .get_or_init(|| async { self.login("admin", ADMIN_PASSWORD).await.access_token })
            .await
            .clone()
    }

    // ---- people -------------------------------------------------------

    /// The password [`TestApp::create_user`] gives `username`.
    pub fn password_for(username: &str) -> String {
        let mut p = format!("password-{username}");
        while p.chars().count() < 10 {
            p.push('x');
        }
        p
    }

    /// Creates a user with one role (as `admin_token`) and logs them in:
    /// `(user id, access token)`.
    pub async fn create_user(
        &self,
        admin_token: &str,
        username: &str,
        role: &str,
    ) -> (String, String) {
        let resp = self
            .post("/api/v1/users", admin_token)
            .json(&json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "display_name": format!("User {username}"),
                "password": Self::password_for(username),
                "roles": [role],
            }))
            .send()
            .await
            .unwrap();
        let user = expect_json(resp, StatusCode::CREATED).await;
        let id = user["id"].as_str().expect("user id").to_owned();
        let token = self
            .login(username, &Self::password_for(username))
            .await
            .access_token;
        (id, token)
    }

    /// [`TestApp::create_user`] as a [`Person`].
    pub async fn person(&self, admin_token: &str, username: &str, role: &str) -> Person {
        let (id, token) = self.create_user(admin_token, username, role).await;
        Person {
            id,
            username: username.to_owned(),
            token,
        }
    }

    /// Creates a group; returns its id.
    pub async fn create_group(&self, token: &str, name: &str) -> String {
        let resp = self
            .post("/api/v1/groups", token)
            .json(&json!({ "name": name, "description": format!("The {name} group") }))
            .send()
            .await
            .unwrap();
        let group = expect_json(resp, StatusCode::CREATED).await;
        group["id"].as_str().expect("group id").to_owned()
    }

    /// Adds `user` (id) to `group` (id).
    pub async fn add_member(&self, token: &str, group: &str, user: &str) {
        let resp = self
            .put(&format!("/api/v1/groups/{group}/members/{user}"), token)
            .send()
            .await
            .unwrap();
        expect_status(resp, StatusCode::NO_CONTENT).await;
    }

    /// The usual cast: group `service-desk` with agents `agent1` and
    /// `agent2`, requesters `req1` and `req2`.
    pub async fn desk(&self) -> Desk {
        let admin = self.admin_token().await;
        let group_name = "service-desk".to_owned();
        let group = self.create_group(&admin, &group_name).await;
        let agent = self.person(&admin, "agent1", "agent").await;
        let agent2 = self.person(&admin, "agent2", "agent").await;
        let requester = self.person(&admin, "req1", "requester").await;
        let requester2 = self.person(&admin, "req2", "requester").await;
        self.add_member(&admin, &group, &agent.id).await;
        self.add_member(&admin, &group, &agent2.id).await;
        Desk {
            admin,
            group,
            group_name,
            agent,
            agent2,
            requester,
            requester2,
        }
    }

    // ---- incidents ----------------------------------------------------

    /// POST /incidents, whatever the outcome.
    pub async fn try_create_incident(&self, token: &str, body: &Value) -> Response {
        self.post("/api/v1/incidents", token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Creates an incident and expects 201.
    pub async fn create_incident(&self, token: &str, body: Value) -> Value {
        let resp = self.try_create_incident(token, &body).await;
        expect_json(resp, StatusCode::CREATED).await
    }

    /// An incident with the given title, impact 3 and urgency 3.
    pub async fn simple_incident(&self, token: &str, title: &str) -> Value {
        self.create_incident(token, json!({ "title": title, "impact": 3, "urgency": 3 }))
            .await
    }

    /// GET /incidents/{key} and expect 200.
    pub async fn incident(&self, token: &str, key: &str) -> Value {
        self.get_json(&format!("/api/v1/incidents/{key}"), token)
            .await
    }

    /// PATCH with `If-Match: "<version>"`, whatever the outcome.
    pub async fn patch_incident(
        &self,
        token: &str,
        id: &str,
        version: i64,
        body: &Value,
    ) -> Response {
        self.patch(&format!("/api/v1/incidents/{id}"), token)
            .header("If-Match", format!("\"{version}\""))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// POST /transitions, whatever the outcome.
    pub async fn try_transition(&self, token: &str, id: &str, body: Value) -> Response {
        self.post(&format!("/api/v1/incidents/{id}/transitions"), token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Takes a transition and expects 200; returns the incident.
    pub async fn transition(&self, token: &str, id: &str, body: Value) -> Value {
        let resp = self.try_transition(token, id, body).await;
        expect_json(resp, StatusCode::OK).await
    }

    /// Resolves with a valid code and notes.
    pub async fn resolve(&self, token: &str, id: &str) -> Value {
        self.transition(
            token,
            id,
            json!({ "action": "resolve", "resolution_code": "solved_permanently", "resolution_notes": "Fixed it." }),
        )
        .await
    }

    /// POST a comment, whatever the outcome.
    pub async fn try_comment(
        &self,
        token: &str,
        id: &str,
        body: &str,
        visibility: &str,
    ) -> Response {
        self.post(&format!("/api/v1/incidents/{id}/comments"), token)
            .json(&json!({ "body": body, "visibility": visibility }))
            .send()
            .await
            .unwrap()
    }

    /// Posts a comment and expects 201.
    pub async fn comment(&self, token: &str, id: &str, body: &str, visibility: &str) -> Value {
        expect_json(
            self.try_comment(token, id, body, visibility).await,
            StatusCode::CREATED,
        )
        .await
    }

    /// Uploads `bytes` as the multipart part `file`, whatever the outcome.
    pub async fn upload(
        &self,
        token: &str,
        id: &str,
        filename: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Response {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(filename.to_owned())
            .mime_str(content_type)
            .unwrap();
        let form = reqwest::multipart::Form::new().part("file", part);
        self.post(&format!("/api/v1/incidents/{id}/attachments"), token)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// GET /incidents with a query (pairs are URL-encoded); expects 200.
    pub async fn list_incidents(&self, token: &str, query: &[(&str, &str)]) -> Value {
        let resp = self
            .get(&incidents_query(query), token)
            .send()
            .await
            .unwrap();
        expect_json(resp, StatusCode::OK).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// `/api/v1/incidents?...` with the pairs URL-encoded.
pub fn incidents_query(query: &[(&str, &str)]) -> String {
    with_query("/api/v1/incidents", query)
}

/// `path?k=v&...` with the pairs URL-encoded.
pub fn with_query(path: &str, query: &[(&str, &str)]) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// Percent-encodes everything but unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- response checks ------------------------------------------------------

/// Reads the body as text, for messages.
async fn body_text(resp: Response) -> String {
    resp.text()
        .await
        .unwrap_or_else(|e| format!("<unreadable body: {e}>"))
}

/// Expects `status`; returns the body parsed as JSON (Null when empty).
pub async fn expect_json(resp: Response, status: StatusCode) -> Value {
    let (actual, headers, text) = split(resp).await;
    assert_eq!(
        actual, status,
        "unexpected status; headers {headers:?}; body: {text}"
    );
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
    }
}

/// Expects `status` and returns the headers and the raw body.
pub async fn expect_status(resp: Response, status: StatusCode) -> (HeaderMap, String) {
    let (actual, headers, text) = split(resp).await;
    assert_eq!(actual, status, "unexpected status; body: {text}");
    (headers, text)
}

async fn split(resp: Response) -> (StatusCode, HeaderMap, String) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = body_text(resp).await;
    (status, headers, text)
}

/// Checks a problem response: `status`, `content-type:
/// application/problem+json`, a body with `code == code` and `status`
/// matching. Returns the body.
pub async fn assert_problem(resp: Response, status: u16, code: &str) -> Value {
    let (actual, headers, text) = split(resp).await;
    assert_eq!(
        actual.as_u16(),
        status,
        "expected {status} {code}; got {actual}, body: {text}"
    );
    let body = problem_body(&headers, &text);
    assert_eq!(body["code"], code, "problem code; body: {text}");
    body
}

/// Like [`assert_problem`] but accepting any of `statuses` and any code
/// starting with one of `prefixes`. Returns `(status, body)`.
pub async fn assert_problem_any(
    resp: Response,
    statuses: &[u16],
    prefixes: &[&str],
) -> (u16, Value) {
    let (actual, headers, text) = split(resp).await;
    assert!(
        statuses.contains(&actual.as_u16()),
        "expected one of {statuses:?} with a code starting {prefixes:?}; got {actual}, body: {text}"
    );
    let body = problem_body(&headers, &text);
    let code = body["code"].as_str().unwrap_or_default();
    assert!(
        prefixes.iter().any(|p| code.starts_with(p)),
        "expected a code starting with one of {prefixes:?}, got {code:?}; body: {text}"
    );
    (actual.as_u16(), body)
}

/// Parses and checks the shape of a problem document.
pub fn problem_body(headers: &HeaderMap, text: &str) -> Value {
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/problem+json"),
        "expected content-type application/problem+json, got {ct:?}; body: {text}"
    );
    let body: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("problem body is not JSON ({e}): {text}"));
    assert!(body["code"].is_string(), "problem without a code: {text}");
    assert!(body["title"].is_string(), "problem without a title: {text}");
    assert!(body["status"].is_u64(), "problem without a status: {text}");
    body
}

/// The `ETag` header, as sent (`"3"`).
pub fn etag(headers: &HeaderMap) -> String {
    headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("an ETag header")
        .to_owned()
}

/// `items` of a list response as a slice.
pub fn items(list: &Value) -> &Vec<Value> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {list}"))
}

/// The `id`s of `items` of a list response.
pub fn ids(list: &Value) -> Vec<String> {
    items(list)
        .iter()
        .map(|i| i["id"].as_str().expect("item id").to_owned())
        .collect()
}

/// The string at `v[key]`.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

/// Collects failed checks so that one test can report every leak it finds
/// instead of stopping at the first.
#[derive(Debug, Default)]
pub struct Soft(Vec<String>);

impl Soft {
    /// Records `message` unless `ok`.
    pub fn check(&mut self, ok: bool, message: impl Into<String>) {
        if !ok {
            self.0.push(message.into());
        }
    }

    /// Panics with every recorded failure, if any.
    pub fn verify(self) {
        assert!(
            self.0.is_empty(),
            "{} check(s) failed:\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

/// Runs a test once per database, handing it the database to spawn Keel on
/// itself (for tests that must start something, such as an SMTP server,
/// before Keel).
#[macro_export]
macro_rules! both_db {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Db::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::Db::Postgres).await;
            }
        }
    };
}

/// One email as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Envelope recipients.
    pub to: Vec<String>,
    headers: Vec<(String, String)>,
    pub raw: String,
}

impl Mail {
    fn parse(raw: String) -> Mail {
        let head = raw
            .split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .replace("\r\n ", " ")
            .replace("\r\n\t", " ");
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let to = headers
            .iter()
            .find(|(k, _)| k == "x-envelope-to")
            .map(|(_, v)| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        Mail { to, headers, raw }
    }

    /// A header's value (first occurrence), case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn subject(&self) -> &str {
        self.header("subject").unwrap_or("")
    }
}

/// A real SMTP server process (Python's aiosmtpd) for the tests. It needs
/// the interpreter `scripts/test` installs: `.venv/bin/python` at the
/// workspace root, or `KEEL_TEST_PYTHON`.
pub struct SmtpSink {
    pub port: u16,
    dir: PathBuf,
    child: Option<std::process::Child>,
}

impl SmtpSink {
    fn python() -> PathBuf {
        if let Ok(p) = std::env::var("KEEL_TEST_PYTHON") {
            return p.into();
        }
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        assert!(
            p.exists(),
            "the SMTP tests need aiosmtpd: run ./scripts/test (it creates .venv), or set KEEL_TEST_PYTHON"
        );
        p
    }

    /// Starts a sink on a free port.
    pub async fn start() -> SmtpSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir()
            .join("keel-tests")
            .join(format!("smtp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut sink = SmtpSink {
            port,
            dir,
            child: None,
        };
        sink.restart().await;
        sink
    }

    /// Starts (again) on the same port, keeping what was received.
    pub async fn restart(&mut self) {
        use std::io::BufRead;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("smtp_sink.py");
        let mut child = std::process::Command::new(Self::python())
            .arg(&script)
            .arg(self.port.to_string())
            .arg(&self.dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the SMTP sink");
        let stdout = child.stdout.take().unwrap();
        let ready = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).ok();
            line
        });
        let line = tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        self.child = Some(child);
    }

    /// Kills the server outright, as a crash or outage would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(Mail::parse)
            .collect()
    }

    /// Waits until `pred` holds for the received messages (up to 20 s).
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Mail]) -> bool) -> Vec<Mail> {
        for _ in 0..200 {
            let m = self.messages();
            if pred(&m) {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let m = self.messages();
        let subjects: Vec<(&str, Vec<String>)> =
            m.iter().map(|x| (x.subject(), x.to.clone())).collect();
        panic!("timed out waiting for {what}; received: {subjects:?}");
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.kill();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// One request a webhook receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names lowercase.
    pub headers: std::collections::HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A webhook receiver: a real HTTP server on loopback that records every
/// request and answers 500 to the first `fail_first` of them, then 200.
pub struct HookReceiver {
    pub port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HookReceiver {
    pub async fn start(fail_first: usize) -> HookReceiver {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = received.clone();
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let headers: std::collections::HashMap<String, String> = head
                        .split("\r\n")
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = buf[head_end..].to_vec();
                    let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    log.lock().unwrap().push(Received { headers, body });
                    let status = if n < fail_first {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let _ = sock
                        .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
                        .await;
                });
            }
        });
        HookReceiver {
            port,
            received,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the requests received (up to 20 s).
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..200 {
            let r = self.received();
            if pred(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let events: Vec<String> = self
            .received()
            .iter()
            .map(|r| r.headers.get("x-keel-event").cloned().unwrap_or_default())
            .collect();
        panic!("timed out waiting for {what}; received: {events:?}");
    }
}

impl Drop for HookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fresh PostgreSQL database that several Keel processes share; dropped
/// with the value.
pub struct SharedDatabase {
    pub url: String,
    pg: PgDatabase,
}

impl SharedDatabase {
    /// `None` when PostgreSQL is skipped (see `KEEL_TEST_SKIP_POSTGRES`).
    pub async fn postgres() -> Option<SharedDatabase> {
        let (url, pg) = create_postgres_database().await?;
        Some(SharedDatabase { url, pg })
    }
}

impl Drop for SharedDatabase {
    fn drop(&mut self) {
        drop_postgres_database(&self.pg);
    }
}

/// A `keel serve` child process: a separate Keel node.
pub struct KeelProcess {
    pub port: u16,
    child: std::process::Child,
    dir: PathBuf,
    database_url: String,
    extra_toml: String,
}

impl KeelProcess {
    /// The `keel` binary beside the test executable (`target/debug/keel`,
    /// wherever the target directory is), or `KEEL_BIN`. `scripts/test`
    /// builds it before the tests run.
    fn binary() -> PathBuf {
        if let Ok(p) = std::env::var("KEEL_BIN") {
            return p.into();
        }
        // The test executable lives in `<target>/<profile>/deps/`.
        let beside_tests = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent()?.parent().map(|d| d.join("keel")));
        let fallback = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("debug/keel");
        let p = beside_tests.filter(|p| p.exists()).unwrap_or(fallback);
        assert!(
            p.exists(),
            "{} is missing: run `cargo build -p keel-server` (scripts/test does) or set KEEL_BIN",
            p.display()
        );
        p
    }

    /// Starts a node on `database_url`; `extra_toml` is appended to its
    /// configuration file. Returns once it answers `/healthz`.
    pub async fn start(database_url: &str, extra_toml: &str) -> KeelProcess {
        let dir = std::env::temp_dir()
            .join("keel-tests")
            .join(format!("node-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self::start_in(dir, database_url, extra_toml).await
    }

    /// Kills the node with SIGKILL (no shutdown of any kind) and starts it
    /// again on the same database and data directory, on a new port.
    pub async fn kill_and_restart(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        let next = Self::start_in(self.dir.clone(), &self.database_url, &self.extra_toml).await;
        // The old value's Drop would remove the shared directory.
        let old = std::mem::replace(self, next);
        std::mem::forget(old);
    }

    async fn start_in(dir: PathBuf, database_url: &str, extra_toml: &str) -> KeelProcess {
        keel_notify::webhook::install_crypto_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{database_url}\"\ndata_dir = \"{}\"\nlog = \"warn\"\n{extra_toml}\n[auth]\nbootstrap_admin_password = \"{ADMIN_PASSWORD}\"\n",
            dir.join("data").display()
        );
        let config_path = dir.join("keel.toml");
        std::fs::write(&config_path, config).unwrap();
        let child = std::process::Command::new(Self::binary())
            .arg("--config")
            .arg(&config_path)
            .arg("serve")
            .env_remove("KEEL_DATABASE_URL")
            .env_remove("KEEL_LISTEN")
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("keel.log"))
                    .unwrap(),
            )
            .spawn()
            .expect("start keel");
        let node = KeelProcess {
            port,
            child,
            dir,
            database_url: database_url.to_owned(),
            extra_toml: extra_toml.to_owned(),
        };
        let client = Client::builder().no_proxy().build().unwrap();
        for _ in 0..300 {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                && r.status().is_success()
            {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(node.dir.join("keel.log")).unwrap_or_default();
        panic!("keel on port {port} did not start:\n{log}");
    }
}

impl Drop for KeelProcess {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

impl TestApp {
    /// The test helpers, pointed at a Keel running elsewhere (a
    /// [`KeelProcess`]); dropping it stops nothing and drops no database.
    pub fn attach(db: Db, port: u16, database_url: &str) -> TestApp {
        keel_notify::webhook::install_crypto_provider();
        TestApp {
            db,
            port,
            database_url: database_url.to_owned(),
            client: Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            data_dir: std::env::temp_dir()
                .join("keel-tests")
                .join(format!("attached-{}", uuid::Uuid::new_v4())),
            pg: None,
            server: None,
            admin: tokio::sync::OnceCell::new(),
        }
    }
}
