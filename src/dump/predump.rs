//! `crit pre-dump`: the memory of a tree that runs on, as CRIU's
//! pre-dump writes it (pagemap-N.img and pages-N.img per task,
//! inventory.img with `pre_dump_mode`, stats-dump; `parent` when it builds
//! on an earlier one), for a later `crit dump --prev-images-dir` that
//! copies only what was written since.
//!
//! One round: freeze the tree; per task read its mappings (maps, not
//! smaps: no page-table walk while frozen; smaps only for a task with
//! shadow stacks on, which only smaps names) and either scan what was
//! written since the last round (its tracker: the scan write-protects
//! those pages again) or make a tracker (one injected call) and
//! write-protect its mappings; resume the tree. Then, while it runs,
//! read the pagemaps and copy the pages with process_vm_readv. Each page
//! is protected before it is copied, so a page written after its copy is
//! reported next time and what a later dump takes from this one is never
//! stale; a page that came or went after the scan is seen by the
//! pagemap read or by the next scan. The tree is stopped only for the
//! maps, the scans, the injected calls and the first protection.

use super::error::DumpError;
use super::freeze::Frozen;
use super::imgdir::ImgDir;
use super::incremental::{self, Parent};
use super::ns::pids::{self, PidMap};
use super::pagemap::{self, Run};
use super::pages::PageWriter;
use super::progress::Log;
use super::track::{Ranges, Tracker, Trackers};
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
        super::become_worker(p, "crit pre-dump")?;
    }
    let log = Log::new(opts, "crit pre-dump")?;
    super::precheck(opts)?;
    super::track::probe().map_err(|source| DumpError::NoTrackingSupport { source })?;
    log.step(super::track::METHOD);
    let mut dir = ImgDir::open(&opts.dir)?;
    // What may fail first: once the previous dump's trackers are taken,
    // a failure must hand them back (see incremental::on_top).
    let remote = super::connect(opts)?;
    let parent = match &opts.prev_images_dir {
        Some(p) => Some(Parent::open(&opts.dir, p, opts.pid)?),
        None => None,
    };
    let taken = parent.as_ref().map(incremental::Taken::of);
    let (r, trackers) = incremental::on_top(parent, &log, |p| {
        round(opts.pid, &log, &mut dir, p, true, remote)
    })?;
    incremental::keep(&opts.dir, trackers, taken, false, &log)?;
    dir.keep();
    log.info(&r.to_string());
    Ok(r)
}

/// One pre-dump of the tree of `pid` into `dir` (see the module docs);
/// returns the trackers it made (for the tasks `parent` does not track).
/// On failure the tree runs on and the images written are removed (with
/// `dir`). Unless `durable` (the rounds of `--pre-copy`, removed at its
/// end) nothing waits for the disk.
pub fn round(
    pid: i32,
    log: &Log,
    dir: &mut ImgDir,
    parent: Option<&Parent>,
    durable: bool,
    remote: Option<crate::pageserver::client::Client>,
) -> Result<(Round, Trackers)> {
    let t0 = Instant::now();
    let probes = Probes::read()?;
    log.step(&format!("freezing the tree of pid {pid}"));
    let frozen = Frozen::freeze(pid)?;
    let t_frozen = Instant::now();
    let mut trackers = Trackers::default();
    let collected = collect(&frozen, probes, parent, &mut trackers);
    // The tree runs on whatever happened; its memory is copied meanwhile.
    let released = frozen.release(false);
    let frozen_for = t_frozen.elapsed();
    let seen = collected?;
    released?;
    let (jobs, parent_pages, scanned) = pages(seen, probes, parent)?;
    let t_copy = Instant::now();
    log.step(&format!("copying the memory of {} task(s)", jobs.len()));
    let mut pw = PageWriter::new(&dir.dir, remote, false);
    let mut vpids = Vec::with_capacity(jobs.len());
    for (pid, vpid, runs) in jobs {
        pw.submit(pid, vpid, runs, None)?;
        vpids.push(vpid);
    }
    pw.help();
    let (done, (t_read, t_write)) = pw.finish()?;
    pw.close_remote()?;
    let copy = t_copy.elapsed();
    let mut r = Round {
        tasks: done.len(),
        parent_pages,
        frozen: frozen_for,
        copy,
        ..Default::default()
    };
    for (d, vpid) in done.into_iter().zip(vpids) {
        r.pages += d.pages;
        d.commit(dir, vpid)?;
    }
    let stats = pb::DumpStatsEntry {
        freezing_time: (t_frozen - t0).as_micros() as u32,
        frozen_time: frozen_for.as_micros() as u32,
        memdump_time: t_read.as_micros() as u32,
        memwrite_time: t_write.as_micros() as u32,
        pages_scanned: scanned,
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
    if let Some(p) = parent {
        dir.symlink("parent", &p.link)?;
    }
    if durable {
        dir.sync()?;
    }
    let me = std::process::id() as i32;
    let root_ids = super::ids::Ids::default().task(me)?;
    let lock = crate::model::netlock::Lock::new(
        crate::model::netlock::Method::Iptables,
        &super::write::run_id(),
    );
    super::write::write_inventory(dir, &root_ids, Some(PRE_DUMP_READ), true, durable, &lock)?;
    r.total = t0.elapsed();
    Ok((r, trackers))
}

/// What a round saw of one task while the tree was frozen.
struct Seen {
    pid: i32,
    start: u64,
    vpid: i32,
    vmas: Vec<maps::Vma>,
    /// What its tracker reported written since the last round; None for
    /// a task with a new tracker (copied whole).
    changed: Option<Ranges>,
}

/// Per task, while the tree is frozen: its mappings, and the pages its
/// tracker saw written, or a new tracker (into `trackers`).
fn collect(
    frozen: &Frozen,
    probes: Probes,
    parent: Option<&Parent>,
    trackers: &mut Trackers,
) -> Result<Vec<Seen>> {
    let pids = vpids(frozen)?;
    let mut out = Vec::new();
    for t in frozen.tasks.iter().filter(|t| !t.zombie) {
        super::guard::check()?;
        let (pid, start) = (t.pid, t.stat.start_time);
        // Only smaps names shadow stacks, which are not to be tracked.
        let vmas = match shadow_stacks(pid) {
            true => maps::read(pid, probes.shmem_dev)?,
            false => maps::read_quick(pid, probes.shmem_dev)?,
        };
        let kept = parent.and_then(|p| p.trackers.get(pid, start));
        // Pins are noted as the memory is protected, with the tree frozen
        // (see super::track::pinned).
        let changed = match kept {
            Some(tr) => {
                let c = tr.changed(&vmas);
                tr.note_pins(&vmas);
                Some(c)
            }
            None => {
                let tr = make_tracker(pid, start)?;
                tr.arm(&vmas);
                tr.note_pins(&vmas);
                trackers.insert(tr);
                None
            }
        };
        out.push(Seen {
            pid,
            start,
            vpid: pids.get(pid),
            vmas,
            changed,
        });
    }
    Ok(out)
}

/// Each task's pages to copy (pid, pid in the images, runs), how many
/// pages were left to the parent and how many private pages were looked
/// at (CRIU's `pages_scanned`).
type Jobs = (Vec<(i32, i32, Vec<Run>)>, u64, u64);

/// With the tree running again: reads each task's pagemap and leaves to
/// the parent what was not written. A task that exited since is left
/// out.
fn pages(seen: Vec<Seen>, probes: Probes, parent: Option<&Parent>) -> Result<Jobs> {
    let mut jobs = Vec::new();
    let (mut parent_pages, mut scanned) = (0, 0);
    for s in seen {
        super::guard::check()?;
        let runs = match pagemap::collect(s.pid, &s.vmas, probes.zero_pfn) {
            Ok(r) => r,
            // The task exited since (it may be a zombie yet).
            Err(_) if !super::procfs::still_lives(s.pid, s.start) => continue,
            Err(e) => return Err(e),
        };
        scanned += s
            .vmas
            .iter()
            .filter(|v| v.is_private())
            .map(|v| (v.end - v.start) / maps::PAGE_SIZE)
            .sum::<u64>();
        let runs = match (parent, &s.changed) {
            (Some(p), Some(changed)) => {
                let (runs, n) = p.split_changed(s.vpid, runs, changed)?;
                parent_pages += n;
                runs
            }
            _ => runs,
        };
        jobs.push((s.pid, s.vpid, runs));
    }
    Ok((jobs, parent_pages, scanned))
}

/// Whether task `pid` has CET shadow stacks on (its status names them
/// only where the kernel supports them for user space).
fn shadow_stacks(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("x86_Thread_features:") && l.contains("shstk"))
    })
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
