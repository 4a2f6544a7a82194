//! The memory ssed may use, what it sizes, and the guard that refuses new
//! work before the kernel would kill the process.
//!
//! At start ssed reads its memory limit: the smallest `memory.max` (cgroup
//! v2) or `memory.limit_in_bytes` (cgroup v1) of its cgroup and the ones
//! above it, else the host's `MemTotal`. From that limit [`Sizing`] derives
//! the defaults that cost memory (connections, connections with a thread,
//! history, idempotency keys, a stream's frame), each from a cost measured
//! on this code and written down here ([`COSTS`]).
//!
//! Sizing bounds what ssed holds; the [`Guard`] watches what it uses. Past
//! the limit less a margin kept free, new connections, streams and
//! publishes are refused with 503 (reason `memory`) and `/healthz` says so,
//! while what is open goes on; once usage falls back, everything is taken
//! again. Usage is the cgroup's (less the page cache the kernel can drop
//! at once), or, outside a limit of its own, the host's (`MemTotal` less
//! `MemAvailable`).

use crate::sync::lock;
use crate::sys::cgroup;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// What each thing ssed holds costs, charged to its cgroup (user memory
/// and the kernel's), measured on Linux 6.18 x86-64 with a release build in
/// a cgroup v1 memory group (`make bench`'s `--memory` scenario prints
/// them again). The figures used for sizing are rounded up.
pub struct Costs {
    /// The process at rest: its threads, heap, and the pages of the
    /// binary it touched (measured 0.8 to 1.8 MiB).
    pub base: u64,
    /// A stream that is caught up and parked: its socket, its epoll
    /// entry, its subscription and buffers (measured 4.0 KiB: 2.4 user,
    /// 1.6 kernel).
    pub parked: u64,
    /// A connection holding a thread (reading a request, a replay, a
    /// demo's script): the kernel's stack and task, the stack pages it
    /// touched (measured 36.7 KiB: 11.2 user, 25.3 kernel).
    pub thread: u64,
    /// Retained history: each byte counted against `--history-total` is
    /// held about twice (the event, and its encoding made once for all
    /// readers).
    pub history_factor: u64,
    /// An idempotency key remembered without Redis: its entry in the map,
    /// with the map's spare room, and its place in the expiry queue
    /// (measured 75 bytes: the RSS of a release build before and after
    /// 100,000 publishes with keys of 128 bytes, the history full already).
    pub key: u64,
}

pub const COSTS: Costs = Costs {
    base: 3 * MIB,
    parked: 5 * KIB,
    thread: 48 * KIB,
    history_factor: 2,
    key: 80,
};

/// Idempotency keys remembered at once, on a host with memory to spare.
pub const MAX_KEYS: usize = 100_000;

/// Where the limit came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A cgroup's limit: the file it was read from.
    Cgroup(PathBuf),
    /// No cgroup limit: the host's memory.
    Host,
    /// `--memory`.
    Flag,
}

/// The memory ssed may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub source: Source,
    /// Where usage is read: a cgroup's directory (v2 or v1), or the host's.
    usage: Usage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Usage {
    V2(PathBuf),
    V1(PathBuf),
    Host,
    Process,
}

impl Limit {
    /// The limit of this process: its cgroup's, else the host's memory.
    pub fn detect() -> Limit {
        let host = meminfo("MemTotal:").unwrap_or(u64::MAX);
        let cgroups = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let found = cgroup::dirs(&cgroups, &mounts, "memory")
            .into_iter()
            .filter_map(|(dir, v2)| smallest_limit(&dir, v2).map(|l| (l, v2)))
            .min_by_key(|((bytes, _), _)| *bytes);
        match found {
            Some(((bytes, file), v2)) if bytes < host => {
                let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
                Limit {
                    bytes,
                    source: Source::Cgroup(file),
                    usage: if v2 { Usage::V2(dir) } else { Usage::V1(dir) },
                }
            }
            _ => Limit::host(host),
        }
    }

    /// A host of `bytes` without a cgroup limit (and for tests).
    pub fn host(bytes: u64) -> Limit {
        Limit {
            bytes,
            source: Source::Host,
            usage: Usage::Host,
        }
    }

    /// `--memory`: a limit the operator plans for, against which this
    /// process's own usage counts (its resident pages, and each thread's
    /// kernel stack and task).
    pub fn planned(bytes: u64) -> Limit {
        Limit {
            bytes,
            source: Source::Flag,
            usage: Usage::Process,
        }
    }

    /// `12 MiB`, `1.5 GiB`: the limit as the start-up line says it.
    pub fn describe(&self) -> String {
        size(self.bytes)
    }
}

/// A size as people read it: `512 KiB`, `12 MiB`, `1.5 GiB`.
pub fn size(bytes: u64) -> String {
    let units = [("GiB", 1 << 30), ("MiB", MIB), ("KiB", KIB)];
    for (unit, scale) in units {
        if bytes >= scale {
            let value = bytes as f64 / scale as f64;
            return if (value - value.round()).abs() < 0.05 {
                format!("{value:.0} {unit}")
            } else {
                format!("{value:.1} {unit}")
            };
        }
    }
    format!("{bytes} bytes")
}

/// The smallest limit set on `dir` or the groups above it (within the
/// mount), and the file that set it.
fn smallest_limit(dir: &Path, v2: bool) -> Option<(u64, PathBuf)> {
    let names: &[&str] = if v2 {
        &["memory.max", "memory.high"]
    } else {
        &["memory.limit_in_bytes"]
    };
    let mut best: Option<(u64, PathBuf)> = None;
    let mut at = Some(dir);
    while let Some(d) = at {
        let mut any = false;
        for name in names {
            let file = d.join(name);
            let Ok(text) = fs::read_to_string(&file) else {
                continue;
            };
            any = true;
            // "max", or v1's page-rounded i64::MAX: no limit.
            let Ok(bytes) = text.trim().parse::<u64>() else {
                continue;
            };
            if bytes >= 1 << 62 {
                continue;
            }
            if best.as_ref().is_none_or(|(b, _)| bytes < *b) {
                best = Some((bytes, file));
            }
        }
        // Above the mount's root there are no such files.
        if !any {
            break;
        }
        at = d.parent();
    }
    best
}

/// A `/proc/meminfo` figure, in bytes.
fn meminfo(field: &str) -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_field(&text, field)
}

fn meminfo_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * KIB)
}

/// The defaults a limit sizes. Flags given by the operator override each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sizing {
    /// Connections at once.
    pub max_connections: usize,
    /// Connections that hold a thread at once.
    pub max_threads: usize,
    /// `--history-total`.
    pub history_total: usize,
    /// Idempotency keys remembered without Redis.
    pub max_keys: usize,
    /// The most a stream frames at once (see `stream`).
    pub frame_bytes: usize,
    /// What all streams together may hold of their own: pieces framed and
    /// not yet taken by slow readers (`stream::Buffers`).
    pub stream_buffers: usize,
    /// On a small host, the kernel's send buffer of each connection
    /// (`SO_SNDBUF`), which a reader that stops reading fills: without it
    /// Linux lets each grow to megabytes. `None`: the kernel's own tuning.
    pub send_buffer: Option<usize>,
    /// Usage past which new work is refused: the limit less a margin.
    pub refuse_above: u64,
}

/// The largest history and frame, whatever the memory.
pub const MAX_HISTORY_TOTAL: usize = 64 << 20;
pub const MAX_FRAME: usize = 64 << 10;
/// The smallest frame: a few events of a few hundred bytes.
pub const MIN_FRAME: usize = 4 << 10;
/// What slow readers' pieces may hold together at most, whatever the
/// memory: 4,096 readers a whole 64 KiB piece behind.
pub const MAX_STREAM_BUFFERS: usize = 256 << 20;
/// Below this, each connection's send buffer in the kernel is capped.
const SMALL_HOST: u64 = 512 * MIB;

impl Sizing {
    /// What `limit` bytes hold: a margin is kept free (an eighth, 1 MiB to
    /// 256 MiB); of the rest after the process's base, a quarter goes to
    /// history (held twice over), an eighth to connections with a thread,
    /// three eighths to parked streams, an eighth to slow readers' pieces,
    /// a thirty-second to idempotency keys.
    pub fn for_limit(limit: u64) -> Sizing {
        let margin = (limit / 8).clamp(MIB, 256 * MIB);
        let refuse_above = limit.saturating_sub(margin);
        let room = refuse_above.saturating_sub(COSTS.base);
        let history = (room / 4 / COSTS.history_factor).min(MAX_HISTORY_TOTAL as u64);
        let threads = room / 8 / COSTS.thread;
        let connections = room * 3 / 8 / COSTS.parked;
        let keys = (room / 32 / COSTS.key).min(MAX_KEYS as u64);
        let frame = (limit / 1024).clamp(MIN_FRAME as u64, MAX_FRAME as u64);
        let buffers = (room / 8).clamp(frame * 4, MAX_STREAM_BUFFERS as u64);
        let send_buffer = (limit < SMALL_HOST).then_some(MIN_FRAME);
        let usize_of = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Sizing {
            max_connections: usize_of(connections).max(16),
            max_threads: usize_of(threads).max(8),
            history_total: usize_of(history).max(64 << 10),
            max_keys: usize_of(keys).max(100),
            frame_bytes: usize_of(frame),
            stream_buffers: usize_of(buffers),
            send_buffer,
            refuse_above,
        }
    }
}

/// How often the guard may trim the heap while over the line.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// A page, as /proc/self/statm counts them (4 KiB on the hosts ssed runs on).
const PAGE: u64 = 4096;
/// What the kernel holds for each thread: its stack and task (measured
/// about 25 KiB with what else a connection's thread costs it).
const THREAD_KERNEL: u64 = 24 * KIB;

/// How often usage is read at most: a flood of connections is refused
/// within this of crossing the line (at thousands a second, tens of
/// connections).
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Watches usage against the line past which new work is refused.
pub struct Guard {
    limit: Limit,
    refuse_above: u64,
    /// Usage at the last look, and whether it was past the line.
    used: AtomicU64,
    over: AtomicBool,
    /// When usage was last read; taken by whoever reads it.
    sampled: Mutex<Option<Instant>>,
    /// When the heap was last trimmed for being over the line.
    trimmed: Mutex<Option<Instant>>,
    /// Streams and publishes refused for memory, for `/metrics` (the
    /// connection layer counts the connections it refuses).
    pub refused_requests: AtomicU64,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("limit", &self.limit)
            .field("refuse_above", &self.refuse_above)
            .finish()
    }
}

impl Guard {
    pub fn new(limit: Limit, refuse_above: u64) -> Guard {
        Guard {
            limit,
            refuse_above,
            used: AtomicU64::new(0),
            over: AtomicBool::new(false),
            sampled: Mutex::new(None),
            trimmed: Mutex::new(None),
            refused_requests: AtomicU64::new(0),
        }
    }

    /// Whether new work is to be refused now: usage is past the line.
    /// (Streams and publishes are; `/healthz` and `/metrics` are still
    /// answered.)
    pub fn over(&self) -> bool {
        self.sample();
        self.over.load(Ordering::Acquire)
    }

    /// Whether usage is half-way from the line to the limit: then even a
    /// new connection is refused at the door, before it costs a thread.
    pub fn critical(&self) -> bool {
        self.sample();
        let hard = self.refuse_above + self.limit.bytes.saturating_sub(self.refuse_above) / 2;
        self.over.load(Ordering::Acquire) && self.used.load(Ordering::Acquire) > hard
    }

    /// Usage at the last look.
    pub fn used(&self) -> u64 {
        self.sample();
        self.used.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> &Limit {
        &self.limit
    }

    /// The line past which new work is refused.
    pub fn refuse_above(&self) -> u64 {
        self.refuse_above
    }

    /// Why work is refused, in a sentence: `at capacity: memory: 10.9 MiB
    /// in use of 12 MiB (the limit less 1.5 MiB kept free); try again later`.
    pub fn why(&self) -> String {
        format!(
            "at capacity: memory: {} in use of {} (the limit less {} kept free); try again later",
            size(self.used.load(Ordering::Acquire)),
            self.limit.describe(),
            size(self.limit.bytes.saturating_sub(self.refuse_above)),
        )
    }

    fn sample(&self) {
        let Ok(mut sampled) = self.sampled.try_lock() else {
            // Another thread reads it now: its figure will do.
            return;
        };
        let now = Instant::now();
        if sampled.is_some_and(|at| now.duration_since(at) < SAMPLE_EVERY) {
            return;
        }
        *sampled = Some(now);
        drop(sampled);
        let Some(mut used) = read_usage(&self.limit.usage, self.refuse_above) else {
            return;
        };
        if used > self.refuse_above && self.trim_due(now) {
            // Over the line: what the heap holds free may be the
            // difference (a crowd that left); give it back and look again.
            crate::sys::heap::trim_heap();
            used = read_usage(&self.limit.usage, self.refuse_above).unwrap_or(used);
        }
        self.used.store(used, Ordering::Release);
        self.over.store(used > self.refuse_above, Ordering::Release);
    }

    /// Whether the heap may be trimmed now: at most once a second.
    fn trim_due(&self, now: Instant) -> bool {
        let mut trimmed = lock(&self.trimmed);
        if trimmed.is_some_and(|at| now.duration_since(at) < TRIM_EVERY) {
            return false;
        }
        *trimmed = Some(now);
        true
    }
}

/// What is in use now. Cheap below the line (one small file); past it, the
/// page cache the kernel can drop at once is taken off, so that cached
/// file pages do not count as pressure.
fn read_usage(usage: &Usage, line: u64) -> Option<u64> {
    let number =
        |path: PathBuf| -> Option<u64> { fs::read_to_string(path).ok()?.trim().parse().ok() };
    match usage {
        Usage::Process => {
            // statm: size resident ... in pages; stat's 20th field: threads.
            let statm = fs::read_to_string("/proc/self/statm").ok()?;
            let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
            let stat = fs::read_to_string("/proc/self/stat").ok()?;
            let after_name = stat.rsplit_once(") ")?.1;
            let threads: u64 = after_name.split_whitespace().nth(17)?.parse().ok()?;
            Some(resident * PAGE + threads * THREAD_KERNEL)
        }
        Usage::Host => {
            let text = fs::read_to_string("/proc/meminfo").ok()?;
            let total = meminfo_field(&text, "MemTotal:")?;
            let available = meminfo_field(&text, "MemAvailable:")?;
            Some(total.saturating_sub(available))
        }
        Usage::V2(dir) | Usage::V1(dir) => {
            let v2 = matches!(usage, Usage::V2(_));
            let current = number(dir.join(if v2 {
                "memory.current"
            } else {
                "memory.usage_in_bytes"
            }))?;
            if current <= line {
                return Some(current);
            }
            let stat = fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
            let field = if v2 {
                "inactive_file "
            } else {
                "total_inactive_file "
            };
            let inactive = stat
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            Some(current.saturating_sub(inactive))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_from_files() {
        let dir = std::env::temp_dir().join(format!("ssed-memory-{}", std::process::id()));
        let child = dir.join("child");
        fs::create_dir_all(&child).unwrap();
        fs::write(dir.join("memory.max"), "12582912\n").unwrap();
        fs::write(dir.join("memory.high"), "max\n").unwrap();
        fs::write(child.join("memory.max"), "max\n").unwrap();
        assert_eq!(
            smallest_limit(&child, true),
            Some((12 << 20, dir.join("memory.max")))
        );
        fs::write(child.join("memory.high"), "8388608\n").unwrap();
        assert_eq!(smallest_limit(&child, true).unwrap().0, 8 << 20);
        fs::write(child.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(smallest_limit(&child, false), None);
        fs::remove_dir_all(&dir).unwrap();
        let meminfo = "MemTotal:       24683784 kB\nMemAvailable:   24308016 kB\n";
        assert_eq!(meminfo_field(meminfo, "MemTotal:"), Some(24683784 * 1024));
    }

    #[test]
    fn what_a_limit_sizes() {
        // A small device, a container, a host: the figures docs/limits.md gives.
        let small = Sizing::for_limit(12 * MIB);
        assert_eq!(small.refuse_above, 12 * MIB - 3 * MIB / 2);
        assert_eq!(small.history_total, 960 << 10);
        assert_eq!(small.max_threads, 20);
        assert_eq!(small.max_connections, 576);
        assert_eq!(small.frame_bytes, 12 << 10);
        assert_eq!(small.stream_buffers, 960 << 10);
        assert_eq!(small.send_buffer, Some(MIN_FRAME));
        let big = Sizing::for_limit(24 << 30);
        assert_eq!(big.history_total, MAX_HISTORY_TOTAL);
        assert_eq!(big.frame_bytes, MAX_FRAME);
        assert_eq!(big.max_keys, MAX_KEYS);
        assert_eq!(big.refuse_above, (24 << 30) - 256 * MIB);
        assert_eq!(big.stream_buffers, MAX_STREAM_BUFFERS);
        assert_eq!(big.send_buffer, None);
        // Even a tiny limit gives something to work with.
        let tiny = Sizing::for_limit(MIB);
        assert!(tiny.max_connections >= 16 && tiny.max_threads >= 8);
    }

    #[test]
    fn sizes_read_well() {
        for (bytes, text) in [
            (12 * MIB, "12 MiB"),
            (3 * MIB / 2, "1.5 MiB"),
            (24 << 30, "24 GiB"),
            (960 << 10, "960 KiB"),
            (100, "100 bytes"),
        ] {
            assert_eq!(size(bytes), text);
        }
    }

    #[test]
    fn the_guard_refuses_past_the_line_and_takes_again_below_it() {
        let dir = std::env::temp_dir().join(format!("ssed-guard-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let current = dir.join("memory.current");
        fs::write(&current, "1000\n").unwrap();
        fs::write(dir.join("memory.stat"), "anon 10\ninactive_file 500\n").unwrap();
        let limit = Limit {
            bytes: 2000,
            source: Source::Cgroup(dir.join("memory.max")),
            usage: Usage::V2(dir.clone()),
        };
        let guard = Guard::new(limit, 1500);
        assert!(!guard.over());
        // Past the line, but half of it is page cache: not over.
        fs::write(&current, "1800\n").unwrap();
        *guard.sampled.lock().unwrap() = None;
        assert!(!guard.over());
        assert_eq!(guard.used(), 1300);
        fs::write(dir.join("memory.stat"), "inactive_file 100\n").unwrap();
        *guard.sampled.lock().unwrap() = None;
        assert!(guard.over());
        assert!(
            guard
                .why()
                .starts_with("at capacity: memory: 1.7 KiB in use of 2 KiB"),
            "{}",
            guard.why()
        );
        // Half-way from the line (1500) to the limit (2000): the door too.
        assert!(!guard.critical());
        fs::write(&current, "1900\n").unwrap();
        *guard.sampled.lock().unwrap() = None;
        assert!(guard.critical());
        fs::write(&current, "900\n").unwrap();
        *guard.sampled.lock().unwrap() = None;
        assert!(!guard.over());
        fs::remove_dir_all(&dir).unwrap();
    }
}
