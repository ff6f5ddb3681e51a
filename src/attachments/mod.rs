//! Attachments: files and images a user attaches to a message, stored safely and shared by
//! every instance (the rows and, by default, the bytes are in the database; with
//! `attachments.store = "s3"` the bytes are in an S3-compatible bucket).
//!
//! Two ways in, as the ChatKit widget has them. Two-phase: [`Attachments::create`] records
//! name, size and type and hands out a signed upload link; the bytes then arrive at that
//! link ([`Attachments::upload`], after [`Attachments::verify_upload_link`]). Direct:
//! [`Attachments::create_direct`] takes name, type and bytes in one request. Either way the
//! bytes stream to storage and are checked on the way ([`validate`]). A message that uses
//! attachments stamps its thread on them ([`Attachments::stamp`]); deleting the thread
//! deletes them; uploads no message used are collected after `unsent_ttl_secs`.
//!
//! Links ([`links`]) are capabilities: whoever holds an unexpired upload or preview link
//! may use it, for that attachment and purpose only. Everything else takes the
//! authenticated user, and another user's attachment is "not found".

mod error;
pub mod links;
pub mod storage;
pub mod validate;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use entity::attachment;
use futures_util::StreamExt;
use serde_json::{json, Value};

pub use error::AttachmentError;
pub use storage::ByteStream;

use crate::{
    config::{AttachmentSettings, AttachmentStore, SessionSettings},
    domain::{new_id, now, ThreadId, UserId},
    store::{NewAttachment, QuotaBreach, StampRefusal, Store, UploadClaim, STATE_UPLOADED},
};
use links::{LinkKeys, Purpose};
use storage::{Budget, DbSink, Expect, Sink, S3};

/// What the gateway knows of an attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// `atc_…`.
    pub id: String,
    pub user: String,
    /// The thread of the message that used it.
    pub thread_id: Option<String>,
    pub name: String,
    pub mime_type: String,
    pub declared_size: u64,
    pub stored_size: u64,
    /// Whether its bytes have arrived.
    pub uploaded: bool,
    /// `db` or `s3`.
    pub storage: String,
    pub created_at: DateTime<Utc>,
    pub uploaded_at: Option<DateTime<Utc>>,
}

impl Attachment {
    /// `image` for the types shown inline (with a preview link), `file` otherwise: the
    /// ChatKit attachment's `type`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        if validate::is_image(&self.mime_type) {
            "image"
        } else {
            "file"
        }
    }
}

impl From<attachment::Model> for Attachment {
    fn from(row: attachment::Model) -> Self {
        Self {
            uploaded: row.state == STATE_UPLOADED,
            id: row.id,
            user: row.user_id,
            thread_id: row.thread_id,
            name: row.name,
            mime_type: row.mime_type,
            declared_size: u64::try_from(row.declared_size).unwrap_or(0),
            stored_size: u64::try_from(row.stored_size).unwrap_or(0),
            storage: row.storage,
            created_at: row.created_at,
            uploaded_at: row.uploaded_at,
        }
    }
}

/// Where and how the ChatKit widget sends an attachment's bytes (two-phase strategy).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UploadDescriptor {
    pub url: String,
    /// `POST` (multipart/form-data with a `file` part, what the widget sends); the same URL
    /// takes the raw bytes with `PUT`.
    pub method: &'static str,
    pub headers: serde_json::Map<String, Value>,
}

/// The ChatKit `Attachment` (openai-chatkit 1.6.5 `FileAttachment` / `ImageAttachment`):
/// `{"type","id","name","mime_type","upload_descriptor"?,"preview_url"?,"thread_id"?}`.
/// An image needs a `preview_url` ([`Attachments::preview_url`]); a file never has one.
#[must_use]
pub fn chatkit_json(
    attachment: &Attachment,
    preview_url: Option<String>,
    upload: Option<UploadDescriptor>,
) -> Value {
    let mut out = json!({
        "type": attachment.kind(),
        "id": attachment.id,
        "name": attachment.name,
        "mime_type": attachment.mime_type,
    });
    if let Some(upload) = upload {
        out["upload_descriptor"] = json!(upload);
    }
    if attachment.kind() == "image" {
        if let Some(url) = preview_url {
            out["preview_url"] = json!(url);
        }
    }
    if let Some(thread) = &attachment.thread_id {
        out["thread_id"] = json!(thread);
    }
    out
}

/// Most attachments one message may carry.
pub const MAX_PER_MESSAGE: usize = 10;

/// The ids of the attachments a user message was sent with, as kept in its stored
/// payload (`{"attachments": ["atc_…", …]}`, ChatKit's `input.attachments`).
#[must_use]
pub fn ids_in_payload(payload: Option<&Value>) -> Vec<String> {
    payload
        .and_then(|p| p.get("attachments"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// The attachments service: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Attachments {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    settings: AttachmentSettings,
    keys: LinkKeys,
    s3: Option<S3>,
    budget: Budget,
    /// `{public_base_url}{api_prefix}/attachments`: what every link starts with.
    links_base: String,
}

impl Attachments {
    /// The service over `store` as `settings` say; links are signed with a key derived
    /// from the session secret (and verified with the previous ones too). Fails only when
    /// the S3 client cannot be built from the settings.
    pub fn new(
        store: Store,
        settings: &AttachmentSettings,
        session: &SessionSettings,
        api_prefix: &str,
    ) -> Result<Self, AttachmentError> {
        let s3 = match settings.store {
            AttachmentStore::S3 => Some(S3::new(&settings.s3)?),
            AttachmentStore::Db => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                keys: LinkKeys::new(
                    std::iter::once(&session.secret).chain(&session.previous_secrets),
                ),
                s3,
                budget: Budget::new(settings.buffer_bytes),
                links_base: format!(
                    "{}{}/attachments",
                    settings.public_base_url,
                    api_prefix.trim_end_matches('/')
                ),
                settings: settings.clone(),
            }),
        })
    }

    /// The settings it runs with.
    #[must_use]
    pub fn settings(&self) -> &AttachmentSettings {
        &self.inner.settings
    }

    /// Records a new attachment of `user`, waiting for its bytes (two-phase). Refuses a
    /// name that is not a plain file name, a size of 0 or over `max_bytes`, a type outside
    /// the allow-list, and a user at a quota.
    pub async fn create(
        &self,
        user: &UserId,
        name: &str,
        size: u64,
        mime_type: &str,
    ) -> Result<Attachment, AttachmentError> {
        let (name, mime_type) = self.check_declaration(name, mime_type)?;
        if size == 0 {
            return Err(AttachmentError::Empty);
        }
        self.check_size(size)?;
        self.insert(user, name, mime_type, size).await
    }

    /// A link that uploads the bytes of `attachment` (its owner's, its declared size),
    /// valid for `upload_url_ttl_secs`; `None` once the bytes have arrived.
    #[must_use]
    pub fn upload_descriptor(&self, attachment: &Attachment) -> Option<UploadDescriptor> {
        if attachment.uploaded {
            return None;
        }
        let user = UserId::parse(&attachment.user)?;
        let token = self.inner.keys.sign(
            Purpose::Upload,
            &attachment.id,
            &user,
            attachment.declared_size,
            self.expiry(self.inner.settings.upload_url_ttl_secs),
        );
        Some(UploadDescriptor {
            url: format!(
                "{}/{}/upload?sig={token}",
                self.inner.links_base, attachment.id
            ),
            method: "POST",
            headers: serde_json::Map::new(),
        })
    }

    /// A link that shows the image, valid for `preview_url_ttl_secs`; `None` for a file.
    /// Links expire: mint a fresh one whenever an attachment is sent to a client.
    #[must_use]
    pub fn preview_url(&self, attachment: &Attachment) -> Option<String> {
        if attachment.kind() != "image" {
            return None;
        }
        let user = UserId::parse(&attachment.user)?;
        let token = self.inner.keys.sign(
            Purpose::Preview,
            &attachment.id,
            &user,
            0,
            self.expiry(self.inner.settings.preview_url_ttl_secs),
        );
        Some(format!(
            "{}/{}/preview?sig={token}",
            self.inner.links_base, attachment.id
        ))
    }

    /// The ChatKit JSON of `attachment` with fresh links: a preview link for an image, an
    /// upload descriptor while the bytes have not arrived.
    #[must_use]
    pub fn to_chatkit(&self, attachment: &Attachment) -> Value {
        chatkit_json(
            attachment,
            self.preview_url(attachment),
            self.upload_descriptor(attachment),
        )
    }

    /// Whose upload, and of what declared size, the upload link `sig` of attachment `id`
    /// grants. A tampered, expired or foreign link is [`AttachmentError::LinkInvalid`].
    pub fn verify_upload_link(&self, id: &str, sig: &str) -> Result<links::Grant, AttachmentError> {
        self.inner
            .keys
            .verify(Purpose::Upload, id, sig, now().timestamp())
            .ok_or(AttachmentError::LinkInvalid)
    }

    /// Whose image the preview link `sig` of attachment `id` shows.
    pub fn verify_preview_link(&self, id: &str, sig: &str) -> Result<UserId, AttachmentError> {
        self.inner
            .keys
            .verify(Purpose::Preview, id, sig, now().timestamp())
            .map(|grant| grant.user)
            .ok_or(AttachmentError::LinkInvalid)
    }

    /// Streams the bytes of a two-phase attachment to storage, under the grant of its
    /// upload link: exactly the declared size, once. A second upload (also one racing this
    /// one on another instance) is [`AttachmentError::AlreadyUploaded`]; an upload that
    /// fails leaves the attachment waiting for its bytes again.
    pub async fn upload(
        &self,
        grant: &links::Grant,
        id: &str,
        body: ByteStream,
    ) -> Result<Attachment, AttachmentError> {
        let row = match self
            .inner
            .store
            .claim_attachment_upload(&grant.user, id)
            .await?
        {
            UploadClaim::Claimed(row) => *row,
            UploadClaim::Taken => return Err(AttachmentError::AlreadyUploaded),
            UploadClaim::NotFound => return Err(AttachmentError::NotFound),
        };
        let declared = u64::try_from(row.declared_size).unwrap_or(0);
        if declared != grant.size {
            // A link for another declaration of this id cannot exist (ids are never
            // reused), so this one was not issued for this attachment.
            self.inner
                .store
                .release_attachment_upload(&grant.user, id)
                .await?;
            return Err(AttachmentError::LinkInvalid);
        }
        let expect = Expect {
            declared,
            exact: true,
        };
        self.ingest_claimed(grant.user.clone(), row, body, expect, false)
            .await
    }

    /// Creates an attachment and streams its bytes in one go (the direct strategy). The
    /// size is known only at the end: `size_hint` (the request's length) bounds it when
    /// known, `max_bytes` always. Quotas count the hint until the real size replaces it.
    pub async fn create_direct(
        &self,
        user: &UserId,
        name: &str,
        mime_type: &str,
        size_hint: Option<u64>,
        body: ByteStream,
    ) -> Result<Attachment, AttachmentError> {
        let (name, mime_type) = self.check_declaration(name, mime_type)?;
        let max = self.inner.settings.max_bytes;
        let bound = size_hint.map_or(max, |hint| hint.clamp(1, max));
        let created = self.insert(user, name, mime_type, bound).await?;
        let row = match self
            .inner
            .store
            .claim_attachment_upload(user, &created.id)
            .await?
        {
            UploadClaim::Claimed(row) => *row,
            UploadClaim::Taken => return Err(AttachmentError::AlreadyUploaded),
            UploadClaim::NotFound => return Err(AttachmentError::NotFound),
        };
        let expect = Expect {
            declared: bound,
            exact: false,
        };
        let result = self
            .ingest_claimed(user.clone(), row, body, expect, true)
            .await;
        if result.is_err() {
            // Nothing of a refused direct upload is kept.
            let _ = self.inner.store.delete_attachment(user, &created.id).await;
        }
        match result {
            Err(AttachmentError::TooLarge(_)) if bound == max => Err(self.too_large()),
            other => other,
        }
    }

    /// The user's attachment.
    pub async fn get(&self, user: &UserId, id: &str) -> Result<Attachment, AttachmentError> {
        self.inner
            .store
            .attachment(user, id)
            .await?
            .map(Attachment::from)
            .ok_or(AttachmentError::NotFound)
    }

    /// The user's attachment and its bytes, read from storage piece by piece as the
    /// stream is polled.
    pub async fn read(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<(Attachment, ByteStream), AttachmentError> {
        let attachment = self.get(user, id).await?;
        if !attachment.uploaded {
            return Err(AttachmentError::NotUploaded(attachment.id));
        }
        let bytes = if attachment.storage == AttachmentStore::S3.as_str() {
            self.s3()?.read(id).await?
        } else {
            self.db_stream(user.clone(), &attachment)
        };
        Ok((attachment, bytes))
    }

    /// The user's attachment and all its bytes, in memory: for the agent, which sends them
    /// on whole. More than `max` stored bytes is [`AttachmentError::TooLarge`] (uploads are
    /// held to `max_bytes` already; this bounds what one read can hold).
    pub async fn read_all(
        &self,
        user: &UserId,
        id: &str,
        max: u64,
    ) -> Result<(Attachment, bytes::Bytes), AttachmentError> {
        let (attachment, mut stream) = self.read(user, id).await?;
        if attachment.stored_size > max {
            return Err(AttachmentError::TooLarge(format!(
                "attachment {id} has more than {max} bytes"
            )));
        }
        let mut bytes =
            bytes::BytesMut::with_capacity(usize::try_from(attachment.stored_size).unwrap_or(0));
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| AttachmentError::Storage(e.to_string()))?;
            if (bytes.len() + piece.len()) as u64 > max {
                return Err(AttachmentError::TooLarge(format!(
                    "attachment {id} has more than {max} bytes"
                )));
            }
            bytes.extend_from_slice(&piece);
        }
        Ok((attachment, bytes.freeze()))
    }

    /// The attachments `ids` of a message about to be sent, in the order given and once
    /// each, checked without changing anything: each must be the user's
    /// ([`AttachmentError::NotFoundId`]), uploaded (`NotUploaded`), and not used in a
    /// thread other than `thread` (`InUse`; with no thread yet, in none). [`Self::stamp`]
    /// makes it so once the message has a thread.
    pub async fn sendable(
        &self,
        user: &UserId,
        ids: &[String],
        thread: Option<&ThreadId>,
    ) -> Result<Vec<Attachment>, AttachmentError> {
        let rows = self.inner.store.attachments_by_ids(user, ids).await?;
        let mut out: Vec<Attachment> = Vec::with_capacity(ids.len());
        for id in ids {
            if out.iter().any(|a| &a.id == id) {
                continue;
            }
            let row = rows
                .iter()
                .find(|r| &r.id == id)
                .ok_or_else(|| AttachmentError::NotFoundId(id.clone()))?;
            let attachment = Attachment::from(row.clone());
            if !attachment.uploaded {
                return Err(AttachmentError::NotUploaded(id.clone()));
            }
            if attachment
                .thread_id
                .as_deref()
                .is_some_and(|t| Some(t) != thread.map(ThreadId::as_str))
            {
                return Err(AttachmentError::InUse(id.clone()));
            }
            out.push(attachment);
        }
        Ok(out)
    }

    /// The user's attachments the user messages among `rows` were sent with, by id, to
    /// show with them (deleted ones are simply absent). One query whatever the number, none
    /// when no message has any.
    pub async fn shown(
        &self,
        user: &UserId,
        rows: &[entity::thread_item::Model],
    ) -> Result<std::collections::HashMap<String, Attachment>, AttachmentError> {
        let ids: Vec<String> = rows
            .iter()
            .filter(|r| r.item_type == entity::thread_item::ItemType::UserMessage)
            .flat_map(|r| ids_in_payload(r.payload.as_ref()))
            .collect();
        if ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        Ok(self
            .inner
            .store
            .attachments_by_ids(user, &ids)
            .await?
            .into_iter()
            .map(|row| (row.id.clone(), Attachment::from(row)))
            .collect())
    }

    /// Deletes the user's attachment and its bytes.
    pub async fn delete(&self, user: &UserId, id: &str) -> Result<(), AttachmentError> {
        let row = self
            .inner
            .store
            .delete_attachment(user, id)
            .await?
            .ok_or(AttachmentError::NotFound)?;
        self.delete_object(&row).await;
        Ok(())
    }

    /// Marks `ids` as used by a message of `thread_id`, all or none. Each must be the
    /// user's and uploaded, and not used in another thread; otherwise the error names the
    /// first that is not ([`AttachmentError::NotFoundId`], `NotUploaded`, `InUse`). The
    /// thread must be the user's ([`AttachmentError::ThreadNotFound`]).
    pub async fn stamp(
        &self,
        user: &UserId,
        ids: &[String],
        thread_id: &ThreadId,
    ) -> Result<Vec<Attachment>, AttachmentError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        match self
            .inner
            .store
            .stamp_attachments(user, ids, thread_id)
            .await?
        {
            Ok(rows) => Ok(rows.into_iter().map(Attachment::from).collect()),
            Err(StampRefusal::NotFound(id)) => Err(AttachmentError::NotFoundId(id)),
            Err(StampRefusal::NotUploaded(id)) => Err(AttachmentError::NotUploaded(id)),
            Err(StampRefusal::OtherThread(id)) => Err(AttachmentError::InUse(id)),
        }
    }

    /// Deletes the attachments of the user's thread and their bytes; returns how many.
    /// Call it before deleting the thread: the database store's bytes would go with the
    /// thread anyway (foreign key cascade), but objects in a bucket would be left to the
    /// collector's sweep.
    pub async fn delete_for_thread(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
    ) -> Result<u64, AttachmentError> {
        let rows = self
            .inner
            .store
            .delete_thread_attachments(user, thread_id)
            .await?;
        for row in &rows {
            self.delete_object(row).await;
        }
        Ok(rows.len() as u64)
    }

    /// Deletes the uploads no message used that are older than `older_than`, of every
    /// user, and (S3) objects left without an attachment that old; returns how many
    /// attachments went. Safe on several instances at once: each deletion is conditional.
    pub async fn collect_unsent(&self, older_than: Duration) -> Result<u64, AttachmentError> {
        const BATCH: u64 = 200;
        let before =
            now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let mut collected = 0;
        loop {
            let rows = self.inner.store.unsent_attachments(before, BATCH).await?;
            let listed = rows.len() as u64;
            for row in rows {
                let Some(user) = UserId::parse(&row.user_id) else {
                    continue;
                };
                if self
                    .inner
                    .store
                    .delete_unsent_attachment(&user, &row.id, before)
                    .await?
                {
                    self.delete_object(&row).await;
                    collected += 1;
                }
            }
            if listed < BATCH {
                break;
            }
        }
        if let Some(s3) = &self.inner.s3 {
            self.sweep_orphans(s3, before).await?;
        }
        Ok(collected)
    }

    /// Runs [`Attachments::collect_unsent`] every `collect_interval_secs` with
    /// `unsent_ttl_secs`, until aborted.
    #[must_use]
    pub fn spawn_collector(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let settings = &this.inner.settings;
            let ttl = Duration::from_secs(settings.unsent_ttl_secs);
            let mut tick =
                tokio::time::interval(Duration::from_secs(settings.collect_interval_secs));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match this.collect_unsent(ttl).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(collected = n, "deleted unsent attachments"),
                    Err(e) => tracing::warn!(error = %e, "could not collect unsent attachments"),
                }
            }
        })
    }

    fn check_declaration(
        &self,
        name: &str,
        mime_type: &str,
    ) -> Result<(String, String), AttachmentError> {
        let name = validate::name(name)?;
        let mime_type = validate::mime_type(mime_type, &self.inner.settings.allowed_mime_types)?;
        Ok((name, mime_type))
    }

    fn check_size(&self, size: u64) -> Result<(), AttachmentError> {
        if size > self.inner.settings.max_bytes {
            return Err(self.too_large());
        }
        Ok(())
    }

    fn too_large(&self) -> AttachmentError {
        AttachmentError::TooLarge(format!(
            "an attachment may have at most {} bytes",
            self.inner.settings.max_bytes
        ))
    }

    async fn insert(
        &self,
        user: &UserId,
        name: String,
        mime_type: String,
        size: u64,
    ) -> Result<Attachment, AttachmentError> {
        let settings = &self.inner.settings;
        let new = NewAttachment {
            id: new_id("atc"),
            name,
            mime_type,
            declared_size: i64::try_from(size).map_err(|_| self.too_large())?,
            storage: settings.store.as_str(),
        };
        match self
            .inner
            .store
            .create_attachment(user, new, settings.quota_files, settings.quota_bytes)
            .await?
        {
            Ok(row) => Ok(row.into()),
            Err(QuotaBreach::Files) => Err(AttachmentError::QuotaExceeded(format!(
                "you may keep at most {} attachments; delete some first",
                settings.quota_files
            ))),
            Err(QuotaBreach::Bytes) => Err(AttachmentError::QuotaExceeded(format!(
                "your attachments may take at most {} bytes; delete some first",
                settings.quota_bytes
            ))),
        }
    }

    /// Streams `body` into the storage of a claimed attachment and marks it uploaded; on
    /// any failure undoes what was written and frees the attachment for another upload.
    /// Runs as a task of its own, so a client that hangs up cannot stop it halfway: its
    /// body then ends in an error and the undo still runs.
    async fn ingest_claimed(
        &self,
        user: UserId,
        row: attachment::Model,
        body: ByteStream,
        expect: Expect,
        size_known_at_end: bool,
    ) -> Result<Attachment, AttachmentError> {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let result = this
                .ingest_now(&user, &row, body, expect, size_known_at_end)
                .await;
            if result.is_err() {
                if let Err(e) = this
                    .inner
                    .store
                    .release_attachment_upload(&user, &row.id)
                    .await
                {
                    tracing::warn!(error = %e, id = %row.id, "could not release a failed upload");
                }
            }
            result
        });
        task.await
            .map_err(|e| AttachmentError::Storage(format!("the upload task failed: {e}")))?
    }

    async fn ingest_now(
        &self,
        user: &UserId,
        row: &attachment::Model,
        body: ByteStream,
        expect: Expect,
        size_known_at_end: bool,
    ) -> Result<Attachment, AttachmentError> {
        let budget = &self.inner.budget;
        let stored = if row.storage == AttachmentStore::S3.as_str() {
            let s3 = self.s3()?;
            let mut sink = s3.sink(&row.id);
            let result = storage::ingest(
                body,
                &row.mime_type,
                expect,
                s3.part_bytes,
                budget,
                &mut sink,
            )
            .await;
            if result.is_err() {
                sink.abort().await;
            }
            result?
        } else {
            let mut sink = DbSink {
                store: &self.inner.store,
                user,
                id: &row.id,
            };
            let piece = usize::try_from(self.inner.settings.chunk_bytes).unwrap_or(usize::MAX);
            storage::ingest(body, &row.mime_type, expect, piece, budget, &mut sink).await?
        };
        let stored_i64 = i64::try_from(stored).unwrap_or(i64::MAX);
        let finished = self
            .inner
            .store
            .finish_attachment_upload(
                user,
                &row.id,
                stored_i64,
                size_known_at_end.then_some(stored_i64),
            )
            .await?;
        if !finished {
            return Err(AttachmentError::NotFound);
        }
        self.get(user, &row.id).await
    }

    fn db_stream(&self, user: UserId, attachment: &Attachment) -> ByteStream {
        let store = self.inner.store.clone();
        let id = attachment.id.clone();
        let total = attachment.stored_size;
        let pieces = futures_util::stream::try_unfold((0_i32, 0_u64), move |(seq, sent)| {
            let (store, user, id) = (store.clone(), user.clone(), id.clone());
            async move {
                if sent >= total {
                    return Ok(None);
                }
                let chunk = store
                    .attachment_chunk(&user, &id, seq)
                    .await
                    .map_err(std::io::Error::other)?
                    .ok_or_else(|| std::io::Error::other("an attachment chunk is missing"))?;
                let sent = sent + chunk.len() as u64;
                Ok(Some((bytes::Bytes::from(chunk), (seq + 1, sent))))
            }
        });
        Box::pin(pieces)
    }

    fn s3(&self) -> Result<&S3, AttachmentError> {
        self.inner.s3.as_ref().ok_or_else(|| {
            AttachmentError::Storage("the attachment is in S3, which is not configured".into())
        })
    }

    /// Deletes an attachment's object, if it has one; a failure leaves it to the sweep.
    async fn delete_object(&self, row: &attachment::Model) {
        if row.storage != AttachmentStore::S3.as_str() {
            return;
        }
        match self.s3() {
            Ok(s3) => {
                if let Err(e) = s3.delete(&row.id).await {
                    tracing::warn!(error = %e, id = %row.id, "could not delete an attachment object; the collector will retry");
                }
            }
            Err(e) => tracing::warn!(error = %e, id = %row.id, "attachment object left behind"),
        }
    }

    /// Deletes objects under the prefix, older than `before`, whose attachment is gone
    /// (a thread deleted without [`Attachments::delete_for_thread`], a failed delete).
    async fn sweep_orphans(&self, s3: &S3, before: DateTime<Utc>) -> Result<u64, AttachmentError> {
        let mut listed = s3.list_older(before).chunks(200);
        let mut swept = 0;
        while let Some(batch) = listed.next().await {
            let ids: Vec<String> = batch
                .into_iter()
                .filter_map(Result::ok)
                .filter_map(|path| s3.id_of(&path))
                .collect();
            let kept = self.inner.store.existing_attachment_ids(&ids).await?;
            for id in ids.iter().filter(|id| !kept.contains(id)) {
                s3.delete(id).await?;
                swept += 1;
            }
        }
        if swept > 0 {
            tracing::info!(swept, "deleted attachment objects without an attachment");
        }
        Ok(swept)
    }

    fn expiry(&self, ttl_secs: u64) -> i64 {
        now().timestamp() + i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2)
    }
}
