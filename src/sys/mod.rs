//! What ssed asks of the operating system, one file a mechanism. The only
//! `unsafe` code of ssed lives here, each block with a `SAFETY` note, and
//! every system call's result is checked (`check`): a failure is an
//! `io::Error`, never dropped.

pub mod cgroup;
pub mod epoll;
pub mod heap;
pub mod limits;
pub mod process;
pub mod random;
pub mod sched;
pub mod signals;
pub mod stack;
pub mod tz;

use std::io;

/// A system call's return value as a result: -1 is the `errno` it set.
pub(crate) fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A `/proc` or `/sys` file holding one number.
pub(crate) fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
