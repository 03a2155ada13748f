//! The simulator's settings: where it listens, the credentials its sinks expect, and the
//! faults it starts with. The CLI builds one from flags; tests take the `Default`.

use std::net::{Ipv4Addr, SocketAddr};

use crate::faults::Faults;

/// The `X-TNA-Key` a default simulator expects.
pub const DEFAULT_TNA_KEY: &str = "sim-tna-key";
/// The webhook signing secret of a default simulator (Standard Webhooks: `whsec_` and a
/// 32-byte key in base64).
pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_bGF0Y2gtc2ltIHdlYmhvb2sgc2lnbmluZyBrZXkgMzI=";

/// A credential the simulator checks. It never prints: `Debug` shows `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, where it is compared; never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The main listener (both sinks). Port 0 lets the OS pick one.
    pub addr: SocketAddr,
    /// The admin listener (faults, stats, reset), which stays up while the main one is
    /// down. Port 0 lets the OS pick one.
    pub admin_addr: SocketAddr,
    /// The `X-TNA-Key` the legacy endpoint accepts.
    pub tna_key: Secret,
    /// The secret webhook signatures are checked with.
    pub webhook_secret: Secret,
    /// The faults in force from the start.
    pub faults: Faults,
}

impl Default for SimConfig {
    /// Both listeners on 127.0.0.1 with OS-picked ports, the default credentials, no
    /// faults: what a test wants.
    fn default() -> Self {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        SimConfig {
            addr: loopback,
            admin_addr: loopback,
            tna_key: Secret::new(DEFAULT_TNA_KEY),
            webhook_secret: Secret::new(DEFAULT_WEBHOOK_SECRET),
            faults: Faults::none(),
        }
    }
}
