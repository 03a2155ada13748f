//! HTTPS for `latch api`: the certificate and key from files, taken up again without a
//! restart when they change, TLS 1.2 and 1.3 only, and optional client certificates.
//!
//! - The server certificate is resolved per handshake by [`ReloadingCert`], which looks at
//!   the files' size and modification time at most once a second and loads them again when
//!   they changed: new connections get the new certificate, open ones keep theirs. A pair
//!   that does not load (half written, or a key that does not match the certificate) is
//!   logged and the previous pair kept.
//! - With a client CA (`LATCH_HTTP_TLS_CLIENT_CA_FILE`), a client may present a certificate
//!   issued by it; one that presents another is refused in the handshake, and one that
//!   presents none is served as before. The SHA-256 of a verified client certificate is
//!   kept with the connection ([`ClientCert`]); a reader enrolled with a certificate
//!   fingerprint is found only when its key comes with that certificate (see
//!   [`crate::auth::ReaderKey`]).

use std::any::Any;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

/// The files HTTPS is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the certificate chain, leaf first (`LATCH_HTTP_TLS_CERT_FILE`).
    pub cert: PathBuf,
    /// PEM: its private key (`LATCH_HTTP_TLS_KEY_FILE`).
    pub key: PathBuf,
    /// PEM: the CA(s) client certificates must come from (`LATCH_HTTP_TLS_CLIENT_CA_FILE`).
    pub client_ca: Option<PathBuf>,
}

/// How often the certificate files are looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The rustls configuration of the API's listener.
pub fn server_config(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS 1.2 and 1.3")?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("a CA certificate in {}", ca.display()))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .context("the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let resolver = ReloadingCert::load(files.cert.clone(), files.key.clone(), provider)?;
    Ok(builder.with_cert_resolver(Arc::new(resolver)))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM certificates", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

/// Size and modification time of both files: a change of either means "load again".
type Stamp = [(u64, Option<SystemTime>); 2];

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |path: &Path| {
        fs::metadata(path)
            .map(|m| (m.len(), m.modified().ok()))
            .unwrap_or((0, None))
    };
    [one(cert), one(key)]
}

/// Resolves the server certificate from its files, loading them again when they change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    current: Arc<CertifiedKey>,
    stamp: Stamp,
    checked: Instant,
}

impl ReloadingCert {
    pub fn load(
        cert: PathBuf,
        key: PathBuf,
        provider: Arc<CryptoProvider>,
    ) -> anyhow::Result<ReloadingCert> {
        let stamp = stamp(&cert, &key);
        let current = Arc::new(certified_key(&cert, &key, &provider)?);
        Ok(ReloadingCert {
            cert,
            key,
            provider,
            state: Mutex::new(State {
                current,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The pair to serve now, loaded again first if the files changed.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= CHECK_EVERY {
            state.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now != state.stamp {
                match certified_key(&self.cert, &self.key, &self.provider) {
                    Ok(loaded) => {
                        state.current = Arc::new(loaded);
                        state.stamp = now;
                        tracing::info!(cert = %self.cert.display(), "TLS certificate loaded again");
                    }
                    // Kept unchanged in `stamp`, so the next check tries again.
                    Err(error) => tracing::warn!(
                        cert = %self.cert.display(),
                        error = format!("{error:#}"),
                        "the changed TLS certificate does not load; serving the previous one"
                    ),
                }
            }
        }
        state.current.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{} is not a PEM private key", key.display()))?;
    CertifiedKey::from_der(chain, key, provider).context("the key does not match the certificate")
}

/// The SHA-256 of the client certificate a connection presented (and the verifier
/// accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCert(pub [u8; 32]);

/// `HttpServer::on_connect`: keeps the client certificate's fingerprint with the
/// connection, for the requests it carries.
pub fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    let Some(tls) =
        connection.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>()
    else {
        return;
    };
    let (_, session) = tls.get_ref();
    if let Some(leaf) = session.peer_certificates().and_then(|certs| certs.first()) {
        data.insert(ClientCert(Sha256::digest(leaf.as_ref()).into()));
    }
}

/// A certificate fingerprint as administrators write it ([`FINGERPRINT_PATTERN`]): 64 hex
/// digits, or 32 pairs separated by `:` (as `openssl x509 -fingerprint -sha256` prints it).
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let digits: String = if text.len() == 95 {
        let pairs: Vec<&str> = text.split(':').collect();
        if pairs.len() != 32 || pairs.iter().any(|p| p.len() != 2) {
            return None;
        }
        pairs.concat()
    } else {
        text.to_owned()
    };
    if digits.len() != 64 {
        return None;
    }
    hex::decode(digits).ok()?.try_into().ok()
}

/// What [`parse_fingerprint`] accepts, as the OpenAPI document states it.
pub const FINGERPRINT_PATTERN: &str = "^([0-9a-fA-F]{64}|([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2})$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_with_or_without_colons() {
        let plain = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&plain), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&colons), Some([0xab; 32]));
        assert_eq!(parse_fingerprint("ab"), None);
        assert_eq!(parse_fingerprint(&format!("{}:", "ab".repeat(32))), None);
        assert_eq!(parse_fingerprint(&format!("a:b{}", "ab".repeat(31))), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
    }

    /// The reloader, made to look at its files now (its once-a-second check already due).
    fn due(reloader: &ReloadingCert) -> Arc<CertifiedKey> {
        if let Ok(mut state) = reloader.state.lock()
            && let Some(past) = Instant::now().checked_sub(CHECK_EVERY)
        {
            state.checked = past;
        }
        reloader.current()
    }

    #[test]
    fn a_mismatched_pair_on_disk_is_not_taken_and_the_matching_one_is() {
        use latch_testkit::pki::{Ca, Purpose, write};
        let ca = Ca::new("test CA");
        let (first, next, unrelated) = (
            ca.issue("api", Purpose::Server),
            ca.issue("api, renewed", Purpose::Server),
            ca.issue("unrelated", Purpose::Server),
        );
        let dir = tempfile::tempdir().expect("dir");
        let cert = write(dir.path(), "api.crt", &first.cert_pem);
        let key = write(dir.path(), "api.key", &first.key_pem);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let reloader = ReloadingCert::load(cert, key, provider).expect("load");
        let served = |reloader: &ReloadingCert| due(reloader).cert[0].as_ref().to_vec();
        assert_eq!(served(&reloader), first.der);

        // A key of another certificate beside the renewed one: the old pair stays.
        write(dir.path(), "api.key", &unrelated.key_pem);
        write(dir.path(), "api.crt", &next.cert_pem);
        assert_eq!(served(&reloader), first.der, "a mismatched pair was served");
        // Its key arrives: the renewed pair is served from now on.
        write(dir.path(), "api.key", &next.key_pem);
        assert_eq!(served(&reloader), next.der);
    }

    #[test]
    fn the_document_states_the_fingerprint_pattern_the_api_reads() {
        use utoipa::OpenApi;
        let document = serde_json::to_value(crate::openapi::ApiDoc::openapi()).expect("JSON");
        assert_eq!(
            document["components"]["schemas"]["NewReader"]["properties"]["client_cert_sha256"]["pattern"],
            FINGERPRINT_PATTERN
        );
    }
}
