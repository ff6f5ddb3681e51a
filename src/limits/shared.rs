//! The shared mode: one GCRA bucket per key in Redis, updated by a Lua script so that the
//! read-decide-write is atomic across instances, and timed by Redis's clock so instances
//! whose clocks disagree still agree on the bucket.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use redis::{aio::ConnectionManager, Script};
use tokio::sync::OnceCell;

/// GCRA: the key holds the "theoretical arrival time" (ms, Redis time) of the next request.
/// A request is allowed while that time is at most `(burst - 1) * interval` ahead of now;
/// it then moves it on by one interval. Returns 0 when allowed, else the ms to wait. The
/// key expires when the bucket is full again, so idle callers cost no memory.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return wait end
local next_tat = tat + interval
redis.call('SET', KEYS[1], next_tat, 'PX', next_tat - now)
return 0
";

/// After a Redis failure, this instance decides on its own for this long before trying
/// Redis again, so an outage costs each request nothing rather than a timeout.
const RETRY_REDIS_AFTER: Duration = Duration::from_secs(1);
/// At most one warning about Redis per this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Shared {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    script: Script,
    prefix: String,
    timeout: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` before which Redis is not tried (after a failure).
    skip_until_ms: AtomicU64,
    last_warned_ms: AtomicU64,
}

impl Shared {
    /// Checks the URL; connects on first use.
    pub(super) fn new(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("REDIS_URL is not a usable Redis URL: {e}"))?;
        Ok(Self {
            client,
            connection: OnceCell::new(),
            script: Script::new(GCRA),
            prefix: prefix.to_owned(),
            timeout,
            epoch: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
            last_warned_ms: AtomicU64::new(0),
        })
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `Ok(None)` allowed, `Ok(Some(wait))` refused, `Err(())` Redis could not decide.
    pub(super) async fn check(
        &self,
        kind: &str,
        key: &str,
        interval: Duration,
        burst: std::num::NonZeroU32,
    ) -> Result<Option<Duration>, ()> {
        if self.elapsed_ms() < self.skip_until_ms.load(Ordering::Relaxed) {
            return Err(());
        }
        let interval_ms = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let call = async {
            let connection = self
                .connection
                .get_or_try_init(|| self.client.get_connection_manager())
                .await?;
            let mut connection = connection.clone();
            self.script
                .key(format!("{}:{kind}:{key}", self.prefix))
                .arg(interval_ms)
                .arg(burst.get())
                .invoke_async::<u64>(&mut connection)
                .await
        };
        let outcome = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(wait_ms)) => {
                return Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
        };
        let now = self.elapsed_ms();
        let retry = u64::try_from(RETRY_REDIS_AFTER.as_millis()).unwrap_or(u64::MAX);
        self.skip_until_ms.store(now + retry, Ordering::Relaxed);
        let last = self.last_warned_ms.load(Ordering::Relaxed);
        let every = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
        if (last == 0 || now.saturating_sub(last) >= every)
            && self
                .last_warned_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %outcome, "Redis rate limiter unavailable; limiting per instance");
        }
        Err(())
    }
}
