//! The `ssed` binary: start-up line, help, and errors with exit codes.

mod common;

use common::fetch;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

fn ssed() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ssed"));
    // The tests choose every setting; none may come from the caller's shell.
    for (name, _) in std::env::vars() {
        if name.starts_with("SSED_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Kills the server when the test ends, even on failure.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts ssed with `args` (and `env`) and returns its first line of output.
fn start_line(args: &[&str], env: &[(&str, &str)]) -> (Running, String) {
    let mut child = ssed()
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run ssed");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Running(child), line)
}

/// Starts `ssed serve` with `args` and reads the address it prints.
fn serve(args: &[&str]) -> (Running, SocketAddr) {
    let (running, line) = start_line(args, &[]);
    (running, address(&line))
}

fn address(line: &str) -> SocketAddr {
    line.strip_prefix("ssed listening on http://")
        .and_then(|rest| rest.split_once("/ (").map(|(a, _)| a))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected start-up line {line:?}"))
}

#[test]
fn prints_the_bound_address_and_serves() {
    let (_server, addr) = serve(&["--addr", "127.0.0.1:0"]);
    assert_ne!(addr.port(), 0);
    let (head, body) = fetch(addr, "GET", "/healthz", &[], b"");
    assert_eq!((head.status, body.as_str()), (200, "ok\n"));
}

#[test]
fn reads_settings_from_the_environment() {
    let (_server, line) = start_line(
        &["serve"],
        &[("SSED_ADDR", "127.0.0.1:0"), ("SSED_MAX_STREAMS", "1")],
    );
    let addr = address(&line);
    let _one = common::Conn::open_stream(addr, "/sse");
    assert_eq!(fetch(addr, "GET", "/sse", &[], b"").0.status, 503);
}

#[test]
fn help_and_version() {
    let out = ssed().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--addr",
        "--www",
        "--cors-origin",
        "--keepalive",
        "--max-streams",
        "--write-timeout",
        "--max-connections",
        "--header-timeout",
        "--idle-timeout",
        "--access-log",
        "--history-total",
    ] {
        assert!(help.contains(flag), "help does not mention {flag}");
    }
    let out = ssed().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("ssed {}\n", env!("CARGO_PKG_VERSION"))
    );
    // As commands, the same.
    let run = |args: &[&str]| {
        let out = ssed().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run(&["version"]), run(&["--version"]));
    assert_eq!(run(&["help"]), help);
    assert_eq!(run(&["help", "listen"]), run(&["listen", "--help"]));
    assert_eq!(run(&["help", "publish"]), run(&["publish", "--help"]));
}

#[test]
fn a_port_alone_listens_on_every_interface() {
    let free = common::free_port();
    let (_running, line) = start_line(&["--addr", &format!(":{free}")], &[]);
    assert!(
        line.starts_with(&format!("ssed listening on http://0.0.0.0:{free}/ ")),
        "{line}"
    );
    // Reached through loopback, one of every interface.
    let addr: SocketAddr = format!("127.0.0.1:{free}").parse().unwrap();
    assert_eq!(fetch(addr, "GET", "/healthz", &[], b"").0.status, 200);
}

#[test]
fn bad_arguments_exit_2_naming_them() {
    let cases: [(&[&str], &str); 6] = [
        (&["--keepalive", "soon"], "ssed: invalid value \"soon\" for --keepalive: expected seconds from 0.01 to 3600\n"),
        (&["--bogus"], "ssed: unknown option \"--bogus\"\n"),
        (&["--addr", "nowhere"], "ssed: invalid value \"nowhere\" for --addr: expected HOST:PORT, such as 127.0.0.1:8000, [::1]:0 or :8000 (every interface)\n"),
        (&["--max-streams"], "ssed: --max-streams needs a value\n"),
        // A URL with a password is not repeated: it would land in logs.
        (&["--redis", "http://app:secret@h"], "ssed: invalid value for --redis: expected redis://, not http://\n"),
        (&["--redis", "redis://app:secret@h/x"], "ssed: invalid value for --redis: the database must be a number, not \"x\"\n"),
    ];
    for (args, first_line) in cases {
        let out = ssed().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            err,
            format!("{first_line}Try 'ssed --help' for more information.\n"),
            "{args:?}"
        );
    }
    let out = ssed().env("SSED_KEEPALIVE", "0").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .starts_with("ssed: invalid value \"0\" for SSED_KEEPALIVE"));
}

#[test]
fn an_address_in_use_exits_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = ssed().args(["--addr", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("ssed: address {addr} is already in use; choose another with --addr HOST:PORT (port 0 picks a free one)\n")
    );
}

#[test]
fn a_missing_www_dir_exits_1_naming_it() {
    let out = ssed()
        .args(["--addr", "127.0.0.1:0", "--www", "/no/such/dir"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("ssed: --www /no/such/dir: "), "{err}");
}

#[test]
fn the_start_up_line_warns_of_an_open_hub_on_other_hosts() {
    let (_open, line) = start_line(&["--addr", "0.0.0.0:0"], &[]);
    assert!(
        line.starts_with("ssed listening on http://0.0.0.0:"),
        "{line}"
    );
    assert!(
        line.ends_with(
            "; the hub is open to every host that can reach it: see --publish-token and --subscribe-token)\n"
        ),
        "{line}"
    );
    // With both tokens, or on loopback, the line is just the address.
    let (_closed, line) = start_line(
        &[
            "--addr",
            "0.0.0.0:0",
            "--publish-token",
            "a",
            "--subscribe-token",
            "b",
        ],
        &[],
    );
    assert!(!line.contains("open to every host"), "{line}");
    let (_local, line) = start_line(&["--addr", "127.0.0.1:0"], &[]);
    assert!(!line.contains("open to every host"), "{line}");
}

#[test]
fn the_start_up_line_says_what_it_was_sized_for() {
    let (_server, line) = start_line(&["--addr", "127.0.0.1:0", "--max-connections", "50"], &[]);
    assert!(
        line.contains("/ (sized for ")
            && line.ends_with(
                " at most 50 connections, set by --max-connections; 64 MiB of history)\n"
            ),
        "{line}"
    );
    let (_server, line) = start_line(&["--addr", "127.0.0.1:0"], &[]);
    let named = ["the open-files limit", "memory"]
        .iter()
        .any(|limit| line.contains(&format!(" connections, set by {limit}; ")));
    assert!(named, "{line}");
    // A small host: everything that costs memory is sized from it.
    let (_server, line) = start_line(&["--addr", "127.0.0.1:0", "--memory", "12M"], &[]);
    assert!(
        line.ends_with(
            "/ (sized for 12 MiB: at most 576 connections, set by memory; 960 KiB of history)\n"
        ),
        "{line}"
    );
}

#[test]
fn a_flag_that_asks_for_more_than_the_memory_holds_says_so() {
    let mut child = ssed()
        .args([
            "--addr",
            "127.0.0.1:0",
            "--memory",
            "12M",
            "--history-total",
            "64M",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut err)
        .unwrap();
    let _guard = Running(child);
    assert_eq!(
        err,
        "ssed: note: --history-total 64 MiB is more than 12 MiB holds (960 KiB); past the memory, connections and publishes are refused with 503\n"
    );
}

#[test]
fn warns_when_max_connections_is_more_than_the_system_holds() {
    let mut child = ssed()
        .args(["--addr", "127.0.0.1:0", "--max-connections", "1000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut err)
        .unwrap();
    let _guard = Running(child);
    assert!(
        err.starts_with(
            "ssed: note: --max-connections 1000000 is more than this system can hold ("
        ),
        "{err}"
    );
}

/// `HH:MM:SS` of `unix_secs` shifted by `offset` seconds.
fn clock_at(unix_secs: u64, offset: u64) -> String {
    let s = (unix_secs + offset) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn the_clocks_show_local_time() {
    // POSIX TZ: a zone 5 h 30 min east of UTC, without summer time.
    let (_server, line) = start_line(&["--addr", "127.0.0.1:0"], &[("TZ", "XST-5:30")]);
    let addr = address(&line);
    let offset = 5 * 3600 + 30 * 60;
    for (target, prefix) in [
        ("/stream-time", "The time is "),
        ("/event_stream", "Server time: "),
    ] {
        let before = unix_now();
        let mut conn = common::Conn::open_stream(addr, target);
        let data = conn.events(1).remove(0).data;
        let after = unix_now();
        assert!(data.starts_with(prefix), "{data:?}");
        let shown: Vec<String> = (before..=after).map(|t| clock_at(t, offset)).collect();
        assert!(
            shown.iter().any(|hms| data.contains(hms.as_str())),
            "{target}: {data:?} shows none of {shown:?}"
        );
    }
}

#[test]
fn mistyped_commands_and_options_get_a_hint_and_exit_2() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ssed"))
            .args(args)
            .output()
            .unwrap()
    };
    for (args, said) in [
        (&["help", "bogus"][..], "unexpected argument \"bogus\""),
        (&["lsten", "http://x/"][..], "did you mean ssed listen?"),
        (&["--adr", "127.0.0.1:0"][..], "did you mean --addr?"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(said), "{args:?}: {err}");
    }
    // A host that does not resolve: said at once, not retried forever.
    let out = run(&["listen", "http://no-such-host.invalid/sse"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot resolve no-such-host.invalid"));
}
