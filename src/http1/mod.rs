//! HTTP/1.1 bytes, for the server and the client: request heads (parsed by
//! `httparse`, with limits), message framing (RFC 9112, section 6), a
//! decoder for chunked bodies, response heads, and the decoding of targets
//! and query strings.
//!
//! Everything here works on byte slices and owns no socket: the connection
//! layer ([`crate::conn`]) and the client feed it what they read, so every
//! rule is tested as a table, with each input also fed split at every byte
//! offset. Every parser is bounded: it refuses input past a limit instead of
//! buffering it, and it never looks at a byte twice more than it must (a head
//! sent one byte at a time costs what a head sent at once does).

mod chunked;
mod head;
mod query;
mod response;

pub use chunked::{put_chunk_size, ChunkError, Chunked, CHUNK_SIZE_ROOM, LAST_CHUNK};
pub use head::{framing, Framing, HeadParser};
pub use query::{
    media_type, parse_query, percent_decode, query_name, split_host_port, split_target,
};
pub use response::{field_value_ok, reason, response_head, Response};

/// `Server` header value, and the client's `User-Agent`.
pub const SERVER: &str = concat!("ssed/", env!("CARGO_PKG_VERSION"));

/// Longest request line (`414 URI Too Long` past it): a target that long is
/// no URL a person or a program of ours writes; the common servers stop at 4
/// to 8 KiB.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest request head, request line included (`431`).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in a head (`431`).
pub const MAX_FIELDS: usize = 100;

/// Why a message cannot be taken: the status to answer and one line of reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: String,
}

impl Refusal {
    pub fn new(status: u16, why: impl Into<String>) -> Refusal {
        Refusal {
            status,
            why: why.into(),
        }
    }
}

fn bad(why: impl Into<String>) -> Refusal {
    Refusal::new(400, why)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// As a request line writes it (for the access log).
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A request head. The target is in origin form (`/path?query`): an
/// absolute-form target (`http://host/path`, as proxies send) is cut to its
/// path and query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: Version,
    /// Names as sent; values with invalid UTF-8 replaced (U+FFFD).
    pub headers: Vec<(String, String)>,
}

/// Header fields as owned `(name, value)` pairs: values trimmed, invalid
/// UTF-8 replaced (U+FFFD). For request and response heads alike.
pub fn owned_fields(fields: &[httparse::Header]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect()
}

/// The first value of field `name` (names compare without case).
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Request {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        field(&self.headers, name)
    }

    /// Every value of header `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        split_target(&self.target).0
    }

    /// The query, without the `?` (`""` when there is none).
    pub fn query(&self) -> &str {
        split_target(&self.target).1
    }

    /// Whether the `Connection` header lists `token`.
    fn connection_has(&self, token: &str) -> bool {
        self.headers_named("Connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the client allows another request on this connection after
    /// this one: HTTP/1.1 unless it says `close`, HTTP/1.0 only if it says
    /// `keep-alive` (RFC 9112, 9.3).
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.connection_has("close"),
            Version::Http10 => self.connection_has("keep-alive") && !self.connection_has("close"),
        }
    }

    /// `Expect: 100-continue` on HTTP/1.1 (HTTP/1.0 requests must have it
    /// ignored, RFC 9110, 10.1.1).
    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11
            && self
                .header("Expect")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }
}
