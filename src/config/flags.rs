//! The flags of `ssed serve`: one table, its usage, and the readers of
//! their values.

use super::{Config, Restart, SourceKind, SourceSpec};
use crate::args;
use std::path::PathBuf;
use std::time::Duration;

/// One flag of `ssed serve`.
pub struct Flag {
    pub name: &'static str,
    pub var: &'static str,
    /// What its value is called in the usage; `None` for a switch.
    pub value: Option<&'static str>,
    /// What it means, word-wrapped in the usage.
    pub help: &'static str,
    /// Shown after the variable's name in the usage.
    pub default: &'static str,
    pub(super) set: fn(&mut Config, &str) -> Result<(), String>,
    /// Set for a repeatable flag.
    pub(super) repeat: Option<Repeat>,
}

/// A flag given several times adds to a list.
pub(super) struct Repeat {
    /// What separates its values in the environment variable.
    pub(super) separator: char,
    /// Empties its list: given on the command line, the flag replaces the
    /// variable's values.
    pub(super) clear: fn(&mut Config),
}

/// Every flag of `ssed serve`, in the order of the usage.
pub const FLAGS: &[Flag] = &[
    Flag {
        name: "--addr",
        var: "SSED_ADDR",
        value: Some("HOST:PORT"),
        help: "address to listen on; port 0 picks a free one",
        default: "127.0.0.1:8000",
        set: |c, v| {
            c.addr = check_addr(v)?;
            Ok(())
        },
        repeat: None,
    },
    Flag {
        name: "--www",
        var: "SSED_WWW",
        value: Some("DIR"),
        help: "serve the pages from DIR instead of the built-in ones",
        default: "",
        set: |c, v| {
            if v.is_empty() {
                return Err("expected a directory".into());
            }
            c.www = Some(PathBuf::from(v));
            Ok(())
        },
        repeat: None,
    },
    Flag {
        name: "--cors-origin",
        var: "SSED_CORS_ORIGIN",
        value: Some("ORIGIN"),
        help: "allow cross-origin requests from ORIGIN (exact match, or * for any); repeatable, comma-separated in the variable",
        default: "",
        set: |c, v| {
            check_origin(v)?;
            c.cors_origins.push(v.to_string());
            Ok(())
        },
        repeat: Some(Repeat {
            separator: ',',
            clear: |c| c.cors_origins.clear(),
        }),
    },
    Flag {
        name: "--trusted-proxy",
        var: "SSED_TRUSTED_PROXY",
        value: Some("IP"),
        help: "a proxy in front (nginx, Caddy) whose X-Forwarded-For the access log believes: it shows the client, then the proxy; repeatable, comma-separated in the variable",
        default: "",
        set: |c, v| {
            let ip = v
                .parse::<core::net::IpAddr>()
                .map_err(|_| "expected an IP address, such as 127.0.0.1 or ::1".to_string())?;
            c.trusted_proxies.push(ip);
            Ok(())
        },
        repeat: Some(Repeat {
            separator: ',',
            clear: |c| c.trusted_proxies.clear(),
        }),
    },
    Flag {
        name: "--keepalive",
        var: "SSED_KEEPALIVE",
        value: Some("SECS"),
        help: "comment sent on a stream idle this long",
        default: "15",
        set: |c, v| set(&mut c.heartbeat, seconds(v, 0.01, 3600.0)),
        repeat: None,
    },
    Flag {
        name: "--retry-ms",
        var: "SSED_RETRY_MS",
        value: Some("MS"),
        help: "how long a browser waits before it reconnects, sent first on every SSE stream (retry:)",
        default: "2000",
        set: |c, v| set(&mut c.retry_ms, millis(v, 100, 3_600_000).map(|d| d.as_millis() as u64)),
        repeat: None,
    },
    Flag {
        name: "--stop-spread",
        var: "SSED_STOP_SPREAD",
        value: Some("SECS"),
        help: "at shutdown each SSE stream's last retry: is drawn from --retry-ms up to this, so that browsers come back spread out; 0: all at --retry-ms",
        default: "10",
        set: |c, v| set(&mut c.stop_spread, seconds(v, 0.0, 3600.0)),
        repeat: None,
    },
    Flag {
        name: "--drain",
        var: "SSED_DRAIN",
        value: Some("SECS"),
        help: "at SIGTERM or SIGINT, first this long with new streams refused (503) and /healthz 503, so that a balancer moves clients elsewhere, while open streams go on; a second signal ends it at once",
        default: "0",
        set: |c, v| set(&mut c.drain, seconds(v, 0.0, 3600.0)),
        repeat: None,
    },
    Flag {
        name: "--max-connections",
        var: "SSED_MAX_CONNECTIONS",
        value: Some("N"),
        help: "connections open at once; more get 503",
        default: "from system limits",
        set: |c, v| set(&mut c.max_connections, whole(v, 1, 1_000_000).map(Some)),
        repeat: None,
    },
    Flag {
        name: "--max-streams",
        var: "SSED_MAX_STREAMS",
        value: Some("N"),
        help: "hub streams (/events, /sse) open at once; more get 503",
        default: "connections less 1/16",
        set: |c, v| set(&mut c.max_streams, whole(v, 1, 1_000_000).map(Some)),
        repeat: None,
    },
    Flag {
        name: "--max-demo-streams",
        var: "SSED_MAX_DEMO_STREAMS",
        value: Some("N"),
        help: "demo streams open at once; more get 503",
        default: "1024",
        set: |c, v| set(&mut c.max_demo_streams, whole(v, 1, 1_000_000)),
        repeat: None,
    },
    Flag {
        name: "--header-timeout",
        var: "SSED_HEADER_TIMEOUT",
        value: Some("SECS"),
        help: "a request head must arrive within this, and a body may not stall longer; else 408 and the connection closes",
        default: "10",
        set: |c, v| set(&mut c.header_timeout, seconds(v, 0.01, 3600.0)),
        repeat: None,
    },
    Flag {
        name: "--idle-timeout",
        var: "SSED_IDLE_TIMEOUT",
        value: Some("SECS"),
        help: "a keep-alive connection with no request for this long is closed",
        default: "60",
        set: |c, v| set(&mut c.idle_timeout, seconds(v, 0.01, 86_400.0)),
        repeat: None,
    },
    Flag {
        name: "--write-timeout",
        var: "SSED_WRITE_TIMEOUT",
        value: Some("SECS"),
        help: "drop a client whose socket accepts nothing for this long",
        default: "30",
        set: |c, v| set(&mut c.write_timeout, seconds(v, 0.1, 3600.0)),
        repeat: None,
    },
    Flag {
        name: "--access-log",
        var: "SSED_ACCESS_LOG",
        value: None,
        help: "print one line per request on stderr",
        default: "1 turns it on",
        set: |c, v| set(&mut c.access_log, switch(v)),
        repeat: None,
    },
    Flag {
        name: "--history",
        var: "SSED_HISTORY",
        value: Some("N"),
        help: "events each topic keeps for clients that reconnect; 0 keeps none",
        default: "1000",
        set: |c, v| set(&mut c.history, whole(v, 0, 1_000_000)),
        repeat: None,
    },
    Flag {
        name: "--history-bytes",
        var: "SSED_HISTORY_BYTES",
        value: Some("SIZE"),
        help: "bytes of event data each topic keeps, at most (K and M suffixes)",
        default: "1M",
        set: |c, v| set(&mut c.history_bytes, args::bytes(v, 1024, 1 << 34)),
        repeat: None,
    },
    Flag {
        name: "--history-total",
        var: "SSED_HISTORY_TOTAL",
        value: Some("SIZE"),
        help: "what all topics keep together; past it the oldest events of the largest topics go first",
        default: "64M, less on a small host",
        set: |c, v| set(&mut c.history_total, args::bytes(v, 1024, 1 << 40).map(Some)),
        repeat: None,
    },
    Flag {
        name: "--history-ttl",
        var: "SSED_HISTORY_TTL",
        value: Some("SECS"),
        help: "events older than this are dropped and not replayed (a resume for them gets a gap), and topics left with no events and no subscribers are forgotten; s, m, h or d suffixes; 0: kept until trimmed",
        default: "0",
        set: |c, v| set(&mut c.history_ttl, age(v)),
        repeat: None,
    },
    Flag {
        name: "--max-topics",
        var: "SSED_MAX_TOPICS",
        value: Some("N"),
        help: "topics at once; more are refused with 429",
        default: "1000",
        set: |c, v| set(&mut c.max_topics, whole(v, 1, 1_000_000)),
        repeat: None,
    },
    Flag {
        name: "--redis",
        var: "SSED_REDIS",
        value: Some("URL"),
        help: "share topics, history and ids with other instances through Redis or Valkey: redis://[user:password@]host[:port][/db]",
        default: "",
        set: |c, v| {
            c.redis = Some(super::RedisTarget::parse(v)?);
            Ok(())
        },
        repeat: None,
    },
    Flag {
        name: "--redis-timeout",
        var: "SSED_REDIS_TIMEOUT",
        value: Some("SECS"),
        help: "connecting to Redis, and each command, before the link counts as down",
        default: "2",
        set: |c, v| set(&mut c.redis_timeout, seconds(v, 0.05, 60.0)),
        repeat: None,
    },
    Flag {
        name: "--idempotency-ttl",
        var: "SSED_IDEMPOTENCY_TTL",
        value: Some("SECS"),
        help: "how long a publish's Idempotency-Key is remembered: a retry with it within this is stored once and answered as the first time",
        default: "300",
        set: |c, v| set(&mut c.idempotency_ttl, seconds(v, 1.0, 86_400.0)),
        repeat: None,
    },
    Flag {
        name: "--memory",
        var: "SSED_MEMORY",
        value: Some("SIZE"),
        help: "plan for this much memory (K, M, G suffixes): what costs memory is sized from it, and past it less an eighth new work is refused with 503",
        default: "the cgroup's limit, else the host's",
        set: |c, v| set(&mut c.memory, args::bytes(v, 4 << 20, 1 << 50).map(|b| Some(b as u64))),
        repeat: None,
    },
    Flag {
        name: "--max-event-bytes",
        var: "SSED_MAX_EVENT_BYTES",
        value: Some("SIZE"),
        help: "largest publish body; larger get 413",
        default: "64K",
        set: |c, v| set(&mut c.max_event_bytes, args::bytes(v, 16, 64 << 20)),
        repeat: None,
    },
    Flag {
        name: "--publish-token",
        var: "SSED_PUBLISH_TOKEN",
        value: Some("TOKEN"),
        help: "require Authorization: Bearer TOKEN to publish",
        default: "the variable keeps it out of ps",
        set: |c, v| set(&mut c.publish_token, token(v).map(Some)),
        repeat: None,
    },
    Flag {
        name: "--subscribe-token",
        var: "SSED_SUBSCRIBE_TOKEN",
        value: Some("TOKEN"),
        help: "require TOKEN to subscribe: as a Bearer header, ?token= or the cookie ssed_token",
        default: "",
        set: |c, v| set(&mut c.subscribe_token, token(v).map(Some)),
        repeat: None,
    },
    Flag {
        name: "--token-key",
        var: "SSED_TOKEN_KEY",
        value: Some("SECRET"),
        help: "accept JSON Web Tokens signed with SECRET (HS256, at least 32 bytes), whose ssed claim grants topics; publishing and subscribing then need a token",
        default: "the variable keeps it out of ps",
        set: |c, v| set(&mut c.token_key, crate::jwt::Key::new(v.as_bytes()).map(Some)),
        repeat: None,
    },
    Flag {
        name: "--token-key-file",
        var: "SSED_TOKEN_KEY_FILE",
        value: Some("PATH"),
        help: "read --token-key from the file PATH (a systemd credential, say); one trailing newline is dropped",
        default: "",
        set: |c, v| set(&mut c.token_key, crate::jwt::Key::from_file(v).map(Some)),
        repeat: None,
    },
    Flag {
        name: "--auth-url",
        var: "SSED_AUTH_URL",
        value: Some("URL"),
        help: "ask the application at URL (http://) about a request without a valid token: GET with its Cookie and Authorization; 200 carries grants, 401 and 403 refuse",
        default: "",
        set: |c, v| {
            c.auth_url = Some(check_http_url(v)?);
            Ok(())
        },
        repeat: None,
    },
    Flag {
        name: "--auth-cache",
        var: "SSED_AUTH_CACHE",
        value: Some("SECS"),
        help: "how long an --auth-url answer is reused for the same credentials (0: ask every time)",
        default: "10",
        set: |c, v| set(&mut c.auth_cache, seconds(v, 0.0, 3600.0)),
        repeat: None,
    },
    Flag {
        name: "--auth-timeout",
        var: "SSED_AUTH_TIMEOUT",
        value: Some("SECS"),
        help: "how long the application may take to connect and to send each part of its answer; later is 503",
        default: "2",
        set: |c, v| set(&mut c.auth_timeout, seconds(v, 0.01, 60.0)),
        repeat: None,
    },
    Flag {
        name: "--source",
        var: "SSED_SOURCE",
        value: Some("TOPIC=COMMAND"),
        help: "run COMMAND (sh -c) and publish each line it prints to TOPIC; repeatable, one a line in the variable",
        default: "",
        set: |c, v| {
            let (topic, command) = feed(v, "COMMAND")?;
            c.sources.push(SourceSpec {
                topic,
                kind: SourceKind::Command(command),
            });
            Ok(())
        },
        repeat: Some(Repeat {
            separator: '\n',
            clear: |c| c.sources.retain(|s| !matches!(s.kind, SourceKind::Command(_))),
        }),
    },
    Flag {
        name: "--tail",
        var: "SSED_TAIL",
        value: Some("TOPIC=FILE"),
        help: "follow FILE as tail -F does and publish each new line to TOPIC; repeatable, one a line in the variable",
        default: "",
        set: |c, v| {
            let (topic, file) = feed(v, "FILE")?;
            c.sources.push(SourceSpec {
                topic,
                kind: SourceKind::File(PathBuf::from(file)),
            });
            Ok(())
        },
        repeat: Some(Repeat {
            separator: '\n',
            clear: |c| c.sources.retain(|s| !matches!(s.kind, SourceKind::File(_))),
        }),
    },
    Flag {
        name: "--source-restart",
        var: "SSED_SOURCE_RESTART",
        value: Some("WHEN"),
        help: "start a --source again when it exits: always, on-failure or never",
        default: "always",
        set: |c, v| {
            c.source_restart = match v {
                "always" => Restart::Always,
                "on-failure" => Restart::OnFailure,
                "never" => Restart::Never,
                _ => return Err("expected always, on-failure or never".into()),
            };
            Ok(())
        },
        repeat: None,
    },
    Flag {
        name: "--source-restart-delay",
        var: "SSED_SOURCE_RESTART_DELAY",
        value: Some("SECS"),
        help: "first pause before a --source starts again; it doubles, up to a minute, while the source keeps failing fast",
        default: "1",
        set: |c, v| set(&mut c.source_restart_delay, seconds(v, 0.01, 3600.0)),
        repeat: None,
    },
    Flag {
        name: "--tail-poll-ms",
        var: "SSED_TAIL_POLL_MS",
        value: Some("MS"),
        help: "how often a --tail file with nothing new is looked at",
        default: "250",
        set: |c, v| set(&mut c.tail_poll, millis(v, 10, 60_000)),
        repeat: None,
    },
    Flag {
        name: "--tail-symlinks",
        var: "SSED_TAIL_SYMLINKS",
        value: None,
        help: "let a --tail path be a symlink, also one put in its place at rotation (whoever can write its directory can then publish any file ssed can read)",
        default: "1 turns it on",
        set: |c, v| set(&mut c.tail_symlinks, switch(v)),
        repeat: None,
    },
    Flag {
        name: "--stats-interval-ms",
        var: "SSED_STATS_INTERVAL_MS",
        value: Some("MS"),
        help: "period of /system-stats samples",
        default: "1000",
        set: |c, v| set(&mut c.pace.stats, millis(v, 200, 3_600_000)),
        repeat: None,
    },
    Flag {
        name: "--stats-history",
        var: "SSED_STATS_HISTORY",
        value: Some("SECS"),
        help: "system samples kept for new viewers (/system-stats?last=N); sampling goes on while nobody watches; 0 samples only for viewers and keeps the latest",
        default: "60",
        set: |c, v| set(&mut c.pace.stats_history, seconds(v, 0.0, 3600.0)),
        repeat: None,
    },
    Flag {
        name: "--stocks-interval-ms",
        var: "SSED_STOCKS_INTERVAL_MS",
        value: Some("MS"),
        help: "mean pause between /stream-stocks ticks (each is 0.5x to 1.5x)",
        default: "1000",
        set: |c, v| set(&mut c.pace.stocks, millis(v, 1, 3_600_000)),
        repeat: None,
    },
];

pub(super) fn set<T>(field: &mut T, value: Result<T, String>) -> Result<(), String> {
    *field = value?;
    Ok(())
}

/// The usage of `ssed`, printed from [`FLAGS`].
pub fn usage() -> String {
    let mut out = String::from(
        "ssed: a Server-Sent Events daemon\n\n\
         Usage: ssed [serve] [OPTIONS]     run the server\n       \
         ssed listen URL [OPTIONS]  print a stream's events (ssed listen --help)\n       \
         ssed publish URL [DATA]    publish an event (ssed publish --help)\n       \
         ssed delete URL            delete a topic (ssed delete --help)\n       \
         ssed token [OPTIONS]       print a signed token (ssed token --help)\n       \
         ssed healthcheck [URL]     exit 0 if /healthz answers 2xx (containers)\n\n\
         Options of serve (each also read from the environment variable shown):\n",
    );
    const COLUMN: usize = 27;
    const WIDTH: usize = 80 - COLUMN;
    for flag in FLAGS {
        let mut left = format!("  {}", flag.name);
        if let Some(value) = flag.value {
            left.push(' ');
            left.push_str(value);
        }
        let bracket = if flag.default.is_empty() {
            format!("[{}]", flag.var)
        } else {
            format!("[{}, {}]", flag.var, flag.default)
        };
        // Word-wrapped help; the bracket is one word.
        let mut lines = vec![String::new()];
        for word in flag.help.split_whitespace().chain([bracket.as_str()]) {
            let line = lines.last_mut().expect("one line at least");
            if !line.is_empty() && line.len() + 1 + word.len() > WIDTH {
                lines.push(word.to_string());
            } else {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(word);
            }
        }
        // A name too long for its column has its help on the next line.
        if left.len() < COLUMN {
            out.push_str(&format!("{left:<COLUMN$}{}\n", lines[0]));
        } else {
            out.push_str(&format!("{left}\n{:COLUMN$}{}\n", "", lines[0]));
        }
        for line in &lines[1..] {
            out.push_str(&format!("{:COLUMN$}{line}\n", ""));
        }
    }
    out.push_str(&format!(
        "  {:<25}print this help\n  {:<25}print the version\n\n\
         Start it with `ssed`, then open http://127.0.0.1:8000/ or run\n\
         `curl -N http://127.0.0.1:8000/stream-time`.\n",
        "-h, --help", "-V, --version"
    ));
    out
}

/// `TOPIC=VALUE`, the topic checked as the hub checks it.
pub(super) fn feed(value: &str, what: &str) -> Result<(String, String), String> {
    let (topic, rest) = value
        .split_once('=')
        .ok_or_else(|| format!("expected TOPIC={what}"))?;
    crate::names::check_topic(topic)?;
    if rest.trim().is_empty() {
        return Err(format!(
            "expected TOPIC={what}; the {} is empty",
            what.to_lowercase()
        ));
    }
    Ok((topic.to_string(), rest.to_string()))
}

fn whole(value: &str, min: usize, max: usize) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("expected a whole number from {min} to {max}"))
}

/// `1`, `true`, `yes`, `on` or their opposites (a switch set by a variable).
fn switch(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err("expected 1 or 0".into()),
    }
}

/// Tokens go into HTTP headers and cookies: printable ASCII, no spaces or
/// separators that would end a cookie.
fn token(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("the token is empty".into());
    }
    if value
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b))
    {
        Ok(value.to_string())
    } else {
        Err("expected printable ASCII without spaces, quotes, commas or semicolons".into())
    }
}

/// An `http://` URL of the application: checked fully when the server
/// starts (the client's parser); here, its scheme and that it is one word.
fn check_http_url(value: &str) -> Result<String, String> {
    let ok = value.len() > "http://".len()
        && value
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        && value.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err("expected an http:// URL, such as http://127.0.0.1:5000/sse-auth (ssed has no TLS: the application is asked over the local network)".into());
    }
    Ok(value.to_string())
}

/// `HOST:PORT` as given, or `:PORT` (as nginx and Go read it: every IPv4
/// interface) as `0.0.0.0:PORT`.
fn check_addr(value: &str) -> Result<String, String> {
    let expected = || {
        "expected HOST:PORT, such as 127.0.0.1:8000, [::1]:0 or :8000 (every interface)".to_string()
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(expected)?;
    if port.parse::<u16>().is_err() {
        return Err(expected());
    }
    Ok(if host.is_empty() {
        format!("0.0.0.0:{port}")
    } else {
        value.to_string()
    })
}

fn check_origin(value: &str) -> Result<(), String> {
    // It is echoed in a response header: nothing that could end the line.
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("an origin is printable ASCII without spaces".into());
    }
    if value == "*" || value.starts_with("http://") || value.starts_with("https://") {
        if value.ends_with('/') {
            return Err("an origin has no path; drop the trailing /".into());
        }
        Ok(())
    } else {
        Err("expected * or an origin such as http://localhost:8080".into())
    }
}

fn seconds(value: &str, min: f64, max: f64) -> Result<Duration, String> {
    match value.parse::<f64>() {
        Ok(s) if (min..=max).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("expected seconds from {min} to {max}")),
    }
}

/// An age: seconds (fractions allowed), or with `s`, `m`, `h` or `d`; `0`
/// is none.
fn age(value: &str) -> Result<Option<Duration>, String> {
    let expected = || {
        "expected seconds (0 for none), or a number with s, m, h or d, such as 90, 15m or 7d, up to 366d".to_string()
    };
    let (number, scale) = match value.char_indices().last() {
        Some((i, 's')) => (&value[..i], 1.0),
        Some((i, 'm')) => (&value[..i], 60.0),
        Some((i, 'h')) => (&value[..i], 3600.0),
        Some((i, 'd')) => (&value[..i], 86_400.0),
        _ => (value, 1.0),
    };
    let secs = number.parse::<f64>().map_err(|_| expected())? * scale;
    if !(0.0..=366.0 * 86_400.0).contains(&secs) {
        return Err(expected());
    }
    Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
}

fn millis(value: &str, min: u64, max: u64) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(ms) if (min..=max).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(format!("expected milliseconds from {min} to {max}")),
    }
}
