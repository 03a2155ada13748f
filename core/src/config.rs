//! Typed configuration.
//!
//! Every setting has a dotted key (`database.url`) that is looked up first in the
//! environment as `LATCH_` + the key upper-cased with dots turned into underscores
//! (`LATCH_DATABASE_URL`), then in the optional TOML file named by `LATCH_CONFIG`
//! (`[database] url = "..."`), then falls back to a default. Each role reads its settings
//! once at start; a bad value is an error that names both the variable and the file key.
//!
//! Secrets (database URLs carry passwords) are wrapped in [`Secret`], whose `Debug` prints
//! nothing of the value.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// A value that must never be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself. Call this only where the value is used, never to log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{var} (file key `{key}`) is invalid: {message}")]
    Invalid {
        var: String,
        key: String,
        message: String,
    },
    #[error("{var} (file key `{key}`) is required: {hint}")]
    Missing {
        var: String,
        key: String,
        hint: &'static str,
    },
}

/// Where settings come from: a snapshot of the `LATCH_*` environment and the parsed file.
#[derive(Debug, Default, Clone)]
pub struct Source {
    env: HashMap<String, String>,
    file: Option<toml::Table>,
}

impl Source {
    /// Reads the process environment and, when `LATCH_CONFIG` (or `file`) names one, the
    /// TOML file.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(name, _)| name.starts_with("LATCH_"))
            .collect();
        let path = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("LATCH_CONFIG").map(PathBuf::from));
        let file = match path {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::File {
                    path: path.clone(),
                    source,
                })?;
                let table = text
                    .parse::<toml::Table>()
                    .map_err(|source| ConfigError::Toml {
                        path,
                        source: Box::new(source),
                    })?;
                Some(table)
            }
        };
        Ok(Source { env, file })
    }

    /// A source made of the given variables only (for tests and embedding).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Source {
            env: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            file: None,
        }
    }

    /// The environment variable that sets `key`.
    pub fn var_name(key: &str) -> String {
        format!("LATCH_{}", key.replace('.', "_").to_uppercase())
    }

    fn raw(&self, key: &str) -> Option<String> {
        if let Some(value) = self.env.get(&Self::var_name(key)) {
            return Some(value.clone());
        }
        let mut node: &toml::Value = self.file.as_ref()?.get(key.split('.').next()?)?;
        for part in key.split('.').skip(1) {
            node = node.get(part)?;
        }
        Some(match node {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    fn invalid(key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            var: Self::var_name(key),
            key: key.to_owned(),
            message: message.to_string(),
        }
    }

    /// The parsed value of `key`, or `None` when it is set nowhere.
    fn get<T>(&self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(key) {
            None => Ok(None),
            Some(raw) => raw
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|e| Self::invalid(key, format!("{e} (got {raw:?})"))),
        }
    }
}

/// A setting latch reads: its dotted key, its default as one would write it (`None`: it has
/// none — it is required, or optional), and what it means. Every setting is declared once,
/// as a `const` beside the code that reads it, and read through that declaration (so the
/// default in force is the declared one); each crate lists its own in `SETTINGS`, and the
/// README's configuration table is checked against them all. A key may hold `<sink>`, which
/// [`Source::for_sink`] fills in.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    pub default: Option<&'static str>,
    pub meaning: &'static str,
}

impl Setting {
    /// The environment variable that sets it (`LATCH_SINKS_<SINK>_RATE` for a sink's).
    pub fn var(&self) -> String {
        Source::var_name(self.key)
    }
}

/// One sink's view of a [`Source`]: `<sink>` in a key is the sink's name.
pub struct SinkSource<'a> {
    source: &'a Source,
    sink: &'a str,
}

impl SinkSource<'_> {
    fn key(&self, setting: &Setting) -> String {
        setting.key.replace("<sink>", self.sink)
    }

    pub fn value<T>(&self, setting: &Setting) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.source.value_at(&self.key(setting), setting)
    }

    pub fn optional<T>(&self, setting: &Setting) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.source.get(&self.key(setting))
    }

    pub fn duration(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        self.source.duration_at(&self.key(setting), setting)
    }

    pub fn count(&self, setting: &Setting) -> Result<usize, ConfigError> {
        self.source.count_at(&self.key(setting), setting)
    }

    /// The error naming this setting, for a value that parses but is out of range.
    pub fn invalid(&self, setting: &Setting, message: impl fmt::Display) -> ConfigError {
        Source::invalid(&self.key(setting), message)
    }
}

impl Source {
    /// The value of `setting`: as set, else its default; an error names the variable when
    /// it is set wrong, or missing without a default.
    pub fn value<T>(&self, setting: &Setting) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.value_at(setting.key, setting)
    }

    /// The value of a setting without a default, if it is set.
    pub fn optional<T>(&self, setting: &Setting) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.get(setting.key)
    }

    /// A duration setting (`250ms`, `5s`, `10m`, `24h`, `7d`).
    pub fn duration(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        self.duration_at(setting.key, setting)
    }

    /// A positive count (`0` is refused: every count here bounds something).
    pub fn count(&self, setting: &Setting) -> Result<usize, ConfigError> {
        self.count_at(setting.key, setting)
    }

    /// The settings of one sink (`sinks.<sink>.…`).
    pub fn for_sink<'a>(&'a self, sink: &'a str) -> SinkSource<'a> {
        SinkSource { source: self, sink }
    }

    /// The error naming `setting`, for a value that parses but is out of range.
    pub fn invalid_setting(setting: &Setting, message: impl fmt::Display) -> ConfigError {
        Self::invalid(setting.key, message)
    }

    fn value_at<T>(&self, key: &str, setting: &Setting) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match (self.raw(key), setting.default) {
            (Some(raw), _) => raw
                .trim()
                .parse::<T>()
                .map_err(|e| Self::invalid(key, format!("{e} (got {raw:?})"))),
            (None, Some(default)) => default
                .parse::<T>()
                .map_err(|e| Self::invalid(key, format!("the default {default:?}: {e}"))),
            (None, None) => Err(ConfigError::Missing {
                var: Self::var_name(key),
                key: key.to_owned(),
                hint: setting.meaning,
            }),
        }
    }

    fn duration_at(&self, key: &str, setting: &Setting) -> Result<Duration, ConfigError> {
        let raw = self
            .raw(key)
            .or_else(|| setting.default.map(str::to_owned))
            .ok_or_else(|| ConfigError::Missing {
                var: Self::var_name(key),
                key: key.to_owned(),
                hint: setting.meaning,
            })?;
        parse_duration(&raw).map_err(|e| Self::invalid(key, e))
    }

    fn count_at(&self, key: &str, setting: &Setting) -> Result<usize, ConfigError> {
        let value: usize = self.value_at(key, setting)?;
        if value == 0 {
            return Err(Self::invalid(key, "must be at least 1"));
        }
        Ok(value)
    }
}

/// Parses `250ms`, `5s`, `10m`, `24h`, `7d`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{raw:?} has no unit (use ms, s, m, h or d)"))?;
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} does not start with a whole number"))?;
    let seconds = |factor: u64| Duration::from_secs(n.saturating_mul(factor));
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(seconds(1)),
        "m" => Ok(seconds(60)),
        "h" => Ok(seconds(3600)),
        "d" => Ok(seconds(86_400)),
        other => Err(format!("unknown unit {other:?} (use ms, s, m, h or d)")),
    }
}

pub const DATABASE_URL: Setting = Setting {
    key: "database.url",
    default: None,
    meaning: "the PostgreSQL URL of this process's login, e.g. postgres://latch_api@127.0.0.1:5432/latch",
};
pub const DATABASE_POOL_SIZE: Setting = Setting {
    key: "database.pool_size",
    default: Some("16"),
    meaning: "connections at most",
};
pub const DATABASE_CONNECT_TIMEOUT: Setting = Setting {
    key: "database.connect_timeout",
    default: Some("5s"),
    meaning: "bounds opening a connection and waiting for one from a full pool",
};
pub const DATABASE_STATEMENT_TIMEOUT: Setting = Setting {
    key: "database.statement_timeout",
    default: Some("5s"),
    meaning: "PostgreSQL's statement_timeout for the pooled connections",
};
pub const MIGRATION_DATABASE_URL: Setting = Setting {
    key: "migration.database_url",
    default: None,
    meaning: "a login that owns the schema (migrations, admin tokens, the demo seed)",
};
pub const HTTP_ADDR: Setting = Setting {
    key: "http.addr",
    default: Some("127.0.0.1:8080"),
    meaning: "the API's listen address",
};
pub const HTTP_BODY_LIMIT_BYTES: Setting = Setting {
    key: "http.body_limit_bytes",
    default: Some("65536"),
    meaning: "larger bodies get 413",
};
pub const HTTP_WORKERS: Setting = Setting {
    key: "http.workers",
    default: None,
    meaning: "HTTP worker threads (default: the CPU count)",
};
pub const HTTP_REQUEST_TIMEOUT: Setting = Setting {
    key: "http.request_timeout",
    default: Some("5s"),
    meaning: "a request not answered within this is answered 503",
};

/// The settings this crate reads.
pub const SETTINGS: &[Setting] = &[
    DATABASE_URL,
    DATABASE_POOL_SIZE,
    DATABASE_CONNECT_TIMEOUT,
    DATABASE_STATEMENT_TIMEOUT,
    MIGRATION_DATABASE_URL,
    HTTP_ADDR,
    HTTP_BODY_LIMIT_BYTES,
    HTTP_WORKERS,
    HTTP_REQUEST_TIMEOUT,
    crate::nats::URL,
    crate::nats::EVENTS_STREAM_NAME,
    crate::nats::DUPLICATE_WINDOW,
    crate::nats::MAX_AGE,
    crate::nats::REQUEST_TIMEOUT,
    crate::nats::CA_FILE,
    crate::nats::PARTITIONS,
    crate::nats::REPLICAS,
    crate::telemetry::LOG_FORMAT,
    crate::telemetry::LOG,
    crate::admin::ADMIN_ADDR,
];

/// How a role reaches PostgreSQL.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/db`, the least-privileged application login.
    pub url: Secret<String>,
    pub pool_size: usize,
    /// Bounds waiting for a pooled connection and opening a new one.
    pub connect_timeout: Duration,
    /// PostgreSQL's `statement_timeout` for this role's pooled connections: a statement
    /// running longer (a lock wait, say) is cancelled by the server.
    pub statement_timeout: Duration,
}

impl DatabaseConfig {
    /// The declared defaults, with this URL.
    pub fn with_url(url: Secret<String>) -> Self {
        let var = DATABASE_URL.var();
        let source = Source::from_pairs([(var.as_str(), url.expose().as_str())]);
        DatabaseConfig::from_source(&source).expect("the declared defaults are valid")
    }

    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        Ok(DatabaseConfig {
            url: Secret::new(source.value(&DATABASE_URL)?),
            pool_size: source.count(&DATABASE_POOL_SIZE)?,
            connect_timeout: source.duration(&DATABASE_CONNECT_TIMEOUT)?,
            statement_timeout: source.duration(&DATABASE_STATEMENT_TIMEOUT)?,
        })
    }

    /// The URL migrations run with: `LATCH_MIGRATION_DATABASE_URL` (a login that owns the
    /// schema), or the application URL when that is not set.
    pub fn migration_url(source: &Source) -> Result<Secret<String>, ConfigError> {
        match source.optional::<String>(&MIGRATION_DATABASE_URL)? {
            Some(url) => Ok(Secret::new(url)),
            None => Ok(Secret::new(source.value(&DATABASE_URL)?)),
        }
    }
}

/// The API's HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    /// Largest accepted request body; larger ones get 413.
    pub body_limit_bytes: usize,
    /// actix worker threads.
    pub workers: usize,
    /// A request not answered within this is answered 503 (see `latch_api::contain`).
    pub request_timeout: Duration,
}

impl HttpConfig {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let workers = match source.optional::<usize>(&HTTP_WORKERS)? {
            Some(0) => return Err(Source::invalid_setting(&HTTP_WORKERS, "must be at least 1")),
            Some(workers) => workers,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        Ok(HttpConfig {
            addr: source.value(&HTTP_ADDR)?,
            body_limit_bytes: source.count(&HTTP_BODY_LIMIT_BYTES)?,
            workers,
            request_timeout: source.duration(&HTTP_REQUEST_TIMEOUT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_keys() {
        assert_eq!(Source::var_name("database.url"), "LATCH_DATABASE_URL");
        assert_eq!(
            Source::var_name("http.body_limit_bytes"),
            "LATCH_HTTP_BODY_LIMIT_BYTES"
        );
    }

    #[test]
    fn environment_overrides_file() {
        let mut source = Source::from_pairs([("LATCH_HTTP_ADDR", "127.0.0.1:9000")]);
        source.file = Some(
            "[http]\naddr = \"0.0.0.0:1\"\nworkers = 3\n"
                .parse()
                .expect("valid toml"),
        );
        let http = HttpConfig::from_source(&source).expect("valid");
        assert_eq!(http.addr.port(), 9000);
        assert_eq!(http.workers, 3);
    }

    #[test]
    fn errors_name_the_variable() {
        let source = Source::from_pairs([("LATCH_HTTP_ADDR", "nowhere")]);
        let err = HttpConfig::from_source(&source).expect_err("invalid");
        let text = err.to_string();
        assert!(text.contains("LATCH_HTTP_ADDR"), "{text}");
        assert!(text.contains("http.addr"), "{text}");

        let err = DatabaseConfig::from_source(&Source::default()).expect_err("missing");
        assert!(err.to_string().contains("LATCH_DATABASE_URL"));
    }

    #[test]
    fn zero_counts_are_rejected() {
        let source = Source::from_pairs([("LATCH_DATABASE_POOL_SIZE", "0")]);
        let source_with_url = Source {
            env: source
                .env
                .into_iter()
                .chain([("LATCH_DATABASE_URL".into(), "postgres://x@y/z".into())])
                .collect(),
            file: None,
        };
        assert!(DatabaseConfig::from_source(&source_with_url).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let source = Source::from_pairs([("LATCH_DATABASE_URL", "postgres://u:hunter2@h/db")]);
        let db = DatabaseConfig::from_source(&source).expect("valid");
        assert!(!format!("{db:?}").contains("hunter2"));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 weeks").is_err());
    }
}
