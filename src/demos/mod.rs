//! The seed tutorials' demos, as producers of events.
//!
//! Per-client demos are [`crate::stream::Script`]s run by the client's own stream thread:
//! the clock, the `/event_stream` example, the training task and the JSON
//! lines. Demos whose data is the same for everyone have one producer thread
//! each, publishing to a [`Topic`]: the system sampler (one sampling serves a
//! thousand viewers) and the stock market (every viewer sees the same
//! prices). A producer idles while its topic has no subscribers.
//!
//! Demos only produce events; they know nothing of HTTP.

mod clock;
mod numbered;
mod stats;
mod stocks;
mod ticker;
mod training;

pub use crate::config::Pace;
pub use clock::Clock;
pub use numbered::Numbered;
pub use ticker::Ticker;
pub use training::{Training, FINISHED_ID};

use crate::hub::{Fanouts, Topic};
use crate::sse::Event;
#[cfg(test)]
use crate::stream::Script;
use crate::sync::{Crew, Doorbell};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A producer with no viewers checks back this often even if never rung;
/// ringing (a first subscriber, shutdown) wakes it at once.
const IDLE_RECHECK: Duration = Duration::from_secs(3600);

/// The shared demos' topics, for the streams that read them.
#[derive(Clone)]
pub struct DemoTopics {
    pub stats: Arc<Topic>,
    pub stocks: Arc<Topic>,
    /// The latest quote of each symbol, for a new viewer of the market.
    pub quotes: Arc<Mutex<Vec<Arc<Event>>>>,
}

/// The shared demos: their topics and the producer threads that feed them.
pub struct Demos {
    pub topics: DemoTopics,
    crew: Arc<Crew>,
    bells: Vec<Arc<Doorbell>>,
}

/// Retained events per shared demo topic: enough for a viewer delayed by a
/// slow write to catch up, small enough not to matter.
const DEMO_RING: usize = 16;

/// The most system samples kept, whatever `--stats-history` and the
/// interval make.
pub const MAX_STATS_KEPT: usize = 3600;

impl Demos {
    /// Starts the producers; their topics' subscribers are told through
    /// `fanouts`.
    pub fn start(pace: &Pace, fanouts: Arc<Fanouts>) -> std::io::Result<Demos> {
        let mut demos = Demos {
            topics: DemoTopics {
                stats: Topic::standalone("", 0, None, fanouts.clone()),
                stocks: Topic::standalone("", 0, None, fanouts.clone()),
                quotes: Arc::default(),
            },
            crew: Arc::new(Crew::default()),
            bells: Vec::new(),
        };
        let every = pace.stats;
        let history = pace.stats_history;
        let kept = stats_kept(pace);
        demos.topics.stats = demos.spawn("system-stats", kept, &fanouts, move |p| {
            stats::sample_system(p, every, !history.is_zero())
        })?;
        let mean = pace.stocks;
        let quotes: Vec<Arc<Event>> = stocks::STOCKS
            .iter()
            .map(|&(symbol, price)| Arc::new(stocks::quote(symbol, price, 0.0)))
            .collect();
        demos.topics.quotes = Arc::new(Mutex::new(quotes));
        let latest = Arc::clone(&demos.topics.quotes);
        demos.topics.stocks = demos.spawn("stream-stocks", DEMO_RING, &fanouts, move |p| {
            stocks::run_market(p, mean, &latest)
        })?;
        Ok(demos)
    }

    /// Starts `run` on a thread of its own, feeding a new topic `name`.
    fn spawn(
        &mut self,
        name: &str,
        ring: usize,
        fanouts: &Arc<Fanouts>,
        run: impl FnOnce(Producer) + Send + 'static,
    ) -> std::io::Result<Arc<Topic>> {
        let bell = Arc::new(Doorbell::default());
        let topic = Topic::standalone(name, ring, Some(Arc::clone(&bell)), fanouts.clone());
        let producer = Producer {
            topic: Arc::clone(&topic),
            bell: Arc::clone(&bell),
            crew: Arc::clone(&self.crew),
            seq: 0,
        };
        self.crew
            .spawn(&format!("ssed-{name}"), move || run(producer))?;
        self.bells.push(bell);
        Ok(topic)
    }

    /// Stops the producers and waits for them.
    pub fn stop(&mut self) {
        self.crew.begin_stop();
        for bell in &self.bells {
            bell.ring();
        }
        self.crew.join();
    }
}

impl Drop for Demos {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a producer thread holds: its topic, its doorbell, its crew.
struct Producer {
    topic: Arc<Topic>,
    bell: Arc<Doorbell>,
    crew: Arc<Crew>,
    /// Numbers the events of this topic, for its subscribers' cursors.
    seq: u64,
}

impl Producer {
    fn publish(&mut self, event: Event) {
        self.seq += 1;
        self.topic.publish(self.seq, event);
    }

    fn stopping(&self) -> bool {
        self.crew.stopping()
    }

    /// Waits until someone subscribes; false if told to stop instead.
    fn await_viewers(&self) -> bool {
        while self.topic.subscribers() == 0 {
            if self.stopping() {
                return false;
            }
            self.bell.wait(IDLE_RECHECK);
        }
        !self.stopping()
    }

    /// Sleeps `pause` unless told to stop; false if told to stop.
    fn rest(&self, pause: Duration) -> bool {
        let until = Instant::now() + pause;
        loop {
            if self.stopping() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            self.bell.wait(until - now);
        }
    }
}

/// System samples kept: those of the last `--stats-history` (at least one),
/// or without a history what a slow viewer may need to catch up.
pub fn stats_kept(pace: &Pace) -> usize {
    if pace.stats_history.is_zero() {
        return DEMO_RING;
    }
    let every = pace.stats.max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
    let samples = pace.stats_history.as_millis() / every.as_millis().max(1);
    (samples as usize).clamp(1, MAX_STATS_KEPT)
}

/// Runs `script` to its end, as its thread would: each pause and event.
#[cfg(test)]
fn run(script: &mut dyn Script) -> Vec<(Duration, Event)> {
    let mut all = Vec::new();
    while let Some(pause) = script.pause() {
        let mut out = Vec::new();
        script.fire(&mut out);
        for ev in out {
            all.push((pause, (*ev).clone()));
        }
    }
    all
}
