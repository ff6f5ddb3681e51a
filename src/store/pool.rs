//! The connection pools, per database: how they are opened and sized, what they report,
//! how migrations run once across instances, and how a write is probed. Each database has
//! its module here, side by side ([`sqlite`], [`postgres`]); the functions at the top pick
//! one ([`open`] by the URL, the others by the open connection).
//!
//! SQLite gets two pools: readers, and a single writer connection, because SQLite admits one
//! writer at a time and a deferred transaction that upgrades to a write can fail with
//! SQLITE_BUSY instead of waiting. On PostgreSQL both handles are the same pool.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};

use super::error::WriteHealth;

/// Turn writers on PostgreSQL when not configured (`database.turn_writers`).
pub(super) const DEFAULT_POSTGRES_WRITERS: u32 = 1;

/// How long a PostgreSQL request waits for a connection before it is answered 503: an
/// outage shows at once instead of holding every request for long.
pub(super) const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// The level at which sqlx reports every acquire's wait; the tracing subscriber sends
/// those reports to the metrics (not to the log, unless `RUST_LOG` asks for them).
const ACQUIRE_REPORTS: log::LevelFilter = log::LevelFilter::Trace;

/// What a store runs on, as opened.
pub(super) struct Pools {
    /// The requests' reads.
    pub read: DatabaseConnection,
    /// Every write, the turn writers' included.
    pub write: DatabaseConnection,
    /// How many turn writers share `write`.
    pub turn_writers: usize,
    /// The write health to start from.
    pub health: WriteHealth,
}

/// Opens the pools for `url` (`sqlite://path` or `postgres://…`); an SQLite file and its
/// directory are created when missing.
pub(super) async fn open(
    url: &str,
    max_connections: u32,
    busy_timeout: Duration,
    sqlite_max_pages: u32,
    acquire_timeout: Duration,
    postgres_writers: u32,
) -> Result<Pools, DbErr> {
    if url.starts_with("sqlite:") {
        sqlite::open(url, max_connections, busy_timeout, sqlite_max_pages).await
    } else {
        postgres::open(url, max_connections, acquire_timeout, postgres_writers).await
    }
}

/// Connections open and idle, per pool: `read` and `write` on SQLite, one `shared` pool
/// on PostgreSQL (read and write are the same pool there).
pub(super) fn stats(
    read: &DatabaseConnection,
    write: &DatabaseConnection,
) -> Vec<(&'static str, u32, usize)> {
    if write.get_database_backend() == DbBackend::Postgres {
        postgres::stats(write)
    } else {
        sqlite::stats(read, write)
    }
}

/// Applies pending migrations, once however many instances start at once.
pub(super) async fn migrate(write: &DatabaseConnection) -> Result<(), DbErr> {
    if write.get_database_backend() == DbBackend::Postgres {
        postgres::migrate(write).await
    } else {
        sqlite::migrate(write).await
    }
}

/// A write that fails as a real one would (see [`super::Store::ping`]).
pub(super) async fn probe_write(write: &DatabaseConnection) -> Result<(), DbErr> {
    if write.get_database_backend() == DbBackend::Postgres {
        postgres::probe_write(write).await
    } else {
        sqlite::probe_write(write).await
    }
}

/// SQLite: a pool of readers and one writer connection, over a WAL file.
mod sqlite {
    use std::{str::FromStr, time::Duration};

    use sea_orm::{
        sqlx::{
            sqlite::{
                SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
            },
            Connection,
        },
        ConnectionTrait, DatabaseConnection, DbErr, SqlxSqliteConnector, TransactionTrait,
    };

    use super::{Pools, ACQUIRE_REPORTS};
    use crate::store::error::WriteHealth;

    pub(super) async fn open(
        url: &str,
        max_connections: u32,
        busy_timeout: Duration,
        sqlite_max_pages: u32,
    ) -> Result<Pools, DbErr> {
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
                std::fs::create_dir_all(dir)
                    .map_err(|e| DbErr::Custom(format!("cannot create {}: {e}", dir.display())))?;
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
        let read = busy_retry(|| pool(readers(max_connections)).connect_with(opts.clone()))
            .await
            .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)))?;
        Ok(Pools {
            read: SqlxSqliteConnector::from_sqlx_sqlite_pool(read),
            write: SqlxSqliteConnector::from_sqlx_sqlite_pool(write),
            // One writer connection, so one turn writer.
            turn_writers: 1,
            // Nothing has been written yet: the first readiness check proves the file
            // takes writes (a read-only file or mount answers reads only).
            health: WriteHealth::unproven("not written yet"),
        })
    }

    pub(super) fn stats(
        read: &DatabaseConnection,
        write: &DatabaseConnection,
    ) -> Vec<(&'static str, u32, usize)> {
        let (read, write) = (
            read.get_sqlite_connection_pool(),
            write.get_sqlite_connection_pool(),
        );
        vec![
            ("read", read.size(), read.num_idle()),
            ("write", write.size(), write.num_idle()),
        ]
    }

    /// An SQLite file is served by one process, so a process-wide lock is enough (it
    /// covers several servers built in one process, as the tests do).
    pub(super) async fn migrate(write: &DatabaseConnection) -> Result<(), DbErr> {
        use migration::MigratorTrait;
        static SQLITE_MIGRATIONS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = SQLITE_MIGRATIONS.lock().await;
        migration::Migrator::up(write, None).await
    }

    /// A committed write that needs a new page, as a real write may.
    pub(super) async fn probe_write(write: &DatabaseConnection) -> Result<(), DbErr> {
        let txn = write.begin().await?;
        txn.execute_unprepared("CREATE TABLE gateway_write_probe (x INTEGER)")
            .await?;
        txn.execute_unprepared("DROP TABLE gateway_write_probe")
            .await?;
        txn.commit().await
    }

    /// Opening an SQLite file can meet SQLITE_BUSY while another process (a second
    /// instance, `chatkit-gateway migrate`) switches it to WAL or migrates it: the
    /// connection pragmas run before the busy timeout applies. Such a start is retried for
    /// a few seconds, not failed.
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
    fn readers(max_connections: u32) -> u32 {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let cap = u32::try_from(cores.saturating_mul(2))
            .unwrap_or(u32::MAX)
            .max(2);
        max_connections.clamp(1, cap)
    }

    /// Whether an SQLite writer connection may go back to the pool. A failed COMMIT or
    /// ROLLBACK leaves sqlx counting a transaction that SQLite may already have ended (a
    /// full disk rolls the whole transaction back): the next `BEGIN` would then become a
    /// SAVEPOINT, and a later `ROLLBACK TO` keeps an outer transaction open for good, so
    /// every write after it is acknowledged and never committed. Such a connection is
    /// closed instead (which rolls back whatever it holds); the pool opens a fresh one.
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
}

/// PostgreSQL: one pool for reads and writes, every session with sequential scans off.
mod postgres {
    use std::{str::FromStr, time::Duration};

    use sea_orm::{
        sqlx::{
            postgres::{PgConnectOptions, PgPoolOptions},
            ConnectOptions as _,
        },
        ConnectionTrait, DatabaseConnection, DbErr, SqlxPostgresConnector,
    };

    use super::{Pools, ACQUIRE_REPORTS};
    use crate::store::error::WriteHealth;

    pub(super) async fn open(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        postgres_writers: u32,
    ) -> Result<Pools, DbErr> {
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
        // (bench/RESULTS.md, "No sequential scans"). With sequential scans off the planner
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
        Ok(Pools {
            read: db.clone(),
            write: db,
            // Leave the requests' reads some connections.
            turn_writers: usize::try_from(postgres_writers.min(max_connections / 2).max(1))
                .unwrap_or(1),
            health: WriteHealth::default(),
        })
    }

    /// The advisory-lock key every instance takes around migrations (an arbitrary
    /// constant, "ckgw-mig" in ASCII), so that concurrent starts migrate once.
    const MIGRATION_LOCK_KEY: i64 = 0x636b_6777_2d6d_6967;

    pub(super) fn stats(write: &DatabaseConnection) -> Vec<(&'static str, u32, usize)> {
        let pool = write.get_postgres_connection_pool();
        vec![("shared", pool.size(), pool.num_idle())]
    }

    /// Several instances may start at once: a session-level advisory lock, held on one
    /// dedicated connection, lets exactly one of them migrate while the others wait and
    /// then find nothing pending.
    pub(super) async fn migrate(write: &DatabaseConnection) -> Result<(), DbErr> {
        use migration::MigratorTrait;
        let sqlx_err = |e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e));
        let mut conn = write
            .get_postgres_connection_pool()
            .acquire()
            .await
            .map_err(sqlx_err)?;
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *conn)
            .await
            .map_err(sqlx_err)?;
        let result = migration::Migrator::up(write, None).await;
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

    /// A round trip on the write pool (the role may not create tables).
    pub(super) async fn probe_write(write: &DatabaseConnection) -> Result<(), DbErr> {
        write.execute_unprepared("SELECT 1").await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sea_orm::{ConnectionTrait, TransactionTrait};

    use crate::store::Store;

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
