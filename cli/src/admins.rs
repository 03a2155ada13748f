//! `latch admins`: administrators and their tokens, straight in the database.
//!
//! Only the schema's owner may manage them (`LATCH_MIGRATION_DATABASE_URL`, or
//! `LATCH_DATABASE_URL` when that is the owner's login): the API's own login cannot mint or
//! revive a token. Each change is recorded in the registry (`admin_created`,
//! `admin_revoked`) by the database function that makes it.

use anyhow::Context;
use clap::Subcommand;
use latch_core::config::{DatabaseConfig, Source};
use latch_core::credentials::{self, CredentialKind};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum AdminsCommand {
    /// Create an administrator and print their token (shown once).
    ///
    /// Example: latch admins add --name "Front desk"
    Add {
        #[arg(long)]
        name: String,
    },
    /// List administrators (tokens are never shown again).
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
        AdminsCommand::Add { name } => {
            let (id, token) = add(&client, &name).await?;
            println!("admin {id} ({name})");
            println!("token (shown once): {}", token.expose());
        }
        AdminsCommand::List => {
            let rows = client
                .query(
                    "SELECT id, name, created_at, revoked_at FROM admins ORDER BY created_at",
                    &[],
                )
                .await?;
            println!("{:<36}  {:<24}  {:<20}  status", "id", "name", "created");
            for row in rows {
                let id: Uuid = row.get("id");
                let name: String = row.get("name");
                let created: OffsetDateTime = row.get("created_at");
                let revoked: Option<OffsetDateTime> = row.get("revoked_at");
                println!(
                    "{id}  {name:<24}  {:<20}  {}",
                    created.date().to_string(),
                    if revoked.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
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

/// Creates an administrator; returns its id and plain token.
pub async fn add(
    client: &tokio_postgres::Client,
    name: &str,
) -> anyhow::Result<(Uuid, latch_core::config::Secret<String>)> {
    anyhow::ensure!(
        !name.trim().is_empty() && name.len() <= 200,
        "--name must be 1 to 200 characters"
    );
    let token = credentials::generate(CredentialKind::AdminToken);
    let id = Uuid::now_v7();
    client
        .execute(
            "SELECT latch_add_admin($1, $2, $3, $4)",
            &[&Uuid::now_v7(), &id, &name, &token.hash],
        )
        .await
        .context(OWNER_ONLY)?;
    Ok((id, token.plain))
}
