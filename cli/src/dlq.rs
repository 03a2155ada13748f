//! `latch dlq`: look at, replay and purge dead letters.
//!
//! Dead letters are read from `LATCH_DLQ` (see `latch_core::dlq` for their format) and
//! grouped by (sink, event): an event dead-lettered twice is shown and replayed once.
//! A replay publishes the event to `latch.replay.<sink>` — that sink only — with its
//! event id unchanged, records who replayed what in the actions registry, and only then
//! removes the dead letter. Running a replay again after an interruption picks up what
//! is left; a dead letter whose replay was published but not yet removed is not replayed
//! twice (its replay message id is fixed, and the stream deduplicates it).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use latch_core::config::{DatabaseConfig, Source};
use latch_core::dlq::{self, Entry, Group, display_id, stale_reason};
use latch_core::event::EventKind;
use latch_core::nats::NatsConfig;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::exit::{Failure, REFUSED};
use crate::when::parse_when;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters (one line per event and sink).
    ///
    /// Example: latch dlq list --sink legacy --since 24h
    List {
        #[command(flatten)]
        filter: Filter,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter: envelope, headers and every recorded failure.
    ///
    /// Example: latch dlq show 0193a1b2-...
    Show {
        /// The event id.
        id: Uuid,
        /// The sink, when the event is dead-lettered at several.
        #[arg(long)]
        sink: Option<String>,
    },
    /// Send dead letters again to the sink that failed them.
    ///
    /// Example: latch dlq replay --all --sink legacy --rate 20 --yes
    Replay(ReplayArgs),
    /// Delete dead letters for good.
    ///
    /// Example: latch dlq purge --older-than 30d --yes
    Purge {
        /// Event ids to purge.
        ids: Vec<Uuid>,
        /// Purge every dead letter older than this (e.g. 7d).
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
        #[arg(long)]
        sink: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args, Default, Clone)]
pub struct Filter {
    /// Only this sink (legacy, webhooks, or a webhook endpoint: endpoint.<id>).
    #[arg(long)]
    pub sink: Option<String>,
    /// Only this event kind (e.g. check_in).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only this failure class: permanent, exhausted, malformed.
    #[arg(long)]
    pub reason_class: Option<String>,
    /// Dead-lettered at or after (RFC 3339, or a duration ago such as 24h).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Dead-lettered before (RFC 3339, or a duration ago).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// At most this many.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Event ids to replay.
    ids: Vec<Uuid>,
    /// Replay every dead letter that matches the filters.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    filter: Filter,
    /// Replays per second at most.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Show what would be replayed (and refused) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Replay even what the stale-replay guard refuses.
    #[arg(long)]
    force: bool,
    /// Who is replaying, for the registry (default: $USER).
    #[arg(long, env = "USER", default_value = "unknown")]
    operator: String,
}

impl Filter {
    /// The filter as `latch_core::dlq` takes it: times read, kind and class checked.
    fn read(&self) -> anyhow::Result<dlq::Filter> {
        let now = OffsetDateTime::now_utc();
        let when = |t: &Option<String>| t.as_deref().map(|t| parse_when(t, now)).transpose();
        let filter = dlq::Filter {
            sink: self.sink.clone(),
            kind: self.kind.clone(),
            reason_class: self.reason_class.clone(),
            since: when(&self.since)?,
            until: when(&self.until)?,
            ids: Vec::new(),
            limit: self.limit,
        };
        filter.validate().map_err(|e| {
            if self.reason_class.is_some() && e.starts_with("unknown reason class") {
                anyhow::anyhow!("--reason-class must be permanent, exhausted or malformed")
            } else {
                anyhow::Error::msg(e)
            }
        })?;
        Ok(filter)
    }
}

async fn jetstream(source: &Source) -> anyhow::Result<async_nats::jetstream::Context> {
    let nats = NatsConfig::from_source(source)?;
    let client = latch_core::nats::connect_once(&nats, "latch-cli").await?;
    Ok(async_nats::jetstream::new(client))
}

/// Dead letters grouped and filtered, oldest first.
async fn select(
    js: &async_nats::jetstream::Context,
    filter: &Filter,
) -> anyhow::Result<Vec<Group>> {
    dlq::select(js, &filter.read()?).await
}

pub async fn run(source: &Source, command: DlqCommand) -> anyhow::Result<()> {
    let js = jetstream(source).await?;
    match command {
        DlqCommand::List { filter, json } => {
            let groups = select(&js, &filter).await?;
            if json {
                let entries: Vec<&Entry> = groups.iter().map(|g| &g.entry).collect();
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print!("{}", render_table(&groups));
            }
        }
        DlqCommand::Show { id, sink } => {
            let groups = select(
                &js,
                &Filter {
                    sink,
                    ..Filter::default()
                },
            )
            .await?;
            let found: Vec<&Group> = groups
                .iter()
                .filter(|g| g.entry.event_id == Some(id))
                .collect();
            anyhow::ensure!(!found.is_empty(), "no dead letter for event {id}");
            for group in found {
                print!("{}", render_show(group));
            }
        }
        DlqCommand::Replay(args) => replay(source, &js, args).await?,
        DlqCommand::Purge {
            ids,
            older_than,
            sink,
            yes,
        } => {
            anyhow::ensure!(
                !ids.is_empty() || older_than.is_some(),
                "name event ids or --older-than"
            );
            let now = OffsetDateTime::now_utc();
            let cutoff = older_than
                .as_deref()
                .map(|d| parse_when(d, now))
                .transpose()?;
            let groups: Vec<Group> = select(
                &js,
                &Filter {
                    sink,
                    ..Filter::default()
                },
            )
            .await?
            .into_iter()
            .filter(|g| {
                (ids.is_empty() || g.entry.event_id.is_some_and(|id| ids.contains(&id)))
                    && cutoff.is_none_or(|c| g.entry.at < c)
            })
            .collect();
            if groups.is_empty() {
                println!("nothing to purge");
                return Ok(());
            }
            confirm(
                yes,
                &format!("Delete {} dead letter(s) for good?", groups.len()),
            )?;
            let seqs: Vec<u64> = groups.iter().flat_map(|g| g.dlq_seqs.clone()).collect();
            dlq::remove(&js, &seqs).await?;
            println!("purged {} dead letter(s)", groups.len());
        }
    }
    Ok(())
}

async fn replay(
    source: &Source,
    js: &async_nats::jetstream::Context,
    args: ReplayArgs,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.all
            || !args.ids.is_empty()
            || args.filter.since.is_some()
            || args.filter.kind.is_some()
            || args.filter.reason_class.is_some(),
        "say what to replay: event ids, --all, or filters (--kind, --reason-class, --since)"
    );
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let groups: Vec<Group> = select(js, &args.filter)
        .await?
        .into_iter()
        .filter(|g| {
            args.ids.is_empty() || g.entry.event_id.is_some_and(|id| args.ids.contains(&id))
        })
        .collect();
    if groups.is_empty() {
        println!("nothing to replay");
        return Ok(());
    }
    let db = latch_core::db::connect(&DatabaseConfig::from_source(source)?.url).await?;
    let mut plan = Vec::new();
    let mut refused = Vec::new();
    for group in groups {
        match stale_reason(&db, &group.entry).await? {
            Some(reason) if !args.force => refused.push((group, reason)),
            _ => plan.push(group),
        }
    }
    for (group, reason) in &refused {
        eprintln!(
            "refused: {} {} to {}: {reason} (use --force to replay anyway)",
            group.entry.kind.as_deref().unwrap_or("?"),
            display_id(&group.entry),
            group.entry.sink
        );
    }
    if args.dry_run {
        for group in &plan {
            println!(
                "would replay {} {} to {}",
                group.entry.kind.as_deref().unwrap_or("?"),
                display_id(&group.entry),
                group.entry.sink
            );
        }
        println!(
            "dry run: {} to replay, {} refused; nothing changed",
            plan.len(),
            refused.len()
        );
        return finish(&refused);
    }
    if plan.is_empty() {
        println!("nothing to replay");
        return finish(&refused);
    }
    confirm(
        args.yes,
        &format!("Replay {} dead letter(s) to their sinks?", plan.len()),
    )?;

    let interrupted = latch_core::shutdown::CancellationToken::new();
    latch_core::shutdown::on_signal(interrupted.clone());
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let progress = Progress::new(plan.len());
    let mut next = Instant::now();
    let mut done = 0;
    for group in &plan {
        if interrupted.is_cancelled() {
            progress.clear();
            println!(
                "interrupted after {done} of {}; run the same command again to replay the rest",
                plan.len()
            );
            return Err(Failure::new(crate::exit::INTERRUPTED, "replay interrupted").into());
        }
        tokio::select! {
            _ = interrupted.cancelled() => continue,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        next += interval;
        dlq::replay(js, &group.entry).await?;
        record_replay(&db, &group.entry, &args.operator).await?;
        dlq::remove(js, &group.dlq_seqs).await?;
        done += 1;
        progress.show(done);
    }
    progress.clear();
    println!("replayed {done} dead letter(s); {} refused", refused.len());
    finish(&refused)
}

fn finish(refused: &[(Group, String)]) -> anyhow::Result<()> {
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            REFUSED,
            format!(
                "exit 4: {} dead letter(s) refused by the stale-replay guard (listed above; \
                 --force replays them anyway); the others were done",
                refused.len()
            ),
        )
        .into())
    }
}

/// Records the replay in the registry: who replayed which event to which sink.
async fn record_replay(
    db: &tokio_postgres::Client,
    entry: &Entry,
    operator: &str,
) -> anyhow::Result<()> {
    let envelope = &entry.envelope;
    let uuid = |field: &str| {
        envelope[field]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
    };
    let reason = dlq::replay_reason(entry, operator);
    db.execute(
        "INSERT INTO actions (id, kind, site, door_id, holder_id, grant_id, reason, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now())",
        &[
            &Uuid::now_v7(),
            &EventKind::DlqReplayed.as_str(),
            &envelope["site"].as_str(),
            &uuid("door_id"),
            &uuid("holder_id"),
            &uuid("grant_id"),
            &reason,
        ],
    )
    .await?;
    Ok(())
}

pub(crate) fn confirm(yes: bool, question: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "not on a terminal: add --yes to confirm"
    );
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Failure::new(REFUSED, "not confirmed; nothing changed").into())
    }
}

fn short(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// The human table of `latch dlq list`.
pub fn render_table(groups: &[Group]) -> String {
    if groups.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let mut out = format!(
        "{:<20}  {:<8}  {:<16}  {:<36}  {:>8}  {}\n",
        "TIME (UTC)", "SINK", "KIND", "EVENT ID", "ATTEMPTS", "REASON"
    );
    for group in groups {
        let entry = &group.entry;
        let at = entry
            .at
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .unwrap_or_default();
        let duplicates = if group.dlq_seqs.len() > 1 {
            format!(" (dead-lettered {}×)", group.dlq_seqs.len())
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{at:<20}  {:<8}  {:<16}  {:<36}  {:>8}  {}: {}{duplicates}\n",
            entry.sink,
            entry.kind.as_deref().unwrap_or("?"),
            display_id(entry),
            entry.attempts,
            entry.class,
            short(&entry.reason, 60),
        ));
    }
    out.push_str(&format!("{} dead letter(s)\n", groups.len()));
    out
}

fn render_show(group: &Group) -> String {
    let entry = &group.entry;
    let mut out = format!(
        "event {} at sink {}\n\nenvelope:\n",
        display_id(entry),
        entry.sink
    );
    out.push_str(&serde_json::to_string_pretty(&entry.envelope).unwrap_or_default());
    out.push_str("\n\nheaders:\n");
    for (name, value) in &entry.headers {
        out.push_str(&format!("  {name}: {value}\n"));
    }
    out.push_str(&format!(
        "\noriginal: {} #{} in {}\n\nfailures:\n",
        entry.original_subject,
        entry.original_seq,
        latch_core::nats::EVENTS_STREAM
    ));
    for failure in &group.history {
        out.push_str(&format!(
            "  {}  {}  after {} attempt(s){}: {}  (dlq #{})\n",
            failure.at.format(&Rfc3339).unwrap_or_default(),
            failure.class,
            failure.attempts,
            failure
                .status
                .map(|s| format!(", HTTP {s}"))
                .unwrap_or_default(),
            failure.reason,
            failure.dlq_seq
        ));
    }
    out
}

/// Count, rate and ETA on a terminal; nothing otherwise.
struct Progress {
    total: usize,
    started: Instant,
    terminal: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, done: usize) {
        if !self.terminal {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / elapsed;
        let eta = (self.total - done) as f64 / rate.max(0.001);
        eprint!(
            "\r  replayed {done}/{} ({rate:.1}/s, ETA {eta:.0}s)   ",
            self.total
        );
        let _ = std::io::stderr().flush();
    }

    fn clear(&self) {
        if self.terminal {
            eprint!("\r{:60}\r", "");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, sink: &str, event: &str, kind: &str) -> Entry {
        Entry {
            dlq_seq: seq,
            sink: sink.into(),
            class: "permanent".into(),
            reason: "HTTP 422".into(),
            attempts: 1,
            status: Some(422),
            original_subject: format!("latch.events.{kind}"),
            original_seq: seq * 10,
            at: OffsetDateTime::parse("2026-11-22T08:30:00Z", &Rfc3339).expect("time"),
            event_id: Some(event.parse().expect("uuid")),
            kind: Some(kind.into()),
            envelope: serde_json::json!({"id": event, "kind": kind}),
            headers: vec![],
            payload: bytes::Bytes::new(),
        }
    }

    #[test]
    fn the_table_shows_one_line_per_event_and_sink() {
        let a = "0193a1b2-0000-7000-8000-000000000001";
        let b = "0193a1b2-0000-7000-8000-000000000002";
        let groups = dlq::group(vec![
            entry(1, "legacy", a, "check_in"),
            entry(2, "legacy", a, "check_in"),
            entry(3, "webhooks", a, "check_in"),
            entry(4, "webhooks", b, "grant_created"),
        ]);
        assert_eq!(
            render_table(&groups),
            "\
TIME (UTC)            SINK      KIND              EVENT ID                              ATTEMPTS  REASON
2026-11-22 08:30:00   legacy    check_in          0193a1b2-0000-7000-8000-000000000001         1  permanent: HTTP 422 (dead-lettered 2×)
2026-11-22 08:30:00   webhooks  check_in          0193a1b2-0000-7000-8000-000000000001         1  permanent: HTTP 422
2026-11-22 08:30:00   webhooks  grant_created     0193a1b2-0000-7000-8000-000000000002         1  permanent: HTTP 422
3 dead letter(s)
"
        );
        assert_eq!(render_table(&[]), "no dead letters\n");
    }
}
