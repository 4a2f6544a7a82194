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
    /// connection Redis closed meanwhile (it restarted), or one to another
    /// server than the feed checked last, is seen before anything is sent
    /// on it, and replaced. One that fails at once anyway (closed just
    /// then) is replaced once, at once: `f` runs again, so it must be safe
    /// to repeat (reads, and publishes, which carry an idempotency key).
    /// The error says whether the command was sent
    /// ([`LinkError::after_sending`]) by either try: one that went out may
    /// have run, whatever the new connection then says.
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
        // Not one Redis closed, nor one to a server the feed has left.
        let checked = lock(&shared.server).clone();
        let idle = lock(&self.idle)
            .pop()
            .filter(|c| !c.closed_while_idle() && (checked.is_none() || c.server == checked));
        let mut attempt = |conn: Option<Conn>| -> Result<T, LinkError> {
            let mut conn = match conn {
                Some(conn) => conn,
                None => shared.open_command()?,
            };
            let value = f(&mut conn)?;
            lock(&self.idle).push(conn);
            Ok(value)
        };
        let result = match idle {
            Some(conn) => match attempt(Some(conn)) {
                Err(first) if first.stale() => match attempt(None) {
                    Err(again) if first.after_sending() && !again.after_sending() => Err(first),
                    other => other,
                },
                other => other,
            },
            None => attempt(None),
        };
        *lock(&self.busy) -= 1;
        self.freed.notify_one();
        result
    }
}
