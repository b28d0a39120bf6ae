//! End-to-end behaviour of the file API and the edge against a real server.

mod common;

use common::{fed_body, now, pseudo_random, sha256_hex, TestServer, PUBLIC};
use keyhole_sign::{KeyAlgorithm, Policy, PrivateKey, Signer};
use serde_json::json;

#[tokio::test]
async fn upload_then_download_is_byte_identical_and_links_carry_the_public_url() {
    let s = TestServer::start().await;
    let bytes = pseudo_random(300_000, 1);
    let link = s
        .upload_link(
            "report 2024.pdf",
            Some(bytes.len() as u64),
            Some(&sha256_hex(&bytes)),
        )
        .await;
    assert_eq!(link["success"], true);
    assert_eq!(link["method"], "PUT");
    let upload_url = link["uploadUrl"].as_str().unwrap();
    let file_id = link["fileId"].as_str().unwrap();
    assert!(upload_url.starts_with(&format!("{PUBLIC}/uploads/{file_id}?Expires=")));
    assert!(file_id.ends_with("_report-2024.pdf"));
    assert_eq!(link["objectKey"], format!("uploads/{file_id}"));

    let r = s.put(upload_url, bytes.clone()).await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", sha256_hex(&bytes)));

    let (status, dl) = s.download_link(file_id).await;
    assert_eq!(status, 200);
    let url = dl["downloadUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("{PUBLIC}/files/{file_id}?Expires=")));
    let r = s.client.get(s.local(url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("filename*=UTF-8''report%202024.pdf"));
    assert!(r.headers().contains_key("last-modified"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'none'; sandbox"
    );
    let got = r.bytes().await.unwrap();
    assert_eq!(sha256_hex(&got), sha256_hex(&bytes));

    // The config endpoint reports the same public URL and the key pair id in the links.
    let cfg: serde_json::Value = s.get_json("/api/config").await;
    assert_eq!(cfg["publicUrl"], PUBLIC);
    assert!(url.ends_with(&format!(
        "Key-Pair-Id={}",
        cfg["keyPairId"].as_str().unwrap()
    )));
    assert_eq!(cfg["uploadTtlSeconds"], 900);
    assert_eq!(cfg["downloadTtlSeconds"], 3600);
}

#[tokio::test]
async fn ranges_conditional_requests_and_head() {
    let s = TestServer::start().await;
    let bytes = pseudo_random(10_000, 2);
    let id = s.upload("data.bin", bytes.clone()).await;
    let (_, dl) = s.download_link(&id).await;
    let url = s.local(dl["downloadUrl"].as_str().unwrap());

    let r = s
        .client
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[100..200]);

    let r = s
        .client
        .get(&url)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &bytes[9990..]);

    let r = s
        .client
        .get(&url)
        .header("range", "bytes=20000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10000");

    let head = s.client.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "10000");
    let etag = head.headers()["etag"].clone();

    let r = s
        .client
        .get(&url)
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // A 304 carries the validators, not the representation's headers.
    assert!(r.headers().contains_key("last-modified"));
    assert!(!r.headers().contains_key("content-disposition"));
    // A HEAD's 304 says the length a 200 would have, or none; never 0.
    let r = s
        .client
        .head(&url)
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["content-length"], "10000");
    // If-Range with the file's own date serves the range; with another date, the whole file.
    let modified = head.headers()["last-modified"].to_str().unwrap().to_owned();
    for (since, status) in [
        (modified.as_str(), 206),
        ("Sat, 01 Jan 2000 00:00:00 GMT", 200),
    ] {
        let r = s
            .client
            .get(&url)
            .header("range", "bytes=0-9")
            .header("if-range", since)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "If-Range: {since}");
    }
    // If-Range with a stale validator serves the whole file.
    let r = s
        .client
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A last position or suffix length past any file means the end / the whole file.
    for range in [
        "bytes=-99999999999999999999",
        "bytes=0-99999999999999999999",
    ] {
        let r = s
            .client
            .get(&url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(r.headers()["content-range"], "bytes 0-9999/10000");
        assert_eq!(r.bytes().await.unwrap(), bytes);
    }

    // If-Match and If-Unmodified-Since (412 when they fail), If-Modified-Since (304).
    let last_modified = head.headers()["last-modified"].to_str().unwrap().to_owned();
    let status = |pairs: Vec<(&'static str, String)>| {
        let mut req = s.client.get(&url);
        for (k, v) in pairs {
            req = req.header(k, v);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let etag = etag.to_str().unwrap().to_owned();
    assert_eq!(status(vec![("if-match", etag.clone())]).await, 200);
    assert_eq!(status(vec![("if-match", "\"other\"".into())]).await, 412);
    assert_eq!(
        status(vec![("if-unmodified-since", last_modified.clone())]).await,
        200
    );
    assert_eq!(
        status(vec![(
            "if-unmodified-since",
            "Sat, 01 Jan 2000 00:00:00 GMT".into()
        )])
        .await,
        412
    );
    assert_eq!(
        status(vec![("if-modified-since", last_modified)]).await,
        304
    );
    assert_eq!(
        status(vec![(
            "if-modified-since",
            "Sat, 01 Jan 2000 00:00:00 GMT".into()
        )])
        .await,
        200
    );
}

#[tokio::test]
async fn hundred_megabyte_file_round_trips_in_one_put() {
    // Above the default multipart threshold: raise it so this exercises a single 100 MB PUT.
    let s = TestServer::start_with(|c| c.multipart_threshold = 1 << 30).await;
    let bytes = pseudo_random(100 * 1024 * 1024, 3);
    let sum = sha256_hex(&bytes);
    let link = s
        .upload_link("big.bin", Some(bytes.len() as u64), Some(&sum))
        .await;
    let r = s.put(link["uploadUrl"].as_str().unwrap(), bytes).await;
    assert_eq!(r.status(), 200);
    let got = s.download(link["fileId"].as_str().unwrap()).await;
    assert_eq!(got.len(), 100 * 1024 * 1024);
    assert_eq!(sha256_hex(&got), sum);
}

#[tokio::test]
async fn twenty_concurrent_uploads_list_and_delete() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let bytes = pseudo_random(200_000 + i as usize * 1000, 100 + i);
            let id = s.upload(&format!("file-{i}.bin"), bytes.clone()).await;
            (id, bytes)
        }));
    }
    let mut uploaded = Vec::new();
    for t in tasks {
        uploaded.push(t.await.unwrap());
    }
    let listed = s.list_all().await;
    assert_eq!(listed.len(), 20);
    for (id, bytes) in &uploaded {
        let entry = listed
            .iter()
            .find(|f| f["fileId"] == id.as_str())
            .expect("listed");
        assert_eq!(entry["status"], "uploaded");
        assert_eq!(entry["size"], bytes.len() as u64);
        assert_eq!(entry["sha256"], sha256_hex(bytes));
        assert_eq!(s.download(id).await, *bytes);
    }
    // Newest first.
    let created: Vec<&str> = listed
        .iter()
        .map(|f| f["createdAt"].as_str().unwrap())
        .collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted);

    let (victim, bytes) = &uploaded[0];
    let one: serde_json::Value = s.get_json(&format!("/api/files/{victim}")).await;
    assert_eq!(one["file"]["sha256"], sha256_hex(bytes));
    assert_eq!(one["file"]["filename"], "file-0.bin");
    let (_, dl) = s.download_link(victim).await;
    let r = s.delete_file(victim).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"success": true})
    );
    assert!(!s.object_path(victim).exists(), "object removed");
    assert_eq!(s.list_all().await.len(), 19);
    let (status, _) = s.download_link(victim).await;
    assert_eq!(status, 404);
    // A download link minted before the delete no longer serves anything.
    let r = s
        .client
        .get(s.local(dl["downloadUrl"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s.delete_file(victim).await;
    assert_eq!(r.status(), 404);
}

async fn xml_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    let code = body
        .split("<Code>")
        .nth(1)
        .and_then(|s| s.split("</Code>").next())
        .unwrap_or("")
        .to_owned();
    (status, code)
}

#[tokio::test]
async fn signature_refusals_follow_cloudfront() {
    let s = TestServer::start().await;
    let id = s.upload("a.txt", b"hello".to_vec()).await;
    let path = format!("/files/{id}");

    // Expired.
    let expired = s.sign(&path, now() - 10);
    let (status, code) = xml_code(s.client.get(s.local(&expired)).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "AccessDenied"));

    // Tampered: another file's path with this signature, and a flipped signature character.
    let good = s.sign(&path, now() + 600);
    let other = good.replace(&id, &format!("{}x", &id));
    let (status, _) = xml_code(s.client.get(s.local(&other)).send().await.unwrap()).await;
    assert_eq!(status, 403);
    let sig_at = good.find("Signature=").unwrap() + "Signature=".len() + 5;
    let mut tampered = good.clone().into_bytes();
    tampered[sig_at] = if tampered[sig_at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let (status, code) = xml_code(s.client.get(s.local(&tampered)).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "AccessDenied"));
    let r = s.client.get(s.local(&good)).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Unknown key id: a valid signature by a key the server does not trust.
    let stranger = Signer::new(
        "KUNKNOWN",
        PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap(),
    )
    .unwrap();
    let foreign = stranger
        .sign_url(
            &format!("{PUBLIC}{path}"),
            &Policy::canned(now() + 600).unwrap(),
        )
        .unwrap();
    let (status, code) = xml_code(s.client.get(s.local(&foreign)).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "InvalidKey"));

    // No signature at all.
    let (status, code) = xml_code(s.client.get(s.url(&path)).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "MissingKey"));

    // Signed cookies work in place of URL parameters.
    let cookies = s
        .signer()
        .sign_cookies(
            &format!("{PUBLIC}{path}"),
            &Policy::canned(now() + 600).unwrap(),
        )
        .unwrap();
    let r = s
        .client
        .get(s.url(&path))
        .header("cookie", cookies.to_cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Every refusal is counted by reason.
    let metrics = s.metrics().await;
    for reason in ["expired", "bad_signature", "unknown_key", "no_signature"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("keyhole_edge_rejections_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .unwrap_or_else(|| panic!("no metric for {reason}"));
        assert!(!line.ends_with(" 0"), "{line}");
    }
}

#[tokio::test]
async fn method_binding_and_write_once() {
    let s = TestServer::start().await;
    let body = b"first".to_vec();
    let link = s.upload_link("w.txt", None, None).await;
    let upload_url = link["uploadUrl"].as_str().unwrap().to_owned();
    let id = link["fileId"].as_str().unwrap().to_owned();

    // An upload link cannot be used to read.
    let r = s.client.get(s.local(&upload_url)).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(s.put(&upload_url, body.clone()).await.status(), 200);
    // A second PUT on a still-valid upload link changes nothing.
    let r = s.put(&upload_url, b"second".to_vec()).await;
    assert_eq!(r.status(), 409);
    assert_eq!(s.download(&id).await, body);

    // A download link cannot be used to write, not even by changing the path.
    let (_, dl) = s.download_link(&id).await;
    let download_url = dl["downloadUrl"].as_str().unwrap();
    let r = s
        .client
        .put(s.local(download_url))
        .body("evil")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let as_upload = download_url.replacen("/files/", "/uploads/", 1);
    let r = s.put(&as_upload, b"evil".to_vec()).await;
    assert_eq!(r.status(), 403);
    assert_eq!(s.download(&id).await, body);
}

#[tokio::test]
async fn oversize_and_wrong_checksum_keep_nothing() {
    let s = TestServer::start_with(|c| c.max_upload_bytes = 1000).await;
    // Declared too large: refused when the link is requested.
    let (status, v) = s
        .create_upload(json!({"filename": "x", "contentType": "text/plain", "size": 1001}))
        .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large");

    // Undeclared size, body over the limit: 413 while streaming, nothing stored.
    let link = s.upload_link("big.bin", None, None).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let stream = futures_util::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; 400]))),
    );
    let r = s
        .put(
            link["uploadUrl"].as_str().unwrap(),
            reqwest::Body::wrap_stream(stream),
        )
        .await;
    assert_eq!(r.status(), 413);
    assert!(!s.object_path(&id).exists());
    assert_eq!(s.staged(), 0);
    // The link is still usable for a body within the limit.
    let r = s
        .put(link["uploadUrl"].as_str().unwrap(), vec![1u8; 10])
        .await;
    assert_eq!(r.status(), 200);

    // Declared size, shorter body.
    let link = s.upload_link("short.bin", Some(100), None).await;
    let r = s
        .put(link["uploadUrl"].as_str().unwrap(), vec![1u8; 50])
        .await;
    assert_eq!(r.status(), 400);
    assert!(!s.object_path(link["fileId"].as_str().unwrap()).exists());

    // Wrong checksum: refused, nothing stored, record still pending.
    let body = b"checked".to_vec();
    let wrong = sha256_hex(b"something else");
    let link = s
        .upload_link("c.txt", Some(body.len() as u64), Some(&wrong))
        .await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let r = s
        .put(link["uploadUrl"].as_str().unwrap(), body.clone())
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("BadDigest"));
    assert!(!s.object_path(&id).exists());
    assert_eq!(s.staged(), 0);
    let (status, v) = s.download_link(&id).await;
    assert_eq!(status, 409, "{v}");

    // Content type differing from the declared one.
    let link = s.upload_link("t.bin", None, None).await;
    let r = s
        .client
        .put(s.local(link["uploadUrl"].as_str().unwrap()))
        .header("content-type", "text/html")
        .body("<script>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn authentication_ownership_and_rate_limit() {
    let (alice_token, alice_hash) = keyhole::auth::generate_token().unwrap();
    let (bob_token, bob_hash) = keyhole::auth::generate_token().unwrap();
    let s = TestServer::start_with(|c| {
        c.tokens = vec![
            keyhole::config::TokenEntry {
                principal: "alice".into(),
                sha256: alice_hash,
            },
            keyhole::config::TokenEntry {
                principal: "bob".into(),
                sha256: bob_hash,
            },
        ];
        c.rate_limit = keyhole::config::RateLimit {
            burst: 5,
            per_second: 1,
        };
    })
    .await;
    let body = json!({"filename": "secret.txt", "contentType": "text/plain"});
    let r = s
        .client
        .post(s.url("/api/files/upload"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = s
        .client
        .post(s.url("/api/files/upload"))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let link: serde_json::Value = s
        .client
        .post(s.url("/api/files/upload"))
        .bearer_auth(&alice_token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = link["fileId"].as_str().unwrap();
    // Bob cannot see, link or delete Alice's file.
    let r = s
        .client
        .get(s.url("/api/files"))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["files"],
        json!([])
    );
    let r = s
        .client
        .delete(s.url(&format!("/api/files/{id}")))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Alice has used 1 of 5; the burst runs out and 429 carries Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let r = s
            .client
            .get(s.url("/api/files"))
            .bearer_auth(&alice_token)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("rate limited");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );
}

#[tokio::test]
async fn the_rate_limit_counts_every_part_link_signed() {
    // 1 token per second: a multipart upload of 40 parts leaves the principal 35 tokens short,
    // so its next request waits about 36 s; signing 10,000 links per request is no way around
    // the limit.
    let s = TestServer::start_with(|c| {
        c.rate_limit = keyhole::config::RateLimit {
            burst: 5,
            per_second: 1,
        };
    })
    .await;
    let create = |size: u64, multipart: bool| {
        s.client
            .post(s.url("/api/files/upload"))
            .json(
                &json!({"filename": "big.bin", "contentType": "application/octet-stream",
                          "size": size, "multipart": multipart}),
            )
            .send()
    };
    let r = create(40 * 8 * 1024 * 1024, true).await.unwrap();
    assert_eq!(r.status(), 200);
    let link: serde_json::Value = r.json().await.unwrap();
    assert_eq!(link["parts"].as_array().unwrap().len(), 40);
    let r = create(10, false).await.unwrap();
    assert_eq!(r.status(), 429, "the 39 extra links were charged");
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((30..=37).contains(&wait), "Retry-After {wait}");
    // Listing the parts re-signs the 40 missing ones, and is charged for them too.
    let s = TestServer::start_with(|c| {
        c.rate_limit = keyhole::config::RateLimit {
            burst: 45,
            per_second: 1,
        };
    })
    .await;
    let (status, link) = s
        .create_upload(json!({"filename": "big.bin",
            "contentType": "application/octet-stream", "size": 40 * 8 * 1024 * 1024,
            "multipart": true}))
        .await;
    assert_eq!(status, 200);
    let id = link["fileId"].as_str().unwrap();
    let r = s
        .client
        .get(s.url(&format!("/api/files/{id}/parts")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let parts: serde_json::Value = r.json().await.unwrap();
    assert_eq!(parts["missing"].as_array().unwrap().len(), 40);
    let r = s.client.get(s.url("/api/files")).send().await.unwrap();
    assert_eq!(r.status(), 429, "45 - 40 - 40 tokens left");
}

#[tokio::test]
async fn waiting_retry_after_is_enough() {
    // 2 tokens, 1 per second: a 4-part upload leaves -2, so the next request, made e seconds
    // later, needs 3 - e s: waiting the rounded-down 2 s left it short.
    let s = TestServer::start_with(|c| {
        c.rate_limit = keyhole::config::RateLimit {
            burst: 2,
            per_second: 1,
        };
    })
    .await;
    let (status, _) = s
        .create_upload(json!({"filename": "big.bin",
            "contentType": "application/octet-stream", "size": 4 * 8 * 1024 * 1024,
            "multipart": true}))
        .await;
    assert_eq!(status, 200);
    let r = s.client.get(s.url("/api/files")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&wait), "Retry-After {wait}");
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let r = s.client.get(s.url("/api/files")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn cors_preflight_for_configured_origins_only() {
    // Configured as written by hand; browsers send the origin in lower case, no default port.
    let s = TestServer::start_with(|c| {
        c.cors_origins = vec![
            " HTTPS://App.Example.com:443/".into(),
            "https://b.example".into(),
        ]
    })
    .await;
    let link = s.upload_link("c.txt", None, None).await;
    let path = s.local(link["uploadUrl"].as_str().unwrap());
    let preflight = |origin: &'static str| {
        s.client
            .request(reqwest::Method::OPTIONS, path.clone())
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let r = preflight("https://app.example.com").await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let r = preflight("https://evil.example.com").await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn openapi_health_readiness_and_request_ids() {
    let s = TestServer::start().await;
    let doc: serde_json::Value = s.get_json("/api/openapi.json").await;
    for p in [
        "/api/files/upload",
        "/api/files/download/{fileId}",
        "/api/files",
        "/api/files/{fileId}",
        "/api/config",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} missing from OpenAPI");
    }
    // /complete's answers as docs/api.md lists them, 503 (call it again) included.
    let complete = &doc["paths"]["/api/files/{fileId}/complete"]["post"]["responses"];
    for status in ["200", "400", "404", "409", "413", "503"] {
        assert!(
            complete.get(status).is_some(),
            "/complete {status}: {complete}"
        );
    }
    // The answers every file route may give: a malformed id, the token, the Host check, the
    // rate limit, a store down; and for JSON bodies their size and type.
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/files") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let responses = &op["responses"];
            for status in ["400", "401", "403", "429", "503"] {
                assert!(
                    responses[status]["content"]["application/json"].is_object(),
                    "{method} {path} {status}: {responses}"
                );
            }
            let body = op.get("requestBody").is_some();
            assert_eq!(responses.get("415").is_some(), body, "{method} {path}");
        }
    }
    // /complete takes no body, or the parts' ETags.
    let body = &doc["paths"]["/api/files/{fileId}/complete"]["post"]["requestBody"];
    assert_ne!(body["required"], true, "{body}");
    let limit = &doc["paths"]["/api/files"]["get"]["parameters"][0];
    assert_eq!(limit["name"], "limit");
    assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
    assert_eq!(limit["schema"]["maximum"], 1000, "{limit}");
    let status = &doc["components"]["schemas"]["FileStatus"]["enum"];
    assert_eq!(*status, json!(["pending", "uploaded"]), "{status}");
    // Every route that signs links may answer 503 (`busy`, `shutting_down`).
    for (path, method) in [
        ("/api/files/upload", "post"),
        ("/api/files/{fileId}/parts", "get"),
        ("/api/files/download/{fileId}", "get"),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        assert!(responses.get("503").is_some(), "{path} 503: {responses}");
    }
    assert_eq!(
        s.client
            .get(s.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        s.client
            .get(s.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = s
        .client
        .get(s.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = s.client.get(s.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().contains_key("x-request-id"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["success"], false);
}

#[tokio::test]
async fn data_survives_a_restart() {
    let s = TestServer::start().await;
    let bytes = pseudo_random(5000, 9);
    let id = s.upload("keep.bin", bytes.clone()).await;
    let key_id = s.running().key_pair_id.clone();
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    assert_eq!(s.running().key_pair_id, key_id, "the key is kept");
    assert!(!s.running().generated_key);
    assert_eq!(s.download(&id).await, bytes);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.data().join("keys/private.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn one_put_at_a_time_per_upload_link() {
    let s = TestServer::start().await;
    let body = pseudo_random(300_000, 5);
    let link = s
        .upload_link("once.bin", Some(body.len() as u64), None)
        .await;
    let url = s.local(link["uploadUrl"].as_str().unwrap());
    let put = |body: reqwest::Body| {
        s.client
            .put(&url)
            .header("content-type", "application/octet-stream")
            .header("content-length", 300_000)
            .body(body)
            .send()
    };
    // The first PUT is half-way through its body.
    let (first_tx, first_body) = fed_body();
    let first = tokio::spawn(put(first_body));
    first_tx
        .send(Ok(bytes::Bytes::copy_from_slice(&body[..150_000])))
        .await
        .unwrap();
    s.wait_until_staged().await;
    // A second one on the same link is refused before its body is read (held back here so the
    // answer can be read), and stages nothing.
    let (_held, second_body) = fed_body();
    let r = put(second_body).await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers()["retry-after"],
        "15",
        "a quarter of client_timeout: a client's retries span the time the server may take to \
         notice a connection is gone"
    );
    assert_eq!(s.staged(), 1);
    // The first completes; the second, called again, finds the file uploaded (write-once).
    first_tx
        .send(Ok(bytes::Bytes::copy_from_slice(&body[150_000..])))
        .await
        .unwrap();
    drop(first_tx);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    let r = put(reqwest::Body::from(body.clone())).await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(s.download(link["fileId"].as_str().unwrap()).await, body);
}

#[tokio::test]
async fn a_data_directory_in_use_is_refused_before_any_key_is_made() {
    let dir = tempfile::tempdir().unwrap();
    // Another process holds the data directory (and is about to make its key pair).
    let held = std::fs::File::create(dir.path().join("objects.lock")).unwrap();
    held.try_lock().unwrap();
    let err = keyhole::server::start(common::test_config(dir.path()))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("in use"), "{err}");
    assert!(
        !dir.path().join("keys").exists(),
        "no key pair made beside the other process's"
    );
}

#[tokio::test]
async fn start_up_records_committed_uploads_and_keeps_unrecorded_ones() {
    const MIB: usize = 1024 * 1024;
    let s = TestServer::start_with(|c| {
        c.part_size = 5 * MIB as u64;
        c.multipart_threshold = 8 * MIB as u64;
    })
    .await;
    let kept = s.upload("kept.bin", b"acknowledged".to_vec()).await;
    let body = b"committed, never acknowledged".to_vec();
    let link = s
        .upload_link(
            "crashed.bin",
            Some(body.len() as u64),
            Some(&sha256_hex(&body)),
        )
        .await;
    let single = link["fileId"].as_str().unwrap().to_owned();
    // A multipart upload whose parts all arrived and were assembled; the crash came before the
    // record was updated, after the parts were freed.
    let video = pseudo_random(9 * MIB + 5, 11);
    let (status, multi) = s
        .create_upload(json!({"filename": "video.mp4", "contentType": "video/mp4",
            "size": video.len()}))
        .await;
    assert_eq!(status, 200, "{multi}");
    for part in multi["parts"].as_array().unwrap() {
        let n = part["partNumber"].as_u64().unwrap() as usize;
        let bytes = video[(n - 1) * 5 * MIB..(n * 5 * MIB).min(video.len())].to_vec();
        let r = s
            .client
            .put(s.local(part["url"].as_str().unwrap()))
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let multi_id = multi["fileId"].as_str().unwrap().to_owned();
    let dir = s.stop().await;
    // What the crash left: committed objects under records still pending (and no parts for the
    // multipart one); a lost metadata store leaves objects with no record at all.
    let objects = dir.path().join("objects");
    std::fs::write(objects.join("uploads").join(&single), &body).unwrap();
    std::fs::write(objects.join("uploads").join(&multi_id), &video).unwrap();
    std::fs::remove_dir_all(objects.join("parts").join(&multi_id)).unwrap();
    let orphan = "aaaaaaaaaaaaaaaaaaaaaaaaaa_orphan.bin";
    std::fs::write(objects.join("uploads").join(orphan), b"no record").unwrap();
    // And the parts of a multipart upload begun after the metadata was lost.
    let orphan_parts = objects
        .join("parts")
        .join("bbbbbbbbbbbbbbbbbbbbbbbbbb_parts.bin")
        .join("0123456789abcdef");
    std::fs::create_dir_all(&orphan_parts).unwrap();
    std::fs::write(orphan_parts.join("00001"), b"a part, no record").unwrap();

    let s = TestServer::start_in(dir, |_| {}).await;
    // The server serves while it reconciles; a file it has not reached yet answers as it did
    // before the restart.
    assert_eq!(s.download(&kept).await, b"acknowledged");
    s.running().reconciled().await;
    assert!(
        s.object_path(orphan).exists(),
        "object without a record kept"
    );
    assert!(
        orphan_parts.join("00001").exists(),
        "parts without a record kept"
    );
    assert!(
        s.metrics().await.contains("keyhole_unrecorded_objects 2\n"),
        "and counted"
    );
    assert_eq!(s.download(&kept).await, b"acknowledged");
    // The committed uploads are recorded: downloadable, and the clients' retries find them done.
    assert_eq!(s.download(&single).await, body);
    assert_eq!(s.download(&multi_id).await, video);
    let r = s
        .put(link["uploadUrl"].as_str().unwrap(), body.clone())
        .await;
    assert_eq!(r.status(), 409);
    let (status, done) = s
        .post_json(&format!("/api/files/{multi_id}/complete"), None, json!({}))
        .await;
    assert_eq!(status, 409, "{done}");
    assert_eq!(done["error"]["code"], "already_uploaded");
    let listed = s.get_json(&format!("/api/files/{multi_id}")).await;
    assert_eq!(listed["file"]["status"], "uploaded", "{listed}");
    assert_eq!(listed["file"]["size"], video.len());
}

/// Writes `head` and `body` on `stream` and reads one response (head and its Content-Length
/// body); returns the head, lower-cased.
async fn exchange(stream: &mut tokio::net::TcpStream, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while buf.len() < end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed inside a response body");
        buf.extend_from_slice(&chunk[..n]);
    }
    head
}

#[tokio::test]
async fn refused_bodies_are_read_to_the_end_or_the_connection_closes() {
    let s = TestServer::start().await;
    let addr = s.base.strip_prefix("http://").unwrap().to_owned();
    let bad = format!(
        "/uploads/{}_x.bin?Expires=1&Signature=AAAA&Key-Pair-Id=KX",
        "a".repeat(26)
    );

    // Refused before a byte of its 4 MiB body was read: the rest is read and dropped, so the
    // client can send it all and read the refusal, and the connection carries the next request.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = vec![7u8; 4 * 1024 * 1024];
    let head = exchange(
        &mut conn,
        &format!(
            "PUT {bad} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ),
        &body,
    )
    .await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    let head = exchange(&mut conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");

    // A client waiting for `100 Continue` is not asked for its body: the refusal comes at once
    // and closes the connection.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = exchange(
        &mut conn,
        &format!(
            "PUT {bad} HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n"
        ),
        b"",
    )
    .await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
}

#[tokio::test]
async fn a_commit_that_fails_answers_500_keeps_nothing_and_the_link_works_once_fixed() {
    let server = TestServer::start().await;
    let body = pseudo_random(300_000, 21);
    let link = server
        .upload_link("blocked.bin", Some(body.len() as u64), None)
        .await;
    let file_id = link["fileId"].as_str().unwrap().to_owned();
    let url = link["uploadUrl"].as_str().unwrap().to_owned();

    // The body goes in two halves; between them, once the upload is staged, a file takes the
    // place of the directory committed objects go to. The body is received and checked, but
    // cannot be linked into place (a fault that holds for root too, unlike a permission).
    let (tx, halves) = fed_body();
    let put = {
        let server_url = server.local(&url);
        tokio::spawn(async move {
            reqwest::Client::new()
                .put(server_url)
                .header("content-type", "application/octet-stream")
                .header("content-length", 300_000)
                .body(halves)
                .send()
                .await
                .unwrap()
        })
    };
    tx.send(Ok(bytes::Bytes::copy_from_slice(&body[..150_000])))
        .await
        .unwrap();
    for _ in 0..500 {
        if server.staged() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(server.staged(), 1, "the upload is staged");
    let committed = server.object_path(&file_id).parent().unwrap().to_owned();
    if committed.exists() {
        std::fs::remove_dir(&committed).unwrap();
    }
    std::fs::write(&committed, b"in the way").unwrap();
    tx.send(Ok(bytes::Bytes::copy_from_slice(&body[150_000..])))
        .await
        .unwrap();
    drop(tx);
    let r = put.await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<Code>InternalError</Code>"));

    // Nothing is visible, nothing is left staged, and the record still waits for its bytes.
    assert_eq!(server.staged(), 0);
    let (status, reply) = server.download_link(&file_id).await;
    assert_eq!(status, 409, "{reply}");
    let listed = server.list_all().await;
    let record = listed.iter().find(|f| f["fileId"] == file_id).unwrap();
    assert_eq!(record["status"], "pending", "{record}");

    // The server stayed up, and the same link uploads once the fault is gone.
    std::fs::remove_file(&committed).unwrap();
    let r = server.put(&url, body.clone()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    assert_eq!(server.download(&file_id).await, body);
}

/// An object stored whose record was never marked uploaded: what a commit leaves when the
/// metadata store fails (or the request is cut off) between the two. A retried PUT finds the
/// object and, as it was checked before it was stored, records it, so the upload is complete
/// rather than stuck behind 409s until it expires.
#[tokio::test]
async fn a_stored_object_whose_record_stayed_pending_is_recorded_by_the_retry() {
    let server = TestServer::start().await;
    let body = pseudo_random(200_000, 33);
    let link = server
        .upload_link(
            "stored.bin",
            Some(body.len() as u64),
            Some(&sha256_hex(&body)),
        )
        .await;
    let file_id = link["fileId"].as_str().unwrap().to_owned();
    let url = link["uploadUrl"].as_str().unwrap().to_owned();
    let object = server.object_path(&file_id);
    std::fs::create_dir_all(object.parent().unwrap()).unwrap();
    std::fs::write(&object, &body).unwrap();
    let (status, reply) = server.download_link(&file_id).await;
    assert_eq!(status, 409, "pending before the retry: {reply}");

    let r = server.put(&url, body.clone()).await;
    assert_eq!(r.status(), 409);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<Code>ObjectAlreadyExists</Code>"));
    let listed = server.list_all().await;
    let record = listed.iter().find(|f| f["fileId"] == file_id).unwrap();
    assert_eq!(record["status"], "uploaded", "{record}");
    assert_eq!(record["sha256"], sha256_hex(&body), "{record}");
    assert_eq!(server.download(&file_id).await, body);

    // An object that is not what the record declared is never recorded.
    let link = server
        .upload_link(
            "other.bin",
            Some(body.len() as u64),
            Some(&sha256_hex(&body)),
        )
        .await;
    let other = link["fileId"].as_str().unwrap().to_owned();
    std::fs::write(server.object_path(&other), pseudo_random(200_000, 34)).unwrap();
    let r = server
        .put(link["uploadUrl"].as_str().unwrap(), body.clone())
        .await;
    assert_eq!(r.status(), 500);
    let listed = server.list_all().await;
    let record = listed.iter().find(|f| f["fileId"] == other).unwrap();
    assert_eq!(record["status"], "pending", "{record}");
}

/// A download whose object cannot be read because storage fails gets 500, not 404: clients and
/// caches take a 404 as final, and the file is not gone.
#[tokio::test]
async fn a_storage_failure_on_download_is_a_500_not_a_404() {
    let server = TestServer::start().await;
    let body = pseudo_random(10_000, 35);
    let file_id = server.upload("kept.bin", body.clone()).await;
    let (status, link) = server.download_link(&file_id).await;
    assert_eq!(status, 200, "{link}");
    let url = server.local(link["downloadUrl"].as_str().unwrap());
    let client = reqwest::Client::new();
    let committed = server.object_path(&file_id).parent().unwrap().to_owned();
    let aside = committed.with_extension("aside");
    std::fs::rename(&committed, &aside).unwrap();
    std::fs::write(&committed, b"in the way").unwrap();
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("<Code>InternalError</Code>"));

    // Back in place, the same link works; removed, it is a 404.
    std::fs::remove_file(&committed).unwrap();
    std::fs::rename(&aside, &committed).unwrap();
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), body);

    // Replaced by other bytes behind the server's back: not served under the record's checksum
    // and ETag, for GET and HEAD alike.
    let object = server.object_path(&file_id);
    std::fs::rename(&object, object.with_extension("aside")).unwrap();
    std::fs::write(&object, b"something else").unwrap();
    for head in [false, true] {
        let request = if head {
            client.head(&url)
        } else {
            client.get(&url)
        };
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 500, "head: {head}");
        assert!(r.headers().get("etag").is_none(), "head: {head}");
    }
    std::fs::rename(object.with_extension("aside"), &object).unwrap();
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    std::fs::remove_file(server.object_path(&file_id)).unwrap();
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("<Code>NoSuchKey</Code>"));
}

/// A metadata store that cannot answer (here SQLite's write lock, held by another process) is a
/// 503 `unavailable` with `Retry-After`, which clients retry, not a 500; once the store answers
/// again, so does the API.
#[tokio::test]
async fn a_metadata_store_outage_is_a_503_that_calling_again_gets_past() {
    let s = TestServer::start().await;
    let id = s.upload("kept.txt", b"kept".to_vec()).await;
    let lock = rusqlite::Connection::open(s.data().join("metadata.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let delete = || s.delete_file(&id);
    let r = delete().await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unavailable", "{v}");
    assert!(s.object_path(&id).exists(), "nothing deleted");

    lock.execute_batch("ROLLBACK").unwrap();
    let r = delete().await;
    assert_eq!(r.status(), 200);
    assert!(!s.object_path(&id).exists());
}

/// A DELETE is decided once the record is expired: if removing the object then fails (storage
/// trouble), the file is still gone for every reader at once, the answer is 200, and the sweeper
/// removes object and record once storage works again.
#[tokio::test]
async fn a_delete_whose_removal_fails_is_finished_by_the_sweeper() {
    let s = TestServer::start().await;
    let id = s.upload("gone.txt", b"gone".to_vec()).await;
    let object = s.object_path(&id);
    // An object the storage cannot remove: a non-empty directory in its place.
    std::fs::remove_file(&object).unwrap();
    std::fs::create_dir(&object).unwrap();
    std::fs::write(object.join("in-the-way"), b"x").unwrap();
    let r = s.delete_file(&id).await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.download_link(&id).await.0, 404);
    assert!(s.list_all().await.is_empty());
    let state = &s.running().state;
    assert!(
        state.meta.get(&id).await.unwrap().is_some(),
        "left for the sweeper"
    );

    std::fs::remove_dir_all(&object).unwrap();
    keyhole::sweeper::sweep_once(state).await;
    assert!(state.meta.get(&id).await.unwrap().is_none(), "swept");
}

/// Too many request headers get the JSON 431 with a request id, from the server's own check
/// rather than the HTTP library's bare one.
#[tokio::test]
async fn too_many_headers_get_the_json_431_with_a_request_id() {
    let s = TestServer::start().await;
    let mut request = s.client.get(s.url("/api/config"));
    for i in 0..150 {
        request = request.header(format!("x-n{i}"), "v");
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 431);
    assert!(r.headers().contains_key("x-request-id"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "headers_too_large", "{v}");
}

/// Links that expire fast, no grace after them, a sweeper that runs often: a PUT still arriving
/// when its record would expire must keep the record alive, not lose the upload at the end.
fn short_lived_records(c: &mut keyhole::config::Config) {
    c.upload_ttl = std::time::Duration::from_secs(2);
    c.pending_grace = std::time::Duration::ZERO;
    c.client_timeout = std::time::Duration::from_secs(3);
    c.sweep_interval = std::time::Duration::from_millis(200);
}

#[tokio::test]
async fn a_put_arriving_past_its_records_expiry_is_kept() {
    let server = TestServer::start_with(short_lived_records).await;
    let body = pseudo_random(96 * 1024, 61);
    let link = server
        .upload_link("slow.bin", Some(body.len() as u64), None)
        .await;
    let file_id = link["fileId"].as_str().unwrap().to_owned();
    // Six pieces a second apart: the record (2 s) would have expired, and been swept, twice.
    let r = server
        .put(
            link["uploadUrl"].as_str().unwrap(),
            common::trickled_body(body.clone(), 6, std::time::Duration::from_secs(1)),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    assert_eq!(
        sha256_hex(&server.download(&file_id).await),
        sha256_hex(&body)
    );
}
