//! Helpers for tests that speak HTTP to a real server on 127.0.0.1:0.
#![allow(dead_code)]

pub mod cgroup;
pub mod redis;

use ssed::sse::{Decoder, Item, Message};
use ssed::{Config, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long any single read may block before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Conn::events`] waits for all it was asked for.
pub const EVENTS_WITHIN: Duration = Duration::from_secs(60);

/// Starts a server on a free port with fast demo intervals, after `tweak`.
pub fn start(tweak: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config {
        addr: "127.0.0.1:0".into(),
        ..Config::default()
    };
    config.pace.stats = Duration::from_millis(200);
    config.pace.stocks = Duration::from_millis(5);
    config.max_streams = Some(200);
    tweak(&mut config);
    Server::start(config).expect("server starts")
}

/// A loopback port free now (for a server started later on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `cond` until it holds; fails the test after `within`.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The status and headers of a response.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub raw: String,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One client connection, reading with a timeout.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    decoder: Decoder,
    items: Vec<Item>,
}

impl Conn {
    /// Connects and sends `raw` as it is.
    pub fn raw(addr: SocketAddr, raw: &[u8]) -> Conn {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(raw).unwrap();
        Conn::from_stream(stream)
    }

    /// A connection already made (and its request sent).
    pub fn from_stream(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            decoder: Decoder::new(),
            items: Vec::new(),
        }
    }

    /// Sends a request with the given method, target, extra headers and body.
    pub fn send(
        addr: SocketAddr,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Conn {
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        Conn::raw(addr, &bytes)
    }

    pub fn get(addr: SocketAddr, target: &str) -> Conn {
        Conn::send(addr, "GET", target, &[], b"")
    }

    fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 8192];
        let n = self.stream.read(&mut tmp).expect("read (timed out?)");
        self.buf.extend_from_slice(&tmp[..n]);
        n
    }

    fn take_until(&mut self, delim: &[u8]) -> Vec<u8> {
        loop {
            if let Some(i) = self.buf.windows(delim.len()).position(|w| w == delim) {
                let rest = self.buf.split_off(i + delim.len());
                return std::mem::replace(&mut self.buf, rest);
            }
            assert!(
                self.fill() > 0,
                "connection closed while waiting for {delim:?}"
            );
        }
    }

    fn take_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill() > 0, "connection closed before {n} bytes");
        }
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    pub fn head(&mut self) -> Head {
        let raw = String::from_utf8(self.take_until(b"\r\n\r\n")).unwrap();
        let mut lines = raw.trim_end().split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap().to_string();
        let status = parts.next().unwrap().parse().unwrap();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_string(), v.trim().to_string())
            })
            .collect();
        Head {
            status,
            version,
            headers,
            raw,
        }
    }

    /// One chunk of a chunked body; `None` for the last (empty) chunk.
    pub fn chunk(&mut self) -> Option<Vec<u8>> {
        let size_line = self.take_until(b"\r\n");
        let size = std::str::from_utf8(&size_line[..size_line.len() - 2]).unwrap();
        let size = usize::from_str_radix(size, 16).expect("chunk size");
        let data = self.take_exact(size);
        assert_eq!(self.take_exact(2), b"\r\n", "chunk not followed by CRLF");
        (size > 0).then_some(data)
    }

    pub fn chunk_str(&mut self) -> Option<String> {
        self.chunk().map(|c| String::from_utf8(c).unwrap())
    }

    /// A whole response: head and body (de-chunked, or by Content-Length).
    pub fn response(&mut self) -> (Head, String) {
        let head = self.head();
        let body = if head.header("Transfer-Encoding") == Some("chunked") {
            let mut body = Vec::new();
            while let Some(c) = self.chunk() {
                body.extend(c);
            }
            body
        } else {
            let len = head
                .header("Content-Length")
                .map_or(0, |l| l.parse().unwrap());
            self.take_exact(len)
        };
        (head, String::from_utf8(body).unwrap())
    }

    /// Reads chunks until the decoder has produced `n` more items of any kind.
    pub fn items(&mut self, n: usize) -> Vec<Item> {
        while self.items.len() < n {
            let chunk = self.chunk().expect("stream ended early");
            self.decoder
                .feed(&chunk, &mut self.items)
                .expect("an unbounded decoder never overflows");
        }
        self.items.drain(..n).collect()
    }

    /// The next `n` events, skipping comments. Fails the test if they do
    /// not come within [`EVENTS_WITHIN`] (keep-alive comments would
    /// otherwise keep a read waiting forever for an event that was lost).
    pub fn events(&mut self, n: usize) -> Vec<Message> {
        let deadline = Instant::now() + EVENTS_WITHIN;
        let mut out = Vec::new();
        while out.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} events within {EVENTS_WITHIN:?}",
                out.len()
            );
            if let Item::Event(m) = self.items(1).remove(0) {
                out.push(m);
            }
        }
        out
    }

    /// Every remaining event until the last chunk.
    pub fn events_to_end(&mut self) -> Vec<Message> {
        while let Some(chunk) = self.chunk() {
            self.decoder
                .feed(&chunk, &mut self.items)
                .expect("an unbounded decoder never overflows");
        }
        self.items
            .drain(..)
            .filter_map(|i| match i {
                Item::Event(m) => Some(m),
                Item::Comment(_) => None,
            })
            .collect()
    }

    /// Reads until the server closes the connection.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buf);
        self.stream.read_to_end(&mut rest).expect("read to end");
        rest
    }

    /// Reads a stream's head and first chunk, which ssed writes once the
    /// stream is subscribed: after this, a publish reaches this client.
    pub fn open_stream(addr: SocketAddr, target: &str) -> Conn {
        let mut conn = Conn::get(addr, target);
        let head = conn.head();
        assert_eq!(head.status, 200, "{}", head.raw);
        assert_eq!(conn.chunk_str().as_deref(), Some("retry: 2000\n"));
        conn
    }
}

/// A one-shot request with `Connection: close`: the response's head and body.
pub fn fetch(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Head, String) {
    let mut all = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    Conn::send(addr, method, target, &all, body).response()
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A real `ssed` process on a free loopback port, killed when dropped: for
/// tests that attack it (a crash shows as an exit) and count its threads
/// and descriptors in /proc.
pub struct Daemon {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Its stderr, line by line, as it comes.
    pub stderr: std::sync::mpsc::Receiver<String>,
}

impl Daemon {
    /// Starts the binary with `args` after `--addr 127.0.0.1:0`.
    pub fn start(args: &[&str]) -> Daemon {
        Daemon::start_with(std::process::Command::new(env!("CARGO_BIN_EXE_ssed")), args).0
    }

    /// Starts the binary in `cgroup`, with `args` after `--addr
    /// 127.0.0.1:0`; also returns its start-up line.
    pub fn start_in(cgroup: &cgroup::Cgroup, args: &[&str]) -> (Daemon, String) {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "echo $$ > \"$0\" && exec \"$@\""])
            .arg(cgroup.procs())
            .arg(env!("CARGO_BIN_EXE_ssed"));
        Daemon::start_with(cmd, args)
    }

    fn start_with(mut cmd: std::process::Command, args: &[&str]) -> (Daemon, String) {
        use std::io::BufRead;
        use std::process::Stdio;
        raise_open_files_limit();
        for (name, _) in std::env::vars() {
            if name.starts_with("SSED_") {
                cmd.env_remove(name);
            }
        }
        let mut child = cmd
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ssed");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("ssed listening on http://")
            .and_then(|rest| rest.split_once("/ (").map(|(a, _)| a))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected start-up line {line:?}"));
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (
            Daemon {
                child,
                addr,
                stderr: rx,
            },
            line,
        )
    }

    /// Resident memory at its highest so far, in KiB (`VmHWM`).
    pub fn peak_rss_kb(&self) -> u64 {
        self.status_kb("VmHWM:")
    }

    fn count(&self, dir: &str) -> usize {
        let pid = self.child.id();
        std::fs::read_dir(format!("/proc/{pid}/{dir}"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn threads(&self) -> usize {
        self.count("task")
    }

    pub fn fds(&self) -> usize {
        self.count("fd")
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS:")
    }

    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the daemon's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }

    /// A number from `/metrics`: the first sample whose line starts with
    /// `name` (labels included).
    pub fn metric(&self, name: &str) -> u64 {
        let text = fetch(self.addr, "GET", "/metrics", &[], b"").1;
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    /// (threads, descriptors) now.
    pub fn usage(&self) -> (usize, usize) {
        (self.threads(), self.fds())
    }

    /// Fails the test if the process has exited (crashed).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let err: Vec<String> = self.stderr.try_iter().collect();
            panic!("ssed exited: {status}; stderr: {err:?}");
        }
    }

    /// Waits until threads and descriptors are back to `baseline`.
    pub fn settles_to(&mut self, baseline: (usize, usize), within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            self.assert_running();
            let now = self.usage();
            if now.0 <= baseline.0 && now.1 <= baseline.1 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "threads and descriptors {now:?}, not back to {baseline:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Sends SIGTERM and waits for the exit: how long it took, and the
    /// status. Fails the test past `within`.
    pub fn terminate(&mut self, within: Duration) -> (Duration, std::process::ExitStatus) {
        let started = Instant::now();
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (started.elapsed(), status);
            }
            assert!(
                started.elapsed() < within,
                "ssed did not exit within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The next stderr line that contains `text`, within `within`.
    pub fn stderr_line(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stderr line with {text:?} within {within:?}"),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Floods and many clients need more descriptors than the soft limit of 1024.
pub fn raise_open_files_limit() {
    let _ = ssed::sys::limits::raise_open_files_limit();
}

/// A directory of its own under the temporary directory, removed when
/// dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ssed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Appends `bytes` to the file at `path`, making it if need be.
pub fn append(path: &std::path::Path, bytes: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes.as_bytes())
        .unwrap();
}

/// Whether process `pid` is gone (or a zombie nobody has reaped yet).
pub fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command's name in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// An `Idempotency-Key` is tied to its publish: the same key for another
/// topic or other data is refused (422), a bad topic is a 400 whatever the
/// key, two keys in one request are refused, and nothing is stored by any
/// of them. `a` and `b` may be one server or two sharing Redis.
pub fn keys_are_tied_to_their_publish(a: SocketAddr, b: SocketAddr) {
    let post = |addr: SocketAddr, topic: &str, keys: &[&str], body: &[u8]| {
        let headers: Vec<(&str, &str)> = keys.iter().map(|k| ("Idempotency-Key", *k)).collect();
        let (head, reply) = fetch(addr, "POST", &format!("/events/{topic}"), &headers, body);
        (head.status, reply)
    };
    let mut beta = Conn::open_stream(b, "/events/beta");
    let (status, first) = post(a, "alpha", &["K"], b"one");
    assert_eq!(status, 200, "{first}");
    let reused = "this Idempotency-Key was used for another publish (another topic or other data); a new event needs a new key";
    for (addr, topic, body) in [
        (a, "beta", &b"one"[..]),
        (b, "beta", b"one"),
        (b, "alpha", b"two"),
    ] {
        let (status, reply) = post(addr, topic, &["K"], body);
        assert_eq!(
            (status, json(&reply)["error"].as_str()),
            (422, Some(reused)),
            "{topic}"
        );
    }
    let (status, reply) = post(b, "bad%20name", &["K"], b"one");
    assert_eq!(status, 400, "{reply}");
    assert!(json(&reply)["error"]
        .as_str()
        .unwrap()
        .starts_with("topic names are"));
    let (status, reply) = post(a, "beta", &["K1", "K2"], b"x");
    assert_eq!(
        (status, json(&reply)["error"].as_str()),
        (
            400,
            Some("a publish takes one Idempotency-Key header, not several")
        )
    );
    // The retry itself is still answered with the first id, on either.
    assert_eq!(post(b, "alpha", &["K"], b"one"), (200, first));
    // Nothing reached beta: its next event is this one.
    assert_eq!(post(a, "beta", &["K3"], b"first on beta").0, 200);
    assert_eq!(beta.events(1)[0].data, "first on beta");
}

/// A token of `header` and `claims` (JSON text), signed by Python with
/// `key` and the hash `alg` names (HS256, HS512), or unsigned for `none`.
pub fn sign_as(header: &str, claims: &str, key: &str) -> String {
    let script = r#"
import base64, hashlib, hmac, json, sys
header, claims, key = sys.argv[1], sys.argv[2], sys.argv[3]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
alg = json.loads(header).get("alg")
signing = b64(header.encode()) + "." + b64(claims.encode())
hashes = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}
sig = b64(hmac.new(key.encode(), signing.encode(), hashes[alg]).digest()) if alg in hashes else ""
print(signing + "." + sig)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, header, claims, key])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A `Retry-After` as ssed draws it: 5 to 10 seconds.
pub fn retry_after_ok(value: Option<&str>) -> bool {
    value
        .and_then(|v| v.parse::<u32>().ok())
        .is_some_and(|n| (5..=10).contains(&n))
}
