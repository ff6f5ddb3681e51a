//! One conversation turn: record the user's message, run the agent, record its answer.
//! This is the only place a turn runs; the wire formats (REST JSON, REST SSE, ChatKit SSE)
//! are encoders over the [`TurnEvent`]s it produces.
//!
//! Failure semantics: the user's message is committed before the agent runs. If the agent
//! fails, the turn is marked failed (502 to the caller) and an `Idempotency-Key` retry
//! claims it atomically and re-runs the agent for the same recorded message. A retry after
//! success returns the stored answer. The turn runs on its own task, so a REST client that
//! hangs up does not cancel it half way; a ChatKit client's stream stops it (the stop
//! button, [`ChatService::stream_stoppable`]), recording what was said.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use entity::{thread, thread_item};
use futures_channel::mpsc;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    agent::{
        Agent, AgentError, AgentEvent, AgentRequest, AttachedFile, ClientTool, EventSink,
        HistoryMessage, Mention, Pending, Resume, TaskTools,
    },
    attachments::{ids_in_payload, Attachments},
    config::MessageSettings,
    domain::{
        new_id, now, task_list::TaskList, IdempotencyKey, ItemId, MessageText, ThreadId, Title,
        ToolCallRecord, UserId,
    },
    store::{AnswerIds, ItemStatus, ItemType, NewItem, RecordedAnswer, Store, StoreError, Turn},
};

/// Why a turn could not be recorded or answered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The database refused or failed (including inside a tool call).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The model provider failed; the user's message stays recorded.
    #[error(transparent)]
    Agent(AgentError),
    /// The Idempotency-Key names a turn with another message or thread.
    #[error("idempotency key reused for a different request")]
    IdempotencyMismatch,
    /// The turn the key names is still being answered elsewhere.
    #[error("a request with this idempotency key is in progress")]
    InProgress,
}

impl From<AgentError> for ChatError {
    // A database failure met inside a tool call is the store's, not the model's.
    fn from(err: AgentError) -> Self {
        match err {
            AgentError::Store(e) => Self::Store(e),
            other => Self::Agent(other),
        }
    }
}

/// A user's message to record and have answered.
pub struct SendMessage {
    /// The thread to post to; `None` starts a thread titled after the message.
    pub thread_id: Option<ThreadId>,
    /// The validated text.
    pub message: MessageText,
    /// Makes a retry find this turn instead of recording a second one.
    pub key: Option<IdempotencyKey>,
    /// The message as the client sent it, when richer than its text (ChatKit content
    /// parts); stored with the turn so a reload shows what was sent.
    pub payload: Option<Value>,
}

/// The outcome of a completed turn (fresh or replayed).
#[derive(Clone, Debug)]
pub struct TurnResult {
    /// The thread of the turn.
    pub thread_id: String,
    /// The recorded user message.
    pub message_id: String,
    /// The recorded assistant message.
    pub response_id: String,
    /// The assistant's text.
    pub response: String,
    /// When the assistant message was announced (its recorded `created_at`).
    pub response_at: DateTime<Utc>,
    /// The tools the agent ran for this answer, in order.
    pub tool_calls: Vec<ToolCallRecord>,
    /// The id and instant of the item holding `tool_calls`, when one was recorded.
    pub workflow: Option<(String, DateTime<Utc>)>,
    /// The answer's other recorded items (the task widget), in order.
    pub extras: Vec<thread_item::Model>,
}

impl TurnResult {
    fn new(turn: &Turn, answer: RecordedAnswer) -> Self {
        Self {
            thread_id: turn.thread_id.clone(),
            message_id: turn.id.clone(),
            response_id: answer.item.id,
            response: answer.item.content,
            response_at: answer.item.created_at,
            tool_calls: answer.tool_calls,
            workflow: answer.workflow.map(|w| (w.id, w.created_at)),
            extras: answer.extras,
        }
    }
}

/// What a running turn reports, in order. Items are announced (`*Started`) with the id
/// and instant they will be recorded under; the last event is `Completed` or `Failed`.
/// The large payloads are boxed: each event queued for a stream is a node of this enum's size.
#[derive(Debug)]
pub enum TurnEvent {
    /// The first tool call opened the item that lists the answer's tool calls.
    WorkflowStarted {
        /// The workflow item's id.
        id: String,
        /// Its `created_at`.
        at: DateTime<Utc>,
    },
    /// A tool is about to run (its call is reported when it has).
    ToolStarted {
        /// The tool's name as the model called it.
        tool: String,
    },
    /// A tool ran; `index` is its place in the workflow.
    ToolCall {
        /// Position in the workflow, from 0.
        index: usize,
        /// What ran, with what, and its result.
        call: Box<ToolCallRecord>,
    },
    /// The workflow is complete (the answer's text has begun, or the agent finished).
    WorkflowDone {
        /// The workflow item's id.
        id: String,
        /// Its `created_at`.
        at: DateTime<Utc>,
        /// Every call it lists.
        calls: Vec<ToolCallRecord>,
    },
    /// A tool ran after its workflow was done: the workflow as it now stands.
    WorkflowReplaced {
        /// The workflow item's id.
        id: String,
        /// Its `created_at`.
        at: DateTime<Utc>,
        /// Every call it lists now.
        calls: Vec<ToolCallRecord>,
    },
    /// The assistant's message has begun.
    MessageStarted {
        /// The assistant message's id.
        id: String,
        /// Its `created_at`.
        at: DateTime<Utc>,
    },
    /// Assistant text as it is written; the deltas add up to the recorded text.
    TextDelta(String),
    /// The thread's title changed (the model wrote one for a new thread).
    ThreadUpdated(Box<thread::Model>),
    /// The turn is recorded (or was, for a replay).
    Completed(Box<TurnResult>),
    /// The agent or the store failed; the user's message stays recorded.
    Failed(Box<ChatError>),
}

/// Stops a turn's answer when dropped (see [`ChatService::stream_stoppable`]); dropped
/// after the answer was recorded, it does nothing.
pub struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Where turn events go; with no listener (a JSON request) they are dropped.
#[derive(Clone, Default)]
pub struct TurnSink(Option<mpsc::UnboundedSender<TurnEvent>>);

impl TurnSink {
    fn emit(&self, event: TurnEvent) {
        if let Some(tx) = &self.0 {
            // A listener that went away does not stop the turn: it is still recorded.
            let _ = tx.unbounded_send(event);
        }
    }
}

struct WorkflowState {
    id: String,
    at: DateTime<Utc>,
    calls: Vec<ToolCallRecord>,
    done: bool,
}

/// Turns the agent's raw events into [`TurnEvent`]s and allocates the answer's item ids
/// at the moment each item is first announced, so what a stream showed is what is stored,
/// in the same order.
struct AnswerTracker {
    sink: TurnSink,
    workflow: Option<WorkflowState>,
    message: Option<(String, DateTime<Utc>)>,
    last_at: DateTime<Utc>,
}

impl AnswerTracker {
    fn new(sink: TurnSink, after: DateTime<Utc>) -> Self {
        Self {
            sink,
            workflow: None,
            message: None,
            last_at: after,
        }
    }

    /// A fresh instant strictly after every earlier one of this turn, so stored items sort
    /// in announcement order whatever their id prefixes.
    fn next_at(&mut self) -> DateTime<Utc> {
        let at = now().max(self.last_at + chrono::Duration::microseconds(1));
        self.last_at = at;
        at
    }

    fn close_workflow(&mut self) {
        if let Some(w) = self.workflow.as_mut().filter(|w| !w.done) {
            w.done = true;
            self.sink.emit(TurnEvent::WorkflowDone {
                id: w.id.clone(),
                at: w.at,
                calls: w.calls.clone(),
            });
        }
    }

    fn start_message(&mut self) {
        if self.message.is_none() {
            let (id, at) = (new_id("msg"), self.next_at());
            self.sink
                .emit(TurnEvent::MessageStarted { id: id.clone(), at });
            self.message = Some((id, at));
        }
    }

    fn on_agent_event(&mut self, event: AgentEvent) {
        match event {
            AgentEvent::ToolStarted(tool) => self.sink.emit(TurnEvent::ToolStarted { tool }),
            AgentEvent::ToolCall(call) => {
                if self.workflow.is_none() {
                    let (id, at) = (new_id("wf"), self.next_at());
                    self.sink
                        .emit(TurnEvent::WorkflowStarted { id: id.clone(), at });
                    self.workflow = Some(WorkflowState {
                        id,
                        at,
                        calls: Vec::new(),
                        done: false,
                    });
                }
                let Some(w) = self.workflow.as_mut() else {
                    return;
                };
                w.calls.push(call.clone());
                if w.done {
                    self.sink.emit(TurnEvent::WorkflowReplaced {
                        id: w.id.clone(),
                        at: w.at,
                        calls: w.calls.clone(),
                    });
                } else {
                    self.sink.emit(TurnEvent::ToolCall {
                        index: w.calls.len() - 1,
                        call: Box::new(call),
                    });
                }
            }
            AgentEvent::TextDelta(text) => {
                self.close_workflow();
                self.start_message();
                self.sink.emit(TurnEvent::TextDelta(text));
            }
        }
    }

    /// The agent is done: close what is open and fix the ids the answer is recorded under.
    /// `calls` is what the agent reports it ran (a provider may not have streamed them).
    fn finish(&mut self, calls: &[ToolCallRecord]) -> AnswerIds {
        if self.workflow.is_none() && !calls.is_empty() {
            let (id, at) = (new_id("wf"), self.next_at());
            self.workflow = Some(WorkflowState {
                id,
                at,
                calls: calls.to_vec(),
                done: false,
            });
        }
        self.close_workflow();
        self.start_message();
        let (message_id, message_at) = self.message.clone().unwrap_or_default();
        // The tasks the calls touched, as a widget after the message.
        let widget = TaskList::from_calls(calls.iter().map(|c| (c.tool.as_str(), &c.result)))
            .and_then(|list| serde_json::to_value(list).ok())
            .map(|payload| NewItem {
                id: new_id("wgt"),
                at: self.next_at(),
                kind: ItemType::Widget,
                content: String::new(),
                payload: Some(payload),
                status: ItemStatus::Completed,
            });
        AnswerIds {
            message_id,
            message_at,
            workflow: self.workflow.as_ref().map(|w| (w.id.clone(), w.at)),
            message_status: ItemStatus::Completed,
            extras: widget.into_iter().collect(),
        }
    }
}

/// Where a turn stands once the user's message is durable.
#[derive(Clone, Debug)]
pub enum Recorded {
    /// This request holds the turn and must get it answered.
    NeedsAnswer(Turn),
    /// The turn was answered before (an idempotent replay).
    Answered(Turn),
}

impl Recorded {
    /// The recorded user message, whichever way it stands.
    #[must_use]
    pub fn turn(&self) -> &Turn {
        match self {
            Self::NeedsAnswer(t) | Self::Answered(t) => t,
        }
    }
}

/// The span of step two of a turn (the agent's run and the answer's record).
fn answer_span(turn: &Turn) -> tracing::Span {
    tracing::info_span!("chat.answer", thread_id = %turn.thread_id, turn_id = %turn.id)
}

/// Runs conversation turns: the one place a turn is recorded, answered and completed.
#[derive(Clone)]
pub struct ChatService {
    store: Store,
    agent: Arc<dyn Agent>,
    settings: MessageSettings,
    /// The page's tools, offered on turns a ChatKit client sent.
    client_tools: Arc<[ClientTool]>,
    /// Where the files a message names are read from, for the agent.
    attachments: Option<Attachments>,
}

/// A paused answer taken up again: the item it paused on (now answered), the turn it
/// answers (pending again), and what the agent resumes with.
pub struct Resumed {
    /// The client tool call or question, with its output or answer.
    pub item: thread_item::Model,
    turn: Turn,
    pending: Pending,
    said: String,
    reply: Value,
}

/// The pending item of `row`, as the agent paused on it.
fn pending_of(row: &thread_item::Model) -> Option<Pending> {
    let payload = row.payload.as_ref()?;
    match row.item_type {
        ItemType::ClientToolCall => Some(Pending::ClientTool {
            call_id: payload["call_id"].as_str()?.to_owned(),
            name: payload["name"].as_str()?.to_owned(),
            arguments: payload["arguments"].clone(),
        }),
        ItemType::StructuredInput => Some(Pending::Question {
            inputs: payload["inputs"].clone(),
            context: payload["context"].clone(),
        }),
        _ => None,
    }
}

/// The item an answer that ends waiting stores, pending.
fn pending_item(pending: &Pending, at: DateTime<Utc>) -> NewItem {
    let (id, kind, payload) = match pending {
        Pending::ClientTool {
            call_id,
            name,
            arguments,
        } => (
            new_id("ctc"),
            ItemType::ClientToolCall,
            serde_json::json!({"call_id": call_id, "name": name, "arguments": arguments}),
        ),
        Pending::Question { inputs, context } => (
            new_id("si"),
            ItemType::StructuredInput,
            serde_json::json!({"inputs": inputs, "context": context, "status": "pending"}),
        ),
    };
    NewItem {
        id,
        at,
        kind,
        content: String::new(),
        payload: Some(payload),
        status: ItemStatus::Pending,
    }
}

/// The tasks a ChatKit message @-mentions: its `input_tag` parts whose data names a task.
fn mentions_of(turn: &Turn) -> Vec<Mention> {
    let Some(parts) = turn
        .payload
        .as_ref()
        .and_then(|p| p.get("content"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    parts
        .iter()
        .filter(|p| p["type"] == "input_tag")
        .filter_map(|p| {
            // ChatKit types an entity's data as strings: "2" names task 2 as well as 2 does.
            let id = &p["data"]["task_id"];
            let task_id = id
                .as_i64()
                .or_else(|| id.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|n| *n > 0)?;
            let text = p["text"].as_str()?.chars().take(200).collect();
            Some(Mention { text, task_id })
        })
        .take(20)
        .collect()
}

impl ChatService {
    /// A service over `store` answering with `agent`.
    pub fn new(store: Store, agent: Arc<dyn Agent>, settings: MessageSettings) -> Self {
        Self {
            store,
            agent,
            settings,
            client_tools: Arc::new([]),
            attachments: None,
        }
    }

    /// These turns give the agent the files their messages name, read from `attachments`.
    #[must_use]
    pub fn with_attachments(mut self, attachments: Attachments) -> Self {
        self.attachments = Some(attachments);
        self
    }

    /// The text spoken in `audio` (dictation), by the agent's provider.
    pub async fn transcribe(
        &self,
        audio: bytes::Bytes,
        mime_type: &str,
    ) -> Result<String, AgentError> {
        self.agent.transcribe(audio, mime_type).await
    }

    /// The files `turn` was sent with, bytes and all, in the order attached. One deleted
    /// since (or over the size limit) is left out, with a warning: the message stands.
    async fn attached_files(&self, user: &UserId, turn: &Turn) -> Vec<AttachedFile> {
        let ids = ids_in_payload(turn.payload.as_ref());
        let Some(attachments) = self.attachments.as_ref().filter(|_| !ids.is_empty()) else {
            return Vec::new();
        };
        let max = attachments.settings().max_bytes;
        let mut files = Vec::with_capacity(ids.len());
        for id in &ids {
            match attachments.read_all(user, id, max).await {
                Ok((attachment, bytes)) => files.push(AttachedFile {
                    name: attachment.name,
                    mime_type: attachment.mime_type,
                    bytes,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, attachment_id = %id, "an attached file is not given to the agent");
                }
            }
        }
        files
    }

    /// These turns offer `tools` to the model when a ChatKit client sent them.
    #[must_use]
    pub fn with_client_tools(mut self, tools: Vec<ClientTool>) -> Self {
        self.client_tools = tools.into();
        self
    }

    /// Takes up an answer that paused on a client tool call or a question: `item` is the
    /// question answered (or `None`: the newest item, a client tool call), `reply` its
    /// output or answer, applied to the item by `apply`. The turn is pending again when
    /// this returns; [`stream_resumed`](Self::stream_resumed) answers it.
    pub async fn resume_paused(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        item: Option<&ItemId>,
        kind: ItemType,
        reply: Value,
        apply: impl FnOnce(&mut Value),
    ) -> Result<Resumed, ChatError> {
        let (turn, item) = self
            .store
            .resume_turn(user, thread_id, item, kind, apply)
            .await?;
        let pending = pending_of(&item).ok_or(StoreError::ItemNotFound)?;
        let said = self
            .store
            .load_answer(user, &turn.id)
            .await?
            .map(|a| a.item.content)
            .unwrap_or_default();
        Ok(Resumed {
            item,
            turn,
            pending,
            said,
            reply,
        })
    }

    /// Answers a resumed turn as a stoppable stream (see [`stream_stoppable`]).
    #[must_use]
    pub fn stream_resumed(
        &self,
        user: &UserId,
        resumed: Resumed,
    ) -> (mpsc::UnboundedReceiver<TurnEvent>, StopOnDrop) {
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::unbounded();
        let this = self.clone();
        let user = user.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            let sink = TurnSink(Some(tx));
            let Resumed {
                turn,
                pending,
                said,
                reply,
                ..
            } = resumed;
            let resume = Resume {
                pending: &pending,
                said: &said,
                reply: &reply,
            };
            let span = answer_span(&turn);
            let result = this
                .run_agent(&user, turn, sink.clone(), Some(&token), Some(resume))
                .instrument(span)
                .await;
            sink.emit(match result {
                Ok(done) => TurnEvent::Completed(Box::new(done)),
                Err(e) => TurnEvent::Failed(Box::new(e)),
            });
        });
        (rx, StopOnDrop(stop))
    }

    /// Records the user's turn (or finds the one `key` names) and gets it answered.
    #[tracing::instrument(
        name = "chat.send",
        skip_all,
        fields(thread_id = request.thread_id.as_ref().map(ThreadId::as_str))
    )]
    pub async fn send(&self, user: &UserId, request: SendMessage) -> Result<TurnResult, ChatError> {
        match self.record(user, &request).await? {
            Recorded::NeedsAnswer(turn) => self.answer(user, turn, TurnSink::default()).await,
            Recorded::Answered(turn) => self.load_completed(user, &turn).await,
        }
    }

    /// Gets a recorded turn answered (or replays its stored answer) on a task of its own,
    /// reporting as it goes. The last event is `Completed` or `Failed`; a listener that
    /// drops the receiver does not stop the turn.
    #[must_use]
    pub fn stream(&self, user: &UserId, recorded: Recorded) -> mpsc::UnboundedReceiver<TurnEvent> {
        self.stream_until(user, recorded, None)
    }

    /// [`stream`](Self::stream) for a listener that can stop the answer: dropping the
    /// returned guard (the client hung up) stops the model at once; what it said so far is
    /// recorded as the answer, marked stopped.
    #[must_use]
    pub fn stream_stoppable(
        &self,
        user: &UserId,
        recorded: Recorded,
    ) -> (mpsc::UnboundedReceiver<TurnEvent>, StopOnDrop) {
        let stop = CancellationToken::new();
        let events = self.stream_until(user, recorded, Some(stop.clone()));
        (events, StopOnDrop(stop))
    }

    fn stream_until(
        &self,
        user: &UserId,
        recorded: Recorded,
        stop: Option<CancellationToken>,
    ) -> mpsc::UnboundedReceiver<TurnEvent> {
        let (tx, rx) = mpsc::unbounded();
        let this = self.clone();
        let user = user.clone();
        tokio::spawn(async move {
            let sink = TurnSink(Some(tx));
            // This task is the turn's own already: the agent runs here, not on another
            // task as `answer` would spawn (one task and one future fewer per stream).
            let result = match recorded {
                Recorded::NeedsAnswer(turn) => {
                    let span = answer_span(&turn);
                    this.run_agent(&user, turn, sink.clone(), stop.as_ref(), None)
                        .instrument(span)
                        .await
                }
                Recorded::Answered(turn) => Box::pin(this.load_completed(&user, &turn)).await,
            };
            sink.emit(match result {
                Ok(done) => TurnEvent::Completed(Box::new(done)),
                Err(e) => TurnEvent::Failed(Box::new(e)),
            });
        });
        rx
    }

    /// Step one of a turn: the user's message is durable when this returns.
    #[tracing::instrument(
        name = "chat.record",
        skip_all,
        fields(
            thread_id = request.thread_id.as_ref().map(ThreadId::as_str),
            keyed = request.key.is_some(),
        )
    )]
    pub async fn record(
        &self,
        user: &UserId,
        request: &SendMessage,
    ) -> Result<Recorded, ChatError> {
        if let Some(key) = &request.key {
            if let Some(turn) = self.store.find_turn(user, key).await? {
                return self.resume(user, turn, request).await;
            }
        }
        let recorded = self
            .store
            .record_user_turn(
                user,
                request.thread_id.as_ref(),
                request.message.as_str(),
                request.key.as_ref(),
                request.payload.clone(),
            )
            .await;
        match recorded {
            Ok(turn) => Ok(Recorded::NeedsAnswer(turn)),
            // Another request with the same key won the insert race.
            Err(StoreError::DuplicateKey) => {
                let key = request.key.as_ref().ok_or(ChatError::InProgress)?;
                let turn = self
                    .store
                    .find_turn(user, key)
                    .await?
                    .ok_or(ChatError::InProgress)?;
                self.resume(user, turn, request).await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn resume(
        &self,
        user: &UserId,
        turn: Turn,
        request: &SendMessage,
    ) -> Result<Recorded, ChatError> {
        let same_thread = request
            .thread_id
            .as_ref()
            .is_none_or(|id| id.as_str() == turn.thread_id);
        if turn.content != request.message.as_str() || !same_thread {
            return Err(ChatError::IdempotencyMismatch);
        }
        if turn.status == ItemStatus::Completed {
            return Ok(Recorded::Answered(turn));
        }
        let stale = now() - crate::domain::seconds(self.settings.stale_pending_secs);
        if self.store.claim_turn(user, &turn.id, stale).await? {
            return Ok(Recorded::NeedsAnswer(turn));
        }
        // Lost the claim: it may have completed meanwhile.
        match self.store.load_answer(user, &turn.id).await? {
            Some(_) => Ok(Recorded::Answered(turn)),
            None => Err(ChatError::InProgress),
        }
    }

    /// Takes a recorded user message back for a new answer (ChatKit's retry): what came
    /// after it is removed and the turn is this request's to answer.
    pub async fn reopen(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        item_id: &ItemId,
    ) -> Result<Recorded, ChatError> {
        let stale = now() - crate::domain::seconds(self.settings.stale_pending_secs);
        let turn = self
            .store
            .reopen_turn(user, thread_id, item_id, stale)
            .await?;
        Ok(Recorded::NeedsAnswer(turn))
    }

    /// The stored answer of a completed turn.
    pub async fn load_completed(
        &self,
        user: &UserId,
        turn: &Turn,
    ) -> Result<TurnResult, ChatError> {
        let answer = self
            .store
            .load_answer(user, &turn.id)
            .await?
            .ok_or(ChatError::InProgress)?;
        Ok(TurnResult::new(turn, answer))
    }

    /// Step two: runs the agent for a turn this request holds and records its answer, on a
    /// task of its own so that a caller going away does not abandon the turn half way.
    async fn answer(
        &self,
        user: &UserId,
        turn: Turn,
        events: TurnSink,
    ) -> Result<TurnResult, ChatError> {
        let this = self.clone();
        let user = user.clone();
        let span = answer_span(&turn);
        let task = tokio::spawn(
            async move { this.run_agent(&user, turn, events, None, None).await }.instrument(span),
        );
        match task.await {
            Ok(result) => result,
            Err(join) => Err(ChatError::Agent(AgentError::Unavailable(join.to_string()))),
        }
    }

    // Runs on a task of its own, outside the request's span: the ids (and the user) are
    // repeated here so that the agent's log lines can still be tied to the turn.
    #[tracing::instrument(
        name = "agent.turn",
        skip_all,
        fields(
            user_id = %user,
            thread_id = %turn.thread_id,
            turn_id = %turn.id,
            provider = self.agent.provider(),
        )
    )]
    async fn run_agent(
        &self,
        user: &UserId,
        turn: Turn,
        events: TurnSink,
        stop: Option<&CancellationToken>,
        resume: Option<Resume<'_>>,
    ) -> Result<TurnResult, ChatError> {
        let started = std::time::Instant::now();
        let result = self.try_run_agent(user, &turn, events, stop, resume).await;
        let provider = self.agent.provider();
        metrics::histogram!(crate::metrics::AGENT_DURATION, "provider" => provider)
            .record(started.elapsed().as_secs_f64());
        let outcome = if result.is_ok() { "recorded" } else { "failed" };
        metrics::counter!(crate::metrics::TURNS, "outcome" => outcome).increment(1);
        if let Err(ChatError::Store(StoreError::TurnAlreadyAnswered)) = result {
            // Someone else recorded an answer first, and theirs stands; or the thread (and
            // the turn with it) was deleted while the agent ran.
            return match Box::pin(self.store.load_answer(user, &turn.id)).await? {
                Some(answer) => Ok(TurnResult::new(&turn, answer)),
                None => {
                    // Stored ids always parse; one that did not could name no thread.
                    let thread =
                        ThreadId::parse(&turn.thread_id).ok_or(StoreError::ThreadNotFound)?;
                    Box::pin(self.store.get_thread(user, &thread)).await?;
                    Err(ChatError::InProgress)
                }
            };
        }
        if result.is_err() {
            if let Err(e) = Box::pin(self.store.fail_turn(user, &turn.id)).await {
                tracing::warn!(error = %e, turn = %turn.id, "could not mark turn failed");
            }
        }
        result
    }

    async fn try_run_agent(
        &self,
        user: &UserId,
        turn: &Turn,
        events: TurnSink,
        stop: Option<&CancellationToken>,
        resume: Option<Resume<'_>>,
    ) -> Result<TurnResult, ChatError> {
        // The database calls of a turn are boxed here and in `run_agent`: a streamed
        // turn's future is allocated for as long as the model streams, at the size of its
        // largest await, and their futures are large (~2.5 KB of 5.3 in all) but last only a
        // round trip.
        let history: Vec<HistoryMessage> = if self.agent.uses_history() {
            Box::pin(self.store.history(
                user,
                turn,
                self.settings.history_max_items,
                self.settings.history_max_chars,
            ))
            .await?
            .into_iter()
            .map(|m| HistoryMessage {
                role: m.role.as_str().to_owned(),
                content: m.content,
            })
            .collect()
        } else {
            Vec::new()
        };
        // A new thread's first turn: its title is asked for while the answer is written.
        let title =
            (resume.is_none() && self.agent.uses_history() && history.is_empty()).then(|| {
                let agent = self.agent.clone();
                let message = turn.content.clone();
                let model = turn
                    .payload
                    .as_ref()
                    .and_then(|p| p["inference_options"]["model"].as_str())
                    .map(str::to_owned);
                AbortOnDrop(tokio::spawn(async move {
                    agent.title(&message, model.as_deref()).await
                }))
            });
        let tools = TaskTools::new(self.store.clone(), user.clone());
        // The composer's picks, stored with the message, so a retry answers the same way.
        let options = turn
            .payload
            .as_ref()
            .and_then(|p| p.get("inference_options"));
        let model = options.and_then(|o| o.get("model")).and_then(Value::as_str);
        let tool_choice = options
            .and_then(|o| o.get("tool_choice"))
            .and_then(|t| t.get("id"))
            .and_then(Value::as_str);
        let mentions = mentions_of(turn);
        let files = Box::pin(self.attached_files(user, turn)).await;
        let request = AgentRequest {
            user,
            history: &history,
            message: &turn.content,
            stop,
            model,
            tool_choice,
            // Sent through ChatKit (its content parts are kept): the page can run client
            // tools and answer questions.
            interactive: turn.payload.is_some(),
            client_tools: &self.client_tools,
            mentions: &mentions,
            resume,
            attachments: &files,
        };
        // The agent's events go straight into the tracker as they are emitted (same task,
        // no channel between them); the tracker allocates the ids the answer is recorded
        // under.
        let provider = self.agent.provider();
        let started = std::time::Instant::now();
        let tracker = Arc::new(Mutex::new((
            AnswerTracker::new(events, turn.created_at),
            true,
        )));
        let sink = {
            let tracker = tracker.clone();
            EventSink::from_fn(move |event| {
                let Ok(mut guard) = tracker.lock() else {
                    return;
                };
                let (tracker, first_token) = &mut *guard;
                if *first_token && matches!(event, AgentEvent::TextDelta(_)) {
                    *first_token = false;
                    metrics::histogram!(crate::metrics::AGENT_FIRST_TOKEN, "provider" => provider)
                        .record(started.elapsed().as_secs_f64());
                }
                tracker.on_agent_event(event);
            })
        };
        let answer = self.agent.respond(request, &tools, &sink).await;
        drop(sink);
        let answer = answer?;
        let ids = {
            let mut guard = tracker.lock().map_err(|_| {
                ChatError::Agent(AgentError::Unavailable("a turn's tracker failed".into()))
            })?;
            let tracker = &mut guard.0;
            let mut ids = tracker.finish(&answer.tool_calls);
            if let Some(pending) = &answer.pending {
                ids.extras.push(pending_item(pending, tracker.next_at()));
            }
            if answer.stopped {
                ids.message_status = ItemStatus::Cancelled;
                ids.extras.push(NewItem {
                    id: new_id("hc"),
                    at: tracker.next_at(),
                    kind: ItemType::HiddenContext,
                    content: "The user stopped the previous answer before it was finished; \
                              it is recorded as far as it went."
                        .to_owned(),
                    payload: None,
                    status: ItemStatus::Completed,
                });
            }
            ids
        };
        let stored =
            Box::pin(
                self.store
                    .complete_turn(user, turn, ids, &answer.text, &answer.tool_calls),
            )
            .await?;
        if let Some(waiting) = stored
            .extras
            .iter()
            .find(|i| i.status == ItemStatus::Pending)
        {
            // One pending call or question per thread: an older one can no longer be
            // answered.
            if let Err(e) = Box::pin(self.store.drop_pending_except(user, waiting)).await {
                tracing::warn!(error = %e, "could not close older pending items");
            }
        }
        if let Some(title) = title {
            if let Some(thread) = Box::pin(self.retitle(user, turn, title)).await {
                if let Ok(guard) = tracker.lock() {
                    guard
                        .0
                        .sink
                        .emit(TurnEvent::ThreadUpdated(Box::new(thread)));
                }
            }
        }
        Ok(TurnResult::new(turn, stored))
    }

    /// Gives the thread of a first turn the title the model wrote, unless the user renamed
    /// it meanwhile; the thread as it is now when it was renamed.
    async fn retitle(
        &self,
        user: &UserId,
        turn: &Turn,
        title: AbortOnDrop<Option<String>>,
    ) -> Option<thread::Model> {
        let written = title.join().await??;
        let title = Title::parse(&written).ok()?;
        let thread_id = ThreadId::parse(&turn.thread_id)?;
        let fallback = Title::from_message(&turn.content);
        match self
            .store
            .retitle_if(user, &thread_id, fallback.as_str(), &title)
            .await
        {
            Ok(thread) => thread,
            Err(e) => {
                tracing::warn!(error = %e, "could not record the thread's title");
                None
            }
        }
    }
}

/// A task aborted when its handle is dropped: work for a turn that failed is not left
/// running.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Option<T> {
        (&mut self.0).await.ok()
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn call(n: i64) -> ToolCallRecord {
        ToolCallRecord {
            tool: "add_task".into(),
            args: json!({"title": format!("t{n}")}),
            result: json!({"task": {"task_id": n}}),
        }
    }

    /// Feeds `events` to a tracker and returns what it reported, by name, plus the ids.
    fn track(
        events: Vec<AgentEvent>,
        reported_calls: &[ToolCallRecord],
    ) -> (Vec<String>, AnswerIds) {
        let (tx, mut rx) = mpsc::unbounded();
        let start = now();
        let mut tracker = AnswerTracker::new(TurnSink(Some(tx)), start);
        for e in events {
            tracker.on_agent_event(e);
        }
        let ids = tracker.finish(reported_calls);
        drop(tracker);
        let mut names = Vec::new();
        let mut last_at = start;
        while let Ok(e) = rx.try_recv() {
            let (name, at) = match e {
                TurnEvent::WorkflowStarted { at, .. } => ("workflow_started", Some(at)),
                TurnEvent::ToolCall { index, .. } => (["call0", "call1", "call2"][index], None),
                TurnEvent::WorkflowDone { calls, .. } => {
                    (["done0", "done1", "done2", "done3"][calls.len()], None)
                }
                TurnEvent::WorkflowReplaced { .. } => ("replaced", None),
                TurnEvent::MessageStarted { at, .. } => ("message_started", Some(at)),
                TurnEvent::ToolStarted { .. } => ("tool_started", None),
                TurnEvent::ThreadUpdated(_) => ("thread_updated", None),
                TurnEvent::TextDelta(_) => ("delta", None),
                TurnEvent::Completed(_) | TurnEvent::Failed(_) => ("end", None),
            };
            if let Some(at) = at {
                assert!(at > last_at, "items are announced at increasing instants");
                last_at = at;
            }
            names.push(name.to_owned());
        }
        (names, ids)
    }

    #[test]
    fn tools_then_text_close_the_workflow_before_the_message() {
        let (names, ids) = track(
            vec![
                AgentEvent::ToolCall(call(1)),
                AgentEvent::ToolCall(call(2)),
                AgentEvent::TextDelta("ok".into()),
            ],
            &[call(1), call(2)],
        );
        assert_eq!(
            names,
            [
                "workflow_started",
                "call0",
                "call1",
                "done2",
                "message_started",
                "delta"
            ]
        );
        let (wf, wf_at) = ids.workflow.unwrap();
        assert!(wf.starts_with("wf_") && ids.message_id.starts_with("msg_"));
        assert!(wf_at < ids.message_at);
    }

    #[test]
    fn a_tool_after_the_text_began_replaces_the_finished_workflow() {
        let (names, _) = track(
            vec![
                AgentEvent::ToolCall(call(1)),
                AgentEvent::TextDelta("let me".into()),
                AgentEvent::ToolCall(call(2)),
                AgentEvent::TextDelta(" done".into()),
            ],
            &[call(1), call(2)],
        );
        assert_eq!(
            names,
            [
                "workflow_started",
                "call0",
                "done1",
                "message_started",
                "delta",
                "replaced",
                "delta"
            ]
        );
    }

    #[test]
    fn text_first_then_a_tool_announces_the_workflow_after_the_message() {
        let (names, ids) = track(
            vec![
                AgentEvent::TextDelta("sure".into()),
                AgentEvent::ToolCall(call(1)),
            ],
            &[call(1)],
        );
        assert_eq!(
            names,
            [
                "message_started",
                "delta",
                "workflow_started",
                "call0",
                "done1"
            ]
        );
        // Stored in announcement order: the message before the workflow.
        assert!(ids.message_at < ids.workflow.unwrap().1);
    }

    #[test]
    fn calls_a_provider_did_not_stream_still_get_a_workflow() {
        let (names, ids) = track(vec![], &[call(1)]);
        assert_eq!(names, ["done1", "message_started"]);
        assert!(ids.workflow.is_some());
        let (names, ids) = track(vec![AgentEvent::TextDelta("hi".into())], &[]);
        assert_eq!(names, ["message_started", "delta"]);
        assert!(ids.workflow.is_none());
    }
}
