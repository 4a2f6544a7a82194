//! How a stream's events become bytes: the format the client asked for
//! ([`Format`]), and the transport's framing around each piece
//! ([`Framing`]): an HTTP/1.1 chunk, or nothing (a body ended by closing).
//! A new framing (a WebSocket frame, a multiplexed stream's) is a variant
//! of [`Framing`]: its head for a length, its tail, and its end.

use crate::conn::Delimit;
use crate::http1;
use crate::sse::{self, Event};

/// A framer's buffer keeps at most this capacity after a piece went out: a
/// burst (a subscriber catching up on thousands of events) must not leave
/// each of 10,000 streams holding the largest piece it ever wrote.
pub(super) const KEEP_BUFFER: usize = 16 * 1024;

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

/// The transport's framing around each piece of a stream's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// HTTP/1.1: each piece one chunk, the body ended by the last chunk.
    Chunked,
    /// HTTP/1.0: the bytes as they are, the body ended by closing.
    Bare,
}

/// A framing's head for one piece, made on the stack.
pub(super) struct Head {
    bytes: [u8; http1::CHUNK_SIZE_ROOM],
    start: usize,
}

impl Head {
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

impl Framing {
    /// The framing a connection's delimitation calls for.
    pub fn of(delimit: Delimit) -> Framing {
        match delimit {
            Delimit::Chunked => Framing::Chunked,
            Delimit::Close => Framing::Bare,
        }
    }

    /// What goes before a piece of `len` bytes.
    pub(super) fn head(self, len: usize) -> Head {
        let mut bytes = [0u8; http1::CHUNK_SIZE_ROOM];
        let start = match self {
            Framing::Chunked => http1::put_chunk_size(len, &mut bytes),
            Framing::Bare => bytes.len(),
        };
        Head { bytes, start }
    }

    /// What goes after a piece.
    pub(super) fn tail(self) -> &'static [u8] {
        match self {
            Framing::Chunked => b"\r\n",
            Framing::Bare => b"",
        }
    }

    /// The end of the body.
    pub fn end(self) -> &'static [u8] {
        match self {
            Framing::Chunked => http1::LAST_CHUNK,
            Framing::Bare => b"",
        }
    }
}

/// Frames a stream's events, in its format, as one piece in its framing,
/// made in one buffer that keeps room in front for the framing's head, so
/// that the body is never moved.
pub struct Framer {
    framing: Framing,
    format: Format,
    buf: Vec<u8>,
    /// What [`Framer::retry`] sends.
    retry_ms: u64,
    /// The most [`Framer::spread_retry`] draws (`--stop-spread`).
    stop_retry_ms: u64,
    /// Where the framed bytes start, once [`Framer::frame`] made them.
    framed: Option<usize>,
}

impl Framer {
    pub fn new(framing: Framing, format: Format, retry_ms: u64) -> Framer {
        let mut buf = Vec::with_capacity(256);
        buf.resize(http1::CHUNK_SIZE_ROOM, 0);
        Framer {
            framing,
            format,
            buf,
            retry_ms,
            stop_retry_ms: (retry_ms * 5).min(30_000),
            framed: None,
        }
    }

    /// At shutdown, a `retry:` drawn up to `ms` (at least the stream's own).
    pub fn with_stop_retry(mut self, ms: u64) -> Framer {
        self.stop_retry_ms = ms;
        self
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_empty(&self) -> bool {
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

    /// Something to write on an idle stream (its heartbeat): a comment for
    /// SSE, an empty line (which NDJSON and text readers skip) otherwise.
    pub fn heartbeat(&mut self) {
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

    /// For SSE, at shutdown: a `retry:` drawn between the stream's and
    /// `--stop-spread` (never less than its own), so that the browsers of a
    /// server that stops come back spread out, not at once. Whether one was
    /// added.
    pub fn spread_retry(&mut self) -> bool {
        if !matches!(self.format, Format::Sse | Format::SseTagged) {
            return false;
        }
        let most = self.stop_retry_ms.max(self.retry_ms);
        sse::retry(fastrand::u64(self.retry_ms..=most), &mut self.buf);
        true
    }

    /// What was added, framed as one piece: the bytes to write. Framed
    /// once: nothing may be added until [`Framer::clear`].
    pub fn frame(&mut self) -> &[u8] {
        if self.framed.is_none() {
            let room = http1::CHUNK_SIZE_ROOM;
            let head = self.framing.head(self.buf.len() - room);
            let head = head.as_bytes();
            let start = room - head.len();
            self.buf[start..room].copy_from_slice(head);
            self.buf.extend_from_slice(self.framing.tail());
            self.framed = Some(start);
        }
        self.framed()
    }

    /// The bytes [`Framer::frame`] made (none before).
    pub(super) fn framed(&self) -> &[u8] {
        self.framed.map_or(&[][..], |start| &self.buf[start..])
    }

    pub(super) fn framed_len(&self) -> usize {
        self.framed().len()
    }

    /// Empties the buffer for the next piece, giving back what a burst made
    /// it take.
    pub fn clear(&mut self) {
        self.framed = None;
        self.buf.truncate(http1::CHUNK_SIZE_ROOM);
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf.shrink_to(256);
        }
    }

    /// The end of the body.
    pub fn end(&self) -> &'static [u8] {
        self.framing.end()
    }

    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(
        framing: Framing,
        format: Format,
        f: impl FnOnce(&mut Framer, &mut Vec<u8>),
    ) -> String {
        let mut out = Vec::new();
        let mut framer = Framer::new(framing, format, 2000);
        f(&mut framer, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn write(framer: &mut Framer, out: &mut Vec<u8>) {
        out.extend_from_slice(framer.frame());
        framer.clear();
    }

    #[test]
    fn frames_chunks() {
        let got = framed(Framing::Chunked, Format::Sse, |f, w| {
            f.retry();
            write(f, w);
            f.event(&Event::message("hi"));
            f.event(&Event::named("x", "y"));
            write(f, w);
            f.heartbeat();
            write(f, w);
            w.extend_from_slice(f.end());
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
        let got = framed(Framing::Bare, Format::Sse, |f, w| {
            f.retry();
            f.event(&Event::message("hi"));
            write(f, w);
            w.extend_from_slice(f.end());
        });
        assert_eq!(got, "retry: 2000\ndata: hi\n\n");
    }

    #[test]
    fn a_head_alone_frames_what_is_written_from_elsewhere() {
        let head = Framing::Chunked.head(300);
        assert_eq!(head.as_bytes(), b"12c\r\n");
        assert_eq!(Framing::Bare.head(300).as_bytes(), b"");
    }

    #[test]
    fn ndjson_and_lines() {
        let ev = Event::named("p", "{\"a\": 1}");
        let got = framed(Framing::Bare, Format::Ndjson, |f, w| {
            f.retry();
            f.event(&ev);
            f.heartbeat();
            write(f, w);
        });
        assert_eq!(
            got,
            "{\"id\":null,\"event\":\"p\",\"data\":\"{\\\"a\\\": 1}\"}\n\n"
        );
        let got = framed(Framing::Bare, Format::Lines, |f, w| {
            f.event(&ev);
            write(f, w);
        });
        assert_eq!(got, "{\"a\": 1}\n");
    }

    #[test]
    fn a_large_batch_does_not_stay_in_memory() {
        let mut out = Vec::new();
        let mut framer = Framer::new(Framing::Chunked, Format::Sse, 2000);
        for i in 0..100 {
            framer.event(&Event::message(format!("{i:01000}")));
        }
        write(&mut framer, &mut out);
        assert!(framer.capacity() <= KEEP_BUFFER, "{}", framer.capacity());
        framer.event(&Event::message(format!("{:01000}", 0)));
        write(&mut framer, &mut out);
        // The big chunk, then a small one, each framed by its size: each
        // event is "data: " and 1000 digits and a blank line.
        let text = String::from_utf8(out).unwrap();
        let one = 6 + 1000 + 2;
        assert!(text.starts_with(&format!("{:x}\r\ndata: 0000", 100 * one)));
        assert!(text.ends_with(&format!("\r\n{one:x}\r\ndata: {:01000}\n\n\r\n", 0)));
    }
}
