//! Upstream identity verification. Handlers see one [`Upstream`]; which verifier checks a
//! token is decided by configuration and the token's header together, never by the token
//! alone: an HS256 token only reaches the shared-secret verifier, an allowed asymmetric
//! algorithm only the JWKS verifier (so a public key can never serve as an HMAC secret),
//! and anything else is refused.

use std::{str::FromStr, sync::Arc};

use async_trait::async_trait;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::{from_jwt_error, jwks::JwksVerifier, session::SESSION_TYP, AuthError};
use crate::{config::UpstreamSettings, domain::UserId};

/// Who the upstream token says the caller is, and until when (its `exp`).
#[derive(Clone, Debug)]
pub struct UpstreamIdentity {
    pub user: UserId,
    pub expires_at: i64,
}

#[async_trait]
pub trait UpstreamVerifier: Send + Sync {
    async fn verify(&self, token: &str) -> Result<UpstreamIdentity, AuthError>;
}

/// Validation rules shared by every upstream verifier.
pub(crate) fn upstream_validation(alg: Algorithm, settings: &UpstreamSettings) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = settings.leeway_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp"]);
    if settings.issuer.is_empty() {
        v.iss = None;
    } else {
        v.set_issuer(&[settings.issuer.as_str()]);
    }
    if settings.audience.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&[settings.audience.as_str()]);
    }
    v
}

/// Reads the user id claim, refusing our own client_secrets presented as upstream tokens.
pub(crate) fn identity_from_claims(
    claims: &Map<String, Value>,
    user_id_claim: &str,
    session_audience: &str,
) -> Result<UpstreamIdentity, AuthError> {
    if claims.get("typ").and_then(Value::as_str) == Some(SESSION_TYP) {
        return Err(AuthError::InvalidToken);
    }
    let aud_is_ours = match claims.get("aud") {
        Some(Value::String(a)) => a == session_audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(session_audience)),
        _ => false,
    };
    if aud_is_ours {
        return Err(AuthError::InvalidToken);
    }
    let user = claims
        .get(user_id_claim)
        .and_then(Value::as_str)
        .and_then(UserId::parse)
        .ok_or(AuthError::InvalidToken)?;
    let expires_at = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(AuthError::InvalidToken)?;
    Ok(UpstreamIdentity { user, expires_at })
}

/// Better Auth's shared-secret mode: HS256 with `BETTER_AUTH_SECRET`.
pub struct Hs256Verifier {
    key: DecodingKey,
    validation: Validation,
    user_id_claim: String,
    session_audience: String,
}

impl Hs256Verifier {
    pub fn new(settings: &UpstreamSettings, session_audience: &str) -> Self {
        Self {
            key: DecodingKey::from_secret(settings.hs256_secret.expose_secret().as_bytes()),
            validation: upstream_validation(Algorithm::HS256, settings),
            user_id_claim: settings.user_id_claim.clone(),
            session_audience: session_audience.to_owned(),
        }
    }
}

#[async_trait]
impl UpstreamVerifier for Hs256Verifier {
    async fn verify(&self, token: &str) -> Result<UpstreamIdentity, AuthError> {
        let data = decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(from_jwt_error)?;
        identity_from_claims(&data.claims, &self.user_id_claim, &self.session_audience)
    }
}

/// The configured upstream verifiers, dispatched by algorithm family, behind a short-lived
/// memory of tokens already verified.
#[derive(Clone, Default)]
pub struct Upstream {
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

impl Upstream {
    /// Remembers verified tokens for `ttl` (none when zero); `exp` still applies with `leeway`.
    pub fn with_verified_cache(mut self, ttl: std::time::Duration, leeway_secs: u64) -> Self {
        self.verified = (!ttl.is_zero()).then(|| VerifiedTokens {
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            leeway: leeway_secs as i64,
        });
        self
    }

    pub fn with_hs256(mut self, verifier: Arc<dyn UpstreamVerifier>) -> Self {
        self.hs256 = Some(verifier);
        self
    }

    /// Adds the public-key verifier for its allowed asymmetric algorithms.
    pub fn with_jwks(mut self, verifier: Arc<JwksVerifier>) -> Self {
        self.jwks = Some(verifier);
        self
    }

    pub fn jwks(&self) -> Option<&Arc<JwksVerifier>> {
        self.jwks.as_ref()
    }

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
