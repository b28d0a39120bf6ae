//! Object bytes. [`ObjectStorage`] is what the edge and the API use; [`LocalDisk`] keeps objects
//! as files under the data directory.
//!
//! Writes are staged and committed atomically and write-once: bytes stream into a temporary file
//! in the same file system, which is fsynced and then hard-linked into place (the link fails if
//! the object exists, so a second upload can never replace the first), and the directory is
//! fsynced. A crash at any point leaves either no object or the complete one; stray temporary
//! files are removed at start-up.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

/// Failures of an object backend.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The object already exists (write-once).
    #[error("object already exists")]
    Exists,
    /// No such object.
    #[error("object not found")]
    NotFound,
    /// The key is not a valid object key.
    #[error("invalid object key")]
    InvalidKey,
    /// The assembled bytes differ from the declared SHA-256; nothing was stored.
    #[error("checksum mismatch")]
    Checksum,
    /// A multipart upload or part is unknown to the backend.
    #[error("no such upload")]
    NoSuchUpload,
    /// The memory uploads may hold on their way to the backend is all in use; try again.
    #[error("the upload buffers are all in use")]
    Busy,
    /// The object is no longer the version a read was pinned to (see [`ObjectStorage::read`]).
    #[error("the object changed since it was looked up")]
    Changed,
    /// The backend failed.
    #[error("object storage: {0}")]
    Io(#[from] std::io::Error),
}

/// Facts about a stored object.
#[derive(Clone, Debug)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub last_modified: SystemTime,
    /// The backend's ETag, when it keeps one (S3); local disk has none.
    pub etag: Option<String>,
}

/// A request an object backend can presign, so a client reaches the bytes without Keyhole (the
/// legacy `s3-presigned` link mode).
#[derive(Clone, Copy, Debug)]
pub enum PresignOp<'a> {
    /// PUT the whole object.
    Put {
        /// The declared size: signed as the request's `Content-Length`, so S3 refuses a body of
        /// any other length (as Keyhole's edge does) instead of storing it until `/complete`.
        content_length: Option<u64>,
    },
    /// PUT one part of a multipart upload (S3's UploadPart).
    UploadPart {
        /// The multipart upload id.
        upload_id: &'a str,
        /// 1-based part number.
        part_number: u32,
        /// The part's size, signed as `Content-Length` likewise.
        content_length: Option<u64>,
    },
    /// GET the object; the response carries these headers so browsers save the right name.
    Get {
        /// `Content-Type` of the response.
        content_type: &'a str,
        /// `Content-Disposition` of the response.
        content_disposition: &'a str,
    },
}

/// A byte stream of (part of) an object.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// An upload in progress. Dropping it without [`ObjectWriter::commit`] discards the bytes.
#[async_trait]
pub trait ObjectWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError>;
    /// Makes the bytes visible (atomically; write-once for whole objects). Returns the backend's
    /// ETag for the bytes, when it has one of its own (S3 part ETags are needed to complete).
    async fn commit(self: Box<Self>) -> Result<Option<String>, ObjectError>;
}

/// A stored part, as completion needs it.
#[derive(Clone, Debug)]
pub struct StoredPart {
    /// 1-based part number.
    pub number: u32,
    /// Bytes in the part.
    pub size: u64,
    /// The backend's ETag for the part (what its `commit` returned, or the quoted SHA-256).
    pub etag: String,
}

/// The result of assembling a multipart upload.
#[derive(Clone, Debug)]
pub struct Assembled {
    /// Bytes in the object.
    pub size: u64,
    /// SHA-256 of the whole object, when the backend saw the bytes (local disk); S3 assembles
    /// parts server-side without Keyhole reading them.
    pub sha256: Option<String>,
    /// The backend's ETag for the object, if any.
    pub etag: Option<String>,
}

/// Object storage as the handlers see it: whole objects written atomically and write-once, and
/// S3's multipart model (create, put parts in any order and again, complete, abort).
#[async_trait]
pub trait ObjectStorage: Send + Sync + 'static {
    /// Starts writing `key`; nothing is visible until commit, and commit fails with
    /// [`ObjectError::Exists`] if the key exists by then.
    async fn begin_write(&self, key: &str) -> Result<Box<dyn ObjectWriter>, ObjectError>;
    /// Metadata of `key`.
    async fn head(&self, key: &str) -> Result<ObjectMeta, ObjectError>;
    /// Streams `len` bytes of `key` from `offset`. With `etag` (what [`ObjectStorage::head`]
    /// answered), a backend that keeps ETags reads only that version of the object, or fails with
    /// [`ObjectError::Changed`]: the headers a download sent from the `head` then describe the
    /// bytes it sends.
    async fn read(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        etag: Option<&str>,
    ) -> Result<ByteStream, ObjectError>;
    /// Deletes `key`; `false` if it was not there.
    async fn delete(&self, key: &str) -> Result<bool, ObjectError>;
    /// Starts a multipart upload of `key`; returns its upload id.
    async fn create_multipart(&self, key: &str) -> Result<String, ObjectError>;
    /// Starts writing part `number` of an upload; a part written again replaces the earlier one.
    /// `size` is the part's exact length.
    async fn begin_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        size: u64,
    ) -> Result<Box<dyn ObjectWriter>, ObjectError>;
    /// Joins `parts` (every part, ascending) into `key`, atomically and write-once, then frees
    /// the parts. When `expected_sha256` is given and the backend sees the bytes, a mismatch
    /// fails with [`ObjectError::Checksum`] and nothing is stored.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[StoredPart],
        expected_sha256: Option<&str>,
    ) -> Result<Assembled, ObjectError>;
    /// Abandons a multipart upload and frees its parts (no error if already gone).
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ObjectError>;
    /// Whether this process is the only writer, so start-up reconciliation of committed but unrecorded
    /// objects is safe (true for local disk, false for shared object stores).
    fn single_writer(&self) -> bool;
    /// The keys one level below `prefix` (`uploads` lists `uploads/{id}` objects).
    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError>;
    /// Checks the backend can be written, for readiness.
    async fn ping(&self) -> Result<(), ObjectError>;
    /// The parts the backend itself holds for a multipart upload of `key`, by part number, for
    /// parts that reached it without Keyhole's edge (presigned URLs, CloudFront to S3).
    /// `Ok(None)` when the backend has no such listing (local disk: only the edge writes parts,
    /// and it records them in the metadata store).
    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Vec<StoredPart>>, ObjectError>;
    /// Removes the version `version_id` of `key` for good, so the version before it is the
    /// current one again (S3 with versioning). `Ok(false)` when the backend keeps no versions
    /// (local disk, where nothing overwrites an object).
    async fn delete_version(&self, key: &str, version_id: &str) -> Result<bool, ObjectError> {
        let _ = (key, version_id);
        Ok(false)
    }
    /// A URL that performs `op` on `key` directly against the backend, signed by the backend's
    /// own scheme (S3: SigV4 query parameters), valid from `start` for `ttl`. `Ok(None)` when
    /// the backend has no such URLs (local disk).
    async fn presign(
        &self,
        key: &str,
        op: &PresignOp<'_>,
        start: SystemTime,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, ObjectError> {
        let _ = (key, op, start, ttl);
        Ok(None)
    }
}

/// Objects as files under a root directory, with a staging directory beside it.
#[derive(Clone, Debug)]
pub struct LocalDisk {
    root: PathBuf,
    staging: PathBuf,
    /// `ROOT.lock` beside `root`, locked exclusively while any clone of this store lives: one process owns
    /// a data directory (it removes staged files it finds at start and reconciles objects with
    /// their records, which would break another process's uploads in flight).
    _lock: std::sync::Arc<std::fs::File>,
    /// The large download buffers (see [`FileChunks`]).
    read_buffers: std::sync::Arc<ReadBuffers>,
}

/// Checks an object key: `/`-separated components of `[A-Za-z0-9._-]`, none empty, none
/// starting with a dot (so never `.` or `..`). Nothing else ever reaches the file system.
pub fn valid_key(key: &str) -> bool {
    key.len() <= 512
        && key.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// `N` random bytes as hex, for staging names and upload ids; fails with the system's random
/// generator rather than falling back to guessable names.
fn random_hex<const N: usize>() -> Result<String, ObjectError> {
    crate::ids::random_bytes::<N>()
        .map(hex::encode)
        .map_err(|e| ObjectError::Io(std::io::Error::other(e)))
}

/// Where the parts of an upload of `key` live on local disk: `parts/{last component}/{upload id}`.
fn parts_dir(key: &str, upload_id: &str) -> Result<String, ObjectError> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let dir = format!("parts/{name}/{upload_id}");
    if valid_key(&dir) {
        Ok(dir)
    } else {
        Err(ObjectError::InvalidKey)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Creates `dir` and whatever parents are missing, syncing the parent of each directory created,
/// so that after a power cut the new directories (and the object about to be linked into them)
/// are still reachable.
fn create_dir_durable(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at);
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    for created in missing.into_iter().rev() {
        match std::fs::create_dir(created) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = created.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Reads the stored object `key` back (its first `size` bytes) and returns the SHA-256 (hex) of
/// what was read and how many bytes that was: for checks of bytes that reached the storage
/// without passing Keyhole's edge, or whose record was never written.
pub async fn sha256_of(
    store: &dyn ObjectStorage,
    key: &str,
    size: u64,
) -> Result<(String, u64), ObjectError> {
    let mut stream = store.read(key, 0, size, None).await?;
    let mut hasher = openssl::sha::Sha256::new();
    let mut read = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        read += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok((hex::encode(hasher.finish()), read))
}

impl LocalDisk {
    /// Opens (creating) `root` for objects and `staging` for uploads in progress, and removes
    /// staged files a previous process left behind. Both must be on the same file system.
    ///
    /// Fails if another `LocalDisk` (in this process or another) has `root` open.
    pub fn open(root: PathBuf, staging: PathBuf) -> Result<Self, ObjectError> {
        create_dir_durable(&root)?;
        create_dir_durable(&staging)?;
        let lock_path = root.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ObjectError::Io(std::io::Error::other(format!(
                    "{} is in use by another keyhole process (it holds {}); one process owns a \
                     data directory: stop the other, or give this one its own --data-dir",
                    root.display(),
                    lock_path.display()
                ))))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        for entry in std::fs::read_dir(&staging)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(LocalDisk {
            root,
            staging,
            _lock: std::sync::Arc::new(lock),
            read_buffers: std::sync::Arc::new(ReadBuffers {
                budget: std::sync::Arc::new(tokio::sync::Semaphore::new(READ_BUDGET_KIB)),
                idle: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, ObjectError> {
        if !valid_key(key) {
            return Err(ObjectError::InvalidKey);
        }
        Ok(self.root.join(key))
    }
}

/// Bytes a local upload writes between two background `fdatasync` calls.
const EARLY_SYNC_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes of an upload gathered before they go to the file in one write on the blocking pool.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Chunks smaller than this are copied together rather than kept one by one, so a client that
/// sends its body in dribbles costs neither many system calls nor many pinned buffers.
const SMALL_CHUNK_BYTES: usize = 16 * 1024;

/// An upload being staged on local disk. The body's chunks are not copied: they gather into a
/// batch of [`WRITE_BATCH_BYTES`] that one vectored write puts in the file on the blocking pool,
/// while the next batch arrives (one write in flight, so the bytes stay in order). The batch is
/// still in the CPU's cache from being received and hashed when the kernel copies it.
struct LocalWriter {
    /// The staged file; `None` once committed.
    file: Option<std::sync::Arc<std::fs::File>>,
    temp: PathBuf,
    dest: PathBuf,
    replace: bool,
    /// Chunks received and not yet handed to a write.
    pending: Vec<Bytes>,
    /// Small chunks copied together; joins `pending` when it grows or a large chunk comes.
    small: bytes::BytesMut,
    /// Bytes in `pending` and `small`.
    pending_len: usize,
    /// The write in flight, if any.
    writing: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Written since the last background sync started.
    unsynced: u64,
    /// The background sync in flight, if any.
    syncing: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Writes every byte of `batch` at the file's current end, in order.
fn write_batch(mut file: &std::fs::File, batch: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn joined(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), ObjectError> {
    result
        .map_err(|e| ObjectError::Io(std::io::Error::other(e)))?
        .map_err(ObjectError::Io)
}

fn committed() -> ObjectError {
    ObjectError::Io(std::io::Error::other("writer already committed"))
}

impl LocalWriter {
    /// Moves the small chunks copied together so far, if any, to the end of the batch.
    fn queue_small(&mut self) {
        if !self.small.is_empty() {
            let small = self.small.split().freeze();
            self.pending.push(small);
        }
    }

    /// Hands everything gathered to one write on the blocking pool, after the previous one has
    /// finished (its error, if any, fails the upload here).
    async fn write_pending(&mut self) -> Result<(), ObjectError> {
        self.finish_write().await?;
        self.queue_small();
        if self.pending.is_empty() {
            return Ok(());
        }
        let file = self.file.clone().ok_or_else(committed)?;
        let batch = std::mem::take(&mut self.pending);
        let written = std::mem::take(&mut self.pending_len) as u64;
        self.writing = Some(tokio::task::spawn_blocking(move || {
            write_batch(&file, &batch)
        }));
        self.sync_in_background(written).await
    }

    /// Waits for the write in flight and returns its error.
    async fn finish_write(&mut self) -> Result<(), ObjectError> {
        match self.writing.take() {
            Some(task) => joined(task.await),
            None => Ok(()),
        }
    }

    /// Keeps the disk busy while the body arrives: every [`EARLY_SYNC_BYTES`], an `fdatasync`
    /// on the blocking pool (never two at once), so the one before the commit has only the tail
    /// left to write instead of the whole file. A failed sync fails the upload: its error is
    /// reported once, here, and a later sync would not report it again.
    async fn sync_in_background(&mut self, written: u64) -> Result<(), ObjectError> {
        self.unsynced += written;
        if self.unsynced < EARLY_SYNC_BYTES {
            return Ok(());
        }
        if let Some(task) = &self.syncing {
            if !task.is_finished() {
                return Ok(());
            }
        }
        self.finish_sync().await?;
        if let Some(file) = &self.file {
            let file = file.clone();
            self.unsynced = 0;
            self.syncing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        }
        Ok(())
    }

    /// Waits for the background sync in flight and returns its error.
    async fn finish_sync(&mut self) -> Result<(), ObjectError> {
        match self.syncing.take() {
            Some(task) => joined(task.await),
            None => Ok(()),
        }
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        // A write still in flight goes to the unlinked file and is lost with it.
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[async_trait]
impl ObjectWriter for LocalWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), ObjectError> {
        if self.file.is_none() {
            return Err(committed());
        }
        self.pending_len += chunk.len();
        if chunk.len() < SMALL_CHUNK_BYTES {
            self.small.extend_from_slice(&chunk);
            if self.small.len() >= SMALL_CHUNK_BYTES * 4 {
                self.queue_small();
            }
        } else {
            self.queue_small();
            self.pending.push(chunk);
        }
        if self.pending_len >= WRITE_BATCH_BYTES {
            self.write_pending().await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<Option<String>, ObjectError> {
        let Some(file) = self.file.clone() else {
            return Err(committed());
        };
        let temp = self.temp.clone();
        let dest = self.dest.clone();
        let replace = self.replace;
        let written = async {
            self.write_pending().await?;
            self.finish_write().await?;
            self.finish_sync().await
        }
        .await;
        // From here on the staged name is removed by the commit, not by drop.
        self.file = None;
        let result: Result<(), ObjectError> = async {
            written?;
            tokio::task::spawn_blocking(move || -> Result<(), ObjectError> {
                let put = || -> Result<(), ObjectError> {
                    file.sync_all()?;
                    drop(file);
                    let parent = dest.parent().ok_or(ObjectError::InvalidKey)?;
                    create_dir_durable(parent)?;
                    if replace {
                        std::fs::rename(&temp, &dest)?;
                        sync_dir(parent)?;
                        return Ok(());
                    }
                    match std::fs::hard_link(&temp, &dest) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            return Err(ObjectError::Exists)
                        }
                        Err(e) => return Err(e.into()),
                    }
                    sync_dir(parent)?;
                    Ok(())
                };
                let result = put();
                // Here, not after the await: a caller dropped meanwhile (a client gone) would
                // leave the staged name, a second link holding the file's space after the
                // file is deleted, until the next start clears the staging directory.
                let _ = std::fs::remove_file(&temp);
                result
            })
            .await
            .map_err(|e| ObjectError::Io(std::io::Error::other(e)))?
        }
        .await;
        // The staged name is removed whether or not the commit succeeded (again, for a write
        // that failed before the closure above ran).
        let _ = tokio::fs::remove_file(&self.temp).await;
        result.map(|()| None)
    }
}

/// Bytes read per positioned read of a download, while the read budget lasts.
const READ_CHUNK: usize = 512 * 1024;
/// Bytes per read once the budget is spent: downloads still progress, in small steps.
const SMALL_READ_CHUNK: usize = 64 * 1024;
/// Reads in flight ahead of the one the response is sending.
const READ_AHEAD: usize = 2;
/// KiB of large read buffers all downloads together may hold (32 MiB), so memory stays bounded
/// however many downloads run: 16 streams at full speed fit (3 chunks each: two reading, one
/// sending); beyond that, downloads fall back to small reads.
const READ_BUDGET_KIB: usize = 32 * 1024;
/// Large buffers kept for the next downloads once sent (8 MiB): reused rather than freed, so
/// a busy server does not churn half-megabyte allocations through the allocator's per-thread
/// arenas (which keep what they free, and grow the resident size).
const MAX_IDLE_BUFFERS: usize = 16;

/// The large download buffers: the budget they draw on and those free for reuse.
struct ReadBuffers {
    /// KiB of large buffers all downloads may hold at once.
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    idle: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for ReadBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBuffers")
            .field("budget_kib_free", &self.budget.available_permits())
            .field("idle", &self.idle.lock().map_or(0, |idle| idle.len()))
            .finish()
    }
}

impl ReadBuffers {
    /// A buffer of [`READ_CHUNK`] bytes and its share of the budget, or `None` when the budget
    /// is spent.
    fn take(self: &std::sync::Arc<Self>) -> Option<Budgeted> {
        let permit = self
            .budget
            .clone()
            .try_acquire_many_owned((READ_CHUNK / 1024) as u32)
            .ok()?;
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        Some(Budgeted {
            buf: reused.unwrap_or_else(|| vec![0u8; READ_CHUNK]),
            len: READ_CHUNK,
            home: Some(self.clone()),
            _permit: Some(permit),
        })
    }
}

/// A range of a local file as a stream of chunks, read with positioned reads on the blocking pool
/// straight into the buffers the response sends (no second copy), with up to [`READ_AHEAD`]
/// reads in flight, so the disk or page cache is read while the previous chunk goes out. Each
/// read is its own short blocking task, so a slow client holds buffers, never a thread. A large
/// buffer holds its share of the store's read budget until the response has sent it; with the
/// budget spent, reads are small. A file that ends early is an error, never a short body that
/// looks complete.
struct FileChunks {
    file: std::sync::Arc<std::fs::File>,
    /// Where the next read not yet started begins.
    next: u64,
    /// Bytes not yet asked of a read.
    unread: u64,
    buffers: std::sync::Arc<ReadBuffers>,
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<std::io::Result<Bytes>>>,
}

impl FileChunks {
    fn new(
        file: std::fs::File,
        offset: u64,
        len: u64,
        buffers: std::sync::Arc<ReadBuffers>,
    ) -> Self {
        Self {
            file: std::sync::Arc::new(file),
            next: offset,
            unread: len,
            buffers,
            in_flight: std::collections::VecDeque::with_capacity(READ_AHEAD),
        }
    }

    fn start_reads(&mut self) {
        while self.in_flight.len() < READ_AHEAD && self.unread > 0 {
            // A small file or the tail of a range gets a buffer of its own size, so it never
            // holds a large buffer (and its share of the budget) while a slow client reads it.
            let large = if self.unread > SMALL_READ_CHUNK as u64 {
                self.buffers.take()
            } else {
                None
            };
            let mut chunk = large.unwrap_or_else(|| {
                let n = self.unread.min(SMALL_READ_CHUNK as u64) as usize;
                Budgeted {
                    buf: vec![0u8; n],
                    len: n,
                    home: None,
                    _permit: None,
                }
            });
            chunk.len = self.unread.min(chunk.len as u64) as usize;
            let (file, at) = (self.file.clone(), self.next);
            self.next += chunk.len as u64;
            self.unread -= chunk.len as u64;
            self.in_flight
                .push_back(tokio::task::spawn_blocking(move || {
                    read_exact_at(&file, at, &mut chunk.buf[..chunk.len])?;
                    Ok(Bytes::from_owner(chunk))
                }));
        }
    }
}

/// A read buffer: its first `len` bytes are the chunk. A large one holds its share of the read
/// budget until it is dropped, and then goes back to the idle buffers (while they have room).
struct Budgeted {
    buf: Vec<u8>,
    len: usize,
    /// Where a large buffer returns.
    home: Option<std::sync::Arc<ReadBuffers>>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Budgeted {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            if let Ok(mut idle) = home.idle.lock() {
                if idle.len() < MAX_IDLE_BUFFERS {
                    idle.push(std::mem::take(&mut self.buf));
                }
            }
        }
    }
}

/// Fills all of `buf` from `at` on, or fails. A reused buffer still holds an earlier download's
/// bytes, so only a buffer filled completely may become a chunk: on any error it goes back unsent.
fn read_exact_at(file: &std::fs::File, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    std::os::unix::fs::FileExt::read_exact_at(file, buf, at)?;
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match file.seek_read(&mut buf[done..], at + done as u64) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    // Without positioned reads the buffer would stay as it was, so a reused one would send an
    // earlier download's bytes: refuse rather than do that.
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, at, buf);
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "positioned file reads are not available on this platform",
        ));
    }
    #[allow(unreachable_code)]
    Ok(())
}

impl futures_util::Stream for FileChunks {
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        self.start_reads();
        let Some(front) = self.in_flight.front_mut() else {
            return Poll::Ready(None);
        };
        let result = match std::pin::Pin::new(front).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(joined) => joined.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        };
        self.in_flight.pop_front();
        if result.is_err() {
            // Nothing follows an error: the body ends there, visibly short.
            self.unread = 0;
            self.in_flight.clear();
        } else {
            self.start_reads();
        }
        Poll::Ready(Some(result))
    }
}

impl LocalDisk {
    async fn writer(&self, key: &str, replace: bool) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        let dest = self.path_of(key)?;
        if !replace && tokio::fs::try_exists(&dest).await? {
            return Err(ObjectError::Exists);
        }
        let temp = self.staging.join(format!("{}.part", random_hex::<16>()?));
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let file = options.open(&temp).await?.into_std().await;
        Ok(Box::new(LocalWriter {
            file: Some(std::sync::Arc::new(file)),
            temp,
            dest,
            replace,
            pending: Vec::new(),
            small: bytes::BytesMut::new(),
            pending_len: 0,
            writing: None,
            unsynced: 0,
            syncing: None,
        }))
    }
}

#[async_trait]
impl ObjectStorage for LocalDisk {
    async fn begin_write(&self, key: &str) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        self.writer(key, false).await
    }

    async fn create_multipart(&self, key: &str) -> Result<String, ObjectError> {
        self.path_of(key)?;
        random_hex::<16>()
    }

    async fn begin_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        _size: u64,
    ) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        let part = format!("{}/{number:05}", parts_dir(key, upload_id)?);
        self.writer(&part, true).await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[StoredPart],
        expected_sha256: Option<&str>,
    ) -> Result<Assembled, ObjectError> {
        let dir = parts_dir(key, upload_id)?;
        let mut writer = self.writer(key, false).await?;
        let mut hasher = openssl::sha::Sha256::new();
        let mut size = 0u64;
        for part in parts {
            // Parts freed meanwhile (the file deleted or swept) leave no upload to complete.
            let mut stream = match self
                .read(&format!("{dir}/{:05}", part.number), 0, part.size, None)
                .await
            {
                Err(ObjectError::NotFound) => return Err(ObjectError::NoSuchUpload),
                other => other?,
            };
            let mut got = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                got += chunk.len() as u64;
                hasher.update(&chunk);
                writer.write(chunk).await?;
            }
            if got != part.size {
                return Err(ObjectError::NoSuchUpload);
            }
            size += got;
        }
        let sha256 = hex::encode(hasher.finish());
        if expected_sha256.is_some_and(|e| !openssl::memcmp::eq(e.as_bytes(), sha256.as_bytes())) {
            return Err(ObjectError::Checksum);
        }
        writer.commit().await?;
        self.abort_multipart(key, upload_id).await?;
        Ok(Assembled {
            size,
            sha256: Some(sha256),
            etag: None,
        })
    }

    async fn abort_multipart(&self, key: &str, _upload_id: &str) -> Result<(), ObjectError> {
        // Every upload of a file lives under parts/{file}; all of them go.
        let file_parts = parts_dir(key, "x")?;
        let file_parts = file_parts
            .rsplit_once('/')
            .map_or(file_parts.as_str(), |(d, _)| d);
        let path = self.path_of(file_parts)?;
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn single_writer(&self) -> bool {
        true
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, ObjectError> {
        let path = self.path_of(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(ObjectMeta {
                size: m.len(),
                last_modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                etag: None,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ObjectError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        // Local objects are committed by rename and never rewritten, so an open file is the
        // version `head` saw, or the key is gone (NotFound).
        _etag: Option<&str>,
    ) -> Result<ByteStream, ObjectError> {
        let path = self.path_of(key)?;
        let file = match tokio::task::spawn_blocking(move || std::fs::File::open(path)).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ObjectError::NotFound)
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => return Err(ObjectError::Io(std::io::Error::other(e))),
        };
        Ok(FileChunks::new(file, offset, len, self.read_buffers.clone()).boxed())
    }

    async fn delete(&self, key: &str) -> Result<bool, ObjectError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn list_parts(
        &self,
        _key: &str,
        _upload_id: &str,
    ) -> Result<Option<Vec<StoredPart>>, ObjectError> {
        // Only the edge writes parts on local disk, and it records each in the metadata store.
        Ok(None)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        let dir = self.path_of(prefix)?;
        let mut out = Vec::new();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = entries.next_entry().await? {
            if let Some(name) = entry.file_name().to_str() {
                let key = format!("{prefix}/{name}");
                if valid_key(&key) {
                    out.push(key);
                }
            }
        }
        Ok(out)
    }

    async fn ping(&self) -> Result<(), ObjectError> {
        let probe = self
            .staging
            .join(format!("ready-{}.probe", random_hex::<8>()?));
        tokio::fs::write(&probe, b"ok").await?;
        tokio::fs::remove_file(&probe).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_store_at_a_time_owns_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let open = || LocalDisk::open(dir.path().join("objects"), dir.path().join("staging"));
        let first = open().unwrap();
        let staged = dir.path().join("staging/in-flight");
        std::fs::write(&staged, b"upload in progress").unwrap();
        let second = open().expect_err("a second store on the same directory");
        assert!(
            second
                .to_string()
                .contains("in use by another keyhole process"),
            "{second}"
        );
        assert!(staged.exists(), "the refused store removed a staged upload");
        let clone = first.clone();
        drop(first);
        assert!(open().is_err(), "a clone keeps the directory");
        drop(clone);
        open().expect("free again once the store is gone");
    }

    #[test]
    fn directories_are_created_with_their_parents_and_a_file_in_the_way_fails() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("parts/file/upload");
        create_dir_durable(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_durable(&deep).unwrap();
        std::fs::write(dir.path().join("blocked"), b"x").unwrap();
        assert!(create_dir_durable(&dir.path().join("blocked/below")).is_err());
    }

    #[test]
    fn keys_cannot_escape() {
        assert!(valid_key("uploads/abc_file.txt"));
        for bad in [
            "",
            "../x",
            "uploads/../x",
            "uploads//x",
            "/abs",
            "uploads/.hidden",
            "a\0b",
            "a\\b",
            "uploads/x y",
        ] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn write_once_atomic_and_discarded_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::open(dir.path().join("o"), dir.path().join("t")).unwrap();
        let mut w = disk.begin_write("uploads/a").await.unwrap();
        w.write(Bytes::from_static(b"hello ")).await.unwrap();
        assert!(matches!(
            disk.head("uploads/a").await,
            Err(ObjectError::NotFound)
        ));
        w.write(Bytes::from_static(b"world")).await.unwrap();
        let mut second = disk.begin_write("uploads/a").await.unwrap();
        second.write(Bytes::from_static(b"other")).await.unwrap();
        w.commit().await.unwrap();
        assert!(matches!(second.commit().await, Err(ObjectError::Exists)));
        assert_eq!(disk.head("uploads/a").await.unwrap().size, 11);
        let mut s = disk.read("uploads/a", 6, 5, None).await.unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = s.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, b"world");

        let mut dropped = disk.begin_write("uploads/b").await.unwrap();
        dropped.write(Bytes::from_static(b"x")).await.unwrap();
        drop(dropped);
        assert_eq!(std::fs::read_dir(dir.path().join("t")).unwrap().count(), 0);
        assert!(disk.delete("uploads/a").await.unwrap());
        assert!(!disk.delete("uploads/a").await.unwrap());

        // Multipart: parts replace each other, complete checks and joins, abort frees.
        let id = disk.create_multipart("uploads/m").await.unwrap();
        for (n, body) in [(2u32, &b"world"[..]), (1, b"xxxxxx"), (1, b"hello ")] {
            let mut w = disk
                .begin_part("uploads/m", &id, n, body.len() as u64)
                .await
                .unwrap();
            w.write(Bytes::copy_from_slice(body)).await.unwrap();
            w.commit().await.unwrap();
        }
        let parts = [
            StoredPart {
                number: 1,
                size: 6,
                etag: String::new(),
            },
            StoredPart {
                number: 2,
                size: 5,
                etag: String::new(),
            },
        ];
        let wrong = hex::encode(openssl::sha::sha256(b"other"));
        assert!(matches!(
            disk.complete_multipart("uploads/m", &id, &parts, Some(&wrong))
                .await,
            Err(ObjectError::Checksum)
        ));
        assert!(matches!(
            disk.head("uploads/m").await,
            Err(ObjectError::NotFound)
        ));
        let right = hex::encode(openssl::sha::sha256(b"hello world"));
        let done = disk
            .complete_multipart("uploads/m", &id, &parts, Some(&right))
            .await
            .unwrap();
        assert_eq!(done.size, 11);
        assert_eq!(
            std::fs::read(dir.path().join("o/uploads/m")).unwrap(),
            b"hello world"
        );
        assert!(!dir.path().join("o/parts/m").exists());
        let id2 = disk.create_multipart("uploads/n").await.unwrap();
        let mut w = disk.begin_part("uploads/n", &id2, 1, 1).await.unwrap();
        w.write(Bytes::from_static(b"z")).await.unwrap();
        w.commit().await.unwrap();
        disk.abort_multipart("uploads/n", &id2).await.unwrap();
        assert!(!dir.path().join("o/parts/n").exists());
        disk.abort_multipart("uploads/n", &id2).await.unwrap();
        assert!(disk.begin_part("uploads/n", "../..", 1, 1).await.is_err());
        disk.ping().await.unwrap();

        // Parts freed before they are joined (the file deleted meanwhile): no such upload,
        // nothing stored.
        let id = disk.create_multipart("uploads/gone").await.unwrap();
        let mut w = disk.begin_part("uploads/gone", &id, 1, 3).await.unwrap();
        w.write(Bytes::from_static(b"abc")).await.unwrap();
        w.commit().await.unwrap();
        disk.abort_multipart("uploads/gone", &id).await.unwrap();
        let one = [StoredPart {
            number: 1,
            size: 3,
            etag: String::new(),
        }];
        assert!(matches!(
            disk.complete_multipart("uploads/gone", &id, &one, None)
                .await,
            Err(ObjectError::NoSuchUpload)
        ));
        assert!(matches!(
            disk.head("uploads/gone").await,
            Err(ObjectError::NotFound)
        ));
    }

    async fn collect(stream: ByteStream) -> (Vec<u8>, Vec<usize>, Option<std::io::Error>) {
        let (mut bytes, mut sizes) = (Vec::new(), Vec::new());
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    sizes.push(c.len());
                    bytes.extend_from_slice(&c);
                }
                Err(e) => return (bytes, sizes, Some(e)),
            }
        }
        (bytes, sizes, None)
    }

    #[tokio::test]
    async fn downloads_read_ranges_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::open(dir.path().join("o"), dir.path().join("t")).unwrap();
        let data: Vec<u8> = (0..3 * READ_CHUNK + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut w = disk.begin_write("uploads/big").await.unwrap();
        w.write(Bytes::from(data.clone())).await.unwrap();
        w.commit().await.unwrap();
        let full = data.len() as u64;

        // Whole file, ranges across chunk edges, one byte, the last byte.
        for (offset, len) in [
            (0, full),
            (1, full - 1),
            (READ_CHUNK as u64 - 1, READ_CHUNK as u64 + 2),
            (7, 1),
            (full - 1, 1),
        ] {
            let (got, sizes, err) =
                collect(disk.read("uploads/big", offset, len, None).await.unwrap()).await;
            assert!(err.is_none(), "{offset}+{len}: {err:?}");
            assert_eq!(
                got,
                &data[offset as usize..(offset + len) as usize],
                "{offset}+{len}"
            );
            assert!(sizes.iter().all(|&n| n <= READ_CHUNK));
        }
        assert_eq!(
            disk.read_buffers.budget.available_permits(),
            READ_BUDGET_KIB
        );
        // Sent buffers wait for the next download instead of going back to the allocator.
        let idle = disk.read_buffers.idle.lock().unwrap().len();
        assert!((1..=MAX_IDLE_BUFFERS).contains(&idle), "{idle}");

        // While other downloads hold the whole budget, reads are small and still complete;
        // chunks the response still holds keep their share until dropped.
        let held = disk
            .read_buffers
            .budget
            .clone()
            .try_acquire_many_owned(READ_BUDGET_KIB as u32)
            .unwrap();
        let (got, sizes, err) =
            collect(disk.read("uploads/big", 0, full, None).await.unwrap()).await;
        assert!(err.is_none());
        assert_eq!(got, data);
        assert!(sizes.iter().all(|&n| n <= SMALL_READ_CHUNK), "{sizes:?}");
        drop(held);
        let mut s = disk.read("uploads/big", 0, full, None).await.unwrap();
        let first = s.next().await.unwrap().unwrap();
        assert_eq!(first.len(), READ_CHUNK);
        drop(s);
        // The reads still in flight finish on the blocking pool and free their share.
        let expected = READ_BUDGET_KIB - READ_CHUNK / 1024;
        for _ in 0..500 {
            if disk.read_buffers.budget.available_permits() == expected {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(disk.read_buffers.budget.available_permits(), expected);
        drop(first);
        assert_eq!(
            disk.read_buffers.budget.available_permits(),
            READ_BUDGET_KIB
        );

        // A reused buffer shows only what this read put in it, never an earlier download's bytes:
        // a file between the small and the large read size takes a reused large buffer.
        let n = SMALL_READ_CHUNK + 1000;
        let mut w = disk.begin_write("uploads/mid").await.unwrap();
        w.write(Bytes::from(vec![0xbb; n])).await.unwrap();
        w.commit().await.unwrap();
        let idle_before = disk.read_buffers.idle.lock().unwrap().len();
        assert!(idle_before > 0);
        let (got, sizes, err) =
            collect(disk.read("uploads/mid", 0, n as u64, None).await.unwrap()).await;
        assert!(err.is_none());
        assert_eq!(sizes, [n]);
        assert!(got.iter().all(|&b| b == 0xbb));
        let (got, _, err) = collect(
            disk.read("uploads/mid", 5, 2 * n as u64, None)
                .await
                .unwrap(),
        )
        .await;
        assert!(got.is_empty(), "{} stale or partial bytes", got.len());
        assert!(err.is_some());
        // Small files and tails get buffers of their own size, outside the budget.
        let (got, sizes, _) = collect(disk.read("uploads/mid", 0, 10, None).await.unwrap()).await;
        assert_eq!((got, sizes), (vec![0xbb; 10], vec![10]));

        // A file shorter than the range asked for is an error, not a short body.
        let (got, _, err) =
            collect(disk.read("uploads/big", full - 10, 20, None).await.unwrap()).await;
        assert!(got.len() < 20);
        assert_eq!(err.unwrap().kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(matches!(
            disk.read("uploads/none", 0, 1, None).await,
            Err(ObjectError::NotFound)
        ));
    }

    #[tokio::test]
    async fn uploads_keep_every_byte_in_order_whatever_the_chunking() {
        let dir = tempfile::tempdir().unwrap();
        let disk = LocalDisk::open(dir.path().join("o"), dir.path().join("t")).unwrap();
        // Dribbles, chunks just under and over the small-chunk size, and chunks larger than a
        // batch, interleaved, over several batches.
        let sizes = [
            1,
            7,
            SMALL_CHUNK_BYTES - 1,
            SMALL_CHUNK_BYTES,
            3,
            WRITE_BATCH_BYTES + 11,
            100,
            SMALL_CHUNK_BYTES + 1,
        ];
        let mut data = Vec::new();
        let mut w = disk.begin_write("uploads/chunked").await.unwrap();
        for round in 0..6 {
            for &n in &sizes {
                let chunk: Vec<u8> = (0..n).map(|i| ((i + round * 31 + n) % 253) as u8).collect();
                data.extend_from_slice(&chunk);
                w.write(Bytes::from(chunk)).await.unwrap();
            }
        }
        w.write(Bytes::new()).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("o/uploads/chunked")).unwrap(),
            data
        );
        assert_eq!(std::fs::read_dir(dir.path().join("t")).unwrap().count(), 0);
    }
}
