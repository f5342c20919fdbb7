//! Shared memory contents from `pagemap-shmem-ID.img` and the pages image
//! it names: the one reader of them for memfds, shared anonymous memory
//! and System V segments.

use super::error::{FileError, FileFault, On};
use super::plan::read_pagemap;
use crate::error::Result;
use crate::image::typed::Mapped;
use crate::model::pagemap::{self, Held};
use std::path::Path;

/// Calls `put(offset, bytes)` for every run of present pages of shared
/// memory `shmid` (nothing when it has no pagemap: all zeroes). `what`
/// names the object in errors.
pub fn for_each_run(
    dir: &Path,
    shmid: u64,
    on: &On,
    mut put: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let pm = dir.join(format!("pagemap-shmem-{shmid}.img"));
    if !pm.exists() {
        return Ok(());
    }
    let (pages_id, entries) = read_pagemap(&pm, Vec::new())?;
    let pages = Mapped::open(&dir.join(format!("pages-{pages_id}.img")))?;
    let bytes = pages.bytes();
    for r in pagemap::runs(&entries) {
        let off = match r.held {
            Held::Here(off) => off,
            Held::Parent => {
                return Err(FileError::Refused {
                    on: on.clone(),
                    why: FileFault::SharedInParent(r.vaddr),
                }
                .into())
            }
            Held::Lazy => continue,
        };
        let chunk = usize::try_from(off)
            .ok()
            .and_then(|off| bytes.get(off..off.checked_add(r.bytes() as usize)?))
            .ok_or_else(|| FileError::PagesShort {
                on: on.clone(),
                pages_id,
            })?;
        put(r.vaddr, chunk)?;
    }
    Ok(())
}

/// Fills `seg` (a mapped System V segment) with the contents of
/// `shmid`; pages past its end are an error.
pub fn fill_slice(dir: &Path, shmid: u64, seg: &mut [u8]) -> Result<()> {
    let on = On::SysvShm(shmid);
    for_each_run(dir, shmid, &on, |at, chunk| {
        let at = at as usize;
        // The last page may run past the segment's size.
        let n = chunk.len().min(seg.len().saturating_sub(at));
        seg.get_mut(at..at + n)
            .ok_or_else(|| FileError::Refused {
                on: on.clone(),
                why: FileFault::PagesBeyond,
            })?
            .copy_from_slice(&chunk[..n]);
        Ok(())
    })
}
