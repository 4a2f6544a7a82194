//! Process limits: the open-files limit and how many streams it allows.
//!
//! The only `unsafe` code of ssed: libc calls on plain structs.

use std::io;

/// File descriptors kept for everything that is not a stream: the listener,
/// keep-alive page requests, files read for `--www`, the sampler's /proc reads.
const RESERVED_FDS: u64 = 256;

/// Threads left to the rest of the system when sizing the stream cap.
const RESERVED_THREADS: u64 = 512;

/// Memory mappings a stream costs: each of its two threads has a stack, a
/// guard page, and Rust's alternate signal stack with its guard (measured:
/// 8.1 per stream); one more leaves room for the short-lived pool threads
/// that tiny_http starts under a burst.
const MAPS_PER_STREAM: u64 = 9;

/// Mappings kept for everything else: the binary, libraries, the heap.
const RESERVED_MAPS: u64 = 1024;

/// Raises the soft open-files limit to the hard limit (as Go programs do at
/// start) and returns the soft limit now in force. A default soft limit of
/// 1024 would cap a device at a few hundred viewers.
#[allow(unsafe_code)]
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    Ok(lim.rlim_cur as u64)
}

/// The default `--max-streams`: each stream holds two descriptors (tiny_http
/// clones the socket), two threads (tiny_http's reader and ours), and the
/// memory mappings of two threads. Past any of these limits a thread cannot
/// be made, and tiny_http's pool then panics, which ends the process: the
/// cap keeps ssed below all three.
pub fn default_max_streams(open_files: u64) -> usize {
    let by_files = open_files.saturating_sub(RESERVED_FDS) / 2;
    let by_threads = read_number("/proc/sys/kernel/pid_max")
        .map_or(u64::MAX, |pids| pids.saturating_sub(RESERVED_THREADS) / 2);
    let by_maps = read_number("/proc/sys/vm/max_map_count").map_or(u64::MAX, |maps| {
        maps.saturating_sub(RESERVED_MAPS) / MAPS_PER_STREAM
    });
    by_files.min(by_threads).min(by_maps).max(1) as usize
}

/// Asks the kernel not to let the calling thread preempt the one that woke it
/// (`SCHED_BATCH`). A publish wakes every subscriber's thread in turn; under
/// the normal policy each woken thread may preempt the publisher at once, so
/// every delivery costs two context switches, not one. With this policy the
/// publisher finishes its round and the woken threads run back to back.
/// Measured with 1,000 subscribers: 9.3 to 9.7 µs of server CPU per delivery
/// before, 7.5 to 7.8 µs after. Any user may choose it; if the kernel
/// refuses, the thread keeps the normal policy.
#[allow(unsafe_code)]
pub fn yield_to_wakers() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler only reads the struct we pass; pid 0 is the
    // calling thread.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}

/// How far local time is ahead of UTC at `unix_secs`, in seconds, by the
/// rules C's `localtime` follows (the `TZ` variable, else `/etc/localtime`);
/// 0 where they cannot be read.
#[allow(unsafe_code)]
pub fn local_offset(unix_secs: i64) -> i64 {
    let t = unix_secs as libc::time_t;
    // SAFETY: `tm` is plain integers and one pointer; all zeroes is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r reads `t` and writes only `tm`; it is thread-safe.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return 0;
    }
    #[allow(clippy::unnecessary_cast)] // c_long is not i64 on every target
    {
        tm.tm_gmtoff as i64
    }
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
