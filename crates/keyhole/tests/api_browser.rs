//! What a web page can and cannot do with the API: the CORS headers a browser client needs, no
//! reach into a token-less server through DNS rebinding or cross-site form posts, and no file
//! names that display as something else.

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
    // The server keeps a client's own x-request-id; a page can send one only if the preflight
    // allows the header.
    let r = s
        .client
        .request(reqwest::Method::OPTIONS, s.url("/api/files"))
        .header("origin", APP)
        .header("access-control-request-method", "GET")
        .header(
            "access-control-request-headers",
            "authorization,x-request-id",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
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
}
