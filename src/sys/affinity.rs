//! Keeps crit and the tasks it drives on one CPU while it drives them.
//! Every injected call is a round trip between crit and the task: on two
//! CPUs each trip wakes the other one (an inter-processor interrupt,
//! dear in a VM); on one CPU it is a plain context switch. Measured on
//! these 2-CPU VMs: a 512-task restore 25% faster. Only ever a hint: a
//! thread that cannot be moved (a cpuset without that CPU) runs where it
//! may.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// crit's CPU set at the start, which the tasks a restore makes get back
/// before they run. A restore gives each of its threads a CPU of its own.
pub struct Cpus {
    all: CpuSet,
    list: Vec<usize>,
}

static CRIT: std::sync::OnceLock<Option<Cpus>> = std::sync::OnceLock::new();

impl Cpus {
    /// crit's CPU set, read on the first call: make it before any thread
    /// of crit is pinned. `None` if it cannot be read.
    pub fn of_crit() -> Option<&'static Cpus> {
        CRIT.get_or_init(|| {
            let all = sched_getaffinity(Pid::from_raw(0)).ok()?;
            let list: Vec<usize> = (0..CpuSet::count())
                .filter(|&c| all.is_set(c).unwrap_or(false))
                .collect();
            (!list.is_empty()).then_some(Cpus { all, list })
        })
        .as_ref()
    }

    /// Worker `w`'s CPU, as a set of one.
    pub fn one(&self, w: usize) -> CpuSet {
        let mut s = CpuSet::new();
        let _ = s.set(self.list[w % self.list.len()]);
        s
    }

    /// Gives thread `tid` (0: the calling thread) crit's CPU set back.
    pub fn release(&self, tid: i32) {
        let _ = sched_setaffinity(Pid::from_raw(tid), &self.all);
    }
}

/// A helper thread started by a pinned thread (page copies of a big task)
/// runs on all of crit's CPUs again.
pub fn unpin_self() {
    if let Some(Some(c)) = CRIT.get() {
        c.release(0);
    }
}

/// Like [`unpin_self`], for the `w`-th of several helpers started
/// together: it first moves to worker `w`'s CPU, then may run on all.
/// Helpers started by a pinned thread all begin on its CPU; this puts
/// them apart from their start instead of when the scheduler balances
/// (page copies of 16-32 MiB last milliseconds). No difference was
/// measured on 1 GiB restores.
pub fn unpin_self_onto(w: usize) {
    if let Some(Some(c)) = CRIT.get() {
        pin(0, &c.one(w));
        c.release(0);
    }
}

/// Puts thread `tid` (0: the calling thread) on `cpus`.
pub fn pin(tid: i32, cpus: &CpuSet) {
    let _ = sched_setaffinity(Pid::from_raw(tid), cpus);
}

/// The calling thread and some threads of a task, on the CPU the caller
/// runs on until dropped; then each has its own CPU set back exactly (a
/// dump must leave the tree as it found it).
pub struct Borrowed {
    /// (tid, its set before); tid 0 is the caller.
    saved: Vec<(i32, CpuSet)>,
}

impl Borrowed {
    pub fn here(tids: &[i32]) -> Borrowed {
        let mut saved = Vec::new();
        let mut one = CpuSet::new();
        match nix::sched::sched_getcpu() {
            Ok(cpu) if one.set(cpu).is_ok() => {}
            _ => return Borrowed { saved },
        }
        for &tid in std::iter::once(&0).chain(tids) {
            let p = Pid::from_raw(tid);
            if let Ok(before) = sched_getaffinity(p) {
                if sched_setaffinity(p, &one).is_ok() {
                    saved.push((tid, before));
                }
            }
        }
        Borrowed { saved }
    }
}

impl Drop for Borrowed {
    fn drop(&mut self) {
        for (tid, before) in self.saved.drain(..).rev() {
            let _ = sched_setaffinity(Pid::from_raw(tid), &before);
        }
    }
}

/// Moves threads `tids` off the CPU the caller runs on, where they may
/// run elsewhere (best effort). For a task about to be killed: its exit
/// then starts on another CPU, not in place of the caller.
pub fn move_off_here(tids: &[i32]) {
    let Ok(cpu) = nix::sched::sched_getcpu() else {
        return;
    };
    for &tid in tids {
        let p = Pid::from_raw(tid);
        if let Ok(mut set) = sched_getaffinity(p) {
            if set.is_set(cpu).unwrap_or(false) && set.unset(cpu).is_ok() {
                let others = (0..CpuSet::count()).any(|c| set.is_set(c).unwrap_or(false));
                if others {
                    let _ = sched_setaffinity(p, &set);
                }
            }
        }
    }
}
