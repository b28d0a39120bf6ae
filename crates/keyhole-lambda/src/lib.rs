//! Keyhole's AWS Lambda entry point. One function handles three kinds of invocation, told apart
//! by their shape ([`event::classify`]):
//!
//! - API Gateway HTTP API requests: the same `/api` router as `keyhole serve`
//!   ([`api_gateway`]);
//! - SQS batches of S3 `ObjectCreated` notifications: uploads that went through CloudFront
//!   straight into S3 are recorded ([`upload_events`]);
//! - the scheduler's sweep request: expired objects and records are deleted together
//!   ([`sweep`]).
//!
//! Configuration comes from the same `KEYHOLE_*` variables as `keyhole serve` ([`settings`]).
//! The state (stores, signing key) is built once per container and reused by every invocation;
//! a key read from Secrets Manager is read again when it is older than `KEYHOLE_KEY_REFRESH`.
#![forbid(unsafe_code)]

pub mod api_gateway;
pub mod event;
pub mod settings;
pub mod sweep;
pub mod upload_events;

use std::sync::atomic::{AtomicI64, Ordering};

use keyhole::config::Config;
use keyhole::keys::KeySource;
use keyhole::state::{now_secs, SharedState};
use serde_json::Value;

/// Why the function could not start (it then fails its init phase with this message).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The environment is not a usable configuration.
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    /// Stores or key could not be opened (names the store or secret and why).
    #[error(transparent)]
    State(#[from] keyhole::server::StartError),
}

/// Why one invocation failed; Lambda reports it as the function error.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The event is not one this function handles.
    #[error(transparent)]
    Event(#[from] event::EventError),
    /// A sweep could not remove everything it should have (logged per file; retried by the
    /// next sweep).
    #[error("sweep removed {removed} files but failed on {errors} (see the log)")]
    Sweep {
        /// Files removed.
        removed: usize,
        /// Files that failed.
        errors: u64,
    },
    /// The answer could not be serialised.
    #[error("cannot serialise the answer: {0}")]
    Answer(#[from] serde_json::Error),
}

/// Longest an invocation waits for the key's secret to be read again.
pub const KEY_READ_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// The function's state for the lifetime of one container.
pub struct Lambda {
    state: SharedState,
    router: axum::Router,
    secret: Option<String>,
    key_read_at: AtomicI64,
}

impl Lambda {
    /// Builds from the process environment ([`settings::from_env`]).
    pub async fn from_env() -> Result<Self, StartError> {
        Self::start(settings::from_env()?).await
    }

    /// Builds from a configuration (checked with [`settings::check`]): opens the stores and reads
    /// the key, once.
    pub async fn start(mut config: Config) -> Result<Self, StartError> {
        settings::check(&config)?;
        // No loopback to fall back to: without tokens, only requests that passed API Gateway's
        // JWT authorizer have a principal ([`api_gateway`]).
        config.anonymous_when_unconfigured = false;
        let secret = match &config.key_source {
            KeySource::SecretsManager { secret_id } if !config.key_refresh.is_zero() => {
                Some(secret_id.clone())
            }
            _ => None,
        };
        if config.tokens.is_empty() {
            tracing::info!(
                "no KEYHOLE_TOKENS: the file routes answer only requests that passed API \
                 Gateway's JWT authorizer"
            );
        }
        let (state, _) = keyhole::server::build_state(config).await?;
        let router = keyhole::server::api_router(state.clone());
        tracing::info!(
            key_pair_id = %state.keys.current().signer.key_pair_id(),
            public_url = %state.config.public_origin(),
            "keyhole lambda ready"
        );
        Ok(Lambda {
            state,
            router,
            secret,
            key_read_at: AtomicI64::new(now_secs()),
        })
    }

    /// The shared state (stores, keys, metrics), as the handlers see it.
    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// Reads the key's secret again when it was read longer than `key_refresh` ago. A frozen
    /// container runs no timers, so this happens at the start of an invocation instead of on a
    /// background interval; failures keep the current key (logged and counted, as in `serve`).
    /// The read waits at most [`KEY_READ_BOUND`]: the invocation it delays may be a request with
    /// API Gateway's 30 s limit, and the key it has is good.
    async fn refresh_key_if_due(&self) {
        let Some(secret) = &self.secret else { return };
        let every = self.state.config.key_refresh.as_secs() as i64;
        let now = now_secs();
        let last = self.key_read_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < every {
            return;
        }
        self.key_read_at.store(now, Ordering::Relaxed);
        let read = keyhole::keys::refresh_now(&self.state, secret);
        if tokio::time::timeout(KEY_READ_BOUND, read).await.is_err() {
            self.state.metrics.key_refresh_errors.inc();
            tracing::warn!(
                secret = %secret,
                bound_ms = KEY_READ_BOUND.as_millis() as u64,
                "key refresh took too long; the current key stays in use"
            );
        }
    }

    /// Handles one invocation and returns its answer: the HTTP API response, the SQS
    /// `batchItemFailures`, or the sweep summary.
    pub async fn handle(&self, event: Value) -> Result<Value, InvokeError> {
        self.handle_until(event, None).await
    }

    /// [`Lambda::handle`] for an invocation that must answer before `deadline` (the runtime's
    /// deadline; the sweep stops short of it).
    pub async fn handle_until(
        &self,
        event: Value,
        deadline: Option<std::time::SystemTime>,
    ) -> Result<Value, InvokeError> {
        let event = event::classify(event)?;
        self.refresh_key_if_due().await;
        match event {
            event::Event::Http(request) => {
                let response = api_gateway::handle(&self.router, *request).await;
                Ok(serde_json::to_value(response)?)
            }
            event::Event::Sqs(records) => {
                let until = deadline.map(sweep::until);
                let answer = upload_events::handle(&self.state, records, until).await;
                Ok(serde_json::to_value(answer)?)
            }
            event::Event::Sweep => {
                let summary = sweep::run(&self.state, deadline).await;
                if summary.errors > 0 {
                    return Err(InvokeError::Sweep {
                        removed: summary.removed,
                        errors: summary.errors,
                    });
                }
                Ok(serde_json::to_value(summary)?)
            }
        }
    }
}
