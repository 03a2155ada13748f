//! Points in time at the API's boundary: what clients may send, and how stored times are
//! shown.
//!
//! A client writes times in RFC 3339 (`2026-12-04T09:30:00+01:00`). Not every such string
//! is a time latch can keep: a time is stored and shown in UTC, where RFC 3339 allows only
//! the years 0000 to 9999 — `9999-12-31T23:59:59-01:00` is year 10000 in UTC, and
//! `0000-01-01T00:00:00+01:00` is year -1. So a [`Timestamp`] is parsed leniently (any RFC
//! 3339 string) and can only be used through [`Timestamp::checked`], which answers
//! `422 invalid_timestamp` for a time before 0001-01-01T00:00:00Z or after
//! 9999-12-31T23:59:59.999999Z. Checking happens before anything is written, so such a
//! request changes nothing. PostgreSQL keeps microseconds: finer digits are dropped here
//! (not rounded, so that a time never moves into the next second, day or year), and what
//! is stored is exactly what every endpoint shows again.
//!
//! The other direction, [`rfc3339`], shows stored times and never fails: a time that RFC
//! 3339 cannot express (only rows written before these checks existed can hold one) is
//! shown in ISO 8601's expanded-year form instead of failing the whole response.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::error::ApiError;

/// A client's RFC 3339 time, not yet checked against what latch can store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(OffsetDateTime);

/// The earliest and latest years latch keeps (UTC).
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

impl Timestamp {
    /// The time in UTC, to the microsecond, if latch can store it and show it again;
    /// otherwise a 422 naming `field`.
    pub fn checked(self, field: &str) -> Result<OffsetDateTime, ApiError> {
        let invalid =
            |why: &str| ApiError::unprocessable("invalid_timestamp", format!("{field} {why}"));
        let utc = self
            .0
            .checked_to_offset(UtcOffset::UTC)
            .filter(|utc| YEARS.contains(&utc.year()))
            .ok_or_else(|| {
                invalid("must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z")
            })?;
        let micros = utc.nanosecond() - utc.nanosecond() % 1_000;
        utc.replace_nanosecond(micros)
            .map_err(|_| invalid("is not a time of day"))
    }

    /// [`Timestamp::checked`] of an optional field.
    pub fn checked_opt(
        at: Option<Timestamp>,
        field: &str,
    ) -> Result<Option<OffsetDateTime>, ApiError> {
        at.map(|at| at.checked(field)).transpose()
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339)
            .map(Timestamp)
            .map_err(|e| serde::de::Error::custom(format!("not an RFC 3339 time ({e})")))
    }
}

impl Serialize for Timestamp {
    /// As the client wrote it (its own offset): what request fingerprints hash.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&show(self.0))
    }
}

/// RFC 3339 when it can express the time, else ISO 8601 with an expanded (signed, six
/// digit) year; never an error.
fn show(at: OffsetDateTime) -> String {
    if let Ok(text) = at.format(&Rfc3339) {
        return text;
    }
    let utc = at.checked_to_offset(UtcOffset::UTC).unwrap_or(at);
    format!(
        "{:+07}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        utc.microsecond()
    )
}

/// `#[serde(with = "crate::timestamp::rfc3339")]` for stored times in responses.
pub mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&show(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        time::serde::rfc3339::deserialize(deserializer)
    }

    /// The same for `Option<OffsetDateTime>`.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            at: &Option<OffsetDateTime>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => serializer.serialize_some(&show(*at)),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            time::serde::rfc3339::option::deserialize(deserializer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Timestamp {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).expect("RFC 3339")
    }

    #[test]
    fn times_latch_cannot_keep_are_refused_not_panicked_on() {
        for text in [
            "9999-12-31T23:59:59-01:00",
            "0000-01-01T00:00:00+01:00",
            "0000-12-31T23:59:59Z",
        ] {
            let error = parse(text).checked("occurred_at").expect_err(text);
            assert_eq!(error.code(), "invalid_timestamp", "{text}");
            assert!(error.message().starts_with("occurred_at "), "{text}");
        }
    }

    #[test]
    fn edges_that_fit_are_kept_in_utc() {
        for (text, utc) in [
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
            ("0001-01-01T00:59:00+00:59", "0001-01-01T00:00:00Z"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
            (
                "9999-12-31T23:59:59.999999999Z",
                "9999-12-31T23:59:59.999999Z",
            ),
            ("2026-01-01T00:00:00.000000001Z", "2026-01-01T00:00:00Z"),
            ("9999-12-31T22:59:59+23:00", "9999-12-30T23:59:59Z"),
            ("2026-12-04T10:30:00.120+01:00", "2026-12-04T09:30:00.12Z"),
        ] {
            let at = parse(text).checked("at").expect(text);
            assert_eq!(show(at), utc, "{text}");
        }
    }

    #[test]
    fn not_rfc_3339_is_a_parse_error() {
        for text in ["2026-12-04", "yesterday", "10000-01-01T00:00:00Z"] {
            assert!(
                serde_json::from_value::<Timestamp>(serde_json::Value::String(text.into()))
                    .is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn stored_times_rfc_3339_cannot_show_are_shown_in_expanded_form() {
        let minus_one = OffsetDateTime::UNIX_EPOCH
            .replace_year(-1)
            .expect("year -1");
        assert_eq!(show(minus_one), "-000001-01-01T00:00:00.000000Z");
        let now = OffsetDateTime::now_utc();
        assert_eq!(Some(show(now)), now.format(&Rfc3339).ok());
    }
}
