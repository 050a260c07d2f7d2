//! Bearer-key authentication with a short-lived cache, role checks, and the
//! per-key rate limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use muster_store::keys::hash_key;
use muster_store::{Principal, Role, Store};
use uuid::Uuid;

use crate::{ApiError, AppState};

/// How long a verified key is trusted without asking the database again. A
/// revoked key therefore stops working within this time.
const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// Beyond this many cached keys the cache starts over, bounding memory.
const KEY_CACHE_MAX: usize = 10_000;

/// Verified keys, by hash.
#[derive(Debug, Default)]
pub struct KeyCache {
    verified: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl KeyCache {
    async fn authenticate(&self, store: &Store, key: &str) -> Result<Principal, ApiError> {
        let hash = hash_key(key);
        if let Some((principal, at)) = self.lock().get(&hash)
            && at.elapsed() < KEY_CACHE_TTL
        {
            return Ok(principal.clone());
        }
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

/// A token bucket per API key: `rate` requests per second, bursts of
/// `burst`. Per process: with N API processes a key gets up to N times the
/// rate, which is stated in the docs.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<Uuid, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter; `rate == 0` disables it.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how many seconds until one is free.
    fn take(&self, key: Uuid) -> Result<(), u64> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

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
        let principal = state.keys.authenticate(&state.store, key).await?;
        state
            .limiter
            .take(principal.key_id)
            .map_err(ApiError::RateLimited)?;
        tracing::Span::current().record("tenant", principal.tenant.as_str());
        parts.extensions.insert(principal.clone());
        Ok(Auth(principal))
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
