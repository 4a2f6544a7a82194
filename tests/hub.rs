//! The pub/sub hub over real sockets: topics, ids, replay, gaps, slow
//! clients, tokens, limits and metrics.

mod common;

use common::{fetch, json, retry_after_ok, start, wait_until, Conn};
use serde_json::Value;
use ssed::sse::Message;
use std::net::SocketAddr;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(10);

/// Publishes `body` to `topic` and returns the reply.
fn publish(addr: SocketAddr, topic: &str, body: &str) -> Value {
    let (head, reply) = fetch(
        addr,
        "POST",
        &format!("/events/{topic}"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(head.status, 200, "{reply}");
    json(&reply)
}

fn data(events: &[Message]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

/// A subscriber whose first chunk (`retry:`) has arrived, so it is subscribed.
fn subscribe(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Conn {
    let mut c = Conn::send(addr, "GET", target, headers, b"");
    let head = c.head();
    assert_eq!(head.status, 200, "{}", head.raw);
    assert_eq!(c.chunk_str().as_deref(), Some("retry: 2000\n"));
    c
}

#[test]
fn curl_publish_and_subscribe_on_one_topic() {
    let server = start(|_| {});
    let addr = server.addr();
    let mut sub = Conn::open_stream(addr, "/events/news");
    // curl -d 'hello' sends a form content type: the body is the data.
    let reply = publish(addr, "news", "hello");
    let id = reply["id"].as_str().unwrap().to_string();
    assert_eq!(
        reply,
        serde_json::json!({"id": id, "topic": "news", "subscribers": 1})
    );
    assert_eq!(
        sub.chunk_str().unwrap(),
        format!("data: hello\nid: {id}\n\n")
    );
    // Text keeps its line breaks; ?event= names it.
    let (_, reply) = fetch(
        addr,
        "POST",
        "/events/news?event=alert",
        &[("Content-Type", "text/plain")],
        b"line 1\nline 2\r\nline 3",
    );
    let id2 = json(&reply)["id"].as_str().unwrap().to_string();
    assert_eq!(
        sub.chunk_str().unwrap(),
        format!("event: alert\ndata: line 1\ndata: line 2\ndata: line 3\nid: {id2}\n\n")
    );
    // A JSON body gives data (any JSON value, compact) and the name.
    let (_, reply) = fetch(
        addr,
        "POST",
        "/events/news",
        &[("Content-Type", "application/json")],
        br#"{"data": {"temp": 21.5, "unit": "C"}, "event": "reading"}"#,
    );
    assert_eq!(json(&reply)["topic"], "news");
    let ev = sub.events(1).remove(0);
    assert_eq!(
        (ev.event.as_str(), ev.data.as_str()),
        ("reading", r#"{"temp":21.5,"unit":"C"}"#)
    );
    let (_, reply) = fetch(
        addr,
        "POST",
        "/events/news",
        &[("Content-Type", "application/json")],
        br#"{"data": "plain string"}"#,
    );
    assert_eq!(sub.events(1)[0].data, "plain string");
    // Ids increase.
    let seqs: Vec<u64> = [
        id.as_str(),
        id2.as_str(),
        json(&reply)["id"].as_str().unwrap(),
    ]
    .iter()
    .map(|id| id.rsplit_once('-').unwrap().1.parse().unwrap())
    .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

#[test]
fn several_topics_on_one_connection_in_order() {
    let server = start(|_| {});
    let addr = server.addr();
    let mut both = Conn::open_stream(addr, "/events?topic=a&topic=b&topic=a");
    for (topic, body) in [
        ("a", "1"),
        ("c", "not mine"),
        ("b", "2"),
        ("a", "3"),
        ("b", "4"),
    ] {
        publish(addr, topic, body);
    }
    let events = both.events(4);
    assert_eq!(data(&events), ["1", "2", "3", "4"]);
    // The ids increase across topics too.
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e.id.rsplit_once('-').unwrap().1.parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let (head, body) = fetch(addr, "GET", "/events", &[], b"");
    assert_eq!(head.status, 400);
    assert_eq!(
        json(&body)["error"],
        "name the topics to subscribe to: /events/NAME or /events?topic=a&topic=b"
    );
}

#[test]
fn reconnecting_replays_exactly_what_was_missed() {
    let server = start(|_| {});
    let addr = server.addr();
    let mut sub = Conn::open_stream(addr, "/events/feed");
    for i in 1..=3 {
        publish(addr, "feed", &i.to_string());
    }
    let seen = sub.events(3);
    let last = seen[2].id.clone();
    drop(sub);
    for i in 4..=6 {
        publish(addr, "feed", &i.to_string());
    }
    // The header, as a browser sends it when it reconnects.
    let mut back = subscribe(addr, "/events/feed", &[("Last-Event-ID", &last)]);
    assert_eq!(data(&back.events(3)), ["4", "5", "6"]);
    publish(addr, "feed", "7");
    assert_eq!(data(&back.events(1)), ["7"]);
    // ?last_event_id= for a first connection.
    let mut fresh = Conn::open_stream(addr, &format!("/events/feed?last_event_id={last}"));
    assert_eq!(data(&fresh.events(4)), ["4", "5", "6", "7"]);
}

#[test]
fn nothing_lost_or_doubled_across_reconnects_during_publishing() {
    let server = start(|_| {});
    let addr = server.addr();
    const N: usize = 300;
    let mut sub = Conn::open_stream(addr, "/events/busy");
    let publisher = std::thread::spawn(move || {
        for i in 1..=N {
            publish(addr, "busy", &i.to_string());
        }
    });
    let mut got: Vec<String> = Vec::new();
    let mut last_id = String::new();
    while got.len() < N {
        // Take a few events, then drop the connection and resume, while the
        // publisher keeps going.
        for ev in sub.events(7.min(N - got.len())) {
            last_id = ev.id.clone();
            got.push(ev.data);
        }
        if got.len() < N {
            sub = subscribe(addr, "/events/busy", &[("Last-Event-ID", &last_id)]);
        }
    }
    publisher.join().unwrap();
    let expected: Vec<String> = (1..=N).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
}

/// A subscriber whose socket holds little, so that its buffers fill fast.
fn small_buffer_subscriber(addr: SocketAddr, target: &str) -> Conn {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    use std::io::Write;
    stream
        .write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut c = Conn::from_stream(stream);
    assert_eq!(c.head().status, 200);
    assert_eq!(c.chunk_str().as_deref(), Some("retry: 2000\n"));
    c
}

#[test]
fn concurrent_publishers_reach_every_subscriber_in_id_order() {
    let server = start(|_| {});
    let addr = server.addr();
    let mut subs: Vec<Conn> = (0..20)
        .map(|_| Conn::open_stream(addr, "/events/c"))
        .collect();
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            std::thread::spawn(move || {
                for i in 0..100 {
                    publish(addr, "c", &format!("{p}-{i}"));
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    for sub in &mut subs {
        let events = sub.events(400);
        let seqs: Vec<u64> = events
            .iter()
            .map(|e| e.id.rsplit_once('-').unwrap().1.parse().unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "out of order: {seqs:?}"
        );
        // And each publisher's own events in the order it sent them.
        for p in 0..4 {
            let mine: Vec<&str> = events
                .iter()
                .map(|e| e.data.as_str())
                .filter(|d| d.starts_with(&format!("{p}-")))
                .collect();
            let expected: Vec<String> = (0..100).map(|i| format!("{p}-{i}")).collect();
            assert_eq!(mine, expected);
        }
    }
}

#[test]
fn a_socket_that_fills_mid_frame_gets_the_rest_then_all_after_it() {
    let server = start(|c| {
        c.write_timeout = Duration::from_secs(20);
        c.max_event_bytes = 256 * 1024;
        c.history_bytes = 16 << 20;
    });
    let addr = server.addr();
    let mut slow = small_buffer_subscriber(addr, "/events/big");
    let mut fast = Conn::open_stream(addr, "/events/big");
    // 8 MB for a client that does not read: more than Linux lets a socket
    // buffer grow to (4 MiB), so a publisher's write to it comes up short in
    // the middle of a frame, and its thread finishes it; then small events,
    // which must follow in order.
    let mut bodies: Vec<String> = (0..40)
        .map(|i| format!("{i}:{}", "x".repeat(200_000)))
        .collect();
    bodies.extend((40..60).map(|i| format!("{i}:{}", "y".repeat(1000))));
    for b in &bodies {
        publish(addr, "big", b);
        assert_eq!(&fast.events(1)[0].data, b);
    }
    // Every frame whole and every event once, in order.
    let got: Vec<String> = slow
        .events(bodies.len())
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(got, bodies);
}

#[test]
fn a_socket_that_fills_past_the_history_gets_a_gap_then_the_rest() {
    let server = start(|c| {
        c.write_timeout = Duration::from_secs(20);
        c.max_event_bytes = 128 * 1024;
    });
    let addr = server.addr();
    let mut slow = small_buffer_subscriber(addr, "/events/big");
    // 10 MB against a history of 1 MiB, for a client that does not read:
    // past what its socket buffers hold, the topic moves on without it.
    for i in 0..100 {
        publish(addr, "big", &format!("{i}:{}", "x".repeat(100_000)));
    }
    let mut next = 0;
    let mut gaps = 0;
    while next < 100 {
        let ev = slow.events(1).remove(0);
        if ev.event == "gap" {
            gaps += 1;
            let missed = json(&ev.data)["missed"].as_u64().unwrap();
            next += missed as usize;
            continue;
        }
        let n: usize = ev.data.split(':').next().unwrap().parse().unwrap();
        assert_eq!(n, next, "after a gap, events go on in order");
        next += 1;
    }
    assert!(gaps >= 1, "the slow client was told what it missed");
}

#[test]
fn a_subscriber_that_leaves_during_direct_writes_is_released() {
    let server = start(|c| c.write_timeout = Duration::from_secs(20));
    let addr = server.addr();
    let slow = small_buffer_subscriber(addr, "/events/gone");
    for i in 0..20 {
        publish(addr, "gone", &format!("{i}:{}", "x".repeat(10_000)));
    }
    // Leave with a reset, in the middle of what is owed to it.
    socket2::SockRef::from(&slow.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(slow);
    let mut n = 20;
    wait_until(SOON, "the stream to be released", || {
        n += 1;
        publish(addr, "gone", &n.to_string());
        server.open_streams() == 0
    });
    let topics = json(&fetch(addr, "GET", "/topics", &[], b"").1);
    assert_eq!(topics[0]["subscribers"], 0, "{topics}");
}

#[test]
fn replay_joins_live_writes_without_loss_or_duplicate_under_load() {
    let server = start(|c| c.history = 5000);
    let addr = server.addr();
    const N: usize = 2000;
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let publisher = {
        let ids = std::sync::Arc::clone(&ids);
        std::thread::spawn(move || {
            for i in 1..=N {
                let id = publish(addr, "r", &i.to_string())["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                ids.lock().unwrap().push(id);
            }
        })
    };
    // Subscribers join while events pour in, each resuming after an event
    // some way back, and must see every event after it exactly once.
    let readers: Vec<_> = (0..100)
        .map(|k| {
            let ids = std::sync::Arc::clone(&ids);
            std::thread::spawn(move || {
                let after = loop {
                    let ids = ids.lock().unwrap();
                    if ids.len() > k * 15 + 5 {
                        break k * 15 + 1;
                    }
                    drop(ids);
                    std::thread::yield_now();
                };
                let id = ids.lock().unwrap()[after - 1].clone();
                let mut sub = subscribe(addr, "/events/r", &[("Last-Event-ID", &id)]);
                let got: Vec<usize> = sub
                    .events(N - after)
                    .into_iter()
                    .map(|e| e.data.parse().unwrap())
                    .collect();
                assert_eq!(
                    got,
                    (after + 1..=N).collect::<Vec<_>>(),
                    "resumed after {after}"
                );
            })
        })
        .collect();
    publisher.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn one_id_resumes_several_topics() {
    let server = start(|_| {});
    let addr = server.addr();
    let mut sub = Conn::open_stream(addr, "/events?topic=x&topic=y");
    publish(addr, "x", "x1");
    publish(addr, "y", "y1");
    let last = sub.events(2)[1].id.clone();
    drop(sub);
    publish(addr, "y", "y2");
    publish(addr, "x", "x2");
    publish(addr, "z", "z1");
    let mut back = subscribe(addr, "/events?topic=x&topic=y", &[("Last-Event-ID", &last)]);
    assert_eq!(data(&back.events(2)), ["y2", "x2"]);
}

#[test]
fn evicted_history_is_reported_as_a_gap() {
    let server = start(|c| c.history = 3);
    let addr = server.addr();
    let ids: Vec<String> = (1..=10)
        .map(|i| {
            publish(addr, "small", &i.to_string())["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut sub = subscribe(addr, "/events/small", &[("Last-Event-ID", &ids[1])]);
    let events = sub.events(4);
    assert_eq!(events[0].event, "gap");
    assert_eq!(
        json(&events[0].data),
        serde_json::json!({"topic": "small", "missed": null, "after": ids[1], "through": ids[6]})
    );
    // The gap carries no id, so the client's Last-Event-ID is unchanged by it.
    assert_eq!(events[0].id, "");
    assert_eq!(data(&events[1..]), ["8", "9", "10"]);
    // An id that was never replayable but nothing was lost: no gap.
    let mut ok = subscribe(addr, "/events/small", &[("Last-Event-ID", &ids[8])]);
    assert_eq!(data(&ok.events(1)), ["10"]);
}

#[test]
fn ids_of_another_run_are_a_gap_then_all_history() {
    let server = start(|_| {});
    let addr = server.addr();
    publish(addr, "t", "a");
    publish(addr, "t", "b");
    for foreign in ["0badc0de-2", "nonsense"] {
        let mut sub = subscribe(addr, "/events/t", &[("Last-Event-ID", foreign)]);
        let events = sub.events(3);
        assert_eq!(events[0].event, "gap");
        assert_eq!(
            json(&events[0].data),
            serde_json::json!({"topic": "t", "missed": null, "after": foreign, "through": null})
        );
        assert_eq!(data(&events[1..]), ["a", "b"]);
    }
    // When the topic has dropped events, `through` is the newest dropped.
    let server = start(|c| c.history = 2);
    let addr = server.addr();
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|d| publish(addr, "t", d)["id"].as_str().unwrap().to_string())
        .collect();
    let mut sub = subscribe(addr, "/events/t", &[("Last-Event-ID", "0badc0de-2")]);
    let events = sub.events(3);
    assert_eq!(
        json(&events[0].data),
        serde_json::json!({"topic": "t", "missed": null, "after": "0badc0de-2", "through": ids[0]})
    );
    assert_eq!(data(&events[1..]), ["b", "c"]);
}

#[test]
fn a_lagging_client_is_told_what_it_missed() {
    let server = start(|c| {
        c.history_bytes = 200_000;
        c.write_timeout = Duration::from_secs(30);
    });
    let addr = server.addr();
    let mut slow = Conn::open_stream(addr, "/events/big");
    const N: usize = 300;
    let body = "x".repeat(50_000);
    for _ in 0..N {
        publish(addr, "big", &body);
    }
    // Only now does it read: its socket buffers held some events, its thread
    // was blocked writing, and the ring moved on without it.
    let mut received = 0;
    let mut missed = 0;
    while received + missed < N as u64 {
        let ev = slow.events(1).remove(0);
        if ev.event == "gap" {
            let gap = json(&ev.data);
            missed += gap["missed"].as_u64().unwrap();
            assert_eq!(gap["topic"], "big");
            assert!(gap["through"].is_string());
        } else {
            assert_eq!(ev.data.len(), body.len());
            received += 1;
        }
    }
    assert!(missed > 0, "no gap after {N} events of 50 KB");
    assert_eq!(received + missed, N as u64);
    let metrics = fetch(addr, "GET", "/metrics", &[], b"").1;
    assert!(
        !metrics.contains("ssed_subscribers_dropped_total{reason=\"slow\"} 0\n"),
        "{metrics}"
    );
}

#[test]
fn a_client_that_never_reads_is_dropped_and_publishing_is_unaffected() {
    let server = start(|c| {
        c.write_timeout = Duration::from_millis(300);
        c.heartbeat = Duration::from_secs(60);
    });
    let addr = server.addr();
    let _stuck = Conn::open_stream(addr, "/events/firehose");
    let mut fast = Conn::open_stream(addr, "/events/firehose");
    let body = "y".repeat(60_000);
    let mut sent = 0;
    while server.open_streams() == 2 {
        assert!(sent < 2000, "the stuck client was never dropped");
        publish(addr, "firehose", &body);
        sent += 1;
        assert_eq!(fast.events(1)[0].data.len(), body.len());
    }
    let metrics = fetch(addr, "GET", "/metrics", &[], b"").1;
    assert!(
        metrics.contains("ssed_subscribers_dropped_total{reason=\"write_timeout\"} 1\n"),
        "{metrics}"
    );
    // The fast client goes on.
    publish(addr, "firehose", "after");
    assert_eq!(fast.events(1)[0].data, "after");
}

#[test]
fn publish_token() {
    let server = start(|c| c.publish_token = Some("pub-s3cret".into()));
    let addr = server.addr();
    let cases = [
        (
            None,
            401,
            Some("Bearer realm=\"ssed\""),
            "a token is required: send it as Authorization: Bearer TOKEN",
        ),
        (
            Some("Bearer nope"),
            401,
            Some("Bearer realm=\"ssed\", error=\"invalid_token\""),
            "the token is wrong",
        ),
    ];
    for (authorization, status, challenge, why) in cases {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        for target in ["/events/t", "/messages"] {
            let (head, body) = fetch(addr, "POST", target, &headers, b"{}");
            assert_eq!(head.status, status, "{target}");
            assert_eq!(head.header("WWW-Authenticate"), challenge);
            assert_eq!(json(&body)["error"], why);
        }
    }
    // The query is not accepted for publishing: URLs end up in logs.
    let (head, _) = fetch(addr, "POST", "/events/t?token=pub-s3cret", &[], b"x");
    assert_eq!(head.status, 401);
    let (head, _) = fetch(
        addr,
        "POST",
        "/events/t",
        &[("Authorization", "Bearer pub-s3cret")],
        b"x",
    );
    assert_eq!(head.status, 200);
    // Subscribing stays open.
    Conn::open_stream(addr, "/events/t");
}

#[test]
fn subscribe_token_in_header_query_or_cookie() {
    let server = start(|c| c.subscribe_token = Some("sub-s3cret".into()));
    let addr = server.addr();
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let ok: [(&str, Headers); 3] = [
        ("/events/t", vec![("Authorization", "Bearer sub-s3cret")]),
        ("/events/t?token=sub-s3cret", vec![]),
        (
            "/sse",
            vec![("Cookie", "theme=dark; ssed_token=sub-s3cret")],
        ),
    ];
    for (target, headers) in ok {
        subscribe(addr, target, &headers);
    }
    let refused: [(&str, Headers, &str); 4] = [
        ("/events/t", vec![], "a token is required: send it as Authorization: Bearer TOKEN, ?token=TOKEN or the cookie ssed_token"),
        ("/events/t?token=wrong", vec![], "the token is wrong"),
        (
            "/sse",
            vec![("Cookie", "ssed_token=wrong")],
            "the token is wrong",
        ),
        ("/topics", vec![], "a token is required: send it as Authorization: Bearer TOKEN, ?token=TOKEN or the cookie ssed_token"),
    ];
    for (target, headers, why) in refused {
        let (head, body) = fetch(addr, "GET", target, &headers, b"");
        assert_eq!(head.status, 401, "{target}");
        assert_eq!(json(&body)["error"], why, "{target}");
    }
    // Publishing stays open; demos are not topics.
    assert_eq!(fetch(addr, "POST", "/events/t", &[], b"x").0.status, 200);
    Conn::open_stream(addr, "/stream-time");
}

#[test]
fn limits() {
    let server = start(|c| {
        c.max_event_bytes = 100;
        c.max_topics = 2;
    });
    let addr = server.addr();
    let rule = |name: &str| {
        format!("topic names are 1 to 128 characters of A-Z a-z 0-9 . _ ~ - and /, not {name:?}")
    };
    for (target, name) in [
        ("/events/a%20b", "a b"),
        ("/events/caf%C3%A9", "caf\u{e9}"),
        ("/events/a?event=b", "a"),
    ] {
        let (head, body) = fetch(addr, "POST", target, &[], b"x");
        if name == "a" {
            // "?event=b" is a query: the topic "a" is fine.
            assert_eq!(head.status, 200);
            continue;
        }
        assert_eq!(head.status, 400, "{target}");
        assert_eq!(json(&body)["error"], rule(name));
        let (head, _) = fetch(addr, "GET", target, &[], b"");
        assert_eq!(head.status, 400, "GET {target}");
    }
    // A stray slash is refused the same way everywhere, never a new topic.
    for (target, name) in [
        ("/events/news/", "news/"),
        ("/events//news", "/news"),
        ("/events/news%2F", "news/"),
        ("/events/a//b", "a//b"),
        ("/events/a/../b", "a/../b"),
    ] {
        let why = format!(
            "a topic name's / separates non-empty parts other than . and .. (no leading, trailing or double /), not {name:?}"
        );
        for method in ["POST", "GET"] {
            let (head, body) = fetch(addr, method, target, &[], b"x");
            assert_eq!(head.status, 400, "{method} {target}");
            assert_eq!(json(&body)["error"], why, "{method} {target}");
        }
    }
    let (head, body) = fetch(addr, "GET", "/events?topic=news/&topic=a", &[], b"");
    assert_eq!(head.status, 400, "{}", head.raw);
    let error = json(&body)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.ends_with("not \"news/\""), "{body}");
    let long = "t".repeat(129);
    assert_eq!(
        fetch(addr, "POST", &format!("/events/{long}"), &[], b"x")
            .0
            .status,
        400
    );
    let (head, body) = fetch(addr, "POST", "/events/a?event=gap", &[], b"x");
    assert_eq!(
        (head.status, json(&body)["error"].as_str().unwrap()),
        (
            400,
            "the event name \"gap\" is reserved for ssed's notices of lost events"
        )
    );
    let (head, body) = fetch(addr, "POST", "/events/a", &[], &[b'z'; 101]);
    assert_eq!(
        (head.status, json(&body)["error"].as_str().unwrap()),
        (413, "body is larger than 100 bytes (--max-event-bytes)")
    );
    // Topic "a" holds an event; "b" makes two; a third is refused.
    publish(addr, "b", "x");
    let (head, body) = fetch(addr, "POST", "/events/c", &[], b"x");
    assert_eq!(head.status, 429);
    assert!(
        retry_after_ok(head.header("Retry-After")),
        "{:?}",
        head.header("Retry-After")
    );
    assert_eq!(
        json(&body)["error"],
        "there are 2 topics already (--max-topics)"
    );
    let (head, _) = fetch(addr, "GET", "/events/c", &[], b"");
    assert_eq!(head.status, 429);
}

#[test]
fn deeply_nested_json_is_parsed_or_refused_within_the_stack() {
    let server = start(|_| {});
    let addr = server.addr();
    let nested =
        |depth: usize| format!("{{\"data\": {}1{}}}", "[".repeat(depth), "]".repeat(depth));
    let json_type = [("Content-Type", "application/json")];
    // serde_json's limit is 128 levels, the object itself being one.
    let (head, reply) = fetch(
        addr,
        "POST",
        "/events/deep",
        &json_type,
        nested(126).as_bytes(),
    );
    assert_eq!(head.status, 200, "{reply}");
    // Deeper still (within the body limit): refused, not recursed into.
    for depth in [127, 30_000] {
        let (head, reply) = fetch(
            addr,
            "POST",
            "/events/deep",
            &json_type,
            nested(depth).as_bytes(),
        );
        assert_eq!(head.status, 400, "{reply}");
        assert!(
            json(&reply)["error"]
                .as_str()
                .unwrap()
                .contains("recursion limit exceeded"),
            "{reply}"
        );
    }
    let (head, _) = fetch(
        addr,
        "POST",
        "/messages",
        &[],
        format!("{}1{}", "[".repeat(200), "]".repeat(200)).as_bytes(),
    );
    assert_eq!(head.status, 400);
}

#[test]
fn idle_topics_are_freed_and_listed_topics_are_true() {
    let server = start(|c| {
        c.history = 0;
        c.heartbeat = Duration::from_millis(20);
    });
    let addr = server.addr();
    let sub = Conn::open_stream(addr, "/events/watched");
    let topics = json(&fetch(addr, "GET", "/topics", &[], b"").1);
    assert_eq!(
        topics,
        serde_json::json!([{"topic": "watched", "subscribers": 1, "retained": 0, "last_id": null}])
    );
    drop(sub);
    wait_until(SOON, "the idle topic to be freed", || {
        fetch(addr, "GET", "/topics", &[], b"").1 == "[]\n"
    });
    let server = start(|_| {});
    let addr = server.addr();
    let id = publish(addr, "kept", "x")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let topics = json(&fetch(addr, "GET", "/topics", &[], b"").1);
    assert_eq!(
        topics,
        serde_json::json!([{"topic": "kept", "subscribers": 0, "retained": 1, "last_id": id}])
    );
}

#[test]
fn metrics_move() {
    let server = start(|c| {
        c.max_streams = Some(3);
        c.heartbeat = Duration::from_millis(20);
    });
    let addr = server.addr();
    let metric = |name: &str| -> u64 {
        let text = fetch(addr, "GET", "/metrics", &[], b"").1;
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    let (head, text) = fetch(addr, "GET", "/metrics", &[], b"");
    assert_eq!(
        head.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(text.contains("# TYPE ssed_streams_open gauge\n"), "{text}");
    let mut a = Conn::open_stream(addr, "/events/m");
    let mut b = Conn::open_stream(addr, "/events/m");
    assert_eq!(metric("ssed_streams_open{kind=\"hub\"} "), 2);
    let first = publish(addr, "m", "1")["id"].as_str().unwrap().to_string();
    publish(addr, "m", "2");
    a.events(2);
    b.events(2);
    assert_eq!(metric("ssed_events_published_total{topic=\"m\"}"), 2);
    assert!(
        text.contains("# TYPE ssed_events_watermark gauge\n"),
        "{text}"
    );
    assert_eq!(metric("ssed_events_watermark "), 2);
    assert_eq!(metric("ssed_subscribers{topic=\"m\"}"), 2);
    wait_until(SOON, "4 deliveries counted", || {
        metric("ssed_events_delivered_total ") == 4
    });
    let mut c = subscribe(addr, "/events/m", &[("Last-Event-ID", &first)]);
    c.events(1);
    assert_eq!(metric("ssed_events_replayed_total "), 1);
    assert_eq!(fetch(addr, "GET", "/sse", &[], b"").0.status, 503);
    assert_eq!(metric("ssed_streams_refused_total{kind=\"hub\"} "), 1);
    drop(c);
    wait_until(SOON, "the dropped stream to close", || {
        server.open_streams() == 2
    });
    let mut d = subscribe(addr, "/events/m", &[("Last-Event-ID", "elsewhere-1")]);
    assert_eq!(d.events(1)[0].event, "gap");
    assert_eq!(metric("ssed_gaps_total "), 1);
}

#[test]
fn last_gives_a_new_client_the_newest_events_and_an_id_still_wins() {
    let server = start(|_| {});
    let addr = server.addr();
    let ids: Vec<String> = ["a1", "b1", "a2", "b2", "a3"]
        .iter()
        .map(|d| {
            let topic = &d[..1];
            publish(addr, topic, d)["id"].as_str().unwrap().to_string()
        })
        .collect();
    // The newest two of one topic, then live.
    let mut sub = subscribe(addr, "/events/a?last=2", &[]);
    assert_eq!(data(&sub.events(2)), ["a2", "a3"]);
    publish(addr, "a", "a4");
    assert_eq!(data(&sub.events(1)), ["a4"]);
    // The newest three across topics, in the order published.
    let mut sub = subscribe(addr, "/events?topic=a&topic=b&last=3", &[]);
    assert_eq!(data(&sub.events(3)), ["b2", "a3", "a4"]);
    // More than there is: all of it, and no gap.
    let mut sub = subscribe(addr, "/events/b?last=1000", &[]);
    assert_eq!(data(&sub.events(2)), ["b1", "b2"]);
    // A reconnecting browser sends Last-Event-ID: it wins over ?last.
    let mut sub = subscribe(addr, "/events/a?last=1", &[("Last-Event-ID", &ids[0])]);
    assert_eq!(data(&sub.events(3)), ["a2", "a3", "a4"]);
    // ?since= is ?last_event_id= by another name.
    let mut sub = subscribe(addr, &format!("/events/a?since={}", ids[2]), &[]);
    assert_eq!(data(&sub.events(2)), ["a3", "a4"]);
    let (head, body) = fetch(addr, "GET", "/events/a?last=x", &[], b"");
    assert_eq!(head.status, 400);
    assert_eq!(
        json(&body),
        serde_json::json!({"error": "last must be a whole number from 0 to 1000000, not \"x\""})
    );
}

#[test]
fn event_names_are_counted_in_characters() {
    let server = start(|_| {});
    let addr = server.addr();
    // 128 two-byte characters (256 bytes) pass; 129 do not.
    let name = |n: usize| "%C3%A9".repeat(n);
    let (head, body) = fetch(
        addr,
        "POST",
        &format!("/events/t?event={}", name(128)),
        &[],
        b"x",
    );
    assert_eq!(head.status, 200, "{body}");
    let (head, body) = fetch(
        addr,
        "POST",
        &format!("/events/t?event={}", name(129)),
        &[],
        b"x",
    );
    assert_eq!(head.status, 400);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .starts_with("event names are 1 to 128 characters"),
        "{body}"
    );
}

#[test]
fn tag_topic_names_each_event_s_topic_and_ndjson_always_does() {
    let server = start(|_| {});
    let addr = server.addr();
    let mut tagged = subscribe(addr, "/events?topic=a&topic=b&tag=topic", &[]);
    let mut plain = subscribe(addr, "/events?topic=a&topic=b", &[]);
    let mut ndjson = Conn::get(addr, "/events?topic=a&topic=b&format=ndjson");
    assert_eq!(ndjson.head().status, 200);
    let mut text = Conn::get(addr, "/events?topic=a&topic=b&format=text&tag=topic");
    assert_eq!(text.head().status, 200);
    let a = publish(addr, "a", "one")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (head, reply) = fetch(addr, "POST", "/events/b?event=alert", &[], b"two\nlines");
    assert_eq!(head.status, 200);
    let b = json(&reply)["id"].as_str().unwrap().to_string();
    // The bytes of both events, however they were batched into chunks.
    let read = |c: &mut Conn, want: String| {
        let mut got = String::new();
        while got.len() < want.len() {
            got.push_str(&c.chunk_str().unwrap());
        }
        assert_eq!(got, want);
    };
    read(
        &mut tagged,
        format!(
            "data: {{\"topic\":\"a\",\"data\":\"one\"}}\nid: {a}\n\n\
             event: alert\ndata: {{\"topic\":\"b\",\"data\":\"two\\nlines\"}}\nid: {b}\n\n"
        ),
    );
    // Without the tag, the data is as published.
    read(
        &mut plain,
        format!("data: one\nid: {a}\n\nevent: alert\ndata: two\ndata: lines\nid: {b}\n\n"),
    );
    read(
        &mut ndjson,
        format!(
            "{{\"id\":\"{a}\",\"event\":\"message\",\"data\":\"one\",\"topic\":\"a\"}}\n\
             {{\"id\":\"{b}\",\"event\":\"alert\",\"data\":\"two\\nlines\",\"topic\":\"b\"}}\n"
        ),
    );
    read(
        &mut text,
        "{\"topic\":\"a\",\"data\":\"one\"}\n{\"topic\":\"b\",\"data\":\"two\\nlines\"}\n".into(),
    );
    for (target, why) in [
        ("/events/a?tag=name", "tag must be topic, not \"name\""),
        (
            "/stream-time?tag=topic",
            "tag=topic is for hub streams (/events, /sse)",
        ),
    ] {
        let (head, body) = fetch(addr, "GET", target, &[], b"");
        assert_eq!(head.status, 400, "{target}");
        assert_eq!(json(&body)["error"], why, "{target}");
    }
}

#[test]
fn a_key_is_tied_to_its_publish() {
    let server = start(|_| {});
    common::keys_are_tied_to_their_publish(server.addr(), server.addr());
}

#[test]
fn a_publish_retried_with_its_idempotency_key_is_stored_once() {
    let server = start(|_| {});
    let addr = server.addr();
    let mut sub = Conn::open_stream(addr, "/events/idem");
    let post = |key: &str, body: &[u8]| {
        let (head, reply) = fetch(
            addr,
            "POST",
            "/events/idem",
            &[("Idempotency-Key", key)],
            body,
        );
        (head.status, reply)
    };
    let (status, first) = post("k-1", b"once");
    assert_eq!(status, 200, "{first}");
    // The retry is answered as the first time; nothing is published.
    assert_eq!(post("k-1", b"once"), (200, first.clone()));
    let (status, other) = post("k-2", b"twice");
    assert_eq!(status, 200);
    assert_ne!(json(&other)["id"], json(&first)["id"]);
    let got = sub.events(2);
    assert_eq!(
        got.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
        ["once", "twice"]
    );
    assert_eq!(got[0].id, json(&first)["id"].as_str().unwrap());
    // A key that cannot be one is refused.
    let (status, why) = post("a b", b"x");
    assert_eq!(status, 400);
    assert_eq!(
        json(&why)["error"],
        "Idempotency-Key is 1 to 128 printable ASCII characters without spaces"
    );
}

/// `(topic, data)` of NDJSON lines as a stream sends them.
fn ndjson_lines(conn: &mut Conn, n: usize) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    while out.len() < n {
        let chunk = conn.chunk_str().expect("the stream goes on");
        buf.push_str(&chunk);
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            if line.trim().is_empty() {
                continue;
            }
            let v = json(line.trim());
            out.push((
                v["topic"].as_str().unwrap_or("").to_string(),
                v["data"].as_str().unwrap_or("").to_string(),
                v["id"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

#[test]
fn pattern_streams_take_every_matching_topic_also_those_made_later() {
    let server = start(|_| {});
    let addr = server.addr();
    let post = |topic: &str, data: &str| {
        let (head, body) = fetch(
            addr,
            "POST",
            &format!("/events/{topic}"),
            &[],
            data.as_bytes(),
        );
        assert_eq!(head.status, 200, "{body}");
        json(&body)["id"].as_str().unwrap().to_string()
    };
    post("sensors/kitchen", "before");
    let mut one = Conn::send(addr, "GET", "/events/sensors/*?format=ndjson", &[], b"");
    assert_eq!(one.head().status, 200);
    let mut deep = Conn::open_stream(addr, "/events?topic=sensors/**&topic=news&tag=topic");
    // Topics that exist, topics made after the streams opened, a named one
    // beside a pattern; none that does not match.
    post("sensors/kitchen", "21.5");
    post("sensors/garage", "9.0");
    post("sensors/garage/door", "open");
    post("sensorsx", "no");
    post("weather/sensors", "no");
    post("news", "extra");
    let got = ndjson_lines(&mut one, 2);
    assert_eq!(
        got.iter()
            .map(|(t, d, _)| (t.as_str(), d.as_str()))
            .collect::<Vec<_>>(),
        [("sensors/kitchen", "21.5"), ("sensors/garage", "9.0")]
    );
    let got: Vec<String> = deep.events(4).into_iter().map(|m| m.data).collect();
    assert_eq!(
        got,
        [
            r#"{"topic":"sensors/kitchen","data":"21.5"}"#,
            r#"{"topic":"sensors/garage","data":"9.0"}"#,
            r#"{"topic":"sensors/garage/door","data":"open"}"#,
            r#"{"topic":"news","data":"extra"}"#,
        ]
    );
    // Resuming a pattern from an id: exactly what came after it, across
    // every matching topic, also one made while the client was away.
    let kitchen = post("sensors/kitchen", "22.0");
    post("sensors/attic", "away 1");
    post("other", "no");
    post("sensors/kitchen", "away 2");
    let mut back = Conn::send(
        addr,
        "GET",
        "/events/sensors/*",
        &[("Last-Event-ID", &kitchen)],
        b"",
    );
    assert_eq!(back.head().status, 200);
    let got: Vec<String> = back.events(2).into_iter().map(|m| m.data).collect();
    assert_eq!(got, ["away 1", "away 2"]);
    // Bad patterns are 400 with the rule.
    for (target, why) in [
        (
            "/events/a/**/b",
            "** is only the last segment of a pattern, not \"a/**/b\"",
        ),
        (
            "/events?topic=a*",
            "* stands for a whole segment (a/*/c), not part of one, not \"a*\"",
        ),
    ] {
        let (head, body) = fetch(addr, "GET", target, &[], b"");
        assert_eq!(
            (head.status, json(&body)["error"].as_str()),
            (400, Some(why)),
            "{target}"
        );
    }
}

#[test]
fn a_pattern_stream_lets_its_topics_go_when_it_ends() {
    // A short keep-alive finds the ended stream soon.
    let server = start(|c| c.heartbeat = Duration::from_millis(50));
    let addr = server.addr();
    let topics = || -> Vec<(String, u64)> {
        json(&fetch(addr, "GET", "/topics", &[], b"").1)
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["topic"].as_str().unwrap().to_string(),
                    t["subscribers"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let mut sub = Conn::open_stream(addr, "/events/jobs/*");
    // Subscribing by pattern makes no topic.
    assert_eq!(topics(), []);
    assert_eq!(
        fetch(addr, "POST", "/events/jobs/1", &[], b"started")
            .0
            .status,
        200
    );
    assert_eq!(sub.events(1)[0].data, "started");
    assert_eq!(topics(), [("jobs/1".to_string(), 1)]);
    drop(sub);
    // Its end lets go of what its pattern brought, and its watch with it:
    // a topic made afterwards has no subscriber.
    wait_until(Duration::from_secs(10), "the subscription let go", || {
        topics() == [("jobs/1".to_string(), 0)]
    });
    assert_eq!(
        fetch(addr, "POST", "/events/jobs/2", &[], b"later")
            .0
            .status,
        200
    );
    assert_eq!(
        topics(),
        [("jobs/1".to_string(), 0), ("jobs/2".to_string(), 0)]
    );
}

#[test]
fn a_deleted_topic_ends_its_streams_loses_its_history_and_starts_afresh() {
    let server = start(|c| c.heartbeat = Duration::from_millis(50));
    let addr = server.addr();
    for data in ["one", "two"] {
        assert_eq!(
            fetch(addr, "POST", "/events/news", &[], data.as_bytes())
                .0
                .status,
            200
        );
    }
    let mut only = Conn::open_stream(addr, "/events/news");
    let mut both = Conn::open_stream(addr, "/events?topic=news&topic=other");
    let mut pattern = Conn::open_stream(addr, "/events/*");
    let (head, body) = fetch(addr, "DELETE", "/events/news", &[], b"");
    assert_eq!(head.status, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"topic": "news", "deleted": true})
    );
    // A stream of the topic alone: a last event, and its end.
    let last = only.events_to_end();
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(
        (last[0].event.as_str(), last[0].data.as_str()),
        ("deleted", r#"{"topic":"news"}"#)
    );
    assert_eq!(last[0].id, "", "no id of its own");
    // Streams of other topics too, or of a pattern: told, and going on.
    for conn in [&mut both, &mut pattern] {
        let got = conn.events(1);
        assert_eq!(got[0].event, "deleted");
    }
    assert_eq!(
        fetch(addr, "POST", "/events/other", &[], b"three").0.status,
        200
    );
    assert_eq!(both.events(1)[0].data, "three");
    assert_eq!(pattern.events(1)[0].data, "three");
    // Gone from /topics; deleting it again is 404.
    let listed = json(&fetch(addr, "GET", "/topics", &[], b"").1);
    assert!(!listed.to_string().contains("\"news\""), "{listed}");
    let (head, body) = fetch(addr, "DELETE", "/events/news", &[], b"");
    assert_eq!(
        (head.status, json(&body)["error"].as_str()),
        (404, Some("no topic \"news\""))
    );
    // Its history is gone; a publish starts it afresh.
    assert_eq!(
        fetch(addr, "POST", "/events/news", &[], b"anew").0.status,
        200
    );
    let mut fresh = Conn::open_stream(addr, "/events/news?last=10");
    assert_eq!(fresh.events(1)[0].data, "anew");
    // `deleted` is ssed's: a publish may not use the name.
    let (head, _) = fetch(addr, "POST", "/events/news?event=deleted", &[], b"x");
    assert_eq!(head.status, 400);
}

#[test]
fn deleting_needs_the_right_to_publish() {
    let server = start(|c| c.publish_token = Some("p".into()));
    let addr = server.addr();
    let auth = [("Authorization", "Bearer p")];
    assert_eq!(fetch(addr, "POST", "/events/t", &auth, b"x").0.status, 200);
    assert_eq!(fetch(addr, "DELETE", "/events/t", &[], b"").0.status, 401);
    assert_eq!(
        fetch(addr, "DELETE", "/events/t?token=p", &[], b"")
            .0
            .status,
        401
    );
    assert_eq!(fetch(addr, "DELETE", "/events/t", &auth, b"").0.status, 200);
    assert_eq!(
        fetch(addr, "DELETE", "/events/a%20b", &auth, b"").0.status,
        400
    );
}

#[test]
fn history_ttl_drops_old_events_says_so_on_resume_and_forgets_unread_topics() {
    let server = start(|c| {
        c.history_ttl = Some(Duration::from_millis(200));
        c.max_topics = 3;
    });
    let addr = server.addr();
    let post = |topic: &str, data: &str| -> (u16, String) {
        let (head, body) = fetch(
            addr,
            "POST",
            &format!("/events/{topic}"),
            &[],
            data.as_bytes(),
        );
        let id = if head.status == 200 {
            json(&body)["id"].as_str().unwrap().to_string()
        } else {
            body
        };
        (head.status, id)
    };
    let topics = || -> Vec<String> {
        json(&fetch(addr, "GET", "/topics", &[], b"").1)
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["topic"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, first) = post("news", "old one");
    post("news", "old two");
    post("a", "x");
    post("b", "x");
    // Three topics: a fourth is refused...
    assert_eq!(post("c", "x").0, 429);
    // ...until the unread ones have aged out and are forgotten.
    wait_until(Duration::from_secs(10), "the topics forgotten", || {
        topics().is_empty()
    });
    assert_eq!(post("c", "x").0, 200);
    // A resume from before: a gap for what aged out, then what is new.
    let (_, new) = post("news", "new");
    let mut back = Conn::send(
        addr,
        "GET",
        "/events/news",
        &[("Last-Event-ID", &first)],
        b"",
    );
    assert_eq!(back.head().status, 200);
    let got = back.events(2);
    assert_eq!(got[0].event, "gap", "{got:?}");
    assert_eq!(
        (got[1].data.as_str(), got[1].id.as_str()),
        ("new", new.as_str())
    );
    // Context for a new client: only what is young enough.
    let mut fresh = Conn::open_stream(addr, "/events/news?last=10");
    assert_eq!(fresh.events(1)[0].data, "new");
}

#[test]
fn many_short_lived_topics_leave_nothing_behind() {
    let server = start(|c| {
        c.history_ttl = Some(Duration::from_millis(100));
        c.max_topics = 100_000;
    });
    let addr = server.addr();
    // Published to once each, on one kept connection, and never read.
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_nodelay(true).unwrap();
    use std::io::{BufRead, BufReader, Write};
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    for i in 0..5000 {
        // One write a request: no small segment waits for an ACK.
        let req =
            format!("POST /events/job/{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\ndone");
        conn.write_all(req.as_bytes()).unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        std::io::Read::read_exact(&mut reader, &mut body).unwrap();
    }
    let metric = |name: &str| -> u64 {
        let text = fetch(addr, "GET", "/metrics", &[], b"").1;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(u64::MAX)
    };
    wait_until(Duration::from_secs(10), "every topic gone", || {
        metric("ssed_topics") == 0 && metric("ssed_history_bytes") == 0
    });
}

/// The `retry:` a stream sent before its end, read to the end.
fn last_retry(sub: &mut Conn) -> u64 {
    let rest = String::from_utf8_lossy(&sub.read_to_end()).to_string();
    rest.split("retry: ")
        .nth(1)
        .and_then(|r| r.split('\n').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no retry: in {rest:?}"))
}

#[test]
fn at_shutdown_each_stream_is_told_a_retry_of_its_own() {
    let server = start(|_| {});
    let addr = server.addr();
    let mut subs: Vec<Conn> = (0..20)
        .map(|_| Conn::open_stream(addr, "/events/t"))
        .collect();
    server.shutdown();
    let mut retries = std::collections::HashSet::new();
    for sub in &mut subs {
        let retry = last_retry(sub);
        // Between the stream's own (2 s) and five times it.
        assert!((2000..=10_000).contains(&retry), "{retry}");
        retries.insert(retry);
    }
    // Spread: browsers come back at different moments.
    assert!(retries.len() > 10, "{retries:?}");
}

#[test]
fn mistakes_in_a_body_are_said_not_published() {
    let server = start(|_| {});
    let addr = server.addr();
    // curl -d '{"data": "x"' (cut short): not published as text.
    let (head, body) = fetch(
        addr,
        "POST",
        "/events/t",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        br#"{"data": "x""#,
    );
    assert_eq!(head.status, 400, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .starts_with("body looks like a JSON object but is not valid JSON"),
        "{body}"
    );
    // As text/plain, it is the data as it is.
    let (head, _) = fetch(
        addr,
        "POST",
        "/events/t",
        &[("Content-Type", "text/plain")],
        br#"{"data": "x""#,
    );
    assert_eq!(head.status, 200);
    // /messages: a mistyped field is refused, an empty object keeps the
    // tutorial's answer.
    let (head, body) = fetch(addr, "POST", "/messages", &[], br#"{"msg": "x"}"#);
    assert_eq!(head.status, 400, "{body}");
    assert_eq!(
        json(&body)["error"],
        r#"no field "message" in the JSON body (it has "msg"), such as {"message": "hello"}"#
    );
    let (head, body) = fetch(addr, "POST", "/messages", &[], b"{}");
    assert_eq!(
        (head.status, json(&body)["message"].as_str()),
        (200, Some("No message provided"))
    );
}

#[test]
fn stop_spread_sets_the_window_and_zero_turns_it_off() {
    for (spread, low, high) in [
        (Duration::ZERO, 2000, 2000),
        (Duration::from_secs(3), 2000, 3000),
    ] {
        let server = start(|c| c.stop_spread = spread);
        let mut sub = Conn::open_stream(server.addr(), "/events/t");
        server.shutdown();
        let retry = last_retry(&mut sub);
        assert!((low..=high).contains(&retry), "{spread:?}: {retry}");
    }
}
