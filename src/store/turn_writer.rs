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
    sync::Arc,
};

use chrono::{DateTime, Utc};
use entity::{thread, thread_item};
use futures_util::FutureExt;
use sea_orm::{
    sea_query::Expr, ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, TransactionTrait,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{
    insert_rows, is_unique_violation,
    rows::{item, workflow_payload, AnswerIds, ItemStatus, ItemType, RecordedAnswer, Turn},
    Store, StoreError, WriteHealth,
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
    tx: mpsc::Sender<Op>,
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable(DbErr::Custom("the turn writer has stopped".into()))
}

impl TurnWriter {
    pub fn spawn(db: DatabaseConnection, health: Arc<WriteHealth>) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(db, health, rx));
        Self { tx }
    }

    async fn submit<T>(&self, op: impl FnOnce(Answer<T>) -> Op) -> Result<T, StoreError> {
        let (answer, rx) = oneshot::channel();
        self.tx.send(op(answer)).await.map_err(|_| writer_gone())?;
        rx.await.map_err(|_| writer_gone())?
    }

    pub async fn record(&self, op: RecordOp) -> Result<Turn, StoreError> {
        self.submit(|a| Op::Record(op, a)).await
    }

    pub async fn complete(&self, op: CompleteOp) -> Result<RecordedAnswer, StoreError> {
        self.submit(|a| Op::Complete(Box::new(op), a)).await
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

/// A database error out of a store helper (the not-found kinds are decided per request).
fn db_err(e: StoreError) -> DbErr {
    match e {
        StoreError::Db(e)
        | StoreError::Unavailable(e)
        | StoreError::ReadOnly(e)
        | StoreError::Full(e) => e,
        other => DbErr::Custom(other.to_string()),
    }
}

/// Adds `n` messages to each (thread, user) and reports which threads were not the user's.
///
/// Lock order: every transaction that writes a thread's items first updates (and so locks)
/// the thread row, and several threads are taken in id order. A thread delete locks the
/// thread row before its items (the cascade), so no two writers can wait on each other in
/// a cycle (PostgreSQL reported `deadlock detected` when a turn claimed its item first).
async fn bump_all(
    txn: &DatabaseTransaction,
    counts: HashMap<(String, UserId), i32>,
    at: DateTime<Utc>,
) -> Result<HashSet<(String, UserId)>, DbErr> {
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|((a, ua), _), ((b, ub), _)| (a, ua.as_str()).cmp(&(b, ub.as_str())));
    let mut missing = HashSet::new();
    for ((thread_id, user), n) in counts {
        match Store::bump_thread(txn, &user, &thread_id, at, n).await {
            Ok(()) => {}
            Err(StoreError::ThreadNotFound) => {
                missing.insert((thread_id, user));
            }
            Err(e) => return Err(db_err(e)),
        }
    }
    Ok(missing)
}

async fn record_batch(
    db: &DatabaseConnection,
    ops: &[RecordOp],
) -> Result<Vec<Result<Turn, StoreError>>, DbErr> {
    let at = now();
    let mut results: Vec<Option<Result<Turn, StoreError>>> = ops.iter().map(|_| None).collect();
    // Refusals that need no database.
    let mut keys_seen = HashSet::new();
    for (i, op) in ops.iter().enumerate() {
        if let Some(key) = &op.key {
            if !keys_seen.insert((op.user.clone(), key.clone())) {
                results[i] = Some(Err(StoreError::DuplicateKey));
            }
        }
    }
    let txn = db.begin().await?;
    let mut counts: HashMap<(String, UserId), i32> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if let (None, Some(id)) = (&results[i], &op.thread_id) {
            *counts
                .entry((id.as_str().to_owned(), op.user.clone()))
                .or_default() += 1;
        }
    }
    let missing = bump_all(&txn, counts, at).await?;
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
    insert_rows::<thread::Entity, _>(&txn, threads).await?;
    insert_rows::<thread_item::Entity, _>(&txn, items).await?;
    txn.commit().await?;
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(writer_gone())))
        .collect())
}

async fn complete_batch(
    db: &DatabaseConnection,
    ops: &[CompleteOp],
) -> Result<Vec<Result<RecordedAnswer, StoreError>>, DbErr> {
    let at = now();
    let txn = db.begin().await?;
    // The threads first (see `bump_all`), counting every answer as if it will be recorded.
    let mut counts: HashMap<(String, UserId), i32> = HashMap::new();
    for op in ops {
        *counts
            .entry((op.turn.thread_id.clone(), op.user.clone()))
            .or_default() += 1;
    }
    let missing = bump_all(&txn, counts, at).await?;
    // Only pending turns are answered, each once, whoever else is trying.
    let mine = ops.iter().fold(Condition::any(), |c, op| {
        c.add(
            Condition::all()
                .add(thread_item::Column::Id.eq(op.turn.id.as_str()))
                .add(thread_item::Column::UserId.eq(op.user.as_str())),
        )
    });
    let claimed: HashSet<String> = thread_item::Entity::update_many()
        .col_expr(
            thread_item::Column::Status,
            Expr::value(ItemStatus::Completed),
        )
        .col_expr(thread_item::Column::UpdatedAt, Expr::value(at))
        .filter(mine)
        .filter(thread_item::Column::Status.eq(ItemStatus::Pending))
        .exec_with_returning(&txn)
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect();
    // Rarely, another run answered first: take those answers back out of the counts.
    let mut unclaimed: HashMap<(String, UserId), i32> = HashMap::new();
    for op in ops.iter().filter(|op| !claimed.contains(&op.turn.id)) {
        let key = (op.turn.thread_id.clone(), op.user.clone());
        if !missing.contains(&key) {
            *unclaimed.entry(key).or_default() -= 1;
        }
    }
    if !unclaimed.is_empty() {
        bump_all(&txn, unclaimed, at).await?;
    }
    let mut rows = Vec::new();
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let turn = &op.turn;
        if !claimed.contains(&turn.id) {
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
    insert_rows::<thread_item::Entity, _>(&txn, rows).await?;
    txn.commit().await?;
    Ok(results)
}
