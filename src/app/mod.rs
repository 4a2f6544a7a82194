//! The application: what each request gets. The connection layer calls
//! [`App::handle`] once per request, on that connection's thread; the app
//! asks [`routes::decide`] what to do, then does it: replies, publishes
//! (`publish.rs`), or opens a stream (`open.rs`). `start.rs` puts the
//! rooms together. Every refusal of the log is one status for one meaning
//! (`refusal`).

mod ask;
mod auth;
mod cors;
mod metrics;
mod mux;
mod open;
mod publish;
pub mod routes;
mod start;
pub mod www;

pub use start::{Limits, Server};

use crate::config::Config;
use crate::conn::{self, Exchange, Handler, StreamBody};
use crate::demos::DemoTopics;
use crate::http1::Response;
use crate::hub::{idempotency, Hub};
use crate::log::Throttled;
use crate::memory;
use crate::sources::Sources;
use crate::store::{Store, StoreError};
use crate::stream::{self, Buffers, Streams};
use auth::{Access, Tokens};
use cors::Cors;
use routes::Action;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use www::Pages;

/// The application: everything a request may need.
pub struct App {
    config: Config,
    tokens: Tokens,
    /// `--auth-url`: the application that decides what the tokens do not.
    asker: Option<ask::Asker>,
    pages: Pages,
    hub: Arc<Hub>,
    /// The shared demos' topics.
    demos: DemoTopics,
    /// Hub streams (`/events`, `/sse`).
    streams: Arc<Streams>,
    demo_streams: Arc<Streams>,
    conn_counters: Arc<conn::Counters>,
    max_connections: usize,
    /// `--drain`: the server is stopping; new streams go elsewhere.
    draining: std::sync::atomic::AtomicBool,
    /// `/mux`: the open muxes.
    muxes: Arc<mux::Muxes>,
    /// Refuses new work near the memory limit.
    guard: Arc<memory::Guard>,
    /// What streams' pieces may hold together.
    buffers: Arc<Buffers>,
    /// Programs and files that feed topics.
    sources: Sources,
    /// The log of events: the hub, or a shared log it mirrors.
    store: Arc<dyn Store>,
    refused_streams: Throttled,
    refused_topics: Throttled,
    refused_memory: Throttled,
    too_large: Throttled,
}

impl Handler for App {
    fn handle(&self, ex: &mut Exchange<'_>) -> Option<Box<dyn StreamBody>> {
        let req = ex.request();
        let cors = Cors::new(&self.config.cors_origins, req.header("Origin"));
        let ask_app = |who, denied| match &self.asker {
            Some(asker) => asker.ask(req, who, denied),
            None => routes::refuse(who, denied),
        };
        let judge = routes::Judge {
            tokens: &self.tokens,
            now: u64::try_from(crate::calendar::unix_now()).unwrap_or(0),
            ask: &ask_app,
        };
        let (action, access) = routes::decide(req, &judge, &cors);
        if let Some(user) = access.user() {
            ex.set_user(user);
        }
        let res = match action {
            Action::Reply(res) => res,
            Action::Page { path, allowed } => self.page(&path, allowed, &ex.request().method),
            Action::Topics => self.topics(ex, &access),
            Action::Health => self.health(),
            Action::Metrics => self.metrics(),
            Action::Delete { topic } => self.delete(ex, &topic),
            Action::Publish { to, event } => self
                .publish(ex, &to, event.as_deref())
                .unwrap_or_else(|refused| refused),
            Action::MuxControl { id } => self.control_mux(ex, &id),
            Action::Mux => {
                let fields = open::stream_head(stream::Format::Sse.content_type(), &cors);
                let fields: Vec<(&str, &str)> =
                    fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
                match self.open_mux(ex, &fields) {
                    Ok(body) => return body,
                    Err(res) => res,
                }
            }
            Action::Stream { feed, format } => match self.open(ex, feed, format, &cors, &access) {
                Ok(body) => return body,
                Err(res) => res,
            },
        };
        let mut res = res;
        res.fields.extend(cors.fields());
        ex.respond(res);
        None
    }
}

impl App {
    fn page(&self, path: &str, allowed: bool, method: &str) -> Response {
        match self.pages.get(path) {
            Some(_) if !allowed => {
                Response::error(405, &format!("{method} is not allowed on a page; use GET"))
                    .with("Allow", "GET, HEAD, OPTIONS")
            }
            Some(page) => Response::new(200, page.content_type, page.body),
            None => Response::error(404, &format!("no such page or route: /{path}")),
        }
    }

    /// `/topics`: every topic of the log that `access` may read, with this
    /// instance's subscribers and what feeds it; a shared log's link in
    /// the header it names.
    fn topics(&self, ex: &mut Exchange<'_>, access: &Access) -> Response {
        let link = self.store.link().map(|l| (l.header, l.summary()));
        let with_link = |res: Response| match &link {
            Some((header, summary)) => res.with(header, summary.clone()),
            None => res,
        };
        match self.store.topics() {
            Ok(topics) => {
                let list: Vec<Value> = topics
                    .into_iter()
                    .filter(|t| access.may_subscribe(&t.name))
                    .map(|t| {
                        let mut entry = json!({
                            "topic": t.name,
                            "subscribers": t.subscribers,
                            "retained": t.retained,
                            "last_id": t.last_id,
                        });
                        if let Some(source) = self.sources.describe(&t.name) {
                            entry["source"] = source;
                        }
                        entry
                    })
                    .collect();
                with_link(Response::json(200, &Value::Array(list)))
            }
            Err(StoreError::Down(why)) => {
                with_link(Response::error(503, &why).with("Retry-After", conn::retry_after()))
            }
            Err(e) => with_link(self.refused(e, ex)),
        }
    }

    /// `DELETE /events/{topic}`: its events gone and its readers told, on
    /// every instance; `404` if there is no such topic; `409` for a topic
    /// a source feeds.
    fn delete(&self, ex: &mut Exchange<'_>, topic: &str) -> Response {
        if let Some(flag) = self.sources.owner(topic) {
            return Response::error(
                409,
                &format!("topic {topic} is fed by {flag}; it cannot be deleted while ssed runs it"),
            );
        }
        match self.store.delete(topic) {
            Ok(true) => Response::json(200, &json!({ "topic": topic, "deleted": true })),
            Ok(false) => Response::error(404, &format!("no topic {topic:?}")),
            Err(e) => self.refused(e, ex),
        }
    }

    /// `/healthz`: `ok`, or a 503 that says what is down (a shared log's
    /// link) or that the server is at capacity (memory).
    fn health(&self) -> Response {
        let trouble = self.store.link().and_then(|link| link.trouble());
        let why = match trouble {
            _ if self.draining.load(Ordering::Acquire) => {
                "draining: the server is stopping (--drain)".to_string()
            }
            Some(why) => why,
            None if self.guard.over() => self.guard.why(),
            None => return Response::text(200, "ok"),
        };
        Response::text(503, &why).with("Retry-After", conn::retry_after())
    }

    fn metrics(&self) -> Response {
        let text = metrics::render(&metrics::Sources {
            hub: &self.hub,
            streams: &self.streams,
            demo_streams: &self.demo_streams,
            conns: &self.conn_counters,
            max_connections: self.max_connections,
            link: self.store.link(),
            guard: &self.guard,
            buffers: &self.buffers,
            keys: self.store.keys(),
            asker: self.asker.as_ref().map(|a| &a.counters),
            elsewhere: self.store.subscribers_elsewhere(),
        });
        Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            text.into_bytes(),
        )
        .no_store()
    }

    /// Why a new stream is refused before anything else: the server
    /// drains (`--drain`), or memory is near its limit.
    fn stream_refusal(&self, ex: &mut Exchange<'_>) -> Option<Response> {
        if self.draining.load(Ordering::Acquire) {
            ex.close_after();
            return Some(
                Response::error(
                    503,
                    "the server is stopping (--drain): no new streams; try again, or another instance",
                )
                .with("Retry-After", conn::retry_after()),
            );
        }
        self.memory_refusal(ex)
    }

    /// Near the memory limit, new streams and publishes are refused: a
    /// 503 that says so, and the connection let go.
    fn memory_refusal(&self, ex: &mut Exchange<'_>) -> Option<Response> {
        if !self.guard.over() {
            return None;
        }
        self.guard.refused_requests.fetch_add(1, Ordering::Relaxed);
        self.refused_memory.note(&format!("{}", ex.peer()));
        ex.close_after();
        Some(Response::error(503, &self.guard.why()).with("Retry-After", conn::retry_after()))
    }

    /// The answer to what the log refused ([`refusal`]). A client refused
    /// for want of topics is logged (at most once a second) and asked to
    /// let its connection go.
    fn refused(&self, e: StoreError, ex: &mut Exchange<'_>) -> Response {
        let (res, let_go) = refusal(e);
        if let_go {
            self.refused_topics.note(&format!("{}", ex.peer()));
            ex.close_after();
        }
        res
    }
}

/// One status for each meaning of a refusal by the log, and whether the
/// client is asked to let its connection go.
fn refusal(e: StoreError) -> (Response, bool) {
    let retry_later = |res: Response| res.with("Retry-After", conn::retry_after());
    match e {
        StoreError::BadTopic(why) => (Response::error(400, &why), false),
        StoreError::TooManyTopics(max) => (
            retry_later(Response::error(
                429,
                &format!("there are {max} topics already (--max-topics)"),
            )),
            true,
        ),
        // Certainly not stored.
        StoreError::Down(why) | StoreError::LostData(why) => (
            retry_later(Response::error(503, &format!("not published: {why}"))),
            false,
        ),
        // Perhaps stored: say so, and with which key to retry.
        // A delete carries no key: its retry is harmless (404 once done).
        StoreError::Unknown { why, key } if key.is_empty() => {
            (Response::error(504, &format!("perhaps done: {why}")), false)
        }
        StoreError::Unknown { why, key } => (
            Response::error(
                504,
                &format!(
                    "perhaps published: {why}; retry with the header {}: {key} to publish it at most once",
                    idempotency::HEADER
                ),
            )
            .with(idempotency::HEADER, key),
            false,
        ),
        StoreError::InProgress => (
            Response::error(
                409,
                "a publish with this Idempotency-Key is under way; retry with it in a moment",
            ),
            false,
        ),
        StoreError::KeyReused => (
            Response::error(
                422,
                "this Idempotency-Key was used for another publish (another topic or other data); a new event needs a new key",
            ),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::reason;

    fn field<'a>(res: &'a Response, name: &str) -> Option<&'a str> {
        res.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn error_line(res: &Response) -> String {
        let v: Value = serde_json::from_slice(&res.body).unwrap();
        v["error"].as_str().unwrap().to_string()
    }

    #[test]
    fn each_refusal_of_the_log_is_one_status_for_one_meaning() {
        let cases = [
            (StoreError::BadTopic("bad name".into()), 400, false, None),
            (StoreError::TooManyTopics(3), 429, true, Some("Retry-After")),
            (
                StoreError::Down("redis x: down".into()),
                503,
                false,
                Some("Retry-After"),
            ),
            (
                StoreError::LostData("redis x: lost".into()),
                503,
                false,
                Some("Retry-After"),
            ),
            (
                StoreError::Unknown {
                    why: "no answer".into(),
                    key: "k1".into(),
                },
                504,
                false,
                Some(idempotency::HEADER),
            ),
            (StoreError::InProgress, 409, false, None),
            (StoreError::KeyReused, 422, false, None),
        ];
        for (e, status, let_go, header) in cases {
            let what = format!("{e:?}");
            let (res, asked) = refusal(e);
            assert_eq!(res.status, status, "{what}");
            assert_eq!(asked, let_go, "{what}");
            assert!(!reason(status).is_empty(), "{status} has a reason phrase");
            let line = error_line(&res);
            assert!(!line.is_empty() && !line.contains('\n'), "{what}: {line}");
            if let Some(h) = header {
                assert!(field(&res, h).is_some(), "{what} carries {h}");
            }
        }
        // 503 means not stored; "perhaps" is never 503.
        let (res, _) = refusal(StoreError::Unknown {
            why: "no answer".into(),
            key: "k1".into(),
        });
        assert_eq!(field(&res, idempotency::HEADER), Some("k1"));
        assert!(error_line(&res).starts_with(
            "perhaps published: no answer; retry with the header Idempotency-Key: k1"
        ));
        let (res, _) = refusal(StoreError::Down("redis x: down".into()));
        assert_eq!(error_line(&res), "not published: redis x: down");
    }
}
