//! `crit pre-dump`: the memory of a tree that runs on, as CRIU's
//! pre-dump writes it (pagemap-N.img and pages-N.img per task,
//! inventory.img with `pre_dump_mode`, stats-dump; `parent` when it builds
//! on an earlier one), for a later `crit dump --prev-images-dir` that
//! copies only what was written since.
//!
//! One round: freeze the tree; per task read its mappings and pagemap,
//! and either scan what was written since the last round (its tracker)
//! or make a tracker (one injected call) and write-protect everything;
//! resume the tree; then copy the pages with process_vm_readv while it
//! runs. A page written during the copy is copied again next time (its
//! protection went before the copy), so what a later dump takes from this
//! one is never stale. The tree is stopped only while its page tables
//! are read, not while its memory is copied.

use super::error::DumpError;
use super::freeze::Frozen;
use super::imgdir::ImgDir;
use super::incremental::Parent;
use super::ns::pids::{self, PidMap};
use super::pagemap::{self, Run};
use super::pages::PageWriter;
use super::progress::Log;
use super::track::{Tracker, Trackers};
use super::{context::Probes, maps, DumpOpts};
use crate::error::Result;
use crate::image::pb;
use crate::image::typed::ImageBuilder;
use std::time::{Duration, Instant};

/// CRIU's `pre_dump_mode` for pages read with process_vm_readv.
const PRE_DUMP_READ: u32 = 2;

/// What one round did.
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub tasks: usize,
    /// Pages copied in this round.
    pub pages: u64,
    /// Pages left to the previous round (not written since).
    pub parent_pages: u64,
    pub frozen: Duration,
    pub copy: Duration,
    pub total: Duration,
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = (self.pages * maps::PAGE_SIZE) as f64 / 1048576.0;
        let secs = self.copy.as_secs_f64();
        write!(
            f,
            "{} task(s), {} pages ({:.1} MiB) copied in {:.3} s ({:.0} MiB/s), {} pages unchanged, frozen {:.3} s",
            self.tasks,
            self.pages,
            mib,
            secs,
            if secs > 0.0 { mib / secs } else { 0.0 },
            self.parent_pages,
            self.frozen.as_secs_f64()
        )
    }
}

/// `crit pre-dump`: one round into `opts.dir`, on top of
/// `opts.prev_images_dir` if given; the trackers then go to a keeper.
pub fn pre_dump(opts: &DumpOpts) -> Result<Round> {
    if let Some(p) = opts.worker_of {
        super::guard::set_parent(p);
    }
    let log = Log::new(opts)?;
    super::precheck(opts)?;
    super::track::probe().map_err(|source| DumpError::NoTrackingSupport { source })?;
    log.debug("write tracking: userfaultfd async write-protect + PAGEMAP_SCAN");
    let mut dir = ImgDir::open(&opts.dir)?;
    let parent = match &opts.prev_images_dir {
        Some(p) => Some(Parent::open(&opts.dir, p, None)?),
        None => None,
    };
    let (r, trackers) = round(opts.pid, &log, &mut dir, parent, true)?;
    super::track::keep::hand_off(&opts.dir, &trackers)?;
    dir.keep();
    log.info(&r.to_string());
    Ok(r)
}

/// One pre-dump of the tree of `pid` into `dir` (see the module docs);
/// returns the trackers of its tasks. On failure the tree runs on and
/// the images written are removed (with `dir`). Unless `durable` (the
/// rounds of `--pre-copy`, removed at its end) nothing waits for the disk.
pub fn round(
    pid: i32,
    log: &Log,
    dir: &mut ImgDir,
    parent: Option<Parent>,
    durable: bool,
) -> Result<(Round, Trackers)> {
    let t0 = Instant::now();
    let probes = Probes::read()?;
    log.step(&format!("freezing the tree of pid {pid}"));
    let frozen = Frozen::freeze(pid)?;
    let t_frozen = Instant::now();
    let mut trackers = Trackers::default();
    let collected = collect(&frozen, probes, parent.as_ref(), &mut trackers);
    // The tree runs on whatever happened; its memory is copied meanwhile.
    let released = frozen.release(false);
    let frozen_for = t_frozen.elapsed();
    let (jobs, parent_pages) = collected?;
    released?;
    let t_copy = Instant::now();
    log.step(&format!("copying the memory of {} task(s)", jobs.len()));
    let mut pw = PageWriter::new(&dir.dir);
    let mut vpids = Vec::with_capacity(jobs.len());
    for (pid, vpid, runs) in jobs {
        pw.submit(pid, runs, None)?;
        vpids.push(vpid);
    }
    pw.help();
    let (done, (t_read, t_write)) = pw.finish()?;
    let copy = t_copy.elapsed();
    let mut r = Round {
        tasks: done.len(),
        parent_pages,
        frozen: frozen_for,
        copy,
        ..Default::default()
    };
    for (d, vpid) in done.into_iter().zip(vpids) {
        dir.finish(d.stream)?;
        dir.write(&format!("pagemap-{vpid}.img"), &d.pagemap)?;
        r.pages += d.pages;
    }
    let stats = pb::DumpStatsEntry {
        freezing_time: (t_frozen - t0).as_micros() as u32,
        frozen_time: frozen_for.as_micros() as u32,
        memdump_time: t_read.as_micros() as u32,
        memwrite_time: t_write.as_micros() as u32,
        pages_scanned: 0,
        pages_skipped_parent: r.parent_pages,
        pages_written: r.pages,
        ..Default::default()
    };
    let mut b = ImageBuilder::new("STATS")?;
    b.entry(&pb::StatsEntry {
        dump: Some(stats),
        restore: None,
    });
    dir.write("stats-dump", &b)?;
    if let Some(p) = &parent {
        dir.symlink("parent", &p.link)?;
    }
    if durable {
        dir.sync()?;
    }
    let me = std::process::id() as i32;
    let root_ids = super::ids::Ids::default().task(me)?;
    super::write::write_inventory(dir, &root_ids, Some(PRE_DUMP_READ), true, durable)?;
    // Trackers of tasks that are still there go on.
    if let Some(p) = parent {
        for t in p.trackers {
            if trackers.get(t.pid, t.start).is_none() {
                trackers.insert(t);
            }
        }
    }
    r.total = t0.elapsed();
    Ok((r, trackers))
}

/// Each task's pages to copy (pid, pid in the images, runs) and how many
/// pages were left to the parent; new trackers go into `trackers`.
type Jobs = (Vec<(i32, i32, Vec<Run>)>, u64);

fn collect(
    frozen: &Frozen,
    probes: Probes,
    parent: Option<&Parent>,
    trackers: &mut Trackers,
) -> Result<Jobs> {
    let pids = vpids(frozen)?;
    let mut jobs = Vec::new();
    let mut parent_pages = 0;
    for t in frozen.tasks.iter().filter(|t| !t.zombie) {
        super::guard::check()?;
        let (pid, start) = (t.pid, t.stat.start_time);
        let vpid = pids.get(pid);
        let vmas = maps::read(pid, probes.shmem_dev)?;
        let runs = pagemap::collect(pid, &vmas, probes.zero_pfn)?;
        let tracked = parent.filter(|p| p.trackers.get(pid, start).is_some());
        let runs = match tracked {
            Some(p) => {
                let (runs, n) = p.apply(pid, start, vpid, &vmas, runs)?;
                parent_pages += n;
                runs
            }
            None => {
                let tr = make_tracker(pid, start)?;
                tr.arm(&vmas);
                trackers.insert(tr);
                runs
            }
        };
        jobs.push((pid, vpid, runs));
    }
    Ok((jobs, parent_pages))
}

/// A new tracker for frozen task `pid` (one injected call).
pub fn make_tracker(pid: i32, start: u64) -> Result<Tracker> {
    let err = |source| DumpError::TrackTask { pid, source };
    let mut inj = crate::sys::inject::Injector::new(pid).map_err(err)?;
    let t = Tracker::create(&mut inj, pid, start);
    let fin = inj.finish();
    let t = t.map_err(err)?;
    fin.map_err(err)?;
    Ok(t)
}

/// The pids the images use (the tree's own pid namespace, if it has one).
fn vpids(frozen: &Frozen) -> Result<PidMap> {
    let Some(root) = frozen.tasks.first() else {
        return Ok(PidMap::default());
    };
    let ns = |p: &str| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let own = ns(&format!("/proc/{}/ns/pid", root.pid)).ok() != ns("/proc/self/ns/pid").ok();
    if own {
        PidMap::of_tree(&frozen.tasks, pids::own_depth()?)
    } else {
        Ok(PidMap::default())
    }
}
