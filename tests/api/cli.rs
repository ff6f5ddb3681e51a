//! The binary itself: configuration refusals, dev-token, openapi.

use std::process::Command;

use chatkit_gateway::{config::AgentProvider, Settings};
use secrecy::ExposeSecret;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatkit-gateway"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("APP_CONFIG_DIR", "/nonexistent");
    cmd
}

/// Runs `serve` with `env` added, which must be refused as a configuration error (exit 2);
/// returns what it printed.
fn refused_config(env: &[(&str, &str)]) -> String {
    let out = bin()
        .envs(env.iter().copied())
        .arg("serve")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
    stderr
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn public_environment_names_override_defaults() {
    let s = Settings::load_from(&vars(&[
        ("APP_CONFIG_DIR", "/nonexistent"),
        ("HOST", "0.0.0.0"),
        ("PORT", "9123"),
        ("DATABASE_URL", "postgres://db/x"),
        ("CHATKIT_SESSION_TTL_SECS", "600"),
        ("GATEWAY__MESSAGES__MAX_CHARS", "100"),
        ("GATEWAY__UPSTREAM__ALGORITHMS", "EdDSA,ES256"),
        (
            "GATEWAY__SERVER__CORS_ALLOWED_ORIGINS",
            "https://a.example,https://b.example",
        ),
        ("BETTER_AUTH_URL", "https://auth.example.com"),
        ("AGENT_PROVIDER", "openai"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1"),
        ("OPENAI_MODEL", "llama3.1"),
    ]))
    .unwrap();
    assert_eq!(s.upstream.algorithms, ["EdDSA", "ES256"]);
    assert_eq!(
        s.server.cors_allowed_origins,
        ["https://a.example", "https://b.example"]
    );
    assert_eq!(
        s.upstream.jwks_url().as_deref(),
        Some("https://auth.example.com/api/auth/jwks")
    );
    assert_eq!(
        (s.agent.provider.as_str(), s.agent.openai.model.as_str()),
        ("openai", "llama3.1")
    );
    assert!(Settings::load_from(&vars(&[
        ("APP_CONFIG_DIR", "/nonexistent"),
        ("AGENT_PROVIDER", "claude")
    ]))
    .is_err());
    assert_eq!(s.bind_address(), "0.0.0.0:9123");
    assert_eq!(s.database.url.expose_secret(), "postgres://db/x");
    assert_eq!(s.session.ttl_secs, 600);
    assert_eq!(s.messages.max_chars, 100);
    assert!(Settings::load_from(&vars(&[
        ("APP_CONFIG_DIR", "/nonexistent"),
        ("PORT", "http")
    ]))
    .is_err());
}

#[test]
fn the_provider_http2_setting_takes_a_name_or_a_boolean() {
    use chatkit_gateway::config::Http2Mode;
    let load = |value: Option<&str>| {
        let mut pairs = vec![("APP_CONFIG_DIR", "/nonexistent")];
        pairs.extend(value.map(|v| ("GATEWAY__AGENT__OPENAI__HTTP2", v)));
        Settings::load_from(&vars(&pairs))
            .map(|s| s.agent.openai.http2)
            .map_err(|e| e.to_string())
    };
    assert_eq!(load(None), Ok(Http2Mode::Auto));
    assert_eq!(load(Some("auto")), Ok(Http2Mode::Auto));
    assert_eq!(load(Some("always")), Ok(Http2Mode::Always));
    assert_eq!(load(Some("never")), Ok(Http2Mode::Never));
    // The booleans of the setting before `auto`.
    assert_eq!(load(Some("true")), Ok(Http2Mode::Always));
    assert_eq!(load(Some("false")), Ok(Http2Mode::Never));
    let err = load(Some("sometimes")).unwrap_err();
    assert!(err.contains("agent.openai.http2"), "{err}");
}

#[test]
fn production_refuses_development_or_weak_secrets() {
    let strong_a = "a-strong-random-session-secret-0123456789";
    let strong_b = "a-strong-random-upstream-secret-987654321";
    let base = [
        ("APP_CONFIG_DIR", "/nonexistent"),
        ("APP_ENV", "production"),
    ];
    let load = |extra: &[(&str, &str)]| {
        let mut all = base.to_vec();
        all.extend_from_slice(extra);
        Settings::load_from(&vars(&all)).map_err(|e| e.to_string())
    };
    // Production has no session secret unless one is given.
    let err = load(&[("BETTER_AUTH_SECRET", strong_b)]).unwrap_err();
    assert!(
        err.contains("CHATKIT_SESSION_SECRET") && err.contains("32"),
        "{err}"
    );
    let dev = "INSECURE-DEV-chatkit-session-secret-do-not-use-in-production";
    let err = load(&[
        ("CHATKIT_SESSION_SECRET", dev),
        ("BETTER_AUTH_SECRET", strong_b),
    ])
    .unwrap_err();
    assert!(
        err.contains("CHATKIT_SESSION_SECRET") && err.contains("development"),
        "{err}"
    );
    let dev_upstream = "INSECURE-DEV-better-auth-secret-do-not-use-in-production";
    let err = load(&[
        ("CHATKIT_SESSION_SECRET", strong_a),
        ("BETTER_AUTH_SECRET", dev_upstream),
    ])
    .unwrap_err();
    assert!(
        err.contains("BETTER_AUTH_SECRET") && err.contains("development"),
        "{err}"
    );
    let err = load(&[
        ("CHATKIT_SESSION_SECRET", "short"),
        ("BETTER_AUTH_SECRET", strong_b),
    ])
    .unwrap_err();
    assert!(
        err.contains("CHATKIT_SESSION_SECRET") && err.contains("32"),
        "{err}"
    );
    let err = load(&[("CHATKIT_SESSION_SECRET", strong_a)]).unwrap_err();
    assert!(
        err.contains("upstream verifier") && err.contains("BETTER_AUTH_URL"),
        "{err}"
    );
    // JWKS alone is a complete production setup.
    let jwks_only = load(&[
        ("CHATKIT_SESSION_SECRET", strong_a),
        ("BETTER_AUTH_URL", "https://auth.example.com/base"),
    ])
    .unwrap();
    assert_eq!(
        jwks_only.upstream.jwks_url().as_deref(),
        Some("https://auth.example.com/base/api/auth/jwks")
    );
    assert_eq!(
        jwks_only.upstream.base_origin().as_deref(),
        Some("https://auth.example.com")
    );
    let err = load(&[
        ("CHATKIT_SESSION_SECRET", strong_a),
        ("BETTER_AUTH_JWKS_URL", "ftp://x"),
    ])
    .unwrap_err();
    assert!(err.contains("http"), "{err}");
    let err = load(&[
        ("CHATKIT_SESSION_SECRET", strong_a),
        ("BETTER_AUTH_SECRET", strong_a),
    ])
    .unwrap_err();
    assert!(err.contains("differ"), "{err}");
    let ok = load(&[
        ("CHATKIT_SESSION_SECRET", strong_a),
        ("BETTER_AUTH_SECRET", strong_b),
    ])
    .unwrap();
    assert_eq!(ok.env, chatkit_gateway::config::AppEnv::Production);
    // Development accepts its own defaults.
    assert!(Settings::load_from(&vars(&[("APP_CONFIG_DIR", "/nonexistent")])).is_ok());
}

#[test]
fn the_binary_refuses_to_start_in_production_with_the_development_secret() {
    let out = bin()
        .env("APP_ENV", "production")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to start") && stderr.contains("CHATKIT_SESSION_SECRET"),
        "{stderr}"
    );
    let out = bin()
        .env("APP_ENV", "production")
        .args(["dev-token", "--user", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn openapi_prints_the_document() {
    let out = bin().arg("openapi").output().unwrap();
    assert!(out.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(spec["info"]["title"], "chatkit-gateway");
    assert!(spec["paths"]["/api/chatkit/messages"]["post"].is_object());
}

/// The allocator's purge timing (bench/RESULTS.md, "jemalloc instead of mimalloc") and
/// arenas are compiled in from `.cargo/config.toml`; without them jemalloc's 10 s default
/// would keep the standard benchmark's peak memory 8 MiB higher, its arenas another 6 MiB
/// on a 2-core machine. jemalloc prints the settings it runs with at exit
/// when asked through its environment variable: `MALLOC_CONF`, the unprefixed name, which
/// only a jemalloc built as the process's `malloc` reads (one built beside glibc's reads
/// `_RJEM_MALLOC_CONF`), so the bundled SQLite allocates from it too.
#[test]
fn the_allocator_runs_with_the_configured_purge_timing_and_arenas() {
    let out = bin()
        .arg("--version")
        .env("MALLOC_CONF", "stats_print:true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stats = String::from_utf8_lossy(&out.stderr);
    for setting in [
        "opt.background_thread: true",
        "opt.dirty_decay_ms: 3000",
        "opt.muzzy_decay_ms: 0",
        "opt.percpu_arena: \"phycpu\"",
    ] {
        assert!(stats.contains(setting), "{setting} not in:\n{stats}");
    }
}

#[test]
fn openapi_into_a_closed_pipe_exits_quietly() {
    // `openapi | head` closes the pipe after a few lines; closing it before the first
    // write is the same case, made deterministic.
    let mut child = bin()
        .arg("openapi")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

#[test]
fn a_bad_app_env_names_app_env_and_its_values() {
    let out = bin()
        .env("APP_ENV", "prod")
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for word in ["APP_ENV", "\"prod\"", "\"development\"", "\"production\""] {
        assert!(stderr.contains(word), "{word} missing: {stderr}");
    }
}

#[test]
fn a_missing_session_secret_says_not_set() {
    let out = bin()
        .env("APP_ENV", "production")
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("CHATKIT_SESSION_SECRET") && stderr.contains("is not set"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_database_is_named_once() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let out = bin()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/test")
        .env("GATEWAY__DATABASE__ACQUIRE_TIMEOUT_MS", "300")
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(
        stderr.matches("pool timed out").count() <= 1,
        "the chain repeats itself: {stderr}"
    );
}

#[test]
fn every_configuration_refusal_is_reported_at_once() {
    let out = bin()
        .env("APP_ENV", "production")
        .env("GATEWAY__MESSAGES__MAX_CHARS", "0")
        .env("AGENT_PROVIDER", "openai")
        .env("OPENAI_BASE_URL", "ftp://models.example")
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for word in [
        "4 problems",
        "GATEWAY__MESSAGES__MAX_CHARS",
        "OPENAI_BASE_URL",
        "CHATKIT_SESSION_SECRET",
        "no upstream verifier",
    ] {
        assert!(stderr.contains(word), "{word} missing: {stderr}");
    }
}

#[tokio::test]
async fn dev_token_is_accepted_by_session() {
    let out = bin()
        .args(["dev-token", "--user", "alice", "--ttl", "120"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let app = crate::helpers::spawn_app().await;
    let reply = app
        .request(
            reqwest::Method::POST,
            "/api/chatkit/session",
            Some(&token),
            None,
            &[],
        )
        .await
        .ok();
    assert_eq!(reply["user_id"], "alice");
}

#[test]
fn numeric_settings_out_of_range_are_refused_by_name() {
    for (name, value) in [
        ("GATEWAY__DATABASE__MAX_CONNECTIONS", "0"),
        ("GATEWAY__DATABASE__MAX_CONNECTIONS", "100000"),
        ("GATEWAY__STREAM__KEEP_ALIVE_SECS", "0"),
        ("GATEWAY__SERVER__BODY_LIMIT_BYTES", "0"),
        ("GATEWAY__MESSAGES__STALE_PENDING_SECS", "0"),
        ("GATEWAY__UPSTREAM__JWKS_TIMEOUT_MS", "0"),
        ("GATEWAY__AGENT__OPENAI__TEMPERATURE", "7.5"),
        ("CHATKIT_SESSION_TTL_SECS", "0"),
    ] {
        let err = Settings::load_from(&vars(&[("APP_CONFIG_DIR", "/nonexistent"), (name, value)]))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(name) && err.contains(value),
            "{name}={value}: {err}"
        );
    }
    let err = Settings::load_from(&vars(&[
        ("APP_CONFIG_DIR", "/nonexistent"),
        ("GATEWAY__AGENT__OPENAI__RETRY_BASE_MS", "5000"),
        ("GATEWAY__AGENT__OPENAI__RETRY_MAX_MS", "100"),
    ]))
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("GATEWAY__AGENT__OPENAI__RETRY_MAX_MS"),
        "{err}"
    );
}

#[test]
fn the_binary_exits_2_naming_an_out_of_range_setting() {
    let out = bin()
        .env("GATEWAY__DATABASE__MAX_CONNECTIONS", "0")
        .env("DATABASE_URL", "sqlite::memory:")
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("GATEWAY__DATABASE__MAX_CONNECTIONS") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn secrets_with_too_little_entropy_are_refused() {
    let strong_b = "a-strong-random-upstream-secret-987654321";
    let strong_a = "a-strong-random-session-secret-0123456789";
    let load = |session: &str, upstream: &str| {
        Settings::load_from(&vars(&[
            ("APP_CONFIG_DIR", "/nonexistent"),
            ("APP_ENV", "production"),
            ("CHATKIT_SESSION_SECRET", session),
            ("BETTER_AUTH_SECRET", upstream),
        ]))
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let spaces = " ".repeat(32);
    let one_char = "a".repeat(40);
    let two_chars = "ab".repeat(20);
    let padded = format!(" {strong_a} ");
    for weak in [&spaces, &one_char, &two_chars, &padded] {
        let err = load(weak, strong_b).unwrap_err();
        assert!(
            err.contains("CHATKIT_SESSION_SECRET") && err.contains("openssl rand"),
            "{weak:?}: {err}"
        );
        let err = load(strong_a, weak).unwrap_err();
        assert!(err.contains("BETTER_AUTH_SECRET"), "{weak:?}: {err}");
    }
    assert!(load(&"0123456789abcdef".repeat(2), strong_b).is_ok());
    // Development refuses a weak session secret too: it signs real client_secrets.
    let err = Settings::load_from(&vars(&[
        ("APP_CONFIG_DIR", "/nonexistent"),
        ("CHATKIT_SESSION_SECRET", &spaces),
    ]))
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(err.contains("CHATKIT_SESSION_SECRET"), "{err}");
}

#[test]
fn the_provider_is_chosen_by_name_and_an_unknown_name_stops_the_start() {
    let load = |provider: &str| {
        Settings::load_from(&[
            ("APP_CONFIG_DIR".into(), "/nonexistent".into()),
            ("AGENT_PROVIDER".into(), provider.into()),
        ])
    };
    assert_eq!(
        load("openai").unwrap().agent.provider,
        AgentProvider::OpenAi
    );
    assert_eq!(load("local").unwrap().agent.provider, AgentProvider::Local);
    assert_eq!(Settings::defaults().agent.provider, AgentProvider::Local);
    for unknown in ["claude", "OpenAI", ""] {
        let err = load(unknown).unwrap_err().to_string();
        assert!(err.contains("AGENT_PROVIDER"), "{err}");
    }
    let out = bin()
        .env("AGENT_PROVIDER", "claude")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("AGENT_PROVIDER") && stderr.contains("claude"),
        "{stderr}"
    );
}

/// `chatkit-gateway healthcheck` with the environment of a container whose service listens
/// on `port`: its exit code and output.
async fn healthcheck(port: u16) -> (Option<i32>, String) {
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .env("APP_ENV", "production")
            .env("HOST", "0.0.0.0")
            .env("PORT", port.to_string())
            .env(
                "CHATKIT_SESSION_SECRET",
                "a-strong-random-session-secret-0123456789",
            )
            .env(
                "BETTER_AUTH_SECRET",
                "a-strong-random-upstream-secret-987654321",
            )
            .args(["healthcheck", "--timeout-ms", "2000"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn healthcheck_exits_0_when_ready_and_1_otherwise() {
    // Ready: the real service (bound to 127.0.0.1; a wildcard HOST is probed on loopback).
    let app = crate::helpers::spawn_app().await;
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let (code, out) = healthcheck(port).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("/readyz"), "{out}");
    // Up but not ready: /readyz answers 503.
    let not_ready = crate::helpers::serve_on_loopback(poem::Route::new().at(
        "/readyz",
        poem::get(poem::endpoint::make_sync(|_| {
            poem::http::StatusCode::SERVICE_UNAVAILABLE
        })),
    ))
    .await;
    let port: u16 = not_ready.rsplit(':').next().unwrap().parse().unwrap();
    let (code, out) = healthcheck(port).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("503"), "{out}");
    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (code, out) = healthcheck(port).await;
    assert_eq!(code, Some(1), "{out}");
}

#[test]
fn healthcheck_fails_with_1_when_the_settings_do_not_load() {
    // Docker reserves status 2 for health checks; the usual configuration exit code would
    // be misread there.
    let out = bin()
        .env("APP_ENV", "production")
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_api_prefix_that_is_not_a_plain_path_is_refused_by_name() {
    let load = |prefix: &str| {
        Settings::load_from(&vars(&[
            ("APP_CONFIG_DIR", "/nonexistent"),
            ("GATEWAY__SERVER__API_PREFIX", prefix),
        ]))
    };
    assert_eq!(
        Settings::defaults().server.api_prefix,
        chatkit_gateway::api::DEFAULT_PREFIX
    );
    for good in ["/v2", "/v2/chat", "/api/chatkit-v2"] {
        assert_eq!(load(good).unwrap().server.api_prefix, good);
    }
    for bad in [
        "",
        "/",
        "api",
        "/api/",
        "/a b",
        "/a?x",
        "/a#x",
        "/a//b",
        "/{id}",
        "/docs",
        "/chatkit",
        "/healthz/x",
    ] {
        let err = load(bad).map(|_| ()).unwrap_err().to_string();
        assert!(
            err.contains("GATEWAY__SERVER__API_PREFIX"),
            "{bad:?} was not refused by name: {err}"
        );
    }
    let out = bin()
        .env("GATEWAY__SERVER__API_PREFIX", "/api/")
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("GATEWAY__SERVER__API_PREFIX"), "{stderr}");
}

#[test]
fn openapi_follows_the_configured_prefix() {
    let out = bin()
        .env("GATEWAY__SERVER__API_PREFIX", "/v2/chat")
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v2/chat/session"), "{:?}", paths.keys());
    assert!(paths.contains_key("/healthz"));
    assert!(!paths.keys().any(|p| p.starts_with("/api/chatkit")));
    // Production secrets are not needed to print the document.
    let out = bin()
        .env("APP_ENV", "production")
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let out = bin()
        .env("GATEWAY__SERVER__API_PREFIX", "v2")
        .arg("openapi")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    for args in [
        &["--no-such-flag"][..],
        &["no-such-command"],
        &["dev-token"],
        &["dev-token", "--user", "alice", "--ttl", "soon"],
        &["healthcheck", "--timeout-ms", "-1"],
    ] {
        let out = bin().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
    }
    for args in [&["--help"][..], &["--version"], &["migrate", "--help"]] {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn unparsable_values_are_reported_with_the_other_refusals() {
    let out = bin()
        .env("APP_ENV", "production")
        .env("PORT", "http")
        .env("GATEWAY__DATABASE__MAX_CONNECTIONS", "many")
        .env("GATEWAY__MESSAGES__MAX_CHARS", "0")
        .arg("migrate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for word in [
        "5 problems",
        "PORT",
        "\"http\"",
        "GATEWAY__DATABASE__MAX_CONNECTIONS",
        "\"many\"",
        "GATEWAY__MESSAGES__MAX_CHARS",
        "CHATKIT_SESSION_SECRET",
    ] {
        assert!(stderr.contains(word), "{word} missing: {stderr}");
    }
}

#[test]
fn a_bad_app_env_is_reported_with_the_other_refusals() {
    let err = Settings::load_from(&vars(&[
        ("APP_CONFIG_DIR", "/nonexistent"),
        ("APP_ENV", "prod"),
        ("PORT", "http"),
        ("GATEWAY__SERVER__API_PREFIX", "/api/"),
    ]))
    .map(|_| ())
    .unwrap_err()
    .to_string();
    for word in [
        "3 problems",
        "APP_ENV",
        "PORT",
        "GATEWAY__SERVER__API_PREFIX",
    ] {
        assert!(err.contains(word), "{word} missing: {err}");
    }
}

#[test]
fn every_production_secret_problem_is_reported_at_once() {
    let stderr = refused_config(&[("APP_ENV", "production")]);
    assert!(stderr.contains("2 problems"), "{stderr}");
    assert!(stderr.contains("CHATKIT_SESSION_SECRET"), "{stderr}");
    assert!(stderr.contains("no upstream verifier"), "{stderr}");
    // A weak session secret and a development upstream secret, in one start.
    let stderr = refused_config(&[
        ("APP_ENV", "production"),
        ("CHATKIT_SESSION_SECRET", "short"),
        (
            "BETTER_AUTH_SECRET",
            "INSECURE-DEV-better-auth-secret-do-not-use-in-production",
        ),
    ]);
    assert!(stderr.contains("2 problems"), "{stderr}");
    assert!(
        stderr.contains("CHATKIT_SESSION_SECRET) is 5 bytes"),
        "{stderr}"
    );
    assert!(
        stderr.contains("BETTER_AUTH_SECRET) is the development secret"),
        "{stderr}"
    );
}

#[test]
fn database_url_takes_only_sqlite_or_postgres() {
    for (url, said) in [
        ("mysql://app:hunter2-password@db/chat", "\"mysql\""),
        ("garbage", "is not a URL"),
        ("/var/lib/chat.db", "is not a URL"),
    ] {
        let stderr = refused_config(&[("DATABASE_URL", url)]);
        assert!(stderr.contains("DATABASE_URL"), "{url}: {stderr}");
        assert!(stderr.contains(said), "{url}: {stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "the password is shown: {stderr}"
        );
    }
    for url in [
        "sqlite://data/x.db",
        "sqlite::memory:",
        "postgres://u@h/db",
        "postgresql://u@h/db",
    ] {
        let settings = Settings::load_from(&vars(&[
            ("APP_CONFIG_DIR", "/nonexistent"),
            ("DATABASE_URL", url),
        ]));
        assert!(settings.is_ok(), "{url}: {:?}", settings.err());
    }
}

#[test]
fn the_database_is_named_without_its_credentials() {
    let load = |url: &str| {
        Settings::load_from(&vars(&[
            ("APP_CONFIG_DIR", "/nonexistent"),
            ("DATABASE_URL", url),
        ]))
        .unwrap()
        .database
        .redacted_url()
    };
    assert_eq!(
        load("postgres://app:s3cret@db.internal:5432/chat?password=s3cret&sslmode=require"),
        "postgres://app@db.internal:5432/chat"
    );
    assert_eq!(load("postgresql://db/chat"), "postgresql://db/chat");
    assert_eq!(load("sqlite://data/x.db?mode=rwc"), "sqlite://data/x.db");
}

#[test]
fn config_files_layer_over_the_compiled_in_production_settings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("production.toml"),
        "[server]\nport = 9444\n",
    )
    .unwrap();
    let s = Settings::load_from(&vars(&[
        ("APP_CONFIG_DIR", dir.path().to_str().unwrap()),
        ("APP_ENV", "production"),
        (
            "CHATKIT_SESSION_SECRET",
            "a-strong-random-session-secret-0123456789",
        ),
        (
            "BETTER_AUTH_SECRET",
            "a-strong-random-upstream-secret-987654321",
        ),
    ]))
    .unwrap();
    // The file's own setting, and the compiled-in production ones it does not mention.
    assert_eq!(s.server.port, 9444);
    assert_eq!(s.server.host, "0.0.0.0");
    assert!(s.rate_limits.enabled);
    assert_eq!(s.log.format, chatkit_gateway::config::LogFormat::Json);
}
