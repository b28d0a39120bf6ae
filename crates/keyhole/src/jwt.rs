//! Bearer JWTs checked against an issuer's published keys (JWKS): Amazon Cognito or any OpenID
//! Connect provider. A token is accepted when its signature verifies with a key the issuer
//! publishes (RS256/384/512, PS256/384/512, ES256/384), `iss` is the configured issuer, `aud`
//! (or Cognito access tokens' `client_id`) names a configured audience, `exp` has not passed and
//! `nbf` has (60 s leeway each way). The principal is the `sub` claim, as with API Gateway's JWT
//! authorizer in front of the Lambda.
//!
//! The keys are fetched at start and every `refresh` after, and again (at most once per
//! `refetch_spacing`, 30 s) when a token names a key id the set does not hold: an issuer that
//! rotates its keys is followed without a restart. The JWKS location comes from the issuer's
//! OpenID discovery document unless configured.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Least time between two fetches tokens with unknown key ids may cause (`refetch_spacing`'s
/// default): tokens naming made-up key ids cannot turn the server into a load on the issuer.
pub const REFETCH_SPACING: Duration = Duration::from_secs(30);
/// Least time between fetches while no key has been loaded at all (the issuer was down at start).
pub const RETRY_SPACING: Duration = Duration::from_secs(1);
/// How long each request of a fetch (the discovery document, then the keys) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a request waits for a fetch it needs (a token naming a key the set lacks); the fetch
/// itself goes on.
const FETCH_WAIT: Duration = Duration::from_secs(5);
/// Largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Leeway for `exp` and `nbf`, for clocks that disagree a little.
const LEEWAY_SECS: u64 = 60;
/// Longest token considered (a JWT with a few claims is under 2 KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest `kid` looked up: issuers' key ids are short (Cognito's are 44 characters), and a
/// longer one is refused before the key lookup and the fetch an unknown one may cause.
const MAX_KID_BYTES: usize = 256;
/// Most bytes of a token's `kid` written into a refusal's reason, which is logged per request.
const MAX_REASON_KID: usize = 64;
/// Most bytes of a parser's error written into a refusal's reason (it may quote the token).
const MAX_REASON_ERROR: usize = 256;

/// What `keyhole serve` is configured with (`jwt_issuer`, `jwt_audiences`, `jwt_jwks_url`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtSettings {
    /// The exact `iss` of accepted tokens, e.g.
    /// `https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123`.
    pub issuer: String,
    /// Accepted audiences: a token's `aud` (or `client_id`) must name one.
    pub audiences: Vec<String>,
    /// Where the keys are; `None`: the `jwks_uri` of `{issuer}/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// How often the keys are fetched again.
    pub refresh: Duration,
    /// Least time between fetches caused by tokens with unknown key ids ([`REFETCH_SPACING`];
    /// not a setting: tests shorten it).
    pub refetch_spacing: Duration,
}

/// Why a JWT was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// The token is not acceptable; the reason is logged, not sent.
    #[error("{0}")]
    Invalid(String),
    /// No key of the issuer could be loaded yet, so nothing can be verified: try again.
    #[error("the issuer's keys are not loaded: {0}")]
    Unavailable(String),
}

/// The claims Keyhole reads; the signature check covers the rest.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    client_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// A fetch of the issuer's keys, shared by everyone waiting for it.
type Fetch =
    futures_util::future::Shared<futures_util::future::BoxFuture<'static, Result<usize, String>>>;

/// One fetch at a time ([`JwtVerifier::start_fetch`]).
#[derive(Default)]
struct FetchGate {
    current: Option<Fetch>,
    started: Option<Instant>,
}

/// A JWKS document, its keys not yet read.
#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<serde_json::Value>,
}

/// A usable key of the issuer's set.
struct IssuerKey {
    key: DecodingKey,
    /// The algorithm the key set pins the key to, if it says.
    algorithm: Option<Algorithm>,
}

/// The issuer's keys as last fetched.
#[derive(Default)]
struct KeySet {
    /// When they were fetched; `None` before the first fetch.
    fetched: Option<Instant>,
    by_id: HashMap<String, Arc<IssuerKey>>,
    /// Keys the set publishes without an id (used only for tokens without `kid`, and only when
    /// the set holds exactly one key).
    anonymous: Vec<Arc<IssuerKey>>,
}

/// Verifies bearer JWTs; shared by every request.
pub struct JwtVerifier {
    settings: JwtSettings,
    http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// The fetch in progress or last started: one at a time, shared by whoever needs it.
    gate: std::sync::Mutex<FetchGate>,
}

impl JwtVerifier {
    /// A verifier with no keys yet; [`JwtVerifier::refresh`] loads them.
    pub fn new(settings: JwtSettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(JwtVerifier {
            settings,
            http,
            keys: RwLock::new(Arc::default()),
            gate: std::sync::Mutex::new(FetchGate::default()),
        })
    }

    /// Fetches the issuer's keys now (or joins the fetch in progress) and replaces the set; on
    /// failure the keys held stay.
    pub async fn refresh(self: &Arc<Self>) -> Result<usize, String> {
        match self.start_fetch(Duration::ZERO) {
            Some(fetch) => fetch.await,
            None => Err("a fetch was just made".into()),
        }
    }

    /// The fetch in progress, or a new one unless the last started less than `spacing` ago
    /// (then `None`). The fetch runs as a task of its own: a request that stops waiting (its
    /// client went away) does not cancel it, and everyone who waits shares its one result.
    fn start_fetch(self: &Arc<Self>, spacing: Duration) -> Option<Fetch> {
        let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fetch) = &gate.current {
            if fetch.peek().is_none() {
                return Some(fetch.clone());
            }
        }
        if gate.started.is_some_and(|t| t.elapsed() < spacing) {
            return None;
        }
        let verifier = self.clone();
        let fetch = async move { verifier.fetch_and_store().await }
            .boxed()
            .shared();
        // Driven to its end by a task of its own, whether anyone waits for it or not: its
        // result (`peek`) then tells later callers it is over.
        tokio::spawn(fetch.clone());
        gate.current = Some(fetch.clone());
        gate.started = Some(Instant::now());
        Some(fetch)
    }

    /// Starts a fetch (spaced by `spacing`) and waits for it, at most [`FETCH_WAIT`].
    async fn fetch_and_wait(self: &Arc<Self>, spacing: Duration) {
        if let Some(fetch) = self.start_fetch(spacing) {
            match tokio::time::timeout(FETCH_WAIT, fetch).await {
                Ok(Err(e)) => {
                    tracing::warn!(issuer = %self.settings.issuer, error = %e, "fetching the JWT issuer's keys failed")
                }
                Err(_) => tracing::warn!(issuer = %self.settings.issuer,
                    "fetching the JWT issuer's keys is taking longer than {FETCH_WAIT:?}"),
                Ok(Ok(_)) => {}
            }
        }
    }

    async fn fetch_and_store(&self) -> Result<usize, String> {
        let set = self.fetch().await?;
        let count = set.by_id.len() + set.anonymous.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(count)
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let jwks_url = match &self.settings.jwks_url {
            Some(url) => url.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.settings.issuer.trim_end_matches('/')
                );
                let doc: serde_json::Value = self.get_json(&url).await?;
                if doc.get("issuer").and_then(|v| v.as_str()) != Some(&self.settings.issuer) {
                    return Err(format!(
                        "the discovery document at {url} names another issuer ({}); \
                         set jwt_issuer to the issuer exactly as the provider writes it",
                        doc.get("issuer").unwrap_or(&serde_json::Value::Null)
                    ));
                }
                let jwks = doc
                    .get("jwks_uri")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| format!("the discovery document at {url} has no jwks_uri"))?;
                check_fetch_url(jwks).map_err(|e| format!("jwks_uri {jwks}: {e}"))?;
                jwks.to_owned()
            }
        };
        // Key by key: a key of a kind this version does not know is skipped, not fatal.
        let set: RawKeySet = self.get_json(&jwks_url).await?;
        let mut keys = KeySet {
            fetched: Some(Instant::now()),
            ..KeySet::default()
        };
        let mut skipped = 0;
        for raw in set.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
                skipped += 1;
                continue;
            };
            match usable(&jwk) {
                Some(key) => match &jwk.common.key_id {
                    Some(id) => {
                        keys.by_id.insert(id.clone(), Arc::new(key));
                    }
                    None => keys.anonymous.push(Arc::new(key)),
                },
                None => skipped += 1,
            }
        }
        if keys.by_id.is_empty() && keys.anonymous.is_empty() {
            return Err(format!(
                "{jwks_url} holds no signing key Keyhole can use ({skipped} skipped)"
            ));
        }
        tracing::info!(
            issuer = %self.settings.issuer,
            keys = keys.by_id.len() + keys.anonymous.len(),
            skipped,
            "loaded the JWT issuer's keys"
        );
        Ok(keys)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not the JSON expected: {e}"))
    }

    /// The principal (`sub`) of an acceptable token.
    pub async fn verify(self: &Arc<Self>, token: &str) -> Result<String, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Invalid(
                "longer than any JWT Keyhole accepts".into(),
            ));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            JwtError::Invalid(format!("not a JWT: {}", clipped(&e, MAX_REASON_ERROR)))
        })?;
        if header
            .kid
            .as_ref()
            .is_some_and(|kid| kid.len() > MAX_KID_BYTES)
        {
            return Err(JwtError::Invalid(format!(
                "kid is longer than {MAX_KID_BYTES} bytes"
            )));
        }
        if !ALGORITHMS.contains(&header.alg) {
            return Err(JwtError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        // Keys past their refresh interval are fetched again first (an issuer that withdrew a
        // key is followed even where no background refresh runs, as in the Lambda). Should the
        // issuer be down, the keys held stay in use, and requests do not queue behind retries.
        let stale = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .fetched
            .is_some_and(|t| t.elapsed() > self.settings.refresh);
        if stale {
            // In the background: this request goes on with the keys held.
            self.start_fetch(self.settings.refetch_spacing);
        }
        let key = match self.key_for(header.kid.as_deref()) {
            Some(key) => key,
            None => {
                let spacing = if self.loaded() {
                    self.settings.refetch_spacing
                } else {
                    RETRY_SPACING
                };
                self.fetch_and_wait(spacing).await;
                match self.key_for(header.kid.as_deref()) {
                    Some(key) => key,
                    None if !self.loaded() => {
                        return Err(JwtError::Unavailable(format!(
                            "no key of {} could be fetched yet",
                            self.settings.issuer
                        )))
                    }
                    None => {
                        return Err(JwtError::Invalid(match header.kid {
                            Some(kid) => {
                                let shown = crate::http::clip(&kid, MAX_REASON_KID);
                                let cut = if shown.len() < kid.len() { "..." } else { "" };
                                format!("the issuer publishes no key {shown:?}{cut}")
                            }
                            None => "no kid, and the issuer publishes more than one key".into(),
                        }))
                    }
                }
            }
        };
        if key.algorithm.is_some_and(|a| a != header.alg) {
            return Err(JwtError::Invalid(format!(
                "algorithm {:?} is not the one the key is published for",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.validate_aud = false; // `aud` or `client_id`, checked below
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| JwtError::Invalid(format!("rejected: {}", clipped(&e, MAX_REASON_ERROR))))?
            .claims;
        let audiences: Vec<&str> = match &claims.aud {
            Some(Audience::One(a)) => vec![a.as_str()],
            Some(Audience::Many(list)) => list.iter().map(String::as_str).collect(),
            None => Vec::new(),
        };
        // `client_id` stands in only where `aud` is absent (Cognito's access tokens): a token
        // whose `aud` names another API was not issued for this one, whoever its client.
        let audience_ok = if audiences.is_empty() {
            claims
                .client_id
                .as_deref()
                .is_some_and(|id| self.settings.audiences.iter().any(|c| c == id))
        } else {
            audiences
                .iter()
                .any(|a| self.settings.audiences.iter().any(|c| c == a))
        };
        if !audience_ok {
            return Err(JwtError::Invalid(
                "neither aud nor client_id names a configured audience".into(),
            ));
        }
        let sub = claims.sub.unwrap_or_default();
        if sub.is_empty() || sub.len() > 128 || sub.chars().any(char::is_control) {
            return Err(JwtError::Invalid(
                "sub is empty, longer than 128 bytes or has control characters".into(),
            ));
        }
        Ok(sub)
    }

    /// Whether a key set was ever loaded (only a successful fetch replaces the empty one).
    fn loaded(&self) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .fetched
            .is_some()
    }

    fn key_for(&self, kid: Option<&str>) -> Option<Arc<IssuerKey>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
        match kid {
            Some(kid) => keys.by_id.get(kid).cloned(),
            None if keys.by_id.len() + keys.anonymous.len() == 1 => keys
                .anonymous
                .first()
                .or_else(|| keys.by_id.values().next())
                .cloned(),
            None => None,
        }
    }
}

/// `text` for a refusal's reason: at most `max` bytes of it ([`crate::http::clip`]), `...` marking
/// a cut. Tokens are the client's: what they carry must not make every log line about them long.
fn clipped(text: &impl std::fmt::Display, max: usize) -> String {
    let text = text.to_string();
    let kept = crate::http::clip(&text, max);
    if kept.len() == text.len() {
        text
    } else {
        format!("{kept}...")
    }
}

/// The asymmetric algorithms accepted. HMAC (`HS*`) would make the issuer's public key a shared
/// secret, and `none` signs nothing.
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// A key of the set that can verify tokens: a signing key (`use` absent or `sig`) of a kind
/// [`ALGORITHMS`] covers.
fn usable(jwk: &Jwk) -> Option<IssuerKey> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let algorithm = match jwk.common.key_algorithm {
        Some(a) => {
            let a: Algorithm = a.to_string().parse().ok()?;
            if !ALGORITHMS.contains(&a) {
                return None;
            }
            Some(a)
        }
        None => None,
    };
    // Only public keys: a symmetric key in a published set is a secret, and no JWT signed with
    // one is accepted (`HS*` is not in ALGORITHMS either).
    if !matches!(
        jwk.algorithm,
        AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_)
    ) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(IssuerKey { key, algorithm })
}

/// Whether keys may be fetched from `url`: `https`, or `http` to a loopback address (a provider
/// on the same machine, tests). Keys fetched over plain HTTP from elsewhere could be anyone's.
pub fn check_fetch_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err("must be https (plain http only to a loopback address)".into())
            }
        }
        _ => Err("must be an https URL".into()),
    }
}

/// Starts the background refresh of `keyhole serve`: now (then every [`REFETCH_SPACING`] until
/// it works), then every `refresh`, so requests rarely wait for a fetch.
pub fn spawn_refresh(verifier: Arc<JwtVerifier>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let wait = match verifier.refresh().await {
                Ok(_) => verifier.settings.refresh,
                Err(e) => {
                    tracing::error!(issuer = %verifier.settings.issuer, error = %e,
                        "fetching the JWT issuer's keys failed; the keys held stay in use (JWTs get 503 while none has loaded)");
                    REFETCH_SPACING
                }
            };
            tokio::time::sleep(wait).await;
        }
    })
}
