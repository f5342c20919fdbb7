//! mm-PID.img (the address space: boundaries, auxv, exe, every VMA) and
//! pagemap-PID.img + pages-N.img (the contents of private memory), and
//! pagemap-shmem-INO.img for shared anonymous memory.

use super::error::DumpError;
use super::files::FileTable;
use super::imgdir::ImgDir;
use super::maps::{self, Vma};
use super::pagemap::Run;
use super::procfs;
use crate::error::Result;
use crate::image::pb;
use crate::image::typed::ImageBuilder;

/// Reads pages of a task: fills `buf` from the (address, length) pieces
/// in order, all or nothing.
pub type ReadMem<'a> = &'a dyn Fn(i32, &[(u64, usize)], &mut [u8]) -> Result<()>;

/// Gives file ids to the mapped files of a task's VMAs (in address
/// order), as CRIU does before it looks at descriptors.
pub fn map_files(_pid: i32, vmas: &mut [Vma], files: &mut FileTable) -> Result<()> {
    for v in vmas.iter_mut() {
        let Some(f) = &v.file else { continue };
        let st = super::fdscan::Stat {
            dev: f.dev,
            ino: f.ino,
            mode: f.mode,
            rdev: 0,
            size: f.size,
            uid: f.uid,
            gid: f.gid,
            nlink: 1,
        };
        if v.is(maps::VMA_AREA_MEMFD) {
            let name = if f.path.starts_with("/memfd:") {
                f.path.trim_start_matches("/memfd:").to_string()
            } else {
                f.path.clone()
            };
            let seals = memfd_seals(&f.proc_link);
            let inode_id = files.memfd_inode(&name, &st, seals, &f.proc_link);
            let id = files.new_id();
            files.push(super::files::FD_MEMFD, id, |e| {
                e.memfd = Some(pb::MemfdFileEntry {
                    id,
                    flags: 0,
                    pos: 0,
                    fown: super::files::fown(),
                    inode_id,
                })
            });
            v.shmid = id as u64;
            continue;
        }
        v.shmid = files.special_reg(&f.path, &st, &f.proc_link, true, f.deleted)? as u64;
    }
    Ok(())
}

/// F_GET_SEALS of a memfd opened through /proc (F_SEAL_SEAL when it
/// cannot be read, which is what a sealed shmem file reports).
pub fn memfd_seals(link: &str) -> u32 {
    match std::fs::File::open(link) {
        Ok(f) => nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GET_SEALS)
            .map(|s| s as u32)
            .unwrap_or(1),
        Err(_) => 1,
    }
}

/// Task facts that only an injected call can read.
#[derive(Debug, Clone, Default)]
pub struct MmExtra {
    pub brk: u64,
    pub dumpable: i32,
}

pub fn mm_entry(
    pid: i32,
    stat: &procfs::Stat,
    vmas: &[Vma],
    exe_file_id: u32,
    extra: &MmExtra,
    thp_disabled: bool,
) -> Result<pb::MmEntry> {
    Ok(pb::MmEntry {
        mm_start_code: stat.start_code,
        mm_end_code: stat.end_code,
        mm_start_data: stat.start_data,
        mm_end_data: stat.end_data,
        mm_start_stack: stat.start_stack,
        mm_start_brk: stat.start_brk,
        mm_brk: extra.brk,
        mm_arg_start: stat.arg_start,
        mm_arg_end: stat.arg_end,
        mm_env_start: stat.env_start,
        mm_env_end: stat.env_end,
        exe_file_id,
        mm_saved_auxv: procfs::auxv(pid)?,
        vmas: vmas
            .iter()
            .map(|v| pb::VmaEntry {
                start: v.start,
                end: v.end,
                pgoff: v.pgoff,
                shmid: v.shmid,
                prot: v.prot,
                flags: v.flags,
                status: v.status,
                fd: -1,
                madv: if v.madv != 0 { Some(v.madv) } else { None },
                fdflags: if v.file.is_some() { v.fdflags } else { None },
            })
            .chain(guards(pid)?)
            .collect(),
        dumpable: Some(extra.dumpable),
        aios: Vec::new(),
        thp_disabled: Some(thp_disabled),
    })
}

/// The ranges `MADV_GUARD_INSTALL` guards in `pid`'s address space, as
/// CRIU 4.2 records them: entries of status VMA_AREA_GUARD alone, after
/// the real VMAs (their pages are not dumped: [`super::pagemap`]). None
/// where the kernel cannot tell guard pages in a scan (before 6.16).
fn guards(pid: i32) -> Result<Vec<pb::VmaEntry>> {
    use crate::sys::pmscan::{scan, Query, PAGE_IS_GUARD};
    let path = format!("/proc/{pid}/pagemap");
    let f = std::fs::File::open(&path).map_err(|source| DumpError::Proc {
        pid,
        path: path.into(),
        source,
    })?;
    let q = Query {
        all: PAGE_IS_GUARD,
        shown: PAGE_IS_GUARD,
        ..Default::default()
    };
    let regions = match scan(&f, 0, crate::sys::TASK_SIZE, q) {
        Ok(r) => r,
        Err(e) if matches!(crate::sys::errno_of(&e), Some(libc::ENOTTY | libc::EINVAL)) => {
            Vec::new()
        }
        Err(source) => {
            return Err(DumpError::Pagemap {
                pid,
                addr: 0,
                source,
            }
            .into())
        }
    };
    Ok(regions
        .into_iter()
        .map(|g| pb::VmaEntry {
            start: g.start,
            end: g.end,
            status: crate::image::flags::VMA_AREA_GUARD,
            fd: -1,
            ..Default::default()
        })
        .collect())
}

/// Size of the copy buffer: pages are read in batches of this much.
const BATCH: usize = 64 << 20;

/// Writes pagemap image `pagemap_name` and pages-`pages_id`.img for `runs`
/// of `pid`'s memory (addresses in the pagemap minus `base`). Returns the
/// number of pages written.
pub fn write_pages(
    dir: &mut ImgDir,
    pagemap_name: &str,
    pages_id: u32,
    pid: i32,
    runs: &[Run],
    base: u64,
    read: ReadMem,
) -> Result<u64> {
    let mut out = super::imgdir::Stream::create(&dir.path(&format!("pages-{pages_id}.img")))?;
    let (pm, total, _) = copy_pages(&mut out, pages_id, pid, runs, base, read, &|| false)?;
    dir.finish(out)?;
    dir.write(pagemap_name, &pm)?;
    Ok(total)
}

/// Copies `runs` of `pid`'s memory into `out` in batches (one read and
/// one write per batch) and returns the pagemap image describing them and
/// the page count and the time spent reading and writing. `cancelled` is
/// polled between batches.
pub fn copy_pages(
    out: &mut super::imgdir::Stream,
    pages_id: u32,
    pid: i32,
    runs: &[Run],
    base: u64,
    read: ReadMem,
    cancelled: &dyn Fn() -> bool,
) -> Result<(
    ImageBuilder,
    u64,
    (std::time::Duration, std::time::Duration),
)> {
    let mut pm = ImageBuilder::new("PAGEMAP")?;
    pm.entry(&pb::PagemapHead { pages_id });
    let mut buf: Vec<u8> = Vec::new();
    let mut pieces: Vec<(u64, usize)> = Vec::new();
    let mut fill = 0usize;
    let mut total = 0u64;
    let mut times = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let mut flush =
        |pieces: &mut Vec<(u64, usize)>, fill: &mut usize, buf: &mut Vec<u8>| -> Result<()> {
            if *fill == 0 {
                return Ok(());
            }
            if cancelled() {
                return Err(DumpError::CopyCancelled { pid }.into());
            }
            let t = std::time::Instant::now();
            read(pid, pieces, &mut buf[..*fill])?;
            times.0 += t.elapsed();
            let t = std::time::Instant::now();
            out.write(&buf[..*fill])?;
            times.1 += t.elapsed();
            pieces.clear();
            *fill = 0;
            Ok(())
        };
    for r in runs {
        pm.entry(&pb::PagemapEntry {
            vaddr: r.vaddr - base,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(r.flags),
            nr_pages: Some(r.nr_pages),
        });
        total += r.nr_pages;
        let mut addr = r.vaddr;
        let mut left = (r.nr_pages * maps::PAGE_SIZE) as usize;
        while left > 0 {
            let n = left.min(BATCH - fill);
            if buf.len() < fill + n {
                buf.resize(fill + n, 0);
            }
            pieces.push((addr, n));
            fill += n;
            addr += n as u64;
            left -= n;
            if fill == BATCH {
                flush(&mut pieces, &mut fill, &mut buf)?;
            }
        }
    }
    flush(&mut pieces, &mut fill, &mut buf)?;
    Ok((pm, total, times))
}
