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

use crate::hub::{Published, Topic};
use crate::waker::lock;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

/// The fan-out workers, and their queue of topics with news.
pub struct Fanouts {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<VecDeque<Arc<Topic>>>,
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
        lock(&self.shared.queue).push_back(topic);
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
                if let Some(topic) = queue.pop_front() {
                    break topic;
                }
                if shared.stopping.load(Ordering::Acquire) {
                    return;
                }
                queue = shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        // Unqueued before the snapshot: an event published from here on
        // queues the topic again, so none is left without a pass.
        topic.fanout().run();
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
