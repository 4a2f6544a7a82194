//! A cgroup of a test's own (v2 where its controller is there, else v1),
//! to run ssed under a memory or CPU limit as a container or a small
//! device would. Making one needs root; where neither hierarchy can be
//! written the test says so and passes, unless `SSED_REQUIRE_CGROUP` is set
//! (CI sets it).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Cgroup {
    pub dir: PathBuf,
    pub v2: bool,
}

impl Cgroup {
    /// A new group with `controller` ("memory", "cpu"), or `None` (and a
    /// line saying why) where none can be made.
    pub fn new(controller: &str) -> Option<Cgroup> {
        let name = format!("ssed-test-{}-{}", std::process::id(), fastrand::u32(..));
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut tried = Vec::new();
        for line in mounts.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let point = left.split(' ').nth(4).unwrap_or("");
            let theirs: Vec<&str> = right.split(' ').collect();
            let v2 = theirs.first() == Some(&"cgroup2");
            let v1 = theirs.first() == Some(&"cgroup")
                && theirs
                    .get(2)
                    .is_some_and(|o| o.split(',').any(|c| c == controller));
            if v2 {
                let root = Path::new(point);
                let has = fs::read_to_string(root.join("cgroup.controllers"))
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == controller));
                if !has {
                    tried.push(format!("{point}: no {controller} controller"));
                    continue;
                }
                let _ = fs::write(
                    root.join("cgroup.subtree_control"),
                    format!("+{controller}"),
                );
                let dir = root.join(&name);
                match fs::create_dir(&dir) {
                    Ok(()) => return Some(Cgroup { dir, v2: true }),
                    Err(e) => tried.push(format!("{}: {e}", dir.display())),
                }
            } else if v1 {
                // Below this process's own group if it can, else at the top.
                let own_path = own
                    .lines()
                    .filter_map(|l| {
                        let mut parts = l.splitn(3, ':').skip(1);
                        parts.next().zip(parts.next())
                    })
                    .find(|(c, _)| c.split(',').any(|c| c == controller))
                    .map(|(_, p)| p.trim_start_matches('/').to_string())
                    .unwrap_or_default();
                for parent in [Path::new(point).join(&own_path), PathBuf::from(point)] {
                    let dir = parent.join(&name);
                    match fs::create_dir(&dir) {
                        Ok(()) => return Some(Cgroup { dir, v2: false }),
                        Err(e) => tried.push(format!("{}: {e}", dir.display())),
                    }
                }
            }
        }
        let why = if tried.is_empty() {
            format!("no cgroup hierarchy with the {controller} controller is mounted")
        } else {
            tried.join("; ")
        };
        assert!(
            std::env::var_os("SSED_REQUIRE_CGROUP").is_none(),
            "no {controller} cgroup could be made, and SSED_REQUIRE_CGROUP is set: {why}"
        );
        eprintln!("SKIPPED: no {controller} cgroup could be made (root is needed): {why}");
        None
    }

    /// Limits memory to `bytes`, swap included.
    pub fn limit_memory(&self, bytes: u64) {
        if self.v2 {
            self.write("memory.max", &bytes.to_string());
            let _ = fs::write(self.dir.join("memory.swap.max"), "0");
        } else {
            self.write("memory.limit_in_bytes", &bytes.to_string());
            let _ = fs::write(
                self.dir.join("memory.memsw.limit_in_bytes"),
                bytes.to_string(),
            );
        }
    }

    /// Limits CPU time to `cores` (0.5: half of one).
    pub fn limit_cpu(&self, cores: f64) {
        let period = 100_000;
        let quota = (cores * period as f64) as u64;
        if self.v2 {
            self.write("cpu.max", &format!("{quota} {period}"));
        } else {
            self.write("cpu.cfs_period_us", &period.to_string());
            self.write("cpu.cfs_quota_us", &quota.to_string());
        }
    }

    fn write(&self, file: &str, value: &str) {
        fs::write(self.dir.join(file), value)
            .unwrap_or_else(|e| panic!("{}/{file}: {e}", self.dir.display()));
    }

    /// The file a process writes its pid to, to join the group.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// How many times the kernel's OOM killer acted in the group.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The most the group used, in bytes, where the kernel says (v1).
    pub fn peak(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Whatever is left in it is killed, then the group removed.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = fs::read_to_string(self.procs()).unwrap_or_default();
            if pids.trim().is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill takes plain integers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = fs::remove_dir(&self.dir);
    }
}
