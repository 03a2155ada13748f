//! `latch`: every role and admin verb of latch as a subcommand.

use std::process::ExitCode;

use clap::Parser;

mod admins;
mod cli;
mod demo;
mod dlq;
mod exit;
mod outbox;
mod roles;
mod site;
mod webhooks;
mod when;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args).await {
        Ok(code) => code,
        Err(error) => match error.downcast_ref::<exit::Failure>() {
            Some(failure) => {
                eprintln!("{}", failure.message);
                ExitCode::from(failure.code)
            }
            None => {
                eprintln!("error: {error:#}");
                ExitCode::from(1)
            }
        },
    }
}
