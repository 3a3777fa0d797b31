//! The dashboard's cookies and CSRF checks. The session cookie carries the random token
//! of a session kept in the store ([`crate::service::sessions`]), so it is only as good
//! as that row: signing out, ending every session or revoking the key ends it at once.
//!
//! The CSRF token is an HMAC of the cookie under the dashboard secret
//! ([`crate::keys::DashboardSecret`], loaded once at start), so it is different per
//! session and cannot be derived from the cookie without the secret.

use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "wagate_session";
/// Name of the cookie that carries the sign-in form's CSRF token (before a session exists).
pub const SIGNIN_COOKIE: &str = "wagate_signin";

/// Constant-time comparison of two tokens.
pub fn tokens_match(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tokens_never_match() {
        assert!(tokens_match("x", "x"));
        assert!(!tokens_match("x", "y"));
        assert!(!tokens_match("", ""));
    }
}
