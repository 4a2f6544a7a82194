//! Request heads: found and parsed (with `httparse`) within their limits,
//! whatever the pieces they arrive in, and the framing they declare.

use super::{bad, owned_fields, Refusal, Request, Version, MAX_FIELDS, MAX_HEAD, MAX_REQUEST_LINE};

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
}
