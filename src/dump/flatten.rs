//! Makes a dump on top of others self-contained: each task's pages that
//! its pagemap leaves to the parent chain (PE_PARENT) are copied from the
//! dump that holds them into a new pages image of its own, in address
//! order, as a plain dump would have written them; then the `parent` link
//! goes. `dump --pre-copy` ends with this once the tree is let go.
//!
//! Each task is switched over whole: its new pages image (a new pages
//! id) is written and made durable first, then its new pagemap replaces
//! the old one (the commit), then the old pages image is removed. Cut
//! short, the set is still a valid chain.

use super::error::DumpError;
use super::imgdir::ImgDir;
use crate::error::Result;
use crate::image::flags::{PE_LAZY, PE_PARENT, PE_PRESENT};
use crate::image::pb;
use crate::image::store::Images;
use crate::image::typed::{AtomicFile, ImageBuilder};
use crate::model::pagemap::{self as pm, Held, Source};
use std::path::Path;

/// The most dumps a chain may have (as `x mem` and the restore).
const MAX_CHAIN: usize = 64;

/// One dump of the chain, for one task: its runs, the flags of each
/// run, and its pages image.
struct Level {
    runs: Vec<pm::Run>,
    flags: Vec<u32>,
    pages: Option<std::fs::File>,
}

fn level(images: &Images, dir: &Path, name: &str) -> Result<Option<Level>> {
    if !images.exists(name) {
        return Ok(None);
    }
    let (id, entries) = images.pagemap(name)?;
    // The flags of the entries pm::runs keeps, in step with its runs.
    let flags = entries
        .iter()
        .map(pm::flags)
        .filter(|f| f & (PE_PRESENT | PE_PARENT | PE_LAZY) != 0)
        .collect();
    let runs = pm::runs(&entries);
    let p = dir.join(format!("pages-{id}.img"));
    let pages = std::fs::File::open(&p).ok();
    Ok(Some(Level { runs, flags, pages }))
}

/// Flattens every task's pages in images directory `imgdir` (see the
/// module docs); returns the pages copied from parents. The pages images
/// it writes are the set's: a dump that fails after removes them too.
pub fn flatten(imgdir: &mut ImgDir) -> Result<u64> {
    let dir = imgdir.dir.clone();
    let dir = dir.as_path();
    let mut chain_dirs = vec![dir.to_path_buf()];
    let mut imgs = vec![Images::open(dir)?];
    while let Some(p) = imgs.last().and_then(Images::parent) {
        if imgs.len() >= MAX_CHAIN {
            break;
        }
        let Images::Dir(d) = &p else { break };
        chain_dirs.push(d.clone());
        imgs.push(p);
    }
    let mut next_id = next_pages_id(dir)?;
    let mut copied = 0;
    for (name, _) in imgs[0].files()? {
        if !name.starts_with("pagemap-") || name.starts_with("pagemap-shmem") {
            continue;
        }
        let mut levels = Vec::new();
        for (im, d) in imgs.iter().zip(&chain_dirs) {
            match level(im, d, &name)? {
                Some(l) => levels.push(l),
                None => break,
            }
        }
        imgdir.adopt(&format!("pages-{next_id}.img"));
        copied += flatten_one(dir, &name, &levels, next_id)?;
        next_id += 1;
    }
    crate::image::typed::sync_filesystem(dir)?;
    let _ = std::fs::remove_file(dir.join("parent"));
    Ok(copied)
}

fn next_pages_id(dir: &Path) -> Result<u32> {
    let rd = std::fs::read_dir(dir).map_err(|source| DumpError::File {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("pages-")?
                .strip_suffix(".img")?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(0)
        + 1)
}

/// One task: a new pages image `pages-<id>.img` with every page of its
/// pagemap `name`, then the new pagemap. Returns pages taken from parents.
fn flatten_one(dir: &Path, name: &str, levels: &[Level], id: u32) -> Result<u64> {
    let Some(top) = levels.first() else {
        return Ok(0);
    };
    if !top.runs.iter().any(|r| r.held == Held::Parent) {
        return Ok(0);
    }
    let chain: Vec<&[pm::Run]> = levels.iter().map(|l| &l.runs[..]).collect();
    let new_pages = dir.join(format!("pages-{id}.img"));
    let out = AtomicFile::create(&new_pages)?;
    let mut entries: Vec<pb::PagemapEntry> = Vec::new();
    let (mut at, mut from_parents) = (0u64, 0u64);
    let mut failed: Option<crate::error::Error> = None;
    for (k, r) in top.runs.iter().enumerate() {
        if failed.is_some() {
            break;
        }
        let lazy = top.flags[k] & PE_LAZY;
        pm::place(&chain, r.vaddr, r.end(), &mut |s, e, src| {
            if failed.is_some() {
                return;
            }
            let found = match src {
                Source::Level { level, off } => {
                    levels[level].pages.as_ref().map(|f| (level, off, f))
                }
                _ => None,
            };
            let Some((level, off, f)) = found else {
                failed = Some(
                    DumpError::FlattenHole {
                        image: dir.join(name),
                        addr: s,
                    }
                    .into(),
                );
                return;
            };
            if let Err(e) = out.copy_from(f, off, at, e - s) {
                failed = Some(e);
                return;
            }
            at += e - s;
            if level > 0 {
                from_parents += (e - s) / pm::PAGE;
            }
            // Flags as a plain dump writes them: present, and lazy
            // where the mapping allows it (kept from this dump's entry,
            // or the parent's for pages it held).
            let lazy = if r.held == Held::Parent {
                lazy_of(&levels[level], s)
            } else {
                lazy
            };
            let flags = PE_PRESENT | lazy;
            match entries.last_mut() {
                Some(l)
                    if l.flags == Some(flags)
                        && l.vaddr + l.nr_pages.unwrap_or(0) * pm::PAGE == s =>
                {
                    l.nr_pages = Some(l.nr_pages.unwrap_or(0) + (e - s) / pm::PAGE)
                }
                _ => entries.push(pb::PagemapEntry {
                    vaddr: s,
                    compat_nr_pages: 0,
                    in_parent: None,
                    flags: Some(flags),
                    nr_pages: Some((e - s) / pm::PAGE),
                }),
            }
        });
    }
    if let Some(e) = failed {
        return Err(e);
    }
    out.commit()?;
    let old_id = crate::image::store::Images::open(dir)?.pagemap(name)?.0;
    let mut b = ImageBuilder::new("PAGEMAP")?;
    b.entry(&pb::PagemapHead { pages_id: id });
    for e in &entries {
        b.entry(e);
    }
    crate::image::typed::write_atomic(&dir.join(name), &b.bytes)?;
    let _ = std::fs::remove_file(dir.join(format!("pages-{old_id}.img")));
    Ok(from_parents)
}

/// The PE_LAZY bit of the run of `l` that holds `addr` in its pages.
fn lazy_of(l: &Level, addr: u64) -> u32 {
    let i = l.runs.partition_point(|r| r.end() <= addr);
    match (l.runs.get(i), l.flags.get(i)) {
        (Some(r), Some(&f)) if r.vaddr <= addr && f & PE_PARENT == 0 => f & PE_LAZY,
        _ => 0,
    }
}
