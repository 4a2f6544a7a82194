//! Programs and files that feed topics: live logs.
//!
//! `--source TOPIC=COMMAND` runs COMMAND once for every viewer (`sh -c`, in
//! a process group of its own, stdin closed) and publishes each line of its
//! standard output to TOPIC, each line of its standard error as an event
//! named `stderr`, and, when it exits, an event named `exit`. It is started
//! again after a pause that doubles (up to a minute) while it keeps failing
//! fast. `--tail TOPIC=FILE` follows FILE as `tail -F` does: from its end,
//! across rotation (rename and re-create) and truncation (an event named
//! `truncated`), and waits for a file that does not exist yet.
//!
//! Lines are split on LF, a trailing CR removed, invalid UTF-8 replaced; a
//! line longer than the event limit is cut and marked. The hub's history
//! bounds what a fast program costs in memory, as for any topic.
//!
//! What an operator points ssed at is hostile too: a file may be a FIFO,
//! a device, or replaced by a symlink to a secret; a program may print
//! without end, leave its process group, or hold its pipes after it exits.
//! So a followed file is opened without blocking and only if it is a
//! regular file (by default not through a symlink, and owned by the owner
//! of the file it replaces); every read loop looks at the stop flag; a
//! program runs under a keeper (`keeper.rs`) that ends its whole tree;
//! and its pipes are read only so long after it exits.
//!
//! [`Sources`] owns every thread and child: at shutdown it asks each
//! keeper to end its program (SIGTERM), kills what is left after a grace
//! period, and joins every thread.

mod keeper;
mod program;
mod tail;

pub use keeper::{run as run_keeper, SUBCOMMAND as KEEPER_SUBCOMMAND};

pub use crate::config::{Restart, SourceKind as Kind, SourceSpec as Spec};
use crate::hub::Hub;
use crate::log;
use crate::sse::Event;
use crate::store::Store;
use crate::sync::{lock, Crew, Doorbell};
use crate::sys::process::{signal_group, Signal};
use serde_json::{json, Value};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At shutdown, how long programs have to end after SIGTERM before the
/// rest of their process group is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_millis(800);
/// Bytes read from a file or a pipe at a time.
pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// Chunks read from a file in one go before the loop looks at the stop
/// flag and the file's name again: a file that never ends (`yes >> log`)
/// holds the thread no longer than this.
pub(crate) const CHUNKS_PER_LOOK: usize = 64;
/// How long a program's pipes are still read after it exited: what a
/// process it left behind holds open is not waited on forever.
pub(crate) const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// How sources run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub restart: Restart,
    /// The first pause before a restart; it doubles while a command keeps
    /// failing fast.
    pub restart_delay: Duration,
    /// How often a followed file is looked at when nothing new was read.
    pub tail_poll: Duration,
    /// The longest line published whole.
    pub max_line: usize,
    /// ssed's own binary, run as the keeper (`keeper.rs`) of each
    /// program; `None` runs `sh` directly, without the keeper's guarantees
    /// (for library use, where the binary is not at hand).
    pub keeper: Option<PathBuf>,
    /// `--tail-symlinks`: follow a `--tail` path that is a symlink.
    pub tail_symlinks: bool,
}

/// Every source, and the threads that run them.
pub struct Sources {
    shared: Arc<Shared>,
    sources: Vec<Arc<Source>>,
}

struct Shared {
    /// Where lines are published: the log, as any publish.
    store: Arc<dyn Store>,
    /// Lines that could not be published, said once a second.
    lost: log::Throttled,
    settings: Settings,
    /// The supervisor and tail threads, and the stop flag they look at.
    crew: Crew,
    /// When the programs were sent SIGTERM: their grace runs from then.
    stop_began: Mutex<Option<Instant>>,
}

struct Source {
    spec: Spec,
    state: Mutex<State>,
    /// Cuts its pauses short at shutdown.
    bell: Doorbell,
}

#[derive(Clone, Default)]
struct State {
    running: bool,
    /// The running program's process (its group's leader), until it is
    /// reaped: it is signalled under this lock, and its runner gives the
    /// number up under it before reaping, so that no other process that
    /// may get the number is ever signalled.
    pid: Option<u32>,
    restarts: u64,
    last_exit: Option<Value>,
}

impl Sources {
    /// Pins each source's topic in `hub` and starts its thread, which
    /// publishes to `store`.
    pub fn start(
        specs: &[Spec],
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        settings: Settings,
    ) -> io::Result<Sources> {
        let shared = Arc::new(Shared {
            store,
            lost: log::Throttled::new("lines of sources were lost: they could not be published"),
            settings,
            crew: Crew::default(),
            stop_began: Mutex::default(),
        });
        let mut sources = Sources {
            shared: Arc::clone(&shared),
            sources: Vec::new(),
        };
        for spec in specs {
            if let Kind::File(path) = &spec.kind {
                tail::check_tail_at_start(path, shared.settings.tail_symlinks)
                    .map_err(|why| io::Error::other(format!("{}: {why}", spec.flag())))?;
            }
            hub.pin(&spec.topic)
                .map_err(|e| io::Error::other(format!("{}: {e}", spec.flag())))?;
            let source = Arc::new(Source {
                spec: spec.clone(),
                state: Mutex::default(),
                bell: Doorbell::default(),
            });
            let (sh, s) = (Arc::clone(&shared), Arc::clone(&source));
            match &spec.kind {
                Kind::Command(_) => shared
                    .crew
                    .spawn("ssed-source", move || program::supervise(&sh, &s))?,
                Kind::File(path) => {
                    // Whether it is there now, at start (not when the
                    // thread first looks): only then is it read from its
                    // end.
                    let there = std::fs::symlink_metadata(path).is_ok();
                    shared
                        .crew
                        .spawn("ssed-tail", move || tail::follow(&sh, &s, there))?
                }
            }
            sources.sources.push(source);
        }
        Ok(sources)
    }

    fn find(&self, topic: &str) -> Option<&Arc<Source>> {
        self.sources.iter().find(|s| s.spec.topic == topic)
    }

    /// The flag that feeds `topic`, if a source does.
    pub fn owner(&self, topic: &str) -> Option<String> {
        self.find(topic).map(|s| s.spec.flag())
    }

    /// What `/topics` shows of the source of `topic`.
    pub fn describe(&self, topic: &str) -> Option<Value> {
        let source = self.find(topic)?;
        let state = lock(&source.state).clone();
        Some(match &source.spec.kind {
            Kind::Command(c) => json!({
                "command": c,
                "running": state.running,
                "pid": state.pid,
                "restarts": state.restarts,
                "last_exit": state.last_exit,
            }),
            Kind::File(f) => json!({
                "file": f.display().to_string(),
                "running": state.running,
            }),
        })
    }

    /// Asks every program to end (SIGTERM to its process group) and wakes
    /// every source; [`Sources::stop`] finishes the job.
    pub fn begin_stop(&self) {
        // Once: a second SIGTERM means "hurry" to some programs.
        if !self.shared.crew.begin_stop() {
            return;
        }
        lock(&self.shared.stop_began).get_or_insert_with(Instant::now);
        self.signal_all(Signal::Term);
        for source in &self.sources {
            source.bell.ring();
        }
    }

    /// Stops every source: what has not ended a grace period after SIGTERM
    /// is killed (by its keeper; its group by ssed if the keeper is stuck);
    /// every thread is joined. No child outlives ssed.
    pub fn stop(&self) {
        self.begin_stop();
        let began = lock(&self.shared.stop_began).unwrap_or_else(Instant::now);
        let deadline = began + STOP_GRACE;
        while !self.shared.crew.finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.signal_all(Signal::Kill);
        self.shared.crew.join();
    }

    /// Signals each running program's group, under the lock that keeps
    /// its number its own.
    fn signal_all(&self, signal: Signal) {
        for source in &self.sources {
            let state = lock(&source.state);
            if let Some(pid) = state.pid {
                let _ = signal_group(pid, signal);
            }
        }
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn stopping(&self) -> bool {
        self.crew.stopping()
    }

    fn publish(&self, topic: &str, event: Event) {
        if let Err(why) = self.store.publish(topic, event, None) {
            self.lost.note(&format!("{topic}: {why}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let s = Spec {
            topic: "build".into(),
            kind: Kind::Command("make -j2".into()),
        };
        assert_eq!(s.flag(), "--source build=make -j2");
    }
}
