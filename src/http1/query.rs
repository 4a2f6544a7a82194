//! Targets, queries and percent-encoding, as a request and a URL carry
//! them.

/// The media type of a `Content-Type` value, lower-cased and without
/// parameters: `Text/Event-Stream; charset=utf-8` is `text/event-stream`.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Splits a request target into path and query (without the `?`).
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

/// The decoded `name=value` pairs of a query string, in order. A pair that
/// does not decode to UTF-8 is an error naming it.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (query_name(name), decode(value, true)) {
                (Some(n), Some(v)) => Ok((n, v)),
                _ => Err(format!(
                    "query parameter {:?} is not valid percent-encoded UTF-8",
                    pair.chars().take(64).collect::<String>()
                )),
            }
        })
        .collect()
}

/// A query parameter's name decoded as [`parse_query`] decodes it; `None`
/// if it does not decode.
pub fn query_name(raw: &str) -> Option<String> {
    decode(raw, true)
}

/// Splits a URL authority's `host[:port]`, the host of an IPv6 address in
/// brackets (`[::1]:7000`): the host and the port's text, if any. `None`
/// when a `[` is not closed.
pub fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        return Some((host, after.strip_prefix(':')));
    }
    Some(match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    })
}

/// Decodes `%XX` escapes (exactly two hex digits); `None` if an escape is
/// malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    decode(s, false)
}

fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = (*bytes.get(i + 1)? as char).to_digit(16)?;
                let lo = (*bytes.get(i + 2)? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_escapes() {
        assert_eq!(split_target("/a?b=c"), ("/a", "b=c"));
        assert_eq!(split_target("/a"), ("/a", ""));
        let q = parse_query("a=1&b=x+y%21&&c&a=2").unwrap();
        assert_eq!(
            q,
            [("a", "1"), ("b", "x y!"), ("c", ""), ("a", "2")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert!(parse_query("a=%zz").is_err());
        assert!(parse_query("a=%ff").is_err());
        let cases = [
            ("%2e%2E/x", Some("../x")),
            ("a+b", Some("a+b")),
            ("%", None),
            ("%4", None),
            ("%+A", None),
            ("%-1", None),
            ("% a", None),
            ("%c3%a9", Some("\u{e9}")),
        ];
        for (input, expected) in cases {
            assert_eq!(percent_decode(input).as_deref(), expected, "{input}");
        }
        assert_eq!(
            media_type(Some("Text/Event-Stream; charset=utf-8")),
            "text/event-stream"
        );
        assert_eq!(media_type(None), "");
    }
}
