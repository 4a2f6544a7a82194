//! The connection layer under attack, over real sockets, against the real
//! binary in its own process: no client may crash it, freeze it, or make it
//! hold what it should not. Each test shows the server still answering
//! `/healthz` and an existing subscriber still receiving, and the server's
//! threads and descriptors back to where they were once the attack ends.
//! Limits and timeouts are set small so that nothing waits for seconds;
//! floods are bounded and go to loopback only.

mod common;

use common::{fetch, json, Conn, Daemon};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(10);

/// Flags that make every timeout short.
const FAST: &[&str] = &[
    "--header-timeout",
    "0.5",
    "--idle-timeout",
    "1",
    "--write-timeout",
    "0.5",
    "--keepalive",
    "0.2",
];

fn daemon(extra: &[&str]) -> Daemon {
    let mut args = FAST.to_vec();
    args.extend_from_slice(extra);
    Daemon::start(&args)
}

/// A server under test, its subscriber to the topic `alive`, and where its
/// threads and descriptors should come back to.
struct Target {
    d: Daemon,
    sub: Conn,
    baseline: (usize, usize),
    published: u32,
    /// `--publish-token`, if the server was given one.
    token: Option<String>,
}

impl Target {
    fn new(extra: &[&str]) -> Target {
        let d = daemon(extra);
        // At rest, plus the subscriber's thread and socket.
        let (threads, fds) = d.usage();
        let sub = Conn::open_stream(d.addr, "/events/alive");
        let token = extra
            .iter()
            .position(|a| *a == "--publish-token")
            .map(|i| extra[i + 1].to_string());
        let mut t = Target {
            d,
            sub,
            baseline: (threads + 1, fds + 1),
            published: 0,
            token,
        };
        t.assert_alive();
        t
    }

    fn addr(&self) -> SocketAddr {
        self.d.addr
    }

    /// `/healthz` answers (within a short read timeout: a frozen server
    /// fails here), and a publish reaches the subscriber.
    fn assert_alive(&mut self) {
        self.d.assert_running();
        let mut c = TcpStream::connect(self.addr()).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply)
            .expect("/healthz answers promptly");
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nok\n"), "{reply}");
        self.published += 1;
        let text = format!("alive {}", self.published);
        let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let auth: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("Authorization", b.as_str()))
            .collect();
        let (head, _) = fetch(self.addr(), "POST", "/events/alive", &auth, text.as_bytes());
        assert_eq!(head.status, 200);
        assert_eq!(self.sub.events(1)[0].data, text);
    }

    /// Threads and descriptors are back to what the server held before.
    fn settles(&mut self) {
        let baseline = self.baseline;
        self.d.settles_to(baseline, SETTLE);
    }

    fn metric(&self, name: &str) -> u64 {
        let text = fetch(self.addr(), "GET", "/metrics", &[], b"").1;
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    /// How many events the hub holds for `topic` (0 if it does not exist).
    fn retained(&self, topic: &str) -> u64 {
        let list = json(&fetch(self.addr(), "GET", "/topics", &[], b"").1);
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["topic"] == topic)
            .map_or(0, |t| t["retained"].as_u64().unwrap())
    }
}

/// Reads until the server closes (a reset counts as closed) and returns
/// what came; fails if nothing ends the connection within the read timeout.
fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!(
                "the server did not close the connection: {e}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(bytes).unwrap();
    s
}

/// The status of the first response in `bytes`.
fn status(bytes: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(bytes);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {text:?}"))
}

#[test]
fn a_huge_content_length_on_any_route_is_answered_and_the_connection_closed() {
    let mut t = Target::new(&[]);
    for length in [
        "18446744073709551615",
        "1099511627776",
        "99999999999999999999999",
    ] {
        let mut s = send(
            t.addr(),
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n")
                .as_bytes(),
        );
        let reply = String::from_utf8(until_closed(&mut s)).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        // The body was not read, so the connection cannot be reused.
        assert!(reply.contains("\r\nConnection: close\r\n"), "{reply}");
        let mut s = send(
            t.addr(),
            format!("POST /events/x HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(status(&until_closed(&mut s)), 413);
        // After a refusal, too (here: a token is missing).
    }
    t.assert_alive();
    t.settles();
}

#[test]
fn a_huge_content_length_after_a_refusal() {
    let mut t = Target::new(&["--publish-token", "p"]);
    let mut s = send(
        t.addr(),
        b"POST /events/x HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n",
    );
    assert_eq!(status(&until_closed(&mut s)), 401);
    t.assert_alive();
    t.settles();
}

#[test]
fn connections_reset_after_a_request_do_no_harm() {
    let mut t = Target::new(&[]);
    for i in 0..300 {
        let target = if i % 3 == 0 { "/sse" } else { "/healthz" };
        let s = send(
            t.addr(),
            format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        // Close with a reset, not a FIN.
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    }
    t.assert_alive();
    t.settles();
}

#[test]
fn a_flood_past_the_cap_is_refused_at_once_and_leaves_nothing() {
    let mut t = Target::new(&["--max-connections", "50"]);
    let flood: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(t.addr()).expect("connect"))
        .collect();
    let mut refused = 0;
    let mut closed_silently = 0;
    let mut most_threads = 0;
    for mut s in flood {
        most_threads = most_threads.max(t.d.threads());
        let got = until_closed(&mut s);
        if got.is_empty() {
            // Held until the header timeout, or closed to make room.
            closed_silently += 1;
        } else {
            assert_eq!(status(&got), 503);
            let text = String::from_utf8(got).unwrap();
            assert!(
                (5..=10)
                    .any(|n| text
                        .contains(&format!("\r\nRetry-After: {n}\r\nConnection: close\r\n"))),
                "{text}"
            );
            assert!(text.ends_with(
                "{\"error\":\"the server has 50 connections open (--max-connections); try again later\"}\n"
            ));
            refused += 1;
        }
    }
    assert_eq!(refused + closed_silently, 2000);
    assert!(refused >= 1000, "only {refused} of 2000 were refused");
    // Never more threads than the cap allows (and the few being closed).
    assert!(
        most_threads <= t.baseline.0 + 50 + 64,
        "{most_threads} threads"
    );
    t.d.stderr_line("connections refused: --max-connections reached", SETTLE);
    t.assert_alive();
    t.settles();
    assert!(t.metric("ssed_connections_refused_total{reason=\"cap\"} ") >= 1000);
}

#[test]
fn at_the_cap_the_connection_idle_longest_makes_room() {
    // A connection may be closed for room once it has waited a tenth of
    // the header timeout: 300 ms here, well before the idle ones time out.
    let mut t = Target::new(&["--max-connections", "5", "--header-timeout", "3"]);
    // The connections of the check above may still hold their places:
    // wait until the subscriber alone does (its socket the one descriptor
    // beyond those at rest; asking /metrics would take a place itself,
    // and under load still hold it when the idle ones come). At most:
    // a descriptor the process held for a moment when the baseline was
    // taken (it flaked in CI once, waiting for exactly the baseline).
    common::wait_until(SETTLE, "only the subscriber connected", || {
        t.d.usage().1 <= t.baseline.1
    });
    // Four idle connections fill the cap with the subscriber.
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(t.addr()).expect("connect"))
        .collect();
    // (The subscriber is parked: it holds no thread; the baseline counted one.)
    common::wait_until(SETTLE, "four idle connections held", || {
        t.d.threads() >= t.baseline.0 + 3
    });
    // A new client is served once they have waited a while: the oldest
    // idle connection is closed for it.
    common::wait_until(SETTLE, "a new client to be served", || {
        fetch(t.addr(), "GET", "/healthz", &[], b"").0.status == 200
    });
    t.assert_alive();
    assert!(until_closed(&mut idle[0]).is_empty());
    assert!(t.metric("ssed_connections_evicted_total ") >= 1);
    drop(idle);
    t.settles();
}

#[test]
fn one_slow_client_delays_no_one() {
    let mut t = Target::new(&[]);
    let addr = t.addr();
    // A body over 1 KiB declared on a GET, that never comes.
    let mut declared = send(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n",
    );
    // 100-continue with a small body that never comes.
    let mut expects = send(
        addr,
        b"POST /events/slow HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    // A stream with a request pipelined behind it.
    let pipelined = send(
        addr,
        b"GET /events/alive HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    // 65 slow uploads, and half a request line.
    let uploads: Vec<TcpStream> = (0..65)
        .map(|_| {
            send(
                addr,
                b"POST /events/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx",
            )
        })
        .collect();
    let half = send(addr, b"GET /heal");
    // With all of them open, everyone else is served at once.
    t.assert_alive();
    assert_eq!(status(&until_closed(&mut declared)), 200);
    let mut reply = until_closed(&mut expects);
    assert!(reply.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));
    assert_eq!(status(&reply.split_off(25)), 408);
    let mut c = Conn::from_stream(pipelined.try_clone().unwrap());
    assert_eq!(c.head().status, 200);
    assert_eq!(c.chunk_str().as_deref(), Some("retry: 2000\n"));
    pipelined.shutdown(Shutdown::Both).unwrap();
    for mut u in uploads {
        assert_eq!(status(&until_closed(&mut u)), 408);
    }
    drop(half);
    // Nothing half-sent was published.
    assert_eq!(t.retained("slow"), 0);
    t.assert_alive();
    t.settles();
}

#[test]
fn silence_and_slowloris_time_out() {
    let mut t = Target::new(&[]);
    let addr = t.addr();
    // A connection that says nothing is closed without a word.
    let mut silent = TcpStream::connect(addr).unwrap();
    // Half a request line gets 408.
    let mut half = send(addr, b"GET /healthz HT");
    // A body that stops: 408, and nothing published.
    let mut stopped = send(
        addr,
        b"POST /events/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345",
    );
    // Slowloris: 200 heads sent a byte at a time, never finished.
    let mut loris: Vec<TcpStream> = (0..200)
        .map(|_| send(addr, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: "))
        .collect();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(300) {
        for s in &mut loris {
            let _ = s.write_all(b"a");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    t.assert_alive();
    assert!(until_closed(&mut silent).is_empty());
    assert_eq!(status(&until_closed(&mut half)), 408);
    assert_eq!(status(&until_closed(&mut stopped)), 408);
    for s in &mut loris {
        assert_eq!(status(&until_closed(s)), 408);
    }
    assert_eq!(t.retained("cut"), 0);
    // An idle keep-alive connection is closed after --idle-timeout.
    let mut kept = Conn::get(addr, "/healthz");
    assert_eq!(kept.response().0.status, 200);
    assert!(until_closed(&mut kept.stream).is_empty());
    t.d.stderr_line("no complete request head within --header-timeout", SETTLE);
    assert!(t.metric("ssed_requests_refused_total{reason=\"header_timeout\"} ") >= 200);
    t.settles();
}

#[test]
fn every_limit_has_its_status_and_closes() {
    let mut t = Target::new(&["--max-event-bytes", "1K"]);
    let addr = t.addr();
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let big_field = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "v".repeat(17_000)
    );
    let many_fields = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-A: b\r\n".repeat(101)
    );
    let long_id = format!(
        "GET /events/a HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {}\r\n\r\n",
        "1".repeat(4 << 20)
    );
    let cases: Vec<(String, u16)> = vec![
        (long_target, 414),
        (big_field, 431),
        (many_fields, 431),
        (long_id, 431),
        ("GET / HTTP/2.0\r\nHost: x\r\n\r\n".into(), 505),
        ("GET / HTTP/1.1\r\n\r\n".into(), 400),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n".into(),
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n".into(),
            417,
        ),
        (
            "POST /events/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(),
            501,
        ),
        (
            "POST /events/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
                .into(),
            400,
        ),
        (
            "POST /events/a HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n".into(),
            413,
        ),
    ];
    for (request, expected) in cases {
        // The server may close before reading all we send: a failed write
        // is part of the test, not an error.
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(request.as_bytes());
        let got = until_closed(&mut s);
        assert_eq!(
            status(&got),
            expected,
            "{}",
            &request[..request.len().min(60)]
        );
        let got = String::from_utf8_lossy(&got);
        assert!(got.contains("\r\nConnection: close\r\n"));
        if request.contains("chunked, chunked") {
            assert!(
                got.ends_with("{\"error\":\"Transfer-Encoding names chunked more than once\"}\n"),
                "{got}"
            );
        }
    }
    // A chunked body over the limit is refused as soon as it passes it.
    let mut s = send(
        addr,
        b"POST /events/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..5 {
        let _ = s.write_all(format!("100\r\n{}\r\n", "y".repeat(256)).as_bytes());
    }
    assert_eq!(status(&until_closed(&mut s)), 413);
    assert_eq!(t.retained("a"), 0);
    t.assert_alive();
    t.settles();
}

#[test]
fn endless_lines_cost_no_memory() {
    let mut t = Target::new(&[]);
    let addr = t.addr();
    let before = t.d.rss_kb();
    // Each sender writes until the server closes or 64 MiB went out.
    let attacks: Vec<(&[u8], u8, u16)> = vec![
        // A header line that never ends.
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: ", b'v', 431),
        // A query of tiny parameters that never ends.
        (b"GET /sse?", b'&', 414),
        // A chunk-size line that never ends.
        (
            b"POST /events/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;",
            b'e',
            400,
        ),
    ];
    for (start, filler, expected) in attacks {
        let mut s = send(addr, start);
        let mut writer = s.try_clone().unwrap();
        let feeder = std::thread::spawn(move || {
            let piece = vec![filler; 64 * 1024];
            for _ in 0..1024 {
                if writer.write_all(&piece).is_err() {
                    return;
                }
            }
        });
        assert_eq!(status(&until_closed(&mut s)), expected);
        drop(s);
        feeder.join().unwrap();
    }
    // Each was refused at its bound (16 KiB and a read), not read whole.
    let grown = t.d.rss_kb().saturating_sub(before);
    assert!(grown < 8 * 1024, "RSS grew by {grown} KiB");
    t.assert_alive();
    t.settles();
}

#[test]
fn ambiguous_framing_is_refused_and_nothing_is_smuggled() {
    let mut t = Target::new(&[]);
    let addr = t.addr();
    // Each would hide a second request in what one reading calls a body.
    let hidden = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: Vec<(String, u16)> = vec![
        (format!("POST /events/s HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"), 400),
        (format!("POST /events/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{hidden}"), 400),
        (format!("POST /events/s HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 40\r\n\r\nx{hidden}"), 400),
        (format!("POST /events/s HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello{hidden}"), 400),
        (format!("POST /events/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{hidden}"), 400),
        (format!("POST /events/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{hidden}"), 400),
        (format!("POST /events/s HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"), 400),
        (format!("POST /events/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 6\r\nhello\r\n0\r\n\r\n{hidden}"), 400),
    ];
    for (request, expected) in cases {
        let mut s = send(addr, request.as_bytes());
        let got = String::from_utf8(until_closed(&mut s)).unwrap();
        assert_eq!(status(got.as_bytes()), expected, "{request:?}");
        // One answer, then the connection ends: the hidden request is never
        // read as a request.
        assert_eq!(got.matches("HTTP/1.1 ").count(), 1, "{got}");
    }
    // A body shorter than declared, or chunks cut off, publish nothing.
    for request in [
        "POST /events/s HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello",
        "POST /events/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    ] {
        let mut s = send(addr, request.as_bytes());
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(status(&until_closed(&mut s)), 400);
    }
    assert_eq!(t.retained("s"), 0);
    t.assert_alive();
    t.settles();
}

#[test]
fn keep_alive_pipelining_head_and_expect() {
    let mut t = Target::new(&[]);
    let addr = t.addr();
    // Three requests in one write, answered in order on one connection.
    let mut c = Conn::raw(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /events/p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    );
    let (head, body) = c.response();
    assert_eq!((head.status, body.as_str()), (200, "ok\n"));
    assert_eq!(head.header("Connection"), None);
    let head = c.head();
    assert_eq!(
        (head.status, head.header("Content-Length")),
        (200, Some("3"))
    );
    let (head, body) = c.response();
    assert_eq!(head.status, 200);
    assert_eq!(json(&body)["topic"], "p");
    // HEAD on a stream: its head alone, and the connection goes on.
    c.stream
        .write_all(b"HEAD /sse HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = c.head();
    assert_eq!(head.header("Content-Type"), Some("text/event-stream"));
    c.stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (head, _) = c.response();
    assert_eq!(head.header("Connection"), Some("close"));
    assert!(until_closed(&mut c.stream).is_empty());
    // Expect: 100-continue: the go-ahead, then the answer.
    let mut s = send(
        addr,
        b"POST /events/e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let mut go = [0u8; 25];
    s.read_exact(&mut go).unwrap();
    assert_eq!(&go, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").unwrap();
    let mut c = Conn::from_stream(s);
    assert_eq!(c.response().0.status, 200);
    // ...but none when the body will not be read.
    let mut s = send(
        addr,
        b"POST /events/e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n",
    );
    assert_eq!(status(&until_closed(&mut s)), 413);
    // HTTP/1.0: closed after the answer, unless it asks for keep-alive.
    let mut s = send(addr, b"GET /healthz HTTP/1.0\r\n\r\n");
    let got = String::from_utf8(until_closed(&mut s)).unwrap();
    assert!(
        got.contains("\r\nConnection: close\r\n") && got.ends_with("ok\n"),
        "{got}"
    );
    let mut c = Conn::raw(
        addr,
        b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    let (head, _) = c.response();
    assert_eq!(head.header("Connection"), Some("keep-alive"));
    c.stream
        .write_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        .unwrap();
    assert_eq!(c.response().1, "ok\n");
    assert!(until_closed(&mut c.stream).is_empty());
    assert_eq!(t.retained("e"), 1);
    t.assert_alive();
    t.settles();
}

#[test]
fn a_preflight_never_reflects_what_is_not_a_header_name() {
    let mut t = Target::new(&["--cors-origin", "http://a:1"]);
    let (head, body) = fetch(
        t.addr(),
        "OPTIONS",
        "/events/x",
        &[
            ("Origin", "http://a:1"),
            ("Access-Control-Request-Headers", "x-a, x b"),
        ],
        b"",
    );
    assert_eq!(head.status, 400);
    assert_eq!(head.header("Access-Control-Allow-Headers"), None);
    assert!(json(&body)["error"]
        .as_str()
        .unwrap()
        .contains("list of header names"));
    // A line break cannot even reach it: the head is refused.
    let mut s = send(
        t.addr(),
        b"OPTIONS /x HTTP/1.1\r\nHost: x\r\nOrigin: http://a:1\r\nAccess-Control-Request-Headers: a\rSet-Cookie: x\r\n\r\n",
    );
    assert_eq!(status(&until_closed(&mut s)), 400);
    t.assert_alive();
    t.settles();
}

#[test]
fn the_access_log_has_one_line_per_request_with_tokens_hidden() {
    let mut t = Target::new(&["--access-log"]);
    fetch(t.addr(), "GET", "/healthz?token=s3cret&x=1", &[], b"");
    let line = t.d.stderr_line("token=", SETTLE);
    assert!(
        // 400: /healthz reads no x; the line shows it, and hides the token.
        line.contains(" \"GET /healthz?token=***&x=1 HTTP/1.1\" 400 "),
        "{line}"
    );
    assert!(!line.contains("s3cret"));
    t.assert_alive();
}

#[test]
fn a_client_dropped_for_not_reading_sees_its_connection_end() {
    let mut t = Target::new(&[]);
    let addr = t.addr();
    let mut stuck = Conn::open_stream(addr, "/events/flood");
    stuck
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Small socket buffers fill with a few large events.
    let body = "m".repeat(60_000);
    while t.metric("ssed_subscribers_dropped_total{reason=\"write_timeout\"} ") == 0 {
        let (head, _) = fetch(addr, "POST", "/events/flood", &[], body.as_bytes());
        assert_eq!(head.status, 200);
    }
    // Reading what was sent ends in a reset or the end of the connection,
    // not in a wait for events that will never come.
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stuck.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_ne!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock,
                    "the connection was left open"
                );
                break;
            }
        }
    }
    t.assert_alive();
    t.settles();
}

#[test]
fn sigterm_ends_every_stream_with_its_last_chunk_and_exits_0() {
    let mut d = daemon(&["--header-timeout", "5"]);
    let addr = d.addr;
    let at_rest = d.threads();
    let mut chunked = Conn::open_stream(addr, "/sse");
    let mut plain = Conn::raw(addr, b"GET /events/a HTTP/1.0\r\n\r\n");
    plain.head();
    let mut idle = Conn::get(addr, "/healthz");
    idle.response();
    let mut half = send(addr, b"GET /heal");
    // The two streams are parked (no thread); the other two hold one each.
    common::wait_until(SETTLE, "two connections with a thread", || {
        d.threads() >= at_rest + 2
    });
    let open = |name: &str| -> u64 {
        let text = fetch(addr, "GET", "/metrics", &[], b"").1;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    };
    common::wait_until(SETTLE, "two parked streams", || {
        open("ssed_connections_parked") == 2
    });
    // The connections that asked have ended: four are open.
    common::wait_until(SETTLE, "the metrics connections closed", || {
        d.threads() == at_rest + 2
    });
    let pid = d.child.id() as i32;
    // SAFETY: kill sends a signal to a process we started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    // A retry: of its own (browsers come back spread out), then the last
    // chunk.
    let retry = chunked.chunk_str().expect("a retry before the end");
    let ms: u64 = retry
        .strip_prefix("retry: ")
        .and_then(|r| r.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("{retry:?}"));
    assert!((2000..=10_000).contains(&ms), "{retry:?}");
    assert_eq!(chunked.chunk(), None, "the last chunk");
    assert!(until_closed(&mut chunked.stream).is_empty());
    // The HTTP/1.0 stream ends by closing, after whole lines only.
    let rest = until_closed(&mut plain.stream);
    assert!(rest.is_empty() || rest.ends_with(b"\n"), "{rest:?}");
    assert!(until_closed(&mut idle.stream).is_empty());
    assert!(until_closed(&mut half).is_empty());
    let deadline = Instant::now() + Duration::from_secs(2);
    let status = loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "ssed did not exit within 2 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    let line = d.stderr_line("SIGTERM: stopped in", SETTLE);
    assert!(
        line.ends_with("2 streams ended, 4 connections closed"),
        "{line}"
    );
}

#[test]
fn a_space_in_the_target_is_400_and_a_later_http_1_minor_version_is_served() {
    let mut t = Target::new(&[]);
    // RFC 9112, 3.2: a request target has no space.
    let mut s = send(t.addr(), b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n");
    let got = until_closed(&mut s);
    assert_eq!(status(&got), 400);
    assert!(
        String::from_utf8_lossy(&got)
            .contains(r#"{"error":"the request target has a space in it; write it as %20"}"#),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // RFC 9110, 2.5: HTTP/1.2 is answered as the highest 1.x known.
    let mut s = send(
        t.addr(),
        b"GET /healthz HTTP/1.2\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let got = String::from_utf8(until_closed(&mut s)).unwrap();
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nok\n"), "{got}");
    // Another major version is 505.
    let mut s = send(t.addr(), b"GET / HTTP/2.0\r\nHost: h\r\n\r\n");
    assert_eq!(status(&until_closed(&mut s)), 505);
    t.assert_alive();
    t.settles();
}

#[test]
fn a_caught_up_stream_holds_no_thread_and_a_hang_up_is_seen_at_once() {
    // Keep-alives far away: only the hang-up itself can be what is seen.
    let d = daemon(&["--keepalive", "60"]);
    let addr = d.addr;
    let at_rest = d.threads();
    let mut subs: Vec<Conn> = (0..100)
        .map(|_| Conn::open_stream(addr, "/events/parked"))
        .collect();
    let parked = |d: &Daemon| -> u64 {
        let text = fetch(d.addr, "GET", "/metrics", &[], b"").1;
        text.lines()
            .find_map(|l| l.strip_prefix("ssed_connections_parked ")?.parse().ok())
            .unwrap_or(0)
    };
    common::wait_until(SETTLE, "100 parked streams", || parked(&d) == 100);
    // No thread per stream: the process has what it had at rest, give or
    // take the requests of this test.
    common::wait_until(SETTLE, "the threads back to rest", || {
        d.threads() <= at_rest + 1
    });
    // Every parked stream still gets what is published, once.
    let (head, body) = fetch(addr, "POST", "/events/parked", &[], b"to all");
    assert_eq!(head.status, 200);
    assert_eq!(json(&body)["subscribers"], 100);
    for sub in &mut subs {
        assert_eq!(sub.events(1)[0].data, "to all");
    }
    // Three leave: they are uncounted within a second, not at the next
    // keep-alive (a minute away).
    let left = Instant::now();
    subs.truncate(97);
    common::wait_until(Duration::from_secs(1), "the hang-ups to be seen", || {
        let (_, body) = fetch(addr, "GET", "/topics", &[], b"");
        json(&body)[0]["subscribers"] == 97
    });
    let (_, body) = fetch(addr, "POST", "/events/parked", &[], b"after");
    assert_eq!(json(&body)["subscribers"], 97);
    eprintln!("hang-ups seen after {:?}", left.elapsed());
    drop(subs);
    common::wait_until(SETTLE, "every stream gone", || parked(&d) == 0);
}
