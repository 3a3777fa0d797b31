//! Dashboard sessions: rows keyed by the SHA-256 of the cookie's token, so signing out,
//! ending every session or revoking the key ends a session at once (see
//! [`wagate_core::account::DashboardSession`]).

use crate::SqliteStore;
use crate::error::{corrupt, map_sqlx};
use crate::row::{get, hash32};
use async_trait::async_trait;
use wagate_core::account::DashboardSession;
use wagate_core::store::{DashboardSessionStore, StoreError, StoreResult};
use wagate_core::time::{Timestamp, from_millis, millis};
use wagate_core::{AccountId, ApiKeyId};

#[async_trait]
impl DashboardSessionStore for SqliteStore {
    async fn create_dashboard_session(&self, session: &DashboardSession) -> StoreResult<()> {
        let session = session.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= ?")
                        .bind(millis(session.created_at))
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    // Inserted only while the key is an active key of the account: the
                    // check and the insert are one statement in the writer's transaction.
                    let done = sqlx::query(
                        "INSERT INTO dashboard_sessions \
                         (token_hash, account_id, api_key_id, created_at, expires_at) \
                         SELECT ?, k.account_id, k.id, ?, ? FROM api_keys k \
                         WHERE k.id = ? AND k.account_id = ? AND k.revoked_at IS NULL",
                    )
                    .bind(session.token_hash.as_slice())
                    .bind(millis(session.created_at))
                    .bind(millis(session.expires_at))
                    .bind(session.api_key_id.as_str())
                    .bind(session.account_id.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn get_dashboard_session(
        &self,
        token_hash: &[u8; 32],
        now: Timestamp,
    ) -> StoreResult<DashboardSession> {
        // The key's state is read with the session, so a key revoked by a store that did
        // not delete its sessions (or by hand) still ends them.
        let row = sqlx::query(
            "SELECT s.token_hash, s.account_id, s.api_key_id, s.created_at, s.expires_at \
             FROM dashboard_sessions s JOIN api_keys k ON k.id = s.api_key_id \
             WHERE s.token_hash = ? AND s.expires_at > ? AND k.revoked_at IS NULL",
        )
        .bind(token_hash.as_slice())
        .bind(millis(now))
        .fetch_optional(&self.read)
        .await
        .map_err(map_sqlx)?
        .ok_or(StoreError::NotFound)?;
        let account: String = get(&row, "account_id")?;
        let key: String = get(&row, "api_key_id")?;
        Ok(DashboardSession {
            token_hash: hash32(&row, "token_hash")?,
            account_id: AccountId::parse(&account).map_err(|_| corrupt("account id", &account))?,
            api_key_id: ApiKeyId::parse(&key).map_err(|_| corrupt("API key id", &key))?,
            created_at: from_millis(get(&row, "created_at")?),
            expires_at: from_millis(get(&row, "expires_at")?),
        })
    }

    async fn delete_dashboard_session(&self, token_hash: &[u8; 32]) -> StoreResult<bool> {
        let token_hash = *token_hash;
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let done = sqlx::query("DELETE FROM dashboard_sessions WHERE token_hash = ?")
                        .bind(token_hash.as_slice())
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    Ok(done.rows_affected() > 0)
                })
            })
            .await
    }

    async fn delete_account_dashboard_sessions(&self, account: &AccountId) -> StoreResult<u64> {
        let account = account.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let done = sqlx::query("DELETE FROM dashboard_sessions WHERE account_id = ?")
                        .bind(account.as_str())
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    Ok(done.rows_affected())
                })
            })
            .await
    }
}
