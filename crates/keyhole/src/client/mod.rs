//! The client side of Keyhole: talks to a running server's API (`api`), moves files through the
//! signed links it mints (`upload`, `download`), keeps what an interrupted upload or download
//! needs to resume (`resume`) and draws progress bars (`progress`). The `keyhole upload`,
//! `download`, `ls` and `rm` subcommands are thin wrappers around it.
//!
//! Files are streamed from and to disk; no file is ever held in memory whole.

pub mod api;
pub mod download;
pub mod progress;
pub mod resume;
pub mod upload;

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong on the client side, each with a message that says what happened
/// and what to do about it. Signed URLs never appear in messages (they are credentials).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API server could not be reached at all.
    #[error(
        "cannot reach the Keyhole server at {server} ({reason}); is `keyhole serve` running at \
         {server}? Point --server or KEYHOLE_SERVER at it"
    )]
    Unreachable {
        /// The `--server` origin.
        server: String,
        /// Why, e.g. `connection refused`.
        reason: String,
    },
    /// The edge (the server's public URL, where signed links point) could not be reached.
    #[error(
        "cannot reach {origin}, the public URL the server signs links for ({reason}); check that \
         it is reachable from this machine (the server's --public-url)"
    )]
    EdgeUnreachable {
        /// Origin of the signed link.
        origin: String,
        /// Why.
        reason: String,
    },
    /// The server needs a token and none was given.
    #[error(
        "the server at {server} needs an API token: set --token or KEYHOLE_TOKEN (an \
         administrator creates one with `keyhole tokens generate`)"
    )]
    TokenMissing {
        /// The `--server` origin.
        server: String,
    },
    /// The server refused the token given.
    #[error(
        "the server at {server} refused the API token ({message}): check --token or KEYHOLE_TOKEN"
    )]
    TokenRefused {
        /// The `--server` origin.
        server: String,
        /// The server's explanation.
        message: String,
    },
    /// The API or the edge answered with an error status.
    #[error("{what}: {message} (HTTP {status}{})", code_suffix(code))]
    Http {
        /// What was being done, e.g. `uploading part 3 of video.mp4`.
        what: String,
        /// HTTP status.
        status: u16,
        /// The API's error code (`not_found`, ...) or the edge's XML `<Code>`; may be empty.
        code: String,
        /// The server's message.
        message: String,
        /// How long the server asked us to wait (`Retry-After`), if it did.
        retry_after: Option<Duration>,
    },
    /// The connection failed in the middle of an exchange.
    #[error("{what}: {reason}")]
    Network {
        /// What was being done.
        what: String,
        /// Why.
        reason: String,
    },
    /// The local file changed while it was being uploaded.
    #[error(
        "{name} changed while it was being uploaded (its size or SHA-256 no longer matches); run \
         the command again to upload it as it is now"
    )]
    Changed {
        /// The file's name.
        name: String,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Anything else; the message is complete.
    #[error("{0}")]
    Failed(String),
}

fn code_suffix(code: &str) -> String {
    if code.is_empty() {
        String::new()
    } else {
        format!(", {code}")
    }
}

impl ClientError {
    /// Whether trying the same request again later may succeed: connection failures, timeouts,
    /// throttling and server-side failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Http { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            ClientError::Network { .. }
            | ClientError::Unreachable { .. }
            | ClientError::EdgeUnreachable { .. } => true,
            _ => false,
        }
    }

    /// The HTTP status, for errors that have one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error code the server sent, for errors that have one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Http { code, .. } => Some(code),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ClientError {
        let path = path.into();
        move |source| ClientError::File { path, source }
    }
}

/// How failed requests are retried: exponential backoff from `base`, doubling up to `max`, with
/// some jitter so parallel parts do not retry in lockstep; `Retry-After` wins when longer.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            retries: 5,
            base: Duration::from_millis(500),
            max: Duration::from_secs(20),
        }
    }
}

impl Backoff {
    /// No retries at all.
    pub fn none() -> Self {
        Backoff {
            retries: 0,
            ..Backoff::default()
        }
    }

    /// The delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max);
        // Up to 25% of jitter, from the process's random hasher keys.
        let jitter = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(attempt);
            exp.mul_f64((h.finish() % 1000) as f64 / 4000.0)
        };
        let delay = exp + jitter;
        match retry_after {
            Some(r) if r > delay => r.min(Duration::from_secs(300)),
            _ => delay,
        }
    }

    /// Sleeps before retry `attempt` of an operation that failed with `error`; returns the error
    /// instead when it is not retryable or the retries are used up.
    pub async fn wait(&self, attempt: u32, error: ClientError) -> Result<(), ClientError> {
        if attempt >= self.retries || !error.is_retryable() {
            return Err(error);
        }
        tokio::time::sleep(self.delay(attempt, error.retry_after())).await;
        Ok(())
    }
}

/// A short reason for a failed HTTP exchange, from the innermost error (e.g. `Connection refused
/// (os error 111)`), without the URL (signed URLs are credentials).
pub fn reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut current: &dyn std::error::Error = e;
    let mut text = "the connection failed".to_owned();
    while let Some(next) = current.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
                _ => io.to_string(),
            };
        }
        text = next.to_string();
        current = next;
    }
    if e.is_body() || e.is_decode() {
        format!("the connection broke off ({text})")
    } else {
        text
    }
}

/// The `scheme://host[:port]` of a URL, for messages.
pub fn origin_of(url: &str) -> String {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            url[..i + 3 + end].to_owned()
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let b = Backoff {
            retries: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let d0 = b.delay(0, None);
        assert!(d0 >= Duration::from_millis(100) && d0 <= Duration::from_millis(125));
        let d3 = b.delay(3, None);
        assert!(d3 >= Duration::from_millis(800) && d3 <= Duration::from_millis(1000));
        let d9 = b.delay(9, None);
        assert!(d9 >= Duration::from_secs(2) && d9 <= Duration::from_millis(2500));
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert!(b.delay(40, None) <= Duration::from_millis(2500));
    }

    #[test]
    fn retryable_errors() {
        let http = |status| ClientError::Http {
            what: "x".into(),
            status,
            code: String::new(),
            message: "m".into(),
            retry_after: None,
        };
        assert!(http(503).is_retryable());
        assert!(http(429).is_retryable());
        assert!(!http(400).is_retryable());
        assert!(!http(404).is_retryable());
        assert!(!ClientError::Failed("x".into()).is_retryable());
        assert_eq!(http(404).to_string(), "x: m (HTTP 404)");
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin_of("https://cdn.example.com/uploads/x?Expires=1"),
            "https://cdn.example.com"
        );
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
