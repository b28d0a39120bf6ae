//! HTTP worker threads: one single-threaded tokio runtime per core, each serving the connections an
//! acceptor hands it in turn.
//!
//! A multi-threaded runtime moves tasks between its workers and runs each worker's queue in the
//! order tasks were woken. Minting is CPU-bound (an RSA-2048 signature is about 0.3 ms), so under
//! load those queues hold dozens of requests, and a request that is woken again (its body arrived,
//! its record was committed) goes to the back of whichever queue it lands on. Pinning every
//! connection to one thread keeps each request's work, and the signing queue
//! ([`crate::signq`]) that orders it, on one core; this is the model of nginx's worker processes.
//! The trade-off is nginx's too: connections are spread evenly, not their load, so a connection
//! that keeps its worker busy (a large upload being hashed) shares that core with the others
//! handed to the same worker rather than having them moved away.
//!
//! Tasks a request spawns run on its worker's runtime, and other workers may depend on them: a
//! backend client pools connections across workers, each driven by a task on the worker that
//! opened it. So on a graceful stop a worker whose connections are done keeps its runtime
//! running until every worker is done.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// The worker count when none is configured: one per core the process may use.
pub fn default_count() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
}

/// How long a stopping worker waits for its blocking file operations.
const BLOCKING_GRACE: Duration = Duration::from_secs(5);

/// Connections handed over by the acceptor.
struct Handed {
    rx: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
}

impl Handed {
    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some((stream, peer)) = self.rx.recv().await else {
                // The acceptor stopped: no more connections; the graceful shutdown ends `serve`.
                return std::future::pending().await;
            };
            match TcpStream::from_std(stream) {
                Ok(stream) => return (stream, peer),
                Err(e) => tracing::warn!(error = %e, %peer, "cannot register a connection"),
            }
        }
    }
}

/// Serves HTTP/1.1 on every connection `listener` hands over until `shutdown` completes, then
/// waits for the requests in flight. A client gets `client_timeout` to send a request's headers,
/// and an idle keep-alive connection is closed after as long; so a client that opens
/// connections and sends nothing, or headers a byte at a time, cannot keep them.
///
/// HTTP/1.1 only: the edge and the API are HTTP/1.1 services (CloudFront speaks HTTP/1.1 to its
/// origins, and so do the clients here); cleartext HTTP/2 would multiply what one connection can
/// hold open.
async fn serve(
    mut listener: Handed,
    app: Router,
    client_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's own limit (a bare 431 with no body, request id or log line) sits above
    // `observe`'s, which answers in JSON and counts it.
    http.timer(TokioTimer::new())
        .header_read_timeout(client_timeout)
        .max_headers(2 * crate::http::MAX_HEADER_COUNT);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            c = listener.accept() => c,
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                tower::ServiceExt::oneshot(app.clone(), request.map(axum::body::Body::new))
            },
        );
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Held by a worker while it serves; counts it as finished when dropped, even by a panic.
struct Serving(std::sync::Arc<watch::Sender<usize>>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n += 1);
    }
}

/// The running workers and their acceptor. Dropping it ends every connection at once, as
/// [`Workers::force_stop`] does.
pub struct Workers {
    done: Vec<oneshot::Receiver<()>>,
    acceptor: Option<tokio::task::JoinHandle<()>>,
    force: watch::Sender<bool>,
}

impl Workers {
    /// Starts `count` worker threads serving `app`, and an acceptor task (on the calling runtime)
    /// that hands them the connections of `listener` in turn. All stop gracefully once `stop`
    /// turns true: no new connections, and requests in flight finish.
    pub async fn start(
        count: usize,
        listener: TcpListener,
        app: Router,
        client_timeout: Duration,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<Workers> {
        let (force, _) = watch::channel(false);
        let count = count.max(1);
        let finished = std::sync::Arc::new(watch::channel(0usize).0);
        let mut senders = Vec::new();
        let mut done = Vec::new();
        for i in 0..count {
            let (tx, rx) = mpsc::unbounded_channel();
            let (done_tx, done_rx) = oneshot::channel();
            let (ready_tx, ready_rx) = oneshot::channel();
            let app = app.clone();
            let mut stop = stop.clone();
            let mut force = force.subscribe();
            let finished = finished.clone();
            // The runtime is built on its own thread: dropping one here, in an async context,
            // would panic if the thread could not be started.
            std::thread::Builder::new()
                .name(format!("keyhole-http-{i}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .thread_name(format!("keyhole-http-{i}-blocking"))
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    runtime.block_on(async move {
                        let _signing = crate::signq::install();
                        let serving = Serving(finished.clone());
                        let listener = Handed { rx };
                        let serve = serve(listener, app, client_timeout, async move {
                            let _ = stop.wait_for(|s| *s).await;
                        });
                        tokio::select! {
                            () = serve => {}
                            _ = force.wait_for(|f| *f) => {}
                        }
                        drop(serving);
                        // Tasks this worker's requests started keep running until every worker
                        // has finished: a backend connection this worker opened may be pooled
                        // and feeding a response another worker is still sending.
                        let mut all = finished.subscribe();
                        tokio::select! {
                            _ = all.wait_for(|n| *n >= count) => {}
                            _ = force.wait_for(|f| *f) => {}
                        }
                    });
                    runtime.shutdown_timeout(BLOCKING_GRACE);
                    let _ = done_tx.send(());
                })?;
            ready_rx
                .await
                .map_err(|_| std::io::Error::other("a worker thread ended while starting"))??;
            senders.push(tx);
            done.push(done_rx);
        }
        let mut stop = stop;
        let acceptor = tokio::spawn(async move {
            let mut next = 0;
            loop {
                let accepted = tokio::select! {
                    r = listener.accept() => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let (stream, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        accept_error(e).await;
                        continue;
                    }
                };
                let mut conn = match stream.into_std() {
                    Ok(stream) => (stream, peer),
                    Err(e) => {
                        tracing::warn!(error = %e, %peer, "cannot hand over a connection");
                        continue;
                    }
                };
                // The next worker in turn; one whose thread has ended is passed over.
                let mut handed = false;
                for _ in 0..senders.len() {
                    let to = next;
                    next = (next + 1) % senders.len();
                    match senders[to].send(conn) {
                        Ok(()) => {
                            handed = true;
                            break;
                        }
                        Err(mpsc::error::SendError(back)) => conn = back,
                    }
                }
                if !handed {
                    tracing::error!(%peer, "no HTTP worker is running; connection closed");
                }
            }
        });
        Ok(Workers {
            done,
            acceptor: Some(acceptor),
            force,
        })
    }

    /// Waits until every worker has stopped.
    pub async fn wait(&mut self) {
        if let Some(acceptor) = &mut self.acceptor {
            let _ = acceptor.await;
            self.acceptor = None;
        }
        while let Some(done) = self.done.last_mut() {
            // An error means the thread ended without reporting: stopped all the same.
            let _ = done.await;
            self.done.pop();
        }
    }

    /// Ends every connection still open now, without waiting for its requests.
    pub fn force_stop(&self) {
        let _ = self.force.send(true);
        if let Some(acceptor) = &self.acceptor {
            acceptor.abort();
        }
    }
}

/// A failed `accept`: connection-level errors are the client's and are skipped; running out of
/// file descriptors is waited out rather than spun on.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in one second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Sends `GET path` on a new connection and returns it once the response's headers are in,
    /// with what was read of the response so far.
    async fn get_headers(addr: SocketAddr, path: &str) -> (TcpStream, Vec<u8>) {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the headers");
            seen.extend_from_slice(&buf[..n]);
        }
        (conn, seen)
    }

    #[tokio::test]
    async fn a_worker_keeps_its_tasks_running_until_every_worker_has_finished() {
        // Worker 0 answers /start by spawning, on its own runtime, the task that produces what
        // worker 1 sends for /stream: the shape of a pooled backend connection that one worker
        // opened and another worker's download reads from.
        const PIECES: usize = 20;
        let (tx, rx) = mpsc::channel::<bytes::Bytes>(1);
        let tx = Arc::new(Mutex::new(Some(tx)));
        let rx = Arc::new(Mutex::new(Some(rx)));
        let app = Router::new()
            .route(
                "/start",
                get(move || async move {
                    let tx = tx.lock().unwrap().take().unwrap();
                    tokio::spawn(async move {
                        for _ in 0..PIECES {
                            tokio::time::sleep(Duration::from_millis(25)).await;
                            if tx.send(bytes::Bytes::from_static(b"x")).await.is_err() {
                                return;
                            }
                        }
                    });
                    "started"
                }),
            )
            .route(
                "/stream",
                get(move || async move {
                    let rx = rx.lock().unwrap().take().unwrap();
                    let pieces = futures_util::stream::unfold(rx, |mut rx| async move {
                        let piece = rx.recv().await?;
                        Some((Ok::<_, std::io::Error>(piece), rx))
                    });
                    Body::from_stream(pieces)
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let mut workers = Workers::start(2, listener, app, Duration::from_secs(60), stopped)
            .await
            .unwrap();

        // Connections go to the workers in turn: the first to worker 0, the second to worker 1.
        let (mut first, mut seen) = get_headers(addr, "/start").await;
        first.read_to_end(&mut seen).await.unwrap();
        assert!(String::from_utf8_lossy(&seen).ends_with("started"));
        let (mut second, mut response) = get_headers(addr, "/stream").await;

        // Worker 0 has nothing in flight and finishes serving at once; worker 1 is still
        // sending what worker 0's task produces.
        stop.send(true).unwrap();
        second.read_to_end(&mut response).await.unwrap();
        let text = String::from_utf8_lossy(&response);
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        assert_eq!(body.matches('x').count(), PIECES, "response: {text:?}");
        assert!(body.ends_with("0\r\n\r\n"), "response: {text:?}");
        tokio::time::timeout(Duration::from_secs(10), workers.wait())
            .await
            .expect("every worker stops once the last response is sent");
    }
}
