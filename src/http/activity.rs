//! When a connection last moved a byte: stamped by its stream ([`super::connections`]),
//! read by its task in the accept loop ([`super::server`]) for the idle timeout.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::time::Instant;

/// When a connection last read or wrote a byte: written by its stream, read by its task.
#[derive(Clone, Debug)]
pub struct Activity {
    origin: Instant,
    /// Milliseconds from `origin`.
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    #[must_use]
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub(super) fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}
