//! Every metadata backend passes the same behavioural suite (`keyhole::store::conformance`):
//! SQLite always; PostgreSQL when `KEYHOLE_TEST_POSTGRES_URL` is set; DynamoDB when
//! `KEYHOLE_TEST_DYNAMODB_ENDPOINT` names a DynamoDB-compatible server (moto). The race checks
//! (`run_concurrent`) run where the server makes conditional writes atomic: SQLite, PostgreSQL,
//! and DynamoDB only with `KEYHOLE_TEST_DYNAMODB_ATOMIC=1` (not moto). CI starts the servers
//! with `scripts/test-services.sh`; locally:
//!
//! ```text
//! eval "$(bash scripts/test-services.sh start)"
//! cargo test -p keyhole --test meta_conformance -- --nocapture
//! ```

use std::sync::Arc;

use keyhole::store::conformance;
use keyhole::store::dynamodb::DynamoStore;
use keyhole::store::postgres::PostgresStore;
use keyhole::store::sqlite::SqliteStore;
use keyhole::store::MetaStore;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("meta.db")).unwrap());
    conformance::run(store.clone()).await;
    conformance::run_concurrent(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let Some(url) = env("KEYHOLE_TEST_POSTGRES_URL") else {
        eprintln!(
            "SKIPPED: PostgreSQL metadata conformance (set KEYHOLE_TEST_POSTGRES_URL; \
             `eval \"$(bash scripts/test-services.sh start)\"` does)"
        );
        return;
    };
    let store = PostgresStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    // Connecting again finds the schema current and migrates nothing.
    let again = PostgresStore::connect(&url)
        .await
        .expect("second connect over an existing schema");
    again.ping().await.expect("ping");
    let store = Arc::new(store);
    conformance::run(store.clone()).await;
    conformance::run_concurrent(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb() {
    let Some(endpoint) = env("KEYHOLE_TEST_DYNAMODB_ENDPOINT") else {
        eprintln!(
            "SKIPPED: DynamoDB metadata conformance (set KEYHOLE_TEST_DYNAMODB_ENDPOINT; \
             `eval \"$(bash scripts/test-services.sh start)\"` does)"
        );
        return;
    };
    let mut random = [0u8; 6];
    openssl::rand::rand_bytes(&mut random).unwrap();
    let table = format!("keyhole-conformance-{}", hex::encode(random));
    let store = DynamoStore::connect(&table, Some(&endpoint))
        .await
        .unwrap_or_else(|e| panic!("client for {endpoint}: {e}"));
    assert!(
        store.ping().await.is_err(),
        "ping fails while the table does not exist"
    );
    store.create_table_if_missing().await.unwrap_or_else(|e| {
        panic!(
            "create table {table} at {endpoint}: {e} (credentials and region come from the \
             environment: AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
             for moto, as `bash scripts/test-services.sh env` prints)"
        )
    });
    store
        .create_table_if_missing()
        .await
        .expect("creating an existing table is a no-op");
    let store = Arc::new(store);
    conformance::run(store.clone()).await;
    if env("KEYHOLE_TEST_DYNAMODB_ATOMIC").is_some() {
        conformance::run_concurrent(store).await;
    } else {
        eprintln!(
            "SKIPPED: DynamoDB race checks (moto does not make conditional writes atomic across \
             its threads; set KEYHOLE_TEST_DYNAMODB_ATOMIC=1 against DynamoDB or DynamoDB Local)"
        );
    }
}
