//! Tasks back to their cgroups (`cgroup.img`, as CRIU writes it): a task
//! whose core names a set other than the inventory's `root_cg_set` (the
//! dumper's own) joins each membership of that set: its pid is written
//! to `cgroup.procs` of the path in the hierarchy of that controller on
//! this machine, made if missing. Hierarchies this machine does not
//! mount are passed over with a warning. Properties are not set. With
//! `--manage-cgroups=none` (or ignore) tasks stay in crit's cgroups.
//!
//! `--cgroup-root [CONTROLLER:]/PATH` moves the tree as CRIU does: on the
//! hierarchies it names (a controller's, or without one every other),
//! the root task's dumped cgroup is replaced by PATH in every path that
//! starts with it, so the tree's cgroups keep their places below it.

use super::error::TaskError;
use super::plan::Plan;
use super::CgMode;
use super::Log;
use crate::error::Result;
use crate::image::pb;
use crate::image::typed::read_all;
use crate::model::cgroup as cg;
use std::collections::HashMap;
use std::path::PathBuf;

/// What every join of a restore shares.
struct Joining<'a> {
    /// Where each hierarchy is mounted here ([`cg::hierarchies`]).
    here: HashMap<String, (PathBuf, String)>,
    mode: CgMode,
    log: &'a Log,
}

/// The sets of cgroup.img by id.
pub struct CgPlan {
    root_set: u32,
    sets: HashMap<u32, Vec<pb::CgMemberEntry>>,
    /// `--cgroup-root` values: (controller or any, new root).
    roots: Vec<(Option<String>, String)>,
    /// The controller trees, with the properties recorded per directory.
    controllers: Vec<pb::CgControllerEntry>,
}

/// Reads cgroup.img (absent: every task is in the dumper's set).
pub fn read(
    dir: &std::path::Path,
    root_set: u32,
    roots: &[(Option<String>, String)],
) -> Result<CgPlan> {
    let p = dir.join("cgroup.img");
    let mut sets = HashMap::new();
    let mut controllers = Vec::new();
    if p.exists() {
        for e in read_all::<pb::CgroupEntry>(&p, "CGROUP")? {
            for s in e.sets {
                sets.insert(s.id, s.ctls);
            }
            controllers.extend(e.controllers);
        }
    }
    Ok(CgPlan {
        root_set,
        sets,
        roots: roots.to_vec(),
        controllers,
    })
}

impl CgPlan {
    /// The root task's set id.
    fn root_task_set(&self, plan: &Plan) -> u32 {
        plan.tasks
            .first()
            .and_then(|t| t.threads[0].core.thread_core.as_ref())
            .and_then(|c| c.cg_set)
            .unwrap_or(self.root_set)
    }

    /// A tree with a cgroup namespace of its own (its root's memberships
    /// carry CRIU's `cgns_prefix`): the `cgroup.procs` of each
    /// namespace root, made if missing (under `--cgroup-root`'s new
    /// root), open for the root task to join before it unshares the
    /// namespace ([`enter_namespace`]); none with `--manage-cgroups=none`
    /// (it unshares where crit is). None for a tree without one.
    pub fn namespace_roots(
        &self,
        plan: &Plan,
        mode: CgMode,
        log: &Log,
        made: &mut Made,
    ) -> Result<Option<Vec<(PathBuf, std::fs::File)>>> {
        let members = self.sets.get(&self.root_task_set(plan));
        let with_prefix: Vec<&pb::CgMemberEntry> = members
            .into_iter()
            .flatten()
            .filter(|m| m.cgns_prefix.is_some_and(|n| n > 0))
            .collect();
        if with_prefix.is_empty() {
            return Ok(None);
        }
        if mode == CgMode::None {
            return Ok(Some(Vec::new()));
        }
        let here =
            cg::hierarchies(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
        let moves = self.moves(plan);
        let pid = plan.tasks[0].pid;
        let mut out = Vec::new();
        for m in with_prefix {
            let n = m.cgns_prefix.unwrap_or(0) as usize;
            // The part inside the namespace stays; what is above it may
            // move with --cgroup-root.
            let inside = m.path.get(n..).unwrap_or("");
            let full = moved(m, &moves).path;
            let ns_root = full.strip_suffix(inside).unwrap_or(&full);
            let Some((mount, root)) = here.get(&cg::key(&m.name)) else {
                log.warn(format!(
                    "pid {pid}: cgroup hierarchy {:?} is not mounted here; its namespace root {ns_root} not joined",
                    m.name
                ));
                continue;
            };
            let rel = ns_root.strip_prefix(root.as_str()).unwrap_or(ns_root);
            let dir = mount.join(rel.trim_start_matches('/'));
            let fail = |what: &'static str| {
                let dir = dir.clone();
                move |source| TaskError::Cgroup {
                    pid,
                    what,
                    dir,
                    source,
                }
            };
            make_dirs(&dir, made).map_err(fail("cgroup namespace root"))?;
            fill_cpusets(mount, &dir, made);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .map_err(fail("cgroup namespace root"))?;
            out.push((dir, f));
        }
        Ok(Some(out))
    }

    /// Moves every live task outside the dumper's set into its cgroups;
    /// the directories it makes go into `made`.
    pub fn join_all(&self, plan: &Plan, mode: CgMode, log: &Log, made: &mut Made) -> Result<()> {
        if self.sets.is_empty() {
            return Ok(());
        }
        let cx = Joining {
            here: cg::hierarchies(
                &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            ),
            mode,
            log,
        };
        let moves = self.moves(plan);
        for t in plan.live() {
            let set = t.threads[0]
                .core
                .thread_core
                .as_ref()
                .and_then(|c| c.cg_set)
                .unwrap_or(self.root_set);
            if set == self.root_set {
                continue;
            }
            let members = self
                .sets
                .get(&set)
                .ok_or(TaskError::NoCgSet { pid: t.pid, set })?;
            for m in members {
                let props = self.properties(m);
                let m = moved(m, &moves);
                self.join(&cx, plan.host(t.pid), t.pid, &m, props, made)?;
            }
        }
        Ok(())
    }

    /// For `--cgroup-root`: per hierarchy (membership name), the root
    /// task's dumped path and the path that replaces it.
    fn moves(&self, plan: &Plan) -> Vec<(String, String, String)> {
        if self.roots.is_empty() {
            return Vec::new();
        }
        let Some(members) = self.sets.get(&self.root_task_set(plan)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in members {
            // A root for its hierarchy, else the global one.
            let named = self
                .roots
                .iter()
                .find(|(c, _)| c.as_deref().is_some_and(|c| names(c, &m.name)));
            let global = self.roots.iter().find(|(c, _)| c.is_none());
            if let Some((_, new)) = named.or(global) {
                out.push((m.name.clone(), m.path.clone(), new.clone()));
            }
        }
        out
    }

    /// The properties recorded for membership `m`'s directory (none when
    /// the image has none for it).
    fn properties(&self, m: &pb::CgMemberEntry) -> &[pb::CgroupPropEntry] {
        let k = cg::key(&m.name);
        self.controllers
            .iter()
            .filter(|c| cg::key(&c.cnames.join(",")) == k)
            .find_map(|c| cg::find_dir(&c.dirs, &m.path))
            .map_or(&[], |d| &d.properties[..])
    }

    fn join(
        &self,
        cx: &Joining,
        host: u32,
        pid: u32,
        m: &pb::CgMemberEntry,
        props: &[pb::CgroupPropEntry],
        made: &mut Made,
    ) -> Result<()> {
        let (here, log) = (&cx.here, cx.log);
        let Some((mount, root)) = here.get(&cg::key(&m.name)) else {
            log.warn(format!(
                "pid {pid}: cgroup hierarchy {:?} is not mounted here; {} not joined",
                m.name, m.path
            ));
            return Ok(());
        };
        let rel = m.path.strip_prefix(root.as_str()).unwrap_or(&m.path);
        let dir = mount.join(rel.trim_start_matches('/'));
        let new = !dir.exists();
        make_dirs(&dir, made).map_err(|source| TaskError::Cgroup {
            pid,
            what: "cgroup",
            dir: dir.clone(),
            source,
        })?;
        fill_cpusets(mount, &dir, made);
        if new || cx.mode == CgMode::Full {
            set_properties(pid, &dir, props, log, made);
        }
        // A task put there would stop in the kernel's freezer, and the
        // restore wait for it for good, deaf to signals.
        if let Some(state) = frozen(&dir) {
            return Err(TaskError::Cgroup {
                pid,
                what: "joining cgroup",
                dir,
                source: std::io::Error::other(format!("it is frozen ({state}); thaw it first")),
            }
            .into());
        }
        std::fs::write(dir.join("cgroup.procs"), host.to_string()).map_err(|source| {
            TaskError::Cgroup {
                pid,
                what: "joining cgroup",
                dir,
                source,
            }
            .into()
        })
    }
}

/// How cgroup `dir` says it is frozen, if it is: a v1 freezer's state
/// (its own or a parent's), or v2's `cgroup.freeze` or `cgroup.events`.
fn frozen(dir: &std::path::Path) -> Option<String> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    if let Some(s) = read("freezer.state").filter(|s| s.trim() != "THAWED") {
        return Some(format!("freezer.state {}", s.trim()));
    }
    if read("cgroup.freeze").is_some_and(|s| s.trim() == "1") {
        return Some("cgroup.freeze 1".to_string());
    }
    read("cgroup.events")
        .filter(|s| s.lines().any(|l| l.trim() == "frozen 1"))
        .map(|_| "cgroup.events: frozen 1".to_string())
}

/// Makes directory `dir` and any missing parent, adding each one made to
/// `made` (parents first), for a failed restore to remove.
fn make_dirs(dir: &std::path::Path, made: &mut Made) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for m in missing.into_iter().rev() {
        match std::fs::create_dir(&m) {
            Ok(()) => {
                super::janitor::note_cgroup_dir(&m);
                made.dirs.push(m)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What a restore changed in the cgroup hierarchies, for a failed one to
/// undo: the directories it made (parents first) and the files it wrote
/// in directories that were there before, with what they held.
#[derive(Default)]
pub struct Made {
    pub dirs: Vec<PathBuf>,
    pub writes: Vec<(PathBuf, String)>,
}

impl Made {
    /// Writes `value` into cgroup file `file`, remembering what it held
    /// when its directory is not one the restore made.
    fn write(&mut self, file: &std::path::Path, value: &str) -> std::io::Result<()> {
        let old = std::fs::read_to_string(file);
        std::fs::write(file, value)?;
        let ours = file
            .parent()
            .is_some_and(|d| self.dirs.iter().any(|m| m == d));
        if let (Ok(old), false) = (old, ours) {
            super::janitor::note_cgroup_write(file, old.trim_end());
            self.writes
                .push((file.to_path_buf(), old.trim_end().to_string()));
        }
        Ok(())
    }
}

/// Undoes `made` once the tree's tasks are gone: the files written back
/// (last first), then the directories removed. Returns what is left,
/// with why.
pub fn undo(made: Made) -> Vec<String> {
    let mut left = Vec::new();
    for (file, old) in made.writes.iter().rev() {
        // An empty value (a cpuset's cpus) is written as a line: a
        // write of nothing may not reach the kernel's handler.
        let value = if old.is_empty() { "\n" } else { old.as_str() };
        if let Err(e) = std::fs::write(file, value) {
            left.push(format!("{} not set back to {old:?}: {e}", file.display()));
        }
    }
    left.extend(remove_made(&made.dirs));
    left
}

/// Removes the cgroups a failed restore made (`made`, parents first),
/// children first, once their tasks are gone: a cgroup whose last task
/// was just reaped may refuse for a moment (EBUSY). Returns the ones
/// left, with why.
fn remove_made(made: &[PathBuf]) -> Vec<String> {
    let mut left = Vec::new();
    for d in made.iter().rev() {
        let mut tries = 0;
        loop {
            match std::fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => {
                    left.push(format!("{}: {e}", d.display()));
                    break;
                }
            }
        }
    }
    left
}

/// In the root task, before it forks: joins the namespace roots
/// ([`CgPlan::namespace_roots`]) and unshares the cgroup namespace, so
/// that the tree sees its cgroups from there, as dumped; its children
/// inherit it. crit moves each task to its own cgroup afterwards.
pub fn enter_namespace(roots: &[(PathBuf, std::fs::File)], pid: u32) -> Result<()> {
    for (dir, f) in roots {
        // "0": the writer itself.
        std::io::Write::write_all(&mut &*f, b"0").map_err(|source| TaskError::Cgroup {
            pid,
            what: "joining its cgroup namespace root",
            dir: dir.clone(),
            source,
        })?;
    }
    crate::sys::ns::unshare(libc::CLONE_NEWCGROUP as u64).map_err(|source| {
        TaskError::Cgroup {
            pid,
            what: "unsharing its cgroup namespace",
            dir: PathBuf::from("/"),
            source,
        }
        .into()
    })
}

/// Writes each recorded property (before the task joins, as CRIU does);
/// one the kernel refuses is a warning naming it, not a failed restore.
fn set_properties(
    pid: u32,
    dir: &std::path::Path,
    props: &[pb::CgroupPropEntry],
    log: &Log,
    made: &mut Made,
) {
    for p in props {
        let file = dir.join(&p.name);
        if std::fs::read_to_string(&file).is_ok_and(|now| now.trim_end() == p.value.trim_end()) {
            continue;
        }
        if let Err(e) = made.write(&file, &p.value) {
            log.warn(format!(
                "pid {pid}: cgroup property {} = {:?} not set: {e}",
                file.display(),
                p.value
            ));
        }
    }
}

/// Whether `--cgroup-root`'s controller `c` names hierarchy `membership`
/// (a membership name of cgroup.img: "pids", "cpu,cpuacct", "" for the
/// unified one): one of its controllers, all of several mounted together
/// (runc names them as /proc/PID/cgroup does), or "unified".
fn names(c: &str, membership: &str) -> bool {
    let ctrls: Vec<&str> = membership.split(',').collect();
    c.split(',').all(|p| ctrls.contains(&p)) || (c == "unified" && membership.is_empty())
}

/// `m` with its path under the new root when `--cgroup-root` moves its
/// hierarchy and the path lies at or below the root task's cgroup.
fn moved(m: &pb::CgMemberEntry, moves: &[(String, String, String)]) -> pb::CgMemberEntry {
    let mut m = m.clone();
    for (name, old, new) in moves {
        if *name != m.name {
            continue;
        }
        let old = old.trim_end_matches('/');
        let rest = if old.is_empty() {
            Some(m.path.as_str())
        } else {
            m.path
                .strip_prefix(old)
                .filter(|r| r.is_empty() || r.starts_with('/'))
        };
        if let Some(rest) = rest {
            m.path = format!("{}{rest}", new.trim_end_matches('/'));
            if m.path.is_empty() {
                m.path = "/".into();
            }
        }
    }
    m
}

/// A v1 cpuset cgroup made anew has no cpus or memory nodes, and no task
/// can join it: each level takes its parent's.
fn fill_cpusets(mount: &std::path::Path, dir: &std::path::Path, made: &mut Made) {
    let Ok(rel) = dir.strip_prefix(mount) else {
        return;
    };
    let mut at = mount.to_path_buf();
    for part in rel.components() {
        let parent = at.clone();
        at.push(part);
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let now = std::fs::read_to_string(at.join(f)).unwrap_or_default();
            if now.trim().is_empty() {
                if let Ok(v) = std::fs::read_to_string(parent.join(f)) {
                    let _ = made.write(&at.join(f), v.trim());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, path: &str) -> pb::CgMemberEntry {
        pb::CgMemberEntry {
            name: name.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn new_root_replaces_the_root_tasks_cgroup_and_keeps_what_is_below() {
        let moves = vec![("pids".to_string(), "/ctr".to_string(), "/new/x".to_string())];
        let at = |name: &str, path: &str| moved(&member(name, path), &moves).path;
        assert_eq!(at("pids", "/ctr"), "/new/x");
        assert_eq!(at("pids", "/ctr/child"), "/new/x/child");
        // Not below the root task's cgroup, or another hierarchy: kept.
        assert_eq!(at("pids", "/ctr2"), "/ctr2");
        assert_eq!(at("pids", "/other"), "/other");
        assert_eq!(at("memory", "/ctr"), "/ctr");
        // A root task at the top: everything moves below the new root.
        let top = vec![("pids".to_string(), "/".to_string(), "/new".to_string())];
        assert_eq!(moved(&member("pids", "/a/b"), &top).path, "/new/a/b");
        let to_top = vec![("pids".to_string(), "/ctr".to_string(), "/".to_string())];
        assert_eq!(moved(&member("pids", "/ctr"), &to_top).path, "/");
        assert_eq!(moved(&member("pids", "/ctr/c"), &to_top).path, "/c");
    }

    #[test]
    fn a_root_names_its_hierarchies() {
        assert!(names("cpu", "cpu,cpuacct") && names("cpu,cpuacct", "cpu,cpuacct"));
        assert!(names("name=systemd", "name=systemd") && names("unified", ""));
        assert!(!names("cpu,memory", "cpu,cpuacct") && !names("pids", "memory"));
        assert!(!names("unified", "pids") && !names("pids", ""));
    }

    #[test]
    fn cgroup_root_values() {
        use crate::restore::parse_cgroup_root as p;
        assert_eq!(p("/a/b/").unwrap(), (None, "/a/b".to_string()));
        assert_eq!(
            p("cpu,cpuacct:/a").unwrap(),
            (Some("cpu,cpuacct".into()), "/a".into())
        );
        assert_eq!(p("/").unwrap(), (None, "/".to_string()));
        assert!(p("relative").is_err());
        assert!(p("pids:relative").is_err());
    }
}
