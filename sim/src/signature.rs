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

/// Checks a call's signature headers against its raw body; the error is the message the
/// 401 carries.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let webhook = Webhook::new(secret).map_err(|e| format!("the simulator's secret: {e}"))?;
    webhook.verify(body, headers).map_err(|e| e.to_string())
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
