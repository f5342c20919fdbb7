//! The tree's cgroups, as CRIU records them: each distinct set of
//! (hierarchy, path) memberships gets an id; set 1 is crit's own (the
//! inventory's `root_cg_set`), written nowhere. Tasks in another set
//! have it in their core's `cg_set`, and cgroup.img lists those sets and,
//! per hierarchy, the directories their paths name (so a restore can
//! make them again), with the properties ([`cg::properties`]) of the
//! directories tasks are in.

use super::error::DumpError;
use crate::error::Result;
use crate::image::pb;
use crate::model::cgroup as cg;

/// One membership: the hierarchy's controllers ("" for cgroup v2,
/// "name=X" for a named one) and the path in it.
type Member = (String, String);

/// The sets seen so far; index + 1 is the set id.
pub struct CgSets {
    sets: Vec<Vec<Member>>,
    /// A tree with a cgroup namespace of its own: per hierarchy, the
    /// length of its root's path (CRIU's `cgns_prefix`).
    prefixes: std::collections::HashMap<String, u32>,
}

/// `/proc/PID/cgroup` as memberships, in the file's order.
fn read(pid: i32) -> Result<Vec<Member>> {
    let path = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&path).map_err(|source| DumpError::Proc {
        pid,
        path: path.clone().into(),
        source,
    })?;
    Ok(parse(&text))
}

fn parse(text: &str) -> Vec<Member> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, at) = (f.next()?, f.next()?, f.next()?);
            Some((ctrls.to_string(), at.to_string()))
        })
        .collect()
}

/// `/proc/PID/cgroup` as the task sees it: read by a thread of crit's
/// that joined its cgroup namespace (the file shows paths from the
/// reader's namespace root).
fn read_inside(pid: i32) -> std::io::Result<String> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/cgroup"))?;
    std::thread::scope(|s| {
        crate::sys::thread::scoped(s, || {
            crate::sys::ns::enter(std::os::fd::AsFd::as_fd(&ns), libc::CLONE_NEWCGROUP as u64)?;
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        })?
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
    })
}

/// The length of the namespace root's part of `outside` (a path from
/// the host's root) when the task sees it as `inside`; None when the
/// views do not fit (`inside` is no tail of `outside`).
fn prefix_len(outside: &str, inside: &str) -> Option<u32> {
    if inside == "/" {
        return Some(outside.trim_end_matches('/').len() as u32);
    }
    let root = outside.strip_suffix(inside)?;
    // Whole components only: /a/bc seen as /c is no fit.
    (root.is_empty() || !root.ends_with('/')).then_some(root.len() as u32)
}

impl CgSets {
    /// Starts with crit's own set (id 1).
    pub fn new() -> Result<CgSets> {
        Ok(CgSets {
            sets: vec![read(std::process::id() as i32)?],
            prefixes: Default::default(),
        })
    }

    /// The tree's root `pid` has a cgroup namespace of its own: where its
    /// root is in each hierarchy, from the task's view and crit's.
    pub fn note_namespace(&mut self, pid: i32) -> Result<()> {
        let fail = |why: String| DumpError::CgroupNs { pid, why };
        let inside = read_inside(pid).map_err(|e| fail(e.to_string()))?;
        let outside = read(pid)?;
        for (name, at) in parse(&inside) {
            let Some((_, full)) = outside.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            if *full == at {
                continue;
            }
            let len = prefix_len(full, &at)
                .ok_or_else(|| fail(format!("{name}: it sees {at} where crit sees {full}")))?;
            if len > 0 {
                self.prefixes.insert(name, len);
            }
        }
        Ok(())
    }

    /// The set id of task `pid`.
    pub fn id_of(&mut self, pid: i32) -> Result<u32> {
        let s = read(pid)?;
        let at = match self.sets.iter().position(|x| *x == s) {
            Some(i) => i,
            None => {
                self.sets.push(s);
                self.sets.len() - 1
            }
        };
        Ok(at as u32 + 1)
    }

    /// cgroup.img's entry, when some task is outside crit's set.
    pub fn entry(&self) -> Option<pb::CgroupEntry> {
        if self.sets.len() < 2 {
            return None;
        }
        let sets = self.sets[1..]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut ctls: Vec<pb::CgMemberEntry> = s
                    .iter()
                    .map(|(name, path)| pb::CgMemberEntry {
                        name: name.clone(),
                        path: path.clone(),
                        // Every task shares the root's namespace.
                        cgns_prefix: self
                            .prefixes
                            .get(name)
                            .copied()
                            .filter(|&n| n as usize <= path.len()),
                    })
                    .collect();
                ctls.sort_by(|a, b| a.name.cmp(&b.name));
                pb::CgSetEntry {
                    id: i as u32 + 2,
                    ctls,
                }
            })
            .collect();
        Some(pb::CgroupEntry {
            sets,
            controllers: self.controllers(),
        })
    }

    /// Per hierarchy, the directory tree of the paths the sets use.
    fn controllers(&self) -> Vec<pb::CgControllerEntry> {
        let mut out: Vec<pb::CgControllerEntry> = Vec::new();
        for (name, path) in self.sets[1..].iter().flatten() {
            let at = match out.iter().position(|c| c.cnames == [name.clone()]) {
                Some(i) => i,
                None => {
                    out.push(pb::CgControllerEntry {
                        cnames: vec![name.clone()],
                        dirs: Vec::new(),
                        is_threaded: None,
                    });
                    out.len() - 1
                }
            };
            let mut level = &mut out[at].dirs;
            for part in path.split('/').filter(|p| !p.is_empty()) {
                let i = match level.iter().position(|d| d.dir_name == part) {
                    Some(i) => i,
                    None => {
                        level.push(pb::CgroupDirEntry {
                            dir_name: part.to_string(),
                            ..Default::default()
                        });
                        level.len() - 1
                    }
                };
                level = &mut level[i].children;
            }
        }
        let here =
            cg::hierarchies(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
        for (name, path) in self.sets[1..].iter().flatten() {
            let Some((mount, root)) = here.get(&cg::key(name)) else {
                continue;
            };
            let Some(c) = out.iter_mut().find(|c| c.cnames == [name.clone()]) else {
                continue;
            };
            let Some(d) = find_dir_mut(&mut c.dirs, path) else {
                continue;
            };
            if d.properties.is_empty() {
                let rel = path.strip_prefix(root.as_str()).unwrap_or(path);
                d.properties = read_properties(&mount.join(rel.trim_start_matches('/')), name);
            }
        }
        out
    }
}

/// The directory of `path` in a tree crit built (one component a level).
fn find_dir_mut<'a>(
    mut level: &'a mut Vec<pb::CgroupDirEntry>,
    path: &str,
) -> Option<&'a mut pb::CgroupDirEntry> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (last, up) = parts.split_last()?;
    for part in up {
        let i = level.iter().position(|d| d.dir_name == *part)?;
        level = &mut level[i].children;
    }
    level.iter_mut().find(|d| d.dir_name == *last)
}

/// The control files of `dir` that are properties on hierarchy `name`,
/// with their values and owners; files this kernel lacks are left out.
fn read_properties(dir: &std::path::Path, name: &str) -> Vec<pb::CgroupPropEntry> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for p in cg::properties(&cg::key(name)) {
        let file = dir.join(p);
        let (Ok(value), Ok(meta)) = (std::fs::read_to_string(&file), std::fs::metadata(&file))
        else {
            continue;
        };
        out.push(pb::CgroupPropEntry {
            name: p.to_string(),
            value: cg::prop_value(p, &value),
            perms: Some(pb::CgroupPerms {
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            }),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::prefix_len;

    #[test]
    fn namespace_roots_are_path_prefixes() {
        assert_eq!(prefix_len("/ctr", "/"), Some(4));
        assert_eq!(prefix_len("/ctr/sub", "/sub"), Some(4));
        assert_eq!(prefix_len("/a/ctr/x/y", "/x/y"), Some(6));
        assert_eq!(prefix_len("/a/bc", "/c"), None);
        assert_eq!(prefix_len("/a", "/b"), None);
    }
}
