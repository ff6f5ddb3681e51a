//! Upstream identity verification. Handlers see one [`Upstream`]; which verifier checks a
//! token is decided by configuration and the token's header together, never by the token
//! alone: an HS256 token only reaches the shared-secret verifier, anything else only the
//! asymmetric one (JWKS), and a family with no configured verifier is refused.

use std::{collections::HashSet, sync::Arc};

use async_trait::async_trait;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::{from_jwt_error, session::SESSION_TYP, AuthError};
use crate::{config::UpstreamSettings, domain::UserId};

/// Who the upstream token says the caller is.
#[derive(Clone, Debug)]
pub struct UpstreamIdentity {
    pub user: UserId,
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
    Ok(UpstreamIdentity { user })
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

/// The configured upstream verifiers, dispatched by algorithm family.
#[derive(Clone, Default)]
pub struct Upstream {
    hs256: Option<Arc<dyn UpstreamVerifier>>,
    asymmetric: Option<Arc<dyn UpstreamVerifier>>,
    asymmetric_algs: HashSet<Algorithm>,
}

impl Upstream {
    pub fn with_hs256(mut self, verifier: Arc<dyn UpstreamVerifier>) -> Self {
        self.hs256 = Some(verifier);
        self
    }

    /// Adds the public-key verifier (JWKS) for the allowed asymmetric algorithms.
    pub fn with_asymmetric(
        mut self,
        verifier: Arc<dyn UpstreamVerifier>,
        algorithms: impl IntoIterator<Item = Algorithm>,
    ) -> Self {
        self.asymmetric = Some(verifier);
        self.asymmetric_algs = algorithms.into_iter().collect();
        self
    }

    pub fn is_configured(&self) -> bool {
        self.hs256.is_some() || self.asymmetric.is_some()
    }

    pub async fn verify(&self, token: &str) -> Result<UpstreamIdentity, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        let verifier = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            alg if self.asymmetric_algs.contains(&alg) => self.asymmetric.as_ref(),
            _ => None,
        };
        verifier
            .ok_or(AuthError::UnsupportedAlgorithm)?
            .verify(token)
            .await
    }
}
