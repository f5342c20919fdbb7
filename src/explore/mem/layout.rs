//! A task's memory as a set of images holds it: its mappings (`mm-PID.img`)
//! and, for every address range, where the contents are: in a pages image
//! of this dump or of a parent dump (`parent` link, `in_parent` entries),
//! zero, in the mapped file, lazy (with a page server only), or missing.

use super::super::files::Files;
use super::super::mems::{kind_of, prot_text, vma_text, Kind, VmaIds};
use crate::error::{Error, ImagesFault, Result};
use crate::image::archive::FileReader;
use crate::image::flags::{
    VMA_ANON_SHARED, VMA_AREA_GUARD, VMA_AREA_MEMFD, VMA_AREA_SYSVIPC, VMA_AREA_VDSO,
    VMA_AREA_VSYSCALL, VMA_AREA_VVAR, VMA_FILE_PRIVATE, VMA_FILE_SHARED,
};
use crate::image::pb;
use crate::image::store::Images;
use crate::model::pagemap::{self, Held, Run, Source, PAGE};
use std::collections::HashMap;

/// How deep a chain of parent dumps is followed (a guard against loops).
const MAX_CHAIN: usize = 64;

/// Where the contents of a range are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In pages image `level` (an index into [`TaskMemory::levels`]),
    /// from this byte offset.
    Bytes { level: usize, off: u64 },
    /// Not dumped because all zero (or never touched).
    Zero,
    /// Not dumped: the mapped file holds it.
    File,
    /// Not dumped: the kernel provides it (vdso, vvar, vsyscall).
    Kernel,
    /// Not in the images: a page server serves it (lazy pages).
    Lazy,
    /// In a parent dump that is not there.
    NoParent,
    /// Placed past the end of its pages image (a truncated dump).
    Cut,
    /// No mapping.
    Unmapped,
}

impl Place {
    /// The word `x mem` uses for it.
    pub fn word(self) -> &'static str {
        match self {
            Place::Bytes { .. } => "images",
            Place::Zero => "zero",
            Place::File => "file",
            Place::Kernel => "kernel",
            Place::Lazy => "lazy",
            Place::NoParent => "missing-parent",
            Place::Cut => "cut-short",
            Place::Unmapped => "unmapped",
        }
    }
}

/// A range of addresses whose contents are in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub start: u64,
    pub end: u64,
    pub place: Place,
}

/// One dump's pages of the task, or of a shared segment.
pub struct Level {
    pub images: Images,
    /// The pages image.
    pub pages: String,
    /// Sorted by address.
    pub runs: Vec<Run>,
    /// 0 for this dump, 1 for its parent, ...
    pub depth: usize,
    /// The size of the pages image: what the runs place past it is not
    /// in the images, whatever the pagemap says.
    size: u64,
    reader: Option<FileReader>,
}

impl Level {
    fn load(images: &Images, pagemap_name: &str, depth: usize) -> Result<Option<Level>> {
        if !images.exists(pagemap_name) {
            return Ok(None);
        }
        let (pages_id, entries) = images.pagemap(pagemap_name)?;
        let mut runs = pagemap::runs(&entries);
        runs.sort_by_key(|r| r.vaddr);
        let pages = format!("pages-{pages_id}.img");
        // A missing pages image is an error (named) only when some run
        // needs it.
        let size = match pagemap::bytes_needed(&runs) {
            0 => 0,
            _ => images.size(&pages)?,
        };
        Ok(Some(Level {
            images: images.clone(),
            pages,
            runs,
            depth,
            size,
            reader: None,
        }))
    }

    /// Fills `buf` from byte `off` of the pages image; short only at its end.
    pub fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<usize> {
        if self.reader.is_none() {
            self.reader = Some(self.images.reader(&self.pages)?);
        }
        self.reader
            .as_mut()
            .expect("opened above")
            .read_at(off, buf)
    }
}

/// What backs a mapping where the images hold no pages.
#[derive(Clone, Copy, Debug)]
enum Backing {
    /// Private memory: pages of the task's chain; the rest is `rest`.
    Private { rest: Place },
    /// Shared memory: pages of segment chain `chain`, from page offset
    /// `pgoff` of it.
    Shared { chain: usize, pgoff: u64 },
    /// Nothing is dumped: the contents are all `rest`.
    None { rest: Place },
}

/// A mapping of the task.
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub prot: String,
    /// What is mapped, as `x mems` says it (`/bin/sh + 0x1000`, `[stack]`).
    pub what: String,
    backing: Backing,
}

pub struct TaskMemory {
    pub pid: u32,
    pub mappings: Vec<Mapping>,
    pub levels: Vec<Level>,
    /// Level indexes of the task's chain, this dump first.
    chain: Vec<usize>,
    /// Level indexes of each shared segment's chain.
    shared: Vec<Vec<usize>>,
}

impl TaskMemory {
    /// Reads task `pid` of `images`: its mappings and its pagemaps along
    /// the chain of parent dumps that are there.
    pub fn load(images: &Images, pid: u32) -> Result<TaskMemory> {
        let mm = images.read_one::<pb::MmEntry>(&format!("mm-{pid}.img"), "MM")?;
        let mut files = Files::new(images);
        let mut vids = VmaIds::default();
        let mut mem = TaskMemory {
            pid,
            mappings: Vec::new(),
            levels: Vec::new(),
            chain: Vec::new(),
            shared: Vec::new(),
        };
        let pm_name = format!("pagemap-{pid}.img");
        let mut at = Some(images.clone());
        let mut depth = 0;
        while let Some(imgs) = at.take() {
            let Some(level) = Level::load(&imgs, &pm_name, depth)? else {
                if depth == 0 {
                    return Err(Error::io(
                        images.label(&pm_name).display().to_string(),
                        std::io::Error::from_raw_os_error(libc::ENOENT),
                    ));
                }
                break;
            };
            let needs_parent = level.runs.iter().any(|r| r.held == Held::Parent);
            mem.chain.push(mem.levels.len());
            mem.levels.push(level);
            depth += 1;
            if needs_parent && depth < MAX_CHAIN {
                at = imgs.parent();
            }
        }
        let mut segs: HashMap<u64, usize> = HashMap::new();
        let memfds = if mm.vmas.iter().any(|v| v.status & VMA_AREA_MEMFD != 0) {
            memfd_segments(images)?
        } else {
            HashMap::new()
        };
        let mm_fault = |why| Error::Images {
            file: images.label(&format!("mm-{pid}.img")),
            why,
        };
        let mut vmas = mm.vmas;
        // Guard ranges (CRIU 4.2's VMA_AREA_GUARD entries) lie within
        // mappings and are none themselves.
        vmas.retain(|v| v.status & VMA_AREA_GUARD == 0);
        // Sizes below are `end - start`: an empty or reversed vma would
        // wrap them into nonsense page counts.
        if let Some(v) = vmas.iter().find(|v| v.end <= v.start) {
            return Err(mm_fault(ImagesFault::VmaReversed {
                start: v.start,
                end: v.end,
            }));
        }
        vmas.sort_by_key(|v| v.start);
        if let Some(w) = vmas.windows(2).find(|w| w[0].end > w[1].start) {
            return Err(mm_fault(ImagesFault::VmasOverlap {
                a: (w[0].start, w[0].end),
                b: (w[1].start, w[1].end),
            }));
        }
        for vma in &vmas {
            let st = vma.status;
            // A shared memfd mapping shows the memfd's contents, which
            // are dumped as a segment by the inode's shmid.
            let memfd_seg = (st & VMA_AREA_MEMFD != 0 && st & VMA_FILE_SHARED != 0)
                .then(|| memfds.get(&vma.shmid).copied())
                .flatten();
            let seg = if st & (VMA_ANON_SHARED | VMA_AREA_SYSVIPC) != 0 {
                Some(vma.shmid)
            } else {
                memfd_seg
            };
            let backing = if let Some(shmid) = seg {
                let chain = match segs.get(&shmid) {
                    Some(&c) => c,
                    None => {
                        let name = format!("pagemap-shmem-{shmid}.img");
                        let mut c = Vec::new();
                        if let Some(l) = Level::load(images, &name, 0)? {
                            c.push(mem.levels.len());
                            mem.levels.push(l);
                        }
                        mem.shared.push(c);
                        segs.insert(shmid, mem.shared.len() - 1);
                        mem.shared.len() - 1
                    }
                };
                Backing::Shared {
                    chain,
                    pgoff: vma.pgoff,
                }
            } else if st & (VMA_AREA_VDSO | VMA_AREA_VSYSCALL | VMA_AREA_VVAR) != 0 {
                // CRIU dumps the vdso's pages too; the rest comes with the kernel.
                Backing::Private {
                    rest: Place::Kernel,
                }
            } else if st & VMA_FILE_SHARED != 0 {
                Backing::None { rest: Place::File }
            } else if st & VMA_FILE_PRIVATE != 0 {
                Backing::Private { rest: Place::File }
            } else {
                Backing::Private { rest: Place::Zero }
            };
            let kind: Kind = kind_of(vma, &mut files, &mut vids)?;
            let mut what = vma_text(kind).trim_start().to_string();
            if what.is_empty() {
                what = if st & VMA_AREA_VVAR != 0 {
                    "[vvar]"
                } else {
                    "anon"
                }
                .to_string();
            }
            mem.mappings.push(Mapping {
                start: vma.start,
                end: vma.end,
                prot: prot_text(vma.prot),
                what,
                backing,
            });
        }
        Ok(mem)
    }

    /// The mapping holding `addr`, by index.
    pub fn mapping_at(&self, addr: u64) -> Option<usize> {
        let i = self.mappings.partition_point(|m| m.end <= addr);
        (i < self.mappings.len() && self.mappings[i].start <= addr).then_some(i)
    }

    /// Where the contents of mapping `i` are, in address order.
    pub fn pieces_of(&self, i: usize) -> Vec<Piece> {
        let m = &self.mappings[i];
        self.pieces(m.start, m.end)
    }

    /// Where the contents of `[start, end)` are, in address order, gaps
    /// between mappings included.
    pub fn pieces(&self, start: u64, end: u64) -> Vec<Piece> {
        let mut out = Pieces(Vec::new());
        let mut at = start;
        let mut i = self.mappings.partition_point(|m| m.end <= start);
        while at < end {
            let Some(m) = self.mappings.get(i).filter(|m| m.start < end) else {
                out.push(at, end, Place::Unmapped);
                break;
            };
            if m.start > at {
                out.push(at, m.start, Place::Unmapped);
                at = m.start;
            }
            let to = m.end.min(end);
            match m.backing {
                Backing::None { rest } => out.push(at, to, rest),
                Backing::Private { rest } => self.resolve(&self.chain, at, to, 0, rest, &mut out),
                Backing::Shared { chain, pgoff } => {
                    // Segment offset = address - start + pgoff.
                    let key = (at - m.start).saturating_add(pgoff);
                    let delta = at.wrapping_sub(key);
                    let chain = &self.shared[chain];
                    self.resolve(chain, key, key + (to - at), delta, Place::Zero, &mut out);
                }
            }
            at = to;
            i += 1;
        }
        out.0
    }

    /// Places keys `[s, e)` of `chain` (addresses are keys + `delta`):
    /// pages of its first level, parents for `in_parent` runs, `rest`
    /// where no run covers them.
    fn resolve(&self, chain: &[usize], s: u64, e: u64, delta: u64, rest: Place, out: &mut Pieces) {
        let runs: Vec<&[Run]> = chain.iter().map(|&l| &self.levels[l].runs[..]).collect();
        let a = |k: u64| k.wrapping_add(delta);
        pagemap::place(&runs, s, e, &mut |from, to, src| {
            let place = match src {
                Source::Level { level, off } => {
                    let l = chain[level];
                    // Pages past the end of the pages image are not held
                    // (nor is a last page the image holds only part of).
                    let whole = self.levels[l].size / PAGE * PAGE;
                    let held = whole.saturating_sub(off);
                    let split = from.saturating_add(held).min(to);
                    out.push(a(from), a(split), Place::Bytes { level: l, off });
                    out.push(a(split), a(to), Place::Cut);
                    return;
                }
                Source::Lazy { .. } => Place::Lazy,
                // An empty chain (a segment without pagemap) is all `rest`.
                Source::NoParent if chain.is_empty() => rest,
                Source::NoParent => Place::NoParent,
                Source::Absent { .. } => rest,
            };
            out.push(a(from), a(to), place);
        });
    }
}

/// The segment (shmid) holding the contents of each memfd, by file id:
/// `files.img` gives a memfd file's inode, `memfd.img` the inode's shmid.
fn memfd_segments(images: &Images) -> Result<HashMap<u64, u64>> {
    let mut inode_of = HashMap::new();
    if images.exists("files.img") {
        images.for_each::<pb::FileEntry>("files.img", "FILES", |e| {
            if let Some(m) = e.memfd {
                inode_of.insert(u64::from(e.id), u64::from(m.inode_id));
            }
            Ok(())
        })?;
    }
    let mut shmid_of = HashMap::new();
    if images.exists("memfd.img") {
        images.for_each::<pb::MemfdInodeEntry>("memfd.img", "MEMFD_INODE", |e| {
            shmid_of.insert(e.inode_id, u64::from(e.shmid));
            Ok(())
        })?;
    }
    Ok(inode_of
        .into_iter()
        .filter_map(|(id, ino)| Some((id, *shmid_of.get(&ino)?)))
        .collect())
}

/// Pieces in address order, neighbours in one place merged.
struct Pieces(Vec<Piece>);

impl Pieces {
    fn push(&mut self, start: u64, end: u64, place: Place) {
        if start >= end {
            return;
        }
        if let Some(last) = self.0.last_mut() {
            let joins = last.end == start
                && match (last.place, place) {
                    (Place::Bytes { level: l1, off: o1 }, Place::Bytes { level: l2, off: o2 }) => {
                        l1 == l2 && o1 + (last.end - last.start) == o2
                    }
                    (p, q) => p == q,
                };
            if joins {
                last.end = end;
                return;
            }
        }
        self.0.push(Piece { start, end, place });
    }
}
