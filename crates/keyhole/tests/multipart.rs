//! Multipart uploads: one signed URL per part, parts in any order and retried, resumable from
//! the parts listing, assembled atomically.

mod common;

use common::{part_url, pseudo_random, sha256_hex, TestServer};
use keyhole::store::Status;
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
        // The dropped PUT's handler may still be ending (its staged bytes go before its claim
        // on the part): 503 "in progress" until it has, which a client retries.
        let mut r = put_part(&s, m["url"].as_str().unwrap(), chunk(&bytes, ps, n)).await;
        for _ in 0..50 {
            if r.status() != 503 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            r = put_part(&s, m["url"].as_str().unwrap(), chunk(&bytes, ps, n)).await;
        }
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
    let parts = parts_dir(&s, &id);
    assert!(parts.exists());
    let r = s.delete_file(&id).await;
    assert_eq!(r.status(), 200);
    assert!(!parts.exists(), "aborted upload's parts removed");
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
    let parts = parts_dir(&s, &id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while parts.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        !parts.exists(),
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
    assert!(
        !parts_dir(&s, &id).exists(),
        "the parts the cut-off completion left are freed: no second copy of the file stays"
    );
    let (status, _) = complete(&s, &id, None).await;
    assert_eq!(status, 409, "completing again is refused");
}

/// Where local disk keeps the parts of a file's multipart uploads.
fn parts_dir(s: &TestServer, file_id: &str) -> std::path::PathBuf {
    s.data().join("objects/parts").join(file_id)
}

/// Parts left behind an uploaded file (a completion cut off after the file was in place, by a
/// build that did not free them on retry) go with the file when it is deleted.
#[tokio::test]
async fn deleting_an_uploaded_file_frees_parts_left_behind() {
    let s = start().await;
    let bytes = pseudo_random(9 * MIB + 3, 43);
    let link = create(&s, &bytes, None).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    for n in 1..=2 {
        let r = put_part(
            &s,
            &part_url(&link, "parts", n),
            chunk(&bytes, 5 * MIB, n as usize),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let (status, done) = complete(&s, &id, None).await;
    assert_eq!(status, 200, "{done}");
    let left = parts_dir(&s, &id).join("0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("00001"), chunk(&bytes, 5 * MIB, 1)).unwrap();

    let r = s.delete_file(&id).await;
    assert_eq!(r.status(), 200);
    assert!(!s.object_path(&id).exists(), "the file is gone");
    assert!(!parts_dir(&s, &id).exists(), "and so are its parts");
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

/// Local storage whose joins wait at a gate: a join of parts that takes as long as the test
/// says (a file of hundreds of GB), on the real local disk.
struct SlowJoin {
    inner: std::sync::Arc<dyn keyhole::store::objects::ObjectStorage>,
    joining: std::sync::Arc<tokio::sync::Notify>,
    gate: std::sync::Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl keyhole::store::objects::ObjectStorage for SlowJoin {
    async fn begin_write(
        &self,
        key: &str,
    ) -> Result<Box<dyn keyhole::store::objects::ObjectWriter>, keyhole::store::objects::ObjectError>
    {
        self.inner.begin_write(key).await
    }
    async fn head(
        &self,
        key: &str,
    ) -> Result<keyhole::store::objects::ObjectMeta, keyhole::store::objects::ObjectError> {
        self.inner.head(key).await
    }
    async fn read(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        etag: Option<&str>,
    ) -> Result<keyhole::store::objects::ByteStream, keyhole::store::objects::ObjectError> {
        self.inner.read(key, offset, len, etag).await
    }
    async fn delete(&self, key: &str) -> Result<bool, keyhole::store::objects::ObjectError> {
        self.inner.delete(key).await
    }
    async fn create_multipart(
        &self,
        key: &str,
    ) -> Result<String, keyhole::store::objects::ObjectError> {
        self.inner.create_multipart(key).await
    }
    async fn begin_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        size: u64,
    ) -> Result<Box<dyn keyhole::store::objects::ObjectWriter>, keyhole::store::objects::ObjectError>
    {
        self.inner.begin_part(key, upload_id, number, size).await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[keyhole::store::objects::StoredPart],
        expected_sha256: Option<&str>,
    ) -> Result<keyhole::store::objects::Assembled, keyhole::store::objects::ObjectError> {
        self.joining.notify_one();
        let _pass = self.gate.acquire().await.expect("gate open");
        self.inner
            .complete_multipart(key, upload_id, parts, expected_sha256)
            .await
    }
    async fn abort_multipart(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<(), keyhole::store::objects::ObjectError> {
        self.inner.abort_multipart(key, upload_id).await
    }
    fn single_writer(&self) -> bool {
        self.inner.single_writer()
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<String>, keyhole::store::objects::ObjectError> {
        self.inner.list(prefix).await
    }
    async fn ping(&self) -> Result<(), keyhole::store::objects::ObjectError> {
        self.inner.ping().await
    }
    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<
        Option<Vec<keyhole::store::objects::StoredPart>>,
        keyhole::store::objects::ObjectError,
    > {
        self.inner.list_parts(key, upload_id).await
    }
}

/// A server state over `dir` (configured by `adjust`) whose joins wait at the returned gate
/// (one permit per join), telling the returned `Notify` when one is waiting.
async fn slow_join_state(
    dir: &std::path::Path,
    adjust: impl FnOnce(&mut keyhole::config::Config),
) -> (
    keyhole::state::SharedState,
    std::sync::Arc<tokio::sync::Notify>,
    std::sync::Arc<tokio::sync::Semaphore>,
) {
    use std::sync::Arc;
    let mut config = common::test_config(dir);
    adjust(&mut config);
    let (state, _) = keyhole::server::build_state(config).await.expect("state");
    let mut state = Arc::try_unwrap(state).ok().expect("the only reference");
    let joining = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    state.objects = Arc::new(SlowJoin {
        inner: state.objects.clone(),
        joining: joining.clone(),
        gate: gate.clone(),
    });
    (Arc::new(state), joining, gate)
}

/// A completion whose client stops waiting (a proxy's read timeout during the join of a large
/// file) goes on to the end: the file is uploaded, and the client's retry is told so, rather
/// than the join being cut off halfway, to start over from nothing on every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_goes_on_when_its_client_stops_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let (state, joining, gate) = slow_join_state(dir.path(), |c| {
        c.part_size = 5 * MIB as u64;
        c.multipart_threshold = 8 * MIB as u64;
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = keyhole::server::router(state.clone())
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = reqwest::Client::new();
    let local = |signed: &str| signed.replace(common::PUBLIC, &base);

    let bytes = pseudo_random(9 * MIB + 5, 53);
    let link: Value = client
        .post(format!("{base}/api/files/upload"))
        .json(&json!({"filename": "big.bin", "contentType": "application/octet-stream", "size": bytes.len()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = link["fileId"].as_str().expect("a file id").to_owned();
    for n in 1..=2 {
        let r = client
            .put(local(&part_url(&link, "parts", n)))
            .body(chunk(&bytes, 5 * MIB, n as usize))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let complete_url = format!("{base}/api/files/{id}/complete");
    let gave_up = client
        .post(&complete_url)
        .timeout(std::time::Duration::from_millis(500))
        .send();
    let (gave_up, ()) = tokio::join!(gave_up, joining.notified());
    assert!(
        gave_up.unwrap_err().is_timeout(),
        "the client stopped waiting"
    );
    // The client is gone; a retry while the join runs is told to come back.
    let r = client
        .post(&complete_url)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .expect("the retry is answered at once");
    assert_eq!(r.status(), 503, "in progress");

    gate.add_permits(1);
    let mut status = Status::Pending;
    for _ in 0..100 {
        status = state.meta.get(&id).await.unwrap().expect("record").status;
        if status == Status::Uploaded {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        status,
        Status::Uploaded,
        "the join went on without its client"
    );
    let r = client.post(&complete_url).send().await.unwrap();
    assert_eq!(r.status(), 409, "the retry finds it uploaded");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "already_uploaded", "{v}");
}

/// A join that outlasts its record's remaining life (seconds here; a large file's join on a
/// slow disk takes minutes) keeps the record pending while it runs: the sweeper, running all
/// along, neither frees the parts being read nor has the joined file refused and removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_outlasting_its_records_expiry_completes() {
    use keyhole::store::{FileRecord, PartRecord};

    let dir = tempfile::tempdir().unwrap();
    let (state, joining, gate) = slow_join_state(dir.path(), |c| {
        c.pending_grace = std::time::Duration::from_secs(2);
        c.client_timeout = std::time::Duration::from_secs(1);
    })
    .await;

    let bytes = pseudo_random(2 * MIB + 9, 47);
    let file_id = keyhole::ids::new_file_id("slow.bin").unwrap();
    let object_key = keyhole::ids::object_key(&file_id);
    let upload_id = state.objects.create_multipart(&object_key).await.unwrap();
    let now = common::now() as i64;
    let record = FileRecord {
        file_id: file_id.clone(),
        original_filename: "slow.bin".into(),
        content_type: "application/octet-stream".into(),
        object_key: object_key.clone(),
        upload_url_generated_at: now * 1000,
        uploaded_at: None,
        size: None,
        declared_size: Some(bytes.len() as u64),
        declared_sha256: Some(sha256_hex(&bytes)),
        sha256: None,
        etag: None,
        status: Status::Pending,
        owner: "alice".into(),
        // One second left.
        ttl: Some(now + 1),
        upload_id: Some(upload_id.clone()),
        part_size: Some(MIB as u64),
    };
    state.meta.create(&record).await.unwrap();
    let mut parts = Vec::new();
    for (i, piece) in bytes.chunks(MIB).enumerate() {
        let n = i as u32 + 1;
        let mut w = state
            .objects
            .begin_part(&object_key, &upload_id, n, piece.len() as u64)
            .await
            .unwrap();
        w.write(bytes::Bytes::copy_from_slice(piece)).await.unwrap();
        let etag = w
            .commit()
            .await
            .unwrap()
            .unwrap_or_else(|| format!("\"{n}\""));
        let part = PartRecord {
            part_number: n,
            size: piece.len() as u64,
            sha256: sha256_hex(piece),
            etag,
        };
        assert!(state
            .meta
            .put_part(&file_id, &upload_id, &part, now)
            .await
            .unwrap());
        parts.push(part);
    }

    let join = {
        let (state, record) = (state.clone(), record.clone());
        tokio::spawn(async move { keyhole::edge::assemble(&state, &record, &parts).await })
    };
    joining.notified().await;
    // Well past the record's expiry, sweeping all the while.
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        keyhole::sweeper::sweep_once(&state).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    gate.add_permits(1);
    let done = join.await.unwrap();
    let done = match done {
        Ok(done) => done,
        Err(e) => panic!("the join completes: {e:?}"),
    };
    assert_eq!(done.size, bytes.len() as u64);
    let stored = state
        .meta
        .get(&file_id)
        .await
        .unwrap()
        .expect("record kept");
    assert_eq!(stored.status, Status::Uploaded);
    assert!(
        dir.path().join("objects").join(&object_key).exists(),
        "the joined file is in place"
    );
}
