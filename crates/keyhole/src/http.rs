//! HTTP plumbing shared by the API and the edge: the one place errors become responses, the JSON
//! body extractor, and the request middleware (request ids, bounds, logs, metrics).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::Instrument;

use crate::state::SharedState;
use crate::telemetry::{RequestLabels, RouteLabels};

/// Largest JSON request body accepted by the API.
pub const MAX_JSON_BYTES: usize = 64 * 1024;
/// Largest body of `/complete`, which may list all 10,000 parts with their ETags (under 100
/// bytes each as clients send them; twice that for room).
pub const MAX_COMPLETE_JSON_BYTES: usize = 2 * 1024 * 1024;
/// Largest total size of request headers.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most request headers accepted.
pub const MAX_HEADER_COUNT: usize = 100;
/// Longest request target.
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// Most bytes of a refused request's body read and discarded so the client can read the refusal
/// (see [`observe`]).
pub const DISCARD_BYTES: u64 = 16 * 1024 * 1024;
/// Longest time spent discarding a refused request's body.
pub const DISCARD_TIME: Duration = Duration::from_secs(5);

/// The request id header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// An API error: status, a stable machine-readable code and a message a person can act on.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `not_found`.
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
    /// Seconds to wait, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 `unavailable` with `Retry-After: 1`: the metadata store failed (an outage, throttling,
    /// a fail-over), which calling again gets past, as the edge answers 503 for it too. The
    /// detail is logged, not sent.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "metadata store failure");
        ApiError {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the metadata store is unavailable; call again",
            )
        }
    }

    /// 500 `internal`; the detail is logged, not sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log for this request id",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "success": false,
            "error": {"code": self.code, "message": self.message},
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(format!("invalid path: {}", rejection.body_text()))
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::BadCursor => {
                ApiError::bad_request("cursor is not one this server issued; start without it")
            }
            crate::store::StoreError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the record already exists",
            ),
            crate::store::StoreError::Backend(_) => ApiError::unavailable(e),
            crate::store::StoreError::Broken(_) => ApiError::internal(e),
        }
    }
}

impl From<crate::links::LinkError> for ApiError {
    fn from(e: crate::links::LinkError) -> Self {
        use crate::links::LinkError;
        use crate::signq::Refused;
        let (code, message) = match e {
            LinkError::Refused(Refused::Busy) => (
                "busy",
                "the server has more links to sign than it can in time; call again",
            ),
            LinkError::Refused(Refused::Stopped) => {
                ("shutting_down", "the server is shutting down; call again")
            }
            other => return ApiError::internal(other),
        };
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }
}

impl From<crate::direct::DirectError> for ApiError {
    fn from(e: crate::direct::DirectError) -> Self {
        use crate::direct::DirectError as E;
        let message = e.to_string();
        match e {
            E::NotArrived => ApiError::new(StatusCode::CONFLICT, "not_arrived", message),
            E::SizeMismatch { .. } | E::Checksum | E::Removed { .. } => {
                ApiError::bad_request(message)
            }
            E::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            E::AlreadyUploaded => ApiError::new(StatusCode::CONFLICT, "already_uploaded", message),
            E::Gone | E::NoSuchUpload => ApiError::not_found(message),
            E::Meta(e @ crate::store::StoreError::Broken(_)) => ApiError::internal(e),
            // The bytes are stored, and calling again finishes once the store answers.
            E::Meta(e) => ApiError::unavailable(e),
            E::Storage(e) => ApiError::internal(e),
        }
    }
}

/// A JSON request body of at most `LIMIT` bytes, whose errors are JSON API errors.
pub struct JsonBody<T, const LIMIT: usize = MAX_JSON_BYTES>(pub T);

/// A JSON request body that may be empty (then `None`), with the same bounds as [`JsonBody`].
pub struct OptionalJsonBody<T, const LIMIT: usize = MAX_JSON_BYTES>(pub Option<T>);

/// Reads a JSON body of at most `limit` bytes: 415 for another content type, or none with a
/// body, 413 past `limit`, 400 for a broken or invalid body. Returns `None` for an empty body.
///
/// A body needs `Content-Type: application/json`: a page on another site can send a form or a
/// `text/plain` body (a "simple" request, with no CORS preflight) or one with no type at all, but
/// not a JSON one, so requiring it keeps such pages from creating records on a server without
/// tokens.
async fn read_json<T: DeserializeOwned>(req: Request, limit: usize) -> Result<Option<T>, ApiError> {
    let unsupported = || {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        )
    };
    let json = match req.headers().get(header::CONTENT_TYPE) {
        Some(ct) => {
            let ct = ct.to_str().unwrap_or("");
            let essence = ct.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case("application/json") {
                return Err(unsupported());
            }
            true
        }
        None => false,
    };
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("this JSON body is limited to {limit} bytes"),
                    );
                }
                source = err.source();
            }
            ApiError::bad_request("the request body could not be read completely")
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if !json {
        return Err(unsupported());
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

impl<S, T, const LIMIT: usize> FromRequest<S> for JsonBody<T, LIMIT>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        read_json(req, LIMIT)
            .await?
            .map(JsonBody)
            .ok_or_else(|| ApiError::bad_request("a JSON body is required"))
    }
}

impl<S, T, const LIMIT: usize> FromRequest<S> for OptionalJsonBody<T, LIMIT>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        read_json(req, LIMIT).await.map(OptionalJsonBody)
    }
}

fn valid_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The length of the request target as received, without rendering it.
fn uri_len(uri: &axum::http::Uri) -> usize {
    let path_and_query = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            scheme.len() + 3 + authority.as_str().len() + path_and_query
        }
        (None, Some(authority)) => authority.as_str().len() + path_and_query,
        _ => path_and_query,
    }
}

/// A new request id: 16 random hex digits. A request id correlates log lines and is not a
/// secret, so if the system's random generator fails the request still gets an id that is
/// unique in this process (`x` and a counter), never a constant one.
fn new_request_id() -> String {
    match crate::ids::random_bytes::<8>() {
        Ok(b) => hex::encode(b),
        Err(_) => {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("x{n:015x}")
        }
    }
}

/// A request body that, when dropped before its end, hands what is left back to [`observe`].
struct Tracked {
    inner: Option<Body>,
    polled: bool,
    ended: bool,
    back: Option<tokio::sync::oneshot::Sender<Unread>>,
}

/// The unread rest of a request body, and whether the handler asked for any of it.
struct Unread {
    body: Body,
    polled: bool,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        this.polled = true;
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || inner.is_end_stream() {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(HttpBody::size_hint)
            .unwrap_or_default()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if let (Some(body), Some(back)) = (self.inner.take(), self.back.take()) {
            let _ = back.send(Unread {
                body,
                polled: self.polled,
            });
        }
    }
}

/// Reads and drops the rest of a refused request's body, up to [`DISCARD_BYTES`] within
/// [`DISCARD_TIME`]; true when it reached the end.
async fn discard(mut body: Body) -> bool {
    let mut left = DISCARD_BYTES;
    let drained = tokio::time::timeout(DISCARD_TIME, async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            if n > left {
                return false;
            }
            left -= n;
        }
        true
    })
    .await;
    drained.unwrap_or(false)
}

/// Middleware for every request: bounds the target and headers (414/431), assigns a request id
/// (kept from `x-request-id` when sane) returned on the response, logs one line per request
/// without the query string (it carries signatures), and records metrics by route template.
///
/// A request answered before its body was read to the end (a refused upload, say) cannot leave
/// the rest unread: closing a connection with unread data resets it, and a client still sending
/// then sees a broken pipe instead of the answer. As nginx does, the rest is read and dropped
/// first, up to [`DISCARD_BYTES`] within [`DISCARD_TIME`], and the connection stays usable. A
/// longer body, or one the client was waiting to send until told to (`Expect: 100-continue`),
/// is not read: the answer says `Connection: close` instead.
pub async fn observe(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (req, unread) = if req.body().is_end_stream() {
        (req, None)
    } else {
        let (back, unread) = tokio::sync::oneshot::channel();
        let req = req.map(|inner| {
            Body::new(Tracked {
                inner: Some(inner),
                polled: false,
                ended: false,
                back: Some(back),
            })
        });
        (req, Some(unread))
    };
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());

    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let early = if uri_len(req.uri()) > MAX_URI_BYTES {
        Some(
            ApiError::new(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                "the request target is too long",
            )
            .into_response(),
        )
    } else if header_bytes > MAX_HEADER_BYTES || req.headers().len() > MAX_HEADER_COUNT {
        Some(
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "request headers are too large",
            )
            .into_response(),
        )
    } else {
        None
    };

    // Bounded in the log as in /metrics: a 16 KiB path or a long invented method would make
    // every line about the request that long.
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %clip(method.as_str(), MAX_LOGGED_METHOD),
        path = %clip(&path, MAX_LOGGED_PATH),
        path_len = path.len(),
    );
    let mut response = match early {
        Some(r) => {
            // Unread: its body comes back through `unread`, as a handler's does.
            drop(req);
            r
        }
        None => next.run(req).instrument(span.clone()).await,
    };
    let keep_alive = match unread.map(|mut rx| rx.try_recv()) {
        Some(Ok(Unread { body, polled })) => (polled || !expects_continue) && discard(body).await,
        _ => true,
    };
    if !keep_alive {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = response.status();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), route = %route, elapsed_ms = elapsed.as_secs_f64() * 1e3, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), route = %route, elapsed_ms = elapsed.as_secs_f64() * 1e3, "request");
        }
    });
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method_label(&method).to_owned(),
            route: route.clone(),
            status: status.as_u16(),
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels { route })
        .observe(elapsed.as_secs_f64());
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID.clone(), v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Most bytes of a request's path written to the log (a file id path is far shorter).
pub const MAX_LOGGED_PATH: usize = 512;
/// Most bytes of a request's method written to the log.
pub const MAX_LOGGED_METHOD: usize = 16;

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The `method` label of a request: the methods the server answers, and `other` for the rest, so
/// a client inventing methods cannot add series to `/metrics` without bound.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// 404 for unknown routes, as a JSON API error.
pub async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// 405 for known routes with the wrong method, with the methods the route takes in `Allow`.
/// (A CORS preflight `OPTIONS` is answered before routing, when CORS is configured; it is not a
/// method of the file itself.)
pub async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    let allow = if uri.path().starts_with("/uploads/") {
        "PUT"
    } else if uri.path().starts_with("/files/") {
        "GET, HEAD"
    } else {
        ""
    };
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
    .into_response();
    if !allow.is_empty() {
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    r
}

/// An empty body.
pub fn empty() -> Body {
    Body::empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON body of `response`.
    async fn json_of(response: Response) -> serde_json::Value {
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn a_metadata_failure_in_a_completion_says_call_again() {
        let e = ApiError::from(crate::direct::DirectError::Meta(
            crate::store::StoreError::Backend("connection refused".into()),
        ));
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = json_of(response).await;
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(
            !body.to_string().contains("refused"),
            "the detail is logged, not sent"
        );
    }

    #[tokio::test]
    async fn a_broken_metadata_record_is_a_500_not_a_retry() {
        let response = ApiError::from(crate::store::StoreError::Broken("malformed item".into()))
            .into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(json_of(response).await["error"]["code"], "internal");
        let response = ApiError::from(crate::direct::DirectError::Meta(
            crate::store::StoreError::Broken("malformed item".into()),
        ))
        .into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn a_full_or_stopped_signing_queue_says_call_again() {
        use crate::links::LinkError;
        use crate::signq::Refused;
        for (refused, code) in [(Refused::Busy, "busy"), (Refused::Stopped, "shutting_down")] {
            let response = ApiError::from(LinkError::Refused(refused)).into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
            assert_eq!(json_of(response).await["error"]["code"], code);
        }
        let other = ApiError::from(LinkError::NotSupported).into_response();
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let panicked = ApiError::from(LinkError::Refused(Refused::Panicked)).into_response();
        assert_eq!(panicked.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn clipping_keeps_whole_characters() {
        assert_eq!(clip("/files/abc", 512), "/files/abc");
        assert_eq!(clip("abcdef", 3), "abc");
        // 'é' is two bytes: cutting inside it keeps the character before.
        assert_eq!(clip("aé", 2), "a");
        assert_eq!(clip(&"x".repeat(20_000), MAX_LOGGED_PATH).len(), 512);
        assert_eq!(method_label(&Method::from_bytes(b"QX1").unwrap()), "other");
        assert_eq!(method_label(&Method::PUT), "PUT");
    }

    #[test]
    fn uri_len_is_the_rendered_length() {
        for target in [
            "/",
            "/api/files?limit=5&cursor=abc",
            "/files/k3v_doc.pdf?Expires=1&Signature=a~b_&Key-Pair-Id=K",
            "http://cdn.example.com/files/a",
            "https://cdn.example.com:8443/uploads/a?x=1",
            "cdn.example.com:443",
            "*",
        ] {
            let uri: axum::http::Uri = target.parse().unwrap();
            assert_eq!(uri_len(&uri), uri.to_string().len(), "{target}");
        }
    }
}
