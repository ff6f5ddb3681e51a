//! A batch on SQLite: one transaction of a few statements (in-process, so statements are
//! cheap; one writer connection, so there are no lock-order concerns beyond bumping
//! threads first).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use entity::{thread, thread_item};
use sea_orm::{
    ActiveEnum, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    Statement, TransactionTrait,
};

use super::plan::{Counts, Decided, Missing, Plan};
use crate::store::rows::{insert_rows, ItemStatus};

/// Runs the batch as one transaction and reads back what the database decided.
pub(super) async fn write(
    db: &DatabaseConnection,
    plan: &Plan,
    at: DateTime<Utc>,
) -> Result<Decided, DbErr> {
    let txn = db.begin().await?;
    // Every answer counts as if it will be recorded; lost claims are taken back below.
    let mut counts = plan.record_counts.clone();
    for (turn, user, _) in plan.claims() {
        *counts
            .entry((turn.thread_id.clone(), user.clone()))
            .or_default() += 1;
    }
    let missing = bump(&txn, counts, at).await?;
    let claimed = claim(&txn, plan, at).await?;
    let mut unclaimed = Counts::new();
    for (turn, user, _) in plan.claims() {
        let key = (turn.thread_id.clone(), user.clone());
        if !claimed.contains(&turn.id) && !missing.contains(&key) {
            *unclaimed.entry(key).or_default() -= 1;
        }
    }
    if !unclaimed.is_empty() {
        bump(&txn, unclaimed, at).await?;
    }
    let mut items = Vec::new();
    for turn in plan.turns.iter().flatten() {
        let key = (turn.row.thread_id.clone(), turn.user.clone());
        if turn.new_thread || !missing.contains(&key) {
            items.push(turn.row.clone());
        }
    }
    for (turn, _, answer) in plan.claims() {
        if claimed.contains(&turn.id) {
            items.extend(answer.rows().cloned());
        }
    }
    insert_rows::<thread::Entity, _>(&txn, plan.threads.clone()).await?;
    insert_rows::<thread_item::Entity, _>(&txn, items).await?;
    txn.commit().await?;
    Ok(Decided { missing, claimed })
}

/// Adds `n` messages to each (thread, user) and reports which threads were not the
/// user's, in one statement however many threads the batch touches.
async fn bump(
    txn: &DatabaseTransaction,
    counts: Counts,
    at: DateTime<Utc>,
) -> Result<Missing, DbErr> {
    let mut counts: Vec<_> = counts.into_iter().collect();
    if counts.is_empty() {
        return Ok(HashSet::new());
    }
    counts.sort_by(|((a, ua), _), ((b, ub), _)| (a, ua.as_str()).cmp(&(b, ub.as_str())));
    // The rows first and the instant last: SQLite binds `?`s in textual order.
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(1 + 3 * counts.len());
    for ((thread_id, user), n) in &counts {
        values.push(thread_id.clone().into());
        values.push(user.as_str().to_owned().into());
        values.push((*n).into());
    }
    values.push(at.into());
    let rows = vec!["(?, ?, ?)"; counts.len()].join(", ");
    let sql = format!(
        "WITH v(id, user_id, n) AS (VALUES {rows}) \
         UPDATE threads SET message_count = threads.message_count + v.n, updated_at = ? \
         FROM v WHERE threads.id = v.id AND threads.user_id = v.user_id \
         RETURNING id, user_id"
    );
    let bumped: HashSet<(String, String)> = txn
        .query_all(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            values,
        ))
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

/// Marks the batch's pending turns completed; the turn ids it claimed.
async fn claim(
    txn: &DatabaseTransaction,
    plan: &Plan,
    at: DateTime<Utc>,
) -> Result<HashSet<String>, DbErr> {
    let mut values: Vec<sea_orm::Value> = vec![ItemStatus::Completed.to_value().into(), at.into()];
    let mut n = 0;
    for (turn, user, _) in plan.claims() {
        values.push(turn.id.clone().into());
        values.push(user.as_str().to_owned().into());
        n += 1;
    }
    if n == 0 {
        return Ok(HashSet::new());
    }
    values.push(ItemStatus::Pending.to_value().into());
    let rows = vec!["(?, ?)"; n].join(", ");
    let sql = format!(
        "UPDATE thread_items SET status = ?, updated_at = ? \
         FROM (SELECT column1 AS id, column2 AS user_id FROM (VALUES {rows})) AS v \
         WHERE thread_items.id = v.id AND thread_items.user_id = v.user_id \
           AND thread_items.status = ? \
         RETURNING id"
    );
    txn.query_all(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        sql,
        values,
    ))
    .await?
    .into_iter()
    .map(|row| row.try_get_by_index(0))
    .collect()
}
