//! Pagemap images (`pagemap-N.img`, `pagemap-shmem-ID.img`): which pages
//! a dump holds and where. One reading of the entries' flags for the
//! restore, `x mem` and the shared-memory reader.
//!
//! An entry covers `nr_pages` pages from `vaddr` (for shared memory, from
//! that offset of the segment). Its pages are in the pages image when it
//! is PE_PRESENT, one run after another in entry order; PE_PARENT means
//! the previous dump of a chain holds them, PE_LAZY alone that a page
//! server serves them. Entries of old images have no flags: `in_parent`
//! then tells.

use crate::image::flags::{PE_LAZY, PE_PARENT, PE_PRESENT};
use crate::image::pb;

pub const PAGE: u64 = 4096;

/// Where the pages of a run are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// In the pages image, from this byte offset.
    Here(u64),
    /// In the parent dump's images.
    Parent,
    /// Only with a page server (lazy pages).
    Lazy,
}

/// A run of pages of one pagemap entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub vaddr: u64,
    pub pages: u64,
    pub held: Held,
}

impl Run {
    pub fn bytes(&self) -> u64 {
        self.pages.saturating_mul(PAGE)
    }

    pub fn end(&self) -> u64 {
        self.vaddr.saturating_add(self.bytes())
    }
}

/// The flags of an entry, old images' `in_parent` read as flags.
pub fn flags(e: &pb::PagemapEntry) -> u32 {
    e.flags.unwrap_or(if e.in_parent == Some(true) {
        PE_PARENT
    } else {
        PE_PRESENT
    })
}

/// The runs of a pagemap's entries (after its head), in entry order, with
/// the offsets of present pages in the pages image. Entries with no flag
/// that places their pages are left out.
pub fn runs(entries: &[pb::PagemapEntry]) -> Vec<Run> {
    let mut off = 0u64;
    let mut v = Vec::with_capacity(entries.len());
    for e in entries {
        let pages = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
        let f = flags(e);
        let held = if f & PE_PRESENT != 0 {
            let h = Held::Here(off);
            off = off.saturating_add(pages.saturating_mul(PAGE));
            h
        } else if f & PE_PARENT != 0 {
            Held::Parent
        } else if f & PE_LAZY != 0 {
            Held::Lazy
        } else {
            continue;
        };
        v.push(Run {
            vaddr: e.vaddr,
            pages,
            held,
        });
    }
    v
}

/// The bytes of the pages image that `runs` need.
pub fn bytes_needed(runs: &[Run]) -> u64 {
    runs.iter()
        .filter_map(|r| match r.held {
            Held::Here(off) => Some(off + r.bytes()),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}
