//! The client for scripts, on hosts without Python or curl.
//!
//! - `ssed listen` ([`listen()`]) prints a stream's events as a browser's
//!   EventSource receives them, and reconnects as it does;
//! - `ssed publish` ([`publish()`]) sends an event and prints the reply;
//! - `ssed delete` ([`delete()`]) deletes a topic;
//! - `ssed healthcheck` ([`healthcheck()`]) asks `/healthz` (containers);
//! - `ssed token` ([`token()`]) prints a signed token.
//!
//! Both speak HTTP/1.1 through [`http`] (on the server's own `http1` bytes)
//! to `http://` [`Url`]s. What they print is pipe-friendly.

mod delete;
mod health;
pub mod http;
mod listen;
mod publish;
mod token;
pub mod url;

pub use delete::{delete, parse_delete, Delete, DELETE_USAGE};
pub use health::{healthcheck, HEALTHCHECK_USAGE};
pub use listen::{listen, parse_listen, Listen, LISTEN_USAGE, MAX_RETRY, MIN_RETRY};
pub use publish::{parse_publish, publish, publish_lines, LineSettings, Publish, PUBLISH_USAGE};
pub use token::{parse_token, token, TokenRequest, TOKEN_USAGE};
pub use url::Url;

use crate::args::{self, UsageError};
use std::io::Read;

/// What a command ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// One line saying what went wrong, starting with the URL.
    Failed(String),
}

/// A one-shot command's reply (`ssed publish`, `ssed delete`): printed on
/// `out` with a newline when it is a 2xx (a closed stdout is not an error:
/// the command was done), else a failure naming the status and the
/// server's error.
fn print_reply(
    url: &Url,
    mut res: http::Response,
    limit: u64,
    out: &mut dyn std::io::Write,
) -> Outcome {
    let text = match res.text(limit) {
        Ok(text) => text,
        Err(e) => return Outcome::Failed(format!("{url}: reading the reply: {e}")),
    };
    if !(200..300).contains(&res.status) {
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_else(|| text.trim().chars().take(1000).collect());
        let sep = if detail.is_empty() { "" } else { ": " };
        return Outcome::Failed(format!("{url}: {} {}{sep}{detail}", res.status, res.reason));
    }
    let newline = if text.ends_with('\n') || text.is_empty() {
        ""
    } else {
        "\n"
    };
    let _ = write!(out, "{text}{newline}").and_then(|()| out.flush());
    Outcome::Done
}

/// A `--token` argument: sent in a header, so printable ASCII.
fn token_arg(flag: &str, value: String) -> Result<String, UsageError> {
    if value.is_empty() {
        return Err(args::invalid(flag, &value, "the token is empty"));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(args::invalid(
            flag,
            &value,
            "expected printable ASCII without spaces",
        ));
    }
    Ok(value)
}

/// A `-H 'Name: value'` argument.
fn header_arg(raw: &str) -> Result<(String, String), UsageError> {
    match raw.split_once(':') {
        Some((name, value))
            if !name.trim().is_empty()
                && name.bytes().all(|b| b.is_ascii_graphic())
                && !value.contains(['\r', '\n']) =>
        {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(args::invalid("-H", raw, "expected 'Name: value'")),
    }
}

/// A body argument: `-` reads stdin, `@FILE` a file, anything else is the
/// body itself.
fn read_data(arg: &str, stdin: &mut dyn Read) -> Result<Vec<u8>, String> {
    if arg == "-" {
        let mut data = Vec::new();
        stdin
            .read_to_end(&mut data)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        Ok(data)
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read(path).map_err(|e| format!("{path}: {e}"))
    } else {
        Ok(arg.as_bytes().to_vec())
    }
}
