//! The HTTP surface (poem-openapi). Handlers parse, call a service, map the result.

pub mod attachments;
pub mod chatkit;
mod chatkit_doc;
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
pub use state::{AppState, Services};

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
    /// The ChatKit protocol: what the ChatKit widget speaks in its custom-backend mode
    ChatKit,
    /// Liveness and readiness
    Health,
}

/// Where the REST API is served unless `server.api_prefix` says otherwise.
pub use crate::config::DEFAULT_API_PREFIX as DEFAULT_PREFIX;

/// Where the ChatKit endpoint is served unless `chatkit.path` says otherwise.
pub const DEFAULT_CHATKIT_PATH: &str = "/chatkit";

/// The configurable paths the routes and the document are built for: the REST API's
/// prefix (`server.api_prefix`) and the ChatKit endpoint (`chatkit.path`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub api_prefix: String,
    pub chatkit: String,
}

impl Paths {
    #[must_use]
    pub fn new(api_prefix: &str, chatkit: &str) -> Self {
        Self {
            api_prefix: api_prefix.to_owned(),
            chatkit: chatkit.to_owned(),
        }
    }

    /// The REST API under `api_prefix`, the ChatKit endpoint at its default path.
    #[must_use]
    pub fn with_prefix(api_prefix: &str) -> Self {
        Self::new(api_prefix, DEFAULT_CHATKIT_PATH)
    }
}

impl Default for Paths {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX, DEFAULT_CHATKIT_PATH)
    }
}

/// Every route: the health routes at the root, the rest under the API prefix (their
/// `prefix_path`, see [`prefix`]), the ChatKit endpoint at its own path.
pub type Apis = (
    health::HealthApi,
    session::SessionApi,
    threads::ThreadsApi,
    messages::MessagesApi,
    chatkit::ChatKitApi,
    attachments::AttachmentsApi,
);

/// The one service the routes, the document and Swagger UI come from.
fn service(paths: &Paths) -> OpenApiService<Apis, ()> {
    let Paths {
        api_prefix: prefix,
        chatkit,
    } = paths;
    OpenApiService::new(
        (
            health::HealthApi,
            session::SessionApi,
            threads::ThreadsApi,
            messages::MessagesApi,
            chatkit::ChatKitApi,
            attachments::AttachmentsApi,
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
         `Authorization: Bearer <client_secret>`: the REST API under {prefix}, or the \
         ChatKit protocol at POST {chatkit}. Errors are \
         `{{\"error\":{{\"code\",\"message\"}}}}` with stable codes."
    ))
}

/// Every route of the API: the health routes at the root, the REST API under the prefix,
/// the ChatKit endpoint at its path.
#[must_use]
pub fn endpoint(paths: &Paths) -> impl Endpoint {
    prefix::with(paths, || service(paths).into_endpoint())
}

/// The OpenAPI document as JSON, with the default paths.
#[must_use]
pub fn spec_json() -> String {
    spec_json_for(&Paths::default())
}

/// The OpenAPI document as JSON, with the REST API under `prefix` (`server.api_prefix`)
/// and the ChatKit endpoint at its default path.
#[must_use]
pub fn spec_json_at(prefix: &str) -> String {
    spec_json_for(&Paths::with_prefix(prefix))
}

/// The OpenAPI document as JSON for `paths`.
#[must_use]
pub fn spec_json_for(paths: &Paths) -> String {
    prefix::with(paths, || service(paths).spec())
}

/// Serves `spec` (from [`spec_json_for`]) as `/openapi.json`.
#[must_use]
pub fn spec_endpoint(spec: String) -> impl Endpoint<Output = Response> {
    make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .body(spec.clone())
    })
}

/// Swagger UI over the document for `paths`. The page is written for each request and not
/// kept: it inlines Swagger UI's whole bundle (about 3 MB, 6 MB while it is written), which
/// held a tenth of the idle service's memory for a page developers open now and then.
#[must_use]
pub fn swagger_ui(paths: &Paths) -> Route {
    let paths = std::sync::Arc::new(paths.clone());
    Route::new().at(
        "/",
        make_sync(move |_| Html(prefix::with(&paths, || service(&paths).swagger_ui_html()))),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_chatkit_path_is_the_configured_default() {
        assert_eq!(
            super::DEFAULT_CHATKIT_PATH,
            crate::config::ChatKitSettings::default().path
        );
    }
}
