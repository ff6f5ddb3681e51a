//! Items written outside a turn: what a click on a widget changes. The widget's new state,
//! the call that made the change and the note for the model are one transaction, so a
//! reload never shows a widget ahead of the record of what changed it.

use entity::thread_item;
use sea_orm::{
    sea_query::Expr, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, TransactionTrait,
};

use super::{
    rows::{insert_rows, ItemType, NewItem},
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

/// The task list a row holds, if it is a task-list widget.
fn task_list_of(row: &thread_item::Model) -> Option<TaskList> {
    if row.item_type != ItemType::Widget {
        return None;
    }
    serde_json::from_value(row.payload.clone()?).ok()
}
