//! Configuration in layers: built-in defaults, then a TOML file
//! (`keel.toml`, or `--config PATH`), then `KEEL_*` environment variables.
//! Unknown keys in the file are refused; secrets are typed so they never
//! print. Every key is listed in README.md.

use std::path::{Path, PathBuf};

use keel_incident::PriorityMatrix;
use serde::Deserialize;

/// A secret value: shown as `***` in logs and debug output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// All of Keel's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (`KEEL_LISTEN`).
    pub listen: String,
    /// Database URL (`KEEL_DATABASE_URL`).
    pub database_url: String,
    /// Pool size (`KEEL_DATABASE_MAX_CONNECTIONS`).
    pub database_max_connections: u32,
    /// How long a node keeps SLA policies, calendars and webhook
    /// subscriptions, in seconds (`KEEL_DATABASE_CONFIG_CACHE_SECS`, default
    /// 2, at most 60; 0 reads them on every write). Changes through this node
    /// apply at once; other nodes see them within this time.
    pub database_config_cache_secs: u64,
    /// How long, in milliseconds, a SQLite get or list page may run on the
    /// HTTP worker that asked for it before it is handed to a connection's
    /// own thread (`KEEL_DATABASE_SQLITE_INLINE_READ_MS`, default 5, at
    /// most 1 000; 0 always hands it over). Ignored on PostgreSQL.
    pub database_sqlite_inline_read_ms: u64,
    /// Where attachments live (`KEEL_DATA_DIR`).
    pub data_dir: PathBuf,
    /// `text` or `json` (`KEEL_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `keel=debug` (`KEEL_LOG`).
    pub log: String,
    pub auth: AuthConfig,
    pub attachments: AttachmentsConfig,
    pub http: HttpConfig,
    pub incidents: IncidentsConfig,
    pub sla: SlaConfig,
    pub smtp: SmtpConfig,
    pub inbound: InboundConfig,
    pub webhooks: WebhooksConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Allow targets on loopback, private and link-local addresses
    /// (`KEEL_WEBHOOKS_ALLOW_INTERNAL`). Off: such targets are refused.
    pub allow_internal_targets: bool,
    /// Seconds between delivery passes.
    pub poll_interval_secs: u64,
    /// First retry delay; doubles per attempt, capped at 15 minutes.
    pub retry_base_secs: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allow_internal_targets: false,
            poll_interval_secs: 2,
            retry_base_secs: 10,
        }
    }
}

/// What to do with mail from an address no user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSenders {
    Refuse,
    Create,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundConfig {
    /// `refuse` (default) or `create` a requester (`KEEL_INBOUND_UNKNOWN_SENDERS`).
    pub unknown_senders: UnknownSenders,
    /// Largest inbound message, in bytes.
    pub max_bytes: usize,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            unknown_senders: UnknownSenders::Refuse,
            max_bytes: 25 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp://host:port`, `smtp://user:pass@host:587?tls=required` or
    /// `smtps://host` (`KEEL_SMTP_URL`). Without it, notifications wait in
    /// the outbox.
    pub url: Option<Secret>,
    /// Sender, e.g. `Keel <desk@example.com>` (`KEEL_SMTP_FROM`).
    pub from: String,
    /// A directory of `{event}.subject|txt|html` files replacing built-in templates.
    pub templates_dir: Option<PathBuf>,
    /// Seconds between outbox passes.
    pub poll_interval_secs: u64,
    /// First retry delay; doubles per attempt, capped at 15 minutes.
    pub retry_base_secs: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            url: None,
            from: "Keel <keel@localhost.localdomain>".into(),
            templates_dir: None,
            poll_interval_secs: 5,
            retry_base_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlaConfig {
    /// Seconds between SLA worker passes (`KEEL_SLA_SCAN_INTERVAL_SECS`).
    pub scan_interval_secs: u64,
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig {
            scan_interval_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 signing key, at least 32 bytes (`KEEL_JWT_SECRET`). When unset,
    /// one is generated on first start and kept in the database.
    pub jwt_secret: Option<Secret>,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub login_max_failures_per_account: usize,
    pub login_max_failures_per_address: usize,
    pub login_window_secs: u64,
    /// How long an authenticated caller is remembered, in seconds
    /// (`KEEL_AUTH_ACTOR_CACHE_SECS`, default 2; 0 turns the cache off).
    /// Revocations on this node apply at once; other nodes see them within
    /// this time.
    pub actor_cache_secs: u64,
    /// Password for the `admin` user created on first start
    /// (`KEEL_BOOTSTRAP_ADMIN_PASSWORD`); random and logged once when unset.
    pub bootstrap_admin_password: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttachmentsConfig {
    /// Largest attachment, in bytes (`KEEL_ATTACHMENTS_MAX_BYTES`).
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest JSON body, in bytes.
    pub max_json_bytes: usize,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Seconds a client may take to send its request head.
    pub client_request_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentsConfig {
    /// Impact (rows) × urgency (columns) → priority, 3×3 or 4×4.
    pub priority_matrix: PriorityMatrix,
    /// Resolved incidents close by themselves after this many days without
    /// a reopen (`KEEL_INCIDENTS_AUTO_CLOSE_DAYS`); 0 never closes them.
    pub auto_close_days: u32,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            priority_matrix: PriorityMatrix::default(),
            auto_close_days: 7,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://keel.db?mode=rwc".into(),
            database_max_connections: 10,
            database_config_cache_secs: 2,
            database_sqlite_inline_read_ms: 5,
            data_dir: PathBuf::from("data"),
            log_format: LogFormat::Text,
            log: "info".into(),
            auth: AuthConfig::default(),
            attachments: AttachmentsConfig::default(),
            http: HttpConfig::default(),
            incidents: IncidentsConfig::default(),
            sla: SlaConfig::default(),
            smtp: SmtpConfig::default(),
            inbound: InboundConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: None,
            access_token_ttl_secs: 900,
            actor_cache_secs: 2,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            login_max_failures_per_account: 5,
            login_max_failures_per_address: 50,
            login_window_secs: 900,
            bootstrap_admin_password: None,
        }
    }
}

impl Default for AttachmentsConfig {
    fn default() -> Self {
        AttachmentsConfig {
            max_bytes: 10 * 1024 * 1024,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_json_bytes: 1024 * 1024,
            workers: 0,
            client_request_timeout_secs: 10,
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid value for {var}: {message}")]
    Env { var: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn env_var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_env<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    env_var(name)
        .map(|v| {
            v.parse::<T>().map_err(|e| ConfigError::Env {
                var: name,
                message: e.to_string(),
            })
        })
        .transpose()
}

impl Config {
    /// Loads defaults, then `file` (or `keel.toml` if it exists), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(p) => Self::from_file(p)?,
            None if Path::new("keel.toml").exists() => Self::from_file(Path::new("keel.toml"))?,
            None => Config::default(),
        };
        cfg.apply_env()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })
    }

    fn apply_env(&mut self) -> Result<(), ConfigError> {
        if let Some(v) = env_var("KEEL_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = env_var("KEEL_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = parse_env("KEEL_DATABASE_MAX_CONNECTIONS")? {
            self.database_max_connections = v;
        }
        if let Some(v) = parse_env("KEEL_DATABASE_CONFIG_CACHE_SECS")? {
            self.database_config_cache_secs = v;
        }
        if let Some(v) = parse_env("KEEL_DATABASE_SQLITE_INLINE_READ_MS")? {
            self.database_sqlite_inline_read_ms = v;
        }
        if let Some(v) = env_var("KEEL_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = env_var("KEEL_LOG_FORMAT") {
            self.log_format = match v.as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                _ => {
                    return Err(ConfigError::Env {
                        var: "KEEL_LOG_FORMAT",
                        message: "use `text` or `json`".into(),
                    });
                }
            };
        }
        if let Some(v) = env_var("KEEL_LOG") {
            self.log = v;
        }
        if let Some(v) = env_var("KEEL_JWT_SECRET") {
            self.auth.jwt_secret = Some(Secret::new(v));
        }
        if let Some(v) = env_var("KEEL_BOOTSTRAP_ADMIN_PASSWORD") {
            self.auth.bootstrap_admin_password = Some(Secret::new(v));
        }
        if let Some(v) = parse_env("KEEL_ACCESS_TOKEN_TTL_SECS")? {
            self.auth.access_token_ttl_secs = v;
        }
        if let Some(v) = parse_env("KEEL_AUTH_ACTOR_CACHE_SECS")? {
            self.auth.actor_cache_secs = v;
        }
        if let Some(v) = parse_env("KEEL_INCIDENTS_AUTO_CLOSE_DAYS")? {
            self.incidents.auto_close_days = v;
        }
        if let Some(v) = env_var("KEEL_SMTP_URL") {
            self.smtp.url = Some(Secret::new(v));
        }
        if let Some(v) = env_var("KEEL_INBOUND_UNKNOWN_SENDERS") {
            self.inbound.unknown_senders = match v.as_str() {
                "refuse" => UnknownSenders::Refuse,
                "create" => UnknownSenders::Create,
                _ => {
                    return Err(ConfigError::Env {
                        var: "KEEL_INBOUND_UNKNOWN_SENDERS",
                        message: "use `refuse` or `create`".into(),
                    });
                }
            };
        }
        if let Some(v) = parse_env("KEEL_WEBHOOKS_ALLOW_INTERNAL")? {
            self.webhooks.allow_internal_targets = v;
        }
        if let Some(v) = env_var("KEEL_SMTP_FROM") {
            self.smtp.from = v;
        }
        if let Some(v) = parse_env("KEEL_SLA_SCAN_INTERVAL_SECS")? {
            self.sla.scan_interval_secs = v;
        }
        if let Some(v) = parse_env("KEEL_ATTACHMENTS_MAX_BYTES")? {
            self.attachments.max_bytes = v;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(s) = &self.auth.jwt_secret
            && s.expose().len() < 32
        {
            return Err(ConfigError::Invalid(
                "auth.jwt_secret must be at least 32 bytes".into(),
            ));
        }
        if self.database_config_cache_secs > 60 {
            return Err(ConfigError::Invalid(
                "database_config_cache_secs must be at most 60, so configuration changes reach every node soon"
                    .into(),
            ));
        }
        if self.database_sqlite_inline_read_ms > 1_000 {
            return Err(ConfigError::Invalid(
                "database_sqlite_inline_read_ms must be at most 1000, so one read cannot hold up an HTTP worker for longer"
                    .into(),
            ));
        }
        if self.auth.actor_cache_secs > 60 {
            return Err(ConfigError::Invalid(
                "auth.actor_cache_secs must be at most 60, so revocations reach every node soon"
                    .into(),
            ));
        }
        if self.auth.access_token_ttl_secs < 60
            || self.auth.refresh_token_ttl_secs < self.auth.access_token_ttl_secs
        {
            return Err(ConfigError::Invalid(
                "token lifetimes: access >= 60 s and refresh >= access".into(),
            ));
        }
        if let Some(p) = &self.auth.bootstrap_admin_password
            && keel_core::people::check_password(p.expose()).is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "auth.bootstrap_admin_password must be {} to {} characters",
                keel_core::people::MIN_PASSWORD,
                keel_core::people::MAX_PASSWORD
            )));
        }
        if self.webhooks.poll_interval_secs == 0 || self.webhooks.retry_base_secs == 0 {
            return Err(ConfigError::Invalid(
                "webhooks.poll_interval_secs and webhooks.retry_base_secs must be at least 1"
                    .into(),
            ));
        }
        if self.smtp.poll_interval_secs == 0 || self.smtp.retry_base_secs == 0 {
            return Err(ConfigError::Invalid(
                "smtp.poll_interval_secs and smtp.retry_base_secs must be at least 1".into(),
            ));
        }
        if self.sla.scan_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "sla.scan_interval_secs must be at least 1".into(),
            ));
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError::Invalid(
                "database_max_connections must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let err = toml::from_str::<Config>("listen = \"0.0.0.0:1\"\nlistne = 1\n").unwrap_err();
        assert!(err.to_string().contains("listne"));
        let err = toml::from_str::<Config>("[auth]\njwt_secrte = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("jwt_secrte"));
    }

    #[test]
    fn the_file_overrides_defaults_and_keeps_the_rest() {
        let c: Config = toml::from_str(
            "listen = \"0.0.0.0:9000\"\n[incidents]\npriority_matrix = [[1,1,2],[1,2,3],[2,3,4]]\n",
        )
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.database_url, "sqlite://keel.db?mode=rwc");
        assert_eq!(c.incidents.priority_matrix.rows()[0], vec![1, 1, 2]);
        assert!(
            toml::from_str::<Config>("[incidents]\npriority_matrix = [[1,2],[2,3]]\n").is_err()
        );
    }

    #[test]
    fn secrets_never_print() {
        let mut c = Config::default();
        c.auth.jwt_secret = Some(Secret::new("super-secret-value-super-secret-value"));
        assert!(!format!("{c:?}").contains("super-secret"));
    }
}
