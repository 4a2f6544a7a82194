//! Per-client scripted streams (the clock, a training run): a thread of
//! their own, which sleeps until each event is due.

use super::framing::Framer;
use crate::conn::Wire;
use crate::sse::Event;
use crate::sync::Doorbell;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A per-client sequence of events with pauses before each.
pub trait Script: Send {
    /// How long to pause before the next [`Script::fire`]; `None` ends the
    /// stream.
    fn pause(&self) -> Option<Duration>;
    /// Adds the next event(s) to `out`.
    fn fire(&mut self, out: &mut Vec<Arc<Event>>);
}

/// When a script's next event is due: each pause counts from when the
/// previous event was due, not from when it was written, so a clock does
/// not drift; a client that fell far behind (a stalled write) resumes
/// from now rather than bursting every missed tick.
fn next_due(last_due: Instant, pause: Duration, now: Instant) -> Instant {
    let due = last_due + pause;
    if now > due && now - due > pause.max(Duration::from_secs(1)) {
        now
    } else {
        due
    }
}

/// Writes `script` until it ends, the client leaves (a write fails) or the
/// server stops (`stopping`, with `bell` rung); a heartbeat after
/// `heartbeat` of silence.
pub fn run_script(
    framer: &mut Framer,
    wire: &dyn Wire,
    script: &mut dyn Script,
    bell: &Doorbell,
    stopping: &AtomicBool,
    heartbeat: Duration,
) -> io::Result<()> {
    let write = |framer: &mut Framer| -> io::Result<()> {
        let written = wire.write_all(&[IoSlice::new(framer.frame())]);
        framer.clear();
        written
    };
    framer.retry();
    if !framer.is_empty() {
        write(framer)?;
    }
    let mut batch = Vec::new();
    let mut last_write = Instant::now();
    let mut due: Option<Instant> = None;
    while !stopping.load(Ordering::Acquire) {
        let Some(pause) = script.pause() else {
            break;
        };
        let now = Instant::now();
        let at = *due.get_or_insert(now) + pause;
        if at <= now {
            script.fire(&mut batch);
            due = Some(next_due(due.unwrap_or(now), pause, now));
            for ev in batch.drain(..) {
                framer.event(&ev);
            }
            write(framer)?;
            last_write = Instant::now();
            continue;
        }
        let quiet = heartbeat.saturating_sub(last_write.elapsed());
        bell.wait((at - now).min(quiet));
        if last_write.elapsed() >= heartbeat {
            framer.heartbeat();
            write(framer)?;
            last_write = Instant::now();
        }
    }
    wire.write_all(&[IoSlice::new(framer.end())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_that_does_not_drift_nor_burst() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // On time, or a little late: the next is due a pause after this one
        // was due.
        assert_eq!(next_due(t0, s(1), t0 + s(1)), t0 + s(1));
        assert_eq!(
            next_due(t0, s(1), t0 + Duration::from_millis(1500)),
            t0 + s(1)
        );
        // Far behind: from now on.
        assert_eq!(next_due(t0, s(1), t0 + s(5)), t0 + s(5));
    }
}
