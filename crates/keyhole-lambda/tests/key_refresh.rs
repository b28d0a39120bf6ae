//! The key's secret read again at the start of an invocation: a Secrets Manager that stops
//! answering delays the invocation by at most `KEY_READ_BOUND`, and the key in use stays.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP relay to `target` (`http://HOST:PORT`) that, once `hang` is set, stops passing requests
/// on, on new connections and pooled ones alike, and never answers them.
async fn relay(target: &str) -> (String, Arc<AtomicBool>) {
    let upstream = target.trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hang = Arc::new(AtomicBool::new(false));
    let flag = hang.clone();
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let (upstream, flag) = (upstream.clone(), flag.clone());
            tokio::spawn(async move {
                let server = TcpStream::connect(&upstream).await.unwrap();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match client_read.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if flag.load(Ordering::SeqCst) {
                        // Keep the connection open and silent (both halves stay owned here).
                        std::future::pending::<()>().await;
                    }
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), hang)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_secrets_manager_delays_an_invocation_only_briefly() {
    let Some(moto) = moto("key refresh bound") else {
        return;
    };
    let (endpoint, hang) = relay(&moto.secrets).await;
    let mut aws = Aws::create(moto).await;
    let lambda = aws
        .lambda_with(|c| {
            c.secrets_endpoint = Some(endpoint);
            c.key_refresh = Duration::from_secs(1);
        })
        .await;
    let errors = || lambda.state().metrics.key_refresh_errors.get();
    assert_eq!(errors(), 0);

    hang.store(true, Ordering::SeqCst);
    // Due for a read again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let (status, config) = invoke_http(&lambda, api_event("config", "")).await;
    let waited = started.elapsed();
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["keyPairId"], KEY_PAIR_ID, "the key in use stays");
    assert_eq!(errors(), 1, "the slow read is counted");
    // The bound is 2 s; the client's own timeout (20 s) is what it cuts short.
    assert!(
        waited < Duration::from_secs(10),
        "the invocation waited {waited:?} for the secret"
    );
}
