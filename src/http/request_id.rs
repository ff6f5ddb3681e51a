//! Request ids: every request runs in a span carrying its id, echoed in the response.

/// Gives every request an id (the caller's `X-Request-Id` when it is a sane token, else a
/// new one), runs the request inside a span that carries it, and echoes it in the response,
/// so one request's log lines can be found together. Tokens are never recorded.
pub async fn request_id<E: poem::Endpoint>(
    ep: std::sync::Arc<E>,
    req: poem::Request,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    use tracing::Instrument;

    const HEADER: &str = "x-request-id";
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        user_id = tracing::field::Empty,
    );
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let mut resp = ep.call(req).instrument(span.clone()).await?.into_response();
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    // Unmatched paths share one label: a scanner's paths must not grow the series set.
    let route = resp
        .extensions()
        .get::<super::allow::RouteTemplate>()
        .map_or_else(|| std::sync::Arc::from("unmatched"), |r| r.0.clone());
    if status >= 500 {
        tracing::warn!(parent: &span, %route, status, micros, "request failed");
    } else {
        tracing::info!(parent: &span, %route, status, micros, "request");
    }
    let labels = [
        ("method", method.as_str().to_owned()),
        ("route", route.to_string()),
        ("status", status.to_string()),
    ];
    metrics::counter!(crate::metrics::HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(crate::metrics::HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
    if let Ok(value) = poem::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, value);
    }
    Ok(resp)
}
