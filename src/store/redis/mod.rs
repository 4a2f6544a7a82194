//! The hub shared by several instances, through Redis (or Valkey).
//!
//! With `--redis`, the hub's log of events lives in Redis; each instance's
//! `Hub` becomes a mirror of it, and everything above the hub
//! (subscriptions, the live fan-out, gaps, slow clients, the writing of
//! streams) is the same code as without Redis. The seam is the log:
//!
//! - **Publish**: one script (`PUBLISH`, in `scripts.rs`) takes the next number of the
//!   hub-wide counter, appends the event to its topic's stream (trimmed to
//!   `--history` and `--history-bytes`) and to the feed stream that every
//!   instance follows, all in one atomic step. The publisher is answered
//!   once Redis has it, never before.
//! - **Live**: one thread per instance follows the feed stream
//!   (`XREAD BLOCK`) and inserts each event into the local hub under its
//!   number, in order, whatever instance published it. So every instance
//!   sees one order, and an event comes back once per instance however many
//!   local subscribers want it.
//! - **Replay**: a subscriber is registered live at the local watermark W,
//!   and what it is owed up to W is read from the topics' streams in Redis:
//!   no loss and no duplicate at the seam, on whichever instance.
//!
//! Ids are `{run}-{number}`: the run is a token kept in Redis, so every
//! instance gives out the same ids. If Redis loses its data (a restart
//! without persistence), the next instance to connect draws a new run;
//! instances that see the run change, or a hole in the feed they follow,
//! reset their mirror: their hub streams end, and clients reconnect and
//! resume from Redis, told of the gap by the usual `gap` event.
//!
//! Each instance holds [`POOL`] command connections and one feed
//! connection. The link is retried with back-off for as long as Redis is
//! away; meanwhile publishes are refused with 503 and `/healthz` says why.

//! The rooms: `scripts.rs` (the Lua scripts and their contracts),
//! `publish.rs` (a publish, its retry and what each failure means),
//! `feed.rs` (the thread that follows the log and joins it again),
//! `replay.rs` (a resume, read a page at a time), `conn.rs` and `pool.rs`
//! (connections and their errors), `keys.rs` (what ssed keeps in Redis),
//! `resp.rs` (the protocol, every reply bounded).

mod checks;
mod conn;
mod feed;
mod keys;
mod pool;
mod publish;
mod replay;
mod resp;
mod scripts;

pub use crate::config::RedisTarget as Target;
pub use resp::{Limits, Reply};

use super::{unreplayed, Link, Start, Store, StoreError, Stored, TopicState};
use crate::hub::{idempotency, Hub, Notify, Resume, Subscribed};
use crate::log;
use crate::names::Pattern;
use crate::sse::Event;
use crate::sync::{lock, Crew, Doorbell};
use conn::LinkError;
use keys::{parse_id, stream_key, SEQ, TOPICS};
use pool::Pool;
use scripts::LuaScript;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Command connections per instance (publishes, replays, `/topics`).
pub const POOL: usize = 4;
/// Entries the feed stream keeps: an instance away for longer than that
/// many events resets its mirror.
pub const FEED_LENGTH: u64 = 10_000;
/// The first pause before reconnecting; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the feed's `XREAD` blocks before it looks at the link again.
const BLOCK: Duration = Duration::from_millis(500);
/// How often the round-trip time is measured.
const PING_EVERY: Duration = Duration::from_secs(2);
/// How often the feed thread checks that the log is still the one it
/// follows (a FLUSHALL, or another Redis in its place): an instance that
/// never publishes notices within this and a `BLOCK`.
const RUN_CHECK_EVERY: Duration = Duration::from_millis(500);

/// How the shared hub keeps events.
#[derive(Clone, Debug)]
pub struct Settings {
    pub history: usize,
    pub history_bytes: usize,
    /// `--history-total`: all topics together.
    pub history_total: usize,
    pub max_topics: usize,
    pub max_event_bytes: usize,
    /// Connecting and each command.
    pub timeout: Duration,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
    /// `--history-ttl`: events older than this are dropped.
    pub history_ttl: Option<Duration>,
}

/// The shared hub: the link, its thread and connections.
pub struct Redis {
    shared: Arc<Shared>,
    /// Idempotency keys of publishes that went out without an answer, and
    /// when: a retry with one is never told "not stored" while Redis
    /// cannot say.
    unknown: Mutex<std::collections::HashMap<String, Instant>>,
}

struct Shared {
    target: Target,
    settings: Settings,
    hub: Arc<Hub>,
    pool: Pool,
    link: Mutex<LinkState>,
    /// The feed thread, and its stop flag.
    crew: Crew,
    /// Cuts the feed thread's pauses short.
    bell: Doorbell,
    /// The feed connection, to shut down under its blocking read.
    feed_socket: Mutex<Option<TcpStream>>,
    /// The Redis server (its `run_id`) the feed last checked the log on
    /// (`None`: not known, `INFO` refused). A command connection that
    /// reaches another one is not used: see [`Shared::open_command`].
    server: Mutex<Option<String>>,
    /// Why the feed was made to join again (its connection shut down on
    /// purpose): said instead of the connection's error.
    rejoin: Mutex<Option<String>>,
    join_script: LuaScript,
    renew_script: LuaScript,
    can_script: LuaScript,
    fence_script: LuaScript,
    delete_script: LuaScript,
    counts_script: LuaScript,
    age_script: LuaScript,
    /// This instance, as the others count it.
    instance: String,
    /// The other instances' subscribers by topic, at most a couple of
    /// seconds old.
    elsewhere: Mutex<std::collections::HashMap<String, usize>>,
    publish_script: LuaScript,
    last_script: LuaScript,
    reconnects: AtomicU64,
    resets: AtomicU64,
}

struct LinkState {
    up: bool,
    since: Instant,
    why: String,
    rtt: Option<Duration>,
    /// Up, but Redis refuses to store: out of memory.
    full: Option<String>,
}

impl Redis {
    /// Starts following the shared hub; returns at once. The link comes up
    /// in the background and is retried for as long as Redis is away.
    pub fn start(target: Target, settings: Settings, hub: Arc<Hub>) -> io::Result<Redis> {
        let shared = Arc::new(Shared {
            target,
            settings,
            hub,
            pool: Pool::new(POOL),
            link: Mutex::new(LinkState {
                up: false,
                since: Instant::now(),
                why: "connecting".into(),
                rtt: None,
                full: None,
            }),
            crew: Crew::default(),
            bell: Doorbell::default(),
            feed_socket: Mutex::default(),
            server: Mutex::default(),
            rejoin: Mutex::default(),
            join_script: LuaScript::new(scripts::JOIN),
            renew_script: LuaScript::new(scripts::RENEW),
            can_script: LuaScript::new(checks::CAN),
            fence_script: LuaScript::new(scripts::FENCE),
            delete_script: LuaScript::new(scripts::DELETE),
            counts_script: LuaScript::new(scripts::COUNTS),
            age_script: LuaScript::new(scripts::AGE),
            instance: format!("{}-{}", crate::hub::new_run(), std::process::id()),
            elsewhere: Mutex::default(),
            last_script: LuaScript::new(scripts::LAST),
            publish_script: LuaScript::new(scripts::PUBLISH),
            reconnects: AtomicU64::new(0),
            resets: AtomicU64::new(0),
        });
        let follower = Arc::clone(&shared);
        shared
            .crew
            .spawn("ssed-redis", move || follower.follow_feed())?;
        Ok(Redis {
            shared,
            unknown: Mutex::default(),
        })
    }

    /// Reads a `Last-Event-ID`. Unlike a hub of its own, a mirror may see
    /// an id of its run that it has not reached yet: given out moments ago
    /// through another instance, or its link is behind or stalled. The
    /// client has everything up to it: it resumes after it (the replay
    /// from Redis, and the live events past it), never before it. Unless
    /// Redis's count is below it: then the history went back without an
    /// instance there to see it (all restarted with Redis), the id names
    /// an event Redis lost, and ids go on under a new run; the client is
    /// told of the gap. (Redis is asked only for an id ahead of this
    /// mirror, and not while the link is down.)
    fn resume(&self, last_event_id: Option<&str>) -> Resume {
        let s = &self.shared;
        match s.hub.resume(last_event_id) {
            Resume::Foreign(id) => match s.hub.seq_of(&id) {
                Some(seq) if s.down().is_none() && s.lost(seq) => Resume::Foreign(id),
                Some(seq) => Resume::After(seq),
                None => Resume::Foreign(id),
            },
            other => other,
        }
    }

    /// Every topic in Redis: (name, retained events, newest number).
    fn topics_in_redis(&self) -> Result<Vec<(String, usize, Option<u64>)>, LinkError> {
        let s = &self.shared;
        let names = self.topic_names()?;
        let mut commands = Vec::new();
        for name in &names {
            let key = stream_key(name).into_bytes();
            commands.push(vec![b"XLEN".to_vec(), key.clone()]);
            commands.push(vec![
                b"XREVRANGE".to_vec(),
                key,
                b"+".to_vec(),
                b"-".to_vec(),
                b"COUNT".to_vec(),
                b"1".to_vec(),
            ]);
        }
        let limits = s.replay_limits();
        let replies = s.pool.with(s, |c| c.pipeline(&commands, &limits))?;
        Ok(names
            .into_iter()
            .zip(replies.chunks(2))
            .map(|(name, pair)| {
                let retained = pair[0].int().unwrap_or(0).max(0) as usize;
                let newest = pair[1]
                    .items()
                    .and_then(|items| items.first())
                    .and_then(|e| e.items()?.first()?.text().and_then(parse_id));
                (name, retained, newest)
            })
            .collect())
    }

    /// The names of every topic in Redis, sorted; at most `--max-topics`
    /// read, and only valid names kept.
    fn topic_names(&self) -> Result<Vec<String>, LinkError> {
        let s = &self.shared;
        if let Some(why) = s.down() {
            return Err(LinkError::Setup(why));
        }
        let limits = Limits {
            bulk: crate::hub::MAX_TOPIC_LEN,
            items: s.settings.max_topics.max(1),
            depth: 1,
            total: s.settings.max_topics.max(1) * 256,
        };
        let names = s
            .pool
            .with(s, |c| c.call(&[b"SMEMBERS", TOPICS.as_bytes()], &limits))?;
        let mut names: Vec<String> = names
            .items()
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n.text().map(String::from))
            .filter(|n| crate::hub::check_topic(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Stops the feed thread and closes every connection.
    fn stop_link(&self) {
        let s = &self.shared;
        s.crew.begin_stop();
        s.bell.ring();
        if let Some(sock) = lock(&s.feed_socket).take() {
            let _ = sock.shutdown(Shutdown::Both);
        }
        s.crew.join();
        lock(&s.pool.idle).clear();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop_link();
    }
}

impl Shared {
    pub(super) fn stopping(&self) -> bool {
        self.crew.stopping()
    }

    /// Why the link is down, if it is.
    pub(super) fn down(&self) -> Option<String> {
        let link = lock(&self.link);
        // Callers put the target in front: `redis redis://...: down: why`.
        (!link.up).then(|| format!("down: {}", link.why))
    }

    pub(super) fn replay_limits(&self) -> Limits {
        let event = self.settings.max_event_bytes.max(1024);
        Limits {
            bulk: event,
            items: self.settings.history.max(self.settings.max_topics).max(16) * 2,
            depth: 4,
            total: self.settings.history_bytes.max(event) * 2 + self.settings.history * 512 + 65536,
        }
    }

    pub(super) fn mark_up(&self, run: &str, seq: u64) {
        let mut link = lock(&self.link);
        if !link.up {
            log::line(&format!(
                "redis {}: linked (run {run}, at event {seq})",
                self.target
            ));
        }
        link.up = true;
        link.since = Instant::now();
        link.why.clear();
    }

    /// Redis refuses to store for want of memory (`why`), or stores again
    /// (`None`): said in the log when it changes, and by `/healthz`.
    pub(super) fn mark_full(&self, why: Option<String>) {
        let mut link = lock(&self.link);
        if link.full.is_some() != why.is_some() {
            match &why {
                Some(why) => log::line(&format!(
                    "redis {}: {why}; publishes are refused with 503 until it has room (raise maxmemory, or lower --history-total)",
                    self.target
                )),
                None => log::line(&format!("redis {}: has room again", self.target)),
            }
        }
        link.full = why;
    }

    pub(super) fn mark_down(&self, why: String) {
        let mut link = lock(&self.link);
        // Said when the link goes down, and when the reason changes.
        if link.up || link.why != why {
            log::line(&format!("redis {}: {why}; retrying", self.target));
        }
        if link.up {
            link.since = Instant::now();
        }
        link.up = false;
        link.why = why;
    }

    /// Whether number `seq` of this run is past Redis's count: an event
    /// Redis lost. If so, the run is renewed at once (no id of it may be
    /// given again) and the feed joins again, which resets the mirror.
    fn lost(&self, seq: u64) -> bool {
        let run = self.hub.run_token();
        let count = self.pool.with(self, |c| {
            c.call(&[b"GET", SEQ.as_bytes()], &conn::small_reply())
        });
        let count = match count {
            Ok(reply) => reply
                .text()
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0),
            Err(_) => return false,
        };
        if seq <= count {
            return false;
        }
        match self.pool.with(self, |c| self.renew(c, &run).map_err(LinkError::Setup)) {
            Ok((now, _)) => log::line(&format!(
                "redis {}: a client resumed from event {seq} of run {run}, and Redis counts {count}: its history went back; ids go on under a new run ({now}) so that none names two events",
                self.target
            )),
            Err(e) => log::line(&format!(
                "redis {}: a client resumed from event {seq} of run {run}, and Redis counts {count}; renewing the run failed: {e}",
                self.target
            )),
        }
        self.restart_feed("a client resumed from past Redis's event count; joining again");
        true
    }

    /// The other instances' subscribers of `topic`, as last counted.
    pub(super) fn elsewhere(&self, topic: &str) -> usize {
        lock(&self.elsewhere).get(topic).copied().unwrap_or(0)
    }

    /// Has the feed thread join again (and so check the log and the
    /// server); `why` is what the log and `/healthz` say meanwhile.
    pub(super) fn restart_feed(&self, why: &str) {
        *lock(&self.rejoin) = Some(why.to_string());
        if let Some(sock) = lock(&self.feed_socket).as_ref() {
            let _ = sock.shutdown(Shutdown::Both);
        }
    }
}

/// The log in Redis, as the application sees it: the same [`Store`] as
/// the hub alone, with the link's failures told apart (`Down`: not
/// stored; `Unknown`: perhaps stored).
impl Store for Redis {
    fn publish(&self, topic: &str, event: Event, key: Option<&str>) -> Result<Stored, StoreError> {
        // Ssed's own retries need a key too.
        let key = key.map_or_else(idempotency::draw, String::from);
        // The event comes back through the feed, to every instance.
        let (id, subscribers) = self.publish_event(topic, &event, &key)?;
        Ok(Stored { id, subscribers })
    }

    /// Live from the local watermark; what is owed up to it, from Redis.
    /// While Redis is away or stalled, a gap says the replay could not be
    /// had; live events up to a resumed id are skipped either way.
    fn subscribe(
        &self,
        names: &[String],
        patterns: &[Pattern],
        notify: &Arc<dyn Notify>,
        start: &Start,
    ) -> Result<Subscribed, StoreError> {
        let hub = &self.shared.hub;
        let resume = start.resume(|id| self.resume(id));
        // Live first: from here on, a topic a pattern matches is made here
        // as its first event comes, and its watch subscribed.
        let live = hub.subscribe_live_matching(names, patterns, notify)?;
        let mut all: Vec<String> = names.iter().chain(&live.matching).cloned().collect();
        let mut unlisted = Vec::new();
        if let Some(watch) = &live.watch {
            // Then the topics Redis has that match and are not here: made
            // here (their watch subscribes), and replayed with the others.
            match self.topic_names() {
                Ok(listed) => {
                    let more: Vec<String> = listed
                        .into_iter()
                        .filter(|n| watch.matches(n) && !all.contains(n))
                        .collect();
                    hub.make_watched(watch, &more);
                    all.extend(more);
                }
                Err(_) if !matches!(resume, Resume::Live) => {
                    unlisted = patterns.iter().map(|p| p.to_string()).collect()
                }
                Err(_) => {}
            }
        }
        let (mut gaps, replay) = self
            .replay(&all, &resume, live.upto)
            .unwrap_or_else(|_| (unreplayed(&all), None));
        gaps.extend(unreplayed(&unlisted));
        let mut subscribed = Subscribed::new(Arc::clone(hub), live.subs, gaps, start.quoted());
        subscribed.watch = live.watch;
        if let Resume::After(seq) = resume {
            subscribed.skip_through = seq;
        }
        subscribed.backlog = replay.map(|r| Box::new(r) as Box<dyn crate::hub::Backlog>);
        Ok(subscribed)
    }

    fn topics(&self) -> Result<Vec<TopicState>, StoreError> {
        let hub = &self.shared.hub;
        let topics = self
            .topics_in_redis()
            .map_err(|why| StoreError::Down(format!("redis {}: {why}", self.shared.target)))?;
        let mut listed: Vec<TopicState> = topics
            .into_iter()
            .map(|(name, retained, newest)| TopicState {
                subscribers: hub.subscribers(&name) + self.shared.elsewhere(&name),
                retained,
                last_id: newest.map(|seq| hub.id(seq)),
                name,
            })
            .collect();
        // Topics read somewhere that have had no event yet are topics too,
        // as they are without Redis.
        let mut watched: Vec<String> = hub
            .topics()
            .iter()
            .filter(|t| t.subscribers() > 0)
            .map(|t| t.name().to_string())
            .chain(lock(&self.shared.elsewhere).keys().cloned())
            .collect();
        watched.sort();
        watched.dedup();
        for name in watched {
            if listed.iter().all(|t| t.name != name) {
                listed.push(TopicState {
                    subscribers: hub.subscribers(&name) + self.shared.elsewhere(&name),
                    retained: 0,
                    last_id: None,
                    name,
                });
            }
        }
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listed)
    }

    fn link(&self) -> Option<Link> {
        let s = &self.shared;
        let link = lock(&s.link);
        Some(Link {
            backend: "redis",
            header: "Redis-Link",
            name: format!("redis {}", s.target),
            rtt: link.up.then_some(link.rtt).flatten(),
            down: (!link.up).then(|| (link.since.elapsed(), link.why.clone())),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            resets: s.resets.load(Ordering::Relaxed),
            refusing: link.up.then(|| link.full.clone()).flatten(),
        })
    }

    fn delete(&self, topic: &str) -> Result<bool, StoreError> {
        self.delete_topic(topic)
    }

    fn subscribers_elsewhere(&self) -> Option<std::collections::HashMap<String, usize>> {
        Some(lock(&self.shared.elsewhere).clone())
    }

    /// A topic nobody here watches is forgotten, whatever it holds: Redis
    /// keeps its events.
    fn release(&self, names: &[String]) {
        self.shared.hub.forget(names);
    }

    fn stop(&self) {
        self.stop_link();
    }
}
