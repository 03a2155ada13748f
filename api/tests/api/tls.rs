//! HTTPS: readers connect over TLS to a private CA's certificate; a reader bound to a
//! client certificate is found only with that certificate; a certificate replaced on disk
//! is served to new connections without a restart.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use latch_api::tls::TlsFiles;
use latch_testkit::pki::{Ca, Purpose, write};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// A client trusting `ca`, on a connection of its own, with `identity` if given.
fn client(ca: &Ca, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA")])
        .tls_info(true)
        .pool_max_idle_per_host(0);
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().expect("client")
}

struct Served {
    app: TestApp,
    ca: Ca,
    dir: tempfile::TempDir,
}

async fn serve_https() -> Served {
    let ca = Ca::new("latch test CA");
    let server = ca.issue("latch api", Purpose::Server);
    let dir = tempfile::tempdir().expect("dir");
    let files = TlsFiles {
        cert: write(dir.path(), "api.crt", &server.cert_pem),
        key: write(dir.path(), "api.key", &server.key_pem),
        client_ca: Some(write(dir.path(), "ca.crt", &ca.pem)),
    };
    let api = latch_api::ApiConfig {
        tls: Some(files),
        ..unlimited()
    };
    let app = spawn_app_tls(api, &ca.pem).await;
    Served { app, ca, dir }
}

async fn unlock(client: &reqwest::Client, app: &TestApp, key: &str) -> reqwest::Result<StatusCode> {
    client
        .post(format!("{}/v1/unlock", app.base))
        .bearer_auth(key)
        .json(&json!({"card_id": "ADA"}))
        .send()
        .await
        .map(|r| r.status())
}

#[tokio::test]
async fn readers_unlock_over_https_and_a_bound_reader_only_with_its_certificate() {
    let Served { app, ca, dir: _dir } = serve_https().await;
    assert!(app.base.starts_with("https://"));
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    app.grant(holder, door.id).await;

    // A reader without a certificate of its own: its key is enough, over TLS.
    let anonymous = client(&ca, None);
    assert_eq!(
        unlock(&anonymous, &app, &door.reader_key).await.unwrap(),
        StatusCode::OK
    );
    let response = anonymous
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(
        response
            .headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000"),
        "HSTS under TLS"
    );
    // Plain HTTP to the HTTPS port gets no answer.
    let plain = app.base.replace("https://", "http://");
    assert!(
        reqwest::Client::new()
            .get(format!("{plain}/healthz"))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );

    // A reader bound to its certificate.
    let own = ca.issue("reader 1", Purpose::Client);
    let other = ca.issue("reader 2", Purpose::Client);
    let enrolled = app
        .admin_post(
            "/v1/readers",
            &json!({"door_id": door.id, "name": "Bound", "client_cert_sha256": own.sha256_hex()}),
        )
        .await;
    assert_eq!(enrolled["client_cert_sha256"], own.sha256_hex());
    let key = enrolled["key"].as_str().expect("key").to_owned();

    let with_own = client(&ca, Some(own.identity()));
    assert_eq!(unlock(&with_own, &app, &key).await.unwrap(), StatusCode::OK);
    assert_eq!(
        unlock(&anonymous, &app, &key).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "the key alone is not enough"
    );
    let with_other = client(&ca, Some(other.identity()));
    assert_eq!(
        unlock(&with_other, &app, &key).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "another certificate of the same CA is not enough"
    );
    // A certificate from another CA does not get through the handshake.
    let stranger = Ca::new("another CA").issue("reader 1", Purpose::Client);
    let with_stranger = client(&ca, Some(stranger.identity()));
    assert!(unlock(&with_stranger, &app, &key).await.is_err());
    // An unbound reader's key works with any accepted certificate too.
    assert_eq!(
        unlock(&with_other, &app, &door.reader_key).await.unwrap(),
        StatusCode::OK
    );

    // Bad fingerprints are refused with nothing written.
    let before = app.counts().await;
    for bad in [
        "ab",
        "zz".repeat(32).as_str(),
        &format!("{}:", "ab".repeat(32)),
    ] {
        expect_error(
            app.post(
                "/v1/readers",
                &app.admin_token,
                &json!({"door_id": door.id, "name": "Bad", "client_cert_sha256": bad}),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        )
        .await;
    }
    assert_eq!(app.counts().await, before);
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_served_to_new_connections_without_a_restart() {
    let Served { app, ca, dir } = serve_https().await;
    let served = async || {
        let response = client(&ca, None)
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .expect("healthz");
        response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .map(<[u8]>::to_vec)
            .expect("the server's certificate")
    };
    let first = served().await;

    // (A mismatched pair is never served: `latch_api::tls` tests that without waiting.)
    assert_ne!(first, Vec::<u8>::new());
    let next = ca.issue("latch api, renewed", Purpose::Server);
    write(dir.path(), "api.key", &next.key_pem);
    write(dir.path(), "api.crt", &next.cert_pem);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if served().await == next.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still the old certificate after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Turns TLS on in the test run's PostgreSQL cluster with a certificate from `ca` (for
/// 127.0.0.1), as its administrator would: files in the data directory, owned by the
/// cluster's user, and a configuration reload. Plain connections keep working.
async fn postgres_serves_tls(ca: &Ca) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
    let data = PathBuf::from(
        std::env::var("LATCH_PG_DATA")
            .expect("LATCH_PG_DATA names the test cluster (deploy/local/test.sh sets it)"),
    );
    let owner = std::fs::metadata(&data).expect("the data directory");
    let server = ca.issue("postgres", Purpose::Server);
    let cert = data.join("latch-test-server.crt");
    let key = data.join("latch-test-server.key");
    for (path, text) in [(&cert, &server.cert_pem), (&key, &server.key_pem)] {
        std::fs::write(path, text).expect("write");
        chown(path, Some(owner.uid()), Some(owner.gid())).expect("chown");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let superuser = std::env::var("LATCH_TEST_PG_URL").expect("LATCH_TEST_PG_URL");
    let admin = latch_core::db::connect(&latch_core::config::Secret::new(superuser))
        .await
        .expect("the cluster's superuser");
    for statement in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        admin.simple_query(&statement).await.expect("turn TLS on");
    }
    latch_testkit::wait_until(
        "PostgreSQL serving TLS",
        Duration::from_secs(15),
        || async {
            let on: String = admin.query_one("SHOW ssl", &[]).await.ok()?.get(0);
            (on == "on").then_some(())
        },
    )
    .await;
}

/// Whether the connection `client` talks over is encrypted, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

#[tokio::test]
async fn every_connection_speaks_tls_to_postgresql_when_its_url_asks() {
    let app = spawn_app().await;
    let ca = Ca::new("latch test database CA");
    postgres_serves_tls(&ca).await;
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = write(dir.path(), "pg-ca.crt", &ca.pem);
    let plain = app.db.app_url().expose().clone();
    let with = |query: &str| latch_core::config::Secret::new(format!("{plain}?{query}"));
    let tls_url = with(&format!(
        "sslmode=require&sslrootcert={}",
        ca_file.display()
    ));

    // A single connection (migrations, operator commands) and a pool (every role).
    let client = latch_core::db::connect(&tls_url)
        .await
        .expect("connect over TLS");
    assert!(encrypted(&client).await);
    let pool = latch_core::db::pool(&latch_core::config::DatabaseConfig::with_url(
        tls_url.clone(),
    ))
    .expect("pool");
    let pooled = pool.get().await.expect("pooled connection");
    assert!(encrypted(&pooled).await);
    // Without sslmode=require a connection stays plain, as before.
    let client = latch_core::db::connect(&latch_core::config::Secret::new(plain.clone()))
        .await
        .expect("plain");
    assert!(!encrypted(&client).await);

    // The server's certificate must come from the CA named: another CA's is refused, and
    // so is the system's trust store (which does not know the test CA).
    let other = Ca::new("another CA");
    let other_file = write(dir.path(), "other-ca.crt", &other.pem);
    let wrong = with(&format!(
        "sslmode=require&sslrootcert={}",
        other_file.display()
    ));
    let error = latch_core::db::connect(&wrong)
        .await
        .expect_err("a foreign CA");
    assert!(format!("{error:#}").contains("certificate"), "{error:#}");
    assert!(
        latch_core::db::connect(&with("sslmode=require"))
            .await
            .is_err()
    );
    // A CA without sslmode=require is a mistake in the URL, said so.
    let error = latch_core::db::connect(&with(&format!("sslrootcert={}", ca_file.display())))
        .await
        .expect_err("sslrootcert alone");
    assert!(
        format!("{error:#}").contains("sslmode=require"),
        "{error:#}"
    );

    // A whole API on the TLS URL serves a reader.
    let door = app.create_door("hq", "Main").await;
    let holder = app.create_holder("ADA").await;
    app.grant(holder, door.id).await;
    let api = latch_api::Application::build(
        latch_core::config::HttpConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            body_limit_bytes: 64 * 1024,
            workers: 1,
            request_timeout: Duration::from_secs(5),
        },
        &latch_core::config::DatabaseConfig {
            pool_size: 2,
            ..latch_core::config::DatabaseConfig::with_url(tls_url)
        },
        prometheus::Registry::new(),
        unlimited(),
    )
    .expect("build");
    let base = format!("http://127.0.0.1:{}", api.port());
    let stop = latch_core::shutdown::CancellationToken::new();
    tokio::spawn(api.run_until(stop.clone()));
    let answer = reqwest::Client::new()
        .post(format!("{base}/v1/unlock"))
        .bearer_auth(&door.reader_key)
        .json(&json!({"card_id": "ADA"}))
        .send()
        .await
        .expect("unlock");
    let body = expect_status(answer, StatusCode::OK).await;
    assert_eq!(body["decision"], "granted");
    stop.cancel();
}
