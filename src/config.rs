//! Settings of `ssed serve`, from flags and `SSED_*` environment variables.
//!
//! A flag wins over its variable. Every error names the flag (or variable)
//! and the value it could not use.

use crate::demos::Pace;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
ssed: a Server-Sent Events daemon

Usage: ssed [serve] [OPTIONS]     run the server
       ssed listen URL [OPTIONS]  print the events of a stream (see ssed listen --help)
       ssed publish URL [DATA]    publish an event to a topic (see ssed publish --help)

Options of serve (each also read from the environment variable shown):
  --addr HOST:PORT         address to listen on; port 0 picks a free one
                           [SSED_ADDR, default 127.0.0.1:8000]
  --www DIR                serve the pages from DIR instead of the built-in ones
                           [SSED_WWW]
  --cors-origin ORIGIN     allow cross-origin requests from ORIGIN (exact match,
                           or * for any); repeatable [SSED_CORS_ORIGIN, comma-separated]
  --keepalive SECS         comment sent on a stream idle this long [SSED_KEEPALIVE, 15]
  --max-streams N          open streams allowed at once; more get 503
                           [SSED_MAX_STREAMS, default: what the open-files limit allows]
  --write-timeout SECS     drop a client whose socket accepts nothing for this long
                           [SSED_WRITE_TIMEOUT, 30]
  --history N              events each topic keeps for clients that reconnect;
                           0 keeps none [SSED_HISTORY, 1000]
  --history-bytes SIZE     bytes of event data each topic keeps, at most (K and M
                           suffixes) [SSED_HISTORY_BYTES, 1M]
  --max-topics N           topics at once; more are refused with 429 [SSED_MAX_TOPICS, 1000]
  --max-event-bytes SIZE   largest publish body; larger get 413 [SSED_MAX_EVENT_BYTES, 64K]
  --publish-token TOKEN    require Authorization: Bearer TOKEN to publish
                           [SSED_PUBLISH_TOKEN; the variable keeps it out of ps]
  --subscribe-token TOKEN  require TOKEN to subscribe: as a Bearer header, ?token=
                           or the cookie ssed_token [SSED_SUBSCRIBE_TOKEN]
  --stats-interval-ms MS   period of /system-stats samples [SSED_STATS_INTERVAL_MS, 1000]
  --stocks-interval-ms MS  mean pause between /stream-stocks ticks (each is 0.5x to 1.5x)
                           [SSED_STOCKS_INTERVAL_MS, 1000]
  -h, --help               print this help
  -V, --version            print the version

Start it with `ssed`, then open http://127.0.0.1:8000/ or run
`curl -N http://127.0.0.1:8000/stream-time`.
";

/// Everything `ssed serve` needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// `HOST:PORT`, resolved when binding.
    pub addr: String,
    pub www: Option<PathBuf>,
    pub cors_origins: Vec<String>,
    pub keepalive: Duration,
    /// `None`: derived from the open-files limit at start.
    pub max_streams: Option<usize>,
    pub write_timeout: Duration,
    pub pace: Pace,
    /// Events each hub topic keeps for replay.
    pub history: usize,
    pub history_bytes: usize,
    pub max_topics: usize,
    pub max_event_bytes: usize,
    pub publish_token: Option<String>,
    pub subscribe_token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: "127.0.0.1:8000".into(),
            www: None,
            cors_origins: Vec::new(),
            keepalive: Duration::from_secs(15),
            max_streams: None,
            write_timeout: Duration::from_secs(30),
            pace: Pace::default(),
            history: 1000,
            history_bytes: 1024 * 1024,
            max_topics: 1000,
            max_event_bytes: 64 * 1024,
            publish_token: None,
            subscribe_token: None,
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

/// A command line that cannot be used; the message names the argument.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

/// Parses the arguments after the program name; `env` looks up variables.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, UsageError> {
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("serve") {
        args.next();
    }
    let mut config = Config::default();
    let mut origins_from_flags = Vec::new();

    // Variables first, so that flags override them.
    for (var, flag) in FLAGS_WITH_VARS {
        if let Some(value) = env(var) {
            if flag == "--cors-origin" {
                config.cors_origins = value
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(String::from)
                    .collect();
            } else {
                set(&mut config, flag, &value).map_err(|why| invalid(var, &value, &why))?;
            }
        }
    }

    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        if !FLAGS_WITH_VARS.iter().any(|(_, f)| *f == flag) {
            return Err(UsageError(if flag.starts_with('-') {
                format!("unknown option {flag:?}")
            } else {
                format!("unexpected argument {flag:?}")
            }));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(UsageError(format!("{flag} needs a value"))),
        };
        if flag == "--cors-origin" {
            check_origin(&value).map_err(|why| invalid(&flag, &value, &why))?;
            origins_from_flags.push(value);
        } else {
            set(&mut config, &flag, &value).map_err(|why| invalid(&flag, &value, &why))?;
        }
    }
    if !origins_from_flags.is_empty() {
        config.cors_origins = origins_from_flags;
    }
    for origin in &config.cors_origins {
        check_origin(origin).map_err(|why| invalid("SSED_CORS_ORIGIN", origin, &why))?;
    }
    Ok(Command::Serve(Box::new(config)))
}

const FLAGS_WITH_VARS: [(&str, &str); 14] = [
    ("SSED_ADDR", "--addr"),
    ("SSED_WWW", "--www"),
    ("SSED_CORS_ORIGIN", "--cors-origin"),
    ("SSED_KEEPALIVE", "--keepalive"),
    ("SSED_MAX_STREAMS", "--max-streams"),
    ("SSED_WRITE_TIMEOUT", "--write-timeout"),
    ("SSED_STATS_INTERVAL_MS", "--stats-interval-ms"),
    ("SSED_STOCKS_INTERVAL_MS", "--stocks-interval-ms"),
    ("SSED_HISTORY", "--history"),
    ("SSED_HISTORY_BYTES", "--history-bytes"),
    ("SSED_MAX_TOPICS", "--max-topics"),
    ("SSED_MAX_EVENT_BYTES", "--max-event-bytes"),
    ("SSED_PUBLISH_TOKEN", "--publish-token"),
    ("SSED_SUBSCRIBE_TOKEN", "--subscribe-token"),
];

fn invalid(name: &str, value: &str, why: &str) -> UsageError {
    // A secret is not echoed to a terminal or a log.
    if name.contains("TOKEN") || name.contains("-token") {
        return UsageError(format!("invalid value for {name}: {why}"));
    }
    UsageError(format!("invalid value {value:?} for {name}: {why}"))
}

fn set(config: &mut Config, flag: &str, value: &str) -> Result<(), String> {
    match flag {
        "--addr" => {
            check_addr(value)?;
            config.addr = value.to_string();
        }
        "--www" => {
            if value.is_empty() {
                return Err("expected a directory".into());
            }
            config.www = Some(PathBuf::from(value));
        }
        "--keepalive" => config.keepalive = seconds(value, 0.01, 3600.0)?,
        "--write-timeout" => config.write_timeout = seconds(value, 0.1, 3600.0)?,
        "--max-streams" => {
            config.max_streams = Some(
                value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or("expected a whole number from 1 to 1000000")?,
            )
        }
        "--stats-interval-ms" => config.pace.stats = millis(value, 200, 3_600_000)?,
        "--stocks-interval-ms" => config.pace.stocks = millis(value, 1, 3_600_000)?,
        "--history" => config.history = whole(value, 0, 1_000_000)?,
        "--history-bytes" => config.history_bytes = size(value, 1024, 1 << 34)?,
        "--max-topics" => config.max_topics = whole(value, 1, 1_000_000)?,
        "--max-event-bytes" => config.max_event_bytes = size(value, 16, 64 << 20)?,
        "--publish-token" => config.publish_token = Some(token(value)?),
        "--subscribe-token" => config.subscribe_token = Some(token(value)?),
        _ => unreachable!("flag {flag} is listed in FLAGS_WITH_VARS"),
    }
    Ok(())
}

fn whole(value: &str, min: usize, max: usize) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("expected a whole number from {min} to {max}"))
}

/// Bytes, with an optional K or M suffix (1024 and 1024²).
fn size(value: &str, min: usize, max: usize) -> Result<usize, String> {
    let (digits, unit) = match value.strip_suffix(['K', 'k']) {
        Some(d) => (d, 1024),
        None => match value.strip_suffix(['M', 'm']) {
            Some(d) => (d, 1024 * 1024),
            None => (value, 1),
        },
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("expected bytes from {min} to {max}, such as 65536, 64K or 1M"))
}

/// Tokens go into HTTP headers and cookies: printable ASCII, no spaces or
/// separators that would end a cookie.
fn token(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b));
    if ok {
        Ok(value.to_string())
    } else {
        Err("expected printable ASCII without spaces, quotes, commas or semicolons".into())
    }
}

fn check_addr(value: &str) -> Result<(), String> {
    let expected = || "expected HOST:PORT, such as 127.0.0.1:8000 or [::1]:0".to_string();
    let (host, port) = value.rsplit_once(':').ok_or_else(expected)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(expected());
    }
    Ok(())
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

fn millis(value: &str, min: u64, max: u64) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(ms) if (min..=max).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(format!("expected milliseconds from {min} to {max}")),
    }
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
    fn defaults_flags_and_env() {
        let c = parse_with(&[], &[]).unwrap();
        assert_eq!(c.addr, "127.0.0.1:8000");
        assert_eq!(c.keepalive, Duration::from_secs(15));
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
            ],
            &[
                ("SSED_ADDR", "127.0.0.1:9"),
                ("SSED_MAX_STREAMS", "7"),
                ("SSED_CORS_ORIGIN", "http://x"),
            ],
        )
        .unwrap();
        assert_eq!(c.addr, "0.0.0.0:0");
        assert_eq!(c.keepalive, Duration::from_millis(500));
        assert_eq!(c.max_streams, Some(7));
        assert_eq!(c.cors_origins, ["*", "http://a:1"]);
        let c = parse_with(&[], &[("SSED_CORS_ORIGIN", "http://x, http://y")]).unwrap();
        assert_eq!(c.cors_origins, ["http://x", "http://y"]);
    }

    #[test]
    fn errors_name_the_argument() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case; 9] = [
            (&["--port", "1"], &[], "unknown option \"--port\""),
            (&["extra"], &[], "unexpected argument \"extra\""),
            (&["--addr"], &[], "--addr needs a value"),
            (&["--addr", "8000"], &[], "invalid value \"8000\" for --addr: expected HOST:PORT, such as 127.0.0.1:8000 or [::1]:0"),
            (&["--keepalive=x"], &[], "invalid value \"x\" for --keepalive: expected seconds from 0.01 to 3600"),
            (&["--max-streams", "0"], &[], "invalid value \"0\" for --max-streams: expected a whole number from 1 to 1000000"),
            (&["--cors-origin", "localhost"], &[], "invalid value \"localhost\" for --cors-origin: expected * or an origin such as http://localhost:8080"),
            (&[], &[("SSED_KEEPALIVE", "-1")], "invalid value \"-1\" for SSED_KEEPALIVE: expected seconds from 0.01 to 3600"),
            (&["--cors-origin", "http://a\r\nX: y"], &[], "invalid value \"http://a\\r\\nX: y\" for --cors-origin: an origin is printable ASCII without spaces"),
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
            ],
            &[("SSED_PUBLISH_TOKEN", "p")],
        )
        .unwrap();
        assert_eq!(
            (c.history, c.history_bytes, c.max_event_bytes, c.max_topics),
            (0, 2 << 20, 1024, 5)
        );
        assert_eq!(c.publish_token.as_deref(), Some("p"));
        assert_eq!(parse_with(&["--max-event-bytes", "lots"], &[]).unwrap_err(), "invalid value \"lots\" for --max-event-bytes: expected bytes from 16 to 67108864, such as 65536, 64K or 1M");
        assert_eq!(parse_with(&["--subscribe-token", "a b"], &[]).unwrap_err(), "invalid value for --subscribe-token: expected printable ASCII without spaces, quotes, commas or semicolons");
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
}
