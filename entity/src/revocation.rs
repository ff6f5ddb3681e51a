use sea_orm::entity::prelude::*;

/// A revoked session family (`id = "sid:<sid>"`) or a user-wide cut-off
/// (`id = "user:<user_id>"`: every family started before `not_before` is revoked).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "revocations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    pub sid: Option<String>,
    pub not_before: DateTimeUtc,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
