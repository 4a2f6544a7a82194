//! What threads share: lock helpers that carry on past a poisoned lock,
//! the [`Doorbell`] a sleeping thread waits on, and the [`Crew`] of
//! threads that a room starts, stops and joins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// Locks a mutex, carrying on if a thread panicked while holding it: every
/// structure guarded here stays consistent between statements.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// A one-bit doorbell that one thread sleeps on, rung by publishers and by
/// shutdown. It parks the thread: ringing is an atomic store and, if the
/// thread sleeps, one unpark; no lock is shared between the two sides.
#[derive(Default)]
pub struct Doorbell {
    rung: AtomicBool,
    /// The thread that waits, known from its first wait.
    sleeper: OnceLock<Thread>,
    /// Where rings go once nobody sleeps on it: a stream that waits
    /// without a thread is looked after by the thread that watches it.
    forward: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl Doorbell {
    /// Wakes the thread that waits on it (or calls where rings are
    /// forwarded); a ring before the wait is not lost.
    pub fn ring(&self) {
        // SeqCst on both sides: either `wait` sees the flag, or this sees
        // the sleeper and unparks it (a token that ends its next park).
        self.rung.store(true, Ordering::SeqCst);
        if let Some(forward) = self.forward.get() {
            return forward();
        }
        if let Some(t) = self.sleeper.get() {
            t.unpark();
        }
    }

    /// From now on every ring calls `to` instead (once; later calls are
    /// ignored).
    pub fn forward(&self, to: impl Fn() + Send + Sync + 'static) {
        let _ = self.forward.set(Box::new(to));
    }

    /// Sleeps until rung or until `timeout` has passed; a ring that came
    /// before the call is not lost. Returns whether it was rung. Only one
    /// thread may wait on a given waker.
    pub fn wait(&self, timeout: Duration) -> bool {
        self.sleeper.get_or_init(thread::current);
        let deadline = Instant::now() + timeout;
        loop {
            if self.rung.swap(false, Ordering::SeqCst) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            thread::park_timeout(deadline - now);
        }
    }
}

/// The threads a room starts: each looks at the crew's stop flag; the
/// room's stop sets it, rings whatever its threads wait on, and joins them
/// all. (Written once here: the connection layer, the fan-out, the demos'
/// producers, the sources and the Redis link each have a crew.)
#[derive(Default)]
pub struct Crew {
    stopping: AtomicBool,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Crew {
    /// Starts `run` on a thread called `name`, which the crew joins.
    pub fn spawn(&self, name: &str, run: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(run)?;
        lock(&self.threads).push(thread);
        Ok(())
    }

    /// Whether the crew was told to stop.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The stop flag itself, for code that takes one.
    pub fn flag(&self) -> &AtomicBool {
        &self.stopping
    }

    /// Tells the threads to stop; true the first time only.
    pub fn begin_stop(&self) -> bool {
        !self.stopping.swap(true, Ordering::SeqCst)
    }

    /// Whether every thread has returned.
    pub fn finished(&self) -> bool {
        lock(&self.threads)
            .iter()
            .all(std::thread::JoinHandle::is_finished)
    }

    /// Waits for every thread (told to stop, and rung, before).
    pub fn join(&self) {
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_crew_stops_and_joins_what_it_started() {
        let crew = Arc::new(Crew::default());
        let bells: Vec<Arc<Doorbell>> = (0..3).map(|_| Arc::new(Doorbell::default())).collect();
        for bell in &bells {
            let (crew2, bell) = (Arc::clone(&crew), Arc::clone(bell));
            crew.spawn("test", move || {
                while !crew2.stopping() {
                    bell.wait(Duration::from_secs(60));
                }
            })
            .unwrap();
        }
        assert!(!crew.finished());
        assert!(crew.begin_stop());
        assert!(!crew.begin_stop(), "once");
        for bell in &bells {
            bell.ring();
        }
        crew.join();
        assert!(crew.finished());
    }
}
