//! The `ssed` command: parses the command line and runs the server.

use ssed::config::{self, Command};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = std::env::args().skip(1);
    let command = match config::parse(args, |name| std::env::var(name).ok()) {
        Ok(command) => command,
        Err(config::UsageError(why)) => {
            eprintln!("ssed: {why}\nTry 'ssed --help' for more information.");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => print(config::USAGE),
        Command::Version => print(&format!("ssed {}\n", env!("CARGO_PKG_VERSION"))),
        Command::Serve(config) => serve(config),
    }
}

/// Prints to stdout; a closed stdout (`ssed --help | head -1`) is not an error.
fn print(text: &str) -> ExitCode {
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

fn serve(config: ssed::Config) -> ExitCode {
    let server = match ssed::Server::start(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("ssed: {e}");
            return ExitCode::from(1);
        }
    };
    let addr = server.addr();
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ssed listening on http://{addr}/");
    let _ = out.flush();
    if !addr.ip().is_loopback() {
        eprintln!(
            "ssed: note: {addr} is reachable from other hosts, and publishing is open to them"
        );
    }
    server.wait();
    ExitCode::SUCCESS
}
