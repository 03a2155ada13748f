//! PostgreSQL: the connection pool and the embedded migrations.
//!
//! Roles connect through a `deadpool-postgres` pool built from a URL. Statements are
//! prepared once per connection (`prepare_cached`). Migrations are embedded in the binary
//! with refinery and run by `latch migrate` with a login that owns the schema; the roles
//! themselves never change the schema (they only call `latch_ensure_action_partitions`,
//! which runs with its owner's rights).
//!
//! A panic while a pooled connection is in use may leave it mid-protocol (tokio-postgres
//! encodes each message into a buffer the connection shares; a panic while a parameter is
//! encoded leaves half a message there, which the next statement sends first). So after a
//! panic ([`note_panic`]), every connection whose last use began before it is discarded at
//! its next checkout and a fresh one is opened instead: a panic costs reconnects, never a
//! poisoned connection.
//!
//! TLS is used when the URL asks for it, as libpq reads it: `sslmode=require` (the server
//! must speak TLS) with an optional `sslrootcert=/path/ca.crt` (the CA the server's
//! certificate must come from; the system's trust store otherwise). latch always checks
//! the certificate and the host name (what libpq calls `verify-full`). Without
//! `sslmode=require` connections are plain, as before.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{DatabaseConfig, Secret};

pub use deadpool_postgres::{GenericClient, Object as PooledClient};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// How many months of registry partitions exist ahead of the current one.
pub const PARTITION_MONTHS_AHEAD: i32 = 3;

/// A URL as tokio-postgres reads it, and the TLS it asks for (`None`: plain).
fn parse_url(url: &str) -> anyhow::Result<(tokio_postgres::Config, Option<MakeRustlsConnect>)> {
    // tokio-postgres does not know libpq's `sslrootcert`: it is taken out here.
    let (base, root_cert) = match url.split_once('?') {
        Some((base, query)) => {
            let mut root_cert = None;
            let mut rest = form_urlencoded::Serializer::new(String::new());
            for (key, value) in form_urlencoded::parse(query.as_bytes()) {
                if key == "sslrootcert" {
                    root_cert = Some(value.into_owned());
                } else {
                    rest.append_pair(&key, &value);
                }
            }
            let rest = rest.finish();
            if rest.is_empty() {
                (base.to_owned(), root_cert)
            } else {
                (format!("{base}?{rest}"), root_cert)
            }
        }
        None => (url.to_owned(), None),
    };
    let config: tokio_postgres::Config = base.parse().context("not a valid PostgreSQL URL")?;
    let tls = match config.get_ssl_mode() {
        SslMode::Require => Some(tls_connector(root_cert.as_deref())?),
        _ => {
            anyhow::ensure!(
                root_cert.is_none(),
                "sslrootcert is given without sslmode=require"
            );
            None
        }
    };
    Ok((config, tls))
}

/// Verifies the server against `root_cert` (PEM), or the system's trust store.
fn tls_connector(root_cert: Option<&str>) -> anyhow::Result<MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS 1.2 and 1.3")?;
    let config = match root_cert {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read sslrootcert {path}"))?
            {
                roots
                    .add(cert.with_context(|| format!("sslrootcert {path} is not PEM"))?)
                    .with_context(|| format!("a certificate in sslrootcert {path}"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .context("the system's trust store")?
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

/// Builds a pool; no connection is opened until the first use.
pub fn pool(config: &DatabaseConfig) -> anyhow::Result<Pool> {
    let (mut pg, tls) = parse_url(config.url.expose())
        .context("LATCH_DATABASE_URL is not a valid PostgreSQL URL")?;
    // Each server of a multi-host URL is tried in turn within the one connect timeout, so
    // that a silent first server (a lost primary) leaves time to reach the next.
    let hosts = u32::try_from(pg.get_hosts().len().max(1)).unwrap_or(u32::MAX);
    pg.connect_timeout((config.connect_timeout / hosts).max(Duration::from_millis(500)));
    pg.application_name("latch");
    // Appended to whatever options the URL carries; the server enforces it.
    let statement_timeout = format!(
        "-c statement_timeout={}",
        config.statement_timeout.as_millis().max(1)
    );
    let options = match pg.get_options() {
        Some(given) if !given.is_empty() => format!("{given} {statement_timeout}"),
        _ => statement_timeout,
    };
    pg.options(&options);
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        Some(tls) => Manager::from_config(pg, tls, manager_config),
        None => Manager::from_config(pg, NoTls, manager_config),
    };
    Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.connect_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .pre_recycle(Hook::sync_fn(|_, metrics| {
            let last_use = metrics.recycled.unwrap_or(metrics.created);
            match last_panic() {
                Some(panic) if panic >= last_use => Err(HookError::message(
                    "a panic may have interrupted this connection's last use",
                )),
                _ => Ok(()),
            }
        }))
        .build()
        .context("cannot build the PostgreSQL pool")
}

static LAST_PANIC: Mutex<Option<Instant>> = Mutex::new(None);

/// Records that a panic happened now: pooled connections in use since before it are
/// replaced at their next checkout (see the module doc).
pub fn note_panic() {
    if let Ok(mut last) = LAST_PANIC.lock() {
        *last = Some(Instant::now());
    }
}

fn last_panic() -> Option<Instant> {
    LAST_PANIC.lock().map_or(None, |last| *last)
}

/// Opens one connection outside any pool (migrations, operator commands).
pub async fn connect(url: &Secret<String>) -> anyhow::Result<tokio_postgres::Client> {
    let (client, mut messages) = connect_listening(url).await?;
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            if let Err(error) = message {
                tracing::warn!(%error, "PostgreSQL connection closed with an error");
                break;
            }
        }
    });
    Ok(client)
}

/// What a connection receives besides answers (notifications, notices); reading it drives
/// the connection, which closes when it ends.
pub type Messages = BoxStream<'static, Result<AsyncMessage, tokio_postgres::Error>>;

/// Opens one connection whose [`Messages`] the caller reads (the relay's LISTEN).
pub async fn connect_listening(
    url: &Secret<String>,
) -> anyhow::Result<(tokio_postgres::Client, Messages)> {
    let (config, tls) = parse_url(url.expose()).context("not a valid PostgreSQL URL")?;
    match tls {
        Some(tls) => open(&config, tls).await,
        None => open(&config, NoTls).await,
    }
}

/// Connects with `tls` (rustls, or none) and turns the connection into its [`Messages`].
async fn open<T>(
    config: &tokio_postgres::Config,
    tls: T,
) -> anyhow::Result<(tokio_postgres::Client, Messages)>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config
        .connect(tls)
        .await
        .context("cannot connect to PostgreSQL")?;
    let messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    Ok((client, messages.boxed()))
}

/// Login roles to create (if missing) and make members of the group role their process
/// needs (migration V5): the API's of `latch_app`, the relay's of `latch_relayer`, the
/// operator's (`latch outbox`, `latch dlq`, `latch events`) of `latch_operator`, the
/// worker's (webhook endpoints) of `latch_deliverer`. Needs the
/// CREATEROLE right; meant for development stacks — in production a DBA grants the roles.
#[derive(Debug, Default, Clone)]
pub struct Logins {
    pub api: Option<String>,
    pub relay: Option<String>,
    pub operator: Option<String>,
    /// The worker's, a member of `latch_deliverer` (webhook endpoints).
    pub worker: Option<String>,
}

/// Applies the embedded migrations, makes sure the registry has its partitions, and sets
/// up `logins`.
pub async fn migrate(url: &Secret<String>, logins: &Logins) -> anyhow::Result<usize> {
    let mut client = connect(url).await?;
    let report = embedded::migrations::runner()
        .run_async(&mut client)
        .await
        .context("migration failed")?;
    client
        .execute(
            "SELECT latch_ensure_action_partitions($1)",
            &[&PARTITION_MONTHS_AHEAD],
        )
        .await
        .context("cannot create the registry's partitions")?;
    for (login, group, flag) in [
        (&logins.api, "latch_app", "--app-login"),
        (&logins.relay, "latch_relayer", "--relay-login"),
        (&logins.operator, "latch_operator", "--operator-login"),
        (&logins.worker, "latch_deliverer", "--worker-login"),
    ] {
        if let Some(login) = login {
            ensure_login(&client, login, group, flag).await?;
        }
    }
    Ok(report.applied_migrations().len())
}

async fn ensure_login(
    client: &tokio_postgres::Client,
    login: &str,
    group: &str,
    flag: &str,
) -> anyhow::Result<()> {
    if login.is_empty() || !login.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        anyhow::bail!("{flag} must be letters, digits and underscores, got {login:?}");
    }
    // Role names cannot be bound as parameters; the name was checked above and is quoted.
    let sql = format!(
        r#"DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{login}') THEN
                CREATE ROLE "{login}" LOGIN;
            END IF;
            GRANT {group} TO "{login}";
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            GRANT {group} TO "{login}";
        END
        $$"#
    );
    client
        .batch_execute(&sql)
        .await
        .with_context(|| format!("cannot create or grant the login {login} ({flag})"))
}

/// Creates the partitions the next months need; the API calls this at start and hourly.
pub async fn ensure_partitions(client: &impl GenericClient) -> anyhow::Result<i32> {
    let row = client
        .query_one(
            "SELECT latch_ensure_action_partitions($1)",
            &[&PARTITION_MONTHS_AHEAD],
        )
        .await
        .context("cannot create the registry's partitions")?;
    Ok(row.get(0))
}
