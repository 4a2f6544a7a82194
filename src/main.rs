//! The `ssed` command: parses the command line and runs the server.

use ssed::client::{self, Outcome};
use ssed::config::{self, Command, UsageError};
use ssed::{log, sources, sys};
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mut args = spelled_out(std::env::args().skip(1).collect())
        .into_iter()
        .peekable();
    let env = |name: &str| std::env::var(name).ok();
    match args.peek().map(String::as_str) {
        Some("listen") => {
            args.next();
            stop_on_signals_as_init();
            return match client::parse_listen(args, &mut std::io::stdin()) {
                Ok(Ok(listen)) => finish(client::listen(
                    &listen,
                    &mut std::io::stdout(),
                    &mut std::io::stderr(),
                )),
                Ok(Err(help)) => print(help),
                Err(e) => usage_error(e, "listen"),
            };
        }
        Some("publish") => {
            args.next();
            return match client::parse_publish(args, env, &mut std::io::stdin()) {
                Ok(Ok(publish)) => finish(match &publish.lines {
                    Some(settings) => client::publish_lines(
                        &publish,
                        settings,
                        std::io::stdin(),
                        &mut std::io::stderr(),
                    ),
                    None => client::publish(&publish, &mut std::io::stdout()),
                }),
                Ok(Err(help)) => print(help),
                Err(e) => usage_error(e, "publish"),
            };
        }
        Some("healthcheck") => {
            args.next();
            let rest: Vec<String> = args.collect();
            return match rest.as_slice() {
                [] => finish(client::healthcheck(
                    "http://127.0.0.1:8000/healthz",
                    std::time::Duration::from_secs(5),
                )),
                [h] if h == "-h" || h == "--help" => print(client::HEALTHCHECK_USAGE),
                [url] => finish(client::healthcheck(url, std::time::Duration::from_secs(5))),
                _ => usage_error(
                    UsageError("healthcheck takes one URL at most".into()),
                    "healthcheck",
                ),
            };
        }
        Some("delete") => {
            args.next();
            return match client::parse_delete(args, env) {
                Ok(Ok(d)) => finish(client::delete(&d, &mut std::io::stdout())),
                Ok(Err(help)) => print(help),
                Err(e) => usage_error(e, "delete"),
            };
        }
        Some("token") => {
            args.next();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            return match client::parse_token(args, env, now) {
                Ok(Ok(request)) => print(&client::token(&request)),
                Ok(Err(help)) => print(help),
                Err(e) => usage_error(e, "token"),
            };
        }
        Some(sources::KEEPER_SUBCOMMAND) => {
            args.next();
            sources::run_keeper(&args.collect::<Vec<_>>());
        }
        _ => {}
    }
    let command = match config::parse(args, env) {
        Ok(command) => command,
        Err(e) => return usage_error(e, ""),
    };
    match command {
        Command::Help => print(&config::usage()),
        Command::Version => print(&format!("ssed {}\n", env!("CARGO_PKG_VERSION"))),
        Command::Serve(mut config) => {
            // Each --source program runs under this binary as its keeper.
            config.source_keeper = Some("/proc/self/exe".into());
            serve(*config)
        }
    }
}

/// As a container's first process (PID 1), SIGTERM and SIGINT do nothing
/// unless handled: `ssed listen` there stops on them at once, as it does
/// anywhere else by their default action.
fn stop_on_signals_as_init() {
    if std::process::id() != 1 || sys::signals::block_stop_signals().is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("ssed-signals".into())
        .spawn(|| {
            let signal = sys::signals::wait_for_stop_signal();
            eprintln!("ssed: {signal}: stopped");
            std::process::exit(0);
        });
}

/// `ssed help [listen|publish]` and `ssed version`, as commands are often
/// asked, mean `--help` and `--version`.
fn spelled_out(args: Vec<String>) -> Vec<String> {
    match args.first().map(String::as_str) {
        Some("help") => match args.get(1).map(String::as_str) {
            Some(sub @ ("listen" | "publish" | "serve" | "token" | "delete" | "healthcheck")) => {
                vec![sub.to_string(), "--help".into()]
            }
            None => vec!["--help".into()],
            // Not a command: refused as any unknown argument is.
            Some(other) => vec![other.to_string()],
        },
        Some("version") if args.len() == 1 => vec!["--version".into()],
        _ => args,
    }
}

fn usage_error(UsageError(why): UsageError, command: &str) -> ExitCode {
    let help = if command.is_empty() {
        "ssed --help".to_string()
    } else {
        format!("ssed {command} --help")
    };
    eprintln!("ssed: {why}\nTry '{help}' for more information.");
    ExitCode::from(2)
}

fn finish(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Done => ExitCode::SUCCESS,
        Outcome::Failed(why) => {
            eprintln!("ssed: {why}");
            ExitCode::from(1)
        }
    }
}

/// `1 stream`, `2 streams`.
fn counted(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Prints to stdout; a closed stdout (`ssed --help | head -1`) is not an error.
fn print(text: &str) -> ExitCode {
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

fn serve(config: ssed::Config) -> ExitCode {
    // Before any thread starts, so that every thread inherits the mask and
    // the signals come to `wait_for_stop_signal` below.
    if let Err(e) = sys::signals::block_stop_signals() {
        log::internal(&format!("cannot take SIGTERM and SIGINT: {e}"));
    }
    let config_open = (config.publish_token.is_none() || config.subscribe_token.is_none())
        && config.token_key.is_none()
        && config.auth_url.is_none();
    let drain = config.drain;
    let server = match ssed::Server::start(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("ssed: {e}");
            return ExitCode::from(1);
        }
    };
    let limits = server.limits().clone();
    for note in &limits.notes {
        log::line(&format!("note: {note}"));
    }
    let addr = server.addr();
    let open = config_open && !addr.ip().is_loopback();
    let note = if open {
        "; the hub is open to every host that can reach it: see --publish-token and --subscribe-token"
    } else {
        ""
    };
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "ssed listening on http://{addr}/ (sized for {}: at most {} connections, set by {}; {} of history{note})",
        limits.memory,
        limits.max_connections,
        limits.set_by,
        ssed::memory::size(limits.history_total as u64),
    );
    let _ = out.flush();
    let signal = sys::signals::next_stop_signal();
    if !drain.is_zero() {
        // The balancer takes the instance out (/healthz is 503), new
        // streams go elsewhere, the open ones go on; a second signal ends it.
        log::line(&format!(
            "{signal}: draining for {} s (--drain): new streams refused, /healthz 503; {signal} again stops at once",
            drain.as_secs_f64()
        ));
        server.drain();
        sys::signals::stop_signal_within(drain);
    }
    sys::signals::unblock_stop_signals();
    let started = Instant::now();
    let (streams, connections) = (server.open_streams(), server.open_connections());
    server.shutdown();
    log::line(&format!(
        "{signal}: stopped in {:.3} s; {} ended, {} closed",
        started.elapsed().as_secs_f64(),
        counted(streams, "stream"),
        counted(connections, "connection"),
    ));
    ExitCode::SUCCESS
}
