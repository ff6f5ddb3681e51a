//! The binary as an operator starts it: the settings it runs with away from the
//! repository, and what its first log lines say.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use chatkit_gateway::auth::AuthService;
use serde_json::{json, Value};

use crate::helpers::{free_port, TestDb};

const SESSION_SECRET: &str = "startup-test-session-secret-7f3a9c2e1b8d4f60";
const UPSTREAM_SECRET: &str = "startup-test-upstream-secret-5e1d8a4c9b2f7036";

/// The binary with its JSON log lines handed over one by one; killed when dropped.
struct Started {
    child: Child,
    lines: mpsc::Receiver<String>,
    base: String,
    _cwd: tempfile::TempDir,
}

impl Started {
    /// `serve` from an empty working directory, with nothing but `env` set.
    fn spawn(env: &[(&str, &str)]) -> Self {
        let cwd = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatkit-gateway"))
            .current_dir(cwd.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("GATEWAY__LOG__FORMAT", "json")
            .envs(env.iter().copied())
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the gateway starts");
        // Drained on a thread of its own, so a full pipe never stalls the server.
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            base: format!("http://127.0.0.1:{port}"),
            _cwd: cwd,
        }
    }

    /// The next log line, parsed.
    fn next_line(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("a log line");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// Log lines until one satisfies `found`.
    fn line_where(&self, found: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self.next_line();
            if found(&line) {
                return line;
            }
        }
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not become ready");
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn production_settings_apply_when_started_from_an_empty_directory() {
    let db = TestDb::new().await;
    let gateway = Started::spawn(&[
        ("APP_ENV", "production"),
        ("CHATKIT_SESSION_SECRET", SESSION_SECRET),
        ("BETTER_AUTH_SECRET", UPSTREAM_SECRET),
        ("DATABASE_URL", &db.url),
    ]);
    // JSON although only the development defaults sit in no file here: production.toml's
    // log format, host and rate limits come compiled in.
    let first = gateway.next_line();
    assert_eq!(first["message"], "chatkit-gateway listening", "{first}");
    assert_eq!(first["bind"], "0.0.0.0", "{first}");
    assert_eq!(first["env"], "production", "{first}");
    assert_eq!(first["rate_limits"], "per instance", "{first}");
    assert_eq!(first["level"], "INFO", "{first}");
    assert!(first.get("warning").is_none(), "{first}");
    gateway.wait_ready().await;

    let client = reqwest::Client::new();
    let upstream = AuthService::dev_upstream_token(UPSTREAM_SECRET, "alice", 600);
    let session: Value = client
        .post(format!("{}/api/chatkit/session", gateway.base))
        .bearer_auth(upstream)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["client_secret"].as_str().expect("client_secret");
    // Well past the turn burst (production allows 10 at once): the rest are refused.
    let mut answered = 0;
    let mut limited = Vec::new();
    for i in 0..25 {
        let resp = client
            .post(format!("{}/api/chatkit/messages", gateway.base))
            .bearer_auth(token)
            .json(&json!({"message": format!("add a task number {i}")}))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 | 201 => answered += 1,
            429 => {
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let body: Value = resp.json().await.unwrap();
                limited.push((retry_after, body["error"]["code"].clone()));
            }
            other => panic!("turn {i}: {other} {}", resp.text().await.unwrap()),
        }
    }
    assert!(answered >= 1, "no turn was answered");
    assert!(!limited.is_empty(), "25 rapid turns, none limited");
    for (retry_after, code) in limited {
        assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
        assert_eq!(code, "rate_limited");
    }
}

#[tokio::test]
async fn the_first_line_tells_where_what_and_warns_of_development_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/gateway.db", dir.path().display());
    let gateway = Started::spawn(&[("DATABASE_URL", &db_url), ("AGENT_PROVIDER", "local")]);
    let first = gateway.next_line();
    assert_eq!(first["message"], "chatkit-gateway listening", "{first}");
    assert_eq!(first["url"], gateway.base, "{first}");
    assert_eq!(first["docs"], format!("{}/docs", gateway.base), "{first}");
    assert_eq!(first["database"], db_url, "{first}");
    assert_eq!(first["agent"], "local", "{first}");
    assert_eq!(first["level"], "WARN", "{first}");
    let warning = first["warning"].as_str().expect("a warning");
    assert!(warning.contains("development secrets"), "{warning}");
    assert!(warning.contains("CHATKIT_SESSION_SECRET"), "{warning}");
    gateway.wait_ready().await;

    // The documentation routes have names of their own in the access log.
    let client = reqwest::Client::new();
    for path in ["/docs", "/openapi.json"] {
        let resp = client
            .get(format!("{}{path}", gateway.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let line = gateway.line_where(|l| l["span"]["path"] == path && l["message"] == "request");
        assert_eq!(line["route"], path, "{line}");
    }
}

#[tokio::test]
async fn without_development_secrets_the_first_line_has_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}/gateway.db", dir.path().display());
    let gateway = Started::spawn(&[
        ("DATABASE_URL", &db_url),
        ("CHATKIT_SESSION_SECRET", SESSION_SECRET),
        ("BETTER_AUTH_SECRET", UPSTREAM_SECRET),
    ]);
    let first = gateway.next_line();
    assert_eq!(first["message"], "chatkit-gateway listening", "{first}");
    assert_eq!(first["env"], "development", "{first}");
    assert_eq!(first["level"], "INFO", "{first}");
    assert!(first.get("warning").is_none(), "{first}");
}
