//! `keyhole upload`: hashes a file (the server checks the SHA-256 before it commits), asks for
//! an upload link, and streams the bytes from disk: one PUT for small files, parts in parallel for
//! files at or above the server's multipart threshold. Failed PUTs are retried with exponential
//! backoff; expired links are renewed. A multipart upload records its ids in the state directory
//! so that running the same command again after an interruption uploads only the missing parts.
//!
//! Test hook: `KEYHOLE_TEST_PART_DELAY_MS` (read by the CLI, see [`UploadOptions::part_delay`])
//! slows every part down so tests can interrupt an upload half-way; it changes nothing else.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::stream::{FuturesUnordered, StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{Mutex, Semaphore};
use tokio_util::io::ReaderStream;

use super::api::{
    retry_after, ApiClient, CompletePart, Completed, NewUpload, PartInfo, PartLink, ServerConfig,
};
use super::progress::Ui;
use super::resume::{LocalFile, StateDir, UploadState, VERSION};
use super::{origin_of, reason, Backoff, ClientError};

/// Bytes read from disk per body chunk: enough to keep the connection busy, small enough that
/// memory stays flat however large the file and however many parts are in flight.
const CHUNK: usize = 256 * 1024;

/// How `keyhole upload` behaves.
#[derive(Clone, Debug)]
pub struct UploadOptions {
    /// Transfers (parts or whole files) in flight at once, across all files.
    pub parallel: usize,
    /// Content type to declare; default: guessed from the file name's extension.
    pub content_type: Option<String>,
    /// Retries of a failed PUT.
    pub backoff: Backoff,
    /// Test hook: a pause before each part's PUT, so a test can interrupt an upload half-way
    /// (`KEYHOLE_TEST_PART_DELAY_MS`). `None` in normal use.
    pub part_delay: Option<Duration>,
}

/// Uploads files to one server; one per call of [`Uploader::upload`], several concurrently
/// sharing the transfer slots.
pub struct Uploader {
    api: ApiClient,
    config: ServerConfig,
    options: UploadOptions,
    permits: Semaphore,
    states: Option<StateDir>,
    ui: Ui,
    /// Whether the edge has answered once: until it has, an unreachable public URL is reported
    /// at once (a misconfigured `--public-url`) instead of being retried.
    edge_reached: AtomicBool,
}

/// Signed part URLs, renewed from `GET /api/files/{id}/parts` when they are about to expire or
/// are refused.
struct Links {
    urls: HashMap<u32, String>,
    stored: HashMap<u32, String>,
    expires: Option<SystemTime>,
    generation: u64,
}

/// A part's way forward: a URL to PUT to, or the server has it already.
enum PartTarget {
    Url(String, u64),
    Stored(String),
}

/// One multipart upload in progress.
struct Multipart<'a> {
    file: &'a LocalFile,
    name: &'a str,
    state: &'a UploadState,
    links: Mutex<Links>,
    bar: &'a ProgressBar,
}

impl Multipart<'_> {
    /// Offset and length of part `n` (1-based).
    fn range(&self, n: u32) -> (u64, u64) {
        let offset = u64::from(n - 1) * self.state.part_size;
        (
            offset,
            self.state
                .part_size
                .min(self.file.size.saturating_sub(offset)),
        )
    }
}

impl Uploader {
    /// An uploader for the server `api` talks to, whose settings are `config`. `states` is where
    /// resumable uploads are recorded (`None`: never resume).
    pub fn new(
        api: ApiClient,
        config: ServerConfig,
        options: UploadOptions,
        states: Option<StateDir>,
        ui: Ui,
    ) -> Self {
        let permits = Semaphore::new(options.parallel.max(1));
        Uploader {
            api,
            config,
            options,
            permits,
            states,
            ui,
            edge_reached: AtomicBool::new(false),
        }
    }

    /// Uploads the file at `path`; returns its file id.
    pub async fn upload(&self, path: &Path) -> Result<String, ClientError> {
        let file = LocalFile::stat(path).map_err(ClientError::file(path))?;
        if file.size > self.config.max_upload_bytes {
            return Err(ClientError::Failed(format!(
                "{}: {} bytes is more than the server accepts ({} bytes)",
                path.display(),
                file.size,
                self.config.max_upload_bytes
            )));
        }
        let name = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "upload".to_owned());
        let content_type = self.options.content_type.clone().unwrap_or_else(|| {
            mime_guess::from_path(&file.path)
                .first_or_octet_stream()
                .essence_str()
                .to_owned()
        });
        let bar = self.ui.bar(&name, file.size);
        let result = self.upload_file(&file, &name, &content_type, &bar).await;
        self.ui.finish(
            &bar,
            &name,
            result.as_ref().ok().map(|_| ("uploaded", file.size)),
        );
        result
    }

    async fn upload_file(
        &self,
        file: &LocalFile,
        name: &str,
        content_type: &str,
        bar: &ProgressBar,
    ) -> Result<String, ClientError> {
        let multipart = file.size > 0 && file.size >= self.config.multipart_threshold;
        if let Some(states) = &self.states {
            if let Some(state) = states.load_upload(&file.path) {
                if multipart && state.matches(self.api.server(), file, content_type) {
                    if let Some(id) = self.resume(file, name, &state, bar).await? {
                        return Ok(id);
                    }
                } else {
                    self.ui.note(format!(
                        "{name}: the file, the server or the content type changed since an \
                         interrupted upload; starting over"
                    ));
                }
                states.remove_upload(&file.path);
            }
        }

        let sha256 = self.hash(file, bar).await?;
        let request = NewUpload {
            filename: name,
            content_type,
            size: file.size,
            sha256: &sha256,
            multipart,
        };
        let link = self.api.create_upload(&request).await?;
        if let Some(url) = link.upload_url {
            return self
                .put_whole(file, name, &request, link.file_id, url, bar)
                .await;
        }
        let (Some(upload_id), Some(part_size), Some(parts)) =
            (link.upload_id, link.part_size, link.parts)
        else {
            return Err(ClientError::Failed(format!(
                "{name}: the server's answer has neither an upload URL nor part URLs; is it a \
                 Keyhole server of a matching version?"
            )));
        };
        let state = UploadState {
            version: VERSION,
            server: self.api.server().to_owned(),
            path: file.path.clone(),
            file_id: link.file_id,
            upload_id,
            size: file.size,
            mtime_ns: file.mtime_ns,
            sha256,
            part_size,
            part_count: link
                .part_count
                .unwrap_or_else(|| u32::try_from(parts.len()).unwrap_or(u32::MAX)),
            content_type: content_type.to_owned(),
        };
        if let Some(states) = &self.states {
            if let Err(e) = states.save_upload(&state) {
                self.ui.note(format!(
                    "{name}: cannot record the upload for resuming ({e}); if it is interrupted \
                     it will start over"
                ));
            }
        }
        self.put_parts(file, name, &state, Vec::new(), parts, &link.expires_at, bar)
            .await
    }

    /// Picks up an interrupted multipart upload. `Ok(None)`: nothing to resume (start over).
    async fn resume(
        &self,
        file: &LocalFile,
        name: &str,
        state: &UploadState,
        bar: &ProgressBar,
    ) -> Result<Option<String>, ClientError> {
        match self.api.parts(&state.file_id).await {
            Ok(status)
                if status.upload_id == state.upload_id
                    && status.part_size == state.part_size
                    && status.part_count == state.part_count =>
            {
                self.ui.note(format!(
                    "{name}: resuming: {} of {} parts already stored",
                    status.parts.len(),
                    status.part_count
                ));
                let id = self
                    .put_parts(
                        file,
                        name,
                        state,
                        status.parts,
                        status.missing,
                        &status.expires_at,
                        bar,
                    )
                    .await?;
                Ok(Some(id))
            }
            Ok(_) => {
                self.ui.note(format!(
                    "{name}: the server's record of the interrupted upload differs from ours; \
                     starting over"
                ));
                Ok(None)
            }
            Err(e) if e.code() == Some("already_uploaded") => {
                self.ui.note(format!(
                    "{name}: already uploaded (an earlier run finished it)"
                ));
                if let Some(states) = &self.states {
                    states.remove_upload(&file.path);
                }
                Ok(Some(state.file_id.clone()))
            }
            Err(e) if matches!(e.status(), Some(404 | 409)) => {
                self.ui.note(format!(
                    "{name}: the interrupted upload is gone from the server (expired or \
                     deleted); starting over"
                ));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// SHA-256 of the file, read on a blocking thread with the bar showing progress.
    async fn hash(&self, file: &LocalFile, bar: &ProgressBar) -> Result<String, ClientError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ClientError::Failed("cancelled".into()))?;
        bar.set_message("hashing");
        let path = file.path.clone();
        let progress = bar.clone();
        let digest = tokio::task::spawn_blocking(move || sha256_file(&path, &progress))
            .await
            .map_err(|e| ClientError::Failed(format!("hashing stopped: {e}")))?
            .map_err(ClientError::file(&file.path))?;
        bar.set_position(0);
        bar.reset_eta();
        bar.set_message("uploading");
        Ok(digest)
    }

    /// One PUT of the whole file, retried; a refused or expired link is replaced by a new one.
    async fn put_whole(
        &self,
        file: &LocalFile,
        name: &str,
        request: &NewUpload<'_>,
        mut file_id: String,
        mut url: String,
        bar: &ProgressBar,
    ) -> Result<String, ClientError> {
        let what = format!("uploading {name}");
        let mut attempt = 0;
        let mut renewals = 0;
        loop {
            let permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| ClientError::Failed("cancelled".into()))?;
            let sent = Arc::new(AtomicU64::new(0));
            let result = self
                .put(
                    &url,
                    &what,
                    file,
                    (0, file.size),
                    Some(request.content_type),
                    bar,
                    &sent,
                )
                .await;
            drop(permit);
            let error = match result {
                Ok(_) => return self.complete_whole(file, name, request, file_id).await,
                Err(e) => e,
            };
            bar.dec(sent.load(Ordering::Relaxed));
            if attempt > 0 && already_stored(&error) {
                // An earlier attempt stored the file but its answer was lost. Keyhole's edge
                // keeps and records such an object only if it matches the declared SHA-256,
                // which is this file's; behind CloudFront the API checks and records it.
                self.ui
                    .note(format!("{name}: the earlier attempt had stored it"));
                return self.complete_whole(file, name, request, file_id).await;
            }
            if matches!(error.status(), Some(403 | 404)) && renewals < 2 {
                // The link expired (or its pending record did): a new link, a new file id.
                renewals += 1;
                self.ui.note(format!(
                    "{name}: the upload link expired; asking for a new one"
                ));
                let link = self.api.create_upload(request).await?;
                url = link.upload_url.ok_or_else(|| {
                    ClientError::Failed(format!(
                        "{name}: the server now wants this file in parts; run the command again"
                    ))
                })?;
                file_id = link.file_id;
                continue;
            }
            if error.code() == Some("BadDigest") {
                return Err(changed(name));
            }
            if matches!(error, ClientError::EdgeUnreachable { .. })
                && !self.edge_reached.load(Ordering::Relaxed)
            {
                return Err(error);
            }
            let shown = error.to_string();
            self.options.backoff.wait(attempt, error).await?;
            attempt += 1;
            self.ui.note(format!("{shown}; retrying"));
        }
    }

    /// After the PUT of a whole file: asks the API to record it. An upload link that sent the
    /// bytes past Keyhole's edge (`s3-presigned`, or CloudFront in front of S3) leaves the record
    /// pending until then, and a pending record is swept when it expires; where the edge
    /// recorded it already, the answer is `409 already_uploaded`.
    async fn complete_whole(
        &self,
        file: &LocalFile,
        name: &str,
        request: &NewUpload<'_>,
        file_id: String,
    ) -> Result<String, ClientError> {
        if !unchanged(file) {
            return Err(changed(name));
        }
        match self.api.complete_single(&file_id).await {
            Ok(done) => stored_as_hashed(name, &done, request.sha256).map(|()| file_id),
            Err(e) if e.code() == Some("already_uploaded") => Ok(file_id),
            Err(e) if checksum_refused(&e) => Err(changed(name)),
            Err(e) => Err(e),
        }
    }

    /// Uploads the `missing` parts (the others are `stored`), then completes the upload.
    #[allow(clippy::too_many_arguments)]
    async fn put_parts(
        &self,
        file: &LocalFile,
        name: &str,
        state: &UploadState,
        stored: Vec<PartInfo>,
        missing: Vec<PartLink>,
        expires_at: &str,
        bar: &ProgressBar,
    ) -> Result<String, ClientError> {
        if state.part_size == 0
            || u64::from(state.part_count) != file.size.div_ceil(state.part_size)
        {
            return Err(ClientError::Failed(format!(
                "{name}: the server's part plan ({} parts of {} bytes) does not fit the file's \
                 {} bytes",
                state.part_count, state.part_size, file.size
            )));
        }
        let ctx = Multipart {
            file,
            name,
            state,
            links: Mutex::new(Links {
                urls: missing
                    .into_iter()
                    .map(|m| (m.part_number, m.url))
                    .collect(),
                stored: HashMap::new(),
                expires: humantime::parse_rfc3339_weak(expires_at).ok(),
                generation: 0,
            }),
            bar,
        };
        let mut etags: BTreeMap<u32, Option<String>> = BTreeMap::new();
        let mut done_bytes = 0;
        for p in &stored {
            if (1..=state.part_count).contains(&p.part_number) {
                done_bytes += p.size;
                etags.insert(p.part_number, Some(p.etag.clone()));
            }
        }
        bar.set_position(done_bytes);
        bar.reset_eta();
        bar.set_message("uploading");

        let todo: Vec<u32> = (1..=state.part_count)
            .filter(|n| !etags.contains_key(n))
            .collect();
        let mut running: FuturesUnordered<_> =
            todo.iter().map(|&n| self.put_part(&ctx, n)).collect();
        while let Some(result) = running.next().await {
            match result {
                Ok((n, etag)) => {
                    etags.insert(n, etag);
                }
                Err(e) => return Err(self.interrupted(file, name, e)),
            }
        }
        drop(running);

        bar.set_message("finishing");
        // The parts' sizes were checked as they were read, but not their bytes: a file rewritten
        // in place meanwhile would be assembled from old and new parts, and storage that does
        // not see the whole file (S3) cannot check its SHA-256.
        if !unchanged(file) {
            self.forget(file);
            return Err(changed(name));
        }
        let parts: Vec<CompletePart> = (1..=state.part_count)
            .map(|n| CompletePart {
                part_number: n,
                etag: etags.get(&n).cloned().flatten(),
            })
            .collect();
        let done = match self.api.complete(&state.file_id, &parts).await {
            Ok(done) => done,
            Err(e) if checksum_refused(&e) => {
                self.forget(file);
                return Err(changed(name));
            }
            Err(e) if e.code() == Some("already_uploaded") => {
                self.forget(file);
                return Ok(state.file_id.clone());
            }
            Err(e) => return Err(self.interrupted(file, name, e)),
        };
        self.forget(file);
        stored_as_hashed(name, &done, &state.sha256)?;
        Ok(done.file_id)
    }

    /// Explains a multipart upload that stopped: resumable unless the upload is gone.
    fn interrupted(&self, file: &LocalFile, name: &str, e: ClientError) -> ClientError {
        if matches!(e.code(), Some("NoSuchUpload" | "not_found")) {
            self.forget(file);
            return ClientError::Failed(format!(
                "{e}; the upload expired or was deleted on the server: run the command again to \
                 start over"
            ));
        }
        if matches!(e, ClientError::Changed { .. }) {
            self.forget(file);
            return e;
        }
        match &self.states {
            Some(_) => ClientError::Failed(format!(
                "{e}; the parts already stored are kept: run the same command again to resume \
                 {name}"
            )),
            None => e,
        }
    }

    fn forget(&self, file: &LocalFile) {
        if let Some(states) = &self.states {
            states.remove_upload(&file.path);
        }
    }

    /// Uploads part `n`, retried with backoff; refused links are renewed.
    async fn put_part(
        &self,
        ctx: &Multipart<'_>,
        n: u32,
    ) -> Result<(u32, Option<String>), ClientError> {
        let what = format!("uploading part {n} of {}", ctx.name);
        let range = ctx.range(n);
        let mut attempt = 0;
        let mut renewals = 0;
        loop {
            let permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| ClientError::Failed("cancelled".into()))?;
            if let Some(delay) = self.options.part_delay {
                tokio::time::sleep(delay).await;
            }
            let (url, generation) = match self.part_target(ctx, n).await? {
                PartTarget::Url(url, generation) => (url, generation),
                PartTarget::Stored(etag) => {
                    ctx.bar.inc(range.1);
                    return Ok((n, Some(etag)));
                }
            };
            let sent = Arc::new(AtomicU64::new(0));
            let result = self
                .put(&url, &what, ctx.file, range, None, ctx.bar, &sent)
                .await;
            drop(permit);
            let error = match result {
                Ok(etag) => return Ok((n, etag)),
                Err(e) => e,
            };
            ctx.bar.dec(sent.load(Ordering::Relaxed));
            if error.status() == Some(403) && renewals < 2 {
                // The link expired or was refused: fresh links for the missing parts.
                renewals += 1;
                let mut links = ctx.links.lock().await;
                if links.generation == generation {
                    self.renew(ctx, &mut links).await?;
                }
                continue;
            }
            if matches!(error, ClientError::EdgeUnreachable { .. })
                && !self.edge_reached.load(Ordering::Relaxed)
            {
                return Err(error);
            }
            let shown = error.to_string();
            self.options.backoff.wait(attempt, error).await?;
            attempt += 1;
            self.ui.note(format!("{shown}; retrying"));
        }
    }

    /// The URL for part `n`, renewing the links first when they are about to expire.
    async fn part_target(&self, ctx: &Multipart<'_>, n: u32) -> Result<PartTarget, ClientError> {
        let mut links = ctx.links.lock().await;
        let margin = Duration::from_secs((self.config.upload_ttl_seconds / 5).clamp(1, 60));
        let expiring = links
            .expires
            .is_some_and(|t| SystemTime::now() + margin >= t);
        if expiring || !links.urls.contains_key(&n) {
            self.renew(ctx, &mut links).await?;
        }
        if let Some(url) = links.urls.get(&n) {
            return Ok(PartTarget::Url(url.clone(), links.generation));
        }
        match links.stored.get(&n) {
            Some(etag) => Ok(PartTarget::Stored(etag.clone())),
            None => Err(ClientError::Failed(format!(
                "the server issued no upload URL for part {n} of {}",
                ctx.name
            ))),
        }
    }

    /// Asks the server for fresh links to the missing parts (this also keeps the upload alive).
    async fn renew(&self, ctx: &Multipart<'_>, links: &mut Links) -> Result<(), ClientError> {
        let status = self.api.parts(&ctx.state.file_id).await?;
        if status.upload_id != ctx.state.upload_id {
            return Err(ClientError::Failed(format!(
                "{}: the server holds another upload under this id; run the command again",
                ctx.name
            )));
        }
        links.urls = status
            .missing
            .into_iter()
            .map(|m| (m.part_number, m.url))
            .collect();
        links.stored = status
            .parts
            .into_iter()
            .map(|p| (p.part_number, p.etag))
            .collect();
        links.expires = humantime::parse_rfc3339_weak(&status.expires_at).ok();
        links.generation += 1;
        Ok(())
    }

    /// PUTs `range` (offset, length) of the file to `url`, streamed from disk with an exact
    /// `Content-Length`; counts sent bytes on the bar and in `sent`. Returns the ETag.
    #[allow(clippy::too_many_arguments)]
    async fn put(
        &self,
        url: &str,
        what: &str,
        file: &LocalFile,
        (offset, len): (u64, u64),
        content_type: Option<&str>,
        bar: &ProgressBar,
        sent: &Arc<AtomicU64>,
    ) -> Result<Option<String>, ClientError> {
        let mut f = tokio::fs::File::open(&file.path)
            .await
            .map_err(ClientError::file(&file.path))?;
        let now_len = f
            .metadata()
            .await
            .map_err(ClientError::file(&file.path))?
            .len();
        if now_len != file.size {
            return Err(changed(&file.path.display().to_string()));
        }
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))
                .await
                .map_err(ClientError::file(&file.path))?;
        }
        let progress = bar.clone();
        let counter = Arc::clone(sent);
        // When the connection last took a chunk (milliseconds since `started`).
        let started = std::time::Instant::now();
        let moved = Arc::new(AtomicU64::new(0));
        let moved_at = Arc::clone(&moved);
        let stream = ReaderStream::with_capacity(f.take(len), CHUNK).inspect_ok(move |chunk| {
            progress.inc(chunk.len() as u64);
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            moved_at.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        });
        let mut req = self
            .api
            .http()
            .put(url)
            .header(CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(stream));
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        // A connection that takes no more of the body (or, once it has all of it, gives no
        // answer) for the idle timeout is given up, and the PUT retried on a new one: it would
        // otherwise wait as long as the operating system keeps the connection open.
        let idle = self.api.idle_timeout();
        let send = req.send();
        tokio::pin!(send);
        let resp = loop {
            let last = Duration::from_millis(moved.load(Ordering::Relaxed));
            let left = idle.saturating_sub(started.elapsed().saturating_sub(last));
            if left.is_zero() {
                return Err(ClientError::Network {
                    what: what.to_owned(),
                    reason: format!(
                        "nothing sent or received for {}: the connection stalled",
                        humantime::format_duration(idle)
                    ),
                });
            }
            if let Ok(resp) = tokio::time::timeout(left, &mut send).await {
                break resp.map_err(|e| edge_error(url, what, &e))?;
            }
        };
        self.edge_reached.store(true, Ordering::Relaxed);
        let status = resp.status();
        if status.is_success() {
            let etag = resp
                .headers()
                .get(ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let _ = resp.bytes().await;
            return Ok(etag);
        }
        let retry_after = retry_after(resp.headers());
        let body = resp.text().await.unwrap_or_default();
        let (code, message) = xml_error(&body).unwrap_or_else(|| {
            (
                String::new(),
                status
                    .canonical_reason()
                    .unwrap_or("no explanation given")
                    .to_owned(),
            )
        });
        let message = match status.as_u16() {
            403 => format!("{message} (the signed link was refused: expired, or the clocks of this machine and the server disagree)"),
            _ => message,
        };
        Err(ClientError::Http {
            what: what.to_owned(),
            status: status.as_u16(),
            code,
            message,
            retry_after,
        })
    }
}

/// The error for a file that changed while it was being uploaded.
/// Whether the server's answer to a completion says the stored bytes' SHA-256 differs from the
/// declared one.
fn checksum_refused(e: &ClientError) -> bool {
    e.status() == Some(400) && e.to_string().contains("SHA-256")
}

/// Checks a completion's SHA-256, when the storage saw the bytes to compute one, against the
/// file's (`sha256`).
fn stored_as_hashed(name: &str, done: &Completed, sha256: &str) -> Result<(), ClientError> {
    match &done.sha256 {
        Some(sha) if !sha.eq_ignore_ascii_case(sha256) => Err(ClientError::Failed(format!(
            "{name}: the server stored {} bytes with SHA-256 {sha}, but the file's is {sha256}",
            done.size
        ))),
        _ => Ok(()),
    }
}

/// Whether `file` still has the size and modification time it had when it was hashed.
fn unchanged(file: &LocalFile) -> bool {
    LocalFile::stat(&file.path)
        .is_ok_and(|now| now.size == file.size && now.mtime_ns == file.mtime_ns)
}

fn changed(name: &str) -> ClientError {
    ClientError::Changed {
        name: name.to_owned(),
    }
}

/// A transport failure talking to the edge (signed links).
fn edge_error(url: &str, what: &str, e: &reqwest::Error) -> ClientError {
    if e.is_connect() {
        ClientError::EdgeUnreachable {
            origin: origin_of(url),
            reason: reason(e),
        }
    } else {
        ClientError::Network {
            what: what.to_owned(),
            reason: reason(e),
        }
    }
}

/// A whole-file PUT refused because its link already stored an object: Keyhole's edge answers
/// `409 ObjectAlreadyExists`; CloudFront makes every whole-file PUT a conditional write
/// (`If-None-Match: *`), so S3 behind it answers `412 PreconditionFailed`.
fn already_stored(error: &ClientError) -> bool {
    matches!(
        (error.status(), error.code()),
        (Some(409), Some("ObjectAlreadyExists")) | (Some(412), Some("PreconditionFailed"))
    )
}

/// `<Code>` and `<Message>` of an S3/CloudFront XML error body.
pub fn xml_error(body: &str) -> Option<(String, String)> {
    let field = |tag: &str| -> Option<String> {
        let open = format!("<{tag}>");
        let start = body.find(&open)? + open.len();
        let end = start + body[start..].find(&format!("</{tag}>"))?;
        Some(body[start..end].trim().to_owned())
    };
    let code = field("Code")?;
    let message = field("Message").unwrap_or_else(|| code.clone());
    Some((code, message))
}

/// Lower-case hex SHA-256 of a file, read in 1 MiB blocks, advancing `progress`.
pub fn sha256_file(path: &Path, progress: &ProgressBar) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = openssl::sha::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        progress.inc(n as u64);
    }
    Ok(hex::encode(hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_xml_errors() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>BadDigest</Code><Message>the SHA-256 differs</Message></Error>"#;
        assert_eq!(
            xml_error(body),
            Some(("BadDigest".into(), "the SHA-256 differs".into()))
        );
        assert_eq!(
            xml_error("<Error><Code>AccessDenied</Code></Error>"),
            Some(("AccessDenied".into(), "AccessDenied".into()))
        );
        assert_eq!(xml_error("not xml"), None);
    }

    #[test]
    fn hashes_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p, &ProgressBar::hidden()).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
