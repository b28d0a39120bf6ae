//! A client of the JSON API under `/api`. The wire types mirror the server's (`crate::api`), which
//! only serialise; these only deserialise, and ignore fields they do not know so an older client
//! keeps working against a newer server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{reason, Backoff, ClientError};

/// How long one API call may take (completing a large upload gets longer: the server joins the
/// parts while the request waits).
const API_TIMEOUT: Duration = Duration::from_secs(60);
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a transfer through a signed link may make no progress before the connection counts
/// as stalled and the transfer is continued (a download, with `Range`) or retried (an upload's
/// PUT) on a new one: a download that receives nothing (waiting for the answer, or between two
/// reads of its body), an upload whose connection takes no more of its body, or has all of it
/// and gives no answer. An upload's answer comes once its last bytes are stored, so a server
/// or bucket that takes longer than this to store them is retried needlessly.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Characters escaped in a file id used as a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// `GET /api/config`: the server's public settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerConfig {
    /// Origin every signed URL carries.
    pub public_url: String,
    /// Largest accepted upload in bytes.
    pub max_upload_bytes: u64,
    /// Uploads at least this large are multipart.
    pub multipart_threshold: u64,
    /// Preferred part size.
    pub part_size: u64,
    /// Whether the API needs a bearer token.
    #[serde(default)]
    pub auth_required: bool,
    /// Upload link lifetime in seconds.
    #[serde(default)]
    pub upload_ttl_seconds: u64,
}

/// `POST /api/files/upload` request.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUpload<'a> {
    /// The file's name.
    pub filename: &'a str,
    /// MIME type the upload will carry.
    pub content_type: &'a str,
    /// Exact size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256; the server refuses bytes that do not match.
    pub sha256: &'a str,
    /// Whether to upload in parts.
    pub multipart: bool,
}

/// One part's signed upload URL.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartLink {
    /// 1-based part number.
    pub part_number: u32,
    /// Signed URL to PUT the part to.
    pub url: String,
}

/// `POST /api/files/upload` answer: a single upload URL, or one URL per part.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadLink {
    /// Signed URL for the whole file (single-part uploads).
    #[serde(default)]
    pub upload_url: Option<String>,
    /// The new file's id.
    pub file_id: String,
    /// When the links expire (RFC 3339).
    pub expires_at: String,
    /// Multipart upload id.
    #[serde(default)]
    pub upload_id: Option<String>,
    /// Size of every part but the last.
    #[serde(default)]
    pub part_size: Option<u64>,
    /// Number of parts.
    #[serde(default)]
    pub part_count: Option<u32>,
    /// One URL per part.
    #[serde(default)]
    pub parts: Option<Vec<PartLink>>,
}

/// A stored part.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartInfo {
    /// 1-based part number.
    pub part_number: u32,
    /// Bytes stored.
    pub size: u64,
    /// The part's ETag.
    pub etag: String,
}

/// `GET /api/files/{fileId}/parts` answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartsStatus {
    /// Multipart upload id.
    pub upload_id: String,
    /// Size of every part but the last.
    pub part_size: u64,
    /// Number of parts.
    pub part_count: u32,
    /// Parts stored so far.
    pub parts: Vec<PartInfo>,
    /// Fresh URLs for the missing parts.
    pub missing: Vec<PartLink>,
    /// When those URLs expire (RFC 3339).
    pub expires_at: String,
}

/// One part named in `POST /api/files/{fileId}/complete`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletePart {
    /// 1-based part number.
    pub part_number: u32,
    /// The ETag the part's PUT returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// `POST /api/files/{fileId}/complete` answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Completed {
    /// The file's id.
    pub file_id: String,
    /// Bytes stored.
    pub size: u64,
    /// SHA-256 of the whole file, when the storage computed it.
    #[serde(default)]
    pub sha256: Option<String>,
}

/// `GET /api/files/download/{fileId}` answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadLink {
    /// Signed URL to GET the bytes from.
    pub download_url: String,
}

/// One file as listed by `GET /api/files`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    /// Id.
    pub file_id: String,
    /// Original name.
    pub filename: String,
    /// MIME type.
    #[serde(default)]
    pub content_type: String,
    /// `pending` or `uploaded`.
    pub status: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// SHA-256 hex, once uploaded.
    #[serde(default)]
    pub sha256: Option<String>,
    /// When the file will be deleted (RFC 3339); absent when kept.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A page of `GET /api/files`, files kept as the server sent them (for `ls --json`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilePage {
    /// Files, newest first.
    pub files: Vec<serde_json::Value>,
    /// Cursor of the next page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ErrorReply {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The API client: the server's origin, the optional bearer token, and one HTTP connection pool
/// that the transfers share. Its `Debug` output leaves the token out.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
    backoff: Backoff,
    /// How long a download may receive nothing before it counts as stalled.
    idle_timeout: Duration,
    /// Whether the server has answered once: until it has, a refused connection is reported at
    /// once (it is down or the address is wrong); afterwards it is retried (it may be
    /// restarting).
    reached: Arc<AtomicBool>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("backoff", &self.backoff)
            .field("idle_timeout", &self.idle_timeout)
            .field("reached", &self.reached.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client of the server at `server` (`http(s)://host[:port]`), retrying throttled and failed
    /// calls per `backoff`.
    pub fn new(server: &str, token: Option<String>, backoff: Backoff) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("keyhole/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Failed(format!("cannot set up the HTTP client: {e}")))?;
        Ok(ApiClient {
            http,
            server: server.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
            backoff,
            idle_timeout: IDLE_TIMEOUT,
            reached: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The same client with transfers counting as stalled after `idle` without progress instead
    /// of [`IDLE_TIMEOUT`].
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// How long a transfer through a signed link may make no progress (a download receive
    /// nothing, an upload send nothing or wait for its answer) before it counts as stalled.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The HTTP client, for transfers through signed links.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The server's origin.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    fn file_path(&self, file_id: &str, suffix: &str) -> String {
        self.url(&format!(
            "/api/files/{}{suffix}",
            utf8_percent_encode(file_id, SEGMENT)
        ))
    }

    /// `GET /api/config`. Retried like every API call once the server has answered (a 429 or
    /// 503 while it restarts, say); a server never reached is reported at once. Also checks that
    /// a token is given when the server needs one.
    pub async fn config(&self) -> Result<ServerConfig, ClientError> {
        let url = self.url("/api/config");
        let config: ServerConfig = self
            .call(
                "reading the server's settings",
                self.backoff,
                API_TIMEOUT,
                |h| h.get(&url),
            )
            .await
            .map_err(|e| match e {
                ClientError::Http { status, .. } if status == 404 || status == 405 => {
                    ClientError::Failed(format!(
                        "{} does not look like a Keyhole server (GET /api/config answered HTTP \
                         {status}); check --server or KEYHOLE_SERVER",
                        self.server
                    ))
                }
                other => other,
            })?;
        if config.auth_required && self.token.is_none() {
            return Err(ClientError::TokenMissing {
                server: self.server.clone(),
            });
        }
        Ok(config)
    }

    /// `POST /api/files/upload`.
    pub async fn create_upload(&self, req: &NewUpload<'_>) -> Result<UploadLink, ClientError> {
        let url = self.url("/api/files/upload");
        self.call(
            &format!("creating the upload of {}", req.filename),
            self.backoff,
            API_TIMEOUT,
            |h| h.post(&url).json(req),
        )
        .await
    }

    /// `GET /api/files/{fileId}/parts`: stored parts and fresh URLs for the missing ones (this
    /// also extends the upload's expiry).
    pub async fn parts(&self, file_id: &str) -> Result<PartsStatus, ClientError> {
        let url = self.file_path(file_id, "/parts");
        self.call(
            &format!("listing the stored parts of {file_id}"),
            self.backoff,
            API_TIMEOUT,
            |h| h.get(&url),
        )
        .await
    }

    /// `POST /api/files/{fileId}/complete`.
    pub async fn complete(
        &self,
        file_id: &str,
        parts: &[CompletePart],
    ) -> Result<Completed, ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            parts: &'a [CompletePart],
        }
        let url = self.file_path(file_id, "/complete");
        self.call(
            &format!("completing the upload of {file_id}"),
            self.backoff,
            COMPLETE_TIMEOUT,
            |h| h.post(&url).json(&Body { parts }),
        )
        .await
    }

    /// `POST /api/files/{fileId}/complete` without a body: records a single-part upload whose
    /// bytes went straight to the storage (an `s3-presigned` link, or CloudFront in front of
    /// S3). `409 already_uploaded` when an edge recorded it already.
    pub async fn complete_single(&self, file_id: &str) -> Result<Completed, ClientError> {
        let url = self.file_path(file_id, "/complete");
        self.call(
            &format!("completing the upload of {file_id}"),
            self.backoff,
            COMPLETE_TIMEOUT,
            |h| h.post(&url),
        )
        .await
    }

    /// `GET /api/files/download/{fileId}`.
    pub async fn download_link(&self, file_id: &str) -> Result<DownloadLink, ClientError> {
        let url = self.url(&format!(
            "/api/files/download/{}",
            utf8_percent_encode(file_id, SEGMENT)
        ));
        self.call(
            &format!("getting a download link for {file_id}"),
            self.backoff,
            API_TIMEOUT,
            |h| h.get(&url),
        )
        .await
        .map_err(|e| match (e.status(), e.code()) {
            (Some(404), _) => ClientError::Failed(format!(
                "no file {file_id} on {} (it may have expired or been deleted); `keyhole ls` \
                 lists your files",
                self.server
            )),
            (Some(409), Some("not_uploaded")) => ClientError::Failed(format!(
                "{file_id} has not been uploaded completely yet; finish the upload (run the same \
                 `keyhole upload` again to resume it) and download it then"
            )),
            _ => e,
        })
    }

    /// One page of `GET /api/files`.
    pub async fn list_page(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<FilePage, ClientError> {
        let url = self.url("/api/files");
        let limit = limit.to_string();
        self.call("listing files", self.backoff, API_TIMEOUT, |h| {
            let mut req = h.get(&url).query(&[("limit", limit.as_str())]);
            if let Some(c) = cursor {
                req = req.query(&[("cursor", c)]);
            }
            req
        })
        .await
    }

    /// Finds one file in the listing (there is no per-file lookup in the API).
    pub async fn find_file(&self, file_id: &str) -> Result<Option<FileInfo>, ClientError> {
        let mut cursor: Option<String> = None;
        loop {
            let page = self.list_page(1000, cursor.as_deref()).await?;
            for v in page.files {
                if v.get("fileId").and_then(|f| f.as_str()) == Some(file_id) {
                    return serde_json::from_value(v).map(Some).map_err(|e| {
                        ClientError::Failed(format!(
                            "the server listed {file_id} in an unexpected shape: {e}"
                        ))
                    });
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(None),
            }
        }
    }

    /// `DELETE /api/files/{fileId}`, retried per the backoff. A 404 to a retry counts as done
    /// only when an earlier attempt may have deleted the file: it timed out or its connection
    /// broke after the request went out, or it was answered 500, 502 or 504. After answers that
    /// say the request was not handled (429, 503, ...) a 404 means the file was never there.
    pub async fn delete(&self, file_id: &str) -> Result<(), ClientError> {
        let url = self.file_path(file_id, "");
        let what = format!("deleting {file_id}");
        let mut attempt = 0;
        let mut maybe_done = false;
        loop {
            let result: Result<serde_json::Value, ClientError> =
                self.once(&what, API_TIMEOUT, |h| h.delete(&url)).await;
            let error = match result {
                Ok(_) => return Ok(()),
                Err(e) if e.status() == Some(404) && maybe_done => return Ok(()),
                Err(e) if e.status() == Some(404) => {
                    return Err(ClientError::Failed(format!(
                        "no file {file_id} on {} (already deleted or expired?); `keyhole ls` \
                         lists your files",
                        self.server
                    )))
                }
                Err(e) => e,
            };
            if matches!(error, ClientError::Unreachable { .. })
                && !self.reached.load(Ordering::Relaxed)
            {
                return Err(error);
            }
            maybe_done |= matches!(error, ClientError::Network { .. })
                || matches!(error.status(), Some(500 | 502 | 504));
            self.backoff.wait(attempt, error).await?;
            attempt += 1;
        }
    }

    /// Sends the request `build` makes (with the token), retrying per `backoff`, and reads the
    /// JSON answer or turns the error reply into a [`ClientError`]. A server that has never
    /// answered is reported at once: it is down or the address is wrong.
    async fn call<T: DeserializeOwned>(
        &self,
        what: &str,
        backoff: Backoff,
        timeout: Duration,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<T, ClientError> {
        let mut attempt = 0;
        loop {
            match self.once(what, timeout, &build).await {
                Err(e @ ClientError::Unreachable { .. })
                    if !self.reached.load(Ordering::Relaxed) =>
                {
                    return Err(e)
                }
                Err(e) => backoff.wait(attempt, e).await?,
                ok => return ok,
            }
            attempt += 1;
        }
    }

    /// One attempt of [`ApiClient::call`].
    async fn once<T: DeserializeOwned>(
        &self,
        what: &str,
        timeout: Duration,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<T, ClientError> {
        let mut req = build(&self.http).timeout(timeout);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        match req.send().await {
            Ok(resp) => {
                self.reached.store(true, Ordering::Relaxed);
                self.read(what, resp).await
            }
            Err(e) => Err(self.transport(what, &e)),
        }
    }

    fn transport(&self, what: &str, e: &reqwest::Error) -> ClientError {
        if e.is_connect() {
            ClientError::Unreachable {
                server: self.server.clone(),
                reason: reason(e),
            }
        } else {
            ClientError::Network {
                what: what.to_owned(),
                reason: reason(e),
            }
        }
    }

    async fn read<T: DeserializeOwned>(
        &self,
        what: &str,
        resp: reqwest::Response,
    ) -> Result<T, ClientError> {
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| self.transport(what, &e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::Failed(format!(
                    "{what}: the server at {} answered with unexpected JSON ({e}); is it a \
                     Keyhole server of a matching version?",
                    self.server
                ))
            });
        }
        let (code, message) = match serde_json::from_slice::<ErrorReply>(&bytes) {
            Ok(r) => (r.error.code, r.error.message),
            Err(_) => (String::new(), summary(status, &bytes)),
        };
        if status == StatusCode::UNAUTHORIZED {
            return Err(match self.token {
                None => ClientError::TokenMissing {
                    server: self.server.clone(),
                },
                Some(_) => ClientError::TokenRefused {
                    server: self.server.clone(),
                    message,
                },
            });
        }
        Err(ClientError::Http {
            what: what.to_owned(),
            status: status.as_u16(),
            code,
            message,
            retry_after,
        })
    }
}

/// `Retry-After` in seconds (the form Keyhole and S3 send).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A one-line description of a non-JSON error body.
fn summary(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no explanation given")
            .to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bearer token is a credential: debug output (logs, panics) never shows it.
    #[test]
    fn debug_output_leaves_the_token_out() {
        let client = ApiClient::new(
            "http://127.0.0.1:9",
            Some("kh_s3cr3t-t0ken".into()),
            Backoff::default(),
        )
        .unwrap();
        let shown = format!("{client:?} {client:#?}");
        assert!(!shown.contains("kh_s3cr3t-t0ken"), "{shown}");
        assert!(
            shown.contains("http://127.0.0.1:9") && shown.contains("redacted"),
            "{shown}"
        );
    }

    /// A DELETE endpoint answering the statuses of `script` in turn (`(status, Retry-After)`);
    /// returns its origin and how many DELETEs it got.
    async fn scripted_delete(
        script: Vec<(u16, Option<&'static str>)>,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::AtomicUsize;
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let app = axum::Router::new().route(
            "/api/files/{id}",
            axum::routing::delete(move || {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                let (status, retry_after) = script[n.min(script.len() - 1)];
                async move {
                    let status = axum::http::StatusCode::from_u16(status).unwrap();
                    let code = if status == axum::http::StatusCode::NOT_FOUND {
                        "not_found"
                    } else {
                        "failed"
                    };
                    let body = serde_json::json!({"success": false, "error": {"code": code, "message": code}});
                    let mut headers = axum::http::HeaderMap::new();
                    if let Some(r) = retry_after {
                        headers.insert(RETRY_AFTER, r.parse().unwrap());
                    }
                    (status, headers, axum::Json(body))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), calls)
    }

    fn quick() -> Backoff {
        Backoff {
            retries: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
        }
    }

    /// A DELETE whose answer was lost (a 502 or 504 from a proxy, a 500 half-way) may have
    /// deleted the file: a 404 to the retry means done. A 404 to a first attempt is an error.
    #[tokio::test]
    async fn a_404_after_an_ambiguous_failure_means_done() {
        for first in [500, 502, 504] {
            let (server, calls) = scripted_delete(vec![(first, None), (404, None)]).await;
            let client = ApiClient::new(&server, None, quick()).unwrap();
            client
                .delete("abc")
                .await
                .unwrap_or_else(|e| panic!("after {first}: {e}"));
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        }
        // An ambiguous attempt, then a refused one, then 404: the first may have done it.
        let (server, _) = scripted_delete(vec![(502, None), (429, Some("0")), (404, None)]).await;
        let client = ApiClient::new(&server, None, quick()).unwrap();
        client.delete("abc").await.expect("deleted by the first");

        // The connection breaks once the request is in: then a 404.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            for n in 0.. {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                if n > 0 {
                    let body = r#"{"success":false,"error":{"code":"not_found","message":"no"}}"#;
                    let answer = format!(
                        "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                }
            }
        });
        let client = ApiClient::new(&format!("http://{addr}"), None, quick()).unwrap();
        client
            .delete("abc")
            .await
            .expect("the broken attempt may have done it");

        let (server, _) = scripted_delete(vec![(404, None)]).await;
        let client = ApiClient::new(&server, None, quick()).unwrap();
        let e = client.delete("abc").await.unwrap_err();
        assert!(e.to_string().contains("already deleted or expired"), "{e}");
    }

    /// A 429 or 503 says the request was not handled: a 404 to the retry means the file was never
    /// there, and `keyhole rm` must not report it deleted.
    #[tokio::test]
    async fn a_404_after_a_refusal_is_not_found() {
        for (status, retry_after) in [(429, Some("0")), (503, Some("0")), (503, None), (408, None)]
        {
            let (server, calls) = scripted_delete(vec![(status, retry_after), (404, None)]).await;
            let client = ApiClient::new(&server, None, quick()).unwrap();
            let e = client.delete("abc").await.unwrap_err();
            assert!(
                e.to_string().contains("already deleted or expired"),
                "after {status}: {e}"
            );
            assert_eq!(calls.load(Ordering::SeqCst), 2);
        }
    }
}
