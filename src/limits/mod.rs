//! Per-caller rate limits (token buckets): turns per user, `/session` per upstream
//! subject, `/refresh` per session family. Each limited operation has one call site, which
//! asks here before doing any work; over the limit it gets [`RateLimited`] (429 with
//! `Retry-After`).
//!
//! In-process buckets (`governor`, GCRA) by default; with `REDIS_URL` the same GCRA runs
//! as one Lua script in Redis, so every instance draws from one bucket. When Redis fails or
//! is slow, this instance decides with its own buckets rather than refusing or stalling
//! chat: abuse control should not be what takes the service down.

mod shared;

use std::{
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota};
use secrecy::ExposeSecret;

use crate::{
    auth::SessionSigner,
    config::{RateLimit, RateLimitSettings, SessionSettings},
    domain::UserId,
};

/// The caller is over a limit; retry after `retry_after`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimited {
    pub retry_after: Duration,
}

impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = retry_after_secs(self.retry_after);
        write!(f, "too many requests; retry in {secs} s")
    }
}

impl std::error::Error for RateLimited {}

/// Whole seconds for `Retry-After`, rounded up so a client that waits that long succeeds.
#[must_use]
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Which bucket family a key belongs to; part of the Redis key.
#[derive(Clone, Copy)]
enum Kind {
    Turn,
    Session,
    Refresh,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Turn => "turn",
            Self::Session => "session",
            Self::Refresh => "refresh",
        }
    }
}

/// Every limit of this instance. Cheap to clone.
#[derive(Clone)]
pub struct RateLimits {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    turns: Option<Bucket>,
    sessions: Option<Bucket>,
    refreshes: Option<Bucket>,
    shared: Option<shared::Shared>,
    /// Reads the session family out of a refresh token (signature checked, expiry not).
    signer: SessionSigner,
}

/// One limit: its rate for Redis, and this instance's buckets for the per-instance mode
/// (and as the fallback when Redis fails).
struct Bucket {
    interval: Duration,
    burst: NonZeroU32,
    local: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

/// Idle keys are dropped from memory every this many checks of a bucket.
const RETAIN_EVERY: u64 = 4096;

impl Bucket {
    fn new(limit: RateLimit) -> Option<Self> {
        let per_minute = NonZeroU32::new(limit.per_minute)?;
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let interval = Duration::from_secs(60) / per_minute.get();
        let quota = Quota::with_period(interval)?.allow_burst(burst);
        Some(Self {
            interval,
            burst,
            local: DefaultKeyedRateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        })
    }

    fn check_local(&self, key: &str) -> Result<(), RateLimited> {
        // A key whose bucket is full again holds no information; without this, every user
        // ever seen would stay in memory.
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.local.retain_recent();
            self.local.shrink_to_fit();
        }
        self.local
            .check_key(&key.to_owned())
            .map_err(|not_until| RateLimited {
                retry_after: not_until.wait_time_from(self.local.clock().now()),
            })
    }
}

impl RateLimits {
    /// The limits `settings` describe (none when disabled). Does not connect to Redis:
    /// that happens on first use, so a Redis outage does not stop the gateway starting.
    pub fn new(settings: &RateLimitSettings, session: &SessionSettings) -> anyhow::Result<Self> {
        if !settings.enabled {
            return Ok(Self::disabled());
        }
        let url = settings.redis_url.expose_secret();
        let shared = if url.is_empty() {
            None
        } else {
            Some(shared::Shared::new(
                url,
                &settings.redis_key_prefix,
                Duration::from_millis(settings.redis_timeout_ms),
            )?)
        };
        Ok(Self {
            inner: Some(Arc::new(Inner {
                turns: Bucket::new(settings.turns),
                sessions: Bucket::new(settings.sessions),
                refreshes: Bucket::new(settings.refreshes),
                shared,
                signer: SessionSigner::new(session),
            })),
        })
    }

    /// No limits at all.
    #[must_use]
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// A turn of `user` (`POST /messages`, the ChatKit requests that run one).
    pub async fn turn(&self, user: &UserId) -> Result<(), RateLimited> {
        self.check(Kind::Turn, user.as_str()).await
    }

    /// A new session for the upstream subject `user` (`POST /session`).
    pub async fn session_start(&self, user: &UserId) -> Result<(), RateLimited> {
        self.check(Kind::Session, user.as_str()).await
    }

    /// A refresh of the client_secret `token` (`POST /refresh`), counted against its
    /// session family. Only tokens we signed count: a forged one naming someone else's
    /// family must not use up that family's refreshes (the refresh refuses it anyway).
    pub async fn refresh(&self, token: &str) -> Result<(), RateLimited> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        match inner.signer.verify_ignoring_expiry(token) {
            Ok(claims) => self.check(Kind::Refresh, &claims.sid).await,
            Err(_) => Ok(()),
        }
    }

    async fn check(&self, kind: Kind, key: &str) -> Result<(), RateLimited> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let bucket = match kind {
            Kind::Turn => &inner.turns,
            Kind::Session => &inner.sessions,
            Kind::Refresh => &inner.refreshes,
        };
        let Some(bucket) = bucket else {
            return Ok(());
        };
        if let Some(shared) = &inner.shared {
            match shared
                .check(kind.as_str(), key, bucket.interval, bucket.burst)
                .await
            {
                Ok(None) => return Ok(()),
                Ok(Some(retry_after)) => return Err(RateLimited { retry_after }),
                // Logged (rate-limited) by `Shared`; decide here instead.
                Err(()) => {}
            }
        }
        let result = bucket.check_local(key);
        if result.is_err() {
            tracing::debug!(limit = kind.as_str(), "rate limited");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn local_bucket_allows_the_burst_then_refuses_per_key() {
        let bucket = Bucket::new(RateLimit {
            per_minute: 1,
            burst: 3,
        })
        .unwrap();
        for _ in 0..3 {
            assert!(bucket.check_local("a").is_ok());
        }
        let refused = bucket.check_local("a").unwrap_err();
        assert!(refused.retry_after > Duration::from_secs(50), "{refused:?}");
        assert!(bucket.check_local("b").is_ok(), "keys are independent");
    }

    #[test]
    fn zero_rate_turns_a_limit_off() {
        assert!(Bucket::new(RateLimit {
            per_minute: 0,
            burst: 5
        })
        .is_none());
    }
}
