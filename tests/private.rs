//! Private streams: signed tokens (`--token-key`) and the grants they
//! carry, over real sockets. Every token here is signed by Python's own
//! `hmac` and `hashlib` (an implementation independent of ssed's), never
//! by ssed's code.

mod common;

use common::{fetch, json, sign_as, start, Conn, Daemon};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEY: &str = "a test key of thirty-two bytes or more";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: &serde_json::Value) -> String {
    sign_as(r#"{"alg":"HS256","typ":"JWT"}"#, &claims.to_string(), KEY)
}

/// A user's token: reads its own topics and the sensors, publishes to its
/// own topics, for an hour.
fn user_token() -> String {
    sign(&serde_json::json!({
        "sub": "user 42",
        "exp": now() + 3600,
        "ssed": {"subscribe": ["users/42/*", "sensors/**"], "publish": ["users/42/*"]}
    }))
}

fn with_key() -> ssed::Server {
    start(|c| c.token_key = Some(ssed::jwt::Key::new(KEY.as_bytes()).unwrap()))
}

fn stream(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Conn {
    let mut c = Conn::send(addr, "GET", target, headers, b"");
    let head = c.head();
    assert_eq!(head.status, 200, "{target}: {}", head.raw);
    assert_eq!(c.chunk_str().as_deref(), Some("retry: 2000\n"));
    c
}

fn publish(addr: SocketAddr, topic: &str, token: &str, data: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    fetch(
        addr,
        "POST",
        &format!("/events/{topic}"),
        &[("Authorization", &bearer)],
        data.as_bytes(),
    )
    .0
    .status
}

#[test]
fn grants_and_patterns() {
    let server = with_key();
    let addr = server.addr();
    let token = user_token();
    let q = |target: &str| {
        let sep = if target.contains('?') { '&' } else { '?' };
        format!("{target}{sep}token={token}")
    };
    let mut inbox = stream(addr, &q("/events/users/42/inbox"), &[]);
    let mut sensors = stream(
        addr,
        &q("/events?topic=sensors/kitchen/temp&topic=users/42/alerts"),
        &[],
    );
    assert_eq!(publish(addr, "users/42/inbox", &token, "hello"), 200);
    assert_eq!(inbox.events(1)[0].data, "hello");
    // A topic of another user is neither read nor written.
    assert_eq!(publish(addr, "users/43/inbox", &token, "x"), 403);
    let admin = sign(&serde_json::json!({"ssed": {"publish": ["**"]}}));
    assert_eq!(publish(addr, "sensors/kitchen/temp", &admin, "21.5"), 200);
    assert_eq!(publish(addr, "users/42/alerts", &admin, "smoke"), 200);
    let got: Vec<String> = sensors.events(2).into_iter().map(|m| m.data).collect();
    assert_eq!(got, ["21.5", "smoke"]);
    // 403 names the topic: one segment for *, one or more for **, every
    // topic of a request.
    for (target, topic) in [
        ("/events/users/43/inbox", "users/43/inbox"),
        ("/events/users/42/a/b", "users/42/a/b"),
        ("/events/users/42", "users/42"),
        ("/events/sensors", "sensors"),
        ("/events?topic=users/42/inbox&topic=news", "news"),
        ("/sse", "messages"),
    ] {
        let (head, body) = fetch(addr, "GET", &q(target), &[], b"");
        assert_eq!(head.status, 403, "{target}");
        assert_eq!(
            json(&body)["error"],
            format!("no grant to subscribe to {topic:?}"),
            "{target}"
        );
    }
    let bearer = format!("Bearer {token}");
    let (head, body) = fetch(
        addr,
        "POST",
        "/messages",
        &[("Authorization", &bearer)],
        b"{\"message\":\"x\"}",
    );
    assert_eq!(
        (head.status, json(&body)["error"].as_str()),
        (403, Some("no grant to publish to \"messages\""))
    );
}

#[test]
fn every_bad_token_is_401_with_one_sentence() {
    let server = with_key();
    let addr = server.addr();
    let now = now();
    let claims = serde_json::json!({"exp": now + 3600, "ssed": {"subscribe": ["**"]}}).to_string();
    let good = sign_as(r#"{"alg":"HS256"}"#, &claims, KEY);
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = |s: &str| {
        // The payload of another token, with the good token's signature.
        sign_as(r#"{"alg":"HS256"}"#, s, KEY)
            .split('.')
            .nth(1)
            .unwrap()
            .to_string()
    };
    let changed = format!(
        "{}.{}.{}",
        parts[0],
        b64(
            &serde_json::json!({"exp": now + 3600, "ssed": {"subscribe": ["**"], "admin": true}})
                .to_string()
        ),
        parts[2]
    );
    let cases: Vec<(String, &str)> = vec![
        (
            sign_as(r#"{"alg":"none"}"#, &claims, KEY),
            "the token is signed with none; only HS256 is accepted",
        ),
        (
            sign_as(r#"{"alg":"HS512"}"#, &claims, KEY),
            "the token is signed with HS512; only HS256 is accepted",
        ),
        (
            sign_as(
                r#"{"alg":"HS256"}"#,
                &claims,
                "another key of thirty-two bytes, or more",
            ),
            "the token's signature does not match: another key signed it, or it was changed",
        ),
        (
            changed,
            "the token's signature does not match: another key signed it, or it was changed",
        ),
        (
            sign(&serde_json::json!({"exp": now - 10, "ssed": {"subscribe": ["**"]}})),
            "the token expired",
        ),
        (
            sign(&serde_json::json!({"nbf": now + 600, "ssed": {"subscribe": ["**"]}})),
            "the token is not valid for another",
        ),
        (
            "e30.e30.e30".into(),
            "the token is malformed: its header names no algorithm (alg)",
        ),
        (
            "a.b.c".into(),
            "the token is malformed: its header is not base64url-encoded JSON",
        ),
        (
            sign(&serde_json::json!({"ssed": {"subscribe": "news"}})),
            "the token is malformed: ssed.subscribe is not a list of patterns",
        ),
    ];
    for (token, why) in cases {
        for (target, headers) in [
            (format!("/events/news?token={token}"), vec![]),
            (
                "/events/news".to_string(),
                vec![("Authorization".to_string(), format!("Bearer {token}"))],
            ),
            (
                "/events/news".to_string(),
                vec![("Cookie".to_string(), format!("ssed_token={token}"))],
            ),
        ] {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let (head, body) = fetch(addr, "GET", &target, &headers, b"");
            assert_eq!(head.status, 401, "{token}");
            let error = json(&body)["error"].as_str().unwrap().to_string();
            assert!(error.starts_with(why), "{error:?} / {why:?}");
            assert!(!error.contains('\n'));
            let challenge = head.header("WWW-Authenticate").unwrap();
            assert!(
                challenge.starts_with(
                    r#"Bearer realm="ssed", error="invalid_token", error_description="the token"#
                ),
                "{challenge}"
            );
        }
    }
    // Missing altogether: 401 too, without an error code.
    let (head, body) = fetch(addr, "GET", "/events/news", &[], b"");
    assert_eq!(
        (head.status, json(&body)["error"].as_str()),
        (401, Some("a token is required: send it as Authorization: Bearer TOKEN, ?token=TOKEN or the cookie ssed_token"))
    );
    assert_eq!(
        head.header("WWW-Authenticate"),
        Some(r#"Bearer realm="ssed""#)
    );
}

#[test]
fn tokens_by_header_query_and_cookie_and_publishing_by_header_only() {
    let server = with_key();
    let addr = server.addr();
    let token = user_token();
    let bearer = format!("Bearer {token}");
    let cookie = format!("theme=dark; ssed_token={token}");
    stream(addr, "/events/users/42/a", &[("Authorization", &bearer)]);
    stream(addr, &format!("/events/users/42/a?token={token}"), &[]);
    stream(addr, "/events/users/42/a", &[("Cookie", &cookie)]);
    // A cookie or the query does not publish: any page could.
    for (target, headers) in [
        (format!("/events/users/42/a?token={token}"), vec![]),
        (
            "/events/users/42/a".to_string(),
            vec![("Cookie", cookie.as_str())],
        ),
    ] {
        assert_eq!(fetch(addr, "POST", &target, &headers, b"x").0.status, 401);
    }
    assert_eq!(publish(addr, "users/42/a", &token, "x"), 200);
}

#[test]
fn topics_and_metrics_by_grant() {
    let server = with_key();
    let addr = server.addr();
    let all = sign(&serde_json::json!({"ssed": {"publish": ["**"]}}));
    for topic in ["users/42/inbox", "users/43/inbox", "sensors/a", "news"] {
        assert_eq!(publish(addr, topic, &all, "x"), 200);
    }
    let names = |token: &str| -> Vec<String> {
        let (head, body) = fetch(addr, "GET", &format!("/topics?token={token}"), &[], b"");
        assert_eq!(head.status, 200);
        let mut names: Vec<String> = json(&body)
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["topic"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&user_token()), ["sensors/a", "users/42/inbox"]);
    let admin = sign(&serde_json::json!({"ssed": {"admin": true}}));
    assert_eq!(
        names(&admin),
        ["news", "sensors/a", "users/42/inbox", "users/43/inbox"]
    );
    let (head, body) = fetch(
        addr,
        "GET",
        &format!("/metrics?token={}", user_token()),
        &[],
        b"",
    );
    assert_eq!(head.status, 403);
    assert_eq!(
        json(&body)["error"],
        "no grant to read /metrics: it needs \"admin\": true"
    );
    let (head, body) = fetch(addr, "GET", &format!("/metrics?token={admin}"), &[], b"");
    assert_eq!(head.status, 200);
    assert!(body.contains("ssed_events_published_total"), "{body}");
    // The pages, the demos and health stay open.
    assert_eq!(fetch(addr, "GET", "/healthz", &[], b"").0.status, 200);
    assert_eq!(fetch(addr, "GET", "/hub.html", &[], b"").0.status, 200);
}

#[test]
fn a_stream_ends_with_its_token_and_resumes_with_a_new_one() {
    let server = with_key();
    let addr = server.addr();
    let writer = sign(&serde_json::json!({"ssed": {"publish": ["**"]}}));
    // A token with a second or two left.
    let exp = now() + 2;
    let short = sign(&serde_json::json!({"exp": exp, "ssed": {"subscribe": ["news"]}}));
    let mut sub = stream(addr, &format!("/events/news?token={short}"), &[]);
    assert_eq!(publish(addr, "news", &writer, "one"), 200);
    let first = sub.events(1).remove(0);
    assert_eq!(first.data, "one");
    let rest = sub.events_to_end();
    let ended = now();
    assert!(
        ended >= exp && ended <= exp + 2,
        "ended at {ended}, exp {exp}"
    );
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].event, "expired");
    assert_eq!(
        json(&rest[0].data)["reason"],
        "the token expired; fetch a new one and reconnect with Last-Event-ID"
    );
    // The id the page saw last is still the event's: it resumes there.
    assert_eq!(rest[0].id, first.id);
    assert_eq!(publish(addr, "news", &writer, "two"), 200);
    let fresh = sign(&serde_json::json!({"exp": now() + 60, "ssed": {"subscribe": ["news"]}}));
    let mut again = stream(
        addr,
        &format!("/events/news?token={fresh}"),
        &[("Last-Event-ID", &first.id)],
    );
    assert_eq!(again.events(1)[0].data, "two");
    // The old token opens nothing any more.
    let (head, _) = fetch(
        addr,
        "GET",
        &format!("/events/news?token={short}"),
        &[],
        b"",
    );
    assert_eq!(head.status, 401);
}

#[test]
fn static_tokens_keep_working_beside_a_key() {
    let server = start(|c| {
        c.token_key = Some(ssed::jwt::Key::new(KEY.as_bytes()).unwrap());
        c.subscribe_token = Some("sub-s3cret".into());
        c.publish_token = Some("pub-s3cret".into());
    });
    let addr = server.addr();
    // The static tokens allow all, as without a key.
    let mut sub = stream(addr, "/events/anything?token=sub-s3cret", &[]);
    assert_eq!(publish(addr, "anything", "pub-s3cret", "x"), 200);
    assert_eq!(sub.events(1)[0].data, "x");
    let (head, _) = fetch(
        addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer sub-s3cret")],
        b"",
    );
    assert_eq!(head.status, 200);
    // Signed ones what they grant.
    stream(
        addr,
        &format!("/events/users/42/x?token={}", user_token()),
        &[],
    );
    assert_eq!(publish(addr, "anything", &user_token(), "x"), 403);
    assert_eq!(publish(addr, "anything", "wrong", "x"), 401);
}

#[test]
fn the_access_log_names_the_subject_never_the_token() {
    let daemon = Daemon::start(&["--access-log", "--token-key", KEY]);
    let addr = daemon.addr;
    let token = user_token();
    let cookie = format!("ssed_token={token}");
    assert_eq!(
        fetch(addr, "GET", "/topics", &[("Cookie", &cookie)], b"")
            .0
            .status,
        200
    );
    let line = daemon.stderr_line("GET /topics", Duration::from_secs(10));
    assert!(line.ends_with(" sub=user\\x2042"), "{line}");
    assert!(!line.contains(&token[..20]), "{line}");
    assert_eq!(
        fetch(addr, "GET", &format!("/topics?token={token}"), &[], b"")
            .0
            .status,
        200
    );
    let line = daemon.stderr_line("GET /topics?token=***", Duration::from_secs(10));
    assert!(line.ends_with(" sub=user\\x2042"), "{line}");
    // A stream's line comes when it ends, with who it was.
    let sub = stream(addr, &format!("/events/users/42/a?token={token}"), &[]);
    let _ = sub.stream.shutdown(std::net::Shutdown::Both);
    let line = daemon.stderr_line("GET /events/users/42/a", Duration::from_secs(10));
    assert!(
        line.contains(" 200 ") && line.ends_with(" sub=user\\x2042"),
        "{line}"
    );
}

#[test]
fn ssed_token_prints_what_python_verifies() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssed"))
        .args([
            "token",
            "--subscribe",
            "users/42/*",
            "--publish",
            "users/42/outbox",
            "--sub",
            "u42",
            "--ttl",
            "15m",
        ])
        .env("SSED_TOKEN_KEY", KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let script = r#"
import base64, hashlib, hmac, json, sys
token, key = sys.argv[1].strip(), sys.argv[2]
head, body, sig = token.split(".")
pad = lambda s: s + "=" * (-len(s) % 4)
expected = hmac.new(key.encode(), (head + "." + body).encode(), hashlib.sha256).digest()
assert hmac.compare_digest(base64.urlsafe_b64decode(pad(sig)), expected), "signature"
print(json.dumps([json.loads(base64.urlsafe_b64decode(pad(head))), json.loads(base64.urlsafe_b64decode(pad(body)))]))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &token, KEY])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(v[0]["alg"], "HS256");
    let claims = &v[1];
    assert_eq!(claims["sub"], "u42");
    assert_eq!(
        claims["ssed"]["subscribe"],
        serde_json::json!(["users/42/*"])
    );
    assert_eq!(
        claims["ssed"]["publish"],
        serde_json::json!(["users/42/outbox"])
    );
    let ttl = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(ttl, 900);
    // And the server takes it.
    let server = with_key();
    stream(
        server.addr(),
        &format!("/events/users/42/inbox?token={}", token.trim()),
        &[],
    );
}

/// A small application that knows its users by their session cookie (or
/// its own bearer token), as `--auth-url` asks it; it records what it was
/// asked.
struct App {
    addr: SocketAddr,
    asked: std::sync::Arc<std::sync::Mutex<Vec<Asked>>>,
}

#[derive(Clone, Debug)]
struct Asked {
    method: String,
    target: String,
    cookie: Option<String>,
    authorization: Option<String>,
    forwarded_method: Option<String>,
    forwarded_uri: Option<String>,
}

impl App {
    fn start() -> App {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&asked);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let log = std::sync::Arc::clone(&log);
                std::thread::spawn(move || {
                    conn.set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                        if conn.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let mut lines = head.lines();
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| {
                                l.split_once(':')
                                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                            })
                            .map(|(_, v)| v.trim().to_string())
                    };
                    let a = Asked {
                        method: first.next().unwrap_or("").into(),
                        target: first.next().unwrap_or("").into(),
                        cookie: header("Cookie"),
                        authorization: header("Authorization"),
                        forwarded_method: header("X-Forwarded-Method"),
                        forwarded_uri: header("X-Forwarded-Uri"),
                    };
                    log.lock().unwrap().push(a.clone());
                    let session = a
                        .cookie
                        .as_deref()
                        .and_then(|c| c.split(';').find_map(|p| p.trim().strip_prefix("session=")))
                        .unwrap_or("");
                    let (status, body) = match (session, a.authorization.as_deref()) {
                        (_, Some("Bearer app-token-bob")) => (
                            "200 OK",
                            r#"{"sub":"bob","subscribe":["users/bob/*"],"publish":["users/bob/*"]}"#,
                        ),
                        (_, Some("Bearer app-token-service")) => {
                            ("200 OK", r#"{"sub":"service","publish":["**"]}"#)
                        }
                        ("alice", _) => (
                            "200 OK",
                            r#"{"sub":"alice","subscribe":["users/alice/*","news"],"publish":["users/alice/*"]}"#,
                        ),
                        ("root", _) => ("200 OK", r#"{"sub":"root","admin":true}"#),
                        ("banned", _) => {
                            ("403 Forbidden", r#"{"error":"this account is suspended"}"#)
                        }
                        ("login", _) => ("302 Found", ""),
                        ("broken", _) => ("500 Internal Server Error", "oops"),
                        ("garbage", _) => ("200 OK", "<html>welcome</html>"),
                        ("odd", _) => ("200 OK", r#"{"subscribe":["a/**/b"]}"#),
                        ("slow", _) => {
                            std::thread::sleep(Duration::from_secs(5));
                            return;
                        }
                        _ => ("401 Unauthorized", r#"{"error":"not signed in"}"#),
                    };
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nLocation: /login\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        App { addr, asked }
    }

    fn url(&self) -> String {
        format!("http://{}/sse-auth", self.addr)
    }

    /// How often it was asked about `session`.
    fn asked_about(&self, session: &str) -> usize {
        let cookie = format!("session={session}");
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.cookie.as_deref() == Some(cookie.as_str()))
            .count()
    }
}

fn asking(app: &App, cache: Duration) -> ssed::Server {
    let url = app.url();
    start(move |c| {
        c.auth_url = Some(url);
        c.auth_cache = cache;
        c.auth_timeout = Duration::from_millis(300);
    })
}

#[test]
fn the_application_grants_by_session_cookie() {
    let app = App::start();
    let server = asking(&app, Duration::from_secs(60));
    let addr = server.addr();
    let alice = [("Cookie", "theme=dark; session=alice")];
    let mut inbox = stream(addr, "/events/users/alice/inbox", &alice);
    let (head, body) = fetch(addr, "GET", "/events/users/bob/inbox", &alice, b"");
    assert_eq!(
        (head.status, json(&body)["error"].as_str()),
        (403, Some("no grant to subscribe to \"users/bob/inbox\""))
    );
    // What the application was asked: the request's cookie, method and target.
    let first = app.asked.lock().unwrap()[0].clone();
    assert_eq!(
        (first.method.as_str(), first.target.as_str()),
        ("GET", "/sse-auth")
    );
    assert_eq!(first.cookie.as_deref(), Some("theme=dark; session=alice"));
    assert_eq!(first.forwarded_method.as_deref(), Some("GET"));
    assert_eq!(
        first.forwarded_uri.as_deref(),
        Some("/events/users/alice/inbox")
    );
    // Its own bearer tokens work too: Bob publishes to Alice? No: to himself.
    let bob = [("Authorization", "Bearer app-token-bob")];
    assert_eq!(
        fetch(addr, "POST", "/events/users/alice/inbox", &bob, b"x")
            .0
            .status,
        403
    );
    assert_eq!(
        fetch(addr, "POST", "/events/users/bob/inbox", &bob, b"x")
            .0
            .status,
        200
    );
    // A session cookie does not publish: the application is not even
    // shown it, and says the request is not signed in.
    let (head, body) = fetch(addr, "POST", "/events/users/alice/inbox", &alice, b"x");
    assert_eq!(
        (head.status, json(&body)["error"].as_str()),
        (
            401,
            Some("the application refused the credentials: not signed in")
        )
    );
    let publish_ask = app.asked.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (publish_ask.cookie, publish_ask.forwarded_method.as_deref()),
        (None, Some("POST"))
    );
    // /topics by grant; /metrics for admins.
    let (head, body) = fetch(addr, "GET", "/topics", &alice, b"");
    assert_eq!(head.status, 200);
    let listed = json(&body);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["users/alice/inbox"], "{body}");
    assert_eq!(fetch(addr, "GET", "/metrics", &alice, b"").0.status, 403);
    let (head, body) = fetch(addr, "GET", "/metrics", &[("Cookie", "session=root")], b"");
    assert_eq!(head.status, 200);
    assert!(
        body.contains("ssed_auth_requests_total{result=\"asked\"}"),
        "{body}"
    );
    // The application's backend publishes to Alice with its own token.
    let service = [("Authorization", "Bearer app-token-service")];
    assert_eq!(
        fetch(
            addr,
            "POST",
            "/events/users/alice/inbox",
            &service,
            b"for alice"
        )
        .0
        .status,
        200
    );
    assert_eq!(inbox.events(1)[0].data, "for alice");
}

#[test]
fn answers_are_cached_per_credentials() {
    let app = App::start();
    let server = asking(&app, Duration::from_secs(60));
    let addr = server.addr();
    for _ in 0..5 {
        stream(addr, "/events/news", &[("Cookie", "session=alice")]);
        assert_eq!(
            fetch(
                addr,
                "GET",
                "/events/news",
                &[("Cookie", "session=nobody")],
                b""
            )
            .0
            .status,
            401
        );
    }
    assert_eq!(app.asked_about("alice"), 1, "a grant is reused");
    assert_eq!(app.asked_about("nobody"), 1, "a refusal is reused");
    // Without a cache, every request asks.
    let app = App::start();
    let server = asking(&app, Duration::ZERO);
    for _ in 0..3 {
        stream(
            server.addr(),
            "/events/news",
            &[("Cookie", "session=alice")],
        );
    }
    assert_eq!(app.asked_about("alice"), 3);
    // A short cache asks again once it is over.
    let app = App::start();
    let server = asking(&app, Duration::from_millis(100));
    stream(
        server.addr(),
        "/events/news",
        &[("Cookie", "session=alice")],
    );
    common::wait_until(Duration::from_secs(10), "the cache to be over", || {
        stream(
            server.addr(),
            "/events/news",
            &[("Cookie", "session=alice")],
        );
        app.asked_about("alice") >= 2
    });
}

#[test]
fn refusals_and_failures_of_the_application() {
    let app = App::start();
    let server = asking(&app, Duration::from_secs(60));
    let addr = server.addr();
    let cases = [
        ("", 401, "the application refused the credentials: not signed in"),
        ("banned", 403, "the application refused this request: this account is suspended"),
        ("login", 401, "not signed in: the application answered 302 (a redirect, to its login page?)"),
        ("broken", 503, "the application (--auth-url) answered 500 Internal Server Error"),
        ("garbage", 503, "the application (--auth-url) answered 200 without JSON grants"),
        ("odd", 503, "the application (--auth-url) answered 200 with grants ssed cannot read: subscribe: ** is only the last segment of a pattern, not \"a/**/b\""),
        ("slow", 503, "the application (--auth-url) could not be asked: "),
    ];
    for (session, status, why) in cases {
        let cookie = format!("session={session}");
        let started = std::time::Instant::now();
        let (head, body) = fetch(addr, "GET", "/events/news", &[("Cookie", &cookie)], b"");
        assert_eq!(head.status, status, "{session}: {body}");
        let error = json(&body)["error"].as_str().unwrap().to_string();
        assert!(error.starts_with(why), "{session}: {error:?}");
        if status == 401 {
            assert_eq!(
                head.header("WWW-Authenticate"),
                Some(r#"Bearer realm="ssed""#)
            );
        }
        if status == 503 {
            assert!(head.header("Retry-After").is_some());
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{session}: within the timeout"
        );
    }
    // Failures are not cached: each asks again.
    fetch(
        addr,
        "GET",
        "/events/news",
        &[("Cookie", "session=broken")],
        b"",
    );
    assert_eq!(app.asked_about("broken"), 2);
    // An application that is down: 503, never access.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/auth", closed.local_addr().unwrap());
    drop(closed);
    let down = start(move |c| c.auth_url = Some(url));
    let (head, body) = fetch(
        down.addr(),
        "GET",
        "/events/news",
        &[("Cookie", "session=alice")],
        b"",
    );
    assert_eq!(head.status, 503);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .starts_with("the application (--auth-url) could not be asked: "),
        "{body}"
    );
    // The pages, demos and health do not ask.
    assert_eq!(
        fetch(down.addr(), "GET", "/healthz", &[], b"").0.status,
        200
    );
}

#[test]
fn a_signed_token_is_judged_before_the_application() {
    let app = App::start();
    let url = app.url();
    let server = start(move |c| {
        c.auth_url = Some(url);
        c.token_key = Some(ssed::jwt::Key::new(KEY.as_bytes()).unwrap());
    });
    let addr = server.addr();
    // A valid token: the application is not asked.
    stream(
        addr,
        &format!("/events/users/42/a?token={}", user_token()),
        &[("Cookie", "session=alice")],
    );
    assert_eq!(app.asked_about("alice"), 0);
    // An expired one is refused as such, not passed on.
    let old = sign(&serde_json::json!({"exp": now() - 5, "ssed": {"subscribe": ["**"]}}));
    let (head, body) = fetch(
        addr,
        "GET",
        &format!("/events/news?token={old}"),
        &[("Cookie", "session=alice")],
        b"",
    );
    assert_eq!(head.status, 401);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .starts_with("the token expired"),
        "{body}"
    );
    // No token: the application decides.
    stream(addr, "/events/news", &[("Cookie", "session=alice")]);
    assert_eq!(app.asked_about("alice"), 1);
}
