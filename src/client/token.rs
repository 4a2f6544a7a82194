//! `ssed token`: prints a signed token (RFC 7519, HS256) for scripts and
//! for trying grants, with the key the server reads (`--token-key`,
//! `SSED_TOKEN_KEY`, `--token-key-file`).

use crate::args::{self, Arg, Args, UsageError};
use crate::jwt::{self, Key};
use crate::names::Pattern;
use serde_json::{json, Map, Value};

pub const TOKEN_USAGE: &str = "\
Usage: ssed token [OPTIONS]

Prints a JSON Web Token signed with the server's --token-key (HS256),
granting what the options say. For scripts, and for trying grants: an
application signs its users' tokens itself (see docs/private.md).

Options:
  --subscribe PATTERN   topics it may read: a name, * for one segment,
                        ** as the last for one or more (users/42/*);
                        repeatable
  --publish PATTERN     topics it may publish to; repeatable
  --admin               /metrics, and every topic in /topics
  --sub NAME            who it is for (shown in the access log)
  --ttl DURATION        how long it is valid: seconds, or with s, m, h or d
                        [default: 1h]
  --token-key SECRET    the key [env: SSED_TOKEN_KEY]
  --token-key-file PATH the key, from a file [env: SSED_TOKEN_KEY_FILE]
  -h, --help            this text
";

/// The longest a token may be made for: a year.
const MAX_TTL: u64 = 366 * 86_400;

/// What `ssed token` signs.
#[derive(Debug)]
pub struct TokenRequest {
    pub key: Key,
    pub claims: Value,
}

/// Parses `ssed token`'s arguments; `Ok(Err(usage))` for `--help`.
pub fn parse_token(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    now: u64,
) -> Result<Result<TokenRequest, &'static str>, UsageError> {
    let mut args = Args::new(args);
    let mut subscribe = Vec::new();
    let mut publish = Vec::new();
    let mut admin = false;
    let mut sub = None;
    let mut ttl = 3600;
    let key_var = |name: &str, read: fn(&str) -> Result<Key, String>| {
        env(name)
            .filter(|v| !v.is_empty())
            .map(|v| read(&v).map_err(|why| args::invalid(name, &v, &why)))
    };
    let mut key = match key_var("SSED_TOKEN_KEY", |v| Key::new(v.as_bytes())) {
        Some(key) => Some(key?),
        None => key_var("SSED_TOKEN_KEY_FILE", Key::from_file).transpose()?,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg {
            Arg::Plain(other) => return Err(UsageError(format!("unexpected argument {other:?}"))),
            Arg::Option(flag, inline) => (flag, inline),
        };
        let pattern = |args: &mut Args<_>, inline| -> Result<String, UsageError> {
            let v = args.value(&flag, inline)?;
            Pattern::parse(&v).map_err(|why| args::invalid(&flag, &v, &why))?;
            Ok(v)
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Err(TOKEN_USAGE)),
            "--subscribe" => subscribe.push(pattern(&mut args, inline)?),
            "--publish" => publish.push(pattern(&mut args, inline)?),
            "--admin" => admin = true,
            "--sub" => {
                let v = args.value(&flag, inline)?;
                if v.is_empty() || v.chars().count() > 128 {
                    return Err(args::invalid(&flag, &v, "expected 1 to 128 characters"));
                }
                sub = Some(v);
            }
            "--ttl" => {
                let v = args.value(&flag, inline)?;
                ttl = duration(&v).map_err(|why| args::invalid(&flag, &v, &why))?;
            }
            "--token-key" => {
                let v = args.value(&flag, inline)?;
                key = Some(Key::new(v.as_bytes()).map_err(|why| args::invalid(&flag, &v, &why))?);
            }
            "--token-key-file" => {
                let v = args.value(&flag, inline)?;
                key = Some(Key::from_file(&v).map_err(|why| args::invalid(&flag, &v, &why))?);
            }
            _ => return Err(args::unknown(&flag, "token")),
        }
    }
    let key = key.ok_or_else(|| {
        UsageError("no key: give --token-key, --token-key-file or SSED_TOKEN_KEY".into())
    })?;
    if subscribe.is_empty() && publish.is_empty() && !admin {
        return Err(UsageError(
            "the token would grant nothing: give --subscribe, --publish or --admin".into(),
        ));
    }
    let mut grants = Map::new();
    if !subscribe.is_empty() {
        grants.insert("subscribe".into(), json!(subscribe));
    }
    if !publish.is_empty() {
        grants.insert("publish".into(), json!(publish));
    }
    if admin {
        grants.insert("admin".into(), json!(true));
    }
    let mut claims = Map::new();
    if let Some(sub) = sub {
        claims.insert("sub".into(), json!(sub));
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + ttl));
    claims.insert("ssed".into(), Value::Object(grants));
    Ok(Ok(TokenRequest {
        key,
        claims: Value::Object(claims),
    }))
}

/// The signed token, as `ssed token` prints it (with a newline).
pub fn token(request: &TokenRequest) -> String {
    format!("{}\n", jwt::sign(&request.claims, &request.key))
}

/// `90`, `90s`, `15m`, `1h`, `7d`: seconds, from 1 to a year.
fn duration(text: &str) -> Result<u64, String> {
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => 0,
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|s| (1..=MAX_TTL).contains(s))
        .ok_or_else(|| "expected a duration from 1s to 366d: 90, 90s, 15m, 1h or 7d".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<TokenRequest, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match parse_token(args.iter().map(|s| s.to_string()), lookup, 1000) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err("help".into()),
            Err(UsageError(e)) => Err(e),
        }
    }

    #[test]
    fn tokens_carry_what_the_options_grant() {
        let key = "k".repeat(32);
        let r = parse(
            &[
                "--subscribe",
                "users/42/*",
                "--subscribe=news",
                "--publish",
                "users/42/outbox",
                "--sub",
                "u42",
                "--ttl",
                "15m",
            ],
            &[("SSED_TOKEN_KEY", &key)],
        )
        .unwrap();
        assert_eq!(
            r.claims,
            json!({"sub": "u42", "iat": 1000, "exp": 1900,
                   "ssed": {"subscribe": ["users/42/*", "news"], "publish": ["users/42/outbox"]}})
        );
        let printed = token(&r);
        let claims =
            jwt::verify(printed.trim_end(), &Key::new(key.as_bytes()).unwrap(), 1899).unwrap();
        assert!(claims.grants.may_subscribe("users/42/inbox"));
        assert_eq!(claims.exp, Some(1900));
        let r = parse(&["--admin", "--token-key", &key], &[]).unwrap();
        assert_eq!(
            r.claims,
            json!({"iat": 1000, "exp": 4600, "ssed": {"admin": true}})
        );
        assert_eq!(parse(&["--help"], &[]).unwrap_err(), "help");
    }

    #[test]
    fn every_bad_option_is_named() {
        let key = "k".repeat(32);
        let k = ("SSED_TOKEN_KEY", key.as_str());
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&["--admin"], &[], "no key: give --token-key, --token-key-file or SSED_TOKEN_KEY"),
            (&[], &[k], "the token would grant nothing: give --subscribe, --publish or --admin"),
            (&["--subscribe", "a/**/b"], &[k], "invalid value \"a/**/b\" for --subscribe: ** is only the last segment of a pattern, not \"a/**/b\""),
            (&["--admin", "--ttl", "2y"], &[k], "invalid value \"2y\" for --ttl: expected a duration from 1s to 366d: 90, 90s, 15m, 1h or 7d"),
            (&["--admin", "--ttl", "0"], &[k], "invalid value \"0\" for --ttl: expected a duration from 1s to 366d: 90, 90s, 15m, 1h or 7d"),
            (&["--admin", "--frob"], &[k], "unknown option \"--frob\" for token"),
            (&["--admin", "x"], &[k], "unexpected argument \"x\""),
        ];
        for (args, env, why) in cases {
            assert_eq!(parse(args, env).unwrap_err(), *why, "{args:?}");
        }
        // The key is never echoed.
        let e = parse(&["--admin", "--token-key", "short-secret"], &[]).unwrap_err();
        assert!(!e.contains("short-secret"), "{e}");
        assert_eq!(duration("90").unwrap(), 90);
        assert_eq!(duration("7d").unwrap(), 7 * 86_400);
    }
}
