//! Server configuration: defaults, overridden by a TOML file, overridden by `KEYHOLE_*`
//! environment variables, overridden by command-line flags. Every key is documented in
//! `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// Errors in the configuration; each names the setting and what is expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A setting has an unusable value.
    #[error("{setting}: {message}")]
    Invalid {
        /// The setting (flag name).
        setting: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

/// A bearer token allowed to use the API: the SHA-256 of the token (hex) and the principal it
/// acts as. Tokens themselves are never stored.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who the token acts as; files belong to their principal.
    pub principal: String,
    /// Lower-case hex SHA-256 of the token (`keyhole tokens generate` prints it).
    pub sha256: String,
}

/// What a token's principal may be.
pub const PRINCIPAL_RULE: &str =
    "principal must be 1 to 128 printable characters, not starting or ending with whitespace";

/// Whether `principal` is a name a token may act as ([`PRINCIPAL_RULE`]). Surrounding whitespace
/// is refused, not trimmed: `--token` trims it, as pins and audiences are, so `" bob"` in a file
/// would be another principal than the `bob` of the same token given as a flag (and than a pin
/// for `bob`), owning other files.
pub fn valid_principal(principal: &str) -> bool {
    !principal.is_empty()
        && principal.len() <= 128
        && !principal.chars().any(char::is_control)
        && principal.trim() == principal
}

/// Per-principal request rate limit (token bucket).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed at once.
    pub burst: u32,
    /// Sustained requests per second.
    pub per_second: u32,
}

/// `[rate_limit]` in the configuration file: either key may be left to its default.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    burst: Option<u32>,
    per_second: Option<u32>,
}

/// Whether `authority` is `host[:port]` with a host and, when a port is given, one from 1 to
/// 65535 (`[v6]` hosts in brackets).
fn valid_authority(authority: &str) -> bool {
    let Ok(parsed) = authority.parse::<axum::http::uri::Authority>() else {
        return false;
    };
    let host = parsed.host().trim_start_matches('[').trim_end_matches(']');
    let port_ok = match authority.rsplit_once(':') {
        // A colon inside the brackets of an IPv6 host is not a port.
        Some((_, tail)) if !tail.contains(']') => parsed.port_u16().is_some_and(|p| p > 0),
        _ => true,
    };
    !host.is_empty() && port_ok
}

/// Checks the JWT settings: an issuer URL, at least one audience, keys fetched over https.
fn check_jwt(jwt: &crate::jwt::JwtSettings) -> Result<(), ConfigError> {
    if jwt.issuer.is_empty()
        || jwt
            .issuer
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            "--jwt-issuer",
            "must be the issuer exactly as tokens carry it in `iss`, e.g. \
             https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
        ));
    }
    if jwt.audiences.is_empty() || jwt.audiences.iter().any(|a| a.trim().is_empty()) {
        return Err(invalid(
            "--jwt-audience",
            "name at least one audience: the `aud` of accepted tokens, or for Cognito access \
             tokens the app client id (`client_id`)",
        ));
    }
    match &jwt.jwks_url {
        Some(url) => crate::jwt::check_fetch_url(url)
            .map_err(|why| invalid("--jwt-jwks-url", format!("{url}: {why}")))?,
        None => crate::jwt::check_fetch_url(&jwt.issuer).map_err(|why| {
            invalid(
                "--jwt-issuer",
                format!(
                    "{}: {why}; the keys are found through its discovery document \
                     (or set --jwt-jwks-url)",
                    jwt.issuer
                ),
            )
        })?,
    }
    if jwt.refresh < Duration::from_secs(60) {
        return Err(invalid("jwt_jwks_refresh", "must be at least 1m"));
    }
    Ok(())
}

/// The origin a browser sends for the configured `cors_origins` entry `entry`
/// (`scheme://host[:port]`, lower case, without a default port or a trailing `/`), `*` for
/// `*`, or why it can never match one.
pub fn cors_origin(entry: &str) -> Result<String, String> {
    let entry = entry.trim();
    if entry == "*" {
        return Ok(entry.to_owned());
    }
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Err("not an origin with its scheme".to_owned());
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err("the scheme must be http or https".to_owned());
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err("an origin has no path, query or fragment".to_owned());
    }
    if authority.contains('@') {
        return Err("an origin has no user name or password".to_owned());
    }
    if authority.contains('*') {
        return Err("wildcards are not supported: list each origin".to_owned());
    }
    let parsed = match authority.parse::<axum::http::uri::Authority>() {
        Ok(a) if valid_authority(authority) => a,
        _ => return Err("the host or port is not valid".to_owned()),
    };
    let host = parsed.host().to_ascii_lowercase();
    // A name (letters, digits, `-`, `.`) or an IPv6 literal in brackets: what browsers send.
    let host_ok = if let Some(v6) = host.strip_prefix('[') {
        v6.strip_suffix(']')
            .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !host_ok {
        return Err("the host is not a name or an IP address".to_owned());
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    Ok(match parsed.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when standard output is not a terminal, text otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// The resolved server configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory holding keys, metadata and objects.
    pub data_dir: PathBuf,
    /// The public origin every signed URL carries (`scheme://host[:port]`), e.g. the custom
    /// domain customers whitelist.
    pub public_url: String,
    /// Lifetime of upload links.
    pub upload_ttl: Duration,
    /// Lifetime of download links.
    pub download_ttl: Duration,
    /// How long an uploaded file is kept; zero keeps it until deleted.
    pub retention: Duration,
    /// Largest accepted upload in bytes.
    pub max_upload_bytes: u64,
    /// With S3 storage, bytes of memory all uploads in flight may hold on their way to the
    /// bucket (a part passes through memory whole); past it, PUTs get 503 `SlowDown`.
    pub upload_buffer_bytes: u64,
    /// Uploads declared at least this large are multipart (one signed URL per part).
    pub multipart_threshold: u64,
    /// Preferred part size of multipart uploads (at least 5 MiB; raised so no upload needs more
    /// than 10,000 parts).
    pub part_size: u64,
    /// Origins allowed by CORS (exact `scheme://host[:port]`); empty disables CORS.
    pub cors_origins: Vec<String>,
    /// API tokens; with no tokens and no `jwt`, no authentication (allowed only on loopback).
    pub tokens: Vec<TokenEntry>,
    /// Bearer JWTs of this issuer are accepted too (`jwt_issuer`, `jwt_audiences`,
    /// `jwt_jwks_url`); the principal is their `sub`.
    pub jwt: Option<crate::jwt::JwtSettings>,
    /// Whether, with no tokens and no `jwt`, a request without credentials acts as
    /// [`crate::auth::LOCAL_PRINCIPAL`]: `keyhole serve`, which then listens on loopback only.
    /// Not a setting: the Lambda turns it off, because behind API Gateway there is no loopback,
    /// and a request that did not pass the JWT authorizer must be refused.
    pub anonymous_when_unconfigured: bool,
    /// Per-principal API rate limit.
    pub rate_limit: RateLimit,
    /// How often the sweeper looks for expired files.
    pub sweep_interval: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request's headers (an idle keep-alive connection is
    /// closed after as long), and the longest pause in an upload's body.
    pub client_timeout: Duration,
    /// HTTP worker threads, each serving its share of the connections; 0 means one per core
    /// the process may use.
    pub workers: usize,
    /// Extra time a pending upload record outlives its upload link.
    pub pending_grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Where objects live.
    pub storage: Storage,
    /// Where file records live.
    pub metadata: Metadata,
    /// Where the signing key comes from.
    pub key_source: crate::keys::KeySource,
    /// The key pair id links carry (the CloudFront public key id); default: recorded with the
    /// key, else derived from it.
    pub key_pair_id: Option<String>,
    /// Extra trusted public keys (id, PEM path), for rotation.
    pub trusted_keys: Vec<(String, PathBuf)>,
    /// Endpoint of a Secrets Manager stand-in (moto); `None` for AWS.
    pub secrets_endpoint: Option<String>,
    /// How often a key read from Secrets Manager is read again; zero never re-reads it.
    pub key_refresh: Duration,
    /// Which links are `cloudfront` and which `s3-presigned`, per feature (migration from
    /// presigned S3 URLs; default: all `cloudfront`).
    pub url_modes: crate::links::UrlModes,
}

/// `url` with its passwords replaced by `***`: the user information's (`user:PASSWORD@`) and a
/// `password=` query parameter's (PostgreSQL takes both). Connection strings go into error
/// messages and debug output; their passwords must not.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The last '@' before the path ends the user information, even if the password holds '/'.
    let (userinfo, host_and_rest) = match rest.rfind('@') {
        Some(at) if !rest[..at].contains(['?', '#']) => (Some(&rest[..at]), &rest[at..]),
        _ => (None, rest),
    };
    let mut out = format!("{scheme}://");
    match userinfo.map(|u| u.split_once(':')) {
        Some(Some((user, _))) => out.push_str(&format!("{user}:***")),
        Some(None) => out.push_str(userinfo.unwrap_or_default()),
        None => {}
    }
    match host_and_rest.split_once('?') {
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                        format!("{name}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&masked.join("&"));
        }
        None => out.push_str(host_and_rest),
    }
    out
}

/// The metadata backend.
#[derive(Clone, PartialEq, Eq)]
pub enum Metadata {
    /// An SQLite file (default `DATA/metadata.db`).
    Sqlite(Option<PathBuf>),
    /// A PostgreSQL database, for replicas on one shared database.
    Postgres(String),
    /// A DynamoDB table, for replicas on AWS.
    DynamoDb {
        /// Table name.
        table: String,
        /// Endpoint override (a local stand-in); `None` for AWS.
        endpoint: Option<String>,
        /// Create the table (with its index and TTL) if it is missing.
        create: bool,
    },
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metadata::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Metadata::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&without_password(url))
                .finish(),
            Metadata::DynamoDb {
                table,
                endpoint,
                create,
            } => f
                .debug_struct("DynamoDb")
                .field("table", table)
                .field("endpoint", endpoint)
                .field("create", create)
                .finish(),
        }
    }
}

impl Metadata {
    /// Parses `sqlite`, `sqlite:PATH`, `postgres://...` or `dynamodb://TABLE`.
    pub fn parse(
        text: &str,
        dynamodb_endpoint: Option<String>,
        create: bool,
    ) -> Result<Self, ConfigError> {
        if text == "sqlite" {
            Ok(Metadata::Sqlite(None))
        } else if let Some(path) = text.strip_prefix("sqlite:") {
            Ok(Metadata::Sqlite(Some(PathBuf::from(path))))
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(Metadata::Postgres(text.to_owned()))
        } else if let Some(table) = text.strip_prefix("dynamodb://") {
            let ok = (3..=255).contains(&table.len())
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                return Err(invalid(
                    "--metadata",
                    format!("{table:?} is not a DynamoDB table name"),
                ));
            }
            Ok(Metadata::DynamoDb {
                table: table.to_owned(),
                endpoint: dynamodb_endpoint,
                create,
            })
        } else {
            Err(invalid(
                "--metadata",
                format!(
                    "{:?} is not sqlite, sqlite:PATH, postgres://... or dynamodb://TABLE",
                    without_password(text)
                ),
            ))
        }
    }
}

/// The object storage backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Files under `DATA/objects` (the embedded default).
    Local,
    /// An S3 bucket (or S3-compatible server), shared by replicas.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket.
        prefix: String,
        /// Endpoint of an S3-compatible server; `None` for AWS.
        endpoint: Option<String>,
    },
}

impl Storage {
    /// Parses `local` or `s3://BUCKET[/PREFIX]`.
    pub fn parse(text: &str, endpoint: Option<String>) -> Result<Self, ConfigError> {
        if text == "local" {
            return Ok(Storage::Local);
        }
        let s = crate::store::s3::S3Settings::parse(text).ok_or_else(|| {
            invalid(
                "--storage",
                format!("{text:?} is neither `local` nor s3://BUCKET[/PREFIX]"),
            )
        })?;
        Ok(Storage::S3 {
            bucket: s.bucket,
            prefix: s.prefix,
            endpoint,
        })
    }
}

/// Default values, in one place so `docs/configuration.md` and `--help` agree.
pub mod defaults {
    /// `127.0.0.1:8080`
    pub const LISTEN: &str = "127.0.0.1:8080";
    /// `./keyhole-data`
    pub const DATA_DIR: &str = "./keyhole-data";
    /// 15 minutes.
    pub const UPLOAD_TTL: &str = "15m";
    /// 1 hour.
    pub const DOWNLOAD_TTL: &str = "1h";
    /// 24 hours.
    pub const RETENTION: &str = "24h";
    /// 5 TiB, S3's object size limit: the largest `--max-upload-bytes` accepted (with 10,000
    /// parts it keeps every part within S3's 5 GiB).
    pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
    /// 5 TiB, the most there is (single PUTs are limited to 5 GiB by the multipart threshold).
    pub const MAX_UPLOAD_BYTES: u64 = MAX_OBJECT_BYTES;
    /// The most HTTP worker threads `--workers` accepts.
    pub const MAX_WORKERS: usize = 1024;
    /// 512 MiB: what uploads to S3 storage may hold in memory at once.
    pub const UPLOAD_BUFFER_BYTES: u64 = 512 * 1024 * 1024;
    /// 64 MiB.
    pub const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
    /// 8 MiB.
    pub const PART_SIZE: u64 = 8 * 1024 * 1024;
    /// S3's smallest part (all but the last).
    pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
    /// S3's largest part.
    pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
    /// S3's most parts.
    pub const MAX_PARTS: u64 = 10_000;
    /// The largest part with S3 storage, 64 MiB: each part passes through memory whole on its way
    /// to the bucket. It bounds `--part-size` and the part size raised for a large upload, so
    /// with S3 storage an upload is at most 10,000 × 64 MiB = 625 GiB.
    pub const MAX_S3_PART_SIZE: u64 = 64 * 1024 * 1024;
    /// Burst of 5000 requests.
    pub const RATE_BURST: u32 = 5000;
    /// 10000 requests per second.
    pub const RATE_PER_SECOND: u32 = 10_000;
    /// 60 seconds.
    pub const SWEEP_INTERVAL: &str = "60s";
    /// 30 seconds.
    pub const SHUTDOWN_GRACE: &str = "30s";
    /// 60 seconds, nginx's `client_header_timeout` and `client_body_timeout`.
    pub const CLIENT_TIMEOUT: &str = "60s";
    /// 5 minutes.
    pub const PENDING_GRACE: &str = "5m";
    /// 5 minutes.
    pub const KEY_REFRESH: &str = "5m";
    pub const JWT_JWKS_REFRESH: &str = "1h";
    /// The longest link lifetime and sweep interval: a year as the duration syntax counts it
    /// (`1y`, 365.25 days).
    pub const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(31_557_600);
    /// The longest retention and pending grace: 100 years (`100y`).
    pub const MAX_RETENTION: std::time::Duration = std::time::Duration::from_secs(3_155_760_000);
}

impl Config {
    /// The defaults with `data_dir` set: what tests and embedders start from.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let d = |s: &str| humantime::parse_duration(s).unwrap_or_default();
        Config {
            listen: defaults::LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: data_dir.into(),
            public_url: "http://127.0.0.1:8080".to_owned(),
            upload_ttl: d(defaults::UPLOAD_TTL),
            download_ttl: d(defaults::DOWNLOAD_TTL),
            retention: d(defaults::RETENTION),
            max_upload_bytes: defaults::MAX_UPLOAD_BYTES,
            upload_buffer_bytes: defaults::UPLOAD_BUFFER_BYTES,
            multipart_threshold: defaults::MULTIPART_THRESHOLD,
            part_size: defaults::PART_SIZE,
            cors_origins: Vec::new(),
            tokens: Vec::new(),
            jwt: None,
            anonymous_when_unconfigured: true,
            rate_limit: RateLimit {
                burst: defaults::RATE_BURST,
                per_second: defaults::RATE_PER_SECOND,
            },
            sweep_interval: d(defaults::SWEEP_INTERVAL),
            shutdown_grace: d(defaults::SHUTDOWN_GRACE),
            client_timeout: d(defaults::CLIENT_TIMEOUT),
            workers: 0,
            pending_grace: d(defaults::PENDING_GRACE),
            log_format: LogFormat::Auto,
            storage: Storage::Local,
            metadata: Metadata::Sqlite(None),
            key_source: crate::keys::KeySource::DataDir,
            key_pair_id: None,
            trusted_keys: Vec::new(),
            secrets_endpoint: None,
            key_refresh: d(defaults::KEY_REFRESH),
            url_modes: crate::links::UrlModes::default(),
        }
    }

    /// Checks the combination of settings; called before the server starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.authenticates() && !self.listen.ip().is_loopback() {
            return Err(invalid(
                "--listen",
                format!(
                    "{} is not a loopback address and no API tokens or JWT issuer are configured; \
                     add tokens (keyhole tokens generate --principal NAME), set --jwt-issuer, or \
                     listen on 127.0.0.1",
                    self.listen
                ),
            ));
        }
        if self.public_url == format!("http://{}", self.listen) {
            self.check_default_public_url()?;
        }
        let origin = self.public_url.trim_end_matches('/');
        let ok = match origin.split_once("://") {
            Some((scheme, host)) => {
                (scheme == "http" || scheme == "https")
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"/?#\"\\@%".contains(&b))
                    && valid_authority(host)
            }
            None => false,
        };
        if !ok {
            return Err(invalid(
                "--public-url",
                format!(
                    "must be http(s)://host[:port] with no path, a port from 1 to 65535 (got {:?})",
                    self.public_url
                ),
            ));
        }
        for (setting, value, least) in [
            // Links carry whole seconds: a shorter lifetime would mint links already expired.
            ("--upload-ttl", self.upload_ttl, Duration::from_secs(1)),
            ("--download-ttl", self.download_ttl, Duration::from_secs(1)),
            // A client needs some time to send anything at all.
            (
                "--client-timeout",
                self.client_timeout,
                Duration::from_secs(1),
            ),
            // A timer, not a link: any period but zero works (tests sweep every 200ms).
            (
                "--sweep-interval",
                self.sweep_interval,
                Duration::from_nanos(1),
            ),
        ] {
            if value < least {
                return Err(invalid(
                    setting,
                    if least == Duration::from_secs(1) {
                        "must be at least 1s"
                    } else {
                        "must be longer than zero"
                    },
                ));
            }
            if value > defaults::MAX_TTL {
                return Err(invalid(setting, "must be at most a year (1y)"));
            }
        }
        // Timers too, bounded so that no deadline computed from them can overflow; `0` turns
        // the key refresh off and makes shutdown stop without waiting.
        for (setting, value) in [
            ("--shutdown-grace", self.shutdown_grace),
            ("--key-refresh", self.key_refresh),
        ] {
            if value > defaults::MAX_TTL {
                return Err(invalid(setting, "must be at most a year (1y)"));
            }
        }
        // Both are added to epoch seconds; a century is already more than anyone means.
        for (setting, value) in [
            ("--retention", self.retention),
            ("pending_grace", self.pending_grace),
        ] {
            if value > defaults::MAX_RETENTION {
                return Err(invalid(setting, "must be at most 100 years (100y)"));
            }
        }
        if self.max_upload_bytes == 0 {
            return Err(invalid("--max-upload-bytes", "must be at least 1"));
        }
        if self.max_upload_bytes > defaults::MAX_OBJECT_BYTES {
            return Err(invalid(
                "--max-upload-bytes",
                format!(
                    "must be at most 5 TiB ({}), S3's object size limit (got {})",
                    defaults::MAX_OBJECT_BYTES,
                    self.max_upload_bytes
                ),
            ));
        }
        let buffer_range = defaults::MAX_S3_PART_SIZE..=defaults::MAX_OBJECT_BYTES;
        if !buffer_range.contains(&self.upload_buffer_bytes) {
            return Err(invalid(
                "--upload-buffer-bytes",
                format!(
                    "must be at least {} (64 MiB, the largest part with S3 storage, which passes \
                     through memory whole) and at most 5 TiB (got {})",
                    defaults::MAX_S3_PART_SIZE,
                    self.upload_buffer_bytes
                ),
            ));
        }
        if self.workers > defaults::MAX_WORKERS {
            return Err(invalid(
                "--workers",
                "must be at most 1024 (0 means one per core)",
            ));
        }
        if !(defaults::MIN_PART_SIZE..=defaults::MAX_PART_SIZE).contains(&self.part_size) {
            return Err(invalid(
                "--part-size",
                "must be between 5 MiB (5242880) and 5 GiB (S3's part limits)",
            ));
        }
        if self.part_size > self.max_part_size() {
            return Err(invalid(
                "--part-size",
                "with S3 storage a part passes through memory once; use at most 64 MiB (67108864)",
            ));
        }
        if self.multipart_threshold == 0 || self.multipart_threshold > defaults::MAX_PART_SIZE {
            return Err(invalid(
                "--multipart-threshold",
                "must be between 1 byte and 5 GiB (S3's single-PUT limit)",
            ));
        }
        if self.rate_limit.burst == 0 || self.rate_limit.per_second == 0 {
            return Err(invalid(
                "rate_limit",
                "burst and per_second must be at least 1",
            ));
        }
        for t in &self.tokens {
            let hex_ok = t.sha256.len() == 64 && t.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex_ok {
                return Err(invalid(
                    "tokens",
                    format!(
                        "sha256 of principal {:?} must be 64 hex characters",
                        t.principal
                    ),
                ));
            }
            if !valid_principal(&t.principal) {
                let trimmed = t.principal.trim();
                if trimmed != t.principal && valid_principal(trimmed) {
                    return Err(invalid(
                        "tokens",
                        format!(
                            "principal {:?} starts or ends with whitespace, which would make it \
                             another principal than {trimmed:?}; write {trimmed:?}",
                            t.principal
                        ),
                    ));
                }
                return Err(invalid("tokens", PRINCIPAL_RULE));
            }
        }
        for (i, t) in self.tokens.iter().enumerate() {
            let same = |o: &&TokenEntry| o.sha256.eq_ignore_ascii_case(&t.sha256);
            if let Some(other) = self.tokens[..i].iter().find(same) {
                return Err(invalid(
                    "tokens",
                    format!(
                        "principals {:?} and {:?} have the same token hash; a token names one \
                         principal (generate one per principal: keyhole tokens generate)",
                        other.principal, t.principal
                    ),
                ));
            }
        }
        if let Some(jwt) = &self.jwt {
            check_jwt(jwt)?;
        }
        for o in &self.cors_origins {
            if let Err(why) = cors_origin(o) {
                return Err(invalid(
                    "--cors-origin",
                    format!("{o:?} is not an origin like https://app.example.com: {why}"),
                ));
            }
        }
        self.validate_url_modes()?;
        Ok(())
    }

    /// What only `keyhole serve` needs of a configuration, beyond [`Config::validate`]: its API
    /// has no authentication without tokens (it listens on loopback then), so `*` in
    /// `cors_origins` would let every web site use it from its visitors' browsers. (Behind API
    /// Gateway every request is authenticated, by tokens or a JWT authorizer.)
    pub fn validate_serve(&self) -> Result<(), ConfigError> {
        if !self.authenticates() && self.cors_origins.iter().any(|o| o.trim() == "*") {
            return Err(invalid(
                "--cors-origin",
                "\"*\" would let every web site use this API, which has no tokens: name the \
                 origins that may, or add tokens (keyhole tokens generate) or a JWT issuer"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Whether API requests must authenticate: tokens or a JWT issuer are configured.
    pub fn authenticates(&self) -> bool {
        !self.tokens.is_empty() || self.jwt.is_some()
    }

    /// Refuses a listen address links cannot name, when the public URL was left to default to
    /// it: port 0 (the port is chosen at start) or an unspecified address such as 0.0.0.0.
    fn check_default_public_url(&self) -> Result<(), ConfigError> {
        if self.listen.port() == 0 || self.listen.ip().is_unspecified() {
            return Err(invalid(
                "--public-url",
                format!(
                    "needed with --listen {}: links would name http://{}, which no client can \
                     reach; give the URL clients use, e.g. --public-url https://files.example.com",
                    self.listen, self.listen
                ),
            ));
        }
        Ok(())
    }

    fn validate_url_modes(&self) -> Result<(), ConfigError> {
        for (setting, pins_setting, rollout, ttl) in [
            (
                "--upload-cloudfront-percent",
                "--upload-pin",
                &self.url_modes.upload,
                self.upload_ttl,
            ),
            (
                "--download-cloudfront-percent",
                "--download-pin",
                &self.url_modes.download,
                self.download_ttl,
            ),
        ] {
            if rollout.cloudfront_percent > 100 {
                return Err(invalid(
                    setting,
                    format!(
                        "must be between 0 and 100 (got {})",
                        rollout.cloudfront_percent
                    ),
                ));
            }
            for (i, (principal, mode)) in rollout.pins.iter().enumerate() {
                if rollout.pins[..i]
                    .iter()
                    .any(|(p, m)| p == principal && m != mode)
                {
                    return Err(invalid(
                        pins_setting,
                        format!("principal {principal:?} is pinned to both modes"),
                    ));
                }
            }
            if rollout.may_presign() {
                if !matches!(self.storage, Storage::S3 { .. }) {
                    return Err(invalid(
                        setting,
                        "s3-presigned links point at the S3 bucket: they need \
                         --storage s3://BUCKET[/PREFIX] (or set the percentage to 100 and \
                         pin no principal to s3-presigned)",
                    ));
                }
                if ttl > crate::store::s3_api::MAX_PRESIGN_TTL {
                    return Err(invalid(
                        setting,
                        "s3-presigned links live at most 7 days (SigV4); shorten the link TTL",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The largest part this storage takes: S3's 5 GiB on local disk, [`defaults::MAX_S3_PART_SIZE`]
    /// with S3 storage, where a part passes through memory whole.
    pub fn max_part_size(&self) -> u64 {
        match self.storage {
            Storage::Local => defaults::MAX_PART_SIZE,
            Storage::S3 { .. } => defaults::MAX_S3_PART_SIZE,
        }
    }

    /// The largest upload accepted: `max_upload_bytes`, and no more than 10,000 parts of
    /// [`Config::max_part_size`] (625 GiB with S3 storage).
    pub fn effective_max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes
            .min(defaults::MAX_PARTS.saturating_mul(self.max_part_size()))
    }

    /// The public origin without a trailing slash.
    pub fn public_origin(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }
}

/// The TOML file's shape. Every key is optional; unknown keys are errors (typos surface).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    public_url: Option<String>,
    upload_ttl: Option<String>,
    download_ttl: Option<String>,
    retention: Option<String>,
    max_upload_bytes: Option<u64>,
    upload_buffer_bytes: Option<u64>,
    multipart_threshold: Option<u64>,
    part_size: Option<u64>,
    cors_origins: Option<Vec<String>>,
    tokens: Option<Vec<TokenEntry>>,
    jwt_issuer: Option<String>,
    jwt_audiences: Option<Vec<String>>,
    jwt_jwks_url: Option<String>,
    jwt_jwks_refresh: Option<String>,
    rate_limit: Option<RateLimitFile>,
    sweep_interval: Option<String>,
    shutdown_grace: Option<String>,
    client_timeout: Option<String>,
    workers: Option<usize>,
    pending_grace: Option<String>,
    log_format: Option<LogFormat>,
    storage: Option<String>,
    s3_endpoint: Option<String>,
    metadata: Option<String>,
    dynamodb_endpoint: Option<String>,
    dynamodb_create_table: Option<bool>,
    key: Option<String>,
    key_pair_id: Option<String>,
    trusted_keys: Option<Vec<String>>,
    secrets_endpoint: Option<String>,
    key_refresh: Option<String>,
    url_mode: Option<FileUrlModes>,
}

/// `[url_mode]`: `[url_mode.upload]` and `[url_mode.download]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUrlModes {
    upload: Option<FileRollout>,
    download: Option<FileRollout>,
}

/// One feature's rollout in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRollout {
    cloudfront_percent: Option<u32>,
    pins: Option<Vec<String>>,
}

/// `keyhole serve` flags. Each also reads a `KEYHOLE_*` environment variable (flag wins), and
/// falls back to the config file, then to the default.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML config file (see docs/configuration.md).
    #[arg(long, env = "KEYHOLE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "KEYHOLE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory for keys, metadata and objects [default: ./keyhole-data].
    #[arg(long, env = "KEYHOLE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Public origin put in every signed URL, e.g. https://files.example.com
    /// [default: http://LISTEN].
    #[arg(long, env = "KEYHOLE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Lifetime of upload links [default: 15m].
    #[arg(long, env = "KEYHOLE_UPLOAD_TTL", value_name = "DURATION")]
    pub upload_ttl: Option<String>,
    /// Lifetime of download links [default: 1h].
    #[arg(long, env = "KEYHOLE_DOWNLOAD_TTL", value_name = "DURATION")]
    pub download_ttl: Option<String>,
    /// How long uploaded files are kept; 0 keeps them until deleted [default: 24h].
    #[arg(long, env = "KEYHOLE_RETENTION", value_name = "DURATION")]
    pub retention: Option<String>,
    /// Largest accepted upload in bytes, at most 5 TiB; with S3 storage uploads are also at most
    /// 625 GiB (10,000 parts of 64 MiB) [default: 5497558138880, 5 TiB].
    #[arg(long, env = "KEYHOLE_MAX_UPLOAD_BYTES", value_name = "N")]
    pub max_upload_bytes: Option<u64>,
    /// With s3:// storage: bytes of memory all uploads in flight may hold (each part passes
    /// through memory whole on its way to the bucket); past it a PUT gets 503 SlowDown with
    /// Retry-After, at least 67108864 [default: 536870912, 512 MiB].
    #[arg(long, env = "KEYHOLE_UPLOAD_BUFFER_BYTES", value_name = "BYTES")]
    pub upload_buffer_bytes: Option<u64>,
    /// Uploads declared at least this large use multipart, one signed URL per part
    /// [default: 67108864, 64 MiB].
    #[arg(long, env = "KEYHOLE_MULTIPART_THRESHOLD", value_name = "BYTES")]
    pub multipart_threshold: Option<u64>,
    /// Part size of multipart uploads, 5 MiB to 5 GiB (at most 64 MiB with S3 storage)
    /// [default: 8388608, 8 MiB].
    #[arg(long, env = "KEYHOLE_PART_SIZE", value_name = "BYTES")]
    pub part_size: Option<u64>,
    /// Allowed CORS origin (repeatable; comma-separated in the environment variable).
    #[arg(
        long = "cors-origin",
        env = "KEYHOLE_CORS_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN"
    )]
    pub cors_origins: Vec<String>,
    /// API token as PRINCIPAL:SHA256HEX (repeatable; comma-separated in the environment
    /// variable). `keyhole tokens generate` makes one.
    #[arg(
        long = "token",
        env = "KEYHOLE_TOKENS",
        value_delimiter = ',',
        value_name = "PRINCIPAL:SHA256"
    )]
    pub tokens: Vec<String>,
    /// Also accept bearer JWTs from this issuer (their `iss`, exactly; Cognito:
    /// https://cognito-idp.REGION.amazonaws.com/POOL_ID). The principal is the token's `sub`.
    #[arg(long, env = "KEYHOLE_JWT_ISSUER", value_name = "URL")]
    pub jwt_issuer: Option<String>,
    /// Audience a JWT must name in `aud` (or, as Cognito access tokens do, in `client_id`);
    /// repeatable, comma-separated in the environment variable. Required with --jwt-issuer.
    #[arg(
        long = "jwt-audience",
        env = "KEYHOLE_JWT_AUDIENCES",
        value_delimiter = ',',
        value_name = "AUDIENCE"
    )]
    pub jwt_audiences: Vec<String>,
    /// Where the issuer publishes its keys (JWKS) [default: the jwks_uri of
    /// ISSUER/.well-known/openid-configuration].
    #[arg(long, env = "KEYHOLE_JWT_JWKS_URL", value_name = "URL")]
    pub jwt_jwks_url: Option<String>,
    /// How often expired files are swept [default: 60s].
    #[arg(long, env = "KEYHOLE_SWEEP_INTERVAL", value_name = "DURATION")]
    pub sweep_interval: Option<String>,
    /// How long shutdown waits for transfers in flight [default: 30s].
    #[arg(long, env = "KEYHOLE_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// How long a client may take to send a request's headers (an idle keep-alive connection is
    /// closed after as long), and the longest pause in an upload's body [default: 60s].
    #[arg(long, env = "KEYHOLE_CLIENT_TIMEOUT", value_name = "DURATION")]
    pub client_timeout: Option<String>,
    /// HTTP worker threads; each serves its share of the connections on one core. 0 means one
    /// per core the process may use [default: 0].
    #[arg(long, env = "KEYHOLE_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Object storage: `local` (DATA/objects) or s3://BUCKET[/PREFIX] (credentials from the
    /// standard AWS variables) [default: local].
    #[arg(long, env = "KEYHOLE_STORAGE", value_name = "local|s3://BUCKET/PREFIX")]
    pub storage: Option<String>,
    /// Endpoint of an S3-compatible server (MinIO, s3s, moto), path-style.
    #[arg(long, env = "KEYHOLE_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Metadata store: `sqlite` (DATA/metadata.db), `sqlite:PATH`, `postgres://USER@HOST/DB`
    /// or `dynamodb://TABLE` (credentials from the standard AWS variables) [default: sqlite].
    #[arg(
        long,
        env = "KEYHOLE_METADATA",
        hide_env_values = true,
        value_name = "STORE"
    )]
    pub metadata: Option<String>,
    /// Endpoint of a DynamoDB stand-in (moto, DynamoDB Local).
    #[arg(long, env = "KEYHOLE_DYNAMODB_ENDPOINT", value_name = "URL")]
    pub dynamodb_endpoint: Option<String>,
    /// Create the DynamoDB table (owner index, TTL) if it does not exist; on AWS, Terraform
    /// creates it. `--dynamodb-create-table` alone means true; `=false` overrides a config file
    /// that says true [default: false].
    #[arg(
        long,
        env = "KEYHOLE_DYNAMODB_CREATE_TABLE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub dynamodb_create_table: Option<bool>,
    /// Signing key: `data-dir` (DATA/keys, generated on first start), `file:PATH` (a PEM file),
    /// `env:VARIABLE` (a PEM in that environment variable) or `secretsmanager://NAME_OR_ARN`
    /// (a PEM, or JSON {"private_key","key_pair_id"}, in AWS Secrets Manager; credentials from
    /// the standard AWS variables) [default: data-dir].
    #[arg(long, env = "KEYHOLE_KEY", value_name = "SOURCE")]
    pub key: Option<String>,
    /// Endpoint of a Secrets Manager stand-in (moto).
    #[arg(long, env = "KEYHOLE_SECRETS_ENDPOINT", value_name = "URL")]
    pub secrets_endpoint: Option<String>,
    /// How often a key from Secrets Manager is read again, so a rotated key is picked up
    /// without a restart; 0 never re-reads it [default: 5m].
    #[arg(long, env = "KEYHOLE_KEY_REFRESH", value_name = "DURATION")]
    pub key_refresh: Option<String>,
    /// Key pair id put in links (the CloudFront public key id) [default: the one recorded with
    /// the key, else derived from it].
    #[arg(long, env = "KEYHOLE_KEY_PAIR_ID", value_name = "ID")]
    pub key_pair_id: Option<String>,
    /// Also trust this public key, as ID=PUBLIC.pem (repeatable; comma-separated in the
    /// environment variable), e.g. the previous key during a rotation.
    #[arg(
        long = "trust",
        env = "KEYHOLE_TRUSTED_KEYS",
        value_delimiter = ',',
        value_name = "ID=PUBLIC.pem"
    )]
    pub trusted_keys: Vec<String>,
    /// Log format [default: auto: JSON unless on a terminal].
    #[arg(long, env = "KEYHOLE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Share (0-100) of unpinned principals whose upload links are `cloudfront`; the rest get
    /// `s3-presigned` (needs S3 storage). See docs/migration.md [default: 100].
    #[arg(
        long,
        env = "KEYHOLE_UPLOAD_CLOUDFRONT_PERCENT",
        value_name = "PERCENT"
    )]
    pub upload_cloudfront_percent: Option<u32>,
    /// Pin a principal's upload links to a mode, as PRINCIPAL=cloudfront|s3-presigned
    /// (repeatable; comma-separated in the environment variable).
    #[arg(
        long = "upload-pin",
        env = "KEYHOLE_UPLOAD_PINS",
        value_delimiter = ',',
        value_name = "PRINCIPAL=MODE"
    )]
    pub upload_pins: Vec<String>,
    /// Share (0-100) of unpinned principals whose download links are `cloudfront`; the rest
    /// get `s3-presigned` (needs S3 storage) [default: 100].
    #[arg(
        long,
        env = "KEYHOLE_DOWNLOAD_CLOUDFRONT_PERCENT",
        value_name = "PERCENT"
    )]
    pub download_cloudfront_percent: Option<u32>,
    /// Pin a principal's download links to a mode, as PRINCIPAL=cloudfront|s3-presigned
    /// (repeatable; comma-separated in the environment variable).
    #[arg(
        long = "download-pin",
        env = "KEYHOLE_DOWNLOAD_PINS",
        value_delimiter = ',',
        value_name = "PRINCIPAL=MODE"
    )]
    pub download_pins: Vec<String>,
}

/// One feature's rollout from its flags (which win) and its file section.
fn rollout(
    percent: Option<u32>,
    pins: Vec<String>,
    file: Option<FileRollout>,
    pins_setting: &'static str,
) -> Result<crate::links::Rollout, ConfigError> {
    let file = file.unwrap_or_default();
    let pins = if pins.is_empty() {
        file.pins.unwrap_or_default()
    } else {
        pins
    };
    Ok(crate::links::Rollout {
        cloudfront_percent: percent.or(file.cloudfront_percent).unwrap_or(100),
        pins: pins
            .iter()
            .map(|p| crate::links::Rollout::parse_pin(p).map_err(|m| invalid(pins_setting, m)))
            .collect::<Result<_, _>>()?,
    })
}

fn duration(setting: &'static str, text: &str) -> Result<Duration, ConfigError> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text.trim())
        .map_err(|e| invalid(setting, format!("{e} (use e.g. 30s, 15m, 1h, 7d)")))
}

impl ServeArgs {
    /// Resolves flags, environment and config file into a [`Config`].
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(defaults::DATA_DIR));
        let mut config = Config::with_data_dir(data_dir);
        if let Some(listen) = self.listen.or(file.listen) {
            config.listen = listen.parse().map_err(|_| {
                invalid(
                    "--listen",
                    format!("{listen:?} is not ADDR:PORT, e.g. 127.0.0.1:8080"),
                )
            })?;
        }
        config.public_url = match self.public_url.or(file.public_url) {
            Some(url) => url,
            None => format!("http://{}", config.listen),
        };
        let pick = |flag: Option<String>, file: Option<String>, default: &str| {
            flag.or(file).unwrap_or_else(|| default.to_owned())
        };
        config.upload_ttl = duration(
            "--upload-ttl",
            &pick(self.upload_ttl, file.upload_ttl, defaults::UPLOAD_TTL),
        )?;
        config.download_ttl = duration(
            "--download-ttl",
            &pick(self.download_ttl, file.download_ttl, defaults::DOWNLOAD_TTL),
        )?;
        config.retention = duration(
            "--retention",
            &pick(self.retention, file.retention, defaults::RETENTION),
        )?;
        config.sweep_interval = duration(
            "--sweep-interval",
            &pick(
                self.sweep_interval,
                file.sweep_interval,
                defaults::SWEEP_INTERVAL,
            ),
        )?;
        config.shutdown_grace = duration(
            "--shutdown-grace",
            &pick(
                self.shutdown_grace,
                file.shutdown_grace,
                defaults::SHUTDOWN_GRACE,
            ),
        )?;
        config.client_timeout = duration(
            "--client-timeout",
            &pick(
                self.client_timeout,
                file.client_timeout,
                defaults::CLIENT_TIMEOUT,
            ),
        )?;
        config.pending_grace = duration(
            "pending_grace",
            &file
                .pending_grace
                .unwrap_or_else(|| defaults::PENDING_GRACE.to_owned()),
        )?;
        if let Some(n) = self.max_upload_bytes.or(file.max_upload_bytes) {
            config.max_upload_bytes = n;
        }
        if let Some(n) = self.upload_buffer_bytes.or(file.upload_buffer_bytes) {
            config.upload_buffer_bytes = n;
        }
        if let Some(n) = self.workers.or(file.workers) {
            config.workers = n;
        }
        if let Some(n) = self.multipart_threshold.or(file.multipart_threshold) {
            config.multipart_threshold = n;
        }
        if let Some(n) = self.part_size.or(file.part_size) {
            config.part_size = n;
        }
        config.cors_origins = if self.cors_origins.is_empty() {
            file.cors_origins.unwrap_or_default()
        } else {
            self.cors_origins
        };
        config.tokens = if self.tokens.is_empty() {
            file.tokens.unwrap_or_default()
        } else {
            self.tokens
                .iter()
                .map(|spec| {
                    let (principal, sha256) = spec.rsplit_once(':').ok_or_else(|| {
                        invalid(
                            "--token",
                            "expected PRINCIPAL:SHA256HEX (keyhole tokens generate prints it)",
                        )
                    })?;
                    // Trimmed: `KEYHOLE_TOKENS="alice:H1, bob:H2"` means `bob`, as pins and
                    // audiences are trimmed (a principal `" bob"` would own other files).
                    Ok(TokenEntry {
                        principal: principal.trim().to_owned(),
                        sha256: sha256.trim().to_ascii_lowercase(),
                    })
                })
                .collect::<Result<_, ConfigError>>()?
        };
        let jwt_issuer = self.jwt_issuer.or(file.jwt_issuer);
        // Trimmed: `KEYHOLE_JWT_AUDIENCES="a, b"` means `a` and `b`.
        let jwt_audiences: Vec<String> = if self.jwt_audiences.is_empty() {
            file.jwt_audiences.unwrap_or_default()
        } else {
            self.jwt_audiences
        }
        .iter()
        .map(|a| a.trim().to_owned())
        .collect();
        let jwt_jwks_url = self.jwt_jwks_url.or(file.jwt_jwks_url);
        let jwt_refresh = duration(
            "jwt_jwks_refresh",
            &file
                .jwt_jwks_refresh
                .unwrap_or_else(|| defaults::JWT_JWKS_REFRESH.to_owned()),
        )?;
        config.jwt = match jwt_issuer {
            Some(issuer) => Some(crate::jwt::JwtSettings {
                issuer,
                audiences: jwt_audiences,
                jwks_url: jwt_jwks_url,
                refresh: jwt_refresh,
                refetch_spacing: crate::jwt::REFETCH_SPACING,
            }),
            None if !jwt_audiences.is_empty() || jwt_jwks_url.is_some() => {
                return Err(invalid(
                    "--jwt-issuer",
                    "JWT audiences or a JWKS URL are set without an issuer; set --jwt-issuer too",
                ))
            }
            None => None,
        };
        if let Some(rate) = file.rate_limit {
            if let Some(burst) = rate.burst {
                config.rate_limit.burst = burst;
            }
            if let Some(per_second) = rate.per_second {
                config.rate_limit.per_second = per_second;
            }
        }
        config.log_format = self
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Auto);
        let storage = self
            .storage
            .or(file.storage)
            .unwrap_or_else(|| "local".to_owned());
        config.storage = Storage::parse(&storage, self.s3_endpoint.or(file.s3_endpoint))?;
        let metadata = self
            .metadata
            .or(file.metadata)
            .unwrap_or_else(|| "sqlite".to_owned());
        config.metadata = Metadata::parse(
            &metadata,
            self.dynamodb_endpoint.or(file.dynamodb_endpoint),
            self.dynamodb_create_table
                .or(file.dynamodb_create_table)
                .unwrap_or(false),
        )?;
        if let Some(key) = self.key.or(file.key) {
            config.key_source = crate::keys::KeySource::parse(&key).ok_or_else(|| {
                invalid(
                    "--key",
                    format!(
                        "{key:?} is not data-dir, file:PATH, env:VARIABLE or \
                         secretsmanager://NAME_OR_ARN"
                    ),
                )
            })?;
        }
        config.key_pair_id = self.key_pair_id.or(file.key_pair_id);
        config.secrets_endpoint = self.secrets_endpoint.or(file.secrets_endpoint);
        config.key_refresh = duration(
            "--key-refresh",
            &pick(self.key_refresh, file.key_refresh, defaults::KEY_REFRESH),
        )?;
        let trusted = if self.trusted_keys.is_empty() {
            file.trusted_keys.unwrap_or_default()
        } else {
            self.trusted_keys
        };
        config.trusted_keys = trusted
            .iter()
            .map(|spec| {
                spec.split_once('=')
                    .map(|(id, path)| (id.to_owned(), PathBuf::from(path)))
                    .ok_or_else(|| invalid("--trust", format!("{spec:?} is not ID=PUBLIC.pem")))
            })
            .collect::<Result<_, _>>()?;
        let modes = file.url_mode.unwrap_or_default();
        config.url_modes = crate::links::UrlModes {
            upload: rollout(
                self.upload_cloudfront_percent,
                self.upload_pins,
                modes.upload,
                "--upload-pin",
            )?,
            download: rollout(
                self.download_cloudfront_percent,
                self.download_pins,
                modes.download,
                "--download-pin",
            )?,
        };
        config.validate()?;
        Ok(config)
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_are_the_origins_browsers_send_and_others_are_refused() {
        for (entry, origin) in [
            ("https://app.example.com", "https://app.example.com"),
            (" https://App.Example.COM/ ", "https://app.example.com"),
            ("HTTPS://app.example.com:443", "https://app.example.com"),
            ("http://localhost:80", "http://localhost"),
            ("http://localhost:8080", "http://localhost:8080"),
            (
                "https://app.example.com:8443",
                "https://app.example.com:8443",
            ),
            ("http://[::1]:80", "http://[::1]"),
            ("http://[::1]:3000/", "http://[::1]:3000"),
            ("https://app.example.com:0443", "https://app.example.com"),
            (
                "https://app.example.com:08443",
                "https://app.example.com:8443",
            ),
            ("*", "*"),
        ] {
            assert_eq!(cors_origin(entry).as_deref(), Ok(origin), "{entry:?}");
        }
        for entry in [
            "app.example.com",
            "ftp://app.example.com",
            "https://app.example.com/app",
            "https://app.example.com/?x",
            "https://app.example.com#x",
            "https://user@app.example.com",
            "https://",
            "https://app.example.com:0",
            "https://app.example.com:99999",
            "https://app example.com",
            "https://%61pp.example.com",
            "https://*.example.com",
            "https://app_1.example.com",
            "http://[not:v6]:80",
        ] {
            assert!(cors_origin(entry).is_err(), "{entry:?}");
        }
        let with = |origins: &[&str], tokens: bool| {
            let mut c = Config::with_data_dir("data");
            c.cors_origins = origins.iter().map(|o| o.to_string()).collect();
            if tokens {
                c.tokens = vec![TokenEntry {
                    principal: "app".into(),
                    sha256: "ab".repeat(32),
                }];
            }
            c.validate().and_then(|()| c.validate_serve())
        };
        assert!(with(&["https://a.example", " https://B.example/"], false).is_ok());
        let e = with(&["https://a.example", "https://b.example/app"], false).unwrap_err();
        assert!(e.to_string().contains("no path"), "{e}");
        // Any web site could drive a token-less API from its visitors' browsers.
        let e = with(&["*"], false).unwrap_err();
        assert!(e.to_string().contains("every web site"), "{e}");
        assert!(with(&["*"], true).is_ok());
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = ServeArgs::default().resolve().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_url, "http://127.0.0.1:8080");
        assert_eq!(config.upload_ttl, Duration::from_secs(900));
        assert_eq!(config.download_ttl, Duration::from_secs(3600));
        assert_eq!(config.retention, Duration::from_secs(86400));
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            "upload_ttl = \"5m\"\nretention = \"0\"\npublic_url = \"https://files.example.com\"\n[rate_limit]\nburst = 3\nper_second = 1\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            download_ttl: Some("2h".into()),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.upload_ttl, Duration::from_secs(300));
        assert_eq!(c.download_ttl, Duration::from_secs(7200));
        assert!(c.retention.is_zero());
        assert_eq!(c.public_url, "https://files.example.com");
        assert_eq!(c.rate_limit.burst, 3);

        std::fs::write(&path, "uplod_ttl = \"5m\"\n").unwrap();
        let err = ServeArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("uplod_ttl"), "{err}");
    }

    #[test]
    fn workers_from_file_and_flags_within_bounds() {
        assert_eq!(ServeArgs::default().resolve().unwrap().workers, 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(&path, "workers = 3\n").unwrap();
        let file = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        assert_eq!(file.resolve().unwrap().workers, 3);
        let flag = ServeArgs {
            config: Some(path),
            workers: Some(1),
            ..Default::default()
        };
        assert_eq!(flag.resolve().unwrap().workers, 1);
        let err = ServeArgs {
            workers: Some(5000),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("--workers"), "{err}");
    }

    #[test]
    fn secrets_manager_key_source() {
        let c = ServeArgs {
            key: Some("secretsmanager://arn:aws:secretsmanager:us-east-1:1:secret:k-Ab1".into()),
            secrets_endpoint: Some("http://127.0.0.1:5000".into()),
            key_refresh: Some("0".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            c.key_source,
            crate::keys::KeySource::SecretsManager {
                secret_id: "arn:aws:secretsmanager:us-east-1:1:secret:k-Ab1".into()
            }
        );
        assert_eq!(c.secrets_endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert!(c.key_refresh.is_zero());
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.key_refresh, Duration::from_secs(300));
    }

    #[test]
    fn url_modes_from_file_env_and_flags() {
        use crate::links::{Rollout, UrlMode};
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.url_modes, crate::links::UrlModes::default());
        assert_eq!(c.url_modes.upload.cloudfront_percent, 100);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            "storage = \"s3://b/p\"\n[url_mode.upload]\ncloudfront_percent = 10\n\
             pins = [\"pilot=cloudfront\", \"late=s3-presigned\"]\n\
             [url_mode.download]\ncloudfront_percent = 50\n",
        )
        .unwrap();
        let c = ServeArgs {
            config: Some(path.clone()),
            download_cloudfront_percent: Some(0),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            c.url_modes.upload,
            Rollout {
                cloudfront_percent: 10,
                pins: vec![
                    ("pilot".into(), UrlMode::CloudFront),
                    ("late".into(), UrlMode::S3Presigned)
                ],
            }
        );
        assert_eq!(c.url_modes.download.cloudfront_percent, 0);
        // Flags replace the file's pins.
        let c = ServeArgs {
            config: Some(path.clone()),
            upload_pins: vec!["other=s3-presigned".into()],
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            c.url_modes.upload.pins,
            vec![("other".into(), UrlMode::S3Presigned)]
        );

        std::fs::write(&path, "[url_mode.upload]\ncloudfront_percnt = 10\n").unwrap();
        let err = ServeArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("cloudfront_percnt"), "{err}");
    }

    #[test]
    fn url_modes_are_validated() {
        let s3 = || Some("s3://bucket/prefix".to_owned());
        let cases: [(ServeArgs, &str); 5] = [
            (
                ServeArgs {
                    upload_cloudfront_percent: Some(90),
                    ..Default::default()
                },
                "need --storage s3://",
            ),
            (
                ServeArgs {
                    download_pins: vec!["late=s3-presigned".into()],
                    ..Default::default()
                },
                "need --storage s3://",
            ),
            (
                ServeArgs {
                    storage: s3(),
                    upload_cloudfront_percent: Some(101),
                    ..Default::default()
                },
                "between 0 and 100",
            ),
            (
                ServeArgs {
                    storage: s3(),
                    upload_pins: vec!["acme=legacy".into()],
                    ..Default::default()
                },
                "use cloudfront or s3-presigned",
            ),
            (
                ServeArgs {
                    storage: s3(),
                    download_cloudfront_percent: Some(0),
                    download_ttl: Some("8d".into()),
                    ..Default::default()
                },
                "at most 7 days",
            ),
        ];
        for (args, expected) in cases {
            let err = args.resolve().unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        let err = ServeArgs {
            storage: s3(),
            upload_pins: vec!["a=cloudfront".into(), "a=s3-presigned".into()],
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("both modes"), "{err}");
        // Pinning to cloudfront alone needs no S3.
        assert!(ServeArgs {
            upload_pins: vec!["pilot=cloudfront".into()],
            ..Default::default()
        }
        .resolve()
        .is_ok());
    }

    #[test]
    fn upload_and_part_sizes_within_s3_limits() {
        let resolve = |max: u64, storage: Option<&str>, part: Option<u64>| {
            ServeArgs {
                max_upload_bytes: Some(max),
                storage: storage.map(str::to_owned),
                part_size: part,
                ..Default::default()
            }
            .resolve()
        };
        let c = resolve(defaults::MAX_OBJECT_BYTES, None, None).unwrap();
        assert_eq!(c.max_upload_bytes, 5 << 40);
        let err = resolve(defaults::MAX_OBJECT_BYTES + 1, None, None).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("--max-upload-bytes"), "{err}");
        assert!(err.contains("at most 5 TiB"), "{err}");
        let err = resolve(u64::MAX, None, None).unwrap_err().to_string();
        assert!(err.contains("at most 5 TiB"), "{err}");

        let s3 = Some("s3://bucket/prefix");
        let c = resolve(1 << 40, s3, Some(defaults::MAX_S3_PART_SIZE)).unwrap();
        assert_eq!(c.max_part_size(), 64 << 20);
        assert_eq!(c.effective_max_upload_bytes(), 625 << 30);
        let err = resolve(1 << 40, s3, Some(defaults::MAX_S3_PART_SIZE + 1)).unwrap_err();
        assert!(err.to_string().contains("at most 64 MiB"), "{err}");
        // Local storage keeps S3's part limits only.
        let c = resolve(1 << 40, None, Some(1 << 30)).unwrap();
        assert_eq!(c.effective_max_upload_bytes(), 1 << 40);
    }

    #[test]
    fn lifetimes_are_whole_seconds_up_to_a_year() {
        let ttl = |text: &str| {
            ServeArgs {
                upload_ttl: Some(text.to_owned()),
                ..Default::default()
            }
            .resolve()
        };
        for short in ["500ms", "999ms", "1ns"] {
            let err = ttl(short).unwrap_err().to_string();
            assert!(
                err.contains("--upload-ttl: must be at least 1s"),
                "{short}: {err}"
            );
        }
        assert!(ttl("0").unwrap_err().to_string().contains("at least 1s"));
        assert_eq!(ttl("1s").unwrap().upload_ttl, Duration::from_secs(1));
        assert_eq!(
            ttl("1y").unwrap().upload_ttl,
            Duration::from_secs(31_557_600)
        );
        let err = ttl("1y 1s").unwrap_err().to_string();
        assert!(err.contains("at most a year"), "{err}");
        let err = ServeArgs {
            download_ttl: Some("100ms".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("--download-ttl: must be at least 1s"), "{err}");
        let c = ServeArgs {
            download_ttl: Some("1y".into()),
            sweep_interval: Some("1y".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.sweep_interval, Duration::from_secs(31_557_600));
        // The sweep interval is a timer period, not a link lifetime: under a second is fine,
        // zero (which no timer can tick at) and over a year are not.
        let sweep = |text: &str| {
            ServeArgs {
                sweep_interval: Some(text.to_owned()),
                ..Default::default()
            }
            .resolve()
        };
        assert_eq!(
            sweep("200ms").unwrap().sweep_interval,
            Duration::from_millis(200)
        );
        let err = sweep("0").unwrap_err().to_string();
        assert!(
            err.contains("--sweep-interval: must be longer than zero"),
            "{err}"
        );
        let err = sweep("2y").unwrap_err().to_string();
        assert!(
            err.contains("--sweep-interval: must be at most a year"),
            "{err}"
        );
    }

    #[test]
    fn shutdown_grace_and_key_refresh_at_most_a_year() {
        let resolve = |grace: &str, refresh: &str| {
            ServeArgs {
                shutdown_grace: Some(grace.to_owned()),
                key_refresh: Some(refresh.to_owned()),
                ..Default::default()
            }
            .resolve()
        };
        let c = resolve("1y", "1y").unwrap();
        assert_eq!(c.shutdown_grace, Duration::from_secs(31_557_600));
        assert_eq!(c.key_refresh, Duration::from_secs(31_557_600));
        assert!(resolve("0", "0").is_ok());
        let err = resolve("1000y", "5m").unwrap_err().to_string();
        assert!(
            err.contains("--shutdown-grace: must be at most a year"),
            "{err}"
        );
        let err = resolve("30s", "2y").unwrap_err().to_string();
        assert!(
            err.contains("--key-refresh: must be at most a year"),
            "{err}"
        );
    }

    #[test]
    fn retention_and_pending_grace_at_most_a_century() {
        let retention = |text: &str| {
            ServeArgs {
                retention: Some(text.to_owned()),
                ..Default::default()
            }
            .resolve()
        };
        assert!(retention("0").unwrap().retention.is_zero());
        assert_eq!(
            retention("100y").unwrap().retention,
            Duration::from_secs(3_155_760_000)
        );
        let err = retention("101y").unwrap_err().to_string();
        assert!(
            err.contains("--retention: must be at most 100 years"),
            "{err}"
        );
        let err = retention("10000000000y").unwrap_err().to_string();
        assert!(err.contains("--retention"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(&path, "pending_grace = \"200y\"\n").unwrap();
        let err = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("pending_grace: must be at most 100 years"),
            "{err}"
        );
        std::fs::write(&path, "pending_grace = \"0\"\n").unwrap();
        let c = ServeArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(c.pending_grace.is_zero());
    }

    #[test]
    fn dynamodb_create_table_follows_flags_then_env_then_file() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        let create = |file: &str, args: &[&str]| {
            use clap::Parser;
            std::fs::write(
                &path,
                format!("metadata = \"dynamodb://files\"\ndynamodb_create_table = {file}\n"),
            )
            .unwrap();
            let mut argv = vec!["keyhole", "--config", path.to_str().unwrap()];
            argv.extend_from_slice(args);
            let config = Cli::try_parse_from(argv).unwrap().serve.resolve().unwrap();
            match config.metadata {
                Metadata::DynamoDb { create, .. } => create,
                other => panic!("{other:?}"),
            }
        };
        assert!(create("true", &[]));
        assert!(!create("false", &[]));
        assert!(!create("true", &["--dynamodb-create-table=false"]));
        assert!(create("false", &["--dynamodb-create-table"]));
        assert!(create("false", &["--dynamodb-create-table=true"]));
        // No other test reads this variable.
        std::env::set_var("KEYHOLE_DYNAMODB_CREATE_TABLE", "false");
        let env_false = create("true", &[]);
        let flag_over_env = create("true", &["--dynamodb-create-table"]);
        std::env::set_var("KEYHOLE_DYNAMODB_CREATE_TABLE", "true");
        let env_true = create("false", &[]);
        std::env::remove_var("KEYHOLE_DYNAMODB_CREATE_TABLE");
        assert!(!env_false, "the environment overrides the file");
        assert!(flag_over_env, "the flag overrides the environment");
        assert!(env_true);
    }

    #[test]
    fn public_urls_name_a_reachable_host_and_port() {
        let token = || vec![format!("app:{}", "a".repeat(64))];
        let with = |listen: &str, public_url: Option<&str>| {
            ServeArgs {
                listen: Some(listen.into()),
                public_url: public_url.map(Into::into),
                tokens: token(),
                ..Default::default()
            }
            .resolve()
        };
        for bad in [
            "http://:8080",
            "http://[::1",
            "http://host:notaport",
            "http://host:99999",
            "http://host:0",
            "http://a%2Fb",
            "ftp://host",
        ] {
            let err = with("127.0.0.1:8080", Some(bad)).unwrap_err().to_string();
            assert!(err.contains("--public-url"), "{bad}: {err}");
        }
        for good in [
            "https://files.example.com",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://[2001:db8::1]",
            "https://files.example.com:8443/",
        ] {
            assert!(with("127.0.0.1:8080", Some(good)).is_ok(), "{good}");
        }
        // Left to default, the public URL would name an address no client can use.
        for listen in ["127.0.0.1:0", "0.0.0.0:8080", "[::]:8080"] {
            let err = with(listen, None).unwrap_err().to_string();
            assert!(
                err.contains("--public-url: needed with --listen"),
                "{listen}: {err}"
            );
            assert!(
                with(listen, Some("https://files.example.com")).is_ok(),
                "{listen}"
            );
        }
    }

    #[test]
    fn a_token_hash_names_one_principal() {
        let hash = "b".repeat(64);
        let err = ServeArgs {
            tokens: vec![
                format!("alice:{hash}"),
                format!("bob:{}", hash.to_uppercase()),
            ],
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"alice\" and \"bob\""), "{err}");
    }

    #[test]
    fn token_principals_are_trimmed_from_flags_and_refused_with_spaces_in_the_file() {
        // `KEYHOLE_TOKENS="alice:H1, bob:H2"`: `bob`, as a pin for bob and the file's `"bob"`.
        let (h1, h2) = ("a".repeat(64), "b".repeat(64));
        let tokens = |tokens: Vec<String>| {
            let c = ServeArgs {
                tokens,
                ..Default::default()
            }
            .resolve()
            .unwrap();
            c.tokens
                .into_iter()
                .map(|t| (t.principal, t.sha256))
                .collect::<Vec<_>>()
        };
        let expected = vec![
            ("alice".to_owned(), h1.clone()),
            ("bob".to_owned(), h2.clone()),
        ];
        assert_eq!(
            tokens(vec![format!("alice:{h1}"), format!(" bob:{h2}")]),
            expected
        );
        assert_eq!(
            tokens(vec![format!("alice:{h1}"), format!(" bob : {h2} ")]),
            expected
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        for principal in [" bob", "bob ", "\\tbob"] {
            std::fs::write(
                &path,
                format!("[[tokens]]\nprincipal = \"{principal}\"\nsha256 = \"{h2}\"\n"),
            )
            .unwrap();
            let err = ServeArgs {
                config: Some(path.clone()),
                ..Default::default()
            }
            .resolve()
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("whitespace") && err.contains("write \"bob\""),
                "{principal:?}: {err}"
            );
        }
        assert!(!valid_principal(" bob") && !valid_principal("bob\u{a0}"));
        assert!(valid_principal("bob") && valid_principal("Bob Smith"));
    }

    #[test]
    fn rate_limit_keys_default_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(&path, "[rate_limit]\nburst = 10\n").unwrap();
        let c = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!((c.rate_limit.burst, c.rate_limit.per_second), (10, 10_000));
        std::fs::write(&path, "[rate_limit]\nper_second = 7\n").unwrap();
        let c = ServeArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!((c.rate_limit.burst, c.rate_limit.per_second), (5000, 7));
    }

    #[test]
    fn database_passwords_stay_out_of_errors_and_debug_output() {
        assert_eq!(
            without_password("postgres://kh:s3cret@db/kh?sslmode=require"),
            "postgres://kh:***@db/kh?sslmode=require"
        );
        assert_eq!(
            without_password("postgres://kh@db/kh"),
            "postgres://kh@db/kh"
        );
        assert_eq!(
            without_password("postgres://db/kh?x=a@b"),
            "postgres://db/kh?x=a@b"
        );
        assert_eq!(
            without_password("postgres://kh:pa/ss@db/kh"),
            "postgres://kh:***@db/kh"
        );
        assert_eq!(
            without_password("postgres://db/kh?user=kh&password=s3cret&sslmode=require"),
            "postgres://db/kh?user=kh&password=***&sslmode=require"
        );
        let err = ServeArgs {
            metadata: Some("postgress://kh:s3cret@db/kh".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(
            !err.contains("s3cret") && err.contains("kh:***@db"),
            "{err}"
        );
        let debug = format!(
            "{:?}",
            Metadata::Postgres("postgres://kh:s3cret@db/kh".into())
        );
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn refuses_open_listen_without_tokens_and_bad_public_url() {
        let err = ServeArgs {
            listen: Some("0.0.0.0:8080".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("tokens"));
        let err = ServeArgs {
            public_url: Some("https://x.example/path".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("--public-url"));
        assert!(ServeArgs {
            upload_ttl: Some("soon".into()),
            ..Default::default()
        }
        .resolve()
        .is_err());
    }

    #[test]
    fn a_jwt_issuer_authenticates_and_its_settings_are_checked() {
        let cognito = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123";
        let jwt = |issuer: &str, audiences: &[&str], jwks: Option<&str>| ServeArgs {
            listen: Some("0.0.0.0:8080".into()),
            public_url: Some("https://files.example.com".into()),
            jwt_issuer: Some(issuer.into()),
            jwt_audiences: audiences.iter().map(|a| a.to_string()).collect(),
            jwt_jwks_url: jwks.map(str::to_owned),
            ..Default::default()
        };
        // An issuer is authentication enough to listen beyond loopback.
        let config = jwt(cognito, &["client-1"], None).resolve().unwrap();
        let settings = config.jwt.as_ref().unwrap();
        assert_eq!(settings.issuer, cognito);
        assert_eq!(settings.audiences, vec!["client-1".to_owned()]);
        assert_eq!(settings.refresh, Duration::from_secs(3600));
        assert!(config.authenticates());
        config.validate_serve().unwrap();

        let refused = |args: ServeArgs, setting: &str| {
            let err = args.resolve().unwrap_err().to_string();
            assert!(err.contains(setting), "{setting}: {err}");
        };
        refused(jwt(cognito, &[], None), "--jwt-audience");
        let spaced = jwt(cognito, &["a", " b "], None).resolve().unwrap();
        assert_eq!(spaced.jwt.unwrap().audiences, vec!["a", "b"]);
        // Keys over plain HTTP only from loopback.
        refused(jwt("http://idp.example", &["a"], None), "--jwt-issuer");
        refused(
            jwt(cognito, &["a"], Some("http://idp.example/jwks.json")),
            "--jwt-jwks-url",
        );
        jwt("http://127.0.0.1:9000", &["a"], None)
            .resolve()
            .unwrap();
        jwt("urn:issuer", &["a"], Some("https://idp.example/jwks.json"))
            .resolve()
            .unwrap();
        refused(
            ServeArgs {
                jwt_audiences: vec!["a".into()],
                ..Default::default()
            },
            "--jwt-issuer",
        );
    }
}
