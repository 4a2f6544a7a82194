//! A small blocking HTTP/1.1 client for `ssed listen` and `ssed publish`:
//! `http://` URLs, one request per connection, bodies framed by chunks,
//! length or close.
//!
//! Errors here carry no URL; the commands put the URL in front.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Longest status line or header line accepted from a server.
const MAX_LINE: usize = 16 * 1024;
/// Most header lines accepted from a server.
const MAX_HEADERS: usize = 200;

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

/// An `http://` URL, split for the request line and the Host header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// As a socket address wants it: IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub target: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, String> {
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(
                "https is not supported: ssed has no TLS built in; put a TLS-terminating proxy \
                 in front, or use `curl -N` for https"
                    .into(),
            );
        } else {
            return Err("expected a URL starting with http://".into());
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let target = target.split('#').next().unwrap_or("/").to_string();
        if authority.contains('@') {
            return Err(
                "user names and passwords in URLs are not supported; use -H 'Authorization: ...'"
                    .into(),
            );
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p.parse().map_err(|_| format!("invalid port {p:?}"))?,
        };
        if target
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(
                "the URL contains spaces or control characters; percent-encode them".into(),
            );
        }
        Ok(Url {
            host: host.to_string(),
            port,
            target,
        })
    }

    /// The Host header value.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The URL a `Location` header points to, relative to this one.
    pub fn join(&self, location: &str) -> Result<Url, String> {
        if location.contains("://") {
            return Url::parse(location);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse(&format!("http://{rest}"));
        }
        let target = if location.starts_with('/') {
            location.to_string()
        } else {
            let path = self.target.split('?').next().unwrap_or("/");
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Ok(Url {
            target,
            ..self.clone()
        })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.target)
    }
}

/// A response whose head has been read; the body is read through [`Response::body`].
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    body: Body,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body, de-chunked.
    pub fn body(&mut self) -> &mut dyn Read {
        &mut self.body
    }

    /// Reads the whole body, at most `limit` bytes.
    pub fn text(&mut self, limit: u64) -> io::Result<String> {
        let mut bytes = Vec::new();
        self.body.by_ref().take(limit).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Sends one request and reads the response head. `timeout` bounds the
/// connect and every read.
pub fn request(
    url: &Url,
    method: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    timeout: Option<Duration>,
) -> io::Result<Response> {
    let stream = connect(url, timeout)?;
    stream.set_read_timeout(timeout)?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\n",
        url.target,
        url.authority()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    // One response per connection: tells the server (and a proxy) that no
    // second request will follow, so it holds nothing for us afterwards.
    head.push_str("Connection: close\r\n\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    (&stream).write_all(&out)?;
    read_response(BufReader::new(stream), method == "HEAD")
}

fn connect(url: &Url, timeout: Option<Duration>) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in (url.host.as_str(), url.port).to_socket_addrs()? {
        let attempt = match timeout {
            Some(t) => TcpStream::connect_timeout(&addr, t),
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host has no address")))
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Reads at most `left` bytes into `buf` and counts them off `left`; the
/// peer closing first is an error saying `early`.
fn read_within(
    r: &mut impl Read,
    buf: &mut [u8],
    left: &mut u64,
    early: &str,
) -> io::Result<usize> {
    let max = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
    let n = r.read(&mut buf[..max])?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, early));
    }
    *left -= n as u64;
    Ok(n)
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    if line.last() != Some(&b'\n') {
        return Err(bad("a line of the response is too long or cut off"));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad("the response head is not UTF-8"))
}

fn read_response(mut r: BufReader<TcpStream>, head_only: bool) -> io::Result<Response> {
    let status_line = read_line(&mut r)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("not an HTTP/1 response: {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut r)?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(bad("too many headers"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let framing = if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else if find("Transfer-Encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        Framing::Chunked {
            left: 0,
            done: false,
        }
    } else if let Some(len) = find("Content-Length") {
        Framing::Length(
            len.parse()
                .map_err(|_| bad(format!("bad Content-Length {len:?}")))?,
        )
    } else {
        Framing::Close
    };
    Ok(Response {
        status,
        reason,
        headers,
        body: Body { r, framing },
    })
}

struct Body {
    r: BufReader<TcpStream>,
    framing: Framing,
}

enum Framing {
    /// `left` bytes remain of the current chunk.
    Chunked {
        left: u64,
        done: bool,
    },
    Length(u64),
    Close,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.framing {
            Framing::Close => self.r.read(buf),
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => read_within(&mut self.r, buf, left, "the body ended early"),
            Framing::Chunked { done: true, .. } => Ok(0),
            Framing::Chunked { left, done } => {
                if *left == 0 {
                    let line = read_line(&mut self.r)?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16)
                        .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
                    if size == 0 {
                        // Trailers, up to the blank line.
                        while !read_line(&mut self.r)?.is_empty() {}
                        *done = true;
                        return Ok(0);
                    }
                    *left = size;
                }
                let n = read_within(&mut self.r, buf, left, "the stream ended inside a chunk")?;
                if *left == 0 {
                    let mut crlf = [0u8; 2];
                    self.r.read_exact(&mut crlf)?;
                    if &crlf != b"\r\n" {
                        return Err(bad("a chunk is not followed by CRLF"));
                    }
                }
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://127.0.0.1:8000/events/news?x=1#frag").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("127.0.0.1", 8000, "/events/news?x=1")
        );
        assert_eq!(u.to_string(), "http://127.0.0.1:8000/events/news?x=1");
        let u = Url::parse("http://example.com").unwrap();
        assert_eq!(
            (u.port, u.target.as_str(), u.authority()),
            (80, "/", "example.com".to_string())
        );
        let u = Url::parse("http://[::1]:9/a").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority()),
            ("::1", "[::1]:9".to_string())
        );
        let u = Url::parse("http://h?q=1").unwrap();
        assert_eq!(u.target, "/?q=1");
        assert!(Url::parse("https://x/")
            .unwrap_err()
            .contains("no TLS built in"));
        assert!(Url::parse("ftp://x/").is_err());
        assert!(Url::parse("http://:80/").is_err());
        assert!(Url::parse("http://h:99999/").is_err());
        assert!(Url::parse("http://h/a b").is_err());
    }

    #[test]
    fn joins_locations() {
        let base = Url::parse("http://h:1/a/b?q").unwrap();
        assert_eq!(base.join("/x").unwrap().to_string(), "http://h:1/x");
        assert_eq!(base.join("c").unwrap().to_string(), "http://h:1/a/c");
        assert_eq!(
            base.join("http://o:2/y").unwrap().to_string(),
            "http://o:2/y"
        );
        assert_eq!(base.join("//o/z").unwrap().to_string(), "http://o/z");
    }
}
