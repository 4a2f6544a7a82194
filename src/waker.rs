//! The doorbell a sleeping thread waits on, and lock helpers that every
//! room uses.

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
pub struct Waker {
    rung: AtomicBool,
    /// The thread that waits, known from its first wait.
    sleeper: OnceLock<Thread>,
    /// Where rings go once nobody sleeps on it: a stream that waits
    /// without a thread is looked after by the thread that watches it.
    forward: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl Waker {
    pub fn wake(&self) {
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
