//! The main listener and its supervisor, which makes `down` real.
//!
//! `down` must look like a dead process to the worker: new connections are refused (the
//! port is closed, not answered with an error) and open connections are cut. So the
//! supervisor runs its own accept loop instead of `axum::serve`: each connection is served
//! by hyper under a cancellation token of the current "generation". On `down` it drops
//! the listening socket, cancels the generation and waits for its connections to be gone,
//! and only then reports the listener closed; on `down = false` it binds the same address
//! again (with `SO_REUSEADDR`, so connections left in TIME_WAIT do not block it).
//!
//! Every revision of the faults is answered with a [`ListenerReport`], which is what
//! [`SimState::set_faults`] waits for. This module owns sockets and connections only; it
//! does not know what the routes do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::{ListenerReport, ListenerState, Revised, SimState};

/// Pause before binding again after a failure, and after a failed `accept` (which is
/// usually "too many open files" and would otherwise spin).
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Binds `addr` for listening, allowing a quick rebind of the same port.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Why the serving of one generation ended.
enum Stop {
    Down,
    Shutdown,
}

/// Runs the main listener on `addr` until `shutdown`, following `down` in the faults.
/// `listener` is the already bound socket, or `None` when starting down.
pub(crate) async fn supervise(
    addr: SocketAddr,
    listener: Option<TcpListener>,
    router: Router,
    state: Arc<SimState>,
    shutdown: CancellationToken,
) {
    let mut faults = state.watch_faults();
    let reports = state.listener_reports();
    let mut listener = listener;
    loop {
        let (revision, down) = {
            let current = faults.borrow_and_update();
            (current.revision, current.faults.down)
        };
        if down {
            if listener.take().is_some() {
                tracing::info!(%addr, "main listener closed (down)");
            }
            report(reports, revision, ListenerState::Closed);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = faults.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let current = match listener.take() {
            Some(current) => current,
            None => match bind(addr) {
                Ok(rebound) => {
                    tracing::info!(%addr, "main listener listening again (up)");
                    rebound
                }
                Err(error) => {
                    tracing::warn!(%addr, %error, "cannot listen again; retrying");
                    let message = format!("cannot bind {addr}: {error}");
                    report(reports, revision, ListenerState::Failed(message));
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = faults.changed() => {}
                        _ = tokio::time::sleep(RETRY_PAUSE) => {}
                    }
                    continue;
                }
            },
        };
        report(reports, revision, ListenerState::Listening);
        let connections = Generation::default();
        let stop = serve(
            &current,
            &router,
            &connections,
            &mut faults,
            reports,
            &shutdown,
        )
        .await;
        // Close the port before cutting connections, so that no new one slips in.
        drop(current);
        connections.cut().await;
        if let Stop::Shutdown = stop {
            return;
        }
    }
}

/// Accepts connections until the faults say `down` or shutdown comes.
async fn serve(
    listener: &TcpListener,
    router: &Router,
    connections: &Generation,
    faults: &mut watch::Receiver<Revised>,
    reports: &watch::Sender<ListenerReport>,
    shutdown: &CancellationToken,
) -> Stop {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Stop::Shutdown,
            changed = faults.changed() => {
                if changed.is_err() {
                    return Stop::Shutdown;
                }
                let (revision, down) = {
                    let current = faults.borrow_and_update();
                    (current.revision, current.faults.down)
                };
                if down {
                    // The outer loop reads this revision again and reports it closed.
                    return Stop::Down;
                }
                report(reports, revision, ListenerState::Listening);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => connections.serve(stream, router.clone()),
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            },
        }
    }
}

fn report(reports: &watch::Sender<ListenerReport>, revision: u64, state: ListenerState) {
    reports.send_replace(ListenerReport { revision, state });
}

/// The connections accepted while the listener was up, cut together when it goes down.
#[derive(Default)]
struct Generation {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Generation {
    fn serve(&self, stream: TcpStream, router: Router) {
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            let builder = Builder::new(TokioExecutor::new());
            let connection =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
            tokio::select! {
                served = connection => {
                    if let Err(error) = served {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                // Dropping the connection closes its socket, mid-request or not.
                _ = cancel.cancelled() => {}
            }
        });
    }

    /// Cuts every connection and waits until their sockets are closed.
    async fn cut(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
