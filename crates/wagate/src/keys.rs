//! The server's own keys, read (or made) once at start and handed to whoever signs with
//! them: the media-link key (signed `/media/…` links in webhooks, the SSE feed and message
//! replies) and the dashboard secret (CSRF tokens). They live outside `http/` because the
//! webhook dispatcher signs links too, and it must not depend on the edge.
//!
//! Both are 32 random bytes kept as hex under the data directory, so links and CSRF tokens
//! survive restarts; a file is made with `create_new`, so two starters racing agree on one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Every key the server signs with, loaded together at start.
#[derive(Clone, Debug)]
pub struct ServerKeys {
    pub media_link: MediaLinkKey,
    pub dashboard: DashboardSecret,
}

impl ServerKeys {
    /// Reads the keys under `data_dir`, making the missing ones.
    pub fn load(data_dir: &FsPath) -> std::io::Result<Self> {
        Ok(Self {
            media_link: MediaLinkKey::load_or_create(data_dir)?,
            dashboard: DashboardSecret::load_or_create(data_dir)?,
        })
    }
}

const KEY_FILE: &str = "media-link.key";

/// The server key that signs media links (HMAC-SHA256 over `{mediaId}.{expires}`).
#[derive(Clone)]
pub struct MediaLinkKey([u8; 32]);

impl std::fmt::Debug for MediaLinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaLinkKey(…)")
    }
}

impl MediaLinkKey {
    /// Reads the key under `data_dir`, creating it on first use.
    pub fn load_or_create(data_dir: &FsPath) -> std::io::Result<Self> {
        let path: PathBuf = data_dir.join(KEY_FILE);
        if let Some(key) = Self::read(&path)? {
            return Ok(key);
        }
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        // `create_new`: when two starters race, one writes and both read the winner's key.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(hex::encode(key).as_bytes())?;
                f.sync_all()?;
                Ok(Self(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::read(&path)?
                .ok_or_else(|| std::io::Error::other("media link key file is empty")),
            Err(e) => Err(e),
        }
    }

    fn read(path: &FsPath) -> std::io::Result<Option<Self>> {
        match std::fs::read_to_string(path) {
            Ok(s) => {
                let bytes = hex::decode(s.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                    .ok_or_else(|| {
                        std::io::Error::other(format!(
                            "{} is not a 32-byte hex key",
                            path.display()
                        ))
                    })?;
                Ok(Some(Self(bytes)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn mac(&self, media: &str, expires: i64) -> Vec<u8> {
        // HMAC accepts any key length: a 32-byte key cannot be refused.
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(&self.0) else {
            return Vec::new();
        };
        mac.update(media.as_bytes());
        mac.update(b".");
        mac.update(expires.to_string().as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// `{base}/media/{id}?expires=…&signature=…`.
    pub fn link(&self, base: &str, media: &str, expires: i64) -> String {
        let sig = URL_SAFE_NO_PAD.encode(self.mac(media, expires));
        format!(
            "{}/media/{media}?expires={expires}&signature={sig}",
            base.trim_end_matches('/')
        )
    }

    pub fn verify(&self, media: &str, expires: i64, signature: &str) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        bool::from(self.mac(media, expires).ct_eq(&given))
    }
}

const SECRET_FILE: &str = "dashboard-secret";

/// The dashboard's signing secret (CSRF tokens).
#[derive(Clone)]
pub struct DashboardSecret(Arc<[u8; 32]>);

impl std::fmt::Debug for DashboardSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DashboardSecret(…)")
    }
}

impl DashboardSecret {
    /// The secret of `data_dir`, made and persisted (mode 0600) the first time.
    pub fn load_or_create(data_dir: &FsPath) -> std::io::Result<Self> {
        let path = data_dir.join(SECRET_FILE);
        let bytes = match std::fs::read_to_string(&path) {
            Ok(text) => decode_secret(&text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_secret(&path)?,
            Err(e) => return Err(e),
        };
        Ok(Self(Arc::new(bytes)))
    }

    fn mac(&self, purpose: &str, data: &str) -> Vec<u8> {
        // new_from_slice only fails for invalid key lengths, which HMAC does not have.
        let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(self.0.as_slice()) {
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

fn decode_secret(text: &str) -> std::io::Result<[u8; 32]> {
    let raw = hex::decode(text.trim()).map_err(std::io::Error::other)?;
    raw.try_into()
        .map_err(|_| std::io::Error::other("dashboard-secret must be 32 bytes of hex"))
}

fn create_secret(path: &FsPath) -> std::io::Result<[u8; 32]> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_and_tampering_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let key = MediaLinkKey::load_or_create(dir.path()).unwrap();
        let again = MediaLinkKey::load_or_create(dir.path()).unwrap();
        assert_eq!(key.0, again.0, "the key persists");
        let link = key.link("http://x", "med_a", 100);
        let sig = link.split("signature=").nth(1).unwrap();
        assert!(key.verify("med_a", 100, sig));
        assert!(!key.verify("med_b", 100, sig));
        assert!(!key.verify("med_a", 101, sig));
        assert!(!key.verify("med_a", 100, "AAAA"));
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_per_secret() {
        let dir = tempfile::tempdir().unwrap();
        let s = DashboardSecret::load_or_create(dir.path()).unwrap();
        assert_eq!(s.csrf_token("a"), s.csrf_token("a"));
        assert_ne!(s.csrf_token("a"), s.csrf_token("b"));
        // The persisted secret is read back the same; another directory has another.
        let again = DashboardSecret::load_or_create(dir.path()).unwrap();
        assert_eq!(again.csrf_token("a"), s.csrf_token("a"));
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            DashboardSecret::load_or_create(other.path())
                .unwrap()
                .csrf_token("a"),
            s.csrf_token("a")
        );
    }
}
