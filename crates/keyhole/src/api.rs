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
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::{AuthError, Principal};
use crate::http::{ApiError, JsonBody};
use crate::ids;
use crate::state::{now_millis, now_secs, SharedState};
use crate::store::{FileRecord, Status};
use crate::telemetry::Metrics;

impl FromRequestParts<SharedState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let principal = state.auth.authenticate(header).map_err(|e| {
            let message = match e {
                AuthError::Missing => "send Authorization: Bearer <token>",
                AuthError::Invalid => "the bearer token is not valid",
            };
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        })?;
        if let Err(wait) = state.limiter.check(&principal.0) {
            state.metrics.rate_limited.inc();
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; retry after the number of seconds in Retry-After",
            );
            e.retry_after = Some(wait.as_secs().max(1));
            return Err(e);
        }
        Ok(principal)
    }
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
}

/// An upload link.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadLink {
    /// Always true.
    pub success: bool,
    /// Signed URL to PUT the bytes to.
    pub upload_url: String,
    /// The new file's id.
    pub file_id: String,
    /// Where the bytes will be stored.
    pub object_key: String,
    /// Always `PUT`.
    pub method: &'static str,
    /// When the link expires (RFC 3339).
    pub expires_at: String,
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
    /// `pending` or `uploaded`.
    pub status: String,
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
    /// Largest accepted upload in bytes.
    pub max_upload_bytes: u64,
    /// Whether the API needs a bearer token.
    pub auth_required: bool,
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
        status: r.status.as_str().to_owned(),
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
              (status = 429, body = ErrorReply)),
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
    if !ids::is_valid_content_type(&req.content_type) {
        return Err(ApiError::bad_request(
            "contentType must be a MIME type such as application/pdf",
        ));
    }
    let max = state.config.max_upload_bytes;
    if let Some(size) = req.size {
        if size > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("size {size} exceeds the limit of {max} bytes"),
            ));
        }
    }
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
    let now = now_secs();
    let expires = now + state.config.upload_ttl.as_secs() as i64;
    let file_id = ids::new_file_id(&req.filename);
    let record = FileRecord {
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
        ttl: Some(expires + state.config.pending_grace.as_secs() as i64),
    };
    let url = format!("{}/uploads/{}", state.config.public_origin(), file_id);
    let policy = Policy::canned(expires as u64).map_err(ApiError::internal)?;
    let upload_url = state
        .signer
        .sign_url(&url, &policy)
        .map_err(ApiError::internal)?;
    state.meta.create(&record).await?;
    Metrics::count(&state.metrics.links, "upload");
    Ok(Json(UploadLink {
        success: true,
        upload_url,
        object_key: record.object_key,
        file_id,
        method: "PUT",
        expires_at: rfc3339_secs(expires),
    }))
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
              (status = 409, body = ErrorReply)),
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
    let mut expires = now + state.config.download_ttl.as_secs() as i64;
    if let Some(ttl) = record.ttl {
        expires = expires.min(ttl);
    }
    let url = format!("{}/files/{}", state.config.public_origin(), file_id);
    let policy = Policy::canned(expires as u64).map_err(ApiError::internal)?;
    let download_url = state
        .signer
        .sign_url(&url, &policy)
        .map_err(ApiError::internal)?;
    Metrics::count(&state.metrics.links, "download");
    Ok(Json(DownloadLink {
        success: true,
        download_url,
        file_id,
        expires_at: rfc3339_secs(expires),
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
    // Expire first: from this instant the file is gone for every reader and an upload in flight
    // cannot complete; then remove object and record the way the sweeper does.
    let now = now_secs();
    state.meta.expire(&file_id, now).await?;
    crate::sweeper::remove(&state, &record, now)
        .await
        .map_err(ApiError::internal)?;
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
        key_pair_id: state.signer.key_pair_id().to_owned(),
        max_upload_bytes: c.max_upload_bytes,
        auth_required: state.auth.enabled(),
    })
}

/// The OpenAPI document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "Keyhole API", description = "Mint CloudFront-format signed upload and download links on one domain."),
    paths(create_upload, download_link, list_files, delete_file, public_config),
    components(schemas(CreateUpload, UploadLink, DownloadLink, FileInfo, FileList, PublicConfig, Success, ErrorReply, ErrorBody)),
    modifiers(&BearerAuth)
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

/// `GET /api/openapi.json`
pub async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
