//! Leadership: one relay publishes at a time.
//!
//! Per-holder order in the stream needs one publisher: two relays each holding part of
//! the backlog could store a holder's later event before its earlier one. So relays elect
//! a leader with a session-level PostgreSQL advisory lock, taken on a dedicated
//! connection; the others stand by and try again every poll interval. The lock goes away
//! with its connection, so a leader that crashes or loses the database hands over within
//! one poll interval, with no lease to expire.
//!
//! The same connection LISTENs for the writers' NOTIFY, which they send only while the
//! leader is armed (see [`crate::wake`]). Interest is registered before the first drain,
//! so a notification sent while the leader drains wakes it again rather than waiting for
//! the poll fallback.

use std::sync::Arc;

use futures::StreamExt;
use latch_core::config::Secret;
use latch_core::event::OUTBOX_CHANNEL;
use latch_core::shutdown::CancellationToken;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

/// The advisory lock key the relays compete for (`latch` in ASCII).
const LEADER_LOCK: i64 = 0x6c_61_74_63_68;

pub struct Leadership {
    // Held for the lock and the LISTEN; dropping it closes the connection.
    _client: tokio_postgres::Client,
    /// Notified when a writer wakes the relay (or the connection is lost).
    pub wake: Arc<Notify>,
    /// Cancelled when the connection, and with it the lock, is gone.
    pub lost: CancellationToken,
}

impl Leadership {
    /// Becomes the leader if no other relay is; `None` when another one leads.
    pub async fn try_acquire(url: &Secret<String>) -> anyhow::Result<Option<Leadership>> {
        let (client, mut messages) = latch_core::db::connect_listening(url).await?;
        let wake = Arc::new(Notify::new());
        let lost = CancellationToken::new();
        {
            let wake = wake.clone();
            let lost = lost.clone();
            tokio::spawn(async move {
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, "relay leadership connection failed");
                            break;
                        }
                    }
                }
                lost.cancel();
                wake.notify_one();
            });
        }
        let acquired: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
            .await?
            .get(0);
        if !acquired {
            return Ok(None);
        }
        client
            .batch_execute(&format!("LISTEN {OUTBOX_CHANNEL}"))
            .await?;
        Ok(Some(Leadership {
            _client: client,
            wake,
            lost,
        }))
    }
}
