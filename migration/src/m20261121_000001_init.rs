use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Threads {
    Table,
    Id,
    UserId,
    Title,
    Metadata,
    Status,
    MessageCount,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ThreadItems {
    Table,
    Id,
    ThreadId,
    UserId,
    ItemType,
    Role,
    Content,
    Payload,
    ClientKey,
    ReplyTo,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    UserId,
    Number,
    Title,
    Description,
    Completed,
    Due,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ConsumedTokens {
    Table,
    Jti,
    UserId,
    Sid,
    ConsumedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Revocations {
    Table,
    Id,
    UserId,
    Sid,
    NotBefore,
    CreatedAt,
}

fn id_column<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .string_len(64)
        .not_null()
        .primary_key()
        .to_owned()
}

fn timestamp<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Threads::Table)
                    .col(id_column(Threads::Id))
                    .col(ColumnDef::new(Threads::UserId).string_len(255).not_null())
                    .col(ColumnDef::new(Threads::Title).string_len(255).not_null())
                    .col(ColumnDef::new(Threads::Metadata).json_binary().not_null())
                    .col(ColumnDef::new(Threads::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Threads::MessageCount)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(timestamp(Threads::CreatedAt))
                    .col(timestamp(Threads::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Serves "my threads, newest activity first" as a keyset scan.
        manager
            .create_index(
                Index::create()
                    .name("idx_threads_user_updated")
                    .table(Threads::Table)
                    .col(Threads::UserId)
                    .col(Threads::UpdatedAt)
                    .col(Threads::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ThreadItems::Table)
                    .col(id_column(ThreadItems::Id))
                    .col(
                        ColumnDef::new(ThreadItems::ThreadId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ThreadItems::UserId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ThreadItems::ItemType)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ThreadItems::Role).string_len(16).not_null())
                    .col(ColumnDef::new(ThreadItems::Content).text().not_null())
                    .col(ColumnDef::new(ThreadItems::Payload).json_binary().null())
                    .col(
                        ColumnDef::new(ThreadItems::ClientKey)
                            .string_len(255)
                            .null(),
                    )
                    .col(ColumnDef::new(ThreadItems::ReplyTo).string_len(64).null())
                    .col(
                        ColumnDef::new(ThreadItems::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(timestamp(ThreadItems::CreatedAt))
                    .col(timestamp(ThreadItems::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_thread_items_thread")
                            .from(ThreadItems::Table, ThreadItems::ThreadId)
                            .to(Threads::Table, Threads::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_thread_items_page")
                    .table(ThreadItems::Table)
                    .col(ThreadItems::ThreadId)
                    .col(ThreadItems::CreatedAt)
                    .col(ThreadItems::Id)
                    .to_owned(),
            )
            .await?;
        // NULL keys are distinct on both SQLite and PostgreSQL, so only keyed turns collide.
        manager
            .create_index(
                Index::create()
                    .name("uq_thread_items_client_key")
                    .table(ThreadItems::Table)
                    .col(ThreadItems::UserId)
                    .col(ThreadItems::ClientKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_thread_items_reply_to")
                    .table(ThreadItems::Table)
                    .col(ThreadItems::ReplyTo)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .col(id_column(Tasks::Id))
                    .col(ColumnDef::new(Tasks::UserId).string_len(255).not_null())
                    .col(ColumnDef::new(Tasks::Number).integer().not_null())
                    .col(ColumnDef::new(Tasks::Title).string_len(500).not_null())
                    .col(ColumnDef::new(Tasks::Description).text().null())
                    .col(
                        ColumnDef::new(Tasks::Completed)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(Tasks::Due).timestamp_with_time_zone().null())
                    .col(timestamp(Tasks::CreatedAt))
                    .col(timestamp(Tasks::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_tasks_user_number")
                    .table(Tasks::Table)
                    .col(Tasks::UserId)
                    .col(Tasks::Number)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ConsumedTokens::Table)
                    .col(id_column(ConsumedTokens::Jti))
                    .col(
                        ColumnDef::new(ConsumedTokens::UserId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConsumedTokens::Sid)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(timestamp(ConsumedTokens::ConsumedAt))
                    .col(timestamp(ConsumedTokens::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_consumed_tokens_expires")
                    .table(ConsumedTokens::Table)
                    .col(ConsumedTokens::ExpiresAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Revocations::Table)
                    .col(
                        ColumnDef::new(Revocations::Id)
                            .string_len(300)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Revocations::UserId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Revocations::Sid).string_len(64).null())
                    .col(timestamp(Revocations::NotBefore))
                    .col(timestamp(Revocations::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Revocations::Table.into_iden(),
            ConsumedTokens::Table.into_iden(),
            Tasks::Table.into_iden(),
            ThreadItems::Table.into_iden(),
            Threads::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
