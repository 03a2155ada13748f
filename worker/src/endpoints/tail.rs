//! The tail: one reader of `latch.events.>` (and of the dead letters replayed to endpoints,
//! `latch.replay.endpoint.>`) that offers each new event to the inboxes of the endpoints it
//! is routed to, without ever waiting for one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer;
use futures::StreamExt;
use latch_core::nats::EVENTS_SUBJECTS;
use latch_core::shutdown::CancellationToken;

use super::endpoint::{REPLAY_PREFIX, Routed};
use super::{Routing, Shared};

pub struct Tail {
    /// The last event offered (the stream's last one when it started).
    head: u64,
}

impl Tail {
    /// Fixes where the tail starts: after the stream's last event now.
    pub async fn start(shared: &Shared) -> anyhow::Result<Tail> {
        let mut stream = shared.stream.clone();
        let head = stream.info().await?.state.last_sequence;
        shared.tail.store(head, Ordering::Release);
        Ok(Tail { head })
    }

    /// Follows the stream until shutdown, continuing exactly where it stopped after any
    /// error.
    pub async fn run(mut self, shared: Arc<Shared>, routing: Routing, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let followed = tokio::select! {
                _ = shutdown.cancelled() => return,
                result = self.follow(&shared, &routing) => result,
            };
            if let Err(error) = followed {
                tracing::warn!(
                    error = format!("{error:#}"),
                    head = self.head,
                    "following the event stream for the endpoints failed; following again"
                );
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn follow(&mut self, shared: &Shared, routing: &Routing) -> anyhow::Result<()> {
        let consumer = shared
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subjects: vec![EVENTS_SUBJECTS.to_owned(), format!("{REPLAY_PREFIX}>")],
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: self.head + 1,
                },
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            let seq = message
                .info()
                .map_err(|e| anyhow::anyhow!("a message without its position: {e}"))?
                .stream_sequence;
            if seq <= self.head {
                continue;
            }
            if let Some(event) = Routed::parse(seq, &message) {
                let event = Arc::new(event);
                let endpoints = routing.read().map(|r| r.clone()).unwrap_or_default();
                for endpoint in endpoints.iter() {
                    endpoint.offer(&event);
                }
            }
            self.head = seq;
            // After the offers: a position saved from it never passes an event still
            // on its way to an inbox.
            shared.tail.store(seq, Ordering::Release);
        }
        anyhow::bail!("the stream's consumer ended")
    }
}
