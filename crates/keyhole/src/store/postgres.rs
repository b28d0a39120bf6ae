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
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
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

/// Names the server's reason (SQLSTATE and message) rather than tokio-postgres' terse "db error".
fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => {
            StoreError::Backend(format!("postgres: {} ({})", db.message(), db.code().code()))
        }
        None => StoreError::Backend(format!("postgres: {e}")),
    }
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|v| v as u64)
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| v as i64)
}

fn from_row(row: &Row) -> Result<FileRecord, StoreError> {
    let get_err = |e: tokio_postgres::Error| backend(format!("postgres: unexpected row: {e}"));
    let status: String = row.try_get(11).map_err(get_err)?;
    Ok(FileRecord {
        file_id: row.try_get(0).map_err(get_err)?,
        original_filename: row.try_get(1).map_err(get_err)?,
        content_type: row.try_get(2).map_err(get_err)?,
        object_key: row.try_get(3).map_err(get_err)?,
        upload_url_generated_at: row.try_get(4).map_err(get_err)?,
        uploaded_at: row.try_get(5).map_err(get_err)?,
        size: opt_u64(row.try_get(6).map_err(get_err)?),
        declared_size: opt_u64(row.try_get(7).map_err(get_err)?),
        declared_sha256: row.try_get(8).map_err(get_err)?,
        sha256: row.try_get(9).map_err(get_err)?,
        etag: row.try_get(10).map_err(get_err)?,
        status: Status::parse(&status).unwrap_or(Status::Pending),
        owner: row.try_get(12).map_err(get_err)?,
        ttl: row.try_get(13).map_err(get_err)?,
        upload_id: row.try_get(14).map_err(get_err)?,
        part_size: opt_u64(row.try_get(15).map_err(get_err)?),
    })
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db` or `host=... user=...`), checks the
    /// server answers and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| backend(format!("postgres URL: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
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
        let store = PostgresStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| backend(format!("postgres: {e}")))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
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
        let version: i32 = tx
            .query_one(
                "SELECT COALESCE(max(version), 0) FROM keyhole_schema_version",
                &[],
            )
            .await
            .map_err(pg)?
            .get(0);
        let known = MIGRATIONS.len() as i32;
        if version > known {
            return Err(StoreError::Backend(format!(
                "database schema version {version} is newer than this keyhole understands \
                 ({known}); upgrade keyhole"
            )));
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
        tx.commit().await.map_err(pg)
    }

    /// Runs one statement and returns the number of rows it touched.
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client.execute(&stmt, params).await.map_err(pg)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client.query(&stmt, params).await.map_err(pg)
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
                self.query(
                    &format!(
                        "SELECT {COLUMNS} FROM files WHERE owner = $1 \
                         AND (ttl IS NULL OR ttl > $2) \
                         AND (upload_url_generated_at, file_id) < ($3, $4) \
                         ORDER BY upload_url_generated_at DESC, file_id DESC LIMIT $5"
                    ),
                    &[&owner, &now, created, id, &fetch],
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
        rows.iter()
            .map(|r| {
                let number: i64 = r.try_get(0).map_err(pg)?;
                Ok(PartRecord {
                    part_number: u32::try_from(number).map_err(|_| {
                        backend(format!("stored part number {number} out of range"))
                    })?,
                    size: r.try_get::<_, i64>(1).map_err(pg)? as u64,
                    sha256: r.try_get(2).map_err(pg)?,
                    etag: r.try_get(3).map_err(pg)?,
                })
            })
            .collect()
    }

    async fn delete_parts(&self, file_id: &str) -> Result<(), StoreError> {
        self.execute("DELETE FROM parts WHERE file_id = $1", &[&file_id])
            .await?;
        Ok(())
    }

    async fn extend_pending(&self, file_id: &str, ttl: i64, now: i64) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "UPDATE files SET ttl = $2 WHERE file_id = $1 AND status = 'pending' \
                 AND (ttl IS NULL OR ttl > $3)",
                &[&file_id, &ttl, &now],
            )
            .await?;
        Ok(n == 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(pg)?;
        Ok(())
    }
}
