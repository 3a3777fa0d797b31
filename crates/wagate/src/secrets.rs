//! Encryption at rest for what devices sign in with (a Cloud API number's access token,
//! app secret and verify token): a copy of the database, a backup or a PostgreSQL dump
//! does not give them away.
//!
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`: an audited AEAD whose 24-byte
//! nonces are safe to choose at random, so no counter has to be kept across nodes) under
//! a 32-byte key that is *not* in the database: `secrets_key` (`WAGATE_SECRETS_KEY`,
//! base64) or, without one, a `secrets.key` file made in the data directory on first use.
//! Every node of a cluster must be given the same `secrets_key`. The device's uid is the
//! associated data, so a sealed row copied onto another device does not open.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use std::io::Write;
use std::path::Path;
use wagate_core::DeviceUid;
use wagate_core::credentials::CloudApiCredentials;

const NONCE: usize = 24;
const FILE: &str = "secrets.key";

/// The key device secrets are sealed with. `Debug` never shows it.
#[derive(Clone)]
pub struct SecretsKey([u8; 32]);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(…)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets_key must be 32 bytes in base64 (e.g. from `openssl rand -base64 32`)")]
    BadKey,
    #[error("the secrets key file {0}: {1}")]
    File(String, std::io::Error),
    /// Sealed under another key, for another device, or altered.
    #[error("a device secret could not be opened (another secrets_key, or altered)")]
    Sealed,
}

impl SecretsKey {
    /// The configured key, or the data directory's (made, readable by its owner only,
    /// the first time).
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<Self, SecretsError> {
        if let Some(b64) = configured {
            return Self::from_base64(b64.trim());
        }
        let path = data_dir.join(FILE);
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(s) => return Self::from_base64(s.trim()),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(SecretsError::File(shown, e));
            }
            Err(_) => {}
        }
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut f) => {
                f.write_all(STANDARD.encode(key).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| SecretsError::File(shown, e))?;
                Ok(Self(key))
            }
            // Another starter made it first: theirs is the key.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let s = std::fs::read_to_string(&path).map_err(|e| SecretsError::File(shown, e))?;
                Self::from_base64(s.trim())
            }
            Err(e) => Err(SecretsError::File(shown, e)),
        }
    }

    fn from_base64(s: &str) -> Result<Self, SecretsError> {
        let bytes = STANDARD.decode(s).map_err(|_| SecretsError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretsError::BadKey)?;
        Ok(Self(key))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// `plain` sealed for `device`: a random nonce, then the ciphertext with its tag.
    pub fn seal(&self, device: &DeviceUid, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        rand::thread_rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plain,
            aad: device.as_str().as_bytes(),
        };
        let mut out = nonce.to_vec();
        // Encryption fails only for inputs of more than 256 GiB.
        match self.cipher().encrypt(XNonce::from_slice(&nonce), payload) {
            Ok(ct) => out.extend(ct),
            Err(_) => unreachable!("XChaCha20-Poly1305 seals any input under 256 GiB"),
        }
        out
    }

    /// What [`Self::seal`] sealed for `device`.
    pub fn open(&self, device: &DeviceUid, sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
        if sealed.len() < NONCE {
            return Err(SecretsError::Sealed);
        }
        let (nonce, ct) = sealed.split_at(NONCE);
        let payload = Payload {
            msg: ct,
            aad: device.as_str().as_bytes(),
        };
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| SecretsError::Sealed)
    }
}

/// What a device's sealed secret holds, as JSON (named, so other kinds of device can keep
/// theirs in the same row later).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceSecret {
    cloud_api: CloudApiCredentials,
}

impl SecretsKey {
    /// A Cloud API device's credentials, sealed for it.
    pub fn seal_cloud_api(&self, device: &DeviceUid, creds: &CloudApiCredentials) -> Vec<u8> {
        let secret = DeviceSecret {
            cloud_api: creds.clone(),
        };
        // Serializing plain strings cannot fail.
        let plain = serde_json::to_vec(&secret).unwrap_or_default();
        self.seal(device, &plain)
    }

    /// What [`Self::seal_cloud_api`] sealed.
    pub fn open_cloud_api(
        &self,
        device: &DeviceUid,
        sealed: &[u8],
    ) -> Result<CloudApiCredentials, SecretsError> {
        let plain = self.open(device, sealed)?;
        serde_json::from_slice::<DeviceSecret>(&plain)
            .map(|s| s.cloud_api)
            .map_err(|_| SecretsError::Sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_for_their_device_under_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretsKey::load(None, dir.path()).unwrap();
        let again = SecretsKey::load(None, dir.path()).unwrap();
        let a = DeviceUid::new();
        let b = DeviceUid::new();
        let sealed = key.seal(&a, b"EAAG-token");
        assert!(
            !sealed.windows(10).any(|w| w == b"EAAG-token"),
            "not in the clear"
        );
        assert_eq!(
            again.open(&a, &sealed).unwrap(),
            b"EAAG-token",
            "the file's key is kept"
        );
        assert!(key.open(&b, &sealed).is_err(), "another device's row");
        let other = SecretsKey::load(Some(&STANDARD.encode([7u8; 32])), dir.path()).unwrap();
        assert!(other.open(&a, &sealed).is_err(), "another key");
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key.open(&a, &altered).is_err(), "altered");
        assert!(key.open(&a, b"short").is_err());
        assert_ne!(
            key.seal(&a, b"x"),
            key.seal(&a, b"x"),
            "a fresh nonce each time"
        );
        assert!(matches!(
            SecretsKey::load(Some("c2hvcnQ="), dir.path()),
            Err(SecretsError::BadKey)
        ));
        assert_eq!(format!("{key:?}"), "SecretsKey(…)");
    }

    #[test]
    fn cloud_api_credentials_round_trip_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretsKey::load(None, dir.path()).unwrap();
        let d = DeviceUid::new();
        let creds = CloudApiCredentials {
            phone_number_id: "1055".into(),
            access_token: "EAAG-secret".into(),
            app_secret: "app-secret".into(),
            verify_token: "verify-me".into(),
            business_account_id: Some("77".into()),
        };
        let sealed = key.seal_cloud_api(&d, &creds);
        assert!(!sealed.windows(11).any(|w| w == b"EAAG-secret"));
        assert_eq!(key.open_cloud_api(&d, &sealed).unwrap(), creds);
        assert!(key.open_cloud_api(&DeviceUid::new(), &sealed).is_err());
        let not_creds = key.seal(&d, b"{}");
        assert!(key.open_cloud_api(&d, &not_creds).is_err());
    }
}
