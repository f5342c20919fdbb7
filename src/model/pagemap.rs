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

/// The runs of entries flagged PE_LAZY: what a lazy restore leaves to
/// the lazy-pages daemon. Their pages are in the pages image (with their
/// offsets there), or, flagged PE_LAZY alone (`dump --lazy-pages`), only
/// with the dump's page server.
pub fn lazy_runs(entries: &[pb::PagemapEntry]) -> Vec<Run> {
    let mut off = 0u64;
    let mut v = Vec::new();
    for e in entries {
        let pages = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
        let f = flags(e);
        let held = match f & PE_PRESENT != 0 {
            true => Held::Here(off),
            false => Held::Lazy,
        };
        if f & PE_LAZY != 0 && f & PE_PARENT == 0 {
            v.push(Run {
                vaddr: e.vaddr,
                pages,
                held,
            });
        }
        if f & PE_PRESENT != 0 {
            off = off.saturating_add(pages.saturating_mul(PAGE));
        }
    }
    v
}

/// Where a range of a chain's pages is (see [`place`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// In the pages image of dump `level` of the chain (0: the first),
    /// from byte `off`.
    Level { level: usize, off: u64 },
    /// Only with a page server, says dump `level`.
    Lazy { level: usize },
    /// `in_parent` in the last dump of the chain: no dump holds it.
    NoParent,
    /// No run of dump `level` covers it (what that means is the
    /// mapping's business: zero, the file's contents...; below the first
    /// dump, a hole in the chain).
    Absent { level: usize },
}

/// Places `[s, e)` along a chain of dumps (`chain[0]` the newest, each
/// list of runs sorted by address): calls `f(start, end, source)` for
/// consecutive pieces, in order, following `in_parent` runs down the
/// chain. The one walk of parent chains, for the restore and `x mem`.
pub fn place(chain: &[&[Run]], s: u64, e: u64, f: &mut impl FnMut(u64, u64, Source)) {
    place_from(chain, 0, s, e, f)
}

fn place_from(
    chain: &[&[Run]],
    level: usize,
    s: u64,
    e: u64,
    f: &mut impl FnMut(u64, u64, Source),
) {
    let Some(runs) = chain.get(level) else {
        f(s, e, Source::NoParent);
        return;
    };
    let mut i = runs.partition_point(|r| r.end() <= s);
    let mut at = s;
    while at < e {
        let Some(r) = runs.get(i).filter(|r| r.vaddr < e) else {
            f(at, e, Source::Absent { level });
            break;
        };
        i += 1;
        if r.end() <= at {
            continue;
        }
        if r.vaddr > at {
            f(at, r.vaddr, Source::Absent { level });
            at = r.vaddr;
        }
        let to = r.end().min(e);
        match r.held {
            Held::Here(off) => f(
                at,
                to,
                Source::Level {
                    level,
                    off: off + (at - r.vaddr),
                },
            ),
            Held::Lazy => f(at, to, Source::Lazy { level }),
            Held::Parent => place_from(chain, level + 1, at, to, f),
        }
        at = to;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(vaddr: u64, pages: u64, held: Held) -> Run {
        Run { vaddr, pages, held }
    }

    #[test]
    fn a_chain_is_followed_run_by_run() {
        let p = PAGE;
        let newest = [
            run(0, 2, Held::Parent),
            run(2 * p, 1, Held::Here(0)),
            run(4 * p, 1, Held::Lazy),
        ];
        let parent = [run(0, 1, Held::Here(8 * p)), run(p, 1, Held::Parent)];
        let mut got = Vec::new();
        place(&[&newest, &parent], 0, 6 * p, &mut |s, e, src| {
            got.push((s / p, e / p, src))
        });
        assert_eq!(
            got,
            vec![
                (
                    0,
                    1,
                    Source::Level {
                        level: 1,
                        off: 8 * p
                    }
                ),
                (1, 2, Source::NoParent),
                (2, 3, Source::Level { level: 0, off: 0 }),
                (3, 4, Source::Absent { level: 0 }),
                (4, 5, Source::Lazy { level: 0 }),
                (5, 6, Source::Absent { level: 0 }),
            ]
        );
        // A range that starts inside a run keeps its offset.
        let mut got = Vec::new();
        place(&[&parent], p / 2, p, &mut |s, e, src| got.push((s, e, src)));
        assert_eq!(
            got,
            vec![(
                p / 2,
                p,
                Source::Level {
                    level: 0,
                    off: 8 * p + p / 2
                }
            )]
        );
    }
}
