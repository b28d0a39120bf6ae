//! Key files on disk: reading PEMs without keeping copies around, and writing private keys with
//! owner-only permissions, atomically.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use keyhole_sign::{KeyAlgorithm, KeyError, PrivateKey, PublicKey};
use zeroize::Zeroizing;

/// Errors reading or writing key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file already exists where a new one would be written.
    #[error(
        "{0} already exists; refusing to overwrite a key (move it away or choose another --out)"
    )]
    Exists(PathBuf),
    /// The requested key pair id is not usable in a URL.
    #[error("--id: {0}")]
    Id(String),
    /// The key text is not a usable key.
    #[error("{path}: {source}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        source: KeyError,
    },
}

/// File name of the private key inside a key directory.
pub const PRIVATE_KEY_FILE: &str = "private.pem";
/// File name of the public key inside a key directory.
pub const PUBLIC_KEY_FILE: &str = "public.pem";
/// File name holding the key pair id inside a key directory.
pub const KEY_ID_FILE: &str = "key-pair-id";

fn read_secret(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Reads a private key PEM file; the text is wiped from memory once parsed.
pub fn read_private_key(path: &Path) -> Result<PrivateKey, KeyFileError> {
    let text = read_secret(path)?;
    PrivateKey::from_pem(&text).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}

/// Reads a public key PEM file.
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyFileError> {
    let text = fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    PublicKey::from_pem(&text).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}

/// How a finished key file takes its name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Never over an existing file ([`KeyFileError::Exists`]): keys.
    New,
    /// Over any older file: the key pair id, which describes the key just written.
    Replace,
}

/// A name for a temporary file beside `path` (`.NAME.RANDOM.tmp`), not yet taken.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |n| n.to_string_lossy());
    // Uniqueness is all that is needed (the file is created exclusively), so a failing random
    // generator falls back to the process id and a counter.
    let suffix = match crate::ids::random_bytes::<8>() {
        Ok(b) => hex::encode(b),
        Err(_) => {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{}-{n}", std::process::id())
        }
    };
    path.with_file_name(format!(".{name}.{suffix}.tmp"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Writes a key file atomically: `write` fills a temporary file in the same directory (created
/// exclusively, with `mode`), which is synced and then hard-linked (or, for [`Place::Replace`],
/// renamed) to `path`, and the directory synced. A crash or a full disk part way leaves at most a
/// temporary file, never a truncated key under its real name that the next start would fail to
/// read instead of writing a new one.
fn write_atomic(
    path: &Path,
    mode: u32,
    place: Place,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), KeyFileError> {
    let write_err = |source| KeyFileError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let temp = temp_path(path);
    let mut file = options.open(&temp).map_err(write_err)?;
    let placed = write(&mut file)
        .and_then(|()| file.sync_all())
        .and_then(|()| match place {
            Place::New => fs::hard_link(&temp, path),
            Place::Replace => fs::rename(&temp, path),
        });
    drop(file);
    // After a link the temporary name is a second name for the key; after a rename it is gone.
    let _ = fs::remove_file(&temp);
    match placed {
        Ok(()) => sync_dir(dir).map_err(write_err),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(KeyFileError::Exists(path.to_owned()))
        }
        Err(e) => Err(write_err(e)),
    }
}

/// Removes temporary files a crash left beside the key files in `dir` (they may hold a key).
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = [PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, KEY_ID_FILE]
            .iter()
            .any(|f| name.starts_with(&format!(".{f}.")));
        if ours && name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A freshly written key directory.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The key pair id.
    pub key_pair_id: String,
    /// Path of the private key (mode 0600).
    pub private_path: PathBuf,
    /// Path of the SubjectPublicKeyInfo public key.
    pub public_path: PathBuf,
    /// The key itself.
    pub key: PrivateKey,
}

/// Generates a key and writes `private.pem` (0600), `public.pem` and `key-pair-id` into `dir`
/// (created with mode 0700 if missing), each atomically ([`write_atomic`]); `private.pem` first,
/// as it is the file whose presence means a key exists. A pair or nothing: if a later file
/// cannot be written, the files written before it are removed. Never overwrites an existing key
/// (a symbolic link by either name counts as one, even a broken one); a `key-pair-id` left from
/// an earlier key is replaced.
pub fn generate_into(
    dir: &Path,
    algorithm: KeyAlgorithm,
    id: Option<&str>,
) -> Result<GeneratedKey, KeyFileError> {
    let io_err = |source| KeyFileError::Write {
        path: dir.to_owned(),
        source,
    };
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_err)?;
    let private_path = dir.join(PRIVATE_KEY_FILE);
    let public_path = dir.join(PUBLIC_KEY_FILE);
    for path in [&private_path, &public_path] {
        if fs::symlink_metadata(path).is_ok() {
            return Err(KeyFileError::Exists(path.clone()));
        }
    }
    let key_err = |source| KeyFileError::Key {
        path: private_path.clone(),
        source,
    };
    let key = PrivateKey::generate(algorithm).map_err(key_err)?;
    let public = key.public_key().map_err(key_err)?;
    let key_pair_id = match id {
        Some(id) => {
            keyhole_sign::check_key_pair_id(id).map_err(|e| KeyFileError::Id(e.to_string()))?;
            id.to_owned()
        }
        None => public.fingerprint_id().map_err(key_err)?,
    };
    let pem = key.to_pem().map_err(key_err)?;
    let public_pem = public.to_pem().map_err(key_err)?;
    remove_stale_temps(dir);
    write_atomic(&private_path, 0o600, Place::New, |f| f.write_all(&pem))?;
    let rest = write_atomic(&public_path, 0o644, Place::New, |f| {
        f.write_all(public_pem.as_bytes())
    })
    .and_then(|()| {
        write_atomic(&dir.join(KEY_ID_FILE), 0o644, Place::Replace, |f| {
            f.write_all(format!("{key_pair_id}\n").as_bytes())
        })
        .inspect_err(|_| {
            let _ = fs::remove_file(&public_path);
        })
    });
    if let Err(e) = rest {
        // Half a pair would be refused by the next run (the private key exists) and is no use.
        let _ = fs::remove_file(&private_path);
        return Err(e);
    }
    Ok(GeneratedKey {
        key_pair_id,
        private_path,
        public_path,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_write_that_fails_part_way_leaves_no_key_behind() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        fs::create_dir(&keys).unwrap();
        let private = keys.join(PRIVATE_KEY_FILE);
        // As a full disk would: half a key written, then an error.
        let err = write_atomic(&private, 0o600, Place::New, |f| {
            f.write_all(b"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA")?;
            Err(std::io::Error::other("No space left on device"))
        })
        .unwrap_err();
        assert!(matches!(err, KeyFileError::Write { .. }), "{err}");
        assert!(!private.exists(), "a truncated key under the real name");
        assert!(names(&keys).is_empty(), "{:?}", names(&keys));
        // So the next start generates a key instead of failing to read half of one.
        let generated = generate_into(&keys, KeyAlgorithm::Rsa, None).unwrap();
        read_private_key(&generated.private_path).unwrap();
        assert_eq!(
            names(&keys),
            [KEY_ID_FILE, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn an_existing_key_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join(PRIVATE_KEY_FILE);
        fs::write(&private, "the key in use").unwrap();
        let err =
            write_atomic(&private, 0o600, Place::New, |f| f.write_all(b"another")).unwrap_err();
        assert!(matches!(err, KeyFileError::Exists(_)), "{err}");
        assert_eq!(fs::read_to_string(&private).unwrap(), "the key in use");
        assert_eq!(names(dir.path()), [PRIVATE_KEY_FILE]);
        let err = generate_into(dir.path(), KeyAlgorithm::EcdsaP256, None).unwrap_err();
        assert!(matches!(err, KeyFileError::Exists(_)), "{err}");
        assert_eq!(fs::read_to_string(&private).unwrap(), "the key in use");
    }

    #[test]
    fn a_pair_or_nothing() {
        // A broken symbolic link by the public key's name is a key in the way, not a free name.
        let dir = tempfile::tempdir().unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/nonexistent", dir.path().join(PUBLIC_KEY_FILE)).unwrap();
            let err = generate_into(dir.path(), KeyAlgorithm::EcdsaP256, None).unwrap_err();
            assert!(matches!(err, KeyFileError::Exists(_)), "{err}");
            assert_eq!(names(dir.path()), [PUBLIC_KEY_FILE], "no private key left");
        }
        // The last file cannot be written (a directory is in its place): the two written before
        // it go again.
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(KEY_ID_FILE).join("in-the-way")).unwrap();
        let err = generate_into(dir.path(), KeyAlgorithm::EcdsaP256, None).unwrap_err();
        assert!(matches!(err, KeyFileError::Write { .. }), "{err}");
        assert_eq!(names(dir.path()), [KEY_ID_FILE]);
    }

    #[test]
    fn leftovers_of_an_interrupted_generation_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir
            .path()
            .join(format!(".{PRIVATE_KEY_FILE}.0123456789abcdef.tmp"));
        fs::write(&stale, "-----BEGIN RSA PRIVATE KEY-----\nMII").unwrap();
        fs::write(dir.path().join(KEY_ID_FILE), "KOLDKEY\n").unwrap();
        let generated = generate_into(dir.path(), KeyAlgorithm::EcdsaP256, Some("KNEW")).unwrap();
        assert_eq!(generated.key_pair_id, "KNEW");
        assert!(!stale.exists());
        assert_eq!(
            fs::read_to_string(dir.path().join(KEY_ID_FILE)).unwrap(),
            "KNEW\n"
        );
        assert_eq!(
            names(dir.path()),
            [KEY_ID_FILE, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE]
        );
    }
}
