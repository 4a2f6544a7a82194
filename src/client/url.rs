//! `http://` URLs as the client needs them: parsed for the request line and
//! the Host header, and references (a redirect's `Location`) resolved
//! against them as RFC 3986, section 5.2, says.

/// An `http://` URL, split for the request line and the Host header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// As a socket address wants it: IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`; never a fragment.
    pub target: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, String> {
        let rest = match split_scheme(url) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => return Err(
                "https is not supported: ssed has no TLS built in; put a TLS-terminating proxy \
                     in front, or use `curl -N` for https"
                    .into(),
            ),
            _ => return Err("expected a URL starting with http://".into()),
        };
        let rest = rest
            .strip_prefix("//")
            .ok_or("expected a URL starting with http://")?;
        let rest = rest.split('#').next().unwrap_or("");
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err(
                "user names and passwords in URLs are not supported; use -H 'Authorization: ...'"
                    .into(),
            );
        }
        let (host, port) =
            crate::http1::split_host_port(authority).ok_or("unclosed [ in the host")?;
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p.parse().map_err(|_| format!("invalid port {p:?}"))?,
        };
        check_target(&target)?;
        Ok(Url {
            host: host.to_ascii_lowercase(),
            port,
            target,
        })
    }

    /// The Host header value.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Whether `other` is the same origin: same scheme (always http here),
    /// host and port. Credentials are not sent across origins.
    pub fn same_origin(&self, other: &Url) -> bool {
        self.host == other.host && self.port == other.port
    }

    /// The URL that `reference` (a `Location` value) points to from here,
    /// resolved as RFC 3986, section 5.2.2 says: an empty reference is this
    /// URL, `?q` keeps this path, dot segments are removed, the fragment is
    /// dropped. A reference with its own scheme is absolute, but `http:`
    /// without `//` is read relative to this URL, as browsers do.
    pub fn join(&self, reference: &str) -> Result<Url, String> {
        let reference = reference.trim();
        let reference = reference.split('#').next().unwrap_or("");
        let reference = match split_scheme(reference) {
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case("http") && !rest.starts_with("//") =>
            {
                rest
            }
            Some(_) => return Url::parse(reference),
            None => reference,
        };
        if let Some(rest) = reference.strip_prefix("//") {
            return Url::parse(&format!("http://{rest}"));
        }
        let (base_path, base_query) = split_query(&self.target);
        let (path, query) = split_query(reference);
        let (path, query) = if path.is_empty() {
            (base_path.to_string(), query.or(base_query))
        } else if path.starts_with('/') {
            (remove_dot_segments(path), query)
        } else {
            // Merge (5.2.3): the base path up to its last slash, then the reference.
            let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
            (remove_dot_segments(&format!("{dir}{path}")), query)
        };
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        let target = match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        check_target(&target)?;
        Ok(Url {
            target,
            ..self.clone()
        })
    }
}

/// As messages show it: the value of a `token` in the query as `***`, as
/// the server's access log does (a message on a terminal or in a log is no
/// place for a secret; the request itself carries the token).
impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (path, query) = match self.target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (self.target.as_str(), None),
        };
        write!(f, "http://{}{path}", self.authority())?;
        if let Some(query) = query {
            let shown: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _))
                        if crate::http1::query_name(name)
                            .is_none_or(|n| n.trim().eq_ignore_ascii_case("token")) =>
                    {
                        format!("{name}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            write!(f, "?{}", shown.join("&"))?;
        }
        Ok(())
    }
}

/// `scheme:rest`, if `s` starts with a scheme (RFC 3986, 3.1: a letter,
/// then letters, digits, `+`, `-` or `.`, before any `/`, `?` or `#`).
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let ok = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then_some((scheme, rest))
}

/// Path and query (`None` when there is no `?` at all).
fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (s, None),
    }
}

/// RFC 3986, 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output: Vec<&str> = Vec::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            output.pop();
        } else if input == "/.." {
            input = "/";
            output.pop();
        } else if input == "." || input == ".." {
            input = "";
        } else {
            // The first segment, with its leading slash, up to the next one.
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push(&input[..end]);
            input = &input[end..];
        }
    }
    output.concat()
}

/// A request target must be sent as it is: no spaces or control characters.
fn check_target(target: &str) -> Result<(), String> {
    if target
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("the URL contains spaces or control characters; percent-encode them".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://127.0.0.1:8000/events/news?x=1#frag").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("127.0.0.1", 8000, "/events/news?x=1")
        );
        assert_eq!(u.to_string(), "http://127.0.0.1:8000/events/news?x=1");
        // A token in the query is not shown.
        let t = Url::parse("http://h/events/a?x=1&token=s3cret&TOK%45N=s3cret").unwrap();
        assert_eq!(t.to_string(), "http://h/events/a?x=1&token=***&TOK%45N=***");
        assert!(
            t.target.contains("token=s3cret"),
            "the request still carries it"
        );
        let u = Url::parse("HTTP://Example.com").unwrap();
        assert_eq!(
            (u.port, u.target.as_str(), u.authority()),
            (80, "/", "example.com".to_string())
        );
        let u = Url::parse("http://[::1]:9/a").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority()),
            ("::1", "[::1]:9".to_string())
        );
        assert_eq!(Url::parse("http://h?q=1").unwrap().target, "/?q=1");
        assert!(Url::parse("https://x/")
            .unwrap_err()
            .contains("no TLS built in"));
        for bad in [
            "ftp://x/",
            "http://:80/",
            "http://h:99999/",
            "http://h/a b",
            "http:/h",
            "h/x",
            "http://u:p@h/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolves_references_as_rfc_3986_does() {
        // RFC 3986, 5.4.1 and 5.4.2, from the base http://a/b/c/d;p?q.
        let base = Url::parse("http://a/b/c/d;p?q").unwrap();
        let cases = [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            ("g?y#s", "http://a/b/c/g?y"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("g;x?y#s", "http://a/b/c/g;x?y"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g?y/../x", "http://a/b/c/g?y/../x"),
            ("g#s/./x", "http://a/b/c/g"),
            ("g#s/../x", "http://a/b/c/g"),
            ("http:g", "http://a/b/c/g"),
            ("http://o:2/y?z", "http://o:2/y?z"),
            // An absolute URL inside the query is just a query.
            (
                "/next?u=http://example.invalid/",
                "http://a/next?u=http://example.invalid/",
            ),
        ];
        for (reference, expected) in cases {
            assert_eq!(
                base.join(reference).map(|u| u.to_string()),
                Ok(expected.to_string()),
                "{reference:?}"
            );
        }
        assert!(base.join("https://a/").unwrap_err().contains("no TLS"));
        assert!(base.join("mailto:x@y").is_err());
        assert!(base.join("a b").is_err());
    }

    #[test]
    fn origins() {
        let a = Url::parse("http://127.0.0.1:1/x").unwrap();
        assert!(a.same_origin(&a.join("/y").unwrap()));
        assert!(!a.same_origin(&a.join("http://localhost:1/x").unwrap()));
        assert!(!a.same_origin(&a.join("http://127.0.0.1:2/x").unwrap()));
    }
}
