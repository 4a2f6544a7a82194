//! Routing: one pure function, [`decide`], from a request to what to do.
//!
//! It reads the method, the path, the query and the headers it needs
//! (tokens, `Accept`, `Last-Event-ID`), and answers with an [`Action`]:
//! either a reply that is complete already (every refusal is one), or what
//! the server must do with its hub, pages or a stream. No sockets, no
//! state: every rule is a row of a table test.

use super::auth::{Access, Denied, Presented, Tokens, Who};
use super::cors::Cors;
use crate::http1::{self, Request, Response};
use crate::names::Pattern;
use crate::stream::Format;
use std::time::Duration;

/// The hub topic of `/sse`, `/messages` and `/send_rest`.
pub const MESSAGES_TOPIC: &str = "messages";

/// Topics one stream may subscribe to at once.
pub const MAX_TOPICS_PER_STREAM: usize = 64;

/// Events one `/stream-training` run may send (epochs x steps): with no
/// pause between steps, a run is CPU spent for one client.
pub const MAX_TRAINING_EVENTS: u64 = 100_000;

/// The demos' streams, by path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demo {
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
    /// `/stream-text`: ten lines, natively plain text.
    Text,
}

/// The two publish endpoints of the messages example.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Post {
    /// `POST /messages`: status `Received`.
    Messages,
    /// `POST /send_rest`: status `Received via REST`.
    Rest,
}

/// Where a request goes, by method and path alone.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Demo(Demo),
    /// `GET /sse`: the `messages` topic.
    Messages,
    /// `GET /events/{topic}` (the topic, still percent-encoded) or
    /// `GET /events?topic=a&topic=b` (`None`: the topics are in the query).
    Subscribe(Option<&'a str>),
    Publish(Post),
    /// `POST /events/{topic}`.
    PublishTopic(&'a str),
    /// `DELETE /events/{topic}`.
    DeleteTopic(&'a str),
    /// `GET /topics`: the hub's topics as JSON.
    Topics,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    Health,
    /// `GET /mux`: several streams over one connection.
    Mux,
    /// `POST /mux/{id}`: opens or closes a stream of a mux.
    MuxControl(&'a str),
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
    let get = matches!(method, "GET" | "HEAD");
    let demo = match path {
        "/stream-time" => Some(Demo::Time),
        "/system-stats" => Some(Demo::SystemStats),
        "/stream-training" => Some(Demo::Training),
        "/stream-stocks" => Some(Demo::Stocks),
        "/event_stream" => Some(Demo::EventStream),
        "/stream-json" => Some(Demo::Json),
        "/stream-text" => Some(Demo::Text),
        _ => None,
    };
    let post = match path {
        "/messages" => Some(Post::Messages),
        "/send_rest" => Some(Post::Rest),
        _ => None,
    };
    if let Some(topic) = path.strip_prefix("/events/") {
        return match method {
            _ if get => Route::Subscribe(Some(topic)),
            "POST" => Route::PublishTopic(topic),
            "DELETE" => Route::DeleteTopic(topic),
            _ => Route::NotAllowed("GET, HEAD, POST, DELETE, OPTIONS"),
        };
    }
    if let Some(id) = path.strip_prefix("/mux/") {
        return match method {
            "POST" => Route::MuxControl(id),
            _ => Route::NotAllowed("POST, OPTIONS"),
        };
    }
    if let Some(post) = post {
        return match method {
            "POST" => Route::Publish(post),
            _ => Route::NotAllowed("POST, OPTIONS"),
        };
    }
    match (get, demo, path) {
        (true, Some(demo), _) => Route::Demo(demo),
        (true, _, "/sse") => Route::Messages,
        (true, _, "/events") => Route::Subscribe(None),
        (true, _, "/topics") => Route::Topics,
        (true, _, "/metrics") => Route::Metrics,
        (true, _, "/healthz") => Route::Health,
        (true, _, "/mux") => Route::Mux,
        (false, Some(_), _)
        | (false, _, "/sse" | "/events" | "/topics" | "/metrics" | "/healthz" | "/mux") => {
            Route::NotAllowed("GET, HEAD, OPTIONS")
        }
        _ => Route::File {
            path: path.strip_prefix('/').unwrap_or(path),
            allowed: get,
        },
    }
}

impl Route<'_> {
    /// Who may use this route. Every route says so here, without a
    /// catch-all: a new route does not compile until it does.
    pub fn who(&self) -> Who {
        match self {
            Route::Publish(_) | Route::PublishTopic(_) | Route::DeleteTopic(_) => Who::Publishers,
            Route::Messages | Route::Subscribe(_) | Route::Topics | Route::Metrics => {
                Who::Subscribers
            }
            // A mux carries nothing by itself: each stream it opens is a
            // request of its own, judged on the credentials of the `POST`.
            Route::Demo(_)
            | Route::Mux
            | Route::MuxControl(_)
            | Route::Health
            | Route::Preflight
            | Route::File { .. }
            | Route::NotAllowed(_) => Who::Anyone,
        }
    }
}

/// What the server does for a request.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Complete: send it.
    Reply(Response),
    /// A page: `200`, or `405` if it exists and `allowed` is false, or `404`.
    Page {
        path: String,
        allowed: bool,
    },
    Topics,
    Metrics,
    /// `/healthz`: `200 ok`, or `503` naming what is down (the Redis link).
    Health,
    /// `DELETE /events/{topic}`: the topic, decoded.
    Delete {
        topic: String,
    },
    /// Read the body and publish it.
    Publish {
        to: PublishTo,
        /// `?event=` (checked when the body is read: a JSON body may name it).
        event: Option<String>,
    },
    /// `GET /mux`: open a mux.
    Mux,
    /// `POST /mux/{id}`: read the body and open or close a stream of it.
    MuxControl {
        id: String,
    },
    /// Open a stream.
    Stream {
        feed: Feed,
        format: Format,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum PublishTo {
    /// `/messages` or `/send_rest`: the seed's JSON, to the `messages` topic.
    Seed(Post),
    /// `POST /events/{topic}`, decoded.
    Topic(String),
}

/// A stream's events, with its parameters checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feed {
    Clock {
        interval: Duration,
    },
    Ticker {
        interval: Duration,
    },
    Json {
        count: u32,
        interval: Duration,
    },
    Text {
        count: u32,
        interval: Duration,
    },
    Training {
        epochs: u32,
        steps: u32,
        step: Duration,
    },
    /// The shared sampler; a new viewer gets the newest `last` samples
    /// first, and, when it asked with `?last=`, a `kept` event before them
    /// that says how many and how far apart.
    SystemStats {
        last: usize,
        announce: bool,
    },
    /// The shared market; a new viewer gets each symbol's latest quote
    /// first.
    Stocks,
    /// Hub topics, and where the client starts: after the id it resumes
    /// from, or with the newest `last` retained events, or live.
    Hub {
        topics: Vec<String>,
        /// Topic patterns (`sensors/*`): every topic that matches, also
        /// those made later.
        patterns: Vec<Pattern>,
        last_event_id: Option<String>,
        last: Option<usize>,
    },
}

impl Feed {
    /// A demo stream (counted against `--max-demo-streams`), not the hub.
    pub fn is_demo(&self) -> bool {
        !matches!(self, Feed::Hub { .. })
    }
}

fn bad(why: impl AsRef<str>) -> Action {
    Action::Reply(Response::error(400, why.as_ref()))
}

/// How a request's credentials are judged: the tokens, the time (seconds
/// since the epoch), and what becomes of a request they do not allow
/// (`--auth-url` asks the application; else a 401 that says why).
pub struct Judge<'a> {
    pub tokens: &'a Tokens,
    pub now: u64,
    pub ask: &'a dyn Fn(Who, Denied) -> Result<Access, Response>,
}

/// The 401 of a request whose credentials are refused, with no one else
/// to ask.
pub fn refuse(who: Who, denied: Denied) -> Result<Access, Response> {
    Err(unauthorized(who, denied))
}

/// What to do with `req`, and what its credentials allow: who may ask is
/// checked by `judge`, and what a signed token grants against what the
/// request asks for; `cors` answers preflights.
pub fn decide(req: &Request, judge: &Judge, cors: &Cors) -> (Action, Access) {
    if req.method == "OPTIONS" {
        return (Action::Reply(cors.preflight(req)), Access::All);
    }
    let params = match http1::parse_query(req.query()) {
        Ok(params) => params,
        Err(why) => return (bad(why), Access::All),
    };
    let route = route(&req.method, req.path());
    let presented = Presented {
        authorization: req.header("Authorization"),
        query: param(&params, "token"),
        cookie: req.header("Cookie"),
    };
    let access = match judge.tokens.allow(route.who(), &presented, judge.now) {
        Ok(access) => access,
        Err(denied) => match (judge.ask)(route.who(), denied) {
            Ok(access) => access,
            Err(res) => return (Action::Reply(res), Access::All),
        },
    };
    let action = act(req, route, &params, cors);
    match granted(&action, &access) {
        Ok(()) => (action, access),
        Err(why) => (Action::Reply(Response::error(403, &why)), access),
    }
}

/// Whether `access` covers what `action` does: every topic of a stream, a
/// publish's topic, `/metrics`. (`/topics` lists what it may read.)
fn granted(action: &Action, access: &Access) -> Result<(), String> {
    match action {
        Action::Stream {
            feed: Feed::Hub {
                topics, patterns, ..
            },
            ..
        } => {
            if let Some(topic) = topics.iter().find(|t| !access.may_subscribe(t)) {
                return Err(format!("no grant to subscribe to {topic:?}"));
            }
            match patterns.iter().find(|p| !access.may_subscribe_all(p)) {
                Some(p) => Err(format!(
                    "no grant to subscribe to every topic of {:?}",
                    p.as_str()
                )),
                None => Ok(()),
            }
        }
        Action::Publish { to, .. } => {
            let topic = match to {
                PublishTo::Seed(_) => MESSAGES_TOPIC,
                PublishTo::Topic(topic) => topic,
            };
            if access.may_publish(topic) {
                Ok(())
            } else {
                Err(format!("no grant to publish to {topic:?}"))
            }
        }
        Action::Delete { topic } if !access.may_publish(topic) => Err(format!(
            "no grant to delete {topic:?}: it needs the grant to publish to it"
        )),
        Action::Metrics if !access.is_admin() => {
            Err("no grant to read /metrics: it needs \"admin\": true".into())
        }
        _ => Ok(()),
    }
}

/// What a request asks for, its credentials allowed.
fn act(req: &Request, route: Route, params: &[(String, String)], cors: &Cors) -> Action {
    let (method, path) = (req.method.as_str(), req.path());
    if let Some(known) = known_params(&route) {
        if let Some((name, _)) = params.iter().find(|(n, _)| !known.contains(&n.as_str())) {
            return bad(format!(
                "unknown query parameter {:?}; {path} takes {}",
                name.chars().take(64).collect::<String>(),
                known.join(", ")
            ));
        }
    }
    // A finite demo's reconnection after its last event: 204, which tells
    // EventSource (and `ssed listen`) that the stream is finished.
    if let Route::Demo(Demo::Training | Demo::Json | Demo::Text) = route {
        if req.header("Last-Event-ID").map(str::trim) == Some(crate::demos::FINISHED_ID) {
            return Action::Reply(Response::empty(204));
        }
    }
    let feed = match route {
        Route::Demo(demo) => demo_feed(demo, params),
        Route::Messages => hub_start(vec![MESSAGES_TOPIC.to_string()], Vec::new(), params, req),
        Route::Subscribe(topic) => hub_feed(topic, params, req),
        Route::Publish(post) => {
            return Action::Publish {
                to: PublishTo::Seed(post),
                event: None,
            }
        }
        Route::PublishTopic(raw) => {
            return match http1::percent_decode(raw) {
                Some(topic) => Action::Publish {
                    to: PublishTo::Topic(topic),
                    event: param(params, "event").map(String::from),
                },
                None => bad("the topic is not valid percent-encoded UTF-8"),
            }
        }
        Route::DeleteTopic(raw) => {
            return match http1::percent_decode(raw) {
                Some(topic) => Action::Delete { topic },
                None => bad("the topic is not valid percent-encoded UTF-8"),
            }
        }
        Route::Topics => return Action::Topics,
        Route::Mux => return Action::Mux,
        Route::MuxControl(id) => return Action::MuxControl { id: id.to_string() },
        Route::Metrics => return Action::Metrics,
        Route::Health => return Action::Health,
        Route::Preflight => return Action::Reply(cors.preflight(req)),
        Route::NotAllowed(allow) => {
            let why = format!("{method} is not allowed on {path}; use {allow}");
            return Action::Reply(Response::error(405, &why).with("Allow", allow));
        }
        Route::File { path, allowed } => {
            return Action::Page {
                path: path.to_string(),
                allowed,
            }
        }
    };
    let feed = match feed {
        Ok(feed) => feed,
        Err(why) => return bad(why),
    };
    let native = match feed {
        Feed::Json { .. } => Some(Format::Lines),
        Feed::Text { .. } => Some(Format::Text),
        _ => None,
    };
    let format = match format_for(native, params, req.header("Accept")) {
        Ok(format) => format,
        Err(why) => return bad(why),
    };
    match tagged(&feed, format, params) {
        Ok(format) => Action::Stream { feed, format },
        Err(why) => bad(why),
    }
}

/// The query parameters a route reads, so that a mistyped one (`?lst=5`)
/// is refused rather than ignored; `None` for pages, which leave the query
/// to their scripts (`logs.html?topic=build`).
fn known_params(route: &Route) -> Option<&'static [&'static str]> {
    Some(match route {
        Route::Demo(Demo::Time | Demo::EventStream) => &["interval_ms", "format", "tag", "token"],
        Route::Demo(Demo::Json | Demo::Text) => &["count", "interval_ms", "format", "tag", "token"],
        Route::Demo(Demo::Training) => &["epochs", "steps", "step_ms", "format", "tag", "token"],
        Route::Demo(Demo::SystemStats) => &["last", "format", "tag", "token"],
        Route::Demo(Demo::Stocks) => &["format", "tag", "token"],
        Route::Messages | Route::Subscribe(Some(_)) => {
            &["last", "last_event_id", "since", "format", "tag", "token"]
        }
        Route::Subscribe(None) => &[
            "topic",
            "last",
            "last_event_id",
            "since",
            "format",
            "tag",
            "token",
        ],
        Route::PublishTopic(_) => &["event", "token"],
        Route::DeleteTopic(_) => &["token"],
        Route::Publish(_) | Route::Topics | Route::Metrics | Route::Health => &["token"],
        Route::Mux | Route::MuxControl(_) => &[],
        Route::Preflight | Route::NotAllowed(_) | Route::File { .. } => return None,
    })
}

/// `?tag=topic`: each event's data in an envelope that names its topic, for
/// clients that read several topics on one stream. NDJSON lines of the hub
/// carry the topic anyway.
fn tagged(feed: &Feed, format: Format, params: &[(String, String)]) -> Result<Format, String> {
    match param(params, "tag") {
        None => Ok(format),
        Some("topic") if !matches!(feed, Feed::Hub { .. }) => {
            Err("tag=topic is for hub streams (/events, /sse)".into())
        }
        Some("topic") => Ok(match format {
            Format::Sse => Format::SseTagged,
            Format::Text => Format::TextTagged,
            other => other,
        }),
        Some(other) => Err(format!("tag must be topic, not {other:?}")),
    }
}

fn unauthorized(who: Who, denied: Denied) -> Response {
    let (why, challenge) = match denied {
        // Saying how to send one: a publish takes the header alone.
        Denied::Missing if who == Who::Publishers => (
            "a token is required: send it as Authorization: Bearer TOKEN".to_string(),
            r#"Bearer realm="ssed""#.to_string(),
        ),
        Denied::Missing => (
            "a token is required: send it as Authorization: Bearer TOKEN, ?token=TOKEN or the cookie ssed_token".to_string(),
            r#"Bearer realm="ssed""#.to_string(),
        ),
        Denied::Wrong => (
            "the token is wrong".to_string(),
            r#"Bearer realm="ssed", error="invalid_token""#.to_string(),
        ),
        Denied::Invalid(invalid) => {
            let why = invalid.to_string();
            // A quoted-string (RFC 9110, section 5.6.4) of printable ASCII
            // without quotes or backslashes.
            let described: String = why
                .chars()
                .map(|c| match c {
                    '"' | '\\' => '\'',
                    c if c.is_ascii_graphic() || c == ' ' => c,
                    _ => '?',
                })
                .collect();
            let challenge = format!(
                r#"Bearer realm="ssed", error="invalid_token", error_description="{described}""#
            );
            (why, challenge)
        }
    };
    Response::error(401, &why).with("WWW-Authenticate", challenge)
}

fn demo_feed(demo: Demo, params: &[(String, String)]) -> Result<Feed, String> {
    let ms = Duration::from_millis;
    let interval = |default: u64, min: u64| -> Result<Duration, String> {
        Ok(ms(
            number(params, "interval_ms", min, 60_000)?.unwrap_or(default)
        ))
    };
    Ok(match demo {
        Demo::Time => Feed::Clock {
            interval: interval(1000, 10)?,
        },
        Demo::EventStream => Feed::Ticker {
            interval: interval(2000, 10)?,
        },
        Demo::Json => Feed::Json {
            count: number(params, "count", 1, 10_000)?.unwrap_or(10) as u32,
            interval: interval(1000, 0)?,
        },
        Demo::Text => Feed::Text {
            count: number(params, "count", 1, 10_000)?.unwrap_or(10) as u32,
            interval: interval(1000, 0)?,
        },
        Demo::Training => {
            let epochs = number(params, "epochs", 1, 1000)?.unwrap_or(10);
            let steps = number(params, "steps", 1, 10_000)?.unwrap_or(100);
            if epochs * steps > MAX_TRAINING_EVENTS {
                return Err(format!(
                    "epochs x steps must be at most {MAX_TRAINING_EVENTS}, not {epochs} x {steps}"
                ));
            }
            Feed::Training {
                epochs: epochs as u32,
                steps: steps as u32,
                step: ms(number(params, "step_ms", 0, 10_000)?.unwrap_or(20)),
            }
        }
        Demo::SystemStats => {
            let last = number(params, "last", 0, crate::demos::MAX_STATS_KEPT as u64)?;
            Feed::SystemStats {
                last: last.unwrap_or(1) as usize,
                announce: last.is_some(),
            }
        }
        Demo::Stocks => Feed::Stocks,
    })
}

/// `GET /events/{topic}` or `GET /events?topic=a&topic=b`.
fn hub_feed(
    topic: Option<&str>,
    params: &[(String, String)],
    req: &Request,
) -> Result<Feed, String> {
    let mut topics: Vec<String> = match topic {
        Some(raw) => {
            vec![http1::percent_decode(raw).ok_or("the topic is not valid percent-encoded UTF-8")?]
        }
        None => all(params, "topic").map(String::from).collect(),
    };
    if topics.is_empty() {
        return Err(
            "name the topics to subscribe to: /events/NAME or /events?topic=a&topic=b".into(),
        );
    }
    // The same topic twice would deliver its events twice.
    let mut seen = std::collections::HashSet::new();
    topics.retain(|t| seen.insert(t.clone()));
    if topics.len() > MAX_TOPICS_PER_STREAM {
        return Err(format!(
            "at most {MAX_TOPICS_PER_STREAM} topics per stream, not {}",
            topics.len()
        ));
    }
    // A name with a `*` is a pattern (topic names have none).
    let (wild, named): (Vec<String>, Vec<String>) =
        topics.into_iter().partition(|t| t.contains('*'));
    let patterns = wild
        .iter()
        .map(|p| Pattern::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    hub_start(named, patterns, params, req)
}

/// Where a hub stream starts. A returning client resumes after the id it
/// saw last: the `Last-Event-ID` header (what a reconnecting browser sends),
/// else `?last_event_id=` or its alias `?since=` (for a first connect). A
/// new client may ask for context instead: `?last=N`, the newest N retained
/// events. The id wins: a browser that reconnects to a `?last=` URL resumes
/// exactly where it stopped.
fn hub_start(
    topics: Vec<String>,
    patterns: Vec<Pattern>,
    params: &[(String, String)],
    req: &Request,
) -> Result<Feed, String> {
    let last_event_id = req
        .header("Last-Event-ID")
        .or_else(|| param(params, "last_event_id"))
        .or_else(|| param(params, "since"))
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(String::from);
    let last = number(params, "last", 0, 1_000_000)?.map(|n| n as usize);
    Ok(Feed::Hub {
        topics,
        patterns,
        last_event_id,
        last,
    })
}

/// The format a client asked for: `?format=` wins over `Accept`, which
/// wins over the stream's `native` format (its data as lines), else SSE.
fn format_for(
    native: Option<Format>,
    params: &[(String, String)],
    accept: Option<&str>,
) -> Result<Format, String> {
    let accept = accept.unwrap_or("");
    let wanted = match param(params, "format") {
        Some("sse") => Format::Sse,
        Some("ndjson") => Format::Ndjson,
        Some("text") => Format::Text,
        Some(other) => return Err(format!("format must be sse, ndjson or text, not {other:?}")),
        None if accept.contains("application/x-ndjson") => Format::Ndjson,
        None if accept.contains("text/event-stream") => Format::Sse,
        None => native.unwrap_or(Format::Sse),
    };
    // /stream-json's events are JSON objects already: its NDJSON is them.
    Ok(match (native, wanted) {
        (Some(Format::Lines), Format::Ndjson) => Format::Lines,
        (_, f) => f,
    })
}

/// A query parameter that must be a whole number within `min..=max`;
/// `None` when absent.
pub fn number(
    params: &[(String, String)],
    name: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, String> {
    let Some(raw) = param(params, name) else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "{name} must be a whole number from {min} to {max}, not {:?}",
            raw.chars().take(32).collect::<String>()
        )),
    }
}

/// Every value of a query parameter, in order.
pub fn all<'p>(params: &'p [(String, String)], name: &'p str) -> impl Iterator<Item = &'p str> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::Version;

    #[test]
    fn routes() {
        let get_only = Route::NotAllowed("GET, HEAD, OPTIONS");
        let cases = [
            ("GET", "/stream-time", Route::Demo(Demo::Time)),
            ("HEAD", "/stream-time", Route::Demo(Demo::Time)),
            ("GET", "/system-stats", Route::Demo(Demo::SystemStats)),
            ("GET", "/stream-training", Route::Demo(Demo::Training)),
            ("GET", "/stream-stocks", Route::Demo(Demo::Stocks)),
            ("GET", "/event_stream", Route::Demo(Demo::EventStream)),
            ("GET", "/stream-json", Route::Demo(Demo::Json)),
            ("GET", "/stream-text", Route::Demo(Demo::Text)),
            (
                "POST",
                "/stream-json",
                Route::NotAllowed("GET, HEAD, OPTIONS"),
            ),
            ("GET", "/sse", Route::Messages),
            ("POST", "/sse", Route::NotAllowed("GET, HEAD, OPTIONS")),
            ("POST", "/messages", Route::Publish(Post::Messages)),
            ("POST", "/send_rest", Route::Publish(Post::Rest)),
            ("GET", "/messages", Route::NotAllowed("POST, OPTIONS")),
            ("GET", "/healthz", Route::Health),
            ("HEAD", "/healthz", Route::Health),
            (
                "DELETE",
                "/healthz",
                Route::NotAllowed("GET, HEAD, OPTIONS"),
            ),
            ("OPTIONS", "/sse", Route::Preflight),
            ("GET", "/events/news", Route::Subscribe(Some("news"))),
            ("GET", "/events/a/b", Route::Subscribe(Some("a/b"))),
            ("POST", "/events/news", Route::PublishTopic("news")),
            ("DELETE", "/events/news", Route::DeleteTopic("news")),
            (
                "PUT",
                "/events/news",
                Route::NotAllowed("GET, HEAD, POST, DELETE, OPTIONS"),
            ),
            ("GET", "/events", Route::Subscribe(None)),
            ("POST", "/events", Route::NotAllowed("GET, HEAD, OPTIONS")),
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
            ("OPTIONS", "*", Route::Preflight),
        ];
        for (method, path, expected) in cases {
            assert_eq!(route(method, path), expected, "{method} {path}");
        }
        assert_eq!(route("PATCH", "/topics"), get_only);
    }

    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            version: Version::Http11,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The server's settings, as far as routing reads them.
    #[derive(Default)]
    struct Config {
        tokens: Tokens,
        cors_origins: Vec<String>,
    }

    fn decide_with(
        config: &Config,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> Action {
        decide_at(config, method, target, headers, 1000).0
    }

    fn decide_at(
        config: &Config,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        now: u64,
    ) -> (Action, Access) {
        let req = request(method, target, headers);
        let judge = Judge {
            tokens: &config.tokens,
            now,
            ask: &refuse,
        };
        decide(
            &req,
            &judge,
            &Cors::new(&config.cors_origins, req.header("Origin")),
        )
    }

    /// The status and the error (or body) of a reply, for tables.
    fn reply(action: Action) -> (u16, String) {
        match action {
            Action::Reply(res) => {
                let body = String::from_utf8(res.body.to_vec()).unwrap();
                let shown = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(String::from))
                    .unwrap_or(body);
                (res.status, shown)
            }
            other => panic!("not a reply: {other:?}"),
        }
    }

    #[test]
    fn bad_parameters_are_refused_with_a_reason() {
        let config = Config::default();
        let cases = [
            (
                "/stream-time?interval_ms=abc",
                "interval_ms must be a whole number from 10 to 60000, not \"abc\"",
            ),
            (
                "/stream-time?interval_ms=1",
                "interval_ms must be a whole number from 10 to 60000, not \"1\"",
            ),
            (
                "/stream-training?epochs=0",
                "epochs must be a whole number from 1 to 1000, not \"0\"",
            ),
            (
                "/stream-training?epochs=1000&steps=101",
                "epochs x steps must be at most 100000, not 1000 x 101",
            ),
            (
                "/stream-training?step_ms=99999",
                "step_ms must be a whole number from 0 to 10000, not \"99999\"",
            ),
            (
                "/stream-json?count=-1",
                "count must be a whole number from 1 to 10000, not \"-1\"",
            ),
            (
                "/stream-time?format=xml",
                "format must be sse, ndjson or text, not \"xml\"",
            ),
            // A mistyped parameter is named, with the ones the route reads.
            (
                "/events/x?lst=5",
                "unknown query parameter \"lst\"; /events/x takes last, last_event_id, since, format, tag, token",
            ),
            (
                "/stream-time?intervall_ms=100",
                "unknown query parameter \"intervall_ms\"; /stream-time takes interval_ms, format, tag, token",
            ),
            (
                "/healthz?verbose=1",
                "unknown query parameter \"verbose\"; /healthz takes token",
            ),
            (
                "/events?topic=a&topics=b",
                "unknown query parameter \"topics\"; /events takes topic, last, last_event_id, since, format, tag, token",
            ),
            (
                "/stream-time?x=%ff",
                "query parameter \"x=%ff\" is not valid percent-encoded UTF-8",
            ),
            (
                "/events",
                "name the topics to subscribe to: /events/NAME or /events?topic=a&topic=b",
            ),
            (
                "/events/%zz",
                "the topic is not valid percent-encoded UTF-8",
            ),
            (
                "/events/a?last=x",
                "last must be a whole number from 0 to 1000000, not \"x\"",
            ),
        ];
        for (target, why) in cases {
            assert_eq!(
                reply(decide_with(&config, "GET", target, &[])),
                (400, why.to_string()),
                "{target}"
            );
        }
        let many: String = (0..65).map(|i| format!("topic=t{i}&")).collect();
        assert_eq!(
            reply(decide_with(&config, "GET", &format!("/events?{many}"), &[])),
            (400, "at most 64 topics per stream, not 65".into())
        );
    }

    #[test]
    fn streams_and_formats() {
        let config = Config::default();
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Feed, Format);
        let cases: Vec<Case> = vec![
            (
                "/stream-time",
                &[],
                Feed::Clock {
                    interval: Duration::from_secs(1),
                },
                Format::Sse,
            ),
            (
                "/stream-time?format=ndjson",
                &[],
                Feed::Clock {
                    interval: Duration::from_secs(1),
                },
                Format::Ndjson,
            ),
            (
                "/stream-time?interval_ms=20",
                &[("Accept", "application/x-ndjson")],
                Feed::Clock {
                    interval: Duration::from_millis(20),
                },
                Format::Ndjson,
            ),
            (
                "/stream-json?count=3&interval_ms=0",
                &[],
                Feed::Json {
                    count: 3,
                    interval: Duration::ZERO,
                },
                Format::Lines,
            ),
            (
                "/stream-json",
                &[("Accept", "text/event-stream")],
                Feed::Json {
                    count: 10,
                    interval: Duration::from_secs(1),
                },
                Format::Sse,
            ),
            (
                "/stream-json?format=text",
                &[],
                Feed::Json {
                    count: 10,
                    interval: Duration::from_secs(1),
                },
                Format::Text,
            ),
            (
                "/stream-text?count=2&interval_ms=5",
                &[("Accept", "text/plain")],
                Feed::Text {
                    count: 2,
                    interval: Duration::from_millis(5),
                },
                Format::Text,
            ),
            (
                "/stream-text",
                &[("Accept", "application/x-ndjson")],
                Feed::Text {
                    count: 10,
                    interval: Duration::from_secs(1),
                },
                Format::Ndjson,
            ),
            (
                "/stream-time?format=text",
                &[("Accept", "text/event-stream")],
                Feed::Clock {
                    interval: Duration::from_secs(1),
                },
                Format::Text,
            ),
            (
                "/stream-training?epochs=2&steps=3&step_ms=0",
                &[],
                Feed::Training {
                    epochs: 2,
                    steps: 3,
                    step: Duration::ZERO,
                },
                Format::Sse,
            ),
            (
                "/sse",
                &[("Last-Event-ID", " abc-1 ")],
                Feed::Hub {
                    topics: vec!["messages".into()],
                    patterns: vec![],
                    last_event_id: Some("abc-1".into()),
                    last: None,
                },
                Format::Sse,
            ),
            (
                "/events?topic=a&topic=b&topic=a&last_event_id=x-2",
                &[],
                Feed::Hub {
                    topics: vec!["a".into(), "b".into()],
                    patterns: vec![],
                    last_event_id: Some("x-2".into()),
                    last: None,
                },
                Format::Sse,
            ),
            (
                "/events/a%2Fb?last_event_id=q",
                &[("Last-Event-ID", "h")],
                Feed::Hub {
                    topics: vec!["a/b".into()],
                    patterns: vec![],
                    last_event_id: Some("h".into()),
                    last: None,
                },
                Format::Sse,
            ),
            (
                "/events/a?since=s-3&last=5",
                &[],
                Feed::Hub {
                    topics: vec!["a".into()],
                    patterns: vec![],
                    last_event_id: Some("s-3".into()),
                    last: Some(5),
                },
                Format::Sse,
            ),
            (
                "/sse?last=20",
                &[],
                Feed::Hub {
                    topics: vec!["messages".into()],
                    patterns: vec![],
                    last_event_id: None,
                    last: Some(20),
                },
                Format::Sse,
            ),
        ];
        for (target, headers, feed, format) in cases {
            assert_eq!(
                decide_with(&config, "GET", target, headers),
                Action::Stream { feed, format },
                "{target}"
            );
        }
    }

    #[test]
    fn tokens_are_asked_where_they_apply() {
        let config = Config {
            tokens: Tokens {
                publish: Some("p".into()),
                subscribe: Some("s".into()),
                ..Tokens::default()
            },
            ..Config::default()
        };
        type Headers<'a> = Vec<(&'a str, &'a str)>;
        let cases: Vec<(&str, &str, Headers, u16)> = vec![
            ("POST", "/events/a", vec![], 401),
            (
                "POST",
                "/events/a",
                vec![("Authorization", "Bearer s")],
                401,
            ),
            ("POST", "/messages?token=p", vec![], 401),
            ("GET", "/events/a", vec![], 401),
            ("GET", "/sse", vec![("Cookie", "ssed_token=p")], 401),
            ("GET", "/topics", vec![], 401),
            ("GET", "/metrics", vec![], 401),
        ];
        for (method, target, headers, status) in cases {
            assert_eq!(
                reply(decide_with(&config, method, target, &headers)).0,
                status,
                "{method} {target}"
            );
        }
        let allowed: Vec<(&str, &str, Headers)> = vec![
            ("POST", "/events/a", vec![("Authorization", "Bearer p")]),
            ("GET", "/events/a?token=s", vec![]),
            ("GET", "/sse", vec![("Cookie", "x=1; ssed_token=s")]),
            ("GET", "/metrics", vec![("Authorization", "Bearer s")]),
            // The demos and the pages stay open.
            ("GET", "/stream-time", vec![]),
            ("GET", "/clock.html", vec![]),
        ];
        for (method, target, headers) in allowed {
            assert!(
                !matches!(
                    decide_with(&config, method, target, &headers),
                    Action::Reply(_)
                ),
                "{method} {target}"
            );
        }
        let Action::Reply(res) = decide_with(&config, "GET", "/events/a?token=x", &[]) else {
            panic!()
        };
        assert_eq!(
            res.fields
                .iter()
                .find(|(n, _)| *n == "WWW-Authenticate")
                .map(|(_, v)| v.as_str()),
            Some(r#"Bearer realm="ssed", error="invalid_token""#)
        );
    }

    #[test]
    fn signed_tokens_grant_topics() {
        let key = crate::jwt::Key::new(&[3; 32]).unwrap();
        let config = Config {
            tokens: Tokens {
                key: Some(key.clone()),
                ..Tokens::default()
            },
            ..Config::default()
        };
        let token = |claims: serde_json::Value| crate::jwt::sign(&claims, &key);
        let user = token(serde_json::json!({
            "sub": "u42", "exp": 2000,
            "ssed": {"subscribe": ["users/42/*", "news"], "publish": ["users/42/outbox", "messages"]}
        }));
        let admin = token(serde_json::json!({"ssed": {"admin": true}}));
        let bearer = |t: &str| format!("Bearer {t}");
        let q = |target: &str, t: &str| {
            format!(
                "{target}{}token={t}",
                if target.contains('?') { '&' } else { '?' }
            )
        };
        // (method, target, Authorization, status; 0: allowed)
        let cases: Vec<(&str, String, Option<String>, u16, &str)> = vec![
            ("GET", q("/events/users/42/inbox", &user), None, 0, ""),
            (
                "GET",
                "/events/users/42/inbox".into(),
                Some(bearer(&user)),
                0,
                "",
            ),
            (
                "GET",
                q("/events/users/43/inbox", &user),
                None,
                403,
                "no grant to subscribe to \"users/43/inbox\"",
            ),
            (
                "GET",
                q("/events/users/42/a/b", &user),
                None,
                403,
                "no grant to subscribe to \"users/42/a/b\"",
            ),
            // Several topics need every one.
            (
                "GET",
                q("/events?topic=news&topic=users/42/x", &user),
                None,
                0,
                "",
            ),
            (
                "GET",
                q("/events?topic=news&topic=sport", &user),
                None,
                403,
                "no grant to subscribe to \"sport\"",
            ),
            (
                "GET",
                q("/sse", &user),
                None,
                403,
                "no grant to subscribe to \"messages\"",
            ),
            (
                "POST",
                "/events/users/42/outbox".into(),
                Some(bearer(&user)),
                0,
                "",
            ),
            ("POST", "/messages".into(), Some(bearer(&user)), 0, ""),
            (
                "POST",
                "/events/users/42/inbox".into(),
                Some(bearer(&user)),
                403,
                "no grant to publish to \"users/42/inbox\"",
            ),
            // A publish reads the header alone.
            (
                "POST",
                q("/events/users/42/outbox", &user),
                None,
                401,
                "a token is required: send it as Authorization: Bearer TOKEN",
            ),
            (
                "GET",
                q("/metrics", &user),
                None,
                403,
                "no grant to read /metrics: it needs \"admin\": true",
            ),
            ("GET", q("/metrics", &admin), None, 0, ""),
            ("GET", "/topics".into(), None, 401, "a token is required: send it as Authorization: Bearer TOKEN, ?token=TOKEN or the cookie ssed_token"),
            ("GET", q("/topics", &user), None, 0, ""),
            // With a key, nothing is open but the pages, the demos, health.
            (
                "GET",
                "/events/news".into(),
                None,
                401,
                "a token is required: send it as Authorization: Bearer TOKEN, ?token=TOKEN or the cookie ssed_token",
            ),
            (
                "POST",
                "/events/news".into(),
                None,
                401,
                "a token is required: send it as Authorization: Bearer TOKEN",
            ),
            ("GET", "/stream-time".into(), None, 0, ""),
            ("GET", "/healthz".into(), None, 0, ""),
        ];
        for (method, target, auth, status, why) in cases {
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            let (action, access) = decide_at(&config, method, &target, &headers, 1500);
            if status == 0 {
                assert!(
                    !matches!(action, Action::Reply(_)),
                    "{method} {target}: {action:?}"
                );
            } else {
                assert_eq!(
                    reply(action),
                    (status, why.to_string()),
                    "{method} {target}"
                );
                continue;
            }
            if target.contains(&user) || auth.is_some() {
                assert_eq!(access.user(), Some("u42"), "{method} {target}");
            }
        }
        // Refusals of the token itself: 401, the reason in the challenge.
        let Action::Reply(res) = decide_at(&config, "GET", &q("/events/news", &user), &[], 2000).0
        else {
            panic!()
        };
        assert_eq!(res.status, 401);
        assert_eq!(
            res.fields
                .iter()
                .find(|(n, _)| *n == "WWW-Authenticate")
                .map(|(_, v)| v.as_str()),
            Some(
                r#"Bearer realm="ssed", error="invalid_token", error_description="the token expired 0 s ago (exp 2000)""#
            )
        );
        let (action, _) = decide_at(&config, "GET", &q("/events/news", "a.b.c"), &[], 1500);
        assert_eq!(
            reply(action),
            (
                401,
                "the token is malformed: its header is not base64url-encoded JSON".into()
            )
        );
    }

    #[test]
    fn publishes_pages_and_the_rest() {
        let config = Config::default();
        assert_eq!(
            decide_with(
                &config,
                "POST",
                "/events/sensors%2Fkitchen?event=reading",
                &[]
            ),
            Action::Publish {
                to: PublishTo::Topic("sensors/kitchen".into()),
                event: Some("reading".into())
            }
        );
        assert_eq!(
            decide_with(&config, "POST", "/send_rest", &[]),
            Action::Publish {
                to: PublishTo::Seed(Post::Rest),
                event: None
            }
        );
        assert_eq!(
            decide_with(&config, "GET", "/clock.html?x=1", &[]),
            Action::Page {
                path: "clock.html".into(),
                allowed: true
            }
        );
        assert_eq!(decide_with(&config, "GET", "/healthz", &[]), Action::Health);
        assert_eq!(
            reply(decide_with(&config, "DELETE", "/sse", &[])),
            (
                405,
                "DELETE is not allowed on /sse; use GET, HEAD, OPTIONS".into()
            )
        );
        assert_eq!(decide_with(&config, "GET", "/topics", &[]), Action::Topics);
        assert_eq!(
            decide_with(&config, "HEAD", "/metrics", &[]),
            Action::Metrics
        );
    }

    #[test]
    fn query_helpers() {
        let q = http1::parse_query("a=1&b=x&a=2").unwrap();
        assert_eq!(number(&q, "a", 0, 10), Ok(Some(2)));
        assert_eq!(number(&q, "zz", 0, 10), Ok(None));
        assert!(number(&q, "a", 5, 10).is_err());
        assert_eq!(
            number(&q, "b", 0, 10),
            Err("b must be a whole number from 0 to 10, not \"x\"".into())
        );
        assert_eq!(all(&q, "a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(param(&q, "a"), Some("2"));
    }
}
