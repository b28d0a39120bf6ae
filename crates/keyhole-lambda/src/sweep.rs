//! The scheduled sweep: EventBridge Scheduler sends [`SWEEP_EVENT`]-shaped events every 15
//! minutes and the Lambda runs one bounded pass of keyhole's sweeper (object first, record
//! second, multipart uploads aborted), the same pass `keyhole serve` runs on its interval.

use keyhole::state::SharedState;
use serde::Serialize;

/// The schedule's input (`sweep_input` in `deploy/terraform/modules/upload-events`).
pub const SWEEP_EVENT: &str =
    r#"{"source":"keyhole.scheduler","detail-type":"Keyhole Sweep","detail":{"task":"sweep"}}"#;

/// What one sweep did; the invocation's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepSummary {
    /// Expired files removed (object and record).
    pub removed: usize,
    /// Files that could not be removed (logged; the next sweep tries again).
    pub errors: u64,
    /// Most files one sweep looks at; when `removed` reaches it, more may be waiting.
    pub limit: usize,
}

/// Runs one pass of [`keyhole::sweeper::sweep_once`]. Idempotent: a second run finds nothing
/// left to do.
pub async fn run(state: &SharedState) -> SweepSummary {
    let before = state.metrics.sweep_errors.get();
    let removed = keyhole::sweeper::sweep_once(state).await;
    let errors = state.metrics.sweep_errors.get().saturating_sub(before);
    tracing::info!(removed, errors, "sweep finished");
    SweepSummary {
        removed,
        errors,
        limit: keyhole::sweeper::BATCH,
    }
}
