//! One connection's thread: requests read in order within their limits
//! and timeouts, each answered through an [`Exchange`]; a stream's head
//! written, its body run, and handed to the park once caught up.

use super::park::{Park, Parked};
use super::wire::{is_timeout, SocketWire};
use super::{Delimit, Peer, Shared, StreamBody};
use crate::http1::{self, Framing, HeadParser, Refusal, Request, Response, Version};
use crate::log;
use crate::sync::Doorbell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes read from a socket at a time into a connection's buffer: a little
/// at first (most heads are smaller), more once a head or body is larger.
const FIRST_READ: usize = 1024;
const READ_CHUNK: usize = 4096;

/// How long and how much a connection closed with unread input is drained
/// first, so that the client reads the answer instead of a reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// One connection, as its thread sees it.
pub(super) struct Conn {
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    addr: SocketAddr,
    /// Bytes received and not yet used: the start of the next request.
    buf: Vec<u8>,
    /// Requests answered so far.
    served: u64,
    accepted: Instant,
    /// The client may still be sending what was not read: drain before
    /// closing, so that it sees the answer instead of a reset.
    unread_input: bool,
    /// Close abortively (reset): the client stopped reading.
    abort: bool,
}

/// What waiting for the next request gave.
enum Next {
    Request(Request),
    /// The client closed, went idle too long, or the server is stopping.
    Closed,
    /// An answer to send before closing (a head over a limit, a timeout).
    Refuse(Refusal),
}

impl Conn {
    pub(super) fn new(shared: Arc<Shared>, peer: Arc<Peer>, addr: SocketAddr) -> Conn {
        Conn {
            shared,
            peer,
            addr,
            buf: Vec::new(),
            served: 0,
            accepted: Instant::now(),
            unread_input: false,
            abort: false,
        }
    }

    fn stopping(&self) -> bool {
        self.shared.crew.stopping()
    }

    /// Serves requests until the connection ends; `true` when its stream
    /// was parked instead (the park ends the connection).
    pub(super) fn serve(&mut self, id: u64) -> bool {
        loop {
            let request = match self.next_request() {
                Next::Request(request) => request,
                Next::Closed => break,
                Next::Refuse(refusal) => {
                    self.shared
                        .counters
                        .bad_requests
                        .fetch_add(1, Ordering::Relaxed);
                    self.unread_input = true;
                    let mut ex = Exchange::new(self, None);
                    ex.respond(Response::from(refusal));
                    ex.finish();
                    break;
                }
            };
            self.served += 1;
            let mut ex = Exchange::new(self, Some(request));
            if let Some(refusal) = ex.framing_refusal.take() {
                ex.conn
                    .shared
                    .counters
                    .bad_requests
                    .fetch_add(1, Ordering::Relaxed);
                ex.conn
                    .shared
                    .logs
                    .limits
                    .note(&format!("{} {}", refusal.status, refusal.why));
                ex.respond(Response::from(refusal));
            } else {
                let handler = Arc::clone(&ex.conn.shared.handler);
                if let Some(body) = handler.handle(&mut ex) {
                    if let Some(parked) = ex.run_stream(body, id) {
                        Park::take(&self.shared, parked);
                        return true;
                    }
                }
                if ex.status.is_none() {
                    log::internal("a request was left without an answer");
                    ex.respond(Response::error(500, "the server gave no answer"));
                }
            }
            let keep = ex.finish();
            if !keep || self.stopping() {
                break;
            }
            // Waiting for the next request holds no buffer.
            if self.buf.is_empty() {
                self.buf = Vec::new();
            }
        }
        self.close();
        false
    }

    /// Waits for and reads the next request head, within the timeouts.
    fn next_request(&mut self) -> Next {
        let (header_timeout, idle_timeout) = (
            self.shared.settings.header_timeout,
            self.shared.settings.idle_timeout,
        );
        let first = self.served == 0;
        let now = Instant::now();
        // A new connection has waited since it was accepted (stamped then);
        // a kept-alive one since its last answer.
        if !first {
            self.peer
                .waiting_since
                .store(self.shared.now_ms() + 1, Ordering::Release);
        }
        // The first head must come within the header timeout of the accept;
        // later ones may be preceded by an idle wait.
        let idle_deadline = if first {
            self.accepted + header_timeout
        } else {
            now + idle_timeout
        };
        let mut head_deadline = None;
        let mut parser = HeadParser::new();
        loop {
            if !self.buf.is_empty() {
                match parser.parse(&self.buf) {
                    Ok(Some((request, n))) => {
                        self.buf.drain(..n);
                        self.peer.waiting_since.store(0, Ordering::Release);
                        return Next::Request(request);
                    }
                    Ok(None) => {
                        head_deadline.get_or_insert(if first {
                            idle_deadline
                        } else {
                            Instant::now() + header_timeout
                        });
                    }
                    Err(refusal) => {
                        self.shared.logs.limits.note(&format!(
                            "{} from {}: {}",
                            refusal.status, self.addr, refusal.why
                        ));
                        return Next::Refuse(refusal);
                    }
                }
            }
            if self.stopping() {
                return Next::Closed;
            }
            let deadline = head_deadline.unwrap_or(idle_deadline);
            let now = Instant::now();
            if now >= deadline {
                if head_deadline.is_some() || first {
                    self.shared
                        .counters
                        .header_timeouts
                        .fetch_add(1, Ordering::Relaxed);
                    self.shared.logs.timeouts.note(&format!("{}", self.addr));
                }
                return if head_deadline.is_some() {
                    Next::Refuse(Refusal::new(
                        408,
                        format!(
                            "the request head did not arrive within {} s (--header-timeout)",
                            header_timeout.as_secs_f64()
                        ),
                    ))
                } else {
                    // Nothing sent: close without a word, as a keep-alive
                    // connection that idled out.
                    Next::Closed
                };
            }
            match self.fill(deadline - now) {
                Ok(0) => return Next::Closed,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return Next::Closed,
            }
        }
    }

    /// Reads what the socket has into `buf`, waiting at most `timeout`.
    fn fill(&mut self, timeout: Duration) -> io::Result<usize> {
        self.peer
            .sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let len = self.buf.len();
        let chunk = if len == 0 { FIRST_READ } else { READ_CHUNK };
        self.buf.resize(len + chunk, 0);
        let got = (&self.peer.sock).read(&mut self.buf[len..]);
        self.buf.truncate(len + *got.as_ref().unwrap_or(&0));
        got
    }

    /// Writes all of `bytes`; a failure closes the connection after this
    /// exchange (and abortively if the client stopped reading).
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let result = (&self.peer.sock).write_all(bytes);
        if let Err(e) = &result {
            self.abort |= is_timeout(e);
        }
        result
    }

    /// Closes the connection: reset if the client stopped reading, else a
    /// FIN, after draining what the client may still be sending.
    fn close(&mut self) {
        let sock = &self.peer.sock;
        if self.abort {
            let _ = socket2::SockRef::from(sock).set_linger(Some(Duration::ZERO));
            return;
        }
        if !self.unread_input {
            return;
        }
        let _ = sock.shutdown(Shutdown::Write);
        let deadline = Instant::now() + LINGER_TIME;
        let mut drained = 0;
        while drained < LINGER_BYTES {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.buf.clear();
            match self.fill(deadline - now) {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
    }
}

/// One request and its answer, as the [`super::Handler`] sees it.
pub struct Exchange<'c> {
    conn: &'c mut Conn,
    request: Request,
    framing: Framing,
    /// Why the request cannot be served whatever its route.
    framing_refusal: Option<Refusal>,
    /// The body was read, or there is none.
    body_read: bool,
    /// `100 Continue` was sent.
    continued: bool,
    /// What was answered.
    status: Option<u16>,
    /// Bytes written for this exchange, head included.
    bytes: u64,
    /// A stream's write failed: how.
    failed: Option<io::ErrorKind>,
    /// The connection closes after this exchange.
    close: bool,
    started: Instant,
    /// Who made the request, for the access log (a token's `sub`).
    user: Option<String>,
    /// The client as the access log shows it, once a stream dropped the
    /// head fields it is read from.
    shown: Option<String>,
}

impl<'c> Exchange<'c> {
    fn new(conn: &'c mut Conn, request: Option<Request>) -> Exchange<'c> {
        let (request, mut refusal, framing) = match request {
            Some(request) => match http1::framing(&request) {
                Ok(framing) => (request, None, framing),
                Err(r) => (request, Some(r), Framing::None),
            },
            // A head that could not be read: only a refusal is sent.
            None => (
                Request {
                    method: String::new(),
                    target: String::new(),
                    version: Version::Http11,
                    headers: Vec::new(),
                },
                None,
                Framing::None,
            ),
        };
        if refusal.is_none() && request.version == Version::Http11 {
            if let Some(expect) = request.header("Expect") {
                if !request.expects_continue() {
                    refusal = Some(Refusal::new(
                        417,
                        format!("only Expect: 100-continue is understood, not {expect:?}"),
                    ));
                }
            }
        }
        let close = request.method.is_empty() || refusal.is_some() || !request.keep_alive();
        Exchange {
            conn,
            framing,
            framing_refusal: refusal,
            body_read: framing == Framing::None,
            continued: false,
            status: None,
            bytes: 0,
            failed: None,
            close,
            started: Instant::now(),
            request,
            user: None,
            shown: None,
        }
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.conn.addr
    }

    /// The client's address: the peer's, or, when the peer is a proxy
    /// trusted with `--trusted-proxy`, the nearest address in
    /// `X-Forwarded-For` that is not one.
    pub fn client_ip(&self) -> std::net::IpAddr {
        let peer = self.conn.addr.ip();
        let trusted = &self.conn.shared.settings.trusted_proxies;
        if !trusted.contains(&peer) {
            return peer;
        }
        self.request
            .headers_named("X-Forwarded-For")
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
            .find(|ip| !trusted.contains(ip))
            .unwrap_or(peer)
    }

    /// The client as the access log shows it: the peer, or the client
    /// behind a trusted proxy with the proxy after it (`203.0.113.7 via
    /// 127.0.0.1:51234`), or a mux's client (`203.0.113.7 via mux`).
    fn shown_peer(&self) -> String {
        if let Some(shown) = &self.shown {
            return shown.clone();
        }
        let peer = self.conn.addr;
        let secret = &self.conn.shared.settings.mux_secret;
        if peer.ip().is_loopback()
            && !secret.is_empty()
            && self.request.header("X-Ssed-Mux") == Some(secret.as_str())
        {
            // One address, put there by this server's own mux.
            if let Some(ip) = self
                .request
                .header("X-Forwarded-For")
                .and_then(|a| a.trim().parse::<std::net::IpAddr>().ok())
            {
                return format!("{ip} via mux");
            }
        }
        match self.client_ip() {
            ip if ip == peer.ip() => peer.to_string(),
            ip => format!("{ip} via {peer}"),
        }
    }

    /// Says who made the request (a signed token's `sub`), for the access
    /// log.
    pub fn set_user(&mut self, user: &str) {
        self.user = Some(user.to_string());
    }

    /// The doorbell a stream on this connection sleeps on; rung at shutdown.
    pub fn bell(&self) -> &Arc<Doorbell> {
        &self.conn.peer.bell
    }

    /// Closes the connection after this answer, as for a refusal that asks
    /// the client to come back later: its thread is better freed now.
    pub fn close_after(&mut self) {
        self.close = true;
    }

    /// Reads the request's body, at most `limit` bytes (`413` past it,
    /// refused by its `Content-Length` before reading anything). A body that
    /// ends early, stalls for the header timeout, or is badly chunked is an
    /// error, and the connection closes after the answer. Sends
    /// `100 Continue` first when the client waits for it.
    pub fn read_body(&mut self, limit: usize) -> Result<Vec<u8>, Refusal> {
        if self.body_read {
            return Ok(Vec::new());
        }
        self.body_read = true;
        let result = match self.framing {
            Framing::None => Ok(Vec::new()),
            Framing::Length(n) if n > limit as u64 => Err(too_large(limit)),
            Framing::Length(n) => self.read_length(n as usize),
            Framing::Chunked => self.read_chunked(limit),
        };
        if result.is_err() {
            self.close = true;
            self.conn.unread_input = true;
        }
        result
    }

    fn read_length(&mut self, n: usize) -> Result<Vec<u8>, Refusal> {
        let buf = &mut self.conn.buf;
        let mut body: Vec<u8> = buf.drain(..n.min(buf.len())).collect();
        while body.len() < n {
            self.send_continue()?;
            let got = self.read_more()?;
            let buf = &mut self.conn.buf;
            let take = (n - body.len()).min(buf.len());
            body.extend(buf.drain(..take));
            if got == 0 {
                return Err(Refusal::new(
                    400,
                    format!("the body ended after {} of its {n} bytes", body.len()),
                ));
            }
        }
        Ok(body)
    }

    fn read_chunked(&mut self, limit: usize) -> Result<Vec<u8>, Refusal> {
        let mut decoder = http1::Chunked::new(limit as u64);
        let mut body = Vec::new();
        loop {
            let used = decoder
                .feed(&self.conn.buf, &mut body)
                .map_err(|e| match e {
                    http1::ChunkError::TooLarge => too_large(limit),
                    http1::ChunkError::Malformed(why) => Refusal::new(400, why),
                })?;
            self.conn.buf.drain(..used);
            if decoder.done() {
                return Ok(body);
            }
            self.send_continue()?;
            if self.read_more()? == 0 {
                return Err(Refusal::new(
                    400,
                    "the chunked body ended before its last chunk",
                ));
            }
        }
    }

    /// Reads more of the body into the connection's buffer; 0 at its end.
    fn read_more(&mut self) -> Result<usize, Refusal> {
        let timeout = self.conn.shared.settings.header_timeout;
        self.conn.fill(timeout).map_err(|e| {
            if is_timeout(&e) {
                Refusal::new(
                    408,
                    format!(
                        "the body stalled for {} s (--header-timeout)",
                        timeout.as_secs_f64()
                    ),
                )
            } else {
                Refusal::new(400, format!("reading the body failed: {e}"))
            }
        })
    }

    fn send_continue(&mut self) -> Result<(), Refusal> {
        if self.continued || !self.request.expects_continue() {
            return Ok(());
        }
        self.continued = true;
        self.conn
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|e| Refusal::new(400, format!("the client left: {e}")))
    }

    /// Before an answer: a body that was not read means the connection
    /// cannot be reused (where would the next request start?).
    fn before_answer(&mut self) -> bool {
        if self.status.is_some() {
            log::internal("a request was answered twice");
            return false;
        }
        if !self.body_read {
            self.close = true;
            self.conn.unread_input = true;
        }
        if self.conn.stopping() {
            self.close = true;
        }
        true
    }

    /// Sends `res` with its `Content-Length` (for `HEAD`, the head alone).
    pub fn respond(&mut self, res: Response) {
        if !self.before_answer() {
            return;
        }
        self.status = Some(res.status);
        let no_body = matches!(res.status, 100..=199 | 204 | 304);
        let len = res.body.len().to_string();
        let mut fields: Vec<(&str, &str)> =
            res.fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if !no_body {
            fields.push(("Content-Length", &len));
        }
        self.connection_field(&mut fields);
        let (mut bytes, dropped) = http1::response_head(res.status, &fields);
        if let Err(why) = dropped {
            log::internal(&why);
        }
        if !no_body && self.request.method != "HEAD" {
            bytes.extend_from_slice(&res.body);
        }
        self.bytes += bytes.len() as u64;
        if self.conn.write_all(&bytes).is_err() {
            self.close = true;
        }
    }

    fn connection_field(&self, fields: &mut Vec<(&str, &str)>) {
        if self.close {
            fields.push(("Connection", "close"));
        } else if self.request.version == Version::Http10 {
            fields.push(("Connection", "keep-alive"));
        }
    }

    /// Answers `200` with `fields`, for a body of unknown length: chunked
    /// for HTTP/1.1 (the [`StreamBody`] frames the chunks), ended by closing
    /// for HTTP/1.0. Returns whether a body should follow: not for `HEAD`
    /// (the head is the whole answer), nor when the head could not be
    /// written.
    pub fn start_stream(&mut self, fields: &[(&str, &str)]) -> bool {
        if !self.before_answer() {
            return false;
        }
        self.status = Some(200);
        let chunked = self.request.version == Version::Http11;
        let head_only = self.request.method == "HEAD";
        if !chunked && !head_only {
            self.close = true;
        }
        let mut all = fields.to_vec();
        if chunked {
            all.push(("Transfer-Encoding", "chunked"));
        }
        self.connection_field(&mut all);
        let (head, dropped) = http1::response_head(200, &all);
        if let Err(why) = dropped {
            log::internal(&why);
        }
        self.bytes += head.len() as u64;
        if self.conn.write_all(&head).is_err() {
            self.close = true;
            return false;
        }
        !head_only
    }

    /// Writes a stream's body (see [`StreamBody`]); the stream to park, if
    /// it is caught up and may wait without a thread.
    fn run_stream(&mut self, body: Box<dyn StreamBody>, id: u64) -> Option<Parked> {
        if self.status != Some(200) || self.request.method == "HEAD" {
            return None;
        }
        // A stream lives long: keep no more buffer than pipelined bytes
        // need, and no stack pages that routing touched.
        self.conn.buf.shrink_to_fit();
        if self.conn.shared.settings.access_log {
            self.shown = Some(self.shown_peer());
        }
        self.request.headers = Vec::new();
        // Refused, the pages stay resident: the stream runs as well.
        let _ = crate::sys::stack::release_unused_stack();
        let delimit = if self.request.version == Version::Http11 {
            Delimit::Chunked
        } else {
            Delimit::Close
        };
        let wire = Arc::new(SocketWire::new(Arc::clone(&self.conn.peer)));
        let shared = Arc::clone(&self.conn.shared);
        let parkable = body.run(
            Arc::clone(&wire) as Arc<dyn super::Wire>,
            delimit,
            &self.conn.peer.bell,
            shared.crew.flag(),
        );
        if let Some(body) = parkable {
            let version = self.request.version.as_str();
            let access = shared.settings.access_log.then(|| {
                (
                    self.shown_peer(),
                    std::mem::take(&mut self.request.method),
                    std::mem::take(&mut self.request.target),
                    version,
                    self.bytes,
                    self.started,
                    self.user.take(),
                )
            });
            return Some(Parked::new(
                id,
                Arc::clone(&self.conn.peer),
                wire,
                body,
                access,
            ));
        }
        self.bytes += wire.written();
        self.failed = wire.failure();
        None
    }

    /// Ends the exchange; whether the connection may serve another request.
    fn finish(mut self) -> bool {
        if let Some(kind) = self.failed {
            self.close = true;
            // A client that stopped reading gets a reset: its unread data
            // is dropped at once instead of waiting in the kernel for it.
            self.conn.abort |= matches!(kind, io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut);
        }
        if self.conn.shared.settings.access_log && !self.request.method.is_empty() {
            log::access(
                &log::Access {
                    peer: &self.shown_peer(),
                    method: &self.request.method,
                    target: &self.request.target,
                    version: self.request.version.as_str(),
                    status: self.status.unwrap_or(0),
                    bytes: self.bytes,
                    secs: self.started.elapsed().as_secs_f64(),
                    user: self.user.as_deref(),
                }
                .line(),
            );
        }
        !self.close && !self.conn.stopping()
    }
}

fn too_large(limit: usize) -> Refusal {
    Refusal::new(413, format!("the body is larger than {limit} bytes"))
}
