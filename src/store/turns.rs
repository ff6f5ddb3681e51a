//! Conversation turns: the user's message, and later the assistant's reply with the tool
//! calls that produced it. Each half is its own transaction, so a failed agent never
//! leaves half a reply and never loses the user's message.

use chrono::{DateTime, Utc};
use entity::thread_item;
use sea_orm::{
    sea_query::Expr, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    threads::MESSAGE_TYPES,
    writer::{CompleteOp, RecordOp},
    Store, StoreError,
};
use crate::domain::{new_id, now, IdempotencyKey, UserId};

/// A recorded user message (`thread_items` row of type `user_message`).
pub type Turn = thread_item::Model;

/// One tool call the agent made, as recorded and as returned to the client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    pub tool: String,
    pub args: Value,
    pub result: Value,
}

/// A recorded assistant reply and the tool calls made for it, in order.
#[derive(Clone, Debug)]
pub struct Reply {
    pub item: thread_item::Model,
    pub tool_calls: Vec<ToolCallRecord>,
    /// The row holding the tool calls (absent when no tool ran, and for answers recorded
    /// before workflows existed, whose calls are one `tool_call` row each).
    pub workflow: Option<thread_item::Model>,
}

/// Ids and instants of the items an answer will be recorded as. They are chosen when the
/// items are first announced to a listener, so a stream and a later reload agree.
#[derive(Clone, Debug)]
pub struct AnswerIds {
    pub message_id: String,
    pub message_at: DateTime<Utc>,
    pub workflow: Option<(String, DateTime<Utc>)>,
}

/// The payload of a `workflow` row.
#[derive(Serialize, Deserialize)]
struct WorkflowPayload {
    tool_calls: Vec<ToolCallRecord>,
}

pub(crate) fn workflow_payload(calls: &[ToolCallRecord]) -> Value {
    serde_json::json!({ "tool_calls": calls })
}

/// The tool calls a `workflow` (or legacy `tool_call`) row holds.
pub fn tool_calls_of(row: &thread_item::Model) -> Vec<ToolCallRecord> {
    let Some(payload) = row.payload.clone() else {
        return Vec::new();
    };
    match row.item_type.as_str() {
        ITEM_WORKFLOW => serde_json::from_value::<WorkflowPayload>(payload)
            .map(|w| w.tool_calls)
            .unwrap_or_default(),
        ITEM_TOOL_CALL => serde_json::from_value(payload)
            .map(|c| vec![c])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

pub const ITEM_USER: &str = "user_message";
pub const ITEM_ASSISTANT: &str = "assistant_message";
pub const ITEM_WORKFLOW: &str = "workflow";
pub const ITEM_TOOL_CALL: &str = "tool_call";

pub const STATUS_PENDING: &str = "pending";
pub const STATUS_COMPLETED: &str = "completed";
pub const STATUS_FAILED: &str = "failed";

pub(crate) fn item(
    thread_id: &str,
    user: &UserId,
    kind: &str,
    role: &str,
    content: String,
    at: DateTime<Utc>,
) -> thread_item::Model {
    let prefix = if kind == "tool_call" { "tc" } else { "msg" };
    thread_item::Model {
        id: new_id(prefix),
        thread_id: thread_id.to_owned(),
        user_id: user.as_str().to_owned(),
        item_type: kind.to_owned(),
        role: role.to_owned(),
        content,
        payload: None,
        client_key: None,
        reply_to: None,
        status: STATUS_COMPLETED.to_owned(),
        feedback: None,
        created_at: at,
        updated_at: at,
    }
}

impl Store {
    /// The user message recorded under `key`, if any.
    pub async fn find_turn(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<Turn>, StoreError> {
        Ok(thread_item::Entity::find()
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(thread_item::Column::ClientKey.eq(key.as_str()))
            .one(&self.write)
            .await?)
    }

    /// Records the user's message as a pending turn, creating the thread when `thread_id`
    /// is `None`, through the group-commit writer. Atomic per request: the thread change
    /// and the item exist together or not at all. `ThreadNotFound` unless the thread exists
    /// and is the user's; `DuplicateKey` when another request recorded `key` first.
    pub async fn record_user_turn(
        &self,
        user: &UserId,
        thread_id: Option<&str>,
        text: &str,
        key: Option<&IdempotencyKey>,
        payload: Option<Value>,
    ) -> Result<Turn, StoreError> {
        self.writer
            .record(RecordOp {
                user: user.clone(),
                thread_id: thread_id.map(str::to_owned),
                text: text.to_owned(),
                key: key.map(|k| k.as_str().to_owned()),
                payload,
            })
            .await
    }

    /// Atomically takes over a turn for another agent run: a failed turn, or a pending one
    /// whose runner went silent before `stale_before`. `false` when someone else holds it.
    pub async fn claim_turn(
        &self,
        user: &UserId,
        turn_id: &str,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = thread_item::Entity::update_many()
            .col_expr(thread_item::Column::Status, Expr::value(STATUS_PENDING))
            .col_expr(thread_item::Column::UpdatedAt, Expr::value(now()))
            .filter(thread_item::Column::Id.eq(turn_id))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(
                Condition::any()
                    .add(thread_item::Column::Status.eq(STATUS_FAILED))
                    .add(
                        Condition::all()
                            .add(thread_item::Column::Status.eq(STATUS_PENDING))
                            .add(thread_item::Column::UpdatedAt.lt(stale_before)),
                    ),
            )
            .exec(&self.write)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Marks a pending turn failed so an `Idempotency-Key` retry may claim it.
    pub async fn fail_turn(&self, user: &UserId, turn_id: &str) -> Result<(), StoreError> {
        thread_item::Entity::update_many()
            .col_expr(thread_item::Column::Status, Expr::value(STATUS_FAILED))
            .col_expr(thread_item::Column::UpdatedAt, Expr::value(now()))
            .filter(thread_item::Column::Id.eq(turn_id))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(thread_item::Column::Status.eq(STATUS_PENDING))
            .exec(&self.write)
            .await?;
        Ok(())
    }

    /// Records the assistant's reply and its tool calls and completes the turn, atomically,
    /// through the group-commit writer. Only a still-pending turn is answered:
    /// `TurnAlreadyAnswered` if another run got there first, `ThreadNotFound` if the thread
    /// was deleted while the agent ran.
    pub async fn complete_turn(
        &self,
        user: &UserId,
        turn: &Turn,
        ids: AnswerIds,
        text: &str,
        tool_calls: &[ToolCallRecord],
    ) -> Result<Reply, StoreError> {
        self.writer
            .complete(CompleteOp {
                user: user.clone(),
                turn: turn.clone(),
                ids,
                text: text.to_owned(),
                tool_calls: tool_calls.to_vec(),
            })
            .await
    }

    /// The recorded reply to a turn, if the turn was completed.
    pub async fn load_reply(
        &self,
        user: &UserId,
        turn_id: &str,
    ) -> Result<Option<Reply>, StoreError> {
        let rows = thread_item::Entity::find()
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(thread_item::Column::ReplyTo.eq(turn_id))
            .order_by_asc(thread_item::Column::CreatedAt)
            .order_by_asc(thread_item::Column::Id)
            .all(&self.write)
            .await?;
        let mut tool_calls = Vec::new();
        let mut reply = None;
        let mut workflow = None;
        for row in rows {
            if row.item_type == ITEM_ASSISTANT {
                reply = Some(row);
            } else {
                tool_calls.extend(tool_calls_of(&row));
                if row.item_type == ITEM_WORKFLOW {
                    workflow = Some(row);
                }
            }
        }
        Ok(reply.map(|item| Reply {
            item,
            tool_calls,
            workflow,
        }))
    }

    /// The messages before `turn` in its thread, oldest first: at most `max_items`, and
    /// no more (newest kept) than `max_chars` characters of content in all.
    pub async fn history(
        &self,
        user: &UserId,
        turn: &Turn,
        max_items: u64,
        max_chars: usize,
    ) -> Result<Vec<thread_item::Model>, StoreError> {
        let rows = thread_item::Entity::find()
            .filter(thread_item::Column::ThreadId.eq(turn.thread_id.as_str()))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(thread_item::Column::ItemType.is_in(MESSAGE_TYPES))
            .filter(
                Condition::any()
                    .add(thread_item::Column::CreatedAt.lt(turn.created_at))
                    .add(
                        Condition::all()
                            .add(thread_item::Column::CreatedAt.eq(turn.created_at))
                            .add(thread_item::Column::Id.lt(turn.id.as_str())),
                    ),
            )
            .order_by_desc(thread_item::Column::CreatedAt)
            .order_by_desc(thread_item::Column::Id)
            .limit(max_items)
            .all(&self.read)
            .await?;
        let mut budget = max_chars;
        let mut kept: Vec<_> = rows
            .into_iter()
            .take_while(|m| {
                let len = m.content.chars().count();
                let fits = len <= budget;
                budget = budget.saturating_sub(len);
                fits
            })
            .collect();
        kept.reverse();
        Ok(kept)
    }
}
