//! The signing key held in AWS Secrets Manager (or a stand-in such as moto): read at start-up and
//! read again on an interval, so a key rotated in the secret is picked up without a restart.
//!
//! The secret's value is either a private key PEM (PKCS#1 as Terraform's
//! `tls_private_key.private_key_pem` writes it, PKCS#8 or SEC1; literal `\n` sequences are
//! accepted) or a JSON object `{"private_key": "PEM", "key_pair_id": "K..."}` (`privateKey` and
//! `keyPairId` are accepted too), so the CloudFront public key id can travel with the key. The
//! value is wiped from memory once parsed, and no error message ever quotes it.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use aws_sdk_secretsmanager::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use keyhole_sign::PrivateKey;
use serde::Deserialize;
use zeroize::Zeroizing;

/// How long one Secrets Manager call may take, retries included, before it counts as a failure.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// How long connecting to Secrets Manager may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the key could not be read from Secrets Manager. Every message names the secret and what to
/// check; none quotes the secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// No AWS region is configured, so there is no Secrets Manager to ask.
    #[error(
        "no AWS region configured for Secrets Manager: set AWS_REGION (or a profile's region)"
    )]
    NoRegion,
    /// The secret does not exist (or is scheduled for deletion).
    #[error(
        "Secrets Manager secret {secret:?} was not found (check the name or ARN and the region; \
         a secret scheduled for deletion cannot be read): {detail}"
    )]
    NotFound {
        /// The secret's name or ARN.
        secret: String,
        /// What AWS said.
        detail: String,
    },
    /// The caller may not read the secret, or its credentials were refused.
    #[error(
        "access to Secrets Manager secret {secret:?} was denied (the credentials need \
         secretsmanager:GetSecretValue on it, and kms:Decrypt on its KMS key): {detail}"
    )]
    AccessDenied {
        /// The secret's name or ARN.
        secret: String,
        /// What AWS said.
        detail: String,
    },
    /// Secrets Manager did not answer (network, DNS, endpoint, timeout).
    #[error("Secrets Manager is unreachable while reading secret {secret:?}: {detail}")]
    Unreachable {
        /// The secret's name or ARN.
        secret: String,
        /// What failed.
        detail: String,
    },
    /// Any other error from Secrets Manager.
    #[error("reading Secrets Manager secret {secret:?} failed: {detail}")]
    Aws {
        /// The secret's name or ARN.
        secret: String,
        /// What AWS said.
        detail: String,
    },
    /// The secret was read but does not hold a usable key.
    #[error("Secrets Manager secret {secret:?}: {message}")]
    Content {
        /// The secret's name or ARN.
        secret: String,
        /// What is wrong and what is expected (never the value itself).
        message: String,
    },
}

/// A key read from a secret.
pub struct SecretKey {
    /// The private signing key.
    pub key: PrivateKey,
    /// The key pair id stored beside it (JSON form only).
    pub key_pair_id: Option<String>,
}

/// A Secrets Manager client bound to one secret.
#[derive(Clone, Debug)]
pub struct SecretKeySource {
    client: Client,
    secret_id: String,
}

/// A Secrets Manager client with Keyhole's TLS (rustls with ring, as the rest of Keyhole) and
/// bounded timeouts; credentials and region come from the standard AWS chain. `endpoint`
/// overrides the service address (a local stand-in such as moto); the region then defaults to
/// `us-east-1`.
pub async fn client(endpoint: Option<&str>) -> Result<Client, SecretError> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let mut config = loader.load().await;
    if config.region().is_none() && endpoint.is_some() {
        config = config
            .into_builder()
            .region(Region::new("us-east-1"))
            .build();
    }
    if config.region().is_none() {
        return Err(SecretError::NoRegion);
    }
    Ok(Client::new(&config))
}

impl SecretKeySource {
    /// A source reading `secret_id` (a name or an ARN), at `endpoint` when given.
    pub async fn connect(secret_id: &str, endpoint: Option<&str>) -> Result<Self, SecretError> {
        Ok(SecretKeySource {
            client: client(endpoint).await?,
            secret_id: secret_id.to_owned(),
        })
    }

    /// The secret's name or ARN.
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// Reads the secret's current version and parses the key in it.
    pub async fn fetch(&self) -> Result<SecretKey, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| classify(&self.secret_id, e))?;
        let content = |message: String| SecretError::Content {
            secret: self.secret_id.clone(),
            message,
        };
        if let Some(text) = out.secret_string() {
            let text = Zeroizing::new(text.to_owned());
            // The response (and its copy of the value) is dropped here; our copy is wiped below.
            drop(out);
            return parse_secret(&text).map_err(content);
        }
        match out.secret_binary() {
            Some(blob) => {
                let bytes = Zeroizing::new(blob.as_ref().to_vec());
                drop(out);
                match std::str::from_utf8(&bytes) {
                    Ok(text) => parse_secret(text).map_err(content),
                    Err(_) => PrivateKey::from_der(&bytes)
                        .map(|key| SecretKey {
                            key,
                            key_pair_id: None,
                        })
                        .map_err(|e| content(format!("the binary value is not a DER key: {e}"))),
                }
            }
            None => Err(content("the secret has no value".to_owned())),
        }
    }
}

/// The messages of `e` and its causes, joined. Only `Display` is used: the SDK's `Debug` output
/// (and so `DisplayErrorContext`) includes the raw response, which for a response that failed to
/// parse would be the secret's value.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// Sorts an SDK error into not found, access denied, unreachable or other, with the AWS error
/// code and message, or the chain of causes (the top level alone says only "dispatch failure").
fn classify(secret: &str, e: SdkError<GetSecretValueError>) -> SecretError {
    let secret = secret.to_owned();
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => SecretError::Unreachable {
            secret,
            detail: causes(&e),
        },
        SdkError::ServiceError(service) => {
            let err = service.err();
            let detail = format!(
                "{} (HTTP {}): {}",
                err.code().unwrap_or("unknown error"),
                service.raw().status().as_u16(),
                err.message().unwrap_or("no message")
            );
            if err.is_resource_not_found_exception() {
                return SecretError::NotFound { secret, detail };
            }
            match err.code() {
                Some(
                    "AccessDeniedException"
                    | "AccessDenied"
                    | "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "ExpiredTokenException"
                    | "DecryptionFailure",
                ) => SecretError::AccessDenied { secret, detail },
                _ => SecretError::Aws { secret, detail },
            }
        }
        _ => SecretError::Aws {
            secret,
            detail: causes(&e),
        },
    }
}

/// The JSON form of the secret. Unknown fields (a public key, notes) are ignored.
#[derive(Deserialize)]
struct KeyJson {
    #[serde(alias = "privateKey")]
    private_key: Option<String>,
    #[serde(alias = "keyPairId")]
    key_pair_id: Option<String>,
}

/// Parses a secret's text: a private key PEM, or the JSON object described in the module
/// documentation. Errors describe what is wrong without quoting the value.
pub fn parse_secret(text: &str) -> Result<SecretKey, String> {
    let trimmed = text.trim();
    if !trimmed.starts_with('{') {
        let key = PrivateKey::from_pem(trimmed).map_err(|e| {
            format!(
                "the value is not a private key PEM ({e}); expected a PEM or a JSON object \
                 {{\"private_key\": \"PEM\", \"key_pair_id\": \"ID\"}}"
            )
        })?;
        return Ok(SecretKey {
            key,
            key_pair_id: None,
        });
    }
    // serde_json's own messages may quote a value, so only the position and kind are reported.
    let parsed: KeyJson = serde_json::from_str(trimmed).map_err(|e| {
        format!(
            "the value starts with '{{' but is not a JSON object of strings ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let pem = Zeroizing::new(parsed.private_key.ok_or_else(|| {
        "the JSON object has no \"private_key\" (or \"privateKey\") field".to_owned()
    })?);
    let key = PrivateKey::from_pem(&pem)
        .map_err(|e| format!("\"private_key\" is not a private key PEM: {e}"))?;
    let key_pair_id = parsed
        .key_pair_id
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty());
    Ok(SecretKey { key, key_pair_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyhole_sign::KeyAlgorithm;

    fn pem(key: &PrivateKey) -> String {
        String::from_utf8(key.to_pem().unwrap().to_vec()).unwrap()
    }

    fn der(key: &PrivateKey) -> Vec<u8> {
        key.public_key().unwrap().to_der().unwrap()
    }

    #[test]
    fn pem_forms_parse() {
        let rsa = PrivateKey::generate(KeyAlgorithm::Rsa).unwrap();
        let text = pem(&rsa);
        assert!(
            text.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
            "PKCS#1"
        );
        let parsed = parse_secret(&text).unwrap();
        assert_eq!(der(&parsed.key), der(&rsa));
        assert_eq!(parsed.key_pair_id, None);
        // As pasted into a console or an environment variable: escaped newlines, blank edges.
        let escaped = format!("  {}\n", text.replace('\n', "\\n"));
        assert_eq!(der(&parse_secret(&escaped).unwrap().key), der(&rsa));
        let ec = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        assert_eq!(der(&parse_secret(&pem(&ec)).unwrap().key), der(&ec));
    }

    #[test]
    fn json_forms_parse() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let snake = serde_json::json!({"private_key": pem(&key), "key_pair_id": "K2JKUWBPMLK3ZE"});
        let parsed = parse_secret(&snake.to_string()).unwrap();
        assert_eq!(der(&parsed.key), der(&key));
        assert_eq!(parsed.key_pair_id.as_deref(), Some("K2JKUWBPMLK3ZE"));
        let camel = serde_json::json!({"privateKey": pem(&key), "keyPairId": "KCAMEL", "note": 1});
        let parsed = parse_secret(&camel.to_string()).unwrap();
        assert_eq!(parsed.key_pair_id.as_deref(), Some("KCAMEL"));
        let no_id = serde_json::json!({"private_key": pem(&key), "key_pair_id": ""});
        assert_eq!(parse_secret(&no_id.to_string()).unwrap().key_pair_id, None);
    }

    #[test]
    fn bad_values_are_refused_without_quoting_them() {
        let err = parse_secret("{\"key_pair_id\": \"K1\"}").err().unwrap();
        assert!(err.contains("private_key"), "{err}");
        let err = parse_secret("{\"private_key\": 12345678}").err().unwrap();
        assert!(!err.contains("12345678"), "{err}");
        let err = parse_secret("{\"private_key\": \"hunter2\"}")
            .err()
            .unwrap();
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse_secret("hunter2").err().unwrap();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(parse_secret("{not json").is_err());
    }
}
