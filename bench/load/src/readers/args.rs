//! The `latch-load readers` command line: its flags, turned into a [`LoadConfig`], and
//! the binary's run — print the report, write the distribution. Everything measured is
//! in the library ([`super::run_until`]); this module only reads flags and prints.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use latch_core::config::{Secret, parse_duration};
use latch_core::shutdown::{self, CancellationToken};

use super::config::{DEFAULT_MAX_IN_FLIGHT, LoadConfig, Mode, ReaderEndpoint, Stop};
use super::keys::DemoKeys;
use super::run::run_until;

/// Simulate card readers: send unlocks, check-ins or check-outs to the latch API and
/// measure the answers (a load generator).
///
/// Closed loop (--concurrency, default 1 reader): each reader sends its next request when
/// the previous one is answered. Open loop (--rate): requests start on a fixed timetable
/// whatever the answers, and latency counts from when each was due, so a stalled API
/// shows in the percentiles (no coordinated omission). Stop after --duration, --requests,
/// or whichever comes first. Reader keys and cards come from the flags or from the local
/// stack's keys file; 4xx answers are data, not failures. Exits 0 when the run completed,
/// 1 when it could not start (no key, no card, unreadable keys file) or not one request
/// got an answer (API unreachable), 2 when the flags do not parse.
///
/// Examples:
///   # p50 of 1,000 sequential unlocks of the granted card
///   latch-load readers --keys-file .local/stack/demo.env --card CARD-1001 --requests 1000
///
///   # 500 unlocks/s for 30 s after a 5 s warm-up, as JSON for a script
///   latch-load readers --keys-file .local/stack/demo.env --rate 500 --duration 30s --warmup 5s --json
///
///   # 8 readers checking in and out for 10 s
///   latch-load readers --keys-file .local/stack/demo.env --endpoint presence-mix --concurrency 8 --duration 10s
#[derive(Debug, Clone, Args)]
#[command(verbatim_doc_comment)]
pub struct ReadersArgs {
    /// The latch API's base URL.
    ///
    /// Example: --url http://127.0.0.1:8080
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// What the readers send: unlock, check-in, check-out, or presence-mix (check-in and
    /// check-out alternating per card).
    ///
    /// Example: --endpoint presence-mix
    #[arg(long, default_value = "unlock", value_name = "ENDPOINT")]
    pub endpoint: ReaderEndpoint,

    /// Closed loop: this many readers, each waiting for its answer before the next
    /// request (the default, with 1 reader, when --rate is not given).
    ///
    /// Example: --concurrency 16
    #[arg(long, value_name = "C", conflicts_with = "rate")]
    pub concurrency: Option<usize>,

    /// Open loop: start this many requests per second on a fixed timetable.
    ///
    /// Example: --rate 500
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,

    /// Open loop: at most this many requests wait for an answer; a request due beyond
    /// that is not sent and counts as late (default 1024).
    ///
    /// Example: --rate 2000 --max-in-flight 256
    #[arg(long, value_name = "N", requires = "rate")]
    pub max_in_flight: Option<usize>,

    /// Stop the measured part after this long (ms, s, m or h).
    ///
    /// Example: --duration 10s
    #[arg(long, value_name = "D", value_parser = parse_duration, required_unless_present = "requests")]
    pub duration: Option<Duration>,

    /// Stop after this many measured requests (with --duration too: whichever is first).
    ///
    /// Example: --requests 1000
    #[arg(long, value_name = "N")]
    pub requests: Option<u64>,

    /// Send for this long first and discard the results (connections, caches warm up).
    ///
    /// Example: --warmup 5s
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,

    /// A reader key to authenticate with; repeatable, each request picks one. When
    /// given, the keys file's reader keys are not used.
    ///
    /// Example: --reader-key lrk_0123abcd
    #[arg(long = "reader-key", value_name = "KEY")]
    pub reader_keys: Vec<String>,

    /// The local stack's keys file: every LATCH_DEMO_READER_KEY* line is a reader key and
    /// every LATCH_DEMO_CARD_* line a card (unless --reader-key / --card are given).
    ///
    /// Example: --keys-file .local/stack/demo.env
    #[arg(long, value_name = "FILE")]
    pub keys_file: Option<PathBuf>,

    /// A card to present; repeatable, each request picks one. When given, the keys
    /// file's cards are not used.
    ///
    /// Example: --card CARD-1001 --card CARD-9999
    #[arg(long = "card", value_name = "CARD")]
    pub cards: Vec<String>,

    /// Seeds each request's choice of reader key and card (same seed, same sequence).
    ///
    /// Example: --seed 42
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub seed: u64,

    /// Send a fresh Idempotency-Key with every request.
    ///
    /// Example: --idempotency
    #[arg(long)]
    pub idempotency: bool,

    /// Longest wait for a whole answer; longer counts as a timeout.
    ///
    /// Example: --timeout 2s
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,

    /// The CA (PEM) an https:// API's certificate comes from, e.g. the local stack's.
    ///
    /// Example: --ca-file .local/stack/tls/ca.crt
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Print the report as one JSON object on stdout (the summary goes to stderr).
    ///
    /// Example: --json | jq .latency_ms.p50
    #[arg(long)]
    pub json: bool,

    /// Write the latency distribution to FILE: CSV (value_ms,percentile,total_count) if
    /// it ends in .csv, else HdrHistogram percentile text (.hgrm).
    ///
    /// Example: --histogram-out unlock.hgrm
    #[arg(long, value_name = "FILE")]
    pub histogram_out: Option<PathBuf>,
}

impl ReadersArgs {
    /// The run these flags describe, with the keys file read. Not validated yet:
    /// [`super::run`] does that.
    pub fn config(&self) -> anyhow::Result<LoadConfig> {
        let file = match &self.keys_file {
            Some(path) => DemoKeys::load(path)?,
            None => DemoKeys::default(),
        };
        let reader_keys = if self.reader_keys.is_empty() {
            file.reader_keys
        } else {
            self.reader_keys.iter().cloned().map(Secret::new).collect()
        };
        let cards = if self.cards.is_empty() {
            file.cards
        } else {
            self.cards.clone()
        };
        let mode = match self.rate {
            Some(rate) => Mode::Open {
                rate,
                max_in_flight: self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
            },
            None => Mode::Closed {
                concurrency: self.concurrency.unwrap_or(1),
            },
        };
        Ok(LoadConfig {
            url: self.url.clone(),
            endpoint: self.endpoint,
            mode,
            stop: Stop {
                duration: self.duration,
                requests: self.requests,
            },
            warmup: self.warmup,
            reader_keys,
            cards,
            seed: self.seed,
            idempotency: self.idempotency,
            timeout: self.timeout,
            ca_file: self.ca_file.clone(),
        })
    }
}

/// Runs `latch-load readers`: until the run's end, or SIGINT/SIGTERM (then the requests
/// in flight finish and the report covers what was measured).
pub async fn run_readers(args: ReadersArgs) -> anyhow::Result<()> {
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
    if let Some(path) = &args.histogram_out {
        report.write_distribution(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        readers: ReadersArgs,
    }

    fn parse(args: &[&str]) -> Result<ReadersArgs, clap::Error> {
        let mut argv = vec!["latch-load"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| cli.readers)
    }

    #[test]
    fn the_default_is_one_reader_in_a_closed_loop() {
        let config = parse(&["--requests", "1000", "--reader-key", "k", "--card", "C"])
            .expect("flags parse")
            .config()
            .expect("a config");
        assert_eq!(config.mode, Mode::Closed { concurrency: 1 });
        assert_eq!(config.stop, Stop::after_requests(1000));
        assert_eq!(config.endpoint, ReaderEndpoint::Unlock);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn rate_makes_an_open_loop_with_a_bounded_flight() {
        let config = parse(&["--rate", "250.5", "--duration", "2s", "--warmup", "500ms"])
            .expect("flags parse")
            .config()
            .expect("a config");
        assert_eq!(
            config.mode,
            Mode::Open {
                rate: 250.5,
                max_in_flight: DEFAULT_MAX_IN_FLIGHT
            }
        );
        assert_eq!(config.stop.duration, Some(Duration::from_secs(2)));
        assert_eq!(config.warmup, Duration::from_millis(500));
    }

    #[test]
    fn contradictory_or_incomplete_flags_are_refused() {
        for args in [
            &["--requests", "1", "--rate", "5", "--concurrency", "2"][..],
            &["--requests", "1", "--max-in-flight", "5"],
            &["--rate", "5"],
            &["--duration", "ten"],
            &["--requests", "1", "--endpoint", "open-door"],
        ] {
            assert!(parse(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn the_keys_file_fills_in_what_the_flags_do_not_give() {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        writeln!(
            file,
            "LATCH_DEMO_READER_KEY=lrk_a\nLATCH_DEMO_READER_KEY_DOCK=lrk_b\n\
             LATCH_DEMO_CARD_GRANTED=CARD-1001\nLATCH_DEMO_CARD_UNKNOWN=CARD-9999"
        )
        .expect("writes");
        let path = file.path().to_str().expect("a UTF-8 path");
        let both = parse(&["--requests", "1", "--keys-file", path])
            .expect("flags parse")
            .config()
            .expect("a config");
        assert_eq!(both.reader_keys.len(), 2);
        assert_eq!(both.cards, ["CARD-1001", "CARD-9999"]);
        let card_given = parse(&["--requests", "1", "--keys-file", path, "--card", "X"])
            .expect("flags parse")
            .config()
            .expect("a config");
        assert_eq!(card_given.reader_keys.len(), 2);
        assert_eq!(card_given.cards, ["X"]);
        let missing = parse(&["--requests", "1", "--keys-file", "/nonexistent/demo.env"])
            .expect("flags parse")
            .config()
            .expect_err("a missing file is an error");
        assert!(missing.to_string().contains("/nonexistent/demo.env"));
    }
}
