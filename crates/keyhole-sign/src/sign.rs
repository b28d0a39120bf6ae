//! Signing: signed URLs and signed cookies in CloudFront's exact format.

use crate::encoding;
use crate::error::SignError;
use crate::key::{HashAlgorithm, PrivateKey};
use crate::policy::{check_text, check_url, wildcard_match, Policy};
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

/// Checks the URL a link or cookies are for, as CloudFront will see it requested: absolute, safe
/// to place verbatim in a policy and free of signing parameters ([`check_url`]), and covered by
/// the policy's resource pattern if it has one. Either failure would make something that is
/// refused every time. Returns where the URL's path starts.
fn check_target(url: &str, policy: &Policy) -> Result<usize, SignError> {
    let path_start = check_url(url)?;
    if let Some(pattern) = policy.resource() {
        if !wildcard_match(pattern, url) {
            return Err(SignError::ResourceMismatch);
        }
    }
    Ok(path_start)
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
        let path_start = check_target(url, policy)?;
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

    /// Signs cookies that grant `policy` for `resource`, which is checked as [`Signer::sign_url`]
    /// checks its URL, so cookies that could never be used are refused rather than signed:
    ///
    /// - canned policy: `resource` is the one absolute URL the cookies open (CloudFront rebuilds
    ///   the policy from each request's URL);
    /// - custom policy without [`Policy::with_resource`]: `resource` becomes the policy's
    ///   `Resource` and may hold wildcards (`https://cdn.example.com/files/*`), but must be an
    ///   absolute URL: CloudFront matches it against absolute URLs, so a relative `/files/*`
    ///   would never match ([`SignError::NotAbsolute`]);
    /// - custom policy with a pattern: the pattern is what the cookies grant, and `resource` is a
    ///   URL they are for, which the pattern must cover (the pattern itself does when it is an
    ///   absolute URL). A `resource` the pattern does not cover is refused with
    ///   [`SignError::ResourceMismatch`] rather than ignored, since the caller asked for two
    ///   different things. A pattern that is no absolute URL (`http*://...`) is given this way,
    ///   with a URL it covers.
    ///
    /// An encoded policy over [`MAX_POLICY_LEN`] is refused, as the verifier would refuse it.
    ///
    /// ```
    /// use keyhole_sign::{KeyAlgorithm, Policy, PrivateKey, SignError, Signer};
    /// let signer = Signer::new("K2JCJMDEHXQW5F", PrivateKey::generate(KeyAlgorithm::EcdsaP256)?)?;
    /// let files = Policy::custom(1767290400)?.with_resource("https://cdn.example.com/files/*")?;
    /// assert!(signer.sign_cookies("https://cdn.example.com/files/a.pdf", &files).is_ok());
    /// assert!(signer.sign_cookies("https://cdn.example.com/files/*", &files).is_ok());
    /// assert_eq!(
    ///     signer.sign_cookies("https://cdn.example.com/video.mp4", &files),
    ///     Err(SignError::ResourceMismatch)
    /// );
    /// let relative = signer.sign_cookies("/files/*", &Policy::custom(1767290400)?);
    /// assert_eq!(relative, Err(SignError::NotAbsolute));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sign_cookies(
        &self,
        resource: &str,
        policy: &Policy,
    ) -> Result<SignedCookies, SignError> {
        // Checked under its own name first, so a bad character is reported for `resource`.
        check_text("resource", resource)?;
        check_target(resource, policy)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyAlgorithm;

    const EXPIRES: u64 = 1_767_290_400;

    fn signer() -> Signer {
        Signer::new("K1", PrivateKey::generate(KeyAlgorithm::Rsa).unwrap()).unwrap()
    }

    #[test]
    fn custom_cookies_for_a_resource_that_cannot_match_are_refused() {
        let signer = signer();
        let custom = Policy::custom(EXPIRES).unwrap();
        for relative in ["/files/*", "files/*", "cdn.example.com/files/*"] {
            assert_eq!(
                signer.sign_cookies(relative, &custom),
                Err(SignError::NotAbsolute),
                "{relative}"
            );
        }
        assert_eq!(
            signer.sign_cookies("https://cdn.example.com/files/*?Signature=1", &custom),
            Err(SignError::ReservedParameter("Signature"))
        );
        let cookies = signer
            .sign_cookies("https://cdn.example.com/files/*", &custom)
            .unwrap();
        let policy = cookies.get("CloudFront-Policy").unwrap();
        let json = String::from_utf8(encoding::decode(policy).unwrap()).unwrap();
        assert!(json.contains(r#""Resource":"https://cdn.example.com/files/*""#));
    }

    #[test]
    fn cookies_for_a_url_their_pattern_does_not_cover_are_refused() {
        let signer = signer();
        let files = Policy::custom(EXPIRES)
            .unwrap()
            .with_resource("https://cdn.example.com/files/*")
            .unwrap();
        assert_eq!(
            signer.sign_cookies("https://cdn.example.com/video.mp4", &files),
            Err(SignError::ResourceMismatch)
        );
        assert_eq!(
            signer.sign_cookies("/files/a.pdf", &files),
            Err(SignError::NotAbsolute)
        );
        // A covered URL, or the pattern itself, signs the pattern: the same cookies.
        let for_url = signer
            .sign_cookies("https://cdn.example.com/files/a.pdf", &files)
            .unwrap();
        let for_pattern = signer
            .sign_cookies("https://cdn.example.com/files/*", &files)
            .unwrap();
        assert_eq!(for_url, for_pattern);
        // The same rule as for links.
        assert_eq!(
            signer.sign_url("https://cdn.example.com/video.mp4", &files),
            Err(SignError::ResourceMismatch)
        );
        // A pattern that is no absolute URL itself is given with a URL it covers.
        let any_scheme = Policy::custom(EXPIRES)
            .unwrap()
            .with_resource("http*://cdn.example.com/*")
            .unwrap();
        assert!(signer
            .sign_cookies("https://cdn.example.com/a.txt", &any_scheme)
            .is_ok());
    }
}
