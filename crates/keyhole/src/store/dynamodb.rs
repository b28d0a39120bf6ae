//! File metadata in a DynamoDB table: the AWS shape's store, and a shared store for self-hosted
//! replicas (any DynamoDB-compatible endpoint). Items use the contract's attribute names
//! (`file_id`, `original_filename`, ..., `ttl`), absent optional fields are omitted, and every
//! status change is a `ConditionExpression`, so two replicas can never both complete, extend or
//! sweep the same record.
//!
//! Layout of the table (see [`DynamoStore::create_table_if_missing`]):
//! - key `file_id` (S); on-demand capacity; DynamoDB TTL on `ttl`;
//! - GSI `owner-index`: hash `owner` (S), range `upload_url_generated_at` (N), all attributes
//!   projected. [`MetaStore::list`] reads it newest first. A GSI is eventually consistent, so a
//!   record created a moment ago may be missing from a listing for a moment on AWS.
//! - GSI `expiry-index`: hash `expiry_shard` (N, 0 to 15, from a hash of the file id), range
//!   `ttl` (N), all attributes projected. [`MetaStore::expired`] queries each shard for `ttl <=
//!   now`, so a sweep reads what has expired and nothing else, whatever the table's size. Only
//!   file items with a TTL are in it (part items have neither attribute). Sixteen shards spread
//!   the index's writes over sixteen partition keys; the sweep's sixteen small queries a pass
//!   cost next to nothing.
//! - parts of a multipart upload are items of their own, keyed `{file_id}#part#{nnnnn}` (file
//!   ids never contain `#`), carrying `part_number`, `size`, `sha256`, `etag` and `upload_id`.
//!   The file item keeps the set of stored part numbers in `part_numbers` (NS). A part is
//!   written by one transaction that adds its number to that set under the record's condition
//!   (pending, unexpired, same upload id) and puts the part item, so a part is recorded only for
//!   the live upload and never half-recorded. One map attribute on the file item would be
//!   simpler, but a 10,000-part upload (S3's limit, reachable with the default 5 TiB cap and
//!   8 MiB parts) would not fit DynamoDB's 400 KB item limit; the number set stays under 40 KB.
//!   Part items have no `owner`, so they are never in the GSI, and no `ttl`: they are removed
//!   with their record by [`MetaStore::delete`], [`MetaStore::delete_expired`] and
//!   [`MetaStore::delete_parts`]. Should DynamoDB's own TTL delete an expired file item before
//!   the sweeper does (AWS deletes within days; the sweeper runs every minute), its part items
//!   stay behind unreferenced.
//!
//! Expired items linger until DynamoDB's TTL process removes them (moto never does), so reads
//! that the trait defines as "unexpired" filter on `ttl` themselves.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CreateGlobalSecondaryIndexAction,
    DeleteRequest, GlobalSecondaryIndex, GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType,
    KeysAndAttributes, Projection, ProjectionType, Put, ReturnValue, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, Update,
    WriteRequest,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use super::decode_cursor;
use super::{Completion, FileRecord, MetaStore, Page, PartRecord, Status, StoreError};

/// The GSI that lists a principal's files newest first.
pub const OWNER_INDEX: &str = "owner-index";

/// The GSI that finds expired records: hash [`EXPIRY_SHARD`], range `ttl`.
pub const EXPIRY_INDEX: &str = "expiry-index";

/// Attribute of every file item naming its shard of [`EXPIRY_INDEX`].
const EXPIRY_SHARD: &str = "expiry_shard";

/// Shards of [`EXPIRY_INDEX`]: each value of [`EXPIRY_SHARD`] is one partition key of the index.
const EXPIRY_SHARDS: u32 = 16;

/// Queries one listing may make past expired records not yet swept before it answers with a
/// shorter page (and a cursor to go on), and the items each query after the first reads at
/// least: a listing examines at most about a thousand items.
const LIST_QUERIES: usize = 10;
const LIST_READ: usize = 100;

/// Attribute on the file item holding the numbers of the stored parts.
const PART_NUMBERS: &str = "part_numbers";

/// Attempts at a part transaction that DynamoDB cancels because another transaction on the same
/// file item (a parallel part) is in flight.
const TRANSACTION_ATTEMPTS: u32 = 10;

/// The longest one attempt at a DynamoDB call may take (a single item or a page of them).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one DynamoDB call may take, retries included; past it the call fails with
/// [`StoreError::Backend`] (503, retry later).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);

/// Items one `BatchGetItem` / `BatchWriteItem` call may carry.
const BATCH_GET: usize = 100;
const BATCH_WRITE: usize = 25;

/// DynamoDB-backed [`MetaStore`].
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("dynamodb: {e}"))
}

/// The whole chain of an SDK error (the top level alone says only "service error").
fn sdk<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    backend(DisplayErrorContext(&e))
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(file_id: &str) -> Item {
    HashMap::from([("file_id".to_owned(), s(file_id))])
}

fn part_key(file_id: &str, part_number: u32) -> Item {
    key(&format!("{file_id}#part#{part_number:05}"))
}

fn attribute(name: &str, ty: ScalarAttributeType) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ty)
        .build()
        .map_err(backend)
}

fn key_element(name: &str, ty: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(ty)
        .build()
        .map_err(backend)
}

fn all_attributes() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::All)
        .build()
}

/// A GSI of a new table, with all attributes projected.
fn index(name: &str, hash: &str, range: &str) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key_element(hash, KeyType::Hash)?)
        .key_schema(key_element(range, KeyType::Range)?)
        .projection(all_attributes())
        .build()
        .map_err(backend)
}

/// The paging cursor for a position in [`OWNER_INDEX`] (a query's last evaluated key): the same
/// encoding as a record's, which [`MetaStore::list`] turns back into that key.
fn resume_cursor(position: &Item) -> Result<String, StoreError> {
    Ok(super::encode_cursor(
        req_num(position, "upload_url_generated_at")?,
        &req_str(position, "file_id")?,
    ))
}

/// The [`EXPIRY_INDEX`] shard of a file id: FNV-1a of its bytes. Stable across versions, as the
/// value is stored in the item.
fn expiry_shard(file_id: &str) -> u32 {
    let hash = file_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % EXPIRY_SHARDS
}

fn to_item(r: &FileRecord) -> Item {
    let mut item = HashMap::from([
        ("file_id".to_owned(), s(&r.file_id)),
        (EXPIRY_SHARD.to_owned(), n(expiry_shard(&r.file_id))),
        ("original_filename".to_owned(), s(&r.original_filename)),
        ("content_type".to_owned(), s(&r.content_type)),
        ("object_key".to_owned(), s(&r.object_key)),
        (
            "upload_url_generated_at".to_owned(),
            n(r.upload_url_generated_at),
        ),
        ("status".to_owned(), s(r.status.as_str())),
        ("owner".to_owned(), s(&r.owner)),
    ]);
    let optional = [
        ("uploaded_at", r.uploaded_at.map(n)),
        ("size", r.size.map(n)),
        ("declared_size", r.declared_size.map(n)),
        ("declared_sha256", r.declared_sha256.as_deref().map(s)),
        ("sha256", r.sha256.as_deref().map(s)),
        ("etag", r.etag.as_deref().map(s)),
        ("ttl", r.ttl.map(n)),
        ("upload_id", r.upload_id.as_deref().map(s)),
        ("part_size", r.part_size.map(n)),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_owned(), value);
        }
    }
    item
}

fn opt_str(item: &Item, name: &str) -> Result<Option<String>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
        Some(_) => Err(broken(format!("attribute {name} is not a string"))),
    }
}

/// A stored item that is not a record this version can read.
fn broken(why: String) -> StoreError {
    StoreError::Broken(format!("dynamodb: malformed item: {why}"))
}

fn req_str(item: &Item, name: &str) -> Result<String, StoreError> {
    opt_str(item, name)?.ok_or_else(|| broken(format!("item lacks {name}")))
}

fn opt_num<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| broken(format!("attribute {name} is not a whole number: {v}"))),
        Some(_) => Err(broken(format!("attribute {name} is not a number"))),
    }
}

fn req_num<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    opt_num(item, name)?.ok_or_else(|| broken(format!("item lacks {name}")))
}

/// The record an item holds; `None` for items that are not file records (parts).
fn from_item(item: &Item) -> Result<Option<FileRecord>, StoreError> {
    if !item.contains_key("owner") {
        return Ok(None);
    }
    let status = req_str(item, "status")?;
    Ok(Some(FileRecord {
        file_id: req_str(item, "file_id")?,
        original_filename: req_str(item, "original_filename")?,
        content_type: req_str(item, "content_type")?,
        object_key: req_str(item, "object_key")?,
        upload_url_generated_at: req_num(item, "upload_url_generated_at")?,
        uploaded_at: opt_num(item, "uploaded_at")?,
        size: opt_num(item, "size")?,
        declared_size: opt_num(item, "declared_size")?,
        declared_sha256: opt_str(item, "declared_sha256")?,
        sha256: opt_str(item, "sha256")?,
        etag: opt_str(item, "etag")?,
        status: Status::parse(&status)
            .ok_or_else(|| broken(format!("unknown status {status:?}")))?,
        owner: req_str(item, "owner")?,
        ttl: opt_num(item, "ttl")?,
        upload_id: opt_str(item, "upload_id")?,
        part_size: opt_num(item, "part_size")?,
    }))
}

fn part_from_item(item: &Item) -> Result<PartRecord, StoreError> {
    Ok(PartRecord {
        part_number: req_num(item, "part_number")?,
        size: req_num(item, "size")?,
        sha256: req_str(item, "sha256")?,
        etag: req_str(item, "etag")?,
    })
}

/// The part numbers recorded on a file item.
fn part_numbers(item: Option<&Item>) -> Vec<u32> {
    match item.and_then(|i| i.get(PART_NUMBERS)) {
        Some(AttributeValue::Ns(numbers)) => {
            numbers.iter().filter_map(|v| v.parse().ok()).collect()
        }
        _ => Vec::new(),
    }
}

/// Whether a write failed only because its condition did not hold.
fn condition_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// Whether a single-item write failed because a transaction on the same item (a part being
/// recorded) was in flight: DynamoDB refuses it, and the SDK does not retry that by itself.
fn transaction_conflict<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "TransactionConflictException")
}

/// Sends a single-item write, again after a pause while it meets a transaction in flight on its
/// item ([`transaction_conflict`]), up to [`TRANSACTION_ATTEMPTS`] times. Parts of an upload are
/// recorded by transactions on the file item, so a completion, renewal or delete arriving
/// meanwhile would otherwise fail with 503.
async fn send_past_transactions<T, E, R, F, Fut>(mut send: F) -> Result<T, SdkError<E, R>>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
{
    let mut attempt = 0;
    loop {
        match send().await {
            Err(e) if transaction_conflict(&e) && attempt + 1 < TRANSACTION_ATTEMPTS => {
                attempt += 1;
                back_off(attempt).await;
            }
            result => return result,
        }
    }
}

/// A short pause before retrying, growing with `attempt` and jittered so parallel writers spread.
async fn back_off(attempt: u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let base = 10u64 << attempt.min(6);
    let jitter = u64::from(nanos) % base.max(1);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

/// The condition that a record is pending and not past its TTL at `:now`.
const PENDING_UNEXPIRED: &str =
    "#status = :pending AND (attribute_not_exists(#ttl) OR #ttl > :now)";

impl DynamoStore {
    /// A store on `table`. `endpoint` points the client at a DynamoDB-compatible server (moto,
    /// DynamoDB Local) instead of AWS. Credentials and region come from the usual AWS sources
    /// (environment, profile, instance or task role); with an endpoint and no region configured,
    /// `us-east-1` is assumed. Does not touch the table: see [`Self::create_table_if_missing`].
    /// Each attempt at a call is bounded by 5 s and each call, retries included, by 15 s.
    pub async fn connect(table: &str, endpoint: Option<&str>) -> Result<Self, StoreError> {
        // rustls with ring, which the rest of Keyhole already links, rather than the SDK's default
        // aws-lc (a second crypto library with a long C build).
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let mut config = loader.load().await;
        if config.region().is_none() && endpoint.is_some() {
            config = config
                .into_builder()
                .region(Region::new("us-east-1"))
                .build();
        }
        if config.region().is_none() {
            return Err(backend(
                "no AWS region configured: set AWS_REGION (or a profile's region)",
            ));
        }
        // Bounded calls: without them a response that never comes (a stalled endpoint, a
        // black-holed connection) holds the request forever. Only here, not for S3, whose
        // bodies may take long to stream.
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(&config)
            .timeout_config(timeouts)
            .build();
        Ok(DynamoStore {
            client: Client::from_conf(dynamodb),
            table: table.to_owned(),
        })
    }

    /// The table this store uses.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The SDK client the store calls DynamoDB with (for maintenance and tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A failed query of `index`: when the table lacks the index, [`StoreError::Broken`] saying
    /// so and how to add it (retrying cannot help); otherwise as any failed call.
    fn index_error<E, R>(&self, index: &str, e: SdkError<E, R>) -> StoreError
    where
        E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        // DynamoDB says ValidationException ("The table does not have the specified index"),
        // moto ResourceNotFoundException ("Invalid index").
        let missing = e.as_service_error().and_then(|se| {
            matches!(
                se.code(),
                Some("ValidationException" | "ResourceNotFoundException")
            )
            .then(|| se.message())
            .flatten()
            .filter(|m| m.contains(index))
        });
        if let Some(message) = missing {
            return StoreError::Broken(format!(
                "dynamodb: table {} has no index {index} ({message}): apply the Terraform \
                 module metadata-table, or start `keyhole serve` once with \
                 --dynamodb-create-table, which adds it",
                self.table,
            ));
        }
        sdk(e)
    }

    /// Creates the table (on-demand, key `file_id`, GSIs [`OWNER_INDEX`] and [`EXPIRY_INDEX`]) if
    /// it does not exist, waits until it is active and turns DynamoDB TTL on for `ttl`. A table
    /// made before [`EXPIRY_INDEX`] existed gets it, and its file items their shard (see
    /// [`Self::backfill_expiry_shards`]). For tests and self-hosting; on AWS the table comes from
    /// the deployment's infrastructure code.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let existing = match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(out) => Some(out),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(sdk(e)),
        };
        match existing {
            None => {
                let created = self
                    .client
                    .create_table()
                    .table_name(&self.table)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(attribute("file_id", ScalarAttributeType::S)?)
                    .attribute_definitions(attribute("owner", ScalarAttributeType::S)?)
                    .attribute_definitions(attribute(
                        "upload_url_generated_at",
                        ScalarAttributeType::N,
                    )?)
                    .attribute_definitions(attribute(EXPIRY_SHARD, ScalarAttributeType::N)?)
                    .attribute_definitions(attribute("ttl", ScalarAttributeType::N)?)
                    .key_schema(key_element("file_id", KeyType::Hash)?)
                    .global_secondary_indexes(index(
                        OWNER_INDEX,
                        "owner",
                        "upload_url_generated_at",
                    )?)
                    .global_secondary_indexes(index(EXPIRY_INDEX, EXPIRY_SHARD, "ttl")?)
                    .send()
                    .await;
                match created {
                    Ok(_) => {}
                    // Another replica created it meanwhile.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_resource_in_use_exception()) => {}
                    Err(e) => return Err(sdk(e)),
                }
            }
            Some(out) => {
                let has_expiry_index = out.table().is_some_and(|t| {
                    t.global_secondary_indexes()
                        .iter()
                        .any(|i| i.index_name() == Some(EXPIRY_INDEX))
                });
                if !has_expiry_index {
                    self.add_expiry_index().await?;
                }
            }
        }
        self.wait_active().await?;
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(sdk)?;
        let status = ttl
            .time_to_live_description()
            .and_then(|d| d.time_to_live_status());
        if !matches!(
            status,
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) {
            self.client
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name("ttl")
                        .build()
                        .map_err(backend)?,
                )
                .send()
                .await
                .map_err(sdk)?;
        }
        Ok(())
    }

    /// Adds [`EXPIRY_INDEX`] to a table made before it existed: first gives the file items
    /// written before their shard, then creates the index, which DynamoDB builds from them. In
    /// that order, a start that fails halfway (the index can take long to build on a large
    /// table) runs the backfill again at the next start, as the index is still missing.
    async fn add_expiry_index(&self) -> Result<(), StoreError> {
        let updated = self.backfill_expiry_shards().await?;
        tracing::info!(table = %self.table, index = EXPIRY_INDEX, updated, "adding the expiry index");
        let create = CreateGlobalSecondaryIndexAction::builder()
            .index_name(EXPIRY_INDEX)
            .key_schema(key_element(EXPIRY_SHARD, KeyType::Hash)?)
            .key_schema(key_element("ttl", KeyType::Range)?)
            .projection(all_attributes())
            .build()
            .map_err(backend)?;
        let added = self
            .client
            .update_table()
            .table_name(&self.table)
            .attribute_definitions(attribute(EXPIRY_SHARD, ScalarAttributeType::N)?)
            .attribute_definitions(attribute("ttl", ScalarAttributeType::N)?)
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder().create(create).build(),
            )
            .send()
            .await;
        match added {
            Ok(_) => {}
            // Another replica is adding it (the table is being updated), or has added it.
            Err(e)
                if e.as_service_error().is_some_and(|se| {
                    se.is_resource_in_use_exception()
                        || aws_sdk_dynamodb::error::ProvideErrorMetadata::message(se)
                            .is_some_and(|m| m.contains("already exists"))
                }) => {}
            Err(e) => return Err(sdk(e)),
        }
        Ok(())
    }

    /// Gives every file item that lacks it its [`EXPIRY_SHARD`], so records written before
    /// [`EXPIRY_INDEX`] existed are found by [`MetaStore::expired`]. Reads the whole table once
    /// (a Scan); each update is conditional, so running it twice, or on two replicas at once,
    /// changes nothing more. Returns how many items it updated.
    pub async fn backfill_expiry_shards(&self) -> Result<u64, StoreError> {
        let mut updated = 0;
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("attribute_exists(#owner) AND attribute_not_exists(#shard)")
                .projection_expression("file_id")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_names("#shard", EXPIRY_SHARD)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk)?;
            for item in out.items() {
                let file_id = req_str(item, "file_id")?;
                let req = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(&file_id)))
                    .update_expression("SET #shard = :shard")
                    .condition_expression("attribute_exists(#owner)")
                    .expression_attribute_names("#owner", "owner")
                    .expression_attribute_names("#shard", EXPIRY_SHARD)
                    .expression_attribute_values(":shard", n(expiry_shard(&file_id)));
                match send_past_transactions(|| req.clone().send()).await {
                    Ok(_) => updated += 1,
                    // Deleted meanwhile.
                    Err(e) if condition_failed(&e) => {}
                    Err(e) => return Err(sdk(e)),
                }
            }
            match out.last_evaluated_key() {
                Some(last) if !last.is_empty() => start = Some(last.clone()),
                _ => return Ok(updated),
            }
        }
    }

    async fn wait_active(&self) -> Result<(), StoreError> {
        for _ in 0..240 {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(sdk)?;
            let table = out.table();
            let active = table.and_then(|t| t.table_status()) == Some(&TableStatus::Active);
            let indexes_active = table
                .map(|t| t.global_secondary_indexes())
                .unwrap_or_default()
                .iter()
                .all(|i| {
                    i.index_status()
                        .is_none_or(|s| s.as_str().eq_ignore_ascii_case("ACTIVE"))
                });
            if active && indexes_active {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(backend(format!(
            "table {} and its indexes did not become active within two minutes (an index added \
             to a large table takes longer to build): start again once they are",
            self.table
        )))
    }

    /// The file item's attributes (consistent read), or `None`.
    async fn get_item(&self, file_id: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(file_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk)?;
        Ok(out.item().cloned())
    }

    /// Deletes the part items of `file_id` with the given numbers, retrying what DynamoDB
    /// returns unprocessed.
    async fn delete_part_items(&self, file_id: &str, numbers: &[u32]) -> Result<(), StoreError> {
        for chunk in numbers.chunks(BATCH_WRITE) {
            let mut requests = chunk
                .iter()
                .map(|&number| {
                    DeleteRequest::builder()
                        .set_key(Some(part_key(file_id, number)))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(backend)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut attempt = 0;
            while !requests.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(sdk)?;
                requests = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if !requests.is_empty() {
                    attempt += 1;
                    if attempt > TRANSACTION_ATTEMPTS {
                        return Err(backend("part deletes kept coming back unprocessed"));
                    }
                    back_off(attempt).await;
                }
            }
        }
        Ok(())
    }

    /// After a record was deleted: removes its parts, logging (not failing) when that does not
    /// finish, since the record itself is already gone.
    async fn delete_parts_of_deleted(&self, file_id: &str, old: Option<&Item>) {
        let numbers = part_numbers(old);
        if numbers.is_empty() {
            return;
        }
        if let Err(e) = self.delete_part_items(file_id, &numbers).await {
            tracing::warn!(file_id, error = %e, "deleted a record but not all of its part items");
        }
    }

    /// A conditional delete of a file item; on success its parts follow.
    async fn delete_where(
        &self,
        file_id: &str,
        condition: &str,
        names: &[(&str, &str)],
        values: &[(&str, AttributeValue)],
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(file_id)))
            .condition_expression(condition)
            .return_values(ReturnValue::AllOld);
        for (k, v) in names {
            req = req.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            req = req.expression_attribute_values(*k, v.clone());
        }
        match send_past_transactions(|| req.clone().send()).await {
            Ok(out) => {
                self.delete_parts_of_deleted(file_id, out.attributes())
                    .await;
                Ok(true)
            }
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(sdk(e)),
        }
    }

    /// Sets the record's TTL to `ttl` if it exists and `extra` (a condition on `#ttl`, with its
    /// values) holds; `false` when it does not.
    async fn set_ttl_where(
        &self,
        file_id: &str,
        ttl: i64,
        extra: Option<(&str, &[(&str, AttributeValue)])>,
    ) -> Result<bool, StoreError> {
        let mut condition = "attribute_exists(#owner)".to_owned();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(file_id)))
            .update_expression("SET #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":ttl", n(ttl));
        if let Some((more, values)) = extra {
            condition = format!("{condition} AND {more}");
            for (k, v) in values {
                req = req.expression_attribute_values(*k, v.clone());
            }
        }
        let req = req.condition_expression(condition);
        match send_past_transactions(|| req.clone().send()).await {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(sdk(e)),
        }
    }
}

#[async_trait]
impl MetaStore for DynamoStore {
    async fn create(&self, record: &FileRecord) -> Result<(), StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(record)))
            .condition_expression("attribute_not_exists(file_id)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Err(StoreError::Conflict),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn get(&self, file_id: &str) -> Result<Option<FileRecord>, StoreError> {
        match self.get_item(file_id).await? {
            Some(item) => from_item(&item),
            None => Ok(None),
        }
    }

    async fn mark_uploaded(
        &self,
        file_id: &str,
        d: &Completion,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut set = vec![
            "#status = :uploaded",
            "#size = :size",
            "#etag = :etag",
            "#uploaded_at = :uploaded_at",
        ];
        let mut remove = Vec::new();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(file_id)))
            .condition_expression(PENDING_UNEXPIRED)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#size", "size")
            .expression_attribute_names("#etag", "etag")
            .expression_attribute_names("#uploaded_at", "uploaded_at")
            .expression_attribute_names("#sha256", "sha256")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":uploaded", s(Status::Uploaded.as_str()))
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":size", n(d.size))
            .expression_attribute_values(":etag", s(&d.etag))
            .expression_attribute_values(":uploaded_at", n(d.uploaded_at))
            .expression_attribute_values(":now", n(now));
        match &d.sha256 {
            Some(sha) => {
                set.push("#sha256 = :sha256");
                req = req.expression_attribute_values(":sha256", s(sha));
            }
            None => remove.push("#sha256"),
        }
        match d.ttl {
            Some(ttl) => {
                set.push("#ttl = :ttl");
                req = req.expression_attribute_values(":ttl", n(ttl));
            }
            None => remove.push("#ttl"),
        }
        let mut expr = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let req = req.update_expression(expr);
        match send_past_transactions(|| req.clone().send()).await {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn expire(&self, file_id: &str, now: i64) -> Result<bool, StoreError> {
        self.set_ttl_where(file_id, now, None).await
    }

    async fn delete(&self, file_id: &str) -> Result<bool, StoreError> {
        self.delete_where(
            file_id,
            "attribute_exists(#owner)",
            &[("#owner", "owner")],
            &[],
        )
        .await
    }

    async fn claim_expired(&self, file_id: &str, now: i64) -> Result<bool, StoreError> {
        self.set_ttl_where(
            file_id,
            super::GONE_TTL,
            Some(("#ttl <= :now", &[(":now", n(now))])),
        )
        .await
    }

    async fn delete_expired(&self, file_id: &str, now: i64) -> Result<bool, StoreError> {
        self.delete_where(
            file_id,
            "attribute_exists(#owner) AND #ttl <= :now",
            &[("#owner", "owner"), ("#ttl", "ttl")],
            &[(":now", n(now))],
        )
        .await
    }

    async fn list(
        &self,
        owner: &str,
        now: i64,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let limit = limit.clamp(1, 1000);
        // The cursor names the last record returned; as an index key it is where to resume.
        let mut start = cursor
            .map(decode_cursor)
            .transpose()?
            .map(|(created, file_id)| {
                HashMap::from([
                    ("file_id".to_owned(), s(&file_id)),
                    ("owner".to_owned(), s(owner)),
                    ("upload_url_generated_at".to_owned(), n(created)),
                ])
            });
        // DynamoDB applies `Limit` before the TTL filter, so a page can come back short while
        // more records follow: keep reading until there is one record past the page (then a
        // next page exists) or the index is exhausted. Expired records the sweeper has not
        // removed yet are read and dropped; past LIST_QUERIES queries of them, the page is
        // answered as it is, with a cursor where the reading stopped.
        let mut records = Vec::with_capacity(limit + 1);
        let mut queries = 0;
        loop {
            if queries == LIST_QUERIES {
                let resume = start.as_ref().map(resume_cursor).transpose()?;
                return Ok(Page {
                    records,
                    next_cursor: resume,
                });
            }
            queries += 1;
            let want = limit + 1 - records.len();
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OWNER_INDEX)
                .key_condition_expression("#owner = :owner")
                .filter_expression("attribute_not_exists(#ttl) OR #ttl > :now")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":owner", s(owner))
                .expression_attribute_values(":now", n(now))
                .scan_index_forward(false)
                // The first query reads about the page; once records are being dropped, more
                // at a time.
                .limit(want.max(if queries == 1 { 32 } else { LIST_READ }) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.index_error(OWNER_INDEX, e))?;
            for item in out.items() {
                if let Some(record) = from_item(item)? {
                    records.push(record);
                }
            }
            match out.last_evaluated_key() {
                Some(last) if records.len() <= limit && !last.is_empty() => {
                    start = Some(last.clone());
                }
                _ => break,
            }
        }
        Ok(Page::from_overfetch(records, limit))
    }

    /// Queries [`EXPIRY_INDEX`], shard by shard, for items whose `ttl` is at or before `now`,
    /// oldest first within a shard, until `limit` records are found: a pass reads the expired
    /// items and nothing else. The index is eventually consistent, so a record may show here a
    /// moment after it was renewed; the sweeper's [`MetaStore::claim_expired`] checks the TTL
    /// again on the item itself.
    async fn expired(&self, now: i64, limit: usize) -> Result<Vec<FileRecord>, StoreError> {
        let mut records = Vec::new();
        for shard in 0..EXPIRY_SHARDS {
            let mut start = None;
            while records.len() < limit {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(EXPIRY_INDEX)
                    .key_condition_expression("#shard = :shard AND #ttl <= :now")
                    .expression_attribute_names("#shard", EXPIRY_SHARD)
                    .expression_attribute_names("#ttl", "ttl")
                    .expression_attribute_values(":shard", n(shard))
                    .expression_attribute_values(":now", n(now))
                    .limit((limit - records.len()).min(1000) as i32)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| self.index_error(EXPIRY_INDEX, e))?;
                for item in out.items() {
                    if let Some(record) = from_item(item)? {
                        records.push(record);
                    }
                }
                match out.last_evaluated_key() {
                    Some(last) if !last.is_empty() => start = Some(last.clone()),
                    _ => break,
                }
            }
            if records.len() >= limit {
                break;
            }
        }
        records.truncate(limit);
        Ok(records)
    }

    async fn put_part(
        &self,
        file_id: &str,
        upload_id: &str,
        part: &PartRecord,
        now: i64,
    ) -> Result<bool, StoreError> {
        let record = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(file_id)))
            .update_expression("ADD #parts :number")
            .condition_expression(format!("{PENDING_UNEXPIRED} AND #upload_id = :upload_id"))
            .expression_attribute_names("#parts", PART_NUMBERS)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_names("#upload_id", "upload_id")
            .expression_attribute_values(
                ":number",
                AttributeValue::Ns(vec![part.part_number.to_string()]),
            )
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":upload_id", s(upload_id))
            .build()
            .map_err(backend)?;
        let mut item = part_key(file_id, part.part_number);
        item.extend([
            ("part_number".to_owned(), n(part.part_number)),
            ("size".to_owned(), n(part.size)),
            ("sha256".to_owned(), s(&part.sha256)),
            ("etag".to_owned(), s(&part.etag)),
            ("upload_id".to_owned(), s(upload_id)),
        ]);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(backend)?;
        let items = vec![
            TransactWriteItem::builder().update(record).build(),
            TransactWriteItem::builder().put(put).build(),
        ];
        let mut attempt = 0;
        loop {
            let res = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let e = match res {
                Ok(_) => return Ok(true),
                Err(e) => e,
            };
            let retry = match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => {
                    let codes: Vec<&str> = cancel
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|r| r.code())
                        .collect();
                    if codes.contains(&"ConditionalCheckFailed") {
                        return Ok(false);
                    }
                    // Parallel parts of one file update the same item; DynamoDB cancels all
                    // but one of the overlapping transactions.
                    codes.contains(&"TransactionConflict")
                }
                Some(TransactWriteItemsError::TransactionInProgressException(_))
                | Some(TransactWriteItemsError::InternalServerError(_)) => true,
                // A server error the SDK's own retries did not get past (moto, for one, fails
                // overlapping transactions with a 500). Writing the part again is harmless.
                _ => e
                    .raw_response()
                    .is_some_and(|r| r.status().is_server_error()),
            };
            if retry && attempt + 1 < TRANSACTION_ATTEMPTS {
                attempt += 1;
                back_off(attempt).await;
                continue;
            }
            return Err(sdk(e));
        }
    }

    async fn parts(&self, file_id: &str) -> Result<Vec<PartRecord>, StoreError> {
        let item = self.get_item(file_id).await?;
        let numbers = part_numbers(item.as_ref());
        let mut parts = Vec::with_capacity(numbers.len());
        for chunk in numbers.chunks(BATCH_GET) {
            let mut keys: Vec<Item> = chunk.iter().map(|&n| part_key(file_id, n)).collect();
            let mut attempt = 0;
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(backend)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(sdk)?;
                if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                    for item in items {
                        parts.push(part_from_item(item)?);
                    }
                }
                keys = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .map(|k| k.keys().to_vec())
                    .unwrap_or_default();
                if !keys.is_empty() {
                    attempt += 1;
                    if attempt > TRANSACTION_ATTEMPTS {
                        return Err(backend("part reads kept coming back unprocessed"));
                    }
                    back_off(attempt).await;
                }
            }
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    async fn delete_parts(&self, file_id: &str) -> Result<(), StoreError> {
        let item = self.get_item(file_id).await?;
        let numbers = part_numbers(item.as_ref());
        if numbers.is_empty() {
            return Ok(());
        }
        // Forget the numbers first, then the items: a part stored meanwhile keeps its number
        // (DELETE removes only these), and a reader never sees a number without its item.
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(file_id)))
            .update_expression("DELETE #parts :numbers")
            .condition_expression("attribute_exists(#owner)")
            .expression_attribute_names("#parts", PART_NUMBERS)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(
                ":numbers",
                AttributeValue::Ns(numbers.iter().map(u32::to_string).collect()),
            );
        match send_past_transactions(|| req.clone().send()).await {
            Ok(_) => {}
            // The record went meanwhile; its delete took care of the parts it knew.
            Err(e) if condition_failed(&e) => {}
            Err(e) => return Err(sdk(e)),
        }
        self.delete_part_items(file_id, &numbers).await
    }

    async fn extend_pending(&self, file_id: &str, ttl: i64, now: i64) -> Result<bool, StoreError> {
        let req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(file_id)))
            .update_expression("SET #ttl = :ttl")
            // Never earlier than it is: an update expression cannot take a maximum, so a later
            // TTL fails the condition, and a read tells that case from a record gone or done.
            .condition_expression(format!(
                "{PENDING_UNEXPIRED} AND (attribute_not_exists(#ttl) OR #ttl < :ttl)"
            ))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", n(ttl));
        match send_past_transactions(|| req.clone().send()).await {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(self
                .get(file_id)
                .await?
                .is_some_and(|r| r.status == Status::Pending && !r.is_expired(now))),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // A data-plane read (what the service's role may do), of a key no record has.
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key("keyhole#ping")))
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }
}
