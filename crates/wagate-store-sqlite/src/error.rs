//! How SQLite failures become [`StoreError`]s: the store's callers decide on retries and
//! HTTP statuses from the variant, so the mapping is in one place.

use sqlx::error::ErrorKind;
use wagate_core::store::StoreError;

/// SQLite's primary result codes for "another connection holds the lock".
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;

pub(crate) fn map_sqlx(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) => {
            // The extended result code's low byte is the primary code.
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            match db.kind() {
                ErrorKind::UniqueViolation => StoreError::Conflict(db.message().to_owned()),
                // The row referred to (an account, a device) does not exist.
                ErrorKind::ForeignKeyViolation => StoreError::NotFound,
                _ if matches!(primary, Some(SQLITE_BUSY | SQLITE_LOCKED)) => {
                    StoreError::Unavailable(db.message().to_owned())
                }
                _ => StoreError::Other(db.message().to_owned()),
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_) => StoreError::Unavailable(e.to_string()),
        other => StoreError::Other(other.to_string()),
    }
}

/// A stored value the domain refuses: the file was edited by hand or written by a newer
/// version.
pub(crate) fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("unreadable {what} in the database: {value}"))
}
