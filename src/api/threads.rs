use poem::web::Data;
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    OpenApi,
};

use super::{
    types::{
        Message, MessagePage, NoContent, Thread, ThreadCreated, ThreadDetail, ThreadInput,
        ThreadList,
    },
    ApiTags, ClientSecret,
};
use crate::{
    api::error::ApiError,
    api::AppState,
    domain::{page_limit, parse_metadata, Cursor, Order, ThreadId, Title},
};

pub struct ThreadsApi;

fn cursor(raw: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    raw.map(|c| {
        Cursor::decode(c).ok_or_else(|| ApiError::Invalid("the `after` cursor is not valid".into()))
    })
    .transpose()
}

/// Pending turns last updated before this are abandoned (see [`Message::read`]).
fn stale_before(state: &AppState) -> chrono::DateTime<chrono::Utc> {
    crate::domain::now() - crate::config::seconds(state.settings.messages.stale_pending_secs)
}

/// The thread a path names: an id of a shape we never mint names no thread (404).
fn thread_id(raw: &str) -> Result<ThreadId, ApiError> {
    ThreadId::parse(raw).ok_or(ApiError::ThreadNotFound)
}

fn limit(raw: Option<i64>) -> Result<u64, ApiError> {
    page_limit(raw).map_err(ApiError::Invalid)
}

fn parse_input(input: ThreadInput) -> Result<(Option<Title>, Option<serde_json::Value>), ApiError> {
    let title = input
        .title
        .as_deref()
        .map(Title::parse)
        .transpose()
        .map_err(ApiError::Invalid)?;
    let metadata = input
        .metadata
        .map(parse_metadata)
        .transpose()
        .map_err(ApiError::Invalid)?;
    Ok((title, metadata))
}

#[OpenApi(prefix_path = "/api/chatkit", tag = "ApiTags::Threads")]
impl ThreadsApi {
    /// List your threads, most recent activity first.
    #[oai(path = "/threads", method = "get")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<i64>>,
        /// The `after` value of the previous page.
        after: Query<Option<String>>,
    ) -> Result<Json<ThreadList>, ApiError> {
        let limit = self::limit(limit.0)?;
        let after = cursor(after.0.as_deref())?;
        let page = state
            .store
            .list_threads(&auth.0.user, limit, after.as_ref())
            .await?;
        Ok(Json(ThreadList {
            has_more: page.next.is_some(),
            after: page.next.map(|c| c.encode()),
            threads: page.items.into_iter().map(Thread::from).collect(),
        }))
    }

    /// Create an empty thread.
    #[oai(path = "/threads", method = "post")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        body: Json<ThreadInput>,
    ) -> Result<ThreadCreated, ApiError> {
        let (title, metadata) = parse_input(body.0)?;
        let thread = state
            .store
            .create_thread(
                &auth.0.user,
                title.unwrap_or_else(Title::default_new),
                metadata.unwrap_or_else(|| serde_json::json!({})),
            )
            .await?;
        Ok(ThreadCreated::Created(Json(thread.into())))
    }

    /// A thread with its latest messages (oldest first).
    #[oai(path = "/threads/:id", method = "get")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        id: Path<String>,
        /// How many of the latest messages to include, 1 to 100 (default 20).
        limit: Query<Option<i64>>,
    ) -> Result<Json<ThreadDetail>, ApiError> {
        let limit = self::limit(limit.0)?;
        let user = &auth.0.user;
        let id = thread_id(&id.0)?;
        let thread = state.store.get_thread(user, &id).await?;
        let page = state
            .store
            .message_page(user, &id, limit, None, Order::Desc)
            .await?;
        let mut messages: Vec<Message> = page
            .items
            .into_iter()
            .map(|m| Message::read(m, stale_before(&state)))
            .collect();
        messages.reverse();
        Ok(Json(ThreadDetail {
            thread: thread.into(),
            messages,
            has_more: page.next.is_some(),
            after: page.next.map(|c| c.encode()),
        }))
    }

    /// Rename a thread or replace its metadata.
    #[oai(path = "/threads/:id", method = "patch")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        id: Path<String>,
        body: Json<ThreadInput>,
    ) -> Result<Json<Thread>, ApiError> {
        let (title, metadata) = parse_input(body.0)?;
        let thread = state
            .store
            .update_thread(&auth.0.user, &thread_id(&id.0)?, title, metadata)
            .await?;
        Ok(Json(thread.into()))
    }

    /// Delete a thread and all of its messages.
    #[oai(path = "/threads/:id", method = "delete")]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        id: Path<String>,
    ) -> Result<NoContent, ApiError> {
        state
            .store
            .delete_thread(&auth.0.user, &thread_id(&id.0)?)
            .await?;
        Ok(NoContent::Done)
    }

    /// Page through a thread's messages.
    #[oai(path = "/threads/:id/messages", method = "get")]
    async fn messages(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        id: Path<String>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<i64>>,
        /// The `after` value of the previous page.
        after: Query<Option<String>>,
        /// `desc` (newest first, the default) or `asc`.
        order: Query<Option<String>>,
    ) -> Result<Json<MessagePage>, ApiError> {
        let limit = self::limit(limit.0)?;
        let after = cursor(after.0.as_deref())?;
        let order = Order::parse(order.0.as_deref()).map_err(ApiError::Invalid)?;
        let page = state
            .store
            .list_messages(
                &auth.0.user,
                &thread_id(&id.0)?,
                limit,
                after.as_ref(),
                order,
            )
            .await?;
        Ok(Json(MessagePage {
            has_more: page.next.is_some(),
            after: page.next.map(|c| c.encode()),
            data: page
                .items
                .into_iter()
                .map(|m| Message::read(m, stale_before(&state)))
                .collect(),
        }))
    }
}
