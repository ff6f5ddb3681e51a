//! A batch on PostgreSQL: one statement, one round trip, no explicit transaction (a single
//! statement is atomic and commits on its own, with one WAL flush).
//!
//! It was `BEGIN`, a bump, a claim, an insert per table and `COMMIT`: six round trips per
//! batch, each a send and a wake-up on both sides, while the writer that owns the batch
//! waited. The rows are now built by the caller ([`super::plan::Plan`]) and travel as four JSON
//! parameters, so the statement text is the same whatever the batch holds: it is prepared
//! once per connection and runs on a generic plan.
//!
//! What each part does, in the order the statement guarantees:
//! - `locked`: every existing thread the batch writes to is locked, in id order, when it
//!   is the named user's. The claim below checks its item's thread against `locked`, and
//!   a row is only locked for an update once all its conditions hold, so the threads are
//!   locked before any item is: the order every writer keeps (a thread delete, too, locks
//!   the thread before the cascade reaches its items), so no two wait on each other in a
//!   cycle.
//! - `claimed`: the batch's pending turns whose thread is locked are marked completed
//!   (only a still-pending turn is answered, each once, whoever else is trying).
//! - `bumped`: each locked thread gains its records' messages plus one per claim won, and
//!   is marked active now.
//! - `new_threads` and `items`: the new threads, the user messages whose thread is new or
//!   locked, and the answers whose claim was won.
//!
//! Rows are found through `id = ANY (ARRAY(…))`, a primary-key path, with the user checked
//! by correlated subqueries the planner cannot turn into joins: joins to the JSON rows got
//! sequential-scan plans on young tables, and a thread condition on `thread_items` served
//! by the page index would read every item of the thread.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use serde::Serialize;
use serde_json::Value;

use super::plan::{Decided, Plan};
use crate::domain::UserId;

// The status strings are the `ItemStatus` values as stored ('pending', 'completed').
pub(super) const BATCH: &str = "\
WITH touched AS (
    SELECT * FROM json_to_recordset($1::json) AS v(id varchar, user_id varchar, n int)),
claims AS (
    SELECT * FROM json_to_recordset($2::json) AS c(id varchar, user_id varchar)),
locked AS (
    SELECT t.id, t.user_id FROM threads t
    WHERE t.id = ANY (ARRAY(SELECT id FROM touched))
      AND t.user_id IN (SELECT v.user_id FROM touched v WHERE v.id = t.id)
    ORDER BY t.id FOR UPDATE),
claimed AS (
    UPDATE thread_items i SET status = 'completed', updated_at = $5
    WHERE i.id = ANY (ARRAY(SELECT id FROM claims))
      AND i.user_id IN (SELECT c.user_id FROM claims c WHERE c.id = i.id)
      AND i.status = 'pending'
      AND i.thread_id IN (SELECT l.id FROM locked l WHERE l.user_id = i.user_id)
    RETURNING i.id, i.thread_id),
bumped AS (
    UPDATE threads t SET updated_at = $5,
        message_count = t.message_count
            + (SELECT v.n FROM touched v WHERE v.id = t.id AND v.user_id = t.user_id)
            + (SELECT count(*) FROM claimed c WHERE c.thread_id = t.id)
    WHERE t.id = ANY (ARRAY(SELECT id FROM locked))),
new_threads AS (
    INSERT INTO threads (id, user_id, title, metadata, status, message_count, created_at, updated_at)
    SELECT n.id, n.user_id, n.title, n.metadata, n.status, n.message_count, n.created_at, n.updated_at
    FROM json_to_recordset($3::json) AS n(id varchar, user_id varchar, title varchar,
        metadata jsonb, status varchar, message_count int, created_at timestamptz,
        updated_at timestamptz)),
items AS (
    INSERT INTO thread_items (id, thread_id, user_id, item_type, role, content, payload,
        client_key, reply_to, status, created_at, updated_at)
    SELECT r.id, r.thread_id, r.user_id, r.item_type, r.role, r.content, r.payload,
        r.client_key, r.reply_to, r.status, r.created_at, r.updated_at
    FROM json_to_recordset($4::json) AS r(id varchar, thread_id varchar, user_id varchar,
        item_type varchar, role varchar, content text, payload json, client_key varchar,
        reply_to varchar, status varchar, created_at timestamptz, updated_at timestamptz,
        new_thread bool)
    WHERE CASE WHEN r.reply_to IS NULL
        THEN r.new_thread OR (r.thread_id, r.user_id) IN (SELECT id, user_id FROM locked)
        ELSE r.reply_to IN (SELECT id FROM claimed) END)
SELECT true AS locked, id, user_id FROM locked
UNION ALL SELECT false, id, NULL FROM claimed";

#[derive(Serialize)]
struct Touched<'a> {
    id: &'a str,
    user_id: &'a str,
    n: i32,
}

#[derive(Serialize)]
struct Claim<'a> {
    id: &'a str,
    user_id: &'a str,
}

#[derive(Serialize)]
struct NewThread<'a> {
    id: &'a str,
    user_id: &'a str,
    title: &'a str,
    metadata: &'a Value,
    status: &'a str,
    message_count: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct Item<'a> {
    id: &'a str,
    thread_id: &'a str,
    user_id: &'a str,
    item_type: &'static str,
    role: &'static str,
    content: &'a str,
    payload: Option<&'a Value>,
    client_key: Option<&'a str>,
    reply_to: Option<&'a str>,
    status: &'static str,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    new_thread: bool,
}

impl<'a> Item<'a> {
    fn of(row: &'a entity::thread_item::Model, new_thread: bool) -> Self {
        Self {
            id: &row.id,
            thread_id: &row.thread_id,
            user_id: &row.user_id,
            item_type: row.item_type.as_str(),
            role: row.role.as_str(),
            content: &row.content,
            payload: row.payload.as_ref(),
            client_key: row.client_key.as_deref(),
            reply_to: row.reply_to.as_deref(),
            status: row.status.as_str(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            new_thread,
        }
    }
}

fn json<T: Serialize>(rows: &[T]) -> Result<sea_orm::Value, DbErr> {
    serde_json::to_string(rows)
        .map(Into::into)
        .map_err(|e| DbErr::Custom(format!("cannot encode a batch: {e}")))
}

/// Runs the batch as one statement and reads back what the database decided.
pub(super) async fn write(
    db: &DatabaseConnection,
    plan: &Plan,
    at: DateTime<Utc>,
) -> Result<Decided, DbErr> {
    let mut touched: Vec<_> = plan.touched().into_iter().collect();
    // Sorted only so the JSON (and so a logged statement) is the same for the same batch.
    touched.sort_unstable_by(|((a, ua), _), ((b, ub), _)| (a, ua.as_str()).cmp(&(b, ub.as_str())));
    let touched_rows: Vec<Touched> = touched
        .iter()
        .map(|((id, user), n)| Touched {
            id,
            user_id: user.as_str(),
            n: *n,
        })
        .collect();
    let claims: Vec<Claim> = plan
        .claims()
        .map(|(turn, user, _)| Claim {
            id: &turn.id,
            user_id: user.as_str(),
        })
        .collect();
    let threads: Vec<NewThread> = plan
        .threads
        .iter()
        .map(|t| NewThread {
            id: &t.id,
            user_id: &t.user_id,
            title: &t.title,
            metadata: &t.metadata,
            status: &t.status,
            message_count: t.message_count,
            created_at: t.created_at,
            updated_at: t.updated_at,
        })
        .collect();
    let mut items: Vec<Item> = plan
        .turns
        .iter()
        .flatten()
        .map(|t| Item::of(&t.row, t.new_thread))
        .collect();
    for (_, _, answer) in plan.claims() {
        items.extend(answer.rows().map(|row| Item::of(row, false)));
    }
    let values = vec![
        json(&touched_rows)?,
        json(&claims)?,
        json(&threads)?,
        json(&items)?,
        at.into(),
    ];
    let rows = db
        .query_all(Statement::from_sql_and_values(
            DbBackend::Postgres,
            BATCH,
            values,
        ))
        .await?;
    let mut locked: HashSet<(String, String)> = HashSet::new();
    let mut claimed = HashSet::new();
    for row in rows {
        let is_thread: bool = row.try_get_by_index(0)?;
        let id: String = row.try_get_by_index(1)?;
        if is_thread {
            locked.insert((id, row.try_get_by_index(2)?));
        } else {
            claimed.insert(id);
        }
    }
    let missing = touched
        .into_iter()
        .map(|(key, _)| key)
        .filter(|(id, user): &(String, UserId)| {
            !locked.contains(&(id.clone(), user.as_str().to_owned()))
        })
        .collect();
    Ok(Decided { missing, claimed })
}

#[cfg(test)]
mod tests {
    use sea_orm::TransactionTrait;

    use super::*;

    /// PostgreSQL plans the batch once per connection (a generic plan), possibly while
    /// the tables are still empty; that plan must find threads and items through their
    /// indexes, or every batch reads the whole table once it has grown (bench/RESULTS.md: the
    /// thread update of a plan made on young tables scanned all 5,000 threads per batch).
    /// SQLite runs the batch as a few statements with plans of their own (covered by
    /// the tests above); this checks the PostgreSQL statement, in the PostgreSQL run.
    #[tokio::test]
    async fn the_postgres_batch_is_planned_on_indexes_even_for_empty_tables() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::tests::store(&dir).await;
        if store.write.get_database_backend() != DbBackend::Postgres {
            return;
        }
        // One connection for the prepared statement and the setting.
        let txn = store.write.begin().await.unwrap();
        txn.execute_unprepared(&format!(
            "PREPARE batch (json, json, json, json, timestamptz) AS {}",
            BATCH
        ))
        .await
        .unwrap();
        txn.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
            .await
            .unwrap();
        let rows = txn
            .query_all(Statement::from_string(
                DbBackend::Postgres,
                "EXPLAIN EXECUTE batch ('[]', '[]', '[]', '[]', now())",
            ))
            .await
            .unwrap();
        let plan = rows
            .iter()
            .map(|row| row.try_get_by_index::<String>(0).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!plan.contains("Seq Scan"), "{plan}");
        assert!(plan.contains("threads_pkey"), "{plan}");
        assert!(plan.contains("thread_items_pkey"), "{plan}");
        txn.rollback().await.unwrap();
    }
}
