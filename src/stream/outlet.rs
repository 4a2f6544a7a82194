//! A stream of topics, written by whoever holds its lock: the connection's
//! thread at its start (the head and a replay), then, with no thread of its
//! own, a publisher's fan-out that finds it free and caught up (one write
//! that does not wait), or the park (what is left, heartbeats, its end).
//! Whoever writes takes the next piece of what is owed, at most a bounded
//! size, within the budget all streams share ([`Buffers`]); bytes a short
//! write left wait where they are, never copied.

use super::framing::{Format, Framer, Framing, Head};
use super::reader::{Reader, KEEP_BATCH};
use crate::conn::{Look, Pressure, Wire};
use crate::hub::Notify;
use crate::sse::{Event, EXPIRED_EVENT};
use crate::sync::Doorbell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::time::{Duration, Instant};

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
    /// When the stream ends with an `expired` event: its token's end.
    ends_at: Option<Instant>,
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
                ends_at: None,
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

    /// Ends the stream at `at` (its token's end) with an `expired` event,
    /// so that a page fetches a new token and resumes with its
    /// `Last-Event-ID`: [`Outlet::look`] asks the park to look again by
    /// then at the latest.
    pub fn end_at(&self, at: Instant) {
        self.lock().ends_at = Some(at);
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a stream that is then written without a thread of its own:
    /// the `retry:` line and what is owed now (a replay) are written as the
    /// stream's thread would, waiting as needed, a piece at a time; from
    /// then on publishers write what fits at once, and [`Outlet::look`]
    /// the rest.
    pub fn start(
        &self,
        wire: Arc<dyn Wire>,
        framing: Framing,
        retry_ms: u64,
        stop_retry_ms: u64,
        stopping: &AtomicBool,
    ) -> io::Result<()> {
        let mut core = self.lock();
        let framer = core
            .framer
            .insert(Framer::new(framing, self.format, retry_ms).with_stop_retry(stop_retry_ms));
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
            return core.stop_now(wire);
        }
        if !core.flush_now(wire) {
            return core.blocked();
        }
        if core.ends_at.is_some_and(|at| Instant::now() >= at) {
            return core.expire_now(wire);
        }
        // A few pieces at a time: a reader far behind does not keep the
        // park from the others; it is rung to come back at once.
        let mut more = false;
        for _ in 0..PIECES_A_LOOK {
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
        let next = core.last_write + heartbeat;
        Look::Idle(core.ends_at.map_or(next, |at| at.min(next)))
    }

    /// Ends the stream: nothing more is written, and every subscription is
    /// let go (which breaks the cycle between the topics and this outlet).
    pub fn close(&self) {
        let mut core = self.lock();
        core.open = false;
        core.reader.subs.clear();
        // The watch holds this outlet as its subscriber: let it go too.
        core.reader.watch = None;
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
const PIECES_A_LOOK: usize = 4;

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

    /// The server stops: a `retry:` spread at random (see
    /// [`Framer::spread_retry`]) and the end of the body, if they fit at
    /// once; the stream is over either way.
    fn stop_now(&mut self, wire: &dyn Wire) -> Look {
        if matches!(self.pending, Pending::None) {
            if let Some(framer) = self.framer.as_mut() {
                if framer.spread_retry() {
                    framer.frame();
                    let n = framer.framed_len();
                    self.hold(Pending::Frame(0), n);
                    let _ = self.flush_now(wire);
                }
            }
        }
        self.end_now(wire)
    }

    /// The token's end: a last `expired` event and the end of the body,
    /// written if they fit at once; the stream is over either way.
    fn expire_now(&mut self, wire: &dyn Wire) -> Look {
        if let Some(framer) = self.framer.as_mut() {
            let note = serde_json::json!({
                "reason": "the token expired; fetch a new one and reconnect with Last-Event-ID",
            });
            framer.event(&Event::named(EXPIRED_EVENT, note.to_string()));
            framer.frame();
            let n = framer.framed_len();
            self.hold(Pending::Frame(0), n);
            let _ = self.flush_now(wire);
        }
        self.end_now(wire)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Fanouts, Hub, Resume, Retention, Subscribed, Topic};
    use crate::sse;

    /// A connection in memory: `write_now` takes at most `room` bytes at a
    /// time (then `WouldBlock`), as a socket whose buffer fills.
    #[derive(Default)]
    struct Memory {
        bytes: Mutex<Vec<u8>>,
        room: Mutex<Option<usize>>,
        now_writes: AtomicUsize,
    }

    impl Memory {
        fn with_room(room: usize) -> Arc<Memory> {
            let m = Memory::default();
            *m.room.lock().unwrap() = Some(room);
            Arc::new(m)
        }

        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }
    }

    impl Wire for Memory {
        fn write_all(&self, bufs: &[IoSlice<'_>]) -> io::Result<()> {
            for b in bufs {
                self.bytes.lock().unwrap().extend_from_slice(b);
            }
            Ok(())
        }

        fn write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let bytes: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.now_writes.fetch_add(1, Ordering::Relaxed);
            let mut room = self.room.lock().unwrap();
            let n = room.map_or(bytes.len(), |r| r.min(bytes.len()));
            if n == 0 && !bytes.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if let Some(r) = room.as_mut() {
                *r -= n;
            }
            self.bytes.lock().unwrap().extend_from_slice(&bytes[..n]);
            Ok(n)
        }
    }

    fn keep(history: usize) -> Retention {
        Retention {
            history,
            bytes: usize::MAX,
        }
    }

    /// An outlet subscribed to `names` of `hub`, live.
    fn outlet(hub: &Arc<Hub>, names: &[&str]) -> (Arc<Outlet>, Arc<Doorbell>) {
        let buffers = Buffers::new(1 << 20, 64 << 10);
        outlet_with(hub, names, Format::Sse, buffers, &Resume::Live)
    }

    fn outlet_with(
        hub: &Arc<Hub>,
        names: &[&str],
        format: Format,
        buffers: Arc<Buffers>,
        from: &Resume,
    ) -> (Arc<Outlet>, Arc<Doorbell>) {
        let waker = Arc::new(Doorbell::default());
        let outlet = Outlet::new(Arc::clone(&waker), format, buffers);
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let (subs, gaps) = hub.subscribe(&names, &outlet.as_notify(), from).unwrap();
        outlet.attach(Reader::subscribed(Subscribed::new(
            Arc::clone(hub),
            subs,
            gaps,
            None,
        )));
        (outlet, waker)
    }

    /// What a stream holds of its own: its framer's buffer, what waits,
    /// and the events it took but did not frame.
    fn own_bytes(outlet: &Outlet) -> usize {
        let core = outlet.lock();
        let framer = core.framer.as_ref().map_or(0, Framer::capacity);
        framer + core.batch.capacity() * 8 + core.reader.entries.capacity() * 16
    }

    #[test]
    fn a_reader_that_takes_nothing_holds_one_piece_however_much_it_is_owed() {
        // 64 topics of 200 events of 1,000 bytes: 12.8 MB owed in all.
        let hub = Arc::new(Hub::new(keep(1000), 100, usize::MAX, Fanouts::inline()));
        let names: Vec<String> = (0..64).map(|t| format!("t{t}")).collect();
        for i in 0..200 {
            for name in &names {
                hub.publish(name, Event::message(format!("{i:01000}")))
                    .unwrap();
            }
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let buffers = Buffers::new(1 << 20, 16 << 10);
        for format in [Format::Sse, Format::Ndjson, Format::SseTagged] {
            let (outlet, _) =
                outlet_with(&hub, &refs, format, Arc::clone(&buffers), &Resume::After(0));
            let wire = Memory::with_room(0);
            outlet.lock().framer = Some(Framer::new(Framing::Chunked, format, 2000));
            let _ = outlet.wire.set(wire.clone());
            for _ in 0..10 {
                assert!(matches!(
                    outlet.look(Duration::from_secs(60), false),
                    Look::Blocked
                ));
            }
            // One piece of 16 KiB (and the first event past it), no more.
            let own = own_bytes(&outlet);
            assert!(own < 40 << 10, "{format:?}: {own} bytes");
            assert!(buffers.used() <= (16 << 10) + 2048, "{}", buffers.used());
            outlet.close();
            assert_eq!(buffers.used(), 0, "an ended stream gives its place back");
        }
    }

    #[test]
    fn pieces_of_several_topics_keep_one_order() {
        let hub = Arc::new(Hub::new(keep(10_000), 10, usize::MAX, Fanouts::inline()));
        for i in 0..3000 {
            let topic = ["a", "b", "c"][(i * 7 + i / 5) % 3];
            hub.publish(topic, Event::message(format!("{i}"))).unwrap();
        }
        // Pieces of about ten events: every piece cuts the topics.
        let buffers = Buffers::new(1 << 20, 300);
        let (outlet, _) = outlet_with(
            &hub,
            &["a", "b", "c"],
            Format::Sse,
            buffers,
            &Resume::After(0),
        );
        let wire = Arc::new(Memory::default());
        outlet.lock().framer = Some(Framer::new(Framing::Chunked, Format::Sse, 2000));
        let _ = outlet.wire.set(wire.clone());
        outlet
            .lock()
            .catch_up(&*wire, &AtomicBool::new(false))
            .unwrap();
        let expected: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
        assert_eq!(data_of(&wire.text()), expected);
    }

    #[test]
    fn a_spent_budget_leaves_events_in_their_topics_until_there_is_room() {
        let hub = Arc::new(Hub::new(keep(100), 10, usize::MAX, Fanouts::inline()));
        // Room for one piece: two readers that take nothing.
        let buffers = Buffers::new(4096, 4096);
        let (a, _) = outlet_with(
            &hub,
            &["t"],
            Format::Ndjson,
            Arc::clone(&buffers),
            &Resume::Live,
        );
        let (b, _) = outlet_with(
            &hub,
            &["t"],
            Format::Ndjson,
            Arc::clone(&buffers),
            &Resume::Live,
        );
        let (wa, wb) = (Memory::with_room(0), Memory::with_room(0));
        for (o, w) in [(&a, &wa), (&b, &wb)] {
            o.lock().framer = Some(Framer::new(Framing::Chunked, Format::Ndjson, 2000));
            let _ = o.wire.set(w.clone());
        }
        for i in 0..20 {
            publish(&hub, "t", &format!("{i:0500}"));
        }
        assert!(matches!(
            a.look(Duration::from_secs(60), false),
            Look::Blocked
        ));
        // The second finds no room: it frames nothing, and looks again.
        assert!(matches!(
            b.look(Duration::from_secs(60), false),
            Look::Idle(_)
        ));
        assert!(matches!(b.lock().pending, Pending::None));
        assert!(buffers.used() <= 4096);
        // Once the first reader takes its piece, the second gets room.
        *wa.room.lock().unwrap() = None;
        assert!(matches!(
            a.look(Duration::from_secs(60), false),
            Look::Idle(_)
        ));
        *wb.room.lock().unwrap() = None;
        while matches!(b.look(Duration::from_secs(60), false), Look::Idle(at) if at <= Instant::now())
        {
        }
        let lines = |w: &Memory| w.text().matches("\"data\"").count();
        assert_eq!((lines(&wa), lines(&wb)), (20, 20));
    }

    #[test]
    fn a_large_event_waits_as_itself_not_as_a_copy() {
        let hub = Arc::new(Hub::new(keep(100), 10, usize::MAX, Fanouts::inline()));
        let (outlet, _) = outlet(&hub, &["t"]);
        let wire = Memory::with_room(0);
        open(&outlet, wire.clone());
        publish(&hub, "t", "small");
        publish(&hub, "t", &"x".repeat(60_000));
        // Blocked on the first: the large one then waits alone, by reference.
        assert!(matches!(
            outlet.look(Duration::from_secs(60), false),
            Look::Blocked
        ));
        *wire.room.lock().unwrap() = Some(40);
        let _ = outlet.look(Duration::from_secs(60), false);
        assert!(matches!(outlet.lock().pending, Pending::Event { .. }));
        assert!(own_bytes(&outlet) < 4096, "{}", own_bytes(&outlet));
    }

    /// The outlet's body as if its thread had written the retry and set the
    /// wire, without running the thread's loop.
    fn open(outlet: &Outlet, wire: Arc<dyn Wire>) {
        outlet.lock().framer = Some(Framer::new(Framing::Chunked, Format::Sse, 2000));
        let _ = outlet.wire.set(wire);
    }

    fn publish(hub: &Hub, topic: &str, data: &str) {
        hub.publish(topic, Event::message(data)).unwrap();
    }

    fn data_of(text: &str) -> Vec<String> {
        let mut d = sse::Decoder::new();
        let mut items = Vec::new();
        // De-chunk: keep the lines that are not chunk sizes.
        let body: String = text
            .split("\r\n")
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        d.feed(body.as_bytes(), &mut items).unwrap();
        items
            .into_iter()
            .filter_map(|i| match i {
                sse::Item::Event(m) => Some(m.data),
                sse::Item::Comment(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_caught_up_stream_is_written_by_the_publisher_without_a_wake() {
        let hub = Arc::new(Hub::new(keep(10), 10, usize::MAX, Fanouts::inline()));
        let (outlet, waker) = outlet(&hub, &["a"]);
        let wire = Arc::new(Memory::default());
        open(&outlet, wire.clone());
        publish(&hub, "a", "one");
        publish(&hub, "a", "two");
        assert_eq!(data_of(&wire.text()), ["one", "two"]);
        assert_eq!(wire.now_writes.load(Ordering::Relaxed), 2, "one write each");
        assert!(
            !waker.wait(Duration::ZERO),
            "the stream's thread was not woken"
        );
        assert_eq!(hub.counters.delivered.load(Ordering::Relaxed), 2);
        outlet.close();
        assert_eq!(
            hub.topics()[0].subscribers(),
            0,
            "closing lets go of the topic"
        );
    }

    #[test]
    fn a_short_write_leaves_the_rest_to_the_thread_in_order() {
        let hub = Arc::new(Hub::new(keep(10), 10, usize::MAX, Fanouts::inline()));
        let (outlet, waker) = outlet(&hub, &["a"]);
        // Room for the first chunk (34 bytes) and 10 of the second (41).
        let wire = Memory::with_room(44);
        open(&outlet, wire.clone());
        publish(&hub, "a", "first");
        publish(&hub, "a", "second event");
        assert!(
            waker.wait(Duration::ZERO),
            "the thread is woken for the rest"
        );
        // A third publish finds bytes owed: it writes nothing itself.
        publish(&hub, "a", "third");
        assert_eq!(wire.now_writes.load(Ordering::Relaxed), 2);
        // The thread finishes the frame, then everything after it.
        outlet
            .lock()
            .catch_up(&*wire, &AtomicBool::new(false))
            .unwrap();
        assert_eq!(data_of(&wire.text()), ["first", "second event", "third"]);
    }

    #[test]
    fn a_busy_stream_is_woken_not_waited_for() {
        let hub = Arc::new(Hub::new(keep(10), 10, usize::MAX, Fanouts::inline()));
        let (outlet, waker) = outlet(&hub, &["a"]);
        let wire = Arc::new(Memory::default());
        open(&outlet, wire.clone());
        let held = outlet.lock();
        publish(&hub, "a", "x");
        assert!(waker.wait(Duration::ZERO));
        assert_eq!(wire.now_writes.load(Ordering::Relaxed), 0);
        drop(held);
        outlet
            .lock()
            .catch_up(&*wire, &AtomicBool::new(false))
            .unwrap();
        assert_eq!(data_of(&wire.text()), ["x"]);
    }

    #[test]
    fn concurrent_publishers_keep_one_order_across_topics() {
        let hub = Arc::new(Hub::new(keep(10_000), 10, usize::MAX, Fanouts::inline()));
        let outlets: Vec<_> = (0..8).map(|_| outlet(&hub, &["a", "b"])).collect();
        let wires: Vec<_> = outlets
            .iter()
            .map(|(o, _)| {
                let w = Arc::new(Memory::default());
                open(o, w.clone());
                w
            })
            .collect();
        let publishers: Vec<_> = (0..4)
            .map(|p| {
                let hub = Arc::clone(&hub);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let topic = if (p + i) % 2 == 0 { "a" } else { "b" };
                        publish(&hub, topic, &format!("{p}-{i}"));
                    }
                })
            })
            .collect();
        for p in publishers {
            p.join().unwrap();
        }
        for ((outlet, _), wire) in outlets.iter().zip(&wires) {
            // What publishers could not write, the thread writes.
            outlet
                .lock()
                .catch_up(&**wire, &AtomicBool::new(false))
                .unwrap();
            let text = wire.text();
            let ids: Vec<u64> = text
                .lines()
                .filter_map(|l| l.strip_prefix("id: "))
                .map(|id| id.rsplit_once('-').unwrap().1.parse().unwrap())
                .collect();
            assert_eq!(
                ids,
                (1..=2000).collect::<Vec<u64>>(),
                "every event once, in id order"
            );
        }
    }

    #[test]
    fn demo_topics_feed_an_outlet_too() {
        let topic = Topic::standalone("t", 4, None, Fanouts::inline());
        let waker = Arc::new(Doorbell::default());
        let outlet = Outlet::new(
            Arc::clone(&waker),
            Format::Sse,
            Buffers::new(1 << 20, 64 << 10),
        );
        let sub = topic.subscribe(outlet.as_notify(), 0);
        outlet.attach(Reader::demo(sub, Vec::new()));
        let wire = Arc::new(Memory::default());
        open(&outlet, wire.clone());
        topic.publish(1, Event::message("tick"));
        assert_eq!(data_of(&wire.text()), ["tick"]);
    }
}
