//! Opening a stream: its head, its place under the caps (and the memory
//! line), what it reads (a demo's script, a demo's shared topic, or the
//! hub through the log), and the [`Stream`] the connection layer runs.

use super::auth::Access;
use super::cors::Cors;
use super::routes::Feed;
use super::App;
use crate::conn::{self, Exchange, StreamBody};
use crate::demos::{Clock, Numbered, Ticker, Training};
use crate::http1::Response;
use crate::hub::Topic;
use crate::sse::Event;
use crate::store::Start;
use crate::stream::{Format, Kind, Outlet, Reader, Slot, Stream, Streams};
use crate::sync::lock;
use crate::sys;
use std::sync::Arc;

impl App {
    /// Starts a stream on `ex` and returns its body, or says why not.
    pub(super) fn open(
        &self,
        ex: &mut Exchange<'_>,
        feed: Feed,
        format: Format,
        cors: &Cors,
        access: &Access,
    ) -> Result<Option<Box<dyn StreamBody>>, Response> {
        let fields = stream_head(format.content_type(), cors);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if ex.request().method == "HEAD" {
            ex.start_stream(&fields);
            return Ok(None);
        }
        if let Some(refused) = self.stream_refusal(ex) {
            return Err(refused);
        }
        let (streams, flag) = if feed.is_demo() {
            (&self.demo_streams, "--max-demo-streams")
        } else {
            (&self.streams, "--max-streams")
        };
        let slot = self.place(ex, streams, flag)?;
        let bell = ex.bell();
        let outlet = || Outlet::new(Arc::clone(bell), format, Arc::clone(&self.buffers));
        let demo_topic = |topic: &Arc<Topic>, latest: usize, first: Vec<Arc<Event>>| {
            let outlet = outlet();
            let sub = topic.subscribe(outlet.as_notify(), latest);
            outlet.attach(Reader::demo(sub, first));
            Kind::Topics(outlet)
        };
        let script = |s: Box<dyn crate::stream::Script>| Kind::Script(s);
        let mut watch = None;
        let (kind, topics) = match feed {
            Feed::Clock { interval } => (script(Box::new(Clock::new(interval))), Vec::new()),
            Feed::Ticker { interval } => (script(Box::new(Ticker::new(interval))), Vec::new()),
            Feed::Json { count, interval } => (
                script(Box::new(Numbered::json(count, interval))),
                Vec::new(),
            ),
            Feed::Text { count, interval } => (
                script(Box::new(Numbered::text(count, interval))),
                Vec::new(),
            ),
            Feed::Training {
                epochs,
                steps,
                step,
            } => (
                script(Box::new(Training::new(epochs, steps, step))),
                Vec::new(),
            ),
            Feed::SystemStats { last, announce } => {
                let outlet = outlet();
                let sub = self.demos.stats.subscribe(outlet.as_notify(), last);
                // A page knows which samples are history without guessing
                // from when they arrive (only for `?last=`: the seed's
                // stream stays as it was).
                let first = if announce {
                    let kept = serde_json::json!({
                        "samples": sub.owed(),
                        "interval_ms": self.config.pace.stats.as_millis() as u64,
                    });
                    vec![Arc::new(Event::named("kept", kept.to_string()))]
                } else {
                    Vec::new()
                };
                outlet.attach(Reader::demo(sub, first));
                (Kind::Topics(outlet), Vec::new())
            }
            // Quotes read after subscribing: a tick in between comes twice,
            // none is missed.
            Feed::Stocks => {
                let first = lock(&self.demos.quotes).clone();
                (demo_topic(&self.demos.stocks, 0, first), Vec::new())
            }
            Feed::Hub {
                topics: names,
                patterns,
                last_event_id,
                last,
            } => {
                let outlet = outlet();
                let start = Start {
                    last_event_id,
                    last,
                };
                let subscribed = self
                    .store
                    .subscribe(&names, &patterns, &outlet.as_notify(), &start)
                    .map_err(|e| self.refused(e, ex))?;
                watch = subscribed.watch.clone();
                outlet.attach(Reader::subscribed(subscribed));
                // A stream ends when the token it was opened with does.
                if let Some(exp) = access.expires() {
                    outlet.end_at(ends_at(exp));
                }
                (Kind::Topics(outlet), names)
            }
        };
        let store = Arc::clone(&self.store);
        let hub = Arc::clone(&self.hub);
        let stream = Box::new(Stream::new(
            kind,
            format,
            self.config.heartbeat,
            self.config.retry_ms,
            self.config.stop_spread.as_millis() as u64,
            slot,
            // Topics nobody needs any more are freed: those named, and
            // those its patterns brought.
            move || {
                let mut topics = topics;
                if let Some(watch) = watch {
                    topics.extend(hub.matching(&watch));
                }
                store.release(&topics)
            },
        ));
        // Refused, the thread keeps the normal policy: it costs a context
        // switch more per delivery, nothing else.
        let _ = sys::sched::batch_for_good();
        // Without a head, the stream is dropped here: it lets its topics go.
        Ok(ex
            .start_stream(&fields)
            .then_some(stream as Box<dyn StreamBody>))
    }
}

impl App {
    /// A place under `streams`' cap (named by `flag`), or the 503 that
    /// says they are all in use.
    pub(super) fn place(
        &self,
        ex: &mut Exchange<'_>,
        streams: &Arc<Streams>,
        flag: &str,
    ) -> Result<Slot, Response> {
        streams.reserve().ok_or_else(|| {
            self.refused_streams.note(flag);
            ex.close_after();
            let why = format!(
                "all {} streams are in use ({flag}); try again later",
                streams.max()
            );
            Response::error(503, &why).with("Retry-After", conn::retry_after())
        })
    }
}

/// The head fields of a stream of `content_type`: no caching, no
/// buffering in a proxy, and CORS's.
pub(super) fn stream_head(content_type: &str, cors: &Cors) -> Vec<(&'static str, String)> {
    let mut fields: Vec<(&'static str, String)> = vec![
        ("Content-Type", content_type.to_string()),
        ("Cache-Control", "no-cache".into()),
        ("X-Accel-Buffering", "no".into()),
    ];
    fields.extend(cors.fields());
    fields
}

/// The instant of `exp` (seconds since the epoch) on this host's monotonic
/// clock.
fn ends_at(exp: u64) -> std::time::Instant {
    let now = std::time::SystemTime::now();
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(exp);
    let left = at.duration_since(now).unwrap_or_default();
    std::time::Instant::now() + left
}
