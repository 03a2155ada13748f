//! Webhook signatures: the Standard Webhooks specification
//! (<https://github.com/standard-webhooks/standard-webhooks>), so that receivers check them
//! with the reference libraries they already have.
//!
//! Each call carries three headers: `webhook-id` (the event id, the same as its
//! `Idempotency-Key`), `webhook-timestamp` (unix seconds) and `webhook-signature`:
//! `v1,<base64 HMAC-SHA256>` over `"<id>.<timestamp>.<raw body>"`, keyed with the secret's
//! bytes. The header may hold several entries, separated by spaces (one per secret, for a
//! rotation that keeps an old secret signing beside the new one); the webhook sink
//! configured today has one secret, so it sends one. Signing the id means a captured call re-sent under another
//! id fails the check; signing the timestamp lets a receiver refuse an old one without
//! keeping state. A secret is `whsec_` followed by its key in standard base64.
//!
//! This module signs; it does not check. latch's own tests check with the reference
//! implementations (the simulator with the `standardwebhooks` crate, a test with the
//! Python package), never with this code.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";

/// Key lengths accepted (the specification asks for 24 to 64 bytes).
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A signing secret's key. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

/// Why a secret's text is not a signing key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with whsec_")]
    Prefix,
    #[error("the part after whsec_ is not standard base64")]
    Base64,
    #[error("the key is {0} bytes; it must be 24 to 64")]
    Length(usize),
}

impl SigningKey {
    /// Reads `whsec_<base64 key>`.
    pub fn parse(secret: &str) -> Result<SigningKey, SecretError> {
        // Not trimmed: receivers' libraries take the secret as it is written.
        let encoded = secret
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Prefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::Base64)?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(SigningKey(key))
    }
}

/// A new secret for a webhook endpoint: `whsec_` and 32 random bytes in base64.
pub fn generate_secret() -> crate::config::Secret<String> {
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    crate::config::Secret::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)))
}

/// The `webhook-signature` value for `body` sent as message `id` at `timestamp` (unix
/// seconds): one `v1,<base64>` entry per key, space-separated.
///
/// ```
/// use latch_core::signature::{SigningKey, sign};
/// let key = SigningKey::parse("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
/// assert!(sign(&[&key], "msg_1", 1_700_000_000, b"{}").starts_with("v1,"));
/// ```
pub fn sign(keys: &[&SigningKey], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| {
            // HMAC accepts keys of any length, so this cannot fail.
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key.0)
                .expect("HMAC takes a key of any length");
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body);
            format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::parse("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").expect("a key")
    }

    #[test]
    fn the_known_answer_matches_hmac_sha256() {
        // base64(HMAC-SHA256(key = "0123456789abcdef0123456789abcdef",
        // "msg_1.1700000000.{\"a\":1}")), computed independently with Python's hmac.
        assert_eq!(
            sign(&[&key()], "msg_1", 1_700_000_000, br#"{"a":1}"#),
            "v1,rkwp5YuvdrMkcu0ZhuMsXoTg44mHAr1Q0+FFgFpXsjY="
        );
    }

    #[test]
    fn two_keys_give_two_entries_and_the_id_is_signed() {
        // 32 bytes of "x".
        let other =
            SigningKey::parse("whsec_eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=").expect("a key");
        let both = sign(&[&key(), &other], "msg_1", 1, b"{}");
        let entries: Vec<&str> = both.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], sign(&[&key()], "msg_1", 1, b"{}"));
        assert_ne!(sign(&[&key()], "msg_2", 1, b"{}"), entries[0]);
    }

    #[test]
    fn generated_secrets_are_valid_and_differ() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_ne!(a.expose(), b.expose());
        assert_eq!(
            SigningKey::parse(a.expose()).map(|k| k.0.len()),
            Ok(32),
            "32 random bytes"
        );
    }

    #[test]
    fn secrets_are_read_strictly() {
        assert_eq!(SigningKey::parse("MDEy"), Err(SecretError::Prefix));
        assert_eq!(
            SigningKey::parse("whsec_not base64!"),
            Err(SecretError::Base64)
        );
        assert_eq!(SigningKey::parse("whsec_MDEy"), Err(SecretError::Length(3)));
        assert_eq!(
            SigningKey::parse(" whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
            Err(SecretError::Prefix),
            "read as written, not trimmed"
        );
        assert!(!format!("{:?}", key()).contains("MDEy"));
    }
}
