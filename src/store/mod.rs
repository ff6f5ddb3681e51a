//! Persistence over SeaORM. Every method takes the authenticated [`UserId`] and scopes its
//! queries by it, so user isolation is enforced here and nowhere else.
//!
//! SQLite gets two pools: readers, and a single writer connection, because SQLite admits one
//! writer at a time and a deferred transaction that upgrades to a write can fail with
//! SQLITE_BUSY instead of waiting. On PostgreSQL both handles are the same pool.

mod items;
mod rows;
mod tasks;
mod threads;
mod tokens;
mod turn_writer;
mod turns;

use std::{
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use sea_orm::{
    sqlx::{
        sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
        Connection,
    },
    ConnectionTrait, DatabaseConnection, DbErr, SqlErr, SqlxPostgresConnector, SqlxSqliteConnector,
    TransactionTrait,
};

pub use rows::{
    started_thread, tool_calls_of, AnswerIds, ItemStatus, ItemType, Page, RecordedAnswer, Role,
    Turn,
};
pub use tasks::{TaskFilter, TaskUpdate};
pub use tokens::{
    ConsumeOutcome, RevocationListener, RevocationNotice, RevocationState, Successor,
};

use secrecy::ExposeSecret;

use crate::config::DatabaseSettings;

/// Why a persistence call failed; the not-found kinds are answers, not faults.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such thread, or not the caller's.
    #[error("thread not found")]
    ThreadNotFound,
    /// Another turn holds this Idempotency-Key.
    #[error("a turn with this idempotency key exists")]
    DuplicateKey,
    /// Another run recorded this turn's answer first.
    #[error("the turn was answered by another request")]
    TurnAlreadyAnswered,
    /// No such item in the caller's thread.
    #[error("item not found")]
    ItemNotFound,
    /// A paging cursor that names no element of the list.
    #[error("no such element to page after")]
    CursorNotFound,
    /// A turn of the thread is still being answered.
    #[error("a turn of this thread is still being answered")]
    TurnInProgress,
    /// The database could not be reached (connection-level): retry later.
    #[error("database unavailable: {0}")]
    Unavailable(DbErr),
    /// The database answers but refuses writes (a read-only file or mount).
    #[error("database is read-only: {0}")]
    ReadOnly(DbErr),
    /// The database has no room for the write (a full disk, a size cap).
    #[error("database storage is full: {0}")]
    Full(DbErr),
    /// Any other database error.
    #[error("database error: {0}")]
    Db(DbErr),
}

/// What kind of failure a database error is, as far as the caller can act on it.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The database is out of reach or shutting down: retry soon.
    Connection,
    ReadOnly,
    Full,
    /// Anything else: a bug or a decision (constraints), reported as is.
    Other,
}

fn classify(err: &DbErr) -> Failure {
    use sea_orm::{sqlx::Error as Sqlx, RuntimeErr};
    let sqlx = match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return Failure::Connection,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return Failure::Other,
    };
    match sqlx {
        Sqlx::Io(_)
        | Sqlx::Tls(_)
        | Sqlx::Protocol(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed => Failure::Connection,
        Sqlx::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db
                .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some()
            {
                // Extended result code; the primary one is its low byte: BUSY, LOCKED,
                // IOERR, CANTOPEN; READONLY; FULL.
                return match code.parse::<i32>().map(|n| n & 0xff) {
                    Ok(5 | 6 | 10 | 14) => Failure::Connection,
                    Ok(8) => Failure::ReadOnly,
                    Ok(13) => Failure::Full,
                    _ => Failure::Other,
                };
            }
            match code.as_ref() {
                // PostgreSQL: connection exceptions (08…), operator intervention (57P0x:
                // shutdown, crash, cannot connect now), too many connections.
                c if c.starts_with("08") || c.starts_with("57P") || c == "53300" => {
                    Failure::Connection
                }
                // Disk full, out of memory; a read-only transaction or standby.
                "53100" | "53200" => Failure::Full,
                "25006" => Failure::ReadOnly,
                _ => Failure::Other,
            }
        }
        _ => Failure::Other,
    }
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        match classify(&err) {
            Failure::Connection => Self::Unavailable(err),
            Failure::ReadOnly => Self::ReadOnly(err),
            Failure::Full => Self::Full(err),
            Failure::Other => Self::Db(err),
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

/// Opening an SQLite file can meet SQLITE_BUSY while another process (a second instance,
/// `chatkit-gateway migrate`) switches it to WAL or migrates it: the connection pragmas run
/// before the busy timeout applies. Such a start is retried for a few seconds, not failed.
async fn busy_retry<T, F, Fut>(mut open: F) -> Result<T, sea_orm::sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sea_orm::sqlx::Error>>,
{
    let mut attempt = 0;
    loop {
        match open().await {
            Err(sea_orm::sqlx::Error::Database(e))
                if e.code().as_deref() == Some("5") && attempt < 50 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// SQLite readers: `database.max_connections`, at most two per core. They run in this
/// process, so more readers than cores only wait for a core, and each one keeps its own
/// page cache (2 MB): on the 2-core benchmark machine, 16 readers held 8 MB more at peak
/// than 4 did, for no more requests served.
fn sqlite_readers(max_connections: u32) -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let cap = u32::try_from(cores.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .max(2);
    max_connections.clamp(1, cap)
}

/// Turn writers on PostgreSQL when not configured (`database.turn_writers`).
const DEFAULT_POSTGRES_WRITERS: u32 = 1;

/// The level at which sqlx reports every acquire's wait; the tracing subscriber sends
/// those reports to the metrics (not to the log, unless `RUST_LOG` asks for them).
const ACQUIRE_REPORTS: log::LevelFilter = log::LevelFilter::Trace;

/// How long a PostgreSQL request waits for a connection before it is answered 503: an
/// outage shows at once instead of holding every request for long.
const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The last write failure that no successful write has followed yet (a full disk, a
/// read-only file, a lost connection). Readiness reports it until a write succeeds again.
#[derive(Default)]
pub(crate) struct WriteHealth(Mutex<Option<String>>);

impl WriteHealth {
    pub fn succeeded(&self) {
        if let Ok(mut last) = self.0.lock() {
            last.take();
        }
    }

    /// Records `err` unless it is a decision (a constraint), not a failure to write.
    pub fn failed(&self, err: &DbErr) {
        if err.sql_err().is_some() {
            return;
        }
        if let Ok(mut last) = self.0.lock() {
            *last = Some(err.to_string());
        }
    }

    fn last_failure(&self) -> Option<String> {
        self.0.lock().ok().and_then(|last| last.clone())
    }

    /// Passes `result` through, recording its outcome.
    pub fn track<T>(&self, result: Result<T, DbErr>) -> Result<T, DbErr> {
        match &result {
            Ok(_) => self.succeeded(),
            Err(e) => self.failed(e),
        }
        result
    }
}

/// The advisory-lock key every instance takes around migrations (an arbitrary constant,
/// "ckgw-mig" in ASCII), so that concurrent starts migrate once.
const MIGRATION_LOCK_KEY: i64 = 0x636b_6777_2d6d_6967;

/// The persistence handle: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Store {
    read: DatabaseConnection,
    write: DatabaseConnection,
    writer: turn_writer::TurnWriter,
    health: Arc<WriteHealth>,
}

/// Whether an SQLite writer connection may go back to the pool. A failed COMMIT or
/// ROLLBACK leaves sqlx counting a transaction that SQLite may already have ended (a full
/// disk rolls the whole transaction back): the next `BEGIN` would then become a SAVEPOINT,
/// and a later `ROLLBACK TO` keeps an outer transaction open for good, so every write
/// after it is acknowledged and never committed. Such a connection is closed instead (which
/// rolls back whatever it holds); the pool opens a fresh one.
async fn writer_connection_is_clean(conn: &mut sea_orm::sqlx::SqliteConnection) -> bool {
    if !conn.is_in_transaction() {
        return true;
    }
    // A dropped transaction queues its ROLLBACK; let the connection run it first.
    if conn.ping().await.is_err() {
        return false;
    }
    if conn.is_in_transaction() {
        tracing::warn!("closing the SQLite writer connection: a transaction did not end");
        return false;
    }
    true
}

impl Store {
    /// Connections open and idle, per pool: `read` and `write` on SQLite, one `shared`
    /// pool on PostgreSQL (read and write are the same pool there).
    #[must_use]
    pub fn pool_stats(&self) -> Vec<(&'static str, u32, usize)> {
        fn stats(conn: &DatabaseConnection) -> (u32, usize) {
            match conn.get_database_backend() {
                sea_orm::DbBackend::Postgres => {
                    let pool = conn.get_postgres_connection_pool();
                    (pool.size(), pool.num_idle())
                }
                sea_orm::DbBackend::Sqlite => {
                    let pool = conn.get_sqlite_connection_pool();
                    (pool.size(), pool.num_idle())
                }
                sea_orm::DbBackend::MySql => (0, 0),
            }
        }
        if self.write.get_database_backend() == sea_orm::DbBackend::Postgres {
            let (open, idle) = stats(&self.write);
            vec![("shared", open, idle)]
        } else {
            let (read_open, read_idle) = stats(&self.read);
            let (write_open, write_idle) = stats(&self.write);
            vec![
                ("read", read_open, read_idle),
                ("write", write_open, write_idle),
            ]
        }
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
            DEFAULT_ACQUIRE_TIMEOUT,
            DEFAULT_POSTGRES_WRITERS,
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
        if url.starts_with("sqlite:") {
            let mut opts = SqliteConnectOptions::from_str(url)
                .map_err(|e| DbErr::Custom(format!("invalid DATABASE_URL: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(busy_timeout);
            if sqlite_max_pages > 0 {
                opts = opts.pragma("max_page_count", sqlite_max_pages.to_string());
            }
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
                    .acquire_time_level(ACQUIRE_REPORTS)
                    .acquire_timeout(busy_timeout + Duration::from_secs(5))
            };
            let write = busy_retry(|| {
                pool(1)
                    .after_release(|conn, _| {
                        Box::pin(async { Ok(writer_connection_is_clean(conn).await) })
                    })
                    .connect_with(opts.clone())
            })
            .await
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?;
            let read =
                busy_retry(|| pool(sqlite_readers(max_connections)).connect_with(opts.clone()))
                    .await
                    .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?;
            let write = SqlxSqliteConnector::from_sqlx_sqlite_pool(write);
            // Nothing has been written yet: the first readiness check proves the file
            // takes writes (a read-only file or mount answers reads only).
            let health = Arc::new(WriteHealth(Mutex::new(Some("not written yet".into()))));
            Ok(Self {
                read: SqlxSqliteConnector::from_sqlx_sqlite_pool(read),
                writer: turn_writer::TurnWriter::spawn(write.clone(), health.clone(), 1),
                write,
                health,
            })
        } else {
            use sea_orm::sqlx::{
                postgres::{PgConnectOptions, PgPoolOptions},
                ConnectOptions as _,
            };
            let sqlx_err = |e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e));
            // Built with sqlx directly: sea-orm's options cannot ask sqlx to report acquire
            // times (the `db_pool_acquire_seconds` metric).
            let mut connect = PgConnectOptions::from_str(url)
                .map_err(sqlx_err)?
                .disable_statement_logging();
            // Every statement here is an index lookup by design (primary keys, the
            // user-scoped keyset indexes), but PostgreSQL plans a prepared statement once
            // per connection (a generic plan, from its sixth run) with the table sizes of
            // that moment: on a young table a sequential scan is cheapest, and the plan
            // keeps it while the table grows, until an ANALYZE. The turn batch's thread
            // update did exactly that: with 5,000 threads, every batch read them all
            // (issue 11, measured in the README). With sequential scans off the planner
            // takes the index wherever one applies (and still scans a table none serves).
            // A URL that sets `enable_seqscan` itself (`?options=-c enable_seqscan=on`)
            // is left as it is.
            if !connect
                .get_options()
                .is_some_and(|o| o.contains("enable_seqscan"))
            {
                connect = connect.options([("enable_seqscan", "off")]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .min_connections(1)
                .acquire_timeout(acquire_timeout)
                // A ping per acquire doubles the round trips of every query; dead
                // connections are replaced when a query on them fails.
                .test_before_acquire(false)
                .acquire_time_level(ACQUIRE_REPORTS)
                .connect_with(connect)
                .await
                .map_err(sqlx_err)?;
            let db = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
            let health = Arc::new(WriteHealth::default());
            Ok(Self {
                read: db.clone(),
                writer: turn_writer::TurnWriter::spawn(
                    db.clone(),
                    health.clone(),
                    // Leave the requests' reads some connections.
                    usize::try_from(postgres_writers.min(max_connections / 2).max(1)).unwrap_or(1),
                ),
                write: db,
                health,
            })
        }
    }

    /// Applies pending migrations. On PostgreSQL several instances may start at once: a
    /// session-level advisory lock, held on one dedicated connection, lets exactly one of
    /// them migrate while the others wait and then find nothing pending. An SQLite file
    /// is served by one process, so a process-wide lock is enough there (it covers several
    /// servers built in one process, as the tests do).
    pub async fn migrate(&self) -> Result<(), DbErr> {
        use migration::MigratorTrait;
        if self.write.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            static SQLITE_MIGRATIONS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
            let _one_at_a_time = SQLITE_MIGRATIONS.lock().await;
            return migration::Migrator::up(&self.write, None).await;
        }
        let sqlx_err = |e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e));
        let mut conn = self
            .write
            .get_postgres_connection_pool()
            .acquire()
            .await
            .map_err(sqlx_err)?;
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *conn)
            .await
            .map_err(sqlx_err)?;
        let result = migration::Migrator::up(&self.write, None).await;
        let unlocked = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *conn)
            .await;
        if unlocked.is_err() {
            // A session lock dies with its session: close the connection rather than
            // return it to the pool still holding the lock.
            let _ = conn.detach();
        }
        result
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
        if self.write.get_database_backend() != sea_orm::DbBackend::Sqlite {
            return self.write.execute_unprepared("SELECT 1").await.map(|_| ());
        }
        let txn = self.write.begin().await?;
        txn.execute_unprepared("CREATE TABLE gateway_write_probe (x INTEGER)")
            .await?;
        txn.execute_unprepared("DROP TABLE gateway_write_probe")
            .await?;
        txn.commit().await
    }

    /// Closes the pools (at shutdown).
    pub async fn close(self) {
        let _ = self.read.close().await;
        let _ = self.write.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk makes SQLite roll the whole transaction back on its own; a raw
    /// `ROLLBACK` inside the transaction does the same, so sqlx's count of open
    /// transactions goes wrong the same way.
    #[tokio::test]
    async fn writer_connection_survives_a_transaction_sqlite_ended_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/w.db", dir.path().display());
        let store = Store::connect(&url, 2, Duration::from_secs(1))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let txn = store.write.begin().await.unwrap();
        txn.execute_unprepared("ROLLBACK").await.unwrap();
        assert!(txn.commit().await.is_err());
        // A later transaction that fails and rolls back ...
        let txn = store.write.begin().await.unwrap();
        assert!(txn
            .execute_unprepared("SELECT * FROM missing")
            .await
            .is_err());
        txn.rollback().await.unwrap();
        // ... must not leave the next acknowledged write uncommitted.
        let user = crate::domain::UserId::parse("alice").unwrap();
        store.revoke_family(&user, "sid_x").await.unwrap();
        let other = Store::connect(&url, 1, Duration::from_secs(1))
            .await
            .unwrap();
        let state = other.revocation_state(&user, "sid_x").await.unwrap();
        assert!(
            state.family_revoked,
            "the acknowledged revocation was not committed"
        );
        other.close().await;
        store.close().await;
    }
}
