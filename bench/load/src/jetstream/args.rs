//! The `latch-load jetstream` command line: its flags, turned into a [`PublishConfig`], and
//! the binary's run — print the report. Everything measured is in [`super::run_until`].

use std::time::Duration;

use clap::{Args, ValueEnum};
use latch_core::config::parse_duration;
use latch_core::shutdown::{self, CancellationToken};

use super::config::{
    DEFAULT_SINGLE_IN_FLIGHT, DEFAULT_SIZE, DEFAULT_STREAM, DEFAULT_SUBJECT, PublishConfig,
    PublishMode,
};
use super::publish::run_until;

/// How `latch-load jetstream` publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeName {
    /// Pipelined single publishes, --in-flight outstanding, each with its Nats-Msg-Id.
    Single,
    /// Atomic batches of --batch messages, each message with its Nats-Msg-Id, the last
    /// one committing the batch (the relay's way).
    Atomic,
}

/// Measure raw JetStream publishing: the limit latch's relay works against.
///
/// Publishes latch-shaped messages (an event envelope of --size bytes with Nats-Msg-Id,
/// Latch-Event-Id and traceparent headers) into a stream of its own (--stream, deleted
/// and created anew: file storage, latch's duplicate window, atomic publishing allowed),
/// for --duration after --warmup, and reports messages per second and acknowledgement
/// latency. Modes:
///   single   pipelined publishes, --in-flight acknowledgements outstanding (default 1000)
///   atomic   atomic batches of --batch messages, sent as the relay sends them: all but the
///            last without waiting, the last with Nats-Batch-Commit; --in-flight batches
///            outstanding (default 1, like the relay)
/// The stream is deleted at the end (--keep-stream keeps it). Exits 0 when the run
/// completed and the stream holds exactly what was acknowledged, 1 on any refused or
/// unanswered publish, 2 when the flags do not parse.
///
/// Examples:
///   # the relay's way: atomic batches of 500, one at a time, 10 s after 2 s of warm-up
///   latch-load jetstream atomic --batch 500 --url nats://127.0.0.1:4222 --duration 10s --warmup 2s
///
///   # pipelined single publishes, 1000 in flight, as JSON for a script
///   latch-load jetstream single --in-flight 1000 --url nats://127.0.0.1:4222 --duration 10s --json
#[derive(Debug, Clone, Args)]
#[command(verbatim_doc_comment)]
pub struct JetstreamArgs {
    /// single or atomic.
    #[arg(value_enum, value_name = "MODE")]
    pub mode: ModeName,

    /// The NATS server.
    ///
    /// Example: --url nats://127.0.0.1:4222
    #[arg(long, env = "LATCH_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub url: String,

    /// atomic: messages per batch (1-1000; the relay's default is 500).
    ///
    /// Example: --batch 500
    #[arg(long, value_name = "B")]
    pub batch: Option<usize>,

    /// Outstanding acknowledgements: single publishes (default 1000) or batches (default 1).
    ///
    /// Example: --in-flight 4
    #[arg(long, value_name = "N")]
    pub in_flight: Option<usize>,

    /// Payload bytes per message (latch's envelopes weigh 400-600).
    ///
    /// Example: --size 520
    #[arg(long, default_value_t = DEFAULT_SIZE, value_name = "BYTES")]
    pub size: usize,

    /// Stop the measured part after this long (ms, s, m or h).
    ///
    /// Example: --duration 10s
    #[arg(long, value_name = "D", value_parser = parse_duration, required_unless_present = "messages")]
    pub duration: Option<Duration>,

    /// Stop after this many measured messages (with --duration too: whichever is first).
    ///
    /// Example: --messages 100000
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,

    /// Publish for this long first and discard the results.
    ///
    /// Example: --warmup 2s
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,

    /// The stream to create, fill and delete (never one of latch's own).
    ///
    /// Example: --stream LATCH_BENCH
    #[arg(long, default_value = DEFAULT_STREAM)]
    pub stream: String,

    /// The subject to publish on; the stream takes everything under its first token.
    ///
    /// Example: --subject latch-bench.events.check_in
    #[arg(long, default_value = DEFAULT_SUBJECT)]
    pub subject: String,

    /// Longest wait for an acknowledgement; longer fails the run.
    ///
    /// Example: --timeout 30s
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,

    /// Leave the stream and its messages in place at the end.
    #[arg(long)]
    pub keep_stream: bool,

    /// Print the report as one JSON object on stdout (the summary goes to stderr).
    ///
    /// Example: --json | jq .msgs_per_s
    #[arg(long)]
    pub json: bool,
}

impl JetstreamArgs {
    /// The run these flags describe (validated by [`super::run`]).
    pub fn config(&self) -> anyhow::Result<PublishConfig> {
        let mode = match self.mode {
            ModeName::Single => {
                anyhow::ensure!(
                    self.batch.is_none(),
                    "--batch is for atomic batches; single publishes have none"
                );
                PublishMode::Single {
                    in_flight: self.in_flight.unwrap_or(DEFAULT_SINGLE_IN_FLIGHT),
                }
            }
            ModeName::Atomic => PublishMode::Atomic {
                batch: self
                    .batch
                    .ok_or_else(|| anyhow::anyhow!("atomic needs --batch (e.g. --batch 500)"))?,
                in_flight: self.in_flight.unwrap_or(1),
            },
        };
        Ok(PublishConfig {
            url: self.url.clone(),
            stream: self.stream.clone(),
            subject: self.subject.clone(),
            mode,
            size: self.size,
            warmup: self.warmup,
            duration: self.duration,
            messages: self.messages,
            timeout: self.timeout,
            keep_stream: self.keep_stream,
        })
    }
}

/// Runs `latch-load jetstream`: until the run's end, or SIGINT/SIGTERM (then what is in
/// flight is acknowledged and the report covers what was measured).
pub async fn run_jetstream(args: JetstreamArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let token = CancellationToken::new();
    shutdown::on_signal(token.clone());
    let report = run_until(config, token).await?;
    if args.json {
        println!("{}", report.to_json());
        eprintln!("{report}");
    } else {
        println!("{report}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        jetstream: JetstreamArgs,
    }

    fn parse(args: &[&str]) -> Result<JetstreamArgs, clap::Error> {
        let mut argv = vec!["latch-load"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.jetstream)
    }

    #[test]
    fn atomic_takes_a_batch_and_one_batch_in_flight_by_default() {
        let config = parse(&["atomic", "--batch", "500", "--duration", "10s"])
            .expect("flags parse")
            .config()
            .expect("a config");
        assert_eq!(
            config.mode,
            PublishMode::Atomic {
                batch: 500,
                in_flight: 1
            }
        );
        assert_eq!(config.duration, Some(Duration::from_secs(10)));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn single_defaults_to_a_thousand_in_flight() {
        let config = parse(&["single", "--messages", "100", "--size", "520"])
            .expect("flags parse")
            .config()
            .expect("a config");
        assert_eq!(config.mode, PublishMode::Single { in_flight: 1000 });
        assert_eq!(config.size, 520);
        assert_eq!(config.messages, Some(100));
    }

    #[test]
    fn contradictory_or_incomplete_flags_are_refused() {
        assert!(parse(&["atomic", "--batch", "5"]).is_err(), "no end");
        assert!(
            parse(&["burst", "--duration", "1s"]).is_err(),
            "no such mode"
        );
        let no_batch = parse(&["atomic", "--duration", "1s"]).expect("flags parse");
        assert!(no_batch.config().is_err());
        let batch_for_single =
            parse(&["single", "--batch", "5", "--duration", "1s"]).expect("flags parse");
        assert!(batch_for_single.config().is_err());
    }
}
