//! `ssed publish`: sends one event to a topic and prints the server's reply.

use super::http::{self, Session};
use super::Url;
use super::{header_arg, read_data, token_arg, Outcome};
use crate::args::{self, Arg, Args, UsageError};
use crate::lines::each_line;
use crate::sse;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

pub const PUBLISH_USAGE: &str = "\
Usage: ssed publish URL [DATA] [OPTIONS]
       ssed publish URL --lines [OPTIONS] < input

POSTs DATA (or standard input, when DATA is - or absent, less one trailing
newline) to a topic URL and prints the server's reply. With --lines, each line
of standard input is published as its own event, as it comes, until the input
ends.

DATA means what it means to curl -d: a JSON object with a \"data\" field is
read as {\"data\": ..., \"event\": \"...\"} (so '{\"data\": 1}' publishes 1);
anything else is the event's data as it is. --text publishes DATA as it is,
whatever it looks like. --lines always publishes each line as it is.

Options:
      --event NAME            the event's name (sent as ?event=NAME)
      --text                  send DATA as text/plain: its data as it is
      --token TOKEN           send Authorization: Bearer TOKEN
                              [SSED_PUBLISH_TOKEN]
  -H, --header 'NAME: VALUE'  add a request header; repeatable
      --lines                 one event per line of standard input
      --queue SIZE            with --lines: lines held while the server cannot
                              be reached; past it the oldest are dropped, and
                              said so [1M]
      --max-event-bytes SIZE  with --lines: longer lines are cut [64K]
      --max-retries N         with --lines: give up after N failed attempts in
                              a row [never]
  -h, --help                  print this help

Exit status: 0 on a 2xx answer (with --lines: every line published), 1
otherwise (the status and the server's error are printed on stderr; with
--lines, also when lines were dropped), 2 on a bad command line.
";

/// How long a publish may take, connect to reply.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a reply that is read.
const REPLY_LIMIT: u64 = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct Publish {
    pub url: Url,
    pub data: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// `--lines`: how to publish standard input line by line.
    pub lines: Option<LineSettings>,
}

/// `ssed publish --lines`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineSettings {
    /// Bytes of lines held while the server cannot be reached.
    pub queue: usize,
    /// Longer lines are cut.
    pub max_line: usize,
    pub max_retries: Option<u32>,
}

/// Parses the arguments after `publish`; `env` looks up `SSED_PUBLISH_TOKEN`.
pub fn parse_publish(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
) -> Result<Result<Publish, &'static str>, UsageError> {
    let mut args = Args::new(args);
    let mut positional = Vec::new();
    let mut event = None;
    let mut token = env("SSED_PUBLISH_TOKEN").filter(|t| !t.is_empty());
    let mut headers = Vec::new();
    let mut lines = false;
    let mut text = false;
    let mut settings = LineSettings {
        queue: 1024 * 1024,
        max_line: 64 * 1024,
        max_retries: None,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg {
            Arg::Plain(value) => {
                positional.push(value);
                continue;
            }
            Arg::Option(flag, inline) => (flag, inline),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Err(PUBLISH_USAGE)),
            "--event" => {
                let v = args.value(&flag, inline)?;
                sse::check_field("an event name", &v)
                    .map_err(|why| args::invalid(&flag, &v, &why))?;
                event = Some(v);
            }
            "--token" => token = Some(token_arg(&flag, args.value(&flag, inline)?)?),
            "-H" | "--header" => headers.push(header_arg(&args.value(&flag, inline)?)?),
            "--lines" => lines = true,
            "--text" => text = true,
            "--queue" => {
                let v = args.value(&flag, inline)?;
                settings.queue =
                    args::bytes(&v, 1024, 1 << 30).map_err(|why| args::invalid(&flag, &v, &why))?;
            }
            "--max-event-bytes" => {
                let v = args.value(&flag, inline)?;
                settings.max_line =
                    args::bytes(&v, 16, 64 << 20).map_err(|why| args::invalid(&flag, &v, &why))?;
            }
            "--max-retries" => {
                let v = args.value(&flag, inline)?;
                settings.max_retries = Some(
                    v.parse()
                        .map_err(|_| args::invalid(&flag, &v, "expected a whole number"))?,
                );
            }
            _ => return Err(args::unknown(&flag, "publish")),
        }
    }
    let mut positional = positional.into_iter();
    let raw = positional.next().ok_or_else(|| {
        UsageError("publish needs a URL, such as http://127.0.0.1:8000/events/news".into())
    })?;
    let mut url = Url::parse(&raw).map_err(|why| args::invalid("URL", &raw, &why))?;
    let data = match (positional.next(), lines) {
        (Some(d), true) => {
            return Err(UsageError(format!(
                "unexpected argument {d:?}: --lines publishes standard input"
            )))
        }
        (_, true) => Ok(Vec::new()),
        (None, false) => read_stdin(stdin),
        (Some(d), false) if d == "-" => read_stdin(stdin),
        (Some(d), false) => Ok(d.into_bytes()),
    }
    .map_err(UsageError)?;
    if let Some(extra) = positional.next() {
        return Err(UsageError(format!("unexpected argument {extra:?}")));
    }
    if let Some(name) = event {
        let sep = if url.target.contains('?') { '&' } else { '?' };
        url.target = format!("{}{sep}event={}", url.target, percent_encode(&name));
    }
    // Without a type the server reads DATA as it reads `curl -d`; a line
    // of a log is text whatever it looks like.
    let typed = headers
        .iter()
        .any(|(n, _): &(String, String)| n.eq_ignore_ascii_case("Content-Type"));
    if !typed && (text || lines) {
        headers.push(("Content-Type".into(), "text/plain; charset=utf-8".into()));
    }
    if let Some(token) = token {
        headers.push(("Authorization".into(), format!("Bearer {token}")));
    }
    Ok(Ok(Publish {
        url,
        data,
        headers,
        lines: lines.then_some(settings),
    }))
}

/// Standard input, less one trailing newline (LF or CRLF), as `curl -d @-`
/// reads it: `echo hi | ssed publish URL` publishes `hi`.
fn read_stdin(stdin: &mut dyn Read) -> Result<Vec<u8>, String> {
    let mut data = read_data("-", stdin)?;
    if data.ends_with(b"\n") {
        data.pop();
        if data.ends_with(b"\r") {
            data.pop();
        }
    }
    Ok(data)
}

/// Sends the publish and prints the reply.
pub fn publish(p: &Publish, out: &mut dyn Write) -> Outcome {
    let headers = with_key(&p.headers);
    let res = match http::request(&p.url, "POST", &headers, Some(&p.data), Some(TIMEOUT)) {
        Ok(res) => res,
        Err(e) => return Outcome::Failed(format!("{}: {e}", p.url)),
    };
    super::print_reply(&p.url, res, REPLY_LIMIT, out)
}

/// `headers` and an `Idempotency-Key` of its own (unless one was given):
/// a publish retried with it (by `--lines`, or by hand after a 504) is
/// stored once.
fn with_key(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = headers.to_vec();
    if !out
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(crate::names::IDEMPOTENCY_HEADER))
    {
        out.push((
            crate::names::IDEMPOTENCY_HEADER.into(),
            crate::names::draw_idempotency_key(),
        ));
    }
    out
}

/// The first wait after a failed attempt (`--lines`); it doubles while
/// attempts keep failing, up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(100);
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Lines read and not yet published, at most `limit` bytes of them.
struct Queue {
    state: Mutex<Queued>,
    ready: Condvar,
    limit: usize,
}

#[derive(Default)]
struct Queued {
    lines: VecDeque<String>,
    bytes: usize,
    /// Dropped to keep within the limit, since last said.
    dropped: u64,
    /// The input has ended.
    ended: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a line, dropping the oldest past the limit.
    fn push(&self, line: String) {
        let mut q = self.lock();
        q.bytes += line.len();
        q.lines.push_back(line);
        while q.bytes > self.limit && q.lines.len() > 1 {
            if let Some(old) = q.lines.pop_front() {
                q.bytes -= old.len();
                q.dropped += 1;
            }
        }
        drop(q);
        self.ready.notify_one();
    }

    fn end(&self) {
        self.lock().ended = true;
        self.ready.notify_one();
    }

    /// The next line, waiting for one; `None` once the input ended and all
    /// was taken.
    fn next(&self) -> Option<String> {
        let mut q = self.lock();
        loop {
            if let Some(line) = q.lines.pop_front() {
                q.bytes -= line.len();
                return Some(line);
            }
            if q.ended {
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Gives up: how many lines are left unsent, queued or dropped (the
    /// input may still hold more, never read).
    fn abandon(&self) -> u64 {
        let mut q = self.lock();
        let left = q.lines.len() as u64 + q.dropped;
        q.lines.clear();
        q.dropped = 0;
        left
    }

    /// Lines dropped since last asked.
    fn take_dropped(&self) -> u64 {
        std::mem::take(&mut self.lock().dropped)
    }
}

/// `ssed publish --lines`: each line of `input` as its own event, as it
/// comes, over one kept-open connection. While the server cannot be
/// reached, lines wait in a bounded queue and attempts back off; lines the
/// queue could not hold are counted and reported, never lost in silence.
pub fn publish_lines(
    p: &Publish,
    settings: &LineSettings,
    input: impl Read + Send + 'static,
    err: &mut dyn Write,
) -> Outcome {
    let queue = Arc::new(Queue {
        state: Mutex::default(),
        ready: Condvar::new(),
        limit: settings.queue,
    });
    {
        // Reads for as long as the input lasts; the process ends with it.
        let queue = Arc::clone(&queue);
        let max = settings.max_line;
        let spawned = std::thread::Builder::new()
            .name("ssed-stdin".into())
            .spawn(move || {
                each_line(input, max, |line| queue.push(line));
                queue.end();
            });
        if let Err(e) = spawned {
            return Outcome::Failed(format!("cannot start reading standard input: {e}"));
        }
    }
    let mut session = Session::new(p.url.clone(), TIMEOUT);
    let mut lost: u64 = 0;
    let mut failures: u32 = 0;
    // Lines the queue had to drop are said as soon as they are noticed.
    let note_dropped = |lost: &mut u64, err: &mut dyn Write| {
        let dropped = queue.take_dropped();
        if dropped > 0 {
            *lost += dropped;
            let _ = writeln!(
                err,
                "ssed: {}: {dropped} lines were dropped while the server could not be reached (--queue)",
                p.url
            );
        }
    };
    while let Some(line) = queue.next() {
        // One key a line, the same on each of its retries: a line whose
        // answer was lost is stored once.
        let headers = with_key(&p.headers);
        loop {
            let why = match session.request("POST", &headers, line.as_bytes(), REPLY_LIMIT) {
                Ok(a) if (200..300).contains(&a.status) => {
                    failures = 0;
                    break;
                }
                // The line itself is refused: say so, and go on.
                Ok(a) if matches!(a.status, 400 | 413) => {
                    lost += 1;
                    let _ = writeln!(
                        err,
                        "ssed: {}: {} {}: {}; the line was dropped",
                        p.url,
                        a.status,
                        a.reason,
                        reason(&a.body)
                    );
                    break;
                }
                Ok(a) if matches!(a.status, 429 | 500..=599) => {
                    format!("{} {}: {}", a.status, a.reason, reason(&a.body))
                }
                Ok(a) => {
                    let unsent = lost + 1 + queue.abandon();
                    return Outcome::Failed(format!(
                        "{}: {} {}: {}; {unsent} lines were not published",
                        p.url,
                        a.status,
                        a.reason,
                        reason(&a.body)
                    ));
                }
                Err(e) => e.to_string(),
            };
            failures += 1;
            if settings.max_retries.is_some_and(|max| failures > max) {
                let unsent = lost + 1 + queue.abandon();
                return Outcome::Failed(format!(
                    "{}: {why}; gave up after {failures} attempts; {unsent} lines were not published",
                    p.url,
                ));
            }
            let wait = FIRST_WAIT
                .saturating_mul(1 << failures.saturating_sub(1).min(16))
                .min(MAX_WAIT);
            let wait = wait + wait.mul_f64(fastrand::f64() * 0.25);
            let _ = writeln!(
                err,
                "ssed: {}: {why}; trying again in {:.1} s",
                p.url,
                wait.as_secs_f64()
            );
            note_dropped(&mut lost, err);
            std::thread::sleep(wait);
        }
        note_dropped(&mut lost, err);
    }
    note_dropped(&mut lost, err);
    match lost {
        0 => Outcome::Done,
        n => Outcome::Failed(format!("{}: {n} lines were not published", p.url)),
    }
}

/// The `error` of a JSON answer, or its first line.
fn reason(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_else(|| body.lines().next().unwrap_or("").trim().to_string())
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
    use std::io;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
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
        let p = parse_publish(args(&["http://h/t"]), |_| None, &mut &b"from stdin\n"[..])
            .unwrap()
            .unwrap();
        assert_eq!(p.data, b"from stdin", "one trailing newline is dropped");
        assert!(!p.headers.iter().any(|(n, _)| n == "Authorization"));
        let p = parse_publish(args(&["http://h/t", "-"]), |_| None, &mut &b"two\n\n"[..])
            .unwrap()
            .unwrap();
        assert_eq!(p.data, b"two\n", "only one");
        let p = parse_publish(args(&["http://h/t", "kept\n"]), |_| None, &mut io::empty())
            .unwrap()
            .unwrap();
        assert_eq!(p.data, b"kept\n", "an argument is sent as it is");
        assert!(
            parse_publish(args(&["http://h/t", "a", "b"]), |_| None, &mut io::empty()).is_err()
        );
        assert_eq!(
            parse_publish(
                args(&["http://h/t", "x", "--token", ""]),
                |_| None,
                &mut io::empty()
            )
            .unwrap_err(),
            UsageError("invalid value for --token: the token is empty".into())
        );
    }
}
