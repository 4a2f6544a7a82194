//! The cgroups this process is in, and the limits they set that ssed
//! sizes itself by: memory (see `memory`) and CPU time.

use std::fs;
use std::path::{Path, PathBuf};

/// This process's cgroups that have `controller`, read from /proc.
pub fn own(controller: &str) -> Vec<(PathBuf, bool)> {
    let cgroups = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    dirs(&cgroups, &mounts, controller)
}

/// The directories of this process's cgroups that have `controller`:
/// (directory, is v2). `cgroups` is /proc/self/cgroup, `mounts`
/// /proc/self/mountinfo. A v2 group is listed whatever its controllers:
/// its files say what it limits.
pub fn dirs(cgroups: &str, mounts: &str, controller: &str) -> Vec<(PathBuf, bool)> {
    let mut dirs = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let v2 = controllers.is_empty();
        if !v2 && !controllers.split(',').any(|c| c == controller) {
            continue;
        }
        for mount in mounts.lines() {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - TYPE SOURCE SUPER
            let Some((left, right)) = mount.split_once(" - ") else {
                continue;
            };
            let fields: Vec<&str> = left.split(' ').collect();
            let theirs: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(point), Some(kind)) =
                (fields.get(3), fields.get(4), theirs.first())
            else {
                continue;
            };
            let fits = if v2 {
                *kind == "cgroup2"
            } else {
                *kind == "cgroup"
                    && theirs
                        .get(2)
                        .is_some_and(|o| o.split(',').any(|c| c == controller))
            };
            if !fits {
                continue;
            }
            // A mount of a part of the tree (a container's view without a
            // cgroup namespace) holds the paths below its root.
            let relative = match path.strip_prefix(root) {
                Some(rest) => rest,
                None if *root == "/" => path,
                None => continue,
            };
            let mut dir = PathBuf::from(unescape(point));
            dir.extend(relative.split('/').filter(|p| !p.is_empty()));
            dirs.push((dir, v2));
        }
    }
    dirs
}

/// mountinfo escapes spaces and the like as `\040`.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The CPU time this process may use, in cores: the smallest quota of its
/// cgroup and those above it (`cpu.max`, or `cpu.cfs_quota_us` over
/// `cpu.cfs_period_us`); `None` without one.
pub fn cpu_quota() -> Option<f64> {
    own("cpu")
        .into_iter()
        .filter_map(|(dir, v2)| smallest_quota(&dir, v2))
        .reduce(f64::min)
}

fn smallest_quota(dir: &Path, v2: bool) -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut at = Some(dir);
    while let Some(d) = at {
        let quota = if v2 {
            match fs::read_to_string(d.join("cpu.max")) {
                Ok(text) => cpu_max(&text),
                // Above the mount's root: no such file.
                Err(_) if d != dir => break,
                Err(_) => None,
            }
        } else {
            let read = |name: &str| fs::read_to_string(d.join(name)).ok();
            match (read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")) {
                (Some(q), Some(p)) => cfs(&q, &p),
                _ if d != dir => break,
                _ => None,
            }
        };
        if let Some(q) = quota {
            best = Some(best.map_or(q, |b: f64| b.min(q)));
        }
        at = d.parent();
    }
    best
}

/// `cpu.max`: `QUOTA PERIOD`, or `max PERIOD` for none.
fn cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// cgroup v1: a quota of -1 is none.
fn cfs(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_directories_from_proc() {
        let mounts = "\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 31 0:40 /docker/abc /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu";
        let cgroups = "4:memory:/jobs/a\n1:cpu:/docker/abc\n0::/user.slice/x";
        assert_eq!(
            dirs(cgroups, mounts, "memory"),
            [
                (PathBuf::from("/sys/fs/cgroup/memory/jobs/a"), false),
                (PathBuf::from("/sys/fs/cgroup/unified/user.slice/x"), true),
            ]
        );
        // A container's view: the mount's root is its own group.
        let mounts = "60 50 0:30 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory";
        assert_eq!(
            dirs("7:memory:/docker/abc", mounts, "memory"),
            [(PathBuf::from("/sys/fs/cgroup/memory"), false)]
        );
        // With a cgroup namespace (docker today): "/", mounted at the top.
        let mounts = "70 60 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw";
        assert_eq!(
            dirs("0::/", mounts, "memory"),
            [(PathBuf::from("/sys/fs/cgroup"), true)]
        );
        assert_eq!(unescape("/a\\040b\\"), "/a b\\");
    }

    #[test]
    fn cpu_quotas() {
        assert_eq!(cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(cpu_max("max 100000\n"), None);
        assert_eq!(cpu_max("garbage"), None);
        assert_eq!(cfs("-1\n", "100000\n"), None);
        assert_eq!(cfs("150000\n", "100000\n"), Some(1.5));
        let dir = std::env::temp_dir().join(format!("ssed-cpu-{}", std::process::id()));
        let child = dir.join("child");
        fs::create_dir_all(&child).unwrap();
        fs::write(dir.join("cpu.max"), "100000 100000\n").unwrap();
        fs::write(child.join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(smallest_quota(&child, true), Some(1.0));
        fs::remove_dir_all(&dir).unwrap();
    }
}
