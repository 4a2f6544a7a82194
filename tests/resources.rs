//! Memory and CPU, against the real binary in its own process: what a
//! stream holds whatever its reader does, what refused publishes leave
//! behind, and ssed inside a small memory cgroup under floods (alive, the
//! excess refused, old streams served) and under a CPU quota. Floods are
//! bounded and go to loopback only; readers that "never read" are sockets
//! with a small receive buffer that the test does not read.

mod common;

use common::cgroup::Cgroup;
use common::{fetch, wait_until, Conn, Daemon};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const SOON: Duration = Duration::from_secs(30);

/// A stream request on a socket whose receive buffer is small, never read:
/// the server's writes to it stop as soon as the kernel's buffers fill.
fn stalled(addr: SocketAddr, target: &str) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect_timeout(&addr.into(), SOON).unwrap();
    let mut s: TcpStream = sock.into();
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    s
}

fn publish(addr: SocketAddr, topic: &str, body: &[u8]) -> u16 {
    fetch(addr, "POST", &format!("/events/{topic}"), &[], body)
        .0
        .status
}

#[test]
fn slow_readers_of_a_large_replay_hold_a_piece_each() {
    let d = Daemon::start(&["--history-bytes", "256K", "--write-timeout", "60"]);
    // 16 topics of 256 KiB: 4 MiB of history, all of it owed to each
    // reader below.
    let topics: Vec<String> = (0..16).map(|t| format!("t{t}")).collect();
    let body = vec![b'x'; 1000];
    for _ in 0..260 {
        for t in &topics {
            assert_eq!(publish(d.addr, t, &body), 200);
        }
    }
    let query: Vec<String> = topics.iter().map(|t| format!("topic={t}")).collect();
    let target = format!("/events?{}&last=1000000", query.join("&"));
    let before = d.rss_kb();
    let readers: Vec<TcpStream> = (0..20).map(|_| stalled(d.addr, &target)).collect();
    // Each reader's thread is blocked on its piece once the kernel's
    // buffers are full: each then holds one.
    wait_until(SOON, "every reader blocked on a piece", || {
        d.metric("ssed_stream_buffer_bytes ") >= 20 * 32 * 1024
    });
    let grown = d.peak_rss_kb().saturating_sub(before);
    // One piece of 64 KiB each and its encoding, not the 4 MiB owed (80
    // MiB for the twenty, before pieces).
    assert!(grown < 20 * 256, "RSS grew by {grown} KiB for 20 readers");
    drop(readers);
}

#[test]
fn slow_readers_of_a_busy_live_topic_hold_no_copy() {
    let d = Daemon::start(&["--write-timeout", "60"]);
    let mut watcher = Conn::open_stream(d.addr, "/events/busy");
    let readers: Vec<TcpStream> = (0..300).map(|_| stalled(d.addr, "/events/busy")).collect();
    wait_until(SOON, "300 subscribers", || {
        d.metric("ssed_subscribers{topic=\"busy\"} ") == 301
    });
    let before = d.rss_kb();
    // 60 KB events, faster than the stalled readers take them.
    let body = vec![b'y'; 60_000];
    for i in 0..60 {
        assert_eq!(publish(d.addr, "busy", &body), 200, "publish {i}");
    }
    assert_eq!(publish(d.addr, "busy", b"last"), 200);
    // Once the watcher has the last, every reader's pass is done. (It
    // read nothing meanwhile: it may have been told of a gap.)
    while watcher.events(1)[0].data != "last" {}
    let grown = d.peak_rss_kb().saturating_sub(before);
    // Each stalled reader waits on an event it shares with the topic and
    // the others: the topic's 1 MiB and its encodings, not 300 copies.
    assert!(
        grown < 12 * 1024,
        "RSS grew by {grown} KiB for 300 stalled readers"
    );
    drop(readers);
}

#[test]
fn refused_publishes_leave_no_keys_behind() {
    let d = Daemon::start(&[]);
    let before = d.rss_kb();
    // Publishes that are refused, each with a fresh key, on one
    // connection: 20,000 of them.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    let mut reader = s.try_clone().unwrap();
    let counter = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut text = Vec::new();
        let mut seen = 0;
        while seen < 20_000 {
            let n = reader.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {seen} answers");
            text.extend_from_slice(&buf[..n]);
            seen = text.windows(12).filter(|w| w == b"HTTP/1.1 400").count();
        }
    });
    for i in 0..20_000 {
        let req = format!(
            "POST /events/bad%20topic HTTP/1.1\r\nHost: x\r\nIdempotency-Key: fresh-{i:0100}\r\nContent-Length: 1\r\n\r\nx"
        );
        s.write_all(req.as_bytes()).unwrap();
    }
    counter.join().unwrap();
    assert_eq!(d.metric("ssed_idempotency_keys "), 0);
    let grown = d.rss_kb().saturating_sub(before);
    // Before: every refused key stayed queued for its TTL (about 180 bytes
    // each, 3.6 MB here).
    assert!(grown < 1024, "RSS grew by {grown} KiB");
}

#[test]
fn keys_are_capped_by_the_memory_ssed_is_sized_for() {
    // 16 MiB: room for a few thousand keys.
    let d = Daemon::start(&["--memory", "16M"]);
    let cap = ssed::memory::Sizing::for_limit(16 << 20).max_keys;
    let n = cap * 2;
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    let mut reader = s.try_clone().unwrap();
    let counter = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut text = Vec::new();
        while text.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count() < n {
            let n = reader.read(&mut buf).unwrap();
            assert!(n > 0);
            text.extend_from_slice(&buf[..n]);
        }
    });
    for i in 0..n {
        let req = format!(
            "POST /events/k HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k-{i}\r\nContent-Length: 1\r\n\r\nx"
        );
        s.write_all(req.as_bytes()).unwrap();
    }
    counter.join().unwrap();
    assert_eq!(d.metric("ssed_idempotency_keys ") as usize, cap);
}

#[test]
fn a_small_cgroup_survives_a_flood_refusing_the_excess() {
    let Some(cgroup) = Cgroup::new("memory") else {
        return;
    };
    cgroup.limit_memory(12 << 20);
    let (mut d, line) = Daemon::start_in(&cgroup, &["--write-timeout", "5"]);
    assert!(line.contains("(sized for 12 MiB: at most "), "{line}");
    let addr = d.addr;
    // Streams open before the flood, read all along: each event's number
    // as it arrives, and how many each gap says were missed.
    let olds: Vec<Conn> = (0..5)
        .map(|_| Conn::open_stream(addr, "/events/old"))
        .collect();
    let readers: Vec<_> = olds
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let (mut seen, mut missed) = (Vec::new(), 0);
                loop {
                    let ev = c.events(1).remove(0);
                    if ev.event == "gap" {
                        let gap: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
                        missed += gap["missed"].as_u64().expect("a live gap counts");
                    } else if ev.data == "end" {
                        return (seen, missed);
                    } else {
                        seen.push(ev.data[..5].parse::<u32>().unwrap());
                    }
                }
            })
        })
        .collect();
    // Large publishes to the old streams and to the flood's, all along.
    let publisher = std::thread::spawn(move || {
        let mut stored = Vec::new();
        for i in 0..40u32 {
            let body = format!("{i:05}{}", "z".repeat(60_000));
            if publish(addr, "old", body.as_bytes()) == 200 {
                stored.push(i);
            }
            publish(addr, "flood", body.as_bytes());
        }
        stored
    });
    // 8,000 connections asking for streams that nobody reads.
    let flood: Vec<TcpStream> = (0..8000)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, SOON).ok()?;
            let _ = s.write_all(b"GET /events/flood HTTP/1.1\r\nHost: x\r\n\r\n");
            Some(s)
        })
        .collect();
    let stored = publisher.join().unwrap();
    // What each flood connection was told.
    let (mut taken, mut refused) = (0, 0);
    for mut s in &flood {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = [0u8; 12];
        if s.read_exact(&mut head).is_ok() {
            match &head[9..12] {
                b"200" => taken += 1,
                b"503" => refused += 1,
                other => panic!("{}", String::from_utf8_lossy(other)),
            }
        }
    }
    d.assert_running();
    assert_eq!(cgroup.oom_kills(), 0, "the kernel killed ssed");
    assert!(
        taken > 100 && refused > 1000,
        "{taken} taken, {refused} refused"
    );
    drop(flood);
    // Everything is taken again once the flood is gone.
    wait_until(SOON, "the flood's connections to close", || {
        d.metric("ssed_connections_open ") < 10
    });
    wait_until(SOON, "the server to take work again", || {
        fetch(addr, "GET", "/healthz", &[], b"").0.status == 200
    });
    // The old streams are still served: each event stored reached each
    // of them once, in order, or a gap counted it (a 12 MiB host keeps
    // 960 KiB of history: a few of these events).
    assert_eq!(publish(addr, "old", b"end"), 200);
    for r in readers {
        let (seen, missed) = r.join().unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert!(seen.iter().all(|i| stored.contains(i)), "{seen:?}");
        assert_eq!(seen.len() as u64 + missed, stored.len() as u64, "{seen:?}");
    }
    let mut after = Conn::open_stream(addr, "/events/after");
    assert_eq!(publish(addr, "after", b"hello"), 200);
    assert_eq!(after.events(1)[0].data, "hello");
    let health = fetch(addr, "GET", "/healthz", &[], b"");
    assert_eq!((health.0.status, health.1.as_str()), (200, "ok\n"));
    eprintln!(
        "12 MiB: {taken} streams taken, {refused} refused, peak {:?} bytes",
        cgroup.peak()
    );
}

#[test]
fn near_the_limit_work_is_refused_and_taken_again_after() {
    // A limit the daemon reaches with a few thousand streams: usage is its
    // own (--memory), and the connection cap is lifted past it.
    let d = Daemon::start(&[
        "--memory",
        "12M",
        "--max-connections",
        "20000",
        "--max-streams",
        "20000",
    ]);
    let mut streams = Vec::new();
    let mut refused = None;
    for _ in 0..20_000 {
        let mut c = Conn::get(d.addr, "/events/many");
        let head = c.head();
        if head.status == 503 {
            refused = Some(c.read_to_end());
            break;
        }
        streams.push(c);
    }
    let body = String::from_utf8(refused.expect("a stream refused before 20,000")).unwrap();
    assert!(body.contains("\"error\":\"at capacity: memory: "), "{body}");
    assert_eq!(publish(d.addr, "many", b"x"), 503);
    let health = fetch(d.addr, "GET", "/healthz", &[], b"");
    assert_eq!(health.0.status, 503);
    // (Refused at the door as JSON, or answered by the route as text.)
    assert!(health.1.contains("at capacity: memory: "), "{}", health.1);
    assert!(
        d.metric("ssed_connections_refused_total{reason=\"memory\"} ")
            + d.metric("ssed_requests_refused_total{reason=\"memory\"} ")
            >= 2
    );
    // Those already open still get their events.
    drop(streams.split_off(10));
    wait_until(SOON, "memory to be given back", || {
        fetch(d.addr, "GET", "/healthz", &[], b"").0.status == 200
    });
    assert_eq!(publish(d.addr, "many", b"after"), 200);
    for c in &mut streams {
        assert_eq!(c.events(1)[0].data, "after");
    }
}

#[test]
fn fan_out_workers_follow_a_cpu_quota() {
    let Some(cgroup) = Cgroup::new("cpu") else {
        return;
    };
    cgroup.limit_cpu(0.5);
    let (d, _) = Daemon::start_in(&cgroup, &[]);
    let names = || -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/task", d.child.id()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim().to_string())
            .collect()
    };
    // A thread names itself once it runs: under load, one may not have
    // yet. Every thread but main is named; wait until all are.
    common::wait_until(Duration::from_secs(10), "every thread named", || {
        names().iter().filter(|n| *n == "ssed").count() == 1
    });
    let workers = names()
        .iter()
        .filter(|n| n.starts_with("ssed-fanout"))
        .count();
    assert_eq!(workers, 1, "half a core is one worker");
}
