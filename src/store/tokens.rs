//! Token state that must agree across instances: consumed refresh `jti`s and revocations.
//! Each decision is a single atomic statement, never read-then-write.
//! Revocations are also announced to the other instances, so they drop what they cached:
//! that part, the only one that differs between the databases, is at the end.

use chrono::{DateTime, Utc};
use entity::{consumed_token, revocation};
use sea_orm::{
    sea_query::OnConflict, sqlx::postgres::PgListener, ColumnTrait, ConnectionTrait,
    DatabaseBackend, DbErr, EntityTrait, QueryFilter, RuntimeErr, Set, Statement,
};

use super::{Store, StoreError};
use crate::domain::{now, UserId};

/// The client_secret a consumed token was rotated into: its `jti` and `iat`, the only
/// claims of a successor that are not inherited from the token it replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Successor {
    /// The successor token's `jti`.
    pub jti: String,
    /// The successor token's `iat`.
    pub iat: i64,
}

/// What recording a refresh token as consumed found.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// This request consumed the token; the successor it offered is the one.
    First,
    /// The token had been consumed before, at this instant, into `successor` (absent for
    /// rows written before successors were recorded).
    Again {
        /// When the token was first consumed.
        consumed_at: DateTime<Utc>,
        /// The successor minted then, so a refresh inside the race window returns the same one.
        successor: Option<Successor>,
    },
}

fn sid_key(sid: &str) -> String {
    format!("sid:{sid}")
}

fn user_key(user: &UserId) -> String {
    format!("user:{}", user.as_str())
}

/// What the database says about one session family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevocationState {
    /// This session family was signed out.
    pub family_revoked: bool,
    /// Families started before this instant are revoked (`DELETE /session?all=true`).
    pub user_not_before: Option<DateTime<Utc>>,
}

impl Store {
    /// Records `jti` as consumed into `successor`; the primary key makes the first caller
    /// win everywhere, and every later caller learns which successor won.
    pub async fn consume_token(
        &self,
        user: &UserId,
        jti: &str,
        sid: &str,
        expires_at: DateTime<Utc>,
        successor: &Successor,
    ) -> Result<ConsumeOutcome, StoreError> {
        let row = consumed_token::ActiveModel {
            jti: Set(jti.to_owned()),
            user_id: Set(user.as_str().to_owned()),
            sid: Set(sid.to_owned()),
            consumed_at: Set(now()),
            expires_at: Set(expires_at),
            successor_jti: Set(Some(successor.jti.clone())),
            successor_iat: Set(Some(successor.iat)),
        };
        let inserted = consumed_token::Entity::insert(row)
            .on_conflict(
                OnConflict::column(consumed_token::Column::Jti)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.write)
            .await;
        let inserted = self.health.track(inserted)?;
        if inserted == 1 {
            return Ok(ConsumeOutcome::First);
        }
        let existing = consumed_token::Entity::find_by_id(jti)
            .filter(consumed_token::Column::UserId.eq(user.as_str()))
            .one(&self.write)
            .await?;
        // A jti consumed under another user cannot happen with our signatures; treat as reuse.
        let Some(existing) = existing else {
            return Ok(ConsumeOutcome::Again {
                consumed_at: DateTime::UNIX_EPOCH,
                successor: None,
            });
        };
        let successor = match (existing.successor_jti, existing.successor_iat) {
            (Some(jti), Some(iat)) => Some(Successor { jti, iat }),
            _ => None,
        };
        Ok(ConsumeOutcome::Again {
            consumed_at: existing.consumed_at,
            successor,
        })
    }

    /// Revokes one session family. Idempotent.
    pub async fn revoke_family(&self, user: &UserId, sid: &str) -> Result<(), StoreError> {
        let at = now();
        let row = revocation::ActiveModel {
            id: Set(sid_key(sid)),
            user_id: Set(user.as_str().to_owned()),
            sid: Set(Some(sid.to_owned())),
            not_before: Set(at),
            created_at: Set(at),
        };
        let inserted = revocation::Entity::insert(row)
            .on_conflict(
                OnConflict::column(revocation::Column::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.write)
            .await;
        self.health.track(inserted)?;
        self.announce_revocation(&sid_key(sid)).await;
        Ok(())
    }

    /// Revokes every family the user started before `at`.
    pub async fn revoke_all(&self, user: &UserId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let row = revocation::ActiveModel {
            id: Set(user_key(user)),
            user_id: Set(user.as_str().to_owned()),
            sid: Set(None),
            not_before: Set(at),
            created_at: Set(at),
        };
        let inserted = revocation::Entity::insert(row)
            .on_conflict(
                OnConflict::column(revocation::Column::Id)
                    .update_column(revocation::Column::NotBefore)
                    .to_owned(),
            )
            .exec_without_returning(&self.write)
            .await;
        self.health.track(inserted)?;
        self.announce_revocation(&user_key(user)).await;
        Ok(())
    }

    /// Both revocation facts for one family in one query.
    pub async fn revocation_state(
        &self,
        user: &UserId,
        sid: &str,
    ) -> Result<RevocationState, StoreError> {
        let rows = revocation::Entity::find()
            .filter(revocation::Column::Id.is_in([sid_key(sid), user_key(user)]))
            .filter(revocation::Column::UserId.eq(user.as_str()))
            .all(&self.read)
            .await?;
        let mut state = RevocationState::default();
        for row in rows {
            if row.sid.is_some() {
                state.family_revoked = true;
            } else {
                state.user_not_before = Some(row.not_before);
            }
        }
        Ok(state)
    }

    /// Deletes consumed-token rows that can no longer matter. Returns how many went.
    pub async fn purge_consumed_tokens(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = consumed_token::Entity::delete_many()
            .filter(consumed_token::Column::ExpiresAt.lt(before))
            .exec(&self.write)
            .await?;
        Ok(result.rows_affected)
    }

    /// Deletes revocations made before `before`, which the caller picks so that no token
    /// of a family they cover can still be used. One conditional `DELETE`, so instances
    /// purging at once just share the work; on PostgreSQL a "sign out everywhere" moved
    /// forward meanwhile is re-checked against the condition and kept.
    pub async fn purge_revocations(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = revocation::Entity::delete_many()
            .filter(revocation::Column::NotBefore.lt(before))
            .exec(&self.write)
            .await?;
        Ok(result.rows_affected)
    }
}

// Revocations announced to the other instances. On PostgreSQL they travel by LISTEN and
// NOTIFY; an SQLite file is served by one process, whose instances share its caches and
// so need no message: there, nothing is announced and nobody listens.

/// The PostgreSQL channel revocations are announced on.
const REVOCATION_CHANNEL: &str = "chatkit_gateway_revocations";

/// What another instance revoked, as announced.
#[derive(Debug, PartialEq, Eq)]
pub enum RevocationNotice {
    /// The session family with this sid.
    Family(String),
    /// Every family of this user started so far.
    User(String),
    /// Notifications may have been missed (the listening connection dropped and was
    /// re-established): anything cached may be stale.
    Unknown,
}

/// Receives revocations announced by any instance (this one included).
pub struct RevocationListener(PgListener);

impl RevocationListener {
    /// The next notice; `None` once the listener cannot go on.
    pub async fn next(&mut self) -> Option<RevocationNotice> {
        match self.0.try_recv().await {
            Ok(Some(n)) => {
                let payload = n.payload();
                Some(if let Some(sid) = payload.strip_prefix("sid:") {
                    RevocationNotice::Family(sid.to_owned())
                } else if let Some(user) = payload.strip_prefix("user:") {
                    RevocationNotice::User(user.to_owned())
                } else {
                    RevocationNotice::Unknown
                })
            }
            // The connection was lost; the next call reconnects and listens again.
            Ok(None) => Some(RevocationNotice::Unknown),
            Err(e) => {
                tracing::warn!(error = %e, "revocation listener failed");
                // sqlx reconnects on the next call; pause so a database outage is not a
                // busy loop.
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                Some(RevocationNotice::Unknown)
            }
        }
    }
}

impl Store {
    /// Whether revocations are announced (on PostgreSQL; see above).
    fn announces_revocations(&self) -> bool {
        self.write.get_database_backend() == DatabaseBackend::Postgres
    }

    /// Tells the other instances (PostgreSQL `NOTIFY`) to forget what they cached under
    /// `key`. Best effort: the row is already written, and a lost notification only
    /// delays the others until their cache entry expires.
    async fn announce_revocation(&self, key: &str) {
        if !self.announces_revocations() {
            return;
        }
        let notify = self
            .write
            .execute(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [REVOCATION_CHANNEL.into(), key.into()],
            ))
            .await;
        if let Err(e) = notify {
            tracing::warn!(error = %e, "could not announce a revocation to other instances");
        }
    }

    /// A listener for the revocations other instances announce, on PostgreSQL; `None` on
    /// SQLite, whose file is served by one process (its instances share this process and
    /// so need no message).
    pub async fn revocation_listener(&self) -> Result<Option<RevocationListener>, StoreError> {
        if !self.announces_revocations() {
            return Ok(None);
        }
        let pool = self.write.get_postgres_connection_pool();
        let mut listener = PgListener::connect_with(pool)
            .await
            .map_err(|e| StoreError::Unavailable(DbErr::Conn(RuntimeErr::SqlxError(e))))?;
        listener
            .listen(REVOCATION_CHANNEL)
            .await
            .map_err(|e| StoreError::Unavailable(DbErr::Conn(RuntimeErr::SqlxError(e))))?;
        Ok(Some(RevocationListener(listener)))
    }
}
