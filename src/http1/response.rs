//! Responses: heads with checked values, and the short answers ssed sends.

use super::{Refusal, SERVER};
use crate::calendar::{self, Civil};
use std::borrow::Cow;

/// The reason phrase of a status ssed sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Whether `value` can stand in a header line: no CR, LF or NUL, which would
/// end the line early or be refused by the peer.
pub fn field_value_ok(value: &str) -> bool {
    !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// A response head. `fields` are written in order after `Server` and
/// `Date`; a field whose value could break the head is left out and named
/// in the `Err`, so that the caller can log the bug that produced it.
pub fn response_head(status: u16, fields: &[(&str, &str)]) -> (Vec<u8>, Result<(), String>) {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nServer: {SERVER}\r\nDate: {}\r\n",
        reason(status),
        Civil::from_unix(calendar::unix_now()).http_date()
    );
    let mut dropped = Ok(());
    for (name, value) in fields {
        if field_value_ok(value) {
            head.push_str(&format!("{name}: {value}\r\n"));
        } else {
            dropped = Err(format!(
                "header {name} had a line break or NUL and was left out"
            ));
        }
    }
    head.push_str("\r\n");
    (head.into_bytes(), dropped)
}

/// A short response: a status, header fields and a body held in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Fields other than `Server`, `Date`, `Content-Length` and `Connection`.
    pub fields: Vec<(&'static str, String)>,
    pub body: Cow<'static, [u8]>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Cow<'static, [u8]>>) -> Self {
        Response {
            status,
            fields: vec![("Content-Type", content_type.to_string())],
            body: body.into(),
        }
    }

    /// Plain text, ended with a newline so that it reads well in a terminal.
    /// Like every answer made now, not to be kept by a cache.
    pub fn text(status: u16, text: &str) -> Self {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            format!("{text}\n").into_bytes(),
        )
        .no_store()
    }

    /// JSON: `value` written compactly; not to be kept by a cache.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Response::new(
            status,
            "application/json",
            format!("{value}\n").into_bytes(),
        )
        .no_store()
    }

    /// `Cache-Control: no-store`: an answer made for this request (the
    /// hub's state, a health check, a refusal) that a cache must not keep.
    pub fn no_store(self) -> Self {
        self.with("Cache-Control", "no-store")
    }

    /// `{"error": why}`: every refusal ssed sends.
    pub fn error(status: u16, why: &str) -> Self {
        Response::json(status, &serde_json::json!({ "error": why }))
    }

    /// No body.
    pub fn empty(status: u16) -> Self {
        Response {
            status,
            fields: Vec::new(),
            body: Cow::Borrowed(b""),
        }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((name, value.into()));
        self
    }
}

impl From<Refusal> for Response {
    fn from(r: Refusal) -> Response {
        Response::error(r.status, &r.why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{put_chunk_size, CHUNK_SIZE_ROOM};

    #[test]
    fn response_heads() {
        let (head, dropped) =
            response_head(200, &[("Content-Type", "text/plain"), ("Bad", "a\r\nX: y")]);
        let head = String::from_utf8(head).unwrap();
        assert!(
            head.starts_with(&format!("HTTP/1.1 200 OK\r\nServer: {SERVER}\r\nDate: ")),
            "{head}"
        );
        assert!(
            head.ends_with(" GMT\r\nContent-Type: text/plain\r\n\r\n"),
            "{head}"
        );
        assert_eq!(
            dropped,
            Err("header Bad had a line break or NUL and was left out".into())
        );
        assert!(!field_value_ok("a\0"));
        let mut room = [b'.'; CHUNK_SIZE_ROOM];
        assert_eq!(put_chunk_size(300, &mut room), CHUNK_SIZE_ROOM - 5);
        assert_eq!(&room[CHUNK_SIZE_ROOM - 6..], b".12c\r\n");
        assert_eq!(
            Response::error(404, "no").body.as_ref(),
            b"{\"error\":\"no\"}\n"
        );
        assert_eq!(Response::text(200, "ok").body.as_ref(), b"ok\n");
    }
}
