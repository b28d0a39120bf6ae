//! A behavioural suite every [`MetaStore`] must pass (SQLite, PostgreSQL, DynamoDB), so the
//! backends are interchangeable. Run by `tests/meta_conformance.rs` against each backend that is
//! available. [`super::sqlite`] is the reference: where this suite and SQLite disagree, the
//! suite is wrong.
//!
//! Every id and owner carries a random per-run prefix and the suite deletes what it created, so
//! it can run against a shared server, also concurrently with other runs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures_util::stream::{self, StreamExt};

use super::{Completion, FileRecord, MetaStore, PartRecord, Status, StoreError, GONE_TTL};

/// State of one run: the prefix, the clock and what to clean up.
struct Ctx {
    store: Arc<dyn MetaStore>,
    run: String,
    /// Epoch seconds the suite treats as "now" (the real clock, so TTL-aware servers agree).
    now: i64,
    created: Mutex<Vec<String>>,
}

impl Ctx {
    fn id(&self, name: &str) -> String {
        format!("{}_{name}", self.run)
    }

    fn owner(&self, name: &str) -> String {
        format!("{}-{name}", self.run)
    }

    /// A pending single-part record.
    fn record(&self, name: &str, owner: &str, created: i64, ttl: Option<i64>) -> FileRecord {
        let id = self.id(name);
        FileRecord {
            object_key: format!("uploads/{id}"),
            file_id: id,
            original_filename: format!("{name}.txt"),
            content_type: "text/plain".into(),
            upload_url_generated_at: created,
            uploaded_at: None,
            size: None,
            declared_size: Some(3),
            declared_sha256: None,
            sha256: None,
            etag: None,
            status: Status::Pending,
            owner: owner.into(),
            ttl,
            upload_id: None,
            part_size: None,
        }
    }

    /// A pending multipart record of upload `upload_id`.
    fn multipart(&self, name: &str, upload_id: &str, ttl: Option<i64>) -> FileRecord {
        let mut r = self.record(name, &self.owner("multi"), self.now * 1000, ttl);
        r.declared_size = Some(1 << 40);
        r.part_size = Some(8 << 20);
        r.upload_id = Some(upload_id.into());
        r
    }

    async fn create(&self, record: &FileRecord) {
        self.remember(&record.file_id);
        self.store
            .create(record)
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", record.file_id));
    }

    fn remember(&self, id: &str) {
        self.created
            .lock()
            .expect("cleanup list")
            .push(id.to_owned());
    }

    async fn get(&self, id: &str) -> Option<FileRecord> {
        self.store
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("get {id}: {e}"))
    }

    async fn must_get(&self, id: &str) -> FileRecord {
        self.get(id)
            .await
            .unwrap_or_else(|| panic!("record {id} should exist"))
    }

    /// Every page of `owner`'s listing at `at` with page size `limit`, checking the cursors.
    async fn all_pages(&self, owner: &str, at: i64, limit: usize) -> Vec<Vec<FileRecord>> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .store
                .list(owner, at, limit, cursor.as_deref())
                .await
                .unwrap_or_else(|e| panic!("list {owner} page {}: {e}", pages.len() + 1));
            assert!(
                page.records.len() <= limit,
                "page {} of {owner} has {} records, more than the limit {limit}",
                pages.len() + 1,
                page.records.len()
            );
            let next = page.next_cursor.clone();
            if next.is_some() {
                assert_eq!(
                    page.records.len(),
                    limit,
                    "page {} of {owner} is short although a next page is announced",
                    pages.len() + 1
                );
            }
            pages.push(page.records);
            assert!(pages.len() <= 1000, "paging of {owner} does not end");
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        pages
    }
}

fn ids(records: &[FileRecord]) -> Vec<String> {
    records.iter().map(|r| r.file_id.clone()).collect()
}

fn part(number: u32, size: u64) -> PartRecord {
    PartRecord {
        part_number: number,
        size,
        sha256: format!("{number:064x}"),
        etag: format!("\"etag-{number}-{size}\""),
    }
}

fn completion(size: u64, ttl: Option<i64>) -> Completion {
    Completion {
        size,
        sha256: Some("ab".repeat(32)),
        etag: format!("\"{}\"", "ab".repeat(16)),
        uploaded_at: 1_700_000_000_123,
        ttl,
    }
}

fn run_id() -> String {
    let mut bytes = [0u8; 8];
    openssl::rand::rand_bytes(&mut bytes).expect("random run id");
    format!("conf{}", hex::encode(bytes))
}

/// Parts stored by [`many_parts`]: more than one `BatchGetItem` (100) or `BatchWriteItem` (25).
const MANY_PARTS: u32 = 130;

impl Ctx {
    fn new(store: Arc<dyn MetaStore>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        Ctx {
            store,
            run: run_id(),
            now,
            created: Mutex::new(Vec::new()),
        }
    }

    /// Deletes every record the run created (best effort).
    async fn clean_up(&self) {
        let created = std::mem::take(&mut *self.created.lock().expect("cleanup list"));
        for id in created {
            let _ = self.store.delete(&id).await;
        }
    }
}

/// Runs every sequential check against `store`, then deletes what it created. Panics, naming
/// the broken behaviour, on the first deviation from the reference semantics.
pub async fn run(store: Arc<dyn MetaStore>) {
    let ctx = Ctx::new(store);
    ctx.store.ping().await.expect("ping answers");
    records(&ctx).await;
    paging(&ctx).await;
    owners(&ctx).await;
    ttl_filtering(&ctx).await;
    completing(&ctx).await;
    expiring(&ctx).await;
    deleting(&ctx).await;
    parts(&ctx).await;
    many_parts(&ctx).await;
    extending(&ctx).await;
    ctx.store
        .ping()
        .await
        .expect("ping answers after the suite");
    ctx.clean_up().await;
}

/// Races between replicas: concurrent creates of one id, concurrent completions of one upload,
/// parts of one upload stored in parallel. Each conditional write must be atomic: exactly one
/// winner, no lost part. For backends whose test server gives that guarantee (SQLite,
/// PostgreSQL, DynamoDB itself; not moto, whose threads interleave check and write).
pub async fn run_concurrent(store: Arc<dyn MetaStore>) {
    let ctx = Ctx::new(store);
    let store = &*ctx.store;
    let now = ctx.now;

    let racer = ctx.record("race", &ctx.owner("race"), 7, None);
    ctx.remember(&racer.file_id);
    let results = futures_util::future::join_all((0..6).map(|_| store.create(&racer))).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let lost = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict)))
        .count();
    assert_eq!(
        (won, lost),
        (1, 5),
        "of concurrent creates of one id, one succeeds and the rest conflict"
    );

    let race = ctx.record("complete-race", &ctx.owner("race"), 5, Some(now + 600));
    ctx.create(&race).await;
    let completions: Vec<Completion> = (0..8).map(|i| completion(i, None)).collect();
    let results = futures_util::future::join_all(
        completions
            .iter()
            .map(|done| store.mark_uploaded(&race.file_id, done, now)),
    )
    .await;
    let wins = results
        .into_iter()
        .map(|r| r.expect("mark"))
        .filter(|&won| won)
        .count();
    assert_eq!(
        wins, 1,
        "of concurrent completions exactly one succeeds ({wins} did)"
    );
    let done = ctx.must_get(&race.file_id).await;
    assert!(
        completions
            .iter()
            .any(|c| done.size == Some(c.size) && done.ttl == c.ttl),
        "the record holds one completion's facts"
    );

    let multi = ctx.multipart("parallel-parts", "up", Some(now + 600));
    ctx.create(&multi).await;
    let id = multi.file_id.as_str();
    let results: Vec<(u32, Result<bool, StoreError>)> = stream::iter((1..=MANY_PARTS).rev())
        .map(|n| async move { (n, store.put_part(id, "up", &part(n, 8 << 20), now).await) })
        .buffer_unordered(8)
        .collect()
        .await;
    for (n, result) in results {
        match result {
            Ok(true) => {}
            Ok(false) => panic!("parallel part {n} was refused"),
            Err(e) => panic!("parallel part {n}: {e}"),
        }
    }
    assert_eq!(
        store.parts(id).await.expect("parts"),
        (1..=MANY_PARTS)
            .map(|n| part(n, 8 << 20))
            .collect::<Vec<_>>(),
        "every part stored in parallel is listed once, by number"
    );
    ctx.clean_up().await;
}

/// create, get, conflicts, round trip of every field.
async fn records(ctx: &Ctx) {
    let store = &*ctx.store;
    let full = FileRecord {
        file_id: ctx.id("full"),
        original_filename: "Report 2024 (final) — ü.pdf".into(),
        content_type: "application/pdf; charset=binary".into(),
        object_key: format!("uploads/{}", ctx.id("full")),
        upload_url_generated_at: 1_700_000_000_001,
        uploaded_at: Some(1_700_000_000_999),
        size: Some(5 << 40),
        declared_size: Some(5 << 40),
        declared_sha256: Some("0f".repeat(32)),
        sha256: Some("0f".repeat(32)),
        etag: Some("\"0f0f\"".into()),
        status: Status::Uploaded,
        owner: ctx.owner("records"),
        ttl: Some(ctx.now + 86_400 * 365),
        upload_id: Some("upload-1".into()),
        part_size: Some(64 << 20),
    };
    ctx.create(&full).await;
    assert_eq!(
        ctx.get(&full.file_id).await.as_ref(),
        Some(&full),
        "a record with every field set reads back unchanged"
    );

    let minimal = FileRecord {
        declared_size: None,
        ..ctx.record("minimal", &ctx.owner("records"), 1, None)
    };
    ctx.create(&minimal).await;
    assert_eq!(
        ctx.get(&minimal.file_id).await.as_ref(),
        Some(&minimal),
        "a record with every optional field absent reads back unchanged"
    );

    assert!(
        ctx.get(&ctx.id("never-created")).await.is_none(),
        "get of an unknown id is None"
    );

    let clash = ctx.record("full", "someone-else", 5, None);
    assert!(
        matches!(store.create(&clash).await, Err(StoreError::Conflict)),
        "creating an existing id is a Conflict"
    );
    assert_eq!(
        ctx.get(&full.file_id).await.as_ref(),
        Some(&full),
        "a refused create leaves the existing record alone"
    );

    // An expired record is still returned by get (the trait says "expired or not").
    let old = ctx.record("expired-get", &ctx.owner("records"), 9, Some(ctx.now - 60));
    ctx.create(&old).await;
    assert_eq!(
        ctx.get(&old.file_id).await.as_ref(),
        Some(&old),
        "get returns expired records too"
    );
}

/// Newest first by (upload_url_generated_at, file_id), cursors, exact and tied pages.
async fn paging(ctx: &Ctx) {
    let store = &*ctx.store;
    let owner = ctx.owner("pager");
    let base = ctx.now * 1000;
    // Created in a shuffled order so insertion order cannot pass for time order.
    let mut order: Vec<i64> = (0..25).collect();
    order.sort_by_key(|i| (i * 7) % 25);
    for i in order {
        let ttl = if i % 2 == 0 {
            None
        } else {
            Some(ctx.now + 3600)
        };
        ctx.create(&ctx.record(&format!("page{i:02}"), &owner, base + i * 10, ttl))
            .await;
    }
    let pages = ctx.all_pages(&owner, ctx.now, 7).await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [7, 7, 7, 4],
        "25 records in pages of 7"
    );
    let listed: Vec<String> = pages.iter().flat_map(|p| ids(p)).collect();
    let expected: Vec<String> = (0..25)
        .rev()
        .map(|i| ctx.id(&format!("page{i:02}")))
        .collect();
    assert_eq!(
        listed, expected,
        "pages list every record once, newest first"
    );

    // A cursor can be used again and gives the same page (it is a position, not a session).
    let first = store.list(&owner, ctx.now, 7, None).await.expect("list");
    let cursor = first.next_cursor.expect("a second page exists");
    let again_a = store
        .list(&owner, ctx.now, 7, Some(&cursor))
        .await
        .expect("list with cursor");
    let again_b = store
        .list(&owner, ctx.now, 7, Some(&cursor))
        .await
        .expect("list with the same cursor again");
    assert_eq!(
        ids(&again_a.records),
        ids(&again_b.records),
        "the same cursor gives the same page"
    );
    assert_eq!(
        ids(&again_a.records),
        expected[7..14],
        "the cursor resumes right after the previous page"
    );

    // A record deleted after its page was served does not break the cursor that points at it.
    let last_of_second = again_a.records.last().expect("second page").file_id.clone();
    let cursor2 = again_a.next_cursor.expect("a third page exists");
    assert!(
        store.delete(&last_of_second).await.expect("delete"),
        "delete a listed record"
    );
    let third = store
        .list(&owner, ctx.now, 7, Some(&cursor2))
        .await
        .expect("list after the cursor's record was deleted");
    assert_eq!(
        ids(&third.records),
        expected[14..21],
        "a cursor whose record was deleted still resumes at the right place"
    );

    // When the records end exactly at a page boundary there is no next cursor.
    let exact = ctx.owner("exact");
    for i in 0..6 {
        ctx.create(&ctx.record(&format!("exact{i}"), &exact, base + i, None))
            .await;
    }
    let pages = ctx.all_pages(&exact, ctx.now, 3).await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3],
        "6 records in pages of 3: two pages and no empty third"
    );
    let one = store.list(&exact, ctx.now, 6, None).await.expect("list");
    assert_eq!(one.records.len(), 6, "a limit equal to the count lists all");
    assert!(
        one.next_cursor.is_none(),
        "no next cursor when the page holds the last record"
    );

    // Records created in the same millisecond: each listed exactly once across pages.
    let ties = ctx.owner("ties");
    for i in 0..5 {
        ctx.create(&ctx.record(&format!("tie{i}"), &ties, base, None))
            .await;
    }
    ctx.create(&ctx.record("tie-newer", &ties, base + 1, None))
        .await;
    ctx.create(&ctx.record("tie-older", &ties, base - 1, None))
        .await;
    let pages = ctx.all_pages(&ties, ctx.now, 2).await;
    let listed: Vec<FileRecord> = pages.into_iter().flatten().collect();
    let unique: HashSet<String> = ids(&listed).into_iter().collect();
    assert_eq!(
        (listed.len(), unique.len()),
        (7, 7),
        "records with equal timestamps are each listed once across pages"
    );
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].upload_url_generated_at >= w[1].upload_url_generated_at),
        "listing with ties stays newest first"
    );
    assert_eq!(listed[0].file_id, ctx.id("tie-newer"), "newest first");
    assert_eq!(
        listed[6].file_id,
        ctx.id("tie-older"),
        "oldest last, after the ties"
    );

    // A limit of 0 is treated as 1 (never an error, never the whole list).
    let tiny = store.list(&owner, ctx.now, 0, None).await.expect("limit 0");
    assert!(tiny.records.len() <= 1, "limit 0 lists at most one record");

    for bad in [
        "!!".to_owned(),
        "not base64 at all".to_owned(),
        "bm8tY29sb24".to_owned(), // "no-colon"
        "YWJjOmlk".to_owned(),    // "abc:id": the time is not a number
        "x".repeat(4096),         // oversized
        "__4".to_owned(),         // decodes to bytes that are not UTF-8
    ] {
        assert!(
            matches!(
                store.list(&owner, ctx.now, 7, Some(&bad)).await,
                Err(StoreError::BadCursor)
            ),
            "cursor {bad:.20?} is refused as BadCursor"
        );
    }
}

/// Each principal sees only its own files.
async fn owners(ctx: &Ctx) {
    let store = &*ctx.store;
    let (alice, bob) = (ctx.owner("alice"), ctx.owner("bob"));
    let base = ctx.now * 1000;
    for i in 0..4 {
        ctx.create(&ctx.record(&format!("alice{i}"), &alice, base + i, None))
            .await;
    }
    for i in 0..3 {
        // Interleaved in time with alice's.
        ctx.create(&ctx.record(&format!("bob{i}"), &bob, base + i, None))
            .await;
    }
    let a = store.list(&alice, ctx.now, 100, None).await.expect("list");
    let b = store.list(&bob, ctx.now, 100, None).await.expect("list");
    assert_eq!(
        ids(&a.records),
        (0..4)
            .rev()
            .map(|i| ctx.id(&format!("alice{i}")))
            .collect::<Vec<_>>(),
        "alice lists exactly her records"
    );
    assert_eq!(
        ids(&b.records),
        (0..3)
            .rev()
            .map(|i| ctx.id(&format!("bob{i}")))
            .collect::<Vec<_>>(),
        "bob lists exactly his records"
    );
    let nobody = store
        .list(&ctx.owner("nobody"), ctx.now, 10, None)
        .await
        .expect("list");
    assert!(
        nobody.records.is_empty() && nobody.next_cursor.is_none(),
        "an owner without files lists nothing and no cursor"
    );
    // A cursor from alice's listing does not reveal alice's files to bob.
    let page = store.list(&alice, ctx.now, 1, None).await.expect("list");
    let cursor = page.next_cursor.expect("alice has more");
    match store.list(&bob, ctx.now, 100, Some(&cursor)).await {
        Ok(p) => assert!(
            p.records.iter().all(|r| r.owner == bob),
            "another owner's cursor never lists that owner's files"
        ),
        Err(StoreError::BadCursor) => {}
        Err(e) => panic!("list with another owner's cursor: {e}"),
    }
}

/// Listing hides records past their TTL, also when most of a page would be expired.
async fn ttl_filtering(ctx: &Ctx) {
    let store = &*ctx.store;
    let now = ctx.now;
    let base = now * 1000;
    let owner = ctx.owner("ttl");
    ctx.create(&ctx.record("ttl-none", &owner, base + 4, None))
        .await;
    ctx.create(&ctx.record("ttl-future", &owner, base + 3, Some(now + 1)))
        .await;
    ctx.create(&ctx.record("ttl-now", &owner, base + 2, Some(now)))
        .await;
    ctx.create(&ctx.record("ttl-past", &owner, base + 1, Some(now - 1)))
        .await;
    let page = store.list(&owner, now, 10, None).await.expect("list");
    assert_eq!(
        ids(&page.records),
        [ctx.id("ttl-none"), ctx.id("ttl-future")],
        "list shows records without TTL or with TTL after now, hides TTL <= now"
    );
    let later = store.list(&owner, now + 1, 10, None).await.expect("list");
    assert_eq!(
        ids(&later.records),
        [ctx.id("ttl-none")],
        "a record is hidden from the second its TTL is reached"
    );

    // Nine expired records newer than three live ones: pages are still full.
    let sparse = ctx.owner("sparse");
    for i in 0..12 {
        let ttl = if i >= 3 {
            Some(now - 100)
        } else {
            Some(now + 100)
        };
        ctx.create(&ctx.record(&format!("sparse{i:02}"), &sparse, base + i, ttl))
            .await;
    }
    let first = store.list(&sparse, now, 2, None).await.expect("list");
    assert_eq!(
        ids(&first.records),
        [ctx.id("sparse02"), ctx.id("sparse01")],
        "expired records do not make a page short"
    );
    let cursor = first
        .next_cursor
        .expect("a next page is announced while live records remain");
    let second = store
        .list(&sparse, now, 2, Some(&cursor))
        .await
        .expect("list");
    assert_eq!(
        ids(&second.records),
        [ctx.id("sparse00")],
        "the last live record follows"
    );
    assert!(second.next_cursor.is_none(), "and nothing after it");

    let gone = ctx.owner("all-expired");
    for i in 0..5 {
        ctx.create(&ctx.record(&format!("gone{i}"), &gone, base + i, Some(now - 5)))
            .await;
    }
    let page = store.list(&gone, now, 2, None).await.expect("list");
    assert!(
        page.records.is_empty() && page.next_cursor.is_none(),
        "an owner whose files all expired lists nothing and no cursor"
    );
}

/// mark_uploaded only completes a pending, unexpired record, once.
async fn completing(ctx: &Ctx) {
    let store = &*ctx.store;
    let now = ctx.now;
    let owner = ctx.owner("complete");
    let r = ctx.record("done", &owner, 1, Some(now + 600));
    ctx.create(&r).await;
    let done = completion(3, Some(now + 86_400));
    assert!(
        store
            .mark_uploaded(&r.file_id, &done, now)
            .await
            .expect("mark"),
        "a pending, unexpired record completes"
    );
    let got = ctx.must_get(&r.file_id).await;
    assert_eq!(
        got,
        FileRecord {
            status: Status::Uploaded,
            size: Some(3),
            sha256: done.sha256.clone(),
            etag: Some(done.etag.clone()),
            uploaded_at: Some(done.uploaded_at),
            ttl: done.ttl,
            ..r.clone()
        },
        "completion records size, sha256, etag, time and the new TTL, and nothing else"
    );
    let other = completion(99, None);
    assert!(
        !store
            .mark_uploaded(&r.file_id, &other, now)
            .await
            .expect("mark"),
        "a record completes only once"
    );
    assert_eq!(
        ctx.must_get(&r.file_id).await,
        got,
        "a refused completion changes nothing"
    );

    let expired = ctx.record("late", &owner, 2, Some(now - 1));
    ctx.create(&expired).await;
    assert!(
        !store
            .mark_uploaded(&expired.file_id, &done, now)
            .await
            .expect("mark"),
        "an expired pending record cannot complete"
    );
    assert_eq!(
        ctx.must_get(&expired.file_id).await,
        expired,
        "and stays as it was"
    );

    let edge = ctx.record("edge", &owner, 3, Some(now));
    ctx.create(&edge).await;
    assert!(
        !store
            .mark_uploaded(&edge.file_id, &done, now)
            .await
            .expect("mark"),
        "a record whose TTL is exactly now is expired"
    );
    assert!(
        store
            .mark_uploaded(&edge.file_id, &done, now - 1)
            .await
            .expect("mark"),
        "the same record completes a second earlier"
    );

    let missing = ctx.id("no-such-upload");
    ctx.remember(&missing);
    assert!(
        !store
            .mark_uploaded(&missing, &done, now)
            .await
            .expect("mark"),
        "a missing record cannot complete"
    );
    assert!(
        ctx.get(&missing).await.is_none(),
        "completing a missing record does not create one"
    );

    // Completion without a checksum and without retention: both are cleared, the file is kept.
    let keep = ctx.record("keep", &owner, 4, Some(now + 600));
    ctx.create(&keep).await;
    let plain = Completion {
        size: 3,
        sha256: None,
        etag: "\"s3-etag\"".into(),
        uploaded_at: 5,
        ttl: None,
    };
    assert!(
        store
            .mark_uploaded(&keep.file_id, &plain, now)
            .await
            .expect("mark"),
        "completes"
    );
    let got = ctx.must_get(&keep.file_id).await;
    assert_eq!(got.ttl, None, "a completion without TTL keeps the file");
    assert_eq!(got.sha256, None, "a completion without sha256 stores none");
    assert_eq!(got.etag.as_deref(), Some("\"s3-etag\""), "etag stored");
}

/// expire, expired, delete_expired: the sweeper's protocol.
async fn expiring(ctx: &Ctx) {
    let store = &*ctx.store;
    let now = ctx.now;
    let owner = ctx.owner("sweep");
    let base = now * 1000;
    let keep = ctx.record("sweep-keep", &owner, base + 3, None);
    let live = ctx.record("sweep-live", &owner, base + 2, Some(now + 600));
    let old = ctx.record("sweep-old", &owner, base + 1, Some(now - 600));
    let forever = ctx.record("sweep-forever", &owner, base, None);
    for r in [&keep, &live, &old, &forever] {
        ctx.create(r).await;
    }

    assert!(
        store.expire(&keep.file_id, now).await.expect("expire"),
        "expire of an existing record"
    );
    assert_eq!(
        ctx.must_get(&keep.file_id).await.ttl,
        Some(now),
        "expire sets the TTL to now"
    );
    let listed = store.list(&owner, now, 10, None).await.expect("list");
    assert_eq!(
        ids(&listed.records),
        [ctx.id("sweep-live"), ctx.id("sweep-forever")],
        "an expired record leaves the listing at once"
    );
    let missing = ctx.id("sweep-missing");
    ctx.remember(&missing);
    assert!(
        !store.expire(&missing, now).await.expect("expire"),
        "expire of a missing record is false"
    );
    assert!(
        ctx.get(&missing).await.is_none(),
        "expire does not create a record"
    );

    let expired = store.expired(now, 10_000).await.expect("expired");
    assert!(
        expired.iter().all(|r| r.ttl.is_some_and(|t| t <= now)),
        "expired lists only records whose TTL has passed"
    );
    let mine: HashSet<String> = expired
        .iter()
        .map(|r| r.file_id.clone())
        .filter(|id| id.starts_with(&ctx.id("sweep-")))
        .collect();
    assert_eq!(
        mine,
        HashSet::from([keep.file_id.clone(), old.file_id.clone()]),
        "expired finds the expired and the explicitly expired record, not the live one"
    );
    assert!(
        store.expired(now, 1).await.expect("expired").len() <= 1,
        "expired honours its limit"
    );
    assert!(
        store.expired(now, 0).await.expect("expired").is_empty(),
        "a limit of 0 returns nothing"
    );

    // The sweeper's claim: only a record still expired at `now`, and then expired for every
    // clock, so an edge on a replica whose clock runs behind cannot complete it.
    let claim = ctx.record("sweep-claim", &owner, base - 1, Some(now - 5));
    ctx.create(&claim).await;
    for (id, why) in [
        (&live.file_id, "a live record"),
        (&forever.file_id, "a record without TTL"),
        (&missing, "a missing record"),
    ] {
        assert!(
            !store.claim_expired(id, now).await.expect("claim_expired"),
            "claim_expired of {why} is false"
        );
    }
    assert_eq!(ctx.must_get(&live.file_id).await.ttl, Some(now + 600));
    assert!(
        !store
            .claim_expired(&claim.file_id, now - 10)
            .await
            .expect("claim_expired"),
        "claim_expired judges expiry at the given instant"
    );
    assert!(
        store
            .claim_expired(&claim.file_id, now)
            .await
            .expect("claim_expired"),
        "claim_expired of an expired record"
    );
    assert_eq!(ctx.must_get(&claim.file_id).await.ttl, Some(GONE_TTL));
    assert!(
        !store
            .mark_uploaded(&claim.file_id, &completion(3, None), now - 3600)
            .await
            .expect("mark_uploaded"),
        "a claimed record cannot be completed, even by a clock an hour behind"
    );
    assert!(
        store
            .delete_expired(&claim.file_id, now)
            .await
            .expect("delete_expired"),
        "a claimed record is deleted as expired"
    );

    assert!(
        !store
            .delete_expired(&live.file_id, now)
            .await
            .expect("delete_expired"),
        "delete_expired keeps an unexpired record"
    );
    assert!(
        ctx.get(&live.file_id).await.is_some(),
        "the unexpired record is still there"
    );
    assert!(
        !store
            .delete_expired(&forever.file_id, now)
            .await
            .expect("delete_expired"),
        "delete_expired keeps a record without TTL"
    );
    // The sweeper's guard: the record was seen expired at `now`, but is judged at an earlier
    // instant (or completed meanwhile with a new TTL): it stays.
    assert!(
        !store
            .delete_expired(&keep.file_id, now - 1)
            .await
            .expect("delete_expired"),
        "delete_expired judges expiry at the given instant"
    );
    assert!(
        store
            .delete_expired(&old.file_id, now)
            .await
            .expect("delete_expired"),
        "delete_expired removes an expired record"
    );
    assert!(ctx.get(&old.file_id).await.is_none(), "and it is gone");
    assert!(
        !store
            .delete_expired(&old.file_id, now)
            .await
            .expect("delete_expired"),
        "a second delete_expired finds nothing"
    );
    assert!(
        !store
            .delete_expired(&missing, now)
            .await
            .expect("delete_expired"),
        "delete_expired of a missing record is false"
    );
}

/// delete is unconditional and reports whether there was a record.
async fn deleting(ctx: &Ctx) {
    let store = &*ctx.store;
    let r = ctx.record("delete-me", &ctx.owner("delete"), 1, Some(ctx.now - 1));
    ctx.create(&r).await;
    assert!(
        store.delete(&r.file_id).await.expect("delete"),
        "delete of an (expired) record"
    );
    assert!(
        ctx.get(&r.file_id).await.is_none(),
        "deleted record is gone"
    );
    assert!(
        !store.delete(&r.file_id).await.expect("delete"),
        "a second delete is false"
    );
    assert!(
        !store.delete(&ctx.id("delete-never")).await.expect("delete"),
        "delete of an unknown id is false"
    );
    // The id is free again.
    ctx.create(&r).await;
    assert!(
        ctx.get(&r.file_id).await.is_some(),
        "a deleted id can be reused"
    );
}

/// Parts of a multipart upload: only for the live upload, retries replace, cleanup with record.
async fn parts(ctx: &Ctx) {
    let store = &*ctx.store;
    let now = ctx.now;
    let multi = ctx.multipart("parts", "u1", Some(now + 600));
    ctx.create(&multi).await;
    let id = multi.file_id.as_str();
    assert!(
        store.parts(id).await.expect("parts").is_empty(),
        "a new upload has no parts"
    );
    assert!(
        store
            .put_part(id, "u1", &part(2, 5), now)
            .await
            .expect("put"),
        "store part 2"
    );
    assert!(
        store
            .put_part(id, "u1", &part(1, 5), now)
            .await
            .expect("put"),
        "store part 1"
    );
    assert!(
        store
            .put_part(id, "u1", &part(1, 4), now)
            .await
            .expect("put"),
        "a retried part replaces the stored one"
    );
    assert!(
        !store
            .put_part(id, "other", &part(3, 5), now)
            .await
            .expect("put"),
        "a part of another upload id is refused"
    );
    assert!(
        !store
            .put_part(id, "u1", &part(3, 5), now + 600)
            .await
            .expect("put"),
        "a part after the record's TTL is refused"
    );
    assert_eq!(
        store.parts(id).await.expect("parts"),
        [part(1, 4), part(2, 5)],
        "parts by number, retry replaced, refused parts absent"
    );
    assert_eq!(
        ctx.must_get(id).await,
        multi,
        "storing parts leaves the record as it was"
    );

    let single = ctx.record("parts-single", &ctx.owner("multi"), 1, Some(now + 600));
    ctx.create(&single).await;
    assert!(
        !store
            .put_part(&single.file_id, "u1", &part(1, 5), now)
            .await
            .expect("put"),
        "a record without an upload id takes no parts"
    );
    assert!(
        store
            .parts(&single.file_id)
            .await
            .expect("parts")
            .is_empty(),
        "and has none"
    );

    let missing = ctx.id("parts-missing");
    ctx.remember(&missing);
    assert!(
        !store
            .put_part(&missing, "u1", &part(1, 5), now)
            .await
            .expect("put"),
        "a missing record takes no parts"
    );
    assert!(
        store.parts(&missing).await.expect("parts").is_empty(),
        "a missing record has no parts"
    );
    assert!(
        ctx.get(&missing).await.is_none(),
        "put_part does not create a record"
    );

    // Once complete, no more parts.
    let finished = ctx.multipart("parts-finished", "u2", Some(now + 600));
    ctx.create(&finished).await;
    assert!(
        store
            .put_part(&finished.file_id, "u2", &part(1, 5), now)
            .await
            .expect("put"),
        "a part of a pending upload"
    );
    assert!(
        store
            .mark_uploaded(&finished.file_id, &completion(5, None), now)
            .await
            .expect("mark"),
        "complete"
    );
    assert!(
        !store
            .put_part(&finished.file_id, "u2", &part(2, 5), now)
            .await
            .expect("put"),
        "an uploaded record takes no parts"
    );
    assert_eq!(
        store.parts(&finished.file_id).await.expect("parts"),
        [part(1, 5)],
        "its stored parts remain until delete_parts"
    );
    store
        .delete_parts(&finished.file_id)
        .await
        .expect("delete_parts");
    assert!(
        store
            .parts(&finished.file_id)
            .await
            .expect("parts")
            .is_empty(),
        "delete_parts forgets the parts"
    );
    assert_eq!(
        ctx.must_get(&finished.file_id).await.status,
        Status::Uploaded,
        "delete_parts keeps the record"
    );
    store
        .delete_parts(&finished.file_id)
        .await
        .expect("delete_parts twice is fine");
    store
        .delete_parts(&missing)
        .await
        .expect("delete_parts of a missing record is fine");

    // After delete_parts a pending upload can record parts again (an aborted attempt resumed).
    store.delete_parts(id).await.expect("delete_parts");
    assert!(
        store
            .put_part(id, "u1", &part(7, 5), now)
            .await
            .expect("put"),
        "parts after delete_parts"
    );
    assert_eq!(
        store.parts(id).await.expect("parts"),
        [part(7, 5)],
        "only the new part"
    );

    // Parts go with their record, and do not come back when the id is reused.
    assert!(store.delete(id).await.expect("delete"), "delete the upload");
    assert!(
        store.parts(id).await.expect("parts").is_empty(),
        "parts are deleted with the record"
    );
    ctx.create(&multi).await;
    assert!(
        store.parts(id).await.expect("parts").is_empty(),
        "a record created again under the same id starts without parts"
    );

    let swept = ctx.multipart("parts-swept", "u3", Some(now + 600));
    ctx.create(&swept).await;
    for n in 1..=3 {
        assert!(
            store
                .put_part(&swept.file_id, "u3", &part(n, 5), now)
                .await
                .expect("put"),
            "store part {n}"
        );
    }
    assert!(
        store.expire(&swept.file_id, now).await.expect("expire"),
        "expire"
    );
    assert!(
        !store
            .put_part(&swept.file_id, "u3", &part(4, 5), now)
            .await
            .expect("put"),
        "an expired upload takes no parts"
    );
    assert!(
        store
            .delete_expired(&swept.file_id, now)
            .await
            .expect("delete_expired"),
        "sweep the expired upload"
    );
    assert!(
        store.parts(&swept.file_id).await.expect("parts").is_empty(),
        "parts are deleted with a swept record"
    );
    ctx.create(&swept).await;
    assert!(
        store.parts(&swept.file_id).await.expect("parts").is_empty(),
        "a swept id created again starts without parts"
    );
}

/// More parts than one batch request of any backend carries, stored out of order.
async fn many_parts(ctx: &Ctx) {
    let store = &*ctx.store;
    let now = ctx.now;
    let multi = ctx.multipart("many-parts", "um", Some(now + 600));
    ctx.create(&multi).await;
    let id = multi.file_id.as_str();
    for n in (1..=MANY_PARTS).rev() {
        assert!(
            store
                .put_part(id, "um", &part(n, 8 << 20), now)
                .await
                .unwrap_or_else(|e| panic!("part {n}: {e}")),
            "part {n} of a pending upload is stored"
        );
    }
    let stored = store.parts(id).await.expect("parts");
    assert_eq!(
        stored,
        (1..=MANY_PARTS)
            .map(|n| part(n, 8 << 20))
            .collect::<Vec<_>>(),
        "every part is listed once, by number"
    );
    store.delete_parts(id).await.expect("delete_parts");
    assert!(
        store.parts(id).await.expect("parts").is_empty(),
        "delete_parts forgets many parts"
    );
}

/// extend_pending moves the TTL of a pending, unexpired record only.
async fn extending(ctx: &Ctx) {
    let store = &*ctx.store;
    let now = ctx.now;
    let owner = ctx.owner("extend");
    let r = ctx.record("extend", &owner, 1, Some(now + 10));
    ctx.create(&r).await;
    assert!(
        store
            .extend_pending(&r.file_id, now + 7200, now)
            .await
            .expect("extend"),
        "a pending upload is extended"
    );
    assert_eq!(
        ctx.must_get(&r.file_id).await.ttl,
        Some(now + 7200),
        "to the new TTL"
    );
    assert!(
        store
            .extend_pending(&r.file_id, now + 60, now)
            .await
            .expect("extend"),
        "a pending upload with a later TTL counts as extended"
    );
    assert_eq!(
        ctx.must_get(&r.file_id).await.ttl,
        Some(now + 7200),
        "a TTL is never moved earlier"
    );
    assert!(
        !store
            .extend_pending(&r.file_id, now + 9000, now + 7200)
            .await
            .expect("extend"),
        "an expired upload is not extended"
    );
    assert_eq!(
        ctx.must_get(&r.file_id).await.ttl,
        Some(now + 7200),
        "and keeps its TTL"
    );

    let done = ctx.record("extend-done", &owner, 2, Some(now + 10));
    ctx.create(&done).await;
    assert!(
        store
            .mark_uploaded(&done.file_id, &completion(3, Some(now + 100)), now)
            .await
            .expect("mark"),
        "complete"
    );
    assert!(
        !store
            .extend_pending(&done.file_id, now + 7200, now)
            .await
            .expect("extend"),
        "an uploaded record is not extended"
    );
    assert_eq!(
        ctx.must_get(&done.file_id).await.ttl,
        Some(now + 100),
        "its retention stays"
    );

    let missing = ctx.id("extend-missing");
    ctx.remember(&missing);
    assert!(
        !store
            .extend_pending(&missing, now + 7200, now)
            .await
            .expect("extend"),
        "a missing record is not extended"
    );
    assert!(
        ctx.get(&missing).await.is_none(),
        "extend_pending does not create a record"
    );

    let open = ctx.record("extend-open", &owner, 3, None);
    ctx.create(&open).await;
    assert!(
        store
            .extend_pending(&open.file_id, now + 60, now)
            .await
            .expect("extend"),
        "a pending record without TTL takes one"
    );
    assert_eq!(
        ctx.must_get(&open.file_id).await.ttl,
        Some(now + 60),
        "the new TTL"
    );
}
