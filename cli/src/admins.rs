//! `latch admins` (or `latch tokens`): tokens for administrators and integrators, straight
//! in the database. A token has scopes (`admin` is all of them), optionally a list of the
//! sites it is for, and optionally an expiry; the API checks all three at every request.
//!
//! Only the schema's owner may manage them (`LATCH_MIGRATION_DATABASE_URL`, or
//! `LATCH_DATABASE_URL` when that is the owner's login): the API's own login cannot mint or
//! revive a token. Each change is recorded in the registry (`admin_created`,
//! `admin_revoked`) by the database function that makes it.

use anyhow::Context;
use clap::Subcommand;
use latch_core::config::parse_duration;
use latch_core::config::{DatabaseConfig, Source};
use latch_core::credentials::{self, CredentialKind, Scope};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum AdminsCommand {
    /// Create a token and print it (shown once).
    ///
    /// Examples: latch admins add --name "Front desk";
    /// latch tokens add --name "HR export" --scope events:read --sites hq,north --expires 90d
    Add {
        #[arg(long)]
        name: String,
        /// What the token may do; repeat or separate with commas: admin (everything),
        /// sites:read, sites:write, access:write, registry:read, events:read.
        #[arg(long = "scope", value_delimiter = ',', default_value = "admin")]
        scopes: Vec<Scope>,
        /// The sites it is for (comma-separated); every site when absent.
        #[arg(long, value_delimiter = ',')]
        sites: Option<Vec<String>>,
        /// When it stops working: a duration from now (90d, 12h) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens: scopes, sites, expiry and state (tokens are never shown again).
    ///
    /// Example: latch admins list
    List,
    /// Revoke an administrator's token at once.
    ///
    /// Example: latch admins revoke 0190f3c2-...
    Revoke { id: Uuid },
}

const OWNER_ONLY: &str = "cannot change administrators: only the schema owner's login may \
     (set LATCH_MIGRATION_DATABASE_URL)";

pub async fn run(source: &Source, command: AdminsCommand) -> anyhow::Result<()> {
    let client = latch_core::db::connect(&DatabaseConfig::migration_url(source)?).await?;
    match command {
        AdminsCommand::Add {
            name,
            scopes,
            sites,
            expires,
        } => {
            let now = OffsetDateTime::now_utc();
            let expires = expires.map(|text| expiry(&text, now)).transpose()?;
            let token = Token {
                scopes,
                sites,
                expires,
            };
            let (id, plain) = add_token(&client, &name, &token).await?;
            println!("token {id} ({name}): {}", token.describe());
            println!("token (shown once): {}", plain.expose());
        }
        AdminsCommand::List => {
            let rows = client
                .query(
                    "SELECT id, name, created_at, revoked_at, scopes, sites, expires_at,
                            expires_at <= now() AS expired
                     FROM admins ORDER BY created_at",
                    &[],
                )
                .await?;
            println!(
                "{:<36}  {:<24}  {:<10}  {:<8}  {:<24}  {:<16}  expires",
                "id", "name", "created", "status", "scopes", "sites"
            );
            for row in rows {
                let id: Uuid = row.get("id");
                let name: String = row.get("name");
                let created: OffsetDateTime = row.get("created_at");
                let revoked: Option<OffsetDateTime> = row.get("revoked_at");
                let expired: Option<bool> = row.get("expired");
                let scopes: Vec<String> = row.get("scopes");
                let sites: Option<Vec<String>> = row.get("sites");
                let expires: Option<OffsetDateTime> = row.get("expires_at");
                let status = if revoked.is_some() {
                    "revoked"
                } else if expired == Some(true) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{id}  {name:<24}  {:<10}  {status:<8}  {:<24}  {:<16}  {}",
                    created.date().to_string(),
                    scopes.join(","),
                    sites.map_or_else(|| "all".to_owned(), |s| s.join(",")),
                    expires.map_or_else(|| "never".to_owned(), rfc3339),
                );
            }
        }
        AdminsCommand::Revoke { id } => {
            let outcome: String = client
                .query_one("SELECT latch_revoke_admin($1, $2)", &[&Uuid::now_v7(), &id])
                .await
                .context(OWNER_ONLY)?
                .get(0);
            anyhow::ensure!(outcome == "done", "no active admin with id {id}");
            println!("admin {id} revoked");
        }
    }
    Ok(())
}

/// What a new token may do.
#[derive(Debug, Clone)]
pub struct Token {
    pub scopes: Vec<Scope>,
    /// `None`: every site.
    pub sites: Option<Vec<String>>,
    pub expires: Option<OffsetDateTime>,
}

impl Token {
    fn describe(&self) -> String {
        let scopes: Vec<_> = self.scopes.iter().map(|s| s.as_str()).collect();
        format!(
            "scopes {}, sites {}, expires {}",
            scopes.join(","),
            self.sites
                .as_ref()
                .map_or_else(|| "all".to_owned(), |s| s.join(",")),
            self.expires.map_or_else(|| "never".to_owned(), rfc3339),
        )
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// `--expires`: a duration from `now` or an RFC 3339 time, in the future.
fn expiry(text: &str, now: OffsetDateTime) -> anyhow::Result<OffsetDateTime> {
    let at = match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(at) => at,
        Err(_) => {
            let after = parse_duration(text).map_err(|_| {
                anyhow::anyhow!(
                    "--expires {text:?} is neither a duration such as 90d nor an RFC 3339 time"
                )
            })?;
            now + after
        }
    };
    anyhow::ensure!(at > now, "--expires {text:?} is not in the future");
    Ok(at)
}

/// Creates a token; returns its id and plain value.
pub async fn add_token(
    client: &tokio_postgres::Client,
    name: &str,
    token: &Token,
) -> anyhow::Result<(Uuid, latch_core::config::Secret<String>)> {
    anyhow::ensure!(
        !name.trim().is_empty() && name.len() <= 200,
        "--name must be 1 to 200 characters"
    );
    anyhow::ensure!(!token.scopes.is_empty(), "give at least one --scope");
    if let Some(sites) = &token.sites {
        anyhow::ensure!(
            (1..=100).contains(&sites.len()),
            "--sites takes 1 to 100 sites"
        );
        for site in sites {
            anyhow::ensure!(
                latch_core::event::valid_site(site),
                "--sites: {site:?} is not a site name (lower-case letters, digits, '-', '_')"
            );
        }
    }
    let mut scopes: Vec<&str> = token.scopes.iter().map(|s| s.as_str()).collect();
    scopes.sort_unstable();
    scopes.dedup();
    let plain = credentials::generate(CredentialKind::AdminToken);
    let id = Uuid::now_v7();
    client
        .execute(
            "SELECT latch_add_token($1, $2, $3, $4, $5, $6, $7)",
            &[
                &Uuid::now_v7(),
                &id,
                &name,
                &plain.hash,
                &scopes,
                &token.sites,
                &token.expires,
            ],
        )
        .await
        .context(OWNER_ONLY)?;
    Ok((id, plain.plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_are_durations_or_times_in_the_future() {
        let now = OffsetDateTime::parse("2026-12-04T12:00:00Z", &Rfc3339).expect("time");
        assert_eq!(
            expiry("90d", now).expect("duration"),
            OffsetDateTime::parse("2027-03-04T12:00:00Z", &Rfc3339).expect("time")
        );
        assert!(expiry("2027-01-01T00:00:00Z", now).is_ok());
        assert!(expiry("2026-01-01T00:00:00Z", now).is_err());
        assert!(expiry("0s", now).is_err());
        assert!(expiry("soon", now).is_err());
    }
}
