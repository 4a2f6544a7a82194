//! The log of events: the one seam between one instance and several.
//!
//! Everything the application asks of the log (publish, subscribe from an
//! id or a count, the topics, the link) goes through [`Store`], and its
//! errors are one type, [`StoreError`], whose variants mean one thing
//! each: not stored ([`StoreError::Down`]), perhaps stored
//! ([`StoreError::Unknown`]), and so on. Two backends implement it:
//!
//! - [`Memory`] (the default): the hub is the log;
//! - [`Redis`] (`--redis`): the log is in Redis, and the hub mirrors the
//!   topics this instance's clients watch.
//!
//! Every backend is given the local [`crate::hub::Hub`] and fills it: a publish, or an
//! event that comes back from a shared log, is inserted into its topic,
//! which tells its subscribers (one path, the hub's fan-out). A backend
//! knows no HTTP and no writer: a subscription comes back as
//! [`Subscribed`], subscriptions, gaps and a [`crate::hub::Backlog`] to read from.
//! What is a backend's own (its link, its names) it describes itself, in
//! [`Link`]. A third backend (NATS JetStream, Redis Cluster) is one module
//! here that implements [`Store`], and one flag that picks it.

mod memory;
pub mod redis;

pub use memory::Memory;
pub use redis::Redis;

use crate::hub::{Gap, Notify, Resume, Subscribed, TopicError};
use crate::names::Pattern;
use crate::sse::Event;
use std::sync::Arc;
use std::time::Duration;

/// The longest `Last-Event-ID` quoted back in a gap notice: longer ones are
/// not ids of ours, and a stream keeps what it quotes for its whole life.
const MAX_QUOTED_ID: usize = 256;

/// The log of events, wherever it lives.
pub trait Store: Send + Sync {
    /// Stores `event` in `topic`, once per idempotency `key` (a retry with
    /// the same key is answered with the first id and stores nothing), and
    /// has it reach the topic's subscribers, here and on every instance.
    fn publish(&self, topic: &str, event: Event, key: Option<&str>) -> Result<Stored, StoreError>;

    /// Subscribes `notify` to `names` and to every topic that matches one
    /// of `patterns` (also those made later), starting where `start` says.
    fn subscribe(
        &self,
        names: &[String],
        patterns: &[Pattern],
        notify: &Arc<dyn Notify>,
        start: &Start,
    ) -> Result<Subscribed, StoreError>;

    /// Every topic of the log, with this instance's subscribers.
    fn topics(&self) -> Result<Vec<TopicState>, StoreError>;

    /// Deletes `topic`, here and on every instance: its events are gone,
    /// its readers told, and a later publish starts it afresh. Whether it
    /// existed.
    fn delete(&self, topic: &str) -> Result<bool, StoreError>;

    /// The link to a shared log, if there is one: `/healthz`, `/metrics`
    /// and `/topics` show it.
    fn link(&self) -> Option<Link> {
        None
    }

    /// Frees those of `names` nobody here needs any more (a stream that
    /// subscribed to them ended).
    fn release(&self, names: &[String]);

    /// Stops its threads (a shared log's link).
    fn stop(&self) {}

    /// Other instances' subscribers by topic (a shared log's), at most a
    /// couple of seconds old: `/topics` and a publish's reply count them
    /// with this instance's.
    fn subscribers_elsewhere(&self) -> Option<std::collections::HashMap<String, usize>> {
        None
    }

    /// Idempotency keys kept in this process, if they are kept here.
    fn keys(&self) -> Option<usize> {
        None
    }
}

/// A publish that was stored.
#[derive(Debug, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    /// This instance's subscribers of the topic.
    pub subscribers: usize,
}

/// Where a subscriber starts.
#[derive(Clone, Debug, Default)]
pub struct Start {
    /// After this id (`Last-Event-ID`, `?last_event_id=`, `?since=`).
    pub last_event_id: Option<String>,
    /// With the newest N retained events (when there is no id).
    pub last: Option<usize>,
}

impl Start {
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

/// A shared log's link, described by its backend: the application shows
/// it without naming any backend.
#[derive(Clone, Debug)]
pub struct Link {
    /// The backend, as metrics name it: `redis` (`ssed_redis_up`, ...).
    pub backend: &'static str,
    /// The response header that `/topics` carries the summary in.
    pub header: &'static str,
    /// What it links to, for messages: `redis redis://127.0.0.1:6379`.
    pub name: String,
    /// While it is up, its last round trip, if measured.
    pub rtt: Option<Duration>,
    /// While it is down, for how long and why: `None` while it is up.
    pub down: Option<(Duration, String)>,
    pub reconnects: u64,
    pub resets: u64,
    /// While it is up but refuses to store (out of memory), why.
    pub refusing: Option<String>,
}

impl Link {
    pub fn up(&self) -> bool {
        self.down.is_none()
    }

    /// `up; rtt=0.210ms; reconnects=0; resets=0`.
    pub fn summary(&self) -> String {
        let state = match (&self.down, self.rtt) {
            (Some((for_, _)), _) => format!("down; for={:.1}s", for_.as_secs_f64()),
            (None, Some(rtt)) => format!("up; rtt={:.3}ms", rtt.as_secs_f64() * 1000.0),
            (None, None) => "up".into(),
        };
        format!(
            "{state}; reconnects={}; resets={}",
            self.reconnects, self.resets
        )
    }

    /// While down, why, in a sentence: `redis redis://...: down for 3.2 s:
    /// Connection refused (os error 111)`.
    pub fn trouble(&self) -> Option<String> {
        match (&self.down, &self.refusing) {
            (Some((for_, why)), _) => Some(format!(
                "{}: down for {:.1} s: {why}",
                self.name,
                for_.as_secs_f64()
            )),
            (None, Some(why)) => Some(format!("{}: {why}", self.name)),
            (None, None) => None,
        }
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

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::BadTopic(why) | StoreError::Down(why) | StoreError::LostData(why) => {
                f.write_str(why)
            }
            StoreError::Unknown { why, .. } => f.write_str(why),
            StoreError::TooManyTopics(max) => {
                write!(f, "there are {max} topics already (--max-topics)")
            }
            StoreError::InProgress => f.write_str("a publish with its key is under way"),
            StoreError::KeyReused => {
                f.write_str("its idempotency key was used for another publish")
            }
        }
    }
}

impl From<TopicError> for StoreError {
    fn from(e: TopicError) -> StoreError {
        match e {
            TopicError::BadName(why) => StoreError::BadTopic(why),
            TopicError::TooMany(max) => StoreError::TooManyTopics(max),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_a_subscriber_starts() {
        let id = |id: Option<&str>| match id {
            None => Resume::Live,
            Some(id) => Resume::Foreign(id.into()),
        };
        let start = |id: Option<&str>, last: Option<usize>| Start {
            last_event_id: id.map(String::from),
            last,
        };
        assert_eq!(start(None, None).resume(id), Resume::Live);
        assert_eq!(start(None, Some(5)).resume(id), Resume::Last(5));
        // An id wins over ?last=: a browser reconnecting to a ?last= URL.
        assert_eq!(
            start(Some("x-1"), Some(5)).resume(id),
            Resume::Foreign("x-1".into())
        );
        assert_eq!(start(Some(&"1".repeat(257)), None).quoted(), None);
        assert_eq!(start(Some("x-1"), None).quoted().as_deref(), Some("x-1"));
    }

    #[test]
    fn a_link_says_how_it_is() {
        let mut link = Link {
            backend: "redis",
            header: "Redis-Link",
            name: "redis redis://127.0.0.1:6379".into(),
            rtt: Some(Duration::from_micros(46)),
            down: None,
            reconnects: 1,
            resets: 0,
            refusing: None,
        };
        assert_eq!(link.summary(), "up; rtt=0.046ms; reconnects=1; resets=0");
        assert_eq!(link.trouble(), None);
        link.down = Some((Duration::from_millis(3200), "Connection refused".into()));
        assert_eq!(link.summary(), "down; for=3.2s; reconnects=1; resets=0");
        assert_eq!(
            link.trouble().as_deref(),
            Some("redis redis://127.0.0.1:6379: down for 3.2 s: Connection refused")
        );
        link.down = None;
        link.refusing = Some("out of memory: used 2.1 MB of maxmemory 2 MB".into());
        assert_eq!(
            link.trouble().as_deref(),
            Some("redis redis://127.0.0.1:6379: out of memory: used 2.1 MB of maxmemory 2 MB")
        );
    }
}
