//! Key files on disk: reading PEMs without keeping copies around, and writing private keys with
//! owner-only permissions.

use std::fs::{self, OpenOptions};
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

/// Writes `bytes` to a new file with mode 0600, failing if it exists.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyFileError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists(path.to_owned())
        } else {
            KeyFileError::Write {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|source| KeyFileError::Write {
            path: path.to_owned(),
            source,
        })
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
/// (created with mode 0700 if missing). Never overwrites an existing key.
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
        if path.exists() {
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
    write_new(&private_path, &pem, 0o600)?;
    write_new(
        &public_path,
        public.to_pem().map_err(key_err)?.as_bytes(),
        0o644,
    )?;
    let id_path = dir.join(KEY_ID_FILE);
    fs::write(&id_path, format!("{key_pair_id}\n")).map_err(|source| KeyFileError::Write {
        path: id_path,
        source,
    })?;
    Ok(GeneratedKey {
        key_pair_id,
        private_path,
        public_path,
        key,
    })
}
