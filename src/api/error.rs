//! The API error: every non-2xx answer is `{"error":{"code","message"}}` with a stable code.
//! Layer errors (store, auth, agent) convert into it here and nowhere else.

use poem::{http::StatusCode, Response};
use poem_openapi::{
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    ApiResponse, Object,
};

use crate::{agent::AgentError, auth::AuthError, store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Auth(AuthError),
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the message is empty")]
    MessageEmpty,
    #[error("the message has {got} characters; the limit is {max}")]
    MessageTooLong { max: usize, got: usize },
    #[error("thread not found")]
    ThreadNotFound,
    #[error("item not found in this thread")]
    ItemNotFound,
    #[error("{0}")]
    Unsupported(String),
    #[error("a turn of this thread is still being answered; wait for it to finish")]
    TurnInProgress,
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyMismatch,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInProgress,
    #[error(
        "the agent could not answer; your message is saved, retry with the same Idempotency-Key"
    )]
    AgentUnavailable,
    #[error("{0}")]
    RateLimited(crate::limits::RateLimited),
    #[error("service unavailable")]
    Unavailable,
    #[error("the database is read-only; writes are refused until an operator fixes it")]
    ReadOnly,
    #[error("the database storage is full; writes are refused until space is freed")]
    StorageFull,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Auth(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_)
            | Self::MessageEmpty
            | Self::MessageTooLong { .. }
            | Self::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ThreadNotFound | Self::ItemNotFound => StatusCode::NOT_FOUND,
            Self::Unsupported(_) => StatusCode::BAD_REQUEST,
            Self::IdempotencyInProgress | Self::TurnInProgress => StatusCode::CONFLICT,
            Self::AgentUnavailable => StatusCode::BAD_GATEWAY,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable | Self::ReadOnly | Self::StorageFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Auth(e) => e.code(),
            Self::Malformed(_) => "request.malformed",
            Self::Invalid(_) => "request.invalid",
            Self::MessageEmpty => "message.empty",
            Self::MessageTooLong { .. } => "message.too_long",
            Self::ThreadNotFound => "thread.not_found",
            Self::ItemNotFound => "item.not_found",
            Self::Unsupported(_) => "chatkit.unsupported",
            Self::TurnInProgress => "turn.in_progress",
            Self::IdempotencyMismatch => "idempotency.mismatch",
            Self::IdempotencyInProgress => "idempotency.in_progress",
            Self::AgentUnavailable => "agent.unavailable",
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable => "service.unavailable",
            Self::ReadOnly => "service.read_only",
            Self::StorageFull => "service.storage_full",
            Self::Internal(_) => "internal",
        }
    }
}

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "2";

/// The body of every error response.
#[derive(Object)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Object)]
pub struct ErrorDetail {
    /// Stable machine-readable code, `<area>.<reason>`.
    pub code: String,
    /// Human-readable explanation; wording may change.
    pub message: String,
}

#[must_use]
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn as_response(&self) -> Response {
        if let Self::Internal(cause) = self {
            // Internals are logged, never shown.
            tracing::error!(error = ?cause, "internal error");
        }
        let mut resp = error_response(self.status(), self.code(), &self.to_string());
        if let Self::Auth(_) = self {
            resp.headers_mut().insert(
                poem::http::header::WWW_AUTHENTICATE,
                poem::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Self::RateLimited(limited) = self {
            let secs = crate::limits::retry_after_secs(limited.retry_after);
            resp.headers_mut()
                .insert(poem::http::header::RETRY_AFTER, secs.into());
        }
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            // Outages and refusals of the database pass (a restart, freed space); clients
            // should come back rather than give up.
            resp.headers_mut().insert(
                poem::http::header::RETRY_AFTER,
                poem::http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        resp
    }
}

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let described = [
            (400, "Malformed request (`request.malformed`)"),
            (401, "Missing, invalid, expired or revoked token (`auth.*`)"),
            (404, "Not found, or owned by another user (`thread.not_found`)"),
            (409, "Idempotent request still running (`idempotency.in_progress`)"),
            (422, "Invalid values (`request.invalid`, `message.empty`, `message.too_long`, `idempotency.mismatch`)"),
            (429, "Too many requests from this user, session or family (`rate_limited`); retry after `Retry-After` seconds"),
            (502, "The agent failed; the user's message is kept (`agent.unavailable`)"),
            (503, "The database is unreachable (`service.unavailable`), read-only (`service.read_only`) or full (`service.storage_full`); retry after `Retry-After` seconds"),
        ];
        MetaResponses {
            responses: described
                .into_iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json",
                        schema: <ErrorBody as poem_openapi::types::Type>::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <ErrorBody as poem_openapi::types::Type>::register(registry);
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::ThreadNotFound => Self::ThreadNotFound,
            StoreError::ItemNotFound => Self::ItemNotFound,
            StoreError::TurnInProgress => Self::TurnInProgress,
            StoreError::CursorNotFound => {
                Self::Invalid("`after` does not name an element of this list".into())
            }
            StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                Self::Unavailable
            }
            StoreError::ReadOnly(e) => {
                tracing::error!(error = %e, "database refuses writes: read-only");
                Self::ReadOnly
            }
            StoreError::Full(e) => {
                tracing::error!(error = %e, "database refuses writes: storage full");
                Self::StorageFull
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl From<crate::limits::RateLimited> for ApiError {
    fn from(err: crate::limits::RateLimited) -> Self {
        Self::RateLimited(err)
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            // The database behind a token check answers like any other store failure: a
            // read-only or full database says so, a bug is a 500 rather than a 503.
            AuthError::Store(e) => e.into(),
            other => Self::Auth(other),
        }
    }
}

impl From<AgentError> for ApiError {
    fn from(err: AgentError) -> Self {
        if let AgentError::Store(e) = err {
            return e.into();
        }
        tracing::warn!(error = %err, "agent failed");
        Self::AgentUnavailable
    }
}

/// Turns poem's own errors (unknown route, wrong method, unparsable body or parameter,
/// body too large, missing bearer) into the same envelope as ours.
pub async fn envelope_errors(err: poem::Error) -> Response {
    if err.is::<ApiError>() {
        return err.into_response();
    }
    let status = err.status();
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("route.not_found", "no such route".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "route.method_not_allowed",
            "method not allowed on this route".to_owned(),
        ),
        StatusCode::UNAUTHORIZED => (
            "auth.missing_token",
            "an Authorization: Bearer token is required".to_owned(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "request.too_large",
            "the request body is too large".to_owned(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "request.unsupported_media_type",
            "send the body as application/json".to_owned(),
        ),
        s if s.is_client_error() => ("request.malformed", err.to_string()),
        _ => {
            tracing::error!(error = %err, "unhandled error");
            ("internal", "internal error".to_owned())
        }
    };
    let mut resp = error_response(status, code, &message);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            poem::http::header::WWW_AUTHENTICATE,
            poem::http::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

impl From<crate::chat::ChatError> for ApiError {
    fn from(err: crate::chat::ChatError) -> Self {
        use crate::chat::ChatError;
        match err {
            ChatError::Store(e) => e.into(),
            ChatError::Agent(e) => e.into(),
            ChatError::IdempotencyMismatch => Self::IdempotencyMismatch,
            ChatError::InProgress => Self::IdempotencyInProgress,
        }
    }
}

impl From<crate::chatkit::ChatKitError> for ApiError {
    fn from(err: crate::chatkit::ChatKitError) -> Self {
        use crate::chatkit::ChatKitError;
        match err {
            ChatKitError::Malformed(m) => Self::Malformed(m),
            ChatKitError::Unsupported(m) => Self::Unsupported(m),
            ChatKitError::Invalid(m) => Self::Invalid(m),
            ChatKitError::Store(e) => e.into(),
            ChatKitError::Chat(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::DbErr;

    use super::*;

    #[test]
    fn a_storage_failure_inside_a_tool_call_is_a_503_not_an_agent_502() {
        let err = AgentError::Store(StoreError::Unavailable(DbErr::Custom("down".into())));
        let api = ApiError::from(crate::chat::ChatError::from(err));
        assert_eq!(
            (api.status().as_u16(), api.code()),
            (503, "service.unavailable")
        );
        let api = ApiError::from(crate::chat::ChatError::from(AgentError::Timeout));
        assert_eq!(
            (api.status().as_u16(), api.code()),
            (502, "agent.unavailable")
        );
    }
}
