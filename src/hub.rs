//! Topics and the hub: broadcast of events to any number of subscribers,
//! with ids that let a client resume exactly where it stopped.
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

pub use crate::names::{check_topic, MAX_TOPIC_LEN};
use crate::sse::Event;
use crate::sync::{lock, read, write, Doorbell};

/// Someone to tell that a topic has new events.
pub trait Notify: Send + Sync {
    /// Called after events were added, on the publisher's thread; must not
    /// wait for anything a reader controls.
    fn notify(&self);

    /// The topic was closed ([`Hub::reset`]): the reader's own thread must
    /// look, even if nothing new is there to write.
    fn closed(&self) {
        self.notify();
    }
}

impl Notify for Doorbell {
    fn notify(&self) {
        self.ring();
    }
}

/// Whether two notifiees are the same one (their data, not their vtables).
fn same(a: &Arc<dyn Notify>, b: &Arc<dyn Notify>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// The subscribers a publish must notify, taken under the ring's lock and
/// notified after it is released (and after the publisher's answer is sent).
#[must_use = "a fan-out notifies nobody until it is run"]
pub struct Fanout(Vec<Arc<dyn Notify>>);

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fanout({} subscribers)", self.0.len())
    }
}

impl Fanout {
    /// How many subscribers there are to notify.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Notifies each subscriber, in turn.
    pub fn run(self) {
        for n in self.0 {
            n.notify();
        }
    }

    /// The subscribers, for workers to notify in shares.
    pub fn into_subscribers(self) -> Vec<Arc<dyn Notify>> {
        self.0
    }
}

/// An event that is in its topic, whose subscribers have not been told yet:
/// run it here, or hand it to `fanout::Fanouts`.
#[must_use = "subscribers hear of a publish only once it is fanned out"]
pub struct Published(Arc<Topic>, u64);

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Published({})", self.0.name)
    }
}

impl Published {
    /// The event's number.
    pub fn seq(&self) -> u64 {
        self.1
    }

    /// How many subscribers the topic has.
    pub fn subscribers(&self) -> usize {
        self.0.subscribers()
    }

    /// Notifies them on this thread.
    pub fn run(self) {
        self.0.fanout().run();
    }

    pub fn into_topic(self) -> Arc<Topic> {
        self.0
    }
}
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockWriteGuard};

/// How much a topic remembers.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Events kept for replay to reconnecting clients (0: none).
    pub history: usize,
    /// Bytes of event data kept, at most; the oldest go first.
    pub bytes: usize,
}

/// Events a topic keeps for its live subscribers even when `history` is
/// smaller: room for a burst, so a subscriber a few events behind is not told
/// of a gap.
const LIVE_RING: usize = 64;

/// A stream of events with a bounded memory of the latest ones.
pub struct Topic {
    name: String,
    /// Read by every subscriber after each publish, written by publishes:
    /// a read-write lock lets the readers in together.
    ring: RwLock<Ring>,
    /// Rung when the topic gains a first subscriber, so a producer that idles
    /// while nobody watches can start again.
    on_first_subscriber: Option<Arc<Doorbell>>,
    published: AtomicU64,
    /// The hub's running total of retained cost, kept up to date by this
    /// topic's inserts and evictions; `None` outside a hub.
    hub_total: Option<Arc<AtomicUsize>>,
    /// Waiting for a fan-out pass (see `fanout`).
    queued: AtomicBool,
    /// Kept even when idle: a source feeds it (see [`Hub::pin`]).
    pinned: AtomicBool,
    /// The hub was reset under it: its readers' streams end.
    closed: AtomicBool,
}

/// One retained event and its sequence number.
#[derive(Clone)]
pub struct Entry {
    pub seq: u64,
    pub event: Arc<Event>,
}

struct Ring {
    entries: VecDeque<Entry>,
    /// Position of `entries[0]` among all events ever published here:
    /// subscription cursors count in positions.
    first: u64,
    capacity: usize,
    /// How many of the newest entries may be replayed.
    history: usize,
    max_bytes: usize,
    bytes: usize,
    /// What the entries cost the hub-wide budget ([`cost`]).
    cost: usize,
    /// Sequence number of the newest event dropped from the ring.
    evicted_through: Option<u64>,
    subscribers: Vec<Arc<dyn Notify>>,
}

impl Ring {
    fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// After evictions: a ring that held many and holds few gives its
    /// room back (a thousand topics trimmed by the budget would otherwise
    /// keep the slots of their fullest moment).
    fn shrink(&mut self) {
        if self.entries.capacity() > LIVE_RING && self.entries.len() < self.entries.capacity() / 4 {
            self.entries
                .shrink_to((self.entries.len() * 2).max(LIVE_RING));
        }
    }

    /// Drops the oldest entry; returns its cost.
    fn evict_oldest(&mut self) -> usize {
        let Some(old) = self.entries.pop_front() else {
            return 0;
        };
        self.first += 1;
        self.bytes -= old.event.data.len();
        let freed = cost(&old.event);
        self.cost -= freed;
        self.evicted_through = Some(old.seq);
        freed
    }
}

/// What an event costs against `--history-total`: its data, and about what
/// an event holds besides (its id and name, the `Arc`, its place in the
/// ring). The encoded copy made when it is first sent comes on top: about
/// the data's size again.
fn cost(event: &Event) -> usize {
    const OVERHEAD: usize = 128;
    event.data.len()
        + event.id.as_ref().map_or(0, String::len)
        + event.event.as_ref().map_or(0, String::len)
        + event.topic.as_ref().map_or(0, String::len)
        + OVERHEAD
}

/// Events a subscriber was owed but cannot get: they left the ring before
/// it read them, or belong to another run of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    pub topic: String,
    /// How many, when known.
    pub missed: Option<u64>,
    /// The newest lost event's sequence number, when known.
    pub through: Option<u64>,
}

impl Topic {
    /// A topic outside any hub (the demos' shared streams), keeping `capacity`
    /// events and ringing `producer` when it gains a first subscriber.
    pub fn standalone(name: &str, capacity: usize, producer: Option<Arc<Doorbell>>) -> Arc<Topic> {
        let keep = Retention {
            history: capacity,
            bytes: usize::MAX,
        };
        Self::build(name, keep, producer, None)
    }

    fn build(
        name: &str,
        keep: Retention,
        on_first_subscriber: Option<Arc<Doorbell>>,
        hub_total: Option<Arc<AtomicUsize>>,
    ) -> Arc<Topic> {
        let capacity = keep.history.max(LIVE_RING);
        Arc::new(Topic {
            name: name.to_string(),
            ring: RwLock::new(Ring {
                entries: VecDeque::new(),
                first: 0,
                capacity,
                history: keep.history,
                max_bytes: keep.bytes,
                bytes: 0,
                cost: 0,
                evicted_through: None,
                subscribers: Vec::new(),
            }),
            on_first_subscriber,
            published: AtomicU64::new(0),
            hub_total,
            queued: AtomicBool::new(false),
            pinned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends `event` as number `seq` (which must exceed every earlier one)
    /// and notifies every subscriber. Returns how many there were.
    pub fn publish(&self, seq: u64, event: Event) -> usize {
        self.insert(seq, event);
        let fanout = self.fanout();
        let n = fanout.len();
        fanout.run();
        n
    }

    /// Appends without waking anyone (see [`Hub::publish`] for why).
    fn insert(&self, seq: u64, event: Event) {
        let mut ring = write(&self.ring);
        let size = event.data.len();
        let added = cost(&event);
        let mut freed = 0;
        while !ring.entries.is_empty()
            && (ring.entries.len() >= ring.capacity || ring.bytes + size > ring.max_bytes)
        {
            freed += ring.evict_oldest();
        }
        if freed > 0 {
            ring.shrink();
        }
        ring.bytes += size;
        ring.cost += added;
        if let Some(total) = &self.hub_total {
            total.fetch_add(added, Ordering::AcqRel);
            total.fetch_sub(freed, Ordering::AcqRel);
        }
        ring.entries.push_back(Entry {
            seq,
            event: Arc::new(event),
        });
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// The subscribers to notify of what was inserted so far. Taking it
    /// ends the topic's wait in the fan-out queue: what is published after
    /// this queues it again.
    pub fn fanout(&self) -> Fanout {
        self.queued.store(false, Ordering::SeqCst);
        Fanout(read(&self.ring).subscribers.clone())
    }

    /// Whether the topic waits for a fan-out pass.
    pub fn is_queued(&self) -> bool {
        self.queued.load(Ordering::SeqCst)
    }

    /// Marks the topic as waiting for a fan-out pass; false if it was already.
    pub fn queue_for_fanout(&self) -> bool {
        !self.queued.swap(true, Ordering::SeqCst)
    }

    /// Subscribes from the next event on, plus up to `latest` of those already
    /// in the ring (for a late viewer of a slow-changing value).
    pub fn subscribe(self: &Arc<Self>, notify: Arc<dyn Notify>, latest: usize) -> Subscription {
        let ring = self.register(&notify);
        // What is kept beyond the history is for live readers catching up,
        // not for replay.
        let replayable = ring.entries.len().min(ring.history);
        let cursor = ring.next() - latest.min(replayable) as u64;
        drop(ring);
        self.subscription(notify, cursor)
    }

    /// Subscribes to every event numbered after `after`: those still held
    /// for replay first, then live ones, each exactly once. Also returns the
    /// gap, if events after `after` can no longer be replayed, and how many
    /// will be replayed.
    pub fn subscribe_after(
        self: &Arc<Self>,
        notify: Arc<dyn Notify>,
        after: u64,
    ) -> (Subscription, Option<Gap>, usize) {
        let ring = self.register(&notify);
        let replayable = ring.entries.len().min(ring.history);
        let window_start = ring.entries.len() - replayable;
        // Entries are in sequence order: find the first one after `after`.
        let first_after = ring.entries.partition_point(|e| e.seq <= after);
        let start = first_after.max(window_start);
        // Owed but not replayable: evicted ones after `after`, and retained
        // ones older than the replay window.
        let hidden = window_start.saturating_sub(first_after);
        let through = if hidden > 0 {
            Some(ring.entries[window_start - 1].seq)
        } else {
            ring.evicted_through.filter(|&t| t > after)
        };
        let gap = through.map(|through| Gap {
            topic: self.name.clone(),
            missed: None,
            through: Some(through),
        });
        let cursor = ring.first + start as u64;
        let replayed = ring.entries.len() - start;
        drop(ring);
        (self.subscription(notify, cursor), gap, replayed)
    }

    fn register(&self, notify: &Arc<dyn Notify>) -> RwLockWriteGuard<'_, Ring> {
        let mut ring = write(&self.ring);
        ring.subscribers.push(Arc::clone(notify));
        if ring.subscribers.len() == 1 {
            if let Some(producer) = &self.on_first_subscriber {
                producer.ring();
            }
        }
        ring
    }

    fn subscription(self: &Arc<Self>, notify: Arc<dyn Notify>, cursor: u64) -> Subscription {
        Subscription {
            topic: Arc::clone(self),
            notify,
            cursor,
        }
    }

    pub fn subscribers(&self) -> usize {
        read(&self.ring).subscribers.len()
    }

    /// Events published here since the start.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// (subscribers, retained events, newest sequence number).
    pub fn stats(&self) -> (usize, usize, Option<u64>) {
        let ring = read(&self.ring);
        let newest = ring.entries.back().map(|e| e.seq);
        (ring.subscribers.len(), ring.entries.len(), newest)
    }

    /// Forgets the retained events (a producer going idle, whose last value
    /// would be stale by the time anyone sees it).
    pub fn clear(&self) {
        let mut ring = write(&self.ring);
        while !ring.entries.is_empty() {
            let freed = ring.evict_oldest();
            if let Some(total) = &self.hub_total {
                total.fetch_sub(freed, Ordering::AcqRel);
            }
        }
        ring.shrink();
    }

    /// What the retained events cost against `--history-total`.
    fn retained_cost(&self) -> usize {
        read(&self.ring).cost
    }

    fn is_idle(&self) -> bool {
        if self.pinned.load(Ordering::Relaxed) {
            return false;
        }
        let ring = read(&self.ring);
        ring.subscribers.is_empty() && ring.entries.is_empty()
    }

    /// Whether the hub was reset under this topic: its readers must end.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the topic and tells every reader.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let subscribers = read(&self.ring).subscribers.clone();
        for s in subscribers {
            s.closed();
        }
    }

    /// The sequence numbers of the newest `n` events that may be replayed.
    fn newest(&self, n: usize) -> Vec<u64> {
        let ring = read(&self.ring);
        let replayable = ring.entries.len().min(ring.history);
        ring.entries
            .iter()
            .skip(ring.entries.len() - replayable.min(n))
            .map(|e| e.seq)
            .collect()
    }
}

/// One reader's position in a topic. Dropping it unsubscribes.
pub struct Subscription {
    topic: Arc<Topic>,
    notify: Arc<dyn Notify>,
    cursor: u64,
}

impl Subscription {
    /// Whether its topic was closed by a reset of the hub.
    pub fn is_closed(&self) -> bool {
        self.topic.is_closed()
    }

    /// Moves the events past the cursor numbered at most `watermark` into
    /// `out`. If the ring no longer holds some of them, skips to the oldest
    /// it holds and returns the gap.
    pub fn take(&mut self, watermark: u64, out: &mut Vec<Entry>) -> Option<Gap> {
        self.take_some(watermark, out, Take::ALL).0
    }

    /// As [`Subscription::take`], but at most `limit` of them: the rest
    /// stays in the ring behind the cursor. Also says whether more were
    /// ready than the limit let through.
    pub fn take_some(
        &mut self,
        watermark: u64,
        out: &mut Vec<Entry>,
        limit: Take,
    ) -> (Option<Gap>, bool) {
        let ring = read(&self.topic.ring);
        let mut gap = None;
        if self.cursor < ring.first {
            gap = Some(Gap {
                topic: self.topic.name.clone(),
                missed: Some(ring.first - self.cursor),
                through: ring.evicted_through,
            });
            self.cursor = ring.first;
        }
        let start = (self.cursor - ring.first) as usize;
        let mut ready = ring
            .entries
            .range(start..)
            .take_while(|e| e.seq <= watermark)
            .peekable();
        let (mut taken, mut bytes) = (0, 0);
        while let Some(e) = ready.peek() {
            // At least one, whatever its size: a stream always moves on.
            if taken > 0 && (taken >= limit.events || bytes + e.event.size() > limit.bytes) {
                break;
            }
            bytes += e.event.size();
            taken += 1;
            out.push((*e).clone());
            ready.next();
        }
        self.cursor += taken as u64;
        (gap, ready.peek().is_some())
    }

    /// Gives back the last `n` events taken: they are taken again next
    /// time (or reported as a gap, if the ring moved past them meanwhile).
    pub fn put_back(&mut self, n: usize) {
        self.cursor -= n as u64;
    }
}

/// How much one [`Subscription::take_some`] may move out of the ring.
#[derive(Clone, Copy, Debug)]
pub struct Take {
    pub events: usize,
    /// Counted as [`Event::size`] counts.
    pub bytes: usize,
}

impl Take {
    pub const ALL: Take = Take {
        events: usize::MAX,
        bytes: usize::MAX,
    };
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut ring = write(&self.topic.ring);
        if let Some(i) = ring.subscribers.iter().position(|n| same(n, &self.notify)) {
            ring.subscribers.swap_remove(i);
        }
        let subscribers = &mut ring.subscribers;
        if subscribers.capacity() > 64 && subscribers.len() < subscribers.capacity() / 4 {
            subscribers.shrink_to(subscribers.len() * 2);
        }
    }
}

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
    run: RwLock<String>,
    /// The last sequence number given out; held while an event is inserted,
    /// so that insertions happen in sequence order.
    seq: Mutex<u64>,
    /// The highest sequence number whose event is in its topic.
    watermark: AtomicU64,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    keep: Retention,
    max_topics: usize,
    /// Retained cost across all topics, and its bound (`--history-total`).
    total: Arc<AtomicUsize>,
    budget: usize,
    pub counters: Counters,
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
    pub fn new(keep: Retention, max_topics: usize, budget: usize) -> Hub {
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
        }
    }

    /// What the retained events of every topic cost now (`--history-total`).
    pub fn retained(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Over the budget, drops the oldest events of the largest topics until
    /// it is met: the largest loses events until it is no longer the
    /// largest, then the next. Their subscribers get the usual gap.
    fn enforce_budget(&self, topics: &HashMap<String, Arc<Topic>>) {
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

    /// The token of this run.
    pub fn run(&self) -> String {
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
    fn topic<'m>(
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
            topics.insert(name.to_string(), Topic::build(name, self.keep, None, total));
        }
        Ok(&topics[name])
    }

    /// Publishes `event` to topic `name`, giving it the next id. Returns the
    /// id, and the event for the caller to fan out (after answering its own
    /// client).
    pub fn publish(&self, name: &str, mut event: Event) -> Result<(String, Published), TopicError> {
        let mut topics = lock(&self.topics);
        let topic = Arc::clone(self.topic(&mut topics, name)?);
        let mut seq = lock(&self.seq);
        *seq += 1;
        let id = self.id(*seq);
        event.id = Some(id.clone());
        event.topic = Some(name.to_string());
        topic.insert(*seq, event);
        // The watermark moves before anyone is notified: a subscriber told
        // of this event must find it at or below the watermark, or it would
        // hold it back until the next publish.
        self.watermark.store(*seq, Ordering::Release);
        let number = *seq;
        drop(seq);
        self.enforce_budget(&topics);
        // Notifying thousands of subscribers takes milliseconds; other topics
        // need not wait for it. The topic holds this event now, so it cannot
        // be freed in between.
        drop(topics);
        Ok((id, Published(topic, number)))
    }

    /// Subscribes `notify` to every topic in `names`, resuming from `from`.
    /// Returns the subscriptions and the gaps to report before anything else.
    pub fn subscribe(
        &self,
        names: &[String],
        notify: &Arc<dyn Notify>,
        from: &Resume,
    ) -> Result<(Vec<Subscription>, Vec<Gap>), TopicError> {
        let mut topics = lock(&self.topics);
        // Check every name before subscribing to any.
        for name in names {
            self.topic(&mut topics, name)?;
        }
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
        Ok((subs, gaps))
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

    /// Frees those of `names` that have no subscribers, whatever they hold:
    /// for a hub that mirrors a shared log, which keeps the events.
    pub fn forget(&self, names: &[String]) {
        self.free(names, |t| {
            t.subscribers() == 0 && !t.pinned.load(Ordering::Relaxed)
        });
    }

    fn free(&self, names: &[String], free_if: impl Fn(&Topic) -> bool) {
        let mut topics = lock(&self.topics);
        for name in names {
            let free = topics.get(name.as_str()).is_some_and(|t| free_if(t));
            // What it held no longer counts against the budget: the bytes
            // counted are the bytes held.
            if let Some(topic) = free.then(|| topics.remove(name.as_str())).flatten() {
                self.total
                    .fetch_sub(topic.retained_cost(), Ordering::AcqRel);
            }
        }
    }

    /// A mirror: inserts event number `seq` of the shared log into `name`,
    /// if anyone here reads that topic, and moves the watermark to `seq`.
    /// Events must come in sequence order.
    pub fn insert_remote(&self, name: &str, seq: u64, mut event: Event) -> Option<Published> {
        let topics = lock(&self.topics);
        let published = topics.get(name).map(|topic| {
            event.id = Some(self.id(seq));
            event.topic = Some(name.to_string());
            topic.insert(seq, event);
            Published(Arc::clone(topic), seq)
        });
        self.watermark.store(seq, Ordering::Release);
        if published.is_some() {
            self.enforce_budget(&topics);
        }
        published
    }

    /// Subscribes `notify` to `names` for what comes next, and returns the
    /// watermark at that moment: every event after it comes live, every
    /// event up to it is the shared log's to replay.
    pub fn subscribe_live(
        &self,
        names: &[String],
        notify: &Arc<dyn Notify>,
    ) -> Result<(Vec<Subscription>, u64), TopicError> {
        let mut topics = lock(&self.topics);
        for name in names {
            self.topic(&mut topics, name)?;
        }
        let subs = names
            .iter()
            .map(|name| topics[name.as_str()].subscribe(Arc::clone(notify), 0))
            .collect();
        Ok((subs, self.watermark()))
    }

    /// A mirror that (re)joins the shared log: takes its run and carries on
    /// after event `seq`. If `reset`, the log is not the one this hub
    /// mirrored (it lost its events, or events were missed): every topic is
    /// closed, which ends its readers' streams (clients reconnect and resume
    /// from the log, told of the gap), and forgotten.
    pub fn rejoin(&self, run: &str, seq: u64, reset: bool) {
        let mut topics = lock(&self.topics);
        if reset {
            for topic in topics.values() {
                topic.close();
            }
            let pinned: Vec<String> = topics
                .values()
                .filter(|t| t.pinned.load(Ordering::Relaxed))
                .map(|t| t.name.clone())
                .collect();
            for topic in topics.values() {
                self.total
                    .fetch_sub(topic.retained_cost(), Ordering::AcqRel);
            }
            topics.clear();
            for name in pinned {
                if let Ok(topic) = self.topic(&mut topics, &name) {
                    topic.pinned.store(true, Ordering::Relaxed);
                }
            }
        }
        *write(&self.run) = run.to_string();
        self.watermark.store(seq, Ordering::Release);
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
    use super::*;
    use std::time::Duration;

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

    #[test]
    fn a_mirror_that_forgets_a_topic_holding_events_stops_counting_them() {
        // Cycles of "a subscriber comes, events arrive, it leaves": the
        // budget's count stays the bytes held, and never trims a reader.
        let hub = Hub::new(keep(1000), 10, 3 * 1024 * 1024);
        let mut seq = 0;
        for _ in 0..6 {
            let n = notify();
            let (mut subs, _) = hub.subscribe_live(&names(&["t"]), &n).unwrap();
            for _ in 0..400 {
                seq += 1;
                hub.insert_remote("t", seq, Event::message("x".repeat(2000)));
            }
            let mut out = Vec::new();
            // Everything arrived: no gap.
            assert_eq!(subs[0].take(u64::MAX, &mut out), None);
            assert_eq!(out.len(), 400);
            drop(subs);
            hub.forget(&names(&["t"]));
            assert_eq!(hub.topics().len(), 0);
            assert_eq!(hub.total.load(Ordering::Acquire), 0);
        }
    }

    #[test]
    fn every_subscriber_gets_every_event_in_order() {
        let topic = Topic::standalone("t", 8, None);
        let mut subs: Vec<_> = (0..3).map(|_| topic.subscribe(notify(), 0)).collect();
        for i in 0..5 {
            assert_eq!(topic.publish(i, Event::message(i.to_string())), 3);
        }
        for sub in &mut subs {
            let mut out = Vec::new();
            assert_eq!(sub.take(u64::MAX, &mut out), None);
            assert_eq!(data(&out), ["0", "1", "2", "3", "4"]);
            out.clear();
            assert_eq!(sub.take(u64::MAX, &mut out), None);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn a_slow_subscriber_learns_what_it_missed() {
        let topic = Topic::standalone("t", 0, None);
        let mut sub = topic.subscribe(notify(), 0);
        for i in 0..(LIVE_RING as u64 + 2) {
            topic.publish(i + 1, Event::message(i.to_string()));
        }
        let mut out = Vec::new();
        let gap = sub.take(u64::MAX, &mut out).unwrap();
        assert_eq!(
            gap,
            Gap {
                topic: "t".into(),
                missed: Some(2),
                through: Some(2)
            }
        );
        assert_eq!(out.len(), LIVE_RING);
        assert_eq!(out[0].seq, 3);
    }

    #[test]
    fn the_watermark_holds_back_later_events() {
        let topic = Topic::standalone("t", 8, None);
        let mut sub = topic.subscribe(notify(), 0);
        topic.publish(5, Event::message("five"));
        topic.publish(9, Event::message("nine"));
        let mut out = Vec::new();
        sub.take(5, &mut out);
        assert_eq!(data(&out), ["five"]);
        sub.take(9, &mut out);
        assert_eq!(data(&out), ["five", "nine"]);
    }

    #[test]
    fn late_subscriber_can_see_the_latest() {
        let topic = Topic::standalone("t", 4, None);
        topic.publish(1, Event::message("old"));
        topic.publish(2, Event::message("new"));
        let mut sub = topic.subscribe(notify(), 1);
        let mut out = Vec::new();
        sub.take(u64::MAX, &mut out);
        assert_eq!(data(&out), ["new"]);
        topic.clear();
        let mut sub = topic.subscribe(notify(), 1);
        out.clear();
        sub.take(u64::MAX, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn resuming_replays_exactly_what_was_missed() {
        for (after, expected) in [
            (0, vec!["2", "4", "6", "8"]),
            (4, vec!["6", "8"]),
            (5, vec!["6", "8"]),
            (8, vec![]),
        ] {
            let topic = Topic::build("t", keep(100), None, None);
            for seq in [2, 4, 6, 8] {
                topic.publish(seq, Event::message(seq.to_string()));
            }
            let (mut sub, gap, _) = topic.subscribe_after(notify(), after);
            assert_eq!(gap, None);
            let mut out = Vec::new();
            sub.take(u64::MAX, &mut out);
            assert_eq!(data(&out), expected, "after {after}");
            topic.publish(100 + after, Event::message("live"));
            out.clear();
            sub.take(u64::MAX, &mut out);
            assert_eq!(data(&out), ["live"]);
        }
    }

    #[test]
    fn resuming_past_the_history_is_a_gap() {
        // History 2 (a live ring of 64 still holds more).
        let topic = Topic::build("t", keep(2), None, None);
        for seq in 1..=5 {
            topic.publish(seq, Event::message(seq.to_string()));
        }
        let (mut sub, gap, replayed) = topic.subscribe_after(notify(), 1);
        assert_eq!(replayed, 2);
        assert_eq!(
            gap,
            Some(Gap {
                topic: "t".into(),
                missed: None,
                through: Some(3)
            })
        );
        let mut out = Vec::new();
        sub.take(u64::MAX, &mut out);
        assert_eq!(data(&out), ["4", "5"]);
        // Evicted by bytes: 3 events of 4 bytes, at most 8 bytes kept.
        let topic = Topic::build(
            "b",
            Retention {
                history: 100,
                bytes: 8,
            },
            None,
            None,
        );
        for seq in 1..=3 {
            topic.publish(seq, Event::message("abcd"));
        }
        let (_, gap, _) = topic.subscribe_after(notify(), 0);
        assert_eq!(gap.unwrap().through, Some(1));
        let (_, gap, _) = topic.subscribe_after(notify(), 1);
        assert_eq!(gap, None);
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
        let hub = Hub::new(keep(10), 2, usize::MAX);
        let (id1, reached) = hub.publish("a", Event::message("x")).unwrap();
        let (id2, _) = hub.publish("a", Event::message("y")).unwrap();
        assert_eq!(
            (id1.as_str(), reached.subscribers()),
            (hub.id(1).as_str(), 0)
        );
        reached.run();
        assert_eq!(id2, hub.id(2));
        assert_eq!(hub.resume(None), Resume::Live);
        assert_eq!(hub.resume(Some("")), Resume::Live);
        assert_eq!(hub.resume(Some(&id1)), Resume::After(1));
        let other_run = if hub.run() == "00000000" {
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
        let hub = Hub::new(keep(10), 10, usize::MAX);
        for (topic, data) in [("a", "1"), ("b", "2"), ("a", "3"), ("b", "4")] {
            hub.publish(topic, Event::message(data)).unwrap().1.run();
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
        let hub = Hub::new(keep(10), 10, usize::MAX);
        for (topic, data) in [
            ("a", "1"),
            ("b", "2"),
            ("a", "3"),
            ("c", "x"),
            ("b", "4"),
            ("a", "5"),
        ] {
            hub.publish(topic, Event::message(data)).unwrap().1.run();
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
        let hub = Hub::new(keep(10), 10, usize::MAX);
        hub.pin("logs").unwrap();
        hub.release(&names(&["logs"]));
        assert_eq!(hub.topics().len(), 1);
        assert!(matches!(hub.pin("a b"), Err(TopicError::BadName(_))));
    }

    #[test]
    fn topic_names_the_cap_and_idle_topics() {
        let hub = Hub::new(keep(10), 2, usize::MAX);
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
        hub.publish("b", Event::message("x")).unwrap().1.run();
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
        let hub = Hub::new(keep(1000), 10, 10 * one + one / 2);
        let w = notify();
        let (mut subs, _) = hub.subscribe(&names(&["big"]), &w, &Resume::Live).unwrap();
        for _ in 0..8 {
            hub.publish("big", Event::message("x".repeat(100)))
                .unwrap()
                .1
                .run();
        }
        for _ in 0..2 {
            hub.publish("few", Event::message("x".repeat(100)))
                .unwrap()
                .1
                .run();
        }
        // (Ids from 10 on are one byte longer.)
        assert!((10 * one..10 * one + 10).contains(&hub.retained()));
        // Two more to "few": "big" is the largest and pays for both.
        for _ in 0..2 {
            hub.publish("few", Event::message("x".repeat(100)))
                .unwrap()
                .1
                .run();
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
            hub.publish("few", Event::message("x".repeat(100)))
                .unwrap()
                .1
                .run();
        }
        assert_eq!((held("big"), held("few")), (5, 5));
    }

    #[test]
    fn a_ring_the_budget_trimmed_gives_its_room_back() {
        let hub = Hub::new(keep(1000), 10, usize::MAX);
        for _ in 0..1000 {
            hub.publish("t", Event::message("x")).unwrap().1.run();
        }
        let topic = &hub.topics()[0];
        assert!(read(&topic.ring).entries.capacity() >= 1000);
        topic.clear();
        assert!(read(&topic.ring).entries.capacity() <= LIVE_RING * 2);
        let subs: Vec<_> = (0..1000).map(|_| topic.subscribe(notify(), 0)).collect();
        drop(subs);
        assert!(read(&topic.ring).subscribers.capacity() <= 128);
    }

    #[test]
    fn dropping_unsubscribes_and_publish_wakes() {
        let topic = Topic::standalone("t", 4, None);
        let w = waker();
        let sub = topic.subscribe(Arc::clone(&w) as Arc<dyn Notify>, 0);
        assert_eq!(topic.subscribers(), 1);
        topic.publish(1, Event::message("x"));
        assert!(w.wait(Duration::from_secs(5)));
        assert!(!w.wait(Duration::from_millis(1)));
        drop(sub);
        assert_eq!(topic.subscribers(), 0);
    }

    #[test]
    fn first_subscriber_rings_the_producer() {
        let producer = waker();
        let topic = Topic::standalone("t", 4, Some(Arc::clone(&producer)));
        let a = topic.subscribe(notify(), 0);
        assert!(producer.wait(Duration::from_secs(5)));
        let _b = topic.subscribe(notify(), 0);
        assert!(!producer.wait(Duration::from_millis(1)));
        drop(a);
    }
}
