//! Cross-origin requests: which origins may read ssed's answers
//! (`--cors-origin`), and the answer to a preflight.
//!
//! Nothing a request sends is written back into a header unchecked: the
//! origin is echoed only when it equals one allowed by the configuration
//! (which refuses control characters), and the headers a preflight asks for
//! are echoed only when each is a header name.

use crate::http1::{Request, Response};

/// The CORS answer for one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Cors {
    /// The `Access-Control-Allow-Origin` value, if the request's origin is
    /// allowed: `*` or the configured origin it equals.
    allow_origin: Option<String>,
    /// The request named an origin that is not allowed.
    refused: Option<String>,
}

/// What a preflight allows when it does not ask for headers.
const DEFAULT_ALLOWED_HEADERS: &str = "Content-Type, Last-Event-ID, Authorization";

impl Cors {
    /// The answer to a request with `origin` under the `allowed` origins.
    pub fn new(allowed: &[String], origin: Option<&str>) -> Cors {
        let Some(origin) = origin else {
            return Cors {
                allow_origin: None,
                refused: None,
            };
        };
        match allowed.iter().find(|o| *o == "*" || *o == origin) {
            Some(o) => Cors {
                allow_origin: Some(o.clone()),
                refused: None,
            },
            None => Cors {
                allow_origin: None,
                refused: Some(origin.to_string()),
            },
        }
    }

    /// Header fields for any answer to this request.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        match &self.allow_origin {
            Some(o) if o == "*" => vec![("Access-Control-Allow-Origin", o.clone())],
            // A named origin may send credentials (the `ssed_token`
            // cookie with `withCredentials`); `*` never may (Fetch forbids
            // credentials with a wildcard).
            Some(o) => vec![
                ("Access-Control-Allow-Origin", o.clone()),
                ("Access-Control-Allow-Credentials", "true".into()),
                ("Vary", "Origin".into()),
            ],
            None => Vec::new(),
        }
    }

    /// The answer to an `OPTIONS` request: `204` with what is allowed, `403`
    /// for an origin that is not, `400` for a header list that is not one.
    pub fn preflight(&self, req: &Request) -> Response {
        if let Some(origin) = &self.refused {
            let why = format!("origin {origin} is not allowed; see --cors-origin");
            return Response::error(403, &why);
        }
        let mut res = Response::empty(204).with("Allow", "GET, HEAD, POST, DELETE, OPTIONS");
        if self.allow_origin.is_some() {
            let asked = match req.header("Access-Control-Request-Headers") {
                Some(list) => match header_names(list) {
                    Some(names) => names,
                    None => {
                        return Response::error(
                            400,
                            "Access-Control-Request-Headers must be a comma-separated list of header names",
                        )
                    }
                },
                None => DEFAULT_ALLOWED_HEADERS.to_string(),
            };
            res = res
                .with(
                    "Access-Control-Allow-Methods",
                    "GET, HEAD, POST, DELETE, OPTIONS",
                )
                .with("Access-Control-Allow-Headers", asked)
                .with("Access-Control-Max-Age", "600");
        }
        res
    }
}

/// `list` as a clean list of header names (RFC 9110 tokens), or `None`.
fn header_names(list: &str) -> Option<String> {
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let token = |n: &&str| {
        n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    (!names.is_empty() && names.iter().all(token)).then(|| names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::Version;

    fn options(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "OPTIONS".into(),
            target: "/messages".into(),
            version: Version::Http11,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn field<'r>(res: &'r Response, name: &str) -> Option<&'r str> {
        res.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn origins() {
        let allowed = vec!["http://a:1".to_string()];
        assert_eq!(Cors::new(&allowed, None).fields(), []);
        assert_eq!(
            Cors::new(&allowed, Some("http://a:1")).fields(),
            [
                ("Access-Control-Allow-Origin", "http://a:1".to_string()),
                ("Access-Control-Allow-Credentials", "true".to_string()),
                ("Vary", "Origin".to_string())
            ]
        );
        assert_eq!(Cors::new(&allowed, Some("http://b")).fields(), []);
        assert_eq!(
            Cors::new(&["*".to_string()], Some("http://b")).fields(),
            [("Access-Control-Allow-Origin", "*".to_string())]
        );
    }

    #[test]
    fn preflights() {
        let allowed = vec!["http://a:1".to_string()];
        let cors = Cors::new(&allowed, Some("http://a:1"));
        let res = cors.preflight(&options(&[(
            "Access-Control-Request-Headers",
            "content-type,  last-event-id",
        )]));
        assert_eq!(res.status, 204);
        assert_eq!(
            field(&res, "Access-Control-Allow-Headers"),
            Some("content-type, last-event-id")
        );
        let res = cors.preflight(&options(&[]));
        assert_eq!(
            field(&res, "Access-Control-Allow-Headers"),
            Some(DEFAULT_ALLOWED_HEADERS)
        );
        // Anything but header names is refused, not echoed.
        for bad in ["a\u{b}b", "x-a: y", "a;b", "caf\u{e9}", ","] {
            let res = cors.preflight(&options(&[("Access-Control-Request-Headers", bad)]));
            assert_eq!(res.status, 400, "{bad:?}");
        }
        let res = Cors::new(&allowed, Some("http://evil")).preflight(&options(&[]));
        assert_eq!(res.status, 403);
        // No origin: a plain OPTIONS.
        let res = Cors::new(&allowed, None).preflight(&options(&[]));
        assert_eq!(
            (res.status, field(&res, "Allow")),
            (204, Some("GET, HEAD, POST, DELETE, OPTIONS"))
        );
        assert_eq!(field(&res, "Access-Control-Allow-Headers"), None);
    }
}
