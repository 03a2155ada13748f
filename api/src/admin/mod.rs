//! Administrator endpoints: doors, holders, readers and grants.
//!
//! Every change is one transaction that also records an action (who did what), so the
//! registry and the event stream see administration too. Reader keys are returned once,
//! at enrolment; only their hash is stored.

mod doors;
mod grants;
mod holders;
mod readers;

pub use doors::*;
pub use grants::*;
pub use holders::*;
pub use readers::*;

use deadpool_postgres::Transaction;
use latch_core::event::EventKind;
use uuid::Uuid;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::trace::TraceParent;

pub(super) const UNIQUE_VIOLATION: &str = "23505";
pub(super) const FOREIGN_KEY_VIOLATION: &str = "23503";

/// What an administrative action touched, for its registry row.
#[derive(Default)]
pub(super) struct Touched {
    pub site: Option<String>,
    pub door_id: Option<Uuid>,
    pub holder_id: Option<Uuid>,
    pub reader_id: Option<Uuid>,
    pub grant_id: Option<Uuid>,
}

pub(super) async fn record(
    tx: &Transaction<'_>,
    kind: EventKind,
    admin: Admin,
    trace: &TraceParent,
    touched: Touched,
) -> Result<Uuid, ApiError> {
    let id = Uuid::now_v7();
    let statement = tx
        .prepare_cached(
            "INSERT INTO actions (id, kind, site, door_id, holder_id, reader_id, grant_id, actor_id,
                                  occurred_at, trace_parent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), $9)",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &id,
            &kind.as_str(),
            &touched.site,
            &touched.door_id,
            &touched.holder_id,
            &touched.reader_id,
            &touched.grant_id,
            &admin.id,
            &trace.to_string(),
        ],
    )
    .await?;
    Ok(id)
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
