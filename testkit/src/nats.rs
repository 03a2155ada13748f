use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private nats-server with JetStream and an fsync on every write, like production.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// More of the server's configuration (a `tls` block).
    extra: String,
    /// Directories the server reads from as long as it lives.
    keep: Vec<tempfile::TempDir>,
}

impl NatsServer {
    /// Starts a server on a port it picks itself.
    pub fn start() -> NatsServer {
        Self::start_with(String::new())
    }

    /// Starts a server that speaks only TLS, with this certificate and key (PEM).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> NatsServer {
        let dir = tempfile::tempdir().expect("temp dir for the certificate");
        let cert = crate::pki::write(dir.path(), "nats.crt", cert_pem);
        let key = crate::pki::write(dir.path(), "nats.key", key_pem);
        let mut server = Self::start_with(format!(
            "tls {{ cert_file: {:?}, key_file: {:?} }}\n",
            cert.display().to_string(),
            key.display().to_string()
        ));
        // The files must outlive the server's restarts: keep them with its store.
        server.keep.push(dir);
        server
    }

    fn start_with(extra: String) -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("latch-nats-")
            .tempdir()
            .expect("temp dir for nats-server");
        let mut server = NatsServer {
            child: None,
            port: 0,
            dir,
            extra,
            keep: Vec::new(),
        };
        server.spawn(None);
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: nothing gets flushed that was not already synced).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn(Some(self.port));
    }

    fn spawn(&mut self, port: Option<u16>) {
        let binary = std::env::var("LATCH_NATS_SERVER").unwrap_or_else(|_| {
            panic!(
                "LATCH_NATS_SERVER is not set: run the tests with ./deploy/local/test.sh, \
                 which installs a current nats-server and points this variable at it"
            )
        });
        let config = self.dir.path().join("nats.conf");
        let store = self.dir.path().join("store");
        std::fs::write(
            &config,
            format!(
                "jetstream {{ store_dir: {store:?}, sync_interval: always }}\n{extra}",
                store = store.display().to_string(),
                extra = self.extra,
            ),
        )
        .expect("write nats.conf");
        let ports_dir = self.dir.path().join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).expect("ports dir");
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let child = Command::new(&binary)
            .args(["-c"])
            .arg(&config)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "--ports_file_dir"])
            .arg(&ports_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        self.child = Some(child);
        self.port = wait_for_port(&ports_dir);
    }
}

/// nats-server writes `<name>_<pid>.ports` once it listens.
fn wait_for_port(dir: &std::path::Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let file: Option<PathBuf> = std::fs::read_dir(dir)
            .ok()
            .and_then(|mut entries| entries.next())
            .and_then(|e| e.ok())
            .map(|e| e.path());
        let port = file
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|json| {
                let url = json["nats"][0].as_str()?.to_owned();
                url.rsplit(':').next()?.parse().ok()
            });
        if let Some(port) = port {
            return port;
        }
        assert!(
            Instant::now() < deadline,
            "nats-server did not report its port within 20 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A JetStream cluster of private nats-servers on loopback (`n0`, `n1`, …) joined by
/// cluster routes, each with its own store; streams on it can keep 3 replicas.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` servers routed to each other. The route ports are free ports picked
    /// now (the client ports are picked by the servers themselves).
    pub fn start(size: usize) -> NatsCluster {
        let route_ports: Vec<u16> = (0..size).map(|_| crate::process::free_port()).collect();
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        let nodes = (0..size)
            .map(|i| {
                NatsServer::start_with(format!(
                    "server_name: n{i}\ncluster {{ name: latch, listen: \"127.0.0.1:{}\", routes: [{}] }}\n",
                    route_ports[i],
                    routes.join(", ")
                ))
            })
            .collect();
        NatsCluster { nodes }
    }

    /// Every node's URL, separated by commas (what `LATCH_NATS_URL` takes).
    pub fn url(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(NatsServer::url).collect();
        urls.join(",")
    }

    /// The node named `name` (`n0`, …).
    pub fn node(&mut self, name: &str) -> &mut NatsServer {
        let index: usize = name
            .strip_prefix('n')
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("no node {name}"));
        &mut self.nodes[index]
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
