use entity::{thread, thread_item};
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use serde_json::Value;

use super::{
    rows::{into_page, keyset, Page, MESSAGE_TYPES},
    Store, StoreError,
};
use crate::domain::{now, Cursor, Order, ThreadId, Title, UserId};

/// The user's messages (not tool calls) in the thread.
fn messages_of(user: &UserId, thread_id: &ThreadId) -> sea_orm::Select<thread_item::Entity> {
    thread_item::Entity::find()
        .filter(thread_item::Column::ThreadId.eq(thread_id.as_str()))
        .filter(thread_item::Column::UserId.eq(user.as_str()))
        .filter(thread_item::Column::ItemType.is_in(MESSAGE_TYPES))
}

impl Store {
    /// The user's threads, most recent activity first.
    pub async fn list_threads(
        &self,
        user: &UserId,
        limit: u64,
        after: Option<&Cursor>,
    ) -> Result<Page<thread::Model>, StoreError> {
        let query = keyset(
            thread::Entity::find().filter(thread::Column::UserId.eq(user.as_str())),
            thread::Column::UpdatedAt,
            thread::Column::Id,
            after,
            Order::Desc,
        );
        let rows = query.limit(limit + 1).all(&self.read).await?;
        Ok(into_page(rows, limit, |t| Cursor {
            at: t.updated_at,
            id: t.id.clone(),
        }))
    }

    /// A new, empty thread of the user's.
    pub async fn create_thread(
        &self,
        user: &UserId,
        title: Title,
        metadata: Value,
    ) -> Result<thread::Model, StoreError> {
        let at = now();
        let thread = thread::Model {
            id: ThreadId::new().as_str().to_owned(),
            user_id: user.as_str().to_owned(),
            title: title.into_inner(),
            metadata,
            status: "active".into(),
            message_count: 0,
            created_at: at,
            updated_at: at,
        };
        super::insert_rows::<thread::Entity, _>(&self.write, vec![thread.clone()]).await?;
        Ok(thread)
    }

    /// The thread if it exists and belongs to `user`; anything else is `ThreadNotFound`.
    pub async fn get_thread(
        &self,
        user: &UserId,
        id: &ThreadId,
    ) -> Result<thread::Model, StoreError> {
        thread::Entity::find_by_id(id.as_str())
            .filter(thread::Column::UserId.eq(user.as_str()))
            .one(&self.read)
            .await?
            .ok_or(StoreError::ThreadNotFound)
    }

    /// Renames the thread and/or replaces its metadata; `ThreadNotFound` unless it is the
    /// user's.
    pub async fn update_thread(
        &self,
        user: &UserId,
        id: &ThreadId,
        title: Option<Title>,
        metadata: Option<Value>,
    ) -> Result<thread::Model, StoreError> {
        let mut thread = self.get_thread(user, id).await?;
        if title.is_none() && metadata.is_none() {
            return Ok(thread);
        }
        if let Some(title) = title {
            thread.title = title.into_inner();
        }
        if let Some(metadata) = metadata {
            thread.metadata = metadata;
        }
        thread.updated_at = now();
        // Scoped update: a row deleted (or never owned) in between is not resurrected.
        let result = thread::Entity::update_many()
            .col_expr(thread::Column::Title, Expr::value(thread.title.clone()))
            .col_expr(
                thread::Column::Metadata,
                Expr::value(thread.metadata.clone()),
            )
            .col_expr(thread::Column::UpdatedAt, Expr::value(thread.updated_at))
            .filter(thread::Column::Id.eq(id.as_str()))
            .filter(thread::Column::UserId.eq(user.as_str()))
            .exec(&self.write)
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::ThreadNotFound);
        }
        Ok(thread)
    }

    /// Deletes the thread; its items go with it (foreign key cascade).
    pub async fn delete_thread(&self, user: &UserId, id: &ThreadId) -> Result<(), StoreError> {
        let result = thread::Entity::delete_many()
            .filter(thread::Column::Id.eq(id.as_str()))
            .filter(thread::Column::UserId.eq(user.as_str()))
            .exec(&self.write)
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::ThreadNotFound);
        }
        Ok(())
    }

    /// A page of the thread's messages in `order`.
    pub async fn list_messages(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        limit: u64,
        after: Option<&Cursor>,
        order: Order,
    ) -> Result<Page<thread_item::Model>, StoreError> {
        self.get_thread(user, thread_id).await?;
        self.message_page(user, thread_id, limit, after, order)
            .await
    }

    pub(crate) async fn message_page(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        limit: u64,
        after: Option<&Cursor>,
        order: Order,
    ) -> Result<Page<thread_item::Model>, StoreError> {
        let query = keyset(
            messages_of(user, thread_id),
            thread_item::Column::CreatedAt,
            thread_item::Column::Id,
            after,
            order,
        );
        let rows = query.limit(limit + 1).all(&self.read).await?;
        Ok(into_page(rows, limit, |m| Cursor {
            at: m.created_at,
            id: m.id.clone(),
        }))
    }

    /// Adds one message to the thread's counters and marks it active now. Runs inside the
    /// caller's transaction; `ThreadNotFound` if the thread is gone or not the user's.
    pub(crate) async fn bump_thread<C: sea_orm::ConnectionTrait>(
        conn: &C,
        user: &UserId,
        thread_id: &str,
        at: chrono::DateTime<chrono::Utc>,
        messages: i32,
    ) -> Result<(), StoreError> {
        let result = thread::Entity::update_many()
            .col_expr(
                thread::Column::MessageCount,
                Expr::col(thread::Column::MessageCount).add(messages),
            )
            .col_expr(thread::Column::UpdatedAt, Expr::value(at))
            .filter(thread::Column::Id.eq(thread_id))
            .filter(thread::Column::UserId.eq(user.as_str()))
            .exec(conn)
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::ThreadNotFound);
        }
        Ok(())
    }
}
