//! Any OpenAI-compatible Chat Completions endpoint (OpenAI, Gemini's OpenAI-compatible
//! endpoint, Ollama, vLLM), streamed, with the task tools in a loop.
//!
//! Vendors differ in small ways; the parser takes chunks as loose JSON: tool-call deltas
//! with or without `index`/`id`, arguments split over many chunks (or sent whole, even as
//! an object), `finish_reason` in any spelling or absent, usage-only chunks with empty
//! `choices`, and streams that end with or without `[DONE]`.
//!
//! Retries (connect errors, timeouts before the first chunk, 429, 5xx; `Retry-After`
//! honoured) happen only while nothing has been streamed to the user for this request.

use std::{borrow::Cow, time::Duration};

use async_trait::async_trait;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use rand::Rng;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{value::RawValue, Value};
use tokio_util::sync::CancellationToken;

use super::{
    client_pool::{ClientOptions, ModelClientPool, SetupError},
    error::AgentError,
    events::{AgentEvent, EventSink},
    files::{self, ContentPart},
    prompt::PromptTemplate,
    provider::{Agent, AgentAnswer, AgentRequest, ClientTool, Mention, Pending},
    tools::TaskTools,
};
use crate::config::OpenAiSettings;

/// The agent backed by an OpenAI-compatible model API (`AGENT_PROVIDER=openai`).
pub struct OpenAiAgent {
    clients: ModelClientPool,
    url: String,
    /// `{base_url}/audio/transcriptions`, for dictation.
    transcription_url: String,
    settings: OpenAiSettings,
    prompt: PromptTemplate,
}

/// One tool call as it accumulates from streamed deltas.
#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// What one model call produced.
#[derive(Debug, Default)]
struct StepOutput {
    text: String,
    calls: Vec<PartialCall>,
    /// The user stopped the answer during this call.
    stopped: bool,
}

/// One message of a model request. Typed rather than a `json!` tree: the request is held
/// (and its body resent on a retry) for as long as the model streams, and a map per
/// message costs far more than the text it holds.
#[derive(Serialize)]
#[serde(untagged)]
enum ChatMessage<'a> {
    /// A system, user or assistant message with text.
    Text { role: &'a str, content: &'a str },
    /// A user message with files: its text and each file as parts (images as images).
    Parts {
        role: &'static str,
        content: Vec<ContentPart>,
    },
    /// The assistant asking for tool calls (`content` is null when it said nothing).
    Calls {
        role: &'static str,
        content: Option<String>,
        tool_calls: Vec<CallOut>,
    },
    /// A tool's result.
    ToolResult {
        role: &'static str,
        tool_call_id: String,
        content: String,
    },
}

#[derive(Serialize)]
struct CallOut {
    id: String,
    r#type: &'static str,
    function: FunctionOut,
}

#[derive(Serialize)]
struct FunctionOut {
    name: String,
    arguments: String,
}

/// A streamed Chat Completions request.
#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage<'a>],
    tools: &'a RawValue,
    tool_choice: ToolChoice<'a>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

/// `tool_choice`: the model decides, or must call the named function.
#[derive(Clone, Copy)]
enum ToolChoice<'a> {
    Auto,
    Function(&'a str),
}

impl Serialize for ToolChoice<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Named<'a> {
            name: &'a str,
        }
        #[derive(Serialize)]
        struct Forced<'a> {
            r#type: &'static str,
            function: Named<'a>,
        }
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Function(name) => Forced {
                r#type: "function",
                function: Named { name },
            }
            .serialize(s),
        }
    }
}

/// Why one attempt failed, and whether another may follow.
enum AttemptError {
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    Fatal(String),
    /// The user stopped the answer: the call was dropped.
    Stopped,
}

/// What one model call of a turn asks for besides its messages.
#[derive(Clone, Copy)]
struct StepCall<'a> {
    model: &'a str,
    offered: &'a RawValue,
    tool_choice: ToolChoice<'a>,
}

/// Resolves when `stop` is cancelled; never without one.
async fn stopped(stop: Option<&CancellationToken>) {
    match stop {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

fn retryable(reason: impl Into<String>) -> AttemptError {
    AttemptError::Retryable {
        reason: reason.into(),
        retry_after: None,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from model APIs; backoff covers it).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Folds one streamed tool-call delta into the calls seen so far.
fn merge_tool_delta(calls: &mut Vec<PartialCall>, delta: &Value) {
    let id = delta
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let function = delta.get("function");
    let name = function
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let arguments = match function.and_then(|f| f.get("arguments")) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let slot = match delta.get("index").and_then(Value::as_u64) {
        Some(i) => {
            // An index past any real call count is a vendor bug: treat it as the next call.
            let i = usize::try_from(i)
                .unwrap_or(calls.len())
                .min(calls.len() + 64);
            if calls.len() <= i {
                calls.resize_with(i + 1, PartialCall::default);
            }
            i
        }
        // No index: an id names the call; a name without a known id starts a new one;
        // anything else continues the last call.
        None => match id.and_then(|id| calls.iter().position(|c| c.id.as_deref() == Some(id))) {
            Some(i) => i,
            None if id.is_some() || name.is_some() || calls.is_empty() => {
                calls.push(PartialCall::default());
                calls.len() - 1
            }
            None => calls.len() - 1,
        },
    };
    let call = &mut calls[slot];
    if call.id.is_none() {
        call.id = id.map(str::to_owned);
    }
    if let Some(name) = name {
        if call.name.is_empty() {
            call.name = name.to_owned();
        }
    }
    call.arguments.push_str(&arguments);
}

/// What one streamed chunk says, whatever shape the vendor gave it.
#[derive(Default)]
struct Chunk<'a> {
    /// Assistant text.
    text: Option<Cow<'a, str>>,
    /// Tool-call deltas, as sent.
    tool_calls: Vec<Value>,
    /// A `finish_reason` was given.
    finished: bool,
}

/// The common shape of a chunk (text and tool-call deltas), read without building a
/// `Value` per chunk: a chunk arrives per token, and a map per JSON object was most of its
/// cost. Anything this does not cover (errors, `message` instead of `delta`, odd types) is
/// read by the general path.
#[derive(serde::Deserialize)]
struct TextChunk<'a> {
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
    #[serde(default, borrow)]
    choices: Option<Vec<TextChoice<'a>>>,
}

#[derive(serde::Deserialize)]
struct TextChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<TextDelta<'a>>,
    #[serde(default)]
    message: Option<serde::de::IgnoredAny>,
    // Present and not null: the choice is finished.
    #[serde(default)]
    finish_reason: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct TextDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

/// Reads one chunk's `data`: a text delta the quick way, anything else as loose JSON.
fn read_chunk(data: &str) -> Result<Chunk<'_>, AttemptError> {
    if let Ok(TextChunk {
        error: None,
        choices,
    }) = serde_json::from_str::<TextChunk>(data)
    {
        let Some(choice) = choices.and_then(|c| c.into_iter().next()) else {
            return Ok(Chunk::default()); // usage-only chunk
        };
        if choice.message.is_none() {
            let (text, tool_calls) = choice
                .delta
                .map(|d| (d.content, d.tool_calls.unwrap_or_default()))
                .unwrap_or_default();
            return Ok(Chunk {
                text,
                tool_calls,
                finished: choice.finish_reason.is_some(),
            });
        }
    }
    let chunk: Value = serde_json::from_str(data)
        .map_err(|_| AttemptError::Fatal("the model sent a chunk that is not JSON".into()))?;
    // `"error": null` is no error (the quick path reads it so too).
    if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
        let message = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        return Err(retryable(format!("the model reported an error: {message}")));
    }
    let Some(choice) = chunk
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    else {
        return Ok(Chunk::default()); // usage-only chunk
    };
    // Some vendors put the last chunk's payload under `message` instead of `delta`.
    let delta = choice.get("delta").or_else(|| choice.get("message"));
    Ok(Chunk {
        text: delta
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str)
            .map(|t| Cow::Owned(t.to_owned())),
        tool_calls: delta
            .and_then(|d| d.get("tool_calls"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        finished: choice.get("finish_reason").is_some_and(|f| !f.is_null()),
    })
}

impl OpenAiAgent {
    /// An agent calling `settings.base_url` with `prompt` as the system message; fails
    /// only on an unusable `ca_file`.
    pub fn new(settings: OpenAiSettings, prompt: PromptTemplate) -> Result<Self, SetupError> {
        let options = ClientOptions::new(
            Duration::from_millis(settings.connect_timeout_ms),
            settings.ca_file.as_deref(),
        )?;
        // Config admits only `http://` and `https://` base URLs (`check_openai`).
        let clients = ModelClientPool::new(
            settings.http2,
            settings.base_url.starts_with("https://"),
            settings.http2_streams_per_connection as usize,
            options,
        );
        let base = settings.base_url.trim_end_matches('/');
        let url = format!("{base}/chat/completions");
        let transcription_url = format!("{base}/audio/transcriptions");
        Ok(Self {
            clients,
            url,
            transcription_url,
            settings,
            prompt,
        })
    }

    /// The start of a provider's error body, for the logs and the turn's failure: the API
    /// key taken out, since some providers and proxies quote the credentials they refused.
    fn error_excerpt(&self, body: &str) -> String {
        let key = self.settings.api_key.expose_secret();
        let body = if key.is_empty() {
            Cow::Borrowed(body)
        } else {
            Cow::Owned(body.replace(key, "[api key]"))
        };
        body.chars().take(300).collect()
    }

    fn backoff(&self, attempt: u32, hinted: Option<Duration>) -> Duration {
        let max = Duration::from_millis(self.settings.retry_max_ms);
        if let Some(hint) = hinted {
            return hint.min(max);
        }
        let ceiling = self
            .settings
            .retry_base_ms
            .saturating_mul(1 << attempt.min(16))
            .min(self.settings.retry_max_ms)
            .max(1);
        // Jitter in [ceiling/2, ceiling] so retrying clients spread out.
        Duration::from_millis(rand::thread_rng().gen_range(ceiling / 2..=ceiling))
    }

    /// One model call, retried while nothing has been streamed.
    async fn step(
        &self,
        call: StepCall<'_>,
        messages: &[ChatMessage<'_>],
        events: &EventSink,
        stop: Option<&CancellationToken>,
    ) -> Result<StepOutput, AgentError> {
        let request = ChatRequest {
            model: call.model,
            messages,
            tools: call.offered,
            tool_choice: call.tool_choice,
            stream: true,
            temperature: self.settings.temperature,
            max_tokens: self.settings.max_tokens,
        };
        let mut attempt = 0;
        loop {
            let mut out = StepOutput::default();
            match self.attempt(&request, events, &mut out, stop).await {
                Ok(()) => return Ok(out),
                Err(AttemptError::Stopped) => {
                    out.stopped = true;
                    return Ok(out);
                }
                // Text reached the user: a retry would repeat it, so this is final.
                Err(AttemptError::Retryable { reason, .. }) | Err(AttemptError::Fatal(reason))
                    if !out.text.is_empty() =>
                {
                    return Err(AgentError::Unavailable(reason))
                }
                Err(AttemptError::Retryable {
                    reason,
                    retry_after,
                }) if attempt < self.settings.max_retries => {
                    let wait = self.backoff(attempt, retry_after);
                    tracing::warn!(%reason, attempt, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "model call failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stopped(stop) => {
                            out.stopped = true;
                            return Ok(out);
                        }
                    }
                    attempt += 1;
                }
                Err(AttemptError::Retryable { reason, .. }) | Err(AttemptError::Fatal(reason)) => {
                    return Err(AgentError::Unavailable(reason))
                }
            }
        }
    }

    /// [`attempt_inner`](Self::attempt_inner), dropped the moment the user stops the
    /// answer: the provider's stream (and, over HTTP/1.1, its connection) goes with it, so
    /// no more tokens are generated for nobody.
    async fn attempt(
        &self,
        request: &ChatRequest<'_>,
        events: &EventSink,
        out: &mut StepOutput,
        stop: Option<&CancellationToken>,
    ) -> Result<(), AttemptError> {
        tokio::select! {
            biased;
            () = stopped(stop) => Err(AttemptError::Stopped),
            result = self.attempt_inner(request, events, out) => result,
        }
    }

    async fn attempt_inner(
        &self,
        request: &ChatRequest<'_>,
        events: &EventSink,
        out: &mut StepOutput,
    ) -> Result<(), AttemptError> {
        // Written for each attempt rather than kept: the body is gone once it is sent, and
        // the model may stream for minutes.
        let body = serde_json::to_vec(request).map_err(|e| {
            AttemptError::Fatal(format!("the model request could not be written: {e}"))
        })?;
        let first_token = Duration::from_millis(self.settings.first_token_timeout_ms);
        let started = tokio::time::Instant::now();
        // Held until this attempt has read the stream to its end (or given up on it).
        let lease = self.clients.lease();
        let mut http = lease
            .client()
            .post(&self.url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let key = self.settings.api_key.expose_secret();
        if !key.is_empty() {
            http = http.bearer_auth(key);
        }
        let response = match tokio::time::timeout(first_token, http.send()).await {
            Err(_) => return Err(retryable("timed out waiting for the model")),
            Ok(Err(e)) => return Err(retryable(format!("request failed: {}", e.without_url()))),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(AttemptError::Retryable {
                reason: format!("the model API answered HTTP {status}"),
                retry_after: retry_after(response.headers()),
            });
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(AttemptError::Fatal(format!(
                "the model API answered HTTP {status}: {}",
                self.error_excerpt(&text)
            )));
        }
        let mut stream = response.bytes_stream().eventsource();
        let mut finished = false;
        let mut got_any = false;
        loop {
            let next = if got_any {
                stream.next().await
            } else {
                let left = first_token.saturating_sub(started.elapsed());
                match tokio::time::timeout(left, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        return Err(retryable("timed out waiting for the model's first token"))
                    }
                }
            };
            let event = match next {
                None => break,
                Some(Err(e)) => return Err(retryable(format!("the model's stream broke: {e}"))),
                Some(Ok(event)) => event,
            };
            got_any = true;
            let data = event.data.trim();
            if data == "[DONE]" {
                finished = true;
                break;
            }
            if data.is_empty() {
                continue;
            }
            let chunk = read_chunk(data)?;
            if let Some(text) = chunk.text.filter(|t| !t.is_empty()) {
                out.text.push_str(&text);
                events.emit(AgentEvent::TextDelta(text.into_owned()));
            }
            for call in &chunk.tool_calls {
                merge_tool_delta(&mut out.calls, call);
            }
            finished |= chunk.finished;
        }
        if finished {
            Ok(())
        } else {
            Err(retryable("the model's stream ended before it finished"))
        }
    }

    async fn run(
        &self,
        request: AgentRequest<'_>,
        tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentAnswer, AgentError> {
        let system = self
            .prompt
            .render(request.user.as_str(), &chrono::Utc::now());
        let mut messages = vec![ChatMessage::Text {
            role: "system",
            content: &system,
        }];
        for m in request.history {
            messages.push(ChatMessage::Text {
                role: &m.role,
                content: &m.content,
            });
        }
        let with_mentions;
        let user_message = if request.mentions.is_empty() {
            request.message
        } else {
            with_mentions = mentioned(request.message, request.mentions);
            &with_mentions
        };
        if request.attachments.is_empty() {
            messages.push(ChatMessage::Text {
                role: "user",
                content: user_message,
            });
        } else {
            // The new message's files only: earlier messages go as their text.
            let caps = files::Caps {
                image_bytes: self.settings.max_image_bytes,
                text_bytes: self.settings.max_text_bytes,
            };
            messages.push(ChatMessage::Parts {
                role: "user",
                content: files::message_parts(user_message, request.attachments, caps),
            });
        }
        let mut answer = AgentAnswer::default();
        // The call the answer paused on, and what came back for it.
        let resumed_result;
        if let Some(resume) = request.resume {
            let (id, name, arguments) = match resume.pending {
                Pending::ClientTool {
                    call_id,
                    name,
                    arguments,
                } => (call_id.clone(), name.clone(), arguments.to_string()),
                Pending::Question { context, .. } => (
                    context["call_id"].as_str().unwrap_or("call_ask").to_owned(),
                    ASK_USER.to_owned(),
                    context["arguments"].as_str().unwrap_or("{}").to_owned(),
                ),
            };
            messages.push(ChatMessage::Calls {
                role: "assistant",
                content: (!resume.said.is_empty()).then(|| resume.said.to_owned()),
                tool_calls: vec![CallOut {
                    id: id.clone(),
                    r#type: "function",
                    function: FunctionOut { name, arguments },
                }],
            });
            resumed_result = resume.reply.to_string();
            messages.push(ChatMessage::ToolResult {
                role: "tool",
                tool_call_id: id,
                content: resumed_result,
            });
        }
        let offered: std::sync::Arc<RawValue> = if request.interactive {
            with_client_tools(&tools.offered_json(), request.client_tools).into()
        } else {
            tools.offered_json()
        };
        for step in 0..self.settings.max_tool_steps {
            if request.stop.is_some_and(CancellationToken::is_cancelled) {
                answer.stopped = true;
                return Ok(answer);
            }
            let call = StepCall {
                model: request.model.unwrap_or(&self.settings.model),
                offered: &offered,
                // Forced on the first call only: after it the model decides again, or a
                // forced tool would be called until the step limit.
                tool_choice: match request.tool_choice {
                    Some(name) if step == 0 && offers(tools, &request, name) => {
                        ToolChoice::Function(name)
                    }
                    _ => ToolChoice::Auto,
                },
            };
            let out = self.step(call, &messages, events, request.stop).await?;
            answer.text.push_str(&out.text);
            if out.stopped {
                // Calls the model had only begun to ask for are not made.
                answer.stopped = true;
                return Ok(answer);
            }
            let calls: Vec<PartialCall> = out
                .calls
                .into_iter()
                .filter(|c| !c.name.is_empty())
                .collect();
            if calls.is_empty() {
                if answer.text.trim().is_empty() {
                    let fallback = "I have no answer to that.";
                    events.emit(AgentEvent::TextDelta(fallback.into()));
                    answer.text.push_str(fallback);
                }
                return Ok(answer);
            }
            let ids: Vec<String> = calls
                .iter()
                .enumerate()
                .map(|(i, c)| c.id.clone().unwrap_or_else(|| format!("call_{step}_{i}")))
                .collect();
            messages.push(ChatMessage::Calls {
                role: "assistant",
                content: (!out.text.is_empty()).then_some(out.text),
                tool_calls: calls
                    .iter()
                    .zip(&ids)
                    .map(|(c, id)| CallOut {
                        id: id.clone(),
                        r#type: "function",
                        function: FunctionOut {
                            name: c.name.clone(),
                            arguments: c.arguments.clone(),
                        },
                    })
                    .collect(),
            });
            for (call, id) in calls.into_iter().zip(ids) {
                if request.interactive {
                    if let Some(pending) = pause_on(&call, &id, request.client_tools) {
                        // The client answers this one: the turn ends waiting for it (calls
                        // the model asked for after it are not made).
                        answer.pending = Some(pending);
                        return Ok(answer);
                    }
                }
                // Boxed: a tool's future (a database or MCP call) would otherwise size this
                // one, which lives as long as the model streams.
                let record =
                    Box::pin(tools.run_model_call(&call.name, call.arguments, events)).await?;
                messages.push(ChatMessage::ToolResult {
                    role: "tool",
                    tool_call_id: id,
                    content: record.result.to_string(),
                });
                answer.tool_calls.push(record);
            }
        }
        let note = format!(
            "{}I stopped after {} tool steps without a final answer; please try again or ask for less at once.",
            if answer.text.is_empty() { "" } else { "\n\n" },
            self.settings.max_tool_steps
        );
        events.emit(AgentEvent::TextDelta(note.clone()));
        answer.text.push_str(&note);
        Ok(answer)
    }
}

/// Whether this turn offers a tool of this name: a task tool, or on a ChatKit turn the
/// page's tools and `ask_user`.
fn offers(tools: &TaskTools, request: &AgentRequest<'_>, name: &str) -> bool {
    tools.offers(name)
        || (request.interactive
            && (name == ASK_USER || request.client_tools.iter().any(|t| t.name == name)))
}

/// The agent's own tool for asking the user to choose (ChatKit's structured input).
const ASK_USER: &str = "ask_user";

/// `ask_user`'s definition, offered on turns a ChatKit client sent.
fn ask_user_definition() -> Value {
    serde_json::json!({"type": "function", "function": {
        "name": ASK_USER,
        "description": "Ask the user to choose among a few options when their request is \
            ambiguous (for example several tasks match). The turn ends; the user's choice comes \
            back as this tool's result.",
        "parameters": {"type": "object", "properties": {
            "question": {"type": "string", "description": "The question, one sentence"},
            "options": {"type": "array", "items": {"type": "string"}, "minItems": 2,
                        "maxItems": 8, "description": "What the user may pick"},
            "multiple": {"type": "boolean", "description": "Whether several may be picked"}},
          "required": ["question", "options"]}}})
}

/// The tools of an interactive turn: the task tools, the page's tools and `ask_user`.
fn with_client_tools(base: &RawValue, client_tools: &[ClientTool]) -> Box<RawValue> {
    let mut extra: Vec<String> = client_tools
        .iter()
        .map(|t| {
            serde_json::json!({"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters}})
            .to_string()
        })
        .collect();
    extra.push(ask_user_definition().to_string());
    // `base` is an array serde_json wrote: its items and ours make one array.
    let inner = base
        .get()
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim();
    let sep = if inner.is_empty() { "" } else { "," };
    RawValue::from_string(format!("[{inner}{sep}{}]", extra.join(",")))
        .unwrap_or_else(|_| RawValue::from_string("[]".to_owned()).unwrap_or_default())
}

/// The pause a call means: a client tool's, or `ask_user`'s with usable arguments (bad
/// ones go back to the model as an error, like any tool's).
fn pause_on(call: &PartialCall, id: &str, client_tools: &[ClientTool]) -> Option<Pending> {
    let arguments: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
    if client_tools.iter().any(|t| t.name == call.name) {
        let arguments = if arguments.is_object() {
            arguments
        } else {
            serde_json::json!({})
        };
        return Some(Pending::ClientTool {
            call_id: id.to_owned(),
            name: call.name.clone(),
            arguments,
        });
    }
    if call.name != ASK_USER {
        return None;
    }
    let question = arguments["question"].as_str()?.trim();
    let options: Vec<&str> = arguments["options"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .collect();
    if question.is_empty() || !(2..=8).contains(&options.len()) {
        return None;
    }
    let question: String = question.chars().take(500).collect();
    let options: Vec<Value> = options
        .iter()
        .map(|o| serde_json::json!({"value": o.chars().take(200).collect::<String>()}))
        .collect();
    Some(Pending::Question {
        inputs: serde_json::json!([{"type": "multiple_choice", "id": "choice",
            "question": question, "options": options,
            "multiple": arguments["multiple"].as_bool().unwrap_or(false)}]),
        context: serde_json::json!({"call_id": id, "arguments": call.arguments}),
    })
}

/// The message with what its @-mentions name, for the model to act on the right tasks.
fn mentioned(message: &str, mentions: &[Mention]) -> String {
    let named: Vec<String> = mentions
        .iter()
        .map(|m| format!("\"{}\" is task {}", m.text, m.task_id))
        .collect();
    format!("{message}\n\n(Mentioned tasks: {}.)", named.join("; "))
}

/// What a title call asks: the message, and to answer with a title only.
const TITLE_PROMPT: &str = "Write a title of at most six words for a conversation that starts \
    with the user's message below. Answer with the title alone: no quotes, no punctuation at \
    the end.";

/// A title as the model wrote it, made fit for a thread: one line, no wrapping quotes, at
/// most 60 characters; `None` if nothing is left.
fn clean_title(raw: &str) -> Option<String> {
    let line = raw.lines().find(|l| !l.trim().is_empty())?.trim();
    let line = line.trim_matches(|c: char| matches!(c, '"' | '\'' | '“' | '”' | '*' | '#'));
    let line = line.trim().trim_end_matches('.').trim();
    let title: String = line.chars().filter(|c| !c.is_control()).take(60).collect();
    let title = title.trim().to_owned();
    (!title.is_empty()).then_some(title)
}

impl OpenAiAgent {
    /// One non-streamed call for a thread's title.
    async fn ask_title(&self, message: &str, model: &str) -> Result<String, String> {
        #[derive(Serialize)]
        struct TitleRequest<'a> {
            model: &'a str,
            messages: [ChatMessage<'a>; 2],
            stream: bool,
            max_tokens: u32,
        }
        #[derive(serde::Deserialize)]
        struct Completion {
            choices: Vec<Choice>,
        }
        #[derive(serde::Deserialize)]
        struct Choice {
            message: Said,
        }
        #[derive(serde::Deserialize)]
        struct Said {
            content: Option<String>,
        }
        let excerpt: String = message.chars().take(2000).collect();
        let request = TitleRequest {
            model,
            messages: [
                ChatMessage::Text {
                    role: "system",
                    content: TITLE_PROMPT,
                },
                ChatMessage::Text {
                    role: "user",
                    content: &excerpt,
                },
            ],
            stream: false,
            max_tokens: 24,
        };
        let lease = self.clients.lease();
        let mut http = lease.client().post(&self.url).json(&request);
        let key = self.settings.api_key.expose_secret();
        if !key.is_empty() {
            http = http.bearer_auth(key);
        }
        let response = http.send().await.map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("the model API answered HTTP {}", response.status()));
        }
        let completion: Completion = response
            .json()
            .await
            .map_err(|e| e.without_url().to_string())?;
        completion
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| "the answer held no title".to_owned())
    }
}

impl OpenAiAgent {
    /// One try at `/audio/transcriptions` with the multipart `body`: the text heard.
    async fn transcribe_once(
        &self,
        content_type: &str,
        body: bytes::Bytes,
    ) -> Result<String, AttemptError> {
        #[derive(serde::Deserialize)]
        struct Transcription {
            text: String,
        }
        let lease = self.clients.lease();
        let mut http = lease
            .client()
            .post(&self.transcription_url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        let key = self.settings.api_key.expose_secret();
        if !key.is_empty() {
            http = http.bearer_auth(key);
        }
        let response = http
            .send()
            .await
            .map_err(|e| retryable(format!("request failed: {}", e.without_url())))?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(AttemptError::Retryable {
                reason: format!("the transcription API answered HTTP {status}"),
                retry_after: retry_after(response.headers()),
            });
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(AttemptError::Fatal(format!(
                "the transcription API answered HTTP {status}: {}",
                self.error_excerpt(&text)
            )));
        }
        let answer: Transcription = response.json().await.map_err(|e| {
            AttemptError::Fatal(format!(
                "the transcription API's answer has no text: {}",
                e.without_url()
            ))
        })?;
        Ok(answer.text.trim().to_owned())
    }

    /// [`transcribe_once`](Self::transcribe_once), retried like a model call (connect
    /// errors, 429 and 5xx, `Retry-After` honoured).
    async fn transcribe_with_retries(
        &self,
        content_type: &str,
        body: bytes::Bytes,
    ) -> Result<String, AgentError> {
        let mut attempt = 0;
        loop {
            match self.transcribe_once(content_type, body.clone()).await {
                Ok(text) => return Ok(text),
                Err(AttemptError::Retryable {
                    reason,
                    retry_after,
                }) if attempt < self.settings.max_retries => {
                    let wait = self.backoff(attempt, retry_after);
                    tracing::warn!(%reason, attempt, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "transcription failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(AttemptError::Retryable { reason, .. } | AttemptError::Fatal(reason)) => {
                    return Err(AgentError::Unavailable(reason))
                }
                Err(AttemptError::Stopped) => {
                    return Err(AgentError::Unavailable(
                        "the transcription was stopped".into(),
                    ))
                }
            }
        }
    }
}

#[async_trait]
impl Agent for OpenAiAgent {
    fn provider(&self) -> &'static str {
        "openai"
    }

    async fn title(&self, message: &str, model: Option<&str>) -> Option<String> {
        if !self.settings.titles {
            return None;
        }
        let limit = Duration::from_millis(self.settings.title_timeout_ms);
        let model = model.unwrap_or(&self.settings.model);
        match tokio::time::timeout(limit, self.ask_title(message, model)).await {
            Ok(Ok(title)) => clean_title(&title),
            // The title made from the message stays; nothing the user sees failed.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "no title from the model");
                None
            }
            Err(_) => {
                tracing::debug!("no title from the model in time");
                None
            }
        }
    }

    /// Sends the recording to `{base_url}/audio/transcriptions` with
    /// `agent.openai.transcription_model`, over the same clients as model calls.
    async fn transcribe(&self, audio: bytes::Bytes, mime_type: &str) -> Result<String, AgentError> {
        // The caller checks the size first and answers the user; this keeps a caller that
        // forgot from sending the provider more than it was configured to.
        let size = u64::try_from(audio.len()).unwrap_or(u64::MAX);
        if size > self.settings.max_audio_bytes {
            return Err(AgentError::Unavailable(format!(
                "the recording ({size} bytes) is over agent.openai.max_audio_bytes ({})",
                self.settings.max_audio_bytes
            )));
        }
        let (content_type, body) =
            files::transcription_body(&self.settings.transcription_model, &audio, mime_type);
        drop(audio);
        let total = Duration::from_millis(self.settings.total_timeout_ms);
        tokio::time::timeout(
            total,
            self.transcribe_with_retries(&content_type, body.into()),
        )
        .await
        .map_err(|_| AgentError::Timeout)?
    }

    async fn respond(
        &self,
        request: AgentRequest<'_>,
        tools: &TaskTools,
        events: &EventSink,
    ) -> Result<AgentAnswer, AgentError> {
        let total = Duration::from_millis(self.settings.total_timeout_ms);
        tokio::time::timeout(total, self.run(request, tools, events))
            .await
            .map_err(|_| AgentError::Timeout)?
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn merged(deltas: &[Value]) -> Vec<(Option<String>, String, String)> {
        let mut calls = Vec::new();
        for d in deltas {
            merge_tool_delta(&mut calls, d);
        }
        calls
            .into_iter()
            .map(|c| (c.id, c.name, c.arguments))
            .collect()
    }

    #[test]
    fn tool_call_deltas_merge_with_or_without_index_and_id() {
        // OpenAI: index on every delta, id and name only on the first.
        let openai = merged(&[
            json!({"index": 0, "id": "call_a", "type": "function", "function": {"name": "add_task", "arguments": ""}}),
            json!({"index": 0, "function": {"arguments": "{\"ti"}}),
            json!({"index": 0, "function": {"arguments": "tle\":\"x\"}"}}),
            json!({"index": 1, "id": "call_b", "function": {"name": "list_tasks", "arguments": "{}"}}),
        ]);
        assert_eq!(
            openai,
            vec![
                (
                    Some("call_a".into()),
                    "add_task".into(),
                    "{\"title\":\"x\"}".into()
                ),
                (Some("call_b".into()), "list_tasks".into(), "{}".into()),
            ]
        );
        // No index: ids, then bare continuations, and object arguments.
        let loose = merged(&[
            json!({"id": "c1", "function": {"name": "add_task", "arguments": "{\"title\":"}}),
            json!({"function": {"arguments": "\"y\"}"}}),
            json!({"function": {"name": "list_tasks", "arguments": {"status": "all"}}}),
        ]);
        assert_eq!(
            loose,
            vec![
                (
                    Some("c1".into()),
                    "add_task".into(),
                    "{\"title\":\"y\"}".into()
                ),
                (None, "list_tasks".into(), "{\"status\":\"all\"}".into()),
            ]
        );
    }

    /// (text, number of tool-call deltas, finished) of one chunk, or the error kind.
    fn chunk(data: &str) -> Result<(Option<String>, usize, bool), &'static str> {
        match read_chunk(data) {
            Ok(c) => Ok((c.text.map(Cow::into_owned), c.tool_calls.len(), c.finished)),
            Err(AttemptError::Retryable { .. }) => Err("retryable"),
            Err(AttemptError::Fatal(_)) => Err("fatal"),
            Err(AttemptError::Stopped) => Err("stopped"),
        }
    }

    #[test]
    fn chunks_read_alike_on_the_quick_path_and_the_general_one() {
        let text = |t: &str| Ok((Some(t.to_owned()), 0, false));
        // The quick path: text deltas, with or without a finish.
        assert_eq!(
            chunk(
                r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi \"you\""},"finish_reason":null}]}"#
            ),
            text("Hi \"you\"")
        );
        assert_eq!(
            chunk(r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#),
            Ok((None, 0, true))
        );
        assert_eq!(
            chunk(r#"{"choices":[],"usage":{"total_tokens":3}}"#),
            Ok((None, 0, false))
        );
        assert_eq!(
            chunk(r#"{"usage":{"total_tokens":3}}"#),
            Ok((None, 0, false))
        );
        assert_eq!(
            chunk(
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"list_tasks"}}]}}]}"#
            ),
            Ok((None, 1, false))
        );
        // The general path: `message`, odd types, errors, junk.
        assert_eq!(
            chunk(r#"{"error":null,"choices":[{"delta":{"content":1}}]}"#),
            Ok((None, 0, false))
        );
        assert_eq!(
            chunk(r#"{"choices":[{"delta":{"tool_calls":{"index":0}}}]}"#),
            Ok((None, 0, false))
        );
        assert_eq!(
            chunk(r#"{"choices":[{"message":{"content":"whole"},"finish_reason":"stop"}]}"#),
            Ok((Some("whole".into()), 0, true))
        );
        assert_eq!(
            chunk(r#"{"choices":[{"delta":{"content":["not","text"]}}]}"#),
            Ok((None, 0, false))
        );
        assert_eq!(chunk(r#"{"choices":{"weird":true}}"#), Ok((None, 0, false)));
        assert_eq!(
            chunk(r#"{"error":{"message":"overloaded"}}"#),
            Err("retryable")
        );
        assert_eq!(chunk("not json"), Err("fatal"));
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
