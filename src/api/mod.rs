//! The HTTP surface (poem-openapi). Handlers parse, call a service, map the result.

pub mod chatkit;
pub mod error;
mod health;
mod items;
mod messages;
mod prefix;
mod security;
mod session;
mod sse;
mod state;
mod stream;
mod threads;
mod types;

use poem::{endpoint::make_sync, web::Html, Endpoint, IntoEndpoint, Response, Route};
use poem_openapi::{OpenApiService, ServerObject, Tags};

pub use security::{ClientSecret, UpstreamBearer};
pub use state::AppState;

/// The document's groups of operations. poem-openapi lists tags by name (its registry keeps
/// them in a sorted set), so Swagger UI shows them in that order.
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

/// Where the REST API is served unless `server.api_prefix` says otherwise.
pub use crate::config::DEFAULT_API_PREFIX as DEFAULT_PREFIX;

/// Every route: the health routes at the root, the rest under the API prefix (their
/// `prefix_path`, see [`prefix`]).
pub type Apis = (
    health::HealthApi,
    session::SessionApi,
    threads::ThreadsApi,
    messages::MessagesApi,
);

/// The one service the routes, the document and Swagger UI come from.
fn service(prefix: &str) -> OpenApiService<Apis, ()> {
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
    // Relative: the document is served by the gateway it describes, so Swagger UI and
    // generated clients call the origin they loaded it from.
    .server(ServerObject::new("/").description("The gateway serving this document"))
    .description(format!(
        "Backend-for-frontend for ChatKit-style chat UIs. Exchange a Better Auth JWT for a \
         client_secret at POST {prefix}/session, then call every other route with \
         `Authorization: Bearer <client_secret>`. Errors are \
         `{{\"error\":{{\"code\",\"message\"}}}}` with stable codes."
    ))
}

/// Every route of the API: the health routes at the root, the rest under `prefix`.
#[must_use]
pub fn endpoint(prefix: &str) -> impl Endpoint {
    prefix::with(prefix, || service(prefix).into_endpoint())
}

/// The OpenAPI document as JSON, with the REST API under the default prefix.
#[must_use]
pub fn spec_json() -> String {
    spec_json_at(DEFAULT_PREFIX)
}

/// The OpenAPI document as JSON, with the REST API under `prefix` (`server.api_prefix`).
#[must_use]
pub fn spec_json_at(prefix: &str) -> String {
    prefix::with(prefix, || service(prefix).spec())
}

/// Serves `spec` (from [`spec_json_at`]) as `/openapi.json`.
#[must_use]
pub fn spec_endpoint(spec: String) -> impl Endpoint<Output = Response> {
    make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .body(spec.clone())
    })
}

/// Swagger UI over the document with the REST API under `prefix`. The page is written for
/// each request and not kept: it inlines Swagger UI's whole bundle (about 3 MB, 6 MB while
/// it is written), which held a tenth of the idle service's memory for a page developers
/// open now and then.
#[must_use]
pub fn swagger_ui(prefix: &str) -> Route {
    let prefix: std::sync::Arc<str> = prefix.into();
    Route::new().at(
        "/",
        make_sync(move |_| Html(prefix::with(&prefix, || service(&prefix).swagger_ui_html()))),
    )
}
