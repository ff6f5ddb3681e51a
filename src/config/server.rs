//! How the gateway listens and answers: the listener, where the REST API and the ChatKit
//! endpoint are served, the stream keep-alive and the log format.

use serde::Deserialize;

use super::{check_ranges, setting_names, SEC_DAY};

/// Where the REST API is served unless `server.api_prefix` says otherwise.
pub const DEFAULT_API_PREFIX: &str = "/api/chatkit";

/// The liveness and readiness probes.
pub const HEALTH_PATHS: [&str; 2] = ["/healthz", "/readyz"];
/// Swagger UI.
pub const DOCS_PATH: &str = "/docs";
/// The OpenAPI document.
pub const SPEC_PATH: &str = "/openapi.json";

/// Paths served at the root whatever the API prefix (besides `chatkit.path`), which the
/// prefix must not shadow.
// The health routes' paths are poem-openapi attribute literals, which cannot name a
// constant, so this is their one other spelling: `tests/api/prefix.rs` checks that the
// gateway serves exactly these, with the document's root paths equal to HEALTH_PATHS.
pub const ROOT_PATHS: [&str; 4] = [HEALTH_PATHS[0], HEALTH_PATHS[1], DOCS_PATH, SPEC_PATH];

#[derive(Clone, Debug, Deserialize)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub body_limit_bytes: usize,
    pub cors_allowed_origins: Vec<String>,
    pub shutdown_grace_secs: u64,
    /// A connection must deliver a request's head (line and headers) within this long of
    /// its first byte (of being accepted, for the first request); else it is closed.
    pub header_read_timeout_secs: u64,
    /// A request's whole body must arrive within this long of its head (408 otherwise).
    pub body_read_timeout_secs: u64,
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout_secs: u64,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: u32,
    /// `host:port` of the Prometheus `/metrics` listener; none (the default) serves no
    /// metrics. A separate listener so that metrics are never public by accident.
    #[serde(default)]
    pub metrics_addr: Option<String>,
    /// Where the REST API is served (`/api/chatkit`): a path starting with `/`, without a
    /// trailing `/`. The health routes, `/docs`, `/openapi.json` and the ChatKit endpoint
    /// keep their own paths.
    #[serde(default = "default_api_prefix")]
    pub api_prefix: String,
}

fn default_api_prefix() -> String {
    DEFAULT_API_PREFIX.into()
}

impl ServerSettings {
    /// Every out-of-range value, and the API prefix against the routes served at the root
    /// and the ChatKit endpoint at `chatkit_path`.
    pub(super) fn check(&self, chatkit_path: &str, problems: &mut Vec<String>) {
        check_ranges(
            &[
                (
                    "server.body_limit_bytes",
                    self.body_limit_bytes as u64,
                    1,
                    64 << 20,
                ),
                (
                    "server.shutdown_grace_secs",
                    self.shutdown_grace_secs,
                    0,
                    3_600,
                ),
                (
                    "server.header_read_timeout_secs",
                    self.header_read_timeout_secs,
                    1,
                    300,
                ),
                (
                    "server.body_read_timeout_secs",
                    self.body_read_timeout_secs,
                    1,
                    3_600,
                ),
                (
                    "server.idle_timeout_secs",
                    self.idle_timeout_secs,
                    1,
                    SEC_DAY,
                ),
                (
                    "server.max_connections",
                    self.max_connections.into(),
                    1,
                    1_000_000,
                ),
            ],
            problems,
        );
        check_api_prefix(&self.api_prefix, chatkit_path, problems);
    }
}

/// Refuses an API prefix that is not a plain absolute path, or that would take over a
/// route served at the root (each such route is named).
pub(super) fn check_api_prefix(prefix: &str, chatkit_path: &str, problems: &mut Vec<String>) {
    let name = setting_names("server.api_prefix");
    let plain = prefix.len() > 1
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && !prefix.contains("//")
        && !prefix.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '{' | '}' | '*' | ':')
        });
    if !plain {
        problems.push(format!(
            "{name} = {prefix:?} must be a path starting with '/', without a trailing '/', \
             whitespace or any of ?#{{}}*: (for example \"/api/chatkit\")"
        ));
        return;
    }
    let under = |path: &str, root: &str| {
        path == root
            || path
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    for root in ROOT_PATHS.iter().copied().chain([chatkit_path]) {
        if under(prefix, root) || under(root, prefix) {
            problems.push(format!(
                "{name} = {prefix:?} overlaps {root}, which is served outside the API prefix"
            ));
        }
    }
}

/// The ChatKit protocol endpoint.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatKitSettings {
    /// Where `POST` speaks the protocol: the widget's `api.url`.
    pub path: String,
    /// Tools the client page runs (`[[chatkit.client_tools]]`), offered to the model on
    /// ChatKit turns; a call ends the turn until the page sends its output.
    #[serde(default)]
    pub client_tools: Vec<ClientToolSettings>,
}

/// One client tool: what the model is told about it.
#[derive(Clone, Debug, Deserialize)]
pub struct ClientToolSettings {
    pub name: String,
    pub description: String,
    /// A JSON Schema object for the arguments.
    #[serde(default = "empty_object_schema")]
    pub parameters: serde_json::Value,
}

fn empty_object_schema() -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": {}})
}

impl Default for ChatKitSettings {
    fn default() -> Self {
        Self {
            path: "/chatkit".into(),
            client_tools: Vec::new(),
        }
    }
}

/// Names the built-in tools take, and the agent's own question tool: a client tool may
/// not shadow them.
const RESERVED_TOOL_NAMES: [&str; 6] = [
    "add_task",
    "list_tasks",
    "complete_task",
    "delete_task",
    "update_task",
    "ask_user",
];

impl ChatKitSettings {
    /// Client tools a model can call: names as models take them, unique, not a built-in
    /// tool's, with a description and an object schema.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        let mut seen = std::collections::HashSet::new();
        for tool in &self.client_tools {
            let what = format!("chatkit.client_tools {:?}", tool.name);
            let plain = (1..=64).contains(&tool.name.len())
                && tool
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !plain {
                problems.push(format!(
                    "{what}: the name must be 1 to 64 letters, digits, '_' or '-'"
                ));
            }
            if RESERVED_TOOL_NAMES.contains(&tool.name.as_str()) {
                problems.push(format!("{what}: the name is a built-in tool's"));
            }
            if !seen.insert(tool.name.as_str()) {
                problems.push(format!("{what} is declared twice"));
            }
            if tool.description.trim().is_empty() {
                problems.push(format!("{what}: give a description (the model reads it)"));
            }
            if tool.parameters.get("type").and_then(|t| t.as_str()) != Some("object") {
                problems.push(format!(
                    "{what}: parameters must be a JSON Schema object ({{\"type\": \"object\", ...}})"
                ));
            }
        }
    }
}

/// Server-sent event streams.
#[derive(Clone, Debug, Deserialize)]
pub struct StreamSettings {
    pub keep_alive_secs: u64,
}

impl StreamSettings {
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        check_ranges(
            &[("stream.keep_alive_secs", self.keep_alive_secs, 1, 3_600)],
            problems,
        );
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn problems(edit: impl FnOnce(&mut ServerSettings)) -> Vec<String> {
        let mut server = Settings::defaults().server;
        edit(&mut server);
        let mut problems = Vec::new();
        server.check("/chatkit", &mut problems);
        problems
    }

    #[test]
    fn the_server_section_reports_each_out_of_range_value() {
        assert!(problems(|_| {}).is_empty());
        let found = problems(|s| {
            s.body_limit_bytes = 0;
            s.header_read_timeout_secs = 301;
            s.max_connections = 0;
        });
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("server.body_limit_bytes"), "{found:?}");
        assert!(
            found[1].contains("must be between 1 and 300, got 301"),
            "{found:?}"
        );
        assert!(
            found[2].contains("GATEWAY__SERVER__MAX_CONNECTIONS"),
            "{found:?}"
        );
    }

    #[test]
    fn the_server_section_checks_the_prefix_with_its_ranges() {
        let found = problems(|s| {
            s.idle_timeout_secs = 0;
            s.api_prefix = "/healthz/v1".into();
        });
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[1].contains("overlaps /healthz"), "{found:?}");
    }

    #[test]
    fn a_prefix_is_a_plain_path_apart_from_every_root_route() {
        let check = |prefix: &str, chatkit: &str| {
            let mut found = Vec::new();
            check_api_prefix(prefix, chatkit, &mut found);
            found
        };
        assert!(check(DEFAULT_API_PREFIX, "/chatkit").is_empty());
        assert!(check("/docsy", "/chatkit").is_empty());
        let found = check("/api/", "/chatkit");
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("without a trailing '/'"), "{found:?}");
        for root in ROOT_PATHS {
            let found = check(root, "/chatkit");
            assert!(found[0].contains(&format!("overlaps {root},")), "{found:?}");
        }
        // Every route it overlaps is named: here the docs and a ChatKit endpoint under them.
        let found = check("/docs", "/docs/chatkit");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[1].contains("overlaps /docs/chatkit"), "{found:?}");
    }

    #[test]
    fn the_stream_section_reports_a_zero_keep_alive() {
        let mut found = Vec::new();
        StreamSettings { keep_alive_secs: 0 }.check(&mut found);
        assert_eq!(
            found,
            ["stream.keep_alive_secs (GATEWAY__STREAM__KEEP_ALIVE_SECS) must be between 1 and 3600, got 0"]
        );
    }
}
