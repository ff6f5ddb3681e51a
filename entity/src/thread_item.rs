use sea_orm::entity::prelude::*;

/// One entry of a thread: a user or assistant message, or a tool call the agent made.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "thread_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub thread_id: String,
    pub user_id: String,
    /// `user_message`, `assistant_message`, `workflow` (the tool calls made for one
    /// answer, in `payload`) or `tool_call` (one call per row; written before workflows).
    pub item_type: String,
    pub role: String,
    pub content: String,
    pub payload: Option<Json>,
    /// The caller's `Idempotency-Key` (user messages only); unique per user.
    pub client_key: Option<String>,
    /// For assistant messages and tool calls: the user message they answer.
    pub reply_to: Option<String>,
    /// User messages: `pending` (agent running), `completed`, `failed`.
    pub status: String,
    /// The user's rating of the item (`positive` or `negative`), from ChatKit feedback.
    pub feedback: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::thread::Entity",
        from = "Column::ThreadId",
        to = "super::thread::Column::Id",
        on_delete = "Cascade"
    )]
    Thread,
}

impl Related<super::thread::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Thread.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
