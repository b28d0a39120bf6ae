//! S3 `ObjectCreated` notifications delivered through SQS: in the AWS shape the bytes go from
//! the client through CloudFront straight into S3, so this is where a file record learns that
//! its upload arrived.
//!
//! For each object under the storage prefix's `uploads/`:
//! - a `pending` record: marked `uploaded` with the event's size and ETag through the store's
//!   conditional `mark_uploaded` (only a pending, unexpired record changes; a duplicate or late
//!   event changes nothing), with the same retention TTL the edge sets;
//! - an `uploaded` record: nothing (a duplicate, or the API completed it);
//! - no record, an expired one, or a size over the limit or unlike the declared one: the object
//!   is deleted (logged and counted);
//! - a pending multipart record: its completion is in flight in the API, which marks the record
//!   itself; the message is retried so it is seen again once that finished.
//!
//! The answer names exactly the messages that failed (`batchItemFailures`), so SQS retries only
//! those and moves them to the dead-letter queue after `maxReceiveCount` receives.

use std::collections::BTreeMap;

use keyhole::config::Storage;
use keyhole::state::{now_millis, now_secs, secs_after, SharedState};
use keyhole::store::objects::ObjectError;
use keyhole::store::{Completion, FileRecord, Status, StoreError};
use keyhole::telemetry::Metrics;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest SQS message body read (SQS's own maximum is 1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Most S3 records read from one message (S3 sends one per notification).
pub const MAX_RECORDS_PER_MESSAGE: usize = 100;

/// Why one message could not be handled; it is reported as a batch item failure and retried.
#[derive(Debug, thiserror::Error)]
pub enum UploadEventError {
    /// The body is not an S3 notification.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// S3 failed.
    #[error("object storage: {0}")]
    Objects(#[from] ObjectError),
    /// A multipart upload is being completed by the API; seen again after the retry.
    #[error("multipart upload of {0} is being completed through the API; retried later")]
    CompletionInFlight(String),
}

/// What happened to one S3 record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// A pending record became uploaded.
    Marked,
    /// The record was already uploaded: nothing changed.
    AlreadyUploaded,
    /// A second PUT replaced an uploaded file with other bytes; the version it made was removed,
    /// so the uploaded file is current again.
    Restored,
    /// The event no longer describes the object (gone, or replaced since): nothing changed.
    Stale,
    /// An object without a record was deleted.
    DeletedUnrecorded,
    /// An object of an expired record was deleted (the sweeper removes the record).
    DeletedExpired,
    /// An object over the size limit or unlike its declared size was deleted.
    DeletedSize,
    /// Not an upload this function handles (another bucket, prefix or event type).
    Ignored,
    /// The S3 test notification sent when the notification is configured.
    TestEvent,
}

impl Outcome {
    /// The metric label (`keyhole_uploads_total{kind=...}`, and the CloudWatch dimension).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Marked => "committed",
            Outcome::AlreadyUploaded => "event_duplicate",
            Outcome::Restored => "event_overwrite_undone",
            Outcome::Stale => "event_stale",
            Outcome::DeletedUnrecorded => "event_deleted_unrecorded",
            Outcome::DeletedExpired => "event_deleted_expired",
            Outcome::DeletedSize => "event_deleted_size",
            Outcome::Ignored => "event_ignored",
            Outcome::TestEvent => "event_test",
        }
    }
}

/// One message SQS should deliver again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// The SQS message id.
    pub item_identifier: String,
}

/// The answer to an SQS batch (`ReportBatchItemFailures`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    /// The messages that failed; all others are deleted from the queue.
    pub batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "Records")]
    records: Option<Vec<S3Record>>,
    #[serde(rename = "Event")]
    event: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Object {
    key: String,
    size: Option<u64>,
    e_tag: Option<String>,
    /// The version the write made, in a versioned bucket.
    version_id: Option<String>,
}

/// Handles an SQS batch; every message that fails is named in the answer. Once `until` has
/// passed (the invocation's deadline, less a margin), the messages not yet handled are named
/// too, untouched, so SQS delivers them again rather than the whole batch timing out.
pub async fn handle(
    state: &SharedState,
    records: Vec<Value>,
    until: Option<std::time::Instant>,
) -> BatchResponse {
    let mut response = BatchResponse::default();
    let mut counts: BTreeMap<Outcome, u64> = BTreeMap::new();
    let mut failed = 0u64;
    let mut deferred = 0usize;
    for (index, message) in records.iter().enumerate() {
        let id = message
            .get("messageId")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty() && id.len() <= 256);
        if until.is_some_and(|u| std::time::Instant::now() >= u) {
            deferred += 1;
            response.batch_item_failures.push(BatchItemFailure {
                item_identifier: id.unwrap_or_default().to_owned(),
            });
            continue;
        }
        let Some(id) = id else {
            // Without an id the failure cannot be reported alone; an unknown identifier makes
            // Lambda retry the whole batch, which is the safe side.
            tracing::error!(
                index,
                "SQS record without a messageId; the batch is retried"
            );
            response.batch_item_failures.push(BatchItemFailure {
                item_identifier: String::new(),
            });
            failed += 1;
            continue;
        };
        match message_outcomes(state, message, receive_count(message)).await {
            Ok(outcomes) => {
                for o in outcomes {
                    *counts.entry(o).or_default() += 1;
                }
            }
            Err(e) => {
                failed += 1;
                match &e {
                    UploadEventError::CompletionInFlight(_) => {
                        tracing::info!(message_id = id, reason = %e, "upload event retried")
                    }
                    _ => tracing::error!(message_id = id, error = %e, "upload event failed"),
                }
                response.batch_item_failures.push(BatchItemFailure {
                    item_identifier: id.to_owned(),
                });
            }
        }
    }
    if deferred > 0 {
        tracing::warn!(
            deferred,
            "upload events left for redelivery: the invocation's time was running out"
        );
    }
    emit_metrics(&counts, failed);
    response
}

/// How many times SQS has delivered `message`, this time included (1 when it does not say).
fn receive_count(message: &Value) -> u32 {
    message
        .pointer("/attributes/ApproximateReceiveCount")
        .and_then(Value::as_str)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Deliveries of a multipart upload's event during which its completion is left to the API
/// (whose `/complete` assembled the object and marks the record within API Gateway's 30 s).
/// From the next on, with the queue's 180 s visibility timeout six minutes later, a record still
/// pending means that `/complete` lost its answer and was not called again: the event records
/// the object, after the same size checks as a single upload's.
pub const COMPLETION_PATIENCE: u32 = 2;

async fn message_outcomes(
    state: &SharedState,
    message: &Value,
    receives: u32,
) -> Result<Vec<Outcome>, UploadEventError> {
    let body = message
        .get("body")
        .and_then(Value::as_str)
        .ok_or_else(|| UploadEventError::Malformed("no body".into()))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(UploadEventError::Malformed(format!(
            "body of {} bytes, more than {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    let notification: Notification = serde_json::from_str(body)
        .map_err(|e| UploadEventError::Malformed(format!("not an S3 notification: {e}")))?;
    if notification.event.as_deref() == Some("s3:TestEvent") {
        tracing::info!("S3 test notification acknowledged");
        Metrics::count(&state.metrics.uploads, Outcome::TestEvent.as_str());
        return Ok(vec![Outcome::TestEvent]);
    }
    let records = notification
        .records
        .ok_or_else(|| UploadEventError::Malformed("no Records and not s3:TestEvent".into()))?;
    if records.len() > MAX_RECORDS_PER_MESSAGE {
        return Err(UploadEventError::Malformed(format!(
            "{} records in one message, more than {MAX_RECORDS_PER_MESSAGE}",
            records.len()
        )));
    }
    let mut outcomes = Vec::with_capacity(records.len());
    for record in &records {
        let outcome = object_created(state, record, receives).await?;
        Metrics::count(&state.metrics.uploads, outcome.as_str());
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Decodes an S3 event key: URL-encoded, with `+` for spaces.
pub fn decode_key(key: &str) -> Option<String> {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

/// The file id an object key (as S3 names it) belongs to, when it is under `uploads/` of the
/// storage prefix.
fn file_id_of<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    let relative = if prefix.is_empty() {
        key
    } else {
        key.strip_prefix(prefix)?.strip_prefix('/')?
    };
    relative
        .strip_prefix("uploads/")
        .filter(|id| !id.is_empty())
}

async fn delete(
    state: &SharedState,
    object_key: &str,
    outcome: Outcome,
    why: &str,
) -> Result<Outcome, UploadEventError> {
    state.objects.delete(object_key).await?;
    tracing::warn!(object_key, reason = why, "uploaded object deleted");
    Ok(outcome)
}

/// An uploaded file was written again, with bytes of another size. Through CloudFront a
/// whole-file PUT is a conditional write that S3 refuses (412) once the file is there, so this
/// comes from elsewhere: an `s3-presigned` link, or a writer with its own access to the bucket.
/// The object no longer is what the record describes (and may be over the size limit). In the versioned bucket the
/// event names the version that PUT made; removing it makes the uploaded file current again,
/// which is what write-once asks. Without a version (an unversioned bucket) nothing can be put
/// back, and the overwrite is only logged.
async fn undo_overwrite(
    state: &SharedState,
    object_key: &str,
    file_id: &str,
    version: Option<&str>,
    recorded: Option<u64>,
    size: u64,
) -> Result<Outcome, UploadEventError> {
    // "null" is the version of an object written while versioning was off: removing it would
    // remove the only copy, not bring back an earlier one.
    if let Some(version) = version.filter(|v| !v.is_empty() && *v != "null") {
        if state.objects.delete_version(object_key, version).await? {
            tracing::warn!(
                file_id,
                recorded,
                size,
                version,
                "an uploaded file was written again through its upload link: that version was removed and the upload is current again"
            );
            return Ok(Outcome::Restored);
        }
    }
    tracing::error!(
        file_id,
        recorded,
        size,
        "an uploaded file was written again through its upload link and cannot be put back (no object version): its downloads now serve other bytes"
    );
    Ok(Outcome::AlreadyUploaded)
}

async fn object_created(
    state: &SharedState,
    record: &S3Record,
    receives: u32,
) -> Result<Outcome, UploadEventError> {
    if !record.event_name.starts_with("ObjectCreated:") {
        return Ok(Outcome::Ignored);
    }
    let Storage::S3 { bucket, prefix, .. } = &state.config.storage else {
        return Ok(Outcome::Ignored);
    };
    if &record.s3.bucket.name != bucket {
        tracing::warn!(bucket = %record.s3.bucket.name, "event of another bucket ignored");
        return Ok(Outcome::Ignored);
    }
    let key = decode_key(&record.s3.object.key)
        .ok_or_else(|| UploadEventError::Malformed("object key is not URL-encoded UTF-8".into()))?;
    let Some(file_id) = file_id_of(&key, prefix) else {
        return Ok(Outcome::Ignored);
    };
    let object_key = format!("uploads/{file_id}");
    if !keyhole::store::objects::valid_key(&object_key) {
        // Not something keyhole wrote (it mints links only for file ids) nor can address:
        // written with direct access to the bucket. Retrying cannot change that.
        tracing::warn!(
            object_key,
            "an object under uploads/ that is not a file id was left in place"
        );
        return Ok(Outcome::Ignored);
    }
    let size =
        record.s3.object.size.ok_or_else(|| {
            UploadEventError::Malformed("ObjectCreated record without size".into())
        })?;
    let event_etag = record.s3.object.e_tag.as_deref();
    if !keyhole::ids::is_valid_file_id(file_id) {
        return delete(
            state,
            &object_key,
            Outcome::DeletedUnrecorded,
            "not a file id",
        )
        .await;
    }
    let now = now_secs();
    let Some(current) = state.meta.get(file_id).await? else {
        return delete(state, &object_key, Outcome::DeletedUnrecorded, "no record").await;
    };
    match current.status {
        Status::Uploaded => {
            if current.size.is_some_and(|recorded| recorded != size) {
                let version = record.s3.object.version_id.as_deref();
                return undo_overwrite(state, &object_key, file_id, version, current.size, size)
                    .await;
            }
            return Ok(Outcome::AlreadyUploaded);
        }
        Status::Pending if current.is_expired(now) => {
            return delete(
                state,
                &object_key,
                Outcome::DeletedExpired,
                "record expired",
            )
            .await;
        }
        Status::Pending if current.upload_id.is_some() && receives <= COMPLETION_PATIENCE => {
            return Err(UploadEventError::CompletionInFlight(file_id.to_owned()));
        }
        Status::Pending if current.upload_id.is_some() => {
            tracing::warn!(
                file_id,
                receives,
                "a multipart upload's object is stored but its record still pending: recording it"
            );
        }
        Status::Pending => {}
    }
    // The event may be late: the object can be gone (deleted as oversize by an earlier event)
    // or written again since, by a retry with the same link. Only an object that still is what
    // the event says is acted on, deleted for its size or recorded: a late event about a wrong
    // first attempt must not delete the correct retry.
    match state.objects.head(&object_key).await {
        Ok(meta) if meta.size == size && same_etag(meta.etag.as_deref(), event_etag) => {}
        Ok(_) | Err(ObjectError::NotFound) => return Ok(Outcome::Stale),
        Err(e) => return Err(e.into()),
    }
    if size > state.config.max_upload_bytes {
        return delete(
            state,
            &object_key,
            Outcome::DeletedSize,
            "over the size limit",
        )
        .await;
    }
    if current
        .declared_size
        .is_some_and(|declared| declared != size)
    {
        return delete(
            state,
            &object_key,
            Outcome::DeletedSize,
            "not the declared size",
        )
        .await;
    }
    mark(state, &current, size, event_etag, &object_key).await
}

/// Whether the stored object's ETag and the event's name the same bytes; an ETag either side
/// does not give is not held against it (the size still has to match).
fn same_etag(stored: Option<&str>, event: Option<&str>) -> bool {
    match (stored, event) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => {
            a.trim_matches('"') == b.trim_matches('"')
        }
        _ => true,
    }
}

/// The edge's completion, with what S3 told: size and ETag (no SHA-256: Keyhole never saw the
/// bytes), and the same retention TTL the edge sets.
async fn mark(
    state: &SharedState,
    current: &FileRecord,
    size: u64,
    etag: Option<&str>,
    object_key: &str,
) -> Result<Outcome, UploadEventError> {
    let etag = match etag.filter(|e| !e.is_empty()) {
        Some(e) if e.starts_with('"') => e.to_owned(),
        Some(e) => format!("\"{e}\""),
        None => format!("\"{}-{size}\"", current.file_id),
    };
    let retention = state.config.retention;
    let done = Completion {
        size,
        sha256: None,
        etag,
        uploaded_at: now_millis(),
        ttl: (!retention.is_zero()).then(|| secs_after(now_secs(), retention)),
    };
    if state
        .meta
        .mark_uploaded(&current.file_id, &done, now_secs())
        .await?
    {
        if current.declared_sha256.is_some() {
            tracing::warn!(file_id = %current.file_id, "declared SHA-256 not verified: the bytes went to S3 without passing Keyhole");
        }
        tracing::info!(file_id = %current.file_id, size, "upload committed");
        if current.upload_id.is_some() {
            // The part records are of no use once the object is stored (best effort, as after
            // the API's own assembly).
            let _ = state.meta.delete_parts(&current.file_id).await;
        }
        return Ok(Outcome::Marked);
    }
    // Changed meanwhile: completed by someone else (nothing to do), or expired or deleted
    // (the object goes, as the edge does it).
    match state.meta.get(&current.file_id).await? {
        Some(r) if r.status == Status::Uploaded => Ok(Outcome::AlreadyUploaded),
        _ => {
            delete(
                state,
                object_key,
                Outcome::DeletedExpired,
                "record expired or deleted",
            )
            .await
        }
    }
}

/// One CloudWatch Embedded Metric Format line per batch (namespace `Keyhole`, metric
/// `UploadEvents` by `Outcome`), so deletions are counted in CloudWatch without a metrics API
/// call; written straight to standard output, where the Lambda runtime collects it.
fn emit_metrics(counts: &BTreeMap<Outcome, u64>, failed: u64) {
    if counts.is_empty() && failed == 0 {
        return;
    }
    let mut all: Vec<(&str, u64)> = counts.iter().map(|(o, n)| (o.as_str(), *n)).collect();
    if failed > 0 {
        all.push(("failed", failed));
    }
    for (outcome, n) in all {
        let line = serde_json::json!({
            "_aws": {
                "Timestamp": now_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": "Keyhole",
                    "Dimensions": [["Outcome"]],
                    "Metrics": [{"Name": "UploadEvents", "Unit": "Count"}],
                }],
            },
            "Outcome": outcome,
            "UploadEvents": n,
        });
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_like_s3_encodes_them() {
        assert_eq!(
            decode_key("uploads/a+b%2Bc.pdf").as_deref(),
            Some("uploads/a b+c.pdf")
        );
        assert_eq!(
            decode_key("uploads/%E2%82%AC").as_deref(),
            Some("uploads/€")
        );
        assert_eq!(decode_key("uploads/%FF"), None);
    }

    #[test]
    fn only_uploads_under_the_prefix_are_files() {
        assert_eq!(file_id_of("uploads/k_a.pdf", ""), Some("k_a.pdf"));
        assert_eq!(
            file_id_of("keyhole/uploads/k_a.pdf", "keyhole"),
            Some("k_a.pdf")
        );
        assert_eq!(file_id_of("uploads/k_a.pdf", "keyhole"), None);
        assert_eq!(file_id_of("keyholeX/uploads/k", "keyhole"), None);
        assert_eq!(file_id_of("keyhole/parts/k", "keyhole"), None);
        assert_eq!(file_id_of("uploads/", ""), None);
    }
}
