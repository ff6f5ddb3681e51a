//! Who may call: the upstream tokens (Better Auth) a session starts from, the
//! client_secrets the gateway signs, and the rules every secret must meet.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{check_ranges, AppEnv, SEC_DAY};

/// Every development secret carries this marker, so production can recognise them.
pub const DEV_SECRET_MARKER: &str = "INSECURE-DEV";
const MIN_SECRET_BYTES: usize = 32;

/// Fewer distinct characters than this cannot come from a random generator at 32+ bytes
/// (hex has 16); `aaaa…`, `abab…` or 32 spaces pass a length check but not this one.
const MIN_DISTINCT_SECRET_CHARS: usize = 8;

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

    pub(super) fn uses_development_secret(&self) -> bool {
        self.hs256_secret
            .expose_secret()
            .contains(DEV_SECRET_MARKER)
    }

    /// Every out-of-range value, a JWKS URL that is not http(s), and in production a
    /// missing verifier or a secret anyone could have.
    pub(super) fn check(&self, env: AppEnv, problems: &mut Vec<String>) {
        check_ranges(
            &[
                ("upstream.leeway_secs", self.leeway_secs, 0, 3_600),
                (
                    "upstream.jwks_cache_ttl_secs",
                    self.jwks_cache_ttl_secs,
                    1,
                    7 * SEC_DAY,
                ),
                (
                    "upstream.jwks_min_ttl_secs",
                    self.jwks_min_ttl_secs,
                    0,
                    7 * SEC_DAY,
                ),
                (
                    "upstream.jwks_max_ttl_secs",
                    self.jwks_max_ttl_secs,
                    self.jwks_min_ttl_secs.max(1),
                    30 * SEC_DAY,
                ),
                (
                    "upstream.jwks_refetch_cooldown_secs",
                    self.jwks_refetch_cooldown_secs,
                    0,
                    SEC_DAY,
                ),
                ("upstream.jwks_timeout_ms", self.jwks_timeout_ms, 1, 120_000),
                (
                    "upstream.verified_cache_secs",
                    self.verified_cache_secs,
                    0,
                    3_600,
                ),
            ],
            problems,
        );
        if let Some(url) = self.jwks_url() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!(
                    "the JWKS URL {url:?} (BETTER_AUTH_URL / BETTER_AUTH_JWKS_URL) must be http(s)"
                ));
            }
        }
        if env != AppEnv::Production {
            return;
        }
        let secret = self.hs256_secret.expose_secret();
        let name = "upstream.hs256_secret (BETTER_AUTH_SECRET)";
        if secret.is_empty() {
            if self.jwks_url().is_none() {
                problems.push("no upstream verifier is configured; set BETTER_AUTH_URL (JWKS) or BETTER_AUTH_SECRET".into());
            }
        } else if secret.contains(DEV_SECRET_MARKER) {
            problems.push(format!(
                "{name} is the development secret; set the secret of your Better Auth deployment"
            ));
        } else if let Some(weak) = weak_secret(name, secret) {
            problems.push(weak);
        }
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

impl SessionSettings {
    pub(super) fn uses_development_secret(&self) -> bool {
        self.secret.expose_secret().contains(DEV_SECRET_MARKER)
    }

    /// Every out-of-range value and a signing secret that is missing or weak in any
    /// environment (it signs real client_secrets), or the development one in production.
    pub(super) fn check(&self, env: AppEnv, problems: &mut Vec<String>) {
        check_ranges(
            &[
                ("session.ttl_secs", self.ttl_secs, 1, SEC_DAY),
                ("session.leeway_secs", self.leeway_secs, 0, 3_600),
                (
                    "session.refresh_grace_secs",
                    self.refresh_grace_secs,
                    0,
                    30 * SEC_DAY,
                ),
                (
                    "session.max_session_age_secs",
                    self.max_session_age_secs,
                    1,
                    365 * SEC_DAY,
                ),
                (
                    "session.refresh_race_window_secs",
                    self.refresh_race_window_secs,
                    0,
                    300,
                ),
                (
                    "session.revocation_cache_ttl_secs",
                    self.revocation_cache_ttl_secs,
                    0,
                    3_600,
                ),
            ],
            problems,
        );
        let secret = self.secret.expose_secret();
        let name = "session.secret (CHATKIT_SESSION_SECRET)";
        if secret.is_empty() {
            problems.push(format!(
                "{name} is not set; set a random secret of at least {MIN_SECRET_BYTES} \
                 bytes (`openssl rand -base64 48`)"
            ));
        } else if env == AppEnv::Production && secret.contains(DEV_SECRET_MARKER) {
            problems.push(format!(
                "{name} is the development secret; set a random secret of at least \
                 {MIN_SECRET_BYTES} bytes"
            ));
        } else if let Some(weak) = weak_secret(name, secret) {
            problems.push(weak);
        }
    }
}

/// The session secret and the upstream one must differ, or an upstream token could be
/// presented as a client_secret.
pub(super) fn check_secrets_differ(
    session: &SessionSettings,
    upstream: &UpstreamSettings,
    problems: &mut Vec<String>,
) {
    let upstream = upstream.hs256_secret.expose_secret();
    if !upstream.is_empty() && session.secret.expose_secret() == upstream {
        problems.push("CHATKIT_SESSION_SECRET must differ from BETTER_AUTH_SECRET, or upstream tokens could pass as client_secrets".into());
    }
}

/// Why a set secret named `name` is too weak to sign with, if it is: shorter than
/// [`MIN_SECRET_BYTES`], or long but guessable: padded with whitespace (a copy-paste
/// accident), or built from a handful of characters.
pub(super) fn weak_secret(name: &str, secret: &str) -> Option<String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Some(format!(
            "{name} is {} bytes; it must be at least {MIN_SECRET_BYTES}",
            secret.len()
        ));
    }
    let hint = "generate one with `openssl rand -base64 48`";
    if secret.trim().len() != secret.len() || secret.chars().any(char::is_control) {
        return Some(format!(
            "{name} starts or ends with whitespace or contains control characters; {hint}"
        ));
    }
    let distinct: std::collections::HashSet<char> = secret.chars().collect();
    if distinct.len() < MIN_DISTINCT_SECRET_CHARS {
        return Some(format!(
            "{name} has too little entropy: it uses only {} distinct characters (at least \
             {MIN_DISTINCT_SECRET_CHARS} expected); {hint}",
            distinct.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    const STRONG: &str = "a-strong-random-upstream-secret-987654321";

    #[test]
    fn the_upstream_section_reports_ranges_url_and_production_secret_together() {
        let mut upstream = Settings::defaults().upstream;
        let mut found = Vec::new();
        upstream.check(AppEnv::Development, &mut found);
        assert!(found.is_empty(), "{found:?}");
        upstream.jwks_timeout_ms = 0;
        upstream.jwks_min_ttl_secs = 600;
        upstream.jwks_max_ttl_secs = 60;
        upstream.jwks_url = "ftp://keys".into();
        upstream.hs256_secret = SecretString::from("short");
        upstream.check(AppEnv::Production, &mut found);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found[0].contains("must be between 600 and 2592000, got 60"));
        assert!(found[1].contains("GATEWAY__UPSTREAM__JWKS_TIMEOUT_MS"));
        assert!(found[2].contains("\"ftp://keys\""));
        assert!(found[3].contains("BETTER_AUTH_SECRET) is 5 bytes"));
    }

    #[test]
    fn production_needs_an_upstream_verifier() {
        let mut upstream = Settings::defaults().upstream;
        upstream.hs256_secret = SecretString::from("");
        upstream.base_url.clear();
        upstream.jwks_url.clear();
        let mut found = Vec::new();
        upstream.check(AppEnv::Development, &mut found);
        assert!(found.is_empty(), "{found:?}");
        upstream.check(AppEnv::Production, &mut found);
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("no upstream verifier"), "{found:?}");
    }

    #[test]
    fn the_session_section_reports_ranges_and_its_secret_together() {
        let mut session = Settings::defaults().session;
        let mut found = Vec::new();
        session.check(AppEnv::Development, &mut found);
        assert!(found.is_empty(), "{found:?}");
        // The development secret passes in development only.
        session.check(AppEnv::Production, &mut found);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("is the development secret"), "{found:?}");
        found.clear();
        session.ttl_secs = 0;
        session.refresh_race_window_secs = 301;
        session.secret = SecretString::from("ab".repeat(20));
        session.check(AppEnv::Development, &mut found);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("CHATKIT_SESSION_TTL_SECS"));
        assert!(found[1].contains("session.refresh_race_window_secs"));
        assert!(found[2].contains("too little entropy"));
    }

    #[test]
    fn the_two_signing_secrets_must_differ() {
        let settings = Settings::defaults();
        let mut upstream = settings.upstream;
        let mut session = settings.session;
        let mut found = Vec::new();
        check_secrets_differ(&session, &upstream, &mut found);
        assert!(found.is_empty(), "{found:?}");
        session.secret = SecretString::from(STRONG);
        upstream.hs256_secret = SecretString::from(STRONG);
        check_secrets_differ(&session, &upstream, &mut found);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("must differ"), "{found:?}");
    }

    #[test]
    fn a_weak_secret_is_named_with_the_reason() {
        assert_eq!(weak_secret("s", STRONG), None);
        assert!(weak_secret("s", "short").unwrap().contains("is 5 bytes"));
        assert!(weak_secret("s", &format!(" {STRONG}"))
            .unwrap()
            .contains("whitespace"));
        assert!(weak_secret("s", &"a".repeat(40))
            .unwrap()
            .contains("only 1 distinct"));
    }
}
