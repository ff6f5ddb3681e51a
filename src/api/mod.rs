//! The HTTP surface (poem-openapi). Handlers parse, call a service, map the result.

pub mod allow;
pub mod chatkit;
pub mod connections;
pub mod cors;
pub mod error;
mod health;
mod messages;
pub mod request_id;
mod security;
pub mod server;
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

/// Where the REST API is served unless `server.api_prefix` says otherwise.
pub use crate::config::DEFAULT_API_PREFIX as DEFAULT_PREFIX;

/// The routes served under the configurable prefix (`server.api_prefix`). poem-openapi's
/// `prefix_path` is fixed at compile time, so these carry none and are nested under the
/// prefix at start-up instead.
pub type PrefixedApis = (
    session::SessionApi,
    threads::ThreadsApi,
    messages::MessagesApi,
);

/// Every route, in the order the document lists them: health first, at the root.
pub type Apis = (
    health::HealthApi,
    session::SessionApi,
    threads::ThreadsApi,
    messages::MessagesApi,
);

/// The routes under the prefix; nest the result at `prefix` (see [`endpoint`]).
#[must_use]
pub fn service() -> OpenApiService<PrefixedApis, ()> {
    OpenApiService::new(
        (
            session::SessionApi,
            threads::ThreadsApi,
            messages::MessagesApi,
        ),
        "chatkit-gateway",
        env!("CARGO_PKG_VERSION"),
    )
}

/// The health routes, at the root whatever the prefix.
fn health_service() -> OpenApiService<health::HealthApi, ()> {
    OpenApiService::new(
        health::HealthApi,
        "chatkit-gateway",
        env!("CARGO_PKG_VERSION"),
    )
}

/// Every route of the API: the health routes at the root, the rest under `prefix`.
#[must_use]
pub fn endpoint(prefix: &str) -> Route {
    Route::new()
        .nest(prefix, service())
        .nest("/", health_service())
}

/// The service the document is rendered from: every route, the prefixed ones still without
/// their prefix (see [`prefix_paths`]).
fn document_service() -> OpenApiService<Apis, ()> {
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
    // Names the route under the default prefix, as the doc comments do; `spec_json_at`
    // moves them all at once.
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

/// The OpenAPI document as JSON, with the REST API under the default prefix.
#[must_use]
pub fn spec_json() -> String {
    spec_json_at(DEFAULT_PREFIX)
}

/// The OpenAPI document as JSON, with the REST API under `prefix` (`server.api_prefix`).
#[must_use]
pub fn spec_json_at(prefix: &str) -> String {
    let spec = prefix_paths(order_tags(document_service().spec()), prefix);
    // Descriptions (the document's, the client_secret scheme's doc comment) are
    // compile-time text naming routes under the default prefix. One pass: a prefix that
    // extends the default is not applied twice.
    spec.replace(&format!(" {DEFAULT_PREFIX}/"), &format!(" {prefix}/"))
}

/// Puts `prefix` in front of the prefixed routes' keys in `paths`. poem-openapi's own
/// `url_prefix` would prefix the health routes too, and its `prefix_path` is fixed at
/// compile time; the keys are rewritten in the text (re-serializing the whole document
/// would reorder every object's keys). `paths` is one level deep in the pretty-printed
/// document and comes after `info`, `servers` and `tags`, none of which has a key that
/// looks like a path at that depth.
fn prefix_paths(mut spec: String, prefix: &str) -> String {
    let Some(start) = spec.find("\n  \"paths\": {") else {
        return spec;
    };
    for path in <PrefixedApis as poem_openapi::OpenApi>::meta()
        .into_iter()
        .flat_map(|api| api.paths)
    {
        let key = |p: &str| serde_json::to_string(p).map(|quoted| format!("\n    {quoted}: {{"));
        if let (Ok(old), Ok(new)) = (key(&path.path), key(&format!("{prefix}{}", path.path))) {
            if let Some(at) = spec[start..].find(&old) {
                spec.replace_range(start + at..start + at + old.len(), &new);
            }
        }
    }
    spec
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

/// Swagger UI over `spec` (from [`spec_json_at`]) rather than poem-openapi's own rendering.
/// The page is written for each request and not kept: it inlines Swagger UI's whole
/// bundle (about 3 MB, 6 MB while it is written), which held a tenth of the idle
/// service's memory for a page developers open now and then.
#[must_use]
pub fn swagger_ui(spec: &str) -> Route {
    let spec: std::sync::Arc<str> = spec.into();
    Route::new().at(
        "/",
        make_sync(move |_| {
            let service = document_service();
            Html(
                service
                    .swagger_ui_html()
                    .replacen(&service.spec(), &spec, 1),
            )
        }),
    )
}
