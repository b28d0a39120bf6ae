//! The state every handler shares: configuration, stores, signer, verifier, metrics.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// The last readiness check (`/readyz`): when it ran and whether both stores answered.
    pub readiness: Readiness,
    /// The origin the page's `connect-src` allows for `s3-presigned` uploads, once known.
    pub page_upload_origin: std::sync::OnceLock<Option<String>>,
    /// Objects (and parts) a PUT is receiving now: one at a time each (see [`Receiving`]).
    pub receiving: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// A PUT's claim on what it stages: while it lives no other PUT on the same link (the same
/// object, or part of one) is taken. Each would stage its own copy, up to the declared size,
/// on disk or (with S3 storage) in memory, for one to be kept; a link holder could repeat its
/// PUT many times at once to fill either. Released when dropped.
pub struct Receiving {
    set: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    key: String,
}

impl Receiving {
    /// Claims `key`, or `None` while another PUT has it.
    pub fn claim(state: &AppState, key: String) -> Option<Self> {
        Self::claim_if(state, key, |_| true)
    }

    /// Claims part `number` of the multipart upload `upload_id` of the object `object_key`, or
    /// `None` while another PUT has that part or the upload is being completed
    /// ([`Receiving::claim_completion`]): a part stored while the parts are being joined could
    /// end up in the object without its record, or recorded and not in the object.
    pub fn claim_part(
        state: &AppState,
        object_key: &str,
        upload_id: &str,
        number: u32,
    ) -> Option<Self> {
        let completing = Self::completion_key(object_key);
        Self::claim_if(state, format!("{object_key}#{upload_id}#{number}"), |set| {
            !set.contains(&completing)
        })
    }

    /// Claims the multipart upload of the object `object_key` for its completion, or `None`
    /// while one of its parts is being received or another completion runs.
    pub fn claim_completion(state: &AppState, object_key: &str) -> Option<Self> {
        let prefix = format!("{object_key}#");
        Self::claim_if(state, Self::completion_key(object_key), |set| {
            !set.iter().any(|k| k.starts_with(&prefix))
        })
    }

    fn completion_key(object_key: &str) -> String {
        format!("{object_key}#complete")
    }

    fn claim_if(
        state: &AppState,
        key: String,
        free: impl FnOnce(&std::collections::HashSet<String>) -> bool,
    ) -> Option<Self> {
        let mut set = state
            .receiving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (free(&set) && set.insert(key.clone())).then(|| Receiving {
            set: state.receiving.clone(),
            key,
        })
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// The last readiness check: when it ran and whether the stores answered.
pub type Readiness = tokio::sync::Mutex<Option<(tokio::time::Instant, bool)>>;

/// Shared state handle.
pub type SharedState = Arc<AppState>;

/// Epoch seconds now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `epoch` seconds plus `d`, saturating at `i64::MAX` instead of overflowing (configuration
/// bounds lifetimes to a century, so this is a second line of defence).
pub fn secs_after(epoch: i64, d: Duration) -> i64 {
    epoch.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Epoch milliseconds now.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secs_after_saturates() {
        assert_eq!(secs_after(100, Duration::from_millis(2500)), 102);
        assert_eq!(secs_after(i64::MAX - 1, Duration::from_secs(5)), i64::MAX);
        assert_eq!(secs_after(1, Duration::MAX), i64::MAX);
    }
}
