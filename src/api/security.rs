use poem::Request;
use poem_openapi::{auth::Bearer, SecurityScheme};

use crate::{
    api::{error::ApiError, AppState},
    auth::Principal,
};

/// A Better Auth JWT (or, in development, a token from `chatkit-gateway dev-token`).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT")]
pub struct UpstreamBearer(pub Bearer);

/// A client_secret from POST /api/chatkit/session.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_client_secret")]
pub struct ClientSecret(pub Principal);

async fn check_client_secret(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("state not installed")))?;
    let principal = state
        .auth
        .authenticate(&bearer.token)
        .await
        .map_err(ApiError::from)?;
    // The request span (request_id.rs) declares the field; the access line then names the user.
    tracing::Span::current().record("user_id", tracing::field::display(&principal.user));
    Ok(principal)
}
