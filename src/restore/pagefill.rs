//! Writes a task's private anonymous pages with `UFFDIO_COPY` instead of
//! `process_vm_writev`.
//!
//! Why: a write through `process_vm_writev` faults each page in the task
//! (allocate, zero, then copy), pinning it through GUP on the way.
//! `UFFDIO_COPY` allocates the page and copies into it directly: no
//! zeroing, no pinning. Measured here on fresh anonymous memory: 4 MiB in
//! 0.70 ms against 1.21 ms, 1 GiB in 267 ms against 361 ms.
//!
//! How: the task makes a userfaultfd (an injected call, user-mode faults
//! only, which any user may ask for), crit takes a copy and the task
//! closes its own, so crit's copy is the only one. The mappings that
//! take pages are registered for missing pages; nothing waits on them
//! (the task is stopped) and crit copies every dumped page in. Dropping
//! the [`Filler`] closes the descriptor, which unregisters every mapping,
//! on success and on failure alike.
//!
//! Only plain private anonymous mappings qualify: the kernel registers
//! nothing else, and a locked or populated mapping already has its pages
//! (the copy would find them there). Everything else, and any task whose
//! kernel or limits refuse a userfaultfd, is written as before.

use super::error::TaskError;
use super::plan::Task;
use super::remote::{call, Tracee};
use crate::error::Result;
use crate::image::flags::{
    VMA_ANON_PRIVATE, VMA_AREA_AIORING, VMA_AREA_MEMFD, VMA_AREA_SHSTK, VMA_AREA_SOCKET,
    VMA_AREA_SYSVIPC, VMA_AREA_UPROBES, VMA_AREA_VDSO, VMA_AREA_VSYSCALL, VMA_AREA_VVAR,
    VMA_UNSUPP,
};
use crate::image::pb;
use crate::sys::uffd::{self, Uffd};

/// mmap flags whose mappings are populated when made.
const MAP_LOCKED: u32 = 0x2000;
const MAP_POPULATE: u32 = 0x8000;
const MAP_HUGETLB: u32 = 0x40000;

/// Pieces of pages to write: (address in the task, bytes).
pub type Pieces<'a> = Vec<(u64, &'a [u8])>;

/// A userfaultfd on one task's address space with the mappings that take
/// their pages through it.
pub struct Filler {
    uffd: Uffd,
    /// Registered ranges, sorted by address, none overlapping.
    ranges: Vec<(u64, u64)>,
    pid: u32,
}

/// Whether mapping `v` can take its pages through a userfaultfd.
fn qualifies(v: &pb::VmaEntry) -> bool {
    const OTHER: u32 = VMA_AREA_VDSO
        | VMA_AREA_VVAR
        | VMA_AREA_VSYSCALL
        | VMA_AREA_SYSVIPC
        | VMA_AREA_AIORING
        | VMA_AREA_SOCKET
        | VMA_AREA_MEMFD
        | VMA_AREA_SHSTK
        | VMA_AREA_UPROBES
        | VMA_UNSUPP;
    v.status & VMA_ANON_PRIVATE != 0
        && v.status & OTHER == 0
        && v.flags & (MAP_LOCKED | MAP_POPULATE | MAP_HUGETLB) == 0
}

impl Filler {
    /// Makes the userfaultfd inside the task behind `t` and registers the
    /// mappings of `task` that qualify and hold any of `with_pages`
    /// ((address, length) runs, sorted). None when there is nothing to
    /// register or the task may not have a userfaultfd (old kernel,
    /// seccomp, sysctl) or crit cannot take it: the pages then go by
    /// `process_vm_writev`.
    pub fn open(
        t: &mut dyn Tracee,
        task: &Task,
        with_pages: &[(u64, u64)],
    ) -> Result<Option<Filler>> {
        let pid = task.pid;
        let wanted: Vec<(u64, u64)> = task
            .mm
            .vmas
            .iter()
            .filter(|v| qualifies(v) && holds_any(with_pages, v.start, v.end))
            .map(|v| (v.start, v.end))
            .collect();
        if wanted.is_empty() {
            return Ok(None);
        }
        let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64 | uffd::USER_MODE_ONLY;
        let fd = t.syscall(libc::SYS_userfaultfd, [flags, 0, 0, 0, 0, 0])?;
        if fd < 0 {
            return Ok(None);
        }
        let copy = crate::sys::pidfd::getfd(t.host_tid() as i32, fd as i32);
        call(
            t,
            "close of the userfaultfd",
            libc::SYS_close,
            [fd as u64, 0, 0, 0, 0, 0],
        )?;
        // A descriptor crit cannot take or set up leaves the pages to
        // process_vm_writev too.
        let Some(uffd) = copy.ok().and_then(|c| Uffd::with_events(c, 0).ok()) else {
            return Ok(None);
        };
        let mut ranges = Vec::with_capacity(wanted.len());
        for (s, e) in wanted {
            // A kernel that will not register a mapping leaves it to
            // process_vm_writev.
            if uffd.register_missing(s, e - s).is_ok() {
                ranges.push((s, e));
            }
        }
        ranges.sort_unstable();
        Ok(Some(Filler { uffd, ranges, pid }))
    }

    /// Splits `iov` (pieces of pages: address, bytes) into what this
    /// filler writes and what is left for `process_vm_writev`.
    pub fn split<'a>(&self, iov: &[(u64, &'a [u8])]) -> (Pieces<'a>, Pieces<'a>) {
        split_by(&self.ranges, iov)
    }

    /// Copies the pieces in (each inside a registered range).
    pub fn write(&self, iov: &[(u64, &[u8])]) -> Result<()> {
        spread(iov, self.pid, |part| self.copy_all(part))
    }

    fn copy_all(&self, iov: &[(u64, &[u8])]) -> Result<()> {
        for &(addr, bytes) in iov {
            let mut done = 0usize;
            while done < bytes.len() {
                let at = addr + done as u64;
                let n =
                    self.uffd
                        .copy(at, &bytes[done..])
                        .map_err(|source| TaskError::WriteMem {
                            pid: self.pid,
                            at,
                            source,
                        })?;
                if n == 0 {
                    return Err(TaskError::ShortWrite {
                        pid: self.pid,
                        at,
                        done,
                        total: bytes.len(),
                    }
                    .into());
                }
                done += n as usize;
            }
        }
        Ok(())
    }
}

/// Runs `write` over `iov` (pieces of pages), on several threads of
/// crit when there is much (16 MiB or more) and more than one CPU: a
/// task's faults on pages scale with the threads that take them. `pid`
/// names the task in errors.
pub fn spread<F>(iov: &[(u64, &[u8])], pid: u32, write: F) -> Result<()>
where
    F: Fn(&[(u64, &[u8])]) -> Result<()> + Sync,
{
    let total: usize = iov.iter().map(|(_, b)| b.len()).sum();
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if n < 2 || total < (16 << 20) {
        return write(iov);
    }
    // Cut big runs into pieces first: a dump may record a whole run of
    // adjacent mappings as one pagemap entry, which would otherwise
    // leave every thread but one idle.
    const PIECE: usize = 8 << 20;
    let pieces: Vec<(u64, &[u8])> = iov
        .iter()
        .flat_map(|&(addr, b)| {
            b.chunks(PIECE)
                .enumerate()
                .map(move |(k, c)| (addr + (k * PIECE) as u64, c))
        })
        .collect();
    // Split into n parts of about equal bytes.
    let per = total / n + 1;
    let mut parts: Vec<&[(u64, &[u8])]> = Vec::new();
    let (mut start, mut acc) = (0, 0);
    for (k, (_, b)) in pieces.iter().enumerate() {
        acc += b.len();
        if acc >= per {
            parts.push(&pieces[start..=k]);
            start = k + 1;
            acc = 0;
        }
    }
    if start < pieces.len() {
        parts.push(&pieces[start..]);
    }
    let write = &write;
    std::thread::scope(|sc| {
        let hs: Vec<_> = parts
            .iter()
            .enumerate()
            .map(|(w, p)| {
                crate::sys::thread::scoped(sc, move || {
                    crate::sys::affinity::unpin_self_onto(w);
                    write(p)
                })
            })
            .collect();
        let mut r = Ok(());
        for h in hs {
            let got = match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(TaskError::PageWriter { pid }.into())),
                Err(e) => Err(crate::error::Error::io(
                    format!("pid {pid}: page writers"),
                    e,
                )),
            };
            if r.is_ok() {
                r = got;
            }
        }
        r
    })
}

/// Splits `iov` into the parts inside `ranges` (sorted, not
/// overlapping) and the rest.
fn split_by<'a>(ranges: &[(u64, u64)], iov: &[(u64, &'a [u8])]) -> (Pieces<'a>, Pieces<'a>) {
    let (mut inside, mut rest): (Pieces, Pieces) = (Vec::new(), Vec::new());
    for &(addr, bytes) in iov {
        let mut at = addr;
        let end = addr + bytes.len() as u64;
        while at < end {
            let piece = |upto: u64| &bytes[(at - addr) as usize..(upto - addr) as usize];
            // The first range that ends after `at`: `at` is in it, or
            // before it.
            let k = ranges.partition_point(|r| r.1 <= at);
            let (upto, into) = match ranges.get(k) {
                Some(&(s, e)) if s <= at => (e.min(end), &mut inside),
                Some(&(s, _)) => (s.min(end), &mut rest),
                None => (end, &mut rest),
            };
            into.push((at, piece(upto)));
            at = upto;
        }
    }
    (inside, rest)
}

/// Whether any run of `runs` (sorted (address, length)) meets `[s, e)`.
fn holds_any(runs: &[(u64, u64)], s: u64, e: u64) -> bool {
    let k = runs.partition_point(|&(a, l)| a + l <= s);
    runs.get(k).is_some_and(|&(a, _)| a < e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_cut_at_the_registered_ranges() {
        let data = vec![0u8; 0x6000];
        let ranges = [(0x2000, 0x3000), (0x4000, 0x9000)];
        let (inside, rest) = split_by(&ranges, &[(0x1000, &data[..])]);
        let spans = |p: &Pieces| p.iter().map(|&(a, b)| (a, b.len())).collect::<Vec<_>>();
        assert_eq!(spans(&inside), [(0x2000, 0x1000), (0x4000, 0x3000)]);
        assert_eq!(spans(&rest), [(0x1000, 0x1000), (0x3000, 0x1000)]);
        // The bytes follow their addresses.
        assert_eq!(inside[1].1.as_ptr(), data[0x3000..].as_ptr());
        let (inside, rest) = split_by(&[], &[(0x1000, &data[..])]);
        assert!(inside.is_empty() && rest.len() == 1);
    }

    #[test]
    fn runs_meet_mappings() {
        let runs = [(0x1000, 0x1000), (0x5000, 0x2000)];
        assert!(holds_any(&runs, 0x1000, 0x2000));
        assert!(!holds_any(&runs, 0x2000, 0x5000));
        assert!(holds_any(&runs, 0x6000, 0x9000));
        assert!(!holds_any(&runs, 0x7000, 0x9000));
        assert!(!holds_any(&[], 0, 0x1000));
    }

    #[test]
    fn only_plain_private_anonymous_memory_qualifies() {
        let v = |status: u32, flags: u32| pb::VmaEntry {
            status,
            flags,
            ..Default::default()
        };
        assert!(qualifies(&v(VMA_ANON_PRIVATE | 1, 0x22)));
        assert!(!qualifies(&v(VMA_ANON_PRIVATE | 1, 0x22 | MAP_LOCKED)));
        assert!(!qualifies(&v(VMA_ANON_PRIVATE | VMA_AREA_VDSO, 0x22)));
        assert!(!qualifies(&v(crate::image::flags::VMA_FILE_PRIVATE, 0x02)));
    }
}
