//! `ssed listen` and `ssed publish`, run as the real binary against ssed
//! itself and against a scripted server that sends hand-written bytes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
    assert_eq!(stdout(&out), ": hi\none\ntwo\n");
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
        "10",
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
            "{}: no data for 0.2 s; reconnecting in 0.0 s",
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
    let targets: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.lines().next().unwrap().to_string())
        .collect();
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
