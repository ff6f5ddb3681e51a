//! One conversation turn: record the user's message, run the agent, record the reply.
//!
//! Failure semantics: the user's message is committed before the agent runs. If the agent
//! fails, the turn is marked failed (502 to the caller) and an `Idempotency-Key` retry
//! claims it atomically and re-runs the agent for the same recorded message. A retry after
//! success returns the stored reply. The turn runs on its own task, so a client that hangs
//! up does not cancel it half way.

use std::sync::Arc;

use crate::{
    agent::{Agent, AgentError, AgentRequest, EventSink, HistoryMessage, TaskTools},
    config::MessageSettings,
    domain::{now, IdempotencyKey, MessageText, UserId},
    store::{Reply, Store, StoreError, ToolCallRecord, Turn, STATUS_COMPLETED},
};

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Agent(AgentError),
    #[error("idempotency key reused for a different request")]
    IdempotencyMismatch,
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

pub struct SendMessage {
    pub thread_id: Option<String>,
    pub message: MessageText,
    pub key: Option<IdempotencyKey>,
}

/// The outcome of a completed turn (fresh or replayed).
#[derive(Clone, Debug)]
pub struct TurnResult {
    pub thread_id: String,
    pub message_id: String,
    pub response_id: String,
    pub response: String,
    pub tool_calls: Vec<ToolCallRecord>,
}

impl TurnResult {
    fn new(turn: &Turn, reply: Reply) -> Self {
        Self {
            thread_id: turn.thread_id.clone(),
            message_id: turn.id.clone(),
            response_id: reply.item.id,
            response: reply.item.content,
            tool_calls: reply.tool_calls,
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

#[derive(Clone)]
pub struct ChatService {
    store: Store,
    agent: Arc<dyn Agent>,
    settings: MessageSettings,
}

impl ChatService {
    pub fn new(store: Store, agent: Arc<dyn Agent>, settings: MessageSettings) -> Self {
        Self {
            store,
            agent,
            settings,
        }
    }

    /// Records the user's turn (or finds the one `key` names) and gets it answered.
    pub async fn send(
        &self,
        user: &UserId,
        request: SendMessage,
        events: EventSink,
    ) -> Result<TurnResult, ChatError> {
        match self.record(user, &request).await? {
            Recorded::NeedsAnswer(turn) => self.answer(user, turn, events).await,
            Recorded::Answered(turn) => self.load_completed(user, &turn).await,
        }
    }

    /// Step one of a turn: the user's message is durable when this returns.
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
                request.thread_id.as_deref(),
                request.message.as_str(),
                request.key.as_ref(),
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
            .as_deref()
            .is_none_or(|id| id == turn.thread_id);
        if turn.content != request.message.as_str() || !same_thread {
            return Err(ChatError::IdempotencyMismatch);
        }
        if turn.status == STATUS_COMPLETED {
            return Ok(Recorded::Answered(turn));
        }
        let stale = now() - chrono::Duration::seconds(self.settings.stale_pending_secs as i64);
        if self.store.claim_turn(user, &turn.id, stale).await? {
            return Ok(Recorded::NeedsAnswer(turn));
        }
        // Lost the claim: it may have completed meanwhile.
        match self.store.load_reply(user, &turn.id).await? {
            Some(_) => Ok(Recorded::Answered(turn)),
            None => Err(ChatError::InProgress),
        }
    }

    /// The stored answer of a completed turn.
    pub async fn load_completed(
        &self,
        user: &UserId,
        turn: &Turn,
    ) -> Result<TurnResult, ChatError> {
        let reply = self
            .store
            .load_reply(user, &turn.id)
            .await?
            .ok_or(ChatError::InProgress)?;
        Ok(TurnResult::new(turn, reply))
    }

    /// Step two: runs the agent for a turn this request holds and records its reply, on a
    /// task of its own so that a caller going away does not abandon the turn half way.
    pub async fn answer(
        &self,
        user: &UserId,
        turn: Turn,
        events: EventSink,
    ) -> Result<TurnResult, ChatError> {
        let this = self.clone();
        let user = user.clone();
        let task = tokio::spawn(async move { this.run_agent(&user, turn, events).await });
        match task.await {
            Ok(result) => result,
            Err(join) => Err(ChatError::Agent(AgentError::Unavailable(join.to_string()))),
        }
    }

    async fn run_agent(
        &self,
        user: &UserId,
        turn: Turn,
        events: EventSink,
    ) -> Result<TurnResult, ChatError> {
        let result = self.try_run_agent(user, &turn, &events).await;
        if let Err(ChatError::Store(StoreError::TurnAlreadyAnswered)) = result {
            // Someone else recorded an answer first, and theirs stands; or the thread (and
            // the turn with it) was deleted while the agent ran.
            return match self.store.load_reply(user, &turn.id).await? {
                Some(reply) => Ok(TurnResult::new(&turn, reply)),
                None => {
                    self.store.get_thread(user, &turn.thread_id).await?;
                    Err(ChatError::InProgress)
                }
            };
        }
        if result.is_err() {
            if let Err(e) = self.store.fail_turn(user, &turn.id).await {
                tracing::warn!(error = %e, turn = %turn.id, "could not mark turn failed");
            }
        }
        result
    }

    async fn try_run_agent(
        &self,
        user: &UserId,
        turn: &Turn,
        events: &EventSink,
    ) -> Result<TurnResult, ChatError> {
        let history: Vec<HistoryMessage> = if self.agent.uses_history() {
            self.store
                .history(
                    user,
                    turn,
                    self.settings.history_max_items,
                    self.settings.history_max_chars,
                )
                .await?
                .into_iter()
                .map(|m| HistoryMessage {
                    role: m.role,
                    content: m.content,
                })
                .collect()
        } else {
            Vec::new()
        };
        let tools = TaskTools::new(self.store.clone(), user.clone());
        let request = AgentRequest {
            user,
            history: &history,
            message: &turn.content,
        };
        let reply = self.agent.respond(request, &tools, events).await?;
        let stored = self
            .store
            .complete_turn(user, turn, &reply.text, &reply.tool_calls)
            .await?;
        Ok(TurnResult::new(turn, stored))
    }
}
