//! `make bench`: ssed under load, measured. Prints figures; asserts nothing.
//!
//! Starts the release binary on a free loopback port for each scenario and
//! drives it from this process: N subscribers on one mio event loop (one
//! thread, epoll; a thread per connection would compete with the server for
//! the two cores and for pid_max), and one publisher thread that POSTs E
//! events at R per second, each carrying its sequence number and the moment
//! it was due (latency counts from then).
//!
//! Usage: load [--bin PATH] [--only a,b,c,d,e,f,r,flood,stats,mux] [--subs N --events E --rate R]
//! [--sub-path /events/*] (subscribers on a pattern instead of the topic)
//! (the last three run one custom scenario instead of the defaults; e and f,
//! b's and d's subscribers at a's 50,000 deliveries a second, run only when
//! named).
//!
//! Scenario r runs scenario a three ways: one ssed alone, one ssed on a
//! `redis-server` started here, and two ssed on that Redis with the
//! subscribers split between them and the publishes going to one.
//!
//! Section mux compares what a hub stream costs the server carried by
//! `/mux` (64 a mux, as ssed.js's tabs use it) with a direct connection:
//! kernel memory, RSS, threads and descriptors per stream.

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use ssed::sse::{Decoder, Item};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where subscribers subscribe (`--sub-path`), if not `/events/bench`.
static SUB_PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// How long subscribers may take to connect before the scenario goes on.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);
/// How long after the last publish deliveries may still arrive.
const DRAIN: Duration = Duration::from_secs(10);

struct Scenario {
    name: &'static str,
    subs: usize,
    events: usize,
    rate: f64,
}

/// A server to measure: how to start it. Each prints
/// "NAME listening on http://ADDR/" first.
struct Target {
    name: &'static str,
    program: String,
    args: Vec<String>,
    /// The file whose size is reported (the binary, or the script).
    file: String,
    /// Where it listens, for a server that prints no start-up line (nginx).
    addr: Option<SocketAddr>,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut bin = String::from("target/release/ssed");
    let mut axum_bin = String::from("target/release/examples/compare-axum");
    let mut python = String::from("python3");
    let mut compare = false;
    let mut only: Option<String> = None;
    let (mut subs, mut events, mut rate) = (None, None, None);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| die(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--bin" => bin = value(),
            "--compare" => compare = true,
            "--axum-bin" => axum_bin = value(),
            "--python" => python = value(),
            "--only" => only = Some(value()),
            "--subs" => subs = Some(value().parse().unwrap_or_else(|_| die("--subs: a number"))),
            "--events" => {
                events = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|_| die("--events: a number")),
                )
            }
            "--rate" => rate = Some(value().parse().unwrap_or_else(|_| die("--rate: a number"))),
            // Subscribers read this path instead of /events/bench: a
            // pattern (/events/*) measures pattern subscribers' cost.
            "--sub-path" => {
                let _ = SUB_PATH.set(value());
            }
            "--bench" => {} // passed by `cargo bench`-style runners
            other => die(&format!("unknown argument {other:?}")),
        }
    }
    raise_fd_limit();
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|x| x == name))
    };

    let ssed = Target {
        name: "ssed",
        program: bin.clone(),
        args: ["--addr", "127.0.0.1:0", "--keepalive", "15"]
            .map(String::from)
            .to_vec(),
        file: bin,
        addr: None,
    };
    let mut targets = vec![ssed];
    if compare {
        targets.push(Target {
            name: "axum",
            program: axum_bin.clone(),
            args: Vec::new(),
            file: axum_bin,
            addr: None,
        });
        let script = "tests/bench/starlette_hub.py".to_string();
        targets.push(Target {
            name: "starlette",
            program: python,
            args: vec![script.clone()],
            file: script,
            addr: None,
        });
        match nchan() {
            Ok(t) => targets.push(t),
            Err(why) => println!("nchan: skipped ({why})"),
        }
    }

    println!(
        "ssed load benchmark: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    for t in &targets {
        let size = std::fs::metadata(&t.file)
            .map(|m| m.len())
            .unwrap_or_else(|e| die(&format!("{}: {e}", t.file)));
        let server = Server::start(t);
        // Let start-up allocations settle: the figure is the server at rest.
        std::thread::sleep(Duration::from_millis(300));
        let p = server.proc();
        println!(
            "{}: {} {} bytes ({:.0} KiB); idle: RSS {:.1} MiB, {} threads",
            t.name,
            match t.name {
                "starlette" => "script",
                "nchan" => "nginx binary",
                _ => "stripped binary",
            },
            size,
            size as f64 / 1024.0,
            p.rss_kb as f64 / 1024.0,
            p.threads
        );
    }
    println!();

    let scenarios = match (subs, events, rate) {
        (Some(subs), Some(events), Some(rate)) => vec![Scenario {
            name: "custom",
            subs,
            events,
            rate,
        }],
        (None, None, None) => vec![
            Scenario {
                name: "a",
                subs: 1000,
                events: 200,
                rate: 50.0,
            },
            Scenario {
                name: "b",
                subs: 5000,
                events: 100,
                rate: 50.0,
            },
            Scenario {
                name: "c",
                subs: 10_000,
                events: 1,
                rate: 1.0,
            },
            Scenario {
                name: "d",
                subs: 10_000,
                events: 100,
                rate: 50.0,
            },
            // a's 50,000 deliveries a second, to b's and d's subscribers: a
            // rate every server but uvicorn keeps up with here, so that
            // latency is compared at equal deliveries.
            Scenario {
                name: "e",
                subs: 5000,
                events: 100,
                rate: 10.0,
            },
            Scenario {
                name: "f",
                subs: 10_000,
                events: 50,
                rate: 5.0,
            },
        ],
        _ => die("--subs, --events and --rate go together"),
    };
    let mut rows = Vec::new();
    for s in scenarios.iter().filter(|s| match s.name {
        "custom" => true,
        // Equal-rate comparisons: run when named.
        "e" | "f" => only.as_deref().is_some() && wanted(s.name),
        name => wanted(name),
    }) {
        // The comparison is about fan-out (a, b, d, e, f): c measures how
        // many connections one ssed holds; uvicorn keeps up with neither e
        // nor f (it delivers under 25,000 a second), so it is left out there.
        for t in targets.iter().filter(|t| match (t.name, s.name) {
            ("ssed", _) => true,
            (_, "c") => false,
            ("starlette", "e" | "f") => false,
            _ => true,
        }) {
            rows.push(run(t, s));
        }
    }
    if !rows.is_empty() {
        print_table(&rows);
    }
    if subs.is_none() && wanted("r") && !compare {
        several_instances(&targets[0]);
    }
    if subs.is_none() && wanted("flood") && !compare {
        flood(&targets[0], 15_000, 5_000);
    }
    if subs.is_none() && wanted("stats") && !compare {
        stats_viewers(&targets[0], 1000, Duration::from_secs(10));
    }
    if subs.is_none() && wanted("mux") && !compare {
        mux_cost(&targets[0], 2000);
    }
}

fn die(why: &str) -> ! {
    eprintln!("load: {why}");
    std::process::exit(2)
}

#[allow(unsafe_code)]
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain struct in, plain struct out.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// A release ssed on a free port, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

#[derive(Clone, Copy)]
struct ProcStats {
    cpu_secs: f64,
    rss_kb: u64,
    threads: u64,
    fds: u64,
}

impl Server {
    fn start(t: &Target) -> Server {
        Server::start_with(t, &[])
    }

    /// Starts `t` with `extra` arguments after its own.
    fn start_with(t: &Target, extra: &[&str]) -> Server {
        if let Some(addr) = t.addr {
            let child = Command::new(&t.program)
                .args(&t.args)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| die(&format!("{}: {e}", t.program)));
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(addr).is_err() {
                if Instant::now() > deadline {
                    die(&format!("{}: not listening on {addr}", t.name));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            return Server { child, addr };
        }
        let mut child = Command::new(&t.program)
            .args(&t.args)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| die(&format!("{}: {e}", t.program)));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split_once(" listening on http://")
            .and_then(|(_, r)| r.split_once('/'))
            .and_then(|(a, _)| a.parse().ok())
            .unwrap_or_else(|| die(&format!("{}: unexpected start-up line {line:?}", t.name)));
        Server { child, addr }
    }

    fn proc(&self) -> ProcStats {
        proc_stats(self.child.id())
    }

    fn metric(&self, name: &str) -> u64 {
        let text = http(
            self.addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// One subscriber connection on the event loop.
struct Sub {
    stream: TcpStream,
    state: State,
    buf: Vec<u8>,
    decoder: Decoder,
    items: Vec<Item>,
    /// Events received, by sequence number (to count losses and repeats).
    seen: Vec<u8>,
}

#[derive(PartialEq)]
enum State {
    Connecting,
    Head,
    /// Reading chunk `left` bytes remaining of the current chunk (None: a size line is next).
    Body {
        left: Option<usize>,
        subscribed: bool,
        /// The body is chunked (else it runs until the close, as Nchan's).
        chunked: bool,
    },
    Closed,
}

struct Row {
    name: String,
    subs: usize,
    connected: usize,
    refused: usize,
    connect_secs: f64,
    expected: u64,
    received: u64,
    lost: u64,
    duplicated: u64,
    lat: Vec<f64>,
    deliveries_per_sec: f64,
    cpu_secs: f64,
    rss_before_kb: u64,
    rss_after_kb: u64,
    /// `KernelStack` + `SUnreclaim` of the whole machine, before and after
    /// the subscribers connected.
    kernel_before_kb: u64,
    kernel_after_kb: u64,
    threads: u64,
    /// Threads and descriptors the connected subscribers added.
    threads_added: u64,
    fds_added: u64,
    /// CPU the load generator itself used while events were delivered.
    client_cpu_secs: f64,
    /// How far the publisher fell behind its schedule, at most.
    behind: Duration,
}

fn run(target: &Target, s: &Scenario) -> Row {
    run_on(
        &format!("{} {}", target.name, s.name),
        &[Server::start(target)],
        s,
    )
}

/// Runs scenario `s` against `servers`: the subscribers split evenly over
/// them, the publisher posting to the first. Figures are their sums.
fn run_on(label: &str, servers: &[Server], s: &Scenario) -> Row {
    eprintln!("{label}:");
    eprintln!(
        "scenario {}: {} subscribers, {} events at {}/s ...",
        s.name, s.subs, s.events, s.rate
    );
    let addr = servers[0].addr;
    let proc = || {
        servers.iter().map(Server::proc).fold(
            ProcStats {
                cpu_secs: 0.0,
                rss_kb: 0,
                threads: 0,
                fds: 0,
            },
            |a, b| ProcStats {
                cpu_secs: a.cpu_secs + b.cpu_secs,
                rss_kb: a.rss_kb + b.rss_kb,
                threads: a.threads + b.threads,
                fds: a.fds + b.fds,
            },
        )
    };
    let before = proc();
    let kernel_before = kernel_kb();
    let base = Instant::now();

    let mut poll = Poll::new().unwrap();
    let mut subs: Vec<Sub> = Vec::with_capacity(s.subs);
    let path = SUB_PATH.get().map_or("/events/bench", String::as_str);
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n");
    let mut events = Events::with_capacity(4096);
    let started = Instant::now();
    let mut subscribed = 0usize;
    let mut refused = 0usize;
    // Connect in waves, so as not to outrun the listen backlog.
    let mut next_to_open = 0;
    let mut latencies = Vec::with_capacity(s.subs * s.events.min(1000));
    let mut received = 0u64;
    let mut duplicated = 0u64;
    let connect_secs;
    loop {
        while next_to_open < s.subs && next_to_open < subscribed + refused + 1000 {
            let to = servers[next_to_open % servers.len()].addr;
            let stream = match TcpStream::connect(to) {
                Ok(st) => st,
                Err(e) => die(&format!("connect: {e}")),
            };
            let mut sub = Sub {
                stream,
                state: State::Connecting,
                buf: Vec::new(),
                decoder: Decoder::new(),
                items: Vec::new(),
                seen: vec![0; s.events + 1],
            };
            poll.registry()
                .register(
                    &mut sub.stream,
                    Token(next_to_open),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .unwrap();
            subs.push(sub);
            next_to_open += 1;
        }
        if subscribed + refused == s.subs {
            connect_secs = started.elapsed().as_secs_f64();
            break;
        }
        if started.elapsed() > CONNECT_DEADLINE {
            connect_secs = started.elapsed().as_secs_f64();
            let count = |f: &dyn Fn(&State) -> bool| subs.iter().filter(|x| f(&x.state)).count();
            eprintln!(
                "  only {subscribed} of {} subscribed after {CONNECT_DEADLINE:?} (still connecting {}, awaiting head {}, head without first chunk {})",
                s.subs,
                count(&|st| *st == State::Connecting),
                count(&|st| *st == State::Head),
                count(&|st| matches!(st, State::Body { subscribed: false, .. })),
            );
            break;
        }
        let out = poll_once(
            &mut poll,
            &mut events,
            &mut subs,
            &request,
            base,
            &mut latencies,
        );
        subscribed += out.subscribed;
        refused += out.refused;
        received += out.received;
        duplicated += out.duplicated;
    }
    let after_connect = proc();
    let kernel_after = kernel_kb();

    // Publish from another thread, at the rate asked for.
    let cpu_before = proc().cpu_secs;
    let client_before = own_cpu_secs();
    let publisher = {
        let (n, rate) = (s.events, s.rate);
        std::thread::spawn(move || publish(addr, n, rate, base))
    };
    let publish_started = Instant::now();
    let expected = (subscribed * s.events) as u64;
    let mut deadline: Option<Instant> = None;
    while received + duplicated < expected {
        if publisher.is_finished() && deadline.is_none() {
            deadline = Some(Instant::now() + DRAIN);
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        let out = poll_once(
            &mut poll,
            &mut events,
            &mut subs,
            &request,
            base,
            &mut latencies,
        );
        received += out.received;
        duplicated += out.duplicated;
    }
    let delivery_secs = publish_started.elapsed().as_secs_f64();
    let behind = publisher
        .join()
        .unwrap_or_else(|_| die("the publisher failed"));
    let end = proc();
    let lost = expected.saturating_sub(received);
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Row {
        name: label.to_string(),
        subs: s.subs,
        connected: subscribed,
        refused,
        connect_secs,
        expected,
        received,
        lost,
        duplicated,
        lat: latencies,
        deliveries_per_sec: received as f64 / delivery_secs.max(1e-9),
        cpu_secs: end.cpu_secs - cpu_before,
        client_cpu_secs: own_cpu_secs() - client_before,
        rss_before_kb: before.rss_kb,
        rss_after_kb: after_connect.rss_kb,
        kernel_before_kb: kernel_before,
        kernel_after_kb: kernel_after,
        threads: after_connect.threads,
        threads_added: after_connect.threads.saturating_sub(before.threads),
        fds_added: after_connect.fds.saturating_sub(before.fds),
        behind,
    }
}

#[derive(Default)]
struct Progress {
    subscribed: usize,
    refused: usize,
    received: u64,
    duplicated: u64,
}

/// Waits up to 50 ms for sockets to be ready and moves each ready one along.
fn poll_once(
    poll: &mut Poll,
    events: &mut Events,
    subs: &mut [Sub],
    request: &str,
    base: Instant,
    latencies: &mut Vec<f64>,
) -> Progress {
    poll.poll(events, Some(Duration::from_millis(50))).unwrap();
    let mut total = Progress::default();
    for ev in events.iter() {
        let out = drive(&mut subs[ev.token().0], request, base, latencies);
        total.subscribed += out.subscribed;
        total.refused += out.refused;
        total.received += out.received;
        total.duplicated += out.duplicated;
    }
    total
}

/// Moves one connection along as far as its socket allows.
fn drive(sub: &mut Sub, request: &str, base: Instant, latencies: &mut Vec<f64>) -> Progress {
    let mut p = Progress::default();
    if sub.state == State::Connecting {
        match sub.stream.write(request.as_bytes()) {
            Ok(n) if n == request.len() => sub.state = State::Head,
            Ok(_) => die("short write of a request"),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::NotConnected =>
            {
                return p
            }
            Err(_) => {
                sub.state = State::Closed;
                p.refused += 1;
                return p;
            }
        }
    }
    let mut tmp = SCRATCH.with_borrow_mut(std::mem::take);
    tmp.resize(64 * 1024, 0);
    let drained = read_all(sub, &mut tmp, &mut p);
    SCRATCH.set(tmp);
    if !drained {
        return p;
    }
    if sub.state == State::Head {
        let Some(end) = sub.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return p;
        };
        let ok = sub.buf.starts_with(b"HTTP/1.1 200");
        let chunked = String::from_utf8_lossy(&sub.buf[..end])
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        sub.buf.drain(..end + 4);
        if !ok {
            // Refused (503): let the connection go, as a browser would on
            // `Connection: close`.
            sub.state = State::Closed;
            let _ = sub.stream.shutdown(std::net::Shutdown::Both);
            p.refused += 1;
            return p;
        }
        sub.state = State::Body {
            left: None,
            subscribed: false,
            chunked,
        };
    }
    // De-chunk what is buffered, feed the SSE decoder.
    let mut body = Vec::new();
    while let State::Body { left, chunked, .. } = &mut sub.state {
        if !*chunked {
            body.append(&mut sub.buf);
            break;
        }
        match left {
            None => {
                let Some(i) = sub.buf.windows(2).position(|w| w == b"\r\n") else {
                    break;
                };
                let size =
                    usize::from_str_radix(std::str::from_utf8(&sub.buf[..i]).unwrap_or("0"), 16)
                        .unwrap_or(0);
                sub.buf.drain(..i + 2);
                if size == 0 {
                    sub.state = State::Closed;
                    break;
                }
                *left = Some(size);
            }
            Some(n) => {
                if sub.buf.len() < *n + 2 {
                    break;
                }
                body.extend(sub.buf.drain(..*n));
                sub.buf.drain(..2);
                *left = None;
            }
        }
    }
    if let State::Body { subscribed, .. } = &mut sub.state {
        if !*subscribed && !body.is_empty() {
            // The first chunk (retry:) is written once the stream is subscribed.
            *subscribed = true;
            p.subscribed += 1;
        }
    }
    sub.decoder
        .feed(&body, &mut sub.items)
        .expect("an unbounded decoder never overflows");
    let now = base.elapsed().as_secs_f64();
    for item in sub.items.drain(..) {
        if let Item::Event(m) = item {
            let mut parts = m.data.split(' ');
            let seq: usize = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let sent: f64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(now);
            match sub.seen.get_mut(seq) {
                Some(count) if *count == 0 => {
                    *count = 1;
                    p.received += 1;
                    latencies.push((now - sent) * 1000.0);
                }
                Some(_) => p.duplicated += 1,
                None => {}
            }
        }
    }
    p
}

thread_local! {
    /// The buffer reads go through, allocated (and zeroed) once, not per read.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads what `sub`'s socket holds into its buffer; false if the connection
/// ended (counted in `p`). A read that returns less than asked has drained
/// the socket (epoll(7)): the next bytes bring a new edge, so no second read
/// is spent to see `WouldBlock`.
fn read_all(sub: &mut Sub, tmp: &mut [u8], p: &mut Progress) -> bool {
    loop {
        match sub.stream.read(tmp) {
            Ok(0) => {
                if sub.state == State::Head {
                    p.refused += 1;
                }
                sub.state = State::Closed;
                return false;
            }
            Ok(n) => {
                sub.buf.extend_from_slice(&tmp[..n]);
                if n < tmp.len() {
                    return true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => {
                if sub.state == State::Head {
                    p.refused += 1;
                }
                sub.state = State::Closed;
                return false;
            }
        }
    }
}

/// POSTs `n` events at `rate` per second on one keep-alive connection, each
/// after the answer to the one before; each body is "SEQ DUE_SECONDS", the
/// moment (seconds since `base`) the event was due. Latency counts from
/// then, not from when it could be sent: a server whose answers hold the
/// publisher back is charged the events' wait (coordinated omission).
/// Returns how far behind its schedule the publisher fell, at most.
fn publish(addr: SocketAddr, n: usize, rate: f64, base: Instant) -> Duration {
    let mut conn = std::net::TcpStream::connect(addr).expect("publisher connects");
    conn.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let start = Instant::now();
    let mut behind = Duration::ZERO;
    for seq in 1..=n {
        let due = start + Duration::from_secs_f64((seq - 1) as f64 / rate);
        match due.checked_duration_since(Instant::now()) {
            Some(wait) => std::thread::sleep(wait),
            None => behind = behind.max(due.elapsed()),
        }
        let body = format!("{seq} {:.6}", due.duration_since(base).as_secs_f64());
        let req = format!(
            "POST /events/bench HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(req.as_bytes()).expect("publish");
        // Read the answer: status line, headers, then Content-Length bytes.
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("publish answer");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut answer = vec![0; len];
        reader.read_exact(&mut answer).expect("publish body");
    }
    behind
}

/// CPU seconds this process (the load generator) has used.
fn own_cpu_secs() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass.
    #[allow(unsafe_code)]
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn print_table(rows: &[Row]) {
    println!("| scenario | subscribers | connected (refused) | connect s | expected | received | lost | dup | publisher behind ms | p50 ms | p90 ms | p99 ms | max ms | deliveries/s | server CPU s | CPU µs/delivery | load generator CPU s | RSS before MiB | RSS after MiB | KiB/stream | kernel KiB/stream | user + kernel KiB/stream | threads | threads/stream | fds/stream |");
    println!(
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let per_delivery = if r.received > 0 {
            r.cpu_secs * 1e6 / r.received as f64
        } else {
            f64::NAN
        };
        let per_stream = if r.connected > 0 {
            (r.rss_after_kb.saturating_sub(r.rss_before_kb)) as f64 / r.connected as f64
        } else {
            f64::NAN
        };
        let kernel_per_stream = if r.connected > 0 {
            (r.kernel_after_kb.saturating_sub(r.kernel_before_kb)) as f64 / r.connected as f64
        } else {
            f64::NAN
        };
        let per = |n: u64| {
            if r.connected > 0 {
                n as f64 / r.connected as f64
            } else {
                f64::NAN
            }
        };
        println!(
            "| {} | {} | {} ({}) | {:.2} | {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {:.2} |",
            r.name,
            r.subs,
            r.connected,
            r.refused,
            r.connect_secs,
            r.expected,
            r.received,
            r.lost,
            r.duplicated,
            r.behind.as_secs_f64() * 1000.0,
            percentile(&r.lat, 0.50),
            percentile(&r.lat, 0.90),
            percentile(&r.lat, 0.99),
            r.lat.last().copied().unwrap_or(f64::NAN),
            r.deliveries_per_sec,
            r.cpu_secs,
            per_delivery,
            r.client_cpu_secs,
            r.rss_before_kb as f64 / 1024.0,
            r.rss_after_kb as f64 / 1024.0,
            per_stream,
            kernel_per_stream,
            per_stream + kernel_per_stream,
            r.threads,
            per(r.threads_added),
            per(r.fds_added)
        );
    }
    println!();
}

/// CPU used by the server while `viewers` watch /system-stats for `how_long`.
fn stats_viewers(target: &Target, viewers: usize, how_long: Duration) {
    let server = Server::start(target);
    let addr = server.addr;
    let mut poll = Poll::new().unwrap();
    let mut conns: HashMap<usize, TcpStream> = HashMap::new();
    let request = format!("GET /system-stats HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    for i in 0..viewers {
        let mut s = TcpStream::connect(addr).unwrap();
        poll.registry()
            .register(&mut s, Token(i), Interest::WRITABLE | Interest::READABLE)
            .unwrap();
        conns.insert(i, s);
    }
    let mut events = Events::with_capacity(4096);
    let mut sent = vec![false; viewers];
    let mut bytes = 0usize;
    let open = Instant::now();
    let mut measuring: Option<(Instant, f64)> = None;
    let mut tmp = [0u8; 16 * 1024];
    loop {
        if measuring.is_none()
            && server.metric("ssed_streams_open{kind=\"demo\"}") as usize == viewers
        {
            measuring = Some((Instant::now(), server.proc().cpu_secs));
        }
        if let Some((t, _)) = measuring {
            if t.elapsed() >= how_long {
                break;
            }
        }
        if open.elapsed() > CONNECT_DEADLINE + how_long {
            eprintln!("stats: viewers did not all connect");
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        for ev in events.iter() {
            let i = ev.token().0;
            let s = conns.get_mut(&i).unwrap();
            if !sent[i] && s.write(request.as_bytes()).is_ok() {
                sent[i] = true;
            }
            while let Ok(n) = s.read(&mut tmp) {
                if n == 0 {
                    break;
                }
                bytes += n;
            }
        }
    }
    if let Some((t, cpu0)) = measuring {
        let cpu = server.proc().cpu_secs - cpu0;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "/system-stats with {viewers} viewers for {secs:.0} s: server CPU {cpu:.2} s = {:.2}% of one core ({} KiB received)",
            cpu / secs * 100.0,
            bytes / 1024
        );
    }
}

/// `n` connections that send nothing, as fast as they can be opened,
/// against a cap of `cap`; then a normal subscriber. Prints what the server
/// held at the peak, how many were refused at once, whether the subscriber
/// got in and received, and that everything was let go afterwards.
fn flood(target: &Target, n: usize, cap: usize) {
    eprintln!("flood: {n} idle connections against a cap of {cap} ...");
    let cap_arg = cap.to_string();
    // A short keep-alive: the subscriber's stream notices it was closed.
    let server = Server::start_with(
        target,
        &[
            "--header-timeout",
            "10",
            "--keepalive",
            "1",
            "--max-connections",
            &cap_arg,
        ],
    );
    let addr = server.addr;
    let before = server.proc();
    let cap = server.metric("ssed_connections_max ");
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(4096);
    let mut conns: Vec<Option<TcpStream>> = Vec::with_capacity(n);
    let (mut refused, mut closed) = (0usize, 0usize);
    let started = Instant::now();
    let mut tmp = [0u8; 4096];
    let mut peak = before;
    // Held until its connections have waited a tenth of --header-timeout
    // (1 s): from then on, one of them is closed to make room for a client
    // that comes at the cap (before, that client is answered 503).
    while conns.len() < n || started.elapsed() < Duration::from_millis(1500) {
        while conns.len() < n && conns.len() < refused + closed + (cap as usize) + 2000 {
            let mut s = match TcpStream::connect(addr) {
                Ok(s) => s,
                Err(e) => die(&format!("flood connect: {e}")),
            };
            poll.registry()
                .register(&mut s, Token(conns.len()), Interest::READABLE)
                .unwrap();
            conns.push(Some(s));
        }
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(s) = conns[i].as_mut() else { continue };
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => {
                    closed += 1;
                    conns[i] = None;
                }
                Ok(_) => {
                    if tmp.starts_with(b"HTTP/1.1 503") {
                        refused += 1;
                    }
                    conns[i] = None;
                }
            }
        }
        let now = server.proc();
        if now.threads > peak.threads {
            peak = now;
        }
        if started.elapsed() > CONNECT_DEADLINE {
            break;
        }
    }
    let held = conns.iter().filter(|c| c.is_some()).count();
    let opened = started.elapsed().as_secs_f64();
    // A normal subscriber, while the flood holds its connections.
    let t = Instant::now();
    let mut sub = std::net::TcpStream::connect(addr).expect("subscriber connects");
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sub.write_all(format!("GET /events/flood HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = vec![0u8; 4096];
    let got = sub.read(&mut head).unwrap_or(0);
    let sub_ok = head[..got].starts_with(b"HTTP/1.1 200");
    let sub_secs = t.elapsed().as_secs_f64();
    let delivered = sub_ok
        && {
            http(
            addr,
            &format!("POST /events/flood HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"),
        );
            let mut all = Vec::new();
            while !String::from_utf8_lossy(&all).contains("data: hi") {
                match sub.read(&mut head) {
                    Ok(n) if n > 0 => all.extend_from_slice(&head[..n]),
                    _ => break,
                }
            }
            String::from_utf8_lossy(&all).contains("data: hi")
        };
    let during = server.proc();
    drop(conns);
    drop(sub);
    let t = Instant::now();
    let mut after = server.proc();
    while (after.threads > before.threads || after.fds > before.fds) && t.elapsed() < DRAIN * 2 {
        std::thread::sleep(Duration::from_millis(50));
        after = server.proc();
    }
    let conns_held = peak.threads.saturating_sub(before.threads).max(1);
    println!(
        "flood: {n} idle connections in {opened:.2} s against a cap of {cap}: {refused} refused with 503 at once, \
         {closed} closed to make room, {held} held; at the peak {} threads, {} descriptors, RSS {:.1} MiB \
         ({:.1} KiB per held connection); a subscriber then {} in {:.3} s and {} an event; \
         {:.2} s after the flood ended: {} threads, {} descriptors (at rest: {}, {}); server {}",
        peak.threads,
        peak.fds,
        peak.rss_kb as f64 / 1024.0,
        peak.rss_kb.saturating_sub(before.rss_kb) as f64 / conns_held as f64,
        if sub_ok { "got in" } else { "was refused" },
        sub_secs,
        if delivered { "received" } else { "did not receive" },
        t.elapsed().as_secs_f64(),
        after.threads,
        after.fds,
        before.threads,
        before.fds,
        if during.threads > 0 { "running" } else { "GONE" },
    );
    println!();
}

/// CPU, memory, threads and descriptors of process `pid`.
fn proc_stats(pid: u32) -> ProcStats {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces): state is
    // field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf reads a constant.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    ProcStats {
        cpu_secs: (ticks(14) + ticks(15)) as f64 / hz,
        rss_kb: field("VmRSS:"),
        threads: field("Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
    }
}

/// Reads from `s` until `marker` has come; what came.
fn read_until(s: &mut std::net::TcpStream, marker: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while !got.windows(marker.len()).any(|w| w == marker) {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => die(&format!(
                "mux: the stream ended before {:?}: {}",
                String::from_utf8_lossy(marker),
                String::from_utf8_lossy(&got)
            )),
            Ok(n) => got.extend_from_slice(&tmp[..n]),
        }
    }
    got
}

/// Section mux: `streams` hub streams on one server, first as direct
/// connections, then carried by muxes of 64; per stream, what the server
/// holds (and the kernel's memory, both ends of every socket counted: the
/// direct streams' client sockets are this process's). One publish then
/// reaches every carried stream.
fn mux_cost(target: &Target, streams: usize) {
    let read_timeout = Some(Duration::from_secs(10));
    let mut rows = Vec::new();
    for carried in [false, true] {
        let cap = (streams * 5).to_string();
        let server = Server::start_with(target, &["--max-connections", &cap]);
        let addr = server.addr;
        std::thread::sleep(Duration::from_millis(300));
        let (k0, p0) = (kernel_kb(), server.proc());
        let mut held = Vec::new();
        if carried {
            for m in 0..streams.div_ceil(64) {
                let mut s = std::net::TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(read_timeout).unwrap();
                s.write_all(b"GET /mux HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let head = read_until(&mut s, b"max_streams");
                let text = String::from_utf8_lossy(&head);
                let id = text
                    .split("\"id\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_else(|| die(&format!("mux: no id in {text}")))
                    .to_string();
                for k in 0..64.min(streams - m * 64) {
                    let body = format!(r#"{{"open":"{k}","url":"/events/bench"}}"#);
                    let answer = http(
                        addr,
                        &format!(
                            "POST /mux/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        ),
                    );
                    if !answer.starts_with("HTTP/1.1 2") {
                        die(&format!("mux: open refused: {answer}"));
                    }
                }
                held.push(s);
            }
        } else {
            for _ in 0..streams {
                let mut s = std::net::TcpStream::connect(addr).expect("connect");
                s.set_read_timeout(read_timeout).unwrap();
                s.write_all(b"GET /events/bench HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                read_until(&mut s, b"retry:");
                held.push(s);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        let (k1, p1) = (kernel_kb(), server.proc());
        // Every stream is live: one publish reaches each.
        let answer = http(
            addr,
            "POST /events/bench HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        );
        let reached: usize = held
            .iter_mut()
            .map(|s| {
                let per = if carried { 64 } else { 1 };
                let mut got = 0;
                let mut text = Vec::new();
                let mut tmp = [0u8; 65536];
                while got < per {
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => text.extend_from_slice(&tmp[..n]),
                    }
                    got = String::from_utf8_lossy(&text).matches("hello").count();
                }
                got
            })
            .sum();
        let n = streams as f64;
        rows.push(format!(
            "{:<28} kernel {:>5.2} KiB  RSS {:>5.2} KiB  descriptors {:.2}  threads +{}  (one publish reached {reached}; {})",
            if carried { format!("{streams} carried by {} muxes", streams.div_ceil(64)) } else { format!("{streams} direct") },
            (k1 as f64 - k0 as f64) / n,
            (p1.rss_kb as f64 - p0.rss_kb as f64) / n,
            (p1.fds as f64 - p0.fds as f64) / n,
            p1.threads as i64 - p0.threads as i64,
            answer.lines().last().unwrap_or("")
        ));
    }
    println!("A hub stream's cost to the server, per stream:");
    for row in rows {
        println!("  {row}");
    }
}

/// Scenario r: what sharing one hub through Redis costs. Scenario a three
/// ways, printed side by side; the Redis server's own CPU is reported apart.
fn several_instances(ssed: &Target) {
    let s = Scenario {
        name: "r",
        subs: 1000,
        events: 200,
        rate: 50.0,
    };
    let Some(redis) = RedisServer::start() else {
        println!(
            "scenario r: SKIPPED, redis-server is not installed (apt-get install redis-server)"
        );
        println!();
        return;
    };
    let url = redis.url();
    let on_redis = ["--redis", url.as_str()];
    let mut rows = vec![run_on("r: 1 instance", &[Server::start(ssed)], &s)];
    let mut redis_cpu = Vec::new();
    for (label, n) in [("r: 1 instance + Redis", 1), ("r: 2 instances + Redis", 2)] {
        let servers: Vec<Server> = (0..n)
            .map(|_| Server::start_with(ssed, &on_redis))
            .collect();
        for server in &servers {
            wait_for_link(server);
        }
        let before = proc_stats(redis.child.id()).cpu_secs;
        rows.push(run_on(label, &servers, &s));
        redis_cpu.push((label, proc_stats(redis.child.id()).cpu_secs - before));
    }
    println!("Scenario r: {} subscribers, {} events at {}/s; with two instances the subscribers alternate between them and the publisher posts to the first. Server CPU is the ssed processes' sum.", s.subs, s.events, s.rate);
    println!();
    print_table(&rows);
    let p = |r: &Row, q: f64| percentile(&r.lat, q);
    for (r, (label, cpu)) in rows[1..].iter().zip(&redis_cpu) {
        println!(
            "{label}: p50 {:+.1} ms, p99 {:+.1} ms against one instance alone; redis-server used {cpu:.2} s CPU",
            p(r, 0.5) - p(&rows[0], 0.5),
            p(r, 0.99) - p(&rows[0], 0.99),
        );
    }
    println!();
}

/// Waits until `server` says its Redis link is up.
fn wait_for_link(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("ssed_redis_up") != 1 {
        if Instant::now() > deadline {
            die("ssed did not reach redis-server within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` of the benchmark's own: a free loopback port, a
/// temporary directory, no persistence; killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| die(&format!("a free port: {e}")))
            .port();
        let dir = std::env::temp_dir().join(format!("ssed-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| die(&format!("{}: {e}", dir.display())));
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&dir)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        let redis = RedisServer { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                die("redis-server did not listen within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `KernelStack` + `SUnreclaim` of the machine now, in KiB: the kernel's
/// memory that a process's RSS does not show (thread stacks, socket and
/// task structures). Its growth while streams are open, per stream, is the
/// kernel's side of a stream's cost (the load generator's socket included,
/// the same for every server).
fn kernel_kb() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            matches!(name, "KernelStack" | "SUnreclaim")
                .then(|| rest.split_whitespace().next()?.parse::<u64>().ok())
                .flatten()
        })
        .sum()
}

/// Nchan (nginx with its module, from Debian: `apt-get install nginx
/// libnginx-mod-nchan`), one process, serving the same routes: POST to
/// publish, EventSource to subscribe, on `/events/{topic}`.
fn nchan() -> Result<Target, String> {
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or("nginx is not installed: apt-get install nginx libnginx-mod-nchan")?;
    let module = ["/usr/lib/nginx/modules/ngx_nchan_module.so"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or("the nchan module is not installed: apt-get install libnginx-mod-nchan")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let dir = std::env::temp_dir().join(format!("ssed-bench-nchan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let d = dir.display();
    let conf = format!(
        "load_module {module};
worker_processes 1;
daemon off;
master_process off;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location ~ /events/(\\w+)$ {{ nchan_channel_id $1; nchan_pubsub; }}
  }}
}}
"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    Ok(Target {
        name: "nchan",
        program: nginx.to_string(),
        args: vec![
            "-c".into(),
            path.display().to_string(),
            "-p".into(),
            dir.display().to_string(),
        ],
        file: nginx.to_string(),
        addr: Some(
            format!("127.0.0.1:{port}")
                .parse()
                .map_err(|e| format!("{e}"))?,
        ),
    })
}
