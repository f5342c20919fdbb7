//! Rebuilds a task's address space from outside: unmap what the forked copy
//! of crit had, move its own vdso/vvar where the dumped ones were (or make
//! a vdso proxy there: [`super::vdso`]), map every
//! dumped VMA at its address, write the dumped pages, set the final
//! protections, then the mm fields with PR_SET_MM_MAP.

use super::child::Layout;
use super::error::TaskError;
use super::files::*;
use super::pagefill::Filler;
use super::plan::Task;
use super::remote::{call, Tracee};
use crate::error::Result;
use crate::image::pb;
use crate::image::typed::Mapped;
use crate::model::pagemap::{self, Held, Source};
use crate::restore::error::PagesFault;
use std::path::{Path, PathBuf};

pub const PAGE: u64 = 4096;
use crate::sys::TASK_SIZE;
const MMAP_MIN: u64 = 0x10000;

const NR_MMAP: i64 = libc::SYS_mmap;
const NR_MPROTECT: i64 = libc::SYS_mprotect;
const NR_MUNMAP: i64 = libc::SYS_munmap;
const NR_SHMAT: i64 = libc::SYS_shmat;
const NR_MREMAP: i64 = libc::SYS_mremap;
const NR_MADVISE: i64 = libc::SYS_madvise;
/// linux/mman.h (Linux 6.13).
const MADV_GUARD_INSTALL: u64 = 102;
const NR_PRCTL: i64 = libc::SYS_prctl;

const PROT_WRITE: u32 = 2;
const MAP_SHARED: u32 = 1;
const MAP_FIXED: u32 = 0x10;
const MAP_ANON: u32 = 0x20;
const MAP_FIXED_NOREPLACE: u32 = 0x100000;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;

/// One line of /proc/PID/maps.
#[derive(Clone, Debug)]
pub struct MapLine {
    pub start: u64,
    pub end: u64,
    pub name: String,
}

pub fn read_maps(pid: u32) -> Result<Vec<MapLine>> {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|source| TaskError::Proc {
            pid,
            name: "maps",
            source,
        })?;
    let mut v = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let range = it.next().unwrap_or("");
        let (a, b) = range.split_once('-').unwrap_or(("0", "0"));
        let start = u64::from_str_radix(a, 16).unwrap_or(0);
        let end = u64::from_str_radix(b, 16).unwrap_or(0);
        let name = it.nth(4).unwrap_or("").to_string();
        v.push(MapLine { start, end, name });
    }
    Ok(v)
}

/// The lowest gap of `len` bytes that none of `taken` covers.
pub fn find_hole(taken: &[(u64, u64)], len: u64) -> Option<u64> {
    let mut t: Vec<(u64, u64)> = taken.to_vec();
    t.sort();
    let mut at = MMAP_MIN.max(0x100000);
    for (s, e) in t {
        if s >= at + len {
            break;
        }
        at = at.max(e.next_multiple_of(PAGE));
    }
    (at + len <= TASK_SIZE).then_some(at)
}

/// Where one task's dumped pages are: which pagemap entry covers which
/// range, and where its bytes start in the pages file.
#[derive(Clone, Copy)]
pub struct PageRun {
    pub vaddr: u64,
    pub len: u64,
    pub off: u64,
}

/// The runs of pages the task's own page image `own` holds (those in a
/// parent dump are [`parent_pages`]'s), less those at the addresses in
/// `lazy` (left to a lazy-pages daemon, which may hold the pages
/// elsewhere).
pub fn page_runs(
    task: &Task,
    own: Option<&Mapped>,
    lazy: &std::collections::HashSet<u64>,
) -> Result<Vec<PageRun>> {
    let all = pagemap::runs(&task.pagemap);
    let mut runs = Vec::new();
    for r in all.iter().filter(|r| !lazy.contains(&r.vaddr)) {
        let off = match r.held {
            Held::Parent => continue,
            Held::Lazy => {
                return Err(TaskError::PagesLazy {
                    pid: task.pid,
                    vaddr: r.vaddr,
                }
                .into())
            }
            Held::Here(off) => off,
        };
        let Some(file) = own else {
            return Err(TaskError::PagesMissing {
                pid: task.pid,
                pages_id: task.pages_id,
                vaddr: r.vaddr,
            }
            .into());
        };
        let len = file.bytes().len() as u64;
        if off + r.bytes() > len {
            return Err(TaskError::Pages {
                pid: task.pid,
                path: file.name.clone().into(),
                fault: PagesFault::Short {
                    len,
                    need: pagemap::bytes_needed(&all),
                },
            }
            .into());
        }
        runs.push(PageRun {
            vaddr: r.vaddr,
            len: r.bytes(),
            off,
        });
    }
    // CRIU writes them in address order; do not rely on it.
    runs.sort_by_key(|r| r.vaddr);
    Ok(runs)
}

/// The pages of a task that a parent dump holds: that dump's page image
/// and the runs of it to write.
pub struct ParentPages {
    pub file: Mapped,
    pub runs: Vec<PageRun>,
}

/// How deep a chain of parent dumps is followed.
const MAX_CHAIN: usize = 64;

/// One dump of a chain, for one task.
struct Level {
    /// Where it is reached (through `parent` links).
    at: PathBuf,
    /// Where it is, for errors: the link resolved.
    shown: PathBuf,
    runs: Vec<pagemap::Run>,
    /// Its page image; none for the first (the task's own is opened
    /// apart) and for a parent that needs none.
    pages: Option<Mapped>,
}

fn resolved(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Level {
    /// The parent of dump `child` of task `pid`'s chain, which the
    /// pages at `vaddr` are left to. Each error names the link or file
    /// at fault.
    fn parent_of(child: &Level, pid: u32, vaddr: u64) -> Result<Level> {
        let link = child.at.join("parent");
        let fault = |path: PathBuf, fault| TaskError::Pages { pid, path, fault };
        let bad_link = |f| fault(child.shown.join("parent"), f);
        let to = match std::fs::read_link(&link) {
            Ok(to) => Some(to),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let by = child.shown.clone();
                return Err(bad_link(PagesFault::NoLink { by, vaddr }).into());
            }
            // Not a link: a directory put in its place, say.
            Err(_) => None,
        };
        let f = match (std::fs::metadata(&link), to) {
            (Ok(m), _) if m.is_dir() => None,
            (Ok(_), _) => Some(PagesFault::NotDir),
            (Err(e), Some(to)) if e.kind() == std::io::ErrorKind::NotFound => {
                Some(PagesFault::Dangling { to })
            }
            (Err(e), _) => Some(PagesFault::Link(e)),
        };
        if let Some(f) = f {
            return Err(bad_link(f).into());
        }
        let shown = resolved(&link);
        let name = format!("pagemap-{pid}.img");
        let pm = link.join(&name);
        if !pm.exists() {
            let by = child.shown.clone();
            return Err(fault(shown.join(name), PagesFault::PagemapMissing { by, vaddr }).into());
        }
        let (pages_id, entries) = super::plan::read_pagemap(&pm, Vec::new())?;
        let mut runs = pagemap::runs(&entries);
        runs.sort_by_key(|r| r.vaddr);
        // Checked whole: a pages image cut short is damaged wherever the
        // pages this restore takes from it are.
        let need = pagemap::bytes_needed(&runs);
        let name = format!("pages-{pages_id}.img");
        let path = link.join(&name);
        let pages = match (path.exists(), need) {
            (false, 0) => None,
            (false, _) => {
                let f = PagesFault::PagesMissing { need };
                return Err(fault(shown.join(name), f).into());
            }
            (true, _) => Some(Mapped::open(&path)?),
        };
        let len = pages.as_ref().map_or(0, |m| m.bytes().len() as u64);
        if len < need {
            return Err(fault(shown.join(name), PagesFault::Short { len, need }).into());
        }
        Ok(Level {
            at: link,
            shown,
            runs,
            pages,
        })
    }
}

/// Follows the `parent` links of images dir `dir` for the pages `task`
/// has `in_parent` (CRIU's pre-dump chains, crit's or CRIU's): each
/// parent's pagemap of the same pid gives them, or sends them on to its
/// own parent. Only the parents some of those pages lead to are read. A
/// page no dump of the chain holds is an error that names the dump (and
/// its file or link) where the chain breaks.
pub fn parent_pages(dir: &Path, task: &Task) -> Result<Vec<ParentPages>> {
    let pid = task.pid;
    let mut own = pagemap::runs(&task.pagemap);
    own.sort_by_key(|r| r.vaddr);
    let wanted: Vec<(u64, u64)> = own
        .iter()
        .filter(|r| r.held == Held::Parent)
        .map(|r| (r.vaddr, r.end()))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let mut levels = vec![Level {
        at: dir.to_path_buf(),
        shown: resolved(dir),
        runs: own,
        pages: None,
    }];
    // The next parent is read while a wanted page leads past the last.
    while let Some(vaddr) = past_the_last(&levels, &wanted) {
        let child = &levels[levels.len() - 1];
        if levels.len() > MAX_CHAIN {
            let fault = PagesFault::TooDeep { max: MAX_CHAIN };
            let path = child.shown.clone();
            return Err(TaskError::Pages { pid, path, fault }.into());
        }
        let parent = Level::parent_of(child, pid, vaddr)?;
        levels.push(parent);
    }
    let chain: Vec<&[pagemap::Run]> = levels.iter().map(|l| &l.runs[..]).collect();
    let mut out: Vec<Vec<PageRun>> = vec![Vec::new(); levels.len()];
    let mut bad = None;
    for &(s, e) in &wanted {
        pagemap::place(&chain, s, e, &mut |from, to, src| {
            let (level, fault) = match src {
                Source::Level { level, off } => {
                    let len = to - from;
                    out[level].push(PageRun {
                        vaddr: from,
                        len,
                        off,
                    });
                    return;
                }
                Source::Lazy { level } => (level, PagesFault::Lazy { vaddr: from }),
                Source::Absent { level } => {
                    let by = levels[level.saturating_sub(1)].shown.clone();
                    (level, PagesFault::NotHeld { by, vaddr: from })
                }
                // Not after the walk above; named as it would be.
                Source::NoParent => {
                    let by = levels[levels.len() - 1].shown.clone();
                    (levels.len() - 1, PagesFault::NoLink { by, vaddr: from })
                }
            };
            let l = &levels[level];
            let path = match fault {
                PagesFault::NoLink { .. } => l.shown.join("parent"),
                _ => l.shown.join(format!("pagemap-{pid}.img")),
            };
            bad.get_or_insert(TaskError::Pages { pid, path, fault });
        });
    }
    if let Some(e) = bad {
        return Err(e.into());
    }
    let mut parents = Vec::new();
    for (level, mut runs) in levels.into_iter().zip(out) {
        if let (Some(file), false) = (level.pages, runs.is_empty()) {
            // Written in file order, as the task's own.
            runs.sort_by_key(|r| r.off);
            parents.push(ParentPages { file, runs });
        }
    }
    Ok(parents)
}

/// The first page of `wanted` that the chain `levels` leaves to a parent
/// past its last dump.
fn past_the_last(levels: &[Level], wanted: &[(u64, u64)]) -> Option<u64> {
    let chain: Vec<&[pagemap::Run]> = levels.iter().map(|l| &l.runs[..]).collect();
    let mut first = None;
    for &(s, e) in wanted {
        pagemap::place(&chain, s, e, &mut |from, _, src| {
            if src == Source::NoParent {
                first.get_or_insert(from);
            }
        });
        if first.is_some() {
            break;
        }
    }
    first
}

fn vma_has_pages(v: &pb::VmaEntry, runs: &[PageRun]) -> bool {
    // runs are sorted by address.
    let i = runs.partition_point(|r| r.vaddr + r.len <= v.start);
    i < runs.len() && runs[i].vaddr < v.end
}

/// What of the child's own mappings survives the rebuild.
pub struct Special {
    pub vvar: Option<(u64, u64)>,
    pub vclock: Option<(u64, u64)>,
    pub vdso: Option<(u64, u64)>,
}

fn special_of(maps: &[MapLine]) -> Special {
    let find = |n: &str| maps.iter().find(|m| m.name == n).map(|m| (m.start, m.end));
    Special {
        vvar: find("[vvar]"),
        vclock: find("[vvar_vclock]"),
        vdso: find("[vdso]"),
    }
}

pub fn skip_vma(v: &pb::VmaEntry) -> bool {
    v.status & (VMA_AREA_VSYSCALL | VMA_AREA_VDSO | VMA_AREA_VVAR) != 0
}

/// The scratch area crit uses inside a task while rebuilding it: free both
/// in the task now (`host`: its pid in crit's namespace) and in its
/// dumped layout; and the task's special mappings, read from the same
/// look at its maps (nothing moves them before the rebuild does).
pub fn choose_scratch(host: u32, task: &Task, len: u64) -> Result<(u64, Special)> {
    let pid = task.pid;
    let maps = read_maps(host)?;
    let mut taken: Vec<(u64, u64)> = maps.iter().map(|m| (m.start, m.end)).collect();
    taken.extend(task.mm.vmas.iter().map(|v| (v.start, v.end)));
    let at = find_hole(&taken, len).ok_or(TaskError::NoRoom {
        pid,
        what: "no free room for a scratch area",
    })?;
    Ok((at, special_of(&maps)))
}

/// What a task's rebuild keeps of what it was forked with: crit's scratch
/// area (start, length) and this kernel's special mappings.
pub struct Kept {
    pub scratch: (u64, u64),
    pub special: Special,
}

/// Rebuilds the address space; what `kept` names stays. With lazy pages
/// (`mem.lazy`) those pages are left out (see [`super::lazy`]); the vdso
/// is placed as [`super::vdso`] says.
pub fn rebuild(
    t: &mut dyn Tracee,
    task: &Task,
    lay: &Layout,
    pages: Option<&super::task::TaskPages>,
    kept: &Kept,
    log: &super::Log,
    mem: super::task::MemOpts,
) -> Result<()> {
    let keep = kept.scratch;
    let (scratch, scratch_len) = keep;
    let sp = &kept.special;
    let pid = task.pid;
    refuse_unsupported(task)?;
    let own = pages.and_then(|p| p.own.as_ref());
    let parents: &[ParentPages] = pages.map_or(&[], |p| &p.parents);
    // Lazy pages are left to the lazy-pages daemon.
    let skip: std::collections::HashSet<u64> = match mem.lazy.is_some() {
        true => super::lazy::lazy_runs(task).iter().map(|r| r.0).collect(),
        false => Default::default(),
    };
    let runs = page_runs(task, own, &skip)?;
    unmap_all_but(t, pid, sp, (scratch, scratch + scratch_len))?;
    let dumped_vdso = vdso_pages(task, &runs, own, parents);
    super::vdso::place(t, task, sp, mem.vdso, dumped_vdso, keep, log)?;
    // Which mappings get pages: from this dump or from a parent.
    let mut all: Vec<PageRun> = runs.to_vec();
    for p in parents {
        all.extend(p.runs.iter().copied());
    }
    all.sort_by_key(|r| r.vaddr);
    let reprotect = map_vmas(t, task, lay, &all)?;
    log.debug(format!("pid {pid}: mappings made"));
    let t_pages = std::time::Instant::now();
    // Private anonymous pages go in through a userfaultfd (see
    // [`super::pagefill`]); lazy ones are the daemon's.
    let filler = match mem.lazy {
        None => {
            let with: Vec<(u64, u64)> = all.iter().map(|r| (r.vaddr, r.len)).collect();
            Filler::open(t, task, &with)?
        }
        Some(_) => None,
    };
    let mut bytes = write_pages(t, task, &runs, own, filler.as_ref())?;
    for p in parents {
        bytes += write_pages(t, task, &p.runs, Some(&p.file), filler.as_ref())?;
    }
    let how = match &filler {
        Some(_) => "userfaultfd and process_vm_writev",
        None => "process_vm_writev",
    };
    // Closing the userfaultfd unregisters its mappings.
    drop(filler);
    log.debug(format!(
        "pid {pid}: {} mappings, {bytes} bytes of pages written in {:?} ({how})",
        task.mm.vmas.len(),
        t_pages.elapsed()
    ));
    protect_and_advise(t, task, &reprotect)
}

/// The dumped vdso's pages, if this dump or a parent holds all of them.
fn vdso_pages(
    task: &Task,
    runs: &[PageRun],
    own: Option<&Mapped>,
    parents: &[ParentPages],
) -> Option<Vec<u8>> {
    let v = task
        .mm
        .vmas
        .iter()
        .find(|v| v.status & VMA_AREA_VDSO != 0)?;
    let mut img = vec![0u8; (v.end - v.start) as usize];
    let mut filled = 0u64;
    let sources = own
        .map(|f| (runs, f))
        .into_iter()
        .chain(parents.iter().map(|p| (p.runs.as_slice(), &p.file)));
    for (runs, file) in sources {
        for r in runs {
            let (s, e) = (r.vaddr.max(v.start), (r.vaddr + r.len).min(v.end));
            if s >= e {
                continue;
            }
            let from = (r.off + s - r.vaddr) as usize;
            let src = file.bytes().get(from..from + (e - s) as usize)?;
            img[(s - v.start) as usize..(e - v.start) as usize].copy_from_slice(src);
            filled += e - s;
        }
    }
    (filled == v.end - v.start).then_some(img)
}

fn refuse_unsupported(task: &Task) -> Result<()> {
    for v in &task.mm.vmas {
        if v.status & (VMA_AREA_AIORING | VMA_AREA_SOCKET | VMA_UNSUPP) != 0 {
            return Err(TaskError::MappingKind {
                pid: task.pid,
                start: v.start,
                end: v.end,
                status: v.status,
            }
            .into());
        }
    }
    Ok(())
}

/// Unmaps everything but `keep` and the special mappings.
fn unmap_all_but(t: &mut dyn Tracee, pid: u32, sp: &Special, keep: (u64, u64)) -> Result<()> {
    let mut keep: Vec<(u64, u64)> = vec![keep];
    keep.extend([sp.vvar, sp.vclock, sp.vdso].into_iter().flatten());
    keep.sort();
    let mut at = 0u64;
    let mut calls = Vec::new();
    for &(s, e) in keep.iter().chain(std::iter::once(&(TASK_SIZE, TASK_SIZE))) {
        if s > at {
            calls.push((NR_MUNMAP, [at, s - at, 0, 0, 0, 0]));
        }
        at = at.max(e);
    }
    for (k, r) in t.batch(&calls)?.into_iter().enumerate() {
        if r < 0 {
            return Err(TaskError::MemCall {
                pid,
                what: "munmap",
                addr: calls[k].1[0],
                errno: -r,
            }
            .into());
        }
    }
    Ok(())
}

/// Maps every VMA at its address, in one batch; mappings that get pages
/// but are not writable are made writable for now. Returns those.
fn map_vmas<'a>(
    t: &mut dyn Tracee,
    task: &'a Task,
    lay: &Layout,
    runs: &[PageRun],
) -> Result<Vec<&'a pb::VmaEntry>> {
    let pid = task.pid;
    let mut reprotect = Vec::new();
    let mut maps: Vec<(&pb::VmaEntry, i64, [u64; 6])> = Vec::new();
    for v in task.mm.vmas.iter().filter(|v| !skip_vma(v)) {
        if v.status & VMA_AREA_SYSVIPC != 0 {
            maps.push((
                v,
                NR_SHMAT,
                [v.shmid, v.start, shmat_flags(v.prot), 0, 0, 0],
            ));
            continue;
        }
        let mut prot = v.prot;
        if vma_has_pages(v, runs) && prot & PROT_WRITE == 0 {
            prot |= PROT_WRITE;
            reprotect.push(v);
        }
        let (flags, fd, off) = mmap_source(v, lay, pid)?;
        maps.push((
            v,
            NR_MMAP,
            [v.start, v.end - v.start, u64::from(prot), flags, fd, off],
        ));
    }
    let calls: Vec<(i64, [u64; 6])> = maps.iter().map(|m| (m.1, m.2)).collect();
    for (k, got) in t.batch(&calls)?.into_iter().enumerate() {
        let v = maps[k].0;
        if (-4095..0).contains(&got) && maps[k].1 == NR_SHMAT {
            return Err(TaskError::ShmAttach {
                pid,
                start: v.start,
                end: v.end,
                shmid: v.shmid,
                source: std::io::Error::from_raw_os_error(-got as i32),
            }
            .into());
        }
        if (-4095..0).contains(&got) {
            return Err(TaskError::Mmap {
                pid,
                start: v.start,
                end: v.end,
                source: std::io::Error::from_raw_os_error(-got as i32),
            }
            .into());
        }
        if got as u64 != v.start {
            return Err(TaskError::MmapMoved {
                pid,
                start: v.start,
                got,
            }
            .into());
        }
    }
    Ok(reprotect)
}

/// shmat(2) flags for a System V segment attached with `prot`: at its
/// address over whatever is there.
fn shmat_flags(prot: u32) -> u64 {
    const SHM_RDONLY: u64 = 0o10000;
    const SHM_REMAP: u64 = 0o40000;
    const SHM_EXEC: u64 = 0o100000;
    let mut f = SHM_REMAP;
    if prot & PROT_WRITE == 0 {
        f |= SHM_RDONLY;
    }
    if prot & 4 != 0 {
        f |= SHM_EXEC;
    }
    f
}

/// The mmap flags, fd and offset a VMA is mapped with.
fn mmap_source(v: &pb::VmaEntry, lay: &Layout, pid: u32) -> Result<(u64, u64, u64)> {
    let flags = u64::from((v.flags & !MAP_FIXED_NOREPLACE) | MAP_FIXED);
    if is_file_vma(v) {
        let fd = lay
            .fd_of(v.shmid as u32)
            .ok_or(TaskError::MappedFileMissing {
                pid,
                start: v.start,
                id: v.shmid,
            })?;
        Ok((flags, fd as u64, v.pgoff))
    } else if is_anon_shared(v) {
        // Shared anonymous: the object every task with this shmid maps.
        let fd = lay.shm_fd(v.shmid).ok_or(TaskError::SharedMissing {
            pid,
            start: v.start,
            shmid: v.shmid,
        })?;
        let flags = (flags & !u64::from(MAP_ANON)) | u64::from(MAP_SHARED);
        Ok((flags, fd as u64, v.pgoff))
    } else {
        Ok((flags | u64::from(MAP_ANON), u64::MAX, 0))
    }
}

/// Pages are written a window of the pages file at a time: crit maps
/// the window in, writes it and gives it back, so its own memory stays
/// near twice this (the next window is mapped in meanwhile), whatever
/// the task's size. Measured on 1 GiB: 64 MiB and 32 MiB restore as
/// fast (peak RSS 135 and 72 MiB); 16 MiB is a third slower.
const WINDOW: u64 = 32 << 20;

/// Writes the dumped pages (not the vdso's: those are the kernel's).
/// Returns the bytes written.
fn write_pages(
    t: &mut dyn Tracee,
    task: &Task,
    runs: &[PageRun],
    pages: Option<&Mapped>,
    filler: Option<&Filler>,
) -> Result<u64> {
    let Some(file) = pages else { return Ok(0) };
    let all = file.bytes();
    let skipped: Vec<(u64, u64)> = task
        .mm
        .vmas
        .iter()
        .filter(|v| skip_vma(v))
        .map(|v| (v.start, v.end))
        .collect();
    // Pieces in file order (runs are), each within one window.
    let mut pieces: Vec<(u64, u64, u64)> = Vec::new();
    for r in runs {
        if skipped.iter().any(|&(s, e)| r.vaddr >= s && r.vaddr < e) {
            continue;
        }
        let (mut off, mut addr, end) = (r.off, r.vaddr, r.off + r.len);
        while off < end {
            let cut = end.min((off / WINDOW + 1) * WINDOW);
            pieces.push((addr, off, cut - off));
            addr += cut - off;
            off = cut;
        }
    }
    let windows: Vec<&[(u64, u64, u64)]> = pieces
        .chunk_by(|a, b| a.1 / WINDOW == b.1 / WINDOW)
        .collect();
    // The file range a window spans.
    let span = |w: &[(u64, u64, u64)]| {
        let first = w[0].1 as usize;
        (
            first,
            w.last().map_or(first, |p| (p.1 + p.2) as usize) - first,
        )
    };
    if let Some(w) = windows.first() {
        let (o, l) = span(w);
        file.prefault(o, l);
    }
    let mut bytes = 0u64;
    for (k, window) in windows.iter().enumerate() {
        let batch: Vec<(u64, &[u8])> = window
            .iter()
            .map(|&(addr, off, len)| (addr, &all[off as usize..(off + len) as usize]))
            .collect();
        // The next window is mapped in while this one is written.
        let r = std::thread::scope(|s| {
            if let Some(next) = windows.get(k + 1) {
                let (o, l) = span(next);
                // Only a help: without a thread the window maps in as
                // it is written.
                let _ = crate::sys::thread::scoped(s, move || {
                    crate::sys::affinity::unpin_self();
                    file.prefault(o, l)
                });
            }
            match filler {
                Some(f) => {
                    let (mine, rest) = f.split(&batch);
                    f.write(&mine).and_then(|_| t.write_pages(&rest))
                }
                None => t.write_pages(&batch),
            }
        });
        let (o, l) = span(window);
        file.release(o, l);
        r?;
        bytes += window.iter().map(|p| p.2).sum::<u64>();
    }
    Ok(bytes)
}

/// The final protections of mappings made writable for their pages, then
/// the advice (best effort: a kernel may lack THP or KSM).
fn protect_and_advise(t: &mut dyn Tracee, task: &Task, reprotect: &[&pb::VmaEntry]) -> Result<()> {
    let calls: Vec<(i64, [u64; 6])> = reprotect
        .iter()
        .map(|v| {
            (
                NR_MPROTECT,
                [v.start, v.end - v.start, u64::from(v.prot), 0, 0, 0],
            )
        })
        .collect();
    batch_all(t, task, "mprotect", &calls)?;
    let mut calls = Vec::new();
    for v in task.mm.vmas.iter().filter(|v| !skip_vma(v)) {
        let madv = v.madv.unwrap_or(0);
        // The bit is the advice: RANDOM, SEQUENTIAL, DONTFORK, MERGEABLE,
        // HUGEPAGE, NOHUGEPAGE, DONTDUMP, WIPEONFORK (every one the dump
        // reads from VmFlags, as CRIU's restorer applies them).
        for bit in [1u64, 2, 10, 12, 14, 15, 16, 18] {
            if madv & (1 << bit) != 0 {
                calls.push((NR_MADVISE, [v.start, v.end - v.start, bit, 0, 0, 0]));
            }
        }
    }
    t.batch(&calls)?;
    // Guards last: installing one drops the pages under it.
    let calls: Vec<(i64, [u64; 6])> = task
        .guards
        .iter()
        .map(|&(s, e)| (NR_MADVISE, [s, e - s, MADV_GUARD_INSTALL, 0, 0, 0]))
        .collect();
    batch_all(t, task, "madvise(MADV_GUARD_INSTALL)", &calls)
}

/// Runs `calls` (each on an address range, its first argument) in the
/// task; the first that fails is the error, naming its address.
fn batch_all(
    t: &mut dyn Tracee,
    task: &Task,
    what: &'static str,
    calls: &[(i64, [u64; 6])],
) -> Result<()> {
    for (k, r) in t.batch(calls)?.into_iter().enumerate() {
        if r < 0 {
            return Err(TaskError::MemCall {
                pid: task.pid,
                what,
                addr: calls[k].1[0],
                errno: -r,
            }
            .into());
        }
    }
    Ok(())
}

/// Moves this kernel's vvar and vdso where the dumped ones were (they
/// must be the same: see [`super::vdso`]).
pub fn move_special(
    t: &mut dyn Tracee,
    task: &Task,
    sp: &Special,
    scratch: u64,
    scratch_len: u64,
) -> Result<()> {
    let pid = task.pid;
    let img_vdso = task.mm.vmas.iter().find(|v| v.status & VMA_AREA_VDSO != 0);
    let img_vvar = task.mm.vmas.iter().find(|v| v.status & VMA_AREA_VVAR != 0);
    // Pieces to move: (current start, len, target start).
    let mut moves: Vec<(u64, u64, u64)> = Vec::new();
    let mut drop: Vec<(u64, u64)> = Vec::new();
    match (img_vvar, sp.vvar) {
        (Some(iv), Some((s, e))) => {
            let vclock_len = sp.vclock.map(|(a, b)| b - a).unwrap_or(0);
            if iv.end - iv.start != (e - s) + vclock_len {
                return Err(TaskError::SpecialSize {
                    pid,
                    which: "vvar",
                    dumped: iv.end - iv.start,
                    here: (e - s) + vclock_len,
                }
                .into());
            }
            moves.push((s, e - s, iv.start));
            if let Some((a, b)) = sp.vclock {
                moves.push((a, b - a, iv.start + (e - s)));
            }
        }
        (None, cur) => {
            drop.extend(cur);
            drop.extend(sp.vclock);
        }
        (Some(_), None) => return Err(TaskError::SpecialMissing { pid, which: "vvar" }.into()),
    }
    match (img_vdso, sp.vdso) {
        (Some(iv), Some((s, e))) => {
            if iv.end - iv.start != e - s {
                return Err(TaskError::SpecialSize {
                    pid,
                    which: "vdso",
                    dumped: iv.end - iv.start,
                    here: e - s,
                }
                .into());
            }
            moves.push((s, e - s, iv.start));
        }
        (None, cur) => drop.extend(cur),
        (Some(_), None) => return Err(TaskError::SpecialMissing { pid, which: "vdso" }.into()),
    }
    for (s, e) in drop {
        call(t, "munmap vdso", NR_MUNMAP, [s, e - s, 0, 0, 0, 0])?;
    }
    // If a target overlaps a current piece, park the pieces in a hole first.
    let overlaps = moves
        .iter()
        .any(|&(_, len, to)| moves.iter().any(|&(s, l, _)| to < s + l && s < to + len));
    if overlaps {
        let total: u64 = moves.iter().map(|m| m.1).sum();
        let mut taken: Vec<(u64, u64)> = task.mm.vmas.iter().map(|v| (v.start, v.end)).collect();
        taken.extend(moves.iter().map(|&(s, l, _)| (s, s + l)));
        taken.push((scratch, scratch + scratch_len));
        let mut at = find_hole(&taken, total).ok_or(TaskError::NoRoom {
            pid,
            what: "no room to move the vdso",
        })?;
        for m in &mut moves {
            call(
                t,
                "mremap vdso",
                NR_MREMAP,
                [m.0, m.1, m.1, MREMAP_MAYMOVE | MREMAP_FIXED, at, 0],
            )?;
            m.0 = at;
            at += m.1;
        }
    }
    for (s, len, to) in moves {
        if s != to {
            call(
                t,
                "mremap vdso",
                NR_MREMAP,
                [s, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to, 0],
            )?;
        }
    }
    Ok(())
}

/// Sets the mm fields (code/data/brk/stack/args/env bounds, auxv, exe).
pub fn set_mm(t: &mut dyn Tracee, task: &Task, lay: &Layout, scratch: u64) -> Result<()> {
    let mm = &task.mm;
    let exe_fd = lay.fd_of(mm.exe_file_id).ok_or(TaskError::ExeMissing {
        pid: task.pid,
        id: mm.exe_file_id,
    })?;
    let mut auxv: Vec<u64> = mm.mm_saved_auxv.clone();
    // Terminate it: the kernel keeps whatever follows otherwise.
    if auxv.len() % 2 == 1 {
        auxv.push(0);
    }
    auxv.extend([0, 0]);
    let auxv_addr = scratch + 256;
    let mut st = Vec::with_capacity(104);
    for v in [
        mm.mm_start_code,
        mm.mm_end_code,
        mm.mm_start_data,
        mm.mm_end_data,
        mm.mm_start_brk,
        mm.mm_brk,
        mm.mm_start_stack,
        mm.mm_arg_start,
        mm.mm_arg_end,
        mm.mm_env_start,
        mm.mm_env_end,
        auxv_addr,
    ] {
        st.extend_from_slice(&v.to_le_bytes());
    }
    st.extend_from_slice(&((auxv.len() * 8) as u32).to_le_bytes());
    st.extend_from_slice(&(exe_fd as u32).to_le_bytes());
    let ab: Vec<u8> = auxv.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.write_mem(&[(scratch, &st), (auxv_addr, &ab)])?;
    call(
        t,
        "prctl(PR_SET_MM_MAP)",
        NR_PRCTL,
        [35, 14, scratch, st.len() as u64, 0, 0],
    )?;
    if mm.thp_disabled == Some(true) {
        call(
            t,
            "prctl(PR_SET_THP_DISABLE)",
            NR_PRCTL,
            [41, 1, 0, 0, 0, 0],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hole_is_free_in_both_layouts() {
        let taken = [
            (0x100000, 0x200000),
            (0x200000, 0x300000),
            (0x400000, 0x500000),
        ];
        assert_eq!(find_hole(&taken, 0x100000), Some(0x300000));
        assert_eq!(find_hole(&taken, 0x200000), Some(0x500000));
        assert_eq!(find_hole(&[], 0x1000), Some(0x100000));
        assert_eq!(find_hole(&[(0x100000, TASK_SIZE)], 0x1000), None);
    }
}
