//! The application: what each request gets. The connection layer calls
//! [`App::handle`] once per request, on that connection's thread; the app
//! asks [`routes::decide`] what to do, then does it: replies, publishes
//! (`publish.rs`), or opens a stream (`open.rs`). `start.rs` puts the
//! rooms together. Every refusal of the log is one status for one meaning
//! ([`App::refused`]).

mod auth;
mod cors;
mod metrics;
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
use crate::stream::{Buffers, Streams};
use auth::Tokens;
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
    pages: Pages,
    hub: Arc<Hub>,
    /// The shared demos' topics.
    demos: DemoTopics,
    /// Hub streams (`/events`, `/sse`).
    streams: Arc<Streams>,
    demo_streams: Arc<Streams>,
    conn_counters: Arc<conn::Counters>,
    max_connections: usize,
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
        let action = routes::decide(req, &self.tokens, &cors);
        let res = match action {
            Action::Reply(res) => res,
            Action::Page { path, allowed } => self.page(&path, allowed, &ex.request().method),
            Action::Topics => self.topics(ex),
            Action::Health => self.health(),
            Action::Metrics => self.metrics(),
            Action::Publish { to, event } => self
                .publish(ex, &to, event.as_deref())
                .unwrap_or_else(|refused| refused),
            Action::Stream { feed, format } => match self.open(ex, feed, format, &cors) {
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

    /// `/topics`: every topic of the log, with this instance's subscribers
    /// and what feeds it; a shared log's link in the header it names.
    fn topics(&self, ex: &mut Exchange<'_>) -> Response {
        let link = self.store.link().map(|l| (l.header, l.summary()));
        let with_link = |res: Response| match &link {
            Some((header, summary)) => res.with(header, summary.clone()),
            None => res,
        };
        match self.store.topics() {
            Ok(topics) => {
                let list: Vec<Value> = topics
                    .into_iter()
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
            Err(StoreError::Down(why)) => with_link(
                Response::error(503, &why).with("Retry-After", conn::RETRY_AFTER_SECS.to_string()),
            ),
            Err(e) => with_link(self.refused(e, ex)),
        }
    }

    /// `/healthz`: `ok`, or a 503 that says what is down (a shared log's
    /// link) or that the server is at capacity (memory).
    fn health(&self) -> Response {
        let trouble = self.store.link().and_then(|link| link.trouble());
        let why = match trouble {
            Some(why) => why,
            None if self.guard.over() => self.guard.why(),
            None => return Response::text(200, "ok"),
        };
        Response::text(503, &why).with("Retry-After", conn::RETRY_AFTER_SECS.to_string())
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
        });
        Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            text.into_bytes(),
        )
        .no_store()
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
        Some(
            Response::error(503, &self.guard.why())
                .with("Retry-After", conn::RETRY_AFTER_SECS.to_string()),
        )
    }

    /// The answer to what the log refused: one status for each meaning.
    /// A client refused for want of topics is logged (at most once a
    /// second) and asked to let its connection go.
    fn refused(&self, e: StoreError, ex: &mut Exchange<'_>) -> Response {
        match e {
            StoreError::BadTopic(why) => Response::error(400, &why),
            StoreError::TooManyTopics(max) => {
                self.refused_topics.note(&format!("{}", ex.peer()));
                ex.close_after();
                Response::error(
                    429,
                    &format!("there are {max} topics already (--max-topics)"),
                )
                .with("Retry-After", conn::RETRY_AFTER_SECS.to_string())
            }
            // Certainly not stored.
            StoreError::Down(why) | StoreError::LostData(why) => {
                Response::error(503, &format!("not published: {why}"))
                    .with("Retry-After", conn::RETRY_AFTER_SECS.to_string())
            }
            // Perhaps stored: say so, and with which key to retry.
            StoreError::Unknown { why, key } => Response::error(
                504,
                &format!(
                    "perhaps published: {why}; retry with the header {}: {key} to publish it at most once",
                    idempotency::HEADER
                ),
            )
            .with(idempotency::HEADER, key),
            StoreError::InProgress => Response::error(
                409,
                "a publish with this Idempotency-Key is under way; retry with it in a moment",
            ),
            StoreError::KeyReused => Response::error(
                422,
                "this Idempotency-Key was used for another publish (another topic or other data); a new event needs a new key",
            ),
        }
    }
}
