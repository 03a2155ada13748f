//! `latch-load`: the benchmarks' load generators, one subcommand each; everything they do
//! lives in the `latch_load` library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use latch_core::config::Source;
use latch_core::telemetry::{self, LogConfig};

/// latch-load — load for latch's benchmarks: card readers, to load the latch API; a raw
/// JetStream publisher, to measure the relay's limit; and clients of the event feed.
///
/// Logs go to stderr (LATCH_LOG sets the filter, LATCH_LOG_FORMAT=pretty for a terminal).
///
/// Example: latch-load readers --keys-file .local/stack/demo.env --requests 1000
///
/// Example: latch-load jetstream atomic --batch 500 --url nats://127.0.0.1:4222 --duration 10s
///
/// Example: latch-load feed stream --url http://127.0.0.1:8080 --token lat_... --clients 1000
#[derive(Debug, Parser)]
#[command(name = "latch-load", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Readers(latch_load::readers::ReadersArgs),
    Jetstream(latch_load::jetstream::JetstreamArgs),
    Feed(latch_load::feed::FeedArgs),
    /// A fresh event stream holding a backlog of events (for the delivery benchmark).
    Backlog(latch_load::backlog::BacklogArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The simulated readers run on one thread: the load generator shares the machine with
    // what it measures, and on one thread its tasks wake each other without waking another
    // thread (about a tenth less CPU per request, measured against the API on two cores).
    let runtime = match cli.command {
        Command::Readers(_) => tokio::runtime::Builder::new_current_thread(),
        Command::Jetstream(_) | Command::Feed(_) | Command::Backlog(_) => {
            tokio::runtime::Builder::new_multi_thread()
        }
    }
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
        telemetry::init(&LogConfig::from_source(&Source::load(None)?)?)?;
        match cli.command {
            Command::Readers(args) => latch_load::readers::run_readers(args).await,
            Command::Jetstream(args) => latch_load::jetstream::run_jetstream(args).await,
            Command::Feed(args) => latch_load::feed::run(args).await,
            Command::Backlog(args) => latch_load::backlog::run(args).await,
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
