//! Two `thread_items` indexes that only ever serve rows with a value: the Idempotency-Key
//! index (`user_id, client_key`) and the answers' `reply_to`. Most rows have neither (an
//! answer has no key; a user message replies to nothing), yet every insert added an entry
//! to both. As partial indexes (`WHERE … IS NOT NULL`) a turn's two rows cost three index
//! entries instead of five more, on both databases. Every query that uses them names the
//! column with `=`, which implies `IS NOT NULL`, so both planners still choose them.
//!
//! The new unique index is built before the old one goes, so keys stay unique throughout.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 4] = [
    "CREATE UNIQUE INDEX uq_thread_items_user_key ON thread_items (user_id, client_key) \
     WHERE client_key IS NOT NULL",
    "DROP INDEX uq_thread_items_client_key",
    "CREATE INDEX idx_thread_items_answers ON thread_items (reply_to) \
     WHERE reply_to IS NOT NULL",
    "DROP INDEX idx_thread_items_reply_to",
];

const DOWN: [&str; 4] = [
    "CREATE UNIQUE INDEX uq_thread_items_client_key ON thread_items (user_id, client_key)",
    "DROP INDEX uq_thread_items_user_key",
    "CREATE INDEX idx_thread_items_reply_to ON thread_items (reply_to)",
    "DROP INDEX idx_thread_items_answers",
];

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    for sql in statements {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, &UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, &DOWN).await
    }
}
