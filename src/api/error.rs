//! The API error: every non-2xx answer is `{"error":{"code","message"}}` with a stable code.
//! Layer errors (store, auth, agent) convert into it here and nowhere else.

use poem::{http::StatusCode, Response};
use poem_openapi::{
    registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef},
    Object,
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
    /// A widget action of a type this server does not carry out.
    #[error("{0}")]
    ActionUnknown(String),
    /// A widget action whose payload or target does not fit it.
    #[error("{0}")]
    ActionInvalid(String),
    /// A widget action the tool refused.
    #[error("{0}")]
    ActionFailed(String),
    #[error("{0}")]
    TaskNotFound(String),
    /// The composer picked a model this server does not offer.
    #[error("{0}")]
    ModelNotAllowed(String),
    #[error("nothing in this thread waits for that answer: the newest item is not a pending client tool call or question")]
    NothingPending,
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
    /// An attachment refused or not found (`attachment.*`; see src/attachments/error.rs).
    #[error("{0}")]
    Attachment(crate::attachments::AttachmentError),
    /// A body over the limit that applies to it (`request.too_large`).
    #[error("{0}")]
    TooLarge(String),
    /// Dictation that is not base64 audio.
    #[error("{0}")]
    AudioInvalid(String),
    #[error("{0}")]
    AudioTooLarge(String),
    #[error("{0}")]
    AudioTypeNotAllowed(String),
    /// The agent's provider cannot transcribe (the local agent).
    #[error("this server's agent cannot transcribe dictation; type the message instead")]
    TranscriptionUnavailable,
    /// The provider failed to transcribe: unlike a failed turn, nothing was recorded.
    #[error("the model provider could not transcribe the recording; nothing was saved, try again")]
    TranscriptionFailed,
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
            Self::ThreadNotFound | Self::ItemNotFound | Self::TaskNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            Self::ActionUnknown(_) | Self::ActionInvalid(_) | Self::ModelNotAllowed(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::ActionFailed(_) | Self::NothingPending => StatusCode::CONFLICT,
            Self::IdempotencyInProgress | Self::TurnInProgress => StatusCode::CONFLICT,
            Self::AgentUnavailable | Self::TranscriptionFailed => StatusCode::BAD_GATEWAY,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable | Self::ReadOnly | Self::StorageFull => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Attachment(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::TooLarge(_) | Self::AudioTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::AudioInvalid(_) => StatusCode::BAD_REQUEST,
            Self::AudioTypeNotAllowed(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TranscriptionUnavailable => StatusCode::NOT_IMPLEMENTED,
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
            Self::ActionUnknown(_) => "action.unknown",
            Self::ActionInvalid(_) => "action.invalid",
            Self::ActionFailed(_) => "action.failed",
            Self::TaskNotFound(_) => "task.not_found",
            Self::ModelNotAllowed(_) => "model.not_allowed",
            Self::NothingPending => "item.not_pending",
            Self::TurnInProgress => "turn.in_progress",
            Self::IdempotencyMismatch => "idempotency.mismatch",
            Self::IdempotencyInProgress => "idempotency.in_progress",
            Self::AgentUnavailable => "agent.unavailable",
            Self::TranscriptionFailed => "transcription.failed",
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable => "service.unavailable",
            Self::ReadOnly => "service.read_only",
            Self::StorageFull => "service.storage_full",
            Self::Internal(_) => "internal",
            Self::Attachment(e) => e.code(),
            Self::TooLarge(_) => "request.too_large",
            Self::AudioInvalid(_) => "transcription.audio_invalid",
            Self::AudioTooLarge(_) => "transcription.too_large",
            Self::AudioTypeNotAllowed(_) => "transcription.type_not_allowed",
            Self::TranscriptionUnavailable => "transcription.unavailable",
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

/// What each status means on the routes that can answer it, with the codes it carries.
/// Routes pick from these (see [`route_errors!`]) so the document lists, per operation,
/// exactly the errors that operation returns.
pub mod described {
    pub const MALFORMED_HEADERS: &str =
        "Malformed request (`request.malformed`): several `Authorization` headers";
    pub const MALFORMED_PARAMS: &str = "Malformed request (`request.malformed`): a parameter \
        of the wrong type, several `Authorization` headers";
    pub const MALFORMED_BODY: &str = "Malformed request (`request.malformed`): a body that is \
        not JSON or misses a required field, several `Authorization` headers";
    pub const UNAUTHORIZED: &str = "No valid client_secret (`auth.missing_token`, \
        `auth.invalid_token`, `auth.expired`, `auth.unsupported_algorithm`, `auth.revoked`); \
        answered with `WWW-Authenticate: Bearer`";
    pub const UNAUTHORIZED_UPSTREAM: &str = "No valid upstream token (`auth.missing_token`, \
        `auth.invalid_token`, `auth.expired`, `auth.unsupported_algorithm`); answered with \
        `WWW-Authenticate: Bearer`";
    pub const UNAUTHORIZED_REFRESH: &str = "The client_secret cannot be refreshed \
        (`auth.invalid_token`, `auth.expired` past the grace period, `auth.revoked`, \
        `auth.session_too_old`, `auth.token_reused`: the session is now signed out), or the \
        upstream token sent with it is not valid (`auth.missing_token` when one is required, \
        `auth.invalid_token`, `auth.expired`, `auth.unsupported_algorithm`, \
        `auth.user_mismatch`); answered with `WWW-Authenticate: Bearer`";
    pub const THREAD_NOT_FOUND: &str =
        "No such thread, or it belongs to another user (`thread.not_found`)";
    pub const TOO_LARGE: &str =
        "The body is larger than the configured limit (`request.too_large`)";
    pub const UNSUPPORTED_MEDIA_TYPE: &str =
        "The body is not sent as `application/json` (`request.unsupported_media_type`)";
    pub const RATE_LIMITED: &str = "Too many requests from this user, upstream subject or \
        session family (`rate_limited`); retry after `Retry-After` seconds";
    pub const UNAVAILABLE_READ: &str = "The database is unreachable \
        (`service.unavailable`); retry after `Retry-After` seconds";
    pub const UNAVAILABLE_WRITE: &str = "The database is unreachable \
        (`service.unavailable`), read-only (`service.read_only`) or full \
        (`service.storage_full`); retry after `Retry-After` seconds";
    pub const UNAVAILABLE_UPSTREAM: &str = "The database is unreachable \
        (`service.unavailable`), read-only (`service.read_only`) or full \
        (`service.storage_full`), or the upstream signing keys cannot be fetched \
        (`auth.keys_unavailable`); retry after `Retry-After` seconds";
}

/// The declared error responses of one operation, for `ApiResponse::meta`.
#[must_use]
pub fn declared_responses(declared: &[(u16, &'static str)]) -> MetaResponses {
    MetaResponses {
        responses: declared
            .iter()
            .map(|&(status, description)| MetaResponse {
                description,
                status: Some(status),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: "application/json",
                    schema: <ErrorBody as poem_openapi::types::Type>::schema_ref(),
                }],
                headers: declared_headers(status),
            })
            .collect(),
    }
}

/// The headers `ApiError::as_response` and `envelope_errors` add to a status.
fn declared_headers(status: u16) -> Vec<MetaHeader> {
    let header = |name: &str, description: &str, schema: MetaSchema| MetaHeader {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        required: true,
        deprecated: false,
        schema: MetaSchemaRef::Inline(Box::new(schema)),
    };
    match status {
        401 => vec![header(
            "WWW-Authenticate",
            "`Bearer`",
            MetaSchema::new("string"),
        )],
        429 | 503 => vec![header(
            "Retry-After",
            "Seconds to wait before retrying",
            MetaSchema {
                pattern: Some("^[0-9]+$".to_owned()),
                ..MetaSchema::new("string")
            },
        )],
        _ => vec![],
    }
}

/// Answers `err`, after checking that `route` declares its status: an error a route does
/// not declare makes the document false, so debug builds (the tests) fail loudly on it.
/// 500s are never declared: they are bugs.
#[must_use]
pub fn declared_error(err: ApiError, route: &str, declared: &[(u16, &'static str)]) -> poem::Error {
    let status = err.status();
    if status != StatusCode::INTERNAL_SERVER_ERROR
        && !declared.iter().any(|&(s, _)| s == status.as_u16())
    {
        tracing::error!(route, %status, code = err.code(), "error not declared for this route");
        if cfg!(debug_assertions) {
            panic!(
                "{route} answered {status} ({}), which it does not declare",
                err.code()
            );
        }
    }
    err.into()
}

/// Defines the error type of one operation: an [`ApiError`] whose document entry lists
/// only the given statuses. Handlers return `Result<_, ThatType>` and use `?` as before;
/// the envelope and the status mapping stay those of [`ApiError`].
macro_rules! route_errors {
    ($($(#[doc = $doc:literal])* $name:ident { $($status:literal => $desc:expr),+ $(,)? })+) => {$(
        $(#[doc = $doc])*
        #[derive(Debug)]
        pub struct $name(pub $crate::api::error::ApiError);

        impl $name {
            const DECLARED: &'static [(u16, &'static str)] = &[$(($status, $desc)),+];
        }

        impl From<$crate::api::error::ApiError> for $name {
            fn from(err: $crate::api::error::ApiError) -> Self {
                Self(err)
            }
        }

        impl From<$crate::store::StoreError> for $name {
            fn from(err: $crate::store::StoreError) -> Self {
                Self(err.into())
            }
        }

        impl From<$crate::auth::AuthError> for $name {
            fn from(err: $crate::auth::AuthError) -> Self {
                Self(err.into())
            }
        }

        impl From<$crate::limits::RateLimited> for $name {
            fn from(err: $crate::limits::RateLimited) -> Self {
                Self(err.into())
            }
        }

        impl From<$crate::chat::ChatError> for $name {
            fn from(err: $crate::chat::ChatError) -> Self {
                Self(err.into())
            }
        }

        impl From<$name> for poem::Error {
            fn from(err: $name) -> Self {
                $crate::api::error::declared_error(err.0, stringify!($name), $name::DECLARED)
            }
        }

        impl poem_openapi::ApiResponse for $name {
            fn meta() -> poem_openapi::registry::MetaResponses {
                $crate::api::error::declared_responses(Self::DECLARED)
            }

            fn register(registry: &mut poem_openapi::registry::Registry) {
                <$crate::api::error::ErrorBody as poem_openapi::types::Type>::register(registry);
            }
        }
    )+};
}
pub(crate) use route_errors;

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::ThreadNotFound => Self::ThreadNotFound,
            StoreError::ItemNotFound => Self::ItemNotFound,
            StoreError::TurnInProgress => Self::TurnInProgress,
            StoreError::NothingPending => Self::NothingPending,
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

impl From<crate::attachments::AttachmentError> for ApiError {
    fn from(err: crate::attachments::AttachmentError) -> Self {
        use crate::attachments::AttachmentError;
        match err {
            AttachmentError::Store(e) => e.into(),
            AttachmentError::ThreadNotFound => Self::ThreadNotFound,
            AttachmentError::Storage(ref why) => {
                tracing::warn!(error = %why, "attachment storage unavailable");
                Self::Attachment(err)
            }
            other => Self::Attachment(other),
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
        match err {
            AgentError::Store(e) => return e.into(),
            AgentError::TranscriptionUnavailable => return Self::TranscriptionUnavailable,
            _ => {}
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
        // A string field sent as a number, boolean, array or object: the body reads fine,
        // one value is wrong (422 on every string field).
        StatusCode::BAD_REQUEST if err.to_string().contains(super::types::NOT_A_JSON_STRING) => {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "request.invalid",
                &err.to_string(),
            );
        }
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
            ChatKitError::Invalid(m) => Self::Invalid(m),
            ChatKitError::Store(e) => e.into(),
            ChatKitError::Chat(e) => e.into(),
            ChatKitError::ActionUnknown(m) => Self::ActionUnknown(m),
            ChatKitError::ActionInvalid(m) => Self::ActionInvalid(m),
            ChatKitError::ModelNotAllowed(m) => Self::ModelNotAllowed(m),
            ChatKitError::Action(e) => e.into(),
            ChatKitError::Attachment(e) => e.into(),
            ChatKitError::AudioInvalid(m) => Self::AudioInvalid(m),
            ChatKitError::AudioTooLarge(m) => Self::AudioTooLarge(m),
            ChatKitError::AudioType(m) => Self::AudioTypeNotAllowed(m),
            // Only dictation calls the provider outside a turn.
            ChatKitError::Agent(e) => match e {
                AgentError::Store(_) | AgentError::TranscriptionUnavailable => e.into(),
                other => {
                    tracing::warn!(error = %other, "transcription failed");
                    Self::TranscriptionFailed
                }
            },
        }
    }
}

impl From<crate::task_actions::ActionError> for ApiError {
    fn from(err: crate::task_actions::ActionError) -> Self {
        use crate::task_actions::ActionError;
        match err {
            ActionError::Store(e) => e.into(),
            ActionError::Agent(e) => e.into(),
            ActionError::TaskNotShown(_) => Self::ActionInvalid(err.to_string()),
            ActionError::TaskNotFound(_) => Self::TaskNotFound(err.to_string()),
            ActionError::Failed(m) => Self::ActionFailed(m),
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
