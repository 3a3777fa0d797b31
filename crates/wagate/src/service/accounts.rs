//! Accounts and API keys: keys are `wak_` + 32 lowercase hex, shown once, stored as a
//! SHA-256 hash beside a public prefix, and compared in constant time.

use super::{ServiceError, ServiceResult};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use wagate_core::account::{Account, ApiKey, MAX_ACTIVE_API_KEYS, NewApiKey};
use wagate_core::device::Device;
use wagate_core::store::{Store, StoreError};
use wagate_core::{AccountId, ApiKeyId, DeviceUid, time};

const KEY_PREFIX: &str = "wak_";
/// Characters of a key kept in clear to find its row: `wak_` + 8 hex.
const PUBLIC_PREFIX_LEN: usize = 12;

/// A freshly made key: the secret exists only here.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key: ApiKey,
    pub secret: String,
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn generate_secret() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// Whether a string has the shape of an API key (so malformed ones skip the database).
pub fn looks_like_key(s: &str) -> bool {
    s.len() == KEY_PREFIX.len() + 32
        && s.starts_with(KEY_PREFIX)
        && s[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub async fn create_account(store: &dyn Store, name: &str) -> ServiceResult<(Account, IssuedKey)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ServiceError::Invalid(
            "name".into(),
            "must be 1 to 100 characters".into(),
        ));
    }
    wagate_core::text::check_name(name).map_err(|m| ServiceError::Invalid("name".into(), m))?;
    let account = Account {
        id: AccountId::new(),
        name: name.to_owned(),
        created_at: time::now(),
    };
    store.create_account(&account).await?;
    let key = create_key(store, &account.id).await?;
    Ok((account, key))
}

pub async fn create_key(store: &dyn Store, account: &AccountId) -> ServiceResult<IssuedKey> {
    let secret = generate_secret();
    let new = NewApiKey {
        id: ApiKeyId::new(),
        account_id: account.clone(),
        prefix: secret[..PUBLIC_PREFIX_LEN].to_owned(),
        hash: hash(&secret),
        created_at: time::now(),
    };
    match store.create_api_key(&new, MAX_ACTIVE_API_KEYS).await {
        Ok(key) => Ok(IssuedKey { key, secret }),
        Err(StoreError::Conflict(_)) => Err(ServiceError::Conflict(format!(
            "an account may have at most {MAX_ACTIVE_API_KEYS} active API keys; revoke one first"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The account a key belongs to, if the key is valid and not revoked.
pub async fn authenticate(store: &dyn Store, secret: &str) -> ServiceResult<Option<AccountId>> {
    if !looks_like_key(secret) {
        return Ok(None);
    }
    let presented = hash(secret);
    let candidates = store
        .find_api_keys_by_prefix(&secret[..PUBLIC_PREFIX_LEN])
        .await?;
    let mut found = None;
    for c in candidates {
        // Constant-time comparison: the time taken says nothing about how much of the
        // hash matched. Every candidate is compared, match or not.
        if bool::from(c.hash.ct_eq(&presented)) && c.key.revoked_at.is_none() {
            found = Some(c.key.account_id.clone());
        }
    }
    Ok(found)
}

/// The account, or `NotFound("account")`.
pub async fn get_account(store: &dyn Store, id: &AccountId) -> ServiceResult<Account> {
    match store.get_account(id).await {
        Err(StoreError::NotFound) => Err(ServiceError::NotFound("account")),
        other => Ok(other?),
    }
}

/// Every account, oldest first.
pub async fn list_accounts(store: &dyn Store) -> ServiceResult<Vec<Account>> {
    Ok(store.list_accounts().await?)
}

pub async fn list_keys(store: &dyn Store, account: &AccountId) -> ServiceResult<Vec<ApiKey>> {
    Ok(store.list_api_keys(account).await?)
}

pub async fn revoke_key(
    store: &dyn Store,
    account: &AccountId,
    key: &ApiKeyId,
) -> ServiceResult<()> {
    match store.revoke_api_key(account, key, time::now()).await {
        Err(StoreError::NotFound) => Err(ServiceError::NotFound("API key")),
        other => Ok(other?),
    }
}

/// Accounts, their API keys, and authenticating the callers of both dialects.
#[derive(Clone)]
pub struct AccountService {
    store: Arc<dyn Store>,
}

impl AccountService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// A new account (name checked like a device's) with its first API key.
    pub async fn create_account(&self, name: &str) -> ServiceResult<(Account, IssuedKey)> {
        create_account(self.store.as_ref(), name).await
    }

    pub async fn get_account(&self, id: &AccountId) -> ServiceResult<Account> {
        get_account(self.store.as_ref(), id).await
    }

    pub async fn list_accounts(&self) -> ServiceResult<Vec<Account>> {
        list_accounts(self.store.as_ref()).await
    }

    /// A new API key for the account, within [`MAX_ACTIVE_API_KEYS`].
    pub async fn create_key(&self, account: &AccountId) -> ServiceResult<IssuedKey> {
        create_key(self.store.as_ref(), account).await
    }

    pub async fn list_keys(&self, account: &AccountId) -> ServiceResult<Vec<ApiKey>> {
        list_keys(self.store.as_ref(), account).await
    }

    pub async fn revoke_key(&self, account: &AccountId, key: &ApiKeyId) -> ServiceResult<()> {
        revoke_key(self.store.as_ref(), account, key).await
    }

    /// The account an API key belongs to, if the key is valid and not revoked (Msgera's
    /// `X-API-Key`).
    pub async fn authenticate(&self, secret: &str) -> ServiceResult<Option<AccountId>> {
        authenticate(self.store.as_ref(), secret).await
    }

    /// The device whose instance token `token` is (MegaMsg's `Authorization: Bearer` with
    /// `X-Instance-Id`); `None` for an unknown device or a wrong or rotated-away token,
    /// alike. Only the token's SHA-256 is stored; it is compared in constant time.
    pub async fn authenticate_instance(
        &self,
        uid: &DeviceUid,
        token: &str,
    ) -> ServiceResult<Option<Device>> {
        let presented = super::devices::instance_token_hash(token);
        match self.store.get_instance_credential(uid).await {
            Ok((device, stored)) if bool::from(presented.ct_eq(&stored)) => Ok(Some(device)),
            Ok(_) | Err(StoreError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let k = generate_secret();
        assert!(looks_like_key(&k), "{k}");
        assert!(!looks_like_key("wak_ABC"));
        assert!(!looks_like_key(&k.to_uppercase()));
        assert_ne!(generate_secret(), k);
    }
}
