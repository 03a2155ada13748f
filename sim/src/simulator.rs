//! [`Simulator`]: a running simulator, in process, for tests and for the binary.
//!
//! `start` binds both listeners before it returns, so their addresses are known and
//! connections queue even before the first accept. Dropping a `Simulator` stops it in
//! the background; `shutdown().await` stops it and waits until both ports are closed.
//! Stopping cuts open connections instead of draining them: a simulator holding a hung
//! request would otherwise never finish.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::faults::{Faults, SubscriberFaults};
use crate::legacy::punch::PUNCH_PATH;
use crate::listener;
use crate::routes;
use crate::state::{SetFaultsError, SimState};
use crate::stats::Stats;
use crate::subscribers::{SUBSCRIBER_WEBHOOK_PATH, SubscriberError, SubscriberStats};
use crate::webhooks::WEBHOOK_PATH;

pub struct Simulator {
    state: Arc<SimState>,
    addr: SocketAddr,
    admin_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Simulator {
    /// Binds both listeners and starts serving. The main listener starts closed if the
    /// initial faults say `down` (its port is still reserved: it is bound, then closed).
    pub async fn start(config: SimConfig) -> anyhow::Result<Simulator> {
        config.faults.validate().context("invalid initial faults")?;
        let main = listener::bind(config.addr)
            .with_context(|| format!("cannot listen on {} (main)", config.addr))?;
        let admin = listener::bind(config.admin_addr)
            .with_context(|| format!("cannot listen on {} (admin)", config.admin_addr))?;
        let addr = main.local_addr().context("main listener address")?;
        let admin_addr = admin.local_addr().context("admin listener address")?;

        // Starting down: the port was bound to learn (and keep, for a while) its number,
        // and is closed again before anyone can connect.
        let main = (!config.faults.down).then_some(main);

        let state = Arc::new(SimState::new(&config));
        let shutdown = CancellationToken::new();
        let supervisor = tokio::spawn(listener::supervise(
            addr,
            main,
            routes::main_router(Arc::clone(&state)),
            Arc::clone(&state),
            shutdown.clone(),
        ));
        let admin_router = routes::admin_router(Arc::clone(&state));
        let admin_shutdown = shutdown.clone();
        let admin_server = tokio::spawn(async move {
            let served = axum::serve(admin, admin_router)
                .with_graceful_shutdown(admin_shutdown.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "admin listener failed");
            }
        });
        tracing::info!(%addr, %admin_addr, "simulator listening");
        Ok(Simulator {
            state,
            addr,
            admin_addr,
            shutdown,
            tasks: vec![supervisor, admin_server],
        })
    }

    /// The main listener's address (both sinks).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Base URL of the main listener, e.g. `http://127.0.0.1:40123`.
    pub fn legacy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Base URL of the admin listener.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// Full URL of the legacy punch endpoint.
    pub fn punch_url(&self) -> String {
        format!("{}{PUNCH_PATH}", self.legacy_url())
    }

    /// Full URL of the webhook endpoint.
    pub fn webhook_url(&self) -> String {
        format!("{}{WEBHOOK_PATH}", self.legacy_url())
    }

    /// Full URL of the named subscriber `name` (whether it exists or not).
    pub fn subscriber_url(&self, name: &str) -> String {
        let path = SUBSCRIBER_WEBHOOK_PATH.replace("{name}", name);
        format!("{}{path}", self.legacy_url())
    }

    /// Creates the named subscriber with `secrets` (one to three), or replaces its
    /// secrets, keeping its ledger and faults: `PUT /endpoints/{name}`.
    pub fn put_subscriber(&self, name: &str, secrets: &[&str]) -> Result<(), SubscriberError> {
        let secrets = secrets.iter().map(|secret| (*secret).to_owned()).collect();
        self.state.subscribers().put(name, secrets).map(|_| ())
    }

    /// Replaces a subscriber's knobs: `PUT /endpoints/{name}/faults`.
    pub fn set_subscriber_faults(
        &self,
        name: &str,
        faults: SubscriberFaults,
    ) -> Result<(), SubscriberError> {
        self.state.subscribers().set_faults(name, faults)
    }

    /// What a subscriber received: `GET /endpoints/{name}/stats`.
    pub fn subscriber_stats(&self, name: &str) -> Result<SubscriberStats, SubscriberError> {
        self.state.subscribers().stats(name)
    }

    /// Deletes a subscriber with its ledger; returns whether it existed.
    pub fn remove_subscriber(&self, name: &str) -> bool {
        self.state.subscribers().remove(name)
    }

    /// What both sinks received so far.
    pub async fn stats(&self) -> Stats {
        self.state.ledger().stats()
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.state.faults()
    }

    /// Replaces the faults; returns once the main listener is closed or listening as
    /// `faults.down` says.
    pub async fn set_faults(&self, faults: Faults) -> Result<(), SetFaultsError> {
        self.state.set_faults(faults).await
    }

    /// Forgets every key, effect and counter, as a sink that lost its data, the named
    /// subscribers' too. Faults stay, and so do the subscribers with their secrets.
    pub async fn reset(&self) {
        self.state.reset();
    }

    /// Serves until `token` is cancelled, then shuts down (what the binary does).
    pub async fn run_until(self, token: CancellationToken) {
        token.cancelled().await;
        self.shutdown().await;
    }

    /// Stops both listeners, cuts open connections, and waits until it is done.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for task in std::mem::take(&mut self.tasks) {
            if let Err(error) = task.await {
                tracing::error!(%error, "a simulator task panicked");
            }
        }
        tracing::info!("simulator stopped");
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
