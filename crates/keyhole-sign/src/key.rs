//! Private and public keys: PEM parsing (PKCS#1, PKCS#8, SEC1, SubjectPublicKeyInfo), generation,
//! and the raw signature operations CloudFront uses.
//!
//! Keys are parsed once into OpenSSL objects; signing and verifying then use the low-level RSA and
//! ECDSA primitives directly, which avoids a per-call EVP context and keeps throughput at the level
//! of `openssl speed`. A P-256 key also gets a `ring` key pair when it is parsed, and ECDSA-SHA256
//! signatures (the only kind CloudFront uses with ECDSA) come from it: ring's P-256 signing does
//! without OpenSSL 3's per-call parameter lookups and allocations, and is about 1.3 times as fast.

use std::fmt;

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{Asn1Flag, EcGroup, EcGroupRef, EcKey, EcPoint, EcPointRef, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, Private, Public};
use openssl::rsa::{Padding, Rsa, RsaRef};

use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::error::KeyError;
use zeroize::Zeroizing;

/// Largest PEM text accepted; an RSA-4096 PKCS#8 key is about 3.3 KiB.
const MAX_PEM_LEN: usize = 16 * 1024;
/// Smallest RSA modulus accepted. CloudFront itself only takes 2048-bit public keys; 1024-bit keys
/// are accepted so the AWS SDKs' shared test vectors can be checked.
const MIN_RSA_BITS: u32 = 1024;
/// Largest RSA modulus accepted (bounds the cost of one verification).
const MAX_RSA_BITS: u32 = 4096;

/// The digest used for a signature; selected by the `Hash-Algorithm` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-1: CloudFront's default when no `Hash-Algorithm` parameter is present.
    Sha1,
    /// SHA-256: signalled with `Hash-Algorithm=SHA256`.
    Sha256,
}

impl HashAlgorithm {
    /// The parameter value CloudFront uses (`SHA1` or `SHA256`).
    pub fn as_param(self) -> &'static str {
        match self {
            HashAlgorithm::Sha1 => "SHA1",
            HashAlgorithm::Sha256 => "SHA256",
        }
    }

    /// Parses a `Hash-Algorithm` parameter value (exactly `SHA1` or `SHA256`).
    pub fn from_param(value: &str) -> Option<Self> {
        match value {
            "SHA1" => Some(HashAlgorithm::Sha1),
            "SHA256" => Some(HashAlgorithm::Sha256),
            _ => None,
        }
    }

    fn digest(self, message: &[u8]) -> Digest {
        match self {
            HashAlgorithm::Sha1 => Digest::Sha1(openssl::sha::sha1(message)),
            HashAlgorithm::Sha256 => Digest::Sha256(openssl::sha::sha256(message)),
        }
    }
}

enum Digest {
    Sha1([u8; 20]),
    Sha256([u8; 32]),
}

/// DER `DigestInfo` prefixes for PKCS#1 v1.5 (RFC 8017, section 9.2, note 1).
const SHA1_PREFIX: [u8; 15] = [
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];
const SHA256_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

impl Digest {
    fn bytes(&self) -> &[u8] {
        match self {
            Digest::Sha1(d) => d,
            Digest::Sha256(d) => d,
        }
    }

    /// The PKCS#1 v1.5 `DigestInfo` encoding of this digest.
    fn digest_info(&self) -> Vec<u8> {
        let prefix: &[u8] = match self {
            Digest::Sha1(_) => &SHA1_PREFIX,
            Digest::Sha256(_) => &SHA256_PREFIX,
        };
        let mut out = Vec::with_capacity(prefix.len() + 32);
        out.extend_from_slice(prefix);
        out.extend_from_slice(self.bytes());
        out
    }
}

/// The kind of key: what CloudFront trusts in a key group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA with PKCS#1 v1.5 signatures (CloudFront requires 2048-bit keys).
    Rsa,
    /// ECDSA on the NIST P-256 curve with DER-encoded signatures.
    EcdsaP256,
}

impl KeyAlgorithm {
    /// The digest used when the caller does not choose one: SHA-1 for RSA (CloudFront's default,
    /// so no `Hash-Algorithm` parameter is needed) and SHA-256 for ECDSA.
    pub fn default_hash(self) -> HashAlgorithm {
        match self {
            KeyAlgorithm::Rsa => HashAlgorithm::Sha1,
            KeyAlgorithm::EcdsaP256 => HashAlgorithm::Sha256,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Rsa => "rsa",
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
        })
    }
}

/// Normalises PEM text as it arrives from files and environment variables: trims surrounding
/// whitespace, turns literal `\n` sequences into newlines and drops carriage returns. The text is
/// a private key's: every buffer is sized up front (the result is never longer than the input,
/// plus a newline), so none is reallocated and left behind, and each is wiped when dropped.
fn normalise_pem(pem: &str) -> Result<Zeroizing<String>, KeyError> {
    if pem.len() > MAX_PEM_LEN {
        return Err(KeyError::TooLarge);
    }
    let pem = pem.trim();
    let mut text = Zeroizing::new(String::with_capacity(pem.len() + 1));
    let mut rest = pem;
    while let Some(i) = rest.find(['\\', '\r']) {
        text.push_str(&rest[..i]);
        if rest[i..].starts_with("\\n") {
            text.push('\n');
            rest = &rest[i + 2..];
        } else {
            if rest.as_bytes()[i] == b'\\' {
                text.push('\\');
            }
            rest = &rest[i + 1..];
        }
    }
    text.push_str(rest);
    // Indented PEMs (YAML, heredocs) carry leading whitespace on every line.
    if text.lines().any(|l| l.starts_with([' ', '\t'])) {
        let mut trimmed = Zeroizing::new(String::with_capacity(text.len() + 1));
        for (i, line) in text.lines().enumerate() {
            if i > 0 {
                trimmed.push('\n');
            }
            trimmed.push_str(line.trim());
        }
        text = trimmed;
    }
    // Text before the first boundary is allowed (RFC 7468 section 2), such as the "Bag
    // Attributes" lines `openssl pkcs12` writes above a key.
    if !text.starts_with("-----BEGIN ") {
        let Some(begin) = text.find("\n-----BEGIN ") else {
            return Err(KeyError::NotPem);
        };
        let mut from_begin = Zeroizing::new(String::with_capacity(text.len() + 1));
        from_begin.push_str(&text[begin + 1..]);
        text = from_begin;
    }
    if is_encrypted(&text) {
        return Err(KeyError::Encrypted);
    }
    text.push('\n');
    Ok(text)
}

/// Whether normalised PEM text holds an encrypted key: a PKCS#8 `ENCRYPTED PRIVATE KEY` block, or
/// a traditional (PKCS#1, SEC1) block with the RFC 1421 header `Proc-Type: 4,ENCRYPTED`. Only
/// these lines count, so the word elsewhere (in a comment beside the key) does not.
fn is_encrypted(text: &str) -> bool {
    text.lines().map(str::trim).any(|line| {
        line == "-----BEGIN ENCRYPTED PRIVATE KEY-----"
            || line.strip_prefix("Proc-Type:").is_some_and(|value| {
                value
                    .split(',')
                    .nth(1)
                    .is_some_and(|kind| kind.trim() == "ENCRYPTED")
            })
    })
}

/// A private signing key: RSA (1024–4096 bits) or ECDSA P-256.
///
/// Parsed once; `Send + Sync` and cheap to share across threads behind an `Arc`. Its `Debug`
/// output never contains key material.
#[derive(Clone)]
pub struct PrivateKey {
    inner: PrivateInner,
}

#[derive(Clone)]
enum PrivateInner {
    Rsa(Rsa<Private>),
    /// The OpenSSL key (encoding, the public half, ECDSA-SHA1) and the same key in ring
    /// (ECDSA-SHA256 signing).
    Ec(EcKey<Private>, Arc<EcdsaKeyPair>),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Parses a private key from PEM: PKCS#1 (`RSA PRIVATE KEY`), PKCS#8 (`PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`). CRLF line ends, surrounding whitespace and literal `\n` sequences (as
    /// in environment variables) are tolerated. Encrypted keys and other key types are refused. A
    /// P-256 key written with explicit curve parameters is re-encoded with the named curve.
    ///
    /// ```
    /// let key = keyhole_sign::PrivateKey::generate(keyhole_sign::KeyAlgorithm::EcdsaP256).unwrap();
    /// let pem = String::from_utf8(key.to_pem().unwrap().to_vec()).unwrap();
    /// let escaped = pem.replace('\n', "\\n");
    /// let again = keyhole_sign::PrivateKey::from_pem(&escaped).unwrap();
    /// assert_eq!(again.public_key().unwrap().to_pem().unwrap(), key.public_key().unwrap().to_pem().unwrap());
    /// ```
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let text = normalise_pem(pem)?;
        // The callback answers any passphrase prompt with an empty passphrase, so OpenSSL never
        // tries to read one from a terminal.
        let pkey = PKey::private_key_from_pem_callback(text.as_bytes(), |_buf| Ok(0))
            .map_err(|_| KeyError::Unparsable)?;
        Self::from_pkey(pkey)
    }

    /// Parses a private key from DER (PKCS#8, or the traditional PKCS#1/SEC1 forms).
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let pkey = PKey::private_key_from_der(der).map_err(|_| KeyError::Unparsable)?;
        Self::from_pkey(pkey)
    }

    fn from_pkey(pkey: PKey<Private>) -> Result<Self, KeyError> {
        match pkey.id() {
            Id::RSA => {
                let rsa = pkey.rsa().map_err(|_| KeyError::Unparsable)?;
                check_rsa_bits(modulus_bits(&rsa))?;
                Ok(PrivateKey {
                    inner: PrivateInner::Rsa(rsa),
                })
            }
            Id::EC => {
                let ec = pkey.ec_key().map_err(|_| KeyError::Unparsable)?;
                let ec = match check_curve(ec.group())? {
                    None => ec,
                    Some(named) => on_group(ec.public_key(), ec.group(), &named)
                        .and_then(|point| {
                            EcKey::from_private_components(&named, ec.private_key(), &point)
                        })
                        .and_then(|key| key.check_key().map(|()| key))
                        .map_err(|_| KeyError::Unparsable)?,
                };
                Self::ec(ec)
            }
            _ => Err(KeyError::UnsupportedType),
        }
    }

    /// A P-256 key, also loaded into ring from its private scalar and public point (which ring
    /// checks against each other). Not from its PKCS#8 form: ring requires the optional public
    /// key there, and keys written without it (`openssl ec -no_public`) load here, as OpenSSL
    /// derives the point.
    fn ec(ec: EcKey<Private>) -> Result<Self, KeyError> {
        let scalar = ec
            .private_key()
            .to_vec_padded(32)
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Unparsable)?;
        let mut ctx = BigNumContext::new().map_err(|_| KeyError::Unparsable)?;
        let point = ec
            .public_key()
            .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
            .map_err(|_| KeyError::Unparsable)?;
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &scalar,
            &point,
            &SystemRandom::new(),
        )
        .map_err(|_| KeyError::Unparsable)?;
        Ok(PrivateKey {
            inner: PrivateInner::Ec(ec, Arc::new(pair)),
        })
    }

    /// Generates a fresh key: RSA-2048 or ECDSA P-256.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        match algorithm {
            KeyAlgorithm::Rsa => Ok(PrivateKey {
                inner: PrivateInner::Rsa(Rsa::generate(2048).map_err(|_| KeyError::Generate)?),
            }),
            KeyAlgorithm::EcdsaP256 => {
                let group = p256().map_err(|_| KeyError::Generate)?;
                Self::ec(EcKey::generate(&group).map_err(|_| KeyError::Generate)?)
                    .map_err(|_| KeyError::Generate)
            }
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            PrivateInner::Rsa(_) => KeyAlgorithm::Rsa,
            PrivateInner::Ec(..) => KeyAlgorithm::EcdsaP256,
        }
    }

    /// The key's size in bits: the modulus of an RSA key, 256 for P-256.
    pub fn bits(&self) -> u32 {
        match &self.inner {
            PrivateInner::Rsa(rsa) => modulus_bits(rsa),
            PrivateInner::Ec(..) => 256,
        }
    }

    /// Whether CloudFront accepts this key's public half: RSA-2048 or ECDSA P-256 (this crate
    /// also signs with RSA keys of 1024 to 4096 bits, which only another verifier accepts).
    pub fn cloudfront_compatible(&self) -> bool {
        self.algorithm() == KeyAlgorithm::EcdsaP256 || self.bits() == 2048
    }

    /// The private key as PEM: PKCS#1 (`RSA PRIVATE KEY`) for RSA, as CloudFront's documentation
    /// and Terraform's `tls_private_key` produce, and PKCS#8 for ECDSA. The buffer is wiped on drop.
    pub fn to_pem(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        let pem = match &self.inner {
            PrivateInner::Rsa(rsa) => rsa.private_key_to_pem(),
            PrivateInner::Ec(ec, _) => {
                PKey::from_ec_key(ec.clone()).and_then(|p| p.private_key_to_pem_pkcs8())
            }
        }
        .map_err(|_| KeyError::Encode)?;
        Ok(zeroize::Zeroizing::new(pem))
    }

    /// The matching public key.
    pub fn public_key(&self) -> Result<PublicKey, KeyError> {
        let inner = match &self.inner {
            PrivateInner::Rsa(rsa) => {
                let n = rsa.n().to_owned().map_err(|_| KeyError::Encode)?;
                let e = rsa.e().to_owned().map_err(|_| KeyError::Encode)?;
                PublicInner::Rsa(Rsa::from_public_components(n, e).map_err(|_| KeyError::Encode)?)
            }
            PrivateInner::Ec(ec, _) => PublicInner::Ec(
                EcKey::from_public_key(ec.group(), ec.public_key())
                    .map_err(|_| KeyError::Encode)?,
            ),
        };
        Ok(PublicKey { inner })
    }

    /// Signs `message` with the given digest: PKCS#1 v1.5 for RSA (deterministic, so identical to
    /// every other correct signer), a DER-encoded ECDSA signature for P-256.
    pub fn sign(&self, message: &[u8], hash: HashAlgorithm) -> Result<Vec<u8>, KeyError> {
        if let (PrivateInner::Ec(_, pair), HashAlgorithm::Sha256) = (&self.inner, hash) {
            return pair
                .sign(&SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign);
        }
        let digest = hash.digest(message);
        match &self.inner {
            PrivateInner::Rsa(rsa) => {
                let mut out = vec![0u8; rsa.size() as usize];
                let n = rsa
                    .private_encrypt(&digest.digest_info(), &mut out, Padding::PKCS1)
                    .map_err(|_| KeyError::Sign)?;
                out.truncate(n);
                Ok(out)
            }
            PrivateInner::Ec(ec, _) => EcdsaSig::sign(digest.bytes(), ec)
                .and_then(|s| s.to_der())
                .map_err(|_| KeyError::Sign),
        }
    }
}

/// A public verification key: RSA or ECDSA P-256.
#[derive(Clone)]
pub struct PublicKey {
    inner: PublicInner,
}

#[derive(Clone)]
enum PublicInner {
    Rsa(Rsa<Public>),
    Ec(EcKey<Public>),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Parses a public key from PEM: SubjectPublicKeyInfo (`PUBLIC KEY`, what CloudFront's
    /// `encoded_key` takes) or PKCS#1 (`RSA PUBLIC KEY`). Same tolerance as
    /// [`PrivateKey::from_pem`], and the same re-encoding of explicit P-256 parameters.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let text = normalise_pem(pem)?;
        let pkey = if text.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
            Rsa::public_key_from_pem_pkcs1(text.as_bytes())
                .and_then(PKey::from_rsa)
                .map_err(|_| KeyError::Unparsable)?
        } else if text.starts_with("-----BEGIN PUBLIC KEY-----") {
            PKey::public_key_from_pem(text.as_bytes()).map_err(|_| KeyError::Unparsable)?
        } else if text.contains("PRIVATE KEY") {
            return Err(KeyError::PrivateWherePublic);
        } else {
            return Err(KeyError::Unparsable);
        };
        Self::from_pkey(pkey)
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let pkey = PKey::public_key_from_der(der).map_err(|_| KeyError::Unparsable)?;
        Self::from_pkey(pkey)
    }

    fn from_pkey(pkey: PKey<Public>) -> Result<Self, KeyError> {
        match pkey.id() {
            Id::RSA => {
                let rsa = pkey.rsa().map_err(|_| KeyError::Unparsable)?;
                check_rsa_bits(modulus_bits(&rsa))?;
                Ok(PublicKey {
                    inner: PublicInner::Rsa(rsa),
                })
            }
            Id::EC => {
                let ec = pkey.ec_key().map_err(|_| KeyError::Unparsable)?;
                let ec = match check_curve(ec.group())? {
                    None => ec,
                    Some(named) => on_group(ec.public_key(), ec.group(), &named)
                        .and_then(|point| EcKey::from_public_key(&named, &point))
                        .map_err(|_| KeyError::Unparsable)?,
                };
                Ok(PublicKey {
                    inner: PublicInner::Ec(ec),
                })
            }
            _ => Err(KeyError::UnsupportedType),
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            PublicInner::Rsa(_) => KeyAlgorithm::Rsa,
            PublicInner::Ec(_) => KeyAlgorithm::EcdsaP256,
        }
    }

    /// The SubjectPublicKeyInfo DER encoding.
    pub fn to_der(&self) -> Result<Vec<u8>, KeyError> {
        match &self.inner {
            PublicInner::Rsa(rsa) => rsa.public_key_to_der(),
            PublicInner::Ec(ec) => ec.public_key_to_der(),
        }
        .map_err(|_| KeyError::Encode)
    }

    /// The SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), the form CloudFront's public
    /// key resource (`encoded_key`) takes.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let pem = match &self.inner {
            PublicInner::Rsa(rsa) => rsa.public_key_to_pem(),
            PublicInner::Ec(ec) => ec.public_key_to_pem(),
        }
        .map_err(|_| KeyError::Encode)?;
        String::from_utf8(pem).map_err(|_| KeyError::Encode)
    }

    /// A stable, file-safe identifier derived from the key: `K` followed by 13 base32 characters
    /// of the SHA-256 of its SubjectPublicKeyInfo (the shape of a CloudFront public key id).
    pub fn fingerprint_id(&self) -> Result<String, KeyError> {
        let digest = openssl::sha::sha256(&self.to_der()?);
        let mut id = String::from("K");
        id.push_str(&base32(&digest)[..13]);
        Ok(id)
    }

    /// Checks `signature` over `message`. Returns `false` for any wrong, truncated, padded or
    /// non-canonical signature; never panics.
    pub fn verify(&self, message: &[u8], signature: &[u8], hash: HashAlgorithm) -> bool {
        let digest = hash.digest(message);
        match &self.inner {
            PublicInner::Rsa(rsa) => {
                let size = rsa.size() as usize;
                if signature.len() != size {
                    return false;
                }
                let mut out = vec![0u8; size];
                let Ok(n) = rsa.public_decrypt(signature, &mut out, Padding::PKCS1) else {
                    return false;
                };
                let expected = digest.digest_info();
                n == expected.len() && openssl::memcmp::eq(&out[..n], &expected)
            }
            PublicInner::Ec(ec) => {
                let Ok(sig) = EcdsaSig::from_der(signature) else {
                    return false;
                };
                // Refuse non-canonical encodings (trailing bytes, long-form lengths): a signature
                // is accepted only in the exact bytes a signer produces.
                match sig.to_der() {
                    Ok(der) if der == signature => {}
                    _ => return false,
                }
                sig.verify(digest.bytes(), ec).unwrap_or(false)
            }
        }
    }
}

/// The P-256 group, written by name (RFC 5480's `namedCurve`) wherever a key on it is encoded.
fn p256() -> Result<EcGroup, ErrorStack> {
    let mut group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    group.set_asn1_flag(Asn1Flag::NAMED_CURVE);
    Ok(group)
}

/// The exact size of an RSA key's modulus in bits. `RSA_size` counts whole bytes, so it would
/// call a 2047-bit key 2048 bits and a 1023-bit key 1024.
fn modulus_bits<T: HasPublic>(rsa: &RsaRef<T>) -> u32 {
    u32::try_from(rsa.n().num_bits()).unwrap_or(0)
}

fn check_rsa_bits(bits: u32) -> Result<(), KeyError> {
    if (MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(KeyError::RsaSize(bits))
    }
}

/// Checks that an EC key is on P-256. `None`: the key names the curve and is kept as it is.
/// `Some(p256)`: the key spells out its curve's parameters (`openssl ecparam -param_enc explicit`)
/// and they are exactly P-256's, so the key must be moved onto the named group: RFC 5480 requires
/// the named form, CloudFront expects it, and the public key PEM and fingerprint id must not
/// depend on how the key file was written. Explicit parameters of any other curve are refused.
fn check_curve(group: &EcGroupRef) -> Result<Option<EcGroup>, KeyError> {
    if group.curve_name() == Some(Nid::X9_62_PRIME256V1)
        && group.asn1_flag() == Asn1Flag::NAMED_CURVE
    {
        return Ok(None);
    }
    let named = p256().map_err(|_| KeyError::Unparsable)?;
    match (curve_parameters(group), curve_parameters(&named)) {
        (Ok(given), Ok(p256)) if given == p256 => Ok(Some(named)),
        _ => Err(KeyError::UnsupportedCurve),
    }
}

/// What defines a prime-field curve: the field prime, the coefficients `a` and `b`, the
/// generator's coordinates, the order and the cofactor.
fn curve_parameters(group: &EcGroupRef) -> Result<[BigNum; 7], ErrorStack> {
    let mut ctx = BigNumContext::new()?;
    let (mut p, mut a, mut b) = (BigNum::new()?, BigNum::new()?, BigNum::new()?);
    group.components_gfp(&mut p, &mut a, &mut b, &mut ctx)?;
    let (mut x, mut y) = (BigNum::new()?, BigNum::new()?);
    group
        .generator_opt()
        .ok_or_else(ErrorStack::get)?
        .affine_coordinates(group, &mut x, &mut y, &mut ctx)?;
    let (mut order, mut cofactor) = (BigNum::new()?, BigNum::new()?);
    group.order(&mut order, &mut ctx)?;
    group.cofactor(&mut cofactor, &mut ctx)?;
    Ok([p, a, b, x, y, order, cofactor])
}

/// The same point on another group (the named form of the same curve), through its encoding.
fn on_group(point: &EcPointRef, from: &EcGroupRef, to: &EcGroupRef) -> Result<EcPoint, ErrorStack> {
    let mut ctx = BigNumContext::new()?;
    let bytes = point.to_bytes(from, PointConversionForm::UNCOMPRESSED, &mut ctx)?;
    EcPoint::from_bytes(to, &bytes, &mut ctx)
}

/// RFC 4648 base32 without padding (for key ids).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rsa_2048_and_p256_keys_are_cloudfront_compatible() {
        let rsa = PrivateKey::generate(KeyAlgorithm::Rsa).unwrap();
        assert_eq!((rsa.bits(), rsa.cloudfront_compatible()), (2048, true));
        let ec = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        assert_eq!((ec.bits(), ec.cloudfront_compatible()), (256, true));
        for bits in [1024, 3072] {
            let der = Rsa::generate(bits).unwrap().private_key_to_der().unwrap();
            let key = PrivateKey::from_der(&der).unwrap();
            assert_eq!((key.bits(), key.cloudfront_compatible()), (bits, false));
        }
    }

    /// A P-256 key written without its optional public key (`openssl ec -no_public`: SEC1
    /// without `[1] publicKey`) loads, OpenSSL deriving the point, and signs.
    #[test]
    fn a_p256_key_without_its_public_key_loads_and_signs() {
        let full = EcKey::generate(&p256().unwrap()).unwrap();
        let scalar = full.private_key().to_vec_padded(32).unwrap();
        // ECPrivateKey ::= SEQUENCE { version 1, privateKey OCTET STRING, [0] prime256v1 }
        let mut der = vec![0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
        der.extend_from_slice(&scalar);
        der.extend_from_slice(&[
            0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ]);
        let key = PrivateKey::from_der(&der).expect("a SEC1 key without its public key");
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der);
        let pem = format!("-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n");
        PrivateKey::from_pem(&pem).expect("the same as PEM");
        let public = EcKey::from_public_key(full.group(), full.public_key()).unwrap();
        let message = b"policy";
        for hash in [HashAlgorithm::Sha256, HashAlgorithm::Sha1] {
            let signature = EcdsaSig::from_der(&key.sign(message, hash).unwrap()).unwrap();
            assert!(signature
                .verify(hash.digest(message).bytes(), &public)
                .unwrap());
        }
    }

    /// ECDSA-SHA256 signatures come from ring, ECDSA-SHA1 from OpenSSL: both are DER signatures
    /// of the message's digest that OpenSSL verifies with the key's public point, for a key
    /// generated here and for one parsed from each PEM form.
    #[test]
    fn ecdsa_signatures_of_both_digests_verify_with_openssl() {
        let generated = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = generated.to_pem().unwrap();
        let PrivateInner::Ec(ec, _) = &generated.inner else {
            unreachable!()
        };
        let sec1 = String::from_utf8(ec.private_key_to_pem().unwrap()).unwrap();
        let keys = [
            generated.clone(),
            PrivateKey::from_pem(std::str::from_utf8(&pem).unwrap()).unwrap(),
            PrivateKey::from_pem(&sec1).unwrap(),
        ];
        let message = br#"{"Statement":[{"Resource":"https://files.example.com/a","Condition":{"DateLessThan":{"AWS:EpochTime":1767225600}}}]}"#;
        for key in &keys {
            let PrivateInner::Ec(ec, _) = &key.inner else {
                unreachable!()
            };
            let public = EcKey::from_public_key(ec.group(), ec.public_key()).unwrap();
            for hash in [HashAlgorithm::Sha256, HashAlgorithm::Sha1] {
                let signature = key.sign(message, hash).unwrap();
                let parsed = EcdsaSig::from_der(&signature).unwrap();
                let digest = hash.digest(message);
                assert!(parsed.verify(digest.bytes(), &public).unwrap(), "{hash:?}");
                let other = hash.digest(b"another message");
                assert!(!parsed.verify(other.bytes(), &public).unwrap(), "{hash:?}");
                // Randomised: two signatures of one message differ, and both verify.
                assert_ne!(signature, key.sign(message, hash).unwrap(), "{hash:?}");
            }
        }
    }

    #[test]
    fn pem_text_is_normalised() {
        let cases = [
            (
                "-----BEGIN X-----\nAB\n-----END X-----",
                "-----BEGIN X-----\nAB\n-----END X-----\n",
            ),
            (
                "  -----BEGIN X-----\r\nAB\r\n-----END X-----\r\n\n",
                "-----BEGIN X-----\nAB\n-----END X-----\n",
            ),
            (
                "-----BEGIN X-----\\nAB\\n-----END X-----",
                "-----BEGIN X-----\nAB\n-----END X-----\n",
            ),
            (
                "-----BEGIN X-----\n    AB\n\tCD\n  -----END X-----",
                "-----BEGIN X-----\nAB\nCD\n-----END X-----\n",
            ),
            // A backslash that starts no `\n` stays, a carriage return inside one goes.
            ("-----BEGIN X-----\\x\\\rn", "-----BEGIN X-----\\x\\n\n"),
        ];
        for (given, want) in cases {
            let got = normalise_pem(given).unwrap();
            assert_eq!(got.as_str(), want, "{given:?}");
            assert!(
                got.capacity() <= given.len() + 1,
                "sized up front: {given:?}"
            );
        }
        // Text before the first boundary is allowed (RFC 7468), as `openssl pkcs12` writes it.
        let bag = "Bag Attributes\n    localKeyID: 01 02\nKey Attributes: <No Attributes>\n\
                   -----BEGIN X-----\nAB\n-----END X-----\n";
        assert_eq!(
            normalise_pem(bag).unwrap().as_str(),
            "-----BEGIN X-----\nAB\n-----END X-----\n"
        );
        assert!(matches!(normalise_pem("AB"), Err(KeyError::NotPem)));
        assert!(matches!(
            normalise_pem("AB -----BEGIN X-----"),
            Err(KeyError::NotPem)
        ));
        assert!(matches!(
            normalise_pem("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            Err(KeyError::Encrypted)
        ));
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
    }

    #[test]
    fn refuses_garbage_and_other_types() {
        assert!(matches!(
            PrivateKey::from_pem("hello"),
            Err(KeyError::NotPem)
        ));
        let ed = PKey::generate_ed25519().unwrap();
        let pem = String::from_utf8(ed.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let err = PrivateKey::from_pem(&pem).unwrap_err();
        assert!(err.to_string().contains("RSA") && err.to_string().contains("ECDSA"));
        let p384 = EcKey::generate(&EcGroup::from_curve_name(Nid::SECP384R1).unwrap()).unwrap();
        let pem = String::from_utf8(p384.private_key_to_pem().unwrap()).unwrap();
        assert!(matches!(
            PrivateKey::from_pem(&pem),
            Err(KeyError::UnsupportedCurve)
        ));
    }

    #[test]
    fn refuses_encrypted_keys_without_prompting() {
        let rsa = Rsa::generate(2048).unwrap();
        let cipher = openssl::symm::Cipher::aes_128_cbc();
        // Traditional PEM (`Proc-Type: 4,ENCRYPTED`) and PKCS#8 (`ENCRYPTED PRIVATE KEY`).
        let traditional = rsa
            .private_key_to_pem_passphrase(cipher, b"secret")
            .unwrap();
        let pkcs8 = PKey::from_rsa(rsa)
            .unwrap()
            .private_key_to_pem_pkcs8_passphrase(cipher, b"secret")
            .unwrap();
        for pem in [traditional, pkcs8] {
            let pem = String::from_utf8(pem).unwrap();
            let err = PrivateKey::from_pem(&pem).unwrap_err();
            assert!(matches!(err, KeyError::Encrypted), "{pem}");
            let err = PrivateKey::from_pem(&pem.replace('\n', "\r\n")).unwrap_err();
            assert!(matches!(err, KeyError::Encrypted), "{pem}");
        }
    }

    #[test]
    fn tolerates_crlf_whitespace_and_indentation() {
        let key = PrivateKey::generate(KeyAlgorithm::Rsa).unwrap();
        let pem = String::from_utf8(key.to_pem().unwrap().to_vec()).unwrap();
        let crlf = format!("\n  {}  \n", pem.replace('\n', "\r\n"));
        let indented = pem
            .lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n");
        for text in [crlf, indented] {
            let again = PrivateKey::from_pem(&text).unwrap();
            assert_eq!(
                again.sign(b"x", HashAlgorithm::Sha1).unwrap(),
                key.sign(b"x", HashAlgorithm::Sha1).unwrap()
            );
        }
    }

    #[test]
    fn public_key_pem_round_trips_and_private_is_refused_as_public() {
        for alg in [KeyAlgorithm::Rsa, KeyAlgorithm::EcdsaP256] {
            let key = PrivateKey::generate(alg).unwrap();
            let public = key.public_key().unwrap();
            let again = PublicKey::from_pem(&public.to_pem().unwrap()).unwrap();
            assert_eq!(again.to_der().unwrap(), public.to_der().unwrap());
            let sig = key.sign(b"message", alg.default_hash()).unwrap();
            assert!(again.verify(b"message", &sig, alg.default_hash()));
            assert!(!again.verify(b"messagf", &sig, alg.default_hash()));
            let private_pem = String::from_utf8(key.to_pem().unwrap().to_vec()).unwrap();
            assert!(matches!(
                PublicKey::from_pem(&private_pem),
                Err(KeyError::PrivateWherePublic)
            ));
            let id = public.fingerprint_id().unwrap();
            assert_eq!(id.len(), 14);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        }
    }

    /// The same P-256 key as PKCS#8, SEC1 and SubjectPublicKeyInfo PEM with explicit curve
    /// parameters, as `openssl ecparam -param_enc explicit` writes them.
    fn explicit_pems(named: &EcKey<Private>) -> [String; 3] {
        let mut group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        group.set_asn1_flag(Asn1Flag::EXPLICIT_CURVE);
        let explicit =
            EcKey::from_private_components(&group, named.private_key(), named.public_key())
                .unwrap();
        let pkcs8 = PKey::from_ec_key(explicit.clone())
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap();
        let pems = [
            pkcs8,
            explicit.private_key_to_pem().unwrap(),
            explicit.public_key_to_pem().unwrap(),
        ]
        .map(|pem| String::from_utf8(pem).unwrap());
        // The test is only worth something if the parameters really are spelt out.
        let parsed = PKey::private_key_from_pem(pems[0].as_bytes()).unwrap();
        let flag = parsed.ec_key().unwrap().group().asn1_flag();
        assert_eq!(flag, Asn1Flag::EXPLICIT_CURVE);
        pems
    }

    #[test]
    fn explicit_p256_parameters_are_rewritten_as_the_named_curve() {
        let named = EcKey::generate(&p256().unwrap()).unwrap();
        let named_pem = String::from_utf8(named.private_key_to_pem().unwrap()).unwrap();
        let reference = PrivateKey::from_pem(&named_pem).unwrap();
        let public = reference.public_key().unwrap();
        let [pkcs8, sec1, spki] = explicit_pems(&named);
        for pem in [&pkcs8, &sec1] {
            let key = PrivateKey::from_pem(pem).unwrap();
            assert_eq!(key.to_pem().unwrap(), reference.to_pem().unwrap());
            let again = key.public_key().unwrap();
            assert_eq!(again.to_pem().unwrap(), public.to_pem().unwrap());
            assert_eq!(again.to_der().unwrap(), public.to_der().unwrap());
            assert_eq!(
                again.fingerprint_id().unwrap(),
                public.fingerprint_id().unwrap()
            );
            let sig = key.sign(b"m", HashAlgorithm::Sha256).unwrap();
            assert!(public.verify(b"m", &sig, HashAlgorithm::Sha256));
        }
        let loaded = PublicKey::from_pem(&spki).unwrap();
        assert_eq!(loaded.to_pem().unwrap(), public.to_pem().unwrap());
        assert_eq!(
            loaded.fingerprint_id().unwrap(),
            public.fingerprint_id().unwrap()
        );
        let sig = reference.sign(b"m", HashAlgorithm::Sha256).unwrap();
        assert!(loaded.verify(b"m", &sig, HashAlgorithm::Sha256));
        let der = PKey::public_key_from_pem(spki.as_bytes())
            .unwrap()
            .public_key_to_der()
            .unwrap();
        assert_eq!(
            PublicKey::from_der(&der).unwrap().to_der().unwrap(),
            public.to_der().unwrap()
        );
    }

    #[test]
    fn explicit_parameters_of_another_curve_are_refused() {
        // P-256's field and equation with another generator (2G): not P-256 for any signer.
        let p256 = p256().unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        let (mut p, mut a, mut b) = (
            BigNum::new().unwrap(),
            BigNum::new().unwrap(),
            BigNum::new().unwrap(),
        );
        p256.components_gfp(&mut p, &mut a, &mut b, &mut ctx)
            .unwrap();
        let mut group = EcGroup::from_components(p, a, b, &mut ctx).unwrap();
        let mut generator = EcPoint::new(&p256).unwrap();
        let two = BigNum::from_u32(2).unwrap();
        generator.mul_generator2(&p256, &two, &mut ctx).unwrap();
        let mut order = BigNum::new().unwrap();
        p256.order(&mut order, &mut ctx).unwrap();
        let generator = on_group(&generator, &p256, &group).unwrap();
        group
            .set_generator(generator, order, BigNum::from_u32(1).unwrap())
            .unwrap();
        let key = EcKey::generate(&group).unwrap();
        let private = String::from_utf8(key.private_key_to_pem().unwrap()).unwrap();
        let public = String::from_utf8(key.public_key_to_pem().unwrap()).unwrap();
        assert!(matches!(
            PrivateKey::from_pem(&private),
            Err(KeyError::UnsupportedCurve)
        ));
        assert!(matches!(
            PublicKey::from_pem(&public),
            Err(KeyError::UnsupportedCurve)
        ));
        // Explicit parameters of a real curve other than P-256.
        let mut p384 = EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
        p384.set_asn1_flag(Asn1Flag::EXPLICIT_CURVE);
        let key = EcKey::generate(&p384).unwrap();
        let private = String::from_utf8(key.private_key_to_pem().unwrap()).unwrap();
        assert!(matches!(
            PrivateKey::from_pem(&private),
            Err(KeyError::UnsupportedCurve)
        ));
    }

    #[test]
    fn rsa_sizes_count_modulus_bits_not_bytes() {
        let rsa = Rsa::generate(2047).unwrap();
        assert_eq!(rsa.n().num_bits(), 2047);
        let key = PrivateKey::from_der(&rsa.private_key_to_der().unwrap()).unwrap();
        assert_eq!((key.bits(), key.cloudfront_compatible()), (2047, false));
        let rsa = Rsa::generate(1023).unwrap();
        assert_eq!(rsa.n().num_bits(), 1023);
        assert!(matches!(
            PrivateKey::from_der(&rsa.private_key_to_der().unwrap()),
            Err(KeyError::RsaSize(1023))
        ));
        assert!(matches!(
            PublicKey::from_der(&rsa.public_key_to_der().unwrap()),
            Err(KeyError::RsaSize(1023))
        ));
    }

    #[test]
    fn the_word_encrypted_in_a_note_is_not_encryption() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = String::from_utf8(key.to_pem().unwrap().to_vec()).unwrap();
        let noted = format!("{pem}# not ENCRYPTED, just a note\n");
        let again = PrivateKey::from_pem(&noted).unwrap();
        assert_eq!(again.to_pem().unwrap(), key.to_pem().unwrap());
        let public = key.public_key().unwrap().to_pem().unwrap();
        let noted = format!("{public}# not ENCRYPTED, just a note\n");
        assert_eq!(
            PublicKey::from_pem(&noted).unwrap().to_pem().unwrap(),
            public
        );
        assert!(!is_encrypted("Proc-Type: 4,NOT-ENCRYPTED\nENCRYPTED\n"));
    }

    #[test]
    fn ecdsa_refuses_non_canonical_der() {
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let public = key.public_key().unwrap();
        let mut sig = key.sign(b"m", HashAlgorithm::Sha256).unwrap();
        assert!(public.verify(b"m", &sig, HashAlgorithm::Sha256));
        sig.push(0);
        assert!(!public.verify(b"m", &sig, HashAlgorithm::Sha256));
    }
}
