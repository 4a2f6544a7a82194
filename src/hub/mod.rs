//! The hub: named topics and their events' ids, so that a client resumes
//! exactly where it stopped, broadcast to any number of subscribers.
//!
//! A [`Topic`] keeps its recent events in a ring and, for each subscriber,
//! someone to [`Notify`]. Publishing appends to the ring, then notifies each
//! subscriber from a snapshot of the list, outside the ring's lock: a
//! sleeping thread's waker is rung; a stream that can write its new events
//! at once, without waiting, does so (see `stream::Outlet`). Nothing a
//! subscriber does can make a publish wait, so its cost does not depend on
//! how slow the readers are. Each [`Subscription`] reads the ring at its own
//! cursor; one that falls further behind than the ring holds is told what it
//! missed ([`Gap`]).
//!
//! The [`Hub`] names topics and numbers their events. Every event published
//! through it gets the next number of one hub-wide sequence, and the id
//! `RUN-SEQ`, where RUN is drawn at random when the hub starts. One id is then
//! enough to resume any set of topics: replay what each holds after SEQ. An
//! id of another run, or one that is not ours at all, cannot be placed, so it
//! is reported as a gap rather than guessed at.
//!
//! Invariant: events are inserted in sequence order, and the hub's
//! [`Hub::watermark`] moves past a sequence number only once that event is in
//! its topic. A reader that takes only events at or below the watermark it
//! read beforehand therefore sees every topic's events in one global order.
//!
//! The hub knows nothing of HTTP.

mod expiry;
mod fanout;
pub mod idempotency;
mod mirror;
mod topic;
mod watch;

pub use crate::names::{check_topic, MAX_TOPIC_LEN};
pub use expiry::Sweeper;
pub use fanout::{Fanouts, MAX_WORKERS};
pub use mirror::Live;
pub use topic::{Entry, Gap, Notify, Retention, Subscription, Take, Topic};
pub use watch::Watch;

use crate::names::Pattern;
use crate::sse::Event;
use crate::sync::{lock, read, write};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

/// Why a topic could not be had.
#[derive(Debug, PartialEq, Eq)]
pub enum TopicError {
    /// The name breaks [`check_topic`]'s rule.
    BadName(String),
    /// `max_topics` exist already.
    TooMany(usize),
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicError::BadName(why) => f.write_str(why),
            TopicError::TooMany(max) => write!(f, "there are {max} topics already (--max-topics)"),
        }
    }
}

/// The named topics, their numbering, and the counters behind `/metrics`.
pub struct Hub {
    /// This run's token, the first part of every id. With Redis, the token
    /// that Redis holds, learnt when the link comes up.
    pub(super) run: RwLock<String>,
    /// The last sequence number given out; held while an event is inserted,
    /// so that insertions happen in sequence order.
    pub(super) seq: Mutex<u64>,
    /// The highest sequence number whose event is in its topic.
    pub(super) watermark: AtomicU64,
    pub(super) topics: Mutex<HashMap<String, Arc<Topic>>>,
    pub(super) keep: Retention,
    pub(super) max_topics: usize,
    /// Retained cost across all topics, and its bound (`--history-total`).
    pub(super) total: Arc<AtomicUsize>,
    pub(super) budget: usize,
    pub counters: Counters,
    /// Tells subscribers of what is inserted: one path for every event.
    fanouts: Arc<Fanouts>,
    /// Subscribers by pattern, told of each topic made that matches
    /// (taken after `topics`, never before).
    watches: Mutex<Watches>,
    /// `--history-ttl`: how long an event is kept.
    ttl: Option<std::time::Duration>,
    /// Topics forgotten after some of their events were dropped: the
    /// newest dropped, so that the topic made again under that name still
    /// reports them to a resume from before.
    forgotten: Mutex<Forgotten>,
}

/// [`Hub::forgotten`]: by a hash of the name (16 bytes each in one table,
/// no allocation of its own: a crowd of topics gone leaves no scattered
/// heap behind; two names of one hash only make a gap reported the more),
/// at most `max_topics` of them; past that, the highest number of those
/// let go stands for all (a resume from before it, on any new topic, is
/// told it may have missed events).
#[derive(Default)]
struct Forgotten {
    by_name: HashMap<u64, u64>,
    floor: u64,
}

fn name_hash(name: &str) -> u64 {
    idempotency::fingerprint(name, None, "")
}

/// The watches, and names known to match none of them: a mirror asks for
/// each event of a topic it does not hold, and is answered from the set
/// after the first time (a new watch empties it).
#[derive(Default)]
struct Watches {
    list: Vec<Weak<Watch>>,
    unmatched: std::collections::HashSet<String>,
}

/// Hub-wide counts for `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub replayed: AtomicU64,
    pub gaps: AtomicU64,
    /// Live subscribers that fell further behind than their topic holds and
    /// were skipped ahead (told of the gap) rather than disconnected.
    pub lagged: AtomicU64,
    /// Events dropped from history to keep within `--history-total`.
    pub trimmed: AtomicU64,
}

/// What a subscription reads, however the log keeps its events: the
/// subscriptions to its topics, the gaps to report first, a backlog to
/// send before anything live (a shared log's replay), and where the
/// client said it was. A store makes it; the writer reads it.
pub struct Subscribed {
    pub hub: Arc<Hub>,
    pub subs: Vec<Subscription>,
    pub gaps: Vec<Gap>,
    /// The `Last-Event-ID` the client resumed from, quoted in those gaps.
    pub resumed_from: Option<String>,
    /// Live events numbered up to this one are left out: the client has
    /// them already (it resumed after an id the mirror had not reached).
    pub skip_through: u64,
    pub backlog: Option<Box<dyn Backlog>>,
    /// Its patterns' watch: subscriptions to topics made later come from it.
    pub watch: Option<Arc<Watch>>,
}

impl Subscribed {
    pub fn new(
        hub: Arc<Hub>,
        subs: Vec<Subscription>,
        gaps: Vec<Gap>,
        resumed_from: Option<String>,
    ) -> Subscribed {
        Subscribed {
            hub,
            subs,
            gaps,
            resumed_from,
            skip_through: 0,
            backlog: None,
            watch: None,
        }
    }
}

/// Events a subscription is owed before its live ones, kept elsewhere (a
/// shared log) and read a page at a time by the stream's own thread, so
/// that a long replay is never held whole.
pub trait Backlog: Send {
    /// The next page, in id order, bounded by the backlog itself; empty
    /// once everything was read. An error ends it with the gaps to report
    /// for what could not be read.
    fn next_page(&mut self) -> Result<Vec<Arc<Event>>, Vec<Gap>>;
}

/// A subscription by names and patterns: its subscriptions, the gaps to
/// report first, and its patterns' watch.
pub type Matched = (Vec<Subscription>, Vec<Gap>, Option<Arc<Watch>>);

/// What a publish appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub id: String,
    pub seq: u64,
    /// The topic's subscribers here.
    pub subscribers: usize,
}

/// Where a reconnecting client says it was.
#[derive(Debug, PartialEq, Eq)]
pub enum Resume {
    /// No id: live events only.
    Live,
    /// An id of this run.
    After(u64),
    /// An id this run did not give out.
    Foreign(String),
    /// No id, but the newest `n` retained events of the topics first (a new
    /// client asking for context, not a returning one).
    Last(usize),
}

/// An event's id: `RUN-NUMBER`. Made here only, read by [`Hub::seq_of`]
/// only.
pub fn format_id(run: &str, seq: u64) -> String {
    format!("{run}-{seq}")
}

/// A token for a new run: 8 hex digits.
pub fn new_run() -> String {
    format!("{:08x}", fastrand::u32(..))
}

impl Hub {
    /// A hub whose topics each keep `keep`, at most `max_topics` of them,
    /// and whose retained events cost at most `budget` in all.
    pub fn new(keep: Retention, max_topics: usize, budget: usize, fanouts: Arc<Fanouts>) -> Hub {
        Hub {
            run: RwLock::new(new_run()),
            seq: Mutex::new(0),
            watermark: AtomicU64::new(0),
            topics: Mutex::default(),
            keep,
            max_topics,
            total: Arc::new(AtomicUsize::new(0)),
            budget,
            counters: Counters::default(),
            fanouts,
            watches: Mutex::default(),
            ttl: None,
            forgotten: Mutex::default(),
        }
    }

    /// Notes that `topic`, forgotten now, had dropped events up to its
    /// `evicted_through`.
    fn note_forgotten(&self, topic: &Topic) {
        let Some(seq) = topic.evicted_through() else {
            return;
        };
        let mut forgotten = lock(&self.forgotten);
        if forgotten.by_name.len() >= self.max_topics.max(1) {
            let highest = forgotten.by_name.values().copied().max().unwrap_or(0);
            forgotten.floor = forgotten.floor.max(highest);
            forgotten.by_name.clear();
            forgotten.by_name.shrink_to_fit();
        }
        let hash = name_hash(&topic.name);
        let before = forgotten.by_name.get(&hash).copied().unwrap_or(0);
        forgotten.by_name.insert(hash, seq.max(before));
    }

    /// Events are kept at most `ttl` (`--history-ttl`), then dropped by
    /// [`Hub::expire`], and never replayed past it.
    pub fn with_ttl(mut self, ttl: Option<std::time::Duration>) -> Hub {
        self.ttl = ttl;
        self
    }

    pub fn ttl(&self) -> Option<std::time::Duration> {
        self.ttl
    }

    /// The sweep of `--history-ttl`: drops every topic's events past their
    /// age, then forgets the topics left with neither events nor
    /// subscribers. Its cost is the topics', once a sweep, never a
    /// publish's.
    pub fn expire(&self) {
        if self.ttl.is_none() {
            return;
        }
        let now = std::time::Instant::now();
        let mut topics = lock(&self.topics);
        let mut forgot = 0usize;
        topics.retain(|_, topic| {
            topic.expire(now);
            let idle = topic.is_idle();
            if idle {
                self.note_forgotten(topic);
                forgot += 1;
            }
            !idle
        });
        // A crowd of topics come and gone gives its room back.
        let len = topics.len();
        if topics.capacity() > 64 && len < topics.capacity() / 4 {
            topics.shrink_to(len * 2);
        }
        drop(topics);
        // A crowd of topics forgotten: their heap goes back to the system.
        if forgot >= 1000 {
            crate::sys::heap::trim_heap();
        }
    }

    /// What the retained events of every topic cost now (`--history-total`).
    pub fn retained(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Over the budget, drops the oldest events of the largest topics until
    /// it is met: the largest loses events until it is no longer the
    /// largest, then the next. Their subscribers get the usual gap.
    pub(super) fn enforce_budget(&self, topics: &HashMap<String, Arc<Topic>>) {
        while self.total.load(Ordering::Acquire) > self.budget {
            let mut largest: Option<(&Arc<Topic>, usize)> = None;
            let mut second = 0;
            for topic in topics.values() {
                let c = topic.retained_cost();
                match largest {
                    Some((_, l)) if c <= l => second = second.max(c),
                    _ => {
                        second = largest.map_or(0, |(_, l)| l);
                        largest = Some((topic, c));
                    }
                }
            }
            let Some((topic, _)) = largest else {
                return;
            };
            let mut ring = write(&topic.ring);
            let mut dropped = 0;
            while self.total.load(Ordering::Acquire) > self.budget
                && !ring.entries.is_empty()
                && (dropped == 0 || ring.cost >= second)
            {
                let freed = ring.evict_oldest();
                self.total.fetch_sub(freed, Ordering::AcqRel);
                dropped += 1;
            }
            ring.shrink();
            self.counters.trimmed.fetch_add(dropped, Ordering::Relaxed);
            if dropped == 0 {
                return;
            }
        }
    }

    /// The token of this run, the first part of its ids.
    pub fn run_token(&self) -> String {
        read(&self.run).clone()
    }

    /// The id of event number `seq`.
    pub fn id(&self, seq: u64) -> String {
        format_id(&read(&self.run), seq)
    }

    /// The number of `id` if it is an id of this run (`RUN-NUMBER`, the
    /// form [`Hub::id`] makes): the one place ids are read.
    pub fn seq_of(&self, id: &str) -> Option<u64> {
        let (run, seq) = id.split_once('-')?;
        if run != *read(&self.run) {
            return None;
        }
        seq.parse().ok()
    }

    /// Reads a `Last-Event-ID`.
    pub fn resume(&self, last_event_id: Option<&str>) -> Resume {
        let Some(id) = last_event_id.filter(|id| !id.is_empty()) else {
            return Resume::Live;
        };
        match self.seq_of(id) {
            Some(seq) if seq <= self.watermark() => Resume::After(seq),
            _ => Resume::Foreign(id.to_string()),
        }
    }

    /// Every sequence number up to this one is in its topic.
    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::Acquire)
    }

    /// The topic called `name`, made if it does not exist. Takes the
    /// topics' lock, which the caller holds while it uses the topic, so that
    /// [`Hub::release`] cannot free it in between.
    pub(super) fn topic<'m>(
        &self,
        topics: &'m mut HashMap<String, Arc<Topic>>,
        name: &str,
    ) -> Result<&'m Arc<Topic>, TopicError> {
        check_topic(name).map_err(TopicError::BadName)?;
        if !topics.contains_key(name) {
            if topics.len() >= self.max_topics {
                // Make room from topics nobody uses, before refusing
                // (they hold nothing: the budget is unchanged).
                topics.retain(|_, t| !t.is_idle());
                if topics.len() >= self.max_topics {
                    return Err(TopicError::TooMany(self.max_topics));
                }
            }
            let total = Some(Arc::clone(&self.total));
            let fanouts = Arc::clone(&self.fanouts);
            let topic = Topic::build(name, self.keep, None, total, fanouts);
            topic.set_ttl(self.ttl);
            let mut forgotten = lock(&self.forgotten);
            let dropped = forgotten
                .by_name
                .remove(&name_hash(name))
                .unwrap_or(0)
                .max(forgotten.floor);
            drop(forgotten);
            if dropped > 0 {
                topic.forgot_through(dropped);
            }
            // Watches that match subscribe now, before its first event.
            let mut watches = lock(&self.watches);
            watches.list.retain(|w| w.strong_count() > 0);
            for watch in watches.list.iter().filter_map(Weak::upgrade) {
                if watch.matches(name) {
                    watch.attach(&topic);
                }
            }
            drop(watches);
            topics.insert(name.to_string(), topic);
        }
        Ok(&topics[name])
    }

    /// Whether a watch here matches `name` (a shared log's mirror makes
    /// such a topic when its first event comes).
    pub(super) fn watched(&self, name: &str) -> bool {
        let mut watches = lock(&self.watches);
        if watches.list.is_empty() || watches.unmatched.contains(name) {
            return false;
        }
        let watched = watches
            .list
            .iter()
            .filter_map(Weak::upgrade)
            .any(|w| w.matches(name));
        if !watched {
            // Bounded: names beyond what the hub may hold start it afresh.
            if watches.unmatched.len() >= self.max_topics.saturating_mul(4).max(1024) {
                watches.unmatched.clear();
            }
            watches.unmatched.insert(name.to_string());
        }
        watched
    }

    /// Starts a watch of `patterns` for `notify`: it is subscribed to every
    /// topic made from now on that matches. Returns it with the names of
    /// the topics that match already (not among `except`), which the
    /// caller subscribes to as it does to named ones. The caller holds the
    /// topics' lock, so that no topic is made in between.
    pub(super) fn watch(
        &self,
        topics: &HashMap<String, Arc<Topic>>,
        patterns: &[Pattern],
        notify: &Arc<dyn Notify>,
        except: &[String],
    ) -> (Arc<Watch>, Vec<String>) {
        let watch = Arc::new(Watch::new(patterns.to_vec(), Arc::clone(notify)));
        let mut watches = lock(&self.watches);
        watches.list.push(Arc::downgrade(&watch));
        watches.unmatched.clear();
        drop(watches);
        let mut matching: Vec<String> = topics
            .keys()
            .filter(|name| watch.matches(name) && !except.contains(name))
            .cloned()
            .collect();
        matching.sort();
        (watch, matching)
    }

    /// The topics here that `watch` matches (to let go of when its
    /// stream ends).
    pub fn matching(&self, watch: &Watch) -> Vec<String> {
        lock(&self.topics)
            .keys()
            .filter(|name| watch.matches(name))
            .cloned()
            .collect()
    }

    /// Publishes `event` to topic `name`, giving it the next id, and has
    /// its subscribers told (after every lock here is let go: telling
    /// thousands takes milliseconds, which no other publish waits for).
    pub fn publish(&self, name: &str, mut event: Event) -> Result<Appended, TopicError> {
        let mut topics = lock(&self.topics);
        let topic = Arc::clone(self.topic(&mut topics, name)?);
        let mut seq = lock(&self.seq);
        *seq += 1;
        let id = self.id(*seq);
        event.id = Some(id.clone());
        event.topic = Some(name.to_string());
        topic.insert(*seq, event);
        // The watermark moves before anyone is told: a subscriber told of
        // this event must find it at or below the watermark, or it would
        // hold it back until the next publish.
        self.watermark.store(*seq, Ordering::Release);
        let number = *seq;
        drop(seq);
        self.enforce_budget(&topics);
        // The topic holds this event now, so it cannot be freed meanwhile.
        drop(topics);
        let appended = Appended {
            id,
            seq: number,
            subscribers: topic.subscribers(),
        };
        topic.dispatch();
        Ok(appended)
    }

    /// Subscribes `notify` to every topic in `names`, resuming from `from`.
    /// Returns the subscriptions and the gaps to report before anything else.
    pub fn subscribe(
        &self,
        names: &[String],
        notify: &Arc<dyn Notify>,
        from: &Resume,
    ) -> Result<(Vec<Subscription>, Vec<Gap>), TopicError> {
        self.subscribe_matching(names, &[], notify, from)
            .map(|(subs, gaps, _)| (subs, gaps))
    }

    /// Subscribes `notify` to every topic in `names` and every topic that
    /// matches one of `patterns`, now and when it is made, resuming from
    /// `from` in all of them alike. Returns the subscriptions, the gaps to
    /// report first, and the watch of the patterns (its reader takes the
    /// subscriptions to topics made later from it).
    pub fn subscribe_matching(
        &self,
        names: &[String],
        patterns: &[Pattern],
        notify: &Arc<dyn Notify>,
        from: &Resume,
    ) -> Result<Matched, TopicError> {
        let mut topics = lock(&self.topics);
        // Check every name before subscribing to any; named topics are made
        // before the watch begins, so that it does not take them twice.
        for name in names {
            self.topic(&mut topics, name)?;
        }
        let (watch, names) = if patterns.is_empty() {
            (None, names.to_vec())
        } else {
            let (watch, matching) = self.watch(&topics, patterns, notify, names);
            let mut all = names.to_vec();
            all.extend(matching);
            (Some(watch), all)
        };
        let names = &names[..];
        let mut subs = Vec::with_capacity(names.len());
        let mut gaps = Vec::new();
        // The newest n events across the topics start after the event just
        // before the oldest of them.
        let last_cut = match from {
            Resume::Last(n) => {
                let mut seqs: Vec<u64> = names
                    .iter()
                    .flat_map(|name| topics[name.as_str()].newest(*n))
                    .collect();
                seqs.sort_unstable();
                let skip = seqs.len().saturating_sub(*n);
                Some(
                    seqs.get(skip)
                        .map_or(u64::MAX, |&oldest| oldest.saturating_sub(1)),
                )
            }
            _ => None,
        };
        for name in names {
            let topic = &topics[name.as_str()];
            match from {
                Resume::Live => subs.push(topic.subscribe(Arc::clone(notify), 0)),
                Resume::After(seq) => {
                    let (sub, gap, replayed) = topic.subscribe_after(Arc::clone(notify), *seq);
                    self.counters
                        .replayed
                        .fetch_add(replayed as u64, Ordering::Relaxed);
                    subs.push(sub);
                    gaps.extend(gap);
                }
                Resume::Last(_) => {
                    // Context, not a resumption: nothing was owed, so
                    // nothing older is reported missing.
                    let after = last_cut.unwrap_or(u64::MAX).min(self.watermark());
                    let (sub, _, replayed) = topic.subscribe_after(Arc::clone(notify), after);
                    self.counters
                        .replayed
                        .fetch_add(replayed as u64, Ordering::Relaxed);
                    subs.push(sub);
                }
                Resume::Foreign(_) => {
                    // Nothing of this run was seen: replay all there is, after
                    // saying that what came before cannot be placed.
                    let (sub, gap, replayed) = topic.subscribe_after(Arc::clone(notify), 0);
                    self.counters
                        .replayed
                        .fetch_add(replayed as u64, Ordering::Relaxed);
                    subs.push(sub);
                    gaps.push(Gap {
                        topic: name.clone(),
                        missed: None,
                        through: gap.and_then(|g| g.through),
                    });
                }
            }
        }
        if let Resume::Foreign(_) = from {
            // Topics of a pattern that no longer exist here cannot be
            // placed either: said once for each pattern.
            gaps.extend(patterns.iter().map(|p| Gap {
                topic: p.to_string(),
                missed: None,
                through: None,
            }));
        }
        Ok((subs, gaps, watch))
    }

    /// Keeps topic `name` even while idle, making it if need be: a source
    /// feeds it.
    pub fn pin(&self, name: &str) -> Result<(), TopicError> {
        let mut topics = lock(&self.topics);
        let topic = self.topic(&mut topics, name)?;
        topic.pinned.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Frees those of `names` that have no subscribers and nothing retained.
    pub fn release(&self, names: &[String]) {
        self.free(names, Topic::is_idle);
    }

    pub(super) fn free(&self, names: &[String], free_if: impl Fn(&Topic) -> bool) {
        let mut topics = lock(&self.topics);
        for name in names {
            let free = topics.get(name.as_str()).is_some_and(|t| free_if(t));
            // What it held no longer counts against the budget: the bytes
            // counted are the bytes held.
            if let Some(topic) = free.then(|| topics.remove(name.as_str())).flatten() {
                self.total
                    .fetch_sub(topic.retained_cost(), Ordering::AcqRel);
                self.note_forgotten(&topic);
            }
        }
    }

    /// Deletes topic `name`: its events are gone, its readers told (a
    /// last `deleted` event), and a later publish starts it afresh.
    /// Whether it existed.
    pub fn delete(&self, name: &str) -> bool {
        let mut topics = lock(&self.topics);
        let Some(topic) = topics.remove(name) else {
            return false;
        };
        drop(topics);
        let freed = topic.delete();
        self.total.fetch_sub(freed, Ordering::AcqRel);
        true
    }

    /// Subscribers of `topic` here.
    pub fn subscribers(&self, topic: &str) -> usize {
        lock(&self.topics).get(topic).map_or(0, |t| t.subscribers())
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = lock(&self.topics).values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::topic::{cost, LIVE_RING};
    use super::*;
    use crate::sync::Doorbell;

    fn data(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.event.data.as_str()).collect()
    }

    fn keep(history: usize) -> Retention {
        Retention {
            history,
            bytes: usize::MAX,
        }
    }

    fn waker() -> Arc<Doorbell> {
        Arc::new(Doorbell::default())
    }

    /// A waker as the topics hold it.
    fn notify() -> Arc<dyn Notify> {
        waker()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// What a new subscriber to `list` gets at once, in id order; no gap.
    fn taken(hub: &Hub, list: &[&str], from: &Resume) -> Vec<String> {
        let (mut subs, gaps) = hub.subscribe(&names(list), &notify(), from).unwrap();
        assert!(gaps.is_empty());
        let mut out = Vec::new();
        for sub in &mut subs {
            sub.take(hub.watermark(), &mut out);
        }
        out.sort_by_key(|e| e.seq);
        data(&out).into_iter().map(String::from).collect()
    }

    #[test]
    fn the_hub_numbers_events_and_reads_ids() {
        let hub = Hub::new(keep(10), 2, usize::MAX, Fanouts::inline());
        let first = hub.publish("a", Event::message("x")).unwrap();
        let id1 = first.id;
        let id2 = hub.publish("a", Event::message("y")).unwrap().id;
        assert_eq!((id1.as_str(), first.subscribers), (hub.id(1).as_str(), 0));
        assert_eq!(id2, hub.id(2));
        assert_eq!(hub.resume(None), Resume::Live);
        assert_eq!(hub.resume(Some("")), Resume::Live);
        assert_eq!(hub.resume(Some(&id1)), Resume::After(1));
        let other_run = if hub.run_token() == "00000000" {
            "00000001-1"
        } else {
            "00000000-1"
        };
        assert_eq!(
            hub.resume(Some(other_run)),
            Resume::Foreign(other_run.into())
        );
        assert!(matches!(hub.resume(Some("garbage")), Resume::Foreign(_)));
        // From this run, but in the future: not ours to trust.
        assert!(matches!(hub.resume(Some(&hub.id(99))), Resume::Foreign(_)));
    }

    #[test]
    fn one_id_resumes_several_topics_in_order() {
        let hub = Hub::new(keep(10), 10, usize::MAX, Fanouts::inline());
        for (topic, data) in [("a", "1"), ("b", "2"), ("a", "3"), ("b", "4")] {
            hub.publish(topic, Event::message(data)).unwrap();
        }
        assert_eq!(taken(&hub, &["a", "b"], &Resume::After(1)), ["2", "3", "4"]);
        let w = notify();
        let (_, gaps) = hub
            .subscribe(&names(&["a"]), &w, &Resume::Foreign("x-1".into()))
            .unwrap();
        assert_eq!(
            gaps,
            [Gap {
                topic: "a".into(),
                missed: None,
                through: None
            }]
        );
    }

    #[test]
    fn the_last_n_events_of_several_topics() {
        let hub = Hub::new(keep(10), 10, usize::MAX, Fanouts::inline());
        for (topic, data) in [
            ("a", "1"),
            ("b", "2"),
            ("a", "3"),
            ("c", "x"),
            ("b", "4"),
            ("a", "5"),
        ] {
            hub.publish(topic, Event::message(data)).unwrap();
        }
        let taken = |list: &[&str], n: usize| taken(&hub, list, &Resume::Last(n));
        assert_eq!(taken(&["a", "b"], 3), ["3", "4", "5"]);
        assert_eq!(taken(&["a", "b"], 10), ["1", "2", "3", "4", "5"]);
        assert_eq!(taken(&["b"], 1), ["4"]);
        assert_eq!(taken(&["a"], 0), Vec::<String>::new());
        assert_eq!(taken(&["empty"], 5), Vec::<String>::new());
    }

    #[test]
    fn pinned_topics_are_kept_when_idle() {
        let hub = Hub::new(keep(10), 10, usize::MAX, Fanouts::inline());
        hub.pin("logs").unwrap();
        hub.release(&names(&["logs"]));
        assert_eq!(hub.topics().len(), 1);
        assert!(matches!(hub.pin("a b"), Err(TopicError::BadName(_))));
    }

    #[test]
    fn topic_names_the_cap_and_idle_topics() {
        let hub = Hub::new(keep(10), 2, usize::MAX, Fanouts::inline());
        let long = "x".repeat(129);
        let bad_names = [
            "", "a b", "a?b", "é", &long, "news/", "/news", "a//b", "a/./b", "..", "a/..",
        ];
        for bad in bad_names {
            assert!(
                matches!(
                    hub.publish(bad, Event::message("x")),
                    Err(TopicError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        let w = notify();
        let (subs, _) = hub
            .subscribe(&names(&["news/sport-1.x_~"]), &w, &Resume::Live)
            .unwrap();
        hub.publish("b", Event::message("x")).unwrap();
        // Two topics, one watched and one holding an event: the cap is reached.
        assert_eq!(
            hub.publish("c", Event::message("x")).unwrap_err(),
            TopicError::TooMany(2)
        );
        drop(subs);
        hub.release(&names(&["news/sport-1.x_~", "b"]));
        assert_eq!(
            hub.topics().len(),
            1,
            "the idle topic is freed, the one with history kept"
        );
        assert!(hub.publish("c", Event::message("x")).is_ok());
    }

    #[test]
    fn the_hub_wide_budget_trims_the_largest_topics_first() {
        let one = cost(&Event {
            id: Some("00000000-1".into()),
            topic: Some("big".into()),
            data: "x".repeat(100),
            ..Event::default()
        });
        // Room for ten such events in all.
        let hub = Hub::new(keep(1000), 10, 10 * one + one / 2, Fanouts::inline());
        let w = notify();
        let (mut subs, _) = hub.subscribe(&names(&["big"]), &w, &Resume::Live).unwrap();
        for _ in 0..8 {
            hub.publish("big", Event::message("x".repeat(100))).unwrap();
        }
        for _ in 0..2 {
            hub.publish("few", Event::message("x".repeat(100))).unwrap();
        }
        // (Ids from 10 on are one byte longer.)
        assert!((10 * one..10 * one + 10).contains(&hub.retained()));
        // Two more to "few": "big" is the largest and pays for both.
        for _ in 0..2 {
            hub.publish("few", Event::message("x".repeat(100))).unwrap();
        }
        assert!(hub.retained() <= 10 * one + one / 2);
        let held = |name: &str| {
            hub.topics()
                .iter()
                .find(|t| t.name() == name)
                .unwrap()
                .stats()
                .1
        };
        assert_eq!((held("big"), held("few")), (6, 4));
        assert_eq!(hub.counters.trimmed.load(Ordering::Relaxed), 2);
        // Its subscriber, who read nothing yet, is told of the two it lost.
        let mut out = Vec::new();
        let gap = subs[0].take(hub.watermark(), &mut out).unwrap();
        assert_eq!((gap.missed, out.len()), (Some(2), 6));
        // Then both are trimmed in turn, the largest first each time.
        for _ in 0..4 {
            hub.publish("few", Event::message("x".repeat(100))).unwrap();
        }
        assert_eq!((held("big"), held("few")), (5, 5));
    }

    #[test]
    fn a_ring_the_budget_trimmed_gives_its_room_back() {
        let hub = Hub::new(keep(1000), 10, usize::MAX, Fanouts::inline());
        for _ in 0..1000 {
            hub.publish("t", Event::message("x")).unwrap();
        }
        let topic = &hub.topics()[0];
        assert!(read(&topic.ring).entries.capacity() >= 1000);
        topic.clear();
        assert!(read(&topic.ring).entries.capacity() <= LIVE_RING * 2);
        let subs: Vec<_> = (0..1000).map(|_| topic.subscribe(notify(), 0)).collect();
        drop(subs);
        assert!(read(&topic.ring).subscribers.capacity() <= 128);
    }
}
