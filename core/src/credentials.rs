//! Reader keys and admin tokens.
//!
//! A credential is 32 random bytes, base64url-encoded behind a prefix that says what it is
//! (`lrk_` for a reader key, `lat_` for an admin token), so a key pasted in the wrong place
//! is recognised. Only its SHA-256 is stored: the keys are high-entropy, so a fast hash is
//! enough (a password hash would only slow down every request), and a database leak does
//! not reveal a usable key. The plain value is shown once, when it is created.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::Secret;

/// What a credential is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    ReaderKey,
    AdminToken,
}

impl CredentialKind {
    pub fn prefix(self) -> &'static str {
        match self {
            CredentialKind::ReaderKey => "lrk_",
            CredentialKind::AdminToken => "lat_",
        }
    }
}

/// A freshly generated credential: the plain value (shown once) and its stored hash.
#[derive(Debug)]
pub struct NewCredential {
    pub plain: Secret<String>,
    pub hash: Vec<u8>,
}

pub fn generate(kind: CredentialKind) -> NewCredential {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let plain = format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&plain);
    NewCredential {
        plain: Secret::new(plain),
        hash,
    }
}

/// The stored form of a presented credential.
pub fn hash(presented: &str) -> Vec<u8> {
    Sha256::digest(presented.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_are_prefixed_unique_and_hash_back() {
        let a = generate(CredentialKind::ReaderKey);
        let b = generate(CredentialKind::ReaderKey);
        assert!(a.plain.expose().starts_with("lrk_"));
        assert_ne!(a.plain.expose(), b.plain.expose());
        assert_eq!(hash(a.plain.expose()), a.hash);
        assert_eq!(a.hash.len(), 32);
        assert!(
            generate(CredentialKind::AdminToken)
                .plain
                .expose()
                .starts_with("lat_")
        );
    }
}
