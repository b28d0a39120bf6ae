//! Logs and metrics: structured logs (JSON when not on a terminal) and the Prometheus registry
//! served at `/metrics`.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::config::LogFormat;

/// Installs the global log subscriber (level from `RUST_LOG`, default `info`). Lines are written
/// by a background thread (see [`LogWriter`]), so request handlers never wait on standard output;
/// `linger` is how long that thread lets lines gather before one write (zero: write as soon as
/// woken). Keep the returned guard alive until exit: dropping it writes what is queued. Safe to
/// call more than once; later calls install nothing (and their guard only owns an idle thread).
pub fn init_logging(format: LogFormat, linger: Duration) -> LogGuard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let (writer, guard) = LogWriter::spawn(std::io::stdout(), linger);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if json {
        builder
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init()
    };
    guard
}

/// JSON lines, one object per event: `timestamp` (RFC 3339, UTC, microseconds), `level`, the
/// event's fields (`message` among them), `target`, and `span` with the fields of the innermost
/// span (the request's `request_id`, `method` and `path`) and its `name`.
///
/// Written straight into the line: tracing-subscriber's own JSON format collects every event's
/// fields into a map of `serde_json` values and parses the span's fields back from a string on
/// every event, which cost a busy server more per request than everything else it logs.
struct JsonLines;

/// Span fields rendered once, when the span is created, as JSON members (`"k":v,"k2":v2`) that
/// [`JsonLines`] splices into each event of the span.
struct JsonFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut out = String::new();
        fields.record(&mut JsonVisitor::new(&mut out, false));
        writer.write_str(&out)
    }

    fn add_fields(
        &self,
        current: &'w mut tracing_subscriber::fmt::FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> std::fmt::Result {
        let after_others = !current.fields.is_empty();
        fields.record(&mut JsonVisitor::new(&mut current.fields, after_others));
        Ok(())
    }
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut line = String::with_capacity(320);
        line.push_str("{\"timestamp\":\"");
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        std::fmt::Write::write_fmt(&mut line, format_args!("{now}"))?;
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push('"');
        event.record(&mut JsonVisitor::new(&mut line, true));
        line.push_str(",\"target\":");
        push_json_str(&mut line, meta.target());
        if let Some(span) = ctx.lookup_current() {
            line.push_str(",\"span\":{");
            let extensions = span.extensions();
            if let Some(rendered) = extensions.get::<tracing_subscriber::fmt::FormattedFields<N>>()
            {
                if !rendered.fields.is_empty() {
                    line.push_str(&rendered.fields);
                    line.push(',');
                }
            }
            line.push_str("\"name\":");
            push_json_str(&mut line, span.name());
            line.push('}');
        }
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

/// Appends fields as JSON members, comma-separated, straight onto `out`.
struct JsonVisitor<'a> {
    out: &'a mut String,
    /// Whether `out` already ends with a member, so the next one needs a comma first.
    after_member: bool,
}

impl<'a> JsonVisitor<'a> {
    fn new(out: &'a mut String, after_member: bool) -> Self {
        JsonVisitor { out, after_member }
    }

    fn key(&mut self, field: &tracing::field::Field) {
        if self.after_member {
            self.out.push(',');
        }
        self.after_member = true;
        push_json_str(self.out, field.name());
        self.out.push(':');
    }
}

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.key(field);
        push_json_str(self.out, value);
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.key(field);
        let _ = std::fmt::Write::write_fmt(self.out, format_args!("{value}"));
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.key(field);
        let _ = std::fmt::Write::write_fmt(self.out, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = std::fmt::Write::write_fmt(self.out, format_args!("{value}"));
        } else {
            // JSON has no NaN or infinity.
            self.out.push_str("null");
        }
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        self.key(field);
        push_json_str(self.out, &value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.key(field);
        // `%value` fields arrive here too, their Debug being their Display.
        push_json_str(self.out, &format!("{value:?}"));
    }
}

/// Appends `value` as a JSON string (RFC 8259 escaping).
fn push_json_str(out: &mut String, value: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in value.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f | 0x7f => "",
            _ => continue,
        };
        out.push_str(&value[start..i]);
        if escape.is_empty() {
            let _ = std::fmt::Write::write_fmt(out, format_args!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&value[start..]);
    out.push('"');
}

/// How long `keyhole serve` lets log lines gather before writing them: under load that is one
/// write (and one wake-up of the writer thread) per 10 ms instead of one per request.
pub const SERVE_LOG_LINGER: Duration = Duration::from_millis(10);

/// Queued log bytes past which logging callers wait for the writer thread: under overload,
/// logging slows requests down rather than growing without bound.
const MAX_QUEUED_LOG_BYTES: usize = 4 << 20;

/// Longest a logging caller waits for room in a full queue before its line is dropped (and
/// counted in `keyhole_log_lines_dropped_total`): a standard output nobody reads (a stopped
/// terminal, a stuck log pipe) must not stop the server, whose workers log from their threads.
const MAX_LOG_WAIT: Duration = Duration::from_millis(250);

/// Log lines dropped because the sink did not keep up for [`MAX_LOG_WAIT`].
static LOG_LINES_DROPPED: std::sync::LazyLock<Counter> = std::sync::LazyLock::new(Counter::default);

/// Log lines' way out: callers append whole lines to a shared buffer; one thread takes the whole
/// buffer and writes it to the sink. Appending to a buffer the thread already knows about wakes
/// nobody, so a busy server pays one wake-up and one `write` per batch rather than per line.
/// Nothing is dropped while the sink keeps up; a line that finds the queue full for
/// [`MAX_LOG_WAIT`] is.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<LogShared>,
}

struct LogShared {
    state: Mutex<LogState>,
    /// Signalled when the buffer gets its first bytes (or the guard closes it).
    filled: Condvar,
    /// Signalled when the writer thread has taken the buffer.
    drained: Condvar,
}

#[derive(Default)]
struct LogState {
    buf: Vec<u8>,
    /// The writer thread is asleep on `filled`.
    idle: bool,
    /// A caller waited [`MAX_LOG_WAIT`] in vain: until the writer thread takes the buffer, lines
    /// that find it full are dropped without waiting.
    dropping: bool,
    closed: bool,
    /// Set when no writer thread could be started: lines are then written by their caller.
    inline: Option<Box<dyn Write + Send>>,
}

/// Owns the writer thread; dropping it writes everything queued and stops the thread.
pub struct LogGuard {
    shared: Arc<LogShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the writer thread over `sink`, which waits `linger` after the first line of a
    /// batch before writing (zero: write as soon as woken). Should the thread not start, every
    /// line is written to `sink` by the caller instead.
    pub fn spawn<W: Write + Send + 'static>(sink: W, linger: Duration) -> (LogWriter, LogGuard) {
        let shared = Arc::new(LogShared {
            state: Mutex::new(LogState::default()),
            filled: Condvar::new(),
            drained: Condvar::new(),
        });
        let worker = shared.clone();
        // The sink travels to the thread through this slot, and comes back if no thread starts.
        let slot = Arc::new(Mutex::new(Some(sink)));
        let thread_slot = slot.clone();
        let thread = std::thread::Builder::new()
            .name("keyhole-log".into())
            .spawn(move || {
                let sink = thread_slot.lock().ok().and_then(|mut s| s.take());
                if let Some(sink) = sink {
                    write_loop(&worker, sink, linger);
                }
            })
            .ok();
        if thread.is_none() {
            if let Some(sink) = slot.lock().ok().and_then(|mut s| s.take()) {
                lock(&shared).inline = Some(Box::new(sink));
            }
        }
        let writer = LogWriter {
            shared: shared.clone(),
        };
        (writer, LogGuard { shared, thread })
    }
}

fn lock(shared: &LogShared) -> std::sync::MutexGuard<'_, LogState> {
    // A panic while holding the lock leaves a byte buffer, which is still usable.
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_loop<W: Write>(shared: &LogShared, mut sink: W, linger: Duration) {
    let mut out = Vec::new();
    loop {
        let mut state = lock(shared);
        while state.buf.is_empty() && !state.closed {
            state.idle = true;
            state = shared.filled.wait(state).unwrap_or_else(|e| e.into_inner());
            state.idle = false;
        }
        if state.buf.is_empty() {
            return; // closed and written out
        }
        if !state.closed && !linger.is_zero() {
            drop(state);
            std::thread::sleep(linger);
            state = lock(shared);
        }
        std::mem::swap(&mut state.buf, &mut out);
        state.dropping = false;
        drop(state);
        shared.drained.notify_all();
        // Nowhere to report a failing standard output; the lines are lost, the server goes on.
        let _ = sink.write_all(&out).and_then(|()| sink.flush());
        out.clear();
        if out.capacity() > MAX_QUEUED_LOG_BYTES {
            out.shrink_to(64 << 10);
        }
    }
}

impl Write for &LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let shared = &*self.shared;
        let mut state = lock(shared);
        if let Some(sink) = state.inline.as_mut() {
            sink.write_all(data)?;
            return Ok(data.len());
        }
        let deadline = std::time::Instant::now() + MAX_LOG_WAIT;
        while state.buf.len() >= MAX_QUEUED_LOG_BYTES && !state.closed {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if state.dropping || left.is_zero() {
                state.dropping = true;
                LOG_LINES_DROPPED.inc();
                return Ok(data.len());
            }
            state = shared
                .drained
                .wait_timeout(state, left)
                .map(|(state, _)| state)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        state.buf.extend_from_slice(data);
        let wake = state.idle;
        state.idle = false;
        drop(state);
        if wake {
            shared.filled.notify_one();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// How long exiting waits for queued log lines to be written.
const LOG_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for LogGuard {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
        self.shared.filled.notify_one();
        self.shared.drained.notify_all();
        // What is queued gets written, but a log pipe nobody reads (a stuck collector) must not
        // keep the process from exiting: wait at most LOG_DRAIN_LIMIT for the writer.
        if let Some(thread) = self.thread.take() {
            let deadline = std::time::Instant::now() + LOG_DRAIN_LIMIT;
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        if let Some(sink) = lock(&self.shared).inline.as_mut() {
            let _ = sink.flush();
        }
    }
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
    /// Downloads whose body failed after the response began (storage failing mid-transfer).
    pub download_errors: Counter,
    /// Files removed by the sweeper, by former status.
    pub swept: Family<KindLabel, Counter>,
    /// Sweeper failures.
    pub sweep_errors: Counter,
    /// Sweeper passes finished (the first runs at start-up).
    pub sweeps: Counter,
    /// Failed re-reads of the signing key's secret.
    pub key_refresh_errors: Counter,
    /// Requests refused by the rate limit.
    pub rate_limited: Counter,
    /// Transfers in flight.
    pub transfers_in_flight: Gauge,
    /// Objects the start-up reconciliation found without a metadata record (kept).
    pub unrecorded_objects: Gauge,
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
        let download_errors = Counter::default();
        registry.register(
            "edge_download_errors",
            "Downloads whose body failed after the response began",
            download_errors.clone(),
        );
        let swept = Family::<KindLabel, Counter>::default();
        registry.register(
            "sweeper_deleted_files",
            "Expired files deleted by the sweeper, by status",
            swept.clone(),
        );
        let sweep_errors = Counter::default();
        registry.register("sweeper_errors", "Sweeper failures", sweep_errors.clone());
        let sweeps = Counter::default();
        registry.register(
            "sweeper_passes",
            "Sweeper passes finished, the first at start-up: one more every sweep_interval while \
             the sweeper runs",
            sweeps.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because standard output did not take them for 250 ms (the server \
             does not wait longer)",
            LOG_LINES_DROPPED.clone(),
        );
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
        let unrecorded_objects = Gauge::default();
        registry.register(
            "unrecorded_objects",
            "Objects found at start-up with no metadata record: kept, never swept; a lost or \
             replaced metadata store looks like this (docs/runbooks/backup-restore.md)",
            unrecorded_objects.clone(),
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
            download_errors,
            swept,
            sweep_errors,
            sweeps,
            key_refresh_errors,
            rate_limited,
            transfers_in_flight,
            unrecorded_objects,
        }
    }

    /// Counts one labelled event.
    pub fn count(family: &Family<KindLabel, Counter>, kind: &str) {
        Self::count_by(family, kind, 1);
    }

    /// Counts `n` labelled events.
    pub fn count_by(family: &Family<KindLabel, Counter>, kind: &str, n: u64) {
        family
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc_by(n);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(captured: &Captured) -> Vec<serde_json::Value> {
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// A sink that takes nothing until released.
    struct Stuck(Arc<(Mutex<bool>, std::sync::Condvar)>);

    impl Write for Stuck {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let (released, cv) = &*self.0;
            let mut r = released.lock().unwrap();
            while !*r {
                r = cv.wait(r).unwrap();
            }
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_sink_costs_a_bounded_wait_then_lines() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let (writer, guard) = LogWriter::spawn(Stuck(gate.clone()), Duration::ZERO);
        let dropped = LOG_LINES_DROPPED.get();
        let line = vec![b'x'; 64 * 1024];
        let started = std::time::Instant::now();
        // 16 MiB, while the writer thread sits in the stuck sink with what it took (a whole
        // queue's worth at most, if it started late): the rest cannot all fit in the queue.
        for _ in 0..256 {
            (&writer).write_all(&line).unwrap();
        }
        let took = started.elapsed();
        let dropped_now = LOG_LINES_DROPPED.get();
        // Released before asserting: a failed assertion must not leave the writer stuck.
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        assert!(
            dropped_now > dropped,
            "lines beyond the queue are dropped ({dropped} -> {dropped_now}, {took:?})"
        );
        // One line waited MAX_LOG_WAIT; the ones after it were dropped at once.
        assert!(took < Duration::from_secs(5), "logging waited {took:?}");
    }

    #[test]
    fn json_lines_are_json_with_event_and_span_fields() {
        let captured = Captured::default();
        let (writer, guard) = LogWriter::spawn(captured.clone(), Duration::from_millis(5));
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .finish();
        let awkward = "quote \" backslash \\ newline \n tab \t bell \u{7} café ✓";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                count = 3u64,
                delta = -2i64,
                ok = true,
                ratio = 0.5,
                "outside"
            );
            let span = tracing::info_span!("request", request_id = %"abc123", path = awkward);
            span.in_scope(|| {
                tracing::warn!(detail = ?Some(1), nan = f64::NAN, "inside {}", 7);
                span.record("path", "/later");
            });
            let empty = tracing::info_span!("bare");
            empty.in_scope(|| tracing::error!(text = awkward, "no span fields"));
        });
        drop(guard);
        let lines = lines_of(&captured);
        assert_eq!(lines.len(), 3, "{lines:?}");

        let outside = &lines[0];
        assert_eq!(outside["level"], "INFO");
        assert_eq!(outside["message"], "outside");
        assert_eq!(outside["count"], 3);
        assert_eq!(outside["delta"], -2);
        assert_eq!(outside["ok"], true);
        assert_eq!(outside["ratio"], 0.5);
        assert!(outside["target"].as_str().unwrap().contains("telemetry"));
        assert!(outside.get("span").is_none());
        let ts = outside["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");

        let inside = &lines[1];
        assert_eq!(inside["level"], "WARN");
        assert_eq!(inside["message"], "inside 7");
        assert_eq!(inside["detail"], "Some(1)");
        assert!(inside["nan"].is_null());
        assert_eq!(inside["span"]["name"], "request");
        assert_eq!(inside["span"]["request_id"], "abc123");
        assert_eq!(inside["span"]["path"], awkward);

        let bare = &lines[2];
        assert_eq!(bare["text"], awkward);
        assert_eq!(bare["span"], serde_json::json!({"name": "bare"}));
    }

    #[test]
    fn log_writer_keeps_every_line_in_order() {
        let captured = Captured::default();
        let (writer, guard) = LogWriter::spawn(captured.clone(), Duration::from_millis(1));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        (&writer)
                            .write_all(format!("{{\"t\":{t},\"i\":{i}}}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let lines = lines_of(&captured);
        assert_eq!(lines.len(), 8000);
        for t in 0..4 {
            let seen: Vec<u64> = lines
                .iter()
                .filter(|l| l["t"] == t)
                .map(|l| l["i"].as_u64().unwrap())
                .collect();
            assert_eq!(seen, (0..2000).collect::<Vec<_>>(), "thread {t}");
        }
    }
}
