//! PostgreSQL: room on each `thread_items` page for the one later update every user message
//! gets (its turn's status, `pending` to `completed`), so that update stays on its page as a
//! heap-only tuple instead of adding an entry to each of the table's four indexes. Status and
//! `updated_at` are in no index, so nothing else keeps it from being HOT. Pages written from
//! now on are filled to 85%; existing pages are left as they are. SQLite has no such setting.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE thread_items SET (fillfactor = 85)")
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE thread_items RESET (fillfactor)")
            .await
            .map(|_| ())
    }
}
