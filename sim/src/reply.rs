//! A sink's answer as a value: status, body and the one header a sink adds
//! (`Retry-After`). Keeping it a plain value lets the ledger store a first answer and
//! give the very same one to every duplicate, and lets the counters classify it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
    pub retry_after_secs: Option<u64>,
}

/// How an answer counts in the statistics (effects and duplicates are counted by the
/// ledger when it applies a key, so they are not told apart here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accepted,
    Rejected,
    Failed,
}

impl Reply {
    pub fn xml(status: StatusCode, body: String) -> Self {
        Reply {
            status,
            content_type: "application/xml; charset=utf-8",
            body,
            retry_after_secs: None,
        }
    }

    pub fn json(status: StatusCode, body: &serde_json::Value) -> Self {
        Reply {
            status,
            content_type: "application/json",
            body: body.to_string(),
            retry_after_secs: None,
        }
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn verdict(&self) -> Verdict {
        if self.status.is_success() {
            Verdict::Accepted
        } else if self.status == StatusCode::TOO_MANY_REQUESTS || self.status.is_server_error() {
            Verdict::Failed
        } else {
            Verdict::Rejected
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_status() {
        let reply = |status| Reply::json(status, &serde_json::Value::Null);
        assert_eq!(reply(StatusCode::OK).verdict(), Verdict::Accepted);
        assert_eq!(reply(StatusCode::UNAUTHORIZED).verdict(), Verdict::Rejected);
        assert_eq!(
            reply(StatusCode::UNPROCESSABLE_ENTITY).verdict(),
            Verdict::Rejected
        );
        assert_eq!(
            reply(StatusCode::TOO_MANY_REQUESTS).verdict(),
            Verdict::Failed
        );
        assert_eq!(
            reply(StatusCode::SERVICE_UNAVAILABLE).verdict(),
            Verdict::Failed
        );
    }
}
