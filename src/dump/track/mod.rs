//! Which pages a task wrote since the last dump: the tracker behind
//! `crit pre-dump`, `dump --prev-images-dir` and `dump --pre-copy`.
//!
//! CRIU uses soft-dirty bits, which this kernel (and arm64) lacks. crit
//! uses userfaultfd write-protection in async mode with `PAGEMAP_SCAN`
//! (Linux 6.7+, see [`crate::sys::uffd`]): a userfaultfd made inside each
//! task (one injected call while the tree is frozen), held by crit only;
//! every private mapping registered and write-protected; a write just
//! drops the page's protection, which the task never notices; each scan
//! reports the written pages and protects them again in one walk.
//!
//! What breaks tracking only makes crit copy more, never less:
//! - a mapping that cannot be registered (the task's own userfaultfd
//!   holds it: EBUSY; or a kind the kernel refuses) is copied whole each
//!   time;
//! - a mapping made, replaced or moved since the last scan is not
//!   registered with crit's userfaultfd (mremap drops the registration and
//!   the protection bits), so the scan refuses it (`PM_SCAN_CHECK_WPASYNC`)
//!   and it is copied whole, then registered;
//! - a task that exec'd has a new address space: its tracker is stale
//!   (the userfaultfd's address space is gone: ESRCH), so the task is
//!   copied whole and a new tracker made, as for a task forked since,
//!   which has none;
//! - a pid now used by another task (start time differs) has none either.
//!
//! What no page table shows: the kernel writing through pages pinned
//! before they were write-protected (io_uring's registered buffers). A
//! task that holds an io_uring (a descriptor or a ring mapping) when its
//! memory is protected is copied whole the next time ([`pinned`]).
//!
//! The one thing the task can notice: while crit tracks a mapping, the
//! task's own userfaultfd cannot register it (EBUSY). Registrations end
//! when crit's descriptor closes: at the end of the dump, or when crit
//! dies; between `pre-dump` and `dump` a small keeper process holds them
//! ([`keep`]).

pub mod keep;

use super::maps::{Vma, VMA_AREA_SHSTK, VMA_AREA_VDSO, VMA_AREA_VVAR};
use crate::sys::inject::Injector;
use crate::sys::uffd::{self, Uffd};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// How writes are tracked, as `-v` says it.
pub const METHOD: &str =
    "write tracking: userfaultfd async write-protect + PAGEMAP_SCAN (no soft-dirty)";

/// O_CLOEXEC | O_NONBLOCK, for the injected `userfaultfd`.
const UFFD_FLAGS: u64 = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;

/// The write tracker of one task's address space.
pub struct Tracker {
    pub pid: i32,
    /// The task's start time: a pid reused by another task is not this.
    pub start: u64,
    uffd: Uffd,
    pagemap: File,
    /// The next scan reports every page: the task held an io_uring when
    /// its memory was last protected (writes the kernel makes through
    /// pinned pages are not seen), or a failed command lost what its scan
    /// found (see [`Tracker::scanned`]).
    whole: AtomicBool,
    /// Scanned by this process (see [`Tracker::scanned`]).
    scanned: AtomicBool,
}

/// Address ranges, sorted, not overlapping.
pub type Ranges = Vec<(u64, u64)>;

fn tracked(v: &Vma) -> bool {
    // vDSO and vvar belong to the kernel: copied whole (vvar never).
    // Mappings the task cannot read (guard pages) are left alone: no
    // markers there that pagemap would show without PFNs as swapped
    // pages (see super::pagemap). Shadow stacks are not write-protected
    // behind the CPU's back: copied whole.
    v.is_private()
        && !v.is(VMA_AREA_VDSO)
        && !v.is(VMA_AREA_VVAR)
        && !v.is(VMA_AREA_SHSTK)
        && v.prot & libc::PROT_READ as u32 != 0
}

impl Tracker {
    /// Makes a tracker for `pid` through `inj`, an injector into one of
    /// its stopped threads: the task makes a userfaultfd, crit copies it
    /// and the task closes its own, so the task's descriptors end as they
    /// were.
    pub fn create(inj: &mut Injector, pid: i32, start: u64) -> io::Result<Tracker> {
        let r = inj.syscall(
            libc::SYS_userfaultfd,
            [UFFD_FLAGS | uffd::USER_MODE_ONLY, 0, 0, 0, 0, 0],
        )?;
        let fd = inj.check("userfaultfd", r)? as i32;
        let copy = crate::sys::pidfd::getfd(pid, fd);
        let r = inj.syscall(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
        inj.check("close of the userfaultfd", r)?;
        let u = Uffd::new(copy?)?;
        Self::with(pid, start, u)
    }

    /// A tracker handed over by another crit process (see [`keep`]).
    pub fn adopt(pid: i32, start: u64, fd: OwnedFd) -> io::Result<Tracker> {
        Self::with(pid, start, Uffd::adopt(fd))
    }

    fn with(pid: i32, start: u64, uffd: Uffd) -> io::Result<Tracker> {
        let pagemap = File::open(format!("/proc/{pid}/pagemap"))?;
        Ok(Tracker {
            pid,
            start,
            uffd,
            pagemap,
            whole: AtomicBool::new(false),
            scanned: AtomicBool::new(false),
        })
    }

    /// Whether the task has left the address space this tracker tracks
    /// (it exec'd). Such a tracker only ever reports everything; a new
    /// one is made instead.
    pub fn is_stale(&self) -> bool {
        self.uffd.mm_gone()
    }

    /// Whether the next [`Tracker::changed`] reports every page.
    pub fn is_whole(&self) -> bool {
        self.whole.load(Ordering::Relaxed)
    }

    /// Records whether the task holds an io_uring now, as its memory is
    /// protected (with the tree frozen): see [`pinned`].
    pub fn note_pins(&self, vmas: &[Vma]) {
        self.set_whole(pinned(self.pid, vmas));
    }

    pub fn set_whole(&self, w: bool) {
        self.whole.store(w, Ordering::Relaxed);
    }

    /// Whether this process scanned it ([`Tracker::changed`]). The scan
    /// protected the written pages again: if the images that copied them
    /// are not kept, only a whole copy next time is right.
    pub fn scanned(&self) -> bool {
        self.scanned.load(Ordering::Relaxed)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.uffd.fd()
    }

    /// Starts tracking `vmas`: registers and write-protects each private
    /// mapping. Returns what is not tracked (copied whole next time too).
    pub fn arm(&self, vmas: &[Vma]) -> Ranges {
        let mut out = Ranges::new();
        for v in vmas.iter().filter(|v| v.is_private()) {
            let len = v.end - v.start;
            let ok = tracked(v)
                && self.uffd.register_wp(v.start, len).is_ok()
                && self.uffd.protect(v.start, len).is_ok();
            if !ok {
                push(&mut out, v.start, v.end);
            }
        }
        out
    }

    /// The parts of the private mappings of `vmas` to copy afresh:
    /// written since the last [`Tracker::arm`] or [`Tracker::changed`],
    /// or not tracked. Protects them again (a new mapping is registered
    /// now, so the next call sees its writes).
    pub fn changed(&self, vmas: &[Vma]) -> Ranges {
        self.scanned.store(true, Ordering::Relaxed);
        let whole = self.is_whole();
        let mut out = Ranges::new();
        for v in vmas.iter().filter(|v| v.is_private()) {
            let len = v.end - v.start;
            if !tracked(v) || self.uffd.register_wp(v.start, len).is_err() {
                push(&mut out, v.start, v.end);
                continue;
            }
            match uffd::scan_written(&self.pagemap, v.start, v.end) {
                Ok(_) if whole => push(&mut out, v.start, v.end),
                Ok(w) => w.into_iter().for_each(|(s, e)| push(&mut out, s, e)),
                Err(_) => push(&mut out, v.start, v.end),
            }
        }
        out
    }
}

/// Whether task `pid` holds an io_uring: a descriptor, or a mapping of
/// its rings (which keeps it alive too). Its registered buffers are
/// pinned, and the kernel writes into them without a page fault. When
/// /proc cannot tell, the answer is yes (copying whole is always right).
pub fn pinned(pid: i32, vmas: &[Vma]) -> bool {
    const RING: &str = "anon_inode:[io_uring]";
    if vmas.iter().any(|v| v.name == RING) {
        return true;
    }
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return true;
    };
    dir.flatten()
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == RING))
}

fn push(r: &mut Ranges, s: u64, e: u64) {
    match r.last_mut() {
        Some(l) if l.1 >= s => l.1 = l.1.max(e),
        _ => r.push((s, e)),
    }
}

/// The trackers of a tree, by pid.
#[derive(Default)]
pub struct Trackers(HashMap<i32, Tracker>);

impl Trackers {
    pub fn insert(&mut self, t: Tracker) {
        self.0.insert(t.pid, t);
    }

    /// The tracker of task `pid` started at `start`, if it has one that
    /// still tracks its address space (not one from before an exec).
    pub fn get(&self, pid: i32, start: u64) -> Option<&Tracker> {
        self.0
            .get(&pid)
            .filter(|t| t.start == start && !t.is_stale())
    }

    /// Whether task `pid` started at `start` has a tracker here, stale
    /// or not: whether these trackers are of its tree.
    pub fn has(&self, pid: i32, start: u64) -> bool {
        self.0.get(&pid).is_some_and(|t| t.start == start)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tracker> {
        self.0.values()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps only the trackers `keep` says yes to (the others are
    /// dropped: their tasks' memory is unregistered).
    pub fn retain(&mut self, mut keep: impl FnMut(&Tracker) -> bool) {
        self.0.retain(|_, t| keep(t));
    }

    /// Adds the trackers of `older` (a previous dump's) for the tasks
    /// that have none here.
    pub fn merge(&mut self, older: Trackers) {
        for t in older {
            self.0.entry(t.pid).or_insert(t);
        }
    }
}

impl IntoIterator for Trackers {
    type Item = Tracker;
    type IntoIter = std::collections::hash_map::IntoValues<i32, Tracker>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_values()
    }
}

/// Whether this kernel tracks writes the way crit does: a userfaultfd of
/// crit's own accepts async write-protection. The error says why not.
pub fn probe() -> io::Result<()> {
    // Made here with the raw call: the check needs no injection.
    let fd = uffd::open_own(UFFD_FLAGS | uffd::USER_MODE_ONLY)?;
    Uffd::new(fd).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_when_they_touch() {
        let mut r = Ranges::new();
        push(&mut r, 0x1000, 0x2000);
        push(&mut r, 0x2000, 0x3000);
        push(&mut r, 0x5000, 0x6000);
        assert_eq!(r, vec![(0x1000, 0x3000), (0x5000, 0x6000)]);
    }

    #[test]
    fn this_kernel_tracks_writes() {
        // Linux 6.7 and later: the machines crit runs on.
        probe().expect("async write-protect userfaultfd");
    }
}
