//! The load client: N streamed turns, each on a new thread, over the REST endpoint
//! (`POST /api/chatkit/messages`, `Accept: text/event-stream`) or the ChatKit endpoint
//! (`POST /chatkit`, `threads.create`). Reads every SSE event, times each stamped delta,
//! and counts a turn as completed only when its final event arrives. A turn told to hang
//! up drops its stream (and so its connection) once it has read that many deltas, and
//! tells the [`Ledger`] when.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::{clock, hangup::Ledger, provider::stamps};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// `POST /api/chatkit/messages` with `Accept: text/event-stream`.
    Rest,
    /// `POST /chatkit` with `threads.create`.
    Chatkit,
    /// Straight to the fake provider, no gateway: the floor this harness itself adds to
    /// the latency on this machine at this load.
    Direct,
}

/// Why a turn failed.
#[derive(Debug)]
enum TurnError {
    Send(String),
    Status(u16, String),
    Broken(String),
    EndedEarly,
    ErrorEvent(String),
    Timeout,
}

impl TurnError {
    /// The group it is counted under in the report.
    fn kind(&self) -> String {
        match self {
            Self::Send(_) => "request failed".into(),
            Self::Status(code, _) => format!("HTTP {code}"),
            Self::Broken(_) => "stream broke".into(),
            Self::EndedEarly => "stream ended without its final event".into(),
            Self::ErrorEvent(_) => "error event".into(),
            Self::Timeout => "timed out".into(),
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Send(s) | Self::Status(_, s) | Self::Broken(s) | Self::ErrorEvent(s) => {
                s.chars().take(300).collect()
            }
            Self::EndedEarly | Self::Timeout => String::new(),
        }
    }
}

/// Everything measured over a run.
#[derive(Default)]
pub struct Results {
    /// Per stamped delta: when the provider wrote it (µs on [`clock`]) and how long it
    /// took to reach the client (µs).
    pub deltas: Vec<Timed>,
    /// Request sent → response head, per turn that got one, in µs.
    pub setup_us: Vec<u32>,
    pub completed: u64,
    /// Turns that hung up as planned, having read their deltas without an error.
    pub hung_up: u64,
    /// The thread of each turn that ended well, and whether it hung up.
    pub threads: Vec<(String, bool)>,
    /// Count and one example per kind of error.
    pub errors: BTreeMap<String, (u64, String)>,
}

impl Results {
    #[must_use]
    pub fn errored(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }
}

/// Shared between the turns, the sampler and the report.
#[derive(Default)]
pub struct Load {
    /// Streams whose response head has arrived and whose body has not ended.
    pub open: AtomicUsize,
    pub max_open: AtomicUsize,
    /// Turns that have ended, well or not.
    pub ended: AtomicUsize,
    pub results: Mutex<Results>,
}

/// Counts a stream as open for as long as it lives (also when a timeout drops it).
struct OpenGuard<'a>(&'a Load);

impl<'a> OpenGuard<'a> {
    fn new(load: &'a Load) -> Self {
        let now = load.open.fetch_add(1, Ordering::Relaxed) + 1;
        load.max_open.fetch_max(now, Ordering::Relaxed);
        Self(load)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one turn needs to know.
#[derive(Clone)]
pub struct Target {
    pub client: reqwest::Client,
    pub base: String,
    pub secret: String,
    pub protocol: Protocol,
    pub timeout: Duration,
    /// Where hang-ups are recorded, for the fake provider to see.
    pub ledger: Arc<Ledger>,
}

/// A delta's write instant and its latency, in µs.
pub type Timed = (u64, u32);

fn elapsed_us(since: u64) -> u32 {
    u32::try_from(clock::now_us().saturating_sub(since)).unwrap_or(u32::MAX)
}

fn timed(stamp: u64) -> Timed {
    (stamp, elapsed_us(stamp))
}

/// What an event means for the turn.
enum Seen {
    Nothing,
    /// The turn's thread.
    Thread(String),
    Final,
    Failed(String),
}

/// How a turn that did not fail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Completed,
    HungUp,
}

/// REST: `delta {text}` carries the stamps, `done` ends the turn, `error` fails it;
/// `message.recorded` names the thread.
fn rest_event(name: &str, data: &str, latencies: &mut Vec<Timed>) -> Seen {
    match name {
        "delta" => {
            latencies.extend(stamps(data).map(timed));
            Seen::Nothing
        }
        "message.recorded" => serde_json::from_str::<Value>(data)
            .ok()
            .and_then(|v| v["thread_id"].as_str().map(str::to_owned))
            .map_or(Seen::Nothing, Seen::Thread),
        "done" => Seen::Final,
        "error" => Seen::Failed(data.to_owned()),
        _ => Seen::Nothing,
    }
}

/// ChatKit: stamps ride in `thread.item.updated` text deltas; the assistant message's
/// `thread.item.done` ends the turn, an `error` event fails it; `thread.created` names the
/// thread.
fn chatkit_event(data: &str, latencies: &mut Vec<Timed>) -> Seen {
    // Text deltas are nearly every event: time them before any JSON parsing.
    if data.contains("assistant_message.content_part.text_delta") {
        latencies.extend(stamps(data).map(timed));
        return Seen::Nothing;
    }
    let Ok(event) = serde_json::from_str::<Value>(data) else {
        return Seen::Failed(format!("an event that is not JSON: {data}"));
    };
    match event.get("type").and_then(Value::as_str) {
        Some("thread.item.done") if event["item"]["type"] == "assistant_message" => Seen::Final,
        Some("thread.created") => event["thread"]["id"]
            .as_str()
            .map_or(Seen::Nothing, |id| Seen::Thread(id.to_owned())),
        Some("error") => Seen::Failed(data.to_owned()),
        _ => Seen::Nothing,
    }
}

/// The fake provider's own chunks: stamps in the content, `[DONE]` at the end.
fn direct_event(data: &str, latencies: &mut Vec<Timed>) -> Seen {
    if data == "[DONE]" {
        return Seen::Final;
    }
    latencies.extend(stamps(data).map(timed));
    Seen::Nothing
}

/// What one turn records as it goes (kept when a timeout drops the turn).
#[derive(Default)]
struct Record {
    latencies: Vec<Timed>,
    setup: Option<u32>,
    thread: Option<String>,
}

async fn drive(
    target: &Target,
    index: usize,
    load: &Load,
    hang_up_after: Option<usize>,
    record: &mut Record,
) -> Result<Ending, TurnError> {
    let text = format!("bench turn {index}: tell me something");
    let request = match target.protocol {
        Protocol::Direct => target
            .client
            .post(format!("{}/v1/chat/completions", target.base))
            .json(&json!({"model": "m", "stream": true,
                "messages": [{"role": "user", "content": text}]})),
        Protocol::Rest => target
            .client
            .post(format!("{}/api/chatkit/messages", target.base))
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&json!({"thread_id": null, "message": text})),
        Protocol::Chatkit => target
            .client
            .post(format!("{}/chatkit", target.base))
            .json(&json!({
                "type": "threads.create",
                "params": {"input": {
                    "content": [{"type": "input_text", "text": text}],
                    "attachments": [],
                    "inference_options": {},
                }},
            })),
    };
    let sent = clock::now_us();
    let response = request
        .bearer_auth(&target.secret)
        .send()
        .await
        .map_err(|e| TurnError::Send(error_chain(&e)))?;
    record.setup = Some(elapsed_us(sent));
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        let body = response.text().await.unwrap_or_default();
        return Err(TurnError::Status(status.as_u16(), body));
    }
    let _open = OpenGuard::new(load);
    let mut events = response.bytes_stream().eventsource();
    let latencies = &mut record.latencies;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| TurnError::Broken(e.to_string()))?;
        let what = match target.protocol {
            Protocol::Rest => rest_event(&event.event, &event.data, latencies),
            Protocol::Chatkit => chatkit_event(&event.data, latencies),
            Protocol::Direct => direct_event(&event.data, latencies),
        };
        match what {
            Seen::Nothing => {}
            Seen::Thread(id) => record.thread = Some(id),
            Seen::Final => return Ok(Ending::Completed),
            Seen::Failed(data) => return Err(TurnError::ErrorEvent(data)),
        }
        if hang_up_after.is_some_and(|n| latencies.len() >= n) {
            // As a browser's stop button does: the request is aborted, its connection
            // closed (it is mid-body, so never pooled). The instant is taken once the
            // stream is dropped; the close itself follows on the connection's task.
            drop(events);
            target.ledger.hang_up(index);
            return Ok(Ending::HungUp);
        }
    }
    Err(TurnError::EndedEarly)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One turn, start to end, recorded in `load`; it hangs up after `hang_up_after` deltas
/// if given.
pub async fn turn(
    target: Arc<Target>,
    index: usize,
    load: Arc<Load>,
    deltas: usize,
    hang_up_after: Option<usize>,
) {
    let mut record = Record {
        latencies: Vec::with_capacity(deltas),
        ..Record::default()
    };
    let outcome = tokio::time::timeout(
        target.timeout,
        drive(&target, index, &load, hang_up_after, &mut record),
    )
    .await
    .unwrap_or(Err(TurnError::Timeout));
    {
        let mut results = load.results.lock().unwrap_or_else(|p| p.into_inner());
        results.deltas.extend_from_slice(&record.latencies);
        results.setup_us.extend(record.setup);
        if let (Ok(ending), Some(thread)) = (&outcome, record.thread) {
            results.threads.push((thread, *ending == Ending::HungUp));
        }
        match outcome {
            Ok(Ending::Completed) => results.completed += 1,
            Ok(Ending::HungUp) => results.hung_up += 1,
            Err(e) => {
                let entry = results.errors.entry(e.kind()).or_default();
                entry.0 += 1;
                if entry.1.is_empty() {
                    entry.1 = e.detail();
                }
            }
        }
    }
    load.ended.fetch_add(1, Ordering::Relaxed);
}

/// The value at per-mille `pm` of sorted `values` (nearest rank).
#[must_use]
pub fn percentile(sorted: &[u32], pm: usize) -> Option<u32> {
    let rank = (sorted.len() * pm).div_ceil(1000).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::stamp;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 500), Some(50));
        assert_eq!(percentile(&v, 990), Some(99));
        assert_eq!(percentile(&v, 1000), Some(100));
        assert_eq!(percentile(&v, 0), Some(1));
        assert_eq!(percentile(&[], 990), None);
    }

    #[test]
    fn rest_events_are_read_by_name() {
        let mut lat = Vec::new();
        let delta = json!({"text": stamp(1, 0)}).to_string();
        assert!(matches!(
            rest_event("delta", &delta, &mut lat),
            Seen::Nothing
        ));
        assert_eq!(lat.len(), 1);
        // The final event repeats the whole answer: its stamps are not timed again.
        let done = json!({"response": stamp(1, 0)}).to_string();
        assert!(matches!(rest_event("done", &done, &mut lat), Seen::Final));
        assert!(matches!(
            rest_event("error", "{}", &mut lat),
            Seen::Failed(_)
        ));
        let recorded = json!({"thread_id": "th_1", "message_id": "msg_1"}).to_string();
        assert!(matches!(
            rest_event("message.recorded", &recorded, &mut lat),
            Seen::Thread(id) if id == "th_1"
        ));
        assert_eq!(lat.len(), 1);
    }

    #[test]
    fn direct_events_end_at_done() {
        let mut lat = Vec::new();
        let chunk = json!({"choices": [{"delta": {"content": stamp(1, 0)}}]}).to_string();
        assert!(matches!(direct_event(&chunk, &mut lat), Seen::Nothing));
        assert!(matches!(direct_event("[DONE]", &mut lat), Seen::Final));
        assert_eq!(lat.len(), 1);
    }

    #[test]
    fn chatkit_events_are_read_by_type() {
        let mut lat = Vec::new();
        let delta = json!({"type": "thread.item.updated", "item_id": "m", "update": {
            "type": "assistant_message.content_part.text_delta", "content_index": 0,
            "delta": stamp(3, 0)}})
        .to_string();
        assert!(matches!(chatkit_event(&delta, &mut lat), Seen::Nothing));
        assert_eq!(lat.len(), 1);
        let user = json!({"type": "thread.item.done", "item": {"type": "user_message"}});
        assert!(matches!(
            chatkit_event(&user.to_string(), &mut lat),
            Seen::Nothing
        ));
        let done = json!({"type": "thread.item.done", "item": {"type": "assistant_message",
            "content": [{"type": "output_text", "text": stamp(3, 0)}]}});
        assert!(matches!(
            chatkit_event(&done.to_string(), &mut lat),
            Seen::Final
        ));
        let created = json!({"type": "thread.created", "thread": {"id": "th_2", "title": null}});
        assert!(matches!(
            chatkit_event(&created.to_string(), &mut lat),
            Seen::Thread(id) if id == "th_2"
        ));
        let error = json!({"type": "error", "code": "stream.error", "allow_retry": true});
        assert!(matches!(
            chatkit_event(&error.to_string(), &mut lat),
            Seen::Failed(_)
        ));
        assert_eq!(lat.len(), 1);
    }
}
