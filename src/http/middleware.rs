//! Request middleware of the transport: what every route gets before its handler runs.

use std::sync::Arc;

use poem::{
    http::{header, StatusCode},
    Endpoint, IntoResponse, Request, Response,
};

/// Refuses a request with several `Authorization` headers: which one a layer reads would
/// otherwise decide who the caller is (first-wins here, last-wins in a proxy).
pub async fn single_authorization<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    if req
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(crate::api::error::ApiError::Malformed(
            "send one Authorization header, not several".into(),
        )
        .into());
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// Refuses bodies over `limit` bytes: by `Content-Length` up front, or while reading a
/// chunked body. (poem's `SizeLimit` demands a `Content-Length`, which bodiless POSTs lack.)
pub async fn limit_body<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    limit: usize,
) -> poem::Result<Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(len) if len > limit => {
            return Err(poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE))
        }
        Some(_) => {}
        None if req.headers().contains_key(header::TRANSFER_ENCODING) => {
            let body = req.take_body().into_bytes_limit(limit).await?;
            req.set_body(body);
        }
        None => {}
    }
    ep.call(req).await.map(IntoResponse::into_response)
}
