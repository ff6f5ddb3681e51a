//! The pure half of a batch: the rows it may write, built before the database is asked
//! anything, and each op's answer, which follows from what the database then decided
//! ([`Decided`]: which threads were not found or not the user's, which claims were won).
//! No I/O: [`super::sqlite`] and [`super::postgres`] turn a [`Plan`] into statements.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{thread, thread_item};
use serde_json::Value;

use crate::{
    domain::{ThreadId, ToolCallRecord, UserId},
    store::{
        error::StoreError,
        rows::{
            item, started_thread, workflow_payload, AnswerIds, ItemStatus, ItemType,
            RecordedAnswer, Turn,
        },
    },
};

/// A request to record a turn's first half: the user's message.
pub(crate) struct RecordOp {
    pub user: UserId,
    pub thread_id: Option<ThreadId>,
    pub text: String,
    pub key: Option<String>,
    /// The item as the client sent it (ChatKit content parts), kept for faithful reloads.
    pub payload: Option<Value>,
}

/// A request to record a turn's second half: its answer.
pub(crate) struct CompleteOp {
    pub user: UserId,
    pub turn: Turn,
    pub ids: AnswerIds,
    pub text: String,
    pub tool_calls: Vec<ToolCallRecord>,
}

/// Per op of a batch, its answer.
pub(super) type Results<T> = Vec<Result<T, StoreError>>;

/// Messages each (thread, user) gains, by thread and user.
pub(super) type Counts = HashMap<(String, UserId), i32>;
/// The (thread, user) pairs whose thread is gone or not the user's.
pub(super) type Missing = HashSet<(String, UserId)>;

/// A new user message of a batch, as it will be inserted if its thread stands.
pub(super) struct PlannedTurn {
    pub row: Turn,
    pub user: UserId,
    /// The thread is created by the same batch (it cannot be missing).
    pub new_thread: bool,
}

/// An answer of a batch, as it will be inserted if its turn's claim is won.
pub(super) struct PlannedAnswer {
    pub workflow: Option<thread_item::Model>,
    pub message: thread_item::Model,
    pub extras: Vec<thread_item::Model>,
}

impl PlannedAnswer {
    /// Every row of the answer, in the order they were announced.
    pub fn rows(&self) -> impl Iterator<Item = &thread_item::Model> {
        self.workflow
            .iter()
            .chain(std::iter::once(&self.message))
            .chain(&self.extras)
    }
}

/// Everything a batch may write, built before it runs.
pub(super) struct Plan {
    /// Per record op: refused without the database (an Idempotency-Key given twice in
    /// the batch), or the message to insert.
    pub turns: Vec<Result<PlannedTurn, StoreError>>,
    /// Threads the batch's records start.
    pub threads: Vec<thread::Model>,
    /// Per existing (thread, user): the messages its records add.
    pub record_counts: Counts,
    /// Per complete op: the answer to insert if it wins its turn's claim; `None` for a
    /// second run of a turn already in the batch (the first one takes the claim).
    pub answers: Vec<Option<PlannedAnswer>>,
    /// The complete ops (their turns and users), in order.
    completes: Vec<(Turn, UserId, Vec<ToolCallRecord>)>,
}

/// What the database decided for a batch.
pub(super) struct Decided {
    /// Existing (thread, user) pairs the batch touched that are not the user's thread.
    pub missing: Missing,
    /// Turn ids whose claim this batch won.
    pub claimed: HashSet<String>,
}

impl Plan {
    pub(super) fn new(records: &[&RecordOp], completes: &[&CompleteOp], at: DateTime<Utc>) -> Self {
        let mut keys_seen = HashSet::new();
        let mut threads = Vec::new();
        let mut record_counts = Counts::new();
        let turns = records
            .iter()
            .map(|op| {
                if let Some(key) = &op.key {
                    if !keys_seen.insert((op.user.clone(), key.clone())) {
                        return Err(StoreError::DuplicateKey);
                    }
                }
                let (thread_id, new_thread) = match &op.thread_id {
                    Some(id) => {
                        *record_counts
                            .entry((id.as_str().to_owned(), op.user.clone()))
                            .or_default() += 1;
                        (id.as_str().to_owned(), false)
                    }
                    None => (ThreadId::new().as_str().to_owned(), true),
                };
                let mut row = item(
                    &thread_id,
                    &op.user,
                    ItemType::UserMessage,
                    op.text.clone(),
                    at,
                );
                if new_thread {
                    threads.push(started_thread(&row));
                }
                row.client_key = op.key.clone();
                row.payload = op.payload.clone();
                row.status = ItemStatus::Pending;
                Ok(PlannedTurn {
                    row,
                    user: op.user.clone(),
                    new_thread: op.thread_id.is_none(),
                })
            })
            .collect();
        let mut turns_seen = HashSet::new();
        let answers = completes
            .iter()
            .map(|op| {
                turns_seen
                    .insert(op.turn.id.as_str())
                    .then(|| plan_answer(op))
            })
            .collect();
        Self {
            turns,
            threads,
            record_counts,
            answers,
            completes: completes
                .iter()
                .map(|op| (op.turn.clone(), op.user.clone(), op.tool_calls.clone()))
                .collect(),
        }
    }

    /// The complete ops that may claim their turn, with the planned answer.
    pub fn claims(&self) -> impl Iterator<Item = (&Turn, &UserId, &PlannedAnswer)> {
        self.completes
            .iter()
            .zip(&self.answers)
            .filter_map(|((turn, user, _), answer)| answer.as_ref().map(|a| (turn, user, a)))
    }

    /// Every (thread, user) the batch writes to in an existing thread, with the messages
    /// its records add (an answer's message counts only if its claim is won).
    pub fn touched(&self) -> Counts {
        let mut counts = self.record_counts.clone();
        for (turn, user, _) in self.claims() {
            counts
                .entry((turn.thread_id.clone(), user.clone()))
                .or_default();
        }
        counts
    }

    pub(super) fn results(self, decided: &Decided) -> (Results<Turn>, Results<RecordedAnswer>) {
        let recorded = self
            .turns
            .into_iter()
            .map(|turn| {
                let turn = turn?;
                let key = (turn.row.thread_id.clone(), turn.user);
                if !turn.new_thread && decided.missing.contains(&key) {
                    return Err(StoreError::ThreadNotFound);
                }
                Ok(turn.row)
            })
            .collect();
        let completed = self
            .completes
            .into_iter()
            .zip(self.answers)
            .map(|((turn, user, tool_calls), answer)| {
                let answer = answer.ok_or(StoreError::TurnAlreadyAnswered)?;
                if decided.missing.contains(&(turn.thread_id.clone(), user)) {
                    return Err(StoreError::ThreadNotFound);
                }
                if !decided.claimed.contains(&turn.id) {
                    return Err(StoreError::TurnAlreadyAnswered);
                }
                Ok(RecordedAnswer {
                    item: answer.message,
                    tool_calls,
                    workflow: answer.workflow,
                    extras: answer.extras,
                })
            })
            .collect();
        (recorded, completed)
    }
}

/// The tool calls (one workflow item) and the message of an answer, under the ids and
/// instants the pipeline announced them with.
fn plan_answer(op: &CompleteOp) -> PlannedAnswer {
    let turn = &op.turn;
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
    message.status = op.ids.message_status;
    let extras = op
        .ids
        .extras
        .iter()
        .map(|extra| extra.row(&turn.thread_id, &op.user, Some(&turn.id)))
        .collect();
    PlannedAnswer {
        workflow,
        message,
        extras,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::{new_id, now};

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn record(user: &UserId, thread: Option<&str>, text: &str, key: Option<&str>) -> RecordOp {
        RecordOp {
            user: user.clone(),
            thread_id: thread.map(|id| ThreadId::parse(id).unwrap()),
            text: text.into(),
            key: key.map(Into::into),
            payload: None,
        }
    }

    /// A pending turn of `user` in `thread`, as the store records it.
    fn turn(user: &UserId, thread: &str) -> Turn {
        let mut row = item(
            thread,
            user,
            ItemType::UserMessage,
            "question".into(),
            now(),
        );
        row.status = ItemStatus::Pending;
        row
    }

    fn answer(user: &UserId, turn: &Turn, text: &str, tool_calls: usize) -> CompleteOp {
        let at = now();
        CompleteOp {
            user: user.clone(),
            turn: turn.clone(),
            ids: AnswerIds {
                message_id: new_id("msg"),
                message_at: at,
                workflow: Some((new_id("wf"), at - Duration::milliseconds(1))),
                message_status: ItemStatus::Completed,
                extras: Vec::new(),
            },
            text: text.into(),
            tool_calls: (0..tool_calls)
                .map(|i| ToolCallRecord {
                    tool: format!("tool_{i}"),
                    args: serde_json::json!({ "i": i }),
                    result: serde_json::json!("ok"),
                })
                .collect(),
        }
    }

    fn thread_id() -> String {
        ThreadId::new().as_str().to_owned()
    }

    /// What the planner decides for a batch of mixed requests, before the database is
    /// asked anything: which messages and threads it would insert, which threads it
    /// bumps and by how much, and which answers may claim their turn.
    #[test]
    fn a_mixed_batch_is_planned_without_the_database() {
        let (alice, bob) = (user("alice"), user("bob"));
        let (a1, b1) = (thread_id(), thread_id());
        let a1_turn = turn(&alice, &a1);
        let b1_turn = turn(&bob, &b1);
        let records = [
            record(&alice, Some(&a1), "one", Some("k1")),
            record(&alice, Some(&a1), "two", None),
            // The same key again from the same user: refused within the batch.
            record(&alice, Some(&a1), "one again", Some("k1")),
            // The same key from another user is another key.
            record(&bob, None, "a new thread", Some("k1")),
            // Bob names Alice's thread: planned under Bob, the database will refuse it.
            record(&bob, Some(&a1), "not mine", None),
        ];
        let completes = [
            answer(&alice, &a1_turn, "to a1", 2),
            answer(&bob, &b1_turn, "to b1", 0),
            // A second run of a turn already in the batch.
            answer(&alice, &a1_turn, "to a1 again", 0),
        ];
        let at = now();
        let plan = Plan::new(
            &records.iter().collect::<Vec<_>>(),
            &completes.iter().collect::<Vec<_>>(),
            at,
        );

        assert_eq!(plan.turns.len(), 5);
        assert!(matches!(plan.turns[2], Err(StoreError::DuplicateKey)));
        let planned: Vec<&PlannedTurn> = plan.turns.iter().flatten().collect();
        assert_eq!(planned.len(), 4);
        for turn in &planned {
            assert_eq!(turn.row.status, ItemStatus::Pending);
            assert_eq!(turn.row.item_type, ItemType::UserMessage);
            assert_eq!(turn.row.user_id, turn.user.as_str());
            assert_eq!(turn.row.created_at, at);
        }
        assert_eq!(planned[0].row.client_key.as_deref(), Some("k1"));
        assert_eq!(planned[0].row.content, "one");

        // One new thread, started by Bob's message and holding it.
        let new = planned[2];
        assert!(new.new_thread);
        assert_eq!(new.row.client_key.as_deref(), Some("k1"));
        assert_eq!(plan.threads.len(), 1);
        assert_eq!(plan.threads[0].id, new.row.thread_id);
        assert_eq!(plan.threads[0].user_id, "bob");
        assert_eq!(plan.threads[0].message_count, 1);
        assert!(planned
            .iter()
            .filter(|t| !t.new_thread)
            .all(|t| t.row.thread_id == a1));

        // Existing threads gain their records' messages, per (thread, user); the refused
        // duplicate and the new thread count for nothing.
        let counts = |c: &Counts| {
            let mut c: Vec<_> = c
                .iter()
                .map(|((id, user), n)| (id.clone(), user.as_str().to_owned(), *n))
                .collect();
            c.sort();
            c
        };
        let mut expected = vec![
            (a1.clone(), "alice".into(), 2),
            (a1.clone(), "bob".into(), 1),
        ];
        expected.sort();
        assert_eq!(counts(&plan.record_counts), expected);
        // Answers add their threads with nothing counted yet (a lost claim adds nothing).
        expected.push((b1.clone(), "bob".into(), 0));
        expected.sort();
        assert_eq!(counts(&plan.touched()), expected);

        // The second run of Alice's turn plans no answer: the first one claims the turn.
        assert!(plan.answers[0].is_some() && plan.answers[1].is_some());
        assert!(plan.answers[2].is_none());
        let claims: Vec<_> = plan
            .claims()
            .map(|(turn, user, answer)| {
                (
                    turn.id.clone(),
                    user.clone(),
                    answer.message.content.clone(),
                )
            })
            .collect();
        assert_eq!(
            claims,
            [
                (a1_turn.id.clone(), alice.clone(), "to a1".to_owned()),
                (b1_turn.id.clone(), bob.clone(), "to b1".to_owned()),
            ]
        );
    }

    /// An answer is planned under the ids the pipeline announced, replying to its turn;
    /// its tool calls become one workflow item, and none without tool calls.
    #[test]
    fn an_answer_is_planned_under_its_announced_ids() {
        let alice = user("alice");
        let thread = thread_id();
        let asked = turn(&alice, &thread);
        let with_tools = answer(&alice, &asked, "done", 2);
        let without_tools = answer(&alice, &turn(&alice, &thread), "plain", 0);
        let plan = Plan::new(&[], &[&with_tools, &without_tools], now());

        let planned = plan.answers[0].as_ref().unwrap();
        assert_eq!(planned.message.id, with_tools.ids.message_id);
        assert_eq!(planned.message.created_at, with_tools.ids.message_at);
        assert_eq!(planned.message.item_type, ItemType::AssistantMessage);
        assert_eq!(planned.message.status, ItemStatus::Completed);
        assert_eq!(planned.message.reply_to.as_deref(), Some(asked.id.as_str()));
        assert_eq!(planned.message.thread_id, thread);
        assert_eq!(planned.message.content, "done");
        let workflow = planned.workflow.as_ref().unwrap();
        let (id, at) = with_tools.ids.workflow.clone().unwrap();
        assert_eq!((workflow.id.clone(), workflow.created_at), (id, at));
        assert_eq!(workflow.item_type, ItemType::Workflow);
        assert_eq!(workflow.reply_to.as_deref(), Some(asked.id.as_str()));
        assert_eq!(crate::store::tool_calls_of(workflow), with_tools.tool_calls);

        // Workflow ids were announced, but no tool ran: no workflow item.
        assert!(plan.answers[1].as_ref().unwrap().workflow.is_none());
        assert!(plan.threads.is_empty() && plan.touched().len() == 1);
    }

    /// Each op's answer follows from what the database decided: a thread not found (or
    /// not the user's) refuses the records and answers written to it, but never a thread
    /// the batch starts; an answer whose claim was lost, or a second run in the batch, is
    /// told its turn was answered already.
    #[test]
    fn each_op_is_answered_from_what_the_database_decided() {
        let (alice, bob) = (user("alice"), user("bob"));
        let (a1, a2, b1) = (thread_id(), thread_id(), thread_id());
        let (a1_turn, a2_turn, b1_turn) = (turn(&alice, &a1), turn(&alice, &a2), turn(&bob, &b1));
        let records = [
            record(&alice, Some(&a1), "kept", None),
            record(&bob, Some(&a1), "not bob's thread", None),
            record(&alice, None, "new thread", Some("k")),
            record(&alice, None, "same key", Some("k")),
        ];
        let completes = [
            answer(&alice, &a1_turn, "won", 1),
            answer(&alice, &a2_turn, "lost", 0),
            answer(&bob, &b1_turn, "thread gone", 0),
            answer(&alice, &a1_turn, "second run", 0),
        ];
        let plan = Plan::new(
            &records.iter().collect::<Vec<_>>(),
            &completes.iter().collect::<Vec<_>>(),
            now(),
        );
        // The database would also report a new thread's id had it been touched; a new
        // thread cannot be missing, so that must not refuse its message.
        let new_thread = plan.turns[2].as_ref().unwrap().row.thread_id.clone();
        let decided = Decided {
            missing: [
                (a1.clone(), bob.clone()),
                (b1.clone(), bob.clone()),
                (new_thread, alice.clone()),
            ]
            .into_iter()
            .collect(),
            claimed: [a1_turn.id.clone()].into_iter().collect(),
        };
        let (recorded, completed) = plan.results(&decided);

        assert_eq!(recorded.len(), 4);
        assert_eq!(recorded[0].as_ref().unwrap().content, "kept");
        assert!(matches!(recorded[1], Err(StoreError::ThreadNotFound)));
        assert_eq!(recorded[2].as_ref().unwrap().content, "new thread");
        assert!(matches!(recorded[3], Err(StoreError::DuplicateKey)));

        assert_eq!(completed.len(), 4);
        let won = completed[0].as_ref().unwrap();
        assert_eq!(won.item.content, "won");
        assert_eq!(won.tool_calls, completes[0].tool_calls);
        assert!(won.workflow.is_some());
        assert!(matches!(completed[1], Err(StoreError::TurnAlreadyAnswered)));
        assert!(matches!(completed[2], Err(StoreError::ThreadNotFound)));
        assert!(matches!(completed[3], Err(StoreError::TurnAlreadyAnswered)));
    }
}
