//! The stream caps: hub streams and demo streams counted apart, so that
//! demos cannot take the hub's places; and how streams ended.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// How streams ended or were refused, for `/metrics`.
#[derive(Default)]
pub struct StreamCounters {
    /// Refused with 503: the cap was reached.
    pub refused: AtomicU64,
    /// A write blocked for `--write-timeout`: the client stopped reading.
    pub write_timeout: AtomicU64,
    /// A write failed: the client left.
    pub gone: AtomicU64,
    /// Ended while its reader took nothing and the streams' buffers were
    /// full.
    pub buffers: AtomicU64,
}

impl StreamCounters {
    /// Counts how a stream ended, from what its writing returned.
    pub fn ended(&self, result: &io::Result<()>) {
        if let Err(e) = result {
            let counter = match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => &self.write_timeout,
                io::ErrorKind::OutOfMemory => &self.buffers,
                _ => &self.gone,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A cap on streams of one kind, and their counters.
pub struct Streams {
    open: AtomicUsize,
    max: usize,
    pub counters: StreamCounters,
}

/// A place among the open streams; dropping it frees the place.
pub struct Slot {
    streams: Arc<Streams>,
}

impl Slot {
    /// The counters of the streams this place is among.
    pub fn counters(&self) -> &StreamCounters {
        &self.streams.counters
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.streams.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Streams {
    pub fn new(max: usize) -> Arc<Streams> {
        Arc::new(Streams {
            open: AtomicUsize::new(0),
            max,
            counters: StreamCounters::default(),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Takes a place, if the cap allows (`None` is counted as refused).
    pub fn reserve(self: &Arc<Self>) -> Option<Slot> {
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot {
            streams: Arc::clone(self),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap() {
        let streams = Streams::new(2);
        let a = streams.reserve().unwrap();
        let _b = streams.reserve().unwrap();
        assert!(streams.reserve().is_none());
        assert_eq!(streams.counters.refused.load(Ordering::Relaxed), 1);
        drop(a);
        assert_eq!(streams.open(), 1);
        assert!(streams.reserve().is_some());
    }
}
