//! Dashboard sessions: rows keyed by the SHA-256 of the cookie's token, so signing out,
//! ending every session or revoking the key ends a session at once (see
//! [`wagate_core::account::DashboardSession`]).

use crate::PgStore;
use crate::error::{corrupt, map_sqlx};
use crate::row::{get, hash32};
use async_trait::async_trait;
use wagate_core::account::DashboardSession;
use wagate_core::store::{DashboardSessionStore, StoreError, StoreResult};
use wagate_core::time::{Timestamp, from_millis, millis};
use wagate_core::{AccountId, ApiKeyId};

#[async_trait]
impl DashboardSessionStore for PgStore {
    async fn create_dashboard_session(&self, session: &DashboardSession) -> StoreResult<()> {
        // One statement: expired sessions are purged on the way, and the session is
        // inserted only while its key is an active key of the account. The key's row is
        // locked (`FOR SHARE`), so a revocation racing this either commits first (and
        // nothing is inserted) or waits for this insert; a session it then leaves behind
        // is refused all the same, because reading a session checks its key.
        let inserted: Option<i32> = sqlx::query_scalar(
            "WITH purged AS (DELETE FROM dashboard_sessions WHERE expires_at <= $2), \
             k AS ( \
                SELECT id, account_id FROM api_keys \
                WHERE id = $4 AND account_id = $5 AND revoked_at IS NULL FOR SHARE \
             ), ins AS ( \
                INSERT INTO dashboard_sessions \
                (token_hash, account_id, api_key_id, created_at, expires_at) \
                SELECT $1, k.account_id, k.id, $2, $3 FROM k RETURNING 1 \
             ) SELECT 1 FROM ins",
        )
        .bind(session.token_hash.as_slice())
        .bind(millis(session.created_at))
        .bind(millis(session.expires_at))
        .bind(session.api_key_id.as_str())
        .bind(session.account_id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?;
        inserted.map(|_| ()).ok_or(StoreError::NotFound)
    }

    async fn get_dashboard_session(
        &self,
        token_hash: &[u8; 32],
        now: Timestamp,
    ) -> StoreResult<DashboardSession> {
        // The key's state is read with the session, so a key revoked by hand (without
        // deleting its sessions) still ends them.
        let row = sqlx::query(
            "SELECT s.token_hash, s.account_id, s.api_key_id, s.created_at, s.expires_at \
             FROM dashboard_sessions s JOIN api_keys k ON k.id = s.api_key_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND k.revoked_at IS NULL",
        )
        .bind(token_hash.as_slice())
        .bind(millis(now))
        .fetch_optional(&self.pool)
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
        let done = sqlx::query("DELETE FROM dashboard_sessions WHERE token_hash = $1")
            .bind(token_hash.as_slice())
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_account_dashboard_sessions(&self, account: &AccountId) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM dashboard_sessions WHERE account_id = $1")
            .bind(account.as_str())
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(done.rows_affected())
    }
}
