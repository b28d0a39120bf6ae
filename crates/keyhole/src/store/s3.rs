//! Objects on S3 (or any S3-compatible server) through the `object_store` crate, for stateless
//! replicas sharing one bucket.
//!
//! Whole objects stream into an S3 multipart upload and become visible only when it completes;
//! multipart uploads map one-to-one onto S3's, so parts are assembled by S3 itself. Write-once is
//! S3's conditional write: the PUT of a small object and the completion of a multipart upload
//! carry `If-None-Match: *`, so of two uploads racing for one key exactly one is stored and the
//! other gets [`ObjectError::Exists`] (S3 has honoured this since August 2024; an S3-compatible
//! server that ignores the header would let the later one overwrite).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutMode, PutOptions, PutPayload};

use super::objects::{
    valid_key, Assembled, ByteStream, ObjectError, ObjectMeta, ObjectStorage, ObjectWriter,
    PresignOp, StoredPart,
};
use super::s3_api::S3Api;

/// Size of the parts a whole-object upload is cut into (S3 needs at least 5 MiB but the last).
const CHUNK: usize = 8 * 1024 * 1024;

/// S3 connection settings.
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (empty, or ending without a slash).
    pub prefix: String,
    /// Endpoint for S3-compatible servers (path-style requests); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region (default from `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
}

impl S3Settings {
    /// Parses `s3://BUCKET[/PREFIX]`.
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        let ok_bucket = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        (ok_bucket && (prefix.is_empty() || valid_key(prefix))).then(|| S3Settings {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: None,
            region: None,
        })
    }

    /// The region: the configured one, else `AWS_REGION`, `AWS_DEFAULT_REGION`, else
    /// `us-east-1`.
    pub fn region_or_default(&self) -> String {
        self.region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned())
    }
}

fn backend(e: object_store::Error) -> ObjectError {
    match e {
        object_store::Error::NotFound { .. } => ObjectError::NotFound,
        object_store::Error::AlreadyExists { .. } => ObjectError::Exists,
        object_store::Error::Precondition { .. } => ObjectError::Changed,
        other => ObjectError::Io(std::io::Error::other(other.to_string())),
    }
}

/// Objects in an S3 bucket.
#[derive(Clone, Debug)]
pub struct S3Storage {
    store: Arc<AmazonS3>,
    prefix: String,
    settings: S3Settings,
    /// The `aws-sdk-s3` client for presigning and ListParts, made on first use.
    sdk: Arc<tokio::sync::OnceCell<S3Api>>,
    /// KiB of memory the uploads in flight may buffer (see [`S3Storage::with_upload_budget`]).
    buffers: Arc<tokio::sync::Semaphore>,
}

/// KiB of `bytes`, rounded up, as semaphore permits.
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl S3Storage {
    /// Connects with credentials from the standard AWS environment variables (and the instance
    /// or container role where `object_store` finds one).
    pub fn connect(settings: &S3Settings) -> Result<Self, ObjectError> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&settings.bucket);
        let region = settings.region_or_default();
        builder = builder.with_region(region);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(backend)?;
        Ok(S3Storage {
            store: Arc::new(store),
            prefix: settings.prefix.clone(),
            settings: settings.clone(),
            sdk: Arc::default(),
            buffers: Arc::new(tokio::sync::Semaphore::new(kib(
                crate::config::defaults::UPLOAD_BUFFER_BYTES,
            ) as usize)),
        })
    }

    /// The same storage with `bytes` of memory for the uploads in flight: a part passes through
    /// memory whole (S3 needs its length before its first byte, and only checked bytes may
    /// reach the bucket), a whole-file upload 8 MiB at a time. An upload that would go past it
    /// is refused at once with [`ObjectError::Busy`] (the edge answers 503 `SlowDown`), so
    /// many uploads at once cannot exhaust the process's memory.
    pub fn with_upload_budget(mut self, bytes: u64) -> Self {
        let permits = usize::try_from(bytes.div_ceil(1024)).unwrap_or(usize::MAX >> 4);
        self.buffers = Arc::new(tokio::sync::Semaphore::new(
            permits.min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        self
    }

    /// Takes `bytes` of the upload budget, or [`ObjectError::Busy`].
    fn reserve(&self, bytes: u64) -> Result<tokio::sync::OwnedSemaphorePermit, ObjectError> {
        self.buffers
            .clone()
            .try_acquire_many_owned(kib(bytes))
            .map_err(|_| ObjectError::Busy)
    }

    async fn sdk(&self) -> &S3Api {
        self.sdk
            .get_or_init(|| S3Api::connect(&self.settings))
            .await
    }

    fn path(&self, key: &str) -> Result<Path, ObjectError> {
        if !valid_key(key) {
            return Err(ObjectError::InvalidKey);
        }
        Ok(if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        })
    }

    async fn exists(&self, path: &Path) -> Result<bool, ObjectError> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }
}

/// Streams a whole object into an S3 multipart upload, `CHUNK` bytes per part.
struct S3Writer {
    /// Its share of the upload budget, while it lives.
    _budget: tokio::sync::OwnedSemaphorePermit,
    store: Arc<AmazonS3>,
    /// For the conditional completion, which `object_store` does not offer.
    storage: S3Storage,
    key: String,
    path: Path,
    upload: Option<String>,
    parts: Vec<PartId>,
    buffer: BytesMut,
    done: bool,
}

impl S3Writer {
    async fn flush_part(&mut self) -> Result<(), ObjectError> {
        let upload = match &self.upload {
            Some(u) => u.clone(),
            None => {
                let id = self
                    .store
                    .create_multipart(&self.path)
                    .await
                    .map_err(backend)?;
                self.upload = Some(id.clone());
                id
            }
        };
        let data = self.buffer.split().freeze();
        let part = self
            .store
            .put_part(
                &self.path,
                &upload,
                self.parts.len(),
                PutPayload::from(data),
            )
            .await
            .map_err(backend)?;
        self.parts.push(part);
        Ok(())
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let (Some(upload), Ok(handle)) =
            (self.upload.take(), tokio::runtime::Handle::try_current())
        {
            let store = self.store.clone();
            let path = self.path.clone();
            handle.spawn(async move {
                let _ = store.abort_multipart(&path, &upload).await;
            });
        }
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError> {
        self.buffer.extend_from_slice(&chunk);
        if self.buffer.len() >= CHUNK {
            self.flush_part().await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<Option<String>, ObjectError> {
        let etag = if self.upload.is_none() {
            // Small object: one conditional PUT.
            let data = self.buffer.split().freeze();
            let create = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            self.store
                .put_opts(&self.path, PutPayload::from(data), create)
                .await
                .map_err(backend)?
                .e_tag
        } else {
            if !self.buffer.is_empty() {
                self.flush_part().await?;
            }
            let upload = self.upload.clone().unwrap_or_default();
            // `object_store` numbers its parts from 0; S3 from 1.
            let parts: Vec<(u32, String)> = (1..)
                .zip(self.parts.iter().map(|p| p.content_id.clone()))
                .collect();
            // On failure (Exists included) `done` stays false and drop aborts the upload.
            self.storage
                .sdk()
                .await
                .complete_if_absent(&self.key, &upload, &parts)
                .await?
        };
        self.done = true;
        Ok(etag)
    }
}

/// Buffers one part (bounded by its declared size) and sends it as an S3 UploadPart.
struct S3PartWriter {
    /// Its share of the upload budget, while it lives.
    _budget: tokio::sync::OwnedSemaphorePermit,
    store: Arc<AmazonS3>,
    path: Path,
    upload: String,
    index: usize,
    buffer: BytesMut,
    limit: u64,
}

#[async_trait]
impl ObjectWriter for S3PartWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError> {
        if (self.buffer.len() + chunk.len()) as u64 > self.limit {
            return Err(ObjectError::Io(std::io::Error::other(
                "part larger than declared",
            )));
        }
        self.buffer.extend_from_slice(&chunk);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<Option<String>, ObjectError> {
        let data = self.buffer.split().freeze();
        let part = self
            .store
            .put_part(&self.path, &self.upload, self.index, PutPayload::from(data))
            .await
            .map_err(|e| match backend(e) {
                ObjectError::NotFound => ObjectError::NoSuchUpload,
                other => other,
            })?;
        Ok(Some(part.content_id))
    }
}

#[async_trait]
impl ObjectStorage for S3Storage {
    async fn begin_write(&self, key: &str) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        let path = self.path(key)?;
        if self.exists(&path).await? {
            return Err(ObjectError::Exists);
        }
        let budget = self.reserve(CHUNK as u64)?;
        Ok(Box::new(S3Writer {
            _budget: budget,
            store: self.store.clone(),
            storage: self.clone(),
            key: key.to_owned(),
            path,
            upload: None,
            parts: Vec::new(),
            buffer: BytesMut::with_capacity(CHUNK),
            done: false,
        }))
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, ObjectError> {
        let meta = self.store.head(&self.path(key)?).await.map_err(backend)?;
        Ok(ObjectMeta {
            size: meta.size,
            last_modified: meta.last_modified.into(),
            etag: meta.e_tag,
        })
    }

    async fn read(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        etag: Option<&str>,
    ) -> Result<ByteStream, ObjectError> {
        let path = self.path(key)?;
        if len == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(offset..offset + len)),
            // S3 answers 412 if the object was replaced since `head` (a second PUT through a
            // presigned link, say): the length and validators already chosen would not fit.
            if_match: etag.map(str::to_owned),
            ..Default::default()
        };
        let result = self.store.get_opts(&path, options).await.map_err(backend)?;
        Ok(result
            .into_stream()
            .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())))
            .boxed())
    }

    async fn delete(&self, key: &str) -> Result<bool, ObjectError> {
        let path = self.path(key)?;
        let existed = self.exists(&path).await?;
        if existed {
            self.store.delete(&path).await.map_err(backend)?;
        }
        Ok(existed)
    }

    async fn create_multipart(&self, key: &str) -> Result<String, ObjectError> {
        let path = self.path(key)?;
        self.store.create_multipart(&path).await.map_err(backend)
    }

    async fn begin_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        size: u64,
    ) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        let budget = self.reserve(size.min(64 * 1024 * 1024))?;
        Ok(Box::new(S3PartWriter {
            _budget: budget,
            store: self.store.clone(),
            path: self.path(key)?,
            upload: upload_id.to_owned(),
            index: number.saturating_sub(1) as usize,
            buffer: BytesMut::with_capacity(size.min(64 * 1024 * 1024) as usize),
            limit: size,
        }))
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[StoredPart],
        _expected_sha256: Option<&str>,
    ) -> Result<Assembled, ObjectError> {
        let numbered: Vec<(u32, String)> =
            parts.iter().map(|p| (p.number, p.etag.clone())).collect();
        let etag = self
            .sdk()
            .await
            .complete_if_absent(key, upload_id, &numbered)
            .await?;
        Ok(Assembled {
            size: parts.iter().map(|p| p.size).sum(),
            sha256: None,
            etag,
        })
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        let path = self.path(key)?;
        match self
            .store
            .abort_multipart(&path, &upload_id.to_owned())
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    fn single_writer(&self) -> bool {
        false
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        let path = self.path(prefix)?;
        let listing = self
            .store
            .list_with_delimiter(Some(&path))
            .await
            .map_err(backend)?;
        let strip = |p: &Path| {
            let s = p.as_ref();
            let s = if self.prefix.is_empty() {
                s
            } else {
                s.strip_prefix(&self.prefix)
                    .unwrap_or(s)
                    .trim_start_matches('/')
            };
            s.to_owned()
        };
        Ok(listing
            .objects
            .iter()
            .map(|o| strip(&o.location))
            .chain(listing.common_prefixes.iter().map(strip))
            .collect())
    }

    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Vec<StoredPart>>, ObjectError> {
        self.sdk().await.list_parts(key, upload_id).await.map(Some)
    }

    async fn delete_version(&self, key: &str, version_id: &str) -> Result<bool, ObjectError> {
        self.sdk().await.delete_version(key, version_id).await?;
        Ok(true)
    }

    async fn presign(
        &self,
        key: &str,
        op: &PresignOp<'_>,
        start: std::time::SystemTime,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, ObjectError> {
        self.sdk()
            .await
            .presign(key, op, start, ttl)
            .await
            .map(Some)
    }

    async fn ping(&self) -> Result<(), ObjectError> {
        let path = self.path("uploads")?;
        self.store
            .list_with_delimiter(Some(&path))
            .await
            .map(|_| ())
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_storage_urls() {
        let s = S3Settings::parse("s3://my-bucket/keyhole/files").unwrap();
        assert_eq!(
            (s.bucket.as_str(), s.prefix.as_str()),
            ("my-bucket", "keyhole/files")
        );
        let s = S3Settings::parse("s3://my-bucket").unwrap();
        assert_eq!(s.prefix, "");
        for bad in ["s3://", "s3://Bad_Bucket", "http://x", "s3://b/../x"] {
            assert!(S3Settings::parse(bad).is_none(), "{bad}");
        }
    }
}
