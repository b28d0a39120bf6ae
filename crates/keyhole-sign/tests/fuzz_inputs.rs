//! The `verify` fuzz target's harness on the stable toolchain: the committed seed corpus
//! (`fuzz/corpus/verify`) and about 20,000 generated inputs go through
//! [`keyhole_sign::fuzzing::verify_input`], which must never panic.
//!
//! Seeds are named `<verdict>.<what>`: `accept` or the [`Reason`] label the verifier must give,
//! so the corpus keeps reaching past signature verification. Inputs the fuzzer adds (named by
//! their SHA-1) are only required not to panic.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use keyhole_sign::fuzzing::verify_input;
use keyhole_sign::{ErrorCode, Reason, Rejection, Verifier};
use proptest::prelude::*;
use support::vector_verifier;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/verify")
}

/// Every input in the corpus directory, by file name (read once per test binary).
fn corpus() -> &'static [(String, Vec<u8>)] {
    static CORPUS: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut inputs: Vec<(String, Vec<u8>)> = fs::read_dir(corpus_dir())
            .expect("fuzz/corpus/verify exists")
            .map(|entry| {
                let path = entry.expect("readable corpus entry").path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, fs::read(&path).expect("readable corpus file"))
            })
            .collect();
        inputs.sort();
        inputs
    })
}

fn verifier() -> &'static Verifier {
    static VERIFIER: std::sync::OnceLock<Verifier> = std::sync::OnceLock::new();
    VERIFIER.get_or_init(vector_verifier)
}

/// The code CloudFront answers each reason with.
fn code_of(reason: Reason) -> ErrorCode {
    match reason {
        Reason::NoSignature | Reason::MissingKeyPairId => ErrorCode::MissingKey,
        Reason::UnknownKey => ErrorCode::InvalidKey,
        Reason::MissingSignature
        | Reason::MalformedSignature
        | Reason::UnsupportedHashAlgorithm => ErrorCode::MalformedSignature,
        Reason::MissingPolicy | Reason::MalformedPolicy => ErrorCode::MalformedPolicy,
        _ => ErrorCode::AccessDenied,
    }
}

/// Runs the harness and checks that a rejection's code matches its reason.
fn run(data: &[u8]) -> Result<(), Rejection> {
    match verify_input(verifier(), data) {
        Ok(_) => Ok(()),
        Err(rejection) => {
            assert_eq!(
                rejection.code,
                code_of(rejection.reason),
                "{rejection} for {:?}",
                String::from_utf8_lossy(data)
            );
            Err(rejection)
        }
    }
}

#[test]
fn seed_corpus_gives_the_named_verdicts() {
    let corpus = corpus();
    let seeds: Vec<_> = corpus
        .iter()
        .filter_map(|(name, data)| name.split_once('.').map(|(v, _)| (name, v, data)))
        .collect();
    assert!(seeds.len() >= 12, "only {} seeds", seeds.len());
    let mut verdicts = std::collections::HashSet::new();
    for (name, verdict, data) in seeds {
        let result = run(data);
        match verdict {
            "accept" => assert_eq!(result, Ok(()), "{name}"),
            label => {
                let reason = Reason::ALL
                    .into_iter()
                    .find(|r| r.as_str() == label)
                    .unwrap_or_else(|| panic!("{name}: {label} is not a reason label"));
                assert_eq!(result.map_err(|r| r.reason), Err(reason), "{name}");
            }
        }
        verdicts.insert(verdict);
    }
    assert!(
        verdicts.contains("accept") && verdicts.len() >= 10,
        "{verdicts:?}"
    );
    // Inputs added by fuzzing runs only need to not panic.
    for (_, data) in corpus {
        let _ = run(data);
    }
}

/// Single-byte edits, truncations and splices of every named seed.
#[test]
fn seed_mutations_never_panic() {
    let seeds: Vec<&(String, Vec<u8>)> = corpus()
        .iter()
        .filter(|(name, _)| name.contains('.'))
        .collect();
    let mut runs = 0;
    for (_, data) in &seeds {
        for i in 0..data.len() {
            for byte in [
                b'\n', b'%', b'&', b'=', b'?', b';', b'*', b'~', b'_', 0xff, b'A',
            ] {
                let mut edited = data.to_vec();
                edited[i] = byte;
                let _ = run(&edited);
                runs += 1;
            }
            let _ = run(&data[..i]);
            runs += 1;
        }
        for (_, other) in &seeds {
            let half = data.len() / 2;
            let spliced = [&data[..half], &other[other.len() / 2..]].concat();
            let _ = run(&spliced);
            runs += 1;
        }
    }
    assert!(runs > 1_000, "{runs}");
}

/// Characters from `alphabet`, at most `max` of them.
fn text(alphabet: &'static [u8], max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(alphabet), 0..=max)
        .prop_map(|bytes| bytes.into_iter().map(char::from).collect())
}

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~";
const PRINTABLE: &[u8] = b" !\"#$%&'()*+,-./0123456789:;<=>?@AZ[\\]^_`az{|}~";

/// Pieces that steer generated inputs into the verifier's branches.
fn fragment() -> impl Strategy<Value = String> {
    let words = proptest::sample::select(vec![
        "/",
        "?",
        "&",
        "=",
        "#",
        "%",
        "%7E",
        "%zz",
        "Expires=",
        "Policy=",
        "Signature=",
        "Key-Pair-Id=",
        "Key-Pair-Id=K1TESTKEY",
        "Key-Pair-Id=K2ECDSATEST",
        "Hash-Algorithm=SHA256",
        "Hash-Algorithm=SHA1",
        "/image.jpg",
        "1767290400",
        "99999999999999999999",
    ])
    .prop_map(str::to_owned);
    // Base64 of JSON policies, well formed or not.
    let policy = (
        proptest::sample::select(vec!["", "*", "https://d111111abcdef8.cloudfront.net/*", "a?"]),
        any::<bool>(),
        any::<i64>(),
    )
        .prop_map(|(resource, with_resource, epoch)| {
            let resource = if with_resource {
                format!(r#""Resource":"{resource}","#)
            } else {
                String::new()
            };
            let json = format!(
                r#"{{"Statement":[{{{resource}"Condition":{{"DateLessThan":{{"AWS:EpochTime":{epoch}}}}}}}]}}"#
            );
            keyhole_sign::encoding::encode(json.as_bytes())
        });
    prop_oneof![
        4 => words,
        2 => text(BASE64, 40),
        1 => text(PRINTABLE, 12),
        1 => any::<char>().prop_map(String::from),
        1 => policy,
    ]
}

fn structured_input() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(fragment(), 0..16),
        proptest::option::of(proptest::collection::vec(
            prop_oneof![
                Just("; ".to_owned()),
                Just("CloudFront-Expires=".to_owned()),
                Just("CloudFront-Policy=".to_owned()),
                Just("CloudFront-Signature=".to_owned()),
                Just("CloudFront-Key-Pair-Id=K1TESTKEY".to_owned()),
                Just("CloudFront-Hash-Algorithm=SHA256".to_owned()),
                fragment(),
            ],
            0..10,
        )),
        prop_oneof![
            Just(String::new()),
            Just("192.168.0.7".to_owned()),
            Just("2001:db8::1".to_owned()),
            Just("::ffff:10.0.0.1".to_owned()),
            text(b"0123456789abcdef.:", 20),
        ],
        prop_oneof![
            Just(String::new()),
            (0u64..=u64::MAX).prop_map(|n| n.to_string()),
        ],
    )
        .prop_map(|(target, cookies, ip, now)| {
            let cookies = cookies.map(|c| c.concat()).unwrap_or_default();
            format!("{}\n{cookies}\n{ip}\n{now}", target.concat()).into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8_000, ..ProptestConfig::default() })]

    /// Arbitrary bytes.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = run(&data);
    }

    /// Inputs assembled from the verifier's vocabulary.
    #[test]
    fn structured_inputs_never_panic(data in structured_input()) {
        let _ = run(&data);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

    /// A seed with random bytes overwritten, inserted or removed.
    #[test]
    fn edited_seeds_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let corpus = corpus();
        let mut data = corpus[seed.index(corpus.len())].1.clone();
        for (at, byte, kind) in edits {
            let i = at.index(data.len() + 1);
            match kind {
                0 if i < data.len() => data[i] = byte,
                1 => data.insert(i, byte),
                _ if i < data.len() => { data.remove(i); }
                _ => data.push(byte),
            }
        }
        let _ = run(&data);
    }
}

/// Bounds: inputs far larger than any limit are refused quickly, not processed.
#[test]
fn oversized_inputs_are_refused() {
    let big_target = format!("/{}", "a".repeat(keyhole_sign::MAX_TARGET_LEN));
    assert_eq!(
        run(big_target.as_bytes()).map_err(|r| r.reason),
        Err(Reason::TooLarge)
    );
    let big_cookie = format!("/a\n{}", "CloudFront-Policy=".repeat(2_000));
    assert_eq!(
        run(big_cookie.as_bytes()).map_err(|r| r.reason),
        Err(Reason::TooLarge)
    );
    let long_policy = format!(
        "/a?Policy={}&Signature=AAAA&Key-Pair-Id=K1TESTKEY",
        "A".repeat(keyhole_sign::MAX_POLICY_LEN + 1)
    );
    assert_eq!(
        run(long_policy.as_bytes()).map_err(|r| r.reason),
        Err(Reason::MalformedPolicy)
    );
}
