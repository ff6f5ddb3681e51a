//! Where the bytes go: the database (chunks) or an S3-compatible bucket. An upload is read
//! from its body in pieces of one chunk (database) or one part (S3) and each piece is
//! written before the next is read, so an upload holds at most one piece in memory. All
//! uploads together hold at most `attachments.buffer_bytes`: a piece's room is reserved
//! before a byte of it is read, and an upload that finds no room waits (its client with
//! it, through TCP back-pressure). Each upload that holds room needs nothing but its own
//! client's bytes to finish its piece and give the room back, so the wait cannot deadlock.

use std::{pin::Pin, sync::Arc};

use bytes::Bytes;
use futures_util::{stream::BoxStream, Stream, StreamExt, TryStreamExt};
use object_store::{
    aws::{AmazonS3, AmazonS3Builder},
    path::Path,
    GetOptions, MultipartUpload, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
};
use secrecy::ExposeSecret;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{validate, AttachmentError};
use crate::{config::S3Settings, domain::UserId, store::Store};

/// A body as it arrives.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// The memory all uploads may hold at once, counted in KiB (a semaphore's permits are
/// `u32`; 16 GiB is 2^24 KiB).
#[derive(Clone)]
pub struct Budget(Arc<Semaphore>);

impl Budget {
    #[must_use]
    pub fn new(bytes: u64) -> Self {
        let kib = usize::try_from(bytes.div_ceil(1024)).unwrap_or(usize::MAX);
        Self(Arc::new(Semaphore::new(kib.min(Semaphore::MAX_PERMITS))))
    }

    async fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, AttachmentError> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        self.0
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(|_| AttachmentError::Storage("shutting down".into()))
    }
}

/// How much may arrive: exactly `declared` bytes (two-phase, whose size was announced) or
/// at most `declared` (direct, whose size is known only at the end).
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    pub declared: u64,
    pub exact: bool,
}

/// Writes an upload's pieces in order. `last` is known for every piece: the reader looks
/// one read ahead.
pub trait Sink: Send {
    fn put(
        &mut self,
        seq: i32,
        bytes: Vec<u8>,
        last: bool,
    ) -> impl std::future::Future<Output = Result<(), AttachmentError>> + Send;
    /// Undoes what was written (S3: aborts the multipart upload).
    fn abort(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

/// Reads `body` into `sink` in pieces of `piece` bytes; returns the bytes stored. Refuses
/// more than declared as soon as the excess arrives, an empty body, a short one when the
/// size must be exact, and a first piece whose bytes are not of `mime_type`.
pub async fn ingest<S: Sink>(
    body: ByteStream,
    mime_type: &str,
    expect: Expect,
    piece: usize,
    budget: &Budget,
    sink: &mut S,
) -> Result<u64, AttachmentError> {
    let mut body = body.peekable();
    let mut carry = Bytes::new();
    let mut written: u64 = 0;
    let mut seq: i32 = 0;
    let piece_u64 = u64::try_from(piece).unwrap_or(u64::MAX);
    loop {
        let room = expect.declared.saturating_sub(written).min(piece_u64);
        let room = usize::try_from(room).unwrap_or(piece);
        let permit = budget.reserve(room).await?;
        let mut buf: Vec<u8> = Vec::with_capacity(room);
        let mut ended = false;
        while buf.len() < room {
            if carry.is_empty() {
                match body.next().await {
                    None => {
                        ended = true;
                        break;
                    }
                    Some(Err(e)) => {
                        return Err(AttachmentError::BadUpload(format!(
                            "the upload broke off: {e}"
                        )))
                    }
                    Some(Ok(bytes)) => carry = bytes,
                }
            }
            let take = carry.len().min(room - buf.len());
            buf.extend_from_slice(&carry.split_to(take));
        }
        // One read ahead: whether anything follows this piece, and whether that is more
        // than was declared.
        if !ended && carry.is_empty() {
            loop {
                match Pin::new(&mut body).peek().await {
                    None => {
                        ended = true;
                        break;
                    }
                    Some(Ok(next)) if next.is_empty() => {
                        body.next().await;
                    }
                    Some(_) => break,
                }
            }
        }
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if !ended && written + len >= expect.declared {
            return Err(AttachmentError::TooLarge(format!(
                "more bytes arrived than the {} declared",
                expect.declared
            )));
        }
        if seq == 0 {
            validate::content(mime_type, &buf[..buf.len().min(validate::HEAD_BYTES)])?;
        }
        if ended {
            let total = written + len;
            if total == 0 {
                return Err(AttachmentError::Empty);
            }
            if expect.exact && total != expect.declared {
                return Err(AttachmentError::Incomplete(format!(
                    "{total} bytes arrived of the {} declared",
                    expect.declared
                )));
            }
        }
        sink.put(seq, buf, ended).await?;
        drop(permit);
        written += len;
        if ended {
            return Ok(written);
        }
        seq = seq
            .checked_add(1)
            .ok_or_else(|| AttachmentError::TooLarge("too many pieces".into()))?;
    }
}

/// The database store: one row per piece.
pub struct DbSink<'a> {
    pub store: &'a Store,
    pub user: &'a UserId,
    pub id: &'a str,
}

impl Sink for DbSink<'_> {
    async fn put(&mut self, seq: i32, bytes: Vec<u8>, _last: bool) -> Result<(), AttachmentError> {
        if self
            .store
            .put_attachment_chunk(self.user, self.id, seq, bytes)
            .await?
        {
            Ok(())
        } else {
            // Deleted while its bytes were arriving.
            Err(AttachmentError::NotFound)
        }
    }

    async fn abort(&mut self) {
        // The caller's release deletes the chunks in the same transaction that frees the
        // attachment for another upload.
    }
}

/// An S3-compatible bucket.
#[derive(Clone, Debug)]
pub struct S3 {
    store: Arc<AmazonS3>,
    prefix: String,
    pub part_bytes: usize,
}

impl S3 {
    pub fn new(settings: &S3Settings) -> Result<Self, AttachmentError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(settings.access_key_id.expose_secret())
            .with_secret_access_key(settings.secret_access_key.expose_secret())
            .with_allow_http(settings.allow_http);
        if !settings.endpoint.is_empty() {
            // Compatible servers are addressed by path (`endpoint/bucket/key`): no DNS name
            // per bucket to set up.
            builder = builder
                .with_endpoint(&settings.endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .map_err(|e| AttachmentError::Storage(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: settings.prefix.clone(),
            part_bytes: usize::try_from(settings.part_bytes).unwrap_or(usize::MAX),
        })
    }

    /// The object key of an attachment.
    #[must_use]
    pub fn path(&self, id: &str) -> Path {
        Path::from(format!("{}{id}", self.prefix))
    }

    /// The attachment id of an object key this gateway wrote, if it is one.
    #[must_use]
    pub fn id_of(&self, path: &Path) -> Option<String> {
        let prefix = Path::from(self.prefix.as_str());
        let rest = path.prefix_match(&prefix)?.collect::<Vec<_>>();
        match rest.as_slice() {
            [one] if one.as_ref().starts_with("atc_") => Some(one.as_ref().to_owned()),
            _ => None,
        }
    }

    #[must_use]
    pub fn sink(&self, id: &str) -> S3Sink {
        S3Sink {
            store: self.store.clone(),
            path: self.path(id),
            upload: None,
            written: false,
        }
    }

    /// The object's bytes as they arrive from the bucket.
    pub async fn read(&self, id: &str) -> Result<ByteStream, AttachmentError> {
        let got = self
            .store
            .get_opts(&self.path(id), GetOptions::default())
            .await?;
        Ok(Box::pin(got.into_stream().map_err(std::io::Error::other)))
    }

    pub async fn delete(&self, id: &str) -> Result<(), AttachmentError> {
        let path = self.path(id);
        let mut deleted = self
            .store
            .delete_stream(futures_util::stream::once(async move { Ok(path) }).boxed());
        match deleted.next().await {
            Some(Err(object_store::Error::NotFound { .. })) | Some(Ok(_)) | None => Ok(()),
            Some(Err(e)) => Err(e.into()),
        }
    }

    /// Every object under the prefix last modified before `before`.
    pub fn list_older(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> BoxStream<'static, Result<Path, AttachmentError>> {
        let prefix = Path::from(self.prefix.as_str());
        self.store
            .list(Some(&prefix))
            .try_filter_map(move |meta| async move {
                Ok((meta.last_modified < before).then_some(meta.location))
            })
            .map_err(AttachmentError::from)
            .boxed()
    }
}

/// One object being written: a single PUT when the whole file is one part, a multipart
/// upload otherwise.
pub struct S3Sink {
    store: Arc<AmazonS3>,
    path: Path,
    upload: Option<Box<dyn MultipartUpload>>,
    written: bool,
}

impl Sink for S3Sink {
    async fn put(&mut self, seq: i32, bytes: Vec<u8>, last: bool) -> Result<(), AttachmentError> {
        if seq == 0 && last {
            self.store
                .put_opts(&self.path, PutPayload::from(bytes), PutOptions::default())
                .await?;
            self.written = true;
            return Ok(());
        }
        if self.upload.is_none() {
            self.upload = Some(
                self.store
                    .put_multipart_opts(&self.path, PutMultipartOptions::default())
                    .await?,
            );
        }
        let Some(upload) = self.upload.as_mut() else {
            return Err(AttachmentError::Storage("no multipart upload".into()));
        };
        upload.put_part(PutPayload::from(bytes)).await?;
        if last {
            upload.complete().await?;
            self.upload = None;
            self.written = true;
        }
        Ok(())
    }

    async fn abort(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(error = %e, path = %self.path, "could not abort a multipart upload");
            }
        }
        if self.written {
            let path = self.path.clone();
            let mut deleted = self
                .store
                .delete_stream(futures_util::stream::once(async move { Ok(path) }).boxed());
            if let Some(Err(e)) = deleted.next().await {
                tracing::warn!(error = %e, path = %self.path, "could not delete a refused upload");
            }
        }
    }
}
