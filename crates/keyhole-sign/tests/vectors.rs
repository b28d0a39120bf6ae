//! Known-answer tests: every case in `tests/data/cases.json` (the AWS SDKs' shared CloudFront
//! signing vectors, see `tests/data/README.md`) is reproduced byte for byte, and every link or
//! cookie set produced here is accepted by [`Verifier`] inside its validity window.

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use keyhole_sign::{
    encoding, HashAlgorithm, KeyAlgorithm, KeyRing, Policy, PrivateKey, PublicKey, Request,
    SignedCookies, Signer, Source, Verifier,
};
use serde::Deserialize;

/// The distribution every vector is signed for.
const ORIGIN: &str = "https://d111111abcdef8.cloudfront.net";

/// One case of `cases.json`; see the README beside it for the meaning of each field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    id: String,
    kind: Kind,
    resource: String,
    apply_to: Option<String>,
    key_pair_id: String,
    private_key: String,
    public_key: Option<String>,
    expires: u64,
    not_before: Option<u64>,
    ip: Option<String>,
    hash: Option<String>,
    policy: Option<String>,
    params: Option<BTreeMap<String, String>>,
    cookies: Option<BTreeMap<String, String>>,
    signature: Option<String>,
    #[serde(default)]
    verify_only: bool,
    algorithm: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Url,
    Cookies,
    Error,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn read(name: &str) -> String {
    let path = data_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn cases() -> Vec<Case> {
    serde_json::from_str(&read("cases.json")).expect("cases.json matches the documented schema")
}

impl Case {
    fn hash(&self) -> HashAlgorithm {
        match self.hash.as_deref() {
            None => HashAlgorithm::Sha1,
            Some(name) => HashAlgorithm::from_param(name)
                .unwrap_or_else(|| panic!("{}: unknown hash {name}", self.id)),
        }
    }

    fn signer(&self) -> Signer {
        let key = PrivateKey::from_pem(&read(&self.private_key))
            .unwrap_or_else(|e| panic!("{}: {e}", self.id));
        Signer::new(self.key_pair_id.as_str(), key)
            .unwrap_or_else(|e| panic!("{}: {e}", self.id))
            .with_hash(self.hash())
    }

    /// Whether the case asks for a custom policy: anything beyond an expiry, or a wildcard
    /// resource applied to another URL.
    fn is_custom(&self) -> bool {
        self.not_before.is_some() || self.ip.is_some() || self.apply_to.is_some()
    }

    /// Builds the policy the way a caller would: canned when only an expiry is given.
    fn policy(&self) -> Result<Policy, keyhole_sign::SignError> {
        if !self.is_custom() {
            return Policy::canned(self.expires);
        }
        let mut policy = Policy::custom(self.expires)?;
        if let Some(nb) = self.not_before {
            policy = policy.with_not_before(nb)?;
        }
        if let Some(ip) = &self.ip {
            policy = policy.with_ip(ip)?;
        }
        if self.apply_to.is_some() {
            policy = policy.with_resource(&self.resource)?;
        }
        Ok(policy)
    }

    /// The URL that is signed (`apply_to` for a wildcard policy).
    fn url(&self) -> &str {
        self.apply_to.as_deref().unwrap_or(&self.resource)
    }

    fn public_key(&self) -> PublicKey {
        let name = self
            .public_key
            .as_deref()
            .unwrap_or("test-rsa-key-public.pem");
        PublicKey::from_pem(&read(name)).unwrap_or_else(|e| panic!("{}: {e}", self.id))
    }

    fn verifier(&self) -> Verifier {
        let mut ring = KeyRing::new();
        ring.insert(self.key_pair_id.as_str(), self.public_key());
        Verifier::new(ORIGIN, ring).expect("valid origin")
    }

    /// A moment inside the validity window.
    fn valid_now(&self) -> u64 {
        self.not_before.map_or(self.expires - 3600, |nb| nb + 1)
    }

    /// A client address the IP condition (if any) allows.
    fn client_ip(&self) -> Option<IpAddr> {
        let ip = self.ip.as_deref()?;
        let base = ip.split('/').next().expect("split yields one item");
        let mut octets: [u8; 4] = base.parse::<std::net::Ipv4Addr>().unwrap().octets();
        octets[3] |= 7;
        Some(IpAddr::from(octets))
    }
}

/// Splits a signed URL into the URL it was built from and its query parameters, in order.
fn query_params(url: &str) -> Vec<(String, String)> {
    let (_, query) = url.split_once('?').expect("a signed URL has a query");
    query
        .split('&')
        .map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            (n.to_owned(), v.to_owned())
        })
        .collect()
}

fn target_of(url: &str) -> &str {
    url.strip_prefix(ORIGIN)
        .unwrap_or_else(|| panic!("{url} is not under {ORIGIN}"))
}

/// Checks one `url` case: policy bytes, parameters, signature, and the verifier's verdict.
fn check_url_case(case: &Case) {
    let id = &case.id;
    let signer = case.signer();
    let policy = case.policy().unwrap_or_else(|e| panic!("{id}: {e}"));
    assert_eq!(policy.is_custom(), case.is_custom(), "{id}: policy kind");

    let json = policy.to_json(case.url()).unwrap();
    assert_eq!(Some(&json), case.policy.as_ref(), "{id}: policy JSON bytes");

    let signed = signer
        .sign_url(case.url(), &policy)
        .unwrap_or_else(|e| panic!("{id}: {e}"));
    assert!(signed.starts_with(case.url()), "{id}: {signed}");

    let params = query_params(&signed);
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    // CloudFront's order: Expires or Policy, Signature, Key-Pair-Id, Hash-Algorithm.
    let first = if policy.is_custom() {
        "Policy"
    } else {
        "Expires"
    };
    let mut expected_order = vec![first, "Signature", "Key-Pair-Id"];
    if case.hash.is_some() {
        expected_order.push("Hash-Algorithm");
    }
    assert!(
        names.ends_with(&expected_order),
        "{id}: parameter order {names:?}"
    );
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    for (name, value) in case.params.as_ref().expect("url cases list params") {
        assert_eq!(get(name), Some(value.as_str()), "{id}: parameter {name}");
    }
    if policy.is_custom() {
        let encoded = get("Policy").expect("custom URL carries Policy");
        assert_eq!(encoded, encoding::encode(json.as_bytes()), "{id}: Policy");
        assert_eq!(get("Expires"), None, "{id}: custom URL has no Expires");
    } else {
        assert_eq!(get("Policy"), None, "{id}: canned URL has no Policy");
    }
    let signature = get("Signature").expect("Signature present");
    if case.verify_only {
        assert_eq!(
            case.signature, None,
            "{id}: verify-only cases carry no signature"
        );
        let public = case.public_key();
        assert_eq!(public.algorithm(), KeyAlgorithm::EcdsaP256, "{id}");
        let der = encoding::decode(signature).expect("CloudFront base64");
        assert!(
            public.verify(json.as_bytes(), &der, case.hash()),
            "{id}: ECDSA signature verifies with the public key"
        );
    } else {
        assert_eq!(
            Some(signature),
            case.signature.as_deref(),
            "{id}: RSA signature bytes"
        );
    }

    let verifier = case.verifier();
    let request = Request {
        target: target_of(&signed),
        client_ip: case.client_ip(),
        now: case.valid_now(),
        cookies: None,
    };
    let verified = verifier
        .verify(&request)
        .unwrap_or_else(|r| panic!("{id}: verifier refused its own link: {r}"));
    assert_eq!(verified.source, Source::Url);
    assert_eq!(verified.expires, case.expires);
    assert_eq!(verified.custom_policy, case.is_custom());
    assert_eq!(verified.hash, case.hash());
    assert_eq!(verified.key_pair_id, case.key_pair_id);
    check_window(&verifier, &request, case);
}

/// The same request is refused just outside the window and from outside the IP range.
fn check_window(verifier: &Verifier, request: &Request<'_>, case: &Case) {
    let id = &case.id;
    let at = |now| Request { now, ..*request };
    assert!(verifier.verify(&at(case.expires - 1)).is_ok(), "{id}");
    let expired = verifier.verify(&at(case.expires)).unwrap_err();
    assert_eq!(expired.reason, keyhole_sign::Reason::Expired, "{id}");
    if let Some(nb) = case.not_before {
        let early = verifier.verify(&at(nb)).unwrap_err();
        assert_eq!(early.reason, keyhole_sign::Reason::NotYetValid, "{id}");
    }
    if case.ip.is_some() {
        for ip in ["203.0.113.9", "2001:db8::1"] {
            let elsewhere = Request {
                client_ip: Some(ip.parse().unwrap()),
                ..*request
            };
            let rejection = verifier.verify(&elsewhere).unwrap_err();
            assert_eq!(rejection.reason, keyhole_sign::Reason::IpMismatch, "{id}");
        }
        let unknown = Request {
            client_ip: None,
            ..*request
        };
        assert_eq!(
            verifier.verify(&unknown).unwrap_err().reason,
            keyhole_sign::Reason::IpMismatch,
            "{id}: an unknown client address never satisfies an IP condition"
        );
    }
}

fn check_cookies_case(case: &Case) {
    let id = &case.id;
    let signer = case.signer();
    let policy = case.policy().unwrap_or_else(|e| panic!("{id}: {e}"));
    let json = policy.to_json(&case.resource).unwrap();
    assert_eq!(Some(&json), case.policy.as_ref(), "{id}: policy JSON bytes");

    let cookies: SignedCookies = signer
        .sign_cookies(&case.resource, &policy)
        .unwrap_or_else(|e| panic!("{id}: {e}"));
    let produced: BTreeMap<String, String> = cookies
        .cookies
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.clone()))
        .collect();
    assert_eq!(
        Some(&produced),
        case.cookies.as_ref(),
        "{id}: cookie names and values"
    );
    assert_eq!(
        cookies.cookies.len(),
        produced.len(),
        "{id}: no cookie twice"
    );
    // The same policy through a wildcard resource produces the same cookies, for any URL the
    // pattern covers; a URL it does not cover contradicts it and is refused, not ignored.
    if policy.is_custom() {
        let explicit = policy.clone().with_resource(&case.resource).unwrap();
        let covered = case.resource.replace('*', "some/file.bin");
        for url in [case.resource.as_str(), covered.as_str()] {
            assert_eq!(
                signer.sign_cookies(url, &explicit),
                Ok(cookies.clone()),
                "{id}: {url}"
            );
        }
        assert_eq!(
            signer.sign_cookies("https://unused.example/", &explicit),
            Err(keyhole_sign::SignError::ResourceMismatch),
            "{id}"
        );
    }

    // A request for the resource (or, for a wildcard, for a file under it) with the cookies.
    let url = case.resource.replace('*', "some/file.bin");
    let header = cookies.to_cookie_header();
    let request = Request {
        target: target_of(&url),
        client_ip: case.client_ip(),
        now: case.valid_now(),
        cookies: Some(&header),
    };
    let verifier = case.verifier();
    let verified = verifier
        .verify(&request)
        .unwrap_or_else(|r| panic!("{id}: verifier refused its own cookies: {r}"));
    assert_eq!(verified.source, Source::Cookies);
    assert_eq!(verified.expires, case.expires);
    assert_eq!(verified.hash, case.hash());
    check_window(&verifier, &request, case);
}

fn check_error_case(case: &Case) {
    let id = &case.id;
    let expected = case.error.as_deref().expect("error cases name the error");
    let signer = case.signer();
    // The refusal may come from building the policy or from signing with it; both are the
    // signer refusing. Check the URL and the cookie transports.
    let url_error = case
        .policy()
        .and_then(|p| signer.sign_url(&case.resource, &p))
        .expect_err(id)
        .to_string();
    let cookie_error = case
        .policy()
        .and_then(|p| signer.sign_cookies(&case.resource, &p))
        .expect_err(id)
        .to_string();
    // `sign_cookies` names its argument `resource`, `sign_url` names it `url`: the case's full
    // message must match one, and the key phrase (the message without its subject) both.
    let full = expected.to_lowercase();
    let key_phrase = full.split_once(' ').map_or(full.as_str(), |(_, rest)| rest);
    assert!(
        [&url_error, &cookie_error]
            .iter()
            .any(|e| e.to_lowercase().contains(&full)),
        "{id}: neither {url_error:?} nor {cookie_error:?} contains {expected:?}"
    );
    for message in [&url_error, &cookie_error] {
        assert!(
            message.to_lowercase().contains(key_phrase),
            "{id}: {message:?} lacks {key_phrase:?}"
        );
    }
}

#[test]
fn every_case_passes() {
    let cases = cases();
    assert!(cases.len() >= 20, "cases.json lost cases: {}", cases.len());
    let mut seen = std::collections::HashSet::new();
    for case in &cases {
        assert!(seen.insert(case.id.as_str()), "duplicate id {}", case.id);
        match case.kind {
            Kind::Url => check_url_case(case),
            Kind::Cookies => check_cookies_case(case),
            Kind::Error => check_error_case(case),
        }
    }
}

#[test]
fn cases_cover_every_feature() {
    let cases = cases();
    let has = |f: &dyn Fn(&Case) -> bool| cases.iter().any(f);
    assert!(has(&|c| c.kind == Kind::Url
        && !c.is_custom()
        && c.hash.is_none()));
    assert!(has(
        &|c| c.kind == Kind::Url && c.hash.as_deref() == Some("SHA256")
    ));
    assert!(has(&|c| c.not_before.is_some() && c.kind == Kind::Url));
    assert!(has(&|c| c.ip.is_some() && c.kind == Kind::Url));
    assert!(has(&|c| c.apply_to.is_some()));
    assert!(has(&|c| c.verify_only));
    assert!(has(&|c| c.kind == Kind::Cookies && c.is_custom()));
    assert!(has(&|c| c.kind == Kind::Error));
    for case in &cases {
        // Every field the README documents is consistent with the case's kind.
        match case.kind {
            Kind::Url => assert!(
                case.params.is_some() && case.policy.is_some(),
                "{}",
                case.id
            ),
            Kind::Cookies => {
                assert!(
                    case.cookies.is_some() && case.policy.is_some(),
                    "{}",
                    case.id
                )
            }
            Kind::Error => assert!(case.error.is_some(), "{}", case.id),
        }
        if let Some(alg) = &case.algorithm {
            let hash = case.hash().as_param();
            assert!(alg.ends_with(hash), "{}: {alg} vs {hash}", case.id);
        }
    }
}

/// The PKCS#1 and PKCS#8 RSA files (and the SEC1 and PKCS#8 ECDSA files) hold the same keys.
#[test]
fn key_encodings_agree() {
    for (a, b, public) in [
        (
            "test-rsa-key.pem",
            "test-rsa-key-pkcs1.pem",
            "test-rsa-key-public.pem",
        ),
        (
            "test-ecdsa-key.pem",
            "test-ecdsa-key-sec1.pem",
            "test-ecdsa-key-public.pem",
        ),
    ] {
        let a = PrivateKey::from_pem(&read(a)).unwrap();
        let b = PrivateKey::from_pem(&read(b)).unwrap();
        let public = PublicKey::from_pem(&read(public)).unwrap();
        for key in [&a, &b] {
            assert_eq!(
                key.public_key().unwrap().to_der().unwrap(),
                public.to_der().unwrap()
            );
        }
    }
}

/// Keys pasted into environment variables often arrive with literal `\n` sequences.
#[test]
fn vector_key_with_escaped_newlines_signs_identically() {
    let case = cases()
        .into_iter()
        .find(|c| c.id == "canned-url-sha1")
        .expect("canned-url-sha1 exists");
    let escaped = read(&case.private_key).trim().replace('\n', "\\n");
    let key = PrivateKey::from_pem(&escaped).unwrap();
    let signer = Signer::new(case.key_pair_id.as_str(), key).unwrap();
    let url = signer
        .sign_url(&case.resource, &Policy::canned(case.expires).unwrap())
        .unwrap();
    let params = query_params(&url);
    assert!(params
        .iter()
        .any(|(n, v)| n == "Signature" && Some(v) == case.signature.as_ref()));
}

/// Links from the other SDK conventions verify too: `%7E` for `~` in the signature (clients that
/// re-encode), and stripped base64 padding.
#[test]
fn verifier_accepts_sdk_encoding_variants() {
    let case = cases()
        .into_iter()
        .find(|c| c.id == "canned-url-sha1")
        .expect("canned-url-sha1 exists");
    let signature = case.signature.clone().unwrap();
    assert!(signature.contains('~') && signature.ends_with('_'));
    let verifier = case.verifier();
    for sig in [
        signature.replace('~', "%7E"),
        signature.replace('~', "%7e"),
        signature.trim_end_matches('_').to_owned(),
    ] {
        let target = format!(
            "/image.jpg?Expires={}&Signature={sig}&Key-Pair-Id={}",
            case.expires, case.key_pair_id
        );
        let request = Request {
            target: &target,
            client_ip: None,
            now: case.valid_now(),
            cookies: None,
        };
        assert!(verifier.verify(&request).is_ok(), "{target}");
    }
    // The parameters may arrive in any order (the JS SDK puts Key-Pair-Id before Signature).
    let target = format!(
        "/image.jpg?Expires={}&Key-Pair-Id={}&Signature={signature}",
        case.expires, case.key_pair_id
    );
    let request = Request {
        target: &target,
        client_ip: None,
        now: case.valid_now(),
        cookies: None,
    };
    assert!(verifier.verify(&request).is_ok());
}
