//! The edge: checks CloudFront signatures on `PUT /uploads/{fileId}` and `GET|HEAD /files/{fileId}`
//! and moves the bytes. Refusals follow CloudFront (403 with its XML body); the precise reason is
//! logged and counted, never sent.
// Helpers here return the finished HTTP refusal as their error; boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use keyhole_sign::{Rejection, Request as SignedRequest};
use tracing::Instrument;

use crate::ids;
use crate::state::{now_millis, now_secs, secs_after, SharedState};
use crate::store::objects::{ObjectError, StoredPart};
use crate::store::{Completion, FileRecord, PartRecord, Status};
use crate::telemetry::{Metrics, RejectionLabels};

/// An S3-style XML error (what an S3 origin behind CloudFront would answer).
fn xml_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"#
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// Keeps a gauge of transfers in flight for as long as it lives.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn new(m: &Metrics) -> Self {
        m.transfers_in_flight.inc();
        InFlight(m.transfers_in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
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
    match state.keys.current().verifier.verify(&request) {
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

/// The edge's gate for every transfer: CloudFront's signature check first (403 with its XML),
/// then the file id from `{prefix}{fileId}`, validated (400).
fn authorize(
    state: &SharedState,
    req: &Request,
    peer: SocketAddr,
    prefix: &str,
) -> Result<String, Response> {
    check_signature(state, req, peer).map_err(forbidden)?;
    file_id_of(req, prefix).map(str::to_owned).ok_or_else(|| {
        xml_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "malformed file id",
        )
    })
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

/// Answers an upload that cannot go on: counts the outcome and returns S3's XML error.
fn refuse(
    state: &SharedState,
    outcome: &str,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response {
    Metrics::count(&state.metrics.uploads, outcome);
    tracing::info!(outcome, code, "upload refused: {message}");
    xml_error(status, code, message)
}

fn no_such_key() -> Response {
    xml_error(
        StatusCode::NOT_FOUND,
        "NoSuchKey",
        "the file does not exist",
    )
}

/// `response` with `Retry-After: secs`.
fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// 503 `SlowDown` with `Retry-After`, as S3 answers when it is busy: the memory uploads may hold
/// on their way to S3 storage is in use (`upload_buffer_bytes`).
fn slow_down(state: &SharedState) -> Response {
    let refused = refuse(
        state,
        "busy",
        StatusCode::SERVICE_UNAVAILABLE,
        "SlowDown",
        "Please reduce your request rate.",
    );
    with_retry_after(refused, 1)
}

/// 503 with `Retry-After`: another PUT on the same link is being received
/// ([`crate::state::Receiving`]). A client retrying after a connection it believes lost (its
/// network changed, say) gets this until the server notices that connection is gone, at the
/// latest after `client_timeout`; then it goes through (or gets 409 if the first one completed).
/// `Retry-After` is a quarter of `client_timeout`, so a client's few retries span it.
fn receiving_already(state: &SharedState) -> Response {
    let refused = refuse(
        state,
        "concurrent",
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "another upload through this link is in progress; try again when it has ended",
    );
    with_retry_after(refused, (state.config.client_timeout.as_secs() / 4).max(1))
}

fn storage_failure(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "object storage failure");
    xml_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "storage failure",
    )
}

/// What a body streamed into a writer amounted to.
struct Received {
    size: u64,
    sha256: String,
}

/// Keeps a pending record from expiring while a PUT's body arrives. The record outlives its
/// link by `pending_grace` only, and a PUT that began with a valid link may take longer than that
/// to arrive (a large file on a slow line, or a part started just before its link expired);
/// without this the record would expire under it and the bytes be thrown away at the end. While
/// bytes keep coming (a stall ends the PUT after `client_timeout`), the record's TTL is moved on
/// to `horizon` from now whenever less than half of that is left: one metadata write per half
/// horizon of transfer, none for a PUT that ends well within its record's life.
struct KeepPending {
    file_id: String,
    /// How far ahead of now a renewal moves the TTL.
    horizon: Duration,
    /// When to renew next; `None` for a record without a TTL (nothing to keep alive).
    renew_at: Option<tokio::time::Instant>,
}

impl KeepPending {
    fn new(state: &SharedState, record: &FileRecord) -> Self {
        // At least twice the longest pause a body may make, so a renewal is always due before
        // the record could expire; and at least the record's grace, which the commit after the
        // body also has.
        let horizon = state
            .config
            .pending_grace
            .max(state.config.client_timeout * 2);
        let renew_at = record.ttl.and_then(|ttl| {
            // TTLs are whole seconds: one more second keeps the rounding on the safe side.
            let until = ttl
                .saturating_sub(now_secs())
                .saturating_sub(half_secs(horizon))
                .saturating_sub(1);
            tokio::time::Instant::now().checked_add(Duration::from_secs(until.max(0) as u64))
        });
        KeepPending {
            file_id: record.file_id.clone(),
            horizon,
            renew_at,
        }
    }

    /// Renews the record's TTL if it is time to. Refuses the PUT when the record is no longer
    /// pending (deleted, completed or expired meanwhile): its bytes could never be kept.
    async fn renew_if_due(
        &mut self,
        state: &SharedState,
        at: tokio::time::Instant,
    ) -> Result<(), Response> {
        if self.renew_at.is_none_or(|due| at < due) {
            return Ok(());
        }
        let now = now_secs();
        let ttl = secs_after(now, self.horizon);
        match state.meta.extend_pending(&self.file_id, ttl, now).await {
            Ok(true) => {
                tracing::debug!(file_id = %self.file_id, ttl, "pending upload kept alive while its body arrives");
                self.renew_at = Some(at + self.horizon / 2);
                Ok(())
            }
            Ok(false) => match state.meta.get(&self.file_id).await {
                Ok(Some(r)) if r.status == Status::Uploaded && !r.is_expired(now) => {
                    Err(already_uploaded(state))
                }
                _ => Err(FinishError::Gone.response(state)),
            },
            Err(e) => {
                // The record still has at least a quarter horizon: try again in a while.
                tracing::warn!(file_id = %self.file_id, error = %e, "cannot extend a pending upload's record; trying again");
                self.renew_at = Some(at + self.horizon / 16);
                Ok(())
            }
        }
    }
}

fn half_secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs() / 2).unwrap_or(i64::MAX)
}

/// Streams `body` into `writer`, refusing more than `limit` bytes and, when `exact` is given, any
/// other length, and keeping the pending record alive meanwhile ([`KeepPending`]). Returns size
/// and SHA-256; the caller decides whether to commit. On any refusal the writer is dropped,
/// which discards the staged bytes.
async fn receive(
    state: &SharedState,
    body: Body,
    limit: u64,
    exact: Option<u64>,
    writer: &mut Box<dyn crate::store::objects::ObjectWriter>,
    mut keep: KeepPending,
) -> Result<Received, Response> {
    let mut hasher = openssl::sha::Sha256::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    // A client that stops sending for `client_timeout` loses the upload (as nginx's
    // `client_body_timeout`), counted from when the server is ready for more. One timer, moved
    // on only when it fires: a chunk costs a clock read, not a timer.
    let pause = state.config.client_timeout;
    let mut last = tokio::time::Instant::now();
    let idle = tokio::time::sleep_until(last + pause);
    tokio::pin!(idle);
    loop {
        let next = tokio::select! {
            biased;
            next = stream.next() => next,
            () = &mut idle => {
                if last.elapsed() < pause {
                    idle.as_mut().reset(last + pause);
                    continue;
                }
                tracing::info!(received = size, "upload body stalled");
                return Err(refuse(
                    state,
                    "timeout",
                    StatusCode::REQUEST_TIMEOUT,
                    "RequestTimeout",
                    "the request body stalled for longer than the server waits",
                ));
            }
        };
        let Some(chunk) = next else { break };
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, received = size, "upload body interrupted");
                return Err(refuse(
                    state,
                    "aborted",
                    StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    "the request body was interrupted",
                ));
            }
        };
        size += chunk.len() as u64;
        state.metrics.bytes_received.inc_by(chunk.len() as u64);
        if size > limit {
            return Err(refuse(
                state,
                "too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                "EntityTooLarge",
                "the body is larger than allowed",
            ));
        }
        hasher.update(&chunk);
        writer.write(chunk).await.map_err(storage_failure)?;
        // The pause is the client's from here: time the write took (a slow disk) is not.
        last = tokio::time::Instant::now();
        keep.renew_if_due(state, last).await?;
    }
    if exact.is_some_and(|e| e != size) {
        return Err(refuse(
            state,
            "size_mismatch",
            StatusCode::BAD_REQUEST,
            "IncompleteBody",
            "the body's length differs from the declared size",
        ));
    }
    Ok(Received {
        size,
        sha256: hex::encode(hasher.finish()),
    })
}

/// Checks `Content-Length` (when sent) against the limit and the exact size, and `Content-Type`
/// against the declared type, before any byte is read.
fn check_headers(
    state: &SharedState,
    headers: &HeaderMap,
    limit: u64,
    exact: Option<u64>,
    content_type: Option<&str>,
) -> Result<(), Response> {
    if let Some(len) = content_length(headers) {
        if len > limit {
            return Err(refuse(
                state,
                "too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                "EntityTooLarge",
                "the body is larger than allowed",
            ));
        }
        if exact.is_some_and(|e| e != len) {
            return Err(refuse(
                state,
                "size_mismatch",
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "Content-Length differs from the declared size",
            ));
        }
    }
    if let (Some(declared), Some(sent)) = (content_type, headers.get(header::CONTENT_TYPE)) {
        if essence(sent.to_str().unwrap_or("")) != essence(declared) {
            return Err(xml_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "Content-Type differs from the content type declared when the link was created",
            ));
        }
    }
    Ok(())
}

/// The `partNumber` and `uploadId` query parameters of a part upload, if any.
fn part_params(req: &Request) -> Result<Option<(u32, String)>, Response> {
    let Some(query) = req.uri().query() else {
        return Ok(None);
    };
    let mut number = None;
    let mut upload_id = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("partNumber", v)) => number = Some(v),
            Some(("uploadId", v)) => upload_id = Some(v),
            _ => {}
        }
    }
    match (number, upload_id) {
        (None, None) => Ok(None),
        (Some(text), Some(u)) => match text.parse::<u32>() {
            Ok(n) if (1..=10_000).contains(&n) && !text.starts_with('0') => {
                Ok(Some((n, u.to_owned())))
            }
            _ => Err(xml_error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "partNumber must be between 1 and 10000",
            )),
        },
        _ => Err(xml_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "partNumber and uploadId go together",
        )),
    }
}

/// `PUT /uploads/{fileId}` (whole file) and `PUT /uploads/{fileId}?partNumber=N&uploadId=U` (one
/// part of a multipart upload): streams the body into storage, enforcing size, content type and
/// checksum. Whole files are committed atomically and write-once; a part may be uploaded again
/// (the retry replaces it) until the upload is completed.
pub async fn upload(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let file_id = match authorize(&state, &req, peer, "/uploads/") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let part = match part_params(&req) {
        Ok(p) => p,
        Err(r) => return r,
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
        return already_uploaded(&state);
    }
    let _in_flight = InFlight::new(&state.metrics);
    match (part, &record.upload_id) {
        (Some((n, upload_id)), Some(expected_id)) => {
            if upload_id != *expected_id {
                return xml_error(
                    StatusCode::NOT_FOUND,
                    "NoSuchUpload",
                    "no such multipart upload",
                );
            }
            upload_part(&state, &record, n, req).await
        }
        (Some(_), None) => xml_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "this is a single-part upload; PUT the whole file without partNumber",
        ),
        (None, Some(_)) => xml_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "this is a multipart upload; PUT each part to its own URL",
        ),
        (None, None) => upload_whole(&state, &record, req).await,
    }
}

async fn upload_whole(state: &SharedState, record: &FileRecord, req: Request) -> Response {
    use crate::config::defaults::MAX_PART_SIZE;
    let limit = record
        .declared_size
        .unwrap_or(state.config.max_upload_bytes)
        .min(state.config.max_upload_bytes)
        .min(MAX_PART_SIZE);
    if let Err(r) = check_headers(
        state,
        req.headers(),
        limit,
        record.declared_size,
        Some(&record.content_type),
    ) {
        return r;
    }
    let Some(receiving) = crate::state::Receiving::claim(state, record.object_key.clone()) else {
        return receiving_already(state);
    };
    let mut writer = match state.objects.begin_write(&record.object_key).await {
        Ok(w) => w,
        Err(ObjectError::Exists) => return already_stored(state, record).await,
        Err(ObjectError::Busy) => return slow_down(state),
        Err(e) => return storage_failure(e),
    };
    let received = match receive(
        state,
        req.into_body(),
        limit,
        record.declared_size,
        &mut writer,
        KeepPending::new(state, record),
    )
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Some(expected) = &record.declared_sha256 {
        if !openssl::memcmp::eq(expected.as_bytes(), received.sha256.as_bytes()) {
            return refuse(
                state,
                "checksum_mismatch",
                StatusCode::BAD_REQUEST,
                "BadDigest",
                "the SHA-256 of the body differs from the declared one",
            );
        }
    }
    let (state, record) = (state.clone(), record.clone());
    commit_detached(receiving, async move {
        match writer.commit().await {
            Ok(_) => {}
            Err(ObjectError::Exists) => return already_stored(&state, &record).await,
            Err(e) => return storage_failure(e),
        }
        match finish(&state, &record, received.size, Some(received.sha256), None).await {
            Ok(etag) => with_etag(StatusCode::OK.into_response(), &etag),
            Err(e) => e.response(&state),
        }
    })
    .await
}

/// Runs `commit` (storing what a PUT received, and recording it) as a task of its own, holding
/// the PUT's claim until it ends: a client that goes away meanwhile drops the handler, and must
/// not leave the bytes stored and their record not updated.
async fn commit_detached(
    receiving: crate::state::Receiving,
    commit: impl std::future::Future<Output = Response> + Send + 'static,
) -> Response {
    // In the request's span: its log lines (committed, or why not) carry the request id.
    tokio::spawn(
        async move {
            let _receiving = receiving;
            commit.await
        }
        .in_current_span(),
    )
    .await
    .unwrap_or_else(storage_failure)
}

/// A PUT found its file's object stored already. Answers 409; if the record is still pending
/// (an earlier PUT stored the object but could not record it), records it first from the
/// stored object, so the upload is complete and downloadable rather than stuck.
async fn already_stored(state: &SharedState, record: &FileRecord) -> Response {
    if let Err(e) = recover_stored(state, record, true).await {
        return e.response(state);
    }
    already_uploaded(state)
}

/// 409: upload links are write-once.
fn already_uploaded(state: &SharedState) -> Response {
    refuse(
        state,
        "conflict",
        StatusCode::CONFLICT,
        "ObjectAlreadyExists",
        "this file has already been uploaded",
    )
}

/// Marks `record` uploaded from its stored object, for an object whose record update failed or
/// was cut off after the object went into place. Only checked bytes ever reach storage (size,
/// content type and declared SHA-256 are enforced before the commit), so the object is this
/// upload's; with `read_back`, it is read back for its size and SHA-256, which must match what
/// was declared. Without (an object S3 joined from checked parts, which reading back could take
/// longer than any request may), only its size is checked and it is recorded without a SHA-256,
/// as [`assemble`] records such an object. A record another request completed meanwhile is
/// left as it is. Returns what was recorded.
pub(crate) async fn recover_stored(
    state: &SharedState,
    record: &FileRecord,
    read_back: bool,
) -> Result<Assembled, FinishError> {
    let key = &record.object_key;
    let meta = state
        .objects
        .head(key)
        .await
        .map_err(FinishError::Storage)?;
    let (sha256, size) = if read_back {
        let (sha256, size) = crate::store::objects::sha256_of(&*state.objects, key, meta.size)
            .await
            .map_err(FinishError::Storage)?;
        (Some(sha256), size)
    } else {
        (None, meta.size)
    };
    let matches = record.declared_size.is_none_or(|d| d == size)
        && match (&record.declared_sha256, &sha256) {
            (Some(declared), Some(got)) => openssl::memcmp::eq(declared.as_bytes(), got.as_bytes()),
            _ => true,
        };
    if !matches {
        return Err(FinishError::Storage(ObjectError::Io(
            std::io::Error::other(format!(
                "the stored object of {} differs from its declaration",
                record.file_id
            )),
        )));
    }
    tracing::warn!(file_id = %record.file_id, size, "recording an upload whose object was stored but not recorded");
    let etag = finish(state, record, size, sha256.clone(), meta.etag).await?;
    Ok(Assembled { size, sha256, etag })
}

/// Why a stored object could not be recorded.
#[derive(Debug)]
pub(crate) enum FinishError {
    /// The record was deleted or expired while the bytes arrived; the object was removed.
    Gone,
    /// The metadata store failed or did not say whether the update was applied. The object
    /// stays: a retry records it ([`recover_stored`]), and if none comes the sweeper removes
    /// object and record together once the record expires.
    Unavailable,
    /// Reading the stored object back failed.
    Storage(ObjectError),
}

impl FinishError {
    fn response(self, state: &SharedState) -> Response {
        match self {
            FinishError::Gone => refuse(
                state,
                "expired",
                StatusCode::NOT_FOUND,
                "NoSuchUpload",
                "the upload expired or was deleted while in progress",
            ),
            FinishError::Unavailable => xml_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "try again",
            ),
            FinishError::Storage(e) => storage_failure(e),
        }
    }
}

/// Marks a stored object's record uploaded. If the record vanished meanwhile (deleted or
/// expired), removes the object so nothing is left behind; if the metadata store fails, keeps
/// it (see [`FinishError::Unavailable`]). Returns the ETag: the quoted SHA-256 when known, else
/// the backend's.
async fn finish(
    state: &SharedState,
    record: &FileRecord,
    size: u64,
    sha256: Option<String>,
    backend_etag: Option<String>,
) -> Result<String, FinishError> {
    let done = completion(state, record, size, sha256, backend_etag);
    let etag = done.etag.clone();
    let updated = state
        .meta
        .mark_uploaded(&record.file_id, &done, now_secs())
        .await;
    if let Ok(true) = updated {
        Metrics::count(&state.metrics.uploads, "committed");
        tracing::info!(file_id = %record.file_id, size, "upload committed");
        return Ok(etag);
    }
    if let Err(e) = &updated {
        // The update may have been applied all the same (a reply lost in a timeout): look.
        tracing::error!(file_id = %record.file_id, error = %e, "metadata update failed");
    }
    // Not applied, or not known: the record says what happened. Completed meanwhile (through
    // POST /complete, or by a retry that recorded this same object): keep the object.
    match state.meta.get(&record.file_id).await {
        Ok(Some(current))
            if current.status == Status::Uploaded && !current.is_expired(now_secs()) =>
        {
            Ok(current.etag.unwrap_or(etag))
        }
        Ok(Some(current)) if !current.is_expired(now_secs()) => Err(FinishError::Unavailable),
        Ok(_) => {
            if let Err(e) = state.objects.delete(&record.object_key).await {
                tracing::error!(file_id = %record.file_id, error = %e, "cannot remove the object of a vanished upload; the sweeper will");
            }
            Err(FinishError::Gone)
        }
        Err(e) => {
            tracing::error!(file_id = %record.file_id, error = %e, "metadata read failed; the stored object is kept");
            Err(FinishError::Unavailable)
        }
    }
}

fn with_etag(mut r: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

async fn upload_part(state: &SharedState, record: &FileRecord, n: u32, req: Request) -> Response {
    let (Some(expected), Some(upload_id)) =
        (record.expected_part_size(n), record.upload_id.as_deref())
    else {
        return xml_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "partNumber is beyond the upload's part count",
        );
    };
    if let Err(r) = check_headers(state, req.headers(), expected, Some(expected), None) {
        return r;
    }
    let Some(receiving) =
        crate::state::Receiving::claim_part(state, &record.object_key, upload_id, n)
    else {
        return receiving_already(state);
    };
    let mut writer = match state
        .objects
        .begin_part(&record.object_key, upload_id, n, expected)
        .await
    {
        Ok(w) => w,
        Err(ObjectError::NoSuchUpload) => return no_such_upload(),
        Err(ObjectError::Busy) => return slow_down(state),
        Err(e) => return storage_failure(e),
    };
    let received = match receive(
        state,
        req.into_body(),
        expected,
        Some(expected),
        &mut writer,
        KeepPending::new(state, record),
    )
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (state, record, upload_id) = (state.clone(), record.clone(), upload_id.to_owned());
    commit_detached(receiving, async move {
        let backend_etag = match writer.commit().await {
            Ok(e) => e,
            // The multipart upload ended while the part arrived: the file was deleted,
            // swept, or completed by another replica.
            Err(ObjectError::NoSuchUpload) => return no_such_upload(),
            Err(e) => return storage_failure(e),
        };
        record_part(&state, &record, &upload_id, n, received, backend_etag).await
    })
    .await
}

/// 404 `NoSuchUpload`: the multipart upload a part was sent to has ended.
fn no_such_upload() -> Response {
    xml_error(
        StatusCode::NOT_FOUND,
        "NoSuchUpload",
        "no such multipart upload",
    )
}

/// Records part `n` of `record`'s multipart upload `upload_id`, just stored, and answers the PUT.
async fn record_part(
    state: &SharedState,
    record: &FileRecord,
    upload_id: &str,
    n: u32,
    received: Received,
    backend_etag: Option<String>,
) -> Response {
    let part = PartRecord {
        part_number: n,
        size: received.size,
        etag: backend_etag.unwrap_or_else(|| format!("\"{}\"", received.sha256)),
        sha256: received.sha256,
    };
    match state
        .meta
        .put_part(&record.file_id, upload_id, &part, now_secs())
        .await
    {
        Ok(true) => {
            Metrics::count(&state.metrics.uploads, "part");
            with_etag(StatusCode::OK.into_response(), &part.etag)
        }
        Ok(false) => {
            // Completed, aborted or expired meanwhile: the part has no upload to belong to.
            let _ = state
                .objects
                .abort_multipart(&record.object_key, upload_id)
                .await;
            xml_error(
                StatusCode::NOT_FOUND,
                "NoSuchUpload",
                "the upload expired, was completed or was aborted",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "metadata update failed");
            xml_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "try again",
            )
        }
    }
}

/// The facts to record for an upload of `size` bytes that completes now: the ETag (the quoted
/// SHA-256 when known, else the backend's, else one derived from the id and size) and the
/// retention TTL. Shared by the edge and by completion of uploads that bypassed it.
pub(crate) fn completion(
    state: &SharedState,
    record: &FileRecord,
    size: u64,
    sha256: Option<String>,
    backend_etag: Option<String>,
) -> Completion {
    let etag = match (&sha256, backend_etag) {
        (Some(sha), _) => format!("\"{sha}\""),
        (None, Some(e)) if e.starts_with('"') => e,
        (None, Some(e)) => format!("\"{e}\""),
        (None, None) => format!("\"{}-{size}\"", record.file_id),
    };
    let retention = state.config.retention.as_secs() as i64;
    Completion {
        size,
        sha256,
        etag,
        uploaded_at: now_millis(),
        ttl: (retention > 0).then(|| now_secs() + retention),
    }
}

/// Why assembling a multipart upload failed.
#[derive(Debug)]
pub enum AssembleError {
    /// The assembled bytes do not match the declared SHA-256 (nothing was kept).
    Checksum,
    /// The object exists already (completed before).
    Exists,
    /// The record vanished meanwhile (nothing was kept).
    Gone,
    /// The metadata store failed; the assembled object is kept and a retry records it.
    Unavailable,
    /// Storage failed.
    Storage(String),
}

fn assemble_error(e: FinishError) -> AssembleError {
    match e {
        FinishError::Gone => AssembleError::Gone,
        FinishError::Unavailable => AssembleError::Unavailable,
        FinishError::Storage(e) => AssembleError::Storage(e.to_string()),
    }
}

/// What a completed upload amounted to.
pub struct Assembled {
    /// Bytes.
    pub size: u64,
    /// SHA-256 hex, when the storage backend saw the bytes.
    pub sha256: Option<String>,
    /// ETag.
    pub etag: String,
}

/// Records a multipart upload whose object is stored already: assembled by a completion whose
/// record update failed or was cut off (the caller saw the record pending, and that completion
/// answered 503 or nothing). Its parts are gone (S3 uses up the multipart upload when it joins
/// them), so the object is checked instead ([`recover_stored`]). A record completed meanwhile is
/// left as it is: [`AssembleError::Exists`].
pub async fn recover_assembled(
    state: &SharedState,
    record: &FileRecord,
) -> Result<Assembled, AssembleError> {
    if state
        .meta
        .get(&record.file_id)
        .await
        .ok()
        .flatten()
        .is_some_and(|r| r.status == Status::Uploaded)
    {
        return Err(AssembleError::Exists);
    }
    // Local disk hashes what it assembles, so the object read back gets the same checks; S3
    // joins parts without a hash.
    let assembled = keeping_pending(
        state,
        record,
        recover_stored(state, record, state.objects.single_writer()),
    )
    .await
    .map_err(assemble_error)?;
    let _ = state.meta.delete_parts(&record.file_id).await;
    // The completion that assembled the object was cut off before it freed the parts (local
    // disk frees them after the object is in place): they would stay on disk for good, a
    // second copy of the file. S3 used them up when it joined them; nothing is left there.
    if let Some(upload_id) = &record.upload_id {
        match state
            .objects
            .abort_multipart(&record.object_key, upload_id)
            .await
        {
            Ok(()) | Err(ObjectError::NoSuchUpload | ObjectError::NotFound) => {}
            Err(e) => {
                tracing::warn!(file_id = %record.file_id, error = %e, "cannot free the parts of a recovered upload; the sweeper will when the file goes");
            }
        }
    }
    Ok(assembled)
}

/// Runs `work` (joining a multipart upload's parts, or reading back what was joined: minutes
/// for a large file) while keeping `record` pending ([`KeepPending`]): a record that expired
/// meanwhile would be swept with the parts being read, or refuse the completion at the end and
/// have the joined file removed. Renewal stops once the record is no longer pending; what
/// `work` then finds is what it answers.
async fn keeping_pending<T>(
    state: &SharedState,
    record: &FileRecord,
    work: impl std::future::Future<Output = T>,
) -> T {
    let mut keep = KeepPending::new(state, record);
    let mut work = std::pin::pin!(work);
    loop {
        let Some(due) = keep.renew_at else {
            return work.await;
        };
        tokio::select! {
            out = &mut work => return out,
            () = tokio::time::sleep_until(due) => {
                if keep.renew_if_due(state, due).await.is_err() {
                    keep.renew_at = None;
                }
            }
        }
    }
}

/// Joins the stored parts of `record` (all present and checked by the caller) into its object,
/// atomically and write-once, and marks it uploaded; the backend frees the parts.
pub async fn assemble(
    state: &SharedState,
    record: &FileRecord,
    parts: &[PartRecord],
) -> Result<Assembled, AssembleError> {
    let upload_id = record.upload_id.as_deref().unwrap_or_default();
    let stored: Vec<StoredPart> = parts
        .iter()
        .map(|p| StoredPart {
            number: p.part_number,
            size: p.size,
            etag: p.etag.clone(),
        })
        .collect();
    let joined = state.objects.complete_multipart(
        &record.object_key,
        upload_id,
        &stored,
        record.declared_sha256.as_deref(),
    );
    let done = match keeping_pending(state, record, joined).await {
        Ok(d) => d,
        Err(ObjectError::Exists) => return recover_assembled(state, record).await,
        // Used up by an earlier completion that assembled the object and could not record it.
        Err(ObjectError::NoSuchUpload) if state.objects.head(&record.object_key).await.is_ok() => {
            return recover_assembled(state, record).await
        }
        // Its parts were freed meanwhile: the file was deleted, or expired and swept.
        Err(ObjectError::NoSuchUpload) => {
            return match state.meta.get(&record.file_id).await {
                Ok(Some(r)) if r.status == Status::Uploaded && !r.is_expired(now_secs()) => {
                    Err(AssembleError::Exists)
                }
                Ok(Some(r)) if !r.is_expired(now_secs()) => Err(AssembleError::Storage(format!(
                    "the parts of {} are gone while its record is pending",
                    record.file_id
                ))),
                Ok(_) => Err(AssembleError::Gone),
                Err(_) => Err(AssembleError::Unavailable),
            }
        }
        Err(ObjectError::Checksum) => {
            Metrics::count(&state.metrics.uploads, "checksum_mismatch");
            return Err(AssembleError::Checksum);
        }
        Err(e) => return Err(AssembleError::Storage(e.to_string())),
    };
    if record.declared_sha256.is_some() && done.sha256.is_none() {
        tracing::warn!(file_id = %record.file_id, "declared SHA-256 of a multipart upload not verifiable on this storage; parts were checked individually");
    }
    let etag = finish(state, record, done.size, done.sha256.clone(), done.etag)
        .await
        .map_err(assemble_error)?;
    let _ = state.meta.delete_parts(&record.file_id).await;
    Ok(Assembled {
        size: done.size,
        sha256: done.sha256,
        etag,
    })
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
    // The unit is case-insensitive (section 14.1).
    let value = value.trim();
    let Some(spec) = value
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| &value[6..])
    else {
        return RangeOutcome::Full;
    };
    if spec.contains(',') {
        return RangeOutcome::Full;
    }
    // A range that does not parse, or whose first position is past its last, is invalid, and
    // refused with 416 (section 14.2 lets a server ignore or reject it; S3 ignores it).
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeOutcome::Unsatisfiable;
    };
    // Digits only; a number past u64 counts as u64::MAX: a last position or suffix length that
    // large still means "to the end" or "the whole file" (sections 14.1.2 and 14.1.3), and a
    // first position that large is past any file.
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            Some(s.parse().unwrap_or(u64::MAX))
        }
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match num(suffix) {
            // The last bytes of an empty file: satisfiable (section 14.1.1: a suffix range is
            // whenever its length is not 0), and no 206 can say so: the whole (empty) file, as
            // S3 sends.
            Some(n) if n > 0 && size == 0 => RangeOutcome::Full,
            Some(n) if n > 0 => RangeOutcome::Partial(size.saturating_sub(n), size - 1),
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

/// The `Content-Security-Policy` of every download, as CloudFront's response headers policy
/// sends it in the AWS deployment.
pub const DOWNLOAD_CSP: &str = "default-src 'none'; sandbox";

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

/// Whether `list` (an `If-None-Match` value) names `etag`, by weak comparison.
fn etag_matches(list: &str, etag: &str) -> bool {
    list.trim() == "*"
        || list
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/") == etag)
}

/// Whether `list` (an `If-Match` value) names `etag`, by strong comparison: weak tags never
/// match.
fn etag_matches_strongly(list: &str, etag: &str) -> bool {
    list.trim() == "*" || list.split(',').any(|t| t.trim() == etag)
}

/// Whether an `If-Range` value holds for a file with `etag`, last modified at `modified` (RFC
/// 9110 section 13.1.5): an entity tag that matches strongly, or a date exactly the file's. A
/// value that is neither (or not text) does not hold, so the range is ignored and the whole
/// file is sent, never a part of a file the client may not have.
fn if_range_holds(value: &HeaderValue, etag: &str, modified: SystemTime) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return value == etag;
    }
    // Files never change once uploaded, so their Last-Modified is a strong validator.
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok();
    httpdate::parse_http_date(value)
        .ok()
        .is_some_and(|at| secs(at).is_some() && secs(at) == secs(modified))
}

/// What a download's conditional headers decide.
#[derive(Debug, PartialEq, Eq)]
enum Precondition {
    /// Serve the file (or the range asked for).
    Proceed,
    /// 304: the client's copy is current.
    NotModified,
    /// 412: `If-Match` or `If-Unmodified-Since` did not hold.
    Failed,
}

/// Evaluates `If-Match`, `If-Unmodified-Since`, `If-None-Match` and `If-Modified-Since` for a
/// GET or HEAD of a file with `etag`, last modified at `modified`, in the order of RFC 9110
/// section 13.2.2. A date that does not parse is ignored, as are the date conditions when the
/// matching tag condition is present. Field lines of one header combine into one list.
fn preconditions(headers: &HeaderMap, etag: &str, modified: SystemTime) -> Precondition {
    // A value that is not text names no entity tag: it matches nothing, rather than being
    // taken as absent (which would let an `If-Match` that cannot hold pass).
    let list = |name: &header::HeaderName| -> Option<String> {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or(""))
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    let date = |name: &header::HeaderName| -> Option<u64> {
        let value = headers.get(name)?.to_str().ok()?;
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
    };
    // HTTP dates have whole seconds.
    let modified = modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match list(&header::IF_MATCH) {
        Some(tags) if !etag_matches_strongly(&tags, etag) => return Precondition::Failed,
        Some(_) => {}
        None => {
            if date(&header::IF_UNMODIFIED_SINCE).is_some_and(|since| modified > since) {
                return Precondition::Failed;
            }
        }
    }
    match list(&header::IF_NONE_MATCH) {
        Some(tags) if etag_matches(&tags, etag) => Precondition::NotModified,
        Some(_) => Precondition::Proceed,
        None if date(&header::IF_MODIFIED_SINCE).is_some_and(|since| modified <= since) => {
            Precondition::NotModified
        }
        None => Precondition::Proceed,
    }
}

/// `GET|HEAD /files/{fileId}`: streams an uploaded file with Range, ETag, Last-Modified,
/// Content-Type and Content-Disposition.
pub async fn download(
    State(state): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let file_id = match authorize(&state, &req, peer, "/files/") {
        Ok(id) => id,
        Err(r) => return r,
    };
    let record: FileRecord = match state.meta.get(&file_id).await {
        Ok(Some(r)) if r.status == Status::Uploaded && !r.is_expired(now_secs()) => r,
        Ok(_) => return no_such_key(),
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
        // Deleted since the record was read, or lost.
        Err(ObjectError::NotFound) => {
            tracing::warn!(file_id = %file_id, "uploaded record without an object");
            return no_such_key();
        }
        // A storage outage is not a missing file: clients and caches take 404 as final.
        Err(e) => return storage_failure(e),
    };
    let size = meta.size;
    if record.size.is_some_and(|recorded| recorded != size) {
        // Replaced behind Keyhole's back (a second PUT through a presigned S3 link, an operator):
        // these are not the bytes the record's checksum and ETag describe.
        tracing::error!(
            file_id = %file_id,
            recorded = record.size,
            stored = size,
            "stored object differs from its record"
        );
        return storage_failure("the stored object differs from its record");
    }
    let etag = record.etag.clone().unwrap_or_default();
    let last_modified = record
        .uploaded_at
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .unwrap_or(meta.last_modified);
    let headers = req.headers();

    let validators = Response::builder()
        .header(header::ETAG, &etag)
        .header(
            header::LAST_MODIFIED,
            httpdate::fmt_http_date(last_modified),
        )
        .header(header::CACHE_CONTROL, "private, max-age=0");
    match preconditions(headers, &etag, last_modified) {
        Precondition::Failed => {
            return xml_error(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "at least one of the preconditions you specified did not hold",
            )
        }
        Precondition::NotModified => {
            let mut not_modified = validators.status(StatusCode::NOT_MODIFIED);
            if req.method() == Method::HEAD {
                // Else hyper says 0 for the empty body of a HEAD; a 304 may carry only the
                // length a 200 would have (RFC 9110 section 8.6).
                not_modified = not_modified.header(header::CONTENT_LENGTH, size.to_string());
            }
            return not_modified
                .body(Body::empty())
                .unwrap_or_else(|_| StatusCode::NOT_MODIFIED.into_response());
        }
        Precondition::Proceed => {}
    }
    let mut builder = validators
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, &record.content_type)
        .header(
            header::CONTENT_DISPOSITION,
            content_disposition(&record.original_filename),
        )
        // The uploader's bytes on the page's origin: should a browser ever render one (the
        // disposition says download), it runs sandboxed, with no access to the page's origin.
        .header(header::CONTENT_SECURITY_POLICY, DOWNLOAD_CSP);
    let range_applies = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| if_range_holds(v, &etag, last_modified));
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
    let read = state
        .objects
        .read(&record.object_key, offset, len, meta.etag.as_deref())
        .await;
    let stream = match read {
        Ok(s) => s,
        Err(ObjectError::NotFound) => return no_such_key(),
        Err(ObjectError::Changed) => {
            tracing::warn!(file_id = %file_id, "object replaced between its lookup and its read");
            return xml_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the file changed while it was being read; try again",
            );
        }
        Err(e) => return storage_failure(e),
    };
    // The body is sent after this handler returns: the transfer counts as in flight, and a
    // failure while sending is logged in the request's span and counted, until the body ends
    // or is dropped.
    let in_flight = InFlight::new(&state.metrics);
    let span = tracing::Span::current();
    let metrics_state = state.clone();
    let counted = stream.map(move |chunk| {
        let _in_flight = &in_flight;
        match &chunk {
            Ok(c) => {
                metrics_state.metrics.bytes_sent.inc_by(c.len() as u64);
            }
            Err(e) => {
                let _request = span.enter();
                tracing::error!(file_id = %file_id, error = %e, "download failed after its headers were sent");
                metrics_state.metrics.download_errors.inc();
            }
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
    fn conditional_requests_follow_rfc_9110_order() {
        let etag = "\"abc\"";
        let modified = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let before = httpdate::fmt_http_date(modified - Duration::from_secs(60));
        let at = httpdate::fmt_http_date(modified);
        let after = httpdate::fmt_http_date(modified + Duration::from_secs(60));
        let check = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            preconditions(&h, etag, modified)
        };
        use Precondition::*;
        assert_eq!(check(&[]), Proceed);
        assert_eq!(check(&[("if-match", "\"abc\"")]), Proceed);
        assert_eq!(check(&[("if-match", "*")]), Proceed);
        assert_eq!(check(&[("if-match", "\"x\", \"abc\"")]), Proceed);
        assert_eq!(
            check(&[("if-match", "\"x\""), ("if-match", "\"abc\"")]),
            Proceed
        );
        assert_eq!(check(&[("if-match", "\"x\"")]), Failed);
        assert_eq!(
            check(&[("if-match", "W/\"abc\"")]),
            Failed,
            "weak never matches"
        );
        assert_eq!(check(&[("if-unmodified-since", &at)]), Proceed);
        assert_eq!(check(&[("if-unmodified-since", &before)]), Failed);
        assert_eq!(
            check(&[("if-match", "\"abc\""), ("if-unmodified-since", &before)]),
            Proceed,
            "If-Unmodified-Since is ignored beside If-Match"
        );
        assert_eq!(check(&[("if-unmodified-since", "not a date")]), Proceed);
        assert_eq!(check(&[("if-none-match", "W/\"abc\"")]), NotModified);
        assert_eq!(
            check(&[("if-none-match", "\"x\""), ("if-none-match", "\"abc\"")]),
            NotModified
        );
        assert_eq!(check(&[("if-none-match", "\"x\"")]), Proceed);
        assert_eq!(check(&[("if-modified-since", &at)]), NotModified);
        assert_eq!(check(&[("if-modified-since", &after)]), NotModified);
        assert_eq!(check(&[("if-modified-since", &before)]), Proceed);
        assert_eq!(
            check(&[("if-none-match", "\"x\""), ("if-modified-since", &after)]),
            Proceed,
            "If-Modified-Since is ignored beside If-None-Match"
        );
        assert_eq!(
            check(&[("if-match", "\"x\""), ("if-none-match", "\"abc\"")]),
            Failed,
            "If-Match is evaluated first"
        );
    }

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
        assert_eq!(
            parse_range("bytes=0-99999999999999999999", 100),
            RangeOutcome::Partial(0, 99)
        );
        assert_eq!(
            parse_range("bytes=-99999999999999999999", 100),
            RangeOutcome::Partial(0, 99)
        );
        assert_eq!(parse_range("Bytes=1-2", 100), RangeOutcome::Partial(1, 2));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeOutcome::Full);
        assert_eq!(parse_range("items=0-1", 100), RangeOutcome::Full);
        assert_eq!(parse_range("bytes=0-", 0), RangeOutcome::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), RangeOutcome::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 0), RangeOutcome::Unsatisfiable);
        // The last 5 bytes of an empty file are all of it (none): 200, not 416.
        assert_eq!(parse_range("bytes=-5", 0), RangeOutcome::Full);
    }

    #[test]
    fn a_condition_that_is_not_text_matches_nothing() {
        let modified = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_MATCH,
            HeaderValue::from_bytes(b"\"abc\"\xe9").unwrap(),
        );
        assert_eq!(preconditions(&h, "\"abc\"", modified), Precondition::Failed);
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_bytes(b"\"abc\"\xe9").unwrap(),
        );
        assert_eq!(
            preconditions(&h, "\"abc\"", modified),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_range_holds_for_the_strong_tag_or_the_exact_date() {
        let etag = "\"abc\"";
        let modified = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let holds = |v: &[u8]| if_range_holds(&HeaderValue::from_bytes(v).unwrap(), etag, modified);
        assert!(holds(b"\"abc\""));
        assert!(!holds(b"W/\"abc\""), "weak tags never match");
        assert!(!holds(b"\"other\""));
        assert!(holds(httpdate::fmt_http_date(modified).as_bytes()));
        assert!(!holds(
            httpdate::fmt_http_date(modified - Duration::from_secs(1)).as_bytes()
        ));
        assert!(!holds(b"yesterday"));
        assert!(!holds("\"abc\" \u{e9}".as_bytes()), "not text: no match");
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
