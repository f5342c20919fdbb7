//! Everything about one task that goes into its core, mm, fs, ids,
//! fdinfo and pages images, collected while the tree is frozen; and the
//! collection of the whole tree, which refuses anything unsupported
//! before a single image is written.

use super::context::DumpCtx;
use super::core::{self as kcore, ThreadRegs};
use super::error::DumpError;
use super::fdscan::{self, Fd};
use super::files::FileTable;
use super::maps::{self, Vma};
use super::mm;
use super::pagemap::{self, Run};
use super::procfs;
use super::tracer::{self, TaskExtra};
use super::{fdtypes, locks, tree};
use crate::error::Result;
use crate::image::pb;

pub struct Collected {
    pub t: tree::Task,
    pub ids: pb::TaskKobjIdsEntry,
    pub cores: Vec<pb::CoreEntry>,
    pub mm: Option<pb::MmEntry>,
    pub runs: Vec<Run>,
    /// Pages of the private VMAs looked at.
    pub pages_scanned: u64,
    /// Pages left to the previous dump (not written since).
    pub pages_parent: u64,
    pub fdinfo: Vec<pb::FdinfoEntry>,
    /// Descriptors of this task that are new file descriptions (not shared).
    pub fds: Vec<fdscan::Fd>,
    pub fs: pb::FsEntry,
    /// True when this task shares its fd table / mm with an earlier one.
    pub shared_files: bool,
    pub shared_vm: bool,
    /// Its descriptors that may hold file locks (see [`super::locks`]).
    pub locks: Vec<locks::FdLocks>,
}

/// The whole frozen tree, collected.
pub struct Collection {
    /// The live tasks, in pstree order.
    pub tasks: Vec<Collected>,
    /// Zombies: only their place in the tree and exit status are dumped.
    pub zombies: Vec<tree::Task>,
    /// What the tree's own namespaces hold.
    pub ns: super::ns::NsState,
    /// filelocks.img's entries (`--file-locks`).
    pub locks: Vec<pb::FileLockEntry>,
}

/// Collects every task of the frozen tree, then settles the sockets
/// (peers, external ones, queues passing files).
pub fn collect_all(ctx: &mut DumpCtx) -> Result<Collection> {
    let frozen = ctx.frozen;
    tree::check_ids(&frozen.tasks)?;
    // Reading /proc/locks can take milliseconds (8.6 ms for a first read
    // here): done beside the collection, and its refusal comes first.
    let tasks = &frozen.tasks;
    let file_locks = ctx.opts.file_locks;
    let (all, system) = std::thread::scope(|s| {
        let locks = crate::sys::thread::scoped(s, move || {
            let system = locks::System::read();
            match file_locks {
                true => Ok(system),
                false => system.refuse_held(tasks).map(|_| system),
            }
        });
        let all = collect_tasks(ctx);
        let system = match locks {
            Ok(h) => h.join().unwrap_or_else(|_| {
                Err(DumpError::Call {
                    what: "reading /proc/locks",
                    source: std::io::Error::other("the reader panicked"),
                }
                .into())
            }),
            Err(source) => Err(DumpError::Call {
                what: "reading /proc/locks",
                source,
            }
            .into()),
        };
        (all, system)
    });
    let system = system?;
    let mut all = all?;
    let pids = &ctx.ns.pids;
    all.locks = locks::settle(file_locks, &mut all.tasks, &system, |p| pids.get(p))?;
    Ok(all)
}

/// Everything [`collect_all`] collects but the file locks.
fn collect_tasks(ctx: &mut DumpCtx) -> Result<Collection> {
    let frozen = ctx.frozen;
    ctx.ns = super::ns::check(ctx)?;
    // Paths seen in crit's mount namespace are the tree's: check them.
    ctx.files.check_paths = !ctx.ns.owned.has(crate::model::ns::Kind::Mnt);
    ctx.socks.net_ns_id = ctx.ns.root_ids.net_ns_id.or(ctx.root_ids.net_ns_id);
    if ctx.ns.owned.has(crate::model::ns::Kind::Net) {
        ctx.socks.net_pid = Some(ctx.ns.root);
        ctx.socks.net_ns =
            Some(
                crate::sys::ns::open(ctx.ns.root, "net").map_err(|source| DumpError::NsCall {
                    pid: ctx.ns.root,
                    ns: crate::model::ns::Kind::Net,
                    what: "open",
                    source,
                })?,
            );
    }
    ctx.log
        .step(&format!("collecting {} task(s)", frozen.tasks.len()));
    let mut all = Collection {
        tasks: Vec::new(),
        zombies: Vec::new(),
        ns: Default::default(),
        locks: Vec::new(),
    };
    for t in &frozen.tasks {
        super::guard::check()?;
        if t.zombie {
            all.zombies.push(t.clone());
            continue;
        }
        ctx.log
            .debug(&format!("pid {}: {} thread(s)", t.pid, t.threads.len()));
        let c = collect(ctx, t)?;
        all.tasks.push(c);
    }
    ctx.log.debug("tasks collected");
    all.ns = super::ns::collect(ctx, &ctx.ns)?;
    super::inflight::dump_unheld(ctx)?;
    let opts = ctx.opts;
    ctx.socks
        .finish(&mut ctx.files, &opts.ext_unix, !opts.leave_running)?;
    Ok(all)
}

/// Tasks with fewer bytes of memory than this are dumped with crit's
/// thread and the task on one CPU.
const PIN_BELOW: u64 = 64 << 20;

/// Tasks with at least this many bytes of pages have their memory freed
/// by crit too when the dump kills them (see `Frozen::reap_when_killed`).
const REAP_FROM: u64 = 64 << 20;

/// Collects the state of task `t` (all its threads are stopped).
pub fn collect(ctx: &mut DumpCtx, t: &tree::Task) -> Result<Collected> {
    let pid = t.pid;
    let kids = ctx.ids.task(pid)?;
    let status = procfs::status(pid)?;
    let shared_vm = ctx.seen_vm.contains(&kids.vm_id);
    let shared_files = ctx.seen_files.contains(&kids.files_id);
    // VmSize bounds what is accessible: a task below the threshold has
    // its maps read once, with smaps.
    let maybe_big = status.vm_size.is_none_or(|s| s >= READ_ALONE_BELOW);
    let quick = match !shared_vm && maybe_big {
        true => Some(maps::read_quick(pid, ctx.probes.shmem_dev)?),
        false => None,
    };
    let accessible: u64 = quick
        .iter()
        .flatten()
        .filter(|v| v.prot != 0)
        .map(|v| v.end - v.start)
        .sum();
    let big = accessible >= READ_ALONE_BELOW;
    let quick = quick.as_deref();
    // A big task's descriptors are listed and scanned beside the memory
    // work, so that its pages start flowing to the writers sooner.
    let (mem, mut extra, cloexec, listed, scanned) = match (big, shared_files) {
        (true, false) => {
            let ((mem, extra, cloexec), listed, fds) = beside_fd_scan(ctx, pid, |ctx, listed| {
                memory_and_extra(ctx, t, quick, shared_vm, big, listed)
            })?;
            (mem, extra, cloexec, Some(listed), Some(fds))
        }
        _ => {
            let listed = match shared_files {
                true => None,
                false => Some(fdscan::list(pid)?),
            };
            let mut at_hand = listed.clone();
            let (mem, extra, cloexec) =
                memory_and_extra(ctx, t, quick, shared_vm, big, &mut || Ok(at_hand.take()))?;
            (mem, extra, cloexec, listed, None)
        }
    };
    if extra.mdwe {
        return Err(DumpError::Mdwe { pid }.into());
    }
    ctx.log.debug(&format!(
        "pid {pid}: {} mapping(s) read, pages queued",
        mem.vmas.len()
    ));
    let (fdinfo, fds, locks) = match listed {
        None => (Vec::new(), Vec::new(), Vec::new()),
        Some(listed) => dump_fds(ctx, pid, &listed, scanned, cloexec.as_ref())?,
    };
    ctx.log
        .debug(&format!("pid {pid}: {} descriptor(s) dumped", fds.len()));
    // /proc shows timer threads by crit's pids.
    for p in &mut extra.posix_timers {
        p.notify_thread_id = p.notify_thread_id.map(|x| ctx.ns.pids.get(x));
    }
    let mm = if shared_vm {
        None
    } else {
        Some(mm_entry(&mut ctx.files, t, &status, &mem.vmas, &extra)?)
    };
    let fs = fs_entry(&mut ctx.files, pid, &status)?;
    let cores = thread_cores(ctx, t, &status, &extra)?;
    if !shared_vm {
        ctx.seen_vm.push(kids.vm_id);
    }
    if !shared_files {
        ctx.seen_files.push(kids.files_id);
    }
    Ok(Collected {
        t: t.clone(),
        ids: kids,
        cores,
        mm,
        runs: mem.runs,
        pages_scanned: mem.pages_scanned,
        pages_parent: mem.pages_parent,
        fdinfo,
        fds,
        fs,
        shared_files,
        shared_vm,
        locks,
    })
}

/// Reads the address space of `t` (unless it is shared with a task
/// already collected: `shared_vm`), then runs the injection that reads
/// what only the task can tell and, in the same run of calls, hands its
/// pages to the page writers, which copy them while the descriptors are
/// dumped (the injection's own pipes are closed again before it ends).
/// `listed` gives the task's descriptors (None: its table is another
/// task's), listed before the injection: see [`Listed`].
fn memory_and_extra(
    ctx: &mut DumpCtx,
    t: &tree::Task,
    quick: Option<&[Vma]>,
    shared_vm: bool,
    parallel: bool,
    listed: Listed,
) -> Result<(Memory, TaskExtra, Option<Cloexec>)> {
    let pid = t.pid;
    // With --track-mem -R, a task not tracked yet gets a tracker now, so
    // that a later dump can build on this one.
    let track = ctx.opts.track_mem
        && ctx.opts.leave_running
        && !shared_vm
        && ctx
            .parent
            .as_ref()
            .is_none_or(|p| p.trackers.get(pid, t.stat.start_time).is_none());
    let early = match quick {
        Some(q) if parallel && !shared_vm && !track && ctx.parent.is_none() => {
            (!ctx.pages.is_remote()).then_some(q)
        }
        _ => None,
    };
    let Some(quick) = early else {
        let mem = match shared_vm {
            true => Memory::default(),
            false => read_memory(ctx, t, quick, parallel)?,
        };
        let mut fds = Some(listed()?);
        let queue = match shared_vm {
            true => Queue::None,
            false => Queue::All(mem.runs.clone()),
        };
        let (extra, cloexec, _) = inject(
            ctx,
            t,
            &mem.vmas,
            queue,
            &mut || Ok(fds.take().flatten()),
            track,
        )?;
        return Ok((mem, extra, cloexec));
    };
    // A big task's pages go to the writers as soon as maps and the
    // pagemap tell which they are. smaps, which walks the page tables for
    // its counters (60-80 ms for 16,384 mappings here), is read
    // meanwhile; what only it shows can change the pagemap entries'
    // flags (a locked mapping's pages are not lazy), never which pages.
    let (shmem_dev, zero_pfn) = (ctx.probes.shmem_dev, ctx.probes.zero_pfn);
    std::thread::scope(|s| {
        let smaps = crate::sys::thread::scoped(s, || maps::read(pid, shmem_dev));
        // The first part of the address space is read alone, its pages
        // queued, and the rest read while the writers copy them.
        let split = split_after(quick, FIRST_PART);
        if split != u64::MAX {
            ctx.log.debug(&format!(
                "pid {pid}: pages read in two parts, the second from {split:#x}"
            ));
        }
        let queued = pagemap::collect_within(pid, quick, zero_pfn, 0, split).and_then(|first| {
            let mut rest = || pagemap::collect_within(pid, quick, zero_pfn, split, u64::MAX);
            let q = match split {
                u64::MAX => Queue::All(first),
                _ => Queue::Parts(first, &mut rest),
            };
            let (extra, cloexec, queued) = inject(ctx, t, quick, q, listed, false)?;
            let (pages_id, runs) = queued.unzip();
            Ok((runs.unwrap_or_default(), (extra, cloexec, pages_id)))
        });
        // smaps' refusals (I/O mappings) come first: the pages of such a
        // mapping cannot be queued either.
        let vmas = match smaps {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(DumpError::MemoryReaderPanicked { pid }.into()))?,
            Err(source) => {
                return Err(DumpError::Task {
                    pid,
                    what: "reading smaps",
                    source,
                }
                .into())
            }
        };
        let (queued, (extra, cloexec, pages_id)) = queued?;
        // smaps was read while the injection had its own mapping in the
        // task, the one change a frozen address space sees: the task's
        // mappings are those maps showed before it. Should that mapping
        // have joined one of the task's, smaps is read again, now that
        // the injection is over.
        let vmas = match those_of(vmas, quick) {
            Some(v) => v,
            None => {
                ctx.log
                    .debug(&format!("pid {pid}: smaps read again after the injection"));
                maps::read(pid, shmem_dev)?
            }
        };
        let runs = match same_layout(&vmas, quick) {
            true => queued,
            false => {
                ctx.log.debug(&format!(
                    "pid {pid}: smaps shows more than maps did: pagemap entries redone"
                ));
                let runs = pagemap::collect(pid, &vmas, zero_pfn)?;
                if let Some(id) = pages_id {
                    ctx.pages.retag(pid, id, &queued, &runs)?;
                }
                runs
            }
        };
        let mem = memory_of(ctx, pid, vmas, runs, 0)?;
        Ok((mem, extra, cloexec))
    })
}

/// The pages an injection queues: none (the address space is another
/// task's), all its runs, or a first part and a reader of the rest (see
/// [`PageWriter::submit_parts`](super::pages::PageWriter::submit_parts)).
enum Queue<'a> {
    None,
    All(Vec<Run>),
    Parts(Vec<Run>, &'a mut dyn FnMut() -> Result<Vec<Run>>),
}

/// Where the first part of a big address space ends when it is read in
/// two: after `first` bytes of accessible mappings, if as much again
/// follows (else `u64::MAX`, read in one).
fn split_after(vmas: &[Vma], first: u64) -> u64 {
    let mut seen = 0u64;
    let mut split = None;
    for v in vmas.iter().filter(|v| v.prot != 0) {
        let len = v.end - v.start;
        if split.is_none() && seen + len >= first {
            split = Some(v.start + (first - seen));
        }
        seen += len;
    }
    match split {
        Some(at) if seen >= 2 * first => at,
        _ => u64::MAX,
    }
}

/// Bytes of accessible memory read first, alone (see [`split_after`]):
/// about 1.5 ms of `PAGEMAP_SCAN` and one run of pipes, where all of
/// 1 GiB in 16,384 mappings took 20-30 ms before the first page moved.
const FIRST_PART: u64 = 64 << 20;

/// The injection into `t` (see [`tracer::task_extra`]), which also, in
/// this order: with `track` gives the task a write tracker; queues the
/// pages of `queue` (their pages id and runs are returned); reads the
/// close-on-exec flags of the descriptors `fds` gives where runs of calls
/// work. The descriptors are asked for after the pages are queued (the
/// listing may run beside the injection, see
/// [`fdscan::list_beside`]), but before the tracker, whose descriptor
/// stays in the task.
fn inject(
    ctx: &mut DumpCtx,
    t: &tree::Task,
    vmas: &[Vma],
    queue: Queue,
    fds: Listed,
    track: bool,
) -> Result<(TaskExtra, Option<Cloexec>, Queued)> {
    let pid = t.pid;
    let vpid = ctx.ns.pids.get(pid);
    let pages = &mut ctx.pages;
    let frozen = ctx.frozen;
    let start = t.stat.start_time;
    let trackers = &mut ctx.trackers;
    let lazy = ctx.opts.lazy_pages.is_some();
    // The injection's round trips on one CPU (see sys::affinity); a big
    // task's pages are copied faster with the task free to run anywhere.
    let pin = match &queue {
        Queue::None => true,
        Queue::All(runs) => pages_bytes(runs) < PIN_BELOW,
        Queue::Parts(..) => false,
    };
    let mut queue = Some(queue);
    let mut cloexec = None;
    let mut queued = None;
    let mut submit = |inj: &mut crate::sys::inject::Injector| -> Result<()> {
        let mut list = None;
        if track {
            list = Some(fds()?);
            let tr = super::track::Tracker::create(inj, pid, start)
                .map_err(|source| DumpError::TrackTask { pid, source })?;
            tr.arm(vmas);
            tr.note_pins(vmas);
            trackers.insert(tr);
        }
        if lazy {
            pages.keep_in_image(stack_pages(&t.threads));
        }
        // The pages first: the writers copy them while the rest is read.
        let q = match queue.take() {
            Some(Queue::All(runs)) => Some(pages.submit_parts(pid, vpid, runs, None, Some(inj))?),
            Some(Queue::Parts(first, rest)) => {
                Some(pages.submit_parts(pid, vpid, first, Some(rest), Some(inj))?)
            }
            Some(Queue::None) | None => None,
        };
        if q.as_ref()
            .is_some_and(|(_, runs)| pages_bytes(runs) >= REAP_FROM)
        {
            frozen.reap_when_killed(pid);
        }
        queued = q;
        let list = match list {
            Some(l) => l,
            None => fds()?,
        };
        if let Some(list) = list.filter(|_| inj.runs_calls()) {
            cloexec = Some(read_cloexec(inj, pid, &list)?);
        }
        Ok(())
    };
    let vdso = vmas
        .iter()
        .find(|v| v.name == "[vdso]" && v.prot & maps::PROT_EXEC != 0)
        .map(|v| (v.start, v.end));
    let pinned = pin.then(|| crate::sys::affinity::Borrowed::here(&t.threads));
    let extra = tracer::task_extra(pid, &t.threads, vdso, &mut submit);
    drop(pinned);
    Ok((extra?, cloexec, queued))
}

/// The pages id and the runs an injection queued, if any.
type Queued = Option<(u32, Vec<Run>)>;

/// Bytes of the present pages of `runs`.
fn pages_bytes(runs: &[Run]) -> u64 {
    runs.iter().map(|r| r.nr_pages * maps::PAGE_SIZE).sum()
}

/// Each descriptor's close-on-exec flag, by fd.
type Cloexec = std::collections::HashMap<i32, bool>;

/// The close-on-exec flags of descriptors `fds`, asked of the task
/// (F_GETFD, in runs of 256 calls): for those read through a copy, which
/// has a flag of its own (see [`fdscan::settle`]). A descriptor whose
/// call failed is left out.
fn read_cloexec(inj: &mut crate::sys::inject::Injector, pid: i32, fds: &[i32]) -> Result<Cloexec> {
    let calls: Vec<(i64, [u64; 6])> = fds
        .iter()
        .map(|&fd| {
            (
                libc::SYS_fcntl,
                [fd as u64, libc::F_GETFD as u64, 0, 0, 0, 0],
            )
        })
        .collect();
    let got = inj.syscalls(&calls).map_err(|source| DumpError::Task {
        pid,
        what: "injected F_GETFD",
        source,
    })?;
    Ok(fds
        .iter()
        .zip(got)
        .filter(|(_, r)| *r >= 0)
        .map(|(&fd, r)| (fd, r & libc::FD_CLOEXEC as i64 != 0))
        .collect())
}

/// The descriptors of a task, asked for right before its injection,
/// which makes descriptors of its own in the task (and closes them
/// again): those must not be taken for the task's. None when the task
/// shares another's table.
type Listed<'a> = &'a mut dyn FnMut() -> Result<Option<Vec<i32>>>;

/// Runs `f` on this thread while a helper thread lists the descriptors
/// of `pid`, hands the list to `f` (which asks for it before its
/// injection) and scans them (nothing is numbered yet). Listing 18,000
/// descriptors takes 20-35 ms, which then no longer delays the first
/// pages. The socket tables the scan consults (and loads) go with it and
/// come back. Returns what `f` did, the list and the scanned descriptors.
fn beside_fd_scan<R>(
    ctx: &mut DumpCtx,
    pid: i32,
    f: impl FnOnce(&mut DumpCtx, Listed) -> Result<R>,
) -> Result<(R, Vec<i32>, Vec<Fd>)> {
    let probes = ctx.probes;
    let made = ctx.pages.made_fds();
    let mut socks = std::mem::take(&mut ctx.socks);
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (r, scan) = std::thread::scope(|s| {
        let h = crate::sys::thread::scoped(s, || -> Result<(Vec<i32>, Vec<Fd>)> {
            let listed = fdscan::list_beside(pid, &made);
            // A failed listing sends nothing: its error comes with the join.
            if let Ok(l) = &listed {
                let _ = tx.send(l.clone());
            }
            drop(tx);
            let listed = listed?;
            let fds = fdscan::scan_listed(pid, &listed, &probes, &mut |ino| socks.known(ino))?;
            Ok((listed, fds))
        });
        let r = f(ctx, &mut || {
            rx.recv()
                .map(Some)
                .map_err(|_| DumpError::FdScanPanicked { pid }.into())
        });
        let scan = match h {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(DumpError::FdScanPanicked { pid }.into())),
            Err(source) => Err(DumpError::Task {
                pid,
                what: "scanning descriptors",
                source,
            }
            .into()),
        };
        (r, scan)
    });
    ctx.socks = socks;
    // The scan's error first: the memory work fails too when the listing
    // did, for want of the list.
    let (listed, fds) = scan?;
    let r = r?;
    ctx.log.debug(&format!(
        "pid {pid}: {} descriptor(s) scanned beside the memory work",
        fds.len()
    ));
    Ok((r, listed, fds))
}

/// A task's address space and the pages queued for copying.
#[derive(Default)]
struct Memory {
    vmas: Vec<Vma>,
    runs: Vec<Run>,
    /// Pages of the private VMAs looked at.
    pages_scanned: u64,
    /// Pages left to the previous dump.
    pages_parent: u64,
}

/// Address spaces with less accessible memory than this are read on
/// crit's own thread: for them a helper thread costs more (its start, and
/// a CPU shared with the page writer) than the page-table walks it would
/// overlap (tree of 128 tasks of 4 MiB: dump 0.35 -> 0.30 s).
const READ_ALONE_BELOW: u64 = 64 << 20;

/// The VMAs of `pid` (smaps) and the pages they hold (pagemap), given
/// what maps (`quick`) shows, if it was read; `parallel`: read side by
/// side, since each walks the page tables and the pagemap needs only what
/// maps tells. Should smaps disagree with maps on anything the pagemap
/// read used, the pagemap is read again.
fn address_space(
    pid: i32,
    quick: Option<&[Vma]>,
    shmem_dev: u64,
    zero_pfn: u64,
    parallel: bool,
) -> Result<(Vec<Vma>, Vec<Run>)> {
    let Some(quick) = quick else {
        let vmas = maps::read(pid, shmem_dev)?;
        let runs = pagemap::collect(pid, &vmas, zero_pfn)?;
        return Ok((vmas, runs));
    };
    let (vmas, runs) = match parallel {
        false => (
            maps::read(pid, shmem_dev),
            pagemap::collect(pid, quick, zero_pfn),
        ),
        true => std::thread::scope(|s| {
            let h = crate::sys::thread::scoped(s, || maps::read(pid, shmem_dev));
            let runs = pagemap::collect(pid, quick, zero_pfn);
            let vmas = match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(DumpError::MemoryReaderPanicked { pid }.into())),
                Err(source) => Err(DumpError::Task {
                    pid,
                    what: "reading smaps",
                    source,
                }
                .into()),
            };
            (vmas, runs)
        }),
    };
    let vmas = vmas?;
    let runs = match same_layout(&vmas, quick) {
        true => runs?,
        false => pagemap::collect(pid, &vmas, zero_pfn)?,
    };
    Ok((vmas, runs))
}

/// The VMAs of `vmas` (smaps) that maps showed (`quick`, same start and
/// end), or None unless every one of those is there.
fn those_of(vmas: Vec<Vma>, quick: &[Vma]) -> Option<Vec<Vma>> {
    let mut want = quick.iter().map(|q| (q.start, q.end)).peekable();
    let mut out = Vec::with_capacity(quick.len());
    for v in vmas {
        if want.peek() == Some(&(v.start, v.end)) {
            want.next();
            out.push(v);
        }
    }
    (want.next().is_none()).then_some(out)
}

/// Whether smaps' VMAs (`vmas`) agree with maps' (`quick`) on all that
/// the pagemap read took from them.
fn same_layout(vmas: &[Vma], quick: &[Vma]) -> bool {
    vmas.len() == quick.len()
        && vmas.iter().zip(quick).all(|(a, b)| {
            (a.start, a.end, a.status, a.can_be_lazy())
                == (b.start, b.end, b.status, b.can_be_lazy())
        })
}

/// Reads the address space of `t` and which pages it holds (copied
/// later, in the task's injection: see [`memory_and_extra`]), given what
/// maps shows (`quick`), if it was read; `parallel`: smaps and pagemap
/// side by side. Then the mapped files get their ids.
fn read_memory(
    ctx: &mut DumpCtx,
    t: &tree::Task,
    quick: Option<&[Vma]>,
    parallel: bool,
) -> Result<Memory> {
    let pid = t.pid;
    let (shmem_dev, zero_pfn) = (ctx.probes.shmem_dev, ctx.probes.zero_pfn);
    let (vmas, runs) = address_space(pid, quick, shmem_dev, zero_pfn, parallel)?;
    // On top of a previous dump: what was not written since is its.
    let (runs, pages_parent) = match &ctx.parent {
        Some(p) => p.apply(pid, t.stat.start_time, ctx.ns.pids.get(pid), &vmas, runs)?,
        None => (runs, 0),
    };
    memory_of(ctx, pid, vmas, runs, pages_parent)
}

/// The memory of `pid` from its VMAs (smaps) and runs of pages, once
/// its mapped files have their ids.
fn memory_of(
    ctx: &mut DumpCtx,
    pid: i32,
    mut vmas: Vec<Vma>,
    runs: Vec<Run>,
    pages_parent: u64,
) -> Result<Memory> {
    // Mapped files get the first file ids.
    mm::map_files(pid, &mut vmas, &mut ctx.files)?;
    let pages_scanned = vmas
        .iter()
        .filter(|v| v.is_private())
        .map(|v| (v.end - v.start) / maps::PAGE_SIZE)
        .sum();
    Ok(Memory {
        vmas,
        runs,
        pages_scanned,
        pages_parent,
    })
}

/// Gives each descriptor of `pid` its file id, writing the entries of
/// open files not seen before; returns the fdinfo entries and the new
/// descriptors.
fn dump_fds(
    ctx: &mut DumpCtx,
    pid: i32,
    listed: &[i32],
    scanned: Option<Vec<Fd>>,
    cloexec: Option<&Cloexec>,
) -> Result<(Vec<pb::FdinfoEntry>, Vec<Fd>, Vec<locks::FdLocks>)> {
    let mut fds = match scanned {
        Some(fds) => fds,
        None => {
            let probes = ctx.probes;
            fdscan::scan_listed(pid, listed, &probes, &mut |ino| ctx.socks.known(ino))?
        }
    };
    fdscan::settle(pid, &mut fds, cloexec, ctx.probes.shmem_dev)?;
    let mut fdinfo = Vec::new();
    let mut new_fds = Vec::new();
    let mut held = Vec::new();
    for fd in fds {
        check_reachable(ctx, pid, &fd)?;
        let (id, new) = ctx.files.fd_id(pid, &fd)?;
        held.extend(locks::of_fd(ctx.opts.file_locks, pid, &fd, id)?);
        let ty = fdtypes::file_type(ctx, pid, &fd)?;
        if new {
            fdtypes::dump_fd(ctx, pid, &fd, id)?;
            new_fds.push(fd.clone());
        }
        fdinfo.push(pb::FdinfoEntry {
            id,
            flags: if fd.cloexec { 1 } else { 0 },
            r#type: ty,
            fd: fd.fd as u32,
            xattr_security_selinux: None,
        });
    }
    Ok((fdinfo, new_fds, held))
}

/// In a tree with its own mount namespace, a file opened on a mount
/// outside it (a host log file handed in as stdout) is recorded by its
/// path: refused when that path does not exist in the tree's root,
/// where the restore would look for it (CRIU refuses such files too).
fn check_reachable(ctx: &DumpCtx, pid: i32, fd: &Fd) -> Result<()> {
    let (
        Some(mounts),
        fdscan::Kind::Path {
            path,
            deleted: false,
        },
    ) = (&ctx.ns.mounts, &fd.kind)
    else {
        return Ok(());
    };
    if mounts.contains(&fd.mnt_id) {
        return Ok(());
    }
    let inside = format!("/proc/{}/root{}", ctx.ns.root, path);
    if std::path::Path::new(&inside).exists() {
        return Ok(());
    }
    Err(DumpError::OutsideMounts {
        pid,
        fd: fd.fd,
        path: path.clone(),
        mnt_id: fd.mnt_id,
    }
    .into())
}

/// mm-PID.img's entry; the exe file gets its file id here.
fn mm_entry(
    files: &mut FileTable,
    t: &tree::Task,
    status: &procfs::Status,
    vmas: &[Vma],
    extra: &TaskExtra,
) -> Result<pb::MmEntry> {
    let pid = t.pid;
    let exe = format!("/proc/{pid}/exe");
    let err = |source| DumpError::Proc {
        pid,
        path: exe.clone().into(),
        source,
    };
    let exe_path = std::fs::read_link(&exe)
        .map_err(err)?
        .to_string_lossy()
        .into_owned();
    let st = std::fs::metadata(&exe)
        .map(|m| fdscan::Stat::of(&m))
        .map_err(err)?;
    let exe_deleted = st.nlink == 0;
    let exe_path = exe_path
        .strip_suffix(" (deleted)")
        .unwrap_or(&exe_path)
        .to_string();
    let exe_id = files.special_reg(&exe_path, &st, &exe, true, exe_deleted)?;
    let thp_disabled = status.thp_enabled.map(|e| !e).unwrap_or(false);
    mm::mm_entry(pid, &t.stat, vmas, exe_id, &extra.mm, thp_disabled)
}

/// fs-PID.img's entry: cwd and root get new ids each time, as CRIU
/// gives them; the umask is `status`'.
fn fs_entry(files: &mut FileTable, pid: i32, status: &procfs::Status) -> Result<pb::FsEntry> {
    let mut fs_ids = [0u32; 2];
    for (i, w) in ["cwd", "root"].iter().enumerate() {
        let p = format!("/proc/{pid}/{w}");
        let err = |source| DumpError::Proc {
            pid,
            path: p.clone().into(),
            source,
        };
        let path = std::fs::read_link(&p).map_err(err)?;
        let st = std::fs::metadata(&p)
            .map(|m| fdscan::Stat::of(&m))
            .map_err(err)?;
        let path = path.to_string_lossy().into_owned();
        let gone = path.ends_with(" (deleted)") && st.nlink == 0;
        let path = path
            .strip_suffix(" (deleted)")
            .filter(|_| gone)
            .unwrap_or(&path)
            .to_string();
        // A restore enters a removed cwd through its descriptor; it
        // takes the root by path.
        if gone && *w == "root" {
            let via = super::error::Via::Link(p.clone().into());
            return Err(DumpError::DeletedRoot { via, path }.into());
        }
        fs_ids[i] = files.special_reg(&path, &st, &p, false, gone)?;
    }
    Ok(pb::FsEntry {
        cwd_id: fs_ids[0],
        root_id: fs_ids[1],
        umask: Some(status.umask.ok_or(DumpError::NoUmask { pid })?),
    })
}

/// One core entry per thread of `t`; the leader's also holds the
/// task-wide state.
fn thread_cores(
    ctx: &mut DumpCtx,
    t: &tree::Task,
    status: &procfs::Status,
    extra: &TaskExtra,
) -> Result<Vec<pb::CoreEntry>> {
    let pid = t.pid;
    let limits = procfs::limits(pid)?;
    let stopped = ctx.frozen.stopped.contains(&pid);
    let mut cores = Vec::new();
    for (i, &tid) in t.threads.iter().enumerate() {
        let regs: ThreadRegs = tracer::thread_regs(tid, &extra.threads[i])?;
        let mut thread_core = thread_core(&mut ctx.seccomp, t, tid, status, extra, &regs)?;
        thread_core.cg_set = Some(ctx.cgroups.id_of(pid)?);
        let mut core = pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            thread_info: Some(kcore::thread_info(&regs)),
            thread_core: Some(thread_core),
            ..Default::default()
        };
        if tid == pid {
            core.tc = Some(task_core(t, stopped, status, extra, regs.blocked, &limits)?);
        }
        cores.push(core);
    }
    Ok(cores)
}

/// The per-thread part of thread `tid`'s core entry; its seccomp filters
/// are added to `seccomp`.
fn thread_core(
    seccomp: &mut Vec<pb::SeccompFilter>,
    t: &tree::Task,
    tid: i32,
    status: &procfs::Status,
    extra: &TaskExtra,
    regs: &ThreadRegs,
) -> Result<pb::ThreadCoreEntry> {
    let pid = t.pid;
    let tst = if tid == pid {
        status.clone()
    } else {
        procfs::thread_status(pid, tid)?
    };
    let tstat = if tid == pid {
        t.stat.clone()
    } else {
        procfs::thread_stat(pid, tid)?
    };
    let signals_p = if tst.sig_pnd != 0 {
        tracer::pending(tid, false)?
    } else {
        pb::SignalQueueEntry::default()
    };
    let seccomp_filter = if tst.seccomp == 2 {
        seccomp_filters(seccomp, pid, tid)?
    } else {
        None
    };
    let (rla, rla_len) =
        crate::sys::task::robust_list(tid).map_err(|source| DumpError::TaskThread {
            pid,
            tid,
            what: "get_robust_list",
            source,
        })?;
    let policy = crate::sys::task::sched_policy(tid).map_err(|source| DumpError::Thread {
        tid,
        what: "sched_getscheduler",
        source,
    })?;
    let prio = crate::sys::task::sched_prio(tid).unwrap_or(0);
    Ok(pb::ThreadCoreEntry {
        futex_rla: rla,
        futex_rla_len: rla_len as u32,
        sched_nice: Some(tstat.nice as i32),
        sched_policy: Some(policy),
        sched_prio: if policy == 1 || policy == 2 {
            Some(prio)
        } else {
            None
        },
        blk_sigset: if tid == pid { None } else { Some(regs.blocked) },
        sas: Some(regs.sas),
        pdeath_sig: if extra.pdeath_sig != 0 {
            Some(extra.pdeath_sig)
        } else {
            None
        },
        signals_p: Some(signals_p),
        creds: Some(kcore::creds(&tst, extra.secbits)),
        seccomp_mode: if tst.seccomp != 0 {
            Some(tst.seccomp as i32)
        } else {
            None
        },
        seccomp_filter,
        comm: Some(tstat.comm.clone()),
        blk_sigset_extended: None,
        rseq_entry: regs.rseq,
        cg_set: Some(1),
    })
}

/// Adds the seccomp filters of thread `tid` to `all`; returns the index
/// of the thread's entry (its oldest filter), if it has any.
///
/// As CRIU writes them: the kernel lists a thread's filters oldest first;
/// the image gets them newest first, each later entry's `prev` pointing
/// at the entry before it, and the thread points at the last (its oldest
/// filter); restore follows `prev` and installs in that order.
fn seccomp_filters(all: &mut Vec<pb::SeccompFilter>, pid: i32, tid: i32) -> Result<Option<u32>> {
    let chain = crate::sys::seccomp::filters(tid).map_err(|source| DumpError::TaskThread {
        pid,
        tid,
        what: "seccomp filters",
        source,
    })?;
    for (i, f) in chain.iter().rev().enumerate() {
        let prev = if i == 0 {
            None
        } else {
            Some(all.len() as u32 - 1)
        };
        all.push(pb::SeccompFilter {
            filter: f.prog.clone(),
            prev,
            flags: Some(f.flags as u32),
        });
    }
    Ok(if chain.is_empty() {
        None
    } else {
        Some(all.len() as u32 - 1)
    })
}

/// The task-wide part of the leader's core entry.
fn task_core(
    t: &tree::Task,
    stopped: bool,
    status: &procfs::Status,
    extra: &TaskExtra,
    blocked: u64,
    limits: &[(u64, u64)],
) -> Result<pb::TaskCoreEntry> {
    let pid = t.pid;
    Ok(pb::TaskCoreEntry {
        task_state: if stopped { 3 } else { 1 },
        exit_code: 0,
        personality: extra.personality,
        flags: t.stat.flags,
        blk_sigset: blocked,
        comm: t.stat.comm.clone(),
        timers: Some(pb::TaskTimersEntry {
            real: extra.itimers[0],
            virt: extra.itimers[1],
            prof: extra.itimers[2],
            posix: extra.posix_timers.clone(),
        }),
        rlimits: Some(pb::TaskRlimitsEntry {
            rlimits: limits
                .iter()
                .map(|&(cur, max)| pb::RlimitEntry { cur, max })
                .collect(),
        }),
        cg_set: None,
        signals_s: Some(if status.shd_pnd != 0 {
            tracer::pending(pid, true)?
        } else {
            pb::SignalQueueEntry::default()
        }),
        old_seccomp_mode: None,
        old_seccomp_filter: None,
        loginuid: Some(procfs::read_u32_file(pid, "loginuid")? as u32),
        oom_score_adj: Some(procfs::read_u32_file(pid, "oom_score_adj")? as i32),
        sigactions: extra.sigactions.clone(),
        child_subreaper: Some(extra.child_subreaper),
        blk_sigset_extended: None,
        stop_signo: None,
        membarrier_registration_mask: None,
    })
}

/// The page at each thread's stack pointer: with `dump --lazy-pages` it
/// stays in the images, as CRIU keeps it (its restore writes there
/// before the lazy pages come).
fn stack_pages(threads: &[i32]) -> Vec<u64> {
    threads
        .iter()
        .filter_map(|&tid| crate::sys::ptrace::get_regs(tid).ok())
        .map(|r| r.rsp & !(maps::PAGE_SIZE - 1))
        .collect()
}
