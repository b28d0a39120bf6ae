//! The signing queue: on an HTTP worker thread ([`crate::workers`]), links minted on the request
//! path are signed in the order their requests asked, by one signer task, rather than inside each
//! request's own poll.
//!
//! An RSA-2048 signature takes about 0.3 ms of CPU. Signed inline, it runs wherever the request's
//! task happens to sit in the worker's run queue, and everything queued behind it waits: the
//! answers of requests whose records are already committed, and requests that are only being
//! parsed. Under load that queue holds dozens of tasks, which spreads minting latency widely. Here
//! the request queues a job and waits; the worker's signer task takes jobs oldest first, runs up to
//! [`RUN`] of them back to back, and then yields, which lets every other task that is ready run
//! first. Cheap work (parsing, answering) therefore goes ahead of signatures, and signatures go in
//! arrival order. `docs/performance.md` (Minting) has the figures; 32 jobs per run instead of 8
//! measured no faster and raised the p99 from 15 to 21 ms.
//!
//! The queue holds at most [`MAX_QUEUED`] signatures (about 2 s of RSA signing): past that a
//! request is refused at once ([`Refused::Busy`], answered 503 with `Retry-After`) instead of
//! waiting longer than its client would, and the memory of a flood of requests stays bounded.
//!
//! On any other thread (a test's runtime, the Lambda, the command-line client) the job runs inline.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{oneshot, Notify};

type Job = Box<dyn FnOnce() + Send>;

/// Jobs the signer runs back to back before it yields to the worker's other tasks: enough to
/// amortise the yield (a poll of the I/O driver), few enough that an answer waits at most a few
/// milliseconds behind signatures.
const RUN: usize = 8;

/// Signatures a worker's queue holds at most: about 2 s of RSA-2048 signing on one core (0.7 s
/// with ECDSA). Minting at 64 connections keeps at most 64 queued.
pub const MAX_QUEUED: usize = 8192;

/// Why a job did not run.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The queue was closed (its worker is stopping) before the job ran.
    #[error("the signing queue has stopped")]
    Stopped,
    /// The queue holds [`MAX_QUEUED`] signatures already.
    #[error("the signing queue is full")]
    Busy,
    /// The job panicked (a defect: it is not worth calling again).
    #[error("the signing job failed")]
    Panicked,
}

struct Inner {
    jobs: Mutex<Queue>,
    ready: Notify,
    closed: AtomicBool,
}

/// Jobs waiting, with the signatures each will make.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<(usize, Job)>,
    /// The signatures of all of `jobs`.
    signatures: usize,
}

impl Inner {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

thread_local! {
    static QUEUE: RefCell<Option<Arc<Inner>>> = const { RefCell::new(None) };
}

/// This thread's signing queue, open while it lives.
#[must_use = "the queue closes when the guard is dropped"]
pub struct Installed {
    inner: Arc<Inner>,
}

/// Opens a signing queue for this thread and starts its signer task on the current runtime,
/// which must run every task on this thread (a current-thread runtime).
pub fn install() -> Installed {
    let inner = Arc::new(Inner {
        jobs: Mutex::new(Queue::default()),
        ready: Notify::new(),
        closed: AtomicBool::new(false),
    });
    tokio::spawn(signer(inner.clone()));
    QUEUE.with(|q| *q.borrow_mut() = Some(inner.clone()));
    Installed { inner }
}

impl Drop for Installed {
    fn drop(&mut self) {
        QUEUE.with(|q| {
            if q.borrow()
                .as_ref()
                .is_some_and(|i| Arc::ptr_eq(i, &self.inner))
            {
                *q.borrow_mut() = None;
            }
        });
        self.inner.closed.store(true, Ordering::Release);
        self.inner.ready.notify_one();
    }
}

/// Runs `job`, which makes `signatures` signatures, on this thread's signing queue after the
/// jobs queued before it, and returns its result; inline where the thread has no queue.
/// Refused at once when the queue would hold more than [`MAX_QUEUED`] signatures (a job larger
/// than that is taken only by an empty queue).
pub async fn run<T, F>(signatures: usize, job: F) -> Result<T, Refused>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let Some(inner) = QUEUE.with(|q| q.borrow().clone()) else {
        return Ok(job());
    };
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        // The requester may have gone away (request cancelled, client disconnected): its
        // signatures would be thrown away, so they are not made.
        if tx.is_closed() {
            return;
        }
        let _ = tx.send(job());
    });
    {
        let mut queue = inner.queue();
        if queue.signatures > 0 && queue.signatures + signatures > MAX_QUEUED {
            return Err(Refused::Busy);
        }
        queue.signatures += signatures;
        queue.jobs.push_back((signatures, job));
    }
    inner.ready.notify_one();
    // A job that panicked, or a queue closed before its turn, drops the sender.
    rx.await.map_err(|_| {
        if inner.closed.load(Ordering::Acquire) {
            Refused::Stopped
        } else {
            Refused::Panicked
        }
    })
}

/// The signer task: runs queued jobs oldest first, [`RUN`] at a time, until the queue closes;
/// jobs still queued then are dropped, which fails their requests with [`Stopped`].
async fn signer(inner: Arc<Inner>) {
    loop {
        let mut ran = 0;
        while ran < RUN {
            let job = {
                let mut queue = inner.queue();
                let job = queue.jobs.pop_front();
                if let Some((signatures, _)) = &job {
                    queue.signatures -= signatures;
                }
                job
            };
            let Some((_, job)) = job else { break };
            // A panicking job drops its reply sender (its request gets an error); the signer
            // carries on with the next.
            let _ = catch_unwind(AssertUnwindSafe(job));
            ran += 1;
        }
        if inner.closed.load(Ordering::Acquire) {
            *inner.queue() = Queue::default();
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
    use futures_util::FutureExt;

    #[tokio::test(flavor = "current_thread")]
    async fn runs_jobs_in_order_and_returns_results() {
        let _queue = install();
        // `join_all` polls its futures in order, which queues job 0 first, then 1, and so on.
        let order = Arc::new(Mutex::new(Vec::new()));
        let results = futures_util::future::join_all((0..100usize).map(|i| {
            let order = order.clone();
            run(1, move || {
                order.lock().unwrap().push(i);
                i * 2
            })
        }))
        .await;
        let results: Vec<usize> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(*order.lock().unwrap(), (0..100).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn jobs_run_on_the_signer_not_inline() {
        let _queue = install();
        let mut pending = Box::pin(run(1, || 7));
        // Queued, not run: the signer task has not had a turn yet.
        assert!((&mut pending).now_or_never().is_none());
        assert_eq!(pending.await.unwrap(), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_job_fails_alone() {
        let _queue = install();
        assert!(matches!(
            run(1, || -> u32 { panic!("boom") }).await,
            Err(Refused::Panicked)
        ));
        assert_eq!(run(1, || 7).await.unwrap(), 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_job_whose_requester_left_is_not_run() {
        let _queue = install();
        let ran = Arc::new(Mutex::new(false));
        let flag = ran.clone();
        let mut abandoned = Box::pin(run(1, move || *flag.lock().unwrap() = true));
        assert!((&mut abandoned).now_or_never().is_none(), "queued");
        drop(abandoned);
        // Jobs run in order: once a later one has, the abandoned one had its turn.
        assert_eq!(run(1, || 7).await.unwrap(), 7);
        assert!(!*ran.lock().unwrap(), "signed for nobody");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_refuses_until_it_drains() {
        let _queue = install();
        // A job larger than the bound is taken by an empty queue.
        let mut large = Box::pin(run(MAX_QUEUED + 1, || 0));
        assert!((&mut large).now_or_never().is_none(), "queued");
        assert!(matches!(
            run(1, || 1).now_or_never(),
            Some(Err(Refused::Busy))
        ));
        assert_eq!(large.await.unwrap(), 0);
        // Filled to the bound exactly, one signature more is refused without waiting.
        let mut first = Box::pin(run(MAX_QUEUED - 1, || 1));
        let mut second = Box::pin(run(1, || 2));
        assert!((&mut first).now_or_never().is_none());
        assert!((&mut second).now_or_never().is_none());
        assert!(matches!(
            run(1, || 3).now_or_never(),
            Some(Err(Refused::Busy))
        ));
        assert_eq!((first.await.unwrap(), second.await.unwrap()), (1, 2));
        // Drained: taken again.
        assert_eq!(run(MAX_QUEUED, || 4).await.unwrap(), 4);
    }

    #[test]
    fn without_a_queue_the_job_runs_inline() {
        assert_eq!(run(1, || 5).now_or_never().unwrap().unwrap(), 5);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn closing_finishes_queued_jobs_and_later_ones_run_inline() {
        let queue = install();
        let mut queued = Box::pin(run(1, || 1));
        assert!((&mut queued).now_or_never().is_none());
        let weak = Arc::downgrade(&queue.inner);
        drop(queue);
        assert_eq!(queued.await.unwrap(), 1);
        assert_eq!(run(1, || 2).now_or_never().unwrap().unwrap(), 2);
        // The signer task has ended and let go of the queue.
        for _ in 0..100 {
            if weak.strong_count() == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the signer task still holds the closed queue");
    }
}
