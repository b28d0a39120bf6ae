//! The embedded metadata store: one SQLite file in WAL mode, schema versioned with
//! `PRAGMA user_version`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{
    decode_cursor, Completion, FileRecord, MetaStore, Page, PartRecord, Status, StoreError,
};

/// Schema migrations, applied in order; the index + 1 is the `user_version` after each.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE files (
    file_id                 TEXT PRIMARY KEY NOT NULL,
    original_filename       TEXT NOT NULL,
    content_type            TEXT NOT NULL,
    object_key              TEXT NOT NULL,
    upload_url_generated_at INTEGER NOT NULL,
    uploaded_at             INTEGER,
    size                    INTEGER,
    declared_size           INTEGER,
    declared_sha256         TEXT,
    sha256                  TEXT,
    etag                    TEXT,
    status                  TEXT NOT NULL CHECK (status IN ('pending', 'uploaded')),
    owner                   TEXT NOT NULL,
    ttl                     INTEGER
) STRICT;
CREATE INDEX files_by_owner ON files (owner, upload_url_generated_at DESC, file_id DESC);
CREATE INDEX files_by_ttl ON files (ttl) WHERE ttl IS NOT NULL;
"#,
    r#"
ALTER TABLE files ADD COLUMN upload_id TEXT;
ALTER TABLE files ADD COLUMN part_size INTEGER;
CREATE TABLE parts (
    file_id     TEXT NOT NULL REFERENCES files (file_id) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    etag        TEXT NOT NULL,
    PRIMARY KEY (file_id, part_number)
) STRICT;
"#,
];

/// SQLite-backed [`MetaStore`].
///
/// Three connections to one WAL database: reads have their own, so they never wait behind a
/// write; new pending records are written with `synchronous = NORMAL` (a power cut may forget the
/// newest link records — their uploads then get 404 and the client asks for a new link — but
/// never corrupts anything); every state change a client is told about (uploaded, parts,
/// deletions) is written with `synchronous = FULL`, on disk before the answer goes out. Minting
/// a link then costs no fsync.
///
/// New records go to one writer thread that owns the `NORMAL` connection and commits whatever
/// has queued up as one transaction (group commit): under load, many link records share one
/// commit, and no request waits on a lock or a blocking-pool thread hand-off.
///
/// No connection checkpoints the WAL when it commits (SQLite's default is to do it inside the
/// commit that crosses 1,000 pages, which stalls every request queued behind that commit while
/// thousands of pages are copied); a fourth connection on its own thread does it in the
/// background instead (see [`checkpoint_loop`]).
#[derive(Clone)]
pub struct SqliteStore {
    inserts: std::sync::mpsc::Sender<Insert>,
    /// Dropped with the last clone of the store, which tells the checkpoint thread to stop.
    _checkpointer: Arc<std::sync::mpsc::Sender<()>>,
    durable: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

/// A record for the writer thread and where to send the outcome.
type Insert = (
    FileRecord,
    tokio::sync::oneshot::Sender<Result<(), StoreError>>,
);

/// Most records committed in one transaction by the writer thread.
const MAX_BATCH: usize = 512;

/// How long the writer thread lets records gather before a commit when the server is busy (more
/// than one record queued, or the previous commit took more than one): the most a record's
/// commit is delayed to share it with others. The thread sleeps rather than waiting on the queue,
/// so the requests that queue records meanwhile wake nobody. An idle server, or one client
/// minting links one after another, commits each record at once.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

/// How often the checkpoint thread copies committed WAL pages into the database file.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// WAL size (pages, 8 MiB) past which the checkpoint thread stops letting writers run alongside
/// it and restarts the WAL from the beginning (`RESTART`), so a server that never goes idle still
/// has a bounded WAL. Writers wait for that checkpoint only (a few milliseconds: the passive ones
/// before it have copied nearly everything).
///
/// Small, because a WAL that grows is appended to, and the filesystem zeroes every new block it
/// is given (WAL frames are not block-aligned): at 64 MiB that zeroing was a third of the writer
/// thread's CPU while minting on a fresh server. A WAL restarted at 8 MiB is rewritten in place,
/// in pages already cached.
const WAL_RESTART_PAGES: i64 = 2_048;

/// Size a WAL file is truncated to after it restarts.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Pages of cache per connection (negative: KiB), so the indexes of a large table stay in memory
/// instead of being read back from the file on every insert.
const CACHE_KIB: i64 = 16 * 1024;

const INSERT_SQL: &str = "INSERT INTO files (file_id, original_filename, content_type, \
    object_key, upload_url_generated_at, uploaded_at, size, declared_size, declared_sha256, \
    sha256, etag, status, owner, ttl, upload_id, part_size) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

fn insert_one(c: &Connection, r: &FileRecord) -> Result<(), StoreError> {
    let mut insert = c.prepare_cached(INSERT_SQL).map_err(backend)?;
    let res = insert.execute(params![
        r.file_id,
        r.original_filename,
        r.content_type,
        r.object_key,
        r.upload_url_generated_at,
        r.uploaded_at,
        r.size.map(|v| v as i64),
        r.declared_size.map(|v| v as i64),
        r.declared_sha256,
        r.sha256,
        r.etag,
        r.status.as_str(),
        r.owner,
        r.ttl,
        r.upload_id,
        r.part_size.map(|v| v as i64)
    ]);
    match res {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::Conflict)
        }
        Err(e) => Err(backend(e)),
    }
}

/// Inserts `batch` in one transaction. A record that conflicts fails alone (SQLite rolls back
/// just that statement); if the transaction itself cannot begin or commit, every record in it
/// fails, so no caller is told "stored" for a record that is not.
fn insert_batch(c: &Connection, batch: &[&FileRecord]) -> Vec<Result<(), StoreError>> {
    if batch.len() == 1 {
        return vec![insert_one(c, batch[0])];
    }
    if let Err(e) = c.execute_batch("BEGIN IMMEDIATE") {
        let message = e.to_string();
        return batch
            .iter()
            .map(|_| Err(StoreError::Backend(message.clone())))
            .collect();
    }
    let results: Vec<_> = batch.iter().map(|r| insert_one(c, r)).collect();
    match c.execute_batch("COMMIT") {
        Ok(()) => results,
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            let message = e.to_string();
            batch
                .iter()
                .map(|_| Err(StoreError::Backend(message.clone())))
                .collect()
        }
    }
}

/// The writer thread: takes one record, then, when the server is busy, sleeps [`BATCH_WINDOW`]
/// and takes whatever else has queued (up to [`MAX_BATCH`]), commits them together and answers
/// each caller. Ends when the store is dropped.
fn insert_loop(conn: Connection, queue: std::sync::mpsc::Receiver<Insert>) {
    let mut jobs: Vec<Insert> = Vec::new();
    let mut busy = false;
    while let Ok(first) = queue.recv() {
        jobs.push(first);
        if let Ok(next) = queue.try_recv() {
            jobs.push(next);
            busy = true;
        }
        if busy {
            std::thread::sleep(BATCH_WINDOW);
        }
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        busy = jobs.len() > 1;
        let records: Vec<&FileRecord> = jobs.iter().map(|(r, _)| r).collect();
        let results = insert_batch(&conn, &records);
        for ((_, reply), result) in jobs.drain(..).zip(results) {
            // The caller may have gone away (request cancelled); the record stays, harmlessly
            // pending until it expires.
            let _ = reply.send(result);
        }
    }
}

/// The checkpoint thread: every [`CHECKPOINT_INTERVAL`], a passive checkpoint (writers and
/// readers carry on alongside it); a `RESTART` one once the WAL passes [`WAL_RESTART_PAGES`].
/// Ends when the store is dropped (the last connection to close checkpoints what is left).
fn checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(CHECKPOINT_INTERVAL)
    {
        match checkpoint(&conn, "PASSIVE") {
            Ok(pages) if pages > WAL_RESTART_PAGES => {
                if let Err(e) = checkpoint(&conn, "RESTART") {
                    tracing::warn!(error = %e, "SQLite WAL checkpoint (RESTART) failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "SQLite WAL checkpoint failed"),
        }
    }
}

/// Runs `PRAGMA wal_checkpoint(mode)` and returns the WAL's size in pages before it ran.
fn checkpoint(conn: &Connection, mode: &str) -> Result<i64, StoreError> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get::<_, i64>(1)
    })
    .map_err(backend)
}

/// Busy handler of the writer connection: wait 100 µs and retry, for up to 5 seconds.
fn retry_soon(attempts: i32) -> bool {
    std::thread::sleep(std::time::Duration::from_micros(100));
    attempts < 50_000
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

const COLUMNS: &str = "file_id, original_filename, content_type, object_key, \
    upload_url_generated_at, uploaded_at, size, declared_size, declared_sha256, sha256, etag, \
    status, owner, ttl, upload_id, part_size";

fn from_row(row: &Row<'_>) -> rusqlite::Result<FileRecord> {
    let status: String = row.get(11)?;
    Ok(FileRecord {
        file_id: row.get(0)?,
        original_filename: row.get(1)?,
        content_type: row.get(2)?,
        object_key: row.get(3)?,
        upload_url_generated_at: row.get(4)?,
        uploaded_at: row.get(5)?,
        size: row.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        declared_size: row.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        declared_sha256: row.get(8)?,
        sha256: row.get(9)?,
        etag: row.get(10)?,
        status: Status::parse(&status).unwrap_or(Status::Pending),
        owner: row.get(12)?,
        ttl: row.get(13)?,
        upload_id: row.get(14)?,
        part_size: row.get::<_, Option<i64>>(15)?.map(|v| v as u64),
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let connect = |synchronous: &str| -> Result<Connection, StoreError> {
            let conn = Connection::open(path).map_err(backend)?;
            conn.execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                 PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}; \
                 PRAGMA cache_size = -{CACHE_KIB};"
            ))
            .map_err(backend)?;
            Ok(conn)
        };
        let durable = connect("FULL")?;
        Self::migrate(&durable)?;
        let conn = connect("NORMAL")?;
        // The writer retries every 100 µs while a RESTART checkpoint holds it off, instead of
        // SQLite's default back-off (1, 2, 5, 10 ms, ...), which would stall minting for several
        // times as long as the checkpoint itself takes.
        conn.busy_handler(Some(retry_soon)).map_err(backend)?;
        let reader = connect("NORMAL")?;
        let checkpointer = connect("NORMAL")?;
        // A RESTART checkpoint that cannot start at once gives up (and is tried again next time)
        // rather than holding writers off for long while it waits for readers.
        checkpointer
            .busy_timeout(std::time::Duration::from_millis(100))
            .map_err(backend)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let (inserts, queue) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("keyhole-sqlite-writer".into())
            .spawn(move || insert_loop(conn, queue))
            .map_err(backend)?;
        let (stop, stopped) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("keyhole-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stopped))
            .map_err(backend)?;
        Ok(SqliteStore {
            inserts,
            _checkpointer: Arc::new(stop),
            durable: Arc::new(Mutex::new(durable)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    fn migrate(conn: &Connection) -> Result<(), StoreError> {
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(backend)? as usize;
        if version > MIGRATIONS.len() {
            return Err(StoreError::Backend(format!(
                "database schema version {version} is newer than this keyhole understands ({}); \
                 upgrade keyhole",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx_sql = format!("BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1);
            conn.execute_batch(&tx_sql).map_err(backend)?;
        }
        Ok(())
    }

    /// Runs `f` with the read connection on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Self::run(Arc::clone(&self.reader), f).await
    }

    /// Runs `f` with the durable (fsync on commit) connection on the blocking pool.
    async fn durably<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        Self::run(Arc::clone(&self.durable), f).await
    }

    async fn run<T, F>(conn: Arc<Mutex<Connection>>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            let guard = conn
                .lock()
                .map_err(|_| backend("connection lock poisoned"))?;
            f(&guard)
        })
        .await
        .map_err(backend)?
    }
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn create(&self, r: &FileRecord) -> Result<(), StoreError> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::Broken("the metadata writer thread has stopped".into());
        self.inserts
            .send((r.clone(), reply))
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    async fn get(&self, file_id: &str) -> Result<Option<FileRecord>, StoreError> {
        let id = file_id.to_owned();
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM files WHERE file_id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn mark_uploaded(
        &self,
        file_id: &str,
        d: &Completion,
        now: i64,
    ) -> Result<bool, StoreError> {
        let id = file_id.to_owned();
        let d = d.clone();
        self.durably(move |c| {
            let n = c
                .execute(
                    "UPDATE files SET status = 'uploaded', size = ?2, sha256 = ?3, etag = ?4, \
                     uploaded_at = ?5, ttl = ?6 WHERE file_id = ?1 AND status = 'pending' \
                     AND (ttl IS NULL OR ttl > ?7)",
                    params![
                        id,
                        d.size as i64,
                        d.sha256,
                        d.etag,
                        d.uploaded_at,
                        d.ttl,
                        now
                    ],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn expire(&self, file_id: &str, now: i64) -> Result<bool, StoreError> {
        let id = file_id.to_owned();
        self.durably(move |c| {
            let n = c
                .execute(
                    "UPDATE files SET ttl = ?2 WHERE file_id = ?1",
                    params![id, now],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn delete(&self, file_id: &str) -> Result<bool, StoreError> {
        let id = file_id.to_owned();
        self.durably(move |c| {
            let n = c
                .execute("DELETE FROM files WHERE file_id = ?1", [id])
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn claim_expired(&self, file_id: &str, now: i64) -> Result<bool, StoreError> {
        let id = file_id.to_owned();
        self.durably(move |c| {
            let n = c
                .execute(
                    "UPDATE files SET ttl = ?3 WHERE file_id = ?1 AND ttl IS NOT NULL AND ttl <= ?2",
                    params![id, now, super::GONE_TTL],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn delete_expired(&self, file_id: &str, now: i64) -> Result<bool, StoreError> {
        let id = file_id.to_owned();
        self.durably(move |c| {
            let n = c
                .execute(
                    "DELETE FROM files WHERE file_id = ?1 AND ttl IS NOT NULL AND ttl <= ?2",
                    params![id, now],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn list(
        &self,
        owner: &str,
        now: i64,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, StoreError> {
        let owner = owner.to_owned();
        let after = cursor.map(decode_cursor).transpose()?;
        let limit = limit.clamp(1, 1000);
        self.read(move |c| {
            // Without a cursor, from after the largest possible key. A row-value comparison lets
            // SQLite seek in `files_by_owner` to where the page starts; an `OR` of the same
            // conditions made it walk every newer row of the owner, page after page.
            let (created, id) = after.unwrap_or((i64::MAX, String::new()));
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM files WHERE owner = ?1 \
                     AND (ttl IS NULL OR ttl > ?2) \
                     AND (upload_url_generated_at, file_id) < (?3, ?4) \
                     ORDER BY upload_url_generated_at DESC, file_id DESC LIMIT ?5"
                ))
                .map_err(backend)?;
            let records = stmt
                .query_map(
                    params![owner, now, created, id, (limit + 1) as i64],
                    from_row,
                )
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            Ok(Page::from_overfetch(records, limit))
        })
        .await
    }

    async fn expired(&self, now: i64, limit: usize) -> Result<Vec<FileRecord>, StoreError> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM files WHERE ttl IS NOT NULL AND ttl <= ?1 ORDER BY ttl LIMIT ?2"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![now, limit as i64], from_row)
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            Ok(rows)
        })
        .await
    }

    async fn put_part(
        &self,
        file_id: &str,
        upload_id: &str,
        part: &PartRecord,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (id, upload_id, part) = (file_id.to_owned(), upload_id.to_owned(), part.clone());
        self.durably(move |c| {
            let n = c
                .execute(
                    "INSERT INTO parts (file_id, part_number, size, sha256, etag) \
                     SELECT ?1, ?2, ?3, ?4, ?5 FROM files WHERE file_id = ?1 AND upload_id = ?6 \
                     AND status = 'pending' AND (ttl IS NULL OR ttl > ?7) \
                     ON CONFLICT (file_id, part_number) DO UPDATE SET size = excluded.size, \
                     sha256 = excluded.sha256, etag = excluded.etag",
                    params![
                        id,
                        part.part_number,
                        part.size as i64,
                        part.sha256,
                        part.etag,
                        upload_id,
                        now
                    ],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn parts(&self, file_id: &str) -> Result<Vec<PartRecord>, StoreError> {
        let id = file_id.to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT part_number, size, sha256, etag FROM parts WHERE file_id = ?1 \
                     ORDER BY part_number",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([id], |r| {
                    Ok(PartRecord {
                        part_number: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                        sha256: r.get(2)?,
                        etag: r.get(3)?,
                    })
                })
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            Ok(rows)
        })
        .await
    }

    async fn delete_parts(&self, file_id: &str) -> Result<(), StoreError> {
        let id = file_id.to_owned();
        self.durably(move |c| {
            c.execute("DELETE FROM parts WHERE file_id = ?1", [id])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn extend_pending(&self, file_id: &str, ttl: i64, now: i64) -> Result<bool, StoreError> {
        let id = file_id.to_owned();
        self.durably(move |c| {
            let n = c
                .execute(
                    "UPDATE files SET ttl = CASE WHEN ttl IS NULL OR ttl < ?2 THEN ?2 ELSE ttl END \
                     WHERE file_id = ?1 AND status = 'pending' AND (ttl IS NULL OR ttl > ?3)",
                    params![id, ttl, now],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, owner: &str, created: i64, ttl: Option<i64>) -> FileRecord {
        FileRecord {
            file_id: id.into(),
            original_filename: "a.txt".into(),
            content_type: "text/plain".into(),
            object_key: format!("uploads/{id}"),
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

    #[tokio::test]
    async fn crud_paging_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        for i in 0..5 {
            store
                .create(&record(&format!("id{i}"), "alice", 100 + i, Some(1000)))
                .await
                .unwrap();
        }
        store
            .create(&record("other", "bob", 50, Some(10)))
            .await
            .unwrap();
        assert!(matches!(
            store.create(&record("id1", "alice", 1, None)).await,
            Err(StoreError::Conflict)
        ));
        let p1 = store.list("alice", 0, 2, None).await.unwrap();
        assert_eq!(
            p1.records
                .iter()
                .map(|r| r.file_id.as_str())
                .collect::<Vec<_>>(),
            ["id4", "id3"]
        );
        let p2 = store
            .list("alice", 0, 2, p1.next_cursor.as_deref())
            .await
            .unwrap();
        assert_eq!(p2.records[0].file_id, "id2");
        let p3 = store
            .list("alice", 0, 2, p2.next_cursor.as_deref())
            .await
            .unwrap();
        assert_eq!(p3.records.len(), 1);
        assert!(p3.next_cursor.is_none());
        assert!(store.list("alice", 0, 2, Some("!!")).await.is_err());

        let done = Completion {
            size: 3,
            sha256: Some("ab".into()),
            etag: "\"ab\"".into(),
            uploaded_at: 5,
            ttl: None,
        };
        assert!(store.mark_uploaded("id0", &done, 0).await.unwrap());
        assert!(!store.mark_uploaded("id0", &done, 0).await.unwrap());
        // An expired pending record cannot complete.
        assert!(!store.mark_uploaded("id2", &done, 1000).await.unwrap());
        assert_eq!(
            store.get("id0").await.unwrap().unwrap().status,
            Status::Uploaded
        );

        let expired = store.expired(20, 10).await.unwrap();
        assert_eq!(expired.len(), 1);
        assert!(store.delete_expired("other", 20).await.unwrap());
        assert!(!store.delete_expired("id1", 20).await.unwrap());
        assert!(store.expire("id3", 20).await.unwrap());
        assert_eq!(store.expired(20, 10).await.unwrap().len(), 1);
        assert!(store.delete("id1").await.unwrap());
        assert!(!store.delete("id1").await.unwrap());
        store.ping().await.unwrap();

        // Parts: only for the matching upload id of a pending record; retries replace.
        let mut multi = record("multi", "alice", 1, Some(1000));
        multi.upload_id = Some("u1".into());
        multi.part_size = Some(5);
        store.create(&multi).await.unwrap();
        let part = |n, size| PartRecord {
            part_number: n,
            size,
            sha256: "s".into(),
            etag: "e".into(),
        };
        assert!(store.put_part("multi", "u1", &part(2, 5), 0).await.unwrap());
        assert!(store.put_part("multi", "u1", &part(1, 5), 0).await.unwrap());
        assert!(store.put_part("multi", "u1", &part(1, 4), 0).await.unwrap());
        assert!(!store
            .put_part("multi", "other", &part(3, 5), 0)
            .await
            .unwrap());
        assert!(!store
            .put_part("multi", "u1", &part(3, 5), 1000)
            .await
            .unwrap());
        let parts = store.parts("multi").await.unwrap();
        assert_eq!(
            parts
                .iter()
                .map(|p| (p.part_number, p.size))
                .collect::<Vec<_>>(),
            [(1, 4), (2, 5)]
        );
        assert!(store.extend_pending("multi", 2000, 0).await.unwrap());
        store.delete("multi").await.unwrap();
        assert!(
            store.parts("multi").await.unwrap().is_empty(),
            "parts cascade with the record"
        );
        drop(store);
        // Reopening keeps data and does not re-run migrations.
        let again = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        assert!(again.get("id0").await.unwrap().is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_creates_share_commits_and_conflicts_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        store
            .create(&record("taken", "alice", 1, Some(1000)))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    // Every tenth record collides with one already stored.
                    let id = if i % 10 == 0 {
                        "taken".to_owned()
                    } else {
                        format!("id{i}")
                    };
                    store.create(&record(&id, "alice", i, Some(1000))).await
                })
            })
            .collect();
        let mut conflicts = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => {}
                Err(StoreError::Conflict) => conflicts += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(conflicts, 30);
        for i in (1..300).filter(|i| i % 10 != 0) {
            assert!(
                store.get(&format!("id{i}")).await.unwrap().is_some(),
                "id{i}"
            );
        }
    }

    /// Commits never checkpoint; the background thread copies them into the database file.
    #[tokio::test]
    async fn background_checkpoint_moves_commits_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let store = SqliteStore::open(&path).unwrap();
        for i in 0..50 {
            store
                .create(&record(&format!("id{i}"), "alice", i, Some(1000)))
                .await
                .unwrap();
        }
        // `immutable=1` reads the database file alone, ignoring the WAL: rows show there only
        // once a checkpoint has copied them.
        let in_file = || -> i64 {
            let uri = format!("file:{}?immutable=1", path.display());
            let c = Connection::open_with_flags(
                uri,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
            )
            .unwrap();
            c.query_row("SELECT count(*) FROM files", [], |r| r.get(0))
                .unwrap_or(0)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while in_file() < 50 {
            assert!(
                std::time::Instant::now() < deadline,
                "the checkpoint thread did not copy the commits into the database file"
            );
            tokio::time::sleep(CHECKPOINT_INTERVAL / 4).await;
        }
        assert!(store.get("id49").await.unwrap().is_some());
    }
}
