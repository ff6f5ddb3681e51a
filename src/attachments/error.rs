//! Why an attachment call failed. Each refusal has a stable code and an HTTP status, which
//! the API layer answers with; storage and database failures are kept apart.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    /// No such attachment of the caller's (another user's id answers the same).
    #[error("attachment not found")]
    NotFound,
    /// The name is not one a file may be shown or saved under.
    #[error("{0}")]
    NameInvalid(String),
    /// A declared or uploaded size of zero.
    #[error("an attachment must have at least one byte")]
    Empty,
    /// More bytes than allowed: over `max_bytes`, or over the declared size.
    #[error("{0}")]
    TooLarge(String),
    /// A type outside `attachments.allowed_mime_types`.
    #[error("{0}")]
    TypeNotAllowed(String),
    /// Bytes that are not of the declared type (an image that is not one, HTML as PNG).
    #[error("{0}")]
    ContentMismatch(String),
    /// Fewer bytes arrived than were declared.
    #[error("{0}")]
    Incomplete(String),
    /// An upload of this attachment has already run or is running.
    #[error("this attachment has been uploaded already (or an upload of it is under way)")]
    AlreadyUploaded,
    #[error("{0}")]
    QuotaExceeded(String),
    /// A signed link that was tampered with, has expired, or is for something else.
    #[error("the link is not valid or has expired; ask for a new one")]
    LinkInvalid,
    /// The attachment's bytes have not arrived (stamping, reading).
    #[error("attachment {0} has not been uploaded")]
    NotUploaded(String),
    /// Stamping: an attachment a message of another thread already uses.
    #[error("attachment {0} is already used in another thread")]
    InUse(String),
    /// Stamping: this id is not one of the caller's attachments.
    #[error("attachment {0} not found")]
    NotFoundId(String),
    /// The body could not be read (multipart without a `file` part, a broken stream).
    #[error("{0}")]
    BadUpload(String),
    /// The thread to stamp does not exist or is not the caller's.
    #[error("thread not found")]
    ThreadNotFound,
    /// The object store failed or could not be reached.
    #[error("attachment storage is unavailable: {0}")]
    Storage(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AttachmentError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::ThreadNotFound => Self::ThreadNotFound,
            other => Self::Store(other),
        }
    }
}

impl From<object_store::Error> for AttachmentError {
    fn from(err: object_store::Error) -> Self {
        match err {
            object_store::Error::NotFound { .. } => Self::NotFound,
            other => Self::Storage(other.to_string()),
        }
    }
}

impl AttachmentError {
    /// The HTTP status this refusal is answered with (`Store` is mapped by the API layer).
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound | Self::NotFoundId(_) | Self::ThreadNotFound => 404,
            Self::NameInvalid(_) | Self::Empty | Self::ContentMismatch(_) | Self::Incomplete(_) => {
                422
            }
            Self::TooLarge(_) => 413,
            Self::TypeNotAllowed(_) => 415,
            Self::AlreadyUploaded
            | Self::QuotaExceeded(_)
            | Self::NotUploaded(_)
            | Self::InUse(_) => 409,
            Self::LinkInvalid => 403,
            Self::BadUpload(_) => 400,
            Self::Storage(_) | Self::Store(_) => 503,
        }
    }

    /// The stable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound | Self::NotFoundId(_) => "attachment.not_found",
            Self::NameInvalid(_) => "attachment.name_invalid",
            Self::Empty => "attachment.empty",
            Self::TooLarge(_) => "attachment.too_large",
            Self::TypeNotAllowed(_) => "attachment.type_not_allowed",
            Self::ContentMismatch(_) => "attachment.content_mismatch",
            Self::Incomplete(_) => "attachment.incomplete",
            Self::AlreadyUploaded => "attachment.already_uploaded",
            Self::QuotaExceeded(_) => "attachment.quota_exceeded",
            Self::LinkInvalid => "attachment.link_invalid",
            Self::NotUploaded(_) => "attachment.not_uploaded",
            Self::InUse(_) => "attachment.in_use",
            Self::BadUpload(_) => "attachment.upload_invalid",
            Self::ThreadNotFound => "thread.not_found",
            Self::Storage(_) => "attachment.storage_unavailable",
            Self::Store(_) => "service.unavailable",
        }
    }
}
