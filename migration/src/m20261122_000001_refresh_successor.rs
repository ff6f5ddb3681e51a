//! A consumed refresh token remembers the successor it was rotated into, so a concurrent
//! refresh of the same token (two tabs, a retry, another instance) is answered with that
//! same successor instead of starting a second live branch of the session family.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ConsumedTokens {
    Table,
    SuccessorJti,
    SuccessorIat,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(ConsumedTokens::Table)
                    .add_column(ColumnDef::new(ConsumedTokens::SuccessorJti).string_len(64))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ConsumedTokens::Table)
                    .add_column(ColumnDef::new(ConsumedTokens::SuccessorIat).big_integer())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [ConsumedTokens::SuccessorIat, ConsumedTokens::SuccessorJti] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ConsumedTokens::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
