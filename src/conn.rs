//! The connection layer: the only room that accepts sockets.
//!
//! One accept thread takes connections from the listener and gives each a
//! thread of its own, with a small fixed stack. That thread reads requests
//! in order (keep-alive and pipelining, answered in order), hands each to
//! the [`Handler`] as an [`Exchange`], and, when the handler opens a
//! stream, becomes that stream's writer: one thread and one descriptor per
//! stream, and no thread reads for another. Whatever a client sends, or
//! fails to send, it holds up only its own thread.
//!
//! Every read is bounded in size ([`crate::http1`]'s limits) and in time:
//! a request head must arrive within `--header-timeout`, an idle
//! keep-alive connection closes after `--idle-timeout`, a body that stalls
//! for the header timeout ends the connection. Writes are bounded by
//! `--write-timeout`, set on the listener so that every accepted socket
//! inherits it.
//!
//! A stream that is caught up holds no thread. Once its head and what it
//! owes (a replay) are written, its thread hands it to the *park* and
//! ends: one thread that watches every parked socket with epoll, for a
//! hang-up (seen at once, so subscriber counts are exact) and, after a
//! write that came up short, for room to write. Publishers write to a
//! parked stream what fits at once, as to any; what is left, keep-alives,
//! the write timeout and the last chunk at shutdown are the park's. The
//! park looks at a stream only when it is rung, when its socket has room,
//! or when its next keep-alive (or, while its bytes wait, the write
//! timeout's next check) falls due: a schedule, not a sweep, so that an
//! idle stream costs nothing between keep-alives. A parked stream costs
//! its socket and its state: no thread stack, no kernel task, no place
//! under `pid_max` or `vm.max_map_count`.
//!
//! The [`Conns`] registry knows every connection's socket and thread: at
//! the cap it can close the one that has waited longest for a request head
//! (an idle keep-alive, or a slowloris), and at shutdown it rings every
//! stream, wakes every reader, ends every parked stream, and joins every
//! thread.
//!
//! Nothing here knows routes, topics or events.

use crate::http1::{self, Framing, HeadParser, Refusal, Request, Response, Version};
use crate::log::{self, Throttled};
use crate::memory::Guard;
use crate::stream::{Pumped, Wire};
use crate::sys::epoll::{Epoll, EventFd};
use crate::sync::{lock, Doorbell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Stack reserved for a connection's thread. It parses heads (the field
/// table is on the heap), formats JSON and runs a stream's loop; serde_json
/// at its nesting limit of 128 is the deepest use: a release build needs
/// between 64 and 128 KiB for it (measured; 64 KiB overflows), so 256 KiB
/// leaves twice that. Debug builds' frames are many times larger. Only the
/// pages touched count in memory (a stream's thread keeps two); the rest is
/// address space.
const CONN_STACK: usize = if cfg!(debug_assertions) {
    4 << 20
} else {
    256 << 10
};

/// Bytes read from a socket at a time into a connection's buffer: a little
/// at first (most heads are smaller), more once a head or body is larger.
const FIRST_READ: usize = 1024;
const READ_CHUNK: usize = 4096;

/// How long and how much a connection closed with unread input is drained
/// first, so that the client reads the answer instead of a reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// Connections being closed to make room that may still hold a thread:
/// past this, new connections are refused rather than evicting more.
const MAX_EVICTING: usize = 64;

/// What clients are told to wait before retrying a refused connection.
pub const RETRY_AFTER_SECS: u32 = 5;

/// At shutdown, how long streams have to write their last chunk and
/// readers to notice, before every socket is shut down under them.
const STOP_GRACE: Duration = Duration::from_millis(1000);

/// Pause after an accept error that may last (out of descriptors or memory).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// The connection layer's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub max_connections: usize,
    /// Connections that hold a thread at once (all but parked streams):
    /// what `pid_max` and `vm.max_map_count` allow.
    pub max_threads: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// A parked stream silent this long gets a keep-alive.
    pub keepalive: Duration,
    /// A parked stream whose socket takes nothing for this long is dropped.
    pub write_timeout: Duration,
    pub access_log: bool,
    /// Close to the memory limit, new connections are refused.
    pub guard: Arc<Guard>,
    /// Whether the streams' own buffers are over their budget: the park
    /// then ends the parked streams that have been blocked longest.
    pub pressure: Arc<dyn Pressure>,
}

/// What the writer's buffers tell the park (see [`Settings::pressure`]).
pub trait Pressure: Send + Sync + std::fmt::Debug {
    /// No room is left for another stream's piece.
    fn over(&self) -> bool;
}

/// The application: answers one request at a time on a connection.
pub trait Handler: Send + Sync + 'static {
    /// Answers `ex`: reads its body if it needs it, then responds; or
    /// starts a stream ([`Exchange::start_stream`]) and returns its body,
    /// which the connection's thread then writes. An exchange left without
    /// an answer gets a 500.
    fn handle(&self, ex: &mut Exchange<'_>) -> Option<Box<dyn StreamBody>>;
}

/// What a stream writes after its head, until it ends, the client leaves
/// or the server stops (`stopping` set, `waker` rung).
///
/// It runs once the handler has returned, so that the stack the handler
/// used to route and set up the request is not held, page after page, for
/// the life of the stream.
pub trait StreamBody: Send {
    /// Writes to `wire`: chunked (the body frames its chunks) or, for
    /// HTTP/1.0, bare, ended by the close. Returns the stream to park, if
    /// it is caught up and may wait without a thread; else it has ended.
    fn run(
        self: Box<Self>,
        wire: Arc<dyn Wire>,
        chunked: bool,
        waker: &Arc<Doorbell>,
        stopping: &AtomicBool,
    ) -> Option<Box<dyn Parkable>>;
}

/// A stream that waits without a thread. The park calls [`Parkable::pump`]
/// when its waker rings, when its socket has room after a short write, and
/// when what `pump` last returned falls due (a keep-alive); then
/// [`Parkable::end`] once.
pub trait Parkable: Send {
    /// Writes what is owed and due without waiting.
    fn pump(&mut self, stopping: bool) -> Pumped;
    /// The stream is over (`result`: how): it lets go of everything.
    fn end(self: Box<Self>, result: &io::Result<()>);
}

/// Counts for `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// Connections with a thread, counted until the thread ends.
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    /// Refused by the accept thread: `--max-connections` reached.
    pub refused_cap: AtomicU64,
    /// Refused by the accept thread: no thread or descriptor to be had.
    pub refused_resources: AtomicU64,
    /// Refused by the accept thread: memory is near its limit.
    pub refused_memory: AtomicU64,
    /// Closed to make room at the cap, while waiting for a request head.
    pub evicted: AtomicU64,
    /// Closed because a head did not arrive within `--header-timeout`.
    pub header_timeouts: AtomicU64,
    /// Streams waiting without a thread now (counted in `open`).
    pub parked: AtomicUsize,
    /// Requests refused by this layer: malformed, over a limit, bad framing.
    pub bad_requests: AtomicU64,
}

/// The running connection layer.
pub struct Conns {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    park: Option<JoinHandle<()>>,
}

struct Shared {
    handler: Arc<dyn Handler>,
    settings: Settings,
    listener: TcpListener,
    registry: Mutex<Registry>,
    /// Rung whenever a connection ends.
    ended: Condvar,
    /// Of the open connections, those closed to make room whose thread has
    /// not ended.
    evicting: AtomicUsize,
    /// Set at shutdown; streams watch it.
    stopping: Arc<AtomicBool>,
    /// Cuts the accept thread's pauses short at shutdown.
    accept_waker: Doorbell,
    epoch: Instant,
    counters: Arc<Counters>,
    logs: Logs,
    park: Park,
}

/// The classes of refusal this layer logs, each at most once a second.
struct Logs {
    cap: Throttled,
    resources: Throttled,
    memory: Throttled,
    buffers: Throttled,
    evicted: Throttled,
    timeouts: Throttled,
    limits: Throttled,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: HashMap<u64, Entry>,
}

struct Entry {
    peer: Arc<Peer>,
    thread: Option<JoinHandle<()>>,
    evicted: bool,
}

/// What a connection's thread shares with the registry.
struct Peer {
    sock: TcpStream,
    /// Rung to wake a stream at shutdown.
    waker: Arc<Doorbell>,
    /// When the connection began waiting for a request head, in ms since
    /// the layer started, plus one; 0 while a request is being served.
    waiting_since: AtomicU64,
}

impl Conns {
    /// Serves `listener` (bound, listening, with the write timeout set) with
    /// `handler`.
    pub fn start(
        listener: TcpListener,
        settings: Settings,
        handler: Arc<dyn Handler>,
        counters: Arc<Counters>,
    ) -> io::Result<Conns> {
        let shared = Arc::new(Shared {
            handler,
            settings,
            listener,
            registry: Mutex::default(),
            ended: Condvar::new(),
            evicting: AtomicUsize::new(0),
            stopping: Arc::new(AtomicBool::new(false)),
            accept_waker: Doorbell::default(),
            epoch: Instant::now(),
            counters,
            logs: Logs {
                cap: Throttled::new("connections refused: --max-connections reached"),
                resources: Throttled::new(
                    "connections refused: the system gave no thread or descriptor",
                ),
                memory: Throttled::new("connections refused: memory is near its limit"),
                buffers: Throttled::new(
                    "streams ended: their readers took nothing while the streams' buffers were full",
                ),
                evicted: Throttled::new(
                    "connections waiting for a request closed to make room at --max-connections",
                ),
                timeouts: Throttled::new(
                    "connections closed: no complete request head within --header-timeout",
                ),
                limits: Throttled::new("requests refused by the HTTP layer"),
            },
            park: Park {
                epoll: Epoll::new()?,
                bell: EventFd::new()?,
                rung: Mutex::default(),
                arriving: Mutex::default(),
            },
        });
        shared
            .park
            .epoll
            .add_readable(shared.park.bell.raw(), BELL)?;
        // Kept open so that, out of descriptors, one can be freed to accept
        // and refuse a connection instead of leaving it in the backlog, where
        // accept() would fail on it again at once (a busy loop).
        let spare = std::fs::File::open("/dev/null").ok();
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("ssed-accept".into())
                .spawn(move || accept_loop(&shared, spare))?
        };
        let park = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("ssed-park".into())
                .spawn(move || park_loop(&shared))?
        };
        Ok(Conns {
            shared,
            accept: Some(accept),
            park: Some(park),
        })
    }

    pub fn addr(&self) -> io::Result<SocketAddr> {
        self.shared.listener.local_addr()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.counters.open.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.shared.settings.max_connections
    }

    /// Stops accepting, ends every stream (with its last chunk: each is rung
    /// and finishes by itself), wakes every connection waiting for a
    /// request, and joins every thread. Connections still busy after a
    /// grace period (a write blocked on a client that does not read) have
    /// their sockets shut down under them.
    pub fn stop(&mut self) {
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        // A blocked accept() returns EINVAL once its socket is shut down.
        let _ = socket2::SockRef::from(&shared.listener).shutdown(Shutdown::Read);
        shared.accept_waker.ring();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        // Parked streams end with their last chunk, written if it fits.
        shared.park.bell.ring();
        if let Some(park) = self.park.take() {
            let _ = park.join();
        }
        for entry in lock(&shared.registry).conns.values() {
            entry.peer.waker.ring();
            let _ = entry.peer.sock.shutdown(Shutdown::Read);
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut threads = Vec::new();
        let mut registry = lock(&shared.registry);
        loop {
            threads.extend(registry.conns.values_mut().filter_map(|e| e.thread.take()));
            if registry.conns.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for entry in registry.conns.values() {
                    let _ = entry.peer.sock.shutdown(Shutdown::Both);
                }
            }
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10));
            registry = shared
                .ended
                .wait_timeout(registry, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(registry);
        // Every connection has ended: each thread is returning.
        for thread in threads {
            let _ = thread.join();
        }
        let logs = &shared.logs;
        for t in [
            &logs.cap,
            &logs.resources,
            &logs.memory,
            &logs.buffers,
            &logs.evicted,
            &logs.timeouts,
            &logs.limits,
        ] {
            t.flush();
        }
    }
}

impl Drop for Conns {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.stop();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, mut spare: Option<std::fs::File>) {
    while !shared.stopping.load(Ordering::Acquire) {
        match shared.listener.accept() {
            Ok((sock, addr)) => admit(shared, sock, addr),
            Err(e) => {
                if shared.stopping.load(Ordering::Acquire) {
                    break;
                }
                match e.raw_os_error() {
                    Some(libc::EMFILE | libc::ENFILE) => {
                        drop(spare.take());
                        if let Ok((sock, _)) = shared.listener.accept() {
                            shared
                                .counters
                                .refused_resources
                                .fetch_add(1, Ordering::Relaxed);
                            shared.logs.resources.note("out of file descriptors");
                            refuse(
                                sock,
                                "the server is out of file descriptors; try again later",
                            );
                        }
                        spare = std::fs::File::open("/dev/null").ok();
                        shared.accept_waker.wait(ACCEPT_BACKOFF);
                    }
                    Some(libc::ENOBUFS | libc::ENOMEM) => {
                        shared.logs.resources.note("out of memory for sockets");
                        shared.accept_waker.wait(ACCEPT_BACKOFF);
                    }
                    // A peer that left before it was accepted, a signal, a
                    // firewall: nothing wrong with the listener.
                    Some(
                        libc::ECONNABORTED
                        | libc::EINTR
                        | libc::EPROTO
                        | libc::EPERM
                        | libc::EAGAIN,
                    ) => {}
                    _ => {
                        log::internal(&format!("accepting a connection failed: {e}"));
                        shared.accept_waker.wait(Duration::from_secs(1));
                    }
                }
            }
        }
    }
}

/// How long the accept thread waits for a connection with a thread to
/// end (most hand their stream to the park within milliseconds) before it
/// makes room or refuses: a burst of connections is taken as threads free
/// up, while the kernel queues the rest in the backlog.
const ADMIT_WAIT: Duration = Duration::from_millis(250);

/// Gives `sock` a thread, or refuses it from here without spawning anything.
fn admit(shared: &Arc<Shared>, sock: TcpStream, addr: SocketAddr) {
    let guard = &shared.settings.guard;
    if guard.critical() {
        shared
            .counters
            .refused_memory
            .fetch_add(1, Ordering::Relaxed);
        shared.logs.memory.note(&format!("{addr}"));
        return refuse(sock, &guard.why());
    }
    let max = shared.settings.max_connections;
    let mut registry = lock(&shared.registry);
    // Both change only under the registry lock, which is held here.
    let live = shared
        .counters
        .open
        .load(Ordering::Acquire)
        .saturating_sub(shared.evicting.load(Ordering::Acquire));
    if live >= max && !make_room(shared, &mut registry) {
        drop(registry);
        shared.counters.refused_cap.fetch_add(1, Ordering::Relaxed);
        shared.logs.cap.note(&format!("{addr}"));
        return refuse(
            sock,
            &format!("the server has {max} connections open (--max-connections); try again later"),
        );
    }
    // Connections with a thread: all but parked streams.
    let max_threads = shared.settings.max_threads;
    let threads = |shared: &Shared| {
        shared
            .counters
            .open
            .load(Ordering::Acquire)
            .saturating_sub(shared.evicting.load(Ordering::Acquire))
            .saturating_sub(shared.counters.parked.load(Ordering::Acquire))
    };
    let deadline = Instant::now() + ADMIT_WAIT;
    while threads(shared) >= max_threads && !shared.stopping.load(Ordering::Acquire) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        registry = shared
            .ended
            .wait_timeout(registry, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    if threads(shared) >= max_threads && !make_room(shared, &mut registry) {
        drop(registry);
        shared
            .counters
            .refused_resources
            .fetch_add(1, Ordering::Relaxed);
        shared.logs.resources.note(&format!("{addr}"));
        return refuse(
            sock,
            &format!(
                "the server has {max_threads} connections busy with requests (the system's thread limits); try again later"
            ),
        );
    }
    let peer = Arc::new(Peer {
        sock,
        waker: Arc::new(Doorbell::default()),
        waiting_since: AtomicU64::new(shared.now_ms() + 1),
    });
    let id = registry.next_id;
    registry.next_id += 1;
    registry.conns.insert(
        id,
        Entry {
            peer: Arc::clone(&peer),
            thread: None,
            evicted: false,
        },
    );
    shared.counters.open.fetch_add(1, Ordering::AcqRel);
    drop(registry);
    let spawned = {
        let shared = Arc::clone(shared);
        let peer = Arc::clone(&peer);
        thread::Builder::new()
            .name("ssed-conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || {
                // A parked stream's connection ends later, in the park.
                if !Conn::new(Arc::clone(&shared), peer, addr).serve(id) {
                    shared.end(id);
                }
            })
    };
    match spawned {
        Ok(handle) => {
            shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
            if let Some(entry) = lock(&shared.registry).conns.get_mut(&id) {
                entry.thread = Some(handle);
            }
        }
        Err(e) => {
            shared.end(id);
            shared
                .counters
                .refused_resources
                .fetch_add(1, Ordering::Relaxed);
            shared
                .logs
                .resources
                .note(&format!("cannot start a thread: {e}"));
            if let Ok(peer) = Arc::try_unwrap(peer) {
                refuse(
                    peer.sock,
                    "the server cannot start a thread; try again later",
                );
            }
        }
    }
}

/// At the cap: closes the connection that has waited longest for a request
/// head, if one has waited a while, so that a new client gets its place. An
/// idle keep-alive client reconnects when it needs to; a slowloris loses
/// its hold. Returns whether a connection was closed.
fn make_room(shared: &Shared, registry: &mut Registry) -> bool {
    if shared.evicting.load(Ordering::Acquire) >= MAX_EVICTING {
        return false;
    }
    let now = shared.now_ms();
    let min_wait = (shared.settings.header_timeout / 10)
        .clamp(Duration::from_millis(10), Duration::from_secs(1))
        .as_millis() as u64;
    let oldest = registry
        .conns
        .iter()
        .filter(|(_, e)| !e.evicted)
        .filter_map(|(&id, e)| {
            let since = e
                .peer
                .waiting_since
                .load(Ordering::Acquire)
                .checked_sub(1)?;
            (now.saturating_sub(since) >= min_wait).then_some((since, id))
        })
        .min();
    let Some((_, id)) = oldest else {
        return false;
    };
    let Some(entry) = registry.conns.get_mut(&id) else {
        return false;
    };
    entry.evicted = true;
    shared.evicting.fetch_add(1, Ordering::AcqRel);
    let _ = entry.peer.sock.shutdown(Shutdown::Both);
    shared.counters.evicted.fetch_add(1, Ordering::Relaxed);
    shared.logs.evicted.note("");
    true
}

/// Answers a connection that gets no thread: a canned `503`, written
/// without blocking, then closed. What the client already sent is read
/// and dropped first, so that closing does not reset the connection and
/// lose the answer.
fn refuse(sock: TcpStream, why: &str) {
    let body = format!("{}\n", serde_json::json!({ "error": why }));
    let retry = RETRY_AFTER_SECS.to_string();
    let len = body.len().to_string();
    let (mut bytes, _) = http1::response_head(
        503,
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", &len),
            ("Retry-After", &retry),
            ("Connection", "close"),
        ],
    );
    bytes.extend_from_slice(body.as_bytes());
    if sock.set_nonblocking(true).is_err() {
        return;
    }
    // A new socket's send buffer is empty: the answer fits at once.
    let _ = (&sock).write(&bytes);
    let _ = sock.shutdown(Shutdown::Write);
    let mut scratch = [0u8; 2048];
    for _ in 0..32 {
        match (&sock).read(&mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The thread of connection `id` has finished with it.
    fn end(&self, id: u64) {
        let mut registry = lock(&self.registry);
        if let Some(entry) = registry.conns.remove(&id) {
            if entry.evicted {
                self.evicting.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.counters.open.fetch_sub(1, Ordering::AcqRel);
        drop(registry);
        self.ended.notify_all();
    }
}

/// One connection, as its thread sees it.
struct Conn {
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
    fn new(shared: Arc<Shared>, peer: Arc<Peer>, addr: SocketAddr) -> Conn {
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
        self.shared.stopping.load(Ordering::Acquire)
    }

    /// Serves requests until the connection ends; `true` when its stream
    /// was parked instead (the park ends the connection).
    fn serve(&mut self, id: u64) -> bool {
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

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One request and its answer, as the [`Handler`] sees it.
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
        }
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.conn.addr
    }

    /// The doorbell a stream on this connection sleeps on; rung at shutdown.
    pub fn waker(&self) -> &Arc<Doorbell> {
        &self.conn.peer.waker
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
        self.request.headers = Vec::new();
        crate::sys::stack::release_unused_stack();
        let chunked = self.request.version == Version::Http11;
        let wire = Arc::new(SocketWire {
            peer: Arc::clone(&self.conn.peer),
            bytes: AtomicU64::new(0),
            failed: Mutex::new(None),
        });
        let shared = Arc::clone(&self.conn.shared);
        let parkable = body.run(
            Arc::clone(&wire) as Arc<dyn Wire>,
            chunked,
            &self.conn.peer.waker,
            &shared.stopping,
        );
        if let Some(body) = parkable {
            let version = self.request.version.as_str();
            let access = shared.settings.access_log.then(|| {
                (
                    self.conn.addr.to_string(),
                    std::mem::take(&mut self.request.method),
                    std::mem::take(&mut self.request.target),
                    version,
                    self.bytes,
                    self.started,
                )
            });
            return Some(Parked {
                id,
                peer: Arc::clone(&self.conn.peer),
                wire,
                body: Some(body),
                blocked_since: None,
                taken: 0,
                watching_out: false,
                look_at: None,
                access,
            });
        }
        self.bytes += wire.bytes.load(Ordering::Relaxed);
        self.failed = *lock(&wire.failed);
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
            log::access(&log::access_line(
                &self.conn.addr.to_string(),
                &self.request.method,
                &self.request.target,
                self.request.version.as_str(),
                self.status.unwrap_or(0),
                self.bytes,
                self.started.elapsed().as_secs_f64(),
            ));
        }
        !self.close && !self.conn.stopping()
    }
}

fn too_large(limit: usize) -> Refusal {
    Refusal::new(413, format!("the body is larger than {limit} bytes"))
}

/// A stream's connection, as its body writes it: its thread's writes wait
/// up to the write timeout, a publisher's do not wait at all. What went out
/// is counted, and how a write failed is kept, so that the connection is
/// closed (reset, if the client stopped reading) when the stream ends.
struct SocketWire {
    peer: Arc<Peer>,
    bytes: AtomicU64,
    failed: Mutex<Option<io::ErrorKind>>,
}

impl SocketWire {
    fn count(&self, written: io::Result<usize>) -> io::Result<usize> {
        match &written {
            Ok(n) => {
                self.bytes.fetch_add(*n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                lock(&self.failed).get_or_insert(e.kind());
            }
        }
        written
    }
}

impl Wire for SocketWire {
    fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match (&self.peer.sock).write_all(bytes) {
            Ok(()) => self.count(Ok(bytes.len())).map(|_| ()),
            Err(e) => {
                // Here a timeout (WouldBlock) is a client that stopped reading.
                lock(&self.failed).get_or_insert(e.kind());
                Err(e)
            }
        }
    }

    fn write_now(&self, bytes: &[u8]) -> io::Result<usize> {
        let sock = socket2::SockRef::from(&self.peer.sock);
        self.count(sock.send_with_flags(bytes, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL))
    }
}

/// The doorbell's token in the park's epoll set.
const BELL: u64 = u64::MAX;

/// The longest the park goes without looking at a stream whose bytes wait
/// for room (for the write timeout).
const PARK_TICK_MAX: Duration = Duration::from_secs(1);

/// Streams that wait without a thread (see the module's doc).
struct Park {
    epoll: Epoll,
    /// Rung when a parked stream's waker rings, a stream arrives, or the
    /// server stops.
    bell: EventFd,
    /// Connections whose waker rang since the park last looked.
    rung: Mutex<Vec<u64>>,
    /// Streams handed over and not yet watched; and whether the park has
    /// closed (the server stops): then a stream is ended by its own thread.
    arriving: Mutex<(Vec<Parked>, bool)>,
}

/// A parked stream's access-log fields: peer, method, target, version,
/// bytes written before it was parked, when its request began.
type AccessFields = (String, String, String, &'static str, u64, Instant);

/// A stream in the park.
struct Parked {
    /// Its connection's id in the registry.
    id: u64,
    peer: Arc<Peer>,
    wire: Arc<SocketWire>,
    body: Option<Box<dyn Parkable>>,
    /// Since when bytes have waited for room with none taken, if they do.
    blocked_since: Option<Instant>,
    /// Bytes the client had taken when last looked at: any taken since
    /// restarts the write timeout.
    taken: u64,
    /// Watched for room to write (after a short write).
    watching_out: bool,
    /// When the park is to look at it next, unless it is rung first (its
    /// entry in the park's schedule; others for it are stale).
    look_at: Option<Instant>,
    access: Option<AccessFields>,
}

impl Park {
    /// Takes a stream whose thread is about to end. Once the park has
    /// closed, the stream is ended here instead, with its last chunk.
    /// Either way the connection is no longer the thread's.
    fn take(shared: &Shared, parked: Parked) {
        let mut arriving = lock(&shared.park.arriving);
        if !arriving.1 {
            arriving.0.push(parked);
            drop(arriving);
            shared.park.bell.ring();
            return;
        }
        drop(arriving);
        end_with_last_chunk(shared, parked);
    }
}

/// The park's thread: watches every parked socket until the server stops,
/// then ends every parked stream with its last chunk.
fn park_loop(shared: &Arc<Shared>) {
    let park = &shared.park;
    let settings = &shared.settings;
    // How late a keep-alive or a write timeout may be noticed: looks that
    // fall due together are taken together, at most one round a tick.
    let tick = (settings.keepalive.min(settings.write_timeout) / 4)
        .clamp(Duration::from_millis(5), PARK_TICK_MAX);
    let mut streams: HashMap<u64, Parked> = HashMap::new();
    let mut ready = Vec::new();
    // When each stream is due a look (its next keep-alive, or the write
    // timeout's next check): the earliest first.
    let mut schedule: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut woken = Vec::new();
    // Parked streams whose connection thread is still to be joined.
    let mut joining: Vec<u64> = Vec::new();
    let mut trim = Trim::default();
    loop {
        let stopping = shared.stopping.load(Ordering::Acquire);
        let arriving = {
            let mut arriving = lock(&park.arriving);
            // From now on streams are ended by their own threads.
            arriving.1 = stopping;
            std::mem::take(&mut arriving.0)
        };
        for parked in arriving {
            let id = parked.id;
            let fd = parked.peer.sock.as_raw_fd();
            if let Err(e) = park.epoll.add(fd, id, false) {
                log::internal(&format!("a stream could not be parked: {e}"));
                end_parked(shared, parked, Err(e));
                continue;
            }
            shared.counters.parked.fetch_add(1, Ordering::AcqRel);
            // A connection's thread is free: the accept thread may be
            // waiting for one.
            shared.ended.notify_all();
            let park_shared = Arc::clone(shared);
            parked.peer.waker.forward(move || {
                lock(&park_shared.park.rung).push(id);
                park_shared.park.bell.ring();
            });
            streams.insert(id, parked);
            // What came while it was handed over.
            woken.push(id);
            joining.push(id);
        }
        join_threads(shared, &mut joining);
        if stopping {
            for (_, parked) in streams.drain() {
                park.epoll.remove(parked.peer.sock.as_raw_fd());
                shared.counters.parked.fetch_sub(1, Ordering::AcqRel);
                end_with_last_chunk(shared, parked);
            }
            return;
        }
        let now = Instant::now();
        let timeout = if !woken.is_empty() {
            Duration::ZERO
        } else if !joining.is_empty() {
            // A thread that handed its stream over is ending: join it soon,
            // so that its stack is given back.
            Duration::from_millis(1)
        } else {
            // Never less than a tick: looks a moment apart (thousands of
            // streams that connected together) are one round, not a spin.
            let next = schedule.peek().map(|Reverse((at, _))| *at);
            [next, trim.again()]
                .into_iter()
                .flatten()
                .min()
                .map_or(PARK_TICK_MAX, |at| {
                    at.saturating_duration_since(now).max(tick)
                })
        };
        park.epoll.wait(&mut ready, timeout);
        for r in ready.drain(..) {
            if r.token == BELL {
                park.bell.clear();
                woken.append(&mut lock(&park.rung));
            } else if r.hung_up {
                let gone = io::Error::from(io::ErrorKind::ConnectionReset);
                unpark(shared, &mut streams, r.token, Err(gone));
            } else if r.writable {
                woken.push(r.token);
            }
        }
        let now = Instant::now();
        while let Some(&Reverse((at, id))) = schedule.peek() {
            if at > now {
                break;
            }
            schedule.pop();
            if let Some(parked) = streams.get_mut(&id) {
                // A stale entry (the stream was looked at since) is dropped.
                if parked.look_at == Some(at) {
                    parked.look_at = None;
                    woken.push(id);
                }
            }
        }
        woken.sort_unstable();
        woken.dedup();
        for id in woken.drain(..) {
            if let Some(at) = pump_parked(shared, &mut streams, id, now, tick) {
                schedule.push(Reverse((at, id)));
            }
        }
        if settings.pressure.over() {
            relieve(shared, &mut streams, now);
        }
        if trim.due(shared.counters.open.load(Ordering::Acquire), now) {
            shrink(&mut streams);
            if schedule.capacity() > 64 && schedule.len() < schedule.capacity() / 4 {
                schedule.shrink_to(schedule.len() * 2);
            }
            shrink(&mut lock(&shared.registry).conns);
            crate::sys::heap::trim_heap();
        }
    }
}

/// How long a reader that takes nothing may hold its piece while the
/// streams' buffers are full (a quarter of the write timeout, if less).
const STALLED: Duration = Duration::from_secs(1);

/// The streams' buffers are spent: ends the parked streams whose readers
/// have taken nothing for longest, until there is room again, so that the
/// readers that keep up are not held up by those that do not. (A client
/// ended so resumes with its `Last-Event-ID`, as after any disconnection.)
fn relieve(shared: &Shared, streams: &mut HashMap<u64, Parked>, now: Instant) {
    // A reader that took something a moment ago is slow, not stalled:
    // only those that took nothing for a while are ended.
    let stalled = (shared.settings.write_timeout / 4).min(STALLED);
    let mut blocked: Vec<(Instant, u64)> = streams
        .iter()
        .filter_map(|(id, p)| p.blocked_since.map(|at| (at, *id)))
        .filter(|(at, _)| now.duration_since(*at) >= stalled)
        .collect();
    blocked.sort_unstable();
    for (_, id) in blocked {
        if !shared.settings.pressure.over() {
            break;
        }
        shared.logs.buffers.note("");
        let slow = io::Error::from(io::ErrorKind::OutOfMemory);
        unpark(shared, streams, id, Err(slow));
    }
}

/// When to give memory back after a load has gone: once the connections
/// open have fallen to half their peak since the last time (and by a few
/// hundred), at most once a second. A flood of streams that came and went
/// leaves its tables and heap pages otherwise at their high-water mark.
#[derive(Default)]
struct Trim {
    peak: usize,
    last: Option<Instant>,
    /// A fall came too soon after the last time: look again then.
    again: Option<Instant>,
}

impl Trim {
    const EVERY: Duration = Duration::from_secs(1);
    const FALL: usize = 256;

    fn due(&mut self, open: usize, now: Instant) -> bool {
        self.peak = self.peak.max(open);
        if open > self.peak / 2 || self.peak - open < Self::FALL {
            return false;
        }
        if let Some(next) = self
            .last
            .map(|at| at + Self::EVERY)
            .filter(|next| now < *next)
        {
            self.again = Some(next);
            return false;
        }
        self.last = Some(now);
        self.again = None;
        self.peak = open;
        true
    }

    /// When the park should look again, if a fall waits for its turn.
    fn again(&self) -> Option<Instant> {
        self.again
    }
}

/// A table that held a crowd and now holds a few gives its room back.
fn shrink<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

/// Joins the threads of connections whose streams were parked: each has
/// handed its stream over and is returning. A thread the accept thread has
/// not registered yet is looked for again next time.
fn join_threads(shared: &Shared, joining: &mut Vec<u64>) {
    if joining.is_empty() {
        return;
    }
    let mut threads = Vec::new();
    {
        let mut registry = lock(&shared.registry);
        joining.retain(|id| match registry.conns.get_mut(id) {
            None => false,
            Some(entry) => match entry.thread.take() {
                Some(thread) => {
                    threads.push(thread);
                    false
                }
                None => true,
            },
        });
    }
    for thread in threads {
        let _ = thread.join();
    }
}

/// Writes what a parked stream owes; ends it when it is over, or when its
/// bytes have waited longer than the write timeout. Returns when the park
/// is to look at it next, if that is sooner than it was to already: the
/// next keep-alive, or in `tick` while its bytes wait for room.
fn pump_parked(
    shared: &Shared,
    streams: &mut HashMap<u64, Parked>,
    id: u64,
    now: Instant,
    tick: Duration,
) -> Option<Instant> {
    let parked = streams.get_mut(&id)?;
    let body = parked.body.as_mut()?;
    let fd = parked.peer.sock.as_raw_fd();
    let due = match body.pump(false) {
        Pumped::Idle(keepalive) => {
            parked.blocked_since = None;
            if parked.watching_out {
                parked.watching_out = false;
                let _ = shared.park.epoll.modify(fd, id, false);
            }
            keepalive
        }
        Pumped::Blocked => {
            if !parked.watching_out {
                parked.watching_out = true;
                let _ = shared.park.epoll.modify(fd, id, true);
            }
            // What the client has taken: what was written less what the
            // kernel still holds for it.
            let written = parked.wire.bytes.load(Ordering::Relaxed);
            let taken = written.saturating_sub(crate::sys::epoll::unsent_bytes(fd).unwrap_or(0));
            if late(
                &mut parked.blocked_since,
                &mut parked.taken,
                taken,
                now,
                shared.settings.write_timeout,
            ) {
                let late = io::Error::from(io::ErrorKind::TimedOut);
                unpark(shared, streams, id, Err(late));
                return None;
            }
            now + tick
        }
        Pumped::Done(result) => {
            unpark(shared, streams, id, result);
            return None;
        }
    };
    // One entry in the schedule a stream, the soonest: a later one would
    // only find it looked at already.
    let due = due.max(now);
    if parked.look_at.is_some_and(|at| at <= due) {
        return None;
    }
    parked.look_at = Some(due);
    Some(due)
}

/// Whether a stream whose bytes wait for room is past the write timeout:
/// `since` it took nothing (`taken` is what it had taken then). A client
/// that reads, however slowly, is never late; one that took nothing for
/// `timeout` is, as a write that waits would have failed.
fn late(
    since: &mut Option<Instant>,
    taken: &mut u64,
    taken_now: u64,
    now: Instant,
    timeout: Duration,
) -> bool {
    if since.is_none() || taken_now != *taken {
        *taken = taken_now;
        *since = Some(now);
    }
    since.is_some_and(|at| now.duration_since(at) >= timeout)
}

/// Takes a stream out of the park and ends it.
fn unpark(shared: &Shared, streams: &mut HashMap<u64, Parked>, id: u64, result: io::Result<()>) {
    if let Some(parked) = streams.remove(&id) {
        shared.park.epoll.remove(parked.peer.sock.as_raw_fd());
        shared.counters.parked.fetch_sub(1, Ordering::AcqRel);
        end_parked(shared, parked, result);
    }
}

/// Ends a parked stream at shutdown: its last chunk, if it fits at once.
fn end_with_last_chunk(shared: &Shared, mut parked: Parked) {
    let result = match parked.body.as_mut().map(|b| b.pump(true)) {
        Some(Pumped::Done(result)) => result,
        _ => Ok(()),
    };
    end_parked(shared, parked, result);
}

/// Ends a parked stream: its body lets go of its topics and its place, its
/// access-log line is written, its socket closed (reset, if the client
/// stopped reading), and its connection leaves the registry.
fn end_parked(shared: &Shared, mut parked: Parked, result: io::Result<()>) {
    if let Some(body) = parked.body.take() {
        body.end(&result);
    }
    // A reader that stopped reading gets a reset: what the kernel holds
    // for it is dropped at once.
    let late = matches!(&result, Err(e) if is_timeout(e) || e.kind() == io::ErrorKind::OutOfMemory);
    if late {
        let _ = socket2::SockRef::from(&parked.peer.sock).set_linger(Some(Duration::ZERO));
    }
    let _ = parked.peer.sock.shutdown(Shutdown::Both);
    if let Some((peer, method, target, version, bytes, started)) = parked.access.take() {
        log::access(&log::access_line(
            &peer,
            &method,
            &target,
            version,
            200,
            bytes + parked.wire.bytes.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64(),
        ));
    }
    shared.end(parked.id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_given_back_once_a_crowd_has_gone() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut trim = Trim::default();
        assert!(!trim.due(1000, at(0)), "a crowd arrives");
        assert!(!trim.due(600, at(10)), "not half gone");
        assert!(trim.due(400, at(20)), "more than half gone");
        assert!(!trim.due(0, at(500)), "at most once a second");
        assert_eq!(trim.again(), Some(at(1020)), "and then at once");
        assert!(trim.due(0, at(1100)));
        assert_eq!(trim.again(), None);
        // A few connections coming and going never trim.
        for ms in 0..100 {
            assert!(!trim.due((ms % 3) as usize * 50, at(2000 + ms * 100)));
        }
    }

    #[test]
    fn a_slow_reader_is_never_late_one_that_takes_nothing_is() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let (mut since, mut taken) = (None, 0);
        // Blocked from 0 s; it takes a little every 20 s: never late, though
        // it is behind for 100 s.
        for (s, t) in [
            (0, 100),
            (20, 200),
            (40, 300),
            (60, 400),
            (80, 500),
            (100, 600),
        ] {
            assert!(!late(&mut since, &mut taken, t, at(s), timeout), "{s} s");
        }
        // Then nothing for 30 s: late.
        assert!(!late(&mut since, &mut taken, 600, at(129), timeout));
        assert!(late(&mut since, &mut taken, 600, at(130), timeout));
    }
}
