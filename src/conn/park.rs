//! The park: streams that are caught up wait here without a thread. One
//! thread and one epoll set watch every parked socket, for a hang-up
//! (seen at once, so subscriber counts are exact) and, after a write that
//! came up short, for room to write. The park looks at a stream only when
//! it is rung, when its socket has room, or when its next heartbeat (or,
//! while its bytes wait, the write timeout's next check) falls due: a
//! schedule, not a sweep. It ends a stream whose reader took nothing for
//! `--write-timeout`, and, while the streams' buffers are full, those whose
//! readers took nothing for longest. At shutdown it ends every stream with
//! its last chunk.

use super::wire::{is_timeout, SocketWire};
use super::{Look, Parkable, Peer, Shared};
use crate::log;
use crate::sync::lock;
use crate::sys::epoll::{Epoll, EventFd};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The doorbell's token in the park's epoll set.
const BELL: u64 = u64::MAX;

/// The longest the park goes without looking at a stream whose bytes wait
/// for room (for the write timeout).
const PARK_TICK_MAX: Duration = Duration::from_secs(1);

/// How long the park pauses after `epoll_wait` failed, before it tries
/// again: a failure that lasts must not make the park spin.
const WAIT_FAILED_PAUSE: Duration = Duration::from_millis(50);

/// Streams that wait without a thread (see the module's doc).
pub(super) struct Park {
    epoll: Epoll,
    /// Rung when a parked stream's bell rings, a stream arrives, or the
    /// server stops.
    bell: EventFd,
    /// Connections whose bell rang since the park last looked.
    rung: Mutex<Vec<u64>>,
    /// Streams handed over and not yet watched; and whether the park has
    /// closed (the server stops): then a stream is ended by its own thread.
    arriving: Mutex<(Vec<Parked>, bool)>,
}

/// A parked stream's access-log fields: peer, method, target, version,
/// bytes written before it was parked, when its request began, who.
pub(super) type AccessFields = (
    String,
    String,
    String,
    &'static str,
    u64,
    Instant,
    Option<String>,
);

/// A stream in the park.
pub(super) struct Parked {
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

impl Parked {
    pub(super) fn new(
        id: u64,
        peer: Arc<Peer>,
        wire: Arc<SocketWire>,
        body: Box<dyn Parkable>,
        access: Option<AccessFields>,
    ) -> Parked {
        Parked {
            id,
            peer,
            wire,
            body: Some(body),
            blocked_since: None,
            taken: 0,
            watching_out: false,
            look_at: None,
            access,
        }
    }
}

impl Park {
    pub(super) fn new(epoll: Epoll, bell: EventFd) -> Park {
        Park {
            epoll,
            bell,
            rung: Mutex::default(),
            arriving: Mutex::default(),
        }
    }

    /// Has its epoll set watch its own doorbell.
    pub(super) fn watch_bell(&self) -> io::Result<()> {
        self.epoll.add_readable(self.bell.raw(), BELL)
    }

    /// Wakes the park's thread.
    pub(super) fn ring(&self) {
        if let Err(e) = self.bell.ring() {
            log::internal(&format!("the park's doorbell could not be rung: {e}"));
        }
    }

    /// Takes a stream whose thread is about to end. Once the park has
    /// closed, the stream is ended here instead, with its last chunk.
    /// Either way the connection is no longer the thread's.
    pub(super) fn take(shared: &Shared, parked: Parked) {
        let mut arriving = lock(&shared.park.arriving);
        if !arriving.1 {
            arriving.0.push(parked);
            drop(arriving);
            shared.park.ring();
            return;
        }
        drop(arriving);
        end_with_last_chunk(shared, parked);
    }
}

/// The park's thread: watches every parked socket until the server stops,
/// then ends every parked stream with its last chunk.
pub(super) fn park_loop(shared: &Arc<Shared>) {
    let park = &shared.park;
    let settings = &shared.settings;
    // How late a keep-alive or a write timeout may be noticed: looks that
    // fall due together are taken together, at most one round a tick.
    let tick = (settings.heartbeat.min(settings.write_timeout) / 4)
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
        let stopping = shared.crew.stopping();
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
            parked.peer.bell.forward(move || {
                lock(&park_shared.park.rung).push(id);
                park_shared.park.ring();
            });
            streams.insert(id, parked);
            // What came while it was handed over.
            woken.push(id);
            joining.push(id);
        }
        join_threads(shared, &mut joining);
        if stopping {
            for (_, parked) in streams.drain() {
                // Its socket closes next: failing to unwatch it changes nothing.
                let _ = park.epoll.remove(parked.peer.sock.as_raw_fd());
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
        if let Err(e) = park.epoll.wait(&mut ready, timeout) {
            log::internal(&format!("the park could not wait for its sockets: {e}"));
            std::thread::sleep(WAIT_FAILED_PAUSE);
        }
        for r in ready.drain(..) {
            if r.token == BELL {
                if let Err(e) = park.bell.clear() {
                    log::internal(&format!("the park's doorbell could not be read: {e}"));
                }
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
            if let Some(at) = look_at(shared, &mut streams, id, now, tick) {
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

/// Looks at a parked stream: writes what it owes; ends it when it is over, or when its
/// bytes have waited longer than the write timeout. Returns when the park
/// is to look at it next, if that is sooner than it was to already: the
/// next keep-alive, or in `tick` while its bytes wait for room.
fn look_at(
    shared: &Shared,
    streams: &mut HashMap<u64, Parked>,
    id: u64,
    now: Instant,
    tick: Duration,
) -> Option<Instant> {
    let parked = streams.get_mut(&id)?;
    let body = parked.body.as_mut()?;
    let fd = parked.peer.sock.as_raw_fd();
    let due = match body.look(false) {
        Look::Idle(next) => {
            parked.blocked_since = None;
            if parked.watching_out {
                parked.watching_out = false;
                // A socket that cannot be re-armed is looked at on
                // schedule: nothing is lost but a wake-up.
                let _ = shared.park.epoll.modify(fd, id, false);
            }
            next
        }
        Look::Blocked => {
            if !parked.watching_out {
                parked.watching_out = true;
                let _ = shared.park.epoll.modify(fd, id, true);
            }
            // What the client has taken: what was written less what the
            // kernel still holds for it.
            let written = parked.wire.written();
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
        Look::Done(result) => {
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
        // Its socket closes next: failing to unwatch it changes nothing.
        let _ = shared.park.epoll.remove(parked.peer.sock.as_raw_fd());
        shared.counters.parked.fetch_sub(1, Ordering::AcqRel);
        end_parked(shared, parked, result);
    }
}

/// Ends a parked stream at shutdown: its last chunk, if it fits at once.
fn end_with_last_chunk(shared: &Shared, mut parked: Parked) {
    let result = match parked.body.as_mut().map(|b| b.look(true)) {
        Some(Look::Done(result)) => result,
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
    if let Some((peer, method, target, version, bytes, started, user)) = parked.access.take() {
        log::access(
            &log::Access {
                peer: &peer,
                method: &method,
                target: &target,
                version,
                status: 200,
                bytes: bytes + parked.wire.written(),
                secs: started.elapsed().as_secs_f64(),
                user: user.as_deref(),
            }
            .line(),
        );
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
