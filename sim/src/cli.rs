//! The `latch-sim legacy` command line: its flags, turned into a [`SimConfig`], and the
//! run loop of the binary. Kept in the library so that the flags are tested like the rest
//! and `main` stays a dispatcher.

use std::net::SocketAddr;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::{DEFAULT_TNA_KEY, DEFAULT_WEBHOOK_SECRET, Secret, SimConfig};
use crate::endpoint::Endpoint;
use crate::faults::{Faults, Latency, RateLimit, Reject, SinkFaults};
use crate::simulator::Simulator;

/// Serve the simulated legacy time-and-attendance API and webhook receiver.
///
/// The main listener (--addr) serves POST /tna/v2/punches, POST /webhooks/latch, POST
/// /webhooks/endpoints/{name} (named subscribers), GET /stats and POST /admin/reset. The
/// admin listener (--admin-addr) serves GET|PUT /faults, GET /stats and POST /admin/reset,
/// and keeps answering while the main one is --down; it also manages the named
/// subscribers, each with its own secrets, faults and ledger: PUT|DELETE /endpoints/{name}
/// (body {"secrets": ["whsec_..."]}), GET|PUT /endpoints/{name}/faults, GET
/// /endpoints/{name}/stats and GET /endpoints.
/// Fault flags set the knobs at start (on both sinks, or on --only one of them); change
/// them at run time with PUT /faults.
///
/// Example:
///   latch-sim legacy --addr 127.0.0.1:8090 --admin-addr 127.0.0.1:8091 --error-rate 0.1 --latency exp:50
///
///   curl -X PUT 127.0.0.1:8091/faults -H 'content-type: application/json' -d '{"down": true}'
#[derive(Debug, Clone, Args)]
#[command(verbatim_doc_comment)]
pub struct LegacyArgs {
    /// Main listener (both sinks). Port 0 picks a free port (printed at start).
    ///
    /// Example: --addr 127.0.0.1:8090
    #[arg(long, env = "LATCH_SIM_ADDR", default_value = "127.0.0.1:8090")]
    pub addr: SocketAddr,

    /// Admin listener (faults, stats, reset); stays up while the main one is down.
    ///
    /// Example: --admin-addr 127.0.0.1:8091
    #[arg(long, env = "LATCH_SIM_ADMIN_ADDR", default_value = "127.0.0.1:8091")]
    pub admin_addr: SocketAddr,

    /// The X-TNA-Key the legacy endpoint accepts (prefer the environment variable).
    ///
    /// Example: --tna-key s3cret
    #[arg(long, env = "LATCH_SIM_TNA_KEY", default_value = DEFAULT_TNA_KEY, hide_env_values = true)]
    pub tna_key: String,

    /// The secret webhook signatures are checked with (Standard Webhooks: whsec_ and the
    /// key in base64), by the reference implementation, with its 5-minute tolerance.
    ///
    /// Example: --webhook-secret whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
    #[arg(long, env = "LATCH_SIM_WEBHOOK_SECRET", default_value = DEFAULT_WEBHOOK_SECRET, hide_env_values = true, value_parser = crate::signature::checked_secret)]
    pub webhook_secret: String,

    /// Apply the fault flags below to this sink only (legacy or webhooks); default both.
    ///
    /// Example: --only webhooks --error-rate 1
    #[arg(long, value_name = "ENDPOINT")]
    pub only: Option<Endpoint>,

    /// Share of requests (0.0-1.0) answered 503 with no effect.
    ///
    /// Example: --error-rate 0.2
    #[arg(long, default_value_t = 0.0, value_name = "RATE")]
    pub error_rate: f64,

    /// Delay before every answer: MS or fixed:MS, uniform:MIN-MAX, exp:MEAN (milliseconds).
    ///
    /// Example: --latency uniform:20-200
    #[arg(long, value_name = "SPEC")]
    pub latency: Option<Latency>,

    /// Accept requests and never answer them (until cleared with PUT /faults).
    ///
    /// Example: --hang
    #[arg(long)]
    pub hang: bool,

    /// Start with the main listener closed: connections are refused.
    ///
    /// Example: --down
    #[arg(long)]
    pub down: bool,

    /// Holder ids (EMP_ID / holder_id) answered 422, repeatable or comma-separated.
    ///
    /// Example: --reject-holder 0190c0de-0000-7000-8000-000000000001
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub reject_holder: Vec<String>,

    /// Kinds answered 422: envelope kinds for webhooks, PUNCH_TYPE (IN/OUT) for legacy.
    ///
    /// Example: --only webhooks --reject-kind grant_revoked
    #[arg(long, value_name = "KIND", value_delimiter = ',')]
    pub reject_kind: Vec<String>,

    /// Event ids (REF / envelope id) answered 422, repeatable or comma-separated.
    ///
    /// Example: --reject-event 0190c0de-0000-7000-8000-0000000000aa
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub reject_event: Vec<String>,

    /// Accept at most N requests per second per sink, answer the rest 429; 0 answers
    /// every request 429.
    ///
    /// Example: --rate-limit 5
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,

    /// The Retry-After (seconds) of a 429.
    ///
    /// Example: --rate-limit 0 --retry-after 30
    #[arg(long, default_value_t = 1, value_name = "SECS")]
    pub retry_after: u64,
}

impl LegacyArgs {
    /// The simulator these flags describe.
    pub fn config(&self) -> SimConfig {
        let sink = SinkFaults {
            error_rate: self.error_rate,
            latency: self.latency,
            hang: self.hang,
            reject: Reject {
                holders: self.reject_holder.clone(),
                kinds: self.reject_kind.clone(),
                events: self.reject_event.clone(),
            },
            rate_limit: self.rate_limit.map(|per_second| RateLimit {
                per_second,
                retry_after_secs: self.retry_after,
            }),
        };
        let mut faults = match self.only {
            Some(endpoint) => Faults::only(endpoint, sink),
            None => Faults::both(sink),
        };
        faults.down = self.down;
        SimConfig {
            addr: self.addr,
            admin_addr: self.admin_addr,
            tna_key: Secret::new(self.tna_key.clone()),
            webhook_secret: Secret::new(self.webhook_secret.clone()),
            faults,
        }
    }
}

/// Runs `latch-sim legacy` until SIGINT or SIGTERM.
pub async fn run_legacy(args: LegacyArgs) -> anyhow::Result<()> {
    let simulator = Simulator::start(args.config()).await?;
    // One line on stdout for scripts that started it on port 0.
    println!(
        "{}",
        serde_json::json!({ "legacy_url": simulator.legacy_url(), "admin_url": simulator.admin_url() })
    );
    let token = CancellationToken::new();
    tokio::spawn(cancel_on_signal(token.clone()));
    simulator.run_until(token).await;
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            token.cancel();
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    token.cancel();
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        legacy: LegacyArgs,
    }

    fn parse(args: &[&str]) -> SimConfig {
        let mut argv = vec!["latch-sim"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .expect("flags parse")
            .legacy
            .config()
    }

    #[test]
    fn no_flags_is_a_healthy_simulator() {
        let config = parse(&[]);
        assert_eq!(config.faults, Faults::none());
    }

    #[test]
    fn fault_flags_apply_to_both_sinks_or_one() {
        let config = parse(&[
            "--error-rate",
            "0.5",
            "--latency",
            "uniform:1-5",
            "--reject-holder",
            "a,b",
            "--rate-limit",
            "0",
            "--retry-after",
            "7",
            "--down",
        ]);
        assert!(config.faults.down);
        assert_eq!(config.faults.legacy, config.faults.webhooks);
        assert_eq!(config.faults.legacy.reject.holders, ["a", "b"]);
        assert_eq!(
            config.faults.webhooks.rate_limit,
            Some(RateLimit {
                per_second: 0,
                retry_after_secs: 7
            })
        );
        let only = parse(&["--only", "webhooks", "--hang"]);
        assert!(only.faults.webhooks.hang && !only.faults.legacy.hang);
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        let error = Cli::try_parse_from(["latch-sim", "--latency", "gauss:3"])
            .expect_err("an unknown latency kind is refused");
        assert!(error.to_string().contains("--latency"));
    }
}
