//! Sharing the endpoints among partitioned workers.
//!
//! With `LATCH_WORKER_PARTITIONED`, the endpoints are split into as many *shards* as the
//! stream has partitions, by endpoint id. Which worker serves which shard is decided as for
//! the sinks' partitions: the workers with a database announce themselves in the workers'
//! bucket (as the pseudo-sink `endpoints`), and the `i mod W`-th of the sorted list takes
//! shard `i`. What makes a shard one worker's alone is a PostgreSQL advisory lock per shard,
//! all held on one connection of the worker's (an endpoint's cursor is in PostgreSQL, so
//! its owner must be unique there): a worker serves a shard only while it holds the lock,
//! and a worker that dies loses its locks with its connection.
//!
//! A shard given to another worker is let go in order: its endpoints are stopped (each
//! saves its cursor once its lanes have let go), and only when none of them is still
//! running is the lock released; the new owner, waiting for the lock, then starts them from
//! their cursors. (A cursor saved a moment before the last deliveries means those few are
//! delivered again, with the same `webhook-id`.)

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use uuid::Uuid;

use super::store::EndpointRow;
use crate::partitions::{Membership, assigned};

/// The key of shard `shard`'s advisory lock (next to the single deliverer's).
fn lock_key(shard: u32) -> i64 {
    super::DELIVERER_LOCK + 1 + i64::from(shard)
}

/// The shard an endpoint belongs to.
pub fn shard_of(id: Uuid, shards: u32) -> u32 {
    (id.as_u128() % u128::from(shards.max(1))) as u32
}

/// How endpoints are shared (`None` in `EndpointsConfig`: one deliverer for all).
#[derive(Debug, Clone, Copy)]
pub struct Sharding {
    pub shards: u32,
    /// The workers' presence lease (`LATCH_WORKER_LEASE`).
    pub lease: Duration,
    /// Replicas of the workers' bucket.
    pub replicas: usize,
}

/// This worker's shards: the lock connection, what it holds, what it is letting go.
pub struct Shards {
    pub count: u32,
    membership: Membership,
    client: tokio_postgres::Client,
    held: BTreeSet<u32>,
    releasing: BTreeSet<u32>,
}

impl Shards {
    pub fn new(count: u32, membership: Membership, client: tokio_postgres::Client) -> Shards {
        Shards {
            count,
            membership,
            client,
            held: BTreeSet::new(),
            releasing: BTreeSet::new(),
        }
    }

    /// Follows the workers present: lets go of the shards given to others (once `active`,
    /// the endpoints still running or stopping here, has none of theirs) and takes the
    /// locks of those given to this worker. Errors leave things as they were.
    pub async fn update(&mut self, active: impl Iterator<Item = Uuid>) {
        let members = match self.membership.renew().await {
            Ok(()) => self.membership.members().await,
            Err(error) => Err(error),
        };
        let mine: BTreeSet<u32> = match members {
            Ok(members) => assigned(&members[0], &self.membership.id, self.count)
                .into_iter()
                .collect(),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot read the workers present"
                );
                return;
            }
        };
        for shard in &self.held {
            if !mine.contains(shard) && self.releasing.insert(*shard) {
                tracing::info!(shard, "letting another worker have this shard of endpoints");
            }
        }
        let busy: BTreeSet<u32> = active.map(|id| shard_of(id, self.count)).collect();
        let done: Vec<u32> = self
            .releasing
            .iter()
            .filter(|shard| !busy.contains(shard) && !mine.contains(shard))
            .copied()
            .collect();
        for shard in done {
            match self
                .client
                .query_one("SELECT pg_advisory_unlock($1)", &[&lock_key(shard)])
                .await
            {
                Ok(_) => {
                    self.held.remove(&shard);
                    self.releasing.remove(&shard);
                }
                Err(error) => tracing::warn!(shard, %error, "cannot release a shard's lock"),
            }
        }
        // Given back before it was let go: keep it.
        self.releasing.retain(|shard| !mine.contains(shard));
        for shard in mine.difference(&self.held.clone()) {
            match self
                .client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&lock_key(*shard)])
                .await
            {
                Ok(row) if row.get::<_, bool>(0) => {
                    tracing::info!(shard, "delivering to this shard of endpoints");
                    self.held.insert(*shard);
                }
                // Its previous owner is still letting it go.
                Ok(_) => {}
                Err(error) => tracing::warn!(shard, %error, "cannot take a shard's lock"),
            }
        }
    }

    /// The endpoints this worker serves now: those of the shards it holds and keeps.
    pub fn serving(&self, rows: &HashMap<Uuid, EndpointRow>) -> HashMap<Uuid, EndpointRow> {
        rows.iter()
            .filter(|(id, _)| {
                let shard = shard_of(**id, self.count);
                self.held.contains(&shard) && !self.releasing.contains(&shard)
            })
            .map(|(id, row)| (*id, row.clone()))
            .collect()
    }

    /// Leaves the workers' bucket (the locks go with the connection).
    pub async fn leave(&self) {
        self.membership.leave().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_spread_over_the_shards() {
        let mut counts = [0u32; 8];
        for _ in 0..8000 {
            counts[shard_of(Uuid::now_v7(), 8) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        let id = Uuid::now_v7();
        assert_eq!(shard_of(id, 8), shard_of(id, 8));
    }
}
