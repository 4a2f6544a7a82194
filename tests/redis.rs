//! Several instances sharing one hub through a real `redis-server`, started
//! here on a free loopback port with a temporary directory. Without
//! `redis-server` the tests say so and pass, unless `SSED_REQUIRE_REDIS` is
//! set (CI sets it).

mod common;

use common::redis::{instance_at, linked, Redis};
use common::{fetch, json, start, wait_until, Conn};
use ssed::sse::Message;
use ssed::{Config, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use std::time::Duration;

const SOON: Duration = Duration::from_secs(15);

/// An ssed instance on `redis`, its link up.
fn instance(redis: &Redis, tweak: impl FnOnce(&mut Config)) -> Server {
    instance_at(&redis.url(), tweak)
}

fn publish(addr: SocketAddr, target: &str, body: &str) -> String {
    let (head, reply) = fetch(addr, "POST", target, &[], body.as_bytes());
    assert_eq!(head.status, 200, "{reply}");
    json(&reply)["id"].as_str().unwrap().to_string()
}

fn subscribe(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Conn {
    let mut c = Conn::send(addr, "GET", target, headers, b"");
    let head = c.head();
    assert_eq!(head.status, 200, "{}", head.raw);
    assert_eq!(c.chunk_str().as_deref(), Some("retry: 2000\n"));
    c
}

fn seen(events: &[Message]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| (e.event.clone(), e.data.clone(), e.id.clone()))
        .collect()
}

fn seq(id: &str) -> u64 {
    id.rsplit_once('-').unwrap().1.parse().unwrap()
}

#[test]
fn a_publish_on_one_instance_reaches_subscribers_on_both() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |_| {});
    let b = instance(&redis, |_| {});
    let mut on_a = subscribe(a.addr(), "/events/news", &[]);
    let mut on_b = subscribe(b.addr(), "/events/news", &[]);
    let text = publish(a.addr(), "/events/news", "hello");
    let named = publish(b.addr(), "/events/news?event=alert", "two\nlines");
    let (head, reply) = fetch(
        a.addr(),
        "POST",
        "/events/news",
        &[("Content-Type", "application/json")],
        br#"{"data": {"temp": 21.5}, "event": "reading"}"#,
    );
    assert_eq!(head.status, 200);
    let jsonid = json(&reply)["id"].as_str().unwrap().to_string();
    let want = vec![
        ("message".to_string(), "hello".to_string(), text.clone()),
        ("alert".into(), "two\nlines".into(), named.clone()),
        ("reading".into(), "{\"temp\":21.5}".into(), jsonid.clone()),
    ];
    assert_eq!(seen(&on_a.events(3)), want);
    assert_eq!(seen(&on_b.events(3)), want);
    // One id space: both instances number from the same counter.
    assert_eq!(seq(&named), seq(&text) + 1);
    assert_eq!(
        text.split_once('-').unwrap().0,
        jsonid.split_once('-').unwrap().0
    );
    // /sse and /messages go through Redis too.
    let mut sse_b = subscribe(b.addr(), "/sse", &[]);
    let (head, _) = fetch(
        a.addr(),
        "POST",
        "/messages",
        &[("Content-Type", "application/json")],
        br#"{"message": "from A"}"#,
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        sse_b.events(1)[0].data,
        r#"{"status": "Received", "message": "from A"}"#
    );
}

#[test]
fn concurrent_publishes_to_both_instances_arrive_in_one_order_everywhere() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |_| {});
    let b = instance(&redis, |_| {});
    let mut subs = [
        subscribe(a.addr(), "/events?topic=x&topic=y", &[]),
        subscribe(b.addr(), "/events?topic=x&topic=y", &[]),
    ];
    const EACH: usize = 50;
    let publishers: Vec<_> = [
        (a.addr(), "x"),
        (b.addr(), "y"),
        (a.addr(), "y"),
        (b.addr(), "x"),
    ]
    .into_iter()
    .enumerate()
    .map(|(p, (addr, topic))| {
        std::thread::spawn(move || {
            for i in 0..EACH {
                publish(addr, &format!("/events/{topic}"), &format!("{p}:{i}"));
            }
        })
    })
    .collect();
    for p in publishers {
        p.join().unwrap();
    }
    let total = 4 * EACH;
    let views: Vec<_> = subs.iter_mut().map(|s| seen(&s.events(total))).collect();
    assert_eq!(
        views[0], views[1],
        "the two instances disagree on the order"
    );
    let ids: Vec<u64> = views[0].iter().map(|(_, _, id)| seq(id)).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    // Each publisher's events in the order it sent them.
    for p in 0..4 {
        let mine: Vec<usize> = views[0]
            .iter()
            .filter_map(|(_, d, _)| d.strip_prefix(&format!("{p}:"))?.parse().ok())
            .collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>());
    }
}

#[test]
fn a_client_resumes_on_the_other_instance_exactly() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |_| {});
    let b = instance(&redis, |_| {});
    let mut on_a = subscribe(a.addr(), "/events?topic=p&topic=q", &[]);
    for d in ["p1", "p2"] {
        publish(a.addr(), "/events/p", d);
    }
    publish(b.addr(), "/events/q", "q1");
    let got = on_a.events(3);
    let last = got[1].id.clone(); // after p2: q1 is owed
    drop(on_a);
    // Published while the client is away, on both instances.
    publish(b.addr(), "/events/p", "p3");
    publish(a.addr(), "/events/q", "q2");
    // It comes back on B with the id from A; more is published meanwhile
    // from another thread, at the seam between replay and live.
    // (A watcher on A, to know when A has seen everything.)
    let mut watch_a = subscribe(a.addr(), "/events/p", &[]);
    let b_addr = b.addr();
    let a_addr = a.addr();
    let during = std::thread::spawn(move || {
        for i in 0..20 {
            let addr = if i % 2 == 0 { a_addr } else { b_addr };
            publish(addr, "/events/p", &format!("live{i}"));
        }
    });
    let mut on_b = subscribe(
        b.addr(),
        "/events?topic=p&topic=q",
        &[("Last-Event-ID", &last)],
    );
    during.join().unwrap();
    let rest = on_b.events(3 + 20);
    let data: Vec<&str> = rest.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(&data[..3], ["q1", "p3", "q2"]);
    let mut live: Vec<&str> = data[3..].to_vec();
    live.sort_by_key(|d| d[4..].parse::<u32>().unwrap());
    assert_eq!(
        live,
        (0..20).map(|i| format!("live{i}")).collect::<Vec<_>>()
    );
    let ids: Vec<u64> = rest.iter().map(|e| seq(&e.id)).collect();
    assert!(
        ids.windows(2).all(|w| w[1] > w[0]),
        "not in id order: {ids:?}"
    );
    assert_eq!(ids[0], seq(&last) + 1, "not exactly after the id");
    // ?last=N works across instances too: the newest 2 of p and q, once A
    // has them all.
    watch_a.events(20);
    let mut newest = subscribe(a.addr(), "/events?topic=p&topic=q&last=2", &[]);
    let two = newest.events(2);
    assert_eq!(
        (two[0].data.as_str(), two[1].data.as_str()),
        ("live18", "live19")
    );
}

#[test]
fn a_client_ahead_of_an_instance_gets_no_duplicate() {
    // B has not seen what A gave out: an id from A that B is still
    // catching up with is resumed exactly, not taken for another run's.
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |_| {});
    let b = instance(&redis, |_| {});
    let mut on_b = subscribe(b.addr(), "/events/r", &[]);
    let first = publish(a.addr(), "/events/r", "one");
    let mut resumed = subscribe(b.addr(), "/events/r", &[("Last-Event-ID", &first)]);
    let second = publish(a.addr(), "/events/r", "two");
    assert_eq!(on_b.events(2)[1].id, second);
    let next = resumed.events(1).remove(0);
    assert_eq!(
        (next.data.as_str(), next.id.as_str()),
        ("two", second.as_str())
    );
}

/// The number of the last event an instance's hub has taken in (its
/// mirror of the log).
fn watermark(addr: SocketAddr) -> u64 {
    let (_, body) = fetch(addr, "GET", "/metrics", &[], b"");
    body.lines()
        .find_map(|l| l.strip_prefix("ssed_events_watermark ")?.parse().ok())
        .expect("ssed_events_watermark in /metrics")
}

#[test]
fn trimmed_history_is_a_gap_and_an_instance_restart_loses_nothing() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |c| c.history = 3);
    let ids: Vec<String> = (1..=6)
        .map(|i| publish(a.addr(), "/events/t", &format!("e{i}")))
        .collect();
    // Resuming after e1: e2 and e3 were trimmed (3 kept: e4..e6). (Once
    // A's mirror has them all: what it has not yet would come live.)
    wait_until(SOON, "A's mirror to have e6", || watermark(a.addr()) == 6);
    let mut sub = subscribe(a.addr(), "/events/t", &[("Last-Event-ID", &ids[0])]);
    let got = sub.events(4);
    assert_eq!(got[0].event, "gap");
    assert_eq!(
        json(&got[0].data),
        serde_json::json!({"topic": "t", "missed": null, "after": ids[0], "through": ids[2]})
    );
    assert_eq!(
        got[1..].iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        ["e4", "e5", "e6"]
    );
    drop(sub);
    // A restarts; a new instance finds everything Redis kept.
    a.shutdown();
    let a = instance(&redis, |c| c.history = 3);
    let mut sub = subscribe(a.addr(), "/events/t", &[("Last-Event-ID", &ids[4])]);
    publish(a.addr(), "/events/t", "e7");
    let got = sub.events(2);
    assert_eq!(
        (
            got[0].data.as_str(),
            got[0].id.as_str(),
            got[1].data.as_str()
        ),
        ("e6", ids[5].as_str(), "e7")
    );
    // /topics shows what Redis keeps, and the link.
    let (head, body) = fetch(a.addr(), "GET", "/topics", &[], b"");
    assert!(
        head.header("Redis-Link").unwrap().starts_with("up"),
        "{}",
        head.raw
    );
    let t = &json(&body)[0];
    assert_eq!(
        (t["topic"].as_str(), t["retained"].as_u64()),
        (Some("t"), Some(3))
    );
    let (_, metrics) = fetch(a.addr(), "GET", "/metrics", &[], b"");
    assert!(metrics.contains("\nssed_redis_up 1\n"), "{metrics}");
}

#[test]
fn a_topic_keeps_within_history_bytes_in_redis() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    // 10 bytes of data: two events of 4 bytes, never a third.
    let a = instance(&redis, |c| c.history_bytes = 10);
    let ids: Vec<String> = ["aaaa", "bbbb", "cccc", "dddd"]
        .iter()
        .map(|d| publish(a.addr(), "/events/t", d))
        .collect();
    let mut sub = subscribe(a.addr(), "/events/t", &[("Last-Event-ID", &ids[0])]);
    let got = sub.events(3);
    assert_eq!(
        json(&got[0].data),
        serde_json::json!({"topic": "t", "missed": null, "after": ids[0], "through": ids[1]})
    );
    assert_eq!(
        got[1..].iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        ["cccc", "dddd"]
    );
}

#[test]
fn all_topics_together_keep_within_history_total_in_redis() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    // An event of 1000 bytes costs about 1150 (data, id, topic, 128): the
    // budget holds the small topic's event and two of the big ones.
    let a = instance(&redis, |c| c.history_total = Some(3000));
    let small = publish(a.addr(), "/events/small", "s1");
    let big = "x".repeat(1000);
    let ids: Vec<String> = (0..5)
        .map(|_| publish(a.addr(), "/events/big", &big))
        .collect();
    // Every instance sees what Redis keeps: another one, started now.
    let b = instance(&redis, |c| c.history_total = Some(3000));
    let (_, body) = fetch(b.addr(), "GET", "/topics", &[], b"");
    let retained: Vec<(String, u64)> = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["topic"].as_str().unwrap().to_string(),
                t["retained"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        retained,
        [("big".to_string(), 2), ("small".to_string(), 1)],
        "{body}"
    );
    // A client that had the first big event is told what the budget took.
    let mut sub = subscribe(
        b.addr(),
        "/events?topic=small&topic=big",
        &[("Last-Event-ID", &small)],
    );
    let got = sub.events(3);
    assert_eq!(
        json(&got[0].data),
        serde_json::json!({"topic": "big", "missed": null, "after": small, "through": ids[2]})
    );
    assert_eq!(
        (got[1].id.as_str(), got[2].id.as_str()),
        (ids[3].as_str(), ids[4].as_str())
    );
    let (_, metrics) = fetch(a.addr(), "GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("\nssed_history_trimmed_total 3\n"),
        "{metrics}"
    );
}

#[test]
fn redis_away_refuses_publishes_keeps_subscribers_and_catches_them_up() {
    let Some(mut redis) = Redis::start(true) else {
        return;
    };
    let a = instance(&redis, |_| {});
    let b = instance(&redis, |_| {});
    let mut on_a = subscribe(a.addr(), "/events/d", &[]);
    let before = publish(b.addr(), "/events/d", "before");
    assert_eq!(on_a.events(1)[0].id, before);
    redis.kill();
    wait_until(SOON, "the link to be down", || {
        fetch(a.addr(), "GET", "/healthz", &[], b"").0.status == 503
    });
    let (head, body) = fetch(a.addr(), "GET", "/healthz", &[], b"");
    assert!(
        body.starts_with(&format!("redis {}: down for ", redis.url())),
        "{body}"
    );
    assert!(
        common::retry_after_ok(head.header("Retry-After")),
        "{:?}",
        head.header("Retry-After")
    );
    let (head, body) = fetch(a.addr(), "POST", "/events/d", &[], b"lost?");
    assert_eq!(head.status, 503, "a publish Redis did not store: {body}");
    // It names Redis and the cause.
    let error = json(&body)["error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with(&format!("not published: redis {}: down: ", redis.url())),
        "{error}"
    );
    // The subscriber is kept: keep-alives go on.
    assert!(std::iter::from_fn(|| on_a.chunk_str()).any(|c| c == ": keep-alive\n"));
    // Redis comes back with its data (append-only file): the history is
    // there, and the subscriber gets what is published next.
    redis.run();
    linked(a.addr());
    linked(b.addr());
    let after = publish(b.addr(), "/events/d", "after");
    let next = on_a.events(1).remove(0);
    assert_eq!(
        (next.data.as_str(), next.id.as_str()),
        ("after", after.as_str())
    );
    assert_eq!(seq(&after), seq(&before) + 1, "the count went on");
    let mut replay = subscribe(a.addr(), "/events/d", &[("Last-Event-ID", "x-0")]);
    let got = replay.events(3);
    assert_eq!(
        got[1..].iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        ["before", "after"]
    );
    let (_, metrics) = fetch(a.addr(), "GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("\nssed_redis_reconnects_total 1\n"),
        "{metrics}"
    );
}

#[test]
fn redis_that_lost_its_data_ends_hub_streams_and_clients_resume_with_a_gap() {
    let Some(mut redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |_| {});
    let mut on_a = subscribe(a.addr(), "/events/v", &[]);
    let old = publish(a.addr(), "/events/v", "old");
    assert_eq!(on_a.events(1)[0].id, old);
    redis.kill();
    redis.run();
    // The stream ends (its last chunk) once the instance sees the new run.
    assert!(on_a.events_to_end().is_empty());
    linked(a.addr());
    let new = publish(a.addr(), "/events/v", "new");
    assert_ne!(
        old.split_once('-').unwrap().0,
        new.split_once('-').unwrap().0
    );
    // The client reconnects with its old id: a gap, then all there is.
    let mut again = subscribe(a.addr(), "/events/v", &[("Last-Event-ID", &old)]);
    let got = again.events(2);
    assert_eq!(got[0].event, "gap");
    assert_eq!(
        json(&got[0].data),
        serde_json::json!({"topic": "v", "missed": null, "after": old, "through": null})
    );
    assert_eq!(
        (got[1].data.as_str(), got[1].id.as_str()),
        ("new", new.as_str())
    );
    let (_, metrics) = fetch(a.addr(), "GET", "/metrics", &[], b"");
    assert!(
        metrics.contains("\nssed_redis_resets_total 1\n"),
        "{metrics}"
    );
}

#[test]
fn a_wrong_password_or_not_a_redis_is_said_in_one_line() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    redis.cmd(&["CONFIG", "SET", "requirepass", "right"]);
    let health = |url: String| {
        let server = start(|c| {
            c.redis = Some(ssed::config::RedisTarget::parse(&url).unwrap());
            c.redis_timeout = Duration::from_millis(300);
        });
        let addr = server.addr();
        let mut body = String::new();
        wait_until(SOON, "the link's state", || {
            let (head, b) = fetch(addr, "GET", "/healthz", &[], b"");
            body = b;
            head.status == 503 && !body.contains("connecting")
        });
        body
    };
    let wrong = health(format!("redis://:wrong@127.0.0.1:{}", redis.port));
    assert!(
        wrong.contains(": the password was refused: WRONGPASS"),
        "{wrong}"
    );
    assert!(wrong.starts_with(&format!(
        "redis redis://:***@127.0.0.1:{}: down",
        redis.port
    )));
    let db = health(format!("redis://:right@127.0.0.1:{}/99", redis.port));
    assert!(
        db.ends_with(": database 99: ERR DB index is out of range\n"),
        "{db}"
    );
    let none = health(redis.url());
    assert!(
        none.contains("Redis needs a password (redis://:PASSWORD@host): NOAUTH"),
        "{none}"
    );
    // An HTTP server where Redis was expected, and one that says nothing.
    let web = TcpListener::bind("127.0.0.1:0").unwrap();
    let web_addr = web.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in web.incoming().flatten() {
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let not_redis = health(format!("redis://{web_addr}"));
    assert!(
        not_redis
            .ends_with("not a Redis server: not a Redis reply: \"HTTP/1.1 400 Bad Request\"\n"),
        "{not_redis}"
    );
    let http = start(|_| {});
    let silent = health(format!("redis://{}", http.addr()));
    assert!(
        silent.ends_with("no answer within 300 ms (--redis-timeout): is it a Redis server?\n"),
        "{silent}"
    );
    // And the right one links.
    let ok = start(|c| {
        c.redis = Some(
            ssed::config::RedisTarget::parse(&format!("redis://:right@127.0.0.1:{}", redis.port))
                .unwrap(),
        );
    });
    linked(ok.addr());
}

/// A TCP proxy between ssed and Redis that can cut one connection after
/// Redis received a publish (`EVALSHA`) and before its reply reaches ssed:
/// a reply lost on the way back.
struct Proxy {
    port: u16,
    /// Set: the next publish's reply is swallowed and its connection cut.
    cut_next_publish: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Replies swallowed so far.
    cut: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Set: nothing from Redis reaches ssed (a stalled link) until cleared.
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    fn start(to: u16) -> Proxy {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut_next_publish = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicUsize::new(0));
        let stalled = Arc::new(AtomicBool::new(false));
        let (arm, count) = (Arc::clone(&cut_next_publish), Arc::clone(&cut));
        let stall = Arc::clone(&stalled);
        // Threads end when their sockets close (the test's servers go).
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let swallow = Arc::new(AtomicBool::new(false));
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (arm, swallow_up) = (Arc::clone(&arm), Arc::clone(&swallow));
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = c_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let publish = buf[..n].windows(7).any(|w| w == b"EVALSHA");
                        if publish && arm.swap(false, Ordering::SeqCst) {
                            swallow_up.store(true, Ordering::SeqCst);
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(std::net::Shutdown::Both);
                });
                let (mut s_in, mut c_out) = (server, client);
                let count = Arc::clone(&count);
                let stall = Arc::clone(&stall);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = s_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        // Held back while stalled (at most a minute).
                        for _ in 0..6000 {
                            if !stall.load(Ordering::SeqCst) {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        if swallow.load(Ordering::SeqCst) {
                            // The script ran; its answer never arrives.
                            count.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                    let _ = s_in.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Proxy {
            port,
            cut_next_publish,
            cut,
            stalled,
        }
    }

    /// Where ssed reaches Redis through it.
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// Every event a subscriber gets within `events`, as (id, data).
fn ids_and_data(events: &[Message]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.id.clone(), e.data.clone()))
        .collect()
}

#[test]
fn a_publish_whose_reply_is_lost_is_stored_once_and_answered_with_its_first_id() {
    use std::sync::atomic::Ordering;
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let proxy = Proxy::start(redis.port);
    let a = instance_at(&proxy.url(), |_| {});
    let b = instance(&redis, |_| {});
    let mut sub = subscribe(b.addr(), "/events/lost", &[]);
    let first = publish(a.addr(), "/events/lost", "before");
    for i in 0..5 {
        proxy.cut_next_publish.store(true, Ordering::SeqCst);
        let (head, body) = fetch(
            a.addr(),
            "POST",
            "/events/lost",
            &[],
            format!("cut {i}").as_bytes(),
        );
        assert_eq!(head.status, 200, "{body}");
        assert!(
            !proxy.cut_next_publish.load(Ordering::SeqCst),
            "the reply was cut"
        );
        let id = json(&body)["id"].as_str().unwrap().to_string();
        // Answered with the number the script gave: the next one.
        assert_eq!(seq(&id), seq(&first) + 1 + i);
    }
    assert_eq!(proxy.cut.load(Ordering::SeqCst), 5);
    let last = publish(a.addr(), "/events/lost", "after");
    // Each event once, in order: none stored twice.
    let got = ids_and_data(&sub.events(7));
    let data: Vec<&str> = got.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(
        data,
        ["before", "cut 0", "cut 1", "cut 2", "cut 3", "cut 4", "after"]
    );
    assert_eq!(seq(&got[6].0), seq(&last));
    assert_eq!(seq(&last), seq(&first) + 6);
}

#[test]
fn a_stalled_redis_gets_504_not_503_and_a_retry_with_the_key_stores_once() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |c| c.redis_timeout = Duration::from_millis(300));
    let b = instance(&redis, |_| {});
    let mut sub = subscribe(b.addr(), "/events/stall", &[]);
    let first = publish(a.addr(), "/events/stall", "before");
    let pid = redis.child.as_ref().unwrap().id() as i32;
    // SAFETY: signals to a process this test started.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGSTOP)
    };
    let (head, body) = fetch(a.addr(), "POST", "/events/stall", &[], b"in doubt");
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGCONT)
    };
    // Sent, never answered: not "not stored" (503), but "don't know".
    assert_eq!(head.status, 504, "{body}");
    let error = json(&body)["error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with(&format!("perhaps published: redis {}: ", redis.url())),
        "{error}"
    );
    let key = head.header("Idempotency-Key").unwrap().to_string();
    assert!(
        error.ends_with(&format!(
            "retry with the header Idempotency-Key: {key} to publish it at most once"
        )),
        "{error}"
    );
    // The client retries with the key: stored once, whatever Redis ran.
    linked(a.addr());
    let (head, body) = fetch(
        a.addr(),
        "POST",
        "/events/stall",
        &[("Idempotency-Key", &key)],
        b"in doubt",
    );
    assert_eq!(head.status, 200, "{body}");
    let id = json(&body)["id"].as_str().unwrap().to_string();
    assert_eq!(seq(&id), seq(&first) + 1);
    let last = publish(a.addr(), "/events/stall", "after");
    let got = ids_and_data(&sub.events(3));
    assert_eq!(
        got,
        [
            (first, "before".to_string()),
            (id, "in doubt".to_string()),
            (last, "after".to_string())
        ]
    );
}

#[test]
fn a_key_is_tied_to_its_publish_on_every_instance() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |_| {});
    let b = instance(&redis, |_| {});
    common::keys_are_tied_to_their_publish(a.addr(), b.addr());
    // The topic cap, counted in Redis, is a 429 on every instance.
    let c = instance(&redis, |c| c.max_topics = 2);
    let (head, body) = fetch(c.addr(), "POST", "/events/third", &[], b"x");
    assert_eq!(head.status, 429, "{body}");
    assert_eq!(
        json(&body)["error"],
        "there are 2 topics already (--max-topics)"
    );
}

#[test]
fn a_long_replay_is_read_a_page_at_a_time_in_one_order() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |c| c.max_event_bytes = 16 << 10);
    // Three topics, 900 events interleaved: many pages of each.
    let mut ids = Vec::new();
    for i in 0..900 {
        let topic = ["x", "y", "z"][(i * 7 + i / 5) % 3];
        ids.push(publish(
            a.addr(),
            &format!("/events/{topic}"),
            &format!("{i}"),
        ));
    }
    let b = instance(&redis, |c| c.max_event_bytes = 16 << 10);
    let all = subscribe(
        b.addr(),
        "/events?topic=x&topic=y&topic=z",
        &[("Last-Event-ID", &ids[99])],
    );
    let mut all = all;
    let got = all.events(800);
    let data: Vec<String> = got.iter().map(|e| e.data.clone()).collect();
    assert_eq!(data, (100..900).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(got[0].id, ids[100]);
    // The newest 250 across the three, in order.
    let mut newest = subscribe(b.addr(), "/events?topic=x&topic=y&topic=z&last=250", &[]);
    let data: Vec<String> = newest.events(250).iter().map(|e| e.data.clone()).collect();
    assert_eq!(data, (650..900).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[test]
fn an_instance_that_never_publishes_notices_a_flushall() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |_| {});
    let b = instance(&redis, |_| {});
    let mut sub = subscribe(b.addr(), "/events/f", &[]);
    let old = publish(a.addr(), "/events/f", "old");
    assert_eq!(sub.events(1)[0].id, old);
    assert!(redis.cmd(&["FLUSHALL"]).starts_with("+OK"));
    // B never publishes: it sees the run gone by looking, and its streams
    // end, so that clients resume.
    loop {
        match sub.chunk() {
            None => break,
            Some(c) if c == b": keep-alive\n" => {}
            Some(other) => panic!("B's stream sent {:?}", String::from_utf8_lossy(&other)),
        }
    }
    linked(b.addr());
    // A resumes on B across the reset: a gap, then the new log's event;
    // never the new log's event under an old id.
    let mut again = subscribe(b.addr(), "/events/f", &[("Last-Event-ID", &old)]);
    let fresh = loop {
        let (head, body) = fetch(b.addr(), "POST", "/events/f", &[], b"new");
        if head.status == 200 {
            break json(&body)["id"].as_str().unwrap().to_string();
        }
        // The first publish after the reset may find the run changing.
        assert_eq!(head.status, 503, "{body}");
    };
    assert_ne!(
        fresh.split_once('-').unwrap().0,
        old.split_once('-').unwrap().0
    );
    let got = again.events(2);
    assert_eq!(got[0].event, "gap");
    assert_eq!(
        (got[1].id.as_str(), got[1].data.as_str()),
        (fresh.as_str(), "new")
    );
}

#[test]
fn a_resume_on_an_instance_whose_link_is_stalled_never_goes_backwards() {
    use std::sync::atomic::Ordering;
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let proxy = Proxy::start(redis.port);
    let a = instance(&redis, |_| {});
    let b = instance_at(&proxy.url(), |c| {
        c.redis_timeout = Duration::from_millis(300)
    });
    let first = publish(a.addr(), "/events/s", "one");
    // B's link stalls: it hears of nothing A publishes meanwhile.
    proxy.stalled.store(true, Ordering::SeqCst);
    let ids: Vec<String> = (2..=5)
        .map(|i| publish(a.addr(), "/events/s", &format!("n{i}")))
        .collect();
    // A client that had everything up to the last resumes on B.
    let mut sub = subscribe(b.addr(), "/events/s", &[("Last-Event-ID", &ids[3])]);
    proxy.stalled.store(false, Ordering::SeqCst);
    let next = publish(a.addr(), "/events/s", "six");
    // What it gets: perhaps a gap (the replay could not be read), then
    // only what came after its id, once.
    let mut after = Vec::new();
    while after.is_empty() {
        for e in sub.events(1) {
            if e.event == "gap" {
                continue;
            }
            after.push((e.id, e.data));
        }
    }
    assert_eq!(after, [(next.clone(), "six".to_string())]);
    assert!(seq(&next) > seq(&ids[3]) && seq(&ids[3]) > seq(&first));
    let last = publish(a.addr(), "/events/s", "seven");
    let e = sub.events(1).remove(0);
    assert_eq!((e.id, e.data), (last, "seven".to_string()));
}

/// What a subscriber received over its connections: events, gaps apart.
#[derive(Default)]
struct Received {
    events: Vec<(String, String)>,
    gaps: usize,
}

impl Received {
    /// Reads `conn` until an event with `data` arrives; returns its id.
    fn until(&mut self, conn: &mut Conn, data: &str) -> String {
        loop {
            for e in conn.events(1) {
                if e.event == "gap" {
                    self.gaps += 1;
                    continue;
                }
                let done = e.data == data;
                self.events.push((e.id.clone(), e.data));
                if done {
                    return e.id;
                }
            }
        }
    }
}

#[test]
fn with_cut_replies_and_subscribers_that_move_every_acknowledged_event_arrives_once_in_order() {
    use std::collections::{HashMap, HashSet};
    use std::sync::atomic::Ordering;
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let proxy = Proxy::start(redis.port);
    let a = instance_at(&proxy.url(), |_| {});
    let b = instance(&redis, |_| {});
    let addrs = [a.addr(), b.addr()];
    // Each subscriber starts on one instance and moves to the other.
    let mut subs = [
        subscribe(a.addr(), "/events/j", &[]),
        subscribe(b.addr(), "/events/j", &[]),
    ];
    let mut got = [Received::default(), Received::default()];
    // What each publish was answered: acknowledged (id), or unknown.
    let mut acked: HashMap<String, String> = HashMap::new();
    let mut unknown: HashSet<String> = HashSet::new();
    let mut post = |to: usize, data: &str, cut: bool| {
        if cut {
            proxy.cut_next_publish.store(true, Ordering::SeqCst);
        }
        let (head, body) = fetch(addrs[to], "POST", "/events/j", &[], data.as_bytes());
        match head.status {
            200 => {
                let id = json(&body)["id"].as_str().unwrap().to_string();
                assert!(
                    acked.insert(id, data.to_string()).is_none(),
                    "an id given twice"
                );
            }
            504 => {
                unknown.insert(data.to_string());
            }
            other => panic!("{other}: {body}"),
        }
    };
    for i in 0..40 {
        // Every fifth publish through A has its reply cut after the script ran.
        post(i % 2, &format!("e{i}"), i % 10 == 0);
        if i == 20 {
            post(0, "move", false);
            for (k, sub) in subs.iter_mut().enumerate() {
                let last = got[k].until(sub, "move");
                // To the other instance, resuming after what it had.
                *sub = subscribe(addrs[1 - k], "/events/j", &[("Last-Event-ID", &last)]);
            }
        }
    }
    post(1, "end", false);
    assert_eq!(proxy.cut.load(Ordering::SeqCst), 4, "replies were cut");
    for (k, sub) in subs.iter_mut().enumerate() {
        got[k].until(sub, "end");
        let r = &got[k];
        // One id order, no event twice.
        let seqs: Vec<u64> = r.events.iter().map(|(id, _)| seq(id)).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "subscriber {k}: {seqs:?}"
        );
        // No event that was not published, no id naming another event.
        for (id, data) in &r.events {
            match acked.get(id) {
                Some(d) => assert_eq!(d, data, "subscriber {k}: id {id} named two events"),
                None => assert!(unknown.contains(data), "subscriber {k}: phantom {data}"),
            }
        }
        // Every acknowledged event arrived (nothing was trimmed: no gap).
        assert_eq!(r.gaps, 0);
        let ids: HashSet<&String> = r.events.iter().map(|(id, _)| id).collect();
        for id in acked.keys() {
            assert!(ids.contains(id), "subscriber {k} lost {id}");
        }
    }
}

#[test]
fn pattern_streams_across_instances_take_new_topics_and_resume() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |_| {});
    let b = instance(&redis, |_| {});
    publish(a.addr(), "/events/sensors/kitchen", "before");
    // (Once B's mirror has it: else it would come live.)
    wait_until(SOON, "B's mirror to have it", || watermark(b.addr()) == 1);
    // On B, a pattern: a topic B has never seen, made on A afterwards,
    // reaches it, as do those that exist.
    let mut on_b = subscribe(b.addr(), "/events/sensors/*?tag=topic", &[]);
    let first = publish(a.addr(), "/events/sensors/kitchen", "21.5");
    publish(a.addr(), "/events/sensors/garage", "9.0");
    publish(a.addr(), "/events/other", "no");
    let last = publish(b.addr(), "/events/sensors/attic", "dusty");
    let got: Vec<(String, String)> = on_b.events(3).into_iter().map(|m| (m.data, m.id)).collect();
    assert_eq!(
        got,
        [
            (
                r#"{"topic":"sensors/kitchen","data":"21.5"}"#.to_string(),
                first.clone()
            ),
            (
                r#"{"topic":"sensors/garage","data":"9.0"}"#.to_string(),
                got[1].1.clone()
            ),
            (
                r#"{"topic":"sensors/attic","data":"dusty"}"#.to_string(),
                last.clone()
            ),
        ]
    );
    // Away, then back on the other instance: exactly what came after the
    // id, across every matching topic, one made meanwhile among them.
    drop(on_b);
    publish(b.addr(), "/events/sensors/cellar", "damp");
    publish(a.addr(), "/events/sensors/kitchen", "22.0");
    let mut back = subscribe(a.addr(), "/events/sensors/*", &[("Last-Event-ID", &first)]);
    let got: Vec<String> = back.events(4).into_iter().map(|m| m.data).collect();
    assert_eq!(got, ["9.0", "dusty", "damp", "22.0"]);
    // And live after the replay, on a topic new to both.
    publish(b.addr(), "/events/sensors/roof", "windy");
    assert_eq!(back.events(1)[0].data, "windy");
}

#[test]
fn signed_tokens_work_alike_on_every_instance() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    const KEY: &str = "a key shared by every instance, 32+ bytes";
    let key = ssed::jwt::Key::new(KEY.as_bytes()).unwrap();
    let with_key = |c: &mut Config| c.token_key = Some(key.clone());
    // Signed by Python, as the application would.
    let sign =
        |claims: serde_json::Value| common::sign_as(r#"{"alg":"HS256"}"#, &claims.to_string(), KEY);
    let a = instance(&redis, with_key);
    let b = instance(&redis, with_key);
    // Tokens are stateless: one signed for the application works on both.
    let reader = sign(serde_json::json!({"sub": "u1", "ssed": {"subscribe": ["users/1/*"]}}));
    let writer = sign(serde_json::json!({"ssed": {"publish": ["users/**"]}}));
    let mut on_b = subscribe(b.addr(), &format!("/events/users/1/*?token={reader}"), &[]);
    let bearer = format!("Bearer {writer}");
    let (head, _) = fetch(
        a.addr(),
        "POST",
        "/events/users/1/inbox",
        &[("Authorization", &bearer)],
        b"hi",
    );
    assert_eq!(head.status, 200);
    assert_eq!(on_b.events(1)[0].data, "hi");
    for addr in [a.addr(), b.addr()] {
        let (head, _) = fetch(
            addr,
            "GET",
            &format!("/events/users/2/inbox?token={reader}"),
            &[],
            b"",
        );
        assert_eq!(head.status, 403);
        let (head, body) = fetch(addr, "GET", &format!("/topics?token={reader}"), &[], b"");
        assert_eq!(head.status, 200);
        assert!(body.contains("users/1/inbox"), "{body}");
    }
}

#[test]
fn a_delete_on_one_instance_deletes_on_every_instance() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |_| {});
    let b = instance(&redis, |_| {});
    publish(a.addr(), "/events/news", "one");
    let mut on_b = subscribe(b.addr(), "/events/news", &[]);
    let mut pattern_b = subscribe(b.addr(), "/events/*", &[]);
    let (head, body) = fetch(a.addr(), "DELETE", "/events/news", &[], b"");
    assert_eq!(head.status, 200, "{body}");
    // (The event published before may come live first: B's mirror may
    // not have had it when B's client subscribed.)
    let last = on_b.events_to_end();
    assert_eq!(
        last.last().map(|m| m.event.as_str()),
        Some("deleted"),
        "{last:?}"
    );
    let mut told = pattern_b.events(1);
    if told[0].event != "deleted" {
        told = pattern_b.events(1);
    }
    assert_eq!(told[0].event, "deleted");
    for addr in [a.addr(), b.addr()] {
        let listed = fetch(addr, "GET", "/topics", &[], b"").1;
        assert!(!listed.contains("\"news\""), "{listed}");
        assert_eq!(
            fetch(addr, "DELETE", "/events/news", &[], b"").0.status,
            404
        );
    }
    // The history is gone in Redis; a publish starts the topic afresh, and
    // ids go on (the deletion took a number of its own).
    let id = publish(b.addr(), "/events/news", "anew");
    assert_eq!(seq(&id), 3);
    let mut fresh = subscribe(a.addr(), "/events/news?last=10", &[]);
    assert_eq!(fresh.events(1)[0].data, "anew");
    assert_eq!(pattern_b.events(1)[0].data, "anew");
}

#[test]
fn subscribers_are_counted_on_every_instance() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let a = instance(&redis, |_| {});
    let b = instance(&redis, |_| {});
    let on_a: Vec<Conn> = (0..2)
        .map(|_| subscribe(a.addr(), "/events/news", &[]))
        .collect();
    let on_b: Vec<Conn> = (0..3)
        .map(|_| subscribe(b.addr(), "/events/news", &[]))
        .collect();
    let counted = |addr: SocketAddr| -> u64 {
        let listed = json(&fetch(addr, "GET", "/topics", &[], b"").1);
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["topic"] == "news")
            .map_or(0, |t| t["subscribers"].as_u64().unwrap())
    };
    for addr in [a.addr(), b.addr()] {
        wait_until(SOON, "every instance's subscribers counted", || {
            counted(addr) == 5
        });
    }
    let (head, reply) = fetch(a.addr(), "POST", "/events/news", &[], b"x");
    assert_eq!(head.status, 200);
    assert_eq!(json(&reply)["subscribers"], 5);
    let metrics = fetch(a.addr(), "GET", "/metrics", &[], b"").1;
    assert!(
        metrics.contains("ssed_subscribers_all{topic=\"news\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ssed_subscribers{topic=\"news\"} 2"),
        "{metrics}"
    );
    // An instance that goes stops being counted within a few seconds.
    drop(on_b);
    b.shutdown();
    wait_until(SOON, "the instance gone uncounted", || {
        counted(a.addr()) == 2
    });
    drop(on_a);
}

#[test]
fn history_ttl_in_redis_drops_old_events_and_forgets_topics_on_every_instance() {
    let Some(redis) = Redis::start(false) else {
        return;
    };
    let ttl = |c: &mut Config| {
        c.history_ttl = Some(Duration::from_millis(300));
        c.max_topics = 3;
    };
    let a = instance(&redis, ttl);
    let b = instance(&redis, ttl);
    let first = publish(a.addr(), "/events/news", "old one");
    publish(a.addr(), "/events/news", "old two");
    publish(b.addr(), "/events/x", "x");
    publish(b.addr(), "/events/y", "y");
    assert_eq!(
        fetch(a.addr(), "POST", "/events/z", &[], b"z").0.status,
        429
    );
    let listed = |addr: SocketAddr| fetch(addr, "GET", "/topics", &[], b"").1;
    for addr in [a.addr(), b.addr()] {
        wait_until(SOON, "the topics aged out", || {
            json(&listed(addr)).as_array().unwrap().is_empty()
        });
    }
    assert_eq!(redis.cmd(&["SCARD", "ssed:topics"]).trim(), ":0");
    publish(a.addr(), "/events/z", "z");
    // A resume from before, on the other instance: a gap, then the new.
    let new = publish(a.addr(), "/events/news", "new");
    let mut back = subscribe(b.addr(), "/events/news", &[("Last-Event-ID", &first)]);
    let got = back.events(2);
    assert_eq!(got[0].event, "gap", "{got:?}");
    assert_eq!(
        (got[1].data.as_str(), got[1].id.as_str()),
        ("new", new.as_str())
    );
}
