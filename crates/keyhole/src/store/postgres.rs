//! A shared metadata store on PostgreSQL, for several `keyhole serve` replicas behind a load
//! balancer. Same tables and semantics as [`super::sqlite`]; every status change is one
//! conditional statement, so concurrent replicas cannot both complete or extend a record.
//!
//! Connections are plain TCP (`NoTls`): Keyhole expects PostgreSQL on loopback or a private
//! network it runs next to. TLS to the database is a follow-up.
//!
//! The schema is versioned in `keyhole_schema_version` (one row per applied migration); start-up
//! applies what is missing under an advisory lock, so replicas starting together migrate once.
//! Give Keyhole its own database (or schema, via `options=-csearch_path=...` in the URL): the
//! tables are called `files` and `parts`, like SQLite's.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};

use super::{
    decode_cursor, Completion, FileRecord, MetaStore, Page, PartRecord, Status, StoreError,
};

/// Schema migrations, applied in order; migration `i` records version `i + 1`.
///
/// `file_id` uses the `C` collation so ids sort bytewise, as in SQLite and DynamoDB, whatever
/// the database's locale: paging order and cursors then mean the same on every backend.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE files (
    file_id                 TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    original_filename       TEXT NOT NULL,
    content_type            TEXT NOT NULL,
    object_key              TEXT NOT NULL,
    upload_url_generated_at BIGINT NOT NULL,
    uploaded_at             BIGINT,
    size                    BIGINT,
    declared_size           BIGINT,
    declared_sha256         TEXT,
    sha256                  TEXT,
    etag                    TEXT,
    status                  TEXT NOT NULL CHECK (status IN ('pending', 'uploaded')),
    owner                   TEXT NOT NULL,
    ttl                     BIGINT,
    upload_id               TEXT,
    part_size               BIGINT
);
CREATE INDEX files_by_owner ON files (owner, upload_url_generated_at DESC, file_id DESC);
CREATE INDEX files_by_ttl ON files (ttl) WHERE ttl IS NOT NULL;
CREATE TABLE parts (
    file_id     TEXT COLLATE "C" NOT NULL REFERENCES files (file_id) ON DELETE CASCADE,
    part_number BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    etag        TEXT NOT NULL,
    PRIMARY KEY (file_id, part_number)
);
"#];

/// Key of the advisory lock held while migrating (ASCII "keyhole" as a number).
const MIGRATION_LOCK: i64 = 0x6b_6579_686f_6c65;

/// Connections kept per replica.
const POOL_SIZE: usize = 16;

/// The longest one store call may take, from waiting for a connection to the last row. Past it
/// the call fails with [`StoreError::Backend`] (503, retry later) and its connection is closed.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest start-up migration may take (it may wait for another replica's migration).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Socket-level limits, unless the URL sets its own: a dead peer (a partition, a database host
/// gone without closing its connections) is noticed within seconds rather than after the
/// operating system's two hours of keepalive silence.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVES_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVES_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the kernel drops the connection.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);

/// Server-side limits, passed in the connection's `options` unless the URL's `options` set their
/// own. A call the client abandons ([`OPERATION_TIMEOUT`], or a request that went away) closes
/// its connection, but a backend busy with a statement (waiting for a lock, scanning) notices the
/// closed socket only when it next talks to the client, which may be never; the statement timeout
/// ends it soon after the client gave up. It is a little longer than the client's bound, so the
/// client always reports its own timeout first and the server never cancels a statement someone
/// still waits for.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(OPERATION_TIMEOUT.as_secs() + 2);
/// A transaction left open by a client that went silent (a partition during a migration) gives
/// back its locks, the migration lock included, after this long instead of holding them until
/// the server's keepalives notice.
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// The statement timeout inside the migration transaction, mirroring [`MIGRATION_TIMEOUT`] as
/// [`STATEMENT_TIMEOUT`] mirrors [`OPERATION_TIMEOUT`].
const MIGRATION_STATEMENT_TIMEOUT: Duration = Duration::from_secs(MIGRATION_TIMEOUT.as_secs() + 2);

const COLUMNS: &str = "file_id, original_filename, content_type, object_key, \
    upload_url_generated_at, uploaded_at, size, declared_size, declared_sha256, sha256, etag, \
    status, owner, ttl, upload_id, part_size";

/// PostgreSQL-backed [`MetaStore`].
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A stored row that is not a record this version can read: retrying will not help.
fn broken(why: impl std::fmt::Display) -> StoreError {
    StoreError::Broken(format!("postgres: malformed row: {why}"))
}

/// Whether a server error (by SQLSTATE) may pass when the call is repeated: the connection or
/// the server is going (class 08 connection exception, 57 operator intervention such as a
/// shutdown, restart or cancelled statement), out of resources (53: too many connections, disk
/// full, 58: system I/O), a transaction lost a race (40001 serialisation failure, 40P01
/// deadlock, 55P03 lock not available), or the server became a read-only standby during a
/// failover (25006). Those answer 503 with Retry-After. Everything else (42 syntax, undefined
/// table or missing privilege, 22 data exceptions, 23 constraint violations, XX internal
/// errors, ...) is a fault of the deployment, the schema or the data that a retry repeats:
/// [`StoreError::Broken`], 500.
fn transient_sqlstate(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "53" | "57" | "58"))
        || matches!(code, "40001" | "40P01" | "55P03" | "25006")
}

/// Names the server's reason (SQLSTATE and message) rather than tokio-postgres' terse "db error",
/// and classifies it ([`transient_sqlstate`]). Failures without a server error (I/O, a closed
/// connection) are transient.
fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let message = format!("postgres: {} ({code})", db.message());
            if transient_sqlstate(code) {
                StoreError::Backend(message)
            } else {
                StoreError::Broken(message)
            }
        }
        None => StoreError::Backend(format!("postgres: {e}")),
    }
}

/// A column that does not decode as the schema says (a NULL, a wrong type).
fn decode_err(e: tokio_postgres::Error) -> StoreError {
    match std::error::Error::source(&e) {
        Some(cause) => broken(format!("{e}: {cause}")),
        None => broken(e),
    }
}

/// A stored size: never negative (Keyhole writes only `u64` values that fit an `i64`).
fn size_u64(name: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| broken(format!("{name} {v} is negative")))
}

fn opt_u64(name: &str, v: Option<i64>) -> Result<Option<u64>, StoreError> {
    v.map(|v| size_u64(name, v)).transpose()
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| v as i64)
}

fn from_row(row: &Row) -> Result<FileRecord, StoreError> {
    let status: String = row.try_get(11).map_err(decode_err)?;
    Ok(FileRecord {
        file_id: row.try_get(0).map_err(decode_err)?,
        original_filename: row.try_get(1).map_err(decode_err)?,
        content_type: row.try_get(2).map_err(decode_err)?,
        object_key: row.try_get(3).map_err(decode_err)?,
        upload_url_generated_at: row.try_get(4).map_err(decode_err)?,
        uploaded_at: row.try_get(5).map_err(decode_err)?,
        size: opt_u64("size", row.try_get(6).map_err(decode_err)?)?,
        declared_size: opt_u64("declared_size", row.try_get(7).map_err(decode_err)?)?,
        declared_sha256: row.try_get(8).map_err(decode_err)?,
        sha256: row.try_get(9).map_err(decode_err)?,
        etag: row.try_get(10).map_err(decode_err)?,
        status: Status::parse(&status)
            .ok_or_else(|| broken(format!("unknown status {status:?}")))?,
        owner: row.try_get(12).map_err(decode_err)?,
        ttl: row.try_get(13).map_err(decode_err)?,
        upload_id: row.try_get(14).map_err(decode_err)?,
        part_size: opt_u64("part_size", row.try_get(15).map_err(decode_err)?)?,
    })
}

fn part_from_row(row: &Row) -> Result<PartRecord, StoreError> {
    let number: i64 = row.try_get(0).map_err(decode_err)?;
    Ok(PartRecord {
        part_number: u32::try_from(number)
            .map_err(|_| broken(format!("part number {number} out of range")))?,
        size: size_u64("part size", row.try_get(1).map_err(decode_err)?)?,
        sha256: row.try_get(2).map_err(decode_err)?,
        etag: row.try_get(3).map_err(decode_err)?,
    })
}

/// A pooled connection lent to one operation. Given back with [`Conn::release`] once the
/// operation has its answer; dropped before that (the operation timed out, or the request that
/// ran it went away mid-query), the connection is detached from the pool and closed, never handed
/// to the next caller still owing the reply to a query nobody waits for: on a connection that a
/// partition or a stalled server holds up, that caller would wait just the same.
struct Conn(Option<Object>);

impl Conn {
    fn release(mut self) {
        // Dropping the object returns it to the pool.
        drop(self.0.take());
    }
}

impl std::ops::Deref for Conn {
    type Target = Object;

    fn deref(&self) -> &Object {
        self.0.as_ref().expect("connection present until released")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Object {
        self.0.as_mut().expect("connection present until released")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            // Detached and dropped: the connection's task is aborted and its socket closed.
            drop(Object::take(object));
        }
    }
}

/// The URL's connection settings, with Keyhole's socket limits where the URL sets none.
fn with_socket_limits(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    // tokio-postgres' default idle time is the operating system's two hours.
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(KEEPALIVES_IDLE);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(KEEPALIVES_INTERVAL);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(KEEPALIVES_RETRIES);
    }
    config
}

/// The arguments the server reads from a connection's `options`, split as it splits them
/// (`pg_split_opts`): at whitespace, unless a backslash escapes it; a backslash escapes the next
/// character.
fn split_options(options: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current: Option<String> = None;
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        if matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r') {
            args.extend(current.take());
            continue;
        }
        let c = match c {
            '\\' => match chars.next() {
                Some(escaped) => escaped,
                None => break,
            },
            c => c,
        };
        current.get_or_insert_with(String::new).push(c);
    }
    args.extend(current);
    args
}

/// Whether a connection's `options` set the server setting `name`, read as the server reads its
/// switches: `-c name=value`, `-cname=value` or `--name=value` (switches may be grouped, `--`
/// ends them); setting names are case-insensitive and `-` in them stands for `_`.
fn options_set(options: &str, name: &str) -> bool {
    // The switches that take a value, from the server's getopt string
    // (`process_postgres_switches`: "B:bC:c:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:").
    const WITH_VALUE: &str = "BcCDdfhkNprStvW-";
    let same = |given: &str| given.replace('-', "_").eq_ignore_ascii_case(name);
    let args = split_options(options);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        let Some(switches) = arg.strip_prefix('-') else {
            continue;
        };
        for (i, switch) in switches.char_indices() {
            if !WITH_VALUE.contains(switch) {
                continue;
            }
            let rest = &switches[i + switch.len_utf8()..];
            let value = if rest.is_empty() {
                args.next().map(String::as_str)
            } else {
                Some(rest)
            };
            if let (Some(value), 'c' | '-') = (value, switch) {
                if value.split_once('=').is_some_and(|(given, _)| same(given)) {
                    return true;
                }
            }
            break;
        }
    }
    false
}

/// The URL's connection settings, with Keyhole's server-side limits ([`STATEMENT_TIMEOUT`],
/// [`IDLE_IN_TRANSACTION_TIMEOUT`]) added to its `options` where they set none: the URL's own
/// value wins, and its other options (`-c search_path=...`) are kept.
fn with_statement_limits(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    let mut options = config.get_options().unwrap_or_default().to_owned();
    for (name, limit) in [
        ("statement_timeout", STATEMENT_TIMEOUT),
        (
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT,
        ),
    ] {
        if !options_set(&options, name) {
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str(&format!("-c {name}={}ms", limit.as_millis()));
        }
    }
    config.options(options);
    config
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db` or `host=... user=...`), checks the
    /// server answers and applies pending migrations.
    ///
    /// TCP keepalives (10 s idle, 5 s interval, 3 probes), a 15 s TCP user timeout and a 10 s
    /// connect timeout apply unless the URL sets its own (`keepalives_idle`, `tcp_user_timeout`,
    /// `connect_timeout`, ...); every store call is bounded by [`OPERATION_TIMEOUT`], and on the
    /// server by a 12 s `statement_timeout` and a 30 s `idle_in_transaction_session_timeout`
    /// unless the URL's `options` set their own (`options=-c statement_timeout=...`). Where the
    /// endpoint refuses startup options (PgBouncer), it connects without them and warns.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| backend(format!("postgres URL: {e}")))?;
        let limited = Self::with_pool(with_statement_limits(with_socket_limits(config.clone())))?;
        match limited.migrate().await {
            Ok(()) => Ok(limited),
            // A pooler in front (PgBouncer) refuses startup options it does not know. Keyhole
            // worked behind one before it sent them: go on without them, and say how to get the
            // same bound there.
            Err(e) if e.to_string().contains("unsupported startup parameter") => {
                tracing::warn!(
                    error = %e,
                    "the PostgreSQL endpoint (a pooler such as PgBouncer) refuses connection options: \
                     connecting without the server-side statement_timeout and \
                     idle_in_transaction_session_timeout; set them for Keyhole's role instead \
                     (ALTER ROLE ... SET statement_timeout = '12s')"
                );
                let plain = Self::with_pool(with_socket_limits(config))?;
                plain.migrate().await?;
                Ok(plain)
            }
            Err(e) => Err(e),
        }
    }

    /// A store on a pool of connections made with `config` (not yet connected).
    fn with_pool(config: tokio_postgres::Config) -> Result<Self, StoreError> {
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // No round trip per checkout: a connection is recycled only if its last
                // operation completed (see `Conn`), and a closed one is discarded.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .wait_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(backend)?;
        Ok(PostgresStore { pool })
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        self.pool
            .get()
            .await
            .map(|object| Conn(Some(object)))
            .map_err(|e| match e {
                // The server's own words (an authentication failure, a refused option), not
                // only "db error".
                deadpool_postgres::PoolError::Backend(e) => match e.as_db_error() {
                    Some(db) => backend(format!("postgres: cannot connect: {}", db.message())),
                    None => backend(format!("postgres: cannot connect: {e}")),
                },
                e => backend(format!("postgres: {e}")),
            })
    }

    /// Runs `op` (which takes its connection with [`Self::conn`]) within `limit`; past it the
    /// operation is dropped, with its connection (see [`Conn`]).
    async fn bounded<T>(
        what: &str,
        limit: Duration,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(limit, op).await.unwrap_or_else(|_| {
            Err(StoreError::Backend(format!(
                "postgres: {what} timed out after {} s",
                limit.as_secs_f32()
            )))
        })
    }

    /// The applied schema version; 0 when there is no version table yet. Reading it needs only
    /// SELECT on `keyhole_schema_version`, so a role without CREATE on the schema can start.
    async fn schema_version(client: &tokio_postgres::Client) -> Result<i32, StoreError> {
        let exists: bool = client
            .query_one(
                "SELECT to_regclass('keyhole_schema_version') IS NOT NULL",
                &[],
            )
            .await
            .map_err(pg)?
            .get(0);
        if !exists {
            return Ok(0);
        }
        Ok(client
            .query_one(
                "SELECT COALESCE(max(version), 0) FROM keyhole_schema_version",
                &[],
            )
            .await
            .map_err(pg)?
            .get(0))
    }

    /// Applies the migrations the database lacks. A current schema is only read: the advisory
    /// lock and the DDL (which need CREATE on the schema) are taken only when something is
    /// missing, and the version is read again under the lock, as another replica may have
    /// migrated meanwhile.
    async fn migrate(&self) -> Result<(), StoreError> {
        Self::bounded("migration", MIGRATION_TIMEOUT, async {
            let mut conn = self.conn().await?;
            let known = MIGRATIONS.len() as i32;
            let too_new = |version: i32| {
                StoreError::Broken(format!(
                    "database schema version {version} is newer than this keyhole understands \
                     ({known}); upgrade keyhole"
                ))
            };
            let version = Self::schema_version(&conn).await?;
            if version > known {
                return Err(too_new(version));
            }
            if version < known {
                let tx = conn.transaction().await.map_err(pg)?;
                // The migration's statements are bounded by the migration's own limit rather than
                // by the per-call STATEMENT_TIMEOUT (or the URL's): waiting for the lock while
                // another replica migrates, or a migration rewriting a large table, may rightly
                // take longer than one call, and start-up would fail on a healthy database. Not
                // exempt (0): a migration this replica abandoned must not keep its locks.
                tx.batch_execute(&format!(
                    "SET LOCAL statement_timeout = {}",
                    MIGRATION_STATEMENT_TIMEOUT.as_millis()
                ))
                .await
                .map_err(pg)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                    .await
                    .map_err(pg)?;
                tx.batch_execute(
                    "CREATE TABLE IF NOT EXISTS keyhole_schema_version (\
                        version INTEGER PRIMARY KEY, \
                        applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                )
                .await
                .map_err(pg)?;
                let version = Self::schema_version(tx.client()).await?;
                if version > known {
                    return Err(too_new(version));
                }
                for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                    tx.batch_execute(sql).await.map_err(pg)?;
                    tx.execute(
                        "INSERT INTO keyhole_schema_version (version) VALUES ($1)",
                        &[&(i as i32 + 1)],
                    )
                    .await
                    .map_err(pg)?;
                }
                tx.commit().await.map_err(pg)?;
            }
            conn.release();
            Ok(())
        })
        .await
    }

    /// Prepares `sql` (cached per connection) and runs it with `run`, on one connection and
    /// within [`OPERATION_TIMEOUT`]; the connection goes back to the pool once `run` has its
    /// answer, error or not.
    async fn prepared<T>(
        &self,
        what: &str,
        sql: &str,
        run: impl AsyncFnOnce(&Object, &tokio_postgres::Statement) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        Self::bounded(what, OPERATION_TIMEOUT, async {
            let conn = self.conn().await?;
            let result = match conn.prepare_cached(sql).await {
                Ok(stmt) => run(&conn, &stmt).await,
                Err(e) => Err(e),
            };
            conn.release();
            result.map_err(pg)
        })
        .await
    }

    /// Runs one statement and returns the number of rows it touched.
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.prepared("statement", sql, async |conn, stmt| {
            conn.execute(stmt, params).await
        })
        .await
    }

    /// A server setting as a connection of this store's pool sees it (`SHOW name`). For tests.
    #[doc(hidden)]
    pub async fn server_setting(&self, name: &str) -> Result<String, StoreError> {
        self.prepared("query", "SELECT current_setting($1)", async |conn, stmt| {
            conn.query_one(stmt, &[&name]).await
        })
        .await?
        .try_get(0)
        .map_err(decode_err)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.prepared("query", sql, async |conn, stmt| {
            conn.query(stmt, params).await
        })
        .await
    }
}

#[async_trait]
impl MetaStore for PostgresStore {
    async fn create(&self, r: &FileRecord) -> Result<(), StoreError> {
        let n = self
            .execute(
                &format!(
                    "INSERT INTO files ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                     $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (file_id) DO NOTHING"
                ),
                &[
                    &r.file_id,
                    &r.original_filename,
                    &r.content_type,
                    &r.object_key,
                    &r.upload_url_generated_at,
                    &r.uploaded_at,
                    &opt_i64(r.size),
                    &opt_i64(r.declared_size),
                    &r.declared_sha256,
                    &r.sha256,
                    &r.etag,
                    &r.status.as_str(),
                    &r.owner,
                    &r.ttl,
                    &r.upload_id,
                    &opt_i64(r.part_size),
                ],
            )
            .await?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn get(&self, file_id: &str) -> Result<Option<FileRecord>, StoreError> {
        let rows = self
            .query(
                &format!("SELECT {COLUMNS} FROM files WHERE file_id = $1"),
                &[&file_id],
            )
            .await?;
        rows.first().map(from_row).transpose()
    }

    async fn mark_uploaded(
        &self,
        file_id: &str,
        d: &Completion,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE files SET status = 'uploaded', size = $2, sha256 = $3, etag = $4, \
                 uploaded_at = $5, ttl = $6 WHERE file_id = $1 AND status = 'pending' \
                 AND (ttl IS NULL OR ttl > $7)",
                &[
                    &file_id,
                    &(d.size as i64),
                    &d.sha256,
                    &d.etag,
                    &d.uploaded_at,
                    &d.ttl,
                    &now,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn expire(&self, file_id: &str, now: i64) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE files SET ttl = $2 WHERE file_id = $1",
                &[&file_id, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn delete(&self, file_id: &str) -> Result<bool, StoreError> {
        // Parts go with the record (ON DELETE CASCADE).
        let n = self
            .execute("DELETE FROM files WHERE file_id = $1", &[&file_id])
            .await?;
        Ok(n == 1)
    }

    async fn claim_expired(&self, file_id: &str, now: i64) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE files SET ttl = $3 WHERE file_id = $1 AND ttl IS NOT NULL AND ttl <= $2",
                &[&file_id, &now, &super::GONE_TTL],
            )
            .await?;
        Ok(n == 1)
    }

    async fn delete_expired(&self, file_id: &str, now: i64) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "DELETE FROM files WHERE file_id = $1 AND ttl IS NOT NULL AND ttl <= $2",
                &[&file_id, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn list(
        &self,
        owner: &str,
        now: i64,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let after = cursor.map(decode_cursor).transpose()?;
        let limit = limit.clamp(1, 1000);
        let fetch = (limit + 1) as i64;
        let rows = match &after {
            Some((created, id)) => {
                // PostgreSQL text cannot hold NUL (binding one fails with 22021), so no stored id
                // has one; a tampered cursor may. Bytewise (the "C" collation of `file_id`), an id
                // without NUL sorts before `p\0...` exactly when it sorts at or before `p`: the
                // same page SQLite, which compares the bytes as they are, gives for that cursor.
                let (id, op) = match id.split_once('\0') {
                    Some((prefix, _)) => (prefix, "<="),
                    None => (id.as_str(), "<"),
                };
                self.query(
                    &format!(
                        "SELECT {COLUMNS} FROM files WHERE owner = $1 \
                         AND (ttl IS NULL OR ttl > $2) \
                         AND (upload_url_generated_at, file_id) {op} ($3, $4) \
                         ORDER BY upload_url_generated_at DESC, file_id DESC LIMIT $5"
                    ),
                    &[&owner, &now, created, &id, &fetch],
                )
                .await?
            }
            None => {
                self.query(
                    &format!(
                        "SELECT {COLUMNS} FROM files WHERE owner = $1 \
                         AND (ttl IS NULL OR ttl > $2) \
                         ORDER BY upload_url_generated_at DESC, file_id DESC LIMIT $3"
                    ),
                    &[&owner, &now, &fetch],
                )
                .await?
            }
        };
        let records = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(records, limit))
    }

    async fn expired(&self, now: i64, limit: usize) -> Result<Vec<FileRecord>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM files WHERE ttl IS NOT NULL AND ttl <= $1 \
                     ORDER BY ttl LIMIT $2"
                ),
                &[&now, &(limit.min(i64::MAX as usize) as i64)],
            )
            .await?;
        rows.iter().map(from_row).collect()
    }

    async fn put_part(
        &self,
        file_id: &str,
        upload_id: &str,
        part: &PartRecord,
        now: i64,
    ) -> Result<bool, StoreError> {
        // One statement: the part is written only while the record is pending, unexpired and of
        // this upload; FOR SHARE holds the record so a concurrent completion or delete waits and
        // the condition is checked against the row as it then is.
        let n = self
            .execute(
                "INSERT INTO parts (file_id, part_number, size, sha256, etag) \
                 SELECT file_id, $2, $3, $4, $5 FROM files WHERE file_id = $1 AND upload_id = $6 \
                 AND status = 'pending' AND (ttl IS NULL OR ttl > $7) FOR SHARE \
                 ON CONFLICT (file_id, part_number) DO UPDATE SET size = excluded.size, \
                 sha256 = excluded.sha256, etag = excluded.etag",
                &[
                    &file_id,
                    &i64::from(part.part_number),
                    &(part.size as i64),
                    &part.sha256,
                    &part.etag,
                    &upload_id,
                    &now,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn parts(&self, file_id: &str) -> Result<Vec<PartRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT part_number, size, sha256, etag FROM parts WHERE file_id = $1 \
                 ORDER BY part_number",
                &[&file_id],
            )
            .await?;
        rows.iter().map(part_from_row).collect()
    }

    async fn delete_parts(&self, file_id: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM parts WHERE file_id = $1", &[&file_id])
            .await?;
        Ok(())
    }

    async fn extend_pending(&self, file_id: &str, ttl: i64, now: i64) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE files SET ttl = CASE WHEN ttl IS NULL OR ttl < $2 THEN $2 ELSE ttl END \
                 WHERE file_id = $1 AND status = 'pending' AND (ttl IS NULL OR ttl > $3)",
                &[&file_id, &ttl, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Self::bounded("ping", OPERATION_TIMEOUT, async {
            let conn = self.conn().await?;
            let result = conn.simple_query("SELECT 1").await;
            conn.release();
            result.map(drop).map_err(pg)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_split_as_the_server_splits_them() {
        assert_eq!(
            split_options("  -c a=b\t-c\\ d=e\\ f --g=h\\\\ "),
            ["-c", "a=b", "-c d=e f", "--g=h\\"]
        );
        assert!(split_options(" ").is_empty());
    }

    #[test]
    fn a_setting_is_found_in_every_spelling() {
        for options in [
            "-c statement_timeout=5s",
            "-cstatement_timeout=5s",
            "--statement_timeout=5s",
            "--statement-timeout=5s",
            "-c Statement_Timeout=0",
            "-c search_path=x -c statement_timeout=1",
            "-B 100 -c statement_timeout=1",
            "-ec statement_timeout=1",
        ] {
            assert!(options_set(options, "statement_timeout"), "{options:?}");
        }
        for options in [
            "",
            "-c search_path=statement_timeout",
            "-c statement_timeout_x=1",
            "-c lock_timeout=1",
            "-B statement_timeout=1",
            "-- -c statement_timeout=1",
            "-c\\ statement_timeout=1",
            "-c",
        ] {
            assert!(!options_set(options, "statement_timeout"), "{options:?}");
        }
    }

    #[test]
    fn limits_are_added_unless_the_url_sets_them() {
        let options = |url: &str| {
            with_statement_limits(url.parse().unwrap())
                .get_options()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            options("postgres://u@h/db"),
            "-c statement_timeout=12000ms -c idle_in_transaction_session_timeout=30000ms"
        );
        assert_eq!(
            options("postgres://u@h/db?options=-c%20search_path%3Dx"),
            "-c search_path=x -c statement_timeout=12000ms \
             -c idle_in_transaction_session_timeout=30000ms"
        );
        assert_eq!(
            options("postgres://u@h/db?options=-c%20statement_timeout%3D3s"),
            "-c statement_timeout=3s -c idle_in_transaction_session_timeout=30000ms"
        );
        assert_eq!(
            options(
                "host=h user=u options='--statement-timeout=0 -c idle_in_transaction_session_timeout=0'"
            ),
            "--statement-timeout=0 -c idle_in_transaction_session_timeout=0"
        );
    }
}
