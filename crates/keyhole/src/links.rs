//! Which kind of link a request gets, and minting it.
//!
//! During a migration from presigned S3 URLs to one domain both kinds are issued side by side:
//! `cloudfront` links (CloudFront-format signed URLs on the public URL, checked by Keyhole's edge
//! or by CloudFront) and `s3-presigned` links (SigV4 presigned URLs straight to the S3 bucket,
//! what customers used before they whitelisted the domain). The kind is chosen per principal
//! (the bearer token's name) and per feature: principals pinned to a mode get that mode; every
//! other principal falls into a stable bucket `0..100` (a hash of its name) and gets `cloudfront`
//! when its bucket is below the feature's `cloudfront_percent`. Raising the percentage only ever
//! moves principals from `s3-presigned` to `cloudfront`, never back.

use std::time::{Duration, SystemTime};

use keyhole_sign::Policy;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::PartLink;
use crate::auth::Principal;
use crate::config::{Config, Storage};
use crate::state::SharedState;
use crate::store::objects::{ObjectError, PresignOp};
use crate::store::FileRecord;
use crate::telemetry::Metrics;

/// The kind of a minted link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, ToSchema)]
pub enum UrlMode {
    /// A CloudFront-format signed URL on the public URL (the one domain).
    #[serde(rename = "cloudfront")]
    CloudFront,
    /// A SigV4 presigned URL on the S3 bucket (the legacy path).
    #[serde(rename = "s3-presigned")]
    S3Presigned,
}

impl UrlMode {
    /// Every mode, for metrics and documentation.
    pub const ALL: [UrlMode; 2] = [UrlMode::CloudFront, UrlMode::S3Presigned];

    /// The setting's spelling: `cloudfront` or `s3-presigned`.
    pub fn as_str(self) -> &'static str {
        match self {
            UrlMode::CloudFront => "cloudfront",
            UrlMode::S3Presigned => "s3-presigned",
        }
    }

    /// Parses `cloudfront` or `s3-presigned`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "cloudfront" => Some(UrlMode::CloudFront),
            "s3-presigned" => Some(UrlMode::S3Presigned),
            _ => None,
        }
    }
}

/// What a link is for; each feature has its own rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// Upload links (whole files and parts).
    Upload,
    /// Download links.
    Download,
}

/// How one feature's links are split between the modes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    /// Share of unpinned principals (0 to 100) whose links are `cloudfront`; the rest get
    /// `s3-presigned`. Default 100.
    pub cloudfront_percent: u32,
    /// Principals pinned to a mode whatever the percentage, e.g. pilot tenants on `cloudfront`
    /// or a customer that has not whitelisted the domain yet on `s3-presigned`.
    pub pins: Vec<(String, UrlMode)>,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            cloudfront_percent: 100,
            pins: Vec::new(),
        }
    }
}

/// The link modes of both features (`[url_mode.upload]` and `[url_mode.download]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlModes {
    /// Upload links.
    pub upload: Rollout,
    /// Download links.
    pub download: Rollout,
}

impl UrlModes {
    /// The rollout of `feature`.
    pub fn rollout(&self, feature: Feature) -> &Rollout {
        match feature {
            Feature::Upload => &self.upload,
            Feature::Download => &self.download,
        }
    }

    /// Whether any principal can get an `s3-presigned` link (which needs S3 storage).
    pub fn may_presign(&self) -> bool {
        self.upload.may_presign() || self.download.may_presign()
    }
}

/// A principal's stable rollout bucket, `0..100`: the first eight bytes of the SHA-256 of its
/// name, modulo 100. The same name always lands in the same bucket, on every replica.
pub fn bucket(principal: &str) -> u32 {
    let digest = openssl::sha::sha256(principal.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % 100) as u32
}

impl Rollout {
    /// The mode of `principal`'s links: its pin if it has one, else by its bucket.
    pub fn mode_for(&self, principal: &str) -> UrlMode {
        if let Some((_, mode)) = self.pins.iter().find(|(p, _)| p == principal) {
            return *mode;
        }
        // At 0 or 100 percent every bucket gets the same answer: no need to hash the principal.
        let cloudfront = match self.cloudfront_percent {
            0 => false,
            p if p >= 100 => true,
            p => bucket(principal) < p,
        };
        if cloudfront {
            UrlMode::CloudFront
        } else {
            UrlMode::S3Presigned
        }
    }

    /// Whether any principal can get an `s3-presigned` link.
    pub fn may_presign(&self) -> bool {
        self.cloudfront_percent < 100 || self.pins.iter().any(|(_, m)| *m == UrlMode::S3Presigned)
    }

    /// Parses a pin, `PRINCIPAL=MODE`.
    pub fn parse_pin(spec: &str) -> Result<(String, UrlMode), String> {
        let (principal, mode) = spec
            .rsplit_once('=')
            .ok_or_else(|| format!("{spec:?} is not PRINCIPAL=MODE (e.g. acme=s3-presigned)"))?;
        let mode = UrlMode::parse(mode.trim()).ok_or_else(|| {
            format!("{mode:?} in {spec:?} is not a link mode; use cloudfront or s3-presigned")
        })?;
        let principal = principal.trim();
        if principal.is_empty() {
            return Err(format!("{spec:?} names no principal"));
        }
        Ok((principal.to_owned(), mode))
    }
}

/// The mode of `principal`'s links for `feature` under `config`.
pub fn mode_for(config: &Config, principal: &Principal, feature: Feature) -> UrlMode {
    config.url_modes.rollout(feature).mode_for(&principal.0)
}

/// One feature's rollout as `/api/config` reports it: the percentage and how many principals
/// are pinned to each mode (not their names, which would list customers to anyone).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicRollout {
    /// Share of unpinned principals (0 to 100) whose links are `cloudfront`.
    pub cloudfront_percent: u32,
    /// Principals pinned to `cloudfront`.
    pub pinned_cloudfront: usize,
    /// Principals pinned to `s3-presigned`.
    pub pinned_s3_presigned: usize,
}

/// Link modes as `/api/config` reports them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicUrlModes {
    /// Upload links.
    pub upload: PublicRollout,
    /// Download links.
    pub download: PublicRollout,
}

impl From<&Rollout> for PublicRollout {
    fn from(r: &Rollout) -> Self {
        // Principals, not pins: the same pin given twice (flag and file) is one principal.
        let pinned = |mode| {
            r.pins
                .iter()
                .filter(|(_, m)| *m == mode)
                .map(|(p, _)| p.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        PublicRollout {
            cloudfront_percent: r.cloudfront_percent,
            pinned_cloudfront: pinned(UrlMode::CloudFront),
            pinned_s3_presigned: pinned(UrlMode::S3Presigned),
        }
    }
}

impl From<&UrlModes> for PublicUrlModes {
    fn from(m: &UrlModes) -> Self {
        PublicUrlModes {
            upload: (&m.upload).into(),
            download: (&m.download).into(),
        }
    }
}

/// Why a link could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// CloudFront-format signing failed.
    #[error("signing a CloudFront-format link failed: {0}")]
    Sign(#[from] keyhole_sign::SignError),
    /// The storage backend cannot presign (local disk); start-up validation prevents this.
    #[error("s3-presigned links need S3 storage (--storage s3://BUCKET)")]
    NotSupported,
    /// Presigning failed.
    #[error("presigning an S3 link failed: {0}")]
    Presign(#[from] ObjectError),
    /// The signing queue is full or stopped (the server is overloaded or shutting down).
    #[error(transparent)]
    Refused(#[from] crate::signq::Refused),
}

/// Signs `url` with the active key, on this thread's signing queue ([`crate::signq`]).
async fn sign_canned(state: &SharedState, url: String, expires: i64) -> Result<String, LinkError> {
    let policy = Policy::canned(expires as u64)?;
    let keys = state.keys.current();
    Ok(crate::signq::run(1, move || keys.signer.sign_url(&url, &policy)).await??)
}

/// Seconds from now until `expires` (epoch seconds), at least one.
fn ttl_until(expires: i64) -> Duration {
    Duration::from_secs((expires - crate::state::now_secs()).max(1) as u64)
}

async fn presign(
    state: &SharedState,
    record: &FileRecord,
    op: &PresignOp<'_>,
    expires: i64,
) -> Result<String, LinkError> {
    state
        .objects
        .presign(
            &record.object_key,
            op,
            SystemTime::now(),
            ttl_until(expires),
        )
        .await?
        .ok_or(LinkError::NotSupported)
}

fn count(state: &SharedState, feature: &str, mode: UrlMode) {
    state.metrics.count_link(feature, mode.as_str());
}

/// The URL to PUT a single-part upload's bytes to, valid until `expires`.
pub async fn upload_url(
    state: &SharedState,
    record: &FileRecord,
    mode: UrlMode,
    expires: i64,
) -> Result<String, LinkError> {
    let url = match mode {
        UrlMode::CloudFront => {
            let url = format!(
                "{}/uploads/{}",
                state.config.public_origin(),
                record.file_id
            );
            sign_canned(state, url, expires).await?
        }
        UrlMode::S3Presigned => {
            let op = PresignOp::Put {
                content_length: record.declared_size,
            };
            presign(state, record, &op, expires).await?
        }
    };
    Metrics::count(&state.metrics.links, "upload");
    count(state, "upload", mode);
    Ok(url)
}

/// URLs to PUT the given parts of a multipart upload to, valid until `expires`.
pub async fn part_links(
    state: &SharedState,
    record: &FileRecord,
    numbers: &[u32],
    mode: UrlMode,
    expires: i64,
) -> Result<Vec<PartLink>, crate::http::ApiError> {
    if mode == UrlMode::CloudFront {
        let links = crate::api::part_links(state, record, numbers, expires).await?;
        for _ in &links {
            count(state, "upload_part", mode);
        }
        return Ok(links);
    }
    let upload_id = record.upload_id.as_deref().unwrap_or_default();
    let mut links = Vec::with_capacity(numbers.len());
    for &n in numbers {
        let op = PresignOp::UploadPart {
            upload_id,
            part_number: n,
            content_length: record.expected_part_size(n),
        };
        let url = presign(state, record, &op, expires).await?;
        Metrics::count(&state.metrics.links, "upload_part");
        count(state, "upload_part", mode);
        links.push(PartLink {
            part_number: n,
            url,
        });
    }
    Ok(links)
}

/// The unsigned URL of a `cloudfront` download link for `record` on `public_origin`.
///
/// With S3 storage the link may be served by CloudFront straight from the bucket, which knows
/// nothing of the record. The link then carries `response-content-type` and
/// `response-content-disposition`: S3 answers a signed GET (CloudFront's origin access control
/// signs every request) with those headers, and the distribution forwards exactly these two
/// parameters. The values are the ones Keyhole's own edge sends from the record
/// ([`crate::edge::content_disposition`]); they are part of the signed URL, so a link holder
/// cannot change them, and the edge, which may serve the same link, verifies them with the
/// signature and answers with the same headers from the record. With local storage only the
/// edge can serve the file, and the link stays `{public_origin}/files/{fileId}`.
pub fn cloudfront_download_url(public_origin: &str, record: &FileRecord, s3: bool) -> String {
    let mut url = format!("{public_origin}/files/{}", record.file_id);
    if s3 {
        let disposition = crate::edge::content_disposition(&record.original_filename);
        url.push_str("?response-content-type=");
        url.push_str(&query_value(&record.content_type));
        url.push_str("&response-content-disposition=");
        url.push_str(&query_value(&disposition));
    }
    url
}

/// `value` percent-encoded for a query string: everything but RFC 3986's unreserved characters,
/// with upper-case hex (the form clients and proxies leave as it is, so the URL CloudFront checks
/// is byte for byte the one that was signed).
fn query_value(value: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(value, UNRESERVED).to_string()
}

/// The URL to GET an uploaded file from, valid until `expires`. Both kinds carry the record's
/// content type and a `Content-Disposition` with its name, as the edge serves them: presigned
/// links always, `cloudfront` links with S3 storage ([`cloudfront_download_url`]).
pub async fn download_url(
    state: &SharedState,
    record: &FileRecord,
    mode: UrlMode,
    expires: i64,
) -> Result<String, LinkError> {
    let url = match mode {
        UrlMode::CloudFront => {
            let s3 = matches!(state.config.storage, Storage::S3 { .. });
            let url = cloudfront_download_url(state.config.public_origin(), record, s3);
            sign_canned(state, url, expires).await?
        }
        UrlMode::S3Presigned => {
            let disposition = crate::edge::content_disposition(&record.original_filename);
            let op = PresignOp::Get {
                content_type: &record.content_type,
                content_disposition: &disposition,
            };
            presign(state, record, &op, expires).await?
        }
    };
    Metrics::count(&state.metrics.links, "download");
    count(state, "download", mode);
    Ok(url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn api_config_counts_pinned_principals_once() {
        let rollout = Rollout {
            cloudfront_percent: 50,
            pins: vec![
                ("acme".into(), UrlMode::S3Presigned),
                ("acme".into(), UrlMode::S3Presigned),
                ("globex".into(), UrlMode::S3Presigned),
                ("initech".into(), UrlMode::CloudFront),
            ],
        };
        let public = PublicRollout::from(&rollout);
        assert_eq!(
            (public.pinned_s3_presigned, public.pinned_cloudfront),
            (2, 1)
        );
    }

    use super::*;

    fn names() -> Vec<String> {
        (0..1000).map(|i| format!("tenant-{i}")).collect()
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("acme"), bucket("acme"));
        let names = names();
        let mut seen = [0u32; 100];
        for n in &names {
            let b = bucket(n);
            assert!(b < 100);
            seen[b as usize] += 1;
        }
        // 1000 names over 100 buckets: every decile gets a fair share.
        for decile in seen.chunks(10) {
            let sum: u32 = decile.iter().sum();
            assert!((50..=150).contains(&sum), "uneven deciles: {seen:?}");
        }
    }

    #[test]
    fn zero_and_hundred_percent_are_all_or_nothing() {
        let none = Rollout {
            cloudfront_percent: 0,
            pins: Vec::new(),
        };
        let all = Rollout::default();
        for n in names() {
            assert_eq!(none.mode_for(&n), UrlMode::S3Presigned);
            assert_eq!(all.mode_for(&n), UrlMode::CloudFront);
        }
        assert!(none.may_presign());
        assert!(!all.may_presign());
    }

    #[test]
    fn percentages_in_between_split_by_bucket_and_only_grow() {
        let names = names();
        let mut previous: Vec<bool> = vec![false; names.len()];
        for percent in [10, 50, 90] {
            let r = Rollout {
                cloudfront_percent: percent,
                pins: Vec::new(),
            };
            let on: Vec<bool> = names
                .iter()
                .map(|n| r.mode_for(n) == UrlMode::CloudFront)
                .collect();
            let share = on.iter().filter(|b| **b).count();
            let expected = percent as usize * 10;
            assert!(
                share.abs_diff(expected) <= 60,
                "{percent}%: {share} of 1000"
            );
            for (n, (was, is)) in names.iter().zip(previous.iter().zip(&on)) {
                assert!(!was || *is, "{n} moved back to s3-presigned at {percent}%");
                assert_eq!(*is, bucket(n) < percent);
            }
            previous = on;
        }
    }

    #[test]
    fn pins_win_over_the_percentage() {
        let r = Rollout {
            cloudfront_percent: 0,
            pins: vec![("pilot".into(), UrlMode::CloudFront)],
        };
        assert_eq!(r.mode_for("pilot"), UrlMode::CloudFront);
        assert_eq!(r.mode_for("other"), UrlMode::S3Presigned);
        let r = Rollout {
            cloudfront_percent: 100,
            pins: vec![("late".into(), UrlMode::S3Presigned)],
        };
        assert_eq!(r.mode_for("late"), UrlMode::S3Presigned);
        assert_eq!(r.mode_for("other"), UrlMode::CloudFront);
        assert!(r.may_presign());
    }

    fn record(filename: &str, content_type: &str) -> FileRecord {
        FileRecord {
            file_id: "01J9ZQ4K7X_rapport-ete.pdf".into(),
            original_filename: filename.into(),
            content_type: content_type.into(),
            object_key: "uploads/01J9ZQ4K7X_rapport-ete.pdf".into(),
            upload_url_generated_at: 0,
            uploaded_at: Some(0),
            size: Some(3),
            declared_size: None,
            declared_sha256: None,
            sha256: None,
            etag: None,
            status: crate::store::Status::Uploaded,
            owner: "acme".into(),
            ttl: None,
            upload_id: None,
            part_size: None,
        }
    }

    /// The query parameter `name` of `url`, percent-decoded.
    fn param(url: &str, name: &str) -> Option<String> {
        let query = url.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (n, v) = pair.split_once('=')?;
            (n == name).then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .unwrap()
                    .into_owned()
            })
        })
    }

    #[test]
    fn cloudfront_download_links_on_s3_carry_the_records_headers() {
        let r = record(
            "rapport \"été\" 100%; v2.pdf",
            "application/pdf; charset=binary",
        );
        let url = cloudfront_download_url("https://files.example.com", &r, true);
        assert!(
            url.starts_with(
                "https://files.example.com/files/01J9ZQ4K7X_rapport-ete.pdf?response-content-type="
            ),
            "{url}"
        );
        // Exactly what the edge sends from the record, for S3 to answer with.
        assert_eq!(
            param(&url, "response-content-type").as_deref(),
            Some("application/pdf; charset=binary")
        );
        assert_eq!(
            param(&url, "response-content-disposition"),
            Some(crate::edge::content_disposition(&r.original_filename))
        );
        // Nothing but unreserved characters and upper-case escapes: no client or proxy rewrites
        // them, so CloudFront checks the bytes that were signed.
        let query = url.split_once('?').unwrap().1;
        for pair in query.split('&') {
            let value = pair.split_once('=').unwrap().1;
            assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
                "{value}"
            );
            for escape in value.split('%').skip(1) {
                let hex = &escape[..2];
                assert!(
                    hex.bytes()
                        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
                    "{value}"
                );
            }
        }
    }

    #[test]
    fn cloudfront_download_links_on_local_storage_are_bare() {
        let r = record("a.pdf", "application/pdf");
        assert_eq!(
            cloudfront_download_url("https://files.example.com", &r, false),
            "https://files.example.com/files/01J9ZQ4K7X_rapport-ete.pdf"
        );
    }

    /// Keyhole's own edge may be handed the same link: the two parameters are part of the signed
    /// resource, so it verifies as it is and refuses any change to them.
    #[test]
    fn the_parameters_are_signed_and_verify_at_the_edge() {
        use keyhole_sign::{KeyAlgorithm, KeyRing, PrivateKey, Request, Signer, Verifier};
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let mut ring = KeyRing::new();
        ring.insert("KTESTKEY", key.public_key().unwrap());
        let verifier = Verifier::new("https://files.example.com", ring).unwrap();
        let signer = Signer::new("KTESTKEY", key).unwrap();
        let r = record("résumé final.pdf", "application/pdf");
        let url = cloudfront_download_url("https://files.example.com", &r, true);
        let signed = signer
            .sign_url(&url, &Policy::canned(2_000_000_000).unwrap())
            .unwrap();
        let verify = |link: &str| {
            verifier.verify(&Request {
                target: link.strip_prefix("https://files.example.com").unwrap(),
                client_ip: None,
                now: 1_700_000_000,
                cookies: None,
            })
        };
        assert!(verify(&signed).is_ok());
        let changed = signed.replace("application%2Fpdf", "text%2Fhtml");
        assert_ne!(changed, signed);
        assert!(
            verify(&changed).is_err(),
            "a changed content type must not verify"
        );
    }

    #[test]
    fn pins_parse_and_refuse_unknown_modes() {
        assert_eq!(
            Rollout::parse_pin("acme=s3-presigned"),
            Ok(("acme".into(), UrlMode::S3Presigned))
        );
        assert_eq!(
            Rollout::parse_pin("a=b=cloudfront"),
            Ok(("a=b".into(), UrlMode::CloudFront))
        );
        for bad in ["acme", "acme=s3", "=cloudfront", "acme=CloudFront"] {
            assert!(Rollout::parse_pin(bad).is_err(), "{bad}");
        }
    }
}
