//! Waiting on events, not on the clock. A test here asserts what happened, never how fast:
//! it waits for the event it needs (a call reaching a fake, a row being recorded, a
//! connection closing), or holds something back behind a [`Gate`] for exactly as long as it
//! needs. [`PATIENCE`] only turns a wait that would never end into a failure naming what
//! did not happen.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::watch;

/// How long a wait may last before the test calls it a hang: far beyond what any passing
/// run needs, on a loaded machine too (milliseconds, or the few seconds of a timeout the
/// test configures). Not a measurement: nothing passes or fails on speed within it.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// `what`'s outcome; the test fails naming `what` if it has not come after [`PATIENCE`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: still waiting after {PATIENCE:?}"),
    }
}

/// Asks `probe` again (every 20 ms) until it has an answer: for state the test can only
/// read, such as a row the service records in the background or a report of `/readyz`.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(found) = probe().await {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A latch the test opens. What passes through it (a scripted agent, a fake's answer)
/// waits until then, so a turn stays open exactly until the test has done what it must
/// do meanwhile; and the test can wait until something has arrived at it.
#[derive(Clone)]
pub struct Gate(Arc<GateState>);

struct GateState {
    arrived: watch::Sender<usize>,
    open: watch::Sender<bool>,
}

impl Default for Gate {
    fn default() -> Self {
        Self(Arc::new(GateState {
            arrived: watch::channel(0).0,
            open: watch::channel(false).0,
        }))
    }
}

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts an arrival, then waits until the gate is open (at once if it already is).
    pub async fn pass(&self) {
        self.0.arrived.send_modify(|n| *n += 1);
        let mut open = self.0.open.subscribe();
        // The sender lives as long as `self`: the wait ends only by the gate opening.
        let _ = open.wait_for(|open| *open).await;
    }

    /// Lets everything waiting through, and everything that comes later.
    pub fn open(&self) {
        self.0.open.send_replace(true);
    }

    /// Whether the gate has been opened.
    pub fn is_open(&self) -> bool {
        *self.0.open.borrow()
    }

    /// How many have arrived so far, whether or not they have gone through.
    pub fn arrived(&self) -> usize {
        *self.0.arrived.borrow()
    }

    /// Waits until `n` have arrived in all.
    pub async fn arrivals(&self, n: usize) {
        let mut arrived = self.0.arrived.subscribe();
        let what = format!("{n} arrival(s) at the gate");
        let _ = within(&what, arrived.wait_for(|a| *a >= n)).await;
    }
}
