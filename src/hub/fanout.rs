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
//! already waiting adds nothing to the queue. Its passes never overlap.
//!
//! **Sharing.** There is a worker a core (at most [`MAX_WORKERS`]). A topic
//! that keeps up (its last pass ended before its next event) has the
//! other workers help with its pass, [`SHARE`] subscribers at a time: a
//! pass over 10,000 subscribers then ends in about half the time on two
//! cores (`make bench-compare`, scenario f: p99 76 to 82 ms against 102 to
//! 117 ms with one worker). A saturated topic is not shared: the cores are
//! busy already, and a longer pass carries more events in each write
//! (scenarios b and d, shared always: p99 117 to 134 ms against 64 to 76,
//! and 170 to 247 against 136 to 153).
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

use super::topic::{Dispatch, Notify, Topic};
use crate::sync::{lock, Crew};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A saturated topic rests this fraction of its last pass's time.
pub const PACE: f64 = 0.25;
/// The longest rest, whatever the pass took.
pub const MAX_REST: Duration = Duration::from_millis(100);
/// Passes shorter than this are never followed by a rest.
const MIN_PASS: Duration = Duration::from_millis(1);
/// Subscribers a worker notifies at a time when a pass is shared.
pub const SHARE: usize = 256;
/// Workers at most, whatever the cores.
pub const MAX_WORKERS: usize = 4;

/// A topic with news, and whether its last pass was saturated (it comes
/// back from a rest).
struct Due {
    topic: Arc<Topic>,
    saturated: bool,
}

/// Topics with news: those due now, and those resting until a moment; the
/// topics whose pass is under way; and the shared passes with subscribers
/// left to take.
#[derive(Default)]
struct Queue {
    ready: VecDeque<Due>,
    resting: Vec<(Instant, Arc<Topic>)>,
    /// Not started again until their pass ends.
    running: Vec<Arc<Topic>>,
    shared: VecDeque<Arc<Pass>>,
}

impl Queue {
    /// Moves the topics whose rest is over (all of them if `all`) to ready.
    fn wake_rested(&mut self, now: Instant, all: bool) {
        let mut i = 0;
        while i < self.resting.len() {
            if all || self.resting[i].0 <= now {
                let (_, topic) = self.resting.swap_remove(i);
                self.ready.push_back(Due {
                    topic,
                    saturated: true,
                });
            } else {
                i += 1;
            }
        }
    }

    /// Moves `topic` from ready to resting until `until`, if it is ready.
    fn rest(&mut self, topic: &Arc<Topic>, until: Instant) {
        if let Some(i) = self.ready.iter().position(|d| Arc::ptr_eq(&d.topic, topic)) {
            if let Some(d) = self.ready.remove(i) {
                self.resting.push((until, d.topic));
            }
        }
    }

    /// The next thing to do: the first ready topic whose pass is not under
    /// way, else a share of a pass another worker started.
    fn next(&mut self) -> Option<Job> {
        let running = &self.running;
        let free = self
            .ready
            .iter()
            .position(|d| !running.iter().any(|r| Arc::ptr_eq(r, &d.topic)));
        if let Some(due) = free.and_then(|i| self.ready.remove(i)) {
            self.running.push(Arc::clone(&due.topic));
            return Some(Job::Pass(due));
        }
        // Offered passes stay offered until their starter ends them, so
        // that every idle worker may help; one with nothing left to take
        // is dropped from the offers now.
        self.shared.retain(|pass| pass.has_left());
        self.shared.front().map(|pass| Job::Share(Arc::clone(pass)))
    }
}

enum Job {
    /// A topic's pass, to start.
    Pass(Due),
    /// Subscribers of a pass another worker started.
    Share(Arc<Pass>),
}

/// The subscribers of one pass, taken [`SHARE`] at a time by any worker.
struct Pass {
    subscribers: Vec<Arc<dyn Notify>>,
    /// The first subscriber no worker has taken yet.
    next: AtomicUsize,
    /// Shares taken and not finished, and the signal of the last one.
    unfinished: Mutex<usize>,
    finished: Condvar,
}

impl Pass {
    fn new(subscribers: Vec<Arc<dyn Notify>>) -> Pass {
        Pass {
            subscribers,
            next: AtomicUsize::new(0),
            unfinished: Mutex::new(0),
            finished: Condvar::new(),
        }
    }

    fn has_left(&self) -> bool {
        self.next.load(Ordering::Relaxed) < self.subscribers.len()
    }

    /// Notifies shares of the subscribers until none is left to take.
    fn work(&self) {
        loop {
            // Counted before it is taken: the starter's wait never sees
            // zero while a share is being notified.
            *lock(&self.unfinished) += 1;
            let from = self.next.fetch_add(SHARE, Ordering::Relaxed);
            let to = from.saturating_add(SHARE).min(self.subscribers.len());
            for n in self.subscribers.get(from..to).unwrap_or_default() {
                n.notify();
            }
            let mut unfinished = lock(&self.unfinished);
            *unfinished -= 1;
            if *unfinished == 0 {
                self.finished.notify_all();
            }
            if to >= self.subscribers.len() {
                return;
            }
        }
    }

    /// Waits until every share taken is finished.
    fn wait(&self) {
        let mut unfinished = lock(&self.unfinished);
        while *unfinished > 0 {
            unfinished = self
                .finished
                .wait(unfinished)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The fan-out workers, and their queue of topics with news.
pub struct Fanouts {
    /// `None`: no workers, each pass runs on the thread that dispatches
    /// (tests, where a publish must have reached its subscribers when it
    /// returns).
    shared: Option<Arc<Shared>>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    crew: Crew,
    workers: usize,
}

impl Fanouts {
    /// Starts `workers` threads (1 to [`MAX_WORKERS`]).
    pub fn start(workers: usize) -> io::Result<Fanouts> {
        let workers = workers.clamp(1, MAX_WORKERS);
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            ready: Condvar::new(),
            crew: Crew::default(),
            workers,
        });
        for i in 0..workers {
            let s = Arc::clone(&shared);
            shared
                .crew
                .spawn(&format!("ssed-fanout-{i}"), move || work(&s))?;
        }
        Ok(Fanouts {
            shared: Some(shared),
        })
    }

    /// No workers: every pass runs at once, on the thread that dispatches.
    pub fn inline() -> Arc<Fanouts> {
        Arc::new(Fanouts { shared: None })
    }

    /// Finishes what is queued, then stops and joins the workers.
    pub fn stop(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        shared.crew.begin_stop();
        {
            // Taken so that no worker is between its check and its wait.
            let _queue = lock(&shared.queue);
            shared.ready.notify_all();
        }
        shared.crew.join();
    }
}

impl Dispatch for Fanouts {
    /// Has the subscribers of `topic` told of what it holds now.
    fn dispatch(&self, topic: Arc<Topic>) {
        let Some(shared) = &self.shared else {
            for n in topic.take_news() {
                n.notify();
            }
            return;
        };
        if !topic.queue_for_fanout() {
            // Queued already: the pass to come covers this event too.
            return;
        }
        lock(&shared.queue).ready.push_back(Due {
            topic,
            saturated: false,
        });
        shared.ready.notify_one();
    }
}

impl Drop for Fanouts {
    fn drop(&mut self) {
        self.stop();
    }
}

fn work(shared: &Shared) {
    loop {
        let job = {
            let mut queue = lock(&shared.queue);
            loop {
                let stopping = shared.crew.stopping();
                // At shutdown nothing rests: what is queued goes out now.
                queue.wake_rested(Instant::now(), stopping);
                if let Some(job) = queue.next() {
                    break job;
                }
                // A ready topic whose pass is under way is this worker's
                // to wait for, even at shutdown: its pass's end wakes one.
                if stopping && queue.ready.is_empty() {
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
        match job {
            Job::Share(pass) => pass.work(),
            Job::Pass(due) => run_pass(shared, due),
        }
    }
}

/// One pass over a topic's subscribers, then its rest if it is saturated.
fn run_pass(shared: &Shared, due: Due) {
    let topic = due.topic;
    // Unqueued before the snapshot: an event published from here on
    // queues the topic again, so none is left without a pass.
    let started = Instant::now();
    let pass = Arc::new(Pass::new(topic.take_news()));
    // A topic that keeps up leaves cores idle between its events: another
    // worker shortens its pass. A saturated one is not shared: every core
    // is busy already, and its writes carry more events the longer its
    // passes are.
    if !due.saturated && shared.workers > 1 && pass.subscribers.len() > SHARE {
        lock(&shared.queue).shared.push_back(Arc::clone(&pass));
        for _ in 1..shared.workers {
            shared.ready.notify_one();
        }
    }
    pass.work();
    pass.wait();
    let took = started.elapsed();
    let mut queue = lock(&shared.queue);
    queue.running.retain(|t| !Arc::ptr_eq(t, &topic));
    // Over: no longer offered, if a worker had not dropped it already.
    queue.shared.retain(|p| !Arc::ptr_eq(p, &pass));
    if took >= MIN_PASS && topic.is_queued() {
        // Published to during its own pass: saturated. Let the next
        // events gather while other topics are served.
        let rest = took.mul_f64(PACE).min(MAX_REST);
        queue.rest(&topic, Instant::now() + rest);
    }
    if shared.crew.stopping() {
        // Workers that waited for this pass to end may now be done.
        shared.ready.notify_all();
    } else if !queue.ready.is_empty() {
        // A worker may be waiting for this pass to end.
        shared.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Hub, Notify, Resume, Retention, Subscription};
    use crate::sse::Event;
    use crate::sync::Doorbell;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::thread;
    use std::time::Duration;
    use std::time::Instant;

    /// Counts notifications and rings when told of one.
    struct Counter(AtomicUsize, Doorbell);

    impl Notify for Counter {
        fn notify(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.ring();
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
        let fanouts = Arc::new(Fanouts::start(1).unwrap());
        let hub = hub(&fanouts);
        let log = Arc::new(Mutex::new(Vec::new()));
        let busy = {
            let hub = Arc::clone(&hub);
            Arc::new(Logger {
                name: "busy",
                log: Arc::clone(&log),
                // During busy's first pass: busy gets news again, then quiet.
                during: Mutex::new(Some(Box::new(move || {
                    for topic in ["busy", "quiet"] {
                        hub.publish(topic, Event::message("2")).unwrap();
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
        hub.publish("busy", Event::message("1")).unwrap();
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
        let fanouts = Arc::new(Fanouts::start(1).unwrap());
        let hub = hub(&fanouts);
        let counter = Arc::new(Counter(AtomicUsize::new(0), Doorbell::default()));
        let as_notify: Arc<dyn Notify> = counter.clone();
        let (_subs, _) = hub
            .subscribe(&["t".to_string()], &as_notify, &Resume::Live)
            .unwrap();
        for i in 0..100 {
            hub.publish("t", Event::message(i.to_string())).unwrap();
        }
        fanouts.stop();
        let n = counter.0.load(Ordering::SeqCst);
        // At least one pass after the last publish; never more than one a publish.
        assert!((1..=100).contains(&n), "{n} notifications");
        let hub_topic = hub.topics().pop().unwrap();
        assert!(hub_topic.queue_for_fanout(), "nothing left queued");
        assert!(counter.1.wait(Duration::ZERO));
    }

    /// Records which thread told it, how many times, and whether a second
    /// notification came while it was still in the first; the first one
    /// runs `first` (once).
    struct Probe {
        told: AtomicUsize,
        threads: Mutex<Vec<thread::ThreadId>>,
        inside: AtomicBool,
        overlapped: AtomicBool,
        first: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl Probe {
        fn new(first: Option<Box<dyn FnOnce() + Send>>) -> Arc<Probe> {
            Arc::new(Probe {
                told: AtomicUsize::new(0),
                threads: Mutex::new(Vec::new()),
                inside: AtomicBool::new(false),
                overlapped: AtomicBool::new(false),
                first: Mutex::new(first),
            })
        }
    }

    impl Notify for Probe {
        fn notify(&self) {
            if self.inside.swap(true, Ordering::SeqCst) {
                self.overlapped.store(true, Ordering::SeqCst);
            }
            lock(&self.threads).push(thread::current().id());
            let first = lock(&self.first).take();
            if let Some(first) = first {
                first();
            }
            self.told.fetch_add(1, Ordering::SeqCst);
            self.inside.store(false, Ordering::SeqCst);
        }
    }

    /// A flag one thread raises and another waits for, up to a deadline.
    #[derive(Default)]
    struct Flag(Mutex<bool>, Condvar);

    impl Flag {
        fn raise(&self) {
            *lock(&self.0) = true;
            self.1.notify_all();
        }

        /// Whether it was raised within `within`.
        fn wait(&self, within: Duration) -> bool {
            let deadline = Instant::now() + within;
            let mut raised = lock(&self.0);
            while !*raised {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                raised = self
                    .1
                    .wait_timeout(raised, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            true
        }
    }

    /// Until `done` holds, or panics after ten seconds.
    fn until(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "not within 10 s");
            thread::yield_now();
        }
    }

    /// A hub whose publishes `fanouts` carries.
    fn hub(fanouts: &Arc<Fanouts>) -> Arc<Hub> {
        Arc::new(Hub::new(
            Retention {
                history: 10,
                bytes: usize::MAX,
            },
            10,
            usize::MAX,
            Arc::clone(fanouts),
        ))
    }

    /// `n` probes subscribed with `subscribe`; the first runs `first`.
    fn probes(
        n: usize,
        first: Box<dyn FnOnce() + Send>,
        subscribe: impl Fn(Arc<dyn Notify>) -> Subscription,
    ) -> (Vec<Arc<Probe>>, Vec<Subscription>) {
        let mut first = Some(first);
        let probes: Vec<_> = (0..n).map(|_| Probe::new(first.take())).collect();
        let subs = probes.iter().map(|p| subscribe(p.clone())).collect();
        (probes, subs)
    }

    /// Subscribes to topic "t" of `hub`, live.
    fn on_t(hub: &Hub) -> impl Fn(Arc<dyn Notify>) -> Subscription + '_ {
        |n| {
            hub.subscribe(&["t".to_string()], &n, &Resume::Live)
                .unwrap()
                .0
                .remove(0)
        }
    }

    #[test]
    fn a_pass_that_keeps_up_is_shared_and_tells_each_subscriber_once() {
        for workers in [2, MAX_WORKERS] {
            shared_pass(workers);
        }
    }

    fn shared_pass(workers: usize) {
        let fanouts = Arc::new(Fanouts::start(workers).unwrap());
        let hub = hub(&fanouts);
        // The first subscriber holds its worker until a subscriber of
        // another share is told: only another worker can do that.
        let helped = Arc::new(Flag::default());
        let waited = Arc::new(AtomicBool::new(false));
        let (probes, _subs) = {
            let (helped, waited) = (Arc::clone(&helped), Arc::clone(&waited));
            probes(
                3 * SHARE,
                Box::new(move || {
                    waited.store(helped.wait(Duration::from_secs(10)), Ordering::SeqCst)
                }),
                on_t(&hub),
            )
        };
        let last = Arc::clone(&probes[3 * SHARE - 1]);
        hub.publish("t", Event::message("1")).unwrap();
        until(|| last.told.load(Ordering::SeqCst) == 1);
        helped.raise();
        until(|| probes.iter().all(|p| p.told.load(Ordering::SeqCst) == 1));
        fanouts.stop();
        assert!(
            waited.load(Ordering::SeqCst),
            "no other worker took a share"
        );
        let threads: std::collections::HashSet<_> = probes
            .iter()
            .flat_map(|p| lock(&p.threads).clone())
            .collect();
        assert!(threads.len() >= 2, "{workers} workers");
        assert!(probes.iter().all(|p| p.told.load(Ordering::SeqCst) == 1));
    }

    #[test]
    fn a_saturated_pass_is_not_shared() {
        // A topic of its own, its event inserted without a pass: this test
        // runs the pass itself, as a saturated one.
        let topic = Topic::standalone("t", 10, None, Fanouts::inline());
        let other = Arc::new(Flag::default());
        let me = thread::current().id();
        let (probes, _subs) = {
            let other = Arc::clone(&other);
            // Gives another worker time to take a share, were it offered.
            probes(
                3 * SHARE,
                Box::new(move || {
                    other.wait(Duration::from_millis(300));
                }),
                |n| topic.subscribe(n, 0),
            )
        };
        // A probe told by another thread than this test's raises the flag.
        let fanouts = Fanouts::start(2).unwrap();
        let shared = Arc::clone(fanouts.shared.as_ref().unwrap());
        topic.insert(1, Event::message("1"));
        assert!(topic.queue_for_fanout());
        lock(&shared.queue).running.push(Arc::clone(&topic));
        let watcher = {
            let (probes, other) = (probes.clone(), Arc::clone(&other));
            thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if probes
                        .iter()
                        .any(|p| lock(&p.threads).iter().any(|t| *t != me))
                    {
                        other.raise();
                        return;
                    }
                    if probes.iter().all(|p| p.told.load(Ordering::SeqCst) == 1) {
                        return;
                    }
                    thread::yield_now();
                }
            })
        };
        run_pass(
            &shared,
            Due {
                topic,
                saturated: true,
            },
        );
        watcher.join().unwrap();
        fanouts.stop();
        for p in &probes {
            assert_eq!(*lock(&p.threads), [me], "told by another worker");
        }
    }

    /// One probe on topic "t" whose first notification publishes a second
    /// event to "t" (queueing it again during its own pass), then runs
    /// `then`.
    fn published_again_during_pass(
        hub: &Arc<Hub>,
        then: impl FnOnce() + Send + 'static,
    ) -> (Vec<Arc<Probe>>, Vec<Subscription>) {
        let publisher = Arc::clone(hub);
        probes(
            1,
            Box::new(move || {
                publisher.publish("t", Event::message("2")).unwrap();
                then();
            }),
            on_t(hub),
        )
    }

    #[test]
    fn a_topic_published_to_during_its_pass_is_not_passed_over_twice_at_once() {
        let fanouts = Arc::new(Fanouts::start(2).unwrap());
        let hub = hub(&fanouts);
        // During the first pass: another event, which queues the topic
        // again, then time for the idle worker to start a second pass.
        let (probes, _subs) = published_again_during_pass(&hub, || {
            Flag::default().wait(Duration::from_millis(300));
        });
        hub.publish("t", Event::message("1")).unwrap();
        until(|| probes[0].told.load(Ordering::SeqCst) == 2);
        fanouts.stop();
        assert!(!probes[0].overlapped.load(Ordering::SeqCst));
    }

    #[test]
    fn workers_stop_when_the_pass_they_waited_for_ends() {
        let fanouts = Arc::new(Fanouts::start(2).unwrap());
        let hub = hub(&fanouts);
        let stopped = Arc::new(Flag::default());
        // During the first pass: the topic is queued again, then the pass
        // lasts until the server stops and a while after, so that the idle
        // worker waits for it.
        let stopping = Arc::clone(fanouts.shared.as_ref().unwrap());
        let (probes, _subs) = published_again_during_pass(&hub, move || {
            until(|| stopping.crew.stopping());
            Flag::default().wait(Duration::from_millis(200));
        });
        hub.publish("t", Event::message("1")).unwrap();
        until(|| !lock(&probes[0].threads).is_empty());
        let stopper = {
            let (fanouts, stopped) = (Arc::clone(&fanouts), Arc::clone(&stopped));
            thread::spawn(move || {
                fanouts.stop();
                stopped.raise();
            })
        };
        assert!(stopped.wait(Duration::from_secs(10)), "stop did not return");
        stopper.join().unwrap();
        // What was queued went out before the workers stopped.
        assert_eq!(probes[0].told.load(Ordering::SeqCst), 2);
    }
}
