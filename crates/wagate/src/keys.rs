//! The server's own keys, read (or made) once at start and handed to whoever signs with
//! them: the media-link key (signed `/media/…` links in webhooks, the SSE feed and message
//! replies), the dashboard secret (CSRF tokens) and the cluster key (calls one node
//! forwards to another). They live outside `http/` because the webhook dispatcher signs
//! links too, and it must not depend on the edge.
//!
//! Each is 32 random bytes kept in the database ([`ServerKeyStore`]), so that every node
//! of a cluster signs and verifies with the same key: a media link from a webhook sent by
//! one node opens on any other, a dashboard form served by one is accepted by another.
//! The media-link key and dashboard secret were files under the data directory before;
//! such a file is the candidate stored the first time, so links and CSRF tokens made
//! before survive the move (and the files are still made, with `create_new`, so two
//! starters racing agree on one).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use wagate_core::store::{ServerKeyStore, StoreError};

/// Every key the server signs with, loaded together at start.
#[derive(Clone, Debug)]
pub struct ServerKeys {
    pub media_link: MediaLinkKey,
    pub dashboard: DashboardSecret,
    pub cluster: ClusterKey,
}

impl ServerKeys {
    /// The keys stored in the database, storing this data directory's (or new random
    /// ones) the first time.
    pub async fn load(data_dir: &FsPath, store: &dyn ServerKeyStore) -> Result<Self, KeyError> {
        let media = MediaLinkKey::load_or_create(data_dir)?;
        let dashboard = DashboardSecret::load_or_create(data_dir)?;
        let mut cluster = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut cluster);
        Ok(Self {
            media_link: MediaLinkKey(store.server_key("media-link", &media.0).await?),
            dashboard: DashboardSecret(Arc::new(
                store.server_key("dashboard", &dashboard.0).await?,
            )),
            cluster: ClusterKey(Arc::new(store.server_key("cluster", &cluster).await?)),
        })
    }
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    File(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
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

/// How far a forwarded call's timestamp may be from the receiver's clock: the nodes'
/// clocks agree within a fraction of a lease (NTP), and a captured call replays for no
/// longer than this.
pub const CLUSTER_CALL_SKEW_MS: i64 = 60_000;

/// The key with which nodes sign the calls they forward to each other (HMAC-SHA256 over
/// the sending time and the body), so that a node's internal endpoint answers only other
/// nodes of its cluster.
#[derive(Clone)]
pub struct ClusterKey(Arc<[u8; 32]>);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(…)")
    }
}

impl ClusterKey {
    fn mac(&self, at_ms: i64, body: &[u8]) -> Vec<u8> {
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(self.0.as_slice()) else {
            return Vec::new();
        };
        mac.update(b"wagate-cluster-call|");
        mac.update(at_ms.to_string().as_bytes());
        mac.update(b"|");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// The signature of a call sent at `at_ms` (ms since epoch) with `body`.
    pub fn sign(&self, at_ms: i64, body: &[u8]) -> String {
        hex::encode(self.mac(at_ms, body))
    }

    /// Whether `signature` is this key's for the call, sent within
    /// [`CLUSTER_CALL_SKEW_MS`] of `now_ms`.
    pub fn verify(&self, at_ms: i64, body: &[u8], signature: &str, now_ms: i64) -> bool {
        if now_ms.abs_diff(at_ms) > CLUSTER_CALL_SKEW_MS.unsigned_abs() {
            return false;
        }
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        bool::from(self.mac(at_ms, body).ct_eq(&given))
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
    fn cluster_calls_verify_only_fresh_and_untampered() {
        let key = ClusterKey(Arc::new([7u8; 32]));
        let sig = key.sign(1_000_000, b"{}");
        assert!(key.verify(1_000_000, b"{}", &sig, 1_000_000 + 59_000));
        assert!(
            !key.verify(1_000_000, b"{ }", &sig, 1_000_000),
            "body changed"
        );
        assert!(
            !key.verify(1_000_001, b"{}", &sig, 1_000_000),
            "time changed"
        );
        assert!(
            !key.verify(1_000_000, b"{}", &sig, 1_000_000 + 61_000),
            "too old"
        );
        assert!(
            !key.verify(1_000_000, b"{}", &sig, 1_000_000 - 61_000),
            "from the future"
        );
        assert!(!key.verify(1_000_000, b"{}", "zz", 1_000_000));
        let other = ClusterKey(Arc::new([8u8; 32]));
        assert!(
            !other.verify(1_000_000, b"{}", &sig, 1_000_000),
            "another cluster"
        );
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
