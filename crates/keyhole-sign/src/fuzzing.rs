//! The harness behind the `verify` fuzz target (`fuzz/fuzz_targets/verify.rs`), shared with the
//! stable-toolchain test that replays its corpus (`tests/fuzz_inputs.rs`). Not a supported API.

use std::net::IpAddr;

use crate::verify::{Rejection, Request, Verified, Verifier};

/// The time used when the input names none: 2026-01-01T00:00:00Z, inside the validity window of
/// the AWS test vectors the fuzz corpus is signed with.
pub const DEFAULT_NOW: u64 = 1_767_225_600;

/// Reads arbitrary bytes as a request and verifies it. The input is (lossily) UTF-8 text of up to
/// four lines: the request target, the `Cookie` header (empty for none), the client address
/// (unparsable for none) and the time in epoch seconds (unparsable for [`DEFAULT_NOW`]).
///
/// Never panics on any input unless the verifier breaks an invariant: an accepted request is
/// inside its validity window and names a trusted key.
pub fn verify_input(verifier: &Verifier, data: &[u8]) -> Result<Verified, Rejection> {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(4, '\n');
    let target = lines.next().unwrap_or_default();
    let cookies = lines.next().filter(|header| !header.is_empty());
    let client_ip = lines.next().and_then(|ip| ip.trim().parse::<IpAddr>().ok());
    let now = lines
        .next()
        .and_then(|now| now.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_NOW);
    let result = verifier.verify(&Request {
        target,
        client_ip,
        now,
        cookies,
    });
    if let Ok(verified) = &result {
        assert!(now < verified.expires, "accepted at {now}: {verified:?}");
        assert!(
            verifier.key_ring().get(&verified.key_pair_id).is_some(),
            "accepted with an untrusted key: {verified:?}"
        );
    }
    result
}
