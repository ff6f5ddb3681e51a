use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "threads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub metadata: Json,
    pub status: String,
    pub message_count: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::thread_item::Entity")]
    ThreadItem,
}

impl Related<super::thread_item::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ThreadItem.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
