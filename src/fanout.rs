//! The threads that carry what is published to the subscribers.
//!
//! A publish inserts its event and hands the topic to [`Fanouts`]; a worker
//! then notifies the topic's subscribers, and each writes what it is owed
//! at once if it can (see `stream::Outlet`). The publisher's thread goes on
//! to its next request meanwhile. While a worker works through thousands of
//! subscribers, more events may be published to the topic: the subscribers
//! it reaches later write those too, in the same write, and the next pass
//! finds little left to do. Under load, deliveries are batched as an event
//! loop batches them, one write for several events; at rest each event is
//! one write.
//!
//! A topic is queued at most once at a time: a publish to a topic that is
//! already waiting adds nothing to the queue.
//!
//! **Pacing.** When events keep coming faster than passes end (a topic was
//! published to again during its own pass), the topic rests for a quarter
//! of the time its pass took ([`PACE`], at most [`MAX_REST`]) before the
//! next one, while the workers serve other topics. The events of the rest
//! go out in the same writes as the others: under saturation this trades
//! about a quarter of a pass of latency for a fifth less CPU per delivery
//! (`make bench-compare`, scenario b: 4.0 to 3.2 µs, p99 unchanged within
//! noise). A topic that keeps up (each pass ends before the next event) is
//! never paced.

use crate::hub::{Published, Topic};
use crate::waker::lock;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A saturated topic rests this fraction of its last pass's time.
pub const PACE: f64 = 0.25;
/// The longest rest, whatever the pass took.
pub const MAX_REST: Duration = Duration::from_millis(100);
/// Passes shorter than this are never followed by a rest.
const MIN_PASS: Duration = Duration::from_millis(1);

/// Topics with news: those due now, and those resting until a moment.
#[derive(Default)]
struct Queue {
    ready: VecDeque<Arc<Topic>>,
    resting: Vec<(Instant, Arc<Topic>)>,
}

impl Queue {
    /// Moves the topics whose rest is over (all of them if `all`) to ready.
    fn wake_rested(&mut self, now: Instant, all: bool) {
        let mut i = 0;
        while i < self.resting.len() {
            if all || self.resting[i].0 <= now {
                let (_, topic) = self.resting.swap_remove(i);
                self.ready.push_back(topic);
            } else {
                i += 1;
            }
        }
    }

    /// Moves `topic` from ready to resting until `until`, if it is ready.
    fn rest(&mut self, topic: &Arc<Topic>, until: Instant) {
        if let Some(i) = self.ready.iter().position(|t| Arc::ptr_eq(t, topic)) {
            if let Some(t) = self.ready.remove(i) {
                self.resting.push((until, t));
            }
        }
    }
}

/// The fan-out workers, and their queue of topics with news.
pub struct Fanouts {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    stopping: AtomicBool,
}

impl Fanouts {
    /// Starts `workers` threads.
    pub fn start(workers: usize) -> io::Result<Fanouts> {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            ready: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let fanouts = Fanouts {
            shared,
            workers: Mutex::default(),
        };
        for i in 0..workers.max(1) {
            let shared = Arc::clone(&fanouts.shared);
            let worker = thread::Builder::new()
                .name(format!("ssed-fanout-{i}"))
                .spawn(move || work(&shared))?;
            lock(&fanouts.workers).push(worker);
        }
        Ok(fanouts)
    }

    /// Has the subscribers of what was just published notified.
    pub fn dispatch(&self, published: Published) {
        let topic = published.into_topic();
        if !topic.queue_for_fanout() {
            // Queued already: the pass to come covers this event too.
            return;
        }
        lock(&self.shared.queue).ready.push_back(topic);
        self.shared.ready.notify_one();
    }

    /// Finishes what is queued, then stops and joins the workers.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        {
            // Taken so that no worker is between its check and its wait.
            let _queue = lock(&self.shared.queue);
            self.shared.ready.notify_all();
        }
        let workers: Vec<_> = lock(&self.workers).drain(..).collect();
        for worker in workers {
            let _ = worker.join();
        }
    }
}

impl Drop for Fanouts {
    fn drop(&mut self) {
        self.stop();
    }
}

fn work(shared: &Shared) {
    loop {
        let topic = {
            let mut queue = lock(&shared.queue);
            loop {
                let stopping = shared.stopping.load(Ordering::Acquire);
                // At shutdown nothing rests: what is queued goes out now.
                queue.wake_rested(Instant::now(), stopping);
                if let Some(topic) = queue.ready.pop_front() {
                    break topic;
                }
                if stopping {
                    return;
                }
                let next = queue.resting.iter().map(|(at, _)| *at).min();
                queue = match next {
                    Some(at) => {
                        let wait = at.saturating_duration_since(Instant::now());
                        shared
                            .ready
                            .wait_timeout(queue, wait)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                    None => shared
                        .ready
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner),
                };
            }
        };
        // Unqueued before the snapshot: an event published from here on
        // queues the topic again, so none is left without a pass.
        let started = Instant::now();
        topic.fanout().run();
        let took = started.elapsed();
        if took >= MIN_PASS && topic.is_queued() {
            // Published to during its own pass: saturated. Let the next
            // events gather while other topics are served.
            let rest = took.mul_f64(PACE).min(MAX_REST);
            lock(&shared.queue).rest(&topic, Instant::now() + rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Hub, Notify, Resume, Retention};
    use crate::sse::Event;
    use crate::waker::Waker;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Counts notifications and rings when told of one.
    struct Counter(AtomicUsize, Waker);

    impl Notify for Counter {
        fn notify(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.wake();
        }
    }

    /// Logs its name on each notification, and runs `during` on the first.
    struct Logger {
        name: &'static str,
        log: Arc<Mutex<Vec<&'static str>>>,
        during: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl Notify for Logger {
        fn notify(&self) {
            lock(&self.log).push(self.name);
            if let Some(during) = lock(&self.during).take() {
                during();
                // A pass long enough to count as saturated.
                std::thread::sleep(MIN_PASS * 4);
            }
        }
    }

    #[test]
    fn a_saturated_topic_rests_while_others_are_served_and_nothing_is_lost() {
        let hub = Arc::new(Hub::new(
            Retention {
                history: 10,
                bytes: usize::MAX,
            },
            10,
            usize::MAX,
        ));
        let fanouts = Arc::new(Fanouts::start(1).unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let busy = {
            let (hub, fanouts) = (Arc::clone(&hub), Arc::clone(&fanouts));
            Arc::new(Logger {
                name: "busy",
                log: Arc::clone(&log),
                // During busy's first pass: busy gets news again, then quiet.
                during: Mutex::new(Some(Box::new(move || {
                    for topic in ["busy", "quiet"] {
                        let (_, p) = hub.publish(topic, Event::message("2")).unwrap();
                        fanouts.dispatch(p);
                    }
                }))),
            })
        };
        let quiet = Arc::new(Logger {
            name: "quiet",
            log: Arc::clone(&log),
            during: Mutex::new(None),
        });
        let subscribe = |topic: &str, n: Arc<dyn Notify>| {
            hub.subscribe(&[topic.to_string()], &n, &Resume::Live)
                .unwrap()
                .0
        };
        let _busy_sub = subscribe("busy", busy);
        let _quiet_sub = subscribe("quiet", quiet);
        let (_, p) = hub.publish("busy", Event::message("1")).unwrap();
        fanouts.dispatch(p);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lock(&log).len() < 3 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        fanouts.stop();
        // Without the rest, busy's second pass would come before quiet's.
        assert_eq!(*lock(&log), ["busy", "quiet", "busy"]);
    }

    #[test]
    fn every_publish_is_fanned_out_and_a_queued_topic_once() {
        let hub = Hub::new(
            Retention {
                history: 10,
                bytes: usize::MAX,
            },
            10,
            usize::MAX,
        );
        let counter = Arc::new(Counter(AtomicUsize::new(0), Waker::default()));
        let as_notify: Arc<dyn Notify> = counter.clone();
        let (_subs, _) = hub
            .subscribe(&["t".to_string()], &as_notify, &Resume::Live)
            .unwrap();
        let fanouts = Fanouts::start(1).unwrap();
        for i in 0..100 {
            let (_, published) = hub.publish("t", Event::message(i.to_string())).unwrap();
            fanouts.dispatch(published);
        }
        fanouts.stop();
        let n = counter.0.load(Ordering::SeqCst);
        // At least one pass after the last publish; never more than one a publish.
        assert!((1..=100).contains(&n), "{n} notifications");
        let hub_topic = hub.topics().pop().unwrap();
        assert!(hub_topic.queue_for_fanout(), "nothing left queued");
        assert!(counter.1.wait(Duration::ZERO));
    }
}
