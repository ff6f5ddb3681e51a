//! Identity: the upstream (Better Auth) token in, our client_secret out, and the checks
//! every authenticated request passes through.

mod hs256;
mod jwks;
mod revocation;
mod service;
mod session;
mod upstream;
mod verifier;

pub use hs256::Hs256Verifier;
pub use jwks::{JwksState, JwksVerifier};
pub use service::{AuthService, MintedSession, Principal};
pub use session::{SessionClaims, SessionSigner, SESSION_TYP};
pub use upstream::Upstream;
pub use verifier::{UpstreamIdentity, UpstreamVerifier};

use poem::http::StatusCode;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("an Authorization: Bearer token is required")]
    MissingToken,
    #[error("the token is not valid")]
    InvalidToken,
    #[error("the token has expired")]
    Expired,
    #[error("the token's algorithm is not accepted here")]
    UnsupportedAlgorithm,
    #[error("this session was signed out")]
    Revoked,
    #[error("this session is too old to refresh; sign in again")]
    SessionTooOld,
    #[error("this client_secret was already refreshed; the session has been signed out")]
    TokenReused,
    #[error("the upstream token names a different user than the client_secret")]
    UserMismatch,
    #[error("the upstream signing keys are unavailable; try again shortly")]
    KeysUnavailable,
    #[error("token state is unavailable")]
    Store(#[from] StoreError),
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Store(_) | Self::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "auth.missing_token",
            Self::InvalidToken => "auth.invalid_token",
            Self::Expired => "auth.expired",
            Self::UnsupportedAlgorithm => "auth.unsupported_algorithm",
            Self::Revoked => "auth.revoked",
            Self::SessionTooOld => "auth.session_too_old",
            Self::TokenReused => "auth.token_reused",
            Self::UserMismatch => "auth.user_mismatch",
            Self::KeysUnavailable => "auth.keys_unavailable",
            Self::Store(_) => "service.unavailable",
        }
    }
}

/// Maps a library error to ours without echoing token contents.
pub(crate) fn from_jwt_error(err: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidAlgorithm => AuthError::UnsupportedAlgorithm,
        _ => AuthError::InvalidToken,
    }
}

/// The bearer token of an `Authorization` header value, if it has one.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
