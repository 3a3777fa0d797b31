//! Dashboard sessions: a stateless cookie signed with HMAC-SHA256 under a secret kept in
//! the data directory (`dashboard-secret`, created on first use, mode 0600).
//!
//! The cookie names the account and the API key that signed in, and when the session
//! ends. It holds no secret: a request is accepted only while the signature verifies,
//! the expiry is in the future and the key is still active, so revoking the key ends
//! every session it opened. The CSRF token is derived from the cookie, so it is
//! different per session and cannot be guessed without the secret.

use crate::service::accounts;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
use wagate_core::store::Store;
use wagate_core::{AccountId, ApiKeyId};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "wagate_session";
/// Name of the cookie that carries the sign-in form's CSRF token (before a session exists).
pub const SIGNIN_COOKIE: &str = "wagate_signin";
/// How long a session lasts from sign-in; there is no sliding renewal, so a stolen
/// cookie is useful for at most this long.
pub const SESSION_TTL_SECS: i64 = 12 * 60 * 60;
const SECRET_FILE: &str = "dashboard-secret";

/// The signing secret of a data directory.
#[derive(Clone)]
pub struct Secret(Arc<[u8; 32]>);

/// Secrets already read, per data directory: several apps may share a process (tests).
static SECRETS: Mutex<Option<HashMap<PathBuf, Secret>>> = Mutex::new(None);

/// The secret of `data_dir`, made and persisted the first time.
pub fn load_secret(data_dir: &Path) -> std::io::Result<Secret> {
    let mut guard = SECRETS
        .lock()
        .map_err(|_| std::io::Error::other("secret cache poisoned"))?;
    let cache = guard.get_or_insert_with(HashMap::new);
    if let Some(s) = cache.get(data_dir) {
        return Ok(s.clone());
    }
    let path = data_dir.join(SECRET_FILE);
    let bytes = match std::fs::read_to_string(&path) {
        Ok(text) => decode_secret(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_secret(&path)?,
        Err(e) => return Err(e),
    };
    let secret = Secret(Arc::new(bytes));
    cache.insert(data_dir.to_path_buf(), secret.clone());
    Ok(secret)
}

fn decode_secret(text: &str) -> std::io::Result<[u8; 32]> {
    let raw = hex::decode(text.trim()).map_err(std::io::Error::other)?;
    raw.try_into()
        .map_err(|_| std::io::Error::other("dashboard-secret must be 32 bytes of hex"))
}

fn create_secret(path: &Path) -> std::io::Result<[u8; 32]> {
    use std::io::Write;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let mut options = std::fs::OpenOptions::new();
    // create_new: if another process made it first, read theirs instead of overwriting.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(hex::encode(bytes).as_bytes())?;
            f.sync_all()?;
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            decode_secret(&std::fs::read_to_string(path)?)
        }
        Err(e) => Err(e),
    }
}

impl Secret {
    fn mac(&self, purpose: &str, data: &str) -> Vec<u8> {
        // new_from_slice only fails for invalid key lengths, which HMAC does not have.
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.0.as_slice()) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        };
        mac.update(purpose.as_bytes());
        mac.update(b"|");
        mac.update(data.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// A session cookie value for a key of an account, ending at `expires_at` (unix secs).
    pub fn seal(&self, account: &AccountId, key: &ApiKeyId, expires_at: i64) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let payload = format!("v1.{account}.{key}.{expires_at}.{}", hex::encode(nonce));
        let mac = hex::encode(self.mac("session", &payload));
        format!("{payload}.{mac}")
    }

    /// The CSRF token of a session cookie.
    pub fn csrf_token(&self, cookie: &str) -> String {
        hex::encode(self.mac("csrf", cookie))
    }

    /// Verifies a cookie's signature and expiry: the account and key it names.
    pub fn open(&self, cookie: &str, now: i64) -> Option<(AccountId, ApiKeyId)> {
        let (payload, mac) = cookie.rsplit_once('.')?;
        let mac = hex::decode(mac).ok()?;
        if !bool::from(self.mac("session", payload).ct_eq(&mac)) {
            return None;
        }
        let mut parts = payload.split('.');
        let (Some("v1"), Some(account), Some(key), Some(exp), Some(_nonce), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let exp: i64 = exp.parse().ok()?;
        if exp <= now {
            return None;
        }
        Some((AccountId::parse(account).ok()?, ApiKeyId::parse(key).ok()?))
    }
}

/// Constant-time comparison of two tokens.
pub fn tokens_match(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The key a presented API key secret is, if valid: its account and id.
pub async fn sign_in_key(
    store: &dyn Store,
    secret: &str,
) -> Result<Option<(AccountId, ApiKeyId)>, crate::service::ServiceError> {
    let Some(account) = accounts::authenticate(store, secret).await? else {
        return Ok(None);
    };
    // authenticate() says whose key it is; the row is the active one with its prefix.
    let keys = accounts::list_keys(store, &account).await?;
    Ok(keys
        .into_iter()
        .find(|k| k.revoked_at.is_none() && secret.starts_with(&k.prefix))
        .map(|k| (account, k.id)))
}

/// Whether the key that opened a session is still active.
pub async fn key_active(
    store: &dyn Store,
    account: &AccountId,
    key: &ApiKeyId,
) -> Result<bool, crate::service::ServiceError> {
    let keys = accounts::list_keys(store, account).await?;
    Ok(keys.iter().any(|k| &k.id == key && k.revoked_at.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_verify_expire_and_resist_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let s = load_secret(dir.path()).unwrap();
        let acc = AccountId::new();
        let key = ApiKeyId::new();
        let c = s.seal(&acc, &key, 2_000);
        assert_eq!(s.open(&c, 1_000), Some((acc.clone(), key.clone())));
        assert_eq!(s.open(&c, 2_000), None, "expired");
        let tampered = c.replacen("2000", "9000", 1);
        assert_eq!(s.open(&tampered, 1_000), None);
        assert_ne!(s.csrf_token(&c), s.csrf_token(&s.seal(&acc, &key, 2_000)));
        // The persisted secret is read back the same.
        let other = tempfile::tempdir().unwrap();
        assert_eq!(load_secret(other.path()).unwrap().open(&c, 1_000), None);
    }
}
