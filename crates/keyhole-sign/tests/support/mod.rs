//! Helpers shared by the integration tests: keys generated once per test binary, a verifier that
//! trusts them, the verifier for the AWS test vectors, and request builders.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::OnceLock;

use keyhole_sign::{
    HashAlgorithm, KeyAlgorithm, KeyRing, PrivateKey, PublicKey, Request, Signer, Verifier,
};

/// The public origin the generated links are minted for.
pub const ORIGIN: &str = "https://cdn.example.com";
/// Key pair id of the generated RSA-2048 key.
pub const RSA_ID: &str = "K2JCJMDEHXQW5F";
/// Key pair id of the generated P-256 key (differs from [`RSA_ID`] in every position).
pub const EC_ID: &str = "APXZN3YRQ7ABCD";

/// Keys generated once per test binary (RSA key generation takes a noticeable fraction of a
/// second).
pub struct Keys {
    /// RSA-2048 private key, trusted as [`RSA_ID`].
    pub rsa: PrivateKey,
    /// ECDSA P-256 private key, trusted as [`EC_ID`].
    pub ec: PrivateKey,
    /// A verifier for [`ORIGIN`] that trusts both keys.
    pub verifier: Verifier,
}

/// The shared keys and verifier.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = PrivateKey::generate(KeyAlgorithm::Rsa).expect("RSA key generation");
        let ec = PrivateKey::generate(KeyAlgorithm::EcdsaP256).expect("P-256 key generation");
        let mut ring = KeyRing::new();
        ring.insert(RSA_ID, rsa.public_key().expect("RSA public key"));
        ring.insert(EC_ID, ec.public_key().expect("P-256 public key"));
        let verifier = Verifier::new(ORIGIN, ring).expect("valid origin");
        Keys { rsa, ec, verifier }
    })
}

/// A signer for the shared key of `algorithm` with the given digest.
pub fn signer(algorithm: KeyAlgorithm, hash: HashAlgorithm) -> Signer {
    let keys = keys();
    let (id, key) = match algorithm {
        KeyAlgorithm::Rsa => (RSA_ID, keys.rsa.clone()),
        KeyAlgorithm::EcdsaP256 => (EC_ID, keys.ec.clone()),
    };
    Signer::new(id, key)
        .expect("valid key pair id")
        .with_hash(hash)
}

/// The request target (path and query) of a URL under [`ORIGIN`].
pub fn target_of(url: &str) -> &str {
    url.strip_prefix(ORIGIN)
        .unwrap_or_else(|| panic!("{url} is not under {ORIGIN}"))
}

/// A request without cookies or client address.
pub fn request(target: &str, now: u64) -> Request<'_> {
    Request {
        target,
        client_ip: None,
        now,
        cookies: None,
    }
}

/// A request with a client address.
pub fn request_from<'a>(target: &'a str, ip: &str, now: u64) -> Request<'a> {
    Request {
        client_ip: Some(ip.parse::<IpAddr>().expect("test IP")),
        ..request(target, now)
    }
}

/// The origin of the AWS test vectors in `tests/data/cases.json`.
pub const VECTOR_ORIGIN: &str = "https://d111111abcdef8.cloudfront.net";
/// A moment inside the validity window of every test vector (2026-01-01T00:00:00Z).
pub const VECTOR_NOW: u64 = 1_767_225_600;

/// A verifier for [`VECTOR_ORIGIN`] trusting the test vectors' public keys as `K1TESTKEY` (RSA)
/// and `K2ECDSATEST` (P-256).
pub fn vector_verifier() -> Verifier {
    let mut ring = KeyRing::new();
    for (id, pem) in [
        ("K1TESTKEY", include_str!("../data/test-rsa-key-public.pem")),
        (
            "K2ECDSATEST",
            include_str!("../data/test-ecdsa-key-public.pem"),
        ),
    ] {
        ring.insert(
            id,
            PublicKey::from_pem(pem).expect("test vector public key"),
        );
    }
    Verifier::new(VECTOR_ORIGIN, ring).expect("valid origin")
}

/// A signer with a test vector private key (`rsa` or `ecdsa`).
pub fn vector_signer(algorithm: KeyAlgorithm) -> Signer {
    let (id, pem) = match algorithm {
        KeyAlgorithm::Rsa => ("K1TESTKEY", include_str!("../data/test-rsa-key.pem")),
        KeyAlgorithm::EcdsaP256 => ("K2ECDSATEST", include_str!("../data/test-ecdsa-key.pem")),
    };
    let key = PrivateKey::from_pem(pem).expect("test vector private key");
    Signer::new(id, key).expect("valid key pair id")
}
