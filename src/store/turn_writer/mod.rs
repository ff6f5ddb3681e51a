//! Where a turn is inserted: group commit for the two writes of every conversation turn
//! (`record_batch` records the user's message; `complete_batch` records its answer).
//! Requests hand their write to one writer task, which takes whatever has queued up (up
//! to [`MAX_BATCH`]) and commits it as one transaction: one multi-row insert, one counter
//! bump per thread, one atomic claim. Under load this turns a dozen serialized round
//! trips per turn into a few per batch; SQLite admits one writer at a time, so this is
//! where its throughput is decided. With nothing queued a batch is one request, written
//! at once: no added latency. What a batch writes and answers is decided in [`plan`],
//! without I/O; the database's part is one statement on PostgreSQL ([`postgres`]) and a
//! transaction of a few statements on SQLite ([`sqlite`]).
//!
//! Every decision stays an atomic statement (scoped bumps for ownership, the unique index
//! for idempotency keys, `UPDATE … WHERE status = 'pending' RETURNING` for claims), so
//! batches from several instances on one PostgreSQL still agree. If a batch fails as a
//! whole (e.g. a key another instance inserted meanwhile), it is replayed one request at a
//! time so each gets its own answer.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use futures_util::FutureExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};
use tokio::sync::{mpsc, oneshot};

mod plan;
mod postgres;
mod sqlite;

pub(crate) use plan::{CompleteOp, RecordOp};

use super::{
    error::{is_unique_violation, StoreError, WriteHealth},
    rows::{RecordedAnswer, Turn},
};
use crate::domain::now;
use plan::{Plan, Results};

/// The most requests one transaction carries.
pub const MAX_BATCH: usize = 64;

type Answer<T> = oneshot::Sender<Result<T, StoreError>>;

enum Op {
    Record(RecordOp, Answer<Turn>),
    Complete(Box<CompleteOp>, Answer<RecordedAnswer>),
}

#[derive(Clone)]
pub(crate) struct TurnWriter {
    queues: Arc<[mpsc::Sender<Op>]>,
    next: Arc<AtomicUsize>,
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable(DbErr::Custom("the turn writer has stopped".into()))
}

impl TurnWriter {
    /// Starts `writers` writer tasks, each with its own queue. A thread's writes always go
    /// to the same writer, so writers never wait on each other's row locks (several
    /// writers on one hot thread row only queued behind each other's commits); SQLite
    /// takes one writer (it has one writer connection), PostgreSQL several, so that
    /// different threads' batches commit side by side.
    pub fn spawn(db: DatabaseConnection, health: Arc<WriteHealth>, writers: usize) -> Self {
        let queues: Vec<_> = (0..writers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
                tokio::spawn(run(db.clone(), health.clone(), rx));
                tx
            })
            .collect();
        Self {
            queues: queues.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The queue of the writer that owns `thread_id`'s writes (a new thread's, any).
    fn queue(&self, thread_id: Option<&str>) -> &mpsc::Sender<Op> {
        let n = self.queues.len();
        let i = match thread_id {
            _ if n == 1 => 0,
            Some(id) => {
                let mut hasher = std::hash::DefaultHasher::new();
                std::hash::Hash::hash(id, &mut hasher);
                usize::try_from(std::hash::Hasher::finish(&hasher) % n as u64).unwrap_or(0)
            }
            None => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        &self.queues[i]
    }

    async fn submit<T>(
        &self,
        thread_id: Option<&str>,
        op: impl FnOnce(Answer<T>) -> Op,
    ) -> Result<T, StoreError> {
        let (answer, rx) = oneshot::channel();
        self.queue(thread_id)
            .send(op(answer))
            .await
            .map_err(|_| writer_gone())?;
        rx.await.map_err(|_| writer_gone())?
    }

    pub async fn record(&self, op: RecordOp) -> Result<Turn, StoreError> {
        let thread = op.thread_id.as_ref().map(|id| id.as_str().to_owned());
        self.submit(thread.as_deref(), |a| Op::Record(op, a)).await
    }

    pub async fn complete(&self, op: CompleteOp) -> Result<RecordedAnswer, StoreError> {
        let thread = op.turn.thread_id.clone();
        self.submit(Some(&thread), |a| Op::Complete(Box::new(op), a))
            .await
    }
}

async fn run(db: DatabaseConnection, health: Arc<WriteHealth>, mut rx: mpsc::Receiver<Op>) {
    while let Some(first) = rx.recv().await {
        let mut records = Vec::new();
        let mut completes = Vec::new();
        let mut take = |op| match op {
            Op::Record(op, a) => records.push((op, a)),
            Op::Complete(op, a) => completes.push((*op, a)),
        };
        take(first);
        for _ in 1..MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => take(op),
                Err(_) => break,
            }
        }
        // A bug in one batch must not stop the writer: its callers see an error, the
        // next batch runs.
        let work = async {
            // Both kinds queued: one transaction, one commit (one WAL flush on
            // PostgreSQL) for all of them. If it fails, each kind is settled on its own.
            let (records, completes) = if records.is_empty() || completes.is_empty() {
                (records, completes)
            } else {
                match health.track(record_and_complete(&db, &records, &completes).await) {
                    Ok((recorded, completed)) => {
                        deliver(records, recorded);
                        deliver(completes, completed);
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "mixed batch failed; settling each kind");
                        (records, completes)
                    }
                }
            };
            if !records.is_empty() {
                settle(&db, &health, records, record_batch, |op, e| match e {
                    e if op.key.is_some() && is_unique_violation(&e) => StoreError::DuplicateKey,
                    e => e.into(),
                })
                .await;
            }
            if !completes.is_empty() {
                settle(&db, &health, completes, complete_batch, |_, e| e.into()).await;
            }
        };
        if std::panic::AssertUnwindSafe(work)
            .catch_unwind()
            .await
            .is_err()
        {
            tracing::error!("turn writer batch panicked; its requests failed");
        }
    }
}

/// Sends each op's result to its caller.
fn deliver<O, T>(ops: Vec<(O, Answer<T>)>, results: Vec<Result<T, StoreError>>) {
    for ((_, answer), result) in ops.into_iter().zip(results) {
        let _ = answer.send(result);
    }
}

/// Records and completes in one transaction (one commit for both kinds).
async fn record_and_complete(
    db: &DatabaseConnection,
    records: &[(RecordOp, Answer<Turn>)],
    completes: &[(CompleteOp, Answer<RecordedAnswer>)],
) -> Result<(Results<Turn>, Results<RecordedAnswer>), DbErr> {
    let records: Vec<&RecordOp> = records.iter().map(|(op, _)| op).collect();
    let completes: Vec<&CompleteOp> = completes.iter().map(|(op, _)| op).collect();
    write(db, &records, &completes).await
}

async fn record_batch(
    db: &DatabaseConnection,
    ops: &[RecordOp],
) -> Result<Vec<Result<Turn, StoreError>>, DbErr> {
    let ops: Vec<&RecordOp> = ops.iter().collect();
    Ok(write(db, &ops, &[]).await?.0)
}

async fn complete_batch(
    db: &DatabaseConnection,
    ops: &[CompleteOp],
) -> Result<Vec<Result<RecordedAnswer, StoreError>>, DbErr> {
    let ops: Vec<&CompleteOp> = ops.iter().collect();
    Ok(write(db, &[], &ops).await?.1)
}

/// Runs `batch` over all ops; if the transaction fails as a whole, replays them one by one.
async fn settle<O, T, F>(
    db: &DatabaseConnection,
    health: &WriteHealth,
    ops: Vec<(O, Answer<T>)>,
    batch: F,
    single_error: impl Fn(&O, DbErr) -> StoreError,
) where
    F: for<'a> AsyncBatch<'a, O, T>,
{
    let (inputs, answers): (Vec<O>, Vec<Answer<T>>) = ops.into_iter().unzip();
    match health.track(batch.call(db, &inputs).await) {
        Ok(results) => {
            for (answer, result) in answers.into_iter().zip(results) {
                let _ = answer.send(result);
            }
        }
        Err(e) if inputs.len() == 1 => {
            let _ = answers
                .into_iter()
                .next()
                .map(|a| a.send(Err(single_error(&inputs[0], e))));
        }
        Err(e) => {
            tracing::debug!(error = %e, size = inputs.len(), "batch failed; replaying one by one");
            for (i, answer) in answers.into_iter().enumerate() {
                let one = std::slice::from_ref(&inputs[i]);
                let result = match health.track(batch.call(db, one).await) {
                    Ok(mut r) => r.pop().unwrap_or_else(|| Err(writer_gone())),
                    Err(e) => Err(single_error(&inputs[i], e)),
                };
                let _ = answer.send(result);
            }
        }
    }
}

/// An async batch function over borrowed inputs (a named trait so `settle` can call it
/// more than once).
pub(crate) trait AsyncBatch<'a, O: 'a, T> {
    type Fut: std::future::Future<Output = Result<Vec<Result<T, StoreError>>, DbErr>> + 'a;
    fn call(&self, db: &'a DatabaseConnection, ops: &'a [O]) -> Self::Fut;
}

impl<'a, O: 'a, T, F, Fut> AsyncBatch<'a, O, T> for F
where
    F: Fn(&'a DatabaseConnection, &'a [O]) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Result<T, StoreError>>, DbErr>> + 'a,
{
    type Fut = Fut;
    fn call(&self, db: &'a DatabaseConnection, ops: &'a [O]) -> Fut {
        self(db, ops)
    }
}

/// Writes a batch atomically and answers each op on its own terms. The rows are built
/// here, before the database is asked anything; the database then decides which of them
/// stand (threads found and owned, turns still pending) and the answers follow from that.
async fn write(
    db: &DatabaseConnection,
    records: &[&RecordOp],
    completes: &[&CompleteOp],
) -> Result<(Results<Turn>, Results<RecordedAnswer>), DbErr> {
    let at = now();
    let plan = Plan::new(records, completes, at);
    let decided = if db.get_database_backend() == DbBackend::Postgres {
        postgres::write(db, &plan, at).await?
    } else {
        sqlite::write(db, &plan, at).await?
    };
    Ok(plan.results(&decided))
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use sea_orm::ConnectionTrait;

    use super::*;
    use crate::{
        domain::{new_id, ThreadId, UserId},
        store::{rows::AnswerIds, ItemStatus, Store},
    };

    /// A store on a fresh SQLite file, or on a fresh schema of `TEST_DATABASE_URL`'s
    /// PostgreSQL when that is set (the schema is dropped by the suite's sweep of `t_*`).
    pub(in crate::store) async fn store(dir: &tempfile::TempDir) -> Store {
        let url = match std::env::var("TEST_DATABASE_URL") {
            Ok(base) if !base.is_empty() => {
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let admin = Store::connect(&base, 1, Duration::from_secs(1))
                    .await
                    .unwrap();
                admin
                    .write
                    .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
                    .await
                    .unwrap();
                admin.close().await;
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}options=-c%20search_path%3D{schema}")
            }
            _ => format!("sqlite://{}/w.db", dir.path().display()),
        };
        let store = Store::connect(&url, 4, Duration::from_secs(1))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// The generic plan PostgreSQL makes for `sql` (as it plans a statement once per
    /// connection), for the arguments `args`: `EXPLAIN EXECUTE` in a transaction rolled
    /// back, so the statement and the setting share one connection. No type list: each
    /// parameter's type comes from the statement's casts, as when sqlx prepares it.
    pub(in crate::store) async fn generic_plan(store: &Store, sql: &str, args: &str) -> String {
        use sea_orm::{DbBackend, Statement, TransactionTrait};

        let txn = store.write.begin().await.unwrap();
        txn.execute_unprepared(&format!("PREPARE planned AS {sql}"))
            .await
            .unwrap();
        txn.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
            .await
            .unwrap();
        let rows = txn
            .query_all(Statement::from_string(
                DbBackend::Postgres,
                format!("EXPLAIN EXECUTE planned ({args})"),
            ))
            .await
            .unwrap();
        // A prepared statement outlives the transaction; the connection goes back to the pool.
        txn.execute_unprepared("DEALLOCATE planned").await.unwrap();
        txn.rollback().await.unwrap();
        rows.iter()
            .map(|row| row.try_get_by_index::<String>(0).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn answer(user: &UserId, turn: &Turn, text: &str) -> CompleteOp {
        CompleteOp {
            user: user.clone(),
            turn: turn.clone(),
            ids: AnswerIds {
                message_id: new_id("msg"),
                message_at: now(),
                workflow: None,
                message_status: ItemStatus::Completed,
                extras: Vec::new(),
            },
            text: text.into(),
            tool_calls: Vec::new(),
        }
    }

    /// Two runs of one turn (a stale turn taken over while its first run still went) can
    /// land in one batch: only the first is recorded, and the thread counts one answer.
    #[tokio::test]
    async fn a_turn_completed_twice_in_one_batch_is_answered_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let user = UserId::parse("alice").unwrap();
        let turn = store
            .record_user_turn(&user, None, "hello", None, None)
            .await
            .unwrap();
        let ops = [
            answer(&user, &turn, "first"),
            answer(&user, &turn, "second"),
        ];
        let results = complete_batch(&store.write, &ops).await.unwrap();
        assert!(results[0].is_ok(), "{:?}", results[0].as_ref().err());
        assert!(matches!(results[1], Err(StoreError::TurnAlreadyAnswered)));
        let thread = ThreadId::parse(&turn.thread_id).unwrap();
        let stored = store.get_thread(&user, &thread).await.unwrap();
        assert_eq!(stored.message_count, 2);
        let answer = store.load_answer(&user, &turn.id).await.unwrap().unwrap();
        assert_eq!(answer.item.content, "first");
    }

    /// A batch mixing threads of two users, one of which names the other's thread: each
    /// gets its own answer, and nothing is written to a thread that is not the writer's.
    #[tokio::test]
    async fn a_batch_over_several_threads_and_users_keeps_each_to_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        let a1 = store
            .record_user_turn(&alice, None, "a1", None, None)
            .await
            .unwrap();
        let a2 = store
            .record_user_turn(&alice, None, "a2", None, None)
            .await
            .unwrap();
        let b1 = store
            .record_user_turn(&bob, None, "b1", None, None)
            .await
            .unwrap();
        let a1_thread = ThreadId::parse(&a1.thread_id).unwrap();
        let ops = [
            RecordOp {
                user: alice.clone(),
                thread_id: Some(a1_thread.clone()),
                text: "again".into(),
                key: None,
                payload: None,
            },
            RecordOp {
                user: bob.clone(),
                thread_id: Some(a1_thread.clone()),
                text: "not mine".into(),
                key: None,
                payload: None,
            },
            RecordOp {
                user: bob.clone(),
                thread_id: None,
                text: "new".into(),
                key: None,
                payload: None,
            },
        ];
        let recorded = record_batch(&store.write, &ops).await.unwrap();
        assert!(recorded[0].is_ok());
        assert!(matches!(recorded[1], Err(StoreError::ThreadNotFound)));
        assert!(recorded[2].is_ok());
        let completes = [
            answer(&alice, &a1, "to a1"),
            answer(&alice, &a2, "to a2"),
            answer(&bob, &b1, "to b1"),
            // Bob cannot complete Alice's turn.
            answer(&bob, &a2, "forged"),
        ];
        let done = complete_batch(&store.write, &completes).await.unwrap();
        assert!(done[..3].iter().all(Result::is_ok), "{done:?}");
        assert!(done[3].is_err());
        let count = |user: &UserId, turn: &Turn| {
            let (store, user, id) = (
                store.clone(),
                user.clone(),
                ThreadId::parse(&turn.thread_id).unwrap(),
            );
            async move { store.get_thread(&user, &id).await.unwrap().message_count }
        };
        // a1: its turn, the answer, and the second message; a2 and b1: turn and answer.
        assert_eq!(count(&alice, &a1).await, 3);
        assert_eq!(count(&alice, &a2).await, 2);
        assert_eq!(count(&bob, &b1).await, 2);
        let a2_answer = store.load_answer(&alice, &a2.id).await.unwrap().unwrap();
        assert_eq!(a2_answer.item.content, "to a2");
    }

    /// Records and answers queued together commit in one transaction, with every thread
    /// of both kinds bumped once and each op answered on its own terms.
    #[tokio::test]
    async fn a_mixed_batch_records_and_answers_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        let turn = store
            .record_user_turn(&alice, None, "first", None, None)
            .await
            .unwrap();
        let bobs = store
            .record_user_turn(&bob, None, "bob's", None, None)
            .await
            .unwrap();
        let record = |user: &UserId, thread: &str, text: &str| {
            let (tx, _rx) = oneshot::channel();
            (
                RecordOp {
                    user: user.clone(),
                    thread_id: ThreadId::parse(thread),
                    text: text.into(),
                    key: None,
                    payload: None,
                },
                tx,
            )
        };
        let records = [
            record(&alice, &turn.thread_id, "second"),
            record(&alice, &bobs.thread_id, "into bob's thread"),
        ];
        let (tx, _rx) = oneshot::channel();
        let completes = [(answer(&alice, &turn, "an answer"), tx)];
        let (recorded, completed) = record_and_complete(&store.write, &records, &completes)
            .await
            .unwrap();
        assert!(completed[0].is_ok(), "{completed:?}");
        assert!(recorded[0].is_ok(), "{recorded:?}");
        assert!(matches!(recorded[1], Err(StoreError::ThreadNotFound)));
        let thread = ThreadId::parse(&turn.thread_id).unwrap();
        let stored = store.get_thread(&alice, &thread).await.unwrap();
        assert_eq!(stored.message_count, 3);
        let bobs_thread = ThreadId::parse(&bobs.thread_id).unwrap();
        let untouched = store.get_thread(&bob, &bobs_thread).await.unwrap();
        assert_eq!(untouched.message_count, 1);
    }
}
