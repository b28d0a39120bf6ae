//! The scheduled sweep: EventBridge Scheduler sends [`SWEEP_EVENT`]-shaped events every 15
//! minutes and the Lambda runs one bounded pass of keyhole's sweeper (object first, record
//! second, multipart uploads aborted), the same pass `keyhole serve` runs on its interval.

use std::time::{Duration, Instant, SystemTime};

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
    /// Whether the sweep stopped because the invocation's time was running out (more may be
    /// waiting; the next scheduled sweep continues).
    pub out_of_time: bool,
}

/// Time left unused before the invocation's deadline, for the answer and the logs.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);
/// How long a sweep runs when the invocation's deadline is not known.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(20);

/// The moment [`DEADLINE_MARGIN`] before an invocation's `deadline`: when work stops so the
/// invocation can still answer.
pub fn until(deadline: SystemTime) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(DEADLINE_MARGIN);
    Instant::now() + left
}

/// Runs one pass of [`keyhole::sweeper::sweep_until`], up to [`keyhole::sweeper::PASS_LIMIT`]
/// files and until [`DEADLINE_MARGIN`] before `deadline` (the invocation's; [`DEFAULT_BUDGET`]
/// from now when unknown), so a backlog never makes the invocation time out. Idempotent: a
/// second run finds nothing left to do.
pub async fn run(state: &SharedState, deadline: Option<SystemTime>) -> SweepSummary {
    let until = deadline.map_or_else(|| Instant::now() + DEFAULT_BUDGET, until);
    let before = state.metrics.sweep_errors.get();
    let keyhole::sweeper::Pass {
        removed,
        out_of_time,
    } = keyhole::sweeper::sweep_until(state, Some(until)).await;
    let errors = state.metrics.sweep_errors.get().saturating_sub(before);
    tracing::info!(removed, errors, out_of_time, "sweep finished");
    SweepSummary {
        removed,
        errors,
        limit: keyhole::sweeper::PASS_LIMIT,
        out_of_time,
    }
}
