//! The dashboard's cookies and CSRF tokens. The session cookie carries the random token
//! of a session kept in the store ([`crate::service::sessions`]), so it is only as good
//! as that row: signing out, ending every session or revoking the key ends it at once.
//!
//! The CSRF token is an HMAC of the cookie under a secret kept in the data directory
//! (`dashboard-secret`, created on first use, mode 0600), so it is different per session
//! and cannot be derived from the cookie without the secret.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "wagate_session";
/// Name of the cookie that carries the sign-in form's CSRF token (before a session exists).
pub const SIGNIN_COOKIE: &str = "wagate_signin";
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

    /// The CSRF token of a session cookie.
    pub fn csrf_token(&self, cookie: &str) -> String {
        hex::encode(self.mac("csrf", cookie))
    }
}

/// Constant-time comparison of two tokens.
pub fn tokens_match(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_differ_per_session_and_per_secret() {
        let dir = tempfile::tempdir().unwrap();
        let s = load_secret(dir.path()).unwrap();
        assert_eq!(s.csrf_token("a"), s.csrf_token("a"));
        assert_ne!(s.csrf_token("a"), s.csrf_token("b"));
        // The persisted secret is read back the same; another directory has another.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            load_secret(other.path()).unwrap().csrf_token("a"),
            s.csrf_token("a")
        );
        assert!(tokens_match("x", "x"));
        assert!(!tokens_match("", ""));
    }
}
