//! `crit dump`: freeze a process tree, write its state as CRIU 4.2
//! images, then kill it (or let it run on with `--leave-running`).
//!
//! Flow: check options and the images directory; freeze every thread of
//! every task ([`freeze`], [`freezer`]); collect everything ([`task`];
//! read-only: /proc, ptrace, sock_diag, peeks at queues) and refuse
//! anything unsupported before a single image is written; write the
//! images ([`write`], inventory last); release the tree. One
//! [`context::DumpCtx`] carries the state of the dump through the steps.
//! Any failure releases the tree untouched and removes the images written
//! so far.
//!
//! The dump runs in a worker process ([`guard`]) so that killing
//! `crit dump` never leaves the tree frozen; task memory goes into pipes
//! from inside the task ([`vmsplice`]) and a writer thread ([`pages`])
//! splices it into the pages files while the next task is collected.
//!
//! What is dumped, what is refused and why, and the benchmark:
//! docs/dump.md (the one list of the engine's limits).

pub mod cgroups;
pub mod context;
pub mod core;
pub mod error;
pub mod fdscan;
pub mod fdtypes;
pub mod files;
pub mod flatten;
pub mod freeze;
pub mod freezer;
pub mod guard;
pub mod ids;
pub mod imgdir;
pub mod incremental;
pub mod inflight;
pub mod kobjs;
pub mod lazyserve;
pub mod locks;
pub mod maps;
pub mod mm;
pub mod ns;
pub mod opts;
pub mod packetsk;
pub mod pagemap;
pub mod pages;
pub mod pipes;
pub mod precopy;
pub mod predump;
pub mod procfs;
pub mod progress;
pub mod ptyqueue;
pub mod sockets;
pub mod task;
pub mod tcp;
pub mod tracer;
pub mod track;
pub mod tree;
pub mod tty;
pub mod vdso;
pub mod vmsplice;
pub mod write;

pub use files::GHOST_LIMIT;
pub use opts::{parse_size, DumpOpts, ExtUnix, LazyServe, NsOpts, PageServer, Summary};

use crate::action::{Notifier, Script};
use crate::error::Result;
use context::{DumpCtx, Probes, Timing};
use error::DumpError;
use std::time::Instant;

/// Dumps the tree of `opts.pid` into `opts.dir` (in rounds with
/// `--pre-copy`, on top of `--prev-images-dir` if given). With
/// `--track-mem -R` the write trackers then go to a keeper, for a later
/// dump on top of this one.
pub fn dump(opts: &DumpOpts) -> Result<Summary> {
    if let Some(p) = opts.worker_of {
        become_worker(p, "crit dump")?;
    }
    let log = progress::Log::new(opts, "crit dump")?;
    precheck(opts)?;
    crate::sys::nofile::raise();
    let notify = Notifier::new(&opts.dir, opts.notify_fd, opts.action_scripts.clone(), None)
        .map_err(|source| DumpError::Call {
            what: "--notify-fd",
            source,
        })?;
    if opts.pre_copy {
        return precopy::dump(opts, &log, &notify);
    }
    let mut dir = imgdir::ImgDir::open(&opts.dir)?;
    if opts.prev_images_dir.is_some() || opts.track_mem {
        log.step(track::METHOD);
    }
    // What may fail first: once the previous dump's trackers are taken,
    // a failure must hand them back (see incremental::on_top).
    let remote = connect(opts)?;
    let parent = match &opts.prev_images_dir {
        Some(p) => Some(incremental::Parent::open(&opts.dir, p, opts.pid)?),
        None => None,
    };
    let taken = parent.as_ref().map(incremental::Taken::of);
    let (s, trackers) = incremental::on_top(parent, &log, |p| {
        dump_into(opts, &log, &mut dir, p, &notify, remote)
    })?;
    if opts.track_mem && opts.leave_running {
        incremental::keep(&opts.dir, trackers, taken, false, &log)?;
    }
    dir.keep();
    Ok(s)
}

/// The page server connection of `--page-server`, made before anything
/// is frozen.
pub fn connect(opts: &DumpOpts) -> Result<Option<crate::pageserver::client::Client>> {
    opts.page_server
        .as_ref()
        .map(|ps| crate::pageserver::client::Client::connect(&ps.address, ps.port, ps.tls.as_ref()))
        .transpose()
}

/// The dump itself, into `dir` (kept by the caller), on top of `parent`,
/// pages to the page server `remote` if given; returns the trackers it
/// made (with `--track-mem -R`, for the tasks the parent does not
/// track). The action points (crate::action) go to `notify`.
pub fn dump_into(
    opts: &DumpOpts,
    log: &progress::Log,
    dir: &mut imgdir::ImgDir,
    parent: Option<&incremental::Parent>,
    notify: &Notifier,
    remote: Option<crate::pageserver::client::Client>,
) -> Result<(Summary, track::Trackers)> {
    let t0 = Instant::now();
    let probes = Probes::read()?;
    let lazy = opts
        .lazy_pages
        .as_ref()
        .map(lazyserve::listen)
        .transpose()?;
    let serving = lazy.is_some();
    notify.tell(Script::PreDump, None)?;
    log.step(&format!("freezing the tree of pid {}", opts.pid));
    let t_freeze = Instant::now();
    let frozen = freeze::Frozen::freeze(opts.pid)?;
    let t_frozen = Instant::now();
    let timing = Timing {
        freezing: t_frozen - t_freeze,
        frozen_at: t_frozen,
    };
    // Connections in repair mode outlive the context: they are let go or
    // closed only once the tree is.
    let lock = crate::model::netlock::Lock::new(opts.network_lock, &write::run_id());
    let tcp = std::sync::Arc::new(tcp::TcpRepair::new(lock));
    let requeue = std::sync::Arc::new(ptyqueue::Requeue::default());
    let mut trackers = track::Trackers::default();
    let mut last = None;
    let mut left_lazy = Vec::new();
    let mut own_net = false;
    let res = DumpCtx::new(opts, log, &frozen, dir, probes, timing, remote)
        .and_then(|mut ctx| {
            ctx.socks.repair = Some(tcp.clone());
            ctx.requeue = requeue.clone();
            ctx.parent = parent;
            own_net = ctx.ns.owned.has(crate::model::ns::Kind::Net);
            if own_net {
                notify.tell(Script::NetworkLock, None)?;
            }
            let s = run(&mut ctx)?;
            left_lazy = ctx.pages.take_lazy();
            last = ctx.last.take();
            trackers = std::mem::take(&mut ctx.trackers);
            Ok(s)
        })
        .and_then(|s| guard::check().map(|_| s))
        .and_then(|mut s| {
            // Everything is on disk before the caller hears post-dump
            // or is told the lazy pages are served (it may copy the
            // images away then).
            if notify.is_active() || serving {
                if let Some(l) = last.take() {
                    l.write(dir)?;
                    s.bytes = dir.bytes;
                }
            }
            notify.tell(Script::PostDump, None)?;
            Ok(s)
        })
        .and_then(|s| match lazy {
            Some(l) => {
                let left = std::mem::take(&mut left_lazy);
                lazyserve::serve(l, left, opts.status_fd, notify, log).map(|_| s)
            }
            None => Ok(s),
        });
    let net_unlock = || {
        if let Some(e) = own_net
            .then(|| notify.tell_only(Script::NetworkUnlock, None))
            .flatten()
        {
            log.info(&e.to_string());
        }
    };
    let mut s = match res {
        Ok(s) => s,
        Err(e) => {
            let e = match frozen.first_died() {
                Some(pid) => DumpError::DiedDuring {
                    pid,
                    then: e.to_string(),
                }
                .into(),
                None => e,
            };
            log.info(&format!("dump failed, resuming the tree: {e}"));
            for w in requeue.put_back() {
                log.warn(&w);
            }
            net_unlock();
            for w in tcp.resume() {
                log.info(&w);
            }
            let _ = frozen.release(false);
            return Err(e);
        }
    };
    if opts.leave_running {
        for w in requeue.put_back() {
            log.warn(&w);
        }
        net_unlock();
        for w in tcp.resume() {
            log.info(&w);
        }
    }
    log.step(if opts.leave_running {
        "resuming the tree"
    } else {
        "killing the tree"
    });
    // Frozen time ends when the tree is let go: resumed, or sent SIGKILL
    // (waiting for killed tasks to finish exiting is counted apart, as
    // `release`).
    s.frozen = t_frozen.elapsed();
    s.session_outside = frozen
        .tasks
        .first()
        .filter(|r| r.sid != r.pid && !opts.shell_job)
        .map(|r| (r.pid, r.sid));
    let t_release = Instant::now();
    frozen.release(!opts.leave_running)?;
    // The tree is gone: closed in repair mode, its connections end
    // without a packet and stay locked for the restore.
    tcp.close_silently();
    if let Some(l) = last {
        l.write(dir)?;
        s.bytes = dir.bytes;
    }
    s.release = t_release.elapsed();
    s.total = t0.elapsed();
    log.info(&s.to_string());
    Ok((s, trackers))
}

/// This process is the worker of `w.parent`, which runs `command`
/// ("crit dump", "crit pre-dump"; see [`guard`]).
fn become_worker(w: guard::WorkerOf, command: &'static str) -> Result<()> {
    guard::set_parent(w, command);
    // Ctrl-C or a TERM reaches the worker only through `crit dump`, which
    // passes it on: the worker finishes its step, then lets the tree go
    // (see guard).
    crate::sys::sigign::ignore_stop_signals().map_err(|source| {
        DumpError::Call {
            what: "ignoring terminal signals",
            source,
        }
        .into()
    })
}

/// Collects the frozen tree (refusing anything unsupported before a
/// single image is written), then writes its images.
fn run(ctx: &mut DumpCtx) -> Result<Summary> {
    let ticker = progress::Ticker::start(ctx.log, ctx.pages.counters());
    let all = task::collect_all(ctx)?;
    // Destructive, so last: nothing can be refused after it.
    let requeue = ctx.requeue.clone();
    ptyqueue::read_out(ctx, &requeue)?;
    // Nothing was refused: write.
    ctx.log.step("writing images");
    let log = ctx.log;
    write::images(ctx, all, |mib, spliced| {
        ticker.stop();
        log.debug(&format!(
            "pages copied: {mib} MiB, {spliced} MiB of it through pipes"
        ));
    })
}

/// Whether `pid` is a kernel thread (PF_KTHREAD in /proc/PID/stat's
/// flags, the 9th field).
fn is_kernel_thread(pid: i32) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            rest.split_whitespace().nth(6)?.parse::<u64>().ok()
        })
        .is_some_and(|flags| flags & PF_KTHREAD != 0)
}

pub(crate) fn precheck(opts: &DumpOpts) -> Result<()> {
    let pid = opts.pid;
    if pid <= 1 {
        return Err(DumpError::InitOrInvalid { pid }.into());
    }
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(DumpError::NoSuchProcess { pid }.into());
    }
    if is_kernel_thread(pid) {
        return Err(DumpError::KernelThread { pid }.into());
    }
    // crit itself must not be in the tree.
    let me = std::process::id() as i32;
    let mut p = me;
    while p > 1 {
        if p == pid {
            return Err(DumpError::SelfOrAncestor { pid }.into());
        }
        p = match procfs::stat(p) {
            Ok(s) => s.ppid,
            Err(_) => break,
        };
    }
    if let Some(cg) = &opts.freeze_cgroup {
        check_freeze_cgroup(cg, pid)?;
    }
    if opts.page_server.is_some() && opts.pre_copy {
        return Err(DumpError::Unsupported {
            what: "--pre-copy with --page-server (its rounds are local images)",
        }
        .into());
    }
    Ok(())
}

/// `--freeze-cgroup PATH` (runc asks for its freezer cgroup): crit
/// freezes by seizing every thread of the tree with ptrace, catching the
/// forks that race it, which is what the freezer is for; the cgroup must
/// hold the tree's root, or the caller meant another tree.
fn check_freeze_cgroup(cg: &std::path::Path, pid: i32) -> Result<()> {
    let procs = cg.join("cgroup.procs");
    let text = std::fs::read_to_string(&procs).map_err(|source| DumpError::File {
        path: procs.clone(),
        source,
    })?;
    if !text.lines().any(|l| l.trim() == pid.to_string()) {
        return Err(DumpError::NotInFreezeCgroup {
            pid,
            path: cg.to_path_buf(),
        }
        .into());
    }
    Ok(())
}
