//! A stream's body: events framed as chunks and written to its connection.
//!
//! Two kinds of stream, one framing ([`Framer`]):
//!
//! - A per-client script (the clock, a training run) is written by its own
//!   thread, which sleeps until its next event is due ([`pump`]).
//! - A stream of topics (the hub's, and the shared demos') is an [`Outlet`].
//!   Whoever holds its lock writes everything from its cursors up to the
//!   hub's watermark, in order, so that no event is written twice or out of
//!   order. The connection's thread writes the head and the replay
//!   ([`Outlet::start`]), then the stream holds no thread: a publisher that
//!   finds it unlocked and caught up writes the new events itself, with one
//!   write that does not wait (no thread is woken, no context switched for
//!   that delivery), and the connection layer's park is rung (through the
//!   stream's [`Doorbell`]) when that write could not be made in full or
//!   another held the lock; it calls [`Outlet::pump`], which writes what is
//!   owed without waiting, the keep-alives, and the last chunk.
//!
//! Also the stream caps ([`Streams`]): hub streams and demo streams are
//! counted apart, so that demos cannot take the hub's places.
//!
//! This module writes to a [`Wire`]; it knows no socket.

use crate::http1;
use crate::hub::{Entry, Gap, Hub, Notify, Subscription, Take};
use crate::sse::{self, Event, GAP_EVENT};
use crate::sync::Doorbell;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::time::{Duration, Instant};

/// A stream's write buffer and batch keep at most this capacity after a
/// write: a burst (a subscriber catching up on thousands of events) must not
/// leave each of 10,000 streams holding the largest batch it ever wrote.
const KEEP_BUFFER: usize = 16 * 1024;
const KEEP_BATCH: usize = 256;

/// The reconnection delay sent to browsers as the first bytes of a stream,
/// unless `--retry-ms` says otherwise.
pub const RETRY_MS: u64 = 2000;

/// How the events of one stream are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/event-stream`.
    Sse,
    /// `application/x-ndjson`, one `{"id","event","data"}` object per event.
    Ndjson,
    /// `application/x-ndjson` whose lines are the events' data as they are
    /// (for streams whose data is already one JSON object per event).
    Lines,
    /// `text/plain`: each event's data as it is, and a line break.
    Text,
    /// SSE whose data is an envelope `{"topic":..,"data":..}` (`?tag=topic`).
    SseTagged,
    /// Text whose lines are envelopes `{"topic":..,"data":..}`.
    TextTagged,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Sse | Format::SseTagged => "text/event-stream",
            Format::Ndjson | Format::Lines => "application/x-ndjson",
            Format::Text | Format::TextTagged => "text/plain; charset=utf-8",
        }
    }
}

/// Where a stream's bytes go: its connection. Its own thread writes and
/// waits; a publisher writes only what fits at once.
pub trait Wire: Send + Sync {
    /// Writes all of `bytes`, waiting for room up to the write timeout.
    fn write_all(&self, bytes: &[u8]) -> io::Result<()>;
    /// Writes what fits now, without waiting: possibly fewer bytes than
    /// asked, or an error of kind `WouldBlock` when nothing fits.
    fn write_now(&self, bytes: &[u8]) -> io::Result<usize>;
}

/// Frames a stream's events: in the stream's format, as one HTTP/1.1 chunk
/// per batch (or bare, for HTTP/1.0), made in one buffer that keeps room in
/// front for the chunk's size line, so that the body is never moved.
pub struct Framer {
    chunked: bool,
    format: Format,
    buf: Vec<u8>,
    /// What [`Framer::retry`] sends.
    retry_ms: u64,
    /// Where the framed bytes start, once [`Framer::frame`] made them.
    framed: Option<usize>,
}

impl Framer {
    pub fn new(chunked: bool, format: Format) -> Framer {
        let mut buf = Vec::with_capacity(256);
        buf.resize(http1::CHUNK_SIZE_ROOM, 0);
        Framer {
            chunked,
            format,
            buf,
            retry_ms: RETRY_MS,
            framed: None,
        }
    }

    /// The reconnection delay that [`Framer::retry`] sends.
    pub fn with_retry(mut self, ms: u64) -> Framer {
        self.retry_ms = ms;
        self
    }

    fn is_empty(&self) -> bool {
        self.buf.len() == http1::CHUNK_SIZE_ROOM
    }

    pub fn event(&mut self, ev: &Event) {
        match self.format {
            Format::Sse => self.buf.extend_from_slice(ev.sse_bytes()),
            Format::Ndjson => sse::encode_ndjson(ev, &mut self.buf),
            Format::Lines | Format::Text => {
                self.buf.extend_from_slice(ev.data.as_bytes());
                self.buf.push(b'\n');
            }
            Format::SseTagged => sse::encode_tagged(ev, &mut self.buf),
            Format::TextTagged => {
                self.buf.extend_from_slice(sse::envelope(ev).as_bytes());
                self.buf.push(b'\n');
            }
        }
    }

    /// Something to write on an idle stream: a comment for SSE, an empty line
    /// (which NDJSON and text readers skip) otherwise.
    pub fn keepalive(&mut self) {
        match self.format {
            Format::Sse | Format::SseTagged => sse::comment("keep-alive", &mut self.buf),
            Format::Ndjson | Format::Lines | Format::Text | Format::TextTagged => {
                self.buf.push(b'\n')
            }
        }
    }

    /// For SSE, a `retry:` field, so that the client sees a live stream
    /// before the first event.
    pub fn retry(&mut self) {
        if matches!(self.format, Format::Sse | Format::SseTagged) {
            sse::retry(self.retry_ms, &mut self.buf);
        }
    }

    /// What was added, framed as one chunk: the bytes to write. Framed
    /// once: nothing may be added until [`Framer::clear`].
    pub fn frame(&mut self) -> &[u8] {
        if self.framed.is_none() {
            let room = http1::CHUNK_SIZE_ROOM;
            let start = if self.chunked {
                let start = http1::put_chunk_size(self.buf.len() - room, &mut self.buf[..room]);
                self.buf.extend_from_slice(b"\r\n");
                start
            } else {
                room
            };
            self.framed = Some(start);
        }
        self.framed()
    }

    /// The bytes [`Framer::frame`] made (none before).
    fn framed(&self) -> &[u8] {
        self.framed.map_or(&[][..], |start| &self.buf[start..])
    }

    fn framed_len(&self) -> usize {
        self.framed().len()
    }

    /// Empties the buffer for the next chunk, giving back what a burst made
    /// it take.
    pub fn clear(&mut self) {
        self.framed = None;
        self.buf.truncate(http1::CHUNK_SIZE_ROOM);
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf.shrink_to(256);
        }
    }

    /// The end of the body: the last chunk for HTTP/1.1, nothing for 1.0.
    fn end(&self) -> &'static [u8] {
        if self.chunked {
            http1::LAST_CHUNK
        } else {
            b""
        }
    }
}

/// What a [`Source`] had to give.
pub enum Next {
    /// Events were added to the batch.
    Events,
    /// Nothing yet; ask again.
    Idle,
    /// The stream is over.
    End,
}

/// Where a scripted stream's events come from.
pub trait Source: Send {
    /// Adds what is ready to `out`, or sleeps on `waker` for at most `budget`
    /// and returns [`Next::Idle`].
    fn next(&mut self, waker: &Doorbell, budget: Duration, out: &mut Vec<Arc<Event>>) -> Next;
}

/// A per-client sequence of events with pauses before each.
pub trait Script: Send {
    /// How long to pause before the next [`Script::fire`]; `None` ends the stream.
    fn pause(&self) -> Option<Duration>;
    /// Adds the next event(s) to `out`.
    fn fire(&mut self, out: &mut Vec<Arc<Event>>);
}

/// Runs a [`Script`] on schedule: each pause counts from when the previous
/// event was due, not from when it was written, so a clock does not drift.
pub struct Scripted<S> {
    script: S,
    due: Option<Instant>,
}

impl<S: Script> Scripted<S> {
    pub fn new(script: S) -> Self {
        Scripted { script, due: None }
    }
}

impl<S: Script> Source for Scripted<S> {
    fn next(&mut self, waker: &Doorbell, budget: Duration, out: &mut Vec<Arc<Event>>) -> Next {
        let Some(pause) = self.script.pause() else {
            return Next::End;
        };
        let now = Instant::now();
        let due = *self.due.get_or_insert(now) + pause;
        if due <= now {
            self.script.fire(out);
            // A client that fell far behind (a stalled write) resumes from now
            // rather than bursting every missed tick.
            self.due = Some(if now - due > pause.max(Duration::from_secs(1)) {
                now
            } else {
                due
            });
            return Next::Events;
        }
        waker.wait((due - now).min(budget));
        Next::Idle
    }
}

/// Writes a scripted stream until the source ends, the client leaves (a
/// write fails) or the server stops (`stopping`, with `waker` rung).
pub fn pump(
    framer: &mut Framer,
    wire: &dyn Wire,
    source: &mut dyn Source,
    waker: &Doorbell,
    stopping: &AtomicBool,
    keepalive: Duration,
) -> io::Result<()> {
    framer.retry();
    if !framer.is_empty() {
        wire.write_all(framer.frame())?;
        framer.clear();
    }
    let mut batch = Vec::new();
    let mut last_write = Instant::now();
    while !stopping.load(Ordering::Acquire) {
        let budget = keepalive.saturating_sub(last_write.elapsed());
        match source.next(waker, budget, &mut batch) {
            Next::Events => {
                for ev in batch.drain(..) {
                    framer.event(&ev);
                }
                wire.write_all(framer.frame())?;
                framer.clear();
                last_write = Instant::now();
            }
            Next::Idle => {
                if last_write.elapsed() >= keepalive {
                    framer.keepalive();
                    wire.write_all(framer.frame())?;
                    framer.clear();
                    last_write = Instant::now();
                }
            }
            Next::End => break,
        }
    }
    wire.write_all(framer.end())
}

/// Subscriptions to one or more topics, read as one stream in id order.
pub struct Feed {
    subs: Vec<Subscription>,
    /// The hub the topics belong to: its watermark keeps several topics in
    /// one order, and it names ids in gap notices. `None` for demo topics.
    hub: Option<Arc<Hub>>,
    /// Gaps found when subscribing, sent before anything else.
    gaps: Vec<Gap>,
    /// The `Last-Event-ID` the client resumed from, quoted in those gaps.
    resumed_from: Option<String>,
    /// Events sent first, after the gaps: a snapshot of the state.
    first: VecDeque<Arc<Event>>,
    /// Live events numbered up to this one are left out: the client has
    /// them already (it resumed after an id this instance had not reached).
    skip_through: u64,
    entries: Vec<Entry>,
    /// Where each subscription's entries start in `entries`, while a
    /// piece is taken.
    starts: Vec<usize>,
    /// What is owed before the live events and read a page at a time (a
    /// shared log's replay): while it lasts, no live event is taken.
    backlog: Option<Box<dyn Backlog>>,
}

/// Events a stream is owed before its live ones, kept elsewhere (a shared
/// log) and read a page at a time by the stream's own thread, so that a
/// long replay is never held whole.
pub trait Backlog: Send {
    /// The next page, in id order, bounded by the backlog itself; empty
    /// once everything was read. An error ends it with the gaps to report
    /// for what could not be read.
    fn next_page(&mut self) -> Result<Vec<Arc<Event>>, Vec<Gap>>;
}

/// Events one piece takes at most, whatever their size: what a write
/// carries and what a stream holds is bounded by count as well as bytes.
const MAX_PIECE_EVENTS: usize = 1024;

/// An SSE event whose chunk is at least this large is written alone, from
/// its own encoding, rather than copied into a piece with others: a slow
/// reader then holds a reference to it, shared with the topic and every
/// other reader, not a copy of its own.
const ALONE: usize = 4096;

impl Feed {
    pub fn new(
        subs: Vec<Subscription>,
        hub: Option<Arc<Hub>>,
        gaps: Vec<Gap>,
        resumed_from: Option<String>,
    ) -> Feed {
        Feed {
            subs,
            hub,
            gaps,
            resumed_from,
            first: VecDeque::new(),
            skip_through: 0,
            entries: Vec::new(),
            starts: Vec::new(),
            backlog: None,
        }
    }

    /// Sends what `backlog` holds after the gaps and before anything live.
    pub fn backlog(mut self, backlog: Box<dyn Backlog>) -> Feed {
        self.backlog = Some(backlog);
        self
    }

    /// Reads the backlog's next page once the last one went out.
    fn refill(&mut self) {
        if !self.first.is_empty() {
            return;
        }
        let Some(backlog) = self.backlog.as_mut() else {
            return;
        };
        match backlog.next_page() {
            Ok(page) if !page.is_empty() => self.first = page.into(),
            Ok(_) => self.backlog = None,
            Err(gaps) => {
                self.gaps.extend(gaps);
                self.backlog = None;
            }
        }
    }

    /// Whether a backlog is still being read.
    fn replaying(&self) -> bool {
        self.backlog.is_some()
    }

    /// Leaves out live events numbered up to `seq`.
    pub fn skip_through(mut self, seq: u64) -> Feed {
        self.skip_through = seq;
        self
    }

    /// Sends `events` before anything else (after gaps).
    pub fn first(mut self, events: Vec<Arc<Event>>) -> Feed {
        self.first = events.into();
        self
    }

    /// Moves the next piece of what is owed into `out`, in id order, gaps
    /// first: at most `bytes` (as [`Event::size`] counts them, and at
    /// least one event) and [`MAX_PIECE_EVENTS`]. What is left stays in
    /// the topics, behind the subscriptions' cursors. Returns how many
    /// were moved, and whether more is owed now.
    fn collect(&mut self, out: &mut VecDeque<Arc<Event>>, bytes: usize) -> (usize, bool) {
        let hub = self.hub.as_deref();
        for gap in self.gaps.drain(..) {
            out.push_back(gap_event(hub, &gap, self.resumed_from.as_deref()));
        }
        let mut left = Take {
            events: MAX_PIECE_EVENTS,
            bytes,
        };
        while let Some(ev) = self.first.front() {
            if !out.is_empty() && (left.events == 0 || ev.size() > left.bytes) {
                return (out.len(), true);
            }
            left.events = left.events.saturating_sub(1);
            left.bytes = left.bytes.saturating_sub(ev.size());
            out.extend(self.first.pop_front());
        }
        if left.events == 0 || self.backlog.is_some() {
            return (out.len(), true);
        }
        // Read the watermark first: every event at or below it is already in
        // its topic, so what is taken below is complete up to it.
        let watermark = hub.map_or(u64::MAX, Hub::watermark);
        // Several topics share the piece, and are merged by number: each
        // takes its share; the piece ends before the first number some
        // topic had to leave behind, and what each took past it is given
        // back, so that nothing goes out of order.
        let share = Take {
            events: (left.events / self.subs.len().max(1)).max(1),
            bytes: left.bytes / self.subs.len().max(1),
        };
        let mut cut = u64::MAX;
        self.starts.clear();
        for sub in &mut self.subs {
            self.starts.push(self.entries.len());
            let (gap, more) = sub.take_some(watermark, &mut self.entries, share);
            if let Some(gap) = gap {
                // A live subscriber the topic's memory moved past: it skips
                // ahead, told so, rather than being dropped.
                if let Some(hub) = hub {
                    hub.counters.lagged.fetch_add(1, Ordering::Relaxed);
                }
                out.push_back(gap_event(hub, &gap, None));
            }
            if more {
                if let Some(last) = self.entries.last() {
                    cut = cut.min(last.seq);
                }
            }
        }
        let more = cut < u64::MAX;
        if self.subs.len() > 1 {
            if more {
                for (i, sub) in self.subs.iter_mut().enumerate() {
                    let end = self
                        .starts
                        .get(i + 1)
                        .copied()
                        .unwrap_or(self.entries.len());
                    let mine = &self.entries[self.starts[i]..end];
                    sub.put_back(mine.len() - mine.partition_point(|e| e.seq <= cut));
                }
                self.entries.retain(|e| e.seq <= cut);
            }
            self.entries.sort_by_key(|e| e.seq);
        }
        if self.skip_through > 0 {
            let skip = self.skip_through;
            self.entries.retain(|e| e.seq > skip);
        }
        out.extend(self.entries.drain(..).map(|e| e.event));
        if self.entries.capacity() > KEEP_BATCH {
            self.entries.shrink_to(16);
        }
        (out.len(), more)
    }

    /// Whether a topic was closed under it (the hub was reset): the
    /// stream ends, and its client reconnects.
    fn ended(&self) -> bool {
        self.subs.iter().any(Subscription::is_closed)
    }

    fn sent(&self, events: usize) {
        if let Some(hub) = &self.hub {
            hub.counters
                .delivered
                .fetch_add(events as u64, Ordering::Relaxed);
        }
    }
}

/// `event: gap` with what is known of the lost events, counted in `hub`.
fn gap_event(hub: Option<&Hub>, gap: &Gap, after: Option<&str>) -> Arc<Event> {
    let data = serde_json::json!({
        "topic": gap.topic,
        "missed": gap.missed,
        "after": after,
        "through": gap.through.and_then(|seq| hub.map(|h| h.id(seq))),
    });
    let mut event = Event::named(GAP_EVENT, data.to_string());
    if let Some(hub) = hub {
        hub.counters.gaps.fetch_add(1, Ordering::Relaxed);
        // A hub gap is about a topic, as the hub's events are.
        event.topic = Some(gap.topic.clone());
    }
    Arc::new(event)
}

impl crate::conn::Pressure for Buffers {
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
    waker: Arc<Doorbell>,
    /// Set once the head is out and the body may be written.
    wire: OnceLock<Arc<dyn Wire>>,
    format: Format,
}

/// What a stream framed and has not written yet. Kept where it was made,
/// never copied: the framer's buffer, or an event's own encoding.
enum Pending {
    None,
    /// The framer's frame, from this byte on.
    Frame(usize),
    /// One event alone, from its own HTTP/1.1 chunk, from this byte on.
    Event(Arc<Event>, usize),
}

struct Core {
    feed: Feed,
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
    feed_more: bool,
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
    /// An outlet whose thread sleeps on `waker`, framing its pieces within
    /// `buffers`; subscribe it to topics (it is the [`Notify`] they hold),
    /// then [`Outlet::attach`] the feed.
    pub fn new(waker: Arc<Doorbell>, format: Format, buffers: Arc<Buffers>) -> Arc<Outlet> {
        Arc::new(Outlet {
            core: Mutex::new(Core {
                feed: Feed::new(Vec::new(), None, Vec::new(), None),
                framer: None,
                pending: Pending::None,
                reserved: 0,
                buffers,
                batch: VecDeque::new(),
                feed_more: false,
                open: true,
                failed: None,
                last_write: Instant::now(),
            }),
            waker,
            wire: OnceLock::new(),
            format,
        })
    }

    /// This outlet as the topics hold it.
    pub fn as_notify(self: &Arc<Self>) -> Arc<dyn Notify> {
        Arc::clone(self) as Arc<dyn Notify>
    }

    /// Gives the outlet the subscriptions made for it.
    pub fn attach(&self, feed: Feed) {
        self.lock().feed = feed;
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
        chunked: bool,
        retry_ms: u64,
        stopping: &AtomicBool,
    ) -> io::Result<()> {
        let mut core = self.lock();
        let framer = core
            .framer
            .insert(Framer::new(chunked, self.format).with_retry(retry_ms));
        framer.retry();
        if !framer.is_empty() {
            let written = wire.write_all(framer.frame());
            framer.clear();
            core.note(written)?;
        }
        let _ = self.wire.set(Arc::clone(&wire));
        core.catch_up(&*wire, stopping)
    }

    /// Writes, without waiting, what is owed and due: bytes left over from
    /// a short write first, then new events a piece at a time, then a
    /// keep-alive after `keepalive` of silence; at `stopping`, or once the
    /// hub closed a topic under it, the last chunk. [`Pumped::Blocked`]
    /// when the socket took less than that: call again once it has room.
    pub fn pump(&self, keepalive: Duration, stopping: bool) -> Pumped {
        let Some(wire) = self.wire.get() else {
            return Pumped::Done(Ok(()));
        };
        let wire = &**wire;
        let mut core = self.lock();
        if let Some(kind) = core.failed {
            return Pumped::Done(Err(kind.into()));
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
                Piece::NoRoom => return Pumped::Idle(Instant::now() + NO_ROOM_RETRY),
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
        if core.feed.ended() {
            return core.end_now(wire);
        }
        if more {
            drop(core);
            self.waker.ring();
            return Pumped::Idle(Instant::now());
        }
        if core.last_write.elapsed() >= keepalive {
            if let Some(framer) = core.framer.as_mut() {
                framer.keepalive();
                framer.frame();
                let n = framer.framed_len();
                core.hold(Pending::Frame(0), n);
                core.last_write = Instant::now();
                if !core.flush_now(wire) {
                    return core.blocked();
                }
            }
        }
        Pumped::Idle(core.last_write + keepalive)
    }

    /// Ends the stream: nothing more is written, and every subscription is
    /// let go (which breaks the cycle between the topics and this outlet).
    pub fn close(&self) {
        let mut core = self.lock();
        core.open = false;
        core.feed.subs.clear();
        core.batch.clear();
        core.let_go();
    }

    /// Writes what is new now, if that can be done at once; rings the
    /// waker otherwise.
    fn write_now(&self) {
        let Some(wire) = self.wire.get() else {
            // Not started yet: the start collects everything.
            return self.waker.ring();
        };
        let mut core = match self.core.try_lock() {
            Ok(core) => core,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // The park or another publisher is writing: the park looks
            // again once rung.
            Err(TryLockError::WouldBlock) => return self.waker.ring(),
        };
        if !core.open || core.failed.is_some() || !core.try_write(&**wire) {
            drop(core);
            self.waker.ring();
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
        self.waker.ring();
    }
}

/// What [`Outlet::pump`] did.
#[derive(Debug)]
pub enum Pumped {
    /// Everything owed went out; nothing falls due before this moment (the
    /// next keep-alive, or a look again) unless the stream is rung.
    Idle(Instant),
    /// The socket is full: bytes wait for room.
    Blocked,
    /// The stream is over: the client left (an error), or it ended.
    Done(io::Result<()>),
}

impl Core {
    /// The bytes that wait.
    fn pending_bytes(&self) -> &[u8] {
        match &self.pending {
            Pending::None => &[],
            Pending::Frame(from) => self
                .framer
                .as_ref()
                .map_or(&[][..], |f| &f.framed()[*from..]),
            Pending::Event(ev, from) => &ev.sse_chunk()[*from..],
        }
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
            Pending::Frame(from) | Pending::Event(_, from) => {
                *from += k;
                let left = self.pending_bytes().len();
                left == 0
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
            let (n, more) = self.feed.collect(&mut self.batch, piece);
            self.feed_more = more;
            if n == 0 {
                self.let_go();
                return Piece::Nothing;
            }
            self.feed.sent(n);
        }
        // An SSE event alone, or a large one, goes out from its own
        // encoding, made once for all its readers: no copy. What follows
        // it waits as it is, shared.
        let shared = framer.chunked && framer.format == Format::Sse;
        let large = |ev: &Event| ev.sse_chunk().len() >= ALONE;
        if shared && (self.batch.len() == 1 || self.batch.front().is_some_and(|e| large(e))) {
            if let Some(ev) = self.batch.pop_front() {
                let len = ev.sse_chunk().len();
                let more = !self.batch.is_empty() || self.feed_more;
                self.hold(Pending::Event(ev, 0), len);
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
        let more = !self.batch.is_empty() || self.feed_more;
        self.hold(Pending::Frame(0), len);
        Piece::Framed { more }
    }

    /// Writes what waits, without waiting; whether nothing waits now.
    fn flush_now(&mut self, wire: &dyn Wire) -> bool {
        let bytes = self.pending_bytes();
        if bytes.is_empty() {
            return true;
        }
        match wire.write_now(bytes) {
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
    fn blocked(&self) -> Pumped {
        match self.failed {
            Some(kind) => Pumped::Done(Err(kind.into())),
            None => Pumped::Blocked,
        }
    }

    /// The last chunk, if it fits at once: the stream is over either way.
    fn end_now(&mut self, wire: &dyn Wire) -> Pumped {
        self.open = false;
        let end = self.framer.as_ref().map_or(&b""[..], Framer::end);
        if matches!(self.pending, Pending::None) && !end.is_empty() {
            let _ = wire.write_now(end);
        }
        Pumped::Done(Ok(()))
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
                    self.feed.refill();
                }
                match self.frame_next() {
                    Piece::Nothing => return Ok(()),
                    Piece::NoRoom => {
                        if !self.feed.replaying() || stopping.load(Ordering::Acquire) {
                            return Ok(());
                        }
                        std::thread::sleep(NO_ROOM_RETRY);
                        continue;
                    }
                    Piece::Framed { .. } => {}
                }
            }
            let written = wire.write_all(self.pending_bytes());
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

/// How streams ended or were refused, for `/metrics`.
#[derive(Default)]
pub struct StreamCounters {
    /// Refused with 503: the cap was reached.
    pub refused: AtomicU64,
    /// A write blocked for `--write-timeout`: the client stopped reading.
    pub write_timeout: AtomicU64,
    /// A write failed: the client left.
    pub gone: AtomicU64,
    /// Ended while its reader took nothing and the streams' buffers were
    /// full.
    pub buffers: AtomicU64,
}

impl StreamCounters {
    /// Counts how a stream ended, from what its writing returned.
    pub fn ended(&self, result: &io::Result<()>) {
        if let Err(e) = result {
            let counter = match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => &self.write_timeout,
                io::ErrorKind::OutOfMemory => &self.buffers,
                _ => &self.gone,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A cap on streams of one kind, and their counters.
pub struct Streams {
    open: AtomicUsize,
    max: usize,
    pub counters: StreamCounters,
}

/// A place among the open streams; dropping it frees the place.
pub struct Slot {
    streams: Arc<Streams>,
}

impl Slot {
    /// The counters of the streams this place is among.
    pub fn counters(&self) -> &StreamCounters {
        &self.streams.counters
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.streams.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Streams {
    pub fn new(max: usize) -> Arc<Streams> {
        Arc::new(Streams {
            open: AtomicUsize::new(0),
            max,
            counters: StreamCounters::default(),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Takes a place, if the cap allows (`None` is counted as refused).
    pub fn reserve(self: &Arc<Self>) -> Option<Slot> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot {
            streams: Arc::clone(self),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Resume, Retention, Topic};

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
        fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
            self.bytes.lock().unwrap().extend_from_slice(bytes);
            Ok(())
        }

        fn write_now(&self, bytes: &[u8]) -> io::Result<usize> {
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

    fn framed(chunked: bool, format: Format, f: impl FnOnce(&mut Framer, &Memory)) -> String {
        let wire = Memory::default();
        let mut framer = Framer::new(chunked, format);
        f(&mut framer, &wire);
        wire.text()
    }

    fn write(framer: &mut Framer, wire: &Memory) {
        wire.write_all(framer.frame()).unwrap();
        framer.clear();
    }

    #[test]
    fn frames_chunks() {
        let got = framed(true, Format::Sse, |f, w| {
            f.retry();
            write(f, w);
            f.event(&Event::message("hi"));
            f.event(&Event::named("x", "y"));
            write(f, w);
            f.keepalive();
            write(f, w);
            w.write_all(f.end()).unwrap();
        });
        assert_eq!(
            got,
            "c\r\nretry: 2000\n\r\n\
             1c\r\ndata: hi\n\nevent: x\ndata: y\n\n\r\n\
             d\r\n: keep-alive\n\r\n0\r\n\r\n"
        );
    }

    #[test]
    fn http10_gets_the_bare_body() {
        let got = framed(false, Format::Sse, |f, w| {
            f.retry();
            f.event(&Event::message("hi"));
            write(f, w);
            w.write_all(f.end()).unwrap();
        });
        assert_eq!(got, "retry: 2000\ndata: hi\n\n");
    }

    #[test]
    fn ndjson_and_lines() {
        let ev = Event::named("p", "{\"a\": 1}");
        let got = framed(false, Format::Ndjson, |f, w| {
            f.retry();
            f.event(&ev);
            f.keepalive();
            write(f, w);
        });
        assert_eq!(
            got,
            "{\"id\":null,\"event\":\"p\",\"data\":\"{\\\"a\\\": 1}\"}\n\n"
        );
        let got = framed(false, Format::Lines, |f, w| {
            f.event(&ev);
            write(f, w);
        });
        assert_eq!(got, "{\"a\": 1}\n");
    }

    #[test]
    fn a_large_batch_does_not_stay_in_memory() {
        let wire = Memory::default();
        let mut framer = Framer::new(true, Format::Sse);
        for i in 0..100 {
            framer.event(&Event::message(format!("{i:01000}")));
        }
        write(&mut framer, &wire);
        assert!(
            framer.buf.capacity() <= KEEP_BUFFER,
            "{}",
            framer.buf.capacity()
        );
        framer.event(&Event::message(format!("{:01000}", 0)));
        write(&mut framer, &wire);
        // The big chunk, then a small one, each framed by its size: each
        // event is "data: " and 1000 digits and a blank line.
        let text = wire.text();
        let one = 6 + 1000 + 2;
        assert!(text.starts_with(&format!("{:x}\r\ndata: 0000", 100 * one)));
        assert!(text.ends_with(&format!("\r\n{one:x}\r\ndata: {:01000}\n\n\r\n", 0)));
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
        outlet.attach(Feed::new(subs, Some(Arc::clone(hub)), gaps, None));
        (outlet, waker)
    }

    /// What a stream holds of its own: its framer's buffer, what waits,
    /// and the events it took but did not frame.
    fn own_bytes(outlet: &Outlet) -> usize {
        let core = outlet.lock();
        let framer = core.framer.as_ref().map_or(0, |f| f.buf.capacity());
        framer + core.batch.capacity() * 8 + core.feed.entries.capacity() * 16
    }

    #[test]
    fn a_reader_that_takes_nothing_holds_one_piece_however_much_it_is_owed() {
        // 64 topics of 200 events of 1,000 bytes: 12.8 MB owed in all.
        let hub = Arc::new(Hub::new(keep(1000), 100, usize::MAX));
        let names: Vec<String> = (0..64).map(|t| format!("t{t}")).collect();
        for i in 0..200 {
            for name in &names {
                hub.publish(name, Event::message(format!("{i:01000}")))
                    .unwrap()
                    .1
                    .run();
            }
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let buffers = Buffers::new(1 << 20, 16 << 10);
        for format in [Format::Sse, Format::Ndjson, Format::SseTagged] {
            let (outlet, _) =
                outlet_with(&hub, &refs, format, Arc::clone(&buffers), &Resume::After(0));
            let wire = Memory::with_room(0);
            outlet.lock().framer = Some(Framer::new(true, format));
            let _ = outlet.wire.set(wire.clone());
            for _ in 0..10 {
                assert!(matches!(
                    outlet.pump(Duration::from_secs(60), false),
                    Pumped::Blocked
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
        let hub = Arc::new(Hub::new(keep(10_000), 10, usize::MAX));
        for i in 0..3000 {
            let topic = ["a", "b", "c"][(i * 7 + i / 5) % 3];
            hub.publish(topic, Event::message(format!("{i}")))
                .unwrap()
                .1
                .run();
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
        outlet.lock().framer = Some(Framer::new(true, Format::Sse));
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
        let hub = Arc::new(Hub::new(keep(100), 10, usize::MAX));
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
            o.lock().framer = Some(Framer::new(true, Format::Ndjson));
            let _ = o.wire.set(w.clone());
        }
        for i in 0..20 {
            publish(&hub, "t", &format!("{i:0500}"));
        }
        assert!(matches!(
            a.pump(Duration::from_secs(60), false),
            Pumped::Blocked
        ));
        // The second finds no room: it frames nothing, and looks again.
        assert!(matches!(
            b.pump(Duration::from_secs(60), false),
            Pumped::Idle(_)
        ));
        assert!(matches!(b.lock().pending, Pending::None));
        assert!(buffers.used() <= 4096);
        // Once the first reader takes its piece, the second gets room.
        *wa.room.lock().unwrap() = None;
        assert!(matches!(
            a.pump(Duration::from_secs(60), false),
            Pumped::Idle(_)
        ));
        *wb.room.lock().unwrap() = None;
        while matches!(b.pump(Duration::from_secs(60), false), Pumped::Idle(at) if at <= Instant::now())
        {
        }
        let lines = |w: &Memory| w.text().matches("\"data\"").count();
        assert_eq!((lines(&wa), lines(&wb)), (20, 20));
    }

    #[test]
    fn a_large_event_waits_as_itself_not_as_a_copy() {
        let hub = Arc::new(Hub::new(keep(100), 10, usize::MAX));
        let (outlet, _) = outlet(&hub, &["t"]);
        let wire = Memory::with_room(0);
        open(&outlet, wire.clone());
        publish(&hub, "t", "small");
        publish(&hub, "t", &"x".repeat(60_000));
        // Blocked on the first: the large one then waits alone, by reference.
        assert!(matches!(
            outlet.pump(Duration::from_secs(60), false),
            Pumped::Blocked
        ));
        *wire.room.lock().unwrap() = Some(40);
        let _ = outlet.pump(Duration::from_secs(60), false);
        assert!(matches!(outlet.lock().pending, Pending::Event(..)));
        assert!(own_bytes(&outlet) < 4096, "{}", own_bytes(&outlet));
    }

    /// The outlet's body as if its thread had written the retry and set the
    /// wire, without running the thread's loop.
    fn open(outlet: &Outlet, wire: Arc<dyn Wire>) {
        outlet.lock().framer = Some(Framer::new(true, Format::Sse));
        let _ = outlet.wire.set(wire);
    }

    fn publish(hub: &Hub, topic: &str, data: &str) {
        let (_, published) = hub.publish(topic, Event::message(data)).unwrap();
        published.run();
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
        let hub = Arc::new(Hub::new(keep(10), 10, usize::MAX));
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
        let hub = Arc::new(Hub::new(keep(10), 10, usize::MAX));
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
        let hub = Arc::new(Hub::new(keep(10), 10, usize::MAX));
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
        let hub = Arc::new(Hub::new(keep(10_000), 10, usize::MAX));
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
    fn the_cap() {
        let streams = Streams::new(2);
        let a = streams.reserve().unwrap();
        let _b = streams.reserve().unwrap();
        assert!(streams.reserve().is_none());
        assert_eq!(streams.counters.refused.load(Ordering::Relaxed), 1);
        drop(a);
        assert_eq!(streams.open(), 1);
        assert!(streams.reserve().is_some());
    }

    #[test]
    fn demo_topics_feed_an_outlet_too() {
        let topic = Topic::standalone("t", 4, None);
        let waker = Arc::new(Doorbell::default());
        let outlet = Outlet::new(
            Arc::clone(&waker),
            Format::Sse,
            Buffers::new(1 << 20, 64 << 10),
        );
        let sub = topic.subscribe(outlet.as_notify(), 0);
        outlet.attach(Feed::new(vec![sub], None, Vec::new(), None));
        let wire = Arc::new(Memory::default());
        open(&outlet, wire.clone());
        topic.publish(1, Event::message("tick"));
        assert_eq!(data_of(&wire.text()), ["tick"]);
    }
}
