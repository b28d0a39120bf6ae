//! The migration from presigned S3 URLs to one domain: links minted `s3-presigned` (SigV4, to
//! the bucket) or `cloudfront` (the public URL) per principal and feature, uploads that bypass
//! the edge completed through the API, and the modes reported in /api/config and /metrics.
//!
//! The S3 tests run against s3s-fs, which checks SigV4 signatures as S3 does
//! (`KEYHOLE_TEST_S3S_*`; see scripts/test-services.sh); they are skipped, saying so, without it.

mod common;

use std::time::{Duration, SystemTime};

use common::{fed_body, part_url, pseudo_random, sha256_hex, S3sEnv, TestServer, PUBLIC};
use keyhole::config::{Config, TokenEntry};
use keyhole::links::{Rollout, UrlMode};
use keyhole::store::objects::{PresignOp, StoredPart};
use keyhole::store::s3::S3Settings;
use keyhole::store::s3_api::S3Api;
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;

fn all_presigned(config: &mut Config) {
    config.url_modes.upload.cloudfront_percent = 0;
    config.url_modes.download.cloudfront_percent = 0;
}

async fn presigned_server(s3s: &S3sEnv) -> TestServer {
    TestServer::start_with(|c| {
        s3s.use_in(c);
        all_presigned(c);
        c.part_size = 5 * MIB as u64;
        c.multipart_threshold = 6 * MIB as u64;
    })
    .await
}

async fn complete(s: &TestServer, file_id: &str) -> (u16, Value) {
    s.post_json(&format!("/api/files/{file_id}/complete"), None, json!({}))
        .await
}

async fn plain_put(url: &str, body: Vec<u8>) -> reqwest::Response {
    reqwest::Client::new()
        .put(url)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn plain_get(url: &str) -> reqwest::Response {
    reqwest::Client::new().get(url).send().await.unwrap()
}

/// The S3 settings of a server's storage, for presigning in the test itself.
fn settings_of(s: &TestServer) -> S3Settings {
    match &s.running().state.config.storage {
        keyhole::config::Storage::S3 {
            bucket,
            prefix,
            endpoint,
        } => S3Settings {
            bucket: bucket.clone(),
            prefix: prefix.clone(),
            endpoint: endpoint.clone(),
            region: None,
        },
        other => panic!("not S3 storage: {other:?}"),
    }
}

#[tokio::test]
async fn presigned_upload_complete_and_download_round_trip() {
    let Some(s3s) = S3sEnv::from_env("s3-presigned round trip on s3s-fs") else {
        return;
    };
    let s = presigned_server(&s3s).await;
    let bytes = pseudo_random(300_000, 1);
    let sha = sha256_hex(&bytes);
    let link = s
        .upload_link("report é.pdf", Some(bytes.len() as u64), Some(&sha))
        .await;
    assert_eq!(link["urlMode"], "s3-presigned");
    let url = link["uploadUrl"].as_str().unwrap();
    assert!(url.starts_with(&s3s.endpoint), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let id = link["fileId"].as_str().unwrap().to_owned();
    assert!(url.contains(&format!("/uploads/{id}?")), "{url}");

    // Nothing arrived yet: completing says so and changes nothing.
    let (status, v) = complete(&s, &id).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "not_arrived");

    let r = plain_put(url, bytes.clone()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    // The edge never saw the bytes: still pending, not downloadable.
    let (status, _) = s.download_link(&id).await;
    assert_eq!(status, 409);

    let (status, done) = complete(&s, &id).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["size"], bytes.len());
    assert_eq!(done["sha256"], sha);
    assert_eq!(done["etag"], format!("\"{sha}\""));
    let file = s.get_json(&format!("/api/files/{id}")).await;
    assert_eq!(file["file"]["status"], "uploaded");
    let (status, _) = complete(&s, &id).await;
    assert_eq!(status, 409);

    let (status, dl) = s.download_link(&id).await;
    assert_eq!(status, 200, "{dl}");
    assert_eq!(dl["urlMode"], "s3-presigned");
    let durl = dl["downloadUrl"].as_str().unwrap();
    assert!(durl.starts_with(&s3s.endpoint), "{durl}");
    assert!(durl.contains("response-content-disposition="), "{durl}");
    assert!(
        durl.contains("response-content-type=application%2Foctet-stream"),
        "{durl}"
    );
    let r = plain_get(durl).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sha256_hex(&r.bytes().await.unwrap()), sha);

    // Both kinds reach the same object: the edge serves it through a cloudfront link.
    let cf = s.sign(&format!("/files/{id}"), common::now() + 600);
    let r = s.client.get(s.local(&cf)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256_hex(&r.bytes().await.unwrap()), sha);
}

#[tokio::test]
async fn completion_refuses_a_wrong_size_and_accepts_the_retry() {
    let Some(s3s) = S3sEnv::from_env("direct upload size check on s3s-fs") else {
        return;
    };
    let s = presigned_server(&s3s).await;
    let bytes = pseudo_random(10_000, 2);
    let link = s.upload_link("a.bin", Some(bytes.len() as u64), None).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let url = link["uploadUrl"].as_str().unwrap();
    let key = link["objectKey"].as_str().unwrap().to_owned();

    // Bytes of another size, stored as a path that signs no length stores them (CloudFront in
    // front of S3): a presigned PUT of another length is refused by S3 itself
    // (`presigned_puts_take_only_the_declared_length`).
    let mut writer = s.running().state.objects.begin_write(&key).await.unwrap();
    writer
        .write(bytes::Bytes::copy_from_slice(&bytes[..9_999]))
        .await
        .unwrap();
    writer.commit().await.unwrap();
    let (status, v) = complete(&s, &id).await;
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("9999") && message.contains("10000"),
        "{message}"
    );
    // The wrong object is gone, the record still pending.
    let head = s.running().state.objects.head(&key).await;
    assert!(head.is_err(), "object kept: {head:?}");
    let file = s.get_json(&format!("/api/files/{id}")).await;
    assert_eq!(file["file"]["status"], "pending");

    // The same link, still valid, takes the right bytes.
    let r = plain_put(url, bytes.clone()).await;
    assert_eq!(r.status(), 200);
    let (status, done) = complete(&s, &id).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["size"], bytes.len());
    // No SHA-256 declared: the ETag is S3's.
    assert!(done["sha256"].is_null());
    assert!(!done["etag"].as_str().unwrap().is_empty());

    // A declared SHA-256 is checked by reading the object back; other bytes are deleted.
    let other = pseudo_random(10_000, 5);
    let link = s
        .upload_link("b.bin", Some(10_000), Some(&sha256_hex(&bytes)))
        .await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let key = link["objectKey"].as_str().unwrap().to_owned();
    let r = plain_put(link["uploadUrl"].as_str().unwrap(), other).await;
    assert_eq!(r.status(), 200);
    let (status, v) = complete(&s, &id).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("SHA-256"),
        "{v}"
    );
    assert!(s.running().state.objects.head(&key).await.is_err());
}

/// Changes one character of the value of query parameter `name`.
fn tamper(url: &str, name: &str) -> String {
    let start = url.find(&format!("{name}=")).unwrap() + name.len() + 1;
    let mut chars: Vec<char> = url.chars().collect();
    let c = chars[start];
    chars[start] = match c {
        '0' => '1',
        '1'..='8' => '9',
        _ => '0',
    };
    chars.into_iter().collect()
}

#[tokio::test]
async fn s3s_refuses_tampered_expired_and_foreign_presigned_urls() {
    let Some(s3s) = S3sEnv::from_env("tampered presigned URLs on s3s-fs") else {
        return;
    };
    let s = presigned_server(&s3s).await;
    let bytes = pseudo_random(4096, 3);
    let link = s.upload_link("t.bin", Some(4096), None).await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let url = link["uploadUrl"].as_str().unwrap().to_owned();
    let key = link["objectKey"].as_str().unwrap().to_owned();

    // A tampered upload URL stores nothing.
    for bad in [
        tamper(&url, "X-Amz-Signature"),
        tamper(&url, "X-Amz-Expires"),
    ] {
        let r = plain_put(&bad, bytes.clone()).await;
        assert_eq!(r.status(), 403, "{bad}");
    }
    assert!(s.running().state.objects.head(&key).await.is_err());
    assert_eq!(plain_put(&url, bytes.clone()).await.status(), 200);
    let (status, v) = complete(&s, &id).await;
    assert_eq!(status, 200, "{v}");

    let (_, dl) = s.download_link(&id).await;
    let durl = dl["downloadUrl"].as_str().unwrap().to_owned();
    assert_eq!(plain_get(&durl).await.status(), 200);
    for (what, bad) in [
        ("signature", tamper(&durl, "X-Amz-Signature")),
        ("expiry", tamper(&durl, "X-Amz-Expires")),
        ("date", tamper(&durl, "X-Amz-Date")),
        (
            "file name",
            durl.replace(
                "response-content-disposition=",
                "response-content-disposition=x",
            ),
        ),
    ] {
        let r = plain_get(&bad).await;
        assert_eq!(r.status(), 403, "{what}: {bad}");
    }
    // A download link cannot write.
    assert_eq!(plain_put(&durl, b"overwrite".to_vec()).await.status(), 403);

    // Signed with another secret for the same access key id.
    let foreign = {
        use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&s3s.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                &s3s.access_key_id,
                format!("not-{}", s3s.secret_access_key),
                None,
                None,
                "test",
            ))
            .build();
        let settings = settings_of(&s);
        let full_key = format!("{}/{key}", settings.prefix);
        aws_sdk_s3::Client::from_conf(conf)
            .get_object()
            .bucket(&settings.bucket)
            .key(full_key)
            .presigned(
                aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(600))
                    .unwrap(),
            )
            .await
            .unwrap()
            .uri()
            .to_owned()
    };
    assert_eq!(plain_get(&foreign).await.status(), 403, "{foreign}");

    // Expired: minted two hours ago for one hour, with the server's own settings and key.
    let api = S3Api::connect(&settings_of(&s)).await;
    let op = PresignOp::Get {
        content_type: "application/octet-stream",
        content_disposition: "attachment",
    };
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    let expired = api
        .presign(&key, &op, two_hours_ago, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(plain_get(&expired).await.status(), 403, "{expired}");
    // The same, minted now, works: the refusal above was the expiry.
    let fresh = api
        .presign(&key, &op, SystemTime::now(), Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(plain_get(&fresh).await.status(), 200);
}

/// A presigned PUT signs the declared length as its `Content-Length`, as Keyhole's edge checks
/// it: S3 refuses a body of another length (before, it stored up to 5 GiB per PUT, part or whole
/// file, which only `/complete` refused, and not at all while nobody called it).
#[tokio::test]
async fn presigned_puts_take_only_the_declared_length() {
    let Some(s3s) = S3sEnv::from_env("presigned PUTs of another length on s3s-fs") else {
        return;
    };
    let s = presigned_server(&s3s).await;
    let bytes = pseudo_random(4096, 21);
    let link = s.upload_link("sized.bin", Some(4096), None).await;
    let url = link["uploadUrl"].as_str().unwrap().to_owned();
    let key = link["objectKey"].as_str().unwrap().to_owned();
    assert!(
        query_value(&url, "X-Amz-SignedHeaders").contains("content-length"),
        "{url}"
    );
    for wrong in [
        bytes[..4095].to_vec(),
        [&bytes[..], b"x"].concat(),
        vec![b'y'; 1 << 20],
    ] {
        refused(&url, wrong).await;
        assert!(s.running().state.objects.head(&key).await.is_err());
    }
    assert_eq!(plain_put(&url, bytes.clone()).await.status(), 200);
    let (status, v) = complete(&s, link["fileId"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{v}");

    // Parts: each URL takes its own part's length (the last one is shorter).
    let big = pseudo_random(11 * MIB + 3, 22);
    let link = s
        .upload_link("parts.bin", Some(big.len() as u64), None)
        .await;
    let ps = link["partSize"].as_u64().unwrap() as usize;
    let id = link["fileId"].as_str().unwrap().to_owned();
    let last = part_url(&link, "parts", 3);
    let first = part_url(&link, "parts", 1);
    refused(&last, big[..ps].to_vec()).await;
    refused(&first, big[2 * ps..].to_vec()).await;
    let parts = s.get_json(&format!("/api/files/{id}/parts")).await;
    assert_eq!(parts["parts"], serde_json::json!([]), "{parts}");
    let r = plain_put(&last, big[2 * ps..].to_vec()).await;
    assert_eq!(r.status(), 200);
}

/// A PUT S3 refuses: `403`, or, for a body it will not read, the connection closed while the
/// body was still being sent.
async fn refused(url: &str, body: Vec<u8>) {
    let len = body.len();
    match reqwest::Client::new().put(url).body(body).send().await {
        Ok(r) => assert_eq!(r.status(), 403, "a body of {len} bytes: {url}"),
        Err(e) => assert!(e.is_request(), "a body of {len} bytes: {e}"),
    }
}

/// The query parameter `name` of `url`, as it appears there.
fn query_value(url: &str, name: &str) -> String {
    url.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn presigned_multipart_parts_listed_from_s3_and_assembled() {
    let Some(s3s) = S3sEnv::from_env("s3-presigned multipart on s3s-fs") else {
        return;
    };
    let s = presigned_server(&s3s).await;
    let bytes = pseudo_random(11 * MIB + 777, 4);
    let sha = sha256_hex(&bytes);
    let link = s
        .upload_link("big.bin", Some(bytes.len() as u64), None)
        .await;
    assert_eq!(link["urlMode"], "s3-presigned");
    assert_eq!(link["partCount"], 3);
    let id = link["fileId"].as_str().unwrap().to_owned();
    let ps = link["partSize"].as_u64().unwrap() as usize;
    let part = |n: usize| bytes[(n - 1) * ps..(n * ps).min(bytes.len())].to_vec();
    for n in [3u64, 1] {
        let u = part_url(&link, "parts", n);
        assert!(
            u.starts_with(&s3s.endpoint) && u.contains("partNumber="),
            "{u}"
        );
        let r = plain_put(&u, part(n as usize)).await;
        assert_eq!(r.status(), 200, "part {n}");
    }
    // Not complete yet: part 2 is missing, and the listing (from S3) says so.
    let (status, v) = complete(&s, &id).await;
    assert_eq!(status, 400, "{v}");
    let parts = s.get_json(&format!("/api/files/{id}/parts")).await;
    assert_eq!(parts["urlMode"], "s3-presigned", "{parts}");
    let numbers: Vec<u64> = parts["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["partNumber"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, vec![1, 3]);
    assert_eq!(parts["parts"][1]["size"], bytes.len() - 2 * ps);
    assert_eq!(parts["missing"].as_array().unwrap().len(), 1);
    let r = plain_put(&part_url(&parts, "missing", 2), part(2)).await;
    assert_eq!(r.status(), 200);

    let (status, done) = complete(&s, &id).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["size"], bytes.len());
    let (_, dl) = s.download_link(&id).await;
    let r = plain_get(dl["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sha256_hex(&r.bytes().await.unwrap()), sha);
}

/// A completion assembled the object on S3, then could not record it (the metadata store
/// failed: the client got 503 and calls again), and S3 has used up the multipart upload. The
/// client's next call, `/complete` again or `GET /parts` to resume, finds the object and records
/// it: 200 for the completion, 409 `already_uploaded` for the listing (which clients take as
/// done).
#[tokio::test]
async fn a_completion_whose_record_update_failed_is_recorded_by_the_retry() {
    let Some(s3s) = S3sEnv::from_env("a retried completion of an assembled upload on s3s-fs")
    else {
        return;
    };
    for (retry, want) in [("complete", 200), ("parts", 409)] {
        let s = presigned_server(&s3s).await;
        let bytes = pseudo_random(11 * MIB + 5, 9);
        let link = s
            .upload_link("assembled.bin", Some(bytes.len() as u64), None)
            .await;
        let id = link["fileId"].as_str().unwrap().to_owned();
        let ps = link["partSize"].as_u64().unwrap() as usize;
        for n in 1..=3usize {
            let u = part_url(&link, "parts", n as u64);
            let r = plain_put(&u, bytes[(n - 1) * ps..(n * ps).min(bytes.len())].to_vec()).await;
            assert_eq!(r.status(), 200, "part {n}");
        }
        let listed = s.get_json(&format!("/api/files/{id}/parts")).await;
        let parts: Vec<StoredPart> = listed["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| StoredPart {
                number: p["partNumber"].as_u64().unwrap() as u32,
                size: p["size"].as_u64().unwrap(),
                etag: p["etag"].as_str().unwrap().to_owned(),
            })
            .collect();
        let state = &s.running().state;
        state
            .objects
            .complete_multipart(
                &format!("uploads/{id}"),
                link["uploadId"].as_str().unwrap(),
                &parts,
                None,
            )
            .await
            .unwrap();
        let (status, answer) = match retry {
            "complete" => complete(&s, &id).await,
            _ => s.get_json_as(&format!("/api/files/{id}/parts"), None).await,
        };
        assert_eq!(status, want, "{retry}: {answer}");
        if retry == "complete" {
            assert_eq!(answer["size"], bytes.len());
        } else {
            assert_eq!(answer["error"]["code"], "already_uploaded", "{answer}");
        }
        let file = s.get_json(&format!("/api/files/{id}")).await;
        assert_eq!(file["file"]["status"], "uploaded", "{retry}: {file}");
        assert_eq!(file["file"]["size"], bytes.len());
        let (_, dl) = s.download_link(&id).await;
        let r = plain_get(dl["downloadUrl"].as_str().unwrap()).await;
        assert_eq!(sha256_hex(&r.bytes().await.unwrap()), sha256_hex(&bytes));
    }
}

/// With S3 storage a part passes through memory whole: the uploads in flight share
/// `upload_buffer_bytes`, and one that would go past it gets 503 `SlowDown` at once (and goes
/// through when called again), so concurrent PUTs cannot exhaust the server's memory.
#[tokio::test]
async fn s3_uploads_in_flight_share_a_bounded_memory_budget() {
    let Some(s3s) = S3sEnv::from_env("the upload memory budget on s3s-fs") else {
        return;
    };
    let s = TestServer::start_with(|c| {
        s3s.use_in(c);
        c.part_size = 40 * MIB as u64;
        c.multipart_threshold = 6 * MIB as u64;
        c.upload_buffer_bytes = 64 * MIB as u64;
    })
    .await;
    let bytes = pseudo_random(80 * MIB, 12);
    let link = s
        .upload_link("budget.bin", Some(bytes.len() as u64), None)
        .await;
    assert_eq!(link["partCount"], 2, "{link}");
    let id = link["fileId"].as_str().unwrap().to_owned();
    let url = |n: u64| s.local(&part_url(&link, "parts", n));

    // Part 1 arrives slowly: half of it, then the server holds its 40 MiB share.
    let (tx, halves) = fed_body();
    let first = {
        let (url, len) = (url(1), 40 * MIB);
        tokio::spawn(async move {
            reqwest::Client::new()
                .put(url)
                .header("content-length", len)
                .body(halves)
                .send()
                .await
                .unwrap()
        })
    };
    tx.send(Ok(bytes::Bytes::copy_from_slice(&bytes[..20 * MIB])))
        .await
        .unwrap();
    let received = || s.running().state.metrics.bytes_received.get();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while received() == 0 {
        assert!(std::time::Instant::now() < deadline, "part 1 never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Part 2 would take the budget past 64 MiB: refused before its body is read (which is held
    // back here, so the answer can be read before the server closes the connection).
    let (_hold, pending) = fed_body();
    let r = reqwest::Client::new()
        .put(url(2))
        .header("content-length", 40 * MIB)
        .body(pending)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.text().await.unwrap().contains("<Code>SlowDown</Code>"));
    // Part 1 finishes and gives its share back; part 2 called again goes through.
    tx.send(Ok(bytes::Bytes::copy_from_slice(
        &bytes[20 * MIB..40 * MIB],
    )))
    .await
    .unwrap();
    drop(tx);
    assert_eq!(first.await.unwrap().status(), 200);
    assert_eq!(
        plain_put(&url(2), bytes[40 * MIB..].to_vec())
            .await
            .status(),
        200
    );
    let (status, done) = complete(&s, &id).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(sha256_hex(&s.download(&id).await), sha256_hex(&bytes));
}

/// The first name `tenant-N` whose rollout bucket satisfies `pred`.
fn tenant_where(pred: impl Fn(u32) -> bool) -> String {
    (0..)
        .map(|i| format!("tenant-{i}"))
        .find(|n| pred(keyhole::links::bucket(n)))
        .unwrap()
}

#[tokio::test]
async fn pins_and_percentages_choose_each_principals_mode() {
    let Some(s3s) = S3sEnv::from_env("link modes per principal on s3s-fs") else {
        return;
    };
    // `low` falls under a 50% rollout, `high` above it; `pilot` and `late` are pinned.
    let low = tenant_where(|b| b < 50);
    let high = tenant_where(|b| b >= 50);
    let names = [
        low.clone(),
        high.clone(),
        "pilot".to_owned(),
        "late".to_owned(),
    ];
    let tokens: Vec<(String, String)> = names
        .iter()
        .map(|_| keyhole::auth::generate_token().unwrap())
        .collect();
    let s = TestServer::start_with(|c| {
        s3s.use_in(c);
        c.tokens = names
            .iter()
            .zip(&tokens)
            .map(|(n, (_, hash))| TokenEntry {
                principal: n.clone(),
                sha256: hash.clone(),
            })
            .collect();
        c.url_modes.upload = Rollout {
            cloudfront_percent: 0,
            pins: vec![("pilot".into(), UrlMode::CloudFront)],
        };
        c.url_modes.download = Rollout {
            cloudfront_percent: 50,
            pins: vec![("late".into(), UrlMode::S3Presigned)],
        };
    })
    .await;
    let token = |name: &str| {
        let i = names.iter().position(|n| n == name).unwrap();
        tokens[i].0.clone()
    };
    let body = json!({"filename": "m.txt", "contentType": "application/octet-stream", "size": 5});
    let mut ids = Vec::new();
    for (name, expected) in [
        (&low, "s3-presigned"),
        (&high, "s3-presigned"),
        (&"pilot".to_owned(), "cloudfront"),
        (&"late".to_owned(), "s3-presigned"),
    ] {
        let t = token(name);
        let (status, link) = s
            .post_json("/api/files/upload", Some(&t), body.clone())
            .await;
        assert_eq!(status, 200, "{link}");
        assert_eq!(link["urlMode"], expected, "upload mode of {name}");
        let url = link["uploadUrl"].as_str().unwrap();
        let id = link["fileId"].as_str().unwrap().to_owned();
        if expected == "cloudfront" {
            assert!(url.starts_with(PUBLIC), "{url}");
            assert_eq!(s.put(url, b"hello".to_vec()).await.status(), 200);
        } else {
            assert!(url.starts_with(&s3s.endpoint), "{url}");
            assert_eq!(plain_put(url, b"hello".to_vec()).await.status(), 200);
            let (status, v) = s
                .post_json(&format!("/api/files/{id}/complete"), Some(&t), json!({}))
                .await;
            assert_eq!(status, 200, "{v}");
        }
        ids.push((name.clone(), id));
    }
    for ((name, id), expected) in ids.iter().zip([
        "cloudfront",   // low: bucket < 50
        "s3-presigned", // high: bucket >= 50
        "s3-presigned", // pilot: pinned for uploads only; bucket of "pilot" decides downloads
        "s3-presigned", // late: pinned
    ]) {
        let expected = if name == "pilot" {
            if keyhole::links::bucket("pilot") < 50 {
                "cloudfront"
            } else {
                "s3-presigned"
            }
        } else {
            expected
        };
        let (status, dl) = s
            .get_json_as(&format!("/api/files/download/{id}"), Some(&token(name)))
            .await;
        assert_eq!(status, 200, "{dl}");
        assert_eq!(dl["urlMode"], expected, "download mode of {name}");
        let url = dl["downloadUrl"].as_str().unwrap();
        let r = if expected == "cloudfront" {
            s.client.get(s.local(url)).send().await.unwrap()
        } else {
            plain_get(url).await
        };
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(&r.bytes().await.unwrap()[..], b"hello");
    }

    // /api/config reports the split, counting pinned principals without naming them.
    let cfg = s.get_json("/api/config").await;
    assert_eq!(
        cfg["urlModes"],
        json!({
            "upload": {"cloudfrontPercent": 0, "pinnedCloudfront": 1, "pinnedS3Presigned": 0},
            "download": {"cloudfrontPercent": 50, "pinnedCloudfront": 0, "pinnedS3Presigned": 1},
        })
    );
    assert!(!cfg.to_string().contains("late") && !cfg.to_string().contains("pilot"));

    // /metrics counts links by feature and mode.
    let cf_downloads = ids
        .iter()
        .filter(|(n, _)| n == &low || (n == "pilot" && keyhole::links::bucket("pilot") < 50))
        .count();
    let metrics = s.metrics().await;
    for (feature, mode, n) in [
        ("upload", "s3-presigned", 3),
        ("upload", "cloudfront", 1),
        ("download", "cloudfront", cf_downloads),
        ("download", "s3-presigned", 4 - cf_downloads),
    ] {
        let line = format!(
            "keyhole_links_minted_by_mode_total{{feature=\"{feature}\",mode=\"{mode}\"}} {n}"
        );
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }
}

#[tokio::test]
async fn by_default_every_link_is_cloudfront_and_says_so() {
    let s = TestServer::start().await;
    let link = s.upload_link("d.txt", Some(3), None).await;
    assert_eq!(link["urlMode"], "cloudfront");
    let id = link["fileId"].as_str().unwrap().to_owned();
    assert_eq!(
        s.put(link["uploadUrl"].as_str().unwrap(), b"abc".to_vec())
            .await
            .status(),
        200
    );
    let (_, dl) = s.download_link(&id).await;
    assert_eq!(dl["urlMode"], "cloudfront");
    // Completing an upload the edge already finished is refused as before.
    let (status, _) = complete(&s, &id).await;
    assert_eq!(status, 409);
    let cfg = s.get_json("/api/config").await;
    assert_eq!(cfg["urlModes"]["upload"]["cloudfrontPercent"], 100);
    assert_eq!(cfg["urlModes"]["download"]["cloudfrontPercent"], 100);
    let metrics = s.metrics().await;
    for line in [
        "keyhole_links_minted_by_mode_total{feature=\"upload\",mode=\"cloudfront\"} 1",
        "keyhole_links_minted_by_mode_total{feature=\"upload\",mode=\"s3-presigned\"} 0",
        "keyhole_links_minted_by_mode_total{feature=\"download\",mode=\"cloudfront\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    let api: Value = s.get_json("/api/openapi.json").await;
    let schemas = &api["components"]["schemas"];
    assert!(
        schemas["UploadLink"]["properties"]["urlMode"].is_object(),
        "{}",
        schemas["UploadLink"]
    );
    assert!(schemas["UrlMode"].is_object());
}

#[tokio::test]
async fn presigned_modes_need_s3_storage() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::test_config(dir.path());
    c.url_modes.download.pins = vec![("late".into(), UrlMode::S3Presigned)];
    let err = keyhole::server::start(c)
        .await
        .err()
        .expect("start refused");
    assert!(err.to_string().contains("--storage s3://"), "{err}");
}

/// `keyhole upload` through `s3-presigned` links: the bytes go straight to the bucket, so the
/// client must complete the upload through the API, or the record stays pending and the sweeper
/// deletes the file when it expires. Whole files and multipart alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_completes_uploads_that_went_straight_to_the_bucket() {
    let Some(s3s) = S3sEnv::from_env("keyhole upload through s3-presigned links") else {
        return;
    };
    let s = presigned_server(&s3s).await;
    let dir = tempfile::tempdir().unwrap();
    for (name, size) in [("small.bin", 200_000), ("large.bin", 11 * MIB)] {
        let bytes = pseudo_random(size, size as u64);
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyhole"))
            .args(["upload", path.to_str().unwrap()])
            .env("KEYHOLE_SERVER", &s.base)
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .env_remove("KEYHOLE_TOKEN")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let file = s.get_json(&format!("/api/files/{id}")).await;
        assert_eq!(file["file"]["status"], "uploaded", "{name}: {file}");
        let (status, dl) = s.download_link(&id).await;
        assert_eq!(status, 200, "{name}: {dl}");
        let r = plain_get(dl["downloadUrl"].as_str().unwrap()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            sha256_hex(&r.bytes().await.unwrap()),
            sha256_hex(&bytes),
            "{name}"
        );
    }
}

/// A file rewritten in place (same size) while its parts go straight to the bucket: S3 assembles
/// whatever parts it got and cannot check the whole file's SHA-256, so the client must notice
/// the change itself and refuse to complete, rather than report success for mixed bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_to_complete_a_file_changed_during_its_upload() {
    let Some(s3s) = S3sEnv::from_env("a file changed during an s3-presigned multipart upload")
    else {
        return;
    };
    let s = presigned_server(&s3s).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("growing.bin");
    std::fs::write(&path, pseudo_random(11 * MIB, 51)).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyhole"))
        .args(["upload", "--parallel", "1", path.to_str().unwrap()])
        .env("KEYHOLE_SERVER", &s.base)
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .env("KEYHOLE_TEST_PART_DELAY_MS", "500")
        .env_remove("KEYHOLE_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the parts go (one at a time, each held back half a second), rewrite the start of
    // the file in place: same size, other bytes, a new modification time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(&pseudo_random(MIB, 52)).unwrap();
        f.sync_all().unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "reported success: {stderr}");
    assert!(
        stderr.contains("changed while it was being uploaded"),
        "{stderr}"
    );
}
