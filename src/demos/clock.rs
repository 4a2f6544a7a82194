//! `/stream-time`: the clock of the first tutorial.

use crate::calendar::Civil;
use crate::sse::Event;
use crate::stream::Script;
use std::sync::Arc;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_ticks_at_once_then_every_interval() {
        let mut clock = Clock::new(Duration::from_secs(1));
        assert_eq!(clock.pause(), Some(Duration::ZERO));
        let mut out = Vec::new();
        clock.fire(&mut out);
        assert_eq!(clock.pause(), Some(Duration::from_secs(1)));
        assert!(out[0].data.starts_with("The time is "));
    }
}
