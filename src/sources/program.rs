//! `--source` programs: each run under a keeper, its output published
//! line by line, started again with back-off.

use super::keeper;
use super::{Kind, Restart, Shared, Source, DRAIN_AFTER_EXIT, READ_CHUNK, STOP_GRACE};
use crate::lines::Lines;
use crate::log;
use crate::sse::Event;
use crate::sync::lock;
use crate::sys::{self, process::Signal};
use serde_json::{json, Value};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// A run shorter than this that ends counts as failing fast: the pause
/// before the next one doubles.
const FAST_FAILURE: Duration = Duration::from_secs(10);
/// The longest pause before a restart (unless the first pause is longer).
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);
/// The keeper's own grace: shorter than ssed's, so that the keeper has
/// killed what is left before ssed kills the keeper.
const KEEPER_GRACE: Duration = Duration::from_millis(600);
/// How long a read of a pipe waits before it looks at the stop flag.
const PIPE_LOOK: Duration = Duration::from_millis(100);

/// Runs a `--source` command, again and again as `--source-restart` says.
pub(super) fn supervise(shared: &Shared, source: &Source) {
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
        source.bell.wait(delay);
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
            sys::process::die_with_parent(&mut cmd, Signal::Term);
            cmd
        }
        None => {
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(command);
            sys::process::die_with_parent(&mut cmd, Signal::Kill);
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
            let _ = sys::process::signal_group(child.id(), Signal::Term);
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
    // The program's end is waited for without reaping it: until it is
    // reaped, its number and its process group's are its own, so that
    // what is signalled below (and by `Sources::stop` meanwhile) can only
    // be what it started.
    let exited_at = thread::scope(|scope| {
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
        let waited = sys::process::wait_exited(child.id());
        *lock(&exited) = Some(Instant::now());
        waited
    });
    // What it left running in its group (started in the background, its
    // output sent elsewhere) ends with it, as under systemd: runs do not
    // pile up across restarts. (The keeper has done so for its whole tree.)
    // Then it is reaped, its number given up under the lock that
    // `Sources::stop` signals under.
    let status = {
        let mut state = lock(&source.state);
        if exited_at.is_ok() {
            let _ = sys::process::signal_group(child.id(), Signal::Kill);
        }
        state.pid = None;
        child.wait()
    };
    match status {
        Ok(status) => json!({ "code": status.code(), "signal": status.signal() }),
        Err(e) => json!({ "code": null, "signal": null, "error": e.to_string() }),
    }
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
        if !sys::process::wait_readable(r.as_raw_fd(), PIPE_LOOK) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
