use std::convert::Infallible;

use chrono::{DateTime, Utc};
use entity::{thread, thread_item};
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::Value;

use super::{
    batched::{Batched, Wanted},
    reads::{self, Param, Rows},
    rows::{
        insert_rows, into_page, types_left_out, Fetched, ItemType, ItemView, ListedThread, Page,
    },
    Store, StoreError,
};
use crate::domain::{now, Cursor, Order, ThreadId, Title, UserId};

/// The SQL of [`Store::thread_and_items`]: the thread row, then a keyset page of its items,
/// in one result (both databases; `$n` placeholders, SQLite reads them by number too).
/// Item columns line up with the thread's where they mean the same (`title` with
/// `content`, `metadata` with `payload`); `k` tells the rows apart. The NULLs are typed
/// (`CAST`, which both databases read) so PostgreSQL can match the two halves' columns. The page is the same
/// query as `rows::keyset` builds over `rows::items_of_thread`, so the `thread_items`
/// page index serves it, for a thread of any length. On PostgreSQL the thread's `jsonb`
/// metadata is cast to the payloads' `json`.
fn thread_and_items_sql(types: &[ItemType], after: bool, order: Order, postgres: bool) -> String {
    thread_and_items_of("$1", "$2", types, after, order, postgres)
}

/// [`thread_and_items_sql`]'s first page for every request of a batch, on PostgreSQL: the
/// same read for each user and thread of the arrays `$1` and `$2`, `$3` rows, each row
/// followed by its request's place (see [`batched`]).
pub(super) fn batched_thread_and_items_sql(types: &[ItemType], order: Order) -> String {
    format!(
        "SELECT r.*, q.n - 1 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY \
             AS q(user_id, thread_id, n) \
         CROSS JOIN LATERAL ({}) AS r",
        thread_and_items_of("q.thread_id", "q.user_id", types, false, order, true)
    )
}

/// [`thread_and_items_sql`], the thread's id and the user's taken from `thread` and `user`.
fn thread_and_items_of(
    thread: &str,
    user: &str,
    types: &[ItemType],
    after: bool,
    order: Order,
    postgres: bool,
) -> String {
    let left_out = types_left_out(types)
        .map(|t| format!("'{}'", t.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let types = if left_out.is_empty() {
        String::new()
    } else {
        format!("AND item_type NOT IN ({left_out})")
    };
    let (cmp, dir) = match order {
        Order::Asc => (">", "ASC"),
        Order::Desc => ("<", "DESC"),
    };
    let after = if after {
        format!("AND (created_at {cmp} $4 OR (created_at = $4 AND id {cmp} $5))")
    } else {
        String::new()
    };
    let metadata = if postgres {
        "CAST(metadata AS json)"
    } else {
        "metadata"
    };
    format!(
        "SELECT 0 AS k, id, title AS content, {metadata} AS payload, status, \
                message_count, created_at, updated_at, CAST(NULL AS VARCHAR) AS item_type, \
                CAST(NULL AS VARCHAR) AS role, CAST(NULL AS VARCHAR) AS client_key, \
                CAST(NULL AS VARCHAR) AS reply_to, CAST(NULL AS VARCHAR) AS feedback \
         FROM threads WHERE id = {thread} AND user_id = {user} \
         UNION ALL \
         SELECT * FROM (SELECT 1, id, content, payload, status, CAST(NULL AS INTEGER), \
                created_at, updated_at, item_type, role, client_key, reply_to, feedback \
             FROM thread_items \
             WHERE thread_id = {thread} {types} {after} \
                 AND EXISTS (SELECT 1 FROM threads WHERE id = {thread} AND user_id = {user}) \
             ORDER BY created_at {dir}, id {dir} LIMIT $3) AS page"
    )
}

/// The first page of the user's threads newest first (as [`threads_sql`] reads it), for
/// every user of the array `$1`, `$2` rows each, each row followed by its request's place
/// (see [`batched`]). SQLite has no lateral join: each user's page is a list of rowids the
/// `(user_id, created_at, id)` index gives, and the rows are looked up by rowid.
pub(super) fn batched_first_threads_sql(postgres: bool) -> &'static str {
    if postgres {
        "SELECT t.id, t.title, t.created_at, q.n - 1 \
         FROM unnest($1::text[]) WITH ORDINALITY AS q(user_id, n) \
         CROSS JOIN LATERAL (SELECT id, title, created_at FROM threads \
             WHERE user_id = q.user_id ORDER BY created_at DESC, id DESC LIMIT $2) AS t"
    } else {
        "SELECT t.id, t.title, t.created_at, q.key FROM json_each($1) AS q \
         JOIN threads AS t ON t.rowid IN (SELECT rowid FROM threads WHERE user_id = q.value \
             ORDER BY created_at DESC, id DESC LIMIT $2)"
    }
}

/// Every column of a thread, in the order `reads::*::thread` decodes them.
const THREAD_COLUMNS: &str = "id, title, metadata, status, message_count, created_at, updated_at";

/// The columns of a [`ListedThread`], in the order `reads::*::listed_thread` decodes them.
const LISTED_COLUMNS: &str = "id, title, created_at";

/// The SQL of the thread lists: `columns` of a keyset page of the user's threads by `time`
/// (the same query as `rows::keyset` builds, so the `(user_id, time, id)` index serves it).
fn threads_sql(columns: &str, time: &str, after: bool, order: Order) -> String {
    let (cmp, dir) = match order {
        Order::Asc => (">", "ASC"),
        Order::Desc => ("<", "DESC"),
    };
    let after = if after {
        format!("AND ({time} {cmp} $3 OR ({time} = $3 AND id {cmp} $4))")
    } else {
        String::new()
    };
    format!(
        "SELECT {columns} FROM threads WHERE user_id = $1 {after} \
         ORDER BY {time} {dir}, id {dir} LIMIT $2"
    )
}

/// Rows of either database as models, with the same code.
macro_rules! decode_rows {
    ($rows:expr, |$row:ident, $d:ident| $body:expr) => {
        match $rows {
            Rows::Postgres(rows) => {
                use reads::postgres_rows as $d;
                rows.iter().map(|$row| $body).collect::<Result<Vec<_>, _>>()
            }
            Rows::Sqlite(rows) => {
                use reads::sqlite_rows as $d;
                rows.iter().map(|$row| $body).collect::<Result<Vec<_>, _>>()
            }
        }
    };
}

/// An item or the thread, as a row of the thread-and-items read says.
enum Either<'r, T> {
    Thread(thread::Model),
    /// The item's place in the page (creation time, id, borrowed from the answer), and the
    /// item.
    Item((DateTime<Utc>, &'r str), Fetched<T>),
}

impl Store {
    /// The user's threads, most recent activity first.
    pub async fn list_threads(
        &self,
        user: &UserId,
        limit: u64,
        after: Option<&Cursor>,
    ) -> Result<Page<thread::Model>, StoreError> {
        let rows = self
            .thread_page("updated_at", user, limit, after, Order::Desc)
            .await?;
        Ok(into_page(rows, limit, |t| Cursor {
            at: t.updated_at,
            id: t.id.clone(),
        }))
    }

    /// A keyset page of the user's threads by `time`, `limit + 1` of them (see
    /// [`threads_sql`]).
    pub(super) async fn thread_page(
        &self,
        time: &str,
        user: &UserId,
        limit: u64,
        after: Option<&Cursor>,
        order: Order,
    ) -> Result<Vec<thread::Model>, StoreError> {
        let rows = self
            .thread_rows(THREAD_COLUMNS, time, user, limit, after, order)
            .await?;
        Ok(decode_rows!(&rows, |row, d| d::thread(row, 0, user)).map_err(reads::decode_err)?)
    }

    /// The user's `limit + 1` newest threads as ChatKit lists them, read in a batch (see
    /// [`batched`]), newest first; maybe more, when another request of the batch wanted
    /// more ([`into_page`] keeps the page).
    pub(super) async fn first_listed_threads(
        &self,
        user: &UserId,
        limit: u64,
    ) -> Result<Vec<ListedThread>, StoreError> {
        let wanted = Wanted {
            user: user.clone(),
            thread: None,
            rows: limit.saturating_add(1),
        };
        let rows = self.lists.read(wanted).await?;
        let mut threads =
            decode_rows!(&rows, |row, d| d::listed_thread(row)).map_err(reads::decode_err)?;
        // A batch's rows come in no promised order: the lone read's, newest first (ids
        // compared as bytes, as SQLite compares text; on PostgreSQL ids are ASCII, whose
        // order every collation keeps).
        threads.sort_unstable_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(threads)
    }

    /// The batched reader of a first page of items of `types` in `order`: on PostgreSQL
    /// only, which reads each request's page by its own lateral scan. SQLite has no
    /// lateral join, and a statement per request there is a call on its own thread.
    fn item_pages(&self, types: &[ItemType], first: bool, order: Order) -> Option<Batched> {
        if !first || !self.reads.is_postgres() {
            return None;
        }
        let kind = types
            .iter()
            .fold(u16::from(order == Order::Asc) << 15, |kind, t| {
                kind | 1 << (*t as u16)
            });
        if let Some(pages) = self.pages.read().ok()?.get(&kind) {
            return Some(pages.clone());
        }
        let mut all = self.pages.write().ok()?;
        let pages = all.entry(kind).or_insert_with(|| {
            Batched::spawn(&self.reads, batched_thread_and_items_sql(types, order))
        });
        Some(pages.clone())
    }

    /// As [`Store::thread_page`] by creation time, each thread only as ChatKit lists it.
    pub(super) async fn listed_thread_page(
        &self,
        user: &UserId,
        limit: u64,
        after: Option<&Cursor>,
        order: Order,
    ) -> Result<Vec<ListedThread>, StoreError> {
        let rows = self
            .thread_rows(LISTED_COLUMNS, "created_at", user, limit, after, order)
            .await?;
        Ok(decode_rows!(&rows, |row, d| d::listed_thread(row)).map_err(reads::decode_err)?)
    }

    async fn thread_rows(
        &self,
        columns: &str,
        time: &str,
        user: &UserId,
        limit: u64,
        after: Option<&Cursor>,
        order: Order,
    ) -> Result<Rows, StoreError> {
        let mut params = vec![
            Param::Str(user.as_str()),
            Param::Int(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)),
        ];
        if let Some(cursor) = after {
            params.push(Param::At(cursor.at));
            params.push(Param::Str(&cursor.id));
        }
        let sql = threads_sql(columns, time, after.is_some(), order);
        Ok(self.reads.fetch_all(&sql, &params).await?)
    }

    /// The thread (if it is the user's) and a page of its items of `types`, in `order`
    /// after `after`: one round trip where it was two, on a kept connection (see
    /// [`reads`]).
    pub async fn thread_and_items(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        types: &[ItemType],
        limit: u64,
        after: Option<&Cursor>,
        order: Order,
    ) -> Result<(thread::Model, Page<thread_item::Model>), StoreError> {
        let (thread, page) = self
            .thread_and_item_rows(user, thread_id, types, limit, after, order, |_| {
                None::<Infallible>
            })
            .await?;
        let items = page
            .items
            .into_iter()
            .map(|item| match item {
                Fetched::Row(row) => row.into_model(),
                Fetched::Known(never) => match never {},
            })
            .collect::<Result<_, _>>()?;
        Ok((
            thread,
            Page {
                items,
                next: page.next,
            },
        ))
    }

    /// [`Store::thread_and_items`], the items' payloads left as the database's text, and
    /// each row first shown to `known`: a row it knows is not copied out of the answer.
    #[allow(clippy::too_many_arguments)]
    pub async fn thread_and_item_rows<T>(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
        types: &[ItemType],
        limit: u64,
        after: Option<&Cursor>,
        order: Order,
        known: impl Fn(&ItemView<'_>) -> Option<T>,
    ) -> Result<(thread::Model, Page<Fetched<T>>), StoreError> {
        // A first page on PostgreSQL is read in a batch (see [`batched`]); its rows carry
        // one more column, the request's place, which decoding does not read.
        let rows = match self.item_pages(types, after.is_none(), order) {
            Some(pages) => {
                let wanted = Wanted {
                    user: user.clone(),
                    thread: Some(thread_id.clone()),
                    rows: limit.saturating_add(1),
                };
                pages.read(wanted).await?
            }
            None => {
                let mut params = vec![
                    Param::Str(thread_id.as_str()),
                    Param::Str(user.as_str()),
                    Param::Int(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)),
                ];
                if let Some(cursor) = after {
                    params.push(Param::At(cursor.at));
                    params.push(Param::Str(&cursor.id));
                }
                let postgres = self.reads.is_postgres();
                let sql = thread_and_items_sql(types, after.is_some(), order, postgres);
                self.reads.fetch_all(&sql, &params).await?
            }
        };
        let rows = decode_rows!(&rows, |row, d| if d::is_thread(row)? {
            d::thread(row, 1, user).map(Either::Thread)
        } else {
            let view = d::item_view(row, thread_id.as_str())?;
            let key = (view.created_at, view.id);
            Ok(Either::Item(
                key,
                match known(&view) {
                    Some(t) => Fetched::Known(t),
                    None => Fetched::Row(d::item(row, &view, user)?),
                },
            ))
        })
        .map_err(reads::decode_err)?;
        let mut thread = None;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            match row {
                Either::Thread(t) => thread = Some(t),
                Either::Item(key, item) => items.push((key, item)),
            }
        }
        let thread = thread.ok_or(StoreError::ThreadNotFound)?;
        // Rows of a union come in no promised order: the page's own order, again.
        items.sort_unstable_by(|(a, _), (b, _)| match order {
            Order::Asc => a.cmp(b),
            Order::Desc => b.cmp(a),
        });
        let page = into_page(items, limit, |((at, id), _)| Cursor {
            at: *at,
            id: (*id).to_owned(),
        });
        Ok((
            thread,
            Page {
                items: page.items.into_iter().map(|(_, item)| item).collect(),
                next: page.next,
            },
        ))
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
        insert_rows::<thread::Entity, _>(&self.write, vec![thread.clone()]).await?;
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

    /// Renames the thread to `to` only while its title is still `from` (the one made from
    /// its first message): a title the user set in the meantime stays. The thread as it
    /// is now when renamed, `None` when it was not.
    pub async fn retitle_if(
        &self,
        user: &UserId,
        id: &ThreadId,
        from: &str,
        to: &Title,
    ) -> Result<Option<thread::Model>, StoreError> {
        let result = thread::Entity::update_many()
            .col_expr(thread::Column::Title, Expr::value(to.as_str()))
            .filter(thread::Column::Id.eq(id.as_str()))
            .filter(thread::Column::UserId.eq(user.as_str()))
            .filter(thread::Column::Title.eq(from))
            .exec(&self.write)
            .await?;
        if result.rows_affected == 0 {
            return Ok(None);
        }
        Ok(Some(self.get_thread(user, id).await?))
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

#[cfg(test)]
mod tests {
    use entity::thread_item;
    use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, QueryTrait, Value};

    use super::{batched_thread_and_items_sql, thread_and_items_sql};
    use crate::{
        chatkit::items::VISIBLE_TYPES,
        domain::{Order, UserId},
        store::{
            rows::{ItemType, MESSAGE_TYPES},
            turn_writer::tests::{generic_plan, store},
            turns::history_query,
            Store,
        },
    };

    /// A PostgreSQL store (none on SQLite) with one thread of 30,000 items among 3,000
    /// short ones, in tables never analysed (as after a burst of writes, before autovacuum
    /// comes by): the estimates a generic plan is made from are then the planner's
    /// defaults.
    async fn long_thread(dir: &tempfile::TempDir) -> Option<Store> {
        let store = store(dir).await;
        if !store.reads.is_postgres() {
            return None;
        }
        store
            .write
            .execute_unprepared(
                "ALTER TABLE threads SET (autovacuum_enabled = off); \
                 ALTER TABLE thread_items SET (autovacuum_enabled = off); \
                 INSERT INTO threads (id, user_id, title, metadata, status, message_count, \
                     created_at, updated_at) \
                 SELECT 'thr_' || i, 'u' || (i % 500), 't', '{}', 'active', 0, now(), now() \
                 FROM generate_series(0, 3000) AS i; \
                 INSERT INTO thread_items (id, thread_id, user_id, item_type, role, content, \
                     status, created_at, updated_at) \
                 SELECT 'itm_' || i, CASE WHEN i < 30000 THEN 'thr_0' \
                         ELSE 'thr_' || (1 + i % 3000) END, \
                     CASE WHEN i < 30000 THEN 'u0' ELSE 'u' || ((1 + i % 3000) % 500) END, \
                     CASE WHEN i % 2 = 0 THEN 'user_message' ELSE 'assistant_message' END, \
                     'user', 'hello', 'completed', \
                     now() - i * interval '1 ms', now() \
                 FROM generate_series(0, 36000) AS i",
            )
            .await
            .unwrap();
        Some(store)
    }

    fn assert_walks_the_page_index(plan: &str, backward: bool) {
        let scan = if backward {
            "Index Scan Backward using idx_thread_items_page"
        } else {
            "Index Scan using idx_thread_items_page"
        };
        assert!(plan.contains(scan), "{plan}");
        assert!(!plan.contains("Sort"), "{plan}");
        assert!(!plan.contains("Bitmap"), "{plan}");
    }

    /// PostgreSQL plans a thread's page of items once per connection, whatever thread it
    /// will read; that plan must walk the thread's items in the index's order and stop at
    /// the page, not fetch a long thread's items to sort them, in either order, with or
    /// without a cursor, for every set of types read.
    #[tokio::test]
    async fn a_page_of_items_walks_the_index_however_long_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let Some(store) = long_thread(&dir).await else {
            return;
        };
        let types: [&[ItemType]; 2] = [&VISIBLE_TYPES, &MESSAGE_TYPES];
        for types in types {
            for order in [Order::Desc, Order::Asc] {
                let sql = thread_and_items_sql(types, false, order, true);
                let plan = generic_plan(&store, &sql, "'thr_0', 'u0', 21").await;
                assert_walks_the_page_index(&plan, order == Order::Desc);
                let sql = thread_and_items_sql(types, true, order, true);
                let args = "'thr_0', 'u0', 21, now() - interval '1 s', 'itm_1000'";
                let plan = generic_plan(&store, &sql, args).await;
                assert_walks_the_page_index(&plan, order == Order::Desc);
            }
        }
    }

    /// The same for the batched first page, each request's scan apart: `q` names the
    /// request's thread, so the plan cannot know how long any of them is.
    #[tokio::test]
    async fn a_batch_of_item_pages_walks_the_index_however_long_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let Some(store) = long_thread(&dir).await else {
            return;
        };
        let args = "ARRAY['u0', 'u1'], ARRAY['thr_0', 'thr_1'], 21";
        for order in [Order::Desc, Order::Asc] {
            let sql = batched_thread_and_items_sql(&VISIBLE_TYPES, order);
            let plan = generic_plan(&store, &sql, args).await;
            assert_walks_the_page_index(&plan, order == Order::Desc);
        }
    }

    /// The same for the history a turn reads for the model.
    #[tokio::test]
    async fn a_turns_history_walks_the_index_however_long_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let Some(store) = long_thread(&dir).await else {
            return;
        };
        let user = UserId::parse("u0").unwrap();
        let turn = thread_item::Entity::find_by_id("itm_10")
            .one(&store.write)
            .await
            .unwrap()
            .unwrap();
        let statement = history_query(&user, &turn, 40).build(DbBackend::Postgres);
        let args = statement
            .values
            .iter()
            .flat_map(|values| values.0.iter())
            .map(|value| match value {
                Value::String(Some(s)) => format!("'{s}'"),
                Value::ChronoDateTimeUtc(Some(t)) => format!("'{}'", t.to_rfc3339()),
                Value::BigUnsigned(Some(n)) => n.to_string(),
                Value::Int(Some(n)) => n.to_string(),
                other => panic!("no literal for {other:?}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let plan = generic_plan(&store, &statement.sql, &args).await;
        assert_walks_the_page_index(&plan, true);
    }
}
