//! The signing key and the trusted public keys, from where the configuration says: the data
//! directory (generated on first start), a PEM file, or a PEM in an environment variable. The
//! active key can be replaced at run time (rotation) while previously trusted keys stay trusted,
//! so links already handed out keep working.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use keyhole_sign::{KeyAlgorithm, KeyRing, PrivateKey, Signer, Verifier};

use crate::keyfile;
use crate::server::StartError;

/// Where the private signing key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `DATA/keys/private.pem`, generated (RSA-2048) on first start.
    DataDir,
    /// A PEM file.
    File(PathBuf),
    /// A PEM held in an environment variable (literal `\n` sequences are accepted).
    Env(String),
}

impl KeySource {
    /// Parses `data-dir`, `file:PATH` or `env:VARIABLE`.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "data-dir" {
            Some(KeySource::DataDir)
        } else if let Some(path) = text.strip_prefix("file:") {
            (!path.is_empty()).then(|| KeySource::File(PathBuf::from(path)))
        } else if let Some(var) = text.strip_prefix("env:") {
            (!var.is_empty()).then(|| KeySource::Env(var.to_owned()))
        } else {
            None
        }
    }
}

/// The active signer and the verifier trusting every known key.
pub struct KeySet {
    /// Mints links.
    pub signer: Signer,
    /// Checks links.
    pub verifier: Verifier,
}

/// The keys in use, replaceable at run time.
pub struct Keys {
    current: RwLock<Arc<KeySet>>,
}

impl Keys {
    /// Keys from a signer and the ring of trusted public keys (the signer's own is added).
    pub fn new(signer: Signer, mut ring: KeyRing, origin: &str) -> Result<Self, StartError> {
        let public = signer
            .key()
            .public_key()
            .map_err(|e| StartError::Other(e.to_string()))?;
        ring.insert(signer.key_pair_id().to_owned(), public);
        let verifier = Verifier::new(origin, ring).map_err(|e| StartError::Other(e.to_string()))?;
        Ok(Keys {
            current: RwLock::new(Arc::new(KeySet { signer, verifier })),
        })
    }

    /// The keys for this request.
    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Makes `signer` the active key; every key trusted so far stays trusted.
    pub fn rotate(&self, signer: Signer) -> Result<(), String> {
        let public = signer.key().public_key().map_err(|e| e.to_string())?;
        let old = self.current();
        let mut ring = old.verifier.key_ring().clone();
        ring.insert(signer.key_pair_id().to_owned(), public);
        let verifier = Verifier::new(old.verifier.origin(), ring).map_err(|e| e.to_string())?;
        let next = Arc::new(KeySet { signer, verifier });
        match self.current.write() {
            Ok(mut k) => *k = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(())
    }
}

/// What loading produced.
pub struct Loaded {
    /// The active signer.
    pub signer: Signer,
    /// Extra trusted public keys.
    pub ring: KeyRing,
    /// Whether a key pair was generated now.
    pub generated: bool,
}

fn key_error(what: &str, e: impl std::fmt::Display) -> StartError {
    StartError::Other(format!("{what}: {e}"))
}

/// Loads the signing key from `source` and every trusted public key: `DATA/keys/trusted/ID.pem`
/// and each `trusted` (id, path) pair. `key_pair_id` overrides the id recorded with the key.
pub fn load(
    source: &KeySource,
    data_dir: &Path,
    key_pair_id: Option<&str>,
    trusted: &[(String, PathBuf)],
) -> Result<Loaded, StartError> {
    let dir = data_dir.join("keys");
    let mut generated = false;
    let (key, recorded_id) = match source {
        KeySource::DataDir => {
            let private = dir.join(keyfile::PRIVATE_KEY_FILE);
            if !private.exists() {
                keyfile::generate_into(&dir, KeyAlgorithm::Rsa, key_pair_id)?;
                generated = true;
            }
            let key = keyfile::read_private_key(&private)?;
            let id = std::fs::read_to_string(dir.join(keyfile::KEY_ID_FILE))
                .ok()
                .map(|s| s.trim().to_owned());
            (key, id)
        }
        KeySource::File(path) => {
            let key = keyfile::read_private_key(path)?;
            let id = path
                .parent()
                .map(|p| p.join(keyfile::KEY_ID_FILE))
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|s| s.trim().to_owned());
            (key, id)
        }
        KeySource::Env(var) => {
            let pem = zeroize::Zeroizing::new(std::env::var(var).map_err(|_| {
                StartError::Other(format!(
                    "--key env:{var}: the environment variable is not set"
                ))
            })?);
            let key = PrivateKey::from_pem(&pem)
                .map_err(|e| key_error(&format!("--key env:{var}"), e))?;
            (key, None)
        }
    };
    let id = match key_pair_id.map(str::to_owned).or(recorded_id) {
        Some(id) => id,
        None => key
            .public_key()
            .and_then(|p| p.fingerprint_id())
            .map_err(|e| key_error("key", e))?,
    };
    let signer =
        Signer::new(id.clone(), key).map_err(|e| key_error(&format!("key pair id {id:?}"), e))?;

    let mut ring = KeyRing::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("trusted")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                continue;
            }
            if let Some(id) = path.file_stem().and_then(|s| s.to_str()) {
                ring.insert(id.to_owned(), keyfile::read_public_key(&path)?);
            }
        }
    }
    for (id, path) in trusted {
        ring.insert(id.clone(), keyfile::read_public_key(path)?);
    }
    Ok(Loaded {
        signer,
        ring,
        generated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyhole_sign::{Policy, Request};

    #[test]
    fn sources_parse() {
        assert_eq!(KeySource::parse("data-dir"), Some(KeySource::DataDir));
        assert_eq!(
            KeySource::parse("file:/k.pem"),
            Some(KeySource::File("/k.pem".into()))
        );
        assert_eq!(
            KeySource::parse("env:KEY"),
            Some(KeySource::Env("KEY".into()))
        );
        assert_eq!(KeySource::parse("file:"), None);
        assert_eq!(KeySource::parse("vault://x"), None);
    }

    #[test]
    fn rotation_keeps_old_links_valid() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(&KeySource::DataDir, dir.path(), Some("KOLD"), &[]).unwrap();
        assert!(first.generated);
        let keys = Keys::new(first.signer, first.ring, "https://cdn.example.com").unwrap();
        let old_link = keys
            .current()
            .signer
            .sign_url(
                "https://cdn.example.com/f",
                &Policy::canned(2_000_000_000).unwrap(),
            )
            .unwrap();
        let new_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        keys.rotate(Signer::new("KNEW", new_key).unwrap()).unwrap();
        let current = keys.current();
        assert_eq!(current.signer.key_pair_id(), "KNEW");
        let target = old_link.strip_prefix("https://cdn.example.com").unwrap();
        let req = Request {
            target,
            client_ip: None,
            now: 1_900_000_000,
            cookies: None,
        };
        assert!(
            current.verifier.verify(&req).is_ok(),
            "old link still valid"
        );
    }

    #[test]
    fn env_source_reads_escaped_pem() {
        let key = PrivateKey::generate(KeyAlgorithm::Rsa).unwrap();
        let pem = String::from_utf8(key.to_pem().unwrap().to_vec())
            .unwrap()
            .replace('\n', "\\n");
        let var = "KEYHOLE_TEST_KEYS_ENV_PEM";
        std::env::set_var(var, pem);
        let dir = tempfile::tempdir().unwrap();
        let loaded = load(&KeySource::Env(var.into()), dir.path(), Some("KENV"), &[]).unwrap();
        assert_eq!(loaded.signer.key_pair_id(), "KENV");
        assert!(load(
            &KeySource::Env("KEYHOLE_TEST_UNSET_VAR".into()),
            dir.path(),
            None,
            &[]
        )
        .is_err());
    }
}
