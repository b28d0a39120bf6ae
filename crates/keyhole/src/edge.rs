//! The edge: checks CloudFront signatures on `PUT /uploads/{fileId}` and `GET|HEAD /files/{fileId}`
//! and moves the bytes. Refusals follow CloudFront (403 with its XML body); the precise reason is
//! logged and counted, never sent.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use keyhole_sign::{Rejection, Request as SignedRequest};

use crate::ids;
use crate::state::{now_millis, now_secs, SharedState};
use crate::store::objects::ObjectError;
use crate::store::{Completion, FileRecord, Status};
use crate::telemetry::{Metrics, RejectionLabels};

/// An S3-style XML error (what an S3 origin behind CloudFront would answer).
fn xml_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"#
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// Keeps a gauge of transfers in flight for as long as it lives.
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn new(m: &'a Metrics) -> Self {
        m.transfers_in_flight.inc();
        InFlight(m)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.transfers_in_flight.dec();
    }
}

/// CloudFront's 403 answer to a refused signed request.
fn forbidden(rejection: Rejection) -> Response {
    let mut r = (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/xml")],
        rejection.code.to_xml(),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Verifies the request's signature (URL parameters or cookies) against the raw request target,
/// counting and logging the precise reason of a refusal.
fn check_signature(state: &SharedState, req: &Request, peer: SocketAddr) -> Result<(), Rejection> {
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let cookies: Vec<&str> = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let cookie_header = (!cookies.is_empty()).then(|| cookies.join("; "));
    let request = SignedRequest {
        target,
        client_ip: Some(peer.ip()),
        now: now_secs().max(0) as u64,
        cookies: cookie_header.as_deref(),
    };
    match state.verifier.verify(&request) {
        Ok(_) => Ok(()),
        Err(rejection) => {
            state
                .metrics
                .rejections
                .get_or_create(&RejectionLabels {
                    code: rejection.code.as_str().to_owned(),
                    reason: rejection.reason.as_str().to_owned(),
                })
                .inc();
            tracing::warn!(code = %rejection.code, reason = %rejection.reason, "signed request refused");
            Err(rejection)
        }
    }
}

/// The file id from `/{prefix}/{fileId}`, validated.
fn file_id_of<'a>(req: &'a Request, prefix: &str) -> Option<&'a str> {
    let id = req.uri().path().strip_prefix(prefix)?;
    ids::is_valid_file_id(id).then_some(id)
}

fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `PUT /uploads/{fileId}`: streams the body into storage, enforcing size, content type and
/// checksum, and commits it atomically and write-once.
pub async fn upload(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if let Err(rejection) = check_signature(&state, &req, peer) {
        return forbidden(rejection);
    }
    let Some(file_id) = file_id_of(&req, "/uploads/").map(str::to_owned) else {
        return xml_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "malformed file id",
        );
    };
    let now = now_secs();
    let record = match state.meta.get(&file_id).await {
        Ok(Some(r)) if !r.is_expired(now) => r,
        Ok(_) => {
            return xml_error(
                StatusCode::NOT_FOUND,
                "NoSuchUpload",
                "no pending upload for this id",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "metadata read failed");
            return xml_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "try again",
            );
        }
    };
    if record.status == Status::Uploaded {
        Metrics::count(&state.metrics.uploads, "conflict");
        return xml_error(
            StatusCode::CONFLICT,
            "ObjectAlreadyExists",
            "this file has already been uploaded",
        );
    }
    let limit = record
        .declared_size
        .unwrap_or(state.config.max_upload_bytes)
        .min(state.config.max_upload_bytes);
    if let Some(len) = content_length(req.headers()) {
        if len > limit {
            Metrics::count(&state.metrics.uploads, "too_large");
            return xml_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "EntityTooLarge",
                "the body is larger than allowed",
            );
        }
        if record.declared_size.is_some_and(|d| d != len) {
            Metrics::count(&state.metrics.uploads, "size_mismatch");
            return xml_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "Content-Length differs from the declared size",
            );
        }
    }
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        if essence(ct) != essence(&record.content_type) {
            return xml_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "Content-Type differs from the content type declared when the link was created",
            );
        }
    }

    let _in_flight = InFlight::new(&state.metrics);
    let mut writer = match state.objects.begin_write(&record.object_key).await {
        Ok(w) => w,
        Err(ObjectError::Exists) => {
            Metrics::count(&state.metrics.uploads, "conflict");
            return xml_error(
                StatusCode::CONFLICT,
                "ObjectAlreadyExists",
                "this file has already been uploaded",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start write");
            return xml_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "storage failure",
            );
        }
    };
    let mut hasher = openssl::sha::Sha256::new();
    let mut received: u64 = 0;
    let mut body = req.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                // The client went away or sent a broken body: nothing is kept (the writer's drop
                // removes the staged bytes).
                Metrics::count(&state.metrics.uploads, "aborted");
                tracing::info!(error = %e, received, "upload body interrupted");
                return xml_error(
                    StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    "the request body was interrupted",
                );
            }
        };
        received += chunk.len() as u64;
        state.metrics.bytes_received.inc_by(chunk.len() as u64);
        if received > limit {
            Metrics::count(&state.metrics.uploads, "too_large");
            return xml_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "EntityTooLarge",
                "the body is larger than allowed",
            );
        }
        hasher.update(&chunk);
        if let Err(e) = writer.write(chunk).await {
            tracing::error!(error = %e, "write failed");
            return xml_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "storage failure",
            );
        }
    }
    if record.declared_size.is_some_and(|d| d != received) {
        Metrics::count(&state.metrics.uploads, "size_mismatch");
        return xml_error(
            StatusCode::BAD_REQUEST,
            "IncompleteBody",
            "the body is shorter than the declared size",
        );
    }
    let sha256 = hex::encode(hasher.finish());
    if let Some(expected) = &record.declared_sha256 {
        if !openssl::memcmp::eq(expected.as_bytes(), sha256.as_bytes()) {
            Metrics::count(&state.metrics.uploads, "checksum_mismatch");
            return xml_error(
                StatusCode::BAD_REQUEST,
                "BadDigest",
                "the SHA-256 of the body differs from the declared one",
            );
        }
    }
    match writer.commit().await {
        Ok(()) => {}
        Err(ObjectError::Exists) => {
            Metrics::count(&state.metrics.uploads, "conflict");
            return xml_error(
                StatusCode::CONFLICT,
                "ObjectAlreadyExists",
                "this file has already been uploaded",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "commit failed");
            return xml_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "storage failure",
            );
        }
    }
    let etag = format!("\"{sha256}\"");
    let retention = state.config.retention.as_secs() as i64;
    let done = Completion {
        size: received,
        sha256,
        etag: etag.clone(),
        uploaded_at: now_millis(),
        ttl: (retention > 0).then(|| now_secs() + retention),
    };
    match state.meta.mark_uploaded(&file_id, &done, now_secs()).await {
        Ok(true) => {}
        Ok(false) => {
            // Deleted or expired while the bytes were arriving: do not leave an orphan.
            let _ = state.objects.delete(&record.object_key).await;
            Metrics::count(&state.metrics.uploads, "expired");
            return xml_error(
                StatusCode::NOT_FOUND,
                "NoSuchUpload",
                "the upload expired or was deleted while in progress",
            );
        }
        Err(e) => {
            let _ = state.objects.delete(&record.object_key).await;
            tracing::error!(error = %e, "metadata update failed; object removed");
            return xml_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "try again",
            );
        }
    }
    Metrics::count(&state.metrics.uploads, "committed");
    tracing::info!(file_id = %file_id, size = received, "upload committed");
    let mut r = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The outcome of a `Range` header against an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Serve the whole object (no header, another unit, or several ranges).
    Full,
    /// Serve `start..=end`.
    Partial(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Parses one `bytes=` range (RFC 9110 section 14.1.2).
pub fn parse_range(value: &str, size: u64) -> RangeOutcome {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeOutcome::Full;
    };
    if spec.contains(',') {
        return RangeOutcome::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeOutcome::Unsatisfiable;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match num(suffix) {
            Some(n) if n > 0 && size > 0 => RangeOutcome::Partial(size.saturating_sub(n), size - 1),
            _ => RangeOutcome::Unsatisfiable,
        },
        (start, "") => match num(start) {
            Some(s) if s < size => RangeOutcome::Partial(s, size - 1),
            _ => RangeOutcome::Unsatisfiable,
        },
        (start, end) => match (num(start), num(end)) {
            (Some(s), Some(e)) if s <= e && s < size => RangeOutcome::Partial(s, e.min(size - 1)),
            _ => RangeOutcome::Unsatisfiable,
        },
    }
}

/// RFC 6266 `Content-Disposition` with an ASCII fallback and an RFC 8187 UTF-8 name.
pub fn content_disposition(filename: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const ATTR: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(filename, ATTR)
    )
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/") == etag)
}

/// `GET|HEAD /files/{fileId}`: streams an uploaded file with Range, ETag, Last-Modified,
/// Content-Type and Content-Disposition.
pub async fn download(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if let Err(rejection) = check_signature(&state, &req, peer) {
        return forbidden(rejection);
    }
    let Some(file_id) = file_id_of(&req, "/files/").map(str::to_owned) else {
        return xml_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "malformed file id",
        );
    };
    let record: FileRecord = match state.meta.get(&file_id).await {
        Ok(Some(r)) if r.status == Status::Uploaded && !r.is_expired(now_secs()) => r,
        Ok(_) => {
            return xml_error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "the file does not exist",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "metadata read failed");
            return xml_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "try again",
            );
        }
    };
    let meta = match state.objects.head(&record.object_key).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, file_id = %file_id, "uploaded record without a readable object");
            return xml_error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "the file does not exist",
            );
        }
    };
    let size = meta.size;
    let etag = record.etag.clone().unwrap_or_default();
    let last_modified = record
        .uploaded_at
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .unwrap_or(meta.last_modified);
    let headers = req.headers();

    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(
            header::LAST_MODIFIED,
            httpdate::fmt_http_date(last_modified),
        )
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "private, max-age=0")
        .header(header::CONTENT_TYPE, &record.content_type)
        .header(
            header::CONTENT_DISPOSITION,
            content_disposition(&record.original_filename),
        );
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if etag_matches(inm, &etag) {
            return builder
                .status(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::NOT_MODIFIED.into_response());
        }
    }
    let range_applies = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let outcome = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) if range_applies => parse_range(r, size),
        _ => RangeOutcome::Full,
    };
    let (status, offset, len) = match outcome {
        RangeOutcome::Full => (StatusCode::OK, 0, size),
        RangeOutcome::Partial(s, e) => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {s}-{e}/{size}"));
            (StatusCode::PARTIAL_CONTENT, s, e - s + 1)
        }
        RangeOutcome::Unsatisfiable => {
            let mut r = xml_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "the requested range is not satisfiable",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    builder = builder
        .status(status)
        .header(header::CONTENT_LENGTH, len.to_string());
    if req.method() == Method::HEAD {
        return builder
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let stream = match state.objects.read(&record.object_key, offset, len).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "object read failed");
            return xml_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "storage failure",
            );
        }
    };
    let metrics_state = state.clone();
    let counted = stream.map(move |chunk| {
        if let Ok(c) = &chunk {
            metrics_state.metrics.bytes_sent.inc_by(c.len() as u64);
        }
        chunk
    });
    builder
        .body(Body::from_stream(counted))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeOutcome::Partial(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeOutcome::Partial(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeOutcome::Partial(90, 99));
        assert_eq!(
            parse_range("bytes=-1000", 100),
            RangeOutcome::Partial(0, 99)
        );
        assert_eq!(
            parse_range("bytes=50-5000", 100),
            RangeOutcome::Partial(50, 99)
        );
        assert_eq!(parse_range("bytes=100-", 100), RangeOutcome::Unsatisfiable);
        assert_eq!(parse_range("bytes=9-1", 100), RangeOutcome::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeOutcome::Unsatisfiable);
        assert_eq!(parse_range("bytes=abc", 100), RangeOutcome::Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999-", 100),
            RangeOutcome::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeOutcome::Full);
        assert_eq!(parse_range("items=0-1", 100), RangeOutcome::Full);
        assert_eq!(parse_range("bytes=0-", 0), RangeOutcome::Unsatisfiable);
    }

    #[test]
    fn dispositions() {
        assert_eq!(
            content_disposition("a b.pdf"),
            "attachment; filename=\"a b.pdf\"; filename*=UTF-8''a%20b.pdf"
        );
        assert_eq!(
            content_disposition("résumé \"x\".pdf"),
            "attachment; filename=\"r_sum_ _x_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22x%22.pdf"
        );
    }
}
