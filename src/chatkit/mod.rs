//! The ChatKit protocol (`POST /chatkit`): what the ChatKit React widget speaks in its
//! custom-backend mode. One endpoint dispatching on the request's `type`; turns run
//! through the same pipeline as REST ([`crate::chat`]) and read the same rows, so a
//! thread can be used from both APIs at once.
//!
//! Unlike the Python SDK, every request problem (malformed body, unknown type, missing
//! params, unknown or foreign thread) is a 4xx JSON error *before* any stream starts;
//! only what happens during a turn is reported in the stream.

pub mod items;
mod rendered;
mod request;
mod stream;
pub mod task_widget;
pub mod widgets;
pub mod wire;

pub use self::{rendered::RenderedItems, request::Request};

pub use self::stream::TurnStream;

use std::sync::Arc;

use serde_json::{json, Value};

use self::rendered::{Rendered, Shown, Source};
use self::wire::{
    ActionParams, AddMessageParams, CreateParams, Event, Item, ItemsListParams, ListParams, Page,
    RetryParams, StreamOptions, StructuredAnswer, StructuredInputParams, ThreadParams,
    ToolOutputParams, TranscribeParams, UpdateParams, UserInput,
};
use crate::{
    agent::AgentError,
    attachments::{ids_in_payload, Attachment, AttachmentError, Attachments},
    chat::{ChatError, ChatService, Recorded, Resumed, SendMessage},
    domain::{
        task_list::TaskAction, ItemId, MessageText, MessageTextError, Order, ThreadId, Title,
        UserId,
    },
    store::{Fetched, ItemType, Store, StoreError},
    task_actions::{ActionError, ActionOutcome, TaskActions},
};

/// Why a ChatKit request was refused before any stream started.
#[derive(Debug, thiserror::Error)]
pub enum ChatKitError {
    /// Not a ChatKit request: bad JSON, unknown type, missing or ill-typed params.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but a value is not acceptable (e.g. an empty title).
    #[error("{0}")]
    Invalid(String),
    /// Not found, not the user's, or the database failed.
    #[error(transparent)]
    Store(StoreError),
    /// Recording the user's message failed.
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// A widget action of a type this server does not carry out.
    #[error("{0}")]
    ActionUnknown(String),
    /// A widget action whose payload does not fit it.
    #[error("{0}")]
    ActionInvalid(String),
    /// The composer picked a model this server does not offer.
    #[error("{0}")]
    ModelNotAllowed(String),
    /// The action was refused or failed.
    #[error(transparent)]
    Action(#[from] ActionError),
    /// An attachment refused, or one a message names that is not the user's or not ready.
    #[error(transparent)]
    Attachment(AttachmentError),
    /// Dictation that is not base64 audio, or none.
    #[error("{0}")]
    AudioInvalid(String),
    /// Dictation over `agent.openai.max_audio_bytes`.
    #[error("{0}")]
    AudioTooLarge(String),
    /// Dictation whose type is not an audio type.
    #[error("{0}")]
    AudioType(String),
    /// The provider could not transcribe (or has no way to).
    #[error(transparent)]
    Agent(AgentError),
}

impl From<AttachmentError> for ChatKitError {
    fn from(err: AttachmentError) -> Self {
        match err {
            AttachmentError::ThreadNotFound => Self::Store(StoreError::ThreadNotFound),
            AttachmentError::Store(e) => e.into(),
            other => Self::Attachment(other),
        }
    }
}

impl From<StoreError> for ChatKitError {
    fn from(err: StoreError) -> Self {
        match err {
            // The protocol's cursor is an element id; naming none is a bad parameter.
            StoreError::CursorNotFound => {
                Self::Malformed("`after` does not name an element of this list".into())
            }
            other => Self::Store(other),
        }
    }
}

/// What a request answers: one JSON value, or a stream of events.
pub enum Outcome {
    /// A plain JSON answer, serialized once, straight from the wire types (no
    /// `serde_json::Value` tree in between).
    Json(Vec<u8>),
    /// Server-sent events: some at once, then a turn's as it runs.
    Stream(stream::TurnStream),
}

impl Outcome {
    /// `value` as the JSON answer.
    fn json<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        // Room for a page of items at once: growing from nothing copied the answer a dozen
        // times over. The wire types are plain structs, strings and maps with string keys:
        // serde_json cannot fail on them.
        let mut out = Vec::with_capacity(ANSWER_CAPACITY);
        match serde_json::to_writer(&mut out, value) {
            Ok(()) => Self::Json(out),
            Err(_) => Self::Json(b"{}".to_vec()),
        }
    }
}

/// The buffer a JSON answer starts with: a 20-item page is 10-20 KB.
const ANSWER_CAPACITY: usize = 16 * 1024;

/// Items embedded by `threads.get_by_id`: the oldest ones, as the SDK does.
const EMBEDDED_ITEMS: u64 = 20;

/// Turns announce `allow_cancel: true`: the widget's stop button closes the stream, which
/// stops the model at once and records what it said so far (a REST stream's client going
/// away lets the answer finish instead: Idempotency-Key retries rely on it).
const ALLOW_CANCEL: bool = true;

/// Answers ChatKit requests over the store and the turn pipeline.
#[derive(Clone)]
pub struct ChatKitService {
    store: Store,
    chat: ChatService,
    actions: TaskActions,
    attachments: Attachments,
    max_chars: usize,
    /// The models the composer may pick.
    models: std::sync::Arc<[String]>,
    /// The largest dictation, decoded.
    max_audio_bytes: u64,
    /// Items already rendered, for pages that show them again.
    rendered: RenderedItems,
}

/// A client tool's output or a question's answers, as JSON: enough for any page's tool,
/// bounded so it cannot fill the model's context.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A question's answers, checked against its inputs: known input ids only, values among a
/// multiple choice's options (one unless `multiple`), free text of a sane length. Returns
/// the status and the answers as they will be stored.
fn checked_answers(
    inputs: &Value,
    input: &StructuredAnswer,
) -> Result<(String, serde_json::Map<String, Value>), ChatKitError> {
    let bad = |m: String| Err(ChatKitError::Invalid(m));
    if !matches!(input.status.as_str(), "answered" | "skipped") {
        return bad("input.status must be \"answered\" or \"skipped\"".into());
    }
    let questions = inputs.as_array().cloned().unwrap_or_default();
    let mut answers = serde_json::Map::new();
    for (id, answer) in &input.answers {
        let Some(question) = questions.iter().find(|q| q["id"].as_str() == Some(id)) else {
            let shown: String = id.chars().take(64).collect();
            return bad(format!("no question {shown:?} was asked"));
        };
        let values: Vec<String> = match answer.get("values") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(v)) if v.iter().all(Value::is_string) => v
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(_) => return bad(format!("answers.{id}.values must be a list of strings")),
        };
        let skipped = answer
            .get("skipped")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if question["type"] == "multiple_choice" {
            let options: Vec<&str> = question["options"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["value"].as_str())
                .collect();
            if let Some(v) = values.iter().find(|v| !options.contains(&v.as_str())) {
                let shown: String = v.chars().take(64).collect();
                return bad(format!("{shown:?} is not one of the options of {id}"));
            }
            if values.len() > 1 && question["multiple"] != true {
                return bad(format!("question {id} takes one choice"));
            }
        } else if values.len() > 1 || values.iter().any(|v| v.chars().count() > 4000) {
            return bad(format!(
                "question {id} takes one answer of at most 4000 characters"
            ));
        }
        answers.insert(id.clone(), json!({"values": values, "skipped": skipped}));
    }
    Ok((input.status.clone(), answers))
}

/// An action's payload is a task id and perhaps a form value or two; more is not a click.
const MAX_ACTION_PAYLOAD_BYTES: usize = 2048;

/// The widget, action and task a `threads.custom_action` names, checked: the client sends
/// back what the widget was configured with, but nothing stops it sending anything else.
fn task_action(p: &ActionParams) -> Result<(ItemId, TaskAction, i64), ChatKitError> {
    let kind = &p.action.kind;
    let action = TaskAction::parse(kind).ok_or_else(|| {
        let shown: String = kind.chars().take(64).collect();
        ChatKitError::ActionUnknown(format!(
            "unknown action type {shown:?}; this server carries out task.complete, \
             task.reopen and task.delete"
        ))
    })?;
    let item = p.item_id.as_deref().ok_or_else(|| {
        ChatKitError::ActionInvalid("a task action names the widget it came from (item_id)".into())
    })?;
    let payload = p
        .action
        .payload
        .as_ref()
        .filter(|v| v.is_object())
        .ok_or_else(|| {
            ChatKitError::ActionInvalid(
                "the action's payload must be an object with task_id".into(),
            )
        })?;
    if payload.to_string().len() > MAX_ACTION_PAYLOAD_BYTES {
        return Err(ChatKitError::ActionInvalid(format!(
            "the action's payload is over {MAX_ACTION_PAYLOAD_BYTES} bytes"
        )));
    }
    let task_id = payload
        .get("task_id")
        .and_then(Value::as_i64)
        .filter(|n| (1..=i64::from(i32::MAX)).contains(n))
        .ok_or_else(|| {
            ChatKitError::ActionInvalid("task_id must be a task number (a positive integer)".into())
        })?;
    Ok((item_id(item)?, action, task_id))
}

/// The thread a request names: an id that is not one of ours names no thread at all.
fn thread_id(raw: &str) -> Result<ThreadId, ChatKitError> {
    ThreadId::parse(raw).ok_or(ChatKitError::Store(StoreError::ThreadNotFound))
}

/// The item a request names, likewise.
fn item_id(raw: &str) -> Result<ItemId, ChatKitError> {
    ItemId::parse(raw).ok_or(ChatKitError::Store(StoreError::ItemNotFound))
}

/// An `after` cursor: the id of an element of the list being paged.
fn after<T>(raw: Option<&str>, parse: fn(&str) -> Option<T>) -> Result<Option<T>, ChatKitError> {
    raw.map(|a| parse(a).ok_or_else(|| StoreError::CursorNotFound.into()))
        .transpose()
}

fn page_size(raw: Option<i64>) -> u64 {
    match raw {
        None | Some(0) => 20,
        Some(n) => n.clamp(1, 100).unsigned_abs(),
    }
}

fn order(raw: Option<&str>) -> Result<Order, ChatKitError> {
    Order::parse(raw).map_err(ChatKitError::Malformed)
}

fn page_of<T, U>(page: crate::store::Page<T>, map: impl FnMut(T) -> Option<U>) -> Page<U> {
    let after = page.next.map(|c| c.id);
    Page {
        has_more: after.is_some(),
        after,
        data: page.items.into_iter().filter_map(map).collect(),
    }
}

/// A user message as sent: its text for the agent, its parts (normalised to the fields
/// the protocol defines) for a faithful reload, and the attachments it names.
struct ParsedInput {
    text: String,
    payload: Value,
    /// Attachment ids, in the order given, once each.
    attachments: Vec<String>,
}

fn parse_input(input: UserInput) -> Result<ParsedInput, ChatKitError> {
    let mut attachments: Vec<String> = Vec::with_capacity(input.attachments.len());
    for id in input.attachments {
        if !attachments.contains(&id) {
            attachments.push(id);
        }
    }
    if attachments.len() > crate::attachments::MAX_PER_MESSAGE {
        return Err(ChatKitError::Invalid(format!(
            "a message may carry at most {} attachments",
            crate::attachments::MAX_PER_MESSAGE
        )));
    }
    let mut text = String::new();
    let mut parts = Vec::with_capacity(input.content.len());
    for part in &input.content {
        let kind = part.get("type").and_then(Value::as_str);
        let part_text = part.get("text").and_then(Value::as_str);
        match (kind, part_text) {
            (Some("input_text"), Some(t)) => {
                text.push_str(t);
                parts.push(json!({"type": "input_text", "text": t}));
            }
            (Some("input_tag"), Some(t)) => {
                let id = part.get("id").and_then(Value::as_str).ok_or_else(|| {
                    ChatKitError::Malformed("an input_tag needs a string id".into())
                })?;
                text.push_str(t);
                let mut tag = json!({
                    "type": "input_tag", "id": id, "text": t,
                    "data": part.get("data").filter(|d| d.is_object()).cloned().unwrap_or_else(|| json!({})),
                    "interactive": part.get("interactive").and_then(Value::as_bool).unwrap_or(false),
                });
                if let Some(group) = part.get("group").and_then(Value::as_str) {
                    tag["group"] = json!(group);
                }
                parts.push(tag);
            }
            _ => return Err(ChatKitError::Malformed(
                "each content part must be {\"type\":\"input_text\",\"text\":…} or an input_tag"
                    .into(),
            )),
        }
    }
    let mut options = serde_json::Map::new();
    if let Some(o) = input.inference_options.as_ref().filter(|o| !o.is_null()) {
        if !o.is_object() {
            return Err(ChatKitError::Malformed(
                "inference_options must be an object".into(),
            ));
        }
        if let Some(model) = o.get("model").and_then(Value::as_str) {
            options.insert("model".into(), json!(model));
        }
        if let Some(id) = o
            .get("tool_choice")
            .and_then(|t| t.get("id"))
            .and_then(Value::as_str)
        {
            // A tool name as models take them; anything else names no tool.
            let plain = (1..=64).contains(&id.len())
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !plain {
                return Err(ChatKitError::Malformed(
                    "inference_options.tool_choice.id must be a tool name ([A-Za-z0-9_-], 1 to 64)"
                        .into(),
                ));
            }
            options.insert("tool_choice".into(), json!({ "id": id }));
        }
    }
    let mut payload = json!({"content": parts, "inference_options": options});
    if let Some(quote) = input.quoted_text.filter(|q| !q.is_empty()) {
        payload["quoted_text"] = json!(quote);
    }
    if !attachments.is_empty() {
        payload["attachments"] = json!(attachments);
    }
    Ok(ParsedInput {
        text,
        payload,
        attachments,
    })
}

/// The text a message of attachments alone is recorded with (its title, what the REST
/// API and the agent's history show); ChatKit shows its parts, which are none.
fn attachments_text(attached: &[Attachment]) -> String {
    let names: Vec<&str> = attached.iter().map(|a| a.name.as_str()).collect();
    format!("(attached: {})", names.join(", "))
}

/// The standard alphabet, with or without padding: what browsers' `btoa` and
/// `FileReader.readAsDataURL` produce, and what Python's `b64encode` does.
const AUDIO_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// A message the widget should show inline instead of an HTTP error (an empty or
/// over-long message): a stream of one `error` event; nothing is recorded.
fn inline_error(message: String) -> Outcome {
    Outcome::Stream(stream::TurnStream::events(vec![Event::Error {
        code: "custom",
        message: Some(message),
        allow_retry: false,
    }]))
}

impl ChatKitService {
    /// A service that records messages of at most `max_chars` characters and lets the
    /// composer pick among `models`.
    /// Dictation is taken up to `max_audio_bytes` of audio.
    #[must_use]
    pub fn new(
        store: Store,
        chat: ChatService,
        actions: TaskActions,
        attachments: Attachments,
        max_chars: usize,
        models: Vec<String>,
        max_audio_bytes: u64,
    ) -> Self {
        Self {
            store,
            chat,
            actions,
            attachments,
            max_chars,
            rendered: RenderedItems::default(),
            models: models.into(),
            max_audio_bytes,
        }
    }

    /// Refuses a model the composer may not pick, before anything is recorded.
    fn check_model(&self, input: &ParsedInput) -> Result<(), ChatKitError> {
        let picked = input.payload["inference_options"]
            .get("model")
            .and_then(Value::as_str);
        match picked {
            Some(model) if !self.models.iter().any(|m| m == model) => {
                let shown: String = model.chars().take(64).collect();
                Err(ChatKitError::ModelNotAllowed(format!(
                    "model {shown:?} is not one this server offers: {}",
                    self.models.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }

    /// Answers one parsed request of `user`.
    pub async fn handle(&self, user: &UserId, request: Request) -> Result<Outcome, ChatKitError> {
        match request {
            Request::GetById(p) => self.get(user, p).await,
            Request::ListThreads(p) => self.list_threads(user, p).await,
            Request::ListItems(p) => self.list_items(user, p).await,
            // The other types, turns above all, hold far more across their awaits. Boxed,
            // their state stays out of the reads' future, which every layer above copies
            // as it moves it.
            other => Box::pin(self.handle_other(user, other)).await,
        }
    }

    /// Every request type but the three reads [`Self::handle`] answers itself.
    async fn handle_other(&self, user: &UserId, request: Request) -> Result<Outcome, ChatKitError> {
        match request {
            read @ (Request::GetById(_) | Request::ListThreads(_) | Request::ListItems(_)) => {
                self.handle(user, read).await
            }
            Request::Create(p) => self.create(user, p).await,
            Request::AddMessage(p) => self.add_message(user, p).await,
            Request::Retry(p) => self.retry(user, p).await,
            Request::Update(p) => self.update(user, p).await,
            Request::Delete(p) => {
                let thread = thread_id(&p.thread_id)?;
                // The attachments first: their objects in a bucket would not go with the
                // thread's rows.
                self.attachments.delete_for_thread(user, &thread).await?;
                self.store.delete_thread(user, &thread).await?;
                Ok(Outcome::json(&json!({})))
            }
            Request::CreateAttachment(p) => {
                let created = self
                    .attachments
                    .create(user, &p.name, p.size, &p.mime_type)
                    .await?;
                Ok(Outcome::json(&self.attachments.to_chatkit(&created)))
            }
            Request::DeleteAttachment(p) => {
                self.attachments.delete(user, &p.attachment_id).await?;
                Ok(Outcome::json(&json!({})))
            }
            Request::Transcribe(p) => self.transcribe(p).await,
            Request::Feedback(p) => {
                self.store
                    .set_feedback(
                        user,
                        &thread_id(&p.thread_id)?,
                        &p.item_ids
                            .iter()
                            .map(|i| item_id(i))
                            .collect::<Result<Vec<_>, _>>()?,
                        p.kind.as_str(),
                    )
                    .await?;
                Ok(Outcome::json(&json!({})))
            }
            Request::CustomAction(p) => {
                let (thread, outcome) = self.task_action(user, &p).await?;
                // Every response stream starts with its options, as the SDK's do; an
                // action's is over at once, so there is nothing to stop.
                let mut events = vec![Event::StreamOptions {
                    stream_options: StreamOptions {
                        allow_cancel: false,
                    },
                }];
                if let Some(item) = outcome.workflow.as_ref().and_then(items::item) {
                    events.push(Event::ItemDone { item });
                }
                if let Some(item) = items::item(&outcome.widget) {
                    events.push(Event::ItemReplaced { item });
                }
                if let Some((ids, change)) = &outcome.changed {
                    events.push(stream::tasks_changed_effect(ids, *change));
                }
                tracing::debug!(thread_id = %thread, "task action carried out");
                Ok(Outcome::Stream(stream::TurnStream::events(events)))
            }
            Request::AddClientToolOutput(p) => self.add_tool_output(user, p).await,
            Request::AddStructuredInput(p) => self.add_structured_input(user, p).await,
            Request::SyncCustomAction(p) => {
                let (_, outcome) = self.task_action(user, &p).await?;
                let updated = items::item(&outcome.widget);
                Ok(match updated {
                    Some(item) => Outcome::json(&json!({ "updated_item": item })),
                    None => Outcome::json(&json!({})),
                })
            }
        }
    }

    /// The page's output for the client tool call the answer paused on; the answer goes
    /// on in the same stream.
    async fn add_tool_output(
        &self,
        user: &UserId,
        p: ToolOutputParams,
    ) -> Result<Outcome, ChatKitError> {
        let thread = thread_id(&p.thread_id)?;
        if p.result.to_string().len() > MAX_REPLY_BYTES {
            return Err(ChatKitError::Invalid(format!(
                "a client tool's output is at most {MAX_REPLY_BYTES} bytes of JSON"
            )));
        }
        let output = p.result.clone();
        let resumed = self
            .chat
            .resume_paused(
                user,
                &thread,
                None,
                ItemType::ClientToolCall,
                p.result,
                move |payload| payload["output"] = output,
            )
            .await?;
        Ok(self.resumed_stream(user, &thread, resumed))
    }

    /// The user's answers to the question the answer paused on; the answer goes on.
    async fn add_structured_input(
        &self,
        user: &UserId,
        p: StructuredInputParams,
    ) -> Result<Outcome, ChatKitError> {
        let thread = thread_id(&p.thread_id)?;
        let item = item_id(&p.item_id)?;
        let Some(row) = self.store.find_item(user, &thread, &item).await? else {
            self.store.get_thread(user, &thread).await?;
            return Err(StoreError::ItemNotFound.into());
        };
        if row.item_type != ItemType::StructuredInput {
            return Err(StoreError::ItemNotFound.into());
        }
        let inputs = row
            .payload
            .as_ref()
            .and_then(|p| p.get("inputs"))
            .cloned()
            .unwrap_or_default();
        let (status, answers) = checked_answers(&inputs, &p.input)?;
        let reply = json!({"status": status, "answers": answers});
        let resumed = self
            .chat
            .resume_paused(
                user,
                &thread,
                Some(&item),
                ItemType::StructuredInput,
                reply,
                move |payload| {
                    let skipped = status == "skipped";
                    if let Some(list) = payload.get_mut("inputs").and_then(Value::as_array_mut) {
                        for input in list {
                            let id = input["id"].as_str().unwrap_or_default().to_owned();
                            input["answer"] = answers
                                .get(&id)
                                .cloned()
                                .unwrap_or_else(|| json!({"values": [], "skipped": skipped}));
                        }
                    }
                    payload["status"] = json!(status);
                },
            )
            .await?;
        Ok(self.resumed_stream(user, &thread, resumed))
    }

    /// The stream of a resumed answer: its options, the answered item replaced, then the
    /// rest of the answer.
    fn resumed_stream(&self, user: &UserId, thread: &ThreadId, resumed: Resumed) -> Outcome {
        let mut first = vec![Event::StreamOptions {
            stream_options: StreamOptions {
                allow_cancel: ALLOW_CANCEL,
            },
        }];
        if let Some(item) = items::item(&resumed.item) {
            first.push(Event::ItemReplaced { item });
        }
        let (events, stop) = self.chat.stream_resumed(user, resumed);
        Outcome::Stream(stream::TurnStream::turn(
            first,
            thread.as_str().to_owned(),
            events,
            stop,
        ))
    }

    /// Carries out a click on a task widget.
    async fn task_action(
        &self,
        user: &UserId,
        p: &ActionParams,
    ) -> Result<(ThreadId, ActionOutcome), ChatKitError> {
        let thread = thread_id(&p.thread_id)?;
        let (item, action, task_id) = task_action(p)?;
        let outcome = self
            .actions
            .run(user, &thread, &item, action, task_id)
            .await?;
        Ok((thread, outcome))
    }

    /// The message, or (outer `Ok(Err)`) what the widget should show inline instead. A
    /// message of attachments alone is recorded with their names as its text.
    fn message(
        &self,
        input: &ParsedInput,
        attached: &[Attachment],
    ) -> Result<Result<MessageText, String>, ChatKitError> {
        let text = if input.text.trim().is_empty() && !attached.is_empty() {
            attachments_text(attached)
        } else {
            input.text.clone()
        };
        Ok(match MessageText::parse(&text, self.max_chars) {
            Ok(m) => Ok(m),
            Err(MessageTextError::Empty) => Err("Type a message before sending.".to_owned()),
            Err(MessageTextError::TooLong { max, got }) => Err(format!(
                "That message has {got} characters; the limit is {max}."
            )),
            // No keyboard types a NUL: a client bug, refused before streaming.
            Err(MessageTextError::Nul) => {
                return Err(ChatKitError::Invalid(
                    "the message must not contain NUL characters".into(),
                ))
            }
        })
    }

    /// The ChatKit JSON of `attached`, by id, with links minted now.
    fn shown_of(&self, attached: &[Attachment]) -> items::ShownAttachments {
        attached
            .iter()
            .map(|a| (a.id.clone(), self.attachments.to_chatkit(a)))
            .collect()
    }

    /// The attachments the user messages among `rows` show (one query for all).
    async fn shown(
        &self,
        user: &UserId,
        rows: &[entity::thread_item::Model],
    ) -> Result<items::ShownAttachments, ChatKitError> {
        let found = self.attachments.shown(user, rows).await?;
        Ok(found
            .values()
            .map(|a| (a.id.clone(), self.attachments.to_chatkit(a)))
            .collect())
    }

    /// A page of item rows as ChatKit shows them: kept renderings of unchanged rows, the
    /// rest rendered now (their attachments looked up in one query) and kept, except a
    /// user message showing attachments, whose links are minted for each read.
    async fn show_page(
        &self,
        user: &UserId,
        page: crate::store::Page<Fetched<Arc<Rendered>>>,
    ) -> Result<Page<Shown>, ChatKitError> {
        let page = page_of(page, Some);
        let mut data: Vec<Option<Shown>> = Vec::with_capacity(page.data.len());
        // The rows to render: their slots and sources, and the rows parsed.
        let (mut missed, mut models) = (Vec::new(), Vec::new());
        for item in page.data {
            match item {
                Fetched::Known(kept) => data.push(kept.is_shown().then_some(Shown::Kept(kept))),
                Fetched::Row(row) => {
                    missed.push((data.len(), Source::of(&row.view())));
                    models.push(row.into_model().map_err(StoreError::from)?);
                    data.push(None);
                }
            }
        }
        if !models.is_empty() {
            let shown = self.shown(user, &models).await?;
            for ((slot, source), model) in missed.into_iter().zip(models) {
                let linked = model.item_type == ItemType::UserMessage
                    && !ids_in_payload(model.payload.as_ref()).is_empty();
                data[slot] = if linked {
                    items::into_item(model, &shown).map(|i| Shown::Fresh(Box::new(i)))
                } else {
                    self.rendered
                        .keep(source, model, |m| items::into_item(m, &shown))
                };
            }
        }
        Ok(Page {
            has_more: page.has_more,
            after: page.after,
            data: data.into_iter().flatten().collect(),
        })
    }

    async fn create(&self, user: &UserId, p: CreateParams) -> Result<Outcome, ChatKitError> {
        let input = parse_input(p.input)?;
        self.check_model(&input)?;
        // Every attachment is checked before anything is recorded (4xx, no stream).
        let attached = self
            .attachments
            .sendable(user, &input.attachments, None)
            .await?;
        let message = match self.message(&input, &attached)? {
            Ok(m) => m,
            Err(e) => return Ok(inline_error(e)),
        };
        let recorded = self.record(user, None, message, input.payload).await?;
        let turn = recorded.turn();
        let attached = if input.attachments.is_empty() {
            attached
        } else {
            // The thread exists only now. Stamping refuses only what changed since the
            // check (an attachment deleted or sent elsewhere meanwhile): the message is
            // then marked failed, unanswered, and the refusal is the answer.
            let thread = ThreadId::parse(&turn.thread_id).ok_or(StoreError::ThreadNotFound)?;
            match self
                .attachments
                .stamp(user, &input.attachments, &thread)
                .await
            {
                Ok(stamped) => stamped,
                Err(e) => {
                    if let Err(failed) = self.store.fail_turn(user, &turn.id).await {
                        tracing::warn!(error = %failed, "could not mark a turn failed");
                    }
                    return Err(e.into());
                }
            }
        };
        // The thread as the writer recorded it with this message (no read back).
        let thread = crate::store::started_thread(turn);
        let first = Event::ThreadCreated {
            thread: items::thread(&thread, Page::<Item>::empty()),
        };
        let shown = self.shown_of(&attached);
        Ok(self.turn_stream(user, vec![first], recorded, Some(&shown)))
    }

    /// Dictation: the audio's text, from the agent's provider.
    async fn transcribe(&self, p: TranscribeParams) -> Result<Outcome, ChatKitError> {
        use base64::Engine as _;
        let mime_type = p.mime_type.trim();
        let media_type = mime_type.split(';').next().unwrap_or_default().trim();
        let plain =
            mime_type.len() <= 255 && mime_type.chars().all(|c| c.is_ascii_graphic() || c == ' ');
        if !plain
            || !media_type.to_ascii_lowercase().starts_with("audio/")
            || media_type.len() <= "audio/".len()
        {
            let shown: String = mime_type.chars().take(64).collect();
            return Err(ChatKitError::AudioType(format!(
                "{shown:?} is not an audio type (audio/webm, audio/ogg, audio/mp4, …)"
            )));
        }
        let max = self.max_audio_bytes;
        let too_large = || {
            ChatKitError::AudioTooLarge(format!(
                "a recording may have at most {max} bytes; record a shorter one"
            ))
        };
        let encoded = p.audio_base64.trim();
        // Refused on its length, before a byte is decoded: 4 characters carry 3 bytes.
        if (encoded.len() / 4) as u64 * 3 > max.saturating_add(2) {
            return Err(too_large());
        }
        let audio = AUDIO_BASE64
            .decode(encoded)
            .map_err(|e| ChatKitError::AudioInvalid(format!("audio_base64 is not base64: {e}")))?;
        if audio.is_empty() {
            return Err(ChatKitError::AudioInvalid(
                "audio_base64 holds no audio".into(),
            ));
        }
        if audio.len() as u64 > max {
            return Err(too_large());
        }
        let text = self
            .chat
            .transcribe(audio.into(), mime_type)
            .await
            .map_err(ChatKitError::Agent)?;
        Ok(Outcome::json(&json!({ "text": text })))
    }

    async fn add_message(
        &self,
        user: &UserId,
        p: AddMessageParams,
    ) -> Result<Outcome, ChatKitError> {
        let input = parse_input(p.input)?;
        self.check_model(&input)?;
        let thread = thread_id(&p.thread_id)?;
        let attached = self
            .attachments
            .sendable(user, &input.attachments, Some(&thread))
            .await?;
        let message = match self.message(&input, &attached)? {
            Ok(m) => m,
            Err(e) => {
                // Another user's thread is a 404 even for a message that would be refused.
                self.store.get_thread(user, &thread).await?;
                return Ok(inline_error(e));
            }
        };
        // Stamped before the message is recorded, so the agent finds them; stamping checks
        // the thread is the user's (404). Should recording then fail, they stay with this
        // thread, where a retried message may use them again.
        let attached = if input.attachments.is_empty() {
            attached
        } else {
            self.attachments
                .stamp(user, &input.attachments, &thread)
                .await?
        };
        // Recording checks the thread is the user's in the same atomic statement (404
        // before any stream byte), so no read ahead of it.
        let recorded = self
            .record(user, Some(thread), message, input.payload)
            .await?;
        let shown = self.shown_of(&attached);
        Ok(self.turn_stream(user, Vec::new(), recorded, Some(&shown)))
    }

    async fn retry(&self, user: &UserId, p: RetryParams) -> Result<Outcome, ChatKitError> {
        let thread = thread_id(&p.thread_id)?;
        self.store.get_thread(user, &thread).await?;
        let recorded = self
            .chat
            .reopen(user, &thread, &item_id(&p.item_id)?)
            .await?;
        Ok(self.turn_stream(user, Vec::new(), recorded, None))
    }

    async fn record(
        &self,
        user: &UserId,
        thread_id: Option<ThreadId>,
        message: MessageText,
        payload: Value,
    ) -> Result<Recorded, ChatKitError> {
        let request = SendMessage {
            thread_id,
            message,
            key: None,
            payload: Some(payload),
        };
        Ok(self.chat.record(user, &request).await?)
    }

    /// `first` events, the user's message with its attachments `echo` (none when
    /// retrying), `stream_options`, then the turn as it runs.
    fn turn_stream(
        &self,
        user: &UserId,
        first: Vec<Event>,
        recorded: Recorded,
        echo: Option<&items::ShownAttachments>,
    ) -> Outcome {
        let mut first = first;
        let turn = recorded.turn();
        if let Some(shown) = echo {
            if let Some(item) = items::item_with(turn, shown) {
                first.push(Event::ItemDone { item });
            }
        }
        first.push(Event::StreamOptions {
            stream_options: StreamOptions {
                allow_cancel: ALLOW_CANCEL,
            },
        });
        let thread_id = turn.thread_id.clone();
        let (events, stop) = self.chat.stream_stoppable(user, recorded);
        Outcome::Stream(stream::TurnStream::turn(first, thread_id, events, stop))
    }

    async fn get(&self, user: &UserId, p: ThreadParams) -> Result<Outcome, ChatKitError> {
        let id = thread_id(&p.thread_id)?;
        let (thread, page) = self
            .store
            .thread_and_item_rows(
                user,
                &id,
                &items::VISIBLE_TYPES,
                EMBEDDED_ITEMS,
                None,
                Order::Asc,
                |row| self.rendered.get(row),
            )
            .await?;
        let page = self.show_page(user, page).await?;
        Ok(Outcome::json(&items::thread(&thread, page)))
    }

    async fn list_threads(&self, user: &UserId, p: ListParams) -> Result<Outcome, ChatKitError> {
        let page = self
            .store
            .list_threads_by_creation(
                user,
                page_size(p.limit),
                after(p.after.as_deref(), ThreadId::parse)?.as_ref(),
                order(p.order.as_deref())?,
            )
            .await?;
        let page = page_of(page, |t| Some(items::listed_thread(t)));
        Ok(Outcome::json(&page))
    }

    async fn list_items(&self, user: &UserId, p: ItemsListParams) -> Result<Outcome, ChatKitError> {
        let page = self
            .store
            .list_items(
                user,
                &thread_id(&p.thread_id)?,
                &items::VISIBLE_TYPES,
                page_size(p.page.limit),
                after(p.page.after.as_deref(), ItemId::parse)?.as_ref(),
                order(p.page.order.as_deref())?,
                |row| self.rendered.get(row),
            )
            .await?;
        let page = self.show_page(user, page).await?;
        Ok(Outcome::json(&page))
    }

    async fn update(&self, user: &UserId, p: UpdateParams) -> Result<Outcome, ChatKitError> {
        let title = Title::parse(&p.title).map_err(ChatKitError::Invalid)?;
        let thread = self
            .store
            .update_thread(user, &thread_id(&p.thread_id)?, Some(title), None)
            .await?;
        Ok(Outcome::json(&items::thread(
            &thread,
            Page::<Item>::empty(),
        )))
    }
}
