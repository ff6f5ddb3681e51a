//! Persistence over SeaORM. Every method takes the authenticated [`UserId`] and scopes its
//! queries by it, so user isolation is enforced here and nowhere else.
//!
//! [`error`] says why a call failed; [`pool`] opens the connections (two pools on SQLite,
//! one on PostgreSQL); the Store's methods are spread over one module per resource; turns
//! are written by the group-commit [`turn_writer`].
//!
//! [`UserId`]: crate::domain::UserId

mod attachments;
mod batched;
mod error;
mod items;
mod pool;
mod reads;
mod rows;
mod tasks;
mod threads;
mod tokens;
mod turn_writer;
mod turns;
mod widgets;

use std::{sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};

pub use attachments::{
    NewAttachment, QuotaBreach, StampRefusal, UploadClaim, STATE_CREATED, STATE_UPLOADED,
    STATE_UPLOADING,
};
pub use error::StoreError;
/// The store's builder of a new completed item row, for other modules' test fixtures.
#[cfg(test)]
pub(crate) use rows::item as new_item_row;
pub use rows::{
    started_thread, tool_calls_in, tool_calls_of, workflow_payload, AnswerIds, Fetched, ItemRow,
    ItemStatus, ItemType, ItemView, ListedThread, NewItem, Page, RecordedAnswer, Role, Turn,
};
pub use tasks::{TaskFilter, TaskUpdate};
pub use tokens::{
    ConsumeOutcome, RevocationListener, RevocationNotice, RevocationState, Successor,
};

use secrecy::ExposeSecret;

use crate::config::DatabaseSettings;
use error::WriteHealth;

/// The persistence handle: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Store {
    read: DatabaseConnection,
    write: DatabaseConnection,
    writer: turn_writer::TurnWriter,
    health: Arc<WriteHealth>,
    /// The hot reads' connections, kept between reads (see [`reads`]).
    reads: Arc<reads::Reads>,
    /// The first pages of ChatKit's thread lists, read for many requests at once (see
    /// [`batched`]).
    lists: batched::Batched,
    /// The first pages of threads' items on PostgreSQL, likewise, one queue per kind of
    /// page (the item types and order read), started on first use.
    pages: Arc<std::sync::RwLock<std::collections::HashMap<u16, batched::Batched>>>,
}

impl Store {
    /// Connections open and idle, per pool: `read` and `write` on SQLite, one `shared`
    /// pool on PostgreSQL (read and write are the same pool there).
    #[must_use]
    pub fn pool_stats(&self) -> Vec<(&'static str, u32, usize)> {
        let mut stats = pool::stats(&self.read, &self.write);
        // The hot reads keep their idle connections out of the pool: idle all the same.
        let kept = self.reads.idle();
        if let Some((_, _, idle)) = stats.iter_mut().find(|(name, _, _)| *name != "write") {
            *idle += kept;
        }
        stats
    }

    /// Connects as configured (see [`Store::connect`]).
    pub async fn open(settings: &DatabaseSettings) -> Result<Self, DbErr> {
        Self::connect_with(
            settings.url.expose_secret(),
            settings.max_connections,
            Duration::from_millis(settings.busy_timeout_ms),
            settings.sqlite_max_pages,
            Duration::from_millis(settings.acquire_timeout_ms),
            settings.turn_writers,
        )
        .await
    }

    /// Connects to `url` (`sqlite://path` or `postgres://…`); an SQLite file and its
    /// directory are created when missing.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        busy_timeout: Duration,
    ) -> Result<Self, DbErr> {
        Self::connect_with(
            url,
            max_connections,
            busy_timeout,
            0,
            pool::DEFAULT_ACQUIRE_TIMEOUT,
            pool::DEFAULT_POSTGRES_WRITERS,
        )
        .await
    }

    async fn connect_with(
        url: &str,
        max_connections: u32,
        busy_timeout: Duration,
        sqlite_max_pages: u32,
        acquire_timeout: Duration,
        postgres_writers: u32,
    ) -> Result<Self, DbErr> {
        let pools = pool::open(
            url,
            max_connections,
            busy_timeout,
            sqlite_max_pages,
            acquire_timeout,
            postgres_writers,
        )
        .await?;
        let health = Arc::new(pools.health);
        let reads = Arc::new(reads::Reads::new(&pools.read));
        Ok(Self {
            lists: batched::Batched::spawn(
                &reads,
                threads::batched_first_threads_sql(reads.is_postgres()),
            ),
            pages: Arc::default(),
            reads,
            read: pools.read,
            writer: turn_writer::TurnWriter::spawn(
                pools.write.clone(),
                health.clone(),
                pools.turn_writers,
            ),
            write: pools.write,
            health,
        })
    }

    /// Applies pending migrations. On PostgreSQL several instances may start at once: a
    /// session-level advisory lock, held on one dedicated connection, lets exactly one of
    /// them migrate while the others wait and then find nothing pending. An SQLite file
    /// is served by one process, so a process-wide lock is enough there (it covers several
    /// servers built in one process, as the tests do).
    pub async fn migrate(&self) -> Result<(), DbErr> {
        pool::migrate(&self.write).await
    }

    /// Readiness: a round trip to the database and, after a failed write, a write that
    /// succeeds (so readiness comes back by itself once the disk has room again).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read.execute_unprepared("SELECT 1").await?;
        let Some(failure) = self.health.last_failure() else {
            return Ok(());
        };
        match self.health.track(self.probe_write().await) {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Unavailable(DbErr::Custom(format!(
                "the database refuses writes: {e} (first: {failure})"
            )))),
        }
    }

    /// On SQLite a committed write that needs a new page, as a real write may; on
    /// PostgreSQL (whose role may not create tables) a round trip on the write pool.
    async fn probe_write(&self) -> Result<(), DbErr> {
        pool::probe_write(&self.write).await
    }

    /// Closes the pools (at shutdown).
    pub async fn close(self) {
        // A closing pool waits for every connection it lent out.
        self.reads.release();
        let _ = self.read.close().await;
        let _ = self.write.close().await;
    }
}
