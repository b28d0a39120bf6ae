//! Sign and verify Amazon CloudFront signed URLs and signed cookies.
//!
//! `keyhole-sign` produces exactly the bytes the AWS SDKs produce (RSA PKCS#1 v1.5 signatures are
//! deterministic), so a link minted here works on CloudFront and a link minted by botocore or
//! `@aws-sdk/cloudfront-signer` verifies here. It supports canned and custom policies, RSA with
//! SHA-1 (CloudFront's default) or SHA-256, and ECDSA P-256, and its [`Verifier`] decides the way
//! CloudFront does, with CloudFront's error codes and a precise internal [`Reason`].
//!
//! The crate does no I/O and spawns nothing: keys come in as PEM text, links go out as strings.
//!
//! ```
//! use keyhole_sign::*;
//!
//! let key = PrivateKey::generate(KeyAlgorithm::Rsa)?;
//! let mut ring = KeyRing::new();
//! ring.insert("K2JCJMDEHXQW5F", key.public_key()?);
//! let signer = Signer::new("K2JCJMDEHXQW5F", key)?;
//!
//! // A custom policy: any file under /files/ from one network, until 2030.
//! let policy = Policy::custom(1893456000)?
//!     .with_resource("https://cdn.example.com/files/*")?
//!     .with_ip("198.51.100.0/24")?;
//! let url = signer.sign_url("https://cdn.example.com/files/report.pdf", &policy)?;
//!
//! let verifier = Verifier::new("https://cdn.example.com", ring)?;
//! let request = Request {
//!     target: url.strip_prefix("https://cdn.example.com").unwrap(),
//!     client_ip: Some("198.51.100.7".parse()?),
//!     now: 1767290400,
//!     cookies: None,
//! };
//! assert!(verifier.verify(&request).is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod encoding;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod key;
mod policy;
mod sign;
mod verify;

pub use error::{KeyError, SignError};
pub use key::{HashAlgorithm, KeyAlgorithm, PrivateKey, PublicKey};
pub use policy::{
    parse_policy, wildcard_match, Ipv4Cidr, ParsedPolicy, Policy, MAX_EPOCH, SIGNING_PARAMETERS,
};
pub use sign::{check_key_pair_id, SignedCookies, Signer};
pub use verify::{
    ErrorCode, KeyRing, OriginError, Reason, Rejection, Request, Source, Verified, Verifier,
    MAX_COOKIE_LEN, MAX_KEY_PAIR_ID_LEN, MAX_POLICY_LEN, MAX_SIGNATURE_LEN, MAX_TARGET_LEN,
};
