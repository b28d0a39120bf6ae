//! Failure behaviour of the shared metadata backends, beyond the conformance suite: a network
//! partition to PostgreSQL or a stalled DynamoDB endpoint fails calls as transient within a
//! deadline (and the PostgreSQL pool recovers), PostgreSQL ends on the server a statement the
//! store abandoned (`statement_timeout`, unless the URL sets its own) while a long migration
//! still completes, a least-privilege PostgreSQL role can start, malformed stored rows are
//! [`StoreError::Broken`], and a tampered cursor pages like SQLite.
//!
//! PostgreSQL tests run when `KEYHOLE_TEST_POSTGRES_URL` names a server where that user may
//! create databases and roles (each test works in a database of its own and removes it); the
//! DynamoDB one needs AWS-style credentials in the environment (any value). Locally:
//!
//! ```text
//! eval "$(bash scripts/test-services.sh start)"
//! cargo test -p keyhole --test meta_backends
//! ```

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keyhole::store::dynamodb::DynamoStore;
use keyhole::store::postgres::PostgresStore;
use keyhole::store::sqlite::SqliteStore;
use keyhole::store::{FileRecord, MetaStore, Status, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn postgres_url() -> Option<String> {
    let url = env("KEYHOLE_TEST_POSTGRES_URL");
    if url.is_none() {
        eprintln!(
            "SKIPPED: PostgreSQL backend checks (set KEYHOLE_TEST_POSTGRES_URL; \
             `eval \"$(bash scripts/test-services.sh start)\"` does)"
        );
    }
    url
}

fn random_suffix() -> String {
    let mut random = [0u8; 6];
    openssl::rand::rand_bytes(&mut random).unwrap();
    hex::encode(random)
}

/// `url` (`postgres://user@host:port/db?...`) with its authority's `user@host:port` rewritten.
fn with_authority(url: &str, rewrite: impl FnOnce(&str, &str) -> String) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .expect("KEYHOLE_TEST_POSTGRES_URL in URL form (postgres://...)");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, host) = authority.rsplit_once('@').unwrap_or(("", authority));
    format!("{scheme}://{}{tail}", rewrite(user, host))
}

fn with_host(url: &str, addr: SocketAddr) -> String {
    with_authority(url, |user, _| format!("{user}@{addr}"))
}

fn with_user(url: &str, role: &str) -> String {
    with_authority(url, |_, host| format!("{role}@{host}"))
}

fn with_db(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL form");
    let start = rest.find('/').unwrap_or(rest.len());
    let query = rest[start..].find('?').map_or("", |i| &rest[start + i..]);
    format!("{scheme}://{}/{db}{query}", &rest[..start])
}

/// `url` with `options` (a PostgreSQL `options` value, such as `-c search_path=x`) added to its
/// query.
fn with_options(url: &str, options: &str) -> String {
    let encoded = options
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('=', "%3D");
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options={encoded}")
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// Runs cleanup statements, one by one (`DROP DATABASE` refuses to run in a transaction), on a
/// fresh connection from a thread of its own, so they also run when a test panics (from `Drop`,
/// inside or outside a runtime).
fn cleanup(url: String, statements: Vec<String>) {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let client = admin(&url).await;
                for sql in statements {
                    if let Err(e) = client.batch_execute(&sql).await {
                        eprintln!("cleanup {sql:?}: {e}");
                    }
                }
            })
    })
    .join()
    .unwrap();
}

/// A database of the test's own, dropped (with the roles it lists) when the value is.
struct TempDb {
    admin_url: String,
    name: String,
    roles: Vec<String>,
}

impl TempDb {
    async fn new(admin_url: &str) -> Self {
        let name = format!("keyhole_t_{}", random_suffix());
        admin(admin_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        TempDb {
            admin_url: admin_url.to_owned(),
            name,
            roles: Vec::new(),
        }
    }

    fn url(&self) -> String {
        with_db(&self.admin_url, &self.name)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let mut statements = vec![format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )];
        for role in &self.roles {
            statements.push(format!("DROP ROLE IF EXISTS {role}"));
        }
        cleanup(self.admin_url.clone(), statements);
    }
}

fn record(file_id: &str, owner: &str, created: i64) -> FileRecord {
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
        ttl: None,
        upload_id: Some("upload-1".to_owned()),
        part_size: Some(5),
    }
}

/// A TCP proxy on 127.0.0.1 to `upstream` that can be switched to swallow every byte in both
/// directions while keeping the connections open: a network partition the kernel does not see.
struct Partition {
    addr: SocketAddr,
    black_hole: Arc<AtomicBool>,
}

impl Partition {
    async fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let black_hole = Arc::new(AtomicBool::new(false));
        let switch = black_hole.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = TcpStream::connect((upstream.0.as_str(), upstream.1)).await else {
                    continue;
                };
                let (down_read, down_write) = down.into_split();
                let (up_read, up_write) = up.into_split();
                tokio::spawn(pump(down_read, up_write, switch.clone()));
                tokio::spawn(pump(up_read, down_write, switch.clone()));
            }
        });
        Partition { addr, black_hole }
    }

    fn set(&self, partitioned: bool) {
        self.black_hole.store(partitioned, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    black_hole: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if black_hole.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn upstream(url: &str) -> (String, u16) {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        #[allow(unreachable_patterns)]
        other => panic!("KEYHOLE_TEST_POSTGRES_URL must name a TCP host, not {other:?}"),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

/// A partition fails calls with `Backend` within the store's deadline instead of hanging, and
/// once it heals the same store (pool) answers again at once: connections abandoned mid-query
/// (timed out, or dropped by a caller that went away) are not handed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_partition_fails_fast_and_recovers() {
    let Some(url) = postgres_url() else { return };
    let partition = Partition::start(upstream(&url)).await;
    let store = PostgresStore::connect(&with_host(&url, partition.addr))
        .await
        .expect("connect through the proxy");
    // Two pooled connections, both busy at once, so both stay in the pool.
    let (a, b) = tokio::join!(store.get("no-such-file"), store.get("no-such-file"));
    assert!(a.unwrap().is_none() && b.unwrap().is_none());

    partition.set(true);
    // A request whose client goes away mid-query, on one pooled connection.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), store.get("no-such-file"))
            .await
            .is_err(),
        "a partitioned query does not answer"
    );
    // The next call, on the other pooled connection, fails as transient within the store's
    // deadline (10 s) rather than waiting for an answer that cannot come.
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), store.get("no-such-file"))
        .await
        .expect("a store call during a partition ends (it hung for 30 s)");
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(StoreError::Backend(_))),
        "partitioned call: {result:?}"
    );
    assert!(elapsed < Duration::from_secs(14), "took {elapsed:?}");

    partition.set(false);
    for round in 0..3 {
        let result = tokio::time::timeout(Duration::from_secs(3), store.get("no-such-file"))
            .await
            .unwrap_or_else(|_| {
                panic!("call {round} after the partition healed hangs: a stale connection")
            });
        assert!(
            result.expect("call after the partition healed").is_none(),
            "no such file"
        );
    }
    store.ping().await.expect("ping after the partition");
}

/// The store's connections carry server-side limits: a statement ends 2 s after the store's own
/// 10 s bound (so one the store abandoned does not run on), an idle transaction after 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_have_a_statement_timeout() {
    let Some(url) = postgres_url() else { return };
    let db = TempDb::new(&url).await;
    let store = PostgresStore::connect(&db.url()).await.unwrap();
    assert_eq!(limits(&store).await, ["12s", "30s"]);
    drop(store);
}

/// `statement_timeout` and `idle_in_transaction_session_timeout` as the store's connections see
/// them.
async fn limits(store: &PostgresStore) -> [String; 2] {
    let mut values = Vec::new();
    for name in ["statement_timeout", "idle_in_transaction_session_timeout"] {
        values.push(store.server_setting(name).await.unwrap());
    }
    [values[0].clone(), values[1].clone()]
}

/// Behind PgBouncer, which refuses startup options it does not know, the store connects without
/// its server-side limits (and logs how to set them for the role), as it did before it sent
/// them: an upgrade does not stop a replica behind a pooler from starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_behind_pgbouncer_connects_without_the_limits() {
    let Some(url) = env("KEYHOLE_TEST_PGBOUNCER_URL") else {
        eprintln!(
            "SKIPPED: PostgreSQL behind PgBouncer (set KEYHOLE_TEST_PGBOUNCER_URL; \
             `eval \"$(bash scripts/test-services.sh start)\"` does)"
        );
        return;
    };
    let store = PostgresStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect through PgBouncer at {url}: {e}"));
    let id = format!("pgbouncer-{}", random_suffix());
    store.create(&record(&id, "alice", 1)).await.unwrap();
    assert_eq!(store.get(&id).await.unwrap().unwrap().file_id, id);
    assert_ne!(
        store.server_setting("statement_timeout").await.unwrap(),
        "12s",
        "PgBouncer 1.18 refuses the option: not sent"
    );
    assert!(store.delete(&id).await.unwrap());
}

/// A URL whose `options` set a statement timeout keeps it; the limit it does not set is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_url_statement_timeout_wins() {
    let Some(url) = postgres_url() else { return };
    let db = TempDb::new(&url).await;
    let store = PostgresStore::connect(&with_options(&db.url(), "-c statement_timeout=3s"))
        .await
        .unwrap();
    assert_eq!(limits(&store).await, ["3s", "30s"]);
    drop(store);
}

/// A URL whose `options` set something else (a schema of Keyhole's own) keeps it, and gets the
/// limits too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_url_options_keep_search_path() {
    let Some(url) = postgres_url() else { return };
    let db = TempDb::new(&url).await;
    let sql = admin(&db.url()).await;
    sql.batch_execute("CREATE SCHEMA keyhole_own")
        .await
        .unwrap();
    let store = PostgresStore::connect(&with_options(&db.url(), "-c search_path=keyhole_own"))
        .await
        .unwrap();
    assert_eq!(
        store.server_setting("search_path").await.unwrap(),
        "keyhole_own"
    );
    assert_eq!(limits(&store).await, ["12s", "30s"]);
    let migrated: bool = sql
        .query_one("SELECT to_regclass('keyhole_own.files') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(migrated, "the tables are created in the URL's schema");
    drop(store);
}

/// How many backends of the current database, other than the asking one, wait for a lock.
async fn lock_waiters(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A statement the store abandoned (here its caller went away while it waited for a lock) is
/// ended by the server shortly after the store's own bound, rather than waiting on: closing the
/// socket alone does not stop a backend that is not talking to its client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_abandoned_statement_ends_on_the_server() {
    let Some(url) = postgres_url() else { return };
    let db = TempDb::new(&url).await;
    let store = PostgresStore::connect(&db.url()).await.unwrap();
    let holder = admin(&db.url()).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE files IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), store.get("f1"))
            .await
            .is_err(),
        "a query on a locked table waits"
    );
    let watcher = admin(&db.url()).await;
    assert_eq!(
        lock_waiters(&watcher).await,
        1,
        "the abandoned statement still waits on the server"
    );
    // The server's statement timeout is 12 s from the statement's start.
    while lock_waiters(&watcher).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the abandoned statement still runs on the server after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(10),
        "ended after {elapsed:?}"
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    assert!(store.get("f1").await.unwrap().is_none());
    drop(store);
}

/// A migration may outlast the per-call statement timeout: here it waits 13 s for the migration
/// lock another replica holds, and still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migration_outlasts_the_statement_timeout() {
    let Some(url) = postgres_url() else { return };
    let db = TempDb::new(&url).await;
    let holder = admin(&db.url()).await;
    // The store's migration lock (`MIGRATION_LOCK`, 0x6b6579686f6c65: "keyhole" in ASCII).
    holder
        .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(30229394625621093)")
        .await
        .unwrap();
    let connecting = tokio::spawn({
        let url = db.url();
        async move { PostgresStore::connect(&url).await }
    });
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert!(
        !connecting.is_finished(),
        "the migration waits for the lock"
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    let store = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .expect("the migration ends once the lock is free")
        .unwrap()
        .unwrap_or_else(|e| panic!("a migration that waited 13 s for the lock: {e}"));
    store.create(&record("f1", "erin", 1)).await.unwrap();
    drop(store);
}

/// An application role with only SELECT, INSERT, UPDATE and DELETE on the tables (no CREATE on
/// the schema, PostgreSQL 15's default for `public`) starts on a migrated database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_least_privilege_role_starts() {
    let Some(url) = postgres_url() else { return };
    let mut db = TempDb::new(&url).await;
    let role = format!("keyhole_app_{}", random_suffix());
    db.roles.push(role.clone());
    PostgresStore::connect(&db.url())
        .await
        .expect("the owner migrates");
    admin(&db.url())
        .await
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; \
             REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
             GRANT USAGE ON SCHEMA public TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};"
        ))
        .await
        .unwrap();
    let app_url = with_user(&db.url(), &role);
    let created: bool = admin(&app_url)
        .await
        .query_one("SELECT has_schema_privilege('public', 'CREATE')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!created, "the role must lack CREATE on the schema");

    let store = PostgresStore::connect(&app_url)
        .await
        .unwrap_or_else(|e| panic!("a DML-only role starts on a current schema: {e}"));
    store.create(&record("f1", "alice", 1)).await.unwrap();
    assert!(store.get("f1").await.unwrap().is_some());
    drop(store);
}

fn assert_broken<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Broken(_))),
        "{what}: want Broken, got {result:?}"
    );
}

/// Rows the store cannot read are malformed data (`Broken`, 500), not a transient failure, and
/// negative sizes are not read as huge unsigned ones. So is a permanent server error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_malformed_rows_are_broken() {
    let Some(url) = postgres_url() else { return };
    let db = TempDb::new(&url).await;
    let store = PostgresStore::connect(&db.url()).await.unwrap();
    let sql = admin(&db.url()).await;
    for (id, column) in [
        ("neg-size", "size"),
        ("neg-declared", "declared_size"),
        ("neg-part-size", "part_size"),
    ] {
        store.create(&record(id, "bob", 1)).await.unwrap();
        sql.execute(
            &format!("UPDATE files SET {column} = -1 WHERE file_id = $1"),
            &[&id],
        )
        .await
        .unwrap();
        assert_broken(&format!("get with {column} -1"), store.get(id).await);
    }
    assert_broken(
        "listing rows with negative sizes",
        store.list("bob", 0, 10, None).await,
    );

    // A column that does not decode (NULL where the schema says NOT NULL).
    sql.batch_execute(
        "ALTER TABLE files ALTER COLUMN owner DROP NOT NULL; \
         INSERT INTO files (file_id, original_filename, content_type, object_key, \
         upload_url_generated_at, status, owner) \
         VALUES ('null-owner', 'a', 'text/plain', 'uploads/null-owner', 1, 'pending', NULL)",
    )
    .await
    .unwrap();
    assert_broken("get with a NULL owner", store.get("null-owner").await);

    store.create(&record("parts", "carol", 1)).await.unwrap();
    sql.batch_execute(
        "INSERT INTO parts (file_id, part_number, size, sha256, etag) \
         VALUES ('parts', -1, 5, 'aa', '\"aa\"')",
    )
    .await
    .unwrap();
    assert_broken("part number -1", store.parts("parts").await);
    sql.batch_execute(
        "UPDATE parts SET part_number = 1, size = -5 WHERE file_id = 'parts'; \
         ALTER TABLE parts ALTER COLUMN etag DROP NOT NULL; \
         INSERT INTO parts (file_id, part_number, size, sha256, etag) \
         VALUES ('parts', 2, 5, 'bb', NULL)",
    )
    .await
    .unwrap();
    assert_broken("part size -5", store.parts("parts").await);
    sql.batch_execute("UPDATE parts SET size = 5 WHERE file_id = 'parts'")
        .await
        .unwrap();
    assert_broken("part with a NULL etag", store.parts("parts").await);

    // A permanent server error (undefined table, 42P01) is not worth a retry either.
    sql.batch_execute("DROP TABLE parts").await.unwrap();
    assert_broken("a missing table", store.delete_parts("parts").await);
    // The store still answers what it can.
    assert!(store.get("nothing").await.unwrap().is_none());
    drop(store);
}

/// A cursor whose id holds a NUL byte (no issued cursor does; PostgreSQL text cannot hold one)
/// gives the page SQLite gives for it, rather than a 22021 error answered as 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nul_cursor_pages_like_sqlite() {
    let Some(url) = postgres_url() else { return };
    let db = TempDb::new(&url).await;
    let postgres = PostgresStore::connect(&db.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("meta.db")).unwrap();
    for (id, created) in [
        ("a", 100),
        ("abc", 100),
        ("abc_x", 100),
        ("abd", 100),
        ("b", 100),
        ("z", 99),
    ] {
        postgres.create(&record(id, "dave", created)).await.unwrap();
        sqlite.create(&record(id, "dave", created)).await.unwrap();
    }
    let ids = |page: keyhole::store::Page| -> Vec<String> {
        page.records.into_iter().map(|r| r.file_id).collect()
    };
    for raw in ["100:abc\0zz", "100:\0", "100:abd\0", "99:\0a"] {
        let cursor = URL_SAFE_NO_PAD.encode(raw);
        let want = sqlite.list("dave", 0, 10, Some(&cursor)).await;
        let got = postgres.list("dave", 0, 10, Some(&cursor)).await;
        match (want, got) {
            (Ok(want), Ok(got)) => assert_eq!(ids(got), ids(want), "cursor {raw:?}"),
            (Err(StoreError::BadCursor), Err(StoreError::BadCursor)) => {}
            (want, got) => panic!("cursor {raw:?}: SQLite {want:?}, PostgreSQL {got:?}"),
        }
    }
    // The first one, spelled out: ids at or before "abc" at 100, then older records.
    let cursor = URL_SAFE_NO_PAD.encode("100:abc\0zz");
    let page = postgres.list("dave", 0, 10, Some(&cursor)).await.unwrap();
    assert_eq!(ids(page), ["abc", "a", "z"]);
    drop(postgres);
}

/// A DynamoDB endpoint that accepts connections and never answers fails a call as transient
/// within the client's operation timeout (15 s) rather than holding the request forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_stalled_endpoint_times_out() {
    if env("AWS_ACCESS_KEY_ID").is_none() || env("AWS_SECRET_ACCESS_KEY").is_none() {
        eprintln!(
            "SKIPPED: DynamoDB timeout check (needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
             set, any value; `bash scripts/test-services.sh env` prints them)"
        );
        return;
    }
    let (addr, _held) = common::blackhole();
    let store = DynamoStore::connect("keyhole-blackhole", Some(&format!("http://{addr}")))
        .await
        .unwrap();
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(40), store.get("f1"))
        .await
        .expect("a call to a stalled endpoint ends (it hung for 40 s)");
    let elapsed = started.elapsed();
    match &result {
        Err(StoreError::Backend(message)) => assert!(
            message.contains("timeout") || message.contains("timed out"),
            "want a timeout, got {message}"
        ),
        other => panic!("want Backend, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}
