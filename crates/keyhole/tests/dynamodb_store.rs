//! What the DynamoDB store asks of DynamoDB, seen through an HTTP proxy between the store and a
//! DynamoDB-compatible server (moto, from `scripts/test-services.sh`): the sweep reads expired
//! items through the expiry index and never scans the table; a listing past many expired records
//! not yet swept answers after a bounded number of queries; a table from before the expiry index
//! gets it, and its items their shard; single-item writes wait out a transaction in flight on
//! their item; and, with S3 storage (moto), a multipart upload whose record the store refused is
//! aborted. Skipped (with a SKIPPED line) without `KEYHOLE_TEST_DYNAMODB_ENDPOINT`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::{stream, StreamExt};
use keyhole::store::dynamodb::{DynamoStore, EXPIRY_INDEX};
use keyhole::store::{Completion, FileRecord, MetaStore, Status};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn endpoint(what: &str) -> Option<String> {
    let endpoint = env("KEYHOLE_TEST_DYNAMODB_ENDPOINT");
    if endpoint.is_none() {
        eprintln!(
            "SKIPPED: DynamoDB {what} (set KEYHOLE_TEST_DYNAMODB_ENDPOINT; \
             `eval \"$(bash scripts/test-services.sh start)\"` does)"
        );
    }
    endpoint
}

fn table_name() -> String {
    let mut random = [0u8; 6];
    openssl::rand::rand_bytes(&mut random).unwrap();
    format!("keyhole-store-{}", hex::encode(random))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn record(file_id: &str, owner: &str, created: i64, ttl: Option<i64>) -> FileRecord {
    FileRecord {
        file_id: file_id.to_owned(),
        original_filename: "report.pdf".to_owned(),
        content_type: "application/pdf".to_owned(),
        object_key: format!("uploads/{file_id}"),
        upload_url_generated_at: created,
        uploaded_at: None,
        size: None,
        declared_size: Some(10),
        declared_sha256: None,
        sha256: None,
        etag: None,
        status: Status::Pending,
        owner: owner.to_owned(),
        ttl,
        upload_id: None,
        part_size: None,
    }
}

/// Creates the records, sixteen at a time.
async fn create_all(store: &DynamoStore, records: Vec<FileRecord>) {
    stream::iter(records)
        .for_each_concurrent(16, |r| async move {
            store.create(&r).await.expect("create");
        })
        .await;
}

/// An HTTP proxy on 127.0.0.1 in front of the DynamoDB endpoint. It records the operation of
/// every request (`X-Amz-Target` without its `DynamoDB_20120810.` prefix) and can answer a
/// number of requests of one operation with DynamoDB's `TransactionConflictException` instead of
/// forwarding them.
#[derive(Clone)]
struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    operations: Mutex<Vec<String>>,
    conflicts: Mutex<HashMap<String, usize>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            operations: Mutex::new(Vec::new()),
            conflicts: Mutex::new(HashMap::new()),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Proxy { addr, shared }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The operations requested since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.shared.operations.lock().unwrap())
    }

    /// Answers the next `times` requests of `operation` with a transaction conflict.
    fn conflict(&self, operation: &str, times: usize) {
        self.shared
            .conflicts
            .lock()
            .unwrap()
            .insert(operation.to_owned(), times);
    }
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.trim_start_matches("DynamoDB_20120810.").to_owned())
        .unwrap_or_default();
    shared.operations.lock().unwrap().push(operation.clone());
    let inject = {
        let mut conflicts = shared.conflicts.lock().unwrap();
        match conflicts.get_mut(&operation) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    };
    if inject {
        let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionConflictException","message":"Transaction is ongoing for the item"}"#;
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.0")],
            body,
        )
            .into_response();
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = shared
        .http
        .request(method, format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            req = req.header(name, value);
        }
    }
    let reply = match req.send().await {
        Ok(reply) => reply,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = reply.status();
    let mut out = HeaderMap::new();
    for (name, value) in reply.headers() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            out.insert(name.clone(), value.clone());
        }
    }
    let bytes = reply.bytes().await.unwrap_or_default();
    (status, out, bytes).into_response()
}

/// A store on a fresh table, through a fresh proxy.
async fn store_via_proxy(endpoint: &str) -> (DynamoStore, Proxy) {
    let proxy = Proxy::start(endpoint).await;
    let store = DynamoStore::connect(&table_name(), Some(&proxy.url()))
        .await
        .expect("client");
    store.create_table_if_missing().await.expect("create table");
    proxy.take();
    (store, proxy)
}

async fn drop_table(store: &DynamoStore) {
    let _ = store
        .client()
        .delete_table()
        .table_name(store.table())
        .send()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_reads_expired_items_through_the_index() {
    let Some(endpoint) = endpoint("sweep reads") else {
        return;
    };
    let (store, proxy) = store_via_proxy(&endpoint).await;
    let now = now();
    let mut records: Vec<FileRecord> = (0..150)
        .map(|i| record(&format!("live-{i:03}"), "alice", i, Some(now + 3600)))
        .collect();
    records.extend((0..50).map(|i| record(&format!("kept-{i:03}"), "alice", 1000 + i, None)));
    records
        .extend((0..5).map(|i| record(&format!("old-{i}"), "bob", 2000 + i, Some(now - 60 + i))));
    create_all(&store, records).await;
    proxy.take();

    let found = store.expired(now, 100).await.expect("expired");
    let mut ids: Vec<&str> = found.iter().map(|r| r.file_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["old-0", "old-1", "old-2", "old-3", "old-4"]);
    let operations = proxy.take();
    assert!(
        operations.iter().all(|op| op == "Query"),
        "the sweep only queries the index: {operations:?}"
    );
    assert!(
        operations.len() <= 16,
        "one query per shard of the index: {operations:?}"
    );

    let two = store.expired(now, 2).await.expect("expired");
    assert_eq!(two.len(), 2, "the limit holds across shards");
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_past_many_expired_records_answers_after_bounded_reads() {
    let Some(endpoint) = endpoint("bounded listing") else {
        return;
    };
    let (store, proxy) = store_via_proxy(&endpoint).await;
    let now = now();
    // Three live records, then 1,100 newer ones that have expired and not been swept.
    let mut records: Vec<FileRecord> = (0..3)
        .map(|i| record(&format!("live-{i}"), "alice", i, Some(now + 3600)))
        .collect();
    records.extend(
        (0..1100).map(|i| record(&format!("gone-{i:04}"), "alice", 100 + i, Some(now - 1))),
    );
    create_all(&store, records).await;
    proxy.take();

    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls <= 10, "the listing ends");
        let page = store
            .list("alice", now, 2, cursor.as_deref())
            .await
            .expect("list");
        let queries = proxy.take();
        assert!(
            queries.len() <= 10,
            "one listing makes at most ten queries, made {}",
            queries.len()
        );
        listed.extend(page.records.into_iter().map(|r| r.file_id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        listed,
        ["live-2", "live-1", "live-0"],
        "paging on finds every live record, newest first"
    );
    assert!(calls > 1, "the expired records took more than one listing");
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_from_before_the_expiry_index_gets_it_with_its_records() {
    let Some(endpoint) = endpoint("expiry index migration") else {
        return;
    };
    let store = DynamoStore::connect(&table_name(), Some(&endpoint))
        .await
        .expect("client");
    let client = store.client().clone();
    // The table as earlier builds made it: the key and owner-index only.
    let attr = |name: &str, ty| {
        aws_sdk_dynamodb::types::AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ty)
            .build()
            .unwrap()
    };
    let key = |name: &str, ty| {
        aws_sdk_dynamodb::types::KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(ty)
            .build()
            .unwrap()
    };
    use aws_sdk_dynamodb::types::{KeyType, ScalarAttributeType};
    client
        .create_table()
        .table_name(store.table())
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(attr("file_id", ScalarAttributeType::S))
        .attribute_definitions(attr("owner", ScalarAttributeType::S))
        .attribute_definitions(attr("upload_url_generated_at", ScalarAttributeType::N))
        .key_schema(key("file_id", KeyType::Hash))
        .global_secondary_indexes(
            aws_sdk_dynamodb::types::GlobalSecondaryIndex::builder()
                .index_name("owner-index")
                .key_schema(key("owner", KeyType::Hash))
                .key_schema(key("upload_url_generated_at", KeyType::Range))
                .projection(
                    aws_sdk_dynamodb::types::Projection::builder()
                        .projection_type(aws_sdk_dynamodb::types::ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create the old table");
    let now = now();
    let old = record("old-expired", "alice", 1, Some(now - 10));
    let live = record("old-live", "alice", 2, Some(now + 3600));
    for r in [&old, &live] {
        store.create(r).await.expect("create");
        // As an earlier build wrote it: without a shard.
        client
            .update_item()
            .table_name(store.table())
            .key(
                "file_id",
                aws_sdk_dynamodb::types::AttributeValue::S(r.file_id.clone()),
            )
            .update_expression("REMOVE expiry_shard")
            .send()
            .await
            .expect("remove the shard");
    }
    let missing = store.expired(now, 10).await;
    assert!(
        matches!(
            missing,
            Err(keyhole::store::StoreError::Broken(ref why)) if why.contains(EXPIRY_INDEX)
        ),
        "without the index, the sweep's read fails and says which index is missing: {missing:?}"
    );

    store
        .create_table_if_missing()
        .await
        .expect("upgrade the table");
    let described = client
        .describe_table()
        .table_name(store.table())
        .send()
        .await
        .expect("describe");
    assert!(
        described
            .table()
            .unwrap()
            .global_secondary_indexes()
            .iter()
            .any(|i| i.index_name() == Some(EXPIRY_INDEX)),
        "the index was added"
    );
    let found = store.expired(now, 10).await.expect("expired");
    let ids: Vec<&str> = found.iter().map(|r| r.file_id.as_str()).collect();
    assert_eq!(
        ids,
        ["old-expired"],
        "a record written before the index is found"
    );
    assert_eq!(
        store.backfill_expiry_shards().await.expect("backfill"),
        0,
        "a second backfill finds nothing to do"
    );
    store
        .create_table_if_missing()
        .await
        .expect("a current table is left as it is");
    drop_table(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_out_a_transaction_in_flight_on_their_item() {
    let Some(endpoint) = endpoint("transaction conflicts") else {
        return;
    };
    let (store, proxy) = store_via_proxy(&endpoint).await;
    let now = now();
    let r = record("busy", "alice", 1, Some(now + 600));
    store.create(&r).await.expect("create");

    proxy.conflict("UpdateItem", 2);
    assert!(
        store
            .extend_pending("busy", now + 900, now)
            .await
            .expect("extend past two conflicts"),
        "the renewal went through"
    );
    proxy.conflict("UpdateItem", 2);
    let done = Completion {
        size: 10,
        sha256: None,
        etag: "\"e\"".to_owned(),
        uploaded_at: now * 1000,
        ttl: Some(now + 3600),
    };
    assert!(
        store
            .mark_uploaded("busy", &done, now)
            .await
            .expect("complete past two conflicts"),
        "the completion went through"
    );
    assert_eq!(
        store.get("busy").await.unwrap().unwrap().status,
        Status::Uploaded
    );
    proxy.conflict("DeleteItem", 2);
    assert!(
        store
            .delete("busy")
            .await
            .expect("delete past two conflicts"),
        "the delete went through"
    );
    assert!(store.get("busy").await.unwrap().is_none());
    let ops = proxy.take();
    assert_eq!(
        ops.iter().filter(|op| *op == "DeleteItem").count(),
        3,
        "two refused deletes and the one that went through: {ops:?}"
    );
    drop_table(&store).await;
}

/// A multipart upload whose record the metadata store refuses to create is aborted: S3 would
/// otherwise keep an upload no record names, which nothing would ever end. DynamoDB (through the
/// proxy, refusing the record's PutItem) and S3 (moto) as `keyhole serve` uses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_without_its_record_is_aborted() {
    let Some(endpoint) = endpoint("multipart upload without a record") else {
        return;
    };
    let Ok(s3) = std::env::var("KEYHOLE_TEST_S3_ENDPOINT") else {
        eprintln!("SKIPPED: multipart upload without a record (set KEYHOLE_TEST_S3_ENDPOINT)");
        return;
    };
    let proxy = Proxy::start(&endpoint).await;
    let bucket = format!("keyhole-orphan-{}", common::run_id());
    common::create_bucket(&s3, &bucket).await;
    let base = s3.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let table = table_name();
    let s = common::TestServer::start_with(|c| {
        c.storage = keyhole::config::Storage::S3 {
            bucket: bucket.clone(),
            prefix: "keyhole".into(),
            endpoint: Some(s3.clone()),
        };
        c.metadata = keyhole::config::Metadata::DynamoDb {
            table: table.clone(),
            endpoint: Some(proxy.url()),
            create: true,
        };
        c.part_size = 5 * 1024 * 1024;
        c.multipart_threshold = 6 * 1024 * 1024;
    })
    .await;
    let uploads = || async {
        let listing = http
            .get(format!("{base}/{bucket}?uploads"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        listing.matches("<UploadId>").count()
    };

    proxy.conflict("PutItem", 1);
    let (status, v) = s
        .create_upload(serde_json::json!({"filename": "big.bin", "contentType": "application/octet-stream", "size": 12 * 1024 * 1024}))
        .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(uploads().await, 0, "the multipart upload was aborted");

    // The same request once the store takes the record: one upload, named by it.
    let (status, v) = s
        .create_upload(serde_json::json!({"filename": "big.bin", "contentType": "application/octet-stream", "size": 12 * 1024 * 1024}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(uploads().await, 1);
    let store = DynamoStore::connect(&table, Some(&endpoint)).await.unwrap();
    drop_table(&store).await;
}
