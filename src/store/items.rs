//! The item-level operations ChatKit needs beyond REST: lists paged by element id,
//! feedback, and re-answering a turn (retry). Scoped by user like everything else.

use chrono::{DateTime, Utc};
use entity::thread_item;
use sea_orm::{
    sea_query::Expr, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait,
};

use super::{
    rows::{
        after_cursor, into_page, Fetched, ItemStatus, ItemType, ItemView, ListedThread, Page, Turn,
        MESSAGE_TYPES,
    },
    Store, StoreError,
};
use crate::domain::{now, Cursor, ItemId, Order, ThreadId, UserId};

impl Store {
    /// The user's threads by creation time (ChatKit does not reorder by activity); `after`
    /// is the id of the last thread of the previous page.
    pub async fn list_threads_by_creation(
        &self,
        user: &UserId,
        limit: u64,
        after: Option<&ThreadId>,
        order: Order,
    ) -> Result<Page<ListedThread>, StoreError> {
        let after = match after {
            Some(id) => {
                let anchor = self
                    .get_thread(user, id)
                    .await
                    .map_err(|_| StoreError::CursorNotFound)?;
                Some(Cursor {
                    at: anchor.created_at,
                    id: anchor.id,
                })
            }
            None => None,
        };
        // The first page newest first, what a chat UI asks for on every load, is read in
        // batches; the other pages and orders alone.
        let rows = match (&after, order) {
            (None, Order::Desc) => self.first_listed_threads(user, limit).await?,
            _ => {
                self.listed_thread_page(user, limit, after.as_ref(), order)
                    .await?
            }
        };
        Ok(into_page(rows, limit, |t| Cursor {
            at: t.created_at,
            id: t.id.clone(),
        }))
    }

    /// A page of a thread's items of `types`; `after` is the id of the last item of the
    /// previous page. `ThreadNotFound` unless the thread is the user's. Each row is first
    /// shown to `known` (see [`Store::thread_and_item_rows`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn list_items<T>(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        types: &[ItemType],
        limit: u64,
        after: Option<&ItemId>,
        order: Order,
        known: impl Fn(&ItemView<'_>) -> Option<T>,
    ) -> Result<Page<Fetched<T>>, StoreError> {
        let after = match after {
            Some(id) => match self.find_item(user, thread_id, id).await? {
                Some(anchor) => Some(Cursor {
                    at: anchor.created_at,
                    id: anchor.id,
                }),
                // No such item of the user's thread: is there no thread, or no item?
                None => {
                    self.get_thread(user, thread_id).await?;
                    return Err(StoreError::CursorNotFound);
                }
            },
            None => None,
        };
        let (_, page) = self
            .thread_and_item_rows(user, thread_id, types, limit, after.as_ref(), order, known)
            .await?;
        Ok(page)
    }

    /// One item of the user's thread, if it exists.
    pub async fn find_item(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        item_id: &ItemId,
    ) -> Result<Option<thread_item::Model>, StoreError> {
        Ok(thread_item::Entity::find_by_id(item_id.as_str())
            .filter(thread_item::Column::ThreadId.eq(thread_id.as_str()))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .one(&self.read)
            .await?)
    }

    /// Records the user's rating of items of their thread. All or nothing: an id that is
    /// not an item of this thread is `ItemNotFound` and nothing is written.
    pub async fn set_feedback(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        item_ids: &[ItemId],
        kind: &str,
    ) -> Result<(), StoreError> {
        self.get_thread(user, thread_id).await?;
        let mut ids: Vec<&str> = item_ids.iter().map(ItemId::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        let txn = self.write.begin().await?;
        let result = thread_item::Entity::update_many()
            .col_expr(thread_item::Column::Feedback, Expr::value(kind))
            .filter(thread_item::Column::Id.is_in(ids.iter().copied()))
            .filter(thread_item::Column::ThreadId.eq(thread_id.as_str()))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        if result.rows_affected != ids.len() as u64 {
            txn.rollback().await?;
            return Err(StoreError::ItemNotFound);
        }
        txn.commit().await?;
        Ok(())
    }

    /// Re-opens the turn of user message `item_id` for a new answer, atomically: every
    /// item after it goes, the message counts follow, and the turn is pending again.
    /// `TurnInProgress` if a turn of the thread is still being answered (one that went
    /// silent before `stale_before` is not).
    pub async fn reopen_turn(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        item_id: &ItemId,
        stale_before: DateTime<Utc>,
    ) -> Result<Turn, StoreError> {
        let at = now();
        let txn = self.write.begin().await?;
        // The thread row first: every writer of a thread takes its lock in this order.
        Self::bump_thread(&txn, user, thread_id.as_str(), at, 0).await?;
        let target = thread_item::Entity::find_by_id(item_id.as_str())
            .filter(thread_item::Column::ThreadId.eq(thread_id.as_str()))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .one(&txn)
            .await?
            .filter(|row| row.item_type == ItemType::UserMessage)
            .ok_or(StoreError::ItemNotFound)?;
        let running = thread_item::Entity::find()
            .filter(thread_item::Column::ThreadId.eq(thread_id.as_str()))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(thread_item::Column::ItemType.eq(ItemType::UserMessage))
            .filter(thread_item::Column::Status.eq(ItemStatus::Pending))
            .filter(thread_item::Column::UpdatedAt.gte(stale_before))
            .count(&txn)
            .await?;
        if running > 0 {
            return Err(StoreError::TurnInProgress);
        }
        let later = after_cursor(
            thread_item::Column::CreatedAt,
            thread_item::Column::Id,
            &Cursor {
                at: target.created_at,
                id: target.id.clone(),
            },
            Order::Asc,
        );
        let scope = || {
            thread_item::Entity::find()
                .filter(thread_item::Column::ThreadId.eq(thread_id.as_str()))
                .filter(thread_item::Column::UserId.eq(user.as_str()))
        };
        let removed_messages = scope()
            .filter(later.clone())
            .filter(thread_item::Column::ItemType.is_in(MESSAGE_TYPES))
            .count(&txn)
            .await?;
        thread_item::Entity::delete_many()
            .filter(thread_item::Column::ThreadId.eq(thread_id.as_str()))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(later)
            .exec(&txn)
            .await?;
        // Answers recorded for the turn are gone with it (they came after it).
        thread_item::Entity::delete_many()
            .filter(thread_item::Column::ReplyTo.eq(target.id.as_str()))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        let removed = i32::try_from(removed_messages).unwrap_or(i32::MAX);
        Self::bump_thread(&txn, user, thread_id.as_str(), at, -removed).await?;
        thread_item::Entity::update_many()
            .col_expr(
                thread_item::Column::Status,
                Expr::value(ItemStatus::Pending),
            )
            .col_expr(thread_item::Column::UpdatedAt, Expr::value(at))
            .filter(thread_item::Column::Id.eq(target.id.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Turn {
            status: ItemStatus::Pending,
            updated_at: at,
            ..target
        })
    }
}
