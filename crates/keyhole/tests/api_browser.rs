//! What a web page can and cannot do with the API: the CORS headers a browser client needs, no
//! reach into a token-less server through DNS rebinding or cross-site form posts, no file
//! names that display as something else; and the security headers of the page at `/`.

mod common;

use common::TestServer;
use serde_json::{json, Value};

#[tokio::test]
async fn filenames_with_bidirectional_controls_are_refused() {
    let s = TestServer::start().await;
    for c in [
        '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
        '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
    ] {
        let name = format!("invoice{c}fdp.exe");
        let (status, v) = s
            .create_upload(json!({"filename": name, "contentType": "application/pdf"}))
            .await;
        assert_eq!(status, 400, "U+{:04X}: {v}", c as u32);
        assert_eq!(v["error"]["code"], "invalid_request");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("bidirectional"), "{message}");
    }
    // Other format characters stay allowed: the zero-width joiner of emoji sequences, a soft
    // hyphen.
    for name in ["\u{1F469}\u{200D}\u{1F4BB} notes.txt", "co\u{00AD}op.pdf"] {
        let (status, v) = s
            .create_upload(json!({"filename": name, "contentType": "text/plain"}))
            .await;
        assert_eq!(status, 200, "{name:?}: {v}");
        let id = v["fileId"].as_str().unwrap();
        let (status, file) = s.get_json_as(&format!("/api/files/{id}"), None).await;
        assert_eq!(status, 200, "{file}");
        assert_eq!(file["file"]["filename"], Value::from(name));
    }
}

const APP: &str = "https://app.example.com";

#[tokio::test]
async fn cors_lets_pages_send_request_ids_and_read_retry_after() {
    let s = TestServer::start_with(|c| {
        c.cors_origins = vec![APP.into()];
        c.rate_limit = keyhole::config::RateLimit {
            burst: 1,
            per_second: 1,
        };
    })
    .await;
    // The headers a preflight for a GET of `path` sending `headers` allows, lower-cased.
    let server = &s;
    let allowed_for = move |path: &'static str, headers: &'static str| async move {
        let r = server
            .client
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("origin", APP)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", headers)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
    };
    // The server keeps a client's own x-request-id; a page can send one only if the preflight
    // allows the header.
    let allowed = allowed_for("/api/files", "authorization,x-request-id").await;
    assert!(allowed.contains("x-request-id"), "{allowed}");
    assert!(allowed.contains("authorization"), "{allowed}");

    let list = || {
        s.client
            .get(s.url("/api/files"))
            .header("origin", APP)
            .header("x-request-id", "page-1")
            .send()
    };
    assert_eq!(list().await.unwrap().status(), 200);
    let r = list().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["x-request-id"], "page-1");
    // A page reads Retry-After (and the request id) only when they are exposed.
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
    assert!(exposed.contains("x-request-id"), "{exposed}");
    // Downloads: every conditional header the edge honours may be sent, and a resuming page
    // can see that ranges are accepted.
    let allowed = allowed_for(
        "/files/x",
        "range,if-range,if-match,if-none-match,if-modified-since,if-unmodified-since",
    )
    .await;
    for h in [
        "if-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
    ] {
        assert!(allowed.contains(h), "{h} not in {allowed}");
    }
    assert!(exposed.contains("accept-ranges"), "{exposed}");
}

/// `GET path` with the given `Host` header.
async fn get_with_host(s: &TestServer, path: &str, host: &str) -> (u16, Value) {
    let r = s
        .client
        .get(s.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn without_tokens_the_api_answers_only_loopback_and_public_hosts() {
    let s = TestServer::start().await;
    let id = s.upload("kept.txt", b"still here".to_vec()).await;
    let port = s.running().addr.port();

    // A page whose name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name.
    for host in [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
    ] {
        for path in ["/api/files", "/api/config", &format!("/api/files/{id}")] {
            let (status, v) = get_with_host(&s, path, host).await;
            assert_eq!(status, 403, "{host} {path}: {v}");
            assert_eq!(v["success"], false);
            assert_eq!(v["error"]["code"], "host_not_allowed");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains(&format!("got Host: {host}")), "{message}");
            assert!(message.contains("loopback"), "{message}");
        }
        let r = s
            .client
            .delete(s.url(&format!("/api/files/{id}")))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = s
            .client
            .post(s.url("/api/files/upload"))
            .header("host", host)
            .json(&json!({"filename": "x.txt", "contentType": "text/plain"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    assert_eq!(s.list_all().await.len(), 1, "nothing created or deleted");

    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        common::PUBLIC.trim_start_matches("https://").to_owned(),
    ] {
        let (status, v) = get_with_host(&s, "/api/files", &host).await;
        assert_eq!(status, 200, "{host}: {v}");
        assert_eq!(v["files"][0]["fileId"], id.as_str());
    }

    // The edge checks signatures, not names; health, metrics and the page are not the API.
    let (status, link) = s.download_link(&id).await;
    assert_eq!(status, 200, "{link}");
    let r = s
        .client
        .get(s.local(link["downloadUrl"].as_str().unwrap()))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"still here");
    for path in ["/", "/healthz", "/readyz", "/metrics"] {
        let r = s
            .client
            .get(s.url(path))
            .header("host", "evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn with_tokens_any_host_may_call_the_api() {
    let (token, sha256) = keyhole::auth::generate_token().unwrap();
    let s = TestServer::start_with(|c| {
        c.tokens = vec![keyhole::config::TokenEntry {
            principal: "alice".into(),
            sha256,
        }]
    })
    .await;
    let r = s
        .client
        .get(s.url("/api/files"))
        .header("host", "files.customer.example")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Without a token it is the token that is missing, whatever the name.
    let (status, v) = get_with_host(&s, "/api/files", "evil.example").await;
    assert_eq!(status, 401, "{v}");
    let (status, _) = get_with_host(&s, "/api/config", "evil.example").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn json_bodies_need_a_json_content_type() {
    let s = TestServer::start().await;
    // What a cross-site form or fetch can send without a CORS preflight: no type, a form type, or
    // text/plain, with a JSON-looking body.
    let body = r#"{"filename":"planted.exe","contentType":"application/octet-stream"}"#;
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut req = s.client.post(s.url("/api/files/upload")).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 415, "{ct:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unsupported_media_type");
        assert_eq!(v["error"]["message"], "send the body as application/json");
    }
    assert!(s.list_all().await.is_empty(), "no record was created");
    let r = s
        .client
        .post(s.url("/api/files/upload"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // An optional body may still be left out, type or not.
    let link = s.upload_link("later.txt", Some(3), None).await;
    let id = link["fileId"].as_str().unwrap();
    let complete = format!("/api/files/{id}/complete");
    let r = s.client.post(s.url(&complete)).send().await.unwrap();
    assert_eq!(r.status(), 409, "not_arrived, not 415");
    let r = s
        .client
        .post(s.url(&complete))
        .body(r#"{"parts":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

/// The `Content-Security-Policy` of the page at `/` on `s`.
async fn page_policy(s: &TestServer) -> String {
    let r = s.client.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_page_comes_with_its_security_headers() {
    let s = TestServer::start().await;
    let r = s.client.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    // No browser guesses another type for it (or for anything it is mistaken for).
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let csp = headers["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'sha256-",
        "style-src 'sha256-",
        &format!("connect-src 'self' {};", common::PUBLIC),
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ] {
        assert!(csp.contains(part), "{part} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let body = r.text().await.unwrap();
    assert!(body.starts_with("<!doctype html>"), "{}", &body[..40]);
}

#[tokio::test]
async fn the_page_may_put_to_the_bucket_when_upload_links_can_be_presigned() {
    use keyhole::config::Storage;
    use keyhole::links::UrlMode;
    let s3 = |endpoint: Option<&str>| Storage::S3 {
        bucket: "keyhole-page".into(),
        prefix: "p".into(),
        endpoint: endpoint.map(str::to_owned),
    };

    // An S3-compatible endpoint (never contacted: presigning is local) is where s3-presigned
    // upload links point.
    let s = TestServer::start_with(|c| {
        c.storage = s3(Some("http://127.0.0.1:9"));
        c.url_modes.upload.pins = vec![("late".into(), UrlMode::S3Presigned)];
    })
    .await;
    let csp = page_policy(&s).await;
    assert!(
        csp.contains(&format!(
            "connect-src 'self' {} http://127.0.0.1:9;",
            common::PUBLIC
        )),
        "{csp}"
    );

    // Only downloads presigned (navigations, which connect-src does not govern), or no
    // presigning at all: nothing more than the public URL.
    for adjust in [
        (|c: &mut keyhole::config::Config| c.url_modes.download.cloudfront_percent = 0)
            as fn(&mut keyhole::config::Config),
        |_| {},
    ] {
        let s = TestServer::start_with(|c| {
            c.storage = s3(Some("http://127.0.0.1:9"));
            adjust(c);
        })
        .await;
        let csp = page_policy(&s).await;
        assert!(
            csp.contains(&format!("connect-src 'self' {};", common::PUBLIC)),
            "{csp}"
        );
    }

    // AWS itself: the bucket's own host (unless the environment points the SDK elsewhere).
    if ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    {
        eprintln!("SKIPPED: the bucket's AWS host (AWS_ENDPOINT_URL* is set)");
        return;
    }
    let s = TestServer::start_with(|c| {
        c.storage = s3(None);
        c.url_modes.upload.cloudfront_percent = 50;
    })
    .await;
    let csp = page_policy(&s).await;
    let connect = csp
        .split("; ")
        .find(|d| d.starts_with("connect-src "))
        .unwrap();
    let sources: Vec<&str> = connect.split(' ').skip(1).collect();
    assert_eq!(sources.len(), 3, "{csp}");
    assert!(
        sources[2].starts_with("https://keyhole-page.s3.")
            && sources[2].ends_with(".amazonaws.com"),
        "{csp}"
    );
}
