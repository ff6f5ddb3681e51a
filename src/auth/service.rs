//! The session lifecycle: start (upstream token → client_secret), refresh (rotation with
//! reuse detection), authenticate (every request), revoke.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use super::{
    revocation::RevocationCache,
    session::{SessionClaims, SessionSigner, SESSION_TYP},
    upstream::UpstreamVerifiers,
    verified::Verified,
    AuthError,
};
use crate::{
    config::SessionSettings,
    domain::{new_id, now, seconds, seconds_i64, UserId},
    store::{ConsumeOutcome, Store, Successor},
};

/// Verified client_secrets kept at once: about half a kilobyte each.
const VERIFIED_CAPACITY: u64 = 10_000;

/// The claims that make a new client_secret new: a fresh `jti`, issued now.
fn fresh_successor() -> Successor {
    Successor {
        jti: new_id("jti"),
        iat: Utc::now().timestamp(),
    }
}

/// The caller behind a valid client_secret.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Whose client_secret it is.
    pub user: UserId,
    /// The session family it belongs to.
    pub sid: String,
}

/// A freshly minted client_secret.
#[derive(Clone, Debug)]
pub struct MintedSession {
    /// The signed token the client presents from now on.
    pub client_secret: String,
    /// Whose session it is.
    pub user: UserId,
    /// When the client_secret expires.
    pub expires_at: DateTime<Utc>,
    /// Seconds from now until `expires_at`.
    pub expires_in: u64,
}

/// Sessions: exchanging upstream tokens, refreshing, authenticating and revoking
/// client_secrets. Cheap to clone.
#[derive(Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

struct Inner {
    upstream: UpstreamVerifiers,
    signer: SessionSigner,
    store: Store,
    revocations: RevocationCache,
    verified: Verified,
    settings: SessionSettings,
}

impl AuthService {
    /// A service trusting `upstream`, signing with `settings`, keeping token state in `store`.
    #[must_use]
    pub fn new(upstream: UpstreamVerifiers, settings: &SessionSettings, store: Store) -> Self {
        Self {
            inner: Arc::new(Inner {
                upstream,
                signer: SessionSigner::new(settings),
                store,
                revocations: RevocationCache::new(Duration::from_secs(
                    settings.revocation_cache_ttl_secs,
                )),
                verified: Verified::new(
                    VERIFIED_CAPACITY,
                    Duration::from_secs(settings.ttl_secs.saturating_add(settings.leeway_secs)),
                    settings.leeway_secs,
                ),
                settings: settings.clone(),
            }),
        }
    }

    /// The upstream verifiers (for /readyz).
    #[must_use]
    pub fn upstream(&self) -> &UpstreamVerifiers {
        &self.inner.upstream
    }

    fn mint(&self, user: &UserId, sid: String, auth_time: i64) -> MintedSession {
        self.mint_as(user, sid, auth_time, fresh_successor())
    }

    /// The client_secret with these claims. Signing is deterministic (HS256 over the same
    /// claims and key), so every instance re-creates the same string from the same inputs.
    fn mint_as(
        &self,
        user: &UserId,
        sid: String,
        auth_time: i64,
        successor: Successor,
    ) -> MintedSession {
        let issued = successor.iat;
        let ttl = self.inner.settings.ttl_secs;
        let exp = issued.saturating_add(seconds_i64(ttl));
        let claims = SessionClaims {
            iss: self.inner.signer.issuer.clone(),
            aud: self.inner.signer.audience.clone(),
            sub: user.as_str().to_owned(),
            user_id: user.as_str().to_owned(),
            typ: SESSION_TYP.to_owned(),
            iat: issued,
            nbf: issued,
            exp,
            jti: successor.jti,
            sid,
            auth_time,
        };
        let left = exp.saturating_sub(Utc::now().timestamp()).max(0);
        MintedSession {
            client_secret: self.inner.signer.sign(&claims),
            user: user.clone(),
            expires_at: DateTime::from_timestamp(exp, 0).unwrap_or_default(),
            expires_in: u64::try_from(left).unwrap_or(0).min(ttl),
        }
    }

    /// `POST /session`: pure CPU, no database write.
    pub async fn start_session(&self, upstream_token: &str) -> Result<MintedSession, AuthError> {
        let identity = self.inner.upstream.verify(upstream_token).await?;
        metrics::counter!(crate::metrics::SECRETS_MINTED).increment(1);
        Ok(self.mint(&identity.user, new_id("sid"), Utc::now().timestamp()))
    }

    /// `POST /refresh`: rotates a (possibly expired) client_secret within the grace period.
    /// The span names the session family and user once the token's signature checks out,
    /// never the token.
    #[tracing::instrument(
        name = "auth.refresh",
        skip_all,
        fields(sid = tracing::field::Empty, user_id = tracing::field::Empty)
    )]
    pub async fn refresh(
        &self,
        token: &str,
        upstream_token: Option<&str>,
    ) -> Result<MintedSession, AuthError> {
        let settings = &self.inner.settings;
        let claims = self.inner.signer.verify_ignoring_expiry(token)?;
        let user = UserId::parse(&claims.sub).ok_or(AuthError::InvalidToken)?;
        tracing::Span::current()
            .record("sid", claims.sid.as_str())
            .record("user_id", user.as_str());
        let now_secs = Utc::now().timestamp();
        if now_secs
            > claims
                .exp
                .saturating_add(seconds_i64(settings.refresh_grace_secs))
        {
            return Err(AuthError::Expired);
        }
        if now_secs
            > claims
                .auth_time
                .saturating_add(seconds_i64(settings.max_session_age_secs))
        {
            return Err(AuthError::SessionTooOld);
        }
        match upstream_token {
            Some(bearer) => {
                let identity = self.inner.upstream.verify(bearer).await?;
                if identity.user != user {
                    return Err(AuthError::UserMismatch);
                }
            }
            None if settings.require_upstream_on_refresh => return Err(AuthError::MissingToken),
            None => {}
        }
        // Decided by the database, not the cache: a refresh must see a revocation at once.
        let state = self
            .inner
            .store
            .revocation_state(&user, &claims.sid)
            .await?;
        if super::revocation::revokes(state.family_revoked, state.user_not_before, &claims.sid) {
            return Err(AuthError::Revoked);
        }
        let refreshable_until = DateTime::from_timestamp(
            claims
                .exp
                .saturating_add(seconds_i64(settings.refresh_grace_secs)),
            0,
        )
        .unwrap_or_else(Utc::now);
        let offered = fresh_successor();
        let outcome = self
            .inner
            .store
            .consume_token(&user, &claims.jti, &claims.sid, refreshable_until, &offered)
            .await?;
        let successor = match outcome {
            ConsumeOutcome::First => offered,
            ConsumeOutcome::Again {
                consumed_at,
                successor,
            } => {
                let window = seconds(settings.refresh_race_window_secs);
                if now() - consumed_at > window {
                    // A rotated-away token came back: assume it was stolen and end the family.
                    self.inner.store.revoke_family(&user, &claims.sid).await?;
                    self.inner.revocations.family_revoked(&claims.sid).await;
                    tracing::warn!(user_id = %user, sid = %claims.sid, "refresh token reuse; session family revoked");
                    metrics::counter!(crate::metrics::REUSE_DETECTED).increment(1);
                    metrics::counter!(crate::metrics::REVOCATIONS, "scope" => "reuse").increment(1);
                    return Err(AuthError::TokenReused);
                }
                // A racing refresh (two tabs, a retry, another instance) gets the successor
                // the first one got: one family keeps one live head.
                successor.unwrap_or(offered)
            }
        };
        metrics::counter!(crate::metrics::SECRETS_REFRESHED).increment(1);
        Ok(self.mint_as(&user, claims.sid, claims.auth_time, successor))
    }

    /// Every client_secret-authenticated request.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        let principal = match self.inner.verified.get(token, Utc::now().timestamp()) {
            Some(principal) => principal,
            None => {
                let claims = self.inner.signer.verify(token)?;
                let principal = Principal {
                    user: UserId::parse(&claims.sub).ok_or(AuthError::InvalidToken)?,
                    sid: claims.sid,
                };
                self.inner.verified.insert(token, &principal, claims.exp);
                principal
            }
        };
        if self
            .inner
            .revocations
            .is_revoked(&self.inner.store, &principal.user, &principal.sid)
            .await?
        {
            return Err(AuthError::Revoked);
        }
        Ok(principal)
    }

    /// `DELETE /session`: this family, or (`all`) every family the user has started so far.
    pub async fn revoke(&self, principal: &Principal, all: bool) -> Result<(), AuthError> {
        if all {
            let at = now();
            self.inner.store.revoke_all(&principal.user, at).await?;
            self.inner
                .revocations
                .user_revoked(&principal.user, at)
                .await;
        } else {
            self.inner
                .store
                .revoke_family(&principal.user, &principal.sid)
                .await?;
            self.inner.revocations.family_revoked(&principal.sid).await;
        }
        let scope = if all { "user" } else { "family" };
        metrics::counter!(crate::metrics::REVOCATIONS, "scope" => scope).increment(1);
        Ok(())
    }

    /// On PostgreSQL, starts applying the revocations other instances announce to this
    /// instance's cache; the listener is connected before this returns, so nothing
    /// announced afterwards is missed. The cache TTL still bounds staleness if
    /// notifications are lost.
    pub async fn spawn_revocation_listener(
        &self,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, AuthError> {
        let Some(mut listener) = self.inner.store.revocation_listener().await? else {
            return Ok(None);
        };
        let this = self.clone();
        Ok(Some(tokio::spawn(async move {
            while let Some(notice) = listener.next().await {
                this.inner.revocations.forget(&notice).await;
            }
        })))
    }

    /// Purges token state that can no longer matter (run periodically).
    pub async fn purge_expired(&self) {
        match self.inner.store.purge_consumed_tokens(now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "purged consumed refresh tokens"),
            Err(e) => tracing::warn!(error = %e, "could not purge consumed refresh tokens"),
        }
        // A revocation covers families started before it was made; a family can be
        // refreshed until `auth_time` (at most its start) plus the maximum age, and its last
        // client_secret is then used until its expiry plus leeway. Past that the row
        // decides nothing. The refresh grace is added as a margin.
        let s = &self.inner.settings;
        let horizon = seconds(
            s.max_session_age_secs
                .saturating_add(s.ttl_secs)
                .saturating_add(s.leeway_secs)
                .saturating_add(s.refresh_grace_secs),
        );
        // An absurd configured horizon purges nothing rather than overflowing.
        let before = now()
            .checked_sub_signed(horizon)
            .unwrap_or(DateTime::UNIX_EPOCH);
        match self.inner.store.purge_revocations(before).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "purged revocations"),
            Err(e) => tracing::warn!(error = %e, "could not purge revocations"),
        }
    }

    /// Dev helper: an upstream-style HS256 token for `user`, as Better Auth would issue.
    #[must_use]
    pub fn dev_upstream_token(secret: &str, user: &str, ttl_secs: u64) -> String {
        let now = Utc::now().timestamp();
        let claims = serde_json::json!({
            "sub": user, "id": user, "iat": now, "exp": now.saturating_add(seconds_i64(ttl_secs)),
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("HS256 signing cannot fail")
    }
}
