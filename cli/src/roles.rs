//! The long-running roles: load settings, build, run until a shutdown signal.

use latch_core::config::{DatabaseConfig, HttpConfig, Source};
use latch_core::shutdown::{self, CancellationToken};

pub async fn api(source: &Source) -> anyhow::Result<()> {
    let http = HttpConfig::from_source(source)?;
    let db = DatabaseConfig::from_source(source)?;
    let pool = latch_core::db::pool(&db)?;
    let app = latch_api::Application::build(http, pool)?;
    let token = CancellationToken::new();
    shutdown::on_signal(token.clone());
    app.run_until(token).await
}

pub async fn relay(source: &Source) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    shutdown::on_signal(token.clone());
    let relay = latch_relay::from_source(source, &token).await?;
    relay.run(token).await
}

pub async fn worker(source: &Source) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    shutdown::on_signal(token.clone());
    let worker = latch_worker::from_source(source).await?;
    worker.run(token).await
}
