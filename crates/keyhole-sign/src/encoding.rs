//! CloudFront's URL-safe base64 variant.
//!
//! CloudFront encodes policies and signatures with standard base64 and then swaps the three
//! characters that are unsafe in URLs: `+` becomes `-`, `=` becomes `_` and `/` becomes `~`.
//! This is *not* RFC 4648 base64url (which uses `-` and `_` for `+` and `/`).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// Decoder that accepts the value with or without its trailing padding, as some clients strip it.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Encodes bytes in CloudFront's base64 variant (`+`→`-`, `=`→`_`, `/`→`~`).
///
/// ```
/// assert_eq!(keyhole_sign::encoding::encode(&[0xfb, 0xff]), "-~8_");
/// ```
pub fn encode(bytes: &[u8]) -> String {
    let mut out = STANDARD.encode(bytes).into_bytes();
    for b in &mut out {
        *b = match *b {
            b'+' => b'-',
            b'=' => b'_',
            b'/' => b'~',
            other => other,
        };
    }
    // Only ASCII bytes were produced and swapped for other ASCII bytes.
    String::from_utf8(out).unwrap_or_default()
}

/// Decodes CloudFront's base64 variant. Returns `None` for any character outside the alphabet
/// (including the standard `+`, `/` and `=`, which CloudFront never emits).
///
/// ```
/// assert_eq!(keyhole_sign::encoding::decode("-~8_"), Some(vec![0xfb, 0xff]));
/// assert_eq!(keyhole_sign::encoding::decode("+/8="), None);
/// ```
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(text.len());
    for &b in text.as_bytes() {
        buf.push(match b {
            b'-' => b'+',
            b'_' => b'=',
            b'~' => b'/',
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => b,
            _ => return None,
        });
    }
    LENIENT.decode(&buf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let text = encode(&bytes);
            prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_~".contains(&b)));
            prop_assert_eq!(decode(&text), Some(bytes.clone()));
            // Padding may be stripped by clients.
            prop_assert_eq!(decode(text.trim_end_matches('_')), Some(bytes));
        }
    }

    #[test]
    fn rejects_standard_alphabet_and_garbage() {
        assert_eq!(decode("ab+c"), None);
        assert_eq!(decode("ab c"), None);
        assert_eq!(decode("a"), None);
        assert_eq!(decode("%41%41"), None);
    }
}
