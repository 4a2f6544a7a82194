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
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Serve(Config),
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
    Ok(Command::Serve(config))
}

const FLAGS_WITH_VARS: [(&str, &str); 8] = [
    ("SSED_ADDR", "--addr"),
    ("SSED_WWW", "--www"),
    ("SSED_CORS_ORIGIN", "--cors-origin"),
    ("SSED_KEEPALIVE", "--keepalive"),
    ("SSED_MAX_STREAMS", "--max-streams"),
    ("SSED_WRITE_TIMEOUT", "--write-timeout"),
    ("SSED_STATS_INTERVAL_MS", "--stats-interval-ms"),
    ("SSED_STOCKS_INTERVAL_MS", "--stocks-interval-ms"),
];

fn invalid(name: &str, value: &str, why: &str) -> UsageError {
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
        _ => unreachable!("flag {flag} is listed in FLAGS_WITH_VARS"),
    }
    Ok(())
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
            Ok(Command::Serve(c)) => Ok(c),
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
        let cases: [Case; 8] = [
            (&["--port", "1"], &[], "unknown option \"--port\""),
            (&["extra"], &[], "unexpected argument \"extra\""),
            (&["--addr"], &[], "--addr needs a value"),
            (&["--addr", "8000"], &[], "invalid value \"8000\" for --addr: expected HOST:PORT, such as 127.0.0.1:8000 or [::1]:0"),
            (&["--keepalive=x"], &[], "invalid value \"x\" for --keepalive: expected seconds from 0.01 to 3600"),
            (&["--max-streams", "0"], &[], "invalid value \"0\" for --max-streams: expected a whole number from 1 to 1000000"),
            (&["--cors-origin", "localhost"], &[], "invalid value \"localhost\" for --cors-origin: expected * or an origin such as http://localhost:8080"),
            (&[], &[("SSED_KEEPALIVE", "-1")], "invalid value \"-1\" for SSED_KEEPALIVE: expected seconds from 0.01 to 3600"),
        ];
        for (args, env, expected) in cases {
            assert_eq!(parse_with(args, env).unwrap_err(), expected, "{args:?}");
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
}
