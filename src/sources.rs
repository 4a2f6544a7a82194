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
//! program runs under a [keeper](crate::keeper) that ends its whole tree;
//! and its pipes are read only so long after it exits.
//!
//! [`Sources`] owns every thread and child: at shutdown it asks each
//! keeper to end its program (SIGTERM), kills what is left after a grace
//! period, and joins every thread.

use crate::hub::Hub;
use crate::keeper;
use crate::lines::Lines;
use crate::log;
use crate::sse::Event;
use crate::sys;
use crate::waker::{lock, Waker};
use serde_json::{json, Value};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A run shorter than this that ends counts as failing fast: the pause
/// before the next one doubles.
const FAST_FAILURE: Duration = Duration::from_secs(10);
/// The longest pause before a restart (unless the first pause is longer).
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);
/// At shutdown, how long programs have to end after SIGTERM before the
/// rest of their process group is killed.
const STOP_GRACE: Duration = Duration::from_millis(800);
/// The keeper's own grace: shorter than ssed's, so that the keeper has
/// killed what is left before ssed kills the keeper.
const KEEPER_GRACE: Duration = Duration::from_millis(600);
/// Bytes read from a file or a pipe at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Chunks read from a file in one go before the loop looks at the stop
/// flag and the file's name again: a file that never ends (`yes >> log`)
/// holds the thread no longer than this.
const CHUNKS_PER_LOOK: usize = 64;
/// How long a program's pipes are still read after it exited: what a
/// process it left behind holds open is not waited on forever.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);
/// How long a read of a pipe waits before it looks at the stop flag.
const PIPE_LOOK: Duration = Duration::from_millis(100);

/// What feeds a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A command for `sh -c`.
    Command(String),
    /// A file to follow.
    File(PathBuf),
}

/// One `--source` or `--tail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub topic: String,
    pub kind: Kind,
}

impl Spec {
    /// How the user wrote it, for messages: `--source logs=make build`.
    pub fn flag(&self) -> String {
        match &self.kind {
            Kind::Command(c) => format!("--source {}={c}", self.topic),
            Kind::File(f) => format!("--tail {}={}", self.topic, f.display()),
        }
    }
}

/// When a command is started again after it exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

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
    /// ssed's own binary, run as the [keeper](crate::keeper) of each
    /// program; `None` runs `sh` directly, without the keeper's guarantees
    /// (for library use, where the binary is not at hand).
    pub keeper: Option<PathBuf>,
    /// `--tail-symlinks`: follow a `--tail` path that is a symlink.
    pub tail_symlinks: bool,
}

/// How a source publishes a line: to the hub, or through Redis; an error
/// says why the line was lost.
pub type Publish = Arc<dyn Fn(&str, Event) -> Result<(), String> + Send + Sync>;

/// Every source, and the threads that run them.
pub struct Sources {
    shared: Arc<Shared>,
    sources: Vec<Arc<Source>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    publish: Publish,
    /// Lines that could not be published, said once a second.
    lost: log::Throttled,
    settings: Settings,
    stopping: AtomicBool,
    /// When the programs were sent SIGTERM: their grace runs from then.
    stop_began: Mutex<Option<Instant>>,
}

struct Source {
    spec: Spec,
    state: Mutex<State>,
    /// Cuts its pauses short at shutdown.
    waker: Waker,
}

#[derive(Clone, Default)]
struct State {
    running: bool,
    pid: Option<u32>,
    restarts: u64,
    last_exit: Option<Value>,
}

impl Sources {
    /// Pins each source's topic in the hub and starts its thread.
    pub fn start(
        specs: &[Spec],
        hub: Arc<Hub>,
        publish: Publish,
        settings: Settings,
    ) -> io::Result<Sources> {
        let shared = Arc::new(Shared {
            publish,
            lost: log::Throttled::new("lines of sources were lost: they could not be published"),
            settings,
            stopping: AtomicBool::new(false),
            stop_began: Mutex::default(),
        });
        let sources = Sources {
            shared: Arc::clone(&shared),
            sources: Vec::new(),
            threads: Mutex::default(),
        };
        let mut sources = sources;
        for spec in specs {
            if let Kind::File(path) = &spec.kind {
                check_tail_at_start(path, shared.settings.tail_symlinks)
                    .map_err(|why| io::Error::other(format!("{}: {why}", spec.flag())))?;
            }
            hub.pin(&spec.topic)
                .map_err(|e| io::Error::other(format!("{}: {e:?}", spec.flag())))?;
            let source = Arc::new(Source {
                spec: spec.clone(),
                state: Mutex::default(),
                waker: Waker::default(),
            });
            let (name, body): (String, Box<dyn FnOnce() + Send>) = {
                let shared = Arc::clone(&shared);
                let s = Arc::clone(&source);
                match &spec.kind {
                    Kind::Command(_) => (
                        "ssed-source".into(),
                        Box::new(move || supervise(&shared, &s)),
                    ),
                    Kind::File(path) => {
                        // Whether it is there now, at start (not when the
                        // thread first looks): only then is it read from
                        // its end.
                        let there = std::fs::symlink_metadata(path).is_ok();
                        (
                            "ssed-tail".into(),
                            Box::new(move || follow(&shared, &s, there)),
                        )
                    }
                }
            };
            let thread = thread::Builder::new().name(name).spawn(body)?;
            lock(&sources.threads).push(thread);
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
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        lock(&self.shared.stop_began).get_or_insert_with(Instant::now);
        for source in &self.sources {
            if let Some(pid) = lock(&source.state).pid {
                sys::signal_group(pid, sys::Signal::Term);
            }
            source.waker.wake();
        }
    }

    /// Stops every source: what has not ended a grace period after SIGTERM
    /// is killed (by its keeper; its group by ssed if the keeper is stuck);
    /// every thread is joined. No child outlives ssed.
    pub fn stop(&self) {
        self.begin_stop();
        let began = lock(&self.shared.stop_began).unwrap_or_else(Instant::now);
        let deadline = began + STOP_GRACE;
        let finished = |threads: &[JoinHandle<()>]| threads.iter().all(JoinHandle::is_finished);
        while !finished(&lock(&self.threads)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        for source in &self.sources {
            if let Some(pid) = lock(&source.state).pid {
                sys::signal_group(pid, sys::Signal::Kill);
            }
        }
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        for thread in threads {
            let _ = thread.join();
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
        self.stopping.load(Ordering::Acquire)
    }

    fn publish(&self, topic: &str, event: Event) {
        if let Err(why) = (self.publish)(topic, event) {
            self.lost.note(&format!("{topic}: {why}"));
        }
    }
}

/// Runs a `--source` command, again and again as `--source-restart` says.
fn supervise(shared: &Shared, source: &Source) {
    let Kind::Command(command) = &source.spec.kind else {
        return;
    };
    let topic = source.spec.topic.as_str();
    let settings = &shared.settings;
    let mut delay = settings.restart_delay;
    while !shared.stopping() {
        let started = Instant::now();
        let mut exit = run_once(shared, source, command);
        let success = exit["code"] == 0;
        let again = !shared.stopping()
            && match settings.restart {
                Restart::Always => true,
                Restart::OnFailure => !success,
                Restart::Never => false,
            };
        // A run that lasted is not failing: the pause starts over.
        if started.elapsed() >= FAST_FAILURE {
            delay = settings.restart_delay;
        }
        // The exit says when the next run starts, if one does.
        exit["restart_in_ms"] = json!(again.then_some(delay.as_millis() as u64));
        shared.publish(topic, Event::named("exit", exit.to_string()));
        {
            let mut state = lock(&source.state);
            state.running = false;
            state.pid = None;
            state.last_exit = Some(exit.clone());
        }
        if !shared.stopping() {
            log::line(&format!(
                "{}: {}; {}",
                source.spec.flag(),
                ended(&exit),
                if again {
                    format!("starting again in {}", pause(delay))
                } else {
                    "not started again (--source-restart)".into()
                }
            ));
        }
        if !again {
            break;
        }
        source.waker.wait(delay);
        if shared.stopping() {
            break;
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY.max(settings.restart_delay));
        lock(&source.state).restarts += 1;
    }
}

/// A pause, for the log: `250 ms`, `2 s`.
fn pause(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

/// How a run ended, for the log: `exited with code 3`.
fn ended(exit: &Value) -> String {
    match (&exit["code"], &exit["signal"], &exit["error"]) {
        (_, _, Value::String(e)) => format!("could not start: {e}"),
        (Value::Number(c), _, _) => format!("exited with code {c}"),
        (_, Value::Number(s), _) => format!("ended by signal {s}"),
        _ => "ended".into(),
    }
}

/// One run of a command: its lines published as they come. Returns what
/// the `exit` event says.
fn run_once(shared: &Shared, source: &Source, command: &str) -> Value {
    let topic = source.spec.topic.as_str();
    let mut cmd = match &shared.settings.keeper {
        Some(keeper) => {
            let mut cmd = keeper::command(keeper, command, KEEPER_GRACE);
            // The keeper ends the program's tree when ssed goes, however.
            sys::die_with_parent(&mut cmd, sys::Signal::Term);
            cmd
        }
        None => {
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(command);
            sys::die_with_parent(&mut cmd, sys::Signal::Kill);
            cmd
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that everything it starts can be
        // stopped together.
        .process_group(0);
    let spawned = cmd.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return json!({ "code": null, "signal": null, "error": e.to_string() }),
    };
    {
        let mut state = lock(&source.state);
        state.running = true;
        state.pid = Some(child.id());
        // Stopping began between the check and the spawn: end it now.
        if shared.stopping() {
            sys::signal_group(child.id(), sys::Signal::Term);
        }
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let max = shared.settings.max_line;
    // When the program ended: its pipes are read a little longer, not for
    // as long as something it left holds them.
    let exited: Mutex<Option<Instant>> = Mutex::default();
    let give_up = || {
        let drained = lock(&exited).is_some_and(|at| at.elapsed() >= DRAIN_AFTER_EXIT);
        let late = shared.stopping()
            && lock(&shared.stop_began).is_some_and(|at| at.elapsed() >= STOP_GRACE);
        drained || late
    };
    let status = thread::scope(|scope| {
        if let Some(err) = stderr {
            let give_up = &give_up;
            scope.spawn(move || {
                read_lines(err, max, give_up, |line| {
                    shared.publish(topic, Event::named("stderr", line))
                });
            });
        }
        if let Some(out) = stdout {
            let give_up = &give_up;
            scope.spawn(move || {
                read_lines(out, max, give_up, |line| {
                    shared.publish(topic, Event::message(line))
                });
            });
        }
        let status = child.wait();
        *lock(&exited) = Some(Instant::now());
        status
    });
    let exit = match status {
        Ok(status) => json!({ "code": status.code(), "signal": status.signal() }),
        Err(e) => json!({ "code": null, "signal": null, "error": e.to_string() }),
    };
    // What it left running in its group (started in the background, its
    // output sent elsewhere) ends with it, as under systemd: runs do not
    // pile up across restarts. (The keeper has done so for its whole tree.)
    sys::signal_group(child.id(), sys::Signal::Kill);
    exit
}

/// Calls `line` for each line read from the pipe `r` until it ends or
/// `give_up` says so (looked at whenever nothing came for a while).
fn read_lines(
    mut r: impl Read + AsRawFd,
    max: usize,
    give_up: &dyn Fn() -> bool,
    mut line: impl FnMut(String),
) {
    let mut lines = Lines::new(max);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if !sys::wait_readable(r.as_raw_fd(), PIPE_LOOK) {
            if give_up() {
                break;
            }
            continue;
        }
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => lines.feed(&buf[..n], &mut line),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    lines.finish(&mut line);
}

/// Refuses at start a `--tail` path that exists and is not something to
/// follow: a directory, a FIFO, a device, a socket, or (without
/// `--tail-symlinks`) a symlink. One that does not exist yet is waited for.
fn check_tail_at_start(path: &Path, symlinks: bool) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() && !symlinks => Err(format!(
            "{} is a symlink; name the file itself, or allow symlinks with --tail-symlinks",
            path.display()
        )),
        Ok(meta) => {
            let meta = if meta.file_type().is_symlink() {
                match std::fs::metadata(path) {
                    Ok(target) => target,
                    // A dangling symlink: waited for, as a missing file.
                    Err(_) => return Ok(()),
                }
            } else {
                meta
            };
            match not_regular(&meta) {
                Some(what) => Err(format!(
                    "{} is {what}; --tail follows regular files only",
                    path.display()
                )),
                None => Ok(()),
            }
        }
        Err(_) => Ok(()),
    }
}

/// What a file is when it is not a regular file: `a directory`.
fn not_regular(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    })
}

/// Why the file at a `--tail` path is not followed.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// Nothing there (or a dangling symlink): said once, then waited for.
    Missing(String),
    /// Something there that must not be read: said once, then waited out.
    Unsafe(String),
}

/// Opens the file at `path` to follow it: never blocks (a FIFO or a device
/// opens at once with `O_NONBLOCK`, then is refused), never follows a
/// symlink unless `symlinks`, and refuses a file not owned by `owner` (the
/// owner of the file it replaces), so that whoever can write the log's
/// directory cannot make ssed publish another file.
fn open_followed(
    path: &Path,
    symlinks: bool,
    owner: Option<u32>,
) -> Result<(File, Metadata), Refused> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if !symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) if !symlinks => {
                Refused::Unsafe("is now a symlink; not followed (--tail-symlinks allows it)".into())
            }
            _ if e.kind() == io::ErrorKind::NotFound => Refused::Missing(e.to_string()),
            _ => Refused::Unsafe(e.to_string()),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| Refused::Unsafe(e.to_string()))?;
    if let Some(what) = not_regular(&meta) {
        return Err(Refused::Unsafe(format!(
            "is now {what}; --tail follows regular files only"
        )));
    }
    if let Some(uid) = owner.filter(|&uid| uid != meta.uid()) {
        return Err(Refused::Unsafe(format!(
            "is now owned by uid {}, not uid {uid} as the file it replaces; not followed",
            meta.uid()
        )));
    }
    Ok((file, meta))
}

/// Follows a `--tail` file as `tail -F` does.
fn follow(shared: &Shared, source: &Source, there_at_start: bool) {
    let Kind::File(path) = &source.spec.kind else {
        return;
    };
    let topic = source.spec.topic.as_str();
    let poll = shared.settings.tail_poll;
    let symlinks = shared.settings.tail_symlinks;
    let mut lines = Lines::new(shared.settings.max_line);
    let mut emit = |line: String| shared.publish(topic, Event::message(line));
    // Only a file there from the start is read from its end; one that
    // appears, or replaces it, is read whole.
    let mut from_end = there_at_start;
    let mut open: Option<(File, u64, u64)> = None;
    // The owner of the first file followed: a file that replaces it must
    // have the same.
    let mut owner: Option<u32> = None;
    // What was last said about the path, so that it is said once.
    let mut said: Option<Refused> = None;
    let mut buf = vec![0u8; READ_CHUNK];
    while !shared.stopping() {
        let Some((file, inode, pos)) = open.as_mut() else {
            match open_followed(path, symlinks, owner) {
                Ok((mut f, meta)) => {
                    let start = if from_end { meta.len() } else { 0 };
                    if f.seek(SeekFrom::Start(start)).is_ok() {
                        owner.get_or_insert(meta.uid());
                        open = Some((f, meta.ino(), start));
                        lock(&source.state).running = true;
                        said = None;
                    }
                }
                Err(refused) => {
                    if said.as_ref() != Some(&refused) {
                        let why = match &refused {
                            Refused::Missing(e) => format!("{e}; waiting for it"),
                            Refused::Unsafe(e) => format!("{} {e}", path.display()),
                        };
                        log::line(&format!("{}: {why}", source.spec.flag()));
                        said = Some(refused);
                    }
                    source.waker.wait(poll);
                }
            }
            from_end = false;
            continue;
        };
        let mut read_any = false;
        // Whether the read came to the file's end (else it stopped to look
        // around, and more is there).
        let mut at_end = false;
        for _ in 0..CHUNKS_PER_LOOK {
            if shared.stopping() {
                break;
            }
            match file.read(&mut buf) {
                Ok(0) => {
                    at_end = true;
                    break;
                }
                Ok(n) => {
                    *pos += n as u64;
                    read_any = true;
                    lines.feed(&buf[..n], &mut emit);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EAGAIN (a file that would block) or a failing disk: look
                // again after a poll period.
                Err(_) => {
                    at_end = true;
                    break;
                }
            }
        }
        let now = if symlinks {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        };
        let next = match now {
            // Renamed away and created anew (or a symlink put in its
            // place): what the old one held is read to its end; then the
            // new one from its start, if it may be.
            Ok(meta) if meta.ino() != *inode && at_end => Next::Reopen,
            Ok(meta) if meta.ino() == *inode && meta.len() < *pos => {
                if file.seek(SeekFrom::Start(0)).is_ok() {
                    *pos = 0;
                }
                Next::Truncated
            }
            // Removed: what it held is read, then it is waited for.
            Err(_) if at_end => Next::Gone,
            _ if read_any => Next::Read,
            _ => Next::Wait,
        };
        match next {
            Next::Read => {}
            Next::Wait => {
                source.waker.wait(poll);
            }
            Next::Reopen => {
                lines.finish(&mut emit);
                open = None;
                lock(&source.state).running = false;
            }
            Next::Truncated => {
                lines.finish(&mut emit);
                shared.publish(topic, Event::named("truncated", path.display().to_string()));
            }
            Next::Gone => {
                lines.finish(&mut emit);
                open = None;
                lock(&source.state).running = false;
            }
        }
    }
}

/// What a followed file needs after a read.
enum Next {
    /// More may be there: read again.
    Read,
    /// Nothing new: wait a poll period.
    Wait,
    /// Another file has its name.
    Reopen,
    /// It was cut short: read it from the start.
    Truncated,
    /// It is gone.
    Gone,
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

    #[test]
    fn log_words() {
        assert_eq!(pause(Duration::from_millis(20)), "20 ms");
        assert_eq!(pause(Duration::from_secs(2)), "2 s");
        assert_eq!(pause(Duration::from_millis(1500)), "1.5 s");
        let exit = |v: Value| ended(&v);
        assert_eq!(
            exit(json!({"code": 3, "signal": null})),
            "exited with code 3"
        );
        assert_eq!(
            exit(json!({"code": null, "signal": 9})),
            "ended by signal 9"
        );
        assert_eq!(
            exit(json!({"code": null, "signal": null, "error": "no sh"})),
            "could not start: no sh"
        );
    }
}
