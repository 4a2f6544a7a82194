//! A stream's body: events framed and written to its connection.
//!
//! Two kinds of stream, one framing ([`Framer`]):
//!
//! - A per-client script (the clock, a training run) is written by its own
//!   thread, which sleeps until its next event is due ([`run_script`]).
//! - A stream of topics (the hub's, and the shared demos') is an
//!   [`Outlet`]: its thread writes the head and what it owes, then it holds
//!   no thread: publishers write to it what fits at once, and the
//!   connection layer's park the rest.
//!
//! [`Stream`] is what the connection layer runs and parks: it implements
//! the transport's face ([`crate::conn::StreamBody`],
//! [`crate::conn::Parkable`]) and reaches a socket only through
//! [`crate::conn::Wire`]. Also the stream caps ([`Streams`]).

mod caps;
mod framing;
mod outlet;
mod reader;
mod script;

pub use caps::{Slot, StreamCounters, Streams};
pub use framing::{Format, Framer, Framing};
pub use outlet::{Buffers, Outlet};
pub use reader::Reader;
pub use script::{run_script, Script};

use crate::conn::{Delimit, Look, Parkable, StreamBody, Wire};
use crate::sync::Doorbell;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// What a stream writes.
pub enum Kind {
    /// A per-client script, written by the stream's thread as it comes due.
    Script(Box<dyn Script>),
    /// Topics, written by publishers and by the park.
    Topics(Arc<Outlet>),
}

/// A stream: its events, how to write them, and what it lets go of when
/// it ends.
pub struct Stream {
    kind: Kind,
    format: Format,
    heartbeat: Duration,
    /// The reconnection delay the stream's `retry:` field sends.
    retry_ms: u64,
    /// At shutdown, its last `retry:` is drawn up to this.
    stop_retry_ms: u64,
    /// Called once it ended: the topics it read may be freed.
    on_end: Option<Box<dyn FnOnce() + Send>>,
    /// The stream's place under its cap, freed last.
    slot: Slot,
}

impl Stream {
    pub fn new(
        kind: Kind,
        format: Format,
        heartbeat: Duration,
        retry_ms: u64,
        stop_retry_ms: u64,
        slot: Slot,
        on_end: impl FnOnce() + Send + 'static,
    ) -> Stream {
        Stream {
            kind,
            format,
            heartbeat,
            retry_ms,
            stop_retry_ms,
            on_end: Some(Box::new(on_end)),
            slot,
        }
    }
}

impl StreamBody for Stream {
    fn run(
        mut self: Box<Self>,
        wire: Arc<dyn Wire>,
        delimit: Delimit,
        bell: &Arc<Doorbell>,
        stopping: &AtomicBool,
    ) -> Option<Box<dyn Parkable>> {
        let framing = Framing::of(delimit);
        let result = match &mut self.kind {
            // A script has a thread: it sleeps until its next event is due.
            Kind::Script(script) => {
                let mut framer = Framer::new(framing, self.format, self.retry_ms)
                    .with_stop_retry(self.stop_retry_ms);
                run_script(
                    &mut framer,
                    &*wire,
                    script.as_mut(),
                    bell,
                    stopping,
                    self.heartbeat,
                )
            }
            // Topics: once caught up, the stream waits in the park.
            Kind::Topics(outlet) => {
                match outlet.start(wire, framing, self.retry_ms, self.stop_retry_ms, stopping) {
                    Ok(()) => return Some(self),
                    Err(e) => Err(e),
                }
            }
        };
        self.slot.counters().ended(&result);
        None
    }
}

impl Parkable for Stream {
    fn look(&mut self, stopping: bool) -> Look {
        match &self.kind {
            Kind::Topics(outlet) => outlet.look(self.heartbeat, stopping),
            Kind::Script(_) => Look::Done(Ok(())),
        }
    }

    fn end(self: Box<Self>, result: &io::Result<()>) {
        self.slot.counters().ended(result);
        // Dropped: the topics let go of the outlet, idle ones are freed.
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // The topics hold the outlet: let go of them, then free idle ones.
        if let Kind::Topics(outlet) = &self.kind {
            outlet.close();
        }
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
    }
}
