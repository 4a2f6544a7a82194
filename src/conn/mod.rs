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

mod accept;
mod exchange;
mod park;
mod wire;

pub use exchange::Exchange;
pub use wire::Wire;

use crate::log::Throttled;
use crate::memory::Guard;
use crate::sync::{lock, Crew, Doorbell};
use crate::sys::epoll::{Epoll, EventFd};
use park::Park;
use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What clients are told to wait at least before retrying a refused
/// connection.
pub const RETRY_AFTER_SECS: u32 = 5;

/// The `Retry-After` of a refusal: [`RETRY_AFTER_SECS`] and up to as much
/// again, drawn for each answer, so that clients refused together do not
/// come back together.
pub fn retry_after() -> String {
    (RETRY_AFTER_SECS + fastrand::u32(0..=RETRY_AFTER_SECS)).to_string()
}

/// At shutdown, how long streams have to write their last chunk and
/// readers to notice, before every socket is shut down under them.
const STOP_GRACE: Duration = Duration::from_millis(1000);

/// The connection layer's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub max_connections: usize,
    /// Connections that hold a thread at once (all but parked streams):
    /// what `pid_max` and `vm.max_map_count` allow.
    pub max_threads: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// A parked stream silent this long gets a heartbeat (`--keepalive`).
    pub heartbeat: Duration,
    /// A parked stream whose socket takes nothing for this long is dropped.
    pub write_timeout: Duration,
    pub access_log: bool,
    /// `--trusted-proxy`: peers whose `X-Forwarded-For` the access log
    /// believes.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The `X-Ssed-Mux` value of the server's own mux requests (from a
    /// loopback peer): their `X-Forwarded-For` names the mux's client.
    pub mux_secret: String,
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

/// How a response's body ends: with the last chunk (HTTP/1.1), or by
/// closing the connection (HTTP/1.0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delimit {
    Chunked,
    Close,
}

/// What a stream writes after its head, until it ends, the client leaves
/// or the server stops (`stopping` set, `bell` rung).
///
/// It runs once the handler has returned, so that the stack the handler
/// used to route and set up the request is not held, page after page, for
/// the life of the stream.
pub trait StreamBody: Send {
    /// Writes to `wire`, its body delimited as `delimit` says (the body
    /// frames its chunks). Returns the stream to park, if it is caught up
    /// and may wait without a thread; else it has ended.
    fn run(
        self: Box<Self>,
        wire: Arc<dyn Wire>,
        delimit: Delimit,
        bell: &Arc<Doorbell>,
        stopping: &std::sync::atomic::AtomicBool,
    ) -> Option<Box<dyn Parkable>>;
}

/// A stream that waits without a thread. The park looks at it
/// ([`Parkable::look`]) when its bell rings, when its socket has room after
/// a short write, and when what the last look returned falls due (its
/// next heartbeat); then [`Parkable::end`] once.
pub trait Parkable: Send {
    /// Writes what is owed and due without waiting; at `stopping`, its end.
    fn look(&mut self, stopping: bool) -> Look;
    /// The stream is over (`result`: how): it lets go of everything.
    fn end(self: Box<Self>, result: &io::Result<()>);
}

/// What a look at a parked stream found.
#[derive(Debug)]
pub enum Look {
    /// Everything owed went out; nothing falls due before this moment (the
    /// next heartbeat, or a look again) unless the stream is rung.
    Idle(Instant),
    /// The socket is full: bytes wait for room.
    Blocked,
    /// The stream is over: the client left (an error), or it ended.
    Done(io::Result<()>),
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
    /// The accept thread and the park, and the stop flag that streams
    /// watch too.
    crew: Crew,
    /// Cuts the accept thread's pauses short at shutdown.
    accept_bell: Doorbell,
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
    bell: Arc<Doorbell>,
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
            crew: Crew::default(),
            accept_bell: Doorbell::default(),
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
            park: Park::new(Epoll::new()?, EventFd::new()?),
        });
        shared.park.watch_bell()?;
        // Kept open so that, out of descriptors, one can be freed to accept
        // and refuse a connection instead of leaving it in the backlog, where
        // accept() would fail on it again at once (a busy loop).
        let spare = std::fs::File::open("/dev/null").ok();
        let accepting = Arc::clone(&shared);
        shared.crew.spawn("ssed-accept", move || {
            accept::accept_loop(&accepting, spare)
        })?;
        let parking = Arc::clone(&shared);
        shared
            .crew
            .spawn("ssed-park", move || park::park_loop(&parking))?;
        Ok(Conns { shared })
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
        if !shared.crew.begin_stop() {
            return;
        }
        // A blocked accept() returns EINVAL once its socket is shut down.
        let _ = socket2::SockRef::from(&shared.listener).shutdown(Shutdown::Read);
        shared.accept_bell.ring();
        // Parked streams end with their last chunk, written if it fits.
        shared.park.ring();
        shared.crew.join();
        for entry in lock(&shared.registry).conns.values() {
            entry.peer.bell.ring();
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
        self.stop();
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
