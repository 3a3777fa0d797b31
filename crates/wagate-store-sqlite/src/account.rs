//! Accounts and their API keys.

use crate::SqliteStore;
use crate::cache::Lookup;
use crate::error::{corrupt, map_sqlx};
use crate::row::{api_key_columns, api_key_from_row, get, hash32};
use async_trait::async_trait;
use wagate_core::account::{Account, ApiKey, ApiKeyCredential, NewApiKey};
use wagate_core::store::{AccountStore, StoreError, StoreResult};
use wagate_core::time::{Timestamp, from_millis, millis};
use wagate_core::{AccountId, ApiKeyId};

fn account_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<Account> {
    let id: String = get(row, "id")?;
    Ok(Account {
        id: AccountId::parse(&id).map_err(|_| corrupt("account id", &id))?,
        name: get(row, "name")?,
        created_at: from_millis(get(row, "created_at")?),
    })
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(&self, account: &Account) -> StoreResult<()> {
        let account = account.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES (?, ?, ?)")
                        .bind(account.id.as_str())
                        .bind(&account.name)
                        .bind(millis(account.created_at))
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    Ok(())
                })
            })
            .await
    }

    async fn get_account(&self, id: &AccountId) -> StoreResult<Account> {
        let row = sqlx::query("SELECT id, name, created_at FROM accounts WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(map_sqlx)?
            .ok_or(StoreError::NotFound)?;
        account_from_row(&row)
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let rows =
            sqlx::query("SELECT id, name, created_at FROM accounts ORDER BY created_at, rowid")
                .fetch_all(&self.read)
                .await
                .map_err(map_sqlx)?;
        rows.iter().map(account_from_row).collect()
    }

    async fn create_api_key(&self, key: &NewApiKey, max_active: usize) -> StoreResult<ApiKey> {
        let key = key.clone();
        let max_active = i64::try_from(max_active).unwrap_or(i64::MAX);
        let result = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    // Counted inside the write transaction, so two concurrent creations
                    // cannot both see room for one more key.
                    let active: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM api_keys WHERE account_id = ? AND revoked_at IS NULL",
                    )
                    .bind(key.account_id.as_str())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    if active >= max_active {
                        return Err(StoreError::Conflict(format!(
                            "the account already has {active} active API keys (at most {max_active})"
                        )));
                    }
                    sqlx::query(
                        "INSERT INTO api_keys (id, account_id, prefix, hash, created_at) \
                         VALUES (?, ?, ?, ?, ?)",
                    )
                    .bind(key.id.as_str())
                    .bind(key.account_id.as_str())
                    .bind(&key.prefix)
                    .bind(key.hash.as_slice())
                    .bind(millis(key.created_at))
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    Ok(ApiKey {
                        id: key.id,
                        account_id: key.account_id,
                        prefix: key.prefix,
                        created_at: key.created_at,
                        revoked_at: None,
                    })
                })
            })
            .await;
        self.api_keys.forget_all();
        result
    }

    async fn list_api_keys(&self, account: &AccountId) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys k WHERE k.account_id = ? ORDER BY k.created_at, k.rowid"
        ))
        .bind(account.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(map_sqlx)?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(
        &self,
        account: &AccountId,
        key: &ApiKeyId,
        at: Timestamp,
    ) -> StoreResult<()> {
        let (account, key) = (account.clone(), key.clone());
        let result = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "UPDATE api_keys SET revoked_at = ? \
                         WHERE id = ? AND account_id = ? AND revoked_at IS NULL",
                    )
                    .bind(millis(at))
                    .bind(key.as_str())
                    .bind(account.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(map_sqlx)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::NotFound);
                    }
                    // Every dashboard session opened with the key ends with it.
                    sqlx::query("DELETE FROM dashboard_sessions WHERE api_key_id = ?")
                        .bind(key.as_str())
                        .execute(&mut *conn)
                        .await
                        .map_err(map_sqlx)?;
                    Ok(())
                })
            })
            .await;
        self.api_keys.forget_all();
        result
    }

    async fn find_api_keys_by_prefix(&self, prefix: &str) -> StoreResult<Vec<ApiKeyCredential>> {
        let generation = match self.api_keys.lookup(&prefix.to_owned()) {
            Lookup::Hit(keys) => return Ok(keys),
            Lookup::Miss(generation) => generation,
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            ", k.hash FROM api_keys k WHERE k.prefix = ? AND k.revoked_at IS NULL \
             ORDER BY k.created_at, k.rowid"
        ))
        .bind(prefix)
        .fetch_all(&self.read)
        .await
        .map_err(map_sqlx)?;
        let keys = rows
            .iter()
            .map(|row| {
                Ok(ApiKeyCredential {
                    key: api_key_from_row(row)?,
                    hash: hash32(row, "hash")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // Unknown prefixes are not kept: guessing keys must not fill the cache.
        if !keys.is_empty() {
            self.api_keys
                .store(prefix.to_owned(), keys.clone(), generation);
        }
        Ok(keys)
    }
}
