//! Open streams: the threads that write them, and how they write.
//!
//! [`Streams`] owns every stream thread: it caps their number, counts them,
//! and at shutdown rings each one and joins it. A thread's body is [`pump`]:
//! it takes events from a [`Source`] (a topic subscription or a per-client
//! script), frames them with a [`Sink`] and writes them, one write per batch.
//! A failed write means the client left: the loop returns, and the thread's
//! subscription and slot are released as it unwinds its stack.
//!
//! This module writes bytes to any `io::Write`; it does not know tiny_http.

use crate::hub::{lock, Entry, Gap, Hub, Subscription, Waker};
use crate::sse::{self, Event};
use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Stack of a stream thread. It runs `pump` and JSON formatting, nothing
/// recursive; 64 KiB leaves a wide margin and lets a small device hold
/// thousands of streams.
const STREAM_STACK: usize = 64 * 1024;

/// The reconnection delay sent to browsers as the first bytes of a stream.
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
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Sse => "text/event-stream",
            Format::Ndjson | Format::Lines => "application/x-ndjson",
        }
    }
}

/// Frames events for one connection and writes them.
pub struct Sink<W: Write> {
    out: W,
    /// HTTP/1.1 chunked framing; HTTP/1.0 clients get the bare body, ended by
    /// closing the connection.
    chunked: bool,
    format: Format,
    buf: Vec<u8>,
}

impl<W: Write> Sink<W> {
    pub fn new(out: W, chunked: bool, format: Format) -> Self {
        Sink {
            out,
            chunked,
            format,
            buf: Vec::with_capacity(256),
        }
    }

    /// Writes the response head and, for SSE, a `retry:` field, so the client
    /// sees a live stream before the first event.
    pub fn start(&mut self, head: &[u8]) -> io::Result<()> {
        self.out.write_all(head)?;
        if self.format == Format::Sse {
            sse::retry(RETRY_MS, &mut self.buf);
        }
        self.flush_body()
    }

    pub fn send(&mut self, events: &[Arc<Event>]) -> io::Result<()> {
        for ev in events {
            match self.format {
                Format::Sse => self.buf.extend_from_slice(ev.sse_bytes()),
                Format::Ndjson => sse::encode_ndjson(ev, &mut self.buf),
                Format::Lines => {
                    self.buf.extend_from_slice(ev.data.as_bytes());
                    self.buf.push(b'\n');
                }
            }
        }
        self.flush_body()
    }

    /// Something to write on an idle stream: a comment for SSE, an empty line
    /// (which NDJSON readers skip) otherwise.
    pub fn keepalive(&mut self) -> io::Result<()> {
        match self.format {
            Format::Sse => sse::comment("keep-alive", &mut self.buf),
            Format::Ndjson | Format::Lines => self.buf.push(b'\n'),
        }
        self.flush_body()
    }

    /// Ends the body: the last chunk for HTTP/1.1.
    pub fn finish(&mut self) -> io::Result<()> {
        if self.chunked {
            self.out.write_all(b"0\r\n\r\n")?;
        }
        self.out.flush()
    }

    /// Writes what is in `buf` as one chunk (one write) and flushes it.
    fn flush_body(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return self.out.flush();
        }
        if self.chunked {
            // The chunk header goes in front of the body in the same buffer,
            // so that the chunk is one write; the buffer keeps its capacity.
            let mut header = [0u8; 18];
            let n = {
                let mut cursor = &mut header[..];
                write!(cursor, "{:x}\r\n", self.buf.len())?;
                18 - cursor.len()
            };
            self.buf.splice(0..0, header[..n].iter().copied());
            self.buf.extend_from_slice(b"\r\n");
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        } else {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.out.flush()
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

/// Where a stream's events come from.
pub trait Source: Send {
    /// Adds what is ready to `out`, or sleeps on `waker` for at most `budget`
    /// and returns [`Next::Idle`].
    fn next(&mut self, waker: &Waker, budget: Duration, out: &mut Vec<Arc<Event>>) -> Next;

    /// `events` of those given were written to the client.
    fn sent(&mut self, _events: usize) {}
}

/// Subscriptions to one or more topics, read as one stream.
pub struct Subscribed {
    subs: Vec<Subscription>,
    /// The hub the topics belong to: its watermark keeps several topics in
    /// one order, and it names ids in gap notices. `None` for demo topics.
    hub: Option<Arc<Hub>>,
    /// Gaps found when subscribing, sent before anything else.
    gaps: Vec<Gap>,
    /// The `Last-Event-ID` the client resumed from, quoted in those gaps.
    resumed_from: Option<String>,
    entries: Vec<Entry>,
}

impl Subscribed {
    pub fn new(
        subs: Vec<Subscription>,
        hub: Option<Arc<Hub>>,
        gaps: Vec<Gap>,
        resumed_from: Option<String>,
    ) -> Self {
        Subscribed {
            subs,
            hub,
            gaps,
            resumed_from,
            entries: Vec::new(),
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
    if let Some(hub) = hub {
        hub.counters.gaps.fetch_add(1, Ordering::Relaxed);
    }
    Arc::new(Event::named(GAP_EVENT, data.to_string()))
}

/// The name of the event that reports lost events; publishers cannot use it.
pub const GAP_EVENT: &str = "gap";

impl Source for Subscribed {
    fn next(&mut self, waker: &Waker, budget: Duration, out: &mut Vec<Arc<Event>>) -> Next {
        let hub = self.hub.as_deref();
        for gap in self.gaps.drain(..) {
            out.push(gap_event(hub, &gap, self.resumed_from.as_deref()));
        }
        // Read the watermark first: every event at or below it is already in
        // its topic, so what is taken below is complete up to it.
        let watermark = hub.map_or(u64::MAX, Hub::watermark);
        for sub in &mut self.subs {
            if let Some(gap) = sub.take(watermark, &mut self.entries) {
                // A live subscriber the topic's memory moved past: it skips
                // ahead, told so, rather than being dropped.
                if let Some(hub) = hub {
                    hub.counters.lagged.fetch_add(1, Ordering::Relaxed);
                }
                out.push(gap_event(hub, &gap, None));
            }
        }
        if self.subs.len() > 1 {
            self.entries.sort_by_key(|e| e.seq);
        }
        out.extend(self.entries.drain(..).map(|e| e.event));
        if !out.is_empty() {
            return Next::Events;
        }
        waker.wait(budget);
        Next::Idle
    }

    fn sent(&mut self, events: usize) {
        if let Some(hub) = &self.hub {
            hub.counters
                .delivered
                .fetch_add(events as u64, Ordering::Relaxed);
        }
    }
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
    fn next(&mut self, waker: &Waker, budget: Duration, out: &mut Vec<Arc<Event>>) -> Next {
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

/// Writes `source` to `sink` until the source ends, the client leaves (a
/// write fails) or the server stops.
pub fn pump<W: Write>(
    sink: &mut Sink<W>,
    source: &mut dyn Source,
    stream: &Stream,
    keepalive: Duration,
) -> io::Result<()> {
    let mut batch = Vec::new();
    let mut last_write = Instant::now();
    while !stream.stopping() {
        let budget = keepalive.saturating_sub(last_write.elapsed());
        match source.next(&stream.waker, budget, &mut batch) {
            Next::Events => {
                sink.send(&batch)?;
                source.sent(batch.len());
                batch.clear();
                last_write = Instant::now();
            }
            Next::Idle => {
                if last_write.elapsed() >= keepalive {
                    sink.keepalive()?;
                    last_write = Instant::now();
                }
            }
            Next::End => break,
        }
    }
    sink.finish()
}

/// Why a stream could not be opened.
#[derive(Debug)]
pub enum Refused {
    /// `--max-streams` are open.
    Full,
    /// The server is shutting down.
    Stopping,
}

/// How streams ended or were refused, for `/metrics`.
#[derive(Default)]
pub struct StreamCounters {
    pub refused: AtomicU64,
    /// A write blocked for `--write-timeout`: the client stopped reading.
    pub write_timeout: AtomicU64,
    /// A write failed: the client left.
    pub gone: AtomicU64,
}

impl StreamCounters {
    /// Counts how a stream ended, from what its writing returned.
    pub fn ended(&self, result: &io::Result<()>) {
        if let Err(e) = result {
            let counter = match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => &self.write_timeout,
                _ => &self.gone,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The set of open streams.
pub struct Streams {
    slots: Mutex<Slots>,
    pub counters: StreamCounters,
    /// Signalled whenever a slot is freed.
    freed: Condvar,
    max: usize,
    stopping: AtomicBool,
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    open: HashMap<u64, Slot>,
}

struct Slot {
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// A stream thread's handle on its own slot; dropping it frees the slot.
pub struct Stream {
    id: u64,
    pub waker: Arc<Waker>,
    streams: Arc<Streams>,
}

impl Stream {
    pub fn stopping(&self) -> bool {
        self.streams.stopping.load(Ordering::Acquire)
    }

    /// Runs `body` on this stream's own thread. If the system will not give
    /// a thread, the closure (and this slot) is dropped and the error returned.
    pub fn run<F>(self, body: F) -> io::Result<()>
    where
        F: FnOnce(&Stream) + Send + 'static,
    {
        let id = self.id;
        let streams = Arc::clone(&self.streams);
        let handle = thread::Builder::new()
            .name("ssed-stream".into())
            .stack_size(STREAM_STACK)
            .spawn(move || body(&self))?;
        // The thread may already have ended and freed its slot; then the
        // handle is simply dropped.
        if let Some(slot) = lock(&streams.slots).open.get_mut(&id) {
            slot.thread = Some(handle);
        }
        Ok(())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Our own JoinHandle is dropped with the slot: the thread is ending.
        lock(&self.streams.slots).open.remove(&self.id);
        self.streams.freed.notify_all();
    }
}

impl Streams {
    pub fn new(max: usize) -> Arc<Streams> {
        Arc::new(Streams {
            slots: Mutex::default(),
            counters: StreamCounters::default(),
            freed: Condvar::new(),
            max,
            stopping: AtomicBool::new(false),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        lock(&self.slots).open.len()
    }

    /// Takes a slot for a stream, if the cap allows; [`Stream::run`] then
    /// gives it a thread. Dropping the `Stream` unused frees the slot.
    pub fn reserve(self: &Arc<Self>) -> Result<Stream, Refused> {
        let mut slots = lock(&self.slots);
        if self.stopping.load(Ordering::Acquire) {
            return Err(Refused::Stopping);
        }
        if slots.open.len() >= self.max {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Full);
        }
        let id = slots.next_id;
        slots.next_id += 1;
        let waker = Arc::new(Waker::default());
        let slot = Slot {
            waker: Arc::clone(&waker),
            thread: None,
        };
        slots.open.insert(id, slot);
        Ok(Stream {
            id,
            waker,
            streams: Arc::clone(self),
        })
    }

    /// Tells every stream to end, then waits for their threads.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        let mut slots = lock(&self.slots);
        while !slots.open.is_empty() {
            let threads: Vec<_> = slots
                .open
                .values_mut()
                .filter_map(|slot| {
                    slot.waker.wake();
                    slot.thread.take()
                })
                .collect();
            drop(slots);
            for thread in threads {
                let _ = thread.join();
            }
            slots = lock(&self.slots);
            // A slot whose handle was not stored yet is waited for here.
            if !slots.open.is_empty() {
                slots = self
                    .freed
                    .wait_timeout(slots, Duration::from_millis(50))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink_bytes(
        chunked: bool,
        format: Format,
        f: impl FnOnce(&mut Sink<&mut Vec<u8>>),
    ) -> String {
        let mut out = Vec::new();
        let mut sink = Sink::new(&mut out, chunked, format);
        f(&mut sink);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn frames_chunks() {
        let ev = [
            Arc::new(Event::message("hi")),
            Arc::new(Event::named("x", "y")),
        ];
        let got = sink_bytes(true, Format::Sse, |s| {
            s.start(b"HEAD\r\n\r\n").unwrap();
            s.send(&ev).unwrap();
            s.keepalive().unwrap();
            s.finish().unwrap();
        });
        assert_eq!(
            got,
            "HEAD\r\n\r\nd\r\nretry: 2000\n\n\r\n\
             1c\r\ndata: hi\n\nevent: x\ndata: y\n\n\r\n\
             e\r\n: keep-alive\n\n\r\n0\r\n\r\n"
        );
    }

    #[test]
    fn http10_gets_the_bare_body() {
        let ev = [Arc::new(Event::message("hi"))];
        let got = sink_bytes(false, Format::Sse, |s| {
            s.start(b"H\r\n\r\n").unwrap();
            s.send(&ev).unwrap();
            s.finish().unwrap();
        });
        assert_eq!(got, "H\r\n\r\nretry: 2000\n\ndata: hi\n\n");
    }

    #[test]
    fn ndjson_and_lines() {
        let ev = [Arc::new(Event::named("p", "{\"a\": 1}"))];
        let got = sink_bytes(false, Format::Ndjson, |s| {
            s.start(b"").unwrap();
            s.send(&ev).unwrap();
            s.keepalive().unwrap();
        });
        assert_eq!(
            got,
            "{\"id\":null,\"event\":\"p\",\"data\":\"{\\\"a\\\": 1}\"}\n\n"
        );
        let got = sink_bytes(false, Format::Lines, |s| s.send(&ev).unwrap());
        assert_eq!(got, "{\"a\": 1}\n");
    }

    #[test]
    fn cap_and_stop() {
        let streams = Streams::new(2);
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..2 {
            let tx = tx.clone();
            streams
                .reserve()
                .unwrap()
                .run(move |s| {
                    tx.send(()).unwrap();
                    while !s.stopping() {
                        s.waker.wait(Duration::from_secs(10));
                    }
                })
                .unwrap();
        }
        rx.recv().unwrap();
        rx.recv().unwrap();
        assert_eq!(streams.open(), 2);
        assert!(matches!(streams.reserve(), Err(Refused::Full)));
        streams.stop();
        assert_eq!(streams.open(), 0);
        assert!(matches!(streams.reserve(), Err(Refused::Stopping)));
    }
}
