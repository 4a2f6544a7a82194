//! `/stream-json` and `/stream-text`: numbered lines, the last marked.

use super::training::last;
use crate::pyjson::dumps;
use crate::sse::Event;
use crate::stream::Script;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::*;

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
