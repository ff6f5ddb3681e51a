//! Items written outside a turn: what a click on a widget changes (the widget's new state,
//! the call that made the change and the note for the model, in one transaction, so a
//! reload never shows a widget ahead of the record of what changed it), and the answer to
//! a pending client tool call or question, which takes its turn up again.

use entity::thread_item;
use sea_orm::{
    sea_query::Expr, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use super::{
    rows::{insert_rows, items_of_thread, ItemStatus, ItemType, NewItem, Turn},
    Store, StoreError,
};
use crate::domain::{now, task_list::TaskList, ItemId, ThreadId, UserId};

impl Store {
    /// The task list a widget item of the user's thread shows. `ItemNotFound` unless the
    /// item is a task-list widget of this thread and user.
    pub async fn task_list(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        widget_id: &ItemId,
    ) -> Result<TaskList, StoreError> {
        let Some(row) = self.find_item(user, thread_id, widget_id).await? else {
            // No such item of the user's thread: is there no thread, or no item?
            self.get_thread(user, thread_id).await?;
            return Err(StoreError::ItemNotFound);
        };
        task_list_of(&row).ok_or(StoreError::ItemNotFound)
    }

    /// Applies `change` to the task list of a widget item and records `items` beside it
    /// (the call, the note), in one transaction; the widget is read under a row lock on
    /// PostgreSQL (SQLite has one writer), so two clicks at once each keep their change.
    /// Returns the widget as stored now.
    pub async fn update_task_list(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        widget_id: &ItemId,
        change: impl FnOnce(&mut TaskList),
        items: &[NewItem],
    ) -> Result<thread_item::Model, StoreError> {
        let txn = self.write.begin().await?;
        let mut query = thread_item::Entity::find_by_id(widget_id.as_str())
            .filter(thread_item::Column::ThreadId.eq(thread_id.as_str()))
            .filter(thread_item::Column::UserId.eq(user.as_str()));
        if txn.get_database_backend() == DbBackend::Postgres {
            query = query.lock_exclusive();
        }
        let mut row = query.one(&txn).await?.ok_or(StoreError::ItemNotFound)?;
        let mut list = task_list_of(&row).ok_or(StoreError::ItemNotFound)?;
        change(&mut list);
        let payload = serde_json::to_value(&list)
            .map_err(|e| StoreError::Db(sea_orm::DbErr::Json(e.to_string())))?;
        let at = now();
        thread_item::Entity::update_many()
            .col_expr(thread_item::Column::Payload, Expr::value(payload.clone()))
            .col_expr(thread_item::Column::UpdatedAt, Expr::value(at))
            .filter(thread_item::Column::Id.eq(row.id.as_str()))
            .exec(&txn)
            .await?;
        let rows: Vec<thread_item::Model> = items
            .iter()
            .map(|item| item.row(thread_id.as_str(), user, None))
            .collect();
        insert_rows::<thread_item::Entity, _>(&txn, rows).await?;
        Self::bump_thread(&txn, user, thread_id.as_str(), at, 0).await?;
        txn.commit().await?;
        row.payload = Some(payload);
        row.updated_at = at;
        Ok(row)
    }
}

/// Item types a reload shows: the newest of them is what a client answers.
const SHOWN_TYPES: [ItemType; 6] = [
    ItemType::UserMessage,
    ItemType::AssistantMessage,
    ItemType::Workflow,
    ItemType::Widget,
    ItemType::ClientToolCall,
    ItemType::StructuredInput,
];

impl Store {
    /// Answers the pending item of `kind` (`item`, or the thread's newest when `None`) and
    /// reopens its turn for the rest of the answer, in one transaction: the item must be
    /// the caller's, pending, and the newest item of the thread (an older question can no
    /// longer be answered). `apply` writes the reply into its payload. Returns the turn,
    /// pending again, and the item as answered.
    pub async fn resume_turn(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        item: Option<&ItemId>,
        kind: ItemType,
        apply: impl FnOnce(&mut serde_json::Value),
    ) -> Result<(Turn, thread_item::Model), StoreError> {
        let txn = self.write.begin().await?;
        let lock = txn.get_database_backend() == DbBackend::Postgres;
        let mut newest = items_of_thread(user, thread_id.as_str(), &SHOWN_TYPES)
            .order_by_desc(thread_item::Column::CreatedAt)
            .order_by_desc(thread_item::Column::Id)
            .limit(1);
        if lock {
            newest = newest.lock_exclusive();
        }
        let Some(mut row) = newest.one(&txn).await? else {
            txn.rollback().await?;
            self.get_thread(user, thread_id).await?;
            return Err(StoreError::NothingPending);
        };
        let named = item.is_none_or(|id| id.as_str() == row.id);
        if !named || row.item_type != kind || row.status != ItemStatus::Pending {
            txn.rollback().await?;
            if let Some(id) = item {
                // Not the newest: is it one at all?
                if self.find_item(user, thread_id, id).await?.is_none() {
                    return Err(StoreError::ItemNotFound);
                }
            }
            return Err(StoreError::NothingPending);
        }
        let mut payload = row.payload.take().unwrap_or_default();
        apply(&mut payload);
        let at = now();
        thread_item::Entity::update_many()
            .col_expr(thread_item::Column::Payload, Expr::value(payload.clone()))
            .col_expr(
                thread_item::Column::Status,
                Expr::value(ItemStatus::Completed),
            )
            .col_expr(thread_item::Column::UpdatedAt, Expr::value(at))
            .filter(thread_item::Column::Id.eq(row.id.as_str()))
            .exec(&txn)
            .await?;
        let turn_id = row.reply_to.clone().ok_or(StoreError::ItemNotFound)?;
        let reopened = thread_item::Entity::update_many()
            .col_expr(
                thread_item::Column::Status,
                Expr::value(ItemStatus::Pending),
            )
            .col_expr(thread_item::Column::UpdatedAt, Expr::value(at))
            .filter(thread_item::Column::Id.eq(turn_id.as_str()))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(thread_item::Column::Status.eq(ItemStatus::Completed))
            .exec(&txn)
            .await?;
        if reopened.rows_affected != 1 {
            txn.rollback().await?;
            return Err(StoreError::TurnInProgress);
        }
        let turn = thread_item::Entity::find_by_id(turn_id.as_str())
            .one(&txn)
            .await?
            .ok_or(StoreError::ItemNotFound)?;
        txn.commit().await?;
        row.payload = Some(payload);
        row.status = ItemStatus::Completed;
        row.updated_at = at;
        Ok((turn, row))
    }

    /// Closes the thread's pending client tool calls and questions other than `keep`:
    /// at most one is open at a time.
    pub async fn drop_pending_except(
        &self,
        user: &UserId,
        keep: &thread_item::Model,
    ) -> Result<(), StoreError> {
        thread_item::Entity::update_many()
            .col_expr(
                thread_item::Column::Status,
                Expr::value(ItemStatus::Cancelled),
            )
            .col_expr(thread_item::Column::UpdatedAt, Expr::value(now()))
            .filter(thread_item::Column::ThreadId.eq(keep.thread_id.as_str()))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(
                thread_item::Column::ItemType
                    .is_in([ItemType::ClientToolCall, ItemType::StructuredInput]),
            )
            .filter(thread_item::Column::Status.eq(ItemStatus::Pending))
            .filter(thread_item::Column::Id.ne(keep.id.as_str()))
            .exec(&self.write)
            .await?;
        Ok(())
    }
}

/// The task list a row holds, if it is a task-list widget.
fn task_list_of(row: &thread_item::Model) -> Option<TaskList> {
    if row.item_type != ItemType::Widget {
        return None;
    }
    serde_json::from_value(row.payload.clone()?).ok()
}
