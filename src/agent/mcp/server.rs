//! One MCP server: its supervisor (connect, list, re-list, reconnect with backoff), its
//! state for `/readyz`, and the calls made on its current link.

use std::{collections::HashMap, sync::Arc, time::Duration};

use reqwest_mcp::header::{HeaderName, HeaderValue};
use rmcp::{
    model::{
        CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
        RequestMetaObject, Tool,
    },
    service::RunningService,
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
    ClientHandler, RoleClient, ServiceError, ServiceExt,
};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use super::{
    http::{IdentityHttpClient, USER_META_KEY},
    identity::IdentityMinter,
    LinkFailure,
};
use crate::config::McpServerSettings;

/// Connecting and listing must finish within this, or the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a turn waits for a down server's prompt reconnect before giving up.
const TURN_CONNECT_WAIT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(15);
/// How often a live link is checked for having closed.
const LINK_CHECK: Duration = Duration::from_secs(1);

/// Tells the supervisor when the server's tool list changed.
pub struct Handler {
    relist: Arc<Notify>,
}

impl ClientHandler for Handler {
    /// Names the gateway in `initialize`, so the server's logs say who connected.
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("chatkit-gateway", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.relist.notify_one();
    }
}

type Client = RunningService<RoleClient, Handler>;

/// A live session with the server.
pub type Link = Arc<Client>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    Connecting,
    Ready,
    Down(String),
}

#[derive(Clone)]
struct State {
    status: Status,
    tools: Arc<Vec<Tool>>,
    link: Option<Link>,
    /// Counts finished connection attempts, so a waiting turn sees its attempt end.
    attempts: u64,
}

/// A server's state as `/readyz` shows it.
pub struct ServerReport {
    pub name: String,
    /// `connecting`, `ready` or `down`.
    pub state: &'static str,
    /// Tools offered (after the allow-list); the last known list while down.
    pub tools: usize,
    pub error: Option<String>,
}

pub struct McpServer {
    settings: McpServerSettings,
    http: IdentityHttpClient,
    headers: HashMap<HeaderName, HeaderValue>,
    state: watch::Sender<State>,
    relist: Arc<Notify>,
    wake: Notify,
}

impl McpServer {
    /// The server, with its supervisor running (until the returned handle aborts it).
    pub fn spawn(
        settings: McpServerSettings,
        issuer: &str,
    ) -> (Arc<Self>, tokio::task::AbortHandle) {
        let minter = IdentityMinter::new(
            settings.identity_secret.expose_secret().as_bytes(),
            issuer,
            &settings.name,
        );
        let client = reqwest_mcp::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("chatkit-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with timeouts builds");
        // Configuration validated the names and values.
        let headers = settings
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.parse().ok()?)))
            .collect();
        let (state, _) = watch::channel(State {
            status: Status::Connecting,
            tools: Arc::default(),
            link: None,
            attempts: 0,
        });
        let server = Arc::new(Self {
            http: IdentityHttpClient::new(client, Arc::new(minter)),
            settings,
            headers,
            state,
            relist: Arc::default(),
            wake: Notify::new(),
        });
        let task = tokio::spawn(server.clone().supervise());
        (server, task.abort_handle())
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn report(&self) -> ServerReport {
        let state = self.state.borrow();
        let (label, error) = match &state.status {
            Status::Connecting => ("connecting", None),
            Status::Ready => ("ready", None),
            Status::Down(e) => ("down", Some(e.clone())),
        };
        ServerReport {
            name: self.settings.name.clone(),
            state: label,
            tools: state.tools.len(),
            error,
        }
    }

    /// The live link and its tools; a server that is not ready gets one prompt reconnect
    /// attempt (skipping the backoff) before the turn gives up on it.
    pub async fn ready(&self) -> Result<(Link, Arc<Vec<Tool>>), LinkFailure> {
        let mut rx = self.state.subscribe();
        let start = rx.borrow().attempts;
        let ready = |s: &State| s.status == Status::Ready && s.link.is_some();
        if !ready(&rx.borrow()) {
            self.wake.notify_one();
            let _ = tokio::time::timeout(
                TURN_CONNECT_WAIT,
                rx.wait_for(|s| ready(s) || s.attempts > start),
            )
            .await;
        }
        let state = rx.borrow().clone();
        match (&state.status, state.link) {
            (Status::Ready, Some(link)) => Ok((link, state.tools)),
            (Status::Down(e), _) => Err(self.unavailable(e)),
            _ => Err(self.unavailable("still connecting")),
        }
    }

    fn unavailable(&self, why: &str) -> LinkFailure {
        LinkFailure(format!(
            "the tool server {:?} is unavailable: {why}",
            self.settings.name
        ))
    }

    /// Calls `tool` on `link` for `user`, within the server's timeout.
    pub async fn call(
        &self,
        link: &Link,
        tool: &str,
        user: &str,
        args: serde_json::Map<String, Value>,
    ) -> Result<Value, LinkFailure> {
        let mut meta = RequestMetaObject::new();
        meta.0 .0.insert(USER_META_KEY.into(), json!(user));
        let mut params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
        params.meta = Some(meta);
        let limit = Duration::from_secs(self.settings.timeout_secs);
        // Dropping the call on timeout cancels it on the server (the SDK sends
        // notifications/cancelled), and the model hears that it timed out.
        match tokio::time::timeout(limit, link.call_tool(params)).await {
            Err(_) => Ok(json!({"error": format!(
                "the tool {tool:?} did not answer within {} s",
                self.settings.timeout_secs
            )})),
            Ok(Ok(result)) => Ok(result_json(result)),
            Ok(Err(ServiceError::McpError(e))) => {
                Ok(json!({"error": format!("the tool server refused the call: {}", e.message)}))
            }
            Ok(Err(e @ (ServiceError::TransportSend(_) | ServiceError::TransportClosed))) => {
                let why = e.to_string();
                self.link_failed(link, &why);
                Err(LinkFailure(format!(
                    "the tool server {:?} failed during the call: {why}",
                    self.settings.name
                )))
            }
            Ok(Err(e)) => Ok(json!({"error": e.to_string()})),
        }
    }

    /// Marks the server down (if `link` is still the current one) and wakes the supervisor.
    fn link_failed(&self, link: &Link, why: &str) {
        let replaced = self.state.send_if_modified(|s| {
            let current = s.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, link));
            if current {
                s.status = Status::Down(why.to_owned());
                s.link = None;
            }
            current
        });
        if replaced {
            tracing::warn!(server = %self.settings.name, error = %why, "MCP link failed");
            self.wake.notify_one();
        }
    }

    async fn supervise(self: Arc<Self>) {
        let mut failures = 0u32;
        loop {
            match self.connect().await {
                Ok((client, tools)) => {
                    failures = 0;
                    let link: Link = Arc::new(client);
                    tracing::info!(server = %self.settings.name, tools = tools.len(), "MCP server ready");
                    self.state.send_modify(|s| {
                        s.status = Status::Ready;
                        s.tools = Arc::new(tools);
                        s.link = Some(link.clone());
                        s.attempts += 1;
                    });
                    self.watch(&link).await;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(server = %self.settings.name, error = %e, failures, "MCP server unreachable");
                    self.state.send_modify(|s| {
                        s.status = Status::Down(e);
                        s.link = None;
                        s.attempts += 1;
                    });
                }
            }
            let wait = BACKOFF_MIN
                .saturating_mul(1 << failures.min(8))
                .min(BACKOFF_MAX);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Keeps the tool list current while `link` lives; returns once it has failed.
    async fn watch(&self, link: &Link) {
        loop {
            tokio::select! {
                _ = self.relist.notified() => match self.list(link).await {
                    Ok(tools) => {
                        tracing::info!(server = %self.settings.name, tools = tools.len(), "MCP tool list changed");
                        self.state.send_modify(|s| s.tools = Arc::new(tools));
                    }
                    Err(e) => return self.link_failed(link, &e),
                },
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(LINK_CHECK) => {
                    if link.is_closed() {
                        return self.link_failed(link, "the connection closed");
                    }
                }
            }
            let current = self
                .state
                .borrow()
                .link
                .as_ref()
                .is_some_and(|l| Arc::ptr_eq(l, link));
            if !current {
                return;
            }
        }
    }

    async fn connect(&self) -> Result<(Client, Vec<Tool>), String> {
        let config = StreamableHttpClientTransportConfig::with_uri(self.settings.url.as_str())
            .custom_headers(self.headers.clone())
            .reinit_on_expired_session(true);
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        let handler = Handler {
            relist: self.relist.clone(),
        };
        let attempt = async {
            let client = handler
                .serve(transport)
                .await
                .map_err(|e| format!("could not initialise: {e}"))?;
            let tools = self.list(&client).await?;
            Ok((client, tools))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .map_err(|_| "timed out connecting".to_owned())?
    }

    /// The server's tools, narrowed to the allow-list when there is one.
    async fn list(&self, client: &Client) -> Result<Vec<Tool>, String> {
        let mut tools = client
            .list_all_tools()
            .await
            .map_err(|e| format!("could not list tools: {e}"))?;
        if let Some(allowed) = &self.settings.tools {
            tools.retain(|t| allowed.iter().any(|a| a == t.name.as_ref()));
        }
        Ok(tools)
    }
}

/// A tool result as the model reads it (and as it is recorded): an error as
/// `{"error": text}`, structured content as given, else the text (as JSON when it is).
fn result_json(result: CallToolResult) -> Value {
    let text: Vec<&str> = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect();
    let text = text.join("\n");
    if result.is_error == Some(true) {
        let message = if text.is_empty() {
            "the tool failed".to_owned()
        } else {
            text
        };
        return json!({"error": message});
    }
    if let Some(structured) = result.structured_content {
        return structured;
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(v) if v.is_object() => v,
        _ => json!({"text": text}),
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::ContentBlock;

    use super::*;

    #[test]
    fn tool_results_read_as_the_model_sees_them() {
        let structured = CallToolResult::structured(json!({"tasks": []}));
        assert_eq!(result_json(structured), json!({"tasks": []}));
        let json_text = CallToolResult::success(vec![ContentBlock::text("{\"total\": 2}")]);
        assert_eq!(result_json(json_text), json!({"total": 2}));
        let plain = CallToolResult::success(vec![
            ContentBlock::text("two tasks"),
            ContentBlock::text("both pending"),
        ]);
        assert_eq!(
            result_json(plain),
            json!({"text": "two tasks\nboth pending"})
        );
        let failed = CallToolResult::error(vec![ContentBlock::text("task 9 not found")]);
        assert_eq!(result_json(failed), json!({"error": "task 9 not found"}));
        let silent = CallToolResult::error(vec![]);
        assert_eq!(result_json(silent), json!({"error": "the tool failed"}));
    }
}
