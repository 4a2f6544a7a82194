//! `ssed delete`: deletes a topic and prints the server's reply.

use super::http;
use super::Url;
use super::{header_arg, token_arg, Outcome};
use crate::args::{self, Arg, Args, UsageError};
use std::time::Duration;

pub const DELETE_USAGE: &str = "\
Usage: ssed delete URL [OPTIONS]

Deletes the topic at URL (http://HOST:PORT/events/TOPIC): its events are
gone, its open streams end with a last `deleted` event, and a later publish
starts it afresh. Prints the server's reply.

Options:
      --token TOKEN           send Authorization: Bearer TOKEN (the right to
                              publish to the topic) [SSED_PUBLISH_TOKEN]
  -H, --header 'NAME: VALUE'  add a request header; repeatable
  -h, --help                  print this help

Exit status: 0 when the topic was deleted, 1 otherwise (404 for no such
topic; the status and the server's error are printed on stderr), 2 on a bad
command line.
";

/// How long a delete may take, connect to reply.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Delete {
    pub url: Url,
    pub headers: Vec<(String, String)>,
}

/// Parses the arguments after `delete`; `env` looks up `SSED_PUBLISH_TOKEN`.
pub fn parse_delete(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Result<Delete, &'static str>, UsageError> {
    let mut args = Args::new(args);
    let mut token = env("SSED_PUBLISH_TOKEN").filter(|t| !t.is_empty());
    let mut headers = Vec::new();
    let mut url = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg {
            Arg::Plain(value) if url.is_none() => {
                url = Some(value);
                continue;
            }
            Arg::Plain(other) => return Err(UsageError(format!("unexpected argument {other:?}"))),
            Arg::Option(flag, inline) => (flag, inline),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Err(DELETE_USAGE)),
            "--token" => token = Some(token_arg(&flag, args.value(&flag, inline)?)?),
            "-H" | "--header" => headers.push(header_arg(&args.value(&flag, inline)?)?),
            _ => return Err(args::unknown(&flag, "delete")),
        }
    }
    let raw = url.ok_or_else(|| {
        UsageError("delete needs a URL, such as http://127.0.0.1:8000/events/news".into())
    })?;
    let url = Url::parse(&raw).map_err(|why| args::invalid("URL", &raw, &why))?;
    if let Some(token) = token {
        headers.push(("Authorization".into(), format!("Bearer {token}")));
    }
    Ok(Ok(Delete { url, headers }))
}

/// Sends the delete; prints the reply (`{"topic":..,"deleted":true}`).
pub fn delete(d: &Delete, out: &mut dyn std::io::Write) -> Outcome {
    let res = match http::request(&d.url, "DELETE", &d.headers, None, Some(TIMEOUT)) {
        Ok(res) => res,
        Err(e) => return Outcome::Failed(format!("{}: {e}", d.url)),
    };
    super::print_reply(&d.url, res, 64 * 1024, out)
}
