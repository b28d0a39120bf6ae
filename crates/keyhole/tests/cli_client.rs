//! The client commands (`keyhole upload|download|ls|rm`) as a user runs them: the real binary
//! against a real server on loopback whose public URL is its own address (so the signed links
//! the CLI follows lead back to it), with the resume state in a temporary cache directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{pseudo_random, sha256_hex, TestServer};
use keyhole::config::{Config, TokenEntry};
use serde_json::Value;

const MIB: usize = 1024 * 1024;

/// A server reachable at its public URL: binds a free port, then starts there with
/// `public_url` set to it. Multipart from 6 MiB, 5 MiB parts, unless `adjust` says otherwise.
async fn serve(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let addr = free_addr();
    TestServer::start_with(|c| {
        c.listen = addr;
        c.public_url = format!("http://{addr}");
        c.multipart_threshold = 6 * MIB as u64;
        c.part_size = 5 * MIB as u64;
        adjust(c);
    })
    .await
}

fn free_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The `keyhole` binary set up for one server and one cache directory.
struct Cli {
    server: String,
    cache: tempfile::TempDir,
    token: Option<String>,
}

impl Cli {
    fn new(server: &str) -> Self {
        Cli {
            server: server.to_owned(),
            cache: tempfile::tempdir().unwrap(),
            token: None,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyhole"));
        cmd.args(args)
            .env("KEYHOLE_SERVER", &self.server)
            .env("XDG_CACHE_HOME", self.cache.path())
            .env_remove("KEYHOLE_TOKEN")
            .env_remove("KEYHOLE_TEST_PART_DELAY_MS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(t) = &self.token {
            cmd.env("KEYHOLE_TOKEN", t);
        }
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().await.unwrap()
    }

    /// Runs and asserts success; returns standard output.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "keyhole {args:?} failed ({:?}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn upload_states(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.cache.path().join("keyhole/uploads")) {
            Ok(dir) => dir
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A counter from the server's `/metrics`, 0 when absent.
async fn metric(s: &TestServer, name: &str) -> u64 {
    let text = s.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

async fn parts_stored(s: &TestServer, file_id: &str) -> usize {
    let v: Value = s
        .client
        .get(s.url(&format!("/api/files/{file_id}/parts")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["parts"].as_array().map_or(0, Vec::len)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_list_download_and_remove_several_files() {
    let server = serve(|_| {}).await;
    let cli = Cli::new(&server.base);
    let dir = tempfile::tempdir().unwrap();
    let small = pseudo_random(1000, 1);
    let big = pseudo_random(12 * MIB + 123, 2);
    let files = [
        write(dir.path(), "notes.txt", &small),
        write(dir.path(), "video.bin", &big),
        write(dir.path(), "empty.dat", b""),
    ];

    let out = cli
        .ok(&[
            "upload",
            "--parallel",
            "3",
            s(&files[0]),
            s(&files[1]),
            s(&files[2]),
        ])
        .await;
    let ids: Vec<&str> = out.lines().collect();
    assert_eq!(ids.len(), 3, "one id per file: {out}");
    assert!(ids[0].ends_with("_notes.txt") && ids[1].ends_with("_video.bin"));
    // The big file went up in three 5 MiB parts; nothing is left to resume.
    assert_eq!(
        metric(&server, "keyhole_uploads_total{kind=\"part\"}").await,
        3
    );
    assert!(cli.upload_states().is_empty());

    // ls --json: the API's fields, with sizes and checksums the server verified.
    let listed: Value = serde_json::from_str(&cli.ok(&["ls", "--json"]).await).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for (id, bytes, ty) in [
        (ids[0], &small, "text/plain"),
        (ids[1], &big, "application/octet-stream"),
        (ids[2], &Vec::new(), "application/octet-stream"),
    ] {
        let f = listed.iter().find(|f| f["fileId"] == id).unwrap();
        assert_eq!(f["status"], "uploaded");
        assert_eq!(f["size"], bytes.len());
        assert_eq!(f["sha256"], sha256_hex(bytes));
        assert_eq!(f["contentType"], ty);
    }
    // The table: a header and one row per file with a readable size; --limit cuts it.
    let table = cli.ok(&["ls"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("EXPIRES"));
    let row = lines.iter().find(|l| l.starts_with(ids[1])).unwrap();
    assert!(row.contains("video.bin") && row.contains("12.00 MiB") && row.contains("uploaded"));
    assert_eq!(cli.ok(&["ls", "--limit", "1"]).await.lines().count(), 2);

    // Downloads are byte-identical; no partial file is left.
    for (id, bytes) in [(ids[0], &small), (ids[1], &big), (ids[2], &Vec::new())] {
        let target = dir.path().join(format!("back-{id}"));
        let printed = cli.ok(&["download", id, "-o", s(&target)]).await;
        assert_eq!(printed.trim(), s(&target));
        assert_eq!(&std::fs::read(&target).unwrap(), bytes);
        assert!(!dir.path().join(format!("back-{id}.part")).exists());
    }
    // Into a directory: the file's own name. An existing file is not replaced without --force.
    let into = tempfile::tempdir().unwrap();
    cli.ok(&["download", ids[0], "-o", s(into.path())]).await;
    assert_eq!(std::fs::read(into.path().join("notes.txt")).unwrap(), small);
    let again = cli.run(&["download", ids[0], "-o", s(into.path())]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    cli.ok(&["download", ids[0], "-o", s(into.path()), "--force"])
        .await;

    // rm removes them all.
    cli.ok(&["rm", ids[0], ids[1], ids[2]]).await;
    assert_eq!(cli.ok(&["ls", "--json"]).await.trim(), "[]");
    let gone = cli
        .run(&["download", ids[1], "-o", s(&dir.path().join("x"))])
        .await;
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("keyhole ls"), "{}", stderr(&gone));
}

/// Starts `keyhole upload --parallel 1 PATH` with each part held back `delay_ms` (the documented
/// test hook) and returns it, still running, with its file id once its resume state names one and
/// the server holds at least `parts` of its parts.
async fn running_upload(
    cli: &Cli,
    server: &TestServer,
    path: &std::path::Path,
    delay_ms: u64,
    parts: usize,
) -> (tokio::process::Child, String) {
    let mut child = cli
        .command(&["upload", "--parallel", "1", s(path)])
        .env("KEYHOLE_TEST_PART_DELAY_MS", delay_ms.to_string())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "the upload never recorded {parts} parts"
        );
        if let Some(state) = cli.upload_states().first() {
            let v: Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
            let id = v["fileId"].as_str().unwrap().to_owned();
            if parts == 0 || parts_stored(server, &id).await >= parts {
                return (child, id);
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "upload ended early");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upload_resumes_with_only_the_missing_parts() {
    let server = serve(|_| {}).await;
    let cli = Cli::new(&server.base);
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(30 * MIB, 3);
    let path = write(dir.path(), "big.bin", &bytes);

    // One part at a time, each delayed (the documented test hook), so the upload is still
    // running when at least one part is stored.
    let (mut child, file_id) = running_upload(&cli, &server, &path, 400, 1).await;
    child.kill().await.unwrap(); // SIGKILL: no chance to clean up.
    let stored = parts_stored(&server, &file_id).await;
    assert!((1..6).contains(&stored), "{stored} parts stored");
    assert_eq!(cli.upload_states().len(), 1, "the resume state survives");

    let out = cli.run(&["upload", s(&path)]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), file_id);
    assert!(
        stderr(&out).contains(&format!("resuming: {stored} of 6 parts already stored")),
        "{}",
        stderr(&out)
    );
    // Six parts stored in all: none uploaded twice.
    assert_eq!(
        metric(&server, "keyhole_uploads_total{kind=\"part\"}").await,
        6
    );
    assert!(cli.upload_states().is_empty(), "state removed on success");

    let back = dir.path().join("back.bin");
    cli.ok(&["download", &file_id, "-o", s(&back)]).await;
    assert!(std::fs::read(&back).unwrap() == bytes, "not byte-identical");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_download_is_continued_with_a_range_request() {
    let server = serve(|_| {}).await;
    let cli = Cli::new(&server.base);
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(7 * MIB + 5, 4);
    let path = write(dir.path(), "data.bin", &bytes);
    let id = cli.ok(&["upload", s(&path)]).await.trim().to_owned();

    // The first bytes are there already: only the rest crosses the wire.
    let target = dir.path().join("copy.bin");
    let prefix = 3 * MIB + 17;
    write(dir.path(), "copy.bin.part", &bytes[..prefix]);
    let sent_before = metric(&server, "keyhole_edge_sent_bytes_total").await;
    let out = cli.run(&["download", &id, "-o", s(&target)]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("resuming: {prefix} bytes already downloaded")),
        "{}",
        stderr(&out)
    );
    assert!(
        std::fs::read(&target).unwrap() == bytes,
        "not byte-identical"
    );
    assert!(!dir.path().join("copy.bin.part").exists());
    let sent = metric(&server, "keyhole_edge_sent_bytes_total").await - sent_before;
    assert_eq!(sent, (bytes.len() - prefix) as u64);

    // A partial file with other bytes: caught by the SHA-256 check and downloaded again.
    let target = dir.path().join("other.bin");
    write(dir.path(), "other.bin.part", &pseudo_random(MIB, 99));
    let out = cli.run(&["download", &id, "-o", s(&target)]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("starting over"), "{}", stderr(&out));
    assert!(
        std::fs::read(&target).unwrap() == bytes,
        "not byte-identical"
    );

    // A complete partial file only needs renaming.
    let target = dir.path().join("whole.bin");
    write(dir.path(), "whole.bin.part", &bytes);
    cli.ok(&["download", &id, "-o", s(&target)]).await;
    assert!(
        std::fs::read(&target).unwrap() == bytes,
        "not byte-identical"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_part_links_are_renewed_mid_upload() {
    // Links live one second; each part waits longer than that before its PUT.
    let server = serve(|c| c.upload_ttl = Duration::from_secs(1)).await;
    let cli = Cli::new(&server.base);
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(11 * MIB, 5);
    let path = write(dir.path(), "slow.bin", &bytes);
    let out = cli
        .command(&["upload", "--parallel", "1", s(&path)])
        .env("KEYHOLE_TEST_PART_DELAY_MS", "1300")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let back = dir.path().join("back.bin");
    cli.ok(&["download", &id, "-o", s(&back)]).await;
    assert!(std::fs::read(&back).unwrap() == bytes, "not byte-identical");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_happened_and_what_to_do() {
    // Nothing listens: a clear message at once, exit 1.
    let down = format!("http://{}", free_addr());
    let cli = Cli::new(&down);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "a.txt", b"hello");
    for args in [vec!["ls"], vec!["upload", s(&file)], vec!["rm", "x_y"]] {
        let started = Instant::now();
        let out = cli.run(&args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("cannot reach the Keyhole server at {down}"))
                && err.contains("is `keyhole serve` running")
                && err.contains("connection refused"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "not retried");
    }

    // The server signs links for a public URL this machine cannot reach: said at once.
    let misconfigured = serve(|c| c.public_url = format!("http://{}", free_addr())).await;
    let started = Instant::now();
    let out = Cli::new(&misconfigured.base)
        .run(&["upload", s(&file)])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("the public URL the server signs links for") && err.contains("--public-url"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "not retried");

    // Usage errors: exit 2.
    for args in [
        vec!["upload"],
        vec!["upload", "--parallel", "0", s(&file)],
        vec!["ls", "--server", "ftp://example.com"],
        vec!["upload", "--content-type", "pdf", s(&file)],
        vec!["download"],
    ] {
        assert_eq!(cli.run(&args).await.status.code(), Some(2), "{args:?}");
    }

    // A server with tokens: none, a wrong one, the right one.
    let (token, hash) = keyhole::auth::generate_token().unwrap();
    let server = serve(|c| {
        c.tokens = vec![TokenEntry {
            principal: "alice".into(),
            sha256: hash,
        }]
    })
    .await;
    let mut cli = Cli::new(&server.base);
    for args in [vec!["ls"], vec!["upload", s(&file)]] {
        let out = cli.run(&args).await;
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("needs an API token") && err.contains("--token or KEYHOLE_TOKEN"),
            "{err}"
        );
    }
    cli.token = Some("kh_wrong".into());
    let out = cli.run(&["ls"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("refused the API token") && err.contains("--token or KEYHOLE_TOKEN"),
        "{err}"
    );
    assert!(!err.contains("kh_wrong"), "the token is not echoed: {err}");
    cli.token = Some(token.clone());
    let id = cli.ok(&["upload", s(&file)]).await.trim().to_owned();
    // --token on the command line works as well as the variable.
    cli.token = None;
    let listed = cli.ok(&["ls", "--token", &token]).await;
    assert!(listed.contains(&id));

    // A file that does not exist, and one id that is not there: exit 1, the others go on.
    cli.token = Some(token);
    let missing = dir.path().join("nope.txt");
    let out = cli.run(&["upload", s(&missing), s(&file)]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(stderr(&out).contains("nope.txt"), "{}", stderr(&out));
    let unknown = keyhole::ids::new_file_id("never.bin").unwrap();
    let out = cli.run(&["rm", &unknown, &id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("deleted {id}")));
    assert!(stderr(&out).contains("keyhole ls"), "{}", stderr(&out));
}

/// Peak resident memory of a process, sampled from /proc until it exits.
#[cfg(target_os = "linux")]
async fn peak_rss_kib(child: &mut tokio::process::Child) -> (std::process::ExitStatus, u64) {
    let pid = child.id().unwrap();
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kib) = status.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            }) {
                peak = peak.max(kib);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_upload_keeps_the_client_memory_flat() {
    const GIB: u64 = 1 << 30;
    // The server's default part plan: 8 MiB parts, so 128 of them.
    let server = serve(|c| {
        c.multipart_threshold = 64 * MIB as u64;
        c.part_size = 8 * MIB as u64;
    })
    .await;
    let cli = Cli::new(&server.base);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.bin");
    // Sparse-ish: 64 KiB of pseudo-random bytes at the start of every MiB, holes between.
    let expected = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::create(&path).unwrap();
            for i in 0..(GIB / MIB as u64) {
                f.seek(SeekFrom::Start(i * MIB as u64)).unwrap();
                f.write_all(&pseudo_random(64 * 1024, i + 1)).unwrap();
            }
            f.set_len(GIB).unwrap();
            drop(f);
            let mut hasher = openssl::sha::Sha256::new();
            let mut r = std::fs::File::open(&path).unwrap();
            let mut buf = vec![0u8; MIB];
            loop {
                let n = std::io::Read::read(&mut r, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            hex::encode(hasher.finish())
        })
        .await
        .unwrap()
    };

    let started = Instant::now();
    let mut child = cli
        .command(&["upload", "--parallel", "4", s(&path)])
        .spawn()
        .unwrap();
    let (status, peak_kib) = peak_rss_kib(&mut child).await;
    let mut stdout = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout)
        .await
        .unwrap();
    eprintln!(
        "1 GiB upload: peak client RSS {:.1} MiB, {:.1} s",
        peak_kib as f64 / 1024.0,
        started.elapsed().as_secs_f64()
    );
    assert!(status.success());
    assert!(
        peak_kib < 200 * 1000,
        "client peak RSS {peak_kib} KiB is not flat"
    );
    assert_eq!(
        metric(&server, "keyhole_uploads_total{kind=\"part\"}").await,
        128
    );
    let id = stdout.trim();
    let listed: Value = serde_json::from_str(&cli.ok(&["ls", "--json"]).await).unwrap();
    let f = &listed.as_array().unwrap()[0];
    assert_eq!(f["fileId"], id);
    assert_eq!(f["size"], GIB);
    assert_eq!(f["sha256"], expected);
}

/// `keyhole tokens generate` prints a token and the configuration for it, in forms that work:
/// the TOML block parses to the same principal (quotes escaped), and the server takes the hash.
/// Principals that one of those forms cannot carry are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_tokens_configure_as_printed() {
    let cli = Cli::new("http://127.0.0.1:9");
    let principal = r#"ops "blue" team"#;
    let out = cli
        .ok(&["tokens", "generate", "--principal", principal])
        .await;
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .unwrap()
        .trim()
        .to_owned();
    let block: String = out
        .lines()
        .skip_while(|l| !l.starts_with("toml:"))
        .map(|l| l.trim_start_matches("toml:").trim())
        .collect::<Vec<_>>()
        .join("\n");
    let parsed: toml::Value = toml::from_str(&block).expect("the printed TOML parses");
    let entry = &parsed["tokens"][0];
    assert_eq!(entry["principal"].as_str(), Some(principal));
    // The command-line form, pasted into a shell, is the flag and one word.
    let flag = out
        .lines()
        .find_map(|l| l.strip_prefix("config:"))
        .unwrap()
        .trim();
    let words = std::process::Command::new("sh")
        .args(["-c", &format!("printf '%s\\n' {flag}")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(words.stdout).unwrap(),
        format!(
            "--token\n{principal}:{}\n",
            entry["sha256"].as_str().unwrap()
        ),
        "{flag}"
    );
    let server = serve(|c| {
        c.tokens = vec![TokenEntry {
            principal: principal.to_owned(),
            sha256: entry["sha256"].as_str().unwrap().to_owned(),
        }]
    })
    .await;
    let (status, _) = server.get_json_as("/api/files", Some(&token)).await;
    assert_eq!(status, 200);

    for bad in ["a,b", "a:b", "", &"p".repeat(129)] {
        let out = cli.run(&["tokens", "generate", "--principal", bad]).await;
        assert_eq!(out.status.code(), Some(2), "{bad:?} accepted");
        assert!(
            stderr(&out).contains("the principal must be"),
            "{}",
            stderr(&out)
        );
    }
}

/// A `NAME.part` planted as a symbolic link (in a directory others can write to) is not followed:
/// the download fails rather than overwrite what the link points at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_never_writes_through_a_planted_part_link() {
    let server = serve(|_| {}).await;
    let cli = Cli::new(&server.base);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "shared.bin", &pseudo_random(100_000, 61));
    let id = cli.ok(&["upload", s(&path)]).await.trim().to_owned();
    let victim = write(dir.path(), "victim.txt", b"precious");
    let out = dir.path().join("copy.bin");
    std::os::unix::fs::symlink(&victim, dir.path().join("copy.bin.part")).unwrap();
    let result = cli.run(&["download", &id, "-o", s(&out)]).await;
    assert!(!result.status.success(), "followed the link");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!out.exists());
}

/// Sends `request` (method, path and query, headers but `Host`, body) to `upstream`.
async fn pass_on(
    client: &reqwest::Client,
    upstream: &str,
    request: axum::extract::Request,
) -> reqwest::Response {
    let (parts, body) = request.into_parts();
    let target = parts.uri.path_and_query().unwrap().as_str();
    let mut headers = parts.headers.clone();
    headers.remove(reqwest::header::HOST);
    let body = axum::body::to_bytes(body, 64 * MIB).await.unwrap();
    client
        .request(parts.method, format!("{upstream}{target}"))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Serves the server's edge at `listener`, passing each request on (method, headers, body) and
/// answering with the same status and headers but no `Content-Length`: the body goes chunked,
/// as through a proxy that streams. Counts the GETs it passed on.
fn unsized_proxy(
    listener: tokio::net::TcpListener,
    upstream: String,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (client, upstream, counted) = (client.clone(), upstream.clone(), counted.clone());
        async move {
            if request.method() == reqwest::Method::GET {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let answer = pass_on(&client, &upstream, request).await;
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if name != reqwest::header::CONTENT_LENGTH {
                    response = response.header(name, value);
                }
            }
            response
                .body(Body::from_stream(answer.bytes_stream()))
                .unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    requests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_without_a_content_length_ends_with_its_body() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let edge = listener.local_addr().unwrap();
    // Links lead to the proxy; the CLI asks the API directly.
    let server = serve(|c| c.public_url = format!("http://{edge}")).await;
    let requests = unsized_proxy(listener, server.base.clone());
    let cli = Cli::new(&server.base);
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(3 * MIB + 9, 62);
    let path = write(dir.path(), "streamed.bin", &bytes);
    let id = cli.ok(&["upload", s(&path)]).await.trim().to_owned();
    let requests_before = requests.load(std::sync::atomic::Ordering::SeqCst);

    let target = dir.path().join("copy.bin");
    let out = cli
        .run(&["download", &id, "-o", s(&target), "--retries", "0"])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read(&target).unwrap() == bytes,
        "not byte-identical"
    );
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst) - requests_before,
        1,
        "one GET, no second one for the rest"
    );
}

/// The server keeps the content type declared when an upload starts: run again with another
/// `--content-type`, an interrupted upload is not continued but started over, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_content_type_starts_an_interrupted_upload_over() {
    let server = serve(|_| {}).await;
    let cli = Cli::new(&server.base);
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(11 * MIB, 71);
    let path = write(dir.path(), "report.bin", &bytes);

    // Interrupted as soon as the upload is recorded (each part waits long before its PUT).
    let (mut child, first_id) = running_upload(&cli, &server, &path, 5000, 0).await;
    child.kill().await.unwrap();

    let out = cli
        .run(&["upload", "--content-type", "text/plain", s(&path)])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("content type changed") && err.contains("starting over"),
        "{err}"
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_ne!(id, first_id, "the interrupted upload was continued");
    let listed: Value = serde_json::from_str(&cli.ok(&["ls", "--json"]).await).unwrap();
    let f = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fileId"] == id.as_str())
        .unwrap();
    assert_eq!(f["contentType"], "text/plain");
    assert_eq!(f["status"], "uploaded");
}

/// Serves `upstream` at `listener`, passing every request on, except that the first requests to
/// `path` are answered with the statuses of `refusals` in turn (a JSON error, as the server's
/// own 429 and 503 are). Counts the requests to `path`.
fn refusing_proxy(
    listener: tokio::net::TcpListener,
    upstream: String,
    path: &'static str,
    refusals: Vec<u16>,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (client, upstream, counted) = (client.clone(), upstream.clone(), counted.clone());
        let refusals = refusals.clone();
        async move {
            if request.uri().path() == path {
                let n = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if let Some(&status) = refusals.get(n) {
                    let body = serde_json::json!({"success": false,
                        "error": {"code": "unavailable", "message": "restarting"}});
                    return Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string()))
                        .unwrap();
                }
            }
            let answer = pass_on(&client, &upstream, request).await;
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                response = response.header(name, value);
            }
            response
                .body(Body::from(answer.bytes().await.unwrap()))
                .unwrap()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    requests
}

/// A server that answers is there: `keyhole upload` retries a 429 or 503 to its first call
/// (`GET /api/config`), as during a rolling restart, like every other API call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_retries_a_busy_server_from_its_first_call() {
    let server = serve(|_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = format!("http://{}", listener.local_addr().unwrap());
    let config_calls = refusing_proxy(listener, server.base.clone(), "/api/config", vec![503, 429]);
    let cli = Cli::new(&front);
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(1000, 72);
    let path = write(dir.path(), "during-restart.txt", &bytes);

    let id = cli.ok(&["upload", s(&path)]).await.trim().to_owned();
    assert_eq!(
        config_calls.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "asked again after each refusal"
    );
    let back = dir.path().join("back.txt");
    cli.ok(&["download", &id, "-o", s(&back)]).await;
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
}

/// A malformed value is a usage error (exit 2, clap's message) that says what was expected,
/// found before any file is read or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_values_are_usage_errors() {
    let cli = Cli::new("http://127.0.0.1:9");
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let url = "https://cdn.example.com/a.txt";
    let sign = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut args = vec!["sign", "--key", "k.pem"];
        args.extend_from_slice(extra);
        args.push(url);
        args
    };
    for (args, expected) in [
        (vec!["verify", "--key", "foo", url], "ID=PUBLIC.pem"),
        (
            vec!["verify", "--key", "bad id=pub.pem", url],
            "key pair id must be",
        ),
        (
            vec![
                "verify",
                "--key",
                "K1=pub.pem",
                "--now",
                "1800000000000",
                url,
            ],
            "milliseconds?",
        ),
        (
            vec!["verify", "--key", "K1=pub.pem", "--cookie", "foo", url],
            "expected NAME=VALUE",
        ),
        (
            sign(&["--key-pair-id", "K1", "--ttl", "500ms"]),
            "at least 1s",
        ),
        (
            sign(&["--key-pair-id", "K1", "--ttl", "100y"]),
            "2038-01-19",
        ),
        (
            sign(&["--key-pair-id", "K1", "--ttl", "1h", "--ip", "banana"]),
            "IPv4 CIDR",
        ),
        (
            sign(&["--key-pair-id", "K1", "--expires", "1893456000000"]),
            "milliseconds?",
        ),
        (
            sign(&[
                "--key-pair-id",
                "K1",
                "--ttl",
                "1h",
                "--not-before",
                "1893456000000",
            ]),
            "milliseconds?",
        ),
        (
            sign(&["--key-pair-id", "K 1", "--ttl", "1h"]),
            "key pair id must be",
        ),
        (
            sign(&["--key-pair-id", "K1", "--ttl", "1h", "--resource", ""]),
            "resource must not be empty",
        ),
        (
            vec!["keys", "generate", "--out", s(&keys), "--id", "K/1"],
            "key pair id must be",
        ),
    ] {
        let out = cli.run(&args).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("invalid value") && err.contains(expected),
            "{args:?}: {err}"
        );
    }
    assert!(!keys.exists(), "nothing written");
}

/// What a mock edge answers: the status, the headers, and the body as chunks (sent without a
/// `Content-Length` unless the headers give one); `stall`: then send nothing more, leaving the
/// connection open.
struct EdgeAnswer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    stall: bool,
}

impl EdgeAnswer {
    /// `200` with `body`, no length, ending cleanly.
    fn without_length(body: &[u8]) -> Self {
        EdgeAnswer {
            status: 200,
            headers: Vec::new(),
            body: body.to_vec(),
            stall: false,
        }
    }

    /// `206` with the bytes of `file` from `first` on (of which `body` are sent), no length.
    fn rest(file: &[u8], first: u64, body: &[u8]) -> Self {
        EdgeAnswer {
            status: 206,
            headers: vec![(
                "content-range",
                format!("bytes {first}-{}/{}", file.len() - 1, file.len()),
            )],
            body: body.to_vec(),
            stall: false,
        }
    }
}

/// A stand-in for a server's API and edge on loopback, for answers a real edge never gives: the
/// API lists `files` and links `GET /api/files/download/ID` to `/edge/ID` here, where `edge`
/// answers each GET (given the first byte of its `Range`, and how many GETs came before). Returns
/// the origin and the `Range` of every GET to the edge.
async fn mock_files_server(
    files: Value,
    edge: impl Fn(Option<u64>, usize) -> EdgeAnswer + Clone + Send + Sync + 'static,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
) {
    use axum::body::Body;
    use axum::extract::{Path as UrlPath, Request};
    use axum::response::Response;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let ranges = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = ranges.clone();
    let link_origin = origin.clone();
    let app = axum::Router::new()
        .route(
            "/api/files",
            axum::routing::get(move || {
                let files = files.clone();
                async move { axum::Json(serde_json::json!({"files": files, "nextCursor": null})) }
            }),
        )
        .route(
            "/api/files/download/{id}",
            axum::routing::get(move |UrlPath(id): UrlPath<String>| {
                let url = format!("{link_origin}/edge/{id}");
                async move { axum::Json(serde_json::json!({ "downloadUrl": url })) }
            }),
        )
        .route(
            "/edge/{id}",
            axum::routing::get(move |request: Request| {
                let range = request
                    .headers()
                    .get("range")
                    .map(|v| v.to_str().unwrap().to_owned());
                let first = range.as_deref().map(|r| {
                    let r = r.strip_prefix("bytes=").unwrap();
                    r.trim_end_matches('-').parse::<u64>().unwrap()
                });
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(range);
                    seen.len() - 1
                };
                let answer = edge(first, n);
                async move {
                    let mut response = Response::builder().status(answer.status);
                    for (name, value) in answer.headers {
                        response = response.header(name, value);
                    }
                    let chunk: Result<bytes::Bytes, std::io::Error> = Ok(answer.body.into());
                    let head = futures_util::stream::iter([chunk]);
                    let body = if answer.stall {
                        Body::from_stream(futures_util::StreamExt::chain(
                            head,
                            futures_util::stream::pending(),
                        ))
                    } else {
                        Body::from_stream(head)
                    };
                    response.body(body).unwrap()
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (origin, ranges)
}

fn listed(id: &str, name: &str, size: Option<usize>, sha256: Option<String>) -> Value {
    serde_json::json!([{
        "fileId": id, "filename": name, "status": "uploaded", "contentType": "application/octet-stream",
        "size": size, "sha256": sha256,
    }])
}

/// An edge answering `200` without a length ends its body cleanly after 400,000 of the
/// 1,000,000 bytes the listing gives (and no SHA-256, as for an S3 multipart upload): the body
/// is short, so the rest is asked for with `Range`, and the status line counts what arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_body_without_a_length_is_continued_not_taken_whole() {
    let bytes = std::sync::Arc::new(pseudo_random(1_000_000, 81));
    let file = bytes.clone();
    let (origin, ranges) = mock_files_server(
        listed("k1_big.bin", "big.bin", Some(1_000_000), None),
        move |first, _| match first {
            None => EdgeAnswer::without_length(&file[..400_000]),
            Some(first) => EdgeAnswer::rest(&file, first, &file[first as usize..]),
        },
    )
    .await;
    let cli = Cli::new(&origin);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("big.bin");
    let out = cli.run(&["download", "k1_big.bin", "-o", s(&target)]).await;
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        std::fs::read(&target).unwrap() == *bytes,
        "not byte-identical"
    );
    assert_eq!(
        *ranges.lock().unwrap(),
        [None, Some("bytes=400000-".to_owned())]
    );
    assert!(
        err.contains("closed after 400000 of 1000000 bytes") && err.contains("continuing"),
        "{err}"
    );
    assert!(err.contains("big.bin: downloaded 976.56 KiB"), "{err}");
}

/// An edge that keeps ending its bodies early: the retries run out and the download fails,
/// keeping what arrived in the partial file; nothing is put in place or said to be downloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_keeps_ending_early_fails_and_keeps_its_bytes() {
    let bytes = std::sync::Arc::new(pseudo_random(1_000_000, 82));
    let file = bytes.clone();
    let (origin, ranges) = mock_files_server(
        listed("k1_big.bin", "big.bin", Some(1_000_000), None),
        move |first, _| match first {
            None => EdgeAnswer::without_length(&file[..400_000]),
            Some(first) => {
                let first = first as usize;
                EdgeAnswer::rest(&file, first as u64, &file[first..first + 100_000])
            }
        },
    )
    .await;
    let cli = Cli::new(&origin);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("big.bin");
    let out = cli
        .run(&["download", "k1_big.bin", "-o", s(&target), "--retries", "1"])
        .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!target.exists(), "a partial file was put in place");
    assert!(!err.contains("downloaded"), "{err}");
    assert!(
        err.contains("closed after 500000 of 1000000 bytes") && err.contains("kept in"),
        "{err}"
    );
    let part = std::fs::read(dir.path().join("big.bin.part")).unwrap();
    assert!(part == bytes[..500_000], "the bytes received are kept");
    assert_eq!(ranges.lock().unwrap().len(), 2);
}

/// An answer whose length differs from the size the listing gives is not the file, even when
/// the body is as long as the answer says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_the_listed_size_is_not_the_file() {
    let bytes = std::sync::Arc::new(pseudo_random(1_000_000, 86));
    let file = bytes.clone();
    let (origin, _) = mock_files_server(
        listed("k1_big.bin", "big.bin", Some(1_000_000), None),
        move |_, _| EdgeAnswer {
            status: 200,
            headers: vec![("content-length", "400000".to_owned())],
            body: file[..400_000].to_vec(),
            stall: false,
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("big.bin");
    let out = Cli::new(&origin)
        .run(&["download", "k1_big.bin", "-o", s(&target)])
        .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("sends 400000 bytes for a file it lists with 1000000"),
        "{err}"
    );
    assert!(!target.exists(), "a partial file was put in place");
    assert!(dir.path().join("big.bin.part").exists());
}

/// With neither a length nor a listed size or SHA-256, the end of a body is checked by asking
/// for the bytes after it: a `416` with the size confirms it, a `206` brings the rest, and a
/// server that cannot say (it ignores `Range`) fails the download instead of a silent success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_unknown_length_is_checked_with_a_range_request() {
    let bytes = std::sync::Arc::new(pseudo_random(1_000_000, 83));
    let dir = tempfile::tempdir().unwrap();
    for cut in [1_000_000, 400_000] {
        let file = bytes.clone();
        let (origin, ranges) =
            mock_files_server(serde_json::json!([]), move |first, _| match first {
                None => EdgeAnswer::without_length(&file[..cut]),
                Some(1_000_000) => EdgeAnswer {
                    status: 416,
                    headers: vec![("content-range", "bytes */1000000".to_owned())],
                    body: Vec::new(),
                    stall: false,
                },
                Some(first) => EdgeAnswer::rest(&file, first, &file[first as usize..]),
            })
            .await;
        let target = dir.path().join(format!("cut-{cut}.bin"));
        let out = Cli::new(&origin)
            .run(&["download", "k1_x.bin", "-o", s(&target)])
            .await;
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(
            std::fs::read(&target).unwrap() == *bytes,
            "not byte-identical"
        );
        assert_eq!(
            *ranges.lock().unwrap(),
            [None, Some(format!("bytes={cut}-"))]
        );
        assert!(err.contains("downloaded 976.56 KiB"), "{err}");
    }

    let file = bytes.clone();
    let (origin, _) = mock_files_server(serde_json::json!([]), move |_, _| {
        EdgeAnswer::without_length(&file[..400_000])
    })
    .await;
    let target = dir.path().join("unchecked.bin");
    let out = Cli::new(&origin)
        .run(&["download", "k1_x.bin", "-o", s(&target)])
        .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("neither the file's size nor its SHA-256") && err.contains("kept in"),
        "{err}"
    );
    assert!(!target.exists());
    assert_eq!(
        std::fs::metadata(dir.path().join("unchecked.bin.part"))
            .unwrap()
            .len(),
        400_000
    );
}

/// A connection that stays open but stops delivering is given up after the idle timeout (short
/// here) and the download continues on a new one with `Range`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_is_continued_on_a_new_connection() {
    use keyhole::client::api::ApiClient;
    use keyhole::client::download::{download, DownloadOptions};
    use keyhole::client::progress::Ui;
    use keyhole::client::Backoff;

    let bytes = std::sync::Arc::new(pseudo_random(1_000_000, 84));
    let file = bytes.clone();
    let (origin, ranges) = mock_files_server(
        listed(
            "k1_big.bin",
            "big.bin",
            Some(1_000_000),
            Some(sha256_hex(&bytes)),
        ),
        move |first, _| match first {
            None => EdgeAnswer {
                status: 200,
                headers: vec![("content-length", file.len().to_string())],
                body: file[..300_000].to_vec(),
                stall: true,
            },
            Some(first) => EdgeAnswer::rest(&file, first, &file[first as usize..]),
        },
    )
    .await;
    let backoff = Backoff {
        retries: 2,
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    };
    let api = ApiClient::new(&origin, None, backoff)
        .unwrap()
        .with_idle_timeout(Duration::from_secs(2));
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("big.bin");
    let options = DownloadOptions {
        output: Some(target.clone()),
        force: false,
        backoff,
    };
    let ui = Ui::new(true);
    // Only a guard against hanging: without the idle timeout the download never ends.
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        download(&api, &ui, None, "k1_big.bin", &options),
    )
    .await
    .expect("the download hung on the stalled connection");
    assert_eq!(result.unwrap(), target);
    assert!(
        std::fs::read(&target).unwrap() == *bytes,
        "not byte-identical"
    );
    // The stalled GET, then the rest from where it stopped (asked again if a loaded machine
    // answered that too slowly: never from 0).
    let ranges = ranges.lock().unwrap().clone();
    assert!(ranges.len() >= 2 && ranges[0].is_none(), "{ranges:?}");
    assert!(
        ranges[1..]
            .iter()
            .all(|r| r.as_deref() == Some("bytes=300000-")),
        "{ranges:?}"
    );
}

/// `-o DIR/` names a directory: created when missing, and the file goes in under its own
/// name. A file path in a directory that does not exist is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_targets_are_checked_before_the_transfer() {
    let server = serve(|_| {}).await;
    let cli = Cli::new(&server.base);
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(200_000, 85);
    let path = write(dir.path(), "photo.jpg", &bytes);
    let id = cli.ok(&["upload", s(&path)]).await.trim().to_owned();

    // A new directory, and one under a new directory: both created.
    for into in [dir.path().join("new"), dir.path().join("deeper/sub")] {
        let printed = cli
            .ok(&["download", &id, "-o", &format!("{}/", s(&into))])
            .await;
        assert_eq!(printed.trim(), s(&into.join("photo.jpg")));
        assert_eq!(std::fs::read(into.join("photo.jpg")).unwrap(), bytes);
        let mut part = into.clone().into_os_string();
        part.push(".part");
        assert!(!Path::new(&part).exists(), "a stray {part:?}");
        assert!(!into.join("photo.jpg.part").exists());
    }

    let sent = metric(&server, "keyhole_edge_sent_bytes_total").await;
    let nowhere = dir.path().join("missing/copy.jpg");
    let out = cli.run(&["download", &id, "-o", s(&nowhere)]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("does not exist") && err.contains("missing"),
        "{err}"
    );
    let not_a_dir = format!("{}/", s(&path));
    let out = cli.run(&["download", &id, "-o", &not_a_dir]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!dir.path().join("missing").exists());
    assert_eq!(
        metric(&server, "keyhole_edge_sent_bytes_total").await,
        sent,
        "bytes were sent for a download that could not be put in place"
    );
}

/// The client's uploader in this process, asking `server`'s API directly (links lead wherever
/// its public URL says): one file at a time, `retries` quick retries, and an idle timeout on its
/// connections when given.
async fn direct_uploader(
    server: &TestServer,
    retries: u32,
    idle_timeout: Option<Duration>,
) -> keyhole::client::upload::Uploader {
    use keyhole::client::api::ApiClient;
    use keyhole::client::progress::Ui;
    use keyhole::client::upload::{UploadOptions, Uploader};
    use keyhole::client::Backoff;

    let backoff = Backoff {
        retries,
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    };
    let mut api = ApiClient::new(&server.base, None, backoff).unwrap();
    if let Some(idle) = idle_timeout {
        api = api.with_idle_timeout(idle);
    }
    let config = api.config().await.unwrap();
    let options = UploadOptions {
        parallel: 1,
        content_type: None,
        backoff,
        part_delay: None,
    };
    Uploader::new(api, config, options, None, Ui::new(true))
}

/// Passes TCP connections on to `upstream`, except the first: of that one it reads a little,
/// then neither reads more nor answers, keeping it open (a connection stalled mid-upload).
/// Counts the connections.
fn stalling_proxy(
    listener: tokio::net::TcpListener,
    upstream: std::net::SocketAddr,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use tokio::io::AsyncReadExt;
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                let mut start = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut start).await;
                held.push(socket);
                continue;
            }
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut socket, &mut server).await;
            });
        }
    });
    connections
}

/// A PUT whose connection stops taking its body is given up after the idle timeout (8 s here)
/// and retried on a new connection, instead of waiting as long as the connection stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_retried_on_a_new_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let edge = listener.local_addr().unwrap();
    // Links lead to the proxy; the client asks the API directly. One PUT for the whole file,
    // larger than the socket buffers of the stalled connection can take.
    let server = serve(|c| {
        c.public_url = format!("http://{edge}");
        c.multipart_threshold = 64 * MIB as u64;
    })
    .await;
    let connections = stalling_proxy(listener, server.running().addr);
    let uploader = direct_uploader(&server, 2, Some(Duration::from_secs(8))).await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(24 * MIB, 91);
    let path = write(dir.path(), "stalled.bin", &bytes);
    // Without the idle timeout the stalled PUT lasts until the operating system gives the
    // connection up (about 30 s here; without limit through a middlebox that keeps it open).
    let started = Instant::now();
    let id = tokio::time::timeout(Duration::from_secs(120), uploader.upload(&path))
        .await
        .expect("the upload hung on the stalled connection")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "given up after the 8 s idle timeout, not {:?}",
        started.elapsed()
    );
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the stalled PUT, then the one that went through"
    );
    let file = server.get_json(&format!("/api/files/{id}")).await;
    assert_eq!(file["file"]["status"], "uploaded", "{file}");
    assert_eq!(file["file"]["sha256"], sha256_hex(&bytes));
}

/// An edge that stands where CloudFront and S3 do, where every whole-file PUT is a conditional
/// write (`If-None-Match: *`): the first connection's request goes on to `upstream`, which
/// stores and records the file, but its answer is dropped with the connection; every later
/// request is read whole and answered as S3 answers a conditional write onto an object already
/// there. Counts the connections.
fn conditional_write_proxy(
    listener: tokio::net::TcpListener,
    upstream: std::net::SocketAddr,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let first = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            tokio::spawn(async move {
                if first {
                    let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let (mut from_server, mut to_server) = server.into_split();
                    let (mut from_client, _to_client) = socket.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                    });
                    // The server answers once the file is stored: that answer is lost.
                    let mut answer = [0u8; 1];
                    let _ = from_server.read(&mut answer).await;
                    return;
                }
                let mut request = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                let head_end = loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the request ended before its head");
                    request.extend_from_slice(&buf[..n]);
                    if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                let mut body = request.len() - head_end;
                while body < length {
                    let n = socket.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the request ended before its body");
                    body += n;
                }
                let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message><Condition>If-None-Match</Condition></Error>";
                let answer = format!(
                    "HTTP/1.1 412 Precondition Failed\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{xml}",
                    xml.len()
                );
                socket.write_all(answer.as_bytes()).await.unwrap();
                let _ = socket.shutdown().await;
            });
        }
    });
    connections
}

/// Behind CloudFront, a retried whole-file PUT whose first attempt stored the file but lost its
/// answer is refused by S3 with `412 PreconditionFailed` (the distribution makes the PUT
/// conditional): that is the earlier attempt's file, which the API then records, not a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_write_refusing_a_retry_means_the_first_attempt_stored_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let edge = listener.local_addr().unwrap();
    let server = serve(|c| c.public_url = format!("http://{edge}")).await;
    let connections = conditional_write_proxy(listener, server.running().addr);
    let uploader = direct_uploader(&server, 3, None).await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = pseudo_random(300 * 1024, 92);
    let path = write(dir.path(), "answer-lost.bin", &bytes);
    let id = tokio::time::timeout(Duration::from_secs(60), uploader.upload(&path))
        .await
        .expect("the upload hung")
        .expect("a 412 on the retry is the earlier attempt's file");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the PUT whose answer was lost, then the refused retry"
    );
    let file = server.get_json(&format!("/api/files/{id}")).await;
    assert_eq!(file["file"]["status"], "uploaded", "{file}");
    assert_eq!(file["file"]["sha256"], sha256_hex(&bytes));
}

/// `keyhole sign --cookies` checks the URL it is given as it checks one it signs: with
/// `--resource`, the URL must be one the pattern covers; a canned cookie "for" a pattern is
/// signed (a URL may hold `*`) with a warning that it covers that one URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_cookies_are_checked_like_links() {
    let cli = Cli::new("http://127.0.0.1:9");
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    cli.ok(&[
        "keys",
        "generate",
        "--out",
        s(&keys),
        "--algorithm",
        "ecdsa-p256",
    ])
    .await;
    let key = keys.join("private.pem");
    let cookies = |extra: &[&str]| {
        let mut args = vec![
            "sign",
            "--key",
            s(&key),
            "--key-pair-id",
            "K1",
            "--ttl",
            "1h",
        ];
        args.push("--cookies");
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let cli = &cli;
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli.run(&args).await
    };
    let pattern = "https://cdn.example.com/files/*";
    for (url, expected) in [
        ("https://cdn.example.com/other/x", "does not match"),
        ("not-a-url", "must be absolute"),
    ] {
        let out = run(cookies(&["--resource", pattern, url])).await;
        assert_eq!(out.status.code(), Some(1), "{url}");
        assert!(stderr(&out).contains(expected), "{url}: {}", stderr(&out));
    }
    let out = run(cookies(&[
        "--resource",
        pattern,
        "https://cdn.example.com/files/a.pdf",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CloudFront-Policy="));
    let out = run(cookies(&[pattern])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("give it as --resource"),
        "{}",
        stderr(&out)
    );
}
