//! Control-plane authentication (static bearer tokens, stored as SHA-256 hashes, and bearer JWTs
//! of a configured issuer, [`crate::jwt`]) and the per-principal rate limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{RateLimit, TokenEntry};

/// Who is calling the API. Files belong to their principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal(pub String);

/// Attached to a request by whoever embeds the API router (the Lambda) when what authenticated
/// the caller before the router named no usable principal (a JWT without a usable `sub`): the
/// routes that need a principal answer 401 with this message. Clients cannot set request
/// extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused(pub String);

/// The principal used when no tokens and no JWT issuer are configured (loopback only).
pub const LOCAL_PRINCIPAL: &str = "local";

/// Why authentication failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// The token matches no configured hash, or is a JWT that is not acceptable.
    Invalid,
    /// The token is a JWT, and the issuer's keys could not be loaded yet.
    Unavailable,
}

/// Checks bearer tokens against their configured hashes in constant time, and JWTs against
/// their issuer's keys.
pub struct Authenticator {
    tokens: Vec<([u8; 32], String)>,
    jwt: Option<Arc<crate::jwt::JwtVerifier>>,
}

impl Authenticator {
    /// Builds from the configured entries (hex already validated by the config), and the JWT
    /// verifier when an issuer is configured.
    pub fn new(entries: &[TokenEntry], jwt: Option<Arc<crate::jwt::JwtVerifier>>) -> Self {
        let tokens = entries
            .iter()
            .filter_map(|e| {
                let bytes = hex::decode(&e.sha256).ok()?;
                let hash: [u8; 32] = bytes.try_into().ok()?;
                Some((hash, e.principal.clone()))
            })
            .collect();
        Authenticator { tokens, jwt }
    }

    /// The JWT verifier, when an issuer is configured.
    pub fn jwt(&self) -> Option<&Arc<crate::jwt::JwtVerifier>> {
        self.jwt.as_ref()
    }

    /// Whether any token or a JWT issuer is configured (otherwise everyone is
    /// [`LOCAL_PRINCIPAL`]).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || self.jwt.is_some()
    }

    /// The principal for an `Authorization` header value: a configured token's, or a JWT's
    /// `sub`. Keyhole's tokens have no `.`, JWTs two.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        if !self.enabled() {
            return Ok(Principal(LOCAL_PRINCIPAL.to_owned()));
        }
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = bearer_token(header).ok_or(AuthError::Missing)?;
        if let (Some(jwt), true) = (&self.jwt, token.contains('.')) {
            return match jwt.verify(token).await {
                Ok(sub) => Ok(Principal(sub)),
                Err(crate::jwt::JwtError::Unavailable(why)) => {
                    tracing::warn!(reason = %why, "JWT not checked: the issuer's keys are not loaded");
                    Err(AuthError::Unavailable)
                }
                Err(crate::jwt::JwtError::Invalid(why)) => {
                    tracing::info!(reason = %why, "JWT refused");
                    Err(AuthError::Invalid)
                }
            };
        }
        self.token_principal(token)
    }

    fn token_principal(&self, token: &str) -> Result<Principal, AuthError> {
        if token.is_empty() || token.len() > 1024 {
            return Err(AuthError::Invalid);
        }
        let presented = openssl::sha::sha256(token.as_bytes());
        // Compare against every entry so timing does not reveal which one matched.
        let mut found: Option<&str> = None;
        for (hash, principal) in &self.tokens {
            if openssl::memcmp::eq(hash, &presented) {
                found = Some(principal);
            }
        }
        found
            .map(|p| Principal(p.to_owned()))
            .ok_or(AuthError::Invalid)
    }
}

/// The credentials of an `Authorization: Bearer TOKEN` value. The scheme name is matched without
/// regard to case (RFC 9110 §11.1), so `bearer` and `BEARER` work as `Bearer` does; `None` for
/// another scheme.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, rest) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The host of an authority (`host[:port]`, `[v6]:port`), without port or brackets, as written;
/// `None` when it is not one.
fn authority_host(authority: &str) -> Option<&str> {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0,
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    (!host.is_empty()).then_some(host)
}

/// Whether a request's `Host` (`host[:port]`) names this server without help from DNS: a loopback
/// address (`127.0.0.0/8`, `[::1]`), `localhost` or a `*.localhost` name (browsers resolve those
/// to loopback themselves), or the host of `public_origin` (`scheme://host[:port]`), with any
/// port. A page whose own DNS name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name
/// and is not let through.
pub fn is_known_host(host: &str, public_origin: &str) -> bool {
    let Some(name) = authority_host(host.trim()) else {
        return false;
    };
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        if ip.to_canonical().is_loopback() {
            return true;
        }
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let public = public_origin
        .split_once("://")
        .and_then(|(_, authority)| authority_host(authority));
    public.is_some_and(|p| p.strip_suffix('.').unwrap_or(p).eq_ignore_ascii_case(&name))
}

/// A new random API token and the SHA-256 hex to configure for it. Fails only when the system's
/// random generator does.
pub fn generate_token() -> Result<(String, String), crate::ids::RandomError> {
    use base64::Engine;
    let bytes = crate::ids::random_bytes::<32>()?;
    let token = format!(
        "kh_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hex::encode(openssl::sha::sha256(token.as_bytes()));
    Ok((token, hash))
}

/// Links charged to a principal before they are signed ([`RateLimiter::charge_links`]).
/// Dropped before [`LinkCharge::signed`], it gives the tokens back.
#[must_use = "dropping the charge gives it back"]
pub struct LinkCharge<'a> {
    limiter: &'a RateLimiter,
    principal: String,
    tokens: f64,
}

impl LinkCharge<'_> {
    /// The links were signed and handed out: the charge stands.
    pub fn signed(mut self) {
        self.tokens = 0.0;
    }
}

impl Drop for LinkCharge<'_> {
    fn drop(&mut self) {
        if self.tokens > 0.0 {
            self.limiter
                .refund_at(&self.principal, self.tokens, Instant::now());
        }
    }
}

struct Bucket {
    tokens: f64,
    /// Up to when it has been refilled. It never goes back: callers read the clock before they
    /// take the lock, so an earlier instant can arrive after a later one, and going back to it
    /// would refill the time between them a second time.
    updated: Instant,
}

impl Bucket {
    /// The tokens it holds at `now`, refilled for the time since its last use (none for an
    /// instant before it).
    fn tokens_at(&self, now: Instant, burst: f64, rate: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }

    /// Refills up to `now` and moves the bucket's clock there, never back.
    fn refill(&mut self, now: Instant, burst: f64, rate: f64) {
        self.tokens = self.tokens_at(now, burst, rate);
        self.updated = self.updated.max(now);
    }

    /// Refills for the time since the last call, then takes one token or says how long to wait.
    fn take(&mut self, now: Instant, burst: f64, rate: f64) -> Result<(), Duration> {
        self.refill(now, burst, rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// Refills, then takes `n` tokens however few it holds, unless it is already below zero:
    /// then it says how long to wait for the debt and the request's own token. Below zero, the
    /// next [`Bucket::take`] waits until the debt is refilled.
    fn reserve(&mut self, now: Instant, burst: f64, rate: f64, n: f64) -> Result<(), Duration> {
        self.refill(now, burst, rate);
        if self.tokens < 0.0 {
            return Err(Duration::from_secs_f64((1.0 - self.tokens) / rate));
        }
        self.tokens -= n;
        Ok(())
    }

    /// Refills, then gives back `n` tokens reserved and not used (never past `burst`).
    fn refund(&mut self, now: Instant, burst: f64, rate: f64, n: f64) {
        self.refill(now, burst, rate);
        self.tokens = (self.tokens + n).min(burst);
    }
}

/// Buckets kept before the full ones are dropped (see [`RateLimiter`]).
const PRUNE_FROM: usize = 4096;

/// Token-bucket rate limit per principal. A full bucket is the same as none, so once the map
/// holds [`PRUNE_FROM`] buckets (or twice as many as the last pruning kept) the full ones are
/// dropped: principals come from tokens in `keyhole serve`, but from JWT subjects behind API
/// Gateway, where every user is one.
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    map: HashMap<String, Bucket>,
    prune_at: usize,
}

impl RateLimiter {
    /// A limiter with `limit.burst` capacity refilled at `limit.per_second`.
    pub fn new(limit: RateLimit) -> Self {
        RateLimiter {
            limit,
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                prune_at: PRUNE_FROM,
            }),
        }
    }

    /// Takes one token for `principal`, or says how long to wait.
    pub fn check(&self, principal: &str) -> Result<(), Duration> {
        self.check_at(principal, Instant::now())
    }

    /// Charges `principal`, before they are signed, for `links` links beyond the one its request
    /// paid for ([`RateLimiter::check`]): a multipart upload signs a link per part, up to 10,000,
    /// and the limit is on links as much as on requests. The bucket may go below zero, and the
    /// principal's next requests wait (429 with `Retry-After`) until it has refilled, so over time
    /// a principal signs `per_second` links on average. A principal already in debt is refused
    /// here (with the wait): requests admitted together cannot each sign 10,000 links before the
    /// first is charged. Dropping the charge before [`LinkCharge::signed`] gives it back, so a
    /// request that fails is not charged for links it did not sign.
    pub fn charge_links(&self, principal: &str, links: usize) -> Result<LinkCharge<'_>, Duration> {
        let extra = links.saturating_sub(1) as f64;
        if extra > 0.0 {
            self.with_bucket(principal, Instant::now(), |bucket, burst, rate| {
                bucket.reserve(Instant::now(), burst, rate, extra)
            })?;
        }
        Ok(LinkCharge {
            limiter: self,
            principal: principal.to_owned(),
            tokens: extra,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    #[cfg(test)]
    fn charge_at(&self, principal: &str, n: f64, now: Instant) -> Result<(), Duration> {
        // A principal pruned since its request was admitted (full again) is charged a full one.
        self.with_bucket(principal, now, |bucket, burst, rate| {
            bucket.reserve(now, burst, rate, n)
        })
    }

    fn refund_at(&self, principal: &str, n: f64, now: Instant) {
        self.with_bucket(principal, now, |bucket, burst, rate| {
            bucket.refund(now, burst, rate, n)
        });
    }

    fn check_at(&self, principal: &str, now: Instant) -> Result<(), Duration> {
        self.with_bucket(principal, now, |bucket, burst, rate| {
            bucket.take(now, burst, rate)
        })
    }

    /// Runs `use_bucket` on `principal`'s bucket (with the burst and the rate), a full one when
    /// it has none; making one first drops the full ones once the map has grown (see
    /// [`RateLimiter`]).
    fn with_bucket<T>(
        &self,
        principal: &str,
        now: Instant,
        use_bucket: impl FnOnce(&mut Bucket, f64, f64) -> T,
    ) -> T {
        let mut buckets = self.lock();
        let burst = f64::from(self.limit.burst);
        let rate = f64::from(self.limit.per_second);
        // Look up before inserting: the principal is copied once, not on every request.
        if let Some(bucket) = buckets.map.get_mut(principal) {
            return use_bucket(bucket, burst, rate);
        }
        if buckets.map.len() >= buckets.prune_at {
            buckets
                .map
                .retain(|_, b| b.tokens_at(now, burst, rate) < burst);
            buckets.prune_at = (buckets.map.len() * 2).max(PRUNE_FROM);
        }
        let mut bucket = Bucket {
            tokens: burst,
            updated: now,
        };
        let outcome = use_bucket(&mut bucket, burst, rate);
        buckets.map.insert(principal.to_owned(), bucket);
        outcome
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_authenticate_by_hash() {
        let (token, hash) = generate_token().unwrap();
        let auth = Authenticator::new(
            &[TokenEntry {
                principal: "alice".into(),
                sha256: hash,
            }],
            None,
        );
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {token}"))).await,
            Ok(Principal("alice".into()))
        );
        assert_eq!(auth.authenticate(None).await, Err(AuthError::Missing));
        assert_eq!(
            auth.authenticate(Some("Bearer nope")).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authenticate(Some(&token)).await,
            Err(AuthError::Missing)
        );
        // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            assert_eq!(
                auth.authenticate(Some(&format!("{scheme} {token}"))).await,
                Ok(Principal("alice".into())),
                "{scheme}"
            );
        }
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer {}", token.to_uppercase())))
                .await,
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.authenticate(Some(&format!("Basic {token}"))).await,
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.authenticate(Some(&format!("Bearer{token}"))).await,
            Err(AuthError::Missing)
        );
        let open = Authenticator::new(&[], None);
        assert_eq!(
            open.authenticate(None).await,
            Ok(Principal(LOCAL_PRINCIPAL.into()))
        );
    }

    #[test]
    fn known_hosts_are_loopback_localhost_or_the_public_host() {
        let public = "https://files.example.com";
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
            "localhost",
            "LocalHost:3000",
            "localhost.:3000",
            "app.localhost:8080",
            "files.example.com",
            "FILES.example.com:8443",
        ] {
            assert!(is_known_host(host, public), "{host}");
        }
        for host in [
            "",
            ":8080",
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "files.example.com.evil.example",
            "0.0.0.0:8080",
            "10.0.0.1",
            "[::2]:8080",
            "[::1",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_known_host(host, public), "{host}");
        }
        assert!(is_known_host("[2001:db8::1]:443", "https://[2001:db8::1]"));
        assert!(is_known_host("kh.internal", "http://kh.internal:8080"));
    }

    #[test]
    fn bucket_refills() {
        let rl = RateLimiter::new(RateLimit {
            burst: 2,
            per_second: 10,
        });
        let t0 = Instant::now();
        assert!(rl.check_at("a", t0).is_ok());
        assert!(rl.check_at("a", t0).is_ok());
        let wait = rl.check_at("a", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100));
        assert!(rl.check_at("b", t0).is_ok());
        assert!(rl.check_at("a", t0 + Duration::from_millis(150)).is_ok());
    }

    #[test]
    fn an_earlier_instant_arriving_late_does_not_refill_twice() {
        let rl = RateLimiter::new(RateLimit {
            burst: 10,
            per_second: 10,
        });
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        for _ in 0..10 {
            assert!(rl.check_at("a", t0).is_ok());
        }
        // 500 ms refill 5 tokens: 4 left.
        assert!(rl.check_at("a", t0 + ms(500)).is_ok());
        // A request that read the clock earlier and got the lock later: 3 left, and the bucket
        // stays refilled up to t0 + 500 ms.
        assert!(rl.check_at("a", t0 + ms(100)).is_ok());
        let admitted = (0..20)
            .filter(|_| rl.check_at("a", t0 + ms(500)).is_ok())
            .count();
        assert_eq!(admitted, 3, "t0+100ms..t0+500ms was refilled twice");
        // The same for a charge and a refund arriving late.
        assert!(rl.check_at("a", t0 + ms(1_000)).is_ok()); // 5 - 1 = 4
        rl.charge_at("a", 2.0, t0 + ms(600)).unwrap(); // 2
        rl.refund_at("a", 1.0, t0 + ms(700)); // 3
        let admitted = (0..20)
            .filter(|_| rl.check_at("a", t0 + ms(1_000)).is_ok())
            .count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn links_beyond_the_first_are_charged_as_debt() {
        let rl = RateLimiter::new(RateLimit {
            burst: 5,
            per_second: 100,
        });
        let t0 = Instant::now();
        // One request admitted, then 1,000 links signed for it: 5 - 1 - 999 = -995 tokens.
        assert!(rl.check_at("a", t0).is_ok());
        rl.charge_at("a", 999.0, t0).unwrap();
        let wait = rl.check_at("a", t0).unwrap_err();
        assert!(
            (wait.as_secs_f64() - 9.96).abs() < 0.01,
            "996 tokens to refill at 100/s: {wait:?}"
        );
        assert!(rl.check_at("a", t0 + Duration::from_millis(9_900)).is_err());
        assert!(rl.check_at("a", t0 + Duration::from_millis(9_970)).is_ok());
        // Others are not affected, and a single link costs nothing more.
        assert!(rl.check_at("b", t0).is_ok());
        rl.charge_links("b", 1).unwrap().signed();
        rl.charge_links("b", 0).unwrap().signed();
        for _ in 0..4 {
            assert!(rl.check_at("b", t0).is_ok());
        }
        // A principal charged without a bucket (pruned meanwhile) starts from a full one.
        rl.charge_at("c", 10_000.0, t0).unwrap();
        assert!(rl.check_at("c", t0 + Duration::from_secs(99)).is_err());
        assert!(rl.check_at("c", t0 + Duration::from_secs(100)).is_ok());
    }

    #[test]
    fn a_principal_in_debt_cannot_reserve_more_links_and_unsigned_links_are_given_back() {
        let rl = RateLimiter::new(RateLimit {
            burst: 100,
            per_second: 10,
        });
        // Two requests admitted together, each about to sign 1,000 links: the first puts the
        // bucket in debt (100 - 2 - 999), the second is refused rather than signing too.
        assert!(rl.check("a").is_ok());
        assert!(rl.check("a").is_ok());
        let first = rl
            .charge_links("a", 1_000)
            .expect("the first request signs");
        let wait = rl.charge_links("a", 1_000).err().expect("the second waits");
        assert!(
            (wait.as_secs_f64() - 90.2).abs() < 0.1,
            "902 tokens to refill at 10/s: {wait:?}"
        );
        // The first request fails before its links are out: its 999 tokens come back.
        drop(first);
        assert!(rl.charge_links("a", 1_000).is_ok_and(|c| {
            c.signed();
            true
        }));
        assert!(rl.check("a").is_err(), "signed links are charged");
        // A charge for one link (or none) never refuses, even in debt.
        rl.charge_links("a", 1).unwrap().signed();
        // Given back, a charge never fills the bucket past its burst.
        assert!(rl.check("b").is_ok());
        drop(rl.charge_links("b", 50).unwrap());
        for _ in 0..99 {
            assert!(rl.check("b").is_ok());
        }
        assert!(rl.check("b").is_err(), "burst 100, one taken before");
    }

    #[test]
    fn buckets_in_debt_are_not_pruned() {
        let rl = RateLimiter::new(RateLimit {
            burst: 2,
            per_second: 1,
        });
        let t0 = Instant::now();
        assert!(rl.check_at("debtor", t0).is_ok());
        rl.charge_links("debtor", 1_000).unwrap().signed();
        for i in 0..PRUNE_FROM - 2 {
            assert!(rl.check_at(&format!("user-{i}"), t0).is_ok());
        }
        // Ten seconds on the users' buckets are full; the 4,097th principal prunes them.
        let later = t0 + Duration::from_secs(10);
        assert!(rl.check_at("x", later).is_ok());
        assert!(rl.check_at("y", later).is_ok());
        assert_eq!(rl.len(), 3, "debtor, x and y are left");
        assert!(rl.check_at("debtor", later).is_err(), "still owes");
    }

    #[test]
    fn full_buckets_are_dropped_and_busy_ones_kept() {
        let rl = RateLimiter::new(RateLimit {
            burst: 2,
            per_second: 1,
        });
        let t0 = Instant::now();
        // A busy principal, empty now.
        assert!(rl.check_at("busy", t0).is_ok());
        assert!(rl.check_at("busy", t0).is_ok());
        for i in 0..100_000 {
            assert!(rl.check_at(&format!("user-{i}"), t0).is_ok());
        }
        assert_eq!(rl.len(), 100_001, "all in the same instant: none full yet");
        assert!(rl.check_at("busy", t0).is_err(), "still limited");
        // Ten seconds on, every bucket of the first 100,000 is full again: the next pruning
        // (when the map has doubled since the last) drops them.
        let later = t0 + Duration::from_secs(10);
        for i in 0..40_000 {
            assert!(rl.check_at(&format!("next-{i}"), later).is_ok());
        }
        assert_eq!(
            rl.len(),
            40_000,
            "the 100,001 full buckets went, the new ones stay"
        );
        // A pruned principal starts again with a full bucket.
        assert!(rl.check_at("user-1", later).is_ok());
    }
}
