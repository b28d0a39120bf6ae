//! Signing: signed URLs and signed cookies in CloudFront's exact format.

use crate::encoding;
use crate::error::SignError;
use crate::key::{HashAlgorithm, PrivateKey};
use crate::policy::{check_text, check_url, Policy};
use crate::verify::{MAX_POLICY_LEN, MAX_TARGET_LEN};

/// Mints CloudFront signed URLs and cookies with one private key.
///
/// The key is parsed once; a `Signer` is `Send + Sync`, so share one behind an `Arc`.
///
/// ```
/// use keyhole_sign::{KeyAlgorithm, Policy, PrivateKey, Signer};
/// let key = PrivateKey::generate(KeyAlgorithm::Rsa)?;
/// let signer = Signer::new("K2JCJMDEHXQW5F", key)?;
/// let url = signer.sign_url("https://cdn.example.com/files/a.pdf", &Policy::canned(1767290400)?)?;
/// assert!(url.starts_with("https://cdn.example.com/files/a.pdf?Expires=1767290400&Signature="));
/// assert!(url.ends_with("&Key-Pair-Id=K2JCJMDEHXQW5F"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Signer {
    key_pair_id: String,
    key: PrivateKey,
    hash: HashAlgorithm,
}

/// The cookies that grant what a policy allows, in the order CloudFront documents them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCookies {
    /// `(name, value)` pairs: `CloudFront-Expires` or `CloudFront-Policy`, `CloudFront-Signature`,
    /// `CloudFront-Key-Pair-Id`, and `CloudFront-Hash-Algorithm` when SHA-256 is used.
    pub cookies: Vec<(&'static str, String)>,
}

impl SignedCookies {
    /// The value by cookie name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The cookies as one `Cookie` request header value (`a=1; b=2`).
    pub fn to_cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Checks a key pair id: 1 to 128 characters of `A-Z a-z 0-9 - _ .`, which never need
/// percent-encoding in a URL.
pub fn check_key_pair_id(id: &str) -> Result<(), SignError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SignError::KeyPairId)
    }
}

/// Encodes a custom policy for the `Policy` parameter or cookie, refusing one longer than the
/// verifier accepts ([`MAX_POLICY_LEN`]): a link carrying it could never be used.
fn encode_policy(json: &str) -> Result<String, SignError> {
    let encoded = encoding::encode(json.as_bytes());
    if encoded.len() > MAX_POLICY_LEN {
        return Err(SignError::TooLong("the encoded policy", MAX_POLICY_LEN));
    }
    Ok(encoded)
}

impl Signer {
    /// A signer for `key_pair_id` (the CloudFront public key id) using the key's default digest:
    /// SHA-1 for RSA, SHA-256 for ECDSA.
    pub fn new(key_pair_id: impl Into<String>, key: PrivateKey) -> Result<Self, SignError> {
        let key_pair_id = key_pair_id.into();
        check_key_pair_id(&key_pair_id)?;
        let hash = key.algorithm().default_hash();
        Ok(Signer {
            key_pair_id,
            key,
            hash,
        })
    }

    /// The same signer with another digest; SHA-256 adds `Hash-Algorithm=SHA256` to every link.
    pub fn with_hash(mut self, hash: HashAlgorithm) -> Self {
        self.hash = hash;
        self
    }

    /// The key pair id placed in every link.
    pub fn key_pair_id(&self) -> &str {
        &self.key_pair_id
    }

    /// The digest in use.
    pub fn hash(&self) -> HashAlgorithm {
        self.hash
    }

    /// The private key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// Signs policy bytes and returns the CloudFront-base64 signature.
    pub fn sign_bytes(&self, policy: &[u8]) -> Result<String, SignError> {
        let signature = self
            .key
            .sign(policy, self.hash)
            .map_err(|_| SignError::Crypto)?;
        Ok(encoding::encode(&signature))
    }

    /// Signs `url` (already percent-encoded; it is never re-encoded) with `policy`, appending the
    /// parameters in CloudFront's order: `Expires` (canned) or `Policy` (custom), `Signature`,
    /// `Key-Pair-Id`, then `Hash-Algorithm` when SHA-256 is used. The separator is `&` when the URL
    /// already has a `?`, as botocore does.
    ///
    /// A link the [`crate::Verifier`] would refuse for its size (an encoded policy over
    /// [`MAX_POLICY_LEN`], a path and query over [`MAX_TARGET_LEN`]) is refused here instead.
    pub fn sign_url(&self, url: &str, policy: &Policy) -> Result<String, SignError> {
        let path_start = check_url(url)?;
        if let Some(pattern) = policy.resource() {
            // CloudFront matches the pattern against the URL; one that cannot match makes a
            // link that is refused every time.
            if !crate::policy::wildcard_match(pattern, url) {
                return Err(SignError::ResourceMismatch);
            }
        }
        let json = policy.to_json(url)?;
        let encoded_policy = if policy.is_custom() {
            Some(encode_policy(&json)?)
        } else {
            None
        };
        let signature = self.sign_bytes(json.as_bytes())?;
        let mut out = String::with_capacity(url.len() + json.len() * 4 / 3 + signature.len() + 96);
        out.push_str(url);
        out.push(if url.contains('?') { '&' } else { '?' });
        if let Some(encoded) = encoded_policy {
            out.push_str("Policy=");
            out.push_str(&encoded);
        } else {
            out.push_str("Expires=");
            out.push_str(&policy.expires().to_string());
        }
        out.push_str("&Signature=");
        out.push_str(&signature);
        out.push_str("&Key-Pair-Id=");
        out.push_str(&self.key_pair_id);
        if self.hash == HashAlgorithm::Sha256 {
            out.push_str("&Hash-Algorithm=SHA256");
        }
        if out.len() - path_start > MAX_TARGET_LEN {
            return Err(SignError::TooLong(
                "the signed url's path and query",
                MAX_TARGET_LEN,
            ));
        }
        Ok(out)
    }

    /// Signs cookies that grant `policy` for `resource` (the URL for a canned policy; the default
    /// resource of a custom one). An encoded policy over [`MAX_POLICY_LEN`] is refused, as the
    /// verifier would refuse it. A canned policy is rebuilt from the URL of each request, so its
    /// resource must be one absolute URL, checked as [`Signer::sign_url`] checks URLs; cookies for
    /// many URLs need a custom policy with a pattern.
    pub fn sign_cookies(
        &self,
        resource: &str,
        policy: &Policy,
    ) -> Result<SignedCookies, SignError> {
        if !policy.is_custom() {
            check_text("resource", resource)?;
            check_url(resource)?;
        }
        let json = policy.to_json(resource)?;
        let encoded_policy = if policy.is_custom() {
            Some(encode_policy(&json)?)
        } else {
            None
        };
        let signature = self.sign_bytes(json.as_bytes())?;
        let mut cookies = Vec::with_capacity(4);
        if let Some(encoded) = encoded_policy {
            cookies.push(("CloudFront-Policy", encoded));
        } else {
            cookies.push(("CloudFront-Expires", policy.expires().to_string()));
        }
        cookies.push(("CloudFront-Signature", signature));
        cookies.push(("CloudFront-Key-Pair-Id", self.key_pair_id.clone()));
        if self.hash == HashAlgorithm::Sha256 {
            cookies.push(("CloudFront-Hash-Algorithm", "SHA256".to_owned()));
        }
        Ok(SignedCookies { cookies })
    }
}
