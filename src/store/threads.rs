use entity::{thread, thread_item};
use sea_orm::{
    sea_query::Expr, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;

use super::{Page, Store, StoreError};
use crate::domain::{is_valid_id, new_id, now, Cursor, Order, Title, UserId};

/// Item types shown as messages (tool calls are recorded but listed separately).
pub(crate) const MESSAGE_TYPES: [&str; 2] = ["user_message", "assistant_message"];

/// Keyset condition "strictly after `cursor`" for a (time, id) ordering.
pub(crate) fn after_cursor<T: ColumnTrait, I: ColumnTrait>(
    time_col: T,
    id_col: I,
    cursor: &Cursor,
    order: Order,
) -> Condition {
    match order {
        Order::Desc => Condition::any().add(time_col.lt(cursor.at)).add(
            Condition::all()
                .add(time_col.eq(cursor.at))
                .add(id_col.lt(cursor.id.clone())),
        ),
        Order::Asc => Condition::any().add(time_col.gt(cursor.at)).add(
            Condition::all()
                .add(time_col.eq(cursor.at))
                .add(id_col.gt(cursor.id.clone())),
        ),
    }
}

/// A keyset page query: rows strictly after `after` in `order` of (time, id), sorted so.
pub(crate) fn keyset<E, T, I>(
    mut query: sea_orm::Select<E>,
    time_col: T,
    id_col: I,
    after: Option<&Cursor>,
    order: Order,
) -> sea_orm::Select<E>
where
    E: sea_orm::EntityTrait,
    T: ColumnTrait,
    I: ColumnTrait,
{
    if let Some(cursor) = after {
        query = query.filter(after_cursor(time_col, id_col, cursor, order));
    }
    match order {
        Order::Asc => query.order_by_asc(time_col).order_by_asc(id_col),
        Order::Desc => query.order_by_desc(time_col).order_by_desc(id_col),
    }
}

/// Splits a `limit + 1` fetch into the page and the cursor of its last row.
pub(crate) fn into_page<T>(mut rows: Vec<T>, limit: u64, key: impl Fn(&T) -> Cursor) -> Page<T> {
    let has_more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next = if has_more { rows.last().map(key) } else { None };
    Page { items: rows, next }
}

impl Store {
    /// The user's threads, most recent activity first.
    pub async fn list_threads(
        &self,
        user: &UserId,
        limit: u64,
        after: Option<&Cursor>,
    ) -> Result<Page<thread::Model>, StoreError> {
        let mut query = thread::Entity::find().filter(thread::Column::UserId.eq(user.as_str()));
        if let Some(cursor) = after {
            query = query.filter(after_cursor(
                thread::Column::UpdatedAt,
                thread::Column::Id,
                cursor,
                Order::Desc,
            ));
        }
        let rows = query
            .order_by_desc(thread::Column::UpdatedAt)
            .order_by_desc(thread::Column::Id)
            .limit(limit + 1)
            .all(&self.read)
            .await?;
        Ok(into_page(rows, limit, |t| Cursor {
            at: t.updated_at,
            id: t.id.clone(),
        }))
    }

    pub async fn create_thread(
        &self,
        user: &UserId,
        title: Title,
        metadata: Value,
    ) -> Result<thread::Model, StoreError> {
        let at = now();
        let thread = thread::Model {
            id: new_id("thr"),
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
    pub async fn get_thread(&self, user: &UserId, id: &str) -> Result<thread::Model, StoreError> {
        if !is_valid_id("thr", id) {
            return Err(StoreError::ThreadNotFound);
        }
        thread::Entity::find_by_id(id)
            .filter(thread::Column::UserId.eq(user.as_str()))
            .one(&self.read)
            .await?
            .ok_or(StoreError::ThreadNotFound)
    }

    pub async fn update_thread(
        &self,
        user: &UserId,
        id: &str,
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
            .filter(thread::Column::Id.eq(id))
            .filter(thread::Column::UserId.eq(user.as_str()))
            .exec(&self.write)
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::ThreadNotFound);
        }
        Ok(thread)
    }

    /// Deletes the thread; its items go with it (foreign key cascade).
    pub async fn delete_thread(&self, user: &UserId, id: &str) -> Result<(), StoreError> {
        if !is_valid_id("thr", id) {
            return Err(StoreError::ThreadNotFound);
        }
        let result = thread::Entity::delete_many()
            .filter(thread::Column::Id.eq(id))
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
        thread_id: &str,
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
        thread_id: &str,
        limit: u64,
        after: Option<&Cursor>,
        order: Order,
    ) -> Result<Page<thread_item::Model>, StoreError> {
        let query = keyset(
            thread_item::Entity::find()
                .filter(thread_item::Column::ThreadId.eq(thread_id))
                .filter(thread_item::Column::UserId.eq(user.as_str()))
                .filter(thread_item::Column::ItemType.is_in(MESSAGE_TYPES)),
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
