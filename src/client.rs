//! `ssed listen` and `ssed publish`: the client for scripts.
//!
//! `listen` behaves like a browser's EventSource: it parses the stream with
//! [`sse::Decoder`] (the same module the server encodes with), and when the
//! connection ends or fails it waits the reconnection time and connects again
//! to the same URL with `Last-Event-ID`. What it prints is pipe-friendly: the
//! data of each event, or one JSON object per line with `--json`.

use crate::config::UsageError;
use crate::http::{self, Url};
use crate::sse::{self, Decoder, Item};
use serde_json::json;
use std::io::{self, Read, Write};
use std::time::Duration;

pub const LISTEN_USAGE: &str = "\
Usage: ssed listen URL [OPTIONS]

Prints the events of an SSE stream, reconnecting as a browser does.

Options:
  -H, --header 'NAME: VALUE'  add a request header; repeatable
  -X, --request METHOD        request method [GET, or POST with -d]
  -d, --data DATA             send DATA as the request body; @FILE reads a file, - reads stdin
      --json                  print {\"event\", \"data\", \"id\"} objects, one per line
      --comments              print comments too
      --events N              exit after N events
      --last-event-id ID      send this Last-Event-ID on the first connection
      --retry MS              reconnection time until the stream sets one [3000]
      --no-reconnect          exit when the connection ends
      --max-retries N         give up after N reconnections in a row that fail
      --timeout SECS          no bytes for this long counts as a dead connection
  -h, --help                  print this help

Exit status: 0 when done (--events reached, a 204 answer, the stream ended with
--no-reconnect, or stdout closed), 1 on an error, 2 on a bad command line.
";

pub const PUBLISH_USAGE: &str = "\
Usage: ssed publish URL [DATA] [OPTIONS]

POSTs DATA (or standard input, when DATA is - or absent) to a topic URL and
prints the server's reply.

Options:
      --event NAME     the event's name (sent as ?event=NAME)
      --token TOKEN    send Authorization: Bearer TOKEN [SSED_PUBLISH_TOKEN]
  -H, --header 'NAME: VALUE'  add a request header; repeatable
  -h, --help           print this help

Exit status: 0 on a 2xx answer, 1 otherwise (the status and the server's
error are printed on stderr), 2 on a bad command line.
";

/// Redirects followed before giving up, as browsers do.
const MAX_REDIRECTS: usize = 10;
/// The longest wait between reconnection attempts while a server is down.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How much of an error body to quote.
const ERROR_BODY_LIMIT: u64 = 4096;

/// What a command ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// One line saying what went wrong, starting with the URL.
    Failed(String),
}

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
}

/// Takes the value of option `flag`: inline (`--flag=value`) or the next argument.
fn value(
    flag: &str,
    inline: Option<String>,
    args: &mut impl Iterator<Item = String>,
) -> Result<String, UsageError> {
    inline
        .or_else(|| args.next())
        .ok_or_else(|| UsageError(format!("{flag} needs a value")))
}

fn invalid(flag: &str, value: &str, why: &str) -> UsageError {
    UsageError(format!("invalid value {value:?} for {flag}: {why}"))
}

fn header_arg(raw: &str) -> Result<(String, String), UsageError> {
    match raw.split_once(':') {
        Some((name, value))
            if !name.trim().is_empty()
                && name.bytes().all(|b| b.is_ascii_graphic())
                && !value.contains(['\r', '\n']) =>
        {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(invalid("-H", raw, "expected 'Name: value'")),
    }
}

/// Splits `--flag=value` (long options only).
fn split_flag(arg: String) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
        _ => (arg, None),
    }
}

fn read_data(arg: &str, stdin: &mut dyn Read) -> Result<Vec<u8>, String> {
    if arg == "-" {
        let mut data = Vec::new();
        stdin
            .read_to_end(&mut data)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        Ok(data)
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read(path).map_err(|e| format!("{path}: {e}"))
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}

/// Parses the arguments after `listen`.
pub fn parse_listen(
    args: impl IntoIterator<Item = String>,
    stdin: &mut dyn Read,
) -> Result<Result<Listen, &'static str>, UsageError> {
    let mut args = args.into_iter();
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
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(arg);
        match flag.as_str() {
            "-h" | "--help" => return Ok(Err(LISTEN_USAGE)),
            "--json" => l.json = true,
            "--comments" => l.comments = true,
            "--no-reconnect" => l.reconnect = false,
            "-H" | "--header" => l
                .headers
                .push(header_arg(&value(&flag, inline, &mut args)?)?),
            "-X" | "--request" => {
                let m = value(&flag, inline, &mut args)?;
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(invalid(&flag, &m, "expected a method such as GET or POST"));
                }
                l.method = Some(m.to_ascii_uppercase());
            }
            "-d" | "--data" => {
                let v = value(&flag, inline, &mut args)?;
                l.body = Some(read_data(&v, stdin).map_err(|why| invalid(&flag, &v, &why))?);
            }
            "--events" => {
                let v = value(&flag, inline, &mut args)?;
                l.events = Some(
                    v.parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| invalid(&flag, &v, "expected a whole number above 0"))?,
                );
            }
            "--last-event-id" => {
                let v = value(&flag, inline, &mut args)?;
                sse::check_field("an event id", &v).map_err(|why| invalid(&flag, &v, &why))?;
                l.last_event_id = Some(v);
            }
            "--retry" => {
                let v = value(&flag, inline, &mut args)?;
                let ms: u64 = v
                    .parse()
                    .ok()
                    .filter(|&ms| ms <= 3_600_000)
                    .ok_or_else(|| invalid(&flag, &v, "expected milliseconds from 0 to 3600000"))?;
                l.retry = Duration::from_millis(ms);
            }
            "--max-retries" => {
                let v = value(&flag, inline, &mut args)?;
                l.max_retries = Some(
                    v.parse()
                        .map_err(|_| invalid(&flag, &v, "expected a whole number"))?,
                );
            }
            "--timeout" => {
                let v = value(&flag, inline, &mut args)?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s| (0.01..=86_400.0).contains(s))
                    .ok_or_else(|| invalid(&flag, &v, "expected seconds from 0.01 to 86400"))?;
                l.timeout = Some(Duration::from_secs_f64(secs));
            }
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(UsageError(format!("unknown option {f:?} for listen")))
            }
            _ if url.is_none() => url = Some(flag),
            _ => return Err(UsageError(format!("unexpected argument {flag:?}"))),
        }
    }
    let raw = url.ok_or_else(|| {
        UsageError("listen needs a URL, such as http://127.0.0.1:8000/stream-time".into())
    })?;
    l.url = Url::parse(&raw).map_err(|why| invalid("URL", &raw, &why))?;
    Ok(Ok(l))
}

/// How one connection went.
enum Ended {
    /// `--events` reached or stdout closed: stop.
    Finished,
    /// The server said not to reconnect (204).
    NoContent,
    /// The stream ended or broke after it was open; reconnect after the
    /// reconnection time.
    Dropped(String),
    /// The connection could not be made; reconnect with backoff.
    Unreachable(String),
    /// An answer that is not a stream: do not reconnect.
    Fatal(String),
}

/// Runs `ssed listen` until it is done; events go to `out`, reconnection
/// notes to `err` (or to `out` as `{"error": ...}` with `--json`).
pub fn listen(l: &Listen, out: &mut dyn Write, err: &mut dyn Write) -> Outcome {
    let mut decoder = Decoder::new();
    if let Some(id) = &l.last_event_id {
        decoder.set_last_event_id(id);
    }
    let mut printer = Printer { l, out, count: 0 };
    let mut retry = l.retry;
    let mut failures: u32 = 0;
    loop {
        let ended = connect_and_read(l, &mut decoder, &mut printer, &mut retry);
        decoder.finish();
        let (why, wait) = match ended {
            Ended::Finished | Ended::NoContent => return Outcome::Done,
            Ended::Fatal(why) => return Outcome::Failed(why),
            Ended::Dropped(why) => {
                failures = 0;
                (why, retry)
            }
            Ended::Unreachable(why) => {
                failures += 1;
                (why, backoff(retry, failures))
            }
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
        let note = format!(
            "{}: {why}; reconnecting in {:.1} s",
            l.url,
            wait.as_secs_f64()
        );
        let shown = if l.json {
            printer.line(&json!({ "error": note }).to_string())
        } else {
            writeln!(err, "ssed: {note}")
        };
        if shown.is_err() {
            return Outcome::Done;
        }
        std::thread::sleep(wait);
    }
}

/// The wait before reconnection attempt `failures` (from 1) to a server
/// that cannot be reached: doubling from the reconnection time, capped,
/// with up to a quarter more at random so that many clients spread out.
fn backoff(retry: Duration, failures: u32) -> Duration {
    let doubled = retry.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let base = doubled.min(MAX_BACKOFF.max(retry));
    base + base.mul_f64(fastrand::f64() * 0.25)
}

struct Printer<'a> {
    l: &'a Listen,
    out: &'a mut dyn Write,
    count: u64,
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
                } else {
                    self.line(&m.data)?;
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
        (
            "User-Agent".to_string(),
            concat!("ssed/", env!("CARGO_PKG_VERSION")).to_string(),
        ),
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
            Err(e) => return Ended::Unreachable(describe(&e, l.timeout)),
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
                url = match url.join(location) {
                    Ok(next) => next,
                    Err(why) => {
                        return Ended::Fatal(format!(
                            "{url}: cannot follow Location {location:?}: {why}"
                        ))
                    }
                };
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

    let mut buf = vec![0u8; 16 * 1024];
    let mut items = Vec::new();
    loop {
        let n = match response.body().read(&mut buf) {
            Ok(0) => return Ended::Dropped("the stream ended".into()),
            Ok(n) => n,
            Err(e) => return Ended::Dropped(describe(&e, l.timeout)),
        };
        decoder.feed(&buf[..n], &mut items);
        if let Some(ms) = decoder.reconnection_time() {
            *retry = Duration::from_millis(ms);
        }
        for item in items.drain(..) {
            match printer.item(item) {
                Ok(false) => {}
                // Done, or stdout closed (`| head`): either way, stop quietly.
                Ok(true) | Err(_) => return Ended::Finished,
            }
        }
    }
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
            Some(t) => format!("no data for {} s", t.as_secs_f64()),
            None => "timed out".into(),
        },
        io::ErrorKind::UnexpectedEof => format!("the connection broke: {e}"),
        _ => e.to_string(),
    }
}

#[derive(Debug)]
pub struct Publish {
    pub url: Url,
    pub data: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Parses the arguments after `publish`; `env` looks up `SSED_PUBLISH_TOKEN`.
pub fn parse_publish(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
) -> Result<Result<Publish, &'static str>, UsageError> {
    let mut args = args.into_iter();
    let mut positional = Vec::new();
    let mut event = None;
    let mut token = env("SSED_PUBLISH_TOKEN").filter(|t| !t.is_empty());
    let mut headers = Vec::new();
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(arg);
        match flag.as_str() {
            "-h" | "--help" => return Ok(Err(PUBLISH_USAGE)),
            "--event" => {
                let v = value(&flag, inline, &mut args)?;
                sse::check_field("an event name", &v).map_err(|why| invalid(&flag, &v, &why))?;
                event = Some(v);
            }
            "--token" => {
                let v = value(&flag, inline, &mut args)?;
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(invalid(
                        &flag,
                        "(hidden)",
                        "expected printable ASCII without spaces",
                    ));
                }
                token = Some(v);
            }
            "-H" | "--header" => headers.push(header_arg(&value(&flag, inline, &mut args)?)?),
            "-" => positional.push(flag),
            f if f.starts_with('-') => {
                return Err(UsageError(format!("unknown option {f:?} for publish")))
            }
            _ => positional.push(flag),
        }
    }
    let mut positional = positional.into_iter();
    let raw = positional.next().ok_or_else(|| {
        UsageError("publish needs a URL, such as http://127.0.0.1:8000/events/news".into())
    })?;
    let mut url = Url::parse(&raw).map_err(|why| invalid("URL", &raw, &why))?;
    let data = match positional.next() {
        None => read_data("-", stdin),
        Some(d) if d == "-" => read_data("-", stdin),
        Some(d) => Ok(d.into_bytes()),
    }
    .map_err(UsageError)?;
    if let Some(extra) = positional.next() {
        return Err(UsageError(format!("unexpected argument {extra:?}")));
    }
    if let Some(name) = event {
        let sep = if url.target.contains('?') { '&' } else { '?' };
        url.target = format!("{}{sep}event={}", url.target, percent_encode(&name));
    }
    if !headers
        .iter()
        .any(|(n, _): &(String, String)| n.eq_ignore_ascii_case("Content-Type"))
    {
        headers.push(("Content-Type".into(), "text/plain; charset=utf-8".into()));
    }
    if let Some(token) = token {
        headers.push(("Authorization".into(), format!("Bearer {token}")));
    }
    Ok(Ok(Publish { url, data, headers }))
}

/// Sends the publish and prints the reply.
pub fn publish(p: &Publish, out: &mut dyn Write) -> Outcome {
    let mut res = match http::request(
        &p.url,
        "POST",
        &p.headers,
        Some(&p.data),
        Some(Duration::from_secs(30)),
    ) {
        Ok(res) => res,
        Err(e) => return Outcome::Failed(format!("{}: {e}", p.url)),
    };
    let text = match res.text(16 * 1024 * 1024) {
        Ok(text) => text,
        Err(e) => return Outcome::Failed(format!("{}: reading the reply: {e}", p.url)),
    };
    if !(200..300).contains(&res.status) {
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_else(|| text.trim().to_string());
        let sep = if detail.is_empty() { "" } else { ": " };
        return Outcome::Failed(format!(
            "{}: {} {}{sep}{detail}",
            p.url, res.status, res.reason
        ));
    }
    let newline = if text.ends_with('\n') || text.is_empty() {
        ""
    } else {
        "\n"
    };
    // A closed stdout is not an error: the publish happened.
    let _ = write!(out, "{text}{newline}").and_then(|()| out.flush());
    Outcome::Done
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
                "10",
                "--timeout",
                "0.5",
            ]),
            &mut io::empty(),
        )
        .unwrap()
        .unwrap();
        assert!(l.json);
        assert_eq!(l.events, Some(3));
        assert_eq!(l.headers, [("X-A".to_string(), "b".to_string())]);
        assert_eq!(l.retry, Duration::from_millis(10));
        assert_eq!(l.timeout, Some(Duration::from_millis(500)));
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
    fn publish_arguments() {
        let p = parse_publish(
            args(&["http://h/events/a?x=1", "hi", "--event", "a b"]),
            |_| Some("tok".into()),
            &mut io::empty(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.url.target, "/events/a?x=1&event=a%20b");
        assert_eq!(p.data, b"hi");
        assert!(p
            .headers
            .contains(&("Authorization".into(), "Bearer tok".into())));
        let p = parse_publish(args(&["http://h/t"]), |_| None, &mut &b"from stdin"[..])
            .unwrap()
            .unwrap();
        assert_eq!(p.data, b"from stdin");
        assert!(!p.headers.iter().any(|(n, _)| n == "Authorization"));
        assert!(
            parse_publish(args(&["http://h/t", "a", "b"]), |_| None, &mut io::empty()).is_err()
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let r = Duration::from_millis(100);
        for (failures, base) in [(1, 100), (2, 200), (3, 400), (20, 60_000)] {
            let d = backoff(r, failures);
            let base = Duration::from_millis(base);
            assert!(d >= base && d <= base + base / 4, "{failures}: {d:?}");
        }
    }
}
