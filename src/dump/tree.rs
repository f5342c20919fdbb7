//! The process tree under the root pid, in CRIU's pstree order (the root
//! first, then each task's children in pid order, depth first), with the
//! threads of every task.

use super::procfs;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Task {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub threads: Vec<i32>,
    pub stat: procfs::Stat,
    /// Exited, not yet reaped by its parent: only its core (exit status)
    /// and its place in the tree are dumped, as CRIU does.
    pub zombie: bool,
}

/// Refuses trees whose sessions or groups cannot be rebuilt: a task in a
/// session or group led by a task outside the tree, other than the root's
/// own (which restore inherits).
pub fn check_ids(tasks: &[Task]) -> Result<()> {
    let Some(root) = tasks.first() else {
        return Ok(());
    };
    let pids: std::collections::HashSet<i32> = tasks.iter().map(|t| t.pid).collect();
    for t in tasks {
        if t.sid != root.sid && !pids.contains(&t.sid) {
            return Err(Error::msg(format!(
                "pid {}: its session {} is led by a task outside the dumped tree",
                t.pid, t.sid
            )));
        }
        if t.pgid != root.pgid && !pids.contains(&t.pgid) {
            return Err(Error::msg(format!(
                "pid {}: its process group {} is led by a task outside the dumped tree",
                t.pid, t.pgid
            )));
        }
    }
    Ok(())
}

/// Refuses a tree holding file locks (/proc/locks), which are not dumped
/// (CRIU, too, refuses them unless told to dump them).
pub fn check_locks(tasks: &[Task]) -> Result<()> {
    let pids: std::collections::HashSet<i32> = tasks.iter().map(|t| t.pid).collect();
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    for l in text.lines() {
        // "1: POSIX  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || f[1] == "->" {
            continue;
        }
        let Ok(pid) = f[4].parse::<i32>() else {
            continue;
        };
        if pids.contains(&pid) {
            return Err(Error::msg(format!(
                "pid {pid}: holds a {} file lock on inode {}; dumping file locks is not supported",
                f[1], f[5]
            )));
        }
    }
    Ok(())
}
