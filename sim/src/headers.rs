//! Header names both sinks read, and reading them leniently: a header that is absent or
//! not valid text counts as absent, never as a server error.

use axum::http::HeaderMap;

/// The key a sink applies a request under once.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// W3C trace context, recorded with each event.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Longest `Idempotency-Key` accepted; longer is a malformed key.
pub(crate) const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// A header's value as text, if present and printable.
pub(crate) fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// The request's idempotency key, if it has a usable one.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Option<&str> {
    text(headers, IDEMPOTENCY_KEY_HEADER).filter(|key| key.len() <= MAX_IDEMPOTENCY_KEY_LEN)
}

/// Whether the request's `Content-Type` is `expected` (parameters such as `charset`
/// allowed).
pub(crate) fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    text(headers, "content-type").is_some_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(expected))
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn content_types_ignore_parameters_and_case() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(content_type_is(&headers, "application/json"));
        assert!(!content_type_is(
            &headers,
            "application/x-www-form-urlencoded"
        ));
        assert!(!content_type_is(&HeaderMap::new(), "application/json"));
    }

    #[test]
    fn blank_and_oversized_keys_are_absent() {
        let mut headers = HeaderMap::new();
        headers.insert(IDEMPOTENCY_KEY_HEADER, HeaderValue::from_static("  "));
        assert_eq!(idempotency_key(&headers), None);
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1);
        headers.insert(
            IDEMPOTENCY_KEY_HEADER,
            HeaderValue::from_str(&long).expect("ascii"),
        );
        assert_eq!(idempotency_key(&headers), None);
    }
}
