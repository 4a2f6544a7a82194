//! Routing: one function from (method, path) to what to do, and the parsing
//! of query strings. No sockets here: the server acts on a [`Route`].

/// A stream the server can open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// `/stream-time`: the clock.
    Time,
    /// `/system-stats`: CPU and memory, from the shared sampler.
    SystemStats,
    /// `/stream-training`: one training run per client.
    Training,
    /// `/stream-stocks`: the shared market.
    Stocks,
    /// `/event_stream`: messages and custom events (the Flask example).
    EventStream,
    /// `/stream-json`: ten JSON objects, natively NDJSON.
    Json,
    /// `/sse`: everything posted to `/messages` and `/send_rest`.
    Messages,
}

/// The two publish endpoints of the messages example.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Post {
    /// `POST /messages`: status `Received`.
    Messages,
    /// `POST /send_rest`: status `Received via REST`.
    Rest,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Stream(Feed),
    /// `GET /events/{topic}` (the topic, still percent-encoded) or
    /// `GET /events?topic=a&topic=b` (`None`: the topics are in the query).
    Subscribe(Option<&'a str>),
    Publish(Post),
    /// `POST /events/{topic}`.
    PublishTopic(&'a str),
    /// `GET /topics`: the hub's topics as JSON.
    Topics,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    Health,
    /// A CORS preflight (`OPTIONS`).
    Preflight,
    /// A file of the pages; `path` is relative, `""` is the index. `allowed`
    /// is false for a method other than GET or HEAD (405 if the file exists).
    File {
        path: &'a str,
        allowed: bool,
    },
    /// Known path, wrong method: the value of the `Allow` header.
    NotAllowed(&'static str),
}

/// Where a request goes. `path` is the URL path without its query.
pub fn route<'a>(method: &str, path: &'a str) -> Route<'a> {
    if method == "OPTIONS" {
        return Route::Preflight;
    }
    let feed = match path {
        "/stream-time" => Some(Feed::Time),
        "/system-stats" => Some(Feed::SystemStats),
        "/stream-training" => Some(Feed::Training),
        "/stream-stocks" => Some(Feed::Stocks),
        "/event_stream" => Some(Feed::EventStream),
        "/stream-json" => Some(Feed::Json),
        "/sse" => Some(Feed::Messages),
        _ => None,
    };
    let post = match path {
        "/messages" => Some(Post::Messages),
        "/send_rest" => Some(Post::Rest),
        _ => None,
    };
    if let Some(topic) = path.strip_prefix("/events/") {
        return match method {
            "GET" => Route::Subscribe(Some(topic)),
            "POST" => Route::PublishTopic(topic),
            _ => Route::NotAllowed("GET, POST, OPTIONS"),
        };
    }
    match (method, path) {
        ("GET", "/events") => return Route::Subscribe(None),
        ("GET" | "HEAD", "/topics") => return Route::Topics,
        ("GET" | "HEAD", "/metrics") => return Route::Metrics,
        (_, "/events") => return Route::NotAllowed("GET, OPTIONS"),
        (_, "/topics" | "/metrics") => return Route::NotAllowed("GET, HEAD, OPTIONS"),
        _ => {}
    }
    match (method, feed, post, path) {
        ("GET", Some(feed), _, _) => Route::Stream(feed),
        (_, Some(_), _, _) => Route::NotAllowed("GET, OPTIONS"),
        ("POST", _, Some(post), _) => Route::Publish(post),
        (_, _, Some(_), _) => Route::NotAllowed("POST, OPTIONS"),
        ("GET" | "HEAD", _, _, "/healthz") => Route::Health,
        (_, _, _, "/healthz") => Route::NotAllowed("GET, HEAD, OPTIONS"),
        _ => Route::File {
            path: path.strip_prefix('/').unwrap_or(path),
            allowed: matches!(method, "GET" | "HEAD"),
        },
    }
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
            match (decode_form(name), decode_form(value)) {
                (Some(n), Some(v)) => Ok((n, v)),
                _ => Err(format!(
                    "query parameter {pair:?} is not valid percent-encoded UTF-8"
                )),
            }
        })
        .collect()
}

/// A query parameter that must be a whole number within `min..=max`;
/// `None` when absent.
pub fn number(
    params: &[(String, String)],
    name: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, String> {
    let Some((_, raw)) = params.iter().rev().find(|(n, _)| n == name) else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "{name} must be a whole number from {min} to {max}, not {raw:?}"
        )),
    }
}

/// Every value of a query parameter, in order.
pub fn params<'p>(params: &'p [(String, String)], name: &'p str) -> impl Iterator<Item = &'p str> {
    params
        .iter()
        .filter(move |(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The last value of a query parameter.
pub fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is
/// not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    decode(s, false)
}

/// Like [`percent_decode`], with `+` meaning space (HTML forms' query strings).
fn decode_form(s: &str) -> Option<String> {
    decode(s, true)
}

fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
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
    fn routes() {
        let cases = [
            ("GET", "/stream-time", Route::Stream(Feed::Time)),
            ("GET", "/system-stats", Route::Stream(Feed::SystemStats)),
            ("GET", "/stream-training", Route::Stream(Feed::Training)),
            ("GET", "/stream-stocks", Route::Stream(Feed::Stocks)),
            ("GET", "/event_stream", Route::Stream(Feed::EventStream)),
            ("GET", "/stream-json", Route::Stream(Feed::Json)),
            ("GET", "/sse", Route::Stream(Feed::Messages)),
            ("POST", "/sse", Route::NotAllowed("GET, OPTIONS")),
            ("POST", "/messages", Route::Publish(Post::Messages)),
            ("POST", "/send_rest", Route::Publish(Post::Rest)),
            ("GET", "/messages", Route::NotAllowed("POST, OPTIONS")),
            ("GET", "/healthz", Route::Health),
            (
                "DELETE",
                "/healthz",
                Route::NotAllowed("GET, HEAD, OPTIONS"),
            ),
            ("OPTIONS", "/sse", Route::Preflight),
            ("GET", "/events/news", Route::Subscribe(Some("news"))),
            ("GET", "/events/a/b", Route::Subscribe(Some("a/b"))),
            ("POST", "/events/news", Route::PublishTopic("news")),
            (
                "DELETE",
                "/events/news",
                Route::NotAllowed("GET, POST, OPTIONS"),
            ),
            ("GET", "/events", Route::Subscribe(None)),
            ("POST", "/events", Route::NotAllowed("GET, OPTIONS")),
            ("GET", "/topics", Route::Topics),
            ("GET", "/metrics", Route::Metrics),
            ("POST", "/metrics", Route::NotAllowed("GET, HEAD, OPTIONS")),
            (
                "GET",
                "/",
                Route::File {
                    path: "",
                    allowed: true,
                },
            ),
            (
                "HEAD",
                "/clock.html",
                Route::File {
                    path: "clock.html",
                    allowed: true,
                },
            ),
            (
                "PUT",
                "/clock.html",
                Route::File {
                    path: "clock.html",
                    allowed: false,
                },
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(route(method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn queries() {
        assert_eq!(split_target("/a?b=c"), ("/a", "b=c"));
        assert_eq!(split_target("/a"), ("/a", ""));
        let q = parse_query("a=1&b=x+y%21&&c&a=2").unwrap();
        assert_eq!(
            q,
            [("a", "1"), ("b", "x y!"), ("c", ""), ("a", "2")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(number(&q, "a", 0, 10), Ok(Some(2)));
        assert_eq!(number(&q, "zz", 0, 10), Ok(None));
        assert_eq!(
            number(&q, "b", 0, 10),
            Err("b must be a whole number from 0 to 10, not \"x y!\"".into())
        );
        assert!(number(&q, "a", 5, 10).is_err());
        assert!(parse_query("a=%zz").is_err());
        assert!(parse_query("a=%ff").is_err());
        assert_eq!(param(&q, "a"), Some("2"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%2e%2E/x").as_deref(), Some("../x"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
