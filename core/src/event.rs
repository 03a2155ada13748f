//! Event kinds and the envelope.
//!
//! Every row of the `actions` registry becomes one event. The envelope is built inside
//! PostgreSQL (`latch_event_envelope` in the migrations) by the same trigger that writes
//! the outbox row, so an action and its event cannot disagree or be committed apart; this
//! module is the Rust reading of that JSON, used by the relay, the workers and the tests.
//! A change to one side is a change to the other: `schema_version` says which shape a
//! message has.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The envelope's current shape: 2 added `sequence`. Events recorded before it (version 1)
/// may still be in the stream and read the same, without a sequence.
pub const SCHEMA_VERSION: u32 = 2;

/// NATS subject prefix of every event: `latch.events.<kind>`.
pub const SUBJECT_PREFIX: &str = "latch.events.";

/// The PostgreSQL channel a committed outbox row is announced on.
pub const OUTBOX_CHANNEL: &str = "latch_outbox";

macro_rules! kinds {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// What happened. The string form is the action's `kind` and the subject suffix.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum EventKind { $($variant),+ }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $name),+ }
            }
        }

        impl std::str::FromStr for EventKind {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(EventKind::$variant),)+
                    other => Err(format!("unknown event kind {other:?}")),
                }
            }
        }
    };
}

kinds! {
    CheckIn => "check_in",
    CheckOut => "check_out",
    UnlockGranted => "unlock_granted",
    UnlockDenied => "unlock_denied",
    GrantCreated => "grant_created",
    GrantRevoked => "grant_revoked",
    DoorCreated => "door_created",
    HolderCreated => "holder_created",
    HolderUpdated => "holder_updated",
    ReaderEnrolled => "reader_enrolled",
    ReaderDisabled => "reader_disabled",
    ReaderKeyRotated => "reader_key_rotated",
    DlqReplayed => "dlq_replayed",
    DlqPurged => "dlq_purged",
    MarkedSafe => "marked_safe",
    AdminCreated => "admin_created",
    AdminRevoked => "admin_revoked",
    OfflineDecisionDisputed => "offline_decision_disputed",
    DoorForcedOpen => "door_forced_open",
    DoorForcedOpenRestored => "door_forced_open_restored",
    DoorHeldOpen => "door_held_open",
    DoorHeldOpenRestored => "door_held_open_restored",
    ReaderTamper => "reader_tamper",
    ReaderTamperRestored => "reader_tamper_restored",
    ReaderOffline => "reader_offline",
    ReaderOnline => "reader_online",
    WebhookEndpointCreated => "webhook_endpoint_created",
    WebhookEndpointUpdated => "webhook_endpoint_updated",
    WebhookEndpointDeleted => "webhook_endpoint_deleted",
    WebhookEndpointEnabled => "webhook_endpoint_enabled",
    WebhookEndpointDisabled => "webhook_endpoint_disabled",
    WebhookSecretRotated => "webhook_secret_rotated",
    WebhookRecoveryStarted => "webhook_recovery_started",
}

/// True for a site name as the `doors` table's CHECK constraint admits it: 1 to 63
/// lower-case letters, digits, `-` and `_`, starting with a letter or digit.
pub fn valid_site(site: &str) -> bool {
    let bytes = site.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

impl EventKind {
    /// The kind's subject, `latch.events.<kind>` (the relay adds the ordering key).
    pub fn subject(self) -> String {
        format!("{SUBJECT_PREFIX}{}", self.as_str())
    }

    /// What a consumer of this kind filters on: its events from before and after the
    /// stream partitioned them (see [`crate::nats`]).
    pub fn filters(self) -> [String; 2] {
        crate::nats::kind_filters(&self.subject())
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The event as published: one JSON object per message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The event id, equal to the action's id; sinks use it as the idempotency key.
    pub id: Uuid,
    pub kind: EventKind,
    pub schema_version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub site: Option<String>,
    pub door_id: Option<Uuid>,
    pub holder_id: Option<Uuid>,
    pub reader_id: Option<Uuid>,
    /// The reader's own event number, when it sent one.
    pub reader_seq: Option<i64>,
    /// The event's number among its ordering key's events — the holder's, or the door's
    /// when there is no holder (none when there is neither): 1, 2, 3, … in commit order,
    /// without gaps, so a consumer sees a missing or reordered event from the payload alone.
    #[serde(default)]
    pub sequence: Option<i64>,
    /// Captured while the reader was offline and uploaded later (for an unlock: the reader
    /// decided alone, and `reason` is the server's verdict at upload).
    pub decided_offline: bool,
    /// An unlock's decision: the server's for a live unlock, the reader's own when
    /// `decided_offline` (so also in `offline_decision_disputed`, whose `reason` says why the
    /// server would have decided otherwise).
    pub decision: Option<Decision>,
    pub reason: Option<String>,
    pub grant_id: Option<Uuid>,
    /// The admin who did it, for administrative events.
    pub actor_id: Option<Uuid>,
    /// The webhook endpoint an event about one (`webhook_endpoint_*`,
    /// `webhook_secret_rotated`, `webhook_recovery_started`) concerns.
    #[serde(default)]
    pub endpoint_id: Option<Uuid>,
}

/// An unlock decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Granted,
    Denied,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(*kind));
            assert_eq!(
                serde_json::to_value(kind).expect("serialises"),
                serde_json::Value::String(kind.as_str().to_owned())
            );
        }
        assert_eq!(EventKind::CheckIn.subject(), "latch.events.check_in");
    }
}
