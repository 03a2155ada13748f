//! Points in time on the command line: RFC 3339 (`2026-11-22T08:00:00Z`) or a duration
//! ago (`90m`, `24h`, `7d`).

use latch_core::config::parse_duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn parse_when(text: &str, now: OffsetDateTime) -> anyhow::Result<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at);
    }
    let ago = parse_duration(text).map_err(|_| {
        anyhow::anyhow!("{text:?} is neither an RFC 3339 time nor a duration such as 24h")
    })?;
    Ok(now - ago)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_ago() {
        let now = OffsetDateTime::parse("2026-11-22T12:00:00Z", &Rfc3339).expect("time");
        assert_eq!(
            parse_when("2h", now).expect("ago"),
            OffsetDateTime::parse("2026-11-22T10:00:00Z", &Rfc3339).expect("time")
        );
        assert_eq!(
            parse_when("2026-01-01T00:00:00Z", now).expect("absolute"),
            OffsetDateTime::parse("2026-01-01T00:00:00Z", &Rfc3339).expect("time")
        );
        assert!(parse_when("yesterday", now).is_err());
    }
}
