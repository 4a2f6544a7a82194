//! A small blocking HTTP/1.1 client for `ssed listen` and `ssed publish`:
//! `http://` URLs, one request per connection, bodies framed by chunks,
//! length or close. Response heads are parsed by `httparse` and chunks by
//! [`http1::Chunked`], the server's own decoder; both are bounded.
//!
//! Errors here carry no URL; the commands put the URL in front.

use super::Url;
use crate::http1;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest response head accepted from a server.
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields accepted in a response head.
const MAX_FIELDS: usize = 200;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The media type of a `Content-Type` value (see [`http1::media_type`]).
pub use crate::http1::media_type;

/// A response whose head has been read; the body is read through [`Response::body`].
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    body: Body,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::field(&self.headers, name)
    }

    /// The body, de-chunked.
    pub fn body(&mut self) -> &mut dyn Read {
        &mut self.body
    }

    /// Bounds every later read of the body to `timeout`.
    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.body
            .sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
    }

    /// The connection, for another request, if this answer was read to its
    /// end and the server keeps the connection open.
    fn into_connection(self) -> Option<(TcpStream, Vec<u8>)> {
        let done = match &self.body.framing {
            Framing::Length(0) => true,
            Framing::Chunked(decoder) => decoder.done(),
            _ => false,
        };
        let close = self
            .header("Connection")
            .is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        (done && !close && self.body.pos >= self.body.decoded.len())
            .then_some((self.body.sock, self.body.raw))
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
    read_response(stream, Vec::new(), method == "HEAD")
}

/// One server's answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub reason: String,
    pub body: String,
}

/// Requests to one server over one kept-open connection, made anew when
/// there is none or the server closed it.
pub struct Session {
    url: Url,
    timeout: Duration,
    open: Option<(TcpStream, Vec<u8>)>,
}

impl Session {
    pub fn new(url: Url, timeout: Duration) -> Session {
        Session {
            url,
            timeout,
            open: None,
        }
    }

    /// Sends a request to this session's URL and reads the whole answer
    /// (at most `limit` bytes of body). A kept connection the server closed
    /// while idle is replaced once, at once: the request never reached it.
    pub fn request(
        &mut self,
        method: &str,
        headers: &[(String, String)],
        body: &[u8],
        limit: u64,
    ) -> io::Result<Answer> {
        let kept = self.open.is_some();
        crate::net::with_kept(kept, crate::net::stale, |_| {
            self.try_request(method, headers, body, limit)
        })
    }

    fn try_request(
        &mut self,
        method: &str,
        headers: &[(String, String)],
        body: &[u8],
        limit: u64,
    ) -> io::Result<Answer> {
        let (sock, leftover) = match self.open.take() {
            Some(open) => open,
            None => {
                let sock = connect(&self.url, Some(self.timeout))?;
                sock.set_read_timeout(Some(self.timeout))?;
                sock.set_write_timeout(Some(self.timeout))?;
                (sock, Vec::new())
            }
        };
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\n",
            self.url.target,
            self.url.authority()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        (&sock).write_all(&out)?;
        let mut res = read_response(sock, leftover, method == "HEAD")?;
        let text = res.text(limit)?;
        let answer = Answer {
            status: res.status,
            reason: res.reason.clone(),
            body: text,
        };
        self.open = res.into_connection();
        Ok(answer)
    }
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

/// Reads a response head (at most [`MAX_HEAD`] bytes), after what `buf`
/// already holds, and sets up its body.
fn read_response(sock: TcpStream, buf: Vec<u8>, head_only: bool) -> io::Result<Response> {
    let (head, raw) = read_head(&sock, buf)?;
    let Head {
        status,
        reason,
        headers,
    } = head;
    let find = |name: &str| http1::field(&headers, name);
    let framing = if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else if let Some(te) = find("Transfer-Encoding") {
        if !te.trim().eq_ignore_ascii_case("chunked") {
            return Err(bad(format!("unsupported Transfer-Encoding {te:?}")));
        }
        Framing::Chunked(http1::Chunked::new(u64::MAX))
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
        body: Body {
            sock,
            raw,
            decoded: Vec::new(),
            pos: 0,
            framing,
        },
    })
}

/// A response head.
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

/// Reads a response head from `sock` (after the bytes in `buf`), within
/// [`MAX_HEAD`] and the socket's read timeout; also the bytes read after it.
pub fn read_head(sock: &TcpStream, mut buf: Vec<u8>) -> io::Result<(Head, Vec<u8>)> {
    let mut scanned: usize = 0;
    let end = loop {
        let from = scanned.saturating_sub(3);
        if let Some(i) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            break from + i + 4;
        }
        if let Some(i) = buf[from..].windows(2).position(|w| w == b"\n\n") {
            break from + i + 2;
        }
        if buf.len() > MAX_HEAD {
            return Err(bad(format!(
                "the response head is larger than {MAX_HEAD} bytes"
            )));
        }
        scanned = buf.len();
        let len = buf.len();
        buf.resize(len + READ_CHUNK, 0);
        let n = (&*sock).read(&mut buf[len..]);
        buf.truncate(len + *n.as_ref().unwrap_or(&0));
        if n? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                if buf.is_empty() {
                    "the server closed the connection"
                } else {
                    "the server closed the connection inside the response head"
                },
            ));
        }
    };
    let mut fields = vec![httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut fields);
    match res.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("the response head is incomplete")),
        Err(e) => {
            let first = String::from_utf8_lossy(&buf[..end.min(80)]);
            let first = first.lines().next().unwrap_or("");
            return Err(bad(format!("not an HTTP/1 response ({e}): {first:?}")));
        }
    }
    let head = Head {
        status: res.code.unwrap_or(0),
        reason: res.reason.unwrap_or("").to_string(),
        headers: http1::owned_fields(res.headers),
    };
    buf.drain(..end);
    Ok((head, buf))
}

struct Body {
    sock: TcpStream,
    /// Bytes received after the head and not yet used.
    raw: Vec<u8>,
    /// De-chunked bytes not yet read, from `pos`.
    decoded: Vec<u8>,
    pos: usize,
    framing: Framing,
}

enum Framing {
    Chunked(http1::Chunked),
    /// Bytes left.
    Length(u64),
    Close,
}

impl Body {
    /// Bytes as they came: what followed the head, then the socket.
    fn raw_read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.raw.is_empty() {
            let n = out.len().min(self.raw.len());
            out[..n].copy_from_slice(&self.raw[..n]);
            self.raw.drain(..n);
            return Ok(n);
        }
        (&self.sock).read(out)
    }
}

impl Read for Body {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.decoded.len() {
                let n = out.len().min(self.decoded.len() - self.pos);
                out[..n].copy_from_slice(&self.decoded[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match &mut self.framing {
                Framing::Close => return self.raw_read(out),
                Framing::Length(0) => return Ok(0),
                Framing::Length(left) => {
                    let max = out.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let left = *left;
                    let n = self.raw_read(&mut out[..max])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the body ended early",
                        ));
                    }
                    self.framing = Framing::Length(left - n as u64);
                    return Ok(n);
                }
                Framing::Chunked(decoder) if decoder.done() => return Ok(0),
                Framing::Chunked(_) => {
                    let mut raw = [0u8; 8192];
                    let n = self.raw_read(&mut raw)?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the stream ended inside a chunk",
                        ));
                    }
                    self.decoded.clear();
                    self.pos = 0;
                    if let Framing::Chunked(decoder) = &mut self.framing {
                        decoder
                            .feed(&raw[..n], &mut self.decoded)
                            .map_err(|e| bad(format!("bad chunked framing: {e}")))?;
                    }
                }
            }
        }
    }
}
