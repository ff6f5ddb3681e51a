//! The ChatKit client of the tests: `POST /chatkit` as the ChatKit React widget sends it in
//! its custom-backend mode (see docs/chatkit-protocol.md), and the answer read back as JSON, or
//! as the events of a stream framed exactly as ChatKit's server frames them.

use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use super::app::TestApp;

/// A protocol answer: the status, the content type and headers, the JSON body (or the
/// events of a stream), and the body as sent.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub headers: HeaderMap,
    pub json: Value,
    pub events: Vec<Value>,
    pub raw: String,
}

impl Answer {
    /// Asserts an error answer: `status`, the stable `code`, as JSON.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.raw);
        assert_eq!(self.json["error"]["code"], code, "{}", self.raw);
        assert!(self.content_type.starts_with("application/json"));
    }

    /// The JSON body of a success.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "{}", self.raw);
        assert!(self.content_type.starts_with("application/json"));
        &self.json
    }

    /// The `type` of each event of a stream.
    pub fn types(&self) -> Vec<&str> {
        self.events
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect()
    }

    /// The id of the thread a `threads.create` stream announced.
    pub fn thread_id(&self) -> String {
        self.events[0]["thread"]["id"].as_str().unwrap().to_owned()
    }
}

/// Parses an SSE body that must be framed exactly as ChatKit's server frames it:
/// `data: <one-line JSON>\n\n` and nothing else.
pub fn events_of(raw: &str) -> Vec<Value> {
    assert!(raw.is_empty() || raw.ends_with("\n\n"), "{raw:?}");
    raw.split_terminator("\n\n")
        .map(|frame| {
            let json = frame
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data frame: {frame:?}"));
            assert!(!json.contains('\n'), "multi-line frame {frame:?}");
            serde_json::from_str(json).unwrap()
        })
        .collect()
}

/// A user message's `input`: one text part, no attachments.
pub fn input(text: &str) -> Value {
    json!({"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}})
}

/// `app`'s ChatKit endpoint, as the holder of `token` calls it.
pub struct ChatKit<'a> {
    app: &'a TestApp,
    token: &'a str,
}

impl TestApp {
    /// The ChatKit client of the holder of `token` (a client_secret).
    pub fn chatkit<'a>(&'a self, token: &'a str) -> ChatKit<'a> {
        ChatKit { app: self, token }
    }
}

impl ChatKit<'_> {
    /// `body` as it is, without a Content-Type (as the widget sends it).
    pub async fn send_raw(&self, body: impl Into<String>) -> Answer {
        let resp = self
            .app
            .client
            .post(format!("{}/chatkit", self.app.base))
            .bearer_auth(self.token)
            .body(body.into())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let raw = resp.text().await.unwrap();
        let (json, events) = if content_type == "text/event-stream" {
            (Value::Null, events_of(&raw))
        } else {
            (serde_json::from_str(&raw).unwrap_or(Value::Null), vec![])
        };
        Answer {
            status,
            content_type,
            headers,
            json,
            events,
            raw,
        }
    }

    /// A request of type `kind` with `params`.
    pub async fn request(&self, kind: &str, params: Value) -> Answer {
        self.send_raw(json!({"type": kind, "params": params}).to_string())
            .await
    }

    /// `threads.create` with one text part, which must start a stream.
    pub async fn create(&self, text: &str) -> Answer {
        let a = self
            .request("threads.create", json!({ "input": input(text) }))
            .await;
        assert_eq!(a.status, 200, "{}", a.raw);
        assert_eq!(a.content_type, "text/event-stream");
        a
    }

    /// `threads.add_user_message` with one text part.
    pub async fn add_message(&self, thread_id: &str, text: &str) -> Answer {
        self.request(
            "threads.add_user_message",
            json!({"thread_id": thread_id, "input": input(text)}),
        )
        .await
    }

    /// `threads.retry_after_item` for `item` (an item id as JSON).
    pub async fn retry(&self, thread_id: &str, item: &Value) -> Answer {
        self.request(
            "threads.retry_after_item",
            json!({"thread_id": thread_id, "item_id": item}),
        )
        .await
    }
}
