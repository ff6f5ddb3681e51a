//! One clock for the whole process: the provider stamps deltas with it and the client
//! reads them against it, so the difference is the time spent outside this process's
//! timers (the gateway, the loopback network, and this process's own scheduling).

use std::{sync::OnceLock, time::Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the first call in this process.
#[must_use]
pub fn now_us() -> u64 {
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_micros()).unwrap_or(u64::MAX)
}
