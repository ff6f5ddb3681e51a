//! Revocation checks on every request, through short-TTL caches over the database. All
//! instances converge within the TTL; the instance that revokes updates its own cache at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::future::Cache;

use crate::{
    domain::UserId,
    store::{RevocationNotice, Store, StoreError},
};

/// What this instance knows of revoked families and users, for at most the TTL.
#[derive(Clone)]
pub struct RevocationCache {
    families: Cache<String, bool>,
    users: Cache<String, Option<DateTime<Utc>>>,
}

/// When a session family started, from its id (`sid_` + UUID v7, whose first 48 bits are
/// the creation time in milliseconds). Ids we did not mint have no start: treated as oldest.
pub(crate) fn family_started_at(sid: &str) -> DateTime<Utc> {
    sid.strip_prefix("sid_")
        .and_then(|hex| uuid::Uuid::parse_str(hex).ok())
        .and_then(|id| id.get_timestamp())
        .and_then(|ts| {
            let (secs, nanos) = ts.to_unix();
            DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
        })
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// The one revocation rule: the family was revoked, or it started before the user's
/// "sign out everywhere" instant.
pub(crate) fn revokes(
    family_revoked: bool,
    user_not_before: Option<DateTime<Utc>>,
    sid: &str,
) -> bool {
    // Family starts are known to the millisecond (the sid's UUID v7), the instant to the
    // microsecond: compared at the coarser one, a sign-in in the same millisecond right
    // after a sign-out everywhere is not taken for one before it.
    family_revoked
        || user_not_before.is_some_and(|not_before| {
            family_started_at(sid) < chrono::SubsecRound::trunc_subsecs(not_before, 3)
        })
}

impl RevocationCache {
    /// A cache whose entries live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            families: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            users: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Whether `sid` of `user` is revoked, reading the store when the cache has no answer.
    pub async fn is_revoked(
        &self,
        store: &Store,
        user: &UserId,
        sid: &str,
    ) -> Result<bool, StoreError> {
        let (family, cutoff) = match (
            self.families.get(sid).await,
            self.users.get(user.as_str()).await,
        ) {
            (Some(family), Some(cutoff)) => (family, cutoff),
            _ => {
                let state = store.revocation_state(user, sid).await?;
                self.families
                    .insert(sid.to_owned(), state.family_revoked)
                    .await;
                self.users
                    .insert(user.as_str().to_owned(), state.user_not_before)
                    .await;
                (state.family_revoked, state.user_not_before)
            }
        };
        Ok(revokes(family, cutoff, sid))
    }

    /// Records at once that this instance revoked the family `sid`.
    pub async fn family_revoked(&self, sid: &str) {
        self.families.insert(sid.to_owned(), true).await;
    }

    /// Records at once that this instance signed `user` out everywhere at `at`.
    pub async fn user_revoked(&self, user: &UserId, at: DateTime<Utc>) {
        self.users.insert(user.as_str().to_owned(), Some(at)).await;
    }

    /// Forgets what another instance announced it revoked, so the next check reads the
    /// database.
    pub async fn forget(&self, notice: &RevocationNotice) {
        match notice {
            RevocationNotice::Family(sid) => self.families.invalidate(sid).await,
            RevocationNotice::User(user) => self.users.invalidate(user).await,
            RevocationNotice::Unknown => {
                self.families.invalidate_all();
                self.users.invalidate_all();
            }
        }
    }
}
