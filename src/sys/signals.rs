//! The signals ssed and its keeper take by waiting for them.

use std::io;

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it
/// starts afterwards, so that [`wait_for_stop_signal`] receives them instead
/// of the default action (ending the process mid-write). Child processes
/// get the default mask back from `std::process::Command`.
#[allow(unsafe_code)]
pub fn block_stop_signals() -> io::Result<()> {
    let set = stop_signals();
    // SAFETY: pthread_sigmask reads the set we built; the old mask is not asked for.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits for SIGTERM or SIGINT (blocked first by [`block_stop_signals`])
/// and returns its name. Afterwards the calling thread takes them with their
/// default action again: a second Ctrl-C ends the process at once.
pub fn wait_for_stop_signal() -> &'static str {
    let signal = next_stop_signal();
    unblock_stop_signals();
    signal
}

/// Waits for SIGTERM or SIGINT and returns its name; they stay blocked.
#[allow(unsafe_code)]
pub fn next_stop_signal() -> &'static str {
    let set = stop_signals();
    let mut sig: libc::c_int = 0;
    loop {
        // SAFETY: sigwait reads the set and writes one int.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            break;
        }
    }
    if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}

/// Waits at most `within` for SIGTERM or SIGINT (still blocked): whether
/// one came.
#[allow(unsafe_code)]
pub fn stop_signal_within(within: std::time::Duration) -> bool {
    let set = stop_signals();
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let ts = libc::timespec {
            tv_sec: left.as_secs() as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: sigtimedwait reads the set and the timeout; no info is asked for.
        let rc = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        if rc > 0 {
            return true;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            _ => return false,
        }
    }
}

/// The calling thread takes SIGTERM and SIGINT with their default action
/// again.
#[allow(unsafe_code)]
pub fn unblock_stop_signals() {
    let set = stop_signals();
    // SAFETY: as in block_stop_signals.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
}

#[allow(unsafe_code)]
fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is a plain bit set; sigemptyset initialises it and
    // sigaddset sets bits of it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// The signals a keeper takes by waiting for them: the stop signals,
/// SIGHUP, and SIGCHLD (a child ended).
#[allow(unsafe_code)]
fn keeper_signals() -> libc::sigset_t {
    let mut set = stop_signals();
    // SAFETY: sigaddset sets bits of an initialised set.
    unsafe {
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGCHLD);
    }
    set
}

/// Blocks the keeper's signals, so that [`wait_keeper_signal`] takes them.
#[allow(unsafe_code)]
pub fn block_keeper_signals() -> io::Result<()> {
    let set = keeper_signals();
    // SAFETY: as in block_stop_signals.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// What a keeper was told while it waited.
#[derive(Debug, PartialEq, Eq)]
pub enum Told {
    /// SIGTERM, SIGINT or SIGHUP.
    Stop,
    /// SIGCHLD, or nothing within the time.
    Look,
}

/// Waits at most `timeout` for one of the keeper's signals.
#[allow(unsafe_code)]
pub fn wait_keeper_signal(timeout: std::time::Duration) -> Told {
    let set = keeper_signals();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: sigtimedwait reads the set and the timespec; no siginfo is asked for.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    match sig {
        libc::SIGTERM | libc::SIGINT | libc::SIGHUP => Told::Stop,
        _ => Told::Look,
    }
}
