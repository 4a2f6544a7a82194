//! Private streams: signed tokens (`--token-key`) and the grants they
//! carry, over real sockets. Every token here is signed by Python's own
//! `hmac` and `hashlib` (an implementation independent of ssed's), never
//! by ssed's code.

mod common;

use common::{fetch, json, start, Conn, Daemon};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const KEY: &str = "a test key of thirty-two bytes or more";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token of `header` and `claims` (JSON text), signed by Python with
/// `key` and the hash `alg` names (HS256, HS512), or unsigned for `none`.
fn sign_as(header: &str, claims: &str, key: &str) -> String {
    let script = r#"
import base64, hashlib, hmac, json, sys
header, claims, key = sys.argv[1], sys.argv[2], sys.argv[3]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
alg = json.loads(header).get("alg")
signing = b64(header.encode()) + "." + b64(claims.encode())
hashes = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}
sig = b64(hmac.new(key.encode(), signing.encode(), hashes[alg]).digest()) if alg in hashes else ""
print(signing + "." + sig)
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, header, claims, key])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
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
        (401, Some("a token is required"))
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
