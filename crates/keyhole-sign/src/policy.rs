//! CloudFront policies: the canned and custom forms that are signed, their JSON, and the parser the
//! verifier applies to a received custom policy.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde_json::Value;

use crate::error::SignError;

/// Largest epoch second CloudFront accepts (2038-01-19T03:14:07Z).
pub const MAX_EPOCH: u64 = 2_147_483_647;
/// Longest URL or resource pattern accepted (CloudFront's request URL limit).
pub const MAX_URL_LEN: usize = 8192;
/// The query parameters CloudFront reserves for signed URLs.
pub const SIGNING_PARAMETERS: [&str; 5] = [
    "Expires",
    "Policy",
    "Signature",
    "Key-Pair-Id",
    "Hash-Algorithm",
];

/// An IPv4 address range for the `AWS:SourceIp` condition. A bare address parses as `/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// Whether `ip` falls inside the range. IPv4-mapped IPv6 addresses are compared as IPv4; any
    /// other IPv6 address never matches (CloudFront's IP condition is IPv4 only).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let v4 = match ip {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4,
                None => return false,
            },
        };
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        (u32::from(v4) & mask) == (u32::from(self.addr) & mask)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = SignError;

    fn from_str(text: &str) -> Result<Self, SignError> {
        let bad = || SignError::Ip(text.chars().take(64).collect());
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => {
                if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                (a, p.parse::<u8>().map_err(|_| bad())?)
            }
            None => (text, 32),
        };
        if prefix > 32 {
            return Err(bad());
        }
        let addr = Ipv4Addr::from_str(addr).map_err(|_| bad())?;
        Ok(Ipv4Cidr { addr, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What a signature grants: until when, from when, from where and for which resource.
///
/// A *canned* policy carries only an expiry and covers exactly the signed URL; CloudFront rebuilds
/// it from the request, so the URL stays short. A *custom* policy travels with the URL (`Policy=`)
/// and may add a not-before time, an IP range and a wildcard resource.
///
/// Wildcards in a canned URL: the canned policy's JSON is also a valid custom policy, so whoever
/// holds a canned link can send its signature with that JSON as `Policy=` instead of `Expires=`,
/// and CloudFront (and [`crate::Verifier`], which follows it) then reads any `*` in the URL as
/// "any run of characters" and any `?` as "one character" — including the `?` before the query,
/// so a link to `/a.pdf?v=1` also grants `/a.pdf/v=1`. This is how CloudFront works and how the
/// AWS SDKs sign; only the holder of a link can do it, and only for URLs its own URL matches as a
/// pattern. Keep `*` out of URLs you sign (percent-encode it as `%2A`), and keep object names free
/// of it where that matters.
///
/// ```
/// use keyhole_sign::Policy;
/// let canned = Policy::canned(1767290400).unwrap();
/// assert_eq!(
///     canned.to_json("https://cdn.example.com/a.txt").unwrap(),
///     r#"{"Statement":[{"Resource":"https://cdn.example.com/a.txt","Condition":{"DateLessThan":{"AWS:EpochTime":1767290400}}}]}"#
/// );
/// let custom = Policy::custom(1767290400).unwrap()
///     .with_resource("https://cdn.example.com/files/*").unwrap()
///     .with_ip("192.0.2.10").unwrap();
/// assert!(custom.to_json("ignored when a resource is set").unwrap().contains(r#""AWS:SourceIp":"192.0.2.10/32""#));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    expires: u64,
    not_before: Option<u64>,
    ip: Option<Ipv4Cidr>,
    resource: Option<String>,
    custom: bool,
}

fn check_epoch(value: u64) -> Result<u64, SignError> {
    if value == 0 || value > MAX_EPOCH {
        Err(SignError::Expiry(value))
    } else {
        Ok(value)
    }
}

impl Policy {
    /// A canned policy: the signed URL until `expires` (epoch seconds, exclusive).
    pub fn canned(expires: u64) -> Result<Self, SignError> {
        Ok(Policy {
            expires: check_epoch(expires)?,
            not_before: None,
            ip: None,
            resource: None,
            custom: false,
        })
    }

    /// A custom policy with only an expiry; add conditions with the `with_*` methods.
    pub fn custom(expires: u64) -> Result<Self, SignError> {
        Ok(Policy {
            custom: true,
            ..Self::canned(expires)?
        })
    }

    /// Adds `DateGreaterThan`: the link is refused until after `not_before` (epoch seconds, 1 to
    /// [`MAX_EPOCH`] and before the expiry). Makes it custom. 0 is refused like any out-of-range
    /// time ([`SignError::Expiry`]): it would mean no condition at all, and the JavaScript SDK
    /// drops a 0 from the policy, so the two would sign different bytes.
    pub fn with_not_before(mut self, not_before: u64) -> Result<Self, SignError> {
        check_epoch(not_before)?;
        if not_before >= self.expires {
            return Err(SignError::NotBeforeAfterExpiry {
                not_before,
                expires: self.expires,
            });
        }
        self.not_before = Some(not_before);
        self.custom = true;
        Ok(self)
    }

    /// Adds `IpAddress`: only clients in this IPv4 CIDR (or single address) may use the link.
    /// Makes the policy custom.
    pub fn with_ip(mut self, cidr: &str) -> Result<Self, SignError> {
        self.ip = Some(cidr.parse()?);
        self.custom = true;
        Ok(self)
    }

    /// Sets the policy's `Resource` to a pattern (`*` matches any run of characters, `?` exactly
    /// one) instead of the signed URL itself, so one signature covers many URLs. Makes it custom.
    pub fn with_resource(mut self, pattern: &str) -> Result<Self, SignError> {
        check_text("resource", pattern)?;
        self.resource = Some(pattern.to_owned());
        self.custom = true;
        Ok(self)
    }

    /// The resource pattern set with [`Policy::with_resource`], if any.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// Whether this policy must travel as a custom `Policy` rather than be rebuilt by CloudFront.
    pub fn is_custom(&self) -> bool {
        self.custom
    }

    /// The expiry in epoch seconds.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// The JSON text that is signed, compact and with conditions in the order DateLessThan,
    /// DateGreaterThan, IpAddress. `url` is the resource unless a pattern was set.
    pub fn to_json(&self, url: &str) -> Result<String, SignError> {
        let resource = match &self.resource {
            Some(pattern) => pattern.as_str(),
            None => {
                check_text("resource", url)?;
                url
            }
        };
        let mut json = String::with_capacity(resource.len() + 160);
        json.push_str(r#"{"Statement":[{"Resource":""#);
        json.push_str(resource);
        json.push_str(r#"","Condition":{"DateLessThan":{"AWS:EpochTime":"#);
        json.push_str(&self.expires.to_string());
        json.push('}');
        if let Some(nb) = self.not_before {
            json.push_str(r#","DateGreaterThan":{"AWS:EpochTime":"#);
            json.push_str(&nb.to_string());
            json.push('}');
        }
        if let Some(ip) = self.ip {
            json.push_str(r#","IpAddress":{"AWS:SourceIp":""#);
            json.push_str(&ip.to_string());
            json.push_str(r#""}"#);
        }
        json.push_str("}}]}");
        Ok(json)
    }
}

/// The canned policy JSON CloudFront rebuilds for `url` and `expires` (a number, or the digits
/// of a received `Expires` exactly as sent).
pub(crate) fn canned_json(url: &str, expires: impl std::fmt::Display) -> String {
    format!(
        r#"{{"Statement":[{{"Resource":"{url}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

/// Checks that text can be placed verbatim in a policy and a URL: printable ASCII only, none of
/// the characters that would break out of the JSON string or need percent-encoding, and none that
/// browsers (and `fetch`, and Node's `URL`) percent-encode before they send a request: `<`, `>`,
/// `` ` ``, `{`, `}` and `^` in the path, `<`, `>` and `'` in the query (the WHATWG URL
/// standard's path and special-query percent-encode sets). A link signed with one of those
/// arrives re-encoded and no longer matches its signature.
pub(crate) fn check_text(what: &'static str, text: &str) -> Result<(), SignError> {
    if text.is_empty() {
        return Err(SignError::Empty(what));
    }
    if text.len() > MAX_URL_LEN {
        return Err(SignError::TooLong(what, MAX_URL_LEN));
    }
    let mut in_query = false;
    for b in text.bytes() {
        let description = match b {
            b'"' => "a double quote",
            b'\\' => "a backslash",
            b'#' => "'#' (a fragment is never sent to the server)",
            b' ' => "a space",
            0x00..=0x1f | 0x7f => "control characters",
            0x80..=0xff => "non-ASCII characters",
            b'<' | b'>' => "'<' or '>' (browsers percent-encode them)",
            b'`' | b'{' | b'}' | b'^' if !in_query => {
                "'`', '{', '}' or '^' in the path (browsers percent-encode them)"
            }
            b'\'' if in_query => "a single quote in the query (browsers percent-encode it)",
            b'?' => {
                in_query = true;
                continue;
            }
            _ => continue,
        };
        return Err(SignError::Character { what, description });
    }
    Ok(())
}

/// Validates a URL that is about to be signed: [`check_text`] rules, absolute with a host and a
/// path (a request always names at least `/`, so `https://host` or `https://host?a=1` could never
/// be verified), and free of the reserved signing parameters. Returns where the path starts.
pub(crate) fn check_url(url: &str) -> Result<usize, SignError> {
    check_text("url", url)?;
    // The scheme is what comes before the first `:`, which must come before any `/`, `?` or `#`
    // and be followed by `//`: `/a?next=https://b` is a relative URL, not one with a scheme.
    let scheme_end = url
        .find([':', '/', '?', '#'])
        .filter(|&i| url[i..].starts_with("://"))
        .ok_or(SignError::NotAbsolute)?;
    let scheme = &url[..scheme_end];
    if !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b))
    {
        return Err(SignError::NotAbsolute);
    }
    let host_start = scheme_end + 3;
    let path_start = url[host_start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| host_start + i);
    if scheme_end == 0 || path_start == host_start || !url[path_start..].starts_with('/') {
        return Err(SignError::NotAbsolute);
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            if let Some(reserved) = SIGNING_PARAMETERS.iter().find(|r| **r == name) {
                return Err(SignError::ReservedParameter(reserved));
            }
        }
    }
    Ok(path_start)
}

/// A policy as received and parsed by the verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedPolicy {
    /// The resource pattern; `None` means every resource.
    pub resource: Option<String>,
    /// `DateLessThan` epoch seconds.
    pub expires: u64,
    /// `DateGreaterThan` epoch seconds.
    pub not_before: Option<u64>,
    /// `IpAddress` range.
    pub ip: Option<Ipv4Cidr>,
}

fn epoch_of(value: &Value) -> Option<u64> {
    let obj = value.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    obj.get("AWS:EpochTime")?.as_u64()
}

/// Whether `bytes` is JSON in which no object repeats a key. A parsed [`Value`] keeps only the
/// last of repeated keys, so `{"Resource":"https://a/b","Resource":"*"}` would grant `*`
/// without anything showing it; a policy that says two things at once is refused instead.
fn keys_are_unique(bytes: &[u8]) -> bool {
    use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};

    struct Unique;
    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Unique)
        }
    }
    impl<'de> Visitor<'de> for Unique {
        type Value = Unique;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key) {
                    return Err(A::Error::custom("a key is repeated"));
                }
                map.next_value::<Unique>()?;
            }
            Ok(Unique)
        }
    }
    serde_json::from_slice::<Unique>(bytes).is_ok()
}

/// Parses a custom policy's JSON as CloudFront does: exactly one statement, `DateLessThan`
/// required, only the documented keys, none of them twice. Returns `None` when malformed.
pub fn parse_policy(bytes: &[u8]) -> Option<ParsedPolicy> {
    if !keys_are_unique(bytes) {
        return None;
    }
    let root: Value = serde_json::from_slice(bytes).ok()?;
    let root = root.as_object()?;
    if root.len() != 1 {
        return None;
    }
    let statements = root.get("Statement")?.as_array()?;
    let [statement] = statements.as_slice() else {
        return None;
    };
    let statement = statement.as_object()?;
    let mut resource = None;
    let mut condition = None;
    for (key, value) in statement {
        match key.as_str() {
            "Resource" => resource = Some(value.as_str()?.to_owned()),
            "Condition" => condition = Some(value.as_object()?),
            _ => return None,
        }
    }
    let condition = condition?;
    let mut expires = None;
    let mut not_before = None;
    let mut ip = None;
    for (key, value) in condition {
        match key.as_str() {
            "DateLessThan" => expires = Some(epoch_of(value)?),
            "DateGreaterThan" => not_before = Some(epoch_of(value)?),
            "IpAddress" => {
                let obj = value.as_object()?;
                if obj.len() != 1 {
                    return None;
                }
                ip = Some(obj.get("AWS:SourceIp")?.as_str()?.parse().ok()?);
            }
            _ => return None,
        }
    }
    Some(ParsedPolicy {
        resource,
        expires: expires?,
        not_before,
        ip,
    })
}

/// CloudFront's wildcard match: `*` matches any run of characters (including none), `?` exactly
/// one character, everything else itself, case-sensitively. Greedy with one backtrack point: at
/// worst O(pattern × text) (a pattern such as `*aaa…ab` against `aaa…a`), never exponential, and
/// bounded by the size limits on both; the verifier only matches a pattern whose signature it has
/// already checked.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        // A `*` is a wildcard even where the text holds a literal `*`: test it first, or it would
        // be consumed as a one-character literal match and leave no point to backtrack to.
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Ipv4Cidr = "192.168.0.0/24".parse().unwrap();
        assert!(c.contains("192.168.0.77".parse().unwrap()));
        assert!(!c.contains("192.168.1.1".parse().unwrap()));
        assert!(c.contains("::ffff:192.168.0.1".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert_eq!(
            "10.1.2.3".parse::<Ipv4Cidr>().unwrap().to_string(),
            "10.1.2.3/32"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0/8",
            "::1",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "1.2.3.4/8\"",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_bounds() {
        assert!(Policy::canned(0).is_err());
        assert!(Policy::canned(MAX_EPOCH).is_ok());
        assert_eq!(
            Policy::canned(1_767_290_400_000),
            Err(SignError::Expiry(1_767_290_400_000))
        );
        assert!(Policy::custom(100).unwrap().with_not_before(100).is_err());
        assert_eq!(
            Policy::custom(100).unwrap().with_not_before(0),
            Err(SignError::Expiry(0))
        );
        assert_eq!(
            Policy::canned(100).unwrap().with_not_before(0),
            Err(SignError::Expiry(0))
        );
        let earliest = Policy::custom(100).unwrap().with_not_before(1).unwrap();
        assert!(earliest
            .to_json("https://a.example/x")
            .unwrap()
            .contains(r#""DateGreaterThan":{"AWS:EpochTime":1}"#));
    }

    #[test]
    fn url_checks() {
        assert!(check_url("https://a.example/x?y=1").is_ok());
        assert_eq!(check_url("https://a.example/x?y=1"), Ok(17));
        assert!(check_url("/relative").is_err());
        // A `://` further on (in the query, say) is no scheme.
        for relative in [
            "/files/a.pdf?next=https://cdn.example.com/b",
            "cdn.example.com/files/a.pdf?r=https://x/y",
            "1https://a.example/x",
            "https?://a.example/x",
        ] {
            assert_eq!(
                check_url(relative),
                Err(SignError::NotAbsolute),
                "{relative}"
            );
        }
        assert_eq!(check_url("git+ssh://a.example/x"), Ok(19));
        // No path: the request would be for `/`, which is not what was signed.
        for no_path in [
            "https://a.example",
            "https://a.example?y=1",
            "https:///x",
            "://a/x",
        ] {
            assert_eq!(check_url(no_path), Err(SignError::NotAbsolute), "{no_path}");
        }
        assert!(check_url("https://a.example/x y").is_err());
        assert!(check_url("https://a.example/é").is_err());
        assert!(check_url("https://a.example/x#f").is_err());
        // What browsers re-encode before sending: refused where they do it, allowed elsewhere.
        for bad in [
            "https://a.example/a{1}.txt",
            "https://a.example/a^b",
            "https://a.example/a`b",
            "https://a.example/a<b",
            "https://a.example/x?q=a>b",
            "https://a.example/x?f=UTF-8''a.txt",
        ] {
            assert!(
                matches!(check_url(bad), Err(SignError::Character { .. })),
                "{bad}"
            );
        }
        for good in [
            "https://a.example/it's.txt",
            "https://a.example/x?q={a}",
            "https://a.example/x?q=a^b`c",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        assert!(check_url("https://a.example/x?Signature=1").is_err());
        assert!(check_url("https://a.example/x?a=1&Hash-Algorithm").is_err());
        // A name that merely contains a reserved word is fine.
        assert!(check_url("https://a.example/x?MyExpires=1").is_ok());
    }

    #[test]
    fn parses_only_well_formed_policies() {
        let good = br#"{"Statement":[{"Resource":"https://a/*","Condition":{"DateLessThan":{"AWS:EpochTime":5},"IpAddress":{"AWS:SourceIp":"1.2.3.4/32"},"DateGreaterThan":{"AWS:EpochTime":1}}}]}"#;
        let p = parse_policy(good).unwrap();
        assert_eq!(p.expires, 5);
        assert_eq!(p.not_before, Some(1));
        assert_eq!(p.resource.as_deref(), Some("https://a/*"));
        for bad in [
            &br#"{"Statement":[]}"#[..],
            br#"{"Statement":[{"Condition":{}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":"5"}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":-5}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":5}},"Extra":1}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":5},"Bogus":{}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":5}}},{"Condition":{"DateLessThan":{"AWS:EpochTime":5}}}]}"#,
            br#"not json"#,
            // The same key twice, at each level: the policy would say two things at once.
            br#"{"Statement":[{"Resource":"https://a/b","Resource":"https://a/*","Condition":{"DateLessThan":{"AWS:EpochTime":5}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":5},"DateLessThan":{"AWS:EpochTime":9}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":5,"AWS:EpochTime":9}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":5}},"Condition":{"DateLessThan":{"AWS:EpochTime":9}}}]}"#,
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":5}}}],"Statement":[]}"#,
        ] {
            assert_eq!(parse_policy(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(
            "https://a/images/*",
            "https://a/images/x.jpg"
        ));
        assert!(wildcard_match("https://a/images/*", "https://a/images/"));
        assert!(!wildcard_match("https://a/images/*", "https://a/image"));
        assert!(wildcard_match("http*://a/?.txt", "https://a/1.txt"));
        assert!(!wildcard_match("https://a/?.txt", "https://a/12.txt"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
        // Literal `*` and `?` in the URL (legal in paths and queries) are still matched by wildcards.
        assert!(wildcard_match("https://a/x*", "https://a/x*&y=1"));
        assert!(wildcard_match("https://a/*.txt", "https://a/*.txt"));
        assert!(wildcard_match("https://a/*/b", "https://a/*/c/b"));
    }

    fn naive(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, _) => t.is_empty(),
            (Some(b'*'), _) => naive(&p[1..], t) || (!t.is_empty() && naive(p, &t[1..])),
            (Some(b'?'), Some(_)) => naive(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => naive(&p[1..], &t[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn wildcard_agrees_with_reference(p in "[ab*?]{0,8}", t in "[ab*?]{0,10}") {
            prop_assert_eq!(wildcard_match(&p, &t), naive(p.as_bytes(), t.as_bytes()));
        }

        #[test]
        fn built_policies_parse_back(expires in 2u64..=MAX_EPOCH, nb in proptest::option::of(1u64..1000), ip in proptest::option::of((any::<u32>(), 0u8..=32))) {
            let mut policy = Policy::custom(expires).unwrap();
            if let Some(nb) = nb { policy = policy.with_not_before(nb.min(expires - 1)).unwrap(); }
            if let Some((a, p)) = ip { policy = policy.with_ip(&format!("{}/{}", Ipv4Addr::from(a), p)).unwrap(); }
            let json = policy.to_json("https://x.example/f?a=b").unwrap();
            let parsed = parse_policy(json.as_bytes()).unwrap();
            prop_assert_eq!(parsed.expires, expires);
            prop_assert_eq!(parsed.resource.as_deref(), Some("https://x.example/f?a=b"));
        }
    }
}
