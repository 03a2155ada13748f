//! Webhook signatures, checked by the Standard Webhooks reference implementation (the
//! `standardwebhooks` crate, as a receiver would use it), not by code of latch's: a mistake
//! in latch's signing cannot pass here by being made twice.
//!
//! The format (README, "The workers"): `webhook-id`, `webhook-timestamp` (unix seconds) and
//! `webhook-signature` (`v1,<base64 HMAC-SHA256>` over `"<id>.<timestamp>.<body>"`, one
//! space-separated entry per secret, one match enough), within the reference's tolerance of
//! five minutes. [`sign`] is the reference's own signing, for the simulator's tests and
//! tools.

use axum::http::HeaderMap;
use standardwebhooks::Webhook;

pub use standardwebhooks::{
    HEADER_WEBHOOK_ID as ID_HEADER, HEADER_WEBHOOK_SIGNATURE as SIGNATURE_HEADER,
    HEADER_WEBHOOK_TIMESTAMP as TIMESTAMP_HEADER,
};

/// A secret as the specification writes it — `whsec_` and a 24 to 64-byte key in standard
/// base64 — or why not (checked at start: a bad secret would otherwise fail every call as
/// latch's fault). The error never repeats the secret.
pub fn checked_secret(secret: &str) -> Result<String, String> {
    use base64::Engine;
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or("a webhook secret starts with whsec_")?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "the part after whsec_ is not standard base64")?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "the key is {} bytes; it must be 24 to 64",
            key.len()
        ));
    }
    Ok(secret.to_owned())
}

/// Checks a call's signature headers against its raw body; the error is the message the
/// 401 carries.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let webhook = Webhook::new(secret).map_err(|e| format!("the simulator's secret: {e}"))?;
    webhook.verify(body, headers).map_err(|e| e.to_string())
}

/// [`verify`] against several secrets, as a receiver switching secrets during a rotation
/// does: the call verifies if it verifies under any of them. The error is the last
/// secret's (the reasons differ only in which key did not match).
pub fn verify_any<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let mut refused = "no secret to verify with".to_owned();
    for secret in secrets {
        match verify(secret, headers, body) {
            Ok(()) => return Ok(()),
            Err(error) => refused = error,
        }
    }
    Err(refused)
}

/// A `webhook-signature` value for `body` sent as message `id` at `timestamp`, made by the
/// reference implementation.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    Webhook::new(secret)
        .and_then(|webhook| webhook.sign(id, timestamp, body))
        .unwrap_or_else(|e| panic!("cannot sign with this secret: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_checked_before_it_is_used() {
        assert!(checked_secret(crate::DEFAULT_WEBHOOK_SECRET).is_ok());
        for bad in [
            "whsec_123",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "whsec_",
        ] {
            let error = checked_secret(bad).expect_err(bad);
            assert!(!error.contains("123") && !error.contains("MDEy"), "{error}");
        }
    }

    #[test]
    fn any_one_of_several_secrets_verifies() {
        let old = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let new = crate::DEFAULT_WEBHOOK_SECRET;
        let other = "whsec_eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=";
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let body = br#"{"id":"e1"}"#;
        let mut headers = HeaderMap::new();
        headers.insert(ID_HEADER, "e1".parse().expect("a header value"));
        headers.insert(TIMESTAMP_HEADER, now.into());
        let signature = sign(old, "e1", now, body);
        headers.insert(SIGNATURE_HEADER, signature.parse().expect("a header value"));
        assert!(verify_any([new, old], &headers, body).is_ok());
        assert!(verify_any([old], &headers, body).is_ok());
        assert!(verify_any([new, other], &headers, body).is_err());
        assert!(verify_any([], &headers, body).is_err());
    }

    #[test]
    fn the_reference_signs_the_id_the_time_and_the_body() {
        // The same known answer latch's own signer is tested against (computed with
        // Python's hmac): key "0123456789abcdef0123456789abcdef".
        let secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        assert_eq!(
            sign(secret, "msg_1", 1_700_000_000, br#"{"a":1}"#),
            "v1,rkwp5YuvdrMkcu0ZhuMsXoTg44mHAr1Q0+FFgFpXsjY="
        );
    }
}
