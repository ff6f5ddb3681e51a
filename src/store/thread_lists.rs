//! The first page of ChatKit's thread list, read for many requests at once. It is the
//! read a chat UI makes most (every load, every new thread), and alone it is a small
//! statement whose cost is mostly what any statement costs: on PostgreSQL the message,
//! the snapshot, the executor's start and the round trip; in the gateway a connection,
//! a socket write and read. Requests hand their read to reader tasks, and each reader
//! takes whatever has queued while it was busy (up to [`MAX_BATCH`]) and reads every
//! request's page in one statement, each user's threads by the same index scan a lone
//! read makes. With nothing queued a batch is one request, read at once: no added
//! latency. Under load those costs are paid once per batch.
//!
//! Each request still gets its own scan, scoped by its own user id, even when several
//! name the same user; and its page is read after it arrived, so it shows every write
//! acknowledged before it, as a lone read would.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use futures_util::FutureExt;
use sea_orm::{ConnAcquireErr, DbErr};
use tokio::sync::oneshot;

use super::{
    reads::{self, Param, Reads, Rows},
    rows::ListedThread,
    StoreError,
};
use crate::domain::UserId;

/// The most requests one statement reads for.
pub(super) const MAX_BATCH: usize = 64;

/// PostgreSQL: one lateral scan per requested user, numbered from 0 by the user's place in
/// the array.
const POSTGRES: &str = "SELECT t.id, t.title, t.created_at, q.n - 1 AS n \
     FROM unnest($1::text[]) WITH ORDINALITY AS q(user_id, n) \
     CROSS JOIN LATERAL (SELECT id, title, created_at FROM threads WHERE user_id = q.user_id \
         ORDER BY created_at DESC, id DESC LIMIT $2) AS t \
     ORDER BY q.n, t.created_at DESC, t.id DESC";

/// SQLite has no lateral join: each requested user's page is a list of rowids its
/// `(user_id, created_at, id)` index gives, and the rows are looked up by rowid. They come
/// in rowid order: each page is put in order by the gateway ([`newest_first`]), which
/// SQLite would do with a temporary b-tree for the whole batch.
const SQLITE: &str = "SELECT t.id, t.title, t.created_at, q.key AS n \
     FROM json_each($1) AS q \
     JOIN threads AS t ON t.rowid IN (SELECT rowid FROM threads WHERE user_id = q.value \
         ORDER BY created_at DESC, id DESC LIMIT $2)";

/// Reader tasks for `reads`. On PostgreSQL one: what a batch saves is the database's cost
/// per statement, and a lone reader makes each batch as large as the load allows (two
/// readers made smaller batches and served fewer lists, bench/RESULTS.md). On SQLite two:
/// the statements run on their connection's own thread in this process, and one thread
/// would serve every list on one core.
pub(super) fn readers(reads: &Reads) -> usize {
    if reads.is_postgres() {
        1
    } else {
        reads.most().min(2)
    }
}

type Answer = oneshot::Sender<Result<Vec<ListedThread>, StoreError>>;

/// A request's read, queued.
struct Wanted {
    user: UserId,
    /// Rows wanted: the page size and one more (whether there is more).
    rows: usize,
    answer: Answer,
}

/// The queue of first-page reads and its readers.
#[derive(Clone)]
pub(super) struct ThreadLists {
    queue: flume::Sender<Wanted>,
    /// Statements run so far: one per batch, one relaxed add; the tests read it.
    #[cfg_attr(not(test), allow(dead_code))]
    statements: Arc<AtomicU64>,
}

fn readers_gone() -> StoreError {
    StoreError::Unavailable(DbErr::Custom("the thread-list readers have stopped".into()))
}

impl ThreadLists {
    /// Starts `readers` reader tasks on one queue. The queue is unbounded: each entry is a
    /// request in flight, which the server's own limits bound.
    pub(super) fn spawn(reads: Arc<Reads>, readers: usize) -> Self {
        let (queue, taken) = flume::unbounded();
        let statements = Arc::new(AtomicU64::new(0));
        for _ in 0..readers.max(1) {
            tokio::spawn(run(reads.clone(), taken.clone(), statements.clone()));
        }
        Self { queue, statements }
    }

    /// The user's `limit + 1` most recent threads, newest first.
    pub(super) async fn first_page(
        &self,
        user: &UserId,
        limit: u64,
    ) -> Result<Vec<ListedThread>, StoreError> {
        let (answer, page) = oneshot::channel();
        let wanted = Wanted {
            user: user.clone(),
            rows: usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX),
            answer,
        };
        self.queue.send(wanted).map_err(|_| readers_gone())?;
        page.await.map_err(|_| readers_gone())?
    }

    /// Statements run so far (each answers one batch).
    #[cfg(test)]
    pub(super) fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }
}

async fn run(reads: Arc<Reads>, taken: flume::Receiver<Wanted>, statements: Arc<AtomicU64>) {
    while let Ok(first) = taken.recv_async().await {
        let mut batch = Vec::with_capacity(taken.len().min(MAX_BATCH - 1) + 1);
        batch.push(first);
        batch.extend(taken.try_iter().take(MAX_BATCH - 1));
        // A request given up meanwhile (its client gone) is not read.
        batch.retain(|w| !w.answer.is_closed());
        if batch.is_empty() {
            continue;
        }
        statements.fetch_add(1, Ordering::Relaxed);
        // A bug in one batch must not stop the reader: its requests see an error, the
        // next batch runs.
        let pages = match std::panic::AssertUnwindSafe(read(&reads, &batch))
            .catch_unwind()
            .await
        {
            Ok(Ok(pages)) => pages,
            Ok(Err(err)) => {
                let err = StoreError::from(err);
                let copies: Vec<_> = batch.iter().skip(1).map(|_| copy(&err)).collect();
                let mut errors = std::iter::once(err).chain(copies);
                for wanted in batch {
                    let _ = wanted
                        .answer
                        .send(Err(errors.next().unwrap_or_else(readers_gone)));
                }
                continue;
            }
            Err(_) => {
                tracing::error!("thread-list batch panicked; its requests failed");
                for wanted in batch {
                    let _ = wanted.answer.send(Err(readers_gone()));
                }
                continue;
            }
        };
        for (wanted, page) in batch.into_iter().zip(pages) {
            let _ = wanted.answer.send(Ok(page));
        }
    }
}

/// A batch's failure for one more of its requests: the same kind, the same message.
fn copy(err: &StoreError) -> StoreError {
    let again = DbErr::Custom(err.to_string());
    match err {
        StoreError::Unavailable(_) => StoreError::Unavailable(again),
        _ => StoreError::Db(again),
    }
}

/// Every request's page, in the batch's order.
async fn read(reads: &Reads, batch: &[Wanted]) -> Result<Vec<Vec<ListedThread>>, DbErr> {
    let users: Vec<&str> = batch.iter().map(|w| w.user.as_str()).collect();
    // One row count for the statement: pages of several sizes in one batch are rare
    // (ChatKit asks with one), and each request keeps only its own.
    let rows = batch.iter().map(|w| w.rows).max().unwrap_or(1);
    let sql = if reads.is_postgres() {
        POSTGRES
    } else {
        SQLITE
    };
    let params = [
        Param::Strs(&users),
        Param::Int(i64::try_from(rows).unwrap_or(i64::MAX)),
    ];
    // A statement that does not end (a connection lost without a reset, a table locked
    // for long) would hold up every thread list behind it: it is given up after the time
    // a request may wait for a connection, and its requests are answered "unavailable".
    let fetched = tokio::time::timeout(reads.acquire_timeout(), reads.fetch_all(sql, &params))
        .await
        .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))??;
    let mut pages: Vec<Vec<ListedThread>> = batch
        .iter()
        .map(|w| Vec::with_capacity(w.rows.min(rows).min(128)))
        .collect();
    let mut place = |(n, thread): (i64, ListedThread)| -> Result<(), DbErr> {
        let page = usize::try_from(n)
            .ok()
            .and_then(|i| pages.get_mut(i))
            .ok_or_else(|| DbErr::Type(format!("a thread-list row for request {n} of none")))?;
        page.push(thread);
        Ok(())
    };
    match &fetched {
        Rows::Postgres(rows) => {
            for row in rows {
                place(
                    reads::postgres_rows::batched_listed_thread(row).map_err(reads::decode_err)?,
                )?;
            }
        }
        Rows::Sqlite(rows) => {
            for row in rows {
                place(reads::sqlite_rows::batched_listed_thread(row).map_err(reads::decode_err)?)?;
            }
            pages.iter_mut().for_each(|page| newest_first(page));
        }
    }
    for (page, wanted) in pages.iter_mut().zip(batch) {
        page.truncate(wanted.rows);
    }
    Ok(pages)
}

/// The order of the lone read on SQLite: creation time, then id as SQLite compares text
/// (bytes, as Rust does).
fn newest_first(page: &mut [ListedThread]) {
    page.sort_unstable_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
}

#[cfg(test)]
mod tests {
    use futures_util::future::join_all;

    use crate::{
        domain::{Order, Title, UserId},
        store::turn_writer::tests::store,
    };

    /// Requests queued together are read in one statement, and each gets its own user's
    /// page at its own size, as the lone read of the other pages and orders reads it.
    #[tokio::test]
    async fn first_pages_queued_together_are_one_statement_each_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let (alice, bob, carol) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
            UserId::parse("carol").unwrap(),
        );
        for (user, n) in [(&alice, 3), (&bob, 25)] {
            for i in 0..n {
                let title = Title::parse(&format!("{} {i}", user.as_str())).unwrap();
                store
                    .create_thread(user, title, serde_json::json!({}))
                    .await
                    .unwrap();
            }
        }
        let wanted = [
            (&alice, 20),
            (&bob, 20),
            (&carol, 20),
            (&bob, 5),
            (&alice, 1),
        ];
        let before = store.lists.statements();
        // Polled together on this one-threaded runtime, every request is queued before a
        // reader runs.
        let pages =
            join_all(wanted.iter().map(|(user, limit)| {
                store.list_threads_by_creation(user, *limit, None, Order::Desc)
            }))
            .await;
        assert_eq!(
            store.lists.statements() - before,
            1,
            "one statement for all"
        );
        for ((user, limit), page) in wanted.iter().zip(pages) {
            let page = page.unwrap();
            let mut alone = store
                .listed_thread_page(user, *limit, None, Order::Desc)
                .await
                .unwrap();
            let has_more = alone.len() as u64 > *limit;
            alone.truncate(usize::try_from(*limit).unwrap());
            let ids = |t: &Vec<crate::store::ListedThread>| -> Vec<String> {
                t.iter().map(|t| t.id.clone()).collect()
            };
            assert_eq!(
                ids(&page.items),
                ids(&alone),
                "{} at {limit}",
                user.as_str()
            );
            assert_eq!(
                page.next.is_some(),
                has_more,
                "{} at {limit}",
                user.as_str()
            );
            let titles_ok = page
                .items
                .iter()
                .all(|t| t.title.starts_with(user.as_str()));
            assert!(
                titles_ok,
                "{} was shown another user's thread",
                user.as_str()
            );
        }
    }
}
