//! `/stream-training`: one training run per client, its progress and
//! its end.

use crate::pyjson::{dumps, round};
use crate::sse::Event;
use crate::stream::Script;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// The id of the last event of a finite demo stream (a training run, the
/// JSON and text examples). A browser or `ssed listen` that reconnects
/// after it sends it as `Last-Event-ID`, and is answered 204: EventSource
/// stops there, instead of starting the run again and again.
pub const FINISHED_ID: &str = "end";

/// The last event of a finite stream: it carries [`FINISHED_ID`].
pub(super) fn last(mut event: Event) -> Event {
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

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::*;

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
}
