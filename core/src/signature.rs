//! Webhook signatures: how the worker signs, and how a receiver written in Rust may check.
//! (The simulator checks on its own, from the published format, so that a mistake here
//! cannot pass by being made twice.)
//!
//! The scheme is Stripe's: the header `Latch-Signature: t=<unix seconds>,v1=<hex>` where
//! `<hex>` is HMAC-SHA256 keyed with the subscriber's secret over `"<t>.<raw body>"`.
//! Signing the timestamp with the body lets a receiver refuse a replayed request whose
//! timestamp is outside its tolerance, without keeping any state. A header may carry
//! several `v1=` entries (one per secret during a rotation); one match is enough.
//!
//! This module owns the format and the check; it knows nothing about HTTP.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Latch-Signature";

type HmacSha256 = Hmac<Sha256>;

/// The `Latch-Signature` header value for `body` sent at `timestamp` (unix seconds).
///
/// ```
/// let header = latch_core::signature::sign("whsec", 1_700_000_000, br#"{"id":"e1"}"#);
/// assert!(header.starts_with("t=1700000000,v1="));
/// ```
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = mac_for(secret, timestamp, body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Why a signature was refused. Every kind is permanent for that request: a retry with
/// the same header fails the same way (a fresh timestamp and signature may pass).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {SIGNATURE_HEADER} header is missing")]
    Missing,
    #[error("the {SIGNATURE_HEADER} header is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "the signature timestamp is {skew_secs} s away from now (tolerance {tolerance_secs} s)"
    )]
    OutsideTolerance { skew_secs: u64, tolerance_secs: u64 },
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// Checks a `Latch-Signature` header against `body`, with `now` in unix seconds.
pub fn verify(
    header: Option<&str>,
    secret: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("expected name=value pairs"))?;
        match name {
            "t" => {
                let t = value
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed("t is not unix seconds"))?;
                timestamp = Some(t);
            }
            "v1" => candidates.push(value),
            // Other schemes (v0, future versions) are ignored, as Stripe's receivers do.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t= timestamp"))?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed("no v1= signature"));
    }
    let skew_secs = now.abs_diff(timestamp);
    if skew_secs > tolerance.as_secs() {
        return Err(SignatureError::OutsideTolerance {
            skew_secs,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    let matches = candidates.iter().any(|candidate| {
        hex::decode(candidate).is_ok_and(|given| {
            mac_for(secret, timestamp, body)
                .verify_slice(&given)
                .is_ok()
        })
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn mac_for(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: Duration = Duration::from_secs(300);

    #[test]
    fn a_signed_body_verifies() {
        let header = sign("secret", 1000, b"{}");
        assert_eq!(
            verify(Some(&header), "secret", b"{}", 1000, TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn the_known_answer_matches_hmac_sha256() {
        // HMAC-SHA256(key = "key", message = "1.x"), computed independently with Python's hmac.
        assert_eq!(
            sign("key", 1, b"x"),
            "t=1,v1=fc4913c41a7bf793267e2a384f3261c9436ec2cd097bd745e7b0d99113f510ec"
        );
    }

    #[test]
    fn tampering_and_wrong_secrets_are_refused() {
        let header = sign("secret", 1000, b"{}");
        assert_eq!(
            verify(Some(&header), "secret", b"{ }", 1000, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), "other", b"{}", 1000, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let header = sign("secret", 1000, b"{}");
        assert!(matches!(
            verify(Some(&header), "secret", b"{}", 1301, TOLERANCE),
            Err(SignatureError::OutsideTolerance { skew_secs: 301, .. })
        ));
        assert!(matches!(
            verify(Some(&header), "secret", b"{}", 699, TOLERANCE),
            Err(SignatureError::OutsideTolerance { .. })
        ));
    }

    #[test]
    fn any_matching_v1_entry_is_enough() {
        let good = sign("new", 1000, b"{}");
        let good_sig = good.split("v1=").nth(1).expect("has v1");
        let header = format!("t=1000,v1=deadbeef,v1={good_sig}");
        assert_eq!(verify(Some(&header), "new", b"{}", 1000, TOLERANCE), Ok(()));
    }

    #[test]
    fn malformed_headers_say_why() {
        assert_eq!(
            verify(None, "s", b"", 0, TOLERANCE),
            Err(SignatureError::Missing)
        );
        assert!(matches!(
            verify(Some("garbage"), "s", b"", 0, TOLERANCE),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify(Some("v1=00"), "s", b"", 0, TOLERANCE),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify(Some("t=0"), "s", b"", 0, TOLERANCE),
            Err(SignatureError::Malformed(_))
        ));
    }
}
