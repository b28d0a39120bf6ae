//! `keyhole download`: streams a file through a fresh signed link into `PATH.part`, continues an
//! interrupted download from the partial file's length (`Range`, with `If-Range` and the ETag
//! recorded when it started, so bytes of two versions are never mixed), checks the SHA-256 the
//! listing gives, and renames the partial file into place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use indicatif::ProgressBar;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, RANGE};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

use super::api::{retry_after, ApiClient};
use super::progress::Ui;
use super::resume::StateDir;
use super::upload::xml_error;
use super::{origin_of, reason, Backoff, ClientError};

/// How `keyhole download` behaves.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Where to write: a file path, or a directory to put the file's own name in (an existing
    /// one, or any path ending in a separator: created if missing). Default: the file's name in
    /// the current directory.
    pub output: Option<PathBuf>,
    /// Replace an existing file at the destination.
    pub force: bool,
    /// Retries of a failed or broken transfer (each continues where the last stopped).
    pub backoff: Backoff,
}

/// Where `-o` says to write, as checked before anything is transferred.
enum Output {
    /// Into this directory, under the file's own name; `create`: it does not exist yet.
    Dir { path: PathBuf, create: bool },
    /// To this file, in an existing directory.
    File(PathBuf),
}

impl Output {
    /// Checks `-o PATH`: an existing directory, or a path ending in a separator (a directory,
    /// created when missing), or a file path in an existing directory.
    fn check(path: &Path) -> Result<Output, ClientError> {
        let names_dir = path
            .as_os_str()
            .to_string_lossy()
            .ends_with(std::path::is_separator)
            || path.file_name().is_none();
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => Ok(Output::Dir {
                path: path.to_owned(),
                create: false,
            }),
            Ok(_) if names_dir => Err(ClientError::Failed(format!(
                "{} is not a directory (a path ending in {} names one)",
                path.display(),
                std::path::MAIN_SEPARATOR
            ))),
            Ok(_) => Ok(Output::File(path.to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && names_dir => Ok(Output::Dir {
                path: path.to_owned(),
                create: true,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                match std::fs::metadata(parent) {
                    Ok(meta) if meta.is_dir() => Ok(Output::File(path.to_owned())),
                    Ok(_) => Err(ClientError::Failed(format!(
                        "cannot write {}: {} is not a directory",
                        path.display(),
                        parent.display()
                    ))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Err(ClientError::Failed(format!(
                            "cannot write {}: the directory {} does not exist; create it first, \
                             or end -o with {} to download into a directory that is created \
                             for it",
                            path.display(),
                            parent.display(),
                            std::path::MAIN_SEPARATOR
                        )))
                    }
                    Err(e) => Err(ClientError::file(parent)(e)),
                }
            }
            Err(e) => Err(ClientError::file(path)(e)),
        }
    }
}

/// What one pass of the transfer needs.
struct Transfer<'a> {
    api: &'a ApiClient,
    ui: &'a Ui,
    states: Option<&'a StateDir>,
    file_id: &'a str,
    name: &'a str,
    part: PathBuf,
    state_key: PathBuf,
    url: String,
    backoff: Backoff,
    bar: ProgressBar,
    /// The file's size as the server lists it, if it does.
    size: Option<u64>,
    /// How long a request may receive nothing before it counts as stalled.
    idle: Duration,
    /// Whether the edge has answered once (until then an unreachable edge is not retried).
    reached: bool,
}

/// How one request of a transfer ended.
enum Pass {
    /// The body ended cleanly; the whole file's size, when known.
    Ended(Option<u64>),
    /// The partial file was dropped: ask again from 0.
    Restarted,
    /// Asked for the bytes after a body of unknown length, the server did not say where the
    /// file ends.
    Unconfirmed,
}

/// Downloads `file_id` and returns the path written.
pub async fn download(
    api: &ApiClient,
    ui: &Ui,
    states: Option<&StateDir>,
    file_id: &str,
    options: &DownloadOptions,
) -> Result<PathBuf, ClientError> {
    // Checked before anything is transferred: a download that cannot be put in place is not
    // started.
    let output = options.output.as_deref().map(Output::check).transpose()?;
    let link = api.download_link(file_id).await?;
    let info = api.find_file(file_id).await?;
    let name = safe_name(
        info.as_ref().map_or(file_id, |i| i.filename.as_str()),
        file_id,
    );
    let target = match output {
        Some(Output::Dir { path, create }) => {
            if create {
                std::fs::create_dir_all(&path).map_err(ClientError::file(&path))?;
            }
            path.join(&name)
        }
        Some(Output::File(path)) => path,
        None => PathBuf::from(&name),
    };
    if target.is_dir() {
        return Err(ClientError::Failed(format!(
            "{} is a directory; pass -o to choose another path",
            target.display()
        )));
    }
    if target.exists() && !options.force {
        return Err(ClientError::Failed(format!(
            "{} exists already; pass --force to replace it or -o to choose another path",
            target.display()
        )));
    }
    let mut part_name = target
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| name.clone().into());
    part_name.push(".part");
    let part = target.with_file_name(part_name);
    let state_key = std::path::absolute(&part).unwrap_or_else(|_| part.clone());
    let expected_sha = info
        .as_ref()
        .and_then(|i| i.sha256.as_deref())
        .map(str::to_ascii_lowercase);
    let expected_size = info.as_ref().and_then(|i| i.size);

    let mut transfer = Transfer {
        api,
        ui,
        states,
        file_id,
        name: &name,
        part,
        state_key,
        url: link.download_url,
        backoff: options.backoff,
        bar: ui.bar(&name, expected_size.unwrap_or(0)),
        size: expected_size,
        idle: api.idle_timeout(),
        reached: false,
    };
    let result = transfer.run(expected_sha.as_deref()).await;
    let result = match result {
        Ok(bytes) => tokio::fs::rename(&transfer.part, &target)
            .await
            .map(|()| bytes)
            .map_err(|e| {
                ClientError::Failed(format!(
                    "cannot put the download in place as {} ({e}); the bytes are kept in {}",
                    target.display(),
                    transfer.part.display()
                ))
            }),
        Err(e) => Err(transfer.kept(e)),
    };
    ui.finish(
        &transfer.bar,
        &name,
        result.as_ref().ok().map(|&bytes| ("downloaded", bytes)),
    );
    result?;
    if let Some(states) = states {
        states.remove_download(&transfer.state_key);
    }
    Ok(target)
}

impl Transfer<'_> {
    /// Downloads into the partial file, continuing what it holds when that is safe; returns the
    /// file's size.
    async fn run(&mut self, expected_sha: Option<&str>) -> Result<u64, ClientError> {
        let existing = std::fs::metadata(&self.part).map(|m| m.len()).unwrap_or(0);
        let saved = self.states.and_then(|s| s.load_download(&self.state_key));
        // Continue a partial file only when we know whose bytes it holds (recorded ETag), or
        // when the result can be checked against the listing's SHA-256.
        let (mut start, mut if_range, checked_only) = match saved {
            _ if existing == 0 => (0, None, false),
            Some(s) if s.file_id == self.file_id && s.server == self.api.server() => {
                (existing, Some(s.etag), false)
            }
            None if expected_sha.is_some() => (existing, None, true),
            _ => (0, None, false),
        };
        if self.size.is_some_and(|size| start > size) {
            start = 0;
            if_range = None;
        }
        let (sha, len) = self.fetch(start, if_range, expected_sha).await?;
        match expected_sha {
            Some(expected) if sha != expected && checked_only && start > 0 => {
                // The partial file was not the beginning of this file: start over, once.
                self.ui.note(format!(
                    "{}: the partial download held other bytes; starting over",
                    self.name
                ));
                let (sha, len) = self.fetch(0, None, expected_sha).await?;
                self.verify(&sha, expected).map(|()| len)
            }
            Some(expected) => self.verify(&sha, expected).map(|()| len),
            None => Ok(len),
        }
    }

    fn verify(&self, actual: &str, expected: &str) -> Result<(), ClientError> {
        if actual == expected {
            return Ok(());
        }
        let _ = std::fs::remove_file(&self.part);
        if let Some(states) = self.states {
            states.remove_download(&self.state_key);
        }
        Err(ClientError::Failed(format!(
            "{}: the downloaded bytes have SHA-256 {actual}, but the server lists {expected}; the \
             partial file was removed: run the command again",
            self.name
        )))
    }

    /// Adds to a failed transfer's error that the bytes received are kept, when there are some.
    fn kept(&self, error: ClientError) -> ClientError {
        let kept = std::fs::symlink_metadata(&self.part)
            .ok()
            .filter(|m| m.is_file())
            .map_or(0, |m| m.len());
        if kept == 0 || !error.is_retryable() {
            return error;
        }
        ClientError::Failed(format!(
            "{error}; the {kept} bytes received are kept in {}: run the same command again to \
             continue",
            self.part.display()
        ))
    }

    /// Downloads into the partial file from byte `start` on (keeping the bytes before it),
    /// retrying and continuing after failures; returns the SHA-256 of the whole file and its
    /// size.
    async fn fetch(
        &mut self,
        mut start: u64,
        mut if_range: Option<String>,
        expected_sha: Option<&str>,
    ) -> Result<(String, u64), ClientError> {
        // Never through a symbolic link: in a directory others can write to, a `NAME.part`
        // planted as a link would have this download overwrite whatever it points at.
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.part)
            .await
            .map_err(ClientError::file(&self.part))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut hasher = openssl::sha::Sha256::new();
        self.restart_at(&mut out, &mut hasher, start).await?;
        if start > 0 {
            self.ui.note(format!(
                "{}: resuming: {start} bytes already downloaded",
                self.name
            ));
        }
        let what = format!("downloading {}", self.name);
        let mut attempt = 0;
        let mut renewals = 0;
        let mut total: Option<u64> = None;
        // Whether the bytes after a body of unknown length were asked for: a server that
        // answers `416` with the size (or sends the rest) says where the file ends.
        let mut probed = false;
        loop {
            if total == Some(start) {
                break;
            }
            let probe = probed && total.is_none();
            let outcome = self
                .one_request(
                    &what,
                    &mut out,
                    &mut hasher,
                    &mut start,
                    &mut if_range,
                    probe,
                )
                .await;
            let error = match outcome {
                Ok(Pass::Ended(Some(size))) => {
                    if let Some(listed) = self.size.filter(|&listed| listed != size) {
                        // Bytes the listing does not describe (altered on the way, say):
                        // whatever their length, they are not the file.
                        return Err(ClientError::Failed(format!(
                            "{}: the server sends {size} bytes for a file it lists with {listed}; \
                             the {start} bytes received are kept in {}",
                            self.name,
                            self.part.display()
                        )));
                    }
                    total = Some(size);
                    if size == start {
                        break;
                    }
                    if start > size {
                        return Err(ClientError::Failed(format!(
                            "{}: the server sent {start} bytes, but the file has {size}; run the \
                             command again to download it anew",
                            self.name
                        )));
                    }
                    // A body that ends early is a connection that broke: continue from here.
                    ClientError::Network {
                        what: what.clone(),
                        reason: format!("the connection closed after {start} of {size} bytes"),
                    }
                }
                Ok(Pass::Ended(None)) if !probed => {
                    probed = true;
                    continue;
                }
                Ok(Pass::Ended(None) | Pass::Unconfirmed) => {
                    if expected_sha.is_some() {
                        // The SHA-256 the server lists checks the whole.
                        break;
                    }
                    return Err(ClientError::Failed(format!(
                        "{}: the server gave neither the file's size nor its SHA-256, so the \
                         {start} bytes received cannot be checked to be the whole file; they \
                         are kept in {}",
                        self.name,
                        self.part.display()
                    )));
                }
                Ok(Pass::Restarted) => continue,
                Err(e) => e,
            };
            if error.status() == Some(403) && renewals < 2 {
                renewals += 1;
                self.url = self.api.download_link(self.file_id).await?.download_url;
                continue;
            }
            if matches!(error, ClientError::EdgeUnreachable { .. }) && !self.reached {
                return Err(error);
            }
            let shown = error.to_string();
            self.backoff.wait(attempt, error).await?;
            attempt += 1;
            self.ui.note(format!("{shown}; continuing"));
        }
        out.flush().await.map_err(ClientError::file(&self.part))?;
        out.get_ref()
            .sync_all()
            .await
            .map_err(ClientError::file(&self.part))?;
        Ok((hex::encode(hasher.finish()), start))
    }

    /// The error of a connection that delivered nothing for the idle timeout.
    fn stalled(&self, what: &str) -> ClientError {
        ClientError::Network {
            what: what.to_owned(),
            reason: format!(
                "nothing received for {}: the connection stalled",
                humantime::format_duration(self.idle)
            ),
        }
    }

    /// One GET from `start`; `probe`: only to learn where a body of unknown length ends.
    async fn one_request(
        &mut self,
        what: &str,
        out: &mut BufWriter<tokio::fs::File>,
        hasher: &mut openssl::sha::Sha256,
        start: &mut u64,
        if_range: &mut Option<String>,
        probe: bool,
    ) -> Result<Pass, ClientError> {
        let mut req = self.api.http().get(&self.url);
        if *start > 0 || probe {
            req = req.header(RANGE, format!("bytes={start}-"));
            if let Some(etag) = if_range.as_deref() {
                req = req.header(IF_RANGE, etag);
            }
        }
        let resp = match tokio::time::timeout(self.idle, req.send()).await {
            Ok(resp) => resp.map_err(|e| edge_error(&self.url, what, &e))?,
            Err(_) => return Err(self.stalled(what)),
        };
        self.reached = true;
        let status = resp.status();
        let content_range = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let total = match status {
            StatusCode::PARTIAL_CONTENT => {
                match content_range.as_deref().and_then(parse_content_range) {
                    Some((first, Some(size))) if first == *start => Some(size),
                    _ if probe => return Ok(Pass::Unconfirmed),
                    _ => {
                        self.note_restart("the server answered another range");
                        self.restart_at(out, hasher, 0).await?;
                        *start = 0;
                        *if_range = None;
                        return Ok(Pass::Restarted);
                    }
                }
            }
            StatusCode::OK if probe => return Ok(Pass::Unconfirmed),
            StatusCode::OK => {
                if *start > 0 {
                    self.note_restart("the file on the server is not the one partially downloaded");
                    self.restart_at(out, hasher, 0).await?;
                    *start = 0;
                }
                // Without a length (a chunked answer, through a proxy say), the listed size
                // says where the file ends: a body that ends before is a broken connection.
                resp.content_length().or(self.size)
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let size = content_range
                    .as_deref()
                    .and_then(|v| v.strip_prefix("bytes */"))
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if size == Some(*start) {
                    // The partial file is complete already.
                    return Ok(Pass::Ended(size));
                }
                if probe {
                    return Ok(Pass::Unconfirmed);
                }
                self.note_restart("the partial file is longer than the file on the server");
                self.restart_at(out, hasher, 0).await?;
                *start = 0;
                *if_range = None;
                return Ok(Pass::Restarted);
            }
            _ => return Err(http_error(what, resp).await),
        };
        if let Some(total) = total {
            self.bar.set_length(total);
        }
        if let Some(etag) = resp.headers().get(ETAG).and_then(|v| v.to_str().ok()) {
            if if_range.as_deref() != Some(etag) {
                *if_range = Some(etag.to_owned());
                if let Some(states) = self.states {
                    if let Err(e) =
                        states.save_download(&self.state_key, self.api.server(), self.file_id, etag)
                    {
                        self.ui.note(format!(
                            "{}: cannot record the download for resuming ({e})",
                            self.name
                        ));
                    }
                }
            }
        }
        let mut body = resp.bytes_stream();
        loop {
            // Each read may take up to the idle timeout: a connection that stays open but
            // delivers nothing is given up (and the transfer continued on a new one).
            let chunk = match tokio::time::timeout(self.idle, body.next()).await {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    out.flush().await.map_err(ClientError::file(&self.part))?;
                    return Err(edge_error(&self.url, what, &e));
                }
                Err(_) => {
                    out.flush().await.map_err(ClientError::file(&self.part))?;
                    return Err(self.stalled(what));
                }
            };
            out.write_all(&chunk)
                .await
                .map_err(ClientError::file(&self.part))?;
            hasher.update(&chunk);
            *start += chunk.len() as u64;
            self.bar.inc(chunk.len() as u64);
        }
        out.flush().await.map_err(ClientError::file(&self.part))?;
        Ok(Pass::Ended(total))
    }

    fn note_restart(&self, why: &str) {
        self.ui.note(format!("{}: {why}; starting over", self.name));
    }

    /// Cuts the partial file to `start` bytes, hashes what stays and positions the writer after
    /// it.
    async fn restart_at(
        &self,
        out: &mut BufWriter<tokio::fs::File>,
        hasher: &mut openssl::sha::Sha256,
        start: u64,
    ) -> Result<(), ClientError> {
        let err = ClientError::file(&self.part);
        out.flush().await.map_err(ClientError::file(&self.part))?;
        let file = out.get_mut();
        file.set_len(start).await.map_err(err)?;
        *hasher = openssl::sha::Sha256::new();
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(ClientError::file(&self.part))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = start;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let n = file
                .read(&mut buf[..want])
                .await
                .map_err(ClientError::file(&self.part))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(ClientError::file(&self.part))?;
        self.bar.set_position(start);
        self.bar.reset_eta();
        Ok(())
    }
}

/// The error of a refused download request (XML from the edge, or anything else).
async fn http_error(what: &str, resp: reqwest::Response) -> ClientError {
    let status = resp.status();
    let retry_after = retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    let (code, message) = xml_error(&body).unwrap_or_else(|| {
        (
            String::new(),
            status
                .canonical_reason()
                .unwrap_or("no explanation")
                .to_owned(),
        )
    });
    ClientError::Http {
        what: what.to_owned(),
        status: status.as_u16(),
        code,
        message,
        retry_after,
    }
}

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

/// `bytes FIRST-LAST/SIZE` → (FIRST, SIZE) (`None` for an unknown `*` size).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, size) = rest.split_once('/')?;
    let (first, _) = range.split_once('-')?;
    let size = match size.trim() {
        "*" => None,
        s => Some(s.parse().ok()?),
    };
    Some((first.trim().parse().ok()?, size))
}

/// A file name safe to create in the current directory: the last path component of the
/// server's name, or the file id when that is empty or a dot name.
fn safe_name(name: &str, file_id: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        file_id.to_owned()
    } else {
        clean.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, None)));
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes x-1/2"), None);
    }

    #[test]
    fn names_stay_in_the_directory() {
        assert_eq!(safe_name("report.pdf", "id"), "report.pdf");
        assert_eq!(safe_name("../../etc/passwd", "id"), "passwd");
        assert_eq!(safe_name("a\\b.txt", "id"), "b.txt");
        assert_eq!(safe_name("..", "id"), "id");
        assert_eq!(safe_name("", "id"), "id");
    }
}
