//! Taking connections: the accept loop, admission under the caps (and
//! near the memory limit), making room at the cap, and the canned refusal
//! written without a thread.

use super::exchange::Conn;
use super::{retry_after, Entry, Peer, Registry, Shared};
use crate::http1;
use crate::log;
use crate::sync::{lock, Doorbell};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::thread;
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

/// Connections being closed to make room that may still hold a thread:
/// past this, new connections are refused rather than evicting more.
const MAX_EVICTING: usize = 64;

/// Pause after an accept error that may last (out of descriptors or memory).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

pub(super) fn accept_loop(shared: &Arc<Shared>, mut spare: Option<std::fs::File>) {
    while !shared.crew.stopping() {
        match shared.listener.accept() {
            Ok((sock, addr)) => admit(shared, sock, addr),
            Err(e) => {
                if shared.crew.stopping() {
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
                        shared.accept_bell.wait(ACCEPT_BACKOFF);
                    }
                    Some(libc::ENOBUFS | libc::ENOMEM) => {
                        shared.logs.resources.note("out of memory for sockets");
                        shared.accept_bell.wait(ACCEPT_BACKOFF);
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
                        shared.accept_bell.wait(Duration::from_secs(1));
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
    while threads(shared) >= max_threads && !shared.crew.stopping() {
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
        bell: Arc::new(Doorbell::default()),
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
pub(super) fn refuse(sock: TcpStream, why: &str) {
    let body = format!("{}\n", serde_json::json!({ "error": why }));
    let retry = retry_after();
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
