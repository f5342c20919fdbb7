//! Undoing a failed restore: remove the socket files the restore bound
//! (those still at their paths: never a file another process put
//! there), kill every task restored so far (crit is their child
//! subreaper, so orphans come back to it to be reaped and their pids
//! are free again), put
//! its TCP connections back into repair mode so they close without a
//! packet, undo what it did to cgroups (directories made, files written)
//! and remove the mountpoints it made
//! in the root file system.

use super::plan::Plan;
use super::Log;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;

pub struct Rollback {
    /// Pids (and tids) the restore creates.
    pub ids: Vec<u32>,
    pub created_paths: Vec<super::reservoir::BoundPath>,
    /// Write end of the pipe the forked tasks wait on.
    pub hold_w: Option<OwnedFd>,
    pub spawned: bool,
    /// The tree's root directory, when it has a mount namespace of its
    /// own: the bound paths are below it.
    pub tree_root: Option<super::ns::TreeRoot>,
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
            tree_root: None,
            tcp_live: Default::default(),
            cgroups: Default::default(),
            tcp_repaired: Vec::new(),
            mountpoints: Vec::new(),
        }
    }

    /// The restore is done: nothing is to be undone, and what the
    /// rollback held (the tree's mount namespace, the directories of the
    /// mountpoints made) is let go, not kept while crit waits for the
    /// tree.
    pub fn succeeded(&mut self) {
        self.tcp_live.disarm();
        self.tree_root = None;
        self.mountpoints.clear();
    }

    pub fn undo(&mut self, log: &Log) {
        // Before the tasks go: the last of them ends the tree's mount
        // namespace, and with it the binds of host directories that some
        // of these files are on (then out of reach, left on the host).
        for mut p in self.created_paths.drain(..) {
            if let Some(root) = &self.tree_root {
                p.path = below(&root.dir, &p.path);
            }
            if p.remove() {
                log.debug(format!("rollback: removed {}", p.path.display()));
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
        // Once the tree's mount namespace is gone (its tasks are, and
        // crit lets go of it here), nothing is mounted on them: children
        // first.
        self.tree_root = None;
        for p in std::mem::take(&mut self.mountpoints).iter().rev() {
            if p.remove() {
                log.debug(format!(
                    "rollback: removed mountpoint {}",
                    p.shown.display()
                ));
            }
        }
    }
}

/// `path` of the tree's mount namespace, as crit reaches it.
fn below(root: &OwnedFd, path: &std::path::Path) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    let rel = path.strip_prefix("/").unwrap_or(path);
    std::path::PathBuf::from(format!("/proc/self/fd/{}", root.as_raw_fd())).join(rel)
}

/// Reaps every child until none is left.
fn reap_all() {
    while let Ok(_) | Err(nix::errno::Errno::EINTR) =
        waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL))
    {}
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
