//! The agent that answers messages: which provider, how model calls reach it, and the
//! app's MCP servers whose tools it may call.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{
    auth::{weak_secret, DEV_SECRET_MARKER},
    check_ranges, setting_names, AppEnv,
};

#[derive(Clone, Debug, Deserialize)]
pub struct AgentSettings {
    pub provider: AgentProvider,
    pub system_prompt_file: String,
    pub openai: OpenAiSettings,
    /// The app's MCP servers (`[[agent.mcp_servers]]`, or the `MCP_SERVER_*` variables).
    #[serde(default)]
    pub mcp_servers: Vec<McpServerSettings>,
    /// Whether the built-in task tools stay offered; unset means "only when no MCP server
    /// is configured". Read it through [`AgentSettings::builtin_tools_enabled`].
    #[serde(default)]
    pub builtin_tools: Option<bool>,
    /// The one-server shorthand the `MCP_SERVER_*` variables fill; folded into
    /// `mcp_servers` on load.
    #[serde(default)]
    mcp: McpShorthand,
}

/// How model calls reach the provider (`agent.openai.http2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Http2Setting")]
pub enum Http2Mode {
    /// HTTP/2 where TLS negotiates it: over `https` ALPN offers `h2` and `http/1.1` and the
    /// server picks (a server without h2 gets HTTP/1.1); over `http`, HTTP/1.1.
    Auto,
    /// HTTP/2 only: ALPN `h2` over `https`, prior knowledge (h2c) over `http`.
    Always,
    /// HTTP/1.1 only.
    Never,
}

/// `agent.openai.http2` as written: a name, or a boolean (`true` was `always` and `false`
/// `never` before `auto` existed, and still are).
#[derive(Deserialize)]
#[serde(untagged)]
enum Http2Setting {
    Flag(bool),
    Name(String),
}

impl TryFrom<Http2Setting> for Http2Mode {
    type Error = String;

    fn try_from(value: Http2Setting) -> Result<Self, Self::Error> {
        match value {
            Http2Setting::Flag(true) => Ok(Self::Always),
            Http2Setting::Flag(false) => Ok(Self::Never),
            Http2Setting::Name(name) => match name.to_ascii_lowercase().as_str() {
                "auto" => Ok(Self::Auto),
                "always" | "true" => Ok(Self::Always),
                "never" | "false" => Ok(Self::Never),
                _ => Err(format!(
                    "agent.openai.http2 = {name:?}: use \"auto\", \"always\" or \"never\""
                )),
            },
        }
    }
}

/// Which agent answers messages (`agent.provider`, `AGENT_PROVIDER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AgentProvider {
    /// The built-in offline task assistant.
    Local,
    /// Any OpenAI-compatible Chat Completions API (`agent.openai`).
    OpenAi,
}

impl AgentProvider {
    /// The name configuration uses for it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::OpenAi => "openai",
        }
    }
}

impl TryFrom<String> for AgentProvider {
    type Error = String;

    // The message names the public variable, since that is what an operator set.
    fn try_from(name: String) -> Result<Self, Self::Error> {
        match name.as_str() {
            "local" => Ok(Self::Local),
            "openai" => Ok(Self::OpenAi),
            other => Err(format!(
                "agent.provider (AGENT_PROVIDER) = {other:?} is not a known provider; use \"local\" or \"openai\""
            )),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct OpenAiSettings {
    pub base_url: String,
    pub api_key: SecretString,
    pub model: String,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub connect_timeout_ms: u64,
    /// Whether model calls go over HTTP/2 (many streams per connection) or HTTP/1.1.
    pub http2: Http2Mode,
    /// Over HTTP/2: streams carried at once by one connection before another is opened.
    pub http2_streams_per_connection: u32,
    /// A PEM file of certificate authorities trusted for the provider's TLS certificate,
    /// besides the built-in web roots (a self-hosted server with a private CA).
    #[serde(default)]
    pub ca_file: Option<String>,
    pub first_token_timeout_ms: u64,
    pub total_timeout_ms: u64,
    pub max_tool_steps: u32,
    pub max_retries: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// The models the ChatKit composer may pick (`inference_options.model`); empty means
    /// `model` alone. The first turn's model need not be among them: `model` always is.
    #[serde(default)]
    pub models: Vec<String>,
    /// After a new thread's first turn, ask the model for a short title (one bounded call).
    #[serde(default = "default_titles")]
    pub titles: bool,
    /// How long that title call may take before the fallback title stays.
    #[serde(default = "default_title_timeout_ms")]
    pub title_timeout_ms: u64,
    /// The model `{base_url}/audio/transcriptions` is asked to transcribe dictation with.
    #[serde(default = "default_transcription_model")]
    pub transcription_model: String,
    /// The largest dictation (decoded audio bytes) sent for transcription.
    #[serde(default = "default_max_audio_bytes")]
    pub max_audio_bytes: u64,
    /// The largest attached image sent to the model (as a base64 `data:` URL, a third
    /// larger); a larger one is left out with a note saying so.
    #[serde(default = "default_max_image_bytes")]
    pub max_image_bytes: u64,
    /// The most of an attached text file (UTF-8 bytes) sent to the model; the rest is cut
    /// with a note.
    #[serde(default = "default_max_text_bytes")]
    pub max_text_bytes: u64,
}

/// Well under OpenAI's 20 MB per image, and a request of a few of them stays small.
fn default_max_image_bytes() -> u64 {
    4 * 1024 * 1024
}

/// About 16,000 tokens of English: a long list, a fraction of a model's context.
fn default_max_text_bytes() -> u64 {
    64 * 1024
}

fn default_transcription_model() -> String {
    "gpt-4o-mini-transcribe".into()
}

/// OpenAI's own limit for one transcription upload.
fn default_max_audio_bytes() -> u64 {
    25 * 1024 * 1024
}

fn default_titles() -> bool {
    true
}

fn default_title_timeout_ms() -> u64 {
    5000
}

impl OpenAiSettings {
    /// The models a turn may ask for: `models`, with `model` always among them.
    #[must_use]
    pub fn allowed_models(&self) -> Vec<String> {
        let mut all = vec![self.model.clone()];
        // "a, b" in the variable: the spaces are not part of the names.
        all.extend(
            self.models
                .iter()
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty() && *m != self.model),
        );
        all
    }

    /// Every out-of-range value (in every provider's settings, as before the provider was
    /// chosen), and what the `openai` provider needs to reach a model.
    fn check(&self, provider: AgentProvider, problems: &mut Vec<String>) {
        check_ranges(
            &[
                (
                    "agent.openai.max_tokens",
                    self.max_tokens.unwrap_or(1).into(),
                    1,
                    1_000_000,
                ),
                (
                    "agent.openai.connect_timeout_ms",
                    self.connect_timeout_ms,
                    1,
                    600_000,
                ),
                (
                    "agent.openai.http2_streams_per_connection",
                    self.http2_streams_per_connection.into(),
                    1,
                    10_000,
                ),
                (
                    "agent.openai.first_token_timeout_ms",
                    self.first_token_timeout_ms,
                    1,
                    3_600_000,
                ),
                (
                    "agent.openai.total_timeout_ms",
                    self.total_timeout_ms,
                    1,
                    3_600_000,
                ),
                // The one check of max_tool_steps: at least 1 for every provider.
                (
                    "agent.openai.max_tool_steps",
                    self.max_tool_steps.into(),
                    1,
                    100,
                ),
                ("agent.openai.max_retries", self.max_retries.into(), 0, 20),
                ("agent.openai.retry_base_ms", self.retry_base_ms, 0, 600_000),
                (
                    "agent.openai.retry_max_ms",
                    self.retry_max_ms,
                    self.retry_base_ms,
                    3_600_000,
                ),
                (
                    "agent.openai.title_timeout_ms",
                    self.title_timeout_ms,
                    1,
                    60_000,
                ),
                (
                    "agent.openai.max_audio_bytes",
                    self.max_audio_bytes,
                    1024,
                    100 * 1024 * 1024,
                ),
                (
                    "agent.openai.max_image_bytes",
                    self.max_image_bytes,
                    1024,
                    20 * 1024 * 1024,
                ),
                (
                    "agent.openai.max_text_bytes",
                    self.max_text_bytes,
                    256,
                    1024 * 1024,
                ),
            ],
            problems,
        );
        if let Some(bad) = self
            .models
            .iter()
            .find(|m| m.trim().is_empty() || m.len() > 128 || m.chars().any(char::is_control))
        {
            problems.push(format!(
                "{} names a model {bad:?} that is empty, over 128 bytes or has control characters",
                setting_names("agent.openai.models")
            ));
        }
        if let Some(t) = self.temperature {
            if !(0.0..=2.0).contains(&t) {
                problems.push(format!(
                    "{} must be between 0 and 2, got {t}",
                    setting_names("agent.openai.temperature")
                ));
            }
        }
        if provider != AgentProvider::OpenAi {
            return;
        }
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            problems.push(format!(
                "OPENAI_BASE_URL {:?} must be an http(s) URL",
                self.base_url
            ));
        }
        if self.model.trim().is_empty() {
            problems.push("OPENAI_MODEL must name a model".into());
        }
        if self.transcription_model.trim().is_empty() {
            problems.push(format!(
                "{} must name a model",
                setting_names("agent.openai.transcription_model")
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------
// MCP servers: the app's own tools, reached over streamable HTTP.
// ---------------------------------------------------------------------------------------

/// One MCP server the agent takes tools from (`[[agent.mcp_servers]]`).
#[derive(Clone, Debug, Deserialize)]
pub struct McpServerSettings {
    /// Short name: the identity token's `aud`, `/readyz`'s key and the prefix that keeps
    /// colliding tool names apart.
    pub name: String,
    /// The streamable-HTTP endpoint, e.g. `http://127.0.0.1:8000/mcp`.
    pub url: String,
    /// The HS256 key identity tokens for this server are signed with (shared with it).
    #[serde(default = "empty_secret")]
    pub identity_secret: SecretString,
    /// Static headers sent with every request (never `Authorization`: that is the identity).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// When set, only these of the server's tools are offered.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// How long one tool call may take before the model is told it timed out.
    #[serde(default = "default_mcp_timeout_secs")]
    pub timeout_secs: u64,
}

/// `MCP_SERVER_URL` / `MCP_SERVER_NAME` / `MCP_IDENTITY_SECRET`.
#[derive(Clone, Debug, Default, Deserialize)]
struct McpShorthand {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    identity_secret: Option<SecretString>,
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

fn default_mcp_timeout_secs() -> u64 {
    30
}

/// Server names go into tool names (`app__add_task`), which models accept only as
/// `[A-Za-z0-9_-]{1,64}`.
const MAX_MCP_NAME_CHARS: usize = 32;

impl AgentSettings {
    /// Whether the built-in task tools are offered (by default, only without MCP servers).
    #[must_use]
    pub fn builtin_tools_enabled(&self) -> bool {
        self.builtin_tools.unwrap_or(self.mcp_servers.is_empty())
    }

    /// `MCP_SERVER_URL` adds one server, so two settings point the gateway at an app; a
    /// server of that name in TOML gets the new URL (and secret, when given) and keeps its
    /// other options.
    pub(super) fn fold_mcp_shorthand(&mut self) {
        let Some(url) = self.mcp.url.take().filter(|u| !u.trim().is_empty()) else {
            return;
        };
        let name = self
            .mcp
            .name
            .take()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "app".into());
        let secret = self.mcp.identity_secret.take();
        let mut server = match self.mcp_servers.iter().position(|s| s.name == name) {
            Some(i) => self.mcp_servers.remove(i),
            None => McpServerSettings {
                name,
                url: String::new(),
                identity_secret: empty_secret(),
                headers: Default::default(),
                tools: None,
                timeout_secs: default_mcp_timeout_secs(),
            },
        };
        server.url = url;
        if let Some(secret) = secret {
            server.identity_secret = secret;
        }
        self.mcp_servers.push(server);
    }

    /// Every problem of the section: the model settings' ranges, those the chosen provider
    /// needs, and each MCP server's.
    pub(super) fn check(&self, env: AppEnv, problems: &mut Vec<String>) {
        self.openai.check(self.provider, problems);
        self.check_mcp_servers(env == AppEnv::Production, problems);
    }

    fn check_mcp_servers(&self, production: bool, problems: &mut Vec<String>) {
        if self.mcp_servers.is_empty() && self.builtin_tools == Some(false) {
            problems.push(
                "agent.builtin_tools = false with no MCP server leaves the agent without tools; \
                 configure [[agent.mcp_servers]] (or MCP_SERVER_URL)"
                    .into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.mcp_servers {
            s.check(production, problems);
            if !names.insert(s.name.as_str()) {
                problems.push(format!("MCP server {:?} is configured twice", s.name));
            }
        }
    }
}

impl McpServerSettings {
    fn check(&self, production: bool, problems: &mut Vec<String>) {
        let what = format!("MCP server {:?}", self.name);
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_MCP_NAME_CHARS
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            problems.push(format!(
                "{what}: the name (MCP_SERVER_NAME) must be 1 to {MAX_MCP_NAME_CHARS} \
                 letters, digits, '_' or '-'"
            ));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            problems.push(format!(
                "{what}: url (MCP_SERVER_URL) {:?} must be an http(s) URL",
                self.url
            ));
        }
        if !(1..=600).contains(&self.timeout_secs) {
            problems.push(format!(
                "{what}: timeout_secs must be between 1 and 600, got {}",
                self.timeout_secs
            ));
        }
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("authorization") {
                problems.push(format!(
                    "{what}: headers must not set Authorization; it carries the user's \
                     identity token"
                ));
                continue;
            }
            let valid = k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_!#$%&'*+.^`|~".contains(c))
                && !k.is_empty()
                && v.chars().all(|c| c == '\t' || (' '..='~').contains(&c));
            if !valid {
                problems.push(format!("{what}: header {k:?} is not a valid HTTP header"));
            }
        }
        let secret = self.identity_secret.expose_secret();
        let secret_name = format!("{what}: identity_secret (MCP_IDENTITY_SECRET)");
        if secret.is_empty() {
            problems.push(format!(
                "{secret_name} is missing; tool calls must carry a signed identity"
            ));
        } else if production {
            if secret.contains(DEV_SECRET_MARKER) {
                problems.push(format!("{secret_name} is a development secret"));
            } else if let Some(weak) = weak_secret(&secret_name, secret) {
                problems.push(weak);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    const SECRET: &str = "an-mcp-identity-secret-0123456789-abcdef";

    fn server(name: &str) -> McpServerSettings {
        McpServerSettings {
            name: name.into(),
            url: "http://127.0.0.1:8000/mcp".into(),
            identity_secret: SecretString::from(SECRET),
            headers: Default::default(),
            tools: None,
            timeout_secs: default_mcp_timeout_secs(),
        }
    }

    fn problems(env: AppEnv, edit: impl FnOnce(&mut AgentSettings)) -> Vec<String> {
        let mut agent = Settings::defaults().agent;
        edit(&mut agent);
        let mut problems = Vec::new();
        agent.check(env, &mut problems);
        problems
    }

    #[test]
    fn the_model_settings_report_every_out_of_range_value() {
        assert!(problems(AppEnv::Development, |_| {}).is_empty());
        let found = problems(AppEnv::Development, |a| {
            a.openai.max_retries = 21;
            a.openai.retry_base_ms = 5_000;
            a.openai.retry_max_ms = 100;
            a.openai.temperature = Some(7.5);
        });
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("GATEWAY__AGENT__OPENAI__MAX_RETRIES"));
        assert!(found[1].contains("must be between 5000 and 3600000, got 100"));
        assert!(found[2].contains("must be between 0 and 2, got 7.5"));
    }

    #[test]
    fn max_tool_steps_is_checked_once_whatever_the_provider() {
        for provider in [AgentProvider::Local, AgentProvider::OpenAi] {
            let found = problems(AppEnv::Development, |a| {
                a.provider = provider;
                a.openai.max_tool_steps = 0;
            });
            assert_eq!(found.len(), 1, "{provider:?}: {found:?}");
            assert!(
                found[0].contains("max_tool_steps") && found[0].contains("got 0"),
                "{found:?}"
            );
        }
    }

    #[test]
    fn the_openai_provider_needs_a_url_and_a_model() {
        let edit = |a: &mut AgentSettings| {
            a.openai.base_url = "ftp://models.example".into();
            a.openai.model = " ".into();
        };
        // Unused settings of another provider are not refused...
        assert!(problems(AppEnv::Development, edit).is_empty());
        // ...but both are when the provider is chosen.
        let found = problems(AppEnv::Development, |a| {
            edit(a);
            a.provider = AgentProvider::OpenAi;
        });
        assert_eq!(
            found,
            [
                "OPENAI_BASE_URL \"ftp://models.example\" must be an http(s) URL",
                "OPENAI_MODEL must name a model"
            ]
        );
    }

    #[test]
    fn every_mcp_server_problem_is_reported() {
        let found = problems(AppEnv::Production, |a| {
            let mut bad = server("my app");
            bad.url = "ftp://x".into();
            bad.timeout_secs = 0;
            bad.headers
                .insert("Authorization".into(), "Bearer x".into());
            bad.headers.insert("bad header".into(), "x".into());
            bad.identity_secret = SecretString::from("short");
            a.mcp_servers = vec![server("app"), bad, server("app")];
        });
        assert_eq!(found.len(), 7, "{found:?}");
        for (problem, said) in found.iter().zip([
            "letters, digits",
            "must be an http(s) URL",
            "timeout_secs must be between 1 and 600, got 0",
            "must not set Authorization",
            "header \"bad header\" is not a valid HTTP header",
            "MCP_IDENTITY_SECRET) is 5 bytes",
            "MCP server \"app\" is configured twice",
        ]) {
            assert!(problem.contains(said), "{said}: {found:?}");
        }
    }

    #[test]
    fn an_mcp_secret_is_needed_everywhere_and_strong_in_production() {
        let with = |env: AppEnv, secret: &str| {
            problems(env, |a| {
                let mut app = server("app");
                app.identity_secret = SecretString::from(secret);
                a.mcp_servers = vec![app];
            })
        };
        assert!(with(AppEnv::Development, "")[0].contains("is missing"));
        assert!(with(AppEnv::Development, "short").is_empty());
        let dev = format!("{DEV_SECRET_MARKER}-0123456789-abcdefghijklmnop");
        assert!(with(AppEnv::Production, &dev)[0].contains("is a development secret"));
        assert!(with(AppEnv::Production, SECRET).is_empty());
    }

    #[test]
    fn no_tools_at_all_is_refused() {
        let found = problems(AppEnv::Development, |a| a.builtin_tools = Some(false));
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("without tools"), "{found:?}");
    }
}
