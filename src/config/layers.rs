//! Where settings come from, each layer over the one before: the compiled-in
//! `config/default.toml` → `default.toml` in `$APP_CONFIG_DIR` (`config` by default) → the
//! compiled-in `config/$APP_ENV.toml` → `$APP_ENV.toml` in `$APP_CONFIG_DIR` →
//! `GATEWAY__SECTION__KEY` variables → the public variable names (`HOST`, `PORT`,
//! `DATABASE_URL`, ...), which deployment scripts rely on.

use config::{Config, ConfigBuilder, Environment, File, FileFormat};

use super::{ConfigError, Settings};

const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
const DEVELOPMENT_TOML: &str = include_str!("../../config/development.toml");
const PRODUCTION_TOML: &str = include_str!("../../config/production.toml");

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

/// `key (GATEWAY__KEY[ / PUBLIC_NAME])`: every name an operator may have set it by.
pub(super) fn setting_names(key: &str) -> String {
    let env = format!("GATEWAY__{}", key.to_uppercase().replace('.', "__"));
    match PUBLIC_ENV.iter().find(|(_, k)| *k == key) {
        Some((public, _)) => format!("{key} ({env} / {public})"),
        None => format!("{key} ({env})"),
    }
}

/// `APP_ENV`, checked here: the deserializer would only say "no variant constructor … for
/// key `env`", naming neither the variable the operator set nor what it may be.
pub(super) fn app_env(vars: &[(String, String)]) -> Result<String, String> {
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
pub(super) fn layers(
    vars: &[(String, String)],
    env_name: &str,
) -> Result<ConfigBuilder<config::builder::DefaultState>, ConfigError> {
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
                .with_list_parse_key("agent.openai.models")
                .try_parsing(true)
                .source(Some(vars.iter().cloned().collect())),
        )
        .set_override("env", env_name)?;
    for (name, key) in PUBLIC_ENV {
        builder = builder.set_override_option(*key, lookup(vars, name))?;
    }
    Ok(builder)
}

/// The settings every layer for `env_name` makes, with each value that does not parse
/// refused onto `refusals` and replaced by its default, so that the rest can still be read
/// and checked. None when a value's default does not fit either.
pub(super) fn read(
    vars: &[(String, String)],
    env_name: &str,
    refusals: &mut Vec<String>,
) -> Result<Option<Settings>, ConfigError> {
    let mut builder = layers(vars, env_name)?;
    let mut replaced = std::collections::HashSet::new();
    // Each pass replaces one unparsable value by its default; a key that fails again
    // (its default does not fit either) ends the reading.
    loop {
        match builder.build_cloned()?.try_deserialize::<Settings>() {
            Ok(settings) => return Ok(Some(settings)),
            Err(e) => {
                let (key, msg) = unparsable(&e);
                refusals.push(msg);
                let Some(key) = key.filter(|k| replaced.insert(k.clone())) else {
                    return Ok(None);
                };
                builder = builder.set_override(key.as_str(), default_value(&key))?;
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all = vec![("APP_CONFIG_DIR".to_owned(), "/nonexistent".to_owned())];
        all.extend(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        all
    }

    #[test]
    fn a_setting_is_named_by_its_variable_and_its_public_name() {
        assert_eq!(
            setting_names("server.port"),
            "server.port (GATEWAY__SERVER__PORT / PORT)"
        );
        assert_eq!(
            setting_names("rate_limits.turns.burst"),
            "rate_limits.turns.burst (GATEWAY__RATE_LIMITS__TURNS__BURST)"
        );
    }

    #[test]
    fn every_unparsable_value_is_refused_and_the_rest_is_still_read() {
        let mut refusals = Vec::new();
        let settings = read(
            &vars(&[
                ("PORT", "http"),
                ("GATEWAY__DATABASE__MAX_CONNECTIONS", "many"),
                ("GATEWAY__MESSAGES__MAX_CHARS", "100"),
            ]),
            "development",
            &mut refusals,
        )
        .unwrap()
        .expect("the defaults stand in for the bad values");
        assert_eq!(refusals.len(), 2, "{refusals:?}");
        // In the order the deserializer meets them, which is not the order of the fields.
        let all = refusals.concat();
        for said in [
            "server.port (GATEWAY__SERVER__PORT / PORT) = string \"http\" is not valid",
            "database.max_connections (GATEWAY__DATABASE__MAX_CONNECTIONS) = string \"many\"",
        ] {
            assert!(all.contains(said), "{said}: {refusals:?}");
        }
        assert_eq!(settings.messages.max_chars, 100);
    }

    #[test]
    fn an_unknown_app_env_names_the_variable_and_its_values() {
        let err = app_env(&vars(&[("APP_ENV", "prod")])).unwrap_err();
        assert!(err.contains("APP_ENV = \"prod\""), "{err}");
        assert_eq!(app_env(&vars(&[])).unwrap(), "development");
    }
}
