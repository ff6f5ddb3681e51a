//! The HTTP surface (poem-openapi). Handlers parse, call a service, map the result.

pub mod chatkit;
pub mod connections;
pub mod error;
mod health;
mod messages;
pub mod request_id;
mod security;
mod session;
mod state;
mod stream;
mod threads;
mod types;

use poem_openapi::{OpenApiService, Tags};

pub use security::{ClientSecret, UpstreamBearer};
pub use state::AppState;

#[derive(Tags)]
pub enum ApiTags {
    /// client_secret lifecycle: exchange a Better Auth JWT, refresh, sign out
    Session,
    /// The user's conversation threads
    Threads,
    /// Sending a message to the assistant
    Messages,
    /// Liveness and readiness
    Health,
}

pub type Apis = (
    health::HealthApi,
    session::SessionApi,
    threads::ThreadsApi,
    messages::MessagesApi,
);

/// The OpenAPI service with every route; state is read from request data.
#[must_use]
pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            health::HealthApi,
            session::SessionApi,
            threads::ThreadsApi,
            messages::MessagesApi,
        ),
        "chatkit-gateway",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Backend-for-frontend for ChatKit-style chat UIs. Exchange a Better Auth JWT for a \
         client_secret at POST /api/chatkit/session, then call every other route with \
         `Authorization: Bearer <client_secret>`. Errors are \
         `{\"error\":{\"code\",\"message\"}}` with stable codes.",
    )
}

/// The OpenAPI document as JSON.
#[must_use]
pub fn spec_json() -> String {
    service().spec()
}
