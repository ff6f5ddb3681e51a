use sea_orm::entity::prelude::*;

/// One entry of a thread: a user or assistant message, or a tool call the agent made.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "thread_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub thread_id: String,
    pub user_id: String,
    pub item_type: ItemType,
    pub role: Role,
    pub content: String,
    pub payload: Option<Json>,
    /// The caller's `Idempotency-Key` (user messages only); unique per user.
    pub client_key: Option<String>,
    /// For assistant messages and tool calls: the user message they answer.
    pub reply_to: Option<String>,
    /// User messages: `pending` (agent running), `completed`, `failed`; every other item
    /// is `completed`.
    pub status: ItemStatus,
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

// The three enums are stored as their strings (varchar columns, not database enums), so
// adding a variant needs no migration; a row holding a string no variant names fails to
// load, which is why each variant spells out the exact string it has always been stored as.

/// What an item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum ItemType {
    #[sea_orm(string_value = "user_message")]
    UserMessage,
    #[sea_orm(string_value = "assistant_message")]
    AssistantMessage,
    /// The tool calls made for one answer, in `payload`.
    #[sea_orm(string_value = "workflow")]
    Workflow,
    /// One tool call per row, as answers were recorded before workflows existed.
    #[sea_orm(string_value = "tool_call")]
    ToolCall,
    /// Structured content a client renders (a task list), its data in `payload`.
    #[sea_orm(string_value = "widget")]
    Widget,
    /// What the model should know on later turns but no client is shown (a click on a
    /// widget, a stopped answer).
    #[sea_orm(string_value = "hidden_context")]
    HiddenContext,
    /// A call of a tool the client runs: `pending` until its output arrives.
    #[sea_orm(string_value = "client_tool_call")]
    ClientToolCall,
    /// Questions put to the user: `pending` until answered.
    #[sea_orm(string_value = "structured_input")]
    StructuredInput,
}

impl ItemType {
    /// Who an item of this type speaks for.
    #[must_use]
    pub fn role(self) -> Role {
        match self {
            Self::UserMessage => Role::User,
            Self::AssistantMessage | Self::Widget | Self::StructuredInput => Role::Assistant,
            Self::Workflow | Self::ToolCall | Self::ClientToolCall => Role::Tool,
            Self::HiddenContext => Role::System,
        }
    }

    /// The stored string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserMessage => "user_message",
            Self::AssistantMessage => "assistant_message",
            Self::Workflow => "workflow",
            Self::ToolCall => "tool_call",
            Self::Widget => "widget",
            Self::HiddenContext => "hidden_context",
            Self::ClientToolCall => "client_tool_call",
            Self::StructuredInput => "structured_input",
        }
    }
}

/// Who an item speaks for, in the chat-completions sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Role {
    #[sea_orm(string_value = "user")]
    User,
    #[sea_orm(string_value = "assistant")]
    Assistant,
    #[sea_orm(string_value = "tool")]
    Tool,
    /// Context for the model alone.
    #[sea_orm(string_value = "system")]
    System,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
            Self::System => "system",
        }
    }
}

/// Where an item stands: a user message (a turn) while the agent answers it, a client
/// tool call or structured input until the client answers; every other item is
/// `Completed`, or `Cancelled` for an answer the user stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum ItemStatus {
    /// The agent is answering it.
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "completed")]
    Completed,
    /// The agent did not answer it; an `Idempotency-Key` retry may claim it.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// An answer the user stopped: what was said before the stop.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl ItemStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;

    use super::*;

    #[test]
    fn the_names_shown_are_the_strings_stored() {
        for role in Role::iter() {
            assert_eq!(role.as_str(), role.to_value());
        }
        for status in ItemStatus::iter() {
            assert_eq!(status.as_str(), status.to_value());
        }
        for kind in ItemType::iter() {
            assert_eq!(kind.as_str(), kind.to_value());
        }
    }

    #[test]
    fn every_stored_string_loads_and_others_do_not() {
        let stored = [
            "user_message",
            "assistant_message",
            "workflow",
            "tool_call",
            "widget",
            "hidden_context",
            "client_tool_call",
            "structured_input",
        ];
        let loaded: Vec<ItemType> = stored
            .iter()
            .map(|s| ItemType::try_from_value(&(*s).to_owned()).unwrap())
            .collect();
        assert_eq!(loaded, ItemType::iter().collect::<Vec<_>>());
        assert!(ItemType::try_from_value(&"message".to_owned()).is_err());
        assert!(ItemStatus::try_from_value(&"Pending".to_owned()).is_err());
    }
}
