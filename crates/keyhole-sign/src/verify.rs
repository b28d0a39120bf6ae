//! Verification: decides, as CloudFront does, whether a request carries a valid signed URL or
//! signed cookies for the resource it asks for.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crate::encoding;
use crate::key::{HashAlgorithm, PublicKey};
use crate::policy::{canned_json, parse_policy, wildcard_match, ParsedPolicy};

/// Longest request target (path and query) examined.
pub const MAX_TARGET_LEN: usize = 16 * 1024;
/// Longest `Cookie` header examined.
pub const MAX_COOKIE_LEN: usize = 16 * 1024;
/// Longest encoded `Policy` value accepted.
pub const MAX_POLICY_LEN: usize = 8 * 1024;
/// Longest encoded `Signature` value accepted (an RSA-4096 signature is 684 characters).
pub const MAX_SIGNATURE_LEN: usize = 1024;
/// Longest `Key-Pair-Id` accepted.
pub const MAX_KEY_PAIR_ID_LEN: usize = 128;

/// The error code CloudFront returns (in a 403 XML body) when it refuses a signed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No `Key-Pair-Id` (or no signature at all).
    MissingKey,
    /// The `Key-Pair-Id` names no trusted key (`Unknown Key`).
    InvalidKey,
    /// The signature or hash algorithm cannot be decoded.
    MalformedSignature,
    /// The policy (or expiry) cannot be decoded or parsed.
    MalformedPolicy,
    /// Well formed, but the signature, time, resource or IP does not allow the request.
    AccessDenied,
}

impl ErrorCode {
    /// The code as CloudFront writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MissingKey => "MissingKey",
            ErrorCode::InvalidKey => "InvalidKey",
            ErrorCode::MalformedSignature => "MalformedSignature",
            ErrorCode::MalformedPolicy => "MalformedPolicy",
            ErrorCode::AccessDenied => "AccessDenied",
        }
    }

    /// The message CloudFront sends with the code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::MissingKey => "Missing Key-Pair-Id query parameter or cookie value",
            ErrorCode::InvalidKey => "Unknown Key",
            ErrorCode::MalformedSignature => "Malformed Signature",
            ErrorCode::MalformedPolicy => "Malformed Policy",
            ErrorCode::AccessDenied => "Access denied",
        }
    }

    /// The XML body CloudFront answers a refused request with (status 403).
    ///
    /// ```
    /// assert_eq!(
    ///     keyhole_sign::ErrorCode::InvalidKey.to_xml(),
    ///     r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidKey</Code><Message>Unknown Key</Message></Error>"#
    /// );
    /// ```
    pub fn to_xml(self) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>{}</Code><Message>{}</Message></Error>"#,
            self.as_str(),
            self.message()
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The precise reason for a refusal: for logs and metrics, never for the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Neither signing parameters nor signing cookies.
    NoSignature,
    /// Signing parameters without a `Key-Pair-Id`.
    MissingKeyPairId,
    /// The key id is not in the key ring.
    UnknownKey,
    /// No `Signature` value.
    MissingSignature,
    /// The signature is not valid CloudFront base64 or is too long.
    MalformedSignature,
    /// `Hash-Algorithm` is neither `SHA1` nor `SHA256`.
    UnsupportedHashAlgorithm,
    /// Neither `Expires` nor `Policy`, or both.
    MissingPolicy,
    /// The policy or expiry cannot be decoded or parsed.
    MalformedPolicy,
    /// A signing parameter appears twice.
    DuplicateParameter,
    /// The request target or a cookie header exceeds the bounds.
    TooLarge,
    /// The request target is not an origin-form path.
    MalformedRequest,
    /// The signature does not match the policy and key.
    BadSignature,
    /// The time is at or past `DateLessThan`.
    Expired,
    /// The time is at or before `DateGreaterThan`.
    NotYetValid,
    /// The policy's resource does not cover the requested URL.
    ResourceMismatch,
    /// The client address is outside the policy's IP range (or unknown).
    IpMismatch,
}

impl Reason {
    /// A stable snake_case label (for metrics and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoSignature => "no_signature",
            Reason::MissingKeyPairId => "missing_key_pair_id",
            Reason::UnknownKey => "unknown_key",
            Reason::MissingSignature => "missing_signature",
            Reason::MalformedSignature => "malformed_signature",
            Reason::UnsupportedHashAlgorithm => "unsupported_hash_algorithm",
            Reason::MissingPolicy => "missing_policy",
            Reason::MalformedPolicy => "malformed_policy",
            Reason::DuplicateParameter => "duplicate_parameter",
            Reason::TooLarge => "too_large",
            Reason::MalformedRequest => "malformed_request",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::ResourceMismatch => "resource_mismatch",
            Reason::IpMismatch => "ip_mismatch",
        }
    }

    /// Every reason, for pre-registering metric labels.
    pub const ALL: [Reason; 16] = [
        Reason::NoSignature,
        Reason::MissingKeyPairId,
        Reason::UnknownKey,
        Reason::MissingSignature,
        Reason::MalformedSignature,
        Reason::UnsupportedHashAlgorithm,
        Reason::MissingPolicy,
        Reason::MalformedPolicy,
        Reason::DuplicateParameter,
        Reason::TooLarge,
        Reason::MalformedRequest,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::ResourceMismatch,
        Reason::IpMismatch,
    ];
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: what CloudFront would answer, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The code sent to the client.
    pub code: ErrorCode,
    /// The precise reason, kept server-side.
    pub reason: Reason,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code, self.reason)
    }
}

impl std::error::Error for Rejection {}

fn reject(code: ErrorCode, reason: Reason) -> Rejection {
    Rejection { code, reason }
}

/// Where the signature came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Query parameters of the URL.
    Url,
    /// `CloudFront-*` cookies.
    Cookies,
}

/// What an accepted request was granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The key that signed it.
    pub key_pair_id: String,
    /// Epoch seconds after which the grant ends.
    pub expires: u64,
    /// Whether a custom policy was used.
    pub custom_policy: bool,
    /// URL parameters or cookies.
    pub source: Source,
    /// The digest that was used.
    pub hash: HashAlgorithm,
}

/// The trusted public keys by key pair id (CloudFront's key group). Several keys may be trusted
/// at once so links signed with an old key keep working through a rotation.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: HashMap<String, PublicKey>,
}

impl KeyRing {
    /// An empty key ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `key` under `key_pair_id`, replacing any key of that id.
    pub fn insert(&mut self, key_pair_id: impl Into<String>, key: PublicKey) {
        self.keys.insert(key_pair_id.into(), key);
    }

    /// The key of an id.
    pub fn get(&self, key_pair_id: &str) -> Option<&PublicKey> {
        self.keys.get(key_pair_id)
    }

    /// Number of trusted keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted key ids.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

/// One request to check, as received: the raw request target, never a decoded or normalised path.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Path and query exactly as on the request line, e.g. `/files/a.pdf?Expires=...`.
    pub target: &'a str,
    /// The client address, for `IpAddress` conditions.
    pub client_ip: Option<IpAddr>,
    /// The current time in epoch seconds.
    pub now: u64,
    /// The `Cookie` header, if any (several headers joined with `; `).
    pub cookies: Option<&'a str>,
}

/// Checks requests against a key ring for one public origin (`scheme://host[:port]`), the way
/// CloudFront does for a distribution that trusts that key group.
///
/// ```
/// use keyhole_sign::*;
/// let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256)?;
/// let mut ring = KeyRing::new();
/// ring.insert("K1", key.public_key()?);
/// let verifier = Verifier::new("https://cdn.example.com", ring)?;
/// let url = Signer::new("K1", key)?.sign_url("https://cdn.example.com/files/a", &Policy::canned(2000)?)?;
/// let target = url.strip_prefix("https://cdn.example.com").unwrap();
/// let req = |now| Request { target, client_ip: None, now, cookies: None };
/// assert!(verifier.verify(&req(1999)).is_ok());
/// assert_eq!(verifier.verify(&req(2000)).unwrap_err().reason, Reason::Expired);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Verifier {
    origin: String,
    ring: KeyRing,
}

/// The public origin is not `scheme://host[:port]`.
#[derive(Debug, thiserror::Error)]
#[error("public origin must be scheme://host[:port] with no path, query or spaces (got {0:?})")]
pub struct OriginError(pub String);

/// Values of the five signing fields, from the URL or the cookies.
#[derive(Default)]
struct Fields<'a> {
    expires: Option<&'a str>,
    policy: Option<&'a str>,
    signature: Option<&'a str>,
    key_pair_id: Option<&'a str>,
    hash: Option<&'a str>,
    duplicate: bool,
}

impl<'a> Fields<'a> {
    fn set(&mut self, name: &str, value: &'a str) -> bool {
        let slot = match name {
            "Expires" => &mut self.expires,
            "Policy" => &mut self.policy,
            "Signature" => &mut self.signature,
            "Key-Pair-Id" => &mut self.key_pair_id,
            "Hash-Algorithm" => &mut self.hash,
            _ => return false,
        };
        if slot.is_some() {
            self.duplicate = true;
        } else {
            *slot = Some(value);
        }
        true
    }

    fn any(&self) -> bool {
        self.expires.is_some()
            || self.policy.is_some()
            || self.signature.is_some()
            || self.key_pair_id.is_some()
            || self.hash.is_some()
    }
}

/// Decodes `%XX` escapes (some clients escape `~` as `%7E`). `None` for a bad escape or bytes
/// that are not UTF-8.
fn percent_decode(value: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !value.contains('%') {
        return Some(std::borrow::Cow::Borrowed(value));
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(std::borrow::Cow::Owned)
}

impl Verifier {
    /// A verifier for requests arriving at `origin` (e.g. `https://cdn.example.com`).
    pub fn new(origin: &str, ring: KeyRing) -> Result<Self, OriginError> {
        let origin = origin.trim_end_matches('/');
        let valid = match origin.split_once("://") {
            Some((scheme, host)) => {
                !scheme.is_empty()
                    && scheme.bytes().all(|b| b.is_ascii_alphanumeric())
                    && !host.is_empty()
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"/?#\"\\".contains(&b))
            }
            None => false,
        };
        if !valid {
            return Err(OriginError(origin.to_owned()));
        }
        Ok(Verifier {
            origin: origin.to_owned(),
            ring,
        })
    }

    /// The origin requests are checked against.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The trusted keys.
    pub fn key_ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Decides whether CloudFront would serve `request`. Signing parameters in the URL take
    /// precedence over cookies; a canned policy is rebuilt from the URL minus the signing
    /// parameters; a custom policy is verified over its decoded bytes and then parsed.
    pub fn verify(&self, request: &Request<'_>) -> Result<Verified, Rejection> {
        let target = request.target;
        if target.len() > MAX_TARGET_LEN {
            return Err(reject(ErrorCode::AccessDenied, Reason::TooLarge));
        }
        if !target.starts_with('/') || target.contains('#') {
            return Err(reject(ErrorCode::AccessDenied, Reason::MalformedRequest));
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };

        // The URL's own parameters, minus the signing ones, form the resource.
        let mut fields = Fields::default();
        let mut kept: Vec<&str> = Vec::new();
        if let Some(query) = query {
            for pair in query.split('&') {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                if !fields.set(name, value) {
                    kept.push(pair);
                }
            }
        }
        let source = if fields.any() {
            Source::Url
        } else {
            fields = Fields::default();
            if let Some(header) = request.cookies {
                if header.len() > MAX_COOKIE_LEN {
                    return Err(reject(ErrorCode::AccessDenied, Reason::TooLarge));
                }
                for cookie in header.split(';') {
                    let (name, value) =
                        cookie.trim().split_once('=').unwrap_or((cookie.trim(), ""));
                    let Some(field) = name.strip_prefix("CloudFront-") else {
                        continue;
                    };
                    // Browsers may send a cookie twice (different paths); the first wins.
                    let mut one = Fields::default();
                    if one.set(field, value) {
                        merge_first(&mut fields, one);
                    }
                }
            }
            if !fields.any() {
                return Err(reject(ErrorCode::MissingKey, Reason::NoSignature));
            }
            Source::Cookies
        };
        if fields.duplicate {
            return Err(reject(ErrorCode::AccessDenied, Reason::DuplicateParameter));
        }

        let key_pair_id = match fields.key_pair_id.map(percent_decode) {
            None => return Err(reject(ErrorCode::MissingKey, Reason::MissingKeyPairId)),
            Some(Some(id)) if !id.is_empty() => id,
            Some(_) => return Err(reject(ErrorCode::MissingKey, Reason::MissingKeyPairId)),
        };
        if key_pair_id.len() > MAX_KEY_PAIR_ID_LEN {
            return Err(reject(ErrorCode::InvalidKey, Reason::UnknownKey));
        }
        let Some(key) = self.ring.get(&key_pair_id) else {
            return Err(reject(ErrorCode::InvalidKey, Reason::UnknownKey));
        };

        let hash = match fields.hash.map(percent_decode) {
            None => HashAlgorithm::Sha1,
            Some(Some(h)) => HashAlgorithm::from_param(&h).ok_or(reject(
                ErrorCode::MalformedSignature,
                Reason::UnsupportedHashAlgorithm,
            ))?,
            Some(None) => {
                return Err(reject(
                    ErrorCode::MalformedSignature,
                    Reason::UnsupportedHashAlgorithm,
                ))
            }
        };

        let signature = match fields.signature {
            None | Some("") => {
                return Err(reject(
                    ErrorCode::MalformedSignature,
                    Reason::MissingSignature,
                ))
            }
            Some(s) if s.len() > MAX_SIGNATURE_LEN => {
                return Err(reject(
                    ErrorCode::MalformedSignature,
                    Reason::MalformedSignature,
                ))
            }
            Some(s) => percent_decode(s)
                .and_then(|s| encoding::decode(&s))
                .ok_or(reject(
                    ErrorCode::MalformedSignature,
                    Reason::MalformedSignature,
                ))?,
        };

        let malformed_policy = reject(ErrorCode::MalformedPolicy, Reason::MalformedPolicy);
        let resource_url = || {
            let mut url = String::with_capacity(self.origin.len() + target.len());
            url.push_str(&self.origin);
            url.push_str(path);
            if !kept.is_empty() {
                url.push('?');
                url.push_str(&kept.join("&"));
            }
            url
        };
        let (policy_bytes, custom) = match (fields.expires, fields.policy) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(reject(ErrorCode::MalformedPolicy, Reason::MissingPolicy))
            }
            (Some(expires), None) => {
                // Digits exactly as sent: no escapes (no signer writes any), no other spelling.
                if expires.is_empty()
                    || expires.len() > 19
                    || !expires.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(malformed_policy);
                }
                // The policy is rebuilt from the digits as sent, as CloudFront does: another
                // spelling of the same time (`01767290400`) is not what was signed.
                (canned_json(&resource_url(), expires).into_bytes(), false)
            }
            (None, Some(policy)) => {
                if policy.len() > MAX_POLICY_LEN {
                    return Err(malformed_policy);
                }
                let bytes = percent_decode(policy)
                    .and_then(|p| encoding::decode(&p))
                    .ok_or(malformed_policy)?;
                (bytes, true)
            }
        };

        if !key.verify(&policy_bytes, &signature, hash) {
            return Err(reject(ErrorCode::AccessDenied, Reason::BadSignature));
        }

        let policy: ParsedPolicy = parse_policy(&policy_bytes).ok_or(malformed_policy)?;
        if custom {
            if let Some(pattern) = &policy.resource {
                if !wildcard_match(pattern, &resource_url()) {
                    return Err(reject(ErrorCode::AccessDenied, Reason::ResourceMismatch));
                }
            }
        }
        if request.now >= policy.expires {
            return Err(reject(ErrorCode::AccessDenied, Reason::Expired));
        }
        if let Some(nb) = policy.not_before {
            if request.now <= nb {
                return Err(reject(ErrorCode::AccessDenied, Reason::NotYetValid));
            }
        }
        if let Some(range) = policy.ip {
            match request.client_ip {
                Some(ip) if range.contains(ip) => {}
                _ => return Err(reject(ErrorCode::AccessDenied, Reason::IpMismatch)),
            }
        }
        Ok(Verified {
            key_pair_id: key_pair_id.into_owned(),
            expires: policy.expires,
            custom_policy: custom,
            source,
            hash,
        })
    }
}

fn merge_first<'a>(into: &mut Fields<'a>, one: Fields<'a>) {
    into.expires = into.expires.or(one.expires);
    into.policy = into.policy.or(one.policy);
    into.signature = into.signature.or(one.signature);
    into.key_pair_id = into.key_pair_id.or(one.key_pair_id);
    into.hash = into.hash.or(one.hash);
}
