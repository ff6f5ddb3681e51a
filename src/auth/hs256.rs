//! Better Auth's shared-secret mode: HS256 tokens signed with `BETTER_AUTH_SECRET`.

use async_trait::async_trait;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::{
    from_jwt_error,
    verifier::{identity_from_claims, upstream_validation, UpstreamIdentity, UpstreamVerifier},
    AuthError,
};
use crate::config::UpstreamSettings;

/// Better Auth's shared-secret mode: HS256 with `BETTER_AUTH_SECRET`.
pub struct Hs256Verifier {
    key: DecodingKey,
    validation: Validation,
    user_id_claim: String,
    session_audience: String,
}

impl Hs256Verifier {
    /// A verifier for `settings.hs256_secret` that refuses tokens meant for
    /// `session_audience` (our own client_secrets).
    #[must_use]
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
