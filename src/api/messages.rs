use poem::web::Data;
use poem_openapi::{param::Header, payload::Json, OpenApi};

use super::{
    types::{SendMessageRequest, SendMessageResponse},
    ApiTags, ClientSecret,
};
use crate::{
    agent::EventSink,
    app::AppState,
    chat::SendMessage,
    domain::{IdempotencyKey, MessageText, MessageTextError},
    error::ApiError,
};

pub struct MessagesApi;

#[OpenApi(prefix_path = "/api/chatkit", tag = "ApiTags::Messages")]
impl MessagesApi {
    /// Send a message and get the assistant's answer.
    ///
    /// The message is recorded before the agent runs. `thread_id: null` starts a new thread.
    /// If the agent fails (502 `agent.unavailable`) the message stays recorded; retry with
    /// the same `Idempotency-Key` to have it answered without recording it twice. A retry
    /// after success returns the stored answer.
    #[oai(path = "/messages", method = "post")]
    async fn send(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        body: Json<SendMessageRequest>,
        /// Makes retries safe: 1 to 255 visible ASCII characters, unique per request.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
    ) -> Result<Json<SendMessageResponse>, ApiError> {
        let max = state.settings.messages.max_chars;
        let message = MessageText::parse(&body.0.message, max).map_err(|e| match e {
            MessageTextError::Empty => ApiError::MessageEmpty,
            MessageTextError::TooLong { max, got } => ApiError::MessageTooLong { max, got },
        })?;
        let key = idempotency_key
            .0
            .as_deref()
            .map(IdempotencyKey::parse)
            .transpose()
            .map_err(ApiError::Invalid)?;
        let request = SendMessage {
            thread_id: body.0.thread_id,
            message,
            key,
        };
        let result = state
            .chat
            .send(&auth.0.user, request, EventSink::default())
            .await?;
        Ok(Json(result.into()))
    }
}
