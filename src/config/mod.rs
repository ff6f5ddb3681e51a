//! The gateway's settings: read from layers (see `layers.rs`: compiled-in TOML, files in
//! `$APP_CONFIG_DIR`, `GATEWAY__SECTION__KEY` variables, then the public names such as
//! `PORT` and `DATABASE_URL`), then checked section by section.
//!
//! Each section's file holds its fields and the rules about them; a rule that is broken
//! is pushed onto one list of problems, so an operator learns of every refusal in one
//! start-up attempt. This is the lowest layer: nothing here imports the rest of the crate.

mod agent;
mod attachments;
mod auth;
mod database;
mod layers;
mod limits;
mod server;

use serde::Deserialize;

pub use agent::{AgentProvider, AgentSettings, Http2Mode, McpServerSettings, OpenAiSettings};
pub use attachments::{AttachmentSettings, AttachmentStore, S3Settings, KNOWN_MIME_TYPES};
pub use auth::{SessionSettings, UpstreamSettings, DEV_SECRET_MARKER};
pub use database::DatabaseSettings;
pub use limits::{MessageSettings, RateLimit, RateLimitSettings};
pub use server::{
    ChatKitSettings, ClientToolSettings, LogFormat, LogSettings, ServerSettings, StreamSettings,
    DEFAULT_API_PREFIX, DOCS_PATH, HEALTH_PATHS, ROOT_PATHS, SPEC_PATH,
};

use layers::setting_names;

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

fn default_env() -> AppEnv {
    AppEnv::Development
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
    pub attachments: AttachmentSettings,
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
        let env_name = match layers::app_env(vars) {
            Ok(name) => name,
            Err(msg) => {
                refusals.push(msg);
                // Which environment was meant is unknown: check what holds in every one,
                // as an unset APP_ENV would.
                "development".to_owned()
            }
        };
        let mut settings = layers::read(vars, &env_name, &mut refusals)?;
        if let Some(settings) = &mut settings {
            settings.agent.fold_mcp_shorthand();
            refusals.extend(settings.refusals());
        }
        match (settings, refusals.len()) {
            (Some(settings), 0) => Ok(settings),
            (_, 0) => Err(ConfigError::Invalid(
                "the settings could not be read".into(),
            )),
            (_, _) => Err(refused(refusals)),
        }
    }

    /// `server.api_prefix` and `chatkit.path` from every layer, without the rest of the
    /// settings: what `chatkit-gateway openapi` needs, which must work without secrets.
    pub fn document_paths_from(vars: &[(String, String)]) -> Result<(String, String), ConfigError> {
        let env_name = layers::app_env(vars).map_err(ConfigError::Invalid)?;
        let config = layers::layers(vars, &env_name)?.build()?;
        let read = |key: &str, default: String| match config.get_string(key) {
            Ok(value) => Ok(value),
            Err(config::ConfigError::NotFound(_)) => Ok(default),
            Err(e) => Err(ConfigError::from(e)),
        };
        let prefix = read("server.api_prefix", DEFAULT_API_PREFIX.to_owned())?;
        let chatkit = read("chatkit.path", ChatKitSettings::default().path)?;
        let mut problems = Vec::new();
        server::check_api_prefix(&prefix, &chatkit, &mut problems);
        if problems.is_empty() {
            Ok((prefix, chatkit))
        } else {
            Err(refused(problems))
        }
    }

    /// Settings from the compiled-in defaults only (no files, no environment).
    #[must_use]
    pub fn defaults() -> Self {
        Self::load_from(&[("APP_CONFIG_DIR".into(), "/nonexistent".into())])
            .expect("compiled-in defaults are valid")
    }

    /// Rules every environment must satisfy, plus the production refusals. Every rule is
    /// checked and the refusals are reported together: fixing one setting per start-up
    /// attempt made a misconfigured deployment a long loop.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let refusals = self.refusals();
        if refusals.is_empty() {
            Ok(())
        } else {
            Err(refused(refusals))
        }
    }

    /// What [`Settings::validate`] refuses: every broken rule of every section, one
    /// message each.
    fn refusals(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let p = &mut problems;
        self.server.check(&self.chatkit.path, p);
        self.chatkit.check(p);
        self.database.check(p);
        self.upstream.check(self.env, p);
        self.session.check(self.env, p);
        auth::check_secrets_differ(&self.session, &self.upstream, p);
        self.messages.check(p);
        self.agent.check(self.env, p);
        self.stream.check(p);
        self.rate_limits.check(p);
        self.attachments.check(p);
        problems
    }

    /// Whether a development secret (compiled in for `cargo run`) signs or verifies tokens:
    /// worth a warning at start-up, since anyone can mint tokens with it.
    #[must_use]
    pub fn uses_development_secrets(&self) -> bool {
        self.session.uses_development_secret() || self.upstream.uses_development_secret()
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

/// One refusal as it is, several as one message that says "refusing to start" once.
fn refused(mut refusals: Vec<String>) -> ConfigError {
    if refusals.len() == 1 {
        return ConfigError::Invalid(refusals.remove(0));
    }
    ConfigError::Invalid(format!(
        "{} problems:\n  - {}",
        refusals.len(),
        refusals.join("\n  - ")
    ))
}

/// One numeric rule: the setting's key, its value and the inclusive range it must be in.
type Range<'a> = (&'a str, u64, u64, u64);

/// Pushes a refusal for every value outside its range (a zero pool size or keep-alive
/// interval used to panic at start-up or on first use), naming each setting by every name
/// an operator may have set it by.
fn check_ranges(ranges: &[Range<'_>], problems: &mut Vec<String>) {
    for &(key, value, min, max) in ranges {
        if !(min..=max).contains(&value) {
            problems.push(format!(
                "{} must be between {min} and {max}, got {value}",
                setting_names(key)
            ));
        }
    }
}

/// A day in seconds, for the ranges of durations.
const SEC_DAY: u64 = 86_400;

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let mut vars = vec![("APP_CONFIG_DIR".to_owned(), "/nonexistent".to_owned())];
        vars.extend(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Settings::load_from(&vars).map_err(|e| e.to_string())
    }

    #[test]
    fn the_compiled_in_defaults_pass_every_check() {
        assert!(Settings::defaults().refusals().is_empty());
    }

    #[test]
    fn two_out_of_range_values_in_one_load_are_both_reported() {
        // Two in one section and one in another: the old table stopped at the first.
        let err = load(&[
            ("GATEWAY__SERVER__BODY_LIMIT_BYTES", "0"),
            ("GATEWAY__SERVER__IDLE_TIMEOUT_SECS", "0"),
            ("GATEWAY__STREAM__KEEP_ALIVE_SECS", "0"),
        ])
        .unwrap_err();
        assert!(err.contains("3 problems"), "{err}");
        for name in [
            "GATEWAY__SERVER__BODY_LIMIT_BYTES",
            "GATEWAY__SERVER__IDLE_TIMEOUT_SECS",
            "GATEWAY__STREAM__KEEP_ALIVE_SECS",
        ] {
            assert!(err.contains(name), "{name} missing: {err}");
        }
    }

    #[test]
    fn max_tool_steps_zero_with_the_openai_provider_is_reported_once() {
        let err = load(&[
            ("AGENT_PROVIDER", "openai"),
            ("GATEWAY__AGENT__OPENAI__MAX_TOOL_STEPS", "0"),
        ])
        .unwrap_err();
        assert_eq!(err.matches("max_tool_steps").count(), 1, "{err}");
        assert!(
            err.contains("agent.openai.max_tool_steps (GATEWAY__AGENT__OPENAI__MAX_TOOL_STEPS) must be between 1 and 100, got 0"),
            "{err}"
        );
    }

    #[test]
    fn the_caps_on_what_the_model_is_sent_are_range_checked() {
        let err = load(&[
            ("GATEWAY__AGENT__OPENAI__MAX_IMAGE_BYTES", "21000000"),
            ("GATEWAY__AGENT__OPENAI__MAX_TEXT_BYTES", "0"),
            ("GATEWAY__AGENT__OPENAI__MAX_AUDIO_BYTES", "10"),
        ])
        .unwrap_err();
        assert!(err.contains("3 problems"), "{err}");
        for refusal in [
            "agent.openai.max_image_bytes (GATEWAY__AGENT__OPENAI__MAX_IMAGE_BYTES) must be between 1024 and 20971520, got 21000000",
            "agent.openai.max_text_bytes (GATEWAY__AGENT__OPENAI__MAX_TEXT_BYTES) must be between 256 and 1048576, got 0",
            "agent.openai.max_audio_bytes (GATEWAY__AGENT__OPENAI__MAX_AUDIO_BYTES) must be between 1024 and 104857600, got 10",
        ] {
            assert!(err.contains(refusal), "{refusal} missing: {err}");
        }
        let fine = load(&[
            ("GATEWAY__AGENT__OPENAI__MAX_IMAGE_BYTES", "1024"),
            ("GATEWAY__AGENT__OPENAI__MAX_TEXT_BYTES", "1048576"),
        ])
        .unwrap();
        assert_eq!(fine.agent.openai.max_image_bytes, 1024);
        assert_eq!(fine.agent.openai.max_text_bytes, 1_048_576);
        let defaults = Settings::defaults();
        assert_eq!(defaults.agent.openai.max_image_bytes, 4 * 1024 * 1024);
        assert_eq!(defaults.agent.openai.max_text_bytes, 64 * 1024);
    }

    #[test]
    fn one_refusal_is_reported_without_a_count() {
        let err = load(&[("GATEWAY__DATABASE__TURN_WRITERS", "0")]).unwrap_err();
        assert!(
            err.starts_with("refusing to start: database.turn_writers"),
            "{err}"
        );
        assert!(!err.contains("problems"), "{err}");
    }

    #[test]
    fn problems_of_several_sections_and_rules_are_reported_together() {
        let err = load(&[
            ("APP_ENV", "production"),
            ("GATEWAY__SERVER__API_PREFIX", "/api/"),
            ("DATABASE_URL", "mysql://db/x"),
            ("REDIS_URL", "http://cache"),
            ("GATEWAY__RATE_LIMITS__TURNS__BURST", "0"),
        ])
        .unwrap_err();
        // The prefix, the database, two rate-limit rules, the missing session secret
        // and the missing upstream verifier.
        assert!(err.contains("6 problems"), "{err}");
    }

    #[test]
    fn the_document_paths_alone_are_read_and_checked() {
        let vars = |prefix: &str| {
            vec![
                ("APP_CONFIG_DIR".to_owned(), "/nonexistent".to_owned()),
                ("APP_ENV".to_owned(), "production".to_owned()),
                ("GATEWAY__SERVER__API_PREFIX".to_owned(), prefix.to_owned()),
            ]
        };
        assert_eq!(
            Settings::document_paths_from(&vars("/v2")).unwrap(),
            ("/v2".to_owned(), "/chatkit".to_owned())
        );
        let err = Settings::document_paths_from(&vars("/docs")).unwrap_err();
        assert!(err.to_string().contains("overlaps /docs"), "{err}");
    }
}
