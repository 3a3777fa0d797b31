//! What a Cloud API device signs in with: its number's id in Meta's app, the access token,
//! the app secret Meta signs webhooks with, the verify token of the webhook handshake, and
//! the business account (for templates). Secrets: kept encrypted at rest, never returned
//! by the API and never logged — `Debug` shows only the number's id.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudApiCredentials {
    pub phone_number_id: String,
    pub access_token: String,
    pub app_secret: String,
    pub verify_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_account_id: Option<String>,
}

impl fmt::Debug for CloudApiCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudApiCredentials")
            .field("phone_number_id", &self.phone_number_id)
            .field("business_account_id", &self.business_account_id)
            .finish_non_exhaustive()
    }
}

/// Why credentials were refused (the field, in the API's camelCase, and what is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CredentialsError {
    pub field: &'static str,
    pub message: String,
}

/// Meta's ids are digits; tokens and secrets are printable ASCII without spaces.
const MAX_ID: usize = 32;
const MAX_SECRET: usize = 1024;

impl CloudApiCredentials {
    /// Checks every field: ids are digits, secrets printable, nothing empty or huge.
    pub fn check(&self) -> Result<(), CredentialsError> {
        check_id("phoneNumberId", &self.phone_number_id)?;
        check_secret("accessToken", &self.access_token)?;
        check_secret("appSecret", &self.app_secret)?;
        check_secret("verifyToken", &self.verify_token)?;
        if let Some(b) = &self.business_account_id {
            check_id("businessAccountId", b)?;
        }
        Ok(())
    }
}

fn check_id(field: &'static str, v: &str) -> Result<(), CredentialsError> {
    if v.is_empty() || v.len() > MAX_ID || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CredentialsError {
            field,
            message: format!("must be the id Meta shows for it: 1 to {MAX_ID} digits"),
        });
    }
    Ok(())
}

fn check_secret(field: &'static str, v: &str) -> Result<(), CredentialsError> {
    if v.is_empty() || v.len() > MAX_SECRET || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CredentialsError {
            field,
            message: format!(
                "must be 1 to {MAX_SECRET} printable characters without spaces, as Meta shows it"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> CloudApiCredentials {
        CloudApiCredentials {
            phone_number_id: "106540352242922".into(),
            access_token: "EAAG-token".into(),
            app_secret: "0123abcd".into(),
            verify_token: "my-verify".into(),
            business_account_id: Some("102290129340398".into()),
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let shown = format!("{:?}", creds());
        assert!(shown.contains("106540352242922"));
        for secret in ["EAAG-token", "0123abcd", "my-verify"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn each_field_is_checked_and_named() {
        assert!(creds().check().is_ok());
        let mut c = creds();
        c.phone_number_id = "12a".into();
        assert_eq!(c.check().unwrap_err().field, "phoneNumberId");
        let mut c = creds();
        c.access_token = "two words".into();
        assert_eq!(c.check().unwrap_err().field, "accessToken");
        let mut c = creds();
        c.verify_token = String::new();
        assert_eq!(c.check().unwrap_err().field, "verifyToken");
        let mut c = creds();
        c.business_account_id = Some(String::new());
        assert_eq!(c.check().unwrap_err().field, "businessAccountId");
    }
}
