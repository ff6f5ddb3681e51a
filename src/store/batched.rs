//! Reads run for many requests in one statement: the first page of ChatKit's thread list,
//! and on PostgreSQL a thread with the first page of its items. They are the reads a chat
//! UI makes most (every load, every thread opened), and alone each is a small statement
//! whose cost is mostly what any statement costs: on PostgreSQL the message, the
//! snapshot, the executor's start and the round trip; in the gateway a connection, a
//! socket write and read. Requests hand such a read to a reader task of its
//! kind (its statement), and each reader takes whatever has queued while it was busy (up
//! to [`MAX_BATCH`]) and runs it for every request at once, each user's rows by the same
//! index scan a lone read makes. With nothing queued a batch is one request, read at
//! once: no added latency. Under load those costs are paid once per batch. The reader only
//! splits the rows by request; each request decodes its own, on its own task.
//!
//! A read joins this only if its statement's plan cannot turn on the data, since one slow
//! statement holds every request of its kind behind it: each scan walks its index in the
//! page's order and stops at the page, however many rows a user or thread has (the plan
//! tests hold the statements to it; `rows::items_of_thread` says how the item page keeps
//! its plan).
//!
//! Each request still gets its own scan, scoped by its own user id, even when several
//! name the same user; and its rows are read after it arrived, so they show every write
//! acknowledged before it, as a lone read's would.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use futures_util::FutureExt;
use sea_orm::{sqlx::Row as _, ConnAcquireErr, DbErr};
use tokio::sync::oneshot;

use super::{
    reads::{Param, Reads, Rows},
    StoreError,
};
use crate::domain::{ThreadId, UserId};

/// The most requests one statement reads for.
pub(super) const MAX_BATCH: usize = 64;

/// A request's read.
pub(super) struct Wanted {
    pub user: UserId,
    /// The thread read, for a read of a thread's items.
    pub thread: Option<ThreadId>,
    /// Rows wanted: the page size and one more (whether there is more).
    pub rows: u64,
}

type Answer = oneshot::Sender<Result<Rows, StoreError>>;

/// One statement's queue and its readers.
#[derive(Clone)]
pub(super) struct Batched {
    queue: flume::Sender<(Wanted, Answer)>,
    /// Statements run so far: one per batch, one relaxed add; the tests read it.
    #[cfg_attr(not(test), allow(dead_code))]
    statements: Arc<AtomicU64>,
}

fn readers_gone() -> StoreError {
    StoreError::Unavailable(DbErr::Custom("the batched readers have stopped".into()))
}

impl Batched {
    /// Starts the readers of `sql`, which reads for every request of a batch: `$1` is the
    /// array of their user ids, then (reads of a thread's items) the array of their
    /// threads, then the most rows any of them wants; its last column is the request's
    /// place in those arrays, from 0. The queue is unbounded: each entry is a request in
    /// flight, which the server's own limits bound.
    pub(super) fn spawn(reads: &Arc<Reads>, sql: impl Into<Arc<str>>) -> Self {
        let (queue, taken) = flume::unbounded();
        let statements = Arc::new(AtomicU64::new(0));
        let sql = sql.into();
        for _ in 0..readers(reads) {
            tokio::spawn(run(
                reads.clone(),
                sql.clone(),
                taken.clone(),
                statements.clone(),
            ));
        }
        Self { queue, statements }
    }

    /// The rows read for `wanted`, with the requests queued beside it. They come in no
    /// promised order, and may be more than it wants.
    pub(super) async fn read(&self, wanted: Wanted) -> Result<Rows, StoreError> {
        let (answer, rows) = oneshot::channel();
        self.queue
            .send((wanted, answer))
            .map_err(|_| readers_gone())?;
        rows.await.map_err(|_| readers_gone())?
    }

    /// Statements run so far.
    #[cfg(test)]
    pub(super) fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }
}

/// Reader tasks of one statement. On PostgreSQL one: what a batch saves is the database's
/// cost per statement, and a lone reader makes each batch as large as the load allows (two
/// readers made smaller batches and served fewer lists, bench/RESULTS.md). On SQLite two:
/// the statements run on their connection's own thread in this process, and one thread
/// would serve every list on one core.
fn readers(reads: &Reads) -> usize {
    if reads.is_postgres() {
        1
    } else {
        reads.most().min(2)
    }
}

async fn run(
    reads: Arc<Reads>,
    sql: Arc<str>,
    taken: flume::Receiver<(Wanted, Answer)>,
    statements: Arc<AtomicU64>,
) {
    while let Ok(first) = taken.recv_async().await {
        let mut batch = Vec::with_capacity(taken.len().min(MAX_BATCH - 1) + 1);
        batch.push(first);
        batch.extend(taken.try_iter().take(MAX_BATCH - 1));
        // A request given up meanwhile (its client gone) is not read.
        batch.retain(|(_, answer)| !answer.is_closed());
        if batch.is_empty() {
            continue;
        }
        statements.fetch_add(1, Ordering::Relaxed);
        let (wanted, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        // A bug in one batch must not stop the reader: its requests see an error, the
        // next batch runs.
        match std::panic::AssertUnwindSafe(read(&reads, &sql, &wanted))
            .catch_unwind()
            .await
        {
            Ok(Ok(rows)) => {
                for (answer, rows) in answers.into_iter().zip(rows) {
                    let _ = answer.send(Ok(rows));
                }
            }
            Ok(Err(err)) => {
                let err = StoreError::from(err);
                for answer in answers {
                    let _ = answer.send(Err(copy(&err)));
                }
            }
            Err(_) => {
                tracing::error!("a batched read panicked; its requests failed");
                for answer in answers {
                    let _ = answer.send(Err(readers_gone()));
                }
            }
        }
    }
}

/// A batch's failure for each of its requests: the same kind, the same message.
fn copy(err: &StoreError) -> StoreError {
    let again = DbErr::Custom(err.to_string());
    match err {
        StoreError::Unavailable(_) => StoreError::Unavailable(again),
        _ => StoreError::Db(again),
    }
}

/// Every request's rows, in the batch's order.
async fn read(reads: &Reads, sql: &str, batch: &[Wanted]) -> Result<Vec<Rows>, DbErr> {
    let users: Vec<&str> = batch.iter().map(|w| w.user.as_str()).collect();
    let threads: Vec<&str> = batch
        .iter()
        .filter_map(|w| w.thread.as_ref().map(ThreadId::as_str))
        .collect();
    // One row count for the statement: pages of several sizes in one batch are rare
    // (ChatKit asks with one), and each request keeps only its own.
    let rows = batch.iter().map(|w| w.rows).max().unwrap_or(1);
    let rows = Param::Int(i64::try_from(rows).unwrap_or(i64::MAX));
    let mut params = vec![Param::Strs(&users)];
    if !threads.is_empty() {
        params.push(Param::Strs(&threads));
    }
    params.push(rows);
    // A statement that does not end (a connection lost without a reset, a table locked
    // for long) would hold up every read of its kind behind it: it is given up after the
    // time a request may wait for a connection, and its requests are answered
    // "unavailable".
    let fetched = tokio::time::timeout(reads.acquire_timeout(), reads.fetch_all(sql, &params))
        .await
        .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))??;
    let misplaced = |n: i64| DbErr::Type(format!("a batched row for request {n} of none"));
    macro_rules! split {
        ($rows:expr, $variant:path) => {{
            let mut split: Vec<Vec<_>> = batch.iter().map(|_| Vec::new()).collect();
            for row in $rows {
                let at = row.columns().len().saturating_sub(1);
                let n: i64 = row
                    .try_get_unchecked(at)
                    .map_err(super::reads::decode_err)?;
                usize::try_from(n)
                    .ok()
                    .and_then(|n| split.get_mut(n))
                    .ok_or_else(|| misplaced(n))?
                    .push(row);
            }
            split.into_iter().map($variant).collect()
        }};
    }
    Ok(match fetched {
        Rows::Postgres(rows) => split!(rows, Rows::Postgres),
        Rows::Sqlite(rows) => split!(rows, Rows::Sqlite),
    })
}

#[cfg(test)]
mod tests {
    use futures_util::future::join_all;

    use super::Batched;
    use crate::{
        domain::{Order, ThreadId, Title, UserId},
        store::{
            turn_writer::tests::{generic_plan, store},
            StoreError,
        },
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

    /// PostgreSQL plans the batch once per connection (a generic plan), whatever users it
    /// will read; that plan must walk each user's threads in the index's order and stop at
    /// the page, however many threads one user has, not fetch and sort them all.
    #[tokio::test]
    async fn the_postgres_batch_walks_the_index_in_order_for_any_user() {
        use sea_orm::ConnectionTrait;

        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        if !store.reads.is_postgres() {
            return;
        }
        // One user with many threads, many with a few: the skew that makes a planner
        // prefer fetching a user's rows and sorting them.
        store
            .write
            .execute_unprepared(
                "INSERT INTO threads (id, user_id, title, metadata, status, message_count, \
                     created_at, updated_at) \
                 SELECT 'thr_' || i, CASE WHEN i % 2 = 0 THEN 'heavy' ELSE 'u' || (i % 300) END, \
                     't', '{}', 'active', 0, now() - i * interval '1 s', now() \
                 FROM generate_series(1, 6000) AS i; ANALYZE threads",
            )
            .await
            .unwrap();
        let sql = crate::store::threads::batched_first_threads_sql(true);
        let plan = generic_plan(&store, sql, "ARRAY['heavy', 'u1'], 21").await;
        assert!(
            plan.contains("Index Scan Backward using idx_threads_user_created"),
            "{plan}"
        );
        assert!(!plan.contains("Sort"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }

    /// On PostgreSQL, a thread with the first page of its items is read in batches too: each
    /// request gets its own thread and items, at its own size, or "not found" for a thread
    /// that is not its user's, though another request of the same batch reads that thread.
    /// (On SQLite these reads stay one per statement.)
    #[tokio::test]
    async fn item_pages_queued_together_are_one_statement_on_postgres_each_its_own() {
        use crate::store::Fetched;

        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        let mut threads = Vec::new();
        for (user, items) in [(&alice, 3), (&bob, 25)] {
            let title = Title::parse(user.as_str()).unwrap();
            let thread = store
                .create_thread(user, title, serde_json::json!({}))
                .await
                .unwrap();
            let id = ThreadId::parse(&thread.id).unwrap();
            for i in 0..items {
                let text = format!("{} {i}", user.as_str());
                store
                    .record_user_turn(user, Some(&id), &text, None, None)
                    .await
                    .unwrap();
            }
            threads.push(id);
        }
        let wanted = [
            (&alice, &threads[0], 20, Order::Desc),
            (&bob, &threads[1], 20, Order::Desc),
            (&bob, &threads[1], 5, Order::Desc),
            (&alice, &threads[1], 20, Order::Desc),
        ];
        let ids = |page: crate::store::Page<Fetched<std::convert::Infallible>>| -> Vec<String> {
            page.items
                .into_iter()
                .map(|item| match item {
                    Fetched::Row(row) => row.row.id,
                    Fetched::Known(never) => match never {},
                })
                .collect()
        };
        let before = page_statements(&store);
        let pages = join_all(wanted.iter().map(|w| page_of(&store, w.0, w.1, w.2, w.3))).await;
        let batched = if store.reads.is_postgres() { 1 } else { 0 };
        assert_eq!(page_statements(&store) - before, batched);
        for (w, page) in wanted.iter().zip(pages) {
            let (user, thread, limit, _) = w;
            let alone = page_alone(&store, user, thread, *limit).await;
            match (page, alone) {
                (Ok((t, page)), Some((alone, more))) => {
                    assert_eq!(t.id, thread.as_str());
                    assert_eq!(page.next.is_some(), more, "{limit}");
                    assert_eq!(ids(page), alone, "{} at {limit}", user.as_str());
                }
                (Err(StoreError::ThreadNotFound), None) => {
                    assert_eq!(user.as_str(), "alice", "only alice asked for bob's thread");
                }
                (page, alone) => panic!("batched {:?}, alone {alone:?}", page.err()),
            }
        }
    }

    async fn page_of(
        store: &crate::store::Store,
        user: &UserId,
        thread: &ThreadId,
        limit: u64,
        order: Order,
    ) -> Result<
        (
            entity::thread::Model,
            crate::store::Page<crate::store::Fetched<std::convert::Infallible>>,
        ),
        StoreError,
    > {
        let types = crate::store::rows::MESSAGE_TYPES;
        store
            .thread_and_item_rows(user, thread, &types, limit, None, order, |_| None)
            .await
    }

    /// The newest page of the user's thread as a plain query of both tables reads it, apart
    /// from the batches and their statement: its ids and whether more follow, or `None`
    /// when the thread is not the user's.
    async fn page_alone(
        store: &crate::store::Store,
        user: &UserId,
        thread: &ThreadId,
        limit: u64,
    ) -> Option<(Vec<String>, bool)> {
        use entity::{thread, thread_item};
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

        thread::Entity::find_by_id(thread.as_str())
            .filter(thread::Column::UserId.eq(user.as_str()))
            .one(&store.read)
            .await
            .unwrap()?;
        let rows = thread_item::Entity::find()
            .filter(thread_item::Column::ThreadId.eq(thread.as_str()))
            .filter(thread_item::Column::UserId.eq(user.as_str()))
            .filter(thread_item::Column::ItemType.is_in(crate::store::rows::MESSAGE_TYPES))
            .order_by_desc(thread_item::Column::CreatedAt)
            .order_by_desc(thread_item::Column::Id)
            .limit(limit + 1)
            .all(&store.read)
            .await
            .unwrap();
        let more = rows.len() as u64 > limit;
        let ids = rows
            .into_iter()
            .take(usize::try_from(limit).unwrap())
            .map(|r| r.id)
            .collect();
        Some((ids, more))
    }

    fn page_statements(store: &crate::store::Store) -> u64 {
        store
            .pages
            .read()
            .unwrap()
            .values()
            .map(Batched::statements)
            .sum()
    }
}
