//! HTTPS: readers connect over TLS to a private CA's certificate; a reader bound to a
//! client certificate is found only with that certificate; a certificate replaced on disk
//! is served to new connections without a restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use latch_api::tls::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// A private CA, as the local stack makes one.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate and its key, in PEM, and the certificate's DER.
struct Issued {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Issued {
    fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.cert_pem, self.key_pem).as_bytes())
            .expect("client identity")
    }

    fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(&self.der))
    }
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn issue(&self, name: &str, purpose: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().expect("key");
        let names = match purpose {
            ExtendedKeyUsagePurpose::ServerAuth => vec!["localhost".into(), "127.0.0.1".into()],
            _ => Vec::new(),
        };
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    // Through a temporary file and a rename, as certificate tools replace files.
    let partial = dir.join(format!(".{name}.partial"));
    std::fs::write(&partial, text).expect("write");
    std::fs::rename(&partial, &path).expect("rename");
    path
}

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
    let server = ca.issue("latch api", ExtendedKeyUsagePurpose::ServerAuth);
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
    let own = ca.issue("reader 1", ExtendedKeyUsagePurpose::ClientAuth);
    let other = ca.issue("reader 2", ExtendedKeyUsagePurpose::ClientAuth);
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
    let stranger = Ca::new("another CA").issue("reader 1", ExtendedKeyUsagePurpose::ClientAuth);
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

    // A broken pair (a key of another certificate) is not taken: the old one stays.
    let next = ca.issue("latch api, renewed", ExtendedKeyUsagePurpose::ServerAuth);
    let unrelated = ca.issue("unrelated", ExtendedKeyUsagePurpose::ServerAuth);
    write(dir.path(), "api.key", &unrelated.key_pem);
    write(dir.path(), "api.crt", &next.cert_pem);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert_eq!(served().await, first, "a mismatched pair was served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The matching key arrives: new connections get the new certificate.
    write(dir.path(), "api.key", &next.key_pem);
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
