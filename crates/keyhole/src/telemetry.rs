//! Logs and metrics: structured logs (JSON when not on a terminal) and the Prometheus registry
//! served at `/metrics`.

use std::io::IsTerminal;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::config::LogFormat;

/// Installs the global log subscriber (level from `RUST_LOG`, default `info`). Lines are written
/// by a background thread, so request handlers never wait on standard output; keep the returned
/// guard alive until exit (dropping it flushes what is queued). Safe to call more than once;
/// later calls do nothing.
pub fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    // Not lossy: under overload, logging slows requests down rather than dropping lines.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init()
    };
    guard
}

/// Labels of HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// Route template (never the raw path, which would carry ids).
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Labels of route-only metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route template.
    pub route: String,
}

/// Labels of edge rejections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    /// CloudFront error code sent to the client.
    pub code: String,
    /// Precise reason (kept server-side).
    pub reason: String,
}

/// A single `kind`/`result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// What is counted.
    pub kind: String,
}

/// Labels of links minted by mode.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkModeLabels {
    /// `upload`, `upload_part` or `download`.
    pub feature: String,
    /// `cloudfront` or `s3-presigned`.
    pub mode: String,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by method, route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route.
    pub latency: Family<RouteLabels, Histogram>,
    /// Edge refusals by code and reason.
    pub rejections: Family<RejectionLabels, Counter>,
    /// Links minted by kind (`upload`, `download`).
    pub links: Family<KindLabel, Counter>,
    /// Links minted by feature and mode (`cloudfront`, `s3-presigned`), to follow a migration.
    pub links_by_mode: Family<LinkModeLabels, Counter>,
    /// Upload outcomes by kind (`committed`, `too_large`, `checksum_mismatch`, ...).
    pub uploads: Family<KindLabel, Counter>,
    /// Bytes received by the edge.
    pub bytes_received: Counter,
    /// Bytes sent by the edge.
    pub bytes_sent: Counter,
    /// Files removed by the sweeper, by former status.
    pub swept: Family<KindLabel, Counter>,
    /// Sweeper failures.
    pub sweep_errors: Counter,
    /// Failed re-reads of the signing key's secret.
    pub key_refresh_errors: Counter,
    /// Requests refused by the rate limit.
    pub rate_limited: Counter,
    /// Transfers in flight.
    pub transfers_in_flight: Gauge,
}

impl Metrics {
    /// A fresh registry with every metric registered (one per server, so tests can run several).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keyhole");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Request latency by route",
            latency.clone(),
        );
        let rejections = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "edge_rejections",
            "Signed requests refused by the edge, by CloudFront code and precise reason",
            rejections.clone(),
        );
        let links = Family::<KindLabel, Counter>::default();
        registry.register(
            "links_minted",
            "Signed links minted, by kind",
            links.clone(),
        );
        let links_by_mode = Family::<LinkModeLabels, Counter>::default();
        registry.register(
            "links_minted_by_mode",
            "Links minted, by feature and mode (cloudfront or s3-presigned)",
            links_by_mode.clone(),
        );
        for feature in ["upload", "upload_part", "download"] {
            for mode in crate::links::UrlMode::ALL {
                let _ = links_by_mode.get_or_create(&LinkModeLabels {
                    feature: feature.to_owned(),
                    mode: mode.as_str().to_owned(),
                });
            }
        }
        let uploads = Family::<KindLabel, Counter>::default();
        registry.register(
            "uploads",
            "Upload outcomes at the edge, by kind",
            uploads.clone(),
        );
        let bytes_received = Counter::default();
        registry.register(
            "edge_received_bytes",
            "Bytes received by the edge",
            bytes_received.clone(),
        );
        let bytes_sent = Counter::default();
        registry.register(
            "edge_sent_bytes",
            "Bytes sent by the edge",
            bytes_sent.clone(),
        );
        let swept = Family::<KindLabel, Counter>::default();
        registry.register(
            "sweeper_deleted_files",
            "Expired files deleted by the sweeper, by status",
            swept.clone(),
        );
        let sweep_errors = Counter::default();
        registry.register("sweeper_errors", "Sweeper failures", sweep_errors.clone());
        let key_refresh_errors = Counter::default();
        registry.register(
            "key_refresh_errors",
            "Failed re-reads of the signing key's Secrets Manager secret (the key in use stays)",
            key_refresh_errors.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_requests",
            "API requests refused with 429",
            rate_limited.clone(),
        );
        let transfers_in_flight = Gauge::default();
        registry.register(
            "edge_transfers_in_flight",
            "Uploads and downloads in progress",
            transfers_in_flight.clone(),
        );
        for reason in keyhole_sign::Reason::ALL {
            let _ = rejections.get_or_create(&RejectionLabels {
                code: code_for(reason).to_owned(),
                reason: reason.as_str().to_owned(),
            });
        }
        Metrics {
            registry,
            requests,
            latency,
            rejections,
            links,
            links_by_mode,
            uploads,
            bytes_received,
            bytes_sent,
            swept,
            sweep_errors,
            key_refresh_errors,
            rate_limited,
            transfers_in_flight,
        }
    }

    /// Counts one labelled event.
    pub fn count(family: &Family<KindLabel, Counter>, kind: &str) {
        family
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Counts one minted link of `feature` in `mode`.
    pub fn count_link(&self, feature: &str, mode: &str) {
        self.links_by_mode
            .get_or_create(&LinkModeLabels {
                feature: feature.to_owned(),
                mode: mode.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The CloudFront code a reason is reported under (for pre-registered label pairs).
fn code_for(reason: keyhole_sign::Reason) -> &'static str {
    use keyhole_sign::Reason::*;
    match reason {
        NoSignature | MissingKeyPairId => "MissingKey",
        UnknownKey => "InvalidKey",
        MissingSignature | MalformedSignature | UnsupportedHashAlgorithm => "MalformedSignature",
        MissingPolicy | MalformedPolicy => "MalformedPolicy",
        _ => "AccessDenied",
    }
}
