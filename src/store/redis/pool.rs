//! The pool of command connections: at most a few, kept open between
//! uses, a stale one replaced once at once.

use super::conn::{Conn, LinkError};
use super::Shared;
use crate::sync::lock;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// At most `max` command connections, kept open between uses.
pub(super) struct Pool {
    pub(super) idle: Mutex<Vec<Conn>>,
    /// Connections out of the pool now.
    busy: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Pool {
    pub(super) fn new(max: usize) -> Pool {
        Pool {
            idle: Mutex::default(),
            busy: Mutex::new(0),
            freed: Condvar::new(),
            max,
        }
    }

    /// Runs `f` on a connection (an idle one, or a new one while fewer
    /// than `max` are open); a connection that failed is dropped. An idle
    /// connection that Redis closed meanwhile (it restarted) is replaced
    /// once, at once: `f` runs again, so it must be safe to repeat (reads,
    /// and publishes, which carry an idempotency key). The error says
    /// whether the command was sent ([`LinkError::after_sending`]).
    pub(super) fn with<T>(
        &self,
        shared: &Shared,
        mut f: impl FnMut(&mut Conn) -> Result<T, LinkError>,
    ) -> Result<T, LinkError> {
        let deadline = Instant::now() + shared.settings.timeout;
        {
            let mut busy = lock(&self.busy);
            while *busy >= self.max {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(LinkError::Setup(format!(
                        "all {} Redis connections stayed busy for {:?}",
                        self.max, shared.settings.timeout
                    )));
                }
                busy = self
                    .freed
                    .wait_timeout(busy, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            *busy += 1;
        }
        let idle = lock(&self.idle).pop();
        let mut idle = idle;
        let result = crate::net::with_kept(idle.is_some(), LinkError::stale, |kept| {
            let mut conn = match idle.take().filter(|_| kept) {
                Some(conn) => conn,
                None => Conn::open(&shared.target, shared.settings.timeout)?,
            };
            let value = f(&mut conn)?;
            lock(&self.idle).push(conn);
            Ok(value)
        });
        *lock(&self.busy) -= 1;
        self.freed.notify_one();
        result
    }
}
