//! The server over real sockets: every route's wire format, limits and the
//! release of streams.

mod common;

use common::{fetch, json, start, wait_until, Conn};
use ssed::sse::Item;
use std::collections::HashSet;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(10);

fn is_clock(data: &str) -> bool {
    let Some(t) = data.strip_prefix("The time is ") else {
        return false;
    };
    let b = t.as_bytes();
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && t.split(':')
            .all(|p| p.len() == 2 && p.parse::<u8>().is_ok())
}

#[test]
fn stream_time_wire_format() {
    let server = start(|_| {});
    let mut c = Conn::get(server.addr(), "/stream-time?interval_ms=20");
    let head = c.head();
    // Every line but the date, which changes.
    let (before, after) = head.raw.split_once("Date: ").unwrap();
    let after = after.split_once("\r\n").unwrap().1;
    assert_eq!(before, "HTTP/1.1 200 OK\r\nServer: ssed/0.1.0\r\n");
    assert_eq!(
        after,
        "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
         X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    // The first bytes come at once, then one event per chunk.
    assert_eq!(c.chunk_str().unwrap(), "retry: 2000\n");
    let first = c.chunk_str().unwrap();
    assert!(
        first.starts_with("data: The time is ") && first.ends_with("\n\n") && first.len() == 28,
        "{first:?}"
    );
    for ev in c.events(3) {
        assert_eq!(ev.event, "message");
        assert!(is_clock(&ev.data), "{:?}", ev.data);
    }
}

#[test]
fn bad_parameters_are_refused_with_a_reason() {
    // Every rule is a row of routes' tables; this is the answer on the wire.
    let server = start(|_| {});
    let (head, body) = fetch(
        server.addr(),
        "GET",
        "/stream-time?interval_ms=abc",
        &[],
        b"",
    );
    assert_eq!(head.status, 400);
    assert_eq!(head.header("Content-Type"), Some("application/json"));
    assert_eq!(
        body,
        "{\"error\":\"interval_ms must be a whole number from 10 to 60000, not \\\"abc\\\"\"}\n"
    );
}

#[test]
fn system_stats_are_json_like_the_seed() {
    let server = start(|_| {});
    let mut c = Conn::open_stream(server.addr(), "/system-stats");
    for ev in c.events(2) {
        assert_eq!(ev.event, "message");
        // json.dumps spacing, keys in the seed's order.
        assert!(ev.data.starts_with("{\"cpu_percent\": "), "{}", ev.data);
        let v = json(&ev.data);
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "cpu_percent",
                "memory_percent",
                "memory_used_mb",
                "memory_total_mb"
            ]
        );
        let total = v["memory_total_mb"].as_f64().unwrap();
        assert!(total > 0.0);
        assert!((0.0..=total).contains(&v["memory_used_mb"].as_f64().unwrap()));
        assert!((0.0..=100.0).contains(&v["memory_percent"].as_f64().unwrap()));
        assert!((0.0..=100.0).contains(&v["cpu_percent"].as_f64().unwrap()));
    }
}

#[test]
fn system_stats_keep_their_history_for_new_viewers() {
    // 200 ms apart, 1 s kept: five samples at most.
    let server = start(|c| c.pace.stats_history = Duration::from_secs(1));
    let addr = server.addr();
    // Nobody watches, yet samples are taken: a first viewer asking for the
    // last ten gets every one kept, at once, in its first chunk.
    let mut kept = 0;
    wait_until(SOON, "five samples kept", || {
        let mut c = Conn::open_stream(addr, "/system-stats?last=10");
        let mut items = Vec::new();
        ssed::sse::Decoder::new()
            .feed(&c.chunk().unwrap(), &mut items)
            .unwrap();
        kept = items.len();
        kept >= 5
    });
    // One more sample is taken: still five kept, the oldest let go.
    let mut live = Conn::open_stream(addr, "/system-stats?last=0");
    live.events(1);
    let mut c = Conn::open_stream(addr, "/system-stats?last=10");
    let mut items = Vec::new();
    ssed::sse::Decoder::new()
        .feed(&c.chunk().unwrap(), &mut items)
        .unwrap();
    assert_eq!(items.len(), 5, "not what --stats-history holds");
    // Without ?last, the latest alone, as the seed's stream starts.
    let mut c = Conn::open_stream(addr, "/system-stats");
    let mut items = Vec::new();
    ssed::sse::Decoder::new()
        .feed(&c.chunk().unwrap(), &mut items)
        .unwrap();
    assert_eq!(items.len(), 1);
    let (head, body) = fetch(addr, "GET", "/system-stats?last=3601", &[], b"");
    assert_eq!(head.status, 400);
    assert_eq!(
        json(&body)["error"],
        "last must be a whole number from 0 to 3600, not \"3601\""
    );
}

#[test]
fn many_stats_viewers_share_one_sampler() {
    let server = start(|c| c.pace.stats = Duration::from_millis(300));
    let mut viewers: Vec<_> = (0..5)
        .map(|_| Conn::open_stream(server.addr(), "/system-stats"))
        .collect();
    // One sampling, published once: the last viewer's samples are the very
    // events the first viewer receives.
    let latest: Vec<_> = viewers[4].events(2).into_iter().map(|e| e.data).collect();
    let mut first_saw = Vec::new();
    while !latest.iter().all(|d| first_saw.contains(d)) {
        assert!(
            first_saw.len() < 20,
            "viewer 0 never saw {latest:?}: {first_saw:?}"
        );
        first_saw.push(viewers[0].events(1).remove(0).data);
    }
}

#[test]
fn training_runs_to_completion_exactly() {
    let server = start(|_| {});
    let mut c = Conn::get(server.addr(), "/stream-training?epochs=2&steps=3&step_ms=0");
    assert_eq!(c.head().status, 200);
    let events = c.events_to_end();
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.event.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "progress",
                r#"{"epoch": 1, "total_epochs": 2, "progress_percent": 33.33, "loss": 0.7667}"#
            ),
            (
                "progress",
                r#"{"epoch": 1, "total_epochs": 2, "progress_percent": 66.67, "loss": 0.4333}"#
            ),
            (
                "progress",
                r#"{"epoch": 1, "total_epochs": 2, "progress_percent": 100.0, "loss": 0.1}"#
            ),
            (
                "progress",
                r#"{"epoch": 2, "total_epochs": 2, "progress_percent": 33.33, "loss": 0.4333}"#
            ),
            (
                "progress",
                r#"{"epoch": 2, "total_epochs": 2, "progress_percent": 66.67, "loss": 0.2667}"#
            ),
            (
                "progress",
                r#"{"epoch": 2, "total_epochs": 2, "progress_percent": 100.0, "loss": 0.1}"#
            ),
            ("complete", "Training complete!"),
        ]
    );
    // The stream ended properly, so the connection serves the next request.
    wait_until(SOON, "the training stream to close", || {
        server.open_streams() == 0
    });
}

#[test]
fn training_stops_when_the_client_leaves() {
    let server = start(|c| c.heartbeat = Duration::from_millis(20));
    let mut c = Conn::get(server.addr(), "/stream-training?step_ms=10");
    assert_eq!(c.head().status, 200);
    c.events(2);
    assert_eq!(server.open_streams(), 1);
    drop(c);
    wait_until(SOON, "the training task to stop", || {
        server.open_streams() == 0
    });
}

#[test]
fn stocks_are_named_events_from_one_market() {
    let server = start(|_| {});
    let mut a = Conn::open_stream(server.addr(), "/stream-stocks");
    let first = a.events(5);
    let mut b = Conn::open_stream(server.addr(), "/stream-stocks");
    // A new viewer gets each symbol's latest quote at once: one a market's
    // tick that a saw, or the opening price if it has not moved yet.
    let snapshot: Vec<_> = b.events(3).into_iter().map(|e| (e.event, e.data)).collect();
    let a_later: Vec<_> = a
        .events(40)
        .into_iter()
        .map(|e| (e.event, e.data))
        .collect();
    let b_seen: Vec<_> = b
        .events(10)
        .into_iter()
        .map(|e| (e.event, e.data))
        .collect();
    let snapshot_symbols: HashSet<_> = snapshot.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(snapshot_symbols, ["AAPL", "GOOGL", "MSFT"].into());
    let opening = |symbol: &str, price: &str| {
        (
            symbol.to_string(),
            format!("{{\"symbol\": \"{symbol}\", \"price\": {price}, \"change\": 0.0}}"),
        )
    };
    let seen_by_a: Vec<_> = first
        .iter()
        .map(|e| (e.event.clone(), e.data.clone()))
        .chain(a_later.iter().cloned())
        .chain([
            opening("AAPL", "150.0"),
            opening("GOOGL", "2800.0"),
            opening("MSFT", "300.0"),
        ])
        .collect();
    for quote in &snapshot {
        assert!(seen_by_a.contains(quote), "{quote:?} not in {seen_by_a:?}");
    }
    // b's ticks are a run of a's: the same market, the same prices.
    assert!(
        a_later
            .windows(b_seen.len())
            .any(|w| w == b_seen.as_slice()),
        "a: {a_later:?}\nb: {b_seen:?}"
    );
    let symbols: HashSet<_> = ["AAPL", "GOOGL", "MSFT"].into();
    for ev in first
        .iter()
        .map(|e| (&e.event, &e.data))
        .chain(a_later.iter().map(|(e, d)| (e, d)))
    {
        assert!(symbols.contains(ev.0.as_str()), "{ev:?}");
        assert!(
            ev.1.starts_with(&format!("{{\"symbol\": \"{}\", \"price\": ", ev.0)),
            "{ev:?}"
        );
        let v = json(ev.1);
        assert!(v["price"].as_f64().unwrap() >= 0.0);
        assert!(v["change"].as_f64().unwrap().abs() <= 0.5);
    }
}

#[test]
fn event_stream_sends_custom_events() {
    let server = start(|_| {});
    let mut c = Conn::open_stream(server.addr(), "/event_stream?interval_ms=10");
    let events = c.events(9);
    let kinds: Vec<_> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "message",
            "message",
            "message",
            "message",
            "custom_event",
            "message",
            "message",
            "message",
            "custom_event"
        ]
    );
    assert_eq!(events[4].data, "This is a custom event 1");
    assert_eq!(events[8].data, "This is a custom event 2");
    for (i, ev) in events.iter().filter(|e| e.event == "message").enumerate() {
        assert!(ev.data.starts_with("Server time: "), "{}", ev.data);
        assert!(ev.data.ends_with(&format!(" (message {i})")), "{}", ev.data);
    }
}

#[test]
fn stream_json_is_ndjson() {
    let server = start(|_| {});
    let (head, body) = fetch(
        server.addr(),
        "GET",
        "/stream-json?count=3&interval_ms=0",
        &[],
        b"",
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Type"), Some("application/x-ndjson"));
    assert_eq!(
        body,
        "{\"event_id\": 0, \"data\": \"some data\", \"is_last_event\": false}\n\
         {\"event_id\": 1, \"data\": \"some data\", \"is_last_event\": false}\n\
         {\"event_id\": 2, \"data\": \"some data\", \"is_last_event\": true}\n"
    );
    // An EventSource gets the same objects as SSE events.
    let mut c = Conn::send(
        server.addr(),
        "GET",
        "/stream-json?count=2&interval_ms=0",
        &[("Accept", "text/event-stream")],
        b"",
    );
    assert_eq!(c.head().header("Content-Type"), Some("text/event-stream"));
    let data: Vec<_> = c.events_to_end().into_iter().map(|e| e.data).collect();
    assert_eq!(data.len(), 2);
    assert_eq!(json(&data[1])["is_last_event"], true);
}

#[test]
fn stream_text_is_plain_text_line_by_line() {
    let server = start(|_| {});
    let addr = server.addr();
    // Exact bytes: one chunk per line, then the last chunk.
    let mut c = Conn::get(addr, "/stream-text?count=3&interval_ms=0");
    let head = c.head();
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(head.header("Transfer-Encoding"), Some("chunked"));
    let mut chunks = Vec::new();
    while let Some(chunk) = c.chunk_str() {
        chunks.push(chunk);
    }
    assert_eq!(chunks, ["some data 0\n", "some data 1\n", "some data 2\n"]);
    // The same lines as SSE events, for an EventSource.
    let mut c = Conn::send(
        addr,
        "GET",
        "/stream-text?count=2&interval_ms=0",
        &[("Accept", "text/event-stream")],
        b"",
    );
    assert_eq!(c.head().header("Content-Type"), Some("text/event-stream"));
    let data: Vec<_> = c.events_to_end().into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["some data 0", "some data 1"]);
    let (head, body) = fetch(addr, "GET", "/stream-text?count=0", &[], b"");
    assert_eq!(head.status, 400);
    assert_eq!(
        json(&body)["error"],
        "count must be a whole number from 1 to 10000, not \"0\""
    );
}

#[test]
fn any_stream_as_text_is_each_event_s_data_and_a_line_break() {
    let server = start(|c| c.heartbeat = Duration::from_millis(20));
    let addr = server.addr();
    let (head, body) = fetch(
        addr,
        "GET",
        "/stream-json?count=2&interval_ms=0&format=text",
        &[],
        b"",
    );
    assert_eq!(
        head.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        body,
        "{\"event_id\": 0, \"data\": \"some data\", \"is_last_event\": false}\n\
         {\"event_id\": 1, \"data\": \"some data\", \"is_last_event\": true}\n"
    );
    let (_, body) = fetch(
        addr,
        "GET",
        "/stream-training?epochs=1&steps=1&step_ms=0&format=text",
        &[],
        b"",
    );
    assert!(body.ends_with("}\nTraining complete!\n"), "{body}");
    // A hub topic as text: data as it is (line breaks kept), and an idle
    // stream gets empty lines.
    let mut c = Conn::get(addr, "/events/notes?format=text");
    assert_eq!(c.head().status, 200);
    let (head, _) = fetch(addr, "POST", "/events/notes", &[], b"two\nlines");
    assert_eq!(head.status, 200);
    // (Keep-alives may come first: the stream was idle until the publish.)
    let first = std::iter::from_fn(|| c.chunk_str()).find(|chunk| chunk != "\n");
    assert_eq!(first.as_deref(), Some("two\nlines\n"));
    assert_eq!(c.chunk_str().as_deref(), Some("\n"));
}

#[test]
fn any_stream_as_ndjson() {
    let server = start(|_| {});
    for (target, accept) in [
        (
            "/stream-training?epochs=1&steps=2&step_ms=0&format=ndjson",
            "*/*",
        ),
        (
            "/stream-training?epochs=1&steps=2&step_ms=0",
            "application/x-ndjson",
        ),
    ] {
        let (head, body) = fetch(server.addr(), "GET", target, &[("Accept", accept)], b"");
        assert_eq!(
            head.header("Content-Type"),
            Some("application/x-ndjson"),
            "{target}"
        );
        let lines: Vec<_> = body.lines().map(json).collect();
        assert_eq!(lines.len(), 3, "{body}");
        assert_eq!(lines[0]["event"], "progress");
        assert_eq!(lines[0]["id"], serde_json::Value::Null);
        assert_eq!(
            json(lines[1]["data"].as_str().unwrap())["progress_percent"],
            100.0
        );
        assert_eq!(
            lines[2],
            // The last event's id says the run is finished (a reconnection
            // with it is answered 204).
            serde_json::json!({"id": "end", "event": "complete", "data": "Training complete!"})
        );
    }
}

#[test]
fn a_post_reaches_every_sse_client() {
    let server = start(|_| {});
    let mut clients: Vec<_> = (0..3)
        .map(|_| Conn::open_stream(server.addr(), "/sse"))
        .collect();
    let (head, body) = fetch(
        server.addr(),
        "POST",
        "/messages",
        &[("Content-Type", "application/json")],
        br#"{"message": "Hello Server"}"#,
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Type"), Some("application/json"));
    assert_eq!(
        body,
        "{\"status\":\"Received\",\"message\":\"Hello Server\"}\n"
    );
    let (_, body) = fetch(
        server.addr(),
        "POST",
        "/send_rest",
        &[],
        "{\"message\": \"caf\u{e9}\", \"x\": 1}".as_bytes(),
    );
    assert_eq!(
        body,
        "{\"status\":\"Received via REST\",\"message\":\"caf\u{e9}\"}\n"
    );
    let (_, body) = fetch(server.addr(), "POST", "/messages", &[], b"{}");
    assert_eq!(
        body,
        "{\"status\":\"Received\",\"message\":\"No message provided\"}\n"
    );
    for c in &mut clients {
        let data: Vec<_> = c.events(3).into_iter().map(|e| e.data).collect();
        assert_eq!(
            data,
            [
                r#"{"status": "Received", "message": "Hello Server"}"#,
                r#"{"status": "Received via REST", "message": "caf\u00e9"}"#,
                r#"{"status": "Received", "message": "No message provided"}"#,
            ]
        );
    }
}

#[test]
fn bad_publish_bodies() {
    let server = start(|_| {});
    let addr = server.addr();
    let cases: [(&[u8], u16, &str); 4] = [
        (
            b"not json",
            400,
            "body is not valid JSON: expected ident at line 1 column 2",
        ),
        (
            b"[1, 2]",
            400,
            r#"body must be a JSON object, such as {"message": "hello"}"#,
        ),
        (
            b"\"text\"",
            400,
            r#"body must be a JSON object, such as {"message": "hello"}"#,
        ),
        (
            b"",
            400,
            "body is not valid JSON: EOF while parsing a value at line 1 column 0",
        ),
    ];
    for (body, status, why) in cases {
        let (head, reply) = fetch(addr, "POST", "/messages", &[], body);
        assert_eq!(head.status, status, "{body:?}");
        assert_eq!(json(&reply)["error"], why);
    }
    // Over 64 KiB: refused by its Content-Length, before reading it...
    let big = format!("{{\"message\": \"{}\"}}", "x".repeat(70_000));
    let (head, reply) = fetch(addr, "POST", "/messages", &[], big.as_bytes());
    assert_eq!(head.status, 413);
    assert_eq!(
        json(&reply)["error"],
        "body is larger than 65536 bytes (--max-event-bytes)"
    );
    // ...and when the length is not announced, by reading no further.
    let mut raw = b"POST /send_rest HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        raw.extend_from_slice(format!("1000\r\n{}\r\n", "y".repeat(4096)).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let (head, _) = Conn::raw(addr, &raw).response();
    assert_eq!(head.status, 413);
    // A large but acceptable body is read off the dispatcher and published.
    let ok = format!("{{\"message\": \"{}\"}}", "z".repeat(5000));
    let (head, reply) = fetch(addr, "POST", "/messages", &[], ok.as_bytes());
    assert_eq!(head.status, 200);
    assert_eq!(json(&reply)["message"].as_str().unwrap().len(), 5000);
}

#[test]
fn keepalive_comments_on_idle_streams() {
    let server = start(|c| c.heartbeat = Duration::from_millis(30));
    let mut c = Conn::open_stream(server.addr(), "/sse");
    assert_eq!(c.chunk_str().as_deref(), Some(": keep-alive\n"));
    assert_eq!(c.items(1), [Item::Comment("keep-alive".into())]);
}

#[test]
fn every_parked_stream_gets_a_keepalive_after_each_silence() {
    let server = start(|c| c.heartbeat = Duration::from_millis(30));
    let mut streams: Vec<_> = (0..20)
        .map(|_| Conn::open_stream(server.addr(), "/events/quiet"))
        .collect();
    for round in 0..3 {
        for (i, c) in streams.iter_mut().enumerate() {
            assert_eq!(
                c.items(1),
                [Item::Comment("keep-alive".into())],
                "stream {i}, silence {round}"
            );
        }
    }
    // An event moves the next keep-alive a whole silence away, and it comes.
    let (head, _) = fetch(server.addr(), "POST", "/events/quiet", &[], b"news");
    assert_eq!(head.status, 200);
    for c in &mut streams {
        let mut items = c.items(1);
        while items == [Item::Comment("keep-alive".into())] {
            items = c.items(1);
        }
        assert!(
            matches!(&items[..], [Item::Event(e)] if e.data == "news"),
            "{items:?}"
        );
        assert_eq!(c.items(1), [Item::Comment("keep-alive".into())]);
    }
}

#[test]
fn streams_are_released_when_clients_vanish() {
    let server = start(|c| c.heartbeat = Duration::from_millis(20));
    let clients: Vec<_> = [
        "/sse",
        "/stream-stocks",
        "/system-stats",
        "/stream-time",
        "/event_stream",
        "/sse",
    ]
    .iter()
    .map(|t| Conn::open_stream(server.addr(), t))
    .collect();
    assert_eq!(server.open_streams(), 6);
    drop(clients);
    wait_until(SOON, "every stream thread to end", || {
        server.open_streams() == 0
    });
    // And the server still serves.
    Conn::open_stream(server.addr(), "/sse");
}

#[test]
fn the_stream_caps_answer_503() {
    let server = start(|c| {
        c.max_streams = Some(2);
        c.max_demo_streams = 1;
    });
    let addr = server.addr();
    let _a = Conn::open_stream(addr, "/sse");
    let _b = Conn::open_stream(addr, "/events/x");
    let (head, body) = fetch(addr, "GET", "/sse", &[], b"");
    assert_eq!(head.status, 503);
    assert!(
        common::retry_after_ok(head.header("Retry-After")),
        "{:?}",
        head.header("Retry-After")
    );
    // The refused client is asked to let its connection (and its thread) go.
    assert_eq!(head.header("Connection"), Some("close"));
    assert_eq!(
        json(&body)["error"],
        "all 2 streams are in use (--max-streams); try again later"
    );
    // Demos have a cap of their own: the hub's full does not stop them,
    // and theirs full does not stop the hub.
    let _c = Conn::open_stream(addr, "/stream-time");
    let (head, body) = fetch(addr, "GET", "/stream-stocks", &[], b"");
    assert_eq!(head.status, 503);
    assert_eq!(
        json(&body)["error"],
        "all 1 streams are in use (--max-demo-streams); try again later"
    );
    // Pages are not streams.
    assert_eq!(fetch(addr, "GET", "/", &[], b"").0.status, 200);
}

#[test]
fn http10_clients_get_an_unchunked_stream() {
    let server = start(|_| {});
    let mut c = Conn::raw(
        server.addr(),
        b"GET /stream-training?epochs=1&steps=1&step_ms=0 HTTP/1.0\r\n\r\n",
    );
    let head = c.head();
    // The server's own version, as RFC 9110 (6.2) asks, but 1.0 framing.
    assert_eq!(head.version, "HTTP/1.1");
    assert_eq!(head.header("Connection"), Some("close"));
    assert_eq!(head.header("Transfer-Encoding"), None);
    let body = String::from_utf8(c.read_to_end()).unwrap();
    assert_eq!(
        body,
        "retry: 2000\nevent: progress\ndata: {\"epoch\": 1, \"total_epochs\": 1, \"progress_percent\": 100.0, \"loss\": 0.1}\n\n\
         event: complete\ndata: Training complete!\nid: end\n\n"
    );
    // Its reconnection, with the last id: 204, the stream is finished.
    let (head, body) = fetch(
        server.addr(),
        "GET",
        "/stream-training?epochs=1&steps=1&step_ms=0",
        &[("Last-Event-ID", "end")],
        b"",
    );
    assert_eq!((head.status, body.as_str()), (204, ""));
    // Any other id (or none) starts a new run.
    let mut again = Conn::send(
        server.addr(),
        "GET",
        "/stream-training?epochs=1&steps=1&step_ms=0",
        &[("Last-Event-ID", "x")],
        b"",
    );
    assert_eq!(again.head().status, 200);
}

#[test]
fn pages_and_traversal() {
    let server = start(|_| {});
    let addr = server.addr();
    let (head, index) = fetch(addr, "GET", "/", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let pages = ssed::app::www::EMBEDDED
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| name.ends_with(".html") && *name != "index.html");
    for page in pages {
        assert!(
            index.contains(&format!("href=\"{page}\"")),
            "index does not link {page}"
        );
        let (head, body) = fetch(addr, "GET", &format!("/{page}"), &[], b"");
        assert_eq!(head.status, 200, "{page}");
        assert!(
            body.contains("<script src=\"ssed.js\">"),
            "{page} does not load ssed.js"
        );
    }
    assert_eq!(
        fetch(addr, "GET", "/style.css", &[], b"")
            .0
            .header("Content-Type"),
        Some("text/css; charset=utf-8")
    );
    for target in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E%2FCargo.toml",
        "//etc/passwd",
        "/..%2f..%2fetc/passwd",
        "/nope",
    ] {
        assert_eq!(
            fetch(addr, "GET", target, &[], b"").0.status,
            404,
            "{target}"
        );
    }
}

#[cfg(unix)]
#[test]
fn www_dir_does_not_follow_links_out() {
    let dir = std::env::temp_dir().join(format!("ssed-www-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("index.html"), "<p>mine</p>").unwrap();
    std::fs::write(dir.join("sub/a.js"), "x").unwrap();
    let _ = std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd"));
    let server = start(|c| c.www = Some(dir.clone()));
    let addr = server.addr();
    assert_eq!(fetch(addr, "GET", "/", &[], b"").1, "<p>mine</p>");
    // ssed.js (SsedSource) is there for one's own pages too.
    let (head, body) = fetch(addr, "GET", "/ssed.js", &[], b"");
    assert_eq!(head.status, 200);
    assert!(body.contains("class SsedSource"), "{}", head.raw);
    let (head, body) = fetch(addr, "GET", "/sub/a.js", &[], b"");
    assert_eq!(
        (head.header("Content-Type"), body.as_str()),
        (Some("text/javascript; charset=utf-8"), "x")
    );
    for target in [
        "/passwd",
        "/sub/../../etc/passwd",
        "/sub/%2e%2e/index.html",
        "/sub",
    ] {
        assert_eq!(
            fetch(addr, "GET", target, &[], b"").0.status,
            404,
            "{target}"
        );
    }
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unknown_routes_and_wrong_methods() {
    let server = start(|_| {});
    let addr = server.addr();
    let cases = [
        ("GET", "/nowhere", 404, None),
        ("POST", "/sse", 405, Some("GET, HEAD, OPTIONS")),
        ("GET", "/messages", 405, Some("POST, OPTIONS")),
        ("DELETE", "/send_rest", 405, Some("POST, OPTIONS")),
        ("PUT", "/index.html", 405, Some("GET, HEAD, OPTIONS")),
        ("POST", "/nowhere", 404, None),
    ];
    for (method, target, status, allow) in cases {
        let (head, body) = fetch(addr, method, target, &[], b"");
        assert_eq!(head.status, status, "{method} {target}");
        assert_eq!(head.header("Allow"), allow, "{method} {target}");
        assert!(json(&body)["error"].is_string());
    }
    let (head, body) = fetch(addr, "GET", "/healthz", &[], b"");
    assert_eq!((head.status, body.as_str()), (200, "ok\n"));
}

#[test]
fn cors_for_allowed_origins_only() {
    let server = start(|c| c.cors_origins = vec!["http://localhost:8080".into()]);
    let addr = server.addr();
    let mut c = Conn::send(
        addr,
        "GET",
        "/stream-time",
        &[("Origin", "http://localhost:8080")],
        b"",
    );
    let head = c.head();
    assert_eq!(
        head.header("Access-Control-Allow-Origin"),
        Some("http://localhost:8080")
    );
    assert_eq!(head.header("Vary"), Some("Origin"));
    let mut c = Conn::send(
        addr,
        "GET",
        "/stream-time",
        &[("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(c.head().header("Access-Control-Allow-Origin"), None);
    let (head, _) = fetch(
        addr,
        "POST",
        "/messages",
        &[("Origin", "http://localhost:8080")],
        b"{}",
    );
    assert_eq!(
        head.header("Access-Control-Allow-Origin"),
        Some("http://localhost:8080")
    );
    let (head, _) = fetch(
        addr,
        "OPTIONS",
        "/messages",
        &[
            ("Origin", "http://localhost:8080"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert_eq!(head.status, 204);
    assert_eq!(
        head.header("Access-Control-Allow-Origin"),
        Some("http://localhost:8080")
    );
    assert_eq!(
        head.header("Access-Control-Allow-Methods"),
        Some("GET, HEAD, POST, DELETE, OPTIONS")
    );
    assert_eq!(
        head.header("Access-Control-Allow-Headers"),
        Some("content-type")
    );
    let (head, body) = fetch(
        addr,
        "OPTIONS",
        "/messages",
        &[("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(head.status, 403);
    assert_eq!(
        json(&body)["error"],
        "origin http://evil.example is not allowed; see --cors-origin"
    );

    let any = start(|c| c.cors_origins = vec!["*".into()]);
    let mut c = Conn::send(
        any.addr(),
        "GET",
        "/sse",
        &[("Origin", "http://anything:1")],
        b"",
    );
    assert_eq!(c.head().header("Access-Control-Allow-Origin"), Some("*"));
}

#[test]
fn shutdown_ends_streams_with_the_last_chunk() {
    let server = start(|_| {});
    let mut c = Conn::open_stream(server.addr(), "/sse");
    let mut t = Conn::open_stream(server.addr(), "/stream-time?interval_ms=10");
    server.shutdown();
    // A hub stream: a retry: of its own, then the last chunk.
    let retry = c.chunk_str().expect("a retry before the end");
    assert!(retry.starts_with("retry: "), "{retry:?}");
    assert_eq!(c.chunk(), None);
    while t.chunk().is_some() {}
}

#[test]
fn a_client_that_stops_reading_is_dropped_while_others_go_on() {
    let server = start(|c| {
        c.write_timeout = Duration::from_millis(300);
        c.heartbeat = Duration::from_secs(60);
    });
    let addr = server.addr();
    let stuck = Conn::open_stream(addr, "/sse");
    let mut fast = Conn::open_stream(addr, "/sse");
    // Each message is about 60 KiB: a few fill the stuck client's socket
    // buffers, after which its writes block, then time out.
    let body = format!("{{\"message\": \"{}\"}}", "m".repeat(60_000));
    let mut sent = 0;
    while server.open_streams() == 2 {
        assert!(sent < 2000, "the stuck client was never dropped");
        let (head, _) = fetch(addr, "POST", "/messages", &[], body.as_bytes());
        assert_eq!(head.status, 200);
        sent += 1;
        // The fast client keeps up with every message.
        assert_eq!(fast.events(1)[0].data.len(), body.len() + 22);
    }
    assert_eq!(server.open_streams(), 1);
    drop(stuck);
}

#[test]
fn a_burst_of_streams_all_start() {
    // Connections that arrive together are each accepted and given a
    // thread: none waits behind another.
    let server = start(|c| c.max_streams = Some(1000));
    let addr = server.addr();
    // Connect all first, so that they are accepted back to back.
    let sockets: Vec<_> = (0..400)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let mut conns: Vec<_> = sockets
        .into_iter()
        .map(|mut s| {
            use std::io::Write;
            s.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            Conn::from_stream(s)
        })
        .collect();
    for c in &mut conns {
        assert_eq!(c.head().status, 200);
        assert_eq!(c.chunk_str().as_deref(), Some("retry: 2000\n"));
    }
    assert_eq!(server.open_streams(), 400);
}

#[test]
fn answers_made_for_the_request_say_no_store_and_pages_do_not() {
    let server = start(|_| {});
    let addr = server.addr();
    let no_store = |method: &str, target: &str, body: &[u8]| {
        let (head, _) = fetch(addr, method, target, &[], body);
        assert_eq!(
            head.header("Cache-Control"),
            Some("no-store"),
            "{method} {target}: {}",
            head.raw
        );
    };
    no_store("GET", "/topics", b"");
    no_store("GET", "/healthz", b"");
    no_store("GET", "/metrics", b"");
    no_store("POST", "/events/news", b"hello");
    no_store("POST", "/messages", br#"{"message": "hi"}"#);
    no_store("GET", "/no-such-page", b"");
    no_store("GET", "/events/x?lst=5", b"");
    // A stream says no-cache, as EventSource servers do; a page neither.
    let mut stream = Conn::get(addr, "/events/news");
    assert_eq!(stream.head().header("Cache-Control"), Some("no-cache"));
    let (head, _) = fetch(addr, "GET", "/clock.html", &[], b"");
    assert_eq!(head.header("Cache-Control"), None);
}

#[test]
fn a_quotes_change_is_the_difference_of_the_prices_shown() {
    let server = start(|_| {});
    let mut c = Conn::open_stream(server.addr(), "/stream-stocks");
    let mut last: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    let mut checked = 0;
    for m in c.events(60) {
        let q = json(&m.data);
        let (symbol, price, change) = (
            q["symbol"].as_str().unwrap().to_string(),
            q["price"].as_f64().unwrap(),
            q["change"].as_f64().unwrap(),
        );
        if let Some(before) = last.insert(symbol, price) {
            // In cents: the change is exactly the step between the two.
            assert_eq!(
                ((price - before) * 100.0).round(),
                (change * 100.0).round(),
                "{}",
                m.data
            );
            checked += 1;
        }
    }
    assert!(checked > 40);
}

#[test]
fn system_stats_say_how_many_samples_were_kept_when_asked_for_them() {
    let server = start(|_| {});
    let addr = server.addr();
    // Samples are kept: wait for three.
    let mut warm = Conn::open_stream(addr, "/system-stats");
    warm.events(3);
    let mut c = Conn::open_stream(addr, "/system-stats?last=2");
    let got = c.events(3);
    assert_eq!(got[0].event, "kept", "{got:?}");
    let kept = json(&got[0].data);
    assert_eq!(kept["samples"], 2);
    assert_eq!(kept["interval_ms"], 200);
    assert!(got[1..].iter().all(|m| m.event == "message"));
    // Without ?last=, the seed's stream as it was: samples only.
    let mut plain = Conn::open_stream(addr, "/system-stats");
    assert_eq!(plain.events(1)[0].event, "message");
}
