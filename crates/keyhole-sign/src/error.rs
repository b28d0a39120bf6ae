//! Errors raised while loading keys and while building signed URLs or cookies.
//!
//! Verification failures are not errors of the caller: they are [`crate::Rejection`]s.

use thiserror::Error;

/// A key could not be loaded, generated or used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text does not start with a PEM header.
    #[error("not a PEM key: expected text starting with -----BEGIN ...-----")]
    NotPem,
    /// The PEM or DER could not be parsed.
    #[error("the key could not be parsed: expected an RSA or ECDSA P-256 key in PKCS#1, PKCS#8 or SEC1 PEM (public keys: SubjectPublicKeyInfo PEM)")]
    Unparsable,
    /// The key is encrypted with a passphrase.
    #[error("the key is encrypted with a passphrase; decrypt it first (openssl pkey -in KEY -out PLAIN)")]
    Encrypted,
    /// A key type other than RSA or EC.
    #[error("unsupported key type: CloudFront signs with RSA or ECDSA (P-256) keys only")]
    UnsupportedType,
    /// An EC key on a curve other than P-256.
    #[error("unsupported curve: CloudFront's ECDSA keys use the P-256 (prime256v1) curve")]
    UnsupportedCurve,
    /// An RSA key of a size outside the accepted range.
    #[error("unsupported RSA key size {0} bits: use a 2048-bit key (1024 to 4096 accepted)")]
    RsaSize(u32),
    /// A private key was given where a public key is expected.
    #[error("this is a private key; give the public key (keyhole keys generate writes it beside the private key)")]
    PrivateWherePublic,
    /// The PEM text is larger than any supported key.
    #[error("the key text is too large to be a key")]
    TooLarge,
    /// Key generation failed inside the crypto library.
    #[error("key generation failed")]
    Generate,
    /// Encoding a key failed inside the crypto library.
    #[error("the key could not be encoded")]
    Encode,
    /// The crypto library could not produce a signature.
    #[error("signing failed")]
    Sign,
}

/// A signed URL or cookie set could not be built from the inputs given.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// The expiry or not-before time is not a plausible epoch time in seconds.
    #[error("expiry and not-before must be epoch seconds between 1 and 2147483647 (got {0}; milliseconds?)")]
    Expiry(u64),
    /// The not-before time is not before the expiry.
    #[error("not-before must be before expiry (not-before {not_before}, expiry {expires})")]
    NotBeforeAfterExpiry {
        /// The requested not-before time.
        not_before: u64,
        /// The requested expiry.
        expires: u64,
    },
    /// The IP condition is not an IPv4 address or CIDR block.
    #[error("ip must be an IPv4 CIDR such as 192.0.2.0/24 or a single address (got {0:?})")]
    Ip(String),
    /// The URL or resource is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// The URL or resource is longer than CloudFront accepts.
    #[error("{0} is longer than {1} bytes")]
    TooLong(&'static str, usize),
    /// The URL or resource contains a character that would change the policy or needs encoding.
    #[error("{what} must not contain {description}: percent-encode the URL first (Keyhole never re-encodes it)")]
    Character {
        /// `url` or `resource`.
        what: &'static str,
        /// A description of the offending character.
        description: &'static str,
    },
    /// The URL already carries one of CloudFront's signing parameters.
    #[error("url already has the reserved query parameter {0}; CloudFront would treat it as part of the signature")]
    ReservedParameter(&'static str),
    /// The URL is not absolute.
    #[error("url must be absolute (scheme://host/path)")]
    NotAbsolute,
    /// The policy's resource pattern does not cover the URL being signed.
    #[error("the resource pattern does not match the url, so the link would always be refused")]
    ResourceMismatch,
    /// The key pair id is empty or has characters that would need encoding.
    #[error("key pair id must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_' or '.'")]
    KeyPairId,
    /// The crypto library could not sign.
    #[error("signing failed")]
    Crypto,
}
