//! `spawn_app()`: a real API on a free port over a fresh database, and one method per
//! endpoint so tests read like the spec.

use std::time::Duration;

use latch_api::{ApiConfig, Application, RateLimits};
use latch_core::config::{DatabaseConfig, HttpConfig};
use latch_core::credentials::{self, CredentialKind};
use latch_core::shutdown::CancellationToken;
use latch_testkit::TestDb;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub struct TestApp {
    pub base: String,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub admin_token: String,
    shutdown: CancellationToken,
}

/// A door with an enrolled reader.
pub struct TestDoor {
    pub id: Uuid,
    pub reader_id: Uuid,
    pub reader_key: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(64 * 1024).await
}

pub async fn spawn_app_with(body_limit_bytes: usize) -> TestApp {
    spawn_app_configured(body_limit_bytes, unlimited()).await
}

/// The default settings without rate limits: most tests send more than a reader would,
/// and the limits have tests of their own (`limits.rs`).
pub fn unlimited() -> ApiConfig {
    ApiConfig {
        rate_limits: RateLimits::OFF,
        ..ApiConfig::default()
    }
}

/// An API with its own settings (fast reader checks, small batches, ...).
pub async fn spawn_app_configured(body_limit_bytes: usize, api: ApiConfig) -> TestApp {
    spawn(http_config(body_limit_bytes), Duration::from_secs(5), api).await
}

/// An API whose requests must be answered within `request_timeout`, and whose database
/// statements are cancelled after `statement_timeout`.
pub async fn spawn_app_with_timeouts(
    request_timeout: Duration,
    statement_timeout: Duration,
) -> TestApp {
    let http = HttpConfig {
        request_timeout,
        ..http_config(64 * 1024)
    };
    spawn(http, statement_timeout, unlimited()).await
}

fn http_config(body_limit_bytes: usize) -> HttpConfig {
    HttpConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        body_limit_bytes,
        workers: 2,
        request_timeout: Duration::from_secs(5),
    }
}

/// An API serving HTTPS with `api.tls`; the test's client trusts `ca_pem`.
pub async fn spawn_app_tls(api: ApiConfig, ca_pem: &str) -> TestApp {
    install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA certificate");
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .expect("HTTPS client");
    spawn_with_client(http_config(64 * 1024), Duration::from_secs(5), api, client).await
}

/// The process's rustls provider (ring), before any client or server is built.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn spawn(http: HttpConfig, statement_timeout: Duration, api: ApiConfig) -> TestApp {
    install_crypto_provider();
    spawn_with_client(http, statement_timeout, api, reqwest::Client::new()).await
}

async fn spawn_with_client(
    http: HttpConfig,
    statement_timeout: Duration,
    api: ApiConfig,
    client: reqwest::Client,
) -> TestApp {
    let db = TestDb::new().await;
    let database = DatabaseConfig {
        pool_size: 8,
        statement_timeout,
        ..DatabaseConfig::with_url(db.app_url())
    };
    let (base, shutdown) = start(http, &database, api);

    // The first administrator is made the way `latch admins add` makes one.
    let token = credentials::generate(CredentialKind::AdminToken);
    db.owner()
        .await
        .execute(
            "SELECT latch_add_admin($1, $2, 'test admin', $3)",
            &[&Uuid::now_v7(), &Uuid::now_v7(), &token.hash],
        )
        .await
        .expect("add the admin");
    TestApp {
        base,
        db,
        http: client,
        admin_token: token.plain.expose().clone(),
        shutdown,
    }
}

/// Builds and starts an API process over `db`; answers its base URL and its stop token.
fn start(
    http: HttpConfig,
    database: &DatabaseConfig,
    api: ApiConfig,
) -> (String, CancellationToken) {
    let scheme = if api.tls.is_some() { "https" } else { "http" };
    let app = Application::build(http, database, prometheus::Registry::new(), api)
        .expect("build the API");
    let base = format!("{scheme}://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until(shutdown.clone()));
    (base, shutdown)
}

/// A second API process over the same database, as another replica would be.
pub struct Replica {
    pub base: String,
    shutdown: CancellationToken,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Response {
        self.request(Method::POST, path, token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, token)
            .send()
            .await
            .expect("request")
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Value {
        let response = self.post(path, &self.admin_token, body).await;
        expect_status(response, StatusCode::CREATED).await
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        expect_status(self.get(path, &self.admin_token).await, StatusCode::OK).await
    }

    pub async fn create_door(&self, site: &str, name: &str) -> TestDoor {
        let door = self
            .admin_post("/v1/doors", &json!({"site": site, "name": name}))
            .await;
        let id = uuid(&door["id"]);
        let reader = self
            .admin_post(
                "/v1/readers",
                &json!({"door_id": id, "name": format!("{name} reader")}),
            )
            .await;
        TestDoor {
            id,
            reader_id: uuid(&reader["id"]),
            reader_key: reader["key"].as_str().expect("key").to_owned(),
        }
    }

    pub async fn create_holder(&self, card_id: &str) -> Uuid {
        let holder = self
            .admin_post(
                "/v1/holders",
                &json!({"card_id": card_id, "name": format!("Holder {card_id}")}),
            )
            .await;
        uuid(&holder["id"])
    }

    pub async fn grant(&self, holder: Uuid, door: Uuid) -> Uuid {
        let grant = self
            .admin_post("/v1/grants", &json!({"holder_id": holder, "door_id": door}))
            .await;
        uuid(&grant["id"])
    }

    pub async fn unlock(&self, reader_key: &str, card_id: &str) -> Response {
        self.post("/v1/unlock", reader_key, &json!({"card_id": card_id}))
            .await
    }

    /// Another API process over this app's database.
    pub fn spawn_replica(&self, api: ApiConfig) -> Replica {
        let database = DatabaseConfig {
            pool_size: 8,
            ..DatabaseConfig::with_url(self.db.app_url())
        };
        let (base, shutdown) = start(http_config(64 * 1024), &database, api);
        Replica { base, shutdown }
    }

    pub async fn revoke(&self, grant: Uuid) {
        let response = self
            .request(
                Method::DELETE,
                &format!("/v1/grants/{grant}"),
                &self.admin_token,
            )
            .send()
            .await
            .expect("request");
        expect_status(response, StatusCode::OK).await;
    }

    /// Enrols another reader at `door`; answers its id and key.
    pub async fn enrol_reader(
        &self,
        door: Uuid,
        offline_after_secs: Option<i64>,
    ) -> (Uuid, String) {
        let reader = self
            .admin_post(
                "/v1/readers",
                &json!({"door_id": door, "name": format!("reader {}", Uuid::now_v7()),
                        "offline_after_secs": offline_after_secs}),
            )
            .await;
        (
            uuid(&reader["id"]),
            reader["key"].as_str().expect("key").to_owned(),
        )
    }

    pub async fn upload(&self, reader_key: &str, events: &Value) -> Response {
        self.post(
            "/v1/readers/events:batch",
            reader_key,
            &json!({ "events": events }),
        )
        .await
    }

    pub async fn alarm(&self, reader_key: &str, body: &Value) -> Response {
        self.post("/v1/doors/alarm", reader_key, body).await
    }

    pub async fn gaps(&self, reader: Uuid) -> Value {
        self.admin_get(&format!("/v1/readers/{reader}/gaps")).await
    }

    /// The value of a metric of this process (summed over its labels).
    pub async fn metric(&self, name: &str) -> f64 {
        metric(&self.http, &self.base, name).await
    }

    /// How many actions of `kind` the registry holds.
    pub async fn count_kind(&self, kind: &str) -> i64 {
        self.db
            .owner()
            .await
            .query_one("SELECT count(*) FROM actions WHERE kind = $1", &[&kind])
            .await
            .expect("count")
            .get(0)
    }

    /// The outbox rows of the event with this id: (subject, payload).
    pub async fn outbox_of(&self, event_id: Uuid) -> Vec<(String, Value)> {
        self.db
            .owner()
            .await
            .query(
                "SELECT subject, payload FROM outbox WHERE event_id = $1 ORDER BY id",
                &[&event_id],
            )
            .await
            .expect("outbox")
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    }

    /// The server processes of the API's own database sessions (its pools keep them open).
    pub async fn api_sessions(&self) -> Vec<i32> {
        self.db
            .owner()
            .await
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
                &[&self.db.name, &latch_testkit::APP_LOGIN],
            )
            .await
            .expect("sessions")
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// A token made the way `latch tokens add` makes one: `scopes`, and `sites` (`None`:
    /// every site), without expiry. Answers its id and plain value.
    pub async fn token(&self, scopes: &[&str], sites: Option<&[&str]>) -> (Uuid, String) {
        let token = credentials::generate(CredentialKind::AdminToken);
        let id = Uuid::now_v7();
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let sites: Option<Vec<String>> =
            sites.map(|sites| sites.iter().map(|s| (*s).to_owned()).collect());
        self.db
            .owner()
            .await
            .execute(
                "SELECT latch_add_token($1, $2, 'test token', $3, $4, $5, NULL)",
                &[&Uuid::now_v7(), &id, &token.hash, &scopes, &sites],
            )
            .await
            .expect("add the token");
        (id, token.plain.expose().clone())
    }

    /// Row counts of the registry and the outbox (as the owner, who sees everything).
    pub async fn counts(&self) -> (i64, i64) {
        let row = self
            .db
            .owner()
            .await
            .query_one(
                "SELECT (SELECT count(*) FROM actions), (SELECT count(*) FROM outbox)",
                &[],
            )
            .await
            .expect("count");
        (row.get(0), row.get(1))
    }
}

/// The value of a metric at `base`'s `/metrics` (summed over its labels; 0 when absent).
pub async fn metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn uuid(value: &Value) -> Uuid {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a uuid: {value}"))
}

/// Asserts the status and returns the JSON body.
pub async fn expect_status(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Asserts an error response: status and `error.code`.
pub async fn expect_error(response: Response, status: StatusCode, code: &str) -> Value {
    let body = expect_status(response, status).await;
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["error"]["message"].is_string(), "body: {body}");
    body
}
