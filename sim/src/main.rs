//! `latch-sim`: the world outside latch, for the local stack. Each simulated system is a
//! subcommand; everything it does lives in the `latch_sim` library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// latch-sim — the systems latch delivers to, simulated: the legacy time-and-attendance API
/// and a webhook receiver, with fault knobs.
///
/// Logs go to stderr (LATCH_LOG sets the filter, LATCH_LOG_FORMAT=pretty for a terminal).
///
/// Example: latch-sim legacy --addr 127.0.0.1:8090 --admin-addr 127.0.0.1:8091

#[derive(Debug, Parser)]
#[command(name = "latch-sim", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // Each simulated system is one variant with its own `Args` in the library, dispatched
    // below.
    Legacy(latch_sim::cli::LegacyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        init_logs()?;
        match cli.command {
            Command::Legacy(args) => latch_sim::cli::run_legacy(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr: the filter from LATCH_LOG (default `info`), JSON lines unless
/// LATCH_LOG_FORMAT is `pretty`.
fn init_logs() -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(std::env::var("LATCH_LOG").unwrap_or_else(|_| "info".into()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match std::env::var("LATCH_LOG_FORMAT").as_deref() {
        Ok("pretty") => builder.pretty().try_init(),
        Ok("json") | Err(_) => builder.json().try_init(),
        Ok(other) => anyhow::bail!("LATCH_LOG_FORMAT must be json or pretty, not {other:?}"),
    };
    result.map_err(|error| anyhow::anyhow!("cannot set up logging: {error}"))
}
