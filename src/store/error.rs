//! Why a persistence call failed, as far as the caller can act on it: the not-found and
//! conflict answers, and database errors sorted into unavailable, read-only, full and the
//! rest. Also the record of the last failed write, which readiness reports.

use std::sync::Mutex;

use sea_orm::{DbErr, SqlErr};

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
    /// No client tool call or question of the thread waits for this answer.
    #[error("nothing in this thread waits for that answer")]
    NothingPending,
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

pub(crate) fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// The last write failure that no successful write has followed yet (a full disk, a
/// read-only file, a lost connection). Readiness reports it until a write succeeds again.
#[derive(Default)]
pub(crate) struct WriteHealth(Mutex<Option<String>>);

impl WriteHealth {
    /// A record that starts out failing with `reason`, until a first write succeeds.
    pub fn unproven(reason: &str) -> Self {
        Self(Mutex::new(Some(reason.into())))
    }

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

    pub fn last_failure(&self) -> Option<String> {
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
