//! The command line: what each subcommand is and which settings it reads.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use latch_core::config::{DatabaseConfig, Source};
use latch_core::telemetry::{self, LogConfig};

use crate::{admins, demo, dlq, outbox, roles, site};

/// latch — the event backbone of building access control.
///
/// Settings come from LATCH_* environment variables or a TOML file (--config / LATCH_CONFIG);
/// see the configuration reference in the README.
#[derive(Debug, Parser)]
#[command(name = "latch", version, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file (environment variables take precedence over it).
    #[arg(long, global = true, env = "LATCH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API for card readers, administrators and integrators (the event feed
    /// reads LATCH_EVENTS from LATCH_NATS_URL).
    ///
    /// Example: LATCH_DATABASE_URL=postgres://latch_api@db/latch LATCH_NATS_URL=nats://nats:4222 latch api
    Api,
    /// Publish committed outbox rows into the NATS JetStream stream LATCH_EVENTS.
    ///
    /// Run one or more; one leads and the others stand by.
    ///
    /// Its login must be a member of `latch_relayer` (see `latch migrate --relay-login`).
    ///
    /// Example: LATCH_DATABASE_URL=postgres://latch_relay@db/latch LATCH_NATS_URL=nats://nats:4222 latch relay
    Relay,
    /// Deliver events to the legacy attendance system, to a webhook sink, and to the webhook
    /// endpoints managed through the API.
    ///
    /// A sink is enabled by its URL (LATCH_SINKS_LEGACY_URL, LATCH_SINKS_WEBHOOKS_URL).
    /// Run several: one delivers to each sink, the others stand by and take over when it
    /// stops pulling (LATCH_SINKS_<SINK>_TAKEOVER_AFTER). With LATCH_WORKER_PARTITIONED=true
    /// they share the stream's partitions instead, each holder's events still in order.
    ///
    /// With LATCH_DATABASE_URL (a login in `latch_deliverer`, see `latch migrate
    /// --worker-login`) it also delivers to the webhook endpoints; several may have it:
    /// one delivers (a PostgreSQL advisory lock), the others take over when it stops.
    ///
    /// Example: LATCH_SINKS_WEBHOOKS_URL=https://hooks.example/latch LATCH_SINKS_WEBHOOKS_SECRET=whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY= latch worker
    Worker,
    /// Create or update the database schema (run before starting a new version).
    ///
    /// Uses LATCH_MIGRATION_DATABASE_URL (a login that owns the schema), or
    /// LATCH_DATABASE_URL when that is not set.
    ///
    /// Example: latch migrate --app-login latch_api --relay-login latch_relay
    Migrate {
        /// Also make sure this login role exists and is a member of `latch_app`, the API's
        /// role. Needs the CREATEROLE right (development stacks).
        #[arg(long, value_name = "ROLE")]
        app_login: Option<String>,
        /// The same for the relay's login, a member of `latch_relayer`.
        #[arg(long, value_name = "ROLE")]
        relay_login: Option<String>,
        /// The same for the operator commands' login (`latch outbox`, `latch dlq`,
        /// `latch events`), a member of `latch_operator`.
        #[arg(long, value_name = "ROLE")]
        operator_login: Option<String>,
        /// The same for the worker's login (webhook endpoints), a member of
        /// `latch_deliverer`.
        #[arg(long, value_name = "ROLE")]
        worker_login: Option<String>,
    },
    /// Dead letters: list, show, replay to the sink that failed them, purge.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// The outbox and the pipeline's backlog.
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// Rebuild events from the actions registry.
    #[command(subcommand)]
    Events(outbox::EventsCommand),
    /// Doors (through the API: LATCH_API_URL, LATCH_ADMIN_TOKEN).
    #[command(subcommand)]
    Doors(site::DoorsCommand),
    /// Card holders (through the API).
    #[command(subcommand)]
    Holders(site::HoldersCommand),
    /// Card readers and their keys (through the API).
    #[command(subcommand)]
    Readers(site::ReadersCommand),
    /// Grants (through the API).
    #[command(subcommand)]
    Grants(site::GrantsCommand),
    /// Webhook endpoints: subscribe, change, disable, rotate secrets, look at deliveries,
    /// recover (through the API).
    ///
    /// Through the API (LATCH_API_URL) with LATCH_ADMIN_TOKEN, a token with the `admin` scope
    /// for every site. Each change is recorded in the registry and published.
    ///
    /// Example: latch webhooks create --url https://hr.example.com/hooks/latch --kinds check_in,check_out
    #[command(subcommand)]
    Webhooks(crate::webhooks::WebhooksCommand),
    /// Manage administrators, integrators and their tokens (as the schema's owner:
    /// LATCH_MIGRATION_DATABASE_URL); each change is recorded in the registry.
    #[command(subcommand, visible_alias = "tokens")]
    Admins(admins::AdminsCommand),
    /// Demonstration data for a local stack.
    #[command(subcommand)]
    Demo(demo::DemoCommand),
}

/// Logging, and span export when an OTLP endpoint is configured; the guard flushes the
/// last spans when the role returns.
fn observe(source: &Source, service: &'static str) -> anyhow::Result<latch_core::otel::Guard> {
    telemetry::init(&LogConfig::from_source(source)?)?;
    // The OTLP exporter's HTTP client uses rustls with the process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    latch_core::otel::init(service)
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let source = Source::load(cli.config.as_deref())?;
    match cli.command {
        Command::Api => {
            let _spans = observe(&source, "latch-api")?;
            roles::api(&source).await?;
        }
        Command::Worker => {
            let _spans = observe(&source, "latch-worker")?;
            roles::worker(&source).await?;
        }
        Command::Relay => {
            // The relay records no spans of its own: it forwards each event's context.
            telemetry::init(&LogConfig::from_source(&source)?)?;
            roles::relay(&source).await?;
        }
        Command::Migrate {
            app_login,
            relay_login,
            operator_login,
            worker_login,
        } => {
            let url = DatabaseConfig::migration_url(&source)?;
            let logins = latch_core::db::Logins {
                api: app_login,
                relay: relay_login,
                operator: operator_login,
                worker: worker_login,
            };
            let applied = latch_core::db::migrate(&url, &logins).await?;
            println!("migrations applied: {applied}; schema is up to date");
        }
        Command::Admins(command) => admins::run(&source, command).await?,
        Command::Dlq(command) => dlq::run(&source, command).await?,
        Command::Doors(command) => site::doors(&source, command).await?,
        Command::Holders(command) => site::holders(&source, command).await?,
        Command::Readers(command) => site::readers(&source, command).await?,
        Command::Grants(command) => site::grants(&source, command).await?,
        Command::Webhooks(command) => crate::webhooks::run(&source, command).await?,
        Command::Outbox(outbox::OutboxCommand::Status {
            max_age,
            max_pending,
            json,
        }) => outbox::status(&source, &max_age, max_pending, json).await?,
        Command::Events(outbox::EventsCommand::Republish {
            since,
            until,
            kind,
            sink,
        }) => {
            outbox::republish(
                &source,
                &since,
                until.as_deref(),
                kind.as_deref(),
                sink.as_deref(),
            )
            .await?
        }
        Command::Demo(command) => demo::run(&source, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use latch_core::config::Setting;

    /// Every setting latch reads, as the crates declare them.
    fn declared() -> Vec<Setting> {
        [
            latch_core::config::SETTINGS,
            latch_api::config::SETTINGS,
            latch_relay::SETTINGS,
            latch_worker::config::SETTINGS,
            latch_core::outbound::SETTINGS,
            latch_worker::endpoints::SETTINGS,
            crate::site::SETTINGS,
        ]
        .concat()
    }

    /// The README's configuration table: per row, its variables and its default cell.
    fn documented() -> Vec<(Vec<String>, String)> {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("a Configuration section");
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        section
            .lines()
            .filter(|line| line.starts_with("| `LATCH_"))
            .map(|line| {
                let cells: Vec<&str> = line.split(" | ").collect();
                (
                    ticked(cells[0].trim_start_matches("| ")),
                    cells[1].to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn the_readme_documents_every_setting_and_its_default() {
        let declared = declared();
        let documented = documented();
        let in_code: BTreeSet<String> = declared.iter().map(Setting::var).collect();
        let in_readme: BTreeSet<String> = documented
            .iter()
            .flat_map(|(vars, _)| vars.iter().cloned())
            .collect();
        let missing: Vec<_> = in_code.difference(&in_readme).collect();
        let stale: Vec<_> = in_readme.difference(&in_code).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "README's configuration table: undocumented {missing:?}; documented but not read {stale:?}"
        );
        // A default shown as one literal per variable must be the declared one.
        for (vars, cell) in &documented {
            let shown: Vec<String> = cell
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            if shown.len() != vars.len() || cell.replace(['`', ',', ' '], "").is_empty() {
                continue;
            }
            for (var, shown) in vars.iter().zip(&shown) {
                let setting = declared.iter().find(|s| s.var() == *var).expect("declared");
                if let Some(default) = setting.default {
                    assert_eq!(
                        shown, default,
                        "{var}: README shows {shown}, the code {default}"
                    );
                }
            }
        }
        // A declared default must be shown.
        for setting in &declared {
            let var = setting.var();
            let (vars, cell) = documented
                .iter()
                .find(|(vars, _)| vars.contains(&var))
                .expect("documented");
            if let Some(default) = setting.default {
                let position = vars.iter().position(|v| *v == var).expect("listed");
                let shown: Vec<&str> = cell.split('`').skip(1).step_by(2).collect();
                assert_eq!(
                    shown.get(position).copied(),
                    Some(default),
                    "{var}: the README should show its default {default} (it shows {cell:?})"
                );
            }
        }
    }
}
