//! Start and stop, and the application: what each [`Action`] does.
//!
//! [`Server::start`] binds the listener, starts the demos' producers, builds
//! the [`App`] and hands it to the connection layer ([`crate::conn`]), which
//! calls [`App::handle`] once per request, on that connection's thread. The
//! app asks [`routes::decide`] what to do, then does it: replies, reads a
//! publish body into the hub, or turns the connection into a stream.

use crate::config::Config;
use crate::conn::{self, Conns, Exchange, Handler, Parkable, StreamBody};
use crate::cors::Cors;
use crate::demos::{Clock, Demos, Numbered, Ticker, Training};
use crate::fanout::Fanouts;
use crate::http1::Response;
use crate::hub::{Hub, Published, Retention, Topic};
use crate::idempotency;
use crate::log::Throttled;
use crate::redis::{self, Redis};
use crate::routes::{self, Action, Feed, Post, PublishTo, MESSAGES_TOPIC};
use crate::sources::{self, Sources};
use crate::sse::Event;
use crate::store::{From, Memory, Store, StoreError};
use crate::stream::{
    pump, Buffers, Feed as TopicFeed, Format, Framer, Outlet, Pumped, Scripted, Slot, Source,
    Streams, Wire,
};
use crate::sync::{lock, Doorbell};
use crate::www::Pages;
use crate::{memory, metrics, publish, pyjson, sys};
use serde_json::{json, Value};
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Pending connections the kernel queues for us. A burst of connects larger
/// than the backlog loses SYNs, and those clients retry only after 1 to 31 s.
/// (Linux cuts it to `net.core.somaxconn`, 4096 by default.)
const BACKLOG: i32 = 4096;

/// A running server. Dropping it shuts it down.
pub struct Server {
    addr: SocketAddr,
    app: Arc<App>,
    conns: Conns,
    demos: Demos,
    limits: Limits,
}

/// The caps in force, what they were sized for, and where the connection
/// cap came from.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// `--max-connections`, or the limit that set the default (memory,
    /// the open-files limit).
    pub set_by: &'static str,
    /// Flags that ask for more than the system holds, each in a sentence.
    pub notes: Vec<String>,
    pub max_streams: usize,
    pub max_demo_streams: usize,
    /// The memory sized for: `12 MiB`.
    pub memory: String,
    /// `--history-total` in force.
    pub history_total: usize,
}

/// The application: everything a request may need.
pub struct App {
    config: Config,
    pages: Pages,
    hub: Arc<Hub>,
    stats: Arc<Topic>,
    stocks: Arc<Topic>,
    /// The latest quote of each symbol.
    quotes: Arc<Mutex<Vec<Arc<Event>>>>,
    /// Hub streams (`/events`, `/sse`).
    streams: Arc<Streams>,
    demo_streams: Arc<Streams>,
    conn_counters: Arc<conn::Counters>,
    max_connections: usize,
    /// Carries what is published to the subscribers.
    fanouts: Arc<Fanouts>,
    /// Refuses new work near the memory limit.
    guard: Arc<memory::Guard>,
    /// What streams' pieces may hold together.
    buffers: Arc<Buffers>,
    /// Programs and files that feed topics.
    sources: Sources,
    /// The log of events: the hub, or a shared log it mirrors.
    store: Arc<dyn Store>,
    refused_streams: Throttled,
    refused_topics: Throttled,
    refused_memory: Throttled,
    too_large: Throttled,
}

impl Server {
    /// Binds `config.addr` and starts serving. Errors name the address or
    /// the directory they are about.
    pub fn start(config: Config) -> io::Result<Server> {
        let pages = match &config.www {
            Some(dir) => {
                Pages::dir(dir).map_err(|e| io::Error::new(e.kind(), format!("--www {e}")))?
            }
            None => Pages::Embedded,
        };
        // What the memory allows sizes everything that costs memory; a
        // flag given says otherwise, and a flag that asks for more than
        // the memory holds is noted at start.
        let limit = match config.memory {
            Some(bytes) => memory::Limit::planned(bytes),
            None => memory::Limit::detect(),
        };
        let sizing = memory::Sizing::for_limit(limit.bytes);
        let listener = listen(&config, sizing.send_buffer)?;
        let addr = listener.local_addr()?;
        // Every connection needs a descriptor, and the soft limit is often 1024.
        let open_files = sys::limits::raise_open_files_limit().unwrap_or(1024);
        let (by_files, files) = sys::limits::default_max_connections(open_files);
        let (system, why) = if sizing.max_connections < by_files {
            (sizing.max_connections, "memory")
        } else {
            (by_files, files)
        };
        let mut notes = Vec::new();
        let max_connections = match config.max_connections {
            Some(n) => {
                if n > system {
                    notes.push(format!(
                        "--max-connections {n} is more than this system can hold ({system}, set by {why}); past that, connections are refused with 503"
                    ));
                }
                n
            }
            None => system,
        };
        let set_by = if config.max_connections.is_some() {
            "--max-connections"
        } else {
            why
        };
        let history_total = match config.history_total {
            Some(total) => {
                if total > sizing.history_total {
                    notes.push(format!(
                        "--history-total {} is more than {} holds ({}); past the memory, connections and publishes are refused with 503",
                        memory::size(total as u64),
                        limit.describe(),
                        memory::size(sizing.history_total as u64)
                    ));
                }
                total
            }
            None => sizing.history_total.max(config.max_event_bytes),
        };
        // Keep places for pages and publishes when streams fill the rest.
        let reserve = (max_connections / 16).clamp(1, 1024);
        let max_streams = config
            .max_streams
            .unwrap_or_else(|| max_connections.saturating_sub(reserve).max(1));
        let limits = Limits {
            max_connections,
            set_by,
            notes,
            max_streams,
            max_demo_streams: config.max_demo_streams,
            memory: limit.describe(),
            history_total,
        };
        let guard = Arc::new(memory::Guard::new(limit, sizing.refuse_above));
        let buffers = Buffers::new(sizing.stream_buffers, sizing.frame_bytes);
        let demos = Demos::start(&config.pace)?;
        let conn_counters = Arc::new(conn::Counters::default());
        let pressure: Arc<dyn conn::Pressure> = Arc::clone(&buffers) as Arc<dyn conn::Pressure>;
        let hub = Hub::new(
            Retention {
                history: config.history,
                bytes: config.history_bytes,
            },
            config.max_topics,
            history_total,
        );
        let fanouts = Arc::new(Fanouts::start(workers())?);
        // The one place the log's backend is chosen: the hub alone, or a
        // shared log that the hub mirrors.
        let store: Arc<dyn Store> = match &config.redis {
            Some(target) => Arc::new(Redis::start(
                target.clone(),
                redis::Settings {
                    history: config.history,
                    history_bytes: config.history_bytes,
                    history_total,
                    max_topics: config.max_topics,
                    max_event_bytes: config.max_event_bytes,
                    timeout: config.redis_timeout,
                    idempotency_ttl: config.idempotency_ttl,
                },
                Arc::new(hub),
                Arc::clone(&fanouts),
            )?),
            None => Arc::new(Memory::new(
                Arc::new(hub),
                config.idempotency_ttl,
                sizing.max_keys,
            )),
        };
        let hub = Arc::clone(store.hub());
        let publisher = publisher(&store, &fanouts);
        let sources = Sources::start(
            &config.sources,
            Arc::clone(&hub),
            publisher,
            sources::Settings {
                restart: config.source_restart,
                restart_delay: config.source_restart_delay,
                tail_poll: config.tail_poll,
                max_line: config.max_event_bytes,
                keeper: config.source_keeper.clone(),
                tail_symlinks: config.tail_symlinks,
            },
        )?;
        let app = Arc::new(App {
            pages,
            hub,
            stats: Arc::clone(&demos.stats),
            stocks: Arc::clone(&demos.stocks),
            quotes: Arc::clone(&demos.quotes),
            guard: Arc::clone(&guard),
            buffers,
            streams: Streams::new(max_streams),
            demo_streams: Streams::new(config.max_demo_streams),
            conn_counters: Arc::clone(&conn_counters),
            max_connections,
            fanouts,
            sources,
            store,
            refused_streams: Throttled::new("streams refused: the stream cap was reached"),
            refused_topics: Throttled::new(
                "publishes or subscriptions refused: --max-topics reached",
            ),
            refused_memory: Throttled::new(
                "streams or publishes refused: memory is near its limit",
            ),
            too_large: Throttled::new("publishes refused: larger than --max-event-bytes"),
            config,
        });
        let settings = conn::Settings {
            max_connections,
            max_threads: sys::limits::max_threads()
                .min(sizing.max_threads)
                .min(max_connections),
            guard,
            pressure,
            header_timeout: app.config.header_timeout,
            idle_timeout: app.config.idle_timeout,
            keepalive: app.config.keepalive,
            write_timeout: app.config.write_timeout,
            access_log: app.config.access_log,
        };
        let handler: Arc<dyn Handler> = Arc::clone(&app) as Arc<dyn Handler>;
        let conns = Conns::start(listener, settings, handler, conn_counters)?;
        Ok(Server {
            addr,
            app,
            conns,
            demos,
            limits,
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The caps in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Streams open now, hub and demo.
    pub fn open_streams(&self) -> usize {
        self.app.streams.open() + self.app.demo_streams.open()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.conns.open()
    }

    /// Stops accepting, ends every stream with its last chunk, and joins
    /// every thread ssed started.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Programs get their SIGTERM first: their grace runs while the
        // connections end.
        self.app.sources.begin_stop();
        self.conns.stop();
        self.app.sources.stop();
        self.app.store.stop();
        self.app.fanouts.stop();
        self.demos.stop();
        for t in [
            &self.app.refused_streams,
            &self.app.refused_topics,
            &self.app.refused_memory,
            &self.app.too_large,
        ] {
            t.flush();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fan-out workers: one a core this process may use, by its affinity and
/// by its cgroup's CPU quota (half a core is one worker, 1.5 are two).
fn workers() -> usize {
    let cores = sys::limits::cpus();
    match crate::sys::cgroup::cpu_quota() {
        Some(quota) => cores.min(quota.ceil().max(1.0) as usize),
        None => cores,
    }
}

/// What publishes for `--source` and `--tail`: the log, then the fan-out.
fn publisher(store: &Arc<dyn Store>, fanouts: &Arc<Fanouts>) -> sources::Publish {
    let (store, fanouts) = (Arc::clone(store), Arc::clone(fanouts));
    Arc::new(move |topic: &str, event: Event| {
        let stored = store.publish(topic, event, None).map_err(|e| match e {
            StoreError::Down(why) | StoreError::BadTopic(why) | StoreError::LostData(why) => why,
            StoreError::Unknown { why, .. } => why,
            StoreError::TooManyTopics(max) => {
                format!("there are {max} topics already (--max-topics)")
            }
            StoreError::InProgress => "a publish with its key is under way".into(),
            StoreError::KeyReused => "its idempotency key was used for another publish".into(),
        })?;
        if let Some(published) = stored.fanout {
            fanouts.dispatch(published);
        }
        Ok(())
    })
}

/// The listener; `send_buffer` caps each connection's send buffer in the
/// kernel (accepted sockets inherit it).
fn listen(config: &Config, send_buffer: Option<usize>) -> io::Result<TcpListener> {
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
    if let Some(bytes) = send_buffer {
        socket.set_send_buffer_size(bytes)?;
    }
    socket.bind(&addr.into()).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => io::Error::new(
            e.kind(),
            format!(
                "address {addr} is already in use; choose another with --addr HOST:PORT (port 0 picks a free one)"
            ),
        ),
        _ => io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")),
    })?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

impl Handler for App {
    fn handle(&self, ex: &mut Exchange<'_>) -> Option<Box<dyn StreamBody>> {
        let req = ex.request();
        let cors = Cors::new(&self.config.cors_origins, req.header("Origin"));
        let action = routes::decide(req, &self.config, &cors);
        let res = match action {
            Action::Reply(res) => res,
            Action::Page { path, allowed } => self.page(&path, allowed, &ex.request().method),
            Action::Topics => self.topics(ex),
            Action::Health => self.health(),
            Action::Metrics => Response::new(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(&metrics::Sources {
                    hub: &self.hub,
                    streams: &self.streams,
                    demo_streams: &self.demo_streams,
                    conns: &self.conn_counters,
                    max_connections: self.max_connections,
                    link: self.store.link(),
                    guard: &self.guard,
                    buffers: &self.buffers,
                    keys: self.store.keys(),
                })
                .into_bytes(),
            )
            .no_store(),
            Action::Publish { to, event } => {
                let (mut res, fanout) = match self.publish(ex, &to, event.as_deref()) {
                    Ok((res, fanout)) => (res, fanout),
                    Err(res) => (res, None),
                };
                res.fields.extend(cors.fields());
                // The publisher has its answer before the subscribers their
                // event: a publish never waits for them.
                ex.respond(res);
                if let Some(published) = fanout {
                    self.fanouts.dispatch(published);
                }
                return None;
            }
            Action::Stream { feed, format } => match self.stream(ex, feed, format, &cors) {
                Ok(body) => return body,
                Err(res) => res,
            },
        };
        let mut res = res;
        res.fields.extend(cors.fields());
        ex.respond(res);
        None
    }
}

impl App {
    fn page(&self, path: &str, allowed: bool, method: &str) -> Response {
        match self.pages.get(path) {
            Some(_) if !allowed => {
                Response::error(405, &format!("{method} is not allowed on a page; use GET"))
                    .with("Allow", "GET, HEAD, OPTIONS")
            }
            Some(page) => Response::new(200, page.content_type, page.body),
            None => Response::error(404, &format!("no such page or route: /{path}")),
        }
    }

    /// `/topics`: every topic of the log, with this instance's subscribers
    /// and what feeds it; a shared log's link in the `Redis-Link` header.
    fn topics(&self, ex: &mut Exchange<'_>) -> Response {
        let link = self.store.link().map(|l| l.summary());
        let with_link = |res: Response| match &link {
            Some(link) => res.with("Redis-Link", link.clone()),
            None => res,
        };
        match self.store.topics() {
            Ok(topics) => {
                let list: Vec<Value> = topics
                    .into_iter()
                    .map(|t| {
                        let mut entry = json!({
                            "topic": t.name,
                            "subscribers": t.subscribers,
                            "retained": t.retained,
                            "last_id": t.last_id,
                        });
                        if let Some(source) = self.sources.describe(&t.name) {
                            entry["source"] = source;
                        }
                        entry
                    })
                    .collect();
                with_link(Response::json(200, &Value::Array(list)))
            }
            Err(StoreError::Down(why)) => with_link(
                Response::error(503, &why).with("Retry-After", conn::RETRY_AFTER_SECS.to_string()),
            ),
            Err(e) => with_link(self.refused(e, ex)),
        }
    }

    /// `/healthz`: `ok`, or a 503 that says what is down (a shared log)
    /// or that the server is at capacity (memory).
    fn health(&self) -> Response {
        let why = match self.store.health() {
            Err(why) => why,
            Ok(()) if self.guard.over() => self.guard.why(),
            Ok(()) => return Response::text(200, "ok"),
        };
        Response::text(503, &why).with("Retry-After", conn::RETRY_AFTER_SECS.to_string())
    }

    /// Near the memory limit, new streams and publishes are refused: a
    /// 503 that says so, and the connection let go.
    fn memory_refusal(&self, ex: &mut Exchange<'_>) -> Option<Response> {
        if !self.guard.over() {
            return None;
        }
        self.guard.refused_requests.fetch_add(1, Ordering::Relaxed);
        self.refused_memory.note(&format!("{}", ex.peer()));
        ex.close_after();
        Some(
            Response::error(503, &self.guard.why())
                .with("Retry-After", conn::RETRY_AFTER_SECS.to_string()),
        )
    }

    /// The answer to what the log refused: one status for each meaning.
    /// A client refused for want of topics is logged (at most once a
    /// second) and asked to let its connection go.
    fn refused(&self, e: StoreError, ex: &mut Exchange<'_>) -> Response {
        match e {
            StoreError::BadTopic(why) => Response::error(400, &why),
            StoreError::TooManyTopics(max) => {
                self.refused_topics.note(&format!("{}", ex.peer()));
                ex.close_after();
                Response::error(
                    429,
                    &format!("there are {max} topics already (--max-topics)"),
                )
                .with("Retry-After", conn::RETRY_AFTER_SECS.to_string())
            }
            // Certainly not stored.
            StoreError::Down(why) | StoreError::LostData(why) => {
                Response::error(503, &format!("not published: {why}"))
                    .with("Retry-After", conn::RETRY_AFTER_SECS.to_string())
            }
            // Perhaps stored: say so, and with which key to retry.
            StoreError::Unknown { why, key } => Response::error(
                504,
                &format!(
                    "perhaps published: {why}; retry with the header {}: {key} to publish it at most once",
                    idempotency::HEADER
                ),
            )
            .with(idempotency::HEADER, key),
            StoreError::InProgress => Response::error(
                409,
                "a publish with this Idempotency-Key is under way; retry with it in a moment",
            ),
            StoreError::KeyReused => Response::error(
                422,
                "this Idempotency-Key was used for another publish (another topic or other data); a new event needs a new key",
            ),
        }
    }

    /// Reads the body, makes it an event, publishes it: the answer, and the
    /// fan-out to run once the answer is sent (with Redis, the event comes
    /// back through the feed instead).
    fn publish(
        &self,
        ex: &mut Exchange<'_>,
        to: &PublishTo,
        query_event: Option<&str>,
    ) -> Result<(Response, Option<Published>), Response> {
        let topic = match to {
            PublishTo::Seed(_) => MESSAGES_TOPIC,
            PublishTo::Topic(topic) => topic.as_str(),
        };
        if let Some(flag) = self.sources.owner(topic) {
            return Err(Response::error(
                409,
                &format!("topic {topic} is fed by {flag}; it takes no publishes"),
            ));
        }
        // Before the body is read: near the limit it is not taken in.
        if let Some(refused) = self.memory_refusal(ex) {
            return Err(refused);
        }
        let limit = self.config.max_event_bytes;
        let body = match ex.read_body(limit) {
            Ok(body) => body,
            Err(r) if r.status == 413 => {
                self.too_large.note(&format!("{}", ex.peer()));
                return Err(Response::error(
                    413,
                    &format!("body is larger than {limit} bytes (--max-event-bytes)"),
                ));
            }
            Err(r) => return Err(r.into()),
        };
        let req = ex.request();
        let key = idempotency_key(req).map_err(|why| Response::error(400, &why))?;
        let (topic, event, answer) = match to {
            PublishTo::Seed(post) => match seed_message(*post, &body) {
                Ok((event, answer)) => (MESSAGES_TOPIC, event, Some(answer)),
                Err(why) => return Err(Response::error(400, &why)),
            },
            PublishTo::Topic(topic) => {
                match publish::event_from_body(req.header("Content-Type"), &body, query_event) {
                    Ok(event) => (topic.as_str(), event, None),
                    Err(why) => return Err(Response::error(400, &why)),
                }
            }
        };
        let stored = self
            .store
            .publish(topic, event, key.as_deref())
            .map_err(|e| self.refused(e, ex))?;
        // The seed's endpoints answer as the tutorial does; the hub's with
        // the event's id.
        let body = match answer {
            Some(answer) => answer,
            None => json!({ "id": stored.id, "topic": topic, "subscribers": stored.subscribers }),
        };
        Ok((Response::json(200, &body), stored.fanout))
    }

    /// Starts a stream on `ex` and returns its body, or says why not.
    fn stream(
        &self,
        ex: &mut Exchange<'_>,
        feed: Feed,
        format: Format,
        cors: &Cors,
    ) -> Result<Option<Box<dyn StreamBody>>, Response> {
        let mut fields: Vec<(&str, String)> = vec![
            ("Content-Type", format.content_type().to_string()),
            ("Cache-Control", "no-cache".into()),
            ("X-Accel-Buffering", "no".into()),
        ];
        fields.extend(cors.fields());
        let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if ex.request().method == "HEAD" {
            ex.start_stream(&fields);
            return Ok(None);
        }
        if let Some(refused) = self.memory_refusal(ex) {
            return Err(refused);
        }
        let (streams, flag) = if feed.is_demo() {
            (&self.demo_streams, "--max-demo-streams")
        } else {
            (&self.streams, "--max-streams")
        };
        let Some(slot) = streams.reserve() else {
            self.refused_streams.note(flag);
            ex.close_after();
            let why = format!(
                "all {} streams are in use ({flag}); try again later",
                streams.max()
            );
            return Err(
                Response::error(503, &why).with("Retry-After", conn::RETRY_AFTER_SECS.to_string())
            );
        };
        let waker = ex.waker();
        let topic_feed = |topic: &Arc<Topic>, latest: usize, first: Vec<Arc<Event>>| {
            let outlet = Outlet::new(Arc::clone(waker), format, Arc::clone(&self.buffers));
            let sub = topic.subscribe(outlet.as_notify(), latest);
            outlet.attach(TopicFeed::new(vec![sub], None, Vec::new(), None).first(first));
            outlet
        };
        let (kind, topics) = match feed {
            Feed::Clock { interval } => (Kind::script(Clock::new(interval)), Vec::new()),
            Feed::Ticker { interval } => (Kind::script(Ticker::new(interval)), Vec::new()),
            Feed::Json { count, interval } => {
                (Kind::script(Numbered::json(count, interval)), Vec::new())
            }
            Feed::Text { count, interval } => {
                (Kind::script(Numbered::text(count, interval)), Vec::new())
            }
            Feed::Training {
                epochs,
                steps,
                step,
            } => (Kind::script(Training::new(epochs, steps, step)), Vec::new()),
            Feed::SystemStats { last } => (
                Kind::Topics(topic_feed(&self.stats, last, Vec::new())),
                Vec::new(),
            ),
            // Quotes read after subscribing: a tick in between comes twice,
            // none is missed.
            Feed::Stocks => {
                let outlet = topic_feed(&self.stocks, 0, lock(&self.quotes).clone());
                (Kind::Topics(outlet), Vec::new())
            }
            Feed::Hub {
                topics: names,
                last_event_id,
                last,
            } => {
                let outlet = Outlet::new(Arc::clone(waker), format, Arc::clone(&self.buffers));
                let from = From {
                    last_event_id,
                    last,
                };
                let feed = self
                    .store
                    .subscribe(&names, &outlet.as_notify(), &from)
                    .map_err(|e| self.refused(e, ex))?;
                outlet.attach(feed);
                (Kind::Topics(outlet), names)
            }
        };
        let body = Box::new(Body {
            kind,
            format,
            keepalive: self.config.keepalive,
            retry_ms: self.config.retry_ms,
            store: Arc::clone(&self.store),
            topics,
            slot,
        });
        sys::sched::batch_for_good();
        // Without a head, the body is dropped here: it lets its topics go.
        Ok(ex
            .start_stream(&fields)
            .then_some(body as Box<dyn StreamBody>))
    }
}

/// What a stream writes.
enum Kind {
    /// A per-client script, written by the stream's thread as it comes due.
    Script(Box<dyn Source>),
    /// Topics, written by publishers and by the park.
    Topics(Arc<Outlet>),
}

impl Kind {
    fn script(script: impl crate::stream::Script + 'static) -> Kind {
        Kind::Script(Box::new(Scripted::new(script)))
    }
}

/// A stream's body: its events, how to write them, and what to let go
/// when it ends.
struct Body {
    kind: Kind,
    format: Format,
    keepalive: Duration,
    /// The reconnection delay the stream's `retry:` field sends.
    retry_ms: u64,
    store: Arc<dyn Store>,
    /// Topics to free if nobody needs them any more.
    topics: Vec<String>,
    /// The stream's place under its cap, freed last.
    slot: Slot,
}

impl StreamBody for Body {
    fn run(
        mut self: Box<Self>,
        wire: Arc<dyn Wire>,
        chunked: bool,
        waker: &Arc<Doorbell>,
        stopping: &AtomicBool,
    ) -> Option<Box<dyn Parkable>> {
        let result = match &mut self.kind {
            // A script has a thread: it sleeps until its next event is due.
            Kind::Script(source) => {
                let mut framer = Framer::new(chunked, self.format).with_retry(self.retry_ms);
                pump(
                    &mut framer,
                    &*wire,
                    source.as_mut(),
                    waker,
                    stopping,
                    self.keepalive,
                )
            }
            // Topics: once caught up, the stream waits in the park.
            Kind::Topics(outlet) => match outlet.start(wire, chunked, self.retry_ms, stopping) {
                Ok(()) => return Some(self),
                Err(e) => Err(e),
            },
        };
        self.slot.counters().ended(&result);
        None
    }
}

impl Parkable for Body {
    fn pump(&mut self, stopping: bool) -> Pumped {
        match &self.kind {
            Kind::Topics(outlet) => outlet.pump(self.keepalive, stopping),
            Kind::Script(_) => Pumped::Done(Ok(())),
        }
    }

    fn end(self: Box<Self>, result: &io::Result<()>) {
        self.slot.counters().ended(result);
        // Dropped: the topics let go of the outlet, idle ones are freed.
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        // The topics hold the outlet: let go of them, then free idle ones.
        if let Kind::Topics(outlet) = &self.kind {
            outlet.close();
        }
        self.store.release(&self.topics);
    }
}

/// The request's `Idempotency-Key`, checked: one at most.
fn idempotency_key(req: &crate::http1::Request) -> Result<Option<String>, String> {
    let mut keys = req.headers_named(idempotency::HEADER).map(str::trim);
    let key = keys.next();
    if keys.next().is_some() {
        return Err(format!(
            "a publish takes one {} header, not several",
            idempotency::HEADER
        ));
    }
    if let Some(key) = key {
        idempotency::check(key)?;
    }
    Ok(key.map(String::from))
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
