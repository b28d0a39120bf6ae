//! Multipart uploads: one signed URL per part, parts in any order and retried, resumable from
//! the parts listing, assembled atomically.

mod common;

use common::{part_url, pseudo_random, sha256_hex, TestServer};
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;

async fn start() -> TestServer {
    // 5 MiB parts (S3's minimum) keep the files small.
    TestServer::start_with(|c| {
        c.part_size = 5 * MIB as u64;
        c.multipart_threshold = 8 * MIB as u64;
    })
    .await
}

async fn create(s: &TestServer, bytes: &[u8], sha: Option<&str>) -> Value {
    let mut body =
        json!({"filename": "video.mp4", "contentType": "video/mp4", "size": bytes.len()});
    if let Some(h) = sha {
        body["sha256"] = json!(h);
    }
    let (status, v) = s.create_upload(body).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn chunk(bytes: &[u8], part_size: usize, n: usize) -> Vec<u8> {
    let start = (n - 1) * part_size;
    bytes[start..(start + part_size).min(bytes.len())].to_vec()
}

async fn put_part(s: &TestServer, url: &str, body: Vec<u8>) -> reqwest::Response {
    s.client.put(s.local(url)).body(body).send().await.unwrap()
}

async fn complete(s: &TestServer, file_id: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = s
        .client
        .post(s.url(&format!("/api/files/{file_id}/complete")));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn parts_out_of_order_with_a_retry_assemble_byte_identical() {
    let s = start().await;
    let bytes = pseudo_random(12 * MIB + 12345, 11);
    let link = create(&s, &bytes, Some(&sha256_hex(&bytes))).await;
    assert!(link.get("uploadUrl").is_none());
    assert_eq!(link["partSize"], 5 * MIB);
    assert_eq!(link["partCount"], 3);
    let id = link["fileId"].as_str().unwrap().to_owned();
    let upload_id = link["uploadId"].as_str().unwrap();
    assert!(part_url(&link, "parts", 2)
        .contains(&format!("?partNumber=2&uploadId={upload_id}&Expires=")));

    // Part 3 first, then 1 (first with garbage of the right size, then retried with the real
    // bytes), then 2; parts 1 and 2 concurrently.
    let ps = 5 * MIB;
    assert_eq!(
        put_part(&s, &part_url(&link, "parts", 3), chunk(&bytes, ps, 3))
            .await
            .status(),
        200
    );
    assert_eq!(
        put_part(&s, &part_url(&link, "parts", 1), vec![0u8; ps])
            .await
            .status(),
        200
    );
    let (url1, url2) = (part_url(&link, "parts", 1), part_url(&link, "parts", 2));
    let (a, b) = tokio::join!(
        put_part(&s, &url1, chunk(&bytes, ps, 1)),
        put_part(&s, &url2, chunk(&bytes, ps, 2)),
    );
    assert_eq!(a.status(), 200);
    let etag1 = a.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(b.status(), 200);

    // Not downloadable before completion.
    let (status, _) = s.download_link(&id).await;
    assert_eq!(status, 409);

    // Listing the parts shows all three with their sizes; nothing is missing.
    let parts: Value = s.get_json(&format!("/api/files/{id}/parts")).await;
    assert_eq!(parts["parts"].as_array().unwrap().len(), 3);
    assert_eq!(parts["parts"][2]["size"], 2 * MIB + 12345);
    assert_eq!(parts["missing"], json!([]));

    let (status, done) = complete(
        &s,
        &id,
        Some(json!({"parts": [
            {"partNumber": 1, "etag": etag1},
            {"partNumber": 2},
            {"partNumber": 3}
        ]})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["sha256"], sha256_hex(&bytes));
    assert_eq!(done["size"], bytes.len());
    assert_eq!(s.download(&id).await, bytes);
    assert!(
        !s.data().join("objects/parts").join(&id).exists(),
        "parts removed after assembly"
    );

    // Completing twice, or uploading a part afterwards, is refused.
    let (status, _) = complete(&s, &id, None).await;
    assert_eq!(status, 409);
    assert_eq!(
        put_part(&s, &part_url(&link, "parts", 1), chunk(&bytes, ps, 1))
            .await
            .status(),
        409
    );
}

#[tokio::test]
async fn an_interrupted_part_is_resumed_from_the_parts_listing() {
    let s = start().await;
    let bytes = pseudo_random(11 * MIB, 12);
    let link = create(&s, &bytes, None).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let ps = 5 * MIB;
    assert_eq!(
        put_part(&s, &part_url(&link, "parts", 1), chunk(&bytes, ps, 1))
            .await
            .status(),
        200
    );

    // Part 2: the connection drops after 1 MiB of the body.
    let url = s.local(&part_url(&link, "parts", 2));
    let rest = url.strip_prefix(&s.base).unwrap().to_owned();
    {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tokio::net::TcpStream::connect(s.running().addr)
            .await
            .unwrap();
        let head = format!(
            "PUT {rest} HTTP/1.1\r\nHost: x\r\nContent-Length: {ps}\r\nContent-Type: video/mp4\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&chunk(&bytes, ps, 2)[..MIB]).await.unwrap();
        tcp.flush().await.unwrap();
        drop(tcp);
    }
    // The dropped part is not recorded; its staged bytes are discarded.
    let mut parts = Value::Null;
    for _ in 0..50 {
        parts = s.get_json(&format!("/api/files/{id}/parts")).await;
        if s.staged() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(s.staged(), 0, "interrupted part left staged bytes");
    assert_eq!(parts["parts"].as_array().unwrap().len(), 1);
    let missing: Vec<u64> = parts["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["partNumber"].as_u64().unwrap())
        .collect();
    assert_eq!(missing, [2, 3]);

    // Resume with the re-issued URLs, as another machine would.
    for m in parts["missing"].as_array().unwrap() {
        let n = m["partNumber"].as_u64().unwrap() as usize;
        let r = put_part(&s, m["url"].as_str().unwrap(), chunk(&bytes, ps, n)).await;
        assert_eq!(r.status(), 200);
    }
    let (status, done) = complete(&s, &id, None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(s.download(&id).await, bytes);
}

#[tokio::test]
async fn bad_parts_and_incomplete_uploads_are_refused() {
    let s = start().await;
    let bytes = pseudo_random(11 * MIB, 13);
    let wrong_sha = sha256_hex(b"not it");
    let link = create(&s, &bytes, Some(&wrong_sha)).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let ps = 5 * MIB;

    // Wrong size for a part: refused and not recorded.
    let r = put_part(&s, &part_url(&link, "parts", 1), vec![1u8; ps - 1]).await;
    assert_eq!(r.status(), 400);
    let r = put_part(&s, &part_url(&link, "parts", 1), vec![1u8; ps + 1]).await;
    assert_eq!(r.status(), 413);
    // A part URL cannot be reused for another part number (the signature covers the query).
    let other = part_url(&link, "parts", 1).replace("partNumber=1&", "partNumber=2&");
    assert_eq!(
        put_part(&s, &other, chunk(&bytes, ps, 2)).await.status(),
        403
    );
    // A whole-file PUT on a multipart upload is refused.
    let whole = s.sign(&format!("/uploads/{id}"), common::now() + 600);
    assert_eq!(put_part(&s, &whole, bytes.clone()).await.status(), 400);

    assert_eq!(
        put_part(&s, &part_url(&link, "parts", 1), chunk(&bytes, ps, 1))
            .await
            .status(),
        200
    );
    assert_eq!(
        put_part(&s, &part_url(&link, "parts", 3), chunk(&bytes, ps, 3))
            .await
            .status(),
        200
    );
    // Missing part 2.
    let (status, v) = complete(&s, &id, None).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("part 2 is missing"));
    // A part list that skips a part, or names a wrong ETag.
    assert_eq!(
        put_part(&s, &part_url(&link, "parts", 2), chunk(&bytes, ps, 2))
            .await
            .status(),
        200
    );
    let (status, _) = complete(
        &s,
        &id,
        Some(json!({"parts": [{"partNumber": 1}, {"partNumber": 3}]})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = complete(
        &s,
        &id,
        Some(json!({"parts": [{"partNumber": 1, "etag": "\"nope\""}, {"partNumber": 2}, {"partNumber": 3}]})),
    )
    .await;
    assert_eq!(status, 400);
    // All parts present, but the declared checksum does not match: nothing is stored.
    let (status, v) = complete(&s, &id, None).await;
    assert_eq!(status, 400, "{v}");
    assert!(!s.object_path(&id).exists());
    assert_eq!(s.staged(), 0);
}

#[tokio::test]
async fn aborted_and_expired_uploads_leave_no_parts() {
    let s = TestServer::start_with(|c| {
        c.part_size = 5 * MIB as u64;
        c.multipart_threshold = 8 * MIB as u64;
        // Long enough for a part to arrive on a loaded machine, short enough to watch expire.
        c.upload_ttl = std::time::Duration::from_secs(4);
        c.pending_grace = std::time::Duration::ZERO;
        // A part's body may pause 1 s at most: a part PUT well before the record's expiry does
        // not keep the record alive.
        c.client_timeout = std::time::Duration::from_secs(1);
        c.sweep_interval = std::time::Duration::from_millis(200);
    })
    .await;
    let bytes = pseudo_random(10 * MIB, 14);
    let ps = 5 * MIB;

    // Abort: DELETE of a pending multipart upload frees its parts.
    let link = create(&s, &bytes, None).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    assert_eq!(
        put_part(&s, &part_url(&link, "parts", 1), chunk(&bytes, ps, 1))
            .await
            .status(),
        200
    );
    let parts_dir = s.data().join("objects/parts").join(&id);
    assert!(parts_dir.exists());
    let r = s
        .client
        .delete(s.url(&format!("/api/files/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!parts_dir.exists(), "aborted upload's parts removed");
    assert_eq!(
        put_part(&s, &part_url(&link, "parts", 2), chunk(&bytes, ps, 2))
            .await
            .status(),
        404
    );

    // Abandoned: the sweeper removes parts and record once the upload expires.
    let link = create(&s, &bytes, None).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    assert_eq!(
        put_part(&s, &part_url(&link, "parts", 1), chunk(&bytes, ps, 1))
            .await
            .status(),
        200
    );
    let parts_dir = s.data().join("objects/parts").join(&id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while parts_dir.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        !parts_dir.exists(),
        "expired upload's parts removed by the sweeper"
    );
    assert!(s.list_all().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_part_links_do_not_hold_up_other_requests() {
    // One HTTP worker: the request minting 2,048 part links (about 0.6 s of RSA signatures)
    // shares it with the health check.
    let s = std::sync::Arc::new(
        TestServer::start_with(|c| {
            c.workers = 1;
            c.part_size = 5 * MIB as u64;
        })
        .await,
    );
    assert_eq!(s.running().worker_count, 1);
    let parts = || {
        s.server
            .as_ref()
            .unwrap()
            .state
            .metrics
            .links
            .get_or_create(&keyhole::telemetry::KindLabel {
                kind: "upload_part".into(),
            })
            .get()
    };
    let minting = {
        let s = s.clone();
        tokio::spawn(async move {
            s.create_upload(json!({"filename": "huge.bin", "contentType": "application/octet-stream", "size": 2048u64 * 5 * MIB as u64}))
                .await
        })
    };
    while parts() == 0 {
        assert!(!minting.is_finished(), "{:?}", minting.await);
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // Signing has begun; the health check is answered between its jobs, long before the last.
    let r = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let signed = parts();
    assert!(
        signed < 2048,
        "the health check waited for all {signed} part links"
    );
    let (status, v) = minting.await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["parts"].as_array().unwrap().len(), 2048);
    assert_eq!(parts(), 2048);
}

/// An assembly whose record update was lost (the metadata store failed, or the request was cut
/// off, after the object went into place) is recorded by the retried completion instead of
/// leaving the upload stuck as "already complete" while its record waits.
#[tokio::test]
async fn a_completion_whose_record_update_was_lost_is_recorded_by_the_retry() {
    let s = start().await;
    let bytes = pseudo_random(9 * MIB + 77, 41);
    let link = create(&s, &bytes, Some(&sha256_hex(&bytes))).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let ps = 5 * MIB;
    for n in 1..=2 {
        let r = put_part(
            &s,
            &part_url(&link, "parts", n),
            chunk(&bytes, ps, n as usize),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    // The state such a completion leaves: the assembled object in place, the record pending.
    let object = s.object_path(&id);
    std::fs::create_dir_all(object.parent().unwrap()).unwrap();
    std::fs::write(&object, &bytes).unwrap();
    let (status, _) = s.download_link(&id).await;
    assert_eq!(status, 409, "pending before the retry");

    let (status, done) = complete(&s, &id, None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["sha256"], sha256_hex(&bytes));
    assert_eq!(done["size"], bytes.len());
    assert_eq!(s.download(&id).await, bytes);
    let (status, _) = complete(&s, &id, None).await;
    assert_eq!(status, 409, "completing again is refused");
}

#[tokio::test]
async fn a_completion_may_list_all_ten_thousand_parts() {
    let s = TestServer::start_with(|c| {
        c.part_size = 5 * MIB as u64;
        // 10,000 links are 10,000 tokens of the rate limit, which is not what is tested here.
        c.rate_limit.burst = 20_000;
    })
    .await;
    let size = 10_000u64 * 5 * MIB as u64;
    let (status, v) = s
        .create_upload(json!({"filename": "huge.bin", "contentType": "application/octet-stream", "size": size}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["parts"].as_array().unwrap().len(), 10_000);
    let id = v["fileId"].as_str().unwrap();
    // Every part with a SHA-256 ETag, as local storage gives them: about 1 MB of JSON.
    let etag = format!("\"{}\"", "ab".repeat(32));
    let parts: Vec<Value> = (1..=10_000)
        .map(|n| json!({"partNumber": n, "etag": etag}))
        .collect();
    let body = json!({ "parts": parts });
    assert!(body.to_string().len() > 900_000);
    let (status, v) = complete(&s, id, Some(body)).await;
    // Read and checked: refused for the parts that never came, not for its size.
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("part 1"),
        "{v}"
    );

    // Still bounded.
    let padded = json!({ "parts": [], "pad": "x".repeat(keyhole::http::MAX_COMPLETE_JSON_BYTES) });
    let (status, v) = complete(&s, id, Some(padded)).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
}

/// A completion joins exactly the parts it lists: while a part is being received (here a part
/// sent again with other bytes) the completion is refused with 503, and once that part is in,
/// the completion joins its new bytes. Completions called together (a client retrying a lost
/// answer) are 200 and 409 or 503, never a failure.
#[tokio::test]
async fn a_completion_never_overlaps_a_part_being_received() {
    let s = start().await;
    let bytes = pseudo_random(12 * MIB + 5, 31);
    let link = create(&s, &bytes, None).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let parts = link["parts"].as_array().unwrap().clone();
    for (i, p) in parts.iter().enumerate() {
        let r = put_part(
            &s,
            p["url"].as_str().unwrap(),
            chunk(&bytes, 5 * MIB, i + 1),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    // Part 3 sent again with other bytes, half-way through.
    let mut changed = bytes.clone();
    changed[10 * MIB..].iter_mut().for_each(|b| *b = !*b);
    let new_part = chunk(&changed, 5 * MIB, 3);
    let (tx, body) = common::fed_body();
    let url = s.local(parts[2]["url"].as_str().unwrap());
    let resend = tokio::spawn(
        s.client
            .put(url)
            .header("content-length", new_part.len())
            .body(body)
            .send(),
    );
    tx.send(Ok(bytes::Bytes::copy_from_slice(&new_part[..1000])))
        .await
        .unwrap();
    s.wait_until_staged().await;
    let r = s
        .client
        .post(s.url(&format!("/api/files/{id}/complete")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["error"]["code"], "in_progress", "{reply}");
    tx.send(Ok(bytes::Bytes::copy_from_slice(&new_part[1000..])))
        .await
        .unwrap();
    drop(tx);
    assert_eq!(resend.await.unwrap().unwrap().status(), 200);

    let (first, second) = tokio::join!(complete(&s, &id, None), complete(&s, &id, None));
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert!(
        statuses == [200, 409] || statuses == [200, 503],
        "{first:?} {second:?}"
    );
    let (status, again) = complete(&s, &id, None).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "already_uploaded");
    assert!(
        s.download(&id).await == changed,
        "the part's new bytes were joined"
    );
}

#[tokio::test]
async fn a_part_arriving_past_its_records_expiry_is_kept() {
    let s = TestServer::start_with(|c| {
        c.part_size = 5 * MIB as u64;
        c.multipart_threshold = 8 * MIB as u64;
        c.upload_ttl = std::time::Duration::from_secs(2);
        c.pending_grace = std::time::Duration::ZERO;
        c.client_timeout = std::time::Duration::from_secs(3);
        c.sweep_interval = std::time::Duration::from_millis(200);
    })
    .await;
    let bytes = pseudo_random(10 * MIB, 62);
    let ps = 5 * MIB;
    let link = create(&s, &bytes, None).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    assert_eq!(
        put_part(&s, &part_url(&link, "parts", 2), chunk(&bytes, ps, 2))
            .await
            .status(),
        200
    );
    // Part 1 in six pieces a second apart: the record (2 s) would have expired meanwhile, and
    // the sweeper would have aborted the upload with the part already stored.
    let r = s
        .client
        .put(s.local(&part_url(&link, "parts", 1)))
        .body(common::trickled_body(
            chunk(&bytes, ps, 1),
            6,
            std::time::Duration::from_secs(1),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let (status, v) = complete(&s, &id, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(sha256_hex(&s.download(&id).await), sha256_hex(&bytes));
}
