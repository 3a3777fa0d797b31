//! Accounts (tenants) and their API keys.
//!
//! A key's secret is shown once and stored only as a SHA-256 hash next to a short public
//! prefix: the prefix finds the row, the hash is compared in constant time.

use crate::id::{AccountId, ApiKeyId};
use crate::time::Timestamp;
use serde::Serialize;

/// Most keys an account may have active at once: two, so a key can be rotated without
/// downtime (create the new one, deploy it, revoke the old one).
pub const MAX_ACTIVE_API_KEYS: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub created_at: Timestamp,
}

/// An API key as listed: never the secret, only its prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub account_id: AccountId,
    /// The first characters of the key (`wak_` + 8 hex), enough to recognise it.
    pub prefix: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A key row with its hash, for authentication only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyCredential {
    pub key: ApiKey,
    /// SHA-256 of the whole key.
    pub hash: [u8; 32],
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub account_id: AccountId,
    pub prefix: String,
    pub hash: [u8; 32],
    pub created_at: Timestamp,
}

/// A signed-in dashboard session. The browser's cookie carries a random token; only its
/// SHA-256 is stored, so a copy of the database cannot be replayed as a cookie. A session
/// is valid while its row exists, it has not expired and the key it was opened with is
/// still active: signing out, ending every session and revoking the key delete rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSession {
    /// SHA-256 of the cookie's token.
    pub token_hash: [u8; 32],
    pub account_id: AccountId,
    /// The API key presented at sign-in.
    pub api_key_id: ApiKeyId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}
