//! The signing key read from Secrets Manager (moto): a server starts on a PKCS#1 PEM as
//! Terraform's `tls_private_key` writes it, picks up a rotated key without a restart while links
//! signed before the rotation keep working, keeps its key when the secret cannot be read, and
//! refuses to start on a secret that does not exist. Runs when `KEYHOLE_TEST_SECRETS_ENDPOINT`
//! is set; locally:
//!
//! ```text
//! eval "$(bash scripts/test-services.sh start)"
//! cargo test -p keyhole --test secrets_key -- --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use common::{test_config, TestServer};
use keyhole::keys::KeySource;
use keyhole_sign::{KeyAlgorithm, PrivateKey};
use serde_json::{json, Value};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn pem(key: &PrivateKey) -> String {
    String::from_utf8(key.to_pem().unwrap().to_vec()).unwrap()
}

fn unique(prefix: &str) -> String {
    let mut random = [0u8; 6];
    openssl::rand::rand_bytes(&mut random).unwrap();
    format!("{prefix}-{}", hex::encode(random))
}

/// Polls `check` every 100 ms for up to 30 s; panics with `what` if it never holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get_status(ts: &TestServer, url: &str) -> u16 {
    ts.client.get(url).send().await.unwrap().status().as_u16()
}

async fn key_pair_id(ts: &TestServer) -> String {
    let v: Value = ts
        .client
        .get(ts.url("/api/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["keyPairId"].as_str().unwrap_or_default().to_owned()
}

async fn refresh_errors(ts: &TestServer) -> u64 {
    let text = ts.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix("keyhole_key_refresh_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_from_secrets_manager_rotates_without_restart() {
    let Some(endpoint) = env("KEYHOLE_TEST_SECRETS_ENDPOINT") else {
        eprintln!(
            "SKIPPED: Secrets Manager key source (set KEYHOLE_TEST_SECRETS_ENDPOINT; \
             `eval \"$(bash scripts/test-services.sh start)\"` does)"
        );
        return;
    };
    let sm = keyhole::keys::secrets::client(Some(&endpoint))
        .await
        .expect("Secrets Manager client");

    // The key as Terraform's tls_private_key.private_key_pem holds it: PKCS#1.
    let first = PrivateKey::generate(KeyAlgorithm::Rsa).unwrap();
    let first_pem = pem(&first);
    assert!(first_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let name = unique("keyhole-test/signing-key");
    sm.create_secret()
        .name(&name)
        .secret_string(first_pem)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create secret {name} at {endpoint}: {} (credentials and region come from the \
                 environment: AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
                 AWS_REGION=us-east-1 for moto, as `bash scripts/test-services.sh env` prints)",
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
            )
        });

    let ts = TestServer::start_with(|c| {
        c.key_source = KeySource::SecretsManager {
            secret_id: name.clone(),
        };
        c.secrets_endpoint = Some(endpoint.clone());
        c.key_refresh = Duration::from_secs(1);
    })
    .await;
    let first_id = first.public_key().unwrap().fingerprint_id().unwrap();
    assert_eq!(
        ts.running().key_pair_id,
        first_id,
        "without an id anywhere, the key's fingerprint id"
    );
    assert_eq!(key_pair_id(&ts).await, first_id);

    // A link minted with the first key works.
    let body = common::pseudo_random(10_000, 5);
    let file_id = ts.upload("report.bin", body.clone()).await;
    let (status, link) = ts.download_link(&file_id).await;
    assert_eq!(status, 200, "{link}");
    let old_link = ts.local(link["downloadUrl"].as_str().unwrap());
    assert!(old_link.contains(&format!("Key-Pair-Id={first_id}")));
    let r = ts.client.get(&old_link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);

    // Rotate in the secret: a new key, in the JSON form carrying its CloudFront key id.
    let second = PrivateKey::generate(KeyAlgorithm::Rsa).unwrap();
    let secret = json!({"private_key": pem(&second), "key_pair_id": "K2ROTATEDTEST1"});
    sm.put_secret_value()
        .secret_id(&name)
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("put the rotated key");
    eventually("the server signs with the rotated key", || async {
        key_pair_id(&ts).await == "K2ROTATEDTEST1"
    })
    .await;
    let (status, link) = ts.download_link(&file_id).await;
    assert_eq!(status, 200, "{link}");
    let new_link = ts.local(link["downloadUrl"].as_str().unwrap());
    assert!(
        new_link.contains("Key-Pair-Id=K2ROTATEDTEST1"),
        "{new_link}"
    );
    let r = ts.client.get(&new_link).send().await.unwrap();
    assert_eq!(r.status(), 200, "a link signed with the new key works");
    assert_eq!(r.bytes().await.unwrap().to_vec(), body);
    assert_eq!(
        get_status(&ts, &old_link).await,
        200,
        "a link signed before the rotation still works"
    );
    assert_eq!(refresh_errors(&ts).await, 0);

    // Another key under the same id (a configuration that pins the id, a half-done rotation):
    // refused and counted, and the key in use stays, so its links keep verifying.
    let impostor = PrivateKey::generate(KeyAlgorithm::Rsa).unwrap();
    let secret = json!({"private_key": pem(&impostor), "key_pair_id": "K2ROTATEDTEST1"});
    sm.put_secret_value()
        .secret_id(&name)
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("put another key under the same id");
    eventually("the refresh refuses it", || async {
        refresh_errors(&ts).await >= 1
    })
    .await;
    let (status, link) = ts.download_link(&file_id).await;
    assert_eq!(status, 200, "{link}");
    assert_eq!(
        get_status(&ts, &ts.local(link["downloadUrl"].as_str().unwrap())).await,
        200,
        "still signed with the key in use"
    );
    assert_eq!(get_status(&ts, &new_link).await, 200);
    let refused = refresh_errors(&ts).await;

    // The secret becomes unreadable: the server keeps signing with the key it has.
    sm.delete_secret()
        .secret_id(&name)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("delete the secret");
    eventually("a failed refresh is counted", || async {
        refresh_errors(&ts).await > refused
    })
    .await;
    assert_eq!(key_pair_id(&ts).await, "K2ROTATEDTEST1");
    let (status, link) = ts.download_link(&file_id).await;
    assert_eq!(status, 200, "{link}");
    assert_eq!(
        get_status(&ts, &ts.local(link["downloadUrl"].as_str().unwrap())).await,
        200
    );
    assert_eq!(get_status(&ts, &old_link).await, 200);
    ts.stop().await;

    // By ARN, with the id from --key-pair-id winning over the secret's; refresh off.
    let third = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let name = unique("keyhole-test-arn");
    let created = sm
        .create_secret()
        .name(&name)
        .secret_string(json!({"privateKey": pem(&third), "keyPairId": "KFROMSECRET"}).to_string())
        .send()
        .await
        .expect("create the second secret");
    let arn2 = created.arn().unwrap().to_owned();
    assert!(arn2.contains(':'));
    let ts = TestServer::start_with(|c| {
        c.key_source = KeySource::parse(&format!("secretsmanager://{arn2}")).unwrap();
        c.secrets_endpoint = Some(endpoint.clone());
        c.key_pair_id = Some("KFROMFLAG".into());
        c.key_refresh = Duration::ZERO;
    })
    .await;
    assert_eq!(ts.running().key_pair_id, "KFROMFLAG");
    let file_id = ts.upload("b.txt", b"by arn".to_vec()).await;
    assert_eq!(ts.download(&file_id).await, b"by arn");
    ts.stop().await;
    let _ = sm
        .delete_secret()
        .secret_id(&arn2)
        .force_delete_without_recovery(true)
        .send()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_fails_start_naming_it() {
    let Some(endpoint) = env("KEYHOLE_TEST_SECRETS_ENDPOINT") else {
        eprintln!(
            "SKIPPED: Secrets Manager key source (set KEYHOLE_TEST_SECRETS_ENDPOINT; \
             `eval \"$(bash scripts/test-services.sh start)\"` does)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let name = unique("keyhole-test-missing");
    let mut config = test_config(dir.path());
    config.key_source = KeySource::SecretsManager {
        secret_id: name.clone(),
    };
    config.secrets_endpoint = Some(endpoint);
    let err = match keyhole::server::start(config).await {
        Ok(_) => panic!("a server started on a secret that does not exist"),
        Err(e) => e.to_string(),
    };
    eprintln!("start refused as expected: {err}");
    assert!(err.contains(&name), "the error names the secret: {err}");
    assert!(err.contains("not found"), "the error says why: {err}");

    // Nothing listens on this port: the error says Secrets Manager is unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut config = test_config(dir.path());
    config.key_source = KeySource::SecretsManager {
        secret_id: name.clone(),
    };
    config.secrets_endpoint = Some(format!("http://127.0.0.1:{port}"));
    let err = match keyhole::server::start(config).await {
        Ok(_) => panic!("a server started without Secrets Manager"),
        Err(e) => e.to_string(),
    };
    eprintln!("start refused as expected: {err}");
    assert!(err.contains(&name) && err.contains("unreachable"), "{err}");
}
