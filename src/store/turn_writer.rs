//! Where a turn is inserted: group commit for the two writes of every conversation turn
//! (`record_batch` records the user's message; `complete_batch` records its answer).
//! Requests hand their write to one writer task, which takes whatever has queued up (up
//! to [`MAX_BATCH`]) and commits it as one transaction: one multi-row insert, one counter
//! bump per thread, one atomic claim. Under load this turns a dozen serialized round
//! trips per turn into a few per batch; SQLite admits one writer at a time, so this is
//! where its throughput is decided. With nothing queued a batch is one request, written
//! at once: no added latency.
//!
//! Every decision stays an atomic statement (scoped bumps for ownership, the unique index
//! for idempotency keys, `UPDATE … WHERE status = 'pending' RETURNING` for claims), so
//! batches from several instances on one PostgreSQL still agree. If a batch fails as a
//! whole (e.g. a key another instance inserted meanwhile), it is replayed one request at a
//! time so each gets its own answer.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use chrono::{DateTime, Utc};
use entity::{thread, thread_item};
use futures_util::FutureExt;
use sea_orm::{
    ActiveEnum, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    Statement, TransactionTrait,
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::{
    insert_rows, is_unique_violation,
    rows::{item, workflow_payload, AnswerIds, ItemStatus, ItemType, RecordedAnswer, Turn},
    StoreError, WriteHealth,
};
use crate::domain::{now, ThreadId, Title, ToolCallRecord, UserId};

/// The most requests one transaction carries.
pub const MAX_BATCH: usize = 64;

pub(crate) struct RecordOp {
    pub user: UserId,
    pub thread_id: Option<ThreadId>,
    pub text: String,
    pub key: Option<String>,
    /// The item as the client sent it (ChatKit content parts), kept for faithful reloads.
    pub payload: Option<Value>,
}

pub(crate) struct CompleteOp {
    pub user: UserId,
    pub turn: Turn,
    pub ids: AnswerIds,
    pub text: String,
    pub tool_calls: Vec<ToolCallRecord>,
}

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

type Results<T> = Vec<Result<T, StoreError>>;

/// Records and completes in one transaction.
async fn record_and_complete(
    db: &DatabaseConnection,
    records: &[(RecordOp, Answer<Turn>)],
    completes: &[(CompleteOp, Answer<RecordedAnswer>)],
) -> Result<(Results<Turn>, Results<RecordedAnswer>), DbErr> {
    let records: Vec<&RecordOp> = records.iter().map(|(op, _)| op).collect();
    let completes: Vec<&CompleteOp> = completes.iter().map(|(op, _)| op).collect();
    let at = now();
    let (refusals, mut counts) = record_counts(&records);
    for (key, n) in complete_counts(&completes) {
        *counts.entry(key).or_default() += n;
    }
    let txn = db.begin().await?;
    // Every thread of the batch is locked at once, in id order (see `bump_all`).
    let missing = bump_all(&txn, counts, at).await?;
    let (completed, answers) = complete_rows(&txn, &completes, &missing, at).await?;
    let (recorded, mut rows) = record_rows(&records, refusals, &missing, at);
    // Answers and new messages in one insert.
    rows.items.extend(answers);
    rows.insert(&txn).await?;
    txn.commit().await?;
    Ok((recorded, completed))
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

/// Adds `n` messages to each (thread, user) and reports which threads were not the user's,
/// in one statement however many threads the batch touches (it was a round trip per
/// thread).
///
/// Lock order: every transaction that writes a thread's items first updates (and so locks)
/// the thread row, and several threads are locked in id order (on PostgreSQL by a
/// `SELECT … ORDER BY id FOR UPDATE` ahead of the update; SQLite has one writer). A thread
/// delete locks the thread row before its items (the cascade), so no two writers can wait
/// on each other in a cycle (PostgreSQL reported `deadlock detected` when a turn claimed its
/// item first).
async fn bump_all(
    txn: &DatabaseTransaction,
    counts: HashMap<(String, UserId), i32>,
    at: DateTime<Utc>,
) -> Result<HashSet<(String, UserId)>, DbErr> {
    let mut counts: Vec<_> = counts.into_iter().collect();
    if counts.is_empty() {
        return Ok(HashSet::new());
    }
    counts.sort_by(|((a, ua), _), ((b, ub), _)| (a, ua.as_str()).cmp(&(b, ub.as_str())));
    let backend = txn.get_database_backend();
    let (sql, values) = if backend == DbBackend::Postgres {
        // One statement text whatever the batch size (the rows travel as one JSON
        // parameter), so PostgreSQL prepares and plans it once per connection instead of
        // planning every batch afresh.
        let rows: Vec<Value> = counts
            .iter()
            .map(|((id, user), n)| json!({ "id": id, "user_id": user.as_str(), "n": n }))
            .collect();
        (
            "WITH v AS (SELECT * FROM jsonb_to_recordset($1) AS v(id varchar, user_id varchar, n int)), \
                  locked AS (SELECT t.id FROM threads t WHERE t.id = ANY (ARRAY(SELECT id FROM v)) \
                               AND t.user_id IN (SELECT v.user_id FROM v WHERE v.id = t.id) \
                             ORDER BY t.id FOR UPDATE) \
             UPDATE threads SET updated_at = $2, message_count = message_count + \
                 (SELECT v.n FROM v WHERE v.id = threads.id AND v.user_id = threads.user_id) \
             WHERE id = ANY (ARRAY(SELECT id FROM locked)) \
             RETURNING id, user_id"
                .to_owned(),
            vec![Value::Array(rows).into(), at.into()],
        )
    } else {
        // The rows first and the instant last: SQLite binds `?`s in textual order.
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(1 + 3 * counts.len());
        for ((thread_id, user), n) in &counts {
            values.push(thread_id.clone().into());
            values.push(user.as_str().to_owned().into());
            values.push((*n).into());
        }
        values.push(at.into());
        let rows = vec!["(?, ?, ?)"; counts.len()].join(", ");
        (
            format!(
                "WITH v(id, user_id, n) AS (VALUES {rows}) \
                 UPDATE threads SET message_count = threads.message_count + v.n, updated_at = ? \
                 FROM v WHERE threads.id = v.id AND threads.user_id = v.user_id \
                 RETURNING id, user_id"
            ),
            values,
        )
    };
    let bumped: HashSet<(String, String)> = txn
        .query_all(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .into_iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect::<Result<_, DbErr>>()?;
    Ok(counts
        .into_iter()
        .filter(|((id, user), _)| !bumped.contains(&(id.clone(), user.as_str().to_owned())))
        .map(|(key, _)| key)
        .collect())
}

/// Marks the batch's pending turns completed and returns the (turn id, user) pairs it
/// claimed.
///
/// On PostgreSQL, as in [`bump_all`], rows are found only through `id = ANY (ARRAY(…))`,
/// a primary-key path, and the user is checked per row by a correlated subquery, which
/// the planner cannot turn into a join. The shapes before read whole tables: an OR of
/// (id, user) pairs, whose common `user_id` the planner factored out and served from the
/// user's index (every item of the user, ~4 ms a batch at 20k items), and joins to the
/// JSON rows, which plans made on young statistics ran as hash joins over sequential scans.
async fn claim_pending(
    txn: &DatabaseTransaction,
    ops: &[&CompleteOp],
    at: DateTime<Utc>,
) -> Result<HashSet<(String, String)>, DbErr> {
    let backend = txn.get_database_backend();
    let completed: sea_orm::Value = ItemStatus::Completed.to_value().into();
    let pending: sea_orm::Value = ItemStatus::Pending.to_value().into();
    let (sql, values) = if backend == DbBackend::Postgres {
        let pairs: Vec<Value> = ops
            .iter()
            .map(|op| json!({ "id": op.turn.id, "user_id": op.user.as_str() }))
            .collect();
        (
            "WITH v AS (SELECT * FROM jsonb_to_recordset($3) AS v(id varchar, user_id varchar)) \
             UPDATE thread_items SET status = $1, updated_at = $2 \
             WHERE id = ANY (ARRAY(SELECT id FROM v)) \
               AND user_id IN (SELECT v.user_id FROM v WHERE v.id = thread_items.id) \
               AND status = $4 \
             RETURNING id, user_id"
                .to_owned(),
            vec![completed, at.into(), Value::Array(pairs).into(), pending],
        )
    } else {
        let mut values = vec![completed, at.into()];
        for op in ops {
            values.push(op.turn.id.clone().into());
            values.push(op.user.as_str().to_owned().into());
        }
        values.push(pending);
        let rows = vec!["(?, ?)"; ops.len()].join(", ");
        (
            format!(
                "UPDATE thread_items SET status = ?, updated_at = ? \
                 FROM (SELECT column1 AS id, column2 AS user_id FROM (VALUES {rows})) AS v \
                 WHERE thread_items.id = v.id AND thread_items.user_id = v.user_id \
                   AND thread_items.status = ? \
                 RETURNING id, user_id"
            ),
            values,
        )
    };
    txn.query_all(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .into_iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect()
}

async fn record_batch(
    db: &DatabaseConnection,
    ops: &[RecordOp],
) -> Result<Vec<Result<Turn, StoreError>>, DbErr> {
    let txn = db.begin().await?;
    let ops: Vec<&RecordOp> = ops.iter().collect();
    let results = record_in(&txn, &ops).await?;
    txn.commit().await?;
    Ok(results)
}

/// Messages each (thread, user) gains, by thread and user.
type Counts = HashMap<(String, UserId), i32>;
/// The (thread, user) pairs whose thread is gone or not the user's.
type Missing = HashSet<(String, UserId)>;
/// Per op: decided already (`Some`), or still to be written.
type Refusals<T> = Vec<Option<Result<T, StoreError>>>;

/// What recording `ops` adds to existing threads, and the refusals that need no database
/// (a key given twice in the batch).
fn record_counts(ops: &[&RecordOp]) -> (Refusals<Turn>, Counts) {
    let mut results: Refusals<Turn> = ops.iter().map(|_| None).collect();
    let mut keys_seen = HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        if let Some(key) = &op.key {
            if !keys_seen.insert((op.user.clone(), key.clone())) {
                results[i] = Some(Err(StoreError::DuplicateKey));
            }
        }
    }
    let mut counts = Counts::new();
    for (i, op) in ops.iter().enumerate() {
        if let (None, Some(id)) = (&results[i], &op.thread_id) {
            *counts
                .entry((id.as_str().to_owned(), op.user.clone()))
                .or_default() += 1;
        }
    }
    (results, counts)
}

/// What completing `ops` adds, counting every answer as if it will be recorded.
fn complete_counts(ops: &[&CompleteOp]) -> Counts {
    let mut counts = Counts::new();
    for op in ops {
        *counts
            .entry((op.turn.thread_id.clone(), op.user.clone()))
            .or_default() += 1;
    }
    counts
}

async fn record_in(
    txn: &DatabaseTransaction,
    ops: &[&RecordOp],
) -> Result<Vec<Result<Turn, StoreError>>, DbErr> {
    let at = now();
    let (results, counts) = record_counts(ops);
    let missing = bump_all(txn, counts, at).await?;
    let (results, rows) = record_rows(ops, results, &missing, at);
    rows.insert(txn).await?;
    Ok(results)
}

/// Rows a batch inserts, in one statement per table.
struct Rows {
    threads: Vec<thread::Model>,
    items: Vec<thread_item::Model>,
}

impl Rows {
    async fn insert(self, txn: &DatabaseTransaction) -> Result<(), DbErr> {
        insert_rows::<thread::Entity, _>(txn, self.threads).await?;
        insert_rows::<thread_item::Entity, _>(txn, self.items).await
    }
}

/// The new threads and the user messages of `ops` whose threads were bumped.
fn record_rows(
    ops: &[&RecordOp],
    mut results: Refusals<Turn>,
    missing: &Missing,
    at: DateTime<Utc>,
) -> (Results<Turn>, Rows) {
    let mut threads = Vec::new();
    let mut items = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let thread_id = match &op.thread_id {
            Some(id) if missing.contains(&(id.as_str().to_owned(), op.user.clone())) => {
                results[i] = Some(Err(StoreError::ThreadNotFound));
                continue;
            }
            Some(id) => id.as_str().to_owned(),
            None => {
                let thread = thread::Model {
                    id: ThreadId::new().as_str().to_owned(),
                    user_id: op.user.as_str().to_owned(),
                    title: Title::from_message(&op.text).into_inner(),
                    metadata: Value::Object(Default::default()),
                    status: "active".into(),
                    message_count: 1,
                    created_at: at,
                    updated_at: at,
                };
                let id = thread.id.clone();
                threads.push(thread);
                id
            }
        };
        let mut turn = item(
            &thread_id,
            &op.user,
            ItemType::UserMessage,
            op.text.clone(),
            at,
        );
        turn.client_key = op.key.clone();
        turn.payload = op.payload.clone();
        turn.status = ItemStatus::Pending;
        results[i] = Some(Ok(turn.clone()));
        items.push(turn);
    }
    let results = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(writer_gone())))
        .collect();
    (results, Rows { threads, items })
}

async fn complete_batch(
    db: &DatabaseConnection,
    ops: &[CompleteOp],
) -> Result<Vec<Result<RecordedAnswer, StoreError>>, DbErr> {
    let txn = db.begin().await?;
    let ops: Vec<&CompleteOp> = ops.iter().collect();
    let results = complete_in(&txn, &ops).await?;
    txn.commit().await?;
    Ok(results)
}

async fn complete_in(
    txn: &DatabaseTransaction,
    ops: &[&CompleteOp],
) -> Result<Vec<Result<RecordedAnswer, StoreError>>, DbErr> {
    let at = now();
    // The threads first (see `bump_all`).
    let missing = bump_all(txn, complete_counts(ops), at).await?;
    let (results, items) = complete_rows(txn, ops, &missing, at).await?;
    insert_rows::<thread_item::Entity, _>(txn, items).await?;
    Ok(results)
}

/// Claims the pending turns of `ops` (their threads already bumped and locked); the rows
/// of the answers that won their claim, to insert.
async fn complete_rows(
    txn: &DatabaseTransaction,
    ops: &[&CompleteOp],
    missing: &Missing,
    at: DateTime<Utc>,
) -> Result<(Results<RecordedAnswer>, Vec<thread_item::Model>), DbErr> {
    // Only pending turns are answered, each once, whoever else is trying.
    // The first op of a turn takes its claim; a second run of the same turn in this batch
    // (a stale turn taken over while its first run was still going) does not.
    let mut claimed = claim_pending(txn, ops, at).await?;
    let won: Vec<bool> = ops
        .iter()
        .map(|op| claimed.remove(&(op.turn.id.clone(), op.user.as_str().to_owned())))
        .collect();
    // Rarely, another run answered first: take those answers back out of the counts.
    let mut unclaimed: HashMap<(String, UserId), i32> = HashMap::new();
    for (op, _) in ops.iter().zip(&won).filter(|(_, won)| !**won) {
        let key = (op.turn.thread_id.clone(), op.user.clone());
        if !missing.contains(&key) {
            *unclaimed.entry(key).or_default() -= 1;
        }
    }
    if !unclaimed.is_empty() {
        bump_all(txn, unclaimed, at).await?;
    }
    let mut rows = Vec::new();
    let mut results = Vec::with_capacity(ops.len());
    for (op, won) in ops.iter().zip(won) {
        let turn = &op.turn;
        if !won {
            results.push(Err(StoreError::TurnAlreadyAnswered));
            continue;
        }
        if missing.contains(&(turn.thread_id.clone(), op.user.clone())) {
            results.push(Err(StoreError::ThreadNotFound));
            continue;
        }
        // The tool calls (one workflow item) and the message, under the ids and instants
        // the pipeline announced them with.
        let workflow = match (&op.ids.workflow, op.tool_calls.is_empty()) {
            (Some((id, created)), false) => {
                let mut row = item(
                    &turn.thread_id,
                    &op.user,
                    ItemType::Workflow,
                    String::new(),
                    *created,
                );
                row.id = id.clone();
                row.payload = Some(workflow_payload(&op.tool_calls));
                row.reply_to = Some(turn.id.clone());
                rows.push(row.clone());
                Some(row)
            }
            _ => None,
        };
        let mut message = item(
            &turn.thread_id,
            &op.user,
            ItemType::AssistantMessage,
            op.text.clone(),
            op.ids.message_at,
        );
        message.id = op.ids.message_id.clone();
        message.reply_to = Some(turn.id.clone());
        rows.push(message.clone());
        results.push(Ok(RecordedAnswer {
            item: message,
            tool_calls: op.tool_calls.clone(),
            workflow,
        }));
    }
    Ok((results, rows))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sea_orm::ConnectionTrait;

    use super::*;
    use crate::{domain::new_id, store::Store};

    /// A store on a fresh SQLite file, or on a fresh schema of `TEST_DATABASE_URL`'s
    /// PostgreSQL when that is set (the schema is dropped by the suite's sweep of `t_*`).
    async fn store(dir: &tempfile::TempDir) -> Store {
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

    fn answer(user: &UserId, turn: &Turn, text: &str) -> CompleteOp {
        CompleteOp {
            user: user.clone(),
            turn: turn.clone(),
            ids: AnswerIds {
                message_id: new_id("msg"),
                message_at: now(),
                workflow: None,
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
