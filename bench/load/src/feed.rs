//! `latch-load feed`: readers of latch's event feed, and of the stream beneath it.
//!
//! - `stream`: N clients follow `GET /v1/events/stream` at once; each event's latency runs
//!   from its `recorded_at` (the commit, by PostgreSQL's clock on this machine) to its
//!   arrival at a client. With `--nats-url`, one ordered JetStream consumer follows the
//!   stream directly beside them, measured the same way: the limit the API's fan-out is
//!   compared with. With `--api-pid`, the API's memory before and with the clients
//!   connected, and its CPU time over the measured part, are read from `/proc`; with the
//!   API's `/metrics`, the events it sent meanwhile.
//! - `pull`: pages through `GET /v1/events` from the oldest event until caught up.
//! - `raw`: reads the whole stream with an ordered consumer, as fast as it comes: the limit
//!   `pull` is compared with.
//!
//! Reports are one JSON object (`--json`) or a line for a person.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use hdrhistogram::Histogram;
use latch_core::config::parse_duration;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;

use crate::readers::report::LatencySummary;

/// Measure latch's event feed.
#[derive(Debug, Args)]
pub struct FeedArgs {
    #[command(subcommand)]
    pub mode: FeedMode,
}

#[derive(Debug, Subcommand)]
pub enum FeedMode {
    /// Many clients on GET /v1/events/stream; commit-to-client latency.
    ///
    /// Example: latch-load feed stream --url http://127.0.0.1:8080 --token lat_... --clients 1000 --duration 10s
    Stream(StreamArgs),
    /// Page through GET /v1/events from the oldest event until caught up.
    ///
    /// Example: latch-load feed pull --url http://127.0.0.1:8080 --token lat_... --limit 1000
    Pull(PullArgs),
    /// Read the whole event stream with an ordered consumer (the limit of `pull`).
    ///
    /// Example: latch-load feed raw --nats-url nats://127.0.0.1:4222
    Raw(RawArgs),
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// The latch API.
    #[arg(long)]
    pub url: String,
    /// A token with events:read.
    #[arg(long)]
    pub token: String,
    /// Clients connected at once.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Time after every client connected before measuring.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub warmup: Duration,
    /// Time measured.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// The API's process id: its memory and CPU time are read from /proc.
    #[arg(long)]
    pub api_pid: Option<u32>,
    /// NATS: one ordered consumer follows the event stream directly, for comparison.
    #[arg(long)]
    pub nats_url: Option<String>,
    #[arg(long, default_value = "LATCH_EVENTS")]
    pub stream: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub token: String,
    /// Events per page.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RawArgs {
    #[arg(long)]
    pub nats_url: String,
    #[arg(long, default_value = "LATCH_EVENTS")]
    pub stream: String,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: FeedArgs) -> anyhow::Result<()> {
    // reqwest is built without a default TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (report, json) = match args.mode {
        FeedMode::Stream(args) => (stream(&args).await?, args.json),
        FeedMode::Pull(args) => (pull(&args).await?, args.json),
        FeedMode::Raw(args) => (raw(&args).await?, args.json),
    };
    if json {
        println!("{report}");
    } else {
        eprintln!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// Microseconds from an event's `recorded_at` to `now`, read without parsing the whole
/// event (as the API serialises it, or as PostgreSQL wrote it: with a space after `:`).
fn latency_us(event: &[u8], now: OffsetDateTime) -> Option<u64> {
    const KEY: &[u8] = b"\"recorded_at\"";
    let mut at = event.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    while at < event.len() && matches!(event[at], b':' | b' ') {
        at += 1;
    }
    let at = at + usize::from(event.get(at) == Some(&b'"'));
    let end = event[at..].iter().position(|&b| b == b'"')? + at;
    let recorded =
        OffsetDateTime::parse(std::str::from_utf8(&event[at..end]).ok()?, &Rfc3339).ok()?;
    u64::try_from((now - recorded).whole_microseconds()).ok()
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// What the clients share: whether the measured part runs, and what it saw.
struct Tally {
    measuring: std::sync::atomic::AtomicBool,
    latencies: Mutex<Histogram<u64>>,
    events: AtomicU64,
    lagged: AtomicU64,
    ended: AtomicU64,
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// CPU seconds (user + system) a process has used.
fn cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // CLK_TCK is 100 on Linux.
    Some(ticks / 100.0)
}

async fn events_sent(http: &reqwest::Client, url: &str) -> Option<f64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("latch_feed_events_sent_total "))
        .and_then(|v| v.trim().parse().ok())
}

async fn stream(args: &StreamArgs) -> anyhow::Result<Value> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let tally = Arc::new(Tally {
        measuring: Default::default(),
        latencies: Mutex::new(histogram()),
        events: AtomicU64::new(0),
        lagged: AtomicU64::new(0),
        ended: AtomicU64::new(0),
    });
    let rss_before = args.api_pid.and_then(rss_kb);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut clients = Vec::with_capacity(args.clients);
    let (connected_tx, mut connected_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(64);
    for _ in 0..args.clients {
        let (http, tally, connected) = (http.clone(), tally.clone(), connected_tx.clone());
        let stop = stop.clone();
        let url = format!("{}/v1/events/stream", args.url);
        let token = args.token.clone();
        clients.push(tokio::spawn(async move {
            let response = match http.get(&url).bearer_auth(&token).send().await {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => {
                    let _ = connected
                        .send(Err(anyhow::anyhow!("answered {}", r.status())))
                        .await;
                    return;
                }
                Err(e) => {
                    let _ = connected.send(Err(e.into())).await;
                    return;
                }
            };
            let _ = connected.send(Ok(())).await;
            drop(connected);
            let mut body = response.bytes_stream();
            let mut buffer: Vec<u8> = Vec::new();
            let mut local = histogram();
            loop {
                let chunk = tokio::select! {
                    _ = stop.cancelled() => break,
                    chunk = body.next() => match chunk {
                        Some(Ok(chunk)) => chunk,
                        _ => {
                            tally.ended.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    },
                };
                let now = OffsetDateTime::now_utc();
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                    let message: Vec<u8> = buffer.drain(..end + 2).collect();
                    if message.starts_with(b"event: lagged") {
                        tally.lagged.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(data) = message
                        .windows(6)
                        .position(|w| w == b"data: ")
                        .map(|at| &message[at + 6..])
                        && tally.measuring.load(Ordering::Relaxed)
                        && let Some(us) = latency_us(data, now)
                    {
                        let _ = local.record(us.max(1));
                        tally.events.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if local.len() >= 1000 {
                    let _ = tally.latencies.lock().await.add(&local);
                    local.reset();
                }
            }
            let _ = tally.latencies.lock().await.add(&local);
        }));
    }
    drop(connected_tx);
    let mut connected = 0usize;
    while let Some(result) = connected_rx.recv().await {
        result.context("a client could not connect")?;
        connected += 1;
    }
    let rss_connected = args.api_pid.and_then(rss_kb);

    // The direct consumer, for comparison.
    let direct = match &args.nats_url {
        Some(url) => Some(direct_consumer(url, &args.stream, tally.clone()).await?),
        None => None,
    };

    tokio::time::sleep(args.warmup).await;
    let sent_before = events_sent(&http, &args.url).await;
    let cpu_before = args.api_pid.and_then(cpu_s);
    tally.measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(args.duration).await;
    tally.measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_after = args.api_pid.and_then(cpu_s);
    let sent_after = events_sent(&http, &args.url).await;
    let rss_end = args.api_pid.and_then(rss_kb);
    stop.cancel();
    for client in clients {
        let _ = client.await;
    }
    let (direct_latency, direct_events) = match direct {
        Some((task, histogram, count)) => {
            task.abort();
            let h = histogram.lock().await;
            (
                Some(LatencySummary::of(&h)),
                Some(count.load(Ordering::Relaxed)),
            )
        }
        None => (None, None),
    };
    let latencies = tally.latencies.lock().await;
    let sent = match (sent_before, sent_after) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let cpu = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(json!({
        "clients": args.clients,
        "connected": connected,
        "duration_s": elapsed,
        "events_received": tally.events.load(Ordering::Relaxed),
        "events_per_s": tally.events.load(Ordering::Relaxed) as f64 / elapsed,
        "latency_ms": LatencySummary::of(&latencies),
        "lagged": tally.lagged.load(Ordering::Relaxed),
        "streams_ended": tally.ended.load(Ordering::Relaxed),
        "direct_latency_ms": direct_latency,
        "direct_events": direct_events,
        "api_rss_mb_before": rss_before.map(|kb| kb as f64 / 1024.0),
        "api_rss_mb_connected": rss_connected.map(|kb| kb as f64 / 1024.0),
        "api_rss_mb_end": rss_end.map(|kb| kb as f64 / 1024.0),
        "api_rss_kb_per_client": match (rss_before, rss_connected) {
            (Some(a), Some(b)) => Some((b as f64 - a as f64) / args.clients.max(1) as f64),
            _ => None,
        },
        "api_cpu_s": cpu,
        "api_events_sent": sent,
        "api_cpu_us_per_event": match (cpu, sent) {
            (Some(cpu), Some(sent)) if sent > 0.0 => Some(cpu * 1e6 / sent),
            _ => None,
        },
    }))
}

type Direct = (
    tokio::task::JoinHandle<()>,
    Arc<Mutex<Histogram<u64>>>,
    Arc<AtomicU64>,
);

/// One ordered consumer on the event stream from its end, measured like the clients.
async fn direct_consumer(url: &str, stream: &str, tally: Arc<Tally>) -> anyhow::Result<Direct> {
    use async_nats::jetstream::consumer;
    let client = async_nats::connect(url).await?;
    let stream = async_nats::jetstream::new(client)
        .get_stream(stream)
        .await?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: "latch.events.>".into(),
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let histogram = Arc::new(Mutex::new(histogram()));
    let count = Arc::new(AtomicU64::new(0));
    let (h, c) = (histogram.clone(), count.clone());
    let task = tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            let now = OffsetDateTime::now_utc();
            if tally.measuring.load(Ordering::Relaxed)
                && let Some(us) = latency_us(&message.payload, now)
            {
                let _ = h.lock().await.record(us.max(1));
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok((task, histogram, count))
}

async fn pull(args: &PullArgs) -> anyhow::Result<Value> {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let (mut events, mut pages) = (0u64, 0u64);
    let mut after: Option<String> = None;
    let mut page_times = histogram();
    loop {
        // Cursors are opaque but URL-safe (the API's own pages carry them).
        let cursor = after
            .as_ref()
            .map(|c| format!("&after={c}"))
            .unwrap_or_default();
        let request = http
            .get(format!(
                "{}/v1/events?limit={}{cursor}",
                args.url, args.limit
            ))
            .bearer_auth(&args.token);
        let asked = Instant::now();
        let response = request.send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "answered {}",
            response.status()
        );
        let page: Value = response.json().await?;
        let _ = page_times.record((asked.elapsed().as_micros() as u64).max(1));
        pages += 1;
        events += page["events"].as_array().map_or(0, |e| e.len() as u64);
        after = page["next_cursor"].as_str().map(str::to_owned);
        if page["caught_up"] == true {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(json!({
        "events": events,
        "pages": pages,
        "limit": args.limit,
        "duration_s": elapsed,
        "events_per_s": events as f64 / elapsed,
        "page_ms": LatencySummary::of(&page_times),
    }))
}

async fn raw(args: &RawArgs) -> anyhow::Result<Value> {
    use async_nats::jetstream::consumer;
    let client = async_nats::connect(&args.nats_url).await?;
    let mut stream = async_nats::jetstream::new(client)
        .get_stream(&args.stream)
        .await?;
    anyhow::ensure!(
        stream.info().await?.state.messages > 0,
        "the stream is empty"
    );
    let start = Instant::now();
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: "latch.events.>".into(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut count = 0u64;
    while let Some(message) = messages.next().await {
        let message = message?;
        count += 1;
        // Parsed as the API parses each event.
        let _: Value = serde_json::from_slice(&message.payload)?;
        if message.info().map_err(|e| anyhow::anyhow!("{e}"))?.pending == 0 {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(json!({
        "events": count,
        "duration_s": elapsed,
        "events_per_s": count as f64 / elapsed,
    }))
}
