//! The S3 operations `object_store` does not offer, through `aws-sdk-s3`: SigV4 presigned URLs
//! (the legacy `s3-presigned` link mode) and ListParts (parts that reached S3 without Keyhole's
//! edge). Same bucket, prefix, endpoint (path-style) and region as [`super::s3::S3Storage`], and
//! the same credentials (the standard AWS sources). Secret keys are never logged.

use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use super::objects::{ObjectError, PresignOp, StoredPart};
use super::s3::S3Settings;

/// SigV4 presigned URLs live at most seven days.
pub const MAX_PRESIGN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// An `aws-sdk-s3` client on one bucket and prefix.
#[derive(Clone, Debug)]
pub struct S3Api {
    client: Client,
    bucket: String,
    prefix: String,
}

fn sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> ObjectError {
    if e.code() == Some("NoSuchUpload") {
        return ObjectError::NoSuchUpload;
    }
    ObjectError::Io(std::io::Error::other(DisplayErrorContext(&e).to_string()))
}

/// The text of the first `<name>` element of `xml`, with the five predefined entities decoded.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(
        xml[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn presign_error(e: impl std::fmt::Display) -> ObjectError {
    ObjectError::Io(std::io::Error::other(format!("presigning: {e}")))
}

impl S3Api {
    /// A client for `settings`, with credentials from the standard AWS sources (environment,
    /// profile, instance or task role).
    pub async fn connect(settings: &S3Settings) -> Self {
        // rustls with ring, like the other AWS clients, rather than the SDK's default aws-lc.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(settings.region_or_default()))
            .load()
            .await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            // Otherwise presigned PUTs carry a checksum of an empty body and every upload fails.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        S3Api {
            client: Client::from_conf(config.build()),
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
        }
    }

    fn key(&self, key: &str) -> Result<String, ObjectError> {
        if !super::objects::valid_key(key) {
            return Err(ObjectError::InvalidKey);
        }
        Ok(if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }

    /// A presigned URL performing `op` on `key`, valid from `start` for `ttl` (at most seven
    /// days, SigV4's limit).
    pub async fn presign(
        &self,
        key: &str,
        op: &PresignOp<'_>,
        start: SystemTime,
        ttl: Duration,
    ) -> Result<String, ObjectError> {
        let key = self.key(key)?;
        let config = PresigningConfig::builder()
            .start_time(start)
            .expires_in(ttl.min(MAX_PRESIGN_TTL))
            .build()
            .map_err(presign_error)?;
        let request = match *op {
            PresignOp::Put { content_length } => self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .set_content_length(signed_length(content_length)?)
                .presigned(config)
                .await
                .map_err(presign_error)?,
            PresignOp::UploadPart {
                upload_id,
                part_number,
                content_length,
            } => self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(i32::try_from(part_number).map_err(presign_error)?)
                .set_content_length(signed_length(content_length)?)
                .presigned(config)
                .await
                .map_err(presign_error)?,
            PresignOp::Get {
                content_type,
                content_disposition,
            } => self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .response_content_type(content_type)
                .response_content_disposition(content_disposition)
                .presigned(config)
                .await
                .map_err(presign_error)?,
        };
        Ok(request.uri().to_owned())
    }

    /// Completes the multipart upload `upload_id` of `key` from `parts` (part number and ETag),
    /// only if no object exists under `key` (`If-None-Match: *`, S3's conditional write): of two
    /// completions racing for one key, exactly one succeeds and the other gets
    /// [`ObjectError::Exists`]. Returns the object's ETag.
    pub async fn complete_if_absent(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<Option<String>, ObjectError> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let key = self.key(key)?;
        let mut completed = Vec::with_capacity(parts.len());
        for (number, etag) in parts {
            completed.push(
                CompletedPart::builder()
                    .part_number(i32::try_from(*number).map_err(|_| {
                        ObjectError::Io(std::io::Error::other("part number out of range"))
                    })?)
                    .e_tag(etag)
                    .build(),
            );
        }
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await;
        let e = match result {
            Ok(done) => return Ok(done.e_tag().map(str::to_owned)),
            Err(e) => e,
        };
        // 412: the object exists; 409: another conditional write to the key is under way (S3
        // lets one of them win).
        if matches!(
            e.code(),
            Some("PreconditionFailed" | "ConditionalRequestConflict")
        ) || e.raw_response().is_some_and(|r| r.status().as_u16() == 412)
        {
            return Err(ObjectError::Exists);
        }
        // Some S3-compatible servers (moto among them) name the result document
        // `CompleteMultipartUploadResponse`, which the SDK refuses to decode although the upload
        // is complete. (An error that S3 reports with status 200 has an `Error` root instead.)
        if let Some(raw) = e.raw_response() {
            let body = raw.body().bytes().map(String::from_utf8_lossy);
            if let (200, Some(body)) = (raw.status().as_u16(), body) {
                if body.contains("<CompleteMultipartUploadResponse") && !body.contains("<Error>") {
                    return Ok(xml_text(&body, "ETag"));
                }
            }
        }
        Err(sdk_error(e))
    }

    /// Removes one version of `key` for good, in a versioned bucket: the version before it, if
    /// any, becomes the current one again.
    pub async fn delete_version(&self, key: &str, version_id: &str) -> Result<(), ObjectError> {
        let key = self.key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .version_id(version_id)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Every part S3 holds for the multipart upload `upload_id` of `key`, by part number,
    /// following ListParts' pages.
    pub async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<StoredPart>, ObjectError> {
        let key = self.key(key)?;
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(sdk_error)?;
            for p in page.parts() {
                let (Some(number), Some(size)) = (p.part_number(), p.size()) else {
                    continue;
                };
                let (Ok(number), Ok(size)) = (u32::try_from(number), u64::try_from(size)) else {
                    continue;
                };
                parts.push(StoredPart {
                    number,
                    size,
                    etag: p.e_tag().unwrap_or_default().to_owned(),
                });
            }
            let next = page.next_part_number_marker().map(str::to_owned);
            if page.is_truncated() != Some(true) || next.is_none() || next == marker {
                break;
            }
            marker = next;
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(parts)
    }
}

/// A declared length as the SDK's `Content-Length`, which a presigned request signs: the body
/// must then be exactly that long.
fn signed_length(length: Option<u64>) -> Result<Option<i64>, ObjectError> {
    length
        .map(|n| i64::try_from(n).map_err(presign_error))
        .transpose()
}
