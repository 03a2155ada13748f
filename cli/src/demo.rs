//! `latch demo seed`: a small demonstration site for a local stack.
//!
//! One site with three doors, a reader at each, four holders whose cards show each kind
//! of decision, and an administrator. The keys are written once to a file (mode 0600) so
//! the local stack can print ready-to-run curl lines; they are not stored anywhere else.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use latch_core::config::{DatabaseConfig, Source};
use latch_core::credentials::{self, CredentialKind};
use latch_core::event::EventKind;
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Create the demonstration site (only into a database without doors) and write its
    /// keys to FILE as shell variables.
    ///
    /// Example: latch demo seed --out .local/stack/demo.env
    Seed {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

const SITE: &str = "hq";

/// Card, name, active, grants (door index, already expired) and the variable that
/// names the card in the keys file.
type DemoHolder = (
    &'static str,
    &'static str,
    bool,
    &'static [(usize, bool)],
    Option<&'static str>,
);

struct Seeded {
    lines: Vec<(String, String)>,
}

pub async fn run(source: &Source, command: DemoCommand) -> anyhow::Result<()> {
    let DemoCommand::Seed { out } = command;
    // It makes an administrator: only the schema owner may (see `latch admins`).
    let mut client = latch_core::db::connect(&DatabaseConfig::migration_url(source)?).await?;
    let tx = client.transaction().await?;
    let doors: i64 = tx
        .query_one("SELECT count(*) FROM doors", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        doors == 0,
        "the database already has {doors} door(s); the demo seed only fills an empty site"
    );
    let seeded = seed(&tx).await?;
    tx.commit().await?;

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    for (name, value) in &seeded.lines {
        writeln!(file, "{name}={value}")?;
    }
    println!(
        "demo site `{SITE}` created; keys written to {}",
        out.display()
    );
    Ok(())
}

async fn seed(tx: &tokio_postgres::Transaction<'_>) -> anyhow::Result<Seeded> {
    let admin_token = credentials::generate(CredentialKind::AdminToken);
    let admin = Uuid::now_v7();
    tx.execute(
        "INSERT INTO admins (id, name, token_hash) VALUES ($1, 'Demo administrator', $2)",
        &[&admin, &admin_token.hash],
    )
    .await?;
    let mut lines = vec![
        ("LATCH_DEMO_SITE".to_owned(), SITE.to_owned()),
        (
            "LATCH_DEMO_ADMIN_TOKEN".to_owned(),
            admin_token.plain.expose().clone(),
        ),
    ];
    let record = async |kind: EventKind,
                        door: Option<Uuid>,
                        holder: Option<Uuid>,
                        grant: Option<Uuid>| {
        tx.execute(
            "INSERT INTO actions (id, kind, site, door_id, holder_id, grant_id, actor_id, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now())",
            &[&Uuid::now_v7(), &kind.as_str(), &SITE, &door, &holder, &grant, &admin],
        )
        .await
    };

    let mut doors = Vec::new();
    for (name, var) in [
        ("Main entrance", "LATCH_DEMO_READER_KEY"),
        ("Server room", "LATCH_DEMO_READER_KEY_SERVER_ROOM"),
        ("Loading dock", "LATCH_DEMO_READER_KEY_LOADING_DOCK"),
    ] {
        let door = Uuid::now_v7();
        tx.execute(
            "INSERT INTO doors (id, site, name) VALUES ($1, $2, $3)",
            &[&door, &SITE, &name],
        )
        .await?;
        record(EventKind::DoorCreated, Some(door), None, None).await?;
        let key = credentials::generate(CredentialKind::ReaderKey);
        tx.execute(
            "INSERT INTO readers (id, door_id, name, key_hash) VALUES ($1, $2, $3, $4)",
            &[&Uuid::now_v7(), &door, &format!("{name} reader"), &key.hash],
        )
        .await?;
        record(EventKind::ReaderEnrolled, Some(door), None, None).await?;
        lines.push((var.to_owned(), key.plain.expose().clone()));
        doors.push(door);
    }

    let holders: [DemoHolder; 4] = [
        (
            "CARD-1001",
            "Ada Lovelace",
            true,
            &[(0, false), (1, false)],
            Some("LATCH_DEMO_CARD_GRANTED"),
        ),
        ("CARD-1002", "Grace Hopper", true, &[(0, false)], None),
        (
            "CARD-1003",
            "Margaret Hamilton",
            true,
            &[(0, true)],
            Some("LATCH_DEMO_CARD_EXPIRED"),
        ),
        (
            "CARD-1004",
            "Linus Torvalds",
            false,
            &[(0, false)],
            Some("LATCH_DEMO_CARD_INACTIVE"),
        ),
    ];
    for (card, name, active, grants, var) in holders {
        let holder = Uuid::now_v7();
        tx.execute(
            "INSERT INTO holders (id, card_id, name, active) VALUES ($1, $2, $3, $4)",
            &[&holder, &card, &name, &active],
        )
        .await?;
        record(EventKind::HolderCreated, None, Some(holder), None).await?;
        for &(door_index, expired) in grants {
            let grant = Uuid::now_v7();
            let door = doors[door_index];
            tx.execute(
                "INSERT INTO grants (id, holder_id, door_id, valid_from, valid_until, granted_by)
                 VALUES ($1, $2, $3, now() - interval '30 days',
                         CASE WHEN $5 THEN now() - interval '1 day' END, $4)",
                &[&grant, &holder, &door, &admin, &expired],
            )
            .await?;
            record(
                EventKind::GrantCreated,
                Some(door),
                Some(holder),
                Some(grant),
            )
            .await?;
        }
        if let Some(var) = var {
            lines.push((var.to_owned(), card.to_owned()));
        }
    }
    lines.push(("LATCH_DEMO_CARD_UNKNOWN".to_owned(), "CARD-9999".to_owned()));
    Ok(Seeded { lines })
}
