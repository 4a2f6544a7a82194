//! The seed tutorials' demos, as producers of events.
//!
//! Per-client demos are [`Script`]s run by the client's own stream thread:
//! the clock, the `/event_stream` example, the training task and the JSON
//! lines. Demos whose data is the same for everyone have one producer thread
//! each, publishing to a [`Topic`]: the system sampler (one sampling serves a
//! thousand viewers) and the stock market (every viewer sees the same
//! prices). A producer idles while its topic has no subscribers.
//!
//! Demos only produce events; they know nothing of HTTP.

use crate::calendar::Civil;
pub use crate::config::Pace;
use crate::hub::Topic;
use crate::pyjson::{dumps, round};
use crate::sse::Event;
use crate::stream::Script;
use crate::sync::{lock, Doorbell};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A producer with no viewers checks back this often even if never rung;
/// ringing (a first subscriber, shutdown) wakes it at once.
const IDLE_RECHECK: Duration = Duration::from_secs(3600);

/// The seed's start prices.
const STOCKS: [(&str, f64); 3] = [("AAPL", 150.00), ("GOOGL", 2800.00), ("MSFT", 300.00)];

/// `data: The time is HH:MM:SS` (local time) every `interval`, from connect on.
pub struct Clock {
    interval: Duration,
    started: bool,
}

impl Clock {
    pub fn new(interval: Duration) -> Self {
        Clock {
            interval,
            started: false,
        }
    }
}

impl Script for Clock {
    fn pause(&self) -> Option<Duration> {
        Some(if self.started {
            self.interval
        } else {
            Duration::ZERO
        })
    }

    fn fire(&mut self, out: &mut Vec<Arc<Event>>) {
        self.started = true;
        let t = Civil::local_now();
        let text = format!("The time is {:02}:{:02}:{:02}", t.hour, t.minute, t.second);
        out.push(Arc::new(Event::message(text)));
    }
}

/// The Flask example (seed 004): `Server time: ... (message i)` every
/// `interval`, and after every third message a `custom_event`.
pub struct Ticker {
    interval: Duration,
    i: u64,
}

impl Ticker {
    pub fn new(interval: Duration) -> Self {
        Ticker { interval, i: 0 }
    }
}

impl Script for Ticker {
    fn pause(&self) -> Option<Duration> {
        Some(if self.i == 0 {
            Duration::ZERO
        } else {
            self.interval
        })
    }

    fn fire(&mut self, out: &mut Vec<Arc<Event>>) {
        let i = self.i;
        let text = format!("Server time: {} (message {i})", Civil::local_now().ctime());
        out.push(Arc::new(Event::message(text)));
        if i.is_multiple_of(3) && i > 0 {
            // The Python original prints `i/3`, a float ("1.0"); the count of
            // custom events is a whole number.
            let text = format!("This is a custom event {}", i / 3);
            out.push(Arc::new(Event::named("custom_event", text)));
        }
        self.i += 1;
    }
}

/// The id of the last event of a finite demo stream (a training run, the
/// JSON and text examples). A browser or `ssed listen` that reconnects
/// after it sends it as `Last-Event-ID`, and is answered 204: EventSource
/// stops there, instead of starting the run again and again.
pub const FINISHED_ID: &str = "end";

/// The last event of a finite stream: it carries [`FINISHED_ID`].
fn last(mut event: Event) -> Event {
    event.id = Some(FINISHED_ID.into());
    event
}

/// The training task (seed 000, example 3): for each epoch a pause, then
/// `steps` progress events `step` apart, then `complete`.
pub struct Training {
    epochs: u32,
    steps: u32,
    step: Duration,
    /// The seed pauses 0.5 s per epoch and 0.02 s per step: 25 steps.
    epoch_pause: Duration,
    /// Next (epoch, step) to send, both from 1; `epoch > epochs` means the
    /// `complete` event is next; `None` means it was sent.
    next: Option<(u32, u32)>,
}

impl Training {
    pub const EPOCH_PAUSE_STEPS: u32 = 25;

    pub fn new(epochs: u32, steps: u32, step: Duration) -> Self {
        Training {
            epochs,
            steps,
            step,
            epoch_pause: step * Self::EPOCH_PAUSE_STEPS,
            next: Some((1, 1)),
        }
    }
}

impl Script for Training {
    fn pause(&self) -> Option<Duration> {
        let (epoch, step) = self.next?;
        Some(match (epoch > self.epochs, step) {
            (true, _) => Duration::ZERO,
            (false, 1) => self.epoch_pause + self.step,
            (false, _) => self.step,
        })
    }

    fn fire(&mut self, out: &mut Vec<Arc<Event>>) {
        let Some((epoch, step)) = self.next else {
            return;
        };
        if epoch > self.epochs {
            out.push(Arc::new(last(Event::named(
                "complete",
                "Training complete!",
            ))));
            self.next = None;
            return;
        }
        let fraction = f64::from(step) / f64::from(self.steps);
        let data = json!({
            "epoch": epoch,
            "total_epochs": self.epochs,
            "progress_percent": round(fraction * 100.0, 2),
            "loss": round((1.0 / f64::from(epoch)) * (1.0 - fraction) + 0.1, 4),
        });
        out.push(Arc::new(Event::named("progress", dumps(&data))));
        self.next = Some(if step == self.steps {
            (epoch + 1, 1)
        } else {
            (epoch, step + 1)
        });
    }
}

/// The streaming examples of seed 002: `count` items `interval` apart,
/// numbered from 0.
pub struct Numbered {
    count: u32,
    interval: Duration,
    i: u32,
    /// The data of item `i` of `count`.
    make: fn(u32, u32) -> String,
}

impl Numbered {
    /// `{"event_id": i, "data": "some data", "is_last_event": ...}`.
    pub fn json(count: u32, interval: Duration) -> Self {
        Numbered::new(count, interval, |i, count| {
            dumps(&json!({"event_id": i, "data": "some data", "is_last_event": i + 1 == count}))
        })
    }

    /// `some data 0`, the plain text the seed streams before its JSON.
    pub fn text(count: u32, interval: Duration) -> Self {
        Numbered::new(count, interval, |i, _| format!("some data {i}"))
    }

    fn new(count: u32, interval: Duration, make: fn(u32, u32) -> String) -> Self {
        Numbered {
            count,
            interval,
            i: 0,
            make,
        }
    }
}

impl Script for Numbered {
    fn pause(&self) -> Option<Duration> {
        match self.i {
            0 if self.count > 0 => Some(Duration::ZERO),
            i if i < self.count => Some(self.interval),
            _ => None,
        }
    }

    fn fire(&mut self, out: &mut Vec<Arc<Event>>) {
        let event = Event::message((self.make)(self.i, self.count));
        self.i += 1;
        let event = if self.i == self.count {
            last(event)
        } else {
            event
        };
        out.push(Arc::new(event));
    }
}

/// The shared demos' topics and the threads that feed them.
pub struct Demos {
    pub stats: Arc<Topic>,
    pub stocks: Arc<Topic>,
    /// The latest quote of each symbol, for a new viewer of the market.
    pub quotes: Arc<Mutex<Vec<Arc<Event>>>>,
    producers: Producers,
}

/// Retained events per shared demo topic: enough for a viewer delayed by a
/// slow write to catch up, small enough not to matter.
const DEMO_RING: usize = 16;

/// The most system samples kept, whatever `--stats-history` and the
/// interval make.
pub const MAX_STATS_KEPT: usize = 3600;

impl Demos {
    pub fn start(pace: &Pace) -> std::io::Result<Demos> {
        let mut producers = Producers::default();
        let every = pace.stats;
        let history = pace.stats_history;
        let kept = stats_kept(pace);
        let stats = producers.spawn("system-stats", kept, move |p| {
            sample_system(p, every, !history.is_zero())
        })?;
        let mean = pace.stocks;
        let quotes: Vec<Arc<Event>> = STOCKS
            .iter()
            .map(|&(symbol, price)| Arc::new(quote(symbol, price, 0.0)))
            .collect();
        let quotes = Arc::new(Mutex::new(quotes));
        let latest = Arc::clone(&quotes);
        let stocks = producers.spawn("stream-stocks", DEMO_RING, move |p| {
            run_market(p, mean, &latest)
        })?;
        Ok(Demos {
            stats,
            stocks,
            quotes,
            producers,
        })
    }

    /// Stops the producers and waits for them.
    pub fn stop(&mut self) {
        self.producers.stop();
    }
}

/// The producer threads, and how to stop them.
#[derive(Default)]
struct Producers {
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<Doorbell>>,
    threads: Vec<JoinHandle<()>>,
}

impl Producers {
    /// Starts `run` on a thread of its own, feeding a new topic `name`.
    fn spawn(
        &mut self,
        name: &str,
        ring: usize,
        run: impl FnOnce(Producer) + Send + 'static,
    ) -> std::io::Result<Arc<Topic>> {
        let waker = Arc::new(Doorbell::default());
        let topic = Topic::standalone(name, ring, Some(Arc::clone(&waker)));
        let producer = Producer {
            topic: Arc::clone(&topic),
            waker: Arc::clone(&waker),
            stop: Arc::clone(&self.stop),
            seq: 0,
        };
        let thread = thread::Builder::new()
            .name(format!("ssed-{name}"))
            .spawn(move || run(producer))?;
        self.wakers.push(waker);
        self.threads.push(thread);
        Ok(topic)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for waker in &self.wakers {
            waker.ring();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Producers {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Producer {
    topic: Arc<Topic>,
    waker: Arc<Doorbell>,
    stop: Arc<AtomicBool>,
    /// Numbers the events of this topic, for its subscribers' cursors.
    seq: u64,
}

impl Producer {
    fn publish(&mut self, event: Event) {
        self.seq += 1;
        self.topic.publish(self.seq, event);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Waits until someone subscribes; false if told to stop instead.
    fn await_viewers(&self) -> bool {
        while self.topic.subscribers() == 0 {
            if self.stopping() {
                return false;
            }
            self.waker.wait(IDLE_RECHECK);
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
            self.waker.wait(until - now);
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

/// Samples CPU and memory every `every`: always when `always` (so that a
/// new viewer sees the history), else only while someone watches.
fn sample_system(mut p: Producer, every: Duration, always: bool) {
    use sysinfo::System;
    let mut sys = match System::new() {
        Ok(sys) => sys,
        Err(e) => {
            eprintln!("ssed: /system-stats is unavailable: {e}");
            return;
        }
    };
    while always || p.await_viewers() {
        // CPU usage is the change between two readings at least
        // MINIMUM_CPU_UPDATE_INTERVAL apart: take the first one now.
        sys.refresh_cpu_usage();
        if !p.rest(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL) {
            return;
        }
        while always || p.topic.subscribers() > 0 {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            let total = sys.total_memory() as f64;
            let used = sys.used_memory() as f64;
            const MB: f64 = 1024.0 * 1024.0;
            let stats = json!({
                "cpu_percent": round(f64::from(sys.global_cpu_usage()), 1),
                "memory_percent": round(if total > 0.0 { used / total * 100.0 } else { 0.0 }, 1),
                "memory_used_mb": round(used / MB, 2),
                "memory_total_mb": round(total / MB, 2),
            });
            p.publish(Event::message(dumps(&stats)));
            if !p.rest(every.max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL)) {
                return;
            }
        }
        // Nobody left: the last sample would be stale for the next viewer.
        p.topic.clear();
    }
}

/// `event: AAPL` `data: {"symbol": "AAPL", "price": 150.0, "change": 0.0}`.
fn quote(symbol: &str, price: f64, change: f64) -> Event {
    let update = json!({
        "symbol": symbol,
        "price": round(price, 2),
        "change": round(change, 2),
    });
    Event::named(symbol, dumps(&update))
}

fn run_market(mut p: Producer, mean: Duration, latest: &Mutex<Vec<Arc<Event>>>) {
    let mut prices = STOCKS;
    while p.await_viewers() {
        let i = fastrand::usize(..STOCKS.len());
        let (symbol, price) = &mut prices[i];
        let change = fastrand::f64() - 0.5;
        *price = (*price + change).max(0.0);
        let event = quote(symbol, *price, change);
        // The newest quote last: a new viewer gets them in the order they
        // changed.
        {
            let mut quotes = lock(latest);
            quotes.retain(|q| q.event.as_deref() != Some(*symbol));
            quotes.push(Arc::new(event.clone()));
        }
        p.publish(event);
        if !p.rest(mean.mul_f64(0.5 + fastrand::f64())) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_clock_ticks_at_once_then_every_interval() {
        let mut clock = Clock::new(Duration::from_secs(1));
        assert_eq!(clock.pause(), Some(Duration::ZERO));
        let mut out = Vec::new();
        clock.fire(&mut out);
        assert_eq!(clock.pause(), Some(Duration::from_secs(1)));
        assert!(out[0].data.starts_with("The time is "));
    }

    #[test]
    fn training_follows_the_seed() {
        let ms = Duration::from_millis;
        let events = run(&mut Training::new(2, 4, ms(10)));
        assert_eq!(events.len(), 9);
        assert_eq!(events[0].0, ms(260));
        assert_eq!(events[1].0, ms(10));
        assert_eq!(
            events[0].1,
            Event::named(
                "progress",
                r#"{"epoch": 1, "total_epochs": 2, "progress_percent": 25.0, "loss": 0.85}"#
            )
        );
        assert_eq!(
            events[5].1.data,
            r#"{"epoch": 2, "total_epochs": 2, "progress_percent": 50.0, "loss": 0.35}"#
        );
        assert_eq!(events[4].0, ms(260));
        assert_eq!(
            events[8],
            (
                Duration::ZERO,
                Event {
                    id: Some("end".into()),
                    ..Event::named("complete", "Training complete!")
                }
            )
        );
    }

    #[test]
    fn ticker_adds_a_custom_event_every_third() {
        let mut t = Ticker::new(Duration::from_secs(2));
        let mut out = Vec::new();
        for _ in 0..7 {
            t.fire(&mut out);
        }
        let custom: Vec<_> = out
            .iter()
            .filter(|e| e.kind() == "custom_event")
            .map(|e| e.data.as_str())
            .collect();
        assert_eq!(
            custom,
            ["This is a custom event 1", "This is a custom event 2"]
        );
        assert_eq!(out.len(), 9);
        assert!(out[3].data.starts_with("Server time: "));
        assert!(out[3].data.ends_with(" (message 3)"));
    }

    #[test]
    fn numbered_json_marks_the_last_and_text_counts() {
        let data = |script: &mut Numbered| -> Vec<String> {
            run(script).into_iter().map(|(_, e)| e.data).collect()
        };
        assert_eq!(
            data(&mut Numbered::json(2, Duration::from_millis(5))),
            [
                r#"{"event_id": 0, "data": "some data", "is_last_event": false}"#,
                r#"{"event_id": 1, "data": "some data", "is_last_event": true}"#
            ]
        );
        assert_eq!(
            data(&mut Numbered::text(3, Duration::ZERO)),
            ["some data 0", "some data 1", "some data 2"]
        );
        assert!(data(&mut Numbered::json(0, Duration::ZERO)).is_empty());
        // Only the last carries the id that says the stream is finished.
        let ids: Vec<_> = run(&mut Numbered::text(3, Duration::ZERO))
            .into_iter()
            .map(|(_, e)| e.id)
            .collect();
        assert_eq!(ids, [None, None, Some("end".to_string())]);
    }
}
