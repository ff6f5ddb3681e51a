use sea_orm::entity::prelude::*;

/// One piece of an attachment's bytes, with the database store: `seq` counts from 0.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "attachment_chunks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub attachment_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i32,
    pub bytes: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::attachment::Entity",
        from = "Column::AttachmentId",
        to = "super::attachment::Column::Id",
        on_delete = "Cascade"
    )]
    Attachment,
}

impl Related<super::attachment::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Attachment.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
