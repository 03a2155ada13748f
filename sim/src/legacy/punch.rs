//! The legacy punch: the form the time-and-attendance system takes, its field names, and
//! its strict reading.
//!
//! The legacy API is an old form post: `application/x-www-form-urlencoded` with
//! upper-case field names, a compact `YYYYMMDDhhmmss` UTC timestamp and `Y`/`N` flags.
//! It refuses what it does not know (a misspelt field is an error, not a silent drop),
//! so a worker that maps envelopes wrongly finds out at once. The worker and the tests
//! build punches with the same constants and [`Punch::to_form`].

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// The punch endpoint's path.
pub const PUNCH_PATH: &str = "/tna/v2/punches";
/// The header carrying the legacy API key.
pub const TNA_KEY_HEADER: &str = "X-TNA-Key";

/// The form's field names.
pub mod fields {
    /// The employee: latch's holder id.
    pub const EMP_ID: &str = "EMP_ID";
    /// `IN` or `OUT`.
    pub const PUNCH_TYPE: &str = "PUNCH_TYPE";
    /// When it happened, `YYYYMMDDhhmmss` in UTC.
    pub const PUNCH_TS: &str = "PUNCH_TS";
    /// The reader (or door) it happened at.
    pub const TERMINAL: &str = "TERMINAL";
    pub const SITE: &str = "SITE";
    /// `Y` when the reader decided offline and uploaded the punch late, else `N`.
    pub const LATE: &str = "LATE";
    /// The event id: the caller's reference for this punch.
    pub const REF: &str = "REF";

    /// Every field, all required.
    pub const ALL: [&str; 7] = [EMP_ID, PUNCH_TYPE, PUNCH_TS, TERMINAL, SITE, LATE, REF];
}

/// Longest text value a field takes (the legacy columns are 64 characters wide).
pub const MAX_FIELD_LEN: usize = 64;

const PUNCH_TS_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year][month][day][hour][minute][second]");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunchType {
    In,
    Out,
}

impl PunchType {
    pub fn as_str(self) -> &'static str {
        match self {
            PunchType::In => "IN",
            PunchType::Out => "OUT",
        }
    }
}

/// One punch, as the legacy system understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Punch {
    pub emp_id: String,
    pub punch_type: PunchType,
    /// Whole seconds, UTC.
    pub punch_ts: OffsetDateTime,
    pub terminal: String,
    pub site: String,
    pub late: bool,
    pub reference: String,
}

/// Why a form is not a punch. Each kind has the legacy error code it is answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PunchError {
    #[error("field {0} is required")]
    Missing(&'static str),
    #[error("field {field} is invalid: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("field {0} is not known")]
    Unknown(String),
    #[error("field {0} is given more than once")]
    Repeated(String),
}

impl PunchError {
    /// The code in the XML error body.
    pub fn code(&self) -> &'static str {
        match self {
            PunchError::Missing(_) => "MISSING_FIELD",
            PunchError::Invalid { .. } => "INVALID_FIELD",
            PunchError::Unknown(_) => "UNKNOWN_FIELD",
            PunchError::Repeated(_) => "DUPLICATE_FIELD",
        }
    }
}

/// `at` as a `PUNCH_TS` value (converted to UTC, sub-seconds dropped).
pub fn format_punch_ts(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(PUNCH_TS_FORMAT)
        // Formatting fails only for I/O errors, which a String cannot have; an empty
        // value would be refused by the legacy system as a missing field anyway.
        .unwrap_or_default()
}

/// Reads a `PUNCH_TS` value.
pub fn parse_punch_ts(value: &str) -> Option<OffsetDateTime> {
    if value.len() != 14 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    PrimitiveDateTime::parse(value, PUNCH_TS_FORMAT)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

impl Punch {
    /// Reads a form body strictly: every field once, nothing else.
    pub fn parse(body: &[u8]) -> Result<Punch, PunchError> {
        let mut values: [Option<String>; 7] = Default::default();
        for (name, value) in form_urlencoded::parse(body) {
            let index = fields::ALL
                .iter()
                .position(|field| *field == name)
                .ok_or_else(|| PunchError::Unknown(truncate(&name)))?;
            if values[index].replace(value.into_owned()).is_some() {
                return Err(PunchError::Repeated(truncate(&name)));
            }
        }
        let [
            emp_id,
            punch_type,
            punch_ts,
            terminal,
            site,
            late,
            reference,
        ] = values;
        Ok(Punch {
            emp_id: text(fields::EMP_ID, emp_id)?,
            punch_type: match required(fields::PUNCH_TYPE, punch_type)?.as_str() {
                "IN" => PunchType::In,
                "OUT" => PunchType::Out,
                _ => return Err(invalid(fields::PUNCH_TYPE, "must be IN or OUT")),
            },
            punch_ts: parse_punch_ts(&required(fields::PUNCH_TS, punch_ts)?)
                .ok_or_else(|| invalid(fields::PUNCH_TS, "must be YYYYMMDDhhmmss (UTC)"))?,
            terminal: text(fields::TERMINAL, terminal)?,
            site: text(fields::SITE, site)?,
            late: match required(fields::LATE, late)?.as_str() {
                "Y" => true,
                "N" => false,
                _ => return Err(invalid(fields::LATE, "must be Y or N")),
            },
            reference: text(fields::REF, reference)?,
        })
    }

    /// The form body for this punch.
    pub fn to_form(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair(fields::EMP_ID, &self.emp_id)
            .append_pair(fields::PUNCH_TYPE, self.punch_type.as_str())
            .append_pair(fields::PUNCH_TS, &format_punch_ts(self.punch_ts))
            .append_pair(fields::TERMINAL, &self.terminal)
            .append_pair(fields::SITE, &self.site)
            .append_pair(fields::LATE, if self.late { "Y" } else { "N" })
            .append_pair(fields::REF, &self.reference)
            .finish()
    }

    /// What makes two punches "the same request" for idempotency.
    pub(crate) fn fingerprint(&self) -> serde_json::Value {
        serde_json::json!({
            "emp_id": self.emp_id,
            "punch_type": self.punch_type.as_str(),
            "punch_ts": format_punch_ts(self.punch_ts),
            "terminal": self.terminal,
            "site": self.site,
            "late": self.late,
            "reference": self.reference,
        })
    }
}

fn required(field: &'static str, value: Option<String>) -> Result<String, PunchError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or(PunchError::Missing(field))
}

fn text(field: &'static str, value: Option<String>) -> Result<String, PunchError> {
    let value = required(field, value)?;
    if value.chars().count() > MAX_FIELD_LEN {
        return Err(invalid(field, "is longer than 64 characters"));
    }
    if value.trim() != value || value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            "has surrounding blanks or control characters",
        ));
    }
    Ok(value)
}

fn invalid(field: &'static str, reason: &'static str) -> PunchError {
    PunchError::Invalid { field, reason }
}

/// A caller's field name, cut so that an error message stays short.
fn truncate(name: &str) -> String {
    name.chars().take(MAX_FIELD_LEN).collect()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn punch() -> Punch {
        Punch {
            emp_id: "holder-1".into(),
            punch_type: PunchType::In,
            punch_ts: datetime!(2026-11-22 09:30:05 UTC),
            terminal: "reader-7".into(),
            site: "hq".into(),
            late: false,
            reference: "event-1".into(),
        }
    }

    #[test]
    fn a_punch_round_trips_through_its_form() {
        let form = punch().to_form();
        assert!(form.contains("PUNCH_TS=20261122093005"));
        assert_eq!(Punch::parse(form.as_bytes()), Ok(punch()));
    }

    #[test]
    fn timestamps_are_written_in_utc() {
        let at = datetime!(2026-11-22 10:30:05 +01:00);
        assert_eq!(format_punch_ts(at), "20261122093005");
        assert_eq!(
            parse_punch_ts("20261122093005"),
            Some(datetime!(2026-11-22 09:30:05 UTC))
        );
        for bad in [
            "2026112209300",
            "20261322093005",
            "2026-11-22T09",
            "+0261122093005",
        ] {
            assert_eq!(parse_punch_ts(bad), None, "{bad}");
        }
    }

    #[test]
    fn each_field_is_required() {
        for missing in fields::ALL {
            let form: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(
                    form_urlencoded::parse(punch().to_form().as_bytes())
                        .filter(|(name, _)| name != missing),
                )
                .finish();
            assert_eq!(
                Punch::parse(form.as_bytes()),
                Err(PunchError::Missing(missing))
            );
        }
    }

    #[test]
    fn unknown_repeated_and_malformed_fields_are_refused() {
        let form = punch().to_form();
        let unknown = format!("{form}&EMPID=x");
        assert_eq!(
            Punch::parse(unknown.as_bytes()).map_err(|e| e.code()),
            Err("UNKNOWN_FIELD")
        );
        let repeated = format!("{form}&SITE=x");
        assert_eq!(
            Punch::parse(repeated.as_bytes()).map_err(|e| e.code()),
            Err("DUPLICATE_FIELD")
        );
        let lowercase = form.replace("PUNCH_TYPE=IN", "PUNCH_TYPE=in");
        assert_eq!(
            Punch::parse(lowercase.as_bytes()).map_err(|e| e.code()),
            Err("INVALID_FIELD")
        );
        let late = form.replace("LATE=N", "LATE=yes");
        assert_eq!(
            Punch::parse(late.as_bytes()).map_err(|e| e.code()),
            Err("INVALID_FIELD")
        );
    }
}
