//! Prefixed, sortable identifiers (`dev_…`, `msg_…`, …).
//!
//! Each id is a type prefix and a lowercase ULID: sortable by creation time (so listings
//! page by id), unguessable enough for resource ids, and impossible to mix up across
//! types at compile time.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a string is not an id of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an id starting with `{prefix}`")]
pub struct InvalidId {
    pub prefix: &'static str,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id, sortable after every id made before it.
            pub fn new() -> Self {
                Self(format!("{}{}", $prefix, ulid::Ulid::new().to_string().to_lowercase()))
            }

            /// Accepts any `prefix` + 1..=64 characters of `[0-9a-zA-Z_-]`; ids made by other
            /// systems (imported devices, test fixtures) need not be ULIDs.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                let rest = s.strip_prefix($prefix).ok_or(InvalidId { prefix: $prefix })?;
                let ok = !rest.is_empty()
                    && rest.len() <= 64
                    && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if ok { Ok(Self(s.to_owned())) } else { Err(InvalidId { prefix: $prefix }) }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }
    };
}

prefixed_id!(
    /// An account (tenant): owns devices, media, messages and API keys.
    AccountId, "acc_"
);
prefixed_id!(
    /// A linked WhatsApp device; also the MegaMsg `X-Instance-Id`.
    DeviceUid, "dev_"
);
prefixed_id!(
    /// An outbound or inbound message.
    MessageId, "msg_"
);
prefixed_id!(
    /// An uploaded or received media file.
    MediaId, "med_"
);
prefixed_id!(
    /// A domain event; stable across webhook retries so receivers can dedupe.
    EventId, "evt_"
);
prefixed_id!(
    /// An API key's public identifier (never the secret).
    ApiKeyId, "key_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_carry_their_prefix_and_sort_by_creation() {
        let a = MessageId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = MessageId::new();
        assert!(a.as_str().starts_with("msg_"));
        assert!(a < b);
        assert_eq!(MessageId::parse(a.as_str()), Ok(a));
    }

    #[test]
    fn parse_rejects_wrong_prefix_and_bad_characters() {
        assert!(DeviceUid::parse("msg_abc").is_err());
        assert!(DeviceUid::parse("dev_").is_err());
        assert!(DeviceUid::parse("dev_a b").is_err());
        assert!(DeviceUid::parse("dev_4f8c2a1e").is_ok());
    }
}
