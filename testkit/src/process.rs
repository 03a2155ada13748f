//! Processes of the binary under test: started with their output in a log file, killed
//! when dropped, and servers started on a free port and waited for until they answer.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::wait_until;

/// How long a server may take to answer its readiness path.
const DEADLINE: Duration = Duration::from_secs(60);
/// Ports tried before giving up (another process can take a free port before the server binds it).
const START_ATTEMPTS: u32 = 5;

/// The body of a 2xx answer to GET `url`, or `None`.
pub async fn get_text(http: &reqwest::Client, url: &str) -> Option<String> {
    let response = http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// A child process, killed when dropped; its output goes to a log file.
pub struct Proc {
    name: String,
    child: Mutex<Child>,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child: Mutex::new(child),
            log,
        }
    }

    /// Kills it outright (SIGKILL): no clean shutdown.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Asks it to stop (SIGTERM), as an operator or an orchestrator would; see [`Proc::exited`].
    pub fn terminate(&self) {
        let pid = self.child.lock().unwrap().id();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }

    pub fn exited(&self) -> bool {
        matches!(self.child.lock().unwrap().try_wait(), Ok(Some(_)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The end of its log, for a failure message.
    pub fn tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(30);
        format!(
            "--- {} (log {}) ---\n{}",
            self.name,
            self.log.display(),
            lines[start..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A port free on loopback now (for a server that must be told its port; one that picks
/// its own is better).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A started server and the port it listens on.
pub struct Server {
    pub proc: Proc,
    pub port: u16,
}

/// Starts a server on a free port (`make(port)` builds its command) and waits until
/// `ready_path` answers 2xx. A server that exits because someone else took the port in the
/// meantime is started again on another one; any other exit fails the test with its log.
pub async fn start_listening(
    http: &reqwest::Client,
    name: &str,
    dir: &Path,
    ready_path: &str,
    make: impl Fn(u16) -> Command,
) -> Server {
    for attempt in 1..=START_ATTEMPTS {
        let port = free_port();
        let proc = Proc::spawn(name, make(port), dir.join(format!("{name}-{attempt}.log")));
        let url = format!("http://127.0.0.1:{port}{ready_path}");
        let ready = {
            let (proc, url) = (&proc, &url);
            wait_until(
                &format!("{name} to answer {url}"),
                DEADLINE,
                || async move {
                    if proc.exited() {
                        return Some(false);
                    }
                    get_text(http, url).await.map(|_| true)
                },
            )
            .await
        };
        if ready {
            return Server { proc, port };
        }
        let log = proc.log_text().to_ascii_lowercase();
        if log.contains("address already in use") || log.contains("cannot listen") {
            eprintln!("{name}: port {port} was taken; retrying on another one");
            continue;
        }
        panic!("{name} exited at start\n{}", proc.tail());
    }
    panic!("{name} could not bind a free port in {START_ATTEMPTS} attempts");
}
