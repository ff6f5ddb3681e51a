//! Client_secrets this instance has verified, by their exact text, until they expire.
//!
//! A ChatKit client sends the same client_secret with every request until it refreshes,
//! and checking its signature and claims again each time (two base64 and JSON decodes and
//! an HMAC) costs more than the rest of a small read. Only a token that passed every check
//! is kept, with the user and family it names; a hit still checks the expiry against the
//! clock, and the revocation check runs after it as for any token.

use std::time::Duration;

use moka::sync::Cache;

use super::Principal;

/// Verified client_secrets: the principal each names and its `exp`.
pub struct Verified {
    tokens: Cache<Box<str>, (Principal, i64)>,
    /// The seconds past `exp` a token is still accepted (`session.leeway_secs`).
    leeway: i64,
}

impl Verified {
    /// At most `capacity` tokens, each for at most `lifetime` (a client_secret's own TTL
    /// and leeway bound it anyway).
    #[must_use]
    pub fn new(capacity: u64, lifetime: Duration, leeway_secs: u64) -> Self {
        Self {
            tokens: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(lifetime)
                .build(),
            leeway: i64::try_from(leeway_secs).unwrap_or(i64::MAX),
        }
    }

    /// The principal of `token` if it was verified and is unexpired at `now` (Unix
    /// seconds), by the same rule as the full check: expired once `exp + leeway < now`.
    pub fn get(&self, token: &str, now: i64) -> Option<Principal> {
        let (principal, exp) = self.tokens.get(token)?;
        if exp.saturating_add(self.leeway) < now {
            self.tokens.invalidate(token);
            return None;
        }
        Some(principal)
    }

    /// Keeps `token`, which passed every check, as naming `principal` until `exp`.
    pub fn insert(&self, token: &str, principal: &Principal, exp: i64) {
        self.tokens.insert(token.into(), (principal.clone(), exp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn alice() -> Principal {
        Principal {
            user: UserId::parse("alice").unwrap(),
            sid: "sid_a".into(),
        }
    }

    #[test]
    fn a_verified_token_is_known_until_exp_plus_leeway() {
        let verified = Verified::new(10, Duration::from_secs(60), 5);
        verified.insert("token-a", &alice(), 1_000);
        let hit = verified.get("token-a", 1_005).expect("within the leeway");
        assert_eq!(hit.user, alice().user);
        assert_eq!(hit.sid, "sid_a");
        assert!(
            verified.get("token-a", 1_006).is_none(),
            "past exp + leeway"
        );
        // Forgotten once found expired, even if the clock were to go back.
        assert!(verified.get("token-a", 1_000).is_none());
    }

    #[test]
    fn only_the_exact_text_is_known() {
        let verified = Verified::new(10, Duration::from_secs(60), 0);
        verified.insert("token-a", &alice(), 1_000);
        assert!(verified.get("token-A", 0).is_none());
        assert!(verified.get("token-a ", 0).is_none());
        assert!(verified.get("token-", 0).is_none());
        assert!(verified.get("token-a", 0).is_some());
    }
}
