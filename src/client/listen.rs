//! `ssed listen`: prints a stream's events as a browser's EventSource
//! receives them, and reconnects as it does.
//!
//! It parses with [`sse::Decoder`] (the module the server encodes with), and
//! holds against any server: memory is bounded whatever it sends (a line, an
//! event's data, an id), its `retry:` is kept between 100 ms and an hour,
//! a connection that delivers no event counts as a failure (backoff, and
//! `--max-retries`), `--timeout` bounds the silence between complete events
//! or comments, and a redirect to another origin drops the credentials.

use super::http;
use super::Url;
use super::{header_arg, read_data, Outcome};
use crate::args::{self, Arg, Args, UsageError};
use crate::sse::{self, Decoder, Item, Limits};
use serde_json::json;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

pub const LISTEN_USAGE: &str = "\
Usage: ssed listen URL [OPTIONS]

Prints the events of an SSE stream, reconnecting as a browser does.

Options:
  -H, --header 'NAME: VALUE'  add a request header; repeatable
  -X, --request METHOD        request method [GET, or POST with -d]
  -d, --data DATA             send DATA as the request body; @FILE reads a file,
                              - reads stdin
      --json                  print {\"event\", \"data\", \"id\"} objects, one per line
                              (else each event's data; a named event as
                              [NAME] DATA; a gap on stderr)
      --comments              print comments too
      --events N              exit after N events
      --last-event-id ID      send this Last-Event-ID on the first connection
      --retry MS              reconnection time until the stream sets one
                              (100 to 3600000) [3000]
      --no-reconnect          exit when the connection ends
      --max-retries N         give up after N connections in a row that
                              deliver no event
      --timeout SECS          no event or comment for this long counts as a
                              dead connection
      --max-event-bytes SIZE  largest event data accepted (K, M suffixes) [1M]
      --location-trusted      send credentials on to another host after a
                              redirect
  -h, --help                  print this help

It reconnects when a stream ends, as a browser does, until one of these ends
it: --events N reached; a 204 answer (a finished stream, such as a
/stream-training run, answers its reconnection so); the stream's end with
--no-reconnect; --max-retries; stdout closed; Ctrl-C.

Exit status: 0 when done (--events reached, a 204 answer, the stream ended with
--no-reconnect, or stdout closed), 1 on an error, 2 on a bad command line.
";

/// Redirects followed before giving up, as browsers do.
const MAX_REDIRECTS: usize = 10;
/// The reconnection time's bounds, whatever a server asks (`retry:`) or a
/// user gives: a server cannot make a client hammer it, nor make it wait
/// for ever.
pub const MIN_RETRY: Duration = Duration::from_millis(100);
pub const MAX_RETRY: Duration = Duration::from_secs(3600);
/// The longest wait between attempts while a server keeps failing, unless
/// the reconnection time is longer.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How much of an error body to quote.
const ERROR_BODY_LIMIT: u64 = 4096;
/// Bytes read from the socket at a time.
const READ_BUF: usize = 16 * 1024;
/// Headers that carry credentials: not sent to another origin after a
/// redirect, unless `--location-trusted` (as curl does).
const CREDENTIALS: [&str; 3] = ["Authorization", "Cookie", "Proxy-Authorization"];

#[derive(Debug)]
pub struct Listen {
    pub url: Url,
    pub method: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub json: bool,
    pub comments: bool,
    pub events: Option<u64>,
    pub last_event_id: Option<String>,
    pub retry: Duration,
    pub reconnect: bool,
    pub max_retries: Option<u32>,
    pub timeout: Option<Duration>,
    pub max_event_bytes: usize,
    pub location_trusted: bool,
}

/// Parses the arguments after `listen`.
pub fn parse_listen(
    args: impl IntoIterator<Item = String>,
    stdin: &mut dyn Read,
) -> Result<Result<Listen, &'static str>, UsageError> {
    let mut args = Args::new(args);
    let mut url = None;
    let mut l = Listen {
        url: Url {
            host: String::new(),
            port: 0,
            target: String::new(),
        },
        method: None,
        headers: Vec::new(),
        body: None,
        json: false,
        comments: false,
        events: None,
        last_event_id: None,
        retry: Duration::from_millis(3000),
        reconnect: true,
        max_retries: None,
        timeout: None,
        max_event_bytes: 1024 * 1024,
        location_trusted: false,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg {
            Arg::Plain(value) if url.is_none() => {
                url = Some(value);
                continue;
            }
            Arg::Plain(value) => return Err(UsageError(format!("unexpected argument {value:?}"))),
            Arg::Option(flag, inline) => (flag, inline),
        };
        let mut value = || args.value(&flag, inline.clone());
        match flag.as_str() {
            "-h" | "--help" => return Ok(Err(LISTEN_USAGE)),
            "--json" => l.json = true,
            "--comments" => l.comments = true,
            "--no-reconnect" => l.reconnect = false,
            "--location-trusted" => l.location_trusted = true,
            "-H" | "--header" => l.headers.push(header_arg(&value()?)?),
            "-X" | "--request" => {
                let m = value()?;
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(args::invalid(
                        &flag,
                        &m,
                        "expected a method such as GET or POST",
                    ));
                }
                l.method = Some(m.to_ascii_uppercase());
            }
            "-d" | "--data" => {
                let v = value()?;
                l.body = Some(read_data(&v, stdin).map_err(|why| args::invalid(&flag, &v, &why))?);
            }
            "--events" => {
                let v = value()?;
                l.events =
                    Some(v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                        args::invalid(&flag, &v, "expected a whole number above 0")
                    })?);
            }
            "--last-event-id" => {
                let v = value()?;
                sse::check_field("an event id", &v)
                    .map_err(|why| args::invalid(&flag, &v, &why))?;
                l.last_event_id = Some(v);
            }
            "--retry" => {
                let v = value()?;
                let (min, max) = (MIN_RETRY.as_millis() as u64, MAX_RETRY.as_millis() as u64);
                let ms: u64 = v
                    .parse()
                    .ok()
                    .filter(|ms| (min..=max).contains(ms))
                    .ok_or_else(|| {
                        args::invalid(
                            &flag,
                            &v,
                            &format!("expected milliseconds from {min} to {max}"),
                        )
                    })?;
                l.retry = Duration::from_millis(ms);
            }
            "--max-retries" => {
                let v = value()?;
                l.max_retries = Some(
                    v.parse()
                        .map_err(|_| args::invalid(&flag, &v, "expected a whole number"))?,
                );
            }
            "--timeout" => {
                let v = value()?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s| (0.01..=86_400.0).contains(s))
                    .ok_or_else(|| {
                        args::invalid(&flag, &v, "expected seconds from 0.01 to 86400")
                    })?;
                l.timeout = Some(Duration::from_secs_f64(secs));
            }
            "--max-event-bytes" => {
                let v = value()?;
                l.max_event_bytes =
                    args::bytes(&v, 16, 64 << 20).map_err(|why| args::invalid(&flag, &v, &why))?;
            }
            _ => return Err(args::unknown(&flag, "listen")),
        }
    }
    let raw = url.ok_or_else(|| {
        UsageError("listen needs a URL, such as http://127.0.0.1:8000/stream-time".into())
    })?;
    l.url = Url::parse(&raw).map_err(|why| args::invalid("URL", &raw, &why))?;
    Ok(Ok(l))
}

/// How one connection went.
enum Ended {
    /// `--events` reached or stdout closed: stop.
    Finished,
    /// The server said not to reconnect (204).
    NoContent,
    /// The connection could not be made, or ended, or broke: reconnect.
    Broken(String),
    /// An answer that is not a stream: do not reconnect.
    Fatal(String),
}

/// Runs `ssed listen` until it is done; events go to `out`, reconnection
/// notes to `err` (or to `out` as `{"error": ...}` with `--json`).
pub fn listen(l: &Listen, out: &mut dyn Write, err: &mut dyn Write) -> Outcome {
    // A name that does not resolve at all is a mistake, not an outage to
    // wait out (later, a resolver's hiccup is retried as any failure).
    if let Err(e) = std::net::ToSocketAddrs::to_socket_addrs(&(l.url.host.as_str(), l.url.port)) {
        return Outcome::Failed(format!("{}: cannot resolve {}: {e}", l.url, l.url.host));
    }
    let mut decoder = Decoder::with_limits(Limits::for_data(l.max_event_bytes));
    if let Some(id) = &l.last_event_id {
        decoder.set_last_event_id(id);
    }
    let mut printer = Printer {
        l,
        out,
        err,
        count: 0,
        deleted: false,
    };
    let mut retry = l.retry;
    // Connections in a row that delivered no event.
    let mut failures: u32 = 0;
    loop {
        let before = printer.count;
        let ended = connect_and_read(l, &mut decoder, &mut printer, &mut retry);
        decoder.finish();
        let why = match ended {
            Ended::Finished | Ended::NoContent => return Outcome::Done,
            Ended::Fatal(why) => return Outcome::Failed(why),
            // The stream's topic was deleted: it is over, not broken.
            Ended::Broken(_) if printer.deleted => return Outcome::Done,
            Ended::Broken(why) => why,
        };
        failures = if printer.count > before {
            0
        } else {
            failures + 1
        };
        if !l.reconnect {
            return match why.as_str() {
                "the stream ended" => Outcome::Done,
                _ => Outcome::Failed(format!("{}: {why}", l.url)),
            };
        }
        if l.max_retries.is_some_and(|max| failures > max) {
            return Outcome::Failed(format!(
                "{}: {why}; gave up after {} retries",
                l.url,
                failures - 1
            ));
        }
        let wait = wait_before_reconnecting(retry, failures);
        let note = format!(
            "{}: {why}; reconnecting in {:.1} s",
            l.url,
            wait.as_secs_f64()
        );
        let shown = if l.json {
            printer.line(&json!({ "error": note }).to_string())
        } else {
            writeln!(printer.err, "ssed: {note}")
        };
        if shown.is_err() {
            return Outcome::Done;
        }
        std::thread::sleep(wait);
    }
}

/// The wait before the next connection: the reconnection time after a
/// connection that delivered events; while the server keeps failing
/// (`failures` in a row), doubling from it, up to a minute (or the
/// reconnection time, if longer). Never under [`MIN_RETRY`], never over
/// [`MAX_RETRY`], and up to a quarter more at random, so that many clients
/// do not come back at once.
fn wait_before_reconnecting(retry: Duration, failures: u32) -> Duration {
    let retry = retry.clamp(MIN_RETRY, MAX_RETRY);
    let base = if failures == 0 {
        retry
    } else {
        retry
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(MAX_BACKOFF.max(retry))
    };
    (base + base.mul_f64(fastrand::f64() * 0.25)).min(MAX_RETRY)
}

struct Printer<'a> {
    l: &'a Listen,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    count: u64,
    /// A topic of the stream was deleted: when the stream ends, it is
    /// not reconnected.
    deleted: bool,
}

impl Printer<'_> {
    fn line(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(text.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    /// Prints one item; `Ok(true)` when `--events` is reached.
    fn item(&mut self, item: Item) -> io::Result<bool> {
        match item {
            Item::Comment(text) if self.l.comments => {
                let line = if self.l.json {
                    json!({ "comment": text }).to_string()
                } else {
                    format!(": {text}")
                };
                self.line(&line)?;
            }
            Item::Comment(_) => {}
            Item::Event(m) => {
                if self.l.json {
                    let mut obj = json!({ "event": m.event, "data": m.data, "id": m.id });
                    if let Some(retry) = m.retry {
                        obj["retry"] = retry.into();
                    }
                    self.line(&obj.to_string())?;
                } else if m.event == sse::GAP_EVENT {
                    // A notice of lost events, not data: on stderr.
                    let _ = writeln!(self.err, "ssed: gap: {}", m.data);
                } else if m.event == sse::DELETED_EVENT {
                    let _ = writeln!(
                        self.err,
                        "ssed: {}: the topic was deleted: {}",
                        self.l.url, m.data
                    );
                } else if m.event == "message" {
                    self.line(&m.data)?;
                } else {
                    // A named event: its name first, so that it does not
                    // pass for a message.
                    self.line(&format!("[{}] {}", m.event, m.data))?;
                }
                if m.event == sse::DELETED_EVENT {
                    self.deleted = true;
                }
                self.count += 1;
                return Ok(self.l.events.is_some_and(|n| self.count >= n));
            }
        }
        Ok(false)
    }
}

fn connect_and_read(
    l: &Listen,
    decoder: &mut Decoder,
    printer: &mut Printer,
    retry: &mut Duration,
) -> Ended {
    let mut headers = vec![
        ("Accept".to_string(), "text/event-stream".to_string()),
        ("Cache-Control".to_string(), "no-cache".to_string()),
        ("User-Agent".to_string(), crate::http1::SERVER.to_string()),
    ];
    headers.retain(|(n, _)| !l.headers.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)));
    if !decoder.last_event_id().is_empty() {
        headers.push(("Last-Event-ID".into(), decoder.last_event_id().to_string()));
    }
    headers.extend(l.headers.iter().cloned());

    let mut url = l.url.clone();
    let mut method = l
        .method
        .clone()
        .unwrap_or_else(|| if l.body.is_some() { "POST" } else { "GET" }.into());
    let mut body = l.body.clone();
    let mut redirects = 0;
    let mut response = loop {
        let res = match http::request(&url, &method, &headers, body.as_deref(), l.timeout) {
            Ok(res) => res,
            Err(e) => return Ended::Broken(describe(&e, l.timeout)),
        };
        match res.status {
            301 | 302 | 303 | 307 | 308 => {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Ended::Fatal(format!("{url}: more than {MAX_REDIRECTS} redirects"));
                }
                let Some(location) = res.header("Location") else {
                    return Ended::Fatal(format!(
                        "{url}: {} redirect without a Location",
                        res.status
                    ));
                };
                let next = match url.join(location) {
                    Ok(next) => next,
                    Err(why) => {
                        return Ended::Fatal(format!(
                            "{url}: cannot follow Location {location:?}: {why}"
                        ))
                    }
                };
                if !next.same_origin(&url) && !l.location_trusted {
                    headers.retain(|(n, _)| !CREDENTIALS.iter().any(|c| c.eq_ignore_ascii_case(n)));
                }
                url = next;
                // As browsers do: 303, and 301/302 after a POST, turn into a GET.
                if res.status == 303 || (matches!(res.status, 301 | 302) && method == "POST") {
                    method = "GET".into();
                    body = None;
                }
            }
            204 => return Ended::NoContent,
            200 => break res,
            _ => return Ended::Fatal(status_error(&url, res)),
        }
    };
    let media = http::media_type(response.header("Content-Type"));
    if media != "text/event-stream" {
        let shown = response
            .header("Content-Type")
            .unwrap_or("none")
            .to_string();
        return Ended::Fatal(format!(
            "{url}: expected Content-Type text/event-stream, got {shown}"
        ));
    }

    let mut buf = vec![0u8; READ_BUF];
    let mut items = Vec::new();
    // --timeout bounds the silence between complete items, not between
    // bytes: a server that drips a byte at a time cannot keep a dead
    // stream open.
    let mut last_item = Instant::now();
    loop {
        if let Some(timeout) = l.timeout {
            let left = timeout.saturating_sub(last_item.elapsed());
            if left.is_zero() || response.set_read_timeout(left).is_err() {
                return Ended::Broken(silence(timeout));
            }
        }
        let n = match response.body().read(&mut buf) {
            Ok(0) => return Ended::Broken("the stream ended".into()),
            Ok(n) => n,
            Err(e) => return Ended::Broken(describe(&e, l.timeout)),
        };
        let fed = decoder.feed(&buf[..n], &mut items);
        if let Some(ms) = decoder.reconnection_time() {
            *retry = Duration::from_millis(ms).clamp(MIN_RETRY, MAX_RETRY);
        }
        if !items.is_empty() {
            last_item = Instant::now();
        }
        for item in items.drain(..) {
            match printer.item(item) {
                Ok(false) => {}
                // Done, or stdout closed (`| head`): either way, stop quietly.
                Ok(true) | Err(_) => return Ended::Finished,
            }
        }
        if let Err(overflow) = fed {
            let hint = match overflow {
                sse::Overflow::Data(_) | sse::Overflow::Line(_) => " (--max-event-bytes)",
                _ => "",
            };
            return Ended::Broken(format!("{overflow}{hint}; the event was dropped"));
        }
    }
}

fn silence(timeout: Duration) -> String {
    format!("no event or comment for {} s", timeout.as_secs_f64())
}

/// `URL: 404 Not Found: reason`, the reason being a JSON body's `error`
/// field, or the first line of any other body.
fn status_error(url: &Url, mut res: http::Response) -> String {
    let text = res.text(ERROR_BODY_LIMIT).unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_else(|| text.lines().next().unwrap_or("").trim().to_string());
    let sep = if detail.is_empty() { "" } else { ": " };
    format!("{url}: {} {}{sep}{detail}", res.status, res.reason)
}

fn describe(e: &io::Error, timeout: Option<Duration>) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => match timeout {
            Some(t) => silence(t),
            None => "timed out".into(),
        },
        io::ErrorKind::UnexpectedEof => format!("the connection broke: {e}"),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn listen_arguments() {
        let l = parse_listen(
            args(&[
                "http://h:1/s",
                "--json",
                "-H",
                "X-A: b",
                "--events=3",
                "--retry",
                "100",
                "--timeout",
                "0.5",
                "--max-event-bytes",
                "64K",
                "--location-trusted",
            ]),
            &mut io::empty(),
        )
        .unwrap()
        .unwrap();
        assert!(l.json && l.location_trusted);
        assert_eq!(l.events, Some(3));
        assert_eq!(l.headers, [("X-A".to_string(), "b".to_string())]);
        assert_eq!(l.retry, Duration::from_millis(100));
        assert_eq!(l.timeout, Some(Duration::from_millis(500)));
        assert_eq!(l.max_event_bytes, 64 * 1024);
        let l = parse_listen(args(&["http://h/", "-d", "-"]), &mut &b"body"[..])
            .unwrap()
            .unwrap();
        assert_eq!(l.body.as_deref(), Some(&b"body"[..]));
        let errors = [
            (args(&[]), "listen needs a URL, such as http://127.0.0.1:8000/stream-time"),
            (args(&["http://h/", "--events", "0"]), "invalid value \"0\" for --events: expected a whole number above 0"),
            (args(&["http://h/", "-H", "nocolon"]), "invalid value \"nocolon\" for -H: expected 'Name: value'"),
            (args(&["http://h/", "--frobnicate"]), "unknown option \"--frobnicate\" for listen"),
            (args(&["http://h/", "--last-event-id", "a\nb"]), "invalid value \"a\\nb\" for --last-event-id: an event id must not contain CR, LF or NUL"),
            (args(&["http://h/", "-d", "@/no/such/file"]), "invalid value \"@/no/such/file\" for -d: /no/such/file: No such file or directory (os error 2)"),
            (args(&["http://h/", "--retry", "10"]), "invalid value \"10\" for --retry: expected milliseconds from 100 to 3600000"),
            (args(&["http://h/", "--max-event-bytes", "huge"]), "invalid value \"huge\" for --max-event-bytes: expected bytes from 16 to 67108864, such as 65536, 64K or 1M"),
            (args(&["http://h/", "http://other/"]), "unexpected argument \"http://other/\""),
        ];
        for (a, why) in errors {
            assert_eq!(
                parse_listen(a.clone(), &mut io::empty()).unwrap_err(),
                UsageError(why.into()),
                "{a:?}"
            );
        }
        assert!(parse_listen(args(&["https://h/"]), &mut io::empty())
            .unwrap_err()
            .0
            .contains("no TLS built in"));
    }

    #[test]
    fn waits_are_bounded_backed_off_and_jittered() {
        let ms = Duration::from_millis;
        for (retry, failures, base) in [
            (ms(3000), 0, ms(3000)),
            (ms(0), 0, MIN_RETRY),
            (ms(100), 1, ms(100)),
            (ms(100), 2, ms(200)),
            (ms(100), 3, ms(400)),
            (ms(100), 20, MAX_BACKOFF),
            (Duration::MAX, 0, MAX_RETRY),
            (Duration::MAX, 5, MAX_RETRY),
        ] {
            let d = wait_before_reconnecting(retry, failures);
            assert!(
                d >= base && d <= (base + base / 4).min(MAX_RETRY),
                "{retry:?} x{failures}: {d:?}"
            );
        }
    }
}
