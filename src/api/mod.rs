//! The HTTP surface (poem-openapi). Handlers parse, call a service, map the result.

pub mod allow;
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

use poem::{endpoint::make_sync, web::Html, Endpoint, Response, Route};
use poem_openapi::{OpenApiService, Tags};

pub use security::{ClientSecret, UpstreamBearer};
pub use state::AppState;

/// In the order the document lists them (see [`TAG_ORDER`]).
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
    // Relative: the document is served by the gateway it describes, so Swagger UI and
    // generated clients call the origin they loaded it from.
    .server(poem_openapi::ServerObject::new("/").description("The gateway serving this document"))
    .description(
        "Backend-for-frontend for ChatKit-style chat UIs. Exchange a Better Auth JWT for a \
         client_secret at POST /api/chatkit/session, then call every other route with \
         `Authorization: Bearer <client_secret>`. Errors are \
         `{\"error\":{\"code\",\"message\"}}` with stable codes.",
    )
}

/// The order of the tags in the document: the order a client meets them in.
const TAG_ORDER: [ApiTags; 4] = [
    ApiTags::Session,
    ApiTags::Threads,
    ApiTags::Messages,
    ApiTags::Health,
];

/// The OpenAPI document as JSON.
#[must_use]
pub fn spec_json() -> String {
    order_tags(service().spec())
}

/// poem-openapi lists tags by name; Swagger UI shows them in the listed order. The tag
/// array is rewritten in place (re-serializing the whole document would reorder every
/// object's keys).
fn order_tags(spec: String) -> String {
    #[derive(Clone, serde::Deserialize, serde::Serialize)]
    struct Tag {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Doc {
        tags: Vec<Tag>,
    }
    let Ok(doc) = serde_json::from_str::<Doc>(&spec) else {
        return spec;
    };
    let rank = |tag: &Tag| {
        TAG_ORDER
            .iter()
            .position(|t| t.name() == tag.name)
            .unwrap_or(usize::MAX)
    };
    let mut ordered = doc.tags.clone();
    ordered.sort_by_key(rank);
    // The document is pretty-printed with the tag array one level deep.
    let render = |tags: &[Tag]| {
        serde_json::to_string_pretty(tags).map(|s| format!("\"tags\": {}", s.replace('\n', "\n  ")))
    };
    match (render(&doc.tags), render(&ordered)) {
        (Ok(old), Ok(new)) => spec.replacen(&old, &new, 1),
        _ => spec,
    }
}

/// Serves `spec` (from [`spec_json`]) as `/openapi.json`.
#[must_use]
pub fn spec_endpoint(spec: String) -> impl Endpoint<Output = Response> {
    make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .body(spec.clone())
    })
}

/// Swagger UI over `spec` (from [`spec_json`]) rather than poem-openapi's own rendering.
#[must_use]
pub fn swagger_ui(spec: &str) -> Route {
    let html = service()
        .swagger_ui_html()
        .replacen(&service().spec(), spec, 1);
    Route::new().at("/", make_sync(move |_| Html(html.clone())))
}
