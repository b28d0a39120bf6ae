//! Shared helpers for the Lambda's tests: the moto stand-ins (S3, DynamoDB, Secrets Manager),
//! a Lambda and a `keyhole serve` over the same stores and key, event fixtures, and a
//! structural comparison of JSON answers.
//!
//! The tests run when `KEYHOLE_TEST_S3_ENDPOINT`, `KEYHOLE_TEST_DYNAMODB_ENDPOINT` and
//! `KEYHOLE_TEST_SECRETS_ENDPOINT` are set (CI sets them); locally:
//!
//! ```text
//! eval "$(KEYHOLE_SERVICES_DIR=/tmp/ks-lambda bash scripts/test-services.sh start)"
//! cargo test -p keyhole-lambda
//! ```
#![allow(dead_code)]

use std::path::PathBuf;

use keyhole::config::{Config, Metadata, Storage, TokenEntry};
use keyhole::keys::KeySource;
use keyhole::server::RunningServer;
use keyhole_lambda::Lambda;
use keyhole_sign::{KeyAlgorithm, PrivateKey};
use serde_json::{json, Value};

/// The CloudFront custom domain links must carry.
pub const PUBLIC: &str = "https://files.keyhole.test";
/// The key pair id stored with the key in the secret (as a CloudFront public key id).
pub const KEY_PAIR_ID: &str = "K2LAMBDATEST01";
/// The API token the tests use, and its principal.
pub const TOKEN: &str = "kh_lambda-test-token-0123456789";
/// The principal of [`TOKEN`].
pub const PRINCIPAL: &str = "lambda-tests";
/// The storage prefix inside the bucket.
pub const PREFIX: &str = "keyhole";

/// The moto endpoints.
#[derive(Clone, Debug)]
pub struct Moto {
    /// S3.
    pub s3: String,
    /// DynamoDB.
    pub dynamodb: String,
    /// Secrets Manager.
    pub secrets: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The moto endpoints, or `None` after printing why `test` is skipped.
pub fn moto(test: &str) -> Option<Moto> {
    match (
        env("KEYHOLE_TEST_S3_ENDPOINT"),
        env("KEYHOLE_TEST_DYNAMODB_ENDPOINT"),
        env("KEYHOLE_TEST_SECRETS_ENDPOINT"),
    ) {
        (Some(s3), Some(dynamodb), Some(secrets)) => Some(Moto {
            s3,
            dynamodb,
            secrets,
        }),
        _ => {
            eprintln!(
                "SKIPPED: {test} (set KEYHOLE_TEST_S3_ENDPOINT, KEYHOLE_TEST_DYNAMODB_ENDPOINT and \
                 KEYHOLE_TEST_SECRETS_ENDPOINT; `eval \"$(bash scripts/test-services.sh start)\"` \
                 does)"
            );
            None
        }
    }
}

/// `prefix-` plus random hex, for bucket, table and secret names.
pub fn unique(prefix: &str) -> String {
    let mut random = [0u8; 5];
    openssl::rand::rand_bytes(&mut random).unwrap();
    format!("{prefix}-{}", hex::encode(random))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(bytes))
}

/// Epoch seconds now.
pub fn now() -> i64 {
    keyhole::state::now_secs()
}

/// One AWS-shaped deployment on moto: a bucket, a table, a secret holding the signing key.
pub struct Aws {
    /// The endpoints.
    pub moto: Moto,
    /// Bucket name.
    pub bucket: String,
    /// Table name.
    pub table: String,
    /// Secret name.
    pub secret: String,
    /// The key in the secret.
    pub key: PrivateKey,
    dirs: Vec<tempfile::TempDir>,
}

impl Aws {
    /// Creates the bucket and the secret (the table is created by the first store that opens it).
    pub async fn create(moto: Moto) -> Self {
        let bucket = unique("keyhole-lambda");
        let r = reqwest::Client::new()
            .put(format!("{}/{bucket}", moto.s3.trim_end_matches('/')))
            .send()
            .await
            .expect("S3 endpoint reachable");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
        let key = PrivateKey::generate(KeyAlgorithm::Rsa).unwrap();
        let pem = String::from_utf8(key.to_pem().unwrap().to_vec()).unwrap();
        let secret = unique("keyhole-lambda/signing-key");
        let sm = keyhole::keys::secrets::client(Some(&moto.secrets))
            .await
            .expect("Secrets Manager client");
        sm.create_secret()
            .name(&secret)
            .secret_string(json!({"private_key": pem, "key_pair_id": KEY_PAIR_ID}).to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("create secret {secret}: {e:?}"));
        Aws {
            table: unique("keyhole-lambda-files"),
            bucket,
            secret,
            key,
            moto,
            dirs: Vec::new(),
        }
    }

    /// The configuration both the Lambda and `keyhole serve` get: S3, DynamoDB, the key from
    /// Secrets Manager, one token, multipart from 6 MiB in 5 MiB parts.
    pub fn config(&mut self) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::with_data_dir(dir.path());
        self.dirs.push(dir);
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.public_url = PUBLIC.to_owned();
        c.storage = Storage::S3 {
            bucket: self.bucket.clone(),
            prefix: PREFIX.to_owned(),
            endpoint: Some(self.moto.s3.clone()),
        };
        c.metadata = Metadata::DynamoDb {
            table: self.table.clone(),
            endpoint: Some(self.moto.dynamodb.clone()),
            create: true,
        };
        c.key_source = KeySource::SecretsManager {
            secret_id: self.secret.clone(),
        };
        c.secrets_endpoint = Some(self.moto.secrets.clone());
        c.tokens = vec![TokenEntry {
            principal: PRINCIPAL.to_owned(),
            sha256: sha256_hex(TOKEN.as_bytes()),
        }];
        c.part_size = 5 * 1024 * 1024;
        c.multipart_threshold = 6 * 1024 * 1024;
        c
    }

    /// A Lambda over this deployment, after `adjust` changes its configuration.
    pub async fn lambda_with(&mut self, adjust: impl FnOnce(&mut Config)) -> Lambda {
        let mut c = self.config();
        adjust(&mut c);
        Lambda::start(c).await.expect("lambda starts")
    }

    /// A Lambda over this deployment.
    pub async fn lambda(&mut self) -> Lambda {
        self.lambda_with(|_| {}).await
    }

    /// `keyhole serve` over the same stores and key, on 127.0.0.1:0.
    pub async fn serve(&mut self) -> RunningServer {
        let c = self.config();
        keyhole::server::start(c)
            .await
            .expect("keyhole serve starts")
    }

    /// The bucket key S3 names an object by.
    pub fn s3_key(&self, file_id: &str) -> String {
        format!("{PREFIX}/uploads/{file_id}")
    }
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture with its `__NAME__` placeholders replaced (values are inserted as JSON string
/// content, so they must not need escaping).
pub fn fixture(name: &str, replace: &[(&str, &str)]) -> Value {
    let path = fixtures().join(name);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// An API Gateway fixture (`tests/fixtures/api/NAME.json`) for the test token and `file_id`.
pub fn api_event(name: &str, file_id: &str) -> Value {
    fixture(
        &format!("api/{name}.json"),
        &[("__TOKEN__", TOKEN), ("__FILE_ID__", file_id)],
    )
}

/// Invokes the Lambda with an API Gateway event; returns status and JSON body.
pub async fn invoke_http(lambda: &Lambda, event: Value) -> (u16, Value) {
    let answer = lambda
        .handle(event)
        .await
        .expect("API Gateway event handled");
    assert!(
        answer.get("cookies").is_some() && answer.get("isBase64Encoded").is_some(),
        "an HTTP API 2.0 response: {answer}"
    );
    let status = answer["statusCode"].as_u64().expect("statusCode") as u16;
    let body = answer["body"].as_str().unwrap_or("null");
    let body = if answer["isBase64Encoded"] == json!(true) {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64 body");
        String::from_utf8(bytes).expect("UTF-8 body")
    } else {
        body.to_owned()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}")),
    )
}

/// Sends the request an API Gateway event describes to `keyhole serve` over HTTP; returns
/// status and JSON body.
pub async fn send_http(server: &RunningServer, event: &Value) -> (u16, Value) {
    let method = event["requestContext"]["http"]["method"].as_str().unwrap();
    let mut url = format!(
        "http://{}{}",
        server.addr,
        event["rawPath"].as_str().unwrap()
    );
    if let Some(q) = event["rawQueryString"].as_str().filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    let mut request = reqwest::Client::new().request(method.parse().unwrap(), url);
    for (name, value) in event["headers"].as_object().unwrap() {
        if !matches!(name.as_str(), "host" | "content-length" | "accept-encoding") {
            request = request.header(name, value.as_str().unwrap());
        }
    }
    if let Some(body) = event["body"].as_str() {
        let bytes = if event["isBase64Encoded"] == json!(true) {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap()
        } else {
            body.as_bytes().to_vec()
        };
        request = request.body(bytes);
    }
    let r = request.send().await.expect("keyhole serve answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The shape of a JSON value: objects keep their keys, arrays their elements, scalars become
/// their type name, so answers with other ids, times and signatures compare equal.
pub fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// An SQS batch of `(messageId, body)` messages in the SQS event shape.
pub fn sqs_batch(messages: &[(&str, &str)]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| {
            let mut m = fixture("events/sqs-message.json", &[("__MESSAGE_ID__", id)]);
            m["body"] = json!(body);
            m
        })
        .collect();
    json!({ "Records": records })
}

/// S3 URL-encodes event keys, with `+` for spaces.
pub fn s3_encode(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The body S3 sends for an `ObjectCreated:Put` of `key` (as stored, not yet encoded).
pub fn s3_created(bucket: &str, key: &str, size: u64, etag: &str) -> String {
    let encoded = s3_encode(key);
    let mut v = fixture(
        "events/s3-object-created.json",
        &[("__BUCKET__", bucket), ("__ETAG__", etag)],
    );
    v["Records"][0]["s3"]["object"]["key"] = json!(encoded);
    v["Records"][0]["s3"]["object"]["size"] = json!(size);
    v.to_string()
}

/// Stores `bytes` as the object of `file_id`, as CloudFront's PUT to S3 would; returns the
/// ETag S3 reports (the MD5 of a single PUT).
pub async fn put_object(lambda: &Lambda, file_id: &str, bytes: &[u8]) -> String {
    let mut writer = lambda
        .state()
        .objects
        .begin_write(&format!("uploads/{file_id}"))
        .await
        .expect("begin write");
    writer
        .write(bytes::Bytes::copy_from_slice(bytes))
        .await
        .expect("write");
    writer.commit().await.expect("commit");
    hex::encode(openssl::hash::hash(openssl::hash::MessageDigest::md5(), bytes).unwrap())
}

/// Whether the object of `file_id` exists.
pub async fn object_exists(lambda: &Lambda, file_id: &str) -> bool {
    match lambda
        .state()
        .objects
        .head(&format!("uploads/{file_id}"))
        .await
    {
        Ok(_) => true,
        Err(keyhole::store::objects::ObjectError::NotFound) => false,
        Err(e) => panic!("head {file_id}: {e}"),
    }
}

/// The failed message ids of an SQS answer.
pub fn failures(answer: &Value) -> Vec<String> {
    answer["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

/// Creates an upload through the Lambda's API; returns the reply.
pub async fn create_upload(lambda: &Lambda, filename: &str, size: Option<u64>) -> Value {
    let mut event = api_event("upload", "");
    let mut body = json!({"filename": filename, "contentType": "application/octet-stream"});
    if let Some(s) = size {
        body["size"] = json!(s);
    }
    event["body"] = json!(body.to_string());
    let (status, reply) = invoke_http(lambda, event).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

/// The value of `keyhole_uploads_total{kind="KIND"}` in the Lambda's registry.
pub fn upload_count(lambda: &Lambda, kind: &str) -> u64 {
    let needle = format!("keyhole_uploads_total{{kind=\"{kind}\"}} ");
    lambda
        .state()
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The query parameter `name` of `url`, percent-decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        (n == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Whether a download link carries, for S3 behind CloudFront to answer with, the record's content
/// type and the `Content-Disposition` Keyhole's edge sends for `filename`.
pub fn carries_record_headers(url: &str, content_type: &str, filename: &str) -> bool {
    query_param(url, "response-content-type").as_deref() == Some(content_type)
        && query_param(url, "response-content-disposition")
            == Some(keyhole::edge::content_disposition(filename))
}

/// Whether CloudFront, trusting the secret's key under [`KEY_PAIR_ID`] for [`PUBLIC`], would
/// accept `url` now.
pub fn cloudfront_accepts(key: &PrivateKey, url: &str) -> bool {
    let mut ring = keyhole_sign::KeyRing::new();
    ring.insert(KEY_PAIR_ID, key.public_key().unwrap());
    let verifier = keyhole_sign::Verifier::new(PUBLIC, ring).unwrap();
    let Some(target) = url.strip_prefix(PUBLIC) else {
        return false;
    };
    verifier
        .verify(&keyhole_sign::Request {
            target,
            client_ip: None,
            now: now() as u64,
            cookies: None,
        })
        .is_ok()
}

/// Delivers the S3 notification of `file_id`'s object (already stored) to the Lambda through an
/// SQS batch of one; returns the failed message ids.
pub async fn deliver_created(
    lambda: &Lambda,
    aws: &Aws,
    file_id: &str,
    size: u64,
    etag: &str,
) -> Vec<String> {
    let body = s3_created(&aws.bucket, &aws.s3_key(file_id), size, etag);
    deliver(lambda, &body).await
}

/// Delivers one S3 notification body to the Lambda in an SQS batch of one; returns the failed
/// message ids.
async fn deliver(lambda: &Lambda, body: &str) -> Vec<String> {
    let answer = lambda
        .handle(sqs_batch(&[(&unique("msg"), body)]))
        .await
        .expect("SQS batch handled");
    failures(&answer)
}

/// [`deliver_created`] for a write to a versioned bucket, which names the version it made.
pub async fn deliver_created_version(
    lambda: &Lambda,
    aws: &Aws,
    file_id: &str,
    size: u64,
    etag: &str,
    version: &str,
) -> Vec<String> {
    let mut body: Value =
        serde_json::from_str(&s3_created(&aws.bucket, &aws.s3_key(file_id), size, etag)).unwrap();
    body["Records"][0]["s3"]["object"]["versionId"] = json!(version);
    deliver(lambda, &body.to_string()).await
}
