//! The process tree under the root pid, in CRIU's pstree order (the root
//! first, then each task's children in pid order, depth first), with the
//! threads of every task.

use super::error::DumpError;
use super::procfs;
use crate::error::Result;

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
/// own (which restore inherits). A group whose leader exited is kept (a
/// restore makes it again with a helper task, as CRIU's does): its pid
/// names no process, as no process can take a pid a group still holds.
pub fn check_ids(tasks: &[Task]) -> Result<()> {
    let Some(root) = tasks.first() else {
        return Ok(());
    };
    let pids: std::collections::HashSet<i32> = tasks.iter().map(|t| t.pid).collect();
    for t in tasks {
        if t.sid != root.sid && !pids.contains(&t.sid) {
            let (pid, sid) = (t.pid, t.sid);
            return Err(DumpError::SessionOutside { pid, sid }.into());
        }
        let leader_lives = || std::path::Path::new(&format!("/proc/{}", t.pgid)).exists();
        if t.pgid != root.pgid && !pids.contains(&t.pgid) && leader_lives() {
            let (pid, pgid) = (t.pid, t.pgid);
            return Err(DumpError::GroupOutside { pid, pgid }.into());
        }
    }
    Ok(())
}

/// Locks of /proc/locks by the (device, inode) of the locked file, each
/// with its line.
pub type Locked = std::collections::HashMap<(u64, u64), String>;

/// Refuses a tree holding file locks (/proc/locks), which are not dumped
/// (CRIU, too, refuses them unless told to dump them). Returns every
/// lock of the system by file, for descriptors whose fdinfo was not read
/// (see [`super::fdscan::scan_listed`]).
pub fn check_locks(tasks: &[Task]) -> Result<Locked> {
    let pids: std::collections::HashSet<i32> = tasks.iter().map(|t| t.pid).collect();
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let mut all = Locked::new();
    for l in text.lines() {
        // "1: POSIX  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || f[1] == "->" {
            continue;
        }
        if let Some(key) = dev_ino(f[5]) {
            all.insert(key, l.trim().to_string());
        }
        let Ok(pid) = f[4].parse::<i32>() else {
            continue;
        };
        if pids.contains(&pid) {
            return Err(DumpError::HeldLock {
                pid,
                fd: fd_of_inode(pid, f[5]),
                kind: f[1].to_string(),
                inode: f[5].to_string(),
            }
            .into());
        }
    }
    Ok(all)
}

/// "MAJ:MIN:INODE" of /proc/locks (hexadecimal device numbers) as
/// (device, inode).
fn dev_ino(lock: &str) -> Option<(u64, u64)> {
    let mut it = lock.split(':');
    let major = u64::from_str_radix(it.next()?, 16).ok()?;
    let minor = u64::from_str_radix(it.next()?, 16).ok()?;
    let ino: u64 = it.next()?.parse().ok()?;
    Some((nix::sys::stat::makedev(major, minor), ino))
}

/// The fd of task `pid` that holds the file /proc/locks names as
/// "MAJ:MIN:INODE" (hexadecimal device numbers).
fn fd_of_inode(pid: i32, lock: &str) -> Option<i32> {
    use std::os::unix::fs::MetadataExt;
    let (dev, ino) = dev_ino(lock)?;
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds.into_iter().find(|fd| {
        std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
            .is_ok_and(|m| m.ino() == ino && m.dev() == dev)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn task(pid: i32, pgid: i32, sid: i32) -> Task {
        Task {
            pid,
            ppid: 1,
            pgid,
            sid,
            threads: vec![pid],
            stat: Default::default(),
            zombie: false,
        }
    }

    #[test]
    fn leaders_outside_the_tree_are_refused() {
        // The root's own session and group may be led from outside.
        assert!(check_ids(&[task(10, 1, 1), task(11, 10, 10)]).is_ok());
        let e = check_ids(&[task(10, 10, 10), task(11, 11, 5)]).unwrap_err();
        assert!(matches!(
            e,
            Error::Dump(DumpError::SessionOutside { pid: 11, sid: 5 })
        ));
        // A group led by a live process outside the tree (this test's).
        let me = std::process::id() as i32;
        let e = check_ids(&[task(10, 10, 10), task(11, me, 10)]).unwrap_err();
        assert!(matches!(
            e,
            Error::Dump(DumpError::GroupOutside { pid: 11, pgid } ) if pgid == me
        ));
    }

    #[test]
    fn a_group_whose_leader_exited_is_kept() {
        let gone = (1000..4_000_000)
            .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
            .unwrap();
        assert!(check_ids(&[task(10, 10, 10), task(11, gone, 10)]).is_ok());
    }
}
