//! What crit opens before the tree is forked, by file id, until the
//! forked tasks take it; and the work the plan leaves to the tasks.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// File objects by file id, owned by crit until the tasks have taken them.
#[derive(Default)]
pub struct Reservoir {
    pub by_id: HashMap<u32, OwnedFd>,
    /// Files that VMAs map, by file id (opened for mapping).
    pub vma_files: HashMap<u32, OwnedFd>,
    /// Socket files the restore bound (removed on rollback).
    pub created_paths: Vec<super::made::Entry>,
    /// Extra fds kept alive until the tree runs (temporary peers).
    pub keep: Vec<OwnedFd>,
    /// Unix socket pairs each task makes itself.
    pub task_pairs: Vec<super::unix::plan::TaskPair>,
    /// Connections through in-tree listeners that the tasks make.
    pub task_conns: Vec<super::unix::plan::TaskConn>,
    /// File ids of deleted files recreated from their ghost images.
    pub ghosts: std::collections::HashSet<u32>,
    /// Shared anonymous memory by shmid (a memfd per object).
    pub shm_files: HashMap<u64, OwnedFd>,
    /// Sockets the task itself connects to an outside peer, with its own
    /// pid and credentials (see [`super::child`]).
    pub ext_connects: Vec<ExtConnect>,
    /// Indexes of the ptys made anew, their masters handed over.
    pub ptys: Vec<u32>,
    /// TCP connections, closed silently should the restore fail.
    pub tcp_live: super::tcp::SilentOnFailure,
    /// TCP connections in repair mode (crit's copies), to take out of it
    /// right before the tree runs.
    pub tcp_repaired: Vec<(OwnedFd, crate::image::pb::InetSkEntry)>,
    /// Bytes queued in a pty that could not be put back (a terminal never
    /// promised delivery: warnings, not failures).
    pub pty_warnings: Vec<String>,
    /// A tree with a cgroup namespace of its own: the namespace roots'
    /// cgroup.procs, which the root task joins before it unshares one.
    pub cgroup_ns: Option<Vec<(std::path::PathBuf, std::fs::File)>>,
}

/// A unix socket (file id, inode) to connect to an outside address.
pub struct ExtConnect {
    pub id: u32,
    pub ino: u32,
    pub addr: nix::sys::socket::UnixAddr,
}

impl Reservoir {
    pub fn raw(&self, id: u32) -> Option<RawFd> {
        self.by_id.get(&id).map(|f| f.as_raw_fd())
    }
}
