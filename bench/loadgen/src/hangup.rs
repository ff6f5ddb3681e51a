//! Clients that hang up mid-answer (`--hang-up-fraction`), and what the fake provider saw
//! of it: one [`Ledger`] shared by the load clients and the fake provider (one process,
//! one [`clock`]). A client that hangs up writes the instant it dropped its stream; the
//! provider's call for that turn (matched by the turn's text, see [`turn_index`]) writes
//! when its response body was dropped, i.e. when the provider's server saw the gateway's
//! side of the call closed (over HTTP/1.1 the connection, over HTTP/2 an `RST_STREAM`).
//!
//! The fake's HTTP/2 server sees a reset stream at once. Its HTTP/1.1 server (poem, on
//! hyper-util's connection) does not read while it streams a response: a connection the
//! gateway has closed stays in `CLOSE_WAIT` until the next write, which the gateway's side
//! answers with a reset, and the write after that fails. So a call whose client has hung
//! up writes an SSE comment every `--probe-ms` (for at most [`PROBE_WINDOW`]), the way a
//! model streaming tokens would write: over HTTP/1.1 the call is then seen to end at most
//! about two probes after the gateway closed it.

use std::{
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
    time::Duration,
};

use tokio::sync::Notify;

use crate::clock;

/// How long after its client hung up a call keeps probing (past the 1 s the report holds
/// the gateway to; a call still open by then is counted as such whatever comes after).
pub const PROBE_WINDOW: Duration = Duration::from_millis(1500);

/// The report's bound: a call still open this long after its client left counts as left
/// running.
pub const LEFT_RUNNING_US: u64 = 1_000_000;

/// Whether turn `index` is one of the clients that hang up: `fraction` of them, spread
/// evenly (with 0.5, every odd-numbered turn).
#[must_use]
pub fn hangs_up(index: usize, fraction: f64) -> bool {
    #[allow(clippy::cast_precision_loss)] // turn numbers are far below 2^52
    let (this, next) = (index as f64 * fraction, (index + 1) as f64 * fraction);
    next.floor() > this.floor()
}

/// The turn a provider request belongs to: the number in the last `bench turn <n>` of its
/// body (the load clients' message text).
#[must_use]
pub fn turn_index(body: &str) -> Option<usize> {
    const MARK: &str = "bench turn ";
    let at = body.rfind(MARK)? + MARK.len();
    let digits: &str = &body[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// One turn's record. Instants are µs on [`clock`]; 0 means "not yet" (the clock starts
/// before the gateway does, so no event of a turn falls on 0).
#[derive(Default)]
struct Slot {
    hung_up_us: AtomicU64,
    /// When the last of the turn's provider calls ended.
    ended_us: AtomicU64,
    calls: AtomicU32,
    open: AtomicU32,
    /// Calls that wrote their whole answer (`[DONE]`).
    finished: AtomicU32,
    /// Calls that started after the client had hung up (a retry nobody reads).
    started_after: AtomicU32,
    hang_up: Notify,
}

/// Per turn: its client's hang-up and its provider calls.
pub struct Ledger {
    slots: Vec<Slot>,
}

impl Ledger {
    #[must_use]
    pub fn new(turns: usize) -> Self {
        Self {
            slots: (0..turns).map(|_| Slot::default()).collect(),
        }
    }

    /// The client of turn `index` has dropped its stream, now.
    pub fn hang_up(&self, index: usize) {
        if let Some(slot) = self.slots.get(index) {
            slot.hung_up_us.store(clock::now_us(), Ordering::Relaxed);
            // A permit if the call is not waiting right now: it is not lost.
            slot.hang_up.notify_one();
        }
    }

    #[must_use]
    pub fn has_hung_up(&self, index: usize) -> bool {
        self.slots
            .get(index)
            .is_some_and(|s| s.hung_up_us.load(Ordering::Relaxed) != 0)
    }

    /// Resolves once the client of turn `index` hangs up (at once if it already has and
    /// nobody has waited for it since); never for a turn out of range.
    pub async fn hung_up(&self, index: usize) {
        match self.slots.get(index) {
            Some(slot) => slot.hang_up.notified().await,
            None => std::future::pending().await,
        }
    }

    /// A provider call for turn `index` has started; `false` if there is no such turn.
    pub fn call_started(&self, index: usize) -> bool {
        let Some(slot) = self.slots.get(index) else {
            return false;
        };
        slot.calls.fetch_add(1, Ordering::Relaxed);
        slot.open.fetch_add(1, Ordering::Relaxed);
        if slot.hung_up_us.load(Ordering::Relaxed) != 0 {
            slot.started_after.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// A provider call for turn `index` has ended (its body dropped), now.
    pub fn call_ended(&self, index: usize, finished: bool) {
        if let Some(slot) = self.slots.get(index) {
            slot.ended_us.fetch_max(clock::now_us(), Ordering::Relaxed);
            slot.open.fetch_sub(1, Ordering::Relaxed);
            if finished {
                slot.finished.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// What the provider saw of the turns whose client hung up, as of now.
    #[must_use]
    pub fn summary(&self) -> Summary {
        summarize(self.slots.iter().map(|s| Record {
            hung_up_us: s.hung_up_us.load(Ordering::Relaxed),
            ended_us: s.ended_us.load(Ordering::Relaxed),
            calls: s.calls.load(Ordering::Relaxed),
            open: s.open.load(Ordering::Relaxed),
            finished: s.finished.load(Ordering::Relaxed),
            started_after: s.started_after.load(Ordering::Relaxed),
        }))
    }
}

/// One turn's figures, read out of its [`Slot`].
#[derive(Clone, Copy, Default)]
struct Record {
    hung_up_us: u64,
    ended_us: u64,
    calls: u32,
    open: u32,
    finished: u32,
    started_after: u32,
}

/// The turns whose client hung up, from the provider's side.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Turns whose client hung up.
    pub hung_up: usize,
    /// Of those, turns with no provider call at all (the text did not reach it).
    pub without_call: usize,
    /// Per such turn whose calls have all ended: µs from the hang-up to the end of its
    /// last call, sorted.
    pub ended_after_us: Vec<u32>,
    /// The same, each with its hang-up instant (µs on [`clock`]), in turn order.
    pub by_hang_up: Vec<(u64, u32)>,
    /// Turns with a call still open 1 s after the hang-up (ended later, or still open).
    pub open_after_1s: usize,
    /// Turns with a call open right now.
    pub still_open: usize,
    /// Turns whose provider wrote the whole answer although the client had gone.
    pub finished_anyway: usize,
    /// Provider calls started after their client had hung up.
    pub started_after: u32,
}

fn summarize(records: impl Iterator<Item = Record>) -> Summary {
    let mut s = Summary::default();
    for r in records.filter(|r| r.hung_up_us != 0) {
        s.hung_up += 1;
        s.started_after += r.started_after;
        if r.calls == 0 {
            s.without_call += 1;
            continue;
        }
        if r.finished > 0 {
            s.finished_anyway += 1;
        }
        if r.open > 0 {
            s.still_open += 1;
            s.open_after_1s += 1;
            continue;
        }
        let after = r.ended_us.saturating_sub(r.hung_up_us);
        if after > LEFT_RUNNING_US {
            s.open_after_1s += 1;
        }
        let after = u32::try_from(after).unwrap_or(u32::MAX);
        s.ended_after_us.push(after);
        s.by_hang_up.push((r.hung_up_us, after));
    }
    s.ended_after_us.sort_unstable();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fraction_is_spread_evenly() {
        let half: Vec<usize> = (0..8).filter(|&i| hangs_up(i, 0.5)).collect();
        assert_eq!(half, [1, 3, 5, 7]);
        assert_eq!((0..1000).filter(|&i| hangs_up(i, 0.5)).count(), 500);
        assert_eq!((0..1000).filter(|&i| hangs_up(i, 0.1)).count(), 100);
        assert_eq!((0..999).filter(|&i| hangs_up(i, 1.0 / 3.0)).count(), 333);
        assert_eq!((0..5000).filter(|&i| hangs_up(i, 1.0)).count(), 5000);
        assert!(!(0..5000).any(|i| hangs_up(i, 0.0)));
    }

    #[test]
    fn turns_are_found_in_the_request_text() {
        let body = r#"{"messages":[{"role":"system","content":"x"},{"role":"user","content":"bench turn 4217: tell me something"}]}"#;
        assert_eq!(turn_index(body), Some(4217));
        assert_eq!(turn_index("bench turn 3: a … bench turn 12"), Some(12));
        assert_eq!(turn_index("bench turn : x"), None);
        assert_eq!(turn_index("nothing here"), None);
    }

    #[test]
    fn calls_are_timed_from_the_hang_up() {
        let hung = |hung_up_us, ended_us, open, finished| Record {
            hung_up_us,
            ended_us,
            calls: 1,
            open,
            finished,
            started_after: 0,
        };
        let records = [
            // Stayed: not counted.
            Record {
                calls: 1,
                ended_us: 9,
                finished: 1,
                ..Record::default()
            },
            hung(1_000_000, 1_000_400, 0, 0),
            hung(2_000_000, 2_000_100, 0, 0),
            // Ended 1.5 s after its client left, having written everything.
            hung(3_000_000, 4_500_000, 0, 1),
            // Still streaming.
            hung(4_000_000, 0, 1, 0),
            // No call reached the provider.
            Record {
                hung_up_us: 5,
                ..Record::default()
            },
            // A retry after the hang-up, ended at once.
            Record {
                started_after: 1,
                calls: 2,
                ..hung(6_000_000, 6_000_050, 0, 0)
            },
        ];
        let s = summarize(records.into_iter());
        assert_eq!(
            s,
            Summary {
                hung_up: 6,
                without_call: 1,
                ended_after_us: vec![50, 100, 400, 1_500_000],
                by_hang_up: vec![
                    (1_000_000, 400),
                    (2_000_000, 100),
                    (3_000_000, 1_500_000),
                    (6_000_000, 50)
                ],
                open_after_1s: 2,
                still_open: 1,
                finished_anyway: 1,
                started_after: 1,
            }
        );
    }

    #[tokio::test]
    async fn a_hang_up_before_the_wait_is_not_lost() {
        let ledger = Ledger::new(2);
        assert!(ledger.call_started(1));
        assert!(!ledger.call_started(2));
        assert!(!ledger.has_hung_up(1));
        ledger.hang_up(1);
        assert!(ledger.has_hung_up(1));
        tokio::time::timeout(Duration::from_secs(1), ledger.hung_up(1))
            .await
            .unwrap();
        ledger.call_ended(1, false);
        let s = ledger.summary();
        assert_eq!((s.hung_up, s.still_open, s.ended_after_us.len()), (1, 0, 1));
    }
}
