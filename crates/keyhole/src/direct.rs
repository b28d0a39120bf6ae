//! Uploads whose bytes reached the storage without Keyhole's edge: `s3-presigned` links, and
//! CloudFront writing to S3 in the AWS shape. Nothing marks such a record `uploaded` when the
//! bytes land, so `POST /api/files/{fileId}/complete` finishes it by asking the backend: a HEAD
//! (and, when a SHA-256 was declared, a read) for a single-part upload; ListParts for the parts
//! of a multipart upload that the metadata store did not see.

use crate::api::Completed;
use crate::state::{now_secs, SharedState};
use crate::store::objects::ObjectError;
use crate::store::{FileRecord, PartRecord, Status, StoreError};

/// Why an upload that bypassed the edge could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// No object yet: the client has not PUT the bytes (or the PUT failed).
    #[error("the file's bytes have not arrived; PUT them to the upload URL, then complete again")]
    NotArrived,
    /// The object's size differs from the declared one; the object was deleted.
    #[error("the stored file has {got} bytes, not the declared {declared}; it was deleted: PUT the file again to its upload URL, then complete again")]
    SizeMismatch {
        /// The declared size.
        declared: u64,
        /// What arrived.
        got: u64,
    },
    /// The object is larger than the server accepts; it was deleted.
    #[error("the stored file has {got} bytes, more than the limit of {limit}; it was deleted")]
    TooLarge {
        /// What arrived.
        got: u64,
        /// The limit.
        limit: u64,
    },
    /// The object's SHA-256 differs from the declared one; the object was deleted.
    #[error("the SHA-256 of the stored file differs from the declared one; it was deleted: PUT the file again to its upload URL, then complete again")]
    Checksum,
    /// A file recorded from its storage event (before or while this call checked it) is not
    /// what was declared: the file was removed, record and all, so its link is of no use.
    #[error("{reason}; the file was removed: upload it again with a new upload link")]
    Removed {
        /// What was wrong with the stored file.
        reason: String,
    },
    /// Completed already (by the edge or an earlier call).
    #[error("the upload is already complete")]
    AlreadyUploaded,
    /// The record expired or was deleted meanwhile.
    #[error("the upload expired or was deleted while it was being completed")]
    Gone,
    /// The multipart upload is unknown to the storage (aborted or completed elsewhere).
    #[error("the storage no longer knows this multipart upload; start a new upload")]
    NoSuchUpload,
    /// The object storage failed.
    #[error(transparent)]
    Storage(ObjectError),
    /// The metadata store failed.
    #[error(transparent)]
    Meta(#[from] StoreError),
}

impl From<ObjectError> for DirectError {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::NotFound => DirectError::NotArrived,
            ObjectError::NoSuchUpload => DirectError::NoSuchUpload,
            other => DirectError::Storage(other),
        }
    }
}

impl DirectError {
    /// What was wrong with a refused object, without what to do about it.
    fn reason(&self) -> String {
        match self {
            DirectError::SizeMismatch { declared, got } => {
                format!("the stored file has {got} bytes, not the declared {declared}")
            }
            DirectError::TooLarge { got, limit } => {
                format!("the stored file has {got} bytes, more than the limit of {limit}")
            }
            DirectError::Checksum => {
                "the SHA-256 of the stored file differs from the declared one".to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// Completes a pending single-part upload whose bytes may have bypassed the edge: checks the
/// stored object against the declared size and SHA-256 and marks the record uploaded through
/// the store's conditional `mark_uploaded` (the edge's ETag and retention rules). An object that
/// fails a check is deleted, so the still-valid upload link can be used again.
pub async fn complete_single(
    state: &SharedState,
    record: &FileRecord,
) -> Result<Completed, DirectError> {
    let key = &record.object_key;
    let meta = state.objects.head(key).await?;
    let reject = |e: DirectError| async move {
        let _ = state.objects.delete(key).await;
        tracing::warn!(file_id = %record.file_id, error = %e, "direct upload refused; object deleted");
        // The storage's event (AWS) may have marked the record uploaded while this call read the
        // object: that record now names bytes that are gone, so the file goes with them, and the
        // client needs a new upload link.
        if let Ok(Some(now)) = state.meta.get(&record.file_id).await {
            if now.status == Status::Uploaded {
                remove_file(state, &now).await;
                return Err(DirectError::Removed { reason: e.reason() });
            }
        }
        Err(e)
    };
    if let Some(declared) = record.declared_size {
        if meta.size != declared {
            return reject(DirectError::SizeMismatch {
                declared,
                got: meta.size,
            })
            .await;
        }
    }
    let limit = state.config.max_upload_bytes;
    if meta.size > limit {
        return reject(DirectError::TooLarge {
            got: meta.size,
            limit,
        })
        .await;
    }
    let sha256 = match &record.declared_sha256 {
        None => None,
        Some(expected) => {
            let (actual, _) =
                crate::store::objects::sha256_of(&*state.objects, key, meta.size).await?;
            if !openssl::memcmp::eq(expected.as_bytes(), actual.as_bytes()) {
                return reject(DirectError::Checksum).await;
            }
            Some(actual)
        }
    };
    let done = crate::edge::completion(state, record, meta.size, sha256.clone(), meta.etag);
    if state
        .meta
        .mark_uploaded(&record.file_id, &done, now_secs())
        .await?
    {
        tracing::info!(file_id = %record.file_id, size = meta.size, "direct upload completed");
        return Ok(Completed {
            success: true,
            file_id: record.file_id.clone(),
            size: meta.size,
            sha256,
            etag: done.etag,
        });
    }
    // Not pending any more: completed by the edge meanwhile (keep the object), or gone.
    match state.meta.get(&record.file_id).await? {
        Some(r) if r.status == Status::Uploaded && !r.is_expired(now_secs()) => {
            Err(DirectError::AlreadyUploaded)
        }
        _ => {
            let _ = state.objects.delete(key).await;
            Err(DirectError::Gone)
        }
    }
}

/// `/complete` of a single-part upload that the storage's event marked uploaded first (on AWS
/// the S3 event checks the object's size, never its bytes, so the record has no SHA-256): when
/// a SHA-256 was declared, the stored object is read back and checked now, as
/// [`complete_single`] would have. Returns `Ok` when the bytes are the declared ones (or there is
/// nothing to check); otherwise the file is removed, object and record, since a refused upload
/// keeps nothing, and the answer is [`DirectError::Removed`]: the client uploads again.
pub async fn check_marked(state: &SharedState, record: &FileRecord) -> Result<(), DirectError> {
    let (Some(expected), None) = (&record.declared_sha256, &record.sha256) else {
        return Ok(());
    };
    if record.upload_id.is_some() || record.status != Status::Uploaded {
        return Ok(());
    }
    let key = &record.object_key;
    // An object gone meanwhile (deleted with its file) has nothing left to check.
    let meta = match state.objects.head(key).await {
        Ok(meta) => meta,
        Err(ObjectError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let actual = match crate::store::objects::sha256_of(&*state.objects, key, meta.size).await {
        Ok((actual, _)) => actual,
        Err(ObjectError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if openssl::memcmp::eq(expected.as_bytes(), actual.as_bytes()) {
        return Ok(());
    }
    tracing::warn!(
        file_id = %record.file_id,
        "an upload recorded from its storage event is not the declared SHA-256; file removed"
    );
    remove_file(state, record).await;
    Err(DirectError::Removed {
        reason: DirectError::Checksum.reason(),
    })
}

/// Removes a refused file as `DELETE /api/files/{id}` does ([`crate::sweeper::remove_now`]).
async fn remove_file(state: &SharedState, record: &FileRecord) {
    if let Err(e) = crate::sweeper::remove_now(state, record).await {
        tracing::warn!(file_id = %record.file_id, error = %e, "refused file not expired; its record stays until it is");
    }
}

/// The stored parts of a multipart upload: those the edge recorded in the metadata store,
/// completed with the ones the storage holds (ListParts) when the metadata store lacks some,
/// for parts PUT to presigned URLs or through CloudFront. Parts known only to the storage have
/// no SHA-256 (S3 does not report one).
pub async fn parts(
    state: &SharedState,
    record: &FileRecord,
) -> Result<Vec<PartRecord>, DirectError> {
    let mut parts = state.meta.parts(&record.file_id).await?;
    let count = record.part_count().unwrap_or(0);
    let complete = (1..=count).all(|n| parts.iter().any(|p| p.part_number == n));
    let Some(upload_id) = record.upload_id.as_deref() else {
        return Ok(parts);
    };
    if complete {
        return Ok(parts);
    }
    let Some(stored) = state
        .objects
        .list_parts(&record.object_key, upload_id)
        .await?
    else {
        return Ok(parts);
    };
    for p in stored {
        if p.number >= 1 && p.number <= count && !parts.iter().any(|r| r.part_number == p.number) {
            parts.push(PartRecord {
                part_number: p.number,
                size: p.size,
                sha256: String::new(),
                etag: p.etag,
            });
        }
    }
    parts.sort_by_key(|p| p.part_number);
    Ok(parts)
}
