//! What ssed says on stderr: start-up and shutdown, internal errors, each
//! class of refusal at most once a second with a count, and (with
//! `--access-log`) one line per request.
//!
//! Refusals come in floods (a client that retries in a loop, a scan, a
//! slowloris): printing each would turn an attack on the network into one on
//! the disk and the terminal. So each class prints its first occurrence at
//! once, then at most one line a second that says how many there were.

use crate::calendar::{self, Civil};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Prints one line on stderr, prefixed `ssed: `. A closed or full stderr is
/// not an error worth stopping a server for.
pub fn line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "ssed: {text}");
}

/// One access-log line, as it is.
pub fn access(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// An error inside ssed (a bug, or the system refusing something it
/// should not): always printed, never rate-limited.
pub fn internal(text: &str) {
    line(&format!("internal error: {text}"));
}

/// A class of refusal, printed at most once a second with a count.
pub struct Throttled {
    /// What happened, as it reads after a count: "connections refused: ...".
    what: &'static str,
    /// Occurrences not yet printed.
    pending: AtomicU64,
    /// When a line was last printed, in ms since `epoch`; `u64::MAX` for never.
    printed_at: AtomicU64,
    epoch: Instant,
}

/// The least time between two lines of one class.
const EVERY_MS: u64 = 1000;

impl Throttled {
    pub fn new(what: &'static str) -> Throttled {
        Throttled {
            what,
            pending: AtomicU64::new(0),
            printed_at: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
        }
    }

    /// Counts one occurrence, printing a line if none was printed in the
    /// last second. `detail` is shown only on that line.
    pub fn note(&self, detail: &str) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.printed_at.load(Ordering::Relaxed);
        if last != u64::MAX && now.saturating_sub(last) < EVERY_MS {
            return;
        }
        // One thread wins the right to print this second.
        if self
            .printed_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.print(detail);
        }
    }

    /// Prints what is still uncounted (at shutdown).
    pub fn flush(&self) {
        if self.pending.load(Ordering::Relaxed) > 0 {
            self.print("");
        }
    }

    fn print(&self, detail: &str) {
        let n = self.pending.swap(0, Ordering::Relaxed);
        if n == 0 {
            return;
        }
        let sep = if detail.is_empty() { "" } else { "; last: " };
        line(&format!("{n} {}{sep}{detail}", self.what));
    }
}

/// One access-log line: `2026-11-22T07:37:52Z 127.0.0.1:5123 "GET /sse HTTP/1.1" 200 1234 0.012s`,
/// and ` sub=NAME` when a signed token (or the application) said who made
/// the request. The target is shown with control and non-ASCII bytes
/// escaped, and the value of every `token` query parameter hidden, however
/// its name is spelled (see `shown_target`); the name is escaped alike.
pub struct Access<'a> {
    pub peer: &'a str,
    pub method: &'a str,
    pub target: &'a str,
    pub version: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub secs: f64,
    pub user: Option<&'a str>,
}

impl Access<'_> {
    pub fn line(&self) -> String {
        let Access {
            peer,
            method,
            version,
            status,
            bytes,
            secs,
            ..
        } = self;
        let mut line = format!(
            "{} {peer} \"{method} {} {version}\" {status} {bytes} {secs:.3}s",
            Civil::from_unix(calendar::unix_now()).iso8601(),
            shown_target(self.target)
        );
        if let Some(user) = self.user {
            line.push_str(" sub=");
            line.push_str(&escaped(user));
        }
        line
    }
}

/// The target as it can be logged: secret values replaced by `***`, and
/// anything but printable ASCII as `\xNN`. A value is secret when its
/// parameter's name, decoded as the server decodes it (`%74oken`,
/// `tok%65n`, `+` for space), is `token` in any case, or cannot be decoded
/// at all: the log never holds more than the server could have read as a
/// token, whatever the spelling, and every repetition is hidden.
fn shown_target(target: &str) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut shown = path.to_string();
    if !query.is_empty() || target.ends_with('?') {
        shown.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret(name) => format!("{name}=***"),
                _ => pair.to_string(),
            })
            .collect();
        shown.push_str(&pairs.join("&"));
    }
    escaped(&shown)
}

/// Printable ASCII as it is, other bytes (and quotes, backslashes) as
/// `\xNN`: a logged value cannot end or forge a line.
fn escaped(shown: &str) -> String {
    let mut out = String::with_capacity(shown.len());
    for b in shown.bytes() {
        if (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Whether a query parameter named `raw` (as written) may carry a token.
fn is_secret(raw: &str) -> bool {
    match crate::http1::query_name(raw) {
        Some(name) => name.trim().eq_ignore_ascii_case("token"),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_safe_to_log() {
        let cases = [
            ("/sse", "/sse"),
            ("/events/a?token=s3cret&x=1", "/events/a?token=***&x=1"),
            ("/a?b=\"c\"", "/a?b=\\x22c\\x22"),
            ("/caf\u{e9}", "/caf\\xc3\\xa9"),
            ("/a?", "/a?"),
            // Spelled otherwise, the server still reads a token there.
            ("/e?%74oken=S3CRET", "/e?%74oken=***"),
            ("/e?tok%65n=S3CRET", "/e?tok%65n=***"),
            ("/e?%74%6F%6B%65%6E=S3CRET", "/e?%74%6F%6B%65%6E=***"),
            ("/e?TOKEN=S3CRET&Token=S3CRET", "/e?TOKEN=***&Token=***"),
            // Every repetition, not only the one the server uses.
            ("/e?token=a&x=1&token=S3CRET", "/e?token=***&x=1&token=***"),
            // A name that does not decode is hidden too.
            ("/e?tok%zzen=S3CRET", "/e?tok%zzen=***"),
            ("/e?tokens=1", "/e?tokens=1"),
        ];
        for (target, shown) in cases {
            assert_eq!(shown_target(target), shown);
        }
        let mut access = Access {
            peer: "1.2.3.4:5",
            method: "GET",
            target: "/x",
            version: "HTTP/1.1",
            status: 200,
            bytes: 12,
            secs: 0.0123,
            user: None,
        };
        let line = access.line();
        assert!(
            line.ends_with(" 1.2.3.4:5 \"GET /x HTTP/1.1\" 200 12 0.012s"),
            "{line}"
        );
        access.user = Some("user 42\n\"x");
        let line = access.line();
        assert!(
            line.ends_with(" 0.012s sub=user\\x2042\\x0a\\x22x"),
            "{line}"
        );
    }

    #[test]
    fn throttled_counts_between_lines() {
        let t = Throttled::new("things");
        t.note("a");
        assert_eq!(
            t.pending.load(Ordering::Relaxed),
            0,
            "the first prints at once"
        );
        t.note("b");
        t.note("c");
        assert_eq!(
            t.pending.load(Ordering::Relaxed),
            2,
            "later ones wait for the second"
        );
        t.flush();
        assert_eq!(t.pending.load(Ordering::Relaxed), 0);
    }
}
