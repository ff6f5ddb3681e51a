//! A ChatKit request, parsed once from the body: the endpoint reads its kind (to count a
//! turn against the rate limit) and the service answers it, without a second parse.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    wire::{
        ActionParams, AddMessageParams, AttachmentCreateParams, AttachmentDeleteParams,
        CreateParams, Envelope, FeedbackParams, ItemsListParams, ListParams, RetryParams,
        StructuredInputParams, ThreadParams, ToolOutputParams, TranscribeParams, UpdateParams,
    },
    ChatKitError,
};

/// Every request type this server answers, with its parameters.
pub enum Request {
    Create(CreateParams),
    AddMessage(AddMessageParams),
    Retry(RetryParams),
    GetById(ThreadParams),
    ListThreads(ListParams),
    ListItems(ItemsListParams),
    Update(UpdateParams),
    Delete(ThreadParams),
    Feedback(FeedbackParams),
    /// A click on a widget, answered as a stream.
    CustomAction(ActionParams),
    /// The same click, answered as JSON (it may come while an answer streams).
    SyncCustomAction(ActionParams),
    /// The output of the client tool the answer paused on; the answer goes on.
    AddClientToolOutput(ToolOutputParams),
    /// The user's answers to the question the answer paused on; the answer goes on.
    AddStructuredInput(StructuredInputParams),
    /// A file the widget is about to upload (two-phase): answered with its upload link.
    CreateAttachment(AttachmentCreateParams),
    DeleteAttachment(AttachmentDeleteParams),
    /// The composer's dictation, answered with its text.
    Transcribe(TranscribeParams),
}

fn params<T: DeserializeOwned>(kind: &str, params: Value) -> Result<T, ChatKitError> {
    serde_json::from_value(params)
        .map_err(|e| ChatKitError::Malformed(format!("invalid params for {kind}: {e}")))
}

impl Request {
    /// The request in `body`, or why it is not one this server answers.
    pub fn parse(body: &[u8]) -> Result<Self, ChatKitError> {
        let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
            ChatKitError::Malformed(format!(
                "the body must be a ChatKit request {{\"type\", \"params\"}}: {e}"
            ))
        })?;
        let kind = envelope.kind.as_str();
        let p = envelope
            .params
            .filter(Value::is_object)
            .ok_or_else(|| ChatKitError::Malformed("`params` must be an object".into()))?;
        Ok(match kind {
            "threads.create" => Self::Create(params(kind, p)?),
            "threads.add_user_message" => Self::AddMessage(params(kind, p)?),
            "threads.retry_after_item" => Self::Retry(params(kind, p)?),
            "threads.get_by_id" => Self::GetById(params(kind, p)?),
            "threads.list" => Self::ListThreads(params(kind, p)?),
            "items.list" => Self::ListItems(params(kind, p)?),
            "threads.update" => Self::Update(params(kind, p)?),
            "threads.delete" => Self::Delete(params(kind, p)?),
            "items.feedback" => Self::Feedback(params(kind, p)?),
            "threads.custom_action" => Self::CustomAction(params(kind, p)?),
            "threads.sync_custom_action" => Self::SyncCustomAction(params(kind, p)?),
            "threads.add_client_tool_output" => Self::AddClientToolOutput(params(kind, p)?),
            "threads.add_structured_input" => Self::AddStructuredInput(params(kind, p)?),
            "attachments.create" => Self::CreateAttachment(params(kind, p)?),
            "attachments.delete" => Self::DeleteAttachment(params(kind, p)?),
            "input.transcribe" => Self::Transcribe(params(kind, p)?),
            other => {
                return Err(ChatKitError::Malformed(format!(
                    "unknown request type {other:?}"
                )))
            }
        })
    }

    /// Whether answering it runs a turn of the agent, or calls the model provider as one
    /// does (a transcription): rate-limited like `POST /messages`.
    #[must_use]
    pub fn runs_turn(&self) -> bool {
        matches!(
            self,
            Self::Create(_)
                | Self::AddMessage(_)
                | Self::Retry(_)
                | Self::AddClientToolOutput(_)
                | Self::AddStructuredInput(_)
                | Self::Transcribe(_)
        )
    }

    /// Whether this is the one request type whose body may be larger than
    /// `server.body_limit_bytes` (dictation: audio as base64), judged from the body's
    /// `type` alone without building its params.
    #[must_use]
    pub fn is_transcribe(body: &[u8]) -> bool {
        #[derive(serde::Deserialize)]
        struct Kind<'a> {
            #[serde(rename = "type", borrow)]
            kind: std::borrow::Cow<'a, str>,
        }
        serde_json::from_slice::<Kind>(body).is_ok_and(|k| k.kind == "input.transcribe")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Request, ChatKitError> {
        Request::parse(body.as_bytes())
    }

    #[test]
    fn the_turn_types_run_turns_and_the_reads_do_not() {
        let input = r#"{"content":[{"type":"input_text","text":"hi"}],"attachments":[]}"#;
        let turns = [
            format!(r#"{{"type":"threads.create","params":{{"input":{input}}}}}"#),
            format!(
                r#"{{"type":"threads.add_user_message","params":{{"thread_id":"thr_1","input":{input}}}}}"#
            ),
            r#"{"type":"threads.retry_after_item","params":{"thread_id":"thr_1","item_id":"msg_1"}}"#
                .to_owned(),
        ];
        for body in &turns {
            assert!(parse(body).unwrap().runs_turn(), "{body}");
        }
        for body in [
            r#"{"type":"threads.list","params":{}}"#,
            r#"{"type":"items.list","params":{"thread_id":"thr_1"}}"#,
            r#"{"type":"threads.get_by_id","params":{"thread_id":"thr_1"}}"#,
            r#"{"type":"threads.delete","params":{"thread_id":"thr_1"}}"#,
        ] {
            assert!(!parse(body).unwrap().runs_turn(), "{body}");
        }
    }

    #[test]
    fn dictation_is_told_apart_by_its_type_alone() {
        assert!(Request::is_transcribe(
            br#"{"params":{"audio_base64":"AAAA","mime_type":"audio/webm"},"type":"input.transcribe"}"#
        ));
        // Escaped, it is the same type.
        assert!(Request::is_transcribe(
            br#"{"type":"input\u002etranscribe","params":{}}"#
        ));
        for body in [
            &br#"{"type":"threads.list","params":{"x":"input.transcribe"}}"#[..],
            br#"{"type":"input.transcribe""#,
            b"not json",
        ] {
            assert!(!Request::is_transcribe(body));
        }
        assert!(parse(r#"{"type":"input.transcribe","params":{"audio_base64":"AAAA","mime_type":"audio/ogg"}}"#)
            .unwrap()
            .runs_turn());
    }

    #[test]
    fn bad_bodies_are_refused_with_the_reason() {
        let err = |body: &str| match parse(body) {
            Err(e) => e,
            Ok(_) => panic!("{body} was accepted"),
        };
        assert!(matches!(err("not json"), ChatKitError::Malformed(_)));
        assert!(matches!(
            err(r#"{"type":"threads.custom_action","params":{"thread_id":"thr_1"}}"#),
            ChatKitError::Malformed(m) if m.contains("action")
        ));
        assert!(matches!(
            err(r#"{"type":"input.transcribe","params":{}}"#),
            ChatKitError::Malformed(m) if m.contains("input.transcribe")
        ));
        assert!(matches!(
            err(r#"{"type":"attachments.create","params":{"name":"a.png","size":-1,"mime_type":"image/png"}}"#),
            ChatKitError::Malformed(m) if m.contains("attachments.create")
        ));
        assert!(matches!(
            err(r#"{"type":"threads.list","params":[]}"#),
            ChatKitError::Malformed(m) if m.contains("params")
        ));
        assert!(matches!(
            err(r#"{"type":"threads.explode","params":{}}"#),
            ChatKitError::Malformed(m) if m.contains("unknown request type")
        ));
        assert!(matches!(
            err(r#"{"type":"threads.get_by_id","params":{}}"#),
            ChatKitError::Malformed(m) if m.contains("threads.get_by_id")
        ));
    }
}
