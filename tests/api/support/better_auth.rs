//! The real Better Auth (npm `better-auth`, jwt + bearer plugins, in-memory adapter), run
//! by Node from tests/better-auth/ (Node >= 20 and its pinned packages): it signs a user
//! up and prints one line of JSON with the user's JWT and its own base URL.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use serde_json::Value;

use super::{fixtures, wait::within};

/// A running Better Auth server; killed when dropped.
pub struct BetterAuth {
    child: Child,
    /// What it printed: `base_url`, `token` (signed with `ALG`), `user_id`, ….
    pub info: Value,
}

impl Drop for BetterAuth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BetterAuth {
    /// A server signing with `alg` (`EdDSA`, `ES256`, `ES512`, `RS256`, `PS256`), once it
    /// has issued its token.
    pub async fn start(alg: &str) -> Self {
        let dir = fixtures::better_auth_dir();
        let child = Command::new("node")
            .arg(format!("{dir}/server.mjs"))
            .env("ALG", alg)
            // Piped stdin: the server exits when this test process goes away.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (Node >= 20 is needed for this test)");
        // Owned at once, so every path (a panic too) kills and reaps it.
        let mut auth = Self {
            child,
            info: Value::Null,
        };
        let stdout = auth.child.stdout.take().unwrap();
        let read = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = within("Better Auth starting", read).await.unwrap().unwrap();
        auth.info =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("fixture printed {line:?}"));
        auth
    }
}
