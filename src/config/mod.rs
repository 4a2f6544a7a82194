//! Settings of `ssed serve`, from flags and `SSED_*` environment variables.
//!
//! One table, [`FLAGS`] (in `flags.rs`), describes every flag once: its
//! variable, what it means, its default, and how its value is read. The
//! usage text is printed from it. A flag wins over its variable; every
//! error names the flag (or variable) and the value it could not use.
//!
//! This room holds leaf values only ([`Pace`], [`SourceSpec`],
//! [`RedisTarget`], ...): it imports no other room but the name rules, the
//! URL helpers and the token key ([`crate::jwt::Key`]), and the rooms turn its values into their own settings.

mod flags;
mod redis_url;

pub use crate::args::UsageError;
use crate::args::{self, Arg, Args};
pub use flags::{usage, Flag, FLAGS};
pub use redis_url::Target as RedisTarget;
use std::path::PathBuf;
use std::time::Duration;

/// The reconnection delay sent to browsers as the first bytes of an SSE
/// stream, unless `--retry-ms` says otherwise.
pub const DEFAULT_RETRY_MS: u64 = 2000;

/// How fast the shared demos go.
#[derive(Clone, Debug)]
pub struct Pace {
    /// Between two system samples.
    pub stats: Duration,
    /// How far back the system samples go for a new viewer. Zero: sample
    /// only while someone watches, and keep the latest alone.
    pub stats_history: Duration,
    /// Mean pause between two stock ticks; each pause is drawn from 0.5x to
    /// 1.5x of it, the seed's 0.5 s to 1.5 s for the default of 1 s.
    pub stocks: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            stats: Duration::from_secs(1),
            stats_history: Duration::from_secs(60),
            stocks: Duration::from_secs(1),
        }
    }
}

/// What feeds a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A command for `sh -c`.
    Command(String),
    /// A file to follow.
    File(PathBuf),
}

/// One `--source` or `--tail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSpec {
    pub topic: String,
    pub kind: SourceKind,
}

impl SourceSpec {
    /// How the user wrote it, for messages: `--source logs=make build`.
    pub fn flag(&self) -> String {
        match &self.kind {
            SourceKind::Command(c) => format!("--source {}={c}", self.topic),
            SourceKind::File(f) => format!("--tail {}={}", self.topic, f.display()),
        }
    }
}

/// When a command is started again after it exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

/// Everything `ssed serve` needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// `HOST:PORT`, resolved when binding.
    pub addr: String,
    pub www: Option<PathBuf>,
    pub cors_origins: Vec<String>,
    /// `--trusted-proxy`: whose `X-Forwarded-For` the access log believes.
    pub trusted_proxies: Vec<core::net::IpAddr>,
    /// `--keepalive`: a stream silent this long gets a heartbeat comment
    /// (not HTTP persistence, which is `--idle-timeout`).
    pub heartbeat: Duration,
    /// `--retry-ms`: the reconnection delay each SSE stream sends first.
    pub retry_ms: u64,
    /// `--stop-spread`: at shutdown, streams' last `retry:` is drawn from
    /// `retry_ms` up to this.
    pub stop_spread: Duration,
    /// `--drain`: at the stop signal, this long with new streams refused
    /// and `/healthz` 503 before the streams end.
    pub drain: Duration,
    /// `None`: what the system's limits allow, found at start.
    pub max_connections: Option<usize>,
    /// `None`: the connection cap less a reserve for short requests.
    pub max_streams: Option<usize>,
    pub max_demo_streams: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub access_log: bool,
    pub pace: Pace,
    /// Events each hub topic keeps for replay.
    pub history: usize,
    pub history_bytes: usize,
    /// `None`: what the memory limit allows (see `memory::Sizing`).
    pub history_total: Option<usize>,
    /// `--history-ttl`: events older than this are dropped.
    pub history_ttl: Option<Duration>,
    pub max_topics: usize,
    pub max_event_bytes: usize,
    pub publish_token: Option<String>,
    pub subscribe_token: Option<String>,
    /// `--token-key`: signed tokens accepted, with the grants they carry.
    pub token_key: Option<crate::jwt::Key>,
    /// `--auth-url`: the application that decides about requests without
    /// a valid token.
    pub auth_url: Option<String>,
    /// `--auth-cache`: how long its answer is reused per credentials.
    pub auth_cache: Duration,
    /// `--auth-timeout`: its connect, and each read of its answer.
    pub auth_timeout: Duration,
    /// `--source` and `--tail`: what feeds topics.
    pub sources: Vec<SourceSpec>,
    pub source_restart: Restart,
    pub source_restart_delay: Duration,
    pub tail_poll: Duration,
    /// `--tail-symlinks`: a `--tail` path may be (or become) a symlink.
    pub tail_symlinks: bool,
    /// ssed's own binary, which runs each `--source` program as its keeper
    /// (`ssed` sets `/proc/self/exe`); `None` runs `sh` directly, without
    /// the guarantee that the program's whole tree ends with it.
    pub source_keeper: Option<PathBuf>,
    /// `--redis`: the hub shared with other instances.
    pub redis: Option<RedisTarget>,
    /// Connecting to Redis, and each command.
    pub redis_timeout: Duration,
    /// How long a publish's `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// `--memory`: plan for this much memory instead of the cgroup's limit
    /// or the host's.
    pub memory: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:8000".into(),
            www: None,
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            heartbeat: Duration::from_secs(15),
            retry_ms: DEFAULT_RETRY_MS,
            stop_spread: Duration::from_secs(10),
            drain: Duration::ZERO,
            max_connections: None,
            max_streams: None,
            max_demo_streams: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            access_log: false,
            pace: Pace::default(),
            history: 1000,
            history_bytes: 1024 * 1024,
            history_total: None,
            history_ttl: None,
            max_topics: 1000,
            max_event_bytes: 64 * 1024,
            publish_token: None,
            subscribe_token: None,
            token_key: None,
            auth_url: None,
            auth_cache: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(2),
            sources: Vec::new(),
            source_restart: Restart::Always,
            source_restart_delay: Duration::from_secs(1),
            tail_poll: Duration::from_millis(250),
            tail_symlinks: false,
            source_keeper: None,
            redis: None,
            redis_timeout: Duration::from_secs(2),
            idempotency_ttl: Duration::from_secs(300),
            memory: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Serve(Box<Config>),
    Help,
    Version,
}

/// The commands besides `serve`, for a hint when one is mistyped.
const COMMANDS: &[&str] = &[
    "listen",
    "publish",
    "delete",
    "token",
    "healthcheck",
    "help",
    "version",
];

/// The one of `known` within two edits of `typed` (letters added, dropped,
/// changed or swapped), if there is exactly one nearest.
fn closest<'a>(typed: &str, known: &[&'a str]) -> Option<&'a str> {
    let distance = |a: &str, b: &str| -> usize {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let mut d: Vec<Vec<usize>> = (0..=a.len()).map(|i| vec![i; b.len() + 1]).collect();
        for (j, cell) in d[0].iter_mut().enumerate() {
            *cell = j;
        }
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                d[i][j] = (d[i - 1][j] + 1)
                    .min(d[i][j - 1] + 1)
                    .min(d[i - 1][j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
                }
            }
        }
        d[a.len()][b.len()]
    };
    if typed.chars().count() > 64 {
        return None;
    }
    let mut best: Option<(usize, &str, bool)> = None;
    for k in known {
        let n = distance(typed, k);
        match best {
            Some((b, _, _)) if n > b => {}
            Some((b, name, _)) if n == b => best = Some((b, name, true)),
            _ => best = Some((n, k, false)),
        }
    }
    match best {
        Some((n, name, false)) if n <= 2 && n < typed.chars().count() => Some(name),
        _ => None,
    }
}

/// Parses the arguments after the program name; `env` looks up variables.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, UsageError> {
    let mut args: Vec<String> = args.into_iter().collect();
    if args.first().map(String::as_str) == Some("serve") {
        args.remove(0);
    }
    let mut config = Config::default();
    // Variables first, so that flags override them.
    for flag in FLAGS {
        let Some(value) = env(flag.var) else {
            continue;
        };
        let values: Vec<&str> = match &flag.repeat {
            Some(repeat) => value
                .split(repeat.separator)
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .collect(),
            None => vec![value.as_str()],
        };
        for v in values {
            (flag.set)(&mut config, v).map_err(|why| args::invalid(flag.var, v, &why))?;
        }
    }
    // Repeatable flags given on the command line, whose list from the
    // variable was dropped.
    let mut replaced: Vec<&str> = Vec::new();
    let mut args = Args::new(args);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg {
            Arg::Option(name, inline) => (name, inline),
            Arg::Plain(other) => {
                let hint = match closest(&other, COMMANDS) {
                    Some(command) => format!("; did you mean ssed {command}?"),
                    None => String::new(),
                };
                return Err(UsageError(format!("unexpected argument {other:?}{hint}")));
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let Some(flag) = FLAGS.iter().find(|f| f.name == name) else {
            let names: Vec<&str> = FLAGS.iter().map(|f| f.name).collect();
            let hint = match name.as_str() {
                "--port" | "-p" => "; use --addr HOST:PORT, such as --addr 127.0.0.1:8080".into(),
                _ => match closest(&name, &names) {
                    Some(flag) => format!("; did you mean {flag}?"),
                    None => String::new(),
                },
            };
            return Err(UsageError(format!("unknown option {name:?}{hint}")));
        };
        let value = match (flag.value, inline) {
            (Some(_), inline) => args.value(&name, inline)?,
            (None, Some(inline)) => inline,
            (None, None) => "1".into(),
        };
        // Repeated flags replace the variable's list, not add to it.
        if let Some(repeat) = &flag.repeat {
            if !replaced.contains(&flag.name) {
                (repeat.clear)(&mut config);
                replaced.push(flag.name);
            }
        }
        (flag.set)(&mut config, &value).map_err(|why| args::invalid(&name, &value, &why))?;
    }
    for (i, spec) in config.sources.iter().enumerate() {
        if config.sources[..i].iter().any(|s| s.topic == spec.topic) {
            return Err(UsageError(format!(
                "topic {:?} is fed twice (--source and --tail each need a topic of their own)",
                spec.topic
            )));
        }
    }
    if let Some(total) = config.history_total.filter(|t| *t < config.max_event_bytes) {
        return Err(UsageError(format!(
            "--history-total ({total}) must be at least --max-event-bytes ({}): the newest event must fit",
            config.max_event_bytes
        )));
    }
    Ok(Command::Serve(Box::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match parse(args.iter().map(|s| s.to_string()), lookup) {
            Ok(Command::Serve(c)) => Ok(*c),
            Ok(other) => Err(format!("{other:?}")),
            Err(UsageError(e)) => Err(e),
        }
    }

    #[test]
    fn mistypes_get_a_hint() {
        assert_eq!(
            parse_with(&["--adr", "x"], &[]).unwrap_err(),
            "unknown option \"--adr\"; did you mean --addr?"
        );
        assert_eq!(
            parse_with(&["lsten", "http://x/"], &[]).unwrap_err(),
            "unexpected argument \"lsten\"; did you mean ssed listen?"
        );
        assert_eq!(
            parse_with(&["--frobnicate"], &[]).unwrap_err(),
            "unknown option \"--frobnicate\""
        );
        assert_eq!(closest("tokn", COMMANDS), Some("token"));
        assert_eq!(closest("x", COMMANDS), None);
    }

    #[test]
    fn history_ttl() {
        let ttl = |v: &str| parse_with(&["--history-ttl", v], &[]).map(|c| c.history_ttl);
        assert_eq!(ttl("90"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(ttl("0.5"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(ttl("15m"), Ok(Some(Duration::from_secs(900))));
        assert_eq!(ttl("2h"), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(ttl("7d"), Ok(Some(Duration::from_secs(7 * 86_400))));
        assert_eq!(ttl("0"), Ok(None));
        for bad in ["", "x", "-1", "1y", "400d"] {
            assert!(
                ttl(bad).unwrap_err().starts_with("invalid value"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn token_keys_from_a_flag_a_variable_or_a_file() {
        let key = "k".repeat(32);
        let c = parse_with(&["--token-key", &key], &[]).unwrap();
        assert_eq!(format!("{:?}", c.token_key), "Some(Key(*** 32 bytes))");
        let c = parse_with(&[], &[("SSED_TOKEN_KEY", &key)]).unwrap();
        assert!(c.token_key.is_some());
        // Never printed, not even in the config's Debug.
        assert!(!format!("{c:?}").contains(&key));
        assert_eq!(
            parse_with(&["--token-key", "short"], &[]).unwrap_err(),
            "invalid value for --token-key: a token key needs at least 32 bytes (256 bits, RFC 7518), not 5; make one with: head -c 32 /dev/urandom | base64"
        );
        let dir = std::env::temp_dir().join(format!("ssed-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, format!("{key}\r\n")).unwrap();
        let path = file.to_str().unwrap();
        let c = parse_with(&["--token-key-file", path], &[]).unwrap();
        assert_eq!(format!("{:?}", c.token_key), "Some(Key(*** 32 bytes))");
        std::fs::write(&file, "x".repeat(5000)).unwrap();
        let e = parse_with(&["--token-key-file", path], &[]).unwrap_err();
        assert!(e.contains("longer than 4096 bytes"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let e = parse_with(&["--token-key-file", "/nonexistent/key"], &[]).unwrap_err();
        assert!(
            e.starts_with("invalid value for --token-key-file: cannot open it: "),
            "{e}"
        );
    }

    #[test]
    fn defaults_flags_and_env() {
        let c = parse_with(&[], &[]).unwrap();
        assert_eq!(c.addr, "127.0.0.1:8000");
        assert_eq!(c.heartbeat, Duration::from_secs(15));
        assert_eq!(
            (c.header_timeout, c.idle_timeout, c.access_log),
            (Duration::from_secs(10), Duration::from_secs(60), false)
        );
        let c = parse_with(
            &[
                "serve",
                "--addr",
                "0.0.0.0:0",
                "--keepalive=0.5",
                "--cors-origin",
                "*",
                "--cors-origin",
                "http://a:1",
                "--access-log",
                "--max-connections=50",
                "--header-timeout",
                "0.2",
            ],
            &[
                ("SSED_ADDR", "127.0.0.1:9"),
                ("SSED_MAX_STREAMS", "7"),
                ("SSED_CORS_ORIGIN", "http://x"),
                ("SSED_IDLE_TIMEOUT", "2"),
            ],
        )
        .unwrap();
        assert_eq!(c.addr, "0.0.0.0:0");
        assert_eq!(c.heartbeat, Duration::from_millis(500));
        assert_eq!(c.max_streams, Some(7));
        assert_eq!(c.max_connections, Some(50));
        assert_eq!(c.cors_origins, ["*", "http://a:1"]);
        assert!(c.access_log);
        assert_eq!(c.header_timeout, Duration::from_millis(200));
        assert_eq!(c.idle_timeout, Duration::from_secs(2));
        let c = parse_with(
            &[],
            &[
                ("SSED_CORS_ORIGIN", "http://x, http://y"),
                ("SSED_ACCESS_LOG", "yes"),
            ],
        )
        .unwrap();
        assert_eq!(c.cors_origins, ["http://x", "http://y"]);
        assert!(c.access_log);
    }

    /// Each flag's default, as the usage shows it, is what `Config::default`
    /// holds: the flag set to its shown default changes nothing. Defaults
    /// that are a rule, not a value, are named here and held to the rule.
    #[test]
    fn the_usage_shows_the_defaults_the_server_uses() {
        use crate::memory::{Sizing, MAX_HISTORY_TOTAL};
        let rules = [
            ("--max-connections", "from system limits"),
            ("--max-streams", "connections less 1/16"),
            ("--history-total", "64M, less on a small host"),
            ("--memory", "the cgroup's limit, else the host's"),
            ("--publish-token", "the variable keeps it out of ps"),
            ("--token-key", "the variable keeps it out of ps"),
            ("--access-log", "1 turns it on"),
            ("--tail-symlinks", "1 turns it on"),
        ];
        let unset = format!("{:?}", Config::default());
        for flag in flags::FLAGS {
            if let Some((_, rule)) = rules.iter().find(|(name, _)| *name == flag.name) {
                assert_eq!(flag.default, *rule, "{}", flag.name);
                continue;
            }
            if flag.default.is_empty() {
                // Nothing by default: a list or an option left empty.
                continue;
            }
            let mut c = Config::default();
            (flag.set)(&mut c, flag.default)
                .unwrap_or_else(|e| panic!("{} {}: {e}", flag.name, flag.default));
            assert_eq!(format!("{c:?}"), unset, "{} {}", flag.name, flag.default);
        }
        // The rules: off unless set; the history's 64M on a large host.
        let c = Config::default();
        assert!(!c.access_log && !c.tail_symlinks);
        assert_eq!(c.history_total, None);
        assert_eq!(c.memory, None);
        assert_eq!(c.publish_token, None);
        assert_eq!((c.max_connections, c.max_streams), (None, None));
        assert_eq!(Sizing::for_limit(64 << 30).history_total, MAX_HISTORY_TOTAL);
        assert_eq!(
            MAX_HISTORY_TOTAL,
            64 << 20,
            "--history-total's usage says 64M"
        );
        // The empty defaults are empty.
        for flag in flags::FLAGS.iter().filter(|f| f.default.is_empty()) {
            let mut c = Config::default();
            let ok = (flag.set)(&mut c, "");
            assert!(
                ok.is_err() || format!("{c:?}") == unset,
                "{}: an empty value changes the default",
                flag.name
            );
        }
    }

    #[test]
    fn errors_name_the_argument() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case; 13] = [
            (&["--port", "1"], &[], "unknown option \"--port\"; use --addr HOST:PORT, such as --addr 127.0.0.1:8080"),
            (&["--frob"], &[], "unknown option \"--frob\""),
            (&["extra"], &[], "unexpected argument \"extra\""),
            (&["--addr"], &[], "--addr needs a value"),
            (&["--addr", "8000"], &[], "invalid value \"8000\" for --addr: expected HOST:PORT, such as 127.0.0.1:8000, [::1]:0 or :8000 (every interface)"),
            (&["--keepalive=x"], &[], "invalid value \"x\" for --keepalive: expected seconds from 0.01 to 3600"),
            (&["--max-streams", "0"], &[], "invalid value \"0\" for --max-streams: expected a whole number from 1 to 1000000"),
            (&["--cors-origin", "localhost"], &[], "invalid value \"localhost\" for --cors-origin: expected * or an origin such as http://localhost:8080"),
            (&[], &[("SSED_KEEPALIVE", "-1")], "invalid value \"-1\" for SSED_KEEPALIVE: expected seconds from 0.01 to 3600"),
            (&["--cors-origin", "http://a\r\nX: y"], &[], "invalid value \"http://a\\r\\nX: y\" for --cors-origin: an origin is printable ASCII without spaces"),
            (&["--publish-token", ""], &[], "invalid value for --publish-token: the token is empty"),
            (&[], &[("SSED_ACCESS_LOG", "maybe")], "invalid value \"maybe\" for SSED_ACCESS_LOG: expected 1 or 0"),
            (&["--history-total", "32K"], &[], "--history-total (32768) must be at least --max-event-bytes (65536): the newest event must fit"),
        ];
        for (args, env, expected) in cases {
            assert_eq!(parse_with(args, env).unwrap_err(), expected, "{args:?}");
        }
    }

    #[test]
    fn hub_settings() {
        let c = parse_with(
            &[
                "--history",
                "0",
                "--history-bytes",
                "2M",
                "--max-event-bytes=1k",
                "--max-topics",
                "5",
                "--history-total",
                "8M",
            ],
            &[("SSED_PUBLISH_TOKEN", "p")],
        )
        .unwrap();
        assert_eq!(
            (
                c.history,
                c.history_bytes,
                c.max_event_bytes,
                c.max_topics,
                c.history_total
            ),
            (0, 2 << 20, 1024, 5, Some(8 << 20))
        );
        assert_eq!(c.publish_token.as_deref(), Some("p"));
        assert_eq!(parse_with(&["--max-event-bytes", "lots"], &[]).unwrap_err(), "invalid value \"lots\" for --max-event-bytes: expected bytes from 16 to 67108864, such as 65536, 64K or 1M");
        assert_eq!(parse_with(&["--subscribe-token", "a b"], &[]).unwrap_err(), "invalid value for --subscribe-token: expected printable ASCII without spaces, quotes, commas or semicolons");
    }

    #[test]
    fn sources_and_tails() {
        let c = parse_with(
            &[
                "--source",
                "build=make -j2 all",
                "--tail",
                "syslog=/var/log/syslog",
                "--source-restart=never",
            ],
            &[
                ("SSED_SOURCE", "a=echo a\nb=echo b"),
                ("SSED_TAIL", "t=/tmp/x"),
            ],
        )
        .unwrap();
        // Flags replace the variable's list of the same flag.
        assert_eq!(
            c.sources,
            [
                SourceSpec {
                    topic: "build".into(),
                    kind: SourceKind::Command("make -j2 all".into())
                },
                SourceSpec {
                    topic: "syslog".into(),
                    kind: SourceKind::File("/var/log/syslog".into())
                },
            ]
        );
        // ...and not the other's.
        let other = parse_with(&["--source", "build=make"], &[("SSED_TAIL", "t=/tmp/x")]).unwrap();
        assert_eq!(
            other.sources,
            [
                SourceSpec {
                    topic: "t".into(),
                    kind: SourceKind::File("/tmp/x".into())
                },
                SourceSpec {
                    topic: "build".into(),
                    kind: SourceKind::Command("make".into())
                },
            ]
        );
        assert_eq!(c.source_restart, Restart::Never);
        let c = parse_with(&[], &[("SSED_SOURCE", "a=echo a\n\nb=echo b\n")]).unwrap();
        assert_eq!(c.sources.len(), 2);
        let cases: [(&[&str], &str); 5] = [
            (&["--source", "nocommand"], "invalid value \"nocommand\" for --source: expected TOPIC=COMMAND"),
            (&["--source", "a b=ls"], "invalid value \"a b=ls\" for --source: topic names are 1 to 128 characters of A-Z a-z 0-9 . _ ~ - and /, not \"a b\""),
            (&["--tail", "t= "], "invalid value \"t= \" for --tail: expected TOPIC=FILE; the file is empty"),
            (&["--source", "x=ls", "--tail", "x=/f"], "topic \"x\" is fed twice (--source and --tail each need a topic of their own)"),
            (&["--source-restart", "sometimes"], "invalid value \"sometimes\" for --source-restart: expected always, on-failure or never"),
        ];
        for (args, expected) in cases {
            assert_eq!(parse_with(args, &[]).unwrap_err(), expected, "{args:?}");
        }
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(
            parse(["--help".to_string()], |_| None),
            Ok(Command::Help)
        ));
        assert!(matches!(
            parse(["serve".into(), "-V".into()], |_| None),
            Ok(Command::Version)
        ));
    }

    #[test]
    fn the_usage_lists_every_flag_within_80_columns() {
        let text = usage();
        for flag in FLAGS {
            assert!(text.contains(flag.name), "{}", flag.name);
            assert!(text.contains(flag.var), "{}", flag.var);
        }
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line:?}");
            // A flag's name and its help never run together.
            if let Some(flag) = line.trim_start().strip_prefix("--") {
                let name_and_value = flag.split("  ").next().unwrap_or("");
                assert!(name_and_value.split(' ').count() <= 2, "{line:?}");
            }
        }
    }
}
