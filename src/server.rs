//! The HTTP server: the only module that touches tiny_http.
//!
//! One dispatcher thread takes requests from tiny_http and answers short ones
//! itself (pages, health, publishes whose body tiny_http already read). A
//! stream gets a thread of its own from [`Streams`]: the dispatcher writes
//! nothing to it. A publish with a body too large for tiny_http to have read
//! ahead is read on a short-lived thread, so that a slow sender cannot stall
//! the dispatcher.
//!
//! Streams are written through `Request::into_writer()`: ssed writes the
//! status line, headers and chunk framing itself and flushes every event, and
//! learns from a failed write that the client left (see
//! `shared/notes/tiny_http.md` for why `respond()` cannot do this).

use crate::auth::{self, Denied, Presented};
use crate::config::Config;
use crate::demos::{Clock, Demos, JsonLines, Ticker, Training};
use crate::hub::{lock, Hub, Retention, Topic, TopicError, Waker};
use crate::routes::{self, Feed, Post, Route};
use crate::sse::Event;
use crate::stream::{pump, Format, Refused, Scripted, Sink, Source, Stream, Streams, Subscribed};
use crate::www::Pages;
use crate::{metrics, publish, pyjson, sys};
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use tiny_http::{HTTPVersion, Header, Request, Response};

/// tiny_http reads bodies up to this size before handing over the request;
/// larger ones are read from the socket by whoever reads the body.
const EAGER_BODY: usize = 1024;

/// Publishes with a large body being read at once; more get 503. Each holds
/// a thread for as long as its sender takes.
const MAX_BODY_READERS: usize = 64;

/// Pending connections the kernel queues for us. A burst of connects larger
/// than the backlog loses SYNs, and those clients retry only after 1 to 31 s.
const BACKLOG: i32 = 4096;

/// The hub topic of `/sse`, `/messages` and `/send_rest`.
pub const MESSAGES_TOPIC: &str = "messages";

/// Pause before listening again after tiny_http's accept loop gave up (it
/// does on any accept error, such as running out of file descriptors).
const RELISTEN_PAUSE: Duration = Duration::from_millis(100);

/// How long a stream waits to make its nudge connection (see [`nudge_pool`]).
const NUDGE_TIMEOUT: Duration = Duration::from_millis(500);

/// What clients are told to wait before retrying a refused stream.
const RETRY_AFTER_SECS: u32 = 5;

/// A running server. Dropping it shuts it down.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    demos: Demos,
    dispatcher: Option<JoinHandle<()>>,
}

struct Shared {
    config: Config,
    pages: Pages,
    streams: Arc<Streams>,
    body_readers: Arc<Streams>,
    stats: Arc<Topic>,
    stocks: Arc<Topic>,
    hub: Arc<Hub>,
    /// The bound socket, kept to start tiny_http again on it.
    listener: TcpListener,
    /// Where this server can reach itself (loopback if bound to all addresses).
    own_addr: SocketAddr,
    http: Mutex<Arc<tiny_http::Server>>,
    stopping: AtomicBool,
    /// Rung at shutdown, to cut short the pause before listening again.
    wake: Waker,
}

impl Server {
    /// Binds `config.addr` and starts serving. Errors name the address or
    /// the directory they are about.
    pub fn start(config: Config) -> io::Result<Server> {
        let pages = match &config.www {
            Some(dir) => Pages::dir(dir)?,
            None => Pages::Embedded,
        };
        let listener = listen(&config)?;
        let addr = listener.local_addr()?;
        let http = tiny_http_on(&listener)?;
        // Raised whether or not --max-streams is given: every stream needs
        // descriptors, and the soft limit is often 1024.
        let open_files = sys::raise_open_files_limit().unwrap_or(1024);
        let max_streams = config
            .max_streams
            .unwrap_or_else(|| sys::default_max_streams(open_files));
        let demos = Demos::start(&config.pace)?;
        let shared = Arc::new(Shared {
            pages,
            streams: Streams::new(max_streams),
            body_readers: Streams::new(MAX_BODY_READERS),
            stats: Arc::clone(&demos.stats),
            stocks: Arc::clone(&demos.stocks),
            hub: Arc::new(Hub::new(
                Retention {
                    history: config.history,
                    bytes: config.history_bytes,
                },
                config.max_topics,
            )),
            listener,
            own_addr: reachable(addr),
            http: Mutex::new(Arc::new(http)),
            stopping: AtomicBool::new(false),
            wake: Waker::default(),
            config,
        });
        let dispatcher = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("ssed-dispatch".into())
                .spawn(move || dispatch(&shared))?
        };
        Ok(Server {
            addr,
            shared,
            demos,
            dispatcher: Some(dispatcher),
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.shared.streams.open()
    }

    /// Blocks until the server stops (it stops only when shut down).
    pub fn wait(mut self) {
        if let Some(d) = self.dispatcher.take() {
            let _ = d.join();
        }
    }

    /// Stops accepting, ends every stream (with its last chunk) and joins
    /// every thread ssed started.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.wake.wake();
        lock(&self.shared.http).unblock();
        if let Some(d) = self.dispatcher.take() {
            let _ = d.join();
        }
        self.shared.streams.stop();
        self.shared.body_readers.stop();
        self.demos.stop();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn listen(config: &Config) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr = config
        .addr
        .to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {}: {e}", config.addr)))?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolves to no address", config.addr),
            )
        })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    // Accepted sockets inherit these on Linux: a write to a client that
    // stopped reading fails after the timeout instead of blocking forever,
    // events go out without Nagle's delay, and dead peers are found.
    socket.set_write_timeout(Some(config.write_timeout))?;
    socket.set_tcp_nodelay(true)?;
    socket.set_keepalive(true)?;
    socket.bind(&addr.into()).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => {
            io::Error::new(e.kind(), format!("address {addr} is already in use"))
        }
        _ => io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")),
    })?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// `addr`, or loopback in its place if it is the unspecified address.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Works around a lost wake-up in tiny_http 0.12's task pool.
///
/// When connections are accepted back to back, the pool can count a worker
/// as idle after it was already handed a task, and queue the next
/// connection with a notification nobody receives. The queued connection
/// waits until some pool thread finishes its task, and a pool thread that
/// serves a stream never does: under a burst of subscribers some were never
/// read at all. So every stream, once started, opens one connection to its
/// own server and closes it. tiny_http gives that connection a fresh pool
/// thread when none is idle, the thread is done at once, and then it takes
/// the next queued connection. That one becomes a stream and nudges in turn,
/// until the queue is empty. It costs one loopback connect per stream.
fn nudge_pool(own_addr: SocketAddr) {
    let _ = std::net::TcpStream::connect_timeout(&own_addr, NUDGE_TIMEOUT);
}

fn tiny_http_on(listener: &TcpListener) -> io::Result<tiny_http::Server> {
    tiny_http::Server::from_listener(listener.try_clone()?, None)
        .map_err(|e| io::Error::other(e.to_string()))
}

fn dispatch(shared: &Arc<Shared>) {
    loop {
        let http = Arc::clone(&lock(&shared.http));
        match http.recv() {
            Ok(rq) => handle(shared, rq),
            Err(_) if shared.stopping.load(Ordering::Acquire) => return,
            Err(e) => {
                // tiny_http's accept thread has ended; start another on the
                // same socket after a pause (the error may be a full fd table).
                eprintln!("ssed: accepting connections failed ({e}); listening again");
                shared.wake.wait(RELISTEN_PAUSE);
                if shared.stopping.load(Ordering::Acquire) {
                    return;
                }
                match tiny_http_on(&shared.listener) {
                    Ok(server) => *lock(&shared.http) = Arc::new(server),
                    Err(e) => eprintln!("ssed: cannot listen again: {e}"),
                }
            }
        }
    }
}

/// The request's `name` header, if present.
fn header<'r>(rq: &'r Request, name: &'static str) -> Option<&'r str> {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

fn handle(shared: &Arc<Shared>, rq: Request) {
    let url = rq.url().to_string();
    let (path, query) = routes::split_target(&url);
    let method = rq.method().as_str().to_string();
    let cors = Cors::of(&shared.config, header(&rq, "Origin"));
    let params = match routes::parse_query(query) {
        Ok(params) => params,
        Err(why) => return reply_error(rq, 400, &why, &cors),
    };
    let route = routes::route(&method, path);
    // Who may do this: publishers show the publish token in a header;
    // subscribers the subscribe token in a header, ?token= or a cookie.
    let needs = match &route {
        Route::Publish(_) | Route::PublishTopic(_) => {
            Some((shared.config.publish_token.as_deref(), false))
        }
        Route::Stream(Feed::Messages) | Route::Subscribe(_) | Route::Topics | Route::Metrics => {
            Some((shared.config.subscribe_token.as_deref(), true))
        }
        _ => None,
    };
    if let Some((required, anywhere)) = needs {
        let presented = Presented {
            authorization: header(&rq, "Authorization"),
            query: routes::param(&params, "token"),
            cookie: header(&rq, "Cookie"),
        };
        if let Err(denied) = auth::check(required, &presented, anywhere) {
            return unauthorized(rq, denied, &cors);
        }
    }
    match route {
        Route::Stream(feed) => match plan(shared, feed, &params, &rq) {
            Ok(plan) => open_stream(shared, rq, plan, feed == Feed::Json, &params, cors),
            Err(why) => reply_error(rq, 400, &why, &cors),
        },
        Route::Subscribe(topic) => match hub_plan(topic, &params, &rq) {
            Ok(plan) => open_stream(shared, rq, plan, false, &params, cors),
            Err(why) => reply_error(rq, 400, &why, &cors),
        },
        Route::Publish(post) => accept_publish(shared, rq, Target::Seed(post), params, cors),
        Route::PublishTopic(topic) => match routes::percent_decode(topic) {
            Some(topic) => accept_publish(shared, rq, Target::Topic(topic), params, cors),
            None => reply_error(
                rq,
                400,
                "the topic is not valid percent-encoded UTF-8",
                &cors,
            ),
        },
        Route::Topics => reply(rq, 200, "application/json", topics_json(&shared.hub), &cors),
        Route::Metrics => {
            let text = metrics::render(&shared.hub, &shared.streams).into_bytes();
            reply(
                rq,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
                &cors,
            )
        }
        Route::Health => reply(rq, 200, "text/plain; charset=utf-8", b"ok".to_vec(), &cors),
        Route::Preflight => preflight(rq, &cors),
        Route::NotAllowed(allow) => {
            let why = format!("{method} is not allowed on {path}; use {allow}");
            let mut res = error_response(405, &why, &cors);
            res.add_header(hdr("Allow", allow));
            let _ = rq.respond(res);
        }
        Route::File { path, allowed } => match shared.pages.get(path) {
            Some(_) if !allowed => {
                let why = format!("{method} is not allowed on a page; use GET");
                let mut res = error_response(405, &why, &cors);
                res.add_header(hdr("Allow", "GET, HEAD, OPTIONS"));
                let _ = rq.respond(res);
            }
            Some(page) => reply(rq, 200, page.content_type, page.body.into_owned(), &cors),
            None => reply_error(rq, 404, &format!("no such page or route: {path:?}"), &cors),
        },
    }
}

fn unauthorized(rq: Request, denied: Denied, cors: &Cors) {
    let (why, challenge) = match denied {
        Denied::Missing => ("a token is required", r#"Bearer realm="ssed""#),
        Denied::Wrong => (
            "the token is wrong",
            r#"Bearer realm="ssed", error="invalid_token""#,
        ),
    };
    let mut res = error_response(401, why, cors);
    res.add_header(hdr("WWW-Authenticate", challenge));
    let _ = rq.respond(res);
}

fn topics_json(hub: &Hub) -> Vec<u8> {
    let list: Vec<Value> = hub
        .topics()
        .iter()
        .map(|t| {
            let (subscribers, retained, newest) = t.stats();
            json!({
                "topic": t.name(),
                "subscribers": subscribers,
                "retained": retained,
                "last_id": newest.map(|seq| hub.id(seq)),
            })
        })
        .collect();
    Value::Array(list).to_string().into_bytes()
}

/// The CORS answer for one request: the `Access-Control-Allow-Origin` value,
/// if the request's Origin is allowed by `--cors-origin`.
struct Cors {
    allow_origin: Option<String>,
    /// The request named an origin that is not allowed.
    refused: Option<String>,
}

impl Cors {
    fn of(config: &Config, origin: Option<&str>) -> Cors {
        let Some(origin) = origin else {
            return Cors {
                allow_origin: None,
                refused: None,
            };
        };
        let allowed = config
            .cors_origins
            .iter()
            .find(|o| *o == "*" || *o == origin);
        Cors {
            allow_origin: allowed.cloned(),
            refused: if allowed.is_none() {
                Some(origin.to_string())
            } else {
                None
            },
        }
    }

    /// The headers as lines of a head that ssed writes itself.
    fn push_lines(&self, head: &mut String) {
        for (name, value) in self.headers() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        match &self.allow_origin {
            Some(o) if o == "*" => vec![("Access-Control-Allow-Origin", o.clone())],
            Some(o) => vec![
                ("Access-Control-Allow-Origin", o.clone()),
                ("Vary", "Origin".into()),
            ],
            None => Vec::new(),
        }
    }
}

fn hdr(name: &str, value: &str) -> Header {
    // Names are ours and values are ours or checked ASCII; from_bytes fails
    // only on non-ASCII, which header values read from requests cannot be.
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| Header::from_bytes(name.as_bytes(), &b"?"[..]).expect("ASCII header"))
}

fn response(
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    cors: &Cors,
) -> Response<io::Cursor<Vec<u8>>> {
    let mut res = Response::from_data(body)
        .with_status_code(status)
        .with_header(hdr("Content-Type", content_type));
    for (name, value) in cors.headers() {
        res.add_header(hdr(name, &value));
    }
    res
}

fn error_response(status: u16, message: &str, cors: &Cors) -> Response<io::Cursor<Vec<u8>>> {
    let body = json!({ "error": message }).to_string().into_bytes();
    response(status, "application/json", body, cors)
}

fn reply(rq: Request, status: u16, content_type: &str, body: Vec<u8>, cors: &Cors) {
    // A client that left before its answer is no concern of ours.
    let _ = rq.respond(response(status, content_type, body, cors));
}

fn reply_error(rq: Request, status: u16, message: &str, cors: &Cors) {
    let _ = rq.respond(error_response(status, message, cors));
}

fn preflight(rq: Request, cors: &Cors) {
    if let Some(origin) = &cors.refused {
        let why = format!("origin {origin} is not allowed; see --cors-origin");
        return reply_error(rq, 403, &why, cors);
    }
    let mut res = Response::empty(204).with_header(hdr("Allow", "GET, HEAD, POST, OPTIONS"));
    if cors.allow_origin.is_some() {
        let asked =
            header(&rq, "Access-Control-Request-Headers").unwrap_or("Content-Type, Last-Event-ID");
        for (name, value) in cors.headers() {
            res.add_header(hdr(name, &value));
        }
        res.add_header(hdr("Access-Control-Allow-Methods", "GET, POST, OPTIONS"));
        res.add_header(hdr("Access-Control-Allow-Headers", asked));
        res.add_header(hdr("Access-Control-Max-Age", "600"));
    }
    let _ = rq.respond(res);
}

/// What a stream will run, decided (and validated) before it has a slot.
enum Plan {
    /// A per-client script, ready to run.
    Script(Box<dyn Source>),
    /// A demo topic, with how many of its latest events a new viewer gets.
    Demo { topic: Arc<Topic>, latest: usize },
    /// Hub topics, and where the client resumes from.
    Hub {
        topics: Vec<String>,
        resume_from: Option<String>,
    },
}

/// Topics one stream may subscribe to at once.
const MAX_TOPICS_PER_STREAM: usize = 64;

fn plan(
    shared: &Shared,
    feed: Feed,
    params: &[(String, String)],
    rq: &Request,
) -> Result<Plan, String> {
    let ms = Duration::from_millis;
    let interval = |default: u64, min: u64| -> Result<Duration, String> {
        Ok(ms(
            routes::number(params, "interval_ms", min, 60_000)?.unwrap_or(default)
        ))
    };
    let script = |source: Box<dyn Source>| Ok(Plan::Script(source));
    match feed {
        Feed::Time => script(Box::new(Scripted::new(Clock::new(interval(1000, 10)?)))),
        Feed::EventStream => script(Box::new(Scripted::new(Ticker::new(interval(2000, 10)?)))),
        Feed::Json => {
            let count = routes::number(params, "count", 1, 10_000)?.unwrap_or(10) as u32;
            script(Box::new(Scripted::new(JsonLines::new(
                count,
                interval(1000, 0)?,
            ))))
        }
        Feed::Training => {
            let epochs = routes::number(params, "epochs", 1, 1000)?.unwrap_or(10) as u32;
            let steps = routes::number(params, "steps", 1, 10_000)?.unwrap_or(100) as u32;
            let step = ms(routes::number(params, "step_ms", 0, 10_000)?.unwrap_or(20));
            script(Box::new(Scripted::new(Training::new(epochs, steps, step))))
        }
        Feed::SystemStats => Ok(Plan::Demo {
            topic: Arc::clone(&shared.stats),
            latest: 1,
        }),
        Feed::Stocks => Ok(Plan::Demo {
            topic: Arc::clone(&shared.stocks),
            latest: 0,
        }),
        Feed::Messages => Ok(Plan::Hub {
            topics: vec![MESSAGES_TOPIC.to_string()],
            resume_from: resume_from(params, rq),
        }),
    }
}

/// `GET /events/{topic}` or `GET /events?topic=a&topic=b`.
fn hub_plan(
    topic: Option<&str>,
    params: &[(String, String)],
    rq: &Request,
) -> Result<Plan, String> {
    let mut topics: Vec<String> =
        match topic {
            Some(raw) => vec![routes::percent_decode(raw)
                .ok_or("the topic is not valid percent-encoded UTF-8")?],
            None => routes::params(params, "topic").map(String::from).collect(),
        };
    if topics.is_empty() {
        return Err(
            "name the topics to subscribe to: /events/NAME or /events?topic=a&topic=b".into(),
        );
    }
    // The same topic twice would deliver its events twice.
    let mut seen = std::collections::HashSet::new();
    topics.retain(|t| seen.insert(t.clone()));
    if topics.len() > MAX_TOPICS_PER_STREAM {
        return Err(format!(
            "at most {MAX_TOPICS_PER_STREAM} topics per stream, not {}",
            topics.len()
        ));
    }
    Ok(Plan::Hub {
        topics,
        resume_from: resume_from(params, rq),
    })
}

/// The id a client resumes after: the `Last-Event-ID` header (what a
/// reconnecting browser sends), else `?last_event_id=` (for a first connect).
fn resume_from(params: &[(String, String)], rq: &Request) -> Option<String> {
    header(rq, "Last-Event-ID")
        .or_else(|| routes::param(params, "last_event_id"))
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(String::from)
}

/// The format a client asked for: `?format=` wins over `Accept`.
fn format_for(
    json_native: bool,
    params: &[(String, String)],
    accept: Option<&str>,
) -> Result<Format, String> {
    let accept = accept.unwrap_or("");
    let wanted = match routes::param(params, "format") {
        Some("sse") => Format::Sse,
        Some("ndjson") => Format::Ndjson,
        Some(other) => return Err(format!("format must be sse or ndjson, not {other:?}")),
        None if accept.contains("application/x-ndjson") => Format::Ndjson,
        None if json_native && !accept.contains("text/event-stream") => Format::Ndjson,
        None => Format::Sse,
    };
    // /stream-json's events are JSON objects already: its NDJSON is them.
    Ok(match (json_native, wanted) {
        (true, Format::Ndjson) => Format::Lines,
        (_, f) => f,
    })
}

fn open_stream(
    shared: &Arc<Shared>,
    rq: Request,
    plan: Plan,
    json_native: bool,
    params: &[(String, String)],
    cors: Cors,
) {
    let format = match format_for(json_native, params, header(&rq, "Accept")) {
        Ok(format) => format,
        Err(why) => return reply_error(rq, 400, &why, &cors),
    };
    let stream = match shared.streams.reserve() {
        Ok(stream) => stream,
        Err(refused) => {
            let why = match refused {
                Refused::Full => format!(
                    "all {} streams are in use; try again later",
                    shared.streams.max()
                ),
                Refused::Stopping => "the server is shutting down".to_string(),
            };
            return retry_later(rq, 503, &why, &cors);
        }
    };
    // Subscribing needs the stream's waker, so it happens once the slot is
    // held; an error drops the slot with `stream`.
    let mut hub_topics = Vec::new();
    let source: Box<dyn Source> = match plan {
        Plan::Script(source) => source,
        Plan::Demo { topic, latest } => {
            let sub = topic.subscribe(Arc::clone(&stream.waker), latest);
            Box::new(Subscribed::new(vec![sub], None, Vec::new(), None))
        }
        Plan::Hub {
            topics,
            resume_from,
        } => {
            let resume = shared.hub.resume(resume_from.as_deref());
            match shared.hub.subscribe(&topics, &stream.waker, &resume) {
                Ok((subs, gaps)) => {
                    hub_topics = topics;
                    let hub = Some(Arc::clone(&shared.hub));
                    Box::new(Subscribed::new(subs, hub, gaps, resume_from))
                }
                Err(e) => return topic_refused(rq, e, &cors),
            }
        }
    };
    let keepalive = shared.config.keepalive;
    let http10 = *rq.http_version() == HTTPVersion(1, 0);
    let head = stream_head(format, http10, &cors);
    let shared = Arc::clone(shared);
    // If no thread can be had, the closure and its request are dropped and
    // tiny_http answers 500; the slot and subscriptions are freed with them.
    let _ = stream.run(move |stream: &Stream| {
        sys::yield_to_wakers();
        let mut source = source;
        let mut sink = Sink::new(rq.into_writer(), !http10, format);
        let started = sink.start(&head);
        // The head is not needed again; a stream lives long.
        drop(head);
        let result = started.and_then(|()| {
            nudge_pool(shared.own_addr);
            pump(&mut sink, source.as_mut(), stream, keepalive)
        });
        shared.streams.counters.ended(&result);
        drop(source);
        shared.hub.release(&hub_topics);
    });
}

/// The answer to a topic that cannot be had: a bad name, or too many topics.
fn topic_refused(rq: Request, e: TopicError, cors: &Cors) {
    match e {
        TopicError::BadName(why) => reply_error(rq, 400, &why, cors),
        TopicError::TooMany(max) => retry_later(
            rq,
            429,
            &format!("there are {max} topics already (--max-topics)"),
            cors,
        ),
    }
}

/// Refuses for now (503, 429) and asks the client to close the connection.
///
/// Every open connection holds one of tiny_http's pool threads, refused or
/// not, so a client turned away should let its connection go; tiny_http will
/// not send `Connection: close` on a `Response`, so this is written raw.
fn retry_later(rq: Request, status: u16, why: &str, cors: &Cors) {
    let body = json!({ "error": why }).to_string();
    let reason = match status {
        429 => "Too Many Requests",
        _ => "Service Unavailable",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Retry-After: {RETRY_AFTER_SECS}\r\nConnection: close\r\n",
        body.len()
    );
    cors.push_lines(&mut head);
    head.push_str("\r\n");
    head.push_str(&body);
    let mut out = rq.into_writer();
    // A client that already left needs no answer.
    let _ = out.write_all(head.as_bytes()).and_then(|()| out.flush());
}

fn stream_head(format: Format, http10: bool, cors: &Cors) -> Vec<u8> {
    let mut head = String::with_capacity(256);
    head.push_str(if http10 {
        "HTTP/1.0 200 OK\r\n"
    } else {
        "HTTP/1.1 200 OK\r\n"
    });
    head.push_str(&format!("Content-Type: {}\r\n", format.content_type()));
    head.push_str("Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    head.push_str(if http10 {
        "Connection: close\r\n"
    } else {
        "Transfer-Encoding: chunked\r\n"
    });
    cors.push_lines(&mut head);
    head.push_str("\r\n");
    head.into_bytes()
}

/// Where a publish goes.
enum Target {
    /// `/messages` or `/send_rest`: the seed's JSON, to the `messages` topic.
    Seed(Post),
    /// `POST /events/{topic}`.
    Topic(String),
}

/// Publishes now if tiny_http has read the body already; otherwise reads it
/// on a short-lived thread, so that a slow sender cannot stall the dispatcher.
fn accept_publish(
    shared: &Arc<Shared>,
    rq: Request,
    target: Target,
    params: Vec<(String, String)>,
    cors: Cors,
) {
    if rq.body_length().is_some_and(|n| n <= EAGER_BODY) {
        return publish(shared, rq, &target, &params, &cors);
    }
    match shared.body_readers.reserve() {
        Ok(reader) => {
            let shared = Arc::clone(shared);
            // If no thread can be had, the request is dropped with the
            // closure, and tiny_http answers 500.
            let _ = reader.run(move |_| publish(&shared, rq, &target, &params, &cors));
        }
        Err(_) => retry_later(rq, 503, "too many uploads at once; try again later", &cors),
    }
}

/// Reads at most `limit` bytes of the body; `Err` is the reply to send.
fn read_body(rq: &mut Request, limit: usize) -> Result<Vec<u8>, (u16, String)> {
    let too_large = || {
        (
            413,
            format!("body is larger than {limit} bytes (--max-event-bytes)"),
        )
    };
    if rq.body_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    rq.as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| (400, format!("cannot read the body: {e}")))?;
    if body.len() > limit {
        return Err(too_large());
    }
    Ok(body)
}

fn publish(
    shared: &Shared,
    mut rq: Request,
    target: &Target,
    params: &[(String, String)],
    cors: &Cors,
) {
    let body = match read_body(&mut rq, shared.config.max_event_bytes) {
        Ok(body) => body,
        Err((status, why)) => return reply_error(rq, status, &why, cors),
    };
    let (topic, event, answer) = match target {
        Target::Seed(post) => match seed_message(*post, &body) {
            Ok((event, answer)) => (MESSAGES_TOPIC, event, Some(answer)),
            Err(why) => return reply_error(rq, 400, &why, cors),
        },
        Target::Topic(topic) => {
            match publish::event_from_body(
                header(&rq, "Content-Type"),
                &body,
                routes::param(params, "event"),
            ) {
                Ok(event) => (topic.as_str(), event, None),
                Err(why) => return reply_error(rq, 400, &why, cors),
            }
        }
    };
    match (shared.hub.publish(topic, event), answer) {
        // The seed's endpoints answer as the tutorial does; the hub's with
        // the event's id.
        (Ok(_), Some(answer)) => reply(
            rq,
            200,
            "application/json",
            answer.to_string().into_bytes(),
            cors,
        ),
        (Ok((id, subscribers)), None) => {
            let body = json!({ "id": id, "topic": topic, "subscribers": subscribers });
            reply(
                rq,
                200,
                "application/json",
                body.to_string().into_bytes(),
                cors,
            )
        }
        (Err(e), _) => topic_refused(rq, e, cors),
    }
}

/// `POST /messages` and `POST /send_rest` (seed 001): the body is a JSON
/// object; its `message` is echoed at once and the same JSON is broadcast.
fn seed_message(post: Post, body: &[u8]) -> Result<(Event, Value), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err(r#"body must be a JSON object, such as {"message": "hello"}"#.into());
    };
    let (status, missing) = match post {
        Post::Messages => ("Received", "No message provided"),
        Post::Rest => ("Received via REST", "No REST message provided"),
    };
    let message = fields
        .get("message")
        .cloned()
        .unwrap_or_else(|| missing.into());
    let answer = json!({ "status": status, "message": message });
    Ok((Event::message(pyjson::dumps(&answer)), answer))
}
