//! Redis's own failures, Jepsen-style: instances and subscribers that
//! reconnect as browsers do, each fault injected during traffic, and per
//! subscriber: one order, no id naming two events, every acknowledged
//! event received or covered by a gap, nothing answered 503 delivered.
//! Without `redis-server` the tests say so and pass, unless
//! `SSED_REQUIRE_REDIS` is set (CI sets it).

mod common;

use common::redis::{instance_at as instance, linked, Redis, Switch};
use common::{fetch, json, start, wait_until, Daemon};
use ssed::sse::{Decoder, Item};
use ssed::Server;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SOON: Duration = Duration::from_secs(15);

fn health(addr: SocketAddr) -> (u16, String) {
    let (head, body) = fetch(addr, "GET", "/healthz", &[], b"");
    (head.status, body)
}

/// One event as a subscriber saw it: (event, data, id).
type Seen = (String, String, String);

/// A subscriber that behaves as a browser's EventSource: reads until the
/// stream ends, then reconnects with its `Last-Event-ID`, until stopped.
struct Browser {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Browser {
    fn open(addr: SocketAddr, target: &str) -> Browser {
        Browser::resume(addr, target, "")
    }

    /// One that resumes after `last_id` (none if empty).
    fn resume(addr: SocketAddr, target: &str, last_id: &str) -> Browser {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, target) = (Arc::clone(&seen), Arc::clone(&stop), target.to_string());
        let connected = Arc::new(AtomicBool::new(false));
        let c = Arc::clone(&connected);
        let mut last_id = last_id.to_string();
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                read_once(addr, &target, &mut last_id, &s, &st, &c);
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        wait_until(SOON, "the subscriber connected", || {
            connected.load(Ordering::SeqCst)
        });
        Browser {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn datas(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, d, _)| d.clone())
            .collect()
    }

    /// Waits until it has seen `data`.
    fn wait_for(&self, data: &str) {
        wait_until(SOON, &format!("a subscriber to see {data:?}"), || {
            self.datas().iter().any(|d| d == data)
        });
    }

    fn close(mut self) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().unwrap().clone()
    }
}

/// One connection: HTTP/1.0, so the body ends with the connection.
fn read_once(
    addr: SocketAddr,
    target: &str,
    last_id: &mut String,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
    connected: &AtomicBool,
) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let mut req = format!("GET {target} HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\n");
    if !last_id.is_empty() {
        req.push_str(&format!("Last-Event-ID: {last_id}\r\n"));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return;
    }
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    let mut decoder = Decoder::new();
    let mut items = Vec::new();
    let mut head_done = false;
    let mut tmp = [0u8; 16384];
    while !stop.load(Ordering::SeqCst) {
        let n = match s.read(&mut tmp) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        let mut bytes = &tmp[..n];
        if !head_done {
            buf.extend_from_slice(bytes);
            let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            if !buf.starts_with(b"HTTP/1.1 200") && !buf.starts_with(b"HTTP/1.0 200") {
                return;
            }
            head_done = true;
            connected.store(true, Ordering::SeqCst);
            let rest = buf.split_off(i + 4);
            buf = rest;
            bytes = &buf;
        }
        decoder.feed(bytes, &mut items).unwrap();
        buf.clear();
        for item in items.drain(..) {
            if let Item::Event(m) = item {
                *last_id = m.id.clone();
                seen.lock().unwrap().push((m.event, m.data, m.id));
            }
        }
    }
}

/// Sends `signal` (`-STOP`, `-CONT`) to a daemon.
fn signal(daemon: &Daemon, signal: &str) {
    let pid = daemon.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args([signal, &pid])
        .status();
    assert!(sent.is_ok_and(|s| s.success()), "kill {signal} {pid}");
}

/// What publishes were answered: (status, id, data).
type Acks = Vec<(u16, String, String)>;

fn publish(addr: SocketAddr, topic: &str, data: &str, key: Option<&str>, acks: &mut Acks) -> u16 {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    let (head, body) = fetch(
        addr,
        "POST",
        &format!("/events/{topic}"),
        &headers,
        data.as_bytes(),
    );
    let id = if head.status == 200 {
        json(&body)["id"].as_str().unwrap().to_string()
    } else {
        eprintln!("publish {data:?}: {} {body}", head.status);
        String::new()
    };
    acks.push((head.status, id, data.to_string()));
    head.status
}

fn run_of(id: &str) -> &str {
    id.rsplit_once('-').map_or("", |(run, _)| run)
}

fn seq_of(id: &str) -> u64 {
    id.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// The promises, per subscriber.
fn check(acks: &Acks, subs: &[Vec<Seen>]) {
    // No id names two events: among the acknowledgements and every
    // delivery.
    let mut named: HashMap<String, String> = HashMap::new();
    let mut name = |id: &str, data: &str, what: &str| {
        if id.is_empty() {
            return;
        }
        if let Some(before) = named.insert(id.to_string(), data.to_string()) {
            assert_eq!(before, data, "{what}: id {id} names two events");
        }
    };
    for (status, id, data) in acks {
        if *status == 200 {
            name(id, data, "acknowledged");
        }
    }
    for (i, seen) in subs.iter().enumerate() {
        for (event, data, id) in seen {
            if event != "gap" {
                name(id, data, &format!("subscriber {i}"));
            }
        }
    }
    for (i, seen) in subs.iter().enumerate() {
        // One order: within a run, numbers only go up.
        let mut last: HashMap<&str, u64> = HashMap::new();
        for (event, _, id) in seen.iter().filter(|(e, _, _)| e != "gap") {
            let (run, seq) = (run_of(id), seq_of(id));
            let before = last.insert(run, seq).unwrap_or(0);
            assert!(
                seq > before,
                "subscriber {i}: {event} {id} after {run}-{before}"
            );
        }
        let datas: Vec<&str> = seen
            .iter()
            .filter(|(e, _, _)| e != "gap")
            .map(|(_, d, _)| d.as_str())
            .collect();
        let gaps = seen.iter().filter(|(e, _, _)| e == "gap").count();
        for (status, id, data) in acks {
            match status {
                // Acknowledged: received, or covered by a gap.
                200 => assert!(
                    datas.contains(&data.as_str()) || gaps > 0,
                    "subscriber {i}: acknowledged {id} ({data}) neither received nor covered by a gap"
                ),
                // Not stored: never delivered.
                503 => assert!(
                    !datas.contains(&data.as_str()),
                    "subscriber {i}: {data} was answered 503 and delivered"
                ),
                _ => {}
            }
        }
    }
}

#[test]
fn an_older_snapshot_gives_ids_a_new_run_and_subscribers_a_gap() {
    let Some(mut redis) = Redis::start(false) else {
        return;
    };
    let instances: Vec<Server> = (0..3).map(|_| instance(&redis.url(), |_| {})).collect();
    let subs: Vec<Browser> = instances
        .iter()
        .map(|s| Browser::open(s.addr(), "/events/t"))
        .collect();
    let mut acks = Acks::new();
    for i in 0..20 {
        if i == 10 {
            assert!(redis.cmd(&["SAVE"]).contains("OK"));
        }
        publish(
            instances[i % 3].addr(),
            "t",
            &format!("before {i}"),
            None,
            &mut acks,
        );
    }
    for s in &subs {
        s.wait_for("before 19");
    }
    let old_run = run_of(&acks[0].1).to_string();
    // Redis comes back from the snapshot: 10 events, the run of before.
    redis.kill();
    redis.run();
    for s in &instances {
        linked(s.addr());
    }
    // New events: none may be named as an old one was.
    let mut i = 0;
    wait_until(SOON, "publishes stored again", || {
        i += 1;
        publish(
            instances[i % 3].addr(),
            "t",
            &format!("after {i}"),
            None,
            &mut acks,
        ) == 200
    });
    for j in 0..10 {
        publish(
            instances[j % 3].addr(),
            "t",
            &format!("after x{j}"),
            None,
            &mut acks,
        );
    }
    for s in &subs {
        s.wait_for("after x9");
    }
    let new_run = run_of(&acks.last().unwrap().1).to_string();
    assert_ne!(new_run, old_run, "ids go on under a new run");
    // A client that resumes from the newest id of before: a gap, then the
    // events of now.
    let last_before = acks[19].1.clone();
    let late = Browser::open(
        instances[0].addr(),
        &format!("/events/t?last_event_id={last_before}"),
    );
    late.wait_for("after x9");
    let late = late.close();
    assert_eq!(late[0].0, "gap", "{late:?}");
    let mut all: Vec<Vec<Seen>> = subs.into_iter().map(Browser::close).collect();
    all.push(late);
    check(&acks, &all);
}

#[test]
fn an_instance_stalled_across_the_restart_finds_out_by_itself() {
    let Some(mut redis) = Redis::start(false) else {
        return;
    };
    // C, a process of its own, to be stopped.
    let c = Daemon::start(&[
        "--redis",
        &redis.url(),
        "--redis-timeout",
        "0.5",
        "--keepalive",
        "0.2",
    ]);
    linked(c.addr);
    let a = instance(&redis.url(), |_| {});
    let on_c = Browser::open(c.addr, "/events/t");
    let mut acks = Acks::new();
    for i in 0..10 {
        publish(a.addr(), "t", &format!("before {i}"), None, &mut acks);
    }
    assert!(redis.cmd(&["SAVE"]).contains("OK"));
    for i in 10..15 {
        publish(a.addr(), "t", &format!("before {i}"), None, &mut acks);
    }
    on_c.wait_for("before 14");
    // C stops; A goes; Redis comes back from the snapshot (10 events).
    let signal = |s: &str| signal(&c, s);
    signal("-STOP");
    drop(a);
    redis.kill();
    redis.run();
    // A new instance, which never saw the old events, publishes past C's
    // position: the numbers 11..20 now name other events.
    let d = instance(&redis.url(), |_| {});
    for i in 0..10 {
        publish(d.addr(), "t", &format!("after {i}"), None, &mut acks);
    }
    signal("-CONT");
    // D found another Redis server holding the log and renewed the run; C
    // finds the run changed: its streams end, its subscriber resumes told
    // of the gap.
    c.stderr_line("hub streams here end", SOON);
    linked(c.addr);
    for i in 10..15 {
        wait_until(SOON, "a publish on the new run", || {
            publish(d.addr(), "t", &format!("after {i}"), None, &mut acks) == 200
        });
    }
    on_c.wait_for("after 14");
    let seen = on_c.close();
    assert!(seen.iter().any(|(e, _, _)| e == "gap"), "{seen:?}");
    check(&acks, &[seen]);
}

#[test]
fn a_promoted_replica_that_lagged_gives_ids_a_new_run() {
    let Some(primary) = Redis::start(false) else {
        return;
    };
    let Some(mut replica) = Redis::start(false) else {
        return;
    };
    let switch = Switch::start(primary.port);
    let instances: Vec<Server> = (0..2).map(|_| instance(&switch.url(), |_| {})).collect();
    let subs: Vec<Browser> = instances
        .iter()
        .map(|s| Browser::open(s.addr(), "/events/t"))
        .collect();
    let mut acks = Acks::new();
    for i in 0..10 {
        publish(
            instances[i % 2].addr(),
            "t",
            &format!("before {i}"),
            None,
            &mut acks,
        );
    }
    // The replica has what the primary had then, and no more.
    replica.take_snapshot_of(&primary);
    for i in 10..20 {
        publish(
            instances[i % 2].addr(),
            "t",
            &format!("before {i}"),
            None,
            &mut acks,
        );
    }
    for s in &subs {
        s.wait_for("before 19");
    }
    // Failover: the address now leads to the replica.
    drop(primary);
    switch.switch_to(replica.port);
    // Each instance finds the replica in its own time: wait until each has
    // stored one (a 503 until then is "not stored", as it should be).
    let mut i = 0;
    for (n, server) in instances.iter().enumerate() {
        wait_until(
            SOON,
            &format!("instance {n} to store on the replica"),
            || {
                i += 1;
                publish(server.addr(), "t", &format!("after {i}"), None, &mut acks) == 200
            },
        );
    }
    let last = format!("after {i}");
    for s in &subs {
        s.wait_for(&last);
    }
    assert_ne!(run_of(&acks[0].1), run_of(&acks.last().unwrap().1));
    let all: Vec<Vec<Seen>> = subs.into_iter().map(Browser::close).collect();
    check(&acks, &all);
}

/// Cuts the clients of `redis` blocked in a read (an instance's feed, in
/// `XREAD BLOCK`: `feed`), or all the others (its command connections),
/// and waits until `switch` has closed them on the instance's side too.
fn cut(redis: &Redis, switch: &Switch, feed: bool) {
    let before = switch.closed();
    let mut cut = None;
    wait_until(SOON, "one client blocked in XREAD", || {
        cut = cut_clients(redis, feed);
        cut.is_some()
    });
    let cut = cut.unwrap_or(0);
    wait_until(SOON, "the cut connections closed", || {
        switch.closed() >= before + cut
    });
}

/// Cuts as [`cut`] says, and says how many; `None` while not exactly
/// one client is blocked.
fn cut_clients(redis: &Redis, feed: bool) -> Option<u64> {
    let list = redis.cmd(&["CLIENT", "LIST"]);
    let clients: Vec<(&str, bool, &str)> = list
        .lines()
        .filter_map(|l| {
            let field = |name: &str| {
                l.split(' ')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            };
            Some((field("id")?, field("flags")?.contains('b'), field("cmd")?))
        })
        .collect();
    if clients.iter().filter(|(_, blocked, _)| *blocked).count() != 1 {
        return None;
    }
    let mut n = 0;
    for (id, _, _) in clients
        .iter()
        .filter(|(_, blocked, cmd)| *blocked == feed && *cmd != "client|list")
    {
        if redis.cmd(&["CLIENT", "KILL", "ID", id]).starts_with(":1") {
            n += 1;
        }
    }
    Some(n)
}

/// A failover that reaches an instance's connections one by one: a
/// balancer sends new connections to a promoted replica that lagged while
/// the old primary lives on, and either the instance's command
/// connections are cut (its feed still follows the old primary), or its
/// feed's connection (its command connections still lead to the old
/// primary). A publish must take no number on a server the feed has not
/// checked: one there could name an event some client holds, one on the
/// old primary would be lost. Until the feed has joined the new server a
/// publish is refused, not stored (503); then ids go on under a new run.
fn a_failover_that_reaches_the_connections_one_by_one(cut_feed: bool) {
    let Some(primary) = Redis::start(false) else {
        return;
    };
    let Some(mut replica) = Redis::start(false) else {
        return;
    };
    let switch = Switch::start(primary.port);
    let server = instance(&switch.url(), |_| {});
    let sub = Browser::open(server.addr(), "/events/t");
    let mut acks = Acks::new();
    for i in 0..20 {
        if i == 10 {
            // The replica has what the primary had then, and no more.
            replica.take_snapshot_of(&primary);
        }
        publish(server.addr(), "t", &format!("before {i}"), None, &mut acks);
    }
    sub.wait_for("before 19");
    switch.send_new_to(replica.port);
    cut(&primary, &switch, cut_feed);
    // Until one is stored on the replica, under a new run. (One stored on
    // the old primary before its connections noticed is acknowledged and
    // then lost with it, as Redis's replication loses it: its subscribers
    // are told by a gap, which `check` holds them to.)
    let old_run = run_of(&acks[0].1).to_string();
    let mut i = 0;
    wait_until(SOON, "a publish stored on the replica", || {
        i += 1;
        publish(server.addr(), "t", &format!("after {i}"), None, &mut acks) == 200
            && run_of(&acks.last().unwrap().1) != old_run
    });
    check(&acks, &[]);
    sub.wait_for(&format!("after {i}"));
    // Refused ones were never sent: not stored, and said so.
    assert!(
        acks.iter().all(|(s, _, _)| matches!(s, 200 | 503)),
        "{acks:?}"
    );
    check(&acks, &[sub.close()]);
}

#[test]
fn a_command_connection_that_reaches_another_server_first_takes_no_number() {
    a_failover_that_reaches_the_connections_one_by_one(false);
}

#[test]
fn a_command_connection_left_on_the_old_server_is_not_used() {
    a_failover_that_reaches_the_connections_one_by_one(true);
}

/// A command connection Redis closed while it sat idle is seen closed
/// before a publish is sent on it: when no new connection can be made
/// either, the publish certainly was not stored and is answered so (503),
/// not "outcome unknown" as one sent into the closed connection would be.
#[test]
fn a_publish_is_not_sent_into_a_connection_closed_while_idle() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let switch = Switch::start(redis.port);
    let server = instance(&switch.url(), |_| {});
    let mut acks = Acks::new();
    assert_eq!(publish(server.addr(), "t", "first", None, &mut acks), 200);
    switch.send_new_to(common::free_port());
    cut(&redis, &switch, false);
    let (head, body) = fetch(server.addr(), "POST", "/events/t", &[], b"second");
    assert_eq!(head.status, 503, "{body}");
    assert!(body.contains("not reached"), "{body}");
}

/// A resume on an instance whose mirror is behind the log: what Redis
/// trimmed past the mirror's watermark still comes live, from the feed,
/// so the gap names only what is missed, and nothing it names comes.
#[test]
fn a_gap_names_only_what_a_mirror_behind_the_log_cannot_bring() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis.url(), |c| c.history = 3);
    let switch = Switch::start(redis.port);
    let b = instance(&switch.url(), |c| c.history = 3);
    let mut acks = Acks::new();
    let first = Browser::open(b.addr(), "/events/t");
    publish(a.addr(), "t", "e1", None, &mut acks);
    first.wait_for("e1");
    first.close();
    switch.hold_feeds(true);
    for i in 2..=6 {
        publish(a.addr(), "t", &format!("e{i}"), None, &mut acks);
    }
    // Redis keeps e4..e6; B's mirror has e1 only.
    let sub = Browser::resume(b.addr(), "/events/t", &acks[0].1);
    switch.hold_feeds(false);
    sub.wait_for("e6");
    let seen = sub.close();
    let datas: Vec<&str> = seen.iter().map(|(_, d, _)| d.as_str()).collect();
    assert_eq!(datas, ["e2", "e3", "e4", "e5", "e6"], "{seen:?}");
    // (It resumed after e1.)
    check(&acks[1..].to_vec(), &[seen]);
}

#[test]
fn an_eviction_policy_that_may_drop_ssed_keys_keeps_the_link_down() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    for policy in ["allkeys-lru", "volatile-lru"] {
        assert!(redis
            .cmd(&["CONFIG", "SET", "maxmemory-policy", policy])
            .contains("OK"));
        let server = start(|c| {
            c.redis = Some(ssed::config::RedisTarget::parse(&redis.url()).unwrap());
            c.redis_timeout = Duration::from_millis(500);
        });
        let addr = server.addr();
        wait_until(SOON, "the health to name the policy", || {
            let (status, body) = health(addr);
            status == 503 && body.contains(&format!("maxmemory-policy is {policy}"))
        });
        let (head, body) = fetch(addr, "POST", "/events/t", &[], b"x");
        assert_eq!(head.status, 503, "{body}");
        // Set right, the link comes up.
        assert!(redis
            .cmd(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
            .contains("OK"));
        linked(addr);
    }
}

#[test]
fn out_of_memory_is_said_and_the_feed_keeps_what_the_history_asks() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let server = instance(&redis.url(), |c| {
        c.history_total = Some(256 * 1024);
        c.max_event_bytes = 64 * 1024;
    });
    let addr = server.addr();
    let mut acks = Acks::new();
    // The feed is trimmed to about what the history keeps in all.
    let big = "x".repeat(16 * 1024);
    for i in 0..200 {
        publish(
            addr,
            &format!("t{}", i % 5),
            &format!("{i} {big}"),
            None,
            &mut acks,
        );
    }
    let xlen: u64 = redis
        .cmd(&["XLEN", "ssed:all"])
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    // 256 KiB / 16 KiB = 16 (at least 64 kept), and `~` trims by whole
    // nodes of 100.
    assert!(xlen <= 64 + 100, "the feed holds {xlen} entries");
    // Out of memory: publishes 503 naming it, /healthz and the log say so.
    assert!(redis
        .cmd(&["CONFIG", "SET", "maxmemory", "1"])
        .contains("OK"));
    let before = acks.len();
    let status = publish(addr, "t0", "too much", None, &mut acks);
    assert_eq!(status, 503);
    let (status, body) = health(addr);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("out of memory"), "{body}");
    assert!(acks[before..].iter().all(|(s, _, _)| *s == 503));
    // Room again: stored, and healthy within a couple of seconds.
    assert!(redis
        .cmd(&["CONFIG", "SET", "maxmemory", "0"])
        .contains("OK"));
    assert_eq!(publish(addr, "t0", "room again", None, &mut acks), 200);
    wait_until(SOON, "healthy again", || health(addr).0 == 200);
}

#[test]
fn a_user_without_a_command_keeps_the_link_down_backs_off_and_burns_nothing() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    // A first instance sets the log up.
    let ok = instance(&redis.url(), |_| {});
    let mut acks = Acks::new();
    publish(ok.addr(), "t", "first", None, &mut acks);
    let count = || redis.cmd(&["GET", "ssed:seq"]);
    let connections = || -> u64 {
        let info = redis.cmd(&["INFO", "stats"]);
        common::redis::info_number(&info, "total_connections_received")
    };
    for missing in ["xread", "xadd", "xrange"] {
        let user = format!("no{missing}");
        let reply = redis.cmd(&[
            "ACL",
            "SETUSER",
            &user,
            "on",
            ">pw",
            "~*",
            "&*",
            "+@all",
            &format!("-{missing}"),
        ]);
        assert!(reply.contains("OK"), "{reply}");
        let url = format!("redis://{user}:pw@127.0.0.1:{}", redis.port);
        let server = start(|c| {
            c.redis = Some(ssed::config::RedisTarget::parse(&url).unwrap());
            c.redis_timeout = Duration::from_millis(500);
        });
        let addr = server.addr();
        let name = missing.to_uppercase();
        wait_until(SOON, "the health to name the command", || {
            let (status, body) = health(addr);
            status == 503 && body.contains(&format!("may not run {name}"))
        });
        let (seq, conns) = (count(), connections());
        let started = Instant::now();
        for i in 0..5 {
            let status = publish(addr, "t", &format!("{missing} {i}"), None, &mut acks);
            assert_eq!(status, 503);
        }
        std::thread::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed()));
        // No number burnt; the link retried with back-off, not in a loop.
        assert_eq!(count(), seq, "{missing}");
        let made = connections() - conns;
        assert!(made <= 12, "{missing}: {made} connections in 1.5 s");
        // Still down, saying why.
        assert_eq!(health(addr).0, 503);
    }
    // Nothing the restricted instances were refused reached anyone.
    let sub = Browser::open(ok.addr(), "/events/t?last=100");
    sub.wait_for("first");
    publish(ok.addr(), "t", "last", None, &mut acks);
    sub.wait_for("last");
    check(&acks, &[sub.close()]);
}

#[test]
fn a_retry_during_a_stall_is_never_told_not_stored() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let server = instance(&redis.url(), |_| {});
    let addr = server.addr();
    let sub = Browser::open(addr, "/events/t");
    let mut acks = Acks::new();
    // A kept connection: the next publish goes out on it at once.
    assert_eq!(publish(addr, "t", "before", None, &mut acks), 200);
    redis.pause(true);
    // Answered within one --redis-timeout (0.5 s), not two: unknown.
    let started = Instant::now();
    let status = publish(addr, "t", "during the stall", Some("k-1"), &mut acks);
    let took = started.elapsed();
    assert_eq!(status, 504);
    assert!(took < Duration::from_millis(900), "answered after {took:?}");
    // Its retries, while Redis is still stopped: unknown still (504),
    // never 503, whether the link is up or down by then.
    for _ in 0..3 {
        let status = publish(addr, "t", "during the stall", Some("k-1"), &mut acks);
        assert_eq!(status, 504);
    }
    redis.pause(false);
    // Once Redis runs again, the first attempt ran: the retry gets its id,
    // and the event is delivered once.
    wait_until(SOON, "the retry answered", || {
        publish(addr, "t", "during the stall", Some("k-1"), &mut acks) == 200
    });
    sub.wait_for("during the stall");
    let seen = sub.close();
    assert_eq!(
        seen.iter()
            .filter(|(_, d, _)| d == "during the stall")
            .count(),
        1
    );
    check(&acks, &[seen]);
}

#[test]
fn without_info_the_event_at_an_instances_position_tells_a_rewritten_history() {
    let Some(mut redis) = Redis::start(false) else {
        return;
    };
    // A user that may not run INFO: no fence; the instance's own memory of
    // the event at its position is what tells.
    let reply = redis.cmd(&[
        "ACL", "SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info",
    ]);
    assert!(reply.contains("OK"), "{reply}");
    let url = format!("redis://noinfo:pw@127.0.0.1:{}", redis.port);
    let c = Daemon::start(&[
        "--redis",
        &url,
        "--redis-timeout",
        "0.5",
        "--keepalive",
        "0.2",
    ]);
    linked(c.addr);
    let mut acks = Acks::new();
    for i in 0..10 {
        publish(c.addr, "t", &format!("before {i}"), None, &mut acks);
    }
    assert!(redis.cmd(&["SAVE"]).contains("OK"));
    for i in 10..15 {
        publish(c.addr, "t", &format!("before {i}"), None, &mut acks);
    }
    let signal = |s: &str| signal(&c, s);
    signal("-STOP");
    redis.kill();
    redis.run();
    let reply = redis.cmd(&[
        "ACL", "SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info",
    ]);
    assert!(reply.contains("OK"), "{reply}");
    // Another instance, also without INFO, publishes past C's position.
    let d = instance(&url, |_| {});
    for i in 0..10 {
        publish(d.addr(), "t", &format!("after {i}"), None, &mut acks);
    }
    signal("-CONT");
    let line = c.stderr_line("history went back", SOON);
    assert!(line.contains("is not the one this instance had"), "{line}");
    // From then on, ids are of a new run on every instance.
    linked(c.addr);
    let old_run = run_of(&acks[0].1).to_string();
    wait_until(SOON, "ids of a new run", || {
        let mut more = Acks::new();
        publish(d.addr(), "t", "later", None, &mut more) == 200 && run_of(&more[0].1) != old_run
    });
}
