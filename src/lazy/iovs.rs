//! What a lazy-pages daemon still has to bring into one address space:
//! ranges of addresses, each with where its bytes are in the pages image,
//! kept sorted and disjoint, and changed as the task changes its
//! mappings (a range moved by mremap keeps its image offset; one dropped
//! by munmap or madvise is forgotten; a fork copies the list).

use crate::model::pagemap::PAGE;

/// Bytes one page table maps (x86-64: 512 entries of 4 KiB).
pub const TABLE: u64 = 2 << 20;

/// Pages of `[start, end)` whose bytes are at `off` in the pages image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iov {
    pub start: u64,
    pub end: u64,
    pub off: u64,
}

impl Iov {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The part of `self` inside `[s, e)`.
    fn clip(&self, s: u64, e: u64) -> Option<Iov> {
        let (a, b) = (self.start.max(s), self.end.min(e));
        (a < b).then(|| Iov {
            start: a,
            end: b,
            off: self.off + (a - self.start),
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Iovs(Vec<Iov>);

impl Iovs {
    /// Lazy runs `(vaddr, len, off)` cut at the edges of the mappings
    /// `vmas` (`(start, end)`, sorted): a copy may not cross one. Parts
    /// outside every mapping are left out.
    pub fn new(runs: &[(u64, u64, u64)], vmas: &[(u64, u64)]) -> Iovs {
        let mut v = Vec::new();
        for &(vaddr, len, off) in runs {
            let run = Iov {
                start: vaddr,
                end: vaddr + len,
                off,
            };
            let i = vmas.partition_point(|m| m.1 <= run.start);
            for &(s, e) in vmas[i..].iter().take_while(|m| m.0 < run.end) {
                v.extend(run.clip(s, e));
            }
        }
        v.sort_by_key(|i| i.start);
        Iovs(v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes left.
    pub fn bytes(&self) -> u64 {
        self.0.iter().map(Iov::len).sum()
    }

    /// Bytes left in `[start, end)`.
    pub fn bytes_in(&self, start: u64, end: u64) -> u64 {
        self.0
            .iter()
            .filter_map(|r| r.clip(start, end))
            .map(|r| r.len())
            .sum()
    }

    /// Takes up to `max` bytes at `addr` (page aligned), within one
    /// range, if a range holds `addr`.
    pub fn take_at(&mut self, addr: u64, max: u64) -> Option<Iov> {
        let i = self
            .0
            .iter()
            .position(|r| r.start <= addr && addr < r.end)?;
        let r = self.0[i];
        let end = r.end.min(addr.saturating_add(max.max(PAGE)));
        let got = r.clip(addr, end)?;
        self.remove(got.start, got.end);
        Some(got)
    }

    /// Takes up to `max` bytes from the start of the first range left,
    /// within one page table's span ([`TABLE`]).
    pub fn take_next(&mut self, max: u64) -> Option<Iov> {
        let r = *self.0.first()?;
        let table_end = (r.start | (TABLE - 1)).saturating_add(1);
        self.take_at(r.start, max.min(table_end - r.start))
    }

    /// Takes up to `max` bytes from the end of the last range left,
    /// within one page table's span: copies taken from both ends at once
    /// fill different page tables (each copy holds its table's lock).
    pub fn take_last(&mut self, max: u64) -> Option<Iov> {
        let r = *self.0.last()?;
        let table_start = (r.end - 1) & !(TABLE - 1);
        let start = r
            .end
            .saturating_sub(max.max(PAGE))
            .max(table_start)
            .max(r.start);
        let got = r.clip(start, r.end)?;
        self.remove(got.start, got.end);
        Some(got)
    }

    /// Puts back a range taken but not copied (its mapping was
    /// changing): it goes in again after the event that says how.
    pub fn put_back(&mut self, iov: Iov) {
        if !iov.is_empty() {
            let i = self.0.partition_point(|r| r.start < iov.start);
            self.0.insert(i, iov);
        }
    }

    /// Forgets `[start, end)` (unmapped, or dropped by madvise: its pages
    /// read as zero from now on, or the address is not mapped at all).
    pub fn remove(&mut self, start: u64, end: u64) {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for r in self.0.drain(..) {
            if r.end <= start || r.start >= end {
                out.push(r);
                continue;
            }
            out.extend(r.clip(r.start, start));
            out.extend(r.clip(end, r.end));
        }
        self.0 = out;
    }

    /// mremap moved `[from, from+len)` to `to`: what was left there
    /// moves with it; what was at the target is gone.
    pub fn remap(&mut self, from: u64, to: u64, len: u64) {
        let moved: Vec<Iov> = self
            .0
            .iter()
            .filter_map(|r| r.clip(from, from + len))
            .map(|r| Iov {
                start: r.start - from + to,
                end: r.end - from + to,
                off: r.off,
            })
            .collect();
        self.remove(from, from + len);
        self.remove(to, to + len);
        self.0.extend(moved);
        self.0.sort_by_key(|i| i.start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const P: u64 = PAGE;

    fn iov(s: u64, e: u64, off: u64) -> Iov {
        Iov {
            start: s * P,
            end: e * P,
            off: off * P,
        }
    }

    #[test]
    fn runs_are_cut_at_mapping_edges() {
        let runs = [(0, 10 * P, 0), (20 * P, 2 * P, 10 * P)];
        let vmas = [(0, 4 * P), (4 * P, 8 * P), (20 * P, 21 * P)];
        let v = Iovs::new(&runs, &vmas);
        assert_eq!(v.0, vec![iov(0, 4, 0), iov(4, 8, 4), iov(20, 21, 10)]);
        assert_eq!(v.bytes(), 9 * P);
    }

    #[test]
    fn a_fault_takes_its_pages_and_the_rest_stays() {
        let mut v = Iovs(vec![iov(0, 10, 0)]);
        assert_eq!(v.take_at(3 * P, 2 * P), Some(iov(3, 5, 3)));
        assert_eq!(v.0, vec![iov(0, 3, 0), iov(5, 10, 5)]);
        assert_eq!(v.take_at(3 * P, P), None);
        assert_eq!(v.take_next(100 * P), Some(iov(0, 3, 0)));
        assert_eq!(v.take_next(2 * P), Some(iov(5, 7, 5)));
    }

    #[test]
    fn copies_from_both_ends_stay_in_their_own_page_tables() {
        let t = TABLE / P;
        // Three page tables' worth, starting 4 pages into the first.
        let mut v = Iovs(vec![iov(4, 3 * t + 4, 0)]);
        assert_eq!(v.take_next(100 * t * P), Some(iov(4, t, 0)));
        assert_eq!(v.take_next(2 * P), Some(iov(t, t + 2, t - 4)));
        assert_eq!(
            v.take_last(100 * t * P),
            Some(iov(3 * t, 3 * t + 4, 3 * t - 4))
        );
        assert_eq!(v.take_last(3 * P), Some(iov(3 * t - 3, 3 * t, 3 * t - 7)));
        assert_eq!(v.take_last(0), Some(iov(3 * t - 4, 3 * t - 3, 3 * t - 8)));
        assert_eq!(
            v.take_last(100 * t * P),
            Some(iov(2 * t, 3 * t - 4, 2 * t - 4))
        );
        assert_eq!(v.take_next(100 * t * P), Some(iov(t + 2, 2 * t, t - 2)));
        assert_eq!(v.take_last(P), None);
    }

    #[test]
    fn unmap_and_remap_follow_the_task() {
        let mut v = Iovs(vec![iov(0, 10, 0), iov(20, 30, 10)]);
        v.remove(8 * P, 22 * P);
        assert_eq!(v.0, vec![iov(0, 8, 0), iov(22, 30, 12)]);
        // Pages 2..6 move to 40..44, over nothing; 24..26 move onto 0..2.
        v.remap(2 * P, 40 * P, 4 * P);
        assert_eq!(
            v.0,
            vec![iov(0, 2, 0), iov(6, 8, 6), iov(22, 30, 12), iov(40, 44, 2)]
        );
        v.remap(24 * P, 0, 2 * P);
        assert_eq!(
            v.0,
            vec![
                iov(0, 2, 14),
                iov(6, 8, 6),
                iov(22, 24, 12),
                iov(26, 30, 16),
                iov(40, 44, 2)
            ]
        );
    }
}
