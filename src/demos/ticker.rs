//! `/event_stream`: the Flask example's messages, and a custom event
//! after every third.

use crate::calendar::Civil;
use crate::sse::Event;
use crate::stream::Script;
use std::sync::Arc;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
