//! Undoing a failed restore: remove the socket files the restore bound
//! (those still at their paths: never a file another process put
//! there), kill every task restored so far (crit is their child
//! subreaper, so orphans come back to it to be reaped and their pids
//! are free again), put
//! its TCP connections back into repair mode so they close without a
//! packet, undo what it did to cgroups (directories made, files written)
//! and remove the mountpoints it made
//! in the root file system. What SIGKILL keeps crit from undoing, its
//! janitor undoes ([`super::janitor`]).

use super::plan::Plan;
use super::Log;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;

pub struct Rollback {
    /// Pids (and tids) the restore creates.
    pub ids: Vec<u32>,
    pub created_paths: Vec<super::made::Entry>,
    /// Write end of the pipe the forked tasks wait on.
    pub hold_w: Option<OwnedFd>,
    pub spawned: bool,
    /// The TCP connections (crit's copies): back into repair mode once
    /// the tasks are killed, so they close without a packet.
    pub tcp_live: super::tcp::SilentOnFailure,
    /// TCP connections still in repair mode (crit's copies), for the
    /// last step before the tree runs.
    pub tcp_repaired: Vec<(OwnedFd, crate::image::pb::InetSkEntry)>,
    /// Cgroup directories the restore made and files it wrote.
    pub cgroups: super::cgroups::Made,
    /// Mountpoints (directories and empty files) the restore made,
    /// parents first.
    pub mountpoints: Vec<super::ns::mounts::MadePath>,
}

impl Rollback {
    pub fn new(plan: &Plan) -> Rollback {
        Rollback {
            // In a pid namespace of their own the images' pids are not
            // crit's: the root's is known once it is cloned.
            ids: if plan.ns.own_pids() {
                Vec::new()
            } else {
                plan.tasks.iter().map(|t| t.pid).collect()
            },
            created_paths: Vec::new(),
            hold_w: None,
            spawned: false,
            tcp_live: Default::default(),
            cgroups: Default::default(),
            tcp_repaired: Vec::new(),
            mountpoints: Vec::new(),
        }
    }

    /// The restore is done: nothing is to be undone, and what the
    /// rollback held (the directories of the socket files bound and of
    /// the mountpoints made) is let go, not kept while crit waits for
    /// the tree.
    pub fn succeeded(&mut self) {
        super::janitor::done();
        self.tcp_live.disarm();
        self.created_paths.clear();
        self.mountpoints.clear();
    }

    pub fn undo(&mut self, log: &Log) {
        // Each is reached through its directory's descriptor, also on a
        // bind of a host directory into the tree's mount namespace.
        for p in self.created_paths.drain(..) {
            if p.remove() {
                log.debug(format!("rollback: removed {}", p.shown.display()));
            }
        }
        if self.spawned {
            for &p in &self.ids {
                // These pids were free when the restore began.
                let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
            }
            self.hold_w = None;
            reap_all();
        }
        // The tasks' copies are gone: crit's are the last.
        drop(std::mem::take(&mut self.tcp_live));
        for e in super::cgroups::undo(std::mem::take(&mut self.cgroups)) {
            log.warn(format!("rollback: a cgroup change is left: {e}"));
        }
        // Once the tree's mount namespace is gone with its tasks, nothing
        // is mounted on them: children first.
        for p in std::mem::take(&mut self.mountpoints).iter().rev() {
            if p.remove() {
                log.debug(format!(
                    "rollback: removed mountpoint {}",
                    p.shown.display()
                ));
            }
        }
        // All undone: crit killed from here leaves nothing to do.
        super::janitor::done();
    }
}

/// Reaps every child until none is left but the janitor, which crit's
/// own rollback outlives.
fn reap_all() {
    let Some(janitor) = super::janitor::pid() else {
        while let Ok(_) | Err(nix::errno::Errno::EINTR) =
            waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL))
        {}
        return;
    };
    loop {
        match waitpid(
            Pid::from_raw(-1),
            Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
        ) {
            Ok(WaitStatus::StillAlive) => {
                let left = crate::sys::procfs::children(std::process::id()).unwrap_or_default();
                if left.iter().all(|&c| c as i32 == janitor) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Waits for the restored root to end, reaping orphans on the way, and
/// returns the status crit exits with (128+N for a signal N).
pub fn wait_root(root: u32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() as u32 == root => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() as u32 == root => {
                return 128 + sig as i32
            }
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        }
    }
}
