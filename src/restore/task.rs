//! Takes over every forked task and turns it into the dumped one: memory,
//! mm fields, threads, per-task and per-thread kernel state, credentials
//! last, then registers; finally detaches them all at once.

use super::child::Layout;
use super::error::{SetupError, TaskError};
use super::memory;
use super::plan::{Plan, Task};
use super::regs;
use super::remote::{call, Regs, Tracee};
use super::rlimits;
use super::seccomp;
use super::timers;
use super::tracee::{self, FinishedThread, SysTracee};
use super::Log;
use crate::error::Result;
use crate::image::pb;
use crate::image::typed::Mapped;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;

const NR_RT_SIGACTION: i64 = libc::SYS_rt_sigaction;
const NR_SIGALTSTACK: i64 = libc::SYS_sigaltstack;
const NR_SETITIMER: i64 = libc::SYS_setitimer;
const NR_PERSONALITY: i64 = libc::SYS_personality;
const NR_PRCTL: i64 = libc::SYS_prctl;
const NR_SET_TID_ADDRESS: i64 = libc::SYS_set_tid_address;
const NR_SET_ROBUST_LIST: i64 = libc::SYS_set_robust_list;
const NR_RSEQ: i64 = libc::SYS_rseq;
const NR_CLOSE_RANGE: i64 = libc::SYS_close_range;
const NR_SETGROUPS: i64 = libc::SYS_setgroups;
const NR_SETRESUID: i64 = libc::SYS_setresuid;
const NR_SETRESGID: i64 = libc::SYS_setresgid;
const NR_SETFSUID: i64 = libc::SYS_setfsuid;
const NR_SETFSGID: i64 = libc::SYS_setfsgid;
const NR_MMAP: i64 = libc::SYS_mmap;
const NR_MUNMAP: i64 = libc::SYS_munmap;
const NR_IOCTL: i64 = libc::SYS_ioctl;
const NR_PIDFD_OPEN: i64 = libc::SYS_pidfd_open;
const NR_DUP3: i64 = libc::SYS_dup3;
const NR_CLOSE: i64 = libc::SYS_close;
const NR_FCNTL: i64 = libc::SYS_fcntl;

/// The scratch area: small arguments in the first 32 KiB, the batch
/// runner's code at 32 KiB, its call table (1 MiB) at 64 KiB.
pub const SCRATCH_LEN: u64 = (64 << 10) + (1 << 20);

/// Tasks with fewer bytes of pages than this are rebuilt with crit's
/// thread and the task on one CPU (see [`crate::sys::affinity`]).
const PIN_BELOW: usize = 64 << 20;

/// One thread being rebuilt, with the registers it will resume with.
struct Rebuilt {
    t: SysTracee,
    regs: Regs,
    mask: u64,
    fpregs: pb::UserX86FpregsEntry,
}

/// A rebuilt thread, stopped, and its FPU state still to set.
struct Done {
    t: FinishedThread,
    fpregs: pb::UserX86FpregsEntry,
}

/// A task's pages: its own page image, and what parent dumps hold.
pub struct TaskPages {
    pub own: Option<Mapped>,
    pub parents: Vec<memory::ParentPages>,
}

impl TaskPages {
    fn size(&self) -> usize {
        self.own.as_ref().map_or(0, |m| m.bytes().len())
            + self
                .parents
                .iter()
                .map(|p| p.file.bytes().len())
                .sum::<usize>()
    }
}

/// The parent dumps' pages of the live tasks' pages marked `in_parent`,
/// by pid (absent: none). Read before anything is made, so that a broken
/// chain refuses the restore with no task forked.
pub fn parent_chains(
    plan: &Plan,
) -> Result<std::collections::HashMap<u32, Vec<memory::ParentPages>>> {
    let mut out = std::collections::HashMap::new();
    for t in plan.live() {
        let parents = memory::parent_pages(&plan.dir, t)?;
        if !parents.is_empty() {
            out.insert(t.pid, parents);
        }
    }
    Ok(out)
}

/// The page images of the live tasks, by pid (absent: no pages), with
/// the parent dumps' pages ([`parent_chains`]).
pub fn open_pages(
    plan: &Plan,
    mut chains: std::collections::HashMap<u32, Vec<memory::ParentPages>>,
) -> Result<std::collections::HashMap<u32, TaskPages>> {
    let mut out = std::collections::HashMap::new();
    for t in plan.live() {
        let path = plan.dir.join(format!("pages-{}.img", t.pages_id));
        let own = if path.exists() {
            Some(Mapped::open(&path)?)
        } else {
            None
        };
        let parents = chains.remove(&t.pid).unwrap_or_default();
        if own.is_some() || !parents.is_empty() {
            out.insert(t.pid, TaskPages { own, parents });
        }
    }
    Ok(out)
}

/// A barrier whose size is known only once the threads that wait on it
/// are started.
#[derive(Default)]
struct Gate {
    barrier: std::sync::Mutex<Option<std::sync::Arc<Barrier>>>,
    set: std::sync::Condvar,
}

impl Gate {
    fn set(&self, b: Barrier) {
        let mut g = self.barrier.lock().unwrap_or_else(|e| e.into_inner());
        *g = Some(std::sync::Arc::new(b));
        self.set.notify_all();
    }

    /// The barrier, once set.
    fn get(&self) -> std::sync::Arc<Barrier> {
        let mut g = self.barrier.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(b) = g.as_ref() {
                return b.clone();
            }
            g = self.set.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Rebuilds every live task, several at once: each of `workers` threads
/// of crit takes the next task (largest first), seizes it (ptrace belongs
/// to the thread that seized) and rebuilds it. Once all are rebuilt each
/// thread sets its tasks' FPU state, stopped tasks get their stop signal,
/// and every thread lets its tasks go: the tree resumes together. Any
/// failure stops every thread at the next task; the caller's rollback
/// kills the tree.
pub fn take_over_all(
    plan: &Plan,
    pages: &std::collections::HashMap<u32, TaskPages>,
    log: &Log,
    before_resume: &(dyn Fn() -> Result<()> + Sync),
    mem: MemOpts,
) -> Result<()> {
    let mut order: Vec<&Task> = plan.live().collect();
    order.sort_by_key(|t| std::cmp::Reverse(pages.get(&t.pid).map_or(0, TaskPages::size)));
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(order.len())
        .max(1);
    let team = Team {
        plan,
        order,
        pages,
        log,
        next: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        // Sized once the threads are started: as many as the kernel gave.
        barrier: Gate::default(),
        before_resume,
        mem,
        cpus: crate::sys::affinity::Cpus::of_crit(),
    };
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        // A thread the kernel refuses (a pids limit) leaves fewer
        // workers; the first refused stops the starting.
        let mut handles = Vec::new();
        for w in 0..workers {
            let team = &team;
            match crate::sys::thread::scoped(s, move || team.work(w)) {
                Ok(h) => handles.push(h),
                Err(e) if w == 0 => {
                    return vec![Err(crate::error::Error::io("restoring the tasks", e))]
                }
                Err(_) => break,
            }
        }
        team.barrier.set(Barrier::new(handles.len()));
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(SetupError::Panicked.into()))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// The threads that rebuild the tasks, and what they share.
struct Team<'a> {
    plan: &'a Plan,
    /// Live tasks in the order they are taken.
    order: Vec<&'a Task>,
    pages: &'a std::collections::HashMap<u32, TaskPages>,
    log: &'a Log,
    next: AtomicUsize,
    failed: AtomicBool,
    /// All threads meet here between the phases.
    barrier: Gate,
    /// Run by the leader once every task is rebuilt, before any runs.
    before_resume: &'a (dyn Fn() -> Result<()> + Sync),
    mem: MemOpts<'a>,
    /// crit's CPUs: each thread works on one (see [`crate::sys::affinity`]).
    cpus: Option<&'static crate::sys::affinity::Cpus>,
}

/// How the tasks' memory is rebuilt.
#[derive(Clone, Copy)]
pub struct MemOpts<'a> {
    /// `--lazy-pages`: where the tasks' userfaultfds go.
    pub lazy: Option<&'a super::lazy::Lazy>,
    /// This kernel's vDSO, to compare with the dumped one.
    pub vdso: &'a super::vdso::Here,
}

/// A task whose memory is rebuilt, the rest still to do.
struct Half<'a> {
    task: &'a Task,
    main: SysTracee,
    lay: Layout,
    scratch: u64,
}

impl Team<'_> {
    /// One thread's part; the leader also sends the stop signals. Every
    /// thread meets the others after each phase, and a phase runs only
    /// when no thread has failed.
    fn work(&self, w: usize) -> Result<()> {
        let leader = w == 0;
        let cpu = self.cpus.as_ref().map(|c| c.one(w));
        // Memory first, every task's; then (lazy pages) the daemon gets
        // every task's userfaultfd before anything touches that memory;
        // then the rest of each task, by the thread that seized it.
        let mut halves: Vec<Half> = Vec::new();
        let built = self.rebuild_some(&mut halves, cpu.as_ref());
        if let Some(c) = &cpu {
            crate::sys::affinity::pin(0, c);
        }
        self.sync(&built);
        let handed = self.if_ok(|| match self.mem.lazy.filter(|_| leader) {
            Some(l) => l.hand_over(self.plan),
            None => Ok(()),
        });
        self.sync(&handed);
        let mut mine: Vec<Vec<Done>> = Vec::new();
        let rebuilt = self.if_ok(|| {
            let ptys = self.plan.ptys_made.get().map_or(&[][..], |v| v);
            for h in halves {
                let pid = h.task.pid;
                let started = std::time::Instant::now();
                mine.push(rebuild_rest(h, self.log, ptys)?);
                self.log
                    .debug(format!("pid {pid}: rebuilt in {:?}", started.elapsed()));
            }
            Ok(())
        });
        self.sync(&rebuilt);
        let rebuilt = built.and(handed).and(rebuilt);
        // Registers last, once every task is rebuilt.
        let set = self.if_ok(|| {
            for th in mine.iter().flatten() {
                let mut x = th.t.get_xsave()?;
                regs::fill_xsave(&mut x, &th.fpregs);
                th.t.set_xsave(&x)?;
            }
            Ok(())
        });
        self.sync(&set);
        // Tasks that were stopped get their stop signal before they run:
        // they go straight into group stop when detached.
        let signalled = self.if_ok(|| {
            for t in self.plan.tasks.iter().filter(|_| leader) {
                if let Some(sig) = t.stop_signal() {
                    let h = self.plan.host(t.pid) as i32;
                    crate::sys::ptrace::tgkill(h, h, sig)
                        .map_err(|source| TaskError::StopAgain { pid: t.pid, source })?;
                }
            }
            Ok(())
        });
        self.sync(&signalled);
        let told = self.if_ok(|| {
            if leader {
                (self.before_resume)()?;
            }
            Ok(())
        });
        self.sync(&told);
        let detached = self.if_ok(|| {
            for th in mine.into_iter().flatten() {
                if let Some(c) = &self.cpus {
                    c.release(th.t.tid as i32);
                }
                th.t.detach()?;
            }
            Ok(())
        });
        rebuilt.and(set).and(signalled).and(told).and(detached)
    }

    /// Marks a failure, then waits for every thread.
    fn sync(&self, r: &Result<()>) {
        if r.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        self.barrier.get().wait();
    }

    /// Runs `f` unless some thread has failed.
    fn if_ok(&self, f: impl FnOnce() -> Result<()>) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        f()
    }

    /// Takes tasks and rebuilds their memory until none is left or a
    /// thread failed.
    fn rebuild_some<'t>(
        &'t self,
        mine: &mut Vec<Half<'t>>,
        cpu: Option<&nix::sched::CpuSet>,
    ) -> Result<()> {
        while !self.failed.load(Ordering::SeqCst) {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&t) = self.order.get(i) else { break };
            let started = std::time::Instant::now();
            // A small task on this thread's CPU; a big one's pages are
            // copied faster with both (the task maps and zeroes its memory
            // while crit copies).
            let size = self.pages.get(&t.pid).map_or(0, TaskPages::size);
            match (cpu, self.cpus) {
                (Some(c), _) if size < PIN_BELOW => {
                    crate::sys::affinity::pin(0, c);
                    crate::sys::affinity::pin(self.plan.host(t.pid) as i32, c);
                }
                (_, Some(all)) => all.release(0),
                _ => {}
            }
            let half = tracee::seize(self.plan.host(t.pid), t.pid).and_then(|main| {
                rebuild_memory(t, main, self.pages.get(&t.pid), self.log, self.mem)
            });
            match half {
                Ok(h) => mine.push(h),
                Err(e) => {
                    self.failed.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
            self.log
                .debug(format!("pid {}: memory in {:?}", t.pid, started.elapsed()));
        }
        Ok(())
    }
}

/// Turns the seized copy of crit into `task`'s memory and mm (scratch
/// area, mappings, pages; with lazy pages, the userfaultfd).
fn rebuild_memory<'t>(
    task: &'t Task,
    mut main: SysTracee,
    pages: Option<&TaskPages>,
    log: &Log,
    mem: MemOpts,
) -> Result<Half<'t>> {
    let lay = Layout::for_task(task);
    let (region, scratch, special) = make_scratch(&mut main, task)?;
    let kept = memory::Kept {
        scratch: (region, memory::PAGE + SCRATCH_LEN),
        special,
    };
    memory::rebuild(&mut main, task, &lay, pages, &kept, log, mem)?;
    memory::set_mm(&mut main, task, &lay, scratch)?;
    if let Some(l) = mem.lazy {
        let host = main.host();
        l.register(&mut main, task, host)?;
    }
    Ok(Half {
        task,
        main,
        lay,
        scratch,
    })
}

/// The rest of `task`, in order: per-task state, threads, timers,
/// seccomp, credentials, pending signals; returns its threads, stopped
/// with their registers set and their FPU state still to set.
fn rebuild_rest(h: Half, log: &Log, ptys_made: &[u32]) -> Result<Vec<Done>> {
    let Half {
        task,
        mut main,
        lay,
        scratch,
    } = h;
    // The VMA files and crit's pipes are no longer needed in the task.
    call(
        &mut main,
        "close_range",
        NR_CLOSE_RANGE,
        [lay.vbase as u64, u32::MAX as u64, 0, 0, 0, 0],
    )?;
    open_pidfds(&mut main, task)?;
    // Its descriptors are final: closing one of a locked file would drop
    // the POSIX locks taken on it.
    super::locks::take(&mut main, task, scratch)?;
    let lowered = task_state(&mut main, task, scratch)?;
    if let Some(c) = task
        .ctty
        .filter(|c| c.pgrp != 0 && ptys_made.contains(&c.index))
    {
        // Every group exists now; only the terminal's session may set it.
        main.write_mem(&[(scratch, &c.pgrp.to_le_bytes())])?;
        call(
            &mut main,
            "ioctl(TIOCSPGRP)",
            NR_IOCTL,
            [c.fd.into(), libc::TIOCSPGRP, scratch, 0, 0, 0],
        )?;
    }
    if !lowered.is_empty() {
        let list: Vec<String> = lowered.iter().map(|l| l.to_string()).collect();
        log.warn(format!(
            "pid {}: limits lowered to what this machine allows: {}",
            task.pid,
            list.join(", ")
        ));
    }
    let mut out = make_threads(main, task, scratch)?;
    // POSIX timers once the threads exist (one may be the target).
    timers::create(&mut out[0].t, &task.posix_timers, scratch)?;
    install_seccomp(&mut out, task, scratch)?;
    // Credentials last (they may drop what the calls above needed).
    for th in out.iter_mut() {
        let core = task
            .threads
            .iter()
            .find(|x| x.tid == th.t.tid())
            .map(|x| &x.core);
        thread_creds(&mut th.t, core, scratch)?;
    }
    // The last batch (the credentials') is done: SIGTRAP's action again.
    set_sigtrap_action(&mut out[0].t, task, scratch)?;
    // 0 or 1; 2 (suid_dumpable) cannot be set by prctl and stays as is.
    if let Some(d) = task.mm.dumpable.filter(|&d| d == 0 || d == 1) {
        call(
            &mut out[0].t,
            "prctl(PR_SET_DUMPABLE)",
            NR_PRCTL,
            [4, d as u64, 0, 0, 0, 0],
        )?;
    }
    queue_pending_signals(&mut out, task, scratch)?;
    // Timers run from here: armed as late as possible.
    timers::arm(&mut out[0].t, &task.posix_timers, scratch)?;
    out[0].t.disable_batch();
    call(
        &mut out[0].t,
        "munmap scratch",
        NR_MUNMAP,
        [scratch, SCRATCH_LEN, 0, 0, 0, 0],
    )?;
    finish_threads(out, task.pid)
}

/// The task's pidfds, opened by the task itself: every task exists now,
/// and the images name the process by the pid the task sees. pidfd_open
/// gives a close-on-exec fd, moved to its number with the fd's own flag.
/// A pidfd shared by several tasks comes back as one file each.
fn open_pidfds(t: &mut SysTracee, task: &Task) -> Result<()> {
    const O_CLOEXEC: u64 = 0o2000000;
    const F_SETFD: u64 = 2;
    for p in &task.pidfds {
        let what = format!("pidfd_open({}) for fd {}", p.target, p.fd);
        let args = [u64::from(p.target), u64::from(p.flags), 0, 0, 0, 0];
        let got = call(t, &what, NR_PIDFD_OPEN, args)?;
        let fd = u64::from(p.fd);
        if got == fd {
            let args = [fd, F_SETFD, u64::from(p.cloexec), 0, 0, 0];
            call(t, &what, NR_FCNTL, args)?;
            continue;
        }
        let flags = if p.cloexec { O_CLOEXEC } else { 0 };
        call(t, &what, NR_DUP3, [got, fd, flags, 0, 0, 0])?;
        call(t, &what, NR_CLOSE, [got, 0, 0, 0, 0, 0])?;
    }
    Ok(())
}

/// Maps the gate page and the scratch area in a hole of both the current
/// and the dumped layout, after dropping the rseq area the forked copy
/// of crit inherited. Returns (gate page, scratch area, the special
/// mappings it has).
fn make_scratch(main: &mut SysTracee, task: &Task) -> Result<(u64, u64, memory::Special)> {
    let pid = task.pid;
    main.unregister_rseq()?;
    let (region, special) = memory::choose_scratch(main.host(), task, memory::PAGE + SCRATCH_LEN)?;
    main.map_gate(region)?;
    let scratch = region + memory::PAGE;
    let got = call(
        main,
        "mmap scratch",
        NR_MMAP,
        [scratch, SCRATCH_LEN, 7, 0x22 | 0x100000, u64::MAX, 0],
    )?;
    if got != scratch {
        return Err(TaskError::ScratchMoved {
            pid,
            got,
            want: scratch,
        }
        .into());
    }
    main.enable_batch(scratch + (32 << 10), scratch + (64 << 10), 1 << 20)?;
    Ok((region, scratch, special))
}

/// Creates the other threads, then sets each thread's own state; returns
/// them, the main thread first, with the registers they resume with.
fn make_threads(mut main: SysTracee, task: &Task, scratch: u64) -> Result<Vec<Rebuilt>> {
    let mut threads: Vec<(SysTracee, &pb::CoreEntry)> = Vec::new();
    for th in task.threads.iter().skip(1) {
        let t = main.new_thread(th.tid, scratch)?;
        threads.push((t, &th.core));
    }
    threads.insert(0, (main, &task.threads[0].core));
    let mut out = Vec::new();
    for (mut t, core) in threads {
        let mask = thread_state(&mut t, task, core, scratch)?;
        let ti = core
            .thread_info
            .as_ref()
            .ok_or(TaskError::NoRegisters { tid: t.tid() })?;
        let mut r = regs::from_image(&ti.gpregs, t.tid())?;
        let mut insn = [0u8; 2];
        let readable = t.read_mem(r.ip, &mut insn).is_ok();
        regs::resume_point(&mut r, readable.then_some(insn));
        out.push(Rebuilt {
            t,
            regs: r,
            mask,
            fpregs: ti.fpregs.clone(),
        });
    }
    Ok(out)
}

/// Seccomp while still root (filters need CAP_SYS_ADMIN or
/// no_new_privs); suspended for every thread until detach.
fn install_seccomp(out: &mut [Rebuilt], task: &Task, scratch: u64) -> Result<()> {
    if task
        .threads
        .iter()
        .all(|th| th.seccomp == seccomp::Setup::None)
    {
        return Ok(());
    }
    for th in out.iter_mut() {
        th.t.suspend_seccomp()?;
    }
    for th in out.iter_mut() {
        let tid = th.t.tid();
        if let Some(x) = task.threads.iter().find(|x| x.tid == tid) {
            // The batch table is free between batches and holds the
            // largest filter.
            seccomp::install(&mut th.t, &x.seccomp, scratch + (64 << 10))?;
        }
    }
    Ok(())
}

/// A thread's credentials and no_new_privs, then its parent-death signal
/// (a change of credentials clears it).
fn thread_creds(t: &mut SysTracee, core: Option<&pb::CoreEntry>, scratch: u64) -> Result<()> {
    let tc = core.and_then(|c| c.thread_core.as_ref());
    if let Some(c) = tc.and_then(|tc| tc.creds.as_ref()) {
        creds(t, c, scratch)?;
        if c.no_new_privs == Some(1) {
            call(
                t,
                "prctl(PR_SET_NO_NEW_PRIVS)",
                NR_PRCTL,
                [38, 1, 0, 0, 0, 0],
            )?;
        }
    }
    if let Some(pd) = tc.and_then(|tc| tc.pdeath_sig) {
        call(
            t,
            "prctl(PR_SET_PDEATHSIG)",
            NR_PRCTL,
            [1, u64::from(pd), 0, 0, 0, 0],
        )?;
    }
    Ok(())
}

/// Signals pending at dump, queued again last: the injector keeps them
/// blocked until each thread resumes with its own mask.
fn queue_pending_signals(out: &mut [Rebuilt], task: &Task, scratch: u64) -> Result<()> {
    let pid = task.pid;
    if let Some(q) = task.tc().and_then(|tc| tc.signals_s.as_ref()) {
        pending_signals(&mut out[0].t, pid, q, true, scratch)?;
    }
    for th in out.iter_mut() {
        let tid = th.t.tid();
        let q = task
            .threads
            .iter()
            .find(|x| x.tid == tid)
            .and_then(|x| x.core.thread_core.as_ref())
            .and_then(|tc| tc.signals_p.as_ref());
        if let Some(q) = q {
            pending_signals(&mut th.t, pid, q, false, scratch)?;
        }
    }
    Ok(())
}

/// Puts each thread at its registers and mask; the other threads first,
/// as the main thread's finish unmaps the gate page.
fn finish_threads(out: Vec<Rebuilt>, pid: u32) -> Result<Vec<Done>> {
    let mut done = Vec::new();
    let mut rest = out.into_iter();
    let first = rest.next().ok_or(TaskError::NoThread { pid })?;
    for th in rest {
        done.push(Done {
            t: th.t.finish(&th.regs, th.mask)?,
            fpregs: th.fpregs,
        });
    }
    done.insert(
        0,
        Done {
            t: first.t.finish(&first.regs, first.mask)?,
            fpregs: first.fpregs,
        },
    );
    Ok(done)
}

/// Rlimits, signal actions, interval timers, personality. Returns the
/// limits this machine only allowed lower.
fn task_state(t: &mut dyn Tracee, task: &Task, scratch: u64) -> Result<Vec<rlimits::Lowered>> {
    let Some(tc) = task.tc() else {
        return Ok(Vec::new());
    };
    let buf = scratch + 1024;
    // Limits first: their batch, like any, ends in a trap, harmless
    // before the signal actions are set.
    let mut lowered = Vec::new();
    if let Some(rl) = &tc.rlimits {
        lowered = rlimits::restore(t, rl, buf)?;
    }
    // Every action at once: one write of the structs (32 bytes each, 2 KiB
    // for 64 signals, below the batch area at 32 KiB) and one batch of
    // calls, not a round trip per signal. The batch ends in a trap, which
    // could reset SIGTRAP's action: [`set_sigtrap_action`] sets it again
    // after the task's last batch.
    let mut sig = 0u64;
    let mut structs = Vec::with_capacity(tc.sigactions.len() * 32);
    let mut calls = Vec::with_capacity(tc.sigactions.len());
    for sa in &tc.sigactions {
        sig += 1;
        if sig == 9 || sig == 19 {
            sig += 1;
        }
        let at = buf + structs.len() as u64;
        structs.extend_from_slice(&ksigaction(sa));
        calls.push((NR_RT_SIGACTION, [sig, at, 0, 8, 0, 0]));
    }
    if !calls.is_empty() {
        t.write_mem(&[(buf, &structs)])?;
        for (k, r) in t.batch(&calls)?.into_iter().enumerate() {
            if (-4095..0).contains(&r) {
                return Err(TaskError::Injected {
                    pid: t.tid(),
                    call: format!("rt_sigaction({})", calls[k].1[0]),
                    source: std::io::Error::from_raw_os_error(-r as i32),
                }
                .into());
            }
        }
    }
    if let Some(tm) = &tc.timers {
        for (which, it) in [(0u64, &tm.real), (1, &tm.virt), (2, &tm.prof)] {
            if it.isec == 0 && it.iusec == 0 && it.vsec == 0 && it.vusec == 0 {
                continue;
            }
            let mut b = Vec::with_capacity(32);
            for v in [it.isec, it.iusec, it.vsec, it.vusec] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            t.write_mem(&[(buf, &b)])?;
            call(t, "setitimer", NR_SETITIMER, [which, buf, 0, 0, 0, 0])?;
        }
    }
    call(
        t,
        "personality",
        NR_PERSONALITY,
        [u64::from(personality(tc.personality)), 0, 0, 0, 0, 0],
    )?;
    if tc.child_subreaper == Some(true) {
        call(
            t,
            "prctl(PR_SET_CHILD_SUBREAPER)",
            NR_PRCTL,
            [36, 1, 0, 0, 0, 0],
        )?;
    }
    if let Some(adj) = tc.oom_score_adj {
        let path = std::path::PathBuf::from(format!("/proc/{}/oom_score_adj", t.host_tid()));
        std::fs::write(&path, adj.to_string()).map_err(|source| TaskError::ProcWrite {
            pid: task.pid,
            path,
            source,
        })?;
    }
    Ok(lowered)
}

/// The personality an image means. CRIU 4.2 reads /proc/PID/personality
/// (8 hex digits) with atoi, so its images hold those digits read as
/// decimal: 60000 for 0x00060000 (UNAME26 | ADDR_NO_RANDOMIZE, which gdb
/// sets). CRIU never sets it again and so never sees it; crit set such
/// a value as it was. A value with bits no personality has (8 to 16)
/// whose decimal digits, read as hex, have none is taken as CRIU's form.
fn personality(v: u32) -> u32 {
    const NONE: u32 = 0x1ff00;
    if v & NONE == 0 {
        return v;
    }
    match u32::from_str_radix(&v.to_string(), 16) {
        Ok(h) if h & NONE == 0 => h,
        _ => v,
    }
}

/// tid address, robust list, rseq, sigaltstack, parent-death signal,
/// name. Returns the signal mask the thread resumes with.
fn thread_state(t: &mut SysTracee, task: &Task, core: &pb::CoreEntry, scratch: u64) -> Result<u64> {
    let tid = t.tid();
    let buf = scratch + 2048;
    // Every call in one run of the batch (they do not depend on each
    // other); their arguments in memory first.
    let mut calls: Vec<(String, i64, [u64; 6])> = Vec::new();
    let mut mem: Vec<(u64, Vec<u8>)> = Vec::new();
    if let Some(ti) = &core.thread_info {
        calls.push((
            "set_tid_address".into(),
            NR_SET_TID_ADDRESS,
            [ti.clear_tid_addr, 0, 0, 0, 0, 0],
        ));
    }
    let th = core.thread_core.as_ref();
    if let Some(th) = th {
        // Scheduling: policy and priority, then nice.
        const NR_SCHED_SETSCHEDULER: i64 = 144;
        const NR_SETPRIORITY: i64 = 141;
        if let Some(pol) = th.sched_policy {
            let prio = th.sched_prio.unwrap_or(0);
            mem.push((buf + 512, prio.to_le_bytes().to_vec()));
            calls.push((
                "sched_setscheduler".into(),
                NR_SCHED_SETSCHEDULER,
                [0, u64::from(pol), buf + 512, 0, 0, 0],
            ));
        }
        if let Some(nice) = th.sched_nice {
            // PRIO_PROCESS of this thread (who = 0: the caller).
            calls.push((
                "setpriority".into(),
                NR_SETPRIORITY,
                [0, 0, nice as i64 as u64, 0, 0, 0],
            ));
        }
        if th.futex_rla != 0 {
            calls.push((
                "set_robust_list".into(),
                NR_SET_ROBUST_LIST,
                [th.futex_rla, u64::from(th.futex_rla_len), 0, 0, 0, 0],
            ));
        }
        if let Some(r) = th.rseq_entry.as_ref().filter(|r| r.rseq_abi_pointer != 0) {
            calls.push((
                "rseq".into(),
                NR_RSEQ,
                [
                    r.rseq_abi_pointer,
                    u64::from(r.rseq_abi_size),
                    0,
                    u64::from(r.signature),
                    0,
                    0,
                ],
            ));
        }
        let (sp, size, flags) = match &th.sas {
            Some(s) => (s.ss_sp, s.ss_size, s.ss_flags),
            None => (0, 0, 2),
        };
        // SS_DISABLE unless a stack was set; SS_ONSTACK is not settable.
        let flags = if flags & 2 != 0 || size == 0 {
            2u32
        } else {
            flags & !1
        };
        let mut b = Vec::with_capacity(24);
        b.extend_from_slice(&sp.to_le_bytes());
        b.extend_from_slice(&(flags as u64).to_le_bytes());
        b.extend_from_slice(&size.to_le_bytes());
        mem.push((buf, b));
        calls.push(("sigaltstack".into(), NR_SIGALTSTACK, [buf, 0, 0, 0, 0, 0]));
    }
    let comm = th
        .and_then(|th| th.comm.clone())
        .or_else(|| task.tc().map(|tc| tc.comm.clone()));
    if let Some(c) = comm {
        let mut b = c.into_bytes();
        b.truncate(15);
        b.push(0);
        mem.push((buf + 64, b));
        calls.push((
            format!("prctl(PR_SET_NAME) in tid {tid}"),
            NR_PRCTL,
            [15, buf + 64, 0, 0, 0, 0],
        ));
    }
    let iov: Vec<(u64, &[u8])> = mem.iter().map(|(a, b)| (*a, &b[..])).collect();
    t.write_mem(&iov)?;
    let raw: Vec<(i64, [u64; 6])> = calls.iter().map(|c| (c.1, c.2)).collect();
    for (r, (what, ..)) in t.batch(&raw)?.into_iter().zip(&calls) {
        if (-4095..0).contains(&r) {
            return Err(TaskError::Injected {
                pid: tid,
                call: what.clone(),
                source: std::io::Error::from_raw_os_error(-r as i32),
            }
            .into());
        }
    }
    let mask = th
        .and_then(|th| th.blk_sigset)
        .or_else(|| task.tc().map(|tc| tc.blk_sigset))
        .unwrap_or(0);
    Ok(mask)
}

/// Credentials (each thread has its own): groups, uids and gids (keeping
/// capabilities across the change), securebits, bounding set,
/// capabilities, ambient set; the order CRIU's restorer uses. One batch
/// (the main thread's ends in a trap: the caller sets SIGTRAP's action
/// again after, see [`rebuild_task`]).
fn creds(t: &mut dyn Tracee, c: &pb::CredsEntry, scratch: u64) -> Result<()> {
    const PR_CAPBSET_DROP: u64 = 24;
    const PR_SET_SECUREBITS: u64 = 28;
    const PR_CAP_AMBIENT: u64 = 47;
    const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;
    const NR_CAPSET: i64 = 126;
    // Groups (up to 4096, 16 KiB) and the capset structs after them, all
    // below the batch code at 32 KiB.
    let groups_at = scratch + 4096;
    let cap_at = groups_at + 4096 * 4;
    let b: Vec<u8> = c
        .groups
        .iter()
        .take(4096)
        .flat_map(|g| g.to_le_bytes())
        .collect();
    // capset: header {version 3, pid 0}, two data words {eff, prm, inh}.
    let w = |v: &[u32], k: usize| v.get(k).copied().unwrap_or(0);
    let mut cap = Vec::with_capacity(32);
    for v in [0x2008_0522u32, 0] {
        cap.extend_from_slice(&v.to_le_bytes());
    }
    for k in 0..2 {
        for v in [w(&c.cap_eff, k), w(&c.cap_prm, k), w(&c.cap_inh, k)] {
            cap.extend_from_slice(&v.to_le_bytes());
        }
    }
    if b.is_empty() {
        t.write_mem(&[(cap_at, &cap)])?;
    } else {
        t.write_mem(&[(groups_at, &b), (cap_at, &cap)])?;
    }
    // (name for errors, or None where a failure is fine, call)
    let mut calls: Vec<(Option<&str>, i64, [u64; 6])> = vec![
        (
            Some("setgroups"),
            NR_SETGROUPS,
            [c.groups.len().min(4096) as u64, groups_at, 0, 0, 0, 0],
        ),
        // Capabilities must survive the uid change (they are set below).
        (
            Some("prctl(PR_SET_SECUREBITS)"),
            NR_PRCTL,
            [PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0, 0],
        ),
        (
            Some("setresuid"),
            NR_SETRESUID,
            [c.uid.into(), c.euid.into(), c.suid.into(), 0, 0, 0],
        ),
        // setfsuid/setfsgid return the old value, never an error.
        (None, NR_SETFSUID, [c.fsuid.into(), 0, 0, 0, 0, 0]),
        (
            Some("setresgid"),
            NR_SETRESGID,
            [c.gid.into(), c.egid.into(), c.sgid.into(), 0, 0, 0],
        ),
        (None, NR_SETFSGID, [c.fsgid.into(), 0, 0, 0, 0, 0]),
        (
            Some("prctl(PR_SET_SECUREBITS)"),
            NR_PRCTL,
            [PR_SET_SECUREBITS, u64::from(c.secbits), 0, 0, 0, 0],
        ),
    ];
    let bit = |v: &[u32], n: u32| {
        v.get((n / 32) as usize)
            .is_some_and(|w| w & (1 << (n % 32)) != 0)
    };
    if !c.cap_bnd.is_empty() {
        // Only what the task has now and must lose.
        let now = crate::sys::procfs::status_field(t.host_tid() as i32, "CapBnd")
            .ok()
            .flatten()
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .unwrap_or(u64::MAX);
        for n in 0..64u32 {
            if now & (1 << n) != 0 && !bit(&c.cap_bnd, n) {
                // Capabilities this kernel lacks fail with EINVAL: fine.
                calls.push((None, NR_PRCTL, [PR_CAPBSET_DROP, u64::from(n), 0, 0, 0, 0]));
            }
        }
    }
    calls.push((Some("capset"), NR_CAPSET, [cap_at, cap_at + 8, 0, 0, 0, 0]));
    for n in 0..64u32 {
        if bit(&c.cap_amb, n) {
            calls.push((
                Some("prctl(PR_CAP_AMBIENT_RAISE)"),
                NR_PRCTL,
                [PR_CAP_AMBIENT, 2, u64::from(n), 0, 0, 0],
            ));
        }
    }
    let raw: Vec<(i64, [u64; 6])> = calls.iter().map(|&(_, nr, a)| (nr, a)).collect();
    let got = t.batch(&raw)?;
    for ((name, _, _), r) in calls.iter().zip(got) {
        if let (Some(name), true) = (name, (-4095..0).contains(&r)) {
            return Err(TaskError::Injected {
                pid: t.tid(),
                call: name.to_string(),
                source: std::io::Error::from_raw_os_error(-r as i32),
            }
            .into());
        }
    }
    Ok(())
}

/// Sets SIGTRAP's dumped action (again), for after a batch of calls,
/// whose closing trap may have reset it.
fn set_sigtrap_action(t: &mut dyn Tracee, task: &Task, scratch: u64) -> Result<()> {
    // The list skips SIGKILL (9) and SIGSTOP (19): SIGTRAP (5) is 5th.
    let Some(sa) = task.tc().and_then(|tc| tc.sigactions.get(4)) else {
        return Ok(());
    };
    let at = scratch + 1024;
    t.write_mem(&[(at, &ksigaction(sa))])?;
    call(t, "rt_sigaction(5)", NR_RT_SIGACTION, [5, at, 0, 8, 0, 0])?;
    Ok(())
}

/// A dumped action as the kernel's `struct sigaction` (x86-64):
/// handler, flags, restorer, mask.
fn ksigaction(sa: &pb::SaEntry) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (k, v) in [sa.sigaction, sa.flags, sa.restorer, sa.mask]
        .iter()
        .enumerate()
    {
        b[8 * k..8 * k + 8].copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// Signals pending at dump time, queued again with their siginfo: the
/// task's shared queue from the main thread, each thread's own from it.
fn pending_signals(
    t: &mut dyn Tracee,
    tgid: u32,
    q: &pb::SignalQueueEntry,
    shared: bool,
    scratch: u64,
) -> Result<()> {
    const NR_RT_SIGQUEUEINFO: i64 = 129;
    const NR_RT_TGSIGQUEUEINFO: i64 = 297;
    let buf = scratch + 8192;
    let tid = t.tid();
    for s in &q.signals {
        if s.siginfo.len() < 4 {
            continue;
        }
        let sig = u64::from(u32::from_le_bytes([
            s.siginfo[0],
            s.siginfo[1],
            s.siginfo[2],
            s.siginfo[3],
        ]));
        let mut info = s.siginfo.clone();
        info.resize(128, 0);
        t.write_mem(&[(buf, &info)])?;
        if shared {
            call(
                t,
                &format!("rt_sigqueueinfo({sig})"),
                NR_RT_SIGQUEUEINFO,
                [u64::from(tgid), sig, buf, 0, 0, 0],
            )?;
        } else {
            call(
                t,
                &format!("rt_tgsigqueueinfo({sig})"),
                NR_RT_TGSIGQUEUEINFO,
                [u64::from(tgid), u64::from(tid), sig, buf, 0, 0],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::personality;

    #[test]
    fn criu_personality_digits_are_read_as_hex() {
        // crit's images hold the value itself.
        assert_eq!(personality(0), 0);
        assert_eq!(personality(0x0006_0000), 0x0006_0000);
        assert_eq!(personality(0x0040_0008), 0x0040_0008);
        // CRIU 4.2's: "00060000" read by atoi, "00040000", "00400000".
        assert_eq!(personality(60000), 0x0006_0000);
        assert_eq!(personality(40000), 0x0004_0000);
        assert_eq!(personality(400000), 0x0040_0000);
        // Neither: kept as it is.
        assert_eq!(personality(0xffff_ffff), 0xffff_ffff);
    }
}
