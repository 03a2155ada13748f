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
