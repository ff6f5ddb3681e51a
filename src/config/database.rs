//! The database: which one (`DATABASE_URL`) and how the pool and writers use it.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{check_ranges, setting_names};

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
    /// Every out-of-range value, and a URL of a kind the gateway does not speak.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        check_ranges(
            &[
                (
                    "database.max_connections",
                    self.max_connections.into(),
                    1,
                    1_000,
                ),
                ("database.busy_timeout_ms", self.busy_timeout_ms, 0, 600_000),
                ("database.turn_writers", self.turn_writers.into(), 1, 64),
                (
                    "database.acquire_timeout_ms",
                    self.acquire_timeout_ms,
                    100,
                    60_000,
                ),
            ],
            problems,
        );
        problems.extend(self.check_url());
    }

    /// Refuses a URL of another kind before anything connects: sqlx read `mysql://` as
    /// PostgreSQL, and a URL without a scheme failed as an I/O error. Only the scheme is
    /// quoted, as the URL may hold a password.
    fn check_url(&self) -> Option<String> {
        let url = self.url.expose_secret();
        if DATABASE_SCHEMES.iter().any(|s| url.starts_with(s)) {
            return None;
        }
        let given = match url.split_once(':') {
            Some((scheme, _)) if !scheme.is_empty() && !scheme.contains(['/', '@']) => {
                format!("has the scheme {scheme:?}")
            }
            _ => "is not a URL".to_owned(),
        };
        Some(format!(
            "{} {given}; use sqlite://path/to/file.db or postgres://user:password@host/database",
            setting_names("database.url")
        ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn problems(edit: impl FnOnce(&mut DatabaseSettings)) -> Vec<String> {
        let mut database = Settings::defaults().database;
        edit(&mut database);
        let mut problems = Vec::new();
        database.check(&mut problems);
        problems
    }

    #[test]
    fn the_database_section_reports_its_ranges_and_its_url_together() {
        assert!(problems(|_| {}).is_empty());
        let found = problems(|d| {
            d.max_connections = 0;
            d.acquire_timeout_ms = 99;
            d.url = SecretString::from("mysql://app:hunter2@db/chat");
        });
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("GATEWAY__DATABASE__MAX_CONNECTIONS"));
        assert!(found[1].contains("must be between 100 and 60000, got 99"));
        assert!(found[2].contains("DATABASE_URL) has the scheme \"mysql\""));
        assert!(!found[2].contains("hunter2"), "{found:?}");
    }
}
