//! The signing queue: links minted on the request path are signed in the order their requests
//! asked, by one signer task per runtime worker, rather than inside each request's own poll.
//!
//! An RSA-2048 signature takes about 0.3 ms of CPU. Signed inline, it runs wherever the request's
//! task happens to sit in its worker's run queue, and everything queued behind it waits: the answers
//! of requests whose records are already committed, and requests that are only being parsed. Under
//! load those queues hold dozens of tasks, which spreads minting latency widely (p99 about 1.8 times
//! the mean at 64 connections on two cores). Here the request queues a job and waits; the signer
//! tasks take jobs oldest first, run up to [`RUN`] of them back to back, and then yield, which in
//! tokio lets every other task that is ready run first. Cheap work (parsing, answering) therefore
//! goes ahead of signatures, and signatures go in arrival order: at 64 connections on two cores the
//! p99 fell from about 21 to 16 ms with the same throughput (`bash bench/serve.sh`; the README has
//! the figures).
//!
//! Outside a tokio runtime the job runs inline.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};

use tokio::sync::{oneshot, Notify};

type Job = Box<dyn FnOnce() + Send>;

/// Jobs a signer task runs back to back before it yields to the worker's other tasks: enough to
/// amortise the yield (a poll of the I/O driver), few enough that an answer waits at most a few
/// milliseconds behind signatures.
const RUN: usize = 8;

/// The queue was shut down (its runtime stopped) before the job ran.
#[derive(Debug, thiserror::Error)]
#[error("the signing queue has stopped")]
pub struct Stopped;

struct Inner {
    jobs: Mutex<VecDeque<Job>>,
    ready: Notify,
    closed: AtomicBool,
}

/// A FIFO of signing jobs run by one task per runtime worker (started on first use, stopped when
/// the queue is dropped).
pub struct SignQueue {
    inner: Arc<Inner>,
    started: Once,
}

impl Default for SignQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SignQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignQueue").finish_non_exhaustive()
    }
}

impl SignQueue {
    /// An empty queue; its signer tasks start with the first job.
    pub fn new() -> Self {
        SignQueue {
            inner: Arc::new(Inner {
                jobs: Mutex::new(VecDeque::new()),
                ready: Notify::new(),
                closed: AtomicBool::new(false),
            }),
            started: Once::new(),
        }
    }

    /// Runs `job` on a signer task after the jobs queued before it, and returns its result.
    pub async fn run<T, F>(&self, job: F) -> Result<T, Stopped>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Ok(job());
        };
        self.started.call_once(|| {
            for _ in 0..runtime.metrics().num_workers().max(1) {
                runtime.spawn(signer(self.inner.clone()));
            }
        });
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The requester may have gone away (request cancelled); nothing to do then.
            let _ = tx.send(job());
        });
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(job);
        self.inner.ready.notify_one();
        // A job that panicked, or a queue whose runtime stopped, drops the sender.
        rx.await.map_err(|_| Stopped)
    }
}

impl Drop for SignQueue {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.ready.notify_waiters();
    }
}

/// One signer task: runs queued jobs oldest first, [`RUN`] at a time, until the queue is dropped.
async fn signer(inner: Arc<Inner>) {
    loop {
        let mut ran = 0;
        while ran < RUN {
            let job = inner
                .jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some(job) = job else { break };
            // A panicking job drops its reply sender (its request gets an error); the signer
            // carries on with the next.
            let _ = catch_unwind(AssertUnwindSafe(job));
            ran += 1;
        }
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        if ran == RUN {
            // tokio runs a yielded task only after the other tasks that are ready.
            tokio::task::yield_now().await;
        } else {
            // Empty: wait for the next job (a `notify_one` without a waiter is kept, so a job
            // queued between the check and here is not missed).
            inner.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn runs_jobs_in_order_and_returns_results() {
        // One worker, so one signer: jobs run exactly in the order they were queued. `join_all`
        // polls its futures in order, which queues job 0 first, then 1, and so on.
        let q = SignQueue::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        let results = futures_util::future::join_all((0..100usize).map(|i| {
            let order = order.clone();
            q.run(move || {
                order.lock().unwrap().push(i);
                i * 2
            })
        }))
        .await;
        let results: Vec<usize> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(*order.lock().unwrap(), (0..100).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requesters_all_get_their_own_result() {
        let q = Arc::new(SignQueue::new());
        let handles: Vec<_> = (0..200usize)
            .map(|i| {
                let q = q.clone();
                tokio::spawn(async move { q.run(move || i + 1).await })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await.unwrap().unwrap(), i + 1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_fails_alone() {
        let q = SignQueue::new();
        let err = q.run(|| -> u32 { panic!("boom") }).await;
        assert!(err.is_err());
        assert_eq!(q.run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn works_on_a_current_thread_runtime() {
        let q = SignQueue::new();
        let n = Arc::new(AtomicUsize::new(0));
        for _ in 0..20 {
            let n = n.clone();
            q.run(move || n.fetch_add(1, Ordering::Relaxed))
                .await
                .unwrap();
        }
        assert_eq!(n.load(Ordering::Relaxed), 20);
    }

    #[test]
    fn outside_a_runtime_the_job_runs_inline() {
        let q = SignQueue::new();
        let v = futures_util::FutureExt::now_or_never(q.run(|| 5)).unwrap();
        assert_eq!(v.unwrap(), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signers_stop_when_the_queue_is_dropped() {
        let q = SignQueue::new();
        q.run(|| ()).await.unwrap();
        let weak = Arc::downgrade(&q.inner);
        drop(q);
        for _ in 0..200 {
            if weak.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("signer tasks still hold the queue after it was dropped");
    }
}
