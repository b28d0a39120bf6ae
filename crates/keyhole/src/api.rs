//! The file API under `/api`: mint upload and download links, list and delete files, and
//! describe the server. JSON in camelCase; errors are `{"success":false,"error":{...}}`.

use std::time::Duration;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use keyhole_sign::Policy;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{AuthError, Principal, Refused};
use crate::http::{ApiError, JsonBody, OptionalJsonBody, MAX_COMPLETE_JSON_BYTES};
use crate::ids;
use crate::links::{self, Feature, PublicRollout, PublicUrlModes, UrlMode};
use crate::state::{now_millis, now_secs, secs_after, AppState, SharedState};
use crate::store::{FileRecord, Status};
use crate::telemetry::Metrics;

impl FromRequestParts<SharedState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        // A principal already attached to the request was verified by whoever embeds the router
        // (the Lambda, from the claims of API Gateway's JWT authorizer); clients cannot set
        // request extensions.
        if let Some(Refused(why)) = parts.extensions.get::<Refused>() {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                why.clone(),
            ));
        }
        let principal = match parts.extensions.get::<Principal>() {
            Some(verified) => verified.clone(),
            None if !state.auth.enabled() && !state.config.anonymous_when_unconfigured => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this API needs a bearer token: configure KEYHOLE_TOKENS or API Gateway's \
                     JWT authorizer (docs/deployment.md)",
                ));
            }
            None => {
                let header = parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .map(|v| v.to_str().unwrap_or(""));
                state.auth.authenticate(header).await.map_err(|e| {
                    let message = match e {
                        AuthError::Missing => "send Authorization: Bearer <token>",
                        AuthError::Invalid => "the bearer token is not valid",
                        AuthError::Unavailable => {
                            let mut e = ApiError::new(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "unavailable",
                                "the token issuer's keys could not be loaded yet; call again",
                            );
                            e.retry_after = Some(crate::jwt::RETRY_SPACING.as_secs());
                            return e;
                        }
                    };
                    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
                })?
            }
        };
        if let Err(wait) = state.limiter.check(&principal.0) {
            return Err(rate_limited(state, wait));
        }
        Ok(principal)
    }
}

/// 429 with the seconds to wait, counted in the metrics.
fn rate_limited(state: &AppState, wait: std::time::Duration) -> ApiError {
    state.metrics.rate_limited.inc();
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests; retry after the number of seconds in Retry-After",
    );
    // Rounded up: a client that waits as long as it is told is not refused again.
    e.retry_after = Some((wait.as_secs_f64().ceil() as u64).max(1));
    e
}

/// Charges `principal` for `links` links about to be signed (see
/// [`crate::auth::RateLimiter::charge_links`]), or 429 when it is already in debt.
fn charge_links<'a>(
    state: &'a AppState,
    principal: &str,
    links: usize,
) -> Result<crate::auth::LinkCharge<'a>, ApiError> {
    state
        .limiter
        .charge_links(principal, links)
        .map_err(|wait| rate_limited(state, wait))
}

/// A file id taken from the path and checked for shape before it reaches any store.
pub struct FileId(pub String);

impl FromRequestParts<SharedState> for FileId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await?;
        if !ids::is_valid_file_id(&id) {
            return Err(ApiError::bad_request(
                "fileId is not a valid file id (as returned by POST /api/files/upload)",
            ));
        }
        Ok(FileId(id))
    }
}

/// Request to create an upload link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUpload {
    /// The file's name as the user knows it (kept for downloads; sanitised into the id).
    pub filename: String,
    /// MIME type the upload must carry, e.g. `application/pdf`.
    pub content_type: String,
    /// Exact size in bytes, enforced while the bytes stream in.
    #[serde(default)]
    pub size: Option<u64>,
    /// Lower-case hex SHA-256, checked before the file is committed.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Upload in parts (needs `size`); implied when `size` reaches the multipart threshold.
    #[serde(default)]
    pub multipart: bool,
}

/// One part's signed upload URL.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartLink {
    /// 1-based part number.
    pub part_number: u32,
    /// Signed URL to PUT this part to.
    pub url: String,
}

/// An upload link (or, for multipart uploads, one link per part).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadLink {
    /// Always true.
    pub success: bool,
    /// Signed URL to PUT the bytes to (single-part uploads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    /// The new file's id.
    pub file_id: String,
    /// Where the bytes will be stored.
    pub object_key: String,
    /// Always `PUT`.
    pub method: &'static str,
    /// When the link expires (RFC 3339).
    pub expires_at: String,
    /// Which kind of link this is: `cloudfront` (the public URL) or `s3-presigned` (the S3
    /// bucket, during a migration).
    pub url_mode: UrlMode,
    /// Multipart upload id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// Size of every part but the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part_size: Option<u64>,
    /// Number of parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part_count: Option<u32>,
    /// One signed PUT URL per part, in any order and in parallel; then
    /// `POST /api/files/{fileId}/complete`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<PartLink>>,
}

/// A stored part.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartInfo {
    /// 1-based part number.
    pub part_number: u32,
    /// Bytes stored.
    pub size: u64,
    /// The part's ETag.
    pub etag: String,
}

/// State of a multipart upload, with fresh links for the missing parts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartsStatus {
    /// Always true.
    pub success: bool,
    /// The file's id.
    pub file_id: String,
    /// Multipart upload id.
    pub upload_id: String,
    /// Size of every part but the last.
    pub part_size: u64,
    /// Number of parts.
    pub part_count: u32,
    /// Parts stored so far.
    pub parts: Vec<PartInfo>,
    /// Fresh signed URLs for the parts still missing.
    pub missing: Vec<PartLink>,
    /// When the fresh links expire (RFC 3339).
    pub expires_at: String,
    /// Which kind the fresh links are: `cloudfront` or `s3-presigned`.
    pub url_mode: UrlMode,
}

/// Request to assemble a multipart upload.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompleteUpload {
    /// The parts in ascending order with the ETags their PUTs returned; when omitted, the stored
    /// parts are used.
    #[serde(default)]
    pub parts: Option<Vec<CompletePart>>,
}

/// One part named in a completion request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompletePart {
    /// 1-based part number.
    pub part_number: u32,
    /// The ETag the part's PUT returned (quotes optional).
    #[serde(default)]
    pub etag: Option<String>,
}

/// A completed upload.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Completed {
    /// Always true.
    pub success: bool,
    /// The file's id.
    pub file_id: String,
    /// Bytes stored.
    pub size: u64,
    /// SHA-256 of the whole file (hex), when the storage computed it.
    pub sha256: Option<String>,
    /// The file's ETag.
    pub etag: String,
}

/// A download link.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadLink {
    /// Always true.
    pub success: bool,
    /// Signed URL to GET the bytes from.
    pub download_url: String,
    /// The file's id.
    pub file_id: String,
    /// When the link expires (RFC 3339).
    pub expires_at: String,
    /// Which kind of link this is: `cloudfront` or `s3-presigned`.
    pub url_mode: UrlMode,
}

/// Whether a file's bytes are in.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    /// Its upload link is out; the bytes are not (all) in yet.
    Pending,
    /// Complete and checked: it can be downloaded.
    Uploaded,
}

impl From<Status> for FileStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Pending => FileStatus::Pending,
            Status::Uploaded => FileStatus::Uploaded,
        }
    }
}

/// One file as listed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    /// Id.
    pub file_id: String,
    /// Original name.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// `pending` until the bytes are in, then `uploaded`.
    pub status: FileStatus,
    /// Size in bytes, once uploaded (else the declared size, if any).
    pub size: Option<u64>,
    /// SHA-256 hex, once uploaded.
    pub sha256: Option<String>,
    /// When the upload link was issued (RFC 3339).
    pub created_at: String,
    /// When the bytes were committed (RFC 3339).
    pub uploaded_at: Option<String>,
    /// When the file will be deleted (RFC 3339); absent when kept.
    pub expires_at: Option<String>,
}

/// A page of files.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileList {
    /// Always true.
    pub success: bool,
    /// Newest first.
    pub files: Vec<FileInfo>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Listing parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
}

/// Public server settings.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicConfig {
    /// Always true.
    pub success: bool,
    /// Origin every signed URL carries.
    pub public_url: String,
    /// Upload link lifetime in seconds.
    pub upload_ttl_seconds: u64,
    /// Download link lifetime in seconds.
    pub download_ttl_seconds: u64,
    /// Retention of uploaded files in seconds (0 = kept until deleted).
    pub retention_seconds: u64,
    /// The CloudFront key pair id links are signed with.
    pub key_pair_id: String,
    /// Largest accepted upload in bytes: `max_upload_bytes`, and with S3 storage at most 625 GiB
    /// (10,000 parts of 64 MiB).
    pub max_upload_bytes: u64,
    /// Uploads declared at least this large are multipart.
    pub multipart_threshold: u64,
    /// Preferred part size of multipart uploads.
    pub part_size: u64,
    /// Whether the API needs a bearer token.
    pub auth_required: bool,
    /// How links are split between `cloudfront` and `s3-presigned` (pinned principals are
    /// counted, not named).
    pub url_modes: PublicUrlModes,
}

/// `{"success": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success {
    /// Always true.
    pub success: bool,
}

/// An error reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorReply {
    /// Always false.
    pub success: bool,
    /// What went wrong.
    pub error: ErrorBody,
}

/// Error details.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable code, e.g. `not_found`, `invalid_request`, `unauthorized`, `rate_limited`.
    pub code: String,
    /// Explanation.
    pub message: String,
}

fn rfc3339_secs(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn rfc3339_millis(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn info(r: &FileRecord) -> FileInfo {
    FileInfo {
        file_id: r.file_id.clone(),
        filename: r.original_filename.clone(),
        content_type: r.content_type.clone(),
        status: r.status.into(),
        size: r.size.or(r.declared_size),
        sha256: r.sha256.clone(),
        created_at: rfc3339_millis(r.upload_url_generated_at),
        uploaded_at: r.uploaded_at.map(rfc3339_millis),
        expires_at: r.ttl.map(rfc3339_secs),
    }
}

/// Mint an upload link: creates a pending file record and returns a signed PUT URL.
#[utoipa::path(post, path = "/api/files/upload", request_body = CreateUpload,
    responses((status = 200, body = UploadLink), (status = 400, body = ErrorReply),
              (status = 401, body = ErrorReply), (status = 413, body = ErrorReply),
              (status = 429, body = ErrorReply), (status = 503, body = ErrorReply)),
    security(("bearer" = [])))]
pub async fn create_upload(
    State(state): State<SharedState>,
    principal: Principal,
    JsonBody(req): JsonBody<CreateUpload>,
) -> Result<Json<UploadLink>, ApiError> {
    if req.filename.is_empty()
        || req.filename.len() > 255
        || req.filename.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(
            "filename must be 1 to 255 bytes without control characters",
        ));
    }
    if req.filename.chars().any(is_bidi_control) {
        return Err(ApiError::bad_request(
            "filename must not contain bidirectional formatting characters (U+202A to U+202E, \
             U+2066 to U+2069, U+200E, U+200F, U+061C): they make a name display other than it \
             is, e.g. hide its real extension",
        ));
    }
    if !ids::is_valid_content_type(&req.content_type) {
        return Err(ApiError::bad_request(
            "contentType must be a MIME type such as application/pdf",
        ));
    }
    if let Some(size) = req.size {
        check_size(&state.config, size)?;
    }
    let multipart = req.multipart
        || req
            .size
            .is_some_and(|s| s >= state.config.multipart_threshold);
    let part_size = match (multipart, req.size) {
        (false, _) => None,
        (true, None) => {
            return Err(ApiError::bad_request(
                "multipart uploads need the file's size (size)",
            ))
        }
        (true, Some(0)) => return Err(ApiError::bad_request("an empty file cannot be multipart")),
        (true, Some(size)) => Some(part_size_for(size, state.config.part_size)),
    };
    let sha256 = match req.sha256 {
        Some(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(s.to_ascii_lowercase())
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "sha256 must be 64 hexadecimal characters",
            ))
        }
        None => None,
    };
    let mode = links::mode_for(&state.config, &principal, Feature::Upload);
    let now = now_secs();
    let expires = secs_after(now, state.config.upload_ttl);
    let file_id = ids::new_file_id(&req.filename).map_err(ApiError::internal)?;
    let mut record = FileRecord {
        object_key: ids::object_key(&file_id),
        file_id: file_id.clone(),
        original_filename: req.filename,
        content_type: req.content_type,
        upload_url_generated_at: now_millis(),
        uploaded_at: None,
        size: None,
        declared_size: req.size,
        declared_sha256: sha256,
        sha256: None,
        etag: None,
        status: Status::Pending,
        owner: principal.0,
        ttl: Some(secs_after(expires, state.config.pending_grace)),
        upload_id: None,
        part_size,
    };
    // A link per part: the rate limit counts the links signed. They are charged before anything
    // is made for them (a multipart upload refused here would be left in the storage with no
    // record to remove it), and given back if the request fails.
    let links = record.part_count().map_or(1, |count| count as usize);
    let charge = charge_links(&state, &record.owner, links)?;
    if part_size.is_some() {
        record.upload_id = Some(
            state
                .objects
                .create_multipart(&record.object_key)
                .await
                .map_err(ApiError::internal)?,
        );
    }
    let signing = async {
        match record.part_count() {
            Some(count) if record.upload_id.is_some() => {
                let numbers: Vec<u32> = (1..=count).collect();
                let links = links::part_links(&state, &record, &numbers, mode, expires).await?;
                Ok::<_, ApiError>((None, Some(links)))
            }
            _ => Ok((
                Some(links::upload_url(&state, &record, mode, expires).await?),
                None,
            )),
        }
    };
    // The record is handed to the metadata store first and the links signed while it is being
    // written (`join` polls in order), so the store's round trip overlaps the signing instead of
    // following it. A record whose links then fail to sign stays pending until it expires.
    let (created, signed) = futures_util::future::join(state.meta.create(&record), signing).await;
    if let Err(e) = created {
        // No record will ever name the multipart upload made above, so nothing would abort it:
        // S3 would keep it (and bill its parts) until a lifecycle rule ends it.
        if let Some(upload_id) = &record.upload_id {
            if let Err(abort) = state
                .objects
                .abort_multipart(&record.object_key, upload_id)
                .await
            {
                tracing::warn!(file_id = %file_id, error = %abort, "cannot abort the multipart upload of a record that was not created");
            }
        }
        return Err(e.into());
    }
    let (upload_url, parts) = signed?;
    charge.signed();
    Ok(Json(UploadLink {
        success: true,
        upload_url,
        object_key: record.object_key.clone(),
        part_count: record.part_count().filter(|_| parts.is_some()),
        upload_id: record.upload_id,
        part_size: record.part_size,
        parts,
        file_id,
        method: "PUT",
        expires_at: rfc3339_secs(expires),
        url_mode: mode,
    }))
}

/// Whether `c` is a bidirectional formatting character: embeddings and overrides (U+202A to
/// U+202E), isolates (U+2066 to U+2069) and the implicit marks (U+200E, U+200F, U+061C). In a
/// file name they reorder what is displayed, so `invoice\u{202E}fdp.exe` shows as
/// `invoiceexe.pdf`. Other format characters (the zero-width joiner of emoji, say) are fine.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

/// 413 for a declared size over `max_upload_bytes`, or, with S3 storage, over what 10,000 parts
/// of at most 64 MiB hold: the part size would have to be raised past what the S3 part writer
/// may keep in memory.
fn check_size(config: &crate::config::Config, size: u64) -> Result<(), ApiError> {
    let too_large = |message| {
        Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            message,
        ))
    };
    let max = config.max_upload_bytes;
    if size > max {
        return too_large(format!("size {size} exceeds the limit of {max} bytes"));
    }
    let limit = config.effective_max_upload_bytes();
    if size > limit {
        return too_large(format!(
            "size {size} exceeds the limit of {limit} bytes with S3 storage: at most {} parts of \
             at most {} MiB (625 GiB)",
            crate::config::defaults::MAX_PARTS,
            config.max_part_size() / (1024 * 1024),
        ));
    }
    Ok(())
}

/// The part size for a file of `size` bytes: the configured size, raised (to a whole MiB) so the
/// upload needs at most 10,000 parts.
pub fn part_size_for(size: u64, preferred: u64) -> u64 {
    use crate::config::defaults::{MAX_PARTS, MIN_PART_SIZE};
    const MIB: u64 = 1024 * 1024;
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    preferred.max(needed).max(MIN_PART_SIZE)
}

/// Part links signed per job on the signing queue: a request for thousands of parts (0.3 ms
/// each with RSA) goes a few milliseconds at a time, with other requests' links in between,
/// instead of holding its worker for seconds.
const PARTS_PER_SIGNING_JOB: usize = 16;

/// CloudFront-format signed PUT URLs for the given parts of a multipart upload, valid until
/// `expires` ([`links::part_links`] picks the kind).
pub(crate) async fn part_links(
    state: &SharedState,
    record: &FileRecord,
    numbers: &[u32],
    expires: i64,
) -> Result<Vec<PartLink>, ApiError> {
    let upload_id = record.upload_id.as_deref().unwrap_or_default();
    let policy = Policy::canned(expires as u64).map_err(ApiError::internal)?;
    let origin = state.config.public_origin();
    let mut links = Vec::with_capacity(numbers.len());
    for chunk in numbers.chunks(PARTS_PER_SIGNING_JOB) {
        let urls: Vec<(u32, String)> = chunk
            .iter()
            .map(|&n| {
                let url = format!(
                    "{origin}/uploads/{}?partNumber={n}&uploadId={upload_id}",
                    record.file_id
                );
                (n, url)
            })
            .collect();
        let keys = state.keys.current();
        let policy = policy.clone();
        let signed = crate::signq::run(urls.len(), move || {
            urls.into_iter()
                .map(|(n, url)| {
                    keys.signer.sign_url(&url, &policy).map(|url| PartLink {
                        part_number: n,
                        url,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(crate::links::LinkError::from)?
        .map_err(ApiError::internal)?;
        // Counted per job, as each is signed, so `/metrics` shows a long request's progress.
        Metrics::count_by(&state.metrics.links, "upload_part", signed.len() as u64);
        links.extend(signed);
    }
    Ok(links)
}

async fn pending_multipart(
    state: &SharedState,
    principal: &Principal,
    file_id: &str,
) -> Result<FileRecord, ApiError> {
    let record = owned_record(state, principal, file_id).await?;
    if record.status == Status::Uploaded {
        return Err(already_uploaded());
    }
    if record.upload_id.is_none() || record.part_count().is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_multipart",
            "this is a single-part upload; PUT the whole file to its upload URL",
        ));
    }
    Ok(record)
}

/// List the stored parts of a multipart upload and re-issue links for the missing ones (to
/// resume after a crash or a dropped connection, from any machine). Extends the upload's expiry.
#[utoipa::path(get, path = "/api/files/{fileId}/parts",
    params(("fileId" = String, Path, description = "File id")),
    responses((status = 200, body = PartsStatus), (status = 404, body = ErrorReply),
              (status = 409, body = ErrorReply), (status = 429, body = ErrorReply),
              (status = 503, body = ErrorReply)),
    security(("bearer" = [])))]
pub async fn list_parts(
    State(state): State<SharedState>,
    principal: Principal,
    FileId(file_id): FileId,
) -> Result<Json<PartsStatus>, ApiError> {
    let record = pending_multipart(&state, &principal, &file_id).await?;
    let count = record.part_count().unwrap_or(0);
    let now = now_secs();
    let expires = secs_after(now, state.config.upload_ttl);
    let ttl = secs_after(expires, state.config.pending_grace);
    if !state.meta.extend_pending(&file_id, ttl, now).await? {
        return Err(ApiError::not_found("no such file"));
    }
    let stored = crate::direct::parts(&state, &record).await;
    let missing: Option<Vec<u32>> = stored.as_ref().ok().map(|stored| {
        (1..=count)
            .filter(|n| !stored.iter().any(|p| p.part_number == *n))
            .collect()
    });
    if missing.as_ref().is_none_or(|missing| !missing.is_empty()) {
        // Parts missing, or no upload any more: an earlier completion may have assembled the
        // object (and could not record it). Then it is recorded, and the upload is done.
        if let Some(done) = assembled_before(&state, &record).await {
            let _recorded = done?;
            return Err(already_uploaded());
        }
    }
    let stored = stored?;
    let missing = missing.unwrap_or_default();
    let mode = links::mode_for(&state.config, &principal, Feature::Upload);
    Ok(Json(PartsStatus {
        success: true,
        upload_id: record.upload_id.clone().unwrap_or_default(),
        part_size: record.part_size.unwrap_or_default(),
        part_count: count,
        parts: stored
            .iter()
            .map(|p| PartInfo {
                part_number: p.part_number,
                size: p.size,
                etag: p.etag.clone(),
            })
            .collect(),
        missing: {
            // The rate limit counts the links signed.
            let charge = charge_links(&state, &principal.0, missing.len())?;
            let links = links::part_links(&state, &record, &missing, mode, expires).await?;
            charge.signed();
            links
        },
        file_id,
        expires_at: rfc3339_secs(expires),
        url_mode: mode,
    }))
}

/// Assemble a multipart upload: checks that every part is there with the right size (and ETag,
/// when listed), joins them atomically into the object, checks the declared SHA-256 and marks the
/// file uploaded. Parts PUT straight to S3 (presigned URLs, CloudFront) are found through the
/// storage's part listing. For a single-part upload whose bytes bypassed the edge, checks the
/// stored object's size (and declared SHA-256) and marks it uploaded; 409 `not_arrived` when
/// there is no object yet.
#[utoipa::path(post, path = "/api/files/{fileId}/complete",
    params(("fileId" = String, Path, description = "File id")),
    request_body(content = Option<CompleteUpload>, description = "Optional: the parts' ETags to check, as S3's CompleteMultipartUpload takes them"),
    responses((status = 200, body = Completed), (status = 400, body = ErrorReply),
              (status = 404, body = ErrorReply), (status = 409, body = ErrorReply),
              (status = 413, body = ErrorReply), (status = 503, body = ErrorReply)),
    security(("bearer" = [])))]
pub async fn complete_upload(
    State(state): State<SharedState>,
    principal: Principal,
    FileId(file_id): FileId,
    OptionalJsonBody(body): OptionalJsonBody<CompleteUpload, MAX_COMPLETE_JSON_BYTES>,
) -> Result<Json<Completed>, ApiError> {
    let request = body.unwrap_or_default();
    let record = owned_record(&state, &principal, &file_id).await?;
    if record.status == Status::Pending && record.upload_id.is_none() {
        // A single-part upload whose bytes may have gone straight to the storage.
        return Ok(Json(crate::direct::complete_single(&state, &record).await?));
    }
    if record.status == Status::Uploaded && record.upload_id.is_none() {
        // Recorded from the storage's event before this call: its declared SHA-256 is checked
        // here, as it would have been had this call come first.
        crate::direct::check_marked(&state, &record).await?;
        return Err(already_uploaded());
    }
    let record = pending_multipart(&state, &principal, &file_id).await?;
    // The parts listed are the parts joined: no part PUT may store one meanwhile (nor run while
    // they are being joined), nor another completion run.
    let Some(completing) = crate::state::Receiving::claim_completion(&state, &record.object_key)
    else {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "in_progress",
            "a part of this upload is being received, or the upload is being completed; call again",
        );
        e.retry_after = Some(1);
        return Err(e);
    };
    let count = record.part_count().unwrap_or(0);
    let mut stored = match crate::direct::parts(&state, &record).await {
        Ok(parts) => parts,
        Err(e) => {
            return match assembled_before(&state, &record).await {
                Some(done) => done,
                None => Err(e.into()),
            }
        }
    };
    if let Some(listed) = &request.parts {
        let numbers: Vec<u32> = listed.iter().map(|p| p.part_number).collect();
        if numbers != (1..=count).collect::<Vec<_>>() {
            return Err(ApiError::bad_request(format!(
                "parts must list every part from 1 to {count} in ascending order"
            )));
        }
        for p in listed {
            let Some(etag) = &p.etag else { continue };
            let Some(have) = stored.iter_mut().find(|s| s.part_number == p.part_number) else {
                continue;
            };
            if have.etag.is_empty() {
                // Listed by a storage that gave no ETag (some S3-compatible servers): the one
                // the client got when it uploaded the part is the one to complete with.
                have.etag = etag.clone();
            } else if have.etag.trim_matches('"') != etag.trim_matches('"') {
                return Err(ApiError::bad_request(format!(
                    "part {} has ETag {} here, not the {etag} given; upload it again",
                    p.part_number, have.etag
                )));
            }
        }
    }
    for n in 1..=count {
        let expected = record.expected_part_size(n).unwrap_or(0);
        match stored.iter().find(|p| p.part_number == n) {
            None => {
                if let Some(done) = assembled_before(&state, &record).await {
                    return done;
                }
                return Err(ApiError::bad_request(format!(
                    "part {n} is missing; GET /api/files/{file_id}/parts for its URL"
                )));
            }
            Some(p) if p.size != expected => {
                return Err(ApiError::bad_request(format!(
                    "part {n} has {} bytes, expected {expected}; upload it again",
                    p.size
                )))
            }
            Some(_) => {}
        }
    }
    // Joining a large file takes long; a client (or proxy) that stops waiting drops this
    // handler. The join runs as a task of its own, holding the claim until it ends, so it is not
    // cut off halfway to start again from nothing: meanwhile a retry is told `in_progress`, and
    // after it `already_uploaded`.
    let joining = {
        let state = state.clone();
        tokio::spawn(
            async move {
                let _completing = completing;
                crate::edge::assemble(&state, &record, &stored).await
            }
            .in_current_span(),
        )
    };
    let done = joining
        .await
        .map_err(ApiError::internal)?
        .map_err(assemble_failure)?;
    Ok(Json(Completed::of(file_id, done)))
}

/// 409 `already_uploaded`.
fn already_uploaded() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "already_uploaded",
        "the upload is already complete",
    )
}

impl Completed {
    /// The answer for `file_id`, assembled as `done` says.
    fn of(file_id: String, done: crate::edge::Assembled) -> Self {
        Completed {
            success: true,
            file_id,
            size: done.size,
            sha256: done.sha256,
            etag: done.etag,
        }
    }
}

/// For a completion whose parts are not all there: when the object is stored already, an
/// earlier completion assembled it and could not record it (it answered 503, call again), and
/// the parts cannot be listed any more (S3 uses up a multipart upload when it joins it). The
/// object is then checked and recorded, and this is the answer. `None` when there is no object
/// (or it cannot be looked at): the missing parts are the answer.
async fn assembled_before(
    state: &SharedState,
    record: &FileRecord,
) -> Option<Result<Json<Completed>, ApiError>> {
    state.objects.head(&record.object_key).await.ok()?;
    Some(
        crate::edge::recover_assembled(state, record)
            .await
            .map_err(assemble_failure)
            .map(|done| Json(Completed::of(record.file_id.clone(), done))),
    )
}

fn assemble_failure(e: crate::edge::AssembleError) -> ApiError {
    use crate::edge::AssembleError;
    match e {
        AssembleError::Checksum => {
            ApiError::bad_request("the SHA-256 of the assembled file differs from the declared one")
        }
        AssembleError::Exists => already_uploaded(),
        AssembleError::Gone => {
            ApiError::not_found("the upload expired or was deleted while it was being completed")
        }
        AssembleError::Unavailable => ApiError::unavailable("recording an assembled upload"),
        AssembleError::Storage(e) => ApiError::internal(e),
    }
}

async fn owned_record(
    state: &SharedState,
    principal: &Principal,
    file_id: &str,
) -> Result<FileRecord, ApiError> {
    match state.meta.get(file_id).await? {
        Some(r) if r.owner == principal.0 && !r.is_expired(now_secs()) => Ok(r),
        _ => Err(ApiError::not_found("no such file")),
    }
}

/// Mint a download link for an uploaded file.
#[utoipa::path(get, path = "/api/files/download/{fileId}",
    params(("fileId" = String, Path, description = "File id")),
    responses((status = 200, body = DownloadLink), (status = 404, body = ErrorReply),
              (status = 409, body = ErrorReply), (status = 503, body = ErrorReply)),
    security(("bearer" = [])))]
pub async fn download_link(
    State(state): State<SharedState>,
    principal: Principal,
    FileId(file_id): FileId,
) -> Result<Json<DownloadLink>, ApiError> {
    let record = owned_record(&state, &principal, &file_id).await?;
    if record.status != Status::Uploaded {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_uploaded",
            "the file has not been uploaded yet; PUT it to its upload URL first",
        ));
    }
    let now = now_secs();
    let mut expires = secs_after(now, state.config.download_ttl);
    if let Some(ttl) = record.ttl {
        expires = expires.min(ttl);
    }
    let mode = links::mode_for(&state.config, &principal, Feature::Download);
    let download_url = links::download_url(&state, &record, mode, expires).await?;
    Ok(Json(DownloadLink {
        success: true,
        download_url,
        file_id,
        expires_at: rfc3339_secs(expires),
        url_mode: mode,
    }))
}

/// List the caller's files, newest first.
#[utoipa::path(get, path = "/api/files", params(ListParams),
    responses((status = 200, body = FileList), (status = 400, body = ErrorReply)),
    security(("bearer" = [])))]
pub async fn list_files(
    State(state): State<SharedState>,
    principal: Principal,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<FileList>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let page = state
        .meta
        .list(&principal.0, now_secs(), limit, params.cursor.as_deref())
        .await?;
    Ok(Json(FileList {
        success: true,
        files: page.records.iter().map(info).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One file of the caller's.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileReply {
    /// Always true.
    pub success: bool,
    /// The file.
    pub file: FileInfo,
}

/// Describe one file (name, size, SHA-256, status, expiry).
#[utoipa::path(get, path = "/api/files/{fileId}",
    params(("fileId" = String, Path, description = "File id")),
    responses((status = 200, body = FileReply), (status = 404, body = ErrorReply)),
    security(("bearer" = [])))]
pub async fn get_file(
    State(state): State<SharedState>,
    principal: Principal,
    FileId(file_id): FileId,
) -> Result<Json<FileReply>, ApiError> {
    let record = owned_record(&state, &principal, &file_id).await?;
    Ok(Json(FileReply {
        success: true,
        file: info(&record),
    }))
}

/// Delete a file: its object and its record.
#[utoipa::path(delete, path = "/api/files/{fileId}",
    params(("fileId" = String, Path, description = "File id")),
    responses((status = 200, body = Success), (status = 404, body = ErrorReply)),
    security(("bearer" = [])))]
pub async fn delete_file(
    State(state): State<SharedState>,
    principal: Principal,
    FileId(file_id): FileId,
) -> Result<Json<Success>, ApiError> {
    let record = owned_record(&state, &principal, &file_id).await?;
    // Decided once the record is expired: should the removal then fail (storage down), the
    // sweeper finishes it, and the client, which could not undo or redo it (a second DELETE finds
    // no file), is told it is done.
    crate::sweeper::remove_now(&state, &record).await?;
    Ok(Json(Success { success: true }))
}

/// Public settings: the public URL, TTLs, key pair id and size limit.
#[utoipa::path(get, path = "/api/config", responses((status = 200, body = PublicConfig)))]
pub async fn public_config(State(state): State<SharedState>) -> Json<PublicConfig> {
    let c = &state.config;
    Json(PublicConfig {
        success: true,
        public_url: c.public_origin().to_owned(),
        upload_ttl_seconds: c.upload_ttl.as_secs(),
        download_ttl_seconds: c.download_ttl.as_secs(),
        retention_seconds: c.retention.as_secs(),
        key_pair_id: state.keys.current().signer.key_pair_id().to_owned(),
        max_upload_bytes: c.effective_max_upload_bytes(),
        multipart_threshold: c.multipart_threshold,
        part_size: c.part_size,
        auth_required: state.auth.enabled() || !c.anonymous_when_unconfigured,
        url_modes: (&c.url_modes).into(),
    })
}

/// The OpenAPI document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "Keyhole API", description = "Mint CloudFront-format signed upload and download links on one domain."),
    paths(create_upload, list_parts, complete_upload, download_link, list_files, get_file, delete_file, public_config),
    components(schemas(FileReply, FileStatus, CreateUpload, UploadLink, PartLink, PartsStatus, PartInfo, CompleteUpload, CompletePart, Completed, DownloadLink, FileInfo, FileList, PublicConfig, Success, ErrorReply, ErrorBody, UrlMode, PublicUrlModes, PublicRollout)),
    modifiers(&BearerAuth, &CommonResponses)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The answers every file route may give besides its own: each takes a bearer token (when
/// tokens are configured), a checked Host (when they are not), a rate-limited principal, a
/// checked file id and the stores; those with a JSON body also check its size and type.
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorReply"))),
                )
                .build()
        };
        let common = [
            (
                "400",
                "`invalid_request`: a malformed file id, query or body",
            ),
            (
                "401",
                "`unauthorized`: no bearer token, or one that is not valid",
            ),
            (
                "403",
                "`host_not_allowed`: without tokens, only loopback hosts and the public URL's",
            ),
            ("429", "`rate_limited`: wait the seconds in `Retry-After`"),
            ("503", "a store or the signer is unavailable for now: retry"),
        ];
        let with_body = [
            ("413", "`payload_too_large`: the JSON body is too large"),
            (
                "415",
                "`unsupported_media_type`: the body is not `application/json`",
            ),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/api/files") {
                continue;
            }
            let operations = [item.get.as_mut(), item.post.as_mut(), item.delete.as_mut()];
            for operation in operations.into_iter().flatten() {
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                for (status, description) in
                    common.iter().chain(with_body.iter().filter(|_| has_body))
                {
                    responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// `GET /api/openapi.json`: built once (it answers anyone, and never changes while running).
pub async fn openapi() -> impl IntoResponse {
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        serde_json::to_string(&ApiDoc::openapi()).unwrap_or_else(|_| "{}".to_owned())
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{defaults, Config, Storage};

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    fn s3() -> Config {
        let mut c = Config::with_data_dir("unused");
        c.storage = Storage::S3 {
            bucket: "b".into(),
            prefix: String::new(),
            endpoint: None,
        };
        c
    }

    #[test]
    fn s3_uploads_are_limited_to_parts_of_64_mib() {
        let c = s3();
        assert_eq!(c.effective_max_upload_bytes(), 625 * GIB);
        // The largest size accepted needs parts of exactly 64 MiB; one byte more would need more.
        assert!(check_size(&c, 625 * GIB).is_ok());
        assert_eq!(
            part_size_for(625 * GIB, c.part_size),
            defaults::MAX_S3_PART_SIZE
        );
        assert!(part_size_for(625 * GIB + 1, c.part_size) > defaults::MAX_S3_PART_SIZE);
        let e = check_size(&c, 625 * GIB + 1).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.message.contains("with S3 storage"), "{}", e.message);
        assert!(e.message.contains("64 MiB"), "{}", e.message);
        assert!(e.message.contains("10000 parts"), "{}", e.message);
        // A smaller configured limit is the one that counts.
        let mut small = s3();
        small.max_upload_bytes = 10 * GIB;
        assert_eq!(small.effective_max_upload_bytes(), 10 * GIB);
        let e = check_size(&small, 10 * GIB + 1).unwrap_err();
        assert!(
            e.message.contains("limit of 10737418240 bytes"),
            "{}",
            e.message
        );
    }

    #[test]
    fn local_uploads_go_up_to_max_upload_bytes() {
        let c = Config::with_data_dir("unused");
        assert_eq!(c.effective_max_upload_bytes(), defaults::MAX_UPLOAD_BYTES);
        assert!(check_size(&c, defaults::MAX_UPLOAD_BYTES).is_ok());
        assert!(part_size_for(defaults::MAX_UPLOAD_BYTES, c.part_size) <= defaults::MAX_PART_SIZE);
        let e = check_size(&c, defaults::MAX_UPLOAD_BYTES + 1).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!e.message.contains("S3"), "{}", e.message);
    }
}
