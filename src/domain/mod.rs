//! Parsed values: once a value has one of these types it has been checked.

pub mod task_list;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, SubsecRound, Utc};

/// The authenticated user. Every store call takes one, so isolation lives in the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    /// User ids come from verified tokens; they are bounded so they fit the columns.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty() && raw.len() <= 255 && !raw.chars().any(char::is_control);
        ok.then(|| Self(raw.to_owned()))
    }
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One tool call the agent made, as recorded with its answer and as returned to the client.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToolCallRecord {
    pub tool: String,
    pub args: serde_json::Value,
    pub result: serde_json::Value,
}

/// A new id: type prefix + time-ordered random body (UUID v7), never a sequence.
#[must_use]
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Checks the shape of an id we generated (`thr_` + 32 hex), so junk never reaches SQL.
fn is_valid_id(prefix: &str, raw: &str) -> bool {
    raw.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A thread id as minted here (`thr_` + 32 hex digits), parsed once where a request names
/// one. Anything else cannot name a thread, so callers answer it like an unknown thread.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadId(String);

impl ThreadId {
    /// A fresh id.
    #[must_use]
    pub fn new() -> Self {
        Self(new_id("thr"))
    }

    /// `None` unless `raw` has the shape of an id we mint.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        is_valid_id("thr", raw).then(|| Self(raw.to_owned()))
    }

    /// The id as stored.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ThreadId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ThreadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An id of a thread's item (a message `msg_`, a workflow `wf_`, an older tool-call row
/// `tc_`, each + 32 hex digits), parsed once where a request names one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(String);

impl ItemId {
    /// `None` unless `raw` has the shape of an item id we mint.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        ["msg", "wf", "tc", "wgt", "hc", "ctc", "si"]
            .iter()
            .any(|prefix| is_valid_id(prefix, raw))
            .then(|| Self(raw.to_owned()))
    }

    /// The id as stored.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The current instant at the storage precision (microseconds), so a value read back
/// equals the value written and keyset cursors compare exactly on every database.
#[must_use]
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A seconds setting as a signed count for timestamp arithmetic. Every such setting is
/// range-checked at load (at most a year), so the saturation is only a guarantee that
/// arithmetic on it cannot wrap or panic, whatever a caller passes.
#[must_use]
pub fn seconds_i64(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// A seconds setting as a `chrono::Duration` (see [`seconds_i64`]).
#[must_use]
pub fn seconds(secs: u64) -> chrono::Duration {
    chrono::Duration::try_seconds(seconds_i64(secs)).unwrap_or(chrono::Duration::MAX)
}

/// RFC 3339 UTC with milliseconds, the wire format of every timestamp.
#[must_use]
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// 9999-12-31T23:59:59.999999Z: the last instant every database can store.
const MAX_CURSOR_MICROS: i64 = 253_402_300_799_999_999;

/// Text no database can store: PostgreSQL refuses NUL in `text` and `jsonb`, SQLite keeps
/// it; refused here so both answer alike.
fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

/// An opaque keyset cursor: the sort timestamp and id of the last row of a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    #[must_use]
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.at.timestamp_micros(), self.id))
    }

    #[must_use]
    pub fn decode(raw: &str) -> Option<Self> {
        if raw.len() > 200 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once('|')?;
        // Only instants a row can have: PostgreSQL refuses some that chrono accepts.
        let micros: i64 = micros.parse().ok()?;
        if !(0..=MAX_CURSOR_MICROS).contains(&micros) {
            return None;
        }
        let at = DateTime::from_timestamp_micros(micros)?;
        let id_ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic());
        id_ok.then(|| Self {
            at,
            id: id.to_owned(),
        })
    }
}

/// Page size: 1..=100, default 20.
pub fn page_limit(raw: Option<i64>) -> Result<u64, String> {
    match raw {
        None => Ok(20),
        Some(n) if (1..=100).contains(&n) => Ok(n.unsigned_abs()),
        Some(n) => Err(format!("limit must be between 1 and 100, got {n}")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        match raw {
            None | Some("desc") => Ok(Self::Desc),
            Some("asc") => Ok(Self::Asc),
            Some(other) => Err(format!("order must be \"asc\" or \"desc\", got {other:?}")),
        }
    }
}

/// A thread title: trimmed, 1..=200 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, String> {
        if has_nul(raw) {
            return Err("title must not contain NUL characters".into());
        }
        let clean: String = raw
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if clean.is_empty() {
            return Err("title must not be empty".into());
        }
        if clean.chars().count() > Self::MAX_CHARS {
            return Err(format!(
                "title is longer than {} characters",
                Self::MAX_CHARS
            ));
        }
        Ok(Self(clean))
    }

    /// A title derived from the first message of a thread created by `POST /messages`.
    #[must_use]
    pub fn from_message(message: &str) -> Self {
        const LEN: usize = 60;
        let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut title: String = one_line.chars().take(LEN).collect();
        if one_line.chars().count() > LEN {
            title.push('…');
        }
        Self::parse(&title).unwrap_or_else(|_| Self("New chat".into()))
    }

    #[must_use]
    pub fn default_new() -> Self {
        Self("New chat".into())
    }

    #[must_use]
    pub fn into_inner(self) -> String {
        self.0
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn json_has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => has_nul(s),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| has_nul(k) || json_has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Free-form thread metadata: a JSON object of at most 16 KiB.
pub fn parse_metadata(raw: serde_json::Value) -> Result<serde_json::Value, String> {
    const MAX_BYTES: usize = 16 * 1024;
    if !raw.is_object() {
        return Err("metadata must be a JSON object".into());
    }
    if json_has_nul(&raw) {
        return Err("metadata keys and values must not contain NUL characters".into());
    }
    if raw.to_string().len() > MAX_BYTES {
        return Err(format!("metadata is larger than {MAX_BYTES} bytes"));
    }
    Ok(raw)
}

/// A user's message: non-blank and at most `max_chars` characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageText(String);

#[derive(Debug, PartialEq, Eq)]
pub enum MessageTextError {
    Empty,
    /// Contains NUL, which no database stores alike.
    Nul,
    TooLong {
        max: usize,
        got: usize,
    },
}

impl MessageText {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, MessageTextError> {
        if raw.trim().is_empty() {
            return Err(MessageTextError::Empty);
        }
        if has_nul(raw) {
            return Err(MessageTextError::Nul);
        }
        let got = raw.chars().count();
        if got > max_chars {
            return Err(MessageTextError::TooLong {
                max: max_chars,
                got,
            });
        }
        Ok(Self(raw.to_owned()))
    }
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An `Idempotency-Key`: 1..=255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::from_bytes(raw.as_bytes())
    }

    /// From a raw header value, whose bytes need not be UTF-8.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, String> {
        let ok = !raw.is_empty() && raw.len() <= 255 && raw.iter().all(u8::is_ascii_graphic);
        match std::str::from_utf8(raw) {
            Ok(text) if ok => Ok(Self(text.to_owned())),
            _ => Err("Idempotency-Key must be 1 to 255 visible ASCII characters".into()),
        }
    }
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_junk() {
        let c = Cursor {
            at: now(),
            id: new_id("thr"),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not-a-cursor"), None);
        assert_eq!(Cursor::decode(&URL_SAFE_NO_PAD.encode("12|")), None);
        for junk in ["-283000000000000000|thr_x", "-1|thr_x", "5|thr_\0", "5|a b"] {
            assert_eq!(
                Cursor::decode(&URL_SAFE_NO_PAD.encode(junk)),
                None,
                "{junk}"
            );
        }
    }

    #[test]
    fn thread_and_item_ids_parse_only_our_shapes() {
        let t = ThreadId::new();
        assert_eq!(ThreadId::parse(t.as_str()), Some(t.clone()));
        assert_eq!(ThreadId::parse(&new_id("msg")), None);
        assert_eq!(ThreadId::parse("thr_x"), None);
        for prefix in ["msg", "wf", "tc"] {
            assert!(ItemId::parse(&new_id(prefix)).is_some(), "{prefix}");
        }
        assert_eq!(ItemId::parse(t.as_str()), None);
        assert_eq!(ItemId::parse("msg_' OR 1=1"), None);
    }

    #[test]
    fn ids_are_prefixed_and_checked() {
        let id = new_id("thr");
        assert!(is_valid_id("thr", &id));
        assert!(!is_valid_id("msg", &id));
        assert!(!is_valid_id("thr", "thr_1"));
        assert!(!is_valid_id(
            "thr",
            "thr_' OR 1=1 --aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        ));
    }

    #[test]
    fn titles_and_messages_are_bounded() {
        assert!(Title::parse("   ").is_err());
        assert_eq!(
            Title::parse(" Groceries ").unwrap().into_inner(),
            "Groceries"
        );
        assert!(Title::parse(&"x".repeat(201)).is_err());
        assert_eq!(Title::from_message("").into_inner(), "New chat");
        assert_eq!(MessageText::parse(" \n", 10), Err(MessageTextError::Empty));
        assert!(matches!(
            MessageText::parse("ééééé", 4),
            Err(MessageTextError::TooLong { max: 4, got: 5 })
        ));
        assert!(MessageText::parse("ééééé", 5).is_ok());
        assert_eq!(MessageText::parse("a\0", 5), Err(MessageTextError::Nul));
        assert!(Title::parse("a\0").is_err());
        assert!(parse_metadata(serde_json::json!({"a": {"b\0": 1}})).is_err());
    }
}
