use sea_orm::entity::prelude::*;

/// A refresh-consumed client_secret `jti`. The primary key makes "consume" an atomic
/// insert that decides single use across instances.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "consumed_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub jti: String,
    pub user_id: String,
    pub sid: String,
    pub consumed_at: DateTimeUtc,
    /// After this instant the token could not be refreshed anyway; the row may be purged.
    pub expires_at: DateTimeUtc,
    /// The `jti` and `iat` (Unix seconds) of the client_secret this one was rotated into:
    /// with the family's claims they re-create that exact token for a racing refresh.
    pub successor_jti: Option<String>,
    pub successor_iat: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
