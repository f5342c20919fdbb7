//! The tree's cgroups, as CRIU records them: each distinct set of
//! (hierarchy, path) memberships gets an id; set 1 is crit's own (the
//! inventory's `root_cg_set`), written nowhere. Tasks in another set
//! have it in their core's `cg_set`, and cgroup.img lists those sets and,
//! per hierarchy, the directories their paths name (so a restore can
//! make them again). Properties are not recorded.

use super::error::DumpError;
use crate::error::Result;
use crate::image::pb;

/// One membership: the hierarchy's controllers ("" for cgroup v2,
/// "name=X" for a named one) and the path in it.
type Member = (String, String);

/// The sets seen so far; index + 1 is the set id.
pub struct CgSets {
    sets: Vec<Vec<Member>>,
}

/// `/proc/PID/cgroup` as memberships, in the file's order.
fn read(pid: i32) -> Result<Vec<Member>> {
    let path = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&path).map_err(|source| DumpError::Proc {
        pid,
        path: path.clone().into(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, at) = (f.next()?, f.next()?, f.next()?);
            Some((ctrls.to_string(), at.to_string()))
        })
        .collect())
}

impl CgSets {
    /// Starts with crit's own set (id 1).
    pub fn new() -> Result<CgSets> {
        Ok(CgSets {
            sets: vec![read(std::process::id() as i32)?],
        })
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
                        cgns_prefix: None,
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
        out
    }
}
