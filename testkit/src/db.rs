use std::path::Path;

use latch_core::config::Secret;
use sha2::{Digest, Sha256};
use tokio_postgres::config::Host;

/// The logins the roles use in tests, each a member of its role's group and none the
/// schema's owner, so tests see the same privileges as production: the API's,
pub const APP_LOGIN: &str = "latch_api";
/// the relay's,
pub const RELAY_LOGIN: &str = "latch_relay";
/// the operator commands',
pub const OPERATOR_LOGIN: &str = "latch_ops";
/// and the worker's (webhook endpoints).
pub const WORKER_LOGIN: &str = "latch_worker";

/// A fresh database, migrated, for one test. Left behind when the test ends: the whole
/// cluster belongs to the test run and is removed with it.
pub struct TestDb {
    pub name: String,
    superuser: String,
    /// `host:port`, or several separated by commas.
    hosts: String,
    /// A URL's query (`?target_session_attrs=read-write`), or nothing.
    query: String,
}

/// Migrates the database at `url`, making the tests' logins.
async fn migrate(url: &Secret<String>) {
    latch_core::db::migrate(
        url,
        &latch_core::db::Logins {
            api: Some(APP_LOGIN.to_owned()),
            relay: Some(RELAY_LOGIN.to_owned()),
            operator: Some(OPERATOR_LOGIN.to_owned()),
            worker: Some(WORKER_LOGIN.to_owned()),
        },
    )
    .await
    .expect("migrate the database");
}

impl TestDb {
    pub async fn new() -> TestDb {
        let url = std::env::var("LATCH_TEST_PG_URL").unwrap_or_else(|_| {
            panic!(
                "LATCH_TEST_PG_URL is not set: run the tests with ./deploy/local/test.sh, \
                 which starts a private PostgreSQL cluster for them"
            )
        });
        let config: tokio_postgres::Config = url.parse().expect("LATCH_TEST_PG_URL is a URL");
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            other => panic!("LATCH_TEST_PG_URL must name a TCP host, got {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let superuser = config.get_user().unwrap_or("postgres").to_owned();
        let mut db = TestDb {
            name: String::new(),
            hosts: format!("{host}:{port}"),
            superuser,
            query: String::new(),
        };
        let template = db.ensure_template().await;
        db.name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = db.connect_as(&db.superuser.clone(), "postgres").await;
        // Templates cannot be copied while another CREATE DATABASE reads them: serialise.
        admin
            .execute("SELECT pg_advisory_lock(7414)", &[])
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {} TEMPLATE {template}", db.name))
            .await
            .expect("create the test database");
        admin
            .execute("SELECT pg_advisory_unlock(7414)", &[])
            .await
            .unwrap();
        db
    }

    /// Migrates a template named after the migrations' content, once per cluster.
    async fn ensure_template(&self) -> String {
        let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut files: Vec<_> = std::fs::read_dir(&migrations)
            .expect("read migrations/")
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut digest = Sha256::new();
        for file in files {
            digest.update(std::fs::read(file).unwrap());
        }
        // The logins are made by the migration too: a template from before a login was
        // added is not reused.
        for login in [APP_LOGIN, RELAY_LOGIN, OPERATOR_LOGIN, WORKER_LOGIN] {
            digest.update(login.as_bytes());
        }
        let template = format!("latch_tpl_{}", &hex::encode(digest.finalize())[..16]);

        let admin = self.connect_as(&self.superuser, "postgres").await;
        admin
            .execute("SELECT pg_advisory_lock(7414)", &[])
            .await
            .unwrap();
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await
            .unwrap()
            .is_some();
        if !exists {
            admin
                .batch_execute(&format!("CREATE DATABASE {template}"))
                .await
                .unwrap();
            migrate(&Secret::new(self.url_for(&self.superuser, &template))).await;
        }
        admin
            .execute("SELECT pg_advisory_unlock(7414)", &[])
            .await
            .unwrap();
        template
    }

    /// Database `latch` on a cluster of its own reached through several servers
    /// (`host:port,host:port`): roles connect with `target_session_attrs=read-write`, so
    /// they find whichever is the primary. Created and migrated now, as `superuser`.
    pub async fn migrated_on(hosts: &str, superuser: &str) -> TestDb {
        let db = TestDb {
            name: "latch".to_owned(),
            superuser: superuser.to_owned(),
            hosts: hosts.to_owned(),
            query: "?target_session_attrs=read-write".to_owned(),
        };
        db.connect_as(superuser, "postgres")
            .await
            .batch_execute("CREATE DATABASE latch")
            .await
            .expect("create database latch");
        migrate(&db.owner_url()).await;
        db
    }

    /// The server(s) as `host:port[,host:port]`.
    pub fn hosts(&self) -> &str {
        &self.hosts
    }

    fn url_for(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@{}/{database}{}", self.hosts, self.query)
    }

    /// The application login's URL (what `LATCH_DATABASE_URL` holds in production).
    pub fn app_url(&self) -> Secret<String> {
        Secret::new(self.url_for(APP_LOGIN, &self.name))
    }

    /// The relay's login's URL.
    pub fn relay_url(&self) -> Secret<String> {
        Secret::new(self.url_for(RELAY_LOGIN, &self.name))
    }

    /// The operator commands' login's URL.
    pub fn operator_url(&self) -> Secret<String> {
        Secret::new(self.url_for(OPERATOR_LOGIN, &self.name))
    }

    /// The worker's login's URL.
    pub fn worker_url(&self) -> Secret<String> {
        Secret::new(self.url_for(WORKER_LOGIN, &self.name))
    }

    /// The schema owner's URL (what `latch migrate` uses).
    pub fn owner_url(&self) -> Secret<String> {
        Secret::new(self.url_for(&self.superuser, &self.name))
    }

    /// A connection with the owner's rights, for inspecting and arranging state.
    pub async fn owner(&self) -> tokio_postgres::Client {
        self.connect_as(&self.superuser, &self.name).await
    }

    /// A connection as the application login.
    pub async fn app(&self) -> tokio_postgres::Client {
        self.connect_as(APP_LOGIN, &self.name).await
    }

    /// A connection as `login` (one of the logins above).
    pub async fn login(&self, login: &str) -> tokio_postgres::Client {
        self.connect_as(login, &self.name).await
    }

    async fn connect_as(&self, user: &str, database: &str) -> tokio_postgres::Client {
        latch_core::db::connect(&Secret::new(self.url_for(user, database)))
            .await
            .unwrap_or_else(|e| panic!("connect to {database} as {user}: {e:#}"))
    }
}
