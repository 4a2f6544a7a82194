//! Processes: signalling them without ever hitting a stranger, waiting
//! for them, and the keeper's place as their reaper.
//!
//! A process id is a number the kernel gives again once the process is
//! reaped. So a process is signalled either through a *pidfd* (a handle
//! to that one process, `pidfd_open` and `pidfd_send_signal`, which can
//! never reach another), or before it is reaped: [`wait_exited`] waits for
//! a child's end without reaping it, so that its number (and its process
//! group's) stays its own while what it left is signalled.

use super::check;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A signal ssed sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

/// Sends `signal` to every process of the process group `pgid`: a child
/// started in a group of its own (whose id is the group's) that has not
/// been reaped yet, so that the group's number cannot have been given to
/// another. A group that is gone is not an error.
#[allow(unsafe_code)]
pub fn signal_group(pgid: u32, signal: Signal) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| io::ErrorKind::InvalidInput)?;
    // Never the caller's own group, nor "every process" (-1).
    if pgid <= 1 {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: kill takes plain integers.
    match check(unsafe { libc::kill(-pgid, signal.number()) }) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// A handle to one process (`pidfd_open`): signals through it reach that
/// process or none, whatever number the kernel gives again meanwhile.
/// Closed when dropped.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// A handle to the process `pid` now.
    #[allow(unsafe_code)]
    pub fn open(pid: u32) -> io::Result<Pidfd> {
        let pid = libc::pid_t::try_from(pid).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: a raw system call with two integers; it returns a new
        // descriptor, which the OwnedFd then owns.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = libc::c_int::try_from(fd).map_err(|_| io::ErrorKind::InvalidData)?;
        let fd = check(fd)?;
        // SAFETY: fd is a descriptor just opened and owned by no one else.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends `signal`; a process that has ended is not an error.
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        // SAFETY: a raw system call with integers and a null siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal.number(),
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        match check(libc::c_int::try_from(rc).unwrap_or(-1)) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// Waits until the child `pid` has ended, without reaping it: it stays a
/// zombie, its number and its group's its own, until `Child::wait`.
#[allow(unsafe_code)]
pub fn wait_exited(pid: u32) -> io::Result<()> {
    let pid = libc::id_t::from(pid);
    loop {
        // SAFETY: a zeroed siginfo_t is valid; waitid writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid reads integers and writes the siginfo we pass.
        let rc =
            unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        match check(rc) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Has the child `cmd` starts sent `signal` when the thread that started
/// it ends, ssed included, however it ends (even SIGKILL).
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut std::process::Command, signal: Signal) {
    use std::os::unix::process::CommandExt;
    let sig = signal.number();
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || check(libc::prctl(libc::PR_SET_PDEATHSIG, sig)).map(|_| ()));
    }
}

/// Makes the calling process the reaper of its orphaned descendants
/// (`PR_SET_CHILD_SUBREAPER`): a process that leaves its parent, its
/// process group or its session still has this one as an ancestor.
#[allow(unsafe_code)]
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }).map(|_| ())
}

/// Asks for SIGTERM when the parent ends (`PR_SET_PDEATHSIG`).
#[allow(unsafe_code)]
pub fn term_with_parent() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) }).map(|_| ())
}

/// The parent's process id.
#[allow(unsafe_code)]
pub fn parent_pid() -> u32 {
    // SAFETY: getppid takes nothing and cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// A child that ended, reaped, with its wait status; `Ok(None)` while
/// every child still runs; an error (ECHILD) when there is none at all.
///
/// It reaps whatever child ended, `std::process::Child` handles' included:
/// for the keeper, which owns no such handle and reaps its whole tree.
#[allow(unsafe_code)]
pub(crate) fn reap_any() -> io::Result<Option<(u32, std::process::ExitStatus)>> {
    use std::os::unix::process::ExitStatusExt;
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes one int.
        match check(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) }) {
            Ok(0) => return Ok(None),
            Ok(pid) => {
                return Ok(Some((
                    pid as u32,
                    std::process::ExitStatus::from_raw(status),
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Ends the calling process the way `status` says its child ended: by the
/// same signal (its default action restored), else with its exit code.
#[allow(unsafe_code)]
pub fn exit_like(status: std::process::ExitStatus) -> ! {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        // SAFETY: signal, sigprocmask and kill take plain values; the
        // default action of a fatal signal ends this process here. Each
        // failure only means the exit code below is used instead.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
        }
        // A signal whose default is not to end (SIGCHLD, SIGWINCH).
        std::process::exit(128 + sig);
    }
    std::process::exit(status.code().unwrap_or(1))
}

/// Waits at most `timeout` for `fd` to have something to read (or its
/// end); an error of `poll` counts as readable, so that the caller's read
/// says what it is.
#[allow(unsafe_code)]
pub fn wait_readable(fd: std::os::fd::RawFd, timeout: std::time::Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: poll reads and writes the one pollfd we pass.
    match check(unsafe { libc::poll(&mut pfd, 1, ms) }) {
        Ok(n) => n > 0,
        Err(e) => e.kind() != io::ErrorKind::Interrupted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_pidfd_signals_its_process_and_no_other() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pidfd = Pidfd::open(child.id()).unwrap();
        pidfd.signal(Signal::Kill).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        // Reaped: whatever has its number now, the handle reaches nothing.
        pidfd.signal(Signal::Term).unwrap();
    }

    #[test]
    fn an_ended_child_is_waited_for_without_being_reaped() {
        let mut child = Command::new("true").spawn().unwrap();
        wait_exited(child.id()).unwrap();
        // A zombie still: its stat says so, and the number is its own.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
        assert!(stat.rsplit_once(") ").unwrap().1.starts_with('Z'), "{stat}");
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn no_group_of_ours_and_not_every_process() {
        assert!(signal_group(0, Signal::Term).is_err());
        assert!(signal_group(1, Signal::Term).is_err());
    }
}
