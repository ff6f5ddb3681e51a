use sea_orm::entity::prelude::*;

/// A task on a user's list. `number` is the user-facing, per-user sequence number
/// ("complete task 2"); it never changes and is never reused while the row exists.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    pub number: i32,
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
    pub due: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
