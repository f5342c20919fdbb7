//! The state of one dump in progress, passed as `&mut` through every
//! step: what is fixed before the freeze (options, machine probes), the
//! frozen tree and when it was frozen, and what collecting builds up
//! (object ids, the file table, sockets, seccomp filters) while the page
//! writer copies memory in the background.

use super::files::FileTable;
use super::freeze::Frozen;
use super::ids::Ids;
use super::imgdir::ImgDir;
use super::pages::PageWriter;
use super::progress::Log;
use super::sockets::Sockets;
use super::{maps, pagemap, DumpOpts};
use crate::error::Result;
use crate::image::pb;
use std::time::{Duration, Instant};

/// Facts about this machine the dump needs, read before the freeze so
/// that they do not add to the frozen time.
#[derive(Debug, Clone, Copy)]
pub struct Probes {
    /// The device of anonymous shared memory and memfd files.
    pub shmem_dev: u64,
    /// The PFN of the shared zero page (0 when PFNs are hidden).
    pub zero_pfn: u64,
    /// The device of pipes (pipefs: one for all of them).
    pub pipefs_dev: u64,
    /// The device of sockets (sockfs, likewise).
    pub sockfs_dev: u64,
}

impl Probes {
    pub fn read() -> Result<Probes> {
        Ok(Probes {
            shmem_dev: maps::shmem_dev()?,
            zero_pfn: pagemap::zero_pfn()?,
            pipefs_dev: super::fdscan::pipefs_dev()?,
            sockfs_dev: super::fdscan::sockfs_dev()?,
        })
    }
}

/// How long freezing took, and when the tree was frozen (stats-dump).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub freezing: Duration,
    pub frozen_at: Instant,
}

/// One dump in progress.
pub struct DumpCtx<'a> {
    pub opts: &'a DumpOpts,
    pub log: &'a Log,
    pub frozen: &'a Frozen,
    pub dir: &'a mut ImgDir,
    pub probes: Probes,
    pub timing: Timing,
    pub ids: Ids,
    /// The dumper's own ids (inventory's root_ids), taken first as CRIU
    /// does.
    pub root_ids: pb::TaskKobjIdsEntry,
    /// The namespaces the tree owns and the pids it sees (set once the
    /// tree is frozen, before anything is collected).
    pub ns: super::ns::TreeNs,
    pub files: FileTable,
    pub socks: Sockets,
    /// Copies task memory into pages images while the rest is collected.
    pub pages: PageWriter,
    /// seccomp.img's filters, each thread's chain newest first.
    pub seccomp: Vec<pb::SeccompFilter>,
    /// The vm ids of the tasks collected so far: a task sharing its mm
    /// with an earlier one has no mm or pages of its own.
    pub seen_vm: Vec<u32>,
    /// The same for fd tables.
    pub seen_files: Vec<u32>,
    /// The cgroup sets of the tasks (crit's own is set 1).
    pub cgroups: super::cgroups::CgSets,
    /// The dump this one builds on (`--prev-images-dir`, `--pre-copy`).
    pub parent: Option<&'a super::incremental::Parent>,
    /// Write trackers made by this dump (`--track-mem` with
    /// `--leave-running`), for the next one.
    pub trackers: super::track::Trackers,
    /// With `-R`: the sync and inventory.img, left until the tree runs.
    pub last: Option<super::write::Last>,
    /// Bytes read out of the tree's ptys, to queue again where the tree
    /// runs on (shared with [`super::dump_into`]).
    pub requeue: std::sync::Arc<super::ptyqueue::Requeue>,
}

impl<'a> DumpCtx<'a> {
    /// Starts the dump of the frozen tree into `dir` (and the page writer).
    pub fn new(
        opts: &'a DumpOpts,
        log: &'a Log,
        frozen: &'a Frozen,
        dir: &'a mut ImgDir,
        probes: Probes,
        timing: Timing,
        remote: Option<crate::pageserver::client::Client>,
    ) -> Result<DumpCtx<'a>> {
        let mut ids = Ids::default();
        // The dumper's own objects take the first ids, as in CRIU.
        let root_ids = ids.task(std::process::id() as i32)?;
        let mut socks = Sockets::default();
        socks.net_ns_id = root_ids.net_ns_id;
        let mut pages = PageWriter::new(&dir.dir, remote, true);
        if opts.lazy_pages.is_some() {
            pages.leave_lazy();
        }
        Ok(DumpCtx {
            opts,
            log,
            frozen,
            dir,
            probes,
            timing,
            ids,
            root_ids,
            ns: Default::default(),
            files: FileTable::new(opts.ghost_limit),
            socks,
            pages,
            seccomp: Vec::new(),
            seen_vm: Vec::new(),
            seen_files: Vec::new(),
            cgroups: super::cgroups::CgSets::new()?,
            parent: None,
            trackers: Default::default(),
            last: None,
            requeue: Default::default(),
        })
    }
}
