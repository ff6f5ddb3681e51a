//! UpstreamVerifiers identity verification. Handlers see one [`UpstreamVerifiers`]; which verifier checks a
//! token is decided by configuration and the token's header together, never by the token
//! alone: an HS256 token only reaches the shared-secret verifier, an allowed asymmetric
//! algorithm only the JWKS verifier (so a public key can never serve as an HMAC secret),
//! and anything else is refused.

use std::{str::FromStr, sync::Arc};

use jsonwebtoken::Algorithm;

use super::{
    jwks::JwksVerifier,
    verifier::{UpstreamIdentity, UpstreamVerifier},
    AuthError,
};

/// The configured upstream verifiers, dispatched by algorithm family, behind a short-lived
/// memory of tokens already verified.
#[derive(Clone, Default)]
pub struct UpstreamVerifiers {
    hs256: Option<Arc<dyn UpstreamVerifier>>,
    jwks: Option<Arc<JwksVerifier>>,
    verified: Option<VerifiedTokens>,
}

/// Successful verifications by SHA-256 of the whole token: the same bytes always verify the
/// same way, so only the time checks are repeated. Failures are never remembered.
#[derive(Clone)]
struct VerifiedTokens {
    cache: moka::sync::Cache<[u8; 32], UpstreamIdentity>,
    leeway: i64,
}

/// The `alg` a token claims, read from its header without trusting anything else in it.
fn claimed_alg(token: &str) -> Option<String> {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    #[derive(serde::Deserialize)]
    struct AlgOnly {
        alg: String,
    }
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<AlgOnly>(&bytes)
        .ok()
        .map(|h| h.alg)
}

impl UpstreamVerifiers {
    /// Remembers verified tokens for `ttl` (none when zero); `exp` still applies with `leeway`.
    #[must_use]
    pub fn with_verified_cache(mut self, ttl: std::time::Duration, leeway_secs: u64) -> Self {
        self.verified = (!ttl.is_zero()).then(|| VerifiedTokens {
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            leeway: crate::domain::seconds_i64(leeway_secs),
        });
        self
    }

    /// Adds the shared-secret verifier for HS256 tokens.
    #[must_use]
    pub fn with_hs256(mut self, verifier: Arc<dyn UpstreamVerifier>) -> Self {
        self.hs256 = Some(verifier);
        self
    }

    /// Adds the public-key verifier for its allowed asymmetric algorithms.
    #[must_use]
    pub fn with_jwks(mut self, verifier: Arc<JwksVerifier>) -> Self {
        self.jwks = Some(verifier);
        self
    }

    /// The public-key verifier, if one is configured (for /readyz).
    #[must_use]
    pub fn jwks(&self) -> Option<&Arc<JwksVerifier>> {
        self.jwks.as_ref()
    }

    /// The identity in `token`, checked by the verifier its algorithm belongs to.
    pub async fn verify(&self, token: &str) -> Result<UpstreamIdentity, AuthError> {
        let Some(verified) = &self.verified else {
            return self.verify_signature(token).await;
        };
        use sha2::{Digest, Sha256};
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let identity = match verified.cache.get(&key) {
            Some(identity) => identity,
            None => {
                let identity = self.verify_signature(token).await?;
                verified.cache.insert(key, identity.clone());
                identity
            }
        };
        if chrono::Utc::now().timestamp() > identity.expires_at.saturating_add(verified.leeway) {
            verified.cache.invalidate(&key);
            return Err(AuthError::Expired);
        }
        Ok(identity)
    }

    async fn verify_signature(&self, token: &str) -> Result<UpstreamIdentity, AuthError> {
        let alg = claimed_alg(token).ok_or(AuthError::InvalidToken)?;
        let verifier: Option<&dyn UpstreamVerifier> = match Algorithm::from_str(&alg) {
            Ok(Algorithm::HS256) => self.hs256.as_deref(),
            Ok(alg) => self
                .jwks
                .as_deref()
                .filter(|j| j.allowed().contains(&alg))
                .map(|j| j as &dyn UpstreamVerifier),
            // "none", ES512 and anything else jsonwebtoken cannot verify.
            Err(_) if alg.eq_ignore_ascii_case("none") => return Err(AuthError::InvalidToken),
            Err(_) => None,
        };
        verifier
            .ok_or(AuthError::UnsupportedAlgorithm)?
            .verify(token)
            .await
    }
}
