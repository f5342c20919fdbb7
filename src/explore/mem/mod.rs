//! `crit x DIR|ARCHIVE mem PID`: a task's memory as the images hold it.
//!
//! * No option: per mapping, how many of its pages the images hold (in
//!   this dump, in parent dumps) and what the rest is (`zero`: anonymous
//!   memory never written or all zero; `file`: the mapped file holds it;
//!   `kernel`: vdso and friends; `lazy`: only a page server has it;
//!   `missing-parent`: a parent dump that is not there has it; `cut-short`:
//!   the pagemap places it past the end of its pages image).
//! * `--addr A --len N`: those bytes, as `hexdump -C` prints them (equal
//!   lines folded into `*`); ranges the images do not hold are one line
//!   that says what they are.
//! * `--search TEXT` / `--search-hex HEX`: every match in the pages the
//!   images hold (a match may span pages and mappings that are adjacent),
//!   with its address and mapping.
//!
//! Pages are read in 1 MiB chunks through pread (or, inside a compressed
//! archive, decompressed as they are read), so memory stays bounded
//! whatever the size of the pages. `--json` prints the same as one JSON
//! document (shapes in docs/explore.md).

mod dump;
mod layout;
mod search;

use super::Out;
use crate::error::Result;
use crate::image::store::Images;
use crate::model::pagemap::PAGE;
use layout::{Place, TaskMemory};
use serde_json::json;

/// What `x mem` prints.
pub enum MemView {
    Summary,
    Dump { addr: u64, len: u64 },
    Search(Vec<u8>),
}

pub fn run(images: &Images, pid: u32, view: &MemView, json: bool, out: &mut Out) -> Result<()> {
    let mut mem = TaskMemory::load(images, pid)?;
    match view {
        MemView::Summary => summary(&mem, json, out),
        MemView::Dump { addr, len } => dump::run(&mut mem, *addr, *len, json, out),
        MemView::Search(needle) => search::run(&mut mem, needle, json, out),
    }
}

/// Pages of each kind in one mapping.
#[derive(Default, Clone, Copy)]
struct Counts {
    here: u64,
    parent: u64,
    lazy: u64,
    missing: u64,
    /// Placed past the end of their pages image (part of `rest`).
    cut: u64,
    rest: u64,
}

fn summary(mem: &TaskMemory, json: bool, out: &mut Out) -> Result<()> {
    let mut rows = Vec::new();
    let mut total = Counts::default();
    for (i, m) in mem.mappings.iter().enumerate() {
        let mut c = Counts::default();
        let mut rest = None;
        for p in mem.pieces_of(i) {
            let n = (p.end - p.start).div_ceil(PAGE);
            match p.place {
                Place::Bytes { level, .. } if mem.levels[level].depth == 0 => c.here += n,
                Place::Bytes { .. } => c.parent += n,
                Place::Lazy => c.lazy += n,
                Place::NoParent => c.missing += n,
                // Named before any other rest: the pagemap claims these.
                Place::Cut => {
                    c.cut += n;
                    c.rest += n;
                    rest = Some(Place::Cut.word());
                }
                other => {
                    c.rest += n;
                    if c.cut == 0 {
                        rest = Some(other.word());
                    }
                }
            }
        }
        total.here += c.here;
        total.parent += c.parent;
        total.lazy += c.lazy;
        total.missing += c.missing;
        total.cut += c.cut;
        total.rest += c.rest;
        rows.push((m, c, rest.unwrap_or("-")));
    }
    if json {
        let maps: Vec<_> = rows
            .iter()
            .map(|(m, c, rest)| {
                json!({
                    "start": format!("{:#x}", m.start),
                    "end": format!("{:#x}", m.end),
                    "prot": m.prot,
                    "what": m.what,
                    "pages": (m.end - m.start).div_ceil(PAGE),
                    "in_images": c.here,
                    "in_parent": c.parent,
                    "lazy": c.lazy,
                    "missing_parent": c.missing,
                    "rest": c.rest,
                    "rest_is": rest,
                })
            })
            .collect();
        return out.json(&json!({
            "pid": mem.pid,
            "page_size": PAGE,
            "in_images": total.here,
            "in_parent": total.parent,
            "lazy": total.lazy,
            "missing_parent": total.missing,
            "cut_short": total.cut,
            "parents": mem.levels.iter().map(|l| l.depth).max().unwrap_or(0),
            "mappings": maps,
        }));
    }
    out.put(format_args!(
        "pid {}: {} mappings; pages in the images: {} ({} KiB), in parent dumps: {}, lazy: {}, in a missing parent: {}\n",
        mem.pid,
        mem.mappings.len(),
        total.here,
        total.here * PAGE / 1024,
        total.parent,
        total.lazy,
        total.missing
    ))?;
    if total.cut > 0 {
        out.put(format_args!(
            "{} pages are not in the images: the pagemap places them past the end of their pages image\n",
            total.cut
        ))?;
    }
    out.put(format_args!(
        "{:>16} {:>16} {:<4} {:>8} {:>8} {:>8} {:>6} {:>8}  {:<7} {}\n",
        "START", "END", "PROT", "PAGES", "IMAGES", "PARENT", "LAZY", "REST", "REST-IS", "WHAT"
    ))?;
    for (m, c, rest) in rows {
        out.put(format_args!(
            "{:>16x} {:>16x} {:<4} {:>8} {:>8} {:>8} {:>6} {:>8}  {:<7} {}\n",
            m.start,
            m.end,
            m.prot,
            (m.end - m.start).div_ceil(PAGE),
            c.here,
            c.parent,
            c.lazy,
            c.rest + c.missing,
            rest,
            m.what
        ))?;
    }
    Ok(())
}
