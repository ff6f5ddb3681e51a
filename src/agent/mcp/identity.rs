//! The identity every MCP request carries: a short-lived HS256 JWT, minted per request and
//! signed with the server's own `identity_secret`. It says who the user is and nothing
//! more; the user's client_secret and Better Auth token never leave the gateway.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// How long a minted token is valid. Tokens are minted per request, so this only has to
/// cover the request's flight and modest clock skew.
pub const IDENTITY_TTL_SECS: i64 = 60;

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    /// The user a tool call acts for; absent on session requests (initialize, tools/list)
    /// that act for no one.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Mints identity tokens for one server.
pub struct IdentityMinter {
    key: EncodingKey,
    issuer: String,
    audience: String,
}

impl IdentityMinter {
    /// Tokens with `iss` = `issuer`, `aud` = `audience` (the server's name), signed with `secret`.
    #[must_use]
    pub fn new(secret: &[u8], issuer: &str, audience: &str) -> Self {
        Self {
            key: EncodingKey::from_secret(secret),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// A fresh token for `user` (or for the gateway's own session requests when `None`).
    #[must_use]
    pub fn mint(&self, user: Option<&str>) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: user,
            iat: now,
            exp: now + IDENTITY_TTL_SECS,
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .expect("HS256 signing of plain claims cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    #[test]
    fn a_token_names_the_user_the_server_and_expires_within_a_minute() {
        let minter = IdentityMinter::new(b"server-secret", "chatkit-gateway", "app");
        let token = minter.mint(Some("alice"));
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&["app"]);
        v.set_issuer(&["chatkit-gateway"]);
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let claims =
            decode::<serde_json::Value>(&token, &DecodingKey::from_secret(b"server-secret"), &v)
                .unwrap()
                .claims;
        assert_eq!(claims["sub"], "alice");
        let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert!(ttl > 0 && ttl <= 60, "{ttl}");
        assert_ne!(
            claims["jti"],
            decode::<serde_json::Value>(
                &minter.mint(Some("alice")),
                &DecodingKey::from_secret(b"server-secret"),
                &v
            )
            .unwrap()
            .claims["jti"]
        );
        // Another server's secret does not verify it.
        assert!(
            decode::<serde_json::Value>(&token, &DecodingKey::from_secret(b"other"), &v).is_err()
        );
        // A session request names no user.
        let session = minter.mint(None);
        v.set_required_spec_claims(&["exp"]);
        let claims =
            decode::<serde_json::Value>(&session, &DecodingKey::from_secret(b"server-secret"), &v)
                .unwrap()
                .claims;
        assert!(claims.get("sub").is_none());
    }
}
