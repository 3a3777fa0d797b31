//! Dashboard sessions: signing in with an API key opens a session kept in the store, so
//! signing out, "end all my sessions" and revoking the key end it at once (a signed
//! cookie alone would stay valid until it expired).
//!
//! The cookie carries a random 256-bit token; the store keeps only its SHA-256, so
//! reading the database does not give anyone a usable cookie.

use super::{AccountService, ServiceResult};
use crate::keys::DashboardSecret;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use wagate_core::account::DashboardSession;
use wagate_core::store::{Store, StoreError};
use wagate_core::{AccountId, ApiKeyId, time};

/// How long a session lasts from sign-in; there is no sliding renewal, so a stolen
/// cookie is useful for at most this long (or until its owner signs out).
pub const SESSION_TTL_SECS: i64 = 12 * 60 * 60;
/// Bytes of randomness in a token (hex in the cookie).
const TOKEN_BYTES: usize = 32;

/// A session just opened: the token exists only here and in the browser's cookie.
#[derive(Debug, Clone)]
pub struct OpenedSession {
    pub token: String,
    pub account: AccountId,
}

/// Who a live session's cookie signs in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    pub account: AccountId,
    pub key: ApiKeyId,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether a string has the shape of a token, so garbage cookies skip the database.
fn looks_like_token(s: &str) -> bool {
    s.len() == TOKEN_BYTES * 2
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Opens a session for a valid, active API key; `None` for any other secret.
async fn sign_in(
    store: &dyn Store,
    accounts: &AccountService,
    api_key: &str,
) -> ServiceResult<Option<OpenedSession>> {
    let Some(account) = accounts.authenticate(api_key).await? else {
        return Ok(None);
    };
    // authenticate() says whose key it is; the row is the active one with its prefix.
    let keys = accounts.list_keys(&account).await?;
    let Some(key) = keys
        .into_iter()
        .find(|k| k.revoked_at.is_none() && api_key.starts_with(&k.prefix))
    else {
        return Ok(None);
    };
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let now = time::now();
    let session = DashboardSession {
        token_hash: token_hash(&token),
        account_id: account.clone(),
        api_key_id: key.id,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(SESSION_TTL_SECS),
    };
    match store.create_dashboard_session(&session).await {
        Ok(()) => Ok(Some(OpenedSession { token, account })),
        // The key was revoked between the check and the insert.
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The owner of a live session; `None` when the token is unknown, ended or expired.
async fn resolve(store: &dyn Store, token: &str) -> ServiceResult<Option<SessionOwner>> {
    if !looks_like_token(token) {
        return Ok(None);
    }
    match store
        .get_dashboard_session(&token_hash(token), time::now())
        .await
    {
        Ok(s) => Ok(Some(SessionOwner {
            account: s.account_id,
            key: s.api_key_id,
        })),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Ends one session (sign-out). Ending an unknown or already ended one is not an error.
async fn sign_out(store: &dyn Store, token: &str) -> ServiceResult<()> {
    if looks_like_token(token) {
        store.delete_dashboard_session(&token_hash(token)).await?;
    }
    Ok(())
}

/// Ends every session of the account, in every browser; how many there were.
async fn end_all(store: &dyn Store, account: &AccountId) -> ServiceResult<u64> {
    Ok(store.delete_account_dashboard_sessions(account).await?)
}

/// Dashboard sessions and their CSRF tokens.
#[derive(Clone)]
pub struct SessionService {
    store: Arc<dyn Store>,
    accounts: AccountService,
    secret: DashboardSecret,
    /// The configured public URL is `https://`: cookies are Secure even when the request
    /// did not say it came over TLS.
    public_https: bool,
}

impl SessionService {
    pub fn new(
        store: Arc<dyn Store>,
        accounts: AccountService,
        secret: DashboardSecret,
        public_url: &str,
    ) -> Self {
        Self {
            store,
            accounts,
            secret,
            public_https: public_url.starts_with("https://"),
        }
    }

    /// Whether the server's public URL is `https://`.
    pub fn public_url_is_https(&self) -> bool {
        self.public_https
    }

    /// Opens a session for a valid, active API key; `None` for any other secret.
    pub async fn sign_in(&self, api_key: &str) -> ServiceResult<Option<OpenedSession>> {
        sign_in(self.store.as_ref(), &self.accounts, api_key).await
    }

    /// The owner of a live session; `None` when the token is unknown, ended or expired.
    pub async fn resolve(&self, token: &str) -> ServiceResult<Option<SessionOwner>> {
        resolve(self.store.as_ref(), token).await
    }

    /// Ends one session (sign-out); an unknown or ended one is not an error.
    pub async fn sign_out(&self, token: &str) -> ServiceResult<()> {
        sign_out(self.store.as_ref(), token).await
    }

    /// Ends every session of the account, in every browser; how many there were.
    pub async fn end_all(&self, account: &AccountId) -> ServiceResult<u64> {
        end_all(self.store.as_ref(), account).await
    }

    /// The CSRF token of a session (or sign-in) cookie.
    pub fn csrf_token(&self, cookie: &str) -> String {
        self.secret.csrf_token(cookie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_tokens_reach_the_store() {
        assert!(looks_like_token(&"ab".repeat(32)));
        assert!(!looks_like_token(&"AB".repeat(32)));
        assert!(!looks_like_token("abc"));
        assert_ne!(token_hash("a"), token_hash("b"));
    }
}
