//! `crit dump --pre-copy`: the tree is frozen only for the pages it
//! writes during the last round. Rounds of pre-dump ([`super::predump`])
//! copy its memory while it runs, each round only what was written since
//! the one before, into `DIR/.crit-precopy/N`; once a round stops
//! shrinking (or is small, or after [`MAX_ROUNDS`]) the tree is frozen and
//! dumped on top of the last round, which copies the rest. After the tree
//! is let go the set is flattened ([`super::flatten`]) into ordinary
//! self-contained images, and the rounds are removed: until then every
//! round takes its room on disk. A task with a userfaultfd of its own,
//! which the final dump refuses, is refused before the first round.

use super::error::DumpError;
use super::imgdir::ImgDir;
use super::incremental::{Parent, Taken};
use super::progress::Log;
use super::track::Trackers;
use super::{DumpOpts, Summary};
use crate::error::Result;
use crate::image::store::Images;
use std::path::{Path, PathBuf};

/// Rounds at most before the final freeze.
pub const MAX_ROUNDS: usize = 8;
/// A round copying fewer pages than this is the last before the freeze
/// (4 MiB: a few milliseconds to copy frozen).
const SMALL_ROUND: u64 = 1024;
/// Where the rounds go, inside the images directory (a stale one is
/// removed by [`ImgDir::open`]).
pub(crate) const ROUNDS: &str = ".crit-precopy";

/// Removes the rounds whatever happens.
struct Rounds(PathBuf);

impl Drop for Rounds {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What /proc shows for a userfaultfd.
const UFFD_LINK: &str = "anon_inode:[userfaultfd]";

/// Refuses at once what the final dump would refuse only after every
/// round: a task that holds a userfaultfd of its own (as the plain dump,
/// which checks again, frozen). Nothing is frozen or touched yet; a task
/// or descriptor gone meanwhile is no refusal.
fn refuse_early(root: i32) -> Result<()> {
    let mut pids = vec![root];
    let mut k = 0;
    while let Some(&pid) = pids.get(k) {
        k += 1;
        let kids = crate::sys::procfs::children(pid as u32).unwrap_or_default();
        pids.extend(kids.into_iter().map(|c| c as i32));
        for fd in super::fdscan::list(pid).unwrap_or_default() {
            let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"));
            if link.is_ok_and(|l| l.as_os_str() == UFFD_LINK) {
                let link = UFFD_LINK.to_string();
                return Err(DumpError::FdKind { pid, fd, link }.into());
            }
        }
    }
    Ok(())
}

pub fn dump(opts: &DumpOpts, log: &Log, notify: &crate::action::Notifier) -> Result<Summary> {
    super::track::probe().map_err(|source| DumpError::NoTrackingSupport { source })?;
    refuse_early(opts.pid)?;
    log.step(super::track::METHOD);
    let mut dir = ImgDir::open(&opts.dir)?;
    let rounds = Rounds(opts.dir.join(ROUNDS));
    let mut parent = match &opts.prev_images_dir {
        Some(p) => Some(Parent::open(&opts.dir, p, opts.pid)?),
        None => None,
    };
    let taken = parent.as_ref().map(Taken::of);
    let mut moved_on = false;
    let res = rounds_then_dump(
        opts,
        log,
        &mut dir,
        &rounds,
        &mut parent,
        &mut moved_on,
        notify,
    );
    let (s, trackers) = match res {
        Ok(done) => done,
        Err(e) => {
            // The trackers, wherever the dump was, are in `parent`.
            if let (Some(t), Some(p)) = (taken, parent) {
                t.give_back(p.trackers, moved_on, log);
            }
            return Err(e);
        }
    };
    drop(rounds);
    if opts.track_mem && opts.leave_running {
        super::incremental::keep(&opts.dir, trackers, taken, moved_on, log)?;
    }
    dir.keep();
    Ok(s)
}

/// The rounds, the final dump on top of the last one and the flattening
/// of the set. `parent` holds the trackers at every step (those taken
/// from `--prev-images-dir`, then each round's), so that they are still
/// there if a step fails; `moved_on` is set once a round ran.
fn rounds_then_dump(
    opts: &DumpOpts,
    log: &Log,
    dir: &mut ImgDir,
    rounds: &Rounds,
    parent: &mut Option<Parent>,
    moved_on: &mut bool,
    notify: &crate::action::Notifier,
) -> Result<(Summary, Trackers)> {
    let mut last = u64::MAX;
    for n in 1..=MAX_ROUNDS {
        let at = rounds.0.join(n.to_string());
        let mut rdir = ImgDir::open(&at)?;
        // A round's parent link is relative to the round's directory.
        if let Some(p) = parent.as_mut() {
            p.link = match n {
                1 => Path::new("../..").join(&p.link),
                _ => PathBuf::from(format!("../{}", n - 1)),
            };
        }
        *moved_on = true;
        let (r, mut trackers) =
            super::predump::round(opts.pid, log, &mut rdir, parent.as_ref(), false, None)?;
        rdir.keep();
        log.step(&format!("pre-copy round {n}: {r}"));
        let images = Images::open(&at)?;
        // From here to the new parent nothing fails: no tracker is lost.
        if let Some(p) = parent.take() {
            trackers.merge(p.trackers);
        }
        let link = Path::new(ROUNDS).join(n.to_string());
        *parent = Some(Parent::of_round(link, at, images, trackers));
        if r.pages >= last || r.pages < SMALL_ROUND {
            break;
        }
        last = r.pages;
    }
    // The rounds reach the disk while the tree still runs: the final
    // dump's sync, frozen, then has only its own pages to write.
    crate::image::typed::sync_filesystem(&rounds.0)?;
    log.step("final round: freezing the tree");
    let (mut s, mut trackers) = super::dump_into(opts, log, dir, parent.as_ref(), notify, None)?;
    // The final dump's trackers and the rounds' for the other tasks,
    // kept in `parent` until the set is whole.
    if let Some(p) = parent.as_mut() {
        trackers.merge(std::mem::take(&mut p.trackers));
        std::mem::swap(&mut p.trackers, &mut trackers);
    }
    log.step("making the images self-contained");
    let t = std::time::Instant::now();
    let from_rounds = super::flatten::flatten(dir)?;
    log.debug(&format!(
        "{from_rounds} pages taken from the rounds in {:.3} s",
        t.elapsed().as_secs_f64()
    ));
    s.pages += from_rounds;
    // The summary's "written" counts the set as it ends up, rounds' pages
    // included.
    s.bytes += from_rounds * super::maps::PAGE_SIZE;
    if let Some(p) = parent.take() {
        trackers.merge(p.trackers);
    }
    Ok((s, trackers))
}
