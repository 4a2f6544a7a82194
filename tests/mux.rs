//! `/mux`: several streams over one connection, as the pages' SsedSource
//! uses it. Each stream it carries is answered as it would be on its own:
//! the same events, ids, refusals and credentials.

mod common;

use common::{fetch, json, start, wait_until, Conn, Daemon};
use ssed::sse::Message;
use std::net::SocketAddr;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(10);

/// Opens a mux: its connection, past its first event, and its id.
fn open_mux(addr: SocketAddr) -> (Conn, String) {
    let mut conn = Conn::get(addr, "/mux");
    let head = conn.head();
    assert_eq!(head.status, 200, "{}", head.raw);
    assert_eq!(head.header("Content-Type"), Some("text/event-stream"));
    let hello = conn.events(1).remove(0);
    assert_eq!(hello.event, "mux");
    let hello = json(&hello.data);
    assert_eq!(hello["max_streams"], 64);
    let id = hello["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "{id}");
    (conn, id)
}

/// `POST /mux/{id}` with `body` (and `headers`): the status and body.
fn control(addr: SocketAddr, id: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let (head, body) = fetch(
        addr,
        "POST",
        &format!("/mux/{id}"),
        headers,
        body.as_bytes(),
    );
    (head.status, body.trim_end().to_string())
}

fn carried(m: &Message) -> serde_json::Value {
    assert_eq!(m.event, "ev", "{m:?}");
    json(&m.data)
}

#[test]
fn a_mux_carries_streams_with_their_ids_and_says_when_one_ends() {
    let server = start(|_| {});
    let addr = server.addr();
    let (mut mux, id) = open_mux(addr);
    let open = |key: &str, url: &str| {
        control(
            addr,
            &id,
            &[],
            &serde_json::json!({ "open": key, "url": url }).to_string(),
        )
    };
    assert_eq!(open("n", "/events/news"), (200, r#"{"opened":"n"}"#.into()));
    let (_, published) = fetch(addr, "POST", "/events/news", &[], b"hello\nworld");
    let event_id = json(&published)["id"].as_str().unwrap().to_string();
    let got = mux.events(1).remove(0);
    assert_eq!(
        got.data,
        format!(r#"{{"k":"n","event":"message","data":"hello\nworld","id":"{event_id}"}}"#)
    );
    // A finite stream: its events, then the mux's word that it ended, with
    // the reconnection time it set.
    assert_eq!(
        open("t", "/stream-training?epochs=1&steps=2&step_ms=0").0,
        200
    );
    let events = mux.events(4);
    let run: Vec<_> = events[..3].iter().map(carried).collect();
    assert_eq!(run[0]["event"], "progress");
    assert_eq!(run[1]["event"], "progress");
    assert_eq!(run[2]["event"], "complete");
    assert_eq!(run[2]["id"], "end");
    assert_eq!(events[3].event, "end");
}

#[test]
fn the_end_of_a_stream_names_its_key_and_retry_and_a_finished_one_answers_204() {
    let server = start(|c| c.retry_ms = 1500);
    let addr = server.addr();
    let (mut mux, id) = open_mux(addr);
    let body = r#"{"open":"t","url":"/stream-training?epochs=1&steps=1&step_ms=0"}"#;
    assert_eq!(control(addr, &id, &[], body).0, 200);
    let events = mux.events(3);
    assert_eq!(carried(&events[1])["event"], "complete");
    assert_eq!(events[2].event, "end");
    assert_eq!(events[2].data, r#"{"k":"t","retry":1500}"#);
    // As EventSource would, resuming after `end`: 204, finished.
    let again =
        r#"{"open":"t","url":"/stream-training?epochs=1&steps=1&step_ms=0","last_event_id":"end"}"#;
    assert_eq!(control(addr, &id, &[], again), (204, String::new()));
}

#[test]
fn a_mux_replays_from_the_last_event_id_it_is_given() {
    let server = start(|_| {});
    let addr = server.addr();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let (_, r) = fetch(addr, "POST", "/events/log", &[], format!("e{i}").as_bytes());
            json(&r)["id"].as_str().unwrap().to_string()
        })
        .collect();
    let (mut mux, id) = open_mux(addr);
    let body = serde_json::json!({"open": "l", "url": "/events/log", "last_event_id": ids[0]});
    assert_eq!(control(addr, &id, &[], &body.to_string()).0, 200);
    let got: Vec<_> = mux.events(2).iter().map(carried).collect();
    assert_eq!(got[0]["data"], "e1");
    assert_eq!(got[0]["id"], ids[1].as_str());
    assert_eq!(got[1]["data"], "e2");
}

#[test]
fn a_stream_a_mux_cannot_carry_is_refused_as_it_would_be_on_its_own() {
    let server = start(|c| c.subscribe_token = Some("s3cret-subscribe".into()));
    let addr = server.addr();
    let (mut mux, id) = open_mux(addr);
    let open = |url: &str, headers: &[(&str, &str)]| {
        control(
            addr,
            &id,
            headers,
            &serde_json::json!({ "open": "k", "url": url }).to_string(),
        )
    };
    // The stream's own refusal, status and reason.
    let (status, body) = open("/events/news", &[]);
    assert_eq!(status, 401);
    assert!(body.contains("a token is required"), "{body}");
    let (status, body) = open("/nope", &[]);
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"no such page or route: /nope"}"#)
    );
    let (status, body) = open("/stream-time?intervl_ms=5", &[]);
    assert_eq!(status, 400);
    assert!(
        body.contains(r#"unknown query parameter \"intervl_ms\""#),
        "{body}"
    );
    let (status, body) = open("/healthz", &[]);
    assert_eq!(status, 400);
    assert!(body.contains("not an event stream: /healthz"), "{body}");
    // The credentials of the request that asks are the stream's.
    let bearer = [("Authorization", "Bearer s3cret-subscribe")];
    assert_eq!(open("/events/news", &bearer).0, 200);
    let (_, _) = fetch(addr, "POST", "/events/news", &[], b"for the token");
    assert_eq!(carried(&mux.events(1)[0])["data"], "for the token");
    // A mux that is not there, and bodies that are not a mux request.
    assert_eq!(
        control(addr, "0123", &[], r#"{"close":"k"}"#),
        (
            410,
            r#"{"error":"no such mux: it ended; open /mux again"}"#.into()
        )
    );
    for (body, why) in [
        ("{", "not JSON"),
        (
            r#"{"open":"k","url":"/events/a?format=ndjson"}"#,
            "leave out format=ndjson",
        ),
        (r#"{"open":"k","url":"/mux"}"#, "a mux does not carry a mux"),
        (
            r#"{"open":"k","url":"http://elsewhere/"}"#,
            "a path on this server",
        ),
        (r#"{"open":"k k","url":"/sse"}"#, "a key is"),
    ] {
        let (status, answer) = control(addr, &id, &[], body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.contains(why), "{body}: {answer}");
    }
    let big = format!(r#"{{"open":"k","url":"/{}"}}"#, "a".repeat(9000));
    assert_eq!(control(addr, &id, &[], &big).0, 413);
    // GET on a mux's control, POST on /mux.
    assert_eq!(
        fetch(addr, "GET", &format!("/mux/{id}"), &[], b"").0.status,
        405
    );
    assert_eq!(fetch(addr, "POST", "/mux", &[], b"").0.status, 405);
}

#[test]
fn a_mux_carries_at_most_64_streams_and_a_closed_one_makes_room() {
    let server = start(|c| c.max_streams = Some(200));
    let addr = server.addr();
    let (_mux, id) = open_mux(addr);
    let open = |key: &str| {
        let body = serde_json::json!({ "open": key, "url": format!("/events/t{key}") });
        control(addr, &id, &[], &body.to_string())
    };
    for i in 0..64 {
        assert_eq!(open(&i.to_string()).0, 200, "stream {i}");
    }
    let (status, body) = open("64");
    assert_eq!(status, 429);
    assert!(body.contains("at most 64 streams"), "{body}");
    assert_eq!(
        control(addr, &id, &[], r#"{"close":"3"}"#),
        (200, r#"{"closed":"3"}"#.into())
    );
    // The close is the mux thread's to do: room comes once it has.
    wait_until(WITHIN, "room after a close", || open("64").0 == 200);
}

#[test]
fn a_mux_whose_client_left_lets_its_streams_go_at_once() {
    // No heartbeat for a minute: the hang-up itself is seen.
    let server = start(|c| c.heartbeat = Duration::from_secs(60));
    let addr = server.addr();
    let (mux, id) = open_mux(addr);
    for key in ["a", "b", "c"] {
        let body = serde_json::json!({ "open": key, "url": format!("/events/{key}") });
        assert_eq!(control(addr, &id, &[], &body.to_string()).0, 200);
    }
    wait_until(WITHIN, "the mux and its three streams", || {
        server.open_streams() == 4
    });
    drop(mux);
    wait_until(WITHIN, "every stream let go", || server.open_streams() == 0);
    assert_eq!(control(addr, &id, &[], r#"{"close":"a"}"#).0, 410);
}

#[test]
fn a_mux_ends_at_once_at_shutdown_with_a_spread_retry() {
    let mut daemon = Daemon::start(&["--keepalive", "60", "--stop-spread", "9"]);
    let addr = daemon.addr;
    let (mut mux, id) = open_mux(addr);
    let body = r#"{"open":"c","url":"/stream-time?interval_ms=60000"}"#;
    assert_eq!(control(addr, &id, &[], body).0, 200);
    mux.events(1);
    let (took, status) = daemon.terminate(WITHIN);
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    let rest = String::from_utf8_lossy(&mux.read_to_end()).to_string();
    let retry: u64 = rest
        .lines()
        .find_map(|l| l.strip_prefix("retry: "))
        .unwrap_or_else(|| panic!("no last retry: {rest:?}"))
        .parse()
        .unwrap();
    assert!((2000..=9000).contains(&retry), "{retry}");
}

#[test]
fn the_access_log_shows_the_muxs_client_for_each_stream() {
    let daemon = Daemon::start(&["--access-log"]);
    let addr = daemon.addr;
    let (_mux, id) = open_mux(addr);
    let body = r#"{"open":"c","url":"/events/logged"}"#;
    assert_eq!(control(addr, &id, &[], body).0, 200);
    assert_eq!(control(addr, &id, &[], r#"{"close":"c"}"#).0, 200);
    let line = daemon.stderr_line("GET /events/logged", WITHIN);
    assert!(line.contains(" 127.0.0.1 via mux "), "{line}");
    // Anyone else's X-Forwarded-For is not believed.
    let (_, _) = fetch(
        addr,
        "GET",
        "/healthz",
        &[("X-Forwarded-For", "203.0.113.9"), ("X-Ssed-Mux", "guess")],
        b"",
    );
    let line = daemon.stderr_line("GET /healthz", WITHIN);
    assert!(!line.contains("203.0.113.9"), "{line}");
}

#[test]
fn behind_a_trusted_proxy_the_access_log_shows_the_client_of_the_mux() {
    let daemon = Daemon::start(&["--access-log", "--trusted-proxy", "127.0.0.1"]);
    let addr = daemon.addr;
    let (_mux, id) = open_mux(addr);
    let proxied = [("X-Forwarded-For", "203.0.113.9")];
    let body = r#"{"open":"c","url":"/events/proxied"}"#;
    assert_eq!(control(addr, &id, &proxied, body).0, 200);
    assert_eq!(control(addr, &id, &proxied, r#"{"close":"c"}"#).0, 200);
    let line = daemon.stderr_line("GET /events/proxied", WITHIN);
    assert!(line.contains(" 203.0.113.9 via mux "), "{line}");
}

#[test]
fn all_muxes_together_carry_a_quarter_of_the_connection_cap_and_give_places_back() {
    // Each carried stream takes two descriptors, one of them a connection.
    let server = start(|c| c.max_connections = Some(40));
    let addr = server.addr();
    let (mux, id) = open_mux(addr);
    let open = |id: &str, key: usize| {
        let body = serde_json::json!({ "open": key.to_string(), "url": format!("/events/q{key}") });
        control(addr, id, &[], &body.to_string())
    };
    for key in 0..10 {
        assert_eq!(open(&id, key).0, 200, "stream {key}");
    }
    let (status, body) = open(&id, 10);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("the muxes carry 10 streams, a quarter of --max-connections"),
        "{body}"
    );
    // A mux that ends gives every place back.
    drop(mux);
    let (_again, id) = open_mux(addr);
    wait_until(WITHIN, "the places given back", || open(&id, 0).0 == 200);
    for key in 1..10 {
        assert_eq!(open(&id, key).0, 200, "stream {key} on the second mux");
    }
}
