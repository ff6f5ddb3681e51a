//! Our client_secret: an HS256 JWT for the chat UI, signed with the gateway's own secret.
//! The `kid` header names the signing secret so old secrets keep verifying during rotation.

use std::collections::HashMap;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{from_jwt_error, AuthError};
use crate::config::SessionSettings;

/// The `typ` claim that marks a client_secret; upstream tokens never carry it.
pub const SESSION_TYP: &str = "chatkit_session";

/// The claims of a client_secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionClaims {
    /// This gateway (`session.issuer`).
    pub iss: String,
    /// This gateway's clients (`session.audience`).
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The user id again, under the name ChatKit clients read.
    pub user_id: String,
    /// Always [`SESSION_TYP`].
    pub typ: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// This token's id; a refresh consumes it once.
    pub jti: String,
    /// Session family: new at /session, kept across refreshes.
    pub sid: String,
    /// When the family started (Unix seconds).
    pub auth_time: i64,
}

/// Key id of a secret: a short digest, so the header never reveals the secret itself.
fn kid_of(secret: &SecretString) -> String {
    let digest = Sha256::digest(secret.expose_secret().as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..9])
}

/// Signs and verifies client_secrets (HS256), accepting tokens signed with previous
/// secrets during a rotation.
pub struct SessionSigner {
    kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    /// Checks everything but expiry (refresh decides expiry itself).
    signature_only: Validation,
    /// Checks everything, expiry with leeway included.
    full: Validation,
    /// The `iss` it signs and requires.
    pub issuer: String,
    /// The `aud` it signs and requires.
    pub audience: String,
}

impl SessionSigner {
    /// A signer with `settings.secret`, verifying with it and `settings.previous_secrets`.
    #[must_use]
    pub fn new(settings: &SessionSettings) -> Self {
        let kid = kid_of(&settings.secret);
        let mut decoding = HashMap::new();
        for secret in std::iter::once(&settings.secret).chain(&settings.previous_secrets) {
            decoding.insert(
                kid_of(secret),
                DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            );
        }
        let mut full = Validation::new(Algorithm::HS256);
        full.leeway = settings.leeway_secs;
        full.validate_nbf = true;
        full.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        full.set_issuer(&[settings.issuer.as_str()]);
        full.set_audience(&[settings.audience.as_str()]);
        let mut signature_only = full.clone();
        signature_only.validate_exp = false;
        Self {
            kid,
            encoding: EncodingKey::from_secret(settings.secret.expose_secret().as_bytes()),
            decoding,
            signature_only,
            full,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        }
    }

    /// `claims` as a signed token, its header naming the key.
    #[must_use]
    pub fn sign(&self, claims: &SessionClaims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).expect("HS256 signing with a valid key cannot fail")
    }

    /// A valid, unexpired client_secret.
    pub fn verify(&self, token: &str) -> Result<SessionClaims, AuthError> {
        self.decode(token, &self.full)
    }

    /// A client_secret with a valid signature and addressing, expired or not.
    pub fn verify_ignoring_expiry(&self, token: &str) -> Result<SessionClaims, AuthError> {
        self.decode(token, &self.signature_only)
    }

    fn decode(&self, token: &str, validation: &Validation) -> Result<SessionClaims, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        if header.alg != Algorithm::HS256 {
            return Err(AuthError::InvalidToken);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(AuthError::InvalidToken)?;
        let claims = decode::<SessionClaims>(token, key, validation)
            .map_err(from_jwt_error)?
            .claims;
        if claims.typ != SESSION_TYP || claims.sub != claims.user_id {
            return Err(AuthError::InvalidToken);
        }
        Ok(claims)
    }
}
