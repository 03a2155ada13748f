//! The `Latch-Signature` of a webhook call, checked from the published format alone.
//!
//! The format (README, "The workers"): `Latch-Signature: t=<unix seconds>,v1=<hex>`, where
//! `<hex>` is HMAC-SHA256, keyed with the subscriber's secret, over `"<t>.<raw body>"`;
//! several `v1=` entries may be present (one per secret during a rotation) and one match is
//! enough; other schemes are ignored. This module shares no code with latch, which signs:
//! it computes and compares the MAC with `ring` (latch uses the `hmac` crate), so a mistake
//! in latch's signing cannot pass here by being made twice. [`sign`] is the same
//! construction, for the simulator's own tests and tools.

use std::fmt;
use std::time::Duration;

use ring::hmac;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Latch-Signature";

/// Why a signature was refused; its `Display` is the message the 401 carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed(&'static str),
    OutsideTolerance { skew_secs: u64, tolerance_secs: u64 },
    Mismatch,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Missing => write!(f, "no {SIGNATURE_HEADER} header"),
            SignatureError::Malformed(what) => write!(f, "malformed {SIGNATURE_HEADER}: {what}"),
            SignatureError::OutsideTolerance {
                skew_secs,
                tolerance_secs,
            } => write!(
                f,
                "signed {skew_secs} s away from this receiver's clock (tolerance {tolerance_secs} s)"
            ),
            SignatureError::Mismatch => write!(f, "no v1 signature matches this key and body"),
        }
    }
}

impl std::error::Error for SignatureError {}

fn key(secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
}

fn signed_payload(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut payload = format!("{timestamp}.").into_bytes();
    payload.extend_from_slice(body);
    payload
}

/// A `Latch-Signature` value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = hmac::sign(&key(secret), &signed_payload(timestamp, body));
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// The parts of a `Latch-Signature` header this receiver reads.
struct Header<'a> {
    timestamp: i64,
    v1: Vec<&'a str>,
}

fn parse(header: &str) -> Result<Header<'_>, SignatureError> {
    let pairs = header
        .split(',')
        .map(|part| part.trim().split_once('='))
        .collect::<Option<Vec<_>>>()
        .ok_or(SignatureError::Malformed("expected name=value pairs"))?;
    let timestamp = pairs
        .iter()
        .rev()
        .find(|(name, _)| *name == "t")
        .ok_or(SignatureError::Malformed("no t= timestamp"))?
        .1
        .parse()
        .map_err(|_| SignatureError::Malformed("t is not unix seconds"))?;
    let v1: Vec<&str> = pairs
        .iter()
        .filter(|(name, _)| *name == "v1")
        .map(|(_, value)| *value)
        .collect();
    Ok(Header { timestamp, v1 })
}

/// Checks a `Latch-Signature` header against `body`, `now` in unix seconds.
pub fn verify(
    header: Option<&str>,
    secret: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let header = parse(header.ok_or(SignatureError::Missing)?)?;
    let skew_secs = now.abs_diff(header.timestamp);
    if skew_secs > tolerance.as_secs() {
        return Err(SignatureError::OutsideTolerance {
            skew_secs,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    if header.v1.is_empty() {
        return Err(SignatureError::Malformed("no v1= signature"));
    }
    let key = key(secret);
    let payload = signed_payload(header.timestamp, body);
    header
        .v1
        .iter()
        .filter_map(|candidate| from_hex(candidate))
        .any(|tag| hmac::verify(&key, &payload, &tag).is_ok())
        .then_some(())
        .ok_or(SignatureError::Mismatch)
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(300);

    #[test]
    fn a_known_signature_verifies() {
        // HMAC-SHA256("whsec", "1700000000.{\"id\":\"e1\"}"), computed independently
        // (`printf '1700000000.{"id":"e1"}' | openssl dgst -sha256 -hmac whsec`).
        let header = sign("whsec", 1_700_000_000, br#"{"id":"e1"}"#);
        assert_eq!(
            header,
            "t=1700000000,v1=7e6859a1a93752955693040d16abace18dbb53d905b914ceaf32e06b3b43bdf0"
        );
    }

    #[test]
    fn wrong_secret_body_time_or_format_is_refused() {
        let body = br#"{"id":"e1"}"#;
        let now = 1_700_000_000;
        let good = sign("s", now, body);
        assert_eq!(verify(Some(&good), "s", body, now, TOLERANCE), Ok(()));
        assert_eq!(
            verify(Some(&good), "other", body, now, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&good), "s", b"{}", now, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify(Some(&good), "s", body, now + 301, TOLERANCE),
            Err(SignatureError::OutsideTolerance { .. })
        ));
        assert_eq!(
            verify(None, "s", body, now, TOLERANCE),
            Err(SignatureError::Missing)
        );
        assert!(matches!(
            verify(Some("v1=abc"), "s", body, now, TOLERANCE),
            Err(SignatureError::Malformed(_))
        ));
        // Rotation: one matching entry among several is enough.
        let (_, mac) = good.split_once(",v1=").unwrap_or_default();
        let rotated = format!("t={now},v1=00,v1={mac}");
        assert_eq!(verify(Some(&rotated), "s", body, now, TOLERANCE), Ok(()));
    }
}
