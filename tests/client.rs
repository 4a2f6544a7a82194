//! `ssed listen` and `ssed publish`, run as the real binary against ssed
//! itself and against a scripted server that sends hand-written bytes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

fn ssed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(args)
        .env_remove("SSED_PUBLISH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run ssed")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A server that answers its n-th connection with the n-th script: byte
/// pieces written one by one, then the connection closed (or, if the last
/// piece is empty, held open until the server is dropped). It records each
/// request head.
struct Scripted {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

impl Scripted {
    fn new(scripts: Vec<Vec<Vec<u8>>>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for script in scripts {
                let Ok((mut conn, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                if head.is_empty() {
                    // The self-connect of Drop: stop.
                    return;
                }
                recorded.lock().unwrap().push(head);
                let hold = script.last().is_some_and(Vec::is_empty);
                for piece in script {
                    if conn.write_all(&piece).and_then(|()| conn.flush()).is_err() {
                        break;
                    }
                }
                if hold {
                    held.push(conn);
                }
            }
        });
        Scripted {
            addr,
            requests,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// The request lines received, in order.
    fn request_lines(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r.lines().next().unwrap_or("").to_string())
            .collect()
    }
}

/// A script that answers with a 302 to `location`.
fn redirect(location: &str) -> Vec<Vec<u8>> {
    vec![
        format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n")
            .into_bytes(),
    ]
}

impl Drop for Scripted {
    fn drop(&mut self) {
        // Wake an accept that waits for a connection the test never made.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pieces(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

#[test]
fn bom_split_crlf_retry_and_reconnect_with_last_event_id() {
    let server = Scripted::new(vec![
        pieces(&[
            SSE_HEAD.as_bytes(),
            b"\xEF\xBB",
            b"\xBFretry: 50\r",
            b"\n\r\nid: 1\r\ndata: a\r",
            b"\n\r",
            b"\n",
            b"id: 2\ndata: half",
        ]),
        pieces(&[SSE_HEAD.as_bytes(), b"data: b\n\n"]),
    ]);
    let out = ssed(&["listen", &server.url("/s"), "--json", "--events", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The half event (id 2) was never dispatched: the id buffer it set was
    // discarded with it, so the reconnection carries id 1.
    assert_eq!(
        stdout(&out),
        "{\"event\":\"message\",\"data\":\"a\",\"id\":\"1\"}\n\
         {\"error\":\"".to_string()
            + &server.url("/s")
            + ": the stream ended; reconnecting in 0.1 s\"}\n{\"event\":\"message\",\"data\":\"b\",\"id\":\"1\"}\n"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].starts_with("GET /s HTTP/1.1\r\n"));
    assert!(requests[0].contains("Accept: text/event-stream\r\n"));
    assert!(requests[0].contains("Cache-Control: no-cache\r\n"));
    assert!(!requests[0].contains("Last-Event-ID"));
    assert!(
        requests[1].contains("Last-Event-ID: 1\r\n"),
        "{}",
        requests[1]
    );
}

#[test]
fn retry_sets_the_reconnection_time_and_is_reported() {
    let server = Scripted::new(vec![pieces(&[
        SSE_HEAD.as_bytes(),
        b"retry: 7\ndata: x\n\n",
    ])]);
    let out = ssed(&["listen", &server.url("/"), "--json", "--events", "1"]);
    assert_eq!(
        stdout(&out),
        "{\"event\":\"message\",\"data\":\"x\",\"id\":\"\",\"retry\":7}\n"
    );
}

#[test]
fn plain_output_comments_and_multiline_data() {
    let server = Scripted::new(vec![pieces(&[
        SSE_HEAD.as_bytes(),
        b": hi\n\nevent: e\ndata: one\ndata: two\n\n",
    ])]);
    let out = ssed(&["listen", &server.url("/"), "--comments", "--events", "1"]);
    // A named event shows its name first.
    assert_eq!(stdout(&out), ": hi\n[e] one\ntwo\n");
    // A gap is a notice, not data: on stderr; a message is its data alone.
    let server = Scripted::new(vec![pieces(&[
        SSE_HEAD.as_bytes(),
        b"event: gap\ndata: {\"through\":\"r-5\"}\n\ndata: after\n\n",
    ])]);
    let out = ssed(&["listen", &server.url("/"), "--events", "2"]);
    assert_eq!(stdout(&out), "after\n");
    assert_eq!(stderr(&out), "ssed: gap: {\"through\":\"r-5\"}\n");
    let server = Scripted::new(vec![pieces(&[SSE_HEAD.as_bytes(), b": hi\n\ndata: x\n\n"])]);
    let out = ssed(&[
        "listen",
        &server.url("/"),
        "--comments",
        "--json",
        "--events",
        "1",
    ]);
    assert_eq!(
        stdout(&out),
        "{\"comment\":\"hi\"}\n{\"event\":\"message\",\"data\":\"x\",\"id\":\"\"}\n"
    );
}

#[test]
fn a_silent_connection_times_out_and_reconnects() {
    let server = Scripted::new(vec![
        pieces(&[SSE_HEAD.as_bytes(), b"id: 9\ndata: a\n\n", b""]),
        pieces(&[SSE_HEAD.as_bytes(), b"data: b\n\n"]),
    ]);
    let out = ssed(&[
        "listen",
        &server.url("/"),
        "--timeout",
        "0.2",
        "--retry",
        "100",
        "--json",
        "--events",
        "2",
    ]);
    let lines: Vec<_> = stdout(&out).lines().map(common::json).collect();
    assert_eq!(lines.len(), 3, "{}", stdout(&out));
    assert_eq!(lines[0]["data"], "a");
    assert_eq!(
        lines[1]["error"],
        format!(
            "{}: no event or comment for 0.2 s; reconnecting in 0.1 s",
            server.url("/")
        )
    );
    assert_eq!(lines[2]["data"], "b");
    assert!(server.requests()[1].contains("Last-Event-ID: 9\r\n"));
}

#[test]
fn no_reconnect_exits_when_the_stream_ends() {
    let server = Scripted::new(vec![pieces(&[SSE_HEAD.as_bytes(), b"data: only\n\n"])]);
    let out = ssed(&["listen", &server.url("/"), "--no-reconnect"]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "only\n")
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn status_204_means_stop() {
    let server = Scripted::new(vec![pieces(&[b"HTTP/1.1 204 No Content\r\n\r\n"])]);
    let out = ssed(&["listen", &server.url("/")]);
    assert_eq!(
        (
            out.status.code(),
            stdout(&out).as_str(),
            stderr(&out).as_str()
        ),
        (Some(0), "", "")
    );
}

#[test]
fn redirects_are_followed() {
    let server = Scripted::new(vec![
        pieces(&[b"HTTP/1.1 302 Found\r\nLocation: /moved?x=1\r\nContent-Length: 0\r\n\r\n"]),
        pieces(&[
            b"HTTP/1.1 308 Permanent Redirect\r\nLocation: there\r\nContent-Length: 0\r\n\r\n",
        ]),
        pieces(&[SSE_HEAD.as_bytes(), b"data: arrived\n\n"]),
    ]);
    let out = ssed(&["listen", &server.url("/start"), "--events", "1"]);
    assert_eq!(stdout(&out), "arrived\n", "{}", stderr(&out));
    let targets = server.request_lines();
    assert_eq!(
        targets,
        [
            "GET /start HTTP/1.1",
            "GET /moved?x=1 HTTP/1.1",
            "GET /there HTTP/1.1"
        ]
    );

    let server = Scripted::new(vec![pieces(&[
        b"HTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n",
    ])]);
    let out = ssed(&["listen", &server.url("/")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "ssed: {}: 301 redirect without a Location\n",
            server.url("/")
        )
    );
}

#[test]
fn errors_are_final_and_name_the_url() {
    let server = Scripted::new(vec![pieces(&[
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi",
    ])]);
    let out = ssed(&["listen", &server.url("/page")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "ssed: {}: expected Content-Type text/event-stream, got text/html\n",
            server.url("/page")
        )
    );

    let server = Scripted::new(vec![
        pieces(&[b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nboom\n"]),
        pieces(&[SSE_HEAD.as_bytes()]),
    ]);
    let out = ssed(&["listen", &server.url("/x")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "ssed: {}: 500 Internal Server Error: boom\n",
            server.url("/x")
        )
    );
    assert_eq!(server.requests().len(), 1, "a 500 must not be retried");

    let out = ssed(&["listen", "https://example.com/"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no TLS built in"), "{}", stderr(&out));
}

#[test]
fn posts_a_body_for_streaming_apis() {
    let server = Scripted::new(vec![pieces(&[SSE_HEAD.as_bytes(), b"data: ok\n\n"])]);
    let out = ssed(&[
        "listen",
        &server.url("/chat"),
        "-d",
        "{\"q\":1}",
        "-H",
        "Content-Type: application/json",
        "--events",
        "1",
    ]);
    assert_eq!(stdout(&out), "ok\n");
    let req = &server.requests()[0];
    assert!(req.starts_with("POST /chat HTTP/1.1\r\n"), "{req}");
    assert!(
        req.contains("Content-Length: 7\r\n") && req.contains("Content-Type: application/json\r\n"),
        "{req}"
    );
}

#[test]
fn listens_to_ssed_itself() {
    let server = common::start(|_| {});
    let url = format!("http://{}/stream-stocks", server.addr());
    let out = ssed(&["listen", &url, "--json", "--events", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<_> = stdout(&out).lines().map(common::json).collect();
    assert_eq!(lines.len(), 3);
    for line in lines {
        let symbol = line["event"].as_str().unwrap();
        assert!(["AAPL", "GOOGL", "MSFT"].contains(&symbol), "{line}");
        assert_eq!(
            common::json(line["data"].as_str().unwrap())["symbol"],
            symbol
        );
    }
}

#[test]
fn a_closed_stdout_exits_quietly() {
    let server = common::start(|_| {});
    let url = format!("http://{}/stream-time?interval_ms=10", server.addr());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["listen", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("The time is "));
    // The reader is gone: the next write fails with a broken pipe.
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!((status.code(), err.as_str()), (Some(0), ""));
}

#[test]
fn publish_prints_the_reply_or_the_error() {
    let server = common::start(|_| {});
    let url = format!("http://{}/messages", server.addr());
    let out = ssed(&["publish", &url, "{\"message\": \"hi\"}"]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "{\"status\":\"Received\",\"message\":\"hi\"}\n")
    );
    let out = ssed(&["publish", &url, "not json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), format!("ssed: {url}: 400 Bad Request: body is not valid JSON: expected ident at line 1 column 2\n"));

    let hub = Scripted::new(vec![pieces(&[
        b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"id\":1}",
    ])]);
    let out = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["publish", &hub.url("/events/news"), "--event", "alert"])
        .env("SSED_PUBLISH_TOKEN", "s3cret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"line one\nline two")?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(stdout(&out), "{\"id\":1}\n");
    let req = &hub.requests()[0];
    assert!(
        req.starts_with("POST /events/news?event=alert HTTP/1.1\r\n"),
        "{req}"
    );
    assert!(req.contains("Authorization: Bearer s3cret\r\n"), "{req}");
    assert!(req.contains("Content-Length: 17\r\n"), "{req}");
}

/// The peak resident memory of process `pid` since it started its
/// program, in KiB (`VmHWM`: it starts afresh at exec, unlike `wait4`'s,
/// which counts the parent's pages shared before it).
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn what_a_server_sends_cannot_grow_the_client() {
    const MIB: usize = 1 << 20;
    // 64 MiB each: a line that never ends, data lines with no blank line,
    // an id line that never ends; and an id over its own limit.
    let endless: Vec<(Vec<u8>, &str)> = vec![
        (
            vec![b'a'; 64 * MIB],
            "a line of the stream is longer than 1048640 bytes (--max-event-bytes)",
        ),
        (
            b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
                .repeat(64 * MIB / 64),
            "an event's data is longer than 1048576 bytes (--max-event-bytes)",
        ),
        (
            [b"id: ".to_vec(), vec![b'9'; 64 * MIB]].concat(),
            "a line of the stream is longer than 1048640 bytes (--max-event-bytes)",
        ),
        (
            [b"id: ".to_vec(), vec![b'9'; 8192], b"\n".to_vec()].concat(),
            "an event id is longer than 4096 bytes",
        ),
    ];
    for (body, why) in endless {
        // The stream breaks the limit; the client drops the event, says so,
        // and reconnects, to a server that then holds the connection open.
        let server = Scripted::new(vec![
            vec![
                SSE_HEAD.as_bytes().to_vec(),
                b"data: first\n\n".to_vec(),
                body,
            ],
            pieces(&[SSE_HEAD.as_bytes(), b""]),
        ]);
        let url = server.url("/");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssed"))
            .args(["listen", &url, "--json", "--retry", "100"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let note = lines.next().unwrap().unwrap();
        common::wait_until(common::READ_TIMEOUT, "the reconnection", || {
            server.requests().len() == 2
        });
        let peak = peak_kib(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            first,
            "{\"event\":\"message\",\"data\":\"first\",\"id\":\"\"}"
        );
        let note = common::json(&note)["error"].as_str().unwrap().to_string();
        assert!(
            note.starts_with(&format!(
                "{url}: {why}; the event was dropped; reconnecting in "
            )),
            "{note}"
        );
        assert!(peak < 16 * 1024, "{why}: the client grew to {peak} KiB");
    }
}

#[test]
fn retry_from_the_server_is_kept_between_100_ms_and_an_hour() {
    // retry: 0, with nothing delivered: at least 100 ms, then backing off.
    let zero = pieces(&[SSE_HEAD.as_bytes(), b"retry: 0\n\n"]);
    let server = Scripted::new(vec![zero.clone(), zero.clone(), zero.clone(), zero]);
    let out = ssed(&["listen", &server.url("/"), "--json", "--max-retries", "3"]);
    assert_eq!(out.status.code(), Some(1));
    let waits: Vec<f64> = stdout(&out)
        .lines()
        .map(common::json)
        .map(|l| {
            let note = l["error"].as_str().unwrap().to_string();
            note.rsplit_once("reconnecting in ")
                .unwrap()
                .1
                .trim_end_matches(" s")
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(waits.len(), 3, "{}", stdout(&out));
    for (wait, base) in waits.iter().zip([0.1, 0.2, 0.4]) {
        assert!(*wait >= base && *wait <= base * 1.25 + 0.05, "{waits:?}");
    }
    assert!(
        stderr(&out).ends_with("gave up after 3 retries\n"),
        "{}",
        stderr(&out)
    );
    // A retry that would be 3 billion years: an hour.
    let server = Scripted::new(vec![pieces(&[
        SSE_HEAD.as_bytes(),
        b"retry: 99999999999999999999\n\n",
    ])]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["listen", &server.url("/"), "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.ends_with("the stream ended; reconnecting in 3600.0 s\"}\n"),
        "{line}"
    );
}

#[test]
fn a_server_that_answers_then_says_nothing_counts_against_max_retries() {
    let silent = pieces(&[SSE_HEAD.as_bytes(), b""]);
    let server = Scripted::new(vec![silent.clone(), silent.clone(), silent]);
    let out = ssed(&[
        "listen",
        &server.url("/"),
        "--timeout",
        "0.2",
        "--retry",
        "100",
        "--max-retries",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).lines().last().unwrap(),
        format!(
            "ssed: {}: no event or comment for 0.2 s; gave up after 1 retries",
            server.url("/")
        )
    );
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_drip_of_bytes_does_not_keep_a_dead_stream_alive() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dripper = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = [0u8; 1024];
        let _ = conn.read(&mut head);
        conn.write_all(SSE_HEAD.as_bytes()).unwrap();
        conn.write_all(b"data: ").unwrap();
        // A byte every 20 ms, never a whole line: until the client leaves.
        for _ in 0..500 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            if conn.write_all(b"x").is_err() {
                return true;
            }
        }
        false
    });
    let url = format!("http://{addr}/");
    let out = ssed(&["listen", &url, "--timeout", "0.3", "--no-reconnect"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!("ssed: {url}: no event or comment for 0.3 s\n")
    );
    assert!(
        dripper.join().unwrap(),
        "the client left while the server dripped"
    );
}

#[test]
fn credentials_are_not_sent_to_another_origin_after_a_redirect() {
    let credentials = [
        "-H",
        "Authorization: Bearer s3cret",
        "-H",
        "Cookie: session=1",
        "-H",
        "X-Other: kept",
    ];
    let stream = || pieces(&[SSE_HEAD.as_bytes(), b"data: ok\n\n"]);
    // Another host, another port, and with --location-trusted; then the
    // same origin, where they are kept.
    for (to_host, trusted) in [
        ("localhost", false),
        ("127.0.0.1", false),
        ("localhost", true),
    ] {
        let b = Scripted::new(vec![stream()]);
        let a = Scripted::new(vec![redirect(&format!(
            "http://{to_host}:{}/there",
            b.addr.port()
        ))]);
        let url = a.url("/start");
        let mut args = vec!["listen", url.as_str(), "--events", "1"];
        args.extend(credentials);
        if trusted {
            args.push("--location-trusted");
        }
        let out = ssed(&args);
        assert_eq!(stdout(&out), "ok\n", "{}", stderr(&out));
        assert!(a.requests()[0].contains("Authorization: Bearer s3cret\r\n"));
        let req = &b.requests()[0];
        assert!(req.contains("X-Other: kept\r\n"), "{req}");
        assert_eq!(
            req.contains("Authorization:"),
            trusted,
            "to {to_host}, trusted {trusted}: {req}"
        );
        assert_eq!(req.contains("Cookie:"), trusted, "{req}");
    }
    let a = Scripted::new(vec![redirect("/there"), stream()]);
    let url = a.url("/start");
    let mut args = vec!["listen", url.as_str(), "--events", "1"];
    args.extend(credentials);
    assert_eq!(stdout(&ssed(&args)), "ok\n");
    let req = &a.requests()[1];
    assert!(
        req.starts_with("GET /there ") && req.contains("Authorization: Bearer s3cret\r\n"),
        "{req}"
    );
}

#[test]
fn redirects_are_resolved_as_rfc_3986_says() {
    let server = Scripted::new(vec![
        redirect(""),
        redirect("?page=2"),
        redirect("../up"),
        redirect("#f"),
        redirect("/next?u=http://example.invalid/"),
        pieces(&[SSE_HEAD.as_bytes(), b"data: arrived\n\n"]),
    ]);
    let out = ssed(&["listen", &server.url("/start/c/y?orig=1"), "--events", "1"]);
    assert_eq!(stdout(&out), "arrived\n", "{}", stderr(&out));
    let targets = server.request_lines();
    assert_eq!(
        targets,
        [
            "GET /start/c/y?orig=1 HTTP/1.1",
            "GET /start/c/y?orig=1 HTTP/1.1",
            "GET /start/c/y?page=2 HTTP/1.1",
            "GET /start/up HTTP/1.1",
            "GET /start/up HTTP/1.1",
            "GET /next?u=http://example.invalid/ HTTP/1.1",
        ]
    );
}

/// `ssed publish URL --lines ARGS` with its stdin a pipe, and its stderr
/// line by line on a channel.
fn publish_lines(
    url: &str,
    args: &[&str],
) -> (
    std::process::Child,
    std::process::ChildStdin,
    std::sync::mpsc::Receiver<String>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args(["publish", url, "--lines"])
        .args(args)
        .env_remove("SSED_PUBLISH_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ssed publish");
    let stdin = child.stdin.take().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, stdin, rx)
}

/// Waits for `child` to exit, for at most `within`.
fn exit_code(child: &mut std::process::Child, within: Duration) -> Option<i32> {
    let mut status = None;
    common::wait_until(within, "the process to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.and_then(|s| s.code())
}

/// The stderr line that contains `text`, within `within`.
fn line_with(rx: &std::sync::mpsc::Receiver<String>, text: &str, within: Duration) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(_) => panic!("no stderr line with {text:?}"),
        }
    }
}

#[test]
fn publish_lines_sends_each_line_as_it_comes_over_one_connection() {
    let server = common::start(|c| c.idle_timeout = Duration::from_millis(300));
    let addr = server.addr();
    let mut sub = common::Conn::open_stream(addr, "/events/build");
    let url = format!("http://{addr}/events/build");
    let (mut child, mut stdin, err) = publish_lines(&url, &["--event", "log"]);
    // Each line is published while the input is still open.
    stdin.write_all(b"compiling\n").unwrap();
    let first = sub.events(1).remove(0);
    assert_eq!(
        (first.event.as_str(), first.data.as_str()),
        ("log", "compiling")
    );
    stdin.write_all(b"linking\r\n").unwrap();
    assert_eq!(sub.events(1)[0].data, "linking");
    // The subscriber and the publisher's one connection.
    assert_eq!(server.open_connections(), 2);
    // A quiet input: the server closes the idle connection, and the next
    // line goes over a new one, without a word on stderr.
    common::wait_until(Duration::from_secs(10), "the idle close", || {
        server.open_connections() == 1
    });
    stdin.write_all(b"\xffdone").unwrap();
    drop(stdin);
    assert_eq!(sub.events(1)[0].data, "\u{FFFD}done");
    assert_eq!(exit_code(&mut child, Duration::from_secs(10)), Some(0));
    assert!(err.try_iter().next().is_none());
}

#[test]
fn publish_lines_waits_for_a_server_that_is_away_and_says_what_it_dropped() {
    use socket2::{Domain, Socket, Type};
    // A port bound but not listening: connections are refused, and no one
    // else can take it until ssed does.
    let holder = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    holder
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let addr = holder.local_addr().unwrap().as_socket().unwrap();
    let url = format!("http://{addr}/events/job");
    let (mut child, mut stdin, err) = publish_lines(&url, &["--queue", "1K"]);
    // Ten lines of 200 bytes; the queue holds five.
    for i in 0..10 {
        writeln!(stdin, "{i} {}", "x".repeat(197)).unwrap();
    }
    drop(stdin);
    line_with(&err, "Connection refused", Duration::from_secs(10));
    let dropped = line_with(&err, "were dropped", Duration::from_secs(10));
    drop(holder);
    let server = common::start(|c| c.addr = addr.to_string());
    assert_eq!(exit_code(&mut child, Duration::from_secs(20)), Some(1));
    let last = err.iter().last().unwrap();
    // What arrived is the newest lines, in order; what did not is counted.
    let (_, topics) = common::fetch(addr, "GET", "/topics", &[], b"");
    let retained = common::json(&topics)[0]["retained"].as_u64().unwrap() as usize;
    let mut sub = common::Conn::open_stream(addr, "/events/job?last=10");
    let got: Vec<String> = sub
        .events(retained)
        .into_iter()
        .map(|e| e.data.split(' ').next().unwrap().to_string())
        .collect();
    assert!(
        got.ends_with(&["5", "6", "7", "8", "9"].map(String::from)),
        "{got:?}"
    );
    let lost = 10 - retained;
    assert_eq!(
        last,
        format!("ssed: {url}: {lost} lines were not published")
    );
    assert!(
        dropped.ends_with(" lines were dropped while the server could not be reached (--queue)"),
        "{dropped}"
    );
    drop(server);
}

#[test]
fn publish_lines_gives_up_after_max_retries_and_counts_every_line() {
    let url = "http://127.0.0.1:1/events/job";
    let (mut child, mut stdin, err) = publish_lines(url, &["--max-retries", "1"]);
    stdin.write_all(b"a\nb\nc\n").unwrap();
    drop(stdin);
    assert_eq!(exit_code(&mut child, Duration::from_secs(10)), Some(1));
    let said: Vec<String> = err.iter().collect();
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(said[0].ends_with("; trying again in 0.1 s"), "{said:?}");
    assert!(
        said[1].ends_with("; gave up after 2 attempts; 3 lines were not published"),
        "{said:?}"
    );
}

#[test]
fn listen_stops_at_the_end_of_a_finished_stream() {
    let server = common::start(|c| c.retry_ms = 100);
    let url = format!(
        "http://{}/stream-training?epochs=1&steps=2&step_ms=0",
        server.addr()
    );
    let out = ssed(&["listen", &url, "--timeout", "10"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Once: the reconnection after the last event is answered 204.
    assert_eq!(
        stdout(&out),
        "[progress] {\"epoch\": 1, \"total_epochs\": 1, \"progress_percent\": 50.0, \"loss\": 0.6}\n\
         [progress] {\"epoch\": 1, \"total_epochs\": 1, \"progress_percent\": 100.0, \"loss\": 0.1}\n\
         [complete] Training complete!\n"
    );
}

#[test]
fn publish_reads_data_as_curl_d_does_unless_text() {
    let server = common::start(|_| {});
    let addr = server.addr();
    let mut sub = common::Conn::open_stream(addr, "/events/x");
    let url = format!("http://{addr}/events/x");
    for args in [
        vec!["publish", &url, r#"{"data": 1}"#],
        vec!["publish", &url, r#"{"data": 1}"#, "--text"],
        vec!["publish", &url, "plain words"],
    ] {
        let out = ssed(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
    // The same body by curl's rules: a form-typed body.
    let (head, _) = common::fetch(
        addr,
        "POST",
        "/events/x",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        br#"{"data": 1}"#,
    );
    assert_eq!(head.status, 200);
    let data: Vec<String> = sub.events(4).into_iter().map(|e| e.data).collect();
    assert_eq!(data, ["1", r#"{"data": 1}"#, "plain words", "1"]);
}

#[test]
fn delete_deletes_a_topic_and_listen_stops_on_it() {
    let server = common::start(|c| c.heartbeat = Duration::from_millis(50));
    let base = format!("http://{}", server.addr());
    let out = ssed(&["publish", &format!("{base}/events/news"), "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A listener: it prints the event, then, told the topic was deleted,
    // says so and exits 0 instead of reconnecting.
    let mut listener = Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args([
            "listen",
            &format!("{base}/events/news?last=1"),
            "--retry",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(listener.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "hello");
    let out = ssed(&["delete", &format!("{base}/events/news")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\"topic\":\"news\",\"deleted\":true}\n");
    // A notice, as a gap is: on stderr; stdout simply ends.
    assert!(lines.next().is_none());
    let status = listener.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut err = String::new();
    listener
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("the topic was deleted"), "{err}");
    // Again: 404, exit 1, the reason on stderr.
    let out = ssed(&["delete", &format!("{base}/events/news")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("404 Not Found: no topic \"news\""),
        "{}",
        stderr(&out)
    );
    // A bad command line: 2.
    assert_eq!(ssed(&["delete"]).status.code(), Some(2));
    assert_eq!(ssed(&["delete", &base, "--frob"]).status.code(), Some(2));
}
