//! The signing key and the trusted public keys, from where the configuration says: the data
//! directory (generated on first start), a PEM file, a PEM in an environment variable, or an AWS
//! Secrets Manager secret (read again on an interval, see [`spawn_refresh`]). The active key can
//! be replaced at run time (rotation) while previously trusted keys stay trusted, so links
//! already handed out keep working.

pub mod secrets;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use keyhole_sign::{KeyAlgorithm, KeyRing, PrivateKey, Signer, Verifier};

use crate::config::Config;
use crate::keyfile;
use crate::server::StartError;
use crate::state::SharedState;
use secrets::{SecretError, SecretKeySource};

/// Where the private signing key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `DATA/keys/private.pem`, generated (RSA-2048) on first start.
    DataDir,
    /// A PEM file.
    File(PathBuf),
    /// A PEM held in an environment variable (literal `\n` sequences are accepted).
    Env(String),
    /// An AWS Secrets Manager secret holding a PEM, or a JSON object with the PEM and the key
    /// pair id (see [`secrets`]); read again every `key_refresh`.
    SecretsManager {
        /// The secret's name or full ARN.
        secret_id: String,
    },
}

/// The `--key` prefix of a Secrets Manager source.
pub const SECRETS_MANAGER_PREFIX: &str = "secretsmanager://";

impl KeySource {
    /// Parses `data-dir`, `file:PATH`, `env:VARIABLE` or `secretsmanager://NAME_OR_ARN`.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "data-dir" {
            Some(KeySource::DataDir)
        } else if let Some(path) = text.strip_prefix("file:") {
            (!path.is_empty()).then(|| KeySource::File(PathBuf::from(path)))
        } else if let Some(var) = text.strip_prefix("env:") {
            (!var.is_empty()).then(|| KeySource::Env(var.to_owned()))
        } else if let Some(id) = text.strip_prefix(SECRETS_MANAGER_PREFIX) {
            // Names allow `/_+=.@-`; ARNs add `:`. Whitespace and controls are never valid.
            let ok = !id.is_empty() && !id.chars().any(|c| c.is_whitespace() || c.is_control());
            ok.then(|| KeySource::SecretsManager {
                secret_id: id.to_owned(),
            })
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
    refresh: Option<Arc<SecretRefresh>>,
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
            refresh: None,
        })
    }

    /// Attaches the secret the key came from, so [`spawn_refresh`] can read it again.
    pub fn with_refresh(mut self, refresh: Option<SecretRefresh>) -> Self {
        self.refresh = refresh.map(Arc::new);
        self
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
    /// The secret to read again for rotations (Secrets Manager sources only).
    pub refresh: Option<SecretRefresh>,
}

/// A secret the signing key is re-read from, and how its key pair id is chosen.
pub struct SecretRefresh {
    source: SecretKeySource,
    key_pair_id: Option<String>,
}

impl SecretRefresh {
    /// The secret's name or ARN.
    pub fn secret_id(&self) -> &str {
        self.source.secret_id()
    }

    /// Reads the secret and builds its signer. The key pair id is the configured one, else the
    /// one stored in the secret, else the key's fingerprint id.
    pub async fn fetch(&self) -> Result<Signer, SecretError> {
        let fetched = self.source.fetch().await?;
        let id = self.key_pair_id.clone().or(fetched.key_pair_id);
        signer_for(fetched.key, id).map_err(|message| SecretError::Content {
            secret: self.source.secret_id().to_owned(),
            message,
        })
    }
}

/// A signer for `key` under `id`, or under the key's fingerprint id when there is none.
fn signer_for(key: PrivateKey, id: Option<String>) -> Result<Signer, String> {
    let id = match id {
        Some(id) => id,
        None => key
            .public_key()
            .and_then(|p| p.fingerprint_id())
            .map_err(|e| format!("key: {e}"))?,
    };
    Signer::new(id.clone(), key).map_err(|e| format!("key pair id {id:?}: {e}"))
}

fn key_error(what: &str, e: impl std::fmt::Display) -> StartError {
    StartError::Other(format!("{what}: {e}"))
}

/// Refuses to generate a key pair into `dir` when part of one is there: a `private.pem` that is
/// a link to nothing, or the public half without the private one. Generating would fail on the
/// leftover anyway; this says what is wrong and what to do.
fn check_no_half_key_pair(dir: &Path) -> Result<(), StartError> {
    let private = dir.join(keyfile::PRIVATE_KEY_FILE);
    if std::fs::symlink_metadata(&private).is_ok() {
        return Err(StartError::Other(format!(
            "{} is a link to a file that does not exist; point it at the private key, or \
             remove it to generate a new key pair",
            private.display()
        )));
    }
    let public = dir.join(keyfile::PUBLIC_KEY_FILE);
    if std::fs::symlink_metadata(&public).is_ok() {
        return Err(StartError::Other(format!(
            "{} has {} but no {}: restore the private key, or move {} away to generate a new \
             key pair (links signed with the old one then stop working)",
            dir.display(),
            keyfile::PUBLIC_KEY_FILE,
            keyfile::PRIVATE_KEY_FILE,
            dir.display()
        )));
    }
    Ok(())
}

/// The mode of a private key file that users other than its owner may read, if it is one.
#[cfg(unix)]
fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> Option<u32> {
    None
}

/// Warns when the private key file can be read by other users than its owner (a key copied in
/// under umask 022, or a mounted secret): it is used, as refusing would stop a running service
/// on its next start, but the log says how to close it.
fn warn_if_readable_by_others(path: &Path) {
    if let Some(mode) = readable_by_others(path) {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            "the private key file is readable by other users; make it the service user's alone \
             (chmod 600)"
        );
    }
}

/// Warns when CloudFront would not accept `key`'s public half: Keyhole's own edge verifies its
/// links, CloudFront (the AWS shape, or a migration to it) would refuse every one.
fn warn_if_not_for_cloudfront(key: &PrivateKey) {
    if !key.cloudfront_compatible() {
        tracing::warn!(
            bits = key.bits(),
            "the signing key is a {}-bit RSA key: Keyhole's edge accepts its links, CloudFront \
             takes only RSA-2048 and ECDSA P-256 public keys (keyhole keys generate makes one)",
            key.bits()
        );
    }
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
                check_no_half_key_pair(&dir)?;
                keyfile::generate_into(&dir, KeyAlgorithm::Rsa, key_pair_id).map_err(
                    |e| match e {
                        keyfile::KeyFileError::Id(why) => {
                            StartError::Other(format!("--key-pair-id: {why}"))
                        }
                        other => other.into(),
                    },
                )?;
                generated = true;
            }
            warn_if_readable_by_others(&private);
            let key = keyfile::read_private_key(&private)?;
            let id = std::fs::read_to_string(dir.join(keyfile::KEY_ID_FILE))
                .ok()
                .map(|s| s.trim().to_owned());
            (key, id)
        }
        KeySource::File(path) => {
            warn_if_readable_by_others(path);
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
        KeySource::SecretsManager { secret_id } => {
            return Err(StartError::Other(format!(
                "--key {SECRETS_MANAGER_PREFIX}{secret_id}: a secret is read at start-up by \
                 keys::open, not keys::load"
            )))
        }
    };
    warn_if_not_for_cloudfront(&key);
    let signer = signer_for(key, key_pair_id.map(str::to_owned).or(recorded_id))
        .map_err(StartError::Other)?;
    Ok(Loaded {
        signer,
        ring: trusted_ring(&dir, trusted)?,
        generated,
        refresh: None,
    })
}

/// Loads the keys `config` names, reading Secrets Manager when the source is a secret; the
/// start-up error then names the secret and what AWS said.
pub async fn open(config: &Config) -> Result<Loaded, StartError> {
    let KeySource::SecretsManager { secret_id } = &config.key_source else {
        return load(
            &config.key_source,
            &config.data_dir,
            config.key_pair_id.as_deref(),
            &config.trusted_keys,
        );
    };
    let flag = format!("--key {SECRETS_MANAGER_PREFIX}{secret_id}");
    let source = SecretKeySource::connect(secret_id, config.secrets_endpoint.as_deref())
        .await
        .map_err(|e| key_error(&flag, e))?;
    let refresh = SecretRefresh {
        source,
        key_pair_id: config.key_pair_id.clone(),
    };
    let signer = refresh.fetch().await.map_err(|e| key_error(&flag, e))?;
    warn_if_not_for_cloudfront(signer.key());
    Ok(Loaded {
        signer,
        ring: trusted_ring(&config.data_dir.join("keys"), &config.trusted_keys)?,
        generated: false,
        refresh: Some(refresh),
    })
}

/// The extra trusted public keys: `DIR/trusted/ID.pem` and each `trusted` (id, path) pair.
fn trusted_ring(dir: &Path, trusted: &[(String, PathBuf)]) -> Result<KeyRing, StartError> {
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
    Ok(ring)
}

/// What one refresh did.
#[derive(Debug, PartialEq, Eq)]
pub enum Refreshed {
    /// The secret holds the key already in use.
    Unchanged,
    /// The secret holds a new key or id, now signing; the previous keys stay trusted.
    Rotated {
        /// The previous key pair id.
        previous: String,
        /// The new key pair id.
        key_pair_id: String,
    },
}

/// Whether `next` differs from `current` in key pair id or public key.
fn differs(current: &Signer, next: &Signer) -> Result<bool, String> {
    if current.key_pair_id() != next.key_pair_id() {
        return Ok(true);
    }
    let der = |s: &Signer| {
        s.key()
            .public_key()
            .and_then(|p| p.to_der())
            .map_err(|e| e.to_string())
    };
    Ok(der(current)? != der(next)?)
}

impl Keys {
    /// Reads the key's secret again and, when its key pair id changed, makes its key the
    /// signing key (see [`Keys::rotate`]). Another key under the current key pair id is an
    /// error, and the current key stays. Does nothing for keys not read from a secret.
    pub async fn refresh(&self) -> Result<Refreshed, SecretError> {
        let Some(refresh) = &self.refresh else {
            return Ok(Refreshed::Unchanged);
        };
        let next = refresh.fetch().await?;
        let current = self.current();
        let content = |message: String| SecretError::Content {
            secret: refresh.secret_id().to_owned(),
            message,
        };
        if !differs(&current.signer, &next).map_err(content)? {
            return Ok(Refreshed::Unchanged);
        }
        let previous = current.signer.key_pair_id().to_owned();
        let key_pair_id = next.key_pair_id().to_owned();
        if previous == key_pair_id {
            // A key pair id names one public key: CloudFront's cannot change, and links already
            // handed out were signed by the current one. Signing with another key under the same
            // id would have every verifier refuse either the old links or the new ones (with a
            // key pair id configured beside a secret, a rolled-back or not yet updated
            // configuration would do it for every new link).
            return Err(content(format!(
                "the secret holds another key under the same key pair id {key_pair_id}; the \
                 current key stays in use. A new key needs a key pair id of its own: store it \
                 with the key ({{\"private_key\": ..., \"key_pair_id\": ...}}) and configure \
                 no key_pair_id"
            )));
        }
        warn_if_not_for_cloudfront(next.key());
        self.rotate(next).map_err(content)?;
        Ok(Refreshed::Rotated {
            previous,
            key_pair_id,
        })
    }
}

/// Starts the task that re-reads the key's secret every `every` (see [`Keys::refresh`]): a
/// rotation is logged as `key rotated` with the new key pair id; a failed read is logged as a
/// warning, counted in `keyhole_key_refresh_errors_total`, and the current key stays in use.
/// `None` when the key does not come from a secret or `every` is zero.
pub fn spawn_refresh(state: SharedState, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
    let secret = state.keys.refresh.as_ref()?.secret_id().to_owned();
    if every.is_zero() {
        return None;
    }
    // A year at most, so an absurd setting cannot overflow the timer.
    let every = every.min(Duration::from_secs(365 * 24 * 3600));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            refresh_now(&state, &secret).await;
        }
    }))
}

/// One refresh as [`spawn_refresh`] does it (logged and counted the same way), for callers that
/// cannot keep a timer running between requests: the Lambda, whose container is frozen between
/// invocations, calls it when its key is older than `key_refresh`.
pub async fn refresh_now(state: &SharedState, secret: &str) {
    match state.keys.refresh().await {
        Ok(Refreshed::Unchanged) => {}
        Ok(Refreshed::Rotated {
            previous,
            key_pair_id,
        }) => tracing::info!(%key_pair_id, %previous, %secret, "key rotated"),
        Err(e) => {
            state.metrics.key_refresh_errors.inc();
            tracing::warn!(error = %e, "key refresh failed; the current key stays in use");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyhole_sign::{Policy, Request};

    #[test]
    fn half_key_pairs_are_named_not_overwritten() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("keys");
        std::fs::create_dir(&dir).unwrap();
        let fails = || {
            load(&KeySource::DataDir, data.path(), None, &[])
                .err()
                .unwrap()
        };
        std::fs::write(dir.join(keyfile::PUBLIC_KEY_FILE), "x").unwrap();
        let err = fails().to_string();
        assert!(err.contains("has public.pem but no private.pem"), "{err}");
        std::fs::remove_file(dir.join(keyfile::PUBLIC_KEY_FILE)).unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/nowhere/key.pem", dir.join(keyfile::PRIVATE_KEY_FILE))
                .unwrap();
            let err = fails().to_string();
            assert!(
                err.contains("is a link to a file that does not exist"),
                "{err}"
            );
            std::fs::remove_file(dir.join(keyfile::PRIVATE_KEY_FILE)).unwrap();
        }
        let err = load(&KeySource::DataDir, data.path(), Some("bad id!"), &[])
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("--key-pair-id: "), "{err}");
        // Nothing left over: a start with a good id makes the pair.
        assert!(load(&KeySource::DataDir, data.path(), None, &[]).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_readable_by_others_are_found() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, "x").unwrap();
        for (mode, flagged) in [
            (0o600, None),
            (0o400, None),
            (0o640, Some(0o640)),
            (0o644, Some(0o644)),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(readable_by_others(&path), flagged, "{mode:o}");
        }
    }

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
        assert_eq!(
            KeySource::parse("secretsmanager://prod/keyhole/signing-key"),
            Some(KeySource::SecretsManager {
                secret_id: "prod/keyhole/signing-key".into()
            })
        );
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyhole-AbCdEf";
        assert_eq!(
            KeySource::parse(&format!("secretsmanager://{arn}")),
            Some(KeySource::SecretsManager {
                secret_id: arn.into()
            })
        );
        assert_eq!(KeySource::parse("secretsmanager://"), None);
        assert_eq!(KeySource::parse("secretsmanager://a b"), None);
    }

    #[test]
    fn a_new_key_or_id_is_a_change() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let other = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let a = signer_for(key.clone(), None).unwrap();
        assert_eq!(
            a.key_pair_id(),
            key.public_key().unwrap().fingerprint_id().unwrap(),
            "without an id, the fingerprint id"
        );
        let same = signer_for(key.clone(), None).unwrap();
        assert!(!differs(&a, &same).unwrap());
        let renamed = signer_for(key, Some("KRENAMED".into())).unwrap();
        assert!(differs(&a, &renamed).unwrap());
        let rekeyed = signer_for(other, Some(a.key_pair_id().to_owned())).unwrap();
        assert!(differs(&a, &rekeyed).unwrap());
        assert!(signer_for(
            PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap(),
            Some("bad id!".into())
        )
        .is_err());
    }

    #[tokio::test]
    async fn keys_without_a_secret_refresh_to_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = open(&Config::with_data_dir(dir.path())).await.unwrap();
        assert!(loaded.refresh.is_none());
        let keys = Keys::new(loaded.signer, loaded.ring, "https://cdn.example.com").unwrap();
        assert_eq!(keys.refresh().await.unwrap(), Refreshed::Unchanged);
        let err = load(
            &KeySource::SecretsManager {
                secret_id: "k".into(),
            },
            dir.path(),
            None,
            &[],
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("secretsmanager://k"), "{err}");
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
