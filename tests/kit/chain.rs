//! Incremental dumps for the tests, made from a real one: a copy of an
//! images dir whose pagemaps hand some pages of each run to a parent dump
//! (PE_PARENT) or to a page server (PE_LAZY), with the pages image cut to
//! what stays.

use crit::image::pb;
use crit::image::store::Images;
use crit::image::typed::{write_atomic, ImageBuilder};
use std::path::Path;

pub const PE_PARENT: u32 = 1;
pub const PE_LAZY: u32 = 2;
pub const PE_PRESENT: u32 = 4;

/// Copies the files of `src` to `dst`; for every present run of every
/// task's pagemap (`pid`, `vaddr`, pages), `split` says how many of its
/// first pages go elsewhere and with which flag (PE_PARENT or PE_LAZY);
/// the rest stays present. Returns the pages given away.
pub fn derive(src: &Path, dst: &Path, mut split: impl FnMut(&str, u64, u64) -> (u64, u32)) -> u64 {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
    let imgs = Images::Dir(src.to_path_buf());
    let mut given = 0;
    for (name, _) in imgs.files().unwrap() {
        if !name.starts_with("pagemap-") || name.starts_with("pagemap-shmem") {
            continue;
        }
        let (id, entries) = imgs.pagemap(&name).unwrap();
        let pages = std::fs::read(src.join(format!("pages-{id}.img"))).unwrap();
        let mut b = ImageBuilder::new("PAGEMAP").unwrap();
        b.entry(&pb::PagemapHead { pages_id: id });
        let mut kept = Vec::new();
        let mut off = 0usize;
        for e in &entries {
            let n = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
            let flags = e.flags.unwrap_or(PE_PRESENT);
            if flags & PE_PRESENT == 0 {
                b.entry(e);
                continue;
            }
            let run = |vaddr: u64, n: u64, flags: u32| pb::PagemapEntry {
                vaddr,
                compat_nr_pages: n as u32,
                in_parent: None,
                flags: Some(flags),
                nr_pages: Some(n),
            };
            let data = &pages[off..off + n as usize * 4096];
            off += data.len();
            let (give, how) = split(&name, e.vaddr, n);
            let give = give.min(n);
            if give > 0 {
                b.entry(&run(e.vaddr, give, how));
                given += give;
            }
            if n > give {
                b.entry(&run(e.vaddr + give * 4096, n - give, flags));
                kept.extend_from_slice(&data[give as usize * 4096..]);
            }
        }
        write_atomic(&dst.join(&name), &b.bytes).unwrap();
        write_atomic(&dst.join(format!("pages-{id}.img")), &kept).unwrap();
    }
    given
}
