//! The upload and download page served at `/`: one self-contained HTML file (no external assets,
//! works offline), embedded in the binary at build time from `web/index.html`.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use base64::Engine;

use crate::config::Storage;
use crate::state::SharedState;
use crate::store::objects::PresignOp;

/// The page.
pub const INDEX_HTML: &str = include_str!("../../../web/index.html");

/// CSP `'sha256-…'` sources for the page's inline `<script>` and `<style>` blocks, so the policy
/// allows exactly the page's own code and no other inline script or style (no `'unsafe-inline'`).
static INLINE_SOURCES: LazyLock<(String, String)> = LazyLock::new(|| {
    (
        inline_hashes(INDEX_HTML, "script"),
        inline_hashes(INDEX_HTML, "style"),
    )
});

/// The hash sources of every `<tag>…</tag>` block (attribute-less tags, as the page writes them).
fn inline_hashes(html: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut sources = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        // Browsers hash the text after HTML's newline normalisation.
        let text = body[..end].replace("\r\n", "\n");
        let digest = openssl::sha::sha256(text.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        sources.push(format!("'sha256-{b64}'"));
        rest = &body[end + close.len()..];
    }
    sources.join(" ")
}

/// `scheme://host[:port]` of a URL (a path would narrow a CSP source to that one path).
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    (!scheme.is_empty() && !host.is_empty()).then(|| format!("{scheme}://{host}"))
}

/// The CSP source that lets the page connect to the origin of `url`: `scheme://host[:port]`, or
/// only `scheme:` when the host is an IPv6 literal (`http://[::1]:8080`).
///
/// CSP's host-source grammar has no IPv6 literals (host characters are letters, digits and `-`),
/// and browsers drop a source that names one: the page could not send its uploads there at all.
/// The scheme-source lets `connect-src` reach any host over that scheme instead. That is
/// acceptable: `script-src` admits only the page's own code (by hash), so `connect-src` only
/// limits where script that got in regardless could send data, and the looser source is used
/// only by servers whose public URL or storage is named by an IPv6 address (a private network
/// or a test, as a rule), where the alternative is a page that cannot upload.
fn csp_source(url: &str) -> Option<String> {
    let origin = origin_of(url)?;
    let (scheme, authority) = origin.split_once("://")?;
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    Some(if host.starts_with('[') {
        format!("{scheme}:")
    } else {
        origin
    })
}

/// The page's Content-Security-Policy: its own inline code only, network requests only to this
/// server, to the public URL (where uploads go) and to `storage` (where `s3-presigned` upload
/// links go), no framing, no plugins, no base or form tricks.
fn content_security_policy(public_url: &str, storage: Option<&str>) -> String {
    let (scripts, styles) = &*INLINE_SOURCES;
    let mut sources = vec![String::from("'self'")];
    for source in [csp_source(public_url), storage.and_then(csp_source)]
        .into_iter()
        .flatten()
    {
        if !sources.contains(&source) {
            sources.push(source);
        }
    }
    let connect = sources.join(" ");
    format!(
        "default-src 'none'; script-src {scripts}; style-src {styles}; img-src data:; \
         connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// Where the bucket's presigned URLs point when AWS's SDK has no other endpoint: virtual-hosted
/// for names that fit in a host name, path-style for names with dots.
fn aws_bucket_origin(bucket: &str, region: &str) -> String {
    if bucket.contains('.') {
        format!("https://s3.{region}.amazonaws.com")
    } else {
        format!("https://{bucket}.s3.{region}.amazonaws.com")
    }
}

/// The origin `s3-presigned` upload links point at, when a principal can get them: the page PUTs
/// there. Read from a link the storage presigns (no request is sent), so it follows whatever
/// decides the SDK's endpoint (an S3-compatible endpoint, the region, `AWS_ENDPOINT_URL_S3`,
/// FIPS or dual-stack settings); when presigning fails (no credentials yet), from the settings.
/// Downloads are navigations, which `connect-src` does not govern. A definite answer (a link
/// presigned, or none needed) is kept for the process's life, so page loads do not presign;
/// the fallback is worked out again until presigning succeeds.
async fn presigned_upload_origin(state: &SharedState) -> Option<String> {
    if let Some(known) = state.page_upload_origin.get() {
        return known.clone();
    }
    let (origin, definite) = find_presigned_upload_origin(state).await;
    if definite {
        let _ = state.page_upload_origin.set(origin.clone());
    }
    origin
}

async fn find_presigned_upload_origin(state: &SharedState) -> (Option<String>, bool) {
    let Storage::S3 {
        bucket, endpoint, ..
    } = &state.config.storage
    else {
        return (None, true);
    };
    if !state.config.url_modes.upload.may_presign() {
        return (None, true);
    }
    let probe = state.objects.presign(
        "uploads/page",
        &PresignOp::Put {
            content_length: None,
        },
        SystemTime::now(),
        Duration::from_secs(60),
    );
    if let Ok(Ok(Some(url))) = tokio::time::timeout(Duration::from_secs(2), probe).await {
        if let Some(origin) = origin_of(&url) {
            return (Some(origin), true);
        }
    }
    let fallback = match endpoint {
        Some(endpoint) => origin_of(endpoint),
        None => {
            let settings = crate::store::s3::S3Settings {
                bucket: bucket.clone(),
                prefix: String::new(),
                endpoint: None,
                region: None,
            };
            Some(aws_bucket_origin(bucket, &settings.region_or_default()))
        }
    };
    (fallback, false)
}

/// `GET /`
pub async fn index(State(state): State<SharedState>) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let storage = presigned_upload_origin(&state).await;
    let csp = HeaderValue::from_str(&content_security_policy(
        state.config.public_origin(),
        storage.as_deref(),
    ))
    .or_else(|_| HeaderValue::from_str(&content_security_policy("", None)))
    .unwrap_or(HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    (headers, INDEX_HTML)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_allows_exactly_the_page_inline_code() {
        let csp = content_security_policy("https://files.example.com/base/", None);
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(
            INLINE_SOURCES.0.matches("'sha256-").count(),
            1,
            "one <script>"
        );
        assert_eq!(
            INLINE_SOURCES.1.matches("'sha256-").count(),
            1,
            "one <style>"
        );
        assert!(
            csp.contains("connect-src 'self' https://files.example.com;"),
            "{csp}"
        );
        assert!(HeaderValue::from_str(&csp).is_ok());
    }

    #[test]
    fn policy_allows_the_bucket_presigned_uploads_go_to() {
        let csp = content_security_policy(
            "https://files.example.com",
            Some("https://media.s3.eu-west-1.amazonaws.com/prefix/uploads/x?X-Amz-Date=1"),
        );
        assert!(
            csp.contains(
                "connect-src 'self' https://files.example.com \
                 https://media.s3.eu-west-1.amazonaws.com;"
            ),
            "{csp}"
        );
        assert_eq!(
            aws_bucket_origin("media", "eu-west-1"),
            "https://media.s3.eu-west-1.amazonaws.com"
        );
        // Dotted names do not fit a wildcard certificate: the SDK uses path-style URLs.
        assert_eq!(
            aws_bucket_origin("media.example.com", "us-east-1"),
            "https://s3.us-east-1.amazonaws.com"
        );
        assert_eq!(origin_of("not a url"), None);
    }

    #[test]
    fn policy_names_ipv6_literal_origins_by_scheme() {
        // `http://[::1]:8080` is no valid host-source: browsers would ignore it and block uploads.
        let csp =
            content_security_policy("http://[::1]:8080/", Some("http://[fd00::1]:9000/b/k?x=1"));
        assert!(csp.contains("connect-src 'self' http:;"), "{csp}");
        let csp = content_security_policy(
            "https://files.example.com",
            Some("http://[fd00::1]:9000/bucket/uploads/x"),
        );
        assert!(
            csp.contains("connect-src 'self' https://files.example.com http:;"),
            "{csp}"
        );
        let csp = content_security_policy("https://[2001:db8::1]", None);
        assert!(csp.contains("connect-src 'self' https:;"), "{csp}");
        assert!(!csp.contains('['), "{csp}");
        assert!(HeaderValue::from_str(&csp).is_ok());
    }

    #[test]
    fn hashes_follow_the_csp_algorithm() {
        // sha256 of "alert(1)" in base64, as browsers compute it for <script>alert(1)</script>.
        assert_eq!(
            inline_hashes("<p><script>alert(1)</script>", "script"),
            "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"
        );
    }

    #[test]
    fn page_has_nothing_the_policy_would_block() {
        // Inline handlers, style attributes and external resources would be refused by the CSP.
        let html = INDEX_HTML.to_ascii_lowercase();
        for banned in [
            " onclick=",
            " onload=",
            " onerror=",
            " style=\"",
            "<script src",
            "<link rel=\"stylesheet",
        ] {
            assert!(!html.contains(banned), "web/index.html contains {banned}");
        }
        assert!(
            !html.contains("innerhtml"),
            "web/index.html must build the DOM with textContent"
        );
    }
}
