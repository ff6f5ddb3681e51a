//! Layered settings: the compiled-in `config/default.toml` → `default.toml` in
//! `$APP_CONFIG_DIR` (`config` by default) → the compiled-in `config/$APP_ENV.toml` →
//! `$APP_ENV.toml` in `$APP_CONFIG_DIR` → `GATEWAY__SECTION__KEY` variables → the public
//! variable names (`HOST`, `PORT`, `DATABASE_URL`, ...), which deployment scripts rely on.

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const DEFAULT_TOML: &str = include_str!("../config/default.toml");
const DEVELOPMENT_TOML: &str = include_str!("../config/development.toml");
const PRODUCTION_TOML: &str = include_str!("../config/production.toml");
/// Every development secret carries this marker, so production can recognise them.
pub const DEV_SECRET_MARKER: &str = "INSECURE-DEV";
const MIN_SECRET_BYTES: usize = 32;

/// Public environment names and the setting each one sets.
const PUBLIC_ENV: &[(&str, &str)] = &[
    ("HOST", "server.host"),
    ("PORT", "server.port"),
    ("DATABASE_URL", "database.url"),
    ("BETTER_AUTH_SECRET", "upstream.hs256_secret"),
    ("BETTER_AUTH_URL", "upstream.base_url"),
    ("BETTER_AUTH_JWKS_URL", "upstream.jwks_url"),
    ("BETTER_AUTH_ISSUER", "upstream.issuer"),
    ("BETTER_AUTH_AUDIENCE", "upstream.audience"),
    ("CHATKIT_SESSION_SECRET", "session.secret"),
    ("CHATKIT_SESSION_TTL_SECS", "session.ttl_secs"),
    ("AGENT_PROVIDER", "agent.provider"),
    ("OPENAI_API_KEY", "agent.openai.api_key"),
    ("OPENAI_BASE_URL", "agent.openai.base_url"),
    ("OPENAI_MODEL", "agent.openai.model"),
    ("MCP_SERVER_URL", "agent.mcp.url"),
    ("MCP_SERVER_NAME", "agent.mcp.name"),
    ("MCP_IDENTITY_SECRET", "agent.mcp.identity_secret"),
    ("REDIS_URL", "rate_limits.redis_url"),
    ("METRICS_ADDR", "server.metrics_addr"),
];

/// Fewer distinct characters than this cannot come from a random generator at 32+ bytes
/// (hex has 16); `aaaa…`, `abab…` or 32 spaces pass a length check but not this one.
const MIN_DISTINCT_SECRET_CHARS: usize = 8;

/// Refuses secrets that are long but guessable: blank, padded with whitespace (a
/// copy-paste accident), or built from a handful of characters.
fn secret_has_entropy(name: &str, secret: &str) -> Result<(), ConfigError> {
    let hint = "generate one with `openssl rand -base64 48`";
    if secret.trim().len() != secret.len() || secret.chars().any(char::is_control) {
        return Err(ConfigError::Invalid(format!(
            "{name} starts or ends with whitespace or contains control characters; {hint}"
        )));
    }
    let distinct: std::collections::HashSet<char> = secret.chars().collect();
    if distinct.len() < MIN_DISTINCT_SECRET_CHARS {
        return Err(ConfigError::Invalid(format!(
            "{name} has too little entropy: it uses only {} distinct characters (at least \
             {MIN_DISTINCT_SECRET_CHARS} expected); {hint}",
            distinct.len()
        )));
    }
    Ok(())
}

/// `key (GATEWAY__KEY[ / PUBLIC_NAME])`: every name an operator may have set it by.
fn setting_names(key: &str) -> String {
    let env = format!("GATEWAY__{}", key.to_uppercase().replace('.', "__"));
    match PUBLIC_ENV.iter().find(|(_, k)| *k == key) {
        Some((public, _)) => format!("{key} ({env} / {public})"),
        None => format!("{key} ({env})"),
    }
}

/// A seconds setting as a signed count for timestamp arithmetic. Every such setting is
/// range-checked at load (at most 30 days), so the saturation is only a guarantee that
/// arithmetic on it cannot wrap or panic, whatever a caller passes.
#[must_use]
pub fn seconds_i64(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// A seconds setting as a `chrono::Duration` (see [`seconds_i64`]).
#[must_use]
pub fn seconds(secs: u64) -> chrono::Duration {
    chrono::Duration::try_seconds(seconds_i64(secs)).unwrap_or(chrono::Duration::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not load settings: {0}")]
    Load(#[from] config::ConfigError),
    #[error("refusing to start: {0}")]
    Invalid(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppEnv {
    Development,
    Production,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    #[serde(default = "default_env")]
    pub env: AppEnv,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub upstream: UpstreamSettings,
    pub session: SessionSettings,
    pub messages: MessageSettings,
    pub agent: AgentSettings,
    pub stream: StreamSettings,
    pub log: LogSettings,
    #[serde(default)]
    pub chatkit: ChatKitSettings,
    pub rate_limits: RateLimitSettings,
}

/// The ChatKit protocol endpoint.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatKitSettings {
    /// Where `POST` speaks the protocol: the widget's `api.url`.
    pub path: String,
}

impl Default for ChatKitSettings {
    fn default() -> Self {
        Self {
            path: "/chatkit".into(),
        }
    }
}

fn default_env() -> AppEnv {
    AppEnv::Development
}

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
    crate::api::DEFAULT_PREFIX.into()
}

/// Paths served outside the API prefix, which the prefix must not shadow.
const ROOT_PATHS: [&str; 4] = ["/healthz", "/readyz", "/docs", "/openapi.json"];

/// Refuses an API prefix that is not a plain absolute path, or that would take over a
/// route served at the root.
fn check_api_prefix(prefix: &str, chatkit_path: &str) -> Result<(), ConfigError> {
    let name = setting_names("server.api_prefix");
    let plain = prefix.len() > 1
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && !prefix.contains("//")
        && !prefix.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '{' | '}' | '*' | ':')
        });
    if !plain {
        return Err(ConfigError::Invalid(format!(
            "{name} = {prefix:?} must be a path starting with '/', without a trailing '/', \
             whitespace or any of ?#{{}}*: (for example \"/api/chatkit\")"
        )));
    }
    let under = |path: &str, root: &str| {
        path == root
            || path
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    for root in ROOT_PATHS.iter().copied().chain([chatkit_path]) {
        if under(prefix, root) || under(root, prefix) {
            return Err(ConfigError::Invalid(format!(
                "{name} = {prefix:?} overlaps {root}, which is served outside the API prefix"
            )));
        }
    }
    Ok(())
}

#[derive(Clone, Debug, Deserialize)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub busy_timeout_ms: u64,
    /// PostgreSQL: how long a request waits for a pool connection (or a new connection)
    /// before it is answered 503.
    pub acquire_timeout_ms: u64,
    pub run_migrations: bool,
    /// SQLite only: the most pages the database file may grow to (`PRAGMA
    /// max_page_count`); writes beyond it fail as on a full disk. 0 = no cap.
    pub sqlite_max_pages: u32,
    /// PostgreSQL: turn writer tasks (group commit; each thread's writes go to one of
    /// them). SQLite always has one.
    pub turn_writers: u32,
}

/// The database kinds the gateway speaks, by `DATABASE_URL` scheme.
const DATABASE_SCHEMES: [&str; 3] = ["sqlite:", "postgres://", "postgresql://"];

impl DatabaseSettings {
    /// Refuses a URL of another kind before anything connects: sqlx read `mysql://` as
    /// PostgreSQL, and a URL without a scheme failed as an I/O error. Only the scheme is
    /// quoted, as the URL may hold a password.
    fn check_url(&self) -> Result<(), ConfigError> {
        let url = self.url.expose_secret();
        if DATABASE_SCHEMES.iter().any(|s| url.starts_with(s)) {
            return Ok(());
        }
        let given = match url.split_once(':') {
            Some((scheme, _)) if !scheme.is_empty() && !scheme.contains(['/', '@']) => {
                format!("has the scheme {scheme:?}")
            }
            _ => "is not a URL".to_owned(),
        };
        Err(ConfigError::Invalid(format!(
            "{} {given}; use sqlite://path/to/file.db or postgres://user:password@host/database",
            setting_names("database.url")
        )))
    }

    /// The URL with any password removed, for logs: `postgres://app@db:5432/chat`.
    #[must_use]
    pub fn redacted_url(&self) -> String {
        let url = self.url.expose_secret();
        match reqwest::Url::parse(url) {
            // The query goes too: `?password=` is a way to give one.
            Ok(mut parsed) if url.starts_with("postgres") => {
                let _ = parsed.set_password(None);
                parsed.set_query(None);
                parsed.to_string()
            }
            // SQLite URLs hold a path, which the parser would rewrite when relative.
            _ => url.split('?').next().unwrap_or_default().to_owned(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct UpstreamSettings {
    pub hs256_secret: SecretString,
    pub base_url: String,
    pub jwks_url: String,
    pub algorithms: Vec<String>,
    pub user_id_claim: String,
    pub leeway_secs: u64,
    pub issuer: String,
    pub audience: String,
    pub jwks_cache_ttl_secs: u64,
    pub jwks_min_ttl_secs: u64,
    pub jwks_max_ttl_secs: u64,
    pub jwks_refetch_cooldown_secs: u64,
    pub jwks_timeout_ms: u64,
    pub verified_cache_secs: u64,
}

impl UpstreamSettings {
    /// The JWKS URL: explicit, else `<BETTER_AUTH_URL>/api/auth/jwks`, else none.
    #[must_use]
    pub fn jwks_url(&self) -> Option<String> {
        if !self.jwks_url.is_empty() {
            return Some(self.jwks_url.clone());
        }
        (!self.base_url.is_empty())
            .then(|| format!("{}/api/auth/jwks", self.base_url.trim_end_matches('/')))
    }

    /// `scheme://host[:port]` of BETTER_AUTH_URL: Better Auth's default `iss` and `aud`.
    #[must_use]
    pub fn base_origin(&self) -> Option<String> {
        let url = self.base_url.trim();
        let (scheme, rest) = url.split_once("://")?;
        let host = rest
            .split(['/', '?', '#'])
            .next()
            .filter(|h| !h.is_empty())?;
        Some(format!("{scheme}://{host}"))
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct SessionSettings {
    pub secret: SecretString,
    pub previous_secrets: Vec<SecretString>,
    pub issuer: String,
    pub audience: String,
    pub ttl_secs: u64,
    pub leeway_secs: u64,
    pub refresh_grace_secs: u64,
    pub max_session_age_secs: u64,
    pub refresh_race_window_secs: u64,
    pub revocation_cache_ttl_secs: u64,
    pub require_upstream_on_refresh: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct MessageSettings {
    pub max_chars: usize,
    pub history_max_items: u64,
    pub history_max_chars: usize,
    pub stale_pending_secs: u64,
}

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
}

#[derive(Clone, Debug, Deserialize)]
pub struct StreamSettings {
    pub keep_alive_secs: u64,
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

/// `APP_ENV`, checked here: the deserializer would only say "no variant constructor … for
/// key `env`", naming neither the variable the operator set nor what it may be.
fn app_env(vars: &[(String, String)]) -> Result<String, String> {
    let name = lookup(vars, "APP_ENV").unwrap_or_else(|| "development".into());
    if matches!(name.as_str(), "development" | "production") {
        Ok(name)
    } else {
        Err(format!(
            "APP_ENV = {name:?} is not an environment; use \"development\" or \"production\""
        ))
    }
}

fn lookup(vars: &[(String, String)], name: &str) -> Option<String> {
    vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// Every layer for `env_name`, in order (see the module documentation).
fn layers(
    vars: &[(String, String)],
    env_name: &str,
) -> Result<config::ConfigBuilder<config::builder::DefaultState>, ConfigError> {
    let dir = lookup(vars, "APP_CONFIG_DIR").unwrap_or_else(|| "config".into());
    let embedded_env = match env_name {
        "production" => PRODUCTION_TOML,
        _ => DEVELOPMENT_TOML,
    };
    // Each file on disk layers over its compiled-in twin, so a binary started away from
    // the repository (systemd, a container, `/usr/local/bin`) runs the same settings.
    let mut builder = Config::builder()
        .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
        .add_source(File::with_name(&format!("{dir}/default")).required(false))
        .add_source(File::from_str(embedded_env, FileFormat::Toml))
        .add_source(File::with_name(&format!("{dir}/{env_name}")).required(false))
        .add_source(
            Environment::with_prefix("GATEWAY")
                .separator("__")
                .prefix_separator("__")
                .list_separator(",")
                .with_list_parse_key("server.cors_allowed_origins")
                .with_list_parse_key("session.previous_secrets")
                .with_list_parse_key("upstream.algorithms")
                .try_parsing(true)
                .source(Some(vars.iter().cloned().collect())),
        )
        .set_override("env", env_name)?;
    for (name, key) in PUBLIC_ENV {
        builder = builder.set_override_option(*key, lookup(vars, name))?;
    }
    Ok(builder)
}

/// The setting a deserialization error is about (when the error says) and a refusal naming
/// it by every name an operator may have set it by.
fn unparsable(e: &config::ConfigError) -> (Option<String>, String) {
    match e {
        config::ConfigError::Type {
            unexpected,
            expected,
            key: Some(key),
            ..
        } => (
            Some(key.clone()),
            format!(
                "{} = {unexpected} is not valid; expected {expected}",
                setting_names(key)
            ),
        ),
        config::ConfigError::At {
            error,
            key: Some(key),
            ..
        } => {
            let error = error.to_string();
            // Messages of our own (an unknown provider) already name the setting.
            let msg = if error.contains(key.as_str()) {
                error
            } else {
                format!("{}: {error}", setting_names(key))
            };
            (Some(key.clone()), msg)
        }
        other => (None, format!("could not load settings: {other}")),
    }
}

/// The compiled-in default of `key`, or nothing (an optional setting) when it has none.
fn default_value(key: &str) -> config::Value {
    Config::builder()
        .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
        .build()
        .ok()
        .and_then(|c| c.get::<config::Value>(key).ok())
        .unwrap_or_else(|| config::Value::new(None, config::ValueKind::Nil))
}

/// A refusal's text without the "refusing to start" its error adds: refusals are collected
/// into one message that says it once.
fn invalid_text(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid(msg) => msg,
        other => other.to_string(),
    }
}

/// Several refusals as one message.
fn refusals_text(refusals: &[String]) -> String {
    format!(
        "{} problems:\n  - {}",
        refusals.len(),
        refusals.join("\n  - ")
    )
}

impl Settings {
    /// Settings from every layer, reading the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(&vars)
    }

    /// Settings from every layer with `vars` standing in for the environment (tests use it).
    ///
    /// Every refusal found is reported at once: a bad `APP_ENV`, values that do not parse
    /// (each is replaced by its default so the rest can still be read) and the validation
    /// rules. Fixing one setting per start-up attempt made a misconfigured deployment a
    /// long loop.
    pub fn load_from(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut refusals = Vec::new();
        let env_name = match app_env(vars) {
            Ok(name) => name,
            Err(msg) => {
                refusals.push(msg);
                // Which environment was meant is unknown: check what holds in every one,
                // as an unset APP_ENV would.
                "development".to_owned()
            }
        };
        let mut builder = layers(vars, &env_name)?;
        let mut settings = None;
        let mut replaced = std::collections::HashSet::new();
        // Each pass replaces one unparsable value by its default; a key that fails again
        // (its default does not fit either) ends the reading.
        loop {
            match builder.build_cloned()?.try_deserialize::<Settings>() {
                Ok(s) => {
                    settings = Some(s);
                    break;
                }
                Err(e) => {
                    let (key, msg) = unparsable(&e);
                    refusals.push(msg);
                    let Some(key) = key.filter(|k| replaced.insert(k.clone())) else {
                        break;
                    };
                    builder = builder.set_override(key.as_str(), default_value(&key))?;
                }
            }
        }
        if let Some(settings) = &mut settings {
            settings.agent.fold_mcp_shorthand();
            refusals.extend(settings.refusals());
        }
        match (settings, refusals.len()) {
            (Some(settings), 0) => Ok(settings),
            (_, 0) => Err(ConfigError::Invalid(
                "the settings could not be read".into(),
            )),
            (_, 1) => Err(ConfigError::Invalid(refusals.remove(0))),
            (_, _) => Err(ConfigError::Invalid(refusals_text(&refusals))),
        }
    }

    /// `server.api_prefix` from every layer, without the rest of the settings: what
    /// `chatkit-gateway openapi` needs, which must work without secrets.
    pub fn api_prefix_from(vars: &[(String, String)]) -> Result<String, ConfigError> {
        let env_name = app_env(vars).map_err(ConfigError::Invalid)?;
        let config = layers(vars, &env_name)?.build()?;
        let read = |key: &str, default: String| match config.get_string(key) {
            Ok(value) => Ok(value),
            Err(config::ConfigError::NotFound(_)) => Ok(default),
            Err(e) => Err(ConfigError::from(e)),
        };
        let prefix = read("server.api_prefix", default_api_prefix())?;
        let chatkit = read("chatkit.path", ChatKitSettings::default().path)?;
        check_api_prefix(&prefix, &chatkit)?;
        Ok(prefix)
    }

    /// Settings from the compiled-in defaults only (no files, no environment).
    #[must_use]
    pub fn defaults() -> Self {
        Self::load_from(&[("APP_CONFIG_DIR".into(), "/nonexistent".into())])
            .expect("compiled-in defaults are valid")
    }

    /// Every numeric setting within the range the service can run with (a zero pool size
    /// or keep-alive interval used to panic at start-up or on first use).
    fn check_ranges(&self) -> Result<(), ConfigError> {
        const SEC_DAY: u64 = 86_400;
        let (s, d, u, se, m, o) = (
            &self.server,
            &self.database,
            &self.upstream,
            &self.session,
            &self.messages,
            &self.agent.openai,
        );
        let checks: &[(&str, u64, u64, u64)] = &[
            (
                "server.body_limit_bytes",
                s.body_limit_bytes as u64,
                1,
                64 << 20,
            ),
            (
                "server.shutdown_grace_secs",
                s.shutdown_grace_secs,
                0,
                3_600,
            ),
            (
                "server.header_read_timeout_secs",
                s.header_read_timeout_secs,
                1,
                300,
            ),
            (
                "server.body_read_timeout_secs",
                s.body_read_timeout_secs,
                1,
                3_600,
            ),
            ("server.idle_timeout_secs", s.idle_timeout_secs, 1, SEC_DAY),
            (
                "server.max_connections",
                s.max_connections.into(),
                1,
                1_000_000,
            ),
            (
                "database.max_connections",
                d.max_connections.into(),
                1,
                1_000,
            ),
            ("database.busy_timeout_ms", d.busy_timeout_ms, 0, 600_000),
            ("database.turn_writers", d.turn_writers.into(), 1, 64),
            (
                "database.acquire_timeout_ms",
                d.acquire_timeout_ms,
                100,
                60_000,
            ),
            ("upstream.leeway_secs", u.leeway_secs, 0, 3_600),
            (
                "upstream.jwks_cache_ttl_secs",
                u.jwks_cache_ttl_secs,
                1,
                7 * SEC_DAY,
            ),
            (
                "upstream.jwks_min_ttl_secs",
                u.jwks_min_ttl_secs,
                0,
                7 * SEC_DAY,
            ),
            (
                "upstream.jwks_max_ttl_secs",
                u.jwks_max_ttl_secs,
                u.jwks_min_ttl_secs.max(1),
                30 * SEC_DAY,
            ),
            (
                "upstream.jwks_refetch_cooldown_secs",
                u.jwks_refetch_cooldown_secs,
                0,
                SEC_DAY,
            ),
            ("upstream.jwks_timeout_ms", u.jwks_timeout_ms, 1, 120_000),
            (
                "upstream.verified_cache_secs",
                u.verified_cache_secs,
                0,
                3_600,
            ),
            ("session.ttl_secs", se.ttl_secs, 1, SEC_DAY),
            ("session.leeway_secs", se.leeway_secs, 0, 3_600),
            (
                "session.refresh_grace_secs",
                se.refresh_grace_secs,
                0,
                30 * SEC_DAY,
            ),
            (
                "session.max_session_age_secs",
                se.max_session_age_secs,
                1,
                365 * SEC_DAY,
            ),
            (
                "session.refresh_race_window_secs",
                se.refresh_race_window_secs,
                0,
                300,
            ),
            (
                "session.revocation_cache_ttl_secs",
                se.revocation_cache_ttl_secs,
                0,
                3_600,
            ),
            ("messages.max_chars", m.max_chars as u64, 1, 1_000_000),
            ("messages.history_max_items", m.history_max_items, 0, 10_000),
            (
                "messages.history_max_chars",
                m.history_max_chars as u64,
                0,
                10_000_000,
            ),
            (
                "messages.stale_pending_secs",
                m.stale_pending_secs,
                1,
                7 * SEC_DAY,
            ),
            (
                "agent.openai.max_tokens",
                o.max_tokens.unwrap_or(1).into(),
                1,
                1_000_000,
            ),
            (
                "agent.openai.connect_timeout_ms",
                o.connect_timeout_ms,
                1,
                600_000,
            ),
            (
                "agent.openai.http2_streams_per_connection",
                o.http2_streams_per_connection.into(),
                1,
                10_000,
            ),
            (
                "agent.openai.first_token_timeout_ms",
                o.first_token_timeout_ms,
                1,
                3_600_000,
            ),
            (
                "agent.openai.total_timeout_ms",
                o.total_timeout_ms,
                1,
                3_600_000,
            ),
            (
                "agent.openai.max_tool_steps",
                o.max_tool_steps.into(),
                1,
                100,
            ),
            ("agent.openai.max_retries", o.max_retries.into(), 0, 20),
            ("agent.openai.retry_base_ms", o.retry_base_ms, 0, 600_000),
            (
                "agent.openai.retry_max_ms",
                o.retry_max_ms,
                o.retry_base_ms,
                3_600_000,
            ),
            (
                "stream.keep_alive_secs",
                self.stream.keep_alive_secs,
                1,
                3_600,
            ),
        ];
        for &(key, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "{} must be between {min} and {max}, got {value}",
                    setting_names(key)
                )));
            }
        }
        if let Some(t) = o.temperature {
            if !(0.0..=2.0).contains(&t) {
                return Err(ConfigError::Invalid(format!(
                    "{} must be between 0 and 2, got {t}",
                    setting_names("agent.openai.temperature")
                )));
            }
        }
        Ok(())
    }

    /// Rules every environment must satisfy, plus the production refusals. Every group of
    /// rules is checked and the refusals are reported together: fixing one setting per
    /// start-up attempt made a misconfigured deployment a long loop.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut refusals = self.refusals();
        match refusals.len() {
            0 => Ok(()),
            1 => Err(ConfigError::Invalid(refusals.remove(0))),
            _ => Err(ConfigError::Invalid(refusals_text(&refusals))),
        }
    }

    /// What [`Settings::validate`] refuses, one message per group of rules.
    fn refusals(&self) -> Vec<String> {
        [
            self.check_ranges(),
            check_api_prefix(&self.server.api_prefix, &self.chatkit.path),
            self.rate_limits.check(),
            self.agent.check_mcp_servers(self.env == AppEnv::Production),
            self.check_openai(),
            self.database.check_url(),
        ]
        .into_iter()
        .filter_map(|check| check.err().map(invalid_text))
        .chain(self.check_secrets())
        .collect()
    }

    fn check_openai(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError::Invalid(msg));
        if self.agent.provider == AgentProvider::OpenAi {
            let o = &self.agent.openai;
            if !(o.base_url.starts_with("http://") || o.base_url.starts_with("https://")) {
                return bad(format!(
                    "OPENAI_BASE_URL {:?} must be an http(s) URL",
                    o.base_url
                ));
            }
            if o.model.trim().is_empty() {
                return bad("OPENAI_MODEL must name a model".into());
            }
            if o.max_tool_steps == 0 {
                return bad("agent.openai.max_tool_steps must be at least 1".into());
            }
        }
        Ok(())
    }

    /// Every secret problem at once: an operator fixing a production deployment learns of
    /// the missing verifier together with the weak session secret, not one per start.
    fn check_secrets(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let session = self.session.secret.expose_secret();
        let upstream = self.upstream.hs256_secret.expose_secret();
        let production = self.env == AppEnv::Production;
        let session_name = "session.secret (CHATKIT_SESSION_SECRET)";
        if session.is_empty() {
            bad.push(format!(
                "{session_name} is not set; set a random secret of at least {MIN_SECRET_BYTES} \
                 bytes (`openssl rand -base64 48`)"
            ));
        } else if production && session.contains(DEV_SECRET_MARKER) {
            bad.push(format!(
                "{session_name} is the development secret; set a random secret of at least \
                 {MIN_SECRET_BYTES} bytes"
            ));
        } else if session.len() < MIN_SECRET_BYTES {
            bad.push(format!(
                "{session_name} is {} bytes; it must be at least {MIN_SECRET_BYTES}",
                session.len()
            ));
        } else if let Err(e) = secret_has_entropy(session_name, session) {
            bad.push(invalid_text(e));
        }
        if !upstream.is_empty() && session == upstream {
            bad.push("CHATKIT_SESSION_SECRET must differ from BETTER_AUTH_SECRET, or upstream tokens could pass as client_secrets".into());
        }
        if let Some(url) = self.upstream.jwks_url() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bad.push(format!(
                    "the JWKS URL {url:?} (BETTER_AUTH_URL / BETTER_AUTH_JWKS_URL) must be http(s)"
                ));
            }
        }
        if production {
            let upstream_name = "upstream.hs256_secret (BETTER_AUTH_SECRET)";
            if upstream.is_empty() {
                if self.upstream.jwks_url().is_none() {
                    bad.push("no upstream verifier is configured; set BETTER_AUTH_URL (JWKS) or BETTER_AUTH_SECRET".into());
                }
            } else if upstream.contains(DEV_SECRET_MARKER) {
                bad.push(format!("{upstream_name} is the development secret; set the secret of your Better Auth deployment"));
            } else if upstream.len() < MIN_SECRET_BYTES {
                bad.push(format!(
                    "{upstream_name} is {} bytes; it must be at least {MIN_SECRET_BYTES}",
                    upstream.len()
                ));
            } else if let Err(e) = secret_has_entropy(upstream_name, upstream) {
                bad.push(invalid_text(e));
            }
        }
        bad
    }

    /// Whether a development secret (compiled in for `cargo run`) signs or verifies tokens:
    /// worth a warning at start-up, since anyone can mint tokens with it.
    #[must_use]
    pub fn uses_development_secrets(&self) -> bool {
        self.session
            .secret
            .expose_secret()
            .contains(DEV_SECRET_MARKER)
            || self
                .upstream
                .hs256_secret
                .expose_secret()
                .contains(DEV_SECRET_MARKER)
    }

    /// `http://host:port` that reaches this service from its own machine: a wildcard bind
    /// (`0.0.0.0`, `::`) through loopback.
    #[must_use]
    pub fn local_url(&self, port: u16) -> String {
        let host = match self.server.host.as_str() {
            "0.0.0.0" | "" => "127.0.0.1".to_owned(),
            "::" | "[::]" => "[::1]".to_owned(),
            h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            h => h.to_owned(),
        };
        format!("http://{host}:{port}")
    }

    #[must_use]
    pub fn bind_address(&self) -> String {
        format!("{}:{}", self.server.host, self.server.port)
    }
}

// ---------------------------------------------------------------------------------------
// MCP servers (issue 12): the app's own tools, reached over streamable HTTP.
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
    fn fold_mcp_shorthand(&mut self) {
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

    fn check_mcp_servers(&self, production: bool) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError::Invalid(msg));
        if self.mcp_servers.is_empty() && self.builtin_tools == Some(false) {
            return bad(
                "agent.builtin_tools = false with no MCP server leaves the agent without tools; \
                 configure [[agent.mcp_servers]] (or MCP_SERVER_URL)"
                    .into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.mcp_servers {
            let what = format!("MCP server {:?}", s.name);
            let name_ok = !s.name.is_empty()
                && s.name.len() <= MAX_MCP_NAME_CHARS
                && s.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_ok {
                return bad(format!(
                    "{what}: the name (MCP_SERVER_NAME) must be 1 to {MAX_MCP_NAME_CHARS} \
                     letters, digits, '_' or '-'"
                ));
            }
            if !names.insert(s.name.as_str()) {
                return bad(format!("{what} is configured twice"));
            }
            if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
                return bad(format!(
                    "{what}: url (MCP_SERVER_URL) {:?} must be an http(s) URL",
                    s.url
                ));
            }
            if !(1..=600).contains(&s.timeout_secs) {
                return bad(format!(
                    "{what}: timeout_secs must be between 1 and 600, got {}",
                    s.timeout_secs
                ));
            }
            for (k, v) in &s.headers {
                if k.eq_ignore_ascii_case("authorization") {
                    return bad(format!(
                        "{what}: headers must not set Authorization; it carries the user's \
                         identity token"
                    ));
                }
                let valid = k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_!#$%&'*+.^`|~".contains(c))
                    && !k.is_empty()
                    && v.chars().all(|c| c == '\t' || (' '..='~').contains(&c));
                if !valid {
                    return bad(format!("{what}: header {k:?} is not a valid HTTP header"));
                }
            }
            let secret = s.identity_secret.expose_secret();
            let secret_name = format!("{what}: identity_secret (MCP_IDENTITY_SECRET)");
            if secret.is_empty() {
                return bad(format!(
                    "{secret_name} is missing; tool calls must carry a signed identity"
                ));
            }
            if production {
                if secret.contains(DEV_SECRET_MARKER) {
                    return bad(format!("{secret_name} is a development secret"));
                }
                if secret.len() < MIN_SECRET_BYTES {
                    return bad(format!(
                        "{secret_name} is {} bytes; it must be at least {MIN_SECRET_BYTES}",
                        secret.len()
                    ));
                }
                secret_has_entropy(&secret_name, secret)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Rate limits (issue 10, abuse control).
// ---------------------------------------------------------------------------------------

/// Per-caller token buckets (`[rate_limits]`): off unless `enabled` (production turns them
/// on), shared through Redis when `redis_url` (`REDIS_URL`) is set.
#[derive(Clone, Debug, Deserialize)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// `redis://` or `rediss://` URL; empty = every instance counts on its own.
    pub redis_url: SecretString,
    /// Prefix of every Redis key the limiter writes (several deployments can share a Redis).
    pub redis_key_prefix: String,
    /// How long a Redis call may take before this instance decides on its own.
    pub redis_timeout_ms: u64,
    /// Turns (`POST /messages`, the ChatKit turn requests), per user.
    pub turns: RateLimit,
    /// `POST /session`, per upstream subject.
    pub sessions: RateLimit,
    /// `POST /refresh`, per session family.
    pub refreshes: RateLimit,
}

/// One token bucket: `burst` requests at once, refilled at `per_minute`.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct RateLimit {
    /// Sustained rate; 0 turns this limit off.
    pub per_minute: u32,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

impl RateLimitSettings {
    fn check(&self) -> Result<(), ConfigError> {
        let limits = [
            ("turns", self.turns),
            ("sessions", self.sessions),
            ("refreshes", self.refreshes),
        ];
        for (name, limit) in limits {
            // Above 60 000 a minute the interval between tokens would be under 1 ms, the
            // resolution the shared (Redis) mode counts in.
            if limit.per_minute > 60_000 {
                return Err(ConfigError::Invalid(format!(
                    "{} must be between 0 and 60000, got {}",
                    setting_names(&format!("rate_limits.{name}.per_minute")),
                    limit.per_minute
                )));
            }
            if !(1..=10_000).contains(&limit.burst) {
                return Err(ConfigError::Invalid(format!(
                    "{} must be between 1 and 10000, got {}",
                    setting_names(&format!("rate_limits.{name}.burst")),
                    limit.burst
                )));
            }
        }
        if !(1..=10_000).contains(&self.redis_timeout_ms) {
            return Err(ConfigError::Invalid(format!(
                "{} must be between 1 and 10000, got {}",
                setting_names("rate_limits.redis_timeout_ms"),
                self.redis_timeout_ms
            )));
        }
        let url = self.redis_url.expose_secret();
        if !(url.is_empty() || url.starts_with("redis://") || url.starts_with("rediss://")) {
            // The URL may carry a password: name the setting, not the value.
            return Err(ConfigError::Invalid(format!(
                "{} must be a redis:// or rediss:// URL",
                setting_names("rate_limits.redis_url")
            )));
        }
        Ok(())
    }
}
