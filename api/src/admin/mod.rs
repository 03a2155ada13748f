//! Administrator endpoints: doors, holders, readers, grants, webhook endpoints and dead
//! letters.
//!
//! Every change is one call of a database function that checks the admin's token, makes
//! the change and records its action (who did what) in the same transaction, so the
//! registry and the event stream see administration too, and the API's own login cannot
//! change permissions without both (see migration V5). Reader keys are returned once, at
//! enrolment; only their hash is stored.

mod dead_letters;
mod doors;
mod grants;
mod holders;
mod pipeline;
mod readers;
mod webhook_delivery;
mod webhooks;

pub use dead_letters::*;
pub use doors::*;
pub use grants::*;
pub use holders::*;
pub use pipeline::*;
pub use readers::*;
pub use webhook_delivery::*;
pub use webhooks::*;

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::trace::TraceParent;

/// What an administrative function of the database answered (migration V5): each checks
/// the caller's token, makes the change and records its action in one go, and says what
/// happened instead of raising an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    /// A door with this name on the site, or a holder with this card, exists already.
    Conflict,
    NotFound,
    DoorNotFound,
    HolderNotFound,
    /// Already disabled, already revoked.
    Already,
}

/// Calls the administrative function `function` as `admin`, with a new action id and the
/// request's traceparent before `args`. A token revoked or expired since the request was
/// authenticated answers 401; one that does not cover the site changed, 403.
pub(crate) async fn change(
    tx: &Transaction<'_>,
    function: &str,
    admin: &Admin,
    trace: &TraceParent,
    args: &[&(dyn ToSql + Sync)],
) -> Result<Outcome, ApiError> {
    let placeholders: Vec<String> = (1..=args.len() + 3).map(|i| format!("${i}")).collect();
    let statement = tx
        .prepare_cached(&format!("SELECT {function}({})", placeholders.join(", ")))
        .await?;
    let action_id = Uuid::now_v7();
    let trace = trace.to_string();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&admin.token_hash, &action_id, &trace];
    params.extend_from_slice(args);
    let outcome: String = tx.query_one(&statement, &params).await?.get(0);
    match outcome.as_str() {
        "done" => Ok(Outcome::Done),
        "conflict" => Ok(Outcome::Conflict),
        "not_found" => Ok(Outcome::NotFound),
        "door_not_found" => Ok(Outcome::DoorNotFound),
        "holder_not_found" => Ok(Outcome::HolderNotFound),
        "already" => Ok(Outcome::Already),
        "unauthorized" => Err(ApiError::unauthorized(
            "unknown, revoked or expired admin token",
        )),
        // The handler checked the scope already: what is left is the site.
        "forbidden" => Err(crate::auth::site_not_allowed()),
        other => Err(ApiError::internal(anyhow::anyhow!(
            "{function} answered {other:?}"
        ))),
    }
}

/// An outcome a handler did not expect from its function.
pub(super) fn unexpected(function: &str, outcome: Outcome) -> ApiError {
    ApiError::internal(anyhow::anyhow!("{function} answered {outcome:?}"))
}

pub(super) fn door_not_found() -> ApiError {
    ApiError::not_found("door_not_found", "no door with this id")
}

/// A site name, as the `doors` table's CHECK constraint has it.
pub const SITE_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,62}$";

/// Refuses a site name that no door can have (422).
pub fn check_site(site: &str) -> Result<(), ApiError> {
    if latch_core::event::valid_site(site) {
        return Ok(());
    }
    Err(ApiError::unprocessable(
        "invalid_field",
        "site must be 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or digit",
    ))
}

pub(super) fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.chars().count() > max || value.chars().any(char::is_control)
    {
        return Err(ApiError::unprocessable(
            "invalid_field",
            format!("{field} must be 1 to {max} printable characters"),
        ));
    }
    Ok(())
}
