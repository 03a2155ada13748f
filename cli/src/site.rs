//! `latch doors|holders|readers|grants`: run a site from the shell.
//!
//! These verbs are a thin client of the HTTP API (`LATCH_API_URL`, with an admin token in
//! `LATCH_ADMIN_TOKEN`), so every change goes through the same validation, is recorded
//! in the registry with its author and is published, exactly as from any other client.

use anyhow::Context;
use clap::Subcommand;
use latch_core::config::{Secret, Setting, Source};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::when::parse_when;

#[derive(Debug, Subcommand)]
pub enum DoorsCommand {
    /// Create a door.
    ///
    /// Example: latch doors add --site hq --name "Main entrance"
    Add {
        #[arg(long)]
        site: String,
        #[arg(long)]
        name: String,
    },
    /// List doors.
    ///
    /// Example: latch doors list --site hq
    List {
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum HoldersCommand {
    /// Register a card holder.
    ///
    /// Example: latch holders add --card 04A2B9C1D2 --name "Ada Lovelace"
    Add {
        #[arg(long)]
        card: String,
        #[arg(long)]
        name: String,
    },
    /// List card holders.
    ///
    /// Example: latch holders list
    List {
        #[arg(long)]
        json: bool,
    },
    /// Deactivate a holder: every unlock is denied, whatever their grants.
    ///
    /// Example: latch holders deactivate 0193a1b2-...
    Deactivate { id: Uuid },
    /// Activate a holder again.
    ///
    /// Example: latch holders activate 0193a1b2-...
    Activate { id: Uuid },
}

#[derive(Debug, Subcommand)]
pub enum ReadersCommand {
    /// Enrol a reader at a door and print its key (shown once).
    ///
    /// Example: latch readers add --door 0193a1b2-... --name "Main entrance, outside"
    Add {
        #[arg(long)]
        door: Uuid,
        #[arg(long)]
        name: String,
        /// Silent this long, the reader is reported offline (e.g. 5m; default 5m).
        #[arg(long, value_name = "DURATION")]
        offline_after: Option<String>,
    },
    /// List readers.
    ///
    /// Example: latch readers list --door 0193a1b2-...
    List {
        #[arg(long)]
        door: Option<Uuid>,
        #[arg(long)]
        json: bool,
    },
    /// Disable a reader: its key stops working at once.
    ///
    /// Example: latch readers disable 0193a1b2-...
    Disable { id: Uuid },
    /// Give a reader a new key (shown once); the old one works on for the grace period.
    ///
    /// Example: latch readers rotate-key 0193a1b2-... --grace 1h   (--grace 0s: a stolen key)
    RotateKey {
        id: Uuid,
        /// How long the old key keeps working beside the new one (default 24h).
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// Grant a holder access to a door.
    ///
    /// Example: latch grants add --holder 0193a1b2-... --door 0193a1b3-... --until 2027-01-01T00:00:00Z
    Add {
        #[arg(long)]
        holder: Uuid,
        #[arg(long)]
        door: Uuid,
        /// From (RFC 3339); now when absent.
        #[arg(long)]
        from: Option<String>,
        /// Until (RFC 3339); open-ended when absent.
        #[arg(long)]
        until: Option<String>,
    },
    /// List grants, newest first.
    ///
    /// Example: latch grants list --holder 0193a1b2-...
    List {
        #[arg(long)]
        holder: Option<Uuid>,
        #[arg(long)]
        door: Option<Uuid>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant.
    ///
    /// Example: latch grants revoke 0193a1b4-...
    Revoke { id: Uuid },
}

pub const API_URL: Setting = Setting {
    key: "api.url",
    default: Some("http://127.0.0.1:8080"),
    meaning: "the API that `latch doors/holders/readers/grants/webhooks` administer",
};
pub const API_CA_FILE: Setting = Setting {
    key: "api.ca_file",
    default: None,
    meaning: "PEM CA an https:// LATCH_API_URL's certificate comes from, when not a public one",
};
pub const ADMIN_TOKEN: Setting = Setting {
    key: "admin.token",
    default: None,
    meaning: "an admin token (lat_...), from `latch admins add`",
};

/// The settings of the commands that go through the API (listed for the README's check).
#[cfg(test)]
pub const SETTINGS: &[Setting] = &[API_URL, API_CA_FILE, ADMIN_TOKEN];

/// A client of the admin API.
pub struct Admin {
    base: String,
    token: Secret<String>,
    http: reqwest::Client,
}

impl Admin {
    pub fn from_source(source: &Source) -> anyhow::Result<Admin> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
        if let Some(path) = source.optional::<std::path::PathBuf>(&API_CA_FILE)? {
            let pem = std::fs::read(&path)
                .with_context(|| format!("cannot read LATCH_API_CA_FILE {}", path.display()))?;
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&pem).with_context(
                || {
                    format!(
                        "LATCH_API_CA_FILE {} is not a PEM certificate",
                        path.display()
                    )
                },
            )?);
        }
        Ok(Admin {
            base: source
                .value::<String>(&API_URL)?
                .trim_end_matches('/')
                .to_owned(),
            token: Secret::new(source.value(&ADMIN_TOKEN)?),
            http: http.build()?,
        })
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the latch API at {} (LATCH_API_URL): {e}",
                self.base
            )
        })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"]["code"].as_str().unwrap_or("unknown");
        let message = body["error"]["message"].as_str().unwrap_or("no details");
        anyhow::bail!("the API refused ({} {code}): {message}", status.as_u16())
    }
}

pub(crate) fn columns(items: &Value, fields: &[(&str, &str)]) -> String {
    let rows: Vec<Vec<String>> = items
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|item| {
            fields
                .iter()
                .map(|(_, field)| match &item[*field] {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".to_owned(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = fields
        .iter()
        .enumerate()
        .map(|(i, (title, _))| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(fields.iter().map(|(t, _)| t.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

fn show(items: Value, json: bool, fields: &[(&str, &str)]) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else {
        print!("{}", columns(&items, fields));
    }
    Ok(())
}

fn time_arg(text: Option<&str>) -> anyhow::Result<Option<String>> {
    text.map(|t| {
        parse_when(t, time::OffsetDateTime::now_utc())
            .and_then(|at| Ok(at.format(&time::format_description::well_known::Rfc3339)?))
    })
    .transpose()
}

pub async fn doors(source: &Source, command: DoorsCommand) -> anyhow::Result<()> {
    let api = Admin::from_source(source)?;
    match command {
        DoorsCommand::Add { site, name } => {
            let door = api
                .call(
                    Method::POST,
                    "/v1/doors",
                    Some(json!({"site": site, "name": name})),
                )
                .await?;
            println!(
                "door {} ({} / {})",
                door["id"].as_str().unwrap_or("?"),
                site,
                name
            );
        }
        DoorsCommand::List { site, json } => {
            let path = match site {
                Some(site) => format!("/v1/doors?site={site}"),
                None => "/v1/doors".to_owned(),
            };
            let doors = api.call(Method::GET, &path, None).await?;
            show(
                doors,
                json,
                &[("ID", "id"), ("SITE", "site"), ("NAME", "name")],
            )?;
        }
    }
    Ok(())
}

pub async fn holders(source: &Source, command: HoldersCommand) -> anyhow::Result<()> {
    let api = Admin::from_source(source)?;
    match command {
        HoldersCommand::Add { card, name } => {
            let holder = api
                .call(
                    Method::POST,
                    "/v1/holders",
                    Some(json!({"card_id": card, "name": name})),
                )
                .await?;
            println!("holder {} ({name})", holder["id"].as_str().unwrap_or("?"));
        }
        HoldersCommand::List { json } => {
            let holders = api.call(Method::GET, "/v1/holders", None).await?;
            show(
                holders,
                json,
                &[
                    ("ID", "id"),
                    ("CARD", "card_id"),
                    ("NAME", "name"),
                    ("ACTIVE", "active"),
                ],
            )?;
        }
        HoldersCommand::Deactivate { id } | HoldersCommand::Activate { id } => {
            let active = matches!(command, HoldersCommand::Activate { .. });
            api.call(
                Method::PATCH,
                &format!("/v1/holders/{id}"),
                Some(json!({"active": active})),
            )
            .await?;
            println!(
                "holder {id} {}",
                if active { "activated" } else { "deactivated" }
            );
        }
    }
    Ok(())
}

pub async fn readers(source: &Source, command: ReadersCommand) -> anyhow::Result<()> {
    let api = Admin::from_source(source)?;
    match command {
        ReadersCommand::Add {
            door,
            name,
            offline_after,
        } => {
            let mut body = json!({"door_id": door, "name": name});
            if let Some(after) = offline_after {
                let after =
                    latch_core::config::parse_duration(&after).map_err(anyhow::Error::msg)?;
                body["offline_after_secs"] = json!(after.as_secs());
            }
            let reader = api.call(Method::POST, "/v1/readers", Some(body)).await?;
            println!(
                "reader {} at door {door}",
                reader["id"].as_str().unwrap_or("?")
            );
            println!(
                "key (shown once): {}",
                reader["key"].as_str().unwrap_or("?")
            );
        }
        ReadersCommand::List { door, json } => {
            let path = match door {
                Some(door) => format!("/v1/readers?door_id={door}"),
                None => "/v1/readers".to_owned(),
            };
            let readers = api.call(Method::GET, &path, None).await?;
            show(
                readers,
                json,
                &[
                    ("ID", "id"),
                    ("DOOR", "door_id"),
                    ("NAME", "name"),
                    ("ENABLED", "enabled"),
                ],
            )?;
        }
        ReadersCommand::Disable { id } => {
            api.call(Method::POST, &format!("/v1/readers/{id}/disable"), None)
                .await?;
            println!("reader {id} disabled");
        }
        ReadersCommand::RotateKey { id, grace } => {
            let mut body = json!({});
            if let Some(grace) = grace {
                let grace =
                    latch_core::config::parse_duration(&grace).map_err(anyhow::Error::msg)?;
                body["grace_secs"] = json!(grace.as_secs());
            }
            let path = format!("/v1/readers/{id}/keys:rotate");
            let reader = api.call(Method::POST, &path, Some(body)).await?;
            match reader["previous_key_until"].as_str() {
                Some(until) => println!("reader {id}: new key; the old one works until {until}"),
                None => println!("reader {id}: new key; the old one no longer works"),
            }
            println!(
                "key (shown once): {}",
                reader["key"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

pub async fn grants(source: &Source, command: GrantsCommand) -> anyhow::Result<()> {
    let api = Admin::from_source(source)?;
    match command {
        GrantsCommand::Add {
            holder,
            door,
            from,
            until,
        } => {
            let grant = api
                .call(
                    Method::POST,
                    "/v1/grants",
                    Some(json!({
                        "holder_id": holder,
                        "door_id": door,
                        "valid_from": time_arg(from.as_deref())?,
                        "valid_until": time_arg(until.as_deref())?,
                    })),
                )
                .await?;
            println!("grant {}", grant["id"].as_str().unwrap_or("?"));
        }
        GrantsCommand::List { holder, door, json } => {
            let mut query = Vec::new();
            if let Some(holder) = holder {
                query.push(format!("holder_id={holder}"));
            }
            if let Some(door) = door {
                query.push(format!("door_id={door}"));
            }
            let path = format!("/v1/grants?{}", query.join("&"));
            let grants = api.call(Method::GET, &path, None).await?;
            show(
                grants,
                json,
                &[
                    ("ID", "id"),
                    ("HOLDER", "holder_id"),
                    ("DOOR", "door_id"),
                    ("FROM", "valid_from"),
                    ("UNTIL", "valid_until"),
                    ("REVOKED", "revoked_at"),
                ],
            )?;
        }
        GrantsCommand::Revoke { id } => {
            api.call(Method::DELETE, &format!("/v1/grants/{id}"), None)
                .await?;
            println!("grant {id} revoked");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_render_as_aligned_columns() {
        let items = json!([
            {"id": "a1", "site": "hq", "name": "Main entrance"},
            {"id": "b22", "site": "annex", "name": "Dock", "extra": 1},
        ]);
        assert_eq!(
            columns(&items, &[("ID", "id"), ("SITE", "site"), ("NAME", "name")]),
            "ID   SITE   NAME\na1   hq     Main entrance\nb22  annex  Dock\n"
        );
        assert_eq!(columns(&json!([]), &[("ID", "id")]), "ID\n");
    }
}
