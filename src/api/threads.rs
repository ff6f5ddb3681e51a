use poem::web::Data;
use poem_openapi::{
    param::{Path, Query},
    payload::Json,
    OpenApi,
};

use super::{
    items::types_for,
    types::{
        IncludeParam, JsonBody, Message, MessagePage, NoContent, OrderParam, PageLimit, Thread,
        ThreadCreated, ThreadDetail, ThreadInput, ThreadList,
    },
    ApiTags, ClientSecret,
};
use crate::{
    api::error::{described, route_errors, ApiError},
    api::AppState,
    domain::{page_limit, parse_metadata, Cursor, Order, ThreadId, Title},
};

pub struct ThreadsApi;

const LIMIT_INVALID: &str = "`limit` is not between 1 and 100, or `include` is neither \
    `messages` nor `all` (`request.invalid`)";
const PAGE_INVALID: &str = "`limit` is not between 1 and 100, or `after` is not a cursor \
    of this list (`request.invalid`)";
const INPUT_INVALID: &str = "The title is blank, longer than 200 characters, not a JSON \
    string or contains NUL, or the metadata is not a JSON object, is larger than 16 KiB or contains NUL \
    (`request.invalid`)";

route_errors! {
    ListThreadsError {
        400 => described::MALFORMED_PARAMS,
        401 => described::UNAUTHORIZED,
        422 => PAGE_INVALID,
        503 => described::UNAVAILABLE_READ,
    }
    CreateThreadError {
        400 => described::MALFORMED_BODY,
        401 => described::UNAUTHORIZED,
        413 => described::TOO_LARGE,
        415 => described::UNSUPPORTED_MEDIA_TYPE,
        422 => INPUT_INVALID,
        503 => described::UNAVAILABLE_WRITE,
    }
    GetThreadError {
        400 => described::MALFORMED_PARAMS,
        401 => described::UNAUTHORIZED,
        404 => described::THREAD_NOT_FOUND,
        422 => LIMIT_INVALID,
        503 => described::UNAVAILABLE_READ,
    }
    UpdateThreadError {
        400 => described::MALFORMED_BODY,
        401 => described::UNAUTHORIZED,
        404 => described::THREAD_NOT_FOUND,
        413 => described::TOO_LARGE,
        415 => described::UNSUPPORTED_MEDIA_TYPE,
        422 => INPUT_INVALID,
        503 => described::UNAVAILABLE_WRITE,
    }
    DeleteThreadError {
        400 => described::MALFORMED_HEADERS,
        401 => described::UNAUTHORIZED,
        404 => described::THREAD_NOT_FOUND,
        503 => described::UNAVAILABLE_WRITE,
    }
    ListMessagesError {
        400 => described::MALFORMED_PARAMS,
        401 => described::UNAUTHORIZED,
        404 => described::THREAD_NOT_FOUND,
        422 => "`limit` is not between 1 and 100, `order` is neither `asc` nor `desc`, \
            `include` is neither `messages` nor `all`, or `after` is not a cursor of this \
            list (`request.invalid`)",
        503 => described::UNAVAILABLE_READ,
    }
}

fn cursor(raw: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    raw.map(|c| {
        Cursor::decode(c).ok_or_else(|| ApiError::Invalid("the `after` cursor is not valid".into()))
    })
    .transpose()
}

/// Pending turns last updated before this are abandoned (see [`Message::read`]).
fn stale_before(state: &AppState) -> chrono::DateTime<chrono::Utc> {
    crate::domain::now() - crate::domain::seconds(state.settings.messages.stale_pending_secs)
}

/// The thread a path names: an id of a shape we never mint names no thread (404).
fn thread_id(raw: &str) -> Result<ThreadId, ApiError> {
    ThreadId::parse(raw).ok_or(ApiError::ThreadNotFound)
}

fn limit(raw: Option<PageLimit>) -> Result<u64, ApiError> {
    page_limit(raw.map(PageLimit::into_inner)).map_err(ApiError::Invalid)
}

fn parse_input(input: ThreadInput) -> Result<(Option<Title>, Option<serde_json::Value>), ApiError> {
    let title = input
        .title
        .as_deref()
        .map(|raw| {
            // The document bounds the title as sent; `Title` would count it trimmed.
            if raw.chars().count() > Title::MAX_CHARS {
                return Err(format!(
                    "title is longer than {} characters",
                    Title::MAX_CHARS
                ));
            }
            Title::parse(raw)
        })
        .transpose()
        .map_err(ApiError::Invalid)?;
    let metadata = input
        .metadata
        .map(|m| parse_metadata(m.into_inner()))
        .transpose()
        .map_err(ApiError::Invalid)?;
    Ok((title, metadata))
}

#[OpenApi(tag = "ApiTags::Threads", prefix_path = &super::prefix::current())]
impl ThreadsApi {
    /// List your threads, most recent activity first.
    #[oai(path = "/threads", method = "get", operation_id = "listThreads")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<PageLimit>>,
        /// The `after` value of the previous page.
        after: Query<Option<String>>,
    ) -> Result<JsonBody<ThreadList>, ListThreadsError> {
        let limit = self::limit(limit.0)?;
        let after = cursor(after.0.as_deref())?;
        let page = state
            .store
            .list_threads(&auth.0.user, limit, after.as_ref())
            .await?;
        Ok(JsonBody(ThreadList {
            has_more: page.next.is_some(),
            after: page.next.map(|c| c.encode()),
            threads: page.items.into_iter().map(Thread::from).collect(),
        }))
    }

    /// Create an empty thread.
    #[oai(path = "/threads", method = "post", operation_id = "createThread")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        body: Json<ThreadInput>,
    ) -> Result<ThreadCreated, CreateThreadError> {
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
    ///
    /// `include=all` shows every item a ChatKit client is shown, not only the messages:
    /// workflows (tool calls), task widgets, client tool calls and structured input.
    #[oai(path = "/threads/:id", method = "get", operation_id = "getThread")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        id: Path<String>,
        /// How many of the latest entries to include, 1 to 100 (default 20).
        limit: Query<Option<PageLimit>>,
        /// `messages` (the default): the user's and the assistant's messages; `all`: every
        /// item a ChatKit client is shown.
        include: Query<Option<IncludeParam>>,
    ) -> Result<JsonBody<ThreadDetail>, GetThreadError> {
        let limit = self::limit(limit.0)?;
        let types = types_for(include.0.as_deref().map(String::as_str))?;
        let user = &auth.0.user;
        let id = thread_id(&id.0)?;
        let (thread, page) = state
            .store
            .thread_and_items(user, &id, types, limit, None, Order::Desc)
            .await?;
        let stale = stale_before(&state);
        let mut messages = Message::read_all(page.items, stale, user, &state.attachments).await?;
        messages.reverse();
        Ok(JsonBody(ThreadDetail {
            thread: thread.into(),
            messages,
            has_more: page.next.is_some(),
            after: page.next.map(|c| c.encode()),
        }))
    }

    /// Rename a thread or replace its metadata.
    #[oai(path = "/threads/:id", method = "patch", operation_id = "updateThread")]
    async fn update(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        id: Path<String>,
        body: Json<ThreadInput>,
    ) -> Result<Json<Thread>, UpdateThreadError> {
        let (title, metadata) = parse_input(body.0)?;
        let thread = state
            .store
            .update_thread(&auth.0.user, &thread_id(&id.0)?, title, metadata)
            .await?;
        Ok(Json(thread.into()))
    }

    /// Delete a thread, all of its messages and the attachments they were sent with.
    #[oai(
        path = "/threads/:id",
        method = "delete",
        operation_id = "deleteThread"
    )]
    async fn delete(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        id: Path<String>,
    ) -> Result<NoContent, DeleteThreadError> {
        let thread = thread_id(&id.0)?;
        // The attachments first: objects in a bucket would not go with the thread's rows.
        state
            .attachments
            .delete_for_thread(&auth.0.user, &thread)
            .await
            .map_err(ApiError::from)?;
        state.store.delete_thread(&auth.0.user, &thread).await?;
        Ok(NoContent::Done)
    }

    /// Page through a thread's messages (`include=all`: every item shown).
    // poem-openapi takes each query parameter as an argument of its own.
    #[allow(clippy::too_many_arguments)]
    #[oai(
        path = "/threads/:id/messages",
        method = "get",
        operation_id = "listMessages"
    )]
    async fn messages(
        &self,
        state: Data<&AppState>,
        auth: ClientSecret,
        id: Path<String>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<PageLimit>>,
        /// The `after` value of the previous page.
        after: Query<Option<String>>,
        /// `desc` (newest first, the default) or `asc`.
        order: Query<Option<OrderParam>>,
        /// `messages` (the default): the user's and the assistant's messages; `all`: every
        /// item a ChatKit client is shown.
        include: Query<Option<IncludeParam>>,
    ) -> Result<JsonBody<MessagePage>, ListMessagesError> {
        let limit = self::limit(limit.0)?;
        let after = cursor(after.0.as_deref())?;
        let order =
            Order::parse(order.0.as_deref().map(String::as_str)).map_err(ApiError::Invalid)?;
        let types = types_for(include.0.as_deref().map(String::as_str))?;
        let (_, page) = state
            .store
            .thread_and_items(
                &auth.0.user,
                &thread_id(&id.0)?,
                types,
                limit,
                after.as_ref(),
                order,
            )
            .await?;
        let stale = stale_before(&state);
        let has_more = page.next.is_some();
        let after = page.next.map(|c| c.encode());
        let data = Message::read_all(page.items, stale, &auth.0.user, &state.attachments).await?;
        Ok(JsonBody(MessagePage {
            has_more,
            after,
            data,
        }))
    }
}
