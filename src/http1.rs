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

use crate::calendar::{self, Civil};
use std::borrow::Cow;

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
/// Longest chunk-size line, extensions included, and longest trailer section.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = MAX_HEAD;

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

/// Finds and parses one request head in the bytes received so far.
///
/// Feed it the whole buffer each time more arrives; it remembers how far it
/// has looked for the blank line that ends a head, so that `httparse` runs
/// once per head, not once per read.
#[derive(Debug, Default)]
pub struct HeadParser {
    /// Bytes already looked at: each byte is examined once for each of the
    /// three searches below, however the head arrives.
    scanned: usize,
    /// Where the request line starts, after any empty lines.
    start: Option<usize>,
    /// Where the request line ends, once seen.
    line_end: Option<usize>,
}

impl HeadParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// `Ok(None)`: the head is not complete yet (and within the limits).
    /// `Ok(Some((request, n)))`: the head is the first `n` bytes of `buf`.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<(Request, usize)>, Refusal> {
        let too_long_line = || {
            Refusal::new(
                414,
                format!("the request line is longer than {MAX_REQUEST_LINE} bytes"),
            )
        };
        // Empty lines before a request line are ignored (RFC 9112, 2.2).
        let start = match self.start {
            Some(start) => start,
            None => match buf[self.scanned..]
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
            {
                Some(i) => *self.start.insert(self.scanned + i),
                None => return self.wait(buf),
            },
        };
        let line_end = match self.line_end {
            Some(end) => end,
            None => {
                let from = self.scanned.max(start);
                match buf[from..].iter().position(|&b| b == b'\n') {
                    Some(i) => *self.line_end.insert(from + i),
                    None if buf.len() - start > MAX_REQUEST_LINE => return Err(too_long_line()),
                    None => return self.wait(buf),
                }
            }
        };
        if line_end - start > MAX_REQUEST_LINE {
            return Err(too_long_line());
        }
        // The head ends with an empty line: LF, or CR LF, after a line's LF.
        let from = self.scanned.saturating_sub(2).max(line_end);
        let end = buf[from..]
            .windows(2)
            .enumerate()
            .find_map(|(i, w)| match w {
                [b'\n', b'\n'] => Some(from + i + 2),
                [b'\n', b'\r'] if buf.get(from + i + 2) == Some(&b'\n') => Some(from + i + 3),
                _ => None,
            });
        let Some(end) = end else {
            return self.wait(buf);
        };
        if end > MAX_HEAD {
            return Err(too_large_head());
        }
        let mut fields = vec![httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut fields);
        match req.parse(&buf[..end]) {
            Ok(httparse::Status::Complete(n)) => Ok(Some((request_from(&req)?, n))),
            // Cannot happen once the blank line is in: treat as not yet.
            Ok(httparse::Status::Partial) => self.wait(buf),
            Err(httparse::Error::TooManyHeaders) => Err(Refusal::new(
                431,
                format!("the request has more than {MAX_FIELDS} header fields"),
            )),
            Err(httparse::Error::Version) => {
                version_fallback(&buf[..end], start, line_end).map(Some)
            }
            Err(e) => Err(bad(format!("malformed request head: {e}"))),
        }
    }

    /// Not complete: remember how far `buf` was searched, and refuse a head
    /// that is already too large to be one.
    fn wait(&mut self, buf: &[u8]) -> Result<Option<(Request, usize)>, Refusal> {
        if buf.len() > MAX_HEAD {
            return Err(too_large_head());
        }
        self.scanned = buf.len();
        Ok(None)
    }
}

/// A request line httparse refused for its version: a later HTTP/1.x
/// (`HTTP/1.2`) is served as HTTP/1.1, the highest minor version known
/// (RFC 9110, 2.5); a line with more than two spaces has a space in its
/// target, which RFC 9112 (3.2) answers with 400; another major version
/// is 505.
fn version_fallback(
    head: &[u8],
    start: usize,
    line_end: usize,
) -> Result<(Request, usize), Refusal> {
    let line = &head[start..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let spaces = line.iter().filter(|&&b| b == b' ').count();
    if spaces > 2 {
        return Err(bad("the request target has a space in it; write it as %20"));
    }
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    let later_1x = version.len() == 8
        && version.starts_with(b"HTTP/1.")
        && version[7].is_ascii_digit()
        && version[7] > b'1';
    if !later_1x {
        let other_major = version.starts_with(b"HTTP/")
            && version
                .get(5)
                .is_some_and(|&d| d.is_ascii_digit() && d != b'1');
        return if other_major && spaces == 2 {
            Err(Refusal::new(
                505,
                "only HTTP/1.x is served here (1.0 and 1.1; later 1.x as 1.1)",
            ))
        } else {
            Err(bad(
                "malformed request line: expected METHOD TARGET HTTP/1.1",
            ))
        };
    }
    // The same head with the version's minor digit, the line's last
    // byte, made 1: same length.
    let mut copy = head.to_vec();
    copy[start + line.len() - 1] = b'1';
    let mut fields = vec![httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(&copy) {
        Ok(httparse::Status::Complete(n)) => Ok((request_from(&req)?, n)),
        Err(httparse::Error::TooManyHeaders) => Err(Refusal::new(
            431,
            format!("the request has more than {MAX_FIELDS} header fields"),
        )),
        _ => Err(bad("malformed request head")),
    }
}

fn too_large_head() -> Refusal {
    Refusal::new(
        431,
        format!("the request head is larger than {MAX_HEAD} bytes"),
    )
}

fn request_from(req: &httparse::Request) -> Result<Request, Refusal> {
    let method = req.method.unwrap_or("").to_string();
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    let headers = owned_fields(req.headers);
    let hosts = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Host"))
        .count();
    // RFC 9112, 3.2: a 1.1 request without Host, or with more than one.
    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(bad("an HTTP/1.1 request needs exactly one Host header"));
    }
    let target = origin_form(req.path.unwrap_or(""), &method)?;
    Ok(Request {
        method,
        target,
        version,
        headers,
    })
}

/// The target as `/path?query`; `*` only for `OPTIONS` (RFC 9112, 3.2).
fn origin_form(target: &str, method: &str) -> Result<String, Refusal> {
    if target.starts_with('/') {
        return Ok(target.to_string());
    }
    if target == "*" && method == "OPTIONS" {
        return Ok("*".into());
    }
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return Err(bad(format!(
            "the request target must start with /, not {:?}",
            target.chars().take(64).collect::<String>()
        )));
    };
    Ok(match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => format!("/{}", &rest[i..]),
        Some(i) => rest[i..].to_string(),
        None => "/".into(),
    })
}

/// How a request's body is delimited (RFC 9112, 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes. `u64::MAX` stands for a length too large to
    /// count: refused by any reader of the body, and the connection closes.
    Length(u64),
    Chunked,
}

/// The framing a request declares, or why it cannot be trusted. Ambiguous
/// framing is how requests are smuggled past a proxy that reads it another
/// way, so each doubtful case is refused and the connection closed.
pub fn framing(req: &Request) -> Result<Framing, Refusal> {
    let codings: Vec<String> = req
        .headers_named("Transfer-Encoding")
        .flat_map(|v| v.split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let lengths: Vec<&str> = req
        .headers_named("Content-Length")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if !codings.is_empty() {
        if req.version == Version::Http10 {
            return Err(bad(
                "Transfer-Encoding is not allowed in an HTTP/1.0 request",
            ));
        }
        if !lengths.is_empty() {
            return Err(bad(
                "a request may not have both Content-Length and Transfer-Encoding",
            ));
        }
        // RFC 9112 6.1: chunked is applied once, and a list has no empty
        // members; either is malformed framing, not a coding to refuse.
        if codings.iter().filter(|c| *c == "chunked").count() > 1 {
            return Err(bad("Transfer-Encoding names chunked more than once"));
        }
        if codings.iter().any(String::is_empty) {
            return Err(bad("Transfer-Encoding has an empty member"));
        }
        return match codings.as_slice() {
            [only] if only == "chunked" => Ok(Framing::Chunked),
            [.., last] if last == "chunked" => {
                let other = codings.iter().find(|c| *c != "chunked").map_or("", |c| c);
                Err(Refusal::new(
                    501,
                    format!("Transfer-Encoding {other:?} is not supported; send the body chunked or with a Content-Length"),
                ))
            }
            _ => Err(bad("Transfer-Encoding must end with chunked")),
        };
    }
    let Some(first) = lengths.first() else {
        return Ok(Framing::None);
    };
    if lengths.iter().any(|l| l != first) {
        return Err(bad("the request has differing Content-Length values"));
    }
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!(
            "Content-Length must be a number of bytes, not {:?}",
            first.chars().take(32).collect::<String>()
        )));
    }
    Ok(match first.parse::<u64>() {
        Ok(0) => Framing::None,
        Ok(n) => Framing::Length(n),
        Err(_) => Framing::Length(u64::MAX),
    })
}

/// Decodes a chunked body (RFC 9112, 7.1) as bytes arrive, in pieces of
/// any size, with CRLF required where the grammar has it: chunk sizes in hex,
/// extensions skipped, trailers read and dropped.
#[derive(Debug)]
pub struct Chunked {
    state: ChunkState,
    /// Bytes of the current size line, or of the trailer section.
    line: usize,
    /// Bytes of data decoded so far, against `limit`.
    total: u64,
    limit: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex digits of a size; the value so far and whether any digit came.
    Size {
        size: u64,
        digits: bool,
    },
    /// After the digits: spaces or tabs, before a `;` or CR.
    SizeWs {
        size: u64,
    },
    /// After a `;`: an extension, skipped until CR.
    Extension {
        size: u64,
    },
    /// A CR was read; LF must follow.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// What went wrong in a chunked body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// The data would pass the limit.
    TooLarge,
    Malformed(&'static str),
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkError::TooLarge => f.write_str("the chunked body is too large"),
            ChunkError::Malformed(why) => f.write_str(why),
        }
    }
}

impl Chunked {
    /// A decoder that refuses more than `limit` bytes of data.
    pub fn new(limit: u64) -> Chunked {
        Chunked {
            state: ChunkState::Size {
                size: 0,
                digits: false,
            },
            line: 0,
            total: 0,
            limit,
        }
    }

    /// The last chunk and the trailers have been read: the body is complete.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes what it can of `input`, appending data to `out`. Returns how
    /// many bytes of `input` it used: all of them, unless the body ended
    /// within them (the rest belongs to the next message).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() && self.state != Done {
            let b = input[i];
            if let Data { left } = self.state {
                let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                out.extend_from_slice(&input[i..i + take]);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 { DataCr } else { Data { left } };
                continue;
            }
            i += 1;
            self.state = match self.state {
                Size { size, digits } => {
                    self.count_line()?;
                    match (b as char).to_digit(16) {
                        Some(d) => Size {
                            size: size
                                .checked_mul(16)
                                .and_then(|s| s.checked_add(u64::from(d)))
                                .ok_or(ChunkError::TooLarge)?,
                            digits: true,
                        },
                        None if !digits => {
                            return Err(ChunkError::Malformed(
                                "a chunk size must start with a hex digit",
                            ))
                        }
                        None => after_size(size, b)?,
                    }
                }
                SizeWs { size } => {
                    self.count_line()?;
                    after_size(size, b)?
                }
                Extension { size } => {
                    self.count_line()?;
                    match b {
                        b'\r' => SizeLf { size },
                        b'\n' => {
                            return Err(ChunkError::Malformed(
                                "a chunk-size line must end with CRLF",
                            ))
                        }
                        b'\t' => Extension { size },
                        0..=31 | 127 => {
                            return Err(ChunkError::Malformed(
                                "a chunk extension has a control character",
                            ))
                        }
                        _ => Extension { size },
                    }
                }
                SizeLf { size } => {
                    if b != b'\n' {
                        return Err(ChunkError::Malformed(
                            "a chunk-size line must end with CRLF",
                        ));
                    }
                    self.line = 0;
                    if size == 0 {
                        TrailerStart
                    } else {
                        self.total = self.total.saturating_add(size);
                        if self.total > self.limit {
                            return Err(ChunkError::TooLarge);
                        }
                        Data { left: size }
                    }
                }
                DataCr if b == b'\r' => DataLf,
                DataLf if b == b'\n' => Size {
                    size: 0,
                    digits: false,
                },
                DataCr | DataLf => {
                    return Err(ChunkError::Malformed("chunk data must be followed by CRLF"))
                }
                TrailerStart | Trailer => {
                    self.line += 1;
                    if self.line > MAX_TRAILERS {
                        return Err(ChunkError::Malformed("the trailer section is too large"));
                    }
                    match b {
                        b'\r' => TrailerLf {
                            empty: self.state == TrailerStart,
                        },
                        b'\n' => {
                            return Err(ChunkError::Malformed("trailer lines must end with CRLF"))
                        }
                        _ => Trailer,
                    }
                }
                TrailerLf { empty } => match (b, empty) {
                    (b'\n', true) => Done,
                    (b'\n', false) => TrailerStart,
                    _ => return Err(ChunkError::Malformed("trailer lines must end with CRLF")),
                },
                Data { .. } | Done => unreachable!("handled above"),
            };
        }
        Ok(i)
    }

    fn count_line(&mut self) -> Result<(), ChunkError> {
        self.line += 1;
        if self.line > MAX_CHUNK_LINE {
            return Err(ChunkError::Malformed("a chunk-size line is too long"));
        }
        Ok(())
    }
}

/// The state after the digits of a chunk size, on byte `b`. Only
/// whitespace before a `;` may follow the digits (RFC 9112, 7.1.1): `5 6`
/// must not be read as 5 here and as 56 by a proxy in front.
fn after_size(size: u64, b: u8) -> Result<ChunkState, ChunkError> {
    match b {
        b'\r' => Ok(ChunkState::SizeLf { size }),
        b'\n' => Err(ChunkError::Malformed(
            "a chunk-size line must end with CRLF",
        )),
        b' ' | b'\t' => Ok(ChunkState::SizeWs { size }),
        b';' => Ok(ChunkState::Extension { size }),
        _ => Err(ChunkError::Malformed("a chunk size is hex digits")),
    }
}

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
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
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

/// Room for the size line of any chunk: 16 hex digits and CRLF.
pub const CHUNK_SIZE_ROOM: usize = 18;

/// Writes the size line of a chunk of `len` bytes at the end of `room`
/// (at least [`CHUNK_SIZE_ROOM`] bytes), and returns where it starts: the
/// body can be written right after it without being moved.
pub fn put_chunk_size(len: usize, room: &mut [u8]) -> usize {
    let line = format!("{len:x}\r\n");
    let start = room.len() - line.len();
    room[start..].copy_from_slice(line.as_bytes());
    start
}

/// The last chunk of a chunked body, with no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The media type of a `Content-Type` value, lower-cased and without
/// parameters: `Text/Event-Stream; charset=utf-8` is `text/event-stream`.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Splits a request target into path and query (without the `?`).
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

/// The decoded `name=value` pairs of a query string, in order. A pair that
/// does not decode to UTF-8 is an error naming it.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (query_name(name), decode(value, true)) {
                (Some(n), Some(v)) => Ok((n, v)),
                _ => Err(format!(
                    "query parameter {:?} is not valid percent-encoded UTF-8",
                    pair.chars().take(64).collect::<String>()
                )),
            }
        })
        .collect()
}

/// A query parameter's name decoded as [`parse_query`] decodes it; `None`
/// if it does not decode.
pub fn query_name(raw: &str) -> Option<String> {
    decode(raw, true)
}

/// Splits a URL authority's `host[:port]`, the host of an IPv6 address in
/// brackets (`[::1]:7000`): the host and the port's text, if any. `None`
/// when a `[` is not closed.
pub fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        return Some((host, after.strip_prefix(':')));
    }
    Some(match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    })
}

/// Decodes `%XX` escapes (exactly two hex digits); `None` if an escape is
/// malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = (*bytes.get(i + 1)? as char).to_digit(16)?;
                let lo = (*bytes.get(i + 2)? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `input` whole, then split at every offset (each part fed to
    /// the same parser as it would arrive), then a byte at a time; all must
    /// give the same result.
    fn parse_all_ways(input: &[u8]) -> Result<Option<(Request, usize)>, Refusal> {
        let whole = HeadParser::new().parse(input);
        // Every offset of a small head; a sample of those of a large one.
        let step = (input.len() / 256).max(1);
        let mut cuts: Vec<Vec<usize>> = (0..=input.len()).step_by(step).map(|c| vec![c]).collect();
        cuts.push((0..input.len()).collect());
        for cut in cuts {
            let mut p = HeadParser::new();
            let mut got = Ok(None);
            for &c in cut.iter().chain([input.len()].iter()) {
                got = p.parse(&input[..c]);
                if !matches!(got, Ok(None)) {
                    break;
                }
            }
            assert_eq!(got, whole, "split at {cut:?} of {input:?}");
        }
        whole
    }

    fn head(input: &str) -> Result<Request, Refusal> {
        match parse_all_ways(input.as_bytes()) {
            Ok(Some((req, n))) => {
                assert_eq!(n, input.len(), "{input:?}");
                Ok(req)
            }
            Ok(None) => panic!("incomplete: {input:?}"),
            Err(e) => Err(e),
        }
    }

    fn status(input: &str) -> u16 {
        match parse_all_ways(input.as_bytes()) {
            Err(e) => e.status,
            other => panic!("{input:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn request_heads() {
        let r = head(
            "GET /sse?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nX-Empty:\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (r.method.as_str(), r.target.as_str(), r.version),
            ("GET", "/sse?x=1", Version::Http11)
        );
        assert_eq!((r.path(), r.query()), ("/sse", "x=1"));
        assert_eq!(r.header("accept"), Some("text/event-stream"));
        assert_eq!(r.header("X-Empty"), Some(""));
        assert!(r.keep_alive());
        // Leading empty lines are skipped; 1.0 needs no Host.
        let r = head("\r\n\r\nPOST /a HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!((r.version, r.keep_alive()), (Version::Http10, false));
        let r = head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(r.keep_alive());
        let r = head("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n").unwrap();
        assert!(!r.keep_alive());
        // Absolute form, as proxies send it; asterisk form for OPTIONS.
        for (target, expected) in [
            ("http://h:1/p?q", "/p?q"),
            ("HTTP://h", "/"),
            ("https://h?q=1", "/?q=1"),
        ] {
            let r = head(&format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n")).unwrap();
            assert_eq!(r.target, expected);
        }
        assert_eq!(
            head("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap()
                .target,
            "*"
        );
        // Values: trimmed, invalid UTF-8 replaced.
        let r = head("GET / HTTP/1.1\r\nHost: h\r\nX: \t caf\u{e9} \r\n\r\n").unwrap();
        assert_eq!(r.header("x"), Some("caf\u{e9}"));
        let bytes = b"GET / HTTP/1.1\r\nHost: h\r\nX: \xff\r\n\r\n";
        let (r, _) = parse_all_ways(bytes).unwrap().unwrap();
        assert_eq!(r.header("x"), Some("\u{FFFD}"));
        // Bare LF line ends are accepted (RFC 9112, 2.2).
        let (r, n) = parse_all_ways(b"GET / HTTP/1.1\nHost: h\n\nrest")
            .unwrap()
            .unwrap();
        assert_eq!((r.target.as_str(), n), ("/", 24));
        // What follows the head is not part of it.
        let (_, n) = parse_all_ways(b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /")
            .unwrap()
            .unwrap();
        assert_eq!(n, 27);
        assert!(!r.expects_continue());
        let r = head("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n\r\n").unwrap();
        assert!(r.expects_continue());
        let r = head("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").unwrap();
        assert!(!r.expects_continue());
    }

    #[test]
    fn a_later_http_1_minor_version_is_served_as_1_1() {
        // RFC 9110, 2.5: the highest minor version known is used.
        let r = head("GET /HTTP/1.2 HTTP/1.2\r\nHost: h\r\nX: HTTP/1.2\r\n\r\n").unwrap();
        assert_eq!((r.method.as_str(), r.target.as_str()), ("GET", "/HTTP/1.2"));
        assert_eq!(r.version, Version::Http11);
        assert_eq!(r.header("X"), Some("HTTP/1.2"));
        let r = head("GET / HTTP/1.9\r\n\r\n");
        assert_eq!(
            r.map_err(|e| e.status),
            Err(400),
            "1.1 rules: Host required"
        );
    }

    #[test]
    fn incomplete_heads_wait() {
        for input in [
            "",
            "GET",
            "GET / HTTP/1.1\r\nHost: h\r\n",
            "\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\n\r",
        ] {
            assert_eq!(parse_all_ways(input.as_bytes()), Ok(None), "{input:?}");
        }
    }

    #[test]
    fn refused_heads() {
        let long_target = format!(
            "GET /{} HTTP/1.1\r\nHost: h\r\n\r\n",
            "a".repeat(MAX_REQUEST_LINE)
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_FIELDS)
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "v".repeat(MAX_HEAD)
        );
        let cases: Vec<(String, u16)> = vec![
            (long_target.clone(), 414),
            // Refused before the line is even complete.
            (long_target[..MAX_REQUEST_LINE + 10].to_string(), 414),
            (many, 431),
            (big.clone(), 431),
            (big[..MAX_HEAD + 10].to_string(), 431),
            ("\r\n".repeat(MAX_HEAD), 431),
            ("GET / HTTP/2.0\r\nHost: h\r\n\r\n".into(), 505),
            ("GET / HTTP/3\r\nHost: h\r\n\r\n".into(), 505),
            // RFC 9112, 3.2: a space in the target is a bad request.
            ("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n".into(), 400),
            ("GET /a b c HTTP/1.1\r\nHost: h\r\n\r\n".into(), 400),
            ("GET / HTTP/1.x\r\nHost: h\r\n\r\n".into(), 400),
            ("GET / HTTP/1.1\r\n\r\n".into(), 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400),
            ("GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n".into(), 400),
            ("GET foo HTTP/1.1\r\nHost: h\r\n\r\n".into(), 400),
            ("GET * HTTP/1.1\r\nHost: h\r\n\r\n".into(), 400),
            ("GET  / HTTP/1.1\r\nHost: h\r\n\r\n".into(), 400),
            ("G(T / HTTP/1.1\r\nHost: h\r\n\r\n".into(), 400),
            ("GET / HTTP/1.1\r\nHost : h\r\n\r\n".into(), 400),
            ("GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n".into(), 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n".into(), 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n".into(), 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n".into(), 400),
            ("GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n".into(), 400),
            ("GET /\u{7f} HTTP/1.1\r\nHost: h\r\n\r\n".into(), 400),
        ];
        for (input, expected) in cases {
            assert_eq!(
                status(&input),
                expected,
                "{:?}",
                &input[..input.len().min(80)]
            );
        }
    }

    #[test]
    fn a_trickled_head_is_scanned_once() {
        // Not a timing test: the parser keeps its place, so feeding a large
        // head byte by byte still finds it, and refuses it past the limit.
        let head = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "v".repeat(MAX_HEAD - 40)
        );
        let mut p = HeadParser::new();
        for end in 1..head.len() {
            assert_eq!(p.parse(&head.as_bytes()[..end]), Ok(None));
        }
        assert!(p.parse(head.as_bytes()).unwrap().is_some());
    }

    fn req(headers: &[(&str, &str)], version: Version) -> Request {
        Request {
            method: "POST".into(),
            target: "/".into(),
            version,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn framing_rules() {
        use Version::*;
        let te = "Transfer-Encoding";
        let cl = "Content-Length";
        type Case<'a> = (Vec<(&'a str, &'a str)>, Version, Result<Framing, u16>);
        let cases: Vec<Case> = vec![
            (vec![], Http11, Ok(Framing::None)),
            (vec![(cl, "0")], Http11, Ok(Framing::None)),
            (vec![(cl, "12")], Http11, Ok(Framing::Length(12))),
            (
                vec![(cl, "12"), (cl, "12")],
                Http11,
                Ok(Framing::Length(12)),
            ),
            (vec![(cl, "12, 12")], Http11, Ok(Framing::Length(12))),
            (
                vec![(cl, "18446744073709551616")],
                Http11,
                Ok(Framing::Length(u64::MAX)),
            ),
            (vec![(te, "chunked")], Http11, Ok(Framing::Chunked)),
            (vec![(te, "Chunked")], Http11, Ok(Framing::Chunked)),
            // Smuggling: both, differing lengths, bad lengths, other codings.
            (vec![(cl, "5"), (te, "chunked")], Http11, Err(400)),
            (vec![(te, "chunked"), (cl, "5")], Http11, Err(400)),
            (vec![(cl, "5"), (cl, "6")], Http11, Err(400)),
            (vec![(cl, "5, 6")], Http11, Err(400)),
            (vec![(cl, "+5")], Http11, Err(400)),
            (vec![(cl, "-1")], Http11, Err(400)),
            (vec![(cl, "0x10")], Http11, Err(400)),
            (vec![(cl, "1 2")], Http11, Err(400)),
            (vec![(cl, "")], Http11, Err(400)),
            (vec![(te, "gzip, chunked")], Http11, Err(501)),
            (vec![(te, "gzip")], Http11, Err(400)),
            (vec![(te, "chunked, gzip")], Http11, Err(400)),
            (vec![(te, "chunked"), (te, "chunked")], Http11, Err(400)),
            (vec![(te, "chunked, chunked")], Http11, Err(400)),
            (vec![(te, "gzip, chunked, chunked")], Http11, Err(400)),
            (vec![(te, ", chunked")], Http11, Err(400)),
            (vec![(te, "chunked,")], Http11, Err(400)),
            (vec![(te, "xchunked")], Http11, Err(400)),
            (vec![(te, "")], Http11, Err(400)),
            (vec![(te, "chunked")], Http10, Err(400)),
        ];
        for (headers, version, expected) in cases {
            assert_eq!(
                framing(&req(&headers, version)).map_err(|r| r.status),
                expected,
                "{headers:?} {version:?}"
            );
        }
    }

    #[test]
    fn smuggling_heads_fed_in_pieces() {
        // Raw heads, as they arrive, split at every offset: the framing a
        // parsed head declares, or the status it is refused with.
        let cases: Vec<(&str, Result<Framing, u16>)> = vec![
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", Ok(Framing::Length(5))),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", Ok(Framing::Chunked)),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Err(400)),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Err(400)),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", Err(400)),
            ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n", Err(400)),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Err(501)),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Err(400)),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Err(400)),
            // A space before the colon, or a folded line, would hide a
            // field from one reader and not another: the head is refused.
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", Err(400)),
            ("POST / HTTP/1.1\r\nHost: h\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n", Err(400)),
            ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n", Err(400)),
        ];
        for (input, expected) in cases {
            let got = match parse_all_ways(input.as_bytes()) {
                Ok(Some((req, _))) => framing(&req).map_err(|r| r.status),
                Ok(None) => panic!("incomplete: {input:?}"),
                Err(r) => Err(r.status),
            };
            assert_eq!(got, expected, "{input:?}");
        }
    }

    /// Decodes `input` whole, split at every offset, and byte by byte.
    fn chunked(input: &[u8], limit: u64) -> Result<(Vec<u8>, usize), ChunkError> {
        let run = |cuts: &[usize]| -> Result<(Vec<u8>, usize), ChunkError> {
            let mut d = Chunked::new(limit);
            let mut out = Vec::new();
            let mut from = 0;
            for &cut in cuts.iter().chain([input.len()].iter()) {
                let used = d.feed(&input[from..cut], &mut out)?;
                if d.done() {
                    return Ok((out, from + used));
                }
                assert_eq!(used, cut - from);
                from = cut;
            }
            Err(ChunkError::Malformed("incomplete"))
        };
        let whole = run(&[]);
        for cut in 0..=input.len() {
            assert_eq!(run(&[cut]), whole, "split at {cut}: {input:?}");
        }
        let every: Vec<usize> = (0..input.len()).collect();
        assert_eq!(run(&every), whole, "bytewise: {input:?}");
        whole
    }

    #[test]
    fn chunked_bodies() {
        let ok: Vec<(&[u8], &[u8], usize)> = vec![
            (b"0\r\n\r\n", b"", 5),
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello", 15),
            (
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT",
                b"hello world",
                26,
            ),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", 20),
            (b"00005\r\nhello\r\n000\r\n\r\n", b"hello", 21),
            // Extensions, with whitespace before them; trailers.
            (b"5;name=val\r\nhello\r\n0;x\r\n\r\n", b"hello", 26),
            (b"5 ;a=\"q;r\"\r\nhello\r\n0\r\n\r\n", b"hello", 24),
            (
                b"5\t\r\nhello\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n",
                b"hello",
                32,
            ),
        ];
        for (input, data, used) in ok {
            let (got, n) = chunked(input, 1000).unwrap();
            assert_eq!((got.as_slice(), n), (data, used), "{input:?}");
        }
        let bad: Vec<(&[u8], ChunkError)> = vec![
            (b"b\r\nhello world\r\n0\r\n\r\n", ChunkError::TooLarge),
            (b"ffffffffffffffffff\r\n", ChunkError::TooLarge),
            (
                b"x\r\n",
                ChunkError::Malformed("a chunk size must start with a hex digit"),
            ),
            (
                b"\r\n",
                ChunkError::Malformed("a chunk size must start with a hex digit"),
            ),
            (
                b"-5\r\n",
                ChunkError::Malformed("a chunk size must start with a hex digit"),
            ),
            (
                b"5x\r\n",
                ChunkError::Malformed("a chunk size is hex digits"),
            ),
            (
                b"5 6\r\nhello\r\n",
                ChunkError::Malformed("a chunk size is hex digits"),
            ),
            (
                b"5;a\x01\r\n",
                ChunkError::Malformed("a chunk extension has a control character"),
            ),
            (
                b"5\nhello\r\n",
                ChunkError::Malformed("a chunk-size line must end with CRLF"),
            ),
            (
                b"5\rhello",
                ChunkError::Malformed("a chunk-size line must end with CRLF"),
            ),
            (
                b"5;a\nb\r\n",
                ChunkError::Malformed("a chunk-size line must end with CRLF"),
            ),
            (
                b"3\r\nhello\r\n",
                ChunkError::Malformed("chunk data must be followed by CRLF"),
            ),
            (
                b"5\r\nhello\n0\r\n\r\n",
                ChunkError::Malformed("chunk data must be followed by CRLF"),
            ),
            (
                b"0\r\nX: y\n\r\n",
                ChunkError::Malformed("trailer lines must end with CRLF"),
            ),
            (
                b"0\r\n\n",
                ChunkError::Malformed("trailer lines must end with CRLF"),
            ),
            (
                b"0\r\n\rX",
                ChunkError::Malformed("trailer lines must end with CRLF"),
            ),
        ];
        for (input, err) in bad {
            assert_eq!(chunked(input, 10).map(|_| ()), Err(err), "{input:?}");
        }
        // Lines that never end are refused at the bound, not buffered.
        let mut endless = b"5;".to_vec();
        endless.extend(std::iter::repeat_n(b'x', MAX_CHUNK_LINE));
        assert_eq!(
            Chunked::new(10).feed(&endless, &mut Vec::new()),
            Err(ChunkError::Malformed("a chunk-size line is too long"))
        );
        let mut endless = b"0\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b'x', MAX_TRAILERS + 1));
        assert_eq!(
            Chunked::new(10).feed(&endless, &mut Vec::new()),
            Err(ChunkError::Malformed("the trailer section is too large"))
        );
        // A cut-off body is not done.
        let mut d = Chunked::new(100);
        d.feed(b"5\r\nhel", &mut Vec::new()).unwrap();
        assert!(!d.done());
    }

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

    #[test]
    fn queries_and_escapes() {
        assert_eq!(split_target("/a?b=c"), ("/a", "b=c"));
        assert_eq!(split_target("/a"), ("/a", ""));
        let q = parse_query("a=1&b=x+y%21&&c&a=2").unwrap();
        assert_eq!(
            q,
            [("a", "1"), ("b", "x y!"), ("c", ""), ("a", "2")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert!(parse_query("a=%zz").is_err());
        assert!(parse_query("a=%ff").is_err());
        let cases = [
            ("%2e%2E/x", Some("../x")),
            ("a+b", Some("a+b")),
            ("%", None),
            ("%4", None),
            ("%+A", None),
            ("%-1", None),
            ("% a", None),
            ("%c3%a9", Some("\u{e9}")),
        ];
        for (input, expected) in cases {
            assert_eq!(percent_decode(input).as_deref(), expected, "{input}");
        }
        assert_eq!(
            media_type(Some("Text/Event-Stream; charset=utf-8")),
            "text/event-stream"
        );
        assert_eq!(media_type(None), "");
    }
}
