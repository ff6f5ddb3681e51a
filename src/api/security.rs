use poem::{http::header, Request};
use poem_openapi::{auth::Bearer, SecurityScheme};

use crate::{
    api::{error::ApiError, AppState},
    auth::Principal,
};

/// A Better Auth JWT (or, in development, a token from `chatkit-gateway dev-token`).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT")]
pub struct UpstreamBearer(pub Bearer);

/// A client_secret from `POST /session` (under the API prefix).
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_client_secret")]
pub struct ClientSecret(pub Principal);

async fn check_client_secret(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    Ok(authenticate(req, &bearer.token).await?)
}

/// The caller of a route outside poem-openapi (the ChatKit endpoint), by the client_secret
/// in its `Authorization` header. (Two such headers never get here: the transport refuses
/// them for every route.)
pub async fn client_secret(req: &Request) -> Result<Principal, ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token)
        .ok_or(crate::auth::AuthError::MissingToken)?;
    authenticate(req, token).await
}

/// One check for every client_secret route.
async fn authenticate(req: &Request, token: &str) -> Result<Principal, ApiError> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("state not installed")))?;
    let principal = state.auth.authenticate(token).await?;
    // The request span (http/request_id.rs) declares the field; the access line then names
    // the user.
    tracing::Span::current().record("user_id", tracing::field::display(&principal.user));
    Ok(principal)
}
