//! The relay's settings: declared once (key, default, meaning) and read from a [`Source`].

use std::time::Duration;

use latch_core::config::{ConfigError, Setting, Source};

use crate::publish::MAX_BATCH;

/// The relay's own settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows per claim and per atomic batch (1–1000).
    pub batch_size: usize,
    /// How often to look for rows without a NOTIFY (also the longest an arming waits for
    /// a writer transaction left open), and how often a standby relay tries to take over.
    pub poll_interval: Duration,
    /// The longest wait between retries while a dependency is down.
    pub max_backoff: Duration,
}

pub const BATCH_SIZE: Setting = Setting {
    key: "relay.batch_size",
    default: Some("500"),
    meaning: "rows per claim and atomic batch (1-1000)",
};
pub const POLL_INTERVAL: Setting = Setting {
    key: "relay.poll_interval",
    default: Some("1s"),
    meaning: "poll fallback; standby relays retry leadership this often",
};
pub const MAX_BACKOFF: Setting = Setting {
    key: "relay.max_backoff",
    default: Some("30s"),
    meaning: "longest wait between retries while a dependency is down",
};

/// The settings this crate reads.
pub const SETTINGS: &[Setting] = &[BATCH_SIZE, POLL_INTERVAL, MAX_BACKOFF];

impl RelayConfig {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let batch_size = source.count(&BATCH_SIZE)?;
        if batch_size > MAX_BATCH {
            return Err(Source::invalid_setting(
                &BATCH_SIZE,
                format!("at most {MAX_BATCH} (the server's atomic batch limit)"),
            ));
        }
        Ok(RelayConfig {
            batch_size,
            poll_interval: source.duration(&POLL_INTERVAL)?,
            max_backoff: source.duration(&MAX_BACKOFF)?,
        })
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}
