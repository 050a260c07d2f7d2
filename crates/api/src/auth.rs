//! Bearer-key authentication with a short-lived cache, role checks, and the
//! per-key rate limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use muster_store::keys::hash_key;
use muster_store::{Principal, Role, Store};
use uuid::Uuid;

use crate::{ApiError, AppState};

/// How long a verified key is trusted without asking the database again. A
/// revoked key therefore stops working within this time.
const KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// Beyond this many cached keys the cache starts over, bounding memory.
const KEY_CACHE_MAX: usize = 10_000;

/// Verified keys, by hash.
#[derive(Debug, Default)]
pub struct KeyCache {
    verified: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl KeyCache {
    /// The principal of `key` if it was verified recently.
    fn cached(&self, key: &str) -> Option<Principal> {
        let hash = hash_key(key);
        self.lock()
            .get(&hash)
            .filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(principal, _)| principal.clone())
    }

    /// Looks `key` up in the store and remembers it.
    async fn verify(&self, store: &Store, key: &str) -> Result<Principal, ApiError> {
        let hash = hash_key(key);
        let principal = store
            .authenticate(key)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let mut cache = self.lock();
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(hash, (principal.clone(), Instant::now()));
        Ok(principal)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Principal, Instant)>> {
        // A panic while holding the lock leaves a consistent map.
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A token bucket per key `K` (an API key's id, a client address):
/// `rate` requests per second, bursts of `burst`. Per process: with N API
/// processes a key gets up to N times the rate, which is stated in the docs.
#[derive(Debug)]
pub struct RateLimiter<K = Uuid> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: std::hash::Hash + Eq> RateLimiter<K> {
    /// A limiter; `rate == 0` disables it.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` has a token left, without taking it.
    fn has_token(&self, key: &K) -> Result<(), u64> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        match buckets.get(key) {
            Some((tokens, last)) => {
                let tokens = (tokens + last.elapsed().as_secs_f64() * self.rate).min(self.burst);
                if tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(((1.0 - tokens) / self.rate).ceil().max(1.0) as u64)
                }
            }
            None => Ok(()),
        }
    }

    /// Takes one token for `key`, or says how many seconds until one is free.
    fn take(&self, key: K) -> Result<(), u64> {
        self.take_counted(key).map(|_| ())
    }

    /// Takes one token for `key` and says what is left, or how many
    /// seconds until one is free.
    fn take_counted(&self, key: K) -> Result<Quota, u64> {
        if self.rate == 0.0 {
            return Ok(Quota::Unlimited);
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(Quota::Left {
                remaining: tokens.floor() as u64,
                limit: self.burst as u64,
                // Seconds until the bucket is full again.
                reset: ((self.burst - *tokens) / self.rate).ceil() as u64,
            })
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// What a key has left of its rate limit after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// No limit is configured.
    Unlimited,
    /// `remaining` of `limit` requests may follow at once; the bucket is
    /// full again in `reset` seconds.
    Left {
        /// Requests that may follow now.
        remaining: u64,
        /// The burst size.
        limit: u64,
        /// Seconds until the bucket is full.
        reset: u64,
    },
}

/// Where the authentication of a request leaves its quota, for the
/// response's `RateLimit` headers (the observing middleware puts one in
/// every request and reads it afterwards).
#[derive(Debug, Clone, Default)]
pub struct QuotaSlot(pub std::sync::Arc<std::sync::OnceLock<Quota>>);

/// The authenticated caller of a `/v1` request.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl Auth {
    /// Refuses with 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<&Principal, ApiError> {
        if roles.contains(&self.0.role) {
            Ok(&self.0)
        } else {
            Err(ApiError::Forbidden(self.0.role.as_str()))
        }
    }
}

/// Roles that may run commands.
pub const WRITERS: &[Role] = &[Role::Admin, Role::Planner];
/// Roles that may read.
pub const READERS: &[Role] = &[Role::Admin, Role::Planner, Role::Analyst];

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(Auth(principal.clone()));
        }
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        let principal = match state.keys.cached(key) {
            Some(principal) => principal,
            None => authenticate(state, parts, key).await?,
        };
        let quota = state
            .limiter
            .take_counted(principal.key_id)
            .map_err(ApiError::RateLimited)?;
        if let Some(slot) = parts.extensions.get::<QuotaSlot>() {
            let _ = slot.0.set(quota);
        }
        tracing::Span::current().record("tenant", principal.tenant.as_str());
        parts.extensions.insert(principal.clone());
        Ok(Auth(principal))
    }
}

/// Looks up a key that is not cached, throttled by the client's address
/// first: a flood of made-up keys meets 429 too, instead of costing a
/// database lookup each. Only failed lookups spend the address's tokens,
/// and keys verified in the last minute skip this, so clients with valid
/// keys behind one address are held back only while the address keeps
/// failing, and only for a key not yet seen.
async fn authenticate(state: &AppState, parts: &Parts, key: &str) -> Result<Principal, ApiError> {
    let address = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(ip) = address {
        state
            .failed_auth_limiter
            .has_token(&ip)
            .map_err(ApiError::RateLimited)?;
    }
    match state.keys.verify(&state.store, key).await {
        Err(ApiError::Unauthorized) => {
            metrics::counter!("muster_auth_failures_total").increment(1);
            if let Some(ip) = address {
                state
                    .failed_auth_limiter
                    .take(ip)
                    .map_err(ApiError::RateLimited)?;
            }
            Err(ApiError::Unauthorized)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_refuses_with_a_retry_delay() {
        let limiter = RateLimiter::new(1, 3);
        let key = Uuid::now_v7();
        for _ in 0..3 {
            assert!(limiter.take(key).is_ok());
        }
        assert_eq!(limiter.take(key), Err(1));
        // Another key has its own bucket.
        assert!(limiter.take(Uuid::now_v7()).is_ok());
    }

    #[test]
    fn a_zero_rate_disables_the_limit() {
        let limiter = RateLimiter::new(0, 0);
        let key = Uuid::now_v7();
        assert!((0..1000).all(|_| limiter.take(key).is_ok()));
    }
}
