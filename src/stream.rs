//! A stream's write loop: events from a [`Source`] (a topic subscription or
//! a per-client script), framed by a [`Sink`], written to the connection one
//! batch at a time. A failed write means the client left: the loop returns,
//! and the connection layer closes the connection.
//!
//! Also the stream caps ([`Streams`]): hub streams and demo streams are
//! counted apart, so that demos cannot take the hub's places.
//!
//! This module writes bytes to any `io::Write`; it knows no socket.

use crate::http1;
use crate::hub::{Entry, Gap, Hub, Subscription};
use crate::sse::{self, Event, GAP_EVENT};
use crate::waker::Waker;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stream's write buffer and batch keep at most this capacity after a
/// write: a burst (a subscriber catching up on thousands of events) must not
/// leave each of 10,000 streams holding the largest batch it ever wrote.
const KEEP_BUFFER: usize = 16 * 1024;
const KEEP_BATCH: usize = 256;

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
    /// The next chunk: room for its size line, then the body. Each chunk is
    /// one write, and the size goes in front without moving the body.
    buf: Vec<u8>,
}

impl<W: Write> Sink<W> {
    pub fn new(out: W, chunked: bool, format: Format) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.resize(http1::CHUNK_SIZE_ROOM, 0);
        Sink {
            out,
            chunked,
            format,
            buf,
        }
    }

    /// For SSE, writes a `retry:` field, so that the client sees a live
    /// stream before the first event.
    pub fn start(&mut self) -> io::Result<()> {
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
            self.out.write_all(http1::LAST_CHUNK)?;
        }
        self.out.flush()
    }

    /// Writes what is in `buf` as one chunk, in one write.
    fn flush_body(&mut self) -> io::Result<()> {
        let room = http1::CHUNK_SIZE_ROOM;
        let len = self.buf.len() - room;
        if len == 0 {
            return Ok(());
        }
        let start = if self.chunked {
            let start = http1::put_chunk_size(len, &mut self.buf[..room]);
            self.buf.extend_from_slice(b"\r\n");
            start
        } else {
            room
        };
        let written = self.out.write_all(&self.buf[start..]);
        self.buf.truncate(room);
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf.shrink_to(256);
        }
        written?;
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
/// write fails) or the server stops (`stopping`, with `waker` rung).
pub fn pump<W: Write>(
    sink: &mut Sink<W>,
    source: &mut dyn Source,
    waker: &Waker,
    stopping: &AtomicBool,
    keepalive: Duration,
) -> io::Result<()> {
    let mut batch = Vec::new();
    let mut last_write = Instant::now();
    while !stopping.load(Ordering::Acquire) {
        let budget = keepalive.saturating_sub(last_write.elapsed());
        match source.next(waker, budget, &mut batch) {
            Next::Events => {
                sink.send(&batch)?;
                source.sent(batch.len());
                batch.clear();
                if batch.capacity() > KEEP_BATCH {
                    batch.shrink_to(16);
                }
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

/// How streams ended or were refused, for `/metrics`.
#[derive(Default)]
pub struct StreamCounters {
    /// Refused with 503: the cap was reached.
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
            s.start().unwrap();
            s.send(&ev).unwrap();
            s.keepalive().unwrap();
            s.send(&[]).unwrap();
            s.finish().unwrap();
        });
        assert_eq!(
            got,
            "d\r\nretry: 2000\n\n\r\n\
             1c\r\ndata: hi\n\nevent: x\ndata: y\n\n\r\n\
             e\r\n: keep-alive\n\n\r\n0\r\n\r\n"
        );
    }

    #[test]
    fn http10_gets_the_bare_body() {
        let ev = [Arc::new(Event::message("hi"))];
        let got = sink_bytes(false, Format::Sse, |s| {
            s.start().unwrap();
            s.send(&ev).unwrap();
            s.finish().unwrap();
        });
        assert_eq!(got, "retry: 2000\n\ndata: hi\n\n");
    }

    #[test]
    fn ndjson_and_lines() {
        let ev = [Arc::new(Event::named("p", "{\"a\": 1}"))];
        let got = sink_bytes(false, Format::Ndjson, |s| {
            s.start().unwrap();
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
    fn a_large_batch_does_not_stay_in_memory() {
        let big: Vec<_> = (0..100)
            .map(|i| Arc::new(Event::message(format!("{i:01000}"))))
            .collect();
        let mut out = Vec::new();
        let mut sink = Sink::new(&mut out, true, Format::Sse);
        sink.send(&big).unwrap();
        assert!(
            sink.buf.capacity() <= KEEP_BUFFER,
            "{}",
            sink.buf.capacity()
        );
        sink.send(&big[..1]).unwrap();
        drop(sink);
        // The big chunk, then a small one, each framed by its size: each
        // event is "data: " and 1000 digits and a blank line.
        let text = String::from_utf8(out).unwrap();
        let one = 6 + 1000 + 2;
        assert!(text.starts_with(&format!("{:x}\r\ndata: 0000", 100 * one)));
        assert!(text.ends_with(&format!("\r\n{one:x}\r\ndata: {:01000}\n\n\r\n", 0)));
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
}
