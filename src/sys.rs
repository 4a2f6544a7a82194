//! What ssed asks of the operating system: the open-files limit and how
//! many connections the system's limits allow, the scheduling policy of
//! stream threads, the local time zone, and the stop signals.
//!
//! The only `unsafe` code of ssed: libc calls on plain structs.

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
/// costs 15 KiB of binary for it (a CPU quota is read by `cgroup`).
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

/// What `release_unused_stack` keeps below its own frame: more than the
/// x86-64 red zone (128 bytes) and the libc call it makes.
const STACK_MARGIN: usize = 1024;

/// Gives back to the system the pages of the calling thread's stack below
/// the caller's frame. A stream's thread touches more stack while it routes
/// its request and opens the stream than it needs for the rest of its life
/// (waiting and writing); those pages would stay resident for as long as
/// the stream lasts. Nothing lives below the stack pointer, and a page
/// touched again later is simply zero-filled by the kernel.
#[allow(unsafe_code)]
#[inline(never)]
pub fn release_unused_stack() {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread, which
    // pthread_attr_getstack reads and pthread_attr_destroy frees. madvise
    // is given a page-aligned range that lies inside this thread's stack and
    // below this function's frame (less a margin for the red zone), which
    // holds nothing that is still in use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return;
        }
        let mut low: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut low, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        let page = match libc::sysconf(libc::_SC_PAGESIZE) {
            n if n > 0 => n as usize,
            _ => return,
        };
        let here = std::ptr::addr_of!(size) as usize;
        let low = low as usize;
        // Below this frame, a margin for the red zone and for the frames of
        // the madvise call itself, which must not be released under it.
        let end = here.saturating_sub(STACK_MARGIN) & !(page - 1);
        if got == 0 && end > low && here < low + size {
            libc::madvise(low as *mut libc::c_void, end - low, libc::MADV_DONTNEED);
        }
    }
}

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
#[allow(unsafe_code)]
pub fn wait_for_stop_signal() -> &'static str {
    let set = stop_signals();
    let mut sig: libc::c_int = 0;
    loop {
        // SAFETY: sigwait reads the set and writes one int.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            break;
        }
    }
    // SAFETY: as in block_stop_signals.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
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

/// A signal to send to a child's process group.
#[derive(Clone, Copy, Debug)]
pub enum Signal {
    Term,
    Kill,
}

/// Sends `signal` to every process of the process group `pgid` (a child
/// started in a group of its own, whose id is the group's).
#[allow(unsafe_code)]
pub fn signal_group(pgid: u32, signal: Signal) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // Never the caller's own group, nor "every process" (-1).
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill takes plain integers; a group that is gone is ESRCH.
    unsafe { libc::kill(-pgid, signal.number()) };
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

/// Sends `signal` to the one process `pid`.
#[allow(unsafe_code)]
pub fn signal_process(pid: u32, signal: Signal) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill takes plain integers; a process that is gone is ESRCH.
    unsafe { libc::kill(pid, signal.number()) };
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
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, sig);
            Ok(())
        });
    }
}

/// Makes the calling process the reaper of its orphaned descendants
/// (`PR_SET_CHILD_SUBREAPER`): a process that leaves its parent, its
/// process group or its session still has this one as an ancestor.
#[allow(unsafe_code)]
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks for SIGTERM when the parent ends (`PR_SET_PDEATHSIG`).
#[allow(unsafe_code)]
pub fn term_with_parent() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) };
}

/// The parent's process id.
#[allow(unsafe_code)]
pub fn parent_pid() -> u32 {
    // SAFETY: getppid takes nothing and cannot fail.
    unsafe { libc::getppid() as u32 }
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

/// A child that ended, reaped, with its wait status; `Ok(None)` while
/// every child still runs; an error (ECHILD) when there is none at all.
#[allow(unsafe_code)]
pub fn reap_any() -> io::Result<Option<(u32, std::process::ExitStatus)>> {
    use std::os::unix::process::ExitStatusExt;
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes one int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            return Ok(Some((
                pid as u32,
                std::process::ExitStatus::from_raw(status),
            )));
        }
        if pid == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
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
        // default action of a fatal signal ends this process here.
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

/// Waits at most `timeout` for `fd` to have something to read (or its end).
#[allow(unsafe_code)]
pub fn wait_readable(fd: std::os::fd::RawFd, timeout: std::time::Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: poll reads and writes the one pollfd we pass.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0
}

/// An epoll instance: one thread watches many sockets with it (see
/// `conn::park`). Closed when dropped.
pub struct Epoll {
    fd: std::os::fd::OwnedFd,
}

/// What epoll reported for one registered descriptor.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    pub token: u64,
    /// Room to write.
    pub writable: bool,
    /// The peer hung up (FIN or reset) or the socket failed.
    pub hung_up: bool,
}

impl Epoll {
    #[allow(unsafe_code)]
    pub fn new() -> io::Result<Epoll> {
        use std::os::fd::FromRawFd;
        // SAFETY: epoll_create1 takes a flag and returns a new descriptor,
        // which the OwnedFd then owns.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a descriptor just opened and owned by no one else.
        Ok(Epoll {
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for a hang-up, and for room to write when `writable`.
    pub fn add(&self, fd: std::os::fd::RawFd, token: u64, writable: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, writable)
    }

    /// Changes whether `fd` is watched for room to write.
    pub fn modify(&self, fd: std::os::fd::RawFd, token: u64, writable: bool) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, writable)
    }

    /// Watches `fd` for something to read (a doorbell).
    pub fn add_readable(&self, fd: std::os::fd::RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        self.raw_ctl(libc::EPOLL_CTL_ADD, fd, &mut ev)
    }

    pub fn remove(&self, fd: std::os::fd::RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        let _ = self.raw_ctl(libc::EPOLL_CTL_DEL, fd, &mut ev);
    }

    fn ctl(
        &self,
        op: libc::c_int,
        fd: std::os::fd::RawFd,
        token: u64,
        writable: bool,
    ) -> io::Result<()> {
        let mut events = libc::EPOLLRDHUP as u32;
        if writable {
            events |= libc::EPOLLOUT as u32;
        }
        let mut ev = libc::epoll_event { events, u64: token };
        self.raw_ctl(op, fd, &mut ev)
    }

    #[allow(unsafe_code)]
    fn raw_ctl(
        &self,
        op: libc::c_int,
        fd: std::os::fd::RawFd,
        ev: &mut libc::epoll_event,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: epoll_ctl reads the one event we pass; the descriptors
        // are plain integers (a closed one is EBADF).
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits at most `timeout` for events; appends them to `out`.
    #[allow(unsafe_code)]
    pub fn wait(&self, out: &mut Vec<Ready>, timeout: std::time::Duration) {
        use std::os::fd::AsRawFd;
        const MAX: usize = 256;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: epoll_wait writes at most MAX events into the array.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                MAX as libc::c_int,
                ms,
            )
        };
        for ev in events.iter().take(n.max(0) as usize) {
            let bits = ev.events;
            out.push(Ready {
                token: ev.u64,
                writable: bits & libc::EPOLLOUT as u32 != 0,
                hung_up: bits & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0,
            });
        }
    }
}

/// A doorbell another thread can ring through a descriptor (`eventfd`), so
/// that an epoll loop wakes for it.
pub struct EventFd {
    fd: std::os::fd::OwnedFd,
}

impl EventFd {
    #[allow(unsafe_code)]
    pub fn new() -> io::Result<EventFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd returns a new descriptor, owned by the OwnedFd.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a descriptor just opened and owned by no one else.
        Ok(EventFd {
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn raw(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    #[allow(unsafe_code)]
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: write reads 8 bytes from a u64 on our stack.
        unsafe { libc::write(self.raw(), std::ptr::addr_of!(one).cast(), 8) };
    }

    #[allow(unsafe_code)]
    pub fn clear(&self) {
        let mut n: u64 = 0;
        // SAFETY: read writes at most 8 bytes into a u64 on our stack.
        unsafe { libc::read(self.raw(), std::ptr::addr_of_mut!(n).cast(), 8) };
    }
}

/// Bytes written to the socket `fd` that its peer has not yet taken (the
/// kernel's send queue, `SIOCOUTQ`); `None` if the kernel will not say.
#[allow(unsafe_code)]
pub fn unsent_bytes(fd: std::os::fd::RawFd) -> Option<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: ioctl(SIOCOUTQ) writes one int.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    (rc == 0 && n >= 0).then_some(n as u64)
}

/// Gives back to the system the heap pages that are free (glibc's
/// `malloc_trim`): after a load has gone, RSS falls back instead of
/// keeping its high-water mark (measured: 6,000 streams come and gone,
/// 13.5 MB before, 5.5 MB after). It walks the heap: call it rarely.
#[allow(unsafe_code)]
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes an integer and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
