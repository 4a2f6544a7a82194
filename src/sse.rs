//! The SSE wire format: encoding events (for the server) and decoding a
//! stream exactly as browsers do (for the client and the tests).
//!
//! This module owns the bytes of `text/event-stream` (and of the NDJSON view of
//! the same events) and nothing else: it imports no `std::net`, so it can be
//! tested with plain byte tables.

use serde_json::json;
use std::sync::OnceLock;

/// One event as the server sends it.
///
/// Its `text/event-stream` bytes are made once, on first use, and shared by
/// every subscriber that writes it ([`Event::sse_bytes`]), so that a
/// subscriber is written from these very bytes (the transport's framing
/// goes around them): change an event only before it is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `id:` field; never contains CR, LF or NUL (see [`check_field`]).
    pub id: Option<String>,
    /// `event:` field; `None` is the default type `message`.
    pub event: Option<String>,
    /// Payload; line breaks of any kind become separate `data:` lines.
    pub data: String,
    /// The hub topic it was published to, set by the hub: it goes out in
    /// NDJSON lines and, when a client asks (`?tag=topic`), in an envelope;
    /// never in the plain `text/event-stream` form.
    pub topic: Option<String>,
    /// The encoding, once made.
    pub encoded: Encoded,
}

/// The cached encoding of an [`Event`]. It takes no part in equality, and a
/// clone starts without it (the clone may be changed).
#[derive(Default)]
pub struct Encoded(OnceLock<Box<[u8]>>);

impl Clone for Encoded {
    fn clone(&self) -> Self {
        Encoded::default()
    }
}

impl PartialEq for Encoded {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Encoded {}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

impl Event {
    /// An unnamed event (`message` in a browser).
    pub fn message(data: impl Into<String>) -> Self {
        Event {
            data: data.into(),
            ..Event::default()
        }
    }

    /// An event with a name, dispatched to `addEventListener(name)` in a browser.
    pub fn named(name: &str, data: impl Into<String>) -> Self {
        Event {
            event: Some(name.to_owned()),
            data: data.into(),
            ..Event::default()
        }
    }

    /// The `text/event-stream` form of this event, made once and shared by
    /// every reader that writes it.
    pub fn sse_bytes(&self) -> &[u8] {
        self.encoded.0.get_or_init(|| {
            let mut body = Vec::with_capacity(self.data.len() + 32);
            encode(self, &mut body);
            body.into_boxed_slice()
        })
    }

    /// About what this event takes once written, before it is encoded:
    /// its data, id and name, and room for the field names. What a stream
    /// counts when it frames a piece at a time.
    pub fn size(&self) -> usize {
        self.data.len()
            + self.id.as_ref().map_or(0, String::len)
            + self.event.as_ref().map_or(0, String::len)
            + 24
    }

    /// The type a browser reports for this event.
    pub fn kind(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// The name of the event that reports lost events; publishers cannot use it.
pub const GAP_EVENT: &str = "gap";

/// The name of the last event of a stream whose token expired; publishers
/// cannot use it either.
pub const EXPIRED_EVENT: &str = "expired";

/// The name of the last event of a topic that was deleted; publishers
/// cannot use it.
pub const DELETED_EVENT: &str = "deleted";

/// Rejects a value that cannot stand in an `id:` or `event:` line.
///
/// A CR or LF would end the field early and let the rest be read as new
/// fields; browsers ignore an `id` that contains NUL.
pub fn check_field(what: &str, value: &str) -> Result<(), String> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(format!("{what} must not contain CR, LF or NUL"));
    }
    Ok(())
}

/// Appends the `text/event-stream` form of `ev`, blank line included.
pub fn encode(ev: &Event, out: &mut Vec<u8>) {
    if let Some(name) = &ev.event {
        field(out, "event", name);
    }
    // "data" lines: the spec splits on CRLF, LF and CR alike, so any of them in
    // the payload must become a line of its own or the browser would see a
    // different payload (or a stray field) than the one published.
    for line in split_lines(&ev.data) {
        field(out, "data", line);
    }
    if let Some(id) = &ev.id {
        field(out, "id", id);
    }
    out.push(b'\n');
}

/// Appends the NDJSON form of `ev`: `{"id":..,"event":..,"data":..}`, with
/// `"topic":..` after them for a hub event, and a newline.
pub fn encode_ndjson(ev: &Event, out: &mut Vec<u8>) {
    let mut line = json!({"id": ev.id, "event": ev.kind(), "data": ev.data});
    if let Some(topic) = &ev.topic {
        line["topic"] = json!(topic);
    }
    out.extend_from_slice(line.to_string().as_bytes());
    out.push(b'\n');
}

/// `{"topic":..,"data":..}`: an event's data with the topic it came from,
/// for clients that read several topics on one stream (`?tag=topic`).
pub fn envelope(ev: &Event) -> String {
    json!({"topic": ev.topic, "data": ev.data}).to_string()
}

/// Appends the `text/event-stream` form of `ev` with its data in an
/// [`envelope`]; its name and id as they are.
pub fn encode_tagged(ev: &Event, out: &mut Vec<u8>) {
    let tagged = Event {
        id: ev.id.clone(),
        event: ev.event.clone(),
        data: envelope(ev),
        ..Event::default()
    };
    encode(&tagged, out);
}

/// Appends a comment line (`: text`), which readers ignore; it keeps
/// proxies and the connection alive and shows whether the client is still
/// there. No blank line follows: a comment needs none, and some clients
/// (httpx-sse) report an empty event for each blank line that ends a block
/// without data.
pub fn comment(text: &str, out: &mut Vec<u8>) {
    for line in split_lines(text) {
        out.extend_from_slice(b": ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
}

/// Appends a `retry:` field, which sets the reader's reconnection delay as
/// soon as the line is read; as for a comment, no blank line follows (the
/// next event's ends its block).
pub fn retry(ms: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("retry: {ms}\n").as_bytes());
}

fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    // One space after the colon is stripped by the reader, so a value that
    // starts with a space keeps it; an empty value needs no space at all.
    if !value.is_empty() {
        out.push(b' ');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'\n');
}

/// Splits on CRLF, LF or CR, as the event-stream grammar does.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

/// What a [`Decoder`] finds in a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A dispatched event.
    Event(Message),
    /// A comment line's text (after the colon, one leading space removed).
    Comment(String),
}

/// An event as a browser's `MessageEvent` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `event.type`: the `event:` field, or `message`.
    pub event: String,
    pub data: String,
    /// `event.lastEventId`: the last `id:` seen, which persists across events.
    pub id: String,
    /// A valid `retry:` value that came with this event, if any.
    pub retry: Option<u64>,
}

/// How much a [`Decoder`] holds at most, so that no stream can make it
/// grow without end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one line.
    pub line: usize,
    /// Bytes of one event's data, its `data:` lines together.
    pub data: usize,
    /// Bytes of an `id:` or an `event:` value.
    pub field: usize,
}

impl Limits {
    /// No limit (for streams one trusts, such as ssed's own in tests).
    pub const NONE: Limits = Limits {
        line: usize::MAX,
        data: usize::MAX,
        field: usize::MAX,
    };

    /// Events of up to `data` bytes; a line may hold all of it and its
    /// field name; ids and event types are far smaller.
    pub fn for_data(data: usize) -> Limits {
        Limits {
            line: data.saturating_add(64),
            data,
            field: MAX_FIELD,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::NONE
    }
}

/// The longest id or event type a bounded decoder accepts.
pub const MAX_FIELD: usize = 4096;

/// A stream broke a [`Limits`]: what it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Overflow {
    Line(usize),
    Data(usize),
    Id(usize),
    EventType(usize),
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Overflow::Line(n) => write!(f, "a line of the stream is longer than {n} bytes"),
            Overflow::Data(n) => write!(f, "an event's data is longer than {n} bytes"),
            Overflow::Id(n) => write!(f, "an event id is longer than {n} bytes"),
            Overflow::EventType(n) => write!(f, "an event type is longer than {n} bytes"),
        }
    }
}

/// Incremental parser of `text/event-stream`, following the WHATWG HTML
/// standard, "Interpreting an event stream". Feed it bytes as they arrive, in
/// pieces of any size.
#[derive(Debug, Default)]
pub struct Decoder {
    limits: Limits,
    /// Bytes of the line being read (decoded once the line is complete, so a
    /// character split between two reads survives).
    line: Vec<u8>,
    /// Whether the start of the stream (and its optional BOM) is behind us.
    started: bool,
    /// The previous byte ended a line with CR: an LF right after it belongs
    /// to the same line end.
    after_cr: bool,
    data: String,
    event_type: String,
    /// "the last event ID buffer": set by `id:` lines as they are read.
    id_buffer: String,
    /// "the last event ID string" of the event source: the buffer as it was
    /// at the last dispatch. This is what a reconnection sends.
    last_event_id: String,
    /// A `retry:` seen since the last dispatch.
    retry: Option<u64>,
    /// The stream's reconnection time: the last valid `retry:` seen.
    reconnection_time: Option<u64>,
}

impl Decoder {
    /// A decoder without limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder that refuses to hold more than `limits` allow.
    pub fn with_limits(limits: Limits) -> Self {
        Decoder {
            limits,
            ..Self::default()
        }
    }

    /// The last event ID, as a reconnecting client sends it in `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Starts from a known last event ID (a client's `--last-event-id`).
    pub fn set_last_event_id(&mut self, id: &str) {
        self.last_event_id = id.to_string();
        self.id_buffer = id.to_string();
    }

    /// The reconnection time the stream asked for, if any: it takes effect
    /// as soon as the `retry:` line is read, event or not.
    pub fn reconnection_time(&self) -> Option<u64> {
        self.reconnection_time
    }

    /// Parses `bytes`, appending what they complete to `out`. Past a limit,
    /// returns what was broken: the event being read is lost, and the
    /// stream cannot be read on (call [`Decoder::finish`] before the next).
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Item>) -> Result<(), Overflow> {
        if !self.started {
            // "One leading U+FEFF BYTE ORDER MARK character must be ignored if
            // any are present", at the very start of the stream only.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            let have = self.line.len() + bytes.len();
            let mut head = self.line.clone();
            head.extend_from_slice(&bytes[..bytes.len().min(BOM.len())]);
            if have < BOM.len() && BOM.starts_with(&head) {
                // Could still be a BOM: wait for more bytes.
                self.line = head;
                return Ok(());
            }
            self.started = true;
            if head.starts_with(BOM) {
                let from_bytes = BOM.len() - self.line.len();
                self.line.clear();
                bytes = &bytes[from_bytes..];
            }
        }
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    let mut line = std::mem::take(&mut self.line);
                    self.process_line(&line, out)?;
                    // Keep the allocation for the next line, unless large.
                    line.clear();
                    if line.capacity() <= 4096 {
                        self.line = line;
                    }
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= self.limits.line {
                        return Err(Overflow::Line(self.limits.line));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    /// The stream ended. "If the file ends in the middle of an event, before
    /// the final empty line, the incomplete event is not dispatched." The next
    /// stream starts with the last event ID string, as browsers do, so an
    /// `id:` of the lost half event counts for nothing.
    pub fn finish(&mut self) {
        self.id_buffer = self.last_event_id.clone();
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.retry = None;
        self.after_cr = false;
        self.started = false;
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<Item>) -> Result<(), Overflow> {
        let line = String::from_utf8_lossy(line);
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push(Item::Comment(
                comment.strip_prefix(' ').unwrap_or(comment).to_string(),
            ));
            return Ok(());
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        let limits = self.limits;
        match name {
            "event" if value.len() > limits.field => return Err(Overflow::EventType(limits.field)),
            "event" => self.event_type = value.to_string(),
            "data" => {
                if self.data.len() + value.len() > limits.data {
                    return Err(Overflow::Data(limits.data));
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if value.len() > limits.field => return Err(Overflow::Id(limits.field)),
            "id" if !value.contains('\0') => self.id_buffer = value.to_string(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Digits too many for u64 are still digits; saturate.
                self.retry = Some(value.parse().unwrap_or(u64::MAX));
                self.reconnection_time = self.retry;
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<Item>) {
        self.last_event_id.clone_from(&self.id_buffer);
        let retry = self.retry.take();
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the last LF
        let event = std::mem::take(&mut self.event_type);
        out.push(Item::Event(Message {
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            data,
            id: self.last_event_id.clone(),
            retry,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ev: Event, expected: &str) {
        let mut out = Vec::new();
        encode(&ev, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), expected, "{ev:?}");
    }

    #[test]
    fn encodes_events() {
        let cases = [
            (Event::message("hello"), "data: hello\n\n"),
            (Event::message(""), "data:\n\n"),
            (Event::message("a\nb"), "data: a\ndata: b\n\n"),
            (
                Event::message("a\r\nb\rc\n"),
                "data: a\ndata: b\ndata: c\ndata:\n\n",
            ),
            (Event::message(" lead"), "data:  lead\n\n"),
            (Event::named("AAPL", "{}"), "event: AAPL\ndata: {}\n\n"),
            (
                Event {
                    id: Some("7".into()),
                    event: Some("x".into()),
                    data: "d".into(),
                    ..Event::default()
                },
                "event: x\ndata: d\nid: 7\n\n",
            ),
        ];
        for (ev, expected) in cases {
            check(ev, expected);
        }
    }

    #[test]
    fn an_event_and_its_chunk_are_made_once() {
        let ev = Event::named("x", "hello");
        assert_eq!(ev.sse_bytes(), b"event: x\ndata: hello\n\n");
        // Made once: the same bytes every time.
        assert!(std::ptr::eq(
            ev.sse_bytes().as_ptr(),
            ev.sse_bytes().as_ptr()
        ));
    }

    #[test]
    fn encodes_ndjson() {
        let mut out = Vec::new();
        encode_ndjson(&Event::message("a\nb"), &mut out);
        encode_ndjson(&Event::named("p", "{\"x\":1}"), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":null,\"event\":\"message\",\"data\":\"a\\nb\"}\n\
             {\"id\":null,\"event\":\"p\",\"data\":\"{\\\"x\\\":1}\"}\n"
        );
    }

    #[test]
    fn comments_and_retry() {
        let mut out = Vec::new();
        comment("keep-alive", &mut out);
        comment("two\nlines", &mut out);
        retry(3000, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            ": keep-alive\n: two\n: lines\nretry: 3000\n"
        );
    }

    #[test]
    fn rejects_line_breaks_in_fields() {
        assert!(check_field("event", "ok-name").is_ok());
        for bad in ["a\nb", "a\rb", "a\0b"] {
            assert_eq!(
                check_field("event", bad).unwrap_err(),
                "event must not contain CR, LF or NUL"
            );
        }
    }

    fn ev(event: &str, data: &str, id: &str) -> Item {
        Item::Event(Message {
            event: event.into(),
            data: data.into(),
            id: id.into(),
            retry: None,
        })
    }

    fn decode_in_pieces(input: &[u8], cuts: &[usize]) -> Vec<Item> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([input.len()].iter()) {
            d.feed(&input[from..cut], &mut out).unwrap();
            from = cut;
        }
        d.finish();
        out
    }

    /// Decodes `input` whole, split at every offset, and a byte at a time;
    /// all must give `expected`.
    fn check_decode(input: &[u8], expected: &[Item]) {
        assert_eq!(decode_in_pieces(input, &[]), expected, "whole: {input:?}");
        for cut in 0..=input.len() {
            assert_eq!(
                decode_in_pieces(input, &[cut]),
                expected,
                "split at {cut}: {input:?}"
            );
        }
        let every: Vec<usize> = (0..input.len()).collect();
        assert_eq!(
            decode_in_pieces(input, &every),
            expected,
            "bytewise: {input:?}"
        );
    }

    #[test]
    fn decodes_like_a_browser() {
        let with_retry = |data: &str, retry| {
            Item::Event(Message {
                event: "message".into(),
                data: data.into(),
                id: String::new(),
                retry: Some(retry),
            })
        };
        let cases: Vec<(&[u8], Vec<Item>)> = vec![
            (b"data: hi\n\n", vec![ev("message", "hi", "")]),
            // Line ends: LF, CR, CRLF, mixed.
            (
                b"data: a\r\rdata: b\r\n\r\ndata: c\n\r\n",
                vec![
                    ev("message", "a", ""),
                    ev("message", "b", ""),
                    ev("message", "c", ""),
                ],
            ),
            // One leading BOM stripped; a second one is part of the field name.
            (b"\xEF\xBB\xBFdata: x\n\n", vec![ev("message", "x", "")]),
            (
                b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata: y\n\n",
                vec![ev("message", "y", "")],
            ),
            // Only one leading space is removed; no space is fine.
            (
                b"data:  two\n\ndata:none\n\n",
                vec![ev("message", " two", ""), ev("message", "none", "")],
            ),
            // Multi-line data is joined with LF.
            (
                b"data: a\ndata:\ndata: b\n\n",
                vec![ev("message", "a\n\nb", "")],
            ),
            // No data line: nothing dispatched; empty data: dispatched.
            (
                b"event: x\n\nid: 1\n\ndata\n\n",
                vec![ev("message", "", "1")],
            ),
            (b"data:\n\n", vec![ev("message", "", "")]),
            // Event type resets after each event; empty means message.
            (
                b"event: a\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n",
                vec![
                    ev("a", "1", ""),
                    ev("message", "2", ""),
                    ev("message", "3", ""),
                ],
            ),
            // The id persists, an empty id resets it, an id with NUL is ignored.
            (
                b"id: 7\ndata: a\n\ndata: b\n\nid: 8\0\ndata: c\n\nid\ndata: d\n\n",
                vec![
                    ev("message", "a", "7"),
                    ev("message", "b", "7"),
                    ev("message", "c", "7"),
                    ev("message", "d", ""),
                ],
            ),
            // Comments; unknown and case-different fields are ignored.
            (
                b": hello\n:\nData: no\nfoo: bar\ndata: yes\n\n",
                vec![
                    Item::Comment("hello".into()),
                    Item::Comment(String::new()),
                    ev("message", "yes", ""),
                ],
            ),
            // retry only when all ASCII digits.
            (
                b"retry: 1500\ndata: a\n\nretry: 15x\ndata: b\n\nretry: -1\nretry:\ndata: c\n\n",
                vec![
                    with_retry("a", 1500),
                    ev("message", "b", ""),
                    ev("message", "c", ""),
                ],
            ),
            // An unfinished event at the end is discarded.
            (b"data: done\n\ndata: half", vec![ev("message", "done", "")]),
            (b"data: half\n", vec![]),
            // UTF-8, including a character split between reads; invalid bytes
            // become U+FFFD.
            (
                "data: h\u{e9}llo \u{1F600}\n\n".as_bytes(),
                vec![ev("message", "h\u{e9}llo \u{1F600}", "")],
            ),
            (b"data: \xff\n\n", vec![ev("message", "\u{FFFD}", "")]),
            // A colon in the value is kept.
            (b"data: a:b\n\n", vec![ev("message", "a:b", "")]),
        ];
        for (input, expected) in cases {
            check_decode(input, &expected);
        }
    }

    #[test]
    fn limits_bound_what_a_stream_can_make_it_hold() {
        let limits = Limits {
            line: 20,
            data: 10,
            field: 4,
        };
        let cases: Vec<(&[u8], Result<usize, Overflow>)> = vec![
            (b"data: 0123456789\n\n", Ok(1)),
            (b"data: 01234\ndata: 56789\n\n", Err(Overflow::Data(10))),
            (b"data: 0123456789a\n\n", Err(Overflow::Data(10))),
            (b"id: 1234\ndata: x\n\n", Ok(1)),
            (b"id: 12345\n", Err(Overflow::Id(4))),
            (b"event: abcde\n", Err(Overflow::EventType(4))),
            // A line that never ends is refused at the bound, not held.
            (b"data: 01234567890123456789", Err(Overflow::Line(20))),
            (
                b": a comment far longer than twenty bytes",
                Err(Overflow::Line(20)),
            ),
        ];
        for (input, expected) in cases {
            let mut d = Decoder::with_limits(limits);
            let mut out = Vec::new();
            let got = d.feed(input, &mut out).map(|()| out.len());
            assert_eq!(got, expected, "{}", String::from_utf8_lossy(input));
            assert!(d.line.len() <= limits.line && d.data.len() <= limits.data + 1);
            // Byte by byte, the same.
            let mut d = Decoder::with_limits(limits);
            let mut out = Vec::new();
            let got = input
                .iter()
                .try_for_each(|b| d.feed(std::slice::from_ref(b), &mut out))
                .map(|()| out.len());
            assert_eq!(got, expected, "bytewise {}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn an_id_in_an_unfinished_event_is_not_the_last_event_id() {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        d.feed(b"id: 1\ndata: a\n\nid: 2\ndata: half", &mut out)
            .unwrap();
        assert_eq!(d.last_event_id(), "1");
        d.finish();
        d.feed(b"data: b\n\nid: 3\n\n", &mut out).unwrap();
        assert_eq!(out, [ev("message", "a", "1"), ev("message", "b", "1")]);
        // An id with no data still becomes the last event ID.
        assert_eq!(d.last_event_id(), "3");
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let events = [
            Event::message("plain"),
            Event::message("multi\nline\r\nwith\rbreaks"),
            Event::message(" leading space"),
            Event::message(""),
            Event {
                id: Some("42".into()),
                event: Some("tick".into()),
                data: "{\"a\": 1}".into(),
                ..Event::default()
            },
        ];
        let mut bytes = Vec::new();
        for e in &events {
            encode(e, &mut bytes);
        }
        let mut out = Vec::new();
        Decoder::new().feed(&bytes, &mut out).unwrap();
        let got: Vec<(String, String)> = out
            .into_iter()
            .map(|i| match i {
                Item::Event(m) => (m.event, m.data),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                ("message", "plain"),
                ("message", "multi\nline\nwith\nbreaks"),
                ("message", " leading space"),
                ("message", ""),
                ("tick", "{\"a\": 1}"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }
}
