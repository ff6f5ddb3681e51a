//! Cross-origin headers that never refuse a request. Allowed origins get the CORS headers;
//! any other origin gets none, and the browser keeps the answer from the page. poem's own
//! `Cors` answers 403 to an origin outside its list, which refused Swagger UI served by
//! the gateway itself (browsers send `Origin` on every same-origin POST) and any origin
//! for `/healthz`; a server gains nothing by refusing what the browser enforces anyway.

use std::sync::Arc;

use poem::{
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    Endpoint, IntoResponse, Request, Response,
};

/// What the clients call: the REST API, the ChatKit endpoint and the docs.
const METHODS: &str = "GET, POST, PATCH, DELETE, OPTIONS";
/// Request headers the clients send beyond the safelisted ones: the bearer, JSON bodies,
/// retries keyed by `Idempotency-Key`, ChatKit's locale and a caller's request id.
const REQUEST_HEADERS: &str =
    "authorization, content-type, idempotency-key, accept-language, x-request-id";
/// Response headers a page may read: the id to quote in a bug report, and when to retry.
const EXPOSED_HEADERS: &str = "x-request-id, retry-after";
const MAX_AGE_SECS: &str = "600";

/// The origins allowed to read the gateway's answers from another origin.
#[derive(Debug, Default)]
pub struct CorsPolicy {
    origins: Vec<HeaderValue>,
}

impl CorsPolicy {
    /// From `server.cors_allowed_origins`; an entry that cannot be a header value (config
    /// validation refuses those) would never match a request and is left out.
    #[must_use]
    pub fn new(origins: &[String]) -> Self {
        Self {
            origins: origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
                .collect(),
        }
    }

    /// The request's `Origin`, when it is one of the allowed origins.
    fn allowed<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        self.origins.iter().any(|o| o == origin).then_some(origin)
    }
}

fn is_preflight(req: &Request) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Answers preflights itself (204, with the CORS headers only for an allowed origin) and
/// adds `Access-Control-Allow-Origin` to every answer for an allowed origin, errors
/// included, so a page can read the error envelope.
pub async fn cors<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    policy: Arc<CorsPolicy>,
) -> poem::Result<Response> {
    let origin = policy.allowed(req.headers()).cloned();
    let mut resp = if is_preflight(&req) {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        if origin.is_some() {
            let h = resp.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(REQUEST_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE_SECS),
            );
        }
        resp
    } else {
        let mut resp = ep.call(req).await?.into_response();
        if origin.is_some() {
            resp.headers_mut().insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
        resp
    };
    let h = resp.headers_mut();
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    // The answer depends on Origin whenever any origin is allowed: a shared cache must not
    // hand one origin's headers to another.
    if !policy.origins.is_empty() {
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    Ok(resp)
}
