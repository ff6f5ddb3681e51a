//! Items as ChatKit JSON, kept for the next read of the same rows.
//!
//! An item's JSON is a function of its row alone (bar the attachment links a user message
//! shows, minted per read), and most rows never change once written: parsing a payload,
//! building a task widget and writing it out was most of the gateway's work per page
//! read. A kept entry holds the row's fields the JSON is made of, and is served only to a
//! read whose row has exactly those fields: a row changed since (a longer answer, a
//! completed call) misses and is rendered again. Entries are shared by nobody's identity:
//! a read shows an entry only for a row its own, user-scoped query returned.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::thread_item;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use super::wire::Item;
use crate::store::{ItemStatus, ItemType, ItemView};

/// What the kept JSON holds at most, counted in bytes of text (JSON and source fields).
const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// The fields of a row its JSON is made of (the id is the key), taken before the row is
/// parsed and rendered.
pub struct Source {
    thread_id: String,
    item_type: ItemType,
    status: ItemStatus,
    created_at: DateTime<Utc>,
    content: String,
    payload: Option<String>,
}

impl Source {
    #[must_use]
    pub fn of(row: &ItemView<'_>) -> Self {
        Self {
            thread_id: row.thread_id.to_owned(),
            item_type: row.item_type,
            status: row.status,
            created_at: row.created_at,
            content: row.content.to_owned(),
            payload: row.payload.map(str::to_owned),
        }
    }

    fn matches(&self, row: &ItemView<'_>) -> bool {
        self.created_at == row.created_at
            && self.item_type == row.item_type
            && self.status == row.status
            && self.thread_id == row.thread_id
            && self.content == row.content
            && self.payload.as_deref() == row.payload
    }

    fn len(&self) -> usize {
        self.thread_id.len() + self.content.len() + self.payload.as_ref().map_or(0, String::len)
    }
}

/// A row's JSON as ChatKit shows it; `None` for a row ChatKit does not show.
pub struct Rendered {
    source: Source,
    json: Option<Box<RawValue>>,
}

impl Rendered {
    /// Whether ChatKit shows the row.
    pub fn is_shown(&self) -> bool {
        self.json.is_some()
    }
}

/// An item of a page: rendered for this read, or as kept.
pub enum Shown {
    /// Rare: a user message showing attachments.
    Fresh(Box<Item>),
    Kept(Arc<Rendered>),
}

impl Serialize for Shown {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fresh(item) => item.serialize(s),
            Self::Kept(kept) => kept.json.serialize(s),
        }
    }
}

/// The kept items, by id; cheap to clone, shared by every request.
#[derive(Clone)]
pub struct RenderedItems {
    kept: moka::sync::Cache<String, Arc<Rendered>>,
}

impl Default for RenderedItems {
    fn default() -> Self {
        Self::with_capacity(MAX_BYTES)
    }
}

impl RenderedItems {
    /// At most `bytes` of text kept.
    #[must_use]
    pub fn with_capacity(bytes: u64) -> Self {
        Self {
            kept: moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|id: &String, r: &Arc<Rendered>| {
                    let json = r.json.as_ref().map_or(0, |j| j.get().len());
                    u32::try_from(id.len() + r.source.len() + json).unwrap_or(u32::MAX)
                })
                .build(),
        }
    }

    /// The kept rendering of `row`, if it was made from the same fields.
    #[must_use]
    pub fn get(&self, row: &ItemView<'_>) -> Option<Arc<Rendered>> {
        self.kept
            .get(row.id)
            .filter(|kept| kept.source.matches(row))
    }

    /// Renders `model` (a row of `source`) with `render` and keeps the result for the next
    /// read. Returns the item to show, if shown.
    pub fn keep(
        &self,
        source: Source,
        model: thread_item::Model,
        render: impl FnOnce(thread_item::Model) -> Option<Item>,
    ) -> Option<Shown> {
        let id = model.id.clone();
        let item = render(model);
        let json = match item
            .as_ref()
            .map(serde_json::value::to_raw_value)
            .transpose()
        {
            Ok(json) => json,
            // Not kept; shown as rendered (writing it out meets the same error).
            Err(_) => return item.map(|i| Shown::Fresh(Box::new(i))),
        };
        let rendered = Arc::new(Rendered { source, json });
        self.kept.insert(id, rendered.clone());
        rendered.is_shown().then_some(Shown::Kept(rendered))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::{
        chatkit::items::{into_item, ShownAttachments},
        domain::UserId,
        store::{new_item_row, ItemRow},
    };

    fn row(kind: ItemType, content: &str, payload: Option<&str>) -> ItemRow {
        let at = Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap();
        let user = UserId::parse("alice").unwrap();
        let mut row = new_item_row("thr_1", &user, kind, content.into(), at);
        row.id = "msg_1".into();
        ItemRow {
            row,
            payload: payload.map(str::to_owned),
        }
    }

    fn render(kept: &RenderedItems, row: &ItemRow) -> Option<Shown> {
        let model = row.clone().into_model().unwrap();
        kept.keep(Source::of(&row.view()), model, |m| {
            into_item(m, &ShownAttachments::new())
        })
    }

    fn json(shown: &Shown) -> String {
        serde_json::to_string(shown).unwrap()
    }

    #[test]
    fn a_kept_item_is_written_as_a_fresh_rendering_of_its_row() {
        let kept = RenderedItems::default();
        let user = row(
            ItemType::UserMessage,
            "hi",
            Some(r#"{"content":[{"type":"input_text","text":"hi"}],"quoted_text":"q"}"#),
        );
        let answer = row(ItemType::AssistantMessage, "hello \"you\"", None);
        for r in [&user, &answer] {
            assert!(
                kept.get(&r.view()).is_none(),
                "nothing is kept before a rendering"
            );
            let fresh = into_item(r.clone().into_model().unwrap(), &ShownAttachments::new());
            let first = render(&kept, r).expect("shown");
            let again = Shown::Kept(kept.get(&r.view()).expect("kept"));
            let expected = serde_json::to_string(&fresh.unwrap()).unwrap();
            assert_eq!(json(&first), expected);
            assert_eq!(json(&again), expected);
        }
    }

    #[test]
    fn a_row_changed_in_any_field_its_json_is_made_of_is_not_served_as_kept() {
        let kept = RenderedItems::default();
        let base = row(
            ItemType::ClientToolCall,
            "",
            Some(r#"{"call_id":"c","name":"n","arguments":{}}"#),
        );
        render(&kept, &base);
        assert!(kept.get(&base.view()).is_some());
        let changes: [fn(&mut ItemRow); 6] = [
            |r| r.row.content.push('!'),
            |r| r.row.status = ItemStatus::Pending,
            |r| r.row.item_type = ItemType::StructuredInput,
            |r| r.row.thread_id = "thr_2".into(),
            |r| r.row.created_at += chrono::Duration::microseconds(1),
            |r| r.payload = Some(r#"{"call_id":"c","name":"n","arguments":{},"output":1}"#.into()),
        ];
        for change in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert!(kept.get(&changed.view()).is_none());
        }
        // Only the fields the JSON is made of: a bumped updated_at changes nothing shown.
        let mut touched = base.clone();
        touched.row.updated_at += chrono::Duration::seconds(1);
        assert!(kept.get(&touched.view()).is_some());
    }

    #[test]
    fn a_row_chatkit_does_not_show_is_kept_as_not_shown() {
        let kept = RenderedItems::default();
        let empty = row(ItemType::AssistantMessage, "", None);
        assert!(render(&kept, &empty).is_none());
        assert!(!kept.get(&empty.view()).expect("kept").is_shown());
    }

    #[test]
    fn what_is_kept_stays_within_its_bytes() {
        let kept = RenderedItems::with_capacity(4 * 1024);
        for i in 0..100 {
            let mut r = row(ItemType::AssistantMessage, &"x".repeat(500), None);
            r.row.id = format!("msg_{i}");
            render(&kept, &r);
        }
        kept.kept.run_pending_tasks();
        assert!(
            kept.kept.weighted_size() <= 4 * 1024,
            "{}",
            kept.kept.weighted_size()
        );
        assert!(kept.kept.entry_count() > 0);
    }
}
