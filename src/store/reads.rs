//! The hot reads (a thread with a page of its items, the thread lists), run with sqlx on
//! connections the store keeps between reads.
//!
//! sqlx pings every connection it takes back into its pool, whatever the pool's settings:
//! on PostgreSQL a `Sync` and its `ReadyForQuery`, a second round trip for every read, and
//! on SQLite a second hop to the connection's worker thread (bench/RESULTS.md). A hot read
//! takes its connection from sqlx's pool as any query does, but once the read has run to
//! its end (every row received, the connection ready for the next statement) the store
//! keeps the connection, up to a few, for the next hot read instead of handing it back.
//! A read that did not run to its end (an error, a request dropped mid-read) lets the
//! connection go back to sqlx, whose ping then drains or closes it: no connection with an
//! answer half unread is ever reused. The kept connections count as in use in sqlx's pool,
//! so they come out of `database.max_connections`: on PostgreSQL hot reads hold at most half
//! of it at once, on SQLite all its readers but one.

use std::sync::{Mutex, PoisonError};

use tokio::sync::{Semaphore, SemaphorePermit};

use chrono::{DateTime, Utc};
use entity::{thread, thread_item};
use sea_orm::{
    sqlx::{self, pool::PoolConnection, Postgres, Row as _, Sqlite},
    ActiveEnum, ConnAcquireErr, ConnectionTrait, DatabaseConnection, DbBackend, DbErr,
};
use serde_json::Value;

use super::rows::{ItemRow, ItemView, ListedThread};
use crate::domain::UserId;

/// Connections kept between hot reads, taken from and given back to one sqlx pool. At
/// most `permits` hot reads hold a connection at once, served in turn (tokio's semaphore is
/// fair): the rest of the pool stays free for every other query and the turn writers, and
/// a read that waits is not overtaken by later ones.
pub(super) struct Kept<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
    idle: Mutex<Vec<PoolConnection<DB>>>,
    permits: Semaphore,
    most: usize,
}

/// A hot read's connection: [`Kept::keep`] keeps it; dropped otherwise, it goes back to
/// sqlx's pool, which checks it.
struct Lease<'a, DB: sqlx::Database> {
    conn: PoolConnection<DB>,
    /// Whether it was kept from an earlier read (it may have died since).
    was_kept: bool,
    _permit: SemaphorePermit<'a>,
}

impl<DB: sqlx::Database> Kept<DB> {
    fn new(pool: sqlx::Pool<DB>, most: usize) -> Self {
        Self {
            pool,
            idle: Mutex::new(Vec::with_capacity(most)),
            permits: Semaphore::new(most),
            most,
        }
    }

    /// A kept connection, or one from the pool; waits for a turn at most the pool's
    /// acquire timeout.
    async fn take(&self) -> Result<Lease<'_, DB>, DbErr> {
        let timeout = self.pool.options().get_acquire_timeout();
        let permit = match self.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(timeout, self.permits.acquire())
                .await
                .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))?
                .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed))?,
        };
        let kept = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let (conn, was_kept) = match kept {
            Some(conn) => (conn, true),
            None => (self.pool.acquire().await.map_err(acquire_err)?, false),
        };
        Ok(Lease {
            conn,
            was_kept,
            _permit: permit,
        })
    }

    /// Keeps the connection of a read that ran to its end, for the next one.
    fn keep(&self, lease: Lease<'_, DB>) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(lease.conn);
    }

    fn idle(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }

    /// Gives every kept connection back to the pool (before it closes: a closing pool
    /// waits for its connections).
    fn release(&self) {
        let all = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        drop(all);
    }
}

fn acquire_err(err: sqlx::Error) -> DbErr {
    DbErr::ConnectionAcquire(match err {
        sqlx::Error::PoolTimedOut => ConnAcquireErr::Timeout,
        _ => ConnAcquireErr::ConnectionClosed,
    })
}

/// The kept connections, by database.
pub(super) enum Reads {
    Postgres(Kept<Postgres>),
    Sqlite(Kept<Sqlite>),
}

/// A parameter of a hot read.
#[derive(Clone, Copy)]
pub(super) enum Param<'a> {
    Str(&'a str),
    Int(i64),
    At(DateTime<Utc>),
    /// A list of strings: a `text[]` on PostgreSQL, a JSON array (for `json_each`) on
    /// SQLite, which has no arrays.
    Strs(&'a [&'a str]),
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;
type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn bind_postgres<'q>(query: PgQuery<'q>, param: Param<'q>) -> PgQuery<'q> {
    match param {
        Param::Str(v) => query.bind(v),
        Param::Int(v) => query.bind(v),
        Param::At(v) => query.bind(v),
        Param::Strs(v) => query.bind(v),
    }
}

fn bind_sqlite<'q>(query: SqliteQuery<'q>, param: Param<'q>) -> SqliteQuery<'q> {
    match param {
        Param::Str(v) => query.bind(v),
        Param::Int(v) => query.bind(v),
        Param::At(v) => query.bind(v),
        Param::Strs(v) => query.bind(Value::from(v).to_string()),
    }
}

/// The rows of a hot read, by database.
pub(super) enum Rows {
    Postgres(Vec<sqlx::postgres::PgRow>),
    Sqlite(Vec<sqlx::sqlite::SqliteRow>),
}

/// A failed statement run with sqlx directly, as sea-orm reports one, so the store's error
/// classification (duplicate keys, lost connections) reads it the same way.
pub(super) fn query_err(err: sqlx::Error) -> DbErr {
    DbErr::Query(sea_orm::RuntimeErr::SqlxError(err))
}

/// Whether a read failed on a connection the server had closed while it was kept (a
/// restart, an idle timeout): worth one more try on another connection, as a read changes
/// nothing.
fn is_dead_connection(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Io(_) | sqlx::Error::Protocol(_))
}

/// Runs `$sql` with `$params` bound by `$bind` on a kept connection of `$kept`, as `$rows`.
macro_rules! fetch_on {
    ($kept:expr, $sql:expr, $params:expr, $bind:path, $rows:path) => {{
        let kept = $kept;
        macro_rules! run {
            ($conn:expr) => {{
                let mut query = sqlx::query($sql);
                for p in $params {
                    query = $bind(query, *p);
                }
                query.fetch_all($conn).await
            }};
        }
        let mut lease = kept.take().await?;
        let rows = match run!(&mut *lease.conn) {
            Ok(rows) => rows,
            Err(e) if lease.was_kept && is_dead_connection(&e) => {
                // Another connection for the one that died (sqlx closes it).
                lease.conn = kept.pool.acquire().await.map_err(acquire_err)?;
                lease.was_kept = false;
                run!(&mut *lease.conn).map_err(query_err)?
            }
            // The lease ends here: the connection goes back to sqlx, which checks it.
            Err(e) => return Err(query_err(e)),
        };
        kept.keep(lease);
        Ok($rows(rows))
    }};
}

impl Reads {
    /// Hot reads on `db`'s pool. On PostgreSQL they may hold half of its connections (the
    /// turn writers and every other query share the rest); on SQLite, whose readers are a
    /// pool of their own, all of them but one (for the other reads).
    pub(super) fn new(db: &DatabaseConnection) -> Self {
        let most = |max: u32, postgres: bool| {
            let most = if postgres {
                max / 2
            } else {
                max.saturating_sub(1)
            };
            usize::try_from(most).unwrap_or(1).max(1)
        };
        match db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool().clone();
                let most = most(pool.options().get_max_connections(), true);
                Self::Postgres(Kept::new(pool, most))
            }
            _ => {
                let pool = db.get_sqlite_connection_pool().clone();
                let most = most(pool.options().get_max_connections(), false);
                Self::Sqlite(Kept::new(pool, most))
            }
        }
    }

    /// The rows `sql` selects with `params` (`$1`, `$2`, ... on both databases).
    pub(super) async fn fetch_all(&self, sql: &str, params: &[Param<'_>]) -> Result<Rows, DbErr> {
        match self {
            Self::Postgres(kept) => fetch_on!(kept, sql, params, bind_postgres, Rows::Postgres),
            Self::Sqlite(kept) => fetch_on!(kept, sql, params, bind_sqlite, Rows::Sqlite),
        }
    }

    /// How long a read may wait for a connection (the pool's acquire timeout).
    pub(super) fn acquire_timeout(&self) -> std::time::Duration {
        match self {
            Self::Postgres(kept) => kept.pool.options().get_acquire_timeout(),
            Self::Sqlite(kept) => kept.pool.options().get_acquire_timeout(),
        }
    }

    /// How many hot reads may hold a connection at once.
    pub(super) fn most(&self) -> usize {
        match self {
            Self::Postgres(kept) => kept.most,
            Self::Sqlite(kept) => kept.most,
        }
    }

    /// Whether the reads run on PostgreSQL (whose SQL differs in places).
    pub(super) fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Connections kept idle.
    pub(super) fn idle(&self) -> usize {
        match self {
            Self::Postgres(kept) => kept.idle(),
            Self::Sqlite(kept) => kept.idle(),
        }
    }

    /// Gives the kept connections back to their pool.
    pub(super) fn release(&self) {
        match self {
            Self::Postgres(kept) => kept.release(),
            Self::Sqlite(kept) => kept.release(),
        }
    }
}

/// A stored enum from the string of column `i`.
fn stored<T: ActiveEnum<Value = String> + sea_orm::Iterable + Copy>(
    raw: &str,
    name: fn(T) -> &'static str,
) -> Result<T, sqlx::Error> {
    T::iter()
        .find(|v| name(*v) == raw)
        .ok_or_else(|| sqlx::Error::Decode(format!("unexpected stored value {raw:?}").into()))
}

/// Decodes rows of either database with the same code: the column types each decoder
/// reads are the same on both. The columns are the reads' own SQL, so their types are
/// known: decoding skips sqlx's per-value type check (`try_get_unchecked`), which compared
/// type names for every column of every row, about a quarter of a page's row decoding.
macro_rules! decoders {
    ($($name:ident: $row:ty),*) => {$(
        pub(super) mod $name {
            use super::*;

            /// The thread row of `user` whose columns start at `at` (id, title, metadata,
            /// status, message_count, created_at, updated_at).
            pub(in crate::store) fn thread(
                row: &$row,
                at: usize,
                user: &UserId,
            ) -> Result<thread::Model, sqlx::Error> {
                Ok(thread::Model {
                    id: row.try_get_unchecked(at)?,
                    user_id: user.as_str().to_owned(),
                    title: row.try_get_unchecked(at + 1)?,
                    metadata: row
                        .try_get_unchecked::<Option<Value>, _>(at + 2)?
                        .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
                    status: row.try_get_unchecked(at + 3)?,
                    message_count: row.try_get_unchecked(at + 4)?,
                    created_at: row.try_get_unchecked(at + 5)?,
                    updated_at: row.try_get_unchecked(at + 6)?,
                })
            }

            /// A listed thread (id, title, created_at).
            pub(in crate::store) fn listed_thread(row: &$row) -> Result<ListedThread, sqlx::Error> {
                Ok(ListedThread {
                    id: row.try_get_unchecked(0)?,
                    title: row.try_get_unchecked(1)?,
                    created_at: row.try_get_unchecked(2)?,
                })
            }

            /// An item row in the columns of the thread-and-items read (see
            /// `threads::thread_and_items_sql`), borrowed: the thread's id is the read's.
            pub(in crate::store) fn item_view<'r>(
                row: &'r $row,
                thread_id: &'r str,
            ) -> Result<ItemView<'r>, sqlx::Error> {
                let name = |i| row.try_get_unchecked::<&str, _>(i);
                Ok(ItemView {
                    id: row.try_get_unchecked(1)?,
                    thread_id,
                    item_type: stored(name(8)?, thread_item::ItemType::as_str)?,
                    status: stored(name(4)?, thread_item::ItemStatus::as_str)?,
                    created_at: row.try_get_unchecked(6)?,
                    content: row.try_get_unchecked(2)?,
                    payload: row.try_get_unchecked(3)?,
                })
            }

            /// `user`'s item row `view` was read from, owned: the view's values and the
            /// row's other columns, its payload the column's text (`json` on PostgreSQL,
            /// whose binary form is the text as stored).
            pub(in crate::store) fn item(
                row: &$row,
                view: &ItemView<'_>,
                user: &UserId,
            ) -> Result<ItemRow, sqlx::Error> {
                Ok(ItemRow {
                    row: thread_item::Model {
                        id: view.id.to_owned(),
                        thread_id: view.thread_id.to_owned(),
                        user_id: user.as_str().to_owned(),
                        content: view.content.to_owned(),
                        payload: None,
                        status: view.status,
                        created_at: view.created_at,
                        updated_at: row.try_get_unchecked(7)?,
                        item_type: view.item_type,
                        role: stored(row.try_get_unchecked(9)?, thread_item::Role::as_str)?,
                        client_key: row.try_get_unchecked(10)?,
                        reply_to: row.try_get_unchecked(11)?,
                        feedback: row.try_get_unchecked(12)?,
                    },
                    payload: view.payload.map(str::to_owned),
                })
            }

            /// Whether the row of the thread-and-items read is the thread's.
            pub(in crate::store) fn is_thread(row: &$row) -> Result<bool, sqlx::Error> {
                Ok(row.try_get_unchecked::<i32, _>(0)? == 0)
            }
        }
    )*};
}

decoders!(postgres_rows: sqlx::postgres::PgRow, sqlite_rows: sqlx::sqlite::SqliteRow);

/// A decoding failure as the store reports it.
pub(super) fn decode_err(err: sqlx::Error) -> DbErr {
    DbErr::Type(err.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{
        domain::{Order, Title, UserId},
        store::Store,
    };

    /// Kept connections are out of sqlx's pool, which waits for every connection it lent
    /// out before it closes: closing the store must give them back first.
    #[tokio::test]
    async fn a_store_with_kept_connections_closes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/r.db", dir.path().display());
        let store = Store::connect(&url, 4, Duration::from_secs(1))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let user = UserId::parse("alice").unwrap();
        let made = store
            .create_thread(&user, Title::default_new(), serde_json::json!({}))
            .await
            .unwrap();
        let reads = (0..8).map(|_| store.list_threads_by_creation(&user, 20, None, Order::Desc));
        for page in futures_util::future::join_all(reads).await {
            let ids: Vec<String> = page.unwrap().items.into_iter().map(|t| t.id).collect();
            assert_eq!(ids, vec![made.id.clone()]);
        }
        assert!(store.reads.idle() >= 1, "no connection was kept");
        let read_idle: usize = store
            .pool_stats()
            .iter()
            .filter(|(name, _, _)| *name == "read")
            .map(|(_, _, idle)| *idle)
            .sum();
        assert!(
            read_idle >= store.reads.idle(),
            "kept connections count as idle"
        );
        tokio::time::timeout(Duration::from_secs(5), store.close())
            .await
            .expect("closing the store waited for its kept connections");
    }
}
