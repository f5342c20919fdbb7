//! Files under `/proc/PID/` where PID is a task of the tree (a task that
//! keeps its own `status` or `stat` open, as monitors do). That directory
//! exists only once the task does, and crit opens the other files before
//! the first fork (files.rs); so such a file is opened by task PID itself
//! right after it is forked, before it forks its children, who inherit
//! it as they inherit what crit opened. CRIU opens every file after the
//! whole tree exists; a holder that is neither PID nor one of its
//! descendants (a parent holding its child's `stat`) cannot get the file
//! crit's way and is refused before anything is made.

use super::error::{FileError, FileFault, On};
use super::plan::{FileTable, Plan, Task};
use super::reservoir::Reservoir;
use crate::error::Result;
use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;

/// The `/proc/PID/` files of the images whose PID is a live task, by file
/// id, with that PID.
pub fn find(tasks: &[Task], files: &FileTable) -> HashMap<u32, u32> {
    let live: HashSet<u32> = tasks
        .iter()
        .filter(|t| t.zombie.is_none())
        .map(|t| t.pid)
        .collect();
    let mut out = HashMap::new();
    for fd in tasks.iter().flat_map(|t| &t.fds) {
        let Some(r) = files.get(&fd.id).and_then(|f| f.reg.as_ref()) else {
            continue;
        };
        if let Some(pid) = pid_dir(&r.name).filter(|p| live.contains(p)) {
            out.insert(fd.id, pid);
        }
    }
    out
}

/// PID of a path `/proc/PID` or `/proc/PID/...`.
fn pid_dir(name: &str) -> Option<u32> {
    let num = name.strip_prefix("/proc/")?.split('/').next()?;
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse().ok()
}

/// Whether `pid` is `anc` or one of its descendants.
fn under(plan: &Plan, mut pid: u32, anc: u32) -> bool {
    // The tree is finite and acyclic (validated), but a bound keeps a
    // damaged one from looping.
    for _ in 0..=plan.tasks.len() {
        if pid == anc {
            return true;
        }
        match plan.task(pid) {
            Some(t) if t.ppid != pid => pid = t.ppid,
            _ => return false,
        }
    }
    false
}

/// Refuses, before anything is made, a `/proc/PID/` file held by a task
/// that neither is PID nor descends from it.
pub fn check(plan: &Plan) -> Result<()> {
    for t in plan.live() {
        for fd in &t.fds {
            let Some(&own) = plan.proc_files.get(&fd.id) else {
                continue;
            };
            if !under(plan, t.pid, own) {
                return Err(FileError::Refused {
                    on: On::PidFile {
                        pid: t.pid,
                        id: fd.id,
                    },
                    why: FileFault::ProcOfOther {
                        fd: fd.fd,
                        owner: own,
                    },
                }
                .into());
            }
        }
    }
    Ok(())
}

/// Opens, in task `pid` just forked, each `/proc/PID/` file it owns, by
/// file id (but those handed in with `--inherit-fd`, already in `res`).
pub fn open_own(plan: &Plan, pid: u32, res: &Reservoir) -> Result<Vec<(u32, OwnedFd)>> {
    let mut out = Vec::new();
    let mine = plan
        .proc_files
        .iter()
        .filter(|&(id, &own)| own == pid && !res.by_id.contains_key(id));
    for (&id, _) in mine {
        if let Some(r) = plan.files.get(&id).and_then(|f| f.reg.as_ref()) {
            out.push((id, super::files::open_reg(r, pid)?));
        }
    }
    Ok(out)
}
