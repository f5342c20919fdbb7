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
