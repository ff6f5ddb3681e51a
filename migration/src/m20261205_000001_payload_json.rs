//! `thread_items.payload` as `json` instead of `jsonb` on PostgreSQL. The gateway writes
//! the payloads whole and reads them whole, never querying inside them, so `jsonb`'s parsed
//! form bought nothing and cost on every read: PostgreSQL rebuilt each payload's text from
//! it (`jsonb_send`), 8-10 µs of the database's CPU for a page of 20 items. `json` keeps
//! the text as written and sends it as is. SQLite stores text either way: nothing to do
//! there.
//!
//! The change rewrites the table under an exclusive lock (bench/RESULTS.md has the figures;
//! docs/operations.md says what to expect on a large table).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

async fn run(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "ALTER TABLE thread_items ALTER COLUMN payload TYPE json USING payload::json",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "ALTER TABLE thread_items ALTER COLUMN payload TYPE jsonb USING payload::jsonb",
        )
        .await
    }
}
