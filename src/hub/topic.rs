//! A topic: a ring of its recent events, its subscribers, and each
//! subscriber's cursor. Publishing appends to the ring and has the
//! subscribers told through its [`Dispatch`] (the hub's fan-out); nothing a subscriber
//! does can make a publish wait. Each [`Subscription`] reads the ring at
//! its own cursor; one that falls further behind than the ring holds is
//! told what it missed ([`Gap`]).

use crate::sse::Event;
use crate::sync::{read, write, Doorbell};
/// Who has a topic's subscribers told of what it inserted: the hub's
/// fan-out (`fanout.rs`), on its workers or inline.
pub trait Dispatch: Send + Sync {
    fn dispatch(&self, topic: Arc<Topic>);
}

/// Someone to tell that a topic has new events.
pub trait Notify: Send + Sync {
    /// Called after events were added, on the publisher's thread; must not
    /// wait for anything a reader controls.
    fn notify(&self);

    /// The topic was closed (the mirror's [`super::Hub::rejoin`] with a reset): the reader's own thread must
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant};

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
pub(super) const LIVE_RING: usize = 64;

/// A stream of events with a bounded memory of the latest ones.
pub struct Topic {
    pub(super) name: String,
    /// Read by every subscriber after each publish, written by publishes:
    /// a read-write lock lets the readers in together.
    pub(super) ring: RwLock<Ring>,
    /// Rung when the topic gains a first subscriber, so a producer that idles
    /// while nobody watches can start again.
    on_first_subscriber: Option<Arc<Doorbell>>,
    published: AtomicU64,
    /// The hub's running total of retained cost, kept up to date by this
    /// topic's inserts and evictions; `None` outside a hub.
    hub_total: Option<Arc<AtomicUsize>>,
    /// Waiting for a fan-out pass (see `fanout`).
    queued: AtomicBool,
    /// Kept even when idle: a source feeds it (see [`super::Hub::pin`]).
    pub(super) pinned: AtomicBool,
    /// The hub was reset under it: its readers' streams end.
    closed: AtomicBool,
    /// Deleted (`DELETE /events/{topic}`): its readers are told, and let
    /// go of it.
    deleted: AtomicBool,
    /// Who tells its subscribers of what it inserts.
    fanouts: Arc<dyn Dispatch>,
}

/// One retained event, its sequence number, and when it was inserted.
#[derive(Clone)]
pub struct Entry {
    pub seq: u64,
    pub event: Arc<Event>,
    pub at: Instant,
}

pub(super) struct Ring {
    pub(super) entries: VecDeque<Entry>,
    /// Position of `entries[0]` among all events ever published here:
    /// subscription cursors count in positions.
    pub(super) first: u64,
    pub(super) capacity: usize,
    /// How many of the newest entries may be replayed.
    pub(super) history: usize,
    pub(super) max_bytes: usize,
    pub(super) bytes: usize,
    /// What the entries cost the hub-wide budget ([`cost`]).
    pub(super) cost: usize,
    /// Sequence number of the newest event dropped from the ring.
    pub(super) evicted_through: Option<u64>,
    pub(super) subscribers: Vec<Arc<dyn Notify>>,
    /// `--history-ttl`: events older than this are not kept.
    pub(super) ttl: Option<Duration>,
}

impl Ring {
    fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// After evictions: a ring that held many and holds few gives its
    /// room back (a thousand topics trimmed by the budget would otherwise
    /// keep the slots of their fullest moment).
    pub(super) fn shrink(&mut self) {
        if self.entries.capacity() > LIVE_RING && self.entries.len() < self.entries.capacity() / 4 {
            self.entries
                .shrink_to((self.entries.len() * 2).max(LIVE_RING));
        }
    }

    /// Drops the entries older than the ttl, if there is one; returns what
    /// they cost.
    pub(super) fn expire(&mut self, now: Instant) -> usize {
        let Some(ttl) = self.ttl else {
            return 0;
        };
        let mut freed = 0;
        while self
            .entries
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.at) >= ttl)
        {
            freed += self.evict_oldest();
        }
        if freed > 0 {
            self.shrink();
        }
        freed
    }

    /// Drops the oldest entry; returns its cost.
    pub(super) fn evict_oldest(&mut self) -> usize {
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
pub(super) fn cost(event: &Event) -> usize {
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
    pub fn standalone(
        name: &str,
        capacity: usize,
        producer: Option<Arc<Doorbell>>,
        fanouts: Arc<dyn Dispatch>,
    ) -> Arc<Topic> {
        let keep = Retention {
            history: capacity,
            bytes: usize::MAX,
        };
        Self::build(name, keep, producer, None, fanouts)
    }

    pub(super) fn build(
        name: &str,
        keep: Retention,
        on_first_subscriber: Option<Arc<Doorbell>>,
        hub_total: Option<Arc<AtomicUsize>>,
        fanouts: Arc<dyn Dispatch>,
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
                ttl: None,
            }),
            on_first_subscriber,
            published: AtomicU64::new(0),
            hub_total,
            queued: AtomicBool::new(false),
            pinned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            fanouts,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends `event` as number `seq` (which must exceed every earlier one)
    /// and has its subscribers told (see [`Dispatch`]).
    pub fn publish(self: &Arc<Self>, seq: u64, event: Event) {
        self.insert(seq, event);
        self.fanouts.dispatch(Arc::clone(self));
    }

    /// Appends without telling anyone: the caller dispatches once its
    /// locks are let go (see [`super::Hub::publish`]).
    pub(super) fn insert(&self, seq: u64, event: Event) {
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
            at: Instant::now(),
        });
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    /// The subscribers to tell of what was inserted so far. Taking them
    /// ends the topic's wait in the fan-out queue: what is published after
    /// this queues it again.
    pub(crate) fn take_news(&self) -> Vec<Arc<dyn Notify>> {
        self.queued.store(false, Ordering::SeqCst);
        read(&self.ring).subscribers.clone()
    }

    /// Has its subscribers told where it stands (a mirror's dispatch).
    pub(super) fn dispatch(self: &Arc<Self>) {
        self.fanouts.dispatch(Arc::clone(self));
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
        let mut ring = self.register(&notify);
        // Events past their age are not replayed, whether or not the sweep
        // came by yet: dropped now, so the gap below names them.
        let freed = ring.expire(Instant::now());
        if let Some(total) = &self.hub_total {
            total.fetch_sub(freed, Ordering::AcqRel);
        }
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
    pub(super) fn retained_cost(&self) -> usize {
        read(&self.ring).cost
    }

    pub(super) fn is_idle(&self) -> bool {
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
    /// Deletes the topic: its events are dropped (returns what they cost
    /// the hub's budget), and its subscribers told, each of which lets go
    /// of it after a last `deleted` event.
    pub(super) fn delete(&self) -> usize {
        self.deleted.store(true, Ordering::Release);
        let mut ring = write(&self.ring);
        let cost = ring.cost;
        ring.entries.clear();
        ring.bytes = 0;
        ring.cost = 0;
        ring.shrink();
        let subscribers = ring.subscribers.clone();
        drop(ring);
        for s in subscribers {
            s.closed();
        }
        cost
    }

    /// Drops its events older than the ttl (the hub's sweep); returns
    /// what they cost.
    pub(super) fn expire(&self, now: Instant) -> usize {
        let mut ring = write(&self.ring);
        let freed = ring.expire(now);
        if let Some(total) = &self.hub_total {
            total.fetch_sub(freed, Ordering::AcqRel);
        }
        freed
    }

    pub(super) fn set_ttl(&self, ttl: Option<Duration>) {
        write(&self.ring).ttl = ttl;
    }

    /// The newest event it dropped, if any: what a topic of the same name
    /// made later must still report as missed.
    pub(super) fn evicted_through(&self) -> Option<u64> {
        read(&self.ring).evicted_through
    }

    /// A topic made again after one of its name was forgotten: events up
    /// to `seq` were dropped, and a resume from before is told.
    pub(super) fn forgot_through(&self, seq: u64) {
        let mut ring = write(&self.ring);
        ring.evicted_through = ring.evicted_through.max(Some(seq));
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let subscribers = read(&self.ring).subscribers.clone();
        for s in subscribers {
            s.closed();
        }
    }

    /// The sequence numbers of the newest `n` events that may be replayed.
    pub(super) fn newest(&self, n: usize) -> Vec<u64> {
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

    /// Events it has yet to read.
    pub fn owed(&self) -> u64 {
        read(&self.topic.ring).next().saturating_sub(self.cursor)
    }

    /// Whether its topic was deleted: the reader says so and lets go.
    pub fn is_deleted(&self) -> bool {
        self.topic.is_deleted()
    }

    pub fn topic_name(&self) -> &str {
        &self.topic.name
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Fanouts;
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

    /// A doorbell as the topics hold it.
    fn notify() -> Arc<dyn Notify> {
        waker()
    }

    #[test]
    fn every_subscriber_gets_every_event_in_order() {
        let topic = Topic::standalone("t", 8, None, Fanouts::inline());
        let mut subs: Vec<_> = (0..3).map(|_| topic.subscribe(notify(), 0)).collect();
        assert_eq!(topic.subscribers(), 3);
        for i in 0..5 {
            topic.publish(i, Event::message(i.to_string()));
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
        let topic = Topic::standalone("t", 0, None, Fanouts::inline());
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
        let topic = Topic::standalone("t", 8, None, Fanouts::inline());
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
        let topic = Topic::standalone("t", 4, None, Fanouts::inline());
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
            let topic = Topic::build("t", keep(100), None, None, Fanouts::inline());
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
        let topic = Topic::build("t", keep(2), None, None, Fanouts::inline());
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
            Fanouts::inline(),
        );
        for seq in 1..=3 {
            topic.publish(seq, Event::message("abcd"));
        }
        let (_, gap, _) = topic.subscribe_after(notify(), 0);
        assert_eq!(gap.unwrap().through, Some(1));
        let (_, gap, _) = topic.subscribe_after(notify(), 1);
        assert_eq!(gap, None);
    }

    #[test]
    fn dropping_unsubscribes_and_publish_wakes() {
        let topic = Topic::standalone("t", 4, None, Fanouts::inline());
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
        let topic = Topic::standalone("t", 4, Some(Arc::clone(&producer)), Fanouts::inline());
        let a = topic.subscribe(notify(), 0);
        assert!(producer.wait(Duration::from_secs(5)));
        let _b = topic.subscribe(notify(), 0);
        assert!(!producer.wait(Duration::from_millis(1)));
        drop(a);
    }
}
