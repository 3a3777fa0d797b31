//! Meta's webhook signature: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the
//! raw request body under the app secret. Anyone can post to a public webhook URL; only
//! Meta knows the secret, so a body whose signature does not check is refused before it is
//! read.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Whether `header` (the `X-Hub-Signature-256` value) signs `body` under `app_secret`.
/// Compared in constant time (`verify_slice`); a missing prefix, bad hex or a signature of
/// the wrong length never matches.
pub fn verify(app_secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The header Meta would send for `body` (the test suite's fake Graph API signs with it).
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_app_secrets_signature_of_these_bytes_checks() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let good = sign("s3cret", body);
        assert!(verify("s3cret", body, Some(&good)));
        assert!(!verify("other", body, Some(&good)), "another secret");
        assert!(!verify("s3cret", b"{}", Some(&good)), "other bytes");
        assert!(!verify("s3cret", body, None), "no header");
        assert!(
            !verify("s3cret", body, Some(good.trim_start_matches("sha256="))),
            "no prefix"
        );
        assert!(!verify("s3cret", body, Some("sha256=zz")), "not hex");
        assert!(!verify("s3cret", body, Some("sha256=abcd")), "too short");
    }
}
