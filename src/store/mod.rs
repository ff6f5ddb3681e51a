//! Persistence over SeaORM. Every method takes the authenticated [`UserId`] and scopes its
//! queries by it, so user isolation is enforced here and nowhere else.
//!
//! SQLite gets two pools: readers, and a single writer connection, because SQLite admits one
//! writer at a time and a deferred transaction that upgrades to a write can fail with
//! SQLITE_BUSY instead of waiting. On PostgreSQL both handles are the same pool.

mod items;
mod tasks;
mod threads;
mod tokens;
mod turns;
mod writer;

use std::{str::FromStr, time::Duration};

use sea_orm::{
    sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, SqlErr,
    SqlxSqliteConnector,
};

pub use tasks::{TaskFilter, TaskUpdate};
pub use tokens::{ConsumeOutcome, RevocationState};
pub use turns::{
    tool_calls_of, AnswerIds, Reply, ToolCallRecord, Turn, ITEM_ASSISTANT, ITEM_TOOL_CALL,
    ITEM_USER, ITEM_WORKFLOW, STATUS_COMPLETED, STATUS_FAILED, STATUS_PENDING,
};

use crate::domain::Cursor;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("thread not found")]
    ThreadNotFound,
    #[error("a turn with this idempotency key exists")]
    DuplicateKey,
    #[error("the turn was answered by another request")]
    TurnAlreadyAnswered,
    #[error("item not found")]
    ItemNotFound,
    #[error("no such element to page after")]
    CursorNotFound,
    #[error("a turn of this thread is still being answered")]
    TurnInProgress,
    #[error("database unavailable: {0}")]
    Unavailable(DbErr),
    #[error("database error: {0}")]
    Db(DbErr),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        match err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Self::Unavailable(err),
            other => Self::Db(other),
        }
    }
}

/// Inserts fully built rows without reading them back. (SeaORM re-selects every inserted
/// row on SQLite, one more round trip to the connection's worker per row; these rows are
/// already known in full.)
pub(crate) async fn insert_rows<E, C>(conn: &C, rows: Vec<E::Model>) -> Result<(), DbErr>
where
    E: sea_orm::EntityTrait,
    E::Model: sea_orm::IntoActiveModel<E::ActiveModel>,
    C: ConnectionTrait,
{
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    if rows.is_empty() {
        return Ok(());
    }
    E::insert_many(rows.into_iter().map(|m| m.into_active_model().reset_all()))
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

pub(crate) fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// One page of a keyset-paginated listing; `next` is present when more rows follow.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

#[derive(Clone)]
pub struct Store {
    read: DatabaseConnection,
    write: DatabaseConnection,
    writer: writer::TurnWriter,
}

impl Store {
    /// Connects to `url` (`sqlite://path` or `postgres://…`); an SQLite file and its
    /// directory are created when missing.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        busy_timeout: Duration,
    ) -> Result<Self, DbErr> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| DbErr::Custom(format!("invalid DATABASE_URL: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(busy_timeout);
            if let Some(dir) = opts.get_filename().parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        DbErr::Custom(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
            }
            // No ping on every acquire: for SQLite it is a round trip to the connection's
            // worker thread per query, and a broken file surfaces as an error anyway.
            let pool = |n: u32| {
                SqlitePoolOptions::new()
                    .max_connections(n)
                    .min_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(busy_timeout + Duration::from_secs(5))
                    .connect_with(opts.clone())
            };
            let write = pool(1)
                .await
                .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?;
            let read = pool(max_connections.max(1))
                .await
                .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?;
            let write = SqlxSqliteConnector::from_sqlx_sqlite_pool(write);
            Ok(Self {
                read: SqlxSqliteConnector::from_sqlx_sqlite_pool(read),
                writer: writer::TurnWriter::spawn(write.clone()),
                write,
            })
        } else {
            let mut opts = ConnectOptions::new(url.to_owned());
            opts.max_connections(max_connections)
                .min_connections(1)
                .connect_timeout(Duration::from_secs(5))
                .acquire_timeout(Duration::from_secs(10))
                // A ping per acquire doubles the round trips of every query; dead
                // connections are replaced when a query on them fails.
                .test_before_acquire(false)
                .sqlx_logging(false);
            let db = Database::connect(opts).await?;
            Ok(Self {
                read: db.clone(),
                writer: writer::TurnWriter::spawn(db.clone()),
                write: db,
            })
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        use migration::MigratorTrait;
        migration::Migrator::up(&self.write, None).await
    }

    /// Readiness: a round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read.execute_unprepared("SELECT 1").await?;
        Ok(())
    }

    pub async fn close(self) {
        let _ = self.read.close().await;
        let _ = self.write.close().await;
    }
}
