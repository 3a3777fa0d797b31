//! Media metadata: which account owns a file and how to describe it (the bytes live in
//! the blob store).

use crate::PgStore;
use crate::error::map_sqlx;
use crate::row::{media_columns, media_from_row};
use async_trait::async_trait;
use wagate_core::media::Media;
use wagate_core::store::{MediaStore, StoreError, StoreResult};
use wagate_core::time::millis;
use wagate_core::{AccountId, MediaId};

#[async_trait]
impl MediaStore for PgStore {
    async fn create_media(&self, media: &Media) -> StoreResult<()> {
        let size = i64::try_from(media.size)
            .map_err(|_| StoreError::Conflict("media too large to record".into()))?;
        sqlx::query(
            "INSERT INTO media (id, account_id, mime_type, size, file_name, sha256, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(media.id.as_str())
        .bind(media.account_id.as_str())
        .bind(&media.mime_type)
        .bind(size)
        .bind(media.file_name.as_deref())
        .bind(&media.sha256)
        .bind(millis(media.created_at))
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn get_media(&self, account: &AccountId, id: &MediaId) -> StoreResult<Media> {
        let row = sqlx::query(concat!(
            "SELECT ",
            media_columns!(),
            " FROM media md WHERE md.id = $1 AND md.account_id = $2"
        ))
        .bind(id.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        media_from_row(&row)
    }
}
