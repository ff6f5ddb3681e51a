//! Identity: the upstream (Better Auth) token in, our client_secret out, and the checks
//! every authenticated request passes through.

mod hs256;
mod jwks;
mod revocation;
mod service;
mod session;
mod upstream;
mod verified;
mod verifier;

pub use hs256::Hs256Verifier;
pub use jwks::{JwksState, JwksVerifier};
pub use service::{AuthService, MintedSession, Principal};
pub use session::{SessionClaims, SessionSigner, SESSION_TYP};
pub use upstream::UpstreamVerifiers;
pub use verifier::{UpstreamIdentity, UpstreamVerifier};

use crate::store::StoreError;

/// Why a caller is not authenticated, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request carries no bearer token.
    #[error("an Authorization: Bearer token is required")]
    MissingToken,
    /// Bad signature, addressing or shape, or a token of the wrong kind.
    #[error("the token is not valid")]
    InvalidToken,
    /// Past its `exp` (plus leeway).
    #[error("the token has expired")]
    Expired,
    /// Signed with an algorithm this gateway is not configured to accept.
    #[error("the token's algorithm is not accepted here")]
    UnsupportedAlgorithm,
    /// The session (or all of the user's sessions) was signed out.
    #[error("this session was signed out")]
    Revoked,
    /// The session family is older than the longest session allowed.
    #[error("this session is too old to refresh; sign in again")]
    SessionTooOld,
    /// A client_secret refreshed twice: taken as theft, so the family is revoked.
    #[error("this client_secret was already refreshed; the session has been signed out")]
    TokenReused,
    /// A refresh whose upstream token belongs to someone else.
    #[error("the upstream token names a different user than the client_secret")]
    UserMismatch,
    /// The JWKS could not be fetched and no earlier key set is at hand.
    #[error("the upstream signing keys are unavailable; try again shortly")]
    KeysUnavailable,
    /// Token state (revocations, refresh records) could not be read or written.
    #[error("token state is unavailable")]
    Store(#[from] StoreError),
}

impl AuthError {
    /// Whether the caller could do better (a token problem) rather than wait for the
    /// service (token state or upstream keys unavailable).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Store(_) | Self::KeysUnavailable)
    }

    /// The stable error code, `auth.<reason>` (or `service.unavailable`).
    #[must_use]
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
#[must_use]
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
