//! The state every handler shares: configuration, stores, signer, verifier, metrics.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth::{Authenticator, RateLimiter};
use crate::config::Config;
use crate::store::objects::ObjectStorage;
use crate::store::MetaStore;
use crate::telemetry::Metrics;

/// Shared server state.
pub struct AppState {
    /// The resolved configuration.
    pub config: Config,
    /// File metadata.
    pub meta: Arc<dyn MetaStore>,
    /// Object bytes.
    pub objects: Arc<dyn ObjectStorage>,
    /// The active signing key and the trusted keys.
    pub keys: crate::keys::Keys,
    /// API token check.
    pub auth: Authenticator,
    /// Per-principal rate limit.
    pub limiter: RateLimiter,
    /// Metrics registry.
    pub metrics: Metrics,
}

/// Shared state handle.
pub type SharedState = Arc<AppState>;

/// Epoch seconds now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Epoch milliseconds now.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
