//! Shared helpers for the integration tests: a real `keyhole serve` on 127.0.0.1:0 over a
//! temporary directory, and a client that talks to it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use keyhole::config::Config;
use keyhole::server::{self, RunningServer};
use keyhole_sign::{Policy, Signer};
use serde_json::{json, Value};

/// A server on 127.0.0.1 that accepts connections and never answers on them (a black-holed
/// endpoint): its address, and the connections it has accepted so far.
pub fn blackhole() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            keep.lock().unwrap().push(conn);
        }
    });
    (addr, held)
}

/// The public origin test servers sign for; requests go to the real address instead, which
/// proves links carry the configured domain and never the request's Host.
pub const PUBLIC: &str = "https://files.keyhole.test";

/// A running server and its data directory.
pub struct TestServer {
    /// The server.
    pub server: Option<RunningServer>,
    /// Its data directory (kept alive for the test's duration).
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// HTTP client.
    pub client: reqwest::Client,
}

/// The default test configuration over `dir`.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::with_data_dir(dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.public_url = PUBLIC.to_owned();
    config
}

impl TestServer {
    /// Starts a server with the default test configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` changes the configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, adjust).await
    }

    /// Starts a server over an existing directory (for restarts).
    pub async fn start_in(dir: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(dir.path());
        adjust(&mut config);
        let server = server::start(config).await.expect("server starts");
        let base = format!("http://{}", server.addr);
        TestServer {
            server: Some(server),
            dir,
            base,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// Stops the server gracefully and returns its directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.dir
    }

    /// The running server.
    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A signed URL on the public origin, redirected to this server's real address.
    pub fn local(&self, signed: &str) -> String {
        let rest = signed
            .strip_prefix(PUBLIC)
            .unwrap_or_else(|| panic!("signed URL does not carry the public origin: {signed}"));
        format!("{}{}", self.base, rest)
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// A signer using the server's own key (to mint links with arbitrary policies).
    pub fn signer(&self) -> Signer {
        let key =
            keyhole::keyfile::read_private_key(&self.data().join("keys/private.pem")).unwrap();
        Signer::new(self.running().key_pair_id.clone(), key).unwrap()
    }

    /// Signs `path` on the public origin with the server's key until `expires`.
    pub fn sign(&self, path: &str, expires: u64) -> String {
        self.signer()
            .sign_url(
                &format!("{PUBLIC}{path}"),
                &Policy::canned(expires).unwrap(),
            )
            .unwrap()
    }

    /// `POST /api/files/upload`; returns status and JSON.
    pub async fn create_upload(&self, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url("/api/files/upload"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates an upload link for `name` with optional size and checksum; panics unless 200.
    pub async fn upload_link(&self, name: &str, size: Option<u64>, sha256: Option<&str>) -> Value {
        let mut body = json!({"filename": name, "contentType": "application/octet-stream"});
        if let Some(s) = size {
            body["size"] = json!(s);
        }
        if let Some(h) = sha256 {
            body["sha256"] = json!(h);
        }
        let (status, v) = self.create_upload(body).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// PUTs `body` to a signed upload URL.
    pub async fn put(&self, upload_url: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .put(self.local(upload_url))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Uploads `bytes` as `name` through the API and the edge; returns the file id.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> String {
        let link = self.upload_link(name, Some(bytes.len() as u64), None).await;
        let r = self.put(link["uploadUrl"].as_str().unwrap(), bytes).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        link["fileId"].as_str().unwrap().to_owned()
    }

    /// `GET /api/files/download/{id}`.
    pub async fn download_link(&self, file_id: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(&format!("/api/files/download/{file_id}")))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Downloads a file through a fresh link.
    pub async fn download(&self, file_id: &str) -> Vec<u8> {
        let (status, link) = self.download_link(file_id).await;
        assert_eq!(status, 200, "{link}");
        let r = self
            .client
            .get(self.local(link["downloadUrl"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    }

    /// `GET path` on this server, as JSON (panics on a transport or JSON error).
    pub async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `GET /api/files` (all pages).
    pub async fn list_all(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = self.url("/api/files?limit=7");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let v: Value = self
                .client
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            out.extend(v["files"].as_array().unwrap().iter().cloned());
            match v["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    /// `DELETE /api/files/{file_id}`.
    pub async fn delete_file(&self, file_id: &str) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/api/files/{file_id}")))
            .send()
            .await
            .unwrap()
    }

    /// The object file of a file id.
    pub fn object_path(&self, file_id: &str) -> PathBuf {
        self.data().join("objects/uploads").join(file_id)
    }

    /// Files currently in the staging directory.
    pub fn staged(&self) -> usize {
        std::fs::read_dir(self.data().join("staging"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Waits (up to 30 s) until an upload is being staged: a PUT's body has started to arrive.
    pub async fn wait_until_staged(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.staged() == 0 {
            assert!(std::time::Instant::now() < deadline, "never staged");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// The signed URL of part `n` in the list `key` (`parts` of an upload reply, `missing` of a
/// parts listing).
pub fn part_url(reply: &Value, key: &str, n: u64) -> String {
    reply[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partNumber"] == n)
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(bytes))
}

/// Deterministic pseudo-random bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Epoch seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A short random hex id, to keep each test run's bucket or prefix apart.
pub fn run_id() -> String {
    let mut b = [0u8; 5];
    openssl::rand::rand_bytes(&mut b).unwrap();
    hex::encode(b)
}

/// Creates `bucket` on an S3-compatible test server (moto accepts unsigned bucket creation).
pub async fn create_bucket(endpoint: &str, bucket: &str) {
    let r = reqwest::Client::new()
        .put(format!("{}/{bucket}", endpoint.trim_end_matches('/')))
        .send()
        .await
        .expect("S3 endpoint reachable");
    assert!(
        r.status().is_success() || r.status() == 409,
        "create bucket: {}",
        r.status()
    );
}

/// The s3s-fs server scripts/test-services.sh starts: an S3 that checks SigV4 signatures,
/// presigned URLs included.
pub struct S3sEnv {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// A bucket that exists on it.
    pub bucket: String,
    /// The access key id it accepts.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
}

impl S3sEnv {
    /// The s3s-fs settings from `KEYHOLE_TEST_S3S_*`, or `None` (after printing that `what` is
    /// skipped) when they are absent. The server under test takes its S3 credentials from the
    /// standard AWS variables, so those must hold the pair s3s-fs accepts.
    pub fn from_env(what: &str) -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(endpoint) = var("KEYHOLE_TEST_S3S_ENDPOINT") else {
            eprintln!(
                "SKIPPED: {what} (set KEYHOLE_TEST_S3S_ENDPOINT and the other variables of \
                 scripts/test-services.sh; CI does)"
            );
            return None;
        };
        let env = S3sEnv {
            endpoint,
            bucket: var("KEYHOLE_TEST_S3S_BUCKET").expect("KEYHOLE_TEST_S3S_BUCKET"),
            access_key_id: var("KEYHOLE_TEST_S3S_ACCESS_KEY_ID")
                .expect("KEYHOLE_TEST_S3S_ACCESS_KEY_ID"),
            secret_access_key: var("KEYHOLE_TEST_S3S_SECRET_ACCESS_KEY")
                .expect("KEYHOLE_TEST_S3S_SECRET_ACCESS_KEY"),
        };
        assert_eq!(
            var("AWS_ACCESS_KEY_ID").as_deref(),
            Some(env.access_key_id.as_str()),
            "AWS_ACCESS_KEY_ID must be the key s3s-fs accepts (eval scripts/test-services.sh start)"
        );
        Some(env)
    }

    /// Points `config` at this server under a fresh prefix.
    pub fn use_in(&self, config: &mut Config) {
        config.storage = keyhole::config::Storage::S3 {
            bucket: self.bucket.clone(),
            prefix: format!("run-{}", run_id()),
            endpoint: Some(self.endpoint.clone()),
        };
    }
}

impl TestServer {
    /// `POST path` with a JSON body and, when given, a bearer token; returns status and JSON.
    pub async fn post_json(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.client.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET path` with an optional bearer token; returns status and JSON.
    pub async fn get_json_as(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A body that sends the chunks given to the returned sender, and ends when it is dropped.
pub fn fed_body() -> (
    tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    reqwest::Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((chunk, rx))
    });
    (tx, reqwest::Body::wrap_stream(chunks))
}

/// A body that sends `bytes` in `pieces` pieces, one every `every` (the first at once): a
/// client on a slow line.
pub fn trickled_body(bytes: Vec<u8>, pieces: usize, every: std::time::Duration) -> reqwest::Body {
    let size = bytes.len().div_ceil(pieces);
    let chunks: Vec<bytes::Bytes> = bytes
        .chunks(size)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let pieces = futures_util::stream::iter(chunks.into_iter().enumerate());
    let stream = futures_util::StreamExt::then(pieces, move |(i, chunk)| async move {
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        Ok::<_, std::io::Error>(chunk)
    });
    reqwest::Body::wrap_stream(stream)
}
