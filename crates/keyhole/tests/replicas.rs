//! Stateless replicas: two `keyhole serve` processes on different ports sharing one S3 bucket
//! and one metadata store (PostgreSQL and/or DynamoDB) and one key. Runs when CI's stand-ins are
//! there (`KEYHOLE_TEST_S3_ENDPOINT` plus `KEYHOLE_TEST_POSTGRES_URL` or
//! `KEYHOLE_TEST_DYNAMODB_ENDPOINT`; see scripts/test-services.sh).

mod common;

use common::{create_bucket, pseudo_random, run_id, sha256_hex, TestServer};
use keyhole::config::{Config, Metadata, Storage};
use keyhole::keys::KeySource;
use serde_json::json;

fn shared(config: &mut Config, s3: &str, bucket: &str, metadata: &Metadata, key: &std::path::Path) {
    config.storage = Storage::S3 {
        bucket: bucket.to_owned(),
        prefix: "keyhole".into(),
        endpoint: Some(s3.to_owned()),
    };
    config.metadata = metadata.clone();
    config.key_source = KeySource::File(key.to_owned());
    config.key_pair_id = Some("KREPLICAS".into());
    config.part_size = 5 * 1024 * 1024;
    config.multipart_threshold = 6 * 1024 * 1024;
}

async fn two_replicas(metadata: Metadata) {
    let s3 = std::env::var("KEYHOLE_TEST_S3_ENDPOINT").unwrap();
    let bucket = format!("keyhole-replicas-{}", run_id());
    create_bucket(&s3, &bucket).await;
    let keys = tempfile::tempdir().unwrap();
    keyhole::keyfile::generate_into(
        keys.path(),
        keyhole_sign::KeyAlgorithm::Rsa,
        Some("KREPLICAS"),
    )
    .unwrap();
    let key = keys.path().join("private.pem");
    let a = TestServer::start_with(|c| shared(c, &s3, &bucket, &metadata, &key)).await;
    let b = TestServer::start_with(|c| shared(c, &s3, &bucket, &metadata, &key)).await;

    // Upload through A (API and edge), download through B.
    let bytes = pseudo_random(300_000, 21);
    let link = a
        .upload_link(
            "shared.bin",
            Some(bytes.len() as u64),
            Some(&sha256_hex(&bytes)),
        )
        .await;
    let id = link["fileId"].as_str().unwrap().to_owned();
    assert_eq!(
        a.put(link["uploadUrl"].as_str().unwrap(), bytes.clone())
            .await
            .status(),
        200
    );
    assert_eq!(b.download(&id).await, bytes, "B serves what A stored");
    // A link minted by B works on A's edge.
    let (_, dl) = b.download_link(&id).await;
    let r = a
        .client
        .get(a.local(dl["downloadUrl"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), bytes.as_slice());
    // Write-once across replicas.
    assert_eq!(
        b.put(link["uploadUrl"].as_str().unwrap(), bytes.clone())
            .await
            .status(),
        409
    );

    // A multipart upload whose parts go through different replicas, completed on B.
    let big = pseudo_random(11 * 1024 * 1024, 22);
    let (status, multi) = a
        .create_upload(json!({"filename": "big.bin", "contentType": "application/octet-stream", "size": big.len()}))
        .await;
    assert_eq!(status, 200, "{multi}");
    let mid = multi["fileId"].as_str().unwrap().to_owned();
    let part = 5 * 1024 * 1024;
    for (i, p) in multi["parts"].as_array().unwrap().iter().enumerate() {
        let server = if i % 2 == 0 { &a } else { &b };
        let body = big[i * part..((i + 1) * part).min(big.len())].to_vec();
        let r = server
            .client
            .put(server.local(p["url"].as_str().unwrap()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "part {}", i + 1);
    }
    let r = b
        .client
        .post(b.url(&format!("/api/files/{mid}/complete")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(a.download(&mid).await, big, "S3 assembled the parts");

    // Both list both; a delete on A is seen by B.
    for server in [&a, &b] {
        let ids: Vec<String> = server
            .list_all()
            .await
            .iter()
            .map(|f| f["fileId"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.contains(&id) && ids.contains(&mid), "{ids:?}");
    }
    let r = a.delete_file(&id).await;
    assert_eq!(r.status(), 200);
    assert_eq!(b.download_link(&id).await.0, 404);
}

#[tokio::test]
async fn two_replicas_on_s3_and_postgres() {
    let (Ok(_), Ok(url)) = (
        std::env::var("KEYHOLE_TEST_S3_ENDPOINT"),
        std::env::var("KEYHOLE_TEST_POSTGRES_URL"),
    ) else {
        eprintln!("SKIPPED: replicas on S3 + PostgreSQL (set KEYHOLE_TEST_S3_ENDPOINT and KEYHOLE_TEST_POSTGRES_URL; CI does)");
        return;
    };
    two_replicas(Metadata::Postgres(url)).await;
}

#[tokio::test]
async fn two_replicas_on_s3_and_dynamodb() {
    let (Ok(_), Ok(endpoint)) = (
        std::env::var("KEYHOLE_TEST_S3_ENDPOINT"),
        std::env::var("KEYHOLE_TEST_DYNAMODB_ENDPOINT"),
    ) else {
        eprintln!("SKIPPED: replicas on S3 + DynamoDB (set KEYHOLE_TEST_S3_ENDPOINT and KEYHOLE_TEST_DYNAMODB_ENDPOINT; CI does)");
        return;
    };
    two_replicas(Metadata::DynamoDb {
        table: format!("keyhole-replicas-{}", run_id()),
        endpoint: Some(endpoint),
        create: true,
    })
    .await;
}
