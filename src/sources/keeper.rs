//! The keeper: a small process between ssed and each run of a `--source`
//! program, so that no descendant of the program outlives the run or ssed.
//!
//! A process group is not enough: a program can leave it (`setsid`,
//! `setpgid`), and a daemonised grandchild is re-parented to init, where
//! nothing of ssed can find it. The keeper is ssed's own binary run as
//! `ssed __source-keeper GRACE_MS PARENT COMMAND`; it makes itself the
//! *subreaper* of everything it starts (`PR_SET_CHILD_SUBREAPER`), so every
//! descendant, however it detaches, stays in its tree of parent links. Then:
//!
//! - it runs `sh -c COMMAND` with the keeper's stdout and stderr (ssed's
//!   pipes) and waits for it;
//! - when `sh` ends, it kills every descendant left (SIGKILL), reaps them,
//!   and exits as `sh` did (its code, or the same signal), so that ssed's
//!   pipes close and ssed sees the program's own exit;
//! - when told to stop (SIGTERM, SIGINT, SIGHUP, or its parent's death
//!   through `PR_SET_PDEATHSIG`, which holds when ssed is killed with
//!   SIGKILL), it sends SIGTERM to every descendant and SIGKILL to those
//!   left after `GRACE_MS`.
//!
//! Not covered: a keeper killed itself with SIGKILL (its descendants are
//! then re-parented to init), and descendants that gain privileges to
//! leave (a set-user-ID program changes who may signal it).

use crate::sys::process::{self, Pidfd, Signal};
use crate::sys::signals::{self, Told};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The hidden subcommand that runs a keeper.
pub const SUBCOMMAND: &str = "__source-keeper";

/// How often the keeper looks at its children when no signal comes.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// How long the keeper goes on killing what is left of a run before it
/// exits anyway (a process the kernel cannot kill at once, in D state).
const KILL_FOR: Duration = Duration::from_secs(5);

/// The command that runs `shell_command` under a keeper: `keeper` is
/// ssed's own binary.
pub fn command(keeper: &Path, shell_command: &str, grace: Duration) -> Command {
    let mut cmd = Command::new(keeper);
    cmd.arg(SUBCOMMAND)
        .arg(grace.as_millis().to_string())
        .arg(std::process::id().to_string())
        .arg(shell_command);
    cmd
}

/// The keeper's `main`, given the arguments after the subcommand. Never
/// returns: it exits as the program did.
pub fn run(args: &[String]) -> ! {
    let [grace, parent, shell_command] = args else {
        eprintln!(
            "ssed {SUBCOMMAND}: expected GRACE_MS PARENT_PID COMMAND (ssed runs this itself)"
        );
        std::process::exit(2);
    };
    let (Ok(grace), Ok(parent)) = (grace.parse::<u64>(), parent.parse::<u32>()) else {
        eprintln!("ssed {SUBCOMMAND}: GRACE_MS and PARENT_PID are numbers");
        std::process::exit(2);
    };
    let grace = Duration::from_millis(grace);
    let kept = signals::block_keeper_signals()
        .and_then(|()| process::become_subreaper())
        .and_then(|()| process::term_with_parent());
    if let Err(e) = kept {
        eprintln!("ssed {SUBCOMMAND}: cannot keep the program's processes: {e}");
        std::process::exit(126);
    }
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(shell_command).stdin(Stdio::null());
    process::die_with_parent(&mut cmd, Signal::Kill);
    let sh = match cmd.spawn() {
        Ok(child) => child.id(),
        Err(e) => {
            eprintln!("ssed: cannot run sh: {e}");
            std::process::exit(127);
        }
    };
    let mut stop_at: Option<Instant> = None;
    loop {
        let told = signals::wait_keeper_signal(LOOK_EVERY);
        // ssed gone before the parent-death signal was set counts too.
        let orphaned = process::parent_pid() != parent;
        if (told == Told::Stop || orphaned) && stop_at.is_none() {
            signal_all(Signal::Term);
            stop_at = Some(Instant::now() + grace);
        }
        if let Some(status) = reap_until(sh) {
            finish(status);
        }
        if stop_at.is_some_and(|at| Instant::now() >= at) {
            signal_all(Signal::Kill);
        }
    }
}

/// Reaps every child that ended; the status of `sh` if it was one of them.
fn reap_until(sh: u32) -> Option<ExitStatus> {
    let mut found = None;
    while let Ok(Some((pid, status))) = process::reap_any() {
        if pid == sh {
            found = Some(status);
        }
    }
    found
}

/// The program ended: everything it left is killed and reaped, then the
/// keeper exits as the program did.
fn finish(status: ExitStatus) -> ! {
    let until = Instant::now() + KILL_FOR;
    loop {
        signal_all(Signal::Kill);
        // No child at all (ECHILD): every descendant is gone and reaped.
        if process::reap_any().is_err() || Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    process::exit_like(status)
}

/// Signals every living descendant of this process. Each is found in
/// /proc, then held by a pidfd, then checked again to be a descendant
/// before the signal goes through that handle: a process that ended and
/// was reaped between the look and the signal cannot have its number
/// given to a stranger that is then signalled.
fn signal_all(signal: Signal) {
    let tree = descendants(std::process::id());
    let ours = |pid: u32| pid == std::process::id() || tree.contains(&pid);
    for &pid in &tree {
        let Ok(handle) = Pidfd::open(pid) else {
            // Gone already, or a kernel without pidfds (before 5.3): not
            // signalled by number, which might be another's by now.
            continue;
        };
        let still = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| parse_stat(&stat))
            .is_some_and(|(_, ppid)| ours(ppid));
        if still {
            let _ = handle.signal(signal);
        }
    }
}

/// The processes below `root` in the tree of parent links, zombies left
/// out (they are dead; reaping them is their parent's part), from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, ppid)) = parse_stat(&stat) {
            if state != 'Z' {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            out.push(child);
            todo.push(child);
        }
    }
    out
}

/// The state and parent of a process from its `/proc/PID/stat` line:
/// `PID (COMM) STATE PPID ...`, where COMM may hold spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let cases = [
            ("12 (sh) S 7 12 12 0", Some(('S', 7))),
            ("13 (a) b) (c) R 1 13", Some(('R', 1))),
            ("14 (zombie) Z 12 0", Some(('Z', 12))),
            ("15 (x", None),
            ("16 (x) S", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_stat(line), want, "{line}");
        }
    }

    #[test]
    fn this_process_s_children_are_found() {
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let found = descendants(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
    }
}
