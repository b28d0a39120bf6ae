//! Properties of signing and verification over generated URLs and policies: every link or cookie
//! set verifies inside its window, no single changed byte is accepted unless the policy really
//! grants the changed request, and each kind of bad request is refused for its precise reason.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use keyhole_sign::{
    encoding, wildcard_match, ErrorCode, HashAlgorithm, KeyAlgorithm, Policy, Reason, Rejection,
    Request, Source, Verified, MAX_COOKIE_LEN, MAX_KEY_PAIR_ID_LEN, MAX_POLICY_LEN,
    MAX_SIGNATURE_LEN, MAX_TARGET_LEN,
};
use proptest::prelude::*;
use proptest::sample::Index;
use support::{keys, signer, target_of, EC_ID, ORIGIN, RSA_ID};

// ---------------------------------------------------------------------------------------------
// Generated scenarios
// ---------------------------------------------------------------------------------------------

/// How the signature travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Url,
    Cookies,
}

/// An IP condition and a client inside it.
#[derive(Clone, Debug)]
struct IpCondition {
    cidr: String,
    /// An address inside the range (sometimes written as an IPv4-mapped IPv6 address).
    inside: IpAddr,
    /// An address outside the range, unless the range is `/0`.
    outside: Option<Ipv4Addr>,
}

/// One signing scenario: key, digest, URL, policy and transport.
#[derive(Clone, Debug)]
struct Scenario {
    algorithm: KeyAlgorithm,
    hash: HashAlgorithm,
    /// Absolute URL under [`ORIGIN`], already percent-encoded.
    url: String,
    /// Inside the window.
    now: u64,
    expires: u64,
    custom: bool,
    not_before: Option<u64>,
    ip: Option<IpCondition>,
    /// A resource pattern covering `url`.
    pattern: Option<String>,
    transport: Transport,
}

impl Scenario {
    fn policy(&self) -> Policy {
        if !self.custom {
            return Policy::canned(self.expires).unwrap();
        }
        let mut policy = Policy::custom(self.expires).unwrap();
        if let Some(nb) = self.not_before {
            policy = policy.with_not_before(nb).unwrap();
        }
        if let Some(ip) = &self.ip {
            policy = policy.with_ip(&ip.cidr).unwrap();
        }
        if let Some(pattern) = &self.pattern {
            policy = policy.with_resource(pattern).unwrap();
        }
        policy
    }

    /// The pattern a custom policy grants: its resource, or the URL itself (in which `*` and `?`
    /// are wildcards too, as on CloudFront). `None` for a canned policy, whose link (with
    /// `Expires=`) grants exactly the URL; its signature re-sent as a custom policy would grant
    /// the URL as a pattern (see `Policy`).
    fn grant(&self) -> Option<&str> {
        self.custom
            .then(|| self.pattern.as_deref().unwrap_or(&self.url))
    }

    fn client_ip(&self) -> Option<IpAddr> {
        self.ip.as_ref().map(|ip| ip.inside)
    }

    fn key_pair_id(&self) -> &'static str {
        match self.algorithm {
            KeyAlgorithm::Rsa => RSA_ID,
            KeyAlgorithm::EcdsaP256 => EC_ID,
        }
    }

    fn sign(&self) -> Signed {
        let signer = signer(self.algorithm, self.hash);
        let policy = self.policy();
        match self.transport {
            Transport::Url => {
                let signed = signer.sign_url(&self.url, &policy).unwrap();
                Signed {
                    target: target_of(&signed).to_owned(),
                    unsigned_len: target_of(&self.url).len(),
                    cookies: Vec::new(),
                }
            }
            Transport::Cookies => {
                let cookies = signer.sign_cookies(&self.url, &policy).unwrap();
                Signed {
                    target: target_of(&self.url).to_owned(),
                    unsigned_len: target_of(&self.url).len(),
                    cookies: cookies
                        .cookies
                        .into_iter()
                        .map(|(n, v)| (n.to_owned(), v))
                        .collect(),
                }
            }
        }
    }
}

/// A signed request: the target and, for cookies, the cookie values.
#[derive(Clone, Debug)]
struct Signed {
    target: String,
    /// Length of the target before signing parameters were appended.
    unsigned_len: usize,
    cookies: Vec<(String, String)>,
}

impl Signed {
    /// The `Cookie` header, with unrelated cookies around the signing ones as browsers send them.
    fn cookie_header(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        let mut parts = vec!["session=abc123".to_owned()];
        parts.extend(self.cookies.iter().map(|(n, v)| format!("{n}={v}")));
        parts.push("theme=dark".to_owned());
        Some(parts.join("; "))
    }

    fn verify(&self, scenario: &Scenario) -> Result<Verified, Rejection> {
        let header = self.cookie_header();
        keys().verifier.verify(&Request {
            target: &self.target,
            client_ip: scenario.client_ip(),
            now: scenario.now,
            cookies: header.as_deref(),
        })
    }

    /// The byte range of a signing parameter's value in the target.
    fn param_range(&self, name: &str) -> Option<std::ops::Range<usize>> {
        let query_start = self.target.find('?')? + 1;
        let mut offset = query_start;
        for pair in self.target[query_start..].split('&') {
            if let Some(value) = pair.strip_prefix(name).and_then(|v| v.strip_prefix('=')) {
                let start = offset + pair.len() - value.len();
                return Some(start..start + value.len());
            }
            offset += pair.len() + 1;
        }
        None
    }
}

/// Path segments: unreserved characters, sub-delimiters and percent-encoded bytes.
fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec("([A-Za-z0-9._~!$'()*+,;=:@-]|%[0-9A-Fa-f]{2}){0,12}", 1..5)
        .prop_map(|segments| format!("/{}", segments.join("/")))
}

/// An existing query string (names never collide with CloudFront's parameters, even after one
/// changed byte: they are at most five lowercase letters).
fn query() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        proptest::collection::vec(
            "[a-z]{1,5}(=([A-Za-z0-9._~/:*?-]|%[0-9A-F]{2}){0,10})?",
            0..4,
        )
        .prop_map(|pairs| pairs.join("&")),
    )
}

fn url() -> impl Strategy<Value = String> {
    (path(), query()).prop_map(|(path, query)| match query {
        Some(q) => format!("{ORIGIN}{path}?{q}"),
        None => format!("{ORIGIN}{path}"),
    })
}

fn ip_condition() -> impl Strategy<Value = IpCondition> {
    (any::<u32>(), 0u8..=32, any::<u32>(), any::<bool>()).prop_map(
        |(addr, prefix, host, mapped)| {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            let network = addr & mask;
            let inside = Ipv4Addr::from(network | (host & !mask));
            let outside = (prefix > 0).then(|| {
                Ipv4Addr::from((network ^ (1 << (32 - u32::from(prefix)))) | (host & !mask))
            });
            IpCondition {
                cidr: if prefix == 32 && mapped {
                    Ipv4Addr::from(addr).to_string()
                } else {
                    format!("{}/{prefix}", Ipv4Addr::from(addr))
                },
                inside: if mapped {
                    IpAddr::V6(inside.to_ipv6_mapped())
                } else {
                    IpAddr::V4(inside)
                },
                outside,
            }
        },
    )
}

prop_compose! {
    fn scenario()(
        algorithm in prop_oneof![Just(KeyAlgorithm::Rsa), Just(KeyAlgorithm::EcdsaP256)],
        hash in prop_oneof![Just(HashAlgorithm::Sha1), Just(HashAlgorithm::Sha256)],
        url in url(),
        now in 1_600_000_000u64..2_000_000_000,
        ttl in 1u64..50_000_000,
        custom in any::<bool>(),
        not_before in proptest::option::of(1u64..10_000_000),
        ip in proptest::option::of(ip_condition()),
        cut in proptest::option::of(any::<Index>()),
        transport in prop_oneof![Just(Transport::Url), Just(Transport::Cookies)],
    ) -> Scenario {
        let expires = (now + ttl).min(keyhole_sign::MAX_EPOCH);
        // A wildcard pattern: the URL up to some point after the origin's slash, then `*`.
        let pattern = cut.map(|cut| {
            let first = ORIGIN.len() + 1;
            let at = first + cut.index(url.len() - first + 1);
            format!("{}*", &url[..at])
        });
        Scenario {
            algorithm,
            hash,
            url,
            now,
            expires,
            custom,
            not_before: if custom { not_before.map(|back| now.saturating_sub(back)) } else { None },
            ip: if custom { ip } else { None },
            pattern: if custom { pattern } else { None },
            transport,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

fn check_accepted(scenario: &Scenario, signed: &Signed) -> Result<(), TestCaseError> {
    let verified = signed
        .verify(scenario)
        .map_err(|r| TestCaseError::fail(format!("refused its own link: {r}; {signed:?}")))?;
    prop_assert_eq!(verified.key_pair_id.as_str(), scenario.key_pair_id());
    prop_assert_eq!(verified.expires, scenario.expires);
    prop_assert_eq!(verified.custom_policy, scenario.custom);
    prop_assert_eq!(verified.hash, scenario.hash);
    let source = match scenario.transport {
        Transport::Url => Source::Url,
        Transport::Cookies => Source::Cookies,
    };
    prop_assert_eq!(verified.source, source);
    Ok(())
}

fn reason_at(scenario: &Scenario, signed: &Signed, now: u64, ip: Option<IpAddr>) -> Option<Reason> {
    let header = signed.cookie_header();
    keys()
        .verifier
        .verify(&Request {
            target: &signed.target,
            client_ip: ip,
            now,
            cookies: header.as_deref(),
        })
        .err()
        .map(|r| {
            assert_eq!(r.code, ErrorCode::AccessDenied, "{r} for {scenario:?}");
            r.reason
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// Every link verifies inside its window, and is refused at the edges of the window and from
    /// outside its IP range, for the precise reason.
    #[test]
    fn signed_requests_verify_inside_their_window(scenario in scenario()) {
        let signed = scenario.sign();
        check_accepted(&scenario, &signed)?;
        let ip = scenario.client_ip();
        prop_assert_eq!(reason_at(&scenario, &signed, scenario.expires - 1, ip), None);
        prop_assert_eq!(reason_at(&scenario, &signed, scenario.expires, ip), Some(Reason::Expired));
        prop_assert_eq!(reason_at(&scenario, &signed, u64::MAX, ip), Some(Reason::Expired));
        if let Some(nb) = scenario.not_before {
            prop_assert_eq!(reason_at(&scenario, &signed, nb, ip), Some(Reason::NotYetValid));
            prop_assert_eq!(reason_at(&scenario, &signed, 0, ip), Some(Reason::NotYetValid));
            prop_assert_eq!(reason_at(&scenario, &signed, nb + 1, ip), None);
        }
        if let Some(condition) = &scenario.ip {
            let now = scenario.now;
            prop_assert_eq!(reason_at(&scenario, &signed, now, None), Some(Reason::IpMismatch));
            let v6: IpAddr = "2001:db8::7".parse().unwrap();
            prop_assert_eq!(reason_at(&scenario, &signed, now, Some(v6)), Some(Reason::IpMismatch));
            if let Some(outside) = condition.outside {
                prop_assert_eq!(
                    reason_at(&scenario, &signed, now, Some(IpAddr::V4(outside))),
                    Some(Reason::IpMismatch)
                );
            }
        }
    }

    /// Any single changed byte of the request target (path, query, signing parameters) is
    /// refused, unless the policy's resource pattern really covers the changed request.
    #[test]
    fn changed_target_bytes_are_refused(
        scenario in scenario(),
        changes in proptest::collection::vec((any::<Index>(), 0u8..0x80), 12),
    ) {
        let signed = scenario.sign();
        check_accepted(&scenario, &signed)?;
        let grant = scenario.grant();
        for (index, byte) in changes {
            let i = index.index(signed.target.len());
            let (changed, byte) = with_byte(&signed.target, i, byte);
            let attempt = Signed { target: changed, ..signed.clone() };
            let result = attempt.verify(&scenario);
            let in_resource = i < signed.unsigned_len;
            // What the verifier sees as the requested URL when only the unsigned part changed.
            let resource = format!("{ORIGIN}{}", &attempt.target[..signed.unsigned_len]);
            let covered = grant.is_some_and(|p| wildcard_match(p, &resource));
            match (&result, scenario.transport) {
                (Ok(_), Transport::Url) => {
                    let padding = in_padding(&signed, i) && byte == b'&';
                    prop_assert!(
                        grant.is_some() && ((in_resource && covered) || padding),
                        "accepted with byte {i} set to {byte:#04x}: {}", attempt.target
                    );
                }
                (Ok(_), Transport::Cookies) => prop_assert!(
                    covered,
                    "accepted with byte {i} set to {byte:#04x}: {}", attempt.target
                ),
                (Err(r), Transport::Url) => {
                    let original = signed.target.as_bytes()[i];
                    prop_assert!(
                        !(in_resource && covered && byte.is_ascii_alphanumeric() && original != b'?'),
                        "refused ({r}) although covered: byte {i} set to {byte:#04x}: {}",
                        attempt.target
                    );
                }
                (Err(r), Transport::Cookies) => prop_assert!(
                    !(covered && byte != b'#'),
                    "refused ({r}) although covered: byte {i} set to {byte:#04x}: {}",
                    attempt.target
                ),
            }
        }
    }

    /// Any single changed byte of the `Signature` or `Policy` value, in the URL or in a cookie, is
    /// refused. (Replacing trailing base64 padding by a separator only strips the padding, which
    /// clients are allowed to do; the decoded bytes are unchanged.)
    #[test]
    fn changed_signature_and_policy_bytes_are_refused(
        scenario in scenario(),
        changes in proptest::collection::vec((any::<Index>(), 0u8..0x80, any::<bool>()), 12),
    ) {
        let signed = scenario.sign();
        for (index, byte, pick_policy) in changes {
            let name = if pick_policy && scenario.custom { "Policy" } else { "Signature" };
            let attempt;
            let separator: &[u8];
            let padding: bool;
            match scenario.transport {
                Transport::Url => {
                    let range = signed.param_range(name).expect("parameter present");
                    let i = range.start + index.index(range.len());
                    let (changed, b) = with_byte(&signed.target, i, byte);
                    padding = in_padding(&signed, i) && b == b'&';
                    attempt = Signed { target: changed, ..signed.clone() };
                    separator = b"&";
                }
                Transport::Cookies => {
                    let cookie = format!("CloudFront-{name}");
                    let mut cookies = signed.cookies.clone();
                    let value = &mut cookies.iter_mut().find(|(n, _)| *n == cookie).unwrap().1;
                    let i = index.index(value.len());
                    let (changed, b) = with_byte(value, i, byte);
                    padding = value.as_bytes()[i..].iter().all(|&c| c == b'_')
                        && (b == b';' || b.is_ascii_whitespace() || b == 0x0b);
                    *value = changed;
                    attempt = Signed { cookies, ..signed.clone() };
                    separator = b";";
                }
            }
            let result = attempt.verify(&scenario);
            prop_assert!(
                result.is_err() || padding,
                "accepted a changed {name} (separator {:?}): {:?}",
                separator, attempt
            );
        }
    }

    /// Changing any byte of the other cookie values (expiry, key id, hash) is refused too.
    #[test]
    fn changed_cookie_values_are_refused(
        scenario in scenario(),
        changes in proptest::collection::vec((any::<Index>(), any::<Index>(), 0u8..0x80), 8),
    ) {
        let scenario = Scenario { transport: Transport::Cookies, ..scenario };
        let signed = scenario.sign();
        check_accepted(&scenario, &signed)?;
        for (which, index, byte) in changes {
            let mut cookies = signed.cookies.clone();
            let c = which.index(cookies.len());
            let value = &mut cookies[c].1;
            let i = index.index(value.len());
            let was_padding = value.as_bytes()[i..].iter().all(|&c| c == b'_');
            let (changed, b) = with_byte(value, i, byte);
            *value = changed;
            let attempt = Signed { cookies, ..signed.clone() };
            let stripped_padding = was_padding && (b == b';' || b.is_ascii_whitespace() || b == 0x0b);
            prop_assert!(
                attempt.verify(&scenario).is_err() || stripped_padding,
                "accepted {:?}", attempt.cookies
            );
        }
    }

    /// Signing parameters in the URL take precedence over cookies, whatever the cookies hold.
    #[test]
    fn url_parameters_take_precedence_over_cookies(scenario in scenario()) {
        let url_scenario = Scenario { transport: Transport::Url, ..scenario.clone() };
        let cookie_scenario = Scenario { transport: Transport::Cookies, ..scenario };
        let by_url = url_scenario.sign();
        let by_cookies = cookie_scenario.sign();
        // A valid URL with valid cookies: the URL is used.
        let both = Signed { cookies: by_cookies.cookies.clone(), ..by_url.clone() };
        prop_assert_eq!(both.verify(&url_scenario).map(|v| v.source), Ok(Source::Url));
        // A valid URL with garbage cookies: still accepted through the URL.
        let garbage = Signed {
            cookies: vec![
                ("CloudFront-Signature".to_owned(), "!!".to_owned()),
                ("CloudFront-Key-Pair-Id".to_owned(), "nobody".to_owned()),
            ],
            ..by_url.clone()
        };
        prop_assert_eq!(garbage.verify(&url_scenario).map(|v| v.source), Ok(Source::Url));
        // A broken URL signature with valid cookies: refused, the cookies are not consulted.
        let range = by_url.param_range("Signature").unwrap();
        let mut target = by_url.target.clone();
        target.replace_range(range, "AAAA");
        let broken = Signed { target, cookies: by_cookies.cookies.clone(), ..by_url };
        let rejection = broken.verify(&url_scenario).unwrap_err();
        prop_assert_eq!(rejection.reason, Reason::BadSignature);
    }
}

/// `text` with byte `i` replaced by `byte` (or the next ASCII byte when `byte` is already there).
fn with_byte(text: &str, i: usize, byte: u8) -> (String, u8) {
    let mut bytes = text.as_bytes().to_vec();
    let byte = if bytes[i] == byte {
        (byte + 1) % 0x80
    } else {
        byte
    };
    bytes[i] = byte;
    (String::from_utf8(bytes).expect("ASCII stays UTF-8"), byte)
}

/// Whether byte `i` of the target is trailing base64 padding of `Signature` or `Policy`.
fn in_padding(signed: &Signed, i: usize) -> bool {
    ["Signature", "Policy"].iter().any(|name| {
        signed.param_range(name).is_some_and(|range| {
            range.contains(&i)
                && signed.target.as_bytes()[i..range.end]
                    .iter()
                    .all(|&c| c == b'_')
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Every combination, deterministically
// ---------------------------------------------------------------------------------------------

/// A policy shape: custom or not, a not-before time, an IP range, a resource pattern.
type Shape = (
    bool,
    Option<u64>,
    Option<&'static str>,
    Option<&'static str>,
);

/// Each algorithm × hash × policy shape × transport, on a URL with percent-encoding and a query.
#[test]
fn every_combination_round_trips() {
    let url = format!("{ORIGIN}/files/r%C3%A9sum%C3%A9%20(1).pdf?versionId=3&x=%7E~");
    let now = 1_767_225_600;
    let mut checked = 0;
    for algorithm in [KeyAlgorithm::Rsa, KeyAlgorithm::EcdsaP256] {
        for hash in [HashAlgorithm::Sha1, HashAlgorithm::Sha256] {
            for transport in [Transport::Url, Transport::Cookies] {
                let shapes: [Shape; 6] = [
                    (false, None, None, None),
                    (true, None, None, None),
                    (true, Some(now - 60), None, None),
                    (true, None, Some("198.51.100.0/24"), None),
                    (true, None, None, Some("https://cdn.example.com/files/*")),
                    (
                        true,
                        Some(now - 60),
                        Some("198.51.100.7"),
                        Some("https://cdn.example.com/*.pdf?*"),
                    ),
                ];
                for (custom, not_before, cidr, pattern) in shapes {
                    let scenario = Scenario {
                        algorithm,
                        hash,
                        url: url.clone(),
                        now,
                        expires: now + 3600,
                        custom,
                        not_before,
                        ip: cidr.map(|cidr| IpCondition {
                            cidr: cidr.to_owned(),
                            inside: "198.51.100.7".parse().unwrap(),
                            outside: Some("198.51.101.7".parse().unwrap()),
                        }),
                        pattern: pattern.map(str::to_owned),
                        transport,
                    };
                    let signed = scenario.sign();
                    check_accepted(&scenario, &signed)
                        .unwrap_or_else(|e| panic!("{e}: {scenario:?}"));
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2 * 2 * 2 * 6);
}

// ---------------------------------------------------------------------------------------------
// Precise reasons
// ---------------------------------------------------------------------------------------------

const NOW: u64 = 1_767_225_600;
const EXPIRES: u64 = NOW + 3600;

fn rsa_url(url: &str, policy: &Policy) -> String {
    signer(KeyAlgorithm::Rsa, HashAlgorithm::Sha1)
        .sign_url(url, policy)
        .unwrap()
}

fn canned_target() -> String {
    target_of(&rsa_url(
        &format!("{ORIGIN}/files/a.pdf"),
        &Policy::canned(EXPIRES).unwrap(),
    ))
    .to_owned()
}

fn verify(target: &str) -> Result<Verified, Rejection> {
    keys().verifier.verify(&support::request(target, NOW))
}

fn verify_with_cookies(target: &str, cookies: &str) -> Result<Verified, Rejection> {
    keys().verifier.verify(&Request {
        cookies: Some(cookies),
        ..support::request(target, NOW)
    })
}

#[track_caller]
fn assert_refused(result: Result<Verified, Rejection>, code: ErrorCode, reason: Reason) {
    assert_eq!(result, Err(Rejection { code, reason }));
}

/// Replaces the value of one query parameter.
fn with_param(target: &str, name: &str, value: &str) -> String {
    let (path, query) = target.split_once('?').unwrap();
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((n, _)) if n == name => format!("{n}={value}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// Removes one query parameter.
fn without_param(target: &str, name: &str) -> String {
    let (path, query) = target.split_once('?').unwrap();
    let pairs: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(n, _)| n) != name)
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

#[test]
fn expired_and_not_yet_valid() {
    let target = canned_target();
    let at = |now| keys().verifier.verify(&support::request(&target, now));
    assert!(at(EXPIRES - 1).is_ok());
    assert_refused(at(EXPIRES), ErrorCode::AccessDenied, Reason::Expired);
    assert_refused(at(EXPIRES + 1), ErrorCode::AccessDenied, Reason::Expired);

    let policy = Policy::custom(EXPIRES)
        .unwrap()
        .with_not_before(NOW)
        .unwrap();
    let url = rsa_url(&format!("{ORIGIN}/files/a.pdf"), &policy);
    let at = |now| {
        keys()
            .verifier
            .verify(&support::request(target_of(&url), now))
    };
    assert_refused(at(NOW - 10), ErrorCode::AccessDenied, Reason::NotYetValid);
    assert_refused(at(NOW), ErrorCode::AccessDenied, Reason::NotYetValid);
    assert!(at(NOW + 1).is_ok());
}

#[test]
fn ip_mismatch_including_ipv6_clients() {
    let policy = Policy::custom(EXPIRES)
        .unwrap()
        .with_ip("192.0.2.0/24")
        .unwrap();
    let url = rsa_url(&format!("{ORIGIN}/files/a.pdf"), &policy);
    let from = |ip: &str| {
        keys()
            .verifier
            .verify(&support::request_from(target_of(&url), ip, NOW))
    };
    assert!(from("192.0.2.200").is_ok());
    assert!(
        from("::ffff:192.0.2.200").is_ok(),
        "IPv4-mapped IPv6 is IPv4"
    );
    for outside in [
        "192.0.3.1",
        "10.0.0.1",
        "2001:db8::1",
        "::1",
        "::192.0.2.200",
    ] {
        assert_refused(from(outside), ErrorCode::AccessDenied, Reason::IpMismatch);
    }
    assert_refused(
        verify(target_of(&url)),
        ErrorCode::AccessDenied,
        Reason::IpMismatch,
    );
}

#[test]
fn resource_mismatch() {
    let policy = Policy::custom(EXPIRES)
        .unwrap()
        .with_resource(&format!("{ORIGIN}/files/*"))
        .unwrap();
    let url = rsa_url(&format!("{ORIGIN}/files/a.pdf"), &policy);
    let query = url.split_once('?').unwrap().1;
    assert!(verify(&format!("/files/other/b.bin?{query}")).is_ok());
    for elsewhere in ["/private/a.pdf", "/files", "/Files/a.pdf", "/x/files/a.pdf"] {
        assert_refused(
            verify(&format!("{elsewhere}?{query}")),
            ErrorCode::AccessDenied,
            Reason::ResourceMismatch,
        );
    }
    // A custom policy without a pattern covers exactly its URL (query included).
    let exact = rsa_url(
        &format!("{ORIGIN}/files/a.pdf?v=1"),
        &Policy::custom(EXPIRES).unwrap(),
    );
    let query = exact.split_once('?').unwrap().1;
    assert!(verify(&format!("/files/a.pdf?{query}")).is_ok());
    let without_v = without_param(&format!("/files/a.pdf?{query}"), "v");
    assert_refused(
        verify(&without_v),
        ErrorCode::AccessDenied,
        Reason::ResourceMismatch,
    );
    // A canned policy is rebuilt from the request, so another path is a bad signature.
    let canned = canned_target().replace("/a.pdf", "/b.pdf");
    assert_refused(
        verify(&canned),
        ErrorCode::AccessDenied,
        Reason::BadSignature,
    );
    // ... and from the `Expires` digits as sent: another spelling of the same time is not what
    // was signed, and escapes (which no signer writes) are malformed.
    let expires = EXPIRES.to_string();
    let respell = |spelling: &str| {
        let respelled = canned_target().replace(
            &format!("Expires={expires}"),
            &format!("Expires={spelling}"),
        );
        assert_ne!(respelled, canned_target());
        verify(&respelled)
    };
    assert_refused(
        respell(&format!("0{expires}")),
        ErrorCode::AccessDenied,
        Reason::BadSignature,
    );
    assert_refused(
        respell(&format!("%3{}", &expires)),
        ErrorCode::MalformedPolicy,
        Reason::MalformedPolicy,
    );
}

#[test]
fn unknown_and_missing_keys() {
    let target = canned_target();
    assert_refused(
        verify(&with_param(&target, "Key-Pair-Id", "KUNKNOWN")),
        ErrorCode::InvalidKey,
        Reason::UnknownKey,
    );
    // The other trusted key exists but did not sign: a bad signature, not an unknown key.
    assert_refused(
        verify(&with_param(&target, "Key-Pair-Id", EC_ID)),
        ErrorCode::AccessDenied,
        Reason::BadSignature,
    );
    let long_id = "K".repeat(MAX_KEY_PAIR_ID_LEN + 1);
    assert_refused(
        verify(&with_param(&target, "Key-Pair-Id", &long_id)),
        ErrorCode::InvalidKey,
        Reason::UnknownKey,
    );
    assert_refused(
        verify(&without_param(&target, "Key-Pair-Id")),
        ErrorCode::MissingKey,
        Reason::MissingKeyPairId,
    );
    assert_refused(
        verify(&with_param(&target, "Key-Pair-Id", "")),
        ErrorCode::MissingKey,
        Reason::MissingKeyPairId,
    );
    // No signing parameters and no cookies at all.
    assert_refused(
        verify("/files/a.pdf"),
        ErrorCode::MissingKey,
        Reason::NoSignature,
    );
    assert_refused(
        verify("/files/a.pdf?download=1"),
        ErrorCode::MissingKey,
        Reason::NoSignature,
    );
    assert_refused(
        verify_with_cookies("/files/a.pdf", "session=1; CloudFrontish=2"),
        ErrorCode::MissingKey,
        Reason::NoSignature,
    );
    // The key pair id may arrive percent-encoded.
    let encoded: String = RSA_ID.bytes().map(|b| format!("%{b:02X}")).collect();
    assert!(verify(&with_param(&target, "Key-Pair-Id", &encoded)).is_ok());
}

#[test]
fn malformed_signatures() {
    let target = canned_target();
    assert_refused(
        verify(&without_param(&target, "Signature")),
        ErrorCode::MalformedSignature,
        Reason::MissingSignature,
    );
    assert_refused(
        verify(&with_param(&target, "Signature", "")),
        ErrorCode::MalformedSignature,
        Reason::MissingSignature,
    );
    for bad in ["!!!!", "ab+c", "abc/", "abc=", "%zz", "%", "a b", "A"] {
        assert_refused(
            verify(&with_param(&target, "Signature", bad)),
            ErrorCode::MalformedSignature,
            Reason::MalformedSignature,
        );
    }
    let long = "A".repeat(MAX_SIGNATURE_LEN + 4);
    assert_refused(
        verify(&with_param(&target, "Signature", &long)),
        ErrorCode::MalformedSignature,
        Reason::MalformedSignature,
    );
    // Well-formed base64 of the wrong bytes: a bad signature.
    assert_refused(
        verify(&with_param(&target, "Signature", "AAAA")),
        ErrorCode::AccessDenied,
        Reason::BadSignature,
    );
    for bad in ["MD5", "sha256", "SHA-256", "", "%"] {
        let t = format!("{target}&Hash-Algorithm={bad}");
        assert_refused(
            verify(&t),
            ErrorCode::MalformedSignature,
            Reason::UnsupportedHashAlgorithm,
        );
    }
    // Claiming SHA-256 for a SHA-1 signature.
    assert_refused(
        verify(&format!("{target}&Hash-Algorithm=SHA256")),
        ErrorCode::AccessDenied,
        Reason::BadSignature,
    );
    // A non-canonical ECDSA signature (a trailing byte) is refused although r and s verify.
    let ec = signer(KeyAlgorithm::EcdsaP256, HashAlgorithm::Sha256)
        .sign_url(
            &format!("{ORIGIN}/files/a.pdf"),
            &Policy::canned(EXPIRES).unwrap(),
        )
        .unwrap();
    let ec_target = target_of(&ec);
    assert!(verify(ec_target).is_ok());
    let range = Signed {
        target: ec_target.to_owned(),
        unsigned_len: 0,
        cookies: vec![],
    }
    .param_range("Signature")
    .unwrap();
    let mut der = encoding::decode(&ec_target[range]).unwrap();
    der.push(0);
    let padded = with_param(ec_target, "Signature", &encoding::encode(&der));
    assert_refused(
        verify(&padded),
        ErrorCode::AccessDenied,
        Reason::BadSignature,
    );
}

#[test]
fn malformed_policies() {
    let target = canned_target();
    for bad in [
        "",
        "abc",
        "-1",
        "1.5",
        "0x10",
        "%zz",
        "99999999999999999999999",
    ] {
        assert_refused(
            verify(&with_param(&target, "Expires", bad)),
            ErrorCode::MalformedPolicy,
            Reason::MalformedPolicy,
        );
    }
    assert_refused(
        verify(&without_param(&target, "Expires")),
        ErrorCode::MalformedPolicy,
        Reason::MissingPolicy,
    );
    let json = Policy::canned(EXPIRES)
        .unwrap()
        .to_json(&format!("{ORIGIN}/files/a.pdf"))
        .unwrap();
    let both = format!("{target}&Policy={}", encoding::encode(json.as_bytes()));
    assert_refused(
        verify(&both),
        ErrorCode::MalformedPolicy,
        Reason::MissingPolicy,
    );

    let custom = target_of(&rsa_url(
        &format!("{ORIGIN}/files/a.pdf"),
        &Policy::custom(EXPIRES).unwrap(),
    ))
    .to_owned();
    for bad in ["!!!!", "e30+", "%zz"] {
        assert_refused(
            verify(&with_param(&custom, "Policy", bad)),
            ErrorCode::MalformedPolicy,
            Reason::MalformedPolicy,
        );
    }
    let long = "A".repeat(MAX_POLICY_LEN + 4);
    assert_refused(
        verify(&with_param(&custom, "Policy", &long)),
        ErrorCode::MalformedPolicy,
        Reason::MalformedPolicy,
    );
    // Validly signed bytes that are not a policy CloudFront would accept.
    let rsa = signer(KeyAlgorithm::Rsa, HashAlgorithm::Sha1);
    for bytes in [
        &b"not json"[..],
        br#"{"Statement":[{"Resource":"*","Condition":{}}]}"#,
        br#"{"Statement":[{"Resource":"*","Condition":{"DateLessThan":{"AWS:EpochTime":"1"}}}]}"#,
        br#"{"Statement":[{"Resource":"*","Condition":{"DateLessThan":{"AWS:EpochTime":9999999999}},"Effect":"Allow"}]}"#,
    ] {
        let t = format!(
            "/files/a.pdf?Policy={}&Signature={}&Key-Pair-Id={RSA_ID}",
            encoding::encode(bytes),
            rsa.sign_bytes(bytes).unwrap()
        );
        assert_refused(
            verify(&t),
            ErrorCode::MalformedPolicy,
            Reason::MalformedPolicy,
        );
    }
    // A validly signed policy without Resource covers every resource.
    let open = br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":2000000000}}}]}"#;
    let t = format!(
        "/anything/at/all?Policy={}&Signature={}&Key-Pair-Id={RSA_ID}",
        encoding::encode(open),
        rsa.sign_bytes(open).unwrap()
    );
    assert!(verify(&t).is_ok());
}

#[test]
fn duplicate_parameters_are_refused() {
    let target = canned_target();
    for name in ["Expires", "Signature", "Key-Pair-Id"] {
        let range = Signed {
            target: target.clone(),
            unsigned_len: 0,
            cookies: vec![],
        }
        .param_range(name)
        .unwrap();
        let twice = format!("{target}&{name}={}", &target[range]);
        assert_refused(
            verify(&twice),
            ErrorCode::AccessDenied,
            Reason::DuplicateParameter,
        );
    }
}

#[test]
fn url_parameters_take_precedence_over_valid_cookies() {
    let url = format!("{ORIGIN}/files/a.pdf");
    let cookies = signer(KeyAlgorithm::Rsa, HashAlgorithm::Sha1)
        .sign_cookies(&url, &Policy::canned(EXPIRES).unwrap())
        .unwrap()
        .to_cookie_header();
    assert_eq!(
        verify_with_cookies("/files/a.pdf", &cookies).map(|v| v.source),
        Ok(Source::Cookies)
    );
    // Unrelated query parameters do not hide the cookies (but are part of the resource).
    assert_refused(
        verify_with_cookies("/files/a.pdf?x=1", &cookies),
        ErrorCode::AccessDenied,
        Reason::BadSignature,
    );
    // One signing parameter in the URL is enough to ignore the cookies.
    assert_refused(
        verify_with_cookies("/files/a.pdf?Key-Pair-Id=KUNKNOWN", &cookies),
        ErrorCode::InvalidKey,
        Reason::UnknownKey,
    );
    assert_refused(
        verify_with_cookies("/files/a.pdf?Hash-Algorithm=SHA1", &cookies),
        ErrorCode::MissingKey,
        Reason::MissingKeyPairId,
    );
}

#[test]
fn cookie_parsing() {
    let url = format!("{ORIGIN}/files/a.pdf");
    let signed = signer(KeyAlgorithm::Rsa, HashAlgorithm::Sha256)
        .sign_cookies(&url, &Policy::canned(EXPIRES).unwrap())
        .unwrap();
    let header = signed.to_cookie_header();
    // Spacing, other cookies and unknown CloudFront- cookies are tolerated.
    let spaced = format!(
        "a=1;{};CloudFront-Other=x;  b=2",
        header.replace("; ", " ;  ")
    );
    assert!(verify_with_cookies("/files/a.pdf", &spaced).is_ok());
    // Browsers send a cookie twice when it was set for two paths; the first one wins.
    let sig = signed.get("CloudFront-Signature").unwrap();
    let first_bad = format!("CloudFront-Signature=AAAA; {header}");
    assert_refused(
        verify_with_cookies("/files/a.pdf", &first_bad),
        ErrorCode::AccessDenied,
        Reason::BadSignature,
    );
    let first_good = format!("{header}; CloudFront-Signature=AAAA{sig}");
    assert!(verify_with_cookies("/files/a.pdf", &first_good).is_ok());
    // Missing pieces.
    let without = |name: &str| {
        signed
            .cookies
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert_refused(
        verify_with_cookies("/files/a.pdf", &without("CloudFront-Key-Pair-Id")),
        ErrorCode::MissingKey,
        Reason::MissingKeyPairId,
    );
    assert_refused(
        verify_with_cookies("/files/a.pdf", &without("CloudFront-Signature")),
        ErrorCode::MalformedSignature,
        Reason::MissingSignature,
    );
    assert_refused(
        verify_with_cookies("/files/a.pdf", &without("CloudFront-Expires")),
        ErrorCode::MalformedPolicy,
        Reason::MissingPolicy,
    );
    // Without the hash cookie the SHA-256 signature is checked as SHA-1 and fails.
    assert_refused(
        verify_with_cookies("/files/a.pdf", &without("CloudFront-Hash-Algorithm")),
        ErrorCode::AccessDenied,
        Reason::BadSignature,
    );
}

#[test]
fn oversized_and_malformed_requests() {
    let target = canned_target();
    let huge = format!("{target}&pad={}", "a".repeat(MAX_TARGET_LEN));
    assert_refused(verify(&huge), ErrorCode::AccessDenied, Reason::TooLarge);
    let huge_cookie = format!("x={}", "a".repeat(MAX_COOKIE_LEN));
    assert_refused(
        verify_with_cookies("/files/a.pdf", &huge_cookie),
        ErrorCode::AccessDenied,
        Reason::TooLarge,
    );
    for bad in [
        "",
        "files/a.pdf",
        "https://cdn.example.com/files/a.pdf",
        "*",
    ] {
        assert_refused(
            verify(bad),
            ErrorCode::AccessDenied,
            Reason::MalformedRequest,
        );
    }
    assert_refused(
        verify(&format!("{target}#frag")),
        ErrorCode::AccessDenied,
        Reason::MalformedRequest,
    );
}

/// Every reason maps to one code, whichever way it is reached.
#[test]
fn reasons_have_stable_labels_and_codes() {
    let labels: std::collections::HashSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), Reason::ALL.len());
    for reason in Reason::ALL {
        assert_eq!(reason.to_string(), reason.as_str());
        assert!(reason
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
    for code in [
        ErrorCode::MissingKey,
        ErrorCode::InvalidKey,
        ErrorCode::MalformedSignature,
        ErrorCode::MalformedPolicy,
        ErrorCode::AccessDenied,
    ] {
        let xml = code.to_xml();
        assert!(xml.contains(&format!("<Code>{code}</Code>")));
        assert!(xml.contains(code.message()));
    }
}

// ---------------------------------------------------------------------------------------------
// What the signer refuses
// ---------------------------------------------------------------------------------------------

/// The signer never mints a link or cookie set that the verifier would refuse for its size: it
/// refuses it instead, with an error naming the limit.
#[test]
fn signer_refuses_what_the_verifier_would_refuse_for_size() {
    let now = NOW;
    let max_url = 8192;
    let mut refused = 0;
    for len in [100, 4_000, 6_000, 6_050, 6_100, 7_000, max_url] {
        let url = format!("{ORIGIN}/{}", "a".repeat(len - ORIGIN.len() - 1));
        assert_eq!(url.len(), len);
        let shapes = [
            Policy::canned(EXPIRES).unwrap(),
            Policy::custom(EXPIRES).unwrap(),
            Policy::custom(EXPIRES)
                .unwrap()
                .with_resource(&format!("{}*", &url[..len / 2]))
                .unwrap(),
        ];
        for (algorithm, hash) in [
            (KeyAlgorithm::Rsa, HashAlgorithm::Sha256),
            (KeyAlgorithm::EcdsaP256, HashAlgorithm::Sha256),
        ] {
            let signer = signer(algorithm, hash);
            for policy in &shapes {
                match signer.sign_url(&url, policy) {
                    Ok(signed) => {
                        let verdict = keys()
                            .verifier
                            .verify(&support::request(target_of(&signed), now));
                        assert!(verdict.is_ok(), "{len}: {verdict:?}");
                    }
                    Err(e) => {
                        assert!(policy.is_custom(), "canned links fit up to {max_url} bytes");
                        assert!(
                            matches!(e, keyhole_sign::SignError::TooLong(_, _)),
                            "{len}: {e}"
                        );
                        refused += 1;
                    }
                }
                match signer.sign_cookies(&url, policy) {
                    Ok(cookies) => {
                        let header = cookies.to_cookie_header();
                        let verdict = verify_with_cookies(target_of(&url), &header);
                        assert!(verdict.is_ok(), "{len}: {verdict:?}");
                    }
                    Err(e) => {
                        assert!(e.to_string().contains("encoded policy"), "{len}: {e}");
                        refused += 1;
                    }
                }
            }
        }
    }
    assert!(refused > 0, "the long custom cases reach the limits");
}

/// A URL without a path could never verify (a request names at least `/`), so it is refused.
#[test]
fn signer_refuses_urls_without_a_path() {
    let signer = signer(KeyAlgorithm::Rsa, HashAlgorithm::Sha1);
    let policy = Policy::canned(EXPIRES).unwrap();
    for url in [
        "https://cdn.example.com",
        "https://cdn.example.com?a=1",
        "https:///files/a",
        "cdn.example.com/files/a",
        "/files/a",
    ] {
        assert_eq!(
            signer.sign_url(url, &policy),
            Err(keyhole_sign::SignError::NotAbsolute),
            "{url}"
        );
    }
    assert!(signer.sign_url("https://cdn.example.com/", &policy).is_ok());
}

/// Inputs that would change the policy's meaning or need encoding are refused, never escaped.
#[test]
fn signer_refuses_injection_and_reserved_parameters() {
    use keyhole_sign::SignError;
    let signer = signer(KeyAlgorithm::Rsa, HashAlgorithm::Sha1);
    let canned = Policy::canned(EXPIRES).unwrap();
    for url in [
        "https://cdn.example.com/a\"b",
        "https://cdn.example.com/a\\b",
        "https://cdn.example.com/a b",
        "https://cdn.example.com/a\nb",
        "https://cdn.example.com/r\u{e9}sum\u{e9}",
        "https://cdn.example.com/a#top",
        // Browsers percent-encode these before sending, so the link would never verify.
        "https://cdn.example.com/a{1}.txt",
        "https://cdn.example.com/a<b",
        "https://cdn.example.com/a?f=UTF-8''a.txt",
    ] {
        let e = signer.sign_url(url, &canned).unwrap_err();
        assert!(matches!(e, SignError::Character { .. }), "{url}: {e}");
    }
    // Links and cookies that could never be used are refused rather than signed: a pattern that
    // does not cover its own URL, and a canned cookie for a relative resource.
    let covering = Policy::custom(EXPIRES)
        .unwrap()
        .with_resource("https://cdn.example.com/images/*")
        .unwrap();
    assert_eq!(
        signer.sign_url("https://cdn.example.com/video.mp4", &covering),
        Err(SignError::ResourceMismatch)
    );
    assert!(signer
        .sign_url("https://cdn.example.com/images/a.png", &covering)
        .is_ok());
    assert_eq!(
        signer.sign_cookies("/images/a.png", &canned).err(),
        Some(SignError::NotAbsolute)
    );
    for name in keyhole_sign::SIGNING_PARAMETERS {
        let url = format!("https://cdn.example.com/a?x=1&{name}=2");
        assert_eq!(
            signer.sign_url(&url, &canned),
            Err(SignError::ReservedParameter(name))
        );
    }
    assert_eq!(
        Policy::canned(1_767_290_400_000),
        Err(SignError::Expiry(1_767_290_400_000))
    );
    assert!(Policy::custom(EXPIRES)
        .unwrap()
        .with_ip("2001:db8::/32")
        .is_err());
    assert!(Policy::custom(EXPIRES)
        .unwrap()
        .with_resource("https://cdn.example.com/*\",\"x\":\"")
        .is_err());
    for id in ["", "K 1", "K\"1", &"K".repeat(129)] {
        let key = keys().rsa.clone();
        assert_eq!(
            keyhole_sign::Signer::new(id, key).unwrap_err(),
            SignError::KeyPairId
        );
    }
}
