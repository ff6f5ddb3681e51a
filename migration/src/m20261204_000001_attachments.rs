//! Attachments: files and images a user attaches to a message. `attachments` holds what is
//! known of each; with the database store (`attachments.store = "db"`) its bytes live in
//! `attachment_chunks`, in rows of at most `attachments.chunk_bytes`, so that neither a
//! write nor a read ever holds a whole file in one row.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Threads {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Attachments {
    Table,
    Id,
    UserId,
    ThreadId,
    Name,
    MimeType,
    DeclaredSize,
    StoredSize,
    State,
    Storage,
    CreatedAt,
    UploadedAt,
}

#[derive(DeriveIden)]
enum AttachmentChunks {
    Table,
    AttachmentId,
    Seq,
    Bytes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Attachments::Table)
                    .col(
                        ColumnDef::new(Attachments::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Attachments::UserId)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Attachments::ThreadId).string_len(64).null())
                    .col(ColumnDef::new(Attachments::Name).string_len(255).not_null())
                    .col(
                        ColumnDef::new(Attachments::MimeType)
                            .string_len(127)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Attachments::DeclaredSize)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Attachments::StoredSize)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Attachments::State).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Attachments::Storage)
                            .string_len(8)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Attachments::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Attachments::UploadedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    // Deleting a thread deletes the attachments its messages used, and
                    // with them their chunks, in the same statement.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_attachments_thread")
                            .from(Attachments::Table, Attachments::ThreadId)
                            .to(Threads::Table, Threads::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A user's attachments (quotas count them).
        manager
            .create_index(
                Index::create()
                    .name("idx_attachments_user")
                    .table(Attachments::Table)
                    .col(Attachments::UserId)
                    .col(Attachments::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // A thread's attachments (the cascade and `delete_for_thread`), and with a NULL
        // thread the ones never sent, oldest first (the collector).
        manager
            .create_index(
                Index::create()
                    .name("idx_attachments_thread")
                    .table(Attachments::Table)
                    .col(Attachments::ThreadId)
                    .col(Attachments::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AttachmentChunks::Table)
                    .col(
                        ColumnDef::new(AttachmentChunks::AttachmentId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AttachmentChunks::Seq).integer().not_null())
                    // BLOB on SQLite, BYTEA on PostgreSQL.
                    .col(ColumnDef::new(AttachmentChunks::Bytes).binary().not_null())
                    .primary_key(
                        Index::create()
                            .col(AttachmentChunks::AttachmentId)
                            .col(AttachmentChunks::Seq),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_attachment_chunks_attachment")
                            .from(AttachmentChunks::Table, AttachmentChunks::AttachmentId)
                            .to(Attachments::Table, Attachments::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AttachmentChunks::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Attachments::Table).to_owned())
            .await
    }
}
