//! The hub shared by several instances, through Redis (or Valkey).
//!
//! With `--redis`, the hub's log of events lives in Redis; each instance's
//! [`Hub`] becomes a mirror of it, and everything above the hub
//! (subscriptions, the live fan-out, gaps, slow clients, the writing of
//! streams) is the same code as without Redis. The seam is the log:
//!
//! - **Publish**: one script ([`PUBLISH`]) takes the next number of the
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

mod resp;

pub use resp::{Limits, Reply};
pub use crate::config::RedisTarget as Target;

use crate::fanout::Fanouts;
use crate::hub::{check_topic, new_run, Gap, Hub, Notify, Resume};
use crate::idempotency;
use crate::log;
use crate::sse::Event;
use crate::store::{self, From, Store, StoreError, Stored, TopicState};
use crate::stream::{Backlog, Feed};
use crate::sync::{lock, Doorbell};
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
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

const RUN: &str = "ssed:run";
const SEQ: &str = "ssed:seq";
const FEED: &str = "ssed:all";
const TOPICS: &str = "ssed:topics";
const BYTES: &str = "ssed:bytes";
const CUT: &str = "ssed:cut";
const COST: &str = "ssed:cost";
const TOTAL: &str = "ssed:total";
/// Each topic's stream is this and its name.
const TOPIC_PREFIX: &str = "ssed:t:";
/// Each publish's idempotency key is this and the key: it holds the
/// number the publish was given, for `--idempotency-ttl`.
const IDEM_PREFIX: &str = "ssed:idem:";

fn stream_key(topic: &str) -> String {
    format!("{TOPIC_PREFIX}{topic}")
}

/// Makes the run if Redis has none, and says where the log is:
/// `{run, last number}`.
const JOIN: &str = r"
local run = redis.call('get', KEYS[1])
if not run then
  run = ARGV[1]
  redis.call('set', KEYS[1], run)
end
return {run, tonumber(redis.call('get', KEYS[2]) or '0')}
";

/// Where the newest ARGV[2] events up to number ARGV[1] of the topics
/// KEYS start: the number just before them (0: there are no more than
/// that). Only a number comes back, whatever the events hold. (The one
/// before the newest n is among some topic's newest n + 1.)
const LAST: &str = r"
local upto = ARGV[1] .. '-0'
local n = tonumber(ARGV[2])
local seqs = {}
for _, key in ipairs(KEYS) do
  for _, entry in ipairs(redis.call('xrevrange', key, upto, '-', 'COUNT', n + 1)) do
    table.insert(seqs, tonumber(string.match(entry[1], '^(%d+)')))
  end
end
if #seqs <= n then
  return 0
end
table.sort(seqs, function(a, b) return a > b end)
return seqs[n + 1]
";

/// Appends one event; returns its number. Refuses before taking a number,
/// so that numbers have no holes. Then trims: the topic to its history
/// (events and data), and all topics together to the total budget, the
/// largest topic first, as the hub in memory does (`Hub::enforce_budget`).
/// An event's cost is counted as there: its data, id, name and topic, and
/// 128 bytes. `ssed:cost` is a sorted set of each topic's cost, so that
/// the largest is found at once.
/// A publish carries an idempotency key (the client's `Idempotency-Key`, or
/// one ssed draws): a key already stored answers with its number, and
/// nothing is appended, so that a retry (ssed's after a lost reply, or the
/// client's) stores the event once.
/// KEYS: run, seq, topic stream, feed, topics, bytes, cut, cost, total,
/// idempotency key.
/// ARGV: run, topic, name, data, history, history bytes, max topics, feed
/// length, history total, the prefix of topic streams, the key's lifetime
/// in seconds, the publish's fingerprint (`idempotency::fingerprint`, in
/// hex): the key holds `NUMBER:FINGERPRINT`, and the same key with another
/// fingerprint is refused (`SSEDREUSED`).
/// (Each error reply is a code and a message: Redis makes one without a
/// message `ERR CODE`.)
/// (The budget trims topics other than KEYS[3], whose keys it makes from
/// the prefix: fine on one Redis, not meant for Redis Cluster.)
const PUBLISH: &str = r"
if redis.call('get', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('SSEDRUN the shared hub was reset')
end
local done = redis.call('get', KEYS[10])
if done then
  local seq, fingerprint = string.match(done, '^(%d+):?(%x*)$')
  if not seq then
    return redis.error_reply('SSEDKEY the idempotency key holds ' .. string.sub(done, 1, 40))
  end
  if fingerprint ~= '' and fingerprint ~= ARGV[12] then
    return redis.error_reply('SSEDREUSED the key was used for another publish')
  end
  return {tonumber(seq), 0, 1}
end
if redis.call('sismember', KEYS[5], ARGV[2]) == 0 then
  if redis.call('scard', KEYS[5]) >= tonumber(ARGV[7]) then
    return redis.error_reply('SSEDTOPICS there are too many topics')
  end
  redis.call('sadd', KEYS[5], ARGV[2])
end
local seq = redis.call('incr', KEYS[2])
local id = seq .. '-0'
redis.call('xadd', KEYS[3], id, 'e', ARGV[3], 'd', ARGV[4])
redis.call('xadd', KEYS[4], 'MAXLEN', '~', ARGV[8], id, 't', ARGV[2], 'e', ARGV[3], 'd', ARGV[4])
local run_len = #ARGV[1] + 1
local function cost(topic, entry_id, fields)
  return #fields[4] + #fields[2] + #topic + run_len + #entry_id - 2 + 128
end
-- Drops the oldest event of a topic; returns what it cost and the data
-- the topic keeps after it, or nil.
local function drop_oldest(topic, key)
  local oldest = redis.call('xrange', key, '-', '+', 'COUNT', 1)[1]
  if not oldest then
    return nil
  end
  redis.call('xdel', key, oldest[1])
  local left = redis.call('hincrby', KEYS[6], topic, -#oldest[2][4])
  redis.call('hset', KEYS[7], topic, oldest[1])
  local c = cost(topic, oldest[1], oldest[2])
  redis.call('zincrby', KEYS[8], -c, topic)
  redis.call('incrby', KEYS[9], -c)
  return c, left
end
local added = cost(ARGV[2], id, {'e', ARGV[3], 'd', ARGV[4]})
redis.call('zincrby', KEYS[8], added, ARGV[2])
local total = redis.call('incrby', KEYS[9], added)
local bytes = redis.call('hincrby', KEYS[6], ARGV[2], #ARGV[4])
local len = redis.call('xlen', KEYS[3])
local history = tonumber(ARGV[5])
local max_bytes = tonumber(ARGV[6])
while len > 0 and (len > history or (bytes > max_bytes and len > 1)) do
  local c, left = drop_oldest(ARGV[2], KEYS[3])
  if not c then break end
  total = total - c
  bytes = left
  len = len - 1
end
local budget = tonumber(ARGV[9])
local trimmed = 0
while total > budget do
  local top = redis.call('zrevrange', KEYS[8], 0, 1, 'WITHSCORES')
  if #top == 0 then break end
  local topic = top[1]
  local mine = tonumber(top[2])
  local second = tonumber(top[4] or '0')
  local dropped = 0
  while total > budget and (dropped == 0 or mine >= second) do
    local c = drop_oldest(topic, ARGV[10] .. topic)
    if not c then break end
    total = total - c
    mine = mine - c
    dropped = dropped + 1
  end
  if dropped == 0 then
    -- Nothing left to drop there: forget its cost, so the next is tried.
    redis.call('zrem', KEYS[8], topic)
  end
  trimmed = trimmed + dropped
end
redis.call('set', KEYS[10], seq .. ':' .. ARGV[12], 'EX', ARGV[11])
return {seq, trimmed, 0}
";

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
}

/// An error met after a command was sent whole: Redis may have run it.
#[derive(Debug)]
struct AfterSending(io::Error);

impl std::fmt::Display for AfterSending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for AfterSending {}

/// Whether `e` came after the command was sent whole.
fn after_sending(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<AfterSending>())
}

/// The link to Redis as `/healthz` and `/metrics` show it.
#[derive(Clone, Debug)]
pub enum Health {
    Up { rtt: Option<Duration> },
    Down { why: String, for_: Duration },
}

/// The shared hub: the link, its threads and connections.
pub struct Redis {
    shared: Arc<Shared>,
    feed: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    target: Target,
    settings: Settings,
    hub: Arc<Hub>,
    fanouts: Arc<Fanouts>,
    pool: Pool,
    link: Mutex<Link>,
    stopping: AtomicBool,
    /// Cuts the feed thread's pauses short.
    waker: Doorbell,
    /// The feed connection, to shut down under its blocking read.
    feed_socket: Mutex<Option<TcpStream>>,
    join_script: Script,
    publish_script: Script,
    last_script: Script,
    reconnects: AtomicU64,
    resets: AtomicU64,
}

struct Link {
    up: bool,
    since: Instant,
    why: String,
    rtt: Option<Duration>,
}

impl Redis {
    /// Starts following the shared hub; returns at once. The link comes up
    /// in the background and is retried for as long as Redis is away.
    pub fn start(
        target: Target,
        settings: Settings,
        hub: Arc<Hub>,
        fanouts: Arc<Fanouts>,
    ) -> io::Result<Redis> {
        let shared = Arc::new(Shared {
            target,
            settings,
            hub,
            fanouts,
            pool: Pool::new(POOL),
            link: Mutex::new(Link {
                up: false,
                since: Instant::now(),
                why: "connecting".into(),
                rtt: None,
            }),
            stopping: AtomicBool::new(false),
            waker: Doorbell::default(),
            feed_socket: Mutex::default(),
            join_script: Script::new(JOIN),
            last_script: Script::new(LAST),
            publish_script: Script::new(PUBLISH),
            reconnects: AtomicU64::new(0),
            resets: AtomicU64::new(0),
        });
        let feed = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("ssed-redis".into())
                .spawn(move || shared.follow_feed())?
        };
        Ok(Redis {
            shared,
            feed: Mutex::new(Some(feed)),
        })
    }

    /// The URL, password hidden.
    pub fn target(&self) -> &Target {
        &self.shared.target
    }

    /// Stores `event` in `topic` and returns its id and how many local
    /// subscribers the topic has. Its subscribers, here and on every other
    /// instance, get it from the feed.
    /// `key` is the publish's idempotency key (the client's, else one
    /// drawn for it): whatever the retries, the event is stored once.
    pub fn publish(
        &self,
        topic: &str,
        event: &Event,
        key: &str,
    ) -> Result<(String, usize), StoreError> {
        let s = &self.shared;
        check_topic(topic).map_err(StoreError::BadTopic)?;
        let named = |why: String| format!("redis {}: {why}", s.target);
        let unknown = |why: String| StoreError::Unknown {
            why: named(why),
            key: key.to_string(),
        };
        if let Some(why) = s.down() {
            return Err(StoreError::Down(named(format!("down: {why}"))));
        }
        let run = s.hub.run();
        let (history, bytes, max_topics, feed, total) = (
            s.settings.history.to_string(),
            s.settings.history_bytes.to_string(),
            s.settings.max_topics.to_string(),
            FEED_LENGTH.to_string(),
            s.settings.history_total.to_string(),
        );
        let stream = stream_key(topic);
        let idem = format!("{IDEM_PREFIX}{key}");
        let ttl = s.settings.idempotency_ttl.as_secs().max(1).to_string();
        let fingerprint = format!(
            "{:016x}",
            idempotency::fingerprint(topic, event.event.as_deref(), &event.data)
        );
        let keys: [&[u8]; 10] = [
            RUN.as_bytes(),
            SEQ.as_bytes(),
            stream.as_bytes(),
            FEED.as_bytes(),
            TOPICS.as_bytes(),
            BYTES.as_bytes(),
            CUT.as_bytes(),
            COST.as_bytes(),
            TOTAL.as_bytes(),
            idem.as_bytes(),
        ];
        let args: [&[u8]; 12] = [
            run.as_bytes(),
            topic.as_bytes(),
            event.event.as_deref().unwrap_or("").as_bytes(),
            event.data.as_bytes(),
            history.as_bytes(),
            bytes.as_bytes(),
            max_topics.as_bytes(),
            feed.as_bytes(),
            total.as_bytes(),
            TOPIC_PREFIX.as_bytes(),
            ttl.as_bytes(),
            fingerprint.as_bytes(),
        ];
        let limits = small_reply();
        let attempt = || {
            s.pool
                .with_error(s, |c| c.eval(&s.publish_script, &keys, &args, &limits))
        };
        // A reply lost after the script ran is not a second event: the
        // retry carries the same key, and Redis answers with the first
        // number. Only a publish whose outcome is still unknown after that
        // is answered so.
        let reply = match attempt() {
            Ok(reply) => reply,
            Err(e) if after_sending(&e) => {
                log::line(&format!(
                    "redis {}: no answer to a publish ({e}); asking again with its idempotency key",
                    s.target
                ));
                match attempt() {
                    Ok(reply) => reply,
                    Err(e2) if after_sending(&e2) => {
                        return Err(unknown(format!(
                            "no answer after the publish was sent ({e2}); the outcome is unknown"
                        )))
                    }
                    Err(e2) => {
                        return Err(unknown(format!(
                            "no answer after the publish was sent ({e}), then {e2}; the outcome is unknown"
                        )))
                    }
                }
            }
            Err(e) => return Err(StoreError::Down(named(format!("not reached: {e}")))),
        };
        let stored = match reply.items() {
            Some([Reply::Int(seq), Reply::Int(trimmed), ..]) => Some((*seq, *trimmed)),
            _ => None,
        };
        if let Some((seq, trimmed)) = stored {
            s.hub
                .counters
                .trimmed
                .fetch_add(u64::try_from(trimmed).unwrap_or(0), Ordering::Relaxed);
            return Ok((
                crate::hub::format_id(&run, seq.max(0) as u64),
                s.hub.subscribers(topic),
            ));
        }
        match reply {
            Reply::Error(e) if e.starts_with("SSEDTOPICS") => {
                Err(StoreError::TooManyTopics(s.settings.max_topics))
            }
            Reply::Error(e) if e.starts_with("SSEDREUSED") => Err(StoreError::KeyReused),
            Reply::Error(e) if e.starts_with("SSEDRUN") => {
                // Redis lost its data under a live feed: have the feed
                // connect again, which resets the mirror.
                s.restart_feed();
                Err(StoreError::LostData(named(
                    "it lost the shared hub's data; it is being set up again".into(),
                )))
            }
            Reply::Error(e) => Err(StoreError::Down(named(format!("refused: {e}")))),
            other => Err(unknown(format!("an unexpected reply: {other:?}"))),
        }
    }

    /// Reads a `Last-Event-ID`. Unlike a hub of its own, a mirror may see
    /// an id of its run that it has not reached yet: given out moments ago
    /// through another instance, or its link is behind or stalled. The
    /// client has everything up to it: it resumes after it (the replay
    /// from Redis, and the live events past it), never before it, and
    /// without asking Redis first (which a stalled link would make wait).
    pub fn resume(&self, last_event_id: Option<&str>) -> Resume {
        let s = &self.shared;
        match s.hub.resume(last_event_id) {
            Resume::Foreign(id) => match s.hub.seq_of(&id) {
                Some(seq) => Resume::After(seq),
                None => Resume::Foreign(id),
            },
            other => other,
        }
    }

    /// What a subscriber to `topics` resuming from `from` is owed up to
    /// `upto` (the local watermark when it was registered live): the gaps,
    /// and the events, to be read a page at a time ([`Replay`]). Only the
    /// run and each topic's cut are read here.
    pub fn replay(
        &self,
        topics: &[String],
        from: &Resume,
        upto: u64,
    ) -> Result<(Vec<Gap>, Option<Replay>), String> {
        let s = &self.shared;
        let after = match from {
            Resume::Live => return Ok((Vec::new(), None)),
            Resume::After(seq) => *seq,
            Resume::Foreign(_) | Resume::Last(_) => 0,
        };
        if let Some(why) = s.down() {
            return Err(why);
        }
        // The run first: a log that is not the one this mirror follows
        // (flushed, not noticed yet) must not be read under its ids.
        let mut commands: Vec<Vec<Vec<u8>>> = vec![vec![b"GET".to_vec(), RUN.as_bytes().to_vec()]];
        for topic in topics {
            commands.push(vec![
                b"HGET".to_vec(),
                CUT.as_bytes().to_vec(),
                topic.clone().into_bytes(),
            ]);
        }
        let replies = s.pool.with(s, |c| c.pipeline(&commands, &small_reply()))?;
        let run = s.hub.run();
        let Some((run_now, cuts)) = replies.split_first() else {
            return Err("Redis answered no reply".into());
        };
        if run_now.text() != Some(run.as_str()) {
            s.restart_feed();
            return Err("the shared hub's data changed; it is being followed again".into());
        }
        let mut gaps = Vec::new();
        for (topic, cut) in topics.iter().zip(cuts) {
            let cut = cut.text().and_then(parse_id);
            let lost = match from {
                Resume::After(seq) => cut.is_some_and(|c| c > *seq),
                Resume::Foreign(_) => true,
                _ => false,
            };
            if lost {
                gaps.push(Gap {
                    topic: topic.clone(),
                    missed: None,
                    through: cut,
                });
            }
        }
        // The newest n across the topics start after the (n+1)th newest.
        let after = match from {
            Resume::Last(n) => {
                let keys: Vec<String> = topics.iter().map(|t| stream_key(t)).collect();
                let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
                let (upto_arg, n_arg) = (upto.to_string(), n.max(&1).to_string());
                let args: [&[u8]; 2] = [upto_arg.as_bytes(), n_arg.as_bytes()];
                let reply = s
                    .pool
                    .with(s, |c| c.eval(&s.last_script, &keys, &args, &small_reply()))?;
                match reply {
                    Reply::Int(seq) => u64::try_from(seq).unwrap_or(0),
                    other => return Err(format!("Redis answered {other:?} for the newest events")),
                }
            }
            _ => after,
        };
        let replay = Replay {
            shared: Arc::clone(s),
            topics: topics.to_vec(),
            next: vec![Some(after); topics.len()],
            upto,
            run,
            only: match from {
                Resume::Last(n) => Some(*n),
                _ => None,
            },
        };
        Ok((gaps, Some(replay)))
    }

    /// Every topic in Redis: (name, retained events, newest number).
    pub fn topics(&self) -> Result<Vec<(String, usize, Option<u64>)>, String> {
        let s = &self.shared;
        if let Some(why) = s.down() {
            return Err(why);
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
            .collect();
        names.sort();
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

    /// The link now.
    pub fn health(&self) -> Health {
        let link = lock(&self.shared.link);
        if link.up {
            Health::Up { rtt: link.rtt }
        } else {
            Health::Down {
                why: link.why.clone(),
                for_: link.since.elapsed(),
            }
        }
    }

    /// Times the link came back after it was lost.
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// Times this instance reset its mirror (Redis lost its data, or the
    /// feed moved past what this instance had).
    pub fn resets(&self) -> u64 {
        self.shared.resets.load(Ordering::Relaxed)
    }

    /// Stops the feed thread and closes every connection.
    pub fn stop(&self) {
        let s = &self.shared;
        s.stopping.store(true, Ordering::SeqCst);
        s.waker.ring();
        if let Some(sock) = lock(&s.feed_socket).take() {
            let _ = sock.shutdown(Shutdown::Both);
        }
        if let Some(feed) = lock(&self.feed).take() {
            let _ = feed.join();
        }
        lock(&s.pool.idle).clear();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Limits for a reply of a few short values.
fn small_reply() -> Limits {
    Limits {
        bulk: 1024,
        items: 8,
        depth: 2,
        total: 8192,
    }
}

/// `12-0` (a stream id ssed wrote) as 12.
fn parse_id(id: &str) -> Option<u64> {
    id.strip_suffix("-0")?.parse().ok()
}

/// A stream entry `[id, [field, value, ...]]` as ssed wrote it: its number
/// and its event; with `topic_field`, also the topic (`t`) it names.
fn parse_entry(entry: &Reply, topic: Option<&mut String>) -> Option<(u64, Event)> {
    let [id, fields] = entry.items()? else {
        return None;
    };
    let seq = parse_id(id.text()?)?;
    let mut event = Event::default();
    let mut topic = topic;
    for pair in fields.items()?.chunks(2) {
        let [name, value] = pair else {
            return None;
        };
        let value = String::from_utf8(value.bytes()?.to_vec()).ok()?;
        match name.bytes()? {
            b"e" => event.event = (!value.is_empty()).then_some(value),
            b"d" => event.data = value,
            b"t" => {
                if let Some(t) = topic.as_deref_mut() {
                    *t = value;
                }
            }
            _ => {}
        }
    }
    Some((seq, event))
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Why the link is down, if it is.
    fn down(&self) -> Option<String> {
        let link = lock(&self.link);
        (!link.up).then(|| format!("Redis ({}) is unreachable: {}", self.target, link.why))
    }

    fn replay_limits(&self) -> Limits {
        let event = self.settings.max_event_bytes.max(1024);
        Limits {
            bulk: event,
            items: self.settings.history.max(self.settings.max_topics).max(16) * 2,
            depth: 4,
            total: self.settings.history_bytes.max(event) * 2 + self.settings.history * 512 + 65536,
        }
    }

    fn mark_up(&self, run: &str, seq: u64) {
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

    fn mark_down(&self, why: String) {
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

    /// Has the feed thread connect again (and so check the run).
    fn restart_feed(&self) {
        if let Some(sock) = lock(&self.feed_socket).as_ref() {
            let _ = sock.shutdown(Shutdown::Both);
        }
    }

    /// The feed thread: connects, joins the log, follows it; again after
    /// any failure, with back-off.
    fn follow_feed(&self) {
        let mut backoff = FIRST_BACKOFF;
        // The number of the last event this instance has (None: never
        // linked yet).
        let mut pos: Option<u64> = None;
        let mut was_up = false;
        while !self.stopping() {
            let mut conn = match Conn::open(&self.target, self.settings.timeout) {
                Ok(conn) => conn,
                Err(why) => {
                    self.mark_down(why);
                    self.waker.wait(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            *lock(&self.feed_socket) = conn.stream.try_clone().ok();
            if self.stopping() {
                break;
            }
            let (run, seq) = match self.join(&mut conn, &mut pos) {
                Ok(joined) => joined,
                Err(why) => {
                    self.mark_down(why);
                    self.waker.wait(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            if was_up {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            was_up = true;
            backoff = FIRST_BACKOFF;
            self.mark_up(&run, seq);
            let why = self.follow(&mut conn, &mut pos, &run);
            if self.stopping() {
                break;
            }
            self.mark_down(why);
        }
    }

    /// Joins the log: learns its run and where it is, and decides whether
    /// this instance carries on from `pos` or resets its mirror.
    fn join(&self, conn: &mut Conn, pos: &mut Option<u64>) -> Result<(String, u64), String> {
        let fresh = new_run();
        let reply = conn
            .eval(
                &self.join_script,
                &[RUN.as_bytes(), SEQ.as_bytes()],
                &[fresh.as_bytes()],
                &small_reply(),
            )
            .map_err(|e| e.to_string())?;
        let (run, seq) = match reply.items() {
            Some([run, seq]) => match (run.text(), seq.int()) {
                (Some(run), Some(seq)) if seq >= 0 => (run.to_string(), seq as u64),
                _ => return Err(format!("an unexpected answer to the join: {reply:?}")),
            },
            _ => return Err(format!("Redis refused the join: {reply:?}")),
        };
        let reset = match *pos {
            // The first link: the mirror starts from the log's end (what
            // came before is replayed from Redis).
            None => false,
            Some(_) if run != self.hub.run() => {
                log::line(&format!(
                    "redis {}: the shared hub's data is not what this instance followed (run {run}, was {}): Redis lost it; hub streams here end and clients resume from Redis",
                    self.target,
                    self.hub.run()
                ));
                true
            }
            Some(p) if seq < p => {
                log::line(&format!(
                    "redis {}: the event count went back from {p} to {seq}; hub streams here end and clients resume from Redis",
                    self.target
                ));
                true
            }
            Some(p) if seq > p => {
                // Were the events after p trimmed from the feed meanwhile?
                let oldest = conn
                    .call(
                        &[b"XRANGE", FEED.as_bytes(), b"-", b"+", b"COUNT", b"1"],
                        &self.replay_limits(),
                    )
                    .map_err(|e| e.to_string())?;
                let oldest = oldest
                    .items()
                    .and_then(|i| i.first())
                    .and_then(|e| e.items()?.first()?.text().and_then(parse_id));
                let missed = oldest.is_none_or(|o| o > p + 1);
                if missed {
                    log::line(&format!(
                        "redis {}: events {}..{seq} left the feed while this instance was away; hub streams here end and clients resume from Redis",
                        self.target,
                        p + 1
                    ));
                }
                missed
            }
            Some(_) => false,
        };
        match *pos {
            Some(p) if !reset => {
                // Same log: carry on after p.
                self.hub.rejoin(&run, p, false);
            }
            _ => {
                if reset {
                    self.resets.fetch_add(1, Ordering::Relaxed);
                }
                self.hub.rejoin(&run, seq, reset);
                *pos = Some(seq);
            }
        }
        Ok((run, seq))
    }

    /// Follows the feed until the link fails or ssed stops; returns why.
    fn follow(&self, conn: &mut Conn, pos: &mut Option<u64>, run: &str) -> String {
        let count = (8 << 20) / (self.settings.max_event_bytes + 512);
        let count = count.clamp(16, 1000);
        let limits = Limits {
            bulk: self.settings.max_event_bytes.max(1024),
            items: count.max(8),
            depth: 5,
            total: count * (self.settings.max_event_bytes + 512) + 65536,
        };
        let count = count.to_string();
        let block = BLOCK.as_millis().to_string();
        let _ = conn
            .stream
            .set_read_timeout(Some(self.settings.timeout + BLOCK));
        let mut pinged = Instant::now() - PING_EVERY;
        let mut run_checked = Instant::now();
        while !self.stopping() {
            // An instance that does not publish learns of a FLUSHALL (or
            // of another Redis in its place) only by looking.
            if run_checked.elapsed() >= RUN_CHECK_EVERY {
                match conn.call(&[b"GET", RUN.as_bytes()], &small_reply()) {
                    Ok(reply) if reply.text() == Some(run) => {}
                    Ok(reply) => {
                        let now = reply
                            .text()
                            .map_or_else(|| "no run".to_string(), |r| format!("run {r}"));
                        log::line(&format!(
                            "redis {}: the shared hub's data changed under this instance ({now}, was run {run}): Redis lost or replaced it; hub streams here end and clients resume from Redis",
                            self.target
                        ));
                        return "the shared hub's data changed under this instance".into();
                    }
                    Err(e) => return e.to_string(),
                }
                run_checked = Instant::now();
            }
            if pinged.elapsed() >= PING_EVERY {
                let started = Instant::now();
                match conn.call(&[b"PING"], &small_reply()) {
                    Ok(Reply::Simple(_)) => lock(&self.link).rtt = Some(started.elapsed()),
                    Ok(other) => return format!("an unexpected answer to PING: {other:?}"),
                    Err(e) => return e.to_string(),
                }
                pinged = Instant::now();
            }
            let after = format!("{}-0", pos.unwrap_or(0));
            let reply = conn.call(
                &[
                    b"XREAD",
                    b"COUNT",
                    count.as_bytes(),
                    b"BLOCK",
                    block.as_bytes(),
                    b"STREAMS",
                    FEED.as_bytes(),
                    after.as_bytes(),
                ],
                &limits,
            );
            let reply = match reply {
                Ok(Reply::Error(e)) => return format!("Redis refused to read the feed: {e}"),
                Ok(reply) => reply,
                Err(e) => return e.to_string(),
            };
            // [[feed, [entry, ...]]], or nil when nothing came.
            let entries = reply
                .items()
                .and_then(|streams| streams.first())
                .and_then(|s| s.items()?.get(1))
                .and_then(Reply::items)
                .unwrap_or_default();
            for entry in entries {
                let mut topic = String::new();
                let Some((seq, event)) = parse_entry(entry, Some(&mut topic)) else {
                    return "the feed holds an entry ssed did not write".into();
                };
                let p = pos.unwrap_or(0);
                if seq <= p {
                    continue;
                }
                if seq != p + 1 {
                    // The feed moved on past events this instance never
                    // had: start again from here, readers told.
                    log::line(&format!(
                        "redis {}: events {}..{} left the feed before this instance read them; hub streams here end and clients resume from Redis",
                        self.target,
                        p + 1,
                        seq - 1
                    ));
                    self.resets.fetch_add(1, Ordering::Relaxed);
                    self.hub.rejoin(run, seq - 1, true);
                }
                if let Some(published) = self.hub.insert_remote(&topic, seq, event) {
                    self.fanouts.dispatch(published);
                }
                *pos = Some(seq);
            }
        }
        "stopping".into()
    }
}

/// The events a resume is owed, read from the topics' streams a page at a
/// time by the stream's own thread (see `stream::Backlog`).
pub struct Replay {
    shared: Arc<Shared>,
    topics: Vec<String>,
    /// For each topic, the number after which it is read next; `None` once
    /// it has nothing more up to `upto`.
    next: Vec<Option<u64>>,
    upto: u64,
    /// The run the ids are read under; a page of another run is refused.
    run: String,
    /// `?last=N`: at most this many in all.
    only: Option<usize>,
}

/// What one page of a replay holds at most, in bytes of events: each topic
/// is asked for as many entries as fit, counted at `--max-event-bytes`.
const PAGE_BYTES: usize = 256 << 10;
/// Entries one page asks each topic for at most.
const PAGE_ENTRIES: usize = 256;

impl Replay {
    fn page(&mut self) -> Result<Vec<Arc<Event>>, String> {
        let s = &self.shared;
        let open: Vec<usize> = (0..self.topics.len())
            .filter(|&i| self.next[i].is_some())
            .collect();
        if open.is_empty() || self.only == Some(0) {
            return Ok(Vec::new());
        }
        if let Some(why) = s.down() {
            return Err(why);
        }
        let entry = s.settings.max_event_bytes + 256;
        let count = (PAGE_BYTES / entry / open.len()).clamp(1, PAGE_ENTRIES);
        let end = format!("{}-0", self.upto);
        let mut commands: Vec<Vec<Vec<u8>>> = vec![vec![b"GET".to_vec(), RUN.as_bytes().to_vec()]];
        for &i in &open {
            let after = self.next[i].unwrap_or(0);
            commands.push(vec![
                b"XRANGE".to_vec(),
                stream_key(&self.topics[i]).into_bytes(),
                format!("{}-0", after + 1).into_bytes(),
                end.clone().into_bytes(),
                b"COUNT".to_vec(),
                count.to_string().into_bytes(),
            ]);
        }
        let limits = Limits {
            bulk: s.settings.max_event_bytes.max(1024),
            items: count * 2 + 4,
            depth: 4,
            total: count * entry + 4096,
        };
        let replies = s.pool.with(s, |c| c.pipeline(&commands, &limits))?;
        let Some((run_now, pages)) = replies.split_first() else {
            return Err("Redis answered no reply".into());
        };
        if run_now.text() != Some(self.run.as_str()) {
            s.restart_feed();
            return Err("the shared hub's data changed; it is being followed again".into());
        }
        // Merged by number: the page ends before the first number a full
        // topic may not have sent yet.
        let mut taken: Vec<(u64, usize, Event)> = Vec::new();
        let mut cut = u64::MAX;
        // For each topic read: whether its page was full (more may follow).
        let mut full = Vec::with_capacity(open.len());
        for (&i, page) in open.iter().zip(pages) {
            if let Reply::Error(e) = page {
                return Err(format!("Redis refused a replay: {e}"));
            }
            let entries = page.items().unwrap_or_default();
            for entry in entries {
                let Some((seq, event)) = parse_entry(entry, None) else {
                    return Err("Redis sent a stream entry ssed did not write".into());
                };
                taken.push((seq, i, event));
            }
            let more = entries.len() >= count;
            if more {
                if let Some((seq, _, _)) = taken.last() {
                    cut = cut.min(*seq);
                }
            }
            full.push(more);
        }
        // What is past the cut is read again next time; a topic is done
        // once its page was not full and nothing of it was past the cut.
        let past: Vec<usize> = taken
            .iter()
            .filter(|(seq, _, _)| *seq > cut)
            .map(|(_, i, _)| *i)
            .collect();
        taken.retain(|(seq, _, _)| *seq <= cut);
        taken.sort_by_key(|(seq, _, _)| *seq);
        for (seq, i, _) in &taken {
            if let Some(next) = self.next[*i].as_mut() {
                *next = (*next).max(*seq);
            }
        }
        for (&i, more) in open.iter().zip(full) {
            if !more && !past.contains(&i) {
                self.next[i] = None;
            }
        }
        if let Some(left) = self.only.as_mut() {
            taken.truncate(*left);
            *left -= taken.len();
        }
        s.hub
            .counters
            .replayed
            .fetch_add(taken.len() as u64, Ordering::Relaxed);
        Ok(taken
            .into_iter()
            .map(|(seq, i, mut event)| {
                event.id = Some(crate::hub::format_id(&self.run, seq));
                event.topic = Some(self.topics[i].clone());
                Arc::new(event)
            })
            .collect())
    }
}

impl Backlog for Replay {
    fn next_page(&mut self) -> Result<Vec<Arc<Event>>, Vec<Gap>> {
        self.page().map_err(|_| {
            // What is left cannot be read now: each topic not read to its
            // end is reported, and the next reconnection resumes.
            let left: Vec<String> = (0..self.topics.len())
                .filter(|&i| self.next[i].is_some())
                .map(|i| self.topics[i].clone())
                .collect();
            store::unreplayed(&left)
        })
    }
}

/// A Lua script, loaded once per Redis and run by its SHA.
struct Script {
    text: &'static str,
    sha: Mutex<Option<String>>,
}

impl Script {
    fn new(text: &'static str) -> Script {
        Script {
            text,
            sha: Mutex::default(),
        }
    }
}

/// One connection to Redis.
struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects, authenticates and selects the database; the error is one
    /// line that says what went wrong.
    fn open(target: &Target, timeout: Duration) -> Result<Conn, String> {
        let addrs: Vec<_> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
            .collect();
        let mut last = format!("{} resolves to no address", target.host);
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let stream = stream.ok_or(last)?;
        let setup = |s: &TcpStream| -> io::Result<BufReader<TcpStream>> {
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            s.set_nodelay(true)?;
            Ok(BufReader::with_capacity(16 * 1024, s.try_clone()?))
        };
        let reader = setup(&stream).map_err(|e| e.to_string())?;
        let mut conn = Conn { stream, reader };
        let small = small_reply();
        let not_redis = |e: io::Error| match e.kind() {
            io::ErrorKind::InvalidData => format!("not a Redis server: {e}"),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
                "no answer within {} ms (--redis-timeout): is it a Redis server?",
                timeout.as_millis()
            ),
            _ => e.to_string(),
        };
        if let Some(password) = &target.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &target.user {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            match conn.call(&args, &small).map_err(not_redis)? {
                Reply::Simple(_) => {}
                Reply::Error(e) => return Err(format!("the password was refused: {e}")),
                other => return Err(format!("not a Redis server: it answered {other:?} to AUTH")),
            }
        }
        if target.db != 0 {
            let db = target.db.to_string();
            match conn
                .call(&[b"SELECT", db.as_bytes()], &small)
                .map_err(not_redis)?
            {
                Reply::Simple(_) => {}
                Reply::Error(e) if e.starts_with("NOAUTH") => {
                    return Err(format!(
                        "Redis needs a password (redis://:PASSWORD@host): {e}"
                    ))
                }
                Reply::Error(e) => return Err(format!("database {}: {e}", target.db)),
                other => {
                    return Err(format!(
                        "not a Redis server: it answered {other:?} to SELECT"
                    ))
                }
            }
        }
        match conn.call(&[b"PING"], &small).map_err(not_redis)? {
            Reply::Simple(p) if p == "PONG" => Ok(conn),
            Reply::Error(e) if e.starts_with("NOAUTH") => Err(format!(
                "Redis needs a password (redis://:PASSWORD@host): {e}"
            )),
            Reply::Error(e) => Err(format!("Redis refused PING: {e}")),
            other => Err(format!("not a Redis server: it answered {other:?} to PING")),
        }
    }

    /// Sends one command and reads its reply. An error after the command
    /// went out whole is marked [`AfterSending`]: Redis may have run it.
    /// (One that went out in part is not run: Redis waits for the rest,
    /// and drops it with the connection.)
    fn call(&mut self, args: &[&[u8]], limits: &Limits) -> io::Result<Reply> {
        (&self.stream).write_all(&resp::command(args))?;
        resp::read(&mut self.reader, limits).map_err(|e| io::Error::new(e.kind(), AfterSending(e)))
    }

    /// Sends every command, then reads every reply.
    fn pipeline(&mut self, commands: &[Vec<Vec<u8>>], limits: &Limits) -> io::Result<Vec<Reply>> {
        let mut out = Vec::new();
        for cmd in commands {
            let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
            out.extend(resp::command(&args));
        }
        (&self.stream).write_all(&out)?;
        commands
            .iter()
            .map(|_| resp::read(&mut self.reader, limits))
            .collect()
    }

    /// Runs `script` by its SHA, loading it first when Redis does not know
    /// it (a new Redis, or one that restarted).
    fn eval(
        &mut self,
        script: &Script,
        keys: &[&[u8]],
        args: &[&[u8]],
        limits: &Limits,
    ) -> io::Result<Reply> {
        for _ in 0..2 {
            let known = lock(&script.sha).clone();
            let sha = match known {
                Some(sha) => sha,
                None => {
                    let reply = self.call(
                        &[b"SCRIPT", b"LOAD", script.text.as_bytes()],
                        &small_reply(),
                    )?;
                    let Some(sha) = reply.text().map(String::from) else {
                        return Err(io::Error::other(format!(
                            "Redis would not load a script: {reply:?}"
                        )));
                    };
                    *lock(&script.sha) = Some(sha.clone());
                    sha
                }
            };
            let numkeys = keys.len().to_string();
            let mut call: Vec<&[u8]> = vec![b"EVALSHA", sha.as_bytes(), numkeys.as_bytes()];
            call.extend_from_slice(keys);
            call.extend_from_slice(args);
            match self.call(&call, limits)? {
                Reply::Error(e) if e.starts_with("NOSCRIPT") => *lock(&script.sha) = None,
                reply => return Ok(reply),
            }
        }
        Err(io::Error::other("Redis keeps forgetting ssed's scripts"))
    }
}

/// Whether a kept connection failed because Redis closed it while idle.
fn stale(e: &io::Error) -> bool {
    use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
    )
}

/// At most `max` command connections, kept open between uses.
struct Pool {
    idle: Mutex<Vec<Conn>>,
    /// Connections out of the pool now.
    busy: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Pool {
    fn new(max: usize) -> Pool {
        Pool {
            idle: Mutex::default(),
            busy: Mutex::new(0),
            freed: Condvar::new(),
            max,
        }
    }

    /// Runs `f` on a connection; errors as text (see [`Pool::with_error`]).
    fn with<T>(
        &self,
        shared: &Shared,
        f: impl FnMut(&mut Conn) -> io::Result<T>,
    ) -> Result<T, String> {
        self.with_error(shared, f).map_err(|e| e.to_string())
    }

    /// Runs `f` on a connection (an idle one, or a new one while fewer
    /// than `max` are open); a connection that failed is dropped. An idle
    /// connection that Redis closed meanwhile (it restarted) is replaced
    /// once, at once: `f` runs again, so it must be safe to repeat (reads,
    /// and publishes, which carry an idempotency key). An error keeps
    /// whether the command was sent ([`after_sending`]).
    fn with_error<T>(
        &self,
        shared: &Shared,
        mut f: impl FnMut(&mut Conn) -> io::Result<T>,
    ) -> io::Result<T> {
        let deadline = Instant::now() + shared.settings.timeout;
        {
            let mut busy = lock(&self.busy);
            while *busy >= self.max {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::other(format!(
                        "all {} Redis connections stayed busy for {:?}",
                        self.max, shared.settings.timeout
                    )));
                }
                busy = self
                    .freed
                    .wait_timeout(busy, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            *busy += 1;
        }
        let open = || Conn::open(&shared.target, shared.settings.timeout).map_err(io::Error::other);
        let mut result = Err(io::Error::other("no connection"));
        let mut idle = lock(&self.idle).pop();
        for _ in 0..2 {
            let reused = idle.is_some();
            let conn = match idle.take().map_or_else(open, Ok) {
                Ok(conn) => conn,
                Err(why) => {
                    result = Err(why);
                    break;
                }
            };
            let mut conn = conn;
            match f(&mut conn) {
                Ok(value) => {
                    lock(&self.idle).push(conn);
                    result = Ok(value);
                    break;
                }
                Err(e) if reused && stale(&e) => continue,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        *lock(&self.busy) -= 1;
        self.freed.notify_one();
        result
    }
}

/// The log in Redis, as the server sees it: the same [`Store`] as the hub
/// alone, with the link's failures told apart (`Down`: not stored;
/// `Unknown`: perhaps stored).
impl Store for Redis {
    fn hub(&self) -> &Arc<Hub> {
        &self.shared.hub
    }

    fn publish(&self, topic: &str, event: Event, key: Option<&str>) -> Result<Stored, StoreError> {
        // Ssed's own retries need a key too.
        let key = key.map_or_else(idempotency::draw, String::from);
        let (id, subscribers) = Redis::publish(self, topic, &event, &key)?;
        Ok(Stored {
            id,
            subscribers,
            // It comes back through the feed, to every instance.
            fanout: None,
        })
    }

    /// Live from the local watermark; what is owed up to it, from Redis.
    /// While Redis is away or stalled, a gap says the replay could not be
    /// had; live events up to a resumed id are skipped either way.
    fn subscribe(
        &self,
        names: &[String],
        notify: &Arc<dyn Notify>,
        from: &From,
    ) -> Result<Feed, StoreError> {
        let hub = &self.shared.hub;
        let resume = from.resume(|id| self.resume(id));
        let (subs, upto) = hub.subscribe_live(names, notify)?;
        let (gaps, replay) = self
            .replay(names, &resume, upto)
            .unwrap_or_else(|_| (store::unreplayed(names), None));
        let after = match resume {
            Resume::After(seq) => seq,
            _ => 0,
        };
        let feed = Feed::new(subs, Some(Arc::clone(hub)), gaps, from.quoted()).skip_through(after);
        Ok(match replay {
            Some(replay) => feed.backlog(Box::new(replay)),
            None => feed,
        })
    }

    fn topics(&self) -> Result<Vec<TopicState>, StoreError> {
        let hub = &self.shared.hub;
        let topics = Redis::topics(self)
            .map_err(|why| StoreError::Down(format!("redis {}: {why}", self.shared.target)))?;
        Ok(topics
            .into_iter()
            .map(|(name, retained, newest)| TopicState {
                subscribers: hub.subscribers(&name),
                retained,
                last_id: newest.map(|seq| hub.id(seq)),
                name,
            })
            .collect())
    }

    fn health(&self) -> Result<(), String> {
        match Redis::health(self) {
            Health::Up { .. } => Ok(()),
            Health::Down { why, for_ } => Err(format!(
                "redis {}: down for {:.1} s: {why}",
                self.shared.target,
                for_.as_secs_f64()
            )),
        }
    }

    fn link(&self) -> Option<store::Link> {
        let (rtt, down_for) = match Redis::health(self) {
            Health::Up { rtt } => (rtt, None),
            Health::Down { for_, .. } => (None, Some(for_)),
        };
        Some(store::Link {
            rtt,
            down_for,
            reconnects: self.reconnects(),
            resets: self.resets(),
        })
    }

    /// A topic nobody here watches is forgotten, whatever it holds: Redis
    /// keeps its events.
    fn release(&self, names: &[String]) {
        self.shared.hub.forget(names);
    }

    fn stop(&self) {
        Redis::stop(self);
    }
}
