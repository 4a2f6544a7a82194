//! `/mux`: several streams over one connection, so that the tabs of a
//! browser (six connections per origin over HTTP/1.1) all stay live.
//!
//! `GET /mux` opens a mux: an event stream whose first event, `mux`, names
//! it with an unguessable id. `POST /mux/{id}` with `{"open": KEY, "url":
//! PATH}` opens the stream at PATH for it; `{"close": KEY}` closes one.
//! Each stream a mux carries is an ordinary request to this server, made
//! on a loopback connection with the credentials (`Authorization`,
//! `Cookie`) of the `POST` that asked for it: the same routes, tokens,
//! caps, replay and refusals as a stream of its own. The `POST` answers
//! with what the stream answered (its status and error), or `200
//! {"opened": KEY}`; from then on the mux's thread reads the stream (one
//! epoll set for all of them), and writes each event as `event: ev`,
//! `data: {"k": KEY, "event": .., "data": .., "id": ..}`; a stream that
//! ends is `event: end`, `data: {"k": KEY, "retry": ms}`. A mux holds one
//! thread for all its streams, as a demo's script does, and takes a place
//! under `--max-demo-streams`.

use super::App;
use crate::client::http;
use crate::conn::{self, Delimit, Exchange, Parkable, StreamBody, Wire};
use crate::http1::{self, Response};
use crate::log;
use crate::sse::{self, Event, Item};
use crate::stream::{Format, Framer, Framing, Slot};
use crate::sync::{lock, Doorbell};
use crate::sys::epoll::{Epoll, EventFd, Ready};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Streams one mux carries at most.
pub const MAX_MUX_STREAMS: usize = 64;

/// The longest URL a mux opens, and the longest key.
const MAX_URL: usize = 2048;
const MAX_KEY: usize = 64;

/// The largest control body (`{"open": .., "url": .., "last_event_id": ..}`).
const MAX_CONTROL_BODY: usize = 8 * 1024;

/// How long a control request waits for its stream's head; a stream's
/// head is written before anything it owes, so this is only a bound.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest refusal body read from a stream.
const MAX_REFUSAL_BODY: usize = 4 * 1024;

/// Bytes read from one stream before the mux turns to the others.
const READ_ROUND: usize = 64 * 1024;

/// The open muxes, by id, and where their streams are asked for.
pub struct Muxes {
    open: Mutex<HashMap<String, Arc<Control>>>,
    /// This server's own listener, reached from inside.
    target: SocketAddr,
    /// Sent with each stream's request: the connection layer then shows
    /// the mux's client in the access log, not the loopback peer.
    secret: String,
    /// Streams all muxes carry, and the most they may: each takes two
    /// descriptors (the mux's end and the server's), and only the
    /// server's counts as a connection.
    carried: std::sync::atomic::AtomicUsize,
    max_carried: usize,
}

/// What a control request hands a mux's thread.
enum Op {
    Open {
        key: String,
        sock: TcpStream,
        /// Body bytes read with the head.
        first: Vec<u8>,
    },
    Close {
        key: String,
    },
}

/// A mux as the control requests reach it.
struct Control {
    ops: Mutex<Vec<Op>>,
    wake: EventFd,
    /// Its streams' places, open or on their way.
    places: Mutex<Places>,
}

/// A mux's count of streams under [`MAX_MUX_STREAMS`] (and their places
/// under the muxes' together), and whether it ended: a place is given
/// back once, by whoever holds it last.
#[derive(Default)]
struct Places {
    taken: usize,
    closed: bool,
}

impl Muxes {
    /// Muxes whose streams are asked of the server listening at
    /// `listening`, carrying a quarter of `max_connections` at most.
    pub fn new(listening: SocketAddr, max_connections: usize) -> io::Result<Muxes> {
        let ip = match listening.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Ok(Muxes {
            open: Mutex::default(),
            target: SocketAddr::new(ip, listening.port()),
            secret: random_hex()?,
            carried: std::sync::atomic::AtomicUsize::new(0),
            max_carried: (max_connections / 4).max(1),
        })
    }

    /// Takes a place for a carried stream, if there is one.
    fn reserve(&self) -> bool {
        self.carried
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_carried).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        let _ = self
            .carried
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// The value of `X-Ssed-Mux` that marks a mux's own requests.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    fn get(&self, id: &str) -> Option<Arc<Control>> {
        lock(&self.open).get(id).cloned()
    }
}

/// 128 random bits from the kernel, as hex: an id nobody can guess.
fn random_hex() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    crate::sys::random::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl App {
    /// `GET /mux`: a new mux, its head written; its body, to run.
    pub(super) fn open_mux(
        &self,
        ex: &mut Exchange<'_>,
        fields: &[(&str, &str)],
    ) -> Result<Option<Box<dyn StreamBody>>, Response> {
        if ex.request().method == "HEAD" {
            ex.start_stream(fields);
            return Ok(None);
        }
        if let Some(refused) = self.stream_refusal(ex) {
            return Err(refused);
        }
        let slot = self.place(
            ex,
            &self.demo_streams,
            "--max-demo-streams: a mux takes one",
        )?;
        let cannot = |e: io::Error| {
            Response::error(503, &format!("cannot open a mux: {e}"))
                .with("Retry-After", conn::retry_after())
        };
        let wake = EventFd::new().map_err(cannot)?;
        let id = random_hex().map_err(cannot)?;
        let control = Arc::new(Control {
            ops: Mutex::default(),
            wake,
            places: Mutex::default(),
        });
        lock(&self.muxes.open).insert(id.clone(), Arc::clone(&control));
        let body = Box::new(MuxBody {
            id,
            control,
            muxes: Arc::clone(&self.muxes),
            heartbeat: self.config.heartbeat,
            retry_ms: self.config.retry_ms,
            stop_retry_ms: self.config.stop_spread.as_millis() as u64,
            max_event: self.config.max_event_bytes,
            slot,
        });
        // Without a head, the body is dropped here, and the mux with it.
        Ok(ex
            .start_stream(fields)
            .then_some(body as Box<dyn StreamBody>))
    }

    /// `POST /mux/{id}`: opens or closes one of the mux's streams.
    pub(super) fn control_mux(&self, ex: &mut Exchange<'_>, id: &str) -> Response {
        let Some(control) = self.muxes.get(id) else {
            return gone();
        };
        let body = match ex.read_body(MAX_CONTROL_BODY) {
            Ok(body) => body,
            Err(r) if r.status == 413 => {
                return Response::error(
                    413,
                    &format!("a mux request is at most {MAX_CONTROL_BODY} bytes"),
                )
            }
            Err(r) => return r.into(),
        };
        let asked = match parse_control(&body) {
            Ok(asked) => asked,
            Err(why) => return Response::error(400, &why),
        };
        match asked {
            Asked::Close { key } => {
                control.push(Op::Close { key: key.clone() });
                Response::json(200, &json!({ "closed": key }))
            }
            Asked::Open {
                key,
                url,
                last_event_id,
            } => {
                {
                    let mut places = lock(&control.places);
                    if places.closed {
                        return gone();
                    }
                    if places.taken >= MAX_MUX_STREAMS {
                        return Response::error(
                            429,
                            &format!("a mux carries at most {MAX_MUX_STREAMS} streams; close one"),
                        );
                    }
                    if !self.muxes.reserve() {
                        let why = format!(
                            "the muxes carry {} streams, a quarter of --max-connections: open this one on its own, or try again later",
                            self.muxes.max_carried
                        );
                        return Response::error(503, &why).with("Retry-After", conn::retry_after());
                    }
                    places.taken += 1;
                }
                let res = self.mux_open(ex, &control, key, &url, last_event_id.as_deref());
                if res.status != 200 {
                    // Unless the mux ended meanwhile and gave it back.
                    let mut places = lock(&control.places);
                    if !places.closed {
                        places.taken = places.taken.saturating_sub(1);
                        self.muxes.release();
                    }
                }
                res
            }
        }
    }

    /// Asks this server for the stream at `url`, as the control request's
    /// client, and hands it to the mux if it is one.
    fn mux_open(
        &self,
        ex: &Exchange<'_>,
        control: &Control,
        key: String,
        url: &str,
        last_event_id: Option<&str>,
    ) -> Response {
        let req = ex.request();
        let mut head = format!(
            "GET {url} HTTP/1.0\r\nHost: {}\r\nAccept: text/event-stream\r\nUser-Agent: ssed-mux\r\nX-Ssed-Mux: {}\r\nX-Forwarded-For: {}\r\n",
            req.header("Host").unwrap_or("localhost"),
            self.muxes.secret,
            ex.client_ip(),
        );
        for name in ["Authorization", "Cookie", "Origin"] {
            if let Some(value) = req.header(name) {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        if let Some(id) = last_event_id {
            head.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        head.push_str("\r\n");
        let unavailable = |e: io::Error| {
            Response::error(503, &format!("the mux could not reach this server: {e}"))
                .with("Retry-After", conn::retry_after())
        };
        let mut sock = match TcpStream::connect_timeout(&self.muxes.target, HEAD_TIMEOUT) {
            Ok(sock) => sock,
            Err(e) => return unavailable(e),
        };
        let asked = sock
            .set_read_timeout(Some(HEAD_TIMEOUT))
            .and_then(|()| sock.set_write_timeout(Some(HEAD_TIMEOUT)))
            .and_then(|()| sock.write_all(head.as_bytes()));
        if let Err(e) = asked {
            return unavailable(e);
        }
        let (answer, rest) = match read_answer(&mut sock) {
            Ok(answer) => answer,
            Err(e) => return unavailable(e),
        };
        if answer.status != 200 {
            let mut res = Response::new(answer.status, &answer.content_type, answer.body);
            if let Some(after) = answer.retry_after {
                res = res.with("Retry-After", after);
            }
            return res;
        }
        if !answer.content_type.starts_with("text/event-stream") {
            return Response::error(
                400,
                &format!(
                    "not an event stream: {} answers {}",
                    url.split('?').next().unwrap_or(url),
                    answer.content_type
                ),
            );
        }
        if sock.set_nonblocking(true).is_err() {
            return unavailable(io::Error::other("the stream's socket"));
        }
        control.push(Op::Open {
            key: key.clone(),
            sock,
            first: rest,
        });
        Response::json(200, &json!({ "opened": key }))
    }
}

/// The answer for a mux this server does not know (any more).
fn gone() -> Response {
    Response::error(410, "no such mux: it ended; open /mux again")
}

impl Control {
    fn push(&self, op: Op) {
        lock(&self.ops).push(op);
        if let Err(e) = self.wake.ring() {
            log::internal(&format!("waking a mux failed: {e}"));
        }
    }
}

/// What a control body asks.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Open {
        key: String,
        url: String,
        last_event_id: Option<String>,
    },
    Close {
        key: String,
    },
}

/// Reads a control body: `{"open": KEY, "url": PATH, "last_event_id": ID}`
/// or `{"close": KEY}`, every value checked.
fn parse_control(body: &[u8]) -> Result<Asked, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err(r#"the body must be {"open": KEY, "url": PATH} or {"close": KEY}"#.into());
    };
    let text = |name: &str| -> Result<Option<String>, String> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{name} must be a string")),
        }
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !["open", "close", "url", "last_event_id"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown field {:?}; a mux request has open, url and last_event_id, or close",
            unknown.chars().take(64).collect::<String>()
        ));
    }
    match (text("open")?, text("close")?) {
        (Some(key), None) => {
            check_key(&key)?;
            let url = text("url")?.ok_or("open needs a url: the stream's path, as /events/news")?;
            check_url(&url)?;
            let last_event_id = text("last_event_id")?;
            if let Some(id) = &last_event_id {
                sse::check_field("last_event_id", id)?;
                if id.len() > sse::MAX_FIELD {
                    return Err(format!(
                        "last_event_id is longer than {} bytes",
                        sse::MAX_FIELD
                    ));
                }
            }
            Ok(Asked::Open {
                key,
                url,
                last_event_id: last_event_id.filter(|id| !id.is_empty()),
            })
        }
        (None, Some(key)) => {
            check_key(&key)?;
            if map.len() > 1 {
                return Err("close takes no other field".into());
            }
            Ok(Asked::Close { key })
        }
        _ => Err(r#"the body must be {"open": KEY, "url": PATH} or {"close": KEY}"#.into()),
    }
}

fn check_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a key is 1 to {MAX_KEY} letters, digits and - _ . :"
        ))
    }
}

/// A stream's path and query on this server: `/`, then visible ASCII
/// (percent-encoded otherwise), no other mux, and in its own format (the
/// mux reads event streams).
fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL {
        return Err(format!("the url is longer than {MAX_URL} bytes"));
    }
    if !url.starts_with('/') || url.starts_with("//") {
        return Err("the url is a path on this server, as /events/news".into());
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) || url.contains('#') {
        return Err("the url holds a space, a control character, a fragment or non-ASCII: percent-encode it".into());
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    if path == "/mux" || path.starts_with("/mux/") {
        return Err("a mux does not carry a mux".into());
    }
    let params = http1::parse_query(query)?;
    if let Some((_, f)) = params.iter().find(|(n, _)| n == "format") {
        if f != "sse" {
            return Err(format!("a mux carries event streams: leave out format={f}"));
        }
    }
    Ok(())
}

/// A stream's response head, and for a refusal its body.
struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    body: Vec<u8>,
}

/// Reads a response head (the client's reader: bounded in size, and in
/// time by the socket's timeout) and a refusal's body within
/// [`MAX_REFUSAL_BODY`]; also the body bytes read after the head.
fn read_answer(sock: &mut TcpStream) -> io::Result<(Answer, Vec<u8>)> {
    let (head, rest) = http::read_head(sock, Vec::new())?;
    let field = |name: &str| http1::field(&head.headers, name).map(str::to_string);
    let mut answer = Answer {
        status: head.status,
        content_type: field("Content-Type").unwrap_or_default(),
        retry_after: field("Retry-After"),
        body: Vec::new(),
    };
    if answer.status == 200 {
        return Ok((answer, rest));
    }
    // A refusal: its body, whole, within the bound.
    let want = field("Content-Length")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REFUSAL_BODY);
    let mut body = rest;
    let mut chunk = [0u8; 4096];
    while body.len() < want {
        let n = sock.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(want);
    answer.body = body;
    Ok((answer, Vec::new()))
}

/// One stream a mux carries.
struct Carried {
    key: String,
    sock: TcpStream,
    decoder: sse::Decoder,
}

/// A mux's body: its thread reads its streams and writes their events.
struct MuxBody {
    id: String,
    control: Arc<Control>,
    muxes: Arc<Muxes>,
    heartbeat: Duration,
    retry_ms: u64,
    stop_retry_ms: u64,
    max_event: usize,
    slot: Slot,
}

/// The tokens of the doorbell and of the client's own socket in a mux's
/// epoll set; streams count from 2.
const WAKE: u64 = 0;
const CLIENT: u64 = 1;

impl MuxBody {
    fn serve(
        &mut self,
        wire: &dyn Wire,
        framing: Framing,
        stopping: &AtomicBool,
    ) -> io::Result<()> {
        let mut framer =
            Framer::new(framing, Format::Sse, self.retry_ms).with_stop_retry(self.stop_retry_ms);
        let write = |framer: &mut Framer| -> io::Result<()> {
            let written = wire.write_all(&[IoSlice::new(framer.frame())]);
            framer.clear();
            written
        };
        framer.retry();
        let hello = json!({ "id": self.id, "max_streams": MAX_MUX_STREAMS });
        framer.event(&Event::named("mux", hello.to_string()));
        write(&mut framer)?;
        let epoll = Epoll::new()?;
        epoll.add_readable(self.control.wake.raw(), WAKE)?;
        // The client's hang-up (its tabs closed) lets the streams go at once.
        if let Some(fd) = wire.hang_up_fd() {
            epoll.add(fd, CLIENT, false)?;
        }
        let mut carried: HashMap<u64, Carried> = HashMap::new();
        let mut next_token = CLIENT + 1;
        let mut ready: Vec<Ready> = Vec::new();
        let mut items: Vec<Item> = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        let mut last_write = Instant::now();
        while !stopping.load(Ordering::Acquire) {
            let quiet = self.heartbeat.saturating_sub(last_write.elapsed());
            epoll.wait(&mut ready, quiet.max(Duration::from_millis(1)))?;
            for r in ready.drain(..) {
                if r.token == CLIENT {
                    // At shutdown the transport shuts the socket for
                    // reading, which looks the same: the last retry is
                    // still written then.
                    if r.hung_up && !stopping.load(Ordering::Acquire) {
                        return Err(io::ErrorKind::ConnectionAborted.into());
                    }
                    continue;
                }
                if r.token == WAKE {
                    let _ = self.control.wake.clear();
                    let ops = std::mem::take(&mut *lock(&self.control.ops));
                    for op in ops {
                        match op {
                            Op::Open { key, sock, first } => {
                                // A key opened again replaces its stream.
                                if let Some(old) = find(&carried, &key) {
                                    self.drop_carried(&epoll, &mut carried, old);
                                }
                                let token = next_token;
                                next_token += 1;
                                let mut c = Carried {
                                    key,
                                    decoder: sse::Decoder::with_limits(sse::Limits::for_data(
                                        self.max_event,
                                    )),
                                    sock,
                                };
                                if epoll.add_readable(c.sock.as_raw_fd(), token).is_err() {
                                    end_event(&mut framer, &c);
                                    self.release_one();
                                    continue;
                                }
                                let ok = feed(&mut c, &first, &mut items, &mut framer);
                                if ok {
                                    carried.insert(token, c);
                                } else {
                                    let _ = epoll.remove(c.sock.as_raw_fd());
                                    end_event(&mut framer, &c);
                                    self.release_one();
                                }
                            }
                            Op::Close { key } => {
                                if let Some(token) = find(&carried, &key) {
                                    self.drop_carried(&epoll, &mut carried, token);
                                }
                            }
                        }
                    }
                    continue;
                }
                let Some(c) = carried.get_mut(&r.token) else {
                    continue;
                };
                let mut open = true;
                let mut round = 0;
                while round < READ_ROUND {
                    match c.sock.read(&mut chunk) {
                        Ok(0) => {
                            open = false;
                            break;
                        }
                        Ok(n) => {
                            round += n;
                            if !feed(c, &chunk[..n], &mut items, &mut framer) {
                                open = false;
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            open = false;
                            break;
                        }
                    }
                }
                if !open {
                    end_event(&mut framer, c);
                    self.drop_carried(&epoll, &mut carried, r.token);
                }
            }
            if !framer.is_empty() {
                write(&mut framer)?;
                last_write = Instant::now();
            } else if last_write.elapsed() >= self.heartbeat {
                framer.heartbeat();
                write(&mut framer)?;
                last_write = Instant::now();
            }
        }
        // Stopping: a last retry, spread, so that browsers come back apart.
        if framer.spread_retry() {
            write(&mut framer)?;
        }
        Ok(())
    }

    fn drop_carried(&self, epoll: &Epoll, carried: &mut HashMap<u64, Carried>, token: u64) {
        if let Some(c) = carried.remove(&token) {
            let _ = epoll.remove(c.sock.as_raw_fd());
            self.release_one();
        }
    }

    fn release_one(&self) {
        let mut places = lock(&self.control.places);
        places.taken = places.taken.saturating_sub(1);
        self.muxes.release();
    }
}

fn find(carried: &HashMap<u64, Carried>, key: &str) -> Option<u64> {
    carried
        .iter()
        .find(|(_, c)| c.key == key)
        .map(|(token, _)| *token)
}

/// Decodes `bytes` of a carried stream into the mux's events; false when
/// the stream broke a limit (it is then ended).
fn feed(c: &mut Carried, bytes: &[u8], items: &mut Vec<Item>, framer: &mut Framer) -> bool {
    let fine = c.decoder.feed(bytes, items).is_ok();
    for item in items.drain(..) {
        if let Item::Event(m) = item {
            let carried = json!({
                "k": c.key,
                "event": m.event,
                "data": m.data,
                "id": m.id,
            });
            framer.event(&Event::named("ev", carried.to_string()));
        }
    }
    fine
}

/// The mux's word that a stream ended, with the reconnection time it set.
fn end_event(framer: &mut Framer, c: &Carried) {
    let ended = json!({ "k": c.key, "retry": c.decoder.reconnection_time() });
    framer.event(&Event::named("end", ended.to_string()));
}

impl StreamBody for MuxBody {
    fn run(
        mut self: Box<Self>,
        wire: Arc<dyn Wire>,
        delimit: Delimit,
        bell: &Arc<Doorbell>,
        stopping: &AtomicBool,
    ) -> Option<Box<dyn Parkable>> {
        // Shutdown rings the connection's bell: it wakes the mux's epoll.
        let control = Arc::clone(&self.control);
        bell.forward(move || {
            let _ = control.wake.ring();
        });
        let framing = Framing::of(delimit);
        let result = self.serve(&*wire, framing, stopping);
        if result.is_ok() {
            let _ = wire.write_all(&[IoSlice::new(framing.end())]);
        }
        self.slot.counters().ended(&result);
        None
    }
}

impl Drop for MuxBody {
    fn drop(&mut self) {
        lock(&self.muxes.open).remove(&self.id);
        // The streams it still carried (or that were on their way to it)
        // give their places back.
        let mut places = lock(&self.control.places);
        places.closed = true;
        for _ in 0..std::mem::take(&mut places.taken) {
            self.muxes.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bodies() {
        let open =
            parse_control(br#"{"open":"t1:2","url":"/events/a?last=3","last_event_id":"9"}"#);
        assert_eq!(
            open,
            Ok(Asked::Open {
                key: "t1:2".into(),
                url: "/events/a?last=3".into(),
                last_event_id: Some("9".into()),
            })
        );
        assert_eq!(
            parse_control(br#"{"close":"k"}"#),
            Ok(Asked::Close { key: "k".into() })
        );
        for (body, why) in [
            (&b"{"[..], "not JSON"),
            (br#"[1]"#, "must be"),
            (br#"{"open":"k"}"#, "needs a url"),
            (br#"{"open":"k","url":"http://x/events/a"}"#, "a path"),
            (br#"{"open":"k","url":"//x/a"}"#, "a path"),
            (br#"{"open":"k","url":"/events/a b"}"#, "percent-encode"),
            (br#"{"open":"k","url":"/mux"}"#, "does not carry"),
            (
                br#"{"open":"k","url":"/events/a?format=ndjson"}"#,
                "format=ndjson",
            ),
            (br#"{"open":"k k","url":"/sse"}"#, "a key"),
            (br#"{"open":"","url":"/sse"}"#, "a key"),
            (
                br#"{"open":"k","url":"/sse","last_event_id":"a\nb"}"#,
                "last_event_id",
            ),
            (br#"{"open":"k","url":"/sse","lst":"1"}"#, "unknown field"),
            (br#"{"open":"k","close":"k"}"#, "must be"),
            (br#"{"close":"k","url":"/sse"}"#, "no other field"),
            (br#"{"open":1,"url":"/sse"}"#, "must be a string"),
        ] {
            let got = parse_control(body);
            assert!(
                matches!(&got, Err(e) if e.contains(why)),
                "{}: {got:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn ids_are_random_hex() {
        let (a, b) = (random_hex().unwrap(), random_hex().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_target_is_reachable_from_inside() {
        let any: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        assert_eq!(
            Muxes::new(any, 100).unwrap().target.to_string(),
            "127.0.0.1:8000"
        );
        let v6: SocketAddr = "[::]:8000".parse().unwrap();
        assert_eq!(
            Muxes::new(v6, 100).unwrap().target.to_string(),
            "[::1]:8000"
        );
        let one: SocketAddr = "192.0.2.1:80".parse().unwrap();
        assert_eq!(Muxes::new(one, 100).unwrap().target, one);
    }

    #[test]
    fn the_muxes_together_carry_a_quarter_of_the_connections() {
        let m = Muxes::new("127.0.0.1:1".parse().unwrap(), 12).unwrap();
        assert!((0..3).all(|_| m.reserve()));
        assert!(!m.reserve());
        m.release();
        assert!(m.reserve());
    }
}
