//! Every object storage backend passes the same behavioural suite: local disk always, S3 when
//! `KEYHOLE_TEST_S3_ENDPOINT` names an S3-compatible server (CI starts moto; see
//! scripts/test-services.sh).

mod common;

use common::{create_bucket, run_id};
use keyhole::store::conformance_objects;
use keyhole::store::objects::LocalDisk;
use keyhole::store::s3::{S3Settings, S3Storage};

#[tokio::test]
async fn local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let disk = LocalDisk::open(dir.path().join("objects"), dir.path().join("staging")).unwrap();
    conformance_objects::run(&disk, &run_id()).await;
}

#[tokio::test]
async fn s3() {
    let Ok(endpoint) = std::env::var("KEYHOLE_TEST_S3_ENDPOINT") else {
        eprintln!("SKIPPED: S3 conformance (set KEYHOLE_TEST_S3_ENDPOINT; CI does)");
        return;
    };
    let bucket = format!("keyhole-conformance-{}", run_id());
    create_bucket(&endpoint, &bucket).await;
    let store = S3Storage::connect(&S3Settings {
        bucket,
        prefix: "p".into(),
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
    })
    .unwrap();
    conformance_objects::run(&store, &run_id()).await;
}
