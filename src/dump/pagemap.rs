//! Which pages of a task to dump: PAGEMAP_SCAN or /proc/PID/pagemap over every
//! private VMA, keeping pages that are present (or swapped) and are not the
//! shared zero page, and, for private file mappings, only pages that were
//! copied on write (CRIU's should_dump_page). The result is a list of runs
//! in address order, with CRIU's pagemap flags.

use super::error::DumpError;
use super::maps::{Vma, PAGE_SIZE, VMA_AREA_VDSO, VMA_FILE_PRIVATE};
use crate::error::Result;
pub use crate::image::flags::{PE_LAZY, PE_PARENT, PE_PRESENT};
use std::os::unix::fs::FileExt;

const PME_PRESENT: u64 = 1 << 63;
const PME_SWAP: u64 = 1 << 62;
const PME_FILE: u64 = 1 << 61;
const PME_UFFD_WP: u64 = 1 << 57;
const PME_GUARD_REGION: u64 = 1 << 58;
const PME_PFN_MASK: u64 = (1 << 55) - 1;
/// The swap type of a pte marker (the kernel's SWP_PTE_MARKER, the last
/// of 32), in the low bits of a swap entry's frame (shown to root).
const SWP_PTE_MARKER: u64 = 31;

/// A pte marker, not a page: what write tracking ([`super::track`]) puts
/// where nothing is mapped yet. Pagemap shows it as swapped (and
/// write-protected); it holds no data. Without PFNs (not root) it cannot
/// be told apart, and reads as a zero page.
fn is_marker(pme: u64) -> bool {
    pme & (PME_PRESENT | PME_SWAP | PME_UFFD_WP) == PME_SWAP | PME_UFFD_WP
        && pme & 0x1f == SWP_PTE_MARKER
}

/// A run of consecutive pages with the same flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub vaddr: u64,
    pub nr_pages: u64,
    pub flags: u32,
}

/// Appends `more` (runs after those of `runs`) to `runs`, a run that
/// continues the last one joining it, as one read would have given them.
pub fn append(runs: &mut Vec<Run>, more: Vec<Run>) {
    let mut more = more.into_iter();
    if let Some(next) = more.next() {
        match runs.last_mut() {
            Some(last)
                if last.flags == next.flags
                    && last.vaddr + last.nr_pages * PAGE_SIZE == next.vaddr =>
            {
                last.nr_pages += next.nr_pages
            }
            _ => runs.push(next),
        }
    }
    runs.extend(more);
}

/// `dump --lazy-pages`: `runs` with the pages of lazy runs left in the
/// task, as CRIU writes them: flagged PE_LAZY alone, no pages in the
/// image; a page of `keep` (each thread's stack page) stays in the image
/// as PE_PRESENT. Returns the runs for the pagemap and the ranges left
/// (address, bytes).
pub fn leave_lazy(runs: Vec<Run>, keep: &[u64]) -> (Vec<Run>, Vec<(u64, u64)>) {
    let mut out = Vec::with_capacity(runs.len());
    let mut left = Vec::new();
    let mut lazy = |out: &mut Vec<Run>, from: u64, to: u64| {
        if to > from {
            let nr_pages = (to - from) / PAGE_SIZE;
            append(
                out,
                vec![Run {
                    vaddr: from,
                    nr_pages,
                    flags: PE_LAZY,
                }],
            );
            left.push((from, to - from));
        }
    };
    for r in runs {
        if r.flags & (PE_LAZY | PE_PRESENT) != PE_LAZY | PE_PRESENT {
            append(&mut out, vec![r]);
            continue;
        }
        let end = r.vaddr + r.nr_pages * PAGE_SIZE;
        let mut at = r.vaddr;
        let mut kept: Vec<u64> = keep
            .iter()
            .copied()
            .filter(|&k| k >= at && k < end)
            .collect();
        kept.sort_unstable();
        kept.dedup();
        for k in kept {
            lazy(&mut out, at, k);
            append(
                &mut out,
                vec![Run {
                    vaddr: k,
                    nr_pages: 1,
                    flags: PE_PRESENT,
                }],
            );
            at = k + PAGE_SIZE;
        }
        lazy(&mut out, at, end);
    }
    (out, left)
}

/// The PFN of the shared zero page, as pagemap shows it to root (0 if
/// PFNs are hidden, in which case no page is taken for the zero page).
pub fn zero_pfn() -> Result<u64> {
    let m = memmap2::MmapMut::map_anon(PAGE_SIZE as usize).map_err(|source| DumpError::Call {
        what: "map a probe page",
        source,
    })?;
    // Reading an untouched private anonymous page maps the zero page.
    let probe = std::hint::black_box(m[0]);
    let _ = probe;
    let addr = m.as_ptr() as u64;
    let err = |source| DumpError::Call {
        what: "/proc/self/pagemap",
        source,
    };
    let f = std::fs::File::open("/proc/self/pagemap").map_err(err)?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, addr / PAGE_SIZE * 8).map_err(err)?;
    let pme = u64::from_le_bytes(b);
    Ok(if pme & PME_PRESENT != 0 {
        pme & PME_PFN_MASK
    } else {
        0
    })
}

/// Collects the runs of pages to dump from the private VMAs of `pid`.
///
/// Neighbouring VMAs alike (private, same pagemap flags, same kind) are
/// asked about at once with `PAGEMAP_SCAN`, which answers in ranges; where
/// the kernel lacks it (before 6.7), and for pages it shows as swapped
/// (real swap, and the markers of write tracking and guard regions, told
/// apart only by their pagemap entries), pagemap is read, eight bytes a
/// page.
pub fn collect(pid: i32, vmas: &[Vma], zero_pfn: u64) -> Result<Vec<Run>> {
    collect_within(pid, vmas, zero_pfn, 0, u64::MAX)
}

/// [`collect`] for the pages at addresses in `[lo, hi)` only: a big
/// address space read in parts, the pages of the first copied while the
/// rest is read.
pub fn collect_within(pid: i32, vmas: &[Vma], zero_pfn: u64, lo: u64, hi: u64) -> Result<Vec<Run>> {
    let path = super::procfs::path(pid, "pagemap");
    let f = std::fs::File::open(&path).map_err(|source| DumpError::Proc {
        pid,
        path: path.clone(),
        source,
    })?;
    let mut r = Reader {
        pid,
        f,
        zero_pfn,
        buf: Vec::new(),
        runs: Vec::new(),
        scan: true,
    };
    let mut group: Option<Span> = None;
    for v in vmas.iter().filter(|v| v.end > lo && v.start < hi) {
        // The vvar area belongs to the kernel, which sets it up again on
        // restore: never dumped (as CRIU).
        let span = (v.is_private() && !v.is(super::maps::VMA_AREA_VVAR)).then(|| Span {
            start: v.start.max(lo),
            end: v.end.min(hi),
            flags: PE_PRESENT | if v.can_be_lazy() { PE_LAZY } else { 0 },
            file_private: v.is(VMA_FILE_PRIVATE),
            dump_all: v.is(VMA_AREA_VDSO),
        });
        match (&mut group, span) {
            (Some(g), Some(s)) if g.joins(&s) => g.end = s.end,
            (g, s) => {
                if let Some(done) = g.take() {
                    r.span(&done)?;
                }
                *g = s;
            }
        }
    }
    if let Some(done) = group {
        r.span(&done)?;
    }
    Ok(r.runs)
}

/// Pages of one or more neighbouring VMAs read alike.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    end: u64,
    /// The runs' pagemap flags.
    flags: u32,
    /// Only pages copied on write are dumped.
    file_private: bool,
    /// Every page is dumped (the vDSO).
    dump_all: bool,
}

impl Span {
    fn joins(&self, next: &Span) -> bool {
        !self.dump_all
            && !next.dump_all
            && self.end == next.start
            && (self.flags, self.file_private) == (next.flags, next.file_private)
    }
}

struct Reader {
    pid: i32,
    f: std::fs::File,
    zero_pfn: u64,
    buf: Vec<u8>,
    runs: Vec<Run>,
    /// PAGEMAP_SCAN works here (until it answers that it does not).
    scan: bool,
}

impl Reader {
    fn push(&mut self, page: u64, nr_pages: u64, flags: u32) {
        match self.runs.last_mut() {
            Some(r) if r.flags == flags && r.vaddr + r.nr_pages * PAGE_SIZE == page => {
                r.nr_pages += nr_pages
            }
            _ => self.runs.push(Run {
                vaddr: page,
                nr_pages,
                flags,
            }),
        }
    }

    fn span(&mut self, s: &Span) -> Result<()> {
        if s.dump_all {
            self.push(s.start, (s.end - s.start) / PAGE_SIZE, s.flags);
            return Ok(());
        }
        if self.scan {
            use crate::sys::pmscan::*;
            let q = Query {
                any: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                shown: PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_FILE | PAGE_IS_PFNZERO,
                ..Default::default()
            };
            match scan(&self.f, s.start, s.end, q) {
                Ok(regions) => {
                    for g in regions {
                        let c = g.categories;
                        if c & PAGE_IS_SWAPPED != 0 {
                            self.read(s, g.start, g.end)?;
                        } else if c & PAGE_IS_PFNZERO == 0
                            && !(s.file_private && c & PAGE_IS_FILE != 0)
                        {
                            self.push(g.start, (g.end - g.start) / PAGE_SIZE, s.flags);
                        }
                    }
                    return Ok(());
                }
                Err(e) if matches!(crate::sys::errno_of(&e), Some(libc::ENOTTY | libc::EINVAL)) => {
                    self.scan = false
                }
                Err(source) => {
                    return Err(DumpError::Pagemap {
                        pid: self.pid,
                        addr: s.start,
                        source,
                    }
                    .into())
                }
            }
        }
        self.read(s, s.start, s.end)
    }

    /// Pages `[start, end)` of `s` from their pagemap entries, in chunks
    /// of up to 64k pages.
    fn read(&mut self, s: &Span, start: u64, end: u64) -> Result<()> {
        let pid = self.pid;
        let mut addr = start;
        while addr < end {
            let n = ((end - addr) / PAGE_SIZE).min(65536) as usize;
            let mut buf = std::mem::take(&mut self.buf);
            buf.resize(n * 8, 0);
            let mut got = 0;
            while got < buf.len() {
                let r = self
                    .f
                    .read_at(&mut buf[got..], addr / PAGE_SIZE * 8 + got as u64)
                    .map_err(|source| DumpError::Pagemap { pid, addr, source })?;
                if r == 0 {
                    return Err(DumpError::PagemapShort { pid, addr }.into());
                }
                got += r;
            }
            for (i, c) in buf.chunks_exact(8).enumerate() {
                let pme = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                if self.wanted(s, pme) {
                    self.push(addr + i as u64 * PAGE_SIZE, 1, s.flags);
                }
            }
            self.buf = buf;
            addr += n as u64 * PAGE_SIZE;
        }
        Ok(())
    }

    /// Whether the page of pagemap entry `pme` is dumped.
    fn wanted(&self, s: &Span, pme: u64) -> bool {
        pme & PME_GUARD_REGION == 0
            && !is_marker(pme)
            && !(s.file_private && pme & PME_FILE != 0)
            && pme & (PME_PRESENT | PME_SWAP) != 0
            && !(pme & PME_PRESENT != 0
                && self.zero_pfn != 0
                && pme & PME_PFN_MASK == self.zero_pfn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(page: u64, nr_pages: u64, flags: u32) -> Run {
        Run {
            vaddr: page * PAGE_SIZE,
            nr_pages,
            flags,
        }
    }

    /// Lazy runs lose PE_PRESENT and go to the list served from the
    /// task; a kept page (a stack pointer's) splits its run and stays
    /// present; other runs pass as they are.
    #[test]
    fn lazy_pages_are_left_out_but_kept_pages() {
        let lazy = PE_PRESENT | PE_LAZY;
        let runs = vec![run(0, 2, PE_PRESENT), run(2, 4, lazy), run(10, 1, lazy)];
        let (out, left) = leave_lazy(runs, &[4 * PAGE_SIZE, 99 * PAGE_SIZE]);
        assert_eq!(
            out,
            vec![
                run(0, 2, PE_PRESENT),
                run(2, 2, PE_LAZY),
                run(4, 1, PE_PRESENT),
                run(5, 1, PE_LAZY),
                run(10, 1, PE_LAZY),
            ]
        );
        let p = PAGE_SIZE;
        assert_eq!(left, vec![(2 * p, 2 * p), (5 * p, p), (10 * p, p)]);
    }
}
