//! The log of events: the one seam between one instance and several.
//!
//! Everything the server asks of the log (publish, subscribe from an id or
//! a count, the topics, health) goes through [`Store`], and its errors are
//! one type, [`StoreError`], whose variants mean one thing each: not stored
//! ([`StoreError::Down`]), perhaps stored ([`StoreError::Unknown`]), and so
//! on. Two backends implement it:
//!
//! - [`Memory`] (the default): the hub is the log;
//! - `redis::Redis` (`--redis`): the log is in Redis, and the hub mirrors
//!   the topics this instance's clients watch.
//!
//! A third (NATS JetStream, Redis Cluster) is one module that implements
//! [`Store`] and one flag that picks it in `Server::start`; nothing above
//! the seam changes.

use crate::hub::{check_topic, Gap, Hub, Notify, Published, Resume, TopicError};
use crate::idempotency::{self, Keys, Seen};
use crate::sse::Event;
use crate::stream::Feed;
use std::sync::Arc;
use std::time::Duration;

/// The longest `Last-Event-ID` quoted back in a gap notice: longer ones are
/// not ids of ours, and a stream keeps what it quotes for its whole life.
const MAX_QUOTED_ID: usize = 256;

/// The log of events, wherever it lives.
pub trait Store: Send + Sync {
    /// The local hub (the log itself, or its mirror).
    fn hub(&self) -> &Arc<Hub>;

    /// Stores `event` in `topic`, once per idempotency `key` (a retry with
    /// the same key is answered with the first id and stores nothing).
    fn publish(&self, topic: &str, event: Event, key: Option<&str>) -> Result<Stored, StoreError>;

    /// Subscribes `notify` to `names`, starting where `from` says: the feed
    /// for the stream's outlet, gaps and replay included.
    fn subscribe(
        &self,
        names: &[String],
        notify: &Arc<dyn Notify>,
        from: &From,
    ) -> Result<Feed, StoreError>;

    /// Every topic of the log, with this instance's subscribers.
    fn topics(&self) -> Result<Vec<TopicState>, StoreError>;

    /// `Err(why)` while the log cannot be reached.
    fn health(&self) -> Result<(), String>;

    /// The link to a shared log, if there is one (for `/metrics` and the
    /// `Redis-Link` header).
    fn link(&self) -> Option<Link> {
        None
    }

    /// Frees those of `names` nobody here needs any more (a stream that
    /// subscribed to them ended).
    fn release(&self, names: &[String]) {
        self.hub().release(names);
    }

    /// Stops its threads (a shared log's link).
    fn stop(&self) {}

    /// Idempotency keys kept in this process, if they are kept here.
    fn keys(&self) -> Option<usize> {
        None
    }
}

/// A publish that was stored.
#[derive(Debug)]
pub struct Stored {
    pub id: String,
    /// This instance's subscribers of the topic.
    pub subscribers: usize,
    /// The fan-out to run once the publisher has its answer (`None` when
    /// the event comes back through a shared log's feed instead).
    pub fanout: Option<Published>,
}

/// Where a subscriber starts.
#[derive(Clone, Debug, Default)]
pub struct From {
    /// After this id (`Last-Event-ID`, `?last_event_id=`, `?since=`).
    pub last_event_id: Option<String>,
    /// With the newest N retained events (when there is no id).
    pub last: Option<usize>,
}

impl From {
    /// Where to start: the newest N when there is no id, else what
    /// `read_id` makes of the id (or of its absence: live).
    pub fn resume(&self, read_id: impl FnOnce(Option<&str>) -> Resume) -> Resume {
        match (&self.last_event_id, self.last) {
            (None, Some(n)) => Resume::Last(n),
            (id, _) => read_id(id.as_deref()),
        }
    }

    /// The id, as a gap notice may quote it.
    pub fn quoted(&self) -> Option<String> {
        self.last_event_id
            .clone()
            .filter(|id| id.len() <= MAX_QUOTED_ID)
    }
}

/// A topic as `/topics` shows it.
#[derive(Clone, Debug)]
pub struct TopicState {
    pub name: String,
    pub subscribers: usize,
    pub retained: usize,
    /// Its newest event's id.
    pub last_id: Option<String>,
}

/// A shared log's link.
#[derive(Clone, Debug)]
pub struct Link {
    /// While it is up, its last round trip, if measured.
    pub rtt: Option<Duration>,
    /// While it is down, for how long: `None` while it is up.
    pub down_for: Option<Duration>,
    pub reconnects: u64,
    pub resets: u64,
}

impl Link {
    pub fn up(&self) -> bool {
        self.down_for.is_none()
    }

    /// `up; rtt=0.210ms; reconnects=0; resets=0`.
    pub fn summary(&self) -> String {
        let state = match (self.down_for, self.rtt) {
            (Some(for_), _) => format!("down; for={:.1}s", for_.as_secs_f64()),
            (None, Some(rtt)) => format!("up; rtt={:.3}ms", rtt.as_secs_f64() * 1000.0),
            (None, None) => "up".into(),
        };
        format!(
            "{state}; reconnects={}; resets={}",
            self.reconnects, self.resets
        )
    }
}

/// Why the log did not store a publish, or may not have; why a topic
/// cannot be had.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The name breaks the rule (400).
    BadTopic(String),
    /// `--max-topics` topics exist already (429).
    TooManyTopics(usize),
    /// Certainly not stored: the log could not be reached before the
    /// command was sent, or refused it (503). The text names the log and
    /// the cause.
    Down(String),
    /// The command was sent and no answer came: perhaps stored (504). A
    /// retry with `key` stores it at most once.
    Unknown { why: String, key: String },
    /// Not stored: the log is not the one this instance followed (it lost
    /// its data, or another took its place); it is being joined again
    /// (503).
    LostData(String),
    /// A publish with the same idempotency key is under way (409).
    InProgress,
    /// The idempotency key was used for another publish: another topic or
    /// other data (422).
    KeyReused,
}

impl std::convert::From<TopicError> for StoreError {
    fn from(e: TopicError) -> StoreError {
        match e {
            TopicError::BadName(why) => StoreError::BadTopic(why),
            TopicError::TooMany(max) => StoreError::TooManyTopics(max),
        }
    }
}

/// Where the log is when the hub is the log.
pub struct Memory {
    hub: Arc<Hub>,
    /// The ids of recent publishes by idempotency key.
    keys: Keys,
}

impl Memory {
    /// The hub as the log; idempotency keys kept for `idempotency_ttl`, at
    /// most `max_keys` of them.
    pub fn new(hub: Arc<Hub>, idempotency_ttl: Duration, max_keys: usize) -> Memory {
        Memory {
            hub,
            keys: Keys::new(idempotency_ttl, max_keys),
        }
    }
}

impl Store for Memory {
    fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    fn publish(&self, topic: &str, event: Event, key: Option<&str>) -> Result<Stored, StoreError> {
        // A bad name is a 400 whatever the key says.
        check_topic(topic).map_err(StoreError::BadTopic)?;
        if let Some(key) = key {
            let fingerprint = idempotency::fingerprint(topic, event.event.as_deref(), &event.data);
            match self.keys.begin(key, fingerprint) {
                Seen::New => {}
                // Published before: the same id, nothing published now.
                Seen::Answered(seq) => {
                    return Ok(Stored {
                        id: self.hub.id(seq),
                        subscribers: self.hub.subscribers(topic),
                        fanout: None,
                    })
                }
                Seen::InProgress => return Err(StoreError::InProgress),
                Seen::Reused => return Err(StoreError::KeyReused),
            }
        }
        match self.hub.publish(topic, event) {
            Ok((id, published)) => {
                if let Some(key) = key {
                    self.keys.done(key, published.seq());
                }
                Ok(Stored {
                    id,
                    subscribers: published.subscribers(),
                    fanout: Some(published),
                })
            }
            Err(e) => {
                if let Some(key) = key {
                    self.keys.failed(key);
                }
                Err(e.into())
            }
        }
    }

    fn subscribe(
        &self,
        names: &[String],
        notify: &Arc<dyn Notify>,
        from: &From,
    ) -> Result<Feed, StoreError> {
        let resume = from.resume(|id| self.hub.resume(id));
        let (subs, gaps) = self.hub.subscribe(names, notify, &resume)?;
        Ok(Feed::new(
            subs,
            Some(Arc::clone(&self.hub)),
            gaps,
            from.quoted(),
        ))
    }

    fn topics(&self) -> Result<Vec<TopicState>, StoreError> {
        Ok(self
            .hub
            .topics()
            .iter()
            .map(|t| {
                let (subscribers, retained, newest) = t.stats();
                TopicState {
                    name: t.name().to_string(),
                    subscribers,
                    retained,
                    last_id: newest.map(|seq| self.hub.id(seq)),
                }
            })
            .collect())
    }

    fn health(&self) -> Result<(), String> {
        Ok(())
    }

    fn keys(&self) -> Option<usize> {
        Some(self.keys.len())
    }
}

/// Gaps for a replay that could not be read (a shared log away or
/// stalled): the client is told, and its next reconnection resumes.
pub fn unreplayed(names: &[String]) -> Vec<Gap> {
    names
        .iter()
        .map(|topic| Gap {
            topic: topic.clone(),
            missed: None,
            through: None,
        })
        .collect()
}
