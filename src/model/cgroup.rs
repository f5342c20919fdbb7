//! Cgroup facts both engines use: where each hierarchy is mounted, how a
//! membership names its hierarchy, which control files are a cgroup's
//! properties (as CRIU records them), and where a path's directory is in
//! `cgroup.img`'s controller trees.

use crate::image::pb;
use std::collections::HashMap;
use std::path::PathBuf;

/// A hierarchy's key: its controllers sorted and joined with ",", ""
/// for cgroup v2 ("unified" in CRIU's images names it too).
pub fn key(name: &str) -> String {
    if name == "unified" {
        return String::new();
    }
    let mut c: Vec<&str> = name.split(',').filter(|s| !s.is_empty()).collect();
    c.sort_unstable();
    c.join(",")
}

/// Where each hierarchy is mounted in this mount namespace, by [`key`]:
/// the mount point and the mount's root, from /proc/self/mountinfo's text.
pub fn hierarchies(mountinfo: &str) -> HashMap<String, (PathBuf, String)> {
    const NOT_CONTROLLERS: [&str; 8] = [
        "rw",
        "ro",
        "nosuid",
        "nodev",
        "noexec",
        "relatime",
        "clone_children",
        "xattr",
    ];
    let mut out = HashMap::new();
    for l in mountinfo.lines() {
        let Some((left, right)) = l.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if f.len() < 5 || r.len() < 3 {
            continue;
        }
        let k = match r[0] {
            "cgroup2" => String::new(),
            "cgroup" => key(&r[2]
                .split(',')
                .filter(|o| !NOT_CONTROLLERS.contains(o) && !o.contains("release_agent"))
                .collect::<Vec<_>>()
                .join(",")),
            _ => continue,
        };
        out.entry(k)
            .or_insert((PathBuf::from(f[4]), f[3].to_string()));
    }
    out
}

/// The control files recorded as a cgroup's properties on the hierarchy
/// with key `k`, in the order a restore writes them (a limit before the
/// one that must not be below it). Files a kernel lacks are skipped.
pub fn properties(k: &str) -> Vec<&'static str> {
    if k.is_empty() {
        return vec![
            "cpu.weight",
            "cpu.max",
            "cpuset.cpus",
            "cpuset.mems",
            "memory.min",
            "memory.low",
            "memory.high",
            "memory.max",
            "memory.swap.max",
            "pids.max",
        ];
    }
    let mut out = Vec::new();
    for c in k.split(',') {
        out.extend_from_slice(match c {
            "cpu" => &[
                "cpu.shares",
                "cpu.cfs_period_us",
                "cpu.cfs_quota_us",
                "cpu.rt_period_us",
                "cpu.rt_runtime_us",
            ][..],
            "memory" => &[
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "memory.soft_limit_in_bytes",
                "memory.swappiness",
                "memory.move_charge_at_immigrate",
                "memory.oom_control",
                "memory.use_hierarchy",
            ][..],
            "cpuset" => &[
                "cpuset.cpus",
                "cpuset.mems",
                "cpuset.cpu_exclusive",
                "cpuset.mem_exclusive",
                "cpuset.mem_hardwall",
                "cpuset.memory_migrate",
                "cpuset.sched_load_balance",
            ][..],
            "pids" => &["pids.max"][..],
            "blkio" => &["blkio.weight"][..],
            "net_cls" => &["net_cls.classid"][..],
            "net_prio" => &["net_prio.ifpriomap"][..],
            _ => &[][..],
        });
    }
    out
}

/// A property's value as cgroup.img keeps it, from the control file's
/// text: memory.oom_control shows several lines but takes (and CRIU
/// records) only the oom_kill_disable flag.
pub fn prop_value(name: &str, text: &str) -> String {
    if name == "memory.oom_control" {
        if let Some(v) = text
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill_disable "))
        {
            return v.trim().to_string();
        }
    }
    text.trim_end_matches('\n').to_string()
}

/// The directory of `path` (relative to the hierarchy's root, "/a/b") in
/// a controller's tree. A level's `dir_name` may hold several components
/// (CRIU names the first level by its whole path).
pub fn find_dir<'a>(dirs: &'a [pb::CgroupDirEntry], path: &str) -> Option<&'a pb::CgroupDirEntry> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut level = dirs;
    let mut at = 0;
    loop {
        let d = level.iter().find(|d| {
            let name: Vec<&str> = d.dir_name.split('/').filter(|p| !p.is_empty()).collect();
            !name.is_empty() && parts[at..].starts_with(&name)
        })?;
        at += d.dir_name.split('/').filter(|p| !p.is_empty()).count();
        if at == parts.len() {
            return Some(d);
        }
        level = &d.children;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_control_keeps_its_flag_only() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n";
        assert_eq!(prop_value("memory.oom_control", text), "0");
        assert_eq!(prop_value("cpuset.cpus", "0-1\n"), "0-1");
    }

    fn dir(name: &str, children: Vec<pb::CgroupDirEntry>) -> pb::CgroupDirEntry {
        pb::CgroupDirEntry {
            dir_name: name.into(),
            children,
            ..Default::default()
        }
    }

    #[test]
    fn dirs_are_found_by_components_or_whole_paths() {
        let crit = vec![dir("a", vec![dir("b", vec![]), dir("c", vec![])])];
        assert_eq!(find_dir(&crit, "/a/c").unwrap().dir_name, "c");
        assert_eq!(find_dir(&crit, "/a").unwrap().dir_name, "a");
        assert!(find_dir(&crit, "/a/d").is_none());
        assert!(find_dir(&crit, "/ab").is_none());
        let criu = vec![dir("x/y", vec![dir("z", vec![])])];
        assert_eq!(find_dir(&criu, "/x/y/z").unwrap().dir_name, "z");
        assert_eq!(find_dir(&criu, "/x/y").unwrap().dir_name, "x/y");
        assert!(find_dir(&criu, "/x").is_none());
    }

    #[test]
    fn hierarchies_and_keys() {
        let mi = "35 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu\n\
                  36 25 0:31 /user /sys/fs/cgroup/pids rw - cgroup cgroup rw,nosuid,pids\n\
                  37 25 0:32 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = hierarchies(mi);
        assert_eq!(
            h["cpu,cpuacct"].0,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(h["pids"].1, "/user");
        assert_eq!(h[""].0, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(key("cpuacct,cpu"), "cpu,cpuacct");
        assert_eq!(key("unified"), "");
        assert!(properties("cpu,cpuacct").contains(&"cpu.shares"));
        assert_eq!(properties("pids"), ["pids.max"]);
    }
}
