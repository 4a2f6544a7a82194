//! Live logs: `--source` programs and `--tail` files feeding topics, seen
//! by subscribers over real sockets.

mod common;

use common::{append, dead, fetch, json, start, wait_until, Conn, TempDir};
use serde_json::{json, Value};
use ssed::sources::{Kind, Restart, Spec};
use ssed::sse::Message;
use ssed::{Config, Server};
use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const SOON: Duration = Duration::from_secs(10);

fn source(topic: &str, command: &str) -> Spec {
    Spec {
        topic: topic.into(),
        kind: Kind::Command(command.into()),
    }
}

fn tail(topic: &str, file: &Path) -> Spec {
    Spec {
        topic: topic.into(),
        kind: Kind::File(file.to_path_buf()),
    }
}

fn serve(specs: Vec<Spec>, tweak: impl FnOnce(&mut Config)) -> Server {
    start(|c| {
        c.sources = specs;
        c.source_restart_delay = Duration::from_millis(20);
        c.tail_poll = Duration::from_millis(10);
        c.source_keeper = Some(env!("CARGO_BIN_EXE_ssed").into());
        tweak(c);
    })
}

/// A subscriber to `topic` that first gets what the topic holds.
fn subscribe(addr: SocketAddr, topic: &str) -> Conn {
    Conn::open_stream(addr, &format!("/events/{topic}?last=1000"))
}

/// Events until one named `name` (included).
fn until(conn: &mut Conn, name: &str) -> Vec<Message> {
    let mut out = Vec::new();
    loop {
        let event = conn.events(1).remove(0);
        let last = event.event == name;
        out.push(event);
        if last {
            return out;
        }
    }
}

fn named<'a>(events: &'a [Message], name: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e.event == name)
        .map(|e| e.data.as_str())
        .collect()
}

/// The `source` entry of `topic` in `/topics`.
fn described(addr: SocketAddr, topic: &str) -> Value {
    let (head, body) = fetch(addr, "GET", "/topics", &[], b"");
    assert_eq!(head.status, 200);
    json(&body)
        .as_array()
        .and_then(|list| list.iter().find(|t| t["topic"] == topic).cloned())
        .map(|t| t["source"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn a_program_s_stdout_and_stderr_reach_subscribers_in_order_then_its_exit() {
    let program = "for i in 1 2 3 4 5; do echo out $i; echo err $i >&2; done; \
                   printf 'crlf\\r\\nlast without newline'; exit 3";
    let server = serve(vec![source("build", program)], |c| {
        c.source_restart = Restart::Never;
    });
    let addr = server.addr();
    let mut sub = subscribe(addr, "build");
    let events = until(&mut sub, "exit");
    // Each pipe keeps its order; the two interleave as the program ran.
    assert_eq!(
        named(&events, "message"),
        [
            "out 1",
            "out 2",
            "out 3",
            "out 4",
            "out 5",
            "crlf",
            "last without newline"
        ]
    );
    assert_eq!(
        named(&events, "stderr"),
        ["err 1", "err 2", "err 3", "err 4", "err 5"]
    );
    assert_eq!(events.len(), 13);
    // The exit comes after every line, with no restart to come.
    let exit: Value = serde_json::from_str(&events[12].data).unwrap();
    assert_eq!(
        exit,
        json!({"code": 3, "signal": null, "restart_in_ms": null})
    );
    // Ids go up in the order published.
    let ids: Vec<u64> = events
        .iter()
        .map(|e| e.id.rsplit_once('-').unwrap().1.parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // /topics shows the source, ended.
    wait_until(SOON, "the exit in /topics", || {
        described(addr, "build")["last_exit"]["code"] == 3
    });
    let d = described(addr, "build");
    assert_eq!(d["command"], program);
    assert_eq!(d["running"], false);
    assert_eq!(d["pid"], Value::Null);
    assert_eq!(d["restarts"], 0);
}

#[test]
fn a_program_that_keeps_failing_is_restarted_after_a_pause_that_doubles() {
    let server = serve(vec![source("flaky", "echo run; exit 2")], |c| {
        c.source_restart = Restart::OnFailure;
    });
    let mut sub = subscribe(server.addr(), "flaky");
    let mut pauses = Vec::new();
    for _ in 0..4 {
        let events = until(&mut sub, "exit");
        assert_eq!(named(&events, "message"), ["run"]);
        let exit: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
        assert_eq!(exit["code"], 2);
        pauses.push(exit["restart_in_ms"].as_u64().unwrap());
    }
    assert_eq!(pauses, [20, 40, 80, 160]);
    let restarts = described(server.addr(), "flaky")["restarts"]
        .as_u64()
        .unwrap();
    assert!(restarts >= 3, "{restarts}");
}

#[test]
fn on_failure_does_not_restart_a_program_that_succeeded() {
    let server = serve(vec![source("once", "echo done")], |c| {
        c.source_restart = Restart::OnFailure;
    });
    let mut sub = subscribe(server.addr(), "once");
    let events = until(&mut sub, "exit");
    assert_eq!(named(&events, "message"), ["done"]);
    assert_eq!(
        serde_json::from_str::<Value>(&events[1].data).unwrap(),
        json!({"code": 0, "signal": null, "restart_in_ms": null})
    );
}

#[test]
fn no_process_of_a_source_outlives_the_server_even_one_that_ignores_sigterm() {
    // The shell and its background child both ignore SIGTERM: only the
    // kill of the whole group after the grace period ends them.
    let program = "trap '' TERM; sleep 300 & echo $!; while :; do sleep 1; done";
    let server = serve(vec![source("bg", program)], |_| {});
    let addr = server.addr();
    let mut sub = subscribe(addr, "bg");
    let background: u32 = sub.events(1)[0].data.parse().unwrap();
    let shell = described(addr, "bg")["pid"].as_u64().unwrap() as u32;
    assert!(!dead(background) && !dead(shell));
    server.shutdown();
    // Shutdown returns once every source thread has ended: both are gone.
    wait_until(SOON, "the processes to be gone", || {
        dead(background) && dead(shell)
    });
}

#[test]
fn what_a_program_leaves_running_ends_with_it() {
    // The background sleep outlives its shell, its output sent elsewhere.
    let program = "sleep 300 >/dev/null 2>&1 & echo $!";
    let server = serve(vec![source("left", program)], |c| {
        c.source_restart = Restart::Never;
    });
    let mut sub = subscribe(server.addr(), "left");
    let events = until(&mut sub, "exit");
    let background: u32 = events[0].data.parse().unwrap();
    wait_until(SOON, "the background process to end", || dead(background));
}

#[test]
fn a_source_topic_takes_no_publishes() {
    let server = serve(vec![source("logs", "echo hi")], |_| {});
    let (head, body) = fetch(server.addr(), "POST", "/events/logs", &[], b"x");
    assert_eq!(head.status, 409);
    assert_eq!(
        json(&body),
        json!({"error": "topic logs is fed by --source logs=echo hi; it takes no publishes"})
    );
}

#[test]
fn invalid_utf8_is_replaced_and_long_lines_are_cut_and_say_so() {
    let program = "printf 'ok\\n\\377\\376bad\\n'; head -c 100 /dev/zero | tr '\\0' x; echo";
    let server = serve(vec![source("raw", program)], |c| {
        c.source_restart = Restart::Never;
        c.max_event_bytes = 40;
    });
    let mut sub = subscribe(server.addr(), "raw");
    let events = until(&mut sub, "exit");
    assert_eq!(
        named(&events, "message"),
        [
            "ok".to_string(),
            "\u{FFFD}\u{FFFD}bad".to_string(),
            // 40 bytes: 18 kept and the marker, which counts what was left.
            format!("{} [cut: 82 more bytes]", "x".repeat(18)),
        ]
    );
}

/// The value of a counter in `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = fetch(addr, "GET", "/metrics", &[], b"");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

#[test]
fn a_program_that_prints_faster_than_anyone_reads_cannot_grow_memory() {
    // `yes` prints as fast as the pipe takes it; a subscriber never reads.
    let mut d = common::Daemon::start(&[
        "--source",
        "flood=yes 'a line of output, as a busy program prints it'",
        "--history",
        "1000",
    ]);
    let addr = d.addr;
    let _stalled = Conn::get(addr, "/events/flood");
    let published =
        |n: u64| move || metric(addr, "ssed_events_published_total{topic=\"flood\"}") >= n;
    wait_until(SOON * 3, "50,000 lines", published(50_000));
    let before = d.rss_kb();
    wait_until(SOON * 6, "500,000 lines", published(500_000));
    d.assert_running();
    let grown = d.rss_kb().saturating_sub(before);
    // Ten times the lines, the same memory: history holds the newest 1000.
    assert!(grown < 4 * 1024, "memory grew by {grown} KiB");
    let (_, body) = fetch(addr, "GET", "/topics", &[], b"");
    assert_eq!(json(&body)[0]["retained"], 1000);
}

#[test]
fn a_tail_follows_appends_rotation_and_truncation_from_the_end() {
    let dir = TempDir::new("tail");
    let log = dir.0.join("app.log");
    append(&log, "before start\n");
    let server = serve(vec![tail("app", &log)], |_| {});
    let addr = server.addr();
    // Lines written from now on are published.
    wait_until(SOON, "the file to be followed", || {
        described(addr, "app")["running"] == true
    });
    let mut sub = subscribe(addr, "app");
    append(&log, "one\ntwo\r\n");
    assert_eq!(data(&sub.events(2)), ["one", "two"]);
    // A line written in two pieces is one line.
    append(&log, "thr");
    append(&log, "ee\n");
    assert_eq!(data(&sub.events(1)), ["three"]);
    // Rotation: renamed away, a new file in its place, read from its start.
    fs::rename(&log, dir.0.join("app.log.1")).unwrap();
    append(&log, "four\n");
    assert_eq!(data(&sub.events(1)), ["four"]);
    // Truncation: said, then the file is read from its start.
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    let truncated = sub.events(1).remove(0);
    assert_eq!(truncated.event, "truncated");
    assert_eq!(truncated.data, log.display().to_string());
    append(&log, "five\n");
    assert_eq!(data(&sub.events(1)), ["five"]);
    // Removed, then back.
    fs::remove_file(&log).unwrap();
    wait_until(SOON, "the removal to be seen", || {
        described(addr, "app")["running"] == false
    });
    append(&log, "six\n");
    assert_eq!(data(&sub.events(1)), ["six"]);
    // What was there before ssed started was never published.
    let (_, body) = fetch(addr, "GET", "/topics", &[], b"");
    let app = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "app")
        .cloned()
        .unwrap();
    assert_eq!(app["retained"], 7);
    assert_eq!(
        app["source"],
        json!({"file": log.display().to_string(), "running": true})
    );
}

#[test]
fn a_tail_waits_for_a_file_that_does_not_exist_yet_and_reads_it_whole() {
    let dir = TempDir::new("wait");
    let log = dir.0.join("later.log");
    let server = serve(vec![tail("later", &log)], |_| {});
    let addr = server.addr();
    let mut sub = subscribe(addr, "later");
    assert_eq!(described(addr, "later")["running"], false);
    append(&log, "first\nsecond\n");
    assert_eq!(data(&sub.events(2)), ["first", "second"]);
}

fn data(events: &[Message]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}
