//! The sweep of `--history-ttl`: one thread, started only when a ttl is
//! set, that drops events past their age and forgets topics left with
//! neither events nor subscribers. Its cost is a walk of the topics every
//! quarter of the ttl (at most a second apart), never anything per
//! publish.

use super::Hub;
use crate::sync::{Crew, Doorbell};
use std::sync::Arc;
use std::time::Duration;

/// The sweep's thread.
pub struct Sweeper {
    crew: Arc<Crew>,
    bell: Arc<Doorbell>,
}

impl Sweeper {
    /// Starts sweeping `hub`, if it has a ttl; `None` otherwise.
    pub fn start(hub: &Arc<Hub>) -> std::io::Result<Option<Sweeper>> {
        let Some(ttl) = hub.ttl() else {
            return Ok(None);
        };
        let every = (ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let crew = Arc::new(Crew::default());
        let bell = Arc::new(Doorbell::default());
        let (h, c, b) = (Arc::clone(hub), Arc::clone(&crew), Arc::clone(&bell));
        crew.spawn("ssed-expiry", move || {
            while !c.stopping() {
                h.expire();
                b.wait(every);
            }
        })?;
        Ok(Some(Sweeper { crew, bell }))
    }

    pub fn stop(&self) {
        self.crew.begin_stop();
        self.bell.ring();
        self.crew.join();
    }
}
