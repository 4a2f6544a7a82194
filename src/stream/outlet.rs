//! A stream of topics, written by whoever holds its lock: the connection's
//! thread at its start (the head and a replay), then, with no thread of its
//! own, a publisher's fan-out that finds it free and caught up (one write
//! that does not wait), or the park (what is left, heartbeats, its end).
//! Whoever writes takes the next piece of what is owed, at most a bounded
//! size, within the budget all streams share ([`Buffers`]); bytes a short
//! write left wait where they are, never copied.

use super::framing::{Format, Framer, Framing, Head};
use super::reader::Reader;
use crate::conn::{Look, Pressure, Wire};
use crate::hub::Notify;
use crate::sse::Event;
use crate::sync::Doorbell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::time::{Duration, Instant};

/// A stream's batch of events keeps at most this capacity after a piece.
pub(super) const KEEP_BATCH: usize = 256;

/// An SSE event whose chunk is at least this large is written alone, from
/// its own encoding, rather than copied into a piece with others: a slow
/// reader then holds a reference to it, shared with the topic and every
/// other reader, not a copy of its own.
const ALONE: usize = 4096;

impl Pressure for Buffers {
    fn over(&self) -> bool {
        self.used() + self.piece > self.cap
    }
}

/// What all streams together may hold of their own: the pieces they framed
/// and have not yet written (a slow reader's). A stream frames its next
/// piece only once it has a place for it here; a stream that cannot get one
/// leaves its events in the topics behind its cursor, and tries again later.
/// So however many readers are slow, their buffers hold at most this.
#[derive(Debug)]
pub struct Buffers {
    used: AtomicUsize,
    cap: usize,
    /// The largest piece a stream frames at once.
    piece: usize,
}

impl Buffers {
    /// At most `cap` bytes in all, `piece` at a time.
    pub fn new(cap: usize, piece: usize) -> Arc<Buffers> {
        Arc::new(Buffers {
            used: AtomicUsize::new(0),
            cap: cap.max(piece),
            piece,
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The largest piece a stream frames at once.
    pub fn piece(&self) -> usize {
        self.piece
    }

    /// Takes `n` bytes, if there is room (or if nothing at all is held, so
    /// that one stream can always move on).
    fn reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used == 0 || used + n <= self.cap).then_some(used + n)
            })
            .is_ok()
    }

    /// Changes a reservation from `from` to `to` bytes: what a piece took
    /// once framed.
    fn resize(&self, from: usize, to: usize) {
        if to > from {
            self.used.fetch_add(to - from, Ordering::AcqRel);
        } else {
            self.used.fetch_sub(from - to, Ordering::AcqRel);
        }
    }
}

/// A stream of topics, written by whoever holds its lock: a publisher that
/// finds it free and caught up, or the park (see the module's doc).
pub struct Outlet {
    core: Mutex<Core>,
    /// Rung when what is owed could not be written at once: it rings the
    /// park once the stream is parked.
    bell: Arc<Doorbell>,
    /// Set once the head is out and the body may be written.
    wire: OnceLock<Arc<dyn Wire>>,
    format: Format,
}

/// What a stream framed and has not written yet. Kept where it was made,
/// never copied: the framer's buffer, or an event's own encoding (with the
/// framing's head and tail around it).
enum Pending {
    None,
    /// The framer's frame, from this byte on.
    Frame(usize),
    /// One event alone, from its own encoding: the bytes of head, event
    /// and tail, from this byte on.
    Event {
        event: Arc<Event>,
        head: Head,
        sent: usize,
    },
}

struct Core {
    reader: Reader,
    /// `None` until the body is started.
    framer: Option<Framer>,
    pending: Pending,
    /// What `pending` holds of the shared budget.
    reserved: usize,
    buffers: Arc<Buffers>,
    /// Events taken from the topics and not yet framed: what a piece left
    /// for the next (an event sent alone, and those after it).
    batch: VecDeque<Arc<Event>>,
    /// The topics held more than the last piece took.
    owed_more: bool,
    /// False once the stream has ended: nothing more is written.
    open: bool,
    /// A write failed: how. The stream ends.
    failed: Option<io::ErrorKind>,
    last_write: Instant,
}

/// What framing the next piece gave.
enum Piece {
    /// Bytes wait in `pending`; more may be owed after them.
    Framed { more: bool },
    /// Nothing is owed now.
    Nothing,
    /// The shared budget is spent: the events stay in their topics.
    NoRoom,
}

impl Outlet {
    /// An outlet whose thread sleeps on `bell`, framing its pieces within
    /// `buffers`; subscribe it to topics (it is the [`Notify`] they hold),
    /// then [`Outlet::attach`] the feed.
    pub fn new(bell: Arc<Doorbell>, format: Format, buffers: Arc<Buffers>) -> Arc<Outlet> {
        Arc::new(Outlet {
            core: Mutex::new(Core {
                reader: Reader::empty(),
                framer: None,
                pending: Pending::None,
                reserved: 0,
                buffers,
                batch: VecDeque::new(),
                owed_more: false,
                open: true,
                failed: None,
                last_write: Instant::now(),
            }),
            bell,
            wire: OnceLock::new(),
            format,
        })
    }

    /// This outlet as the topics hold it.
    pub fn as_notify(self: &Arc<Self>) -> Arc<dyn Notify> {
        Arc::clone(self) as Arc<dyn Notify>
    }

    /// Gives the outlet what it reads.
    pub fn attach(&self, reader: Reader) {
        self.lock().reader = reader;
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a stream that is then written without a thread of its own:
    /// the `retry:` line and what is owed now (a replay) are written as the
    /// stream's thread would, waiting as needed, a piece at a time; from
    /// then on publishers write what fits at once, and [`Outlet::pump`]
    /// the rest.
    pub fn start(
        &self,
        wire: Arc<dyn Wire>,
        framing: Framing,
        retry_ms: u64,
        stopping: &AtomicBool,
    ) -> io::Result<()> {
        let mut core = self.lock();
        let framer = core
            .framer
            .insert(Framer::new(framing, self.format, retry_ms));
        framer.retry();
        if !framer.is_empty() {
            let written = wire.write_all(&[IoSlice::new(framer.frame())]);
            framer.clear();
            core.note(written)?;
        }
        let _ = self.wire.set(Arc::clone(&wire));
        core.catch_up(&*wire, stopping)
    }

    /// Writes, without waiting, what is owed and due: bytes left over from
    /// a short write first, then new events a piece at a time, then a
    /// heartbeat after `heartbeat` of silence; at `stopping`, or once the
    /// hub closed a topic under it, the end of the body. [`Look::Blocked`]
    /// when the socket took less than that: look again once it has room.
    pub fn look(&self, heartbeat: Duration, stopping: bool) -> Look {
        let Some(wire) = self.wire.get() else {
            return Look::Done(Ok(()));
        };
        let wire = &**wire;
        let mut core = self.lock();
        if let Some(kind) = core.failed {
            return Look::Done(Err(kind.into()));
        }
        if stopping {
            return core.end_now(wire);
        }
        if !core.flush_now(wire) {
            return core.blocked();
        }
        // A few pieces at a time: a reader far behind does not keep the
        // park from the others; it is rung to come back at once.
        let mut more = false;
        for _ in 0..PIECES_A_PUMP {
            match core.frame_next() {
                Piece::Nothing => {
                    more = false;
                    break;
                }
                Piece::NoRoom => return Look::Idle(Instant::now() + NO_ROOM_RETRY),
                Piece::Framed { more: left } => {
                    if !core.flush_now(wire) {
                        return core.blocked();
                    }
                    more = left;
                    if !more {
                        break;
                    }
                }
            }
        }
        if core.reader.ended() {
            return core.end_now(wire);
        }
        if more {
            drop(core);
            self.bell.ring();
            return Look::Idle(Instant::now());
        }
        if core.last_write.elapsed() >= heartbeat {
            if let Some(framer) = core.framer.as_mut() {
                framer.heartbeat();
                framer.frame();
                let n = framer.framed_len();
                core.hold(Pending::Frame(0), n);
                core.last_write = Instant::now();
                if !core.flush_now(wire) {
                    return core.blocked();
                }
            }
        }
        Look::Idle(core.last_write + heartbeat)
    }

    /// Ends the stream: nothing more is written, and every subscription is
    /// let go (which breaks the cycle between the topics and this outlet).
    pub fn close(&self) {
        let mut core = self.lock();
        core.open = false;
        core.reader.subs.clear();
        core.batch.clear();
        core.let_go();
    }

    /// Writes what is new now, if that can be done at once; rings the
    /// waker otherwise.
    fn write_now(&self) {
        let Some(wire) = self.wire.get() else {
            // Not started yet: the start collects everything.
            return self.bell.ring();
        };
        let mut core = match self.core.try_lock() {
            Ok(core) => core,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // The park or another publisher is writing: the park looks
            // again once rung.
            Err(TryLockError::WouldBlock) => return self.bell.ring(),
        };
        if !core.open || core.failed.is_some() || !core.try_write(&**wire) {
            drop(core);
            self.bell.ring();
        }
    }
}

/// Pieces the park writes to one stream before it looks at the others.
const PIECES_A_PUMP: usize = 4;

/// How soon a stream that found the shared budget spent looks again.
const NO_ROOM_RETRY: Duration = Duration::from_millis(20);

impl Notify for Outlet {
    fn notify(&self) {
        self.write_now();
    }

    fn closed(&self) {
        self.bell.ring();
    }
}

impl Core {
    /// The bytes that wait, as slices of where they are (at most three:
    /// an event's head, its bytes, its tail); how many slices.
    fn pending_slices<'a>(&'a self, out: &mut [IoSlice<'a>; 3]) -> usize {
        match &self.pending {
            Pending::None => 0,
            Pending::Frame(from) => {
                let Some(framer) = self.framer.as_ref() else {
                    return 0;
                };
                out[0] = IoSlice::new(&framer.framed()[*from..]);
                1
            }
            Pending::Event { event, head, sent } => {
                let tail = self
                    .framer
                    .as_ref()
                    .map_or(&b""[..], |f| f.framing().tail());
                let mut skip = *sent;
                let mut n = 0;
                for part in [head.as_bytes(), event.sse_bytes(), tail] {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    out[n] = IoSlice::new(&part[skip..]);
                    skip = 0;
                    n += 1;
                }
                n
            }
        }
    }

    /// How many bytes wait.
    fn pending_len(&self) -> usize {
        let mut slices = [IoSlice::new(&[]); 3];
        let n = self.pending_slices(&mut slices);
        slices[..n].iter().map(|s| s.len()).sum()
    }

    /// Holds `pending`, `n` bytes, against the budget it reserved.
    fn hold(&mut self, pending: Pending, n: usize) {
        self.buffers.resize(self.reserved, n);
        self.reserved = n;
        self.pending = pending;
    }

    /// `k` more bytes went out; once all did, the piece is let go.
    fn advance(&mut self, k: usize) {
        let done = match &mut self.pending {
            Pending::None => true,
            Pending::Frame(from) | Pending::Event { sent: from, .. } => {
                *from += k;
                self.pending_len() == 0
            }
        };
        if done {
            self.let_go();
            self.last_write = Instant::now();
        }
    }

    /// Drops what waits, and gives its place in the budget back.
    fn let_go(&mut self) {
        if matches!(self.pending, Pending::Frame(_)) {
            if let Some(framer) = self.framer.as_mut() {
                framer.clear();
            }
        }
        self.pending = Pending::None;
        self.buffers.resize(self.reserved, 0);
        self.reserved = 0;
    }

    /// Frames the next piece of what is owed, if nothing waits and the
    /// budget has room for it.
    fn frame_next(&mut self) -> Piece {
        if !matches!(self.pending, Pending::None) {
            return Piece::Framed { more: true };
        }
        let Some(framer) = self.framer.as_mut() else {
            return Piece::Nothing;
        };
        let piece = self.buffers.piece();
        if !self.buffers.reserve(piece) {
            return Piece::NoRoom;
        }
        self.reserved = piece;
        if self.batch.is_empty() {
            let (n, more) = self.reader.collect(&mut self.batch, piece);
            self.owed_more = more;
            if n == 0 {
                self.let_go();
                return Piece::Nothing;
            }
            self.reader.sent(n);
        }
        // An SSE event alone, or a large one, goes out from its own
        // encoding, made once for all its readers: no copy. What follows
        // it waits as it is, shared.
        let shared = framer.format() == Format::Sse;
        let large = |ev: &Event| ev.sse_bytes().len() >= ALONE;
        if shared && (self.batch.len() == 1 || self.batch.front().is_some_and(|e| large(e))) {
            if let Some(event) = self.batch.pop_front() {
                let framing = framer.framing();
                let head = framing.head(event.sse_bytes().len());
                let len = head.as_bytes().len() + event.sse_bytes().len() + framing.tail().len();
                let more = !self.batch.is_empty() || self.owed_more;
                self.hold(
                    Pending::Event {
                        event,
                        head,
                        sent: 0,
                    },
                    len,
                );
                return Piece::Framed { more };
            }
        }
        while let Some(ev) = self.batch.front() {
            if shared && large(ev) {
                break;
            }
            framer.event(ev);
            self.batch.pop_front();
        }
        if self.batch.capacity() > KEEP_BATCH {
            self.batch.shrink_to(16);
        }
        framer.frame();
        let len = framer.framed_len();
        let more = !self.batch.is_empty() || self.owed_more;
        self.hold(Pending::Frame(0), len);
        Piece::Framed { more }
    }

    /// Writes what waits, without waiting; whether nothing waits now.
    fn flush_now(&mut self, wire: &dyn Wire) -> bool {
        let mut slices = [IoSlice::new(&[]); 3];
        let n = self.pending_slices(&mut slices);
        if n == 0 {
            return true;
        }
        match wire.write_now(&slices[..n]) {
            Ok(k) => self.advance(k),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                self.failed = Some(e.kind());
                return false;
            }
        }
        matches!(self.pending, Pending::None)
    }

    /// Bytes wait for room, or the write failed.
    fn blocked(&self) -> Look {
        match self.failed {
            Some(kind) => Look::Done(Err(kind.into())),
            None => Look::Blocked,
        }
    }

    /// The last chunk, if it fits at once: the stream is over either way.
    fn end_now(&mut self, wire: &dyn Wire) -> Look {
        self.open = false;
        let end = self.framer.as_ref().map_or(&b""[..], Framer::end);
        if matches!(self.pending, Pending::None) && !end.is_empty() {
            let _ = wire.write_now(&[IoSlice::new(end)]);
        }
        Look::Done(Ok(()))
    }

    /// A publisher's write: the next piece of what is owed, in one write
    /// that does not wait. Returns whether all that is owed went out.
    fn try_write(&mut self, wire: &dyn Wire) -> bool {
        if !matches!(self.pending, Pending::None) {
            return false;
        }
        match self.frame_next() {
            Piece::Nothing => true,
            Piece::NoRoom => false,
            Piece::Framed { more } => self.flush_now(wire) && !more,
        }
    }

    /// The start: writes what is owed a piece at a time, waiting as
    /// needed, a backlog's pages included. A piece the budget has no room
    /// for is left to the park, once the backlog is read (only this
    /// thread reads it: a publisher or the park never waits for it).
    fn catch_up(&mut self, wire: &dyn Wire, stopping: &AtomicBool) -> io::Result<()> {
        if let Some(kind) = self.failed {
            return Err(kind.into());
        }
        loop {
            if matches!(self.pending, Pending::None) {
                if self.batch.is_empty() {
                    self.reader.refill();
                }
                match self.frame_next() {
                    Piece::Nothing => return Ok(()),
                    Piece::NoRoom => {
                        if !self.reader.replaying() || stopping.load(Ordering::Acquire) {
                            return Ok(());
                        }
                        std::thread::sleep(NO_ROOM_RETRY);
                        continue;
                    }
                    Piece::Framed { .. } => {}
                }
            }
            let mut slices = [IoSlice::new(&[]); 3];
            let n = self.pending_slices(&mut slices);
            let written = wire.write_all(&slices[..n]);
            self.note(written)?;
            self.let_go();
        }
    }

    fn note(&mut self, written: io::Result<()>) -> io::Result<()> {
        match written {
            Ok(()) => {
                self.last_write = Instant::now();
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e.kind());
                Err(e)
            }
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // A stream that ends with bytes waiting gives their place back.
        self.buffers.resize(self.reserved, 0);
    }
}
