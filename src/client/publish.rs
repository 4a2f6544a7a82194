//! `ssed publish`: sends one event to a topic and prints the server's reply.

use super::http;
use super::Url;
use super::{header_arg, read_data, Outcome};
use crate::args::{self, Arg, Args, UsageError};
use crate::sse;
use std::io::{Read, Write};
use std::time::Duration;

pub const PUBLISH_USAGE: &str = "\
Usage: ssed publish URL [DATA] [OPTIONS]

POSTs DATA (or standard input, when DATA is - or absent, less one trailing
newline) to a topic URL and prints the server's reply.

Options:
      --event NAME     the event's name (sent as ?event=NAME)
      --token TOKEN    send Authorization: Bearer TOKEN [SSED_PUBLISH_TOKEN]
  -H, --header 'NAME: VALUE'  add a request header; repeatable
  -h, --help           print this help

Exit status: 0 on a 2xx answer, 1 otherwise (the status and the server's
error are printed on stderr), 2 on a bad command line.
";

/// How long a publish may take, connect to reply.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a reply that is read.
const REPLY_LIMIT: u64 = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct Publish {
    pub url: Url,
    pub data: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Parses the arguments after `publish`; `env` looks up `SSED_PUBLISH_TOKEN`.
pub fn parse_publish(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
) -> Result<Result<Publish, &'static str>, UsageError> {
    let mut args = Args::new(args);
    let mut positional = Vec::new();
    let mut event = None;
    let mut token = env("SSED_PUBLISH_TOKEN").filter(|t| !t.is_empty());
    let mut headers = Vec::new();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg {
            Arg::Plain(value) => {
                positional.push(value);
                continue;
            }
            Arg::Option(flag, inline) => (flag, inline),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Err(PUBLISH_USAGE)),
            "--event" => {
                let v = args.value(&flag, inline)?;
                sse::check_field("an event name", &v)
                    .map_err(|why| args::invalid(&flag, &v, &why))?;
                event = Some(v);
            }
            "--token" => {
                let v = args.value(&flag, inline)?;
                if v.is_empty() {
                    return Err(args::invalid(&flag, &v, "the token is empty"));
                }
                if !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(args::invalid(
                        &flag,
                        &v,
                        "expected printable ASCII without spaces",
                    ));
                }
                token = Some(v);
            }
            "-H" | "--header" => headers.push(header_arg(&args.value(&flag, inline)?)?),
            _ => return Err(args::unknown(&flag, "publish")),
        }
    }
    let mut positional = positional.into_iter();
    let raw = positional.next().ok_or_else(|| {
        UsageError("publish needs a URL, such as http://127.0.0.1:8000/events/news".into())
    })?;
    let mut url = Url::parse(&raw).map_err(|why| args::invalid("URL", &raw, &why))?;
    let data = match positional.next() {
        None => read_stdin(stdin),
        Some(d) if d == "-" => read_stdin(stdin),
        Some(d) => Ok(d.into_bytes()),
    }
    .map_err(UsageError)?;
    if let Some(extra) = positional.next() {
        return Err(UsageError(format!("unexpected argument {extra:?}")));
    }
    if let Some(name) = event {
        let sep = if url.target.contains('?') { '&' } else { '?' };
        url.target = format!("{}{sep}event={}", url.target, percent_encode(&name));
    }
    if !headers
        .iter()
        .any(|(n, _): &(String, String)| n.eq_ignore_ascii_case("Content-Type"))
    {
        headers.push(("Content-Type".into(), "text/plain; charset=utf-8".into()));
    }
    if let Some(token) = token {
        headers.push(("Authorization".into(), format!("Bearer {token}")));
    }
    Ok(Ok(Publish { url, data, headers }))
}

/// Standard input, less one trailing newline (LF or CRLF), as `curl -d @-`
/// reads it: `echo hi | ssed publish URL` publishes `hi`.
fn read_stdin(stdin: &mut dyn Read) -> Result<Vec<u8>, String> {
    let mut data = read_data("-", stdin)?;
    if data.ends_with(b"\n") {
        data.pop();
        if data.ends_with(b"\r") {
            data.pop();
        }
    }
    Ok(data)
}

/// Sends the publish and prints the reply.
pub fn publish(p: &Publish, out: &mut dyn Write) -> Outcome {
    let mut res = match http::request(&p.url, "POST", &p.headers, Some(&p.data), Some(TIMEOUT)) {
        Ok(res) => res,
        Err(e) => return Outcome::Failed(format!("{}: {e}", p.url)),
    };
    let text = match res.text(REPLY_LIMIT) {
        Ok(text) => text,
        Err(e) => return Outcome::Failed(format!("{}: reading the reply: {e}", p.url)),
    };
    if !(200..300).contains(&res.status) {
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_else(|| text.trim().to_string());
        let sep = if detail.is_empty() { "" } else { ": " };
        return Outcome::Failed(format!(
            "{}: {} {}{sep}{detail}",
            p.url, res.status, res.reason
        ));
    }
    let newline = if text.ends_with('\n') || text.is_empty() {
        ""
    } else {
        "\n"
    };
    // A closed stdout is not an error: the publish happened.
    let _ = write!(out, "{text}{newline}").and_then(|()| out.flush());
    Outcome::Done
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn publish_arguments() {
        let p = parse_publish(
            args(&["http://h/events/a?x=1", "hi", "--event", "a b"]),
            |_| Some("tok".into()),
            &mut io::empty(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.url.target, "/events/a?x=1&event=a%20b");
        assert_eq!(p.data, b"hi");
        assert!(p
            .headers
            .contains(&("Authorization".into(), "Bearer tok".into())));
        let p = parse_publish(args(&["http://h/t"]), |_| None, &mut &b"from stdin\n"[..])
            .unwrap()
            .unwrap();
        assert_eq!(p.data, b"from stdin", "one trailing newline is dropped");
        assert!(!p.headers.iter().any(|(n, _)| n == "Authorization"));
        let p = parse_publish(args(&["http://h/t", "-"]), |_| None, &mut &b"two\n\n"[..])
            .unwrap()
            .unwrap();
        assert_eq!(p.data, b"two\n", "only one");
        let p = parse_publish(args(&["http://h/t", "kept\n"]), |_| None, &mut io::empty())
            .unwrap()
            .unwrap();
        assert_eq!(p.data, b"kept\n", "an argument is sent as it is");
        assert!(
            parse_publish(args(&["http://h/t", "a", "b"]), |_| None, &mut io::empty()).is_err()
        );
        assert_eq!(
            parse_publish(
                args(&["http://h/t", "x", "--token", ""]),
                |_| None,
                &mut io::empty()
            )
            .unwrap_err(),
            UsageError("invalid value for --token: the token is empty".into())
        );
    }
}
