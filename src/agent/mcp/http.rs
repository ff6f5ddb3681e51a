//! The SDK's streamable-HTTP client (reqwest), with the identity put on every request.
//!
//! The SDK takes one fixed `Authorization` value per transport, but ours changes with
//! every request: each is minted when it is sent, and a tool call names the user it acts
//! for. The caller marks a `tools/call` with the user under [`USER_META_KEY`] in `_meta`;
//! here that mark is removed (it never reaches the server) and becomes the token's `sub`.

use std::{collections::HashMap, sync::Arc};

use futures_util::stream::BoxStream;
use reqwest_mcp::header::{HeaderName, HeaderValue};
use rmcp::{
    model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, RequestMetaObject},
    transport::streamable_http_client::{
        SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    },
};
use sse_stream::Sse;

use super::identity::IdentityMinter;

/// The `_meta` key a tool call's user travels under between the caller and this client.
pub const USER_META_KEY: &str = "chatkit-gateway/user";

/// The reqwest client of the SDK, minting an identity token per request.
#[derive(Clone)]
pub struct IdentityHttpClient {
    inner: reqwest_mcp::Client,
    minter: Arc<IdentityMinter>,
}

impl IdentityHttpClient {
    pub fn new(inner: reqwest_mcp::Client, minter: Arc<IdentityMinter>) -> Self {
        Self { inner, minter }
    }

    /// Takes the user mark off a tool call and mints the token the request goes with.
    fn authorize(&self, message: &mut ClientJsonRpcMessage) -> String {
        let mut user = None;
        if let JsonRpcMessage::Request(request) = message {
            if let ClientRequest::CallToolRequest(call) = &mut request.request {
                // The SDK may keep `_meta` on the params or in the request's extensions;
                // it merges both when it serialises, so the mark is taken off both.
                let mut take = |meta: &mut RequestMetaObject| {
                    if let Some(v) = meta.0 .0.remove(USER_META_KEY) {
                        user = v.as_str().map(str::to_owned);
                    }
                    meta.0 .0.is_empty()
                };
                if call.params.meta.as_mut().is_some_and(&mut take) {
                    call.params.meta = None;
                }
                if let Some(meta) = call.extensions.get_mut::<RequestMetaObject>() {
                    take(meta);
                }
            }
        }
        self.minter.mint(user.as_deref())
    }
}

impl StreamableHttpClient for IdentityHttpClient {
    type Error = reqwest_mcp::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let token = self.authorize(&mut message);
        self.inner
            .post_message(uri, message, session_id, Some(token), custom_headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let token = self.authorize(&mut message);
        self.inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                Some(token),
                custom_headers,
                max_sse_event_size,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let token = self.minter.mint(None);
        self.inner
            .delete_session(uri, session_id, Some(token), custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let token = self.minter.mint(None);
        self.inner
            .get_stream(uri, session_id, last_event_id, Some(token), custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let token = self.minter.mint(None);
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                Some(token),
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
