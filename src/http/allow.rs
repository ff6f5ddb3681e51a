//! `Allow` on every 405 (RFC 9110 §15.5.6 requires it). The methods come from the OpenAPI
//! document, read once at start-up, so a route added to the API is covered without a list
//! to keep in step here.

use std::sync::Arc;

use poem::{
    http::{header, HeaderValue, StatusCode},
    Endpoint, IntoResponse, Request, Response,
};

/// Methods in the order `Allow` lists them.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
];

/// The methods each route answers: path templates (`{id}` matches one segment) and the
/// `Allow` value for each.
#[derive(Debug, Default)]
pub struct AllowedMethods {
    routes: Vec<(Vec<String>, HeaderValue, Arc<str>)>,
}

/// The route template a request matched (`/api/chatkit/threads/{id}`), left on the
/// response for the access log and the metrics, whose labels must not carry ids.
#[derive(Clone, Debug)]
pub struct RouteTemplate(pub Arc<str>);

fn segments(path: &str) -> Vec<String> {
    path.trim_start_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

impl AllowedMethods {
    /// From the `paths` of an OpenAPI document, plus routes served outside it (`extra`:
    /// a path and its methods).
    #[must_use]
    pub fn new(spec: &str, extra: &[(&str, &[&str])]) -> Self {
        let mut routes: Vec<(String, Vec<String>)> =
            serde_json::from_str::<serde_json::Value>(spec)
                .ok()
                .and_then(|doc| doc.get("paths").and_then(|p| p.as_object()).cloned())
                .unwrap_or_default()
                .into_iter()
                .map(|(path, ops)| {
                    let methods = ops
                        .as_object()
                        .map(|ops| ops.keys().map(|m| m.to_ascii_uppercase()).collect())
                        .unwrap_or_default();
                    (path, methods)
                })
                .collect();
        for (path, methods) in extra {
            routes.push((
                (*path).to_owned(),
                methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            ));
        }
        let routes = routes
            .into_iter()
            .filter_map(|(path, mut methods)| {
                // poem answers HEAD wherever it answers GET.
                if methods.iter().any(|m| m == "GET") {
                    methods.push("HEAD".to_owned());
                }
                let allow = METHODS
                    .iter()
                    .filter(|m| methods.iter().any(|have| have == *m))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                let allow = HeaderValue::from_str(&allow).ok()?;
                Some((segments(&path), allow, Arc::from(path.as_str())))
            })
            .collect();
        Self { routes }
    }

    /// The `Allow` value for a request path, if the path is a route.
    #[must_use]
    pub fn allow(&self, path: &str) -> Option<&HeaderValue> {
        self.find(path).map(|(_, allow, _)| allow)
    }

    /// The template of the route a request path matches, if any.
    #[must_use]
    pub fn template(&self, path: &str) -> Option<&Arc<str>> {
        self.find(path).map(|(_, _, template)| template)
    }

    /// Every request looks itself up here, so the path is compared segment by segment in
    /// place, never split into a list of its own.
    fn find(&self, path: &str) -> Option<&(Vec<String>, HeaderValue, Arc<str>)> {
        let path = path.trim_start_matches('/');
        self.routes.iter().find(|(template, _, _)| {
            let mut wanted = path.split('/');
            template.iter().all(|t| {
                wanted.next().is_some_and(|w| {
                    t == w || (t.starts_with('{') && t.ends_with('}') && !w.is_empty())
                })
            }) && wanted.next().is_none()
        })
    }
}

/// Adds `Allow` to a 405 answer.
pub async fn add_allow<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    table: Arc<AllowedMethods>,
) -> poem::Result<Response> {
    let route = table.find(req.uri().path());
    let mut resp = ep.call(req).await?.into_response();
    if let Some((_, allow, template)) = route {
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
            resp.headers_mut().insert(header::ALLOW, allow.clone());
        }
        resp.extensions_mut()
            .insert(RouteTemplate(template.clone()));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_document_has_its_methods() {
        let table = AllowedMethods::new(&crate::api::spec_json(), &[("/chatkit", &["POST"][..])]);
        let allow = |path: &str| table.allow(path).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            allow("/api/chatkit/threads").as_deref(),
            Some("GET, HEAD, POST")
        );
        assert_eq!(
            allow("/api/chatkit/threads/thr_1").as_deref(),
            Some("GET, HEAD, PATCH, DELETE")
        );
        assert_eq!(
            allow("/api/chatkit/threads/thr_1/messages").as_deref(),
            Some("GET, HEAD")
        );
        assert_eq!(
            allow("/api/chatkit/session").as_deref(),
            Some("POST, DELETE")
        );
        assert_eq!(allow("/chatkit").as_deref(), Some("POST"));
        assert_eq!(allow("/healthz").as_deref(), Some("GET, HEAD"));
        assert_eq!(allow("/api/chatkit/threads//messages"), None);
        assert_eq!(allow("/nowhere"), None);
        // A template's segments, not a prefix or an extension of them.
        assert_eq!(allow("/api/chatkit/threads/thr_1/messages/more"), None);
        assert_eq!(allow("/api/chatkit"), None);
        assert_eq!(allow("/chatkit/"), None);
    }
}
