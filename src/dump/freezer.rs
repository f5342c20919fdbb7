//! The tree freezer: seizes and interrupts every thread of a set of
//! processes (and, by default, of all their descendants) with ptrace,
//! waits until each is stopped, and later lets them all go untouched or
//! kills them. Built on the per-thread calls of [`crate::sys::ptrace`];
//! the policy (what to wait for, what counts as gone, when to give up and
//! undo everything) lives here.
//!
//! ptrace belongs to the thread that seized: [`FrozenSet`] is `!Send`,
//! and everything done to the frozen threads must come from that thread.

use std::collections::{HashMap, HashSet, VecDeque};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::error::DumpError;
use crate::error::{Error, Result};
use crate::sys::ptrace::{self, Settled, Stop};
use crate::sys::{errno_of, pidfd, procfs};
use std::os::fd::OwnedFd;

/// One frozen thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrozenThread {
    pub tid: i32,
    /// [`Stop::Interrupt`], or [`Stop::Group`] for a task that was stopped.
    pub stop: Stop,
}

/// One frozen process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrozenTask {
    pub pid: i32,
    /// The task in the frozen set it is a child of (`None` for a root).
    pub parent: Option<i32>,
    /// A zombie: nothing to seize; `threads` is empty.
    pub zombie: bool,
    /// Its threads, the leader (tid == pid) first, then by tid.
    pub threads: Vec<FrozenThread>,
}

/// How to freeze.
#[derive(Debug, Clone)]
pub struct FreezeOptions {
    /// Also freeze all descendants (found via `/proc/*/stat` ppid).
    pub descend: bool,
    /// How long one thread may take to reach its stop before the freeze
    /// fails (default 10 s).
    pub stop_timeout: Duration,
    /// Find children in the stopped threads' children files where the
    /// kernel has them (default); false: by scanning `/proc/*/stat`, as
    /// on a kernel without CONFIG_PROC_CHILDREN.
    pub children_files: bool,
}

impl Default for FreezeOptions {
    fn default() -> Self {
        FreezeOptions {
            descend: true,
            stop_timeout: Duration::from_secs(10),
            children_files: true,
        }
    }
}

/// A set of processes every thread of which is seized and stopped by the
/// calling thread. Dropping it (or [`FrozenSet::resume`]) detaches them
/// all; [`FrozenSet::kill`] kills them instead. `!Send`: ptrace belongs to
/// the thread that froze.
#[derive(Debug)]
pub struct FrozenSet {
    tasks: Vec<FrozenTask>,
    /// Seized, interrupted, not yet seen stopped: (pid, tid).
    pending: Vec<(i32, i32)>,
    live: bool,
    _not_send: PhantomData<*const ()>,
}

/// Freezes the process `root` and all its descendants: see [`freeze`].
pub fn freeze_tree(root: i32) -> Result<FrozenSet> {
    freeze(&[root], &FreezeOptions::default())
}

/// Freezes exactly the given processes (all their threads, no
/// descendants): see [`freeze`].
pub fn freeze_tasks(pids: &[i32]) -> Result<FrozenSet> {
    freeze(
        pids,
        &FreezeOptions {
            descend: false,
            ..FreezeOptions::default()
        },
    )
}

/// Seizes and interrupts every thread of every process in `roots` (and,
/// with `opts.descend`, of all their descendants), and waits until each
/// is stopped.
///
/// Guarantees on success:
/// - every thread of every task is in [`Stop::Interrupt`] or
///   [`Stop::Group`]; the thread list of each task was re-read after all
///   its known threads had stopped and found complete, so threads created
///   during the freeze are included (a stopped task cannot create more);
/// - descendants are found in each stopped thread's
///   `/proc/PID/task/TID/children` (or, where the kernel lacks
///   CONFIG_PROC_CHILDREN, by scanning `/proc/*/stat` for their ppid),
///   each child seized after its parent is stopped, and once more after
///   the whole set is frozen (children made meanwhile by `CLONE_PARENT`
///   from a task still running, or by a task not frozen yet when /proc
///   was scanned), until nothing new appears;
/// - every thread is outside any rseq critical section
///   ([`ptrace::rseq_abort_fixup`]);
/// - a signal that was being delivered when the stop request came is
///   delivered (its handler frame set up) before the thread stops, exactly
///   as if the freeze had come a moment later; nothing is discarded;
/// - zombies are listed with `zombie: true` and no threads; threads that
///   exit during the freeze are left out; descendants that exit during the
///   freeze are listed as zombies if their (frozen) parent has not reaped
///   them, else left out.
///
/// Errors (with everything already seized detached again, so the tree runs
/// on untouched): a root that does not exist or is a thread id, not a
/// process; a root that exits during the freeze; a thread that cannot be
/// seized (e.g. already traced by someone else: EPERM); a thread-group
/// leader that exited while other threads run; a thread that does not
/// stop within `opts.stop_timeout` (such a thread, if it never stops,
/// stays traced until the calling thread exits — the kernel then detaches
/// it).
pub fn freeze(roots: &[i32], opts: &FreezeOptions) -> Result<FrozenSet> {
    let mut st = FrozenSet {
        tasks: Vec::new(),
        pending: Vec::new(),
        live: true,
        _not_send: PhantomData,
    };
    for &pid in roots {
        if st.task(pid).is_none() && !st.freeze_task(pid, None, true, opts.stop_timeout)? {
            let _ = st.release();
            return Err(DumpError::FreezeNoProcess { pid }.into());
        }
    }
    if opts.descend {
        st.freeze_descendants(opts)?;
    }
    Ok(st)
}

/// Keeps the first of several failures.
fn keep_first(first: &mut Option<Error>, e: Error) {
    if first.is_none() {
        *first = Some(e);
    }
}

/// What one round of seizing a task's threads came to.
enum Round {
    /// Every thread listed is stopped and no new one appeared.
    Stable,
    /// New threads were seized and stopped: list them again.
    Again,
    /// The process exited meanwhile (with the error of seizing its leader
    /// if that is what showed it).
    Exited(Option<std::io::Error>),
}

impl FrozenSet {
    /// The frozen processes, roots first, then descendants level by level.
    pub fn tasks(&self) -> &[FrozenTask] {
        &self.tasks
    }

    /// The frozen process `pid`.
    pub fn task(&self, pid: i32) -> Option<&FrozenTask> {
        self.tasks.iter().find(|t| t.pid == pid)
    }

    /// All frozen threads, with their process ids.
    pub fn threads(&self) -> impl Iterator<Item = (i32, &FrozenThread)> {
        self.tasks
            .iter()
            .flat_map(|t| t.threads.iter().map(move |th| (t.pid, th)))
    }

    /// Detaches every thread: the tree runs on (tasks that were in
    /// group-stop stay stopped). Returns the first failure, after trying
    /// all threads; threads that died meanwhile are not failures.
    pub fn resume(mut self) -> Result<()> {
        self.release()
    }

    /// Kills every frozen process with SIGKILL and waits until each of its
    /// threads has exited (consuming their exit notifications; a process
    /// that is a child of the caller is reaped by this too). The processes
    /// of `reap` (pid and pidfd) are killed first, each then has its
    /// memory freed by this thread while its own exit frees it too: that
    /// must start before the process lets go of its memory, a few
    /// microseconds after the signal.
    pub fn kill(mut self, reap: Vec<(i32, OwnedFd)>) -> Result<()> {
        self.live = false;
        let mut first: Option<Error> = None;
        let mut killed = Vec::with_capacity(reap.len());
        for (pid, pidfd) in reap {
            let Some(t) = self.tasks.iter().find(|t| t.pid == pid && !t.zombie) else {
                continue;
            };
            // Its exit then starts on another CPU at once, not after this
            // thread's call (a signal that fails finds the process gone).
            let tids: Vec<i32> = t.threads.iter().map(|th| th.tid).collect();
            crate::sys::affinity::move_off_here(&tids);
            if pidfd::pidfd_send_signal(&pidfd, libc::SIGKILL).is_ok() {
                // ESRCH: the exit got to its memory first; nothing lost.
                let _ = pidfd::process_mrelease(&pidfd);
                killed.push(pid);
            }
        }
        for t in self
            .tasks
            .iter()
            .filter(|t| !t.zombie && !killed.contains(&t.pid))
        {
            match kill(Pid::from_raw(t.pid), Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => keep_first(
                    &mut first,
                    DumpError::Kill {
                        pid: t.pid,
                        source: e.into(),
                    }
                    .into(),
                ),
            }
        }
        // Every thread's exit is collected as it comes, in any order: the
        // last thread of a pid namespace's init waits for every other task
        // in it (and for its own other threads) to be reaped, which for a
        // traced one means waited for by crit.
        let mut left: Vec<(i32, i32)> = self
            .tasks
            .iter()
            .flat_map(|t| t.threads.iter().map(move |th| (t.pid, th.tid)))
            .collect();
        if let Err(e) = wait_all_killed(&mut left) {
            keep_first(&mut first, e);
        }
        first.map_or(Ok(()), Err)
    }

    /// Lets every thread go (once): those still on their way to a stop
    /// once they get there, then the stopped ones.
    fn release(&mut self) -> Result<()> {
        if !self.live {
            return Ok(());
        }
        self.live = false;
        let mut first = self.release_pending().err();
        for t in &self.tasks {
            for th in &t.threads {
                if let Err(e) = ptrace::detach(th.tid) {
                    if errno_of(&e) == Some(libc::ESRCH) {
                        // Died while traced: collect its exit notification
                        // so it does not linger as a zombie tied to us.
                        ptrace::forget_gone(th.tid);
                    } else {
                        let e = DumpError::Unfreeze {
                            pid: t.pid,
                            source: e,
                        };
                        keep_first(&mut first, e.into());
                    }
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Detaches the threads seized but not seen stopped: they stop soon
    /// (the interrupt is pending); waits a little, then detaches.
    fn release_pending(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let tids: Vec<i32> = pending.iter().map(|&(_, t)| t).collect();
        let results =
            ptrace::wait_event_stops(&tids, Duration::from_secs(2)).map_err(|source| {
                DumpError::Call {
                    what: "unfreeze",
                    source,
                }
            })?;
        let mut first = None;
        for ((pid, tid), (_, w)) in pending.iter().zip(results) {
            match w {
                Settled::Stopped(_) => {
                    if let Err(e) = ptrace::detach(*tid) {
                        if errno_of(&e) != Some(libc::ESRCH) {
                            let e = DumpError::Unfreeze {
                                pid: *pid,
                                source: e,
                            };
                            keep_first(&mut first, e.into());
                        }
                    }
                }
                Settled::Gone => {}
                Settled::Timeout => keep_first(
                    &mut first,
                    DumpError::NeverStopped {
                        pid: *pid,
                        tid: *tid,
                    }
                    .into(),
                ),
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Freezes the children of frozen tasks until no new one appears.
    ///
    /// Each round walks down from the frozen tasks, a parent frozen before
    /// its children, which are read from each stopped thread's children
    /// file, or, where the kernel has none, from one scan of /proc per
    /// round (each reads every process's stat: 20-30 ms with 2,000
    /// processes). A last round that finds nothing new catches children
    /// made meanwhile by tasks not frozen yet (`CLONE_PARENT` from a task
    /// still running, or a fork before the scan reached it).
    fn freeze_descendants(&mut self, opts: &FreezeOptions) -> Result<()> {
        let timeout = opts.stop_timeout;
        let scan_err = |source| DumpError::Call {
            what: "freeze: scanning /proc for children",
            source,
        };
        loop {
            let mut scan: Option<HashMap<i32, Vec<i32>>> = None;
            let mut known: HashSet<i32> = self.tasks.iter().map(|t| t.pid).collect();
            let mut next: VecDeque<usize> = (0..self.tasks.len()).collect();
            let mut added = false;
            while let Some(i) = next.pop_front() {
                let parent = self.tasks[i].pid;
                let files = match opts.children_files {
                    true => self.children(i).map_err(scan_err)?,
                    false => None,
                };
                let kids = match (&scan, files) {
                    (_, Some(kids)) => kids,
                    (Some(m), None) => m.get(&parent).cloned().unwrap_or_default(),
                    (None, None) => {
                        let mut m: HashMap<i32, Vec<i32>> = HashMap::new();
                        for (pid, ppid) in procfs::ppid_map().map_err(scan_err)? {
                            m.entry(ppid).or_default().push(pid);
                        }
                        let kids = m.get(&parent).cloned().unwrap_or_default();
                        scan = Some(m);
                        kids
                    }
                };
                let fresh: Vec<i32> = kids.into_iter().filter(|p| !known.contains(p)).collect();
                self.seize_ahead(&fresh);
                for pid in fresh {
                    if known.insert(pid) && self.freeze_task(pid, Some(parent), false, timeout)? {
                        added = true;
                        next.push_back(self.tasks.len() - 1);
                    }
                }
            }
            if !added {
                return Ok(());
            }
        }
    }

    /// The children of the frozen task at `tasks[i]`, from its threads'
    /// children files (sorted, as a scan finds them); `None` where the
    /// kernel has no such files.
    fn children(&self, i: usize) -> std::io::Result<Option<Vec<i32>>> {
        let t = &self.tasks[i];
        let mut all = Vec::new();
        for th in &t.threads {
            match procfs::thread_children(t.pid, th.tid)? {
                Some(k) => all.extend(k),
                None => return Ok(None),
            }
        }
        all.sort_unstable();
        Ok(Some(all))
    }

    /// Seizes and interrupts the leaders of the processes `pids`, the
    /// children of one stopped task, before any of them is frozen: each
    /// then reaches its stop while the ones before it are settled, where
    /// seizing one and waiting for it in turn cost a wakeup of a sleeping
    /// task per child. Failures are left to [`FrozenSet::freeze_task`],
    /// which seizes again and says why.
    fn seize_ahead(&mut self, pids: &[i32]) {
        for &pid in pids {
            if ptrace::seize(pid).is_ok() {
                self.pending.push((pid, pid));
                let _ = ptrace::interrupt(pid);
            }
        }
    }

    /// Freezes one process. Returns Ok(false) if it vanished and
    /// `must_exist` is false. On failure everything is let go.
    fn freeze_task(
        &mut self,
        pid: i32,
        parent: Option<i32>,
        must_exist: bool,
        timeout: Duration,
    ) -> Result<bool> {
        let r = self.freeze_task_inner(pid, parent, must_exist, timeout);
        match r {
            Err(_) => {
                let _ = self.release();
            }
            // Not kept: let go of its leader if it was seized ahead.
            Ok(false) => self.let_go_pending(pid),
            Ok(true) => {}
        }
        r
    }

    /// The threads of `pid` seized but not seen stopped yet.
    fn pending_of(&self, pid: i32) -> Vec<i32> {
        self.pending
            .iter()
            .filter(|&&(p, _)| p == pid)
            .map(|&(_, t)| t)
            .collect()
    }

    /// Lets go of the threads of `pid` seized but not seen stopped yet.
    fn let_go_pending(&mut self, pid: i32) {
        let mine = self.pending_of(pid);
        self.pending.retain(|&(p, _)| p != pid);
        if let Ok(results) = ptrace::wait_event_stops(&mine, Duration::from_secs(1)) {
            for (tid, w) in results {
                if let Settled::Stopped(_) = w {
                    let _ = ptrace::detach(tid);
                }
            }
        }
    }

    fn freeze_task_inner(
        &mut self,
        pid: i32,
        parent: Option<i32>,
        must_exist: bool,
        timeout: Duration,
    ) -> Result<bool> {
        if !is_process(pid, must_exist)? {
            return Ok(false);
        }
        let idx = self.tasks.len();
        self.tasks.push(FrozenTask {
            pid,
            parent,
            zombie: false,
            threads: Vec::new(),
        });
        if matches!(procfs::thread_state(pid, pid), Ok('Z') | Ok('X')) {
            return self.task_exited(idx, pid);
        }
        let mut gone: HashSet<i32> = HashSet::new();
        loop {
            match self.freeze_round(idx, pid, &mut gone, timeout)? {
                Round::Stable => break,
                Round::Again => {}
                Round::Exited(seizing) => {
                    if must_exist {
                        return Err(DumpError::FreezeExited { pid, seizing }.into());
                    }
                    return self.task_exited(idx, pid);
                }
            }
        }
        let threads = &mut self.tasks[idx].threads;
        threads.sort_by_key(|t| (t.tid != pid, t.tid));
        Ok(true)
    }

    /// Seizes the threads of `pid` not seen yet and waits for them to stop.
    fn freeze_round(
        &mut self,
        idx: usize,
        pid: i32,
        gone: &mut HashSet<i32>,
        timeout: Duration,
    ) -> Result<Round> {
        let Some(new) = self.new_threads(idx, pid, gone)? else {
            return Ok(Round::Exited(None));
        };
        let seized_ahead = self.pending.iter().any(|&(p, _)| p == pid);
        if new.is_empty() && !seized_ahead {
            return Ok(Round::Stable);
        }
        if let Some(e) = self.seize_threads(pid, new, gone)? {
            return Ok(Round::Exited(Some(e)));
        }
        self.settle_threads(idx, pid, gone, timeout)
    }

    /// The threads /proc lists for `pid` that are neither frozen nor known
    /// to be gone; `None` when it lists none (the process is gone).
    fn new_threads(&self, idx: usize, pid: i32, gone: &HashSet<i32>) -> Result<Option<Vec<i32>>> {
        let tids = match procfs::tids(pid) {
            Ok(t) => t,
            Err(e) if is_gone(&e) => Vec::new(),
            Err(source) => return Err(DumpError::FreezeListThreads { pid, source }.into()),
        };
        if tids.is_empty() {
            return Ok(None);
        }
        let known: HashSet<i32> = self.tasks[idx]
            .threads
            .iter()
            .map(|t| t.tid)
            .chain(gone.iter().copied())
            .chain(self.pending_of(pid))
            .collect();
        Ok(Some(
            tids.into_iter().filter(|t| !known.contains(t)).collect(),
        ))
    }

    /// Seizes and interrupts the threads `new` of `pid`; threads that are
    /// exiting go to `gone`. Returns the error of seizing the leader when
    /// the leader is exiting (the whole process is).
    fn seize_threads(
        &mut self,
        pid: i32,
        new: Vec<i32>,
        gone: &mut HashSet<i32>,
    ) -> Result<Option<std::io::Error>> {
        for tid in new {
            if let Err(e) = ptrace::seize(tid) {
                if !is_exiting(pid, tid, &e) {
                    return Err(DumpError::Seize {
                        pid,
                        tracer: tracer_of(tid),
                        source: e,
                    }
                    .into());
                }
                if tid == pid {
                    return Ok(Some(e));
                }
                gone.insert(tid);
                continue;
            }
            self.pending.push((pid, tid));
            if let Err(e) = ptrace::interrupt(tid) {
                if errno_of(&e) != Some(libc::ESRCH) {
                    return Err(DumpError::Freeze { pid, source: e }.into());
                }
            }
        }
        Ok(None)
    }

    /// Waits for the seized threads of `pid` to stop; a stopped thread is
    /// moved out of any rseq critical section.
    fn settle_threads(
        &mut self,
        idx: usize,
        pid: i32,
        gone: &mut HashSet<i32>,
        timeout: Duration,
    ) -> Result<Round> {
        let batch = self.pending_of(pid);
        let wait = |tids: &[i32], t| {
            ptrace::wait_event_stops(tids, t).map_err(|source| DumpError::Freeze { pid, source })
        };
        // A thread waiting in vfork cannot stop until its child execs or
        // exits, which it most often does at once: it gets a moment for
        // that, not the whole timeout.
        let first = timeout.min(VFORK_LOOK);
        let mut results = wait(&batch, first)?;
        let timed_out = |w: &Settled| matches!(w, Settled::Timeout);
        let late: Vec<i32> = results
            .iter()
            .filter(|(_, w)| timed_out(w))
            .map(|&(tid, _)| tid)
            .collect();
        if !late.is_empty() {
            let vfork = late
                .iter()
                .find_map(|&t| vfork_child(pid, t).map(|c| (t, c)));
            let rest = timeout.saturating_sub(first);
            let more = wait(&late, vfork.map_or(rest, |_| rest.min(VFORK_GRACE)))?;
            if let Some((tid, child)) = vfork {
                if more.iter().any(|(t, w)| *t == tid && timed_out(w)) {
                    return Err(DumpError::InVfork { pid, tid, child }.into());
                }
            }
            results.retain(|(_, w)| !timed_out(w));
            results.extend(more);
        }
        let mut leader_gone = false;
        let mut late: Option<i32> = None;
        for (tid, w) in results {
            match w {
                Settled::Stopped(stop) => {
                    self.pending.retain(|&(_, t)| t != tid);
                    self.tasks[idx].threads.push(FrozenThread { tid, stop });
                    if let Ok(mut regs) = ptrace::get_regs(tid) {
                        ptrace::rseq_abort_fixup(tid, &mut regs)
                            .map_err(|source| DumpError::Freeze { pid, source })?;
                    }
                }
                Settled::Gone => {
                    self.pending.retain(|&(_, t)| t != tid);
                    leader_gone |= tid == pid;
                    gone.insert(tid);
                }
                Settled::Timeout => late = Some(tid),
            }
        }
        if leader_gone {
            // The whole process has exited (a leader's exit is reported
            // only once all its threads are gone).
            return Ok(Round::Exited(None));
        }
        if let Some(tid) = late {
            let state = procfs::thread_state(pid, tid).unwrap_or('?');
            return Err(DumpError::StopTimeout {
                pid,
                tid,
                timeout,
                state,
            }
            .into());
        }
        Ok(Round::Again)
    }

    /// The process at `tasks[idx]` is a zombie or has exited (while being
    /// frozen, for a descendant): let go of what we hold of it, and keep
    /// it as a zombie if it is one (its parent, frozen, has not reaped it).
    /// Returns whether it is kept. A leader that exited while other
    /// threads of its group still run is refused.
    fn task_exited(&mut self, idx: usize, pid: i32) -> Result<bool> {
        self.let_go_pending(pid);
        for th in std::mem::take(&mut self.tasks[idx].threads) {
            if ptrace::detach(th.tid).is_err() {
                ptrace::forget_gone(th.tid);
            }
        }
        let others = procfs::tids(pid)
            .map(|t| t.into_iter().filter(|&x| x != pid).count())
            .unwrap_or(0);
        if others > 0 {
            self.tasks.remove(idx);
            return Err(DumpError::LeaderExited { pid, others }.into());
        }
        if matches!(procfs::thread_state(pid, pid), Ok('Z')) {
            self.tasks[idx].zombie = true;
            Ok(true)
        } else {
            self.tasks.remove(idx);
            Ok(false)
        }
    }
}

impl Drop for FrozenSet {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

fn is_gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || errno_of(e) == Some(libc::ESRCH)
}

/// Whether `pid` is a process (not a thread of another) that exists.
/// Ok(false) when it is gone and `must_exist` is false.
fn is_process(pid: i32, must_exist: bool) -> Result<bool> {
    let tgid = match procfs::status_field(pid, "Tgid") {
        Ok(Some(v)) => v.parse::<i32>().unwrap_or(pid),
        Ok(None) => pid,
        Err(e) if is_gone(&e) => {
            if must_exist {
                return Err(DumpError::FreezeNoProcess { pid }.into());
            }
            return Ok(false);
        }
        Err(source) => return Err(DumpError::FreezeStatus { pid, source }.into()),
    };
    if tgid != pid {
        return Err(DumpError::FreezeThread { pid, tgid }.into());
    }
    Ok(true)
}

/// Whether seizing `tid` of `pid` failed because the thread is exiting or
/// gone.
fn is_exiting(pid: i32, tid: i32, e: &std::io::Error) -> bool {
    let errno = errno_of(e);
    let state = procfs::thread_state(pid, tid).ok();
    errno == Some(libc::ESRCH)
        || (errno == Some(libc::EPERM) && matches!(state, None | Some('Z') | Some('X')))
}

/// The pid of another tracer that holds `tid`, if any.
fn tracer_of(tid: i32) -> Option<i32> {
    procfs::status_field(tid, "TracerPid")
        .ok()
        .flatten()
        .and_then(|t| t.parse().ok())
        .filter(|&t| t != 0)
}

/// Waits for the exit of every (pid, tid) in `left`, sent SIGKILL,
/// letting each on from any stop it reports first; fails naming one
/// still there after 10 s.
fn wait_all_killed(left: &mut Vec<(i32, i32)>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut nap = Duration::from_micros(20);
    while !left.is_empty() {
        let before = left.len();
        left.retain(
            |&(_, tid)| match ptrace::wait_stop_timeout(tid, Duration::ZERO) {
                Ok(Some(s)) if s.is_exit() => {
                    ptrace::forget_gone(tid);
                    false
                }
                Ok(Some(_)) => {
                    let _ = ptrace::cont(tid, 0);
                    true
                }
                Ok(None) => true,
                Err(_) => {
                    // ECHILD: already reaped.
                    ptrace::forget_gone(tid);
                    false
                }
            },
        );
        if left.is_empty() {
            break;
        }
        if left.len() == before && Instant::now() >= deadline {
            let (pid, tid) = left[0];
            for &(_, t) in left.iter() {
                ptrace::forget_gone(t);
            }
            return Err(DumpError::KillTimeout { pid, tid }.into());
        }
        // The exit of a big task takes tens of milliseconds: notice it at
        // most about 1 ms late; with many threads left the naps grow
        // (10 us per thread, up to 5 ms), as each look at one costs a
        // few microseconds. A look that found some gone does not start
        // the naps over: the exits of a big tree trickle in for hundreds
        // of milliseconds, and looking again at once took a CPU from them
        // (2,048 tasks: release 0.28 -> 0.20 s).
        std::thread::sleep(nap);
        let cap =
            Duration::from_micros(1000 + 10 * left.len() as u64).min(Duration::from_millis(5));
        nap = (nap * 2).min(cap);
    }
    Ok(())
}

/// How long a thread may take to stop before crit looks whether it waits
/// in vfork, and how much longer it then waits for the child to exec.
const VFORK_LOOK: Duration = Duration::from_millis(100);
const VFORK_GRACE: Duration = Duration::from_secs(1);

/// The child thread `tid` of `pid` waits for in vfork, if it does: it
/// sleeps uninterruptibly and a child of its shares its address space
/// (a thread of `pid` would be no child of `tid`'s).
fn vfork_child(pid: i32, tid: i32) -> Option<i32> {
    if procfs::thread_state(pid, tid).ok()? != 'D' {
        return None;
    }
    let children = procfs::thread_children(pid, tid).ok()??;
    children.into_iter().find(|&c| {
        crate::sys::kcmp::same(pid, c, crate::sys::kcmp::Kind::Vm, 0, 0).unwrap_or(false)
    })
}
