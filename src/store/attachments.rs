//! Attachments' rows and, with the database store, their bytes (`attachment_chunks`). Every
//! query names the user; a chunk is reached only through its attachment's row, so a chunk
//! of another user's attachment can be neither read nor written. The collector's scan for
//! unsent uploads is the one query across users, and it deletes each one by (user, id).

use chrono::{DateTime, Utc};
use entity::{attachment, attachment_chunk, thread};
use sea_orm::{
    sea_query::Expr, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
};

use super::{Store, StoreError};
use crate::domain::{now, ThreadId, UserId};

/// `attachments.state` while waiting for its bytes.
pub const STATE_CREATED: &str = "created";
/// `attachments.state` while one upload writes its bytes (no second one can start).
pub const STATE_UPLOADING: &str = "uploading";
/// `attachments.state` once its bytes are stored.
pub const STATE_UPLOADED: &str = "uploaded";

/// An attachment about to be created.
#[derive(Clone, Debug)]
pub struct NewAttachment {
    pub id: String,
    pub name: String,
    pub mime_type: String,
    pub declared_size: i64,
    /// `db` or `s3`.
    pub storage: &'static str,
}

/// Which per-user quota a new attachment would break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaBreach {
    Files,
    Bytes,
}

/// What claiming an attachment for its upload found.
#[derive(Debug)]
pub enum UploadClaim {
    /// This caller holds the upload now.
    Claimed(Box<attachment::Model>),
    /// Another upload holds it or has finished.
    Taken,
    /// No such attachment of the user's.
    NotFound,
}

/// Why stamping a thread onto attachments was refused: the first id, in the caller's order,
/// that cannot be stamped.
#[derive(Debug, PartialEq, Eq)]
pub enum StampRefusal {
    /// No such attachment of the user's.
    NotFound(String),
    /// Its bytes have not arrived.
    NotUploaded(String),
    /// A message of another thread uses it.
    OtherThread(String),
}

impl Store {
    /// Creates the attachment unless it would take the user past `quota_files` attachments
    /// or `quota_bytes` declared bytes. The count and the insert are one transaction,
    /// serialized per user (PostgreSQL: an advisory lock on the user; SQLite: its single
    /// writer), so concurrent creates on any number of instances cannot overshoot.
    pub async fn create_attachment(
        &self,
        user: &UserId,
        new: NewAttachment,
        quota_files: u64,
        quota_bytes: u64,
    ) -> Result<Result<attachment::Model, QuotaBreach>, StoreError> {
        let txn = self.write.begin().await?;
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            txn.execute(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock(1633906292, hashtext($1))",
                [user.as_str().into()],
            ))
            .await?;
        }
        let (files, bytes): (i64, i64) = attachment::Entity::find()
            .select_only()
            .column_as(Expr::col(attachment::Column::Id).count(), "files")
            .column_as(
                Expr::cust("CAST(COALESCE(SUM(declared_size), 0) AS BIGINT)"),
                "bytes",
            )
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .into_tuple()
            .one(&txn)
            .await?
            .unwrap_or((0, 0));
        let files = u64::try_from(files).unwrap_or(0);
        let bytes = u64::try_from(bytes).unwrap_or(0);
        let declared = u64::try_from(new.declared_size).unwrap_or(u64::MAX);
        let breach = if files.saturating_add(1) > quota_files {
            Some(QuotaBreach::Files)
        } else if bytes.saturating_add(declared) > quota_bytes {
            Some(QuotaBreach::Bytes)
        } else {
            None
        };
        if let Some(breach) = breach {
            txn.rollback().await?;
            return Ok(Err(breach));
        }
        let row = attachment::Model {
            id: new.id,
            user_id: user.as_str().to_owned(),
            thread_id: None,
            name: new.name,
            mime_type: new.mime_type,
            declared_size: new.declared_size,
            stored_size: 0,
            state: STATE_CREATED.to_owned(),
            storage: new.storage.to_owned(),
            created_at: now(),
            uploaded_at: None,
        };
        attachment::Entity::insert(attachment::ActiveModel::from(row.clone()))
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok(Ok(row))
    }

    /// The attachment if it exists and is the user's.
    pub async fn attachment(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Option<attachment::Model>, StoreError> {
        Ok(attachment::Entity::find_by_id(id)
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .one(&self.read)
            .await?)
    }

    /// The user's attachments among `ids` (any order; ids of other users' or of none are
    /// left out): one query for every attachment a page of messages shows.
    pub async fn attachments_by_ids(
        &self,
        user: &UserId,
        ids: &[String],
    ) -> Result<Vec<attachment::Model>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(attachment::Entity::find()
            .filter(attachment::Column::Id.is_in(ids.iter().map(String::as_str)))
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .all(&self.read)
            .await?)
    }

    /// Claims the attachment for its one upload: `created` becomes `uploading` in a single
    /// conditional update, so of two uploads racing (on any instances) exactly one wins.
    pub async fn claim_attachment_upload(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<UploadClaim, StoreError> {
        let result = attachment::Entity::update_many()
            .col_expr(attachment::Column::State, Expr::value(STATE_UPLOADING))
            .filter(attachment::Column::Id.eq(id))
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .filter(attachment::Column::State.eq(STATE_CREATED))
            .exec(&self.write)
            .await?;
        let row = attachment::Entity::find_by_id(id)
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .one(&self.write)
            .await?;
        Ok(match (result.rows_affected, row) {
            (1, Some(row)) => UploadClaim::Claimed(Box::new(row)),
            (_, Some(_)) => UploadClaim::Taken,
            (_, None) => UploadClaim::NotFound,
        })
    }

    /// Stores chunk `seq` of an upload this caller has claimed. False when the attachment
    /// is no longer the user's upload in progress (deleted meanwhile).
    ///
    /// Runs on sqlx directly, so the chunk's bytes are moved into the statement: SeaORM's
    /// statements copy their values once more on the way to the pool, and the chunks of
    /// every upload waiting for SQLite's one writer connection would be held twice.
    pub async fn put_attachment_chunk(
        &self,
        user: &UserId,
        id: &str,
        seq: i32,
        bytes: Vec<u8>,
    ) -> Result<bool, StoreError> {
        use sea_orm::sqlx;
        // INSERT … SELECT … FROM attachments WHERE (id, user, uploading): the row's owner is
        // checked by the statement that writes, not by an earlier read.
        const SQL_SQLITE: &str = "INSERT INTO attachment_chunks (attachment_id, seq, bytes) \
            SELECT ?1, ?2, ?3 FROM attachments WHERE id = ?1 AND user_id = ?4 AND state = ?5";
        const SQL_POSTGRES: &str = "INSERT INTO attachment_chunks (attachment_id, seq, bytes) \
            SELECT $1, $2, $3 FROM attachments WHERE id = $1 AND user_id = $4 AND state = $5";
        let sqlx_err = |e| sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e));
        let rows = if self.write.get_database_backend() == DatabaseBackend::Postgres {
            sqlx::query(SQL_POSTGRES)
                .bind(id)
                .bind(seq)
                .bind(bytes)
                .bind(user.as_str())
                .bind(STATE_UPLOADING)
                .execute(self.write.get_postgres_connection_pool())
                .await
                .map_err(sqlx_err)?
                .rows_affected()
        } else {
            sqlx::query(SQL_SQLITE)
                .bind(id)
                .bind(seq)
                .bind(bytes)
                .bind(user.as_str())
                .bind(STATE_UPLOADING)
                .execute(self.write.get_sqlite_connection_pool())
                .await
                .map_err(sqlx_err)?
                .rows_affected()
        };
        Ok(rows == 1)
    }

    /// Marks a claimed upload done with `stored_size` bytes (`declared_size` too, when the
    /// size was only known at the end). False when it is no longer the user's upload.
    pub async fn finish_attachment_upload(
        &self,
        user: &UserId,
        id: &str,
        stored_size: i64,
        declared_size: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut update = attachment::Entity::update_many()
            .col_expr(attachment::Column::State, Expr::value(STATE_UPLOADED))
            .col_expr(attachment::Column::StoredSize, Expr::value(stored_size))
            .col_expr(attachment::Column::UploadedAt, Expr::value(now()));
        if let Some(declared) = declared_size {
            update = update.col_expr(attachment::Column::DeclaredSize, Expr::value(declared));
        }
        let result = update
            .filter(attachment::Column::Id.eq(id))
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .filter(attachment::Column::State.eq(STATE_UPLOADING))
            .exec(&self.write)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Undoes a failed upload: its chunks go and the attachment waits for an upload again.
    pub async fn release_attachment_upload(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<(), StoreError> {
        let txn = self.write.begin().await?;
        let result = attachment::Entity::update_many()
            .col_expr(attachment::Column::State, Expr::value(STATE_CREATED))
            .col_expr(attachment::Column::StoredSize, Expr::value(0_i64))
            .filter(attachment::Column::Id.eq(id))
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .filter(attachment::Column::State.eq(STATE_UPLOADING))
            .exec(&txn)
            .await?;
        if result.rows_affected == 1 {
            attachment_chunk::Entity::delete_many()
                .filter(attachment_chunk::Column::AttachmentId.eq(id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Chunk `seq` of the user's attachment, if there is one.
    pub async fn attachment_chunk(
        &self,
        user: &UserId,
        id: &str,
        seq: i32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(attachment_chunk::Entity::find()
            .select_only()
            .column(attachment_chunk::Column::Bytes)
            .inner_join(attachment::Entity)
            .filter(attachment_chunk::Column::AttachmentId.eq(id))
            .filter(attachment_chunk::Column::Seq.eq(seq))
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .into_tuple::<Vec<u8>>()
            .one(&self.read)
            .await?)
    }

    /// Deletes the user's attachment (its chunks go with it: foreign key cascade) and
    /// returns what it was.
    pub async fn delete_attachment(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Option<attachment::Model>, StoreError> {
        let Some(row) = self.attachment(user, id).await? else {
            return Ok(None);
        };
        let result = attachment::Entity::delete_many()
            .filter(attachment::Column::Id.eq(id))
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .exec(&self.write)
            .await?;
        Ok((result.rows_affected == 1).then_some(row))
    }

    /// Stamps `thread` onto every attachment of `ids`, all or none: each must be the
    /// user's, uploaded, and not used in another thread (stamping the same thread again
    /// is allowed, so a retried message succeeds). The thread must be the user's.
    pub async fn stamp_attachments(
        &self,
        user: &UserId,
        ids: &[String],
        thread_id: &ThreadId,
    ) -> Result<Result<Vec<attachment::Model>, StampRefusal>, StoreError> {
        let txn = self.write.begin().await?;
        let threads = thread::Entity::find()
            .filter(thread::Column::Id.eq(thread_id.as_str()))
            .filter(thread::Column::UserId.eq(user.as_str()))
            .count(&txn)
            .await?;
        if threads == 0 {
            txn.rollback().await?;
            return Err(StoreError::ThreadNotFound);
        }
        let rows = attachment::Entity::find()
            .filter(attachment::Column::Id.is_in(ids.iter().map(String::as_str)))
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .all(&txn)
            .await?;
        let stamped = match stampable(&rows, ids, thread_id) {
            Ok(stamped) => stamped,
            Err(refusal) => {
                txn.rollback().await?;
                return Ok(Err(refusal));
            }
        };
        let result = attachment::Entity::update_many()
            .col_expr(
                attachment::Column::ThreadId,
                Expr::value(thread_id.as_str()),
            )
            .filter(attachment::Column::Id.is_in(stamped.iter().map(|r| r.id.as_str())))
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .filter(attachment::Column::State.eq(STATE_UPLOADED))
            .exec(&txn)
            .await?;
        if result.rows_affected != stamped.len() as u64 {
            // Deleted or collected between the read and the update (PostgreSQL reads
            // committed data): nothing is stamped.
            txn.rollback().await?;
            let first = stamped.first().map(|r| r.id.clone()).unwrap_or_default();
            return Ok(Err(StampRefusal::NotFound(first)));
        }
        txn.commit().await?;
        Ok(Ok(stamped))
    }

    /// Deletes the user's attachments stamped with `thread_id` and returns them.
    pub async fn delete_thread_attachments(
        &self,
        user: &UserId,
        thread_id: &ThreadId,
    ) -> Result<Vec<attachment::Model>, StoreError> {
        let rows = attachment::Entity::find()
            .filter(attachment::Column::ThreadId.eq(thread_id.as_str()))
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .all(&self.write)
            .await?;
        if rows.is_empty() {
            return Ok(rows);
        }
        attachment::Entity::delete_many()
            .filter(attachment::Column::ThreadId.eq(thread_id.as_str()))
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .filter(attachment::Column::Id.is_in(rows.iter().map(|r| r.id.as_str())))
            .exec(&self.write)
            .await?;
        Ok(rows)
    }

    /// Up to `limit` attachments, of any user, that no message used and that were created
    /// before `before`, oldest first: what the collector deletes.
    pub async fn unsent_attachments(
        &self,
        before: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<attachment::Model>, StoreError> {
        Ok(attachment::Entity::find()
            .filter(attachment::Column::ThreadId.is_null())
            .filter(attachment::Column::CreatedAt.lt(before))
            .order_by_asc(attachment::Column::CreatedAt)
            .limit(limit)
            .all(&self.read)
            .await?)
    }

    /// Deletes the user's attachment if it is still unsent and created before `before`
    /// (a message may have used it since the collector listed it). True when it went.
    pub async fn delete_unsent_attachment(
        &self,
        user: &UserId,
        id: &str,
        before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = attachment::Entity::delete_many()
            .filter(attachment::Column::Id.eq(id))
            .filter(attachment::Column::UserId.eq(user.as_str()))
            .filter(attachment::Column::ThreadId.is_null())
            .filter(attachment::Column::CreatedAt.lt(before))
            .exec(&self.write)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Which of `ids` (object-store keys' attachment ids) still have a row, of any user:
    /// the S3 orphan sweep keeps those.
    pub async fn existing_attachment_ids(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(attachment::Entity::find()
            .select_only()
            .column(attachment::Column::Id)
            .filter(attachment::Column::Id.is_in(ids.iter().map(String::as_str)))
            .into_tuple::<String>()
            .all(&self.read)
            .await?)
    }
}

/// The rows of `ids`, in the caller's order and once each, stamped with `thread_id`; or the
/// first id that cannot be.
fn stampable(
    rows: &[attachment::Model],
    ids: &[String],
    thread_id: &ThreadId,
) -> Result<Vec<attachment::Model>, StampRefusal> {
    let mut stamped: Vec<attachment::Model> = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(row) = rows.iter().find(|r| &r.id == id) else {
            return Err(StampRefusal::NotFound(id.clone()));
        };
        if row.state != STATE_UPLOADED {
            return Err(StampRefusal::NotUploaded(id.clone()));
        }
        if row
            .thread_id
            .as_deref()
            .is_some_and(|t| t != thread_id.as_str())
        {
            return Err(StampRefusal::OtherThread(id.clone()));
        }
        if !stamped.iter().any(|s| &s.id == id) {
            let mut row = row.clone();
            row.thread_id = Some(thread_id.as_str().to_owned());
            stamped.push(row);
        }
    }
    Ok(stamped)
}
