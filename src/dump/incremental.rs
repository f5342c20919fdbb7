//! Dumps on top of a previous one (`--prev-images-dir`, and each round of
//! `pre-dump` and `--pre-copy`): a page that was not written since the
//! previous dump, and that the previous dump holds, is recorded in the
//! pagemap as PE_PARENT instead of copied, as CRIU does; the images
//! directory gets a `parent` link to the previous one, which restores
//! (crit's and CRIU's) follow.
//!
//! What "not written since" means comes from the trackers the previous
//! dump left ([`super::track`]); a task without one (started since, or
//! tracking lost) is copied whole.

use super::error::DumpError;
use super::maps::Vma;
use super::pagemap::{Run, PE_PARENT};
use super::track::{Ranges, Trackers};
use crate::error::Result;
use crate::image::store::Images;
use crate::model::pagemap::{self as pm, Held};
use std::path::{Path, PathBuf};

/// The previous dump and the trackers it left.
pub struct Parent {
    /// The `parent` link's target: as given on the command line (CRIU's
    /// rule: relative to the images directory).
    pub link: PathBuf,
    /// Where it is from here.
    pub dir: PathBuf,
    images: Images,
    pub trackers: Trackers,
}

/// Where a dump that sent its pages to a page server keeps the pagemap
/// of task `vpid` it sent (the server writes its own copy, which is what
/// restores read): what a dump on top of this one may leave to it. A
/// hidden name, which restores (crit's and CRIU's) do not look at.
pub fn sent_pagemap(vpid: i32) -> String {
    format!(".crit-sent-pagemap-{vpid}")
}

impl Parent {
    /// Opens the previous dump `prev` of images directory `dir` and takes
    /// its trackers from its keeper: they must be of the tree of `root`
    /// (else they go back to a keeper of their own, and this fails).
    pub fn open(dir: &Path, prev: &Path, root: i32) -> Result<Parent> {
        let at = if prev.is_absolute() {
            prev.to_path_buf()
        } else {
            dir.join(prev)
        };
        if !at.join("inventory.img").is_file() {
            return Err(DumpError::NotPrevImages { dir: at }.into());
        }
        let images = Images::open(&at)?;
        let trackers = super::track::keep::take(&at)?
            .ok_or_else(|| DumpError::NoTracking { dir: at.clone() })?;
        let start = super::procfs::start_time(root);
        if start.is_none_or(|s| !trackers.has(root, s)) {
            super::track::keep::hand_off(&at, &trackers)?;
            return Err(DumpError::OtherTree { dir: at, pid: root }.into());
        }
        Ok(Parent {
            link: prev.to_path_buf(),
            dir: at,
            images,
            trackers,
        })
    }

    /// Hands the trackers taken from the previous dump's keeper back to
    /// a keeper of it, after a dump on top of it failed.
    fn give_back(self, log: &super::progress::Log) {
        Taken::of(&self).give_back(self.trackers, false, log)
    }

    /// A previous dump made by this process (a round of `--pre-copy`),
    /// at `dir` (its `images`), linked to as `link`, with its trackers.
    pub fn of_round(link: PathBuf, dir: PathBuf, images: Images, trackers: Trackers) -> Parent {
        Parent {
            images,
            link,
            dir,
            trackers,
        }
    }

    /// The pages the previous dump holds (itself or through its own
    /// parents) for task `vpid`, as address ranges. A previous dump that
    /// sent its pages to a page server kept a copy of each pagemap it
    /// sent ([`sent_pagemap`]).
    pub fn held(&self, vpid: i32) -> Result<Ranges> {
        let mut name = format!("pagemap-{vpid}.img");
        if !self.images.exists(&name) {
            name = sent_pagemap(vpid);
        }
        if !self.images.exists(&name) {
            return Ok(Ranges::new());
        }
        let (_, entries) = self.images.pagemap(&name)?;
        let mut out = Ranges::new();
        for r in pm::runs(&entries) {
            if matches!(r.held, Held::Here(_) | Held::Parent) {
                match out.last_mut() {
                    Some(l) if l.1 == r.vaddr => l.1 = r.end(),
                    _ => out.push((r.vaddr, r.end())),
                }
            }
        }
        Ok(out)
    }

    /// `runs` (the pages `pid` has now) with what may come from the
    /// previous dump marked PE_PARENT. `start` is the task's start time,
    /// `vpid` its pid in the images.
    pub fn apply(
        &self,
        pid: i32,
        start: u64,
        vpid: i32,
        vmas: &[Vma],
        runs: Vec<Run>,
    ) -> Result<(Vec<Run>, u64)> {
        let Some(t) = self.trackers.get(pid, start) else {
            return Ok((runs, 0));
        };
        let changed = t.changed(vmas);
        t.note_pins(vmas);
        self.split_changed(vpid, runs, &changed)
    }

    /// `runs` of task `vpid` with the pages that are not in `changed`
    /// (its tracker's report) and that the previous dump holds marked
    /// PE_PARENT; returns them and how many pages that is.
    pub fn split_changed(
        &self,
        vpid: i32,
        runs: Vec<Run>,
        changed: &Ranges,
    ) -> Result<(Vec<Run>, u64)> {
        let held = self.held(vpid)?;
        Ok(split(&runs, changed, &held))
    }
}

/// Runs `dump` on top of `parent` (from [`Parent::open`]) and returns
/// what it returns, with the trackers to go on: those it made, and the
/// parent's for the other tasks. If it fails, the parent's trackers go
/// back to a keeper of the parent ([`Parent::give_back`]; if even that
/// fails, `log` says why and the dump's own error is the one reported).
pub fn on_top<T>(
    parent: Option<Parent>,
    log: &super::progress::Log,
    dump: impl FnOnce(Option<&Parent>) -> Result<(T, Trackers)>,
) -> Result<(T, Trackers)> {
    let res = dump(parent.as_ref());
    let Some(p) = parent else { return res };
    match res {
        Ok((v, mut made)) => {
            made.merge(p.trackers);
            Ok((v, made))
        }
        Err(e) => {
            p.give_back(log);
            Err(e)
        }
    }
}

/// What a dump took from the keeper of its previous dump: the tasks it
/// had trackers of, and where they go back if the dump fails, so that a
/// retry can still build on that dump.
pub struct Taken {
    dir: PathBuf,
    tasks: std::collections::HashSet<(i32, u64)>,
}

impl Taken {
    pub fn of(p: &Parent) -> Taken {
        Taken {
            dir: p.dir.clone(),
            tasks: p.trackers.iter().map(|t| (t.pid, t.start)).collect(),
        }
    }

    /// Gives the trackers of the tasks taken back to a keeper of the
    /// previous dump (those made since are dropped: that dump may not
    /// hold their tasks). A tracker scanned since, or any tracker once
    /// `moved_on` (rounds of `--pre-copy` replaced what the previous
    /// dump's trackers reported since with their own), no longer knows
    /// everything written since that dump: it reports every page next
    /// time (see [`super::track::Tracker::scanned`]). If even this
    /// fails, `log` says why; the dump's own error is the one reported.
    pub fn give_back(self, mut trackers: Trackers, moved_on: bool, log: &super::progress::Log) {
        trackers.retain(|t| self.tasks.contains(&(t.pid, t.start)));
        for t in trackers.iter().filter(|t| moved_on || t.scanned()) {
            t.set_whole(true);
        }
        if let Err(b) = super::track::keep::hand_off(&self.dir, &trackers) {
            log.info(&format!("the memory trackers are lost: {b}"));
        }
    }
}

/// Hands `trackers`, those a finished dump goes on with, to a keeper of
/// its images directory `dir`. If that fails, the trackers of the tasks
/// `taken` from the previous dump go back to it, as after a failed dump
/// ([`Taken::give_back`]), so that a retry can still build on it; the
/// error is the dump's.
pub fn keep(
    dir: &Path,
    trackers: Trackers,
    taken: Option<Taken>,
    moved_on: bool,
    log: &super::progress::Log,
) -> Result<()> {
    let Err(e) = super::track::keep::hand_off(dir, &trackers) else {
        return Ok(());
    };
    if let Some(t) = taken {
        t.give_back(trackers, moved_on, log);
    }
    Err(e)
}

/// Splits `runs` at the pages that are not in `changed` but are in
/// `held`: those become PE_PARENT runs. Returns the runs and how many
/// pages were left to the parent. All three lists are sorted.
pub fn split(runs: &[Run], changed: &Ranges, held: &Ranges) -> (Vec<Run>, u64) {
    // The ranges the parent may give: held minus changed.
    let mut from_parent = Ranges::new();
    let mut c = changed.iter().peekable();
    for &(hs, he) in held {
        let mut at = hs;
        while at < he {
            while c.peek().is_some_and(|&&(_, ce)| ce <= at) {
                c.next();
            }
            match c.peek() {
                Some(&&(cs, ce)) if cs < he => {
                    if cs > at {
                        from_parent.push((at, cs));
                    }
                    at = at.max(ce);
                }
                _ => {
                    from_parent.push((at, he));
                    at = he;
                }
            }
        }
    }
    let mut out = Vec::with_capacity(runs.len());
    let mut parent_pages = 0;
    let mut p = 0usize;
    for r in runs {
        let end = r.vaddr + r.nr_pages * super::maps::PAGE_SIZE;
        let mut at = r.vaddr;
        while p < from_parent.len() && from_parent[p].1 <= at {
            p += 1;
        }
        let mut q = p;
        while at < end {
            let piece = match from_parent.get(q) {
                Some(&(fs, fe)) if fs < end => {
                    if fs > at {
                        (at, fs, r.flags)
                    } else {
                        q += 1;
                        (at, fe.min(end), PE_PARENT)
                    }
                }
                _ => (at, end, r.flags),
            };
            let pages = (piece.1 - piece.0) / super::maps::PAGE_SIZE;
            if piece.2 == PE_PARENT {
                parent_pages += pages;
            }
            out.push(Run {
                vaddr: piece.0,
                nr_pages: pages,
                flags: piece.2,
            });
            at = piece.1;
        }
    }
    (out, parent_pages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::pagemap::PE_PRESENT;
    const P: u64 = 4096;

    fn run(a: u64, n: u64) -> Run {
        Run {
            vaddr: a * P,
            nr_pages: n,
            flags: PE_PRESENT,
        }
    }

    #[test]
    fn unwritten_pages_the_parent_holds_come_from_it() {
        // Pages 0..10 present; parent holds 0..4 and 6..10; 2..3 and 8..9
        // were written.
        let runs = [run(0, 10)];
        let changed = vec![(2 * P, 3 * P), (8 * P, 9 * P)];
        let held = vec![(0, 4 * P), (6 * P, 10 * P)];
        let (out, parent) = split(&runs, &changed, &held);
        let got: Vec<(u64, u64, bool)> = out
            .iter()
            .map(|r| (r.vaddr / P, r.nr_pages, r.flags == PE_PARENT))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 2, true),
                (2, 1, false),
                (3, 1, true),
                (4, 2, false),
                (6, 2, true),
                (8, 1, false),
                (9, 1, true)
            ]
        );
        assert_eq!(parent, 6);
    }

    #[test]
    fn without_a_parent_everything_is_copied() {
        let runs = [run(0, 3), run(5, 2)];
        let (out, parent) = split(&runs, &Ranges::new(), &Ranges::new());
        assert_eq!(out, runs.to_vec());
        assert_eq!(parent, 0);
    }
}
