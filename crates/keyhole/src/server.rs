//! Assembles and runs `keyhole serve`: data directory, keys, stores, router, sweeper, and a
//! graceful shutdown that lets transfers in flight finish within a bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{Authenticator, RateLimiter};
use crate::config::{Config, Metadata, Storage};
use crate::keyfile;
use crate::state::{AppState, SharedState};
use crate::store::dynamodb::DynamoStore;
use crate::store::objects::{LocalDisk, ObjectStorage};
use crate::store::postgres::PostgresStore;
use crate::store::s3::{S3Settings, S3Storage};
use crate::store::sqlite::SqliteStore;
use crate::store::MetaStore;
use crate::telemetry::Metrics;
use crate::workers::Workers;
use crate::{api, edge, http, sweeper};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] keyfile::KeyFileError),
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The metadata store could not be opened.
    #[error(transparent)]
    Meta(#[from] crate::store::StoreError),
    /// The object store could not be opened.
    #[error(transparent)]
    Objects(#[from] crate::store::objects::ObjectError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Anything else at start-up.
    #[error("{0}")]
    Other(String),
}

/// A started server.
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The key pair id links are signed with.
    pub key_pair_id: String,
    /// Whether this start generated the key pair.
    pub generated_key: bool,
    /// HTTP worker threads serving connections.
    pub worker_count: usize,
    /// Shared state (tests read metrics and stores through it).
    pub state: SharedState,
    shutdown: watch::Sender<bool>,
    workers: Workers,
    sweeper: tokio::task::JoinHandle<()>,
    reconcile: tokio::task::JoinHandle<()>,
    reconciled: watch::Receiver<bool>,
    key_refresh: Option<tokio::task::JoinHandle<()>>,
    jwt_refresh: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting connections, waits up to `shutdown_grace` for requests in flight, then
    /// returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.sweeper.abort();
        self.reconcile.abort();
        for refresh in [&self.key_refresh, &self.jwt_refresh].into_iter().flatten() {
            refresh.abort();
        }
        let grace = self.state.config.shutdown_grace;
        let mut workers = self.workers;
        if tokio::time::timeout(grace, workers.wait()).await.is_err() {
            tracing::warn!(
                ?grace,
                "shutdown grace elapsed; closing remaining connections"
            );
            workers.force_stop();
            workers.wait().await;
        }
    }

    /// Waits until the start-up reconciliation of stored objects with their records (see
    /// [`sweeper::reconcile`]), which runs beside the server, has finished.
    pub async fn reconciled(&self) {
        let mut done = self.reconciled.clone();
        // An error means the task ended without saying so (aborted): nothing more to wait for.
        let _ = done.wait_for(|done| *done).await;
    }

    /// Waits until the server stops by itself (it does not, unless it fails).
    pub async fn wait(&mut self) {
        self.workers.wait().await;
    }
}

fn create_private_dir(path: &Path) -> Result<(), StartError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path).map_err(|source| StartError::DataDir {
        path: path.to_owned(),
        source,
    })
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    // Validated at start-up: each entry is the origin a browser sends, or `*`.
    let origins: Vec<String> = origins
        .iter()
        .filter_map(|o| crate::config::cors_origin(o).ok())
        .collect();
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::PUT,
                Method::POST,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::RANGE,
                header::IF_NONE_MATCH,
                header::IF_RANGE,
                header::IF_MATCH,
                header::IF_MODIFIED_SINCE,
                header::IF_UNMODIFIED_SINCE,
                http::REQUEST_ID.clone(),
            ])
            .expose_headers([
                header::ACCEPT_RANGES,
                header::ETAG,
                header::CONTENT_RANGE,
                header::CONTENT_DISPOSITION,
                header::CONTENT_LENGTH,
                header::RETRY_AFTER,
                http::REQUEST_ID.clone(),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The file API's routes under `/api`, without state or layers: shared by [`router`] and
/// [`api_router`].
fn api_routes() -> Router<SharedState> {
    Router::new()
        .route("/api/files/upload", post(api::create_upload))
        .route("/api/files/download/{fileId}", get(api::download_link))
        .route("/api/files", get(api::list_files))
        .route(
            "/api/files/{fileId}",
            get(api::get_file).delete(api::delete_file),
        )
        .route("/api/files/{fileId}/parts", get(api::list_parts))
        .route("/api/files/{fileId}/complete", post(api::complete_upload))
        .route("/api/config", get(api::public_config))
        .route("/api/openapi.json", get(api::openapi))
}

/// Adds the JSON fallbacks, CORS and request observation (logs, metrics, request id).
fn finish(app: Router<SharedState>, state: SharedState) -> Router {
    let mut app = app
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed);
    if let Some(cors) = cors_layer(&state.config.cors_origins) {
        app = app.layer(cors);
    }
    // Inside `observe`: a handler that panics answers a JSON 500 that is logged and counted
    // under its request id, instead of a connection closed without an answer.
    app.layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::observe,
        ))
        .with_state(state)
}

/// The answer to a request whose handler panicked: 500 `internal`, the panic logged.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    http::ApiError::internal(format_args!("request handler panicked: {what}")).into_response()
}

/// Guards the token-less API against DNS rebinding. Without tokens `serve` listens on loopback
/// only, but a page on another site can still reach it: its own DNS name, re-pointed at
/// 127.0.0.1, makes the browser treat the API as that page's origin, free to read, list and
/// delete files. Such a request carries the page's name in `Host`, so `/api` requests must name
/// the server by a loopback address, `localhost` or the public URL's host
/// ([`crate::auth::is_known_host`]); others get 403. With tokens configured the token is the
/// guard and any `Host` is fine; the edge checks signatures and is not affected.
async fn rebinding_guard(
    axum::extract::State(state): axum::extract::State<SharedState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path();
    if state.auth.enabled() || !(path == "/api" || path.starts_with("/api/")) {
        return next.run(req).await;
    }
    // HTTP/2 carries the host as the request's authority rather than a Host header.
    let host = match req.headers().get(header::HOST) {
        Some(v) => Some(String::from_utf8_lossy(v.as_bytes())),
        None => req.uri().authority().map(|a| a.as_str().into()),
    };
    if host
        .as_deref()
        .is_some_and(|h| crate::auth::is_known_host(h, state.config.public_origin()))
    {
        return next.run(req).await;
    }
    let got = match host {
        Some(h) => format!("Host: {h}"),
        None => "no Host".to_owned(),
    };
    http::ApiError::new(
        StatusCode::FORBIDDEN,
        "host_not_allowed",
        format!(
            "requests without an API token must address the server by a loopback name \
             (127.0.0.1, [::1], localhost) or the public URL's host; got {got}"
        ),
    )
    .into_response()
}

/// The full router: API, edge, health and metrics.
pub fn router(state: SharedState) -> Router {
    let app = api_routes()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rebinding_guard,
        ))
        .route("/uploads/{*fileId}", axum::routing::put(edge::upload))
        .route("/files/{*fileId}", get(edge::download))
        .route("/", get(crate::ui::index))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    finish(app, state)
}

/// Only the file API (`/api/*`) with the same handlers, errors and layers as [`router`]: what
/// the AWS Lambda serves behind API Gateway, where CloudFront is the edge and the Lambda sees no
/// transfers (and a per-container `/metrics` would mean nothing).
pub fn api_router(state: SharedState) -> Router {
    finish(api_routes(), state)
}

/// How long one readiness check answers `/readyz`.
pub const READINESS_TTL: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a readiness check waits for each store: a backend that does not answer in time (a
/// black-holed endpoint, the client's retries) is not ready, and `/readyz` answers promptly.
pub const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `/readyz`: whether both stores answer. One check at a time, and its answer stands for
/// [`READINESS_TTL`]: the endpoint answers anyone, and each check is a round trip to the
/// backends (an S3 LIST, a DynamoDB read), which a flood of requests must not multiply.
async fn readyz(
    axum::extract::State(state): axum::extract::State<SharedState>,
) -> impl IntoResponse {
    let ready = readiness(&state.readiness, || async {
        let (meta, objects) = tokio::join!(
            answers_within("the metadata store", state.meta.ping()),
            answers_within("the object storage", state.objects.ping()),
        );
        let ready = meta.is_ok() && objects.is_ok();
        if !ready {
            tracing::error!(metadata = ?meta.err(), objects = ?objects.err(), "not ready");
        }
        ready
    })
    .await;
    if ready {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

/// What `ping` answered within [`READINESS_TIMEOUT`], as text; `what` names it if it did not.
async fn answers_within<E: std::fmt::Display>(
    what: &str,
    ping: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(READINESS_TIMEOUT, ping).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "{what} did not answer within {READINESS_TIMEOUT:?}"
        )),
    }
}

/// The answer of `check`, run only when `last` holds none younger than [`READINESS_TTL`]; callers
/// arriving while it runs wait for it rather than run their own.
async fn readiness<F: std::future::Future<Output = bool>>(
    last: &crate::state::Readiness,
    check: impl FnOnce() -> F,
) -> bool {
    let mut last = last.lock().await;
    match *last {
        Some((at, ready)) if at.elapsed() < READINESS_TTL => ready,
        _ => {
            let ready = check().await;
            *last = Some((tokio::time::Instant::now(), ready));
            ready
        }
    }
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<SharedState>,
) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Builds the state from `config`: data directory (0700), keys, SQLite metadata, local objects.
pub async fn build_state(config: Config) -> Result<(SharedState, bool), StartError> {
    config.validate()?;
    create_private_dir(&config.data_dir)?;
    // Storage first: local storage locks the data directory, so a second process on it stops
    // here, before it could race the first over generating the key pair.
    let objects: Arc<dyn ObjectStorage> = match &config.storage {
        Storage::Local => Arc::new(LocalDisk::open(
            config.data_dir.join("objects"),
            config.data_dir.join("staging"),
        )?),
        Storage::S3 {
            bucket,
            prefix,
            endpoint,
        } => Arc::new(
            S3Storage::connect(&S3Settings {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                endpoint: endpoint.clone(),
                region: None,
            })?
            .with_upload_budget(config.upload_buffer_bytes),
        ),
    };
    let loaded = crate::keys::open(&config).await?;
    let generated = loaded.generated;
    let keys = crate::keys::Keys::new(loaded.signer, loaded.ring, config.public_origin())?
        .with_refresh(loaded.refresh);
    let meta: Arc<dyn MetaStore> = match &config.metadata {
        Metadata::Sqlite(path) => Arc::new(SqliteStore::open(
            &path
                .clone()
                .unwrap_or_else(|| config.data_dir.join("metadata.db")),
        )?),
        Metadata::Postgres(url) => Arc::new(PostgresStore::connect(url).await?),
        Metadata::DynamoDb {
            table,
            endpoint,
            create,
        } => {
            let store = DynamoStore::connect(table, endpoint.as_deref()).await?;
            if *create {
                store.create_table_if_missing().await?;
            }
            Arc::new(store)
        }
    };
    let jwt = match &config.jwt {
        Some(settings) => Some(Arc::new(
            crate::jwt::JwtVerifier::new(settings.clone()).map_err(StartError::Other)?,
        )),
        None => None,
    };
    let state = Arc::new(AppState {
        auth: Authenticator::new(&config.tokens, jwt),
        limiter: RateLimiter::new(config.rate_limit),
        metrics: Metrics::new(),
        readiness: crate::state::Readiness::new(None),
        page_upload_origin: std::sync::OnceLock::new(),
        receiving: Arc::default(),
        config,
        meta,
        objects,
        keys,
    });
    Ok((state, generated))
}

/// Starts the server on `config.listen` and returns once it accepts connections.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let listen = config.listen;
    let sweep_interval = config.sweep_interval;
    let key_refresh = config.key_refresh;
    config.validate_serve()?;
    let (state, generated_key) = build_state(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let (tx, rx) = watch::channel(false);
    let count = match state.config.workers {
        0 => crate::workers::default_count(),
        n => n,
    };
    let workers = Workers::start(
        count,
        listener,
        router(state.clone()),
        state.config.client_timeout,
        rx,
    )
    .await
    .map_err(|e| StartError::Other(format!("cannot start the HTTP workers: {e}")))?;
    let sweeper = tokio::spawn(sweeper::run(state.clone(), sweep_interval));
    // Serving starts at once; the objects a crash left are put right meanwhile.
    let (reconciled_tx, reconciled) = watch::channel(false);
    let reconcile = tokio::spawn({
        let state = state.clone();
        async move {
            sweeper::reconcile(&state).await;
            let _ = reconciled_tx.send(true);
        }
    });
    let key_refresh = crate::keys::spawn_refresh(state.clone(), key_refresh);
    let jwt_refresh = state.auth.jwt().cloned().map(crate::jwt::spawn_refresh);
    Ok(RunningServer {
        addr,
        key_pair_id: state.keys.current().signer.key_pair_id().to_owned(),
        generated_key,
        worker_count: count,
        state,
        shutdown: tx,
        workers,
        sweeper,
        reconcile,
        reconciled,
        key_refresh,
        jwt_refresh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_handler_that_panics_answers_a_json_500() {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = build_state(Config::with_data_dir(dir.path()))
            .await
            .unwrap();
        let app = finish(
            Router::new().route(
                "/boom",
                get(|| async { panic!("on purpose") as &'static str }),
            ),
            state,
        );
        let response = app
            .oneshot(
                axum::http::Request::get("/boom")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().contains_key("x-request-id"));
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "internal", "{v}");
    }

    #[tokio::test(start_paused = true)]
    async fn one_readiness_check_answers_a_flood_for_a_second() {
        let last = crate::state::Readiness::new(None);
        let checks = AtomicUsize::new(0);
        let check = || async {
            checks.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            true
        };
        let answers =
            futures_util::future::join_all((0..100).map(|_| readiness(&last, check))).await;
        assert!(answers.iter().all(|&ready| ready));
        assert_eq!(
            checks.load(Ordering::SeqCst),
            1,
            "one check for all of them"
        );
        tokio::time::advance(READINESS_TTL).await;
        assert!(readiness(&last, check).await);
        assert_eq!(
            checks.load(Ordering::SeqCst),
            2,
            "checked again after the TTL"
        );
        // A failure is reported as such, and also stands for the TTL.
        tokio::time::advance(READINESS_TTL).await;
        assert!(!readiness(&last, || async { false }).await);
        assert!(!readiness(&last, check).await);
        assert_eq!(checks.load(Ordering::SeqCst), 2);
    }
}
