//! Checks that the image set is whole and consistent before anything of
//! the tree is created: one inventory of a version crit reads, a process
//! tree without duplicates, cycles or orphans, a core image for every
//! thread and none for a thread the tree does not list, whole task cores,
//! descriptor numbers once each, memory maps that do not overlap, and
//! pagemaps inside them. Each refusal names the file and the entry.

use super::error::{CoreFault, InventoryFault, PstreeFault, SetupError};
use super::plan::Task;
use crate::error::{Error, Result};
use crate::image::pb;
use crate::image::typed::read_all;
use std::collections::HashSet;
use std::path::Path;

/// CRIU's images version with the common magic in every head
/// (CRTOOLS_IMAGES_V1_1); version 1 predates it.
const IMAGES_VERSION: u32 = 2;

/// `inventory.img`: exactly one entry, of the images version crit reads,
/// with the root task's ids.
pub fn inventory(dir: &Path) -> Result<pb::InventoryEntry> {
    let path = dir.join("inventory.img");
    let mut all: Vec<pb::InventoryEntry> = read_all(&path, "INVENTORY")?;
    let bad = |why| -> Error {
        SetupError::Inventory {
            path: path.clone(),
            why,
        }
        .into()
    };
    if all.len() != 1 {
        return Err(bad(InventoryFault::Entries(all.len())));
    }
    let inv = all.remove(0);
    if inv.img_version != IMAGES_VERSION {
        return Err(bad(InventoryFault::Version {
            found: inv.img_version,
            wanted: IMAGES_VERSION,
        }));
    }
    if inv.root_ids.is_none() {
        return Err(bad(InventoryFault::NoRootIds));
    }
    if let Some(m) = inv.network_lock_method {
        if crate::model::netlock::Method::of_number(m).is_none() {
            return Err(bad(InventoryFault::LockMethod(m)));
        }
    }
    Ok(inv)
}

/// `pstree.img`: the first entry is the root (parent 0) and the only
/// one; every other task's parent comes before it; no pid or thread id
/// appears twice; a task's thread list holds the task itself.
pub fn pstree(dir: &Path, tree: &[pb::PstreeEntry]) -> Result<()> {
    let path = dir.join("pstree.img");
    let bad = |index: usize, why| -> Error {
        SetupError::Pstree {
            path: path.clone(),
            index,
            pid: tree[index].pid,
            why,
        }
        .into()
    };
    if tree.is_empty() {
        return Err(SetupError::NoTask { path }.into());
    }
    let mut seen: HashSet<u32> = HashSet::new();
    let mut pids: HashSet<u32> = HashSet::new();
    for (i, p) in tree.iter().enumerate() {
        if p.pid == 0 {
            return Err(bad(i, PstreeFault::PidZero));
        }
        if i == 0 && p.ppid != 0 {
            return Err(bad(i, PstreeFault::RootParent(p.ppid)));
        }
        if i > 0 {
            if p.ppid == p.pid {
                return Err(bad(i, PstreeFault::OwnParent));
            }
            if p.ppid == 0 {
                return Err(bad(i, PstreeFault::NoParent));
            }
            if !pids.contains(&p.ppid) {
                return Err(bad(i, PstreeFault::ParentLater(p.ppid)));
            }
        }
        if !p.threads.is_empty() && !p.threads.contains(&p.pid) {
            return Err(bad(i, PstreeFault::ThreadList));
        }
        let ids = std::iter::once(p.pid).chain(p.threads.iter().copied().filter(|&t| t != p.pid));
        for id in ids {
            if !seen.insert(id) {
                return Err(bad(i, PstreeFault::Twice(id)));
            }
        }
        pids.insert(p.pid);
    }
    Ok(())
}

/// Every `core-TID.img` of the directory belongs to a thread the tree
/// lists: a thread left out would be lost (and the task with it).
pub fn core_images(dir: &Path, tree: &[pb::PstreeEntry]) -> Result<()> {
    let listed: HashSet<u32> = tree
        .iter()
        .flat_map(|p| std::iter::once(p.pid).chain(p.threads.iter().copied()))
        .collect();
    let rd = std::fs::read_dir(dir).map_err(|source| SetupError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(tid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("core-"))
            .and_then(|n| n.strip_suffix(".img"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if !listed.contains(&tid) {
            return Err(SetupError::StrayCore {
                path: dir.join(&name),
                tid,
            }
            .into());
        }
    }
    Ok(())
}

/// A task's memory map: each mapping page-aligned, not empty, within the
/// user address space, and after the one before it.
pub fn vmas(dir: &Path, t: &Task) -> Result<()> {
    let path = dir.join(format!("mm-{}.img", t.pid));
    let mut prev_end = 0u64;
    for (i, v) in t.mm.vmas.iter().enumerate() {
        let why = if v.start % 4096 != 0 || v.end % 4096 != 0 {
            Some("not page-aligned")
        } else if v.end <= v.start {
            Some("empty or reversed")
        } else if v.end > crate::sys::TASK_SIZE
            && v.status & crate::image::flags::VMA_AREA_VSYSCALL == 0
        {
            Some("beyond the user address space")
        } else if v.start < prev_end {
            Some("overlaps the mapping before it")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(SetupError::Vma {
                path,
                index: i,
                start: v.start,
                end: v.end,
                why,
            }
            .into());
        }
        prev_end = v.end;
    }
    // Guard entries come after the real ones (their index as in the
    // image, where CRIU and crit put them).
    for (k, &(start, end)) in t.guards.iter().enumerate() {
        let why = if start % 4096 != 0 || end % 4096 != 0 {
            Some("a guard range not page-aligned")
        } else if end <= start {
            Some("a guard range empty or reversed")
        } else if !covered(&t.mm.vmas, start, end) {
            Some("a guard range outside the task's mappings")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(SetupError::Vma {
                path,
                index: t.mm.vmas.len() + k,
                start,
                end,
                why,
            }
            .into());
        }
    }
    Ok(())
}

/// Signal actions a core holds: signals 1 to 64 but SIGKILL and SIGSTOP
/// (CRIU's SIGMAX - 2).
const SIGACTIONS: usize = 62;

/// The size of a queued signal's siginfo (the kernel's siginfo_t).
const SIGINFO: usize = 128;

/// A live task's core images, as CRIU's check_core demands: an x86_64
/// core with thread info for every thread; the main thread's task core
/// (tc) with all 62 signal actions; every queued signal a whole siginfo.
/// Without these checks a missing tc or short action list restored the
/// task with default actions, and a short siginfo dropped its signal.
pub fn cores(dir: &Path, t: &Task) -> Result<()> {
    let bad = |tid: u32, why: CoreFault| -> Error {
        SetupError::Core {
            path: dir.join(format!("core-{tid}.img")),
            pid: t.pid,
            why,
        }
        .into()
    };
    for (k, th) in t.threads.iter().enumerate() {
        let c = &th.core;
        if c.mtype != pb::core_entry::March::X8664 as i32 || c.thread_info.is_none() {
            return Err(SetupError::NotX86 {
                tid: th.tid,
                pid: t.pid,
            }
            .into());
        }
        let mut queues = Vec::new();
        if k == 0 {
            let Some(tc) = &c.tc else {
                return Err(bad(th.tid, CoreFault::NoTaskCore));
            };
            if tc.sigactions.len() != SIGACTIONS {
                let n = tc.sigactions.len();
                return Err(bad(th.tid, CoreFault::Sigactions(n)));
            }
            queues.extend(tc.signals_s.as_ref());
        }
        queues.extend(c.thread_core.as_ref().and_then(|x| x.signals_p.as_ref()));
        for s in queues.iter().flat_map(|q| &q.signals) {
            if s.siginfo.len() != SIGINFO {
                return Err(bad(th.tid, CoreFault::Siginfo(s.siginfo.len())));
            }
        }
    }
    Ok(())
}

/// A task's descriptors (`fdinfo-FILES_ID.img`): each number a
/// descriptor the kernel can have (below 2^31: above, it read as a
/// negative one) and none twice (the second silently took the first's
/// place, which was lost).
pub fn fds(dir: &Path, t: &Task) -> Result<()> {
    let path = dir.join(format!("fdinfo-{}.img", t.ids.files_id));
    let mut seen: HashSet<u32> = HashSet::new();
    for (i, f) in t.fds.iter().enumerate() {
        let why = if f.fd > i32::MAX as u32 {
            "is not a descriptor number"
        } else if !seen.insert(f.fd) {
            "appears twice"
        } else {
            continue;
        };
        return Err(SetupError::Fd {
            path,
            index: i,
            fd: f.fd,
            why,
        }
        .into());
    }
    Ok(())
}

/// A task's pagemap: each run page-aligned, inside the user address
/// space (an end past 2^64 wraps and its pages would be silently left
/// out), every page of it inside one of the task's mappings (as CRIU's
/// restore demands), and no page given twice.
pub fn pagemap(dir: &Path, t: &Task) -> Result<()> {
    let path = dir.join(format!("pagemap-{}.img", t.pid));
    let mut seen: Vec<(u64, u64, usize)> = Vec::new();
    for (i, e) in t.pagemap.iter().enumerate() {
        let pages = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
        let end = pages
            .checked_mul(PAGE)
            .and_then(|b| b.checked_add(e.vaddr))
            .filter(|&end| end <= crate::sys::TASK_SIZE);
        let why = match end {
            _ if e.vaddr % PAGE != 0 => Some("not page-aligned"),
            // CRIU and crit write none; its restore would fail later,
            // on whatever mapping came next, naming the wrong thing.
            _ if pages == 0 => Some("holds no pages"),
            None => Some("beyond the user address space"),
            Some(end) if !covered(&t.mm.vmas, e.vaddr, end) => Some("outside the task's mappings"),
            Some(end) => {
                seen.push((e.vaddr, end, i));
                None
            }
        };
        if let Some(why) = why {
            return Err(pagemap_fault(&path, i, e.vaddr, why));
        }
    }
    seen.sort_unstable();
    for w in seen.windows(2) {
        if w[1].0 < w[0].1 {
            // The later of the two in the image is named.
            let later = if w[0].2 > w[1].2 { w[0] } else { w[1] };
            return Err(pagemap_fault(
                &path,
                later.2,
                later.0,
                "overlaps another entry",
            ));
        }
    }
    Ok(())
}

const PAGE: u64 = 4096;

fn pagemap_fault(path: &Path, i: usize, vaddr: u64, why: &'static str) -> Error {
    SetupError::PagemapEntry {
        path: path.to_path_buf(),
        // The head is entry 0.
        index: i + 1,
        vaddr,
        why,
    }
    .into()
}

/// Whether mappings `vmas` (sorted, not overlapping: [`vmas`] checked)
/// cover `[s, e)` without a gap.
fn covered(vmas: &[pb::VmaEntry], s: u64, e: u64) -> bool {
    let mut at = s;
    let mut k = vmas.partition_point(|v| v.end <= s);
    while at < e {
        match vmas.get(k) {
            Some(v) if v.start <= at => at = v.end,
            _ => return false,
        }
        k += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32, threads: &[u32]) -> pb::PstreeEntry {
        pb::PstreeEntry {
            pid,
            ppid,
            pgid: pid,
            sid: pid,
            threads: threads.to_vec(),
        }
    }

    #[test]
    fn trees() {
        let d = Path::new("/x");
        assert!(pstree(d, &[p(10, 0, &[10, 11]), p(12, 10, &[12])]).is_ok());
        let err = |t: &[pb::PstreeEntry]| pstree(d, t).unwrap_err().to_string();
        assert!(err(&[]).contains("no task"));
        assert!(err(&[p(10, 5, &[])]).contains("the root has a parent"));
        assert!(err(&[p(10, 0, &[]), p(12, 12, &[])]).contains("is its own parent"));
        assert!(err(&[p(10, 0, &[]), p(12, 13, &[]), p(13, 12, &[])])
            .contains("its parent 13 is not an earlier task"));
        assert!(err(&[p(10, 0, &[]), p(10, 10, &[])]).contains("own parent"));
        assert!(err(&[p(10, 0, &[]), p(12, 10, &[]), p(12, 10, &[])])
            .contains("pid or thread id 12 appears twice"));
        assert!(err(&[p(10, 0, &[10, 12]), p(12, 10, &[])]).contains("12 appears twice"));
        assert!(err(&[p(10, 0, &[11])]).contains("does not hold the task itself"));
        assert!(err(&[p(10, 0, &[]), p(11, 0, &[])]).contains("only one root"));
    }
}
