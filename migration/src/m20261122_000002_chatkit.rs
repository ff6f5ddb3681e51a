//! ChatKit protocol support: feedback on items, and the index behind ChatKit's thread list
//! (ordered by creation time, where the REST list orders by activity).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Threads {
    Table,
    UserId,
    CreatedAt,
    Id,
}

#[derive(DeriveIden)]
enum ThreadItems {
    Table,
    Feedback,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ThreadItems::Table)
                    .add_column(ColumnDef::new(ThreadItems::Feedback).string_len(16).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_threads_user_created")
                    .table(Threads::Table)
                    .col(Threads::UserId)
                    .col(Threads::CreatedAt)
                    .col(Threads::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_threads_user_created")
                    .table(Threads::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ThreadItems::Table)
                    .drop_column(ThreadItems::Feedback)
                    .to_owned(),
            )
            .await
    }
}
