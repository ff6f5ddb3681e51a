//! What every upstream verifier shares: the identity it yields, the trait, the claim
//! rules and how the user is read from the claims. A leaf: the verifiers import it, it
//! imports none of them.

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::{session::SESSION_TYP, AuthError};
use crate::{config::UpstreamSettings, domain::UserId};

/// Who the upstream token says the caller is, and until when (its `exp`).
#[derive(Clone, Debug)]
pub struct UpstreamIdentity {
    /// The user the token names (its configured user id claim).
    pub user: UserId,
    /// The token's `exp`, in seconds since the epoch.
    pub expires_at: i64,
}

/// Checks an upstream token's signature and claims.
#[async_trait]
pub trait UpstreamVerifier: Send + Sync {
    /// The identity in `token`, if it is valid for this gateway.
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn identity(claims: Value) -> Result<UpstreamIdentity, AuthError> {
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        identity_from_claims(&claims, "sub", "chatkit")
    }

    #[test]
    fn the_user_and_expiry_are_read_and_our_own_tokens_are_refused() {
        let ok = identity(json!({"sub": "alice", "exp": 100, "aud": "https://app"})).unwrap();
        assert_eq!((ok.user.as_str(), ok.expires_at), ("alice", 100));
        for refused in [
            json!({"sub": "alice", "exp": 100, "typ": SESSION_TYP}),
            json!({"sub": "alice", "exp": 100, "aud": "chatkit"}),
            json!({"sub": "alice", "exp": 100, "aud": ["https://app", "chatkit"]}),
            json!({"exp": 100}),
            json!({"sub": "", "exp": 100}),
            json!({"sub": "alice"}),
        ] {
            assert!(
                matches!(identity(refused.clone()), Err(AuthError::InvalidToken)),
                "{refused}"
            );
        }
    }

    #[test]
    fn empty_issuer_and_audience_are_not_checked() {
        let mut settings = crate::config::Settings::defaults().upstream;
        settings.issuer.clear();
        settings.audience.clear();
        let v = upstream_validation(Algorithm::EdDSA, &settings);
        assert!(v.iss.is_none() && !v.validate_aud);
        settings.issuer = "https://auth".into();
        settings.audience = "https://app".into();
        let v = upstream_validation(Algorithm::EdDSA, &settings);
        assert!(v.iss.is_some_and(|i| i.contains("https://auth")));
        assert!(v.validate_aud && v.aud.is_some_and(|a| a.contains("https://app")));
        assert!(v.required_spec_claims.contains("exp"));
    }
}
