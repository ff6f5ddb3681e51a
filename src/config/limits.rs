//! How much one caller may do: how often (the rate limits) and how much at once (the
//! size of a message and of the history sent to the model).
//!
//! [`MessageSettings`] lives here rather than in a file of its own: its fields bound what
//! one caller's message may hold and how much of a thread one turn replays to the model,
//! the same kind of per-caller cost cap the token buckets are, and a file for one
//! four-field struct would be a module named for nothing but its type.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{check_ranges, setting_names, SEC_DAY};

#[derive(Clone, Debug, Deserialize)]
pub struct MessageSettings {
    pub max_chars: usize,
    pub history_max_items: u64,
    pub history_max_chars: usize,
    pub stale_pending_secs: u64,
}

impl MessageSettings {
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        check_ranges(
            &[
                ("messages.max_chars", self.max_chars as u64, 1, 1_000_000),
                (
                    "messages.history_max_items",
                    self.history_max_items,
                    0,
                    10_000,
                ),
                (
                    "messages.history_max_chars",
                    self.history_max_chars as u64,
                    0,
                    10_000_000,
                ),
                (
                    "messages.stale_pending_secs",
                    self.stale_pending_secs,
                    1,
                    7 * SEC_DAY,
                ),
            ],
            problems,
        );
    }
}

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
    /// Every bucket out of range, the Redis timeout, and a Redis URL of another scheme.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        for (name, limit) in [
            ("turns", self.turns),
            ("sessions", self.sessions),
            ("refreshes", self.refreshes),
        ] {
            // Above 60 000 a minute the interval between tokens would be under 1 ms, the
            // resolution the shared (Redis) mode counts in.
            check_ranges(
                &[
                    (
                        &format!("rate_limits.{name}.per_minute"),
                        limit.per_minute.into(),
                        0,
                        60_000,
                    ),
                    (
                        &format!("rate_limits.{name}.burst"),
                        limit.burst.into(),
                        1,
                        10_000,
                    ),
                ],
                problems,
            );
        }
        check_ranges(
            &[(
                "rate_limits.redis_timeout_ms",
                self.redis_timeout_ms,
                1,
                10_000,
            )],
            problems,
        );
        let url = self.redis_url.expose_secret();
        if !(url.is_empty() || url.starts_with("redis://") || url.starts_with("rediss://")) {
            // The URL may carry a password: name the setting, not the value.
            problems.push(format!(
                "{} must be a redis:// or rediss:// URL",
                setting_names("rate_limits.redis_url")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn the_message_section_reports_every_out_of_range_value() {
        let mut messages = Settings::defaults().messages;
        let mut found = Vec::new();
        messages.check(&mut found);
        assert!(found.is_empty(), "{found:?}");
        messages.max_chars = 0;
        messages.stale_pending_secs = 0;
        messages.check(&mut found);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("GATEWAY__MESSAGES__MAX_CHARS"));
        assert!(found[1].contains("GATEWAY__MESSAGES__STALE_PENDING_SECS"));
    }

    #[test]
    fn the_rate_limit_section_reports_every_bucket_and_the_url() {
        let mut limits = Settings::defaults().rate_limits;
        let mut found = Vec::new();
        limits.check(&mut found);
        assert!(found.is_empty(), "{found:?}");
        limits.turns.per_minute = 60_001;
        limits.sessions.burst = 0;
        limits.refreshes.burst = 10_001;
        limits.redis_timeout_ms = 0;
        limits.redis_url = SecretString::from("http://:hunter2@cache:6379");
        limits.check(&mut found);
        assert_eq!(found.len(), 5, "{found:?}");
        assert_eq!(
            found[0],
            "rate_limits.turns.per_minute (GATEWAY__RATE_LIMITS__TURNS__PER_MINUTE) must be \
             between 0 and 60000, got 60001"
        );
        assert!(found[1].contains("rate_limits.sessions.burst"));
        assert!(found[2].contains("rate_limits.refreshes.burst"));
        assert!(found[3].contains("GATEWAY__RATE_LIMITS__REDIS_TIMEOUT_MS"));
        assert!(found[4].contains("REDIS_URL) must be a redis://"));
        assert!(!found.concat().contains("hunter2"));
    }
}
