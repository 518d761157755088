//! Passwords, session tokens, cookies and CSRF checks.
//!
//! - Passwords are hashed with argon2id (the `argon2` crate's defaults,
//!   OWASP's minimum: 19 MiB, 2 passes) into a PHC string with a random salt.
//! - A session token is 32 random bytes from the OS, base64url in an
//!   `HttpOnly; SameSite=Strict` cookie (`Secure` unless turned off for
//!   plain-HTTP development); the store keeps only its SHA-256.
//! - Every form carries the session's CSRF token and every POST is checked
//!   against it in constant time; the login form, which has no session yet,
//!   uses a double-submit cookie.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "leadsift_session";
pub const LOGIN_CSRF_COOKIE: &str = "leadsift_login_csrf";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("the password is too short: at least {min} characters")]
    WeakPassword { min: usize },
}

/// Shortest password accepted when creating a user.
pub const MIN_PASSWORD_CHARS: usize = 10;

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::WeakPassword { min: MIN_PASSWORD_CHARS });
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// True when `password` matches the stored PHC string (a corrupt hash never matches).
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// A hash of a password nobody has, verified against when the user does
/// not exist, so a login takes as long for unknown names as for known ones.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
}

/// 32 random bytes, base64url without padding.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps for a session token.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn tokens_match(presented: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// A `Set-Cookie` value.
pub fn cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').map(str::trim).find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("anything", "not a hash"));
        assert!(matches!(hash_password("short"), Err(AuthError::WeakPassword { .. })));
        assert_ne!(hash, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn tokens_are_random_and_stored_as_digests() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_digest(&a).len(), 64);
        assert!(tokens_match(&a, &a) && !tokens_match(&a, &b) && !tokens_match("", ""));
    }

    #[test]
    fn cookies_are_strict_and_found_by_name() {
        let set = cookie(SESSION_COOKIE, "abc", 60, true);
        assert_eq!(set, "leadsift_session=abc; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure");
        let header = "theme=dark; leadsift_session=tok123; leadsift_login_csrf=x";
        assert_eq!(cookie_value(header, SESSION_COOKIE), Some("tok123"));
        assert_eq!(cookie_value(header, "leadsift"), None);
    }
}
