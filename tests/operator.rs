//! What an operator points ssed at is hostile too: `--tail` files that are
//! FIFOs, devices, directories, endless, or swapped for a symlink at
//! rotation; `--source` programs that leave their process group or hold
//! their pipes; secrets in the access log; a low open-files limit. Each
//! against the real binary, bounded in time.

mod common;

use common::{append, dead, fetch, wait_until, Conn, Daemon, TempDir};
use ssed::sse::Message;
use std::fs::{self, OpenOptions};
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SOON: Duration = Duration::from_secs(10);
/// What "within a few seconds" of SIGTERM means here.
const STOP_WITHIN: Duration = Duration::from_secs(5);

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

/// Runs ssed with `args`, expecting it to refuse them at start: its exit
/// code and stderr (killed, and the test failed, if it starts instead).
fn refused_at_start(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ssed");
    let deadline = Instant::now() + SOON;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ssed started with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

/// A subscriber to `topic` that first gets what the topic holds.
fn subscribe(addr: SocketAddr, topic: &str) -> Conn {
    Conn::open_stream(addr, &format!("/events/{topic}?last=1000"))
}

fn data(events: &[Message]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

/// The `source` of `topic` in `/topics`.
fn described(addr: SocketAddr, topic: &str) -> serde_json::Value {
    let (_, body) = common::fetch(addr, "GET", "/topics", &[], b"");
    common::json(&body)
        .as_array()
        .and_then(|list| list.iter().find(|t| t["topic"] == topic).cloned())
        .map(|t| t["source"].clone())
        .unwrap_or_default()
}

#[test]
fn files_that_cannot_be_followed_are_refused_at_start_naming_them() {
    let dir = TempDir::new("refuse");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let target = dir.join("real.log");
    append(&target, "x\n");
    let link = dir.join("link.log");
    symlink(&target, &link).unwrap();
    let dir_arg = format!("x={}", dir.0.display());
    let fifo_arg = format!("f={}", fifo.display());
    let link_arg = format!("l={}", link.display());
    let cases = [
        (
            dir_arg.as_str(),
            "is a directory; --tail follows regular files only",
        ),
        (
            "z=/dev/zero",
            "is a device; --tail follows regular files only",
        ),
        (
            fifo_arg.as_str(),
            "is a FIFO; --tail follows regular files only",
        ),
        (
            link_arg.as_str(),
            "is a symlink; name the file itself, or allow symlinks with --tail-symlinks",
        ),
    ];
    for (arg, why) in cases {
        let (code, err) = refused_at_start(&["--tail", arg]);
        assert_eq!(code, 1, "{arg}: {err}");
        let path = arg.split_once('=').unwrap().1;
        assert_eq!(err.trim(), format!("ssed: --tail {arg}: {path} {why}"));
    }
    // Allowed, a symlink to a regular file is followed.
    let mut d = Daemon::start(&["--tail", &link_arg, "--tail-symlinks"]);
    wait_until(SOON, "the link to be followed", || {
        described(d.addr, "l")["running"] == true
    });
    d.terminate(STOP_WITHIN);
}

#[test]
fn sigterm_ends_ssed_within_seconds_whatever_its_files_and_programs_do() {
    let dir = TempDir::new("stop");
    // A regular file that never ends: a terabyte of holes, read whole
    // because it appears after the start.
    let endless = dir.join("endless.log");
    // A FIFO with no writer that appears where a log is expected.
    let fifo = dir.join("fifo.log");
    let args = [
        format!("endless={}", endless.display()),
        format!("fifo={}", fifo.display()),
    ];
    let mut d = Daemon::start(&[
        "--tail",
        &args[0],
        "--tail",
        &args[1],
        "--tail-poll-ms",
        "10",
        // A program that leaves its process group and outlives its shell.
        "--source",
        "escaped=setsid sh -c 'echo $$; exec sleep 60'; echo after",
        // One that prints without end.
        "--source",
        "flood=yes",
    ]);
    let addr = d.addr;
    let mut escaped = subscribe(addr, "escaped");
    let pid: u32 = escaped.events(1)[0].data.parse().unwrap();
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&endless)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    mkfifo(&fifo);
    d.stderr_line("is now a FIFO; --tail follows regular files only", SOON);
    // The endless file is being read (its one line never ends).
    wait_until(SOON, "the endless file to be read", || {
        described(addr, "endless")["running"] == true
    });
    let (took, status) = d.terminate(STOP_WITHIN);
    assert!(status.success(), "{status}");
    eprintln!("stopped in {took:?}");
    // Nothing the program started is left, the one that left its group too.
    wait_until(SOON, "the escaped process to be gone", || dead(pid));
}

#[test]
fn no_descendant_of_a_source_outlives_ssed_killed_with_sigkill() {
    let mut d = Daemon::start(&["--source", "escaped=setsid sh -c 'echo $$; exec sleep 60'"]);
    let mut sub = subscribe(d.addr, "escaped");
    let pid: u32 = sub.events(1)[0].data.parse().unwrap();
    assert!(!dead(pid));
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    wait_until(SOON, "the escaped process to be gone", || dead(pid));
}

#[test]
fn a_program_that_exits_is_not_waited_on_through_what_it_left_behind() {
    // The background process holds stdout and stderr open, in a session of
    // its own; the shell exits at once.
    let mut d = Daemon::start(&[
        "--source",
        "left=setsid sh -c 'echo $$; exec sleep 60' & sleep 0.2; echo done",
        "--source-restart",
        "never",
    ]);
    let mut sub = subscribe(d.addr, "left");
    let mut events = Vec::new();
    while events.last().map(|e: &Message| e.event.as_str()) != Some("exit") {
        events.extend(sub.events(1));
    }
    let pid: u32 = events[0].data.parse().unwrap();
    assert_eq!(events[1].data, "done");
    assert_eq!(
        common::json(&events[2].data),
        serde_json::json!({"code": 0, "signal": null, "restart_in_ms": null})
    );
    wait_until(SOON, "what it left to be gone", || dead(pid));
    d.terminate(STOP_WITHIN);
}

#[test]
fn rotation_never_leads_to_a_symlink_or_a_file_of_another_owner() {
    let dir = TempDir::new("swap");
    let log = dir.join("app.log");
    let secret = dir.join("secret");
    append(&secret, "SECRET LINE\n");
    append(&log, "");
    let arg = format!("app={}", log.display());
    let d = Daemon::start(&["--tail", &arg, "--tail-poll-ms", "10"]);
    let addr = d.addr;
    wait_until(SOON, "the file to be followed", || {
        described(addr, "app")["running"] == true
    });
    let mut sub = subscribe(addr, "app");
    append(&log, "one\n");
    assert_eq!(data(&sub.events(1)), ["one"]);
    // Rotated, and a symlink to another file put in its place.
    fs::rename(&log, dir.join("app.log.1")).unwrap();
    symlink(&secret, &log).unwrap();
    let line = d.stderr_line("not followed", SOON);
    assert_eq!(
        line,
        format!(
            "ssed: --tail {arg}: {} is now a symlink; not followed (--tail-symlinks allows it)",
            log.display()
        )
    );
    assert_eq!(described(addr, "app")["running"], false);
    // A regular file again: followed from its start.
    fs::remove_file(&log).unwrap();
    append(&log, "two\n");
    assert_eq!(data(&sub.events(1)), ["two"]);
    // A file of another owner (only root can make one here).
    if is_root() {
        fs::rename(&log, dir.join("app.log.2")).unwrap();
        append(&log, "");
        std::os::unix::fs::chown(&log, Some(65534), None).unwrap();
        append(&log, "SECRET OF ANOTHER USER\n");
        let line = d.stderr_line("not followed", SOON);
        assert!(
            line.ends_with(
                "is now owned by uid 65534, not uid 0 as the file it replaces; not followed"
            ),
            "{line}"
        );
        fs::remove_file(&log).unwrap();
        append(&log, "three\n");
        assert_eq!(data(&sub.events(1)), ["three"]);
    }
    // Nothing of the other files ever reached the topic: it holds the
    // lines of the followed files, and only them.
    let want: &[&str] = if is_root() {
        &["one", "two", "three"]
    } else {
        &["one", "two"]
    };
    let (_, body) = common::fetch(addr, "GET", "/topics", &[], b"");
    assert_eq!(common::json(&body)[0]["retained"], want.len());
    let mut again = subscribe(addr, "app");
    assert_eq!(data(&again.events(want.len())), want);
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn a_token_never_reaches_the_access_log_however_it_is_spelled() {
    let d = Daemon::start(&[
        "--subscribe-token",
        "S3CRET",
        "--access-log",
        "--keepalive",
        "0.05",
    ]);
    let targets = [
        "/events/a?token=S3CRET",
        "/events/a?%74oken=S3CRET",
        "/events/a?tok%65n=S3CRET",
        "/events/a?%74%6f%6b%65%6e=S3CRET",
        "/events/a?TOKEN=S3CRET",
        "/events/a?token=wrong&token=S3CRET",
        "/events/a?token=S3CRET&token=wrong",
        "/events/a?x=1&Tok%45n=S3CRET",
    ];
    let mut served = 0;
    for target in targets {
        // Each is answered (the server reads `token` spelled with escapes,
        // and the last of repeated ones), then the client leaves.
        let mut conn = Conn::get(d.addr, target);
        served += usize::from(conn.head().status == 200);
    }
    assert_eq!(served, 5);
    for _ in targets {
        let line = d.stderr_line("GET /events/a?", SOON);
        assert!(!line.contains("S3CRET"), "{line}");
        assert!(line.contains("=***"), "{line}");
    }
}

#[test]
fn a_low_open_files_limit_still_gives_a_useful_connection_cap() {
    let Ok(status) = Command::new("prlimit").arg("--version").output() else {
        eprintln!("skipped: prlimit not installed");
        return;
    };
    assert!(status.status.success());
    let mut child = Command::new("prlimit")
        .args([
            "--nofile=256:256",
            env!("CARGO_BIN_EXE_ssed"),
            "--addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    // An eighth of 256 is kept for everything else.
    assert!(
        line.contains(": at most 224 connections, set by the open-files limit;"),
        "{line}"
    );
}

#[test]
fn healthz_answers_as_soon_as_a_place_is_free() {
    // Two places: two streams take them both.
    let d = Daemon::start(&[
        "--max-connections",
        "2",
        "--max-streams",
        "2",
        "--keepalive",
        "60",
    ]);
    let addr = d.addr;
    let health = || common::fetch(addr, "GET", "/healthz", &[], b"").0.status;
    let first = subscribe(addr, "cap");
    assert_eq!(health(), 200);
    // (The health check's own connection may take a moment to end.)
    let mut second = None;
    wait_until(SOON, "a second stream", || {
        let mut c = Conn::get(addr, "/events/cap?last=1000");
        let ok = c.head().status == 200;
        second = ok.then_some(c);
        ok
    });
    // Full: the accept thread answers 503 itself.
    assert_eq!(health(), 503);
    // A stream that leaves frees its place at once, not at its next
    // keep-alive (a minute away).
    drop(second);
    wait_until(Duration::from_secs(1), "a free place", || health() == 200);
    drop(first);
}

#[test]
fn the_access_log_believes_x_forwarded_for_from_a_trusted_proxy_only() {
    let trusting = Daemon::start(&["--access-log", "--trusted-proxy", "127.0.0.1"]);
    let doubting = Daemon::start(&["--access-log"]);
    for (daemon, xff, shown) in [
        (&trusting, "203.0.113.7", "203.0.113.7 via 127.0.0.1:"),
        // The nearest hop the proxy did not vouch for.
        (
            &trusting,
            "203.0.113.7, 198.51.100.2",
            "198.51.100.2 via 127.0.0.1:",
        ),
        (
            &trusting,
            "203.0.113.7, 127.0.0.1",
            "203.0.113.7 via 127.0.0.1:",
        ),
        // Not an address: the peer.
        (&trusting, "<script>", " 127.0.0.1:"),
        // Without the flag, the header is anyone's to write: ignored.
        (&doubting, "203.0.113.7", " 127.0.0.1:"),
    ] {
        let (head, _) = common::fetch(
            daemon.addr,
            "GET",
            "/healthz",
            &[("X-Forwarded-For", xff)],
            b"",
        );
        assert_eq!(head.status, 200);
        let line = daemon.stderr_line("GET /healthz", Duration::from_secs(10));
        assert!(line.contains(shown), "{xff}: {line}");
        assert!(!line.contains("script"), "{line}");
    }
}

#[test]
fn a_drain_refuses_new_streams_and_fails_the_health_check_while_open_streams_go_on() {
    let mut d = Daemon::start(&["--drain", "60", "--stop-spread", "0"]);
    let addr = d.addr;
    let mut open = subscribe(addr, "drained");
    d.send_sigterm();
    d.stderr_line("draining for 60 s (--drain)", Duration::from_secs(10));
    // A balancer sees the instance going; a new stream is sent elsewhere.
    let (head, body) = fetch(addr, "GET", "/healthz", &[], b"");
    assert_eq!(head.status, 503);
    assert_eq!(
        body.trim_end(),
        "draining: the server is stopping (--drain)"
    );
    assert!(
        common::retry_after_ok(head.header("Retry-After")),
        "{}",
        head.raw
    );
    let (head, body) = fetch(addr, "GET", "/events/drained", &[], b"");
    assert_eq!(head.status, 503);
    assert!(body.contains("the server is stopping (--drain)"), "{body}");
    assert_eq!(fetch(addr, "GET", "/mux", &[], b"").0.status, 503);
    // The open stream still gets what is published.
    let (head, _) = fetch(addr, "POST", "/events/drained", &[], b"still here");
    assert_eq!(head.status, 200);
    assert_eq!(data(&open.events(1)), ["still here"]);
    // A second signal ends the drain at once.
    let (took, status) = d.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(open.events_to_end().len(), 0);
}
