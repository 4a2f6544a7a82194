//! The limits that bound connections: open files, and the threads that
//! `kernel.pid_max` and `vm.max_map_count` allow; and the cores to use.

use super::read_number;
use std::io;

/// File descriptors kept for everything that is not a connection (the
/// listener, the spare descriptor kept for running out, files read for
/// `--www`, the sampler's /proc reads, the Redis link, the pipes of
/// sources): an eighth of the open-files limit, at least 16 and at most
/// 256. A fixed 256 left one connection under a limit of 256.
fn reserved_fds(open_files: u64) -> u64 {
    (open_files / 8).clamp(16, 256)
}

/// Threads left to the rest of the system when sizing the connection cap:
/// `pid_max` counts every thread of every process.
const RESERVED_THREADS: u64 = 1024;

/// Memory mappings a connection costs: its thread's stack and guard page,
/// and the alternate signal stack Rust gives every thread, with its guard
/// (measured: 4.01 a connection, the rest being malloc's arenas, which
/// RESERVED_MAPS covers).
const MAPS_PER_CONNECTION: u64 = 4;

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

/// The default `--max-connections`, and the limit that set it: each
/// connection holds one descriptor. (A stream that is caught up holds no
/// thread; see [`max_threads`] for the connections that do.)
pub fn default_max_connections(open_files: u64) -> (usize, &'static str) {
    let n = open_files.saturating_sub(reserved_fds(open_files));
    (n.max(1) as usize, "the open-files limit")
}

/// Connections that may hold a thread at once (reading a request, writing
/// a reply or a stream that is not caught up): each thread counts against
/// `kernel.pid_max` (for the whole host) and maps its stack and guard
/// pages (`vm.max_map_count`); past either a new thread cannot be had.
pub fn max_threads() -> usize {
    let pids = read_number("/proc/sys/kernel/pid_max").map(|n| n.saturating_sub(RESERVED_THREADS));
    let maps = read_number("/proc/sys/vm/max_map_count")
        .map(|n| n.saturating_sub(RESERVED_MAPS) / MAPS_PER_CONNECTION);
    [pids, maps]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(4096)
        .max(1) as usize
}

/// The cores this process may run on (its CPU affinity), at least 1. Not
/// `std::thread::available_parallelism`, which also reads cgroup files and
/// costs 15 KiB of binary for it (a CPU quota is read by [`super::cgroup`]).
#[allow(unsafe_code)]
pub fn cpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the kernel fills it
    // for this process (pid 0) within the size given.
    let count = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            libc::CPU_COUNT(&set)
        } else {
            1
        }
    };
    usize::try_from(count).unwrap_or(1).max(1)
}
