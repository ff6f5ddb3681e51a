//! The row vocabulary the store's modules share: what a `thread_items` row may say (item
//! types, statuses), how a new one is built and inserted, what a recorded turn and answer
//! are, and keyset paging. A leaf: it imports no other part of the store, so every store module
//! can use it without importing another.

use chrono::{DateTime, Utc};
use entity::{thread, thread_item};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use entity::thread_item::{ItemStatus, ItemType, Role};

use crate::domain::{new_id, Cursor, Order, Title, ToolCallRecord, UserId};

/// Item types shown as messages (tool calls are recorded but listed separately).
pub(crate) const MESSAGE_TYPES: [ItemType; 2] = [ItemType::UserMessage, ItemType::AssistantMessage];

/// Item types the model reads as the thread's history: the messages, and what it was told
/// out of sight of the user (a click on a widget, a stopped answer).
pub(crate) const HISTORY_TYPES: [ItemType; 3] = [
    ItemType::UserMessage,
    ItemType::AssistantMessage,
    ItemType::HiddenContext,
];

/// A turn as stored: the user's message item. Its status is the turn's (`pending` while
/// the agent runs, then `completed` or `failed`); the items of its answer point back to
/// it through `reply_to`.
pub type Turn = thread_item::Model;

/// A turn's recorded answer: the assistant's message item and the tool calls made for it,
/// in order.
#[derive(Clone, Debug)]
pub struct RecordedAnswer {
    /// The assistant message.
    pub item: thread_item::Model,
    /// The tool calls made for it, in order.
    pub tool_calls: Vec<ToolCallRecord>,
    /// The item holding the tool calls (absent when no tool ran, and for answers recorded
    /// before workflows existed, whose calls are one `tool_call` item each).
    pub workflow: Option<thread_item::Model>,
    /// The answer's other items (a widget, a hidden note), in order.
    pub extras: Vec<thread_item::Model>,
}

/// An item an answer adds beside its message and workflow, under the id and instant it
/// was announced with.
#[derive(Clone, Debug)]
pub struct NewItem {
    pub id: String,
    pub at: DateTime<Utc>,
    pub kind: ItemType,
    pub content: String,
    pub payload: Option<Value>,
    pub status: ItemStatus,
}

impl NewItem {
    /// The row of this item in `thread_id`, owned by `user`, answering `reply_to`.
    pub(crate) fn row(
        &self,
        thread_id: &str,
        user: &UserId,
        reply_to: Option<&str>,
    ) -> thread_item::Model {
        let mut row = item(thread_id, user, self.kind, self.content.clone(), self.at);
        row.id = self.id.clone();
        row.payload = self.payload.clone();
        row.status = self.status;
        row.reply_to = reply_to.map(str::to_owned);
        row
    }
}

/// A thread as a list shows it to ChatKit (`threads.list`): the protocol sends nothing else
/// of a listed thread, so the list reads nothing else.
#[derive(Clone, Debug)]
pub struct ListedThread {
    pub id: String,
    pub title: String,
    pub created_at: DateTime<Utc>,
}

/// An item row of the hot reads with its payload as the database sent it, JSON text: a
/// reader that can answer from the text (one that keeps rendered items) need not parse it.
#[derive(Clone, Debug)]
pub struct ItemRow {
    /// The row, its `payload` left `None`.
    pub row: thread_item::Model,
    pub payload: Option<String>,
}

impl ItemRow {
    /// The row with its payload parsed.
    pub fn into_model(self) -> Result<thread_item::Model, DbErr> {
        let Self { mut row, payload } = self;
        row.payload = payload
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| DbErr::Type(format!("item {} payload: {e}", row.id)))?;
        Ok(row)
    }

    /// The row as a page read shows it, borrowed.
    #[must_use]
    pub fn view(&self) -> ItemView<'_> {
        ItemView {
            id: &self.row.id,
            thread_id: &self.row.thread_id,
            item_type: self.row.item_type,
            status: self.row.status,
            created_at: self.row.created_at,
            content: &self.row.content,
            payload: self.payload.as_deref(),
        }
    }
}

/// An item row as a page read received it, borrowed: enough for a reader to tell whether
/// it already knows the row (see [`Fetched`]) before any of its values is copied.
pub struct ItemView<'a> {
    pub id: &'a str,
    pub thread_id: &'a str,
    pub item_type: ItemType,
    pub status: ItemStatus,
    pub created_at: DateTime<Utc>,
    pub content: &'a str,
    /// The payload's JSON text.
    pub payload: Option<&'a str>,
}

/// An item of a page read: what the reader said it already knew of the row, or the row.
/// Unboxed: on REST reads every item is a row, and a box would be one more allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Fetched<T> {
    Known(T),
    Row(ItemRow),
}

/// Ids and instants of the items an answer will be recorded as. They are chosen when the
/// items are first announced to a listener, so a stream and a later reload agree.
#[derive(Clone, Debug)]
pub struct AnswerIds {
    /// The assistant message's id.
    pub message_id: String,
    /// The assistant message's `created_at`.
    pub message_at: DateTime<Utc>,
    /// The workflow item's id and `created_at`, when tools ran.
    pub workflow: Option<(String, DateTime<Utc>)>,
    /// `Completed`, or `Cancelled` for an answer the user stopped.
    pub message_status: ItemStatus,
    /// The answer's other items.
    pub extras: Vec<NewItem>,
}

/// A new completed item of `kind`, owned by `user`, created and updated at `at`.
pub(crate) fn item(
    thread_id: &str,
    user: &UserId,
    kind: ItemType,
    content: String,
    at: DateTime<Utc>,
) -> thread_item::Model {
    let prefix = if kind == ItemType::ToolCall {
        "tc"
    } else {
        "msg"
    };
    thread_item::Model {
        id: new_id(prefix),
        thread_id: thread_id.to_owned(),
        user_id: user.as_str().to_owned(),
        item_type: kind,
        role: kind.role(),
        content,
        payload: None,
        client_key: None,
        reply_to: None,
        status: ItemStatus::Completed,
        feedback: None,
        created_at: at,
        updated_at: at,
    }
}

/// The thread a user's first message starts, as it is recorded with that message: titled
/// after the message, holding it, created and active at its instant.
#[must_use]
pub fn started_thread(turn: &Turn) -> thread::Model {
    thread::Model {
        id: turn.thread_id.clone(),
        user_id: turn.user_id.clone(),
        title: Title::from_message(&turn.content).into_inner(),
        metadata: Value::Object(serde_json::Map::new()),
        status: "active".into(),
        message_count: 1,
        created_at: turn.created_at,
        updated_at: turn.created_at,
    }
}

/// The payload of a `workflow` item.
#[derive(Serialize, Deserialize)]
struct WorkflowPayload {
    tool_calls: Vec<ToolCallRecord>,
}

#[must_use]
pub fn workflow_payload(calls: &[ToolCallRecord]) -> Value {
    serde_json::json!({ "tool_calls": calls })
}

/// The tool calls a `workflow` (or legacy `tool_call`) item holds.
#[must_use]
pub fn tool_calls_of(row: &thread_item::Model) -> Vec<ToolCallRecord> {
    tool_calls_in(row.item_type, row.payload.clone())
}

/// The tool calls in the payload of an item of `kind` ([`tool_calls_of`], taking the
/// payload).
#[must_use]
pub fn tool_calls_in(kind: ItemType, payload: Option<Value>) -> Vec<ToolCallRecord> {
    let Some(payload) = payload else {
        return Vec::new();
    };
    match kind {
        ItemType::Workflow => serde_json::from_value::<WorkflowPayload>(payload)
            .map(|w| w.tool_calls)
            .unwrap_or_default(),
        ItemType::ToolCall => serde_json::from_value(payload)
            .map(|c| vec![c])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// One page of a keyset-paginated listing; `next` is present when more rows follow.
#[derive(Debug)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Where the next page starts, when more rows follow.
    pub next: Option<Cursor>,
}

/// The item types not in `types`: a read of a thread's items names the types it leaves
/// out (see [`items_of_thread`]).
pub(crate) fn types_left_out(types: &[ItemType]) -> impl Iterator<Item = ItemType> + '_ {
    use sea_orm::Iterable;
    ItemType::iter().filter(|t| !types.contains(t))
}

/// The items of `types` of the user's thread `thread_id`, for a read that walks the
/// `(thread_id, created_at, id)` index. PostgreSQL plans such a read once per connection
/// for any thread (a generic plan), from a row estimate; when the estimate falls below a
/// page it fetches every item of the thread and sorts them, seconds on a long thread.
/// So the read filters the items by nothing that shrinks the estimate below the truth:
/// the user is checked on the thread's row (its items are written with its user), and
/// types by those left out (an unanalysed `IN` list is guessed at 0.5% a value).
pub(crate) fn items_of_thread(
    user: &UserId,
    thread_id: &str,
    types: &[ItemType],
) -> sea_orm::Select<thread_item::Entity> {
    use sea_orm::{
        sea_query::{Expr, Query},
        EntityTrait,
    };
    let owned = Query::select()
        .expr(Expr::val(1))
        .from(thread::Entity)
        .and_where(thread::Column::Id.eq(thread_id))
        .and_where(thread::Column::UserId.eq(user.as_str()))
        .to_owned();
    let mut query = thread_item::Entity::find()
        .filter(thread_item::Column::ThreadId.eq(thread_id))
        .filter(Expr::exists(owned));
    let left_out: Vec<ItemType> = types_left_out(types).collect();
    if !left_out.is_empty() {
        query = query.filter(thread_item::Column::ItemType.is_not_in(left_out));
    }
    query
}

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
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next = if has_more { rows.last().map(key) } else { None };
    Page { items: rows, next }
}

/// Inserts fully built rows without reading them back. (SeaORM re-selects every inserted
/// row on SQLite, one more round trip to the connection's worker per row; these rows are
/// already known in full.)
pub(crate) async fn insert_rows<E, C>(conn: &C, rows: Vec<E::Model>) -> Result<(), DbErr>
where
    E: sea_orm::EntityTrait,
    E::Model: sea_orm::IntoActiveModel<E::ActiveModel>,
    C: ConnectionTrait,
{
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    if rows.is_empty() {
        return Ok(());
    }
    E::insert_many(rows.into_iter().map(|m| m.into_active_model().reset_all()))
        .exec_without_returning(conn)
        .await?;
    Ok(())
}
