//! The attachment routes, under `{api_prefix}/attachments`:
//!
//! - `POST /attachments`: with the client_secret. A JSON body `{name, size, mime_type}`
//!   creates a two-phase attachment (answered with its `upload_descriptor`); a
//!   multipart/form-data body with a `file` part is the direct strategy (name and type
//!   from the part). 201 with the ChatKit Attachment JSON.
//! - `POST /attachments/{id}/upload?sig=…` (multipart, `file` part: what the widget sends)
//!   or `PUT` (the raw bytes): the two-phase upload target, authorized by its signed link
//!   alone. 200 with the Attachment JSON.
//! - `GET /attachments/{id}/preview?sig=…`: an image's bytes, by its signed link.
//! - `GET /attachments/{id}`: the owner's download, with the client_secret.
//! - `DELETE /attachments/{id}`: with the client_secret. 204.
//!
//! They are plain poem handlers ([`routes`]) because bodies stream: poem-openapi's
//! multipart upload type spools a whole file before the handler runs. The bearer routes
//! are also declared in the document ([`AttachmentsApi`], serving the same handlers). The
//! routes must be mounted outside the server's `body_limit_bytes` (see
//! [`streams_body`]): uploads are bounded by `attachments.max_bytes` here instead.
//!
//! Every answer carrying bytes has `X-Content-Type-Options: nosniff` and
//! `Content-Security-Policy: default-src 'none'; sandbox`, and text is sent as
//! `text/plain`, so nothing an attachment holds can run in the gateway's origin.

use futures_util::TryStreamExt;
use poem::{
    http::{header, HeaderValue, StatusCode},
    web::{Path as PoemPath, Query as PoemQuery},
    Body, IntoResponse, Request, Response, Route,
};
use poem_openapi::{
    auth::Bearer,
    param::Path,
    registry::{
        MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
    },
    ApiResponse, OpenApi, SecurityScheme, Tags,
};
use serde::Deserialize;

use crate::{
    api::error::{described, route_errors, ApiError},
    attachments::{AttachmentError, Attachments, ByteStream},
    auth::{AuthService, Principal},
};

/// What the attachment handlers reach (installed as request data next to the app state).
#[derive(Clone)]
pub struct AttachmentsState {
    pub attachments: Attachments,
    pub auth: AuthService,
}

impl AttachmentsState {
    #[must_use]
    pub fn new(attachments: Attachments, auth: AuthService) -> Self {
        Self { attachments, auth }
    }
}

/// The attachment routes, to nest at `{api_prefix}/attachments`.
#[must_use]
pub fn routes() -> Route {
    use poem::{get, post, EndpointExt as _};
    Route::new()
        .at("/", post(create.map_to_response()))
        .at(
            "/:id",
            get(download.map_to_response()).delete(remove.map_to_response()),
        )
        .at(
            "/:id/upload",
            post(upload.map_to_response()).put(upload.map_to_response()),
        )
        .at("/:id/preview", get(preview.map_to_response()))
}

/// Whether `path` is a route whose body streams to storage, to be exempt from the
/// server's `body_limit_bytes` (it would refuse or buffer the body before the handler).
#[must_use]
pub fn streams_body(api_prefix: &str, path: &str) -> bool {
    let Some(rest) = path
        .strip_prefix(api_prefix.trim_end_matches('/'))
        .and_then(|p| p.strip_prefix("/attachments"))
    else {
        return false;
    };
    let rest = rest.trim_end_matches('/');
    rest.is_empty()
        || rest
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix("/upload"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Most a multipart envelope adds around the file (boundaries, part headers, other
/// small fields), beyond `max_bytes`.
const MULTIPART_SLACK: u64 = 64 * 1024;

/// Largest JSON body of a two-phase create.
const CREATE_JSON_LIMIT: usize = 16 * 1024;

#[derive(Deserialize)]
struct CreateRequest {
    name: String,
    size: u64,
    mime_type: String,
}

#[derive(Deserialize)]
struct Sig {
    sig: Option<String>,
}

#[poem::handler]
async fn create(req: &Request, body: Body) -> Result<Response, ApiError> {
    let (state, principal) = authenticated(req).await?;
    let attachments = &state.attachments;
    let content_type = req.content_type().unwrap_or_default().to_ascii_lowercase();
    let created = if content_type.starts_with("application/json") {
        let bytes = body
            .into_bytes_limit(CREATE_JSON_LIMIT)
            .await
            .map_err(|_| ApiError::Malformed("the JSON body is too large".into()))?;
        let input: CreateRequest = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::Malformed(format!("send {{\"name\", \"size\", \"mime_type\"}}: {e}"))
        })?;
        attachments
            .create(&principal.user, &input.name, input.size, &input.mime_type)
            .await?
    } else if content_type.starts_with("multipart/form-data") {
        let length = content_length(req);
        if length.is_some_and(|n| n > attachments.settings().max_bytes + MULTIPART_SLACK) {
            return Err(too_large(attachments));
        }
        let mut multipart = multipart(req, body)?;
        let (name, mime_type, file) = file_part(&mut multipart).await?;
        let name = name.ok_or_else(|| {
            AttachmentError::NameInvalid("the `file` part has no file name".into())
        })?;
        attachments
            .create_direct(&principal.user, &name, &mime_type, length, file)
            .await?
    } else {
        return Err(ApiError::Malformed(
            "send JSON {name, size, mime_type} (two-phase) or multipart/form-data with a \
             `file` part (direct)"
                .into(),
        ));
    };
    Ok(json_response(
        StatusCode::CREATED,
        &attachments.to_chatkit(&created),
    ))
}

/// The bytes of a two-phase upload: a multipart POST with a `file` part, as the widget
/// sends them, or the raw body of a PUT.
#[poem::handler]
async fn upload(
    req: &Request,
    PoemPath(id): PoemPath<String>,
    PoemQuery(sig): PoemQuery<Sig>,
    body: Body,
) -> Result<Response, ApiError> {
    let state = state(req)?;
    let grant = state
        .attachments
        .verify_upload_link(&id, sig.sig.as_deref().unwrap_or_default())?;
    // The parser outlives the part's stream, which reads through it.
    let mut parser = None;
    let file: ByteStream = if req.method() == poem::http::Method::PUT {
        Box::pin(body.into_bytes_stream())
    } else {
        file_part(parser.insert(multipart(req, body)?)).await?.2
    };
    let uploaded = state.attachments.upload(&grant, &id, file).await?;
    Ok(json_response(
        StatusCode::OK,
        &state.attachments.to_chatkit(&uploaded),
    ))
}

#[poem::handler]
async fn preview(
    req: &Request,
    PoemPath(id): PoemPath<String>,
    PoemQuery(sig): PoemQuery<Sig>,
) -> Result<Response, ApiError> {
    let state = state(req)?;
    let user = state
        .attachments
        .verify_preview_link(&id, sig.sig.as_deref().unwrap_or_default())?;
    let (attachment, bytes) = state.attachments.read(&user, &id).await?;
    if attachment.kind() != "image" {
        // Files have no preview; the link could not have been issued for one.
        return Err(AttachmentError::LinkInvalid.into());
    }
    Ok(bytes_response(
        &attachment.mime_type,
        attachment.stored_size,
        &disposition("inline", &attachment.name),
        bytes,
    ))
}

#[poem::handler]
async fn download(req: &Request, PoemPath(id): PoemPath<String>) -> Result<Response, ApiError> {
    let (state, principal) = authenticated(req).await?;
    download_response(&state, &principal, &id).await
}

#[poem::handler]
async fn remove(req: &Request, PoemPath(id): PoemPath<String>) -> Result<Response, ApiError> {
    let (state, principal) = authenticated(req).await?;
    state.attachments.delete(&principal.user, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn download_response(
    state: &AttachmentsState,
    principal: &Principal,
    id: &str,
) -> Result<Response, ApiError> {
    let (attachment, bytes) = state.attachments.read(&principal.user, id).await?;
    Ok(bytes_response(
        &attachment.mime_type,
        attachment.stored_size,
        &disposition("attachment", &attachment.name),
        bytes,
    ))
}

fn state(req: &Request) -> Result<AttachmentsState, ApiError> {
    req.data::<AttachmentsState>()
        .cloned()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("attachments state not installed")))
}

/// The caller, by the client_secret in `Authorization`.
async fn authenticated(req: &Request) -> Result<(AttachmentsState, Principal), ApiError> {
    let state = state(req)?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token)
        .ok_or(crate::auth::AuthError::MissingToken)?;
    let principal = state.auth.authenticate(token).await?;
    tracing::Span::current().record("user_id", tracing::field::display(&principal.user));
    Ok((state, principal))
}

fn content_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn too_large(attachments: &Attachments) -> ApiError {
    AttachmentError::TooLarge(format!(
        "an attachment may have at most {} bytes",
        attachments.settings().max_bytes
    ))
    .into()
}

/// The multipart parser over `body`, which reaches it one piece at a time ([`Paced`]).
fn multipart(req: &Request, body: Body) -> Result<multer::Multipart<'static>, ApiError> {
    let boundary = multer::parse_boundary(req.content_type().unwrap_or_default())
        .map_err(|e| AttachmentError::BadUpload(format!("not a multipart body: {e}")))?;
    Ok(multer::Multipart::new(
        Paced::new(body.into_bytes_stream()),
        boundary,
    ))
}

/// The first part named `file`: its file name, type and bytes as they arrive. Parts
/// before it are skipped.
async fn file_part(
    multipart: &mut multer::Multipart<'static>,
) -> Result<(Option<String>, String, ByteStream), ApiError> {
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| AttachmentError::BadUpload(format!("a broken multipart body: {e}")))?
            .ok_or_else(|| AttachmentError::BadUpload("the body has no `file` part".into()))?;
        if field.name() != Some("file") {
            continue;
        }
        let name = field.file_name().map(str::to_owned);
        let mime_type = field.content_type().map_or_else(
            || "application/octet-stream".to_owned(),
            ToString::to_string,
        );
        let stream: ByteStream = Box::pin(field.map_err(std::io::Error::other));
        return Ok((name, mime_type, stream));
    }
}

/// A body stream that yields one piece per poll and then reports itself not ready (waking
/// its task at once). multer reads its input for as long as the input is ready, so over a
/// fast connection it would copy everything the socket holds (megabytes per upload) into
/// its buffer while the upload waits on storage; paced, it holds one piece.
struct Paced<S> {
    inner: S,
    yielded: bool,
}

impl<S> Paced<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            yielded: false,
        }
    }
}

impl<S: futures_util::Stream + Unpin> futures_util::Stream for Paced<S> {
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.yielded {
            this.yielded = false;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let next = std::pin::Pin::new(&mut this.inner).poll_next(cx);
        this.yielded = matches!(next, std::task::Poll::Ready(Some(_)));
        next
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

/// The stored bytes with the headers that keep them inert: the declared type (text as
/// `text/plain`), no sniffing, a CSP that allows nothing and sandboxes, private caching.
fn bytes_response(mime_type: &str, size: u64, disposition: &str, bytes: ByteStream) -> Response {
    let content_type = if mime_type.starts_with("text/") || mime_type == "application/json" {
        "text/plain; charset=utf-8"
    } else {
        mime_type
    };
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .content_type(content_type)
        .header(header::CONTENT_LENGTH, size)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        )
        .header(header::CACHE_CONTROL, "private")
        .body(Body::from_bytes_stream(bytes));
    if let Ok(value) = HeaderValue::from_str(disposition) {
        resp.headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    resp
}

/// `attachment; filename="<ASCII stand-in>"; filename*=UTF-8''<percent-encoded>`: the
/// name cannot break out of the header, and every browser gets a name it can save.
fn disposition(kind: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " ._-()[]+,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// The document's group for these routes.
#[derive(Tags)]
pub enum AttachmentTags {
    /// Files and images attached to messages
    Attachments,
}

/// A client_secret, checked for the attachment routes (the same scheme as every other
/// bearer route in the document; the check reads [`AttachmentsState`]).
#[derive(SecurityScheme)]
#[oai(
    rename = "ClientSecret",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_owner"
)]
pub struct AttachmentOwner(pub Principal);

async fn check_owner(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = state(req)?;
    let principal = state
        .auth
        .authenticate(&bearer.token)
        .await
        .map_err(ApiError::from)?;
    tracing::Span::current().record("user_id", tracing::field::display(&principal.user));
    Ok(principal)
}

const ATTACHMENT_NOT_FOUND: &str =
    "No such attachment, or it belongs to another user (`attachment.not_found`)";

route_errors! {
    DownloadAttachmentError {
        400 => described::MALFORMED_HEADERS,
        401 => described::UNAUTHORIZED,
        404 => ATTACHMENT_NOT_FOUND,
        409 => "The attachment's bytes have not been uploaded (`attachment.not_uploaded`)",
        503 => "The database or the attachment storage is unreachable \
            (`service.unavailable`, `attachment.storage_unavailable`); retry after \
            `Retry-After` seconds",
    }
    DeleteAttachmentError {
        400 => described::MALFORMED_HEADERS,
        401 => described::UNAUTHORIZED,
        404 => ATTACHMENT_NOT_FOUND,
        503 => "The database or the attachment storage is unreachable \
            (`service.unavailable`, `service.read_only`, `service.storage_full`, \
            `attachment.storage_unavailable`); retry after `Retry-After` seconds",
    }
}

impl From<AttachmentError> for DownloadAttachmentError {
    fn from(err: AttachmentError) -> Self {
        Self(err.into())
    }
}

impl From<AttachmentError> for DeleteAttachmentError {
    fn from(err: AttachmentError) -> Self {
        Self(err.into())
    }
}

/// An attachment's bytes, streamed.
pub struct AttachmentBytes(Response);

impl IntoResponse for AttachmentBytes {
    fn into_response(self) -> Response {
        self.0
    }
}

impl ApiResponse for AttachmentBytes {
    fn meta() -> MetaResponses {
        let header = |name: &str, description: &str| MetaHeader {
            name: name.to_owned(),
            description: Some(description.to_owned()),
            required: true,
            deprecated: false,
            schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new("string"))),
        };
        MetaResponses {
            responses: vec![MetaResponse {
                description: "The attachment's bytes, with its type (text as `text/plain; \
                    charset=utf-8`)",
                status: Some(200),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: "application/octet-stream",
                    schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format(
                        "string", "binary",
                    ))),
                }],
                headers: vec![
                    header(
                        "Content-Disposition",
                        "`attachment; filename=\"…\"; filename*=UTF-8''…` (the name, made safe)",
                    ),
                    header("X-Content-Type-Options", "`nosniff`"),
                    header("Content-Security-Policy", "`default-src 'none'; sandbox`"),
                    header("Cache-Control", "`private`"),
                ],
            }],
        }
    }

    fn register(_: &mut Registry) {}
}

/// 204 No Content.
#[derive(ApiResponse)]
pub enum AttachmentDeleted {
    /// Deleted, with its bytes.
    #[oai(status = 204)]
    Deleted,
}

/// The attachment routes the document declares (the bearer ones). Mounted as part of the
/// API service, they answer like [`routes`], which serves the same handlers.
pub struct AttachmentsApi;

#[OpenApi(tag = "AttachmentTags::Attachments", prefix_path = &super::prefix::current())]
impl AttachmentsApi {
    /// Download one of your attachments.
    ///
    /// Answered with `Content-Disposition: attachment`, `X-Content-Type-Options: nosniff`
    /// and a sandboxing `Content-Security-Policy`.
    #[oai(
        path = "/attachments/:id",
        method = "get",
        operation_id = "downloadAttachment"
    )]
    async fn download(
        &self,
        req: &Request,
        auth: AttachmentOwner,
        /// The attachment's id (`atc_…`).
        id: Path<String>,
    ) -> Result<AttachmentBytes, DownloadAttachmentError> {
        let state = state(req)?;
        Ok(AttachmentBytes(
            download_response(&state, &auth.0, &id.0).await?,
        ))
    }

    /// Delete one of your attachments and its bytes.
    #[oai(
        path = "/attachments/:id",
        method = "delete",
        operation_id = "deleteAttachment"
    )]
    async fn delete(
        &self,
        req: &Request,
        auth: AttachmentOwner,
        /// The attachment's id (`atc_…`).
        id: Path<String>,
    ) -> Result<AttachmentDeleted, DeleteAttachmentError> {
        let state = state(req)?;
        state.attachments.delete(&auth.0.user, &id.0).await?;
        Ok(AttachmentDeleted::Deleted)
    }
}
