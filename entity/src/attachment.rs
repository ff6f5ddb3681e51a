use sea_orm::entity::prelude::*;

/// A file or image a user attached (or is about to attach) to a message.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "attachments")]
pub struct Model {
    /// `atc_…`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    /// The thread of the message that used it; NULL until a message does.
    pub thread_id: Option<String>,
    /// The display name (never a path).
    pub name: String,
    pub mime_type: String,
    /// The size announced at creation: the most bytes an upload may bring.
    pub declared_size: i64,
    /// The bytes stored once uploaded.
    pub stored_size: i64,
    /// `created` (waiting for its bytes), `uploading` (an upload holds it), `uploaded`.
    pub state: String,
    /// Where the bytes are: `db` (attachment_chunks) or `s3`.
    pub storage: String,
    pub created_at: DateTimeUtc,
    pub uploaded_at: Option<DateTimeUtc>,
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
    #[sea_orm(has_many = "super::attachment_chunk::Entity")]
    Chunk,
}

impl Related<super::attachment_chunk::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Chunk.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
