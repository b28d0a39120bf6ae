//! The Lambda's configuration: the same `KEYHOLE_*` environment variables as `keyhole serve`,
//! parsed by keyhole's own [`ServeArgs`] so every variable means exactly what
//! `docs/configuration.md` says, plus the few constraints of running in Lambda.

use std::path::PathBuf;

use clap::{Args, FromArgMatches};
use keyhole::config::{Config, ConfigError, Metadata, ServeArgs, Storage};

/// Where the Lambda keeps its data directory unless `KEYHOLE_DATA_DIR` says otherwise: `/tmp` is
/// the only writable place in a Lambda container. Nothing durable lives there (objects are in
/// S3, records in DynamoDB or PostgreSQL, the key in Secrets Manager).
pub const DEFAULT_DATA_DIR: &str = "/tmp/keyhole-data";

/// Why the environment does not describe a usable Lambda configuration.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A `KEYHOLE_*` variable has an unusable value (the same checks as `keyhole serve`).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A variable could not be read as the type it needs (e.g. a number or a log format).
    #[error("environment: {0}")]
    Environment(String),
    /// `KEYHOLE_PUBLIC_URL` is missing: links would carry `http://127.0.0.1:8080`.
    #[error(
        "KEYHOLE_PUBLIC_URL is not set: signed links must carry the CloudFront distribution's \
         domain, e.g. https://files.example.com"
    )]
    NoPublicUrl,
    /// Objects on the container's disk would vanish with the container.
    #[error(
        "KEYHOLE_STORAGE must be s3://BUCKET[/PREFIX] on Lambda: a container's disk is not \
         shared and does not last"
    )]
    LocalStorage,
    /// Records in SQLite on the container's disk would vanish with the container.
    #[error(
        "KEYHOLE_METADATA must be dynamodb://TABLE or postgres://... on Lambda: an SQLite file \
         in the container does not last"
    )]
    LocalMetadata,
}

/// Reads the configuration from the process environment (`KEYHOLE_*`, and a TOML file named by
/// `KEYHOLE_CONFIG` if set) and checks it with [`check`]. `KEYHOLE_LISTEN` has no meaning here
/// and is ignored; `KEYHOLE_DATA_DIR` defaults to [`DEFAULT_DATA_DIR`].
pub fn from_env() -> Result<Config, SettingsError> {
    let command =
        ServeArgs::augment_args(clap::Command::new("keyhole-lambda").no_binary_name(true));
    let matches = command
        .try_get_matches_from(std::iter::empty::<String>())
        .map_err(|e| SettingsError::Environment(e.to_string().trim().to_owned()))?;
    let args = ServeArgs::from_arg_matches(&matches)
        .map_err(|e| SettingsError::Environment(e.to_string().trim().to_owned()))?;
    from_args(args)
}

/// [`from_env`] once the variables are read: resolves `args` (and the file they name) and checks
/// the result.
pub fn from_args(mut args: ServeArgs) -> Result<Config, SettingsError> {
    // Lambda listens on nothing: requests arrive as events. The loopback-only rule of `serve`
    // is replaced by the per-request rule in `api_gateway` (tokens or API Gateway's JWT
    // authorizer), so the listen address stays the default.
    args.listen = None;
    if args.data_dir.is_none() {
        args.data_dir = Some(PathBuf::from(DEFAULT_DATA_DIR));
    }
    let explicit_url = args.public_url.is_some();
    let config = args.resolve()?;
    // Without one, from the variable or the file, links would carry the listen address.
    if !explicit_url && config.public_url == format!("http://{}", config.listen) {
        return Err(SettingsError::NoPublicUrl);
    }
    check(&config)?;
    Ok(config)
}

/// The Lambda's own constraints on a configuration: shared, durable stores only.
pub fn check(config: &Config) -> Result<(), SettingsError> {
    if matches!(config.storage, Storage::Local) {
        return Err(SettingsError::LocalStorage);
    }
    if matches!(config.metadata, Metadata::Sqlite(_)) {
        return Err(SettingsError::LocalMetadata);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyhole.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const STORES: &str = "storage = \"s3://files\"\nmetadata = \"dynamodb://records\"\n";

    #[test]
    fn the_public_url_may_come_from_the_file() {
        let (_dir, path) = file(&format!(
            "{STORES}public_url = \"https://files.example.com\"\n"
        ));
        let config = from_args(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.public_url, "https://files.example.com");
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn any_origin_is_allowed_without_tokens_behind_api_gateway() {
        // Every request is authenticated there (tokens or a JWT authorizer), unlike the
        // token-less API of `keyhole serve` on loopback.
        let (_dir, path) = file(&format!(
            "{STORES}public_url = \"https://files.example.com\"\ncors_origins = [\"*\"]\n"
        ));
        let config = from_args(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.cors_origins, ["*"]);
        assert!(config.tokens.is_empty());
    }

    #[test]
    fn without_a_public_url_anywhere_start_fails() {
        let (_dir, path) = file(STORES);
        let err = from_args(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, SettingsError::NoPublicUrl), "{err}");
        let err = from_args(ServeArgs {
            storage: Some("local".into()),
            metadata: Some("dynamodb://records".into()),
            public_url: Some("https://files.example.com".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, SettingsError::LocalStorage), "{err}");
    }
}
