//! `latch webhooks`: manage the webhook endpoints — integrators' subscriptions, each with
//! its own URL, event filter, rate and signing secret — and look at their deliveries.
//!
//! A thin client of the API (`/v1/webhooks/endpoints`, with the same settings as
//! `latch doors`: `LATCH_API_URL`, `LATCH_ADMIN_TOKEN`), so each change is validated, recorded
//! in the registry with its author and published as from any other client. The API takes
//! an `admin` token for every site. Arguments are checked before any request: a bad URL,
//! an unknown kind or site name, a rate, a grace period or a time out of range is a command
//! line error (exit 2) and nothing is sent.

use std::time::Duration;

use clap::{Args, Subcommand};
use latch_core::config::{Source, parse_duration};
use latch_core::event::EventKind;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::dlq::confirm;
use crate::site::{Admin, columns};
use crate::when::parse_when;

const ENDPOINTS: &str = "/v1/webhooks/endpoints";
/// The API's largest page of attempts.
const ATTEMPTS_PAGE: usize = 500;
/// The longest grace period the API takes for a rotation.
const MAX_GRACE: Duration = Duration::from_secs(30 * 86_400);

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// List the endpoints: URL, kinds, sites, rate, state and since when each is failing.
    ///
    /// Example: latch webhooks list
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Subscribe an endpoint to events; prints it and its signing secret, shown only this
    /// once.
    ///
    /// Example: latch webhooks create --url https://hr.example.com/hooks/latch --kinds check_in,check_out --sites hq
    Create {
        /// Where events are POSTed: https (plain http only where the API allows it).
        #[arg(long, value_parser = endpoint_url)]
        url: String,
        /// What it is for (1 to 500 characters).
        #[arg(long, value_parser = description)]
        description: Option<String>,
        /// Event kinds delivered, comma-separated (e.g. check_in,check_out); every kind when
        /// absent.
        #[arg(long, value_delimiter = ',', value_parser = kind)]
        kinds: Option<Vec<String>>,
        /// Sites whose events are delivered, comma-separated; every site's (and events
        /// without a site) when absent.
        #[arg(long, value_delimiter = ',', value_parser = site)]
        sites: Option<Vec<String>>,
        /// Calls per second at most, 1 to 1000 (default 50).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
        rate: Option<u16>,
    },
    /// Show one endpoint: its URL, filters, rate, state, last success and failures.
    ///
    /// Example: latch webhooks show 0193a1b2-...
    Show {
        /// The endpoint's id (`latch webhooks list` shows it).
        id: Uuid,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change an endpoint's URL, description, kinds, sites or rate; what is not named stays
    /// as it is.
    ///
    /// Example: latch webhooks update 0193a1b2-... --kinds check_in,check_out --all-sites --rate 20
    Update {
        /// The endpoint's id (`latch webhooks list` shows it).
        id: Uuid,
        #[command(flatten)]
        change: Change,
    },
    /// Stop deliveries to an endpoint; events routed to it wait until it is enabled again.
    ///
    /// Example: latch webhooks disable 0193a1b2-...
    Disable {
        /// The endpoint's id (`latch webhooks list` shows it).
        id: Uuid,
    },
    /// Start deliveries again: first what was routed to the endpoint while it was disabled,
    /// or, with --from-now, new events only.
    ///
    /// Example: latch webhooks enable 0193a1b2-... --from-now
    Enable {
        /// The endpoint's id (`latch webhooks list` shows it).
        id: Uuid,
        /// Skip what was routed to the endpoint while it was disabled.
        #[arg(long)]
        from_now: bool,
    },
    /// Delete an endpoint: nothing more is delivered to it, and its attempts are forgotten.
    ///
    /// Example: latch webhooks delete 0193a1b2-... --yes
    Delete {
        /// The endpoint's id (`latch webhooks list` shows it).
        id: Uuid,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Give an endpoint a new signing secret (shown only this once); the current one keeps
    /// signing beside it for the grace period, so the receiver can switch over.
    ///
    /// Example: latch webhooks rotate 0193a1b2-... --grace 1h   (--grace 0s: a leaked secret)
    Rotate {
        /// The endpoint's id (`latch webhooks list` shows it).
        id: Uuid,
        /// How long the current secret keeps signing beside the new one, 0s to 30d
        /// (default 24h).
        #[arg(long, value_name = "DURATION", value_parser = grace)]
        grace: Option<Duration>,
    },
    /// The calls made to an endpoint, newest first: outcome, HTTP status or error, latency,
    /// the start of the answer.
    ///
    /// Example: latch webhooks attempts 0193a1b2-... --status failed --since 24h
    Attempts {
        /// The endpoint's id (`latch webhooks list` shows it).
        id: Uuid,
        /// Only delivered, retry or failed (refused for good, or 410), or one HTTP status
        /// (e.g. 503).
        #[arg(long, value_parser = attempt_status)]
        status: Option<String>,
        /// Attempted at or after: RFC 3339, or a duration ago such as 24h.
        #[arg(long, value_name = "TIME", value_parser = past)]
        since: Option<OffsetDateTime>,
        /// At most this many attempts (the newest).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Print JSON (the attempts as the API gives them) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// An endpoint's delivery figures: delivered, failed, dead-lettered, pending and the age
    /// of the oldest pending event, the breaker, a recovery under way.
    ///
    /// Example: latch webhooks stats 0193a1b2-...
    Stats {
        /// The endpoint's id (`latch webhooks list` shows it).
        id: Uuid,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deliver again, oldest first and with their original ids, every event routed to an
    /// endpoint since a time (within what the stream keeps, LATCH_NATS_MAX_AGE).
    ///
    /// Example: latch webhooks recover 0193a1b2-... --since 2h
    Recover {
        /// The endpoint's id (`latch webhooks list` shows it).
        id: Uuid,
        /// From when: RFC 3339, or a duration ago such as 2h (not in the future).
        #[arg(long, value_name = "TIME", value_parser = past)]
        since: OffsetDateTime,
    },
}

/// What `latch webhooks update` changes: at least one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct Change {
    /// A new URL (https; plain http only where the API allows it).
    #[arg(long, value_parser = endpoint_url)]
    url: Option<String>,
    /// A new description (1 to 500 characters).
    #[arg(long, value_parser = description)]
    description: Option<String>,
    /// Deliver these event kinds only, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = kind, conflicts_with = "all_kinds")]
    kinds: Option<Vec<String>>,
    /// Deliver every kind from now on.
    #[arg(long)]
    all_kinds: bool,
    /// Deliver these sites' events only, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = site, conflicts_with = "all_sites")]
    sites: Option<Vec<String>>,
    /// Deliver every site's events (and those without a site) from now on.
    #[arg(long)]
    all_sites: bool,
    /// Calls per second at most, 1 to 1000.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
    rate: Option<u16>,
}

impl Change {
    /// The PATCH body: only what is named.
    fn body(&self) -> Value {
        let mut body = json!({});
        if let Some(url) = &self.url {
            body["url"] = json!(url);
        }
        if let Some(description) = &self.description {
            body["description"] = json!(description);
        }
        if let Some(kinds) = &self.kinds {
            body["kinds"] = json!(kinds);
        } else if self.all_kinds {
            body["kinds"] = Value::Null;
        }
        if let Some(sites) = &self.sites {
            body["sites"] = json!(sites);
        } else if self.all_sites {
            body["sites"] = Value::Null;
        }
        if let Some(rate) = self.rate {
            body["rate_per_second"] = json!(rate);
        }
        body
    }
}

/// A URL as an endpoint's: http(s), a host, no credentials. Where it resolves, and whether
/// plain http is allowed, is the API's to say.
fn endpoint_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!(
            "an endpoint's URL is https:// (or http:// where the API allows it), not {}:",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not carry credentials".to_owned());
    }
    if text.len() > 2048 {
        return Err("the URL must be at most 2048 bytes".to_owned());
    }
    Ok(text.to_owned())
}

fn description(text: &str) -> Result<String, String> {
    if text.trim().is_empty() || text.chars().count() > 500 || text.chars().any(char::is_control) {
        return Err("a description is 1 to 500 printable characters".to_owned());
    }
    Ok(text.to_owned())
}

fn kind(text: &str) -> Result<String, String> {
    text.parse::<EventKind>().map_err(|message| {
        let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("{message}; the kinds are {}", known.join(", "))
    })?;
    Ok(text.to_owned())
}

fn site(text: &str) -> Result<String, String> {
    if !latch_core::event::valid_site(text) {
        return Err(format!(
            "{text:?} is not a site name (1 to 63 lower-case letters, digits, '-' or '_')"
        ));
    }
    Ok(text.to_owned())
}

fn grace(text: &str) -> Result<Duration, String> {
    let grace = parse_duration(text)?;
    if grace > MAX_GRACE {
        return Err("the grace period is at most 30d".to_owned());
    }
    Ok(grace)
}

fn attempt_status(text: &str) -> Result<String, String> {
    match text {
        "delivered" | "retry" | "failed" => Ok(text.to_owned()),
        code if code.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c)) => Ok(text.to_owned()),
        _ => Err("delivered, retry, failed, or an HTTP status (100 to 599)".to_owned()),
    }
}

/// A time on the command line (RFC 3339 or a duration ago) that is not in the future.
fn past(text: &str) -> Result<OffsetDateTime, String> {
    let now = OffsetDateTime::now_utc();
    let at = parse_when(text, now).map_err(|e| e.to_string())?;
    if at > now {
        return Err(format!("{text} is in the future"));
    }
    Ok(at)
}

/// In UTC, to the microsecond (as the API keeps times).
fn rfc3339(at: OffsetDateTime) -> anyhow::Result<String> {
    let at = at.to_offset(time::UtcOffset::UTC);
    let at = at.replace_nanosecond(at.nanosecond() / 1000 * 1000)?;
    Ok(at.format(&Rfc3339)?)
}

pub async fn run(source: &Source, command: WebhooksCommand) -> anyhow::Result<()> {
    let api = Admin::from_source(source)?;
    match command {
        WebhooksCommand::List { json } => {
            let endpoints = api.call(Method::GET, ENDPOINTS, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&endpoints)?);
            } else {
                print!("{}", render_list(&endpoints));
            }
        }
        WebhooksCommand::Create {
            url,
            description,
            kinds,
            sites,
            rate,
        } => {
            let mut body = json!({"url": url});
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            if let Some(kinds) = kinds {
                body["kinds"] = json!(kinds);
            }
            if let Some(sites) = sites {
                body["sites"] = json!(sites);
            }
            if let Some(rate) = rate {
                body["rate_per_second"] = json!(rate);
            }
            let endpoint = api.call(Method::POST, ENDPOINTS, Some(body)).await?;
            print!("{}", render_endpoint(&endpoint, Some("created")));
            print!("{}", render_secret(&endpoint));
        }
        WebhooksCommand::Show { id, json } => {
            let endpoint = api
                .call(Method::GET, &format!("{ENDPOINTS}/{id}"), None)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&endpoint)?);
            } else {
                print!("{}", render_endpoint(&endpoint, None));
            }
        }
        WebhooksCommand::Update { id, change } => {
            let endpoint = api
                .call(
                    Method::PATCH,
                    &format!("{ENDPOINTS}/{id}"),
                    Some(change.body()),
                )
                .await?;
            print!("{}", render_endpoint(&endpoint, Some("updated")));
        }
        WebhooksCommand::Disable { id } => {
            let path = format!("{ENDPOINTS}/{id}");
            let endpoint = api.call(Method::GET, &path, None).await?;
            if let Some(at) = endpoint["disabled_at"].as_str() {
                println!("endpoint {id} is disabled already (since {at}); nothing changed");
                return Ok(());
            }
            api.call(Method::PATCH, &path, Some(json!({"disabled": true})))
                .await?;
            println!(
                "endpoint {id} disabled: nothing is delivered to it; the events routed to it \
                 wait for `latch webhooks enable {id}`"
            );
        }
        WebhooksCommand::Enable { id, from_now } => {
            // Enabling an enabled endpoint would still move it (--from-now skips what it has
            // not received yet): only a disabled one is enabled.
            let path = format!("{ENDPOINTS}/{id}");
            let endpoint = api.call(Method::GET, &path, None).await?;
            if endpoint["disabled_at"].is_null() {
                println!("endpoint {id} is enabled already; nothing changed");
                return Ok(());
            }
            let resume = if from_now { "now" } else { "where_stopped" };
            api.call(
                Method::PATCH,
                &path,
                Some(json!({"disabled": false, "resume": resume})),
            )
            .await?;
            if from_now {
                println!(
                    "endpoint {id} enabled: new events only (what was routed to it while \
                     disabled is skipped)"
                );
            } else {
                println!(
                    "endpoint {id} enabled: it receives what was routed to it while disabled, \
                     then new events"
                );
            }
        }
        WebhooksCommand::Delete { id, yes } => {
            let path = format!("{ENDPOINTS}/{id}");
            let endpoint = api.call(Method::GET, &path, None).await?;
            confirm(
                yes,
                &format!(
                    "Delete webhook endpoint {id} ({})? Nothing more is delivered to it and \
                     its attempts are forgotten.",
                    endpoint["url"].as_str().unwrap_or("?")
                ),
            )?;
            api.call(Method::DELETE, &path, None).await?;
            println!("endpoint {id} deleted");
        }
        WebhooksCommand::Rotate { id, grace } => {
            let mut body = json!({});
            if let Some(grace) = grace {
                body["grace_secs"] = json!(grace.as_secs());
            }
            let endpoint = api
                .call(
                    Method::POST,
                    &format!("{ENDPOINTS}/{id}/secret:rotate"),
                    Some(body),
                )
                .await?;
            match endpoint["previous_secret_until"].as_str() {
                Some(until) => println!(
                    "endpoint {id}: new signing secret; the previous one signs beside it until \
                     {until}"
                ),
                None => {
                    println!("endpoint {id}: new signing secret; the previous one no longer signs")
                }
            }
            print!("{}", render_secret(&endpoint));
        }
        WebhooksCommand::Attempts {
            id,
            status,
            since,
            limit,
            json,
        } => {
            let since = since.map(rfc3339).transpose()?;
            let (attempts, more) = attempts(
                &api,
                id,
                status.as_deref(),
                since.as_deref(),
                limit as usize,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&attempts)?);
            } else {
                print!("{}", render_attempts(&attempts, more));
            }
        }
        WebhooksCommand::Stats { id, json } => {
            let stats = api
                .call(Method::GET, &format!("{ENDPOINTS}/{id}/stats"), None)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{}", render_stats(&stats));
            }
        }
        WebhooksCommand::Recover { id, since } => {
            let since = rfc3339(since)?;
            api.call(
                Method::POST,
                &format!("{ENDPOINTS}/{id}/recover"),
                Some(json!({"since": since})),
            )
            .await?;
            println!(
                "endpoint {id}: delivering again every event routed to it since {since}, oldest \
                 first, with their original ids; `latch webhooks stats {id}` shows what is \
                 pending"
            );
        }
    }
    Ok(())
}

/// Up to `limit` attempts, newest first, following `next_cursor`; and whether there are
/// older ones.
async fn attempts(
    api: &Admin,
    id: Uuid,
    status: Option<&str>,
    since: Option<&str>,
    limit: usize,
) -> anyhow::Result<(Vec<Value>, bool)> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        // Every value here is URL-safe: a status word or number, an RFC 3339 time in UTC,
        // the API's base64url cursor.
        let mut query = vec![format!(
            "limit={}",
            (limit - items.len()).min(ATTEMPTS_PAGE)
        )];
        if let Some(status) = status {
            query.push(format!("status={status}"));
        }
        if let Some(since) = since {
            query.push(format!("since={since}"));
        }
        if let Some(cursor) = &cursor {
            query.push(format!("cursor={cursor}"));
        }
        let path = format!("{ENDPOINTS}/{id}/attempts?{}", query.join("&"));
        let mut page = api.call(Method::GET, &path, None).await?;
        let got = match page["items"].take() {
            Value::Array(got) => got,
            _ => anyhow::bail!("the API answered attempts without items"),
        };
        let empty = got.is_empty();
        items.extend(got);
        match page["next_cursor"].as_str() {
            Some(_) if items.len() >= limit => return Ok((items, true)),
            Some(next) if !empty => cursor = Some(next.to_owned()),
            _ => return Ok((items, false)),
        }
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

/// A list filter: `all` for null.
fn filter(value: &Value) -> String {
    match value.as_array() {
        Some(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        None => "all".to_owned(),
    }
}

fn state(endpoint: &Value) -> String {
    match (
        endpoint["disabled_at"].as_str(),
        endpoint["disabled_reason"].as_str(),
    ) {
        (None, _) => "enabled".to_owned(),
        (Some(_), Some(reason)) => format!("disabled ({reason})"),
        (Some(_), None) => "disabled".to_owned(),
    }
}

/// Cut to `width` characters on one line.
fn short(text: &str, width: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() <= width {
        line
    } else {
        let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// The table of `latch webhooks list`.
fn render_list(endpoints: &Value) -> String {
    let endpoints = endpoints.as_array().map(Vec::as_slice).unwrap_or_default();
    if endpoints.is_empty() {
        return "no webhook endpoints\n".to_owned();
    }
    let rows: Vec<Value> = endpoints
        .iter()
        .map(|e| {
            json!({
                "id": e["id"],
                "url": e["url"],
                "kinds": filter(&e["kinds"]),
                "sites": filter(&e["sites"]),
                "rate": format!("{}/s", e["rate_per_second"]),
                "state": state(e),
                "failing_since": e["failing_since"],
            })
        })
        .collect();
    columns(
        &Value::Array(rows),
        &[
            ("ID", "id"),
            ("URL", "url"),
            ("KINDS", "kinds"),
            ("SITES", "sites"),
            ("RATE", "rate"),
            ("STATE", "state"),
            ("FAILING SINCE", "failing_since"),
        ],
    )
}

/// One endpoint, a field a line; `what` follows the id in the first line (`created`).
fn render_endpoint(endpoint: &Value, what: Option<&str>) -> String {
    let mut out = format!("endpoint {}", text(&endpoint["id"]));
    if let Some(what) = what {
        out.push(' ');
        out.push_str(what);
    }
    out.push('\n');
    let mut field = |name: &str, value: String| {
        out.push_str(&format!("  {:<15} {value}\n", format!("{name}:")));
    };
    field("url", text(&endpoint["url"]).to_owned());
    if let Some(description) = endpoint["description"].as_str().filter(|d| !d.is_empty()) {
        field("description", description.to_owned());
    }
    field("kinds", filter(&endpoint["kinds"]));
    field("sites", filter(&endpoint["sites"]));
    field("rate", format!("{}/s", endpoint["rate_per_second"]));
    let state = match endpoint["disabled_at"].as_str() {
        None => "enabled".to_owned(),
        Some(at) => match endpoint["disabled_reason"].as_str() {
            Some(reason) => format!("disabled since {at} ({reason})"),
            None => format!("disabled since {at}"),
        },
    };
    field("state", state);
    field(
        "last success",
        endpoint["last_success_at"]
            .as_str()
            .unwrap_or("never")
            .to_owned(),
    );
    if let Some(since) = endpoint["failing_since"].as_str() {
        field("failing since", since.to_owned());
    }
    if let Some(until) = endpoint["previous_secret_until"].as_str() {
        field(
            "old secret",
            format!("signs beside the new one until {until}"),
        );
    }
    field("created", text(&endpoint["created_at"]).to_owned());
    field("updated", text(&endpoint["updated_at"]).to_owned());
    out
}

/// The secret of a creation or rotation, and that it is not shown again.
fn render_secret(endpoint: &Value) -> String {
    format!(
        "secret (shown once): {}\n\
         This secret is shown only this once: give it to the receiver now (it checks each \
         call's webhook-signature with it). A lost secret is replaced with `latch webhooks \
         rotate {}`.\n",
        text(&endpoint["secret"]),
        text(&endpoint["id"])
    )
}

/// The table of `latch webhooks attempts`.
fn render_attempts(attempts: &[Value], more: bool) -> String {
    if attempts.is_empty() {
        return "no attempts\n".to_owned();
    }
    let rows: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "time": a["attempted_at"],
                "event": a["event_id"],
                "outcome": a["outcome"],
                "status": a["status"],
                "error": a["error"],
                "latency": format!("{} ms", a["latency_ms"]),
                "response": a["response"].as_str().map(|r| short(r, 40)),
            })
        })
        .collect();
    let mut out = columns(
        &Value::Array(rows),
        &[
            ("TIME (UTC)", "time"),
            ("EVENT", "event"),
            ("OUTCOME", "outcome"),
            ("STATUS", "status"),
            ("ERROR", "error"),
            ("LATENCY", "latency"),
            ("RESPONSE", "response"),
        ],
    );
    out.push_str(&format!("{} attempt(s), newest first", attempts.len()));
    if more {
        out.push_str("; older ones not shown (raise --limit)");
    }
    out.push('\n');
    out
}

/// `latch webhooks stats`: a figure a line.
fn render_stats(stats: &Value) -> String {
    let mut out = format!("endpoint {}\n", text(&stats["endpoint_id"]));
    let mut field = |name: &str, value: String| {
        out.push_str(&format!("  {:<16} {value}\n", format!("{name}:")));
    };
    field("delivered", format!("{} call(s)", stats["delivered"]));
    field("failed", format!("{} call(s)", stats["failed"]));
    let dead = match stats["dead_letters"].as_u64() {
        Some(now) => format!(
            "{} event(s); {now} in LATCH_DLQ now",
            stats["dead_lettered"]
        ),
        None => format!(
            "{} event(s); LATCH_DLQ unreadable by the API",
            stats["dead_lettered"]
        ),
    };
    field("dead-lettered", dead);
    let pending = match stats["pending"].as_u64() {
        None => "unknown (the API cannot read the event stream)".to_owned(),
        Some(0) => "0 event(s)".to_owned(),
        Some(n) => match (
            stats["oldest_pending_at"].as_str(),
            stats["oldest_pending_age_secs"].as_f64(),
        ) {
            (Some(at), Some(age)) => {
                format!("{n} event(s) at most; the oldest {at} ({age:.0}s old)")
            }
            _ => format!("{n} event(s) at most"),
        },
    };
    field("pending", pending);
    field("breaker", text(&stats["breaker"]).to_owned());
    field(
        "position",
        stats["position"]
            .as_i64()
            .map_or_else(|| "not started".to_owned(), |p| p.to_string()),
    );
    field(
        "last success",
        stats["last_success_at"]
            .as_str()
            .unwrap_or("never")
            .to_owned(),
    );
    field(
        "failing since",
        stats["failing_since"]
            .as_str()
            .unwrap_or("not failing")
            .to_owned(),
    );
    if let Some(since) = stats["recover_since"].as_str() {
        field("recovering from", since.to_owned());
    }
    if let Some(at) = stats["disabled_at"].as_str() {
        field("disabled since", at.to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `latch webhooks ...` as clap reads it.
    #[derive(Debug, Parser)]
    struct Line {
        #[command(subcommand)]
        command: WebhooksCommand,
    }

    fn parse(args: &[&str]) -> Result<WebhooksCommand, clap::Error> {
        Line::try_parse_from(std::iter::once("webhooks").chain(args.iter().copied()))
            .map(|line| line.command)
    }

    #[test]
    fn bad_arguments_are_refused_by_the_command_line() {
        let id = "0193a1b2-0000-7000-8000-000000000001";
        for (args, error) in [
            (&["create", "--url", "hooks.example"][..], "not a URL"),
            (
                &["create", "--url", "ftp://hooks.example/x"][..],
                "not ftp:",
            ),
            (
                &["create", "--url", "https://u:p@hooks.example/x"][..],
                "credentials",
            ),
            (
                &[
                    "create",
                    "--url",
                    "https://h.example",
                    "--kinds",
                    "check_in,teleport",
                ][..],
                "unknown event kind \"teleport\"; the kinds are check_in, check_out",
            ),
            (
                &["create", "--url", "https://h.example", "--sites", "HQ"][..],
                "not a site name",
            ),
            (
                &["create", "--url", "https://h.example", "--rate", "0"][..],
                "0",
            ),
            (&["update", id][..], "required"),
            (
                &["update", id, "--kinds", "check_in", "--all-kinds"][..],
                "cannot be used with",
            ),
            (&["rotate", id, "--grace", "31d"][..], "at most 30d"),
            (
                &["attempts", id, "--status", "lost"][..],
                "delivered, retry",
            ),
            (&["attempts", id, "--limit", "0"][..], "0"),
            (&["recover", id, "--since", "yesterday"][..], "RFC 3339"),
            (
                &["recover", id, "--since", "2999-01-01T00:00:00Z"][..],
                "in the future",
            ),
            (&["recover", id][..], "--since"),
        ] {
            let error_text = parse(args).expect_err(&format!("{args:?}")).to_string();
            assert!(error_text.contains(error), "{args:?}: {error_text}");
        }
    }

    #[test]
    fn an_update_sends_only_what_is_named() {
        let id = "0193a1b2-0000-7000-8000-000000000001";
        let body = |args: &[&str]| match parse(args).expect("parses") {
            WebhooksCommand::Update { change, .. } => change.body(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            body(&["update", id, "--rate", "20"]),
            json!({"rate_per_second": 20})
        );
        assert_eq!(
            body(&["update", id, "--all-kinds", "--sites", "hq,lab"]),
            json!({"kinds": null, "sites": ["hq", "lab"]})
        );
        assert_eq!(
            body(&["update", id, "--kinds", "check_in", "--all-sites"]),
            json!({"kinds": ["check_in"], "sites": null})
        );
    }

    #[test]
    fn endpoints_render_as_a_table_and_a_page() {
        let endpoint = json!({
            "id": "e1", "url": "https://h.example/x", "description": "HR",
            "kinds": ["check_in", "check_out"], "sites": null, "rate_per_second": 50,
            "disabled_at": "2026-11-22T08:00:00Z", "disabled_reason": "410 Gone",
            "failing_since": "2026-11-22T07:00:00Z", "last_success_at": null,
            "previous_secret_until": null,
            "created_at": "2026-11-20T00:00:00Z", "updated_at": "2026-11-22T08:00:00Z",
        });
        assert_eq!(
            render_list(&json!([endpoint])),
            "ID  URL                  KINDS               SITES  RATE  STATE                FAILING SINCE\n\
             e1  https://h.example/x  check_in,check_out  all    50/s  disabled (410 Gone)  2026-11-22T07:00:00Z\n"
        );
        assert_eq!(render_list(&json!([])), "no webhook endpoints\n");
        let page = render_endpoint(&endpoint, Some("updated"));
        assert!(
            page.starts_with("endpoint e1 updated\n  url:            https://h.example/x\n"),
            "{page}"
        );
        assert!(
            page.contains("  state:          disabled since 2026-11-22T08:00:00Z (410 Gone)\n"),
            "{page}"
        );
        assert!(page.contains("  last success:   never\n"), "{page}");
    }

    #[test]
    fn attempts_render_on_one_line_each() {
        let attempts = [json!({
            "attempted_at": "2026-11-22T08:00:00Z", "event_id": "v1", "outcome": "retry",
            "status": 503, "error": null, "latency_ms": 12, "response": "busy\nretry later",
        })];
        assert_eq!(
            render_attempts(&attempts, true),
            "TIME (UTC)            EVENT  OUTCOME  STATUS  ERROR  LATENCY  RESPONSE\n\
             2026-11-22T08:00:00Z  v1     retry    503     -      12 ms    busy retry later\n\
             1 attempt(s), newest first; older ones not shown (raise --limit)\n"
        );
        assert_eq!(render_attempts(&[], false), "no attempts\n");
    }
}
