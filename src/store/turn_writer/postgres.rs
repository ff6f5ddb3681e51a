//! A batch on PostgreSQL: one statement, one round trip, no explicit transaction (a single
//! statement is atomic and commits on its own, with one WAL flush).
//!
//! It was `BEGIN`, a bump, a claim, an insert per table and `COMMIT`: six round trips per
//! batch, each a send and a wake-up on both sides, while the writer that owns the batch
//! waited. The rows are now built by the caller ([`super::plan::Plan`]) and travel as one
//! array parameter per column, sent in PostgreSQL's binary format, so the statement text
//! is the same whatever the batch holds: it is prepared once per connection and runs on a
//! generic plan. (They travelled as four JSON documents until PostgreSQL's JSON lexer
//! took a sixth of the database's CPU per turn: bench/RESULTS.md.) Only the payloads are
//! JSON, as the column they go to is.
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
//! by correlated subqueries the planner cannot turn into joins: joins to the unnested rows
//! got sequential-scan plans on young tables, and a thread condition on `thread_items`
//! served by the page index would read every item of the thread.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    sqlx::{self, Row as _},
    DatabaseConnection, DbErr,
};

use super::plan::{Decided, Plan};
use crate::{domain::UserId, store::reads::query_err};

// The status strings are the `ItemStatus` values as stored ('pending', 'completed').
pub(super) const BATCH: &str = "\
WITH touched AS (
    SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::int[]) AS v(id, user_id, n)),
claims AS (
    SELECT * FROM unnest($4::varchar[], $5::varchar[]) AS c(id, user_id)),
locked AS (
    SELECT t.id, t.user_id FROM threads t
    WHERE t.id = ANY (ARRAY(SELECT id FROM touched))
      AND t.user_id IN (SELECT v.user_id FROM touched v WHERE v.id = t.id)
    ORDER BY t.id FOR UPDATE),
claimed AS (
    UPDATE thread_items i SET status = 'completed', updated_at = $6
    WHERE i.id = ANY (ARRAY(SELECT id FROM claims))
      AND i.user_id IN (SELECT c.user_id FROM claims c WHERE c.id = i.id)
      AND i.status = 'pending'
      AND i.thread_id IN (SELECT l.id FROM locked l WHERE l.user_id = i.user_id)
    RETURNING i.id, i.thread_id),
bumped AS (
    UPDATE threads t SET updated_at = $6,
        message_count = t.message_count
            + (SELECT v.n FROM touched v WHERE v.id = t.id AND v.user_id = t.user_id)
            + (SELECT count(*) FROM claimed c WHERE c.thread_id = t.id)
    WHERE t.id = ANY (ARRAY(SELECT id FROM locked))),
new_threads AS (
    INSERT INTO threads (id, user_id, title, metadata, status, message_count, created_at, updated_at)
    SELECT n.id, n.user_id, n.title, n.metadata::jsonb, n.status, n.message_count, n.created_at,
        n.updated_at
    FROM unnest($7::varchar[], $8::varchar[], $9::varchar[], $10::text[], $11::varchar[],
        $12::int[], $13::timestamptz[], $14::timestamptz[])
        AS n(id, user_id, title, metadata, status, message_count, created_at, updated_at)),
items AS (
    INSERT INTO thread_items (id, thread_id, user_id, item_type, role, content, payload,
        client_key, reply_to, status, created_at, updated_at)
    SELECT r.id, r.thread_id, r.user_id, r.item_type, r.role, r.content, r.payload::json,
        r.client_key, r.reply_to, r.status, r.created_at, r.updated_at
    FROM unnest($15::varchar[], $16::varchar[], $17::varchar[], $18::varchar[], $19::varchar[],
        $20::text[], $21::text[], $22::varchar[], $23::varchar[], $24::varchar[],
        $25::timestamptz[], $26::timestamptz[], $27::bool[])
        AS r(id, thread_id, user_id, item_type, role, content, payload, client_key, reply_to,
        status, created_at, updated_at, new_thread)
    WHERE CASE WHEN r.reply_to IS NULL
        THEN r.new_thread OR (r.thread_id, r.user_id) IN (SELECT id, user_id FROM locked)
        ELSE r.reply_to IN (SELECT id FROM claimed) END)
SELECT true AS locked, id, user_id FROM locked
UNION ALL SELECT false, id, NULL FROM claimed";

/// The new threads of a batch, a column each.
#[derive(Default)]
struct Threads<'a> {
    id: Vec<&'a str>,
    user_id: Vec<&'a str>,
    title: Vec<&'a str>,
    metadata: Vec<String>,
    status: Vec<&'a str>,
    message_count: Vec<i32>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
}

impl<'a> Threads<'a> {
    fn push(&mut self, row: &'a entity::thread::Model) -> Result<(), DbErr> {
        self.id.push(&row.id);
        self.user_id.push(&row.user_id);
        self.title.push(&row.title);
        self.metadata.push(json(&row.metadata)?);
        self.status.push(&row.status);
        self.message_count.push(row.message_count);
        self.created_at.push(row.created_at);
        self.updated_at.push(row.updated_at);
        Ok(())
    }
}

/// The new items of a batch, a column each.
#[derive(Default)]
struct Items<'a> {
    id: Vec<&'a str>,
    thread_id: Vec<&'a str>,
    user_id: Vec<&'a str>,
    item_type: Vec<&'static str>,
    role: Vec<&'static str>,
    content: Vec<&'a str>,
    payload: Vec<Option<String>>,
    client_key: Vec<Option<&'a str>>,
    reply_to: Vec<Option<&'a str>>,
    status: Vec<&'static str>,
    created_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    new_thread: Vec<bool>,
}

impl<'a> Items<'a> {
    fn push(&mut self, row: &'a entity::thread_item::Model, new_thread: bool) -> Result<(), DbErr> {
        self.id.push(&row.id);
        self.thread_id.push(&row.thread_id);
        self.user_id.push(&row.user_id);
        self.item_type.push(row.item_type.as_str());
        self.role.push(row.role.as_str());
        self.content.push(&row.content);
        self.payload
            .push(row.payload.as_ref().map(json).transpose()?);
        self.client_key.push(row.client_key.as_deref());
        self.reply_to.push(row.reply_to.as_deref());
        self.status.push(row.status.as_str());
        self.created_at.push(row.created_at);
        self.updated_at.push(row.updated_at);
        self.new_thread.push(new_thread);
        Ok(())
    }
}

fn json(value: &serde_json::Value) -> Result<String, DbErr> {
    serde_json::to_string(value).map_err(|e| DbErr::Custom(format!("cannot encode a batch: {e}")))
}

/// Runs the batch as one statement and reads back what the database decided.
pub(super) async fn write(
    db: &DatabaseConnection,
    plan: &Plan,
    at: DateTime<Utc>,
) -> Result<Decided, DbErr> {
    let mut touched: Vec<_> = plan.touched().into_iter().collect();
    // Sorted only so the parameters (and so a logged statement) are the same for the same
    // batch.
    touched.sort_unstable_by(|((a, ua), _), ((b, ub), _)| (a, ua.as_str()).cmp(&(b, ub.as_str())));
    let claims: Vec<(&str, &str)> = plan
        .claims()
        .map(|(turn, user, _)| (turn.id.as_str(), user.as_str()))
        .collect();
    let mut threads = Threads::default();
    for thread in &plan.threads {
        threads.push(thread)?;
    }
    let mut items = Items::default();
    for turn in plan.turns.iter().flatten() {
        items.push(&turn.row, turn.new_thread)?;
    }
    for (_, _, answer) in plan.claims() {
        for row in answer.rows() {
            items.push(row, false)?;
        }
    }
    let rows = sqlx::query(BATCH)
        .bind(
            touched
                .iter()
                .map(|((id, _), _)| id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            touched
                .iter()
                .map(|((_, user), _)| user.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(touched.iter().map(|(_, n)| *n).collect::<Vec<i32>>())
        .bind(claims.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(claims.iter().map(|(_, user)| *user).collect::<Vec<_>>())
        .bind(at)
        .bind(threads.id)
        .bind(threads.user_id)
        .bind(threads.title)
        .bind(threads.metadata)
        .bind(threads.status)
        .bind(threads.message_count)
        .bind(threads.created_at)
        .bind(threads.updated_at)
        .bind(items.id)
        .bind(items.thread_id)
        .bind(items.user_id)
        .bind(items.item_type)
        .bind(items.role)
        .bind(items.content)
        .bind(items.payload)
        .bind(items.client_key)
        .bind(items.reply_to)
        .bind(items.status)
        .bind(items.created_at)
        .bind(items.updated_at)
        .bind(items.new_thread)
        .fetch_all(db.get_postgres_connection_pool())
        .await
        .map_err(query_err)?;
    let mut locked: HashSet<(String, String)> = HashSet::new();
    let mut claimed = HashSet::new();
    for row in rows {
        let is_thread: bool = row.try_get(0).map_err(query_err)?;
        let id: String = row.try_get(1).map_err(query_err)?;
        if is_thread {
            locked.insert((id, row.try_get(2).map_err(query_err)?));
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
    use sea_orm::{ConnectionTrait, DbBackend};

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
        let plan = super::super::tests::generic_plan(
            &store,
            BATCH,
            "'{}', '{}', '{}', '{}', '{}', now(), '{}', '{}', '{}', '{}', '{}', '{}', '{}', \
             '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}'",
        )
        .await;
        assert!(!plan.contains("Seq Scan"), "{plan}");
        assert!(plan.contains("threads_pkey"), "{plan}");
        assert!(plan.contains("thread_items_pkey"), "{plan}");
    }
}
