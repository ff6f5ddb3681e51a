//! Tools from the app's MCP servers, reached with the official SDK (`rmcp`)
//! over streamable HTTP.
//!
//! Each configured server has a supervisor task ([`server`]) that connects at start-up
//! (without delaying it), lists the tools, re-lists them on `tools/list_changed`, and
//! reconnects with backoff when the link fails. A turn takes a snapshot of the tools
//! ([`McpHub::turn_tools`]); each call carries a fresh identity token for the turn's user
//! ([`identity`], put on the request by [`http`]).

mod http;
mod identity;
mod server;

use std::{collections::HashMap, sync::Arc};

use rmcp::model::Tool;
use serde_json::Value;

pub use identity::{IdentityMinter, IDENTITY_TTL_SECS};
use server::McpServer;
pub use server::ServerReport;

use crate::config::McpServerSettings;

/// Every configured MCP server; cheap to clone. The supervisors stop (closing their
/// sessions) when the last clone is dropped.
#[derive(Clone)]
pub struct McpHub {
    servers: Arc<Vec<Arc<McpServer>>>,
    _supervisors: Arc<Supervisors>,
}

struct Supervisors(Vec<tokio::task::AbortHandle>);

impl Drop for Supervisors {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// What a model accepts as a function name: `[A-Za-z0-9_-]{1,64}`. Other characters
/// (MCP allows dots and slashes) become `_`.
fn function_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        name.push('_');
    }
    name
}

/// One tool offered to the model this turn.
pub struct OfferedTool {
    /// The name the model calls it by: the server's own name, or `server__name` when two
    /// sources offer the same name.
    pub name: String,
    server: Arc<McpServer>,
    link: server::Link,
    tool: Tool,
}

impl OfferedTool {
    /// The tool's name on its server.
    pub fn original_name(&self) -> &str {
        &self.tool.name
    }

    /// The server the tool comes from.
    pub fn server_name(&self) -> &str {
        self.server.name()
    }

    /// The top-level argument names the tool's input schema declares.
    pub fn parameter_names(&self) -> Vec<&str> {
        self.tool
            .input_schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The OpenAI function definition as JSON text, the input schema passed through as the
    /// server gave it (written from the tool as it is, no copy of the schema).
    pub fn definition_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Function<'a> {
            name: &'a str,
            description: &'a str,
            parameters: &'a serde_json::Map<String, Value>,
        }
        #[derive(serde::Serialize)]
        struct Definition<'a> {
            r#type: &'static str,
            function: Function<'a>,
        }
        serde_json::to_string(&Definition {
            r#type: "function",
            function: Function {
                name: &self.name,
                description: self.tool.description.as_deref().unwrap_or_default(),
                parameters: &self.tool.input_schema,
            },
        })
        .unwrap_or_default()
    }
}

/// The MCP tools of one turn.
#[derive(Default)]
pub struct TurnTools {
    tools: Vec<OfferedTool>,
}

/// Why an MCP call could not even be made: the link to the server failed. Unlike a tool's
/// own error, this ends the turn (the user's message is kept).
#[derive(Debug)]
pub struct LinkFailure(pub String);

impl TurnTools {
    pub fn tools(&self) -> &[OfferedTool] {
        &self.tools
    }

    /// The tool the model knows by `name`.
    pub fn find(&self, name: &str) -> Option<&OfferedTool> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// Calls `tool` for `user`. Tool errors, MCP errors and timeouts are results the model
    /// reads (`{"error": ...}`); only a failed link is an error.
    pub async fn call(
        &self,
        tool: &OfferedTool,
        user: &str,
        args: serde_json::Map<String, Value>,
    ) -> Result<Value, LinkFailure> {
        tool.server
            .call(&tool.link, &tool.tool.name, user, args)
            .await
    }
}

impl McpHub {
    /// Starts a supervisor for each server (none: `None`). Needs a Tokio runtime.
    #[must_use]
    pub fn start(servers: &[McpServerSettings], issuer: &str) -> Option<Self> {
        if servers.is_empty() {
            return None;
        }
        // reqwest 0.13 (the SDK's) takes TLS from rustls' process-wide provider; ring is
        // the one reqwest 0.12 already builds. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (servers, tasks) = servers
            .iter()
            .map(|s| McpServer::spawn(s.clone(), issuer))
            .unzip();
        Some(Self {
            servers: Arc::new(servers),
            _supervisors: Arc::new(Supervisors(tasks)),
        })
    }

    /// Each server's state, for `/readyz`.
    #[must_use]
    pub fn report(&self) -> Vec<ServerReport> {
        self.servers.iter().map(|s| s.report()).collect()
    }

    /// The tools this turn may use: every server must be reachable (a down server gets
    /// one prompt reconnect attempt first). Names in `reserved` (the built-in tools, when
    /// offered) and names two servers share are prefixed by the server's name.
    pub async fn turn_tools(&self, reserved: &[&str]) -> Result<TurnTools, LinkFailure> {
        let mut gathered = Vec::new();
        for server in self.servers.iter() {
            let (link, tools) = server.ready().await?;
            gathered.extend(
                tools
                    .iter()
                    .map(|t| (server.clone(), link.clone(), t.clone())),
            );
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (_, _, t) in &gathered {
            *seen.entry(function_name(&t.name)).or_default() += 1;
        }
        let tools = gathered
            .into_iter()
            .map(|(server, link, tool)| {
                let plain = function_name(&tool.name);
                let clash = seen[&plain] > 1 || reserved.contains(&plain.as_str());
                let name = if clash {
                    function_name(&format!("{}__{}", server.name(), tool.name))
                } else {
                    plain
                };
                OfferedTool {
                    name,
                    server,
                    link,
                    tool,
                }
            })
            .collect();
        Ok(TurnTools { tools })
    }
}

#[cfg(test)]
mod tests {
    use super::function_name;

    #[test]
    fn tool_names_become_names_a_model_accepts() {
        assert_eq!(function_name("add_task"), "add_task");
        assert_eq!(function_name("tasks.add/v2"), "tasks_add_v2");
        assert_eq!(function_name(""), "_");
        assert_eq!(function_name(&"x".repeat(80)).len(), 64);
    }
}
