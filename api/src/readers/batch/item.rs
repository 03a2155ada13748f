//! One buffered event of an offline upload: its wire form, its validation (each event on
//! its own, so a bad one is one `rejected` result) and its answer.

use latch_core::event::{Decision, EventKind};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::readers::alarm::{self, AlarmKind};
use crate::readers::seq::EventFingerprint;
use crate::readers::{presence, unlock, validate_card, validate_seq};
use crate::timestamp::Timestamp;

/// What a reader buffered while offline.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchEvent {
    /// The reader's own event number (monotonic per reader, 0 or more).
    #[serde(deserialize_with = "crate::whole::required")]
    pub seq: i64,
    #[serde(rename = "type")]
    pub kind: BatchEventType,
    /// For `check_in`, `check_out` and `unlock`.
    #[serde(default)]
    pub card_id: Option<String>,
    /// When it happened by the reader's clock (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    /// For `unlock`: what the reader decided on its own, `granted` or `denied`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "granted")]
    pub decision: Option<Decision>,
    /// For `alarm`.
    #[serde(default)]
    pub alarm: Option<AlarmKind>,
    /// For `alarm`: the condition ended.
    #[serde(default)]
    pub restored: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchEventType {
    CheckIn,
    CheckOut,
    Unlock,
    Alarm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Accepted,
    Duplicate,
    Rejected,
}

impl ItemStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Accepted => "accepted",
            ItemStatus::Duplicate => "duplicate",
            ItemStatus::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemResult {
    /// The event's seq (absent when it had none that could be read).
    pub seq: Option<i64>,
    pub status: ItemStatus,
    /// Why it was rejected: `malformed_event`, `invalid_event`, `invalid_seq`,
    /// `invalid_card_id`, `seq_reused`, `unknown_card`, `holder_inactive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The registry entry of the event (for a duplicate: the one recorded first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<Uuid>,
}

impl ItemResult {
    pub(super) fn accepted(seq: i64, action_id: Option<Uuid>) -> Self {
        ItemResult {
            seq: Some(seq),
            status: ItemStatus::Accepted,
            code: None,
            message: None,
            action_id,
        }
    }

    pub(super) fn duplicate(seq: i64, action_id: Option<Uuid>) -> Self {
        ItemResult {
            status: ItemStatus::Duplicate,
            ..Self::accepted(seq, action_id)
        }
    }

    pub(super) fn rejected(seq: Option<i64>, error: &ApiError) -> Self {
        ItemResult {
            seq,
            status: ItemStatus::Rejected,
            code: Some(error.code().to_owned()),
            message: Some(error.message().to_owned()),
            action_id: None,
        }
    }
}

/// A buffered event that passed validation.
pub(super) enum Checked<'a> {
    Presence {
        kind: EventKind,
        card_id: &'a str,
    },
    Unlock {
        card_id: &'a str,
        decision: Decision,
    },
    Alarm {
        alarm: AlarmKind,
        restored: bool,
    },
}

pub(super) fn invalid(message: &str) -> ApiError {
    ApiError::unprocessable("invalid_event", message)
}

/// The event, checked, and its time in UTC.
pub(super) fn check(event: &BatchEvent) -> Result<(Checked<'_>, OffsetDateTime), ApiError> {
    validate_seq(Some(event.seq))?;
    let at = event.occurred_at.checked("occurred_at")?;
    let card = || -> Result<&str, ApiError> {
        let card_id = event
            .card_id
            .as_deref()
            .ok_or_else(|| invalid("this event type needs a card_id"))?;
        validate_card(card_id)?;
        Ok(card_id)
    };
    let kind = match event.kind {
        BatchEventType::CheckIn => EventKind::CheckIn,
        BatchEventType::CheckOut => EventKind::CheckOut,
        BatchEventType::Unlock => {
            if event.alarm.is_some() || event.restored.is_some() {
                return Err(invalid("an unlock has no alarm or restored"));
            }
            let decision = event
                .decision
                .ok_or_else(|| invalid("an offline unlock needs the reader's decision"))?;
            return Ok((
                Checked::Unlock {
                    card_id: card()?,
                    decision,
                },
                at,
            ));
        }
        BatchEventType::Alarm => {
            if event.card_id.is_some() || event.decision.is_some() {
                return Err(invalid("an alarm has no card_id or decision"));
            }
            let alarm = event
                .alarm
                .ok_or_else(|| invalid("an alarm event needs its alarm"))?;
            return Ok((
                Checked::Alarm {
                    alarm,
                    restored: event.restored.unwrap_or(false),
                },
                at,
            ));
        }
    };
    if event.decision.is_some() || event.alarm.is_some() || event.restored.is_some() {
        return Err(invalid(
            "a check-in or check-out has no decision, alarm or restored",
        ));
    }
    Ok((
        Checked::Presence {
            kind,
            card_id: card()?,
        },
        at,
    ))
}

impl Checked<'_> {
    pub(super) fn fingerprint(&self, occurred_at: OffsetDateTime) -> EventFingerprint<'_> {
        match *self {
            Checked::Presence { kind, card_id } => {
                presence::fingerprint(kind, card_id, Some(occurred_at))
            }
            Checked::Unlock { card_id, decision } => {
                unlock::fingerprint(card_id, Some(occurred_at), Some(decision))
            }
            Checked::Alarm { alarm, restored } => {
                alarm::fingerprint(alarm, restored, Some(occurred_at))
            }
        }
    }
}
