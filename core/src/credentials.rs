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
    /// A browser session's cookie (`POST /v1/sessions`).
    Session,
}

impl CredentialKind {
    pub fn prefix(self) -> &'static str {
        match self {
            CredentialKind::ReaderKey => "lrk_",
            CredentialKind::AdminToken => "lat_",
            CredentialKind::Session => "lss_",
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

/// What a token may do (column `admins.scopes`, checked by the API before a handler runs and
/// again by the database function that makes a change). `admin` is every scope; the
/// writing scopes include reading the site model they change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everything, now and in later versions.
    Admin,
    /// Read doors, readers (and their sequence gaps), holders and grants.
    SitesRead,
    /// Create doors; enrol, disable and re-key readers.
    SitesWrite,
    /// Create and change holders; create and revoke grants.
    AccessWrite,
    /// Read the registry of actions and the roll-call.
    RegistryRead,
    /// Read the event feed.
    EventsRead,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Admin,
        Scope::SitesRead,
        Scope::SitesWrite,
        Scope::AccessWrite,
        Scope::RegistryRead,
        Scope::EventsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::SitesRead => "sites:read",
            Scope::SitesWrite => "sites:write",
            Scope::AccessWrite => "access:write",
            Scope::RegistryRead => "registry:read",
            Scope::EventsRead => "events:read",
        }
    }

    /// True if a token holding `self` may act as `needed`.
    pub fn grants(self, needed: Scope) -> bool {
        self == needed
            || self == Scope::Admin
            || (needed == Scope::SitesRead
                && matches!(self, Scope::SitesWrite | Scope::AccessWrite))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {s:?} (known: {})", known.join(", "))
            })
    }
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

    #[test]
    fn scopes_read_back_and_are_the_ones_the_database_admits() {
        let migration = include_str!("../../migrations/V6__scoped_tokens_key_rotation.sql");
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
            assert!(
                migration.contains(&format!("'{scope}'")),
                "{scope} not in V6"
            );
        }
        let unknown = "sites".parse::<Scope>().expect_err("not a scope");
        assert!(unknown.contains("sites:read"), "{unknown}");
        assert!(Scope::SitesWrite.grants(Scope::SitesRead));
        assert!(Scope::AccessWrite.grants(Scope::SitesRead));
        assert!(!Scope::SitesRead.grants(Scope::SitesWrite));
        assert!(!Scope::EventsRead.grants(Scope::RegistryRead));
        assert!(Scope::ALL.iter().all(|&s| Scope::Admin.grants(s)));
    }
}
