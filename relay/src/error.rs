//! Why a drain round failed, and what the loop makes of it.

use crate::outbox;
use crate::publish::PublishError;

/// Why a drain round failed. The cause is kept (logged with its chain); what the loop
/// does about it, and the label it is counted under, follow from the variant alone.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DrainError {
    #[error("PostgreSQL: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("PostgreSQL: no connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A task of the drain (the claim ahead, a commit) ended without an answer.
    #[error("{0}: {1}")]
    Task(&'static str, #[source] tokio::task::JoinError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl DrainError {
    /// The `kind` label of `latch_relay_errors_total`, and the state logged once.
    pub(crate) fn state(&self) -> &'static str {
        match self {
            DrainError::Database(_) | DrainError::Pool(_) | DrainError::Task(..) => "postgres",
            DrainError::Publish(PublishError::Refused { .. }) => "nats_refused",
            DrainError::Publish(PublishError::Unacknowledged(_)) => "nats_unavailable",
        }
    }
}

impl From<outbox::ClaimError> for DrainError {
    fn from(e: outbox::ClaimError) -> Self {
        match e {
            outbox::ClaimError::Pool(e) => DrainError::Pool(e),
            outbox::ClaimError::Database(e) => DrainError::Database(e),
        }
    }
}
