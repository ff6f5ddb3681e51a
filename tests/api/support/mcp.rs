//! The REAL MCP server of the MCP tests: the official Python SDK's FastMCP serving a todo
//! app's tools (tests/mcp/todo_server.py), which verifies the gateway's identity token on
//! every request and keeps tasks per `sub`. It runs from the venv tests/mcp/setup.sh
//! creates (or `MCP_TEST_PYTHON`).

use std::process::{Child, Command, Stdio};

use chatkit_gateway::config::McpServerSettings;
use serde_json::Value;

use super::{app::free_port, fixtures, wait::eventually};

/// The secret the server and the gateway share for the identity tokens.
pub const SECRET: &str = "mcp-identity-secret-for-the-tests-Zq8#kW2!";

/// A running server; killed when dropped.
pub struct TodoServer {
    port: u16,
    pub name: &'static str,
    child: Option<Child>,
}

impl TodoServer {
    /// A server named `app`.
    pub async fn start() -> Self {
        Self::start_named("app").await
    }

    /// A server expecting tokens for `aud` = `name`.
    pub async fn start_named(name: &'static str) -> Self {
        let mut s = Self {
            port: free_port(),
            name,
            child: None,
        };
        s.restart().await;
        s
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// The gateway's settings for this server.
    pub fn settings(&self) -> McpServerSettings {
        McpServerSettings {
            name: self.name.into(),
            url: self.url(),
            identity_secret: SECRET.to_owned().into(),
            headers: [("x-app-version".to_owned(), "1".to_owned())].into(),
            tools: None,
            timeout_secs: 2,
        }
    }

    /// Starts the process (again, on the same port), and returns once it answers.
    pub async fn restart(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/todo_server.py");
        let child = Command::new(fixtures::mcp_python())
            .args([script, "--port", &self.port.to_string(), "--secret", SECRET])
            .args(["--name", self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the MCP test server starts");
        self.child = Some(child);
        eventually("the MCP test server coming up", || self.identities()).await;
    }

    /// Kills the process.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn identities(&self) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}/debug/identities", self.port);
        reqwest::get(url).await.ok()?.json().await.ok()
    }

    /// The verified identities of the tool calls the server has seen.
    pub async fn calls(&self) -> Vec<Value> {
        self.identities().await.unwrap()["calls"]
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Drop for TodoServer {
    fn drop(&mut self) {
        self.stop();
    }
}
