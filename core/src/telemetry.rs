//! Logging set-up.
//!
//! JSON lines by default (what a log shipper wants), readable text when
//! `LATCH_LOG_FORMAT=pretty`. The filter comes from `LATCH_LOG` (`RUST_LOG` syntax,
//! default `info`). A panic is logged through the same subscriber (one JSON line with its
//! message and location), not as plain text on stderr.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, Setting, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            other => Err(format!("unknown log format {other:?} (use json or pretty)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

pub const LOG_FORMAT: Setting = Setting {
    key: "log.format",
    default: Some("json"),
    meaning: "json or pretty",
};
pub const LOG: Setting = Setting {
    key: "log",
    default: Some("info"),
    meaning: "the log filter, RUST_LOG syntax",
};

impl LogConfig {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        Ok(LogConfig {
            format: source.value(&LOG_FORMAT)?,
            filter: source.value(&LOG)?,
        })
    }
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.filter)
        .map_err(|e| anyhow::anyhow!("LATCH_LOG is not a valid filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    std::panic::set_hook(Box::new(log_panic));
    Ok(())
}

/// The panic hook: one error event with the panic's message and where it happened.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    crate::db::note_panic();
    let location = info
        .location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_default();
    tracing::error!(
        panic = panic_message(info.payload()),
        location,
        thread = std::thread::current().name().unwrap_or("unnamed"),
        "panic"
    );
}

/// The text a panic was raised with (`panic!("...")` payloads are `&str` or `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}
