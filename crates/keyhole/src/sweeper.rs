//! The sweeper: deletes files past their TTL (abandoned uploads and files past retention). It
//! claims the record first, then deletes the object, then the record, so a crash in between
//! leaves only an expired record that the next sweep finishes and never a live record without
//! its object, whatever the clocks of the replicas.

use std::time::Duration;

use futures_util::StreamExt;

use crate::state::{now_secs, SharedState};
use crate::store::FileRecord;
use crate::telemetry::Metrics;

/// Records listed at a time.
pub const BATCH: usize = 500;
/// Most records one sweep handles; the next sweep continues. A backlog (links minted faster than
/// one batch per interval goes) is worked through a batch after another up to this.
pub const PASS_LIMIT: usize = 20 * BATCH;

/// Removes a file now, as `DELETE /api/files/{id}` does: expires its record first (from that
/// instant the file is gone for every reader, and an upload in flight cannot complete, on any
/// replica whatever its clock: the TTL goes to the epoch), then removes object and record as
/// [`remove`] does. The removal is decided once the record is expired: should it fail (storage
/// down), it is logged and the sweeper finishes it. Errs only when the record cannot be expired.
pub async fn remove_now(
    state: &SharedState,
    record: &FileRecord,
) -> Result<(), crate::store::StoreError> {
    let now = now_secs();
    state
        .meta
        .expire(&record.file_id, crate::store::GONE_TTL)
        .await?;
    if let Err(e) = remove(state, record, now).await {
        tracing::warn!(file_id = %record.file_id, error = %e, "file not removed yet; the sweeper will");
    }
    Ok(())
}

/// Removes one expired file: claims its record (see [`crate::store::MetaStore::claim_expired`];
/// `false` if it is no longer expired), removes its object and any multipart parts, then the
/// record. A crash in between leaves a claimed record, which the next sweep finishes.
pub async fn remove(state: &SharedState, record: &FileRecord, now: i64) -> Result<bool, String> {
    // Claimed, the record is expired for every replica, whatever its clock: an edge whose clock
    // runs behind this one's cannot mark it uploaded while its object goes.
    if !state
        .meta
        .claim_expired(&record.file_id, now)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(false);
    }
    state
        .objects
        .delete(&record.object_key)
        .await
        .map_err(|e| e.to_string())?;
    // Whatever the status: a completion cut short after joining the parts (local disk frees
    // them only once the file is in place) leaves them behind an uploaded record. Parts already
    // freed, or used up by S3's join, are no error.
    if let Some(upload_id) = &record.upload_id {
        state
            .objects
            .abort_multipart(&record.object_key, upload_id)
            .await
            .map_err(|e| e.to_string())?;
    }
    state
        .meta
        .delete_expired(&record.file_id, now)
        .await
        .map_err(|e| e.to_string())
}

/// One pass: returns how many files were removed. Lists expired records a batch at a time
/// until there are no more or [`PASS_LIMIT`] were handled. A record that cannot be removed is
/// skipped for the rest of the pass (and tried again by the next), so files that keep failing
/// cannot hold up the ones behind them.
pub async fn sweep_once(state: &SharedState) -> usize {
    sweep_until(state, None).await.removed
}

/// What one pass of [`sweep_until`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Expired files removed (object and record).
    pub removed: usize,
    /// The pass stopped at its deadline with files possibly left to look at (the next pass
    /// continues); `false` when it finished its work, whenever that was.
    pub out_of_time: bool,
}

/// [`sweep_once`], stopping early (between files) once `until` has passed: for a caller with a
/// deadline of its own, such as a Lambda invocation.
pub async fn sweep_until(state: &SharedState, until: Option<std::time::Instant>) -> Pass {
    let out_of_time = || until.is_some_and(|u| std::time::Instant::now() >= u);
    let now = now_secs();
    let mut skip: std::collections::HashSet<String> = std::collections::HashSet::new();
    let (mut removed, mut handled) = (0, 0);
    let stopped = |removed| {
        tracing::info!(
            removed,
            "sweep stopped at its deadline; the next one continues"
        );
        Pass {
            removed,
            out_of_time: true,
        }
    };
    while handled < PASS_LIMIT {
        if out_of_time() {
            return stopped(removed);
        }
        // The failed ones come first again (oldest expiry first): ask for that many more.
        let want = BATCH + skip.len();
        let expired = match state.meta.expired(now, want).await {
            Ok(r) => r,
            Err(e) => {
                state.metrics.sweep_errors.inc();
                tracing::error!(error = %e, "sweep: cannot list expired files");
                break;
            }
        };
        let last_batch = expired.len() < want;
        let mut progress = false;
        let fresh: Vec<&FileRecord> = expired
            .iter()
            .filter(|r| !skip.contains(&r.file_id))
            .collect();
        for record in fresh {
            if out_of_time() {
                return stopped(removed);
            }
            progress = true;
            handled += 1;
            match remove(state, record, now).await {
                Ok(true) => {
                    removed += 1;
                    Metrics::count(&state.metrics.swept, record.status.as_str());
                }
                // No longer expired (completed or renewed meanwhile).
                Ok(false) => {
                    skip.insert(record.file_id.clone());
                }
                Err(e) => {
                    state.metrics.sweep_errors.inc();
                    tracing::error!(error = %e, file_id = %record.file_id, "sweep: cannot remove file");
                    skip.insert(record.file_id.clone());
                }
            }
        }
        if last_batch || !progress {
            break;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "sweep removed expired files");
    }
    Pass {
        removed,
        out_of_time: false,
    }
}

/// Object names looked up at once by [`reconcile`]: with a metadata store across the network,
/// one at a time would take a round trip per stored file.
const RECONCILE_LOOKUPS: usize = 16;

/// What [`reconcile`] did with one object.
enum Reconciled {
    Kept,
    Recorded,
    Removed,
    Unrecorded,
}

/// Start-up reconciliation after a crash. An object whose record is still pending was committed
/// (only complete, checked bytes ever are) but the crash came before its record was updated: it
/// is recorded now, after the checks [`crate::edge::recover_stored`] makes, and the client's
/// retry finds the upload done (409 `ObjectAlreadyExists` or `already_uploaded`, which clients
/// take as success). Removing it instead would lose a multipart upload for good: its parts are
/// freed when it is assembled. A record that expired meanwhile goes with its object, as the
/// sweeper would. Parts of uploads that are complete are removed. Objects with no record at all
/// are kept and reported (a lost metadata store must not delete files).
///
/// It runs beside the server, which serves at once however many files are stored: every step is
/// one the requests make too (a conditional record update, the removal of an expired upload's
/// object), so a request for the same file meets the same outcome either way.
pub async fn reconcile(state: &SharedState) {
    if !state.objects.single_writer() {
        return;
    }
    let started = std::time::Instant::now();
    let (mut removed, mut recorded, mut unrecorded, mut checked) = (0usize, 0usize, 0usize, 0usize);
    for (prefix, is_parts) in [("uploads", false), ("parts", true)] {
        let keys = match state.objects.list(prefix).await {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, prefix, "reconcile: cannot list objects");
                continue;
            }
        };
        checked += keys.len();
        let mut outcomes = futures_util::stream::iter(keys)
            .map(|key| reconcile_one(state, prefix, is_parts, key))
            .buffer_unordered(RECONCILE_LOOKUPS);
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Reconciled::Kept => {}
                Reconciled::Recorded => recorded += 1,
                Reconciled::Removed => removed += 1,
                Reconciled::Unrecorded => unrecorded += 1,
            }
        }
    }
    if recorded > 0 {
        tracing::warn!(
            recorded,
            "reconcile: recorded uploads whose record update an interrupted run did not make"
        );
    }
    if removed > 0 {
        tracing::warn!(
            removed,
            "reconcile: removed objects of expired uploads and parts of complete ones left by an interrupted run"
        );
    }
    state.metrics.unrecorded_objects.set(unrecorded as i64);
    if unrecorded > 0 {
        tracing::warn!(
            unrecorded,
            "reconcile: objects without a metadata record were kept; if the metadata store was \
             replaced or lost, restore it (docs/runbooks/backup-restore.md)"
        );
    }
    tracing::info!(
        checked,
        seconds = started.elapsed().as_secs_f64(),
        "reconcile: stored objects checked against their records"
    );
}

/// Reconciles the object `key` (under `prefix`) with its record; see [`reconcile`].
async fn reconcile_one(
    state: &SharedState,
    prefix: &str,
    is_parts: bool,
    key: String,
) -> Reconciled {
    let Some(file_id) = key.strip_prefix(prefix).and_then(|k| k.strip_prefix('/')) else {
        return Reconciled::Kept;
    };
    // Only parts of uploads that are complete go. An object with no record at all is kept and
    // reported: that is what a lost or misconfigured metadata store looks like, and deleting
    // would turn a configuration mistake into data loss.
    match state.meta.get(file_id).await {
        Ok(Some(r)) if is_parts && r.status == crate::store::Status::Pending => Reconciled::Kept,
        // Left by a completion cut short after it had joined them.
        Ok(Some(_)) if is_parts => {
            match state
                .objects
                .abort_multipart(&crate::ids::object_key(file_id), "")
                .await
            {
                Ok(()) => Reconciled::Removed,
                Err(e) => {
                    tracing::error!(error = %e, key, "reconcile: cannot remove");
                    Reconciled::Kept
                }
            }
        }
        Ok(Some(r)) if r.status == crate::store::Status::Uploaded => Reconciled::Kept,
        Ok(Some(r)) => {
            use crate::edge::FinishError;
            match crate::edge::recover_stored(state, &r, true).await {
                Ok(_) => {
                    let _ = state.meta.delete_parts(file_id).await;
                    Reconciled::Recorded
                }
                // Expired or deleted: the object went with it.
                Err(FinishError::Gone) => Reconciled::Removed,
                // Kept: the sweeper removes object and record together if the record expires
                // without a retry recording it.
                Err(e) => {
                    tracing::error!(error = ?e, file_id, "reconcile: cannot record a committed upload; kept");
                    Reconciled::Kept
                }
            }
        }
        // Kept and counted, unless deleted through the API since the listing: then neither
        // record nor object (nor parts) is left.
        Ok(None) if is_parts => match state.objects.list(&key).await {
            Ok(parts) if parts.is_empty() => Reconciled::Kept,
            _ => Reconciled::Unrecorded,
        },
        Ok(None) => match state.objects.head(&key).await {
            Err(crate::store::objects::ObjectError::NotFound) => Reconciled::Kept,
            _ => Reconciled::Unrecorded,
        },
        Err(e) => {
            tracing::error!(error = %e, "reconcile: metadata read failed");
            Reconciled::Kept
        }
    }
}

/// Runs [`sweep_once`] every `interval` until the task is aborted.
pub async fn run(state: SharedState, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        sweep_once(&state).await;
        state.metrics.sweeps.inc();
    }
}
