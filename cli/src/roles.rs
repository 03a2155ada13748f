//! The long-running roles: load settings, build, run until a shutdown signal.

use latch_core::admin;
use latch_core::config::{DatabaseConfig, HttpConfig, Source};
use latch_core::shutdown::{self, CancellationToken};

pub async fn api(source: &Source) -> anyhow::Result<()> {
    let http = HttpConfig::from_source(source)?;
    let db = DatabaseConfig::from_source(source)?;
    let api = latch_api::ApiConfig {
        nats: Some(latch_core::nats::NatsConfig::from_source(source)?),
        ..latch_api::ApiConfig::from_source(source)?
    };
    let app = latch_api::Application::build(http, &db, latch_core::metrics::registry("api"), api)?;
    let token = CancellationToken::new();
    shutdown::on_signal(token.clone());
    app.run_until(token).await
}

pub async fn relay(source: &Source) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    shutdown::on_signal(token.clone());
    let registry = latch_core::metrics::registry("relay");
    let admin_addr = admin::addr_from_source(source, ([127, 0, 0, 1], 9101).into())?;
    let relay = latch_relay::from_source(source, &registry, &token).await?;
    let (_, admin) =
        admin::serve(admin_addr, registry, relay.readiness.clone(), token.clone()).await?;
    relay.run(token).await?;
    let _ = admin.await;
    Ok(())
}

pub async fn worker(source: &Source) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    shutdown::on_signal(token.clone());
    let registry = latch_core::metrics::registry("worker");
    let admin_addr = admin::addr_from_source(source, ([127, 0, 0, 1], 9102).into())?;
    let worker = latch_worker::from_source(source, &registry).await?;
    let (_, admin) = admin::serve(
        admin_addr,
        registry,
        worker.readiness.clone(),
        token.clone(),
    )
    .await?;
    worker.run(token).await?;
    let _ = admin.await;
    Ok(())
}
