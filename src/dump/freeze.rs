//! The frozen tree as the dump sees it: every thread stopped by the
//! [`freezer`](super::freezer), the tasks in CRIU's pstree order, which
//! ones were stopped by a signal, and copies of their descriptors
//! (pidfd_getfd). Letting the tree go ends the dump: resumed as it was,
//! or killed.
//!
//! The freezer belongs to the thread that froze (ptrace is per thread):
//! the whole dump runs on one thread. Dropping [`Frozen`] detaches every
//! thread, so any early return leaves the tree running.

use super::error::DumpError;
use super::freezer::{self, FrozenSet, FrozenTask};
use super::tree;
use crate::error::Result;
use crate::sys::{pidfd, ptrace};
use std::cell::RefCell;
use std::collections::hash_map::{Entry, HashMap};
use std::os::fd::OwnedFd;

pub struct Frozen {
    set: Option<FrozenSet>,
    /// The tree in pstree order (depth first from the root).
    pub tasks: Vec<tree::Task>,
    /// Tasks that were in group-stop (stopped by a signal) when frozen.
    pub stopped: Vec<i32>,
    /// One pidfd per task, opened on first use. A cache behind `&self`:
    /// the socket code copies descriptors through a shared `&Frozen`.
    pidfds: RefCell<HashMap<i32, OwnedFd>>,
    /// Tasks whose memory crit frees beside their own exit when killed.
    reap: RefCell<Vec<i32>>,
}

impl Frozen {
    /// Stops every thread of every task of the tree rooted at `root`.
    pub fn freeze(root: i32) -> Result<Frozen> {
        let set = freezer::freeze_tree(root)?;
        if set.task(root).map(|t| t.zombie).unwrap_or(false) {
            return Err(DumpError::ZombieRoot { pid: root }.into());
        }
        let tasks = pstree_order(root, set.tasks())?;
        let stopped = set
            .tasks()
            .iter()
            .filter(|t| {
                t.threads
                    .first()
                    .map(|th| matches!(th.stop, ptrace::Stop::Group(_)))
                    .unwrap_or(false)
            })
            .map(|t| t.pid)
            .collect();
        Ok(Frozen {
            set: Some(set),
            tasks,
            stopped,
            pidfds: Default::default(),
            reap: Default::default(),
        })
    }

    /// A copy of `pid`'s descriptor `fd` (pidfd_getfd).
    pub fn getfd(&self, pid: i32, fd: i32) -> Result<OwnedFd> {
        let mut m = self.pidfds.borrow_mut();
        let p = match m.entry(pid) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                e.insert(pidfd::pidfd_open(pid).map_err(|source| DumpError::Task {
                    pid,
                    what: "pidfd_open",
                    source,
                })?)
            }
        };
        pidfd::pidfd_getfd(p, fd).map_err(|source| {
            DumpError::Fd {
                pid,
                fd,
                what: "pidfd_getfd",
                source,
            }
            .into()
        })
    }

    /// If the tree is killed, `pid`'s memory is freed by crit as well as
    /// by its own exit (`process_mrelease`): the kernel's release of a
    /// big task, which the dump waits for, then runs on two CPUs.
    pub fn reap_when_killed(&self, pid: i32) {
        self.reap.borrow_mut().push(pid);
    }

    /// The first task of the tree (in pstree order) that died since it
    /// was frozen, if any: a failed dump reports it, not the failure it
    /// caused (a descriptor that vanished, a call on a dead task).
    pub fn first_died(&self) -> Option<i32> {
        let dead = |pid: i32| match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => s
                .rsplit_once(')')
                .is_some_and(|(_, r)| matches!(r.trim_start().chars().next(), Some('Z' | 'X'))),
            Err(_) => true,
        };
        self.tasks
            .iter()
            .filter(|t| !t.zombie)
            .map(|t| t.pid)
            .find(|&pid| dead(pid))
    }

    /// Lets the tree go: resumed as it was, or killed (`kill`).
    pub fn release(mut self, kill: bool) -> Result<()> {
        match self.set.take() {
            Some(f) if kill => {
                let mut pidfds = self.pidfds.take();
                // A pidfd that cannot be had only loses the help.
                let reap = self
                    .reap
                    .take()
                    .into_iter()
                    .filter_map(|pid| match pidfds.remove(&pid) {
                        Some(p) => Some((pid, p)),
                        None => pidfd::pidfd_open(pid).ok().map(|p| (pid, p)),
                    })
                    .collect();
                f.kill(reap)
            }
            Some(f) => f.resume(),
            None => Ok(()),
        }
    }
}

/// The frozen tasks depth first from `root`, children by pid, as CRIU
/// writes pstree.img.
fn pstree_order(root: i32, frozen: &[FrozenTask]) -> Result<Vec<tree::Task>> {
    let mut order = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        let Some(ft) = frozen.iter().find(|t| t.pid == pid) else {
            continue;
        };
        let stat = super::procfs::stat(pid)?;
        order.push(tree::Task {
            pid,
            ppid: ft.parent.unwrap_or(0),
            pgid: stat.pgid,
            sid: stat.sid,
            threads: if ft.zombie {
                vec![pid]
            } else {
                ft.threads.iter().map(|t| t.tid).collect()
            },
            stat,
            zombie: ft.zombie,
        });
        let mut kids: Vec<i32> = frozen
            .iter()
            .filter(|t| t.parent == Some(pid))
            .map(|t| t.pid)
            .collect();
        kids.sort();
        stack.extend(kids.into_iter().rev());
    }
    Ok(order)
}
