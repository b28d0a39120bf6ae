//! Bearer JWTs on `keyhole serve`: an OpenID Connect issuer on 127.0.0.1 (discovery document and
//! JWKS served by the test, keys made with OpenSSL), tokens signed with jsonwebtoken. Covers what
//! is accepted (RS256 and ES256, `aud` or Cognito's `client_id`), every refusal, key rotation and
//! an issuer that is down when the server starts.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::{now, TestServer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keyhole::jwt::JwtSettings;
use serde_json::{json, Value};

const AUDIENCE: &str = "keyhole-app";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key of the test issuer: how to sign with it and its JWK.
struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn rsa_key(kid: &str) -> TestKey {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    TestKey {
        kid: kid.to_owned(),
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(&rsa.private_key_to_der().unwrap()),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())}),
    }
}

fn ec_key(kid: &str) -> TestKey {
    use openssl::{bn::BigNumContext, ec, nid::Nid, pkey::PKey};
    let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = ec::EcKey::generate(&group).unwrap();
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().unwrap(),
        openssl::bn::BigNum::new().unwrap(),
    );
    let mut ctx = BigNumContext::new().unwrap();
    key.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
        .unwrap();
    let pkcs8 = PKey::from_ec_key(key)
        .unwrap()
        .private_key_to_pkcs8()
        .unwrap();
    TestKey {
        kid: kid.to_owned(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(&pkcs8),
        // No `alg` and no `use`: both are optional in a JWK.
        jwk: json!({"kty": "EC", "kid": kid, "crv": "P-256",
            "x": b64(&x.to_vec_padded(32).unwrap()), "y": b64(&y.to_vec_padded(32).unwrap())}),
    }
}

impl TestKey {
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// What the issuer serves: its keys, or an error status while it is "down".
struct IssuerState {
    keys: Vec<Value>,
    down: bool,
    fetches: usize,
}

/// An OpenID Connect issuer on 127.0.0.1: `/.well-known/openid-configuration` and `/jwks.json`.
struct Issuer {
    url: String,
    state: Arc<Mutex<IssuerState>>,
}

impl Issuer {
    async fn start(keys: Vec<Value>, down: bool) -> Issuer {
        use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(IssuerState {
            keys,
            down,
            fetches: 0,
        }));
        type Shared = (String, Arc<Mutex<IssuerState>>);
        let discovery = |State((url, state)): State<Shared>| async move {
            if state.lock().unwrap().down {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            axum::Json(json!({"issuer": url, "jwks_uri": format!("{url}/jwks.json")}))
                .into_response()
        };
        let jwks = |State((_, state)): State<Shared>| async move {
            let mut s = state.lock().unwrap();
            s.fetches += 1;
            if s.down {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            axum::Json(json!({ "keys": s.keys })).into_response()
        };
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks.json", get(jwks))
            .with_state((url.clone(), state.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Issuer { url, state }
    }

    fn settings(&self) -> JwtSettings {
        JwtSettings {
            issuer: self.url.clone(),
            audiences: vec![AUDIENCE.to_owned()],
            jwks_url: None,
            refresh: Duration::from_secs(3600),
            refetch_spacing: Duration::from_millis(300),
        }
    }

    fn claims(&self, sub: &str) -> Value {
        let now = now() as i64;
        json!({"iss": self.url, "sub": sub, "aud": AUDIENCE, "iat": now, "exp": now + 600})
    }
}

async fn create(s: &TestServer, token: &str) -> (u16, Value) {
    s.post_json(
        "/api/files/upload",
        Some(token),
        json!({"filename": "a.txt", "contentType": "text/plain"}),
    )
    .await
}

async fn listed(s: &TestServer, token: &str) -> Vec<String> {
    let (status, v) = s.get_json_as("/api/files", Some(token)).await;
    assert_eq!(status, 200, "{v}");
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fileId"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits (up to 10 s) until the server has loaded the issuer's keys at start.
async fn wait_for_fetches(issuer: &Issuer, at_least: usize) {
    for _ in 0..200 {
        if issuer.state.lock().unwrap().fetches >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server never fetched the issuer's keys");
}

#[tokio::test]
async fn tokens_of_the_configured_issuer_act_as_their_subject() {
    let rsa = rsa_key("rsa-1");
    let ec = ec_key("ec-1");
    let issuer = Issuer::start(vec![rsa.jwk.clone(), ec.jwk.clone()], false).await;
    let (static_token, hash) = keyhole::auth::generate_token().unwrap();
    let settings = issuer.settings();
    let s = TestServer::start_with(|c| {
        c.jwt = Some(settings);
        c.tokens = vec![keyhole::config::TokenEntry {
            principal: "service".into(),
            sha256: hash,
        }];
    })
    .await;
    wait_for_fetches(&issuer, 1).await;

    let alice = rsa.sign(&issuer.claims("alice"));
    let (status, v) = create(&s, &alice).await;
    assert_eq!(status, 200, "{v}");
    let file = v["fileId"].as_str().unwrap().to_owned();
    assert_eq!(listed(&s, &alice).await, vec![file.clone()]);

    // ES256, and a Cognito access token: no `aud`, the app client in `client_id`.
    let mut claims = issuer.claims("bob");
    claims.as_object_mut().unwrap().remove("aud");
    claims["client_id"] = json!(AUDIENCE);
    let bob = ec.sign(&claims);
    assert_eq!(create(&s, &bob).await.0, 200);
    assert_eq!(listed(&s, &bob).await.len(), 1);
    assert!(
        !listed(&s, &bob).await.contains(&file),
        "records are per subject"
    );
    let (status, _) = s
        .get_json_as(&format!("/api/files/{file}"), Some(&bob))
        .await;
    assert_eq!(status, 404, "another subject's file is not found");

    // `aud` as a list naming the audience among others.
    let mut claims = issuer.claims("alice");
    claims["aud"] = json!(["other", AUDIENCE]);
    assert_eq!(listed(&s, &rsa.sign(&claims)).await, vec![file.clone()]);

    // Static tokens keep working beside JWTs.
    assert_eq!(create(&s, &static_token).await.0, 200);
    assert_eq!(listed(&s, &static_token).await.len(), 1);

    // The page is told that the API needs a token.
    let config = s.get_json("/api/config").await;
    assert_eq!(config["authRequired"], true, "{config}");
}

#[tokio::test]
async fn tokens_that_are_not_acceptable_get_401() {
    let rsa = rsa_key("rsa-1");
    let other = rsa_key("rsa-1"); // same id, another key: the issuer never signed with it
                                  // The set also publishes a symmetric key, which must never verify anything.
    let secret = b"a shared secret that is not a signature key at all";
    let oct = json!({"kty": "oct", "kid": "hmac", "k": b64(secret)});
    let issuer = Issuer::start(vec![rsa.jwk.clone(), oct], false).await;
    let settings = issuer.settings();
    let s = TestServer::start_with(|c| c.jwt = Some(settings)).await;
    wait_for_fetches(&issuer, 1).await;
    assert_eq!(create(&s, &rsa.sign(&issuer.claims("alice"))).await.0, 200);

    let now = now() as i64;
    let with = |changes: Value| {
        let mut claims = issuer.claims("alice");
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    };
    let mut refused: Vec<(&str, String)> = vec![
        ("expired", rsa.sign(&with(json!({"exp": now - 120})))),
        ("not yet valid", rsa.sign(&with(json!({"nbf": now + 600})))),
        ("no exp", rsa.sign(&with(json!({"exp": null})))),
        (
            "another issuer",
            rsa.sign(&with(json!({"iss": "https://evil.example"}))),
        ),
        ("no issuer", rsa.sign(&with(json!({"iss": null})))),
        (
            "another audience",
            rsa.sign(&with(json!({"aud": "other-app"}))),
        ),
        ("no audience", rsa.sign(&with(json!({"aud": null})))),
        (
            "another client",
            rsa.sign(&with(json!({"aud": null, "client_id": "x"}))),
        ),
        (
            "aud names another API, client_id this app",
            rsa.sign(&with(json!({"aud": "other-api", "client_id": AUDIENCE}))),
        ),
        ("no subject", rsa.sign(&with(json!({"sub": null})))),
        ("empty subject", rsa.sign(&with(json!({"sub": ""})))),
        ("signed by another key", other.sign(&issuer.claims("alice"))),
        ("garbage", "a.b.c".to_owned()),
    ];
    // The payload changed after signing.
    let good = rsa.sign(&issuer.claims("alice"));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = b64(serde_json::to_string(&issuer.claims("mallory"))
        .unwrap()
        .as_bytes());
    refused.push(("tampered", format!("{}.{forged}.{}", parts[0], parts[2])));
    // `alg: none`, unsigned.
    let none = b64(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#);
    refused.push(("alg none", format!("{none}.{}.", parts[1])));
    // HS256 with the issuer's public key as the secret (the classic algorithm confusion).
    let published = {
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(rsa.jwk["n"].as_str().unwrap())
            .unwrap();
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(rsa.jwk["e"].as_str().unwrap())
            .unwrap();
        openssl::rsa::Rsa::from_public_components(
            openssl::bn::BigNum::from_slice(&n).unwrap(),
            openssl::bn::BigNum::from_slice(&e).unwrap(),
        )
        .unwrap()
    };
    for secret in [
        published.public_key_to_pem().unwrap(),
        published.public_key_to_der_pkcs1().unwrap(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let token = jsonwebtoken::encode(
            &header,
            &issuer.claims("alice"),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        refused.push(("HS256 with the public key", token));
    }
    // PS256 with the key published for RS256 only (the same RSA key could verify it).
    let mut header = Header::new(Algorithm::PS256);
    header.kid = Some("rsa-1".into());
    refused.push((
        "PS256 with a key published for RS256",
        jsonwebtoken::encode(&header, &issuer.claims("alice"), &rsa.encoding).unwrap(),
    ));
    // HS256 with the symmetric key the set published.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hmac".into());
    refused.push((
        "HS256 with a published symmetric key",
        jsonwebtoken::encode(
            &header,
            &issuer.claims("alice"),
            &EncodingKey::from_secret(secret),
        )
        .unwrap(),
    ));
    for (what, token) in &refused {
        let (status, v) = create(&s, token).await;
        assert_eq!(status, 401, "{what}: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{what}");
    }
    // Nothing was created by any of them.
    assert_eq!(listed(&s, &good).await.len(), 1);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it_and_made_up_ids_cannot_flood_the_issuer() {
    let old = rsa_key("old");
    let issuer = Issuer::start(vec![old.jwk.clone()], false).await;
    let settings = issuer.settings();
    let spacing = settings.refetch_spacing;
    let s = TestServer::start_with(|c| c.jwt = Some(settings)).await;
    wait_for_fetches(&issuer, 1).await;
    tokio::time::sleep(spacing).await;

    // The issuer publishes a new key and signs with it: the first token naming it makes the
    // server fetch the set again.
    let new = ec_key("new");
    issuer.state.lock().unwrap().keys.push(new.jwk.clone());
    assert_eq!(create(&s, &new.sign(&issuer.claims("alice"))).await.0, 200);
    // The old key is withdrawn: its tokens stop working at the next fetch.
    issuer.state.lock().unwrap().keys.remove(0);
    tokio::time::sleep(spacing).await;
    let unknown = rsa_key("made-up");
    assert_eq!(create(&s, &unknown.sign(&issuer.claims("x"))).await.0, 401);
    assert_eq!(create(&s, &old.sign(&issuer.claims("alice"))).await.0, 401);

    // Tokens with made-up key ids cause at most one fetch per spacing.
    let fakes: Vec<String> = (0..20)
        .map(|i| {
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some(format!("fake-{i}"));
            jsonwebtoken::encode(&header, &issuer.claims("x"), &unknown.encoding).unwrap()
        })
        .collect();
    let before = issuer.state.lock().unwrap().fetches;
    let started = std::time::Instant::now();
    for fake in &fakes {
        assert_eq!(create(&s, fake).await.0, 401);
    }
    let allowed = 1 + (started.elapsed().as_secs_f64() / spacing.as_secs_f64()) as usize;
    let caused = issuer.state.lock().unwrap().fetches - before;
    assert!(
        caused <= allowed,
        "{caused} fetches for 20 unknown key ids (at most {allowed} in the time they took)"
    );
}

#[tokio::test]
async fn an_issuer_down_at_start_means_503_until_its_keys_load() {
    let rsa = rsa_key("rsa-1");
    let issuer = Issuer::start(vec![rsa.jwk.clone()], true).await;
    let settings = issuer.settings();
    let s = TestServer::start_with(|c| c.jwt = Some(settings)).await;
    let token = rsa.sign(&issuer.claims("alice"));
    let r = s
        .client
        .post(s.url("/api/files/upload"))
        .bearer_auth(&token)
        .json(&json!({"filename": "a.txt", "contentType": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unavailable", "{v}");

    issuer.state.lock().unwrap().down = false;
    tokio::time::sleep(keyhole::jwt::RETRY_SPACING + Duration::from_millis(100)).await;
    assert_eq!(create(&s, &token).await.0, 200);
}

/// Calls the Cognito stand-in (moto) at `endpoint`; moto routes on the `Host` and checks no
/// signature.
async fn cognito(endpoint: &str, action: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/", endpoint.trim_end_matches('/')))
        .header("host", "cognito-idp.us-east-1.amazonaws.com")
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AWSCognitoIdentityProviderService.{action}"),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{action}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The ID and access tokens a Cognito user pool (moto's) issues are accepted as Cognito's would
/// be: the ID token by `aud`, the access token by `client_id`, both acting as the user's `sub`;
/// another app client's tokens are refused. The pool's keys come from its JWKS, which moto
/// serves only under Cognito's host name, so the test relays them from 127.0.0.1.
#[tokio::test]
async fn a_cognito_user_pools_tokens_are_accepted_for_its_app_client() {
    let Ok(endpoint) = std::env::var("KEYHOLE_TEST_COGNITO_ENDPOINT") else {
        eprintln!("skipping Cognito tokens: KEYHOLE_TEST_COGNITO_ENDPOINT is not set (scripts/test-services.sh)");
        return;
    };
    let pool = cognito(
        &endpoint,
        "CreateUserPool",
        json!({"PoolName": format!("keyhole-{}", common::run_id())}),
    )
    .await["UserPool"]["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = |name: &str| {
        let (endpoint, pool, name) = (endpoint.clone(), pool.clone(), name.to_owned());
        async move {
            cognito(
                &endpoint,
                "CreateUserPoolClient",
                json!({"UserPoolId": pool, "ClientName": name,
                    "ExplicitAuthFlows": ["ADMIN_NO_SRP_AUTH"]}),
            )
            .await["UserPoolClient"]["ClientId"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (app, other_app) = (client("keyhole").await, client("other").await);
    cognito(
        &endpoint,
        "AdminCreateUser",
        json!({"UserPoolId": pool, "Username": "alice", "MessageAction": "SUPPRESS"}),
    )
    .await;
    cognito(
        &endpoint,
        "AdminSetUserPassword",
        json!({"UserPoolId": pool, "Username": "alice", "Password": "Corr3ct-horse!",
            "Permanent": true}),
    )
    .await;
    let login = |client_id: String| {
        let (endpoint, pool) = (endpoint.clone(), pool.clone());
        async move {
            cognito(
                &endpoint,
                "AdminInitiateAuth",
                json!({"UserPoolId": pool, "ClientId": client_id,
                    "AuthFlow": "ADMIN_NO_SRP_AUTH",
                    "AuthParameters": {"USERNAME": "alice", "PASSWORD": "Corr3ct-horse!"}}),
            )
            .await["AuthenticationResult"]
                .clone()
        }
    };
    let tokens = login(app.clone()).await;
    let other_tokens = login(other_app).await;
    let jwks: Value = reqwest::Client::new()
        .get(format!(
            "{}/{pool}/.well-known/jwks.json",
            endpoint.trim_end_matches('/')
        ))
        .header("host", "cognito-idp.us-east-1.amazonaws.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let relay = Issuer::start(jwks["keys"].as_array().unwrap().clone(), false).await;

    let settings = JwtSettings {
        issuer: format!("https://cognito-idp.us-east-1.amazonaws.com/{pool}"),
        audiences: vec![app],
        jwks_url: Some(format!("{}/jwks.json", relay.url)),
        refresh: Duration::from_secs(3600),
        refetch_spacing: Duration::from_millis(300),
    };
    let s = TestServer::start_with(|c| c.jwt = Some(settings)).await;
    wait_for_fetches(&relay, 1).await;

    let id_token = tokens["IdToken"].as_str().unwrap();
    let access_token = tokens["AccessToken"].as_str().unwrap();
    let (status, v) = create(&s, id_token).await;
    assert_eq!(status, 200, "ID token: {v}");
    let file = v["fileId"].as_str().unwrap().to_owned();
    // The access token is the same user: the same principal, the same files.
    assert_eq!(listed(&s, access_token).await, vec![file]);
    for token in ["IdToken", "AccessToken"] {
        let (status, v) = create(&s, other_tokens[token].as_str().unwrap()).await;
        assert_eq!(status, 401, "another app client's {token}: {v}");
    }
}

/// While the issuer does not answer at all (a black-holed address), concurrent JWT requests share
/// one fetch and each answers 503 after a bounded wait, instead of queueing behind one fetch
/// after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_share_one_fetch_while_the_issuer_does_not_answer() {
    let (addr, held) = common::blackhole();
    let jwks_url = format!("http://{addr}/jwks.json");
    let rsa = rsa_key("rsa-1");
    let issuer_url = "https://idp.example".to_owned();
    let settings = JwtSettings {
        issuer: issuer_url.clone(),
        audiences: vec![AUDIENCE.to_owned()],
        jwks_url: Some(jwks_url),
        refresh: Duration::from_secs(3600),
        refetch_spacing: Duration::from_millis(300),
    };
    let s = TestServer::start_with(|c| c.jwt = Some(settings)).await;
    let now = now() as i64;
    let token = rsa.sign(&json!({"iss": issuer_url, "sub": "alice", "aud": AUDIENCE,
        "exp": now + 600}));
    let started = std::time::Instant::now();
    let answers = futures_util::future::join_all((0..4).map(|_| create(&s, &token))).await;
    let elapsed = started.elapsed();
    for (status, v) in answers {
        assert_eq!(status, 503, "{v}");
    }
    // One shared fetch: about one wait (5 s), where one fetch after another took 20 s.
    assert!(elapsed < Duration::from_secs(12), "took {elapsed:?}");
    assert!(
        held.lock().unwrap().len() <= 2,
        "{} connections to the issuer for 4 requests",
        held.lock().unwrap().len()
    );
}

/// Where no background refresh runs (the Lambda), keys past `refresh` are fetched again in the
/// background of a request, also after such a fetch failed: a withdrawn key stops working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_keys_are_fetched_again_after_a_failed_fetch_without_a_background_refresh() {
    let old = rsa_key("old");
    let new = rsa_key("new");
    let issuer = Issuer::start(vec![old.jwk.clone()], false).await;
    let mut settings = issuer.settings();
    settings.refresh = Duration::from_millis(300);
    settings.refetch_spacing = Duration::from_millis(300);
    let verifier = Arc::new(keyhole::jwt::JwtVerifier::new(settings).unwrap());
    verifier.refresh().await.unwrap();
    let token = old.sign(&issuer.claims("alice"));
    assert_eq!(verifier.verify(&token).await.as_deref(), Ok("alice"));

    // The issuer is down when the keys go stale: the background fetch fails, the keys held stay.
    issuer.state.lock().unwrap().down = true;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(verifier.verify(&token).await.as_deref(), Ok("alice"));
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Back, having withdrawn the old key: a later request's fetch picks that up.
    {
        let mut state = issuer.state.lock().unwrap();
        state.down = false;
        state.keys = vec![new.jwk.clone()];
    }
    let mut refused = false;
    for _ in 0..40 {
        if verifier.verify(&token).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the withdrawn key is still trusted");
    assert_eq!(
        verifier
            .verify(&new.sign(&issuer.claims("bob")))
            .await
            .as_deref(),
        Ok("bob")
    );
}

/// What a token carries reaches the log only bounded: a made-up `kid` (or `alg`) of thousands of
/// bytes is refused with a short reason, and a `kid` longer than any issuer's is refused before
/// it is looked up, so it causes no fetch of the keys either.
#[tokio::test]
async fn huge_key_ids_are_refused_with_a_short_reason_and_fetch_nothing() {
    use keyhole::jwt::JwtError;
    let rsa = rsa_key("rsa-1");
    let issuer = Issuer::start(vec![rsa.jwk.clone()], false).await;
    let settings = issuer.settings();
    let spacing = settings.refetch_spacing;
    let verifier = Arc::new(keyhole::jwt::JwtVerifier::new(settings).unwrap());
    verifier.refresh().await.unwrap();
    // Past the spacing: an unknown key id of an acceptable length would cause a fetch now.
    tokio::time::sleep(spacing + Duration::from_millis(100)).await;
    let fetches = || issuer.state.lock().unwrap().fetches;
    let before = fetches();
    let with_kid = |kid: String| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid);
        jsonwebtoken::encode(&header, &issuer.claims("alice"), &rsa.encoding).unwrap()
    };
    let refusal = |answer: Result<String, JwtError>| match answer {
        Err(JwtError::Invalid(why)) => why,
        other => panic!("not refused as invalid: {other:?}"),
    };

    for kid in ["k".repeat(10_000), "\u{1b}".repeat(300)] {
        let why = refusal(verifier.verify(&with_kid(kid)).await);
        assert!(why.len() < 512, "{} bytes: {why:.600}", why.len());
        assert!(why.contains("kid"), "{why}");
    }
    assert_eq!(
        fetches(),
        before,
        "an oversized kid caused a fetch of the keys"
    );

    // Short enough to look up, unknown: the fetch happens, the reason quotes a bounded part.
    let why = refusal(verifier.verify(&with_kid("\u{1b}".repeat(256))).await);
    assert!(why.len() < 512, "{} bytes: {why:.600}", why.len());
    assert!(why.contains("publishes no key"), "{why}");

    // An invented `alg` of 10,000 bytes is quoted by the parser's error: bounded too.
    let header = b64(json!({"alg": "X".repeat(10_000), "typ": "JWT"})
        .to_string()
        .as_bytes());
    let token = format!("{header}.{}.c2ln", b64(b"{}"));
    let why = refusal(verifier.verify(&token).await);
    assert!(why.len() < 512, "{} bytes: {why:.600}", why.len());
    assert!(why.starts_with("not a JWT"), "{why}");
}
