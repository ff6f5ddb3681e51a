//! Conversation turns: the user's message, and later its answer (the assistant's message
//! with the tool calls that produced it). Each half is its own transaction, so a failed
//! agent never leaves half an answer and never loses the user's message. Both halves are
//! inserted by the group-commit writer: the SQL is `record_batch` and `complete_batch` in
//! [`super::turn_writer`].

use chrono::{DateTime, Utc};
use entity::thread_item;
use sea_orm::{
    sea_query::Expr, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;

use super::{
    rows::{
        items_of_thread, keyset, tool_calls_of, AnswerIds, ItemStatus, ItemType, RecordedAnswer,
        Turn, HISTORY_TYPES,
    },
    turn_writer::{CompleteOp, RecordOp},
    Store, StoreError,
};
use crate::domain::{now, Cursor, IdempotencyKey, Order, ThreadId, ToolCallRecord, UserId};

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
        thread_id: Option<&ThreadId>,
        text: &str,
        key: Option<&IdempotencyKey>,
        payload: Option<Value>,
    ) -> Result<Turn, StoreError> {
        self.writer
            .record(RecordOp {
                user: user.clone(),
                thread_id: thread_id.cloned(),
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
            .col_expr(
                thread_item::Column::Status,
                Expr::value(ItemStatus::Pending),
            )
            .col_expr(thread_item::Column::UpdatedAt, Expr::value(now()))
            .filter(thread_item::Column::Id.eq(turn_id))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(
                Condition::any()
                    .add(thread_item::Column::Status.eq(ItemStatus::Failed))
                    .add(
                        Condition::all()
                            .add(thread_item::Column::Status.eq(ItemStatus::Pending))
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
            .col_expr(thread_item::Column::Status, Expr::value(ItemStatus::Failed))
            .col_expr(thread_item::Column::UpdatedAt, Expr::value(now()))
            .filter(thread_item::Column::Id.eq(turn_id))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(thread_item::Column::Status.eq(ItemStatus::Pending))
            .exec(&self.write)
            .await?;
        Ok(())
    }

    /// Records the answer (the assistant's message and its tool calls) and completes the
    /// turn, atomically,
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
    ) -> Result<RecordedAnswer, StoreError> {
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

    /// The recorded answer to a turn, if the turn was completed.
    pub async fn load_answer(
        &self,
        user: &UserId,
        turn_id: &str,
    ) -> Result<Option<RecordedAnswer>, StoreError> {
        let rows = thread_item::Entity::find()
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(thread_item::Column::ReplyTo.eq(turn_id))
            .order_by_asc(thread_item::Column::CreatedAt)
            .order_by_asc(thread_item::Column::Id)
            .all(&self.write)
            .await?;
        let mut tool_calls = Vec::new();
        let mut message = None;
        let mut workflow = None;
        let mut extras = Vec::new();
        for row in rows {
            match row.item_type {
                ItemType::AssistantMessage => message = Some(row),
                ItemType::Workflow | ItemType::ToolCall => {
                    tool_calls.extend(tool_calls_of(&row));
                    if row.item_type == ItemType::Workflow {
                        workflow = Some(row);
                    }
                }
                _ => extras.push(row),
            }
        }
        Ok(message.map(|item| RecordedAnswer {
            item,
            tool_calls,
            workflow,
            extras,
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
        let rows = history_query(user, turn, max_items).all(&self.read).await?;
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

/// The read of [`Store::history`]: the newest `max_items` history items before `turn`.
pub(super) fn history_query(
    user: &UserId,
    turn: &Turn,
    max_items: u64,
) -> sea_orm::Select<thread_item::Entity> {
    let before_turn = Cursor {
        at: turn.created_at,
        id: turn.id.clone(),
    };
    keyset(
        items_of_thread(user, &turn.thread_id, &HISTORY_TYPES),
        thread_item::Column::CreatedAt,
        thread_item::Column::Id,
        Some(&before_turn),
        Order::Desc,
    )
    .limit(max_items)
}
