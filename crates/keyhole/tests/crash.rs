//! The real `keyhole serve` process killed mid-upload (SIGKILL) and stopped mid-download
//! (SIGTERM): a crash leaves no partial object and no record pointing at a missing object, data
//! survives a restart, interrupted uploads can be retried with their links, and a graceful stop
//! lets transfers in flight finish.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{pseudo_random, sha256_hex};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const MIB: usize = 1024 * 1024;

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// `keyhole serve`, without the `KEYHOLE_*` settings of whoever runs the tests.
fn serve_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyhole"));
    for (name, _) in std::env::vars() {
        if name.starts_with("KEYHOLE_") {
            command.env_remove(name);
        }
    }
    command.arg("serve");
    command
}

/// A `keyhole serve` child process over a data directory.
struct Keyhole {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Keyhole {
    /// Starts the binary on `port` (public URL = the listen address) and waits for `/healthz`.
    async fn start(data: &Path, port: u16, log: &Path) -> Keyhole {
        Self::start_with(data, port, log, &["--log-format", "text"], &[]).await
    }

    /// As [`Keyhole::start`], with more arguments and environment variables.
    async fn start_with(
        data: &Path,
        port: u16,
        log: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Keyhole {
        let base = format!("http://127.0.0.1:{port}");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut command = serve_command();
        command
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--public-url", &base])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true);
        let mut child = command.spawn().expect("keyhole binary starts");
        let client = client();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "keyhole exited during start-up ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "keyhole not healthy after 15 s:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Keyhole {
            child,
            base,
            log: log.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The request target (path and query) of a signed URL on this server's public origin.
    fn target(&self, signed: &str) -> String {
        signed
            .strip_prefix(&self.base)
            .unwrap_or_else(|| panic!("{signed} is not on {}", self.base))
            .to_owned()
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("process still running")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `POST /api/files/upload`.
    async fn upload_link(&self, name: &str, size: Option<usize>, sha256: Option<&str>) -> Value {
        let mut body = json!({"filename": name, "contentType": "application/octet-stream"});
        if let Some(size) = size {
            body["size"] = json!(size);
        }
        if let Some(sha) = sha256 {
            body["sha256"] = json!(sha);
        }
        let r = client()
            .post(self.url("/api/files/upload"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(v["uploadUrl"].is_string(), "{v}");
        v
    }

    /// PUTs `bytes` to a signed upload URL; returns the status.
    async fn put(&self, upload_url: &str, bytes: Vec<u8>) -> u16 {
        client()
            .put(upload_url)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Uploads `content` whole (link, then PUT); returns the file id.
    async fn stored(&self, name: &str, content: Vec<u8>) -> String {
        let link = self.upload_link(name, Some(content.len()), None).await;
        let file_id = link["fileId"].as_str().unwrap().to_owned();
        assert_eq!(
            self.put(link["uploadUrl"].as_str().unwrap(), content).await,
            200
        );
        file_id
    }

    /// A fresh download link for a file.
    async fn download_url(&self, file_id: &str) -> String {
        let r = client()
            .get(self.url(&format!("/api/files/download/{file_id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "download link for {file_id}");
        let link: Value = r.json().await.unwrap();
        link["downloadUrl"].as_str().unwrap().to_owned()
    }

    /// Waits (up to 5 s) until the log has a line containing `needle`; the log is written by a
    /// thread of its own, so a line may follow the answer it is about.
    async fn wait_for_log(&self, needle: &str) -> bool {
        for _ in 0..100 {
            if self.log_text().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Downloads a file through a fresh link.
    async fn download(&self, file_id: &str) -> Vec<u8> {
        let url = self.download_url(file_id).await;
        let r = client().get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "download of {file_id}");
        r.bytes().await.unwrap().to_vec()
    }

    async fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Every regular file under `root`, as `/`-separated paths relative to it.
fn files_under(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Staged (in-progress) files and their sizes.
fn staged(data: &Path) -> Vec<(String, u64)> {
    std::fs::read_dir(data.join("staging"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), size)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `(file_id, object_key, status)` of every record in `DATA/metadata.db`.
fn records(data: &Path) -> Vec<(String, String, String)> {
    let db = rusqlite::Connection::open(data.join("metadata.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT file_id, object_key, status FROM files ORDER BY file_id")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows
}

/// A body that sends `sent` bytes of `content` and then never another byte.
fn stalling_body(content: &[u8], sent: usize) -> reqwest::Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> = content[..sent]
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream = futures_util::stream::iter(chunks).chain(futures_util::stream::pending());
    reqwest::Body::wrap_stream(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_leaves_no_partial_object_and_uploads_resume_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("keyhole.log");
    let port = free_port();
    let server = Keyhole::start(&data, port, &log).await;

    // One upload completes.
    let done = pseudo_random(3 * MIB, 1);
    let done_link = server
        .upload_link("done.bin", Some(done.len()), Some(&sha256_hex(&done)))
        .await;
    let done_id = done_link["fileId"].as_str().unwrap().to_owned();
    assert_eq!(
        server
            .put(done_link["uploadUrl"].as_str().unwrap(), done.clone())
            .await,
        200
    );

    // Three uploads stall half-way: two raw PUTs with a Content-Length (declared size and
    // checksum), one chunked reqwest stream without a declared size.
    let mut interrupted: Vec<(String, String, Vec<u8>)> = Vec::new();
    let mut sockets = Vec::new();
    for seed in [2u64, 3] {
        let content = pseudo_random(8 * MIB, seed);
        let link = server
            .upload_link(
                &format!("raw-{seed}.bin"),
                Some(content.len()),
                Some(&sha256_hex(&content)),
            )
            .await;
        let url = link["uploadUrl"].as_str().unwrap().to_owned();
        let head = format!(
            "PUT {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            server.target(&url),
            content.len()
        );
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&content[..3 * MIB]).await.unwrap();
        socket.flush().await.unwrap();
        sockets.push(socket);
        interrupted.push((link["fileId"].as_str().unwrap().to_owned(), url, content));
    }
    let streamed = pseudo_random(6 * MIB, 4);
    let link = server.upload_link("streamed.bin", None, None).await;
    let url = link["uploadUrl"].as_str().unwrap().to_owned();
    let body = stalling_body(&streamed, 3 * MIB);
    let stalled_request = tokio::spawn({
        let url = url.clone();
        async move {
            let _ = reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .put(url)
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await;
        }
    });
    interrupted.push((link["fileId"].as_str().unwrap().to_owned(), url, streamed));

    // Wait until all three are being written to staging (the writer flushes every MiB).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = staged(&data);
        if s.len() == 3 && s.iter().all(|(_, size)| *size >= 2 * MIB as u64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uploads not in progress: {s:?}\n{}",
            server.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server
        .metrics()
        .await
        .contains("keyhole_edge_transfers_in_flight 3"));

    // SIGKILL, mid-transfer.
    let mut server = server;
    server.child.kill().await.unwrap();
    let status = server.child.wait().await.unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status}");
    }
    stalled_request.abort();
    drop(sockets);

    // The crash left staged bytes behind, but nothing partial under objects/.
    assert_eq!(staged(&data).len(), 3, "the kill came mid-transfer");
    let objects = data.join("objects");
    assert_eq!(
        files_under(&objects),
        vec![format!("uploads/{done_id}")],
        "only the completed upload may be visible"
    );
    assert_eq!(
        std::fs::read(objects.join("uploads").join(&done_id)).unwrap(),
        done
    );
    // No `uploaded` record without its object; the interrupted ones are still pending.
    let rows = records(&data);
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (file_id, object_key, status) in &rows {
        if *file_id == done_id {
            assert_eq!(status, "uploaded");
        } else {
            assert_eq!(status, "pending", "{file_id}");
            assert!(interrupted.iter().any(|(id, _, _)| id == file_id));
        }
        if status == "uploaded" {
            let object = objects.join(object_key);
            assert!(
                object.is_file(),
                "uploaded record {file_id} without {object:?}"
            );
        }
    }

    // Restart on the same data directory.
    let server = Keyhole::start(&data, port, &log).await;
    assert!(
        staged(&data).is_empty(),
        "staging not emptied on start: {:?}",
        staged(&data)
    );
    assert_eq!(server.download(&done_id).await, done, "data survives");
    // The interrupted uploads succeed when retried with the links issued before the crash.
    for (file_id, url, content) in &interrupted {
        assert_eq!(
            server.put(url, content.clone()).await,
            200,
            "retry of {file_id}\n{}",
            server.log_text()
        );
        assert_eq!(&server.download(file_id).await, content);
    }
    let mut expected: Vec<String> = interrupted
        .iter()
        .map(|(id, _, _)| format!("uploads/{id}"))
        .collect();
    expected.push(format!("uploads/{done_id}"));
    expected.sort();
    assert_eq!(files_under(&objects), expected);
    assert!(staged(&data).is_empty());
    assert!(records(&data).iter().all(|(_, _, s)| s == "uploaded"));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_download_in_flight_finish_then_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("keyhole.log");
    let port = free_port();
    let mut server = Keyhole::start(&data, port, &log).await;

    // Bigger than the loopback socket buffers, so the server is still sending when the signal
    // arrives.
    let content = pseudo_random(24 * MIB, 9);
    let file_id = server.stored("big.bin", content.clone()).await;
    let download_url = server.download_url(&file_id).await;
    let c = client();

    // Read at about 8 MiB/s; send SIGTERM once the first MiB is in.
    let mut response = c.get(&download_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let rate = 8.0 * MIB as f64;
    let started = Instant::now();
    let mut received = Vec::with_capacity(content.len());
    let mut signalled_at: Option<usize> = None;
    let mut refusals_checked = 0;
    while let Some(chunk) = response.chunk().await.expect("download continues") {
        received.extend_from_slice(&chunk);
        if signalled_at.is_none() && received.len() >= MIB {
            let pid = server.pid().to_string();
            let kill = std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap();
            assert!(kill.success());
            signalled_at = Some(received.len());
        }
        let due = Duration::from_secs_f64(received.len() as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        // While draining, the server no longer accepts new connections.
        if signalled_at.is_some() && received.len() >= 12 * MIB && received.len() < 13 * MIB {
            let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
            let refused = fresh
                .get(server.url("/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            assert!(
                refused.is_err(),
                "a new request was served during shutdown: {refused:?}"
            );
            refusals_checked += 1;
        }
    }
    let signalled_at = signalled_at.expect("signal sent");
    assert!(refusals_checked > 0);
    assert!(
        signalled_at < content.len() / 2,
        "signal came too late to test anything"
    );
    assert_eq!(received.len(), content.len(), "download cut short");
    assert!(received == content, "download corrupted");

    let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .expect("keyhole exits after the download")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log_text());
    let log_text = server.log_text();
    assert!(log_text.contains("shutting down"), "{log_text}");
}

/// Lines of a JSON log that contain `needle`.
fn log_lines_with(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// A gauge or counter from `/metrics` text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The upload's commit, which runs as a task of its own, logs under the PUT's request id, and a
/// refused upload logs why, under its own.
#[tokio::test]
async fn upload_log_lines_carry_the_request_id_and_refusals_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("keyhole.log");
    let server = Keyhole::start_with(
        &tmp.path().join("data"),
        free_port(),
        &log,
        &["--log-format", "json"],
        &[],
    )
    .await;
    let link = server.upload_link("a.bin", Some(10), None).await;
    let url = link["uploadUrl"].as_str().unwrap();
    let put = |body: &'static [u8], id: &'static str| {
        client()
            .put(url)
            .header("content-type", "application/octet-stream")
            .header("x-request-id", id)
            .body(body)
            .send()
    };
    assert_eq!(
        put(b"0123456789abc", "put-refused-1")
            .await
            .unwrap()
            .status(),
        413
    );
    assert_eq!(
        put(b"0123456789", "put-commit-1").await.unwrap().status(),
        200
    );
    server.wait_for_log("upload committed").await;
    let text = server.log_text();
    let committed = log_lines_with(&text, "upload committed");
    assert_eq!(committed.len(), 1, "{text}");
    assert!(committed[0].contains("put-commit-1"), "{}", committed[0]);
    let refused = log_lines_with(&text, "upload refused");
    assert_eq!(refused.len(), 1, "{text}");
    assert!(
        refused[0].contains("put-refused-1") && refused[0].contains("too_large"),
        "{}",
        refused[0]
    );
}

/// A download counts as a transfer in flight until its body ends, and one whose stored bytes
/// fail mid-body (here: cut short on disk) is logged under its request id and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_failing_mid_body_is_logged_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("keyhole.log");
    let server =
        Keyhole::start_with(&data, free_port(), &log, &["--log-format", "json"], &[]).await;
    let content = pseudo_random(32 * MIB, 11);
    let file_id = server.stored("big.bin", content.clone()).await;
    let mut response = client()
        .get(server.download_url(&file_id).await)
        .header("x-request-id", "get-cut-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    let text = server.metrics().await;
    assert_eq!(
        metric(&text, "keyhole_edge_transfers_in_flight"),
        Some(1.0),
        "{text}"
    );
    // The stored object loses its tail while the body is being sent.
    let object = data.join("objects/uploads").join(&file_id);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&object)
        .unwrap()
        .set_len(MIB as u64)
        .unwrap();
    let mut received = first.len();
    let outcome = loop {
        match response.chunk().await {
            Ok(Some(c)) => received += c.len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(
        outcome.is_err() && received < content.len(),
        "the download ended cleanly after {received} bytes"
    );
    let mut counted = None;
    for _ in 0..100 {
        let text = server.metrics().await;
        counted = metric(&text, "keyhole_edge_download_errors_total");
        if counted == Some(1.0) && metric(&text, "keyhole_edge_transfers_in_flight") == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = server.metrics().await;
    assert_eq!(counted, Some(1.0), "{text}");
    assert_eq!(
        metric(&text, "keyhole_edge_transfers_in_flight"),
        Some(0.0),
        "{text}"
    );
    server.wait_for_log("download failed after").await;
    let failed = log_lines_with(
        &server.log_text(),
        "download failed after its headers were sent",
    );
    assert_eq!(failed.len(), 1);
    assert!(failed[0].contains("get-cut-1"), "{}", failed[0]);
}

/// A log pipe nobody reads (a stuck collector) neither stops the server nor keeps it from
/// exiting on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_even_when_nobody_reads_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // Standard output is a pipe this test never reads.
    let mut child = serve_command()
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--log-format", "json", "--shutdown-grace", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let c = client();
    let mut served = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    // Far more log lines than a pipe holds (64 KiB): the server keeps answering.
    while served < 2000 {
        if let Ok(r) = c.get(format!("{base}/healthz")).send().await {
            assert_eq!(r.status(), 200);
            served += 1;
        } else {
            assert!(Instant::now() < deadline, "never became healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let exited = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    assert!(
        exited.is_ok(),
        "still running 20 s after SIGTERM with its log pipe full"
    );
}

/// `/readyz` answers promptly, 503, when a backend does not answer at all (an S3 endpoint that
/// accepts connections and never replies), instead of after the client's retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_promptly_when_a_backend_never_replies() {
    let (addr, _held) = common::blackhole();
    let endpoint = format!("http://{addr}");
    let tmp = tempfile::tempdir().unwrap();
    let server = Keyhole::start_with(
        &tmp.path().join("data"),
        free_port(),
        &tmp.path().join("keyhole.log"),
        &[
            "--log-format",
            "text",
            "--storage",
            "s3://keyhole-readyz",
            "--s3-endpoint",
            &endpoint,
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
    .await;
    let started = Instant::now();
    let r = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("/readyz answers within 30 s");
    assert_eq!(r.status(), 503);
    // Two seconds per store, in parallel, where the S3 client's retries took three minutes.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        server.wait_for_log("did not answer within").await,
        "no line names the backend:\n{}",
        server.log_text()
    );
}

/// A second signal during the shutdown grace stops at once (exit 130), cutting off a download
/// whose client stopped reading, instead of waiting out the grace for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_without_waiting_for_transfers() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("keyhole.log");
    let mut server = Keyhole::start_with(
        &tmp.path().join("data"),
        free_port(),
        &log,
        &["--log-format", "text", "--shutdown-grace", "60s"],
        &[],
    )
    .await;
    let file_id = server.stored("big.bin", pseudo_random(32 * MIB, 5)).await;
    // A client that reads the first chunk and then nothing more.
    let mut response = client()
        .get(server.download_url(&file_id).await)
        .send()
        .await
        .unwrap();
    assert!(response.chunk().await.unwrap().is_some());
    let pid = server.pid().to_string();
    // The status is not checked: the process may have exited just before a repeated signal.
    let kill = |signal: &str| {
        let _ = std::process::Command::new("kill")
            .args([signal, &pid])
            .status();
    };
    kill("-TERM");
    // The second signal counts once the server waits for the transfer: after it logs so.
    server.wait_for_log("shutting down").await;
    let mut status = None;
    for _ in 0..40 {
        kill("-INT");
        if let Ok(done) =
            tokio::time::timeout(Duration::from_millis(500), server.child.wait()).await
        {
            status = Some(done.unwrap());
            break;
        }
    }
    let status = status.expect("still running 20 s after a second signal (the grace is 60 s)");
    assert_eq!(status.code(), Some(130), "{}", server.log_text());
    drop(response);
}
