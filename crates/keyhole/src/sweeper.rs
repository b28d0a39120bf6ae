//! The sweeper: deletes files past their TTL (abandoned uploads and files past retention),
//! object first and record second, so a crash in between leaves only an expired record that the
//! next sweep finishes and never a live record without its object.

use std::time::Duration;

use crate::state::{now_secs, SharedState};
use crate::store::FileRecord;
use crate::telemetry::Metrics;

/// Most records handled in one sweep (the next sweep continues).
pub const BATCH: usize = 500;

/// Removes one expired file: its object, then its record (only if still expired).
pub async fn remove(state: &SharedState, record: &FileRecord, now: i64) -> Result<bool, String> {
    state
        .objects
        .delete(&record.object_key)
        .await
        .map_err(|e| e.to_string())?;
    state
        .meta
        .delete_expired(&record.file_id, now)
        .await
        .map_err(|e| e.to_string())
}

/// One pass: returns how many files were removed.
pub async fn sweep_once(state: &SharedState) -> usize {
    let now = now_secs();
    let expired = match state.meta.expired(now, BATCH).await {
        Ok(r) => r,
        Err(e) => {
            state.metrics.sweep_errors.inc();
            tracing::error!(error = %e, "sweep: cannot list expired files");
            return 0;
        }
    };
    let mut removed = 0;
    for record in &expired {
        match remove(state, record, now).await {
            Ok(true) => {
                removed += 1;
                Metrics::count(&state.metrics.swept, record.status.as_str());
            }
            Ok(false) => {}
            Err(e) => {
                state.metrics.sweep_errors.inc();
                tracing::error!(error = %e, file_id = %record.file_id, "sweep: cannot remove file");
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "sweep removed expired files");
    }
    removed
}

/// Runs [`sweep_once`] every `interval` until the task is aborted.
pub async fn run(state: SharedState, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        sweep_once(&state).await;
    }
}
