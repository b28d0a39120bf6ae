//! What an interrupted transfer needs to pick up where it stopped, kept in small JSON files in
//! the user's cache directory (`$XDG_CACHE_HOME/keyhole`, else `~/.cache/keyhole`):
//! `uploads/` holds one file per local file being uploaded in parts, `downloads/` one per
//! partial download. Each is named by a hash of the absolute path it is about, written atomically
//! (temporary file, fsync, rename) and removed when the transfer succeeds. They hold ids only:
//! never a token or a signed URL (fresh links are asked for on resume).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Version of the state files' shape; files of another version are ignored.
pub const VERSION: u32 = 1;

/// An upload in parts that has been started: enough to ask the server which parts it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadState {
    /// Shape version.
    pub version: u32,
    /// The `--server` it was started against.
    pub server: String,
    /// The local file (absolute).
    pub path: PathBuf,
    /// The server's file id.
    pub file_id: String,
    /// The multipart upload id.
    pub upload_id: String,
    /// The local file's size when the upload started.
    pub size: u64,
    /// The local file's modification time (nanoseconds since the epoch) when it started.
    pub mtime_ns: u64,
    /// The SHA-256 declared to the server (so a resume need not read the file twice).
    pub sha256: String,
    /// Size of every part but the last.
    pub part_size: u64,
    /// Number of parts.
    pub part_count: u32,
    /// The content type declared.
    pub content_type: String,
}

impl UploadState {
    /// Whether this state is about the same server, the same, unchanged local file and the same
    /// content type (the server keeps the one declared when the upload started).
    pub fn matches(&self, server: &str, file: &LocalFile, content_type: &str) -> bool {
        self.version == VERSION
            && self.server == server
            && self.path == file.path
            && self.size == file.size
            && self.mtime_ns == file.mtime_ns
            && self.content_type == content_type
    }
}

/// A partial download: which file the bytes in `PATH.part` belong to, and its ETag, so the rest
/// is asked for with `If-Range`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadState {
    /// Shape version.
    pub version: u32,
    /// The `--server` it was started against.
    pub server: String,
    /// The server's file id.
    pub file_id: String,
    /// The ETag of the bytes being downloaded.
    pub etag: String,
}

/// A local file's identity for resuming: absolute path, size and modification time.
#[derive(Clone, Debug)]
pub struct LocalFile {
    /// Absolute, canonical path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the epoch (0 when unknown).
    pub mtime_ns: u64,
}

impl LocalFile {
    /// Looks `path` up; refuses anything but a regular file.
    pub fn stat(path: &Path) -> std::io::Result<Self> {
        let abs = std::fs::canonicalize(path)?;
        let meta = std::fs::metadata(&abs)?;
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Ok(LocalFile {
            path: abs,
            size: meta.len(),
            mtime_ns,
        })
    }
}

/// The directory holding the state files.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `$XDG_CACHE_HOME/keyhole`, else `$HOME/.cache/keyhole`; `None` when neither is set (then
    /// transfers simply do not resume).
    pub fn from_env() -> Option<Self> {
        let xdg = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        let base = xdg.or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".cache"))
        })?;
        Some(StateDir::at(base.join("keyhole")))
    }

    /// State files under `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    /// Where the upload state of the local file `abs` lives.
    pub fn upload_path(&self, abs: &Path) -> PathBuf {
        self.root.join("uploads").join(name_for(abs))
    }

    /// Where the state of the partial download `part` lives.
    pub fn download_path(&self, part: &Path) -> PathBuf {
        self.root.join("downloads").join(name_for(part))
    }

    /// The upload state of `abs`, if one was saved and is readable.
    pub fn load_upload(&self, abs: &Path) -> Option<UploadState> {
        load(&self.upload_path(abs)).filter(|s: &UploadState| s.version == VERSION)
    }

    /// Saves the upload state of `state.path`.
    pub fn save_upload(&self, state: &UploadState) -> std::io::Result<()> {
        save(&self.upload_path(&state.path), state)
    }

    /// Forgets the upload state of `abs`.
    pub fn remove_upload(&self, abs: &Path) {
        let _ = std::fs::remove_file(self.upload_path(abs));
    }

    /// The state of the partial download `part`, if one was saved.
    pub fn load_download(&self, part: &Path) -> Option<DownloadState> {
        load(&self.download_path(part)).filter(|s: &DownloadState| s.version == VERSION)
    }

    /// Saves the state of the partial download `part`.
    pub fn save_download(
        &self,
        part: &Path,
        server: &str,
        file_id: &str,
        etag: &str,
    ) -> std::io::Result<()> {
        save(
            &self.download_path(part),
            &DownloadState {
                version: VERSION,
                server: server.to_owned(),
                file_id: file_id.to_owned(),
                etag: etag.to_owned(),
            },
        )
    }

    /// Forgets the state of the partial download `part`.
    pub fn remove_download(&self, part: &Path) {
        let _ = std::fs::remove_file(self.download_path(part));
    }
}

/// The state file name for `path`: a SHA-256 of the path's bytes, so any path maps to a short,
/// safe name.
fn name_for(path: &Path) -> String {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        path.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = path.to_string_lossy().into_owned().into_bytes();
    let digest = openssl::sha::sha256(&bytes);
    format!("{}.json", hex::encode(&digest[..16]))
}

fn load<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(_) => {
            // Unreadable (e.g. written by another version): start over rather than fail.
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

/// Writes `value` as JSON to `path` atomically: a temporary file in the same directory, synced,
/// then renamed over the old one. Directory 0700 and file 0600 on Unix.
fn save<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".tmp-{}-{nanos}", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_state_round_trips_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let states = StateDir::at(dir.path().join("cache"));
        let file_path = dir.path().join("big.bin");
        std::fs::write(&file_path, b"0123456789").unwrap();
        let file = LocalFile::stat(&file_path).unwrap();
        assert_eq!(file.size, 10);
        let state = UploadState {
            version: VERSION,
            server: "http://s".into(),
            path: file.path.clone(),
            file_id: "id_big.bin".into(),
            upload_id: "u1".into(),
            size: file.size,
            mtime_ns: file.mtime_ns,
            sha256: "ab".into(),
            part_size: 5 << 20,
            part_count: 1,
            content_type: "a/b".into(),
        };
        assert!(states.load_upload(&file.path).is_none());
        states.save_upload(&state).unwrap();
        // Saved again (the rename replaces it).
        states.save_upload(&state).unwrap();
        let loaded = states.load_upload(&file.path).unwrap();
        assert_eq!(loaded, state);
        assert!(loaded.matches("http://s", &file, "a/b"));
        assert!(!loaded.matches("http://other", &file, "a/b"));
        // Another --content-type: the upload under way declared the old one.
        assert!(!loaded.matches("http://s", &file, "text/plain"));
        // Only the state file is in the directory: no temporary left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("cache/uploads"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        // A changed file no longer matches.
        std::fs::write(&file_path, b"01234567890").unwrap();
        assert!(!loaded.matches("http://s", &LocalFile::stat(&file_path).unwrap(), "a/b"));
        states.remove_upload(&file.path);
        assert!(states.load_upload(&file.path).is_none());
    }

    #[test]
    fn corrupt_state_is_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let states = StateDir::at(dir.path());
        let part = dir.path().join("x.part");
        let path = states.download_path(&part);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        assert!(states.load_download(&part).is_none());
        assert!(!path.exists());
        states
            .save_download(&part, "http://s", "id", "\"e\"")
            .unwrap();
        assert_eq!(states.load_download(&part).unwrap().etag, "\"e\"");
    }

    #[test]
    fn directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LocalFile::stat(dir.path()).is_err());
    }
}
