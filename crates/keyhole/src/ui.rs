//! The upload and download page served at `/`: one self-contained HTML file (no external assets,
//! works offline), embedded in the binary at build time from `web/index.html`.

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use base64::Engine;

use crate::state::SharedState;

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

/// The page's Content-Security-Policy: its own inline code only, network requests only to this
/// server and to the public URL (where uploads go), no framing, no plugins, no base or form tricks.
fn content_security_policy(public_url: &str) -> String {
    let (scripts, styles) = &*INLINE_SOURCES;
    // scheme://host[:port] of the public URL; a path would narrow the source to that one path.
    let origin = match public_url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            format!(" {scheme}://{host}")
        }
        None => String::new(),
    };
    format!(
        "default-src 'none'; script-src {scripts}; style-src {styles}; img-src data:; \
         connect-src 'self'{origin}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// `GET /`
pub async fn index(State(state): State<SharedState>) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let csp = HeaderValue::from_str(&content_security_policy(state.config.public_origin()))
        .or_else(|_| HeaderValue::from_str(&content_security_policy("")))
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
        let csp = content_security_policy("https://files.example.com/base/");
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
