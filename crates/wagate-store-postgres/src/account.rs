//! Accounts and their API keys.

use crate::PgStore;
use crate::cache::Lookup;
use crate::error::{corrupt, map_sqlx};
use crate::row::{api_key_columns, api_key_from_row, get, hash32};
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use wagate_core::account::{Account, ApiKey, ApiKeyCredential, NewApiKey};
use wagate_core::store::{AccountStore, StoreError, StoreResult};
use wagate_core::time::{Timestamp, from_millis, millis};
use wagate_core::{AccountId, ApiKeyId};

fn account_from_row(row: &PgRow) -> StoreResult<Account> {
    let id: String = get(row, "id")?;
    Ok(Account {
        id: AccountId::parse(&id).map_err(|_| corrupt("account id", &id))?,
        name: get(row, "name")?,
        created_at: from_millis(get(row, "created_at")?),
    })
}

#[async_trait]
impl AccountStore for PgStore {
    async fn create_account(&self, account: &Account) -> StoreResult<()> {
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(account.id.as_str())
            .bind(&account.name)
            .bind(millis(account.created_at))
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    async fn get_account(&self, id: &AccountId) -> StoreResult<Account> {
        let row = sqlx::query("SELECT id, name, created_at FROM accounts WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?
            .ok_or(StoreError::NotFound)?;
        account_from_row(&row)
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let rows =
            sqlx::query("SELECT id, name, created_at FROM accounts ORDER BY created_at, ord")
                .fetch_all(&self.pool)
                .await
                .map_err(map_sqlx)?;
        rows.iter().map(account_from_row).collect()
    }

    async fn create_api_key(&self, key: &NewApiKey, max_active: usize) -> StoreResult<ApiKey> {
        let max_active = i64::try_from(max_active).unwrap_or(i64::MAX);
        let mut tx = self.begin().await?;
        // The account's row lock makes concurrent creations take turns, so two cannot both
        // see room for one more key; it also tells a missing account apart.
        sqlx::query_scalar::<_, String>("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(key.account_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_sqlx)?
            .ok_or(StoreError::NotFound)?;
        let active: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE account_id = $1 AND revoked_at IS NULL",
        )
        .bind(key.account_id.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        if active >= max_active {
            return Err(StoreError::Conflict(format!(
                "the account already has {active} active API keys (at most {max_active})"
            )));
        }
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, prefix, hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(key.id.as_str())
        .bind(key.account_id.as_str())
        .bind(&key.prefix)
        .bind(key.hash.as_slice())
        .bind(millis(key.created_at))
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        self.commit(tx, None).await?;
        self.api_keys.forget_all();
        Ok(ApiKey {
            id: key.id.clone(),
            account_id: key.account_id.clone(),
            prefix: key.prefix.clone(),
            created_at: key.created_at,
            revoked_at: None,
        })
    }

    async fn list_api_keys(&self, account: &AccountId) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys k WHERE k.account_id = $1 ORDER BY k.created_at, k.ord"
        ))
        .bind(account.as_str())
        .fetch_all(&self.pool)
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
        // One statement: the key and every dashboard session opened with it end together.
        let revoked: Option<String> = sqlx::query_scalar(
            "WITH k AS ( \
                UPDATE api_keys SET revoked_at = $1 \
                WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL RETURNING id \
             ), s AS ( \
                DELETE FROM dashboard_sessions WHERE api_key_id IN (SELECT id FROM k) \
             ) SELECT id FROM k",
        )
        .bind(millis(at))
        .bind(key.as_str())
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?;
        self.api_keys.forget_all();
        revoked.map(|_| ()).ok_or(StoreError::NotFound)
    }

    async fn find_api_keys_by_prefix(&self, prefix: &str) -> StoreResult<Vec<ApiKeyCredential>> {
        let generation = match self.api_keys.lookup(prefix) {
            Lookup::Hit(keys) => return Ok(keys),
            Lookup::Miss(generation) => generation,
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            ", k.hash FROM api_keys k WHERE k.prefix = $1 AND k.revoked_at IS NULL \
             ORDER BY k.created_at, k.ord"
        ))
        .bind(prefix)
        .fetch_all(&self.pool)
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
