//! The legacy system's XML answers: `<PunchResponse>` with `OK` and a punch id, or
//! `ERROR` with a code and a message.

use axum::http::StatusCode;

use crate::reply::Reply;

/// `200 <PunchResponse><Status>OK</Status><PunchId>N</PunchId></PunchResponse>`.
pub(crate) fn accepted(punch_id: u64) -> Reply {
    Reply::xml(
        StatusCode::OK,
        format!("<PunchResponse><Status>OK</Status><PunchId>{punch_id}</PunchId></PunchResponse>"),
    )
}

/// `<PunchResponse><Status>ERROR</Status><Code>..</Code><Message>..</Message></PunchResponse>`.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::xml(
        status,
        format!(
            "<PunchResponse><Status>ERROR</Status><Code>{}</Code><Message>{}</Message></PunchResponse>",
            escape(code),
            escape(message)
        ),
    )
}

/// Escapes text for an XML element (caller input can end up in a message).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_escaped() {
        let reply = error(StatusCode::BAD_REQUEST, "INVALID_FIELD", "a <b> & 'c'");
        assert_eq!(
            reply.body,
            "<PunchResponse><Status>ERROR</Status><Code>INVALID_FIELD</Code>\
             <Message>a &lt;b&gt; &amp; &apos;c&apos;</Message></PunchResponse>"
        );
    }
}
