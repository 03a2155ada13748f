//! `latch`: every role and admin verb of latch as a subcommand.

use std::process::ExitCode;

use clap::Parser;

mod admins;
mod cli;
mod demo;
mod roles;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
