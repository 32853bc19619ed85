//! The `keel` binary's library: configuration, start-up and the application
//! factory shared by `main`, the black-box tests and the OpenAPI generator.

pub mod config;
pub mod seed;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpServer, web};
use base64::Engine;
use keel_api::metrics::Metrics;
use keel_api::{ApiSettings, AppState};
use keel_auth::jwt::JwtKeys;
use keel_auth::throttle::LoginThrottle;
use keel_auth::{password, tokens};
use keel_core::Role;
use keel_core::people::{EmailAddress, Username};
use keel_store::Store;
use keel_store::directory::NewUser;

pub use config::Config;

/// Why Keel could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("database: {0}")]
    Store(#[from] keel_store::StoreError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// The OpenAPI document as committed at `openapi/openapi.json`.
pub fn openapi_json() -> String {
    keel_api::openapi_json()
}

/// Connects to the database and applies pending migrations.
pub async fn open_store(config: &Config) -> Result<Store, StartError> {
    let store = Store::connect(&config.database_url, config.database_max_connections)
        .await?
        .with_config_cache(Duration::from_secs(config.database_config_cache_secs))
        .with_inline_reads(Duration::from_millis(config.database_sqlite_inline_read_ms));
    store.migrate().await?;
    Ok(store)
}

/// A running-to-be Keel: bound to its port, serving once [`Application::run`] is awaited.
pub struct Application {
    port: u16,
    server: Server,
    housekeeping: Housekeeping,
    delivery: Option<Delivery>,
    hooks: HookDelivery,
}

/// Exponential backoff from `base`, doubling per attempt, at most 15 minutes.
fn backoff(base: Duration, attempts: i32) -> chrono::Duration {
    let factor = 2u32.saturating_pow(u32::try_from(attempts.clamp(1, 16) - 1).unwrap_or(0));
    let delay = base.saturating_mul(factor).min(Duration::from_secs(900));
    chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::minutes(15))
}

/// Posts queued webhook deliveries. Like email, each is claimed in the
/// database before it is sent, so several nodes never post one twice.
struct HookDelivery {
    store: Store,
    sender: keel_notify::webhook::WebhookSender,
    interval: Duration,
    retry_base: Duration,
}

impl HookDelivery {
    const BATCH: u64 = 50;

    async fn pass(&self) {
        loop {
            let batch = match self
                .store
                .webhook_claim(Self::BATCH, chrono::Duration::minutes(2))
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook claim failed; will retry");
                    return;
                }
            };
            let full = batch.len() as u64 == Self::BATCH;
            for d in batch {
                let a = self
                    .sender
                    .send(&d.url, &d.secret, &d.event, d.id, d.payload.as_bytes())
                    .await;
                let record = keel_store::webhooks::AttemptRecord {
                    attempts: d.attempts,
                    delivered: a.delivered(),
                    status: a.status,
                    latency_ms: a.latency_ms,
                    error: a.error.clone(),
                    retry_at: keel_core::time::now() + backoff(self.retry_base, d.attempts),
                };
                if let Err(e) = self.store.webhook_attempted(d.id, &record).await {
                    tracing::warn!(error = %e, "could not record a webhook attempt; the claim will expire and retry");
                }
            }
            if !full {
                return;
            }
        }
    }

    async fn run(self) {
        let mut tick = tokio::time::interval(self.interval);
        loop {
            tick.tick().await;
            self.pass().await;
        }
    }
}

/// Sends the outbox by email. Every node may run it: each message is
/// claimed in the database before it is sent, and marked sent only after
/// the mail server accepted it; failures are retried with exponential
/// backoff, so an SMTP outage delays mail but loses none.
struct Delivery {
    store: Store,
    mailer: keel_notify::Mailer,
    templates: keel_notify::Templates,
    interval: Duration,
    retry_base: Duration,
}

impl Delivery {
    /// Notices claimed at once. Each may have many recipients (a group's
    /// members), and every one of them is claimed for [`Delivery::LEASE`]
    /// from the claim, so a batch is kept small.
    const BATCH: u64 = 10;
    /// How long a claim holds a notice; renewed after each recipient.
    const LEASE: chrono::Duration = chrono::Duration::minutes(2);

    async fn pass(&self) {
        loop {
            let batch = match self.store.outbox_claim(Self::BATCH, Self::LEASE).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox claim failed; will retry");
                    return;
                }
            };
            let full = batch.len() as u64 == Self::BATCH;
            for msg in batch {
                self.deliver(msg).await;
            }
            if !full {
                return;
            }
        }
    }

    /// Sends one notice to each recipient still pending, recording each
    /// outcome as it comes (which renews the claim). A failure that may
    /// pass (the server is down, say) ends the pass: the rest wait for the
    /// retry with it.
    async fn deliver(&self, mut msg: keel_store::notify::OutboxMessage) {
        use keel_store::notify::DeliveryState;
        let Some(rendered) = self.templates.render(&msg.event, &msg.context) else {
            for r in &mut msg.recipients {
                if r.state == DeliveryState::Pending {
                    r.fail("no template for this event");
                }
            }
            self.record(&msg, keel_core::time::now(), None).await;
            return;
        };
        let thread = msg
            .context
            .get("number")
            .and_then(|v| v.as_str())
            .unwrap_or("KEEL")
            .to_owned();
        let mut retry = None;
        for index in 0..msg.recipients.len() {
            if msg.recipients[index].state != DeliveryState::Pending {
                continue;
            }
            let out = keel_notify::email::Outgoing {
                id: msg.id,
                index,
                thread: &thread,
                first: msg.event == "incident.created",
                to: &msg.recipients[index].email,
                rendered: &rendered,
            };
            match self.mailer.send(&out).await {
                Ok(()) => msg.recipients[index].state = DeliveryState::Sent,
                Err(e) if e.permanent => {
                    tracing::warn!(error = %e, "mail refused for good");
                    msg.recipients[index].fail(&e.message);
                }
                Err(e) => {
                    tracing::info!(error = %e, attempts = msg.attempts, "mail not sent; will retry");
                    let at = keel_core::time::now() + backoff(self.retry_base, msg.attempts);
                    retry = Some((at, e.message));
                    break;
                }
            }
            let more = msg.recipients[index + 1..]
                .iter()
                .any(|r| r.state == DeliveryState::Pending);
            if more {
                self.record(&msg, keel_core::time::now() + Self::LEASE, None)
                    .await;
            }
        }
        match &retry {
            Some((at, error)) => self.record(&msg, *at, Some(error)).await,
            // Nobody is left pending: the time is not used.
            None => self.record(&msg, keel_core::time::now(), None).await,
        }
    }

    async fn record(
        &self,
        msg: &keel_store::notify::OutboxMessage,
        until: keel_core::time::Timestamp,
        error: Option<&str>,
    ) {
        if let Err(e) = self.store.outbox_record(msg, until, error).await {
            tracing::warn!(error = %e, "could not record a delivery outcome; the claim will expire and retry");
        }
    }

    async fn run(self) {
        let mut tick = tokio::time::interval(self.interval);
        loop {
            tick.tick().await;
            self.pass().await;
        }
    }
}

/// Periodic upkeep: auto-closing resolved incidents and forgetting expired
/// idempotency keys. Every node may run it; each step is safe to repeat.
struct Housekeeping {
    store: Store,
    auto_close_days: u32,
    sla_interval: Duration,
}

impl Housekeeping {
    const INTERVAL: Duration = Duration::from_secs(300);

    async fn run_once(&self) {
        if self.auto_close_days > 0 {
            let after = chrono::Duration::days(i64::from(self.auto_close_days));
            match self.store.auto_close_resolved(after, 500).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(closed = n, "auto-closed resolved incidents"),
                Err(e) => tracing::warn!(error = %e, "auto-close failed; will retry"),
            }
        }
        match self.store.idempotency_purge().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "forgot expired idempotency keys"),
            Err(e) => tracing::warn!(error = %e, "idempotency purge failed; will retry"),
        }
    }

    /// Records SLA warnings and breaches due by now; each timer is claimed
    /// in the database, so several nodes never handle one twice.
    async fn sla_pass(&self) {
        loop {
            match self.store.sla_step(200).await {
                Ok(200) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "SLA pass failed; will retry");
                    break;
                }
            }
        }
    }

    async fn run(self) {
        let mut upkeep = tokio::time::interval(Self::INTERVAL);
        let mut sla = tokio::time::interval(self.sla_interval);
        loop {
            tokio::select! {
                _ = upkeep.tick() => self.run_once().await,
                _ = sla.tick() => self.sla_pass().await,
            }
        }
    }
}

impl Application {
    /// Opens and migrates the database, makes sure there is an admin and a
    /// signing key, binds the listen address (port 0 picks a free port) and
    /// builds the HTTP server.
    pub async fn build(config: Config) -> Result<Application, StartError> {
        let attachments_dir = config.data_dir.join("attachments");
        std::fs::create_dir_all(&attachments_dir)?;
        let workers = match config.http.workers {
            0 => std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            n => n,
        };
        let store = open_store(&config).await?.with_read_parts(workers);
        ensure_admin(&store, &config).await?;
        let secret = match &config.auth.jwt_secret {
            Some(s) => s.expose().as_bytes().to_vec(),
            None => {
                let b64 = store
                    .setting_or_insert("jwt_secret", || tokens::random_secret(48))
                    .await?;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(b64)
                    .map_err(|_| StartError::Other("stored jwt_secret is not base64".into()))?
            }
        };
        let housekeeping = Housekeeping {
            store: store.clone(),
            auto_close_days: config.incidents.auto_close_days,
            sla_interval: Duration::from_secs(config.sla.scan_interval_secs),
        };
        let delivery = match &config.smtp.url {
            Some(url) => {
                let templates = match &config.smtp.templates_dir {
                    Some(dir) => keel_notify::Templates::with_overrides(dir)?,
                    None => keel_notify::Templates::builtin(),
                };
                Some(Delivery {
                    store: store.clone(),
                    mailer: keel_notify::Mailer::new(url.expose(), &config.smtp.from)
                        .map_err(StartError::Other)?,
                    templates,
                    interval: Duration::from_secs(config.smtp.poll_interval_secs),
                    retry_base: Duration::from_secs(config.smtp.retry_base_secs),
                })
            }
            None => {
                tracing::warn!("smtp.url is not set: notifications wait in the outbox until it is");
                None
            }
        };
        let hooks = HookDelivery {
            store: store.clone(),
            sender: keel_notify::webhook::WebhookSender::new(
                config.webhooks.allow_internal_targets,
            )
            .map_err(StartError::Other)?,
            interval: Duration::from_secs(config.webhooks.poll_interval_secs),
            retry_base: Duration::from_secs(config.webhooks.retry_base_secs),
        };
        let metrics = Metrics::new().map_err(|e| StartError::Other(e.to_string()))?;
        let state = AppState {
            store,
            jwt: std::sync::Arc::new(JwtKeys::new(&secret, config.auth.access_token_ttl_secs)),
            throttle: std::sync::Arc::new(LoginThrottle::new(
                config.auth.login_max_failures_per_account,
                config.auth.login_max_failures_per_address,
                Duration::from_secs(config.auth.login_window_secs),
            )),
            settings: std::sync::Arc::new(ApiSettings {
                attachments_dir,
                attachment_max_bytes: config.attachments.max_bytes,
                max_json_bytes: config.http.max_json_bytes,
                refresh_token_ttl_secs: config.auth.refresh_token_ttl_secs,
                priority_matrix: config.incidents.priority_matrix.clone(),
                inbound_unknown_senders: unknown_senders(&config),
                inbound_max_bytes: config.inbound.max_bytes,
                webhooks_allow_internal: config.webhooks.allow_internal_targets,
            }),
            metrics: std::sync::Arc::new(metrics),
            actors: std::sync::Arc::new(keel_api::actor_cache::ActorCache::new(
                Duration::from_secs(config.auth.actor_cache_secs),
            )),
        };
        let listener = TcpListener::bind(&config.listen)?;
        let port = listener.local_addr()?.port();
        // Each worker reads through its own part of the hot reads'
        // connections (`Store::with_read_parts`); the factory below runs
        // once per worker.
        let next_worker = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let server = HttpServer::new(move || {
            let mut state = state.clone();
            let worker = next_worker.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            state.store = state.store.for_worker(worker);
            App::new()
                .wrap(from_fn(keel_api::idempotency::idempotency))
                .wrap(from_fn(keel_api::auth::require_auth))
                .wrap(ErrorHandlers::new().default_handler(keel_api::error::problemize))
                .wrap(from_fn(keel_api::metrics::track))
                .configure(move |cfg| keel_api::configure(cfg, state))
                .default_service(web::to(keel_api::error::not_found))
        })
        .client_request_timeout(Duration::from_secs(config.http.client_request_timeout_secs))
        .client_disconnect_timeout(Duration::from_secs(5))
        .max_connection_rate(256)
        .shutdown_timeout(10)
        .workers(workers);
        let server = server.listen(listener)?.run();
        tracing::info!(port, "keel listening");
        Ok(Application {
            port,
            server,
            housekeeping,
            delivery,
            hooks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM in `keel serve`),
    /// with housekeeping running beside it.
    pub async fn run(self) -> std::io::Result<()> {
        let upkeep = tokio::spawn(self.housekeeping.run());
        let delivery = self.delivery.map(|d| tokio::spawn(d.run()));
        let hooks = tokio::spawn(self.hooks.run());
        let result = self.server.await;
        upkeep.abort();
        hooks.abort();
        if let Some(d) = delivery {
            d.abort();
        }
        result
    }
}

/// Creates `admin` on first start, when no user holds the admin role.
async fn ensure_admin(store: &Store, config: &Config) -> Result<(), StartError> {
    if store.any_admin().await? {
        return Ok(());
    }
    let (password, generated) = match &config.auth.bootstrap_admin_password {
        Some(p) => (p.expose().to_owned(), false),
        None => (tokens::random_secret(18), true),
    };
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|e| StartError::Other(e.to_string()))?
        .map_err(|e| StartError::Other(e.to_string()))?;
    let username = Username::parse("admin").map_err(|e| StartError::Other(e.to_string()))?;
    let email =
        EmailAddress::parse("admin@keel.invalid").map_err(|e| StartError::Other(e.to_string()))?;
    let created = store
        .create_user(NewUser {
            username,
            email,
            display_name: "Administrator".into(),
            password_hash: hash,
            roles: vec![Role::Admin],
            groups: vec![],
        })
        .await;
    match created {
        Ok(_) if generated => {
            // Printed once, on purpose: this is how the operator gets in.
            tracing::warn!(
                "created the bootstrap admin user `admin` with password `{password}`; log in and change it with POST /api/v1/me/password"
            );
        }
        Ok(_) => {
            tracing::info!("created the bootstrap admin user `admin` with the configured password")
        }
        // Another node created it at the same moment.
        Err(keel_store::StoreError::Rule {
            code: "user.username_taken",
            ..
        }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The API's view of the unknown-senders setting.
pub fn unknown_senders(config: &Config) -> keel_api::inbound::UnknownSenders {
    match config.inbound.unknown_senders {
        config::UnknownSenders::Refuse => keel_api::inbound::UnknownSenders::Refuse,
        config::UnknownSenders::Create => keel_api::inbound::UnknownSenders::Create,
    }
}

/// Sets up logging as configured.
pub fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}
