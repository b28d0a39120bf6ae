//! Feeds arbitrary bytes, read as target / Cookie header / client address / time, to
//! `Verifier::verify`: it must never panic, and must only accept requests inside their window.
#![no_main]

use std::sync::OnceLock;

use keyhole_sign::{KeyRing, PublicKey, Verifier};
use libfuzzer_sys::fuzz_target;

/// The verifier for the AWS test vectors the seed corpus is signed with (the same one
/// `crates/keyhole-sign/tests/fuzz_inputs.rs` uses).
fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let mut ring = KeyRing::new();
        for (id, pem) in [
            (
                "K1TESTKEY",
                include_str!("../../crates/keyhole-sign/tests/data/test-rsa-key-public.pem"),
            ),
            (
                "K2ECDSATEST",
                include_str!("../../crates/keyhole-sign/tests/data/test-ecdsa-key-public.pem"),
            ),
        ] {
            ring.insert(
                id,
                PublicKey::from_pem(pem).expect("test vector public key"),
            );
        }
        Verifier::new("https://d111111abcdef8.cloudfront.net", ring).expect("valid origin")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = keyhole_sign::fuzzing::verify_input(verifier(), data);
});
