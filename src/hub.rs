//! Topics: broadcast of events to any number of subscribers.
//!
//! A [`Topic`] keeps its recent events in a ring and the [`Waker`]s of its
//! subscribers. Publishing appends to the ring and wakes each subscriber; it
//! never writes to a socket and never waits for a reader, so its cost does not
//! depend on how slow the readers are. Each [`Subscription`] reads the ring at
//! its own cursor; one that falls further behind than the ring holds is told
//! how many events it missed.
//!
//! The hub knows nothing of HTTP.

use crate::sse::Event;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Locks a mutex, carrying on if a thread panicked while holding it: every
/// structure guarded here stays consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A one-bit doorbell a thread sleeps on: rung by publishers and by shutdown.
#[derive(Default)]
pub struct Waker {
    rung: Mutex<bool>,
    bell: Condvar,
}

impl Waker {
    pub fn wake(&self) {
        *lock(&self.rung) = true;
        self.bell.notify_one();
    }

    /// Sleeps until rung or until `timeout` has passed; a ring that came
    /// before the call is not lost. Returns whether it was rung.
    pub fn wait(&self, timeout: Duration) -> bool {
        let rung = lock(&self.rung);
        let (mut rung, _) = self
            .bell
            .wait_timeout_while(rung, timeout, |rung| !*rung)
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *rung, false)
    }
}

/// A named stream of events with a bounded memory of the latest ones.
pub struct Topic {
    ring: Mutex<Ring>,
    /// Rung when the topic gains a first subscriber, so a producer that idles
    /// while nobody watches can start again.
    on_first_subscriber: Option<Arc<Waker>>,
}

struct Ring {
    events: VecDeque<Arc<Event>>,
    /// Sequence number of `events[0]`; sequence numbers count every event
    /// ever published to this topic.
    first: u64,
    capacity: usize,
    subscribers: Vec<Arc<Waker>>,
}

impl Ring {
    fn next(&self) -> u64 {
        self.first + self.events.len() as u64
    }
}

/// What a subscriber missed because the ring had moved past its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed(pub u64);

impl Topic {
    /// A topic that remembers up to `capacity` events (at least one, so that
    /// a subscriber woken by a publish always finds the event there).
    pub fn new(capacity: usize) -> Arc<Topic> {
        Self::build(capacity, None)
    }

    /// Like [`Topic::new`], ringing `waker` whenever the topic goes from no
    /// subscribers to one.
    pub fn with_producer(capacity: usize, waker: Arc<Waker>) -> Arc<Topic> {
        Self::build(capacity, Some(waker))
    }

    fn build(capacity: usize, on_first_subscriber: Option<Arc<Waker>>) -> Arc<Topic> {
        let capacity = capacity.max(1);
        Arc::new(Topic {
            ring: Mutex::new(Ring {
                events: VecDeque::with_capacity(capacity.min(64)),
                first: 0,
                capacity,
                subscribers: Vec::new(),
            }),
            on_first_subscriber,
        })
    }

    /// Appends `event` and wakes every subscriber. Returns how many there were.
    pub fn publish(&self, event: Event) -> usize {
        let mut ring = lock(&self.ring);
        if ring.events.len() == ring.capacity {
            ring.events.pop_front();
            ring.first += 1;
        }
        ring.events.push_back(Arc::new(event));
        for waker in &ring.subscribers {
            waker.wake();
        }
        ring.subscribers.len()
    }

    /// Subscribes from the next event on, plus up to `latest` of those already
    /// in the ring (for a late viewer of a slow-changing value).
    pub fn subscribe(self: &Arc<Self>, waker: Arc<Waker>, latest: usize) -> Subscription {
        let mut ring = lock(&self.ring);
        ring.subscribers.push(Arc::clone(&waker));
        if ring.subscribers.len() == 1 {
            if let Some(producer) = &self.on_first_subscriber {
                producer.wake();
            }
        }
        let cursor = ring.next() - latest.min(ring.events.len()) as u64;
        Subscription {
            topic: Arc::clone(self),
            waker,
            cursor,
        }
    }

    pub fn subscribers(&self) -> usize {
        lock(&self.ring).subscribers.len()
    }

    /// Forgets the retained events (a producer going idle, whose last value
    /// would be stale by the time anyone sees it).
    pub fn clear(&self) {
        let mut ring = lock(&self.ring);
        ring.first = ring.next();
        ring.events.clear();
    }
}

/// One reader's position in a topic. Dropping it unsubscribes.
pub struct Subscription {
    topic: Arc<Topic>,
    waker: Arc<Waker>,
    cursor: u64,
}

impl Subscription {
    /// Moves every event past the cursor into `out`. If the ring no longer
    /// holds some of them, skips to the oldest it holds and says how many
    /// were lost.
    pub fn take(&mut self, out: &mut Vec<Arc<Event>>) -> Option<Missed> {
        let ring = lock(&self.topic.ring);
        let missed = ring.first.checked_sub(self.cursor).filter(|&n| n > 0);
        if missed.is_some() {
            self.cursor = ring.first;
        }
        let start = (self.cursor - ring.first) as usize;
        out.extend(ring.events.range(start..).cloned());
        self.cursor = ring.next();
        missed.map(Missed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut ring = lock(&self.topic.ring);
        if let Some(i) = ring
            .subscribers
            .iter()
            .position(|w| Arc::ptr_eq(w, &self.waker))
        {
            ring.subscribers.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(events: &[Arc<Event>]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn every_subscriber_gets_every_event_in_order() {
        let topic = Topic::new(8);
        let mut subs: Vec<_> = (0..3)
            .map(|_| topic.subscribe(Arc::new(Waker::default()), 0))
            .collect();
        for i in 0..5 {
            assert_eq!(topic.publish(Event::message(i.to_string())), 3);
        }
        for sub in &mut subs {
            let mut out = Vec::new();
            assert_eq!(sub.take(&mut out), None);
            assert_eq!(data(&out), ["0", "1", "2", "3", "4"]);
            out.clear();
            assert_eq!(sub.take(&mut out), None);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn a_slow_subscriber_learns_what_it_missed() {
        let topic = Topic::new(3);
        let mut sub = topic.subscribe(Arc::new(Waker::default()), 0);
        for i in 0..5 {
            topic.publish(Event::message(i.to_string()));
        }
        let mut out = Vec::new();
        assert_eq!(sub.take(&mut out), Some(Missed(2)));
        assert_eq!(data(&out), ["2", "3", "4"]);
    }

    #[test]
    fn late_subscriber_can_see_the_latest() {
        let topic = Topic::new(4);
        topic.publish(Event::message("old"));
        topic.publish(Event::message("new"));
        let mut sub = topic.subscribe(Arc::new(Waker::default()), 1);
        let mut out = Vec::new();
        sub.take(&mut out);
        assert_eq!(data(&out), ["new"]);
        topic.clear();
        let mut sub = topic.subscribe(Arc::new(Waker::default()), 1);
        out.clear();
        sub.take(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn dropping_unsubscribes_and_publish_wakes() {
        let topic = Topic::new(4);
        let waker = Arc::new(Waker::default());
        let sub = topic.subscribe(Arc::clone(&waker), 0);
        assert_eq!(topic.subscribers(), 1);
        topic.publish(Event::message("x"));
        assert!(waker.wait(Duration::from_secs(5)));
        assert!(!waker.wait(Duration::from_millis(1)));
        drop(sub);
        assert_eq!(topic.subscribers(), 0);
    }

    #[test]
    fn first_subscriber_rings_the_producer() {
        let producer = Arc::new(Waker::default());
        let topic = Topic::with_producer(4, Arc::clone(&producer));
        let a = topic.subscribe(Arc::new(Waker::default()), 0);
        assert!(producer.wait(Duration::from_secs(5)));
        let _b = topic.subscribe(Arc::new(Waker::default()), 0);
        assert!(!producer.wait(Duration::from_millis(1)));
        drop(a);
    }
}
