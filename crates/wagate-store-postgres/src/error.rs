//! How PostgreSQL failures become [`StoreError`]s: the store's callers decide on retries
//! and HTTP statuses from the variant, so the mapping is in one place (as on SQLite).

use sqlx::error::ErrorKind;
use wagate_core::store::StoreError;

/// SQLSTATEs that mean "not now": the server is going away, overloaded, read-only, or
/// gave up on this transaction to let others through. Retrying later may work.
fn unavailable(code: &str) -> bool {
    matches!(
        code,
        // deadlock_detected, serialization_failure, lock_not_available
        "40P01" | "40001" | "55P03"
        // read_only_sql_transaction: a standby, or a primary being demoted
        | "25006"
        // too_many_connections, insufficient_resources, disk_full, out_of_memory
        | "53300" | "53000" | "53100" | "53200"
        // admin_shutdown, crash_shutdown, cannot_connect_now
        | "57P01" | "57P02" | "57P03"
        // query_canceled (statement_timeout)
        | "57014"
    ) || code.starts_with("08") // connection_exception and its subclasses
}

pub(crate) fn map_sqlx(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => StoreError::Conflict(db.message().to_owned()),
            // The row referred to (an account, a device) does not exist.
            ErrorKind::ForeignKeyViolation => StoreError::NotFound,
            _ if db.code().is_some_and(|c| unavailable(&c)) => {
                StoreError::Unavailable(db.message().to_owned())
            }
            _ => StoreError::Other(db.message().to_owned()),
        },
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        other => StoreError::Other(other.to_string()),
    }
}

/// A stored value the domain refuses: the row was edited by hand or written by a newer
/// version.
pub(crate) fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("unreadable {what} in the database: {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_server_states_are_unavailable() {
        for code in ["40P01", "40001", "25006", "57P01", "08006", "53300"] {
            assert!(unavailable(code), "{code}");
        }
        // A syntax error or a check violation is a bug, not a reason to retry.
        for code in ["42601", "23514", "22P02"] {
            assert!(!unavailable(code), "{code}");
        }
    }

    #[test]
    fn connection_failures_are_unavailable() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(map_sqlx(io), StoreError::Unavailable(_)));
        assert!(matches!(
            map_sqlx(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert_eq!(map_sqlx(sqlx::Error::RowNotFound), StoreError::NotFound);
    }
}
