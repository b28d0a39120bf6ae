//! Persistence: file records ([`MetaStore`]) and object bytes ([`objects::ObjectStorage`]).
//!
//! Each backend sits behind a small trait and is chosen once at start-up, so the API and edge
//! handlers never know which one they talk to.

pub mod conformance;
pub mod conformance_objects;
pub mod dynamodb;
pub mod objects;
pub mod postgres;
pub mod s3;
pub mod s3_api;
pub mod sqlite;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;

/// Whether the bytes of a file have arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// An upload link was issued; the object is not there yet.
    Pending,
    /// The object is stored, complete and checked.
    Uploaded,
}

impl Status {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Uploaded => "uploaded",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Status::Pending),
            "uploaded" => Some(Status::Uploaded),
            _ => None,
        }
    }
}

/// One file, under the contract's attribute names (see `docs/api.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// Time-ordered random prefix + `_` + sanitised file name (see [`crate::ids`]).
    pub file_id: String,
    /// The name the client gave.
    pub original_filename: String,
    /// The declared content type.
    pub content_type: String,
    /// Where the bytes live: `uploads/{file_id}`.
    pub object_key: String,
    /// When the upload link was issued (epoch milliseconds).
    pub upload_url_generated_at: i64,
    /// When the bytes were committed (epoch milliseconds).
    pub uploaded_at: Option<i64>,
    /// Stored size in bytes (once uploaded).
    pub size: Option<u64>,
    /// Size the client declared up front, enforced during the upload.
    pub declared_size: Option<u64>,
    /// SHA-256 the client declared up front (lower-case hex), enforced during the upload.
    pub declared_sha256: Option<String>,
    /// SHA-256 of the stored bytes (lower-case hex).
    pub sha256: Option<String>,
    /// Strong ETag served with the file (quoted).
    pub etag: Option<String>,
    /// Pending or uploaded.
    pub status: Status,
    /// The principal the file belongs to.
    pub owner: String,
    /// Epoch seconds after which the record and its object are deleted; `None` keeps it.
    pub ttl: Option<i64>,
    /// Multipart upload id, when the file is uploaded in parts.
    pub upload_id: Option<String>,
    /// Size of every part but the last, for multipart uploads.
    pub part_size: Option<u64>,
}

/// The TTL of a record that is gone: deleted, or claimed by the sweeper. The epoch, before any
/// clock, so every replica sees it expired.
pub const GONE_TTL: i64 = 0;

/// One stored part of a multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartRecord {
    /// 1-based part number.
    pub part_number: u32,
    /// Bytes in the part.
    pub size: u64,
    /// SHA-256 of the part (hex).
    pub sha256: String,
    /// The part's ETag: the storage backend's own (S3) or the quoted SHA-256 (local disk).
    pub etag: String,
}

impl FileRecord {
    /// Number of parts of a multipart upload.
    pub fn part_count(&self) -> Option<u32> {
        let size = self.declared_size?;
        let part = self.part_size?.max(1);
        Some(size.div_ceil(part).max(1) as u32)
    }

    /// Expected size of part `n` (1-based) of a multipart upload.
    pub fn expected_part_size(&self, n: u32) -> Option<u64> {
        let size = self.declared_size?;
        let part = self.part_size?;
        let count = self.part_count()?;
        if n == 0 || n > count {
            return None;
        }
        Some(if n == count {
            size - part * u64::from(count - 1)
        } else {
            part
        })
    }

    /// Whether the record is past its TTL at `now` (epoch seconds). Expired records are treated
    /// as absent even before the sweeper removes them.
    pub fn is_expired(&self, now: i64) -> bool {
        self.ttl.is_some_and(|ttl| ttl <= now)
    }
}

/// The facts recorded when an upload completes.
#[derive(Clone, Debug)]
pub struct Completion {
    /// Bytes stored.
    pub size: u64,
    /// SHA-256 of the bytes (hex), when Keyhole saw them.
    pub sha256: Option<String>,
    /// ETag to serve.
    pub etag: String,
    /// Commit time (epoch milliseconds).
    pub uploaded_at: i64,
    /// New TTL (retention), or `None` to keep.
    pub ttl: Option<i64>,
}

/// A page of a principal's files, newest first.
#[derive(Clone, Debug)]
pub struct Page {
    /// The records.
    pub records: Vec<FileRecord>,
    /// Opaque cursor for the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// The paging cursor: the last returned record's `(upload_url_generated_at, file_id)`, in the
/// same encoding on every backend, so a cursor means the same position on each.
pub(crate) fn encode_cursor(created: i64, file_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created}:{file_id}"))
}

/// Reads a cursor made by [`encode_cursor`]; anything else is [`StoreError::BadCursor`].
pub(crate) fn decode_cursor(cursor: &str) -> Result<(i64, String), StoreError> {
    if cursor.len() > 512 {
        return Err(StoreError::BadCursor);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::BadCursor)?;
    let (created, id) = text.split_once(':').ok_or(StoreError::BadCursor)?;
    if id.is_empty() {
        return Err(StoreError::BadCursor);
    }
    Ok((
        created.parse().map_err(|_| StoreError::BadCursor)?,
        id.to_owned(),
    ))
}

impl Page {
    /// A page from up to `limit + 1` records fetched newest first: the extra record, when there
    /// is one, only shows that another page follows, and the cursor points after the last kept.
    pub(crate) fn from_overfetch(mut records: Vec<FileRecord>, limit: usize) -> Self {
        let next_cursor = if records.len() > limit {
            records.truncate(limit);
            records
                .last()
                .map(|r| encode_cursor(r.upload_url_generated_at, &r.file_id))
        } else {
            None
        };
        Page {
            records,
            next_cursor,
        }
    }
}

/// Failures of a metadata backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record with that id already exists.
    #[error("a record with this id already exists")]
    Conflict,
    /// The paging cursor is not one this store issued.
    #[error("invalid cursor")]
    BadCursor,
    /// The backend failed (down, throttled, failing over): calling again may succeed.
    #[error("metadata store: {0}")]
    Backend(String),
    /// The store cannot serve this, and calling again will not help: a record it holds is
    /// malformed, or its writer has stopped.
    #[error("metadata store: {0}")]
    Broken(String),
}

/// File metadata with TTL. Implementations: SQLite (embedded default), PostgreSQL and DynamoDB
/// (shared by replicas); all pass [`conformance::run`].
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Inserts a new record; [`StoreError::Conflict`] if the id exists.
    async fn create(&self, record: &FileRecord) -> Result<(), StoreError>;
    /// The record of an id, expired or not.
    async fn get(&self, file_id: &str) -> Result<Option<FileRecord>, StoreError>;
    /// Marks a `pending`, unexpired (at `now`, epoch seconds) record `uploaded`. Returns `false`
    /// (and changes nothing) when the record is gone, expired or not pending.
    async fn mark_uploaded(
        &self,
        file_id: &str,
        done: &Completion,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Sets a record's TTL to `now` (an instant already past; `DELETE` gives [`GONE_TTL`]) so it
    /// is treated as gone at once; the sweeper (or the caller) then removes object and record.
    /// Returns `false` if there was no record.
    async fn expire(&self, file_id: &str, now: i64) -> Result<bool, StoreError>;
    /// Deletes a record; `false` if there was none.
    async fn delete(&self, file_id: &str) -> Result<bool, StoreError>;
    /// Deletes a record only if it is still expired at `now` (the sweeper's guard against a
    /// record that completed meanwhile).
    async fn delete_expired(&self, file_id: &str, now: i64) -> Result<bool, StoreError>;
    /// A principal's unexpired files, newest first.
    async fn list(
        &self,
        owner: &str,
        now: i64,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError>;
    /// Claims a record the sweeper saw expired at `now`: if its TTL is still at or before
    /// `now`, sets it to [`GONE_TTL`] and returns `true`. From then on the record is expired for
    /// every replica whatever its clock, so no edge can mark it uploaded while its object is
    /// being removed. `false` when the record is gone, has no TTL or was given a later one
    /// (completed or renewed meanwhile).
    async fn claim_expired(&self, file_id: &str, now: i64) -> Result<bool, StoreError>;
    /// Up to `limit` records whose TTL has passed at `now`.
    async fn expired(&self, now: i64, limit: usize) -> Result<Vec<FileRecord>, StoreError>;
    /// Records (or replaces, for a retried part) a stored part of a pending multipart upload.
    /// Returns `false` when the record is gone, expired, not pending or of another upload id.
    async fn put_part(
        &self,
        file_id: &str,
        upload_id: &str,
        part: &PartRecord,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// The stored parts of a file, by part number.
    async fn parts(&self, file_id: &str) -> Result<Vec<PartRecord>, StoreError>;
    /// Forgets the parts of a file (after assembly or abort).
    async fn delete_parts(&self, file_id: &str) -> Result<(), StoreError>;
    /// Moves a pending, unexpired record's TTL to `ttl` (resuming an upload extends it, and so
    /// does a PUT still receiving), unless it is later already: a TTL is never moved earlier, as
    /// another request may have extended it for the links it handed out. Returns whether the
    /// record is pending and unexpired at `now`.
    async fn extend_pending(&self, file_id: &str, ttl: i64, now: i64) -> Result<bool, StoreError>;
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
}
