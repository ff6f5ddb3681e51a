//! The outside programs some tests need, and the one place that says how to get them.
//!
//! A test that needs one is marked
//! `#[ignore = "needs the test fixtures: run scripts/setup-fixtures.sh (scripts/test.sh runs these)"]`:
//! the real Better Auth server (Node and tests/better-auth's packages), the real MCP server
//! (tests/mcp's venv), PostgreSQL's server programs (a private cluster), Redis on
//! 127.0.0.1:6379. A plain `cargo test` on a fresh clone lists those tests as ignored,
//! neither failing them nor passing them unrun; `scripts/setup-fixtures.sh` installs what
//! it can and checks the rest, and scripts/test.sh runs every test (`--include-ignored`).
//! Run without its fixture, such a test fails at once with the same message.
//!
//! A test about PostgreSQL itself is named `postgres_only_…` and marked
//! `#[ignore = "PostgreSQL only: …"]`; it needs `TEST_DATABASE_URL=postgres://…`, and
//! scripts/test.sh runs it in its PostgreSQL pass (its SQLite pass skips the name).

use std::path::{Path, PathBuf};

/// What installs or checks every fixture.
pub const SETUP: &str = "scripts/setup-fixtures.sh";

fn missing(what: &str) -> ! {
    panic!("{what}: run {SETUP} (it installs or checks every fixture of the suite)")
}

/// tests/better-auth with its pinned packages installed, for the real Better Auth server.
pub fn better_auth_dir() -> &'static str {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/better-auth");
    if !Path::new(dir).join("node_modules/better-auth").exists() {
        missing("better-auth is not installed in tests/better-auth");
    }
    dir
}

/// The Python that runs the MCP test server: `MCP_TEST_PYTHON`, or tests/mcp's venv.
pub fn mcp_python() -> String {
    if let Ok(python) = std::env::var("MCP_TEST_PYTHON") {
        return python;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/.venv/bin/python");
    if !Path::new(venv).exists() {
        missing(
            "the MCP test server's venv (tests/mcp/.venv, made by tests/mcp/setup.sh) is missing",
        );
    }
    venv.to_owned()
}

/// Redis as it runs on this machine and in CI.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// [`REDIS_URL`], once something answers there.
pub fn redis_url() -> &'static str {
    if std::net::TcpStream::connect("127.0.0.1:6379").is_err() {
        missing("no Redis listens on 127.0.0.1:6379");
    }
    REDIS_URL
}

/// A program of the PostgreSQL server (`initdb`, `pg_ctl`): Debian's layout, or on PATH.
pub fn postgres_program(name: &str) -> PathBuf {
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|dir| dir.path().join("bin").join(name))
        .find(|path| path.exists());
    let on_path = || {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(name))
            .find(|path| path.exists())
    };
    debian
        .or_else(on_path)
        .unwrap_or_else(|| missing(&format!("PostgreSQL's {name} is not installed")))
}

/// The database of a PostgreSQL-only test: `TEST_DATABASE_URL`, which must be PostgreSQL.
pub fn postgres_url() -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => panic!(
            "a PostgreSQL-only test: set TEST_DATABASE_URL=postgres://… \
             (scripts/test.sh's PostgreSQL pass does)"
        ),
    }
}
