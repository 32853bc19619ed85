//! What every handler shares.

use std::path::PathBuf;
use std::sync::Arc;

use keel_auth::jwt::JwtKeys;
use keel_auth::throttle::LoginThrottle;
use keel_incident::PriorityMatrix;
use keel_store::Store;

use crate::metrics::Metrics;

/// Settings the API needs from the configuration.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Where attachments are stored.
    pub attachments_dir: PathBuf,
    /// Largest attachment accepted, in bytes.
    pub attachment_max_bytes: u64,
    /// Largest JSON body accepted, in bytes.
    pub max_json_bytes: usize,
    pub refresh_token_ttl_secs: i64,
    pub priority_matrix: PriorityMatrix,
    /// What to do with mail from unknown addresses.
    pub inbound_unknown_senders: crate::inbound::UnknownSenders,
    /// Largest inbound message, in bytes.
    pub inbound_max_bytes: usize,
    /// Whether webhooks may target loopback and private addresses.
    pub webhooks_allow_internal: bool,
}

/// Shared application state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub jwt: Arc<JwtKeys>,
    pub throttle: Arc<LoginThrottle>,
    pub settings: Arc<ApiSettings>,
    pub metrics: Arc<Metrics>,
    /// Recently authenticated actors (`auth.actor_cache_secs`).
    pub actors: Arc<crate::actor_cache::ActorCache>,
}
