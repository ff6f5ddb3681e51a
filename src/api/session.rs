use poem::{web::Data, Request};
use poem_openapi::{param::Query, payload::Json, OpenApi};

use super::{
    types::{NoContent, RefreshRequest, SessionResponse, SignOutAll},
    ApiTags, ClientSecret, UpstreamBearer,
};
use crate::{
    api::{
        error::{described, route_errors, ApiError},
        AppState,
    },
    auth::bearer_token,
};

pub struct SessionApi;

route_errors! {
    CreateSessionError {
        400 => described::MALFORMED_HEADERS,
        401 => described::UNAUTHORIZED_UPSTREAM,
        429 => described::RATE_LIMITED,
        503 => described::UNAVAILABLE_UPSTREAM,
    }
    RefreshSessionError {
        400 => described::MALFORMED_BODY,
        401 => described::UNAUTHORIZED_REFRESH,
        413 => described::TOO_LARGE,
        415 => described::UNSUPPORTED_MEDIA_TYPE,
        422 => "`token` is not a JSON string (`request.invalid`)",
        429 => described::RATE_LIMITED,
        503 => described::UNAVAILABLE_UPSTREAM,
    }
    DeleteSessionError {
        400 => described::MALFORMED_HEADERS,
        401 => described::UNAUTHORIZED,
        422 => "`all` is not true or false (`request.invalid`)",
        503 => described::UNAVAILABLE_WRITE,
    }
}

#[OpenApi(tag = "ApiTags::Session", prefix_path = &super::prefix::current())]
impl SessionApi {
    /// Exchange a Better Auth JWT for a client_secret.
    ///
    /// Send the upstream token as `Authorization: Bearer <jwt>`. The client_secret is an
    /// HS256 JWT valid for `expires_in` seconds (1800 by default); renew it at /refresh.
    #[oai(path = "/session", method = "post", operation_id = "createSession")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: UpstreamBearer,
    ) -> Result<Json<SessionResponse>, CreateSessionError> {
        let minted = state.auth.start_session(&auth.0.token).await?;
        // Counted once the subject is known; minting wrote nothing, so refusing now costs
        // nothing but the token, which the caller never sees.
        state.limits.session_start(&minted.user).await?;
        Ok(Json(minted.into()))
    }

    /// Rotate a client_secret before it expires (what the client kit's `api.fetch` calls).
    ///
    /// `token` is the current client_secret, which may have expired up to the grace period
    /// (24 h by default). Each client_secret refreshes once: a second refresh within 10 s
    /// (two tabs) is allowed, a later one signs the whole session out (`auth.token_reused`).
    /// An `Authorization: Bearer <Better Auth JWT>` may be sent as well; it must then be
    /// valid and name the same user.
    #[oai(path = "/refresh", method = "post", operation_id = "refreshSession")]
    async fn refresh(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: Json<RefreshRequest>,
    ) -> Result<Json<SessionResponse>, RefreshSessionError> {
        let upstream = match req.headers().get(poem::http::header::AUTHORIZATION) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(bearer_token)
                    .ok_or(crate::auth::AuthError::InvalidToken)?,
            ),
        };
        // Before the refresh: once it has rotated the token, refusing would lose the new
        // one, and the client's retry with the old one would look like token theft.
        state.limits.refresh(&body.0.token).await?;
        let minted = state.auth.refresh(&body.0.token, upstream).await?;
        Ok(Json(minted.into()))
    }

    /// Sign out: revoke this session (every refresh of it), or with `all=true` every
    /// session the user has started so far. `all` takes `true`/`false` (or `1`/`0`, in
    /// any case).
    #[oai(path = "/session", method = "delete", operation_id = "deleteSession")]
    async fn revoke(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        all: Query<Option<SignOutAll>>,
    ) -> Result<NoContent, DeleteSessionError> {
        let all = match all.0.as_deref().map(|a| a.to_ascii_lowercase()).as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => {
                return Err(ApiError::Invalid(
                    "`all` must be true or false (1 or 0 also work)".into(),
                )
                .into())
            }
        };
        state.auth.revoke(&auth.0, all).await?;
        Ok(NoContent::Done)
    }
}
